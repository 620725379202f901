/* The attempt layer: retry decisions (each proxy_next_upstream condition, tries, timeout,
 * non-idempotent requests, a response already started), what counts against max_fails, the
 * nginx fallback when every server is down, and release feedback reaching the balancer, with
 * a fake group and no sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/attempt.c"
#include "balancer_test.h"

/* round robin, with its release recorded */
static struct bl_pick_feedback last_fb;
static struct bl_upstream_server *last_fb_server;
static int nreleases;

static void recording_release(struct bl_pick *p, struct bl_upstream_server *s,
                              const struct bl_pick_feedback *fb)
{
    (void)p;
    nreleases++;
    last_fb_server = s;
    if (fb)
        last_fb = *fb;
}

static struct bl_balancer_ops recording_rr;

struct fixture {
    struct tg *t;
    struct bl_upstream_worker uw;
    void *lb_state[1];
    struct bl_attempt a;
    struct bl_retry_policy p;
};

static struct fixture *fx_new(uint32_t n)
{
    struct fixture *f = calloc(1, sizeof(*f));
    recording_rr = bl_balancer_rr;
    recording_rr.release = recording_release;
    f->t = tg_new(n, NULL, 0);
    tg_init(f->t, &recording_rr);
    f->lb_state[0] = f->t->wstate;
    f->uw.lb_state = f->lb_state;
    f->uw.ngroups = 1;
    struct bl_upstream_group *g = &f->t->g;
    assert_int_equal(bl_upstream_counts_init(&g, 1, 2), BL_OK);
    f->uw.worker = 1; /* the second worker's counts */
    f->p.next_upstream = BL_NEXT_ERROR | BL_NEXT_TIMEOUT;
    bl_clock_ms = 1000000;
    bl_clock_us = bl_clock_ms * 1000;
    f->p.start_us = bl_clock_us;
    nreleases = 0;
    last_fb_server = NULL;
    memset(&last_fb, 0, sizeof(last_fb));
    return f;
}

static void fx_free(struct fixture *f)
{
    tg_free(f->t);
    free(f);
}

static int32_t active(struct fixture *f, struct bl_upstream_server *s)
{
    (void)f;
    return (int32_t)bl_server_active(s);
}

#include "assert_eq.h"

/* ------------------------------------------------------------ the retry decision */

static void test_each_condition(void **state)
{
    (void)state;
    static const struct {
        uint64_t bit;
        enum bl_attempt_error kind;
        int status;
    } conds[] = {
        {BL_NEXT_ERROR, BL_AE_ERROR, 0},
        {BL_NEXT_TIMEOUT, BL_AE_TIMEOUT, 0},
        {BL_NEXT_INVALID_HEADER, BL_AE_INVALID, 0},
        {BL_NEXT_HTTP_500, BL_AE_STATUS, 500},
        {BL_NEXT_HTTP_502, BL_AE_STATUS, 502},
        {BL_NEXT_HTTP_503, BL_AE_STATUS, 503},
        {BL_NEXT_HTTP_504, BL_AE_STATUS, 504},
        {BL_NEXT_HTTP_403, BL_AE_STATUS, 403},
        {BL_NEXT_HTTP_404, BL_AE_STATUS, 404},
        {BL_NEXT_HTTP_429, BL_AE_STATUS, 429},
    };
    struct fixture *f = fx_new(3);
    for (size_t i = 0; i < BL_ARRAY_LEN(conds); i++) {
        for (size_t j = 0; j < BL_ARRAY_LEN(conds); j++) {
            f->p.next_upstream = conds[j].bit;
            int allowed = bl_attempt_retry_allowed(&f->a, &f->p, conds[i].kind, conds[i].status);
            if (allowed != (i == j))
                print_error("failure %zu under condition %zu\n", i, j);
            ASSERT_EQ(allowed, i == j);
        }
        f->p.next_upstream = BL_NEXT_OFF;
        ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, conds[i].kind, conds[i].status), 0);
    }
    /* statuses no condition names never retry */
    f->p.next_upstream = ~(uint64_t)BL_NEXT_OFF;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_STATUS, 501), 0);
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_STATUS, 200), 0);
    ASSERT_EQ(bl_next_upstream_status(0), 0);
    fx_free(f);
}

static void test_tries_and_timeout(void **state)
{
    (void)state;
    struct fixture *f = fx_new(3);
    f->p.tries = 2;
    f->a.tries = 1;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_ERROR, 0), 1);
    f->a.tries = 2;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_ERROR, 0), 0);
    f->p.tries = 0; /* no limit */
    f->a.tries = 200;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_ERROR, 0), 1);

    f->p.timeout_ms = 500;
    bl_clock_us = f->p.start_us + 499999;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_TIMEOUT, 0), 1);
    bl_clock_us = f->p.start_us + 500000;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_TIMEOUT, 0), 0);
    fx_free(f);
}

static void test_non_idempotent_and_committed(void **state)
{
    (void)state;
    struct fixture *f = fx_new(3);
    f->p.non_idempotent = 1;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_ERROR, 0), 1); /* nothing sent */
    f->a.sent_any = 1;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_ERROR, 0), 0);
    f->p.next_upstream |= BL_NEXT_NON_IDEMPOTENT;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_ERROR, 0), 1);
    f->p.non_idempotent = 0;
    f->p.next_upstream &= ~(uint64_t)BL_NEXT_NON_IDEMPOTENT;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_ERROR, 0), 1); /* GET: resent */
    /* the response started (or the body is gone): never */
    f->p.committed = 1;
    ASSERT_EQ(bl_attempt_retry_allowed(&f->a, &f->p, BL_AE_ERROR, 0), 0);
    fx_free(f);
}

static void test_counts_as_failure(void **state)
{
    (void)state;
    uint64_t mask = BL_NEXT_ERROR | BL_NEXT_HTTP_500 | BL_NEXT_HTTP_404 | BL_NEXT_HTTP_429;
    ASSERT_EQ(bl_attempt_counts_as_failure(0, BL_AE_ERROR, 0), 1);
    ASSERT_EQ(bl_attempt_counts_as_failure(0, BL_AE_TIMEOUT, 0), 1);
    ASSERT_EQ(bl_attempt_counts_as_failure(0, BL_AE_INVALID, 0), 1);
    ASSERT_EQ(bl_attempt_counts_as_failure(mask, BL_AE_STATUS, 500), 1);
    ASSERT_EQ(bl_attempt_counts_as_failure(mask, BL_AE_STATUS, 429), 1);
    ASSERT_EQ(bl_attempt_counts_as_failure(mask, BL_AE_STATUS, 404), 0); /* retried, not a fail */
    ASSERT_EQ(bl_attempt_counts_as_failure(mask, BL_AE_STATUS, 502), 0); /* not listed */
}

/* ------------------------------------------------------------ picking and the fallback */

static void test_first_pick_acquires(void **state)
{
    (void)state;
    struct fixture *f = fx_new(3);
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    struct bl_upstream_server *s = f->a.server;
    assert_non_null(s);
    ASSERT_EQ(active(f, s), 1);
    ASSERT_EQ(bl_group_active(&f->t->g), 1);
    ASSERT_EQ(f->a.tries, 1);
    ASSERT_EQ(bl_pick_tried(&(struct bl_pick){.tried = f->a.tried}, s->index), 1);
    assert_null(f->a.pick.key); /* the caller's key is not kept */
    bl_attempt_release(&f->a, 0, 0, 0);
    ASSERT_EQ(active(f, s), 0);
    ASSERT_EQ(bl_group_active(&f->t->g), 0);
    fx_free(f);
}

static void test_no_live_upstreams_keeps_passive_failures(void **state)
{
    (void)state;
    struct fixture *f = fx_new(3);
    ASSERT_EQ(bl_group_failed(&f->t->g, bl_clock_ms), 0);
    for (uint32_t i = 0; i < 3; i++)
        tg_mark_down(f->t, i);
    /* nginx 1.22: no live upstreams until a window ends; nothing is forgotten */
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_ERR);
    assert_null(f->a.server);
    ASSERT_EQ(bl_group_failed(&f->t->g, bl_clock_ms), 1);
    for (uint32_t i = 0; i < 3; i++)
        assert_true(atomic_load(&f->t->states[i].down_until_ms) > bl_clock_ms);
    fx_free(f);
}

static void test_single_server_never_marked(void **state)
{
    (void)state;
    struct fixture *f = fx_new(1);
    struct bl_upstream_server *s = &f->t->g.servers[0];
    s->max_fails = 1;
    s->fail_timeout_ms = 10000;
    bl_server_report(s, 1, bl_clock_ms);
    bl_server_report(s, 1, bl_clock_ms);
    ASSERT_EQ(atomic_load(&f->t->states[0].down_until_ms), 0);
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    bl_attempt_release(&f->a, 0, 0, 0);
    fx_free(f);
}

static void test_no_fallback_for_config_down_or_retries(void **state)
{
    (void)state;
    struct fixture *f = fx_new(2);
    f->t->g.servers[0].down = 1;
    f->t->g.servers[1].down = 1;
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_ERR);
    assert_null(f->a.server);
    ASSERT_EQ(f->a.tries, 0);
    fx_free(f);

    /* A retry does not fall back: the other server being out for max_fails stays out. */
    f = fx_new(2);
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    uint32_t other = f->a.server->index ^ 1;
    tg_mark_down(f->t, other);
    ASSERT_EQ(bl_attempt_failed(&f->a, &f->uw, &f->p, BL_AE_ERROR, 0, NULL, 0, NULL), BL_ERR);
    assert_true(atomic_load(&f->t->states[other].down_until_ms) > 0);
    bl_attempt_release(&f->a, 1, 0, 0);
    fx_free(f);
}

/* ------------------------------------------------------------ failures, retries, feedback */

static void test_failed_retries_on_another_server(void **state)
{
    (void)state;
    struct fixture *f = fx_new(3);
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    struct bl_upstream_server *first = f->a.server;
    ASSERT_EQ(bl_attempt_failed(&f->a, &f->uw, &f->p, BL_AE_ERROR, 0, NULL, 0, NULL), BL_OK);
    struct bl_upstream_server *second = f->a.server;
    assert_ptr_not_equal(first, second);
    ASSERT_EQ(f->a.tries, 2);
    ASSERT_EQ(active(f, first), 0);
    ASSERT_EQ(active(f, second), 1);
    ASSERT_EQ(atomic_load(&first->state->fails), 1);       /* max_fails counted */
    ASSERT_EQ(atomic_load(&f->t->g.gstate->retries), 1);   /* the retry holds a slot */
    /* the old server's release reached the balancer, as a failure */
    ASSERT_EQ(nreleases, 1);
    assert_ptr_equal(last_fb_server, first);
    ASSERT_EQ(last_fb.failed, 1);

    /* The third attempt, then nothing left to try. */
    ASSERT_EQ(bl_attempt_failed(&f->a, &f->uw, &f->p, BL_AE_TIMEOUT, 0, NULL, 0, NULL), BL_OK);
    struct bl_upstream_server *third = f->a.server;
    assert_ptr_not_equal(third, first);
    assert_ptr_not_equal(third, second);
    ASSERT_EQ(atomic_load(&f->t->g.gstate->retries), 1);   /* one retry in flight at a time */
    ASSERT_EQ(bl_attempt_failed(&f->a, &f->uw, &f->p, BL_AE_ERROR, 0, NULL, 0, NULL), BL_ERR);
    assert_ptr_equal(f->a.server, third);                  /* still held */
    ASSERT_EQ(active(f, third), 1);
    ASSERT_EQ(atomic_load(&f->t->g.gstate->retries), 1);
    bl_attempt_release(&f->a, 1, 0, 0);
    ASSERT_EQ(atomic_load(&f->t->g.gstate->retries), 0);
    ASSERT_EQ(bl_group_active(&f->t->g), 0);
    fx_free(f);
}

static void test_status_failure_not_listed_does_not_count(void **state)
{
    (void)state;
    struct fixture *f = fx_new(3);
    f->p.next_upstream = BL_NEXT_HTTP_404;
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    struct bl_upstream_server *first = f->a.server;
    bl_attempt_answered(&f->a, 404);
    ASSERT_EQ(bl_attempt_failed(&f->a, &f->uw, &f->p, BL_AE_STATUS, 404, NULL, 0, NULL), BL_OK);
    ASSERT_EQ(atomic_load(&first->state->fails), 0);        /* a 404 is no server failure */
    ASSERT_EQ(last_fb.failed, 0);
    ASSERT_EQ(last_fb.status, 404);
    bl_attempt_release(&f->a, 0, 0, 0);
    fx_free(f);
}

static void test_retry_budget_refuses(void **state)
{
    (void)state;
    struct fixture *f = fx_new(3);
    f->t->g.retry_budget_set = 1;
    f->t->g.retry_budget_percent = 1;
    f->t->g.retry_budget_min = 0;
    bl_log_level = BL_LOG_EMERG; /* the refusal warns */
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    struct bl_upstream_server *first = f->a.server;
    ASSERT_EQ(bl_attempt_failed(&f->a, &f->uw, &f->p, BL_AE_ERROR, 0, NULL, 0, NULL), BL_ERR);
    assert_ptr_equal(f->a.server, first);
    ASSERT_EQ(atomic_load(&f->t->g.gstate->retries), 0);
    bl_attempt_release(&f->a, 1, 0, 0);
    fx_free(f);
}

static void test_release_feedback(void **state)
{
    (void)state;
    struct fixture *f = fx_new(2);
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    struct bl_upstream_server *s = f->a.server;
    atomic_store(&s->state->fails, 1);
    f->a.start_us = bl_clock_us;
    bl_clock_us += 2500;
    bl_clock_ms += 3;
    bl_attempt_answered(&f->a, 200);
    bl_attempt_release(&f->a, 0, 0, 1234);
    ASSERT_EQ(nreleases, 1);
    assert_ptr_equal(last_fb_server, s);
    ASSERT_EQ(last_fb.status, 200);
    ASSERT_EQ(last_fb.failed, 0);
    ASSERT_EQ(last_fb.latency_us, 2500);
    ASSERT_EQ(last_fb.bytes, 1234);
    ASSERT_EQ(f->a.pick.now_ms, bl_clock_ms);             /* refreshed for the release */
    ASSERT_EQ(atomic_load(&s->state->fails), 0);          /* a success resets the window */
    /* once only */
    bl_attempt_release(&f->a, 1, 0, 0);
    ASSERT_EQ(nreleases, 1);
    ASSERT_EQ(active(f, s), 0);
    fx_free(f);
}

/* In-flight counts: each worker's own line where no pick reads them (round robin), shared
 * atomics where one does (max_conns here); the sums see both. Requests count per worker. */
static void test_counts_where_a_pick_reads_them(void **state)
{
    (void)state;
    struct fixture *f = fx_new(2);
    ASSERT_EQ(f->t->g.shared_active, 0);
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    struct bl_upstream_server *s = f->a.server;
    ASSERT_EQ(atomic_load(&s->state->active), 0);
    ASSERT_EQ(atomic_load(&s->state->per_worker[1].active), 1);
    ASSERT_EQ(atomic_load(&s->state->per_worker[0].active), 0);
    ASSERT_EQ(bl_server_active(s), 1);
    ASSERT_EQ(bl_server_active_pick(s), 1);
    ASSERT_EQ(bl_group_active(&f->t->g), 1);
    ASSERT_EQ(bl_server_requests(s), 1);
    bl_attempt_release(&f->a, 0, 0, 0);
    ASSERT_EQ(bl_server_active(s), 0);

    f->t->g.servers[1].max_conns = 10;
    struct bl_upstream_group *g = &f->t->g;
    assert_int_equal(bl_upstream_counts_init(&g, 1, 2), BL_OK);
    ASSERT_EQ(f->t->g.shared_active, 1);
    memset(&f->a, 0, sizeof(f->a));
    ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, NULL, 0, NULL), BL_OK);
    s = f->a.server;
    ASSERT_EQ(atomic_load(&s->state->active), 1);
    ASSERT_EQ(atomic_load(&s->state->per_worker[1].active), 0);
    ASSERT_EQ(bl_server_active(s), 1);
    ASSERT_EQ(bl_group_active(&f->t->g), 1);
    ASSERT_EQ(bl_server_requests(&f->t->g.servers[0]) + bl_server_requests(&f->t->g.servers[1]),
              2);
    bl_attempt_release(&f->a, 0, 0, 0);
    ASSERT_EQ(bl_server_active(s), 0);
    ASSERT_EQ(bl_group_active(&f->t->g), 0);
    fx_free(f);
}

static void test_keyed_pick_uses_the_key(void **state)
{
    (void)state;
    struct fixture *f = calloc(1, sizeof(*f));
    f->t = tg_new(5, NULL, 0);
    tg_init(f->t, &bl_balancer_hash);
    f->lb_state[0] = f->t->wstate;
    f->uw.lb_state = f->lb_state;
    struct bl_upstream_group *g = &f->t->g;
    assert_int_equal(bl_upstream_counts_init(&g, 1, 1), BL_OK);
    /* the same key picks the same server as the balancer does alone */
    for (int i = 0; i < 20; i++) {
        char key[16];
        int n = snprintf(key, sizeof(key), "k%d", i);
        tg_key(f->t, key);
        int want = tg_pick(f->t);
        memset(&f->a, 0, sizeof(f->a));
        ASSERT_EQ(bl_attempt_first(&f->a, &f->uw, &f->t->g, key, (size_t)n, NULL), BL_OK);
        ASSERT_EQ(f->a.server->index, want);
        bl_attempt_release(&f->a, 0, 0, 0);
    }
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_condition),
        cmocka_unit_test(test_tries_and_timeout),
        cmocka_unit_test(test_non_idempotent_and_committed),
        cmocka_unit_test(test_counts_as_failure),
        cmocka_unit_test(test_first_pick_acquires),
        cmocka_unit_test(test_counts_where_a_pick_reads_them),
        cmocka_unit_test(test_no_live_upstreams_keeps_passive_failures),
        cmocka_unit_test(test_single_server_never_marked),
        cmocka_unit_test(test_no_fallback_for_config_down_or_retries),
        cmocka_unit_test(test_failed_retries_on_another_server),
        cmocka_unit_test(test_status_failure_not_listed_does_not_count),
        cmocka_unit_test(test_retry_budget_refuses),
        cmocka_unit_test(test_release_feedback),
        cmocka_unit_test(test_keyed_pick_uses_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
