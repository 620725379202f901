/* Retry budget: the directive, the limit's arithmetic, acquire/release pairing, the
 * rate-limited warning, and the limit under threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "upstream/retry_budget.c"

static struct bl_group_state gstate;
static struct bl_upstream_group group;

static int setup(void **state)
{
    memset(&gstate, 0, sizeof(gstate));
    memset(&group, 0, sizeof(group));
    group.name = "g";
    group.gstate = &gstate;
    bl_clock_ms = 5000000;
    bl_log_level = BL_LOG_EMERG; /* refusals warn; the test that reads them opens a log */
    return 0;
}

static int parse(struct bl_upstream_group *g, const char *line, char *err, size_t errlen)
{
    char buf[256], *args[8];
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *tok = strtok(buf, " "); tok && n < 8; tok = strtok(NULL, " "))
        args[n++] = tok;
    *err = 0;
    return bl_retry_budget_parse(g, args, n, err, errlen);
}

static void test_parse(void **state)
{
    char err[256];
    assert_int_equal(parse(&group, "20%", err, sizeof(err)), BL_OK);
    assert_int_equal(group.retry_budget_percent, 20);
    assert_int_equal(group.retry_budget_min, 3);
    assert_int_equal(parse(&group, "30", err, sizeof(err)), BL_ERR);
    assert_string_equal(err, "\"retry_budget\" directive is duplicate");

    struct bl_upstream_group g = {.name = "h"};
    assert_int_equal(parse(&g, "100 min=0", err, sizeof(err)), BL_OK);
    assert_int_equal(g.retry_budget_percent, 100);
    assert_int_equal(g.retry_budget_min, 0);

    static const struct {
        const char *line, *err;
    } cases[] = {
        {"", "invalid number of arguments in \"retry_budget\" directive"},
        {"20 min=1 x", "invalid number of arguments in \"retry_budget\" directive"},
        {"101%", "invalid value \"101%\" in \"retry_budget\" directive"},
        {"-5", "invalid value \"-5\" in \"retry_budget\" directive"},
        {"2O", "invalid value \"2O\" in \"retry_budget\" directive"},
        {"20 max=3", "invalid parameter \"max=3\""},
        {"20 min=", "invalid value \"\" for \"min\""},
        {"20 min=3%", "invalid value \"3%\" for \"min\""},
        {"20 min=99999999999", "invalid value \"99999999999\" for \"min\""},
    };
    for (size_t i = 0; i < BL_ARRAY_LEN(cases); i++) {
        struct bl_upstream_group e = {.name = "e"};
        assert_int_equal(parse(&e, cases[i].line, err, sizeof(err)), BL_ERR);
        assert_string_equal(err, cases[i].err);
        assert_int_equal(e.retry_budget_set, 0);
    }
    /* 0% with min=0 is a budget of no retries at all */
    struct bl_upstream_group z = {.name = "z"};
    assert_int_equal(parse(&z, "0% min=0", err, sizeof(err)), BL_OK);
    assert_int_equal(z.retry_budget_set, 1);
    assert_int_equal(z.retry_budget_percent, 0);
    assert_int_equal(z.retry_budget_min, 0);
}

/* No budget: every retry goes, and is still counted. */
static void test_no_budget_counts(void **state)
{
    atomic_store(&gstate.active, 1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bl_retry_acquire(&group), 1);
    assert_int_equal(atomic_load(&gstate.retries), 1000);
    for (int i = 0; i < 1000; i++)
        bl_retry_release(&group);
    assert_int_equal(atomic_load(&gstate.retries), 0);
}

/* limit = max(min, percent x active / 100), rounded down. */
static void test_limit_arithmetic(void **state)
{
    static const struct {
        uint32_t percent, min;
        int32_t active, limit;
    } cases[] = {
        {20, 3, 0, 3},   {20, 3, 10, 3},   {20, 3, 15, 3},  {20, 3, 20, 4},
        {20, 3, 24, 4},  {20, 3, 100, 20}, {50, 0, 1, 0},   {50, 0, 2, 1},
        {100, 3, 7, 7},  {1, 3, 1000, 10}, {20, 3, -4, 3},  {100, 0, 0, 0},
    };
    for (size_t i = 0; i < BL_ARRAY_LEN(cases); i++) {
        group.retry_budget_set = 1;
        group.retry_budget_percent = cases[i].percent;
        group.retry_budget_min = cases[i].min;
        atomic_store(&gstate.active, cases[i].active);
        int32_t got = 0;
        while (got <= cases[i].limit + 1 && bl_retry_acquire(&group))
            got++;
        if (got != cases[i].limit)
            print_error("%u%% min=%u active=%d: %d retries allowed, want %d\n",
                        cases[i].percent, cases[i].min, cases[i].active, got, cases[i].limit);
        assert_int_equal(got, cases[i].limit);
        assert_int_equal(atomic_load(&gstate.retries), cases[i].limit);
        while (got--)
            bl_retry_release(&group);
        assert_int_equal(atomic_load(&gstate.retries), 0);
    }
}

/* A release makes room for exactly one more; more active requests widen the budget. */
static void test_pairing(void **state)
{
    group.retry_budget_set = 1;
    group.retry_budget_percent = 20;
    group.retry_budget_min = 3;
    atomic_store(&gstate.active, 10);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bl_retry_acquire(&group), 1);
    assert_int_equal(bl_retry_acquire(&group), 0);
    assert_int_equal(atomic_load(&gstate.retries), 3); /* a refusal takes nothing */
    bl_retry_release(&group);
    assert_int_equal(bl_retry_acquire(&group), 1);
    assert_int_equal(bl_retry_acquire(&group), 0);
    atomic_store(&gstate.active, 25);
    assert_int_equal(bl_retry_acquire(&group), 1);
    assert_int_equal(bl_retry_acquire(&group), 1);
    assert_int_equal(bl_retry_acquire(&group), 0);
    for (int i = 0; i < 5; i++)
        bl_retry_release(&group);
    assert_int_equal(atomic_load(&gstate.retries), 0);
}

static char log_path[] = "/tmp/ballast_test_retry_budget_XXXXXX";

static int log_count(const char *needle)
{
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* One warning per second per group, however many refusals. */
static void test_warning_rate_limited(void **state)
{
    char err[128];
    assert_int_equal(truncate(log_path, 0), 0);
    assert_int_equal(bl_log_open(log_path, BL_LOG_NOTICE, err, sizeof(err)), 0);
    struct bl_group_state gs2 = {0};
    struct bl_upstream_group g2 = {.name = "other", .index = 1, .gstate = &gs2,
                                   .retry_budget_set = 1,
                                   .retry_budget_percent = 10, .retry_budget_min = 0};
    group.retry_budget_set = 1;
    group.retry_budget_percent = 20;
    group.retry_budget_min = 1;
    atomic_store(&gstate.active, 4);
    assert_int_equal(bl_retry_acquire(&group), 1);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(bl_retry_acquire(&group), 0);
        assert_int_equal(bl_retry_acquire(&g2), 0);
        bl_clock_ms += 5;
    }
    /* 0.5 s went by: one line each. */
    assert_int_equal(log_count("[warn]"), 2);
    assert_int_equal(log_count("upstream \"g\": retry refused by retry_budget 20% min=1 (1 retries "
                               "in flight, limit 1 for 4 active requests)"), 1);
    assert_int_equal(log_count("upstream \"other\": retry refused"), 1);
    bl_clock_ms += 500;
    assert_int_equal(bl_retry_acquire(&group), 0);
    assert_int_equal(bl_retry_acquire(&group), 0);
    assert_int_equal(log_count("upstream \"g\": retry refused"), 2);
    bl_retry_release(&group);
    bl_log_open("stderr", BL_LOG_NOTICE, err, sizeof(err));
}

/* Threads acquiring and releasing at once never have more retries in flight than the limit. */
#define NTHREADS 4
static _Atomic int stop, max_seen, granted;

static void *retry_thread(void *arg)
{
    while (!atomic_load(&stop)) {
        if (!bl_retry_acquire(&group))
            continue;
        atomic_fetch_add(&granted, 1);
        int n = atomic_load(&gstate.retries);
        int m = atomic_load(&max_seen);
        while (n > m && !atomic_compare_exchange_weak(&max_seen, &m, n))
            ;
        bl_retry_release(&group);
    }
    return NULL;
}

static void test_threads_limit_holds(void **state)
{
    group.retry_budget_set = 1;
    group.retry_budget_percent = 20;
    group.retry_budget_min = 2;
    atomic_store(&gstate.active, 10); /* limit 2 with 4 threads competing */
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, retry_thread, NULL), 0);
    struct timespec d = {0, 200 * 1000 * 1000};
    nanosleep(&d, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    print_message("%d retries granted, at most %d in flight (limit 2)\n", atomic_load(&granted),
                  atomic_load(&max_seen));
    assert_true(atomic_load(&max_seen) <= 2);
    assert_true(atomic_load(&granted) > 0);
    assert_int_equal(atomic_load(&gstate.retries), 0);
}

int main(void)
{
    int fd = mkstemp(log_path);
    if (fd < 0)
        return 1;
    close(fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_parse, setup),
        cmocka_unit_test_setup(test_no_budget_counts, setup),
        cmocka_unit_test_setup(test_limit_arithmetic, setup),
        cmocka_unit_test_setup(test_pairing, setup),
        cmocka_unit_test_setup(test_warning_rate_limited, setup),
        cmocka_unit_test_setup(test_threads_limit_holds, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(log_path);
    return rc;
}
