/* The event loop with its epoll backend: timers fire once, in deadline order, also when moved
 * later (lazy) or earlier; cancelled timers never fire; edge-triggered fds report read and
 * hang-up; level-triggered fds report until drained or unregistered; kernel errors reach the
 * handler as BL_EV_ERROR with both directions; deferred work runs after the batch.
 * test_loop_seam.c drives the generic part with a scripted backend; test_loop_uring.c
 * includes this file to run the same tests on the io_uring backend (TEST_LOOP_METHOD), and
 * adds its own (TEST_LOOP_EXTRA). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/loop.c"

#ifndef TEST_LOOP_METHOD
#define TEST_LOOP_METHOD BL_LOOP_EPOLL
#endif

struct tt {
    struct bl_timer t;
    int id;
};

static int fired[1024];
static int nfired;
static struct bl_loop *loop_under_test;

static void on_timer(struct bl_timer *t)
{
    struct tt *x = (struct tt *)t;
    fired[nfired++] = x->id;
}

static void on_last(struct bl_timer *t)
{
    on_timer(t);
    bl_loop_stop(loop_under_test);
}

static struct bl_loop *make_loop(void)
{
    char err[128];
    struct bl_loop *l = bl_loop_create_method(TEST_LOOP_METHOD, err, sizeof(err));
    assert_non_null(l);
    if (bl_loop_fallback(l)) {
        print_message("io_uring refused by this kernel (%s): skipped\n", bl_loop_fallback(l));
        bl_loop_destroy(l);
        skip();
    }
    assert_int_equal(bl_loop_method(l), TEST_LOOP_METHOD);
    loop_under_test = l;
    nfired = 0;
    return l;
}

static void test_timers_fire_in_order(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    uint64_t now = bl_clock_update();
    struct tt t[5];
    int order[5] = {30, 10, 50, 20, 40};
    for (int i = 0; i < 5; i++) {
        t[i].id = order[i];
        t[i].t = (struct bl_timer){.handler = order[i] == 50 ? on_last : on_timer};
        bl_timer_set(l, &t[i].t, now + (uint64_t)order[i]);
    }
    bl_loop_run(l);
    assert_int_equal(nfired, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(fired[i], (i + 1) * 10);
    for (int i = 0; i < 5; i++)
        assert_false(bl_timer_armed(&t[i].t));
    bl_loop_destroy(l);
}

static void test_timers_move_and_cancel(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    uint64_t now = bl_clock_update();
    struct tt a = {.t.handler = on_timer, .id = 1};
    struct tt b = {.t.handler = on_timer, .id = 2};
    struct tt c = {.t.handler = on_timer, .id = 3};
    struct tt end = {.t.handler = on_last, .id = 99};
    bl_timer_set(l, &a.t, now + 10);
    bl_timer_set(l, &a.t, now + 60);   /* later: lazy, must fire at 60, not 10 */
    bl_timer_set(l, &b.t, now + 50);
    bl_timer_set(l, &b.t, now + 20);   /* earlier: re-sorted */
    bl_timer_set(l, &c.t, now + 15);
    bl_timer_cancel(l, &c.t);          /* never fires */
    bl_timer_set(l, &end.t, now + 80);
    bl_loop_run(l);
    assert_int_equal(nfired, 3);
    assert_int_equal(fired[0], 2);
    assert_int_equal(fired[1], 1);
    assert_int_equal(fired[2], 99);
    assert_true(bl_clock_ms >= now + 80);
    bl_loop_destroy(l);
}

static void test_many_random_timers(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    uint64_t now = bl_clock_update();
    enum { N = 1000 };
    static struct tt t[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        t[i] = (struct tt){.t.handler = on_timer, .id = i};
        bl_timer_set(l, &t[i].t, now + 1 + (uint64_t)(rand() % 40));
    }
    /* move half later, cancel a tenth */
    for (int i = 0; i < N; i += 2)
        bl_timer_set(l, &t[i].t, t[i].t.when + (uint64_t)(rand() % 20));
    for (int i = 0; i < N; i += 10)
        bl_timer_cancel(l, &t[i].t);
    uint64_t when[N];
    for (int i = 0; i < N; i++)
        when[i] = t[i].t.when;
    struct tt end = {.t.handler = on_last, .id = -1};
    bl_timer_set(l, &end.t, now + 100);
    bl_loop_run(l);
    assert_int_equal(nfired, N - N / 10 + 1);
    for (int k = 1; k < nfired - 1; k++)
        assert_true(when[fired[k - 1]] <= when[fired[k]]);
    bl_loop_destroy(l);
}

/* bl_timer_disarm: a disarmed timer never fires and stays in the heap until its old deadline
 * comes up (then it is dropped) or it is set again (in place, later or earlier) or cancelled
 * (taken out at once, so its memory may go). */
static void test_timers_disarm(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    uint64_t now = bl_clock_update();
    struct tt a = {.t.handler = on_timer, .id = 1};
    struct tt b = {.t.handler = on_timer, .id = 2};
    struct tt c = {.t.handler = on_timer, .id = 3};
    struct tt d = {.t.handler = on_timer, .id = 4};
    struct tt e = {.t.handler = on_timer, .id = 5};
    struct tt end = {.t.handler = on_last, .id = 99};
    bl_timer_set(l, &a.t, now + 10);
    bl_timer_disarm(l, &a.t);              /* never fires; dropped at 10 */
    assert_false(bl_timer_armed(&a.t));
    assert_int_equal(l->nheap, 1);
    bl_timer_set(l, &b.t, now + 10);
    bl_timer_disarm(l, &b.t);
    bl_timer_set(l, &b.t, now + 40);       /* re-armed later: stays where it is */
    assert_int_equal(b.t.heap_when, now + 10);
    bl_timer_set(l, &c.t, now + 60);
    bl_timer_disarm(l, &c.t);
    bl_timer_set(l, &c.t, now + 20);       /* re-armed earlier: moved up */
    assert_int_equal(c.t.heap_when, now + 20);
    bl_timer_set(l, &d.t, now + 30);
    bl_timer_disarm(l, &d.t);
    bl_timer_cancel(l, &d.t);              /* out of the heap at once */
    assert_int_equal(d.t.heap_index, 0);
    bl_timer_set(l, &e.t, now + 70);
    bl_timer_set(l, &e.t, now + 30);       /* armed, moved earlier: decrease-key */
    bl_timer_set(l, &end.t, now + 80);
    assert_int_equal(l->nheap, 5);         /* a, b, c, e, end */
    bl_loop_run(l);
    assert_int_equal(nfired, 4);
    assert_int_equal(fired[0], 3);
    assert_int_equal(fired[1], 5);
    assert_int_equal(fired[2], 2);
    assert_int_equal(fired[3], 99);
    assert_int_equal(l->nheap, 0);
    assert_int_equal(a.t.heap_index, 0);
    bl_loop_destroy(l);
}

/* Random sets (earlier and later), disarms and cancels: what fires is exactly what is armed,
 * in deadline order. */
static void test_random_disarm(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    uint64_t now = bl_clock_update();
    enum { N = 1000 };
    static struct tt t[N];
    srand(11);
    for (int i = 0; i < N; i++) {
        t[i] = (struct tt){.t.handler = on_timer, .id = i};
        bl_timer_set(l, &t[i].t, now + 1 + (uint64_t)(rand() % 60));
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            switch (rand() % 5) {
            case 0:
                bl_timer_disarm(l, &t[i].t);
                break;
            case 1:
                bl_timer_cancel(l, &t[i].t);
                break;
            case 2:
                bl_timer_set(l, &t[i].t, now + 1 + (uint64_t)(rand() % 60));
                break;
            default:
                break;
            }
        }
    }
    uint64_t when[N];
    int armed = 0;
    for (int i = 0; i < N; i++) {
        when[i] = t[i].t.when;
        armed += bl_timer_armed(&t[i].t);
    }
    struct tt end = {.t.handler = on_last, .id = -1};
    bl_timer_set(l, &end.t, now + 100);
    bl_loop_run(l);
    assert_int_equal(nfired, armed + 1);
    for (int k = 0; k < nfired - 1; k++) {
        assert_true(when[fired[k]] != 0);
        if (k > 0)
            assert_true(when[fired[k - 1]] <= when[fired[k]]);
    }
    assert_int_equal(l->nheap, 0);
    bl_loop_destroy(l);
}

struct pio {
    struct bl_io io;
    uint32_t seen;
    struct bl_deferred d;
    int deferred_ran;
};

static void on_pipe(struct bl_io *io, uint32_t ev)
{
    struct pio *p = (struct pio *)io;
    p->seen |= ev;
    char b[16];
    while (read(io->fd, b, sizeof(b)) > 0)
        ;
    bl_loop_defer(loop_under_test, &p->d);
}

static void on_deferred(struct bl_deferred *d)
{
    struct pio *p = (struct pio *)((char *)d - offsetof(struct pio, d));
    p->deferred_ran++;
    bl_loop_stop(loop_under_test);
}

static void test_fd_events_and_defer(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    struct pio p = {.io = {.fd = fds[0], .handler = on_pipe}, .d.run = on_deferred};
    assert_int_equal(bl_loop_add(l, &p.io), BL_OK);
    assert_int_equal(write(fds[1], "x", 1), 1);
    close(fds[1]); /* the reader sees data and the hang-up */
    bl_loop_run(l);
    assert_true(p.seen & BL_EV_READ);
    assert_true(p.seen & BL_EV_HUP);
    assert_int_equal(p.deferred_ran, 1);
    close(fds[0]);
    bl_loop_destroy(l);
}

struct counted {
    struct bl_io io;
    uint32_t seen;
    int calls;
    int del_after;           /* unregister (and stop) after this many calls; 0: stop at once */
};

static void on_counted(struct bl_io *io, uint32_t ev)
{
    struct counted *c = (struct counted *)io;
    c->seen |= ev;
    if (++c->calls >= c->del_after) {
        if (c->del_after)
            bl_loop_del(loop_under_test, io);
        bl_loop_stop(loop_under_test);
    }
}

static void on_stop_timer(struct bl_timer *t) { bl_loop_stop(loop_under_test); }

static void test_level_triggered_until_del(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    /* the handler never reads: level-triggered, the fd is reported on every turn */
    struct counted c = {.io = {.fd = fds[0], .handler = on_counted}, .del_after = 3};
    assert_int_equal(bl_loop_add_level(l, &c.io), BL_OK);
    assert_int_equal(write(fds[1], "x", 1), 1);
    bl_loop_run(l);
    assert_int_equal(c.calls, 3);
    assert_int_equal(c.seen, BL_EV_READ);
    /* unregistered: still readable, never reported again */
    struct bl_timer t = {.handler = on_stop_timer};
    bl_timer_set(l, &t, bl_clock_update() + 30);
    bl_loop_run(l);
    assert_int_equal(c.calls, 3);
    close(fds[0]);
    close(fds[1]);
    bl_loop_destroy(l);
}

static void test_error_reports_both_directions(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    close(fds[0]); /* the writer gets EPOLLERR: the next write says EPIPE */
    struct counted c = {.io = {.fd = fds[1], .handler = on_counted}};
    assert_int_equal(bl_loop_add(l, &c.io), BL_OK);
    bl_loop_run(l);
    assert_int_equal(c.calls, 1);
    assert_true(c.seen & BL_EV_ERROR);
    assert_true(c.seen & BL_EV_READ);
    assert_true(c.seen & BL_EV_WRITE);
    close(fds[1]);
    bl_loop_destroy(l);
}

static void test_close_registered_fd(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    struct counted c = {.io = {.fd = fds[0], .handler = on_counted}};
    assert_int_equal(bl_loop_add(l, &c.io), BL_OK);
    int fd = c.io.fd;
    bl_loop_close(l, &c.io);
    assert_int_equal(c.io.fd, -1);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    bl_loop_close(l, &c.io); /* a second close does nothing */
    /* the closed fd left the epoll set: nothing is reported for it */
    struct bl_timer t = {.handler = on_stop_timer};
    bl_timer_set(l, &t, bl_clock_update() + 30);
    bl_loop_run(l);
    assert_int_equal(c.calls, 0);
    close(fds[1]);
    bl_loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_order),
        cmocka_unit_test(test_timers_move_and_cancel),
        cmocka_unit_test(test_many_random_timers),
        cmocka_unit_test(test_timers_disarm),
        cmocka_unit_test(test_random_disarm),
        cmocka_unit_test(test_fd_events_and_defer),
        cmocka_unit_test(test_level_triggered_until_del),
        cmocka_unit_test(test_error_reports_both_directions),
        cmocka_unit_test(test_close_registered_fd),
#ifdef TEST_LOOP_EXTRA
        TEST_LOOP_EXTRA
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
