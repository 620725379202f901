/* random [two]: weighted draws, power of two choices, backups, max_conns, tried, slow start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/balancer_random.c"

#include "balancer_test.h"

static void spread(int two, const char *what)
{
    int w[] = {1, 2, 3, 4, 10};
    struct tg *t = tg_new(5, w, 0);
    t->g.random_two = (uint8_t)two;
    tg_init(t, &bl_balancer_random);
    ((struct bl_rr_worker *)t->wstate)->rng = 12345;
    unsigned counts[5] = {0};
    for (int i = 0; i < 100000; i++)
        counts[tg_pick_release(t, 0)]++;
    tg_assert_spread(t, counts, 5, 0.01, what);
    tg_free(t);
}

static void test_random_spread(void **state)
{
    spread(0, "random, weights 1,2,3,4,10");
}

/* Idle, "two" ties on every pair and keeps the first draw: still spread by weight. */
static void test_random_two_idle_spread(void **state)
{
    spread(1, "random two (idle), weights 1,2,3,4,10");
}

/* Held open, "two" keeps in-flight per weight close: far closer than plain random. */
static void test_random_two_loaded(void **state)
{
    int w[] = {1, 2, 3, 4};
    for (int two = 0; two < 2; two++) {
        struct tg *t = tg_new(4, w, 0);
        t->g.random_two = (uint8_t)two;
        tg_init(t, &bl_balancer_random);
        ((struct bl_rr_worker *)t->wstate)->rng = 777;
        double worst = tg_hold_worst_deviation(t, 20000);
        print_message("[ LOAD     ] random%s, 20000 held requests: worst in-flight off its "
                      "weight's share by %.1f requests per weight unit\n", two ? " two" : "",
                      worst);
        if (two)
            assert_true(worst <= 10);
        tg_free(t);
    }
}

static void test_random_two_prefers_idle(void **state)
{
    struct tg *t = tg_new(4, NULL, 0);
    t->g.random_two = 1;
    tg_init(t, &bl_balancer_random);
    atomic_store(&t->states[2].active, 50);
    for (int i = 0; i < 10000; i++)
        assert_int_not_equal(tg_pick_release(t, 0), 2); /* loses every pair */
    tg_free(t);
}

/* Unlike nginx, backups work here: nothing while a primary is up, everything after. */
static void test_random_backup(void **state)
{
    for (int two = 0; two < 2; two++) {
        struct tg *t = tg_new(4, (int[]){1, 1, 1, 3}, 2);
        t->g.random_two = (uint8_t)two;
        tg_init(t, &bl_balancer_random);
        tg_mark_down(t, 0);
        for (int i = 0; i < 1000; i++)
            assert_int_equal(tg_pick_release(t, 0), 1);
        tg_mark_down(t, 1);
        unsigned counts[4] = {0};
        for (int i = 0; i < 400; i++)
            counts[tg_pick_release(t, 0)]++;
        assert_int_equal(counts[2], 100);
        assert_int_equal(counts[3], 300);
        tg_free(t);
    }
}

static void test_random_max_conns_down_tried(void **state)
{
    for (int two = 0; two < 2; two++) {
        struct tg *t = tg_new(5, (int[]){4, 1, 1, 1, 1}, 0);
        t->g.random_two = (uint8_t)two;
        t->g.servers[0].max_conns = 2;
        t->g.servers[1].down = 1;
        tg_init(t, &bl_balancer_random);
        atomic_store(&t->states[0].active, 2);
        for (int i = 0; i < 2000; i++) {
            int s = tg_pick_release(t, 0);
            assert_true(s >= 2);
        }
        atomic_store(&t->states[0].active, 0);
        for (int r = 0; r < 500; r++) {
            tg_request(t);
            unsigned seen = 0;
            for (int a = 0; a < 4; a++) {
                struct bl_upstream_server *s = t->ops->pick(&t->p);
                assert_non_null(s);
                assert_int_not_equal(s->index, 1);
                assert_false(seen & (1u << s->index));
                seen |= 1u << s->index;
                tg_set_tried(t, s->index);
            }
            assert_null(t->ops->pick(&t->p));
        }
        tg_free(t);
    }
}

static void test_random_slow_start(void **state)
{
    for (int two = 0; two < 2; two++) {
        struct tg *t = tg_new(4, NULL, 0);
        t->g.random_two = (uint8_t)two;
        t->g.servers[1].slow_start_ms = 10000;
        tg_init(t, &bl_balancer_random);
        uint64_t back = t->p.now_ms;
        atomic_store(&t->states[1].up_since_ms, back);
        for (int step = 0; step <= 10; step += 5) {
            t->p.now_ms = back + (uint64_t)step * 1000;
            unsigned counts[4] = {0};
            for (int i = 0; i < 40000; i++)
                counts[tg_pick_release(t, 0)]++;
            double f = step ? step / 10.0 : 0, want = f / (f + 3), got = counts[1] / 40000.0;
            if (fabs(got - want) > 0.01)
                print_error("random%s, %d s into the ramp: %.4f, want %.4f\n", two ? " two" : "",
                            step, got, want);
            assert_true(fabs(got - want) <= 0.01);
        }
        tg_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_spread),
        cmocka_unit_test(test_random_two_idle_spread),
        cmocka_unit_test(test_random_two_loaded),
        cmocka_unit_test(test_random_two_prefers_idle),
        cmocka_unit_test(test_random_backup),
        cmocka_unit_test(test_random_max_conns_down_tried),
        cmocka_unit_test(test_random_slow_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
