/* The admin API's routes and JSON (api.h). Reads the shared server state and the per-worker
 * counters; writes only the servers' admin atomics (upstream.h), validated whole first, so a
 * bad call changes nothing.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/api.h"
#include "admin/metrics.h"
#include "admin/status_page.h"
#include "conf/conf.h"
#include "conf/overlay.h"
#include "core/log.h"
#include "core/sock.h"
#include "core/stats.h"
#include "core/status.h"
#include "core/units.h"
#include "core/version.h"
#include "http/h1_parser.h"
#include "upstream/balancer.h"
#include "upstream/health_check.h"
#include "upstream/outlier.h"
#include "upstream/upstream.h"
#include "reload.h"
#include "worker.h"

#define JSON_CT "application/json"

const char *const bl_server_view_names[BL_SV_N] = {
    [BL_SV_DOWN] = "down",         [BL_SV_DRAINING] = "draining", [BL_SV_CHECKING] = "checking",
    [BL_SV_UNHEALTHY] = "unhealthy", [BL_SV_EJECTED] = "ejected", [BL_SV_UNAVAIL] = "unavail",
    [BL_SV_UP] = "up",
};

enum bl_server_view_state bl_server_view(const struct bl_upstream_server *s, uint64_t now_ms)
{
    if (bl_server_down(s))
        return BL_SV_DOWN;
    if (bl_server_admin(s) & BL_ADMIN_DRAIN)
        return BL_SV_DRAINING;
    if (!bl_server_check_ok(s))
        /* default_down=true keeps a server out until it passes `rise` checks: checking, not
         * unhealthy, until a check has failed */
        return atomic_load_explicit(&s->state->checks_failed, memory_order_relaxed)
                   ? BL_SV_UNHEALTHY
                   : BL_SV_CHECKING;
    if (s->group->outlier && bl_outlier_server_state(s, now_ms) == BL_OUTLIER_EJECTED)
        return BL_SV_EJECTED;
    uint64_t until = atomic_load_explicit(&s->state->down_until_ms, memory_order_relaxed);
    if (until && now_ms < until)
        return BL_SV_UNAVAIL;
    return BL_SV_UP;
}

int bl_server_view_available(const struct bl_upstream_server *s, uint64_t now_ms)
{
    return bl_server_view(s, now_ms) == BL_SV_UP;
}

/* ---------------------------------------------------------------- answers */

void bl_api_error(struct bl_api_response *resp, int status, const char *reason)
{
    resp->status = status;
    resp->content_type = JSON_CT;
    resp->body.len = 0;
    json_t *j = json_pack("{s:s}", "error", reason);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text) {
        bl_strbuf_puts(&resp->body, text);
        bl_strbuf_puts(&resp->body, "\n");
    } else {
        bl_strbuf_puts(&resp->body, "{\"error\":\"out of memory\"}\n");
    }
    free(text);
    json_decref(j);
}

static void errorf(struct bl_api_response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errorf(struct bl_api_response *resp, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bl_api_error(resp, status, msg);
}

void bl_api_reply_json(struct bl_api_response *resp, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                       JSON_REAL_PRECISION(6))
                   : NULL;
    json_decref(j);
    if (!text) {
        bl_api_error(resp, 500, "out of memory");
        return;
    }
    resp->status = status;
    resp->content_type = JSON_CT;
    bl_strbuf_puts(&resp->body, text);
    bl_strbuf_puts(&resp->body, "\n");
    free(text);
    if (resp->body.failed)
        bl_api_error(resp, 500, "out of memory");
}

static void method_not_allowed(struct bl_api_response *resp, const char *allow)
{
    errorf(resp, 405, "method not allowed here (allowed: %s)", allow);
    resp->allow = allow;
}

/* ---------------------------------------------------------------- reading state */

/* A server's counters summed over the workers. */
struct peer_sum {
    uint64_t responses[BL_STATS_NCLASSES];
    uint64_t bytes_out, bytes_in;   /* to and from the server */
    uint64_t failures;
    uint64_t timed;            /* answered attempts with a response time */
    uint64_t time_us;          /* their sum */
};

static void peer_sum(const struct bl_stats_set *set, uint32_t id, struct peer_sum *out)
{
    memset(out, 0, sizeof(*out));
    if (!set || id >= set->npeers)
        return;
    for (uint32_t w = 0; w < set->nworkers; w++) {
        const struct bl_stats_peer *p = &set->workers[w]->peers[id];
        for (unsigned k = 0; k < BL_STATS_NCLASSES; k++)
            out->responses[k] += bl_stat_load(&p->responses[k]);
        for (unsigned k = 0; k < BL_SF_N; k++)
            out->failures += bl_stat_load(&p->failures[k]);
        out->bytes_out += bl_stat_load(&p->bytes_out);
        out->bytes_in += bl_stat_load(&p->bytes_in);
        for (unsigned k = 0; k <= BL_STATS_NBUCKETS; k++)
            out->timed += bl_stat_load(&p->header_time.buckets[k]);
        out->time_us += bl_stat_load(&p->header_time.sum_us);
    }
}

/* Weights of these methods place keys: changing one at run time would move keys the config
 * did not move, and their tables are built from the config's weights. */
static int weight_is_fixed(const struct bl_upstream_group *g)
{
    return (g->balancer->flags & (BL_BALANCER_KEY | BL_BALANCER_CLIENT)) != 0;
}

static json_t *server_json(const struct bl_api_ctx *ctx, const struct bl_upstream_server *s)
{
    static const char *const cls[BL_STATS_NCLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx",
                                                       "other"};
    struct peer_sum ps;
    peer_sum(ctx->stats, s->id, &ps);
    uint32_t admin = bl_server_admin(s);
    json_t *resp = json_object();
    for (unsigned k = 0; resp && k < BL_STATS_NCLASSES; k++)
        json_object_set_new(resp, cls[k], json_integer((json_int_t)ps.responses[k]));
    int64_t active = bl_server_active(s);
    json_t *j = json_pack(
        "{s:I, s:s, s:b, s:s, s:i, s:i, s:i, s:b, s:b, s:I, s:I, s:o, s:I, s:f, s:I, s:I}",
        "id", (json_int_t)s->index, "server", s->name, "backup", (int)s->backup, "state",
        bl_server_view_names[bl_server_view(s, ctx->now_ms)], "weight", bl_server_weight(s),
        "config_weight", s->weight, "max_conns", bl_server_max_conns(s), "down",
        bl_server_down(s), "drain", (admin & BL_ADMIN_DRAIN) != 0, "in_flight",
        (json_int_t)(active > 0 ? active : 0), "requests",
        (json_int_t)bl_server_requests(s),
        "responses", resp ? resp : json_null(), "failures", (json_int_t)ps.failures,
        "latency_ms", ps.timed ? (double)ps.time_us / (double)ps.timed / 1000.0 : 0.0,
        "response_time_us_total", (json_int_t)ps.time_us, "timed_responses",
        (json_int_t)ps.timed);
    if (!j)
        return NULL;
    if (s->group->check) {
        json_object_set_new(
            j, "health_checks",
            json_pack("{s:I, s:I}", "ok",
                      (json_int_t)atomic_load_explicit(&s->state->checks_ok,
                                                       memory_order_relaxed),
                      "failed",
                      (json_int_t)atomic_load_explicit(&s->state->checks_failed,
                                                       memory_order_relaxed)));
    }
    json_object_set_new(j, "sent_bytes", json_integer((json_int_t)ps.bytes_out));
    json_object_set_new(j, "received_bytes", json_integer((json_int_t)ps.bytes_in));
    if (s->group->outlier)
        json_object_set_new(j, "ejections",
                            json_integer((json_int_t)atomic_load_explicit(
                                &s->state->ejections_total, memory_order_relaxed)));
    return j;
}

static json_t *servers_json(const struct bl_api_ctx *ctx, const struct bl_upstream_group *g)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < g->nservers; i++) {
        json_t *s = server_json(ctx, &g->servers[i]);
        if (!s || json_array_append_new(arr, s) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *upstream_json(const struct bl_api_ctx *ctx, const struct bl_upstream_group *g)
{
    uint32_t avail = 0;
    for (uint32_t i = 0; i < g->nservers; i++)
        avail += (uint32_t)bl_server_view_available(&g->servers[i], ctx->now_ms);
    int64_t active = bl_group_active(g);
    json_t *servers = servers_json(ctx, g);
    if (!servers)
        return NULL;
    json_t *j = json_pack("{s:s, s:s, s:b, s:I, s:I, s:o}", "name", g->name, "method",
                          g->balancer->name, "weights_fixed", weight_is_fixed(g), "available",
                          (json_int_t)avail, "in_flight", (json_int_t)(active > 0 ? active : 0),
                          "servers", servers);
    return bl_api_protection_json(g, j);
}

/* Each worker's share of the traffic (bl_stats_worker_totals): the spread over workers. */
static json_t *workers_json(const struct bl_api_ctx *ctx)
{
    const struct bl_stats_set *set = ctx->stats;
    json_t *arr = json_array();
    for (uint32_t w = 0; arr && set && w < set->nworkers; w++) {
        struct bl_stats_worker_totals t;
        bl_stats_worker_totals(set, w, &t);
        json_t *e = json_pack("{s:I, s:I, s:I, s:I, s:I}", "id", (json_int_t)w + 1,
                              "requests", (json_int_t)t.requests, "connections_accepted",
                              (json_int_t)t.accepted, "connections_active",
                              (json_int_t)(t.conns - t.conns_idle), "connections_idle",
                              (json_int_t)t.conns_idle);
        if (!e || json_array_append_new(arr, e) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr ? json_pack("{s:o}", "workers", arr) : NULL;
}

/* Stream servers (one entry per stream listen): sessions begun, open, ended by $status, and
 * client bytes, summed over the workers. */
static json_t *stream_json(const struct bl_api_ctx *ctx)
{
    static const int codes[BL_STATS_NSTREAM - 1] = BL_STATS_STREAM_STATUSES;
    const struct bl_config *cfg = ctx->cfg;
    const struct bl_stats_set *set = ctx->stats;
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < cfg->nlistens; i++) {
        const struct bl_listen *ls = &cfg->listens[i];
        if (!ls->stream)
            continue;
        uint64_t c[sizeof(struct bl_stats_listen) / sizeof(bl_counter)] = {0};
        for (uint32_t w = 0; set && i < set->nlistens && w <= set->nworkers; w++) {
            const struct bl_stats_worker *b = w < set->nworkers ? set->workers[w] : set->base;
            const bl_counter *src = b ? (const bl_counter *)(const void *)&b->listens[i] : NULL;
            for (size_t k = 0; src && k < sizeof(c) / sizeof(c[0]); k++)
                c[k] += bl_stat_load(&src[k]);
        }
#define LS(field) (offsetof(struct bl_stats_listen, field) / sizeof(bl_counter))
        json_t *by = json_object();
        for (unsigned k = 0; by && k < BL_STATS_NSTREAM; k++) {
            char code[16];
            snprintf(code, sizeof(code), "%d", k < BL_STATS_NSTREAM - 1 ? codes[k] : 0);
            json_object_set_new(by, k < BL_STATS_NSTREAM - 1 ? code : "other",
                                json_integer((json_int_t)c[LS(sessions) + k]));
        }
        json_t *e = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:I, s:I}", "listen", ls->text,
                              "protocol", ls->udp ? "udp" : "tcp", "upstream",
                              ls->stream->upstream ? ls->stream->upstream->name : "",
                              "sessions_started", (json_int_t)c[LS(accepted)], "active",
                              (json_int_t)(int64_t)c[LS(conns)], "sessions",
                              by ? by : json_null(), "received_bytes",
                              (json_int_t)c[LS(bytes_in)], "sent_bytes",
                              (json_int_t)c[LS(bytes_out)]);
#undef LS
        if (!e || json_array_append_new(arr, e) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr ? json_pack("{s:o}", "servers", arr) : NULL;
}

/* ---------------------------------------------------------------- paths */

/* The next segment of a path, %XX decoded into buf; NULL when none is left. */
static const char *next_segment(const char **p, const char *end, char *buf, size_t len)
{
    if (*p >= end || **p != '/')
        return NULL;
    const char *s = ++*p;
    while (*p < end && **p != '/')
        (*p)++;
    size_t n = 0;
    for (const char *c = s; c < *p; c++) {
        char ch = *c;
        if (ch == '%' && *p - c >= 3) {
            char hex[3] = {c[1], c[2], 0};
            char *e;
            long v = strtol(hex, &e, 16);
            if (*e == '\0' && v > 0) {
                ch = (char)v;
                c += 2;
            }
        }
        if (n + 1 < len)
            buf[n++] = ch;
    }
    buf[n] = '\0';
    return buf;
}

static struct bl_upstream_group *find_group(const struct bl_config *cfg, const char *name)
{
    for (uint32_t i = 0; i < cfg->ngroups; i++)
        if (strcmp(cfg->groups[i]->name, name) == 0)
            return cfg->groups[i];
    return NULL;
}

/* ID: the decimal position the listing shows. NULL when there is no such server. */
static struct bl_upstream_server *find_server(struct bl_upstream_group *g, const char *id)
{
    char *end;
    if (!*id || *id == '-' || *id == '+')
        return NULL;
    unsigned long v = strtoul(id, &end, 10);
    if (*end || v >= g->nservers)
        return NULL;
    return &g->servers[v];
}

/* ---------------------------------------------------------------- PATCH */

struct patch {
    int weight, max_conns;     /* -1: not given */
    int down, drain;           /* -1: not given, else 0 or 1 */
};

/* Validates the whole body into p before anything is applied. BL_OK, or BL_ERR with the
 * answer filled. */
static int patch_parse(const struct bl_api_request *req, const struct bl_upstream_server *s,
                       struct patch *p, struct bl_api_response *resp)
{
    *p = (struct patch){-1, -1, -1, -1};
    json_error_t je;
    json_t *j = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES,
                           &je);
    if (!j) {
        errorf(resp, 400, "invalid JSON: %s (line %d, column %d)", je.text, je.line,
               je.column);
        return BL_ERR;
    }
    int rc = BL_ERR;
    const char *key;
    json_t *v;
    if (!json_is_object(j)) {
        errorf(resp, 400, "the body must be a JSON object such as {\"drain\": true}");
        goto out;
    }
    if (json_object_size(j) == 0) {
        errorf(resp, 400, "nothing to change: give weight, down, drain or max_conns");
        goto out;
    }
    json_object_foreach(j, key, v) {
        if (strcmp(key, "weight") == 0) {
            json_int_t w = json_is_integer(v) ? json_integer_value(v) : 0;
            if (!json_is_integer(v) || w < 1 || w > BL_WEIGHT_MAX) {
                errorf(resp, 400, "weight must be an integer from 1 to %d", BL_WEIGHT_MAX);
                goto out;
            }
            if (weight_is_fixed(s->group) && w != bl_server_weight(s)) {
                errorf(resp, 400, "upstream \"%s\" balances with \"%s\", whose weights place "
                       "keys: change weight= in the config and reload", s->group->name,
                       s->group->balancer->name);
                goto out;
            }
            p->weight = (int)w;
        } else if (strcmp(key, "max_conns") == 0) {
            json_int_t m = json_is_integer(v) ? json_integer_value(v) : -1;
            if (m < 0 || m > 1000000000) {
                errorf(resp, 400, "max_conns must be an integer from 0 (no limit) to "
                       "1000000000");
                goto out;
            }
            p->max_conns = (int)m;
        } else if (strcmp(key, "down") == 0 || strcmp(key, "drain") == 0) {
            if (!json_is_boolean(v)) {
                errorf(resp, 400, "%s must be true or false", key);
                goto out;
            }
            *(key[1] == 'o' ? &p->down : &p->drain) = json_is_true(v);
        } else {
            errorf(resp, 400, "unknown field \"%s\" (weight, down, drain, max_conns)", key);
            goto out;
        }
    }
    rc = BL_OK;
out:
    json_decref(j);
    return rc;
}

/* Applies a validated patch. Values first, then the bits that make workers read them, then
 * the group's flag before any of it can matter to a balancer's precomputed structure. */
static void patch_apply(const struct bl_api_ctx *ctx, struct bl_upstream_server *s,
                        const struct patch *p)
{
    struct bl_server_state *st = s->state;
    uint32_t old = bl_server_admin(s), a = old;
    int was_serving = !bl_server_down(s) && !(old & BL_ADMIN_DRAIN);
    int old_weight = bl_server_weight(s), old_max = bl_server_max_conns(s);
    if (p->weight >= 0) {
        if (p->weight == s->weight) {
            a &= ~BL_ADMIN_WEIGHT;
        } else {
            atomic_store_explicit(&st->admin_weight, p->weight, memory_order_relaxed);
            a |= BL_ADMIN_WEIGHT;
        }
    }
    if (p->max_conns >= 0) {
        if (p->max_conns == s->max_conns) {
            a &= ~BL_ADMIN_MAX_CONNS;
        } else {
            atomic_store_explicit(&st->admin_max_conns, p->max_conns, memory_order_relaxed);
            a |= BL_ADMIN_MAX_CONNS;
        }
    }
    if (p->down == 1)
        a = (a | BL_ADMIN_DOWN) & ~BL_ADMIN_UP;
    else if (p->down == 0)
        a = (a & ~BL_ADMIN_DOWN) | (s->down ? BL_ADMIN_UP : 0);
    if (p->drain == 1)
        a |= BL_ADMIN_DRAIN;
    else if (p->drain == 0)
        a &= ~BL_ADMIN_DRAIN;
    atomic_store_explicit(&s->group->gstate->admin_live, 1, memory_order_release);
    atomic_store_explicit(&st->admin, a, memory_order_release);
    int serving = !bl_server_down(s) && !(a & BL_ADMIN_DRAIN);
    if (serving && !was_serving && s->slow_start_ms)
        atomic_store_explicit(&st->up_since_ms, ctx->now_ms, memory_order_relaxed);

    char what[256] = "";
    size_t n = 0;
    if (bl_server_weight(s) != old_weight)
        n += (size_t)snprintf(what + n, sizeof(what) - n, ", weight %d -> %d", old_weight,
                              bl_server_weight(s));
    if (bl_server_max_conns(s) != old_max && n < sizeof(what))
        n += (size_t)snprintf(what + n, sizeof(what) - n, ", max_conns %d -> %d", old_max,
                              bl_server_max_conns(s));
    if (p->down >= 0 && n < sizeof(what))
        n += (size_t)snprintf(what + n, sizeof(what) - n, ", down %s", p->down ? "on" : "off");
    if (p->drain >= 0 && n < sizeof(what))
        snprintf(what + n, sizeof(what) - n, ", drain %s", p->drain ? "on" : "off");
    bl_log(BL_LOG_NOTICE, "admin: upstream \"%s\" server %s (id %u)%s", s->group->name,
           s->name, s->index, what[0] ? what : ": no change");
}

/* ---------------------------------------------------------------- routes */

static void route_health(const struct bl_api_ctx *ctx, struct bl_api_response *resp)
{
    const struct bl_config *cfg = ctx->cfg;
    for (uint32_t g = 0; g < cfg->ngroups; g++) {
        const struct bl_upstream_group *grp = cfg->groups[g];
        uint32_t avail = 0;
        for (uint32_t i = 0; i < grp->nservers; i++)
            avail += (uint32_t)bl_server_view_available(&grp->servers[i], ctx->now_ms);
        if (!avail) {
            char reason[512];
            snprintf(reason, sizeof(reason), "upstream \"%s\" has no available server",
                     grp->name);
            bl_api_reply_json(resp, 503, json_pack("{s:s, s:s}", "status", "unavailable", "reason",
                                                   reason));
            return;
        }
    }
    bl_api_reply_json(resp, 200, json_pack("{s:s, s:I}", "status", "ok", "upstreams",
                                           (json_int_t)cfg->ngroups));
}

static void route_metrics(const struct bl_api_ctx *ctx, struct bl_api_response *resp)
{
    struct bl_metrics_source src = {.cfg = ctx->cfg, .stats = ctx->stats,
                                     .version = BL_VERSION, .now_ms = ctx->now_ms};
    if (bl_metrics_render(&resp->body, &src) != BL_OK) {
        bl_strbuf_free(&resp->body);
        bl_api_error(resp, 500, "out of memory while rendering the metrics");
        return;
    }
    resp->status = 200;
    resp->content_type = BL_METRICS_CONTENT_TYPE;
}

/* ---------------------------------------------------------------- adding and removing */

/* The body of a POST: {"server": "IP:PORT", "weight": N, "max_conns": N, "max_fails": N,
 * "fail_timeout": "TIME", "slow_start": "TIME", "backup": B, "down": B} as the words of a
 * `server` line (args, up to 8, each malloc'ed into buf). BL_OK, or BL_ERR with the answer. */
static int add_parse(const struct bl_api_request *req, const struct bl_upstream_group *g,
                     char args[8][96], int *nargs, struct bl_api_response *resp)
{
    json_error_t je;
    json_t *j = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES,
                           &je);
    if (!j) {
        errorf(resp, 400, "invalid JSON: %s (line %d, column %d)", je.text, je.line,
               je.column);
        return BL_ERR;
    }
    int rc = BL_ERR, n = 1;
    const char *key;
    json_t *v;
    if (!json_is_object(j) || !json_is_string(json_object_get(j, "server"))) {
        errorf(resp, 400, "the body must be a JSON object with \"server\": \"IP:PORT\"");
        goto out;
    }
    json_object_foreach(j, key, v) {
        if (strcmp(key, "server") == 0) {
            struct sockaddr_storage ss;
            socklen_t sl;
            char err[256];
            const char *text = json_string_value(v);
            if (strlen(text) >= 80 || !(text[0] == '[' || (text[0] >= '0' && text[0] <= '9')) ||
                bl_addr_parse(text, 0, 0, &ss, &sl, err, sizeof(err))) {
                errorf(resp, 400, "server must be IP:PORT or [IPv6]:PORT (no host names: "
                       "nothing is resolved at run time)");
                goto out;
            }
            bl_addr_format((struct sockaddr *)&ss, args[0], 96);
            for (uint32_t i = 0; i < g->nservers; i++)
                if (bl_upstream_addr_equal(&g->servers[i].addr, &ss)) {
                    errorf(resp, 400, "upstream \"%s\" has server %s already (id %u)",
                           g->name, args[0], g->servers[i].index);
                    goto out;
                }
        } else if (strcmp(key, "weight") == 0 || strcmp(key, "max_conns") == 0 ||
                   strcmp(key, "max_fails") == 0) {
            json_int_t lo = key[0] == 'w' ? 1 : 0;
            json_int_t hi = key[0] == 'w' ? BL_WEIGHT_MAX : key[4] == 'c' ? 1000000000 : 1000000;
            if (!json_is_integer(v) || json_integer_value(v) < lo ||
                json_integer_value(v) > hi) {
                errorf(resp, 400, "%s must be an integer from %lld to %lld", key,
                       (long long)lo, (long long)hi);
                goto out;
            }
            snprintf(args[n++], 96, "%s=%lld", key, (long long)json_integer_value(v));
        } else if (strcmp(key, "fail_timeout") == 0 || strcmp(key, "slow_start") == 0) {
            uint64_t ms;
            const char *t = json_string_value(v);
            if (!t || strlen(t) > 32 || bl_parse_time_ms(t, 1000, 30 * 86400000ull, &ms)) {
                errorf(resp, 400, "%s must be a time such as \"10s\" or \"500ms\"", key);
                goto out;
            }
            snprintf(args[n++], 96, "%s=%s", key, t);
        } else if (strcmp(key, "backup") == 0 || strcmp(key, "down") == 0) {
            if (!json_is_boolean(v)) {
                errorf(resp, 400, "%s must be true or false", key);
                goto out;
            }
            if (json_is_true(v))
                snprintf(args[n++], 96, "%s", key);
        } else {
            errorf(resp, 400, "unknown field \"%s\" (server, weight, max_conns, max_fails, "
                   "fail_timeout, slow_start, backup, down)", key);
            goto out;
        }
    }
    *nargs = n;
    rc = BL_OK;
out:
    json_decref(j);
    return rc;
}

/* The server at addr in the group called name of the generation serving now. */
static const struct bl_upstream_server *current_server(const char *name, const char *addr,
                                                       struct bl_api_ctx *now)
{
    const struct bl_generation *gen = bl_reload_current();
    now->cfg = gen->cfg;
    now->stats = gen->stats;
    struct bl_upstream_group *g = find_group(gen->cfg, name);
    struct sockaddr_storage ss;
    socklen_t sl;
    char err[128];
    if (!g || bl_addr_parse(addr, 80, 0, &ss, &sl, err, sizeof(err)) != 0)
        return NULL;
    for (uint32_t i = 0; i < g->nservers; i++)
        if (bl_upstream_addr_equal(&g->servers[i].addr, &ss))
            return &g->servers[i];
    return NULL;
}

static void route_add(const struct bl_api_ctx *ctx, const struct bl_api_request *req,
                      const struct bl_upstream_group *g, struct bl_api_response *resp)
{
    char args[8][96];
    char *argv[8];
    int n = 0;
    if (add_parse(req, g, args, &n, resp) != BL_OK)
        return;
    if (!bl_conf_overlay_has_upstream(ctx->cfg->tree, g->name)) {
        errorf(resp, 400, "\"%s\" is a proxy_pass address, not an upstream block: servers can "
               "be added to upstream blocks only", g->name);
        return;
    }
    for (int i = 0; i < n; i++)
        argv[i] = args[i];
    char name[512], err[1024];
    snprintf(name, sizeof(name), "%s", g->name);
    void *h = bl_conf_overlay_add(name, argv, n);
    if (!h) {
        bl_api_error(resp, 500, "out of memory");
        return;
    }
    if (bl_reload(NULL, err, sizeof(err)) != BL_OK) {
        bl_conf_overlay_undo(h);
        errorf(resp, 400, "the reload that adds the server was refused: %s", err);
        return;
    }
    struct bl_api_ctx now = *ctx;
    const struct bl_upstream_server *s = current_server(name, args[0], &now);
    if (!s) {
        bl_api_error(resp, 500, "the reload succeeded but the server is not in the new "
                     "configuration");
        return;
    }
    bl_log(BL_LOG_NOTICE, "admin: upstream \"%s\" server %s added (id %u)", name, args[0],
           s->index);
    bl_api_reply_json(resp, 201, server_json(&now, s));
}

static void route_remove(const struct bl_api_ctx *ctx, const struct bl_upstream_group *g,
                         const struct bl_upstream_server *s, struct bl_api_response *resp)
{
    if (g->nservers == 1 || (!s->backup && g->nprimary == 1)) {
        errorf(resp, 400, "server %s is the last %sserver of upstream \"%s\": an upstream needs "
               "one", s->name, g->nservers == 1 ? "" : "primary ", g->name);
        return;
    }
    if (!bl_conf_overlay_has_upstream(ctx->cfg->tree, g->name)) {
        errorf(resp, 400, "\"%s\" is a proxy_pass address, not an upstream block", g->name);
        return;
    }
    char name[512], addr[128], err[1024];
    snprintf(name, sizeof(name), "%s", g->name);
    snprintf(addr, sizeof(addr), "%s", s->name);
    int nline = 0;
    char **line = bl_conf_overlay_line(ctx->cfg->tree, name, addr, &nline);
    void *h = NULL;
    int rc = bl_conf_overlay_remove(name, addr, line, nline, &h);
    bl_conf_overlay_free_args(line, nline);
    if (rc != BL_OK) {
        bl_api_error(resp, 500, "out of memory");
        return;
    }
    /* From here g and s belong to a generation that may go: only the copies above are used. */
    if (bl_reload(NULL, err, sizeof(err)) != BL_OK) {
        bl_conf_overlay_undo(h);
        errorf(resp, 400, "the reload that removes the server was refused: %s", err);
        return;
    }
    bl_log(BL_LOG_NOTICE, "admin: upstream \"%s\" server %s removed (requests in flight on it "
           "finish)", name, addr);
    bl_api_reply_json(resp, 200, json_pack("{s:s, s:s, s:s, s:I}", "status", "removed", "upstream",
                                           name, "server", addr, "generation",
                                           (json_int_t)bl_reload_current()->number));
}

static void route_upstreams(const struct bl_api_ctx *ctx, const struct bl_api_request *req,
                            const char *p, const char *end, struct bl_api_response *resp)
{
    char name[512], sub[64], id[64];
    int get = req->method == BL_H1_M_GET || req->method == BL_H1_M_HEAD;
    if (!next_segment(&p, end, name, sizeof(name)) || !name[0]) {
        if (!get) {
            method_not_allowed(resp, "GET, HEAD");
            return;
        }
        json_t *arr = json_array();
        for (uint32_t g = 0; arr && g < ctx->cfg->ngroups; g++)
            if (json_array_append_new(arr, upstream_json(ctx, ctx->cfg->groups[g])) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        bl_api_reply_json(resp, 200, arr ? json_pack("{s:o}", "upstreams", arr) : NULL);
        return;
    }
    struct bl_upstream_group *g = find_group(ctx->cfg, name);
    if (!next_segment(&p, end, sub, sizeof(sub))) {
        if (!get) {
            method_not_allowed(resp, "GET, HEAD");
            return;
        }
        if (!g) {
            errorf(resp, 404, "no upstream \"%s\"", name);
            return;
        }
        bl_api_reply_json(resp, 200, upstream_json(ctx, g));
        return;
    }
    if (strcmp(sub, "servers") != 0) {
        errorf(resp, 404, "no such resource: /api/upstreams/NAME/servers[/ID]");
        return;
    }
    const char *idp = next_segment(&p, end, id, sizeof(id));
    if (p < end) {
        errorf(resp, 404, "no such resource: /api/upstreams/NAME/servers[/ID]");
        return;
    }
    int code = req->method == BL_H1_M_GET || req->method == BL_H1_M_HEAD ? 404 : 400;
    if (!idp || !id[0]) {
        if (req->method == BL_H1_M_POST) {
            if (!g) {
                errorf(resp, 400, "no upstream \"%s\"", name);
                return;
            }
            route_add(ctx, req, g, resp);
            return;
        }
        if (!get) {
            method_not_allowed(resp, "GET, HEAD, POST");
            return;
        }
        if (!g) {
            errorf(resp, 404, "no upstream \"%s\"", name);
            return;
        }
        bl_api_reply_json(resp, 200, servers_json(ctx, g));
        return;
    }
    if (!get && req->method != BL_H1_M_PATCH && req->method != BL_H1_M_DELETE) {
        method_not_allowed(resp, "GET, HEAD, PATCH, DELETE");
        return;
    }
    if (!g) {
        errorf(resp, code, "no upstream \"%s\"", name);
        return;
    }
    struct bl_upstream_server *s = find_server(g, id);
    if (!s) {
        errorf(resp, code, "no server with id \"%s\" in upstream \"%s\" (ids 0..%u)", id,
                      name, g->nservers - 1);
        return;
    }
    if (get) {
        bl_api_reply_json(resp, 200, server_json(ctx, s));
        return;
    }
    if (req->method == BL_H1_M_DELETE) {
        route_remove(ctx, g, s, resp);
        return;
    }
    struct patch pt;
    if (patch_parse(req, s, &pt, resp) != BL_OK)
        return;
    patch_apply(ctx, s, &pt);
    bl_api_reply_json(resp, 200, server_json(ctx, s));
}

static int path_is(const struct bl_api_request *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

void bl_api_handle(const struct bl_api_ctx *ctx, const struct bl_api_request *req,
                   struct bl_api_response *resp)
{
    int get = req->method == BL_H1_M_GET || req->method == BL_H1_M_HEAD;
    const char *end = req->path + req->path_len;
    if (path_is(req, "/metrics")) {
        if (!get) {
            method_not_allowed(resp, "GET, HEAD");
            return;
        }
        route_metrics(ctx, resp);
        return;
    }
    if (path_is(req, "/status") || path_is(req, "/status/")) {
        if (!get) {
            method_not_allowed(resp, "GET, HEAD");
            return;
        }
        resp->status = 200;
        resp->content_type = "text/html; charset=utf-8";
        resp->static_body = bl_status_page;
        resp->static_len = bl_status_page_len;
        return;
    }
    if (path_is(req, "/api/health")) {
        if (!get) {
            method_not_allowed(resp, "GET, HEAD");
            return;
        }
        route_health(ctx, resp);
        return;
    }
    if (path_is(req, "/api/reload")) {
        if (req->method != BL_H1_M_POST) {
            method_not_allowed(resp, "POST");
            return;
        }
        char err[1024];
        if (bl_reload(NULL, err, sizeof(err)) != BL_OK) {
            bl_api_reply_json(resp, 400, json_pack("{s:s, s:s}", "error", err, "status",
                                                   "refused: the running configuration serves on"));
            return;
        }
        bl_api_reply_json(resp, 200, json_pack("{s:s, s:I}", "status", "ok", "generation",
                                               (json_int_t)bl_reload_current()->number));
        return;
    }
    if (path_is(req, "/api/workers")) {
        if (!get) {
            method_not_allowed(resp, "GET, HEAD");
            return;
        }
        bl_api_reply_json(resp, 200, workers_json(ctx));
        return;
    }
    if (path_is(req, "/api/stream")) {
        if (!get) {
            method_not_allowed(resp, "GET, HEAD");
            return;
        }
        bl_api_reply_json(resp, 200, stream_json(ctx));
        return;
    }
    if (req->path_len >= 14 && memcmp(req->path, "/api/upstreams", 14) == 0 &&
        (req->path_len == 14 || req->path[14] == '/'))
        {
            route_upstreams(ctx, req, req->path + 14, end, resp);
            return;
        }
    if (req->path_len >= 14 && memcmp(req->path, "/api/locations", 14) == 0 &&
        (req->path_len == 14 || req->path[14] == '/')) {
        bl_api_locations(ctx, req, req->path + 14, end, resp);
        return;
    }
    if (req->path_len >= 10 && memcmp(req->path, "/api/cache", 10) == 0 &&
        (req->path_len == 10 || req->path[10] == '/')) {
        bl_api_cache(ctx, req, req->path + 10, end, resp);
        return;
    }
    errorf(resp, 404, "no such resource: %.*s (see /api/upstreams, /api/stream, /api/workers, "
           "/api/cache, /api/health, /metrics, /status)", (int)(req->path_len > 200 ? 200 : req->path_len), req->path);
}
