/* Unit tests for the nginx-dialect config reader (src/conf/conf_parse.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Allocation failure injection for the reader: its own system headers come first, so the
 * macros below only reach conf_parse.c's calls. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int alloc_countdown; /* > 0: the allocation that brings it to 0 fails */

static int alloc_fails(void)
{
    return alloc_countdown > 0 && --alloc_countdown == 0;
}

static void *fail_malloc(size_t n)
{
    return alloc_fails() ? NULL : malloc(n);
}

static void *fail_calloc(size_t n, size_t size)
{
    return alloc_fails() ? NULL : calloc(n, size);
}

static void *fail_realloc(void *p, size_t n)
{
    return alloc_fails() ? NULL : realloc(p, n);
}

static char *fail_strdup(const char *s)
{
    return alloc_fails() ? NULL : strdup(s);
}

#undef strdup
#define malloc(n) fail_malloc(n)
#define calloc(n, size) fail_calloc(n, size)
#define realloc(p, n) fail_realloc(p, n)
#define strdup(s) fail_strdup(s)
#include "conf/conf_parse.c"
#undef malloc
#undef calloc
#undef realloc
#undef strdup

#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64]; /* fresh per test, removed after it */
static char saved_cwd[PATH_MAX];

/* ---- helpers ---------------------------------------------------------------------------- */

static void append(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

/* Serialises a node as nginx text: quoted args get "", blocks "{ ... }", children
 * separated by one space; with lines, each name is followed by @line. */
static void dump_node(const struct bl_conf_node *n, int lines, char *buf, size_t cap)
{
    append(buf, cap, "%s", n->name);
    if (lines)
        append(buf, cap, "@%d", n->line);
    for (int i = 0; i < n->nargs; i++)
        append(buf, cap, n->quoted[i] ? " \"%s\"" : " %s", n->args[i]);
    if (!n->is_block) {
        append(buf, cap, ";");
        return;
    }
    append(buf, cap, " {");
    for (int i = 0; i < n->nchildren; i++) {
        append(buf, cap, " ");
        dump_node(&n->children[i], lines, buf, cap);
    }
    append(buf, cap, " }");
}

static char dumped[65536];

static const char *dump(const struct bl_conf_node *root, int lines)
{
    dumped[0] = '\0';
    for (int i = 0; i < root->nchildren; i++) {
        if (i > 0)
            append(dumped, sizeof(dumped), " ");
        dump_node(&root->children[i], lines, dumped, sizeof(dumped));
    }
    return dumped;
}

/* Parses text (named "t.conf") and checks its dump. */
static void check_parse(const char *text, int lines, const char *expected)
{
    char err[512] = "";
    struct bl_conf_node *root = bl_conf_read_string(text, "t.conf", err, sizeof(err));

    if (root == NULL)
        fail_msg("parse failed: %s\ninput: %s", err, text);
    assert_string_equal(err, "");
    assert_string_equal(root->name, "");
    assert_int_equal(root->is_block, 1);
    assert_string_equal(dump(root, lines), expected);
    bl_conf_free(root);
}

/* Parses text (named "t.conf") and checks that it fails with exactly expected. */
static void check_error(const char *text, const char *expected)
{
    char err[512] = "";
    struct bl_conf_node *root = bl_conf_read_string(text, "t.conf", err, sizeof(err));

    if (root != NULL) {
        bl_conf_free(root);
        fail_msg("parse succeeded, expected: %s\ninput: %s", expected, text);
    }
    assert_string_equal(err, expected);
}

static void mkdirs(const char *path)
{
    char buf[PATH_MAX];

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
}

/* Writes len bytes to tmpdir/rel, creating directories; returns the full path. */
static const char *write_file_n(const char *rel, const char *data, size_t len)
{
    static char path[256];

    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    mkdirs(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *write_file(const char *rel, const char *text)
{
    return write_file_n(rel, text, strlen(text));
}

/* tmpdir/rel in a caller buffer. */
static const char *tpath(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", tmpdir, rel);
    return buf;
}

static struct bl_conf_node *read_ok(const char *path)
{
    char err[512] = "";
    struct bl_conf_node *root = bl_conf_read(path, err, sizeof(err));

    if (root == NULL)
        fail_msg("bl_conf_read(%s) failed: %s", path, err);
    return root;
}

static void read_error(const char *path, const char *expected)
{
    char err[1024] = "";
    struct bl_conf_node *root = bl_conf_read(path, err, sizeof(err));

    if (root != NULL) {
        bl_conf_free(root);
        fail_msg("bl_conf_read(%s) succeeded, expected: %s", path, expected);
    }
    assert_string_equal(err, expected);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup_tmpdir(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bl_conf_test_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (getcwd(saved_cwd, sizeof(saved_cwd)) == NULL)
        return -1;
    return 0;
}

static int teardown_tmpdir(void **state)
{
    if (chdir(saved_cwd) != 0)
        return -1;
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- tokens ----------------------------------------------------------------------------- */

static void test_empty_input(void **state)
{
    check_parse("", 0, "");
    check_parse("   \n\t\r\n", 0, "");
    check_parse("# nothing but a comment", 0, "");
    check_parse("# comment\n\n# another\n", 0, "");

    char err[64];
    struct bl_conf_node *root = bl_conf_read_string("", "t.conf", err, sizeof(err));
    assert_non_null(root);
    assert_int_equal(root->nchildren, 0);
    assert_null(root->children);
    assert_string_equal(root->file, "t.conf");
    bl_conf_free(root);
    bl_conf_free(NULL);
}

static void test_bare_words(void **state)
{
    check_parse("worker_processes 4;", 1, "worker_processes@1 4;");
    check_parse("error_log /var/log/e.log warn;\naccess_log off;", 1,
                "error_log@1 /var/log/e.log warn; access_log@2 off;");
    /* '}' '"' '#' inside a word are part of it, as in nginx */
    check_parse("a b} c\"d e#f;", 0, "a b} c\"d e#f;");
    /* tabs, CR and LF separate words; words may touch ';' and '{' */
    check_parse("a\tb\r\nc;d{e;}", 0, "a b c; d { e; }");
}

static void test_directive_without_args(void **state)
{
    char err[64];
    struct bl_conf_node *root = bl_conf_read_string("least_conn;", "t.conf", err, sizeof(err));

    assert_non_null(root);
    assert_int_equal(root->nchildren, 1);
    struct bl_conf_node *n = &root->children[0];
    assert_string_equal(n->name, "least_conn");
    assert_int_equal(n->nargs, 0);
    assert_null(n->args);
    assert_null(n->quoted);
    assert_int_equal(n->is_block, 0);
    assert_null(n->children);
    assert_int_equal(n->nchildren, 0);
    bl_conf_free(root);
}

static void test_quoted_strings(void **state)
{
    char err[64];
    struct bl_conf_node *root = bl_conf_read_string(
        "a \"dq 1\" 'sq 2' bare \"\" '';", "t.conf", err, sizeof(err));

    assert_non_null(root);
    struct bl_conf_node *n = &root->children[0];
    assert_int_equal(n->nargs, 5);
    assert_string_equal(n->args[0], "dq 1");
    assert_string_equal(n->args[1], "sq 2");
    assert_string_equal(n->args[2], "bare");
    assert_string_equal(n->args[3], "");
    assert_string_equal(n->args[4], "");
    assert_int_equal(n->quoted[0], 1);
    assert_int_equal(n->quoted[1], 1);
    assert_int_equal(n->quoted[2], 0);
    assert_int_equal(n->quoted[3], 1);
    assert_int_equal(n->quoted[4], 1);
    bl_conf_free(root);

    /* the other quote, ';' '{' '}' '#' are plain bytes inside quotes */
    check_parse("a \"it's\" 'say \"hi\"' \"; { } # x\";", 0,
                "a \"it's\" \"say \"hi\"\" \"; { } # x\";");
    /* a quoted string may be the name, and may be followed by ';' '{' or a separator */
    check_parse("\"name\" x;", 0, "name x;");
    check_parse("a \"x\";b 'y'{c;}", 0, "a \"x\"; b \"y\" { c; }");
    check_parse("a \"x\"\n'y'\t\"z\"\r\n;", 0, "a \"x\" \"y\" \"z\";");
    /* nginx lets ')' follow a string for "if (...)"; it becomes a word */
    check_parse("if ($request_method = \"POST\") { return 405; }", 0,
                "if ($request_method = \"POST\" ) { return 405; }");
}

static void test_escapes(void **state)
{
    char err[64];
    struct bl_conf_node *root = bl_conf_read_string(
        "a \"q\\\"q\" 'q\\'q' \"b\\\\s\" \"\\n\\r\\t\" '\\n' \"\\d\\.\" x\\\"y \\\\;",
        "t.conf", err, sizeof(err));

    if (root == NULL)
        fail_msg("%s", err);
    struct bl_conf_node *n = &root->children[0];
    assert_int_equal(n->nargs, 8);
    assert_string_equal(n->args[0], "q\"q");
    assert_string_equal(n->args[1], "q'q");
    assert_string_equal(n->args[2], "b\\s");
    assert_string_equal(n->args[3], "\n\r\t");
    assert_string_equal(n->args[4], "\n");   /* single quotes resolve escapes too */
    assert_string_equal(n->args[5], "\\d\\."); /* unknown escapes stay as written */
    assert_string_equal(n->args[6], "x\"y"); /* bare words resolve escapes too */
    assert_string_equal(n->args[7], "\\");
    bl_conf_free(root);

    /* a backslash keeps the next byte in the word: "\;" "\ " "\{" do not end it */
    root = bl_conf_read_string("location ~ \\.php$ { }\na b\\;c d\\ e f\\{g;", "t.conf", err,
                               sizeof(err));
    if (root == NULL)
        fail_msg("%s", err);
    assert_int_equal(root->nchildren, 2);
    assert_string_equal(root->children[0].args[1], "\\.php$");
    n = &root->children[1];
    assert_int_equal(n->nargs, 3);
    assert_string_equal(n->args[0], "b\\;c");
    assert_string_equal(n->args[1], "d\\ e");
    assert_string_equal(n->args[2], "f\\{g");
    bl_conf_free(root);

    /* an escaped newline inside a string counts as a line; "\<LF>" is not an escape */
    check_parse("a \"x\\\ny\";\nb;", 1, "a@1 \"x\\\ny\"; b@3;");
}

static void test_comments(void **state)
{
    check_parse("a 1; # c ; { } \" '\n# full line\nb 2;#x\nc a#b;\n", 1,
                "a@1 1; b@3 2; c@4 a#b;");
    check_parse("d \"x # y\" 'z#';", 0, "d \"x # y\" \"z#\";");
    /* a comment between the words of one directive */
    check_parse("e 1 # one\n  2 # two\n;", 1, "e@1 1 2;");
    check_parse("f { # open\n g; # inside\n} # close", 1, "f@1 { g@2; }");
    check_parse("g;# at end of file without newline", 0, "g;");
}

static void test_variables_and_braces(void **state)
{
    check_parse("set $x \"${a}b\";", 0, "set $x \"${a}b\";");
    check_parse("return 200 ${host}x;", 0, "return 200 ${host}x;");
    check_parse("a ${b}${c}d;", 0, "a ${b}${c}d;");
    check_parse("a ${{x}};", 0, "a ${{x}};");
    /* '{' not right after '$' opens the block */
    check_parse("a $x{ c; }", 0, "a $x { c; }");
    check_parse("a ${b}{ c; }", 0, "a ${b} { c; }");
    check_parse("a $ { c; }", 0, "a $ { c; }");
    /* "\$" is not a variable, so the '{' after it opens a block */
    check_parse("a \\${ c; }", 0, "a \\$ { c; }");
}

static void test_line_numbers(void **state)
{
    /* the directive's line is the line of its name */
    check_parse("\n\n# c\n  a\n  b\n  c;\nd\n{\n}\n", 1, "a@4 b c; d@7 { }");
    check_parse("a;\r\nb;\r\n\r\nc;", 1, "a@1; b@2; c@4;");
    check_parse("a 'multi\nline\nstring';\nb;", 1, "a@1 \"multi\nline\nstring\"; b@4;");
    check_parse("x { y { z; }\n}\nw;", 1, "x@1 { y@1 { z@1; } } w@3;");
}

static void test_blocks(void **state)
{
    check_parse("events { }", 0, "events { }");
    check_parse("events {}", 0, "events { }");
    check_parse("a{}b{}", 0, "a { } b { }");
    check_parse("location = /x {\n  return 204;\n}", 1, "location@1 = /x { return@2 204; }");
    check_parse("location ~* \\.(gif|jpg)$ { expires 30d; }", 0,
                "location ~* \\.(gif|jpg)$ { expires 30d; }");
    check_parse("a { b { c { d { e; } } } f; }", 0, "a { b { c { d { e; } } } f; }");

    char err[64];
    struct bl_conf_node *root = bl_conf_read_string("a { }\nb;", "t.conf", err, sizeof(err));
    assert_non_null(root);
    assert_int_equal(root->children[0].is_block, 1);
    assert_int_equal(root->children[0].nchildren, 0);
    assert_null(root->children[0].children);
    assert_int_equal(root->children[1].is_block, 0);
    bl_conf_free(root);
}

static void test_nesting_limit(void **state)
{
    static char text[400000];
    char expected[128];

    text[0] = '\0';
    for (int i = 0; i < BL_CONF_MAX_NESTING; i++)
        strcat(text, "a {\n");
    for (int i = 0; i < BL_CONF_MAX_NESTING; i++)
        strcat(text, "}");
    char err[128];
    struct bl_conf_node *root = bl_conf_read_string(text, "t.conf", err, sizeof(err));
    if (root == NULL)
        fail_msg("%s", err);
    bl_conf_free(root);

    /* deeper than the limit, and hostile depth, fail instead of exhausting the stack */
    text[0] = '\0';
    for (int i = 0; i < 100000; i++)
        strcat(text + i * 3, "a {");
    snprintf(expected, sizeof(expected), "blocks nested too deep in t.conf:1");
    check_error(text, expected);
}

/* ---- errors ----------------------------------------------------------------------------- */

static void test_error_unexpected_close(void **state)
{
    check_error("}", "unexpected \"}\" in t.conf:1");
    check_error("a;\n}\n", "unexpected \"}\" in t.conf:2");
    check_error("a { }\n\n}", "unexpected \"}\" in t.conf:3");
    check_error("a b }", "unexpected \"}\" in t.conf:1");
    check_error("a {\n b\n }", "unexpected \"}\" in t.conf:3");
    check_error("a \"b\"}", "unexpected \"}\" in t.conf:1");
}

static void test_error_unexpected_open(void **state)
{
    check_error("{ }", "unexpected \"{\" in t.conf:1");
    check_error("\n\n  {", "unexpected \"{\" in t.conf:3");
    check_error("a; {", "unexpected \"{\" in t.conf:1");
    check_error("a {\n  {\n}\n}", "unexpected \"{\" in t.conf:2");
}

static void test_error_unexpected_semicolon(void **state)
{
    check_error(";", "unexpected \";\" in t.conf:1");
    check_error("a;\n ;", "unexpected \";\" in t.conf:2");
    check_error("a;;", "unexpected \";\" in t.conf:1");
    check_error("a {\n;\n}", "unexpected \";\" in t.conf:2");
}

static void test_error_eof_in_directive(void **state)
{
    /* as nginx: the line the file ends on, which is after a final newline */
    check_error("a b", "unexpected end of file, expecting \";\" or \"}\" in t.conf:1");
    check_error("a b\n", "unexpected end of file, expecting \";\" or \"}\" in t.conf:2");
    check_error("a {\n b c\n", "unexpected end of file, expecting \";\" or \"}\" in t.conf:3");
    check_error("a \"b\"", "unexpected end of file, expecting \";\" or \"}\" in t.conf:1");
    check_error("a b\\", "unexpected end of file, expecting \";\" or \"}\" in t.conf:1");
    check_error("a # c;\n", "unexpected end of file, expecting \";\" or \"}\" in t.conf:2");
    /* '}' does not end a bare word (nginx) */
    check_error("a { b c}", "unexpected end of file, expecting \";\" or \"}\" in t.conf:1");
}

static void test_error_eof_in_block(void **state)
{
    check_error("a {", "unexpected end of file, expecting \"}\" in t.conf:1");
    check_error("a {\n b;\n", "unexpected end of file, expecting \"}\" in t.conf:3");
    check_error("a {\n b {\n }\n", "unexpected end of file, expecting \"}\" in t.conf:4");
    check_error("a { # }", "unexpected end of file, expecting \"}\" in t.conf:1");
}

static void test_error_unterminated_string(void **state)
{
    /* reported at the line of the opening quote */
    check_error("a \"x;\n\nb;\n", "unterminated quoted string in t.conf:1");
    check_error("a;\nb\n 'x\\'", "unterminated quoted string in t.conf:3");
    check_error("a \"x\\", "unterminated quoted string in t.conf:1");
    check_error("\"", "unterminated quoted string in t.conf:1");
}

static void test_error_after_quote(void **state)
{
    check_error("a \"x\"y;", "unexpected \"y\" in t.conf:1");
    check_error("a\n 'x'\"y\";", "unexpected \"\"\" in t.conf:2");
    check_error("a \"x\"#c;", "unexpected \"#\" in t.conf:1");
    check_error("a \"x\ny\"z;", "unexpected \"z\" in t.conf:2");
}

static void test_error_include_args(void **state)
{
    check_error("include;", "invalid number of arguments in \"include\" directive in t.conf:1");
    check_error("\ninclude a b;",
                "invalid number of arguments in \"include\" directive in t.conf:2");
    check_error("a {\n  include\n  a\n  b;\n}",
                "invalid number of arguments in \"include\" directive in t.conf:2");
    check_error("include a { }", "directive \"include\" is not terminated by \";\" in t.conf:1");
}

static void test_error_buffer(void **state)
{
    char err[12];

    /* a short buffer gets a truncated, terminated message */
    memset(err, 'x', sizeof(err));
    assert_null(bl_conf_read_string("}", "t.conf", err, sizeof(err)));
    assert_string_equal(err, "unexpected ");
    assert_null(bl_conf_read_string("}", "t.conf", NULL, 0));
    assert_null(bl_conf_read_string("}", "t.conf", err, 0));

    /* success clears the buffer */
    char big[64] = "stale";
    struct bl_conf_node *root = bl_conf_read_string("a;", "t.conf", big, sizeof(big));
    assert_non_null(root);
    assert_string_equal(big, "");
    bl_conf_free(root);
}

/* ---- files and includes ----------------------------------------------------------------- */

static void test_read_file(void **state)
{
    const char *path = write_file("main.conf", "a 1;\nb {\n  c;\n}\n");
    struct bl_conf_node *root = read_ok(path);

    assert_string_equal(dump(root, 1), "a@1 1; b@2 { c@3; }");
    assert_string_equal(root->file, path);
    assert_string_equal(root->children[0].file, path);
    assert_ptr_equal(root->children[0].file, root->children[1].children[0].file);
    bl_conf_free(root);
}

static void test_read_missing_top_file(void **state)
{
    read_error("/nonexistent/ballast.conf",
               "open() \"/nonexistent/ballast.conf\" failed (No such file or directory)");
}

static void test_nul_byte(void **state)
{
    static const char data[] = "a;\nb \"x\0\";\n";
    const char *path = write_file_n("nul.conf", data, sizeof(data) - 1);
    char expected[1024];

    snprintf(expected, sizeof(expected), "unexpected NUL byte in %s:2", path);
    read_error(path, expected);
}

static void test_long_lines(void **state)
{
    size_t n = 1 << 20;
    char *text = malloc(n + 64);
    assert_non_null(text);

    /* one 1 MiB word on line 2, read from a file so the read buffer grows */
    memcpy(text, "a;\nb ", 5);
    memset(text + 5, 'x', n);
    memcpy(text + 5 + n, ";\nc;\n", 6);
    const char *path = write_file("long.conf", text);
    struct bl_conf_node *root = read_ok(path);
    assert_int_equal(root->nchildren, 3);
    assert_int_equal(strlen(root->children[1].args[0]), n);
    assert_int_equal(root->children[2].line, 3);
    bl_conf_free(root);

    /* many words on one line */
    strcpy(text, "a");
    for (int i = 0; i < 50000; i++)
        strcat(text + i * 2, " x");
    strcat(text, ";");
    char err[64];
    root = bl_conf_read_string(text, "t.conf", err, sizeof(err));
    assert_non_null(root);
    assert_int_equal(root->children[0].nargs, 50000);
    bl_conf_free(root);
    free(text);
}

static void test_include_glob_sorted(void **state)
{
    char p[256], expected[1024];

    write_file("conf.d/b.conf", "b;\n");
    write_file("conf.d/a.conf", "\na1;\na2 { x; }\n");
    write_file("conf.d/c.conf", "c;");
    write_file("conf.d/skip.txt", "not included;");
    write_file("conf.d/empty.conf", "");
    const char *main_path = write_file("main.conf", "first;\ninclude conf.d/*.conf;\nlast;\n");
    struct bl_conf_node *root = read_ok(main_path);

    assert_string_equal(dump(root, 1), "first@1; a1@2; a2@3 { x@3; } b@1; c@1; last@3;");
    assert_string_equal(root->children[1].file, tpath(p, sizeof(p), "conf.d/a.conf"));
    assert_string_equal(root->children[2].children[0].file, p);
    assert_string_equal(root->children[3].file, tpath(p, sizeof(p), "conf.d/b.conf"));
    assert_string_equal(root->children[4].file, tpath(p, sizeof(p), "conf.d/c.conf"));
    assert_string_equal(root->children[5].file, main_path);
    bl_conf_free(root);

    /* the same include, quoted and as an absolute pattern */
    snprintf(expected, sizeof(expected), "include \"%s/conf.d/[ab].conf\";", tmpdir);
    char err[256];
    root = bl_conf_read_string(expected, "t.conf", err, sizeof(err));
    if (root == NULL)
        fail_msg("%s", err);
    assert_string_equal(dump(root, 0), "a1; a2 { x; } b;");
    bl_conf_free(root);
}

static void test_include_no_match(void **state)
{
    const char *path = write_file("main.conf", "a;\ninclude nothing/*.conf;\n"
                                               "include none?.conf;\nb;\n");
    struct bl_conf_node *root = read_ok(path);

    assert_string_equal(dump(root, 0), "a; b;");
    bl_conf_free(root);
}

static void test_include_inside_block(void **state)
{
    write_file("sites/one.conf", "server {\n    listen 80;\n}\n");
    write_file("sites/two.conf", "server { listen 81; }\n");
    const char *path = write_file("main.conf",
                                  "http {\n    gzip on;\n    include sites/*.conf;\n"
                                  "    sendfile on;\n}\n");
    struct bl_conf_node *root = read_ok(path);

    assert_string_equal(dump(root, 1),
                        "http@1 { gzip@2 on; server@1 { listen@2 80; } "
                        "server@1 { listen@1 81; } sendfile@4 on; }");
    bl_conf_free(root);
}

static void test_include_nested_relative(void **state)
{
    char p[256];

    /* two.conf is found next to one.conf, not next to main.conf */
    write_file("inc/one.conf", "one;\ninclude two.conf;\n");
    write_file("inc/two.conf", "two;\ninclude deeper/*.conf;\n");
    write_file("inc/deeper/three.conf", "three;\n");
    write_file("two.conf", "wrong;\n");
    const char *path = write_file("main.conf", "include inc/one.conf;\n");
    struct bl_conf_node *root = read_ok(path);

    assert_string_equal(dump(root, 0), "one; two; three;");
    assert_string_equal(root->children[1].file, tpath(p, sizeof(p), "inc/two.conf"));
    assert_string_equal(root->children[2].file, tpath(p, sizeof(p), "inc/deeper/three.conf"));
    bl_conf_free(root);
}

static void test_include_relative_top_path(void **state)
{
    write_file("conf/main.conf", "include x.conf;\ninclude sub/*.conf;\n");
    write_file("conf/x.conf", "x;\n");
    write_file("conf/sub/y.conf", "y;\n");
    write_file("conf/bad.conf", "a;\ninclude missing.conf;\n");
    write_file("plain.conf", "include conf/x.conf;\n");
    assert_int_equal(chdir(tmpdir), 0);

    struct bl_conf_node *root = read_ok("conf/main.conf");
    assert_string_equal(dump(root, 0), "x; y;");
    assert_string_equal(root->file, "conf/main.conf");
    assert_string_equal(root->children[0].file, "conf/x.conf");
    assert_string_equal(root->children[1].file, "conf/sub/y.conf");
    bl_conf_free(root);

    /* a file given without a directory resolves against the current directory */
    root = read_ok("plain.conf");
    assert_string_equal(root->children[0].file, "conf/x.conf");
    bl_conf_free(root);

    read_error("conf/bad.conf",
               "open() \"conf/missing.conf\" failed (No such file or directory) "
               "in conf/bad.conf:2");

    /* a string's includes resolve against the current directory */
    char err[256];
    root = bl_conf_read_string("include conf/sub/y.conf;", "inline", err, sizeof(err));
    if (root == NULL)
        fail_msg("%s", err);
    assert_string_equal(root->children[0].file, "conf/sub/y.conf");
    bl_conf_free(root);
}

static void test_include_dir_with_glob_chars(void **state)
{
    char p[256];

    write_file("we[ir]d/a.conf", "a;\n");
    write_file("we[ir]d/b.conf", "b;\n");
    write_file("wid/a.conf", "wrong;\n");
    const char *path = write_file("we[ir]d/main.conf", "include ?.conf;\n");
    struct bl_conf_node *root = read_ok(path);

    assert_string_equal(dump(root, 0), "a; b;");
    assert_string_equal(root->children[0].file, tpath(p, sizeof(p), "we[ir]d/a.conf"));
    bl_conf_free(root);
}

static void test_include_missing_literal(void **state)
{
    char expected[1024];
    const char *path = write_file("main.conf", "a;\n\n  include missing.conf;\n");
    char main_path[256];

    snprintf(main_path, sizeof(main_path), "%s", path);
    snprintf(expected, sizeof(expected),
             "open() \"%s/missing.conf\" failed (No such file or directory) in %s:3", tmpdir,
             main_path);
    read_error(main_path, expected);

    check_error("a;\ninclude /nonexistent/x.conf;",
                "open() \"/nonexistent/x.conf\" failed (No such file or directory) in t.conf:2");
}

static void test_include_directory(void **state)
{
    char expected[1024], main_path[256];

    mkdir(tpath(expected, sizeof(expected), "adir"), 0755);
    snprintf(main_path, sizeof(main_path), "%s", write_file("main.conf", "include adir;\n"));
    snprintf(expected, sizeof(expected), "read() \"%s/adir\" failed (Is a directory) in %s:1",
             tmpdir, main_path);
    read_error(main_path, expected);
}

static void test_include_errors_name_included_file(void **state)
{
    char expected[1024], inc[256];

    tpath(inc, sizeof(inc), "inc.conf");
    write_file("inc.conf", "a;\nb;\n}\n");
    const char *path = write_file("main.conf", "http {\n  include inc.conf;\n}\n");
    snprintf(expected, sizeof(expected), "unexpected \"}\" in %s:3", inc);
    read_error(path, expected);

    /* a block must be closed in the file that opens it */
    write_file("inc.conf", "server {\n  listen 80;\n");
    snprintf(expected, sizeof(expected), "unexpected end of file, expecting \"}\" in %s:3",
             inc);
    read_error(path, expected);

    write_file("inc.conf", "a \"b;\n");
    snprintf(expected, sizeof(expected), "unterminated quoted string in %s:1", inc);
    read_error(path, expected);

    static const char nul[] = "a;\n\n\0";
    write_file_n("inc.conf", nul, sizeof(nul) - 1);
    snprintf(expected, sizeof(expected), "unexpected NUL byte in %s:3", inc);
    read_error(path, expected);
}

static void test_include_cycle(void **state)
{
    char expected[1024], self[256];

    snprintf(self, sizeof(self), "%s", write_file("self.conf", "a;\ninclude self.conf;\n"));
    snprintf(expected, sizeof(expected), "include nesting too deep in %s:2", self);
    read_error(self, expected);

    char ping[256];
    snprintf(ping, sizeof(ping), "%s", write_file("ping.conf", "x {\n include pong.conf;\n}"));
    write_file("pong.conf", "include ping.conf;\n");
    char msg[1024];
    /* ping is read at depths 0, 2, ..., 16, pong at 1, 3, ..., 15: the include in ping at
     * depth 16 would go to 17 */
    snprintf(msg, sizeof(msg), "include nesting too deep in %s:2", ping);
    read_error(ping, msg);
}

static void test_include_depth_limit(void **state)
{
    char name[64], text[256], last[256], expected[1024];

    /* f0 includes f1 ... includes f16: 16 levels of include are allowed */
    for (int i = 0; i < BL_CONF_MAX_INCLUDE_DEPTH; i++) {
        snprintf(name, sizeof(name), "d/f%d.conf", i);
        snprintf(text, sizeof(text), "l%d;\ninclude f%d.conf;\n", i, i + 1);
        write_file(name, text);
    }
    snprintf(name, sizeof(name), "d/f%d.conf", BL_CONF_MAX_INCLUDE_DEPTH);
    snprintf(last, sizeof(last), "%s", write_file(name, "bottom;\n"));
    struct bl_conf_node *root = read_ok(tpath(text, sizeof(text), "d/f0.conf"));
    assert_int_equal(root->nchildren, BL_CONF_MAX_INCLUDE_DEPTH + 1);
    assert_string_equal(root->children[BL_CONF_MAX_INCLUDE_DEPTH].name, "bottom");
    bl_conf_free(root);

    /* one more is too deep, reported at the include that goes too far */
    write_file(name, "bottom;\ninclude f17.conf;\n");
    write_file("d/f17.conf", "too_deep;\n");
    snprintf(expected, sizeof(expected), "include nesting too deep in %s:2", last);
    read_error(tpath(text, sizeof(text), "d/f0.conf"), expected);
}

/* ---- a real config ---------------------------------------------------------------------- */

static const char realistic_conf[] =
    "# /etc/ballast/nginx.conf, as an operator writes it\n"
    "user www-data;\n"
    "worker_processes auto;\n"
    "pid /run/nginx.pid;\n"
    "\n"
    "events {\n"
    "    worker_connections 768;\n"
    "    # multi_accept on;\n"
    "}\n"
    "\n"
    "http {\n"
    "    sendfile on;\n"
    "    tcp_nopush on;\n"
    "    include mime.types;\n"
    "    default_type application/octet-stream;\n"
    "\n"
    "    log_format main '$remote_addr - $remote_user [$time_local] \"$request\" '\n"
    "                    '$status $body_bytes_sent \"$http_referer\" '\n"
    "                    '\"$http_user_agent\" \"$http_x_forwarded_for\"';\n"
    "    access_log /var/log/nginx/access.log main;\n"
    "\n"
    "    map $http_upgrade $connection_upgrade {\n"
    "        default upgrade;\n"
    "        ''      close;\n"
    "    }\n"
    "\n"
    "    upstream backend {\n"
    "        least_conn;\n"
    "        server 10.0.0.1:8080 weight=5 max_fails=3 fail_timeout=30s;\n"
    "        server 10.0.0.2:8080;\n"
    "        server 10.0.0.3:8080 backup;\n"
    "        keepalive 32;\n"
    "        check interval=3000 rise=2 fall=5 timeout=1000 type=http;\n"
    "        check_http_send \"HEAD / HTTP/1.0\\r\\n\\r\\n\";\n"
    "        check_http_expect_alive http_2xx http_3xx;\n"
    "    }\n"
    "\n"
    "    server {\n"
    "        listen 80 default_server;\n"
    "        listen [::]:80 default_server;\n"
    "        server_name example.com www.example.com;\n"
    "\n"
    "        location / {\n"
    "            proxy_pass http://backend;\n"
    "            proxy_set_header Host $host;\n"
    "            proxy_set_header Upgrade $http_upgrade;\n"
    "            proxy_next_upstream error timeout http_502;\n"
    "            proxy_connect_timeout 5s;\n"
    "        }\n"
    "\n"
    "        location = /healthz {\n"
    "            access_log off;\n"
    "            return 200 \"ok\\n\";\n"
    "        }\n"
    "\n"
    "        location ~* \\.(gif|jpg|png)$ {\n"
    "            expires 30d;\n"
    "        }\n"
    "\n"
    "        location /api/ {\n"
    "            limit_req zone=api burst=20 nodelay;\n"
    "            if ($request_method = \"POST\") {\n"
    "                return 405;\n"
    "            }\n"
    "            rewrite ^/api/(.*)$ /$1 break;\n"
    "            proxy_pass http://backend;\n"
    "        }\n"
    "    }\n"
    "\n"
    "    include conf.d/*.conf;\n"
    "}\n";

static const struct bl_conf_node *child(const struct bl_conf_node *n, int i)
{
    assert_true(i < n->nchildren);
    return &n->children[i];
}

static void test_realistic_config(void **state)
{
    write_file("nginx/mime.types", "types {\n    text/html html htm;\n    image/png png;\n}\n");
    write_file("nginx/conf.d/admin.conf", "server {\n    listen 127.0.0.1:8081;\n}\n");
    const char *path = write_file("nginx/nginx.conf", realistic_conf);
    struct bl_conf_node *root = read_ok(path);

    assert_string_equal(
        dump(root, 0),
        "user www-data; worker_processes auto; pid /run/nginx.pid; "
        "events { worker_connections 768; } "
        "http { sendfile on; tcp_nopush on; "
        "types { text/html html htm; image/png png; } "
        "default_type application/octet-stream; "
        "log_format main \"$remote_addr - $remote_user [$time_local] \"$request\" \" "
        "\"$status $body_bytes_sent \"$http_referer\" \" "
        "\"\"$http_user_agent\" \"$http_x_forwarded_for\"\"; "
        "access_log /var/log/nginx/access.log main; "
        "map $http_upgrade $connection_upgrade { default upgrade;  close; } "
        "upstream backend { least_conn; "
        "server 10.0.0.1:8080 weight=5 max_fails=3 fail_timeout=30s; "
        "server 10.0.0.2:8080; server 10.0.0.3:8080 backup; keepalive 32; "
        "check interval=3000 rise=2 fall=5 timeout=1000 type=http; "
        "check_http_send \"HEAD / HTTP/1.0\r\n\r\n\"; "
        "check_http_expect_alive http_2xx http_3xx; } "
        "server { listen 80 default_server; listen [::]:80 default_server; "
        "server_name example.com www.example.com; "
        "location / { proxy_pass http://backend; proxy_set_header Host $host; "
        "proxy_set_header Upgrade $http_upgrade; "
        "proxy_next_upstream error timeout http_502; proxy_connect_timeout 5s; } "
        "location = /healthz { access_log off; return 200 \"ok\n\"; } "
        "location ~* \\.(gif|jpg|png)$ { expires 30d; } "
        "location /api/ { limit_req zone=api burst=20 nodelay; "
        "if ($request_method = \"POST\" ) { return 405; } "
        "rewrite ^/api/(.*)$ /$1 break; proxy_pass http://backend; } } "
        "server { listen 127.0.0.1:8081; } }");

    /* shape and lines, as the directive compiler will walk it */
    assert_int_equal(root->nchildren, 5);
    const struct bl_conf_node *events = child(root, 3);
    assert_string_equal(events->name, "events");
    assert_int_equal(events->line, 6);
    assert_int_equal(child(events, 0)->line, 7);

    const struct bl_conf_node *http = child(root, 4);
    assert_string_equal(http->name, "http");
    assert_int_equal(http->line, 11);
    assert_int_equal(http->is_block, 1);
    assert_int_equal(http->nchildren, 10);

    const struct bl_conf_node *types = child(http, 2);
    assert_string_equal(types->name, "types");
    assert_int_equal(types->line, 1);
    assert_string_equal(types->file + strlen(types->file) - strlen("nginx/mime.types"),
                        "nginx/mime.types");

    const struct bl_conf_node *log_format = child(http, 4);
    assert_int_equal(log_format->line, 17);
    assert_int_equal(log_format->nargs, 4);

    const struct bl_conf_node *map = child(http, 6);
    assert_string_equal(child(map, 1)->name, "");
    assert_string_equal(child(map, 1)->args[0], "close");

    const struct bl_conf_node *upstream = child(http, 7);
    assert_string_equal(upstream->name, "upstream");
    assert_string_equal(upstream->args[0], "backend");
    assert_int_equal(upstream->line, 27);
    assert_int_equal(upstream->nchildren, 8);
    assert_string_equal(child(upstream, 1)->name, "server");
    assert_string_equal(child(upstream, 1)->args[3], "fail_timeout=30s");
    assert_int_equal(child(upstream, 1)->line, 29);
    assert_int_equal(child(upstream, 6)->quoted[0], 1);

    const struct bl_conf_node *server = child(http, 8);
    assert_int_equal(server->line, 38);
    assert_int_equal(server->nchildren, 7);
    const struct bl_conf_node *loc_exact = child(server, 4);
    assert_int_equal(loc_exact->nargs, 2);
    assert_string_equal(loc_exact->args[0], "=");
    assert_string_equal(loc_exact->args[1], "/healthz");
    assert_int_equal(loc_exact->line, 51);
    const struct bl_conf_node *loc_api = child(server, 6);
    const struct bl_conf_node *if_node = child(loc_api, 1);
    assert_string_equal(if_node->name, "if");
    assert_int_equal(if_node->line, 62);
    assert_int_equal(child(if_node, 0)->line, 63);
    assert_int_equal(child(loc_api, 3)->line, 66);

    const struct bl_conf_node *admin = child(http, 9);
    assert_string_equal(admin->file + strlen(admin->file) - strlen("conf.d/admin.conf"),
                        "conf.d/admin.conf");
    assert_string_equal(child(http, 8)->file, path);
    bl_conf_free(root);
}

/* "out of memory", with " in FILE:LINE" where a file was being read. */
static void assert_oom_message(const char *err)
{
    int line = 0, end = 0;
    if (strcmp(err, "out of memory") == 0)
        return;
    const char *at = strrchr(err, ':');
    if (strncmp(err, "out of memory in ", 17) != 0 || !at ||
        sscanf(at + 1, "%d%n", &line, &end) != 1 || at[1 + end] != '\0' || line < 1)
        fail_msg("not an out-of-memory message: \"%s\"", err);
}

/* Each allocation in turn fails once: the reader reports it and frees what it built. */
static void test_out_of_memory(void **state)
{
    char err[256];
    int failures = 0;

    write_file("nginx/mime.types", "types {\n    text/html html htm;\n}\n");
    write_file("nginx/conf.d/admin.conf", "server {\n    listen 127.0.0.1:8081;\n}\n");
    const char *path = write_file("nginx/nginx.conf", realistic_conf);

    for (int n = 1;; n++) {
        alloc_countdown = n;
        struct bl_conf_node *root = bl_conf_read(path, err, sizeof(err));
        int failed = alloc_countdown == 0;
        alloc_countdown = 0;
        if (!failed) {
            if (root == NULL)
                fail_msg("no allocation failed, yet: %s", err);
            bl_conf_free(root);
            break;
        }
        if (root != NULL)
            fail_msg("allocation %d failed, yet the read succeeded", n);
        assert_oom_message(err);
        failures++;
    }
    assert_true(failures > 100);

    for (int n = 1;; n++) {
        alloc_countdown = n;
        struct bl_conf_node *root = bl_conf_read_string(realistic_conf, "t.conf", err,
                                                        sizeof(err));
        int failed = alloc_countdown == 0;
        alloc_countdown = 0;
        if (!failed) {
            bl_conf_free(root);
            break;
        }
        assert_null(root);
        /* the string's includes resolve against the cwd and fail there, or memory runs out */
        if (strncmp(err, "out of memory", 13) != 0 && strstr(err, "mime.types") == NULL)
            fail_msg("allocation %d: %s", n, err);
        if (strncmp(err, "out of memory", 13) == 0)
            assert_oom_message(err);
    }
}

/* Every prefix of real configs, and of inputs full of edge cases, either parses or fails
 * with a located message; ASan and LSan check memory on each. */
static void test_every_prefix(void **state)
{
    static const char *const corpus[] = {
        realistic_conf,
        "a \"b\\\"c\" 'd\\'e' ${f}{ g \\; h; } # c\n i \"j\"{} k $l{ m; }\r\n",
        "if ($a = \"b\") { return 200 'x\ny'; }\ninclude /nonexistent/*.conf;\n",
    };
    char err[256];

    for (size_t c = 0; c < BL_ARRAY_LEN(corpus); c++) {
        size_t len = strlen(corpus[c]);
        char *text = malloc(len + 1);
        assert_non_null(text);
        for (size_t cut = 0; cut <= len; cut++) {
            memcpy(text, corpus[c], cut);
            text[cut] = '\0';
            struct bl_conf_node *root = bl_conf_read_string(text, "t.conf", err, sizeof(err));
            if (root != NULL) {
                bl_conf_free(root);
                continue;
            }
            if (strstr(err, " in t.conf:") == NULL)
                fail_msg("cut %zu of corpus %zu: unlocated error \"%s\"", cut, c, err);
        }
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_bare_words),
        cmocka_unit_test(test_directive_without_args),
        cmocka_unit_test(test_quoted_strings),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_variables_and_braces),
        cmocka_unit_test(test_line_numbers),
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_error_unexpected_close),
        cmocka_unit_test(test_error_unexpected_open),
        cmocka_unit_test(test_error_unexpected_semicolon),
        cmocka_unit_test(test_error_eof_in_directive),
        cmocka_unit_test(test_error_eof_in_block),
        cmocka_unit_test(test_error_unterminated_string),
        cmocka_unit_test(test_error_after_quote),
        cmocka_unit_test(test_error_include_args),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test_setup_teardown(test_read_file, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test(test_read_missing_top_file),
        cmocka_unit_test_setup_teardown(test_nul_byte, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_long_lines, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_glob_sorted, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_no_match, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_inside_block, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_nested_relative, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_relative_top_path, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_dir_with_glob_chars, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_missing_literal, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_directory, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_errors_name_included_file, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_cycle, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_include_depth_limit, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_realistic_config, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test(test_every_prefix),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
