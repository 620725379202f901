/* The admin API's server additions and removals applied to directive trees: what is added and
 * removed, when the file wins (it names the server, changes or drops its line, drops the
 * upstream), undo after a failed reload, and the compiled result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/conf_parse.h"
#include "conf/overlay.h"
#include "core/log.h"
#include "core/status.h"

#include "assert_eq.h"

static const char *base =
    "http { upstream app { server 127.0.0.1:1; server 127.0.0.1:2 weight=2; }\n"
    "server { listen 127.0.0.1:18080; location / { proxy_pass http://app; } } }\n";

/* The servers of upstream app after the overlay, as "ADDR ARGS|ADDR ARGS|". */
static void servers_of(const char *text, char *out, size_t len)
{
    char err[256];
    struct bl_conf_node *root = bl_conf_read_string(text, "t.conf", err, sizeof(err));
    assert_non_null(root);
    ASSERT_EQ(bl_conf_overlay_apply(root, err, sizeof(err)), BL_OK);
    out[0] = '\0';
    size_t pos = 0;
    const struct bl_conf_node *h = &root->children[0];
    for (int k = 0; k < h->nchildren; k++) {
        const struct bl_conf_node *u = &h->children[k];
        if (strcmp(u->name, "upstream") != 0)
            continue;
        for (int i = 0; i < u->nchildren; i++) {
            for (int a = 0; a < u->children[i].nargs; a++)
                pos += (size_t)snprintf(out + pos, len - pos, "%s%s", a ? " " : "",
                                        u->children[i].args[a]);
            pos += (size_t)snprintf(out + pos, len - pos, "|");
        }
    }
    bl_conf_free(root);
}

static int teardown(void **state)
{
    (void)state;
    bl_conf_overlay_clear();
    return 0;
}

static void test_add_and_file_wins(void **state)
{
    (void)state;
    char got[512];
    char *line[] = {"127.0.0.1:3", "weight=5"};
    void *h = bl_conf_overlay_add("app", line, 2);
    assert_non_null(h);
    servers_of(base, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:2 weight=2|127.0.0.1:3 weight=5|");
    /* Every later read gets it too. */
    servers_of(base, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:2 weight=2|127.0.0.1:3 weight=5|");
    /* The file names it now: the file's line, once. */
    const char *named =
        "http { upstream app { server 127.0.0.1:1; server 127.0.0.1:3 weight=7; } }\n";
    servers_of(named, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:3 weight=7|");
    servers_of(base, got, sizeof(got)); /* the addition has ended */
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:2 weight=2|");
}

static void test_remove_and_file_wins(void **state)
{
    (void)state;
    char got[512];
    char *line[] = {"127.0.0.1:2", "weight=2"};
    void *h = NULL;
    ASSERT_EQ(bl_conf_overlay_remove("app", "127.0.0.1:2", line, 2, &h), BL_OK);
    assert_non_null(h);
    servers_of(base, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|");
    /* The file changed that line: the server comes back, and stays. */
    const char *changed =
        "http { upstream app { server 127.0.0.1:1; server 127.0.0.1:2 weight=3; } }\n";
    servers_of(changed, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:2 weight=3|");
    servers_of(base, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:2 weight=2|");
}

static void test_undo_and_added_then_removed(void **state)
{
    (void)state;
    char got[512];
    char *line[] = {"127.0.0.1:3"};
    void *add = bl_conf_overlay_add("app", line, 1);
    /* Removing what the overlay added forgets the addition; undo brings it back. */
    void *h = NULL;
    ASSERT_EQ(bl_conf_overlay_remove("app", "127.0.0.1:3", NULL, 0, &h), BL_OK);
    assert_non_null(h);
    servers_of(base, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:2 weight=2|");
    bl_conf_overlay_undo(h);
    servers_of(base, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:2 weight=2|127.0.0.1:3|");
    bl_conf_overlay_undo(add);
    servers_of(base, got, sizeof(got));
    assert_string_equal(got, "127.0.0.1:1|127.0.0.1:2 weight=2|");
    /* An upstream the file no longer has ends the entry. */
    bl_conf_overlay_add("gone", line, 1);
    servers_of(base, got, sizeof(got));
    bl_conf_overlay_undo(NULL);
}

/* Through the whole load: the added server compiles like a file line. */
static void test_compiled(void **state)
{
    (void)state;
    char path[] = "/tmp/ballast-overlay-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, base, strlen(base)) == (ssize_t)strlen(base));
    close(fd);
    char *line[] = {"127.0.0.1:3", "weight=4", "backup"};
    bl_conf_overlay_add("app", line, 3);
    char err[512];
    struct bl_config *cfg = bl_conf_load(path, err, sizeof(err));
    unlink(path);
    if (!cfg)
        fail_msg("%s", err);
    ASSERT_EQ(cfg->groups[0]->nservers, 3);
    ASSERT_EQ(cfg->groups[0]->nprimary, 2);
    ASSERT_EQ(cfg->groups[0]->servers[2].weight, 4);
    assert_true(cfg->groups[0]->servers[2].backup);
    assert_true(bl_conf_overlay_has_upstream(cfg->tree, "app"));
    assert_false(bl_conf_overlay_has_upstream(cfg->tree, "127.0.0.1:1"));
    int n = 0;
    char **l = bl_conf_overlay_line(cfg->tree, "app", "127.0.0.1:2", &n);
    ASSERT_EQ(n, 2);
    assert_string_equal(l[1], "weight=2");
    bl_conf_overlay_free_args(l, n);
    bl_conf_release(cfg);
}

int main(void)
{
    bl_log_level = BL_LOG_WARN; /* ended entries are logged at notice */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_add_and_file_wins, teardown),
        cmocka_unit_test_teardown(test_remove_and_file_wins, teardown),
        cmocka_unit_test_teardown(test_undo_and_added_then_removed, teardown),
        cmocka_unit_test_teardown(test_compiled, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
