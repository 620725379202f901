/* The directive table and compiler: every kind of load-time error names file:line and the
 * directive; inheritance and defaults; and every directive is documented. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "conf/proxy_ssl.h"
#include "conf/ssl.h"
#include "core/status.h"
#include "upstream/health_check.h"

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
    expect_error("http {\n server {\n listen 127.0.0.1:18080;\n location ~ (a {\n }\n }\n}\n",
                 "pcre2_compile() failed: missing closing parenthesis in \"(a\" "
                 "(offset 2) in t.conf:4");
    /* nginx's nesting rules, with its messages */
    expect_error("http { server { listen 127.0.0.1:18080;\n location /a {\n location /b { }\n"
                 " } } }\n", "location \"/b\" is outside location \"/a\" in t.conf:3");
    expect_error("http { server { listen 127.0.0.1:18080;\n location = /a {\n location /a/b { }\n"
                 " } } }\n",
                 "location \"/a/b\" cannot be inside the exact location \"/a\" in t.conf:3");
    expect_error("http { server { listen 127.0.0.1:18080;\n location @x {\n location /a { }\n"
                 " } } }\n",
                 "location \"/a\" cannot be inside the named location \"@x\" in t.conf:3");
    expect_error("http { server { listen 127.0.0.1:18080;\n location /a {\n location @x { }\n"
                 " } } }\n", "named location \"@x\" can be on the server level only in t.conf:3");
    expect_error("http { server { listen 127.0.0.1:18080;\n location ~ ^/a {\n"
                 " proxy_pass http://127.0.0.1:1/x; } } }\n",
                 "\"proxy_pass\" cannot have URI part in location given by regular expression, "
                 "or inside named location, or inside \"if\" statement in t.conf:3");
    expect_error("http { server { listen 127.0.0.1:18080;\n location / {\n"
                 " if ($uri) { proxy_pass http://127.0.0.1:1; } } } }\n",
                 "\"proxy_pass\" inside \"if\" is not supported in this build: only return, "
                 "rewrite, set and break, the forms nginx documents as safe in t.conf:3");
    expect_error("http { server { listen 127.0.0.1:18080;\n location / {\n"
                 " rewrite ^ /x bogus; } } }\n", "invalid parameter \"bogus\" in t.conf:3");
    expect_error("http { server { listen 127.0.0.1:18080;\n location / {\n"
                 " add_header X-A b sometimes; } } }\n",
                 "invalid value \"sometimes\" in \"add_header\" directive in t.conf:3");
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
    assert_int_equal(loc->conf.nheaders, 1);
    assert_string_equal(loc->conf.headers[0].name, "Host");
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
    assert_int_equal(a->conf.nheaders, 1);
    assert_string_equal(a->conf.headers[0].name, "X-A");
    assert_int_equal(b->conf.nheaders, 1); /* own lines replace inherited ones */
    assert_string_equal(b->conf.headers[0].name, "X-B");
    bl_conf_release(c);
}

/* proxy_ssl_*: each directive inherited on its own, one context per set of settings, only for
 * https:// locations; https's default port is 443. */
static void test_proxy_ssl_inheritance(void **state)
{
    (void)state;
    char err[512];
    struct bl_config *c = load("http {\n proxy_ssl_server_name on;\n proxy_ssl_protocols TLSv1.3;\n"
                               " server { listen 127.0.0.1:18080;\n  proxy_ssl_name s.test;\n"
                               "  location /a { proxy_pass https://127.0.0.1; }\n"
                               "  location /b { proxy_ssl_server_name off;"
                               " proxy_pass https://127.0.0.1:2; }\n"
                               "  location /c { proxy_pass http://127.0.0.1:3; }\n }\n}\n",
                               err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    const struct bl_location *a = NULL, *b = NULL, *cl = NULL;
    for (uint32_t i = 0; i < c->servers[0]->nprefix; i++) {
        const struct bl_location *l = c->servers[0]->prefix[i];
        *(l->path[1] == 'a' ? &a : l->path[1] == 'b' ? &b : &cl) = l;
    }
    assert_true(a && b && cl);
    assert_int_equal(a->proxy_tls, 1);
    assert_int_equal(cl->proxy_tls, 0);
    assert_string_equal(a->proxy_port, "443");
    assert_int_equal(bl_proxy_ssl_sni(a->conf.proxy_ssl), 1);
    assert_int_equal(bl_proxy_ssl_sni(b->conf.proxy_ssl), 0);
    assert_string_equal(a->conf.proxy_ssl->name, "s.test");
    assert_string_equal(b->conf.proxy_ssl->name, "s.test");
    assert_int_equal(b->conf.proxy_ssl->protocols, BL_SSL_TLSV1_3);
    assert_int_equal(bl_proxy_ssl_verify(a->conf.proxy_ssl), 0);
    assert_int_equal(bl_proxy_ssl_reuse(a->conf.proxy_ssl), 1);
    assert_non_null(a->conf.proxy_ssl->ctx);
    assert_non_null(b->conf.proxy_ssl->ctx);
    assert_ptr_not_equal(a->conf.proxy_ssl->ctx, b->conf.proxy_ssl->ctx);
    bl_conf_release(c);
}

/* A relative certificate, key or CA path is the main config file's directory's. */
static void test_tls_paths_relative_to_config(void **state)
{
    (void)state;
    char err[512];
    struct bl_config *c = bl_conf_load_string(
        "http { server { listen 127.0.0.1:18080; location / { proxy_ssl_verify on;\n"
        " proxy_ssl_trusted_certificate ca.pem; proxy_pass https://127.0.0.1:1; } } }\n",
        "/nonexistent-dir/conf/t.conf", err, sizeof(err));
    assert_null(c);
    assert_non_null(strstr(err, "cannot load trusted certificates "
                                "\"/nonexistent-dir/conf/ca.pem\""));
    c = bl_conf_load_string("http { ssl_certificate /abs/c.pem; ssl_certificate_key k.pem;\n"
                            " server { listen 127.0.0.1:18080 ssl; } }\n",
                            "/nonexistent-dir/conf/t.conf", err, sizeof(err));
    assert_null(c);
    assert_non_null(strstr(err, "\"/abs/c.pem\""));
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

/* ---- defaults come from the table ---- */

/* A config whose http, upstream and main settings are all defaults; "%s %s;" is put where
 * CONTEXT wants it. The upstream has an http check so that the check module's defaults, which
 * the table documents (check_http_send, check_http_expect_alive), are compared too. */
static int with_line(char *buf, size_t len, const char *ctx, const char *name, const char *arg)
{
    char line[256] = "";
    if (name)
        snprintf(line, sizeof(line), "%s %s;", name, arg);
    const char *m = "", *e = "", *h = "", *u = "";
    if (strcmp(ctx, "main") == 0)
        m = line;
    else if (strcmp(ctx, "events") == 0)
        e = line;
    else if (strcmp(ctx, "http") == 0)
        h = line;
    else if (strcmp(ctx, "upstream") == 0)
        u = line;
    else
        return 0;
    snprintf(buf, len,
             "%s\nevents { %s }\nhttp {\n %s\n"
             " upstream u { server 127.0.0.1:1; check type=http; %s }\n"
             " server { listen 127.0.0.1:18080; location / { proxy_pass http://u; } }\n}\n",
             m, e, h, u);
    return 1;
}

static void assert_same_loc_conf(const char *what, const struct bl_loc_conf *a,
                                 const struct bl_loc_conf *b)
{
    const uint64_t *x = (const uint64_t *)a, *y = (const uint64_t *)b;
    for (size_t i = 0; i < offsetof(struct bl_loc_conf, headers) / sizeof(uint64_t); i++)
        if (x[i] != y[i])
            fail_msg("%s: setting %zu of bl_loc_conf is %llu without the line, %llu with it",
                     what, i, (unsigned long long)x[i], (unsigned long long)y[i]);
    assert_int_equal(a->naccess_logs, b->naccess_logs);
    assert_int_equal(a->nheaders, b->nheaders);
    assert_int_equal(a->nerror_pages, b->nerror_pages);
}

/* Writing a directive's default as a line changes nothing: the table's default is what the
 * config holds without the line (for the check module's own defaults too). And every
 * inherited setting has a default, so no level is left with an unset value. */
static void test_defaults_from_table(void **state)
{
    (void)state;
    char err[512], text[2048];
    with_line(text, sizeof(text), "main", NULL, NULL);
    struct bl_config *base = load(text, err, sizeof(err));
    if (!base)
        fail_msg("%s", err);
    const uint64_t *f = (const uint64_t *)&base->http_conf;
    for (size_t i = 0; i < offsetof(struct bl_loc_conf, headers) / sizeof(uint64_t); i++)
        if (f[i] == UINT64_MAX)
            fail_msg("setting %zu of bl_loc_conf has no default in the directive table", i);
    assert_int_equal(base->http_conf.keepalive_timeout, 75000);
    assert_int_equal(base->http_conf.lchb_number * base->http_conf.lchb_size, 32768);
    assert_int_equal(base->worker_connections, 10000);
    assert_string_equal(base->error_log, "stderr");
    assert_int_equal(base->shutdown_timeout, 10000);
    assert_int_equal(base->groups[0]->keepalive_timeout_ms, 60000);

    size_t count;
    const struct bl_directive_info *d = bl_conf_directives(&count);
    int compared = 0;
    for (size_t i = 0; i < count; i++) {
        if (!d[i].deflt)
            continue;
        char ctx[32];
        snprintf(ctx, sizeof(ctx), "%.*s", (int)strcspn(d[i].contexts, ","), d[i].contexts);
        /* server_name "" is documented: no names, which the router treats alike */
        if (!with_line(text, sizeof(text), ctx, d[i].name, d[i].deflt))
            continue;
        struct bl_config *c = load(text, err, sizeof(err));
        if (!c)
            fail_msg("the default of \"%s\" does not load: %s", d[i].name, err);
        assert_same_loc_conf(d[i].name, &base->http_conf, &c->http_conf);
        assert_same_loc_conf(d[i].name, &base->servers[0]->prefix[0]->conf,
                             &c->servers[0]->prefix[0]->conf);
        assert_int_equal(base->workers, c->workers);
        assert_int_equal(base->worker_connections, c->worker_connections);
        assert_string_equal(base->error_log, c->error_log);
        assert_int_equal(base->error_log_level, c->error_log_level);
        assert_int_equal(base->shutdown_timeout, c->shutdown_timeout);
        assert_ptr_equal(base->pid_file, c->pid_file);
        const struct bl_upstream_group *g = base->groups[0], *h = c->groups[0];
        assert_int_equal(g->keepalive, h->keepalive);
        assert_int_equal(g->keepalive_requests, h->keepalive_requests);
        assert_int_equal(g->keepalive_timeout_ms, h->keepalive_timeout_ms);
        assert_string_equal(g->check->http_send, h->check->http_send);
        assert_int_equal(g->check->expect_alive, h->check->expect_alive);
        bl_conf_release(c);
        compared++;
    }
    assert_true(compared > 25);
    bl_conf_release(base);
}

/* http -> server -> location: scalars fill in one by one; a list is inherited whole by a
 * level without lines of its own, shared rather than copied, and replaced by one with. */
static void test_merge_three_levels(void **state)
{
    (void)state;
    char err[512];
    char dir[] = "/tmp/bl_conf_merge_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char text[2048];
    snprintf(text, sizeof(text),
             "http {\n proxy_read_timeout 5s;\n client_max_body_size 2m;\n"
             " proxy_set_header X-A 1;\n error_page 502 /e.html;\n access_log %s/a.log;\n"
             " server { listen 127.0.0.1:18080;\n"
             "  proxy_read_timeout 4s; proxy_set_header X-S 1; access_log off;\n"
             "  location /inherit { return 200; }\n"
             "  location /own { proxy_read_timeout 3s; proxy_set_header X-L 1;"
             " error_page 404 /n.html; access_log %s/b.log; client_max_body_size 0; return 200; }\n"
             " }\n"
             " server { listen 127.0.0.1:18081; location / { return 200; } }\n"
             "}\n", dir, dir);
    struct bl_config *c = load(text, err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    const struct bl_loc_conf *http = &c->http_conf;
    const struct bl_server_block *s1 = c->servers[0], *s2 = c->servers[1];
    const struct bl_location *inherit = s1->prefix[0]->path[1] == 'i' ? s1->prefix[0]
                                                                      : s1->prefix[1];
    const struct bl_location *own = inherit == s1->prefix[0] ? s1->prefix[1] : s1->prefix[0];
    const struct bl_location *other = s2->prefix[0];

    assert_int_equal(http->proxy_read_timeout, 5000);
    assert_int_equal(http->set, BL_LC_HEADERS | BL_LC_ERROR_PAGES | BL_LC_ACCESS_LOG);
    assert_int_equal(http->naccess_logs, 1);

    /* server 1: own timeout, headers and access_log off; body size and error pages inherited */
    assert_int_equal(s1->conf.proxy_read_timeout, 4000);
    assert_int_equal(s1->conf.client_max_body_size, 2 * 1024 * 1024);
    assert_int_equal(s1->conf.nheaders, 1);
    assert_string_equal(s1->conf.headers[0].name, "X-S");
    assert_int_equal(s1->conf.naccess_logs, 0);
    assert_ptr_equal(s1->conf.error_pages, http->error_pages);
    assert_int_equal(s1->conf.nerror_pages, 1);
    assert_int_equal(s1->conf.set, BL_LC_HEADERS | BL_LC_ACCESS_LOG | BL_LC_ACCESS_OFF);
    /* the server's pseudo location sees the server's settings */
    assert_int_equal(s1->server_loc->conf.proxy_read_timeout, 4000);
    assert_ptr_equal(s1->server_loc->conf.headers, s1->conf.headers);

    /* a location without lines: everything from server 1, lists shared */
    assert_int_equal(inherit->conf.proxy_read_timeout, 4000);
    assert_int_equal(inherit->conf.client_max_body_size, 2 * 1024 * 1024);
    assert_int_equal(inherit->conf.keepalive_timeout, 75000);
    assert_ptr_equal(inherit->conf.headers, s1->conf.headers);
    assert_ptr_equal(inherit->conf.error_pages, http->error_pages);
    assert_int_equal(inherit->conf.naccess_logs, 0);
    assert_int_equal(inherit->conf.set, 0);
    assert_int_equal(inherit->set_xff, 1);

    /* a location with its own lines of each kind */
    assert_int_equal(own->conf.proxy_read_timeout, 3000);
    assert_int_equal(own->conf.client_max_body_size, 0);
    assert_int_equal(own->conf.nheaders, 1);
    assert_string_equal(own->conf.headers[0].name, "X-L");
    assert_int_equal(own->conf.nerror_pages, 1);
    assert_int_equal(own->conf.error_pages[0].code, 404);
    assert_int_equal(own->conf.naccess_logs, 1);
    assert_ptr_not_equal(own->conf.access_logs[0].log, http->access_logs[0].log);

    /* server 2 has no lines: http's values, down to its location */
    assert_int_equal(other->conf.proxy_read_timeout, 5000);
    assert_ptr_equal(other->conf.headers, http->headers);
    assert_ptr_equal(other->conf.error_pages, http->error_pages);
    assert_ptr_equal(other->conf.access_logs, http->access_logs);
    assert_int_equal(c->naccess_logs, 2);

    bl_conf_release(c);
    char path[64];
    snprintf(path, sizeof(path), "%s/a.log", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/b.log", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- the docs check ---- */

static char doc[1 << 20];

static void read_docs(void)
{
    FILE *f = fopen("docs/configuration.md", "r");
    assert_non_null(f);
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[n] = '\0';
}

/* The heading line "### `NAME`" or "### `NAME` (SUFFIX)" exactly; NULL if absent. */
static const char *find_heading(const char *name, const char *suffix)
{
    char heading[160];
    if (suffix)
        snprintf(heading, sizeof(heading), "\n### `%s` (%s)\n", name, suffix);
    else
        snprintf(heading, sizeof(heading), "\n### `%s`\n", name);
    const char *h = strstr(doc, heading);
    return h ? h + 1 : NULL;
}

/* The rest of the line after "- **FIELD:** " inside the section [sec, end); "" if absent. */
static void field(const char *sec, const char *end, const char *name, char *out, size_t len)
{
    char key[64];
    snprintf(key, sizeof(key), "\n- **%s:** ", name);
    out[0] = '\0';
    const char *hit = strstr(sec, key);
    if (!hit || hit >= end)
        return;
    hit += strlen(key);
    size_t n = strcspn(hit, "\n");
    if (n >= len)
        n = len - 1;
    memcpy(out, hit, n);
    out[n] = '\0';
}

/* What the docs must show as a row's Syntax: each form as `NAME ARGS;` (or `NAME ARGS { ... }`
 * for a block), forms joined by " · ". */
static void expected_syntax(const struct bl_directive_info *d, char *out, size_t len)
{
    size_t pos = 0;
    const char *form = d->syntax;
    for (;;) {
        size_t n = strcspn(form, "\n");
        pos += (size_t)snprintf(out + pos, len - pos, "%s`%s%s%.*s%s`", pos ? " · " : "",
                                d->name, n ? " " : "", (int)n, form, d->block ? " { ... }" : ";");
        if (!form[n])
            break;
        form += n + 1;
    }
}

/* Each row of the directive table has a section in docs/configuration.md whose Syntax, Default
 * and Context lines say what the row says, and which has an example; each directive section
 * of the docs belongs to a row. A name with rows in two contexts (server in http and in
 * upstream) has a section "### `NAME` (CONTEXT)" per row, or one plain "### `NAME`" for one
 * of them. */
static void test_docs_match_table(void **state)
{
    (void)state;
    read_docs();
    size_t count;
    const struct bl_directive_info *d = bl_conf_directives(&count);
    assert_true(count > 30);
    const char *used[256] = {0};
    assert_true(count < BL_ARRAY_LEN(used));
    int bad = 0;
    for (size_t i = 0; i < count; i++) {
        char first_ctx[32];
        snprintf(first_ctx, sizeof(first_ctx), "%.*s", (int)strcspn(d[i].contexts, ","),
                 d[i].contexts);
        const char *sec = find_heading(d[i].name, first_ctx);
        if (!sec)
            sec = find_heading(d[i].name, NULL);
        if (!sec) {
            print_error("docs/configuration.md has no section for \"%s\" (%s)\n", d[i].name,
                        d[i].contexts);
            bad++;
            continue;
        }
        for (size_t k = 0; k < i; k++)
            if (used[k] == sec) {
                print_error("\"%s\" (%s) and (%s) share one section; give each its own "
                            "\"### `%s` (CONTEXT)\"\n", d[i].name, d[k].contexts,
                            d[i].contexts, d[i].name);
                bad++;
            }
        used[i] = sec;
        const char *end = strstr(sec + 4, "\n### ");
        const char *chapter = strstr(sec, "\n## ");
        if (!end || (chapter && chapter < end))
            end = chapter ? chapter : sec + strlen(sec);

        char got[1024], want[1024];
        field(sec, end, "Syntax", got, sizeof(got));
        expected_syntax(&d[i], want, sizeof(want));
        if (strcmp(got, want) != 0) {
            print_error("\"%s\" Syntax: docs say \"%s\", the table \"%s\"\n", d[i].name, got,
                        want);
            bad++;
        }
        field(sec, end, "Default", got, sizeof(got));
        if (d[i].deflt) {
            snprintf(want, sizeof(want), "`%s %s;`", d[i].name, d[i].deflt);
            if (strcmp(got, want) != 0) {
                print_error("\"%s\" Default: docs say \"%s\", the table \"%s\"\n", d[i].name,
                            got, want);
                bad++;
            }
        } else {
            snprintf(want, sizeof(want), "`%s", d[i].name);
            size_t wl = strlen(want);
            if (!got[0] || (strncmp(got, want, wl) == 0 && strchr(" ;`", got[wl]))) {
                print_error("\"%s\" Default: docs say \"%s\", the table has none (write what "
                            "happens without the line, or give the row a default)\n",
                            d[i].name, got);
                bad++;
            }
        }
        field(sec, end, "Context", got, sizeof(got));
        if (strcmp(got, d[i].contexts) != 0) {
            print_error("\"%s\" Context: docs say \"%s\", the table \"%s\"\n", d[i].name, got,
                        d[i].contexts);
            bad++;
        }
        const char *ex = strstr(sec, "\n- **Example:**");
        if (!ex || ex >= end) {
            print_error("section \"%s\" has no example\n", d[i].name);
            bad++;
        }
    }
    /* Every directive section is some row's: no docs for directives that do not exist. */
    for (const char *h = strstr(doc, "\n### `"); h; h = strstr(h + 1, "\n### `")) {
        int found = 0;
        for (size_t i = 0; i < count && !found; i++)
            found = used[i] == h + 1;
        if (!found) {
            print_error("docs section \"%.*s\" is no row of the directive table\n",
                        (int)strcspn(h + 1, "\n"), h + 1);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* map: keys lowercased and sorted by kind, hostnames wildcards, the target a config variable. */
static void test_map_compiled(void **state)
{
    (void)state;
    char err[512];
    struct bl_config *cfg = load(
        "http { map $host $site { hostnames; default d; Example.COM e; *.a.com h; .b.org dot;\n"
        "  www.c.* t; ~^x(\\d) r$1; ~*^Y y; \\default esc; }\n"
        "server { listen 127.0.0.1:8080; location / { return 200 $site; } } }", err,
        sizeof(err));
    assert_non_null(cfg);
    assert_non_null(cfg->var_maps);
    const struct bl_map *m = NULL;
    for (uint32_t i = 0; i < cfg->vars.n; i++)
        if (strcmp(cfg->vars.names[i], "site") == 0)
            m = cfg->var_maps[i];
    assert_non_null(m);
    assert_int_equal(m->hostnames, 1);
    assert_non_null(m->deflt);
    assert_int_equal(m->nkeys, 5);
    assert_string_equal(m->keys[0].key, "example.com");
    assert_int_equal(m->keys[0].wild, BL_MAP_EXACT);
    assert_string_equal(m->keys[1].key, ".a.com");
    assert_int_equal(m->keys[1].wild, BL_MAP_HEAD);
    assert_string_equal(m->keys[2].key, ".b.org");
    assert_int_equal(m->keys[2].wild, BL_MAP_DOT);
    assert_string_equal(m->keys[3].key, "www.c.");
    assert_int_equal(m->keys[3].wild, BL_MAP_TAIL);
    assert_string_equal(m->keys[4].key, "default");
    assert_int_equal(m->nregexes, 2);
    bl_conf_release(cfg);

    expect_error("http { map $arg_a $b { a 1; A 2; } }",
                 "conflicting parameter \"A\" in t.conf:1");
    expect_error("http { map $arg_a $b { a 1 2; } }",
                 "invalid number of the map parameters in t.conf:1");
    expect_error("http { map $arg_a $b { default 1; default 2; } }",
                 "duplicate default map parameter in t.conf:1");
    expect_error("http { map $arg_a $b { a 1; } map $arg_c $b { c 1; } }",
                 "duplicate \"$b\" variable in t.conf:1");
    expect_error("http { server { map $arg_a $b { a 1; } } }",
                 "\"map\" directive is not allowed here in t.conf:1");
}

/* listen's socket parameters: sizes read as nginx's (k, m), one value per address however
 * many servers share it, and each bad value named with its place. */
static void test_listen_socket_buffers(void **state)
{
    (void)state;
    char err[512];
    struct bl_config *c = load("http {\n"
                               " server { listen 127.0.0.1:18080 sndbuf=64k rcvbuf=32768; }\n"
                               " server { listen 127.0.0.1:18080 backlog=100 sndbuf=64k; }\n"
                               "}\n"
                               "stream { server { listen 127.0.0.1:18081 rcvbuf=1m;"
                               " proxy_pass 127.0.0.1:1; } }\n",
                               err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(c->nlistens, 2);
    assert_int_equal(c->listens[0].sndbuf, 65536);
    assert_int_equal(c->listens[0].rcvbuf, 32768);
    assert_int_equal(c->listens[0].backlog, 100);
    assert_int_equal(c->listens[1].sndbuf, 0);
    assert_int_equal(c->listens[1].rcvbuf, 1024 * 1024);
    assert_int_equal(c->listens[1].backlog, 511);
    bl_conf_release(c);
    expect_error("http {\n server {\n listen 127.0.0.1:18080 sndbuf=abc;\n }\n}\n",
                 "invalid value \"sndbuf=abc\" in \"listen\" directive (a size from 1k to 1g) "
                 "in t.conf:3");
    expect_error("http {\n server {\n listen 127.0.0.1:18080 rcvbuf=100;\n }\n}\n",
                 "invalid value \"rcvbuf=100\" in \"listen\" directive (a size from 1k to 1g) "
                 "in t.conf:3");
    expect_error("stream {\n server {\n listen 127.0.0.1:18080 sndbuf=2g;\n }\n}\n",
                 "invalid value \"sndbuf=2g\" in \"listen\" directive (a size from 1k to 1g) "
                 "in t.conf:3");
    expect_error("http {\n server {\n listen 127.0.0.1:18080 backlog=0;\n }\n}\n",
                 "invalid value \"backlog=0\" in \"listen\" directive (a number from 1 to "
                 "65535) in t.conf:3");
    expect_error("http {\n server {\n listen 127.0.0.1:18080 sndbuf=64k;\n }\n"
                 " server {\n listen 127.0.0.1:18080 sndbuf=32k;\n }\n}\n",
                 "\"sndbuf\" for 127.0.0.1:18080 differs from an earlier \"listen\" of the "
                 "address (one socket, one value) in t.conf:6");
}

/* disable_symlinks outside_root: a root reached through a symlink ("current -> releases/N",
 * switched by deploys) is opened per request so a switch is seen at once; a real directory
 * keeps its fd from load. */
static void test_base_fd_only_without_symlink(void **state)
{
    (void)state;
    char dir[] = "/tmp/ballast-conf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char real[96], link[96], text[512], err[512];
    snprintf(real, sizeof(real), "%s/r1", dir);
    snprintf(link, sizeof(link), "%s/current", dir);
    assert_int_equal(mkdir(real, 0755), 0);
    assert_int_equal(symlink("r1", link), 0);
    char sub[112];
    snprintf(sub, sizeof(sub), "%s/x", real);
    assert_int_equal(mkdir(sub, 0755), 0); /* exists: only the symlink keeps it unopened */
    snprintf(text, sizeof(text),
             "http { server { listen 127.0.0.1:18080;\n"
             "  location /real/ { root %s; }\n"
             "  location /link/ { root %s; }\n"
             "  location /below/ { alias %s/x/; }\n } }\n", real, link, link);
    struct bl_config *c = load(text, err, sizeof(err));
    assert_non_null(c);
    const struct bl_server_block *s = c->servers[0];
    int seen = 0;
    for (uint32_t i = 0; i < s->nprefix; i++) {
        const struct bl_location *l = s->prefix[i];
        if (!l->base_dir)
            continue;
        if (strcmp(l->base_dir, real) == 0) {
            assert_true(l->base_open);
            seen |= 1;
        } else {
            assert_false(l->base_open); /* through "current": opened per request */
            seen |= strstr(l->base_dir, "/x") ? 4 : 2;
        }
    }
    assert_int_equal(seen, 7);
    bl_conf_release(c);
    unlink(link);
    rmdir(sub);
    rmdir(real);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_listen_socket_buffers),
        cmocka_unit_test(test_nginx_habits_accepted),
        cmocka_unit_test(test_inheritance_and_defaults),
        cmocka_unit_test(test_upstream_servers),
        cmocka_unit_test(test_defaults_from_table),
        cmocka_unit_test(test_merge_three_levels),
        cmocka_unit_test(test_proxy_ssl_inheritance),
        cmocka_unit_test(test_tls_paths_relative_to_config),
        cmocka_unit_test(test_docs_match_table),
        cmocka_unit_test(test_map_compiled),
        cmocka_unit_test(test_base_fd_only_without_symlink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
