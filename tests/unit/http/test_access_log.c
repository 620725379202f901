/* Per-worker access log buffering: when a line is written out (the buffer would overflow, the
 * oldest line's flush time, an explicit flush), that the timer is armed for the earliest flush
 * due across logs, and that a line longer than the buffer is written whole, in order. Real
 * config (bl_conf_load_string) and real files; the loop's clock is set by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/loop.h"
#include "http/access_log.c"
#include "http/h1_parser.h"

static char dir[64];

static struct bl_config *load(const char *logs)
{
    char text[2048], err[512] = "";
    snprintf(text, sizeof(text),
             "http {\n log_format uri '$request_uri';\n %s\n"
             " server { listen 127.0.0.1:18080; location / { return 204; } }\n}\n", logs);
    struct bl_config *cfg = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (!cfg)
        fail_msg("config did not load: %s\n%s", err, text);
    return cfg;
}

static size_t file_size(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return (size_t)n;
}

static char *file_text(const char *name)
{
    static char buf[16384];
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return buf;
}

static struct bl_h1_message msg;

/* A context for GET TARGET. */
static struct bl_var_ctx ctx_for(const char *target)
{
    static char raw[8192];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", target);
    struct bl_h1_parser p;
    bl_h1_parser_init_request(&p, 8192, 65536);
    static struct bl_h1_header fields[BL_H1_MAX_HEADERS];
    bl_h1_message_init(&msg, fields, BL_H1_MAX_HEADERS);
    if (bl_h1_parse(&p, raw, strlen(raw), &msg) <= 0)
        fail_msg("request did not parse: %s", raw);
    static struct bl_var_resp resp = {.status = 204};
    return (struct bl_var_ctx){.req = &msg, .client_ip = "127.0.0.1", .client_ip_len = 9,
                               .fd = -1, .resp = &resp};
}

static void test_buffer_and_flush_times(void **state)
{
    (void)state;
    char logs[512];
    snprintf(logs, sizeof(logs),
             "access_log %s/a.log uri buffer=64 flush=2s;\n access_log %s/b.log uri flush=300ms;",
             dir, dir);
    struct bl_config *cfg = load(logs);
    char err[128];
    struct bl_loop *loop = bl_loop_create(err, sizeof(err));
    assert_non_null(loop);
    struct bl_access_logs al;
    assert_int_equal(bl_access_logs_init(&al, loop, cfg), BL_OK);
    const struct bl_access_log *a = cfg->access_logs[0], *b = cfg->access_logs[1];
    assert_int_equal(a->buffer, 64);
    assert_int_equal(a->flush_ms, 2000);
    assert_int_equal(b->buffer, 64 * 1024); /* flush= alone: nginx's 64k */
    assert_int_equal(b->flush_ms, 300);

    bl_clock_ms = 1000;
    struct bl_var_ctx ctx = ctx_for("/0123456789/0123456789"); /* 22 bytes + newline */
    bl_access_log_write(&al, a, &ctx);
    assert_int_equal(al.timer.when, 3000);
    bl_access_log_write(&al, a, &ctx);
    assert_int_equal(file_size("a.log"), 0);
    /* a log due sooner moves the timer earlier */
    bl_clock_ms = 1500;
    bl_access_log_write(&al, b, &ctx);
    assert_int_equal(al.timer.when, 1800);
    /* the third line would pass 64 bytes: the first two go out, it stays */
    bl_access_log_write(&al, a, &ctx);
    assert_int_equal(file_size("a.log"), 46);
    /* b's time: b goes, a (its oldest line now from 1500) waits until 3500 */
    bl_clock_ms = 1800;
    on_flush_timer(&al.timer);
    assert_int_equal(file_size("b.log"), 23);
    assert_int_equal(file_size("a.log"), 46);
    assert_int_equal(al.timer.when, 3500);
    bl_clock_ms = 3500;
    on_flush_timer(&al.timer);
    assert_int_equal(file_size("a.log"), 69);
    assert_false(bl_timer_armed(&al.timer));

    /* longer than the buffer: written whole, after what was pending */
    ctx = ctx_for("/short");
    bl_access_log_write(&al, a, &ctx);
    char longer[200];
    memset(longer, 'x', sizeof(longer));
    longer[0] = '/';
    longer[sizeof(longer) - 1] = 0;
    struct bl_var_ctx lc = ctx_for(longer);
    bl_access_log_write(&al, a, &lc);
    char *text = file_text("a.log");
    assert_int_equal(strlen(text), 69 + 7 + 200);
    assert_memory_equal(text + 69, "/short\n/xxx", 11);
    assert_int_equal(text[strlen(text) - 1], '\n');

    /* flush writes what is pending and disarms */
    ctx = ctx_for("/last");
    bl_access_log_write(&al, b, &ctx);
    bl_access_log_flush(&al);
    assert_int_equal(file_size("b.log"), 23 + 6);
    assert_false(bl_timer_armed(&al.timer));

    bl_access_logs_free(&al);
    bl_loop_destroy(loop);
    bl_conf_release(cfg);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bl-test-access-log-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffer_and_flush_times),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
