/* Heads the proxy writes: the request as it goes upstream (proxy_pass URI, hop-by-hop
 * headers dropped, X-Forwarded-*, proxy_set_header) and the response as it goes to the client.
 * Pure functions of the request: they fill r->out and call nothing else in the proxy. */
#include <string.h>
#include <strings.h>

#include "conf/hide_headers.h"
#include "core/version.h"
#include "http/proxy_int.h"
#include "http/response.h"
#include "http/uri.h"

/* ------------------------------------------------------------ building the upstream head */

struct out {
    char *p;
    size_t len, cap;
    int overflow;
};

static inline void out_put(struct out *o, const char *s, size_t n)
{
    if (o->len + n > o->cap) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static inline void out_str(struct out *o, const char *s) { out_put(o, s, strlen(s)); }

/* prefix, value and CRLF with one room check: the short lines ballast adds. */
static inline void out_line(struct out *o, const char *prefix, size_t plen, const char *v,
                            size_t vlen)
{
    if (o->len + plen + vlen + 2 > o->cap) {
        o->overflow = 1;
        return;
    }
    char *w = o->p + o->len;
    memcpy(w, prefix, plen);
    memcpy(w + plen, v, vlen);
    memcpy(w + plen + vlen, "\r\n", 2);
    o->len += plen + vlen + 2;
}

static void out_template(struct out *o, const struct bl_template *t, const struct bl_var_ctx *v)
{
    size_t room = o->cap - o->len;
    size_t n = bl_template_eval(t, v, o->p + o->len, room);
    if (n > room) {
        o->overflow = 1;
        return;
    }
    o->len += n;
}

static inline void out_header(struct out *o, const struct bl_h1_header *h)
{
    out_put(o, h->name, h->name_len);
    out_line(o, ": ", 2, h->value, h->value_len);
}

/* Field lines that go on unchanged are copied as runs: consecutive such lines of the parsed
 * head are one slice of its buffer, written with one copy when something else comes next or
 * the fields end (bench/README.md, "Profile"). Whatever else is written in between flushes
 * the run first, so the order of the lines is kept. */
struct run {
    const char *s, *e; /* the pending slice; s NULL: none */
};

/* Where h's line ends (after its CRLF) when the line as received reads exactly as out_header
 * would write it: one SP after the colon and nothing after the value. NULL otherwise. The
 * bytes read are the parsed line's own: the one between the colon and the value, and the CR
 * after the value (every header comes from bl_h1_parse, whose lines end in CRLF). */
static inline const char *verbatim_end(const struct bl_h1_header *h)
{
    if (h->value != h->name + h->name_len + 2 || h->name[h->name_len + 1] != ' ' ||
        h->value[h->value_len] != '\r')
        return NULL;
    return h->value + h->value_len + 2;
}

static inline void run_flush(struct out *o, struct run *r)
{
    if (r->s) {
        out_put(o, r->s, (size_t)(r->e - r->s));
        r->s = NULL;
    }
}

/* out_header, through the run. */
static inline void run_header(struct out *o, struct run *r, const struct bl_h1_header *h)
{
    const char *e = verbatim_end(h);
    if (!e) {
        run_flush(o, r);
        out_header(o, h);
        return;
    }
    if (r->s && r->e == h->name) {
        r->e = e;
        return;
    }
    run_flush(o, r);
    r->s = h->name;
    r->e = e;
}

/* Ends the head being built in r->out (the empty line) and makes it the next thing to send.
 * BL_ERR when it did not fit in the buffer. */
static int out_finish_head(struct bl_request *r, struct out *o)
{
    out_put(o, "\r\n", 2);
    if (o->overflow)
        return BL_ERR;
    r->out->start = 0;
    r->out->end = (uint32_t)o->len;
    r->out_sent = 0;
    return BL_OK;
}

static int overridden(const struct bl_location *loc, const struct bl_h1_header *h)
{
    for (uint32_t i = 0; i < loc->conf.nheaders; i++)
        if (loc->conf.headers[i].name_len == h->name_len &&
            strncasecmp(loc->conf.headers[i].name, h->name, h->name_len) == 0)
            return 1;
    return 0;
}

/* Whether a proxy_set_header line names the field name[0..len). */
static int set_by_config(const struct bl_location *loc, const char *name, size_t len)
{
    for (uint32_t i = 0; i < loc->conf.nheaders; i++)
        if (loc->conf.headers[i].name_len == len &&
            strncasecmp(loc->conf.headers[i].name, name, len) == 0)
            return 1;
    return 0;
}

/* A client field that ballast replaces with its own (head_ids): the request id field, and
 * traceparent while tracing; tracestate too when the trace starts here, since it belonged to
 * a trace that is not continued. */
static int replaced_by_ids(const struct bl_request *r, const struct bl_h1_header *h)
{
    const struct bl_loc_conf *lc = &r->loc->conf;
    if (lc->request_id_header && h->name_len == lc->request_id_header_len &&
        strncasecmp(h->name, lc->request_id_header, h->name_len) == 0)
        return 1;
    if (r->trace_state != BL_TRACE_NONE) {
        if (h->id == BL_H1_HDR_TRACEPARENT)
            return 1;
        if (r->trace_state == BL_TRACE_STARTED && h->id == BL_H1_HDR_TRACESTATE)
            return 1;
    }
    return 0;
}

/* The request line for the upstream: the target rewritten as proxy_pass says. */
static void head_request_line(struct out *o, const struct bl_request *r)
{
    const struct bl_h1_message *m = &r->msg;
    const struct bl_location *loc = r->loc;
    out_put(o, m->method, m->method_len);
    out_put(o, " ", 1);
    if (loc->proxy_uri_tpl) {
        /* proxy_pass with variables ($1...): the URI as evaluated, nothing appended (nginx) */
        struct bl_var_ctx v;
        bl_request_var_ctx(r, &v);
        out_template(o, loc->proxy_uri_tpl, &v);
    } else if (loc->has_proxy_uri || r->rw.uri_changed) {
        /* proxy_pass http://up/new/; location /old/ -> /old/x becomes /new/x (nginx); after
         * `rewrite ... break` the whole changed URI goes, the URI part ignored */
        size_t skip = 0;
        if (loc->has_proxy_uri && !r->rw.loc_invalid) {
            out_put(o, loc->proxy_uri, loc->proxy_uri_len);
            skip = loc->path_len <= r->upath_len ? loc->path_len : r->upath_len;
        }
        size_t room = o->cap - o->len;
        size_t n = bl_uri_escape(r->upath + skip, r->upath_len - skip, o->p + o->len, room);
        if (n > room)
            o->overflow = 1;
        else
            o->len += n;
        const char *args = r->rw.args_set ? r->rw.args : m->query;
        uint32_t alen = r->rw.args_set ? r->rw.args_len : m->query_len;
        if (args && alen) {
            out_put(o, "?", 1);
            out_put(o, args, alen);
        } else if (!r->rw.args_set && m->query) {
            out_put(o, "?", 1);
        }
    } else if (m->flags & BL_H1_F_ABSOLUTE_FORM) {
        out_put(o, m->path, m->path_len);
        if (m->query) {
            out_put(o, "?", 1);
            out_put(o, m->query, m->query_len);
        }
    } else {
        out_put(o, m->target, m->target_len);
    }
    out_str(o, " HTTP/1.1\r\n");
}

/* The request line goes as received when nothing in it changes: the usual case, one copy
 * instead of four (bench/README.md, "Profile"). The parser put the method, one SP and the
 * target next to each other; what follows the target is read only within the parsed head. */
static void head_request_line_fast(struct out *o, const struct bl_request *r)
{
    const struct bl_h1_message *m = &r->msg;
    const struct bl_location *loc = r->loc;
    if (!loc->proxy_uri_tpl && !loc->has_proxy_uri && !r->rw.uri_changed &&
        !(m->flags & BL_H1_F_ABSOLUTE_FORM) && m->minor_version == 1 &&
        memcmp(m->target + m->target_len, " HTTP/1.1\r\n", 11) == 0) {
        out_put(o, m->method, (size_t)(m->target + m->target_len + 11 - m->method));
        return;
    }
    head_request_line(o, r);
}

/* With BL_H1_F_TE_REWRITE the message's Transfer-Encoding fields go as one canonical line,
 * written in place of the first of them. True when h was such a field (not to be copied). */
static int te_rewritten(struct out *o, const struct bl_h1_message *m,
                        const struct bl_h1_header *h)
{
    if (!(m->flags & BL_H1_F_TE_REWRITE))
        return 0;
    for (const struct bl_h1_header *k = m->headers; k < h; k++)
        if (k->id == BL_H1_HDR_TRANSFER_ENCODING)
            return 1; /* the line went with the first field */
    size_t room = o->cap - o->len;
    size_t n = bl_h1_te_format(m, o->p + o->len, room);
    if (n > room)
        o->overflow = 1;
    else
        o->len += n;
    return 1;
}

/* The client's headers that go upstream as they are: not hop-by-hop, not replaced below.
 * Says whether a Host went (or proxy_set_header replaces it) and whether X-Forwarded-For
 * lines were held back to be merged. */
static void head_client_headers(struct out *o, const struct bl_request *r, int *have_host,
                                int *xff_seen)
{
    const struct bl_h1_message *m = &r->msg;
    const struct bl_location *loc = r->loc;
    struct run run = {0};
    for (uint32_t i = 0; i < m->nheaders; i++) {
        const struct bl_h1_header *h = &m->headers[i];
        if (h->hop)
            continue;
        switch (h->id) {
        case BL_H1_HDR_EXPECT:
            continue; /* ballast answers 100-continue itself */
        case BL_H1_HDR_TRANSFER_ENCODING:
            run_flush(o, &run);
            if (te_rewritten(o, m, h))
                continue;
            break;
        case BL_H1_HDR_X_FORWARDED_FOR:
            if (loc->set_xff) {
                *xff_seen = 1;
                continue; /* merged into one line below */
            }
            break;
        case BL_H1_HDR_X_REAL_IP:
            if (loc->set_xrip)
                continue;
            break;
        case BL_H1_HDR_X_FORWARDED_PROTO:
            if (loc->set_xfp)
                continue;
            break;
        case BL_H1_HDR_HOST:
            if (m->flags & BL_H1_F_ABSOLUTE_FORM)
                continue; /* the target's authority replaces Host (RFC 9112 3.2.2) */
            *have_host = 1;
            break;
        default:
            if (replaced_by_ids(r, h) || (r->cache && bl_proxy_cache_drops(r, h)))
                continue;
            break;
        }
        if (loc->conf.nheaders && overridden(loc, h)) {
            if (h->id == BL_H1_HDR_HOST)
                *have_host = 1;
            continue;
        }
        run_header(o, &run, h);
    }
    run_flush(o, &run);
}

/* Host when the client sent none (the target's authority, else the group's name), unless a
 * proxy_set_header line sets it. */
static void head_default_host(struct out *o, const struct bl_request *r)
{
    const struct bl_location *loc = r->loc;
    for (uint32_t i = 0; i < loc->conf.nheaders; i++)
        if (strcasecmp(loc->conf.headers[i].name, "host") == 0)
            return;
    out_str(o, "Host: ");
    if (r->msg.host)
        out_put(o, r->msg.host, r->msg.host_len);
    else
        out_str(o, r->a.server->group->name);
    out_put(o, "\r\n", 2);
}

/* X-Forwarded-For (the client's lines merged, then the client), X-Real-IP, X-Forwarded-Proto
 * as nginx's usual proxy_set_header lines would send them. */
static void head_forwarded(struct out *o, const struct bl_request *r, int xff_seen)
{
    const struct bl_h1_message *m = &r->msg;
    const struct bl_location *loc = r->loc;
    if (loc->set_xff && !xff_seen) {
        out_line(o, "X-Forwarded-For: ", 17, r->c->ip, r->c->ip_len);
    } else if (loc->set_xff) {
        out_str(o, "X-Forwarded-For: ");
        int first = 1;
        for (uint32_t i = 0; i < m->nheaders; i++) {
            if (m->headers[i].id != BL_H1_HDR_X_FORWARDED_FOR)
                continue;
            if (!first)
                out_put(o, ", ", 2);
            out_put(o, m->headers[i].value, m->headers[i].value_len);
            first = 0;
        }
        out_line(o, ", ", 2, r->c->ip, r->c->ip_len);
    }
    if (loc->set_xrip)
        out_line(o, "X-Real-IP: ", 11, r->c->ip, r->c->ip_len);
    if (loc->set_xfp)
        out_str(o, r->c->tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
}

/* The request id and traceparent (request_ids() in proxy.c made them), unless a
 * proxy_set_header line sets that field itself. */
static void head_ids(struct out *o, const struct bl_request *r)
{
    const struct bl_location *loc = r->loc;
    const struct bl_loc_conf *lc = &loc->conf;
    if (lc->request_id_header &&
        !set_by_config(loc, lc->request_id_header, lc->request_id_header_len)) {
        out_put(o, lc->request_id_header, lc->request_id_header_len);
        out_line(o, ": ", 2, r->request_id, r->request_id_len);
    }
    if (r->trace_state != BL_TRACE_NONE && !set_by_config(loc, "traceparent", 11)) {
        /* formatted in place: one room check, no copy */
        if (o->cap - o->len < 13 + 55 + 2) {
            o->overflow = 1;
            return;
        }
        char *w = o->p + o->len;
        memcpy(w, "traceparent: ", 13);
        bl_traceparent_format(w + 13, r->trace_id, r->span_id, r->trace_flags);
        memcpy(w + 13 + 55, "\r\n", 2);
        o->len += 13 + 55 + 2;
    }
}

/* proxy_set_header lines, evaluated; an empty value sends nothing (nginx). */
/* Returns 1 when a configured Connection field was written (nginx's WebSocket recipe:
 * `proxy_set_header Connection $connection_upgrade;`). */
static int head_set_headers(struct out *o, const struct bl_request *r)
{
    int connection = 0;
    const struct bl_location *loc = r->loc;
    if (!loc->conf.nheaders)
        return 0; /* the variables are not worked out for nothing (bench/README.md) */
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    for (uint32_t i = 0; i < loc->conf.nheaders; i++) {
        const struct bl_header_set *hs = &loc->conf.headers[i];
        if (hs->remove)
            continue;
        size_t mark = o->len;
        out_put(o, hs->name, hs->name_len);
        out_put(o, ": ", 2);
        size_t vstart = o->len;
        out_template(o, hs->value, &v);
        if (!o->overflow && o->len == vstart) {
            o->len = mark;
            continue;
        }
        out_put(o, "\r\n", 2);
        connection |= hs->name_len == 10 && strncasecmp(hs->name, "connection", 10) == 0;
    }
    return connection;
}

/* Writes the request head for the upstream into r->out. BL_OK or BL_ERR (too large). */
/* proxy_protocol on: the PROXY header first, naming the client (as realip made it) and the
 * address it connected to. Only on a connection of its own (proxy.c never pools these). */
static void head_proxy_protocol(struct out *o, const struct bl_request *r)
{
    const struct bl_client *c = r->c;
    union bl_sockaddr src = c->addr, dst;
    if (src.sa.sa_family == AF_INET)
        src.in.sin_port = htons(c->port);
    else if (src.sa.sa_family == AF_INET6)
        src.in6.sin6_port = htons(c->port);
    socklen_t len = sizeof(dst);
    if (getsockname(c->io.fd, &dst.sa, &len) != 0)
        dst.sa.sa_family = AF_UNSPEC;
    char h[BL_PP_WRITE_MAX];
    size_t n = bl_pp_write((int)r->loc->conf.proxy_protocol_version, &src.sa, &dst.sa, h,
                           sizeof(h));
    out_put(o, h, n);
}

int bl_proxy_upstream_head(struct bl_request *r)
{
    struct out o = {r->out->data, 0, r->out->cap, 0};
    int have_host = 0, xff_seen = 0;
    if (bl_unlikely(r->loc->conf.proxy_protocol))
        head_proxy_protocol(&o, r);
    head_request_line_fast(&o, r);
    head_client_headers(&o, r, &have_host, &xff_seen);
    if (!have_host)
        head_default_host(&o, r);
    head_forwarded(&o, r, xff_seen);
    head_ids(&o, r);
    if (r->cache) {
        size_t n = bl_proxy_cache_upstream_fields(r, o.p + o.len, o.cap - o.len);
        if (n > o.cap - o.len)
            o.overflow = 1;
        else
            o.len += n;
    }
    if (!head_set_headers(&o, r) &&
        (r->a.server->group->keepalive == 0 || r->loc->conf.proxy_protocol))
        out_str(&o, "Connection: close\r\n");
    return out_finish_head(r, &o);
}

/* ------------------------------------------------------------ building the client head */


static void head_add_headers(struct out *o, const struct bl_request *r, int status)
{
    const struct bl_location *loc = r->loc;
    if (!loc)
        return;
    if (loc->conf.expires) {
        char lines[256];
        size_t n = bl_static_expires(r, status, lines, sizeof(lines));
        out_put(o, lines, n);
    }
    if (!loc->conf.nadd_headers)
        return;
    int ok = bl_http_status_takes_added_fields(status);
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    for (uint32_t i = 0; i < loc->conf.nadd_headers; i++) {
        const struct bl_add_header *h = &loc->conf.add_headers[i];
        if (!ok && !h->always)
            continue;
        size_t mark = o->len;
        out_put(o, h->name, h->name_len);
        out_put(o, ": ", 2);
        size_t vstart = o->len;
        out_template(o, h->value, &v);
        if (!o->overflow && o->len == vstart) {
            o->len = mark; /* an empty value adds nothing (nginx) */
            continue;
        }
        out_put(o, "\r\n", 2);
    }
}

size_t bl_add_headers(const struct bl_request *r, int status, char *buf, size_t cap)
{
    struct out o = {buf, 0, cap, 0};
    head_add_headers(&o, r, status);
    return o.overflow ? cap + 1 : o.len;
}

/* bl_hidden_by_default() for a parsed field: Date and Server by the parser's id, the others
 * (X-Pad, X-Accel-*) only for the lengths they have. */
static inline uint32_t hidden_default(const struct bl_h1_header *h)
{
    switch (h->id) {
    case BL_H1_HDR_DATE:
        return BL_HIDE_DATE;
    case BL_H1_HDR_SERVER:
        return BL_HIDE_SERVER;
    case BL_H1_HDR_OTHER:
        if (h->name_len == 5 || (h->name_len >= 15 && h->name_len <= 18))
            return bl_hidden_by_default(h->name, h->name_len);
        return 0;
    }
    return 0;
}

static int hidden_by_config(const struct bl_location *loc, const struct bl_h1_header *h)
{
    for (uint32_t i = 0; i < loc->conf.nhide_headers; i++)
        if (strlen(loc->conf.hide_headers[i]) == h->name_len &&
            strncasecmp(loc->conf.hide_headers[i], h->name, h->name_len) == 0)
            return 1;
    return 0;
}

int bl_proxy_client_head(struct bl_request *r)
{
    const struct bl_h1_message *m = &r->resp;
    struct out o = {r->out->data, 0, r->out->cap, 0};
    /* The status is 100..599 (the parser checked): three digits, no printf on this path. */
    char line[13] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + m->status / 100);
    line[10] = (char)('0' + m->status / 10 % 10);
    line[11] = (char)('0' + m->status % 10);
    out_put(&o, line, sizeof(line));
    out_put(&o, m->reason, m->reason_len);
    out_put(&o, "\r\n", 2);
    /* Server and Date are ballast's own, as nginx's are, unless proxy_pass_header lets the
     * upstream's through (then ours only stands in for one the upstream did not send). */
    const struct bl_location *loc = r->loc;
    uint32_t pass = loc->conf.pass_headers;
    uint32_t own = BL_HIDE_SERVER | BL_HIDE_DATE;
    if (pass & own) {
        for (uint32_t i = 0; i < m->nheaders; i++)
            own &= ~(hidden_default(&m->headers[i]) & pass);
    }
    if (own & BL_HIDE_SERVER) {
        /* the line whole, as bl_http_server_name() names ballast */
        if (loc->conf.server_tokens)
            out_str(&o, "Server: " BL_SERVER_TOKENS_ON "\r\n");
        else
            out_str(&o, "Server: " BL_SERVER_TOKENS_OFF "\r\n");
    }
    if (own & BL_HIDE_DATE) {
        size_t dlen;
        const char *date = bl_http_date_header(&dlen);
        out_put(&o, date, dlen);
    }
    /* expires replaces the upstream's Expires and Cache-Control (nginx's headers filter) */
    char exp[256];
    int own_expires = loc->conf.expires && bl_static_expires(r, m->status, exp, sizeof(exp));
    struct run run = {0};
    if (!own_expires && !r->gz && !r->dechunking && m->status != 101 &&
        !(m->flags & BL_H1_F_TE_REWRITE) && !loc->conf.nhide_headers) {
        /* The usual response: the loop below with what cannot apply taken out (one test per
         * field for each feature, bench/README.md "Profile"). */
        for (uint32_t i = 0; i < m->nheaders; i++) {
            const struct bl_h1_header *h = &m->headers[i];
            uint32_t hidden = hidden_default(h);
            if (h->hop || (hidden && !(hidden & pass)))
                continue;
            run_header(&o, &run, h);
        }
        goto fields_done;
    }
    for (uint32_t i = 0; i < m->nheaders; i++) {
        const struct bl_h1_header *h = &m->headers[i];
        if (own_expires && ((h->name_len == 7 && strncasecmp(h->name, "Expires", 7) == 0) ||
                            (h->name_len == 13 && strncasecmp(h->name, "Cache-Control", 13) == 0)))
            continue;
        /* A 101's Upgrade names the protocol switched to: the client needs it (nginx). */
        if ((h->hop && !(m->status == 101 && h->id == BL_H1_HDR_UPGRADE)) ||
            (r->dechunking && h->id == BL_H1_HDR_TRANSFER_ENCODING))
            continue;
        if (r->gz && (h->id == BL_H1_HDR_CONTENT_LENGTH ||
                      h->id == BL_H1_HDR_TRANSFER_ENCODING))
            continue; /* the compressor frames the body */
        if (h->id == BL_H1_HDR_TRANSFER_ENCODING) {
            run_flush(&o, &run);
            if (te_rewritten(&o, m, h))
                continue;
        }
        uint32_t hidden = hidden_default(h);
        if ((hidden && !(hidden & pass)) || hidden_by_config(loc, h))
            continue;
        if (r->gz && h->name_len == 4 && strncasecmp(h->name, "ETag", 4) == 0 &&
            h->value_len && h->value[0] == '"') {
            /* the compressed bytes differ: a strong validator becomes weak (nginx) */
            run_flush(&o, &run);
            out_str(&o, "ETag: W/");
            out_put(&o, h->value, h->value_len);
            out_put(&o, "\r\n", 2);
            continue;
        }
        run_header(&o, &run, h);
    }
fields_done:
    run_flush(&o, &run);
    if (r->gz) {
        out_str(&o, "Content-Encoding: gzip\r\n");
        if (!r->c->h2 && r->msg.minor_version == 1 && r->msg.method_id != BL_H1_M_HEAD)
            out_str(&o, "Transfer-Encoding: chunked\r\n");
    }
    if (r->gz_vary)
        out_str(&o, "Vary: Accept-Encoding\r\n");
    if (m->status == 101)
        out_str(&o, "Connection: upgrade\r\n");
    else if (!r->keep_alive)
        out_str(&o, "Connection: close\r\n");
    else if (r->msg.minor_version == 0)
        out_str(&o, "Connection: keep-alive\r\n");
    head_add_headers(&o, r, m->status);
    return out_finish_head(r, &o);
}
