/* hash KEY [consistent [bound=F]]: nginx's mappings checked against nginx itself, spread,
 * minimal disruption, bounded loads, down, max_conns, tried, slow start, fallbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/balancer_hash.c"

#include "balancer_test.h"
#include "nginx_golden.h"

static const char *const golden_names[] = {"127.0.0.1:27001", "127.0.0.1:27002",
                                           "127.0.0.1:27003", "127.0.0.1:27004",
                                           "127.0.0.1:27005"};
static const int golden_weights[] = {1, 2, 3, 1, 2};

static void test_crc32_vectors(void **state)
{
    assert_int_equal(bl_lb_crc32("123456789", 9), 0xcbf43926u);
    assert_int_equal(bl_lb_crc32("", 0), 0);
    /* slicing-by-8 agrees with the definition at every length and alignment */
    char buf[64];
    for (int i = 0; i < 64; i++)
        buf[i] = (char)(i * 37 + 1);
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= 64; len++) {
            uint32_t c = 0xffffffffu; /* bit at a time, straight from the definition */
            for (size_t i = 0; i < len; i++) {
                c ^= (uint8_t)buf[off + i];
                for (int b = 0; b < 8; b++)
                    c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            }
            assert_int_equal(bl_lb_crc32(buf + off, len), c ^ 0xffffffffu);
        }
}

static void check_golden(const struct bl_balancer_ops *ops, double bound,
                         const struct golden_key *golden, size_t n)
{
    struct tg *t = tg_new_named(5, golden_names, golden_weights, 0);
    t->g.hash_bound = bound;
    tg_init(t, ops);
    for (size_t i = 0; i < n; i++) {
        tg_key(t, golden[i].key);
        int got = tg_pick_release(t, 0);
        if (got != golden[i].server)
            print_error("%s key \"%s\": ballast picks %d, nginx picked %d\n", ops->name,
                        golden[i].key, got, golden[i].server);
        assert_int_equal(got, golden[i].server);
    }
    tg_free(t);
}

static void test_hash_matches_nginx(void **state)
{
    check_golden(&bl_balancer_hash, 0, nginx_golden_hash, BL_ARRAY_LEN(nginx_golden_hash));
}

static void test_chash_matches_nginx(void **state)
{
    check_golden(&bl_balancer_hash_consistent, 0, nginx_golden_chash,
                 BL_ARRAY_LEN(nginx_golden_chash));
}

/* With nothing in flight no server is over its bound: bound= maps exactly like nginx. */
static void test_chash_bounded_idle_matches_nginx(void **state)
{
    check_golden(&bl_balancer_hash_consistent, 1.25, nginx_golden_chash,
                 BL_ARRAY_LEN(nginx_golden_chash));
}

static void test_chash_split(void **state)
{
    const char *h, *p;
    size_t hl, pl;
    chash_split("10.0.0.1:8080", 13, &h, &hl, &p, &pl);
    assert_int_equal(hl, 8);
    assert_int_equal(pl, 4);
    assert_memory_equal(p, "8080", 4);
    chash_split("backend", 7, &h, &hl, &p, &pl);
    assert_int_equal(hl, 7);
    assert_int_equal(pl, 0);
    chash_split("UNIX:/tmp/s:1", 13, &h, &hl, &p, &pl);
    assert_int_equal(hl, 8);
    assert_int_equal(pl, 0);
    chash_split("[::1]:80", 8, &h, &hl, &p, &pl);
    assert_int_equal(hl, 5);
    assert_int_equal(pl, 2);
    chash_split("[::1]", 5, &h, &hl, &p, &pl);
    assert_int_equal(hl, 5);
    assert_int_equal(pl, 0);
}

static void spread(const struct bl_balancer_ops *ops, double tol, const char *what)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, ops);
    unsigned counts[4] = {0};
    char key[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "/objects/%d", i);
        tg_key(t, key);
        counts[tg_pick_release(t, 0)]++;
    }
    tg_assert_spread(t, counts, 4, tol, what);
    tg_free(t);
}

static void test_hash_spread(void **state)
{
    spread(&bl_balancer_hash, 0.01, "hash, weights 1,2,3,4, 100000 keys");
}

/* Ketama with nginx's 160 points per weight unit is the least even of the methods: each
 * server's share wanders by about sqrt(points) / total points (0.9 points here), which is the
 * price of nginx compatibility (docs/load-balancing.md). */
static void test_chash_spread(void **state)
{
    spread(&bl_balancer_hash_consistent, 0.01,
           "hash consistent, weights 1,2,3,4, 100000 keys");
}

/* Removing one of N servers moves only that server's keys: at most 1/N of them (plus 2% for
 * ketama's unevenness), and no key of a remaining server moves. */
static void test_chash_removal_disruption(void **state)
{
    enum { N = 10, KEYS = 100000 };
    char (*before)[64] = calloc(KEYS, 64), (*after)[64] = calloc(KEYS, 64);
    const char *names[N];
    char buf[N][48];
    tg_backend_names(buf, names, N);
    double worst = 0;
    struct tg *t = tg_new_named(N, names, NULL, 0);
    tg_init(t, &bl_balancer_hash_consistent);
    tg_map_keys(t, KEYS, before, 1);
    tg_free(t);
    for (int gone = 0; gone < N; gone++) {
        const char *rest[N - 1];
        for (int i = 0, j = 0; i < N; i++)
            if (i != gone)
                rest[j++] = names[i];
        t = tg_new_named(N - 1, rest, NULL, 0);
        tg_init(t, &bl_balancer_hash_consistent);
        tg_map_keys(t, KEYS, after, 1);
        tg_free(t);
        int moved = 0;
        for (int k = 0; k < KEYS; k++) {
            if (strcmp(before[k], after[k]) == 0)
                continue;
            moved++;
            if (strcmp(before[k], names[gone]) != 0)
                print_error("key %d moved from %s to %s though %s stayed\n", k, before[k],
                            after[k], before[k]);
            assert_string_equal(before[k], names[gone]);
        }
        double frac = (double)moved / KEYS;
        if (frac > worst)
            worst = frac;
        if (frac > 1.0 / N + 0.02)
            print_error("removing %s moved %.4f of keys (limit %.4f)\n", names[gone], frac,
                        1.0 / N + 0.02);
        assert_true(frac <= 1.0 / N + 0.02);
    }
    print_message("[ MOVED    ] removing 1 of %d servers moved at most %.4f of %d keys\n", N,
                  worst, KEYS);
    free(before);
    free(after);
}

/* A down server's keys go to the next points; nobody else's keys move; back up, all return. */
static void test_chash_down_moves_only_its_keys(void **state)
{
    enum { KEYS = 20000 };
    struct tg *t = tg_new(6, NULL, 0);
    tg_init(t, &bl_balancer_hash_consistent);
    int *before = calloc(KEYS, sizeof(int));
    char key[32];
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "s%d", k);
        tg_key(t, key);
        before[k] = tg_pick(t);
    }
    tg_mark_down(t, 2);
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "s%d", k);
        tg_key(t, key);
        int s = tg_pick(t);
        assert_int_not_equal(s, 2);
        if (before[k] != 2)
            assert_int_equal(s, before[k]);
    }
    atomic_store(&t->states[2].down_until_ms, 0);
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "s%d", k);
        tg_key(t, key);
        assert_int_equal(tg_pick(t), before[k]);
    }
    free(before);
    tg_free(t);
}

static void test_hash_down_and_max_conns(void **state)
{
    const struct bl_balancer_ops *ops[] = {&bl_balancer_hash, &bl_balancer_hash_consistent};
    for (int o = 0; o < 2; o++) {
        struct tg *t = tg_new(4, NULL, 0);
        t->g.servers[1].max_conns = 3;
        t->g.servers[3].down = 1;
        tg_init(t, ops[o]);
        atomic_store(&t->states[1].active, 3);
        unsigned counts[4] = {0};
        char key[32];
        for (int k = 0; k < 10000; k++) {
            snprintf(key, sizeof(key), "%d", k);
            tg_key(t, key);
            counts[tg_pick(t)]++;
        }
        assert_int_equal(counts[1], 0);
        assert_int_equal(counts[3], 0);
        assert_true(counts[0] > 3000 && counts[2] > 3000);
        tg_free(t);
    }
}

/* Retries never return a tried server; once all are tried, none. */
static void test_hash_tried(void **state)
{
    const struct bl_balancer_ops *ops[] = {&bl_balancer_hash, &bl_balancer_hash_consistent};
    for (int o = 0; o < 2; o++) {
        struct tg *t = tg_new(5, (int[]){1, 2, 3, 1, 2}, 0);
        tg_init(t, ops[o]);
        char key[32];
        for (int k = 0; k < 2000; k++) {
            snprintf(key, sizeof(key), "r%d", k);
            tg_key(t, key);
            tg_assert_retries_visit_all(t);
        }
        tg_free(t);
    }
}

/* The first retry of a consistent key goes to the next server along the ring, as in nginx. */
static void test_chash_retry_walks_the_ring(void **state)
{
    struct tg *t = tg_new(5, NULL, 0);
    tg_init(t, &bl_balancer_hash_consistent);
    const struct chash_ring *r = t->g.balancer_data;
    char key[32];
    for (int k = 0; k < 1000; k++) {
        snprintf(key, sizeof(key), "w%d", k);
        tg_key(t, key);
        tg_request(t);
        struct bl_upstream_server *s = t->ops->pick(&t->p);
        uint32_t pos = chash_find(r, bl_lb_crc32(key, strlen(key))) % r->npoints;
        assert_int_equal(s->index, r->points[pos].server);
        while (r->points[pos].server == s->index)
            pos = (pos + 1) % r->npoints;
        tg_set_tried(t, s->index);
        struct bl_upstream_server *next = t->ops->pick(&t->p);
        assert_int_equal(next->index, r->points[pos].server);
    }
    tg_free(t);
}

/* Bounded loads: requests held open (acquire without release) never push a server past
 * ceil(F * in-flight * weight / total weight). */
static void bounded_run(const int *w, uint32_t n, double f, int picks, int nkeys)
{
    struct tg *t = tg_new(n, w, 0);
    t->g.hash_bound = f;
    tg_init(t, &bl_balancer_hash_consistent);
    int wsum = tg_total_weight(t, 0, n);
    char key[32];
    uint64_t rng = 99;
    for (int i = 1; i <= picks; i++) {
        /* a skewed key population: a tenth of the keys get half the requests */
        uint64_t r = bl_lb_rand(&rng);
        int k = (int)(r & 1 ? (r >> 1) % (uint64_t)(nkeys / 10) : (r >> 1) % (uint64_t)nkeys);
        snprintf(key, sizeof(key), "hot%d", k);
        tg_key(t, key);
        tg_request(t);
        struct bl_upstream_server *s = t->ops->pick(&t->p);
        assert_non_null(s);
        bl_server_acquire(s);
        for (uint32_t j = 0; j < n; j++) {
            int a = atomic_load(&t->states[j].active);
            double cap = ceil(f * i * t->g.servers[j].weight / wsum);
            if (a > cap)
                print_error("after %d picks server %u holds %d, bound %.0f\n", i, j, a, cap);
            assert_true(a <= cap);
        }
    }
    tg_free(t);
}

static void test_chash_bounded_loads(void **state)
{
    bounded_run(NULL, 10, 1.25, 20000, 1000);
    bounded_run((int[]){1, 2, 3, 4}, 4, 1.25, 20000, 1000);
    bounded_run(NULL, 8, 1.0, 5000, 50); /* F = 1: perfectly even */
}

/* Released requests free their room: the group's in-flight count follows pick/release. */
static void test_chash_bounded_release(void **state)
{
    struct tg *t = tg_new(4, NULL, 0);
    t->g.hash_bound = 1.5;
    tg_init(t, &bl_balancer_hash_consistent);
    struct chash_ring *r = t->g.balancer_data;
    tg_key(t, "same");
    for (int i = 0; i < 100; i++)
        tg_pick_release(t, 100);
    assert_int_equal(atomic_load(&r->inflight), 0);
    tg_free(t);
}

/* A ramping server gets a growing share of its keys, and a key once admitted stays. */
static void test_hash_slow_start(void **state)
{
    const struct bl_balancer_ops *ops[] = {&bl_balancer_hash, &bl_balancer_hash_consistent};
    for (int o = 0; o < 2; o++) {
        struct tg *t = tg_new(4, NULL, 0);
        t->g.servers[0].slow_start_ms = 10000;
        tg_init(t, ops[o]);
        enum { KEYS = 20000 };
        int *home = calloc(KEYS, sizeof(int)), *admitted = calloc(KEYS, sizeof(int));
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
        for (int step = 1; step <= 10; step++) {
            t->p.now_ms = back + (uint64_t)step * 1000;
            int got = 0;
            for (int k = 0; k < KEYS; k++) {
                snprintf(key, sizeof(key), "ss%d", k);
                tg_key(t, key);
                int s = tg_pick(t);
                if (home[k] != 0)
                    assert_int_equal(s, home[k]); /* others' keys never move */
                if (s == 0) {
                    got++;
                    admitted[k] = 1;
                } else {
                    assert_false(admitted[k]); /* admitted keys stay admitted */
                }
            }
            double share = (double)got / mine, want = step / 10.0;
            if (fabs(share - want) > 0.03)
                print_error("%s: %d s into a 10 s ramp, %.3f of the server's keys (want %.1f)\n",
                            ops[o]->name, step, share, want);
            assert_true(fabs(share - want) <= 0.03);
        }
        free(home);
        free(admitted);
        tg_free(t);
    }
}

/* An empty key, or a group of one, is round robin (nginx). */
static void test_hash_fallbacks(void **state)
{
    const struct bl_balancer_ops *ops[] = {&bl_balancer_hash, &bl_balancer_hash_consistent};
    for (int o = 0; o < 2; o++) {
        struct tg *t = tg_new(3, (int[]){5, 1, 1}, 0);
        tg_init(t, ops[o]);
        tg_key(t, "");
        const char *want = "aabacaa";
        for (int i = 0; want[i]; i++)
            assert_int_equal(tg_pick(t), want[i] - 'a');
        /* every server down: 20 misses, then round robin, which finds none */
        for (int i = 0; i < 3; i++)
            tg_mark_down(t, (uint32_t)i);
        tg_key(t, "k");
        assert_int_equal(tg_pick(t), -1);
        tg_free(t);
        t = tg_new(1, NULL, 0);
        tg_init(t, ops[o]);
        tg_key(t, "k");
        assert_int_equal(tg_pick(t), 0);
        tg_free(t);
    }
}

/* nginx's plain hash gives up after 20 misses and uses round robin for the rest of the
 * request; the cursor carries that across retries. */
static void test_hash_twenty_tries(void **state)
{
    int w[] = {100, 1};
    struct tg *t = tg_new(2, w, 0);
    tg_init(t, &bl_balancer_hash);
    tg_mark_down(t, 0); /* the 100-weight server takes almost every rehash */
    tg_key(t, "k");
    int rr = 0;
    for (int k = 0; k < 200; k++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", k);
        tg_key(t, key);
        assert_int_equal(tg_pick(t), 1);
        rr += ((t->p.cursor >> 47) & 0xffff) > HASH_MAX_TRIES;
    }
    assert_true(rr > 150); /* P(miss) = 100/101 per round: most need round robin */
    tg_free(t);
}

static void test_hash_invalid(void **state)
{
    const struct bl_balancer_ops *ops[] = {&bl_balancer_hash, &bl_balancer_hash_consistent};
    for (int o = 0; o < 2; o++) {
        struct tg *t = tg_new(3, NULL, 1);
        assert_non_null(strstr(tg_init_fails(t, ops[o]), "backup"));
        tg_free(t);
    }
    struct tg *t = tg_new(3, NULL, 0);
    t->g.hash_bound = 1.25;
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_hash), "bound"));
    t->g.hash_bound = 0.5;
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_hash_consistent), "bound"));
    tg_free(t);
    t = tg_new(2, (int[]){BL_WEIGHT_MAX, BL_WEIGHT_MAX}, 0);
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_hash_consistent), "too large"));
    tg_free(t);
}

/* Servers sharing a name share their points and take turns, as nginx's peers of one name. */
static void test_chash_same_name(void **state)
{
    const char *names[] = {"a:1", "b:1", "a:1"};
    struct tg *t = tg_new_named(3, names, NULL, 0);
    tg_init(t, &bl_balancer_hash_consistent);
    unsigned counts[3] = {0};
    char key[32];
    for (int k = 0; k < 10000; k++) {
        snprintf(key, sizeof(key), "%d", k);
        tg_key(t, key);
        counts[tg_pick(t)]++;
    }
    assert_true(counts[0] > 0 && counts[2] > 0);
    assert_true(abs((int)counts[0] - (int)counts[2]) <= 1);
    tg_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_vectors),
        cmocka_unit_test(test_hash_matches_nginx),
        cmocka_unit_test(test_chash_matches_nginx),
        cmocka_unit_test(test_chash_bounded_idle_matches_nginx),
        cmocka_unit_test(test_chash_split),
        cmocka_unit_test(test_hash_spread),
        cmocka_unit_test(test_chash_spread),
        cmocka_unit_test(test_chash_removal_disruption),
        cmocka_unit_test(test_chash_down_moves_only_its_keys),
        cmocka_unit_test(test_hash_down_and_max_conns),
        cmocka_unit_test(test_hash_tried),
        cmocka_unit_test(test_chash_retry_walks_the_ring),
        cmocka_unit_test(test_chash_bounded_loads),
        cmocka_unit_test(test_chash_bounded_release),
        cmocka_unit_test(test_hash_slow_start),
        cmocka_unit_test(test_hash_fallbacks),
        cmocka_unit_test(test_hash_twenty_tries),
        cmocka_unit_test(test_hash_invalid),
        cmocka_unit_test(test_chash_same_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
