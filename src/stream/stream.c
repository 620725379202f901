/* The L4 proxy's sessions (stream.h): connect with failover, then a two-way relay. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/cidr.h"
#include "core/log.h"
#include "core/proxy_proto.h"
#include "core/tls_hello.h"
#include "core/sock.h"
#include "core/status.h"
#include "http/access_log.h"
#include "http/template.h"
#include "stream/preaccess.h"
#include "stream/stream.h"
#include "stream/stream_stats.h"
#include "stream/stream_map.h"
#include "stream/udp.h"

/* A direction that has carried STREAM_SPLICE_AFTER bytes through its buffer is a bulk transfer:
 * from then on it moves socket -> pipe -> socket with splice(2), which spares the two copies
 * through user space (bench/RESULTS.md, "L4 splice", has the measurements behind both numbers).
 * Short sessions never reach it, so they pay no pipe. -DSTREAM_SPLICE=0 builds without it
 * (to measure against). */
#ifndef STREAM_SPLICE
#define STREAM_SPLICE 1
#endif
#define STREAM_SPLICE_AFTER (64 * 1024)
/* Asked of F_SETPIPE_SZ (kernel memory, held only while the destination lags): 256 KiB moved
 * more per second than 64 KiB here and as much as 1 MiB, of which an unprivileged user gets
 * only 64 (pipe-user-pages-soft). Where the system refuses, the pipe's own size if that is
 * 64 KiB, else no splicing. */
#ifndef STREAM_PIPE_SIZE
#define STREAM_PIPE_SIZE (256 * 1024)
#endif

/* Direction 0: client to upstream; 1: upstream to client. */
struct dir {
    char *buf;
    uint32_t start, end;
    int pipe[2];                /* splice's pipe; valid while piping is set */
    uint32_t piped;             /* bytes in the pipe */
    uint32_t pipe_size;
    uint8_t piping;             /* this direction splices (see STREAM_SPLICE_AFTER) */
    uint8_t no_splice;          /* splice was refused here (EINVAL): copy through buf */
    uint8_t eof;                /* the source sent FIN */
    uint8_t shut;               /* the FIN went on to the destination */
    uint8_t delayed;            /* proxy_upload_rate / _download_rate: reading the source
                                 * waits for rate_timer */
    uint64_t bytes;
    uint64_t received;          /* bytes read from the source (the rate's count) */
    struct bl_timer rate_timer;
    struct bl_stream_session *s;
};

struct bl_stream_session {
    struct bl_io io;            /* the client */
    struct bl_timer timer;      /* proxy_timeout once connected */
    struct bl_deferred free_later;
    struct bl_stream_worker *w;
    const struct bl_stream_server *srv;
    struct bl_stream_session *next, *prev;
    struct bl_attempt a;
    union bl_sockaddr addr;
    char ip[BL_ADDR_STRLEN];
    char key[BL_ADDR_STRLEN + 16]; /* the hash key, for every pick of this session */
    size_t key_len;
    uint64_t start_us;
    uint64_t connected_ms;      /* the rates count from here */
    uint16_t server_port;
    struct dir d[2];
    uint8_t rready, wready, hup; /* the client's readiness (edge-triggered) */
    uint8_t connected;
    uint8_t closed;
    uint8_t in_loop;            /* the client's io is in the loop (early with proxy_protocol) */
    uint8_t preread_wait;       /* ssl_preread on: the ClientHello has not come yet */
    uint8_t var_depth;          /* maps being worked out (one inside another's source) */
    struct bl_tls_hello *hello; /* ssl_preread's findings (NULL: off) */
    struct bl_upstream_group *group; /* proxy_pass's group (a variable's: per session) */
    char var_buf[4][256];       /* map values while a template is evaluated */
    uint8_t pp_sent;            /* proxy_protocol on: the header's length (not the client's
                                 * bytes, so not in $bytes_received) */
    uint8_t pp_wait;            /* listen ... proxy_protocol: the header has not come yet */
    struct bl_pp_info *pp;      /* its addresses (NULL: none, UNKNOWN or LOCAL) */
    const struct bl_listen *listen;
    char peer_ip[BL_ADDR_STRLEN]; /* $realip_remote_addr: the peer, when realip replaced it */
    int status;                 /* $status: 200, 502, 503 */
    struct bl_upstream_try tries[8]; /* $upstream_addr, $upstream_connect_time */
    struct bl_limit_held held;  /* limit_conn counts (stream/preaccess.h) */
    uint8_t limit_conn_status;  /* $limit_conn_status */
    uint32_t ntries;
};

#define MAX_TRIES (sizeof(((struct bl_stream_session *)0)->tries) / sizeof(struct bl_upstream_try))

/* map targets (stream_map.h); other config variables (set, geo ...) have no value in stream. */
static const char *session_user_var(const struct bl_var_ctx *ctx, uint32_t idx,
                                    const char *name, size_t name_len, size_t *len)
{
    (void)name;
    (void)name_len;
    struct bl_stream_session *s = (struct bl_stream_session *)ctx->user_arg;
    const struct bl_config *cfg = s->w->cfg;
    /* a map whose source reads itself, directly or not, gets nothing past this depth */
    if (!cfg->var_maps || !cfg->var_maps[idx] || s->var_depth >= BL_ARRAY_LEN(s->var_buf))
        return NULL;
    char *buf = s->var_buf[s->var_depth++];
    const char *v = bl_stream_map_value(cfg->var_maps[idx], ctx, buf, sizeof(s->var_buf[0]), len);
    s->var_depth--;
    return v;
}

/* The variables of a session: its addresses, and the PROXY header's. */
static void session_var_ctx(const struct bl_stream_session *s, struct bl_var_ctx *v)
{
    memset(v, 0, sizeof(*v));
    v->client_ip = s->ip;
    v->client_ip_len = (uint32_t)strlen(s->ip);
    v->client_port = ntohs(s->addr.in.sin_port);
    v->realip_remote_addr = s->peer_ip[0] ? s->peer_ip : s->ip;
    v->realip_remote_addr_len = (uint32_t)strlen(v->realip_remote_addr);
    v->server_port = s->server_port;
    v->fd = s->io.fd;
    v->pp = s->pp;
    v->limit_conn_status = bl_limit_status_str(s->limit_conn_status);
    v->hello = s->hello;
    v->user_var = session_user_var;
    v->user_arg = s;
}

static void session_log(struct bl_stream_session *s)
{
    const struct bl_loc_conf *lc = &s->srv->log;
    if (!lc->naccess_logs || !s->w->logs)
        return;
    struct bl_var_resp resp = {
        .status = s->status,
        .body_bytes_sent = s->d[1].bytes,
        .bytes_sent = s->d[1].bytes,
        .request_length = s->d[0].bytes > s->pp_sent ? s->d[0].bytes - s->pp_sent : 0,
        .request_time_us = bl_clock_us - s->start_us,
        .tries = s->tries,
        .ntries = s->ntries,
    };
    struct bl_var_ctx v;
    session_var_ctx(s, &v);
    v.resp = &resp;
    bl_access_log_lines(s->w->logs, lc->access_logs, lc->naccess_logs, &v);
}

static void session_run(struct bl_stream_session *s);
static void connect_next(struct bl_stream_session *s);

static void unpipe(struct dir *x)
{
    close(x->pipe[0]);
    close(x->pipe[1]);
    x->piping = 0;
}

static void session_free(struct bl_deferred *d)
{
    struct bl_stream_session *s =
        (struct bl_stream_session *)((char *)d - offsetof(struct bl_stream_session, free_later));
    free(s->d[0].buf);
    free(s->d[1].buf);
    free(s->pp);
    free(s->hello);
    free(s);
}

static void session_close(struct bl_stream_session *s, int failed)
{
    if (s->closed)
        return;
    s->closed = 1;
    struct bl_stream_worker *w = s->w;
    if (!s->status)
        s->status = s->connected ? 200 : 502;
    if (s->ntries && s->tries[s->ntries - 1].connect_us == BL_TRY_NONE && s->connected)
        s->tries[s->ntries - 1].connect_us = 0;
    session_log(s);
    bl_stream_stats_close(w, s->listen, s->status, s->d[0].bytes, s->d[1].bytes, s->a.server,
                          s->d[0].bytes, s->d[1].bytes);
    bl_limit_conn_release(&s->held);
    bl_attempt_release(&s->a, failed, 0, s->d[1].bytes);
    bl_timer_cancel(w->loop, &s->timer);
    bl_timer_cancel(w->loop, &s->d[0].rate_timer);
    bl_timer_cancel(w->loop, &s->d[1].rate_timer);
    for (int i = 0; i < 2; i++)
        if (s->d[i].piping)
            unpipe(&s->d[i]);
    bl_loop_close(w->loop, &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->nsessions--;
    s->free_later.run = session_free;
    bl_loop_defer(w->loop, &s->free_later);
    if (w->on_closed)
        w->on_closed(w);
}

/* The hash key: the group's key evaluated for the session (conf.c allows only the variables a
 * connection has before its first byte: addresses, ports, the PROXY header's). */
static void make_key(struct bl_stream_session *s)
{
    const struct bl_upstream_group *g = s->group;
    s->key_len = 0;
    if (!g->hash_key)
        return;
    struct bl_var_ctx v;
    session_var_ctx(s, &v);
    size_t n = bl_template_eval(g->hash_key_compiled, &v, s->key, sizeof(s->key) - 1);
    s->key_len = n < sizeof(s->key) - 1 ? n : sizeof(s->key) - 1;
    s->key[s->key_len] = '\0';
}

static const char *key_of(const struct bl_stream_session *s)
{
    return s->group->hash_key ? s->key : NULL;
}

static void arm_idle(struct bl_stream_session *s)
{
    if (s->srv->conf.timeout)
        bl_timer_set(s->w->loop, &s->timer, bl_clock_ms + s->srv->conf.timeout);
}

/* ------------------------------------------------------------ connecting and failover */

/* The connect to s->a.server failed (kind): the next server when the policy allows, else the
 * session ends (the client sees its connection closed, as nginx's stream does). */
static void connect_failed(struct bl_stream_session *s, enum bl_attempt_error kind, int err)
{
    const struct bl_stream_conf *sc = &s->srv->conf;
    struct bl_upstream_server *old = s->a.server;
    bl_log(BL_LOG_ERROR, "connect() to upstream %s failed (%s) while connecting, client %s",
           old->name, kind == BL_AE_TIMEOUT ? "timed out" : strerror(err), s->ip);
    struct bl_retry_policy p = {
        .next_upstream = sc->next_upstream ? (BL_NEXT_ERROR | BL_NEXT_TIMEOUT) : BL_NEXT_OFF,
        .tries = sc->next_upstream_tries,
        .timeout_ms = sc->next_upstream_timeout,
        .start_us = s->start_us,
    };
    if (bl_attempt_failed(&s->a, s->w->up, &p, kind, 0, key_of(s), s->key_len, &s->addr.sa)
        == BL_OK) {
        bl_log(BL_LOG_WARN, "stream: trying upstream \"%s\" on %s after %s from %s",
               old->group->name, s->a.server->name,
               kind == BL_AE_TIMEOUT ? "a connect timeout" : "a connect error", old->name);
        connect_next(s);
        return;
    }
    session_close(s, 1);
}

/* proxy_protocol on: the header goes first on the new upstream connection, ahead of the
 * client's bytes in the client-to-upstream buffer (empty until now: nothing is read from the
 * client before the connect, and the buffer has room for a header, bl_stream_accept). */
static void proxy_protocol_header(struct bl_stream_session *s)
{
    union bl_sockaddr dst;
    socklen_t len = sizeof(dst);
    if (getsockname(s->io.fd, &dst.sa, &len) != 0)
        dst.sa.sa_family = AF_UNSPEC;
    struct dir *x = &s->d[0];
    size_t n = bl_pp_write((int)s->srv->conf.pp_version, &s->addr.sa, &dst.sa,
                           x->buf + x->end, BL_PP_WRITE_MAX);
    x->end += (uint32_t)n;
    s->pp_sent = (uint8_t)n;
}

static void upstream_on_io(struct bl_upconn *u)
{
    struct bl_stream_session *s = u->owner;
    if (!s->connected) {
        if (!u->wready && !u->rready && !u->hup)
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            connect_failed(s, BL_AE_ERROR, err);
            return;
        }
        u->connecting = 0;
        s->connected = 1;
        s->connected_ms = bl_clock_ms;
        s->rready = s->wready = 1;
        bl_timer_cancel(s->w->loop, &u->timer);
        bl_attempt_answered(&s->a, 0);
        if (s->ntries) {
            uint64_t us = bl_clock_us - s->a.start_us;
            s->tries[s->ntries - 1].connect_us = us < BL_TRY_NONE ? (uint32_t)us : BL_TRY_NONE - 1;
        }
        bl_attempt_outcome(&s->a, 0, 0);
        if (s->srv->conf.pp_send)
            proxy_protocol_header(s);
        /* Only now is the client read: until here a retry could go elsewhere unseen (a
         * PROXY header was read before, and nothing after it). */
        if (!s->in_loop && bl_loop_add(s->w->loop, &s->io) != BL_OK) {
            session_close(s, 0);
            return;
        }
        s->in_loop = 1;
        arm_idle(s);
    }
    session_run(s);
}

static void upstream_on_timeout(struct bl_upconn *u)
{
    struct bl_stream_session *s = u->owner;
    if (!s->connected)
        connect_failed(s, BL_AE_TIMEOUT, 0);
}

static void connect_next(struct bl_stream_session *s)
{
    if (s->ntries < MAX_TRIES)
        s->tries[s->ntries++] = (struct bl_upstream_try){s->a.server->name, BL_TRY_NONE,
                                                         BL_TRY_NONE, BL_TRY_NONE, 0};
    if (bl_attempt_connect(&s->a, s->w->up, 1, s, upstream_on_io, upstream_on_timeout)
        != BL_OK) {
        if (errno == ENOMEM) {
            session_close(s, 0);
            return;
        }
        connect_failed(s, BL_AE_ERROR, errno);
        return;
    }
    struct bl_upconn *u = s->a.conn;
    if (s->srv->conf.connect_timeout)
        bl_timer_set(s->w->loop, &u->timer, bl_clock_ms + s->srv->conf.connect_timeout);
    if (!u->connecting)
        upstream_on_io(u);
}

/* ------------------------------------------------------------ relay */

/* proxy_upload_rate (d 0) / proxy_download_rate (d 1) as nginx's stream proxy counts them:
 * since the connect, at most rate bytes per second plus one second's worth. How much x's
 * source may be read now (room when unlimited); 0 after pausing the reading until the
 * rate allows more (x->delayed, rate_timer). */
static size_t rate_allows(struct bl_stream_session *s, struct dir *x, uint64_t rate, size_t room)
{
    if (!rate)
        return room;
    uint64_t allowed = rate * (bl_clock_ms - s->connected_ms + 1000) / 1000;
    if (allowed > x->received) {
        uint64_t left = allowed - x->received;
        return left < room ? (size_t)left : room;
    }
    x->delayed = 1;
    bl_timer_set(s->w->loop, &x->rate_timer,
                 bl_clock_ms + (x->received - allowed) * 1000 / rate + 1);
    return 0;
}

/* After n bytes were read at a limited rate, the reading pauses n / rate seconds (nginx), so
 * the source is read in buffer-sized pieces rather than a trickle of small ones. */
static void rate_after_read(struct bl_stream_session *s, struct dir *x, uint64_t rate, size_t n)
{
    uint64_t ms = (uint64_t)n * 1000 / rate;
    if (!ms)
        return;
    x->delayed = 1;
    bl_timer_set(s->w->loop, &x->rate_timer, bl_clock_ms + ms);
}

static void on_rate_timer(struct bl_timer *t)
{
    struct dir *x = (struct dir *)((char *)t - offsetof(struct dir, rate_timer));
    x->delayed = 0;
    session_run(x->s);
}

/* Switches x to splicing once it has proved a bulk transfer, its buffer is empty (so the
 * order of bytes holds) and no rate limit needs to see each read. */
static void maybe_pipe(struct dir *x, uint64_t rate)
{
    if (!STREAM_SPLICE || x->no_splice || rate || x->eof || x->start != x->end ||
        x->received < STREAM_SPLICE_AFTER)
        return;
    if (pipe2(x->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        x->no_splice = 1;   /* out of fds: the buffer still works */
        return;
    }
    int got = fcntl(x->pipe[1], F_SETPIPE_SZ, STREAM_PIPE_SIZE);
    if (got < 0)
        got = fcntl(x->pipe[1], F_GETPIPE_SZ);
    x->piping = 1;
    if (got < 65536) {
        /* Past pipe-user-pages-soft a pipe gets two pages: slower than the buffer. */
        unpipe(x);
        x->no_splice = 1;
        return;
    }
    x->pipe_size = (uint32_t)got;
    x->piped = 0;
}

/* Half-close passes through: once the source sent FIN and all its bytes went on, the
 * destination reads EOF; the other way stays open. */
static void pass_fin(struct dir *x, int dst, int *moved)
{
    if (x->eof && !x->shut && x->end == x->start && !x->piped) {
        shutdown(dst, SHUT_WR);
        x->shut = 1;
        *moved = 1;
    }
}

/* pump()'s splice half: src -> x's pipe -> dst. EAGAIN from the read splice is either an
 * empty socket or a full pipe (the pipe counts slots, not bytes); only with an empty pipe does
 * it mean the socket's edge is spent, as HAProxy reads it. */
static int pump_pipe(struct bl_stream_session *s, int d, int src, uint8_t *src_rready, int dst,
                     uint8_t *dst_wready, int *moved)
{
    struct dir *x = &s->d[d];
    const unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
    for (;;) {
        int progress = 0;
        if (x->piped && *dst_wready) {
            ssize_t n = splice(x->pipe[0], NULL, dst, NULL, x->piped, flags);
            if (n > 0) {
                if ((uint32_t)n < x->piped)
                    *dst_wready = 0;
                x->piped -= (uint32_t)n;
                x->bytes += (uint64_t)n;
                progress = 1;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                *dst_wready = 0;
            } else if (n < 0 && errno != EINTR) {
                bl_log(BL_LOG_INFO, "stream: splice() to %s failed (%s), client %s",
                       d ? "client" : s->a.server->name, strerror(errno), s->ip);
                session_close(s, d == 0);
                return BL_ERR;
            }
        }
        if (!x->eof && *src_rready && x->piped < x->pipe_size) {
            ssize_t n = splice(src, NULL, x->pipe[1], NULL, x->pipe_size - x->piped, flags);
            if (n > 0) {
                x->piped += (uint32_t)n;
                x->received += (uint64_t)n;
                progress = 1;
            } else if (n == 0) {
                x->eof = 1;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!x->piped)
                    *src_rready = 0;
            } else if (errno == EINVAL && !x->piped) {
                unpipe(x);      /* a source splice cannot read: copy through buf */
                x->no_splice = 1;
                return BL_OK;
            } else if (errno != EINTR) {
                bl_log(BL_LOG_INFO, "stream: splice() from %s failed (%s), client %s",
                       d ? s->a.server->name : "client", strerror(errno), s->ip);
                session_close(s, d == 1);
                return BL_ERR;
            }
        }
        if (!progress)
            return BL_OK;
        *moved = 1;
    }
}

/* Moves what it can in direction d from src to dst. Returns BL_OK, or BL_ERR after closing
 * the session (a read or write error on either side). */
static int pump(struct bl_stream_session *s, int d, int src, uint8_t *src_rready,
                uint8_t src_hup, int dst, uint8_t *dst_wready, int *moved)
{
    struct dir *x = &s->d[d];
    uint32_t size = (uint32_t)s->srv->conf.buffer_size;
    uint64_t rate = d ? s->srv->conf.download_rate : s->srv->conf.upload_rate;
    if (!x->piping)
        maybe_pipe(x, rate);
    if (x->piping) {
        if (pump_pipe(s, d, src, src_rready, dst, dst_wready, moved) != BL_OK)
            return BL_ERR;
        if (x->piping) {
            pass_fin(x, dst, moved);
            return BL_OK;
        }
    }
    for (;;) {
        int progress = 0;
        if (x->end > x->start && *dst_wready) {
            ssize_t n = send(dst, x->buf + x->start, x->end - x->start, MSG_NOSIGNAL);
            if (n >= 0) {
                if ((uint32_t)n < x->end - x->start)
                    *dst_wready = 0;
                x->start += (uint32_t)n;
                x->bytes += (uint64_t)n;
                progress = n > 0;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                *dst_wready = 0;
            } else if (errno != EINTR) {
                bl_log(BL_LOG_INFO, "stream: send() to %s failed (%s), client %s",
                       d ? "client" : s->a.server->name, strerror(errno), s->ip);
                session_close(s, d == 0);
                return BL_ERR;
            }
            if (x->start == x->end)
                x->start = x->end = 0;
        }
        size_t want;
        if (!x->eof && *src_rready && x->end < size && !x->delayed &&
            (want = rate_allows(s, x, rate, size - x->end)) > 0) {
            ssize_t n = recv(src, x->buf + x->end, want, 0);
            if (n > 0) {
                /* A short read drained the socket: wait for the next edge, unless the peer
                 * closed (then read on until recv says so). */
                if ((size_t)n < want && !src_hup)
                    *src_rready = 0;
                x->end += (uint32_t)n;
                x->received += (uint64_t)n;
                if (rate)
                    rate_after_read(s, x, rate, (size_t)n);
                progress = 1;
            } else if (n == 0) {
                x->eof = 1;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                *src_rready = 0;
            } else if (errno != EINTR) {
                bl_log(BL_LOG_INFO, "stream: recv() from %s failed (%s), client %s",
                       d ? s->a.server->name : "client", strerror(errno), s->ip);
                session_close(s, d == 1);
                return BL_ERR;
            }
        }
        if (!progress)
            break;
        *moved = 1;
    }
    pass_fin(x, dst, moved);
    return BL_OK;
}

static void session_run(struct bl_stream_session *s)
{
    if (!s->connected || s->closed)
        return;
    struct bl_upconn *u = s->a.conn;
    int moved = 0;
    if (pump(s, 0, s->io.fd, &s->rready, s->hup, u->io.fd, &u->wready, &moved) != BL_OK)
        return;
    if (pump(s, 1, u->io.fd, &u->rready, u->hup, s->io.fd, &s->wready, &moved) != BL_OK)
        return;
    if (s->d[0].shut && s->d[1].shut) {
        session_close(s, 0);
        return;
    }
    if (moved)
        arm_idle(s);
}

static void session_begin(struct bl_stream_session *s);
static void read_proxy_protocol(struct bl_stream_session *s, uint32_t ev);
static void preread(struct bl_stream_session *s, uint32_t ev);
static void session_pick(struct bl_stream_session *s);

static void client_on_io(struct bl_io *io, uint32_t ev)
{
    struct bl_stream_session *s = (struct bl_stream_session *)io;
    if (bl_unlikely(s->pp_wait || s->preread_wait)) {
        if (ev & BL_EV_HUP)
            s->hup = 1;
        if (!(ev & (BL_EV_READ | BL_EV_HUP | BL_EV_ERROR)))
            return;
        if (s->pp_wait)
            read_proxy_protocol(s, ev);
        else
            preread(s, ev);
        return;
    }
    if (ev & (BL_EV_READ | BL_EV_ERROR))
        s->rready = 1;
    if (ev & BL_EV_HUP)
        s->hup = 1;
    if (ev & (BL_EV_WRITE | BL_EV_ERROR))
        s->wready = 1;
    session_run(s);
}

static void on_idle_timeout(struct bl_timer *t)
{
    struct bl_stream_session *s =
        (struct bl_stream_session *)((char *)t - offsetof(struct bl_stream_session, timer));
    if (s->preread_wait) {
        bl_log(BL_LOG_INFO, "stream: client %s timed out (preread_timeout) while sending its "
               "TLS ClientHello", s->ip);
        s->status = 400;
        session_close(s, 0);
        return;
    }
    if (s->pp_wait) {
        bl_log(BL_LOG_INFO, "stream: client %s timed out (proxy_protocol_timeout) while sending "
               "the PROXY protocol header", s->ip);
        s->status = 400;
        session_close(s, 0);
        return;
    }
    bl_log(BL_LOG_INFO, "stream: proxy_timeout (%llu ms) without data, closing client %s",
           (unsigned long long)s->srv->conf.timeout, s->ip);
    session_close(s, 0);
}

/* ------------------------------------------------------------ PROXY protocol */

/* nginx's stream realip: behind a trusted peer (set_real_ip_from), the header's source is the
 * session's address for everything after it: logs, hash keys, the header sent upstream. */
static void realip(struct bl_stream_session *s)
{
    const struct bl_loc_conf *lc = &s->srv->log;
    if (!s->pp || !lc->nrealip_from)
        return;
    struct bl_ipaddr peer = {0};
    if (s->addr.sa.sa_family == AF_INET) {
        peer.family = AF_INET;
        memcpy(peer.a, &s->addr.in.sin_addr, 4);
    } else if (s->addr.sa.sa_family == AF_INET6) {
        peer.family = AF_INET6;
        memcpy(peer.a, &s->addr.in6.sin6_addr, 16);
    } else {
        return;
    }
    int trusted = 0;
    for (uint32_t i = 0; i < lc->nrealip_from && !trusted; i++)
        trusted = bl_cidr_match(&lc->realip_from[i], &peer);
    if (!trusted)
        return;
    memcpy(s->peer_ip, s->ip, sizeof(s->peer_ip));
    memset(&s->addr, 0, sizeof(s->addr));
    if (s->pp->family == AF_INET) {
        s->addr.in.sin_family = AF_INET;
        memcpy(&s->addr.in.sin_addr, s->pp->src, 4);
        s->addr.in.sin_port = htons(s->pp->src_port);
    } else {
        s->addr.in6.sin6_family = AF_INET6;
        memcpy(&s->addr.in6.sin6_addr, s->pp->src, 16);
        s->addr.in6.sin6_port = htons(s->pp->src_port);
    }
    snprintf(s->ip, sizeof(s->ip), "%s", s->pp->src_ip);
}

/* listen ... proxy_protocol: the header first, within proxy_protocol_timeout; nothing after it
 * is read before the upstream is connected. A malformed header ends the session ($status 400)
 * with nginx's "broken header" line. */
static void read_proxy_protocol(struct bl_stream_session *s, uint32_t ev)
{
    const char *reason;
    char seen[260];
    int rc = bl_pp_read(s->io.fd, s->pp, &reason, seen, sizeof(seen));
    if (rc == BL_AGAIN && !(ev & BL_EV_HUP))
        return;
    if (rc != 1) {
        if (rc == BL_ERR)
            bl_log(BL_LOG_ERROR, "stream: %s: \"%s\" while reading PROXY protocol, client: %s, "
                   "server: %s", reason, seen, s->ip, s->listen->text);
        else
            bl_log(BL_LOG_INFO, "stream: client %s closed the connection before the end of the "
                   "PROXY protocol header", s->ip);
        s->status = 400;
        session_close(s, 0);
        return;
    }
    s->pp_wait = 0;
    bl_timer_cancel(s->w->loop, &s->timer);
    if (!s->pp->has_addr) { /* UNKNOWN, LOCAL: the connection's own addresses stand */
        free(s->pp);
        s->pp = NULL;
    }
    realip(s);
    session_begin(s);
}

/* ------------------------------------------------------------ accept */

/* ssl_preread: the ClientHello is peeked at, never taken, so the bytes reach the upstream as
 * they came. Bytes that are not a ClientHello leave the variables empty (nginx); a client that
 * closes before the hello is complete is served with what came. */
static void preread(struct bl_stream_session *s, uint32_t ev)
{
    uint8_t buf[BL_TLS_HELLO_MAX];
    ssize_t n;
    do
        n = recv(s->io.fd, buf, sizeof(buf), MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        if (n < 0)
            bl_log(BL_LOG_INFO, "stream: recv() failed (%s) while prereading, client %s",
                   strerror(errno), s->ip);
        s->status = 400;
        session_close(s, 0);
        return;
    }
    if (bl_tls_hello_parse(buf, (size_t)n, s->hello) == -2 && !(ev & BL_EV_HUP))
        return;
    s->preread_wait = 0;
    bl_timer_cancel(s->w->loop, &s->timer);
    session_pick(s);
}

/* The group proxy_pass names: its own, or the value of its variables naming one by its name
 * (an upstream block, or a "HOST:PORT" proxy_pass's implied group), ignoring case as nginx. */
static struct bl_upstream_group *session_group(struct bl_stream_session *s)
{
    const struct bl_stream_server *srv = s->srv;
    if (srv->upstream)
        return srv->upstream;
    struct bl_var_ctx v;
    session_var_ctx(s, &v);
    char name[256];
    size_t n = bl_template_eval(srv->pass_tpl, &v, name, sizeof(name));
    if (n >= sizeof(name))
        n = 0;
    name[n] = '\0';
    const struct bl_config *cfg = s->w->cfg;
    for (uint32_t i = 0; n && i < cfg->ngroups; i++)
        if (strcasecmp(cfg->groups[i]->name, name) == 0)
            return cfg->groups[i];
    bl_log(BL_LOG_ERROR, "stream: no upstream \"%s\" (proxy_pass %s in %s:%d), client %s",
           name, srv->pass, srv->file, srv->pass_line, s->ip);
    return NULL;
}

/* After the access checks: ssl_preread when asked (nginx's preread phase comes after them),
 * then the upstream. */
static void session_begin(struct bl_stream_session *s)
{
    const struct bl_stream_server *srv = s->srv;
    /* nginx's preaccess and access phases, after realip (stream/preaccess.h) */
    if (bl_stream_preaccess(srv, &s->addr, s->ip, s->server_port, &s->held,
                            &s->limit_conn_status, &s->status) != BL_OK) {
        session_close(s, 0);
        return;
    }
    if (srv->conf.ssl_preread) {
        s->hello = calloc(1, sizeof(*s->hello));
        if (!s->hello || (!s->in_loop && bl_loop_add(s->w->loop, &s->io) != BL_OK)) {
            bl_log(BL_LOG_ERROR, "stream: out of memory, closing client %s", s->ip);
            session_close(s, 0);
            return;
        }
        s->in_loop = 1;
        s->preread_wait = 1;
        if (srv->conf.preread_timeout)
            bl_timer_set(s->w->loop, &s->timer, bl_clock_ms + srv->conf.preread_timeout);
        preread(s, 0);
        return;
    }
    session_pick(s);
}

/* Picks the first server (of proxy_pass's group) and connects to it. */
static void session_pick(struct bl_stream_session *s)
{
    if (!(s->group = session_group(s))) {
        s->status = 502;
        session_close(s, 0);
        return;
    }
    make_key(s);
    if (bl_attempt_first(&s->a, s->w->up, s->group, key_of(s), s->key_len, &s->addr.sa)
        != BL_OK) {
        bl_log(BL_LOG_ERROR, "no live upstreams in \"%s\": every server is down, full or "
               "ejected, client %s", s->group->name, s->ip);
        s->status = 503;
        s->tries[0] = (struct bl_upstream_try){s->group->name, BL_TRY_NONE, BL_TRY_NONE,
                                               BL_TRY_NONE, 0};
        s->ntries = 1;
        session_close(s, 0);
        return;
    }
    connect_next(s);
}

void bl_stream_accept(struct bl_stream_worker *sw, const struct bl_listen *listen, int fd,
                      const struct sockaddr *peer, socklen_t peerlen)
{
    const struct bl_stream_server *srv = listen->stream;
    struct bl_stream_session *s = calloc(1, sizeof(*s));
    uint32_t size = (uint32_t)srv->conf.buffer_size;
    if (s) {
        /* room for a PROXY header to the upstream whatever proxy_buffer_size is */
        s->d[0].buf = malloc(size > BL_PP_WRITE_MAX ? size : BL_PP_WRITE_MAX);
        s->d[1].buf = malloc(size);
    }
    if (!s || !s->d[0].buf || !s->d[1].buf) {
        bl_log(BL_LOG_ERROR, "stream: out of memory, closing a client of %s", listen->text);
        if (s) {
            free(s->d[0].buf);
            free(s->d[1].buf);
        }
        free(s);
        close(fd);
        return;
    }
    s->io.fd = fd;
    s->io.handler = client_on_io;
    s->timer.handler = on_idle_timeout;
    for (int i = 0; i < 2; i++) {
        s->d[i].rate_timer.handler = on_rate_timer;
        s->d[i].s = s;
    }
    s->w = sw;
    s->srv = srv;
    s->start_us = bl_clock_us;
    if (peerlen > sizeof(s->addr))
        peerlen = sizeof(s->addr);
    memcpy(&s->addr, peer, peerlen);
    bl_addr_format_ip(peer, s->ip, sizeof(s->ip));
    s->server_port = listen->port;
    s->listen = listen;
    bl_stream_stats_open(sw, listen);
    s->next = sw->sessions;
    if (sw->sessions)
        sw->sessions->prev = s;
    sw->sessions = s;
    sw->nsessions++;
    if (listen->proxy_protocol) {
        /* Read before the upstream is picked: the header's address may be the key. */
        s->pp = calloc(1, sizeof(*s->pp));
        if (!s->pp || bl_loop_add(sw->loop, &s->io) != BL_OK) {
            bl_log(BL_LOG_ERROR, "stream: out of memory, closing a client of %s", listen->text);
            session_close(s, 0);
            return;
        }
        s->in_loop = 1;
        s->pp_wait = 1;
        if (srv->conf.pp_timeout)
            bl_timer_set(sw->loop, &s->timer, bl_clock_ms + srv->conf.pp_timeout);
        return;
    }
    session_begin(s);
}

void bl_stream_close_all(struct bl_stream_worker *sw)
{
    bl_stream_udp_close_all(sw);
    while (sw->sessions)
        session_close(sw->sessions, 0);
}
