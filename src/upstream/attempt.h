/* Upstream attempts: which server a request goes to, its connection, what happens when it
 * fails, and the feedback to the balancer, passive health and outlier detection afterwards.
 * Shared by every front end (the L7 proxy today, an L4 proxy later): nothing here knows HTTP.
 * A status is whatever numeric answer the protocol has (an HTTP status), 0 when there is none.
 *
 * Life of one request's attempts (HAProxy's assign_server_and_queue() / h2o's socketpool: the
 * front end asks for a connected server and gets one, or a reason):
 *
 *   bl_attempt_first()        pick the first server and
 *                             acquire it; BL_ERR: no live server
 *   bl_attempt_connect()      a pooled or new connection to a->server, owned by the caller
 *     ... the front end sends, reads; on a response head: bl_attempt_answered()
 *   on a failure before the response reached the client:
 *     bl_attempt_resend_stale()  a reused keep-alive connection died: resend on a new one
 *     bl_attempt_failed()        report it; BL_OK: retrying on the next server (a->server),
 *                                BL_ERR: no retry, a->server still held
 *   bl_attempt_release()      end: connection back to the pool or closed, server released
 *                             with feedback (status, latency, failed, bytes); exactly once per
 *                             acquire, later calls do nothing
 *
 * A zeroed struct bl_attempt is a request that has made no attempt. Worker thread only.
 */
#ifndef BL_UPSTREAM_ATTEMPT_H
#define BL_UPSTREAM_ATTEMPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/stats.h"
#include "upstream/balancer.h"
#include "upstream/conn_pool.h"
#include "upstream/adaptive.h"
#include "upstream/queue.h"
#include "upstream/upstream.h"

/* proxy_next_upstream conditions (bl_retry_policy.next_upstream, the location's conf). */
#define BL_NEXT_ERROR          0x001u  /* connect error, reset, premature close */
#define BL_NEXT_TIMEOUT        0x002u  /* connect, send or read timeout */
#define BL_NEXT_INVALID_HEADER 0x004u  /* invalid or empty response head */
#define BL_NEXT_HTTP_500       0x008u
#define BL_NEXT_HTTP_502       0x010u
#define BL_NEXT_HTTP_503       0x020u
#define BL_NEXT_HTTP_504       0x040u
#define BL_NEXT_HTTP_403       0x080u
#define BL_NEXT_HTTP_404       0x100u
#define BL_NEXT_HTTP_429       0x200u
#define BL_NEXT_NON_IDEMPOTENT 0x400u  /* retry POST/PATCH/LOCK even after sending them */
#define BL_NEXT_OFF            0x800u  /* set alone by "off": no condition */

/* How an attempt failed. */
enum bl_attempt_error {
    BL_AE_ERROR = 0,   /* connect error, reset, closed before the answer */
    BL_AE_TIMEOUT,     /* connect, send or read timeout before the answer */
    BL_AE_INVALID,     /* invalid or too large answer (response head) */
    BL_AE_STATUS,      /* an answer whose status the policy names (proxy_next_upstream) */
};

/* What the front end's configuration and the request allow, for one retry decision. */
struct bl_retry_policy {
    uint64_t next_upstream;   /* BL_NEXT_* conditions */
    uint64_t tries;           /* attempts allowed in all; 0 = as many as there are servers */
    uint64_t timeout_ms;      /* no retry once this long since start_us; 0 = no limit */
    uint64_t start_us;        /* when the request began (bl_clock_us scale) */
    uint8_t non_idempotent;   /* the request may not be resent once sent (POST, ...) unless
                               * next_upstream has BL_NEXT_NON_IDEMPOTENT */
    uint8_t committed;        /* bytes reached the client, or request bytes already sent are
                               * gone: the request cannot be replayed */
};

/* One request's attempts. The front end reads server, conn, status and time_us, sets sent_any
 * when it writes request bytes and tls_key before connecting, and leaves the rest alone. */
struct bl_attempt {
    const void *tls_key;               /* the TLS context the front end speaks to upstreams
                                        * with (pooled connections must match); NULL: plain */
    uint8_t loop_reads;                /* the front end reads the connection only with
                                        * bl_loop_recv (core/loop.h): the loop may read it */
    struct bl_upstream_server *server; /* current (or last) attempt's server; NULL before */
    struct bl_upconn *conn;            /* its connection, NULL when none */
    struct bl_pick pick;               /* the balancer's place in this request */
    uint64_t start_us;                 /* when the current attempt's connection was asked for */
    uint64_t time_us;                  /* start to answer of the last answered attempt; 0 none */
    int status;                        /* last answer's status, 0 = none */
    uint32_t probe;                    /* outlier probation ticket of the attempt (0: none) */
    uint32_t worker;                   /* the worker that acquired server (its counts) */
    uint8_t tries;                     /* servers acquired (a stale resend is not a try) */
    uint8_t released;                  /* a->server released (feedback given) */
    uint8_t outcome_reported;          /* the outcome went to outlier detection */
    uint8_t retry_held;                /* the attempt holds a retry_budget slot */
    uint8_t sent_any;                  /* the attempt wrote request bytes (front end sets it) */
    uint8_t stale_retried;             /* resent once after a dead keep-alive connection */
    uint8_t tried[64];                 /* servers tried, bit per index (first 512 servers) */
};

/* Upstream state a worker owns: keep-alive pools and the balancers' per-worker state. */
struct bl_upstream_worker {
    struct bl_conn_pool pool;
    void **lb_state;                   /* indexed by group->index */
    uint32_t ngroups;
    struct bl_stats_peer *stats;       /* this worker's per-server counters, indexed by
                                        * server id (core/stats.h); NULL: not counted */
    struct bl_queue_worker queue;      /* upstream queues' wake-ups (loop NULL when no group
                                        * has a queue) */
    uint32_t worker;                   /* 0-based worker index: its slot in the servers'
                                        * per-worker counts (upstream.h); set by the caller
                                        * after init, 0 by default */
};

/* Sets up uw for groups[0..ngroups) with nservers servers in all: pools, and each balancer's
 * worker state (worker_init). stats: the worker's per-server counters (nservers of them), or
 * NULL. BL_OK, or BL_ERR with err filled (out of memory; uw is then freed). Control thread,
 * before the worker starts. */
int bl_upstream_worker_init(struct bl_upstream_worker *uw, struct bl_loop *loop,
                            struct bl_upstream_group *const *groups, uint32_t ngroups,
                            uint32_t nservers, struct bl_stats_peer *stats, char *err,
                            size_t errlen);

/* Frees what init allocated; the pool's connections must be closed (bl_conn_pool_drain). */
void bl_upstream_worker_free(struct bl_upstream_worker *uw);

/* The request's first server: the balancer's choice given the key (hash methods; NULL when
 * the method takes none) and the client's address (ip_hash; may be NULL), admitted by outlier
 * detection. Servers out for their own failures (max_fails) stay out until fail_timeout ends,
 * even when that leaves none (nginx 1.22). BL_OK: a->server is acquired; BL_ERR: no live
 * server (down, failed, full or ejected). */
int bl_attempt_first(struct bl_attempt *a, struct bl_upstream_worker *uw,
                     struct bl_upstream_group *g, const char *key, size_t key_len,
                     const struct sockaddr *client);

/* Whether g's first pick failed for lack of room: some server is at its max_conns (the case
 * `queue` waits for). Any thread. */
int bl_group_full(const struct bl_upstream_group *g);
/* Whether some server of g could take a request now. Any thread. */
int bl_group_has_room(const struct bl_upstream_group *g, uint64_t now_ms);

/* Whether any server of g is out for its own failures (max_fails within fail_timeout) at
 * now_ms: the front end then answers "no live upstreams" as nginx does (502) rather than
 * as for a group that checks, the operator or outlier detection took out. O(servers). */
int bl_group_failed(const struct bl_upstream_group *g, uint64_t now_ms);

/* A connection to a->server for owner, which gets its events through on_io / on_timeout:
 * a pooled one unless fresh, else a new one (u->connecting). Starts the attempt's clock and
 * clears sent_any. BL_OK with a->conn set, or BL_ERR with errno (the connect failed). */
int bl_attempt_connect(struct bl_attempt *a, struct bl_upstream_worker *uw, int fresh,
                       void *owner, bl_upconn_handler on_io, bl_upconn_handler on_timeout);

/* The attempt got its answer (status; 0 for a protocol without one): records status and
 * latency for the log and the balancer's feedback. */
void bl_attempt_answered(struct bl_attempt *a, int status);

/* Tells outlier detection how the attempt went, once per attempt: status (0 if none), and
 * gateway = 1 for a transport failure or an invalid answer. */
void bl_attempt_outcome(struct bl_attempt *a, int status, int gateway);

/* A reused keep-alive connection failed (kind) before anything came back: it was closed by
 * the server while idle, not the server's fault. Returns 1 when the request is to be resent
 * once on a new connection to the same server (a->conn is closed; call bl_attempt_connect
 * with fresh = 1), 0 otherwise. committed: as in bl_retry_policy, or an answer arrived. */
int bl_attempt_resend_stale(struct bl_attempt *a, enum bl_attempt_error kind, int committed);

/* The attempt failed (kind, and the status for BL_AE_STATUS). Reports it to passive health
 * (when it counts, see bl_attempt_counts_as_failure) and outlier detection, then retries if
 * p allows it, the retry budget admits it and the balancer has a server not yet tried (key and
 * client as for bl_attempt_first). BL_OK: the old connection is closed, the old server
 * released, a->server is the next one, acquired, with a->conn NULL: call bl_attempt_connect.
 * BL_AGAIN: a retry is allowed but every other server is full and the group has a queue: the
 * old connection is closed and the old server released; the caller may queue the request
 * and pick again with bl_attempt_first() (servers tried stay excluded). BL_ERR: no retry;
 * a->server and a->conn are untouched. */
int bl_attempt_failed(struct bl_attempt *a, struct bl_upstream_worker *uw,
                      const struct bl_retry_policy *p, enum bl_attempt_error kind, int status,
                      const char *key, size_t key_len, const struct sockaddr *client);

/* Ends the attempt: a->conn back to the pool when reusable (else closed) and a->conn = NULL;
 * a->server released once, with feedback to passive health (a success unless failed), outlier
 * probation and the balancer (status, latency, failed, bytes: answer bytes relayed). */
void bl_attempt_release(struct bl_attempt *a, int failed, int reusable, uint64_t bytes);

/* The BL_NEXT_HTTP_* bit of status, 0 for a status no condition names. */
uint64_t bl_next_upstream_status(int status);

/* Whether p allows another attempt after a failure of kind (status for BL_AE_STATUS), given
 * the tries made so far. Does not look at the retry budget. */
int bl_attempt_retry_allowed(const struct bl_attempt *a, const struct bl_retry_policy *p,
                             enum bl_attempt_error kind, int status);

/* Whether the failure counts against the server's max_fails: transport failures always, an
 * answer only when it is a 5xx or 429 that next_upstream names (nginx). */
int bl_attempt_counts_as_failure(uint64_t next_upstream, enum bl_attempt_error kind,
                                 int status);

#endif
