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
#include "core/status.h"
#include "http/access_log.h"
#include "http/proxy.h"
#include "upstream/balancer.h"
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
        if (w->nclients >= (uint32_t)w->cfg->worker_connections) {
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
        bl_http_accept(l, fd, &peer.sa, len);
    }
}

void bl_worker_check_drained(struct bl_worker *w)
{
    if (w->listeners && w->nclients < (uint32_t)w->cfg->worker_connections && !w->draining)
        listener_pause(w, 0);
    if (w->draining && w->nclients == 0 && !w->stopped) {
        w->stopped = 1;
        bl_loop_stop(w->loop);
    }
}

static void on_shutdown_timer(struct bl_timer *t)
{
    struct bl_worker *w = (struct bl_worker *)((char *)t - offsetof(struct bl_worker,
                                                                    shutdown_timer));
    if (w->nclients)
        bl_log(BL_LOG_WARN, "shutdown_timeout: closing %u connections", w->nclients);
    bl_http_close_all(w);
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
    if (w->draining)
        return;
    w->draining = 1;
    for (uint32_t i = 0; i < w->nlisteners; i++) {
        struct bl_listener *l = &w->listeners[i];
        if (l->io.fd >= 0) {
            if (!l->paused)
                bl_loop_del(w->loop, &l->io);
            close(l->io.fd);
            l->io.fd = -1;
        }
    }
    bl_http_close_upstream_pools(w);
    bl_http_drain(w);
    bl_timer_set(w->loop, &w->shutdown_timer, bl_clock_ms + w->cfg->shutdown_timeout + 1);
    bl_worker_check_drained(w);
}

static void on_log_timer(struct bl_timer *t)
{
    struct bl_worker *w = (struct bl_worker *)((char *)t - offsetof(struct bl_worker, log_timer));
    bl_access_log_flush(w);
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
    /* Balancer state per group, owned by this thread. */
    const struct bl_config *cfg = w->cfg;
    for (uint32_t i = 0; i < cfg->ngroups; i++) {
        struct bl_upstream_group *g = cfg->groups[i];
        size_t size = g->balancer->worker_size ? g->balancer->worker_size(g) : 0;
        if (size) {
            w->lb_state[i] = calloc(1, size);
            if (!w->lb_state[i]) {
                bl_log(BL_LOG_EMERG, "out of memory for balancer state");
                exit(1);
            }
            if (g->balancer->worker_init)
                g->balancer->worker_init(g, w->lb_state[i]);
        }
    }
    bl_timer_set(w->loop, &w->trim_timer, bl_clock_ms + 1000);
    bl_loop_run(w->loop);
    bl_access_log_flush(w);
    bl_http_close_all(w);
    bl_http_close_upstream_pools(w);
    /* Run the deferred frees the closes queued. */
    bl_loop_stop(w->loop);
    for (uint32_t i = 0; i < cfg->ngroups; i++)
        free(w->lb_state[i]);
    bl_buf_drain();
    return NULL;
}

struct bl_worker *bl_workers_create(const struct bl_config *cfg, char *err, unsigned long errlen)
{
    int n = cfg->workers;
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
        w->log_timer.handler = on_log_timer;
        w->shutdown_timer.handler = on_shutdown_timer;
        w->trim_timer.handler = on_trim_timer;
        w->idle = calloc(cfg->nupstream_servers + 1, sizeof(*w->idle));
        w->lb_state = calloc(cfg->ngroups + 1, sizeof(void *));
        w->logs = calloc(cfg->naccess_logs + 1, sizeof(*w->logs));
        w->listeners = calloc(cfg->nlistens + 1, sizeof(*w->listeners));
        if (!w->idle || !w->lb_state || !w->logs || !w->listeners) {
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
        for (uint32_t k = 0; k < w->cfg->naccess_logs; k++)
            free(w->logs[k].data);
        close(w->wake.fd);
        free(w->idle);
        free(w->lb_state);
        free(w->logs);
        free(w->listeners);
        bl_loop_destroy(w->loop);
    }
    free(ws);
}
