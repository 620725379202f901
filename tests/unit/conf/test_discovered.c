/* What discovery publishes (conf/discovered.h) and how the compiler applies it: a `discover`
 * set replaces the file's server lines only once it exists; values are checked with the file's
 * own server-line code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "conf/discovered.h"
#include "core/status.h"

static const char CONF[] =
    "http { upstream app { discover etcd http://127.0.0.1:2379; server 127.0.0.1:9; }\n"
    "server { listen 127.0.0.1:18080; location / { proxy_pass http://app; } } }\n";

static struct bl_upstream_group *app(struct bl_config *c)
{
    for (uint32_t i = 0; i < c->ngroups; i++)
        if (strcmp(c->groups[i]->name, "app") == 0)
            return c->groups[i];
    fail_msg("no upstream app");
    return NULL;
}

static void test_set_and_compile(void **state)
{
    (void)state;
    char err[512] = "";
    struct bl_config *c = bl_conf_load_string(CONF, "t.conf", err, sizeof(err));
    assert_non_null(c);
    struct bl_upstream_group *g = app(c);
    assert_int_equal(g->nservers, 1);          /* the file's, until etcd answers */
    assert_string_equal(g->discover_url, "http://127.0.0.1:2379");
    assert_string_equal(g->discover_prefix, "/services/app/");
    bl_conf_release(c);

    char *items[] = {"127.0.0.1:8081 weight=2", "127.0.0.1:8082 backup"};
    assert_int_equal(bl_conf_discovered_set("app", NULL, items, 2), 1);
    assert_int_equal(bl_conf_discovered_set("app", NULL, items, 2), 0); /* unchanged */
    c = bl_conf_load_string(CONF, "t.conf", err, sizeof(err));
    assert_non_null(c);
    g = app(c);
    assert_int_equal(g->nservers, 2);
    assert_string_equal(g->servers[0].name, "127.0.0.1:8081");
    assert_int_equal(g->servers[0].weight, 2);
    assert_int_equal(g->servers[1].backup, 1);
    bl_conf_release(c);

    bl_conf_discovered_drop("app", NULL);
    assert_null(bl_conf_discovered_get("app", NULL));
    bl_conf_discovered_clear();
}

static void test_check_server_line(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(bl_conf_check_server_line("127.0.0.1:80 weight=2", err, sizeof(err)),
                     BL_OK);
    assert_int_equal(bl_conf_check_server_line("127.0.0.1:80 weight=x", err, sizeof(err)),
                     BL_ERR);
    assert_non_null(strstr(err, "weight=x"));
    assert_null(strstr(err, "value:1"));
    assert_int_equal(bl_conf_check_server_line("127.0.0.1:80; } http {", err, sizeof(err)),
                     BL_ERR);
    assert_int_equal(bl_conf_check_server_line("  ", err, sizeof(err)), BL_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_and_compile),
        cmocka_unit_test(test_check_server_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
