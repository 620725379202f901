/* The etcd watcher of `discover etcd` (etcd.h): a small non-blocking HTTP/1.1 client. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/discovered.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/sock.h"
#include "core/status.h"
#include "discover/discover.h"
#include "discover/etcd.h"
#include "http/dechunk.h"
#include "http/h1_parser.h"
#include "upstream/upstream.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 3000
#define RANGE_TIMEOUT_MS 10000   /* a range answer takes longer than this: etcd is stuck */
#define MAX_BODY (16u << 20)     /* a range answer or one watch line */

/* The exchange in progress. */
enum etcd_state {
    ST_IDLE = 0,      /* waiting for the retry timer */
    ST_CONNECTING,    /* connect() in progress */
    ST_SENDING,       /* writing the request */
    ST_HEAD,          /* reading the response head */
    ST_BODY,          /* reading the body (range: whole; watch: line by line, forever) */
};

struct kv {
    char *key;
    char *value;
    int valid;        /* value passed bl_conf_check_server_line() */
};

struct bl_etcd {
    struct bl_loop *loop;
    char *group, *url, *prefix;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct bl_io io;
    struct bl_timer timer;     /* retry, or connect/answer deadline */
    enum etcd_state state;
    int watching;              /* the exchange is a watch (else a range) */
    char *out;                 /* the request */
    size_t out_len, out_sent;
    char *in;                  /* raw bytes read */
    size_t in_len, in_cap;
    struct bl_h1_parser parser;
    struct bl_h1_message msg;
    struct bl_h1_header fields[BL_H1_MAX_HEADERS]; /* msg's */
    struct bl_h1_chunked chunked;
    struct bl_dechunk dechunk;
    uint8_t body_kind;         /* enum bl_h1_body */
    uint64_t body_left;        /* BL_H1_BODY_LENGTH: bytes to come */
    char *data;                /* the body without framing */
    size_t data_len, data_cap;
    long long revision;        /* last revision applied; 0: none (a range comes first) */
    struct kv *kvs;
    size_t nkvs;
    uint32_t backoff_ms;
    int outage;                /* an outage was logged and not yet ended */
    int published;             /* a set was published at least once */
};

static void start_exchange(struct bl_etcd *w);

static void reset_conn(struct bl_etcd *w)
{
    bl_loop_close(w->loop, &w->io);
    free(w->out);
    w->out = NULL;
    w->in_len = w->data_len = 0;
    w->state = ST_IDLE;
}

/* The exchange failed: keep the set, log once per outage, retry with backoff. */
static void fail(struct bl_etcd *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct bl_etcd *w, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    reset_conn(w);
    if (!w->outage) {
        w->outage = 1;
        const struct bl_discovered *d = bl_conf_discovered_get(w->group, NULL);
        bl_log(BL_LOG_ERROR, "discover: etcd %s for upstream \"%s\" failed: %s; keeping %s "
               "(%u servers) and retrying", w->url, w->group, why,
               d ? "the last set it gave" : "the servers of the config file",
               d ? d->nitems : 0);
    }
    if (w->backoff_ms < BACKOFF_MIN_MS)
        w->backoff_ms = BACKOFF_MIN_MS;
    bl_timer_set(w->loop, &w->timer, bl_now_ms() + w->backoff_ms);
    w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
}

static void answered(struct bl_etcd *w)
{
    w->backoff_ms = 0;
    if (w->outage) {
        w->outage = 0;
        bl_log(BL_LOG_NOTICE, "discover: etcd %s answers again for upstream \"%s\"", w->url,
               w->group);
    }
}

/* ------------------------------------------------------------ the set */

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

static void kvs_clear(struct bl_etcd *w)
{
    for (size_t i = 0; i < w->nkvs; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value);
    }
    free(w->kvs);
    w->kvs = NULL;
    w->nkvs = 0;
}

static struct kv *kv_find(struct bl_etcd *w, const char *key)
{
    for (size_t i = 0; i < w->nkvs; i++)
        if (strcmp(w->kvs[i].key, key) == 0)
            return &w->kvs[i];
    return NULL;
}

static void kv_del(struct bl_etcd *w, const char *key)
{
    struct kv *k = kv_find(w, key);
    if (!k)
        return;
    free(k->key);
    free(k->value);
    *k = w->kvs[--w->nkvs];
}

/* key = value; the value is checked here, once per change. BL_ERR: out of memory. */
static int kv_put(struct bl_etcd *w, const char *key, const char *value)
{
    struct kv *k = kv_find(w, key);
    if (k && strcmp(k->value, value) == 0)
        return BL_OK;
    char *v = strdup(value);
    if (!v)
        return BL_ERR;
    if (!k) {
        struct kv *kvs = realloc(w->kvs, (w->nkvs + 1) * sizeof(*kvs));
        char *kc = strdup(key);
        if (!kvs || !kc) {
            if (kvs)
                w->kvs = kvs;
            free(kc);
            free(v);
            return BL_ERR;
        }
        w->kvs = kvs;
        k = &w->kvs[w->nkvs++];
        k->key = kc;
        k->value = NULL;
    }
    free(k->value);
    k->value = v;
    char err[512];
    k->valid = bl_conf_check_server_line(v, err, sizeof(err)) == BL_OK;
    if (!k->valid)
        bl_log(BL_LOG_ERROR, "discover: etcd key \"%s\" for upstream \"%s\" holds \"%s\": %s; "
               "left out", key, w->group, v, err);
    return BL_OK;
}

/* Publishes the valid values in key order; a changed set schedules a reload. */
static void publish(struct bl_etcd *w)
{
    if (w->nkvs > 1)
        qsort(w->kvs, w->nkvs, sizeof(*w->kvs), cmp_kv);
    char **items = calloc(w->nkvs + 1, sizeof(*items));
    if (!items) {
        bl_log(BL_LOG_ERROR, "discover: out of memory publishing upstream \"%s\"", w->group);
        return;
    }
    uint32_t n = 0;
    for (size_t i = 0; i < w->nkvs; i++)
        if (w->kvs[i].valid)
            items[n++] = w->kvs[i].value;
    if (n == 0) {
        const struct bl_discovered *d = bl_conf_discovered_get(w->group, NULL);
        bl_log(BL_LOG_WARN, "discover: etcd prefix \"%s\" holds no usable server for upstream "
               "\"%s\"; keeping %s", w->prefix, w->group,
               d ? "the last set" : "the servers of the config file");
        free(items);
        return;
    }
    int rc = bl_conf_discovered_set(w->group, NULL, items, n);
    free(items);
    if (rc == BL_ERR) {
        bl_log(BL_LOG_ERROR, "discover: out of memory publishing upstream \"%s\"", w->group);
        return;
    }
    if (rc == 1 || !w->published) {
        char what[600];
        snprintf(what, sizeof(what), "etcd: upstream \"%s\" has %u servers (revision %lld)",
                 w->group, n, w->revision);
        bl_discover_changed(what);
    }
    w->published = 1;
}

/* ------------------------------------------------------------ JSON answers */

static char *b64_decode(const char *s)
{
    size_t len = strlen(s);
    if (len % 4)
        return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 1);
    if (!out)
        return NULL;
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (n < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    for (size_t i = len; i > 0 && s[i - 1] == '='; i--)
        n--;
    out[n] = 0;
    if (memchr(out, 0, (size_t)n)) { /* keys and server lines are text */
        free(out);
        return NULL;
    }
    return (char *)out;
}

static char *b64_encode(const unsigned char *s, size_t len)
{
    char *out = malloc(len / 3 * 4 + 8);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, s, (int)len);
    return out;
}

static long long json_revision(json_t *o)
{
    json_t *v = json_object_get(o, "revision");
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    return 0;
}

/* One kv object of a range or an event: PUT (or DELETE when del). BL_ERR: out of memory;
 * a kv that does not decode is skipped with a log line. */
static int apply_kv(struct bl_etcd *w, json_t *kv, int del)
{
    const char *k64 = json_string_value(json_object_get(kv, "key"));
    const char *v64 = json_string_value(json_object_get(kv, "value"));
    char *key = k64 ? b64_decode(k64) : NULL;
    if (!key) {
        bl_log(BL_LOG_WARN, "discover: etcd sent a key that is not text for upstream \"%s\"",
               w->group);
        return BL_OK;
    }
    int rc = BL_OK;
    if (del) {
        kv_del(w, key);
    } else {
        char *value = b64_decode(v64 ? v64 : "");
        if (value)
            rc = kv_put(w, key, value);
        else
            bl_log(BL_LOG_ERROR, "discover: etcd key \"%s\" for upstream \"%s\" holds no text; "
                   "left out", key, w->group);
        free(value);
    }
    free(key);
    return rc;
}

/* The whole range answer in w->data. */
static void on_range(struct bl_etcd *w)
{
    json_error_t je;
    json_t *j = json_loadb(w->data, w->data_len, 0, &je);
    json_t *header = j ? json_object_get(j, "header") : NULL;
    long long rev = header ? json_revision(header) : 0;
    if (!j || rev <= 0) {
        json_decref(j);
        fail(w, "the range answer is not what etcd's gateway sends (%s)",
             j ? "no revision" : je.text);
        return;
    }
    kvs_clear(w);
    json_t *kvs = json_object_get(j, "kvs");
    size_t i;
    json_t *kv;
    json_array_foreach(kvs, i, kv)
        if (apply_kv(w, kv, 0) != BL_OK) {
            json_decref(j);
            fail(w, "out of memory");
            return;
        }
    json_decref(j);
    w->revision = rev;
    answered(w);
    publish(w);
    reset_conn(w);
    start_exchange(w); /* the watch, from rev + 1 */
}

/* One line of the watch stream. BL_ERR: the stream must restart (w is reset). */
static int on_watch_line(struct bl_etcd *w, const char *line, size_t len)
{
    json_error_t je;
    json_t *j = json_loadb(line, len, 0, &je);
    json_t *res = j ? json_object_get(j, "result") : NULL;
    if (!res) {
        json_t *e = j ? json_object_get(j, "error") : NULL;
        char msg[200];
        snprintf(msg, sizeof(msg), "%s", e ? json_string_value(json_object_get(e, "message"))
                                             ? json_string_value(json_object_get(e, "message"))
                                             : "error"
                                           : j ? "no result" : je.text);
        json_decref(j);
        fail(w, "the watch stream said: %s", msg);
        return BL_ERR;
    }
    json_t *compact = json_object_get(res, "compact_revision");
    long long crev = json_is_string(compact) ? strtoll(json_string_value(compact), NULL, 10)
                                             : json_is_integer(compact)
                                                   ? (long long)json_integer_value(compact)
                                                   : 0;
    if (crev > 0) {
        bl_log(BL_LOG_NOTICE, "discover: etcd compacted revision %lld (upstream \"%s\" had "
               "seen %lld): reading the prefix again", crev, w->group, w->revision);
        json_decref(j);
        w->revision = 0;
        reset_conn(w);
        start_exchange(w);
        return BL_ERR;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        json_decref(j);
        fail(w, "etcd canceled the watch");
        return BL_ERR;
    }
    answered(w);
    json_t *events = json_object_get(res, "events");
    size_t i;
    json_t *ev;
    int changed = 0;
    json_array_foreach(events, i, ev) {
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *kv = json_object_get(ev, "kv");
        long long mod = kv ? strtoll(json_string_value(json_object_get(kv, "mod_revision"))
                                         ? json_string_value(json_object_get(kv, "mod_revision"))
                                         : "0", NULL, 10)
                           : 0;
        if (!kv || (mod && mod <= w->revision))
            continue; /* already applied (a resumed stream may repeat one) */
        if (apply_kv(w, kv, type && strcmp(type, "DELETE") == 0) != BL_OK) {
            json_decref(j);
            fail(w, "out of memory");
            return BL_ERR;
        }
        if (mod > w->revision)
            w->revision = mod;
        changed = 1;
    }
    json_decref(j);
    if (changed)
        publish(w);
    return BL_OK;
}

/* ------------------------------------------------------------ HTTP */

static int buf_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n + 1)
            c *= 2;
        if (c > MAX_BODY + 65536)
            return BL_ERR;
        char *b = realloc(*buf, c);
        if (!b)
            return BL_ERR;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return BL_OK;
}

/* Body bytes [p, p+n): unframed into w->data; watch lines handled as they complete. BL_OK,
 * BL_AGAIN (more to come), or BL_ERR (w reset or restarted: stop touching the connection). */
static int on_body(struct bl_etcd *w, char *p, size_t n, int eof)
{
    int done = 0;
    if (w->body_kind == BL_H1_BODY_CHUNKED) {
        ssize_t used = bl_h1_chunked_scan(&w->chunked, p, n, &done);
        if (used < 0) {
            fail(w, "bad chunked framing (%s)", w->chunked.reason ? w->chunked.reason : "?");
            return BL_ERR;
        }
        n = bl_dechunk(&w->dechunk, p, (uint32_t)used);
    } else if (w->body_kind == BL_H1_BODY_LENGTH) {
        if (n > w->body_left)
            n = (size_t)w->body_left;
        w->body_left -= n;
        done = w->body_left == 0;
    } else {
        done = eof;
    }
    if (buf_append(&w->data, &w->data_len, &w->data_cap, p, n) != BL_OK) {
        fail(w, "an answer over %u bytes", MAX_BODY);
        return BL_ERR;
    }
    if (w->watching) {
        char *nl;
        size_t off = 0;
        while ((nl = memchr(w->data + off, '\n', w->data_len - off))) {
            size_t ll = (size_t)(nl - (w->data + off));
            if (ll && on_watch_line(w, w->data + off, ll) != BL_OK)
                return BL_ERR;
            off += ll + 1;
        }
        memmove(w->data, w->data + off, w->data_len - off);
        w->data_len -= off;
        if (done || eof) {
            fail(w, "etcd ended the watch stream");
            return BL_ERR;
        }
        return BL_AGAIN;
    }
    if (!done) {
        if (eof) {
            fail(w, "etcd closed the connection mid-answer");
            return BL_ERR;
        }
        return BL_AGAIN;
    }
    on_range(w);
    return BL_ERR; /* w moved on to the watch */
}

static void on_readable(struct bl_etcd *w)
{
    for (;;) {
        char tmp[16384];
        ssize_t r = recv(w->io.fd, tmp, sizeof(tmp), 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(w, "recv() failed (%s)", strerror(errno));
            return;
        }
        int eof = r == 0;
        if (w->state == ST_HEAD) {
            if (eof) {
                fail(w, "etcd closed the connection before answering");
                return;
            }
            if (buf_append(&w->in, &w->in_len, &w->in_cap, tmp, (size_t)r) != BL_OK) {
                fail(w, "out of memory");
                return;
            }
            int hl = bl_h1_parse(&w->parser, w->in, w->in_len, &w->msg);
            if (hl == BL_AGAIN)
                continue;
            if (hl < 0) {
                fail(w, "bad HTTP answer (%s)", w->parser.reason ? w->parser.reason : "?");
                return;
            }
            if (w->msg.status != 200) {
                fail(w, "HTTP %u to %s", w->msg.status,
                     w->watching ? "/v3/watch" : "/v3/kv/range");
                return;
            }
            w->state = ST_BODY;
            w->body_kind = w->msg.body;
            w->body_left = w->msg.content_length;
            bl_h1_chunked_init(&w->chunked);
            bl_dechunk_init(&w->dechunk);
            w->data_len = 0;
            size_t rest = w->in_len - (size_t)hl;
            if (w->watching)
                bl_timer_cancel(w->loop, &w->timer); /* a watch may stay quiet for ever */
            if (rest || (w->body_kind == BL_H1_BODY_LENGTH && !w->body_left)) {
                if (on_body(w, w->in + hl, rest, 0) != BL_AGAIN)
                    return;
            }
            continue;
        }
        if (on_body(w, tmp, (size_t)r, eof) != BL_AGAIN)
            return;
        if (eof)
            return;
    }
}

static void on_writable(struct bl_etcd *w)
{
    if (w->state == ST_CONNECTING) {
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(w->io.fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e) {
            fail(w, "connect() failed (%s)", strerror(e ? e : errno));
            return;
        }
        w->state = ST_SENDING;
    }
    while (w->state == ST_SENDING && w->out_sent < w->out_len) {
        ssize_t s = send(w->io.fd, w->out + w->out_sent, w->out_len - w->out_sent,
                         MSG_NOSIGNAL);
        if (s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (s < 0) {
            fail(w, "send() failed (%s)", strerror(errno));
            return;
        }
        w->out_sent += (size_t)s;
    }
    if (w->state == ST_SENDING)
        w->state = ST_HEAD;
}

static void on_io(struct bl_io *io, uint32_t ev)
{
    struct bl_etcd *w = (struct bl_etcd *)((char *)io - offsetof(struct bl_etcd, io));
    if ((ev & (BL_EV_WRITE | BL_EV_ERROR)) &&
        (w->state == ST_CONNECTING || w->state == ST_SENDING))
        on_writable(w);
    if (w->io.fd >= 0 && (ev & (BL_EV_READ | BL_EV_ERROR | BL_EV_HUP)) &&
        (w->state == ST_HEAD || w->state == ST_BODY))
        on_readable(w);
}

static void on_timer(struct bl_timer *t)
{
    struct bl_etcd *w = (struct bl_etcd *)((char *)t - offsetof(struct bl_etcd, timer));
    if (w->state == ST_IDLE)
        start_exchange(w);
    else
        fail(w, "no answer within %d ms", w->state == ST_CONNECTING ? CONNECT_TIMEOUT_MS
                                                                     : RANGE_TIMEOUT_MS);
}

/* The range's end: the prefix with its last byte incremented (every key that starts with it). */
static size_t range_end(const char *prefix, unsigned char *out)
{
    size_t n = strlen(prefix);
    memcpy(out, prefix, n);
    while (n > 0 && out[n - 1] == 0xff)
        n--;
    if (n == 0) {
        out[0] = 0; /* "\0": every key from the prefix on */
        return 1;
    }
    out[n - 1]++;
    return n;
}

static void start_exchange(struct bl_etcd *w)
{
    reset_conn(w);
    w->watching = w->revision > 0;
    unsigned char end[600];
    size_t endlen = range_end(w->prefix, end);
    char *k64 = b64_encode((const unsigned char *)w->prefix, strlen(w->prefix));
    char *e64 = b64_encode(end, endlen);
    char body[2048];
    if (!k64 || !e64) {
        free(k64);
        free(e64);
        fail(w, "out of memory");
        return;
    }
    int bl;
    if (w->watching)
        bl = snprintf(body, sizeof(body), "{\"create_request\":{\"key\":\"%s\",\"range_end\":"
                      "\"%s\",\"start_revision\":\"%lld\"}}", k64, e64, w->revision + 1);
    else
        bl = snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":\"%s\"}", k64, e64);
    free(k64);
    free(e64);
    char head[512];
    int hl = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n",
                      w->watching ? "/v3/watch" : "/v3/kv/range", w->url + 7, bl,
                      w->watching ? "" : "Connection: close\r\n");
    w->out = malloc((size_t)hl + (size_t)bl + 1);
    if (!w->out) {
        fail(w, "out of memory");
        return;
    }
    memcpy(w->out, head, (size_t)hl);
    memcpy(w->out + hl, body, (size_t)bl);
    w->out_len = (size_t)hl + (size_t)bl;
    w->out_sent = 0;
    bl_h1_parser_init_response(&w->parser, 8192, 65536, 0);
    bl_h1_message_init(&w->msg, w->fields, BL_H1_MAX_HEADERS);
    int fd = bl_sock_connect((const struct sockaddr *)&w->addr, w->addrlen);
    if (fd < 0) {
        fail(w, "connect() failed (%s)", strerror(errno));
        return;
    }
    w->io.fd = fd;
    w->io.handler = on_io;
    if (bl_loop_add(w->loop, &w->io) != BL_OK) {
        fail(w, "epoll_ctl() failed (%s)", strerror(errno));
        return;
    }
    w->state = ST_CONNECTING;
    bl_timer_set(w->loop, &w->timer, bl_now_ms() + (w->watching ? CONNECT_TIMEOUT_MS
                                                                 : RANGE_TIMEOUT_MS));
}

struct bl_etcd *bl_etcd_start(struct bl_loop *loop, const struct bl_upstream_group *g)
{
    struct bl_etcd *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->loop = loop;
    w->io.fd = -1;
    w->timer.handler = on_timer;
    w->addr = g->discover_addr;
    w->addrlen = g->discover_addrlen;
    if (!(w->group = strdup(g->name)) || !(w->url = strdup(g->discover_url)) ||
        !(w->prefix = strdup(g->discover_prefix)) || strlen(w->prefix) > 400) {
        bl_etcd_stop(w, 0);
        return NULL;
    }
    size_t ul = strlen(w->url);
    if (ul > 7 && w->url[ul - 1] == '/')
        w->url[ul - 1] = 0;
    bl_log(BL_LOG_NOTICE, "discover: upstream \"%s\" follows etcd %s prefix \"%s\"", w->group,
           w->url, w->prefix);
    start_exchange(w);
    return w;
}

int bl_etcd_same(const struct bl_etcd *w, const struct bl_upstream_group *g)
{
    char url[600];
    snprintf(url, sizeof(url), "%s", g->discover_url ? g->discover_url : "");
    size_t ul = strlen(url);
    if (ul > 7 && url[ul - 1] == '/')
        url[ul - 1] = 0;
    return g->discover_url && strcmp(w->group, g->name) == 0 && strcmp(w->url, url) == 0 &&
           strcmp(w->prefix, g->discover_prefix) == 0;
}

void bl_etcd_stop(struct bl_etcd *w, int forget)
{
    if (!w)
        return;
    if (forget && w->group)
        bl_conf_discovered_drop(w->group, NULL);
    reset_conn(w);
    bl_timer_cancel(w->loop, &w->timer);
    kvs_clear(w);
    free(w->in);
    free(w->data);
    free(w->group);
    free(w->url);
    free(w->prefix);
    free(w);
}
