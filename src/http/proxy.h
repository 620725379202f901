/* The L7 proxy: client connections, requests and upstream connections of one worker.
 * Every function here runs on the worker thread that owns the connection.
 */
#ifndef BL_HTTP_PROXY_H
#define BL_HTTP_PROXY_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/freelist.h"
#include "core/loop.h"
#include "core/stats.h"
#include "http/access_log.h"
#include "upstream/attempt.h"

struct bl_buf;
struct bl_client;
struct bl_request;
struct bl_config;
struct bl_listen;

/* What the L7 proxy keeps per worker. The worker (worker.h) embeds it and sets it up; the
 * proxy reaches nothing of the worker but this. */
struct bl_http_worker {
    struct bl_loop *loop;
    const struct bl_config *cfg;
    struct bl_upstream_worker up;      /* keep-alive pools, balancer state */
    struct bl_access_logs logs;
    struct bl_stats_worker *stats;     /* this worker's counters (core/stats.h); never NULL */
    struct bl_client *clients;         /* every open client connection (doubly linked) */
    uint32_t nclients;
    uint8_t draining;                  /* shutting down: no new keep-alive. 1: a stop, busy
                                        * connections close after their response; 2: a
                                        * hand-over (binary upgrade), a response announced as
                                        * keep-alive keeps its connection for one more request,
                                        * answered with Connection: close, so that a client
                                        * never sends on a connection closing under it */
    struct bl_freelist request_cache;  /* finished requests kept for reuse, so that a request
                                        * costs no malloc in the steady state; as many as were
                                        * in flight lately (the worker ticks it each second) */
    struct bl_buf *h2_rbuf;            /* HTTP/2 connections read into it (http2_recv_buffer_size):
                                        * nghttp2 takes each read whole, so one per worker */
    /* Called after a client connection closed or moved to another generation (the worker
     * resumes accepting, frees an old generation once unused, or stops once drained). */
    void (*on_client_closed)(struct bl_http_worker *hw);
    /* Reloads: the worker's state of the generation new requests run on (worker.c switches
     * it). A connection of an older generation moves there between requests: when its next
     * request starts, and when it turns idle. NULL: no reloads (tests). */
    struct bl_http_worker *const *current;
};

/* Takes a freshly accepted, non-blocking client socket from a listener of `listen`. Closes fd
 * on failure. */
void bl_http_accept(struct bl_http_worker *hw, const struct bl_listen *listen, int fd,
                    const struct sockaddr *peer, socklen_t peerlen);

/* Shutdown (hw->draining set first): with close_idle (a stop), closes idle keep-alive
 * connections and marks busy ones to close after their current response; without (a
 * hand-over), leaves them be: each gets its next request answered with Connection: close. */
void bl_http_drain(struct bl_http_worker *hw, int close_idle);

/* Reload: moves hw's idle keep-alive connections to *hw->current (closing those whose
 * listening address the new generation no longer has), so that an old generation is not held
 * by connections that are only waiting. */
void bl_http_adopt_idle(struct bl_http_worker *hw);

/* Force-closes every connection (shutdown_timeout expired). */
void bl_http_close_all(struct bl_http_worker *hw);

/* Once a second: the request cache gives back what recent demand does not need
 * (core/freelist.h). */
void bl_http_worker_tick(struct bl_http_worker *hw);

/* Frees what hw holds (request cache, access log buffers, upstream state) once its
 * connections are closed and the pools drained. */
void bl_http_worker_free(struct bl_http_worker *hw);

#endif
