/* least_conn: fewest in-flight per weight, ties by smooth round robin; backups, max_conns,
 * down, tried, slow start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/balancer_least_conn.c"

#include "balancer_test.h"

/* An idle group ties everywhere: exactly smooth round robin. */
static void test_least_conn_idle_is_round_robin(void **state)
{
    struct tg *t = tg_new(3, (int[]){5, 1, 1}, 0);
    tg_init(t, &bl_balancer_least_conn);
    const char *want = "aabacaaaabacaa";
    for (int i = 0; want[i]; i++)
        assert_int_equal(tg_pick_release(t, 0), want[i] - 'a');
    tg_free(t);
}

static void test_least_conn_idle_spread(void **state)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, &bl_balancer_least_conn);
    unsigned counts[4] = {0};
    for (int i = 0; i < 100000; i++)
        counts[tg_pick_release(t, 0)]++;
    tg_assert_spread(t, counts, 4, 0.0005, "least_conn (idle), weights 1,2,3,4");
    tg_free(t);
}

/* Requests held open: in-flight counts stay proportional to weight, to within one request. */
static void test_least_conn_loaded_spread(void **state)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, &bl_balancer_least_conn);
    for (int i = 1; i <= 100000; i++) {
        int s = tg_pick(t);
        bl_server_acquire(&t->g.servers[s]);
        if (i % 10 == 0)
            for (int j = 0; j < 4; j++) {
                int a = atomic_load(&t->states[j].active);
                assert_in_range(a, i * w[j] / 10 - w[j], i * w[j] / 10 + w[j]);
            }
    }
    unsigned counts[4];
    for (int j = 0; j < 4; j++)
        counts[j] = (unsigned)atomic_load(&t->states[j].active);
    tg_assert_spread(t, counts, 4, 0.0005, "least_conn (loaded), weights 1,2,3,4");
    tg_free(t);
}

/* A busy server gets nothing until the others catch up. */
static void test_least_conn_prefers_idle(void **state)
{
    struct tg *t = tg_new(3, NULL, 0);
    tg_init(t, &bl_balancer_least_conn);
    atomic_store(&t->states[0].active, 5);
    for (int i = 0; i < 10; i++) {
        int s = tg_pick(t);
        assert_int_not_equal(s, 0);
        bl_server_acquire(&t->g.servers[s]);
    }
    /* now 5, 5, 5: all tied again */
    unsigned counts[3] = {0};
    for (int i = 0; i < 300; i++)
        counts[tg_pick_release(t, 0)]++;
    assert_int_equal(counts[0], 100);
    tg_free(t);
}

static void test_least_conn_backup_max_conns_down(void **state)
{
    struct tg *t = tg_new(5, (int[]){1, 1, 1, 1, 3}, 2);
    t->g.servers[0].max_conns = 1;
    t->g.servers[1].down = 1;
    tg_init(t, &bl_balancer_least_conn);
    atomic_store(&t->states[0].active, 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tg_pick_release(t, 0), 2); /* the only usable primary */
    tg_mark_down(t, 2);
    unsigned counts[5] = {0};
    for (int i = 0; i < 400; i++)
        counts[tg_pick_release(t, 0)]++;
    assert_int_equal(counts[3], 100);
    assert_int_equal(counts[4], 300);
    atomic_store(&t->states[0].active, 0); /* room again: back to the primary */
    assert_int_equal(tg_pick(t), 0);
    tg_free(t);
}

static void test_least_conn_tried(void **state)
{
    struct tg *t = tg_new(4, (int[]){2, 1, 1, 1}, 1);
    tg_init(t, &bl_balancer_least_conn);
    for (int r = 0; r < 100; r++) {
        tg_request(t);
        unsigned seen = 0;
        for (int a = 0; a < 4; a++) {
            struct bl_upstream_server *s = t->ops->pick(&t->p);
            assert_non_null(s);
            assert_false(seen & (1u << s->index));
            if (a < 3)
                assert_true(s->index < 3); /* primaries first */
            seen |= 1u << s->index;
            tg_set_tried(t, s->index);
        }
        assert_null(t->ops->pick(&t->p));
    }
    tg_free(t);
}

/* A ramping server counts as lighter-weighted: an idle group gives it f/(f+3) of the picks. */
static void test_least_conn_slow_start(void **state)
{
    struct tg *t = tg_new(4, NULL, 0);
    t->g.servers[3].slow_start_ms = 30000;
    tg_init(t, &bl_balancer_least_conn);
    uint64_t back = t->p.now_ms;
    atomic_store(&t->states[3].up_since_ms, back);
    for (int step = 0; step <= 30; step += 6) {
        t->p.now_ms = back + (uint64_t)step * 1000;
        unsigned counts[4] = {0};
        for (int i = 0; i < 20000; i++)
            counts[tg_pick_release(t, 0)]++;
        double f = step ? step / 30.0 : 1.0 / BL_WEIGHT_UNIT;
        double want = f / (f + 3), got = counts[3] / 20000.0;
        if (fabs(got - want) > 0.005)
            print_error("%d s into a 30 s ramp: share %.4f, want %.4f\n", step, got, want);
        assert_true(fabs(got - want) <= 0.005);
    }
    tg_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_least_conn_idle_is_round_robin),
        cmocka_unit_test(test_least_conn_idle_spread),
        cmocka_unit_test(test_least_conn_loaded_spread),
        cmocka_unit_test(test_least_conn_prefers_idle),
        cmocka_unit_test(test_least_conn_backup_max_conns_down),
        cmocka_unit_test(test_least_conn_tried),
        cmocka_unit_test(test_least_conn_slow_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
