/* Adaptive concurrency: the directive, min_rtt measured at start, the limit growing while the
 * latency stays near it, shrinking when the latency climbs, its bounds, the "not loaded
 * enough" rule, latency_target, and samples from several threads. Synthetic latencies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/adaptive.c"

#define ASSERT_EQ(a, b) assert_int_equal((a), (b))

static uint64_t now = 1000000;

static struct bl_adaptive *make(const char *a0, const char *a1, const char *a2)
{
    char *args[3] = {(char *)a0, (char *)a1, (char *)a2};
    int n = a2 ? 3 : a1 ? 2 : a0 ? 1 : 0;
    struct bl_adaptive *ac = NULL;
    char err[256];
    ASSERT_EQ(bl_adaptive_parse(&ac, "g", args, n, err, sizeof(err)), BL_OK);
    bl_log_level = BL_LOG_EMERG;
    return ac;
}

/* One window of n answers of latency_ms each, with inflight requests out. */
static void window(struct bl_adaptive *ac, int n, double latency_ms, int inflight)
{
    now += WINDOW_MS;
    for (int i = 0; i < n; i++)
        bl_adaptive_sample(ac, (uint64_t)(latency_ms * 1000), inflight, now);
}

static uint32_t limit(struct bl_adaptive *ac)
{
    return atomic_load(&ac->limit);
}

static void test_parse(void **state)
{
    (void)state;
    struct bl_adaptive *ac = make(NULL, NULL, NULL);
    ASSERT_EQ(ac->min, 3);
    ASSERT_EQ(ac->max, 1000);
    ASSERT_EQ(limit(ac), 3); /* pinned to min while min_rtt is measured */
    bl_adaptive_free(ac);
    ac = make("min=10", "max=50", "latency_target=40ms");
    ASSERT_EQ(ac->latency_target_us, 40000);
    ASSERT_EQ(limit(ac), 20); /* a target needs no measuring */
    char err[256];
    char *dup[] = {"min=1"};
    ASSERT_EQ(bl_adaptive_parse(&ac, "g", dup, 1, err, sizeof(err)), BL_ERR);
    bl_adaptive_free(ac);
    const char *bad[] = {"min=0", "max=x", "latency_target=0", "speed=3", "min=9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ac = NULL;
        char *a[2] = {(char *)bad[i], "max=5"};
        ASSERT_EQ(bl_adaptive_parse(&ac, "g", a, i == 4 ? 2 : 1, err, sizeof(err)), BL_ERR);
        assert_null(ac);
    }
}

static void test_learns_then_sheds(void **state)
{
    (void)state;
    struct bl_adaptive *ac = make("max=400", NULL, NULL);
    /* 20 answers at 20 ms measure min_rtt */
    window(ac, MEASURE_SAMPLES, 20, 3);
    assert_true(ac->min_rtt_us > 19000 && ac->min_rtt_us < 21000);
    ASSERT_EQ(limit(ac), INITIAL);
    /* the servers keep up (20 ms) and the limit is used: it grows */
    uint32_t before = limit(ac);
    for (int i = 0; i < 30; i++)
        window(ac, 20, 20, (int)limit(ac));
    assert_true(limit(ac) > before * 4);
    /* capacity halves: latency doubles past the 30 ms target, the limit comes down */
    uint32_t high = limit(ac);
    for (int i = 0; i < 5; i++)
        window(ac, 20, 60, (int)limit(ac));
    assert_true(limit(ac) < high / 2);
    /* bounded by min however bad it gets */
    for (int i = 0; i < 50; i++)
        window(ac, 20, 1000, (int)limit(ac));
    ASSERT_EQ(limit(ac), ac->min);
    assert_true(bl_adaptive_admit(ac, 2));
    assert_false(bl_adaptive_admit(ac, 3));
    ASSERT_EQ(atomic_load(&ac->shed), 1);
    bl_adaptive_free(ac);
}

static void test_bounds_and_idle(void **state)
{
    (void)state;
    struct bl_adaptive *ac = make("max=50", "latency_target=100ms", NULL);
    /* not loaded (2 in flight of a limit of 20): nothing learned, no growth */
    for (int i = 0; i < 20; i++)
        window(ac, 10, 5, 2);
    ASSERT_EQ(limit(ac), INITIAL);
    for (int i = 0; i < 50; i++)
        window(ac, 10, 5, (int)limit(ac));
    ASSERT_EQ(limit(ac), 50);
    bl_adaptive_free(ac);
    /* a window with too few answers does not close */
    ac = make("latency_target=100ms", NULL, NULL);
    window(ac, WINDOW_MIN - 1, 10000, 20);
    ASSERT_EQ(limit(ac), INITIAL);
    window(ac, 1, 10000, 20);
    ASSERT_EQ(limit(ac), INITIAL / 2);
    bl_adaptive_free(ac);
}

static void test_remeasures(void **state)
{
    (void)state;
    struct bl_adaptive *ac = make(NULL, NULL, NULL);
    window(ac, MEASURE_SAMPLES, 10, 3);
    for (int i = 0; i < 10; i++)
        window(ac, 10, 10, (int)limit(ac));
    now += MEASURE_EVERY_MS;
    window(ac, 10, 10, (int)limit(ac)); /* this window starts a measurement */
    ASSERT_EQ(limit(ac), ac->min);
    window(ac, MEASURE_SAMPLES, 5, 3); /* the servers got faster (answers of the requests
                                        * let in before the pin still count) */
    assert_true(ac->min_rtt_us < 9000);
    assert_true(limit(ac) > ac->min);
    bl_adaptive_free(ac);
}

static struct bl_adaptive *shared;
static void *sampler(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200000; i++)
        bl_adaptive_sample(shared, 20000, (int32_t)atomic_load(&shared->limit),
                           1000000 + (uint64_t)i / 100);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    shared = make("max=300", "latency_target=30ms", NULL);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, sampler, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    uint32_t l = limit(shared);
    assert_true(l >= shared->min && l <= shared->max);
    assert_false(atomic_load(&shared->updating));
    bl_adaptive_free(shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_learns_then_sheds),
        cmocka_unit_test(test_bounds_and_idle),
        cmocka_unit_test(test_remeasures),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
