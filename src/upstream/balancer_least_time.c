/* least_time: power of two choices over expected response time. Two distinct servers are drawn
 * in proportion to weight (as "random two") and the one with the lower cost is taken:
 *
 *     cost = latency * (1 + in_flight / weight)
 *
 * latency is a peak-EWMA of the server's response times (Finagle's and Linkerd's PeakEWMA):
 * a slower response replaces it at once, faster ones pull it down by 1/8 each, and it decays
 * towards zero with a half-life of 7 s while nobody feeds it, so a server that was slow once
 * gets a fresh look instead of being shunned for good. in_flight / weight reads the weight as
 * how many requests a server serves at once, so the cost is the time a new request would wait
 * there. On equal costs the first draw wins: an idle group with equal latencies spreads by
 * weight. A server never measured costs nothing while idle (so it gets measured) and a
 * penalty latency while busy (so it is not flooded before its first answer).
 *
 * release() feeds the latency (connect to end of response head); a failed attempt counts as at
 * least LT_FAIL_US, so a server that fails fast does not attract traffic for being fast.
 * Backups are used, by round robin, when no primary is available.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/status.h"
#include "upstream/balancer_rr.h"
#include "upstream/slow_start.h"

#define LT_HALF_LIFE_MS 7000
#define LT_PENALTY_US   1000000 /* latency of a busy server never measured */
#define LT_FAIL_US      1000000 /* least latency a failed attempt counts for */

#define LT_STARTED (1ull << 63)

/* v * 2^(-dt / half-life): whole half-lives by shifting, the rest by the chord of 2^-x on
 * [0, 1] (within 6%); never decays a measured value to 0, which means "not measured". */
static uint64_t lt_decay(uint64_t v, uint64_t dt_ms)
{
    if (!v || !dt_ms)
        return v;
    uint64_t k = dt_ms / LT_HALF_LIFE_MS;
    if (k >= 40)
        return 1;
    v >>= k;
    v -= v * (dt_ms % LT_HALF_LIFE_MS) / (2 * LT_HALF_LIFE_MS);
    return v ? v : 1;
}

/* The server's latency now, in microseconds (0: never measured). */
static uint64_t lt_latency(const struct bl_upstream_server *s, uint64_t now_ms)
{
    uint64_t v = atomic_load_explicit(&s->state->ewma_latency_us, memory_order_relaxed);
    uint64_t at = atomic_load_explicit(&s->state->ewma_stamp_ms, memory_order_relaxed);
    return lt_decay(v, now_ms > at ? now_ms - at : 0);
}

static double lt_cost(const struct bl_upstream_server *s, uint64_t now_ms)
{
    int32_t a = atomic_load_explicit(&s->state->active, memory_order_relaxed);
    double active = a > 0 ? a : 0;
    uint64_t lat = lt_latency(s, now_ms);
    if (!lat)
        lat = active > 0 ? LT_PENALTY_US : 0;
    double weight = (double)bl_server_effective_weight(s, now_ms) / BL_WEIGHT_UNIT;
    return (double)lat * (1.0 + active / weight);
}

static struct bl_upstream_server *lt_pick(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    uint32_t tries = (uint32_t)p->cursor & 0xffff;
    if (tries > 20 || g->nprimary < 2)
        return bl_rr_pick_smooth(p);

    struct bl_upstream_server *c[2];
    uint32_t found = bl_rr_draw(p, g->balancer_data, 2, c, &tries);
    p->cursor = LT_STARTED | tries;
    if (found == 0)
        return bl_rr_pick_smooth(p);
    if (found == 1)
        return c[0];
    return lt_cost(c[1], p->now_ms) < lt_cost(c[0], p->now_ms) ? c[1] : c[0];
}

/* Feeds the peak-EWMA. Two fields, no lock: when two workers report at once one report may
 * be lost, which an average can afford. */
static void lt_release(struct bl_pick *p, struct bl_upstream_server *s,
                       const struct bl_pick_feedback *fb)
{
    if (!s || !fb)
        return;
    uint64_t rtt = fb->latency_us ? fb->latency_us : 1;
    if (fb->failed && rtt < LT_FAIL_US)
        rtt = LT_FAIL_US;
    uint64_t old = lt_latency(s, p->now_ms);
    uint64_t v = (!old || rtt >= old) ? rtt : old - (old - rtt) / 8;
    atomic_store_explicit(&s->state->ewma_latency_us, v, memory_order_relaxed);
    atomic_store_explicit(&s->state->ewma_stamp_ms, p->now_ms, memory_order_relaxed);
}

const struct bl_balancer_ops bl_balancer_least_time = {
    .name = "least_time",
    .flags = BL_BALANCER_ACTIVE,
    .init = bl_rr_weights_init,
    .worker_size = bl_rr_worker_size,
    .worker_init = bl_rr_worker_init,
    .pick = lt_pick,
    .release = lt_release,
    .destroy = bl_rr_weights_destroy,
};
