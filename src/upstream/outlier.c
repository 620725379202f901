/* Outlier detection: consecutive-failure ejection with half-open probation (outlier.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/status.h"
#include "core/units.h"
#include "upstream/outlier.h"

#define MAX_TIME_MS (7ull * 86400 * 1000)
#define MAX_COUNT   1000000u

/* ------------------------------------------------------------------ the state word */

static inline uint64_t st_of(uint64_t w) { return w >> BL_OUTLIER_ST_SHIFT; }
static inline uint64_t time_of(uint64_t w) { return w & BL_OUTLIER_TIME_MASK; }
static inline uint64_t ticket_bits(uint64_t w)
{
    return w & (BL_OUTLIER_TICKET_MASK << BL_OUTLIER_TICKET_SHIFT);
}
static inline uint32_t ticket_of(uint64_t w)
{
    return (uint32_t)((w >> BL_OUTLIER_TICKET_SHIFT) & BL_OUTLIER_TICKET_MASK);
}

/* A word in state st carrying w's ticket and time t (clamped to the field). */
static inline uint64_t word(uint64_t st, uint64_t w, uint64_t t)
{
    if (t > BL_OUTLIER_TIME_MASK)
        t = BL_OUTLIER_TIME_MASK;
    return (st << BL_OUTLIER_ST_SHIFT) | ticket_bits(w) | t;
}

static inline _Atomic uint64_t *word_of(const struct bl_upstream_server *s)
{
    return &s->state->probation_until_ms;
}

/* "30s", "1500ms", "5m" */
static const char *fmt_ms(char *buf, size_t len, uint64_t ms)
{
    if (ms >= 60000 && ms % 60000 == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, len, "%llums", (unsigned long long)ms);
    return buf;
}

/* The multiplier after relaxation: one off per interval spent in service since it came back
 * (in-service word w). */
static uint32_t relaxed_ejections(const struct bl_upstream_server *s, uint64_t w,
                                  uint64_t now_ms)
{
    uint32_t k = atomic_load_explicit(&s->state->ejections, memory_order_relaxed);
    uint64_t since = time_of(w);
    if (!k || st_of(w) != BL_OUTLIER_ST_SERVICE || !since || now_ms <= since)
        return k;
    uint64_t steps = (now_ms - since) / s->group->outlier->interval_ms;
    return steps >= k ? 0 : k - (uint32_t)steps;
}

static uint32_t ejection_cap(const struct bl_upstream_group *g)
{
    uint64_t cap = (uint64_t)g->nservers * g->outlier->max_ejection_percent / 100;
    return cap ? (uint32_t)cap : 1;
}

/* gstate->ejected - 1, never below 0 (a state carried over a reload without recount). */
static void ejected_dec(struct bl_group_state *gs)
{
    int32_t n = atomic_load_explicit(&gs->ejected, memory_order_relaxed);
    while (n > 0 && !atomic_compare_exchange_weak_explicit(&gs->ejected, &n, n - 1,
                                                           memory_order_relaxed,
                                                           memory_order_relaxed))
        ;
}

/* Ejected s whose time is up -> probation. Returns 1 if this call moved it. */
static int expire(const struct bl_upstream_server *s, uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(word_of(s), memory_order_acquire);
    if (st_of(w) != BL_OUTLIER_ST_EJECTED ||
        now_ms < atomic_load_explicit(&s->state->ejected_until_ms, memory_order_relaxed))
        return 0;
    /* No probe out, so the time field is unused until the first probe. */
    if (!atomic_compare_exchange_strong_explicit(word_of(s), &w,
                                                 word(BL_OUTLIER_ST_PROBATION, w, 0),
                                                 memory_order_acq_rel, memory_order_acquire))
        return 0;
    ejected_dec(s->group->gstate);
    bl_log(BL_LOG_NOTICE, "upstream \"%s\" server %s: ejection over, on probation (one request "
           "at a time until one succeeds)", s->group->name, s->name);
    return 1;
}

/* Moves every server of g whose ejection is over to probation, so that servers nobody has
 * looked at since (hash methods look at few) do not hold the cap. */
static void sweep(const struct bl_upstream_group *g, uint64_t now_ms)
{
    for (uint32_t i = 0; i < g->nservers; i++)
        expire(&g->servers[i], now_ms);
}

/* Ejects s (in service or on probation, word w) unless the cap forbids it. why: for the log. */
static void eject(struct bl_upstream_server *s, const char *why, uint64_t now_ms)
{
    struct bl_server_state *st = s->state;
    struct bl_upstream_group *g = s->group;
    const struct bl_outlier_conf *oc = g->outlier;
    uint64_t w = atomic_load_explicit(word_of(s), memory_order_acquire);
    for (;;) {
        uint64_t state = st_of(w);
        if (state != BL_OUTLIER_ST_SERVICE && state != BL_OUTLIER_ST_PROBATION)
            return; /* another thread got there first */
        if (atomic_compare_exchange_weak_explicit(word_of(s), &w,
                                                  word(BL_OUTLIER_ST_EJECTING, w, 0),
                                                  memory_order_acq_rel, memory_order_acquire))
            break;
    }
    /* s is ours until we publish EJECTED or SERVICE. */
    atomic_store_explicit(&st->consecutive_5xx, 0, memory_order_relaxed);
    atomic_store_explicit(&st->consecutive_gateway, 0, memory_order_relaxed);

    uint32_t cap = ejection_cap(g);
    int swept = 0;
    int32_t n = atomic_load_explicit(&g->gstate->ejected, memory_order_relaxed);
    for (;;) {
        if ((uint32_t)(n < 0 ? 0 : n) >= cap) {
            if (!swept) {
                swept = 1;
                sweep(g, now_ms);
                n = atomic_load_explicit(&g->gstate->ejected, memory_order_relaxed);
                continue;
            }
            /* Back in service; one that was in service keeps its relaxation clock. */
            uint64_t since = st_of(w) == BL_OUTLIER_ST_SERVICE ? time_of(w) : now_ms;
            atomic_store_explicit(word_of(s), word(BL_OUTLIER_ST_SERVICE, w, since),
                                  memory_order_release);
            bl_log(BL_LOG_INFO, "upstream \"%s\" server %s not ejected (%s): max_ejection %u%% "
                   "reached (%d of %u servers ejected)", g->name, s->name, why,
                   oc->max_ejection_percent, (int)n, g->nservers);
            return;
        }
        if (atomic_compare_exchange_weak_explicit(&g->gstate->ejected, &n, n + 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            break;
    }

    /* Relaxation counts only time in full service; a failed probe gets no discount. */
    uint32_t k = relaxed_ejections(s, w, now_ms);
    if (k < UINT32_MAX)
        k++;
    uint64_t dur = oc->max_ejection_time_ms;
    if (k <= oc->max_ejection_time_ms / oc->base_ejection_ms)
        dur = oc->base_ejection_ms * k;
    atomic_store_explicit(&st->ejections, k, memory_order_relaxed);
    atomic_store_explicit(&st->ejected_until_ms, now_ms + dur, memory_order_relaxed);
    /* Once per ejection, by whichever worker ejects: rare enough for a shared atomic. */
    atomic_fetch_add_explicit(&st->ejections_total, 1, memory_order_relaxed);
    atomic_store_explicit(word_of(s), word(BL_OUTLIER_ST_EJECTED, w, 0), memory_order_release);
    char d[32];
    bl_log(BL_LOG_NOTICE, "upstream \"%s\" server %s ejected for %s: %s (ejection #%u)", g->name,
           s->name, fmt_ms(d, sizeof(d), dur), why, k);
}

/* ------------------------------------------------------------------ the attempt path */

int bl_outlier_admit_slow(const struct bl_upstream_server *s, uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(word_of(s), memory_order_acquire);
    switch (st_of(w)) {
    case BL_OUTLIER_ST_SERVICE:
        return 1;
    case BL_OUTLIER_ST_EJECTING:
        return 0;
    case BL_OUTLIER_ST_EJECTED:
        if (now_ms < atomic_load_explicit(&s->state->ejected_until_ms, memory_order_relaxed))
            return 0;
        expire(s, now_ms);
        /* Whoever moved it, it is on probation now (or ejected again): look once more. */
        w = atomic_load_explicit(word_of(s), memory_order_acquire);
        if (st_of(w) != BL_OUTLIER_ST_PROBATION)
            return st_of(w) == BL_OUTLIER_ST_SERVICE;
        break;
    default:
        break;
    }
    /* Probation: free slot, or a probe whose lease ran out (begin() takes it over). */
    return !(w & BL_OUTLIER_PROBE_OUT) || now_ms >= time_of(w);
}

int bl_outlier_begin(struct bl_upstream_server *s, uint64_t now_ms, uint32_t *probe)
{
    *probe = 0;
    const struct bl_outlier_conf *oc = s->group->outlier;
    if (!oc)
        return 1;
    uint64_t w = atomic_load_explicit(word_of(s), memory_order_acquire);
    for (;;) {
        switch (st_of(w)) {
        case BL_OUTLIER_ST_SERVICE:
            return 1;
        case BL_OUTLIER_ST_EJECTING:
            return 0;
        case BL_OUTLIER_ST_EJECTED:
            if (now_ms < atomic_load_explicit(&s->state->ejected_until_ms, memory_order_relaxed))
                return 0;
            expire(s, now_ms); /* or someone else did, or it was ejected again since */
            w = atomic_load_explicit(word_of(s), memory_order_acquire);
            continue;
        default:
            break;
        }
        if ((w & BL_OUTLIER_PROBE_OUT) && now_ms < time_of(w))
            return 0;
        uint32_t t = (ticket_of(w) + 1) & BL_OUTLIER_TICKET_MASK;
        if (!t)
            t = 1;
        uint64_t nw = word(BL_OUTLIER_ST_PROBATION, 0, now_ms + oc->interval_ms) |
                      BL_OUTLIER_PROBE_OUT | ((uint64_t)t << BL_OUTLIER_TICKET_SHIFT);
        /* The slot, its ticket and its lease in one CAS: a loser re-reads and sees the probe. */
        if (atomic_compare_exchange_weak_explicit(word_of(s), &w, nw, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            atomic_fetch_add_explicit(&s->state->probes, 1, memory_order_relaxed);
            *probe = t;
            return 1;
        }
    }
}

void bl_outlier_end(struct bl_upstream_server *s, uint32_t probe)
{
    if (!probe)
        return;
    atomic_fetch_sub_explicit(&s->state->probes, 1, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(word_of(s), memory_order_acquire);
    /* Only the slot this probe still holds: after a takeover, a re-ejection or the end of
     * probation the word has moved on and there is nothing of ours to free. */
    while (st_of(w) == BL_OUTLIER_ST_PROBATION && (w & BL_OUTLIER_PROBE_OUT) &&
           ticket_of(w) == probe) {
        if (atomic_compare_exchange_weak_explicit(word_of(s), &w,
                                                  word(BL_OUTLIER_ST_PROBATION, w, 0),
                                                  memory_order_acq_rel, memory_order_acquire))
            break;
    }
}

void bl_outlier_report(struct bl_upstream_server *s, int status, int gateway_failure,
                       uint64_t now_ms)
{
    const struct bl_outlier_conf *oc = s->group->outlier;
    if (!oc)
        return;
    struct bl_server_state *st = s->state;
    int is_5xx = gateway_failure || status >= 500;
    int is_gateway = gateway_failure || status == 502 || status == 503 || status == 504;
    uint64_t w = atomic_load_explicit(word_of(s), memory_order_acquire);
    uint64_t state = st_of(w);
    if (state == BL_OUTLIER_ST_EJECTING || state == BL_OUTLIER_ST_EJECTED)
        return; /* an attempt begun before the ejection */

    if (!is_5xx) {
        /* Loads first: a healthy server's counters stay 0 and its cache line unwritten. */
        if (atomic_load_explicit(&st->consecutive_5xx, memory_order_relaxed))
            atomic_store_explicit(&st->consecutive_5xx, 0, memory_order_relaxed);
        if (atomic_load_explicit(&st->consecutive_gateway, memory_order_relaxed))
            atomic_store_explicit(&st->consecutive_gateway, 0, memory_order_relaxed);
        /* Retry while still on probation: a probe being taken changes the word too. */
        while (st_of(w) == BL_OUTLIER_ST_PROBATION) {
            if (atomic_compare_exchange_weak_explicit(word_of(s), &w,
                                                      word(BL_OUTLIER_ST_SERVICE, w, now_ms),
                                                      memory_order_acq_rel,
                                                      memory_order_acquire)) {
                atomic_store_explicit(&st->up_since_ms, now_ms, memory_order_relaxed);
                bl_log(BL_LOG_NOTICE, "upstream \"%s\" server %s back in service after "
                       "probation", s->group->name, s->name);
                break;
            }
        }
        return;
    }

    char why[64];
    if (state == BL_OUTLIER_ST_PROBATION) {
        if (status && !gateway_failure)
            snprintf(why, sizeof(why), "failed probe (status %d)", status);
        else
            snprintf(why, sizeof(why), "failed probe (gateway failure)");
        eject(s, why, now_ms);
        return;
    }

    uint32_t n5 = atomic_fetch_add_explicit(&st->consecutive_5xx, 1, memory_order_relaxed) + 1;
    uint32_t ng = 0;
    if (is_gateway)
        ng = atomic_fetch_add_explicit(&st->consecutive_gateway, 1, memory_order_relaxed) + 1;
    else if (atomic_load_explicit(&st->consecutive_gateway, memory_order_relaxed))
        atomic_store_explicit(&st->consecutive_gateway, 0, memory_order_relaxed);

    if (oc->consecutive_gateway && ng >= oc->consecutive_gateway) {
        snprintf(why, sizeof(why), "%u consecutive gateway failures", ng);
        eject(s, why, now_ms);
    } else if (oc->consecutive_5xx && n5 >= oc->consecutive_5xx) {
        snprintf(why, sizeof(why), "%u consecutive 5xx", n5);
        eject(s, why, now_ms);
    }
}

/* ------------------------------------------------------------------ readers */

int bl_outlier_group_down(const struct bl_upstream_group *g, uint64_t now_ms)
{
    for (uint32_t i = 0; i < g->nservers; i++) {
        const struct bl_upstream_server *s = &g->servers[i];
        if (bl_server_down(s) || (bl_server_admin(s) & BL_ADMIN_DRAIN) ||
            atomic_load_explicit(&s->state->check_down, memory_order_relaxed))
            continue;
        if (g->outlier && !bl_outlier_admit(s, now_ms))
            continue;
        return 0;
    }
    return 1;
}

enum bl_outlier_state bl_outlier_server_state(const struct bl_upstream_server *s,
                                              uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(word_of(s), memory_order_acquire);
    switch (st_of(w)) {
    case BL_OUTLIER_ST_SERVICE:
        return BL_OUTLIER_IN_SERVICE;
    case BL_OUTLIER_ST_PROBATION:
        return BL_OUTLIER_PROBATION;
    case BL_OUTLIER_ST_EJECTED:
        if (now_ms >= atomic_load_explicit(&s->state->ejected_until_ms, memory_order_relaxed))
            return BL_OUTLIER_PROBATION; /* as the next admit() will find it */
        return BL_OUTLIER_EJECTED;
    default:
        return BL_OUTLIER_EJECTED;
    }
}

uint32_t bl_outlier_ejections(const struct bl_upstream_server *s, uint64_t now_ms)
{
    if (!s->group->outlier)
        return atomic_load_explicit(&s->state->ejections, memory_order_relaxed);
    return relaxed_ejections(s, atomic_load_explicit(word_of(s), memory_order_acquire), now_ms);
}

void bl_outlier_recount(struct bl_upstream_group *g)
{
    int32_t n = 0;
    for (uint32_t i = 0; i < g->nservers; i++) {
        uint64_t w = atomic_load_explicit(word_of(&g->servers[i]), memory_order_relaxed);
        if (st_of(w) == BL_OUTLIER_ST_EJECTED)
            n++;
    }
    atomic_store_explicit(&g->gstate->ejected, n, memory_order_relaxed);
}

/* ------------------------------------------------------------------ config */

/* nginx time syntax; a bare number means seconds. */
static int parse_time(const char *s, uint64_t *out)
{
    return bl_parse_time_ms(s, 1000, MAX_TIME_MS, out);
}

static int parse_uint(const char *s, uint32_t max, int percent, uint32_t *out)
{
    uint64_t v;
    if (bl_parse_uint(s, 0, max, percent, &v) != BL_OK)
        return BL_ERR;
    *out = (uint32_t)v;
    return BL_OK;
}

enum { P_5XX, P_GATEWAY, P_INTERVAL, P_BASE, P_MAX_PERCENT, P_MAX_TIME, P_COUNT };
static const char *const param_names[P_COUNT] = {
    "consecutive_5xx", "consecutive_gateway", "interval", "base_ejection", "max_ejection",
    "max_ejection_time",
};

int bl_outlier_parse(struct bl_outlier_conf **oc, char *const *args, int nargs, char *err,
                     size_t errlen)
{
    if (*oc) {
        snprintf(err, errlen, "\"outlier\" directive is duplicate");
        return BL_ERR;
    }
    struct bl_outlier_conf c = {
        .consecutive_5xx = 5,
        .consecutive_gateway = 5,
        .max_ejection_percent = 10,
        .interval_ms = 10000,
        .base_ejection_ms = 30000,
        .max_ejection_time_ms = 0, /* 10 x base unless given */
    };
    uint8_t seen[P_COUNT] = {0};
    for (int i = 0; i < nargs; i++) {
        const char *a = args[i];
        const char *eq = strchr(a, '=');
        int k = P_COUNT;
        if (eq)
            for (k = 0; k < P_COUNT; k++)
                if (strlen(param_names[k]) == (size_t)(eq - a) &&
                    memcmp(a, param_names[k], (size_t)(eq - a)) == 0)
                    break;
        if (k == P_COUNT) {
            snprintf(err, errlen, "invalid parameter \"%s\"", a);
            return BL_ERR;
        }
        if (seen[k]++) {
            snprintf(err, errlen, "duplicate parameter \"%s\"", param_names[k]);
            return BL_ERR;
        }
        const char *v = eq + 1;
        int rc = BL_OK;
        uint64_t t = 0;
        switch (k) {
        case P_5XX:
            rc = parse_uint(v, MAX_COUNT, 0, &c.consecutive_5xx);
            break;
        case P_GATEWAY:
            rc = parse_uint(v, MAX_COUNT, 0, &c.consecutive_gateway);
            break;
        case P_MAX_PERCENT:
            rc = parse_uint(v, 100, 1, &c.max_ejection_percent);
            break;
        default:
            rc = parse_time(v, &t);
            if (rc == BL_OK && t == 0)
                rc = BL_ERR;
            if (k == P_INTERVAL)
                c.interval_ms = t;
            else if (k == P_BASE)
                c.base_ejection_ms = t;
            else
                c.max_ejection_time_ms = t;
            break;
        }
        if (rc != BL_OK) {
            snprintf(err, errlen, "invalid value \"%s\" for \"%s\"", v, param_names[k]);
            return BL_ERR;
        }
    }
    if (!c.consecutive_5xx && !c.consecutive_gateway) {
        snprintf(err, errlen, "\"outlier\" with consecutive_5xx=0 and consecutive_gateway=0 "
                 "never ejects");
        return BL_ERR;
    }
    if (!c.max_ejection_time_ms) {
        c.max_ejection_time_ms = 10 * c.base_ejection_ms;
    } else if (c.max_ejection_time_ms < c.base_ejection_ms) {
        snprintf(err, errlen, "\"max_ejection_time\" is less than \"base_ejection\"");
        return BL_ERR;
    }
    *oc = malloc(sizeof(**oc));
    if (!*oc) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    **oc = c;
    return BL_OK;
}

void bl_outlier_conf_free(struct bl_outlier_conf *oc)
{
    free(oc);
}
