/* Template variables that routing supplies: regex captures $0..$9 ("$1x" is capture 1 then
 * "x", as in nginx), the config's own names (set variables, named captures) through the
 * user_var hook, and $args/$is_args/$arg_NAME after a rewrite replaced the arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/regex.h"
#include "http/h1_parser.h"
#include "http/template.h"

static char *names_arr[] = {"who", "id"};
static const struct bl_var_names NAMES = {names_arr, 2};

static const char *user_var(const struct bl_var_ctx *ctx, uint32_t idx, const char *name,
                            size_t name_len, size_t *len)
{
    (void)ctx;
    if (idx == 0 && name_len == 3 && memcmp(name, "who", 3) == 0) {
        *len = 3;
        return "ann";
    }
    return NULL; /* unset: empty */
}

static void assert_eval(const struct bl_var_ctx *ctx, const char *text, const char *want)
{
    char err[256] = "", out[256];
    struct bl_template *t = bl_template_compile_vars(text, &NAMES, err, sizeof(err));
    if (!t)
        fail_msg("\"%s\" did not compile: %s", text, err);
    size_t n = bl_template_eval(t, ctx, out, sizeof(out) - 1);
    bl_template_free(t);
    out[n] = 0;
    if (strcmp(out, want) != 0)
        fail_msg("\"%s\": want \"%s\", got \"%s\"", text, want, out);
}

static void test_captures(void **state)
{
    (void)state;
    char err[256];
    struct bl_regex *re = bl_regex_compile("^/u/(\\d+)/(\\w+)?", 0, err, sizeof(err));
    assert_non_null(re);
    struct bl_captures cap = {0};
    const char *subject = "/u/42/posts";
    int n = bl_regex_exec(re, subject, strlen(subject), cap.ovec, BL_REGEX_MAX_PAIRS);
    assert_int_equal(n, 3);
    cap.re = re;
    cap.subject = subject;
    cap.npairs = (uint32_t)n;
    struct bl_var_ctx ctx = {.cap = &cap, .fd = -1};
    assert_eval(&ctx, "$1", "42");
    assert_eval(&ctx, "$1x$2", "42xposts");
    assert_eval(&ctx, "${2}", "posts");
    assert_eval(&ctx, "$0", "/u/42/posts");
    assert_eval(&ctx, "[$3][$9]", "[][]");              /* groups the regex lacks: empty */
    struct bl_var_ctx none = {.fd = -1};
    assert_eval(&none, "[$1]", "[]");                   /* nothing matched yet */
    bl_regex_free(re);
}

static void test_user_names(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = {.user_var = user_var, .fd = -1};
    assert_eval(&ctx, "$who-$id", "ann-");
    assert_eval(&ctx, "${who}s", "anns");
    char err[256] = "";
    /* without the config's names, they are unknown */
    assert_null(bl_template_compile("$who", err, sizeof(err)));
    assert_string_equal(err, "unknown \"who\" variable");
}

static void test_rewritten_args(void **state)
{
    (void)state;
    static const char raw[] = "GET /p?a=1 HTTP/1.1\r\nHost: h\r\n\r\n";
    struct bl_h1_parser p;
    struct bl_h1_message m;
    struct bl_h1_header fields[8];
    bl_h1_message_init(&m, fields, 8);
    bl_h1_parser_init_request(&p, 8192, 65536);
    assert_true(bl_h1_parse(&p, raw, strlen(raw), &m) > 0);
    struct bl_var_ctx ctx = {.req = &m, .fd = -1};
    assert_eval(&ctx, "$args|$is_args|$arg_a", "a=1|?|1");
    ctx.args_set = 1;
    ctx.args = "b=2&a=9";
    ctx.args_len = 7;
    assert_eval(&ctx, "$args|$is_args|$arg_a|$arg_b", "b=2&a=9|?|9|2");
    ctx.args_len = 0;                                   /* rewrite ... ?: dropped */
    assert_eval(&ctx, "[$args|$is_args]", "[|]");
}

static void test_regex_errors(void **state)
{
    (void)state;
    char err[256];
    assert_null(bl_regex_compile("a(b", 0, err, sizeof(err)));
    assert_string_equal(err, "pcre2_compile() failed: missing closing parenthesis in \"a(b\" "
                             "(offset 3)");
    assert_null(bl_regex_compile("a)b", 0, err, sizeof(err)));
    assert_string_equal(err, "pcre2_compile() failed: unmatched closing parenthesis in \"a)b\" "
                             "at \")b\" (offset 1)");
    struct bl_regex *re = bl_regex_compile("\\.CSS$", 1, err, sizeof(err));
    uint32_t ovec[2 * BL_REGEX_MAX_PAIRS];
    assert_int_equal(bl_regex_exec(re, "/a.css", 6, ovec, BL_REGEX_MAX_PAIRS), 1);
    assert_int_equal(bl_regex_exec(re, "/a.cs", 5, ovec, BL_REGEX_MAX_PAIRS), 0);
    bl_regex_free(re);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_captures),
        cmocka_unit_test(test_user_names),
        cmocka_unit_test(test_rewritten_args),
        cmocka_unit_test(test_regex_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
