/* The response cache on the request path (proxy_cache.h; the store and its design: cache/cache.h;
 * docs/cache.md). RFC 9111 is followed where nginx departs from it; each such place says so. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/cache_control.h"
#include "conf/cache_conf.h"
#include "core/log.h"
#include "core/rand.h"
#include "http/gzip.h"
#include "http/proxy_cache.h"
#include "http/proxy_int.h"
#include "http/response.h"

/* Heuristic freshness (RFC 9111 4.2.2): a tenth of the time since Last-Modified, at most a
 * day. */
#define HEURISTIC_MAX_MS 86400000LL

struct bl_cache_req {
    const struct bl_cache_conf *cc;
    struct bl_cache_zone *z;
    char *primary;                   /* proxy_cache_key's value */
    uint32_t primary_len;
    char *key;                       /* the entry key looked up: primary, or a variant's */
    uint32_t key_len;
    uint32_t fill_id;                /* != 0: this request owns the fill of key */
    /* the entry found (hit, or stale kept for revalidation and errors) */
    int efd;
    struct bl_buf *hbuf;             /* its metadata, key, Vary names and head */
    struct bl_cache_meta m;
    uint8_t have_entry;
    uint8_t revalidating;            /* the upstream request is conditional */
    uint8_t background;              /* answer stale now, refresh after */
    uint8_t invalidate;              /* an unsafe method: a success removes the key */
    uint8_t requeue;                 /* woken from a wait: wait again with the old deadline */
    char etag[256];                  /* the entry's validators, for a revalidation */
    char last_modified[64];
    /* the fill */
    int tfd;                         /* temp file, or -1 */
    uint8_t filling;
    uint8_t fill_failed;
    uint8_t dechunk_on;
    struct bl_dechunk dechunk;
    uint64_t written;                /* body bytes in the temp file */
    struct bl_cache_meta fm;         /* the stored response's metadata */
    char *store_key;                 /* the entry key it is stored under (a variant's when the
                                      * response has Vary) */
    uint32_t store_key_len;
    char vary[512];
    char tmp[PATH_MAX];
};

static int64_t wall_ms(void) { return (int64_t)(bl_wall_us() / 1000); }

/* The value of request field name in r->msg: the first one, or NULL. */
static const struct bl_h1_header *field(const struct bl_h1_message *m, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name_len == n && strncasecmp(m->headers[i].name, name, n) == 0)
            return &m->headers[i];
    return NULL;
}

/* A template that is "on": not empty and not "0" (proxy_cache_bypass, proxy_no_cache). */
static int tpl_true(const struct bl_request *r, const struct bl_template *t)
{
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    char buf[64];
    size_t n = bl_template_eval(t, &v, buf, sizeof(buf));
    return n && !(n == 1 && buf[0] == '0');
}

static int any_true(const struct bl_request *r, struct bl_template *const *l, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (tpl_true(r, l[i]))
            return 1;
    return 0;
}

static char *eval_alloc(const struct bl_request *r, const struct bl_template *t, uint32_t *len)
{
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    char small[1024];
    size_t n = bl_template_eval(t, &v, small, sizeof(small));
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n <= sizeof(small))
        memcpy(s, small, n);
    else
        bl_template_eval(t, &v, s, n);
    s[n] = 0;
    *len = (uint32_t)n;
    return s;
}

/* ------------------------------------------------------------ the entry's file */

static void entry_close(struct bl_cache_req *cr)
{
    if (cr->efd >= 0)
        close(cr->efd);
    cr->efd = -1;
    bl_buf_put(cr->hbuf);
    cr->hbuf = NULL;
    cr->have_entry = 0;
}

static void copy_value(char *dst, size_t cap, const struct bl_h1_header *h)
{
    dst[0] = 0;
    if (h && h->value_len < cap) {
        memcpy(dst, h->value, h->value_len);
        dst[h->value_len] = 0;
    }
}

/* Opens the file of the entry name (cr->key's): its metadata, key, Vary names and head into
 * cr->hbuf, validators copied. BL_ERR when it is gone or not this key's (evicted, replaced). */
static int entry_open(struct bl_request *r, const char *name)
{
    struct bl_cache_req *cr = r->cache;
    entry_close(cr);
    char path[PATH_MAX];
    bl_cache_file_path(cr->z, name, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return BL_ERR;
    struct bl_buf *b = bl_buf_get();
    struct bl_cache_meta m;
    /* one read: the metadata, key and head, and a small body whole (a hit then costs open,
     * pread, close and one write to the client) */
    ssize_t n = b ? pread(fd, b->data, b->cap, 0) : -1;
    if (n < (ssize_t)sizeof(m))
        goto fail;
    memcpy(&m, b->data, sizeof(m));
    if (m.magic != BL_CACHE_MAGIC || m.key_len != cr->key_len ||
        bl_cache_body_offset(&m) > (uint64_t)n ||
        memcmp(b->data + sizeof(m), cr->key, cr->key_len) != 0)
        goto fail;
    uint32_t off = (uint32_t)bl_cache_body_offset(&m);
    b->start = 0;
    b->end = (uint32_t)n;
    cr->efd = fd;
    cr->hbuf = b;
    cr->m = m;
    cr->have_entry = 1;
    /* the validators, for a conditional request upstream */
    struct bl_h1_parser p;
    bl_h1_parser_init_response(&p, b->cap, b->cap, 0);
    uint32_t hoff = off - m.head_len;
    r->resp.nheaders = 0;
    if (bl_h1_parse(&p, b->data + hoff, m.head_len, &r->resp) == (int)m.head_len) {
        copy_value(cr->etag, sizeof(cr->etag), field(&r->resp, "ETag"));
        copy_value(cr->last_modified, sizeof(cr->last_modified),
                   field(&r->resp, "Last-Modified"));
    }
    r->resp.nheaders = 0;
    return BL_OK;
fail:
    bl_buf_put(b);
    close(fd);
    return BL_ERR;
}

/* Weak comparison of an entity-tag with one of If-None-Match's list (RFC 9110 13.1.2). */
static int etag_listed(const char *list, size_t len, const char *etag)
{
    const char *e = strncmp(etag, "W/", 2) == 0 ? etag + 2 : etag;
    size_t elen = strlen(e);
    size_t i = 0;
    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        if (i < len && list[i] == '*')
            return 1;
        size_t s = i;
        while (i < len && list[i] != ',')
            i++;
        size_t t = i;
        while (t > s && (list[t - 1] == ' ' || list[t - 1] == '\t'))
            t--;
        const char *tag = list + s;
        size_t tl = t - s;
        if (tl > 2 && strncmp(tag, "W/", 2) == 0) {
            tag += 2;
            tl -= 2;
        }
        if (tl == elen && elen && memcmp(tag, e, elen) == 0)
            return 1;
    }
    return 0;
}

/* Whether the client's conditionals say it has this entry (RFC 9110 13.2.2: If-None-Match
 * wins over If-Modified-Since). */
static int not_modified(const struct bl_request *r, const struct bl_cache_req *cr)
{
    const struct bl_h1_header *inm = field(&r->msg, "If-None-Match");
    if (inm)
        return cr->etag[0] && etag_listed(inm->value, inm->value_len, cr->etag);
    const struct bl_h1_header *ims = field(&r->msg, "If-Modified-Since");
    if (!ims || !cr->last_modified[0])
        return 0;
    int64_t since = bl_http_date_parse(ims->value, ims->value_len);
    int64_t lm = bl_http_date_parse(cr->last_modified, strlen(cr->last_modified));
    return since >= 0 && lm >= 0 && lm <= since;
}

/* A single byte range of Range for a body of len bytes: 1 with [*start, *start + *n), 0 for
 * no usable Range (the whole body is sent), -1 unsatisfiable. Several ranges are answered
 * with the whole body, which RFC 9110 14.2 allows. */
static int byte_range(const struct bl_request *r, const struct bl_cache_req *cr, uint64_t len,
                      uint64_t *start, uint64_t *n)
{
    const struct bl_h1_header *h = field(&r->msg, "Range");
    if (!h || r->msg.method_id != BL_H1_M_GET)
        return 0;
    const struct bl_h1_header *ir = field(&r->msg, "If-Range");
    if (ir) {
        /* the range applies only to the representation the client names */
        int same = (cr->etag[0] && strncmp(cr->etag, "W/", 2) != 0 &&
                    ir->value_len == strlen(cr->etag) &&
                    memcmp(ir->value, cr->etag, ir->value_len) == 0) ||
                   (cr->last_modified[0] && ir->value_len == strlen(cr->last_modified) &&
                    memcmp(ir->value, cr->last_modified, ir->value_len) == 0);
        if (!same)
            return 0;
    }
    const char *p = h->value, *end = h->value + h->value_len;
    if (h->value_len < 7 || strncasecmp(p, "bytes=", 6) != 0 || memchr(p, ',', h->value_len))
        return 0;
    p += 6;
    uint64_t a = 0, b = 0;
    int have_a = 0, have_b = 0;
    while (p < end && *p >= '0' && *p <= '9' && a < (1ULL << 60)) {
        a = a * 10 + (uint64_t)(*p++ - '0');
        have_a = 1;
    }
    if (p >= end || *p++ != '-')
        return 0;
    while (p < end && *p >= '0' && *p <= '9' && b < (1ULL << 60)) {
        b = b * 10 + (uint64_t)(*p++ - '0');
        have_b = 1;
    }
    if (p != end || (!have_a && !have_b))
        return 0;
    if (!have_a) { /* suffix: the last b bytes */
        if (b == 0)
            return -1;
        *start = b >= len ? 0 : len - b;
        *n = len - *start;
        return 1;
    }
    if (have_b && b < a)
        return 0;
    if (a >= len)
        return -1;
    uint64_t last = have_b && b < len ? b : len - 1;
    *start = a;
    *n = last - a + 1;
    return 1;
}

/* gzip for an answer from the cache (its head in r->resp, its length content_length), as for a
 * proxied one: entries are stored as the upstream sent them, so one identity entry serves both
 * kinds of clients, compressed as it is read from the file for those that accept gzip (an
 * entry the upstream compressed has Content-Encoding and is left alone); gzip_vary's field
 * either way. A Range answer is never compressed (bl_gzip_decide() sees the Range). BL_ERR:
 * out of memory. */
static int gzip_hit(struct bl_request *r, int body)
{
    int d = bl_gzip_decide(r);
    r->gz_vary = d != BL_GZIP_NO && r->loc->conf.gzip_vary;
    if (d != BL_GZIP_YES || r->resp.status != 200 || r->resp.content_length == 0)
        return BL_OK;
    int chunked = !r->c->h2 && r->msg.minor_version == 1;
    if (!(r->gz = bl_gzip_new((int)r->loc->conf.gzip_comp_level, chunked)))
        return BL_ERR;
    if (!body)
        return BL_OK; /* HEAD: the head a GET would get (nginx), the compressor unused */
    if (!(r->file_in = bl_buf_get()))
        return BL_ERR;
    if (!chunked && !r->c->h2)
        r->keep_alive = 0; /* HTTP/1.0: the body ends at close */
    r->resp_done = 0;      /* until the file is read whole (static.c) */
    return BL_OK;
}

/* entry_serve() failed and r goes upstream: its answer decides gzip again. BL_ERR. */
static int gzip_undo(struct bl_request *r)
{
    bl_gzip_free(r->gz);
    r->gz = NULL;
    bl_buf_put(r->file_in);
    r->file_in = NULL;
    r->gz_vary = 0;
    return BL_ERR;
}

/* Answers r from the entry cr holds, with $upstream_cache_status status. BL_OK: r is
 * answered; BL_ERR: the head could not be made (r untouched: the caller goes upstream). */
static int entry_serve(struct bl_request *r, int cache_status)
{
    struct bl_cache_req *cr = r->cache;
    const struct bl_cache_meta *m = &cr->m;
    struct bl_buf *b = cr->hbuf;
    uint32_t hoff = (uint32_t)bl_cache_body_offset(m) - m->head_len;
    bl_h1_parser_init_response(&r->parser, b->cap, b->cap, 0);
    r->resp.nheaders = 0;
    if (bl_h1_parse(&r->parser, b->data + hoff, m->head_len, &r->resp) != (int)m->head_len)
        return BL_ERR;
    if (!r->out && !(r->out = bl_buf_get()))
        return BL_ERR;
    int64_t now = wall_ms();
    int64_t age_ms = m->initial_age_ms + (now - m->response_ms);
    uint64_t age = age_ms > 0 ? (uint64_t)age_ms / 1000 : 0;
    int status = m->status;
    uint64_t start = 0, len = m->body_len;
    int body = r->msg.method_id != BL_H1_M_HEAD;
    int range = 0;
    if (status == 200 && not_modified(r, cr)) {
        status = 304;
        body = 0;
    } else if (status == 200) {
        range = byte_range(r, cr, m->body_len, &start, &len);
        if (range == 1)
            status = 206;
        else if (range < 0) {
            status = 416;
            body = 0;
        }
    }
    r->cache_status = (uint8_t)cache_status;
    r->resp.status = (uint16_t)status;
    if (status != m->status) {
        r->resp.reason = bl_http_reason(status);
        r->resp.reason_len = (uint32_t)strlen(r->resp.reason);
    }
    r->resp.body = BL_H1_BODY_LENGTH;
    r->resp.content_length = status == 416 ? 0 : len;
    r->status = status;
    r->dechunking = 0;
    r->gz_vary = 0;
    if (!r->req_body_done || r->body_sent != r->body_end)
        r->keep_alive = 0; /* the unread request body would be read as the next request */
    if ((status == 200 || status == 206) && (body || r->msg.method_id == BL_H1_M_HEAD) &&
        gzip_hit(r, body) != BL_OK)
        return gzip_undo(r);
    if (bl_proxy_client_head(r) != BL_OK || r->out->end < 2)
        return gzip_undo(r);
    int gzipped = r->gz != NULL;
    if (gzipped && !body) {
        bl_gzip_free(r->gz);
        r->gz = NULL;
    }
    char extra[160];
    int n = 0;
    if (status == 206)
        n = snprintf(extra, sizeof(extra), "Content-Range: bytes %llu-%llu/%llu\r\n",
                     (unsigned long long)start, (unsigned long long)(start + len - 1),
                     (unsigned long long)m->body_len);
    else if (status == 416)
        n = snprintf(extra, sizeof(extra), "Content-Range: bytes */%llu\r\n",
                     (unsigned long long)m->body_len);
    if (status != 304 && !gzipped)
        n += snprintf(extra + n, sizeof(extra) - (size_t)n, "Content-Length: %llu\r\n",
                      (unsigned long long)r->resp.content_length);
    n += snprintf(extra + n, sizeof(extra) - (size_t)n, "Age: %llu\r\n\r\n",
                  (unsigned long long)age);
    struct bl_buf *o = r->out;
    if (o->end - 2 + (uint32_t)n > o->cap)
        return gzip_undo(r);
    memcpy(o->data + o->end - 2, extra, (size_t)n);
    o->end += (uint32_t)n - 2;
    r->body_bytes_sent = 0;
    uint64_t from = bl_cache_body_offset(m) + start;
    if (body && len && !r->gz && o->end + len <= o->cap && from + len <= b->end) {
        /* read with the head: sent in the same write */
        memcpy(o->data + o->end, b->data + from, (size_t)len);
        o->end += (uint32_t)len;
        r->body_bytes_sent = len;
    } else if (body && len) {
        /* the body goes out by sendfile or pread from file_off (http/static.c) */
        r->file_fd = cr->efd;
        r->file_off = from;
        r->file_left = len;
        cr->efd = -1;
    }
    bl_request_local_done(r, BL_OK);
    return BL_OK;
}

/* ------------------------------------------------------------ lookup */

static void lock_woken(struct bl_queue_waiter *w, int ok);

/* The variant key of primary for the request's values of the Vary fields names
 * ("accept-encoding,accept-language"): primary, '\n', then "name:value\n" per field. */
static char *variant_key(const struct bl_request *r, const char *primary, uint32_t plen,
                         const char *names, uint32_t *len)
{
    size_t cap = plen + 2 + strlen(names) * 2 + 64;
    for (uint32_t i = 0; i < r->msg.nheaders; i++)
        cap += r->msg.headers[i].value_len + 1;
    char *k = malloc(cap);
    if (!k)
        return NULL;
    size_t n = plen;
    memcpy(k, primary, plen);
    k[n++] = '\n';
    const char *p = names;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t nl = e ? (size_t)(e - p) : strlen(p);
        memcpy(k + n, p, nl);
        n += nl;
        k[n++] = ':';
        int first = 1;
        for (uint32_t i = 0; i < r->msg.nheaders; i++) {
            const struct bl_h1_header *h = &r->msg.headers[i];
            if (h->name_len != nl || strncasecmp(h->name, p, nl) != 0)
                continue;
            if (!first)
                k[n++] = ',';
            memcpy(k + n, h->value, h->value_len);
            n += h->value_len;
            first = 0;
        }
        k[n++] = '\n';
        p += nl;
        if (*p == ',')
            p++;
    }
    *len = (uint32_t)n;
    return k;
}

static void set_key(struct bl_cache_req *cr, char *key, uint32_t len)
{
    if (cr->key != cr->primary)
        free(cr->key);
    cr->key = key;
    cr->key_len = len;
}

/* Looks r's key up and acts: BL_OK when r was taken (answered or waiting), BL_CACHE_PROXY when
 * it goes upstream. */
static int lookup(struct bl_request *r, int force_fill)
{
    struct bl_cache_req *cr = r->cache;
    const struct bl_cache_conf *cc = cr->cc;
    struct bl_cache_lookup lk;
    memset(&lk, 0, offsetof(struct bl_cache_lookup, m));
    set_key(cr, cr->primary, cr->primary_len);
    lk.now_ms = wall_ms();
    lk.min_uses = force_fill ? 1 : cc->min_uses;
    lk.lock_age_ms = cc->lock_age_ms;
    lk.lock = cc->lock && !force_fill;
    struct bl_queue_worker *qw = &r->c->w->up.queue;
    /* the worker's wake-up eventfd exists when a group has a queue; else made on first use,
     * on this worker's own loop (freed with the worker's upstream state) */
    if (lk.lock && !qw->loop && bl_queue_worker_init(qw, r->c->w->loop) != BL_OK)
        lk.lock = 0;
    lk.may_fill = r->msg.method_id == BL_H1_M_GET && !any_true(r, cc->no_cache, cc->nno_cache);
    lk.stale_updating = (cc->use_stale & BL_CUS_UPDATING) != 0;
    lk.waiter = &r->qwait;
    lk.requeue = cr->requeue;
    lk.qw = qw;
    lk.qc = &cc->lock_q;
    lk.on_ready = lock_woken;
    lk.force = (uint8_t)force_fill;
    int rc;
    for (int round = 0;; round++) {
        lk.key = cr->key;
        lk.key_len = cr->key_len;
        rc = bl_cache_lookup(cr->z, &lk);
        if (rc != BL_CL_VARY)
            break;
        uint32_t vlen;
        char *vk = round ? NULL : variant_key(r, cr->primary, cr->primary_len, lk.vary, &vlen);
        if (!vk) {
            rc = BL_CL_MISS; /* out of memory, or the variant named a vary record: pass */
            lk.fill_id = 0;
            break;
        }
        set_key(cr, vk, vlen);
    }
    cr->requeue = 0;
    cr->fill_id = lk.fill_id;
    switch (rc) {
    case BL_CL_WAIT:
        r->state = RS_QUEUED;
        r->client_handler = bl_request_wait_client;
        r->request_handler = r->response_handler = NULL;
        return BL_OK;
    case BL_CL_HIT:
    case BL_CL_UPDATING:
        if (entry_open(r, lk.name) == BL_OK &&
            entry_serve(r, rc == BL_CL_HIT ? BL_CS_HIT : BL_CS_UPDATING) == BL_OK)
            return BL_OK;
        entry_close(cr);
        r->cache_status = BL_CS_MISS; /* evicted under us: fetched, not stored */
        return BL_CACHE_PROXY;
    case BL_CL_STALE:
        r->cache_status = force_fill ? BL_CS_BYPASS : BL_CS_EXPIRED;
        if (entry_open(r, lk.name) != BL_OK)
            return BL_CACHE_PROXY;
        if (force_fill)
            return BL_CACHE_PROXY;
        if (cr->fill_id && cc->background_update && !(cr->m.flags & BL_CM_MUST_REVALIDATE) &&
            ((cc->use_stale & BL_CUS_UPDATING) ||
             lk.now_ms < cr->m.fresh_until_ms + (int64_t)cr->m.swr_s * 1000)) {
            cr->background = 1;
            if (entry_serve(r, BL_CS_STALE) == BL_OK)
                return BL_OK;
            cr->background = 0;
        }
        cr->revalidating = cr->fill_id && (cc->revalidate || (cr->m.flags & BL_CM_NO_CACHE)) &&
                           (cr->etag[0] || cr->last_modified[0]);
        return BL_CACHE_PROXY;
    default: /* BL_CL_MISS */
        if (!r->cache_status)
            r->cache_status = BL_CS_MISS;
        return BL_CACHE_PROXY;
    }
}

/* proxy_cache_lock: the fill r waited for ended (ok), or proxy_cache_lock_timeout passed. */
static void lock_woken(struct bl_queue_waiter *w, int ok)
{
    struct bl_request *r = (struct bl_request *)((char *)w - offsetof(struct bl_request, qwait));
    struct bl_cache_req *cr = r->cache;
    if (ok) {
        cr->requeue = 1;
        if (lookup(r, 0) == BL_OK)
            return;
    } else {
        /* nginx: after the lock's timeout the request goes upstream and its answer is not
         * stored */
        r->cache_status = BL_CS_MISS;
        cr->fill_id = 0;
    }
    bl_request_proxy(r);
}

static int unsafe_method(int m)
{
    return m == BL_H1_M_POST || m == BL_H1_M_PUT || m == BL_H1_M_DELETE ||
           m == BL_H1_M_PATCH || m == BL_H1_M_OTHER;
}

int bl_proxy_cache_start(struct bl_request *r)
{
    const struct bl_cache_conf *cc = r->loc->conf.cache;
    if (!cc || !cc->path)
        return BL_CACHE_PROXY;
    /* an internal redirect (error_page, try_files) comes here again: the first location's
     * cache state goes (its fill, if any, is dropped) */
    bl_proxy_cache_end(r);
    struct bl_cache_req *cr = calloc(1, sizeof(*cr));
    if (!cr)
        return BL_CACHE_PROXY; /* out of memory: proxied without the cache */
    cr->efd = cr->tfd = -1;
    r->cache = cr;
    cr->cc = cc;
    cr->z = cc->path->zone;
    if (!(cr->primary = eval_alloc(r, cc->key, &cr->primary_len)))
        return BL_CACHE_PROXY;
    cr->key = cr->primary;
    cr->key_len = cr->primary_len;
    int method = r->msg.method_id;
    if (cc->purge && tpl_true(r, cc->purge)) {
        uint32_t n = bl_cache_purge(cr->z, cr->primary, cr->primary_len, 0);
        bl_log(BL_LOG_INFO, "proxy_cache \"%s\": purge of \"%s\" from %s removed %u stored responses",
               bl_cache_zone_name(cr->z), cr->primary, r->c->ip, n);
        bl_request_local_done(r, bl_local_response(r, n ? 204 : 404, NULL, 0, NULL, 0));
        return BL_OK;
    }
    if (!(cc->methods & (1u << method))) {
        /* RFC 9111 4.4: a non-error answer to an unsafe method invalidates the URL */
        cr->invalidate = unsafe_method(method);
        return BL_CACHE_PROXY;
    }
    if (any_true(r, cc->bypass, cc->nbypass)) {
        r->cache_status = BL_CS_BYPASS;
        /* nginx: a bypassed response is still stored (a way to refresh a key) */
        return lookup(r, 1);
    }
    return lookup(r, 0);
}

/* ------------------------------------------------------------ the upstream request */

int bl_proxy_cache_drops(const struct bl_request *r, const struct bl_h1_header *h)
{
    const struct bl_cache_req *cr = r->cache;
    if (!cr || !cr->fill_id || h->name_len < 5)
        return 0;
    static const char *const names[] = {"If-None-Match", "If-Modified-Since", "If-Range",
                                        "Range", "If-Match", "If-Unmodified-Since"};
    for (size_t i = 0; i < BL_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == h->name_len && strncasecmp(names[i], h->name, h->name_len) == 0)
            return 1;
    return 0;
}

size_t bl_proxy_cache_upstream_fields(const struct bl_request *r, char *buf, size_t cap)
{
    const struct bl_cache_req *cr = r->cache;
    if (!cr || !cr->revalidating || !cr->fill_id)
        return 0;
    int n = 0;
    if (cr->etag[0])
        n = snprintf(buf, cap, "If-None-Match: %s\r\n", cr->etag);
    if (cr->last_modified[0] && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, "If-Modified-Since: %s\r\n", cr->last_modified);
    return (size_t)n;
}

/* ------------------------------------------------------------ the response */

static const struct bl_h1_header *resp_field(const struct bl_h1_message *m, const char *name)
{
    return field(m, name);
}

/* How long the response resp may be used, and its metadata into fm. 0: not stored. */
static int freshness(const struct bl_request *r, const struct bl_h1_message *resp, int status,
                     struct bl_cache_meta *fm, int64_t now)
{
    const struct bl_cache_req *cr = r->cache;
    const struct bl_cache_conf *cc = cr->cc;
    struct bl_cc c = {0};
    if (!(cc->ignore_headers & BL_CIH_CACHE_CONTROL))
        for (uint32_t i = 0; i < resp->nheaders; i++)
            if (resp->headers[i].name_len == 13 &&
                strncasecmp(resp->headers[i].name, "Cache-Control", 13) == 0)
                bl_cc_parse(&c, resp->headers[i].value, resp->headers[i].value_len);
    if (c.flags & (BL_CC_NO_STORE | BL_CC_PRIVATE))
        return 0;
    /* RFC 9111 3.5: an answer to a request with credentials only when it says so */
    if (field(&r->msg, "Authorization") &&
        !(c.flags & (BL_CC_PUBLIC | BL_CC_S_MAXAGE | BL_CC_MUST_REVALIDATE)))
        return 0;
    if (!(cc->ignore_headers & BL_CIH_SET_COOKIE) && resp_field(resp, "Set-Cookie"))
        return 0; /* nginx's rule: a response that sets a cookie is someone's */
    const struct bl_h1_header *date = resp_field(resp, "Date");
    int64_t date_s = date ? bl_http_date_parse(date->value, date->value_len) : -1;
    int64_t date_ms = date_s >= 0 ? date_s * 1000 : now;
    /* RFC 9111 4.2.3 */
    int64_t request_ms = now - (int64_t)((bl_clock_us - r->try_start_us) / 1000);
    const struct bl_h1_header *ageh = resp_field(resp, "Age");
    int64_t age_value = ageh ? bl_cc_delta(ageh->value, ageh->value_len) : 0;
    int64_t apparent = now - date_ms > 0 ? now - date_ms : 0;
    int64_t corrected = (age_value > 0 ? age_value * 1000 : 0) + (now - request_ms);
    int64_t initial_age = apparent > corrected ? apparent : corrected;
    if (date_s >= 0 && apparent < 1000 && age_value <= 0)
        initial_age = 0; /* Date has one-second resolution: a just-made response is age 0 */
    int64_t lifetime = -1;
    int explicit_ = 1;
    const struct bl_h1_header *xae = (cc->ignore_headers & BL_CIH_X_ACCEL_EXPIRES)
                                         ? NULL
                                         : resp_field(resp, "X-Accel-Expires");
    if (xae) {
        if (xae->value_len && xae->value[0] == '@') {
            int64_t at = bl_cc_delta(xae->value + 1, xae->value_len - 1);
            if (at >= 0)
                lifetime = at * 1000 - now;
        } else {
            int64_t s = bl_cc_delta(xae->value, xae->value_len);
            if (s == 0)
                return 0; /* nginx: X-Accel-Expires: 0 means do not cache */
            if (s > 0)
                lifetime = s * 1000;
        }
    }
    if (lifetime < 0 && (c.flags & BL_CC_S_MAXAGE))
        lifetime = (int64_t)c.s_maxage * 1000;
    else if (lifetime < 0 && (c.flags & BL_CC_MAX_AGE))
        lifetime = (int64_t)c.max_age * 1000;
    const struct bl_h1_header *exp = (cc->ignore_headers & BL_CIH_EXPIRES)
                                         ? NULL
                                         : resp_field(resp, "Expires");
    if (lifetime < 0 && exp) {
        int64_t e = bl_http_date_parse(exp->value, exp->value_len);
        lifetime = e < 0 ? 0 : e * 1000 - date_ms; /* an invalid Expires: already stale */
    }
    if (c.flags & BL_CC_INVALID)
        lifetime = 0;
    if (lifetime < 0) {
        explicit_ = 0;
        for (uint32_t i = 0; i < cc->nvalid && lifetime < 0; i++) {
            const struct bl_cache_valid *v = &cc->valid[i];
            for (uint32_t k = 0; k < v->ncodes; k++)
                if (v->codes[k] == status)
                    lifetime = (int64_t)v->ms;
            if (lifetime < 0 && v->any)
                lifetime = (int64_t)v->ms;
        }
    }
    const struct bl_h1_header *lm = resp_field(resp, "Last-Modified");
    const struct bl_h1_header *etag = resp_field(resp, "ETag");
    if (lifetime < 0 && (c.flags & BL_CC_NO_CACHE) && (lm || etag))
        lifetime = 0; /* stored, every use validated */
    if (lifetime < 0 && lm && bl_cc_heuristic_status(status) && !exp) {
        int64_t l = bl_http_date_parse(lm->value, lm->value_len);
        if (l >= 0 && date_ms > l * 1000) {
            lifetime = (date_ms - l * 1000) / 10;
            if (lifetime > HEURISTIC_MAX_MS)
                lifetime = HEURISTIC_MAX_MS;
        }
    }
    if (lifetime < 0)
        return 0;
    /* nginx keeps max-age=0 and no-cache out; RFC 9111 stores them for revalidation, which
     * needs a validator */
    if ((lifetime == 0 || (c.flags & BL_CC_NO_CACHE)) && !lm && !etag)
        return 0;
    if (cc->jitter_pct && lifetime > 0) /* avalanche: keys filled together expire apart */
        lifetime -= (int64_t)(bl_rand64() % ((uint64_t)lifetime * cc->jitter_pct / 100 + 1));
    memset(fm, 0, sizeof(*fm));
    fm->version = BL_CACHE_VERSION;
    fm->status = (uint16_t)status;
    fm->response_ms = now;
    fm->initial_age_ms = explicit_ ? initial_age : 0;
    fm->fresh_until_ms = now + lifetime - fm->initial_age_ms;
    fm->swr_s = c.flags & BL_CC_SWR ? c.swr : 0;
    fm->sie_s = c.flags & BL_CC_SIE ? c.sie : 0;
    if (c.flags & (BL_CC_MUST_REVALIDATE | BL_CC_PROXY_REVALIDATE | BL_CC_S_MAXAGE))
        fm->flags |= BL_CM_MUST_REVALIDATE;
    if (c.flags & BL_CC_NO_CACHE)
        fm->flags |= BL_CM_NO_CACHE;
    if (etag)
        fm->flags |= BL_CM_ETAG;
    if (lm)
        fm->flags |= BL_CM_LAST_MODIFIED;
    return 1;
}

/* Normalized Vary of resp into out ("accept-encoding,accept-language"): 1, 0 without, -1
 * for Vary: * or one that does not fit (not stored). */
static int vary_names(const struct bl_h1_message *resp, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (uint32_t i = 0; i < resp->nheaders; i++) {
        const struct bl_h1_header *h = &resp->headers[i];
        if (h->name_len != 4 || strncasecmp(h->name, "Vary", 4) != 0)
            continue;
        const char *p = h->value, *end = h->value + h->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            size_t l = (size_t)(p - s);
            if (!l)
                continue;
            if (l == 1 && *s == '*')
                return -1;
            if (n + l + 2 > cap)
                return -1;
            if (n)
                out[n++] = ',';
            for (size_t k = 0; k < l; k++)
                out[n++] = (char)((s[k] >= 'A' && s[k] <= 'Z') ? s[k] + 32 : s[k]);
        }
    }
    out[n] = 0;
    return n ? 1 : 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return BL_ERR;
        c += w;
        n -= (size_t)w;
    }
    return BL_OK;
}

/* Appends "name: value\r\n" at out + n; cap + 1 when it does not fit. */
static size_t put_field(char *out, size_t n, size_t cap, const struct bl_h1_header *h)
{
    if (n + h->name_len + h->value_len + 4 > cap)
        return cap + 1;
    memcpy(out + n, h->name, h->name_len);
    n += h->name_len;
    out[n++] = ':';
    out[n++] = ' ';
    memcpy(out + n, h->value, h->value_len);
    n += h->value_len;
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}

/* The stored head: status line and fields, without the hop-by-hop ones and the framing (the
 * body is stored de-chunked, its length in the metadata) and without Age (sent computed). */
static size_t stored_head(const struct bl_h1_message *resp, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "HTTP/1.1 %03u %.*s\r\n", resp->status,
                                (int)resp->reason_len, resp->reason);
    for (uint32_t i = 0; i < resp->nheaders && n < cap; i++) {
        const struct bl_h1_header *h = &resp->headers[i];
        if (h->hop || h->id == BL_H1_HDR_CONTENT_LENGTH ||
            h->id == BL_H1_HDR_TRANSFER_ENCODING ||
            (h->name_len == 3 && strncasecmp(h->name, "Age", 3) == 0))
            continue;
        if ((n = put_field(out, n, cap, h)) > cap)
            return n;
    }
    if (n + 2 > cap)
        return cap + 1;
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}

static void fill_drop(struct bl_cache_req *cr, int pass_mark)
{
    if (cr->tfd >= 0) {
        close(cr->tfd);
        unlink(cr->tmp);
        cr->tfd = -1;
    }
    if (cr->fill_id)
        bl_cache_abort(cr->z, cr->key, cr->key_len, cr->fill_id, pass_mark);
    cr->fill_id = 0;
    cr->filling = 0;
}

/* Opens the fill of the response in r->resp. BL_OK, or BL_ERR (not stored). */
static int fill_open(struct bl_request *r, int64_t now)
{
    struct bl_cache_req *cr = r->cache;
    const struct bl_h1_message *resp = &r->resp;
    int status = resp->status;
    /* a partial answer (we asked for the whole) and answers to a conditional are not stored */
    if (status == 206 || status == 304 || status < 200)
        return BL_ERR;
    if (!freshness(r, resp, status, &cr->fm, now))
        return BL_ERR;
    int v = (cr->cc->ignore_headers & BL_CIH_VARY) ? 0 : vary_names(resp, cr->vary,
                                                                    sizeof(cr->vary));
    if (v < 0)
        return BL_ERR;
    if (v) {
        uint32_t len;
        if (!(cr->store_key = variant_key(r, cr->primary, cr->primary_len, cr->vary, &len)))
            return BL_ERR;
        cr->store_key_len = len;
    }
    const char *skey = cr->store_key ? cr->store_key : cr->key;
    uint32_t skey_len = cr->store_key ? cr->store_key_len : cr->key_len;
    struct bl_buf *b = bl_buf_get();
    if (!b)
        return BL_ERR;
    size_t hl = stored_head(resp, b->data, b->cap);
    cr->fm.key_len = skey_len;
    cr->fm.primary_len = cr->primary_len;
    cr->fm.vary_len = v ? (uint32_t)strlen(cr->vary) : 0;
    cr->fm.head_len = (uint32_t)hl;
    if (hl > b->cap || bl_cache_body_offset(&cr->fm) > bl_buf_size() ||
        (cr->tfd = bl_cache_tmp_open(cr->z, cr->tmp, sizeof(cr->tmp))) < 0) {
        bl_buf_put(b);
        return BL_ERR;
    }
    struct bl_cache_meta placeholder = cr->fm; /* magic 0 until the body is whole */
    int rc = write_all(cr->tfd, &placeholder, sizeof(placeholder)) ||
             write_all(cr->tfd, skey, skey_len) ||
             write_all(cr->tfd, cr->vary, cr->fm.vary_len) || write_all(cr->tfd, b->data, hl);
    bl_buf_put(b);
    if (rc) {
        close(cr->tfd);
        unlink(cr->tmp);
        cr->tfd = -1;
        return BL_ERR;
    }
    cr->filling = 1;
    cr->written = 0;
    return BL_OK;
}

/* Fields a 304 does not change in the stored head (RFC 9111 3.2): those not stored at all
 * (hop-by-hop, Age: sent computed) and those the stored body depends on (its framing, and its
 * coding: the body on disk stays what it was). */
static int kept_from_update(const struct bl_h1_header *h)
{
    return h->hop || h->id == BL_H1_HDR_CONTENT_LENGTH || h->id == BL_H1_HDR_TRANSFER_ENCODING ||
           (h->name_len == 3 && strncasecmp(h->name, "Age", 3) == 0) ||
           (h->name_len == 16 && strncasecmp(h->name, "Content-Encoding", 16) == 0);
}

static int named_in(const struct bl_h1_message *m, const struct bl_h1_header *h)
{
    for (uint32_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name_len == h->name_len && !kept_from_update(&m->headers[i]) &&
            strncasecmp(m->headers[i].name, h->name, h->name_len) == 0)
            return 1;
    return 0;
}

/* The stored head st updated by the 304 nm (RFC 9111 4.3.4 and 3.2): every field of nm but
 * those kept_from_update() replaces all of st's fields of its name; st's status line stays.
 * Into out; its length, more than cap when it does not fit. */
static size_t updated_head(const struct bl_h1_message *st, const struct bl_h1_message *nm,
                           char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "HTTP/1.1 %03u %.*s\r\n", st->status,
                                (int)st->reason_len, st->reason);
    for (uint32_t i = 0; i < st->nheaders && n <= cap; i++)
        if (!named_in(nm, &st->headers[i]))
            n = put_field(out, n, cap, &st->headers[i]);
    for (uint32_t i = 0; i < nm->nheaders && n <= cap; i++)
        if (!kept_from_update(&nm->headers[i]))
            n = put_field(out, n, cap, &nm->headers[i]);
    if (n + 2 > cap)
        return cap + 1;
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}

/* The body of the entry cr holds (its open file) copied to fd at its own offset. */
static int copy_body(struct bl_cache_req *cr, int fd, uint64_t to)
{
    loff_t in = (loff_t)bl_cache_body_offset(&cr->m), out = (loff_t)to;
    uint64_t left = cr->m.body_len;
    while (left) {
        /* in the kernel, or a reflink where the file system shares extents */
        ssize_t k = copy_file_range(cr->efd, &in, fd, &out, left, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        left -= (uint64_t)k;
    }
    char buf[16384];
    while (left) { /* copy_file_range refused (an old kernel, another file system) */
        ssize_t k = pread(cr->efd, buf, left < sizeof(buf) ? left : sizeof(buf), in);
        if (k <= 0 || pwrite(fd, buf, (size_t)k, out) != k)
            return BL_ERR;
        in += k;
        out += k;
        left -= (uint64_t)k;
    }
    return BL_OK;
}

/* Writes the entry cr holds again with head[0..hl) as its head and fm as its metadata, to a
 * temp file: BL_OK with its path in cr->tmp. */
static int rewrite_entry(struct bl_cache_req *cr, const struct bl_cache_meta *fm,
                         const char *head, size_t hl)
{
    int fd = bl_cache_tmp_open(cr->z, cr->tmp, sizeof(cr->tmp));
    if (fd < 0)
        return BL_ERR;
    struct bl_cache_meta placeholder = *fm;
    placeholder.magic = 0; /* whole only once the body is copied */
    int rc = write_all(fd, &placeholder, sizeof(placeholder)) ||
             write_all(fd, cr->hbuf->data + sizeof(cr->m),
                       (size_t)cr->m.key_len + cr->m.vary_len) ||
             write_all(fd, head, hl) || copy_body(cr, fd, bl_cache_body_offset(fm)) ||
             pwrite(fd, fm, sizeof(*fm), 0) != (ssize_t)sizeof(*fm);
    close(fd);
    if (rc) {
        unlink(cr->tmp);
        return BL_ERR;
    }
    return BL_OK;
}

/* A 304 answered the revalidation of the entry cr holds (r->resp): RFC 9111 4.3.4, the stored
 * head takes the 304's fields, the freshness is computed again from the result, and the entry
 * is written again (file and index) so later hits and a restart see it. nginx renews only the
 * entry's validity and validators and keeps serving the old fields. Leaves cr holding the
 * entry to serve: BL_OK, or BL_ERR when it is unreadable. */
static int revalidated(struct bl_request *r, int64_t now)
{
    struct bl_cache_req *cr = r->cache;
    struct {
        struct bl_h1_message st, merged;
        struct bl_h1_header st_fields[BL_H1_MAX_HEADERS], merged_fields[BL_H1_MAX_HEADERS];
    } *msgs = malloc(sizeof(*msgs));
    struct bl_buf *b = bl_buf_get();
    struct bl_cache_meta fm = cr->m; /* freshness() fills it when the updated head is storable */
    size_t hl = 0;
    int ok = 0;
    if (msgs && b) {
        struct bl_h1_message *st = &msgs->st, *merged = &msgs->merged;
        struct bl_h1_parser p;
        uint32_t hoff = (uint32_t)bl_cache_body_offset(&cr->m) - cr->m.head_len;
        bl_h1_message_init(st, msgs->st_fields, BL_H1_MAX_HEADERS);
        bl_h1_message_init(merged, msgs->merged_fields, BL_H1_MAX_HEADERS);
        bl_h1_parser_init_response(&p, cr->hbuf->cap, cr->hbuf->cap, 0);
        if (bl_h1_parse(&p, cr->hbuf->data + hoff, cr->m.head_len, st) == (int)cr->m.head_len &&
            (hl = updated_head(st, &r->resp, b->data, b->cap)) <= b->cap) {
            bl_h1_parser_init_response(&p, b->cap, b->cap, 0);
            ok = bl_h1_parse(&p, b->data, hl, merged) == (int)hl &&
                 freshness(r, merged, cr->m.status, &fm, now);
        }
    }
    free(msgs);
    int rewrite = 0;
    if (ok) {
        fm.key_len = cr->m.key_len;
        fm.primary_len = cr->m.primary_len;
        fm.vary_len = cr->m.vary_len;
        fm.head_len = (uint32_t)hl;
        fm.body_len = cr->m.body_len;
        fm.magic = BL_CACHE_MAGIC;
        rewrite = bl_cache_body_offset(&fm) <= bl_buf_size() &&
                  rewrite_entry(cr, &fm, b->data, hl) == BL_OK;
    }
    if (!rewrite) {
        /* the stored head stays: no longer cacheable with the new fields (still valid for
         * this request), a head too large, or a disk failure */
        if (!ok)
            fm.fresh_until_ms = now;
        fm.head_len = cr->m.head_len;
        fm.flags = (fm.flags & ~(BL_CM_ETAG | BL_CM_LAST_MODIFIED)) |
                   (cr->m.flags & (BL_CM_ETAG | BL_CM_LAST_MODIFIED));
    }
    bl_buf_put(b);
    bl_cache_freshen(cr->z, cr->key, cr->key_len, cr->fill_id, &fm, rewrite ? cr->tmp : NULL);
    cr->fill_id = 0;
    if (rewrite) {
        /* serve the file as now stored; the old one (still open) when it went meanwhile */
        int efd = cr->efd;
        struct bl_buf *hbuf = cr->hbuf;
        struct bl_cache_meta old = cr->m;
        char name[33];
        cr->efd = -1;
        cr->hbuf = NULL;
        bl_cache_name(cr->key, cr->key_len, name);
        if (entry_open(r, name) == BL_OK) {
            close(efd);
            bl_buf_put(hbuf);
            return BL_OK;
        }
        cr->efd = efd;
        cr->hbuf = hbuf;
        cr->m = old;
        cr->have_entry = 1;
        return BL_OK;
    }
    cr->m = fm;
    return BL_OK;
}

/* Serves the stale entry instead of the upstream's answer (released first). */
static int serve_stale(struct bl_request *r, int status)
{
    struct bl_cache_req *cr = r->cache;
    (void)status;
    fill_drop(cr, 0);
    bl_attempt_release(&r->a, 0, 0, 0);
    return entry_serve(r, BL_CS_STALE);
}

/* Whether the stale entry may stand in for an upstream failure of kind bit (BL_CUS_*) now. */
static int stale_usable(const struct bl_cache_req *cr, uint32_t bit)
{
    if (!cr || !cr->have_entry || (cr->m.flags & BL_CM_MUST_REVALIDATE) || cr->background)
        return 0;
    if (cr->cc->use_stale & bit)
        return 1;
    /* RFC 5861 stale-if-error: errors and 500, 502, 503, 504 */
    int64_t sie_until = cr->m.fresh_until_ms + (int64_t)cr->m.sie_s * 1000;
    return cr->m.sie_s && wall_ms() < sie_until &&
           (bit & (BL_CUS_ERROR | BL_CUS_TIMEOUT | BL_CUS_INVALID_HEADER | BL_CUS_HTTP_500 |
                   BL_CUS_HTTP_502 | BL_CUS_HTTP_503 | BL_CUS_HTTP_504));
}

static uint32_t status_bit(int status)
{
    switch (status) {
    case 500: return BL_CUS_HTTP_500;
    case 502: return BL_CUS_HTTP_502;
    case 503: return BL_CUS_HTTP_503;
    case 504: return BL_CUS_HTTP_504;
    case 403: return BL_CUS_HTTP_403;
    case 404: return BL_CUS_HTTP_404;
    case 429: return BL_CUS_HTTP_429;
    default: return 0;
    }
}

int bl_proxy_cache_response(struct bl_request *r)
{
    struct bl_cache_req *cr = r->cache;
    if (!cr)
        return BL_OK;
    int status = r->resp.status;
    if (cr->invalidate) {
        if (status < 400 && cr->primary)
            bl_cache_purge(cr->z, cr->primary, cr->primary_len, 0);
        return BL_OK;
    }
    int64_t now = wall_ms();
    if (cr->revalidating && status == 304 && cr->have_entry && cr->fill_id) {
        /* the 304's fields are slices of the upstream's buffer: read before the release */
        int rc = revalidated(r, now);
        bl_attempt_release(&r->a, 0, 0, 0);
        if (rc == BL_OK && entry_serve(r, BL_CS_REVALIDATED) == BL_OK)
            return BL_ERR;
        bl_request_abort(r, 502, "cached entry unreadable after revalidation");
        return BL_ERR;
    }
    if (status >= 400 && stale_usable(cr, status_bit(status))) {
        if (serve_stale(r, status) == BL_OK)
            return BL_ERR;
        bl_request_abort(r, 502, "stale entry unreadable");
        return BL_ERR;
    }
    entry_close(cr); /* the fresh answer replaces the stale copy */
    if (!cr->fill_id)
        return BL_OK;
    if (fill_open(r, now) != BL_OK)
        fill_drop(cr, 1);
    return BL_OK;
}

/* The fill ends: committed (the temp file renamed into place, the entry published to every
 * worker, lock waiters woken) when the upstream's body came whole and all of it is in the temp
 * file; dropped otherwise (the temp file removed). Either way cr is left without a fill. */
static void fill_end(struct bl_request *r)
{
    struct bl_cache_req *cr = r->cache;
    int complete = cr->filling && !cr->fill_failed && r->resp_done &&
                   (r->resp.body != BL_H1_BODY_LENGTH || cr->written == r->resp.content_length);
    if (complete) {
        cr->fm.magic = BL_CACHE_MAGIC;
        cr->fm.body_len = cr->written;
        struct bl_cache_meta fm = cr->fm;
        if (pwrite(cr->tfd, &fm, sizeof(fm), 0) != (ssize_t)sizeof(fm))
            complete = 0;
    }
    if (!complete) {
        fill_drop(cr, 0);
        return;
    }
    close(cr->tfd);
    cr->tfd = -1;
    cr->filling = 0;
    bl_cache_commit(cr->z, cr->key, cr->key_len, cr->fill_id,
                    cr->store_key ? cr->store_key : cr->key,
                    cr->store_key ? cr->store_key_len : cr->key_len, &cr->fm, cr->vary, cr->tmp);
    cr->fill_id = 0;
}

static void fill_write(struct bl_request *r, uint32_t from);

void bl_proxy_cache_body(struct bl_request *r, uint32_t from)
{
    struct bl_cache_req *cr = r->cache;
    if (!cr || !cr->filling)
        return;
    fill_write(r, from);
    /* Committed as soon as the upstream's body is whole, not when the client has taken the
     * last byte: a slow client must not keep the entry from the next request (on any worker)
     * nor the proxy_cache_lock waiters from it. */
    if (r->resp_done || cr->fill_failed)
        fill_end(r);
}

/* Response body bytes [from, end) of the upstream buffer into the temp file. */
static void fill_write(struct bl_request *r, uint32_t from)
{
    struct bl_cache_req *cr = r->cache;
    struct bl_buf *b = r->a.conn->in;
    if (from >= b->end)
        return;
    const char *p = b->data + from;
    uint32_t n = b->end - from;
    if (r->resp.body == BL_H1_BODY_CHUNKED && !r->dechunking) {
        /* the client gets the chunks as they came; the file gets the data */
        if (!cr->dechunk_on) {
            cr->dechunk_on = 1;
            bl_dechunk_init(&cr->dechunk);
        }
        char tmp[16384];
        while (n) {
            uint32_t k = n < sizeof(tmp) ? n : (uint32_t)sizeof(tmp);
            memcpy(tmp, p, k);
            uint32_t d = bl_dechunk(&cr->dechunk, tmp, k);
            if (d && write_all(cr->tfd, tmp, d) != BL_OK) {
                cr->fill_failed = 1;
                return;
            }
            cr->written += d;
            p += k;
            n -= k;
        }
    } else {
        if (write_all(cr->tfd, p, n) != BL_OK) {
            cr->fill_failed = 1;
            return;
        }
        cr->written += n;
    }
    if (cr->z && cr->cc->path->max_size && cr->written > cr->cc->path->max_size)
        cr->fill_failed = 1; /* larger than the whole cache */
}

int bl_proxy_cache_error(struct bl_request *r, int status)
{
    struct bl_cache_req *cr = r->cache;
    if (!cr)
        return BL_ERR;
    if (r->cache_sink) {
        /* a background update failed: its client was answered already */
        fill_drop(cr, 0);
        bl_request_end(r);
        return BL_OK;
    }
    uint32_t bit = status == 504 ? BL_CUS_TIMEOUT : BL_CUS_ERROR | BL_CUS_INVALID_HEADER;
    if (!stale_usable(cr, bit) && !(status == 502 && stale_usable(cr, BL_CUS_HTTP_502)) &&
        !(status == 504 && stale_usable(cr, BL_CUS_HTTP_504)) &&
        !(status == 503 && stale_usable(cr, BL_CUS_HTTP_503)))
        return BL_ERR;
    if (serve_stale(r, status) == BL_OK)
        return BL_OK;
    return BL_ERR;
}

int bl_proxy_cache_answered(struct bl_request *r)
{
    struct bl_cache_req *cr = r->cache;
    if (!cr || !cr->background || !cr->fill_id || r->cache_sink)
        return 0;
    /* proxy_cache_background_update: the client has its stale answer; the refresh runs on
         * this request, as nginx's background subrequest holds the client's connection */
    cr->background = 0;
    r->cache_sink = 1;
    entry_close(cr);
    if (r->file_fd >= 0) {
        close(r->file_fd);
        r->file_fd = -1;
    }
    r->file_left = 0;
    gzip_undo(r); /* a compressed stale answer's; the refresh is not sent to anyone */
    bl_request_proxy(r);
    return 1;
}

void bl_proxy_cache_end(struct bl_request *r)
{
    struct bl_cache_req *cr = r->cache;
    if (!cr)
        return;
    /* A fill still open here did not see its body end (bl_proxy_cache_body() commits it
     * then): the upstream failed, the client went, or a path ended r without the hook; what
     * fill_end() decides from the body's state stands. */
    if (cr->filling)
        fill_end(r);
    else
        fill_drop(cr, 0); /* a fill that never opened: its key's lock is let go */
    r->cache = NULL;
    entry_close(cr);
    if (cr->key != cr->primary)
        free(cr->key);
    free(cr->primary);
    free(cr->store_key);
    free(cr);
}
