/* Unit tests for splice pipes (src/core/pipe.c): bl_pipe_grow gives a long body's pipe
 * BL_PIPE_SIZE_BIG, at most BL_PIPE_BIG_MAX such pipes per thread, in use or on the free list,
 * and a closed one frees its place; bytes spliced through a grown pipe arrive whole.
 * F_SETPIPE_SZ to 1 MiB is within fs.pipe-max-size's default, so an unprivileged run sees the
 * same sizes unless its user is past pipe-user-pages-soft (then the test skips). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/pipe.h"
#include "core/status.h"

static void test_grow_capped_per_thread(void **state)
{
    (void)state;
    struct bl_pipe *p[BL_PIPE_BIG_MAX + 1];
    for (int i = 0; i <= BL_PIPE_BIG_MAX; i++) {
        p[i] = bl_pipe_get();
        assert_non_null(p[i]);
        assert_int_equal(p[i]->size, BL_PIPE_SIZE);
        bl_pipe_grow(p[i]);
        if (i == 0 && p[0]->size != BL_PIPE_SIZE_BIG)
            skip(); /* this user may not grow pipes here: nothing else to check */
        assert_int_equal(p[i]->size, i < BL_PIPE_BIG_MAX ? BL_PIPE_SIZE_BIG : BL_PIPE_SIZE);
    }
    /* the grown pipes closed (BL_PIPE_CACHE of them on the free list until the drain): the
     * small one may grow now */
    for (int i = 0; i < BL_PIPE_BIG_MAX; i++)
        bl_pipe_put(p[i]);
    bl_pipe_drain();
    bl_pipe_grow(p[BL_PIPE_BIG_MAX]);
    assert_int_equal(p[BL_PIPE_BIG_MAX]->size, BL_PIPE_SIZE_BIG);
    bl_pipe_grow(p[BL_PIPE_BIG_MAX]); /* already grown: stays, counted once */
    bl_pipe_put(p[BL_PIPE_BIG_MAX]);
    /* the grown pipe comes back from the free list as it went */
    struct bl_pipe *q = bl_pipe_get();
    assert_ptr_equal(q, p[BL_PIPE_BIG_MAX]);
    assert_int_equal(q->size, BL_PIPE_SIZE_BIG);
    bl_pipe_put(q);
    bl_pipe_drain();
    /* every grown pipe closed: BL_PIPE_BIG_MAX may grow again */
    for (int i = 0; i < BL_PIPE_BIG_MAX; i++) {
        p[i] = bl_pipe_get();
        bl_pipe_grow(p[i]);
        assert_int_equal(p[i]->size, BL_PIPE_SIZE_BIG);
    }
    for (int i = 0; i < BL_PIPE_BIG_MAX; i++)
        bl_pipe_put(p[i]);
    bl_pipe_drain();
}

static void test_bytes_through_grown_pipe(void **state)
{
    (void)state;
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    struct bl_pipe *p = bl_pipe_get();
    assert_non_null(p);
    bl_pipe_grow(p);
    static unsigned char out[200000], in[200000];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (unsigned char)(i * 7 + i / 251);
    size_t sent = 0, got = 0;
    for (int round = 0; round < 10000 && got < sizeof(out); round++) {
        if (sent < sizeof(out)) {
            ssize_t n = write(a[0], out + sent, sizeof(out) - sent);
            if (n > 0)
                sent += (size_t)n;
        }
        uint8_t rready = 1, wready = 1;
        ssize_t n = bl_pipe_in(p, a[1], UINT64_MAX, &rready);
        assert_true(n > 0 || n == BL_AGAIN);
        if (p->piped)
            assert_true(bl_pipe_out(p, b[0], &wready) > 0);
        n = read(b[1], in + got, sizeof(in) - got);
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, sizeof(out));
    assert_memory_equal(in, out, sizeof(out));
    bl_pipe_put(p);
    bl_pipe_drain();
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_capped_per_thread),
        cmocka_unit_test(test_bytes_through_grown_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
