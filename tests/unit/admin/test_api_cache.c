/* The admin API's cache routes (admin/api_cache.c): the key= parameter as a purge reads it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert_eq.h"
#include "admin/api_cache.c"

static int param(const char *q, char *out, size_t cap)
{
    return query_param(q, strlen(q), "key", out, cap);
}

static void test_query_param(void **state)
{
    (void)state;
    char out[64];
    ASSERT_EQ(param("key=httpapp%2Fa%3Fx%3D1", out, sizeof(out)), 13);
    assert_string_equal(out, "httpapp/a?x=1");
    ASSERT_EQ(param("a=1&key=p*&key=second", out, sizeof(out)), 2);
    assert_string_equal(out, "p*");
    ASSERT_EQ(param("key=a+b%20c", out, sizeof(out)), 5);
    assert_string_equal(out, "a b c");
    ASSERT_EQ(param("key=", out, sizeof(out)), 0);
    ASSERT_EQ(param("keys=1&xkey=2", out, sizeof(out)), -1);
    ASSERT_EQ(param("", out, sizeof(out)), -1);
    ASSERT_EQ(param("key=%4", out, sizeof(out)), -2);
    ASSERT_EQ(param("key=%zz", out, sizeof(out)), -2);
    ASSERT_EQ(param("key=0123456789", out, 10), -2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_param),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
