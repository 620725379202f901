/* Unit tests for map's key lookup (src/http/map.c): exact strings, hostnames wildcards and
 * their order, on maps compiled from config text as a config would have them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "http/map.h"

static const struct bl_map *load_map(struct bl_config **cfg, const char *body)
{
    char text[2048], err[512];
    snprintf(text, sizeof(text),
             "http { map $host $m { %s }\n"
             "server { listen 127.0.0.1:18080; location / { return 200 $m; } } }", body);
    *cfg = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (!*cfg)
        fail_msg("%s", err);
    for (uint32_t i = 0; i < (*cfg)->vars.n; i++)
        if (strcmp((*cfg)->vars.names[i], "m") == 0)
            return (*cfg)->var_maps[i];
    fail_msg("no $m");
    return NULL;
}

/* The value text of the key name finds ("" for none). */
static const char *find(const struct bl_map *m, const char *name)
{
    const struct bl_map_key *k = bl_map_find(m, name, strlen(name));
    if (!k)
        return "";
    size_t len;
    return bl_template_text(k->value, &len);
}

static void test_exact(void **state)
{
    (void)state;
    struct bl_config *cfg;
    const struct bl_map *m = load_map(&cfg, "Apple red; \"\" empty; *.x.com notwild; a.b ab;");
    assert_string_equal(find(m, "apple"), "red"); /* keys are lowercase; callers lower names */
    assert_string_equal(find(m, ""), "empty");
    assert_string_equal(find(m, "*.x.com"), "notwild"); /* no hostnames: a plain string */
    assert_string_equal(find(m, "y.x.com"), "");
    assert_string_equal(find(m, "a.b"), "ab");
    assert_string_equal(find(m, "a.bc"), "");
    bl_conf_release(cfg);
}

static void test_hostnames(void **state)
{
    (void)state;
    struct bl_config *cfg;
    const struct bl_map *m = load_map(&cfg,
        "hostnames; example.com exact; *.example.com head; *.deep.example.com deeper;"
        ".example.org dot; www.example.* tail; www.* shorttail;");
    assert_string_equal(find(m, "example.com"), "exact");
    assert_string_equal(find(m, "a.example.com"), "head");
    assert_string_equal(find(m, "b.deep.example.com"), "deeper"); /* the longest wins */
    assert_string_equal(find(m, "deep.example.com"), "head");
    assert_string_equal(find(m, "example.org"), "dot");
    assert_string_equal(find(m, "a.b.example.org"), "dot");
    assert_string_equal(find(m, "www.example.net"), "tail");
    assert_string_equal(find(m, "www.other.net"), "shorttail");
    assert_string_equal(find(m, "www.example.com"), "head"); /* leading before trailing */
    assert_string_equal(find(m, "xexample.com"), "");
    assert_string_equal(find(m, "example.net"), "");
    bl_conf_release(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_hostnames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
