/* The directive table and compiler: every kind of load-time error names file:line and the
 * directive; inheritance and defaults; and every directive is documented. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"

static struct bl_config *load(const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    return bl_conf_load_string(text, "t.conf", err, errlen);
}

static void expect_error(const char *text, const char *want)
{
    char err[512];
    struct bl_config *c = load(text, err, sizeof(err));
    if (c) {
        bl_conf_release(c);
        fail_msg("expected error \"%s\", config loaded", want);
    }
    assert_string_equal(err, want);
}

#define HTTP_OK "http { server { listen 127.0.0.1:18080; location / { return 200; } } }\n"

static void test_errors(void **state)
{
    (void)state;
    expect_error("http {\n server {\n listen 127.0.0.1:18080;\n location / {\n prox_pass http://a;\n"
                 "}\n}\n}\n",
                 "unknown directive \"prox_pass\" in t.conf:5");
    expect_error("http {\n proxy_pass http://a;\n}\n",
                 "\"proxy_pass\" directive is not allowed here in t.conf:2");
    expect_error("worker_processes 1 2;\n",
                 "invalid number of arguments in \"worker_processes\" directive in t.conf:1");
    expect_error("http {\n upstream u {\n server 127.0.0.1:1;\n keepalive abc;\n }\n}\n",
                 "invalid value \"abc\" in \"keepalive\" directive in t.conf:4");
    expect_error("http {\n server {\n listen 127.0.0.1:18080;\n location / {\n"
                 " proxy_pass http://nosuch;\n }\n }\n}\n",
                 "host not found in upstream \"nosuch\" in t.conf:5");
    expect_error("http {\n server {\n listen 127.0.0.1:18080;\n listen 127.0.0.1:18080;\n }\n}\n",
                 "duplicate listen 127.0.0.1:18080 in t.conf:4");
    expect_error("http {\n server {\n listen 127.0.0.1:18080 default_server;\n }\n"
                 " server {\n listen 127.0.0.1:18080 default_server;\n }\n}\n",
                 "a duplicate default server for 127.0.0.1:18080 in t.conf:6");
    expect_error("http {\n client_max_body_size 10x;\n}\n",
                 "invalid value \"10x\" in \"client_max_body_size\" directive in t.conf:2");
    expect_error("http {\n proxy_read_timeout 5q;\n}\n",
                 "invalid value \"5q\" in \"proxy_read_timeout\" directive in t.conf:2");
    expect_error("http {\n upstream u {\n server 127.0.0.1:1 weight=0;\n }\n}\n",
                 "invalid value \"weight=0\" in \"server\" directive in t.conf:3");
    expect_error("http {\n upstream u {\n }\n}\n", "no servers are inside upstream in t.conf:2");
    expect_error("http {\n server {\n listen 127.0.0.1:18080;\n location ~ \\.php$ {\n }\n }\n}\n",
                 "regular expression locations are not supported in t.conf:4");
    expect_error("http {\n server {\n listen 127.0.0.1:18080;\n location / {\n"
                 " return 200 \"$nosuchvar\";\n }\n }\n}\n",
                 "unknown \"nosuchvar\" variable in t.conf:5");
    expect_error("events;\n", "directive \"events\" has no opening \"{\" in t.conf:1");
    expect_error("http {\n server {\n }\n}\n",
                 "server block has no \"listen\" directive in t.conf:2");
    expect_error("http {\n server {\n listen 127.0.0.1:18080;\n location / {\n"
                 " proxy_pass ftp://a;\n }\n }\n}\n",
                 "invalid URL prefix in \"ftp://a\" in t.conf:5");
}

static void test_nginx_habits_accepted(void **state)
{
    (void)state;
    char err[512];
    struct bl_config *c = load("worker_processes auto;\nevents { worker_connections 1024; }\n"
                               "http {\n upstream b { server 127.0.0.1:9001; keepalive 8; }\n"
                               " server { listen 127.0.0.1:18080; location / {\n"
                               "  proxy_pass http://b;\n  proxy_http_version 1.1;\n"
                               "  proxy_set_header Connection \"\";\n"
                               "  proxy_set_header Host $host;\n } } }\n",
                               err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(err, "");
    assert_int_equal(c->worker_connections, 1024);
    assert_int_equal(c->ngroups, 1);
    assert_int_equal(c->groups[0]->keepalive, 8);
    /* Connection "" is dropped: only Host remains. */
    const struct bl_location *loc = c->servers[0]->prefix[0];
    assert_int_equal(loc->nheaders, 1);
    assert_string_equal(loc->headers[0].name, "Host");
    bl_conf_release(c);
}

static void test_inheritance_and_defaults(void **state)
{
    (void)state;
    char err[512];
    struct bl_config *c = load("http {\n proxy_read_timeout 5s;\n proxy_set_header X-A 1;\n"
                               " server { listen 127.0.0.1:18080;\n"
                               "  location /a { return 200; }\n"
                               "  location /b { proxy_read_timeout 500ms; proxy_set_header X-B 2;"
                               " return 200; }\n }\n"
                               " client_max_body_size 2m;\n}\n",
                               err, sizeof(err));
    assert_non_null(c);
    const struct bl_server_block *s = c->servers[0];
    assert_int_equal(s->nprefix, 2);
    const struct bl_location *a = s->prefix[0]->path[1] == 'a' ? s->prefix[0] : s->prefix[1];
    const struct bl_location *b = a == s->prefix[0] ? s->prefix[1] : s->prefix[0];
    assert_int_equal(a->conf.proxy_read_timeout, 5000);
    assert_int_equal(b->conf.proxy_read_timeout, 500);
    /* set after the server block: nginx merges regardless of order */
    assert_int_equal(a->conf.client_max_body_size, 2 * 1024 * 1024);
    assert_int_equal(a->conf.proxy_connect_timeout, 60000);
    assert_int_equal(a->conf.keepalive_timeout, 75000);
    assert_int_equal(a->nheaders, 1);
    assert_string_equal(a->headers[0].name, "X-A");
    assert_int_equal(b->nheaders, 1); /* own lines replace inherited ones */
    assert_string_equal(b->headers[0].name, "X-B");
    bl_conf_release(c);
}

static void test_upstream_servers(void **state)
{
    (void)state;
    char err[512];
    struct bl_config *c = load("http {\n upstream u {\n server 127.0.0.1:1 backup;\n"
                               " server 127.0.0.1:2 weight=5 max_fails=3 fail_timeout=30s;\n"
                               " }\n server { listen 127.0.0.1:18080; location / {"
                               " proxy_pass http://u; } location /x { proxy_pass "
                               "http://127.0.0.1:3/y/; } }\n}\n",
                               err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(c->ngroups, 2);
    const struct bl_upstream_group *g = c->groups[0];
    assert_int_equal(g->nservers, 2);
    assert_int_equal(g->nprimary, 1);
    assert_string_equal(g->servers[0].name, "127.0.0.1:2"); /* primaries first */
    assert_int_equal(g->servers[0].weight, 5);
    assert_int_equal(g->servers[0].max_fails, 3);
    assert_int_equal(g->servers[0].fail_timeout_ms, 30000);
    assert_int_equal(g->servers[1].backup, 1);
    assert_int_equal(c->nupstream_servers, 3);
    const struct bl_location *x = c->servers[0]->prefix[0];
    assert_string_equal(x->path, "/x");
    assert_string_equal(x->proxy_uri, "/y/");
    bl_conf_release(c);
}

/* Every directive of the table has a section in docs/configuration.md with Syntax, Default
 * and Context lines. */
static void test_every_directive_documented(void **state)
{
    (void)state;
    FILE *f = fopen("docs/configuration.md", "r");
    assert_non_null(f);
    static char doc[1 << 20];
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[n] = '\0';
    size_t count;
    const struct bl_directive_info *d = bl_conf_directives(&count);
    assert_true(count > 30);
    int missing = 0;
    for (size_t i = 0; i < count; i++) {
        char heading[128];
        snprintf(heading, sizeof(heading), "### `%s`", d[i].name);
        const char *sec = strstr(doc, heading);
        if (!sec) {
            print_error("docs/configuration.md has no section for \"%s\"\n", d[i].name);
            missing++;
            continue;
        }
        const char *end = strstr(sec + 4, "\n### ");
        size_t len = end ? (size_t)(end - sec) : strlen(sec);
        const char *fields[] = {"**Syntax:**", "**Default:**", "**Context:**", "**Example:**"};
        for (size_t k = 0; k < 4; k++) {
            const char *hit = strstr(sec, fields[k]);
            if (!hit || (size_t)(hit - sec) > len) {
                /* A name used in two contexts may have a second section. */
                const char *again = strstr(sec + 4, heading);
                if (again && strstr(again, fields[k]))
                    continue;
                print_error("section \"%s\" lacks %s\n", d[i].name, fields[k]);
                missing++;
            }
        }
    }
    assert_int_equal(missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nginx_habits_accepted),
        cmocka_unit_test(test_inheritance_and_defaults),
        cmocka_unit_test(test_upstream_servers),
        cmocka_unit_test(test_every_directive_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
