/* least_conn (nginx's): the available server with the fewest in-flight requests per unit of
 * weight; ties broken by smooth weighted round robin among the tied, so an idle group spreads
 * exactly by weight. Backups only when no primary is available.
 *
 * In-flight counts are the shared atomics (all workers), where nginx without a zone counts per
 * worker process. Weights are effective weights, so a server in slow start looks more loaded.
 * O(n) per pick, like nginx: docs/load-balancing.md says when to prefer "random two".
 */
#include "core/status.h"
#include "upstream/balancer_rr.h"
#include "upstream/slow_start.h"

static inline int64_t lc_active(const struct bl_upstream_server *s)
{
    int32_t a = atomic_load_explicit(&s->state->active, memory_order_relaxed);
    return a > 0 ? a : 0;
}

static struct bl_upstream_server *lc_pick_range(struct bl_pick *p, uint32_t from, uint32_t to)
{
    struct bl_upstream_group *g = p->group;
    struct bl_rr_worker *w = p->wstate;
    struct bl_upstream_server *best = NULL;
    int64_t best_active = 0, best_weight = 1;
    int many = 0;

    for (uint32_t i = from; i < to; i++) {
        struct bl_upstream_server *s = &g->servers[i];
        if (bl_pick_tried(p, i) || !bl_server_available(s, p->now_ms))
            continue;
        int64_t a = lc_active(s), ew = (int64_t)bl_server_effective_weight(s, p->now_ms);
        /* a/ew < best_active/best_weight, without dividing */
        if (!best || a * best_weight < best_active * ew) {
            best = s;
            best_active = a;
            best_weight = ew;
            many = 0;
        } else if (a * best_weight == best_active * ew) {
            many = 1;
        }
    }
    if (!best || !many)
        return best;

    /* Smooth round robin among the tied, starting at the first of them (nginx does the same). */
    struct bl_upstream_server *first = best, *tied = NULL;
    int64_t total = 0, tied_current = 0;
    for (uint32_t i = first->index; i < to; i++) {
        struct bl_upstream_server *s = &g->servers[i];
        if (bl_pick_tried(p, i) || !bl_server_available(s, p->now_ms))
            continue;
        int64_t a = lc_active(s), ew = (int64_t)bl_server_effective_weight(s, p->now_ms);
        if (a * best_weight != best_active * ew)
            continue; /* not tied (or another worker moved it since the first pass) */
        int64_t c = w->current[i] += ew;
        total += ew;
        if (!tied || c > tied_current) {
            tied = s;
            tied_current = c;
        }
    }
    if (!tied)
        return first;
    w->current[tied->index] -= total;
    return tied;
}

static int lc_init(struct bl_upstream_group *g, char *err, size_t errlen)
{
    return bl_rr_check_group(g, &bl_balancer_least_conn, err, errlen);
}

static struct bl_upstream_server *lc_pick(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    struct bl_upstream_server *s = lc_pick_range(p, 0, g->nprimary);
    if (!s)
        s = lc_pick_range(p, g->nprimary, g->nservers);
    return s;
}

const struct bl_balancer_ops bl_balancer_least_conn = {
    .name = "least_conn",
    .init = lc_init,
    .worker_size = bl_rr_worker_size,
    .worker_init = bl_rr_worker_init,
    .pick = lc_pick,
};
