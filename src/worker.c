/* Worker threads: loop, listeners, accept, generation switches, drain and stop. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/line.h"
#include "core/log.h"
#include "core/pipe.h"
#include "core/sock.h"
#include "core/stats.h"
#include "core/status.h"
#include "core/sys.h"
#include "dns/dns.h"
#include "http/access_log.h"
#include "http/proxy.h"
#include "stream/udp.h"
#include "upstream/attempt.h"
#include "worker.h"

#define ACCEPT_BATCH 64

/* The generation workers switch to (bl_generation_publish). */
static _Atomic(struct bl_generation *) published;

static struct bl_worker_gen *wgen_of(struct bl_http_worker *hw)
{
    return (struct bl_worker_gen *)((char *)hw - offsetof(struct bl_worker_gen, http));
}

static uint32_t worker_nclients(const struct bl_worker *w)
{
    uint32_t n = w->cur->http.nclients + w->cur->stream.nsessions;
    for (const struct bl_worker_gen *o = w->old; o; o = o->next_old)
        n += o->http.nclients + o->stream.nsessions;
    return n;
}

static void on_accept(struct bl_io *io, uint32_t ev);
static void on_accepted(struct bl_io *io, int res);

/* A multishot accept takes every connection that arrives until it is cancelled, more than
 * the worker has room for if a burst comes (each one held open is an fd beyond
 * worker_connections). So within this many connections of the limit a listener accepts on
 * readiness instead, one accept4 per connection, which stops exactly at the limit; and goes
 * back to multishot once twice as much room is free. A burst of more than that many
 * connections before the worker's next turn (a loaded machine) is accepted whole; what is
 * over the limit then waits open in l->held, not in the listen queue, until there is room. */
#define ACCEPT_MULTISHOT_ROOM 512u

static uint32_t worker_room(const struct bl_worker *w)
{
    uint32_t limit = (uint32_t)w->cur->gen->cfg->worker_connections, n = worker_nclients(w);
    return n < limit ? limit - n : 0;
}

/* Registers l with its loop: a multishot accept where the loop has one (io_uring: the loop
 * accepts, on_accepted gets the connections) and the worker has room, else level readiness
 * that on_accept serves. Datagram listeners (udp, dns) read on readiness. */
static int listener_arm(struct bl_worker *w, struct bl_listener *l)
{
    l->multishot = 0;
    if (!l->listen->udp && !l->listen->dns) {
        if (worker_room(w) <= ACCEPT_MULTISHOT_ROOM) {
            if (bl_loop_method(w->loop) == BL_LOOP_IO_URING)
                w->accept_near_full = 1;
        } else if (bl_loop_add_accept(w->loop, &l->io, on_accepted) == BL_OK) {
            l->multishot = 1;
            return BL_OK;
        }
    }
    return bl_loop_add_level(w->loop, &l->io);
}

/* Unregisters l; paused first, so that the connections a cancelled multishot accept hands
 * back from inside bl_loop_del are held, not served. */
static void listener_disarm(struct bl_worker *w, struct bl_listener *l)
{
    if (l->paused)
        return;
    l->paused = 1;
    bl_loop_del(w->loop, &l->io);
}

static void listener_hold(struct bl_listener *l, int fd)
{
    if (l->nheld == l->held_cap) {
        uint32_t cap = l->held_cap ? l->held_cap * 2 : 8;
        int *h = realloc(l->held, cap * sizeof(*h));
        if (!h) {
            close(fd); /* as if the listen queue had overflowed */
            return;
        }
        l->held = h;
        l->held_cap = cap;
    }
    l->held[l->nheld++] = fd;
}

/* The listener closes: what it held goes with it, as a listen queue does. */
static void listener_drop_held(struct bl_listener *l)
{
    for (uint32_t i = 0; i < l->nheld; i++)
        close(l->held[i]);
    free(l->held);
    l->held = NULL;
    l->nheld = l->held_cap = 0;
}

/* Hands an accepted connection to its proxy. peer NULL: a multishot accept's connection,
 * whose address is asked for (one getpeername; a client that reset it already is gone). */
static void accept_one(struct bl_worker *w, struct bl_listener *l, int fd,
                       const union bl_sockaddr *peer, socklen_t len)
{
    union bl_sockaddr asked;
    if (!peer) {
        len = sizeof(asked);
        if (getpeername(fd, &asked.sa, &len) != 0) {
            close(fd);
            return;
        }
        peer = &asked;
    }
    if (l->listen->stream)
        bl_stream_accept(&w->cur->stream, l->listen, fd, &peer->sa, len);
    else
        bl_http_accept(&w->cur->http, l->listen, fd, &peer->sa, len);
}

/* Resumes a paused listener: the connections it held first, in their order, then the
 * registration, unless the worker is full again (it stays paused). */
static void listener_resume(struct bl_worker *w, struct bl_listener *l)
{
    uint32_t limit = (uint32_t)w->cur->gen->cfg->worker_connections;
    while (l->nheld && l->paused) {
        if (worker_nclients(w) >= limit)
            return;
        int fd = l->held[0];
        memmove(l->held, l->held + 1, --l->nheld * sizeof(*l->held));
        accept_one(w, l, fd, NULL, 0); /* may resume l itself (a session that closes at
                                        * once): hence the paused check */
    }
    if (!l->paused || l->io.fd < 0)
        return;
    l->paused = 0;
    if (listener_arm(w, l) != BL_OK) {
        bl_log(BL_LOG_ALERT, "epoll_ctl() failed for %s (%s)", l->listen->text,
               strerror(errno));
        l->paused = 1;
    }
}

/* Registers l again (multishot <-> readiness, as listener_arm chooses now); what a
 * cancelled multishot accept hands back is served first, as far as there is room. */
static void listener_rearm(struct bl_worker *w, struct bl_listener *l)
{
    listener_disarm(w, l);
    listener_resume(w, l);
}

static void listener_pause(struct bl_worker *w, int pause)
{
    for (uint32_t i = 0; i < w->cur->nlisteners; i++) {
        struct bl_listener *l = &w->cur->listeners[i];
        /* UDP: the socket carries the datagrams of open sessions too (udp.h caps new ones). */
        if (l->io.fd < 0 || l->paused == pause || l->listen->udp)
            continue;
        if (pause)
            listener_disarm(w, l);
        else
            listener_resume(w, l);
    }
}

/* The "not enough worker_connections" warning, once a minute for the whole process: a full
 * worker pauses and resumes its listeners as connections come and go, and every pause would
 * otherwise write a line. Monotonic ms of the last warning; 0: never. */
static _Atomic uint64_t full_warned_ms;
#define FULL_WARN_INTERVAL_MS 60000

static void warn_full(int limit)
{
    uint64_t now = bl_now_ms(), last = atomic_load_explicit(&full_warned_ms, memory_order_relaxed);
    if (last && now - last < FULL_WARN_INTERVAL_MS)
        return;
    if (!atomic_compare_exchange_strong_explicit(&full_warned_ms, &last, now ? now : 1,
                                                 memory_order_relaxed, memory_order_relaxed))
        return; /* another worker warned just now */
    bl_log(BL_LOG_WARN, "%d worker_connections are not enough, not accepting (said once a "
           "minute)", limit);
}

static void on_accept(struct bl_io *io, uint32_t ev)
{
    struct bl_listener *l = (struct bl_listener *)io;
    struct bl_worker *w = l->w;
    BL_UNUSED(ev);
    int limit = w->cur->gen->cfg->worker_connections;
    if (l->listen->dns) {
        bl_dns_read(l->listen->dns, io->fd, bl_now_ms());
        return;
    }
    if (l->listen->udp) {
        uint32_t n = worker_nclients(w);
        bl_stream_udp_read(&w->cur->stream, l->listen, io->fd,
                           n < (uint32_t)limit ? (uint32_t)limit - n : 0);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (worker_nclients(w) >= (uint32_t)limit) {
            warn_full(limit);
            listener_pause(w, 1);
            return;
        }
        union bl_sockaddr peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(io->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                bl_log(BL_LOG_ALERT, "accept() failed (%s)", strerror(errno));
                listener_pause(w, 1);
            }
            return;
        }
        accept_one(w, l, fd, &peer, len);
    }
}

/* A connection from the listener's multishot accept (io_uring), or why it stopped. The same
 * rules as on_accept: at worker_connections the listener pauses, and the connection the
 * kernel already accepted waits in l->held rather than in the listen queue. */
static void on_accepted(struct bl_io *io, int res)
{
    struct bl_listener *l = (struct bl_listener *)io;
    struct bl_worker *w = l->w;
    if (res < 0) {
        if (res == -EMFILE || res == -ENFILE) {
            bl_log(BL_LOG_ALERT, "accept() failed (%s)", strerror(-res));
            listener_pause(w, 1);
        }
        return;
    }
    int limit = w->cur->gen->cfg->worker_connections;
    if (!l->paused && worker_nclients(w) >= (uint32_t)limit) {
        warn_full(limit);
        listener_pause(w, 1);
    }
    if (l->paused) {
        listener_hold(l, res);
        return;
    }
    accept_one(w, l, res, NULL, 0);
    if (l->multishot && !l->paused && worker_room(w) <= ACCEPT_MULTISHOT_ROOM)
        listener_rearm(w, l); /* near the limit: readiness from here */
}

static void notify_control(struct bl_worker *w)
{
    uint64_t one = 1;
    if (w->notify_fd >= 0) {
        ssize_t r = write(w->notify_fd, &one, sizeof(one));
        (void)r;
    }
}

/* Frees one worker's part of a generation: its proxy state, pools, log buffers (flushed),
 * listeners still open. Worker thread (or after the join). */
static void wgen_free(struct bl_worker_gen *wg, struct bl_loop *loop)
{
    bl_access_log_flush(&wg->http.logs);
    bl_timer_cancel(loop, &wg->http.logs.timer);
    bl_http_worker_free(&wg->http);
    bl_stream_udp_free(&wg->stream);
    for (uint32_t k = 0; k < wg->nlisteners; k++) {
        if (wg->listeners[k].io.fd >= 0)
            close(wg->listeners[k].io.fd);
        listener_drop_held(&wg->listeners[k]);
    }
    free(wg->listeners);
    free(wg);
}

static void on_wgen_free(struct bl_deferred *d)
{
    struct bl_worker_gen *wg =
        (struct bl_worker_gen *)((char *)d - offsetof(struct bl_worker_gen, free_later));
    struct bl_worker *w = wg->w;
    struct bl_generation *g = wg->gen;
    wgen_free(wg, w->loop);
    atomic_fetch_sub_explicit(&g->users, 1, memory_order_release);
    notify_control(w);
}

/* An old generation with no connection left goes (after this batch of events, whose
 * handlers may still hold pointers into it). */
static void old_check(struct bl_worker *w, struct bl_worker_gen *wg)
{
    if (wg == w->cur || wg->free_queued || wg->http.nclients || wg->stream.nsessions)
        return;
    for (struct bl_worker_gen **pp = &w->old; *pp; pp = &(*pp)->next_old)
        if (*pp == wg) {
            *pp = wg->next_old;
            break;
        }
    wg->free_queued = 1;
    wg->free_later.run = on_wgen_free;
    bl_loop_defer(w->loop, &wg->free_later);
}

/* A client connection closed or moved: resume accepting, free an old generation once unused,
 * or stop a draining worker once none are left. */
static void check_drained(struct bl_worker *w)
{
    uint32_t n = worker_nclients(w);
    if (!w->draining && n < (uint32_t)w->cur->gen->cfg->worker_connections)
        listener_pause(w, 0);
    if (w->accept_near_full && !w->draining && worker_room(w) > 2 * ACCEPT_MULTISHOT_ROOM) {
        w->accept_near_full = 0;
        for (uint32_t i = 0; i < w->cur->nlisteners; i++) {
            struct bl_listener *l = &w->cur->listeners[i];
            if (l->io.fd >= 0 && !l->paused && !l->multishot && !l->listen->udp &&
                !l->listen->dns)
                listener_rearm(w, l);
        }
    }
    if (w->draining && n == 0 && !w->stopped) {
        w->stopped = 1;
        bl_loop_stop(w->loop);
    }
}

static void on_client_closed(struct bl_http_worker *hw)
{
    struct bl_worker_gen *wg = wgen_of(hw);
    old_check(wg->w, wg);
    check_drained(wg->w);
}

static void on_session_closed(struct bl_stream_worker *sw)
{
    struct bl_worker_gen *wg =
        (struct bl_worker_gen *)((char *)sw - offsetof(struct bl_worker_gen, stream));
    old_check(wg->w, wg);
    check_drained(wg->w);
}

static void on_shutdown_timer(struct bl_timer *t)
{
    struct bl_worker *w = (struct bl_worker *)((char *)t - offsetof(struct bl_worker,
                                                                    shutdown_timer));
    uint32_t n = worker_nclients(w);
    if (n)
        bl_log(BL_LOG_WARN, "shutdown_timeout: closing %u connections", n);
    for (struct bl_worker_gen *o = w->old; o; o = o->next_old) {
        bl_http_close_all(&o->http);
        bl_stream_close_all(&o->stream);
    }
    bl_http_close_all(&w->cur->http);
    bl_stream_close_all(&w->cur->stream);
    w->stopped = 1;
    bl_loop_stop(w->loop);
}

static void worker_shutdown(struct bl_worker *w, int handover)
{
    if (w->draining)
        return;
    w->draining = 1;
    for (uint32_t i = 0; i < w->cur->nlisteners; i++) {
        struct bl_listener *l = &w->cur->listeners[i];
        if (l->io.fd >= 0) {
            listener_disarm(w, l);
            close(l->io.fd);
            l->io.fd = -1;
            listener_drop_held(l);
        }
    }
    w->cur->http.draining = handover ? 2 : 1;
    bl_conn_pool_drain(&w->cur->http.up.pool);
    bl_http_drain(&w->cur->http, !handover);
    /* No client datagram can reach a UDP session once its listener is closed. */
    bl_stream_udp_close_all(&w->cur->stream);
    for (struct bl_worker_gen *o = w->old; o; o = o->next_old) {
        bl_stream_udp_close_all(&o->stream);
        o->http.draining = handover ? 2 : 1;
        bl_conn_pool_drain(&o->http.up.pool);
        bl_http_drain(&o->http, !handover);
    }
    bl_timer_set(w->loop, &w->shutdown_timer,
                 bl_clock_ms + w->cur->gen->cfg->shutdown_timeout + 1);
    check_drained(w);
}

/* Whether a reload must give the address new sockets: a kept socket takes a changed size or
 * backlog in place (listen_tune), but the kernel cannot unset SO_SNDBUF/SO_RCVBUF, so a size
 * the new config drops (back to autotuning) needs a fresh socket. */
static int listen_rebuilt(const struct bl_listen *was, const struct bl_listen *now)
{
    return (was->sndbuf && !now->sndbuf) || (was->rcvbuf && !now->rcvbuf);
}

/* Applies ls's socket settings to fd (a new, inherited or kept socket), only those that
 * differ from was's when was is given. A size the kernel capped is warned about when warn.
 * Returns 0, or -1 with err filled. Any thread (the socket is the only state touched). */
static int listen_tune(int fd, const struct bl_listen *ls, const struct bl_listen *was,
                       int warn, char *err, size_t errlen)
{
    if (fd < 0)
        return 0;
    unsigned snd = !was || was->sndbuf != ls->sndbuf ? ls->sndbuf : 0;
    unsigned rcv = !was || was->rcvbuf != ls->rcvbuf ? ls->rcvbuf : 0;
    int rc = bl_sock_set_bufs(fd, snd, rcv, err, errlen);
    if (rc < 0)
        return -1;
    if (rc > 0 && warn)
        bl_log(BL_LOG_WARN, "listen %s: %s", ls->text, err);
    /* listen() again on a listening socket changes only its backlog (as nginx's reload). */
    if (!ls->udp && !ls->dns && (!was || was->backlog != ls->backlog) &&
        listen(fd, ls->backlog) != 0) {
        snprintf(err, errlen, "listen() on %s failed (%d: %s)", ls->text, errno,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* A dropped socket of an address the new generation rebuilt (listen_rebuilt): the
 * connections the kernel queued on it are accepted into the new generation before it closes,
 * so that a rebuild refuses none. Bounded by the backlog and worker_connections. */
static void take_queue(struct bl_worker *w, struct bl_listener *o, struct bl_worker_gen *nw)
{
    const struct bl_listen *ls = NULL;
    for (uint32_t k = 0; k < nw->nlisteners && !ls; k++)
        if (strcmp(nw->listeners[k].listen->text, o->listen->text) == 0)
            ls = nw->listeners[k].listen;
    if (!ls || ls->udp || ls->dns)
        return;
    int limit = nw->gen->cfg->worker_connections;
    /* What its multishot accept took first (held, io_uring), in order. */
    for (uint32_t h = 0; h < o->nheld; h++) {
        union bl_sockaddr peer;
        socklen_t len = sizeof(peer);
        int fd = o->held[h];
        o->held[h] = -1;
        if (getpeername(fd, &peer.sa, &len) != 0) {
            close(fd);
            continue;
        }
        if (ls->stream)
            bl_stream_accept(&nw->stream, ls, fd, &peer.sa, len);
        else
            bl_http_accept(&nw->http, ls, fd, &peer.sa, len);
    }
    o->nheld = 0;
    for (int i = 0; i < 65536 && worker_nclients(w) < (uint32_t)limit; i++) {
        union bl_sockaddr peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(o->io.fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (ls->stream)
            bl_stream_accept(&nw->stream, ls, fd, &peer.sa, len);
        else
            bl_http_accept(&nw->http, ls, fd, &peer.sa, len);
    }
}

/* Switches to the published generation: listeners diffed by address (a kept address keeps
 * its socket, so no connection attempt finds it closed), idle upstream connections to kept
 * servers moved to the new pools, idle client connections moved; everything else of the old
 * generation finishes there. */
static void worker_switch(struct bl_worker *w)
{
    struct bl_generation *g = atomic_load_explicit(&published, memory_order_acquire);
    struct bl_worker_gen *old = w->cur;
    if (!g || g == old->gen || w->draining)
        return;
    int i = w->id - 1;
    struct bl_worker_gen *nw = g->wgens[i];
    g->wgens[i] = NULL;
    atomic_fetch_add_explicit(&g->users, 1, memory_order_relaxed);

    uint32_t n = g->cfg->nlistens;
    for (uint32_t k = 0; k < n; k++) {
        struct bl_listener *l = &nw->listeners[k];
        int *slot = &g->fds[(size_t)i * n + k];
        if (*slot >= 0) {
            l->io.fd = *slot;
            *slot = -1;
        } else {
            for (uint32_t j = 0; j < old->nlisteners; j++) {
                struct bl_listener *o = &old->listeners[j];
                if (o->io.fd < 0 || strcmp(o->listen->text, l->listen->text) != 0)
                    continue;
                listener_disarm(w, o);
                l->io.fd = o->io.fd;
                o->io.fd = -1;
                /* What the old registration accepted is the new one's to serve. */
                l->held = o->held;
                l->nheld = o->nheld;
                l->held_cap = o->held_cap;
                o->held = NULL;
                o->nheld = o->held_cap = 0;
                char err[256];
                if (listen_tune(l->io.fd, l->listen, o->listen, w->id == 1, err,
                                sizeof(err)) != 0)
                    bl_log(BL_LOG_WARN, "reload: %s", err);
                break;
            }
        }
        if (l->io.fd >= 0 && l->listen->udp) {
            if (bl_loop_add_level(w->loop, &l->io) != BL_OK) /* datagrams: never paused */
                bl_log(BL_LOG_ALERT, "epoll_ctl() failed for %s (%s)", l->listen->text,
                       strerror(errno));
        } else if (l->io.fd >= 0) {
            l->paused = 1; /* registered by check_drained below, on the new generation */
        } else {
            bl_log(BL_LOG_ALERT, "no socket for %s in generation %llu", l->listen->text,
                   (unsigned long long)g->number);
        }
    }

    bl_conn_pool_adopt(&nw->http.up.pool, &old->http.up.pool,
                       g->prev_number == old->gen->number ? g->server_map : NULL);
    w->cur = nw;
    w->http_cur = &nw->http;
    old->next_old = w->old;
    w->old = old;
    /* Addresses the new generation dropped (or rebuilt): connections accepted there go on on
     * the old generation; a rebuilt one's queue goes to the new (after the switch, so that they
     * count as the current generation's). */
    for (uint32_t j = 0; j < old->nlisteners; j++) {
        struct bl_listener *o = &old->listeners[j];
        if (o->io.fd < 0)
            continue;
        listener_disarm(w, o);
        take_queue(w, o, nw);
        close(o->io.fd);
        o->io.fd = -1;
        listener_drop_held(o);
    }
    atomic_store_explicit(&w->seen, g->number, memory_order_release);
    bl_http_adopt_idle(&old->http);
    old_check(w, old);
    notify_control(w);
    check_drained(w);
}

static void on_wake(struct bl_io *io, uint32_t ev)
{
    struct bl_worker *w = (struct bl_worker *)((char *)io - offsetof(struct bl_worker, wake));
    BL_UNUSED(ev);
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) != sizeof(v))
        return;
    uint8_t stop = atomic_load_explicit(&w->stop_requested, memory_order_acquire);
    if (stop)
        worker_shutdown(w, stop == 2);
    else
        worker_switch(w);
}

/* Once a second: the buffer and request free lists' caps follow what was in use at once in
 * the last two seconds (core/freelist.h), so a steady load allocates nothing and the surplus
 * of a burst is freed after it. Freed buffers sit in malloc's heap and still count in RSS: if
 * buffers were freed and none had to be allocated since, hand the free pages back. Never
 * during a burst: the pages would only fault back in. */
static void on_trim_timer(struct bl_timer *t)
{
    struct bl_worker *w = (struct bl_worker *)((char *)t - offsetof(struct bl_worker,
                                                                    trim_timer));
    bl_buf_tick();
    bl_pipe_tick();
    bl_http_worker_tick(&w->cur->http);
    uint32_t freed, allocated;
    bl_buf_overflow(&freed, &allocated);
    w->trim_pending += freed;
    if (allocated == 0 && w->trim_pending > 0) {
#ifndef BL_SYS_SANITIZED
        /* Not under a sanitizer: its allocator owns the heap, glibc's malloc was never set
         * up, and malloc_trim() would run glibc's ptmalloc_init() from two workers at once
         * (a SEGV in mtrim under ASan, tests/integration/test_limits.py, 2026-12-07). */
        malloc_trim(0);
#endif
        w->trim_pending = 0;
    }
    bl_timer_set(w->loop, t, bl_clock_ms + 1000);
}

static void *worker_main(void *arg)
{
    struct bl_worker *w = arg;
    bl_log_thread_id = w->id;
    bl_clock_update();
    bl_timer_set(w->loop, &w->trim_timer, bl_clock_ms + 1000);
    bl_loop_run(w->loop);
    for (struct bl_worker_gen *o = w->old; o; o = o->next_old) {
        bl_access_log_flush(&o->http.logs);
        bl_http_close_all(&o->http);
        bl_stream_close_all(&o->stream);
        bl_conn_pool_drain(&o->http.up.pool);
    }
    bl_access_log_flush(&w->cur->http.logs);
    bl_http_close_all(&w->cur->http);
    bl_stream_close_all(&w->cur->stream);
    bl_conn_pool_drain(&w->cur->http.up.pool);
    /* Run the deferred frees the closes queued. */
    bl_loop_stop(w->loop);
    bl_buf_drain();
    bl_pipe_drain();
    return NULL;
}

struct bl_stats_set *bl_worker_stats_create(const struct bl_config *cfg)
{
    return bl_stats_create((uint32_t)cfg->workers, cfg->nservers, cfg->nlocations,
                           cfg->nupstream_servers, cfg->nlistens);
}

static const struct bl_listen *listen_in(const struct bl_config *cfg, const char *text)
{
    for (uint32_t i = 0; cfg && i < cfg->nlistens; i++)
        if (strcmp(cfg->listens[i].text, text) == 0)
            return &cfg->listens[i];
    return NULL;
}

/* Sockets inherited from the process that started this one (binary upgrade). */
struct inherited {
    char addr[BL_ADDR_STRLEN + 8];
    int fds[64];
    int nfds;
    int taken;
};
static struct inherited *inh;
static int ninh;

int bl_generation_inherit(const char *spec, char *err, size_t errlen)
{
    const char *p = spec;
    while (*p) {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        struct inherited *grown = realloc(inh, (size_t)(ninh + 1) * sizeof(*inh));
        if (!eq || eq > end || (size_t)(eq - p) >= sizeof(inh->addr) || !grown) {
            if (grown)
                inh = grown;
            snprintf(err, errlen, "malformed inherited sockets \"%.60s\"", p);
            return BL_ERR;
        }
        inh = grown;
        struct inherited *h = &inh[ninh++];
        memset(h, 0, sizeof(*h));
        memcpy(h->addr, p, (size_t)(eq - p));
        for (const char *q = eq + 1; q < end && h->nfds < (int)BL_ARRAY_LEN(h->fds);) {
            char *next;
            long fd = strtol(q, &next, 10);
            if (next == q || fd < 0) {
                snprintf(err, errlen, "malformed inherited sockets \"%.60s\"", p);
                return BL_ERR;
            }
            /* A later upgrade passes them on explicitly; nothing else may inherit them. */
            fcntl((int)fd, F_SETFD, FD_CLOEXEC);
            h->fds[h->nfds++] = (int)fd;
            q = *next == ',' ? next + 1 : next;
        }
        p = *end ? end + 1 : end;
    }
    return BL_OK;
}

void bl_generation_inherit_done(void)
{
    for (int i = 0; i < ninh; i++)
        for (int k = inh[i].taken; k < inh[i].nfds; k++)
            close(inh[i].fds[k]);
    free(inh);
    inh = NULL;
    ninh = 0;
}

static struct inherited *inherited_for(const char *addr)
{
    for (int i = 0; i < ninh; i++)
        if (strcmp(inh[i].addr, addr) == 0)
            return &inh[i];
    return NULL;
}

int bl_generation_take_inherited(const char *addr)
{
    struct inherited *h = inherited_for(addr);
    return h && h->taken < h->nfds ? h->fds[h->taken++] : -1;
}

int bl_workers_listen_fds(struct bl_worker *ws, int n, char *buf, size_t len, int *fds,
                          int *nfds, int maxfds)
{
    size_t at = 0;
    *nfds = 0;
    buf[0] = '\0';
    const struct bl_worker_gen *first = ws[0].cur;
    for (uint32_t k = 0; k < first->nlisteners; k++) {
        int w = snprintf(buf + at, len - at, "%s%s=", at ? ";" : "",
                         first->listeners[k].listen->text);
        if (w < 0 || (size_t)w >= len - at)
            return BL_ERR;
        at += (size_t)w;
        for (int i = 0; i < n; i++) {
            int fd = ws[i].cur->listeners[k].io.fd;
            if (fd < 0)
                continue;
            if (*nfds >= maxfds)
                return BL_ERR;
            w = snprintf(buf + at, len - at, "%s#%d", buf[at - 1] == '=' ? "" : ",", *nfds);
            fds[(*nfds)++] = fd;
            if (w < 0 || (size_t)w >= len - at)
                return BL_ERR;
            at += (size_t)w;
        }
    }
    return BL_OK;
}

/* Gives back what bl_generation_create took before it failed; cfg stays the caller's. */
static void generation_undo(struct bl_generation *g)
{
    size_t nfds = (size_t)g->nworkers * g->cfg->nlistens;
    for (size_t k = 0; g->fds && k < nfds; k++)
        if (g->fds[k] >= 0)
            close(g->fds[k]);
    free(g->fds);
    free(g->server_map);
    bl_stats_free(g->stats);
    free(g->wgens);
    free(g);
}

struct bl_generation *bl_generation_create(struct bl_config *cfg, int nworkers,
                                           const struct bl_generation *prev, char *err,
                                           size_t errlen)
{
    struct bl_generation *g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->number = prev ? prev->number + 1 : 1;
    g->cfg = cfg;
    g->nworkers = nworkers;
    g->prev_number = prev ? prev->number : 0;
    size_t nfds = (size_t)nworkers * cfg->nlistens;
    g->fds = malloc((nfds + 1) * sizeof(*g->fds));
    g->wgens = calloc((size_t)nworkers + 1, sizeof(*g->wgens));
    g->stats = bl_stats_create((uint32_t)nworkers, cfg->nservers, cfg->nlocations,
                               cfg->nupstream_servers, cfg->nlistens);
    if (prev)
        g->server_map = calloc(prev->cfg->nupstream_servers + 1, sizeof(*g->server_map));
    if (!g->fds || !g->wgens || !g->stats || (prev && !g->server_map)) {
        free(g->fds);
        g->fds = NULL;
        generation_undo(g);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t k = 0; k < nfds; k++)
        g->fds[k] = -1;
    /* Every worker has its own SO_REUSEPORT socket per address, so that the kernel spreads
     * connections over the workers. But SO_REUSEPORT does not tell our own sockets from
     * another process's: Linux lets any socket of the same effective UID join the group, so a
     * second ballast on the same address would start, exit 0 and take a share of the traffic.
     * nginx and HAProxy refuse that, and so do we, unless `listen ... reuseport` asks for
     * sharing. The check is a probe: a socket bound without SO_REUSEPORT fails with
     * EADDRINUSE while anyone listens there. The alternatives do not work: a first socket
     * bound without SO_REUSEPORT keeps our own workers out too, and clearing SO_REUSEPORT
     * after listen() leaves the kernel's per-port fast path (tb->fastreuseport) open to the
     * next process. The probe leaves a window of a few microseconds between its close() and
     * the first worker's bind() in which two instances started at the same instant could both
     * pass; a running instance is always found. One asymmetry with nginx follows: a newcomer
     * that says `reuseport` joins a running ballast that did not, since our sockets carry
     * SO_REUSEPORT anyway (docs/configuration.md, listen). A reload probes only the addresses
     * it adds: the kept ones are ours. */
    for (uint32_t k = 0; k < cfg->nlistens; k++) {
        const struct bl_listen *ls = &cfg->listens[k];
        const struct bl_listen *kept = prev ? listen_in(prev->cfg, ls->text) : NULL;
        if (kept && !listen_rebuilt(kept, ls))
            continue;
        /* Inherited sockets (an upgrade) are ours already: no probe, and as many as there are
         * taken over as they are, accept queues included. */
        struct inherited *h = prev ? NULL : inherited_for(ls->text);
        int first_new = 0;
        while (h && first_new < nworkers && h->taken < h->nfds)
            g->fds[(size_t)first_new++ * cfg->nlistens + k] = h->fds[h->taken++];
        const struct sockaddr *sa = (const struct sockaddr *)&ls->addr;
        int rc = ls->reuseport || h || kept ? 0
                 : ls->udp ? bl_sock_probe_exclusive_udp(sa, ls->addrlen, err, errlen)
                           : bl_sock_probe_exclusive(sa, ls->addrlen, err, errlen);
        for (int i = first_new; rc == 0 && i < nworkers; i++) {
            int fd = ls->udp ? bl_sock_udp(sa, ls->addrlen, err, errlen)
                             : bl_sock_listen(sa, ls->addrlen, ls->backlog, 1, ls->sndbuf,
                                              ls->rcvbuf, err, errlen);
            if (fd < 0)
                rc = -1;
            g->fds[(size_t)i * cfg->nlistens + k] = fd;
        }
        /* Inherited sockets carry the old process's settings: this config's apply (a size
         * the new config drops stays, docs/configuration.md, listen). */
        for (int i = 0; rc == 0 && i < nworkers; i++)
            rc = listen_tune(g->fds[(size_t)i * cfg->nlistens + k], ls, NULL, i == 0, err,
                             errlen);
        if (rc != 0) {
            /* The process gave up root at start (`user`), as nginx's workers do, but unlike
             * nginx no master kept it: a privileged port needs a restart. */
            if (prev && ls->port < 1024 && geteuid() != 0) {
                size_t len = strlen(err);
                snprintf(err + len, errlen - len,
                         "; ports below 1024 cannot be bound after privileges were dropped "
                         "(\"user\"): restart ballast to listen on %s", ls->text);
            }
            generation_undo(g);
            return NULL;
        }
    }
    /* Before the carry: a state the carry replaces is freed with its counts. */
    if (bl_upstream_counts_init(cfg->groups, cfg->ngroups, (uint32_t)nworkers) != BL_OK) {
        snprintf(err, errlen, "out of memory");
        generation_undo(g);
        return NULL;
    }
    if (prev)
        bl_upstream_carry(cfg->groups, cfg->ngroups, prev->cfg->groups, prev->cfg->ngroups,
                          g->server_map);
    return g;
}

int bl_generation_build(struct bl_generation *g, struct bl_worker *ws, char *err,
                        size_t errlen)
{
    const struct bl_config *cfg = g->cfg;
    for (int i = 0; i < g->nworkers; i++) {
        struct bl_worker *w = &ws[i];
        struct bl_worker_gen *wg = bl_line_calloc(1, sizeof(*wg));
        if (!wg)
            goto oom;
        g->wgens[i] = wg;
        wg->gen = g;
        wg->w = w;
        wg->http.loop = w->loop;
        wg->http.cfg = cfg;
        wg->http.on_client_closed = on_client_closed;
        wg->http.stats = g->stats->workers[i];
        wg->http.current = &w->http_cur;
        wg->http.request_cache = (struct bl_freelist)BL_FREELIST_INIT(16);
        wg->stream.loop = w->loop;
        wg->stream.cfg = cfg;
        wg->stream.up = &wg->http.up;
        wg->stream.logs = &wg->http.logs;
        wg->stream.on_closed = on_session_closed;
        wg->stream.stats = g->stats->workers[i];
        /* Balancer state is made here, not on the worker thread, so that running out of
         * memory is a start-up (or reload) error rather than a dead worker. */
        if (bl_upstream_worker_init(&wg->http.up, w->loop, cfg->groups, cfg->ngroups,
                                    cfg->nupstream_servers, wg->http.stats->peers, err,
                                    errlen) != BL_OK)
            return BL_ERR;
        wg->http.up.worker = (uint32_t)i;
        wg->listeners = bl_line_calloc(cfg->nlistens + 1, sizeof(*wg->listeners));
        if (bl_access_logs_init(&wg->http.logs, w->loop, cfg) != BL_OK || !wg->listeners)
            goto oom;
        wg->nlisteners = cfg->nlistens;
        for (uint32_t k = 0; k < cfg->nlistens; k++) {
            struct bl_listener *l = &wg->listeners[k];
            l->w = w;
            l->listen = &cfg->listens[k];
            l->io.handler = on_accept;
            l->io.fd = -1;
        }
    }
    return BL_OK;
oom:
    snprintf(err, errlen, "out of memory");
    return BL_ERR;
}

void bl_generation_publish(struct bl_worker *ws, int n, struct bl_generation *g)
{
    atomic_store_explicit(&published, g, memory_order_release);
    uint64_t one = 1;
    for (int i = 0; i < n; i++) {
        ssize_t r = write(ws[i].wake.fd, &one, sizeof(one));
        (void)r;
    }
}

void bl_generation_free(struct bl_generation *g)
{
    if (!g)
        return;
    struct bl_generation *p = g;
    atomic_compare_exchange_strong(&published, &p, NULL);
    for (int i = 0; i < g->nworkers; i++) {
        struct bl_worker_gen *wg = g->wgens[i];
        if (!wg)
            continue;
        /* Never taken: nothing ran on it, its loop holds nothing of it. */
        bl_http_worker_free(&wg->http);
        free(wg->listeners);
        free(wg);
        g->wgens[i] = NULL;
    }
    struct bl_config *cfg = g->cfg;
    generation_undo(g);
    bl_conf_release(cfg);
}

struct bl_worker *bl_workers_create(struct bl_generation *g, int notify_fd, char *err,
                                    unsigned long errlen)
{
    int n = g->nworkers;
    struct bl_worker *ws = bl_line_calloc((size_t)n, sizeof(*ws));
    if (!ws) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        struct bl_worker *w = &ws[i];
        w->id = i + 1;
        w->notify_fd = notify_fd;
        w->loop = bl_loop_create_method((enum bl_loop_method)g->cfg->events_use, err, errlen);
        if (!w->loop)
            return NULL; /* NOLINT(clang-analyzer-unix.Malloc): start-up fails, main exits */
        if (i == 0 && bl_loop_fallback(w->loop))
            bl_log(BL_LOG_WARN, "\"use io_uring\" is not possible here: %s; using epoll",
                   bl_loop_fallback(w->loop));
        w->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->wake.handler = on_wake;
        if (w->wake.fd < 0 || bl_loop_add_level(w->loop, &w->wake) != BL_OK) {
            snprintf(err, errlen, "eventfd() failed (%s)", strerror(errno));
            return NULL;
        }
        w->shutdown_timer.handler = on_shutdown_timer;
        w->trim_timer.handler = on_trim_timer;
    }
    if (bl_generation_build(g, ws, err, errlen) != BL_OK)
        return NULL;
    uint32_t nl = g->cfg->nlistens;
    for (int i = 0; i < n; i++) {
        struct bl_worker *w = &ws[i];
        w->cur = g->wgens[i];
        g->wgens[i] = NULL;
        w->http_cur = &w->cur->http;
        for (uint32_t k = 0; k < nl; k++) {
            struct bl_listener *l = &w->cur->listeners[k];
            l->io.fd = g->fds[(size_t)i * nl + k];
            g->fds[(size_t)i * nl + k] = -1;
            if (listener_arm(w, l) != BL_OK) {
                snprintf(err, errlen, "epoll_ctl() failed (%s)", strerror(errno));
                return NULL;
            }
        }
        atomic_store(&w->seen, g->number);
    }
    atomic_store(&g->users, n);
    atomic_store_explicit(&published, g, memory_order_release);
    return ws;
}

int bl_workers_start(struct bl_worker *ws, int n, char *err, unsigned long errlen)
{
    for (int i = 0; i < n; i++) {
        int rc = pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
        if (rc != 0) {
            snprintf(err, errlen, "pthread_create() failed (%s)", strerror(rc));
            return BL_ERR;
        }
    }
    return BL_OK;
}

void bl_workers_shutdown(struct bl_worker *ws, int n, int handover)
{
    uint64_t one = 1;
    for (int i = 0; i < n; i++) {
        atomic_store_explicit(&ws[i].stop_requested, handover ? 2 : 1, memory_order_release);
        ssize_t r = write(ws[i].wake.fd, &one, sizeof(one));
        (void)r;
    }
}

void bl_workers_join(struct bl_worker *ws, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(ws[i].thread, NULL);
    for (int i = 0; i < n; i++) {
        struct bl_worker *w = &ws[i];
        while (w->old) {
            struct bl_worker_gen *o = w->old;
            w->old = o->next_old;
            if (!o->free_queued)
                wgen_free(o, w->loop);
        }
        wgen_free(w->cur, w->loop);
        close(w->wake.fd);
        bl_loop_destroy(w->loop);
    }
    free(ws);
}
