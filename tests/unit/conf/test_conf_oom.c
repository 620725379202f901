/* Out of memory while loading a configuration: every allocation of the reader and the compiler
 * in turn is refused, and each time the load returns an error that says so (naming the
 * directive and file:line once the directives are being compiled) instead of exiting or
 * crashing, and a refusal is never swallowed. Run under valgrind or ASan to see that every
 * failure path frees what it built. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Before cmocka.h, whose fail() macro would rename conf.c's. */
#define BL_CONF_ALLOC_TEST
#include "conf/conf.c"
#include "conf/conf_parse.c"

#include <cmocka.h>

long bl_conf_alloc_budget = -1;
int bl_conf_alloc_fail_once;

static char dir[] = "/tmp/bl_conf_oom_XXXXXX";
static char text[4096];

/* Every kind of directive the compiler allocates for, at all three levels. */
static void make_config(void)
{
    assert_non_null(mkdtemp(dir));
    snprintf(text, sizeof(text),
             "worker_processes 2;\nerror_log stderr warn;\npid %s/ballast.pid;\n"
             "events { worker_connections 512; }\n"
             "http {\n"
             " access_log %s/a.log;\n"
             " proxy_set_header X-A $remote_addr;\n"
             " error_page 502 503 /busy.html;\n"
             " upstream app {\n"
             "  server 127.0.0.1:9001 weight=2;\n  server 127.0.0.1:9002 backup;\n"
             "  keepalive 8;\n  check interval=1000 rise=1 fall=2 timeout=500 type=http;\n"
             "  check_http_send \"GET /health HTTP/1.0\\r\\n\\r\\n\";\n"
             "  outlier consecutive_5xx=3;\n  retry_budget 20%% min=2;\n }\n"
             " upstream keyed { hash $request_uri consistent; server 127.0.0.1:9003;"
             " server 127.0.0.1:9004; }\n"
             " server {\n  listen 127.0.0.1:18080 default_server;\n"
             "  server_name example.com *.example.com;\n"
             "  proxy_read_timeout 5s;\n  proxy_set_header X-S 1;\n  access_log %s/b.log;\n"
             "  location / { proxy_pass http://app; proxy_set_header Host $host; }\n"
             "  location = /busy.html { root %s; error_page 404 /x.html; }\n"
             "  location /k/ { proxy_pass http://keyed/v2/; access_log off; }\n"
             "  location /direct { proxy_pass http://127.0.0.1:9005; }\n"
             "  location /r { return 200 \"hi $host\\n\"; }\n"
             " }\n"
             " server { listen 127.0.0.1:18081; return 301 http://example.com/; }\n"
             "}\n",
             dir, dir, dir, dir);
}

static void remove_files(void)
{
    const char *names[] = {"a.log", "b.log"};
    char path[128];
    for (size_t i = 0; i < BL_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* An out-of-memory error as the loader words it: the reader names the place in the file, the
 * compiler the directive too; before any file is open, or while building the table's
 * defaults, the file alone. */
static void check_message(long n, const char *err)
{
    if (strcmp(err, "out of memory") == 0 || strcmp(err, "out of memory while loading t.conf") == 0)
        return;
    int line = 0, end = 0;
    char name[64];
    if (sscanf(err, "out of memory in \"%63[^\"]\" directive in t.conf:%d%n", name, &line,
               &end) == 2 && line > 0 && !err[end])
        return;
    if (sscanf(err, "out of memory in t.conf:%d%n", &line, &end) == 1 && line > 0 && !err[end])
        return;
    fail_msg("allocation %ld refused: \"%s\" is no out-of-memory error with its place", n, err);
}

/* Refuses allocation n, and with once == 0 every one after it, for n = 0, 1, ... until the
 * load gets through. Returns how many loads failed. */
static long walk(int once)
{
    char err[512];
    long failures = 0;
    for (long n = 0;; n++) {
        bl_conf_alloc_budget = n;
        bl_conf_alloc_fail_once = once;
        struct bl_config *c = bl_conf_load_string(text, "t.conf", err, sizeof(err));
        int refused = once ? bl_conf_alloc_budget == -1 : bl_conf_alloc_budget == 0;
        bl_conf_alloc_budget = -1;
        if (c) {
            bl_conf_release(c);
            /* with once == 0 an exact fit leaves the budget at 0 without a refusal */
            if (refused && once)
                fail_msg("allocation %ld was refused, yet the load succeeded", n);
            break;
        }
        if (!refused)
            fail_msg("no allocation refused, yet the load failed: %s", err);
        check_message(n, err);
        failures++;
    }
    return failures;
}

static void test_every_allocation_fails_cleanly(void **state)
{
    (void)state;
    make_config();
    char err[512];
    struct bl_config *c = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    bl_conf_release(c);

    long persistent = walk(0);
    long once = walk(1);
    print_message("%ld allocation points, each refused alone and from there on\n", once);
    assert_true(persistent > 100);
    assert_int_equal(persistent, once);
    remove_files();
}

/* The message names the directive being compiled and where it is. */
static void test_message_names_directive(void **state)
{
    (void)state;
    char err[512];
    const char *conf = "http {\n server {\n  listen 127.0.0.1:18080;\n"
                       "  location / {\n   proxy_set_header X-A 1;\n  }\n }\n}\n";
    int seen = 0;
    for (long n = 0; n < 10000 && !seen; n++) {
        bl_conf_alloc_budget = n;
        bl_conf_alloc_fail_once = 1;
        struct bl_config *c = bl_conf_load_string(conf, "t.conf", err, sizeof(err));
        bl_conf_alloc_budget = -1;
        if (c) {
            bl_conf_release(c);
            break;
        }
        seen = strcmp(err, "out of memory in \"proxy_set_header\" directive in t.conf:5") == 0;
    }
    assert_true(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_fails_cleanly),
        cmocka_unit_test(test_message_names_directive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
