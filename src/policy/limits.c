/* limit_req, limit_conn: configuration and the per-request checks, as nginx's
 * ngx_http_limit_req_module and ngx_http_limit_conn_module behave (limits.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/status.h"
#include "core/units.h"
#include "policy/limits.h"

const char *bl_limit_status_str(int status)
{
    static const char *const names[] = {NULL, "PASSED", "DELAYED", "REJECTED",
                                        "DELAYED_DRY_RUN", "REJECTED_DRY_RUN"};
    return status > 0 && status < (int)(sizeof(names) / sizeof(names[0])) ? names[status]
                                                                          : NULL;
}

/* ------------------------------------------------------------ configuration */

struct bl_limit_zone *bl_limit_zone_ref(struct bl_limit_zone ***list, uint32_t *n,
                                        const char *name, size_t len, const char *file,
                                        int line)
{
    for (uint32_t i = 0; i < *n; i++)
        if (strlen((*list)[i]->name) == len && memcmp((*list)[i]->name, name, len) == 0)
            return (*list)[i];
    struct bl_limit_zone **grown = realloc(*list, (*n + 1) * sizeof(**list));
    if (!grown)
        return NULL;
    *list = grown;
    struct bl_limit_zone *z = calloc(1, sizeof(*z));
    if (!z || !(z->name = strndup(name, len))) {
        free(z);
        return NULL;
    }
    z->file = file;
    z->line = line;
    grown[(*n)++] = z;
    return z;
}

/* "100r/s", "30r/m" after "rate=": milli-requests per second. */
/* "redis://HOST[:PORT]": HOST an IPv4 address or localhost (the sync thread connects without
 * DNS); PORT 6379 by default. */
static int parse_sync_url(const char *s, char *host, size_t cap, int *port)
{
    if (strncmp(s, "redis://", 8) != 0)
        return BL_ERR;
    s += 8;
    const char *colon = strchr(s, ':');
    size_t hl = colon ? (size_t)(colon - s) : strlen(s);
    if (hl == 0 || hl >= cap || strchr(s, '/'))
        return BL_ERR;
    memcpy(host, s, hl);
    host[hl] = 0;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, cap, "127.0.0.1");
    struct in_addr ia;
    if (inet_pton(AF_INET, host, &ia) != 1)
        return BL_ERR;
    *port = 6379;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || p < 1 || p > 65535)
            return BL_ERR;
        *port = (int)p;
    }
    return BL_OK;
}

static int parse_rate(const char *s, uint64_t *out)
{
    size_t len = strlen(s);
    uint64_t scale = 1;
    if (len > 3 && strcmp(s + len - 3, "r/s") == 0) {
        len -= 3;
    } else if (len > 3 && strcmp(s + len - 3, "r/m") == 0) {
        scale = 60;
        len -= 3;
    }
    if (len == 0 || len > 9)
        return BL_ERR;
    uint64_t r = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return BL_ERR;
        r = r * 10 + (uint64_t)(s[i] - '0');
    }
    if (r == 0)
        return BL_ERR;
    *out = r * 1000 / scale;
    return *out ? BL_OK : BL_ERR;
}

static int parse_positive(const char *s, uint64_t max, uint64_t *out)
{
    return bl_parse_uint(s, 1, max, 0, out);
}

int bl_limit_zone_parse(struct bl_limit_zone ***list, uint32_t *n, int req, const char *dname,
                        struct bl_template *key, const char *key_text, char *const *args,
                        int nargs, const char *file, int line, char *err, size_t errlen)
{
    const char *name = NULL;
    size_t name_len = 0;
    uint64_t size = 0, rate = 1000, sync_interval = 0;
    char sync_host[64] = "";
    int sync_port = 0;
    for (int i = 0; i < nargs; i++) {
        const char *a = args[i];
        if (strncmp(a, "zone=", 5) == 0) {
            const char *colon = strchr(a + 5, ':');
            if (!colon || colon == a + 5) {
                snprintf(err, errlen, "invalid zone size \"%s\"", a);
                return BL_ERR;
            }
            name = a + 5;
            name_len = (size_t)(colon - name);
            if (bl_parse_size(colon + 1, &size) != BL_OK) {
                snprintf(err, errlen, "invalid zone size \"%s\"", a);
                return BL_ERR;
            }
            if (size < BL_ZONE_MIN_SIZE) {
                snprintf(err, errlen, "zone \"%s\" is too small", a);
                return BL_ERR;
            }
            continue;
        }
        if (req && strncmp(a, "rate=", 5) == 0) {
            if (parse_rate(a + 5, &rate) != BL_OK) {
                snprintf(err, errlen, "invalid rate \"%s\"", a);
                return BL_ERR;
            }
            continue;
        }
        if (req && strcmp(a, "sync") == 0) {
            snprintf(err, errlen, "\"sync\" (nginx Plus's zone_sync) is not supported: share "
                     "the zone through Redis with sync=redis://HOST:PORT");
            return BL_ERR;
        }
        if (req && strncmp(a, "sync=", 5) == 0) {
            if (parse_sync_url(a + 5, sync_host, sizeof(sync_host), &sync_port) != BL_OK) {
                snprintf(err, errlen, "invalid sync \"%s\" (redis://HOST:PORT, HOST an IP "
                         "address or localhost)", a);
                return BL_ERR;
            }
            continue;
        }
        if (req && strncmp(a, "sync_interval=", 14) == 0) {
            if (bl_parse_time_ms(a + 14, 1000, 60000, &sync_interval) != BL_OK || sync_interval < 10 ||
                sync_interval > 60000) {
                snprintf(err, errlen, "invalid sync_interval \"%s\" (10ms to 60s)", a);
                return BL_ERR;
            }
            continue;
        }
        snprintf(err, errlen, "invalid parameter \"%s\"", a);
        return BL_ERR;
    }
    if (!name) {
        snprintf(err, errlen, "\"%s\" must have \"zone\" parameter", dname);
        return BL_ERR;
    }
    if (sync_interval && !sync_host[0]) {
        snprintf(err, errlen, "\"sync_interval\" needs \"sync=redis://HOST:PORT\"");
        return BL_ERR;
    }
    /* copied before the zone takes the key: every failure below this leaves nothing bound */
    char *host_copy = sync_host[0] ? strdup(sync_host) : NULL;
    if (sync_host[0] && !host_copy) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    struct bl_limit_zone *z = bl_limit_zone_ref(list, n, name, name_len, file, line);
    if (!z) {
        free(host_copy);
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    if (z->key) {
        free(host_copy);
        snprintf(err, errlen, "%s \"%s\" is already bound to key \"%s\"", dname, z->name,
                 z->key_text);
        return BL_ERR;
    }
    if (!(z->key_text = strdup(key_text))) {
        free(host_copy);
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    z->key = key;
    z->size = size;
    z->rate = rate;
    z->sync_host = host_copy;
    z->sync_port = sync_port;
    z->sync_interval_ms = sync_interval ? sync_interval : 100;
    return BL_OK;
}

int bl_limit_req_parse(struct bl_limit_zones *zones, struct bl_limit_req **lines, uint32_t *n,
                       char *const *args, int nargs, const char *file, int line, char *err,
                       size_t errlen)
{
    struct bl_limit_req lr = {.z = NULL, .burst = 0, .delay = 0};
    for (int i = 0; i < nargs; i++) {
        const char *a = args[i];
        uint64_t v;
        if (strncmp(a, "zone=", 5) == 0) {
            lr.z = bl_limit_zone_ref(&zones->req, &zones->nreq, a + 5, strlen(a + 5), file,
                                     line);
            if (!lr.z) {
                snprintf(err, errlen, "out of memory");
                return BL_ERR;
            }
        } else if (strncmp(a, "burst=", 6) == 0) {
            if (parse_positive(a + 6, 1000000000, &v) != BL_OK) {
                snprintf(err, errlen, "invalid burst value \"%s\"", a);
                return BL_ERR;
            }
            lr.burst = v * 1000;
        } else if (strncmp(a, "delay=", 6) == 0) {
            if (parse_positive(a + 6, 1000000000, &v) != BL_OK) {
                snprintf(err, errlen, "invalid delay \"%s\"", a);
                return BL_ERR;
            }
            lr.delay = v * 1000;
        } else if (strcmp(a, "nodelay") == 0) {
            lr.delay = BL_LIMIT_NODELAY;
        } else {
            snprintf(err, errlen, "invalid parameter \"%s\"", a);
            return BL_ERR;
        }
    }
    if (!lr.z) {
        snprintf(err, errlen, "\"limit_req\" must have \"zone\" parameter");
        return BL_ERR;
    }
    for (uint32_t i = 0; i < *n; i++)
        if ((*lines)[i].z == lr.z) {
            snprintf(err, errlen, "\"limit_req\" directive is duplicate");
            return BL_ERR;
        }
    if (*n >= BL_LIMIT_REQ_MAX) {
        snprintf(err, errlen, "more than %d \"limit_req\" lines at one level",
                 BL_LIMIT_REQ_MAX);
        return BL_ERR;
    }
    struct bl_limit_req *grown = realloc(*lines, (*n + 1) * sizeof(*grown));
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    *lines = grown;
    grown[(*n)++] = lr;
    return BL_OK;
}

int bl_limit_conn_parse(struct bl_limit_zones *zones, int stream, struct bl_limit_conn **lines,
                        uint32_t *n, char *const *args, const char *file, int line, char *err,
                        size_t errlen)
{
    struct bl_limit_zone *z =
        stream ? bl_limit_zone_ref(&zones->stream_conn, &zones->nstream_conn, args[0],
                                   strlen(args[0]), file, line)
               : bl_limit_zone_ref(&zones->conn, &zones->nconn, args[0], strlen(args[0]), file,
                                   line);
    if (!z) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    uint64_t v;
    if (parse_positive(args[1], 65535, &v) != BL_OK) {
        snprintf(err, errlen, "invalid number of connections \"%s\"", args[1]);
        return BL_ERR;
    }
    for (uint32_t i = 0; i < *n; i++)
        if ((*lines)[i].z == z) {
            snprintf(err, errlen, "\"limit_conn\" directive is duplicate");
            return BL_ERR;
        }
    if (*n >= BL_LIMIT_CONN_MAX) {
        snprintf(err, errlen, "more than %d \"limit_conn\" lines at one level",
                 BL_LIMIT_CONN_MAX);
        return BL_ERR;
    }
    struct bl_limit_conn *grown = realloc(*lines, (*n + 1) * sizeof(*grown));
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    *lines = grown;
    grown[(*n)++] = (struct bl_limit_conn){z, (uint32_t)v};
    return BL_OK;
}

static int finish_list(struct bl_limit_zone **list, uint32_t n, int kind, const char *dname,
                       char *err, size_t errlen)
{
    for (uint32_t i = 0; i < n; i++) {
        struct bl_limit_zone *z = list[i];
        if (!z->key) {
            snprintf(err, errlen, "unknown %s \"%s\" in %s:%d", dname, z->name, z->file,
                     z->line);
            return BL_ERR;
        }
        if (!(z->zone = bl_zone_get(z->name, kind, z->size, z->key_text, err, errlen)))
            return BL_ERR;
        if (z->sync_host && !(z->sync = bl_cluster_table_get(z->zone, z->sync_host,
                                                             z->sync_port, z->sync_interval_ms,
                                                             z->rate, err, errlen)))
            return BL_ERR;
    }
    return BL_OK;
}

int bl_limit_zones_finish(struct bl_limit_zones *zones, char *err, size_t errlen)
{
    if (finish_list(zones->req, zones->nreq, BL_ZONE_REQ, "limit_req_zone", err, errlen) ||
        finish_list(zones->conn, zones->nconn, BL_ZONE_CONN, "limit_conn_zone", err, errlen) ||
        finish_list(zones->stream_conn, zones->nstream_conn, BL_ZONE_STREAM_CONN,
                    "limit_conn_zone", err, errlen))
        return BL_ERR;
    return BL_OK;
}

static void free_list(struct bl_limit_zone **list, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        bl_cluster_table_put(list[i]->sync);
        free(list[i]->sync_host);
        bl_zone_put(list[i]->zone);
        bl_template_free(list[i]->key);
        free(list[i]->key_text);
        free(list[i]->name);
        free(list[i]);
    }
    free(list);
}

void bl_limit_zones_free(struct bl_limit_zones *zones)
{
    free_list(zones->req, zones->nreq);
    free_list(zones->conn, zones->nconn);
    free_list(zones->stream_conn, zones->nstream_conn);
    memset(zones, 0, sizeof(*zones));
}

/* ------------------------------------------------------------ keys */

struct key {
    char buf[256];
    char *p;                        /* buf, or allocated for a longer key */
    size_t len;
};

/* The key's value into k; BL_ERR when out of memory for a long one. */
static int key_eval(const struct bl_template *t, const struct bl_var_ctx *v, struct key *k)
{
    k->p = k->buf;
    k->len = bl_template_eval(t, v, k->buf, sizeof(k->buf));
    if (k->len <= sizeof(k->buf))
        return BL_OK;
    if (!(k->p = malloc(k->len)))
        return BL_ERR;
    bl_template_eval(t, v, k->p, k->len);
    return BL_OK;
}

static void key_done(struct key *k)
{
    if (k->p != k->buf)
        free(k->p);
}

/* ------------------------------------------------------------ limit_req */

/* The request passed: the synced zones count it for the cluster (cluster.h). */
static void note_cluster(const struct bl_limit_req *lines, uint32_t n, const struct bl_var_ctx *v)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!lines[i].z->sync)
            continue;
        struct key k;
        if (key_eval(lines[i].z->key, v, &k) == BL_OK && k.len)
            bl_cluster_note(lines[i].z->sync, k.p, k.len);
        key_done(&k);
    }
}

int bl_limit_req_check(const struct bl_limit_req *lines, uint32_t n, const struct bl_var_ctx *v,
                       uint64_t now_ms, const struct bl_limit_log *log,
                       struct bl_limit_req_result *res)
{
    uint32_t pins[BL_LIMIT_REQ_MAX];
    uint8_t pinned[BL_LIMIT_REQ_MAX] = {0};
    uint64_t excess = 0;
    int rc = -1;                    /* -1: every key empty so far (nginx's DECLINED) */
    uint32_t i;
    const struct bl_limit_req *limit = NULL;
    res->status = BL_LIMIT_NONE;
    res->delay_ms = 0;
    for (i = 0; i < n; i++) {
        limit = &lines[i];
        struct key k;
        if (key_eval(limit->z->key, v, &k) != BL_OK) {
            rc = BL_ZONE_FULL;
            break;
        }
        if (k.len == 0) {
            key_done(&k);
            continue;
        }
        rc = bl_zone_req_lookup(limit->z->zone, k.p, k.len, now_ms, limit->z->rate,
                                limit->burst, i == n - 1, &excess, &pins[i]);
        key_done(&k);
        if (rc == BL_ZONE_PINNED) {
            pinned[i] = 1;
            continue;
        }
        break;
    }
    if (rc == -1)
        return BL_OK;
    if (rc == BL_ZONE_BUSY || rc == BL_ZONE_FULL) {
        if (rc == BL_ZONE_BUSY && bl_log_enabled(log->level))
            bl_log(log->level, "limiting requests%s, excess: %llu.%03llu by zone \"%s\", "
                   "client: %s", log->dry_run ? ", dry run" : "",
                   (unsigned long long)(excess / 1000), (unsigned long long)(excess % 1000),
                   limit->z->name, log->client);
        else if (rc == BL_ZONE_FULL && bl_zone_log_due(limit->z->zone))
            bl_log(BL_LOG_ALERT, "limit_req zone \"%s\" is full and every key in use: "
                   "refusing new keys", limit->z->name);
        while (i--)
            if (pinned[i])
                bl_zone_req_unpin(lines[i].z->zone, pins[i]);
        if (log->dry_run) {
            res->status = BL_LIMIT_REJECTED_DRY_RUN;
            return BL_OK;
        }
        res->status = BL_LIMIT_REJECTED;
        return BL_ERR;
    }
    /* Passed every line: account the pinned ones now, the longest delay wins (nginx's
     * ngx_http_limit_req_account). */
    if (rc == BL_ZONE_PINNED)
        excess = 0;
    uint64_t max_delay = excess <= limit->delay ? 0
                                                : (excess - limit->delay) * 1000 / limit->z->rate;
    while (i--) {
        if (!pinned[i])
            continue;
        const struct bl_limit_req *l = &lines[i];
        uint64_t e = bl_zone_req_account(l->z->zone, pins[i], now_ms, l->z->rate);
        if (e <= l->delay)
            continue;
        uint64_t d = (e - l->delay) * 1000 / l->z->rate;
        if (d > max_delay) {
            max_delay = d;
            excess = e;
            limit = l;
        }
    }
    note_cluster(lines, n, v);
    if (!max_delay) {
        res->status = BL_LIMIT_PASSED;
        return BL_OK;
    }
    int level = log->level == BL_LOG_INFO ? BL_LOG_INFO : log->level - 1;
    if (bl_log_enabled(level))
        bl_log(level, "delaying request%s, excess: %llu.%03llu, by zone \"%s\", client: %s",
               log->dry_run ? ", dry run" : "", (unsigned long long)(excess / 1000),
               (unsigned long long)(excess % 1000), limit->z->name, log->client);
    if (log->dry_run) {
        res->status = BL_LIMIT_DELAYED_DRY_RUN;
        return BL_OK;
    }
    res->status = BL_LIMIT_DELAYED;
    res->delay_ms = max_delay;
    return BL_OK;
}

/* ------------------------------------------------------------ limit_conn */

void bl_limit_conn_release(struct bl_limit_held *held)
{
    while (held->n) {
        held->n--;
        bl_zone_conn_release(held->zone[held->n], held->ref[held->n]);
    }
}

int bl_limit_conn_acquire(const struct bl_limit_conn *lines, uint32_t n,
                          const struct bl_var_ctx *v, const struct bl_limit_log *log,
                          struct bl_limit_held *held, int *status)
{
    *status = BL_LIMIT_NONE;
    for (uint32_t i = 0; i < n && held->n < BL_LIMIT_CONN_MAX; i++) {
        const struct bl_limit_conn *l = &lines[i];
        struct key k;
        if (key_eval(l->z->key, v, &k) != BL_OK) {
            bl_limit_conn_release(held);
            *status = BL_LIMIT_REJECTED;
            return BL_ERR;
        }
        if (k.len == 0) {
            key_done(&k);
            continue;
        }
        if (k.len > 255) {
            bl_log(BL_LOG_ERROR, "the value of the \"%s\" key is more than 255 bytes: "
                   "\"%.*s...\", client: %s", l->z->key_text, 64, k.p, log->client);
            key_done(&k);
            continue;
        }
        *status = BL_LIMIT_PASSED;
        uint32_t ref;
        int rc = bl_zone_conn_acquire(l->z->zone, k.p, k.len, l->conn, &ref);
        key_done(&k);
        if (rc == BL_ZONE_OK) {
            held->zone[held->n] = l->z->zone;
            held->ref[held->n++] = ref;
            continue;
        }
        if (rc == BL_ZONE_BUSY && bl_log_enabled(log->level))
            bl_log(log->level, "limiting connections%s by zone \"%s\", client: %s",
                   log->dry_run ? ", dry run" : "", l->z->name, log->client);
        else if (rc == BL_ZONE_FULL && bl_zone_log_due(l->z->zone))
            bl_log(BL_LOG_ALERT, "limit_conn zone \"%s\" is full: refusing new keys "
                   "(logged at most once a minute)", l->z->name);
        bl_limit_conn_release(held);
        if (log->dry_run) {
            *status = BL_LIMIT_REJECTED_DRY_RUN;
            return BL_OK;
        }
        *status = BL_LIMIT_REJECTED;
        return BL_ERR;
    }
    return BL_OK;
}
