/* Upstream connections of one worker: connect, keep-alive pool per server, idle checks.
 *
 * The pool knows nothing of the protocol spoken on a connection. A connection in use belongs
 * to an owner (an L7 request, later an L4 session) that registers two handlers on it: on_io
 * for readiness (the connection's rready / wready / hup flags are set before the call) and
 * on_timeout for its timer. The pool never calls into the front end otherwise.
 *
 * Idle connections are kept most recently used first, up to the group's `keepalive` per
 * server and worker, for `keepalive_timeout`, `keepalive_requests` uses at most. Anything that
 * arrives on an idle connection (data, FIN, RST) closes it.
 *
 * Threads: a pool and its connections belong to one worker thread.
 */
#ifndef BL_UPSTREAM_CONN_POOL_H
#define BL_UPSTREAM_CONN_POOL_H

#include <stdint.h>

#include "core/loop.h"
#include "core/stats.h"
#include "upstream/upstream.h"

struct bl_buf;
struct bl_upconn;
struct ssl_st;
struct ssl_session_st;

/* bl_upconn.tls_want: a direction of a TLS connection waiting on the other one (the same
 * values as http/tls.h's BL_TLS_READ_WANTS_WRITE / BL_TLS_WRITE_WANTS_READ): the pool turns a
 * write edge into read readiness and the reverse while such a bit is set. */
#define BL_UPCONN_READ_WANTS_WRITE 0x1u
#define BL_UPCONN_WRITE_WANTS_READ 0x2u

typedef void (*bl_upconn_handler)(struct bl_upconn *u);

struct bl_upconn {
    struct bl_io io;
    struct bl_timer timer;             /* the owner's (connect/send/read) or the idle timeout */
    struct bl_deferred defer;
    /* owner and in sit in the second cache line, which the loop prefetches with the first
     * (core/loop.h, "Prefetch") */
    void *owner;                       /* NULL while idle in the pool */
    struct bl_buf *in;                 /* owner's input buffer; must be empty to be pooled */
    struct bl_conn_pool *pool;
    struct bl_upstream_server *server;
    bl_upconn_handler on_io;           /* owner's: readiness changed (flags below are set) */
    bl_upconn_handler on_timeout;      /* owner's: u->timer fired */
    bl_upconn_handler on_prefetch;     /* owner's, optional: prefetches (never reads) what its
                                        * on_io will touch of the owner, a few events ahead
                                        * (core/loop.h, "Prefetch"); reset by bl_upconn_get */
    struct bl_upconn *next, *prev;     /* idle list links */
    struct ssl_st *tls;                /* NULL: plain TCP; else the owner's TLS session, freed
                                        * with the connection and kept while it is pooled */
    const void *tls_key;               /* the TLS context the connection was made for (the
                                        * pool hands it only to owners asking the same); NULL:
                                        * plain */
    uint32_t nrequests;                /* uses so far, counted by the owner */
    uint8_t rready, wready, hup;       /* edge-triggered readiness, cleared by short I/O */
    uint8_t tls_want;                  /* BL_UPCONN_*_WANTS_* */
    uint8_t tls_handshake;             /* tls is set and its handshake is not done */
    uint8_t connecting;                /* connect() in progress: the owner clears it */
    uint8_t idle;                      /* in the pool */
    uint8_t loop_reads;                /* registered with bl_loop_add_recv: read only through
                                        * bl_loop_recv (core/loop.h) */
};

/* Idle keep-alive connections to one upstream server, most recently used first. */
struct bl_idle_list {
    struct bl_upconn *head;
    uint32_t count;
    struct ssl_session_st *tls_session; /* the last TLS session the server gave this worker
                                         * (proxy_ssl_session_reuse), for tls_session_key */
    const void *tls_session_key;
};

struct bl_conn_pool {
    struct bl_loop *loop;
    struct bl_idle_list *idle;         /* indexed by bl_upstream_server.id */
    uint32_t nservers;                 /* entries in idle[] */
    uint32_t nconns;                   /* open upstream connections, idle or not */
    uint8_t draining;                  /* shutting down: nothing goes back to the pool */
    struct bl_stats_peer *stats;       /* per-server connection gauges, indexed by server id
                                        * (core/stats.h); NULL: not counted */
};

/* Sets up an empty pool for servers with ids 0..nservers-1. BL_OK or BL_ERR (out of memory).
 * Any thread, before the pool's worker uses it. */
int bl_conn_pool_init(struct bl_conn_pool *p, struct bl_loop *loop, uint32_t nservers);

/* Closes every idle connection and frees the lists. Connections in use must be closed first.
 * Owner thread. */
void bl_conn_pool_free(struct bl_conn_pool *p);

/* Shutdown: closes the idle connections; from now on released ones are closed. */
void bl_conn_pool_drain(struct bl_conn_pool *p);

/* Reload: moves from's idle connections to the servers a new config kept into `to` (the new
 * config's pool of the same worker): map[old server id] is the kept server or NULL (map has
 * from->nservers entries; NULL map: nothing kept). Connections to servers that went away, or
 * beyond the new group's `keepalive`, are closed; from then on `from` closes what is released
 * into it (as bl_conn_pool_drain). Owner thread. */
void bl_conn_pool_adopt(struct bl_conn_pool *to, struct bl_conn_pool *from,
                        struct bl_upstream_server *const *map);

/* A connection to s for owner: the most recently used idle one made for tls_key (NULL: a
 * plain one) and loop_reads unless allow_pooled is 0, else a new one whose connect is in progress
 * (u->connecting, u->tls NULL: the owner starts TLS). Returns NULL with errno set (the
 * connect failed at once, or ENOMEM). The handlers are the owner's until release or close. A
 * reused connection's timer is disarmed and its flags say what the kernel said last: the owner
 * sets wready (an idle connection has room to send). loop_reads: a new plain connection is
 * registered with bl_loop_add_recv, for an owner that reads it only with bl_loop_recv (not
 * splice or recv); otherwise with bl_loop_add. */
struct bl_upconn *bl_upconn_get(struct bl_conn_pool *p, struct bl_upstream_server *s,
                                const void *tls_key, int loop_reads, int allow_pooled,
                                void *owner,
                                bl_upconn_handler on_io, bl_upconn_handler on_timeout);

/* proxy_ssl_session_reuse: the session kept for u's server and TLS context in this worker
 * (NULL: none; the pool keeps its reference), and storing a new one (the pool takes sess's
 * reference and drops the one it had). Owner thread. */
struct ssl_session_st *bl_upconn_tls_session(const struct bl_upconn *u);
void bl_upconn_tls_session_set(struct bl_upconn *u, struct ssl_session_st *sess);

/* The owner is done with u: back to the pool when reusable, the group keeps idle connections,
 * there is room, it has not served keepalive_requests and no unread input is left; closed
 * otherwise. u may be freed (after this loop turn): the caller drops its pointer. */
void bl_upconn_release(struct bl_upconn *u, int reusable);

/* Closes u (in use or idle); its memory is freed after the current batch of events. */
void bl_upconn_close(struct bl_upconn *u);

#endif
