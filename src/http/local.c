/* Responses ballast makes itself: `return`, errors, and error_page's
 * internal redirects to them or to files (static.c). They are produced into the request (head in r->out, a file's
 * body read chunk by chunk); the proxy's writer sends them. Nothing here sends or finishes. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "http/gzip.h"
#include "http/proxy_int.h"
#include "http/response.h"
#include "http/router.h"

/* server_tokens of the request's location, or of its server before a location matched. */
static int server_tokens(const struct bl_request *r)
{
    const struct bl_server_block *srv = r->srv ? r->srv : r->c->listen->servers[0];
    return (int)(r->loc ? r->loc : srv->server_loc)->conf.server_tokens;
}

/* nginx's header filter: a Location of ballast's own that starts with "/" is made absolute
 * unless absolute_redirect is off: http://, the first server_name (server_name_in_redirect)
 * or the Host without its port or the local address, ":PORT" unless it is 80 or
 * port_in_redirect is off. Returns the length written to out (0: leave it as it is). */
static size_t absolute_location(const struct bl_request *r, const char *location, size_t len,
                                char *out, size_t cap)
{
    const struct bl_server_block *srv = r->srv ? r->srv : r->c->listen->servers[0];
    const struct bl_loc_conf *lc = &(r->loc ? r->loc : srv->server_loc)->conf;
    if (!len || location[0] != '/' || !lc->absolute_redirect)
        return 0;
    char host[256];
    size_t hlen = 0;
    if (lc->server_name_in_redirect) {
        hlen = (size_t)snprintf(host, sizeof(host), "%s", srv->nnames ? srv->names[0] : "");
    } else if (r->msg.host && r->msg.host_len) {
        /* $host: lowercase, without the port and a trailing dot */
        const char *h = r->msg.host;
        const char *end = h[0] == '[' ? memchr(h, ']', r->msg.host_len)
                                      : memchr(h, ':', r->msg.host_len);
        size_t n = !end ? r->msg.host_len : (size_t)(end - h) + (h[0] == '[');
        if (n && h[n - 1] == '.')
            n--;
        for (; hlen < n && hlen < sizeof(host) - 1; hlen++)
            host[hlen] = (char)tolower((unsigned char)h[hlen]);
    } else {
        union bl_sockaddr sa;
        socklen_t sl = sizeof(sa);
        if (r->c->io.fd >= 0 && getsockname(r->c->io.fd, &sa.sa, &sl) == 0)
            hlen = (size_t)bl_addr_format_ip(&sa.sa, host, sizeof(host));
    }
    if (hlen >= sizeof(host))
        hlen = sizeof(host) - 1;
    unsigned dflt = r->c->tls ? 443 : 80;
    unsigned port = lc->port_in_redirect ? r->c->listen->port : dflt;
    char portbuf[16] = "";
    if (port != dflt)
        snprintf(portbuf, sizeof(portbuf), ":%u", port);
    int n = snprintf(out, cap, "%s://%.*s%s%.*s", r->c->tls ? "https" : "http", (int)hlen, host,
                     portbuf, (int)len, location);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Puts the location's add_header lines at the end of the head made in r->out (before the empty
 * line, the body moved after them). Lines that do not fit are left out, and logged. */
static void insert_add_headers(struct bl_request *r, int status)
{
    const struct bl_location *loc = r->loc;
    if (!loc || (!loc->conf.nadd_headers && !loc->conf.expires))
        return;
    char lines[2048];
    size_t n = bl_add_headers(r, status, lines, sizeof(lines));
    if (!n)
        return;
    struct bl_buf *b = r->out;
    char *end = memmem(b->data, b->end, "\r\n\r\n", 4);
    if (n > sizeof(lines) || !end || b->end + n > b->cap) {
        bl_log(BL_LOG_ERROR, "add_header fields do not fit in the response head, client %s",
               r->c->ip);
        return;
    }
    char *at = end + 2;
    memmove(at + n, at, (size_t)(b->data + b->end - at));
    memcpy(at, lines, n);
    b->end += (uint32_t)n;
}

/* gzip on for a response made here (a page, a `return` text), its head and whole body in
 * r->out: the body compressed at once and the head told so (Content-Encoding, the new
 * Content-Length, Vary with gzip_vary), as nginx's gzip filter treats its own pages. Left as
 * it is when gzip does not apply or the result would not fit. */
static void local_gzip(struct bl_request *r, int status)
{
    struct bl_buf *b = r->out;
    char *end = memmem(b->data, b->end, "\r\n\r\n", 4);
    if (!end || !r->loc || !r->loc->conf.gzip)
        return;
    char *body = end + 4;
    size_t blen = (size_t)(b->data + b->end - body);
    char type[128] = "";
    const char *ct = memmem(b->data, (size_t)(end - b->data), "\r\nContent-Type: ", 16);
    if (ct) {
        ct += 16;
        const char *eol = memchr(ct, '\r', (size_t)(end + 2 - ct));
        size_t tl = eol ? (size_t)(eol - ct) : 0;
        if (tl < sizeof(type)) {
            memcpy(type, ct, tl);
            type[tl] = '\0';
        }
    }
    int d = bl_gzip_decide_local(r, status, ct ? type : NULL, blen);
    if (d == BL_GZIP_NO)
        return;
    char z[4096], head[256];
    size_t zlen = 0;
    if (d == BL_GZIP_YES &&
        !(zlen = bl_gzip_compress((int)r->loc->conf.gzip_comp_level, body, blen, z, sizeof(z))))
        return;
    int hn = snprintf(head, sizeof(head), "%s%s", d == BL_GZIP_YES ? "Content-Encoding: gzip\r\n" : "",
                      r->loc->conf.gzip_vary ? "Vary: Accept-Encoding\r\n" : "");
    if (d != BL_GZIP_YES) {
        /* only Vary: the body stays */
        if (hn <= 0 || b->end + (uint32_t)hn > b->cap)
            return;
        memmove(end + 2 + hn, end + 2, (size_t)(b->data + b->end - (end + 2)));
        memcpy(end + 2, head, (size_t)hn);
        b->end += (uint32_t)hn;
        return;
    }
    /* the head again, its Content-Length replaced, then the new fields and the body */
    char *cl = memmem(b->data, (size_t)(end - b->data), "\r\nContent-Length: ", 18);
    if (!cl)
        return;
    cl += 2;
    char *cl_end = memchr(cl, '\r', (size_t)(end + 2 - cl));
    if (!cl_end)
        return;
    cl_end += 2;
    char out[8192];
    size_t pre = (size_t)(cl - b->data), mid = (size_t)(end + 2 - cl_end);
    int n = snprintf(out, sizeof(out), "%.*sContent-Length: %zu\r\n%.*s%s\r\n", (int)pre,
                     b->data, zlen, (int)mid, cl_end, head);
    if (n < 0 || (size_t)n >= sizeof(out) || (size_t)n + zlen > b->cap)
        return;
    memcpy(b->data, out, (size_t)n);
    memcpy(b->data + n, z, zlen);
    b->end = (uint32_t)((size_t)n + zlen);
    r->body_bytes_sent = zlen;
}

/* Makes the head (and a small body) of a response in r->out. BL_OK, or BL_ERR when no
 * buffer could be had. */
static int local_write(struct bl_request *r, int status, const char *body, size_t len,
                       const char *location, size_t location_len)
{
    if (!r->out && !(r->out = bl_buf_get()))
        return BL_ERR;
    char abs[4096];
    size_t alen = location ? absolute_location(r, location, location_len, abs, sizeof(abs)) : 0;
    if (alen) {
        location = abs;
        location_len = alen;
    }
    bl_request_unread_body(r);
    /* 495 and 496 are nginx's names for two 400s (response.h); the log says 400 */
    r->status = status == BL_HTTP_SSL_CERT_ERROR || status == BL_HTTP_SSL_NO_CERT ? 400 : status;
    int head = r->msg.method_id == BL_H1_M_HEAD;
    int tokens = server_tokens(r);
    size_t body_bytes;
    size_t n = bl_http_build_response(r->out->data, r->out->cap, status, body, len, location,
                                      location_len, r->keep_alive,
                                      r->msg.minor_version == 0 && r->msg.method, head,
                                      status == 503 ? 1 : 0, tokens, &body_bytes);
    if (!n)
        n = bl_http_build_response(r->out->data, r->out->cap, 500, NULL, 0, NULL, 0, 0, 0, head,
                                   0, tokens, &body_bytes);
    r->out->start = 0;
    r->out->end = (uint32_t)n;
    r->out_sent = 0;
    r->body_bytes_sent = body_bytes;
    local_gzip(r, status);
    insert_add_headers(r, status);
    return BL_OK;
}

static int is_redirect(int code)
{
    return code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
}

/* `return CODE [TEXT]` answered with status (the return's own code, or an error page's):
 * the text is the body, or the Location of a redirect code (whose body is the status page).
 * No text: an empty body, as nginx sends. */
static int serve_text(struct bl_request *r, int code, const struct bl_template *t, int status)
{
    char text[4096];
    size_t n = 0;
    if (t) {
        struct bl_var_ctx v;
        bl_request_var_ctx(r, &v);
        n = bl_template_eval(t, &v, text, sizeof(text));
        if (n > sizeof(text))
            n = sizeof(text);
    }
    if (is_redirect(code))
        return local_write(r, code, NULL, 0, t ? text : NULL, n);
    return local_write(r, status, t ? text : "", n, NULL, 0);
}

static int serve_return(struct bl_request *r, const struct bl_location *loc, int status)
{
    return serve_text(r, loc->return_code, loc->return_text, status);
}

int bl_local_return(struct bl_request *r)
{
    bl_request_unread_body(r);
    int code = r->rw.ret_code;
    if (r->rw.redirect)
        return local_write(r, code, NULL, 0, r->rw.redirect, r->rw.redirect_len);
    /* An error code without text is an error like any other: error_page applies. */
    if (code >= 400 && !r->rw.ret_text)
        return bl_local_response(r, code, NULL, 0, NULL, 0);
    return serve_text(r, code, r->rw.ret_text, code);
}

int bl_local_serve_skipped_return(struct bl_request *r)
{
    const struct bl_location *loc = r->loc;
    bl_request_unread_body(r);
    if (loc->root)
        return bl_static_serve(r, loc, r->upath, r->upath_len, 200);
    return bl_local_response(r, 404, NULL, 0, NULL, 0);
}

int bl_local_serve(struct bl_request *r)
{
    const struct bl_location *loc = r->loc;
    bl_request_unread_body(r);
    switch (loc->kind) {
    case BL_LOC_RETURN:
        if (loc->return_code >= 400)
            return bl_local_response(r, loc->return_code, NULL, 0, NULL, 0);
        return serve_return(r, loc, loc->return_code);
    case BL_LOC_STATIC:
        return bl_static_serve(r, loc, r->upath, r->upath_len, 200);
    default:
        return bl_local_response(r, 404, NULL, 0, NULL, 0);
    }
}

/* Serves the page at uri ("/path" or "@name") for status as error_page does: the original
 * status unless overwrite says (> 0: that code, < 0: the page's own). BL_AGAIN when the
 * page's location cannot be served this way (it proxies): the caller sends the plain page. */
static int serve_page(struct bl_request *r, int status, const char *uri, int overwrite)
{
    /* nginx: an internal redirect to the page's location. One redirect only, so a page that
     * fails is plain. */
    r->error_page_done = 1;
    /* A named location keeps the request's URI; a URI is the page's own. */
    int named = uri[0] == '@';
    const struct bl_location *target = named ? bl_route_named(r->srv, uri, strlen(uri))
                                             : bl_route_location(r->srv, uri, strlen(uri));
    if (!target) {
        bl_log(BL_LOG_ERROR, "could not find named location \"%s\", client %s", uri,
               r->c->ip);
        return local_write(r, 500, NULL, 0, NULL, 0);
    }
    /* "=CODE" replaces the status, a bare "=" takes the page's own */
    int own = target->kind == BL_LOC_RETURN ? target->return_code : 200;
    int st = overwrite > 0 ? overwrite : overwrite < 0 ? own : status;
    /* A return with text answers that text with st ("return 503 sorry" behind "=503"); an
     * error code without text is the plain page of st, as nginx, whose recursive_error_pages
     * is off, sends it. */
    if (target->kind == BL_LOC_RETURN && (target->return_code < 400 || target->return_text))
        return serve_return(r, target, st);
    if (target->kind == BL_LOC_RETURN)
        return local_write(r, st, NULL, 0, NULL, 0);
    if (target->kind == BL_LOC_STATIC)
        return named ? bl_static_serve(r, target, r->upath, r->upath_len, st)
                     : bl_static_serve(r, target, uri, strlen(uri), st);
    /* A page that proxies: the caller redirects (a URI page goes as a GET, as in nginx); a
     * request whose body is gone or still coming cannot be sent again. */
    int bodyless = r->msg.body == BL_H1_BODY_NONE ||
                   (r->msg.body == BL_H1_BODY_LENGTH && r->msg.content_length == 0);
    if (target->kind == BL_LOC_PROXY && bodyless) {
        r->page_uri = uri;
        r->err_status = overwrite > 0 ? overwrite : overwrite < 0 ? 0 : status;
        return BL_LOCAL_PROXY;
    }
    bl_log(BL_LOG_WARN, "error page %s for %d: %s", uri, status,
           target->kind == BL_LOC_PROXY ? "the request has a body, which an error page that "
                                          "proxies cannot send again (the status page is sent)"
                                        : "no return, root or proxy_pass location serves it");
    return BL_AGAIN;
}

int bl_local_response(struct bl_request *r, int status, const char *body, size_t len,
                      const char *location, size_t location_len)
{
    const struct bl_location *loc = r->loc;
    if (bl_http_status_ends_connection(status))
        r->keep_alive = 0; /* as nginx, before its error_page: the request is in doubt */
    if (status >= 300 && loc && r->srv && !r->error_page_done) {
        for (uint32_t i = 0; i < loc->conf.nerror_pages; i++) {
            const struct bl_error_page *ep = &loc->conf.error_pages[i];
            if (ep->code != status)
                continue;
            int rc = serve_page(r, status, ep->uri, ep->overwrite);
            if (rc != BL_AGAIN)
                return rc;
            break;
        }
    }
    if (loc && loc->kind == BL_LOC_RETURN && !body && status == loc->return_code &&
        loc->return_text)
        return serve_return(r, loc, status);
    return local_write(r, status, body, len, location, location_len);
}

int bl_local_disabled(struct bl_request *r)
{
    const struct bl_location *loc = r->loc;
    bl_request_unread_body(r);
    /* A location the API disabled without a `disable` line answers 503. */
    int code = loc->disable_code ? loc->disable_code : 503;
    if (loc->disable_text)
        return local_write(r, code, loc->disable_text, strlen(loc->disable_text), NULL, 0);
    if (loc->disable_uri && r->srv && !r->error_page_done) {
        int rc = serve_page(r, code, loc->disable_uri, code);
        if (rc != BL_AGAIN)
            return rc;
        return local_write(r, code, NULL, 0, NULL, 0);
    }
    /* No page of its own: the status, through error_page like any of ballast's errors. */
    return bl_local_response(r, code, NULL, 0, NULL, 0);
}

int bl_local_error_page_for(const struct bl_request *r, int status)
{
    const struct bl_location *loc = r->loc;
    if (!loc || !r->srv || r->error_page_done)
        return 0;
    for (uint32_t i = 0; i < loc->conf.nerror_pages; i++)
        if (loc->conf.error_pages[i].code == status)
            return 1;
    return 0;
}
