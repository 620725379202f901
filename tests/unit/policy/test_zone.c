/* Zones: nginx's bucket arithmetic, limit_req's lookup/account as nginx's module runs them,
 * limit_conn counts, eviction when full, reuse across configurations, and threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "assert_eq.h"
#include "policy/zone.c"

static char err[256];

static int setup(void **state)
{
    (void)state;
    bl_log_level = BL_LOG_EMERG;
    bl_clock_ms = 1000000;
    return 0;
}

static void test_excess_arithmetic(void **state)
{
    (void)state;
    /* 10 r/s = 10000 milli-r/s: 100 ms drains one request */
    ASSERT_EQ(bl_leaky_excess(0, 10000, 0), 1000);
    ASSERT_EQ(bl_leaky_excess(1000, 10000, 0), 2000);
    ASSERT_EQ(bl_leaky_excess(2000, 10000, 100), 2000);
    ASSERT_EQ(bl_leaky_excess(2000, 10000, 50), 2500);
    ASSERT_EQ(bl_leaky_excess(500, 10000, 1000), 0);      /* clamped after this request */
    ASSERT_EQ(bl_leaky_excess(0, 10000, 200), 0);
    /* 30 r/m = 500 milli-r/s: 2 s per request */
    ASSERT_EQ(bl_leaky_excess(1000, 500, 1000), 1500);
    ASSERT_EQ(bl_leaky_excess(1000, 500, 2000), 1000);
    /* the clock going back counts as elapsed time, a minute back as 1 ms (nginx) */
    ASSERT_EQ(bl_leaky_excess(2000, 10000, -100), 2000);
    ASSERT_EQ(bl_leaky_excess(2000, 10000, -120000), 2990);
    /* huge gaps do not overflow */
    ASSERT_EQ(bl_leaky_excess(5000, 1000000000ull, INT64_MAX / 2), 0);
}

/* rate 10 r/s, burst 5: nginx admits 6 at once (excess 0..5), then one per 100 ms. */
static void test_req_burst(void **state)
{
    (void)state;
    struct bl_zone *z = bl_zone_get("t_burst", BL_ZONE_REQ, 1 << 20, "$k", err, sizeof(err));
    assert_non_null(z);
    uint64_t now = 5000, e;
    uint32_t pin;
    int ok = 0, busy = 0;
    for (int i = 0; i < 10; i++) {
        int rc = bl_zone_req_lookup(z, "a", 1, now, 10000, 5000, 1, &e, &pin);
        if (rc == BL_ZONE_OK)
            ok++;
        else if (rc == BL_ZONE_BUSY)
            busy++;
    }
    ASSERT_EQ(ok, 6);
    ASSERT_EQ(busy, 4);
    /* 100 ms later: one more */
    ASSERT_EQ(bl_zone_req_lookup(z, "a", 1, now + 100, 10000, 5000, 1, &e, &pin), BL_ZONE_OK);
    ASSERT_EQ(e, 5000);
    ASSERT_EQ(bl_zone_req_lookup(z, "a", 1, now + 100, 10000, 5000, 1, &e, &pin), BL_ZONE_BUSY);
    ASSERT_EQ(e, 6000);
    /* another key is not affected */
    ASSERT_EQ(bl_zone_req_lookup(z, "b", 1, now, 10000, 0, 1, &e, &pin), BL_ZONE_OK);
    ASSERT_EQ(e, 0);
    ASSERT_EQ(bl_zone_count(z), 2);
    bl_zone_put(z);
}

/* Without account the node is pinned, and account() moves it as nginx's _account does. */
static void test_req_pin_account(void **state)
{
    (void)state;
    struct bl_zone *z = bl_zone_get("t_pin", BL_ZONE_REQ, 1 << 20, "$k", err, sizeof(err));
    uint64_t e;
    uint32_t pin;
    /* a new pinned node is accounted from time 0: fully drained */
    ASSERT_EQ(bl_zone_req_lookup(z, "a", 1, 7000, 1000, 3000, 0, &e, &pin), BL_ZONE_PINNED);
    ASSERT_EQ(e, 0);
    ASSERT_EQ(bl_zone_req_account(z, pin, 7000, 1000), 0);
    ASSERT_EQ(bl_zone_req_lookup(z, "a", 1, 7000, 1000, 3000, 0, &e, &pin), BL_ZONE_PINNED);
    ASSERT_EQ(e, 1000);
    bl_zone_req_unpin(z, pin); /* rejected later: nothing accounted */
    ASSERT_EQ(bl_zone_req_lookup(z, "a", 1, 7000, 1000, 3000, 1, &e, &pin), BL_ZONE_OK);
    ASSERT_EQ(e, 1000);
    bl_zone_put(z);
}

/* A full limit_req zone evicts its least recently used keys and goes on working. */
static void test_req_eviction(void **state)
{
    (void)state;
    struct bl_zone *z = bl_zone_get("t_evict", BL_ZONE_REQ, BL_ZONE_MIN_SIZE, "$k", err,
                                    sizeof(err));
    uint32_t cap = bl_zone_capacity(z);
    ASSERT_EQ(cap, BL_ZONE_MIN_SIZE / BL_ZONE_SLOT);
    uint64_t e;
    uint32_t pin;
    char key[32];
    for (uint32_t i = 0; i < cap * 3; i++) {
        int n = snprintf(key, sizeof(key), "key-%u", i);
        ASSERT_EQ(bl_zone_req_lookup(z, key, (size_t)n, 1000, 1, 0, 1, &e, &pin), BL_ZONE_OK);
    }
    ASSERT_EQ(bl_zone_count(z), cap);
    /* the newest key is still there (rejected: rate 0.001 r/s, no burst) */
    int n = snprintf(key, sizeof(key), "key-%u", cap * 3 - 1);
    ASSERT_EQ(bl_zone_req_lookup(z, key, (size_t)n, 1000, 1, 0, 1, &e, &pin), BL_ZONE_BUSY);
    /* the oldest was evicted: it starts afresh */
    ASSERT_EQ(bl_zone_req_lookup(z, "key-0", 5, 1000, 1, 0, 1, &e, &pin), BL_ZONE_OK);
    /* pinned keys are never evicted: with every slot pinned, a new key finds no room */
    bl_zone_put(z);
    z = bl_zone_get("t_evict2", BL_ZONE_REQ, BL_ZONE_MIN_SIZE, "$k", err, sizeof(err));
    for (uint32_t i = 0; i < cap; i++) {
        n = snprintf(key, sizeof(key), "p-%u", i);
        bl_zone_req_lookup(z, key, (size_t)n, 1000, 1000, 0, 0, &e, &pin);
    }
    int full = 0;
    for (uint32_t i = 0; i < cap; i++) {
        n = snprintf(key, sizeof(key), "q-%u", i);
        full += bl_zone_req_lookup(z, key, (size_t)n, 1000, 1000, 0, 1, &e, &pin) ==
                BL_ZONE_FULL;
    }
    assert_true(full > 0);
    bl_zone_put(z);
}

/* Long keys: told apart by hash, length and the first bytes. */
static void test_long_keys(void **state)
{
    (void)state;
    struct bl_zone *z = bl_zone_get("t_long", BL_ZONE_REQ, 1 << 20, "$k", err, sizeof(err));
    char a[300], b[300];
    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    b[299] = 'y';
    uint64_t e;
    uint32_t pin;
    ASSERT_EQ(bl_zone_req_lookup(z, a, sizeof(a), 1000, 1, 0, 1, &e, &pin), BL_ZONE_OK);
    ASSERT_EQ(bl_zone_req_lookup(z, b, sizeof(b), 1000, 1, 0, 1, &e, &pin), BL_ZONE_OK);
    ASSERT_EQ(bl_zone_req_lookup(z, a, sizeof(a), 1000, 1, 0, 1, &e, &pin), BL_ZONE_BUSY);
    ASSERT_EQ(bl_zone_count(z), 2);
    bl_zone_put(z);
}

static void test_conn(void **state)
{
    (void)state;
    struct bl_zone *z = bl_zone_get("t_conn", BL_ZONE_CONN, 1 << 20, "$k", err, sizeof(err));
    uint32_t r1, r2, r3;
    ASSERT_EQ(bl_zone_conn_acquire(z, "a", 1, 2, &r1), BL_ZONE_OK);
    ASSERT_EQ(bl_zone_conn_acquire(z, "a", 1, 2, &r2), BL_ZONE_OK);
    ASSERT_EQ(bl_zone_conn_acquire(z, "a", 1, 2, &r3), BL_ZONE_BUSY);
    bl_zone_conn_release(z, r1);
    ASSERT_EQ(bl_zone_conn_acquire(z, "a", 1, 2, &r3), BL_ZONE_OK);
    bl_zone_conn_release(z, r2);
    bl_zone_conn_release(z, r3);
    ASSERT_EQ(bl_zone_count(z), 0); /* a key with no connection is gone */
    /* a conn zone never evicts: full refuses */
    bl_zone_put(z);
    z = bl_zone_get("t_conn2", BL_ZONE_CONN, BL_ZONE_MIN_SIZE, "$k", err, sizeof(err));
    char key[32];
    int full = 0;
    for (uint32_t i = 0; i < bl_zone_capacity(z) + 10; i++) {
        int n = snprintf(key, sizeof(key), "c-%u", i);
        full += bl_zone_conn_acquire(z, key, (size_t)n, 1, &r1) == BL_ZONE_FULL;
    }
    assert_true(full >= 10);
    bl_zone_put(z);
}

/* A zone with the same name, kind, key and size is the running one (reload keeps it). */
static void test_registry(void **state)
{
    (void)state;
    struct bl_zone *a = bl_zone_get("t_reg", BL_ZONE_REQ, 1 << 20, "$k", err, sizeof(err));
    struct bl_zone *b = bl_zone_get("t_reg", BL_ZONE_REQ, 1 << 20, "$k", err, sizeof(err));
    struct bl_zone *c = bl_zone_get("t_reg", BL_ZONE_REQ, 1 << 20, "$other", err, sizeof(err));
    struct bl_zone *d = bl_zone_get("t_reg", BL_ZONE_CONN, 1 << 20, "$k", err, sizeof(err));
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_not_equal(a, d);
    bl_zone_put(a);
    bl_zone_put(b);
    bl_zone_put(c);
    bl_zone_put(d);
}

struct thread_arg {
    struct bl_zone *z;
    int passed;
};

static void *hammer(void *p)
{
    struct thread_arg *t = p;
    uint64_t e;
    uint32_t pin;
    for (int i = 0; i < 20000; i++)
        t->passed += bl_zone_req_lookup(t->z, "shared", 6, 1000, 1000, 99000, 1, &e, &pin) ==
                     BL_ZONE_OK;
    return NULL;
}

/* Four threads on one key at one instant: exactly burst + 1 pass, however they interleave. */
static void test_threads_share(void **state)
{
    (void)state;
    struct bl_zone *z = bl_zone_get("t_thr", BL_ZONE_REQ, 1 << 20, "$k", err, sizeof(err));
    pthread_t th[4];
    struct thread_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thread_arg){z, 0};
        pthread_create(&th[i], NULL, hammer, &a[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += a[i].passed;
    }
    ASSERT_EQ(total, 100);
    bl_zone_put(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_excess_arithmetic, setup),
        cmocka_unit_test_setup(test_req_burst, setup),
        cmocka_unit_test_setup(test_req_pin_account, setup),
        cmocka_unit_test_setup(test_req_eviction, setup),
        cmocka_unit_test_setup(test_long_keys, setup),
        cmocka_unit_test_setup(test_conn, setup),
        cmocka_unit_test_setup(test_registry, setup),
        cmocka_unit_test_setup(test_threads_share, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
