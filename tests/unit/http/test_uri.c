/* Path normalization for location matching, and escaping for rebuilt targets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/uri.c"

static void expect_norm(const char *in, const char *want)
{
    char out[256];
    size_t n = 0;
    int rc = bl_uri_normalize(in, strlen(in), out, &n);
    if (!want) {
        assert_int_equal(rc, BL_ERR);
        return;
    }
    assert_int_equal(rc, BL_OK);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_normalize(void **state)
{
    (void)state;
    expect_norm("/", "/");
    expect_norm("/a/b", "/a/b");
    expect_norm("/%61dmin/", "/admin/");
    expect_norm("//admin//x", "/admin/x");
    expect_norm("/x/../admin/", "/admin/");
    expect_norm("/x/%2e%2e/admin", "/admin");
    expect_norm("/a/./b/.", "/a/b/");
    expect_norm("/a/b/..", "/a/");
    expect_norm("/a/%2Fb", "/a/b");
    expect_norm("/a%20b", "/a b");
    expect_norm("/.hidden", "/.hidden");
    expect_norm("/a/..b", "/a/..b");
    expect_norm("/..", NULL);
    expect_norm("/a/../..", NULL);
    expect_norm("/%2e%2e/etc", NULL);
    expect_norm("/a%", NULL);
    expect_norm("/a%4", NULL);
    expect_norm("/a%zz", NULL);
    expect_norm("/a%00b", NULL);
}

static void test_needs(void **state)
{
    (void)state;
    assert_int_equal(bl_uri_needs_normalize("/a/b.html", 9), 0);
    assert_int_equal(bl_uri_needs_normalize("/a//b", 5), 1);
    assert_int_equal(bl_uri_needs_normalize("/a/./b", 6), 1);
    assert_int_equal(bl_uri_needs_normalize("/a%20", 5), 1);
    /* every path the cheap check calls normal is its own normal form */
    const char *normal[] = {"/", "/index.html", "/a/b/c", "/a.b/c.d", "/a-b_c~d"};
    for (size_t i = 0; i < sizeof(normal) / sizeof(normal[0]); i++) {
        char out[64];
        size_t n;
        assert_int_equal(bl_uri_needs_normalize(normal[i], strlen(normal[i])), 0);
        assert_int_equal(bl_uri_normalize(normal[i], strlen(normal[i]), out, &n), BL_OK);
        assert_int_equal(n, strlen(normal[i]));
        assert_memory_equal(out, normal[i], n);
    }
}

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    size_t n = bl_uri_escape("/a b/%?#\x01\xc3\xa9~", 12, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "/a%20b/%25%3F%23%01%C3%A9~");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_needs),
        cmocka_unit_test(test_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
