/* Cache-Control and HTTP-date parsing (cache/cache_control.h): directives, values, quoting,
 * repeats, junk; the three date forms and what is not a date; every input also cut at every
 * byte (a prefix must parse without reading past it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "assert_eq.h"
#include "cache/cache_control.c"

static struct bl_cc cc_of(const char *s)
{
    struct bl_cc cc = {0};
    bl_cc_parse(&cc, s, strlen(s));
    return cc;
}

static void test_directives(void **state)
{
    (void)state;
    struct bl_cc c = cc_of("max-age=60, s-maxage=30, public");
    assert_int_equal(c.flags, BL_CC_MAX_AGE | BL_CC_S_MAXAGE | BL_CC_PUBLIC);
    assert_int_equal(c.max_age, 60);
    assert_int_equal(c.s_maxage, 30);
    c = cc_of("no-store");
    assert_int_equal(c.flags, BL_CC_NO_STORE);
    c = cc_of("NO-CACHE, Private, MUST-revalidate, proxy-revalidate");
    assert_int_equal(c.flags, BL_CC_NO_CACHE | BL_CC_PRIVATE | BL_CC_MUST_REVALIDATE |
                                  BL_CC_PROXY_REVALIDATE);
    c = cc_of("no-cache=\"Set-Cookie, X-Foo\", max-age=5");
    assert_int_equal(c.flags, BL_CC_NO_CACHE | BL_CC_MAX_AGE);
    assert_int_equal(c.max_age, 5);
    c = cc_of("private=\"a,b\",max-age=\"7\"");
    assert_int_equal(c.flags, BL_CC_PRIVATE | BL_CC_MAX_AGE);
    assert_int_equal(c.max_age, 7);
    c = cc_of("stale-while-revalidate=30, stale-if-error=600, max-age=1");
    assert_int_equal(c.swr, 30);
    assert_int_equal(c.sie, 600);
    assert_true(c.flags & BL_CC_SWR && c.flags & BL_CC_SIE);
}

static void test_values(void **state)
{
    (void)state;
    struct bl_cc c = cc_of("max-age=abc");
    assert_int_equal(c.flags, BL_CC_INVALID);
    c = cc_of("max-age");
    assert_int_equal(c.flags, BL_CC_INVALID);
    c = cc_of("max-age=99999999999999999999");
    assert_int_equal(c.flags, BL_CC_MAX_AGE);
    assert_int_equal(c.max_age, 2147483648u); /* RFC 9111 1.2.2 */
    c = cc_of("max-age=10, max-age=20"); /* the first counts */
    assert_int_equal(c.max_age, 10);
    c = cc_of(" , ,max-age = 3 ,, x-ext=\"q,\\\"r\", public");
    assert_int_equal(c.flags, BL_CC_MAX_AGE | BL_CC_PUBLIC);
    assert_int_equal(c.max_age, 3);
    c = cc_of("");
    assert_int_equal(c.flags, 0);
    c = cc_of("max-age=\"");
    assert_int_equal(c.flags, BL_CC_INVALID);
    /* two fields accumulate */
    struct bl_cc two = {0};
    bl_cc_parse(&two, "public", 6);
    bl_cc_parse(&two, "max-age=9", 9);
    assert_int_equal(two.flags, BL_CC_PUBLIC | BL_CC_MAX_AGE);
    assert_int_equal(two.max_age, 9);
}

static void test_every_prefix(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "max-age=60, s-maxage=30, public", "no-cache=\"Set-Cookie, X\", max-age=5",
        "x=\"\\\"\\\\\", stale-if-error=600", "private=\"a,b\",max-age=\"7\"",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t len = strlen(inputs[i]);
        for (size_t cut = 0; cut <= len; cut++) {
            /* a heap copy of exactly cut bytes: ASan sees any read past it */
            char *p = malloc(cut ? cut : 1);
            assert_non_null(p);
            memcpy(p, inputs[i], cut);
            struct bl_cc c = {0};
            bl_cc_parse(&c, p, cut);
            free(p);
        }
    }
}

static void test_dates(void **state)
{
    (void)state;
    const int64_t t = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    ASSERT_EQ(bl_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29), t);
    ASSERT_EQ(bl_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", 30), t);
    ASSERT_EQ(bl_http_date_parse("Sun Nov  6 08:49:37 1994", 24), t);
    ASSERT_EQ(bl_http_date_parse(" Sun, 06 Nov 1994 08:49:37 GMT ", 31), t);
    ASSERT_EQ(bl_http_date_parse("Sun, 06 Nov 1994 08:49:37 UTC", 29), -1);
    ASSERT_EQ(bl_http_date_parse("Sun, 06 Xyz 1994 08:49:37 GMT", 29), -1);
    ASSERT_EQ(bl_http_date_parse("0", 1), -1);
    ASSERT_EQ(bl_http_date_parse("Sun, 06 Nov 1994 25:49:37 GMT", 29), -1);
    ASSERT_EQ(bl_http_date_parse("", 0), -1);
    char out[29];
    bl_http_date_format(t, out);
    assert_memory_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT", 29);
    ASSERT_EQ(bl_cc_delta(" 42 ", 4), 42);
    ASSERT_EQ(bl_cc_delta("4 2", 3), -1);
    ASSERT_EQ(bl_cc_delta("-1", 2), -1);
}

static void test_heuristic_status(void **state)
{
    (void)state;
    assert_true(bl_cc_heuristic_status(200));
    assert_true(bl_cc_heuristic_status(404));
    assert_true(bl_cc_heuristic_status(308));
    assert_false(bl_cc_heuristic_status(302));
    assert_false(bl_cc_heuristic_status(500));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directives),     cmocka_unit_test(test_values),
        cmocka_unit_test(test_every_prefix),   cmocka_unit_test(test_dates),
        cmocka_unit_test(test_heuristic_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
