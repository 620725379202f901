/* least_time: peak-EWMA latency times load, two choices; decay, penalties, backups, tried,
 * max_conns, slow start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/balancer_least_time.c"

#include "balancer_test.h"

/* Feeds one response of latency_us from server i. */
static void feed(struct tg *t, uint32_t i, uint64_t latency_us, int failed)
{
    struct bl_pick_feedback fb = {failed ? 0 : 200, failed, latency_us, 0};
    t->ops->release(&t->p, &t->g.servers[i], &fb);
}

/* Equal latencies, idle: every pair ties, the first draw wins: spread by weight. */
static void test_least_time_idle_spread(void **state)
{
    int w[] = {1, 2, 3, 4, 10};
    struct tg *t = tg_new(5, w, 0);
    tg_init(t, &bl_balancer_least_time);
    ((struct bl_rr_worker *)t->wstate)->rng = 4242;
    for (uint32_t i = 0; i < 5; i++)
        feed(t, i, 20000, 0);
    unsigned counts[5] = {0};
    for (int i = 0; i < 100000; i++)
        counts[tg_pick_release(t, 20000)]++;
    tg_assert_spread(t, counts, 5, 0.01, "least_time (idle, equal latency), weights 1,2,3,4,10");
    tg_free(t);
}

/* One slow server: traffic goes elsewhere. */
static void test_least_time_avoids_slow_server(void **state)
{
    struct tg *t = tg_new(4, NULL, 0);
    tg_init(t, &bl_balancer_least_time);
    uint64_t lat[4] = {500000, 10000, 12000, 9000};
    for (uint32_t i = 0; i < 4; i++)
        feed(t, i, lat[i], 0);
    unsigned counts[4] = {0};
    for (int i = 0; i < 100000; i++) {
        int s = tg_pick(t);
        counts[s]++;
        feed(t, (uint32_t)s, lat[s], 0);
        if (i % 1000 == 0)
            t->p.now_ms += 10; /* time passes: 1 s over the run */
    }
    print_message("[ SLOW     ] least_time, 500 ms server among 9-12 ms ones: %.4f%% of picks\n",
                  counts[0] / 1000.0);
    assert_true(counts[0] < 1000); /* under 1% */
    tg_free(t);
}

/* Unfed, a slow server's latency decays (half-life 7 s): after a minute it is tried again,
 * and one slow answer pushes it back out at once (peak). */
static void test_least_time_decay_and_peak(void **state)
{
    struct tg *t = tg_new(2, NULL, 0);
    tg_init(t, &bl_balancer_least_time);
    feed(t, 0, 500000, 0);
    feed(t, 1, 10000, 0);
    assert_int_equal(tg_pick(t), 1);
    assert_int_equal(lt_latency(&t->g.servers[0], t->p.now_ms + 7000), 250000);
    assert_in_range(lt_latency(&t->g.servers[0], t->p.now_ms + 10500), 165000, 195000);
    t->p.now_ms += 60000;
    feed(t, 1, 10000, 0);
    assert_int_equal(tg_pick(t), 0); /* decayed to ~1.4 ms */
    feed(t, 0, 500000, 0);
    assert_int_equal(lt_latency(&t->g.servers[0], t->p.now_ms), 500000);
    assert_int_equal(tg_pick(t), 1);
    /* faster answers pull it down by 1/8 each */
    feed(t, 0, 100000, 0);
    assert_int_equal(lt_latency(&t->g.servers[0], t->p.now_ms), 450000);
    tg_free(t);
}

/* A failure counts as at least a second, so failing fast does not attract traffic. */
static void test_least_time_failure_penalty(void **state)
{
    struct tg *t = tg_new(2, NULL, 0);
    tg_init(t, &bl_balancer_least_time);
    feed(t, 0, 5000, 0);
    feed(t, 1, 20000, 0);
    assert_int_equal(tg_pick(t), 0);
    feed(t, 0, 300, 1); /* refused in 0.3 ms */
    assert_int_equal(lt_latency(&t->g.servers[0], t->p.now_ms), LT_FAIL_US);
    assert_int_equal(tg_pick(t), 1);
    tg_free(t);
}

/* Never measured: free while idle, a penalty while busy. */
static void test_least_time_unmeasured(void **state)
{
    struct tg *t = tg_new(2, NULL, 0);
    tg_init(t, &bl_balancer_least_time);
    feed(t, 0, 50000, 0);
    assert_int_equal(tg_pick(t), 1); /* new server: gets measured */
    atomic_store(&t->states[1].active, 1);
    assert_int_equal(tg_pick(t), 0); /* busy before its first answer: not flooded */
    tg_free(t);
}

/* Equal latencies, requests held open: in-flight per weight stays level. */
static void test_least_time_loaded(void **state)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, &bl_balancer_least_time);
    for (uint32_t i = 0; i < 4; i++)
        feed(t, i, 20000, 0);
    double worst = tg_hold_worst_deviation(t, 20000);
    print_message("[ LOAD     ] least_time, 20000 held requests: worst in-flight off its "
                  "weight's share by %.1f requests per weight unit\n", worst);
    assert_true(worst <= 10);
    tg_free(t);
}

static void test_least_time_backup_max_conns_tried(void **state)
{
    struct tg *t = tg_new(5, (int[]){1, 1, 1, 1, 3}, 2);
    t->g.servers[0].max_conns = 1;
    tg_init(t, &bl_balancer_least_time);
    atomic_store(&t->states[0].active, 1);
    for (int i = 0; i < 500; i++) {
        int s = tg_pick_release(t, 1000);
        assert_true(s == 1 || s == 2);
    }
    tg_mark_down(t, 1);
    tg_mark_down(t, 2);
    unsigned counts[5] = {0};
    for (int i = 0; i < 400; i++)
        counts[tg_pick_release(t, 1000)]++;
    assert_int_equal(counts[3], 100); /* backups by round robin */
    assert_int_equal(counts[4], 300);
    atomic_store(&t->states[0].active, 0);
    atomic_store(&t->states[1].down_until_ms, 0);
    atomic_store(&t->states[2].down_until_ms, 0);
    for (int r = 0; r < 300; r++) {
        tg_request(t);
        unsigned seen = 0;
        for (int a = 0; a < 5; a++) {
            struct bl_upstream_server *s = t->ops->pick(&t->p);
            assert_non_null(s);
            if (a < 3)
                assert_true(s->index < 3);
            assert_false(seen & (1u << s->index));
            seen |= 1u << s->index;
            tg_set_tried(t, s->index);
        }
        assert_null(t->ops->pick(&t->p));
    }
    tg_free(t);
}

static void test_least_time_slow_start(void **state)
{
    struct tg *t = tg_new(4, NULL, 0);
    t->g.servers[1].slow_start_ms = 10000;
    tg_init(t, &bl_balancer_least_time);
    for (uint32_t i = 0; i < 4; i++)
        feed(t, i, 20000, 0);
    uint64_t back = t->p.now_ms;
    atomic_store(&t->states[1].up_since_ms, back);
    for (int step = 0; step <= 10; step += 5) {
        t->p.now_ms = back + (uint64_t)step * 1000;
        unsigned counts[4] = {0};
        for (int i = 0; i < 40000; i++)
            counts[tg_pick_release(t, 20000)]++;
        double f = step ? step / 10.0 : 0, want = f / (f + 3), got = counts[1] / 40000.0;
        if (fabs(got - want) > 0.01)
            print_error("%d s into the ramp: %.4f, want %.4f\n", step, got, want);
        assert_true(fabs(got - want) <= 0.01);
    }
    tg_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_least_time_idle_spread),
        cmocka_unit_test(test_least_time_avoids_slow_server),
        cmocka_unit_test(test_least_time_decay_and_peak),
        cmocka_unit_test(test_least_time_failure_penalty),
        cmocka_unit_test(test_least_time_unmeasured),
        cmocka_unit_test(test_least_time_loaded),
        cmocka_unit_test(test_least_time_backup_max_conns_tried),
        cmocka_unit_test(test_least_time_slow_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
