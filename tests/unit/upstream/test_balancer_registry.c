/* The balancer registry and the config rules every method enforces in init(); the slow-start
 * helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/balancer.c"

#include "balancer_test.h"
#include "upstream/slow_start.h"

static void test_registry_names(void **state)
{
    static const char *const names[] = {"round_robin", "least_conn",  "ip_hash",
                                        "hash",        "hash_consistent", "hash_maglev",
                                        "random",      "least_time"};
    for (size_t i = 0; i < BL_ARRAY_LEN(names); i++) {
        const struct bl_balancer_ops *ops = bl_balancer_find(names[i]);
        assert_non_null(ops);
        assert_string_equal(ops->name, names[i]);
        assert_non_null(ops->init);
        assert_non_null(ops->pick);
    }
    assert_null(bl_balancer_find("consistent"));
    assert_null(bl_balancer_find(""));
    assert_null(bl_balancer_find("Round_Robin"));
}

/* Every method: init, picks something, destroy frees; weight 0 and no primary rejected. */
static void test_registry_every_method(void **state)
{
    for (size_t i = 0; i < BL_ARRAY_LEN(balancers); i++) {
        const struct bl_balancer_ops *ops = balancers[i];
        struct tg *t = tg_new(3, (int[]){1, 2, 3}, 0);
        tg_init(t, ops);
        tg_key(t, "key");
        struct sockaddr_in sin = tg_ipv4(10, 0, 0, 1);
        t->p.client_addr = (const struct sockaddr *)&sin;
        for (int k = 0; k < 100; k++)
            assert_true(tg_pick_release(t, 1000) >= 0);
        tg_free(t);

        t = tg_new(3, (int[]){1, 0, 3}, 0);
        assert_non_null(strstr(tg_init_fails(t, ops), "weight"));
        tg_free(t);
        t = tg_new(3, (int[]){1, BL_WEIGHT_MAX + 1, 3}, 0);
        assert_non_null(strstr(tg_init_fails(t, ops), "weight"));
        tg_free(t);
    }
}

/* Which methods take backups, bound= and two. */
static void test_registry_rules(void **state)
{
    for (size_t i = 0; i < BL_ARRAY_LEN(balancers); i++) {
        const struct bl_balancer_ops *ops = balancers[i];
        int hash_like = strstr(ops->name, "hash") != NULL;
        assert_int_equal(!!(ops->flags & BL_BALANCER_NO_BACKUP), hash_like);

        struct tg *t = tg_new(3, NULL, 1);
        if (hash_like) {
            assert_non_null(strstr(tg_init_fails(t, ops), "backup"));
        } else {
            tg_init(t, ops);
        }
        tg_free(t);

        t = tg_new(3, NULL, 0);
        t->g.hash_bound = 1.25;
        if (ops == &bl_balancer_hash_consistent)
            tg_init(t, ops);
        else
            assert_non_null(strstr(tg_init_fails(t, ops), "bound"));
        tg_free(t);

        t = tg_new(3, NULL, 0);
        t->g.random_two = 1;
        if (ops == &bl_balancer_random)
            tg_init(t, ops);
        else
            assert_non_null(strstr(tg_init_fails(t, ops), "two"));
        tg_free(t);
    }
}

static void test_slow_start_ramp(void **state)
{
    struct bl_server_state st = {0};
    struct bl_upstream_server s = {.weight = 3, .state = &st};
    assert_int_equal(bl_server_effective_weight(&s, 5000), 3 * BL_WEIGHT_UNIT); /* no ramp */
    s.slow_start_ms = 10000;
    assert_int_equal(bl_server_effective_weight(&s, 5000), 3 * BL_WEIGHT_UNIT); /* never down */
    atomic_store(&st.up_since_ms, 100000);
    assert_int_equal(bl_slow_start_ramp(&s, 90000), 1);   /* not back yet */
    assert_int_equal(bl_slow_start_ramp(&s, 100000), 1);  /* near zero at first */
    assert_int_equal(bl_slow_start_ramp(&s, 102500), BL_WEIGHT_UNIT / 4);
    assert_int_equal(bl_server_effective_weight(&s, 105000), 3 * BL_WEIGHT_UNIT / 2);
    assert_int_equal(bl_slow_start_ramp(&s, 110000), BL_WEIGHT_UNIT);
    assert_int_equal(bl_slow_start_ramp(&s, 200000), BL_WEIGHT_UNIT);
    /* admission: the admitted share follows the ramp and only grows */
    int was[4096] = {0};
    for (uint64_t now = 100000; now <= 110000; now += 1000) {
        int in = 0;
        for (uint32_t h = 0; h < 4096; h++) {
            int a = bl_slow_start_admit(&s, now, h * 2654435761u);
            assert_true(a >= was[h]);
            was[h] = a;
            in += a;
        }
        double want = (double)bl_slow_start_ramp(&s, now) / BL_WEIGHT_UNIT;
        assert_true(fabs(in / 4096.0 - want) < 0.03);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_names),
        cmocka_unit_test(test_registry_every_method),
        cmocka_unit_test(test_registry_rules),
        cmocka_unit_test(test_slow_start_ramp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
