/* Load-balancing algorithms: a small vtable per algorithm, one file each
 * (balancer_rr.c, ...), sharing round robin's bookkeeping where they can.
 *
 * Lifecycle
 * - init(): control thread, once per group when a config is compiled; builds process-wide data
 *   (a ring, a lookup table) into group->balancer_data. Returns BL_OK or BL_ERR with err filled.
 * - worker_size() / worker_init(): each worker thread owns worker_size(g) bytes of state per
 *   group (smooth round robin's current weights, a PRNG); worker_init() fills them. Either may
 *   be NULL (no per-worker state).
 * - pick(): worker thread, per attempt. Must not allocate or lock. Returns a server that is
 *   available (bl_server_available) and not yet tried by this request, preferring primaries and
 *   falling back to backups; NULL when there is none. The caller then calls bl_server_acquire().
 * - release(): worker thread, after the attempt, with feedback. May be NULL. When it is not,
 *   the caller calls it exactly once for every server pick() returned, whether the attempt
 *   succeeded or not (bounded-load hashing counts in-flight requests with it, least_time
 *   learns response times from it), with the request's struct bl_pick and p->now_ms
 *   refreshed to the time of the release.
 * - destroy(): control thread, when the config generation is freed. May be NULL.
 *
 * Keys. Hash methods hash p->key themselves, with the function nginx uses for the same method
 * (CRC32, see balancer_hash.c), so a key maps as it would under nginx: the caller only
 * evaluates KEY into p->key/p->key_len. p->hash is not read by the built-in balancers.
 * ip_hash reads p->client_addr instead (the client's address after realip).
 *
 * Retries. Keep one struct bl_pick per request across its attempts: set the bit of every
 * server tried in p->tried, refresh p->now_ms, and leave p->cursor alone. The cursor lets the
 * hash methods carry on where nginx would (the next point, the next rehash, the same
 * 20-tries budget before they fall back to round robin); zero is "first attempt".
 *
 * Names (bl_balancer_find), and the directive each stands for:
 *   "round_robin"      (no directive: the default)
 *   "least_conn"       least_conn;
 *   "ip_hash"          ip_hash;
 *   "hash"             hash KEY;
 *   "hash_consistent"  hash KEY consistent [bound=F];   bound=F sets group->hash_bound
 *   "hash_maglev"      hash KEY maglev;
 *   "random"           random [two [least_conn]];     "two" sets group->random_two
 *   "least_time"       least_time;
 * init() rejects, with a message in err, what no method accepts (a weight outside
 * 1..BL_WEIGHT_MAX, no primary server) and what a method forbids (backup servers with the
 * hash methods and ip_hash, bound= without consistent, two without random). A group has one
 * method: a second method directive is the config compiler's error to report.
 * docs/load-balancing.md says which method suits what.
 */
#ifndef BL_UPSTREAM_BALANCER_H
#define BL_UPSTREAM_BALANCER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "upstream/upstream.h"

struct bl_pick {
    struct bl_upstream_group *group;
    void *wstate;             /* this worker's state for this group (worker_size(g) bytes) */
    uint64_t now_ms;          /* cached clock */
    uint32_t hash;            /* hash methods: hash of the evaluated key */
    const char *key;          /* hash methods: the evaluated key */
    size_t key_len;
    const uint8_t *tried;     /* bit i set: servers[i] already tried by this request; or NULL */
    const struct sockaddr *client_addr; /* ip_hash: the client (AF_INET, AF_INET6; anything
                                         * else or NULL hashes like nginx's unix clients) */
    uint64_t cursor;          /* the balancer's place in this request: 0 before the first
                               * attempt, then left as pick() leaves it (see Retries above) */
};

struct bl_pick_feedback {
    int status;               /* HTTP status, or 0 when the attempt failed before one */
    int failed;               /* counts as a failure for proxy_next_upstream */
    uint64_t latency_us;      /* connect to end of response head */
    uint64_t bytes;           /* response bytes */
};

struct bl_balancer_ops {
    const char *name;         /* "round_robin", "least_conn", ... */
    int (*init)(struct bl_upstream_group *g, char *err, size_t errlen);
    size_t (*worker_size)(const struct bl_upstream_group *g);
    void (*worker_init)(struct bl_upstream_group *g, void *wstate);
    struct bl_upstream_server *(*pick)(struct bl_pick *p);
    void (*release)(struct bl_pick *p, struct bl_upstream_server *s,
                    const struct bl_pick_feedback *fb);
    void (*destroy)(struct bl_upstream_group *g);
    uint32_t flags;           /* BL_BALANCER_* below */
};

/* Largest weight= init() accepts: keeps weight * in-flight * slow-start units in 64 bits. */
#define BL_WEIGHT_MAX 1000000

#define BL_BALANCER_NO_BACKUP 0x1  /* backup servers are a config error (hash methods) */
#define BL_BALANCER_KEY       0x2  /* needs KEY: the caller evaluates it into p->key */
#define BL_BALANCER_CLIENT    0x4  /* needs p->client_addr (ip_hash) */
#define BL_BALANCER_BOUND     0x8  /* takes group->hash_bound (hash_consistent) */
#define BL_BALANCER_TWO       0x10 /* takes group->random_two (random) */
#define BL_BALANCER_ACTIVE    0x20 /* pick() reads state->active: the group keeps the shared
                                    * in-flight counts (group->shared_active) */

static inline int bl_pick_tried(const struct bl_pick *p, uint32_t i)
{
    return p->tried && (p->tried[i >> 3] & (1u << (i & 7)));
}

extern const struct bl_balancer_ops bl_balancer_rr;
extern const struct bl_balancer_ops bl_balancer_least_conn;
extern const struct bl_balancer_ops bl_balancer_ip_hash;
extern const struct bl_balancer_ops bl_balancer_hash;
extern const struct bl_balancer_ops bl_balancer_hash_consistent;
extern const struct bl_balancer_ops bl_balancer_hash_maglev;
extern const struct bl_balancer_ops bl_balancer_random;
extern const struct bl_balancer_ops bl_balancer_least_time;

/* The balancer called name (see Names above), or NULL. Any thread. */
const struct bl_balancer_ops *bl_balancer_find(const char *name);

#endif
