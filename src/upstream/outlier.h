/* Outlier detection: servers that keep failing are ejected for a while, then take one request
 * at a time (half-open probation) until one succeeds.
 *
 * Directive (upstream block), Envoy's consecutive_5xx / consecutive_gateway_failure detectors:
 *   outlier [consecutive_5xx=N] [consecutive_gateway=N] [interval=T] [base_ejection=T]
 *           [max_ejection=P[%]] [max_ejection_time=T];
 * Times in nginx syntax ("30s", "500ms", "1m", "1m30s"; a bare number is seconds).
 *
 * Per server (s->state; only outlier.c writes these fields):
 *
 *   in service --N consecutive failures--> ejected --time passes--> probation --probe ok--+
 *       ^                                    ^                          |                 |
 *       |                                    +------probe fails---------+                 |
 *       +---------------------------------------------------------------------------------+
 *
 * - Counting (Envoy's rules): a 5xx answer or a gateway failure (connect failure, reset,
 *   timeout, invalid response head; counted as a 503) adds one to consecutive_5xx; a 502, 503,
 *   504 or gateway failure adds one to consecutive_gateway, any other 5xx resets it; anything
 *   below 500 resets both. Reaching either threshold ejects the server.
 * - Ejection lasts base_ejection x ejections (the multiplier counts this ejection), at most
 *   max_ejection_time. At most max_ejection percent of the group's servers (backups included)
 *   are ejected at once, but always at least one. An ejection the cap refuses leaves the server
 *   in service with its counters reset (a server coming from probation too: the cap exists to
 *   keep capacity, and a half-open server has none).
 * - Probation: when the ejection ends the server is admitted again, one request at a time
 *   (the probe). Any success puts it back in service; any failure ejects it again at once, for
 *   longer. A probe that has not ended after `interval` is presumed lost (a hung request, or a
 *   caller that never called bl_outlier_end()), and another request may take over the slot.
 * - The multiplier is relaxed as Envoy does: every `interval` a server spends back in full
 *   service takes one off it (applied lazily, when the server is next ejected, and in
 *   bl_outlier_ejections()). Time in probation does not count.
 * - When a probe succeeds, state->up_since_ms = now, so slow_start ramps the server back in.
 *
 * Who calls what (worker threads unless noted; nothing here locks or makes a syscall except
 * the log lines of transitions):
 *   1. pick(): bl_server_available() calls bl_outlier_admit() for each candidate when
 *      s->group->outlier is set. admit never takes the probe slot (balancers look at candidates
 *      they do not pick); it only says whether s could take a request now.
 *   2. Right after pick() returned s, before bl_server_acquire(s):
 *          if (!bl_outlier_begin(s, now, &r->probe)) {      // lost a race for the probe slot,
 *              mark s tried;                                // or ejected since pick()
 *              if (g->balancer->release) g->balancer->release(&r->pick, s, NULL);
 *              pick again (this is not an attempt: no acquire, no report);
 *          }
 *      begin() is what takes the probe slot (one CAS); r->probe is 0 for an ordinary request.
 *   3. Once per attempt, when its outcome is known (the response status, or the failure):
 *          bl_outlier_report(s, status, gateway_failure, now);
 *      An attempt that ends with no outcome (the client went away first) is not reported.
 *   4. Exactly once per begin() that returned 1, when that attempt ends on any path (done,
 *      failed, retried elsewhere, client gone, timeout), next to bl_server_release(s):
 *          bl_outlier_end(s, r->probe); r->probe = 0;
 *      end() with probe 0 does nothing, so it can be called unconditionally.
 *   Forgetting 4 cannot wedge a server: the slot's lease runs out after `interval`, and a late
 *   or repeated end() for a probe that was taken over frees nothing but its own slot.
 *
 * Reloads: server state may be carried to a new generation (same group + address); the group
 * state is new. The config compiler calls bl_outlier_recount(g) once the servers' states are
 * attached, before workers see the group.
 */
#ifndef BL_UPSTREAM_OUTLIER_H
#define BL_UPSTREAM_OUTLIER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/upstream.h"

/* Parsed `outlier` directive, owned by the group (group->outlier; NULL = detection off).
 * Read-only once the config is compiled. */
struct bl_outlier_conf {
    uint32_t consecutive_5xx;       /* 5xx (or gateway failures) in a row; 0 = off; default 5 */
    uint32_t consecutive_gateway;   /* 502/503/504 or gateway failures in a row; 0 = off;
                                     * default 5 */
    uint32_t max_ejection_percent;  /* of the group's servers ejected at once (at least one
                                     * server may always be); 0..100; default 10 */
    uint64_t interval_ms;           /* multiplier relaxation period and probe lease; default
                                     * 10 s */
    uint64_t base_ejection_ms;      /* first ejection's length; default 30 s */
    uint64_t max_ejection_time_ms;  /* longest ejection; default 10 x base_ejection (300 s for
                                     * the default base, Envoy's max_ejection_time) */
};

/* Parses the directive's arguments (without its name; quotes removed) into *oc, allocated with
 * every default. *oc must be NULL: a second `outlier` in the group is an error. At least one
 * detector must stay on; max_ejection_time must not be below base_ejection; each time is
 * 1 ms .. 7 days. Returns BL_OK, or BL_ERR with err filled in nginx's words, without
 * file:line (the caller appends it):
 *   invalid parameter "intervl=3s"           invalid value "abc" for "interval"
 *   duplicate parameter "interval"           "outlier" directive is duplicate
 * Control thread (config compile). */
int bl_outlier_parse(struct bl_outlier_conf **oc, char *const *args, int nargs, char *err,
                     size_t errlen);

/* Frees a conf from bl_outlier_parse(). NULL is a no-op. Control thread. */
void bl_outlier_conf_free(struct bl_outlier_conf *oc);

/* Sets g->gstate->ejected to the number of g's servers currently ejected (their states may
 * come from the previous generation). Control thread, before workers use g. */
void bl_outlier_recount(struct bl_upstream_group *g);

/* Step 1 (see above): whether s may take a request as far as outlier detection goes: 0 while
 * ejected, and during probation while a probe is out. The first caller after an ejection ends
 * moves s to probation. Only called when s->group->outlier is set. Any worker thread; a relaxed
 * load in the common case (server in service). */
static inline int bl_outlier_admit(const struct bl_upstream_server *s, uint64_t now_ms);

/* Step 2: starts an attempt on s, the server pick() just returned. Returns 1 and sets *probe
 * (0 for an ordinary attempt, otherwise this probe's ticket, to give back to bl_outlier_end());
 * or 0 when s may not be used after all (another worker took the probe slot, or s was ejected
 * since pick()), *probe = 0. Always 1 with *probe = 0 when the group has no outlier detection.
 * Worker thread. */
int bl_outlier_begin(struct bl_upstream_server *s, uint64_t now_ms, uint32_t *probe);

/* Step 3: an attempt's outcome. status: the HTTP status received, 0 if none; gateway_failure:
 * 1 for a connect failure, reset, timeout or invalid response head (status is then ignored
 * for the gateway rule but may be 0). Counts, ejects, ends or fails probation; results that
 * arrive while s is ejected (attempts begun before) are ignored. Logs each ejection at notice:
 *   upstream "g" server 10.0.0.1:80 ejected for 30s: 5 consecutive 5xx (ejection #1)
 * No-op when the group has no outlier detection. Worker thread. */
void bl_outlier_report(struct bl_upstream_server *s, int status, int gateway_failure,
                       uint64_t now_ms);

/* Step 4: the attempt begun with bl_outlier_begin() has ended; frees the probe slot if this
 * attempt still holds it. probe 0 is a no-op. Worker thread. */
void bl_outlier_end(struct bl_upstream_server *s, uint32_t probe);

/* For the proxy's 503 decision when pick() found nothing: 1 when no server of g can take a
 * request for reasons that forgetting passive failures (nginx's "no live upstreams" fallback)
 * would not change: every server is marked `down`, failing active checks, ejected, or on
 * probation with its probe out. 0 otherwise. O(servers); for the failure path. Any thread. */
int bl_outlier_group_down(const struct bl_upstream_group *g, uint64_t now_ms);

/* Where a server stands, for status pages and the admin API. Any thread. */
enum bl_outlier_state {
    BL_OUTLIER_IN_SERVICE = 0,
    BL_OUTLIER_EJECTED = 1,     /* also: being ejected, or ejection over but not yet moved */
    BL_OUTLIER_PROBATION = 2,
};
enum bl_outlier_state bl_outlier_server_state(const struct bl_upstream_server *s,
                                              uint64_t now_ms);

/* The ejection multiplier as the next ejection would see it (relaxation applied). */
uint32_t bl_outlier_ejections(const struct bl_upstream_server *s, uint64_t now_ms);

/* ------------------------------------------------------------------ implementation */

/* The whole per-server state lives in one word, state->probation_until_ms, so that a state
 * change, the probe slot and its lease move together in one CAS:
 *   bits 62-63  BL_OUTLIER_ST_*: in service, being ejected, ejected, probation
 *   bit  61     probation: a probe is out
 *   bits 41-60  ticket of the latest probe (never 0; kept across states so a stale end() from
 *               an earlier probation never matches)
 *   bits 0-40   in service: when it came back (ms; 0 = never ejected) for the relaxation;
 *               probation with a probe out: the probe's lease deadline (ms)
 * state->ejected_until_ms is the end of the current (or last) ejection. */
#define BL_OUTLIER_ST_SHIFT    62
#define BL_OUTLIER_ST_SERVICE  0ull
#define BL_OUTLIER_ST_EJECTING 1ull  /* claimed by one thread deciding against the cap */
#define BL_OUTLIER_ST_EJECTED  2ull  /* holds one of gstate->ejected */
#define BL_OUTLIER_ST_PROBATION 3ull
#define BL_OUTLIER_PROBE_OUT   (1ull << 61)
#define BL_OUTLIER_TICKET_SHIFT 41
#define BL_OUTLIER_TICKET_MASK ((1ull << 20) - 1)
#define BL_OUTLIER_TIME_MASK   ((1ull << 41) - 1)

int bl_outlier_admit_slow(const struct bl_upstream_server *s, uint64_t now_ms);

static inline int bl_outlier_admit(const struct bl_upstream_server *s, uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(&s->state->probation_until_ms, memory_order_acquire);
    if (__builtin_expect((w >> BL_OUTLIER_ST_SHIFT) == BL_OUTLIER_ST_SERVICE, 1))
        return 1;
    return bl_outlier_admit_slow(s, now_ms);
}

#endif
