/* Directory listings (http/autoindex.c): nginx's size column, the escapes that keep a name
 * from opening a tag or leaving an href, and a body that comes out the same whatever the
 * buffer it is written through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assert_eq.h"
#include "http/autoindex.c"

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        int64_t len;
        const char *out;
    } cases[] = {
        {0, "      0"},         {9999, "   9999"},       {10000, "    10K"},
        {10751, "    10K"},     {10752, "    11K"},      {1048575, "  1024K"},
        {1048576, "     1M"},   {1572864, "     2M"},    {1572863, "     1M"},
        {1073741824, "     1G"}, {5368709119, "     5G"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[32];
        out[human_size(out, cases[i].len)] = '\0';
        assert_string_equal(out, cases[i].out);
    }
}

static void test_escapes(void **state)
{
    (void)state;
    char out[256];
    out[uri_escape(out, "a-b_c.d~e f%<>\"'()/:?#\xc3\xbc", 24)] = '\0';
    assert_string_equal(out, "a-b_c.d~e%20f%25%3C%3E%22%27%28%29%2F%3A%3F%23%C3%BC");
    out[html_escape(out, "<b a=\"1\">&'", 11)] = '\0';
    assert_string_equal(out, "&lt;b a=&quot;1&quot;&gt;&amp;'");
    out[json_escape(out, "q\"\\\n\x01z", 6)] = '\0';
    assert_string_equal(out, "q\\\"\\\\\\u000A\\u0001z");
}

static void test_fill_any_buffer(void **state)
{
    (void)state;
    char dir[] = "/tmp/bl-test-autoindex-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[512];
    for (int i = 0; i < 40; i++) {
        snprintf(p, sizeof(p), "%s/%s%02d<&>", dir, i % 3 ? "f" : "D", i);
        if (i % 3 == 0)
            assert_int_equal(mkdir(p, 0755), 0);
        else
            close(open(p, O_CREAT | O_WRONLY, 0644));
    }
    for (int json = 0; json < 2; json++) {
        char *whole = NULL;
        size_t wlen = 0;
        for (size_t cap = 1; cap < 3000; cap = cap < 20 ? cap + 1 : cap * 3) {
            struct bl_autoindex *a =
                bl_autoindex_open(open(dir, O_RDONLY | O_DIRECTORY), "/x/<y>/", 7, json, 1, 0);
            assert_non_null(a);
            size_t len = (size_t)bl_autoindex_length(a);
            char *body = malloc(len + cap), *at = body;
            size_t n;
            while ((n = bl_autoindex_fill(a, at, cap)) > 0) {
                assert_true(n <= cap);
                at += n;
                assert_true((size_t)(at - body) <= len);
            }
            ASSERT_EQ((long long)(at - body), (long long)len);
            if (!whole) {
                whole = body;
                wlen = len;
            } else {
                assert_int_equal(len, wlen);
                assert_memory_equal(body, whole, len);
                free(body);
            }
            bl_autoindex_free(a);
        }
        /* directories first, each kind by name; no name leaves its escaping */
        char *d = strstr(whole, "D39"), *f = strstr(whole, "f01");
        assert_true(d && f && d < f);
        if (!json)
            assert_null(strstr(whole, "<&>"));
        free(whole);
    }
    snprintf(p, sizeof(p), "rm -rf %s", dir);
    assert_int_equal(system(p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_fill_any_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
