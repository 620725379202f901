/* A worker: one thread with its own event loop, listening sockets, client connections,
 * upstream keep-alive pools and balancer state. Nothing in it is shared with other workers,
 * except the configuration generations it runs (read-only, refcounted).
 *
 * Generations (reloads, docs/operations.md "Reload"): a generation is one compiled config
 * with its statistics and the listening sockets opened for it. The control thread builds a
 * generation whole (including each worker's part: proxy state, pools, balancer state,
 * listeners), then publishes it and wakes every worker; a worker switches within one loop
 * turn: new connections and requests run on the new generation; a request in flight finishes
 * on the one it started on, and its connection moves over once the request ends. A worker's
 * part of an old generation is freed on the worker once no connection uses it; the shared
 * part is freed by the control thread once no worker uses it (struct bl_generation.users).
 */
#ifndef BL_WORKER_H
#define BL_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/loop.h"
#include "http/proxy.h"
#include "stream/stream.h"

struct bl_config;
struct bl_listen;
struct bl_stats_set;
struct bl_upstream_server;
struct bl_worker;
struct bl_generation;

struct bl_listener {
    struct bl_io io;
    struct bl_worker *w;
    const struct bl_listen *listen;
    uint8_t paused;            /* removed from the loop at worker_connections */
    uint8_t multishot;         /* registered with bl_loop_add_accept (else readiness) */
    /* Connections a multishot accept (io_uring, bl_loop_add_accept) took from the kernel
     * while the listener was paused or being cancelled: they wait here, as they would in the
     * listen queue, until the listener resumes (or closes with it). */
    int *held;
    uint32_t nheld, held_cap;
};

/* One worker's part of one generation. */
struct bl_worker_gen {
    struct bl_http_worker http;   /* the proxy's per-worker state: clients, upstream pools and
                                   * balancer state, access log buffers */
    struct bl_stream_worker stream; /* the L4 proxy's sessions (sharing http.up) */
    struct bl_generation *gen;
    struct bl_worker *w;
    struct bl_listener *listeners; /* by position in gen->cfg->listens; fds set at switch */
    uint32_t nlisteners;
    struct bl_worker_gen *next_old; /* the worker's older generations still in use */
    struct bl_deferred free_later;
    uint8_t free_queued;
};

/* A generation: shared by every worker, built and freed by the control thread. */
struct bl_generation {
    uint64_t number;              /* 1 at start, one more per reload */
    struct bl_config *cfg;
    struct bl_stats_set *stats;   /* made for cfg; worker i counts into stats->workers[i] */
    int nworkers;
    struct bl_worker_gen **wgens; /* [nworkers]: each worker takes its own at switch (the slot
                                   * is then NULL) */
    int *fds;                     /* [nworkers][cfg->nlistens]: sockets opened for addresses
                                   * the previous generation did not listen on; -1 where the
                                   * worker keeps its socket of the previous generation. A
                                   * worker takes its own (the slot is then -1) */
    struct bl_upstream_server **server_map; /* by the previous generation's server id: the
                                   * server kept in this one, or NULL (conn_pool adoption) */
    uint64_t prev_number;         /* the generation server_map and fds are relative to */
    _Atomic int32_t users;        /* workers that still run something of it */
    /* Control thread only (reload.c). */
    uint64_t *snapshot;           /* statistics summed when it stopped being current */
    uint64_t reload_start_us;     /* when the reload that made it began */
    uint8_t announced;            /* every worker runs it (logged) */
    struct bl_generation *next;   /* reload.c's list of live generations */
};

struct bl_worker {
    /* Its own cache lines in the array (bl_line_calloc): no line holds two workers' fields. */
    _Alignas(64) int id;                       /* 1..N (0 is the control thread in logs) */
    pthread_t thread;
    struct bl_loop *loop;
    struct bl_worker_gen *cur;    /* the generation new connections and requests run on */
    struct bl_http_worker *http_cur; /* &cur->http: what every bl_http_worker.current points
                                   * at */
    struct bl_worker_gen *old;    /* older generations with connections left */
    struct bl_io wake;            /* eventfd: the control thread asks for a switch or stop */
    _Atomic uint8_t stop_requested;
    _Atomic uint64_t seen;        /* number of the generation it switched to (control reads) */
    int notify_fd;                /* control thread's eventfd: a generation was adopted or
                                   * released (-1: none) */
    struct bl_timer shutdown_timer;
    struct bl_timer trim_timer;   /* once a second: return freed memory after a burst */
    uint32_t trim_pending;        /* buffers freed to malloc since the last trim */
    uint8_t draining;
    uint8_t stopped;
    uint8_t accept_near_full;     /* a listener left multishot accept near worker_connections
                                   * (worker.c, ACCEPT_MULTISHOT_ROOM) */
};

/* ---- generations (control thread) */

/* A generation for cfg (taking ownership of it on success) run by nworkers workers, after
 * prev (NULL at start): its statistics, the listening sockets of addresses prev lacks
 * (`listen ... reuseport`-less addresses are first probed for another process listening
 * there), and, with prev, the servers prev's kept (the runtime state of a server that keeps
 * its identity is shared from then on, bl_upstream_carry). Worker parts are built by
 * bl_generation_build(). NULL with err filled naming the address or out of memory; cfg is
 * then still the caller's, and prev untouched (a carried state is given back). */
struct bl_generation *bl_generation_create(struct bl_config *cfg, int nworkers,
                                           const struct bl_generation *prev, char *err,
                                           size_t errlen);

/* Builds each worker's part of g (the workers' loops must exist). BL_OK, or BL_ERR with err
 * filled (out of memory). */
int bl_generation_build(struct bl_generation *g, struct bl_worker *ws, char *err,
                        size_t errlen);

/* Makes g the generation workers switch to and wakes them. */
void bl_generation_publish(struct bl_worker *ws, int n, struct bl_generation *g);

/* Frees g: its config, statistics, worker parts never taken and sockets never taken. Only
 * once no worker uses it (users == 0 and every worker's `seen` is past it), or after the
 * workers are joined. */
void bl_generation_free(struct bl_generation *g);

/* ---- workers (control thread) */

/* Creates cfg->workers workers running g (built here), each with its own listening sockets
 * (g->fds, all opened by bl_generation_create). notify_fd: an eventfd the control thread
 * watches (-1: none). Returns the array or NULL with err filled. */
struct bl_worker *bl_workers_create(struct bl_generation *g, int notify_fd, char *err,
                                    unsigned long errlen);

/* Zeroed statistics blocks for cfg->workers workers running cfg; NULL when out of memory. */
struct bl_stats_set *bl_worker_stats_create(const struct bl_config *cfg);

/* Starts the threads. */
int bl_workers_start(struct bl_worker *ws, int n, char *err, unsigned long errlen);

/* Asks every worker to drain and stop (async-signal-unsafe; control thread). Listeners close
 * at once, requests in flight finish. handover = 0 (a stop): idle keep-alive connections
 * close now. handover = 1 (a binary upgrade, another process took the listeners): they stay
 * until their next request, answered with Connection: close, or their keep-alive timeout, so
 * that no client loses a request it sent on an idle connection as it closed. */
void bl_workers_shutdown(struct bl_worker *ws, int n, int handover);

/* ---- binary upgrade (control thread) */

/* Writes the listening sockets of the generation every worker runs into fds[*nfds] and
 * describes them in buf as "ADDR=#I,#J,...;ADDR=..." (ADDR as `listen` prints it, one #index
 * into fds per worker; whoever passes them on puts the descriptor numbers the new process
 * will have in place of the indexes, the form bl_generation_inherit() reads). BL_OK, or BL_ERR
 * when buf or fds is too small. */
int bl_workers_listen_fds(struct bl_worker *ws, int n, char *buf, size_t len, int *fds,
                          int *nfds, int maxfds);

/* In the new process of an upgrade, before the first bl_generation_create(): the sockets
 * inherited in the form bl_workers_listen_fds() writes. The first generation takes them for
 * its addresses (no probe, no bind: the accept queues go on as they are), opening more with
 * SO_REUSEPORT when it has more workers; bl_generation_inherit_done() closes those it did not
 * take. BL_OK, or BL_ERR with err filled (malformed). */
int bl_generation_inherit(const char *spec, char *err, size_t errlen);
void bl_generation_inherit_done(void);

/* An inherited socket for addr that no generation takes (the admin API's), or -1. */
int bl_generation_take_inherited(const char *addr);

/* Waits for the threads and frees the workers and their parts of every generation (the
 * generations themselves stay the caller's). */
void bl_workers_join(struct bl_worker *ws, int n);

#endif
