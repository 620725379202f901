/* Adaptive concurrency (`adaptive_concurrency [min=N] [max=N] [latency_target=T];`): a
 * gradient limit on the requests in flight to a group, learned from their latency, as Netflix's
 * concurrency-limits Gradient2 and Envoy's adaptive concurrency filter do. Requests past the
 * limit are refused at once (the front end answers 503), so the servers keep the latency of a
 * group that is not overloaded and the excess fails fast instead of queueing.
 *
 * The rule, once per window (100 ms with at least 5 answers; longer otherwise):
 *     sample   = the window's mean response-head latency
 *     target   = latency_target, or 1.5 x min_rtt
 *     gradient = clamp(target / sample, 0.5, 1.0)
 *     limit    = clamp(gradient < 1 ? limit x gradient : limit + sqrt(limit) / 2, min, max)
 * and the limit does not grow while fewer than half of it are in flight (nothing was learned
 * about a higher one). Without latency_target, min_rtt is measured as Envoy does: at start and
 * every 30 s the limit is pinned to `min` until 20 answers came, and their mean is min_rtt.
 * A move of more than 20% from the last logged limit is logged at notice.
 *
 * Threads: shared by every worker. Per request, bl_adaptive_admit() is two relaxed loads and
 * bl_adaptive_sample() two relaxed adds; the worker whose sample ends a window takes the
 * update (one CAS) and is the only one touching the model until it is done. No lock.
 */
#ifndef BL_UPSTREAM_ADAPTIVE_H
#define BL_UPSTREAM_ADAPTIVE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct bl_adaptive {
    /* configuration */
    uint32_t min, max;                  /* bounds of the limit (defaults 3 and 1000) */
    uint64_t latency_target_us;         /* 0: 1.5 x measured min_rtt */
    const char *name;                   /* the group's, for the log */
    /* shared, hot */
    _Atomic uint32_t limit;             /* requests in flight allowed now */
    _Atomic uint64_t window_sum_us;     /* latencies of the current window */
    _Atomic uint32_t window_count;
    _Atomic uint64_t window_end_ms;     /* when the current window may close */
    _Atomic uint8_t updating;           /* a worker is closing the window */
    _Atomic uint64_t shed;              /* requests refused, for statistics */
    /* the model: only the worker holding `updating` touches these */
    double est;                         /* the limit before rounding */
    double min_rtt_us;                  /* 0 until measured */
    uint8_t measuring;                  /* pinned to min, measuring min_rtt */
    uint64_t next_measure_ms;           /* when min_rtt is measured again */
    uint32_t logged;                    /* limit last logged */
};

/* Parses the directive's arguments into a new *ac for group name (kept by pointer). BL_OK, or
 * BL_ERR with err filled. Control thread. */
int bl_adaptive_parse(struct bl_adaptive **ac, const char *name, char *const *args, int nargs,
                      char *err, size_t errlen);
void bl_adaptive_free(struct bl_adaptive *ac);

/* Whether a new request may go to the group with inflight requests already there. Counts a
 * refusal. Any worker thread. */
static inline int bl_adaptive_admit(struct bl_adaptive *ac, int32_t inflight)
{
    if (inflight < (int32_t)atomic_load_explicit(&ac->limit, memory_order_relaxed))
        return 1;
    atomic_fetch_add_explicit(&ac->shed, 1, memory_order_relaxed);
    return 0;
}

/* An answer came after latency_us, with inflight requests in flight (before this one
 * ended), at now_ms. May close the window and move the limit. Any worker thread. */
void bl_adaptive_sample(struct bl_adaptive *ac, uint64_t latency_us, int32_t inflight,
                        uint64_t now_ms);

#endif
