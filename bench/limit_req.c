/* Nanoseconds limit_req adds to one request, without the network: a zone holding 1M distinct
 * keys (160m, room for 1.3M), then checks of keys drawn at random among them, which miss the
 * CPU caches as a large real zone does. Measured: the zone lookup alone (bl_zone_req_lookup), and the whole
 * check a request runs (bl_limit_req_check: $binary_remote_addr evaluated, lookup, account),
 * on one thread and on two threads at once (shard locks contended). Best of 5 runs.
 * Run: make bench-limits. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/status.h"
#include "policy/limits.h"
#include "policy/zone.h"

#define KEYS (1u << 20)
#define CHECKS 1000000u
#define ROUNDS 5

static char (*keys)[16];
static uint8_t *lens;
static struct bl_limit_zones zones;
static struct bl_limit_req *line;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

struct run {
    int whole;                      /* 1: bl_limit_req_check, 0: the lookup alone */
    unsigned span;                  /* keys drawn among the first span (KEYS: all) */
    uint64_t seed;
    double ns;
    unsigned passed;
};

static void *run_checks(void *p)
{
    struct run *r = p;
    struct bl_zone *z = zones.req[0]->zone;
    uint64_t s = r->seed;
    struct bl_limit_log log = {BL_LOG_EMERG, 0, "bench"};
    double t0 = now_ns();
    for (unsigned i = 0; i < CHECKS; i++) {
        unsigned k = (unsigned)(xorshift(&s) % r->span);
        uint64_t now = 1000000 + i / 64;
        if (r->whole) {
            struct bl_var_ctx v;
            memset(&v, 0, sizeof(v));
            v.client_ip = keys[k];
            v.client_ip_len = lens[k];
            struct bl_limit_req_result res;
            r->passed += bl_limit_req_check(line, 1, &v, now, &log, &res) == BL_OK;
        } else {
            uint64_t e;
            uint32_t pin;
            r->passed += bl_zone_req_lookup(z, keys[k], lens[k], now, 100000000, 1000000, 1,
                                            &e, &pin) == BL_ZONE_OK;
        }
    }
    r->ns = (now_ns() - t0) / CHECKS;
    return NULL;
}

static double best(int whole, int threads, unsigned span)
{
    double b = 1e18;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t th[2];
        struct run r[2];
        for (int t = 0; t < threads; t++) {
            r[t] = (struct run){whole, span, 88172645463325252ull + (uint64_t)(round * 2 + t), 0,
                                0};
            pthread_create(&th[t], NULL, run_checks, &r[t]);
        }
        double worst = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            if (r[t].ns > worst)
                worst = r[t].ns;
        }
        if (worst < b)
            b = worst;
    }
    return b;
}

int main(void)
{
    char err[256];
    bl_log_level = BL_LOG_EMERG;
    keys = malloc(sizeof(*keys) * KEYS);
    lens = malloc(KEYS);
    if (!keys || !lens)
        return 1;
    for (unsigned i = 0; i < KEYS; i++)
        lens[i] = (uint8_t)snprintf(keys[i], sizeof(keys[i]), "10.%u.%u.%u", (i >> 16) & 255,
                                    (i >> 8) & 255, i & 255);
    struct bl_template *key = bl_template_compile("$binary_remote_addr", err, sizeof(err));
    char *zargs[] = {"zone=bench:160m", "rate=100000r/s"};
    char *largs[] = {"zone=bench", "burst=1000"};
    uint32_t nlines = 0;
    if (!key ||
        bl_limit_zone_parse(&zones.req, &zones.nreq, 1, "limit_req_zone", key,
                            "$binary_remote_addr", zargs, 2, "bench", 1, err, sizeof(err)) ||
        bl_limit_req_parse(&zones, &line, &nlines, largs, 2, "bench", 2, err, sizeof(err)) ||
        bl_limit_zones_finish(&zones, err, sizeof(err))) {
        fprintf(stderr, "limit_req bench: %s\n", err);
        return 1;
    }
    struct bl_zone *z = zones.req[0]->zone;
    double t0 = now_ns();
    for (unsigned i = 0; i < KEYS; i++) {
        uint64_t e;
        uint32_t pin;
        bl_zone_req_lookup(z, keys[i], lens[i], 1000000, 100000000, 1000000, 1, &e, &pin);
    }
    double fill = (now_ns() - t0) / KEYS;
    printf("zone: %u keys of %u held (160m, %u bytes a key); inserting a new key: %.0f ns\n",
           bl_zone_count(z), bl_zone_capacity(z), BL_ZONE_SLOT, fill);
    printf("keys drawn among all 1M (cache misses), then among 1000 (cache hits):\n");
    printf("lookup alone, 1 thread:           %6.0f  %6.0f ns per check\n", best(0, 1, KEYS),
           best(0, 1, 1000));
    printf("lookup alone, 2 threads at once:  %6.0f  %6.0f ns per check\n", best(0, 2, KEYS),
           best(0, 2, 1000));
    printf("whole limit_req check, 1 thread:  %6.0f  %6.0f ns per request\n", best(1, 1, KEYS),
           best(1, 1, 1000));
    printf("whole limit_req check, 2 threads: %6.0f  %6.0f ns per request\n", best(1, 2, KEYS),
           best(1, 2, 1000));
    bl_limit_zones_free(&zones);
    free(line);
    free(keys);
    free(lens);
    return 0;
}
