/* ip_hash: nginx's mapping checked against nginx itself (IPv4 and IPv6), /24 stickiness,
 * spread, down, max_conns, tried, slow start, fallbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>

#include "upstream/balancer_ip_hash.c"

#include "balancer_test.h"
#include "nginx_golden.h"

static void set_client(struct tg *t, struct sockaddr_storage *ss, const char *text)
{
    memset(ss, 0, sizeof(*ss));
    if (strchr(text, ':')) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
    }
    t->p.client_addr = (const struct sockaddr *)ss;
}

static void test_ip_hash_matches_nginx(void **state)
{
    static const char *const names[] = {"127.0.0.1:27001", "127.0.0.1:27002",
                                        "127.0.0.1:27003", "127.0.0.1:27004",
                                        "127.0.0.1:27005"};
    struct tg *t = tg_new_named(5, names, (int[]){1, 2, 3, 1, 2}, 0);
    tg_init(t, &bl_balancer_ip_hash);
    struct sockaddr_storage ss;
    for (size_t i = 0; i < BL_ARRAY_LEN(nginx_golden_ip_hash); i++) {
        set_client(t, &ss, nginx_golden_ip_hash[i].addr);
        int got = tg_pick(t);
        if (got != nginx_golden_ip_hash[i].server)
            print_error("client %s: ballast picks %d, nginx picked %d\n",
                        nginx_golden_ip_hash[i].addr, got, nginx_golden_ip_hash[i].server);
        assert_int_equal(got, nginx_golden_ip_hash[i].server);
    }
    tg_free(t);
}

/* Every address of a /24 lands on one server. */
static void test_ip_hash_keeps_a_slash24(void **state)
{
    struct tg *t = tg_new(7, (int[]){1, 2, 3, 4, 1, 1, 2}, 0);
    tg_init(t, &bl_balancer_ip_hash);
    uint64_t rng = 5;
    for (int net = 0; net < 1000; net++) {
        uint64_t r = bl_lb_rand(&rng);
        struct sockaddr_in sin = tg_ipv4((uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), 0);
        t->p.client_addr = (const struct sockaddr *)&sin;
        int first = tg_pick(t);
        for (int host = 1; host < 256; host++) {
            ((uint8_t *)&sin.sin_addr.s_addr)[3] = (uint8_t)host;
            assert_int_equal(tg_pick(t), first);
        }
    }
    tg_free(t);
}

static void test_ip_hash_spread(void **state)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, &bl_balancer_ip_hash);
    unsigned counts[4] = {0};
    for (uint32_t i = 0; i < 100000; i++) { /* 100000 distinct /24s */
        uint32_t net = i * 2654435761u >> 8;
        struct sockaddr_in sin = tg_ipv4((uint8_t)(net >> 16), (uint8_t)(net >> 8), (uint8_t)net, 9);
        t->p.client_addr = (const struct sockaddr *)&sin;
        counts[tg_pick(t)]++;
    }
    tg_assert_spread(t, counts, 4, 0.01, "ip_hash, weights 1,2,3,4, 100000 /24 networks");
    tg_free(t);
}

/* Clients of a down (or full) server move; no other client does. */
static void test_ip_hash_down_and_max_conns(void **state)
{
    struct tg *t = tg_new(5, NULL, 0);
    t->g.servers[4].max_conns = 1;
    tg_init(t, &bl_balancer_ip_hash);
    int home[2000];
    struct sockaddr_in sin;
    for (int i = 0; i < 2000; i++) {
        sin = tg_ipv4(10, (uint8_t)(i >> 8), (uint8_t)i, 1);
        t->p.client_addr = (const struct sockaddr *)&sin;
        home[i] = tg_pick(t);
    }
    tg_mark_down(t, 1);
    atomic_store(&t->states[4].active, 1);
    for (int i = 0; i < 2000; i++) {
        sin = tg_ipv4(10, (uint8_t)(i >> 8), (uint8_t)i, 1);
        t->p.client_addr = (const struct sockaddr *)&sin;
        int s = tg_pick(t);
        assert_true(s != 1 && s != 4);
        if (home[i] != 1 && home[i] != 4)
            assert_int_equal(s, home[i]);
    }
    tg_free(t);
}

static void test_ip_hash_tried(void **state)
{
    struct tg *t = tg_new(4, (int[]){3, 1, 1, 2}, 0);
    tg_init(t, &bl_balancer_ip_hash);
    for (int i = 0; i < 500; i++) {
        struct sockaddr_in sin = tg_ipv4(192, 168, (uint8_t)i, 1);
        t->p.client_addr = (const struct sockaddr *)&sin;
        tg_assert_retries_visit_all(t);
    }
    tg_free(t);
}

/* Unix-socket clients (and none) hash like nginx's pseudo address: all to one server. */
static void test_ip_hash_non_inet(void **state)
{
    struct tg *t = tg_new(5, NULL, 0);
    tg_init(t, &bl_balancer_ip_hash);
    t->p.client_addr = NULL;
    int first = tg_pick(t);
    struct sockaddr un = {.sa_family = AF_UNIX};
    t->p.client_addr = &un;
    assert_int_equal(tg_pick(t), first);
    struct sockaddr_in zero = tg_ipv4(0, 0, 0, 77); /* the pseudo address is 0.0.0 */
    t->p.client_addr = (const struct sockaddr *)&zero;
    assert_int_equal(tg_pick(t), first);
    tg_free(t);
}

/* A ramping server gets a growing share of its clients; others' clients never move. */
static void test_ip_hash_slow_start(void **state)
{
    struct tg *t = tg_new(4, NULL, 0);
    t->g.servers[2].slow_start_ms = 10000;
    tg_init(t, &bl_balancer_ip_hash);
    enum { NETS = 20000 };
    int *home = calloc(NETS, sizeof(int));
    int mine = 0;
    struct sockaddr_in sin;
    for (int i = 0; i < NETS; i++) {
        sin = tg_ipv4((uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 1);
        t->p.client_addr = (const struct sockaddr *)&sin;
        home[i] = tg_pick(t);
        mine += home[i] == 2;
    }
    uint64_t back = t->p.now_ms;
    atomic_store(&t->states[2].up_since_ms, back);
    for (int step = 0; step <= 10; step += 2) {
        t->p.now_ms = back + (uint64_t)step * 1000;
        int got = 0;
        for (int i = 0; i < NETS; i++) {
            sin = tg_ipv4((uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 1);
            t->p.client_addr = (const struct sockaddr *)&sin;
            int s = tg_pick(t);
            if (home[i] != 2)
                assert_int_equal(s, home[i]);
            got += s == 2;
        }
        double share = (double)got / mine, want = step ? step / 10.0 : 0;
        if (fabs(share - want) > 0.03)
            print_error("%d s into a 10 s ramp: %.3f of its clients (want %.1f)\n", step, share,
                        want);
        assert_true(fabs(share - want) <= 0.03);
    }
    free(home);
    tg_free(t);
}

static void test_ip_hash_fallbacks_and_invalid(void **state)
{
    /* a group of one is round robin; all down: nothing */
    struct tg *t = tg_new(1, NULL, 0);
    tg_init(t, &bl_balancer_ip_hash);
    assert_int_equal(tg_pick(t), 0);
    tg_mark_down(t, 0);
    assert_int_equal(tg_pick(t), -1);
    tg_free(t);
    /* a heavy down server: more than 20 misses, then round robin finds the other */
    t = tg_new(2, (int[]){1000, 1}, 0);
    tg_init(t, &bl_balancer_ip_hash);
    tg_mark_down(t, 0);
    struct sockaddr_in sin = tg_ipv4(1, 2, 3, 4);
    t->p.client_addr = (const struct sockaddr *)&sin;
    assert_int_equal(tg_pick(t), 1);
    tg_free(t);
    /* backups are a config error, as in nginx */
    t = tg_new(3, NULL, 1);
    assert_non_null(strstr(tg_init_fails(t, &bl_balancer_ip_hash), "backup"));
    tg_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_hash_matches_nginx),
        cmocka_unit_test(test_ip_hash_keeps_a_slash24),
        cmocka_unit_test(test_ip_hash_spread),
        cmocka_unit_test(test_ip_hash_down_and_max_conns),
        cmocka_unit_test(test_ip_hash_tried),
        cmocka_unit_test(test_ip_hash_non_inet),
        cmocka_unit_test(test_ip_hash_slow_start),
        cmocka_unit_test(test_ip_hash_fallbacks_and_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
