/* The L4 (TCP) proxy: stream sessions of one worker. A session pairs one client connection
 * with one upstream connection picked by the upstream layer (upstream/attempt.h, the same
 * groups, balancers and health as http) and relays bytes both ways through two bounded
 * buffers (proxy_buffer_size each): a full buffer stops reading its source, so memory per
 * session does not grow with the transfer. A FIN from one side is passed on as shutdown
 * (SHUT_WR) to the other once its buffer is sent; the session ends when both directions have
 * ended, on an error, or after proxy_timeout without a byte moving either way.
 *
 * Failover: until the upstream connection is established nothing has been read from the
 * client, so a refused or timed-out connect moves to the next server (proxy_next_upstream,
 * _tries, _timeout) unseen by the client. After that, a failed upstream closes the client
 * (nginx's stream module does the same).
 *
 * A session is logged when it ends (access_log in stream, http/access_log.h) with $status 200
 * once connected, 502 when no connect succeeded, 503 when no server was live.
 *
 * Every function runs on the worker thread that owns the sessions.
 */
#ifndef BL_STREAM_STREAM_H
#define BL_STREAM_STREAM_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"
#include "upstream/attempt.h"

struct bl_access_logs;
struct bl_config;
struct bl_listen;
struct bl_stream_session;
struct bl_udp_table;
struct bl_stats_worker;

/* What the stream proxy keeps per worker and generation. The worker embeds and sets it up. */
struct bl_stream_worker {
    struct bl_loop *loop;
    const struct bl_config *cfg;
    struct bl_upstream_worker *up;          /* the worker's upstream state for this generation
                                             * (shared with http: one layer, two front ends) */
    struct bl_access_logs *logs;            /* the worker's access log buffers (http's) */
    struct bl_stream_session *sessions;     /* open sessions (doubly linked) */
    uint32_t nsessions;                     /* TCP and UDP (stream/udp.h) sessions */
    struct bl_udp_table *udp;               /* UDP sessions by client; NULL before the first */
    struct bl_stats_worker *stats;          /* the worker's counters (stream_stats.h); NULL:
                                             * not counted */
    /* Called after a session closed (the worker resumes accepting, frees an old generation
     * once unused, or stops once drained). */
    void (*on_closed)(struct bl_stream_worker *sw);
};

/* Takes a freshly accepted, non-blocking client socket from a stream listener (listen->stream
 * set) and starts its session. Closes fd on failure. */
void bl_stream_accept(struct bl_stream_worker *sw, const struct bl_listen *listen, int fd,
                      const struct sockaddr *peer, socklen_t peerlen);

/* Closes every session at once (shutdown_timeout expired, or the worker stops). */
void bl_stream_close_all(struct bl_stream_worker *sw);

#endif
