/* nginx-dialect configuration reader: a lexer and a recursive parser that turn config files
 * into a bl_conf_node tree (contract in conf_parse.h).
 *
 * The token rules follow nginx's ngx_conf_read_token() so that configs behave as operators
 * expect from nginx, including its quirks:
 *   - only ' ', '\t', '\r', '\n' separate words; '#' starts a comment only where a token
 *     could start ("a#b" is one word);
 *   - a bare word ends at a separator, ';' or '{', but not at '}' ("a}" is one word), and a
 *     '{' right after '$' stays in the word ("${var}");
 *   - a backslash keeps the next byte in the current word or string; \" \' \\ \n \r \t are
 *     then resolved, any other escape is kept as written ("\." stays "\.", regexes need it);
 *   - a closing quote must be followed by a separator, ';', '{' or ')' ("if ($a = "b")").
 * Where nginx has no rule ballast adds one: an unterminated string is reported at the line
 * of its opening quote, a NUL byte is an error, and blocks nest at most BL_CONF_MAX_NESTING
 * deep so that hostile input cannot exhaust the stack.
 *
 * Error lines: a token error names the line of the offending byte, an end-of-file error the
 * line the file ends on (as nginx: a file ending in '\n' ends on the line after it), an
 * include error the line of the "include" name.
 */
#include "conf/conf_parse.h"

#include "conf/conf_alloc.h"
#include "core/status.h"

#include <errno.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BL_CONF_MAX_INCLUDE_DEPTH 16  /* the header's promise; stops include cycles */
#define BL_CONF_MAX_NESTING       100 /* block levels; real configs use fewer than 10 */

/* How read_statement() ended. */
enum conf_stmt_end {
    STMT_ERROR = -1,      /* err is filled */
    STMT_SEMICOLON = 0,   /* "name args ;" */
    STMT_BLOCK_START = 1, /* "name args {" */
    STMT_BLOCK_END = 2,   /* "}" with no pending arguments */
    STMT_FILE_END = 3,    /* end of input with no pending arguments */
};

/* The root node plus what only the root owns. root must stay first: bl_conf_free() gets a
 * pointer to it and casts back. */
struct conf_tree {
    struct bl_conf_node root;
    char **files; /* every file name nodes point at, each stored once */
    int nfiles;
    int files_cap;
};

/* State of one bl_conf_read*() call. */
struct conf_reader {
    struct conf_tree *tree;
    char *err;
    size_t errlen;
    int nesting; /* block levels open, across includes */
};

/* One file (or string) being read. */
struct conf_lexer {
    const char *pos;
    const char *end;
    const char *file; /* interned in the tree */
    int line;
    int include_depth;    /* 0 for the top file */
    int relative_to_file; /* 1: includes resolve against file's directory; 0: against cwd */
};

/* The words of the statement being read. */
struct conf_stmt {
    char **args;
    unsigned char *quoted;
    int nargs;
    int cap;
    int line; /* line of args[0] */
};

struct conf_node_vec {
    struct bl_conf_node *v;
    int n;
    int cap;
};

static int parse_file(struct conf_reader *rd, const char *path, const char *from_file,
                      int from_line, int include_depth, struct conf_node_vec *out);

__attribute__((format(printf, 4, 5)))
static void set_error(struct conf_reader *rd, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (rd->err == NULL || rd->errlen == 0)
        return;
    va_start(ap, fmt);
    n = vsnprintf(rd->err, rd->errlen, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if (file != NULL && (size_t)n < rd->errlen)
        snprintf(rd->err + n, rd->errlen - (size_t)n, " in %s:%d", file, line);
}

/* Out of memory at file:line, or before any file is open (file NULL). */
static void set_oom(struct conf_reader *rd, const char *file, int line)
{
    set_error(rd, file, line, "out of memory");
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Returns the tree's copy of name, adding it once. */
static const char *intern_file(struct conf_reader *rd, const char *name)
{
    struct conf_tree *t = rd->tree;

    for (int i = 0; i < t->nfiles; i++) {
        if (strcmp(t->files[i], name) == 0)
            return t->files[i];
    }
    if (t->nfiles == t->files_cap) {
        int cap = t->files_cap ? t->files_cap * 2 : 8;
        char **files = conf_realloc(t->files, (size_t)cap * sizeof(*files));
        if (files == NULL)
            return NULL;
        t->files = files;
        t->files_cap = cap;
    }
    char *copy = conf_strdup(name);
    if (copy == NULL)
        return NULL;
    t->files[t->nfiles++] = copy;
    return copy;
}

static void node_free_contents(struct bl_conf_node *node)
{
    free(node->name);
    for (int i = 0; i < node->nargs; i++)
        free(node->args[i]);
    free(node->args);
    free(node->quoted);
    for (int i = 0; i < node->nchildren; i++)
        node_free_contents(&node->children[i]);
    free(node->children);
    memset(node, 0, sizeof(*node));
}

static int vec_push(struct conf_node_vec *vec, const struct bl_conf_node *node)
{
    if (vec->n == vec->cap) {
        int cap = vec->cap ? vec->cap * 2 : 4;
        struct bl_conf_node *v = conf_realloc(vec->v, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return BL_ERR;
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *node;
    return BL_OK;
}

static void stmt_clear(struct conf_stmt *st)
{
    for (int i = 0; i < st->nargs; i++)
        free(st->args[i]);
    st->nargs = 0;
}

static void stmt_free(struct conf_stmt *st)
{
    stmt_clear(st);
    free(st->args);
    free(st->quoted);
    memset(st, 0, sizeof(*st));
}

/* Copies [start, end) into a new string, resolving escapes as nginx does. */
static char *unescape(const char *start, const char *end)
{
    char *word = conf_malloc((size_t)(end - start) + 1);
    char *dst = word;

    if (word == NULL)
        return NULL;
    for (const char *src = start; src < end;) {
        if (src[0] == '\\' && src + 1 < end) {
            switch (src[1]) {
            case '"':
            case '\'':
            case '\\':
                *dst++ = src[1];
                src += 2;
                continue;
            case 'n':
                *dst++ = '\n';
                src += 2;
                continue;
            case 'r':
                *dst++ = '\r';
                src += 2;
                continue;
            case 't':
                *dst++ = '\t';
                src += 2;
                continue;
            default:
                break; /* unknown escape: keep the backslash, as nginx does */
            }
        }
        *dst++ = *src++;
    }
    *dst = '\0';
    return word;
}

static int stmt_push(struct conf_reader *rd, const struct conf_lexer *lx, struct conf_stmt *st,
                     const char *start, const char *end, int quoted, int line)
{
    if (st->nargs == st->cap) {
        int cap = st->cap ? st->cap * 2 : 8;
        char **args = conf_realloc(st->args, (size_t)cap * sizeof(*args));
        if (args == NULL)
            goto oom;
        st->args = args;
        unsigned char *q = conf_realloc(st->quoted, (size_t)cap);
        if (q == NULL)
            goto oom;
        st->quoted = q;
        st->cap = cap;
    }
    char *word = unescape(start, end);
    if (word == NULL)
        goto oom;
    if (st->nargs == 0)
        st->line = line;
    st->args[st->nargs] = word;
    st->quoted[st->nargs] = (unsigned char)quoted;
    st->nargs++;
    return BL_OK;
oom:
    set_oom(rd, lx->file, line);
    return BL_ERR;
}

/* Reads a "..." or '...' string starting at lx->pos (the opening quote). */
static int lex_quoted(struct conf_reader *rd, struct conf_lexer *lx, struct conf_stmt *st)
{
    char quote = *lx->pos;
    int start_line = lx->line;
    const char *start = lx->pos + 1;
    const char *p = start;

    for (;;) {
        if (p >= lx->end) {
            set_error(rd, lx->file, start_line, "unterminated quoted string");
            return BL_ERR;
        }
        if (*p == quote)
            break;
        if (*p == '\\' && p + 1 < lx->end)
            p++; /* the escaped byte cannot close the string */
        if (*p == '\n')
            lx->line++;
        p++;
    }
    if (stmt_push(rd, lx, st, start, p, 1, start_line) != BL_OK)
        return BL_ERR;
    lx->pos = p + 1;

    /* The next token is read by the caller: ')' is let through for "if ($a = "b")", where
     * it becomes a word of its own. */
    if (lx->pos < lx->end) {
        char ch = *lx->pos;
        if (!is_space(ch) && ch != ';' && ch != '{' && ch != ')') {
            set_error(rd, lx->file, lx->line, "unexpected \"%c\"", ch);
            return BL_ERR;
        }
    }
    return BL_OK;
}

/* Reads a bare word starting at lx->pos. */
static int lex_word(struct conf_reader *rd, struct conf_lexer *lx, struct conf_stmt *st)
{
    const char *start = lx->pos;
    const char *p = start;
    int start_line = lx->line;
    int after_dollar = 0;

    while (p < lx->end) {
        char ch = *p;
        if (ch == '{' && after_dollar) {
            p++; /* "${" does not open a block; as in nginx "${{" does not either */
            continue;
        }
        after_dollar = 0;
        if (ch == '\\') {
            p++;
            if (p < lx->end) {
                if (*p == '\n')
                    lx->line++;
                p++;
            }
            continue;
        }
        if (ch == '$') {
            after_dollar = 1;
            p++;
            continue;
        }
        if (is_space(ch) || ch == ';' || ch == '{')
            break;
        p++;
    }
    if (stmt_push(rd, lx, st, start, p, 0, start_line) != BL_OK)
        return BL_ERR;
    lx->pos = p;
    return BL_OK;
}

/* Reads the words of one statement up to and including its ';' or '{', or one '}', or the
 * end of input. */
static enum conf_stmt_end read_statement(struct conf_reader *rd, struct conf_lexer *lx,
                                         struct conf_stmt *st)
{
    stmt_clear(st);
    for (;;) {
        if (lx->pos >= lx->end) {
            if (st->nargs > 0) {
                set_error(rd, lx->file, lx->line,
                          "unexpected end of file, expecting \";\" or \"}\"");
                return STMT_ERROR;
            }
            return STMT_FILE_END;
        }
        char ch = *lx->pos;
        int rc;
        switch (ch) {
        case '\n':
            lx->line++;
            lx->pos++;
            continue;
        case ' ':
        case '\t':
        case '\r':
            lx->pos++;
            continue;
        case '#': {
            const char *nl = memchr(lx->pos, '\n', (size_t)(lx->end - lx->pos));
            lx->pos = nl != NULL ? nl : lx->end; /* the '\n' is counted above */
            continue;
        }
        case ';':
        case '{':
            if (st->nargs == 0) {
                set_error(rd, lx->file, lx->line, "unexpected \"%c\"", ch);
                return STMT_ERROR;
            }
            lx->pos++;
            return ch == ';' ? STMT_SEMICOLON : STMT_BLOCK_START;
        case '}':
            if (st->nargs != 0) {
                set_error(rd, lx->file, lx->line, "unexpected \"}\"");
                return STMT_ERROR;
            }
            lx->pos++;
            return STMT_BLOCK_END;
        case '"':
        case '\'':
            rc = lex_quoted(rd, lx, st);
            break;
        default:
            rc = lex_word(rd, lx, st);
            break;
        }
        if (rc != BL_OK)
            return STMT_ERROR;
    }
}

static int has_wildcard(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* Length of the directory part of file, with its trailing '/' ("conf/a.conf" -> 5). */
static size_t dir_prefix_len(const char *file)
{
    const char *slash = strrchr(file, '/');
    return slash != NULL ? (size_t)(slash - file) + 1 : 0;
}

/* Returns prefix + name in a new string; with escape, glob's special characters in prefix
 * get a backslash so a directory named "conf[1]" is matched literally. */
static char *join_path(const char *prefix, size_t prefix_len, const char *name, int escape)
{
    size_t name_len = strlen(name);
    char *path = conf_malloc(prefix_len * 2 + name_len + 1);
    char *dst = path;

    if (path == NULL)
        return NULL;
    for (size_t i = 0; i < prefix_len; i++) {
        if (escape && strchr("*?[\\", prefix[i]) != NULL)
            *dst++ = '\\';
        *dst++ = prefix[i];
    }
    memcpy(dst, name, name_len + 1);
    return path;
}

/* Expands "include PATTERN;" into out, at the point where it stands. */
static int do_include(struct conf_reader *rd, struct conf_lexer *lx, struct conf_stmt *st,
                      enum conf_stmt_end end, struct conf_node_vec *out)
{
    if (end != STMT_SEMICOLON) {
        set_error(rd, lx->file, st->line, "directive \"include\" is not terminated by \";\"");
        return BL_ERR;
    }
    if (st->nargs != 2) {
        set_error(rd, lx->file, st->line,
                  "invalid number of arguments in \"include\" directive");
        return BL_ERR;
    }

    const char *arg = st->args[1];
    size_t prefix_len = 0;
    if (lx->relative_to_file && arg[0] != '/')
        prefix_len = dir_prefix_len(lx->file);

    int wildcard = has_wildcard(arg);
    char *path = join_path(lx->file, prefix_len, arg, wildcard);
    if (path == NULL) {
        set_oom(rd, lx->file, st->line);
        return BL_ERR;
    }
    if (!wildcard) {
        int rc = parse_file(rd, path, lx->file, st->line, lx->include_depth + 1, out);
        free(path);
        return rc;
    }

    glob_t gl;
    int grc = glob(path, 0, NULL, &gl);
    if (grc == GLOB_NOMATCH) {
        free(path);
        return BL_OK;
    }
    if (grc != 0) {
        set_error(rd, lx->file, st->line, "glob() \"%s\" failed", path);
        free(path);
        return BL_ERR;
    }
    free(path);

    int rc = BL_OK;
    for (size_t i = 0; i < gl.gl_pathc && rc == BL_OK; i++)
        rc = parse_file(rd, gl.gl_pathv[i], lx->file, st->line, lx->include_depth + 1, out);
    globfree(&gl);
    return rc;
}

/* Moves the statement's words into node; st is left empty. */
static void node_take_stmt(struct bl_conf_node *node, struct conf_stmt *st, const char *file)
{
    memset(node, 0, sizeof(*node));
    node->name = st->args[0];
    node->nargs = st->nargs - 1;
    if (node->nargs > 0) {
        memmove(st->args, st->args + 1, (size_t)node->nargs * sizeof(*st->args));
        memmove(st->quoted, st->quoted + 1, (size_t)node->nargs);
        node->args = st->args;
        node->quoted = st->quoted;
    } else {
        free(st->args);
        free(st->quoted);
    }
    node->file = file;
    node->line = st->line;
    memset(st, 0, sizeof(*st));
}

/* Parses statements into out until the end of the file (in_block == 0) or the '}' that
 * closes the current block (in_block == 1). On error out keeps what was added so far; its
 * owner frees it. */
static int parse_block(struct conf_reader *rd, struct conf_lexer *lx, int in_block,
                       struct conf_node_vec *out)
{
    struct conf_stmt st = {0};
    int rc = BL_ERR;

    for (;;) {
        enum conf_stmt_end end = read_statement(rd, lx, &st);

        if (end == STMT_ERROR)
            break;
        if (end == STMT_BLOCK_END) {
            if (!in_block) {
                set_error(rd, lx->file, lx->line, "unexpected \"}\"");
                break;
            }
            rc = BL_OK;
            break;
        }
        if (end == STMT_FILE_END) {
            if (in_block) {
                set_error(rd, lx->file, lx->line, "unexpected end of file, expecting \"}\"");
                break;
            }
            rc = BL_OK;
            break;
        }

        if (strcmp(st.args[0], "include") == 0) {
            if (do_include(rd, lx, &st, end, out) != BL_OK)
                break;
            continue;
        }

        struct bl_conf_node node;
        node_take_stmt(&node, &st, lx->file);
        if (end == STMT_BLOCK_START) {
            struct conf_node_vec children = {0};
            int crc;

            node.is_block = 1;
            if (rd->nesting >= BL_CONF_MAX_NESTING) {
                set_error(rd, lx->file, node.line, "blocks nested too deep");
                node_free_contents(&node);
                break;
            }
            rd->nesting++;
            crc = parse_block(rd, lx, 1, &children);
            rd->nesting--;
            node.children = children.v;
            node.nchildren = children.n;
            if (crc != BL_OK) {
                node_free_contents(&node);
                break;
            }
        }
        if (vec_push(out, &node) != BL_OK) {
            set_oom(rd, lx->file, node.line);
            node_free_contents(&node);
            break;
        }
    }
    stmt_free(&st);
    return rc;
}

/* Reads path whole into a new NUL-terminated buffer. */
static int load_file(struct conf_reader *rd, const char *path, const char *from_file,
                     int from_line, char **data, size_t *len)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        set_error(rd, from_file, from_line, "open() \"%s\" failed (%s)", path, strerror(errno));
        return BL_ERR;
    }

    size_t cap = 4096, n = 0;
    char *buf = conf_malloc(cap);
    if (buf == NULL)
        goto oom;
    for (;;) {
        if (cap - n < 2) {
            char *bigger = conf_realloc(buf, cap * 2);
            if (bigger == NULL)
                goto oom;
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                set_error(rd, from_file, from_line, "read() \"%s\" failed (%s)", path,
                          strerror(e));
                free(buf);
                fclose(f);
                return BL_ERR;
            }
            break; /* EOF */
        }
    }
    fclose(f);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return BL_OK;
oom:
    free(buf);
    fclose(f);
    set_oom(rd, from_file, from_line);
    return BL_ERR;
}

/* Parses text as the contents of file (already interned) into out. */
static int parse_text(struct conf_reader *rd, const char *text, size_t len, const char *file,
                      int include_depth, int relative_to_file, struct conf_node_vec *out)
{
    struct conf_lexer lx = {
        .pos = text,
        .end = text + len,
        .file = file,
        .line = 1,
        .include_depth = include_depth,
        .relative_to_file = relative_to_file,
    };
    return parse_block(rd, &lx, 0, out);
}

static int parse_file(struct conf_reader *rd, const char *path, const char *from_file,
                      int from_line, int include_depth, struct conf_node_vec *out)
{
    char *text;
    size_t len;

    if (include_depth > BL_CONF_MAX_INCLUDE_DEPTH) {
        set_error(rd, from_file, from_line, "include nesting too deep");
        return BL_ERR;
    }
    if (load_file(rd, path, from_file, from_line, &text, &len) != BL_OK)
        return BL_ERR;

    const char *file = intern_file(rd, path);
    if (file == NULL) {
        free(text);
        set_oom(rd, from_file, from_line);
        return BL_ERR;
    }

    /* A NUL would cut a word short in C strings later on; refuse it outright. */
    const char *nul = memchr(text, '\0', len);
    if (nul != NULL) {
        int line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        set_error(rd, file, line, "unexpected NUL byte");
        free(text);
        return BL_ERR;
    }

    int rc = parse_text(rd, text, len, file, include_depth, 1, out);
    free(text);
    return rc;
}

/* Allocates the tree and its root node named "" for file name. */
static struct conf_tree *tree_new(struct conf_reader *rd, const char *name)
{
    struct conf_tree *t = conf_calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    rd->tree = t;
    t->root.is_block = 1;
    t->root.name = conf_strdup("");
    t->root.file = intern_file(rd, name);
    if (t->root.name == NULL || t->root.file == NULL) {
        bl_conf_free(&t->root);
        rd->tree = NULL;
        return NULL;
    }
    return t;
}

static struct bl_conf_node *tree_finish(struct conf_reader *rd, int rc,
                                        struct conf_node_vec *top)
{
    struct conf_tree *t = rd->tree;

    t->root.children = top->v;
    t->root.nchildren = top->n;
    if (rc != BL_OK) {
        bl_conf_free(&t->root);
        return NULL;
    }
    if (rd->err != NULL && rd->errlen > 0)
        rd->err[0] = '\0';
    return &t->root;
}

struct bl_conf_node *bl_conf_read(const char *path, char *err, size_t errlen)
{
    struct conf_reader rd = {.err = err, .errlen = errlen};
    struct conf_node_vec top = {0};

    if (path == NULL) {
        set_error(&rd, NULL, 0, "no configuration file given");
        return NULL;
    }
    if (tree_new(&rd, path) == NULL) {
        set_oom(&rd, NULL, 0);
        return NULL;
    }
    int rc = parse_file(&rd, path, NULL, 0, 0, &top);
    return tree_finish(&rd, rc, &top);
}

struct bl_conf_node *bl_conf_read_string(const char *text, const char *name, char *err,
                                         size_t errlen)
{
    struct conf_reader rd = {.err = err, .errlen = errlen};
    struct conf_node_vec top = {0};

    if (name == NULL)
        name = "<string>";
    if (tree_new(&rd, name) == NULL) {
        set_oom(&rd, NULL, 0);
        return NULL;
    }
    int rc = parse_text(&rd, text != NULL ? text : "", text != NULL ? strlen(text) : 0,
                        rd.tree->root.file, 0, 0, &top);
    return tree_finish(&rd, rc, &top);
}

void bl_conf_free(struct bl_conf_node *root)
{
    struct conf_tree *t = (struct conf_tree *)root;

    if (root == NULL)
        return;
    node_free_contents(&t->root);
    for (int i = 0; i < t->nfiles; i++)
        /* files[0..nfiles) are set before nfiles grows (intern_file): the analyzer loses it */
        free(t->files[i]); /* NOLINT(clang-analyzer-core.CallAndMessage) */
    free(t->files);
    free(t);
}

int bl_conf_dump(const struct bl_conf_node *root, FILE *out, char *err, size_t errlen)
{
    const struct conf_tree *t = (const struct conf_tree *)root;

    for (int i = 0; i < t->nfiles; i++) {
        FILE *f = fopen(t->files[i], "re");
        if (f == NULL) {
            snprintf(err, errlen, "open() \"%s\" failed (%s)", t->files[i], strerror(errno));
            return BL_ERR;
        }
        fprintf(out, "# configuration file %s:\n", t->files[i]);
        char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, out);
        int bad = ferror(f);
        fclose(f);
        if (bad) {
            snprintf(err, errlen, "read() \"%s\" failed", t->files[i]);
            return BL_ERR;
        }
        fputc('\n', out);
    }
    if (fflush(out) != 0 || ferror(out)) {
        snprintf(err, errlen, "write() to stdout failed (%s)", strerror(errno));
        return BL_ERR;
    }
    return BL_OK;
}
