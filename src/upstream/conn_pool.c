/* Upstream connections: connect, keep-alive pool per worker and server, idle checks. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/line.h"
#include "core/sock.h"
#include "core/status.h"
#include "upstream/conn_pool.h"

int bl_conn_pool_init(struct bl_conn_pool *p, struct bl_loop *loop, uint32_t nservers)
{
    p->loop = loop;
    p->nservers = nservers;
    p->nconns = 0;
    p->draining = 0;
    p->stats = NULL;
    /* taken from and given back on every request: its own lines (core/line.h) */
    p->idle = bl_line_calloc(nservers + 1, sizeof(*p->idle));
    return p->idle ? BL_OK : BL_ERR;
}

void bl_conn_pool_drain(struct bl_conn_pool *p)
{
    p->draining = 1;
    for (uint32_t i = 0; i < p->nservers; i++)
        while (p->idle[i].head)
            bl_upconn_close(p->idle[i].head);
}

struct ssl_session_st *bl_upconn_tls_session(const struct bl_upconn *u)
{
    const struct bl_idle_list *l = &u->pool->idle[u->server->id];
    return l->tls_session_key == u->tls_key ? l->tls_session : NULL;
}

void bl_upconn_tls_session_set(struct bl_upconn *u, struct ssl_session_st *sess)
{
    struct bl_idle_list *l = &u->pool->idle[u->server->id];
    SSL_SESSION_free(l->tls_session);
    l->tls_session = sess;
    l->tls_session_key = sess ? u->tls_key : NULL;
}

static void idle_push(struct bl_conn_pool *p, struct bl_upconn *u)
{
    struct bl_idle_list *l = &p->idle[u->server->id];
    u->idle = 1;
    u->prev = NULL;
    u->next = l->head;
    if (l->head)
        l->head->prev = u;
    l->head = u;
    l->count++;
    if (p->stats)
        bl_stat_add(&p->stats[u->server->id].conns_idle, 1);
}

static void idle_unlink(struct bl_upconn *u);

void bl_conn_pool_adopt(struct bl_conn_pool *to, struct bl_conn_pool *from,
                        struct bl_upstream_server *const *map)
{
    from->draining = 1;
    for (uint32_t i = 0; i < from->nservers; i++) {
        struct bl_upstream_server *s = map ? map[i] : NULL;
        /* Oldest last: keep the most recently used ones, in their order. */
        struct bl_upconn *u = from->idle[i].head;
        while (u && u->next)
            u = u->next;
        while (u) {
            struct bl_upconn *prev = u->prev;
            /* A TLS connection belongs to its generation's context: not carried over. */
            if (!s || u->tls || s->id >= to->nservers || s->group->keepalive == 0 ||
                to->idle[s->id].count >= s->group->keepalive) {
                bl_upconn_close(u);
            } else {
                idle_unlink(u);
                from->nconns--;
                if (from->stats)
                    bl_stat_sub(&from->stats[i].conns, 1);
                u->pool = to;
                u->server = s;
                to->nconns++;
                if (to->stats)
                    bl_stat_add(&to->stats[s->id].conns, 1);
                idle_push(to, u);
            }
            u = prev;
        }
    }
}

void bl_conn_pool_free(struct bl_conn_pool *p)
{
    if (!p->idle)
        return;
    bl_conn_pool_drain(p);
    for (uint32_t i = 0; i < p->nservers; i++)
        SSL_SESSION_free(p->idle[i].tls_session);
    free(p->idle);
    p->idle = NULL;
}

static void upconn_free(struct bl_deferred *d)
{
    struct bl_upconn *u = (struct bl_upconn *)((char *)d - offsetof(struct bl_upconn, defer));
    free(u);
}

static void idle_unlink(struct bl_upconn *u)
{
    struct bl_idle_list *l = &u->pool->idle[u->server->id];
    if (u->prev)
        u->prev->next = u->next;
    else
        l->head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->next = u->prev = NULL;
    u->idle = 0;
    l->count--;
    if (u->pool->stats)
        bl_stat_sub(&u->pool->stats[u->server->id].conns_idle, 1);
}

void bl_upconn_close(struct bl_upconn *u)
{
    struct bl_conn_pool *p = u->pool;
    if (u->idle)
        idle_unlink(u);
    bl_timer_cancel(p->loop, &u->timer);
    if (u->tls) {
        /* No close_notify: the socket closes now and the peer reads the FIN. Marked as shut
         * down all the same, else OpenSSL takes the session for a bad one and makes it
         * unresumable, and proxy_ssl_session_reuse keeps it. */
        SSL_set_shutdown(u->tls, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(u->tls);
        u->tls = NULL;
    }
    bl_loop_close(p->loop, &u->io); /* io_uring: cancels the fd's poll, which holds the socket */
    u->io.handler = NULL;
    u->owner = NULL;
    bl_buf_put(u->in);
    u->in = NULL;
    p->nconns--;
    if (p->stats)
        bl_stat_sub(&p->stats[u->server->id].conns, 1);
    bl_loop_defer(p->loop, &u->defer);
}

static void upconn_idle_event(struct bl_upconn *u, uint32_t ev)
{
    /* Anything on an idle connection (data, FIN, RST) makes it unusable. */
    if (ev & BL_EV_READ || ev & BL_EV_ERROR) {
        char b[64];
        ssize_t n = bl_loop_recv(u->pool->loop, &u->io, b, sizeof(b), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        bl_upconn_close(u);
    }
}

/* Prefetch hook (core/loop.h): the input buffer's head and the owner's part. */
static void upconn_prefetch(const struct bl_io *io)
{
    const struct bl_upconn *u = (const struct bl_upconn *)io;
    if (u->in)
        __builtin_prefetch(u->in);
    if (u->owner && u->on_prefetch)
        u->on_prefetch((struct bl_upconn *)u);
}

static void upconn_on_event(struct bl_io *io, uint32_t ev)
{
    struct bl_upconn *u = (struct bl_upconn *)io;
    if (ev & BL_EV_READ)
        u->rready = 1;
    if (ev & BL_EV_HUP)
        u->hup = 1;
    if (ev & BL_EV_WRITE)
        u->wready = 1;
    if (bl_unlikely(u->tls_want)) {
        if ((ev & BL_EV_WRITE) && (u->tls_want & BL_UPCONN_READ_WANTS_WRITE))
            u->rready = 1;
        if ((ev & BL_EV_READ) && (u->tls_want & BL_UPCONN_WRITE_WANTS_READ))
            u->wready = 1;
    }
    if (u->idle) {
        upconn_idle_event(u, ev);
        return;
    }
    if (u->owner)
        u->on_io(u);
}

static void upconn_on_timer(struct bl_timer *t)
{
    struct bl_upconn *u = (struct bl_upconn *)((char *)t - offsetof(struct bl_upconn, timer));
    if (u->idle || !u->owner) {
        bl_upconn_close(u);
        return;
    }
    u->on_timeout(u);
}

/* loop_reads: the loop reads the socket (core/loop.h, bl_loop_add_recv), for a plain
 * connection whose owner reads through bl_loop_recv; TLS (OpenSSL reads the socket) and
 * splicing owners keep readiness. */
static struct bl_upconn *upconn_connect(struct bl_conn_pool *p, struct bl_upstream_server *s,
                                        int loop_reads)
{
    int fd = bl_sock_connect((struct sockaddr *)&s->addr, s->addrlen);
    if (fd < 0)
        return NULL;
    struct bl_upconn *u = calloc(1, sizeof(*u));
    if (!u) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    u->io.fd = fd;
    u->io.handler = upconn_on_event;
    u->io.prefetch = upconn_prefetch;
    u->timer.handler = upconn_on_timer;
    u->defer.run = upconn_free;
    u->pool = p;
    u->server = s;
    u->connecting = 1;
    u->loop_reads = (uint8_t)loop_reads;
    if ((loop_reads ? bl_loop_add_recv(p->loop, &u->io) : bl_loop_add(p->loop, &u->io)) !=
        BL_OK) {
        close(fd);
        free(u);
        return NULL;
    }
    p->nconns++;
    if (p->stats)
        bl_stat_add(&p->stats[s->id].conns, 1);
    return u;
}

struct bl_upconn *bl_upconn_get(struct bl_conn_pool *p, struct bl_upstream_server *s,
                                const void *tls_key, int loop_reads, int allow_pooled,
                                void *owner,
                                bl_upconn_handler on_io, bl_upconn_handler on_timeout)
{
    struct bl_idle_list *l = &p->idle[s->id];
    struct bl_upconn *u = allow_pooled ? l->head : NULL;
    /* A server reached both plainly and over TLS (two locations) keeps both kinds idle: the
     * list is at most `keepalive` long. */
    loop_reads = loop_reads && !tls_key;
    while (u && (u->tls_key != tls_key || u->loop_reads != loop_reads))
        u = u->next;
    if (u) {
        idle_unlink(u);
        bl_timer_disarm(p->loop, &u->timer); /* the owner arms it; bl_upconn_close cancels */
    } else if (!(u = upconn_connect(p, s, loop_reads))) {
        return NULL;
    } else {
        u->tls_key = tls_key;
    }
    u->owner = owner;
    u->on_io = on_io;
    u->on_timeout = on_timeout;
    u->on_prefetch = NULL;
    return u;
}

void bl_upconn_release(struct bl_upconn *u, int reusable)
{
    struct bl_conn_pool *p = u->pool;
    struct bl_upstream_group *g = u->server->group;
    struct bl_idle_list *l = &p->idle[u->server->id];
    u->owner = NULL;
    if (!reusable || g->keepalive == 0 || l->count >= g->keepalive || p->draining ||
        u->nrequests >= g->keepalive_requests || (u->in && bl_buf_len(u->in)) ||
        (u->tls && (u->tls_handshake || SSL_pending(u->tls)))) {
        bl_upconn_close(u);
        return;
    }
    bl_buf_put(u->in);
    u->in = NULL;
    if (u->loop_reads)
        bl_loop_recv_pause(p->loop, &u->io, 0); /* a splice paused it: idle, the loop reads
                                                  * (and so sees the server's close) */
    idle_push(p, u);
    uint64_t ms = g->keepalive_timeout_ms;
    bl_timer_set(p->loop, &u->timer, bl_clock_ms + (ms ? ms : 1));
}
