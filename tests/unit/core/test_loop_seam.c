/* The event loop's generic part against a scripted backend (loop_fake.c): registration goes
 * to the backend with the right mode, events are dispatched in the backend's order with its
 * bits, deferred work runs after the whole batch and before due timers, and the wait is given
 * the right timeout. What the epoll backend itself reports is test_loop.c's business. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BL_LOOP_BACKEND "core/loop_fake.c"
#include "core/loop.c"

static struct bl_loop *loop_under_test;
static char trace[64];   /* one letter per callback, in call order */
static int ntrace;

struct tio {
    struct bl_io io;
    char letter;
    uint32_t seen;
    int stop;                /* stop the loop from this handler */
    struct bl_deferred *defer;   /* queue this from the handler */
};

static void note(char c) { trace[ntrace++] = c; trace[ntrace] = 0; }

static void on_io(struct bl_io *io, uint32_t ev)
{
    struct tio *t = (struct tio *)io;
    t->seen |= ev;
    note(t->letter);
    if (t->defer)
        bl_loop_defer(loop_under_test, t->defer);
    if (t->stop)
        bl_loop_stop(loop_under_test);
}

static void on_deferred(struct bl_deferred *d) { note('d'); }

static void on_timer_stop(struct bl_timer *t)
{
    note('t');
    bl_loop_stop(loop_under_test);
}

static struct bl_loop *make_loop(void)
{
    char err[128];
    struct bl_loop *l = bl_loop_create(err, sizeof(err));
    assert_non_null(l);
    assert_non_null(fake_backend);
    loop_under_test = l;
    ntrace = 0;
    trace[0] = 0;
    return l;
}

static void test_registration_reaches_backend(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    struct bl_io conn = {.fd = 7}, listener = {.fd = 8};
    assert_int_equal(bl_loop_add(l, &conn), BL_OK);
    assert_int_equal(bl_loop_add_level(l, &listener), BL_OK);
    assert_int_equal(fake_backend->nadded, 2);
    assert_ptr_equal(fake_backend->added[0], &conn);
    assert_int_equal(fake_backend->edge[0], 1);     /* connections: edge-triggered */
    assert_ptr_equal(fake_backend->added[1], &listener);
    assert_int_equal(fake_backend->edge[1], 0);     /* listeners: level-triggered */
    bl_loop_del(l, &listener);
    assert_int_equal(fake_backend->ndeleted, 1);
    bl_loop_close(l, &conn);
    assert_int_equal(conn.fd, -1);
    bl_loop_close(l, &conn);                         /* already closed: no second close */
    assert_int_equal(fake_backend->nclosed, 1);
    bl_loop_destroy(l);
    assert_null(fake_backend);
}

static void test_dispatch_in_order_then_deferred(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    struct bl_deferred d = {.run = on_deferred};
    struct tio a = {.io = {.fd = 1, .handler = on_io}, .letter = 'a', .defer = &d};
    struct tio b = {.io = {.fd = 2, .handler = on_io}, .letter = 'b', .stop = 1};
    struct bl_io quiet = {.fd = 3, .handler = NULL};   /* no handler: skipped */
    fake_queue(&a.io, BL_EV_READ);
    fake_queue(&quiet, BL_EV_READ);
    fake_queue(&b.io, BL_EV_WRITE | BL_EV_HUP);
    bl_loop_run(l);
    /* a's deferred work waits for the whole batch: b runs first */
    assert_string_equal(trace, "abd");
    assert_int_equal(a.seen, BL_EV_READ);
    assert_int_equal(b.seen, BL_EV_WRITE | BL_EV_HUP);
    assert_int_equal(fake_backend->npolls, 1);
    bl_loop_destroy(l);
}

static void test_deferred_before_due_timers(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    struct bl_deferred d = {.run = on_deferred};
    struct tio a = {.io = {.fd = 1, .handler = on_io}, .letter = 'a', .defer = &d};
    struct bl_timer t = {.handler = on_timer_stop};
    bl_timer_set(l, &t, bl_clock_update());          /* due at once */
    fake_queue(&a.io, BL_EV_READ);
    bl_loop_run(l);
    assert_string_equal(trace, "adt");
    /* the timer was due: the first wait did not block */
    assert_int_equal(fake_backend->timeouts[0], 0);
    bl_loop_destroy(l);
}

static void test_wait_timeout(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    uint64_t now = bl_clock_update();
    /* nothing to do: the wait is capped at a second */
    assert_int_equal(next_timeout(l, now), 1000);
    struct bl_timer far = {.handler = on_timer_stop}, near = {.handler = on_timer_stop};
    bl_timer_set(l, &far, now + 5000);
    assert_int_equal(next_timeout(l, now), 1000);
    bl_timer_set(l, &near, now + 30);
    assert_int_equal(next_timeout(l, now), 30);
    assert_int_equal(next_timeout(l, now + 40), 0);  /* overdue */
    /* deferred work pending: do not block at all */
    struct bl_deferred d = {.run = on_deferred};
    bl_loop_defer(l, &d);
    assert_int_equal(next_timeout(l, now), 0);
    run_deferred(l);
    /* the run loop hands the backend that timeout, and the timer fires after it */
    bl_timer_cancel(l, &far);
    bl_loop_run(l);
    assert_string_equal(trace, "dt");
    assert_true(fake_backend->npolls >= 1);
    assert_true(fake_backend->timeouts[0] <= 30);
    bl_loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registration_reaches_backend),
        cmocka_unit_test(test_dispatch_in_order_then_deferred),
        cmocka_unit_test(test_deferred_before_due_timers),
        cmocka_unit_test(test_wait_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
