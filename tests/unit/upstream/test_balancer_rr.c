/* Smooth weighted round robin: nginx's sequence, the precomputed fast path against the loop,
 * spread, backups, max_conns, down, tried, slow start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/balancer_rr.c"

#include "balancer_test.h"

static void test_rr_sequence_5_1_1(void **state)
{
    int w[] = {5, 1, 1};
    struct tg *t = tg_new(3, w, 0);
    tg_init(t, &bl_balancer_rr);
    assert_non_null(t->g.balancer_data); /* the fast path is in use */
    const char *want = "aabacaaaabacaa";
    for (int i = 0; want[i]; i++) {
        int got = tg_pick(t);
        if (got != want[i] - 'a')
            print_error("pick %d: got %c, want %c\n", i, 'a' + got, want[i]);
        assert_int_equal(got, want[i] - 'a');
    }
    tg_free(t);
}

/* The loop alone (what nginx runs, and what rr falls back to) gives the same sequence. */
static void test_rr_loop_sequence_5_1_1(void **state)
{
    int w[] = {5, 1, 1};
    struct tg *t = tg_new(3, w, 0);
    tg_init(t, &bl_balancer_rr);
    const char *want = "aabacaa";
    for (int i = 0; want[i]; i++) {
        tg_request(t);
        struct bl_upstream_server *s = bl_rr_pick_smooth(&t->p);
        assert_non_null(s);
        assert_int_equal(s->index, want[i] - 'a');
    }
    tg_free(t);
}

/* For many weight sets the precomputed sequence is exactly the loop's. */
static void test_rr_fast_path_equals_loop(void **state)
{
    uint64_t rng = 42;
    for (int round = 0; round < 50; round++) {
        uint32_t n = 1 + (uint32_t)(bl_lb_rand(&rng) % 40);
        int w[40];
        for (uint32_t i = 0; i < n; i++)
            w[i] = 1 + (int)(bl_lb_rand(&rng) % (round % 2 ? 100 : 6));
        struct tg *fast = tg_new(n, w, 0), *slow = tg_new(n, w, 0);
        if (round % 5 == 4 && n > 1) /* a server marked down in the config */
            fast->g.servers[n / 2].down = slow->g.servers[n / 2].down = 1;
        tg_init(fast, &bl_balancer_rr);
        tg_init(slow, &bl_balancer_rr);
        assert_non_null(fast->g.balancer_data);
        int total = tg_total_weight(fast, 0, n);
        for (int k = 0; k < 2 * total + 3; k++) {
            int a = tg_pick(fast);
            tg_request(slow);
            struct bl_upstream_server *s = bl_rr_pick_smooth(&slow->p);
            assert_int_equal(a, (int)s->index);
        }
        /* a `down` server is not in the sequence: no pick takes the slow path */
        const struct rr_seq *seq = fast->g.balancer_data;
        for (uint32_t k = 0; k < seq->len; k++)
            assert_false(fast->g.servers[seq->idx[k]].down);
        tg_free(fast);
        tg_free(slow);
    }
}

static void test_rr_spread(void **state)
{
    int w[] = {1, 2, 3, 4, 10, 7, 1};
    struct tg *t = tg_new(7, w, 0);
    tg_init(t, &bl_balancer_rr);
    unsigned counts[7] = {0};
    for (int i = 0; i < 100000; i++)
        counts[tg_pick(t)]++;
    tg_assert_spread(t, counts, 7, 0.0005, "round_robin 1,2,3,4,10,7,1");
    tg_free(t);
}

/* A down server's turns are shared out by weight; the rest keep their proportions. */
static void test_rr_spread_with_one_down(void **state)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, &bl_balancer_rr);
    tg_mark_down(t, 1);
    unsigned counts[4] = {0};
    for (int i = 0; i < 100000; i++)
        counts[tg_pick(t)]++;
    assert_int_equal(counts[1], 0);
    /* shares among 0, 2, 3: 1/8, 3/8, 4/8 */
    assert_in_range(counts[0], 12500 - 500, 12500 + 500);
    assert_in_range(counts[2], 37500 - 500, 37500 + 500);
    assert_in_range(counts[3], 50000 - 500, 50000 + 500);
    tg_free(t);
}

static void test_rr_backup(void **state)
{
    int w[] = {1, 1, 1, 2, 1};
    struct tg *t = tg_new(5, w, 2); /* 3, 4 are backups */
    tg_init(t, &bl_balancer_rr);
    tg_mark_down(t, 0);
    tg_mark_down(t, 1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(tg_pick(t), 2); /* one primary left: backups get nothing */
    tg_mark_down(t, 2);
    unsigned counts[5] = {0};
    for (int i = 0; i < 3000; i++) {
        int s = tg_pick(t);
        assert_true(s == 3 || s == 4);
        counts[s]++;
    }
    assert_int_equal(counts[3], 2000);
    assert_int_equal(counts[4], 1000);
    atomic_store(&t->states[0].down_until_ms, 0); /* a primary is back */
    for (int i = 0; i < 100; i++)
        assert_int_equal(tg_pick(t), 0);
    tg_free(t);
}

static void test_rr_max_conns_and_down(void **state)
{
    struct tg *t = tg_new(3, NULL, 0);
    t->g.servers[0].max_conns = 2;
    t->g.servers[2].down = 1;
    tg_init(t, &bl_balancer_rr);
    atomic_store(&t->states[0].active, 2);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tg_pick(t), 1);
    atomic_store(&t->states[0].active, 1);
    unsigned counts[3] = {0};
    for (int i = 0; i < 100; i++)
        counts[tg_pick(t)]++;
    assert_int_equal(counts[0], 50);
    assert_int_equal(counts[2], 0);
    tg_free(t);
}

static void test_rr_tried(void **state)
{
    int w[] = {5, 1, 1};
    struct tg *t = tg_new(4, (int[]){5, 1, 1, 1}, 1);
    tg_init(t, &bl_balancer_rr);
    BL_UNUSED(w);
    for (int r = 0; r < 100; r++) {
        tg_request(t);
        uint8_t seen = 0;
        for (int k = 0; k < 3; k++) {
            struct bl_upstream_server *s = t->ops->pick(&t->p);
            assert_non_null(s);
            assert_true(s->index < 3);
            assert_false(seen & (1u << s->index));
            seen |= (uint8_t)(1u << s->index);
            tg_set_tried(t, s->index);
        }
        struct bl_upstream_server *s = t->ops->pick(&t->p); /* primaries all tried: backup */
        assert_non_null(s);
        assert_int_equal(s->index, 3);
        tg_set_tried(t, 3);
        assert_null(t->ops->pick(&t->p));
    }
    tg_free(t);
}

/* A server back from a failure ramps from near zero to its weight's share over slow_start. */
static void test_rr_slow_start(void **state)
{
    for (int fast = 0; fast < 2; fast++) {
        struct tg *t = tg_new(4, NULL, 0);
        t->g.servers[0].slow_start_ms = 10000;
        tg_init(t, &bl_balancer_rr);
        if (!fast) { /* the loop only */
            free(t->g.balancer_data);
            t->g.balancer_data = NULL;
        }
        uint64_t back = t->p.now_ms;
        atomic_store(&t->states[0].up_since_ms, back);
        double last = -1;
        for (int step = 0; step <= 10; step++) {
            t->p.now_ms = back + (uint64_t)step * 1000;
            unsigned counts[4] = {0};
            for (int i = 0; i < 40000; i++)
                counts[tg_pick(t)]++;
            double f = step == 0 ? 1.0 / BL_WEIGHT_UNIT : step / 10.0;
            double want = f / (f + 3), got = counts[0] / 40000.0;
            if (fabs(got - want) > 0.01)
                print_error("%s path, %d s into slow start: share %.4f, want %.4f\n",
                            fast ? "fast" : "loop", step, got, want);
            assert_true(fabs(got - want) <= 0.01);
            assert_true(got >= last);
            last = got;
        }
        tg_free(t);
    }
}

static void test_rr_invalid(void **state)
{
    struct tg *t = tg_new(2, (int[]){1, 0}, 0);
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_rr), "weight"));
    tg_free(t);
    t = tg_new(2, NULL, 2);
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_rr), "no servers"));
    tg_free(t);
    t = tg_new(2, NULL, 0);
    t->g.hash_bound = 1.5;
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_rr), "bound"));
    tg_free(t);
    t = tg_new(2, NULL, 0);
    t->g.random_two = 1;
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_rr), "two"));
    tg_free(t);
}

/* 1000 servers: the sequence exists and every server gets exactly its weight per period. */
static void test_rr_large_group(void **state)
{
    int w[1000];
    for (int i = 0; i < 1000; i++)
        w[i] = 1 + i % 10;
    struct tg *t = tg_new(1000, w, 0);
    tg_init(t, &bl_balancer_rr);
    assert_non_null(t->g.balancer_data);
    int total = tg_total_weight(t, 0, 1000);
    unsigned *counts = calloc(1000, sizeof(unsigned));
    for (int i = 0; i < total; i++)
        counts[tg_pick(t)]++;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(counts[i], w[i]);
    free(counts);
    tg_free(t);
}

/* The alias table gives every server exactly weight * n of the n * total units. */
static void test_rr_alias_table_exact(void **state)
{
    uint64_t rng = 7;
    for (int round = 0; round < 200; round++) {
        uint32_t n = 1 + (uint32_t)(bl_lb_rand(&rng) % 300);
        int *w = malloc(n * sizeof(int));
        for (uint32_t i = 0; i < n; i++)
            w[i] = 1 + (int)(bl_lb_rand(&rng) % (round % 3 ? 10 : 100000));
        struct tg *t = tg_new(n, w, 0);
        struct bl_rr_weights *wt = bl_rr_weights_build(&t->g);
        assert_non_null(wt);
        uint64_t *units = calloc(n, sizeof(uint64_t));
        for (uint32_t c = 0; c < n; c++) {
            assert_true(wt->column[c].threshold <= wt->total);
            assert_true(wt->column[c].alias < n);
            units[c] += wt->column[c].threshold;
            units[wt->column[c].alias] += wt->total - wt->column[c].threshold;
        }
        for (uint32_t i = 0; i < n; i++)
            assert_int_equal(units[i], (uint64_t)w[i] * n);
        for (uint32_t i = 0; i < n; i++) /* and the spans agree with the weights */
            assert_int_equal(bl_rr_weights_find(wt, wt->cum[i] - 1), i);
        free(units);
        free(wt);
        free(w);
        tg_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rr_sequence_5_1_1),
        cmocka_unit_test(test_rr_loop_sequence_5_1_1),
        cmocka_unit_test(test_rr_fast_path_equals_loop),
        cmocka_unit_test(test_rr_spread),
        cmocka_unit_test(test_rr_spread_with_one_down),
        cmocka_unit_test(test_rr_backup),
        cmocka_unit_test(test_rr_max_conns_and_down),
        cmocka_unit_test(test_rr_tried),
        cmocka_unit_test(test_rr_slow_start),
        cmocka_unit_test(test_rr_invalid),
        cmocka_unit_test(test_rr_large_group),
        cmocka_unit_test(test_rr_alias_table_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
