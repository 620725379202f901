/* The L7 proxy state machine: client connection -> request -> upstream connection and back.
 *
 * Readiness is edge-triggered and tracked by the connection itself (rready / wready): a flag
 * is set by an event and cleared when a read or write comes back short, so the proxy makes one
 * recv and one send per side per request in the common case and never probes for EAGAIN.
 *
 * Buffers. The client's input buffer holds the request head for the whole request (its slices
 * are read by routing, variables and the access log); the body streams through the space after
 * it. The upstream's input buffer holds the response head until the client's head is built,
 * then the response body streams through it. A side stops reading while the other side cannot
 * take what it already has: that is the back-pressure, and the memory bound per connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pipe.h"
#include "core/sock.h"
#include "core/sys.h"
#include "core/rand.h"
#include "http/access_log.h"
#include "http/h2.h"
#include "http/proxy.h"
#include "http/gzip.h"
#include "http/proxy_int.h"
#include "http/realip.h"
#include "http/response.h"
#include "http/router.h"
#include "http/uri.h"
#include "conf/proxy_ssl.h"
#include "upstream/uptls.h"
#include "upstream/outlier.h"
#include "upstream/retry_budget.h"

static void client_close(struct bl_client *c);
static void stream_client_close(struct bl_client *c, int complete);
static void client_read_head(struct bl_client *c);
static int attempt_failed(struct bl_request *r, enum bl_attempt_error kind, int status,
                          const char *why, int err);
static void attempt_start(struct bl_request *r, int fresh);
static int queue_request(struct bl_request *r, struct bl_upstream_group *g);
static void request_abort(struct bl_request *r, int status, const char *why);
static void request_drop(struct bl_request *r);
static void request_finish(struct bl_request *r);
static int send_client(struct bl_request *r);
static void local_response(struct bl_request *r, int status);
static void local_done(struct bl_request *r, int rc);
static void request_next(struct bl_request *r);
static int discardable(const struct bl_request *r);
static int drop_read(struct bl_request *r);
static void drop_body(struct bl_request *r);
static void drop_body_event(struct bl_request *r, uint32_t ev);
static void proxy_phase(struct bl_request *r, int state);
static void proxy_run(struct bl_request *r);
static void proxy_start(struct bl_request *r);
static int client_gone(struct bl_client *c);
static void proxy_client_event(struct bl_request *r, uint32_t ev);
static int client_migrate(struct bl_client *c);
static const struct bl_listen *listen_find(const struct bl_config *cfg,
                                           const struct bl_listen *l);

/* Whether c belongs to an older generation than the worker's current one (a reload). */
static inline int client_outdated(const struct bl_client *c)
{
    return c->w->current && *c->w->current != c->w;
}

/* ------------------------------------------------------------ small helpers */

/* c's listener's counters in its worker's block, worked out rather than kept in every
 * connection (8 bytes of each idle connection; bench/README.md, "Idle connection memory"). */
static inline struct bl_stats_listen *client_stats(const struct bl_client *c)
{
    return &c->w->stats->listens[c->listen - c->w->cfg->listens];
}

/* Changes c's state, keeping its listener's idle-connection gauge (core/stats.h). */
static inline void client_state(struct bl_client *c, uint8_t state)
{
    if ((c->state == CS_IDLE) != (state == CS_IDLE)) {
        if (state == CS_IDLE)
            bl_stat_add(&client_stats(c)->conns_idle, 1);
        else
            bl_stat_sub(&client_stats(c)->conns_idle, 1);
    }
    c->state = state;
}

/* The statistics of the request's current upstream server, in this worker's block. */
static inline struct bl_stats_peer *peer_stats(const struct bl_request *r)
{
    return &r->c->w->stats->peers[r->a.server->id];
}

static inline void count_failure(const struct bl_request *r, enum bl_stats_fail why)
{
    bl_stat_add(&peer_stats(r)->failures[why], 1);
}

/* recv into b; returns bytes (> 0), 0 at EOF, BL_AGAIN, or BL_ERR (core/status.h). Clears
 * *ready on a short read: with edge-triggered epoll, a short read means the socket is drained,
 * unless the peer has closed its side (hup), whose EOF is still to be read and will bring no
 * new edge. Through the loop's receive seam (core/loop.h, bl_loop_recv): on io_uring a
 * connection registered with bl_loop_add_recv is read by the loop, and this takes what it
 * queued, no syscall. */
static ssize_t read_into(struct bl_loop *l, struct bl_io *io, struct bl_buf *b, uint8_t *ready,
                         uint8_t hup)
{
    size_t room = bl_buf_room(b);
    ssize_t n;
    do
        n = bl_loop_recv(l, io, b->data + b->end, room, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        b->end += (uint32_t)n;
        if ((size_t)n < room && !hup)
            *ready = 0;
        return n;
    }
    if (n == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *ready = 0;
        return BL_AGAIN;
    }
    return BL_ERR;
}

/* writev (sendmsg: core/sys.h); returns bytes written (> 0), BL_AGAIN (nothing went) or BL_ERR (core/status.h).
 * Clears *ready on a short write. */
static ssize_t write_iov(int fd, struct iovec *iov, int n, uint8_t *ready)
{
    size_t want = 0;
    for (int i = 0; i < n; i++)
        want += iov[i].iov_len;
    ssize_t w;
    do
        w = n == 1 ? bl_sys_send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                   : bl_sys_sendv(fd, iov, n);
    while (w < 0 && errno == EINTR);
    if (w >= 0) {
        if ((size_t)w < want)
            *ready = 0;
        return w > 0 ? w : BL_AGAIN;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *ready = 0;
        return BL_AGAIN;
    }
    return BL_ERR;
}

/* write_iov for a registered socket, through the loop's send seam (core/loop.h,
 * bl_loop_send): on io_uring a small write is staged and goes out with the turn's one
 * io_uring_enter; on epoll it is write_iov. Clears *ready on a short write. */
static inline ssize_t sock_writev(struct bl_loop *l, struct bl_io *io, struct iovec *iov, int n,
                                  uint8_t *ready)
{
    ssize_t w = bl_loop_send(l, io, iov, n);
    if (w == BL_AGAIN) {
        *ready = 0;
    } else if (w > 0) {
        size_t want = 0;
        for (int i = 0; i < n; i++)
            want += iov[i].iov_len;
        if ((size_t)w < want)
            *ready = 0;
    }
    return w;
}

/* ------------------------------------------------------------ transport
 * The client side's seam: plain sockets go straight to recv/send (one predictable branch,
 * nothing else on the plain path); a TLS connection goes through http/tls.c, an HTTP/2
 * stream client through http/h2.c. */

static inline ssize_t client_read(struct bl_client *c, struct bl_buf *b)
{
    if (bl_likely(!c->tls && !c->h2))
        return read_into(c->w->loop, &c->io, b, &c->rready, c->hup);
    if (c->h2)
        return bl_h2_stream_read(c, b);
    ssize_t n = bl_tls_read(c->tls, b->data + b->end, bl_buf_room(b), &c->rready, &c->tls_want);
    if (n > 0)
        b->end += (uint32_t)n;
    return n;
}

static inline ssize_t client_writev(struct bl_client *c, struct iovec *iov, int n)
{
    if (bl_likely(!c->tls && !c->h2))
        return sock_writev(c->w->loop, &c->io, iov, n, &c->wready);
    if (c->h2)
        return bl_h2_stream_writev(c, iov, n);
    return bl_tls_writev(c->tls, iov, n, &c->wready, &c->tls_want);
}

/* A small best-effort write outside the request's flow (100 Continue, 1xx, an out-of-memory
 * 503): bytes written, or -1. */
static ssize_t client_send_small(struct bl_client *c, const char *p, size_t len)
{
    if (c->h2)
        return -1; /* interim responses are not relayed over HTTP/2 */
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    if (bl_likely(!c->tls)) {
        ssize_t n = bl_loop_send(c->w->loop, &c->io, &iov, 1);
        return n > 0 ? n : -1;
    }
    uint8_t ready = 1;
    ssize_t n = bl_tls_writev(c->tls, &iov, 1, &ready, &c->tls_want);
    return n > 0 ? n : -1;
}

/* The upstream side's seam, the same shape: one predictable branch on u->tls. */
_Static_assert(BL_UPCONN_READ_WANTS_WRITE == BL_TLS_READ_WANTS_WRITE &&
                   BL_UPCONN_WRITE_WANTS_READ == BL_TLS_WRITE_WANTS_READ,
               "the pool and http/tls.c read the same want bits");

static inline ssize_t upstream_read_into(struct bl_upconn *u, struct bl_buf *b)
{
    if (bl_likely(!u->tls))
        return read_into(u->pool->loop, &u->io, b, &u->rready, u->hup);
    errno = 0;
    ssize_t n = bl_tls_read(u->tls, b->data + b->end, bl_buf_room(b), &u->rready, &u->tls_want);
    if (n > 0)
        b->end += (uint32_t)n;
    else if (n == BL_ERR && errno == 0)
        errno = EPROTO; /* a TLS error, not a socket one: the log says "Protocol error" */
    return n;
}

static inline ssize_t upstream_writev(struct bl_upconn *u, struct iovec *iov, int n)
{
    /* A new connection's first request is written at once: a refused non-blocking connect
     * shows up on that send, and a failure there is a connect failure (attempt_failed,
     * sent_any), not one after the request went. Reused ones go through the loop's seam. */
    if (bl_likely(!u->tls))
        return u->nrequests > 1 ? sock_writev(u->pool->loop, &u->io, iov, n, &u->wready)
                                : write_iov(u->io.fd, iov, n, &u->wready);
    errno = 0;
    ssize_t w = bl_tls_writev(u->tls, iov, n, &u->wready, &u->tls_want);
    if (w == BL_ERR && errno == 0)
        errno = EPROTO;
    return w;
}

ssize_t bl_upstream_read(struct bl_upconn *u, struct bl_buf *b)
{
    return upstream_read_into(u, b);
}

ssize_t bl_upstream_writev(struct bl_upconn *u, struct iovec *iov, int n)
{
    return upstream_writev(u, iov, n);
}

ssize_t bl_fd_writev(int fd, struct iovec *iov, int n, uint8_t *ready)
{
    return write_iov(fd, iov, n, ready);
}

ssize_t bl_client_read(struct bl_client *c, struct bl_buf *b)
{
    return client_read(c, b);
}

ssize_t bl_client_writev(struct bl_client *c, struct iovec *iov, int n)
{
    return client_writev(c, iov, n);
}

void bl_request_end(struct bl_request *r)
{
    request_finish(r);
}

void bl_request_local_done(struct bl_request *r, int rc)
{
    local_done(r, rc);
}

void bl_request_abort(struct bl_request *r, int status, const char *why)
{
    request_abort(r, status, why);
}

void bl_request_proxy(struct bl_request *r)
{
    r->client_handler = proxy_client_event;
    proxy_start(r);
}

/* A request waiting for something other than its client (a cache fill): only the client's
 * going away matters. */
void bl_request_wait_client(struct bl_request *r, uint32_t ev)
{
    if ((ev & BL_EV_READ) && r->req_body_done && client_gone(r->c)) {
        bl_log(BL_LOG_INFO, "client %s closed the connection while waiting", r->c->ip);
        request_abort(r, 0, "client closed while waiting");
    }
}

/* A request object is freed for good (its free list is full or trimmed). */
static void request_destroy(void *p)
{
    struct bl_request *r = p;
    bl_h1_message_free(&r->msg);
    bl_h1_message_free(&r->resp);
    free(r);
}

/* Request objects are recycled per worker (hw->request_cache): no malloc per request in the
 * steady state. (Page-aligned ones were tried, to keep a plain request's hot parts in one
 * page: 1.24x the user time at 200 connections, their hot lines all in the same cache sets.) */
static struct bl_request *request_new(struct bl_client *c)
{
    struct bl_request *r;
    struct bl_freelist *cache = &c->w->request_cache;
    r = bl_freelist_take(cache);
    if (!r) {
        if (!(r = malloc(sizeof(*r)))) {
            cache->in_use--;
            return NULL;
        }
        /* the arrays stay with the object while it is recycled */
        bl_h1_message_init(&r->msg, r->msg_fields, BL_REQ_FIELDS);
        bl_h1_message_init(&r->resp, r->resp_fields, BL_RESP_FIELDS);
    }
    /* Only the fixed part is cleared; the parser fills the message structs as it goes. */
    memset(r, 0, offsetof(struct bl_request, msg));
    r->msg.nheaders = 0;
    r->file_fd = -1;
    r->c = c;
    r->client_handler = proxy_client_event;
    r->start_us = bl_clock_us;
    return r;
}

/* $request_id: 32 random hex digits (nginx's form), from the worker's generator; never all
 * zeros, so that it can serve as a trace-id. */
static void request_make_id(struct bl_request *r)
{
    do
        bl_rand_hex(r->request_id, 16);
    while (memcmp(r->request_id, "00000000000000000000000000000000", 32) == 0);
    r->request_id_len = 32;
    r->request_id_made = 1;
}

/* The request's id (the client's valid request_id_header, else a new one) and its place in a
 * trace (trace_propagation): the client's valid traceparent is continued with a span of this
 * hop; without one, or with an invalid one or several, a trace starts here, sampled, with
 * $request_id as its trace-id when that is 32 hex digits (so a log line's id finds its trace).
 * One pass over the headers; no allocation, no system call. */
static void request_ids(struct bl_request *r)
{
    const struct bl_loc_conf *lc = &r->loc->conf;
    const struct bl_h1_message *m = &r->msg;
    const struct bl_h1_header *tp = NULL;
    unsigned ntp = 0;
    r->request_id_len = 0;
    for (uint32_t i = 0; i < m->nheaders; i++) {
        const struct bl_h1_header *h = &m->headers[i];
        if (h->id == BL_H1_HDR_TRACEPARENT) {
            tp = h;
            ntp++;
        } else if (lc->request_id_header && !r->request_id_len &&
                   h->name_len == lc->request_id_header_len &&
                   strncasecmp(h->name, lc->request_id_header, h->name_len) == 0 &&
                   bl_request_id_valid(h->value, h->value_len)) {
            memcpy(r->request_id, h->value, h->value_len);
            r->request_id_len = (uint8_t)h->value_len;
        }
    }
    if (!r->request_id_len)
        request_make_id(r);
    if (!lc->trace_propagation)
        return;
    struct bl_traceparent p;
    if (ntp == 1 && bl_traceparent_parse(tp->value, tp->value_len, &p) == BL_OK) {
        memcpy(r->trace_id, p.trace_id, 32);
        memcpy(r->parent_id, p.parent_id, 16);
        r->trace_flags = p.flags;
        r->trace_state = BL_TRACE_CONTINUED;
    } else {
        if (r->request_id_made || bl_trace_id_valid(r->request_id, r->request_id_len))
            memcpy(r->trace_id, r->request_id, 32);
        else
            do
                bl_rand_hex(r->trace_id, 16);
            while (!bl_trace_id_valid(r->trace_id, 32));
        r->trace_flags = 0x01;
        r->trace_state = BL_TRACE_STARTED;
    }
    do
        bl_rand_hex(r->span_id, 8);
    while (memcmp(r->span_id, "0000000000000000", 16) == 0);
}

/* ------------------------------------------------------------ upstream tries for the log */

/* A new attempt begins (stale: the same attempt again on a fresh connection, which the log
 * shows as one). */
static void try_begin(struct bl_request *r, int stale)
{
    if (!stale || r->ntries == 0) {
        if (r->ntries < BL_LOG_TRIES)
            r->ntries++;
    }
    struct bl_upstream_try *t = &r->tries[r->ntries - 1];
    t->addr = r->a.server->name;
    t->connect_us = t->header_us = t->response_us = BL_TRY_NONE;
    t->status = 0;
    r->try_start_us = bl_clock_us;
}

static inline uint32_t try_elapsed(const struct bl_request *r)
{
    uint64_t d = bl_clock_us - r->try_start_us;
    return d < BL_TRY_NONE ? (uint32_t)d : BL_TRY_NONE - 1;
}

/* The current attempt is over (status: what the log shows for it; 0 keeps what it has). */
static void try_end(struct bl_request *r, int status)
{
    if (r->ntries == 0)
        return;
    struct bl_upstream_try *t = &r->tries[r->ntries - 1];
    if (t->response_us != BL_TRY_NONE)
        return;
    t->response_us = try_elapsed(r);
    if (status)
        t->status = status;
}

/* ------------------------------------------------------------ request body framing */

/* Accounts bytes newly read into c->in at [from, c->in->end) as request body. Sets body_end
 * and req_body_done. BL_OK, or BL_ERR with a 4xx status in *status. */
static int account_request_body(struct bl_request *r, uint32_t from, int *status)
{
    struct bl_buf *in = r->c->in;
    uint32_t avail = in->end - from;
    if (r->req_body_done || avail == 0)
        return BL_OK;
    uint64_t max = r->loc->conf.client_max_body_size;
    if (r->msg.body == BL_H1_BODY_LENGTH) {
        uint32_t take = avail < r->req_left ? avail : (uint32_t)r->req_left;
        r->req_left -= take;
        r->body_end = from + take;
        r->bytes_in += take;
        if (r->req_left == 0)
            r->req_body_done = 1;
        return BL_OK;
    }
    /* chunked: forwarded as is, framing checked on the way */
    int done = 0;
    ssize_t k = bl_h1_chunked_scan(&r->req_chunked, in->data + from, avail, &done);
    if (k < 0) {
        bl_log(BL_LOG_INFO, "client %s sent invalid chunked body: %s", r->c->ip,
               r->req_chunked.reason ? r->req_chunked.reason : "bad framing");
        *status = 400;
        return BL_ERR;
    }
    r->body_end = from + (uint32_t)k;
    r->bytes_in += (uint64_t)k;
    if (done)
        r->req_body_done = 1;
    if (max && r->req_chunked.data_bytes > max) {
        *status = 413;
        return BL_ERR;
    }
    return BL_OK;
}

/* ------------------------------------------------------------ starting a request */

/* Picks server block and location. Locations match the normalized path (decoded, slashes
 * merged, dot segments resolved), as in nginx; normal paths, the common case, are used in
 * place. BL_ERR with the status to answer in *status: 400 for a path nginx would refuse (bad
 * escape, ".." above the root), 503 when out of memory. */
static int request_route(struct bl_request *r, int *status)
{
    struct bl_client *c = r->c;
    const struct bl_h1_message *m = &r->msg;
    r->srv = bl_route_server(c->listen, m->host, m->host ? m->host_len : 0);
    r->upath = m->path;
    r->upath_len = m->path_len;
    if (m->path[0] == '/' && bl_uri_needs_normalize(m->path, m->path_len)) {
        char *buf = malloc(m->path_len + 1);
        size_t n = 0;
        if (!buf || bl_uri_normalize(m->path, m->path_len, buf, &n) != BL_OK) {
            *status = buf ? 400 : 503;
            free(buf);
            r->loc = r->srv->server_loc;
            return BL_ERR;
        }
        r->rw.norm = buf;
        r->upath = buf;
        r->upath_len = (uint32_t)n;
    }
    /* realip as nginx runs it: the server's settings before the rewrite directives, the
     * location's after them when the server's did not apply */
    bl_realip(r, &r->srv->server_loc->conf);
    if (bl_rw_route(r, status) != BL_OK) {
        if (!r->loc)
            r->loc = r->srv->server_loc;
        return BL_ERR;
    }
    if (!r->rw.ret_code) /* a return or redirect answers before nginx's preaccess phase */
        bl_realip(r, &r->loc->conf);
    return BL_OK;
}

static void proxy_start(struct bl_request *r);
static void request_access(struct bl_request *r);

/* The content phase: a return or redirect from the rewrite directives, the proxy, or a local
 * response; try_files' fallback redirects internally and comes back here. */
static void request_content(struct bl_request *r)
{
    if (__builtin_expect(bl_location_disabled(r->loc), 0)) {
        local_done(r, bl_local_disabled(r));
        return;
    }
    for (;;) {
        if (r->rw.ret_code == 444) {
            request_drop(r);
            return;
        }
        if (r->rw.ret_code) {
            local_done(r, bl_local_return(r));
            return;
        }
        if (r->loc->kind == BL_LOC_PROXY) {
            if (r->loc->conf.cache && bl_proxy_cache_start(r) == BL_OK)
                return;
            proxy_start(r);
            return;
        }
        /* A return location's return is one of its rewrite ops: reaching here without it
         * answering means a break stopped them first. */
        int rc = r->loc->kind == BL_LOC_RETURN ? bl_local_serve_skipped_return(r)
                                                : bl_local_serve(r);
        if (rc != BL_LOCAL_REDIRECT) {
            local_done(r, rc);
            return;
        }
        int status;
        const char *to = r->loc->try_fallback;
        size_t len = strlen(to);
        char uri[4096];
        if (r->loc->try_fallback_tpl) { /* "/index.php?$args" */
            struct bl_var_ctx v;
            bl_request_var_ctx(r, &v);
            len = bl_template_eval(r->loc->try_fallback_tpl, &v, uri, sizeof(uri));
            to = uri;
            if (len > sizeof(uri)) {
                local_response(r, 414);
                return;
            }
        }
        if (bl_rw_redirect(r, to, len, &status) != BL_OK) {
            local_response(r, status);
            return;
        }
    }
}

static void request_start(struct bl_client *c, uint32_t head_len)
{
    struct bl_request *r = c->req;
    struct bl_h1_message *m = &r->msg;
    r->head_end = r->head_start + head_len;
    r->body_sent = r->body_end = r->head_end;
    /* A request runs on the generation serving when it starts; a connection whose listening
     * address a reload removed serves this request on its own and closes after it. */
    int listen_gone = !c->h2 && client_outdated(c) && client_migrate(c) != BL_OK;
    client_state(c, CS_REQUEST);
    c->nrequests++;
    bl_timer_cancel(c->w->loop, &c->timer);
    int status = 0;
    int routed = request_route(r, &status);
    request_ids(r);
    if (routed != BL_OK) {
        if (status == 400)
            bl_log(BL_LOG_INFO, "client %s sent an invalid path", c->ip);
        r->keep_alive = 0;
        r->req_body_done = 1;
        local_response(r, status);
        return;
    }
    const struct ssl_st *tls = bl_unlikely(c->h2 != NULL) ? bl_h2_stream_conn(c)->tls : c->tls;
    if (bl_unlikely(tls != NULL) &&
        (status = bl_tls_verify_client(tls, r->srv->ssl.verify_client, c->ip))) {
        /* ssl_verify_client: nginx answers before reading the body and closes (an HTTP/2
         * stream's answer ends that stream) */
        r->keep_alive = 0;
        r->req_body_done = 1;
        local_response(r, status);
        return;
    }

    const struct bl_loc_conf *lc = &r->loc->conf;
    r->keep_alive = m->keep_alive && !c->w->draining && !listen_gone &&
                    c->nrequests < lc->keepalive_requests;
    if (m->body == BL_H1_BODY_NONE || (m->body == BL_H1_BODY_LENGTH && m->content_length == 0)) {
        r->req_body_done = 1;
    } else if (m->body == BL_H1_BODY_LENGTH) {
        if (lc->client_max_body_size && m->content_length > lc->client_max_body_size) {
            bl_log(BL_LOG_ERROR, "client intended to send too large body: %llu bytes, client %s",
                   (unsigned long long)m->content_length, c->ip);
            r->keep_alive = 0;
            local_response(r, 413);
            return;
        }
        r->req_left = m->content_length;
    } else {
        bl_h1_chunked_init(&r->req_chunked);
    }
    if (account_request_body(r, r->head_end, &status) != BL_OK) {
        r->keep_alive = 0;
        local_response(r, status);
        return;
    }
    request_access(r);
}

/* limit_req holds the request: the client's events wait (its readiness flags stay set),
 * except a close, which ends the request at once as nginx's ngx_http_test_reading does. */
static void limit_delay_client_event(struct bl_request *r, uint32_t ev)
{
    if ((ev & (BL_EV_READ | BL_EV_HUP | BL_EV_ERROR)) && !r->c->h2 && client_gone(r->c)) {
        bl_log(BL_LOG_INFO, "client %s prematurely closed connection while delayed by "
               "limit_req", r->c->ip);
        request_abort(r, 0, "client closed during the limit_req delay");
    }
}

static void limit_delay_done(struct bl_timer *t)
{
    request_access((struct bl_request *)((char *)t - offsetof(struct bl_request, limit_timer)));
}

/* nginx's preaccess and access phases (preaccess.c), then the content; a return or redirect
 * of the rewrite directives answers before them, as in nginx. */
static void request_access(struct bl_request *r)
{
    r->client_handler = proxy_client_event;
    if (!r->rw.ret_code) {
        int status = 0;
        uint64_t delay_ms = 0;
        int rc = bl_http_preaccess(r, &status, &delay_ms);
        if (rc == BL_AGAIN) {
            r->client_handler = limit_delay_client_event;
            r->limit_timer.handler = limit_delay_done;
            bl_arm(r->c->w, &r->limit_timer, delay_ms);
            return;
        }
        if (rc == BL_ERR) {
            local_response(r, status);
            return;
        }
    }
    request_content(r);
}

/* The hash key of g evaluated for r into key[cap] (keys past it are hashed on their first cap
 * bytes); NULL with *len = 0 when g's method takes no key. */
static const char *pick_key(const struct bl_request *r, const struct bl_upstream_group *g,
                            char *key, size_t cap, size_t *len)
{
    *len = 0;
    if (!(g->balancer->flags & BL_BALANCER_KEY))
        return NULL;
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    size_t n = bl_template_eval(g->hash_key_compiled, &v, key, cap);
    *len = n < cap ? n : cap;
    return key;
}

/* The group a proxy_pass with variables names for r: the evaluated "host[:port]" is looked
 * up among the upstream groups as nginx does: an `upstream` block by its name (ignoring case,
 * and only when the value has no port), a literal proxy_pass's implied group by its
 * "host:port". Nothing is resolved or connected to directly: a value that names no group is
 * answered 502 with nginx's log line (an address, which nginx would connect to, with a line
 * saying this build does not), an empty one 500. NULL then, *status set. */
static struct bl_upstream_group *group_by_name(const struct bl_request *r, int *status)
{
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    char name[256];
    size_t n = bl_template_eval(r->loc->proxy_host_tpl, &v, name, sizeof(name) - 1);
    *status = 502;
    if (n >= sizeof(name) - 1) {
        bl_log(BL_LOG_ERROR, "upstream name too long in \"%s\", client %s",
               bl_template_text(r->loc->proxy_host_tpl, NULL), r->c->ip);
        return NULL;
    }
    name[n] = '\0';
    if (n == 0) {
        bl_log(BL_LOG_ERROR, "no host in upstream \"\", client %s", r->c->ip);
        *status = 500;
        return NULL;
    }
    const struct bl_config *cfg = r->c->w->cfg;
    for (uint32_t i = 0; i < cfg->ngroups; i++)
        if (strcasecmp(cfg->groups[i]->name, name) == 0)
            return cfg->groups[i];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char err[128];
    if (bl_addr_parse(name, 80, 0, &ss, &sl, err, sizeof(err)) == 0)
        bl_log(BL_LOG_ERROR, "upstream address \"%s\" from a variable: only upstream group "
               "names are supported in this build, client %s", name, r->c->ip);
    else
        bl_log(BL_LOG_ERROR, "no resolver defined to resolve %s, client %s", name, r->c->ip);
    return NULL;
}

/* The first server for r, acquired. Kept out of proxy_start() so that the key's buffer is not
 * on the stack while the request runs. */
static __attribute__((noinline)) int first_server(struct bl_request *r,
                                                  struct bl_upstream_group *g)
{
    char key[1024];
    size_t len;
    const char *k = pick_key(r, g, key, sizeof(key), &len);
    return bl_attempt_first(&r->a, &r->c->w->up, g, k, len, &r->c->addr.sa);
}

/* A queued request's client: only its going away matters (the request body, if any, is read
 * once a server is found). */
static void queued_client_event(struct bl_request *r, uint32_t ev)
{
    struct bl_client *c = r->c;
    if ((ev & BL_EV_READ) && r->req_body_done && client_gone(c)) {
        bl_log(BL_LOG_INFO, "client %s closed the connection while queued", c->ip);
        request_abort(r, 0, "client closed while queued");
    }
}

/* The queue woke r (ok: a server may have room) or its deadline passed. */
static void queued_ready(struct bl_queue_waiter *w, int ok)
{
    struct bl_request *r = (struct bl_request *)((char *)w - offsetof(struct bl_request, qwait));
    struct bl_upstream_group *g = r->a.pick.group;
    if (ok && first_server(r, g) == BL_OK) {
        r->client_handler = proxy_client_event;
        attempt_start(r, 0);
        return;
    }
    if (ok && bl_queue_requeue(w) == BL_OK)
        return;
    bl_log(BL_LOG_ERROR, "upstream queue of \"%s\": no server free within its timeout, "
           "client %s", g->name, r->c->ip);
    r->tries[0] = (struct bl_upstream_try){g->name, BL_TRY_NONE, BL_TRY_NONE, 0, 0};
    r->ntries = 1;
    r->client_handler = proxy_client_event;
    request_abort(r, 503, "queue timeout");
}

/* Every server of g is full: r waits in g's queue (BL_OK), or the queue is full (BL_ERR). */
static int queue_request(struct bl_request *r, struct bl_upstream_group *g)
{
    if (bl_queue_wait(&g->gstate->queue, g->queue, &r->qwait, &r->c->w->up.queue,
                      queued_ready) != BL_OK)
        return BL_ERR;
    r->state = RS_QUEUED;
    r->client_handler = queued_client_event;
    r->request_handler = r->response_handler = NULL;
    /* A slot freed between the failed pick and the enqueue woke nobody: look again (the
     * fence pairs with the one in bl_attempt_release(): one of the two sees the other). */
    atomic_thread_fence(memory_order_seq_cst);
    if (bl_group_has_room(g, bl_clock_ms))
        bl_queue_wake_one(&g->gstate->queue);
    return BL_OK;
}

static void proxy_start(struct bl_request *r)
{
    struct bl_upstream_group *g = r->loc->upstream;
    int status = 0;
    if (!g && !(g = group_by_name(r, &status))) {
        request_abort(r, status, "no upstream group by that name");
        return;
    }
    if (g->adaptive &&
        !bl_adaptive_admit(g->adaptive, atomic_load_explicit(&g->gstate->active,
                                                             memory_order_relaxed))) {
        bl_log(BL_LOG_INFO, "adaptive_concurrency of upstream \"%s\": over its limit of %u, "
               "client %s", g->name, atomic_load_explicit(&g->adaptive->limit,
                                                          memory_order_relaxed), r->c->ip);
        r->tries[0] = (struct bl_upstream_try){g->name, BL_TRY_NONE, BL_TRY_NONE, 0, 0};
        r->ntries = 1;
        request_abort(r, 503, "adaptive concurrency limit");
        return;
    }
    if (first_server(r, g) != BL_OK) {
        if (g->queue && bl_group_full(g)) {
            if (queue_request(r, g) == BL_OK)
                return;
            bl_log(BL_LOG_ERROR, "upstream queue of \"%s\" is full (%u), client %s", g->name,
                   g->queue->max, r->c->ip);
            r->tries[0] = (struct bl_upstream_try){g->name, BL_TRY_NONE, BL_TRY_NONE, 0, 0};
            r->ntries = 1;
            request_abort(r, 503, "queue full");
            return;
        }
        /* Servers out for their own failures: nginx's "no live upstreams", 502, with no
         * connect tried. Only down, checked out, full or ejected: 503 with Retry-After. */
        int failed = bl_group_failed(g, bl_clock_ms);
        if (failed)
            bl_log(BL_LOG_ERROR, "no live upstreams while connecting to upstream \"%s\", "
                   "client %s", g->name, r->c->ip);
        else
            bl_log(BL_LOG_ERROR, "no live upstreams in \"%s\": every server is down, full "
                   "or ejected, client %s", g->name, r->c->ip);
        /* nginx's $upstream_addr names the group when no server could be picked */
        r->tries[0] = (struct bl_upstream_try){g->name, BL_TRY_NONE, BL_TRY_NONE, 0, 0};
        r->ntries = 1;
        request_abort(r, failed ? 502 : 503, "no live upstreams");
        return;
    }
    attempt_start(r, 0);
}

static void upstream_on_io(struct bl_upconn *u)
{
    proxy_run(u->owner);
}

/* Prefetch hooks (core/loop.h, "Prefetch"): the cache lines of the request a response event
 * and a client event touch first. Addresses only: the request itself is not read here. */
static void request_prefetch(const struct bl_request *r, int response)
{
    const char *p = (const char *)r;
    __builtin_prefetch(p);                                   /* c, handlers, out, head_* */
    __builtin_prefetch(p + 64);                              /* left/bytes counters */
    __builtin_prefetch(p + 128);                             /* status, state flags */
    __builtin_prefetch(&r->a.conn);
    if (response) {
        __builtin_prefetch(&r->parser);
        __builtin_prefetch(&r->resp);
        __builtin_prefetch(&r->resp_fields[0]); /* where the fields go (no load of a pointer
                                                  * that may miss: a prefetch must not stall) */
    }
}

static void upstream_prefetch(struct bl_upconn *u)
{
    request_prefetch(u->owner, 1);
}

static void client_prefetch(const struct bl_io *io)
{
    const struct bl_client *c = (const struct bl_client *)io;
    __builtin_prefetch((const char *)c + 128);
    __builtin_prefetch((const char *)c + 192);
    if (c->in)
        __builtin_prefetch(c->in);
    if (c->req)
        request_prefetch(c->req, 0);
}

static void upstream_on_timeout(struct bl_upconn *u);
static int upstream_tls_start(struct bl_request *r);

/* Sends the request to r->a.server: a pooled connection unless fresh, else a new one. */
static void attempt_start(struct bl_request *r, int fresh)
{
    struct bl_client *c = r->c;
    struct bl_http_worker *w = c->w;
    r->resp_head_done = 0;
    r->resp_done = 0;
    r->dechunking = 0;
    r->up_reusable = 0;
    r->body_sent = r->head_end;

    if (!r->out && !(r->out = bl_buf_get())) {
        request_abort(r, 503, "out of memory");
        return;
    }
    if (bl_proxy_upstream_head(r) != BL_OK) {
        bl_log(BL_LOG_ERROR, "request head for upstream too large, client %s", c->ip);
        request_abort(r, 500, "request head too large");
        return;
    }
    /* 100-continue: tell the client to send the body now that there is somewhere to send it
     * (the upstream does not see Expect). */
    if ((r->msg.flags & BL_H1_F_EXPECT_CONTINUE) && !r->req_body_done &&
        r->body_end == r->head_end && r->msg.minor_version == 1 && !r->continue_sent) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        r->continue_sent = 1;
        if (client_send_small(c, cont, sizeof(cont) - 1) != (ssize_t)sizeof(cont) - 1) {
            request_abort(r, 0, "client closed while sending 100 Continue");
            return;
        }
    }

    try_begin(r, fresh);
    r->a.tls_key = r->loc->proxy_tls ? r->loc->conf.proxy_ssl->ctx : NULL;
    r->a.loop_reads = 1; /* read_into, tunnel.c: bl_loop_recv only */
    /* A connection that began with a PROXY header speaks for one client: never a pooled one */
    if (bl_attempt_connect(&r->a, &w->up, fresh || r->loc->conf.proxy_protocol, r,
                           upstream_on_io, upstream_on_timeout)
        != BL_OK) {
        if (errno == ENOMEM)
            request_abort(r, 503, "out of memory");
        else
            attempt_failed(r, BL_AE_ERROR, 0, "connect() failed", errno);
        return;
    }
    struct bl_upconn *u = r->a.conn;
    u->on_prefetch = upstream_prefetch;
    if (r->a.tls_key && !u->tls && upstream_tls_start(r) != BL_OK) {
        request_abort(r, 503, "out of memory");
        return;
    }
    bl_h1_parser_init_response(&r->parser, bl_buf_size() / 2, bl_buf_size() - 1024,
                               r->msg.method_id == BL_H1_M_HEAD);
    r->resp.nheaders = 0;
    if (!u->connecting)
        r->tries[r->ntries - 1].connect_us = 0; /* a kept-alive connection (nginx: 0.000) */
    if (u->connecting) {
        proxy_phase(r, RS_CONNECT);
        bl_arm(w, &u->timer, r->loc->conf.proxy_connect_timeout);
    } else {
        proxy_phase(r, RS_SEND_HEAD);
        u->wready = 1; /* an idle keep-alive connection has room in its send buffer */
    }
    proxy_run(r);
}

/* proxy_ssl_name's value, or $proxy_host's (the group or address proxy_pass names), without
 * a port, into buf. */
static const char *upstream_ssl_name(struct bl_request *r, char *buf, size_t len)
{
    const struct bl_proxy_ssl *ps = r->loc->conf.proxy_ssl;
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    size_t n;
    if (ps->name_tpl) {
        n = bl_template_eval(ps->name_tpl, &v, buf, len - 1);
        if (n > len - 1)
            n = len - 1;
    } else {
        n = (size_t)snprintf(buf, len, "%s", v.proxy_host ? v.proxy_host : "");
        if (n > len - 1)
            n = len - 1;
    }
    buf[n] = '\0';
    if (buf[0] == '[') {
        /* [v6]:port: the address without brackets */
        char *close = strchr(buf, ']');
        if (close) {
            *close = '\0';
            memmove(buf, buf + 1, strlen(buf + 1) + 1);
        }
    } else {
        char *colon = strchr(buf, ':');
        if (colon && !strchr(colon + 1, ':'))
            *colon = '\0';
    }
    return buf;
}

/* A new connection to an https:// upstream: its TLS session, the handshake to come once the
 * connect is done (send_connect). BL_OK or BL_ERR (out of memory). */
static int upstream_tls_start(struct bl_request *r)
{
    const struct bl_proxy_ssl *ps = r->loc->conf.proxy_ssl;
    char name[256];
    upstream_ssl_name(r, name, sizeof(name));
    return bl_uptls_start(r->a.conn, ps->ctx, bl_proxy_ssl_sni(ps) ? name : NULL, name,
                          bl_proxy_ssl_verify(ps), bl_proxy_ssl_reuse(ps));
}

/* ------------------------------------------------------------ failures and retries */

/* nginx's list (ngx_http_upstream_non_idempotent): not resent once sent, unless asked. */
static int non_idempotent(const struct bl_h1_message *m)
{
    return m->method_id == BL_H1_M_POST || m->method_id == BL_H1_M_PATCH ||
           (m->method_len == 4 && memcmp(m->method, "LOCK", 4) == 0);
}

/* Reports the failure and moves r to the next server when proxy_next_upstream allows it:
 * BL_OK (r->a.server is the next one, not yet connected) or BL_ERR. Kept out of
 * attempt_failed() so that the key's buffer is not on the stack while the retry runs. */
static __attribute__((noinline)) int retry_next(struct bl_request *r,
                                                enum bl_attempt_error kind, int status)
{
    const struct bl_loc_conf *lc = &r->loc->conf;
    struct bl_retry_policy p = {
        .next_upstream = lc->next_upstream,
        .tries = lc->next_upstream_tries,
        .timeout_ms = lc->next_upstream_timeout,
        .start_us = r->start_us,
        .non_idempotent = (uint8_t)non_idempotent(&r->msg),
        .committed = r->resp_started || r->body_rewound,
    };
    struct bl_upstream_group *g = r->a.server->group;
    char key[1024];
    size_t len;
    const char *k = pick_key(r, g, key, sizeof(key), &len);
    return bl_attempt_failed(&r->a, &r->c->w->up, &p, kind, status, k, len, &r->c->addr.sa);
}

/* attempt_failed()'s err for a TLS handshake or verification failure: why says it all. */
#define BL_AE_ERR_TLS (-1)

/* An attempt failed before any response byte reached the client. Returns 1 when it is
 * handled (retried elsewhere, or the request answered/aborted), 0 when the caller should go on
 * passing the response through (a status failure with no retry left). */
static int attempt_failed(struct bl_request *r, enum bl_attempt_error kind, int status,
                          const char *why, int err)
{
    struct bl_upstream_server *s = r->a.server;
    /* A reused keep-alive connection that turns out dead (the server closed it while idle) is
     * not the server's fault: resend once on a fresh connection to the same server, as nginx
     * and HAProxy do, when the request is still whole. */
    if (bl_attempt_resend_stale(&r->a, kind,
                                r->body_rewound || r->resp_head_done || r->resp_started)) {
        attempt_start(r, 1);
        return 1;
    }
    /* nginx logs a failed attempt as 504 (timeout) or 502 (error, invalid answer). */
    try_end(r, kind == BL_AE_TIMEOUT ? 504 : kind == BL_AE_STATUS ? status : 502);
    if ((kind == BL_AE_ERROR && (!r->a.conn || (r->a.conn->nrequests == 1 && !r->a.sent_any)))
        || (kind == BL_AE_TIMEOUT && r->state == RS_CONNECT))
        r->tries[r->ntries - 1].connect_us = BL_TRY_NONE; /* it never connected */
    if (kind == BL_AE_TIMEOUT)
        count_failure(r, r->state == RS_CONNECT ? BL_SF_CONNECT_TIMEOUT : BL_SF_TIMEOUT);
    else if (kind == BL_AE_INVALID)
        count_failure(r, BL_SF_INVALID);
    else if (kind == BL_AE_ERROR)
        /* No connection, or a new one that failed before taking a byte: the connect failed
         * (a refused non-blocking connect shows up on the first send). */
        count_failure(r, !r->a.conn || (r->a.conn->nrequests == 1 && !r->a.sent_any)
                             ? BL_SF_CONNECT_ERROR : BL_SF_ERROR);
    if (err == BL_AE_ERR_TLS)
        bl_log(BL_LOG_ERROR, "%s while SSL handshaking to upstream %s, client %s", why,
               s->name, r->c->ip);
    else if (kind != BL_AE_STATUS)
        bl_log(BL_LOG_ERROR, "%s (%s) while talking to upstream %s, client %s", why,
               err ? strerror(err) : kind == BL_AE_TIMEOUT ? "timed out" : "closed", s->name,
               r->c->ip);
    int next = retry_next(r, kind, status);
    if (next == BL_AGAIN) {
        /* every other server is full: the retry waits in the group's queue */
        struct bl_upstream_group *g = s->group;
        if (queue_request(r, g) == BL_OK)
            return 1;
        bl_log(BL_LOG_ERROR, "upstream queue of \"%s\" is full (%u), client %s", g->name,
               g->queue->max, r->c->ip);
        request_abort(r, kind == BL_AE_TIMEOUT ? 504 : 502, why);
        return 1;
    }
    if (next == BL_OK) {
        bl_log(BL_LOG_WARN, "retrying request to upstream \"%s\" on %s after %s from %s",
               s->group->name, r->a.server->name,
               kind == BL_AE_STATUS ? "a listed status" : kind == BL_AE_TIMEOUT ? "a timeout" : why,
               s->name);
        attempt_start(r, 0);
        return 1;
    }
    if (kind == BL_AE_STATUS)
        return 0;
    request_abort(r, kind == BL_AE_TIMEOUT ? 504 : 502, why);
    return 1;
}

static void upstream_on_timeout(struct bl_upconn *u)
{
    struct bl_request *r = u->owner;
    if (r->tun.on) {
        bl_tunnel_timeout(r);
        return;
    }
    if (r->state == RS_SEND_HEAD || r->state == RS_BODY) {
        /* The server stopped reading: a FIN would wait behind the unsent bytes, and the kernel
         * would keep them and the socket for minutes; a reset frees both and tells the server. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(u->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    const char *what = r->state == RS_CONNECT ? "upstream timed out while connecting"
                     : r->state == RS_SEND_HEAD || r->state == RS_BODY
                         ? "upstream timed out while sending the request"
                         : "upstream timed out while reading the response";
    if (r->resp_head_done) {
        bl_log(BL_LOG_ERROR, "%s body from %s (state %s), client %s", what, u->server->name,
               bl_req_state_str(r->state), r->c->ip);
        bl_server_report(u->server, 1, bl_clock_ms);
        count_failure(r, BL_SF_TIMEOUT);
        request_abort(r, 0, what);
        return;
    }
    attempt_failed(r, BL_AE_TIMEOUT, 0, what, 0);
}

static void upstream_failed(struct bl_request *r, const char *why, int err)
{
    attempt_failed(r, BL_AE_ERROR, 0, why, err);
}

/* Writes r->out (a head, from out_sent) and then body[0..body_len) to fd, one writev per
 * round, until all went (BL_OK), the socket is full (BL_AGAIN) or it failed (BL_ERR, errno).
 * Advances out_sent; *body_written says how much of body went. Marks the request as having
 * sent bytes upstream (sent_any) or to the client (resp_started), by fd. */
static int send_head_and_body(struct bl_request *r, int fd, uint8_t *ready, const char *body,
                              uint32_t body_len, uint32_t *body_written)
{
    *body_written = 0;
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        uint32_t head_left = r->out ? r->out->end - r->out_sent : 0;
        uint32_t body_left = body_len - *body_written;
        if (head_left) {
            iov[n].iov_base = r->out->data + r->out_sent;
            iov[n++].iov_len = head_left;
        }
        if (body_left) {
            iov[n].iov_base = (char *)body + *body_written;
            iov[n++].iov_len = body_left;
        }
        if (n == 0)
            return BL_OK;
        if (!*ready)
            return BL_AGAIN;
        ssize_t w = fd == r->c->io.fd ? client_writev(r->c, iov, n)
                                      : upstream_writev(r->a.conn, iov, n);
        if (w == BL_AGAIN)
            return BL_AGAIN;
        if (w < 0)
            return BL_ERR;
        if (fd == r->c->io.fd) {
            r->resp_started = 1;
            r->bytes_out += (uint64_t)w;
        } else {
            r->a.sent_any = 1;
            bl_stat_add(&peer_stats(r)->bytes_out, (uint64_t)w);
        }
        size_t h = (size_t)w < head_left ? (size_t)w : head_left;
        r->out_sent += (uint32_t)h;
        *body_written += (uint32_t)((size_t)w - h);
        if ((size_t)w < (size_t)head_left + body_left)
            return BL_AGAIN;
    }
}

/* Sends r->out (head) and the pending request body bytes upstream. Returns BL_OK when all of
 * it went, BL_AGAIN when the socket is full, BL_ERR after handling a failure. */
static int send_upstream(struct bl_request *r)
{
    struct bl_upconn *u = r->a.conn;
    struct bl_buf *in = r->c->in;
    uint32_t body_written;
    int rc = send_head_and_body(r, u->io.fd, &u->wready, in->data + r->body_sent,
                                r->body_end - r->body_sent, &body_written);
    r->body_sent += body_written;
    if (rc == BL_ERR)
        upstream_failed(r, "send() failed", errno);
    return rc;
}

/* Reads more request body from the client into c->in. Returns BL_OK (progress or nothing to
 * do), BL_AGAIN (nothing available), BL_ERR after handling a failure. */
static int read_request_body(struct bl_request *r)
{
    struct bl_client *c = r->c;
    struct bl_buf *in = c->in;
    if (r->req_body_done || r->body_sent != r->body_end)
        return BL_OK;
    /* All forwarded: reuse the space after the head. */
    if (in->end != r->head_end)
        r->body_rewound = 1;
    in->end = r->head_end;
    r->body_sent = r->body_end = r->head_end;
    if (!c->rready)
        return BL_AGAIN;
    uint32_t from = in->end;
    ssize_t n = client_read(c, in);
    if (n == BL_AGAIN)
        return BL_AGAIN;
    if (n <= 0) {
        bl_log(BL_LOG_INFO, "client %s closed connection while sending the request body", c->ip);
        request_abort(r, 0, "client closed");
        return BL_ERR;
    }
    int status = 0;
    if (account_request_body(r, from, &status) != BL_OK) {
        request_abort(r, status, "bad request body");
        return BL_ERR;
    }
    return BL_OK;
}

static int upload_splice_start(struct bl_request *r);
static int upload_splice(struct bl_request *r);

/* Streams the request to the upstream until blocked. Returns BL_OK when the whole request
 * went, BL_AGAIN when blocked, BL_ERR after a failure was handled. */
static int pump_request(struct bl_request *r)
{
    struct bl_http_worker *w = r->c->w;
    for (;;) {
        int rc = send_upstream(r);
        if (rc == BL_ERR)
            return BL_ERR;
        if (rc == BL_AGAIN) {
            /* The upstream is slow to take the body: its timer runs, not the client's. */
            bl_arm(w, &r->a.conn->timer, r->loc->conf.proxy_send_timeout);
            bl_timer_cancel(w->loop, &r->c->timer);
            return BL_AGAIN;
        }
        if (r->req_body_done)
            return BL_OK;
        if ((r->req_pipe && r->req_pipe->piped) || upload_splice_start(r)) {
            rc = upload_splice(r);
            if (rc != BL_OK)
                return rc;
            continue;
        }
        rc = read_request_body(r);
        if (rc == BL_ERR)
            return BL_ERR;
        if (rc == BL_AGAIN) {
            bl_arm(w, &r->c->timer, r->loc->conf.client_body_timeout);
            if (!r->resp_head_done)
                bl_timer_cancel(w->loop, &r->a.conn->timer);
            return BL_AGAIN;
        }
    }
}

/* Framing of response body bytes at [from, u->in->end): trims anything after the body (the
 * connection is then not reused) and notes completion. BL_OK or BL_ERR (bad chunking). */
static int account_response_body(struct bl_request *r, uint32_t from)
{
    struct bl_buf *b = r->a.conn->in;
    uint32_t avail = b->end - from;
    switch (r->resp.body) {
    case BL_H1_BODY_NONE:
        if (avail) {
            b->end = from;
            r->up_reusable = 0;
        }
        r->resp_done = 1;
        return BL_OK;
    case BL_H1_BODY_LENGTH: {
        uint32_t take = avail < r->resp_left ? avail : (uint32_t)r->resp_left;
        r->resp_left -= take;
        if (take < avail) {
            /* the rest may be a second response: dropped, and the connection with it */
            bl_log(BL_LOG_WARN, "upstream %s sent more data than specified in "
                   "\"Content-Length\" header, client %s", r->a.conn->server->name, r->c->ip);
            b->end = from + take;
            r->up_reusable = 0;
        }
        if (r->resp_left == 0)
            r->resp_done = 1;
        return BL_OK;
    }
    case BL_H1_BODY_CHUNKED: {
        int done = 0;
        ssize_t k = bl_h1_chunked_scan(&r->resp_chunked, b->data + from, avail, &done);
        if (k < 0)
            return BL_ERR;
        if ((uint32_t)k < avail) {
            b->end = from + (uint32_t)k;
            r->up_reusable = 0;
        }
        if (r->dechunking)
            b->end = from + bl_dechunk(&r->dechunk, b->data + from, (uint32_t)k);
        if (done)
            r->resp_done = 1;
        return BL_OK;
    }
    default: /* close-delimited: done at EOF */
        return BL_OK;
    }
}

/* proxy_intercept_errors: the upstream's answer (its head parsed, its body unread) gives way
 * to the error_page for its status, as nginx's ngx_http_upstream_intercept_errors(). The
 * server answered, so it is released as a success; its connection is closed (the body is not
 * read through). */
static void intercept_error(struct bl_request *r)
{
    int status = r->resp.status;
    bl_attempt_release(&r->a, 0, 0, 0);
    r->keep_alive = r->keep_alive && r->req_body_done && r->body_sent == r->body_end;
    local_response(r, status);
}

/* gzip: whether r's response is compressed; if so the upstream's body is read unframed (the
 * compressor frames its own output) and the client gets chunks, or for HTTP/1.0 a body that
 * ends at close. BL_ERR when out of memory. */
static int gzip_start(struct bl_request *r)
{
    int d = r->status == 101 ? BL_GZIP_NO : bl_gzip_decide(r);
    r->gz_vary = d != BL_GZIP_NO && r->loc->conf.gzip_vary;
    if (d != BL_GZIP_YES)
        return BL_OK;
    int chunked = !r->c->h2 && r->msg.minor_version == 1;
    if (!(r->gz = bl_gzip_new((int)r->loc->conf.gzip_comp_level, chunked)))
        return BL_ERR;
    if (!chunked && !r->c->h2)
        r->keep_alive = 0;
    if (r->resp.body == BL_H1_BODY_CHUNKED && !r->dechunking) {
        r->dechunking = 1;
        bl_dechunk_init(&r->dechunk);
    }
    return BL_OK;
}

/* Parses the response head from u->in. BL_OK when the final head is parsed (and the client
 * head built), BL_AGAIN for more, BL_ERR after a failure was handled. */
static int parse_response_head(struct bl_request *r)
{
    struct bl_upconn *u = r->a.conn;
    for (;;) {
        struct bl_buf *b = u->in;
        int rc = bl_h1_parse(&r->parser, b->data + b->start, bl_buf_len(b), &r->resp);
        if (rc == BL_AGAIN) {
            if (bl_buf_room(b) == 0) {
                attempt_failed(r, BL_AE_INVALID, 0, "upstream sent too big header", 0);
                return BL_ERR;
            }
            return BL_AGAIN;
        }
        if (rc < 0) {
            bl_log(BL_LOG_ERROR, "upstream %s sent invalid header: %s", u->server->name,
                   r->parser.reason ? r->parser.reason : "?");
            attempt_failed(r, BL_AE_INVALID, 0, "upstream sent invalid header", 0);
            return BL_ERR;
        }
        if (r->resp.status == 101 && !bl_tunnel_wanted(r)) {
            /* nginx relays a 101 only to a client that asked for an Upgrade */
            bl_log(BL_LOG_ERROR, "upstream %s switched protocols without an Upgrade request, "
                   "client %s", u->server->name, r->c->ip);
            request_abort(r, 502, "upstream sent 101");
            return BL_ERR;
        }
        /* 101 is a final head here: the tunnel follows it (tunnel.c). */
        if (r->resp.status >= 100 && r->resp.status < 200 && r->resp.status != 101) {
            /* Interim responses: 100 is ours to send (already sent or not needed); others
             * (103 Early Hints) go to HTTP/1.1 clients as they came. */
            if (r->resp.status != 100 && r->msg.minor_version == 1) {
                ssize_t w = client_send_small(r->c, b->data + b->start, (size_t)rc);
                (void)w; /* best effort: a lost 1xx is harmless */
            }
            b->start += (uint32_t)rc;
            bl_h1_parser_init_response(&r->parser, bl_buf_size() / 2, bl_buf_size() - 1024,
                                       r->msg.method_id == BL_H1_M_HEAD);
            r->resp.nheaders = 0;
            continue;
        }
        /* Final head. A status proxy_next_upstream names may send the request elsewhere. */
        bl_attempt_answered(&r->a, r->resp.status);
        r->tries[r->ntries - 1].header_us = try_elapsed(r);
        r->tries[r->ntries - 1].status = r->resp.status;
        struct bl_stats_peer *ps = peer_stats(r);
        bl_stat_add(&ps->responses[bl_stats_class(r->resp.status)], 1);
        bl_stat_observe(&ps->header_time, r->a.time_us);
        if ((r->loc->conf.next_upstream & bl_next_upstream_status(r->resp.status)) &&
            attempt_failed(r, BL_AE_STATUS, r->resp.status, "status", 0))
            return BL_ERR;
        bl_attempt_outcome(&r->a, r->resp.status, 0);
        if (r->err_status && r->resp.status != 101) {
            /* an error page that proxies: the client gets the original error's status */
            const char *reason = bl_http_reason(r->err_status);
            r->resp.status = r->err_status;
            r->resp.reason = reason;
            r->resp.reason_len = (uint32_t)strlen(reason);
        }
        if (r->loc->conf.proxy_intercept_errors && r->resp.status >= 300 &&
            r->resp.status != 101 && bl_local_error_page_for(r, r->resp.status)) {
            intercept_error(r);
            return BL_ERR;
        }
        if (r->cache && r->resp.status != 101 && bl_proxy_cache_response(r) != BL_OK)
            return BL_ERR;
        r->resp_head_done = 1;
        r->status = r->resp.status;
        r->up_reusable = r->resp.keep_alive && !r->loc->conf.proxy_protocol;
        if (r->resp.body == BL_H1_BODY_CLOSE || r->resp.status == 101) {
            /* 101: the connections become a tunnel (tunnel.c), neither is reused */
            r->keep_alive = 0;
            r->up_reusable = 0;
        }
        if (r->resp.body == BL_H1_BODY_CHUNKED && (r->msg.minor_version == 0 || r->c->h2) &&
            (r->resp.flags & BL_H1_F_TE_CODINGS)) {
            /* gzip, chunked: without chunked the body would reach an HTTP/1.0 client still
             * gzip-coded with nothing saying so, and 1.0 has no Transfer-Encoding (nor has
             * HTTP/2). */
            request_abort(r, 502, "transfer coding an HTTP/1.0 client cannot take");
            return BL_ERR;
        }
        if (r->resp.body == BL_H1_BODY_CHUNKED && (r->msg.minor_version == 0 || r->c->h2)) {
            /* An HTTP/1.0 client cannot read chunked framing: strip it and end the body by
             * closing the connection, as nginx does. HTTP/2 frames the body itself: the
             * stream ends when the request does. */
            r->keep_alive = 0;
            r->dechunking = 1;
            bl_dechunk_init(&r->dechunk);
        }
        if (gzip_start(r) != BL_OK) {
            request_abort(r, 503, "out of memory for gzip");
            return BL_ERR;
        }
        /* A reload removed the listening address while the request ran: say so now, the
         * connection closes after this response. */
        if (r->keep_alive && client_outdated(r->c) && !listen_find((*r->c->w->current)->cfg,
                                                                   r->c->listen))
            r->keep_alive = 0;
        if (r->resp.body == BL_H1_BODY_LENGTH)
            r->resp_left = r->resp.content_length;
        if (r->resp.body == BL_H1_BODY_CHUNKED)
            bl_h1_chunked_init(&r->resp_chunked);
        if (!r->out && !(r->out = bl_buf_get())) {
            request_abort(r, 503, "out of memory");
            return BL_ERR;
        }
        if (bl_proxy_client_head(r) != BL_OK) {
            request_abort(r, 502, "response head too large");
            return BL_ERR;
        }
        b->start += (uint32_t)rc;
        if (r->resp.status == 101)
            return BL_OK; /* what follows the head is the tunnel's */
        if (account_response_body(r, b->start) != BL_OK) {
            bl_log(BL_LOG_ERROR, "upstream %s sent invalid chunked response, client %s",
                   u->server->name, r->c->ip);
            count_failure(r, BL_SF_INVALID);
            request_abort(r, 502, "bad chunked response");
            return BL_ERR;
        }
        if (r->cache)
            bl_proxy_cache_body(r, b->start);
        return BL_OK;
    }
}

/* Reads from the upstream into u->in. Returns > 0 bytes, 0 EOF, BL_AGAIN, BL_ERR (errno). */
static ssize_t upstream_read(struct bl_request *r)
{
    struct bl_upconn *u = r->a.conn;
    if (!u->in && !(u->in = bl_buf_get())) {
        errno = ENOMEM;
        return BL_ERR;
    }
    if (!u->rready)
        return BL_AGAIN;
    if (bl_buf_len(u->in) == 0)
        u->in->start = u->in->end = 0;
    if (bl_buf_room(u->in) == 0)
        return BL_AGAIN;
    ssize_t n = upstream_read_into(u, u->in);
    if (n > 0)
        bl_stat_add(&peer_stats(r)->bytes_in, (uint64_t)n);
    return n;
}

/* Sends the client head (r->out) and response body bytes in u->in to the client. BL_OK when
 * all pending bytes went, BL_AGAIN when the client is blocked, BL_ERR when it failed. */
static int send_client_gzip(struct bl_request *r);

static int send_client(struct bl_request *r)
{
    if (bl_unlikely(r->cache_sink)) {
        /* a background cache update: the body went to the fill, the client has its answer */
        if (r->out)
            r->out_sent = r->out->end;
        if (r->a.conn && r->a.conn->in)
            r->a.conn->in->start = r->a.conn->in->end;
        return BL_OK;
    }
    if (r->gz)
        return send_client_gzip(r);
    struct bl_buf *b = r->a.conn ? r->a.conn->in : NULL;
    uint32_t body_written;
    int rc = send_head_and_body(r, r->c->io.fd, &r->c->wready, b ? b->data + b->start : NULL,
                                b ? bl_buf_len(b) : 0, &body_written);
    if (b)
        b->start += body_written;
    r->body_bytes_sent += body_written;
    return rc;
}

/* send_client() for a compressed response: the upstream's (or a file's) body bytes go through the
 * compressor, one output buffer at a time, and leave it only as the client takes them. */
static int send_client_gzip(struct bl_request *r)
{
    struct bl_buf *in = r->a.conn ? r->a.conn->in : r->file_in; /* a file's: static.c */
    for (;;) {
        struct bl_buf *o = bl_gzip_out(r->gz);
        uint32_t written;
        int rc = send_head_and_body(r, r->c->io.fd, &r->c->wready, o->data + o->start,
                                    bl_buf_len(o), &written);
        o->start += written;
        r->body_bytes_sent += written;
        if (rc != BL_OK)
            return rc;
        uint32_t avail = in ? bl_buf_len(in) : 0;
        if (bl_gzip_done(r->gz) || (!avail && !r->resp_done))
            return BL_OK;
        uint32_t used = 0;
        if (bl_gzip_feed(r->gz, in ? in->data + in->start : "", avail, r->resp_done, &used) !=
            BL_OK) {
            bl_log(BL_LOG_ERROR, "gzip failed, client %s", r->c->ip);
            return BL_ERR;
        }
        if (in)
            in->start += used;
    }
}

/* ------------------------------------------------------------ request phases
 *
 * Each direction of a proxied request has a handler that its phase sets:
 *   request_handler   (client -> upstream)  send_connect: waiting for connect()
 *                                           send_request: head, then the body as it comes
 *                                           NULL: all of it went
 *   response_handler  (upstream -> client)  NULL while connecting
 *                                           recv_head: reading the response head
 *                                           recv_relay: streaming the body to the client
 * Every event on either connection runs the request's handler, then the response's: the
 * request may still be uploading while the response streams. A handler returns BL_OK or
 * BL_AGAIN with r still in its phase, or BL_ERR when r moved on (finished, aborted, retried on
 * another connection): the caller returns without touching it. */

static int send_request(struct bl_request *r);
static int recv_head(struct bl_request *r);
static int recv_relay(struct bl_request *r);

static int send_connect(struct bl_request *r)
{
    struct bl_upconn *u = r->a.conn;
    if (!u->wready && !u->rready)
        return BL_AGAIN;
    if (u->tls_handshake) {
        /* proxy_connect_timeout covers the handshake too, as in nginx */
        char why[320];
        int rc = bl_uptls_handshake(u, bl_proxy_ssl_verify(r->loc->conf.proxy_ssl), why,
                                    sizeof(why));
        if (rc == BL_AGAIN)
            return BL_AGAIN;
        if (rc == BL_ERR) {
            if (why[0])
                attempt_failed(r, BL_AE_ERROR, 0, why, BL_AE_ERR_TLS);
            else
                upstream_failed(r, "connect() failed", errno);
            return BL_ERR;
        }
    }
    u->connecting = 0;
    r->tries[r->ntries - 1].connect_us = try_elapsed(r);
    proxy_phase(r, RS_SEND_HEAD);
    return send_request(r);
}

static int send_request(struct bl_request *r)
{
    struct bl_client *c = r->c;
    int rc = pump_request(r);
    if (rc == BL_ERR)
        return BL_ERR;
    if (rc == BL_AGAIN) {
        if (r->state == RS_SEND_HEAD && r->out_sent == r->out->end)
            r->state = RS_BODY;
        return BL_AGAIN;
    }
    if (r->state < RS_WAIT_HEAD) {
        r->state = RS_WAIT_HEAD;
        bl_arm(c->w, &r->a.conn->timer, r->loc->conf.proxy_read_timeout);
    }
    bl_timer_disarm(c->w->loop, &c->timer); /* client_close cancels it */
    r->request_handler = NULL;
    /* The head went: its buffer goes back now, while it is in the cache, so that the next
     * buffer taken (most likely by the next request of this turn) is one the CPU has at hand;
     * the response head takes one when it comes (a retry makes the head again). Held across
     * the turn, it was a cold first touch when the response head reused it (perf:
     * bl_proxy_client_head, bench/RESULTS.md "cache misses"). */
    bl_buf_put(r->out);
    r->out = NULL;
    r->out_sent = 0;
    return BL_OK;
}

/* After a 101 both connections' events run the tunnel (tunnel.c). */
static int tunnel_response(struct bl_request *r)
{
    bl_tunnel_run(r);
    return BL_ERR;
}

static void tunnel_client_event(struct bl_request *r, uint32_t ev)
{
    (void)ev;
    bl_tunnel_run(r);
}

/* Reads and parses the response head; on the final head, moves to relaying. */
static int recv_head(struct bl_request *r)
{
    struct bl_upconn *u = r->a.conn;
    for (;;) {
        ssize_t n = upstream_read(r);
        if (n == BL_AGAIN) {
            /* Nothing new, but bytes may wait from an earlier read. */
            if (!u->in || bl_buf_len(u->in) == 0)
                return BL_AGAIN;
            int rc = parse_response_head(r);
            if (rc != BL_OK)
                return rc;
        } else if (n == 0) {
            upstream_failed(r, "upstream prematurely closed connection", 0);
            return BL_ERR;
        } else if (n < 0) {
            if (errno == ENOMEM)
                request_abort(r, 503, "out of memory");
            else
                upstream_failed(r, "recv() failed", errno);
            return BL_ERR;
        } else {
            int rc = parse_response_head(r);
            if (rc == BL_ERR)
                return BL_ERR;
            if (rc == BL_AGAIN) {
                bl_arm(r->c->w, &u->timer, r->loc->conf.proxy_read_timeout);
                continue;
            }
        }
        r->state = RS_RESPONSE;
        if (r->resp.status == 101) {
            r->response_handler = tunnel_response;
            r->client_handler = tunnel_client_event;
            bl_tunnel_start(r);
            return BL_ERR; /* the tunnel may have ended r */
        }
        r->response_handler = recv_relay;
        return recv_relay(r);
    }
}

/* The whole response went: finish (the connections' fate depends on the request body). */
static void response_done(struct bl_request *r)
{
    if (!r->req_body_done || r->body_sent != r->body_end) {
        /* The server answered before reading the whole body: the rest is not read and
         * neither connection can be reused. */
        r->up_reusable = 0;
        r->keep_alive = 0;
    }
    request_finish(r);
}

/* Reads more response body. BL_OK with bytes, BL_AGAIN, or BL_ERR when r moved on. */
/* A response body longer than the buffer streams through a large one (fewer, larger recv and
 * send calls: bench/RESULTS.md, "Large bodies"). Swapped only while empty (everything read was
 * sent), so no byte moves. */
static void relay_grow(struct bl_request *r, struct bl_upconn *u)
{
    if (!u->in || bl_buf_len(u->in) || u->in->cap >= bl_buf_large_size() || r->gz)
        return;
    if (r->resp.body != BL_H1_BODY_CLOSE &&
        !(r->resp.body == BL_H1_BODY_LENGTH && r->resp_left > u->in->cap))
        return;
    struct bl_buf *large = bl_buf_get_large();
    if (!large)
        return; /* the small one does */
    bl_buf_put(u->in);
    u->in = large;
}

static int relay_read(struct bl_request *r)
{
    struct bl_upconn *u = r->a.conn;
    struct bl_client *c = r->c;
    relay_grow(r, u);
    ssize_t n = upstream_read(r);
    if (n == BL_AGAIN) {
        bl_arm(c->w, &u->timer, r->loc->conf.proxy_read_timeout);
        return BL_AGAIN;
    }
    if (n == 0 && r->resp.body == BL_H1_BODY_CLOSE) {
        r->resp_done = 1;
        r->up_reusable = 0;
        if (r->cache)
            bl_proxy_cache_body(r, u->in->end); /* no bytes: the fill is whole */
        return BL_OK;
    }
    if (n == 0) {
        bl_log(BL_LOG_ERROR, "upstream %s prematurely closed connection while reading "
               "response body, client %s", u->server->name, c->ip);
        count_failure(r, BL_SF_ERROR);
        request_abort(r, 0, "upstream closed mid-body");
        return BL_ERR;
    }
    if (n < 0) {
        bl_log(BL_LOG_ERROR, "recv() failed (%s) while reading upstream %s, client %s",
               strerror(errno), u->server->name, c->ip);
        count_failure(r, BL_SF_ERROR);
        request_abort(r, 0, "upstream read error");
        return BL_ERR;
    }
    uint32_t from = u->in->end - (uint32_t)n;
    if (account_response_body(r, from) != BL_OK) {
        bl_log(BL_LOG_ERROR, "upstream %s sent invalid chunked body, client %s",
               u->server->name, c->ip);
        count_failure(r, BL_SF_INVALID);
        request_abort(r, 0, "bad chunked response body");
        return BL_ERR;
    }
    if (r->cache)
        bl_proxy_cache_body(r, from);
    return BL_OK;
}

/* ------------------------------------------------------------ splice
 * A response body that passes through untransformed moves upstream socket -> pipe -> client
 * socket with splice(2) (core/pipe.h): no copy through u->in, about half the CPU per byte
 * (bench/RESULTS.md, "HTTP splice"). Only where no byte of the body is needed in user space:
 * both sides plain TCP/1.x (TLS and HTTP/2 frame it), no gzip, no cache fill, no dechunking
 * for an HTTP/1.0 client. A Content-Length or close-delimited body is spliced to its end; a
 * chunked one chunk by chunk, its framing read and scanned through u->in as before. Splicing
 * starts only once the head and every buffered body byte went (so order holds) and while at
 * least HTTP_SPLICE_MIN bytes are to come (less costs more in a pipe's two calls than in a
 * copy). -DHTTP_SPLICE=0 builds without it (to measure against). */
#ifndef HTTP_SPLICE
#define HTTP_SPLICE 1
#endif
#define HTTP_SPLICE_MIN (64 * 1024)

/* Body bytes that may be spliced from here on: the rest of a Content-Length body, all of a
 * close-delimited one, the rest of the current chunk's data. */
static uint64_t splice_left(const struct bl_request *r)
{
    switch (r->resp.body) {
    case BL_H1_BODY_LENGTH:
        return r->resp_left;
    case BL_H1_BODY_CHUNKED:
        return bl_h1_chunked_data_left(&r->resp_chunked);
    case BL_H1_BODY_CLOSE:
        return r->resp_done ? 0 : UINT64_MAX;
    default:
        return 0;
    }
}

/* Whether the body may be spliced from now on; takes r->pipe if so. */
static int splice_start(struct bl_request *r)
{
    const struct bl_client *c = r->c;
    const struct bl_upconn *u = r->a.conn;
    if (!HTTP_SPLICE || r->no_splice || r->resp_done || splice_left(r) < HTTP_SPLICE_MIN ||
        (u->in && bl_buf_len(u->in)) || (r->out && r->out_sent != r->out->end))
        return 0;
    if (r->gz || r->cache || r->cache_sink || r->dechunking || c->tls || c->h2 || u->tls) {
        r->no_splice = 1;
        return 0;
    }
    /* An upstream the loop reads (io_uring's multishot recv, core/loop.h) may have bytes
     * queued there, not in the socket: the loop stops and hands the socket over once they
     * were copied out (the pool lets the loop read again when the connection goes back). */
    if (u->loop_reads && !bl_loop_recv_pause(u->pool->loop, &r->a.conn->io, 1))
        return 0;
    if (!r->pipe && !(r->pipe = bl_pipe_get())) {
        r->no_splice = 1; /* no pipe to be had (fds, pipe-user-pages-soft): copy */
        return 0;
    }
    if (splice_left(r) > r->pipe->size)
        bl_pipe_grow(r->pipe);
    return 1;
}

/* Moves the body on through r->pipe until one side blocks (timers armed as the buffered relay
 * arms them: the client's send_timeout while it lags, else the upstream's read timeout) or
 * the bytes splice_left() allowed went. BL_OK once they reached the client, BL_AGAIN, or
 * BL_ERR when r moved on (aborted: a client that went, an upstream that failed or closed
 * early). */
static int relay_splice(struct bl_request *r)
{
    struct bl_client *c = r->c;
    struct bl_upconn *u = r->a.conn;
    struct bl_pipe *p = r->pipe;
    for (;;) {
        int progress = 0;
        if (p->piped && c->wready) {
            if (bl_loop_send_busy(c->w->loop, &c->io)) {
                /* the head is still staged (io_uring, core/loop.h): BL_EV_WRITE once it went */
                c->wready = 0;
            } else {
                ssize_t n = bl_pipe_out(p, c->io.fd, &c->wready);
                if (n == BL_ERR) {
                    request_abort(r, 0, "client closed while receiving the response");
                    return BL_ERR;
                }
                if (n > 0) {
                    r->resp_started = 1;
                    r->bytes_out += (uint64_t)n;
                    r->body_bytes_sent += (uint64_t)n;
                    progress = 1;
                }
            }
        }
        uint64_t left = r->splice_cut ? 0 : splice_left(r);
        if (left && u->rready && p->piped < p->size) {
            ssize_t n = bl_pipe_in(p, u->io.fd, left, &u->rready);
            if (n > 0) {
                bl_stat_add(&peer_stats(r)->bytes_in, (uint64_t)n);
                if (r->resp.body == BL_H1_BODY_CHUNKED)
                    bl_h1_chunked_skip(&r->resp_chunked, (uint64_t)n);
                else if (r->resp.body == BL_H1_BODY_LENGTH &&
                         (r->resp_left -= (uint64_t)n) == 0)
                    r->resp_done = 1;
                progress = 1;
            } else if (n == 0 && r->resp.body == BL_H1_BODY_CLOSE) {
                r->resp_done = 1;
                r->up_reusable = 0;
                progress = 1;
            } else if (n == 0 || n == BL_ERR) {
                if (n == 0)
                    bl_log(BL_LOG_ERROR, "upstream %s prematurely closed connection while "
                           "reading response body, client %s", u->server->name, c->ip);
                else
                    bl_log(BL_LOG_ERROR, "splice() failed (%s) while reading upstream %s, "
                           "client %s", strerror(errno), u->server->name, c->ip);
                count_failure(r, BL_SF_ERROR);
                /* what came before goes to the client first, as with the buffer */
                r->splice_cut = n == 0 ? 1 : 2;
                r->up_reusable = 0;
                progress = 1;
            }
        }
        if (r->splice_cut && !p->piped) {
            request_abort(r, 0, r->splice_cut == 1 ? "upstream closed mid-body"
                                                   : "upstream read error");
            return BL_ERR;
        }
        if (!p->piped && !splice_left(r))
            return BL_OK;
        if (!progress)
            break;
    }
    if (p->piped && !c->wready) {
        bl_arm(c->w, &c->timer, r->loc->conf.send_timeout);
        bl_timer_cancel(c->w->loop, &u->timer);
    } else {
        bl_arm(c->w, &u->timer, r->loc->conf.proxy_read_timeout);
    }
    return BL_AGAIN;
}

/* The request body's way, the same: client socket -> pipe -> upstream socket for the rest of
 * a Content-Length body (a chunked one is scanned for its size and client_max_body_size, so
 * it stays with the buffer), once every buffered body byte went and at least HTTP_SPLICE_MIN
 * are to come. A spliced body cannot be sent to another server (as one that outgrew the
 * buffer: body_rewound).
 * Off unless built with -DHTTP_SPLICE_UPLOAD=1: three same-run comparisons of 1 GiB uploads
 * (bench/large_body.py --base, bench/RESULTS.md "upload splice off") moved 20-27% fewer
 * bytes per second through it than through the 256 KiB buffer, at no lower CPU per GiB
 * (0.30-0.38 s against 0.32-0.33); downloads, where it halves the CPU, keep it. */
#ifndef HTTP_SPLICE_UPLOAD
#define HTTP_SPLICE_UPLOAD 0
#endif
static int upload_splice_start(struct bl_request *r)
{
    if (!HTTP_SPLICE || !HTTP_SPLICE_UPLOAD)
        return 0;
    const struct bl_client *c = r->c;
    const struct bl_upconn *u = r->a.conn;
    if (r->no_req_splice || r->msg.body != BL_H1_BODY_LENGTH ||
        r->req_left < HTTP_SPLICE_MIN || r->body_sent != r->body_end ||
        (r->out && r->out_sent != r->out->end))
        return 0;
    if (c->tls || c->h2 || u->tls) {
        r->no_req_splice = 1;
        return 0;
    }
    if (!r->req_pipe && !(r->req_pipe = bl_pipe_get())) {
        r->no_req_splice = 1;
        return 0;
    }
    /* A client the loop reads (io_uring's multishot recv, core/loop.h) may have body bytes
     * queued there, not in the socket: the loop hands the socket over once they were copied
     * out, and reads again when the request ends (request_free: r->req_pipe). */
    if (!bl_loop_recv_pause(r->c->w->loop, &r->c->io, 1))
        return 0;
    r->body_rewound = 1;
    return 1;
}

/* Moves the request body on through r->req_pipe until one side blocks (timers as
 * pump_request() arms them) or all of it went (r->req_body_done). BL_OK, BL_AGAIN, or BL_ERR
 * after a failure was handled. */
static int upload_splice(struct bl_request *r)
{
    struct bl_client *c = r->c;
    struct bl_upconn *u = r->a.conn;
    struct bl_pipe *p = r->req_pipe;
    struct bl_http_worker *w = c->w;
    for (;;) {
        int progress = 0;
        if (p->piped && u->wready) {
            if (bl_loop_send_busy(u->pool->loop, &u->io)) {
                u->wready = 0; /* the head is still staged (io_uring) */
            } else {
                ssize_t n = bl_pipe_out(p, u->io.fd, &u->wready);
                if (n == BL_ERR) {
                    upstream_failed(r, "send() failed", errno);
                    return BL_ERR;
                }
                if (n > 0) {
                    r->a.sent_any = 1;
                    bl_stat_add(&peer_stats(r)->bytes_out, (uint64_t)n);
                    progress = 1;
                }
            }
        }
        if (r->req_left && c->rready && p->piped < p->size) {
            ssize_t n = bl_pipe_in(p, c->io.fd, r->req_left, &c->rready);
            if (n > 0) {
                r->req_left -= (uint64_t)n;
                r->bytes_in += (uint64_t)n;
                progress = 1;
            } else if (n == 0 || n == BL_ERR) {
                bl_log(BL_LOG_INFO, "client %s closed connection while sending the request body",
                       c->ip);
                request_abort(r, 0, "client closed");
                return BL_ERR;
            }
        }
        if (!r->req_left && !p->piped) {
            r->req_body_done = 1;
            return BL_OK;
        }
        if (!progress)
            break;
    }
    if (p->piped && !u->wready) {
        bl_arm(w, &u->timer, r->loc->conf.proxy_send_timeout);
        bl_timer_cancel(w->loop, &c->timer);
    } else {
        bl_arm(w, &c->timer, r->loc->conf.client_body_timeout);
        if (!r->resp_head_done)
            bl_timer_cancel(w->loop, &u->timer);
    }
    return BL_AGAIN;
}

/* Streams the response to the client until one side blocks or it is complete. */
static int recv_relay(struct bl_request *r)
{
    struct bl_client *c = r->c;
    for (;;) {
        int rc = send_client(r);
        if (rc == BL_ERR) {
            request_abort(r, 0, "client closed while receiving the response");
            return BL_ERR;
        }
        if (rc == BL_AGAIN) {
            bl_arm(c->w, &c->timer, r->loc->conf.send_timeout);
            bl_timer_cancel(c->w->loop, &r->a.conn->timer);
            return BL_AGAIN;
        }
        int piped = r->pipe && r->pipe->piped;
        if (r->resp_done && !piped) {
            response_done(r);
            return BL_ERR;
        }
        if (piped || splice_start(r)) {
            rc = relay_splice(r);
            if (rc != BL_OK)
                return rc;
            continue;
        }
        rc = relay_read(r);
        if (rc != BL_OK)
            return rc;
    }
}

/* Sets the handlers of phase state (RS_CONNECT or RS_SEND_HEAD: a new attempt). */
static void proxy_phase(struct bl_request *r, int state)
{
    r->state = (uint8_t)state;
    if (state == RS_CONNECT) {
        r->request_handler = send_connect;
        r->response_handler = NULL;
    } else {
        r->request_handler = send_request;
        r->response_handler = recv_head;
    }
}

/* An event on either connection: each direction as far as the sockets allow. */
static void proxy_run(struct bl_request *r)
{
    if (!r->a.conn)
        return;
    if (r->request_handler && r->request_handler(r) == BL_ERR)
        return;
    if (r->response_handler)
        r->response_handler(r);
}

/* Client readiness while the request is proxied. A half-close or reset after the whole
 * request was read: nginx checks with a peek whether the client is gone or only sent its last
 * bytes, and aborts the request only if it is gone. */
static void proxy_client_event(struct bl_request *r, uint32_t ev)
{
    struct bl_client *c = r->c;
    /* a background cache update goes on without its client, which has its answer */
    if ((ev & BL_EV_READ) && r->req_body_done && !r->resp_done && !r->cache_sink &&
        client_gone(c)) {
        bl_log(BL_LOG_INFO, "client %s prematurely closed connection", c->ip);
        request_abort(r, 0, "client closed");
        return;
    }
    proxy_run(r);
}

/* ------------------------------------------------------------ local responses */

static const char oom_response[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";

/* Out of memory before a request could be read: a best-effort 503 from static memory (one
 * send into an empty socket buffer), then the connection closed. */
static void client_oom(struct bl_client *c)
{
    bl_log(BL_LOG_ERROR, "out of memory, closing the connection of client %s", c->ip);
    ssize_t n = client_send_small(c, oom_response, sizeof(oom_response) - 1);
    (void)n;
    client_close(c);
}

/* Out of memory while answering r: the same 503 unless the response already started, then
 * the connection is closed. */
static void request_oom(struct bl_request *r)
{
    bl_log(BL_LOG_ERROR, "out of memory, answering client %s with 503", r->c->ip);
    if (!r->resp_started) {
        ssize_t n = client_send_small(r->c, oom_response, sizeof(oom_response) - 1);
        (void)n;
        r->status = 503;
        r->body_bytes_sent = 0;
    }
    r->keep_alive = 0;
    request_finish(r);
}

/* A file sends at most this much per call before the other connections have their turn (a
 * fast client on a large file would otherwise keep the worker to itself). */
#define FILE_TURN_BYTES (4u << 20)

static void local_send(struct bl_request *r);

static void local_file_resume(struct bl_timer *t)
{
    local_send((struct bl_request *)((char *)t - offsetof(struct bl_request, file_timer)));
}

/* Writes the response local.c produced in r: the head, then a file's body (static.c), paced
 * by the client. */
static void local_send(struct bl_request *r)
{
    uint64_t start = r->body_bytes_sent;
    bl_timer_cancel(r->c->w->loop, &r->file_timer);
    for (;;) {
        int rc = send_client(r);
        if (rc == BL_ERR) {
            r->keep_alive = 0;
            request_finish(r);
            return;
        }
        if (rc == BL_AGAIN) {
            bl_arm(r->c->w, &r->c->timer, r->loc ? r->loc->conf.send_timeout : 60000);
            return;
        }
        if (r->file_fd < 0 && !r->listing)
            break;
        if (r->body_bytes_sent - start >= FILE_TURN_BYTES) {
            bl_timer_cancel(r->c->w->loop, &r->c->timer); /* not waiting on the client */
            r->file_timer.handler = local_file_resume;
            bl_timer_set(r->c->w->loop, &r->file_timer, bl_clock_ms);
            return;
        }
        rc = bl_static_next(r);
        if (rc == BL_AGAIN) {
            bl_arm(r->c->w, &r->c->timer, r->loc ? r->loc->conf.send_timeout : 60000);
            return;
        }
        if (rc != BL_OK)
            break; /* the whole body, or a file that failed (keep_alive cleared) */
    }
    if (r->cache && bl_proxy_cache_answered(r))
        return;
    request_finish(r);
}

static void local_client_event(struct bl_request *r, uint32_t ev)
{
    /* a body the answer keeps the connection for is dropped as it comes (drop_read) */
    if ((ev & (BL_EV_READ | BL_EV_HUP | BL_EV_ERROR)) && !r->req_body_done && r->keep_alive &&
        discardable(r) && drop_read(r) == BL_ERR)
        return;
    if (ev & BL_EV_WRITE)
        local_send(r);
}

static void request_content(struct bl_request *r);

/* error_page names a location that proxies: an internal redirect to it through a new attempt,
 * the request sent as a GET to a URI page (HEAD stays HEAD), as it came to a named one, as
 * nginx's ngx_http_send_error_page() does; its answer goes to the client with
 * r->err_status when set. The last attempt was released before the error was answered. */
static void error_page_proxy(struct bl_request *r)
{
    static const char get[] = "GET";
    int status;
    const char *uri = r->page_uri;
    if (bl_rw_redirect(r, uri, strlen(uri), &status) != BL_OK) {
        local_done(r, bl_local_response(r, status, NULL, 0, NULL, 0));
        return;
    }
    if (uri[0] == '/' && r->msg.method_id != BL_H1_M_HEAD) {
        r->msg.method = get;
        r->msg.method_len = 3;
        r->msg.method_id = BL_H1_M_GET;
    }
    memset(&r->a, 0, sizeof(r->a));
    r->keep_alive = 0;
    request_content(r);
}

/* local.c produced a response into r (rc BL_OK) or ran out of memory: send it. */
static void local_done(struct bl_request *r, int rc)
{
    if (rc == BL_LOCAL_PROXY) {
        error_page_proxy(r);
        return;
    }
    if (rc != BL_OK) {
        request_oom(r);
        return;
    }
    r->state = RS_LOCAL;
    r->client_handler = local_client_event;
    r->request_handler = r->response_handler = NULL;
    local_send(r);
}

/* Answers r with status from ballast itself (an error page, or what error_page names). */
static void local_response(struct bl_request *r, int status)
{
    local_done(r, bl_local_response(r, status, NULL, 0, NULL, 0));
}

/* ------------------------------------------------------------ finishing */

/* Counts a finished request in its server block's and location's statistics: the same
 * requests the access log shows. */
static void request_account(const struct bl_request *r)
{
    if (!r->srv)
        return;
    struct bl_stats_worker *st = r->c->w->stats;
    unsigned k = bl_stats_class(r->status);
    uint64_t in = (uint64_t)(r->head_end - r->head_start) + r->bytes_in;
    struct bl_stats_zone *z = &st->servers[r->srv->index];
    bl_stat_add(&z->requests[k], 1);
    bl_stat_add(&z->bytes_in, in);
    bl_stat_add(&z->bytes_out, r->bytes_out);
    if (r->loc && r->loc->index != UINT32_MAX) {
        z = &st->locations[r->loc->index];
        bl_stat_add(&z->requests[k], 1);
        bl_stat_add(&z->bytes_in, in);
        bl_stat_add(&z->bytes_out, r->bytes_out);
    }
}

static void request_log(struct bl_request *r)
{
    const struct bl_location *loc = r->loc;
    request_account(r);
    try_end(r, 0);
    if (!loc || !loc->conf.naccess_logs)
        return;
    if (!r->request_id_len)
        request_make_id(r);
    struct bl_var_resp resp = {
        .status = r->status,
        .body_bytes_sent = r->body_bytes_sent,
        .bytes_sent = r->bytes_out,
        /* nginx counts a head once it is parsed: a refused request line counts 0 */
        .request_length = r->msg.method ? (uint64_t)(r->head_end - r->head_start) + r->bytes_in
                                        : 0,
        .request_time_us = bl_clock_us - r->start_us,
        .tries = r->tries,
        .ntries = r->ntries,
    };
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    v.resp = &resp;
    const struct bl_buf *in = r->c->in;
    if (!r->msg.method && in && r->head_start < in->end) {
        /* A request line that did not parse is logged as received up to its end, as nginx
         * logs it (escaped like any value). */
        const char *p = in->data + r->head_start;
        uint32_t n = 0, max = in->end - r->head_start;
        while (n < max && p[n] != '\r' && p[n] != '\n')
            n++;
        v.raw_line = p;
        v.raw_line_len = n;
    }
    bl_access_log_lines(&r->c->w->logs, loc->conf.access_logs, loc->conf.naccess_logs, &v);
}

static void request_free(struct bl_request *r)
{
    if (r->qwait.q)
        bl_queue_cancel(&r->qwait);
    bl_http_preaccess_end(r); /* limit_conn and max_inflight counts, limit_req's timer */
    bl_proxy_cache_end(r); /* the fill committed or dropped */
    bl_realip_restore(r); /* the next request on the connection starts from the peer */
    bl_rw_free(r); /* the normalized path, rewritten URIs, variables */
    bl_gzip_free(r->gz);
    r->gz = NULL;
    bl_pipe_put(r->pipe); /* closed if the body was cut with bytes in it */
    r->pipe = NULL;
    if (r->req_pipe) {
        bl_loop_recv_pause(r->c->w->loop, &r->c->io, 0); /* the client's next request */
        bl_pipe_put(r->req_pipe);
        r->req_pipe = NULL;
    }
    if (r->file_fd >= 0)
        close(r->file_fd);
    bl_timer_cancel(r->c->w->loop, &r->file_timer);
    bl_static_free(r);
    bl_buf_put(r->out);
    if (!bl_freelist_give(&r->c->w->request_cache, r))
        request_destroy(r);
}

/* The response is complete: log, release the upstream, keep the client alive or close. A
 * local answer that kept the connection with the request's body unread drops that body first
 * (RS_DROP_BODY). */
static void request_finish(struct bl_request *r)
{
    struct bl_client *c = r->c;
    request_log(r);
    bl_attempt_release(&r->a, 0, r->up_reusable && r->req_body_done &&
                                     r->body_sent == r->body_end,
                       r->body_bytes_sent);
    if (bl_unlikely(!r->req_body_done) && r->keep_alive && c->w->draining != 1 &&
        discardable(r)) {
        r->state = RS_DROP_BODY;
        r->client_handler = drop_body_event;
        bl_timer_cancel(c->w->loop, &c->timer);
        drop_body(r);
        return;
    }
    request_next(r);
}

/* r is over: the client connection takes its next request (pipelined bytes at once) or
 * closes. */
static void request_next(struct bl_request *r)
{
    struct bl_client *c = r->c;
    /* never an unread body taken for the next request */
    int keep = r->keep_alive && c->w->draining != 1 && r->req_body_done;
    uint32_t next = r->body_end; /* first byte after this request */
    uint64_t idle_ms = r->loc ? r->loc->conf.keepalive_timeout
                              : c->listen->servers[0]->conf.keepalive_timeout;
    c->req = NULL;
    request_free(r);
    if (c->h2) {
        stream_client_close(c, 1);
        return;
    }
    bl_timer_disarm(c->w->loop, &c->timer); /* re-armed below; client_close cancels it */
    if (!keep) {
        /* Lingering close: stop sending, read and drop what the client still sends for a
         * moment, so the response is not lost to a reset caused by unread input. */
        if (c->tls)
            bl_tls_shutdown(c->tls);
        bl_loop_shutdown_wr(c->w->loop, &c->io); /* after a staged send (io_uring) */
        client_state(c, CS_LINGER);
        bl_arm(c->w, &c->timer, 2000);
        if (c->in)
            c->in->start = c->in->end = 0;
        if (c->rready)
            c->io.handler(&c->io, BL_EV_READ);
        return;
    }
    struct bl_buf *in = c->in;
    if (in && next < in->end) {
        /* Pipelined bytes: move them to the front and parse the next request now. */
        memmove(in->data, in->data + next, in->end - next);
        in->end -= next;
        in->start = 0;
        client_state(c, CS_READ_HEAD);
        client_read_head(c);
        return;
    }
    bl_buf_put(in);
    c->in = NULL;
    if (client_outdated(c) && client_migrate(c) != BL_OK) {
        client_close(c);
        return;
    }
    client_state(c, CS_IDLE);
    bl_arm(c->w, &c->timer, idle_ms);
    if (c->rready)
        client_read_head(c);
}

/* The most of a request body still unread when ballast answers it with an error that is
 * read and dropped so that the connection can stay (nginx discards any size within its
 * lingering_time); a longer one, or one whose size is not known (chunked), closes instead. */
#define DISCARD_MAX (1u << 20)

/* Whether r's unread body can be dropped: a Content-Length rest within DISCARD_MAX that the
 * client is sending (no 100-continue it still waits for). */
static int discardable(const struct bl_request *r)
{
    return !r->c->h2 && r->msg.body == BL_H1_BODY_LENGTH && r->req_left <= DISCARD_MAX &&
           (!(r->msg.flags & BL_H1_F_EXPECT_CONTINUE) || r->continue_sent);
}

void bl_request_unread_body(struct bl_request *r)
{
    if (!r->req_body_done && !discardable(r))
        r->keep_alive = 0; /* the unread body would be taken for the next request */
}

/* Reads and drops what the client has sent of r's unread body (local answers: while the
 * answer goes, as nginx's discarded body, so that a client sending its body before reading
 * cannot stall against a large answer; then in RS_DROP_BODY). BL_OK: done or waiting for
 * more; BL_ERR: r ended (the client closed, or sent a bad body). */
static int drop_read(struct bl_request *r)
{
    while (!r->req_body_done) {
        r->body_sent = r->body_end; /* dropped: the next read reuses the space */
        int rc = read_request_body(r);
        if (rc == BL_ERR)
            return BL_ERR;
        if (rc == BL_AGAIN)
            return BL_OK;
    }
    return BL_OK;
}

/* RS_DROP_BODY: the answer went and was logged; each read of the rest waits
 * client_body_timeout (then the connection closes), and once the body is whole the connection
 * goes on. */
static void drop_body(struct bl_request *r)
{
    if (drop_read(r) == BL_ERR)
        return;
    if (!r->req_body_done) {
        bl_arm(r->c->w, &r->c->timer, r->loc->conf.client_body_timeout);
        return;
    }
    bl_timer_cancel(r->c->w->loop, &r->c->timer);
    request_next(r);
}

static void drop_body_event(struct bl_request *r, uint32_t ev)
{
    if (ev & (BL_EV_READ | BL_EV_HUP | BL_EV_ERROR))
        drop_body(r);
}

/* RS_DROP_BODY ends early (the client closed or stalled): r was logged, the connection
 * closes. */
static void drop_body_abort(struct bl_request *r)
{
    struct bl_client *c = r->c;
    c->req = NULL;
    request_free(r);
    client_close(c);
}

/* Reads and drops the rest of r's body, then answers r->discard_status on the kept
 * connection. Each read waits client_body_timeout (then 408, which closes). */
static void discard_body(struct bl_request *r)
{
    for (;;) {
        r->body_sent = r->body_end; /* dropped: the next read reuses the space */
        int rc = read_request_body(r);
        if (rc == BL_ERR)
            return; /* answered or closed */
        if (r->req_body_done) {
            bl_timer_cancel(r->c->w->loop, &r->c->timer);
            local_response(r, r->discard_status);
            return;
        }
        if (rc == BL_AGAIN) {
            bl_arm(r->c->w, &r->c->timer, r->loc->conf.client_body_timeout);
            return;
        }
    }
}

static void discard_client_event(struct bl_request *r, uint32_t ev)
{
    if (ev & (BL_EV_READ | BL_EV_HUP | BL_EV_ERROR))
        discard_body(r);
}

/* A failure. Before the response started: answer with status (0 = just close). After: the
 * response is cut, so the client connection is closed. An error that keeps the connection
 * first drops a small unread body (discardable()). */
static void request_abort(struct bl_request *r, int status, const char *why)
{
    struct bl_client *c = r->c;
    bl_log(BL_LOG_DEBUG, "request from %s ends early: %s", c->ip, why);
    if (r->state == RS_DROP_BODY) {
        drop_body_abort(r);
        return;
    }
    bl_attempt_release(&r->a, 1, 0, r->body_bytes_sent);
    if (status >= 500 && r->cache && (!r->resp_started || r->cache_sink) &&
        bl_proxy_cache_error(r, status) == BL_OK)
        return;
    if (status && !r->resp_started) {
        /* The connection stays when the request was read whole (an upstream outage must not
         * make every client reconnect); an unread body would be taken for the next request. */
        if (bl_http_status_ends_connection(status))
            r->keep_alive = 0;
        else if (!r->req_body_done && r->keep_alive && discardable(r)) {
            r->discard_status = (uint16_t)status;
            r->client_handler = discard_client_event;
            discard_body(r);
            return;
        }
        if (!r->req_body_done)
            r->keep_alive = 0;
        local_response(r, status);
        return;
    }
    if (!r->resp_started)
        r->status = 499;
    request_log(r);
    c->req = NULL;
    request_free(r);
    client_close(c);
}

/* `return 444`: nginx's way to answer nothing; the request is logged with 444 and the
 * connection closed. */
static void request_drop(struct bl_request *r)
{
    struct bl_client *c = r->c;
    r->status = 444;
    request_log(r);
    c->req = NULL;
    request_free(r);
    client_close(c);
}

/* ------------------------------------------------------------ client connection */

static void client_free(struct bl_deferred *d)
{
    struct bl_client *c = (struct bl_client *)((char *)d - offsetof(struct bl_client, defer));
    free(c->pp);
    free(c);
}

/* A stream client ends (http/h2.h): complete, its response went whole. */
static void stream_client_close(struct bl_client *c, int complete)
{
    if (c->req) {
        struct bl_request *r = c->req;
        c->req = NULL;
        bl_attempt_release(&r->a, 1, 0, r->body_bytes_sent);
        request_free(r);
    }
    c->state = CS_CLOSED;
    bl_timer_cancel(c->w->loop, &c->timer);
    bl_buf_put(c->in);
    c->in = NULL;
    c->pp = NULL; /* the connection's */
    bl_h2_stream_detach(c, complete);
    c->io.handler = NULL;
    bl_loop_defer(c->w->loop, &c->defer);
}

static void client_close(struct bl_client *c)
{
    struct bl_http_worker *w = c->w;
    if (c->state == CS_CLOSED)
        return;
    if (c->h2) {
        stream_client_close(c, 0);
        return;
    }
    if (c->req) {
        struct bl_request *r = c->req;
        c->req = NULL;
        bl_attempt_release(&r->a, 1, 0, r->body_bytes_sent);
        request_free(r);
    }
    if (c->h2c)
        bl_h2_conn_free(c);
    client_state(c, CS_CLOSED);
    bl_timer_cancel(w->loop, &c->timer);
    if (c->tls) {
        bl_tls_free(c->tls);
        c->tls = NULL;
    }
    bl_loop_close(w->loop, &c->io); /* io_uring: cancels the fd's poll, which holds the socket */
    c->io.handler = NULL;
    bl_buf_put(c->in);
    c->in = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nclients--;
    bl_stat_sub(&client_stats(c)->conns, 1);
    bl_loop_defer(w->loop, &c->defer);
    w->on_client_closed(w);
}

/* Answers a bad request head with status and closes. */
static void client_bad_request(struct bl_client *c, int status, const char *reason)
{
    bl_log(BL_LOG_INFO, "client %s sent invalid request (%d: %s)", c->ip, status,
           reason ? reason : "?");
    struct bl_request *r = c->req;
    r->head_end = r->body_end = r->body_sent = c->in->end;
    r->req_body_done = 1;
    r->keep_alive = 0;
    client_state(c, CS_REQUEST);
    /* The access log shows what it can: the request line may not have been parsed. */
    r->msg.method = NULL;
    r->msg.nheaders = 0;
    r->srv = c->listen->servers[0];
    r->loc = r->srv->server_loc;
    local_response(r, status);
}

/* The h2c client preface: 1 whole, 0 a prefix of it so far, -1 not it. */
static int h2_preface(const char *p, uint32_t len)
{
    uint32_t n = len < BL_H2_PREFACE_LEN ? len : BL_H2_PREFACE_LEN;
    if (memcmp(p, BL_H2_PREFACE, n) != 0)
        return -1;
    return n == BL_H2_PREFACE_LEN;
}

/* The connection turns HTTP/2 (h2c prior knowledge, or ALPN h2 with nothing read yet). */
static void client_start_h2(struct bl_client *c)
{
    const char *data = NULL;
    size_t len = 0;
    if (c->req) {
        request_free(c->req);
        c->req = NULL;
    }
    if (c->in) {
        data = c->in->data + c->in->start;
        len = bl_buf_len(c->in);
    }
    client_state(c, CS_H2);
    bl_timer_cancel(c->w->loop, &c->timer);
    int rc = bl_h2_start(c, data, len);
    bl_buf_put(c->in);
    c->in = NULL;
    if (rc != BL_OK)
        client_close(c);
}

static void client_read_head(struct bl_client *c)
{
    const struct bl_server_block *def = c->listen->servers[0];
    for (;;) {
        if (!c->in) {
            if (!c->rready)
                return;
            if (!(c->in = bl_buf_get())) {
                client_oom(c);
                return;
            }
        }
        if (!c->req) {
            if (!(c->req = request_new(c))) {
                client_oom(c);
                return;
            }
            bl_h1_parser_init_request(&c->req->parser, (uint32_t)def->conf.lchb_size,
                                      (uint32_t)(def->conf.lchb_number * def->conf.lchb_size));
            c->req->head_start = c->in->start;
        }
        struct bl_request *r = c->req;
        if (bl_buf_len(c->in)) {
            if (bl_unlikely(c->nrequests == 0 && !c->tls && !c->h2 && r->head_start == 0 &&
                            c->in->data[0] == 'P' && bl_listen_http2(c->listen))) {
                int p = h2_preface(c->in->data, c->in->end);
                if (p == 1) {
                    client_start_h2(c);
                    return;
                }
                if (p == 0) {
                    if (!c->rready) {
                        if (!bl_timer_armed(&c->timer))
                            bl_arm(c->w, &c->timer, def->conf.client_header_timeout);
                        return;
                    }
                    ssize_t n = client_read(c, c->in);
                    if (n == BL_AGAIN)
                        continue;
                    if (n <= 0) {
                        client_close(c);
                        return;
                    }
                    continue;
                }
            }
            int rc = bl_h1_parse(&r->parser, c->in->data + r->head_start,
                                 c->in->end - r->head_start, &r->msg);
            if (rc > 0) {
                request_start(c, (uint32_t)rc);
                return;
            }
            if (rc == BL_ERR) {
                client_bad_request(c, r->parser.error ? r->parser.error : 400, r->parser.reason);
                return;
            }
            if (bl_buf_room(c->in) == 0) {
                client_bad_request(c, 431, "request head larger than the buffer");
                return;
            }
        }
        if (!c->rready) {
            /* The header deadline runs from the head's first byte (or the connection's
             * opening): a client trickling bytes does not move it. */
            if (c->state != CS_READ_HEAD)
                client_state(c, CS_READ_HEAD);
            if (!bl_timer_armed(&c->timer))
                bl_arm(c->w, &c->timer, def->conf.client_header_timeout);
            if (bl_buf_len(c->in) == 0) {
                /* Nothing arrived after all: give the buffer back while waiting. */
                bl_buf_put(c->in);
                c->in = NULL;
                request_free(c->req);
                c->req = NULL;
                client_state(c, c->nrequests ? CS_IDLE : CS_READ_HEAD);
                if (c->nrequests)
                    bl_arm(c->w, &c->timer, def->conf.keepalive_timeout);
            }
            return;
        }
        ssize_t n = client_read(c, c->in);
        if (n == BL_AGAIN)
            continue;
        if (n <= 0) {
            client_close(c);
            return;
        }
        if (c->state == CS_IDLE) {
            /* The idle deadline stops; the header deadline is armed only if the head does
             * not come whole (above, once the socket runs dry), from this turn's clock as
             * before. A keep-alive request whose head comes in one read, the usual one, then
             * moves no timer in the heap: the idle one is re-armed later than it was, which
             * is free (core/loop.h), where the header one moved it earlier, a heap walk over
             * other connections' timers (perf: heap_up 0.5% of the worker's CPU at 200
             * connections). */
            client_state(c, CS_READ_HEAD);
            bl_timer_disarm(c->w->loop, &c->timer);
        }
    }
}

static void client_linger(struct bl_client *c)
{
    char scratch[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = bl_loop_recv(c->w->loop, &c->io, scratch, sizeof(scratch), 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;
    }
    client_close(c);
}

/* Whether the client went away (EOF or reset, seen with a peek) rather than only half-closed
 * after its last bytes. */
static int client_gone(struct bl_client *c)
{
    if (c->h2)
        return 0; /* a reset stream is told by http/h2.c */
    char b;
    ssize_t n = bl_loop_recv(c->w->loop, &c->io, &b, 1, MSG_PEEK);
    if (n == 0)
        return 1;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
}

static void client_handshake(struct bl_client *c, uint32_t ev);

/* listen ... proxy_protocol: the header comes first, before TLS and the request, within
 * client_header_timeout (armed at accept, as nginx). A malformed one closes the connection with
 * nginx's "broken header" line; the bytes after it stay in the socket for what follows. */
static void client_proxy_protocol(struct bl_client *c, uint32_t ev)
{
    const char *reason;
    char seen[260];
    int rc = bl_pp_read(c->io.fd, c->pp, &reason, seen, sizeof(seen));
    if (rc == BL_AGAIN) {
        if (!(ev & BL_EV_HUP))
            return;
        bl_log(BL_LOG_INFO, "client %s closed the connection in the PROXY protocol header",
               c->ip);
        client_close(c);
        return;
    }
    if (rc == BL_ERR) {
        bl_log(BL_LOG_ERROR, "%s: \"%s\" while reading PROXY protocol, client: %s, server: %s",
               reason, seen, c->ip, c->listen->text);
        client_close(c);
        return;
    }
    if (rc == 0) {
        if (errno)
            bl_log(BL_LOG_INFO, "recv() failed (%s) while reading PROXY protocol, client: %s",
                   strerror(errno), c->ip);
        client_close(c);
        return;
    }
    c->pp_wait = 0;
    if (!c->pp->has_addr) { /* UNKNOWN, LOCAL: the connection's own addresses stand */
        free(c->pp);
        c->pp = NULL;
    }
    if (c->tls) {
        client_handshake(c, BL_EV_READ);
        return;
    }
    c->rready = 1;
    client_read_head(c);
}

static void client_on_event(struct bl_io *io, uint32_t ev)
{
    struct bl_client *c = (struct bl_client *)io;
    if (bl_unlikely(c->pp_wait)) {
        /* edges seen now are not seen again: the response will need this one */
        if (ev & BL_EV_WRITE)
            c->wready = 1;
        if (ev & BL_EV_HUP)
            c->hup = 1;
        if (ev & (BL_EV_READ | BL_EV_HUP | BL_EV_ERROR))
            client_proxy_protocol(c, ev);
        return;
    }
    if (bl_unlikely(c->tls != NULL)) {
        if (c->tls_handshake) {
            client_handshake(c, ev);
            return;
        }
        /* A TLS read that waited for the socket to be writable (or a write for readable) is
         * retried on that edge, as if its own had come. */
        if ((ev & BL_EV_WRITE) && (c->tls_want & BL_TLS_READ_WANTS_WRITE))
            ev |= BL_EV_READ;
        if ((ev & BL_EV_READ) && (c->tls_want & BL_TLS_WRITE_WANTS_READ))
            ev |= BL_EV_WRITE;
    }
    if (ev & BL_EV_READ)
        c->rready = 1;
    if (ev & BL_EV_HUP)
        c->hup = 1;
    if (ev & BL_EV_WRITE)
        c->wready = 1;
    switch (c->state) {
    case CS_IDLE:
    case CS_READ_HEAD:
        client_read_head(c);
        break;
    case CS_REQUEST:
        c->req->client_handler(c->req, ev);
        break;
    case CS_LINGER:
        if (ev & BL_EV_READ)
            client_linger(c);
        break;
    case CS_H2:
        bl_h2_conn_event(c, ev);
        break;
    default:
        break;
    }
}

/* nginx's answer to plain HTTP on a TLS port. */
static const char plain_http_response[] =
    "HTTP/1.1 400 Bad Request\r\nServer: ballast\r\nContent-Type: text/html\r\n"
    "Content-Length: 250\r\nConnection: close\r\n\r\n"
    "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n"
    "<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
    "<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
    "<hr><center>ballast</center>\r\n</body>\r\n</html>\r\n";

/* The TLS handshake, driven by the loop's edges. Its deadline is client_header_timeout, armed
 * at accept: a client that stalls mid-handshake is closed by client_on_timer. */
static void client_handshake(struct bl_client *c, uint32_t ev)
{
    if (ev & BL_EV_HUP)
        c->hup = 1;
    if ((ev & BL_EV_READ) || (ev & BL_EV_WRITE) || (ev & BL_EV_HUP)) {
        int rc = bl_tls_handshake(c->tls, &c->tls_want, c->ip);
        if (rc == BL_AGAIN)
            return;
        if (rc == BL_TLS_PLAIN_HTTP) {
            bl_log(BL_LOG_INFO, "client %s sent plain HTTP request to HTTPS port", c->ip);
            bl_tls_free(c->tls);
            c->tls = NULL;
            ssize_t n = send(c->io.fd, plain_http_response, sizeof(plain_http_response) - 1,
                             MSG_NOSIGNAL);
            (void)n;
            shutdown(c->io.fd, SHUT_WR);
            client_state(c, CS_LINGER);
            bl_timer_cancel(c->w->loop, &c->timer);
            bl_arm(c->w, &c->timer, 2000);
            client_linger(c);
            return;
        }
        if (rc != BL_OK) {
            client_close(c);
            return;
        }
        c->tls_handshake = 0;
        c->tls_want = 0;
        /* The request may have come with the handshake's last flight: read it now. */
        c->rready = 1;
        c->wready = 1;
        if (bl_tls_alpn_h2(c->tls)) {
            client_start_h2(c);
            return;
        }
        client_read_head(c);
    }
}

static void client_on_timer(struct bl_timer *t)
{
    struct bl_client *c = (struct bl_client *)((char *)t - offsetof(struct bl_client, timer));
    switch (c->state) {
    case CS_READ_HEAD:
        if (c->pp_wait) {
            bl_log(BL_LOG_INFO, "client %s timed out while sending the PROXY protocol header",
                   c->ip);
            client_close(c);
            return;
        }
        if (c->req && c->in && bl_buf_len(c->in)) {
            bl_log(BL_LOG_INFO, "client %s timed out while sending the request head", c->ip);
            c->req->msg.method = NULL;
            client_bad_request(c, 408, "client_header_timeout");
            return;
        }
        client_close(c);
        return;
    case CS_H2:
        bl_h2_conn_timer(c);
        return;
    case CS_REQUEST: {
        struct bl_request *r = c->req;
        if (r->state == RS_DROP_BODY) {
            bl_log(BL_LOG_INFO, "client %s timed out while its unread request body was dropped",
                   c->ip);
            drop_body_abort(r);
            return;
        }
        if (r->state == RS_LOCAL || r->resp_started) {
            bl_log(BL_LOG_INFO, "client %s timed out while receiving the response", c->ip);
            request_abort(r, 0, "send_timeout");
        } else {
            bl_log(BL_LOG_INFO, "client %s timed out while sending the request body", c->ip);
            request_abort(r, 408, "client_body_timeout");
        }
        return;
    }
    default:
        client_close(c);
        return;
    }
}

void bl_http_accept(struct bl_http_worker *w, const struct bl_listen *listen, int fd,
                    const struct sockaddr *peer, socklen_t peerlen)
{
    struct bl_client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    /* A response relayed in two writes (head, then body that came later) must not wait for
     * the client's delayed ACK: Nagle would add ~40 ms per request on keep-alive. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->io.fd = fd;
    c->io.handler = client_on_event;
    c->io.prefetch = client_prefetch;
    c->timer.handler = client_on_timer;
    c->defer.run = client_free;
    c->w = w;
    c->listen = listen;
    memcpy(&c->addr, peer, peerlen < sizeof(c->addr) ? peerlen : sizeof(c->addr));
    c->state = CS_READ_HEAD;
    c->ip_len = (uint8_t)bl_addr_format_ip(peer, c->ip, sizeof(c->ip));
    if (listen->proxy_protocol) {
        if (!(c->pp = calloc(1, sizeof(*c->pp)))) {
            close(fd);
            free(c);
            return;
        }
        c->pp_wait = 1;
    }
    if (listen->ssl) {
        if (!(c->tls = bl_tls_new(listen, fd))) {
            bl_log(BL_LOG_ERROR, "out of memory for a TLS session, client %s", c->ip);
            close(fd);
            free(c->pp);
            free(c);
            return;
        }
        c->tls_handshake = 1;
    }
    c->port = ntohs(peer->sa_family == AF_INET ? ((const struct sockaddr_in *)peer)->sin_port
                                               : ((const struct sockaddr_in6 *)peer)->sin6_port);
    /* Plain HTTP/1 (and h2c): the loop reads (io_uring's multishot recv); TLS and the PROXY
     * header are read from the socket by their own code, so those keep readiness. */
    int loop_reads = !c->tls && !c->pp;
    if ((loop_reads ? bl_loop_add_recv(w->loop, &c->io) : bl_loop_add(w->loop, &c->io)) !=
        BL_OK) {
        if (c->tls)
            bl_tls_free(c->tls);
        close(fd);
        free(c->pp);
        free(c);
        return;
    }
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->nclients++;
    bl_stat_add(&client_stats(c)->accepted, 1);
    bl_stat_add(&client_stats(c)->conns, 1);
    /* The request usually arrives with or right after the handshake: wait for the edge. */
    bl_arm(w, &c->timer, listen->servers[0]->conf.client_header_timeout);
}

/* The listening address of l in cfg, by address (a reload's listeners are diffed the same
 * way, worker.c). */
static const struct bl_listen *listen_find(const struct bl_config *cfg, const struct bl_listen *l)
{
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        if (strcmp(cfg->listens[i].text, l->text) == 0)
            return &cfg->listens[i];
    return NULL;
}

/* Moves c to the worker's current generation: its list, its statistics, its listening
 * address there. BL_ERR when the new generation has no such address (c stays). */
static int client_migrate(struct bl_client *c)
{
    struct bl_http_worker *from = c->w, *to = *c->w->current;
    const struct bl_listen *ls = listen_find(to->cfg, c->listen);
    if (!ls)
        return BL_ERR;
    if (c->prev)
        c->prev->next = c->next;
    else
        from->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    from->nclients--;
    bl_stat_sub(&client_stats(c)->conns, 1);
    if (c->state == CS_IDLE)
        bl_stat_sub(&client_stats(c)->conns_idle, 1);
    c->w = to;
    c->listen = ls;
    bl_stat_add(&client_stats(c)->conns, 1);
    if (c->state == CS_IDLE)
        bl_stat_add(&client_stats(c)->conns_idle, 1);
    c->prev = NULL;
    c->next = to->clients;
    if (to->clients)
        to->clients->prev = c;
    to->clients = c;
    to->nclients++;
    from->on_client_closed(from);
    return BL_OK;
}

void bl_http_adopt_idle(struct bl_http_worker *w)
{
    struct bl_client *c = w->clients;
    while (c) {
        struct bl_client *next = c->next;
        if (c->state == CS_IDLE && client_outdated(c) && client_migrate(c) != BL_OK)
            client_close(c);
        else if (c->state == CS_H2 && client_outdated(c))
            bl_h2_goaway(c); /* its clients open their next streams on a new connection */
        c = next;
    }
}

void bl_http_drain(struct bl_http_worker *w, int close_idle)
{
    for (struct bl_client *c = w->clients; c; c = c->next)
        if (c->state == CS_H2)
            bl_h2_goaway(c); /* closes once its streams are done (a deferred run) */
    if (!close_idle)
        return; /* every next request is answered with Connection: close (w->draining) */
    struct bl_client *c = w->clients;
    while (c) {
        struct bl_client *next = c->next;
        if (c->state == CS_IDLE || (c->state == CS_READ_HEAD && (!c->in || !bl_buf_len(c->in))))
            client_close(c);
        else if (c->req && c->req->state == RS_DROP_BODY)
            drop_body_abort(c->req); /* answered already: only its unread body is left */
        else if (c->req)
            c->req->keep_alive = 0;
        c = next;
    }
}

void bl_http_close_all(struct bl_http_worker *w)
{
    while (w->clients)
        client_close(w->clients);
}

void bl_http_worker_tick(struct bl_http_worker *w)
{
    bl_freelist_tick(&w->request_cache, request_destroy);
}

void bl_http_worker_free(struct bl_http_worker *w)
{
    bl_freelist_drain(&w->request_cache, request_destroy);
    free(w->h2_rbuf);
    w->h2_rbuf = NULL;
    bl_access_logs_free(&w->logs);
    bl_upstream_worker_free(&w->up);
}

struct bl_client *bl_client_new_stream(struct bl_client *p, struct bl_h2_stream *st,
                                       struct bl_buf *head)
{
    struct bl_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    /* The connection's fd: $server_addr reads it, and it tells the client side from the
     * upstream one in send_head_and_body(); nothing closes or reads it through c. */
    c->io.fd = p->io.fd;
    c->io.handler = client_on_event;
    c->io.prefetch = client_prefetch;
    c->timer.handler = client_on_timer;
    c->defer.run = client_free;
    c->w = p->w;
    c->listen = p->listen;
    c->in = head;
    c->h2 = st;
    c->state = CS_READ_HEAD;
    c->rready = c->wready = 1;
    c->port = p->port;
    c->ip_len = p->ip_len;
    memcpy(c->ip, p->ip, sizeof(c->ip));
    c->addr = p->addr;
    c->pp = p->pp; /* borrowed: $proxy_protocol_addr, realip from the PROXY header */
    return c;
}

void bl_client_stream_abort(struct bl_client *c, const char *why)
{
    if (c->req)
        request_abort(c->req, 0, why);
    else
        client_close(c);
}

void bl_client_close(struct bl_client *c)
{
    client_close(c);
}

const char *bl_req_state_str(int state)
{
    static const char *const names[] = {"connect", "send_head", "body", "wait_head", "response",
                                        "local", "queued", "drop_body"};
    return state >= 0 && state < (int)BL_ARRAY_LEN(names) ? names[state] : "?";
}
