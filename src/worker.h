/* A worker: one thread with its own event loop, listening sockets, client connections,
 * upstream keep-alive pools and balancer state. Nothing in it is shared with other workers.
 */
#ifndef BL_WORKER_H
#define BL_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include "core/loop.h"
#include "http/proxy.h"

struct bl_config;
struct bl_listen;
struct bl_stats_set;

struct bl_listener {
    struct bl_io io;
    struct bl_worker *w;
    const struct bl_listen *listen;
    uint8_t paused;            /* removed from the loop at worker_connections */
};

struct bl_worker {
    int id;                    /* 1..N (0 is the control thread in logs) */
    pthread_t thread;
    struct bl_loop *loop;
    const struct bl_config *cfg;
    struct bl_io wake;         /* eventfd: the control thread asks for shutdown */
    struct bl_listener *listeners;
    uint32_t nlisteners;
    struct bl_http_worker http; /* the proxy's per-worker state: clients, upstream pools and
                                 * balancer state, access log buffers */
    struct bl_timer shutdown_timer;
    struct bl_timer trim_timer;   /* once a second: return freed memory after a burst */
    uint32_t trim_pending;        /* buffers freed to malloc since the last trim */
    uint8_t stopped;
};

/* Creates workers for cfg, each with its own listening sockets bound here (so that a bind
 * failure is reported before anything starts). Worker i counts into stats->workers[i]: stats
 * is made for cfg by bl_worker_stats_create() and outlives the workers. Control thread.
 * Returns an array of cfg->workers workers or NULL with err filled. */
struct bl_worker *bl_workers_create(const struct bl_config *cfg, struct bl_stats_set *stats,
                                    char *err, unsigned long errlen);

/* Zeroed statistics blocks for cfg->workers workers running cfg; NULL when out of memory. */
struct bl_stats_set *bl_worker_stats_create(const struct bl_config *cfg);

/* Starts the threads. */
int bl_workers_start(struct bl_worker *ws, int n, char *err, unsigned long errlen);

/* Asks every worker to drain and stop (async-signal-unsafe; control thread). */
void bl_workers_shutdown(struct bl_worker *ws, int n);

/* Waits for the threads and frees the workers. */
void bl_workers_join(struct bl_worker *ws, int n);

#endif
