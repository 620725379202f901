/* Worker threads: loop, listeners, accept, drain and stop. */
#include <errno.h>
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
#include "core/log.h"
#include "core/sock.h"
#include "core/stats.h"
#include "core/status.h"
#include "http/access_log.h"
#include "http/proxy.h"
#include "upstream/attempt.h"
#include "worker.h"

#define ACCEPT_BATCH 64

static void listener_pause(struct bl_worker *w, int pause)
{
    for (uint32_t i = 0; i < w->nlisteners; i++) {
        struct bl_listener *l = &w->listeners[i];
        if (l->io.fd < 0 || l->paused == pause)
            continue;
        if (pause)
            bl_loop_del(w->loop, &l->io);
        else
            bl_loop_add_level(w->loop, &l->io);
        l->paused = (uint8_t)pause;
    }
}

static void on_accept(struct bl_io *io, uint32_t ev)
{
    struct bl_listener *l = (struct bl_listener *)io;
    struct bl_worker *w = l->w;
    BL_UNUSED(ev);
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (w->http.nclients >= (uint32_t)w->cfg->worker_connections) {
            bl_log(BL_LOG_WARN, "%d worker_connections are not enough, not accepting",
                   w->cfg->worker_connections);
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
        bl_http_accept(&w->http, l->listen, fd, &peer.sa, len);
    }
}

/* A client connection closed: resume accepting, or stop a draining worker once none are
 * left. */
static void check_drained(struct bl_worker *w)
{
    if (w->listeners && w->http.nclients < (uint32_t)w->cfg->worker_connections &&
        !w->http.draining)
        listener_pause(w, 0);
    if (w->http.draining && w->http.nclients == 0 && !w->stopped) {
        w->stopped = 1;
        bl_loop_stop(w->loop);
    }
}

static void on_client_closed(struct bl_http_worker *hw)
{
    check_drained((struct bl_worker *)((char *)hw - offsetof(struct bl_worker, http)));
}

static void on_shutdown_timer(struct bl_timer *t)
{
    struct bl_worker *w = (struct bl_worker *)((char *)t - offsetof(struct bl_worker,
                                                                    shutdown_timer));
    if (w->http.nclients)
        bl_log(BL_LOG_WARN, "shutdown_timeout: closing %u connections", w->http.nclients);
    bl_http_close_all(&w->http);
    w->stopped = 1;
    bl_loop_stop(w->loop);
}

static void on_wake(struct bl_io *io, uint32_t ev)
{
    struct bl_worker *w = (struct bl_worker *)((char *)io - offsetof(struct bl_worker, wake));
    BL_UNUSED(ev);
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) != sizeof(v))
        return;
    if (w->http.draining)
        return;
    w->http.draining = 1;
    for (uint32_t i = 0; i < w->nlisteners; i++) {
        struct bl_listener *l = &w->listeners[i];
        if (l->io.fd >= 0) {
            if (!l->paused)
                bl_loop_del(w->loop, &l->io);
            close(l->io.fd);
            l->io.fd = -1;
        }
    }
    bl_conn_pool_drain(&w->http.up.pool);
    bl_http_drain(&w->http);
    bl_timer_set(w->loop, &w->shutdown_timer, bl_clock_ms + w->cfg->shutdown_timeout + 1);
    check_drained(w);
}

/* After a burst the buffers beyond the cache sit free in malloc's heap and still count in
 * RSS; once a second, if buffers were freed and none had to be allocated since, hand the free
 * pages back. Never during a burst: the pages would only fault back in. */
static void on_trim_timer(struct bl_timer *t)
{
    struct bl_worker *w = (struct bl_worker *)((char *)t - offsetof(struct bl_worker,
                                                                    trim_timer));
    uint32_t freed, allocated;
    bl_buf_overflow(&freed, &allocated);
    w->trim_pending += freed;
    if (allocated == 0 && w->trim_pending > 0) {
        malloc_trim(0);
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
    bl_access_log_flush(&w->http.logs);
    bl_http_close_all(&w->http);
    bl_conn_pool_drain(&w->http.up.pool);
    /* Run the deferred frees the closes queued. */
    bl_loop_stop(w->loop);
    bl_buf_drain();
    return NULL;
}

struct bl_stats_set *bl_worker_stats_create(const struct bl_config *cfg)
{
    return bl_stats_create((uint32_t)cfg->workers, cfg->nservers, cfg->nlocations,
                           cfg->nupstream_servers, cfg->nlistens);
}

struct bl_worker *bl_workers_create(const struct bl_config *cfg, struct bl_stats_set *stats,
                                    char *err, unsigned long errlen)
{
    int n = cfg->workers;
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
     * SO_REUSEPORT anyway (docs/configuration.md, listen). */
    for (uint32_t k = 0; k < cfg->nlistens; k++) {
        const struct bl_listen *ls = &cfg->listens[k];
        if (!ls->reuseport && bl_sock_probe_exclusive((const struct sockaddr *)&ls->addr,
                                                      ls->addrlen, err, errlen) != 0)
            return NULL;
    }
    struct bl_worker *ws = calloc((size_t)n, sizeof(*ws));
    if (!ws) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        struct bl_worker *w = &ws[i];
        w->id = i + 1;
        w->cfg = cfg;
        w->loop = bl_loop_create(err, errlen);
        if (!w->loop)
            return NULL;
        w->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->wake.handler = on_wake;
        if (w->wake.fd < 0 || bl_loop_add_level(w->loop, &w->wake) != BL_OK) {
            snprintf(err, errlen, "eventfd() failed (%s)", strerror(errno));
            return NULL;
        }
        w->shutdown_timer.handler = on_shutdown_timer;
        w->trim_timer.handler = on_trim_timer;
        w->http.loop = w->loop;
        w->http.cfg = cfg;
        w->http.on_client_closed = on_client_closed;
        w->http.stats = stats->workers[i];
        /* Balancer state is made here, not on the worker thread, so that running out of
         * memory is a start-up error rather than a dead worker. */
        if (bl_upstream_worker_init(&w->http.up, w->loop, cfg->groups, cfg->ngroups,
                                    cfg->nupstream_servers, w->http.stats->peers, err,
                                    errlen) != BL_OK)
            return NULL;
        w->listeners = calloc(cfg->nlistens + 1, sizeof(*w->listeners));
        if (bl_access_logs_init(&w->http.logs, w->loop, cfg) != BL_OK || !w->listeners) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        w->nlisteners = cfg->nlistens;
        for (uint32_t k = 0; k < cfg->nlistens; k++) {
            const struct bl_listen *ls = &cfg->listens[k];
            struct bl_listener *l = &w->listeners[k];
            l->w = w;
            l->listen = ls;
            l->io.handler = on_accept;
            l->io.fd = bl_sock_listen((const struct sockaddr *)&ls->addr, ls->addrlen,
                                      ls->backlog, 1, err, errlen);
            if (l->io.fd < 0)
                return NULL;
            if (bl_loop_add_level(w->loop, &l->io) != BL_OK) {
                snprintf(err, errlen, "epoll_ctl() failed (%s)", strerror(errno));
                return NULL;
            }
        }
    }
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

void bl_workers_shutdown(struct bl_worker *ws, int n)
{
    uint64_t one = 1;
    for (int i = 0; i < n; i++) {
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
        for (uint32_t k = 0; k < w->nlisteners; k++)
            if (w->listeners[k].io.fd >= 0)
                close(w->listeners[k].io.fd);
        bl_http_worker_free(&w->http);
        close(w->wake.fd);
        free(w->listeners);
        bl_loop_destroy(w->loop);
    }
    free(ws);
}
