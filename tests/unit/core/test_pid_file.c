/* `-s`: verbs, nginx's pid file rules, the lock that tells a live ballast from a stale file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "assert_eq.h"
#include "core/pid_file.c"

static void test_verbs(void **state)
{
    (void)state;
    ASSERT_EQ(bl_signal_by_name("reload"), SIGHUP);
    ASSERT_EQ(bl_signal_by_name("stop"), SIGTERM);
    ASSERT_EQ(bl_signal_by_name("quit"), SIGQUIT);
    ASSERT_EQ(bl_signal_by_name("reopen"), SIGUSR1);
    ASSERT_EQ(bl_signal_by_name("upgrade"), SIGUSR2);
    ASSERT_EQ(bl_signal_by_name("restart"), 0);
    ASSERT_EQ(bl_signal_by_name(""), 0);
    ASSERT_EQ(bl_signal_by_name("RELOAD"), 0);
}

static void test_parse_pid(void **state)
{
    (void)state;
    ASSERT_EQ(parse_pid("1"), 1);
    ASSERT_EQ(parse_pid("4194304"), 4194304);
    ASSERT_EQ(parse_pid("2147483647"), 2147483647);
    static const char *const bad[] = {"", "0", "-1", "+5", " 5", "5x", "x", "2147483648",
                                      "99999999999999999999", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse_pid(bad[i]) != -1)
            fail_msg("parse_pid(\"%s\") accepted", bad[i]);
}

static char path[64];

static void write_pid_file(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_signal_errors(void **state)
{
    (void)state;
    char err[256];
    snprintf(path, sizeof(path), "/tmp/bl-test-pid-%d", (int)getpid());
    unlink(path);
    ASSERT_EQ(bl_pid_file_signal(path, SIGUSR1, err, sizeof(err)), BL_ERR);
    char want[256];
    snprintf(want, sizeof(want), "open() \"%s\" failed (2: No such file or directory)", path);
    assert_string_equal(err, want);

    write_pid_file("12\x01\n");
    ASSERT_EQ(bl_pid_file_signal(path, SIGUSR1, err, sizeof(err)), BL_ERR);
    snprintf(want, sizeof(want), "invalid PID number \"12?\" in \"%s\"", path);
    assert_string_equal(err, want);

    /* Our own pid, and nobody holds the lock: a stale file naming a live process. */
    char text[32];
    snprintf(text, sizeof(text), "%d\r\n", (int)getpid());
    write_pid_file(text);
    ASSERT_EQ(bl_pid_file_signal(path, SIGUSR1, err, sizeof(err)), BL_ERR);
    snprintf(want, sizeof(want), "pid file \"%s\" is stale: process %d does not hold its lock, "
             "not signalled", path, (int)getpid());
    assert_string_equal(err, want);
    unlink(path);
}

static volatile sig_atomic_t got;
static void on_usr1(int sig) { got = sig; }

static void test_signal_when_locked(void **state)
{
    (void)state;
    char err[256];
    snprintf(path, sizeof(path), "/tmp/bl-test-pid-%d", (int)getpid());
    char text[32];
    snprintf(text, sizeof(text), "%d\n", (int)getpid());
    write_pid_file(text);
    /* flock() locks belong to the open file description: a second open() in the same process
     * is refused as another process would be. */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    ASSERT_EQ(flock(fd, LOCK_EX), 0);
    signal(SIGUSR1, on_usr1);
    ASSERT_EQ(bl_pid_file_signal(path, SIGUSR1, err, sizeof(err)), BL_OK);
    ASSERT_EQ(got, SIGUSR1);
    signal(SIGUSR1, SIG_DFL);
    close(fd);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),
        cmocka_unit_test(test_parse_pid),
        cmocka_unit_test(test_signal_errors),
        cmocka_unit_test(test_signal_when_locked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
