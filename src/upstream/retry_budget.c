/* Retry budget: caps retries in flight to a share of the group's active requests. */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "core/units.h"
#include "upstream/retry_budget.h"

#define RETRY_MIN_DEFAULT 3
#define RETRY_MIN_MAX     1000000u

static int parse_uint(const char *s, uint32_t max, int percent, uint32_t *out)
{
    uint64_t v;
    if (bl_parse_uint(s, 0, max, percent, &v) != BL_OK)
        return BL_ERR;
    *out = (uint32_t)v;
    return BL_OK;
}

int bl_retry_budget_parse(struct bl_upstream_group *g, char *const *args, int nargs, char *err,
                          size_t errlen)
{
    if (g->retry_budget_set) {
        snprintf(err, errlen, "\"retry_budget\" directive is duplicate");
        return BL_ERR;
    }
    if (nargs < 1 || nargs > 2) {
        snprintf(err, errlen, "invalid number of arguments in \"retry_budget\" directive");
        return BL_ERR;
    }
    uint32_t percent, min = RETRY_MIN_DEFAULT;
    if (parse_uint(args[0], 100, 1, &percent) != BL_OK) {
        snprintf(err, errlen, "invalid value \"%s\" in \"retry_budget\" directive", args[0]);
        return BL_ERR;
    }
    if (nargs == 2) {
        if (strncmp(args[1], "min=", 4) != 0) {
            snprintf(err, errlen, "invalid parameter \"%s\"", args[1]);
            return BL_ERR;
        }
        if (parse_uint(args[1] + 4, RETRY_MIN_MAX, 0, &min) != BL_OK) {
            snprintf(err, errlen, "invalid value \"%s\" for \"min\"", args[1] + 4);
            return BL_ERR;
        }
    }
    g->retry_budget_set = 1;
    g->retry_budget_percent = percent;
    g->retry_budget_min = min;
    return BL_OK;
}

static void warn_refused(const struct bl_upstream_group *g, int32_t retries, int64_t limit,
                         int32_t active)
{
    _Atomic uint64_t *next = &g->gstate->retry_warn_ms;
    uint64_t now = bl_clock_ms, t = atomic_load_explicit(next, memory_order_relaxed);
    if (now < t ||
        !atomic_compare_exchange_strong_explicit(next, &t, now + 1000, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    bl_log(BL_LOG_WARN, "upstream \"%s\": retry refused by retry_budget %u%% min=%u (%d retries "
           "in flight, limit %lld for %d active requests)", g->name, g->retry_budget_percent,
           g->retry_budget_min, (int)retries, (long long)limit, (int)active);
}

int bl_retry_acquire(struct bl_upstream_group *g)
{
    struct bl_group_state *gs = g->gstate;
    if (!g->retry_budget_set) {
        atomic_fetch_add_explicit(&gs->retries, 1, memory_order_relaxed);
        return 1;
    }
    int32_t r = atomic_load_explicit(&gs->retries, memory_order_relaxed);
    for (;;) {
        int32_t active = atomic_load_explicit(&gs->active, memory_order_relaxed);
        int64_t limit = (int64_t)g->retry_budget_percent * (active > 0 ? active : 0) / 100;
        if (limit < (int64_t)g->retry_budget_min)
            limit = g->retry_budget_min;
        if (r >= limit) {
            warn_refused(g, r, limit, active);
            return 0;
        }
        if (atomic_compare_exchange_weak_explicit(&gs->retries, &r, r + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 1;
    }
}

void bl_retry_release(struct bl_upstream_group *g)
{
    atomic_fetch_sub_explicit(&g->gstate->retries, 1, memory_order_relaxed);
}
