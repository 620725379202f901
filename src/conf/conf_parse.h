/* nginx-dialect configuration reader: text to a tree of directives that remember file:line.
 *
 * Grammar (nginx's): a directive is a name followed by arguments and ends with ';', or with a
 * block '{ ... }'. '#' starts a comment to the end of the line (outside quotes). Arguments are
 * bare words or strings in "double" or 'single' quotes, with \" \' \\ \n \t \r escapes inside
 * quotes; a bare word may contain '$' and '{' '}' only as in "${var}" (nginx rule: a '{' that
 * follows '$' does not open a block). `include PATTERN;` is expanded while reading: PATTERN is
 * a glob (matches sorted, no match is not an error when the pattern has a wildcard, is an
 * error when it has none), relative paths are resolved against the directory of the file that
 * holds the include. Include depth is limited to 16 to stop cycles.
 *
 * The reader knows no directive names: validation is the directive table's job (conf.h).
 *
 * Ownership: bl_conf_read() returns a tree that the caller frees with bl_conf_free(). All
 * strings in it are owned by the tree. Not thread-safe per tree; any thread may read files.
 */
#ifndef BL_CONF_CONF_PARSE_H
#define BL_CONF_CONF_PARSE_H

#include <stddef.h>
#include <stdio.h>

struct bl_conf_node {
    char *name;                    /* directive name */
    char **args;                   /* nargs arguments, quotes removed, escapes resolved */
    int nargs;
    const char *file;              /* file the directive is in (owned by the tree) */
    int line;                      /* line of the directive name, 1-based */
    int is_block;                  /* 1 when it ended with '{ ... }' (even an empty one) */
    struct bl_conf_node *children; /* block contents, in order (NULL when none) */
    int nchildren;
    unsigned char *quoted;         /* quoted[i] = 1 when args[i] was quoted (so "$x" and $x
                                    * can be told apart if needed); may be NULL when nargs==0 */
};

/* Reads FILE and its includes. Returns the root: a block node named "" holding the top-level
 * directives, or NULL on error with err filled as nginx words it, without the program prefix:
 *   unexpected "}" in conf/a.conf:12
 *   unexpected end of file, expecting ";" or "}" in conf/a.conf:40
 *   unterminated quoted string in conf/a.conf:7
 *   open() "conf/x.conf" failed (No such file or directory) in conf/a.conf:3
 *   invalid number of arguments in "include" directive in conf/a.conf:3
 * and also: unexpected NUL byte, directive "include" is not terminated by ";", include
 * nesting too deep, blocks nested too deep (over 100 levels), read() "PATH" failed (...),
 * out of memory (with " in FILE:LINE" where the reader was in a file, as any error; it never
 * exits). The root's file is path (name for bl_conf_read_string) and its line is 0;
 * every node's file pointer lives as long as the tree.
 */
struct bl_conf_node *bl_conf_read(const char *path, char *err, size_t errlen);

/* Same, from a string; name is used as the file name in errors; includes resolve against the
 * current directory. For tests. */
struct bl_conf_node *bl_conf_read_string(const char *text, const char *name, char *err,
                                         size_t errlen);

void bl_conf_free(struct bl_conf_node *root);

/* `-T`: writes every file the tree was read from (root from bl_conf_read), each once, in the
 * order they were first read, as nginx -T does: "# configuration file PATH:\n", the file's
 * bytes, "\n". The files are read again, so an edit since the tree was read shows. Returns
 * BL_OK, or BL_ERR with err holding `open() "PATH" failed (...)` or a write error. */
int bl_conf_dump(const struct bl_conf_node *root, FILE *out, char *err, size_t errlen);

#endif
