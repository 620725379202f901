/* Routing as nginx does it: the server block by Host (exact names before wildcards, then the
 * default server, any case, without the port or a trailing dot), and the location by "="
 * exact match first, then the longest prefix, then (unless that prefix is "^~") the regexes in
 * config order, nested locations searched inside the one found, else the server-level pseudo
 * location. The config is compiled from text, so the compiler's ordering of prefixes is part
 * of what is tested. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "http/router.c"

static struct bl_config *load(const char *text)
{
    char err[512] = "";
    struct bl_config *c = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (!c)
        fail_msg("config did not load: %s", err);
    return c;
}

static const struct bl_listen *listen_on(const struct bl_config *c, uint16_t port)
{
    for (uint32_t i = 0; i < c->nlistens; i++)
        if (c->listens[i].port == port)
            return &c->listens[i];
    fail_msg("no listen on port %u", port);
    return NULL;
}

/* The server block's first server_name ("" for none). */
static const char *server_of(const struct bl_listen *l, const char *host)
{
    const struct bl_server_block *s = bl_route_server(l, host, host ? strlen(host) : 0);
    assert_non_null(s);
    return s->nnames ? s->names[0] : "";
}

static void assert_server(const struct bl_listen *l, const char *host, const char *want)
{
    const char *got = server_of(l, host);
    if (strcmp(got, want) != 0)
        fail_msg("Host %s: want server \"%s\", got \"%s\"", host ? host : "(none)", want, got);
}

static const char *SERVERS =
    "http {\n"
    "  server { listen 127.0.0.1:18001; server_name first.test; }\n"
    "  server { listen 127.0.0.1:18001; server_name *.example.com; }\n"
    "  server { listen 127.0.0.1:18001; server_name www.example.com; }\n"
    "  server { listen 127.0.0.1:18001; server_name .example.org; }\n"
    "  server { listen 127.0.0.1:18001; server_name www.example.*; }\n"
    "  server { listen 127.0.0.1:18001; server_name a.test b.test; }\n"
    "  server { listen 127.0.0.1:18001; server_name [::1]; }\n"
    "  server { listen 127.0.0.1:18002; server_name only.test; }\n"
    "}\n";

static void test_server_exact_and_default(void **state)
{
    (void)state;
    struct bl_config *c = load(SERVERS);
    const struct bl_listen *l = listen_on(c, 18001);
    assert_server(l, "first.test", "first.test");
    assert_server(l, "b.test", "a.test");               /* second name of a block */
    /* nothing matches, or no Host: the first server of the listen is the default */
    assert_server(l, "nosuch.test", "first.test");
    assert_server(l, NULL, "first.test");
    assert_server(l, "", "first.test");
    /* a listen with one server answers every Host with it */
    assert_server(listen_on(c, 18002), "other.test", "only.test");
    bl_conf_release(c);
}

static void test_server_host_normalized(void **state)
{
    (void)state;
    struct bl_config *c = load(SERVERS);
    const struct bl_listen *l = listen_on(c, 18001);
    /* a.test's block is not the default, so a miss would show */
    assert_server(l, "B.Test", "a.test");               /* case-insensitive */
    assert_server(l, "b.test:8080", "a.test");          /* port dropped */
    assert_server(l, "b.test.", "a.test");              /* trailing dot dropped */
    assert_server(l, "b.test.:80", "a.test");
    assert_server(l, "[::1]:443", "[::1]");             /* IPv6 literal keeps its brackets */
    bl_conf_release(c);
}

static void test_server_wildcards(void **state)
{
    (void)state;
    struct bl_config *c = load(SERVERS);
    const struct bl_listen *l = listen_on(c, 18001);
    /* exact beats the leading wildcard declared before it */
    assert_server(l, "www.example.com", "www.example.com");
    assert_server(l, "api.example.com", "*.example.com");
    assert_server(l, "a.b.example.com", "*.example.com");
    assert_server(l, "example.com", "first.test");      /* "*." needs a subdomain */
    /* ".example.org" is the domain and every subdomain */
    assert_server(l, "example.org", ".example.org");
    assert_server(l, "x.example.org", ".example.org");
    assert_server(l, "badexample.org", "first.test");
    /* trailing wildcard */
    assert_server(l, "www.example.net", "www.example.*");
    assert_server(l, "www.example", "first.test");
    bl_conf_release(c);
}

static void test_server_long_host_is_safe(void **state)
{
    (void)state;
    struct bl_config *c = load(SERVERS);
    const struct bl_listen *l = listen_on(c, 18001);
    char host[1000];
    memset(host, 'a', sizeof(host) - 1);
    host[sizeof(host) - 1] = 0;
    assert_server(l, host, "first.test");               /* longer than the name buffer */
    bl_conf_release(c);
}

/* The matched location: "=PATH" for exact ones, PATH for prefixes, "(server)" for none. */
static const char *location_of(const struct bl_server_block *s, const char *path)
{
    static char out[128];
    const struct bl_location *loc = bl_route_location(s, path, strlen(path));
    assert_non_null(loc);
    if (loc == s->server_loc)
        return "(server)";
    snprintf(out, sizeof(out), "%s%.*s", loc->exact ? "=" : loc->regex ? "~" : "",
             (int)loc->path_len, loc->path);
    return out;
}

static void assert_location(const struct bl_server_block *s, const char *path,
                            const char *want)
{
    const char *got = location_of(s, path);
    if (strcmp(got, want) != 0)
        fail_msg("path %s: want location \"%s\", got \"%s\"", path, want, got);
}

static void test_location_exact_then_longest_prefix(void **state)
{
    (void)state;
    /* declared shortest first: the compiler must order prefixes longest first */
    struct bl_config *c = load("http { server {\n"
                               "  listen 127.0.0.1:18003;\n"
                               "  location /a { return 200 a; }\n"
                               "  location /api { return 200 api; }\n"
                               "  location /api/v2/ { return 200 v2; }\n"
                               "  location = /api { return 200 exact; }\n"
                               "  location = / { return 200 root; }\n"
                               "} }\n");
    const struct bl_server_block *s = listen_on(c, 18003)->servers[0];
    assert_location(s, "/api", "=/api");                /* exact beats the equal prefix */
    assert_location(s, "/api/", "/api");
    assert_location(s, "/apix", "/api");                /* prefixes are byte prefixes */
    assert_location(s, "/api/v2/users", "/api/v2/");
    assert_location(s, "/api/v2", "/api");              /* shorter than /api/v2/ */
    assert_location(s, "/about", "/a");
    assert_location(s, "/", "=/");
    assert_location(s, "/b", "(server)");               /* nothing matches */
    assert_location(s, "/API", "(server)");             /* case-sensitive, as nginx */
    bl_conf_release(c);
}

static void test_location_root_prefix_catches_all(void **state)
{
    (void)state;
    struct bl_config *c = load("http { server {\n"
                               "  listen 127.0.0.1:18004;\n"
                               "  location / { return 200 any; }\n"
                               "  location /static/ { return 200 static; }\n"
                               "} }\n");
    const struct bl_server_block *s = listen_on(c, 18004)->servers[0];
    assert_location(s, "/", "/");
    assert_location(s, "/x", "/");
    assert_location(s, "/static", "/");
    assert_location(s, "/static/a.css", "/static/");
    bl_conf_release(c);
}

static void test_location_regex_order(void **state)
{
    (void)state;
    struct bl_config *c = load("http { server {\n"
                               "  listen 127.0.0.1:18005;\n"
                               "  location = /x.png { return 200 exact; }\n"
                               "  location ^~ /static/ { return 200 static; }\n"
                               "  location /img/ { return 200 img; }\n"
                               "  location ~ \\.(png|jpg)$ { return 200 image; }\n"
                               "  location ~* \\.CSS$ { return 200 css; }\n"
                               "  location ~ /first { return 200 first; }\n"
                               "  location ~ /first/second { return 200 second; }\n"
                               "  location / { return 200 root; }\n"
                               "} }\n");
    const struct bl_server_block *s = listen_on(c, 18005)->servers[0];
    assert_location(s, "/x.png", "=/x.png");            /* exact ends the search */
    assert_location(s, "/y.png", "~\\.(png|jpg)$");     /* a regex beats the prefix "/" */
    assert_location(s, "/img/a.jpg", "~\\.(png|jpg)$"); /* ... and a longer prefix too */
    assert_location(s, "/img/a.gif", "/img/");          /* no regex: the longest prefix */
    assert_location(s, "/static/a.png", "/static/");    /* ^~ stops the regexes */
    assert_location(s, "/A.css", "~\\.CSS$");           /* ~* ignores case */
    assert_location(s, "/a.cSs", "~\\.CSS$");
    assert_location(s, "/a.css.x", "/");
    assert_location(s, "/first/second", "~/first");     /* the first in config order */
    bl_conf_release(c);
}

static void test_location_nested(void **state)
{
    (void)state;
    struct bl_config *c = load("http { server {\n"
                               "  listen 127.0.0.1:18006;\n"
                               "  location /nest/ {\n"
                               "    location ~ \\.txt$ { return 200 nt; }\n"
                               "    location /nest/deep/ {\n"
                               "      location ~ \\.md$ { return 200 md; }\n"
                               "    }\n"
                               "    location = /nest/x { return 200 nx; }\n"
                               "  }\n"
                               "  location ^~ /nr/ { location ~ \\.txt$ { return 200 nr; } }\n"
                               "  location ~ \\.(txt|png)$ { return 200 top; }\n"
                               "  location ~ ^/re/ { location ~ \\.gif$ { return 200 g; } }\n"
                               "  location @named { return 200 named; }\n"
                               "} }\n");
    const struct bl_server_block *s = listen_on(c, 18006)->servers[0];
    assert_location(s, "/nest/a", "/nest/");
    assert_location(s, "/nest/a.txt", "~\\.txt$");        /* the nested regex first */
    assert_location(s, "/nest/deep/a.md", "~\\.md$");
    assert_location(s, "/nest/deep/a.txt", "~\\.txt$");   /* the parent's regexes next */
    assert_location(s, "/nest/deep/a", "/nest/deep/");
    assert_location(s, "/nest/a.png", "~\\.(txt|png)$");  /* then the server's */
    assert_location(s, "/nest/x", "=/nest/x");             /* nested exact */
    assert_location(s, "/nr/a.txt", "~\\.txt$");          /* ^~ stops its level's only */
    assert_location(s, "/nr/a.png", "/nr/");
    assert_location(s, "/re/a.gif", "~\\.gif$");          /* nested in a regex */
    assert_location(s, "/re/a.txt", "~\\.(txt|png)$");  /* config order: declared first */
    assert_location(s, "/re/a.x", "~^/re/");
    assert_location(s, "/@named", "(server)");            /* named: never by path */
    const struct bl_location *n = bl_route_named(s, "@named", 6);
    assert_non_null(n);
    assert_true(n->named);
    assert_null(bl_route_named(s, "@other", 6));
    bl_conf_release(c);
}

static void test_location_captures(void **state)
{
    (void)state;
    struct bl_config *c = load("http { server {\n"
                               "  listen 127.0.0.1:18007;\n"
                               "  location ~ ^/u/(\\d+)/(?<tab>\\w+)$ { return 200 u; }\n"
                               "} }\n");
    const struct bl_server_block *s = listen_on(c, 18007)->servers[0];
    struct bl_captures cap = {0};
    const char *path = "/u/42/posts";
    const struct bl_location *loc = bl_route_location_cap(s, path, strlen(path), &cap);
    assert_non_null(loc->regex);
    assert_int_equal(cap.npairs, 3);
    assert_ptr_equal(cap.subject, path);
    assert_int_equal(cap.ovec[2], 3);
    assert_int_equal(cap.ovec[3], 5);                     /* $1 = "42" */
    assert_int_equal(bl_regex_group(cap.re, "tab", 3), 2);
    /* no match leaves the captures alone */
    struct bl_captures before = cap;
    assert_ptr_equal(bl_route_location_cap(s, "/v", 2, &cap), s->server_loc);
    assert_memory_equal(&before, &cap, sizeof(cap));
    bl_conf_release(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_exact_and_default),
        cmocka_unit_test(test_server_host_normalized),
        cmocka_unit_test(test_server_wildcards),
        cmocka_unit_test(test_server_long_host_is_safe),
        cmocka_unit_test(test_location_exact_then_longest_prefix),
        cmocka_unit_test(test_location_root_prefix_catches_all),
        cmocka_unit_test(test_location_regex_order),
        cmocka_unit_test(test_location_nested),
        cmocka_unit_test(test_location_captures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
