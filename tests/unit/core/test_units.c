/* nginx's number, size and time syntax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/units.c"

static void test_time(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bare, ms;
    } ok[] = {
        {"30s", 1000, 30000}, {"500ms", 1000, 500}, {"1m30s", 1000, 90000},
        {"2h", 1000, 7200000}, {"1d", 1000, 86400000}, {"1w", 1000, 604800000},
        {"5", 1000, 5000},    {"5", 1, 5},          {"1m30", 1000, 90000},
        {"1s500", 1, 1500},   {"0", 1000, 0},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 0;
        assert_int_equal(bl_parse_time_ms(ok[i].text, ok[i].bare, UINT64_MAX / 2, &v), BL_OK);
        assert_int_equal(v, ok[i].ms);
    }
    static const char *const bad[] = {"", "s", "10x", "-5", "1.5s", "5 s", "ms"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        assert_int_equal(bl_parse_time_ms(bad[i], 1000, UINT64_MAX / 2, &v), BL_ERR);
        assert_int_equal(v, 7);
    }
    uint64_t v;
    assert_int_equal(bl_parse_time_ms("2d", 1000, 86400000, &v), BL_ERR); /* over max */
    assert_int_equal(bl_parse_time_ms("99999999999999999999s", 1000, UINT64_MAX / 2, &v),
                     BL_ERR);
}

static void test_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(bl_parse_size("1024", &v), BL_OK);
    assert_int_equal(v, 1024);
    assert_int_equal(bl_parse_size("8k", &v), BL_OK);
    assert_int_equal(v, 8192);
    assert_int_equal(bl_parse_size("1M", &v), BL_OK);
    assert_int_equal(v, 1048576);
    assert_int_equal(bl_parse_size("2g", &v), BL_OK);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(bl_parse_size("1t", &v), BL_ERR);
    assert_int_equal(bl_parse_size("k", &v), BL_ERR);
    assert_int_equal(bl_parse_size("10kb", &v), BL_ERR);
    assert_int_equal(bl_parse_size("2000g", &v), BL_ERR); /* over 1 TiB */
}

static void test_uint(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(bl_parse_uint("42", 1, 100, 0, &v), BL_OK);
    assert_int_equal(v, 42);
    assert_int_equal(bl_parse_uint("10%", 0, 100, 1, &v), BL_OK);
    assert_int_equal(v, 10);
    assert_int_equal(bl_parse_uint("10%", 0, 100, 0, &v), BL_ERR);
    assert_int_equal(bl_parse_uint("0", 1, 100, 0, &v), BL_ERR);
    assert_int_equal(bl_parse_uint("101", 1, 100, 0, &v), BL_ERR);
    assert_int_equal(bl_parse_uint("-1", 0, 100, 0, &v), BL_ERR);
    assert_int_equal(bl_parse_uint("", 0, 100, 0, &v), BL_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_uint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
