/* hash KEY maglev: table shares, spread, disruption on removal, down, tried, slow start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/balancer_maglev.c"

#include "balancer_test.h"

/* Every server holds its weight's share of slots, to within a slot or so per round. */
static void test_maglev_table_shares(void **state)
{
    int w[] = {1, 2, 3, 4, 5, 1, 1};
    struct tg *t = tg_new(7, w, 0);
    tg_init(t, &bl_balancer_hash_maglev);
    const struct maglev_table *m = t->g.balancer_data;
    assert_int_equal(m->size, MAGLEV_SIZE);
    unsigned counts[7] = {0};
    for (uint32_t j = 0; j < m->size; j++) {
        assert_true(m->slot[j] < 7);
        counts[m->slot[j]]++;
    }
    tg_assert_spread(t, counts, 7, 0.0005, "maglev slots, weights 1,2,3,4,5,1,1");
    tg_free(t);
}

static void test_maglev_spread(void **state)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, &bl_balancer_hash_maglev);
    unsigned counts[4] = {0};
    char key[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "/objects/%d", i);
        tg_key(t, key);
        counts[tg_pick(t)]++;
    }
    tg_assert_spread(t, counts, 4, 0.01, "maglev, weights 1,2,3,4, 100000 keys");
    tg_free(t);
}

/* Big groups get a bigger prime table (>= 100 slots per server). */
static void test_maglev_big_group(void **state)
{
    struct tg *t = tg_new(1000, NULL, 0);
    tg_init(t, &bl_balancer_hash_maglev);
    const struct maglev_table *m = t->g.balancer_data;
    assert_true(m->size >= 100000);
    assert_true(is_prime(m->size));
    unsigned *counts = calloc(1000, sizeof(unsigned));
    for (uint32_t j = 0; j < m->size; j++)
        counts[m->slot[j]]++;
    for (int i = 0; i < 1000; i++)
        assert_in_range(counts[i], m->size / 1000 - 1, m->size / 1000 + 1);
    free(counts);
    tg_free(t);
}

/* Removing one of N servers moves at most 1/N of the keys plus 2%; Maglev may move a few keys
 * between remaining servers (its disruption is near-minimal, not minimal). */
static void test_maglev_removal_disruption(void **state)
{
    enum { N = 10, KEYS = 100000 };
    char (*before)[64] = calloc(KEYS, 64), (*after)[64] = calloc(KEYS, 64);
    const char *names[N];
    char buf[N][48];
    tg_backend_names(buf, names, N);
    struct tg *t = tg_new_named(N, names, NULL, 0);
    tg_init(t, &bl_balancer_hash_maglev);
    tg_map_keys(t, KEYS, before, 0);
    tg_free(t);
    double worst = 0, worst_stayers = 0;
    for (int gone = 0; gone < N; gone++) {
        const char *rest[N - 1];
        for (int i = 0, j = 0; i < N; i++)
            if (i != gone)
                rest[j++] = names[i];
        t = tg_new_named(N - 1, rest, NULL, 0);
        tg_init(t, &bl_balancer_hash_maglev);
        tg_map_keys(t, KEYS, after, 0);
        tg_free(t);
        int moved = 0, stayers_moved = 0;
        for (int k = 0; k < KEYS; k++) {
            if (strcmp(before[k], after[k]) == 0)
                continue;
            moved++;
            stayers_moved += strcmp(before[k], names[gone]) != 0;
        }
        double frac = (double)moved / KEYS;
        if (frac > worst)
            worst = frac;
        if ((double)stayers_moved / KEYS > worst_stayers)
            worst_stayers = (double)stayers_moved / KEYS;
        if (frac > 1.0 / N + 0.02)
            print_error("removing %s moved %.4f of keys (limit %.4f)\n", names[gone], frac,
                        1.0 / N + 0.02);
        assert_true(frac <= 1.0 / N + 0.02);
    }
    print_message("[ MOVED    ] removing 1 of %d servers moved at most %.4f of %d keys, "
                  "%.4f between remaining servers\n", N, worst, KEYS, worst_stayers);
    free(before);
    free(after);
}

/* A down server's keys spread over the others by weight; nobody else's keys move. */
static void test_maglev_down(void **state)
{
    enum { KEYS = 30000 };
    int w[] = {1, 1, 2, 4, 2};
    struct tg *t = tg_new(5, w, 0);
    tg_init(t, &bl_balancer_hash_maglev);
    int *home = calloc(KEYS, sizeof(int));
    char key[32];
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "d%d", k);
        tg_key(t, key);
        home[k] = tg_pick(t);
    }
    tg_mark_down(t, 1);
    t->g.servers[4].max_conns = 1;
    atomic_store(&t->states[4].active, 1);
    unsigned moved_to[5] = {0};
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "d%d", k);
        tg_key(t, key);
        int s = tg_pick(t);
        assert_true(s != 1 && s != 4);
        if (home[k] != 1 && home[k] != 4)
            assert_int_equal(s, home[k]);
        else
            moved_to[s]++;
    }
    /* the displaced keys follow the remaining weights 1 : 2 : 4 */
    unsigned total = moved_to[0] + moved_to[2] + moved_to[3];
    for (int i = 0; i < 4; i++) {
        if (i == 1)
            continue;
        double share = (double)moved_to[i] / total, want = w[i] / 7.0;
        if (fabs(share - want) > 0.02)
            print_error("server %d took %.3f of the displaced keys, want %.3f\n", i, share, want);
        assert_true(fabs(share - want) <= 0.02);
    }
    free(home);
    tg_free(t);
}

static void test_maglev_tried(void **state)
{
    struct tg *t = tg_new(5, (int[]){1, 2, 3, 1, 2}, 0);
    tg_init(t, &bl_balancer_hash_maglev);
    char key[32];
    for (int k = 0; k < 2000; k++) {
        snprintf(key, sizeof(key), "r%d", k);
        tg_key(t, key);
        tg_assert_retries_visit_all(t);
    }
    tg_free(t);
}

static void test_maglev_slow_start(void **state)
{
    struct tg *t = tg_new(4, NULL, 0);
    t->g.servers[0].slow_start_ms = 10000;
    tg_init(t, &bl_balancer_hash_maglev);
    enum { KEYS = 20000 };
    int *home = calloc(KEYS, sizeof(int));
    char key[32];
    int mine = 0;
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "ss%d", k);
        tg_key(t, key);
        home[k] = tg_pick(t);
        mine += home[k] == 0;
    }
    uint64_t back = t->p.now_ms;
    atomic_store(&t->states[0].up_since_ms, back);
    for (int step = 1; step <= 10; step += 3) {
        t->p.now_ms = back + (uint64_t)step * 1000;
        int got = 0;
        for (int k = 0; k < KEYS; k++) {
            snprintf(key, sizeof(key), "ss%d", k);
            tg_key(t, key);
            int s = tg_pick(t);
            if (home[k] != 0)
                assert_int_equal(s, home[k]);
            got += s == 0;
        }
        double share = (double)got / mine;
        assert_true(fabs(share - step / 10.0) <= 0.03);
    }
    free(home);
    tg_free(t);
}

static void test_maglev_fallbacks_and_invalid(void **state)
{
    struct tg *t = tg_new(3, (int[]){5, 1, 1}, 0);
    tg_init(t, &bl_balancer_hash_maglev);
    tg_key(t, ""); /* empty key: round robin */
    const char *want = "aabacaa";
    for (int i = 0; want[i]; i++)
        assert_int_equal(tg_pick(t), want[i] - 'a');
    for (int i = 0; i < 3; i++)
        tg_mark_down(t, (uint32_t)i);
    tg_key(t, "k");
    assert_int_equal(tg_pick(t), -1);
    tg_free(t);
    t = tg_new(3, NULL, 1);
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_hash_maglev), "backup"));
    tg_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maglev_table_shares),
        cmocka_unit_test(test_maglev_spread),
        cmocka_unit_test(test_maglev_big_group),
        cmocka_unit_test(test_maglev_removal_disruption),
        cmocka_unit_test(test_maglev_down),
        cmocka_unit_test(test_maglev_tried),
        cmocka_unit_test(test_maglev_slow_start),
        cmocka_unit_test(test_maglev_fallbacks_and_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
