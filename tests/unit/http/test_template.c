/* Variable templates: every variable's value against a parsed request, ${name} delimiting,
 * values copied as they are (no escaping), compile errors, and lengths: eval always returns
 * the full length and never writes past cap, so a caller can size a buffer and call again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/template.c"

static struct bl_h1_message msg;

/* Parses raw as a request head; the context a worker would build for a client 192.0.2.7:51000
 * on port 8080. */
static struct bl_var_ctx ctx_for(const char *raw)
{
    struct bl_h1_parser p;
    bl_h1_parser_init_request(&p, 8192, 65536);
    static struct bl_h1_header fields[BL_H1_MAX_HEADERS];
    bl_h1_message_init(&msg, fields, BL_H1_MAX_HEADERS);
    int r = bl_h1_parse(&p, raw, strlen(raw), &msg);
    if (r <= 0)
        fail_msg("request did not parse (%d): %s", r, raw);
    return (struct bl_var_ctx){.req = &msg, .client_ip = "192.0.2.7", .client_ip_len = 9,
                               .client_port = 51000, .server_port = 8080, .fd = -1};
}

static struct bl_template *compile_ok(const char *text)
{
    char err[256] = "";
    struct bl_template *t = bl_template_compile(text, err, sizeof(err));
    if (!t)
        fail_msg("\"%s\" did not compile: %s", text, err);
    return t;
}

/* Evaluates text against ctx and checks the value and that the returned length matches it. */
static void assert_eval(const struct bl_var_ctx *ctx, const char *text, const char *want)
{
    struct bl_template *t = compile_ok(text);
    char out[1024];
    size_t n = bl_template_eval(t, ctx, out, sizeof(out));
    bl_template_free(t);
    if (n >= sizeof(out))
        fail_msg("\"%s\": value of %zu bytes does not fit the test buffer", text, n);
    out[n] = 0;
    if (strcmp(out, want) != 0)
        fail_msg("\"%s\": want \"%s\", got \"%s\"", text, want, out);
}

static void assert_compile_error(const char *text, const char *want)
{
    char err[256] = "";
    struct bl_template *t = bl_template_compile(text, err, sizeof(err));
    if (t) {
        bl_template_free(t);
        fail_msg("\"%s\" compiled; want error \"%s\"", text, want);
    }
    if (!strstr(err, want))
        fail_msg("\"%s\": want error \"%s\", got \"%s\"", text, want, err);
}

static const char *REQ =
    "POST /a/b%20c?id=42&Name=x&empty=&id=43 HTTP/1.1\r\n"
    "Host: Example.COM:8443\r\n"
    "User-Agent: test/1.0\r\n"
    "X-Forwarded-For: 198.51.100.1\r\n"
    "x-forwarded-for: 198.51.100.2, 198.51.100.3\r\n"
    "X-Custom-Header: one\r\n"
    "X-Quoted: a \"b\" \\c $host\r\n"
    "Cookie: theme=dark; session=s3cr3t;lang=en\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

static void test_constant_and_text(void **state)
{
    (void)state;
    struct bl_template *t = compile_ok("plain text, no variables");
    size_t len;
    assert_true(bl_template_is_constant(t));
    assert_string_equal(bl_template_text(t, &len), "plain text, no variables");
    assert_int_equal(len, strlen("plain text, no variables"));
    bl_template_free(t);
    t = compile_ok("x-$host");
    assert_false(bl_template_is_constant(t));
    assert_string_equal(bl_template_text(t, &len), "x-$host");   /* as written */
    bl_template_free(t);
    struct bl_var_ctx ctx = ctx_for(REQ);
    assert_eval(&ctx, "", "");
}

static void test_request_variables(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    assert_eval(&ctx, "$host", "example.com");          /* lowercase, no port */
    assert_eval(&ctx, "$http_host", "Example.COM:8443");
    assert_eval(&ctx, "$request_method", "POST");
    assert_eval(&ctx, "$request_uri", "/a/b%20c?id=42&Name=x&empty=&id=43");
    assert_eval(&ctx, "$uri", "/a/b%20c");              /* no normalized uri given: as sent */
    assert_eval(&ctx, "$document_uri", "/a/b%20c");
    assert_eval(&ctx, "$args", "id=42&Name=x&empty=&id=43");
    assert_eval(&ctx, "$query_string", "id=42&Name=x&empty=&id=43");
    assert_eval(&ctx, "$is_args", "?");
    assert_eval(&ctx, "$request", "POST /a/b%20c?id=42&Name=x&empty=&id=43 HTTP/1.1");
    assert_eval(&ctx, "$server_protocol", "HTTP/1.1");
    assert_eval(&ctx, "$scheme", "http");
    assert_eval(&ctx, "$remote_addr", "192.0.2.7");
    assert_eval(&ctx, "$remote_port", "51000");
    assert_eval(&ctx, "$server_port", "8080");
    assert_eval(&ctx, "$server_addr", "");             /* no socket to ask */
    ctx.uri = "/a/b c";
    ctx.uri_len = 6;
    assert_eval(&ctx, "$uri", "/a/b c");                /* the normalized path when given */
}

static void test_named_variables(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    assert_eval(&ctx, "$http_user_agent", "test/1.0");
    assert_eval(&ctx, "$http_X_CUSTOM_HEADER", "one");   /* '_' is '-', any case */
    assert_eval(&ctx, "$http_x_forwarded_for", "198.51.100.1");   /* the first one */
    assert_eval(&ctx, "$http_x_missing", "");
    assert_eval(&ctx, "$arg_id", "42");                 /* the first one */
    assert_eval(&ctx, "$arg_name", "x");                /* names match in any case */
    assert_eval(&ctx, "$arg_empty", "");
    assert_eval(&ctx, "$arg_nosuch", "");
    assert_eval(&ctx, "$arg_i", "");                    /* no prefix matches */
    assert_eval(&ctx, "$cookie_session", "s3cr3t");
    assert_eval(&ctx, "$cookie_lang", "en");            /* no space after ';' */
    assert_eval(&ctx, "$cookie_theme", "dark");
    assert_eval(&ctx, "$cookie_nosuch", "");
}

static void test_forwarded_for(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    /* every X-Forwarded-For field, in order, then the client */
    assert_eval(&ctx, "$proxy_add_x_forwarded_for",
                "198.51.100.1, 198.51.100.2, 198.51.100.3, 192.0.2.7");
    ctx = ctx_for("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eval(&ctx, "$proxy_add_x_forwarded_for", "192.0.2.7");
    assert_eval(&ctx, "$args|$is_args|$arg_id", "||");  /* no query at all */
}

static void test_absolute_form_and_http10(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for("GET http://Other.Example:81/p?q=1 HTTP/1.0\r\n\r\n");
    assert_eval(&ctx, "$host", "other.example");
    assert_eval(&ctx, "$request_uri", "/p?q=1");
    assert_eval(&ctx, "$uri", "/p");
    assert_eval(&ctx, "$server_protocol", "HTTP/1.0");
    assert_eval(&ctx, "$request", "GET http://Other.Example:81/p?q=1 HTTP/1.0");
    ctx = ctx_for("GET / HTTP/1.1\r\nHost: [2001:DB8::1]:8080\r\n\r\n");
    assert_eval(&ctx, "$host", "[2001:db8::1]");
}

static void test_braces_and_concatenation(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    assert_eval(&ctx, "${arg_id}x", "42x");             /* braces end the name */
    assert_eval(&ctx, "$arg_id.x", "42.x");             /* so does any non-name byte */
    assert_eval(&ctx, "$arg_idx", "");                  /* without them: arg "idx" */
    assert_eval(&ctx, "$host$request_uri", "example.com/a/b%20c?id=42&Name=x&empty=&id=43");
    assert_eval(&ctx, "pre-${host}-post", "pre-example.com-post");
    assert_eval(&ctx, "\"$remote_addr\" [$remote_port]", "\"192.0.2.7\" [51000]");
}

static void test_values_not_escaped(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    /* a value is copied byte for byte: quotes, backslashes and a '$' are not interpreted */
    assert_eval(&ctx, "[$http_x_quoted]", "[a \"b\" \\c $host]");
}

static void test_compile_errors(void **state)
{
    (void)state;
    assert_compile_error("$nosuch", "unknown \"nosuch\" variable");
    assert_compile_error("a $http_", "unknown \"http_\" variable");   /* no NAME */
    assert_compile_error("$", "invalid variable name");
    assert_compile_error("x$ y", "invalid variable name");
    assert_compile_error("${}", "invalid variable name");
    assert_compile_error("${host", "the closing bracket in \"host\" variable is missing");
    assert_compile_error("${host x}", "the closing bracket in \"host\" variable is missing");
}

static void test_lengths_and_truncation(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    struct bl_template *t = compile_ok("id=$arg_id host=$host");
    const char *full = "id=42 host=example.com";
    size_t want = strlen(full);
    /* no room at all: nothing written, the full length returned */
    assert_int_equal(bl_template_eval(t, &ctx, NULL, 0), want);
    /* every cap: the first cap bytes, nothing past them, the full length returned */
    for (size_t cap = 1; cap <= want + 2; cap++) {
        char out[64];
        memset(out, '#', sizeof(out));
        assert_int_equal(bl_template_eval(t, &ctx, out, cap), want);
        size_t wrote = cap < want ? cap : want;
        if (memcmp(out, full, wrote) != 0)
            fail_msg("cap %zu: want \"%.*s\", got \"%.*s\"", cap, (int)wrote, full, (int)wrote,
                     out);
        for (size_t k = wrote; k < sizeof(out); k++)
            if (out[k] != '#')
                fail_msg("cap %zu: byte %zu written past the value", cap, k);
    }
    bl_template_free(t);
}

static void test_generated_values(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    char hn[256];
    assert_int_equal(gethostname(hn, sizeof(hn)), 0);
    hn[sizeof(hn) - 1] = 0;
    assert_eval(&ctx, "$hostname", hn);
    /* $msec: seconds.milliseconds of wall time */
    struct bl_template *t = compile_ok("$msec");
    char out[64];
    size_t n = bl_template_eval(t, &ctx, out, sizeof(out) - 1);
    out[n] = 0;
    bl_template_free(t);
    unsigned long long sec = 0;
    unsigned ms = 0;
    int used = 0;
    assert_int_equal(sscanf(out, "%llu.%3u%n", &sec, &ms, &used), 2);
    assert_int_equal(used, (int)n);
    assert_int_equal(n - (size_t)(strchr(out, '.') - out), 4);   /* three digits after '.' */
    uint64_t now = bl_wall_us() / 1000000;
    assert_true(sec + 2 >= now && sec <= now);
}


/* Evaluates text with escaping esc and checks the bytes (n of them: values may hold NULs). */
static void assert_esc(const struct bl_var_ctx *ctx, enum bl_escape esc, const char *text,
                       const char *want)
{
    struct bl_template *t = compile_ok(text);
    char out[2048];
    size_t n = bl_template_eval_esc(t, ctx, esc, out, sizeof(out));
    bl_template_free(t);
    if (n >= sizeof(out))
        fail_msg("\"%s\": value of %zu bytes does not fit the test buffer", text, n);
    out[n] = 0;
    if (strlen(want) != n || memcmp(out, want, n) != 0)
        fail_msg("\"%s\" (escape %d): want \"%s\", got \"%s\"", text, (int)esc, want, out);
}

/* nginx's escapes, byte by byte: every byte value through each mode. */
static void test_escape_every_byte(void **state)
{
    (void)state;
    for (int ch = 0; ch < 256; ch++) {
        char in = (char)ch, out[8], want[8];
        size_t n = bl_escape(BL_ESC_DEFAULT, &in, 1, out, sizeof(out));
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            snprintf(want, sizeof(want), "\\x%02X", ch);
        else
            snprintf(want, sizeof(want), "%c", ch);
        if (n != strlen(want) || memcmp(out, want, n) != 0)
            fail_msg("default, byte 0x%02x: want \"%s\", got \"%.*s\"", ch, want, (int)n, out);

        n = bl_escape(BL_ESC_JSON, &in, 1, out, sizeof(out));
        switch (ch) {
        case '"': strcpy(want, "\\\""); break;
        case '\\': strcpy(want, "\\\\"); break;
        case '\n': strcpy(want, "\\n"); break;
        case '\r': strcpy(want, "\\r"); break;
        case '\t': strcpy(want, "\\t"); break;
        case '\b': strcpy(want, "\\b"); break;
        case '\f': strcpy(want, "\\f"); break;
        default:
            if (ch < 0x20)
                snprintf(want, sizeof(want), "\\u00%02X", ch);
            else {
                want[0] = (char)ch;
                want[1] = 0;
            }
        }
        size_t wl = ch == 0 ? 6 : strlen(want);
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            wl = 1;
        if (n != wl || memcmp(out, want, n) != 0)
            fail_msg("json, byte 0x%02x: want \"%s\", got \"%.*s\"", ch, want, (int)n, out);

        n = bl_escape(BL_ESC_NONE, &in, 1, out, sizeof(out));
        assert_int_equal(n, 1);
        assert_int_equal((unsigned char)out[0], ch);
    }
    /* a run of plain bytes around escapes, and the bound: never past cap, full length back */
    char out[16];
    memset(out, '#', sizeof(out));
    assert_int_equal(bl_escape(BL_ESC_DEFAULT, "ab\"cd", 5, out, 4), 8);
    assert_memory_equal(out, "ab\\x", 4);
    assert_int_equal(out[4], '#');
}

/* Values are scanned eight bytes at a time: each byte value at each place of a longer value,
 * next to each other byte, gives what escaping byte by byte gives. */
static void test_escape_long_values(void **state)
{
    (void)state;
    const enum bl_escape modes[] = {BL_ESC_DEFAULT, BL_ESC_JSON};
    for (size_t m = 0; m < 2; m++) {
        for (int ch = 0; ch < 256; ch++) {
            for (size_t at = 0; at < 19; at++) {
                char in[19], want[19 * 6 + 1], got[19 * 6 + 1];
                for (size_t k = 0; k < sizeof(in); k++)
                    in[k] = (char)('a' + k);
                in[at] = (char)ch;
                in[(at + 9) % sizeof(in)] = (char)(0xff - ch); /* a second byte, a word on */
                size_t wn = 0;
                for (size_t k = 0; k < sizeof(in); k++)
                    wn += bl_escape(modes[m], &in[k], 1, want + wn, sizeof(want) - wn);
                size_t gn = bl_escape(modes[m], in, sizeof(in), got, sizeof(got));
                if (gn != wn || memcmp(got, want, wn) != 0)
                    fail_msg("mode %d, byte 0x%02x at %zu: want \"%.*s\", got \"%.*s\"",
                             (int)modes[m], ch, at, (int)wn, want, (int)gn, got);
            }
        }
    }
}

static const char *HOSTILE =
    "GET /p\"q\\r?a=%22&b=\xc3\xa9\xff HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "User-Agent: ua \"x\" \\ \xf0\x9f\x98\x80 \xff\tend\r\n"
    "Authorization: Basic dSJcAR9cbn9lcjpwYXNz\r\n"
    "\r\n";

static void test_log_escaping_of_values(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(HOSTILE);
    /* literal text is never escaped; values are */
    assert_esc(&ctx, BL_ESC_DEFAULT, "\"$request\" \\ $http_user_agent",
               "\"GET /p\\x22q\\x5Cr?a=%22&b=\\xC3\\xA9\\xFF HTTP/1.1\" \\ "
               "ua \\x22x\\x22 \\x5C \\xF0\\x9F\\x98\\x80 \\xFF\\x09end");
    assert_esc(&ctx, BL_ESC_JSON, "{\"ua\":\"$http_user_agent\"}",
               "{\"ua\":\"ua \\\"x\\\" \\\\ \xf0\x9f\x98\x80 \xff\\tend\"}");
    assert_esc(&ctx, BL_ESC_NONE, "$http_user_agent", "ua \"x\" \\ \xf0\x9f\x98\x80 \xff\tend");
    /* $remote_user: "u\"\\\x01\x1f\\n\x7f" + "er" decoded from Basic credentials */
    assert_esc(&ctx, BL_ESC_DEFAULT, "$remote_user", "u\\x22\\x5C\\x01\\x1F\\x5Cn\\x7Fer");
    assert_esc(&ctx, BL_ESC_JSON, "$remote_user", "u\\\"\\\\\\u0001\\u001F\\\\n\x7f" "er");
    assert_eval(&ctx, "$remote_user", "u\"\\\x01\x1f\\n\x7f" "er");
}

/* nginx's "not found": "-" with escape=default, nothing with json, none or as is. */
static void test_not_found_values(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for("GET /x HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n");
    const char *text = "[$http_referer|$args|$arg_a|$cookie_c|$remote_user|$upstream_addr|"
                       "$status|$http_x_empty|$is_args|$request_id]";
    assert_esc(&ctx, BL_ESC_DEFAULT, text, "[-|-|-|-|-|-|-|||]");
    assert_esc(&ctx, BL_ESC_JSON, text, "[|||||||||]");
    assert_esc(&ctx, BL_ESC_NONE, text, "[|||||||||]");
    assert_eval(&ctx, text, "[|||||||||]");
    /* Basic credentials nginx refuses: no ':' , empty user, bad base64, another scheme */
    const char *refused[] = {"Basic dXNlcg==", "Basic OnB3", "Basic dX*y", "Bearer dTpw",
                             "Basic "};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char raw[256];
        snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: %s\r\n\r\n",
                 refused[i]);
        ctx = ctx_for(raw);
        assert_esc(&ctx, BL_ESC_DEFAULT, "$remote_user", "-");
    }
    ctx = ctx_for("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: basic   YWxpY2U6c2VjcmV0\r\n\r\n");
    assert_eval(&ctx, "$remote_user", "alice");
    /* a request line that did not parse: $request is the raw line, the rest not found */
    struct bl_var_ctx bad = {.client_ip = "192.0.2.7", .client_ip_len = 9, .fd = -1,
                             .raw_line = "GE\"T /\x01", .raw_line_len = 7};
    struct bl_h1_message none = {0};
    bad.req = &none;
    assert_esc(&bad, BL_ESC_DEFAULT, "$request|$request_method|$uri|$host",
               "GE\\x22T /\\x01|-|-|");
}

static void test_response_variables(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    struct bl_upstream_try tries[3] = {
        {"10.0.0.1:80", BL_TRY_NONE, BL_TRY_NONE, 1500, 502},
        {"10.0.0.2:80", 2000, BL_TRY_NONE, 60000000, 504},
        {"[::1]:8080", 0, 1234567, 2345678, 200},
    };
    struct bl_var_resp resp = {.status = 200, .body_bytes_sent = 1234, .bytes_sent = 1400,
                               .request_length = 321, .request_time_us = 62345999,
                               .tries = tries, .ntries = 3};
    ctx.resp = &resp;
    ctx.request_id = "0123456789abcdef0123456789abcdef";
    ctx.request_id_len = 32;
    assert_eval(&ctx, "$status $body_bytes_sent $bytes_sent $request_length $request_time",
                "200 1234 1400 321 62.345");
    assert_eval(&ctx, "$upstream_addr", "10.0.0.1:80, 10.0.0.2:80, [::1]:8080");
    assert_eval(&ctx, "$upstream_status", "502, 504, 200");
    assert_eval(&ctx, "$upstream_connect_time", "-, 0.002, 0.000");
    assert_eval(&ctx, "$upstream_header_time", "-, -, 1.234");
    assert_eval(&ctx, "$upstream_response_time", "0.001, 60.000, 2.345");
    assert_eval(&ctx, "$request_id", "0123456789abcdef0123456789abcdef");
    ctx.connection_requests = 3;
    ctx.server_name = "www.example.com";
    assert_eval(&ctx, "$connection_requests $server_name", "3 www.example.com");
    resp.ntries = 1;
    tries[0].status = 0;
    assert_esc(&ctx, BL_ESC_DEFAULT, "$upstream_status", "-");
    resp.status = 0;
    assert_eval(&ctx, "$status", "000");
    resp.status = 499;
    assert_eval(&ctx, "$status", "499");
}

static void test_time_variables(void **state)
{
    (void)state;
    struct bl_var_ctx ctx = ctx_for(REQ);
    char out[64];
    struct bl_template *t = compile_ok("$time_local|$time_iso8601|$pid");
    size_t n = bl_template_eval(t, &ctx, out, sizeof(out) - 1);
    bl_template_free(t);
    out[n] = 0;
    int d, y, H, M, S, zh, Y, mo, d2, H2, M2, S2, oh, om, used = 0;
    char mon[4], sign, sign2;
    unsigned pid;
    assert_int_equal(sscanf(out, "%2d/%3s/%4d:%2d:%2d:%2d %c%4d|%4d-%2d-%2dT%2d:%2d:%2d%c%2d:%2d|%u%n",
                            &d, mon, &y, &H, &M, &S, &sign, &zh, &Y, &mo, &d2, &H2, &M2, &S2,
                            &sign2, &oh, &om, &pid, &used), 18);
    assert_int_equal(used, (int)n);
    assert_int_equal(d, d2);
    assert_int_equal(y, Y);
    assert_int_equal(pid, (unsigned)getpid());
    assert_int_equal(sign, sign2);
    assert_int_equal(zh, oh * 100 + om);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_and_text),
        cmocka_unit_test(test_request_variables),
        cmocka_unit_test(test_named_variables),
        cmocka_unit_test(test_forwarded_for),
        cmocka_unit_test(test_absolute_form_and_http10),
        cmocka_unit_test(test_braces_and_concatenation),
        cmocka_unit_test(test_values_not_escaped),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_lengths_and_truncation),
        cmocka_unit_test(test_generated_values),
        cmocka_unit_test(test_escape_every_byte),
        cmocka_unit_test(test_escape_long_values),
        cmocka_unit_test(test_log_escaping_of_values),
        cmocka_unit_test(test_not_found_values),
        cmocka_unit_test(test_response_variables),
        cmocka_unit_test(test_time_variables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
