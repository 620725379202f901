/* random [two [least_conn]] (nginx's): a server drawn at random in proportion to weight; with
 * "two", two distinct servers drawn that way and the one with fewer in-flight requests per
 * unit of (effective) weight taken. A draw that lands on an unusable server is drawn again;
 * after 20 such misses the request goes to round robin, as in nginx. On equal loads "two"
 * keeps the first draw, so an idle group still spreads exactly by weight (nginx keeps the
 * second, which leans slightly towards light servers).
 *
 * "two" is power-of-two-choices: near least_conn's balance at O(1) per pick with no shared
 * ordering, which is why nginx recommends it when several balancers share backends. Unlike
 * nginx, backups are allowed: they are used, by round robin, when no primary is available.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/status.h"
#include "upstream/balancer_rr.h"
#include "upstream/slow_start.h"

/* cursor: bit 63 started, bits 0..15 misses so far. */
#define RND_STARTED (1ull << 63)

static struct bl_upstream_server *random_pick(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    uint32_t tries = (uint32_t)p->cursor & 0xffff;
    if (tries > 20 || g->nprimary < 2)
        return bl_rr_pick_smooth(p);

    struct bl_upstream_server *c[2];
    uint32_t found = bl_rr_draw(p, g->balancer_data, g->random_two ? 2 : 1, c, &tries);
    p->cursor = RND_STARTED | tries;
    if (found == 0)
        return bl_rr_pick_smooth(p);
    if (found == 1)
        return c[0];

    int64_t a0 = atomic_load_explicit(&c[0]->state->active, memory_order_relaxed);
    int64_t a1 = atomic_load_explicit(&c[1]->state->active, memory_order_relaxed);
    int64_t w0 = (int64_t)bl_server_effective_weight(c[0], p->now_ms);
    int64_t w1 = (int64_t)bl_server_effective_weight(c[1], p->now_ms);
    return a1 * w0 < a0 * w1 ? c[1] : c[0]; /* a1/w1 < a0/w0 */
}

const struct bl_balancer_ops bl_balancer_random = {
    .name = "random",
    .init = bl_rr_weights_init,
    .worker_size = bl_rr_worker_size,
    .worker_init = bl_rr_worker_init,
    .pick = random_pick,
    .destroy = bl_rr_weights_destroy,
    .flags = BL_BALANCER_TWO,
};
