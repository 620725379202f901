/* Upstream queues: the directive, FIFO order, overflow, requeue at the head with the original
 * deadline, cancel (a wake passed on), timeouts, and wakes across threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upstream/queue.c"

#define ASSERT_EQ(a, b) assert_int_equal((a), (b))

static int order[16], norder, timeouts;

/* The waiters keep their number in a side table: prev is cleared when woken. */
static struct bl_queue_waiter ws[8];
static int num(const struct bl_queue_waiter *w)
{
    return (int)(w - ws);
}

static void on_ready_num(struct bl_queue_waiter *w, int ok)
{
    if (!ok) {
        timeouts++;
        return;
    }
    order[norder++] = num(w);
}

struct fx {
    struct bl_loop *loop;
    struct bl_queue_worker qw;
    struct bl_queue_conf *qc;
    struct bl_queue queue;
    struct bl_queue *q;
};

static struct fx *fx_new(const char *len, const char *timeout)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];
    f->loop = bl_loop_create(err, sizeof(err));
    assert_non_null(f->loop);
    ASSERT_EQ(bl_queue_worker_init(&f->qw, f->loop), BL_OK);
    char *args[2] = {(char *)len, (char *)timeout};
    ASSERT_EQ(bl_queue_parse(&f->qc, args, timeout ? 2 : 1, err, sizeof(err)), BL_OK);
    bl_queue_init(&f->queue);
    f->q = &f->queue;
    memset(ws, 0, sizeof(ws));
    norder = timeouts = 0;
    bl_clock_ms = 1000000;
    return f;
}

static void fx_free(struct fx *f)
{
    ASSERT_EQ(f->q->len, 0);
    bl_queue_destroy(f->q);
    bl_queue_conf_free(f->qc);
    bl_queue_worker_free(&f->qw);
    bl_loop_destroy(f->loop);
    free(f);
}

/* What the worker's loop would do when its eventfd fires. */
static void deliver(struct fx *f)
{
    f->qw.wake.handler(&f->qw.wake, BL_EV_READ);
}

static void test_parse(void **state)
{
    (void)state;
    struct bl_queue_conf *q = NULL;
    char err[256];
    char *ok[] = {"5", "timeout=2s"};
    ASSERT_EQ(bl_queue_parse(&q, ok, 2, err, sizeof(err)), BL_OK);
    ASSERT_EQ(q->max, 5);
    ASSERT_EQ(q->timeout_ms, 2000);
    ASSERT_EQ(bl_queue_parse(&q, ok, 1, err, sizeof(err)), BL_ERR); /* duplicate */
    bl_queue_conf_free(q);
    q = NULL;
    ASSERT_EQ(bl_queue_parse(&q, ok, 1, err, sizeof(err)), BL_OK);
    ASSERT_EQ(q->timeout_ms, 60000); /* nginx Plus's default */
    bl_queue_conf_free(q);
    const char *bad[][2] = {{"0", NULL}, {"x", NULL}, {"3", "timeout=0"}, {"3", "wait=1s"},
                            {"-1", NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        q = NULL;
        char *a[2] = {(char *)bad[i][0], (char *)bad[i][1]};
        ASSERT_EQ(bl_queue_parse(&q, a, a[1] ? 2 : 1, err, sizeof(err)), BL_ERR);
        assert_null(q);
    }
}

static void test_fifo_and_overflow(void **state)
{
    (void)state;
    struct fx *f = fx_new("3", NULL);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(bl_queue_wait(f->q, f->qc, &ws[i], &f->qw, on_ready_num), BL_OK);
    ASSERT_EQ(bl_queue_wait(f->q, f->qc, &ws[3], &f->qw, on_ready_num), BL_ERR);
    ASSERT_EQ(atomic_load(&f->q->overflows), 1);
    ASSERT_EQ(atomic_load(&f->q->waiting), 3);
    bl_queue_wake_one(f->q);
    bl_queue_wake_one(f->q);
    ASSERT_EQ(ws[0].state, BL_QW_WOKEN);
    deliver(f);
    ASSERT_EQ(norder, 2);
    ASSERT_EQ(order[0], 0);
    ASSERT_EQ(order[1], 1);
    /* waiter 0 found no slot: back at the head, before 2 */
    ASSERT_EQ(bl_queue_requeue(&ws[0]), BL_OK);
    bl_queue_wake_one(f->q);
    deliver(f);
    ASSERT_EQ(order[2], 0);
    bl_queue_wake_one(f->q);
    deliver(f);
    ASSERT_EQ(order[3], 2);
    bl_queue_wake_one(f->q); /* nobody left: nothing */
    deliver(f);
    ASSERT_EQ(norder, 4);
    fx_free(f);
}

static void test_cancel_passes_wake_on(void **state)
{
    (void)state;
    struct fx *f = fx_new("4", NULL);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(bl_queue_wait(f->q, f->qc, &ws[i], &f->qw, on_ready_num), BL_OK);
    bl_queue_cancel(&ws[1]); /* queued: just leaves */
    ASSERT_EQ(f->q->len, 2);
    bl_queue_wake_one(f->q); /* 0 woken ... */
    bl_queue_cancel(&ws[0]); /* ... but its request ended: 2 gets the wake */
    ASSERT_EQ(ws[0].state, BL_QW_IDLE);
    deliver(f);
    ASSERT_EQ(norder, 1);
    ASSERT_EQ(order[0], 2);
    ASSERT_EQ(f->q->len, 0);
    bl_queue_cancel(&ws[2]); /* idle: nothing */
    fx_free(f);
}

static void test_timeout(void **state)
{
    (void)state;
    struct fx *f = fx_new("2", "timeout=1s");
    ASSERT_EQ(bl_queue_wait(f->q, f->qc, &ws[0], &f->qw, on_ready_num), BL_OK);
    ASSERT_EQ(ws[0].deadline_ms, bl_clock_ms + 1000);
    ws[0].timer.handler(&ws[0].timer); /* the deadline's timer fires */
    ASSERT_EQ(timeouts, 1);
    ASSERT_EQ(f->q->len, 0);
    ASSERT_EQ(atomic_load(&f->q->timeouts), 1);
    /* woken, but by the time it picks again the deadline has passed: no requeue */
    ASSERT_EQ(bl_queue_wait(f->q, f->qc, &ws[1], &f->qw, on_ready_num), BL_OK);
    bl_queue_wake_one(f->q);
    ws[1].timer.handler(&ws[1].timer); /* fires while the wake is on its way: ignored */
    ASSERT_EQ(timeouts, 1);
    deliver(f);
    bl_clock_ms += 1001;
    ASSERT_EQ(bl_queue_requeue(&ws[1]), BL_ERR);
    ASSERT_EQ(f->q->len, 0);
    fx_free(f);
}

/* Workers on two threads: every wake from either thread reaches the owner, in FIFO order, and
 * the counts balance. */
static struct fx *shared;
static void *waker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200000; i++)
        bl_queue_wake_one(shared->q);
    return NULL;
}

static void on_ready_count(struct bl_queue_waiter *w, int ok)
{
    (void)w;
    if (ok)
        norder++;
}

static void test_threads(void **state)
{
    (void)state;
    struct fx *f = fx_new("1000", NULL);
    shared = f;
    static struct bl_queue_waiter many[1000];
    memset(many, 0, sizeof(many));
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(bl_queue_wait(f->q, f->qc, &many[i], &f->qw, on_ready_count), BL_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, waker, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    deliver(f);
    ASSERT_EQ(norder, 1000);
    ASSERT_EQ(f->q->len, 0);
    ASSERT_EQ(atomic_load(&f->q->waiting), 0);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_fifo_and_overflow),
        cmocka_unit_test(test_cancel_passes_wake_on),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
