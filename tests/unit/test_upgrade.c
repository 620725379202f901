/* Binary upgrade: the launcher's rewriting of descriptor indexes ("#N", the N-th descriptor
 * received) into its own descriptor numbers, which the new process then reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/upgrade.c"

#include "assert_eq.h"

static void test_spec_resolve(void **state)
{
    (void)state;
    char out[256];
    int fds[] = {7, 9, 12, 40};
    ASSERT_EQ(spec_resolve("127.0.0.1:80=#0,#1;[::1]:8080=#2,#3", fds, 4, out, sizeof(out)), 0);
    assert_string_equal(out, "127.0.0.1:80=7,9;[::1]:8080=12,40");
    ASSERT_EQ(spec_resolve("#3", fds, 4, out, sizeof(out)), 0);
    assert_string_equal(out, "40");
    ASSERT_EQ(spec_resolve("", fds, 4, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* An index beyond what was received, or none at all, is refused. */
    ASSERT_EQ(spec_resolve("a=#4", fds, 4, out, sizeof(out)), -1);
    ASSERT_EQ(spec_resolve("a=#", fds, 4, out, sizeof(out)), -1);
    ASSERT_EQ(spec_resolve("a=#-1", fds, 4, out, sizeof(out)), -1);
    /* Too long for the room given. */
    ASSERT_EQ(spec_resolve("127.0.0.1:80=#0", fds, 4, out, 8), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
