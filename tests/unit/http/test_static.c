/* Static files' path handling (http/static.c): URI to file path under root and alias, the
 * check that what the URI chose cannot climb out ("..", NUL), and opening without symlinks
 * (disable_symlinks on, if_not_owner, from=$document_root) or out of the directory (the
 * default, outside_root), with openat2 and with the realpath() fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assert_eq.h"
#include "http/static.c"

static void test_dot_segments(void **state)
{
    (void)state;
    const char *bad[] = {"/..", "/../x", "/a/../b", "/.", "/./x", "/a/.", "..", "../x",
                         "/x/.."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_true(has_dot_segment(bad[i], strlen(bad[i])));
    const char *good[] = {"/", "/a.txt", "/.well-known/x", "/a..b", "/...", "/x../y", "/a/b.",
                          "/..a", ""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_false(has_dot_segment(good[i], strlen(good[i])));
    assert_true(has_dot_segment("/a\0b", 4));
}

static int map(struct bl_location *loc, const char *uri, char *full)
{
    struct bl_client c;
    struct bl_request r;
    memset(&c, 0, sizeof(c));
    memset(&r, 0, sizeof(r));
    r.c = &c;
    r.loc = loc;
    size_t from;
    return map_path(&r, loc, uri, strlen(uri), full, PATH_MAX, &from);
}

static void test_map_root_and_alias(void **state)
{
    (void)state;
    char full[PATH_MAX];
    struct bl_location loc;
    memset(&loc, 0, sizeof(loc));
    loc.root = "/srv/www";
    ASSERT_EQ(map(&loc, "/a/b.txt", full), BL_OK);
    assert_string_equal(full, "/srv/www/a/b.txt");

    memset(&loc, 0, sizeof(loc));
    loc.path = "/i/";
    loc.path_len = 3;
    loc.alias = "/data/img/";
    ASSERT_EQ(map(&loc, "/i/top.gif", full), BL_OK);
    assert_string_equal(full, "/data/img/top.gif");
    ASSERT_EQ(map(&loc, "/i/", full), BL_OK);
    assert_string_equal(full, "/data/img/");

    /* the classic alias escape: a prefix without its slash, an alias with one */
    loc.path = "/i";
    loc.path_len = 2;
    ASSERT_EQ(map(&loc, "/i../secret", full), BL_ERR);
    ASSERT_EQ(errno, EACCES);
    ASSERT_EQ(map(&loc, "/i/x", full), BL_OK);
    assert_string_equal(full, "/data/img//x");
    /* without the slash on either side: "images.." is a name, not a way up */
    loc.alias = "/data/img";
    ASSERT_EQ(map(&loc, "/i../x", full), BL_OK);
    assert_string_equal(full, "/data/img../x");

    /* too long for a path */
    char uri[PATH_MAX + 10];
    memset(uri, 'a', sizeof(uri) - 1);
    uri[0] = '/';
    uri[sizeof(uri) - 1] = '\0';
    ASSERT_EQ(map(&loc, uri, full), BL_ERR);
    ASSERT_EQ(errno, ENAMETOOLONG);
}

static char dir[64];

static void mk(const char *rel, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void ln(const char *target, const char *rel)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    assert_int_equal(symlink(target, p), 0);
}

static int try_open(uint64_t mode, int from_root, const char *rel)
{
    struct bl_location loc;
    memset(&loc, 0, sizeof(loc));
    loc.conf.disable_symlinks = mode;
    loc.conf.disable_symlinks_from_root = (uint64_t)from_root;
    char p[256];
    int n = snprintf(p, sizeof(p), "%s/www%s", dir, rel);
    (void)n;
    int fd = open_file(&loc, p, strlen(dir) + 4);
    int e = errno;
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    return e;
}

static void test_symlink_policies(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bl-test-static-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof(p), "%s/www", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/www/sub", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    mk("www/a.txt", "a");
    mk("secret", "s");
    mk("www/sub/b.txt", "b");
    ln("a.txt", "www/in");
    ln("../secret", "www/out");
    ln("sub", "www/sublink");
    snprintf(p, sizeof(p), "%s/www", dir);
    ln(p, "rootlink");

    ASSERT_EQ(try_open(BL_SYMLINKS_FOLLOW, 0, "/out"), 0);
    ASSERT_EQ(try_open(BL_SYMLINKS_REFUSE, 0, "/a.txt"), 0);
    ASSERT_EQ(try_open(BL_SYMLINKS_REFUSE, 0, "/sub/b.txt"), 0);
    ASSERT_EQ(try_open(BL_SYMLINKS_REFUSE, 0, "/in"), ELOOP);
    ASSERT_EQ(try_open(BL_SYMLINKS_REFUSE, 0, "/out"), ELOOP);
    ASSERT_EQ(try_open(BL_SYMLINKS_REFUSE, 0, "/sublink/b.txt"), ELOOP);
    ASSERT_EQ(try_open(BL_SYMLINKS_REFUSE, 0, "/missing"), ENOENT);
    /* the walk itself (what kernels without openat2 get) */
    snprintf(p, sizeof(p), "%s/www/sublink/b.txt", dir);
    assert_true(walk_open(p, 0, 0) < 0 && errno == ELOOP);
    snprintf(p, sizeof(p), "%s/www/sub/b.txt", dir);
    int fd = walk_open(p, 0, 0);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof(p), "%s/www/sub/", dir);
    fd = walk_open(p, 0, 0);
    assert_true(fd >= 0);
    close(fd);
    /* if_not_owner: links made by the file's owner are followed */
    ASSERT_EQ(try_open(BL_SYMLINKS_IF_NOT_OWNER, 0, "/in"), 0);
    ASSERT_EQ(try_open(BL_SYMLINKS_IF_NOT_OWNER, 0, "/sublink/b.txt"), 0);
    if (geteuid() == 0) {
        snprintf(p, sizeof(p), "%s/secret", dir);
        assert_int_equal(chown(p, 65534, 65534), 0);
        ASSERT_EQ(try_open(BL_SYMLINKS_IF_NOT_OWNER, 0, "/out"), ELOOP);
    }
    /* from=$document_root: a root reached through a link is fine, links below it are not */
    struct bl_location loc;
    memset(&loc, 0, sizeof(loc));
    loc.conf.disable_symlinks = BL_SYMLINKS_REFUSE;
    loc.conf.disable_symlinks_from_root = 1;
    snprintf(p, sizeof(p), "%s/rootlink/a.txt", dir);
    fd = open_file(&loc, p, strlen(dir) + 9);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof(p), "%s/rootlink/in", dir);
    assert_true(open_file(&loc, p, strlen(dir) + 9) < 0 && errno == ELOOP);
    loc.conf.disable_symlinks_from_root = 0;
    snprintf(p, sizeof(p), "%s/rootlink/a.txt", dir);
    assert_true(open_file(&loc, p, strlen(dir) + 9) < 0 && errno == ELOOP);

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* open_beneath on dir/www as loc's directory (base_open: its fd opened first); 0 or errno. */
static int beneath(const char *base, int base_open, const char *rel)
{
    struct bl_location loc;
    memset(&loc, 0, sizeof(loc));
    char b[256], full[512];
    snprintf(b, sizeof(b), "%s/%s", dir, base);
    loc.conf.disable_symlinks = BL_SYMLINKS_BENEATH;
    loc.base_dir = b;
    loc.base_len = (uint32_t)strlen(b);
    loc.base_fd = base_open ? open(b, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    loc.base_open = loc.base_fd >= 0;
    snprintf(full, sizeof(full), "%s%s", b, rel);
    int fd = open_file(&loc, full, 0);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    if (loc.base_open)
        close(loc.base_fd);
    return e;
}

static void test_symlinks_beneath(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bl-test-static-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof(p), "%s/www", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/www/sub", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    mk("www/a.txt", "a");
    mk("www/sub/b.txt", "b");
    mk("secret", "s");
    mk("wwwx", "sibling");
    ln("a.txt", "www/in");
    ln("../a.txt", "www/sub/up_in");
    ln("../secret", "www/out");
    ln("sub", "www/sublink");
    ln("/etc", "www/etc");
    snprintf(p, sizeof(p), "%s/www/a.txt", dir);
    ln(p, "www/abs_in");
    /* twice: the kernel's openat2, then the realpath() fallback of kernels without it */
    for (int pass = 0; pass < 2; pass++) {
#ifdef SYS_openat2
        no_openat2 = pass;
#endif
        for (int opened = 0; opened < 2; opened++) {
            ASSERT_EQ(beneath("www", opened, "/a.txt"), 0);
            ASSERT_EQ(beneath("www", opened, "/in"), 0);
            ASSERT_EQ(beneath("www", opened, "/abs_in"), 0);
            ASSERT_EQ(beneath("www", opened, "/sub/up_in"), 0);
            ASSERT_EQ(beneath("www", opened, "/sublink/b.txt"), 0);
            ASSERT_EQ(beneath("www", opened, "/sublink/"), 0);
            ASSERT_EQ(beneath("www", opened, "/out"), EXDEV);
            ASSERT_EQ(beneath("www", opened, "/etc/passwd"), EXDEV);
            ASSERT_EQ(beneath("www", opened, "/missing"), ENOENT);
            /* the directory itself, and a sibling's name beginning with it (alias without
             * its slash): the parent is the directory then */
            ASSERT_EQ(beneath("www", opened, ""), 0);
            ASSERT_EQ(beneath("www", opened, "x"), 0);
        }
    }
#ifdef SYS_openat2
    no_openat2 = 0;
#endif
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_map_root_and_alias),
        cmocka_unit_test(test_symlink_policies),
        cmocka_unit_test(test_symlinks_beneath),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
