/* gzip compression of responses, proxied or ballast's own: the decision (nginx's rules) and
 * the deflate stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "core/regex.h"
#include "core/status.h"
#include "http/gzip.h"
#include "http/proxy_int.h"

struct bl_gzip {
    z_stream z;
    struct bl_buf *out;
    uint8_t chunked;
    uint8_t done;                      /* Z_STREAM_END: the trailer is in out */
};

/* Room kept in front of each chunk for its size line ("ffffffff\r\n") and after it for its
 * CRLF and the last chunk. */
#define CHUNK_HEAD 10
#define CHUNK_TAIL 7

static inline int is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* The q-value of one element's parameters p[0..len) ("; q=0.5"): 0 when it is 0 (0, 0.0,
 * 0.000), else 1; an element without q counts as 1. */
static int q_positive(const char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(p[i]) || p[i] == ';'))
            i++;
        if (i + 1 < len && (p[i] == 'q' || p[i] == 'Q')) {
            size_t j = i + 1;
            while (j < len && is_ows(p[j]))
                j++;
            if (j < len && p[j] == '=') {
                j++;
                while (j < len && is_ows(p[j]))
                    j++;
                if (j < len && p[j] == '0') {
                    j++;
                    if (j < len && p[j] == '.') {
                        j++;
                        while (j < len && p[j] == '0')
                            j++;
                    }
                    if (j >= len || !(p[j] >= '1' && p[j] <= '9'))
                        return 0;
                }
                return 1;
            }
        }
        while (i < len && p[i] != ';')
            i++;
    }
    return 1;
}

int bl_gzip_accepted(const char *v, size_t len)
{
    int star = -1;
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t t = i;
        while (i < len && v[i] != ',' && v[i] != ';' && !is_ows(v[i]))
            i++;
        size_t tlen = i - t;
        size_t p = i;
        while (i < len && v[i] != ',')
            i++;
        if ((tlen == 4 && strncasecmp(v + t, "gzip", 4) == 0) ||
            (tlen == 6 && strncasecmp(v + t, "x-gzip", 6) == 0))
            return q_positive(v + p, i - p);
        if (tlen == 1 && v[t] == '*')
            star = q_positive(v + p, i - p);
    }
    return star > 0;
}

static const struct bl_h1_header *field(const struct bl_h1_message *m, const char *name)
{
    size_t len = strlen(name);
    for (uint32_t i = 0; i < m->nheaders; i++) {
        const struct bl_h1_header *h = &m->headers[i];
        if (h->name_len == len && strncasecmp(h->name, name, len) == 0)
            return h;
    }
    return NULL;
}

static int has_token(const struct bl_h1_header *h, const char *tok)
{
    size_t tl = strlen(tok);
    for (uint32_t i = 0; h && i + tl <= h->value_len; i++)
        if (strncasecmp(h->value + i, tok, tl) == 0)
            return 1;
    return 0;
}

static int type_listed(const struct bl_loc_conf *lc, const char *type, size_t type_len)
{
    if (!type)
        return 0;
    size_t len = 0;
    while (len < type_len && type[len] != ';' && !is_ows(type[len]))
        len++;
    for (uint32_t i = 0; i < lc->ngzip_types; i++) {
        const char *t = lc->gzip_types[i];
        if ((t[0] == '*' && !t[1]) || (strlen(t) == len && strncasecmp(t, type, len) == 0))
            return 1;
    }
    return 0;
}

/* gzip_proxied: whether an answer to a request that came through a proxy (Via) is compressed. */
static int proxied_ok(const struct bl_request *r, uint64_t bits)
{
    const struct bl_h1_message *m = &r->resp;
    if (bits & BL_GZIP_PROXIED_ANY)
        return 1;
    if ((bits & BL_GZIP_PROXIED_AUTH) && field(&r->msg, "Authorization"))
        return 1;
    if ((bits & BL_GZIP_PROXIED_EXPIRED) && field(m, "Expires"))
        return 1;
    const struct bl_h1_header *cc = field(m, "Cache-Control");
    if (((bits & BL_GZIP_PROXIED_NO_CACHE) && has_token(cc, "no-cache")) ||
        ((bits & BL_GZIP_PROXIED_NO_STORE) && has_token(cc, "no-store")) ||
        ((bits & BL_GZIP_PROXIED_PRIVATE) && has_token(cc, "private")))
        return 1;
    if ((bits & BL_GZIP_PROXIED_NO_LM) && !field(m, "Last-Modified"))
        return 1;
    if ((bits & BL_GZIP_PROXIED_NO_ETAG) && !field(m, "ETag"))
        return 1;
    return 0;
}

/* The facts about a response the decision reads, proxied or made here. */
struct gz_resp {
    int status;
    const char *type;                  /* Content-Type value, NULL when none */
    size_t type_len;
    int has_body;                      /* a body follows the head */
    int encoded;                       /* it has a Content-Encoding or other codings */
    int has_len;                       /* its length is known ... */
    uint64_t len;                      /* ... and is this */
};

/* nginx's rules, in its order; via_ok: gzip_proxied lets an answer to a proxied request
 * (Via) be compressed. */
static int decide(const struct bl_request *r, const struct gz_resp *g,
                  int (*via_ok)(const struct bl_request *r, uint64_t bits))
{
    const struct bl_loc_conf *lc = &r->loc->conf;
    /* nginx compresses 200, 403 and 404 only; a body must follow, in no coding yet */
    if (!lc->gzip || (g->status != 200 && g->status != 403 && g->status != 404) ||
        !g->has_body || g->encoded || !type_listed(lc, g->type, g->type_len) ||
        (g->has_len && g->len < lc->gzip_min_length))
        return BL_GZIP_NO;
    int vary = lc->gzip_vary ? BL_GZIP_VARY : BL_GZIP_NO;
    const struct bl_h1_header *ae = field(&r->msg, "Accept-Encoding");
    if (!ae || !bl_gzip_accepted(ae->value, ae->value_len) ||
        r->msg.minor_version < lc->gzip_http_version || field(&r->msg, "Range") ||
        (field(&r->msg, "Via") && !via_ok(r, lc->gzip_proxied)))
        return vary;
    const struct bl_h1_header *ua = field(&r->msg, "User-Agent");
    for (uint32_t i = 0; ua && i < lc->ngzip_disable; i++) {
        uint32_t ovec[2];
        if (bl_regex_exec(lc->gzip_disable[i], ua->value, ua->value_len, ovec, 1) > 0)
            return vary;
    }
    return BL_GZIP_YES;
}

int bl_gzip_decide(const struct bl_request *r)
{
    /* decide() says no without gzip too; this spares every response of a location without
     * gzip the two field walks below (about 120 instructions per proxied request) */
    if (!r->loc->conf.gzip)
        return BL_GZIP_NO;
    const struct bl_h1_message *m = &r->resp;
    const struct bl_h1_header *ct = field(m, "Content-Type");
    struct gz_resp g = {
        .status = m->status,
        .type = ct ? ct->value : NULL,
        .type_len = ct ? ct->value_len : 0,
        .has_body = m->body != BL_H1_BODY_NONE,
        .encoded = (m->flags & BL_H1_F_TE_CODINGS) || field(m, "Content-Encoding"),
        .has_len = m->body == BL_H1_BODY_LENGTH,
        .len = m->content_length,
    };
    return decide(r, &g, proxied_ok);
}

/* gzip_proxied for what ballast makes: files have Last-Modified and ETag (etag on); `expires`
 * gives Expires and Cache-Control. */
static int local_proxied_ok(const struct bl_request *r, uint64_t bits)
{
    const struct bl_loc_conf *lc = &r->loc->conf;
    int file = r->file_mtime != 0;
    if ((bits & BL_GZIP_PROXIED_ANY) ||
        ((bits & BL_GZIP_PROXIED_AUTH) && field(&r->msg, "Authorization")))
        return 1;
    if ((bits & BL_GZIP_PROXIED_EXPIRED) && lc->expires)
        return 1;
    if ((bits & BL_GZIP_PROXIED_NO_CACHE) && lc->expires &&
        (lc->expires == BL_EXPIRES_EPOCH || (int64_t)lc->expires_time < 0))
        return 1;
    if ((bits & BL_GZIP_PROXIED_NO_LM) && !file)
        return 1;
    if ((bits & BL_GZIP_PROXIED_NO_ETAG) && (!file || !lc->etag))
        return 1;
    return 0;
}

int bl_gzip_decide_local(const struct bl_request *r, int status, const char *type,
                         uint64_t len)
{
    struct gz_resp g = {
        .status = status,
        .type = type,
        .type_len = type ? strlen(type) : 0,
        .has_body = r->msg.method_id != BL_H1_M_HEAD && len > 0,
        .has_len = 1,
        .len = len,
    };
    return decide(r, &g, local_proxied_ok);
}

size_t bl_gzip_compress(int level, const char *in, size_t len, char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return rc == Z_STREAM_END ? n : 0;
}

struct bl_gzip *bl_gzip_new(int level, int chunked)
{
    struct bl_gzip *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    if (!(g->out = bl_buf_get())) {
        free(g);
        return NULL;
    }
    /* windowBits 15 + 16: a gzip wrapper, not zlib's */
    if (deflateInit2(&g->z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        bl_buf_put(g->out);
        free(g);
        return NULL;
    }
    g->chunked = (uint8_t)chunked;
    return g;
}

void bl_gzip_free(struct bl_gzip *g)
{
    if (!g)
        return;
    deflateEnd(&g->z);
    bl_buf_put(g->out);
    free(g);
}

struct bl_buf *bl_gzip_out(struct bl_gzip *g) { return g->out; }

int bl_gzip_done(const struct bl_gzip *g) { return g->done; }

int bl_gzip_feed(struct bl_gzip *g, const char *in, uint32_t len, int finish, uint32_t *used)
{
    struct bl_buf *o = g->out;
    uint32_t head = g->chunked ? CHUNK_HEAD : 0;
    uint32_t room = o->cap - head - (g->chunked ? CHUNK_TAIL : 0);
    g->z.next_in = (Bytef *)(uintptr_t)in;
    g->z.avail_in = len;
    g->z.next_out = (Bytef *)o->data + head;
    g->z.avail_out = room;
    int rc = deflate(&g->z, finish ? Z_FINISH : Z_NO_FLUSH);
    if (rc == Z_STREAM_ERROR)
        return BL_ERR;
    *used = len - g->z.avail_in;
    uint32_t n = room - g->z.avail_out;
    o->start = o->end = head;
    if (rc == Z_STREAM_END)
        g->done = 1;
    if (g->chunked && n) {
        char line[CHUNK_HEAD + 1];
        int l = snprintf(line, sizeof(line), "%x\r\n", (unsigned)n);
        o->start = head - (uint32_t)l;
        memcpy(o->data + o->start, line, (size_t)l);
        memcpy(o->data + head + n, "\r\n", 2);
        o->end = head + n + 2;
    } else {
        o->end = head + n;
    }
    if (g->chunked && g->done) {
        memcpy(o->data + o->end, "0\r\n\r\n", 5);
        o->end += 5;
    }
    return BL_OK;
}
