/* Buffers: the size is set once, before the first buffer, rounded up to 4 KiB and never below
 * the minimum; every buffer has that capacity; the per-thread free list reuses buffers up to
 * BL_BUF_CACHE (more after a tick that saw more in use) and counts what it hands back to malloc; large buffers keep to their own list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/buf.c"

/* The size can be set once per process, so the order of these tests matters. */
static void test_size_set_once_before_buffers(void **state)
{
    (void)state;
    assert_int_equal(bl_buf_size(), BL_BUF_MIN_SIZE);           /* the default */
    assert_int_equal(bl_buf_set_size(65536 + 1024 + 1), BL_OK);
    assert_int_equal(bl_buf_size(), 65536 + 4096);             /* rounded up to 4 KiB */
    assert_int_equal(bl_buf_set_size(1 << 20), BL_ERR);         /* once only */
    assert_int_equal(bl_buf_size(), 65536 + 4096);
}

static void test_size_floor(void **state)
{
    (void)state;
    /* what set_size does with a small value, on the statics directly (the API is spent) */
    atomic_store(&fixed, 0);
    assert_int_equal(bl_buf_set_size(100), BL_OK);
    assert_int_equal(bl_buf_size(), BL_BUF_MIN_SIZE);
    atomic_store(&fixed, 0);
    buf_size = BL_BUF_MIN_SIZE;
}

static void test_no_size_change_after_first_buffer(void **state)
{
    (void)state;
    struct bl_buf *b = bl_buf_get();
    assert_non_null(b);
    assert_int_equal(b->cap, bl_buf_size());
    assert_int_equal(bl_buf_len(b), 0);
    assert_int_equal(bl_buf_room(b), bl_buf_size());
    /* buffers exist: a later size would make two kinds of buffer */
    assert_int_equal(bl_buf_set_size(1 << 20), BL_ERR);
    assert_int_equal(b->cap, bl_buf_size());
    bl_buf_put(b);
    bl_buf_drain();
}

static void test_free_list_reuse_and_overflow(void **state)
{
    (void)state;
#ifdef BL_NO_POOL
    skip();   /* no free list: every put is a free */
#endif
    uint32_t freed, allocated;
    bl_buf_overflow(&freed, &allocated);                        /* reset the counters */
    enum { N = BL_BUF_CACHE + 8 };
    struct bl_buf *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = bl_buf_get();
        assert_non_null(b[i]);
        b[i]->end = 10;
    }
    for (int i = 0; i < N; i++)
        bl_buf_put(b[i]);
    bl_buf_put(NULL);                                           /* allowed */
    bl_buf_overflow(&freed, &allocated);
    assert_int_equal(allocated, N);
    assert_int_equal(freed, N - BL_BUF_CACHE);                  /* beyond the cache: to malloc */
    /* cached buffers come back empty and cost no malloc */
    struct bl_buf *again = bl_buf_get();
    assert_int_equal(bl_buf_len(again), 0);
    assert_int_equal(again->start, 0);
    bl_buf_overflow(&freed, &allocated);
    assert_int_equal(allocated, 0);
    bl_buf_put(again);
    bl_buf_drain();
    assert_null(bufs.items);
    assert_int_equal(bufs.n, 0);
}

/* The cap follows demand: after a tick that saw N > BL_BUF_CACHE buffers in use at once, N are
 * kept (a steady load of N allocates nothing); two idle ticks later the cap is back to
 * BL_BUF_CACHE and the surplus was freed (and counted, for the worker's malloc_trim). */
static void test_cap_follows_demand(void **state)
{
    (void)state;
#ifdef BL_NO_POOL
    skip();
#endif
    uint32_t freed, allocated;
    enum { N = BL_BUF_CACHE * 3 };
    struct bl_buf *b[N];
    for (int i = 0; i < 3; i++)            /* forget the earlier tests' peaks */
        bl_buf_tick();
    assert_int_equal(bufs.limit, BL_BUF_CACHE);
    bl_buf_overflow(&freed, &allocated);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++)
            b[i] = bl_buf_get();
        for (int i = 0; i < N; i++)
            bl_buf_put(b[i]);
        bl_buf_overflow(&freed, &allocated);
        if (round == 0) {                  /* before any tick saw the load: the old cap */
            assert_int_equal(allocated, N);
            assert_int_equal(freed, N - BL_BUF_CACHE);
        } else {                           /* the tick raised the cap: no malloc, no free */
            assert_int_equal(allocated, round == 1 ? N - BL_BUF_CACHE : 0);
            assert_int_equal(freed, 0);
        }
        bl_buf_tick();
    }
    assert_int_equal(bufs.n, N);
    bl_buf_tick();                          /* one idle interval: the previous peak holds */
    assert_int_equal(bufs.n, N);
    bl_buf_tick();                          /* two: back to the floor */
    assert_int_equal(bufs.n, BL_BUF_CACHE);
    bl_buf_overflow(&freed, &allocated);
    assert_int_equal(freed, N - BL_BUF_CACHE);
    assert_int_equal(allocated, 0);
    bl_buf_drain();
}

/* Large buffers: their own capacity and free list; a put goes back to the list of its kind;
 * with ordinary buffers of the large size or more, a large one is an ordinary one. */
static void test_large_buffers(void **state)
{
    (void)state;
    uint32_t freed, allocated;
    bl_buf_overflow(&freed, &allocated);
    enum { N = BL_BUF_LARGE_CACHE + 2 };
    struct bl_buf *l[N];
    for (int i = 0; i < N; i++) {
        l[i] = bl_buf_get_large();
        assert_non_null(l[i]);
        assert_int_equal(l[i]->cap, BL_BUF_LARGE_SIZE);
        assert_int_equal(bl_buf_room(l[i]), BL_BUF_LARGE_SIZE);
        l[i]->end = 7;
    }
    assert_int_equal(bl_buf_large_size(), BL_BUF_LARGE_SIZE);
    for (int i = 0; i < N; i++)
        bl_buf_put(l[i]);
    bl_buf_overflow(&freed, &allocated);
    assert_int_equal(allocated, N);
#ifndef BL_NO_POOL
    assert_int_equal(freed, N - BL_BUF_LARGE_CACHE);
    assert_int_equal(nlarge, BL_BUF_LARGE_CACHE);
    assert_int_equal(bufs.n, 0);                 /* none went to the ordinary list */
    struct bl_buf *again = bl_buf_get_large();  /* cached: empty, no malloc */
    assert_int_equal(again->cap, BL_BUF_LARGE_SIZE);
    assert_int_equal(bl_buf_len(again), 0);
    struct bl_buf *small = bl_buf_get();        /* not one of the large ones */
    assert_int_equal(small->cap, bl_buf_size());
    bl_buf_overflow(&freed, &allocated);
    assert_int_equal(allocated, 1);
    bl_buf_put(small);
    bl_buf_put(again);
    assert_int_equal(bufs.n, 1);
#else
    assert_int_equal(freed, N);
#endif
    bl_buf_drain();
    assert_null(large_list);
    assert_int_equal(nlarge, 0);
    /* ordinary buffers as large: large ones are ordinary */
    buf_size = 512 * 1024;
    struct bl_buf *b = bl_buf_get_large();
    assert_int_equal(b->cap, 512 * 1024);
    assert_int_equal(bl_buf_large_size(), 512 * 1024);
    bl_buf_put(b);
    bl_buf_drain();
    buf_size = BL_BUF_MIN_SIZE;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_set_once_before_buffers),
        cmocka_unit_test(test_size_floor),
        cmocka_unit_test(test_no_size_change_after_first_buffer),
        cmocka_unit_test(test_free_list_reuse_and_overflow),
        cmocka_unit_test(test_cap_follows_demand),
        cmocka_unit_test(test_large_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
