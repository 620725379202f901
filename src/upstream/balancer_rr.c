/* Smooth weighted round robin (nginx's): each pick adds every server's weight to its current
 * weight, takes the largest and subtracts the total, so weights 5,1,1 give a a b a c a a. */
#include <stdlib.h>

#include "core/status.h"
#include "upstream/balancer.h"

/* Per worker: one current weight per server (nginx keeps them per worker process too). */
struct rr_worker {
    uint32_t n;
    int64_t current[];
};

static int rr_init(struct bl_upstream_group *g, char *err, size_t errlen)
{
    BL_UNUSED(err);
    BL_UNUSED(errlen);
    BL_UNUSED(g);
    return BL_OK;
}

static size_t rr_worker_size(const struct bl_upstream_group *g)
{
    return sizeof(struct rr_worker) + g->nservers * sizeof(int64_t);
}

static void rr_worker_init(struct bl_upstream_group *g, void *wstate)
{
    struct rr_worker *w = wstate;
    w->n = g->nservers;
    for (uint32_t i = 0; i < g->nservers; i++)
        w->current[i] = 0;
}

/* Picks among servers[from..to) with the smooth algorithm; NULL if none is usable. */
static struct bl_upstream_server *rr_pick_range(struct bl_pick *p, struct rr_worker *w,
                                                uint32_t from, uint32_t to)
{
    struct bl_upstream_group *g = p->group;
    struct bl_upstream_server *best = NULL;
    int64_t total = 0;
    for (uint32_t i = from; i < to; i++) {
        struct bl_upstream_server *s = &g->servers[i];
        if (bl_pick_tried(p, i) || !bl_server_available(s, p->now_ms))
            continue;
        w->current[i] += s->weight;
        total += s->weight;
        if (!best || w->current[i] > w->current[best->index])
            best = s;
    }
    if (best)
        w->current[best->index] -= total;
    return best;
}

static struct bl_upstream_server *rr_pick(struct bl_pick *p)
{
    struct rr_worker *w = p->wstate;
    struct bl_upstream_server *s = rr_pick_range(p, w, 0, p->group->nprimary);
    if (!s)
        s = rr_pick_range(p, w, p->group->nprimary, p->group->nservers);
    return s;
}

const struct bl_balancer_ops bl_balancer_rr = {
    .name = "round_robin",
    .init = rr_init,
    .worker_size = rr_worker_size,
    .worker_init = rr_worker_init,
    .pick = rr_pick,
};
