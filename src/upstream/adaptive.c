/* Adaptive concurrency: the gradient limit of adaptive.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/status.h"
#include "core/units.h"
#include "upstream/adaptive.h"

#define WINDOW_MS        100
#define WINDOW_MIN       5      /* answers a window needs before it may close */
#define MEASURE_SAMPLES  20     /* answers that make min_rtt */
#define MEASURE_EVERY_MS 30000
#define TOLERANCE        1.5
#define INITIAL          20

static int parse_count(const char *v, uint32_t *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < 1 || n > 1000000)
        return BL_ERR;
    *out = (uint32_t)n;
    return BL_OK;
}

int bl_adaptive_parse(struct bl_adaptive **ac, const char *name, char *const *args, int nargs,
                      char *err, size_t errlen)
{
    if (*ac) {
        snprintf(err, errlen, "\"adaptive_concurrency\" directive is duplicate");
        return BL_ERR;
    }
    uint32_t min = 3, max = 1000;
    uint64_t target_ms = 0;
    for (int i = 0; i < nargs; i++) {
        const char *a = args[i];
        int ok;
        if (strncmp(a, "min=", 4) == 0)
            ok = parse_count(a + 4, &min) == BL_OK;
        else if (strncmp(a, "max=", 4) == 0)
            ok = parse_count(a + 4, &max) == BL_OK;
        else if (strncmp(a, "latency_target=", 15) == 0)
            ok = bl_parse_time_ms(a + 15, 1000, 3600000, &target_ms) == BL_OK && target_ms;
        else
            ok = 0;
        if (!ok) {
            snprintf(err, errlen, "invalid parameter \"%s\" (want min=N, max=N, "
                     "latency_target=TIME)", a);
            return BL_ERR;
        }
    }
    if (min > max) {
        snprintf(err, errlen, "adaptive_concurrency min=%u is above max=%u", min, max);
        return BL_ERR;
    }
    struct bl_adaptive *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    a->min = min;
    a->max = max;
    a->name = name;
    a->latency_target_us = target_ms * 1000;
    a->est = INITIAL < min ? min : INITIAL > max ? max : INITIAL;
    a->measuring = a->latency_target_us == 0;
    atomic_store(&a->limit, a->measuring ? min : (uint32_t)a->est);
    a->logged = (uint32_t)a->est;
    *ac = a;
    return BL_OK;
}

void bl_adaptive_free(struct bl_adaptive *ac)
{
    free(ac);
}

/* Closes a window of n answers averaging mean_us; the caller holds `updating`. */
static void update(struct bl_adaptive *ac, double mean_us, int32_t inflight, uint64_t now_ms)
{
    if (ac->measuring) {
        if (ac->min_rtt_us == 0 || mean_us < ac->min_rtt_us * 4)
            ac->min_rtt_us = mean_us; /* a measurement far above the last is a busy server */
        ac->measuring = 0;
        ac->next_measure_ms = now_ms + MEASURE_EVERY_MS;
    } else {
        double target = ac->latency_target_us ? (double)ac->latency_target_us
                                              : ac->min_rtt_us * TOLERANCE;
        double gradient = target / (mean_us > 1 ? mean_us : 1);
        if (gradient < 0.5)
            gradient = 0.5;
        if (gradient > 1.0)
            gradient = 1.0;
        /* Within the target the limit probes upwards by its square root (the queue
         * allowance); above it, it shrinks by the gradient alone, so that it can reach min. */
        double next = gradient < 1.0 ? ac->est * gradient : ac->est + sqrt(ac->est) / 2;
        if (next > ac->est && inflight < ac->est / 2)
            next = ac->est; /* not loaded enough to learn about a higher limit */
        ac->est = next < ac->min ? ac->min : next > ac->max ? ac->max : next;
        if (!ac->latency_target_us && now_ms >= ac->next_measure_ms)
            ac->measuring = 1;
    }
    uint32_t limit = ac->measuring ? ac->min : (uint32_t)(ac->est + 0.5);
    atomic_store_explicit(&ac->limit, limit, memory_order_relaxed);
    if (!ac->measuring && (limit > ac->logged * 1.2 || limit < ac->logged * 0.8)) {
        bl_log(BL_LOG_NOTICE, "adaptive_concurrency of upstream \"%s\": limit %u -> %u "
               "(latency %.1f ms, target %.1f ms)", ac->name, ac->logged, limit,
               mean_us / 1000.0,
               (ac->latency_target_us ? (double)ac->latency_target_us
                                      : ac->min_rtt_us * TOLERANCE) / 1000.0);
        ac->logged = limit;
    }
}

void bl_adaptive_sample(struct bl_adaptive *ac, uint64_t latency_us, int32_t inflight,
                        uint64_t now_ms)
{
    uint64_t sum = atomic_fetch_add_explicit(&ac->window_sum_us, latency_us,
                                             memory_order_relaxed) + latency_us;
    uint32_t n = atomic_fetch_add_explicit(&ac->window_count, 1, memory_order_relaxed) + 1;
    (void)sum;
    uint64_t end = atomic_load_explicit(&ac->window_end_ms, memory_order_relaxed);
    int closes = atomic_load_explicit(&ac->limit, memory_order_relaxed) == ac->min &&
                         !ac->latency_target_us
                     ? n >= MEASURE_SAMPLES /* measuring (or at the floor): by count */
                     : n >= WINDOW_MIN && now_ms >= end;
    if (!closes || atomic_exchange_explicit(&ac->updating, 1, memory_order_acquire))
        return;
    /* Take the window whole: answers that land between the two exchanges go to the next. */
    uint32_t cnt = atomic_exchange_explicit(&ac->window_count, 0, memory_order_relaxed);
    uint64_t tot = atomic_exchange_explicit(&ac->window_sum_us, 0, memory_order_relaxed);
    atomic_store_explicit(&ac->window_end_ms, now_ms + WINDOW_MS, memory_order_relaxed);
    if (cnt)
        update(ac, (double)tot / cnt, inflight, now_ms);
    atomic_store_explicit(&ac->updating, 0, memory_order_release);
}
