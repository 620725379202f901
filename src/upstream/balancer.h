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
 * - release(): worker thread, after the attempt, with feedback. May be NULL.
 * - destroy(): control thread, when the config generation is freed. May be NULL.
 */
#ifndef BL_UPSTREAM_BALANCER_H
#define BL_UPSTREAM_BALANCER_H

#include <stddef.h>
#include <stdint.h>

#include "upstream/upstream.h"

struct bl_pick {
    struct bl_upstream_group *group;
    void *wstate;             /* this worker's state for this group (worker_size(g) bytes) */
    uint64_t now_ms;          /* cached clock */
    uint32_t hash;            /* hash methods: hash of the evaluated key */
    const char *key;          /* hash methods: the evaluated key */
    size_t key_len;
    const uint8_t *tried;     /* bit i set: servers[i] already tried by this request; or NULL */
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
};

static inline int bl_pick_tried(const struct bl_pick *p, uint32_t i)
{
    return p->tried && (p->tried[i >> 3] & (1u << (i & 7)));
}

extern const struct bl_balancer_ops bl_balancer_rr;

#endif
