/* UDP sessions of a stream worker (udp.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/murmur.h"
#include "core/sock.h"
#include "core/status.h"
#include "http/access_log.h"
#include "http/template.h"
#include "stream/preaccess.h"
#include "stream/stream.h"
#include "stream/stream_stats.h"
#include "stream/udp.h"

#define UDP_BUCKETS    4096u           /* per worker; chains stay short at worker_connections */
#define UDP_MAX_DGRAM  65536u
#define UDP_READ_BATCH 64
#define UDP_MAX_TRIES  8

struct udp_session {
    struct bl_io up;                  /* connected socket to the server; first member */
    struct bl_timer timer;            /* proxy_timeout */
    struct bl_deferred free_later;
    struct bl_stream_worker *w;
    const struct bl_stream_server *srv;
    const struct bl_listen *listen;
    struct udp_session *hnext;        /* bucket chain; unlinked: not in the table */
    struct udp_session *next, *prev;  /* the worker's UDP sessions */
    struct bl_attempt a;
    int lfd;                          /* dup of the listening socket: answers leave from it */
    union bl_sockaddr addr;
    socklen_t addrlen;
    uint32_t bucket;
    char ip[BL_ADDR_STRLEN];
    char key[BL_ADDR_STRLEN + 16];
    size_t key_len;
    uint64_t start_us;
    uint64_t bytes_in, bytes_out;     /* from the client, to the client */
    uint64_t up_sent;                 /* to the server(s) */
    uint64_t requests, responses;     /* datagrams each way */
    struct bl_limit_held limits;      /* limit_conn counts (stream/preaccess.h) */
    uint8_t limit_conn_status;        /* $limit_conn_status */
    char *held;                       /* last datagram until the first answer (resend) */
    uint32_t held_len;
    uint8_t linked, closed;
    int status;
    struct bl_upstream_try tries[UDP_MAX_TRIES];
    uint32_t ntries;
};

/* The worker's table and receive buffer, made with its first UDP datagram. */
struct bl_udp_table {
    struct udp_session *buckets[UDP_BUCKETS];
    struct udp_session *all;
    uint32_t n;
    uint64_t dropped;                 /* datagrams dropped for want of room */
    uint64_t dropped_logged_ms;
    char buf[UDP_MAX_DGRAM];
};

static struct bl_udp_table *table_get(struct bl_stream_worker *sw)
{
    if (!sw->udp)
        sw->udp = calloc(1, sizeof(*sw->udp));
    return sw->udp;
}

/* Address and port only (what addr_eq compares; not IPv6 flow labels). */
static uint32_t addr_hash(const struct bl_listen *l, const union bl_sockaddr *a)
{
    unsigned char k[16 + 2 + sizeof(void *)];
    size_t n;
    /* a is a recvmsg() source address, always filled: the analyzer cannot see the kernel */
    /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    if (a->sa.sa_family == AF_INET) {
        memcpy(k, &a->in.sin_addr, 4);
        memcpy(k + 4, &a->in.sin_port, 2);
        n = 6;
    } else {
        memcpy(k, &a->in6.sin6_addr, 16);
        memcpy(k + 16, &a->in6.sin6_port, 2);
        n = 18;
    }
    memcpy(k + n, &l, sizeof(l));
    return bl_murmur2(k, n + sizeof(l)) % UDP_BUCKETS;
}

static int addr_eq(const union bl_sockaddr *a, const union bl_sockaddr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return 0;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return a->in6.sin6_port == b->in6.sin6_port &&
           memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr)) == 0;
}

static void unlink_session(struct udp_session *s)
{
    if (!s->linked)
        return;
    struct udp_session **pp = &s->w->udp->buckets[s->bucket];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = s->hnext;
    s->linked = 0;
}

static void session_log(struct udp_session *s)
{
    const struct bl_loc_conf *lc = &s->srv->log;
    if (!lc->naccess_logs || !s->w->logs)
        return;
    struct bl_var_resp resp = {
        .status = s->status,
        .body_bytes_sent = s->bytes_out,
        .bytes_sent = s->bytes_out,
        .request_length = s->bytes_in,
        .request_time_us = bl_clock_us - s->start_us,
        .tries = s->tries,
        .ntries = s->ntries,
    };
    struct bl_var_ctx v = {
        .client_ip = s->ip,
        .client_ip_len = (uint32_t)strlen(s->ip),
        .client_port = ntohs(s->addr.in.sin_port),
        .server_port = s->listen->port,
        .fd = s->lfd,
        .resp = &resp,
        .limit_conn_status = bl_limit_status_str(s->limit_conn_status),
    };
    bl_access_log_lines(s->w->logs, lc->access_logs, lc->naccess_logs, &v);
}

static void session_free(struct bl_deferred *d)
{
    struct udp_session *s =
        (struct udp_session *)((char *)d - offsetof(struct udp_session, free_later));
    free(s->held);
    free(s);
}

static void upstream_close(struct udp_session *s);

/* Ends the session: status as given (0: 200), failed tells passive health. */
static void session_close(struct udp_session *s, int status, int failed)
{
    if (s->closed)
        return;
    s->closed = 1;
    struct bl_stream_worker *w = s->w;
    s->status = status ? status : 200;
    session_log(s);
    bl_stream_stats_close(w, s->listen, s->status, s->bytes_in, s->bytes_out, s->a.server,
                          s->up_sent, s->bytes_out);
    bl_limit_conn_release(&s->limits);
    if (s->a.server)
        bl_attempt_release(&s->a, failed, 0, s->bytes_out);
    bl_timer_cancel(w->loop, &s->timer);
    upstream_close(s);
    if (s->lfd >= 0)
        close(s->lfd);
    s->lfd = -1;
    unlink_session(s);
    struct bl_udp_table *t = w->udp;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->all = s->next;
    if (s->next)
        s->next->prev = s->prev;
    t->n--;
    w->nsessions--;
    s->free_later.run = session_free;
    bl_loop_defer(w->loop, &s->free_later);
    if (w->on_closed)
        w->on_closed(w);
}

/* nginx's rule (ngx_stream_proxy_test_finalize): done once proxy_requests datagrams came (when
 * set) and proxy_responses answers per datagram came back (when set). */
static int session_done(const struct udp_session *s)
{
    const struct bl_stream_conf *c = &s->srv->conf;
    if (c->requests && s->requests < c->requests)
        return 0;
    if (c->responses == BL_UDP_RESPONSES_ANY)
        return 0;
    return s->responses >= c->responses * s->requests;
}

static void arm_idle(struct udp_session *s)
{
    if (s->srv->conf.timeout)
        bl_timer_set(s->w->loop, &s->timer, bl_clock_ms + s->srv->conf.timeout);
}

/* The hash key: the group's key with $remote_addr, $remote_port and $server_port replaced
 * (the same substitution as TCP sessions; conf.c allows no other variable in a stream key). */
static void make_key(struct udp_session *s)
{
    const char *k = s->srv->upstream->hash_key;
    s->key_len = 0;
    if (!k)
        return;
    char port[8], sport[8];
    snprintf(port, sizeof(port), "%u", (unsigned)ntohs(s->addr.in.sin_port));
    snprintf(sport, sizeof(sport), "%u", (unsigned)s->listen->port);
    static const char *const names[] = {"remote_addr", "remote_port", "server_port"};
    const char *vals[] = {s->ip, port, sport};
    size_t n = 0, cap = sizeof(s->key) - 1;
    for (const char *p = k; *p && n < cap;) {
        int done = 0;
        if (*p == '$') {
            int brace = p[1] == '{';
            for (int i = 0; i < 3 && !done; i++) {
                size_t ln = strlen(names[i]);
                if (strncmp(p + 1 + brace, names[i], ln) == 0) {
                    size_t vl = strlen(vals[i]);
                    if (vl > cap - n)
                        vl = cap - n;
                    memcpy(s->key + n, vals[i], vl);
                    n += vl;
                    p += 1 + (size_t)brace * 2 + ln;
                    done = 1;
                }
            }
        }
        if (!done)
            s->key[n++] = *p++;
    }
    s->key[n] = '\0';
    s->key_len = n;
}

static const char *key_of(const struct udp_session *s)
{
    return s->srv->upstream->hash_key ? s->key : NULL;
}

static void upstream_on_io(struct bl_io *io, uint32_t ev);

/* A connected socket to s->a.server. BL_OK, or BL_ERR with errno. */
static int upstream_open(struct udp_session *s)
{
    const struct bl_upstream_server *srv = s->a.server;
    if (s->ntries < UDP_MAX_TRIES)
        s->tries[s->ntries++] = (struct bl_upstream_try){srv->name, 0, BL_TRY_NONE,
                                                         BL_TRY_NONE, 0};
    s->a.start_us = bl_clock_us;
    int fd = socket(srv->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return BL_ERR;
    if (connect(fd, (const struct sockaddr *)&srv->addr, srv->addrlen) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return BL_ERR;
    }
    s->up.fd = fd;
    s->up.handler = upstream_on_io;
    if (s->w->up && s->w->up->stats)
        bl_stat_add(&s->w->up->stats[srv->id].conns, 1);
    if (bl_loop_add(s->w->loop, &s->up) != BL_OK) {
        int e = errno;
        close(fd);
        s->up.fd = -1;
        errno = e;
        return BL_ERR;
    }
    return BL_OK;
}

static void upstream_close(struct udp_session *s)
{
    if (s->up.fd >= 0) {
        bl_loop_close(s->w->loop, &s->up);
        if (s->w->up && s->w->up->stats && s->a.server)
            bl_stat_sub(&s->w->up->stats[s->a.server->id].conns, 1);
    }
    s->up.fd = -1;
}

/* Sends one datagram to the server: 0, or the errno of a failure that blames the server. A
 * full socket buffer drops the datagram, as any UDP hop may. */
static int upstream_send_raw(struct udp_session *s, const char *data, size_t len)
{
    for (;;) {
        ssize_t n = send(s->up.fd, data, len, MSG_NOSIGNAL);
        if (n >= 0) {
            s->up_sent += (uint64_t)n;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            return 0;
        return errno;
    }
}

/* The server failed (ICMP error, or a local error sending to it): before the first answer the
 * held datagram goes to the next server when the policy allows; else the session ends. */
static void upstream_failed(struct udp_session *s, int err)
{
    const struct bl_stream_conf *sc = &s->srv->conf;
    struct bl_upstream_server *old = s->a.server;
    bl_log(BL_LOG_ERROR, "udp: upstream %s failed (%s), client %s", old->name, strerror(err),
           s->ip);
    upstream_close(s);
    if (!s->responses && s->held) {
        struct bl_retry_policy p = {
            .next_upstream = sc->next_upstream ? (BL_NEXT_ERROR | BL_NEXT_TIMEOUT) : BL_NEXT_OFF,
            .tries = sc->next_upstream_tries,
            .timeout_ms = sc->next_upstream_timeout,
            .start_us = s->start_us,
        };
        while (bl_attempt_failed(&s->a, s->w->up, &p, BL_AE_ERROR, 0, key_of(s), s->key_len,
                                 &s->addr.sa) == BL_OK) {
            bl_log(BL_LOG_WARN, "udp: trying upstream \"%s\" on %s after an error from %s",
                   old->group->name, s->a.server->name, old->name);
            int e = upstream_open(s) == BL_OK ? upstream_send_raw(s, s->held, s->held_len)
                                              : errno;
            if (!e)
                return;
            bl_log(BL_LOG_ERROR, "udp: upstream %s failed (%s), client %s", s->a.server->name,
                   strerror(e), s->ip);
            old = s->a.server;
            upstream_close(s);
        }
        session_close(s, 502, 1);
        return;
    }
    session_close(s, 502, 1);
}

/* upstream_send_raw, handling a failure. BL_OK; BL_ERR after handling it (the session may
 * have moved to another server, or be closed). */
static int upstream_send(struct udp_session *s, const char *data, size_t len)
{
    int e = upstream_send_raw(s, data, len);
    if (!e)
        return BL_OK;
    upstream_failed(s, e);
    return BL_ERR;
}

static void upstream_on_io(struct bl_io *io, uint32_t ev)
{
    struct udp_session *s = (struct udp_session *)io;
    BL_UNUSED(ev);
    char *buf = s->w->udp->buf;
    /* Edge-triggered: read until EAGAIN (bounded by the socket's receive buffer). */
    while (!s->closed) {
        ssize_t n = recv(io->fd, buf, UDP_MAX_DGRAM, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                upstream_failed(s, errno);
            return;
        }
        if (!s->responses) {
            bl_attempt_answered(&s->a, 0);
            bl_attempt_outcome(&s->a, 0, 0);
            if (s->ntries) {
                uint64_t us = bl_clock_us - s->a.start_us;
                s->tries[s->ntries - 1].header_us = us < BL_TRY_NONE ? (uint32_t)us
                                                                     : BL_TRY_NONE - 1;
            }
            free(s->held);
            s->held = NULL;
        }
        s->responses++;
        if (sendto(s->lfd, buf, (size_t)n, MSG_NOSIGNAL, &s->addr.sa, s->addrlen) >= 0)
            s->bytes_out += (uint64_t)n;
        arm_idle(s);
        if (session_done(s)) {
            session_close(s, 200, 0);
            return;
        }
    }
}

static void on_idle_timeout(struct bl_timer *t)
{
    struct udp_session *s =
        (struct udp_session *)((char *)t - offsetof(struct udp_session, timer));
    const struct bl_stream_conf *c = &s->srv->conf;
    if (c->responses == BL_UDP_RESPONSES_ANY || s->responses >= c->responses * s->requests) {
        session_close(s, 200, 0);
        return;
    }
    bl_log(BL_LOG_ERROR, "udp: upstream %s timed out (%llu of %llu answers in %llu ms), "
           "client %s", s->a.server ? s->a.server->name : "?",
           (unsigned long long)s->responses, (unsigned long long)c->responses * s->requests,
           (unsigned long long)c->timeout, s->ip);
    if (!s->responses)
        bl_attempt_outcome(&s->a, 0, 1);
    session_close(s, 502, 1);
}

static struct udp_session *session_new(struct bl_stream_worker *sw, const struct bl_listen *l,
                                       int fd, const union bl_sockaddr *peer, socklen_t plen,
                                       uint32_t bucket)
{
    struct bl_udp_table *t = sw->udp;
    struct udp_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->lfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (s->lfd < 0) {
        free(s);
        return NULL;
    }
    s->up.fd = -1;
    s->timer.handler = on_idle_timeout;
    s->w = sw;
    s->srv = l->stream;
    s->listen = l;
    s->start_us = bl_clock_us;
    s->addrlen = plen > sizeof(s->addr) ? sizeof(s->addr) : plen;
    memcpy(&s->addr, peer, s->addrlen);
    bl_addr_format_ip(&peer->sa, s->ip, sizeof(s->ip));
    make_key(s);
    s->bucket = bucket;
    s->hnext = t->buckets[bucket];
    t->buckets[bucket] = s;
    s->linked = 1;
    s->next = t->all;
    if (t->all)
        t->all->prev = s;
    t->all = s;
    t->n++;
    sw->nsessions++;
    bl_stream_stats_open(sw, l);
    return s;
}

/* A client's datagram for session s (new or not). */
static void session_datagram(struct udp_session *s, const char *data, size_t len, int fresh)
{
    const struct bl_stream_conf *c = &s->srv->conf;
    s->requests++;
    s->bytes_in += len;
    if (c->requests && s->requests >= c->requests)
        unlink_session(s);            /* the next datagram starts a new session */
    if (!s->responses && len <= BL_UDP_RESEND_MAX) {
        char *copy = malloc(len ? len : 1);
        if (copy) {
            memcpy(copy, data, len);
            free(s->held);
            s->held = copy;
            s->held_len = (uint32_t)len;
        }
    }
    if (fresh) {
        /* nginx's preaccess and access phases: limit_conn counts UDP sessions, allow/deny. */
        int st = 0;
        if (bl_stream_preaccess(s->srv, &s->addr, s->ip, s->listen->port, &s->limits,
                                &s->limit_conn_status, &st) != BL_OK) {
            session_close(s, st, 0);
            return;
        }
        if (bl_attempt_first(&s->a, s->w->up, s->srv->upstream, key_of(s), s->key_len,
                             &s->addr.sa) != BL_OK) {
            bl_log(BL_LOG_ERROR, "no live upstreams in \"%s\": every server is down, full or "
                   "ejected, udp client %s", s->srv->upstream->name, s->ip);
            s->tries[0] = (struct bl_upstream_try){s->srv->upstream->name, BL_TRY_NONE,
                                                   BL_TRY_NONE, BL_TRY_NONE, 0};
            s->ntries = 1;
            session_close(s, 503, 0);
            return;
        }
        if (upstream_open(s) != BL_OK) {
            upstream_failed(s, errno);
            if (s->closed || s->up.fd < 0)
                return;
            /* upstream_failed resent the held datagram to the next server */
            arm_idle(s);
            return;
        }
    }
    if (s->up.fd < 0)
        return;
    if (upstream_send(s, data, len) != BL_OK)
        return;
    arm_idle(s);
    if (session_done(s))
        session_close(s, 200, 0);
}

void bl_stream_udp_read(struct bl_stream_worker *sw, const struct bl_listen *l, int fd,
                        uint32_t room)
{
    struct bl_udp_table *t = table_get(sw);
    if (!t) {
        char b[1];
        recv(fd, b, sizeof(b), 0);    /* out of memory: drop one, try again later */
        return;
    }
    for (int i = 0; i < UDP_READ_BATCH; i++) {
        union bl_sockaddr peer;
        socklen_t plen = sizeof(peer);
        ssize_t n = recvfrom(fd, t->buf, UDP_MAX_DGRAM, 0, &peer.sa, &plen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;                   /* EAGAIN, or an error queued on the socket */
        }
        uint32_t b = addr_hash(l, &peer);
        struct udp_session *s = t->buckets[b];
        while (s && (s->listen != l || !addr_eq(&s->addr, &peer)))
            s = s->hnext;
        int fresh = 0;
        if (!s) {
            if (!room) {
                t->dropped++;
                if (bl_clock_ms >= t->dropped_logged_ms + 1000) {
                    t->dropped_logged_ms = bl_clock_ms;
                    bl_log(BL_LOG_WARN, "udp: worker_connections reached, dropped %llu "
                           "datagrams of new clients on %s", (unsigned long long)t->dropped,
                           l->text);
                }
                continue;
            }
            s = session_new(sw, l, fd, &peer, plen, b);
            if (!s) {
                bl_log(BL_LOG_ERROR, "udp: out of memory or descriptors, dropped a datagram on "
                       "%s", l->text);
                continue;
            }
            room--;
            fresh = 1;
        }
        session_datagram(s, t->buf, (size_t)n, fresh);
    }
}

void bl_stream_udp_close_all(struct bl_stream_worker *sw)
{
    while (sw->udp && sw->udp->all)
        session_close(sw->udp->all, 0, 0);
}

void bl_stream_udp_free(struct bl_stream_worker *sw)
{
    free(sw->udp);
    sw->udp = NULL;
}
