/* slow_start=TIME: a server that comes back (or joins a running group) ramps its weight
 * linearly from near zero to its configured weight over TIME, so a cold cache or JIT is not
 * handed its full share at once. Every balancer goes through these helpers.
 *
 * The ramp starts at state->up_since_ms: bl_server_report() sets it to the end of a passive
 * failure window; active health checks and the reload code set it to the moment a server is
 * marked up or added. 0 means "up since the start": no ramp.
 *
 * Weighted balancers (round robin, least_conn, least_time) use bl_server_effective_weight().
 * Hash balancers cannot scale a weight without moving keys around, so they admit a growing
 * share of the keys that map to a ramping server (bl_slow_start_admit) and send the rest on
 * as if the server were unavailable; the admitted set only grows, so keys move back once.
 *
 * Pure reads of atomics: any thread, no lock, no allocation.
 */
#ifndef BL_UPSTREAM_SLOW_START_H
#define BL_UPSTREAM_SLOW_START_H

#include <stdint.h>

#include "upstream/lb_hash.h"
#include "upstream/upstream.h"

/* Effective weights are in units of 1/BL_WEIGHT_UNIT of a configured weight, so a ramp can
 * start near zero even for weight=1. A power of two. */
#define BL_WEIGHT_UNIT 1024u

/* Where s is in its ramp, in [1, BL_WEIGHT_UNIT]; BL_WEIGHT_UNIT when it is not ramping. */
static inline uint32_t bl_slow_start_ramp(const struct bl_upstream_server *s, uint64_t now_ms)
{
    if (!s->slow_start_ms)
        return BL_WEIGHT_UNIT;
    uint64_t since = atomic_load_explicit(&s->state->up_since_ms, memory_order_relaxed);
    if (!since || now_ms >= since + s->slow_start_ms)
        return BL_WEIGHT_UNIT;
    if (now_ms <= since)
        return 1;
    uint64_t r = (now_ms - since) * BL_WEIGHT_UNIT / s->slow_start_ms;
    return r ? (uint32_t)r : 1;
}

/* The weight in effect (bl_server_weight: the config's or the operator's) in 1/BL_WEIGHT_UNIT
 * units, scaled down while s ramps up. >= 1. */
static inline uint64_t bl_server_effective_weight(const struct bl_upstream_server *s,
                                                  uint64_t now_ms)
{
    return (uint64_t)bl_server_weight(s) * bl_slow_start_ramp(s, now_ms);
}

/* Whether a key (or a random draw) h may go to s now: always once s has ramped up, else for
 * a share of the h values that grows with the ramp. The same h is admitted from some moment
 * on and stays admitted. */
static inline int bl_slow_start_admit(const struct bl_upstream_server *s, uint64_t now_ms,
                                      uint32_t h)
{
    uint32_t ramp = bl_slow_start_ramp(s, now_ms);
    /* salted: maglev places keys by bl_lb_mix32(h) itself */
    return ramp >= BL_WEIGHT_UNIT || (bl_lb_mix32(h ^ 0x9e3779b9u) & (BL_WEIGHT_UNIT - 1)) < ramp;
}

#endif
