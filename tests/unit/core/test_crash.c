/* The crash line is formatted without the C library (async-signal-safe): dates across leap
 * years and centuries, the thread's name and the signal's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <string.h>

#include "core/crash.h"

static void expect_line(long long now, int signo, int tid, const char *want)
{
    char buf[192];
    int n = bl_crash_format(buf, signo, now, 4711, tid);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_format(void **state)
{
    (void)state;
    expect_line(0, SIGSEGV, 2,
                "1970/01/01 00:00:00 [alert] 4711#2: worker 2 crashed: signal 11 (SIGSEGV), "
                "exiting\n");
    expect_line(951825599, SIGABRT, 0,
                "2000/02/29 11:59:59 [alert] 4711#0: the control thread crashed: signal 6 "
                "(SIGABRT), exiting\n");
    expect_line(4107542399LL, SIGFPE, 10,
                "2100/02/28 23:59:59 [alert] 4711#10: worker 10 crashed: signal 8 (SIGFPE), "
                "exiting\n");
    expect_line(1796641081LL, SIGBUS, 1,
                "2026/12/07 10:58:01 [alert] 4711#1: worker 1 crashed: signal 7 (SIGBUS), "
                "exiting\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
