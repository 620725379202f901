/* The admin listener and its HTTP/1.1 connections (admin.h); routes are api.c's.
 *
 * One connection is one buffer big enough for the largest head plus the largest body, so a
 * request is parsed in place (the h1 parser keeps slices of it) and handled once whole. Each
 * answer is written before the next request is read (pipelined requests wait in the buffer).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/api.h"
#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/sock.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "http/h1_parser.h"
#include "reload.h"
#include "worker.h"

#define ADMIN_MAX_LINE  8192u
#define ADMIN_MAX_HEAD  16384u
#define ADMIN_MAX_BODY  65536u
#define ADMIN_BUF       (ADMIN_MAX_HEAD + ADMIN_MAX_BODY)
#define ADMIN_MAX_CONNS 64u
#define ADMIN_IDLE_MS   30000u

struct admin_conn {
    struct bl_io io;               /* first: the loop hands back &io */
    struct bl_timer timer;         /* idle or slow request: closed when it fires */
    struct bl_deferred dfree;
    struct bl_admin *admin;
    struct admin_conn *prev, *next;
    struct bl_h1_parser parser;
    struct bl_h1_message msg;
    struct bl_h1_header fields[BL_H1_MAX_HEADERS]; /* msg's */
    uint32_t head_len;             /* > 0: the head is parsed, waiting for the body */
    size_t in_len;
    struct bl_strbuf out;          /* the answer being written */
    size_t out_off;
    uint8_t closing;               /* close once out is written */
    uint8_t sent_continue;         /* "100 Continue" went for this request */
    char in[ADMIN_BUF];
};

struct bl_admin {
    struct bl_io listener;         /* first */
    struct bl_loop *loop;
    struct admin_conn *conns;
    uint32_t nconns;
};

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---------------------------------------------------------------- connections */

static void conn_free(struct bl_deferred *d)
{
    struct admin_conn *c = (struct admin_conn *)((char *)d - offsetof(struct admin_conn, dfree));
    bl_strbuf_free(&c->out);
    free(c);
}

static void conn_close(struct admin_conn *c)
{
    struct bl_admin *a = c->admin;
    bl_timer_cancel(a->loop, &c->timer);
    bl_loop_close(a->loop, &c->io);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->nconns--;
    /* Its fd may still have events in this batch: free after it. */
    c->dfree.run = conn_free;
    bl_loop_defer(a->loop, &c->dfree);
}

static void on_timer(struct bl_timer *t)
{
    conn_close((struct admin_conn *)((char *)t - offsetof(struct admin_conn, timer)));
}

static void conn_reset_parser(struct admin_conn *c)
{
    bl_h1_parser_init_request(&c->parser, ADMIN_MAX_LINE, ADMIN_MAX_HEAD);
    c->head_len = 0;
    c->sent_continue = 0;
}

/* Appends the answer (head and body) to c->out. */
static void queue_response(struct admin_conn *c, const struct bl_api_response *r, int head_only)
{
    const char *body = r->static_body ? r->static_body : r->body.data;
    size_t len = r->static_body ? r->static_len : r->body.len;
    struct bl_strbuf *o = &c->out;
    bl_strbuf_printf(o, "HTTP/1.1 %d %s\r\nServer: ballast\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nCache-Control: no-store\r\n", r->status,
                     reason_phrase(r->status),
                     r->content_type ? r->content_type : "application/json", len);
    if (r->allow)
        bl_strbuf_printf(o, "Allow: %s\r\n", r->allow);
    if (r->status == 401)
        bl_strbuf_puts(o, "WWW-Authenticate: Bearer realm=\"ballast\"\r\n");
    if (c->closing)
        bl_strbuf_puts(o, "Connection: close\r\n");
    bl_strbuf_puts(o, "\r\n");
    if (!head_only && len)
        bl_strbuf_append(o, body, len);
}

/* An error answered before routing (bad head, too large, unauthorized). close: the rest of
 * the input cannot be trusted to frame the next request. */
static void queue_error(struct admin_conn *c, int status, const char *reason, int close)
{
    struct bl_api_response r = {0};
    bl_api_error(&r, status, reason);
    c->closing |= (uint8_t)close;
    queue_response(c, &r, 0);
    bl_strbuf_free(&r.body);
}

/* Writes what is queued. BL_OK: all of it; BL_AGAIN: the rest waits for the next write edge;
 * BL_ERR: the connection failed. */
static int flush(struct admin_conn *c)
{
    if (c->out.failed)
        return BL_ERR;
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->io.fd, c->out.data + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return BL_AGAIN;
        return BL_ERR;
    }
    c->out.len = 0;
    c->out_off = 0;
    return BL_OK;
}

/* Case-insensitive "Bearer" then blanks then the token; constant time in the token's bytes,
 * whatever the client sent (the length of the expected token is no secret worth hiding). */
static int auth_ok(const struct bl_h1_message *m, const char *want, size_t wlen,
                   const char **why)
{
    const struct bl_h1_header *h = NULL;
    for (uint16_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name_len == 13 &&
            strncasecmp(m->headers[i].name, "authorization", 13) == 0) {
            if (h) {
                *why = "more than one Authorization header";
                return 0;
            }
            h = &m->headers[i];
        }
    if (!h) {
        *why = "this call needs \"Authorization: Bearer TOKEN\" (admin token_file)";
        return 0;
    }
    const char *v = h->value;
    size_t n = h->value_len;
    if (n < 7 || strncasecmp(v, "bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t')) {
        *why = "the Authorization header is not a Bearer token";
        return 0;
    }
    v += 7;
    n -= 7;
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    unsigned diff = n != wlen;
    for (size_t i = 0; i < wlen; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < n ? v[i] : 0);
    if (diff) {
        *why = "wrong token";
        return 0;
    }
    return 1;
}

static int is_status_page(const struct bl_h1_message *m)
{
    return (m->method_id == BL_H1_M_GET || m->method_id == BL_H1_M_HEAD) &&
           ((m->path_len == 7 && memcmp(m->path, "/status", 7) == 0) ||
            (m->path_len == 8 && memcmp(m->path, "/status/", 8) == 0));
}

/* One whole request (head and body in c->in): routed and answered into c->out. */
static void handle(struct admin_conn *c)
{
    const struct bl_h1_message *m = &c->msg;
    if (!m->keep_alive)
        c->closing = 1;
    const char *why = NULL;
    const struct bl_generation *gen = bl_reload_current();
    const struct bl_admin_conf *ac = &gen->cfg->admin;
    if (!ac->enabled) {
        /* A reload took the admin block out: the API is off (and would have no token). */
        queue_error(c, 503, "the configuration serving now has no admin block: the API is "
                    "off (restart to close this listener)", 1);
        return;
    }
    if (ac->token && !is_status_page(m) && !auth_ok(m, ac->token, ac->token_len, &why)) {
        queue_error(c, 401, why, 0);
        return;
    }
    struct bl_api_ctx ctx = {.cfg = gen->cfg, .stats = gen->stats, .now_ms = bl_clock_ms};
    struct bl_api_request rq = {
        .method = m->method_id,
        .path = m->path,
        .path_len = m->path_len,
        .query = m->query,
        .query_len = m->query ? m->query_len : 0,
        .body = c->in + c->head_len,
        .body_len = m->body == BL_H1_BODY_LENGTH ? (size_t)m->content_length : 0,
    };
    struct bl_api_response rs = {0};
    bl_api_handle(&ctx, &rq, &rs);
    queue_response(c, &rs, m->method_id == BL_H1_M_HEAD);
    bl_strbuf_free(&rs.body);
}

/* Parses and answers the next buffered request. 1: one was answered (or an error queued);
 * 0: more input is needed. */
static int process_one(struct admin_conn *c)
{
    if (c->closing)
        return 0;
    if (!c->head_len) {
        if (c->in_len == 0)
            return 0;
        int r = bl_h1_parse(&c->parser, c->in, c->in_len, &c->msg);
        if (r == BL_AGAIN)
            return 0;
        if (r < 0) {
            queue_error(c, c->parser.error ? c->parser.error : 400,
                        c->parser.reason ? c->parser.reason : "invalid request", 1);
            return 1;
        }
        c->head_len = (uint32_t)r;
        if (c->msg.body == BL_H1_BODY_CHUNKED) {
            queue_error(c, 411, "send the body with Content-Length, not chunked", 1);
            return 1;
        }
        if (c->msg.body == BL_H1_BODY_LENGTH && c->msg.content_length > ADMIN_MAX_BODY) {
            queue_error(c, 413, "the body is larger than 64 KiB", 1);
            return 1;
        }
    }
    size_t need = c->head_len +
                  (c->msg.body == BL_H1_BODY_LENGTH ? (size_t)c->msg.content_length : 0);
    if (c->in_len < need) {
        if ((c->msg.flags & BL_H1_F_EXPECT_CONTINUE) && !c->sent_continue) {
            c->sent_continue = 1;
            bl_strbuf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
            return 1;
        }
        return 0;
    }
    handle(c);
    memmove(c->in, c->in + need, c->in_len - need);
    c->in_len -= need;
    conn_reset_parser(c);
    return 1;
}

/* Writes, answers and reads until the socket would block either way, or the connection is
 * done. */
static void conn_run(struct admin_conn *c)
{
    bl_timer_set(c->admin->loop, &c->timer, bl_clock_ms + ADMIN_IDLE_MS);
    for (;;) {
        if (c->out.len > c->out_off || c->out.failed) {
            int r = flush(c);
            if (r == BL_AGAIN)
                return;
            if (r == BL_ERR || c->closing) {
                if (r == BL_OK)
                    shutdown(c->io.fd, SHUT_WR);
                conn_close(c);
                return;
            }
        }
        if (process_one(c))
            continue;
        if (c->closing) {
            conn_close(c);
            return;
        }
        if (c->in_len == sizeof(c->in)) { /* not reached: a request fits by construction */
            conn_close(c);
            return;
        }
        ssize_t n = recv(c->io.fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c);
        return;
    }
}

static void on_conn(struct bl_io *io, uint32_t ev)
{
    BL_UNUSED(ev);
    conn_run((struct admin_conn *)io);
}

static void on_accept(struct bl_io *io, uint32_t ev)
{
    struct bl_admin *a = (struct bl_admin *)io;
    BL_UNUSED(ev);
    for (int i = 0; i < 16; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                bl_log(BL_LOG_ERROR, "admin: accept() failed (%s)", strerror(errno));
            return;
        }
        struct admin_conn *c = a->nconns < ADMIN_MAX_CONNS ? malloc(sizeof(*c)) : NULL;
        if (!c) {
            if (a->nconns >= ADMIN_MAX_CONNS)
                bl_log(BL_LOG_WARN, "admin: %u connections open, closing a new one",
                       ADMIN_MAX_CONNS);
            close(fd);
            continue;
        }
        memset(c, 0, offsetof(struct admin_conn, in));
        c->io.fd = fd;
        c->io.handler = on_conn;
        c->timer.handler = on_timer;
        c->admin = a;
        bl_h1_message_init(&c->msg, c->fields, BL_H1_MAX_HEADERS);
        conn_reset_parser(c);
        if (bl_loop_add(a->loop, &c->io) != BL_OK) {
            close(fd);
            free(c);
            continue;
        }
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->nconns++;
        conn_run(c);
    }
}

/* ---------------------------------------------------------------- the server */

struct bl_admin *bl_admin_start(struct bl_loop *loop, const struct bl_config *cfg, char *err,
                                size_t errlen)
{
    struct bl_admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->listener.handler = on_accept;
    /* After a binary upgrade the old process's socket is ours (worker.h). */
    a->listener.fd = bl_generation_take_inherited(cfg->admin.text);
    if (a->listener.fd < 0)
        a->listener.fd = bl_sock_listen((const struct sockaddr *)&cfg->admin.addr,
                                        cfg->admin.addrlen, 64, 0, 0, 0, err, errlen);
    if (a->listener.fd < 0) {
        free(a);
        return NULL;
    }
    if (bl_loop_add_level(loop, &a->listener) != BL_OK) {
        snprintf(err, errlen, "epoll_ctl() failed (%s)", strerror(errno));
        close(a->listener.fd);
        free(a);
        return NULL;
    }
    bl_log(BL_LOG_NOTICE, "admin API on %s%s", cfg->admin.text,
           cfg->admin.token ? " (token required)" : "");
    return a;
}

int bl_admin_listen_fd(const struct bl_admin *a)
{
    return a->listener.fd;
}

void bl_admin_stop(struct bl_admin *a)
{
    if (!a)
        return;
    while (a->conns)
        conn_close(a->conns);
    bl_loop_close(a->loop, &a->listener);
    free(a);
}
