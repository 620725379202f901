/* The directive table and the compiler from the directive tree to struct bl_config.
 *
 * One table drives parsing, validation, defaults and the docs check: a directive is found by
 * name and context, its argument count is checked, then its handler runs. The table's default
 * strings are the defaults: before the file, each is compiled by its own row as if it were a
 * line of the file (main and events into the config, http/server/location into the built-in
 * level that http inherits from, upstream into each group), so a default is written once and
 * the docs check (tests/unit/conf/test_conf.c) compares docs/configuration.md with the same
 * row. Settings that http, server and location may all hold live in struct bl_loc_conf and are
 * merged downwards after the whole file is read, as nginx merges them, so their order in the
 * file does not matter.
 *
 * Nothing here exits: a failed allocation is an error that names the directive and file:line,
 * so a reload that runs out of memory leaves the running generation serving.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/conf_alloc.h"
#include "conf/conf_parse.h"
#include "conf/discovered.h"
#include "conf/hide_headers.h"
#include "conf/overlay.h"
#include "conf/proxy_ssl.h"
#include "conf/unsupported.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/regex.h"
#include "core/status.h"
#include "core/units.h"
#include "http/template.h"
#include "conf/dns_conf.h"
#include "upstream/balancer.h"
#include "upstream/health_check.h"
#include "upstream/outlier.h"
#include "upstream/queue.h"
#include "upstream/retry_budget.h"

/* Contexts, as bits, outermost first: a default applies in a row's outermost context. */
#define CTX_MAIN     0x01u
#define CTX_EVENTS   0x02u
#define CTX_HTTP     0x04u
#define CTX_UPSTREAM 0x08u
#define CTX_SERVER   0x10u
#define CTX_LOCATION 0x20u
#define CTX_ADMIN    0x40u
#define CTX_IF       0x80u     /* inside `if (...) { }` of a server or location */
#define CTX_STREAM   0x100u    /* stream { } */
#define CTX_SSERVER  0x200u    /* a server { } of stream */
#define CTX_DNS      0x400u    /* dns { } (conf/dns_conf.h) */
#define CTX_HSL      (CTX_HTTP | CTX_SERVER | CTX_LOCATION)
#define CTX_SS       (CTX_STREAM | CTX_SSERVER)
#define CTX_ANY      0x77fu

static const char *const ctx_names[] = {"main", "events", "http", "upstream", "server",
                                        "location", "admin", "if", "stream",
                                        "stream server", "dns"};

#define ANY_ARGS 255

struct compiler;
typedef int (*handler_fn)(struct compiler *c, const struct bl_conf_node *n);

/* What a typed row's argument is; h_typed parses it into its bl_loc_conf field. */
enum field_type {
    FT_NONE = 0,     /* the handler does the work */
    FT_TIME,         /* milliseconds; a bare number is seconds */
    FT_SIZE,         /* bytes; k and m suffixes */
    FT_NUM,          /* plain number */
    FT_FLAG,         /* on | off as 1 | 0 */
};

/* struct directive.flags */
#define DIR_BLOCK        0x1u  /* takes a { ... } block (and must have one) */
#define DIR_DEFAULT_DOC  0x2u  /* deflt is documented, not compiled: it is what the owning module
                                * does when the line is absent (the health check's request),
                                * or what the absence means (server_name "": no names);
                                * test_conf.c checks the check module agrees */

struct directive {
    const char *name;
    uint16_t contexts;         /* CTX_* bits where it may stand */
    uint8_t min_args, max_args; /* max ANY_ARGS: no limit */
    uint8_t flags;             /* DIR_* */
    uint8_t type;              /* enum field_type; FT_NONE: handler only */
    uint16_t offset;           /* typed rows: the field in struct bl_loc_conf */
    const char *syntax;        /* arguments as the docs write them, forms separated by '\n';
                                * NULL for typed rows: derived from the type */
    const char *deflt;         /* default arguments, exactly as a line would write them; NULL:
                                * none (the setting is off or absent until a line sets it) */
    handler_fn handler;
};

struct compiler {
    struct bl_config *cfg;
    unsigned ctx;
    struct bl_server_block *srv;
    struct bl_location *loc;
    struct bl_upstream_group *grp;
    struct bl_loc_conf *lc;              /* the level (http, server, location) being compiled */
    const struct directive *dir;         /* row of the directive being compiled */
    struct bl_conf_node *defaults;       /* the table's defaults, read as a config (see top) */
    int seen_http, seen_events, seen_stream;
    struct bl_stream_server *ssrv;       /* the stream server being compiled */
    struct bl_stream_conf *sc;           /* the stream level being compiled (defaults, stream,
                                          * a stream server) */
    uint8_t in_stream;                   /* inside stream { }: upstream blocks are stream's */
    struct bl_rw_op **ops;               /* where rewrite, return, set, if and break go: the */
    uint32_t *nops;                      /* server's, the location's or the if's list */
    struct pending_pass {
        struct bl_location *loc;
        char *host;                      /* NAME or HOST:PORT, owned */
        int tls;                         /* https://: a bare address's port is 443 */
        const char *file;
        int line;
    } *pending;
    uint32_t npending;
    char *err;
    size_t errlen;
    const struct bl_conf_node *node;     /* directive being compiled, for errors */
    uint8_t discovered;                  /* the upstream being compiled takes its servers
                                          * from discovery (discovered.h): the file's server
                                          * lines are skipped */
    const struct bl_conf_node *resolve_node; /* a `server ... resolve` line, for the check
                                          * that a resolver exists */
};

/* ---------------------------------------------------------------- helpers */

static int fail(struct compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats "<message> in FILE:LINE" for the current directive. */
static int fail(struct compiler *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < c->errlen && c->node)
        snprintf(c->err + n, c->errlen - (size_t)n, " in %s:%d", c->node->file, c->node->line);
    return BL_ERR;
}

/* A warning about the current directive, in nginx's form, to the error log (stderr while
 * loading at start-up, as nginx's `[warn]` lines). */
static void warn(struct compiler *c, const char *msg)
{
    bl_log(BL_LOG_WARN, "%s in %s:%d", msg, c->node->file, c->node->line);
}

/* Refuses, or warns about and skips, a directive or parameter this build knows it lacks. */
static int unsupported(struct compiler *c, const struct bl_unsupported *u, const char *what)
{
    char msg[512];
    bl_unsupported_format(u, what, msg, sizeof(msg));
    if (u->level == BL_UNSUPPORTED_WARN) {
        warn(c, msg);
        return BL_OK;
    }
    return fail(c, "%s", msg);
}

static int invalid_value(struct compiler *c, const char *value)
{
    return fail(c, "invalid value \"%s\" in \"%s\" directive", value, c->node->name);
}

/* A failed allocation while compiling the current directive. */
static int oom(struct compiler *c)
{
    return fail(c, "out of memory in \"%s\" directive", c->node->name);
}

/* The same where no node is current (after the walk): names the directive and its place. */
static int oom_at(struct compiler *c, const char *directive, const char *file, int line)
{
    snprintf(c->err, c->errlen, "out of memory in \"%s\" directive in %s:%d", directive, file,
             line);
    return BL_ERR;
}

/* Makes room for one more zeroed element at the end of an array of n; returns the new array,
 * or NULL with the old one untouched. */
static void *grow(void *arr, uint32_t n, size_t elem)
{
    void *p = conf_realloc(arr, (n + 1) * elem);
    if (p)
        memset((char *)p + n * elem, 0, elem);
    return p;
}

/* nginx directives: a bare time is seconds; times up to 30 days. */
static int parse_time_ms(const char *s, uint64_t *out)
{
    return bl_parse_time_ms(s, 1000, 30 * 86400000ull, out);
}

static int parse_num(const char *s, int64_t min, int64_t max, int64_t *out)
{
    uint64_t v;
    if (bl_parse_uint(s, (uint64_t)min, (uint64_t)max, 0, &v) != BL_OK)
        return BL_ERR;
    *out = (int64_t)v;
    return BL_OK;
}

/* A template that may use the config's own variables ($1, set ones, named captures). */
static struct bl_template *template_vars(struct compiler *c, const char *text)
{
    char err[256];
    struct bl_template *t = bl_template_compile_vars(text, &c->cfg->vars, err, sizeof(err));
    if (!t)
        fail(c, "%s", err);
    return t;
}

static uint64_t *lc_field(struct bl_loc_conf *lc, size_t offset)
{
    return (uint64_t *)((char *)lc + offset);
}

/* ---------------------------------------------------------------- the walk */

static int compile_block(struct compiler *c, const struct bl_conf_node *block, unsigned ctx);
static int apply_defaults(struct compiler *c, unsigned ctx);

/* ---- main context ---- */

static int h_worker_processes(struct compiler *c, const struct bl_conf_node *n)
{
    if (strcmp(n->args[0], "auto") == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        c->cfg->workers = cpus > 0 ? (int)cpus : 1;
        return BL_OK;
    }
    int64_t v;
    if (parse_num(n->args[0], 1, 256, &v) != BL_OK)
        return invalid_value(c, n->args[0]);
    c->cfg->workers = (int)v;
    return BL_OK;
}

static int h_error_log(struct compiler *c, const struct bl_conf_node *n)
{
    int level = BL_LOG_ERROR;
    if (n->nargs > 1) {
        level = bl_log_level_parse(n->args[1]);
        if (level < 0)
            return invalid_value(c, n->args[1]);
    }
    char *path = conf_strdup(n->args[0]);
    if (!path)
        return oom(c);
    free(c->cfg->error_log);
    c->cfg->error_log = path;
    c->cfg->error_log_level = level;
    return BL_OK;
}

static int h_pid(struct compiler *c, const struct bl_conf_node *n)
{
    char *path = NULL;
    if (strcmp(n->args[0], "off") != 0 && !(path = conf_strdup(n->args[0])))
        return oom(c);
    free(c->cfg->pid_file);
    c->cfg->pid_file = path;
    return BL_OK;
}

static int h_shutdown_timeout(struct compiler *c, const struct bl_conf_node *n)
{
    if (parse_time_ms(n->args[0], &c->cfg->shutdown_timeout) != BL_OK)
        return invalid_value(c, n->args[0]);
    return BL_OK;
}

static int h_worker_rlimit_nofile(struct compiler *c, const struct bl_conf_node *n)
{
    int64_t v;
    if (parse_num(n->args[0], 1, 1 << 24, &v) != BL_OK)
        return invalid_value(c, n->args[0]);
    c->cfg->rlimit_nofile = (int)v;
    return BL_OK;
}

static int h_ignore(struct compiler *c, const struct bl_conf_node *n)
{
    BL_UNUSED(c);
    BL_UNUSED(n);
    return BL_OK;
}

static int h_flag_ignore(struct compiler *c, const struct bl_conf_node *n)
{
    if (strcmp(n->args[0], "on") != 0 && strcmp(n->args[0], "off") != 0)
        return invalid_value(c, n->args[0]);
    return BL_OK;
}

static int h_daemon(struct compiler *c, const struct bl_conf_node *n)
{
    if (strcmp(n->args[0], "on") != 0 && strcmp(n->args[0], "off") != 0)
        return invalid_value(c, n->args[0]);
    c->cfg->daemon = strcmp(n->args[0], "on") == 0;
    return BL_OK;
}

/* The reader expands include before the table sees the tree; the row exists for the docs. */
static int h_include(struct compiler *c, const struct bl_conf_node *n)
{
    BL_UNUSED(n);
    return fail(c, "\"include\" was not expanded");
}

static int h_events(struct compiler *c, const struct bl_conf_node *n)
{
    if (c->seen_events++)
        return fail(c, "\"events\" directive is duplicate");
    return compile_block(c, n, CTX_EVENTS);
}

static int h_worker_connections(struct compiler *c, const struct bl_conf_node *n)
{
    int64_t v;
    if (parse_num(n->args[0], 1, 10000000, &v) != BL_OK)
        return invalid_value(c, n->args[0]);
    c->cfg->worker_connections = (int)v;
    return BL_OK;
}

/* The loop backend: read once at start (workers keep their loop across reloads). */
static int h_use(struct compiler *c, const struct bl_conf_node *n)
{
    if (strcmp(n->args[0], "epoll") == 0)
        c->cfg->events_use = BL_LOOP_EPOLL;
    else if (strcmp(n->args[0], "io_uring") == 0)
        c->cfg->events_use = BL_LOOP_IO_URING;
    else
        return invalid_value(c, n->args[0]);
    return BL_OK;
}

/* ---- dns context (conf/dns_conf.h; the front end is dns/dns.h) ---- */

static int h_stream_listen(struct compiler *c, const struct bl_conf_node *n);

static int h_dns(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_config *cfg = c->cfg;
    if (cfg->dns)
        return fail(c, "\"dns\" directive is duplicate");
    if (!(cfg->dns = conf_calloc(1, sizeof(*cfg->dns))))
        return oom(c);
    uint32_t first_listen = cfg->nlistens;
    if (compile_block(c, n, CTX_DNS) != BL_OK)
        return BL_ERR;
    c->node = n;
    if (!cfg->dns->zone_len)
        return fail(c, "\"dns\" block has no \"zone\"");
    if (cfg->nlistens == first_listen)
        return fail(c, "\"dns\" block has no \"listen\"");
    return BL_OK;
}

/* stream's listen, then: UDP only, and the listener answers DNS. */
static int h_dns_listen(struct compiler *c, const struct bl_conf_node *n)
{
    if (h_stream_listen(c, n) != BL_OK)
        return BL_ERR;
    struct bl_listen *l = &c->cfg->listens[c->cfg->nlistens - 1];
    if (!l->udp)
        return fail(c, "DNS over TCP is not supported in this build: \"listen\" in \"dns\" "
                       "needs \"udp\"");
    l->dns = c->cfg->dns;
    return BL_OK;
}

static int h_dns_zone(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256];
    if (bl_dns_conf_zone(c->cfg->dns, n->args[0], err, sizeof(err)) != BL_OK)
        return fail(c, "%s", err);
    return BL_OK;
}

static int h_dns_ttl(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_dns_conf *d = c->cfg->dns;
    uint64_t ms;
    if (d->ttl_set++)
        return fail(c, "\"ttl\" directive is duplicate");
    /* RFC 2181: TTLs are whole seconds; a day is already far beyond health-aware answers. */
    if (bl_parse_time_ms(n->args[0], 1000, 86400000ull, &ms) != BL_OK || ms % 1000)
        return fail(c, "invalid value \"%s\" in \"ttl\" directive (whole seconds, 0 to 1d)",
                    n->args[0]);
    d->ttl_s = (uint32_t)(ms / 1000);
    return BL_OK;
}

static int h_dns_record(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256];
    if (bl_dns_conf_record(c->cfg->dns, n->args, n->file, n->line, err, sizeof(err)) != BL_OK)
        return fail(c, "%s", err);
    return BL_OK;
}

/* ---- admin context ---- */

static int h_admin(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_admin_conf *a = &c->cfg->admin;
    if (a->enabled)
        return fail(c, "\"admin\" directive is duplicate");
    a->enabled = 1;
    if (apply_defaults(c, CTX_ADMIN) != BL_OK)
        return oom(c);
    a->listen_set = 0; /* the default's line is no duplicate of the file's */
    c->node = n;
    return compile_block(c, n, CTX_ADMIN);
}

/* ADDRESS:PORT only: a bare port would be every address, and the API changes what ballast
 * does, so where it listens beyond loopback is written out. */
static int h_admin_listen(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_admin_conf *a = &c->cfg->admin;
    if (a->listen_set++)
        return fail(c, "\"listen\" directive is duplicate in \"admin\"");
    if (!strchr(n->args[0], ':'))
        return fail(c, "\"listen\" in \"admin\" needs ADDRESS:PORT (as 127.0.0.1:%s), not a "
                       "bare port", n->args[0]);
    char err[256];
    if (bl_addr_parse(n->args[0], 0, 0, &a->addr, &a->addrlen, err, sizeof(err)) != 0)
        return fail(c, "%s in \"listen\" directive", err);
    bl_addr_format((struct sockaddr *)&a->addr, a->text, sizeof(a->text));
    return BL_OK;
}

/* The token is read at load (so -t checks the file): its first line, without the line end and
 * surrounding blanks; it must be a visible-ASCII word, as a Bearer token is. */
static int h_admin_token_file(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_admin_conf *a = &c->cfg->admin;
    if (a->token_set++)
        return fail(c, "\"token_file\" directive is duplicate");
    int fd = open(n->args[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(c, "open() \"%s\" failed (%d: %s) in \"token_file\" directive", n->args[0],
                    errno, strerror(errno));
    char buf[4097];
    ssize_t r = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (r < 0)
        return fail(c, "read() \"%s\" failed (%s)", n->args[0], strerror(errno));
    buf[r] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char *t = buf;
    while (*t == ' ' || *t == '\t')
        t++;
    size_t len = strlen(t);
    while (len && (t[len - 1] == ' ' || t[len - 1] == '\t'))
        t[--len] = '\0';
    if (len == 0)
        return fail(c, "token file \"%s\" has no token on its first line", n->args[0]);
    if (len > 1024)
        return fail(c, "token in \"%s\" is longer than 1024 bytes", n->args[0]);
    for (size_t i = 0; i < len; i++)
        if (t[i] <= ' ' || t[i] >= 0x7f)
            return fail(c, "token in \"%s\" has a blank or a non-ASCII byte", n->args[0]);
    char *path = conf_strdup(n->args[0]), *tok = conf_strdup(t);
    if (!path || !tok) {
        free(path);
        free(tok);
        return oom(c);
    }
    a->token_file = path;
    a->token = tok;
    a->token_len = len;
    return BL_OK;
}

/* ---- http context ---- */

/* Makes lc the level that http/server/location directives write to; returns the previous. */
static struct bl_loc_conf *enter_level(struct compiler *c, struct bl_loc_conf *lc)
{
    struct bl_loc_conf *saved = c->lc;
    c->lc = lc;
    return saved;
}

static int h_http(struct compiler *c, const struct bl_conf_node *n)
{
    if (c->seen_http++)
        return fail(c, "\"http\" directive is duplicate");
    struct bl_loc_conf *saved = enter_level(c, &c->cfg->http_conf);
    int rc = compile_block(c, n, CTX_HTTP);
    enter_level(c, saved);
    return rc;
}

/* The predefined formats: nginx's combined, and ballast's upstream (combined plus where the
 * request went and how long it took), which a log_format of that name replaces. */
static const struct {
    const char *name;
    const char *line;
} builtin_formats[] = {
    {"combined", "$remote_addr - $remote_user [$time_local] \"$request\" $status "
                 "$body_bytes_sent \"$http_referer\" \"$http_user_agent\""},
    {"upstream", "$remote_addr - $remote_user [$time_local] \"$request\" $status "
                 "$body_bytes_sent \"$http_referer\" \"$http_user_agent\" \"$upstream_addr\" "
                 "$upstream_status $request_time $upstream_response_time"},
};

static struct bl_log_format *format_add(struct compiler *c, const char *name, int escape,
                                        const char *line, int builtin)
{
    struct bl_config *cfg = c->cfg;
    char err[256];
    struct bl_log_format **fmts = grow(cfg->log_formats, cfg->nlog_formats, sizeof(*fmts));
    if (!fmts) {
        oom(c);
        return NULL;
    }
    cfg->log_formats = fmts;
    struct bl_log_format *f = conf_calloc(1, sizeof(*f));
    if (!f || !(f->name = conf_strdup(name))) {
        free(f);
        oom(c);
        return NULL;
    }
    f->escape = (uint8_t)escape;
    f->builtin = (uint8_t)builtin;
    if (!(f->line = bl_template_compile_vars(line, &cfg->vars, err, sizeof(err)))) {
        free(f->name);
        free(f);
        fail(c, "%s", err);
        return NULL;
    }
    cfg->log_formats[cfg->nlog_formats++] = f;
    return f;
}

/* The format called name: a log_format of the file above this line, else a predefined one.
 * NULL with the error set (unknown, or out of memory). */
static const struct bl_log_format *format_find(struct compiler *c, const char *name)
{
    struct bl_config *cfg = c->cfg;
    const struct bl_log_format *builtin = NULL;
    for (uint32_t i = 0; i < cfg->nlog_formats; i++) {
        if (strcmp(cfg->log_formats[i]->name, name) != 0)
            continue;
        if (!cfg->log_formats[i]->builtin)
            return cfg->log_formats[i];
        builtin = cfg->log_formats[i];
    }
    if (builtin)
        return builtin;
    for (size_t k = 0; k < BL_ARRAY_LEN(builtin_formats); k++) {
        if (strcmp(builtin_formats[k].name, name) != 0)
            continue;
        return format_add(c, name, BL_ESC_DEFAULT, builtin_formats[k].line, 1);
    }
    fail(c, "unknown log format \"%s\"", name);
    return NULL;
}

static int h_log_format(struct compiler *c, const struct bl_conf_node *n)
{
    const char *name = n->args[0];
    /* combined is nginx's, always there: redefining it is nginx's error too. upstream is
     * ballast's own and gives way to the operator's. */
    int dup = strcmp(name, "combined") == 0;
    for (uint32_t i = 0; i < c->cfg->nlog_formats && !dup; i++)
        dup = !c->cfg->log_formats[i]->builtin && strcmp(c->cfg->log_formats[i]->name, name) == 0;
    if (dup)
        return fail(c, "duplicate \"log_format\" name \"%s\"", name);
    int first = 1;
    int escape = BL_ESC_DEFAULT;
    if (n->nargs > 2 && strncmp(n->args[1], "escape=", 7) == 0) {
        const char *e = n->args[1] + 7;
        if (strcmp(e, "default") == 0)
            escape = BL_ESC_DEFAULT;
        else if (strcmp(e, "json") == 0)
            escape = BL_ESC_JSON;
        else if (strcmp(e, "none") == 0)
            escape = BL_ESC_NONE;
        else
            return fail(c, "unknown log format escaping \"%s\"", e);
        first = 2;
    }
    /* nginx joins the strings as they are, with nothing between them. */
    size_t len = 1;
    for (int i = first; i < n->nargs; i++)
        len += strlen(n->args[i]);
    char *line = conf_malloc(len);
    if (!line)
        return oom(c);
    line[0] = '\0';
    for (int i = first; i < n->nargs; i++)
        strcat(line, n->args[i]);
    int ok = format_add(c, name, escape, line, 0) != NULL;
    free(line);
    return ok ? BL_OK : BL_ERR;
}

/* The log for path and format, shared by every line that names both. */
static struct bl_access_log *access_log_get(struct compiler *c, const char *path,
                                            const struct bl_log_format *format)
{
    struct bl_config *cfg = c->cfg;
    for (uint32_t i = 0; i < cfg->naccess_logs; i++)
        if (strcmp(cfg->access_logs[i]->path, path) == 0 && cfg->access_logs[i]->format == format)
            return cfg->access_logs[i];
    struct bl_access_log **logs = grow(cfg->access_logs, cfg->naccess_logs, sizeof(*logs));
    if (!logs)
        return NULL;
    cfg->access_logs = logs;
    struct bl_access_log *al = conf_calloc(1, sizeof(*al));
    if (!al || !(al->path = conf_strdup(path))) {
        free(al);
        return NULL;
    }
    al->fd = -1;
    al->format = format;
    al->index = cfg->naccess_logs;
    al->buffer = BL_ACCESS_LOG_BUFFER;
    al->flush_ms = BL_ACCESS_LOG_FLUSH_MS;
    cfg->access_logs[cfg->naccess_logs++] = al;
    return al;
}

static int h_access_log(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    const char *path = n->args[0];
    if (strcmp(path, "off") == 0) {
        if (n->nargs > 1)
            return invalid_value(c, n->args[1]);
        lc->set |= BL_LC_ACCESS_LOG | BL_LC_ACCESS_OFF;
        return BL_OK;
    }
    if (strncmp(path, "syslog:", 7) == 0) {
        static const struct bl_unsupported u = {"access_log", BL_UNSUPPORTED_ERROR,
                                                "logging to syslog is"};
        return unsupported(c, &u, "\"access_log syslog:\"");
    }
    if (strchr(path, '$'))
        return fail(c, "variables in \"access_log\" paths are not supported");
    if (c->in_stream && n->nargs < 2)
        return fail(c, "\"access_log\" in stream needs a log_format name (stream has no "
                       "default format)");
    const struct bl_log_format *fmt = format_find(c, n->nargs > 1 ? n->args[1] : "combined");
    if (!fmt)
        return BL_ERR;
    uint64_t buffer = 0, flush = 0;
    const char *cond = NULL;
    for (int i = 2; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strncmp(a, "buffer=", 7) == 0) {
            if (bl_parse_size(a + 7, &buffer) != BL_OK || buffer < 1 ||
                buffer > BL_ACCESS_LOG_BUFFER_MAX)
                return fail(c, "invalid buffer size \"%s\"", a + 7);
        } else if (strncmp(a, "flush=", 6) == 0) {
            if (parse_time_ms(a + 6, &flush) != BL_OK || flush < 1)
                return fail(c, "invalid flush time \"%s\"", a + 6);
        } else if (strncmp(a, "if=", 3) == 0 && a[3]) {
            cond = a + 3;
        } else if (strncmp(a, "gzip", 4) == 0) {
            static const struct bl_unsupported u = {"access_log", BL_UNSUPPORTED_ERROR,
                                                    "compressed access logs are"};
            char what[160];
            snprintf(what, sizeof(what), "\"%.100s\"", a);
            return unsupported(c, &u, what);
        } else {
            return invalid_value(c, a);
        }
    }
    struct bl_template *t = NULL;
    if (cond && !(t = template_vars(c, cond)))
        return BL_ERR;
    struct bl_access_log *al = access_log_get(c, path, fmt);
    struct bl_log_line *list = al ? grow(lc->access_logs, lc->naccess_logs, sizeof(*list)) : NULL;
    if (!list) {
        bl_template_free(t);
        return oom(c);
    }
    lc->access_logs = list;
    if (buffer || flush) {
        /* nginx: flush= alone means a 64k buffer; one file written with two buffer settings
         * is its error too. */
        uint32_t b = buffer ? (uint32_t)buffer : 64 * 1024;
        uint32_t f = flush ? (uint32_t)flush : BL_ACCESS_LOG_FLUSH_MS;
        if (al->explicit_buffer && (al->buffer != b || al->flush_ms != f)) {
            bl_template_free(t);
            return fail(c, "access_log \"%s\" already defined with conflicting parameters", path);
        }
        al->buffer = b;
        al->flush_ms = f;
        al->explicit_buffer = 1;
    }
    lc->access_logs[lc->naccess_logs++] = (struct bl_log_line){al, t};
    lc->set |= BL_LC_ACCESS_LOG;
    return BL_OK;
}

static int h_request_id_header(struct compiler *c, const struct bl_conf_node *n)
{
    const char *name = n->args[0];
    char *copy = NULL;
    if (strcmp(name, "off") != 0) {
        if (!*name)
            return invalid_value(c, name);
        for (const char *p = name; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
                return invalid_value(c, name);
        static const char *const managed[] = {"host", "connection", "content-length",
                                               "transfer-encoding", "traceparent",
                                               "tracestate", "upgrade", "te"};
        for (size_t i = 0; i < BL_ARRAY_LEN(managed); i++)
            if (strcasecmp(name, managed[i]) == 0)
                return fail(c, "\"request_id_header\" cannot be \"%s\"", name);
        if (!(copy = conf_strdup(name)))
            return oom(c);
    }
    struct bl_loc_conf *lc = c->lc;
    if (lc->set & BL_LC_REQUEST_ID) {
        free(copy);
        return fail(c, "\"request_id_header\" directive is duplicate");
    }
    lc->request_id_header = copy;
    lc->request_id_header_len = copy ? (uint32_t)strlen(copy) : 0;
    lc->set |= BL_LC_REQUEST_ID;
    return BL_OK;
}

static int h_large_client_header_buffers(struct compiler *c, const struct bl_conf_node *n)
{
    int64_t num;
    uint64_t size;
    if (parse_num(n->args[0], 1, 64, &num) != BL_OK)
        return invalid_value(c, n->args[0]);
    if (bl_parse_size(n->args[1], &size) != BL_OK || size < 128 || size > 1024 * 1024)
        return invalid_value(c, n->args[1]);
    if ((uint64_t)num * size > 1024 * 1024)
        return fail(c, "\"large_client_header_buffers\" total size exceeds 1m");
    c->lc->lchb_number = (uint64_t)num;
    c->lc->lchb_size = size;
    return BL_OK;
}

static int h_proxy_set_header(struct compiler *c, const struct bl_conf_node *n)
{
    const char *name = n->args[0];
    if (!*name)
        return invalid_value(c, name);
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
            return invalid_value(c, name);
    /* "Connection" is ballast's to manage: upstream keep-alive is automatic, so the
     * `proxy_set_header Connection "";` that nginx needs is accepted and has no effect. */
    if (strcasecmp(name, "connection") == 0 && n->args[1][0] == '\0')
        return BL_OK;
    /* Other Connection values go as written (nginx's WebSocket recipe: Upgrade from
     * $http_upgrade, Connection from $connection_upgrade), in place of ballast's own. */
    if (strcasecmp(name, "content-length") == 0 ||
        strcasecmp(name, "transfer-encoding") == 0)
        return fail(c, "\"proxy_set_header\" cannot change \"%s\"", name);
    struct bl_template *t = NULL;
    if (n->args[1][0] && !(t = template_vars(c, n->args[1])))
        return BL_ERR;
    struct bl_loc_conf *lc = c->lc;
    struct bl_header_set *hdrs = grow(lc->headers, lc->nheaders, sizeof(*hdrs));
    char *copy = hdrs ? conf_strdup(name) : NULL;
    if (hdrs) {
        lc->headers = hdrs;
        lc->set |= BL_LC_HEADERS;
    }
    if (!copy) {
        bl_template_free(t);
        return oom(c);
    }
    struct bl_header_set *h = &lc->headers[lc->nheaders++];
    h->name = copy;
    h->name_len = (uint32_t)strlen(name);
    h->remove = t == NULL;
    h->value = t;
    return BL_OK;
}

/* add_header NAME VALUE [always]: fields added to responses to the client (proxy_head.c). */
static int h_add_header(struct compiler *c, const struct bl_conf_node *n)
{
    const char *name = n->args[0];
    if (!*name || strspn(name, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(name))
        return invalid_value(c, name);
    if (n->nargs == 3 && strcmp(n->args[2], "always") != 0)
        return invalid_value(c, n->args[2]);
    struct bl_template *t = template_vars(c, n->args[1]);
    if (!t)
        return BL_ERR;
    struct bl_loc_conf *lc = c->lc;
    struct bl_add_header *hs = grow(lc->add_headers, lc->nadd_headers, sizeof(*hs));
    char *copy = hs ? conf_strdup(name) : NULL;
    if (hs) {
        lc->add_headers = hs;
        lc->set |= BL_LC_ADD_HEADERS;
    }
    if (!copy) {
        bl_template_free(t);
        return oom(c);
    }
    struct bl_add_header *h = &lc->add_headers[lc->nadd_headers++];
    h->name = copy;
    h->name_len = (uint32_t)strlen(name);
    h->always = n->nargs == 3;
    h->value = t;
    return BL_OK;
}

/* proxy_pass_header lets one of the fields nginx hides by default through; proxy_hide_header
 * hides one more. Names are checked as field names; a pass of a field that is not hidden by
 * default is refused, since it would do nothing. */
static int h_proxy_pass_header(struct compiler *c, const struct bl_conf_node *n)
{
    const char *name = n->args[0];
    struct bl_loc_conf *lc = c->lc;
    if (!*name || strspn(name, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(name))
        return invalid_value(c, name);
    if (!(lc->set & BL_LC_HIDE)) {
        lc->pass_headers = 0;
        lc->hide_headers = NULL;
        lc->nhide_headers = 0;
        lc->set |= BL_LC_HIDE;
    }
    if (strcmp(n->name, "proxy_pass_header") == 0) {
        uint32_t bit = bl_hidden_by_default(name, strlen(name));
        if (!bit)
            return fail(c, "\"%s\" is passed to the client anyway: \"proxy_pass_header\" "
                           "only lets through Server, Date, X-Pad and X-Accel-*", name);
        lc->pass_headers |= bit;
        return BL_OK;
    }
    char **names = grow(lc->hide_headers, lc->nhide_headers, sizeof(*names));
    if (!names)
        return oom(c);
    lc->hide_headers = names;
    if (!(names[lc->nhide_headers] = conf_strdup(name)))
        return oom(c);
    lc->nhide_headers++;
    return BL_OK;
}

/* ---- upstream ---- */

static struct bl_upstream_group *group_find(struct bl_config *cfg, const char *name)
{
    for (uint32_t i = 0; i < cfg->ngroups; i++)
        if (strcmp(cfg->groups[i]->name, name) == 0)
            return cfg->groups[i];
    return NULL;
}

/* A new group with the table's upstream defaults applied; NULL with err filled. n gives the
 * group's file:line (the upstream block, or the proxy_pass that implies a group). */
static struct bl_upstream_group *group_new(struct compiler *c, const char *name,
                                           const struct bl_conf_node *n)
{
    struct bl_config *cfg = c->cfg;
    struct bl_upstream_group **groups = grow(cfg->groups, cfg->ngroups, sizeof(*groups));
    if (!groups) {
        oom_at(c, n->name, n->file, n->line);
        return NULL;
    }
    cfg->groups = groups;
    struct bl_upstream_group *g = conf_calloc(1, sizeof(*g));
    if (!g || !(g->name = conf_strdup(name))) {
        free(g);
        oom_at(c, n->name, n->file, n->line);
        return NULL;
    }
    g->file = n->file;
    g->line = n->line;
    g->balancer = &bl_balancer_rr;
    g->index = cfg->ngroups;
    cfg->groups[cfg->ngroups++] = g;

    struct bl_upstream_group *saved_grp = c->grp;
    const struct bl_conf_node *saved_node = c->node;
    c->grp = g;
    int rc = apply_defaults(c, CTX_UPSTREAM);
    c->grp = saved_grp;
    c->node = saved_node;
    if (rc != BL_OK) {
        if (strncmp(c->err, "out of memory", 13) == 0)
            oom_at(c, n->name, n->file, n->line);
        return NULL;
    }
    return g;
}

static int compile_discovered_line(struct compiler *c, const struct bl_conf_node *disc,
                                   const char *item);

static int h_upstream(struct compiler *c, const struct bl_conf_node *n)
{
    if (group_find(c->cfg, n->args[0]))
        return fail(c, "duplicate upstream \"%s\"%s", n->args[0],
                    c->in_stream ? " (http and stream share upstream names)" : "");
    c->grp = group_new(c, n->args[0], n);
    if (!c->grp)
        return BL_ERR;
    /* `discover etcd`: once the watcher has a set, it replaces the file's server lines (the
     * file's serve until etcd answers). */
    const struct bl_conf_node *disc = NULL;
    for (int i = 0; i < n->nchildren; i++)
        if (strcmp(n->children[i].name, "discover") == 0)
            disc = &n->children[i];
    const struct bl_discovered *set = disc ? bl_conf_discovered_get(n->args[0], NULL) : NULL;
    c->discovered = set != NULL;
    int rc = compile_block(c, n, CTX_UPSTREAM);
    c->discovered = 0;
    for (uint32_t i = 0; rc == BL_OK && set && i < set->nitems; i++)
        rc = compile_discovered_line(c, disc, set->items[i]);
    if (rc == BL_OK && c->grp->nservers == 0) {
        c->node = n;
        rc = fail(c, "no servers are inside upstream");
    }
    char err[256] = "";
    if (rc == BL_OK && bl_check_validate(c->grp->check, err, sizeof(err)) != BL_OK) {
        c->node = n;
        rc = fail(c, "%s in upstream \"%s\"", err, c->grp->name);
    }
    c->grp = NULL;
    return rc;
}

/* A new server in g with nginx's parameter defaults (these are server parameters, not
 * directives, so they are not table rows); NULL when out of memory. */
static struct bl_upstream_server *group_add_server(struct bl_upstream_group *g, const char *name)
{
    char *copy = conf_strdup(name);
    struct bl_upstream_server *servers = copy ? grow(g->servers, g->nservers, sizeof(*servers))
                                              : NULL;
    if (!servers) {
        free(copy);
        return NULL;
    }
    g->servers = servers;
    struct bl_upstream_server *s = &g->servers[g->nservers];
    s->index = g->nservers++;
    s->name = copy;
    s->weight = 1;
    s->max_fails = 1;
    s->fail_timeout_ms = 10000;
    return s;
}

/* The parameters of server line n (after the address) into s. */
static int server_params(struct compiler *c, const struct bl_conf_node *n,
                         struct bl_upstream_server *s)
{
    for (int i = 1; i < n->nargs; i++) {
        const char *a = n->args[i];
        int64_t v;
        uint64_t t;
        if (strncmp(a, "weight=", 7) == 0) {
            if (parse_num(a + 7, 1, 1000000, &v) != BL_OK)
                return invalid_value(c, a);
            s->weight = (int)v;
        } else if (strncmp(a, "max_fails=", 10) == 0) {
            if (parse_num(a + 10, 0, 1000000, &v) != BL_OK)
                return invalid_value(c, a);
            s->max_fails = (int)v;
        } else if (strncmp(a, "fail_timeout=", 13) == 0) {
            if (parse_time_ms(a + 13, &t) != BL_OK)
                return invalid_value(c, a);
            s->fail_timeout_ms = (uint32_t)t;
        } else if (strncmp(a, "max_conns=", 10) == 0) {
            if (parse_num(a + 10, 0, 1000000000, &v) != BL_OK)
                return invalid_value(c, a);
            s->max_conns = (int)v;
        } else if (strncmp(a, "slow_start=", 11) == 0) {
            if (parse_time_ms(a + 11, &t) != BL_OK)
                return invalid_value(c, a);
            s->slow_start_ms = (uint32_t)t;
        } else if (strcmp(a, "backup") == 0) {
            s->backup = 1;
        } else if (strcmp(a, "down") == 0) {
            s->down = 1;
        } else if (strcmp(a, "resolve") != 0) {
            return invalid_value(c, a);
        }
    }
    return BL_OK;
}

static int has_arg(const struct bl_conf_node *n, const char *word)
{
    for (int i = 1; i < n->nargs; i++)
        if (strcmp(n->args[i], word) == 0)
            return 1;
    return 0;
}

/* `server NAME:PORT ... resolve`: one server per address the resolver found (discovered.h);
 * before its first answer, the address the system resolver gives at load, as for any name. */
static int server_resolve(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_upstream_group *g = c->grp;
    char **names = grow(g->resolve_names, g->nresolve, sizeof(*names));
    if (!names)
        return oom(c);
    g->resolve_names = names;
    if (!(names[g->nresolve] = conf_strdup(n->args[0])))
        return oom(c);
    g->nresolve++;
    c->resolve_node = n;
    const struct bl_discovered *set = bl_conf_discovered_get(g->name, n->args[0]);
    if (!set)
        return 1; /* not yet: the plain path below */
    /* NAME:PORT, [V6]:PORT never (a literal needs no resolving), or NAME (port 80) */
    const char *colon = strrchr(n->args[0], ':');
    const char *port = colon ? colon + 1 : "80";
    for (uint32_t i = 0; i < set->nitems; i++) {
        char text[128], err[256];
        snprintf(text, sizeof(text), strchr(set->items[i], ':') ? "[%s]:%s" : "%s:%s",
                 set->items[i], port);
        struct sockaddr_storage ss;
        socklen_t sl;
        if (bl_addr_parse(text, 80, 0, &ss, &sl, err, sizeof(err)) != 0)
            return fail(c, "%s in upstream \"%s\"", err, g->name);
        struct bl_upstream_server *s = group_add_server(g, text);
        if (!s)
            return oom(c);
        s->addr = ss;
        s->addrlen = sl;
        if (server_params(c, n, s) != BL_OK)
            return BL_ERR;
    }
    return BL_OK;
}

static int server_line(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_upstream_group *g = c->grp;
    char err[256];
    struct sockaddr_storage ss;
    socklen_t sl;
    if (has_arg(n, "resolve")) {
        int rc = server_resolve(c, n);
        if (rc != 1)
            return rc;
    }
    if (bl_addr_parse(n->args[0], 80, 1, &ss, &sl, err, sizeof(err)) != 0)
        return fail(c, "%s in upstream \"%s\"", err, g->name);
    struct bl_upstream_server *s = group_add_server(g, n->args[0]);
    if (!s)
        return oom(c);
    s->addr = ss;
    s->addrlen = sl;
    return server_params(c, n, s);
}

static int h_upstream_server(struct compiler *c, const struct bl_conf_node *n)
{
    if (c->discovered)
        return BL_OK; /* `discover` has a set: the file's lines serve again if it goes */
    return server_line(c, n);
}

/* One server line found by `discover` (disc), checked by the watcher with
 * bl_conf_check_server_line() before it was published. */
static int compile_discovered_line(struct compiler *c, const struct bl_conf_node *disc,
                                   const char *item)
{
    char buf[512];
    char *args[16];
    int nargs = 0;
    snprintf(buf, sizeof(buf), "%s", item);
    for (char *save = NULL, *t = strtok_r(buf, " \t", &save); t && nargs < 16;
         t = strtok_r(NULL, " \t", &save))
        args[nargs++] = t;
    if (nargs == 0)
        return BL_OK;
    struct bl_conf_node line = {.name = (char *)"server", .args = args, .nargs = nargs,
                                .file = disc->file, .line = disc->line};
    const struct bl_conf_node *saved = c->node;
    c->node = &line;
    int rc = server_line(c, &line);
    c->node = saved;
    return rc;
}

/* `discover etcd URL [prefix=P];` (src/discover/etcd.c watches; docs/discovery.md) */
static int h_discover(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_upstream_group *g = c->grp;
    if (g->discover_url)
        return fail(c, "\"discover\" directive is duplicate");
    if (strcmp(n->args[0], "etcd") != 0)
        return fail(c, "unknown discovery \"%s\" in upstream \"%s\" (etcd is supported; "
                    "DNS names use \"server NAME resolve\")", n->args[0], g->name);
    if (n->nargs < 2)
        return fail(c, "\"discover etcd\" needs the URL of etcd's v3 JSON gateway "
                    "(http://127.0.0.1:2379)");
    const char *url = n->args[1];
    if (strncmp(url, "https://", 8) == 0)
        return fail(c, "\"discover etcd\" speaks plain http:// only: point it at a local etcd "
                    "or gateway (TLS to etcd is not supported)");
    if (strncmp(url, "http://", 7) != 0)
        return invalid_value(c, url);
    char host[256], err[256];
    snprintf(host, sizeof(host), "%s", url + 7);
    size_t hl = strlen(host);
    if (hl && host[hl - 1] == '/')
        host[--hl] = 0;
    if (!hl || strchr(host, '/') ||
        bl_addr_parse(host, 2379, 1, &g->discover_addr, &g->discover_addrlen, err,
                      sizeof(err)) != 0)
        return fail(c, "invalid etcd URL \"%s\" in upstream \"%s\"", url, g->name);
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "/services/%s/", g->name);
    for (int i = 2; i < n->nargs; i++) {
        if (strncmp(n->args[i], "prefix=", 7) != 0 || !n->args[i][7])
            return invalid_value(c, n->args[i]);
        snprintf(prefix, sizeof(prefix), "%s", n->args[i] + 7);
    }
    if (!(g->discover_url = conf_strdup(url)) || !(g->discover_prefix = conf_strdup(prefix)))
        return oom(c);
    return BL_OK;
}

/* `resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off];` (nginx), http level */
static int h_resolver(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_config *cfg = c->cfg;
    if (cfg->nresolvers)
        return fail(c, "\"resolver\" directive is duplicate");
    cfg->resolver_ipv4 = cfg->resolver_ipv6 = 1;
    for (int i = 0; i < n->nargs; i++) {
        const char *a = n->args[i];
        uint64_t t;
        if (strncmp(a, "valid=", 6) == 0) {
            if (parse_time_ms(a + 6, &t) != BL_OK || t == 0)
                return invalid_value(c, a);
            cfg->resolver_valid_ms = t;
        } else if (strncmp(a, "ipv4=", 5) == 0 || strncmp(a, "ipv6=", 5) == 0) {
            int on = strcmp(a + 5, "on") == 0;
            if (!on && strcmp(a + 5, "off") != 0)
                return invalid_value(c, a);
            *(a[3] == '4' ? &cfg->resolver_ipv4 : &cfg->resolver_ipv6) = (uint8_t)on;
        } else if (strncmp(a, "status_zone=", 12) == 0) {
            continue; /* nginx Plus's counters: the metrics carry nothing per resolver */
        } else {
            char err[256];
            if (cfg->nresolvers == 4)
                return fail(c, "more than 4 addresses in \"resolver\"");
            if (bl_addr_parse(a, 53, 0, &cfg->resolvers[cfg->nresolvers],
                              &cfg->resolver_lens[cfg->nresolvers], err, sizeof(err)) != 0)
                return fail(c, "%s in \"resolver\" (an IP address, optionally with a port)", err);
            cfg->nresolvers++;
        }
    }
    if (!cfg->nresolvers)
        return fail(c, "\"resolver\" needs an address");
    if (!cfg->resolver_ipv4 && !cfg->resolver_ipv6)
        return fail(c, "\"ipv4=off\" and \"ipv6=off\" together in \"resolver\"");
    return BL_OK;
}

static int h_resolver_timeout(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t t;
    if (parse_time_ms(n->args[0], &t) != BL_OK || t == 0)
        return invalid_value(c, n->args[0]);
    c->cfg->resolver_timeout_ms = t;
    return BL_OK;
}

/* Load-balancing methods: one per group (nginx only warns about a second one; ballast
 * refuses it, since the first would silently stop applying). */
static int set_method(struct compiler *c, const struct bl_conf_node *n, const char *name)
{
    struct bl_upstream_group *g = c->grp;
    if (g->balancer != &bl_balancer_rr || g->hash_key)
        return fail(c, "load balancing method redefined by \"%s\"", n->name);
    const struct bl_balancer_ops *ops = bl_balancer_find(name);
    if (!ops)
        return fail(c, "unknown load balancing method \"%s\"", name);
    g->balancer = ops;
    return BL_OK;
}

static int h_lb_simple(struct compiler *c, const struct bl_conf_node *n)
{
    return set_method(c, n, n->name);
}

static int h_lb_hash(struct compiler *c, const struct bl_conf_node *n)
{
    const char *method = "hash";
    double bound = 0;
    for (int i = 1; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strcmp(a, "consistent") == 0 && strcmp(method, "hash") == 0) {
            method = "hash_consistent";
        } else if (strcmp(a, "maglev") == 0 && strcmp(method, "hash") == 0) {
            method = "hash_maglev";
        } else if (strncmp(a, "bound=", 6) == 0) {
            char *end;
            bound = strtod(a + 6, &end);
            if (*end || end == a + 6 || bound < 1.0 || bound > 100.0)
                return invalid_value(c, a);
        } else {
            return invalid_value(c, a);
        }
    }
    if (bound && strcmp(method, "hash_consistent") != 0)
        return fail(c, "\"bound=\" needs \"consistent\" in \"hash\" directive");
    if (set_method(c, n, method) != BL_OK)
        return BL_ERR;
    char err[256];
    struct bl_template *t = bl_template_compile(n->args[0], err, sizeof(err));
    if (!t)
        return fail(c, "%s", err);
    char *key = conf_strdup(n->args[0]);
    if (!key) {
        bl_template_free(t);
        return oom(c);
    }
    c->grp->hash_key = key;
    c->grp->hash_key_compiled = t;
    c->grp->hash_bound = bound;
    return BL_OK;
}

static int h_lb_random(struct compiler *c, const struct bl_conf_node *n)
{
    if (n->nargs >= 1 && strcmp(n->args[0], "two") != 0)
        return invalid_value(c, n->args[0]);
    if (n->nargs == 2 && strcmp(n->args[1], "least_conn") != 0)
        return invalid_value(c, n->args[1]);
    if (set_method(c, n, "random") != BL_OK)
        return BL_ERR;
    c->grp->random_two = n->nargs >= 1;
    return BL_OK;
}

/* Active health checks: the module parses its own lines; file:line is added here. */
static int check_result(struct compiler *c, int rc, const char *err)
{
    return rc == BL_OK ? BL_OK : fail(c, "%s", err);
}

static int h_check(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256] = "";
    int rc;
    if (strcmp(n->name, "check") == 0)
        rc = bl_check_parse(&c->grp->check, n->args, n->nargs, err, sizeof(err));
    else if (strcmp(n->name, "check_http_send") == 0)
        rc = bl_check_parse_http_send(&c->grp->check, n->args, n->nargs, err, sizeof(err));
    else if (strcmp(n->name, "check_http_expect_alive") == 0)
        rc = bl_check_parse_expect_alive(&c->grp->check, n->args, n->nargs, err, sizeof(err));
    else
        rc = bl_check_parse_expect_body(&c->grp->check, n->args, n->nargs, err, sizeof(err));
    return check_result(c, rc, err);
}

static int h_outlier(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256] = "";
    return check_result(c, bl_outlier_parse(&c->grp->outlier, n->args, n->nargs, err,
                                             sizeof(err)), err);
}

static int h_queue(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256];
    if (c->in_stream)
        return fail(c, "\"queue\" is not supported in a stream upstream in this build");
    return check_result(c, bl_queue_parse(&c->grp->queue, n->args, n->nargs, err, sizeof(err)),
                        err);
}

static int h_adaptive_concurrency(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256];
    if (c->in_stream)
        return fail(c, "\"adaptive_concurrency\" is not supported in a stream upstream in "
                       "this build");
    return check_result(c, bl_adaptive_parse(&c->grp->adaptive, c->grp->name, n->args,
                                             n->nargs, err, sizeof(err)), err);
}

static int h_retry_budget(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256] = "";
    return check_result(c, bl_retry_budget_parse(c->grp, n->args, n->nargs, err, sizeof(err)),
                        err);
}

static int h_upstream_keepalive(struct compiler *c, const struct bl_conf_node *n)
{
    int64_t v;
    if (parse_num(n->args[0], 1, 100000, &v) != BL_OK)
        return invalid_value(c, n->args[0]);
    c->grp->keepalive = (uint32_t)v;
    return BL_OK;
}

static int h_upstream_keepalive_requests(struct compiler *c, const struct bl_conf_node *n)
{
    int64_t v;
    if (parse_num(n->args[0], 1, 1000000000, &v) != BL_OK)
        return invalid_value(c, n->args[0]);
    c->grp->keepalive_requests = (uint32_t)v;
    return BL_OK;
}

static int h_upstream_keepalive_timeout(struct compiler *c, const struct bl_conf_node *n)
{
    if (parse_time_ms(n->args[0], &c->grp->keepalive_timeout_ms) != BL_OK)
        return invalid_value(c, n->args[0]);
    return BL_OK;
}

/* ---- server ---- */

/* Every scalar of lc unset (UINT64_MAX) and no lists: a level before its lines are read. */
static void loc_conf_init(struct bl_loc_conf *lc);

/* A location (or a server's pseudo location) with its file:line; NULL when out of memory. */
static struct bl_location *location_new(const char *path, const struct bl_conf_node *n)
{
    struct bl_location *loc = conf_calloc(1, sizeof(*loc));
    if (!loc || !(loc->path = conf_strdup(path))) {
        free(loc);
        return NULL;
    }
    loc->path_len = (uint32_t)strlen(path);
    loc->file = n->file;
    loc->line = n->line;
    loc_conf_init(&loc->conf);
    return loc;
}

static int h_server(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_config *cfg = c->cfg;
    struct bl_server_block **servers = grow(cfg->servers, cfg->nservers, sizeof(*servers));
    if (!servers)
        return oom(c);
    cfg->servers = servers;
    struct bl_server_block *s = conf_calloc(1, sizeof(*s));
    /* The server-level pseudo location carries server-level return and settings. */
    if (!s || !(s->server_loc = location_new("", n))) {
        free(s);
        return oom(c);
    }
    s->file = n->file;
    s->line = n->line;
    loc_conf_init(&s->conf);
    cfg->servers[cfg->nservers++] = s;

    c->srv = s;
    struct bl_loc_conf *saved = enter_level(c, &s->conf);
    c->ops = &s->server_loc->ops;
    c->nops = &s->server_loc->nops;
    int rc = compile_block(c, n, CTX_SERVER);
    c->srv = NULL;
    c->ops = NULL;
    c->nops = NULL;
    enter_level(c, saved);
    if (rc != BL_OK)
        return rc;
    /* A server without listen listens on *:80, as nginx's does (when run as root). */
    int listening = 0;
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        for (uint32_t k = 0; k < cfg->listens[i].nservers; k++)
            listening |= cfg->listens[i].servers[k] == s;
    if (!listening) {
        c->node = n;
        return fail(c, "server block has no \"listen\" directive");
    }
    return BL_OK;
}

/* The parameters of `listen` that belong to the address's socket rather than to one server
 * (nginx's backlog=, sndbuf=, rcvbuf=); 0 where a line does not give one. */
struct listen_sock {
    int backlog;
    uint32_t sndbuf, rcvbuf;
};

/* Reads arg into ls when it is a socket parameter: returns 1, 0 when it is none, BL_ERR
 * (reported) when its value is invalid. Sizes from 1k to 1g; the kernel doubles what it is
 * given and caps it at net.core.wmem_max / rmem_max (docs/configuration.md, listen). */
static int listen_sock_param(struct compiler *c, const char *arg, struct listen_sock *ls)
{
    int64_t v;
    uint64_t size;
    uint32_t *buf = strncmp(arg, "sndbuf=", 7) == 0   ? &ls->sndbuf
                    : strncmp(arg, "rcvbuf=", 7) == 0 ? &ls->rcvbuf
                                                      : NULL;
    if (strncmp(arg, "backlog=", 8) == 0) {
        if (parse_num(arg + 8, 1, 65535, &v) != BL_OK)
            return fail(c, "invalid value \"%s\" in \"listen\" directive (a number from 1 "
                           "to 65535)", arg);
        ls->backlog = (int)v;
        return 1;
    }
    if (!buf)
        return 0;
    if (bl_parse_size(arg + 7, &size) != BL_OK || size < 1024 || size > (1u << 30))
        return fail(c, "invalid value \"%s\" in \"listen\" directive (a size from 1k to 1g)",
                    arg);
    *buf = (uint32_t)size;
    return 1;
}

/* Sets ls's socket parameters into l, the address they belong to. Several http servers may
 * share an address; as for nginx, the socket is one, so two lines may not disagree about it. */
static int listen_sock_merge(struct compiler *c, struct bl_listen *l,
                             const struct listen_sock *ls)
{
    const char *bad = NULL;
    if (ls->backlog && l->backlog != 511 && l->backlog != ls->backlog)
        bad = "backlog";
    else if (ls->sndbuf && l->sndbuf && l->sndbuf != ls->sndbuf)
        bad = "sndbuf";
    else if (ls->rcvbuf && l->rcvbuf && l->rcvbuf != ls->rcvbuf)
        bad = "rcvbuf";
    if (bad)
        return fail(c, "\"%s\" for %s differs from an earlier \"listen\" of the address "
                       "(one socket, one value)", bad, l->text);
    if (ls->backlog)
        l->backlog = ls->backlog;
    if (ls->sndbuf)
        l->sndbuf = ls->sndbuf;
    if (ls->rcvbuf)
        l->rcvbuf = ls->rcvbuf;
    return BL_OK;
}

static int h_listen(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256];
    struct sockaddr_storage ss;
    socklen_t sl;
    if (bl_addr_parse(n->args[0], 80, 0, &ss, &sl, err, sizeof(err)) != 0)
        return fail(c, "%s in \"listen\" directive", err);
    int def = 0, reuseport = 0, ssl = 0, pp = 0, http2 = 0, rc;
    struct listen_sock sock = {0};
    for (int i = 1; i < n->nargs; i++) {
        if ((rc = listen_sock_param(c, n->args[i], &sock)) < 0)
            return BL_ERR;
        if (rc)
            continue;
        if (strcmp(n->args[i], "default_server") == 0 || strcmp(n->args[i], "default") == 0)
            def = 1;
        else if (strcmp(n->args[i], "proxy_protocol") == 0)
            pp = 1;
        else if (strcmp(n->args[i], "http2") == 0)
            http2 = 1;
        else if (strcmp(n->args[i], "reuseport") == 0)
            reuseport = 1;
        else if (strcmp(n->args[i], "ssl") == 0)
            ssl = 1;
        else if (strcmp(n->args[i], "bind") == 0 || strcmp(n->args[i], "ipv6only=on") == 0) {
            ; /* what ballast always does: each address has its own socket, IPv6 ones V6ONLY */
        } else {
            const struct bl_unsupported *u = bl_unsupported_listen_param(n->args[i]);
            char what[160];
            snprintf(what, sizeof(what), "\"%s\" parameter of \"listen\"", n->args[i]);
            if (!u)
                return invalid_value(c, n->args[i]);
            if (unsupported(c, u, what) != BL_OK)
                return BL_ERR;
        }
    }
    char text[BL_ADDR_STRLEN];
    bl_addr_format((struct sockaddr *)&ss, text, sizeof(text));
    struct bl_config *cfg = c->cfg;
    struct bl_listen *l = NULL;
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        if (strcmp(cfg->listens[i].text, text) == 0)
            l = &cfg->listens[i];
    if (!l) {
        struct bl_listen *listens = grow(cfg->listens, cfg->nlistens, sizeof(*listens));
        if (!listens)
            return oom(c);
        cfg->listens = listens;
        l = &cfg->listens[cfg->nlistens++];
        l->addr = ss;
        l->addrlen = sl;
        l->backlog = 511;
        snprintf(l->text, sizeof(l->text), "%s", text);
        l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (l->stream)
        return fail(c, "duplicate listen %s (a stream server listens there)", text);
    if (listen_sock_merge(c, l, &sock) != BL_OK)
        return BL_ERR;
    l->reuseport |= (uint8_t)reuseport;
    l->ssl |= (uint8_t)ssl; /* as in nginx, ssl on any line makes the address TLS */
    l->proxy_protocol |= (uint8_t)pp; /* and proxy_protocol the same way */
    l->http2 |= (uint8_t)http2; /* likewise http2 (nginx before 1.25's `http2 on`) */
    for (uint32_t k = 0; k < l->nservers; k++) {
        if (l->servers[k] == c->srv)
            return fail(c, "duplicate listen %s", text);
    }
    if (def && l->nservers && l->servers[0]->is_default)
        return fail(c, "a duplicate default server for %s", text);
    struct bl_server_block **servers = grow(l->servers, l->nservers, sizeof(*servers));
    if (!servers)
        return oom(c);
    l->servers = servers;
    if (def) {
        memmove(&l->servers[1], &l->servers[0], l->nservers * sizeof(c->srv));
        l->servers[0] = c->srv;
        c->srv->is_default = 1;
    } else {
        l->servers[l->nservers] = c->srv;
    }
    l->nservers++;
    return BL_OK;
}

/* A certificate, key or CA file named by a TLS directive: a relative path is taken from the
 * main config file's directory, as nginx takes it from its conf prefix (the directory of
 * nginx.conf), so a config finds its files wherever ballast is started from. Returns a
 * malloc'd path, or NULL (out of memory). */
static char *conf_file_path(const struct compiler *c, const char *arg)
{
    const char *main = c->cfg->file;
    const char *slash = main ? strrchr(main, '/') : NULL;
    if (arg[0] == '/' || !slash)
        return strdup(arg);
    size_t dlen = (size_t)(slash - main) + 1, alen = strlen(arg);
    char *p = malloc(dlen + alen + 1);
    if (p) {
        memcpy(p, main, dlen);
        memcpy(p + dlen, arg, alen + 1);
    }
    return p;
}

/* Whether the directive's one argument names a file (conf_file_path applies). */
static int names_tls_file(const char *name)
{
    static const char *const files[] = {
        "ssl_certificate", "ssl_certificate_key", "ssl_dhparam", "ssl_client_certificate",
        "ssl_trusted_certificate", "proxy_ssl_trusted_certificate", "proxy_ssl_certificate",
        "proxy_ssl_certificate_key",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (strcmp(name, files[i]) == 0)
            return 1;
    return 0;
}

/* Sets an ssl_* line into sc or a proxy_ssl_* line into ps from n's arguments, a certificate,
 * key or CA file's path first taken from the main config file's directory (as nginx takes it
 * from its prefix). */
static int tls_set(struct compiler *c, const struct bl_conf_node *n, struct bl_ssl_conf *sc,
                   struct bl_proxy_ssl *ps)
{
    char err[256];
    char *path = names_tls_file(n->name) ? conf_file_path(c, n->args[0]) : NULL;
    if (names_tls_file(n->name) && !path)
        return oom(c);
    char *const one[] = {path};
    char *const *args = path ? one : n->args;
    int rc = sc ? bl_ssl_conf_set(sc, n->name, args, n->nargs, n->file, n->line, err, sizeof(err))
                : bl_proxy_ssl_set(ps, n->name, args, n->nargs, n->file, n->line, err,
                                   sizeof(err));
    free(path);
    if (rc != BL_OK)
        return fail(c, "%s", err);
    return BL_OK;
}

/* ssl_*: into the server block, or the http level that servers inherit from (conf/ssl.h). */
static int h_ssl(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_ssl_conf *sc = c->srv ? &c->srv->ssl : &c->cfg->http_ssl;
    return tls_set(c, n, sc, NULL);
}

/* proxy_ssl_*: into the level's own settings, made on its first such line (conf/proxy_ssl.h);
 * finish_location merges them with the levels above. */
static int h_proxy_ssl(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (!(lc->set & BL_LC_PROXY_SSL)) {
        if (!(lc->proxy_ssl = calloc(1, sizeof(*lc->proxy_ssl))))
            return oom(c);
        lc->set |= BL_LC_PROXY_SSL;
    }
    struct bl_proxy_ssl *ps = lc->proxy_ssl;
    if (strcmp(n->name, "proxy_ssl_name") == 0) {
        if (ps->name)
            return fail(c, "\"proxy_ssl_name\" directive is duplicate");
        if (!(ps->name = strdup(n->args[0])))
            return oom(c);
        ps->name_owned = 1;
        return (ps->name_tpl = template_vars(c, n->args[0])) ? BL_OK : BL_ERR;
    }
    return tls_set(c, n, NULL, ps);
}

static int h_server_name(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_server_block *s = c->srv;
    for (int i = 0; i < n->nargs; i++) {
        if (n->args[i][0] == '~')
            return fail(c, "regular expression server names are not supported (\"%s\")",
                        n->args[i]);
        char **names = grow(s->names, s->nnames, sizeof(*names));
        if (!names)
            return oom(c);
        s->names = names;
        char *name = conf_strdup(n->args[i]);
        if (!name)
            return oom(c);
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        s->names[s->nnames++] = name;
    }
    return BL_OK;
}

/* ---- location ---- */

/* Appends loc to a location list; BL_ERR when out of memory. */
static int loc_list_add(struct bl_location ***list, uint32_t *n, struct bl_location *loc)
{
    struct bl_location **grown = grow(*list, *n, sizeof(**list));
    if (!grown)
        return BL_ERR;
    *list = grown;
    (*list)[(*n)++] = loc;
    return BL_OK;
}

enum loc_type { LT_PREFIX, LT_EXACT, LT_NOREGEX, LT_REGEX, LT_REGEX_CASELESS, LT_NAMED };

/* nginx's forms: `location [= | ^~ | ~ | ~*] PATH`, the modifier also glued to the path
 * ("=/x", "~\.php$"), and `location @NAME`. */
static int location_type(struct compiler *c, const struct bl_conf_node *n, enum loc_type *type,
                         const char **path)
{
    static const struct {
        const char *mod;
        enum loc_type type;
    } mods[] = {{"=", LT_EXACT}, {"^~", LT_NOREGEX}, {"~*", LT_REGEX_CASELESS}, {"~", LT_REGEX}};
    const char *a = n->args[0];
    if (n->nargs == 2) {
        for (size_t i = 0; i < BL_ARRAY_LEN(mods); i++)
            if (strcmp(a, mods[i].mod) == 0) {
                *type = mods[i].type;
                *path = n->args[1];
                return BL_OK;
            }
        return fail(c, "invalid location modifier \"%s\"", a);
    }
    *type = LT_PREFIX;
    *path = a;
    for (size_t i = 0; i < BL_ARRAY_LEN(mods); i++) {
        size_t ml = strlen(mods[i].mod);
        if (strncmp(a, mods[i].mod, ml) == 0) {
            *type = mods[i].type;
            *path = a + ml;
            break;
        }
    }
    if (a[0] == '@')
        *type = LT_NAMED;
    if (!**path)
        return fail(c, "invalid number of arguments in \"location\" directive");
    return BL_OK;
}

/* Where nginx allows a location (ngx_http_core_location): nothing inside an exact or named
 * location, named ones only at the server level, and a nested prefix must extend its
 * parent's prefix (a regex parent's pattern is compared as text, as nginx does). */
static int location_check_nesting(struct compiler *c, const struct bl_location *parent,
                                  enum loc_type type, const char *path)
{
    if (!parent)
        return BL_OK;
    if (parent->exact)
        return fail(c, "location \"%s\" cannot be inside the exact location \"%s\"", path,
                    parent->path);
    if (parent->named)
        return fail(c, "location \"%s\" cannot be inside the named location \"%s\"", path,
                    parent->path);
    if (type == LT_NAMED)
        return fail(c, "named location \"%s\" can be on the server level only", path);
    if (type != LT_REGEX && type != LT_REGEX_CASELESS &&
        strncmp(path, parent->path, parent->path_len) != 0)
        return fail(c, "location \"%s\" is outside location \"%s\"", path, parent->path);
    return BL_OK;
}

static int h_location(struct compiler *c, const struct bl_conf_node *n)
{
    enum loc_type type = LT_PREFIX;
    const char *path = NULL;
    if (location_type(c, n, &type, &path) != BL_OK)
        return BL_ERR;
    struct bl_location *parent = c->loc;
    if (location_check_nesting(c, parent, type, path) != BL_OK)
        return BL_ERR;
    struct bl_server_block *s = c->srv;
    struct bl_loc_tree *tree = parent ? &parent->nested : &s->locs;
    struct bl_location ***list;
    uint32_t *nlist;
    switch (type) {
    case LT_EXACT:
        list = &tree->exact, nlist = &tree->nexact;
        break;
    case LT_REGEX:
    case LT_REGEX_CASELESS:
        list = &tree->regex, nlist = &tree->nregex;
        break;
    case LT_NAMED:
        list = &s->named, nlist = &s->nnamed;
        break;
    default:
        list = &tree->prefix, nlist = &tree->nprefix;
        break;
    }
    if (type != LT_REGEX && type != LT_REGEX_CASELESS)
        for (uint32_t i = 0; i < *nlist; i++)
            if (strcmp((*list)[i]->path, path) == 0)
                return fail(c, "duplicate location \"%s\"", path);

    struct bl_location *loc = location_new(path, n);
    if (!loc)
        return oom(c);
    if (loc_list_add(&s->all, &s->nall, loc) != BL_OK) {
        free(loc->path);
        free(loc);
        return oom(c);
    }
    if (loc_list_add(list, nlist, loc) != BL_OK)
        return oom(c);
    loc->exact = type == LT_EXACT;
    loc->noregex = type == LT_NOREGEX;
    loc->named = type == LT_NAMED;
    loc->parent = parent;
    if (type == LT_REGEX || type == LT_REGEX_CASELESS) {
        char err[512];
        if (!(loc->regex = bl_regex_compile(path, type == LT_REGEX_CASELESS, err, sizeof(err))))
            return fail(c, "%s", err);
    }

    c->loc = loc;
    struct bl_loc_conf *saved = enter_level(c, &loc->conf);
    struct bl_rw_op **saved_ops = c->ops;
    uint32_t *saved_nops = c->nops;
    c->ops = &loc->ops;
    c->nops = &loc->nops;
    int rc = compile_block(c, n, CTX_LOCATION);
    c->loc = parent;
    c->ops = saved_ops;
    c->nops = saved_nops;
    enter_level(c, saved);
    return rc;
}

/* $proxy_host and $proxy_port as nginx sets them (ngx_http_proxy_set_vars): the host as
 * proxy_pass writes it, with the port unless it is the scheme's (80, 443 for https); the
 * port, the scheme's when not written. For a group, the group's name and the scheme's port,
 * whatever its servers' ports. */
static int set_proxy_vars(struct bl_location *loc, const char *host, size_t hlen)
{
    const char *close = host[0] == '[' ? memchr(host, ']', hlen) : NULL;
    const char *from = close ? close : host; /* an IPv6 address's colons are not the port's */
    const char *colon = memrchr(from, ':', hlen - (size_t)(from - host));
    size_t name_len = colon ? (size_t)(colon - host) : hlen;
    const char *dport = loc->proxy_tls ? "443" : "80";
    const char *port = colon ? colon + 1 : dport;
    size_t port_len = colon ? hlen - name_len - 1 : strlen(dport);
    int default_port = port_len == strlen(dport) && memcmp(port, dport, port_len) == 0;
    loc->proxy_host = conf_calloc(1, hlen + 1);
    loc->proxy_port = conf_calloc(1, port_len + 1);
    if (!loc->proxy_host || !loc->proxy_port)
        return BL_ERR; /* freed with the location */
    memcpy(loc->proxy_host, host, default_port ? name_len : hlen);
    memcpy(loc->proxy_port, port, port_len);
    return BL_OK;
}

static int h_proxy_pass(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_location *loc = c->loc;
    if (loc->kind == BL_LOC_STATIC)
        return fail(c, "\"root\" and \"proxy_pass\" in one location");
    if (loc->kind == BL_LOC_PROXY)
        return fail(c, "\"proxy_pass\" directive is duplicate");
    const char *url = n->args[0];
    const char *host;
    if (strncmp(url, "http://", 7) == 0) {
        host = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        host = url + 8;
        loc->proxy_tls = 1;
    } else {
        return fail(c, "invalid URL prefix in \"%s\"", url);
    }
    const char *slash = strchr(host, '/');
    size_t hlen = slash ? (size_t)(slash - host) : strlen(host);
    if (hlen == 0)
        return fail(c, "no host in \"%s\"", url);
    if (set_proxy_vars(loc, host, hlen) != BL_OK)
        return oom(c);
    if (memchr(host, '$', hlen)) {
        /* nginx: the value names an upstream group at request time (http/proxy.c), and a URI
         * part, evaluated, is sent as it is, whatever the location. */
        char *h = conf_malloc(hlen + 1);
        if (!h)
            return oom(c);
        memcpy(h, host, hlen);
        h[hlen] = '\0';
        loc->proxy_host_tpl = template_vars(c, h);
        free(h);
        if (!loc->proxy_host_tpl)
            return BL_ERR;
        if (slash) {
            if (!(loc->proxy_uri = conf_strdup(slash)))
                return oom(c);
            loc->has_proxy_uri = 1;
            loc->proxy_uri_len = (uint32_t)strlen(slash);
            if (!(loc->proxy_uri_tpl = template_vars(c, slash)))
                return BL_ERR;
        }
        loc->kind = BL_LOC_PROXY;
        return BL_OK;
    }
    if (slash && !strchr(slash, '$') && (loc->regex || loc->named || c->ctx == CTX_IF))
        return fail(c, "\"proxy_pass\" cannot have URI part in location given by regular "
                       "expression, or inside named location, or inside \"if\" statement");
    if (slash) {
        if (!(loc->proxy_uri = conf_strdup(slash)))
            return oom(c);
        loc->has_proxy_uri = 1;
        loc->proxy_uri_len = (uint32_t)strlen(slash);
        if (strchr(slash, '$') && !(loc->proxy_uri_tpl = template_vars(c, slash)))
            return BL_ERR;
    }
    struct pending_pass *pending = grow(c->pending, c->npending, sizeof(*pending));
    if (!pending)
        return oom(c);
    c->pending = pending;
    char *h = conf_malloc(hlen + 1);
    if (!h)
        return oom(c);
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    loc->kind = BL_LOC_PROXY;
    struct pending_pass *p = &c->pending[c->npending++];
    p->loc = loc;
    p->host = h;
    p->tls = loc->proxy_tls;
    p->file = n->file;
    p->line = n->line;
    return BL_OK;
}

/* ---- the rewrite module: rewrite, return, set, if, break ---- */

/* A new op at the end of the current list (server, location or if body), or NULL. */
static struct bl_rw_op *op_add(struct compiler *c, enum bl_rw_type type)
{
    struct bl_rw_op *ops = grow(*c->ops, *c->nops, sizeof(*ops));
    if (!ops) {
        oom(c);
        return NULL;
    }
    *c->ops = ops;
    struct bl_rw_op *op = &ops[(*c->nops)++];
    op->type = (uint8_t)type;
    op->file = c->node->file;
    op->line = c->node->line;
    return op;
}

static void rw_ops_free(struct bl_rw_op *ops, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        bl_regex_free(ops[i].re);
        bl_template_free(ops[i].value);
        bl_template_free(ops[i].arg);
        rw_ops_free(ops[i].body, ops[i].nbody);
    }
    free(ops);
}

static int h_return(struct compiler *c, const struct bl_conf_node *n)
{
    int64_t code;
    const char *text = NULL;
    if (parse_num(n->args[0], 0, 999, &code) != BL_OK) {
        /* nginx: "return URL;" is a 302 redirect. */
        if (n->nargs == 1 && (strncmp(n->args[0], "http://", 7) == 0 ||
                              strncmp(n->args[0], "https://", 8) == 0 ||
                              strncmp(n->args[0], "$scheme", 7) == 0)) {
            code = 302;
            text = n->args[0];
        } else {
            return invalid_value(c, n->args[0]);
        }
    } else {
        if (code > 999)
            return invalid_value(c, n->args[0]);
        if (code < 100 || code > 599)
            return invalid_value(c, n->args[0]);
        if (n->nargs > 1)
            text = n->args[1];
    }
    struct bl_template *t = NULL;
    if (text && !(t = template_vars(c, text)))
        return BL_ERR;
    struct bl_rw_op *op = op_add(c, BL_RW_RETURN);
    if (!op) {
        bl_template_free(t);
        return BL_ERR;
    }
    op->code = (int)code;
    op->value = t;
    if (c->ctx == CTX_IF)
        return BL_OK;
    /* A location's own return also makes it a return location, which error_page's internal
     * redirects serve (local.c); the op above is what a request runs. */
    struct bl_location *loc = c->loc ? c->loc : c->srv->server_loc;
    if (loc->kind == BL_LOC_RETURN)
        return BL_OK; /* the first return ends the location's directives, as in nginx */
    if (loc->kind == BL_LOC_NONE) {
        char err[256];
        loc->kind = BL_LOC_RETURN;
        loc->return_code = (int)code;
        if (text && !(loc->return_text = bl_template_compile_vars(text, &c->cfg->vars, err,
                                                                  sizeof(err))))
            return fail(c, "%s", err);
    }
    return BL_OK;
}

static int h_rewrite(struct compiler *c, const struct bl_conf_node *n)
{
    static const char *const flags[] = {"", "last", "break", "redirect", "permanent"};
    int flag = BL_RWF_NONE;
    if (n->nargs == 3) {
        for (flag = 1; flag < (int)BL_ARRAY_LEN(flags); flag++)
            if (strcmp(n->args[2], flags[flag]) == 0)
                break;
        if (flag == (int)BL_ARRAY_LEN(flags))
            return fail(c, "invalid parameter \"%s\"", n->args[2]);
    }
    char err[512];
    struct bl_regex *re = bl_regex_compile(n->args[0], 0, err, sizeof(err));
    if (!re)
        return fail(c, "%s", err);
    const char *repl = n->args[1];
    size_t len = strlen(repl);
    int drop_args = len > 0 && repl[len - 1] == '?';
    char *text = conf_strdup(repl);
    if (!text) {
        bl_regex_free(re);
        return oom(c);
    }
    if (drop_args)
        text[len - 1] = '\0';
    struct bl_template *t = template_vars(c, text);
    free(text);
    struct bl_rw_op *op = t ? op_add(c, BL_RW_REWRITE) : NULL;
    if (!op) {
        bl_regex_free(re);
        bl_template_free(t);
        return BL_ERR;
    }
    op->re = re;
    op->value = t;
    op->flag = (uint8_t)flag;
    op->drop_args = (uint8_t)drop_args;
    op->absolute = strncmp(repl, "http://", 7) == 0 || strncmp(repl, "https://", 8) == 0 ||
                   strncmp(repl, "$scheme", 7) == 0;
    return BL_OK;
}

/* The index of variable name (without '$') in the config's list. */
static int var_index(struct bl_config *cfg, const char *name)
{
    for (uint32_t i = 0; i < cfg->vars.n; i++)
        if (strcmp(cfg->vars.names[i], name) == 0)
            return (int)i;
    return -1;
}

static int h_set(struct compiler *c, const struct bl_conf_node *n)
{
    const char *v = n->args[0];
    if (v[0] != '$' || !v[1])
        return fail(c, "invalid variable name \"%s\"", v);
    int idx = var_index(c->cfg, v + 1);
    if (idx < 0) /* a built-in variable: the names list holds only the config's own */
        return fail(c, "the built-in variable \"%s\" cannot be set in this build", v);
    struct bl_template *t = template_vars(c, n->args[1]);
    struct bl_rw_op *op = t ? op_add(c, BL_RW_SET) : NULL;
    if (!op) {
        bl_template_free(t);
        return BL_ERR;
    }
    op->var = (uint32_t)idx;
    op->nvars = c->cfg->vars.n;
    op->value = t;
    return BL_OK;
}

static void map_free(struct bl_map *m)
{
    if (!m)
        return;
    bl_template_free(m->source);
    bl_template_free(m->deflt);
    for (uint32_t i = 0; i < m->nkeys; i++) {
        free(m->keys[i].key);
        bl_template_free(m->keys[i].value);
    }
    free(m->keys);
    for (uint32_t i = 0; i < m->nregexes; i++) {
        bl_regex_free(m->regexes[i].re);
        bl_template_free(m->regexes[i].value);
    }
    free(m->regexes);
    free(m);
}

/* One "KEY VALUE;" line of a map block into m. */
static int map_line(struct compiler *c, struct bl_map *m, const struct bl_conf_node *t)
{
    const char *key = t->name;
    if (strcmp(key, "include") == 0)
        return fail(c, "\"include\" inside \"map\" is not supported in this build");
    if (strcmp(key, "default") == 0) {
        if (m->deflt)
            return fail(c, "duplicate default map parameter");
        return (m->deflt = template_vars(c, t->args[0])) ? BL_OK : BL_ERR;
    }
    if (key[0] == '\\') /* nginx: "\default", "\~x" are plain strings */
        key++;
    else if (key[0] == '~') {
        int caseless = key[1] == '*';
        char err[512];
        struct bl_map_key *r = grow(m->regexes, m->nregexes, sizeof(*r));
        if (!r)
            return oom(c);
        m->regexes = r;
        r = &m->regexes[m->nregexes];
        if (!(r->re = bl_regex_compile(key + 1 + caseless, caseless, err, sizeof(err))))
            return fail(c, "%s", err);
        m->nregexes++;
        return (r->value = template_vars(c, t->args[0])) ? BL_OK : BL_ERR;
    }
    uint8_t wild = BL_MAP_EXACT;
    size_t len = strlen(key);
    if (m->hostnames && len > 1) {
        if (key[0] == '*' && key[1] == '.') {
            wild = BL_MAP_HEAD;
            key++;
            len--;
        } else if (key[0] == '.') {
            wild = BL_MAP_DOT;
        } else if (len > 2 && key[len - 1] == '*' && key[len - 2] == '.') {
            wild = BL_MAP_TAIL;
            len--;
        }
    }
    for (uint32_t i = 0; i < m->nkeys; i++)
        if (m->keys[i].wild == wild && m->keys[i].len == len &&
            strncasecmp(m->keys[i].key, key, len) == 0)
            return fail(c, "conflicting parameter \"%s\"", t->name);
    struct bl_map_key *k = grow(m->keys, m->nkeys, sizeof(*k));
    if (!k)
        return oom(c);
    m->keys = k;
    k = &m->keys[m->nkeys];
    if (!(k->key = conf_malloc(len + 1)))
        return oom(c);
    m->nkeys++;
    /* nginx matches strings ignoring case (its map hash is lowercase). */
    for (size_t i = 0; i < len; i++)
        k->key[i] = (char)tolower((unsigned char)key[i]);
    k->key[len] = '\0';
    k->len = (uint32_t)len;
    k->wild = wild;
    return (k->value = template_vars(c, t->args[0])) ? BL_OK : BL_ERR;
}

/* map $source $target { default V; hostnames; volatile; KEY V; ~REGEX V; ~*REGEX V; } */
static int h_map(struct compiler *c, const struct bl_conf_node *n)
{
    const char *target = n->args[1];
    if (target[0] != '$' || !target[1])
        return fail(c, "invalid variable name \"%s\"", target);
    int idx = var_index(c->cfg, target + 1);
    if (idx < 0)
        return fail(c, "the built-in variable \"%s\" cannot be a map's target", target);
    struct bl_config *cfg = c->cfg;
    if (!cfg->var_maps && !(cfg->var_maps = conf_calloc(cfg->vars.n, sizeof(*cfg->var_maps))))
        return oom(c);
    if (cfg->var_maps[idx] || (cfg->var_blocks && cfg->var_blocks[idx]))
        return fail(c, "duplicate \"%s\" variable", target);
    struct bl_map *m = conf_calloc(1, sizeof(*m));
    if (!m)
        return oom(c);
    m->var = (uint32_t)idx;
    m->file = n->file;
    m->line = n->line;
    int rc = (m->source = template_vars(c, n->args[0])) ? BL_OK : BL_ERR;
    /* hostnames may stand anywhere in the block and changes how every key reads. */
    for (int i = 0; i < n->nchildren; i++)
        if (n->children[i].nargs == 0 && strcmp(n->children[i].name, "hostnames") == 0)
            m->hostnames = 1;
    for (int i = 0; rc == BL_OK && i < n->nchildren; i++) {
        const struct bl_conf_node *t = &n->children[i];
        c->node = t;
        if (t->is_block)
            rc = fail(c, "unexpected \"{\"");
        else if (t->nargs == 0 && (strcmp(t->name, "hostnames") == 0 ||
                                   strcmp(t->name, "volatile") == 0))
            continue; /* volatile: every request works the value out anyway */
        else if (t->nargs != 1)
            rc = fail(c, "invalid number of the map parameters");
        else
            rc = map_line(c, m, t);
    }
    c->node = n;
    if (rc != BL_OK) {
        map_free(m);
        return rc;
    }
    cfg->var_maps[idx] = m;
    return BL_OK;
}

static int h_break(struct compiler *c, const struct bl_conf_node *n)
{
    BL_UNUSED(n);
    return op_add(c, BL_RW_BREAK) ? BL_OK : BL_ERR;
}

/* The condition of `if (...)`, parenthesis stripped, into op (ngx_http_rewrite_if_condition). */
static int if_condition(struct compiler *c, const struct bl_conf_node *n, struct bl_rw_op *op)
{
    const char *a[3];
    char *own[3] = {NULL, NULL, NULL};
    int na = 0;
    for (int i = 0; i < n->nargs && na <= 3; i++) {
        const char *x = n->args[i];
        size_t len = strlen(x);
        int first = i == 0, last = i == n->nargs - 1;
        if (first) {
            if (x[0] != '(')
                goto invalid;
            x++, len--;
        }
        if (last) {
            if (len == 0 || x[len - 1] != ')') {
                if (!(len == 0 && strcmp(n->args[i], ")") == 0))
                    goto invalid;
            }
            if (len)
                len--;
        }
        if (len == 0 && (first || last))
            continue;
        if (na == 3)
            goto invalid;
        if (!(own[na] = conf_malloc(len + 1))) {
            for (int k = 0; k < na; k++)
                free(own[k]); /* the words copied so far (clang-tidy: leaked on OOM) */
            return oom(c);
        }
        memcpy(own[na], x, len);
        own[na][len] = '\0';
        a[na] = own[na];
        na++;
    }
    int rc = BL_ERR;
    if (na == 1 && a[0][0] == '$') {
        op->cond = BL_IF_TRUE;
        op->value = template_vars(c, a[0]);
        rc = op->value ? BL_OK : BL_ERR;
    } else if (na == 2) {
        static const struct {
            const char *op;
            enum bl_if_cond cond;
        } tests[] = {{"-f", BL_IF_FILE}, {"-d", BL_IF_DIR}, {"-e", BL_IF_EXISTS},
                     {"-x", BL_IF_EXEC}};
        const char *t = a[0];
        op->negate = t[0] == '!';
        t += op->negate;
        for (size_t i = 0; i < BL_ARRAY_LEN(tests); i++)
            if (strcmp(t, tests[i].op) == 0)
                op->cond = (uint8_t)tests[i].cond;
        if (!op->cond) {
            fail(c, "invalid condition \"%s\"", a[0]);
        } else {
            op->value = template_vars(c, a[1]);
            rc = op->value ? BL_OK : BL_ERR;
        }
    } else if (na == 3 && a[0][0] == '$') {
        const char *o = a[1];
        op->negate = o[0] == '!';
        o += op->negate;
        if (!(op->value = template_vars(c, a[0]))) {
            ;
        } else if (strcmp(o, "=") == 0) {
            op->cond = BL_IF_EQ;
            op->arg = template_vars(c, a[2]);
            rc = op->arg ? BL_OK : BL_ERR;
        } else if (strcmp(o, "~") == 0 || strcmp(o, "~*") == 0) {
            char err[512];
            op->cond = BL_IF_MATCH;
            /* o is "~" or "~*" here, so o[1] is in bounds */
            /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
            if (!(op->re = bl_regex_compile(a[2], o[1] == '*', err, sizeof(err))))
                fail(c, "%s", err);
            else
                rc = BL_OK;
        } else {
            fail(c, "unexpected \"%s\" in condition", a[1]);
        }
    } else {
        fail(c, "invalid condition \"%s\"", n->args[0]);
    }
    for (int i = 0; i < 3; i++)
        free(own[i]);
    return rc;
invalid:
    for (int i = 0; i < 3; i++)
        free(own[i]);
    return fail(c, "invalid condition \"%s\"", n->args[0]);
}

static int h_if(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_rw_op *op = op_add(c, BL_RW_IF);
    if (!op || if_condition(c, n, op) != BL_OK)
        return BL_ERR;
    struct bl_rw_op **saved_ops = c->ops;
    uint32_t *saved_nops = c->nops;
    unsigned saved_ctx = c->ctx;
    c->ops = &op->body;
    c->nops = &op->nbody;
    int rc = compile_block(c, n, CTX_IF);
    c->ops = saved_ops;
    c->nops = saved_nops;
    c->ctx = saved_ctx;
    return rc;
}

static int h_proxy_next_upstream(struct compiler *c, const struct bl_conf_node *n)
{
    static const struct {
        const char *name;
        uint64_t bit;
    } names[] = {
        {"error", BL_NEXT_ERROR},         {"timeout", BL_NEXT_TIMEOUT},
        {"invalid_header", BL_NEXT_INVALID_HEADER},
        {"http_500", BL_NEXT_HTTP_500},   {"http_502", BL_NEXT_HTTP_502},
        {"http_503", BL_NEXT_HTTP_503},   {"http_504", BL_NEXT_HTTP_504},
        {"http_403", BL_NEXT_HTTP_403},   {"http_404", BL_NEXT_HTTP_404},
        {"http_429", BL_NEXT_HTTP_429},   {"non_idempotent", BL_NEXT_NON_IDEMPOTENT},
        {"off", BL_NEXT_OFF},
    };
    if (c->lc->next_upstream != UINT64_MAX)
        return fail(c, "\"proxy_next_upstream\" directive is duplicate");
    uint64_t mask = 0;
    for (int i = 0; i < n->nargs; i++) {
        uint64_t bit = 0;
        for (size_t k = 0; k < BL_ARRAY_LEN(names); k++)
            if (strcmp(n->args[i], names[k].name) == 0)
                bit = names[k].bit;
        if (!bit)
            return invalid_value(c, n->args[i]);
        if (bit == BL_NEXT_OFF && n->nargs > 1)
            return fail(c, "\"off\" must be alone in \"proxy_next_upstream\" directive");
        mask |= bit;
    }
    c->lc->next_upstream = mask;
    return BL_OK;
}

static int h_error_page(struct compiler *c, const struct bl_conf_node *n)
{
    const char *uri = n->args[n->nargs - 1];
    int overwrite = 0, ncodes = n->nargs - 1;
    const char *last = n->args[n->nargs - 2];
    if (last[0] == '=') {
        int64_t v;
        if (!last[1])
            v = -1; /* "=" alone: the status the page's location answers with */
        else if (parse_num(last + 1, 100, 599, &v) != BL_OK)
            return invalid_value(c, last);
        overwrite = (int)v;
        ncodes--;
    }
    if (ncodes < 1)
        return fail(c, "invalid number of arguments in \"error_page\" directive");
    if (uri[0] != '/' && uri[0] != '@')
        return fail(c, "\"error_page\" URI must start with \"/\" or \"@\": \"%s\"", uri);
    for (int i = 0; i < ncodes; i++) {
        int64_t code;
        if (parse_num(n->args[i], 300, 599, &code) != BL_OK)
            return fail(c, "value \"%s\" must be between 300 and 599", n->args[i]);
        struct bl_loc_conf *lc = c->lc;
        struct bl_error_page *pages = grow(lc->error_pages, lc->nerror_pages, sizeof(*pages));
        if (!pages)
            return oom(c);
        lc->error_pages = pages;
        lc->set |= BL_LC_ERROR_PAGES;
        char *copy = conf_strdup(uri);
        if (!copy)
            return oom(c);
        struct bl_error_page *e = &lc->error_pages[lc->nerror_pages++];
        e->code = (int)code;
        e->overwrite = overwrite;
        e->uri = copy;
    }
    return BL_OK;
}

static int h_root(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_location *loc = c->loc;
    if (loc->root)
        return fail(c, "\"root\" directive is duplicate");
    if (loc->alias)
        return fail(c, "\"root\" directive is duplicate, \"alias\" directive was specified "
                       "earlier");
    if (loc->kind == BL_LOC_PROXY)
        return fail(c, "\"root\" and \"proxy_pass\" in one location");
    if (!(loc->root = conf_strdup(n->args[0])))
        return oom(c);
    size_t len = strlen(loc->root);
    while (len > 1 && loc->root[len - 1] == '/')
        loc->root[--len] = '\0';
    if (loc->kind == BL_LOC_NONE)
        loc->kind = BL_LOC_STATIC;
    return BL_OK;
}

/* root in http or server: inherited by locations that have neither their own root nor
 * another handler (nginx's default site: `root /var/www/html;` beside `location / { ... }`). */
static int h_root_inherited(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->set & BL_LC_ROOT)
        return fail(c, "\"root\" directive is duplicate");
    if (!(lc->root = conf_strdup(n->args[0])))
        return oom(c);
    size_t len = strlen(lc->root);
    while (len > 1 && lc->root[len - 1] == '/')
        lc->root[--len] = '\0';
    lc->set |= BL_LC_ROOT;
    return BL_OK;
}

static int h_root_any(struct compiler *c, const struct bl_conf_node *n)
{
    return c->loc ? h_root(c, n) : h_root_inherited(c, n);
}

static int h_index(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->set & BL_LC_INDEX)
        return fail(c, "\"index\" directive is duplicate");
    char **names = conf_calloc((size_t)n->nargs, sizeof(*names));
    if (!names)
        return oom(c);
    lc->index = names;
    lc->set |= BL_LC_INDEX;
    for (int i = 0; i < n->nargs; i++) {
        if (!n->args[i][0] || strchr(n->args[i], '/') || strchr(n->args[i], '$'))
            return fail(c, "index \"%s\" is not supported in this build: only file names",
                        n->args[i]);
        if (!(names[i] = conf_strdup(n->args[i])))
            return oom(c);
        lc->nindex++;
    }
    return BL_OK;
}

/* ---- gzip (http/gzip.h) */

static int h_gzip_comp_level(struct compiler *c, const struct bl_conf_node *n)
{
    int64_t v;
    if (parse_num(n->args[0], 1, 9, &v) != BL_OK)
        return fail(c, "\"gzip_comp_level\" must be 1..9, not \"%s\"", n->args[0]);
    if (c->lc->gzip_comp_level != UINT64_MAX)
        return fail(c, "\"gzip_comp_level\" directive is duplicate");
    c->lc->gzip_comp_level = (uint64_t)v;
    return BL_OK;
}

static int h_gzip_http_version(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t minor;
    if (strcmp(n->args[0], "1.0") == 0)
        minor = 0;
    else if (strcmp(n->args[0], "1.1") == 0)
        minor = 1;
    else
        return invalid_value(c, n->args[0]);
    if (c->lc->gzip_http_version != UINT64_MAX)
        return fail(c, "\"gzip_http_version\" directive is duplicate");
    c->lc->gzip_http_version = minor;
    return BL_OK;
}

static int h_gzip_proxied(struct compiler *c, const struct bl_conf_node *n)
{
    static const struct {
        const char *name;
        uint64_t bit;
    } words[] = {
        {"off", 0}, {"expired", BL_GZIP_PROXIED_EXPIRED}, {"no-cache", BL_GZIP_PROXIED_NO_CACHE},
        {"no-store", BL_GZIP_PROXIED_NO_STORE}, {"private", BL_GZIP_PROXIED_PRIVATE},
        {"no_last_modified", BL_GZIP_PROXIED_NO_LM}, {"no_etag", BL_GZIP_PROXIED_NO_ETAG},
        {"auth", BL_GZIP_PROXIED_AUTH}, {"any", BL_GZIP_PROXIED_ANY},
    };
    uint64_t bits = 0;
    for (int i = 0; i < n->nargs; i++) {
        size_t k = 0;
        while (k < BL_ARRAY_LEN(words) && strcmp(words[k].name, n->args[i]) != 0)
            k++;
        if (k == BL_ARRAY_LEN(words))
            return invalid_value(c, n->args[i]);
        if (k == 0 && n->nargs > 1)
            return fail(c, "\"gzip_proxied off\" takes no other value");
        bits |= words[k].bit;
    }
    if (c->lc->gzip_proxied != UINT64_MAX)
        return fail(c, "\"gzip_proxied\" directive is duplicate");
    c->lc->gzip_proxied = bits;
    return BL_OK;
}

/* gzip_types: text/html is always compressed (nginx), so it is added to every list. */
static int h_gzip_types(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->set & BL_LC_GZIP_TYPES)
        return fail(c, "\"gzip_types\" directive is duplicate");
    char **types = conf_calloc((size_t)n->nargs + 1, sizeof(*types));
    if (!types)
        return oom(c);
    lc->gzip_types = types;
    lc->set |= BL_LC_GZIP_TYPES;
    if (!(types[lc->ngzip_types] = conf_strdup("text/html")))
        return oom(c);
    lc->ngzip_types++;
    for (int i = 0; i < n->nargs; i++) {
        if (!n->args[i][0] || strchr(n->args[i], '$'))
            return invalid_value(c, n->args[i]);
        if (!(types[lc->ngzip_types] = conf_strdup(n->args[i])))
            return oom(c);
        lc->ngzip_types++;
    }
    return BL_OK;
}

/* gzip_disable: case-insensitive regexes against User-Agent (nginx compiles them caseless). */
static int h_gzip_disable(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->set & BL_LC_GZIP_DISABLE)
        return fail(c, "\"gzip_disable\" directive is duplicate");
    struct bl_regex **res = conf_calloc((size_t)n->nargs, sizeof(*res));
    if (!res)
        return oom(c);
    lc->gzip_disable = res;
    lc->set |= BL_LC_GZIP_DISABLE;
    for (int i = 0; i < n->nargs; i++) {
        /* nginx's "msie6" is a fast check for MSIE 4-6; the regex says the same */
        const char *pat = strcmp(n->args[i], "msie6") == 0 ? "MSIE [4-6]\\." : n->args[i];
        char err[160];
        if (!(res[i] = bl_regex_compile(pat, 1, err, sizeof(err))))
            return fail(c, "invalid gzip_disable regex \"%s\": %s", n->args[i], err);
        lc->ngzip_disable++;
    }
    return BL_OK;
}

/* gzip_buffers NUMBER SIZE: accepted and checked; ballast's compressor needs no buffers beyond
 * one output buffer per response (docs/compression.md). */
static int h_gzip_buffers(struct compiler *c, const struct bl_conf_node *n)
{
    int64_t num;
    uint64_t size;
    if (parse_num(n->args[0], 1, 1 << 20, &num) != BL_OK)
        return invalid_value(c, n->args[0]);
    if (bl_parse_size(n->args[1], &size) != BL_OK || size < 1)
        return invalid_value(c, n->args[1]);
    return BL_OK;
}

static int h_default_type(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->set & BL_LC_DEFAULT_TYPE)
        return fail(c, "\"default_type\" directive is duplicate");
    if (!(lc->default_type = conf_strdup(n->args[0])))
        return oom(c);
    lc->set |= BL_LC_DEFAULT_TYPE;
    return BL_OK;
}

/* types { MIME-TYPE EXTENSION ...; ... }: each line of the block is read as a directive whose
 * name is the type and whose arguments are the extensions. */
static int h_types(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->set & BL_LC_TYPES)
        return fail(c, "\"types\" directive is duplicate");
    lc->set |= BL_LC_TYPES;
    for (int i = 0; i < n->nchildren; i++) {
        const struct bl_conf_node *t = &n->children[i];
        c->node = t;
        if (t->is_block || t->nargs == 0)
            return fail(c, "invalid number of arguments in \"%s\" directive", t->name);
        for (int k = 0; k < t->nargs; k++) {
            struct bl_mime_type *types = grow(lc->types, lc->ntypes, sizeof(*types));
            if (!types)
                return oom(c);
            lc->types = types;
            struct bl_mime_type *m = &types[lc->ntypes];
            if (!(m->ext = conf_strdup(t->args[k])) || !(m->type = conf_strdup(t->name))) {
                free(m->ext);
                return oom(c);
            }
            lc->ntypes++;
        }
    }
    c->node = n;
    return BL_OK;
}

/* ---- static files (http/static.c, docs/static.md) ---- */

/* alias PATH: the location's prefix of the URI replaced by PATH; in a regex location PATH is
 * the whole file path, usually with the regex's captures (nginx). */
static int h_alias(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_location *loc = c->loc;
    if (loc->alias)
        return fail(c, "\"alias\" directive is duplicate");
    if (loc->root)
        return fail(c, "\"alias\" directive is duplicate, \"root\" directive was specified "
                       "earlier");
    if (loc->named)
        return fail(c, "\"alias\" directive cannot be used inside the named location");
    if (loc->kind == BL_LOC_PROXY)
        return fail(c, "\"alias\" and \"proxy_pass\" in one location");
    if (!(loc->alias = conf_strdup(n->args[0])))
        return oom(c);
    if ((loc->regex || strchr(n->args[0], '$')) &&
        !(loc->alias_tpl = template_vars(c, n->args[0])))
        return BL_ERR;
    if (loc->kind == BL_LOC_NONE)
        loc->kind = BL_LOC_STATIC;
    return BL_OK;
}

/* A count of seconds with nginx's expires units: those of every time ("30s", "1h", "1d",
 * "1w"), and "M" (30 days) and "y" (365 days) alone. BL_OK or BL_ERR. */
static int expires_seconds(const char *a, int64_t *out)
{
    int neg = a[0] == '-';
    const char *p = a + (neg || a[0] == '+');
    size_t len = strlen(p);
    uint64_t v;
    if (len > 1 && (p[len - 1] == 'y' || p[len - 1] == 'M')) {
        char num[24];
        int64_t k;
        if (len - 1 >= sizeof(num))
            return BL_ERR;
        memcpy(num, p, len - 1);
        num[len - 1] = '\0';
        if (parse_num(num, 0, 1000, &k) != BL_OK)
            return BL_ERR;
        v = (uint64_t)k * (p[len - 1] == 'y' ? 365 : 30) * 86400;
    } else {
        if (bl_parse_time_ms(p, 1000, 100ull * 365 * 86400000ull, &v) != BL_OK)
            return BL_ERR;
        v /= 1000;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return BL_OK;
}

/* expires [modified] TIME | epoch | max | off */
static int h_expires(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->expires != UINT64_MAX)
        return fail(c, "\"expires\" directive is duplicate");
    const char *a = n->args[n->nargs - 1];
    uint64_t mode = BL_EXPIRES_TIME;
    int64_t t = 0;
    if (n->nargs == 2) {
        if (strcmp(n->args[0], "modified") != 0)
            return invalid_value(c, n->args[0]);
        mode = BL_EXPIRES_MODIFIED;
    }
    if (n->nargs == 1 && strcmp(a, "off") == 0)
        mode = BL_EXPIRES_OFF;
    else if (n->nargs == 1 && strcmp(a, "epoch") == 0)
        mode = BL_EXPIRES_EPOCH;
    else if (n->nargs == 1 && strcmp(a, "max") == 0)
        mode = BL_EXPIRES_MAX;
    else if (a[0] == '@')
        return fail(c, "\"expires @TIME\" (a time of day) is not supported in this build");
    else if (strchr(a, '$'))
        return fail(c, "\"expires\" with variables is not supported in this build");
    else if (expires_seconds(a, &t) != BL_OK)
        return invalid_value(c, a);
    lc->expires = mode;
    lc->expires_time = (uint64_t)t;
    return BL_OK;
}

/* disable_symlinks off | on | if_not_owner [from=$document_root] | outside_root */
static int h_disable_symlinks(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->disable_symlinks != UINT64_MAX)
        return fail(c, "\"disable_symlinks\" directive is duplicate");
    const char *a = n->args[0];
    if (strcmp(a, "off") == 0)
        lc->disable_symlinks = BL_SYMLINKS_FOLLOW;
    else if (strcmp(a, "on") == 0)
        lc->disable_symlinks = BL_SYMLINKS_REFUSE;
    else if (strcmp(a, "if_not_owner") == 0)
        lc->disable_symlinks = BL_SYMLINKS_IF_NOT_OWNER;
    else if (strcmp(a, "outside_root") == 0)
        lc->disable_symlinks = BL_SYMLINKS_BENEATH;
    else
        return invalid_value(c, a);
    lc->disable_symlinks_from_root = 0;
    if (n->nargs == 2) {
        if (lc->disable_symlinks == BL_SYMLINKS_FOLLOW ||
            lc->disable_symlinks == BL_SYMLINKS_BENEATH)
            return fail(c, "\"from=\" cannot be used with \"%s\"", a);
        if (strcmp(n->args[1], "from=$document_root") != 0)
            return fail(c, "\"disable_symlinks\" %s: only \"from=$document_root\" is supported "
                           "in this build", n->args[1]);
        lc->disable_symlinks_from_root = 1;
    }
    return BL_OK;
}

/* gzip_static on | off | always */
static int h_gzip_static(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->gzip_static != UINT64_MAX)
        return fail(c, "\"gzip_static\" directive is duplicate");
    const char *a = n->args[0];
    if (strcmp(a, "off") == 0)
        lc->gzip_static = BL_GZIP_STATIC_OFF;
    else if (strcmp(a, "on") == 0)
        lc->gzip_static = BL_GZIP_STATIC_ON;
    else if (strcmp(a, "always") == 0)
        lc->gzip_static = BL_GZIP_STATIC_ALWAYS;
    else
        return invalid_value(c, a);
    return BL_OK;
}

/* autoindex_format html | json (nginx's xml and jsonp are not built) */
static int h_autoindex_format(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (lc->autoindex_format != UINT64_MAX)
        return fail(c, "\"autoindex_format\" directive is duplicate");
    const char *a = n->args[0];
    if (strcmp(a, "html") == 0)
        lc->autoindex_format = BL_AUTOINDEX_HTML;
    else if (strcmp(a, "json") == 0)
        lc->autoindex_format = BL_AUTOINDEX_JSON;
    else if (strcmp(a, "xml") == 0 || strcmp(a, "jsonp") == 0)
        return fail(c, "\"autoindex_format %s\" is not supported in this build (html, json)", a);
    else
        return invalid_value(c, a);
    return BL_OK;
}

/* disable [CODE] [TEXT | URI]: ballast's switch (docs/protection.md). */
static int h_disable(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_location *loc = c->loc;
    if (loc->disable_conf)
        return fail(c, "\"disable\" directive is duplicate");
    int64_t code = 503;
    int i = 0;
    if (n->nargs > i && n->args[i][0] >= '0' && n->args[i][0] <= '9') {
        if (parse_num(n->args[i], 200, 599, &code) != BL_OK)
            return fail(c, "\"disable\" code must be between 200 and 599: \"%s\"",
                        n->args[i]);
        i++;
    }
    if (n->nargs > i) {
        const char *a = n->args[i];
        char **to = a[0] == '/' || a[0] == '@' ? &loc->disable_uri : &loc->disable_text;
        if (!(*to = conf_strdup(a)))
            return oom(c);
        i++;
    }
    if (n->nargs > i)
        return fail(c, "invalid arguments in \"disable\": want [CODE] [TEXT | URI]");
    loc->disable_code = (int)code;
    loc->disable_conf = 1;
    return BL_OK;
}

static int h_try_files(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_location *loc = c->loc;
    if (loc->try_files)
        return fail(c, "\"try_files\" directive is duplicate");
    if (loc->kind == BL_LOC_PROXY || loc->kind == BL_LOC_RETURN)
        return fail(c, "\"try_files\" serves files: not with \"proxy_pass\" or \"return\"");
    const char *last = n->args[n->nargs - 1];
    int64_t code = 0;
    if (last[0] == '=' && parse_num(last + 1, 200, 599, &code) != BL_OK)
        return fail(c, "invalid code \"%s\" in \"try_files\"", last);
    if (last[0] != '=' && last[0] != '@' && last[0] != '/' && last[0] != '$')
        return fail(c, "the last \"try_files\" argument must be =CODE, @NAME or a URI, not "
                       "\"%s\"", last);
    if (!(loc->try_list = conf_calloc((size_t)n->nargs - 1, sizeof(*loc->try_list))))
        return oom(c);
    for (int i = 0; i < n->nargs - 1; i++) {
        const char *a = n->args[i];
        if (a[0] != '/' && a[0] != '$')
            return fail(c, "\"try_files\" file \"%s\" must start with \"/\" or a variable",
                        a);
        struct bl_try_file *t = &loc->try_list[loc->ntry];
        if (!(t->path = template_vars(c, a)))
            return BL_ERR;
        t->dir = a[strlen(a) - 1] == '/';
        loc->ntry++;
    }
    if (!code && !(loc->try_fallback = conf_strdup(last)))
        return oom(c);
    if (!code && strchr(last, '$') && !(loc->try_fallback_tpl = template_vars(c, last)))
        return BL_ERR;
    loc->try_files = 1;
    loc->try_code = (int)code;
    return BL_OK;
}

/* user USER [GROUP]: resolved at load, so that -t finds a name that does not exist; applied
 * in main.c after the listeners and the pid file, before any thread starts. */
static int h_user(struct compiler *c, const struct bl_conf_node *n)
{
    const char *group = n->nargs > 1 ? n->args[1] : n->args[0];
    struct passwd *pw = getpwnam(n->args[0]);
    if (!pw)
        return fail(c, "getpwnam(\"%s\") failed", n->args[0]);
    struct group *gr = getgrnam(group);
    if (!gr)
        return fail(c, "getgrnam(\"%s\") failed", group);
    free(c->cfg->user);
    if (!(c->cfg->user = conf_strdup(n->args[0])))
        return oom(c);
    c->cfg->uid = pw->pw_uid;
    c->cfg->gid = gr->gr_gid;
    return BL_OK;
}

/* nginx's hash table sizes: ballast has no such tables; the line is checked and does nothing. */
static int h_number_ignore(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t v;
    if (bl_parse_size(n->args[0], &v) != BL_OK)
        return invalid_value(c, n->args[0]);
    return BL_OK;
}

/* ---- realip (http/realip.c) ---- */

/* ADDR or ADDR/BITS for set_real_ip_from and geo: BL_ERR when it is not one (the caller says
 * why, in its directive's words); low address bits set beyond the prefix are warned about and
 * masked, as nginx does. nginx 1.22 reads "all" as a host name and fails to resolve it. */
static int conf_network(struct compiler *c, const char *text, struct bl_cidr *net)
{
    int rc = strcmp(text, "all") == 0 ? -1 : bl_cidr_parse(text, net);
    if (rc == 1) {
        char msg[300];
        snprintf(msg, sizeof(msg), "low address bits of %s are meaningless", text);
        warn(c, msg);
    }
    return rc < 0 ? BL_ERR : BL_OK;
}

static int h_set_real_ip_from(struct compiler *c, const struct bl_conf_node *n)
{
    const char *text = n->args[0];
    if (strncmp(text, "unix:", 5) == 0)
        return fail(c, "\"set_real_ip_from unix:\" is not supported in this build: ballast "
                       "does not listen on unix sockets");
    struct bl_cidr net;
    if (conf_network(c, text, &net) != BL_OK)
        return fail(c, "invalid network or address \"%s\" (host names are not resolved in "
                       "this build)", text);
    struct bl_loc_conf *lc = c->lc;
    if (!(lc->set & BL_LC_REALIP_FROM)) {
        lc->realip_from = NULL; /* the level above's list is not this level's to grow */
        lc->nrealip_from = 0;
        lc->set |= BL_LC_REALIP_FROM;
    }
    struct bl_cidr *list = grow(lc->realip_from, lc->nrealip_from, sizeof(*list));
    if (!list)
        return oom(c);
    lc->realip_from = list;
    list[lc->nrealip_from++] = net;
    return BL_OK;
}

static int h_real_ip_header(struct compiler *c, const struct bl_conf_node *n)
{
    const char *name = n->args[0];
    if (!*name)
        return invalid_value(c, name);
    struct bl_loc_conf *lc = c->lc;
    if (lc->set & BL_LC_REALIP_HEADER) {
        if (lc != &c->cfg->defaults)
            return fail(c, "\"real_ip_header\" directive is duplicate");
        free(lc->real_ip_header);
    }
    if (!(lc->real_ip_header = conf_strdup(name)))
        return oom(c);
    /* nginx compares the name as written: only "X-Forwarded-For" reads every line of it */
    lc->real_ip_xff = strcmp(name, "X-Forwarded-For") == 0;
    lc->real_ip_pp = strcmp(name, "proxy_protocol") == 0;
    lc->set |= BL_LC_REALIP_HEADER;
    return BL_OK;
}

/* ---- split_clients and geo (http/varblock.c works their values out) ---- */

/* The block that defines variable text ("$name"), registered for it; NULL after an error. */
static struct bl_varblock *varblock_new(struct compiler *c, const char *text, uint8_t kind)
{
    if (text[0] != '$' || !text[1]) {
        fail(c, "invalid variable name \"%s\"", text);
        return NULL;
    }
    int idx = var_index(c->cfg, text + 1);
    if (idx < 0) {
        fail(c, "the built-in variable \"%s\" cannot be defined by \"%s\"", text, c->node->name);
        return NULL;
    }
    struct bl_config *cfg = c->cfg;
    if (!cfg->var_blocks &&
        !(cfg->var_blocks = conf_calloc(cfg->vars.n, sizeof(*cfg->var_blocks)))) {
        oom(c);
        return NULL;
    }
    if (cfg->var_blocks[idx] || (cfg->var_maps && cfg->var_maps[idx])) {
        fail(c, "duplicate \"%s\" variable", text + 1);
        return NULL;
    }
    struct bl_varblock *b = conf_calloc(1, sizeof(*b));
    if (!b) {
        oom(c);
        return NULL;
    }
    b->kind = kind;
    b->var = (uint32_t)idx;
    cfg->var_blocks[idx] = b;
    return b;
}

static void varblock_free(struct bl_varblock *b)
{
    if (!b)
        return;
    bl_template_free(b->source);
    for (uint32_t i = 0; i < b->nparts; i++)
        free(b->parts[i].value);
    free(b->parts);
    for (uint32_t i = 0; i < b->nnets; i++)
        free(b->nets[i].value);
    free(b->nets);
    free(b->deflt);
    free(b);
}

/* "10%", "0.5%": hundredths of a percent (nginx's ngx_atofp with two decimals); 0 invalid. */
static uint32_t split_percent(const char *s)
{
    size_t len = strlen(s);
    if (len < 2 || s[len - 1] != '%')
        return 0;
    uint64_t v = 0;
    int dot = 0, decimals = 0;
    for (size_t i = 0; i < len - 1; i++) {
        if (s[i] == '.' && !dot) {
            dot = 1;
            continue;
        }
        if (s[i] < '0' || s[i] > '9' || (dot && ++decimals > 2) || v > 100000)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    while (decimals++ < 2)
        v *= 10;
    return v > 10000 ? 10001 : (uint32_t)v;
}

/* split_clients STRING $VARIABLE { PERCENT VALUE; ... * VALUE; } */
static int h_split_clients(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_varblock *b = varblock_new(c, n->args[1], BL_VB_SPLIT);
    if (!b || !(b->source = template_vars(c, n->args[0])))
        return BL_ERR;
    uint32_t sum = 0, last = 0;
    for (int i = 0; i < n->nchildren; i++) {
        const struct bl_conf_node *t = &n->children[i];
        c->node = t;
        if (t->is_block || t->nargs != 1)
            return fail(c, "invalid number of parameters in \"split_clients\" block");
        uint32_t pct = 0;
        if (strcmp(t->name, "*") != 0 && !(pct = split_percent(t->name)))
            return fail(c, "invalid percent value \"%s\"", t->name);
        sum = pct ? sum + pct : 10000;
        if (sum > 10000)
            return fail(c, "percent total is greater than 100%%");
        struct bl_split_part *p = grow(b->parts, b->nparts, sizeof(*p));
        if (!p)
            return oom(c);
        b->parts = p;
        p = &b->parts[b->nparts];
        if (!(p->value = conf_strdup(t->args[0])))
            return oom(c);
        b->nparts++;
        if (pct) {
            /* nginx's bucket bounds: each share of 2^32-1 added to a 32-bit running bound. */
            last += (uint32_t)((uint64_t)pct * 0xffffffffu / 10000);
            p->upto = last;
        }
    }
    c->node = n;
    return BL_OK;
}

/* One "NET VALUE;", "default VALUE;" or "delete NET;" line of a geo block into b. */
static int geo_line(struct compiler *c, struct bl_varblock *b, const struct bl_conf_node *t)
{
    /* include is expanded by the parser: its lines arrive here as the block's own. */
    static const char *const refused[] = {"proxy", "ranges", "proxy_recursive"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (strcmp(t->name, refused[i]) == 0)
            return fail(c, "\"%s\" inside \"geo\" is not supported in this build", t->name);
    if (t->is_block || t->nargs != 1)
        return fail(c, "invalid number of the geo parameters");
    if (strcmp(t->name, "default") == 0) {
        free(b->deflt);
        return (b->deflt = conf_strdup(t->args[0])) ? BL_OK : oom(c);
    }
    int del = strcmp(t->name, "delete") == 0;
    const char *text = del ? t->args[0] : t->name;
    struct bl_cidr net;
    if (conf_network(c, text, &net) != BL_OK)
        return fail(c, "invalid network \"%s\"", text);
    for (uint32_t i = 0; i < b->nnets; i++) {
        struct bl_geo_net *g = &b->nets[i];
        if (g->net.bits != net.bits || memcmp(&g->net.addr, &net.addr, sizeof(net.addr)) != 0)
            continue;
        if (del) {
            free(g->value);
            b->nets[i] = b->nets[--b->nnets];
            return BL_OK;
        }
        char msg[600];
        snprintf(msg, sizeof(msg), "duplicate network \"%s\", value: \"%s\", old value: \"%s\"",
                 text, t->args[0], g->value);
        warn(c, msg);
        char *v = conf_strdup(t->args[0]);
        if (!v)
            return oom(c);
        free(g->value);
        g->value = v;
        return BL_OK;
    }
    if (del) {
        char msg[300];
        snprintf(msg, sizeof(msg), "no network \"%s\" to delete", text);
        warn(c, msg);
        return BL_OK;
    }
    struct bl_geo_net *g = grow(b->nets, b->nnets, sizeof(*g));
    if (!g)
        return oom(c);
    b->nets = g;
    g = &b->nets[b->nnets];
    g->net = net;
    if (!(g->value = conf_strdup(t->args[0])))
        return oom(c);
    b->nnets++;
    return BL_OK;
}

/* geo [$ADDRESS] $VARIABLE { default V; CIDR V; ADDR V; delete CIDR; } */
static int h_geo(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_varblock *b = varblock_new(c, n->args[n->nargs - 1], BL_VB_GEO);
    if (!b)
        return BL_ERR;
    if (n->nargs == 2 && !(b->source = template_vars(c, n->args[0])))
        return BL_ERR;
    int rc = BL_OK;
    for (int i = 0; rc == BL_OK && i < n->nchildren; i++) {
        c->node = &n->children[i];
        rc = geo_line(c, b, &n->children[i]);
    }
    c->node = n;
    if (rc == BL_OK && !b->deflt && !(b->deflt = conf_strdup("")))
        return oom(c);
    return rc;
}

/* ---- typed settings ---- */


/* ---------------------------------------------------------------- limits, allow, deny
 * (src/policy/: the parsing is there, these hand it the level being compiled) */

static int stream_key_ok(const char *key);

/* The variables a stream limit_conn_zone key may use: what a connection has before any
 * byte. */
static int stream_limit_key_ok(const char *key)
{
    if (strstr(key, "$binary_remote_addr") || strstr(key, "${binary_remote_addr}")) {
        char *copy = strdup(key), *p;
        if (!copy)
            return 0;
        while ((p = strstr(copy, "binary_remote_addr")))
            memmove(p, p + 7, strlen(p + 7) + 1); /* "binary_" dropped */
        int ok = stream_key_ok(copy);
        free(copy);
        return ok;
    }
    return stream_key_ok(key);
}

static int h_limit_zone(struct compiler *c, const struct bl_conf_node *n)
{
    int req = strcmp(n->name, "limit_req_zone") == 0;
    struct bl_limit_zones *z = &c->cfg->limits;
    if (c->in_stream && !stream_limit_key_ok(n->args[0]))
        return fail(c, "key \"%s\" of \"limit_conn_zone\" uses a variable stream does not "
                       "have (only $binary_remote_addr, $remote_addr, $remote_port, "
                       "$server_port)", n->args[0]);
    struct bl_template *key = template_vars(c, n->args[0]);
    if (!key)
        return BL_ERR;
    char err[256];
    int rc = bl_limit_zone_parse(req ? &z->req : c->in_stream ? &z->stream_conn : &z->conn,
                                 req ? &z->nreq : c->in_stream ? &z->nstream_conn : &z->nconn,
                                 req, n->name, key, n->args[0], n->args + 1, n->nargs - 1,
                                 n->file, n->line, err, sizeof(err));
    if (rc != BL_OK) {
        bl_template_free(key);
        return fail(c, "%s", err);
    }
    return BL_OK;
}

static int h_limit_req(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (!(lc->set & BL_LC_LIMIT_REQ)) {
        lc->limit_reqs = NULL; /* nginx: a level's lines replace every inherited one */
        lc->nlimit_reqs = 0;
        lc->set |= BL_LC_LIMIT_REQ;
    }
    char err[256];
    if (bl_limit_req_parse(&c->cfg->limits, &lc->limit_reqs, &lc->nlimit_reqs, n->args,
                           n->nargs, n->file, n->line, err, sizeof(err)) != BL_OK)
        return fail(c, "%s", err);
    return BL_OK;
}

static int h_limit_conn(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (!(lc->set & BL_LC_LIMIT_CONN)) {
        lc->limit_conns = NULL;
        lc->nlimit_conns = 0;
        lc->set |= BL_LC_LIMIT_CONN;
    }
    char err[256];
    if (bl_limit_conn_parse(&c->cfg->limits, c->in_stream, &lc->limit_conns, &lc->nlimit_conns,
                            n->args, n->file, n->line, err, sizeof(err)) != BL_OK)
        return fail(c, "%s", err);
    return BL_OK;
}

/* limit_req_status, limit_conn_status: the row's field, 400..599 as nginx. */
static int h_limit_status(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t *f = lc_field(c->lc, c->dir->offset);
    int64_t v;
    if (parse_num(n->args[0], 0, 999, &v) != BL_OK || v < 400 || v > 599)
        return fail(c, "value must be between 400 and 599");
    if (*f != UINT64_MAX)
        return fail(c, "\"%s\" directive is duplicate", n->name);
    *f = (uint64_t)v;
    return BL_OK;
}

/* limit_req_log_level, limit_conn_log_level: info | notice | warn | error. */
static int h_limit_log_level(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t *f = lc_field(c->lc, c->dir->offset);
    int v = bl_log_level_parse(n->args[0]);
    if (v < BL_LOG_INFO || v > BL_LOG_ERROR)
        return invalid_value(c, n->args[0]);
    if (*f != UINT64_MAX)
        return fail(c, "\"%s\" directive is duplicate", n->name);
    *f = (uint64_t)v;
    return BL_OK;
}

static int h_access_rule(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_access_rule rule;
    char err[256];
    int warned;
    if (bl_access_parse(n->args[0], n->name[0] == 'd', &rule, &warned, err, sizeof(err))
        != BL_OK)
        return fail(c, "%s", err);
    if (warned) {
        char msg[320];
        snprintf(msg, sizeof(msg), "low address bits of %s are meaningless", n->args[0]);
        warn(c, msg);
    }
    struct bl_loc_conf *lc = c->lc;
    if (!(lc->set & BL_LC_ACCESS_RULES)) {
        lc->access_rules = NULL;
        lc->naccess_rules = 0;
        lc->set |= BL_LC_ACCESS_RULES;
    }
    struct bl_access_rule *list = grow(lc->access_rules, lc->naccess_rules, sizeof(*list));
    if (!list)
        return oom(c);
    lc->access_rules = list;
    list[lc->naccess_rules++] = rule;
    return BL_OK;
}

static int h_typed(struct compiler *c, const struct bl_conf_node *n);

/* ---------------------------------------------------------------- stream */

static void stream_conf_init(struct bl_stream_conf *sc)
{
    uint64_t *f = (uint64_t *)sc;
    for (size_t i = 0; i < sizeof(*sc) / sizeof(uint64_t); i++)
        f[i] = UINT64_MAX;
}

static void stream_conf_merge(struct bl_stream_conf *child, const struct bl_stream_conf *parent)
{
    uint64_t *cf = (uint64_t *)child;
    const uint64_t *pf = (const uint64_t *)parent;
    for (size_t i = 0; i < sizeof(*child) / sizeof(uint64_t); i++)
        if (cf[i] == UINT64_MAX)
            cf[i] = pf[i];
}

static int h_stream(struct compiler *c, const struct bl_conf_node *n)
{
    if (c->seen_stream++)
        return fail(c, "\"stream\" directive is duplicate");
    c->in_stream = 1;
    c->sc = &c->cfg->stream_conf;
    struct bl_loc_conf *saved = enter_level(c, &c->cfg->stream_log);
    int rc = compile_block(c, n, CTX_STREAM);
    enter_level(c, saved);
    c->in_stream = 0;
    c->sc = NULL;
    return rc;
}

static int h_stream_server(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_config *cfg = c->cfg;
    struct bl_stream_server **servers = grow(cfg->stream_servers, cfg->nstream_servers,
                                             sizeof(*servers));
    if (!servers)
        return oom(c);
    cfg->stream_servers = servers;
    struct bl_stream_server *s = conf_calloc(1, sizeof(*s));
    if (!s)
        return oom(c);
    s->file = n->file;
    s->line = n->line;
    stream_conf_init(&s->conf);
    loc_conf_init(&s->log);
    cfg->stream_servers[cfg->nstream_servers++] = s;
    c->ssrv = s;
    c->sc = &s->conf;
    struct bl_loc_conf *saved = enter_level(c, &s->log);
    int rc = compile_block(c, n, CTX_SSERVER);
    enter_level(c, saved);
    c->ssrv = NULL;
    c->sc = &cfg->stream_conf;
    if (rc != BL_OK)
        return rc;
    c->node = n;
    int listening = 0;
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        listening |= cfg->listens[i].stream == s;
    if (!listening)
        return fail(c, "stream server block has no \"listen\" directive");
    if (!s->pass)
        return fail(c, "stream server block has no \"proxy_pass\" directive");
    return BL_OK;
}

/* listen in a stream server: TCP, or UDP with `udp`; what this build lacks (ssl) is refused by
 * name. */
static int h_stream_listen(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256];
    struct sockaddr_storage ss;
    socklen_t sl;
    if (bl_addr_parse(n->args[0], 0, 0, &ss, &sl, err, sizeof(err)) != 0)
        return fail(c, "%s in \"listen\" directive", err);
    int reuseport = 0, pp = 0, udp = 0, rc;
    struct listen_sock sock = {.backlog = 511};
    for (int i = 1; i < n->nargs; i++) {
        const char *a = n->args[i];
        if ((rc = listen_sock_param(c, a, &sock)) < 0)
            return BL_ERR;
        if (rc)
            continue;
        if (strcmp(a, "udp") == 0) {
            udp = 1;
        } else if (strcmp(a, "reuseport") == 0) {
            reuseport = 1;
        } else if (strcmp(a, "proxy_protocol") == 0) {
            pp = 1;
        } else if (strcmp(a, "bind") == 0 || strcmp(a, "ipv6only=on") == 0) {
            ;
        } else if (strcmp(a, "ssl") == 0) {
            return fail(c, "TLS in stream is not supported in this build: \"ssl\" parameter "
                           "of \"listen\"");
        } else {
            const struct bl_unsupported *u = bl_unsupported_listen_param(a);
            char what[160];
            snprintf(what, sizeof(what), "\"%s\" parameter of \"listen\"", a);
            if (!u)
                return invalid_value(c, a);
            if (unsupported(c, u, what) != BL_OK)
                return BL_ERR;
        }
    }
    if (udp && pp)
        return fail(c, "the PROXY protocol over UDP is not supported in this build: "
                       "\"proxy_protocol\" with \"udp\" in \"listen\"");
    char text[BL_ADDR_STRLEN + 4];
    int tl = bl_addr_format((struct sockaddr *)&ss, text, BL_ADDR_STRLEN);
    if (udp && tl > 0 && (size_t)tl + 4 < sizeof(text))
        memcpy(text + tl, " udp", 5);   /* a TCP and a UDP listener may share a port */
    struct bl_config *cfg = c->cfg;
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        if (strcmp(cfg->listens[i].text, text) == 0)
            return fail(c, "duplicate listen %s", text);
    struct bl_listen *listens = grow(cfg->listens, cfg->nlistens, sizeof(*listens));
    if (!listens)
        return oom(c);
    cfg->listens = listens;
    struct bl_listen *l = &cfg->listens[cfg->nlistens++];
    l->addr = ss;
    l->addrlen = sl;
    l->backlog = sock.backlog;
    l->sndbuf = sock.sndbuf;
    l->rcvbuf = sock.rcvbuf;
    l->reuseport = (uint8_t)reuseport;
    l->proxy_protocol = (uint8_t)pp;
    l->udp = (uint8_t)udp;
    snprintf(l->text, sizeof(l->text), "%s", text);
    l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    l->stream = c->ssrv;
    return BL_OK;
}

static int h_stream_proxy_pass(struct compiler *c, const struct bl_conf_node *n)
{
    if (c->ssrv->pass)
        return fail(c, "\"proxy_pass\" directive is duplicate");
    if (!(c->ssrv->pass = conf_strdup(n->args[0])))
        return oom(c);
    c->ssrv->pass_line = n->line;
    /* proxy_pass $var (nginx): the value names an upstream group per session (stream.c) */
    if (strchr(n->args[0], '$') && !(c->ssrv->pass_tpl = template_vars(c, n->args[0])))
        return BL_ERR;
    return BL_OK;
}

/* proxy_next_upstream on | off: stream retries connect failures only (nginx). */
static int h_stream_flag(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t *f = (uint64_t *)((char *)c->sc + c->dir->offset);
    uint64_t v;
    if (strcmp(n->args[0], "on") == 0)
        v = 1;
    else if (strcmp(n->args[0], "off") == 0)
        v = 0;
    else
        return invalid_value(c, n->args[0]);
    if (*f != UINT64_MAX && c->sc != &c->cfg->stream_defaults)
        return fail(c, "\"%s\" directive is duplicate", n->name);
    *f = v;
    return BL_OK;
}

static int h_stream_typed(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t *f = (uint64_t *)((char *)c->sc + c->dir->offset);
    uint64_t v;
    int64_t num;
    if (c->dir->type == FT_TIME) {
        if (parse_time_ms(n->args[0], &v) != BL_OK)
            return invalid_value(c, n->args[0]);
    } else if (c->dir->type == FT_SIZE) {
        if (bl_parse_size(n->args[0], &v) != BL_OK || v < 1 || v > 16u * 1024 * 1024)
            return invalid_value(c, n->args[0]);
    } else {
        if (parse_num(n->args[0], 0, 255, &num) != BL_OK)
            return invalid_value(c, n->args[0]);
        v = (uint64_t)num;
    }
    if (*f != UINT64_MAX && c->sc != &c->cfg->stream_defaults)
        return fail(c, "\"%s\" directive is duplicate", n->name);
    *f = v;
    return BL_OK;
}

/* proxy_responses / proxy_requests N (UDP): a count, 0 allowed. */
static int h_stream_count(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t *f = (uint64_t *)((char *)c->sc + c->dir->offset);
    int64_t num;
    if (parse_num(n->args[0], 0, 1000000000, &num) != BL_OK)
        return invalid_value(c, n->args[0]);
    if (*f != UINT64_MAX && c->sc != &c->cfg->stream_defaults)
        return fail(c, "\"%s\" directive is duplicate", n->name);
    *f = (uint64_t)num;
    return BL_OK;
}

/* proxy_protocol_version 1 | 2, in http (c->lc) or stream (c->sc) */
static int h_proxy_protocol_version(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t v;
    if (strcmp(n->args[0], "1") == 0)
        v = 1;
    else if (strcmp(n->args[0], "2") == 0)
        v = 2;
    else
        return invalid_value(c, n->args[0]);
    uint64_t *f = c->dir->contexts & CTX_SS ? &c->sc->pp_version : &c->lc->proxy_protocol_version;
    if (*f != UINT64_MAX && (c->dir->contexts & CTX_SS ? c->sc != &c->cfg->stream_defaults
                                                 : c->lc != &c->cfg->defaults))
        return fail(c, "\"%s\" directive is duplicate", n->name);
    *f = v;
    return BL_OK;
}

/* proxy_upload_rate / proxy_download_rate: bytes per second with nginx's size suffixes, 0 for
 * no limit. */
static int h_stream_rate(struct compiler *c, const struct bl_conf_node *n)
{
    uint64_t *f = (uint64_t *)((char *)c->sc + c->dir->offset);
    uint64_t v;
    if (bl_parse_size(n->args[0], &v) != BL_OK || v > (uint64_t)1 << 40)
        return invalid_value(c, n->args[0]);
    if (*f != UINT64_MAX && c->sc != &c->cfg->stream_defaults)
        return fail(c, "\"%s\" directive is duplicate", n->name);
    *f = v;
    return BL_OK;
}

/* The variables a stream hash key may use: what a connection has before any byte. */
static int stream_key_ok(const char *key)
{
    static const char *const vars[] = {"remote_addr", "remote_port", "server_port",
                                       "proxy_protocol_addr", "proxy_protocol_port",
                                       "proxy_protocol_server_addr",
                                       "proxy_protocol_server_port", "ssl_preread_server_name",
                                       "ssl_preread_alpn_protocols", "ssl_preread_protocol"};
    for (const char *p = strchr(key, '$'); p; p = strchr(p + 1, '$')) {
        const char *v = p + 1 + (p[1] == '{');
        int ok = 0;
        for (size_t i = 0; i < BL_ARRAY_LEN(vars); i++) {
            size_t l = strlen(vars[i]);
            if (strncmp(v, vars[i], l) == 0 && !(isalnum((unsigned char)v[l]) || v[l] == '_'))
                ok = 1;
        }
        if (!ok)
            return 0;
    }
    return 1;
}

static void merge_loc_conf(struct bl_loc_conf *child, const struct bl_loc_conf *parent);

/* What only TCP sessions do (stream.c), refused for a UDP server (stream/udp.c has none of
 * it) rather than ignored. */
static int stream_tcp_only(struct compiler *c, const struct bl_stream_server *s)
{
    const char *what = s->conf.pp_send         ? "proxy_protocol on"
                       : s->conf.upload_rate   ? "proxy_upload_rate"
                       : s->conf.download_rate ? "proxy_download_rate"
                       : s->conf.ssl_preread   ? "ssl_preread on"
                       : s->pass_tpl           ? "proxy_pass with variables"
                                               : NULL;
    if (!what)
        return BL_OK;
    for (uint32_t i = 0; i < c->cfg->nlistens; i++)
        if (c->cfg->listens[i].stream == s && c->cfg->listens[i].udp) {
            snprintf(c->err, c->errlen, "\"%s\" is not supported for UDP (\"listen ... udp\") "
                     "in this build, in the stream server in %s:%d", what, s->file, s->line);
            return BL_ERR;
        }
    return BL_OK;
}

/* Each stream server's proxy_pass: a group, or ADDR:PORT made a group of one (as http's). */
static int finish_stream(struct compiler *c)
{
    struct bl_config *cfg = c->cfg;
    stream_conf_merge(&cfg->stream_conf, &cfg->stream_defaults);
    merge_loc_conf(&cfg->stream_log, &cfg->defaults);
    for (uint32_t i = 0; i < cfg->nstream_servers; i++) {
        struct bl_stream_server *s = cfg->stream_servers[i];
        stream_conf_merge(&s->conf, &cfg->stream_conf);
        merge_loc_conf(&s->log, &cfg->stream_log);
        if (stream_tcp_only(c, s) != BL_OK)
            return BL_ERR;
        if (s->pass_tpl)
            continue;
        struct bl_upstream_group *g = group_find(cfg, s->pass);
        if (!g) {
            char err[256];
            struct sockaddr_storage ss;
            socklen_t sl;
            if (!strchr(s->pass, ':') ||
                bl_addr_parse(s->pass, 0, 1, &ss, &sl, err, sizeof(err)) != 0) {
                snprintf(c->err, c->errlen, "host not found in upstream \"%s\" in %s:%d",
                         s->pass, s->file, s->pass_line);
                return BL_ERR;
            }
            struct bl_conf_node fake = {.name = (char *)"proxy_pass", .file = (char *)s->file,
                                        .line = s->pass_line};
            if (!(g = group_new(c, s->pass, &fake)))
                return BL_ERR;
            struct bl_upstream_server *us = group_add_server(g, s->pass);
            if (!us)
                return oom_at(c, "proxy_pass", s->file, s->pass_line);
            us->addr = ss;
            us->addrlen = sl;
            us->max_fails = 0; /* nginx: a single server is never marked unavailable */
        }
        if (g->hash_key && !stream_key_ok(g->hash_key)) {
            snprintf(c->err, c->errlen, "hash key \"%s\" of upstream \"%s\" uses a variable "
                     "stream does not have (only $remote_addr, $remote_port, $server_port, "
                     "$proxy_protocol_addr, $proxy_protocol_port and their _server_ forms, "
                     "$ssl_preread_*) in "
                     "%s:%d", g->hash_key, g->name, g->file, g->line);
            return BL_ERR;
        }
        s->upstream = g;
    }
    return BL_OK;
}

/* proxy_cache_path (conf/cache_conf.c). */
static int h_proxy_cache_path(struct compiler *c, const struct bl_conf_node *n)
{
    char err[512];
    if (bl_cache_path_add(&c->cfg->caches, n->args, n->nargs, n->file, n->line, err,
                          sizeof(err)) != BL_OK)
        return fail(c, "%s", err);
    return BL_OK;
}

/* proxy_cache and the proxy_cache_* lines: into the level's own settings, made on its first
 * such line and merged with the level above (conf/cache_conf.h). */
static int h_proxy_cache(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_loc_conf *lc = c->lc;
    if (!(lc->set & BL_LC_CACHE)) {
        lc->cache = NULL;
        lc->set |= BL_LC_CACHE;
    }
    char err[512];
    if (bl_cache_conf_set(&c->cfg->caches, &lc->cache, &c->cfg->vars, n->name, n->args,
                          n->nargs, n->file, n->line, err, sizeof(err)) != BL_OK)
        return fail(c, "%s", err);
    return BL_OK;
}

/* An http/server/location setting of one typed argument, kept in struct bl_loc_conf.FIELD. */
#define TYPED(name, ctx, type, field, deflt) \
    {name, ctx, 1, 1, 0, type, offsetof(struct bl_loc_conf, field), NULL, deflt, h_typed}
/* A stream-level setting: one uint64_t of struct bl_stream_conf. */
#define STYPED(name, type, field, deflt) \
    {name, CTX_SS, 1, 1, 0, type, offsetof(struct bl_stream_conf, field), NULL, deflt, \
     h_stream_typed}

/* Any other directive: its handler does the work. */
#define DIRECTIVE(name, ctx, min, max, flags, syntax, deflt, handler) \
    {name, ctx, min, max, flags, FT_NONE, 0, syntax, deflt, handler}

/* The directive table: the single source of truth for parsing, validation, defaults and the
 * docs check. Adding a directive is one row here and a section in docs/configuration.md:
 *   - a number, time, size or on|off that http, server and location inherit:
 *         a uint64_t field in struct bl_loc_conf (conf.h) and
 *         TYPED("gzip", CTX_HSL, FT_FLAG, gzip, "off"),
 *     parsing, the duplicate check, the default and inheritance follow from the row;
 *   - anything else:
 *         DIRECTIVE("default_type", CTX_HSL, 1, 1, 0, "MIME-TYPE", "text/plain", h_type),
 *     with the arguments' syntax as the docs write it (several forms separated by '\n') and the
 *     default as a line of the file would write its arguments, or NULL when there is none.
 * A default is compiled by its own row, as a line of the file would be, in the row's
 * outermost context: http, server and location defaults into the built-in level http inherits
 * from (so the handler must write c->lc, may store lists there, and its duplicate check does
 * not see them); main and events defaults into the config, and upstream ones into each new
 * group, before the file's lines, so those handlers let a later line replace the value. A
 * default that the owning module applies itself, or that only says what the absence of the
 * line means (DIR_DEFAULT_DOC), is documented and not compiled.
 * The docs test checks each row's Syntax, Default and Context lines against the docs.
 */
static const struct directive directives[] = {
    DIRECTIVE("include", CTX_ANY, 1, 1, 0, "PATTERN", NULL, h_include),
    /* main */
    DIRECTIVE("worker_processes", CTX_MAIN, 1, 1, 0, "NUMBER | auto", "auto",
              h_worker_processes),
    DIRECTIVE("error_log", CTX_MAIN | CTX_HTTP, 1, 2, 0, "FILE | stderr [LEVEL]", "stderr error",
              h_error_log),
    DIRECTIVE("pid", CTX_MAIN, 1, 1, 0, "FILE | off", NULL, h_pid),
    DIRECTIVE("shutdown_timeout", CTX_MAIN, 1, 1, 0, "TIME", "10s", h_shutdown_timeout),
    DIRECTIVE("worker_rlimit_nofile", CTX_MAIN, 1, 1, 0, "NUMBER", NULL, h_worker_rlimit_nofile),
    DIRECTIVE("user", CTX_MAIN, 1, 2, 0, "USER [GROUP]", NULL, h_user),
    DIRECTIVE("daemon", CTX_MAIN, 1, 1, 0, "on | off", "off", h_daemon),
    DIRECTIVE("events", CTX_MAIN, 0, 0, DIR_BLOCK, "", NULL, h_events),
    DIRECTIVE("http", CTX_MAIN, 0, 0, DIR_BLOCK, "", NULL, h_http),
    DIRECTIVE("admin", CTX_MAIN, 0, 0, DIR_BLOCK, "", NULL, h_admin),
    DIRECTIVE("stream", CTX_MAIN, 0, 0, DIR_BLOCK, "", NULL, h_stream),
    /* dns (conf/dns_conf.h) */
    DIRECTIVE("dns", CTX_MAIN, 0, 0, DIR_BLOCK, "", NULL, h_dns),
    DIRECTIVE("listen", CTX_DNS, 1, 3, 0, "ADDRESS:PORT udp [reuseport]", NULL, h_dns_listen),
    DIRECTIVE("zone", CTX_DNS, 1, 1, 0, "NAME", NULL, h_dns_zone),
    DIRECTIVE("ttl", CTX_DNS, 1, 1, DIR_DEFAULT_DOC, "TIME", "5s", h_dns_ttl),
    DIRECTIVE("record", CTX_DNS, 3, 3, 0, "NAME A | AAAA upstream=NAME", NULL, h_dns_record),
    /* admin */
    DIRECTIVE("listen", CTX_ADMIN, 1, 1, 0, "ADDRESS:PORT", "127.0.0.1:9901", h_admin_listen),
    DIRECTIVE("token_file", CTX_ADMIN, 1, 1, 0, "FILE", NULL, h_admin_token_file),
    /* events */
    DIRECTIVE("worker_connections", CTX_EVENTS, 1, 1, 0, "NUMBER", "10000", h_worker_connections),
    DIRECTIVE("use", CTX_EVENTS, 1, 1, 0, "epoll | io_uring", "epoll", h_use),
    DIRECTIVE("multi_accept", CTX_EVENTS, 1, 1, 0, "on | off", "off", h_flag_ignore),
    DIRECTIVE("accept_mutex", CTX_EVENTS, 1, 1, 0, "on | off", "off", h_flag_ignore),
    /* http */
    DIRECTIVE("upstream", CTX_HTTP, 1, 1, DIR_BLOCK, "NAME", NULL, h_upstream),
    DIRECTIVE("resolver", CTX_HTTP, 1, ANY_ARGS, 0,
              "ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off]", NULL, h_resolver),
    DIRECTIVE("resolver_timeout", CTX_HTTP, 1, 1, DIR_DEFAULT_DOC, "TIME", "30s",
              h_resolver_timeout),
    DIRECTIVE("server", CTX_HTTP, 0, 0, DIR_BLOCK, "", NULL, h_server),
    DIRECTIVE("map", CTX_HTTP, 2, 2, DIR_BLOCK, "$SOURCE $VARIABLE", NULL, h_map),
    DIRECTIVE("split_clients", CTX_HTTP, 2, 2, DIR_BLOCK, "STRING $VARIABLE", NULL,
              h_split_clients),
    DIRECTIVE("geo", CTX_HTTP, 1, 2, DIR_BLOCK, "[$ADDRESS] $VARIABLE", NULL, h_geo),
    DIRECTIVE("log_format", CTX_HTTP | CTX_STREAM, 2, ANY_ARGS, 0,
              "NAME [escape=default | json | none] STRING ...", NULL, h_log_format),
    DIRECTIVE("access_log", CTX_HSL, 1, 5, 0,
              "FILE [FORMAT [buffer=SIZE] [flush=TIME] [if=CONDITION]] | off", "off",
              h_access_log),
    TYPED("client_header_timeout", CTX_HTTP | CTX_SERVER, FT_TIME, client_header_timeout, "60s"),
    TYPED("client_body_timeout", CTX_HSL, FT_TIME, client_body_timeout, "60s"),
    {"keepalive_timeout", CTX_HSL, 1, 2, 0, FT_TIME, offsetof(struct bl_loc_conf,
     keepalive_timeout), "TIME [HEADER_TIME]", "75s", h_typed},
    TYPED("keepalive_requests", CTX_HSL, FT_NUM, keepalive_requests, "1000"),
    TYPED("send_timeout", CTX_HSL, FT_TIME, send_timeout, "60s"),
    TYPED("client_max_body_size", CTX_HSL, FT_SIZE, client_max_body_size, "1m"),
    DIRECTIVE("large_client_header_buffers", CTX_HTTP | CTX_SERVER, 2, 2, 0, "NUMBER SIZE",
              "4 8k", h_large_client_header_buffers),
    TYPED("proxy_connect_timeout", CTX_HSL, FT_TIME, proxy_connect_timeout, "60s"),
    TYPED("proxy_send_timeout", CTX_HSL, FT_TIME, proxy_send_timeout, "60s"),
    TYPED("proxy_read_timeout", CTX_HSL, FT_TIME, proxy_read_timeout, "60s"),
    DIRECTIVE("proxy_next_upstream", CTX_HSL, 1, 12, 0,
              "error | timeout | invalid_header | http_500 | http_502 | http_503 | http_504 | "
              "http_403 | http_404 | http_429 | non_idempotent ... | off",
              "error timeout", h_proxy_next_upstream),
    TYPED("proxy_next_upstream_tries", CTX_HSL, FT_NUM, next_upstream_tries, "0"),
    TYPED("proxy_next_upstream_timeout", CTX_HSL, FT_TIME, next_upstream_timeout, "0"),
    DIRECTIVE("error_page", CTX_HSL, 2, ANY_ARGS, 0, "CODE ... [=RESPONSE] URI", NULL,
              h_error_page),
    TYPED("proxy_intercept_errors", CTX_HSL, FT_FLAG, proxy_intercept_errors, "off"),
    TYPED("proxy_buffering", CTX_HSL, FT_FLAG, proxy_buffering, "on"),
    TYPED("proxy_request_buffering", CTX_HSL, FT_FLAG, proxy_request_buffering, "on"),
    DIRECTIVE("proxy_set_header", CTX_HSL, 2, 2, 0, "FIELD VALUE", NULL, h_proxy_set_header),
    DIRECTIVE("proxy_http_version", CTX_HSL, 1, 1, 0, "1.0 | 1.1", "1.1", h_ignore),
    DIRECTIVE("tcp_nopush", CTX_HSL, 1, 1, 0, "on | off", "off", h_flag_ignore),
    DIRECTIVE("tcp_nodelay", CTX_HSL, 1, 1, 0, "on | off", "on", h_flag_ignore),
    TYPED("server_tokens", CTX_HSL, FT_FLAG, server_tokens, "on"),
    DIRECTIVE("request_id_header", CTX_HSL, 1, 1, 0, "FIELD | off", "X-Request-ID",
              h_request_id_header),
    TYPED("trace_propagation", CTX_HSL, FT_FLAG, trace_propagation, "on"),
    TYPED("absolute_redirect", CTX_HSL, FT_FLAG, absolute_redirect, "on"),
    TYPED("server_name_in_redirect", CTX_HSL, FT_FLAG, server_name_in_redirect, "off"),
    TYPED("port_in_redirect", CTX_HSL, FT_FLAG, port_in_redirect, "on"),
    /* limits and access control (src/policy/, docs/protection.md) */
    DIRECTIVE("limit_req_zone", CTX_HTTP, 2, 6, 0,
              "KEY zone=NAME:SIZE rate=RATE [sync=redis://HOST:PORT] [sync_interval=TIME]", NULL,
              h_limit_zone),
    DIRECTIVE("limit_req", CTX_HSL, 1, 3, 0, "zone=NAME [burst=NUMBER] [nodelay | delay=NUMBER]",
              NULL, h_limit_req),
    {"limit_req_status", CTX_HSL, 1, 1, 0, FT_NONE, offsetof(struct bl_loc_conf,
     limit_req_status), "CODE", "503", h_limit_status},
    {"limit_req_log_level", CTX_HSL, 1, 1, 0, FT_NONE, offsetof(struct bl_loc_conf,
     limit_req_log_level), "info | notice | warn | error", "error", h_limit_log_level},
    TYPED("limit_req_dry_run", CTX_HSL, FT_FLAG, limit_req_dry_run, "off"),
    DIRECTIVE("limit_conn_zone", CTX_HTTP, 2, 2, 0, "KEY zone=NAME:SIZE", NULL, h_limit_zone),
    DIRECTIVE("limit_conn", CTX_HSL, 2, 2, 0, "ZONE NUMBER", NULL, h_limit_conn),
    {"limit_conn_status", CTX_HSL, 1, 1, 0, FT_NONE, offsetof(struct bl_loc_conf,
     limit_conn_status), "CODE", "503", h_limit_status},
    {"limit_conn_log_level", CTX_HSL, 1, 1, 0, FT_NONE, offsetof(struct bl_loc_conf,
     limit_conn_log_level), "info | notice | warn | error", "error", h_limit_log_level},
    TYPED("limit_conn_dry_run", CTX_HSL, FT_FLAG, limit_conn_dry_run, "off"),
    DIRECTIVE("allow", CTX_HSL, 1, 1, 0, "ADDRESS | CIDR | all", NULL, h_access_rule),
    DIRECTIVE("deny", CTX_HSL, 1, 1, 0, "ADDRESS | CIDR | all", NULL, h_access_rule),
    /* response cache (conf/cache_conf.h, http/proxy_cache.c, docs/cache.md) */
    DIRECTIVE("proxy_cache_path", CTX_HTTP, 2, 7, 0,
              "PATH keys_zone=NAME:SIZE [levels=LEVELS] [max_size=SIZE] [inactive=TIME] "
              "[use_temp_path=on | off]", NULL, h_proxy_cache_path),
    DIRECTIVE("proxy_cache", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "ZONE | off", "off",
              h_proxy_cache),
    DIRECTIVE("proxy_cache_key", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "STRING",
              "$scheme$proxy_host$request_uri", h_proxy_cache),
    DIRECTIVE("proxy_cache_valid", CTX_HSL, 1, 17, 0, "[CODE ...] TIME", NULL, h_proxy_cache),
    DIRECTIVE("proxy_cache_methods", CTX_HSL, 1, 3, DIR_DEFAULT_DOC, "GET | HEAD ...",
              "GET HEAD", h_proxy_cache),
    DIRECTIVE("proxy_cache_min_uses", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "NUMBER", "1",
              h_proxy_cache),
    DIRECTIVE("proxy_cache_bypass", CTX_HSL, 1, ANY_ARGS, 0, "STRING ...", NULL, h_proxy_cache),
    DIRECTIVE("proxy_no_cache", CTX_HSL, 1, ANY_ARGS, 0, "STRING ...", NULL, h_proxy_cache),
    DIRECTIVE("proxy_ignore_headers", CTX_HSL, 1, ANY_ARGS, 0, "FIELD ...", NULL,
              h_proxy_cache),
    DIRECTIVE("proxy_cache_revalidate", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "on | off", "off",
              h_proxy_cache),
    DIRECTIVE("proxy_cache_lock", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "on | off", "off",
              h_proxy_cache),
    DIRECTIVE("proxy_cache_lock_timeout", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "TIME", "5s",
              h_proxy_cache),
    DIRECTIVE("proxy_cache_lock_age", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "TIME", "5s",
              h_proxy_cache),
    DIRECTIVE("proxy_cache_use_stale", CTX_HSL, 1, 11, DIR_DEFAULT_DOC,
              "error | timeout | invalid_header | updating | http_500 | http_502 | http_503 | "
              "http_504 | http_403 | http_404 | http_429 ... | off", "off", h_proxy_cache),
    DIRECTIVE("proxy_cache_background_update", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "on | off",
              "off", h_proxy_cache),
    DIRECTIVE("proxy_cache_valid_jitter", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "PERCENT", "0",
              h_proxy_cache),
    DIRECTIVE("proxy_cache_purge", CTX_HSL, 1, 1, 0, "STRING", NULL, h_proxy_cache),
    TYPED("gzip", CTX_HSL, FT_FLAG, gzip, "off"),
    {"gzip_comp_level", CTX_HSL, 1, 1, 0, FT_NUM, offsetof(struct bl_loc_conf, gzip_comp_level),
     NULL, "1", h_gzip_comp_level},
    TYPED("gzip_min_length", CTX_HSL, FT_SIZE, gzip_min_length, "20"),
    TYPED("gzip_vary", CTX_HSL, FT_FLAG, gzip_vary, "off"),
    DIRECTIVE("gzip_http_version", CTX_HSL, 1, 1, 0, "1.0 | 1.1", "1.1", h_gzip_http_version),
    DIRECTIVE("gzip_proxied", CTX_HSL, 1, ANY_ARGS, 0,
              "off | expired | no-cache | no-store | private | no_last_modified | no_etag | "
              "auth | any ...", "off", h_gzip_proxied),
    DIRECTIVE("gzip_types", CTX_HSL, 1, ANY_ARGS, 0, "MIME-TYPE ...", "text/html", h_gzip_types),
    DIRECTIVE("gzip_disable", CTX_HSL, 1, ANY_ARGS, 0, "REGEX ...", NULL, h_gzip_disable),
    DIRECTIVE("gzip_buffers", CTX_HSL, 2, 2, 0, "NUMBER SIZE", "32 4k", h_gzip_buffers),
    TYPED("max_inflight", CTX_HSL, FT_NUM, max_inflight, "0"),
    DIRECTIVE("index", CTX_HSL, 1, ANY_ARGS, 0, "FILE ...", "index.html", h_index),
    DIRECTIVE("default_type", CTX_HSL, 1, 1, 0, "MIME-TYPE", "text/plain", h_default_type),
    DIRECTIVE("types", CTX_HSL, 0, 0, DIR_BLOCK, "", NULL, h_types),
    DIRECTIVE("types_hash_max_size", CTX_HSL, 1, 1, 0, "SIZE", "1024", h_number_ignore),
    DIRECTIVE("types_hash_bucket_size", CTX_HSL, 1, 1, 0, "SIZE", "64", h_number_ignore),
    DIRECTIVE("server_names_hash_max_size", CTX_HTTP, 1, 1, 0, "SIZE", "512", h_number_ignore),
    DIRECTIVE("server_names_hash_bucket_size", CTX_HTTP, 1, 1, 0, "SIZE", "64",
              h_number_ignore),
    DIRECTIVE("proxy_pass_header", CTX_HSL, 1, 1, 0, "FIELD", NULL, h_proxy_pass_header),
    DIRECTIVE("add_header", CTX_HSL, 2, 3, 0, "NAME VALUE [always]", NULL, h_add_header),
    DIRECTIVE("proxy_hide_header", CTX_HSL, 1, 1, 0, "FIELD", NULL, h_proxy_pass_header),
    DIRECTIVE("set_real_ip_from", CTX_HSL, 1, 1, 0, "ADDRESS | CIDR", NULL,
              h_set_real_ip_from),
    DIRECTIVE("real_ip_header", CTX_HSL, 1, 1, 0,
              "X-Real-IP | X-Forwarded-For | proxy_protocol | FIELD", "X-Real-IP",
              h_real_ip_header),
    TYPED("real_ip_recursive", CTX_HSL, FT_FLAG, real_ip_recursive, "off"),
    /* HTTP/2 to clients (http/h2.c) */
    TYPED("http2", CTX_HTTP | CTX_SERVER, FT_FLAG, http2, "off"),
    TYPED("http2_max_concurrent_streams", CTX_HTTP | CTX_SERVER, FT_NUM,
          http2_max_concurrent_streams, "128"),
    TYPED("http2_recv_buffer_size", CTX_HTTP, FT_SIZE, http2_recv_buffer_size, "256k"),
    TYPED("http2_idle_timeout", CTX_HTTP | CTX_SERVER, FT_TIME, http2_idle_timeout, "0"),
    /* PROXY protocol to upstreams (http/proxy_head.c): HAProxy's send-proxy, not in nginx */
    TYPED("proxy_protocol", CTX_HSL, FT_FLAG, proxy_protocol, "off"),
    {"proxy_protocol_version", CTX_HSL, 1, 1, 0, FT_NUM,
     offsetof(struct bl_loc_conf, proxy_protocol_version), "1 | 2", "1",
     h_proxy_protocol_version},
    /* upstream */
    DIRECTIVE("server", CTX_UPSTREAM, 1, ANY_ARGS, 0,
              "ADDRESS [weight=N] [max_fails=N] [fail_timeout=TIME] [max_conns=N] "
              "[slow_start=TIME] [backup] [down] [resolve]", NULL, h_upstream_server),
    DIRECTIVE("keepalive", CTX_UPSTREAM, 1, 1, 0, "CONNECTIONS", NULL, h_upstream_keepalive),
    DIRECTIVE("check", CTX_UPSTREAM, 0, ANY_ARGS, 0,
              "interval=MS rise=N fall=N timeout=MS type=tcp|http|redis|mysql "
              "[default_down=true|false] [port=N] [role=master] [send=\"BYTES\"] "
              "[expect=\"TEXT\"|\"~REGEX\"] [ssl]", NULL, h_check),
    DIRECTIVE("check_http_send", CTX_UPSTREAM, 1, 1, DIR_DEFAULT_DOC, "\"REQUEST\"",
              "\"GET / HTTP/1.0\\r\\n\\r\\n\"", h_check),
    DIRECTIVE("check_http_expect_alive", CTX_UPSTREAM, 1, 5, DIR_DEFAULT_DOC,
              "http_1xx | http_2xx | http_3xx | http_4xx | http_5xx ...", "http_2xx http_3xx",
              h_check),
    DIRECTIVE("check_http_expect_body", CTX_UPSTREAM, 1, 1, 0, "\"TEXT\"", NULL, h_check),
    DIRECTIVE("outlier", CTX_UPSTREAM, 0, ANY_ARGS, 0,
              "[consecutive_5xx=N] [consecutive_gateway=N] [interval=TIME] [base_ejection=TIME] "
              "[max_ejection=PERCENT] [max_ejection_time=TIME]", NULL, h_outlier),
    DIRECTIVE("queue", CTX_UPSTREAM, 1, 2, 0, "NUMBER [timeout=TIME]", NULL, h_queue),
    DIRECTIVE("adaptive_concurrency", CTX_UPSTREAM, 0, 3, 0,
              "[min=N] [max=N] [latency_target=TIME]", NULL, h_adaptive_concurrency),
    DIRECTIVE("retry_budget", CTX_UPSTREAM, 1, 2, 0, "PERCENT [min=N]", NULL, h_retry_budget),
    DIRECTIVE("least_conn", CTX_UPSTREAM, 0, 0, 0, "", NULL, h_lb_simple),
    DIRECTIVE("ip_hash", CTX_UPSTREAM, 0, 0, 0, "", NULL, h_lb_simple),
    DIRECTIVE("least_time", CTX_UPSTREAM, 0, 0, 0, "", NULL, h_lb_simple),
    DIRECTIVE("hash", CTX_UPSTREAM, 1, 3, 0, "KEY [consistent [bound=F] | maglev]", NULL,
              h_lb_hash),
    DIRECTIVE("random", CTX_UPSTREAM, 0, 2, 0, "[two [least_conn]]", NULL, h_lb_random),
    DIRECTIVE("keepalive_requests", CTX_UPSTREAM, 1, 1, 0, "NUMBER", "1000",
              h_upstream_keepalive_requests),
    /* run-time discovery (src/discover/, docs/discovery.md) */
    DIRECTIVE("discover", CTX_UPSTREAM, 2, 3, 0, "etcd URL [prefix=PREFIX]", NULL, h_discover),
    DIRECTIVE("keepalive_timeout", CTX_UPSTREAM, 1, 1, 0, "TIME", "60s",
              h_upstream_keepalive_timeout),
    /* server */
    DIRECTIVE("listen", CTX_SERVER, 1, ANY_ARGS, 0,
              "[ADDRESS:]PORT [default_server] [ssl] [http2] [proxy_protocol] [reuseport] "
              "[backlog=N] [sndbuf=SIZE] [rcvbuf=SIZE]", NULL, h_listen),
    DIRECTIVE("server_name", CTX_SERVER, 1, ANY_ARGS, DIR_DEFAULT_DOC, "NAME ...", "\"\"",
              h_server_name),
    /* TLS to clients (conf/ssl.c); the defaults are applied by bl_ssl_conf_merge */
    DIRECTIVE("ssl_certificate", CTX_HTTP | CTX_SERVER, 1, 1, 0, "FILE", NULL, h_ssl),
    DIRECTIVE("ssl_certificate_key", CTX_HTTP | CTX_SERVER, 1, 1, 0, "FILE", NULL, h_ssl),
    DIRECTIVE("ssl_protocols", CTX_HTTP | CTX_SERVER, 1, 4, DIR_DEFAULT_DOC,
              "[TLSv1] [TLSv1.1] [TLSv1.2] [TLSv1.3]", "TLSv1.2 TLSv1.3", h_ssl),
    DIRECTIVE("ssl_ciphers", CTX_HTTP | CTX_SERVER, 1, 1, DIR_DEFAULT_DOC, "CIPHERS",
              "HIGH:!aNULL:!MD5", h_ssl),
    DIRECTIVE("ssl_prefer_server_ciphers", CTX_HTTP | CTX_SERVER, 1, 1, DIR_DEFAULT_DOC,
              "on | off", "off", h_ssl),
    DIRECTIVE("ssl_session_cache", CTX_HTTP | CTX_SERVER, 1, 2, DIR_DEFAULT_DOC,
              "off | none | [builtin[:SIZE]] [shared:NAME:SIZE]", "none", h_ssl),
    DIRECTIVE("ssl_session_timeout", CTX_HTTP | CTX_SERVER, 1, 1, DIR_DEFAULT_DOC, "TIME", "5m",
              h_ssl),
    DIRECTIVE("ssl_session_tickets", CTX_HTTP | CTX_SERVER, 1, 1, DIR_DEFAULT_DOC, "on | off",
              "on", h_ssl),
    DIRECTIVE("ssl_ecdh_curve", CTX_HTTP | CTX_SERVER, 1, 1, DIR_DEFAULT_DOC, "CURVE[:CURVE...]",
              "auto", h_ssl),
    DIRECTIVE("ssl_dhparam", CTX_HTTP | CTX_SERVER, 1, 1, 0, "FILE", NULL, h_ssl),
    DIRECTIVE("ssl_conf_command", CTX_HTTP | CTX_SERVER, 2, 2, 0, "NAME VALUE", NULL, h_ssl),
    DIRECTIVE("ssl_verify_client", CTX_HTTP | CTX_SERVER, 1, 1, DIR_DEFAULT_DOC,
              "on | off | optional | optional_no_ca", "off", h_ssl),
    DIRECTIVE("ssl_client_certificate", CTX_HTTP | CTX_SERVER, 1, 1, 0, "FILE", NULL, h_ssl),
    DIRECTIVE("ssl_trusted_certificate", CTX_HTTP | CTX_SERVER, 1, 1, 0, "FILE", NULL, h_ssl),
    DIRECTIVE("ssl_verify_depth", CTX_HTTP | CTX_SERVER, 1, 1, DIR_DEFAULT_DOC, "NUMBER", "1",
              h_ssl),
    DIRECTIVE("location", CTX_SERVER | CTX_LOCATION, 1, 2, DIR_BLOCK,
              "[ = | ^~ | ~ | ~* ] PATH\n@NAME", NULL,
              h_location),
    DIRECTIVE("return", CTX_SERVER | CTX_LOCATION | CTX_IF, 1, 2, 0,
              "CODE [\"TEXT\"]\nCODE URL\nURL", NULL, h_return),
    DIRECTIVE("rewrite", CTX_SERVER | CTX_LOCATION | CTX_IF, 2, 3, 0,
              "REGEX REPLACEMENT [last | break | redirect | permanent]", NULL, h_rewrite),
    DIRECTIVE("set", CTX_SERVER | CTX_LOCATION | CTX_IF, 2, 2, 0, "$VARIABLE VALUE", NULL, h_set),
    DIRECTIVE("if", CTX_SERVER | CTX_LOCATION, 1, ANY_ARGS, DIR_BLOCK, "(CONDITION)", NULL, h_if),
    DIRECTIVE("break", CTX_SERVER | CTX_LOCATION | CTX_IF, 0, 0, 0, "", NULL, h_break),
    /* location */
    DIRECTIVE("proxy_pass", CTX_LOCATION, 1, 1, 0,
              "http[s]://NAME[/URI]\nhttp[s]://HOST:PORT[/URI]", NULL, h_proxy_pass),
    /* TLS to upstreams (conf/proxy_ssl.c); the defaults are applied when the context is made */
    DIRECTIVE("proxy_ssl_server_name", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "on | off", "off",
              h_proxy_ssl),
    DIRECTIVE("proxy_ssl_name", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "NAME", "$proxy_host",
              h_proxy_ssl),
    DIRECTIVE("proxy_ssl_verify", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "on | off", "off",
              h_proxy_ssl),
    DIRECTIVE("proxy_ssl_verify_depth", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "NUMBER", "1",
              h_proxy_ssl),
    DIRECTIVE("proxy_ssl_trusted_certificate", CTX_HSL, 1, 1, 0, "FILE", NULL, h_proxy_ssl),
    DIRECTIVE("proxy_ssl_certificate", CTX_HSL, 1, 1, 0, "FILE", NULL, h_proxy_ssl),
    DIRECTIVE("proxy_ssl_certificate_key", CTX_HSL, 1, 1, 0, "FILE", NULL, h_proxy_ssl),
    DIRECTIVE("proxy_ssl_protocols", CTX_HSL, 1, 4, DIR_DEFAULT_DOC,
              "[TLSv1] [TLSv1.1] [TLSv1.2] [TLSv1.3]", "TLSv1.2 TLSv1.3", h_proxy_ssl),
    DIRECTIVE("proxy_ssl_ciphers", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "CIPHERS", "DEFAULT",
              h_proxy_ssl),
    DIRECTIVE("proxy_ssl_session_reuse", CTX_HSL, 1, 1, DIR_DEFAULT_DOC, "on | off", "on",
              h_proxy_ssl),
    DIRECTIVE("proxy_ssl_conf_command", CTX_HSL, 2, 2, 0, "NAME VALUE", NULL, h_proxy_ssl),
    DIRECTIVE("root", CTX_HSL, 1, 1, 0, "DIRECTORY", NULL, h_root_any),
    DIRECTIVE("disable", CTX_LOCATION, 0, 2, 0, "[CODE] [TEXT | URI]", NULL, h_disable),
    DIRECTIVE("try_files", CTX_LOCATION, 2, ANY_ARGS, 0, "FILE ... =CODE | @NAME | URI",
              NULL, h_try_files),
    /* static files (http/static.c, docs/static.md) */
    DIRECTIVE("alias", CTX_LOCATION, 1, 1, 0, "PATH", NULL, h_alias),
    TYPED("sendfile", CTX_HSL, FT_FLAG, sendfile, "off"),
    TYPED("etag", CTX_HSL, FT_FLAG, etag, "on"),
    TYPED("log_not_found", CTX_HSL, FT_FLAG, log_not_found, "on"),
    {"expires", CTX_HSL, 1, 2, 0, FT_NONE, offsetof(struct bl_loc_conf, expires),
     "[modified] TIME | epoch | max | off", "off", h_expires},
    {"disable_symlinks", CTX_HSL, 1, 2, 0, FT_NONE, offsetof(struct bl_loc_conf,
     disable_symlinks), "off | on | if_not_owner [from=$document_root] | outside_root",
     "outside_root", h_disable_symlinks},
    {"gzip_static", CTX_HSL, 1, 1, 0, FT_NONE, offsetof(struct bl_loc_conf, gzip_static),
     "on | off | always", "off", h_gzip_static},
    TYPED("autoindex", CTX_HSL, FT_FLAG, autoindex, "off"),
    TYPED("autoindex_exact_size", CTX_HSL, FT_FLAG, autoindex_exact_size, "on"),
    TYPED("autoindex_localtime", CTX_HSL, FT_FLAG, autoindex_localtime, "off"),
    {"autoindex_format", CTX_HSL, 1, 1, 0, FT_NONE, offsetof(struct bl_loc_conf,
     autoindex_format), "html | json", "html", h_autoindex_format},
    /* stream (src/stream/): upstream blocks are compiled as http's, into the same groups */
    DIRECTIVE("upstream", CTX_STREAM, 1, 1, DIR_BLOCK, "NAME", NULL, h_upstream),
    DIRECTIVE("server", CTX_STREAM, 0, 0, DIR_BLOCK, "", NULL, h_stream_server),
    DIRECTIVE("listen", CTX_SSERVER, 1, ANY_ARGS, 0,
              "[ADDRESS:]PORT [udp] [proxy_protocol] [reuseport] [backlog=N] [sndbuf=SIZE] "
              "[rcvbuf=SIZE]", NULL, h_stream_listen),
    DIRECTIVE("proxy_pass", CTX_SSERVER, 1, 1, 0, "NAME\nADDRESS:PORT\n$VARIABLE", NULL,
              h_stream_proxy_pass),
    STYPED("proxy_connect_timeout", FT_TIME, connect_timeout, "60s"),
    STYPED("proxy_timeout", FT_TIME, timeout, "10m"),
    {"proxy_next_upstream", CTX_SS, 1, 1, 0, FT_FLAG,
     offsetof(struct bl_stream_conf, next_upstream), NULL, "on", h_stream_flag},
    STYPED("proxy_next_upstream_tries", FT_NUM, next_upstream_tries, "0"),
    STYPED("proxy_next_upstream_timeout", FT_TIME, next_upstream_timeout, "0"),
    STYPED("proxy_buffer_size", FT_SIZE, buffer_size, "16k"),
    /* PROXY protocol in stream (stream/stream.c) */
    STYPED("proxy_protocol_timeout", FT_TIME, pp_timeout, "30s"),
    {"proxy_protocol", CTX_SS, 1, 1, 0, FT_FLAG, offsetof(struct bl_stream_conf, pp_send), NULL,
     "off", h_stream_flag},
    {"proxy_protocol_version", CTX_SS, 1, 1, 0, FT_NUM, offsetof(struct bl_stream_conf,
     pp_version), "1 | 2", "1", h_proxy_protocol_version},
    {"ssl_preread", CTX_SS, 1, 1, 0, FT_FLAG, offsetof(struct bl_stream_conf, ssl_preread), NULL,
     "off", h_stream_flag},
    STYPED("preread_timeout", FT_TIME, preread_timeout, "30s"),
    DIRECTIVE("map", CTX_STREAM, 2, 2, DIR_BLOCK, "$SOURCE $VARIABLE", NULL, h_map),
    {"proxy_upload_rate", CTX_SS, 1, 1, 0, FT_SIZE, offsetof(struct bl_stream_conf, upload_rate),
     "RATE", "0", h_stream_rate},
    {"proxy_download_rate", CTX_SS, 1, 1, 0, FT_SIZE,
     offsetof(struct bl_stream_conf, download_rate), "RATE", "0", h_stream_rate},
    DIRECTIVE("set_real_ip_from", CTX_SS, 1, 1, 0, "ADDRESS | CIDR", NULL, h_set_real_ip_from),
    {"proxy_responses", CTX_SS, 1, 1, 0, FT_NUM, offsetof(struct bl_stream_conf, responses),
     "NUMBER", NULL, h_stream_count},
    {"proxy_requests", CTX_SS, 1, 1, 0, FT_NUM, offsetof(struct bl_stream_conf, requests),
     "NUMBER", "0", h_stream_count},
    DIRECTIVE("access_log", CTX_SS, 1, 5, 0,
              "FILE FORMAT [buffer=SIZE] [flush=TIME] [if=CONDITION] | off", NULL, h_access_log),
    DIRECTIVE("limit_conn_zone", CTX_STREAM, 2, 2, 0, "KEY zone=NAME:SIZE", NULL, h_limit_zone),
    DIRECTIVE("limit_conn", CTX_SS, 2, 2, 0, "ZONE NUMBER", NULL, h_limit_conn),
    /* defaults documented, not compiled: stream levels inherit http's built-in ones */
    {"limit_conn_log_level", CTX_SS, 1, 1, DIR_DEFAULT_DOC, FT_NONE,
     offsetof(struct bl_loc_conf, limit_conn_log_level), "info | notice | warn | error",
     "error", h_limit_log_level},
    {"limit_conn_dry_run", CTX_SS, 1, 1, DIR_DEFAULT_DOC, FT_FLAG,
     offsetof(struct bl_loc_conf, limit_conn_dry_run), NULL, "off", h_typed},
    DIRECTIVE("allow", CTX_SS, 1, 1, 0, "ADDRESS | CIDR | all", NULL, h_access_rule),
    DIRECTIVE("deny", CTX_SS, 1, 1, 0, "ADDRESS | CIDR | all", NULL, h_access_rule),
};

static int h_typed(struct compiler *c, const struct bl_conf_node *n)
{
    const struct directive *d = c->dir;
    uint64_t *f = lc_field(c->lc, d->offset);
    uint64_t v;
    int64_t num;
    switch (d->type) {
    case FT_TIME:
        if (parse_time_ms(n->args[0], &v) != BL_OK)
            return invalid_value(c, n->args[0]);
        break;
    case FT_SIZE:
        if (bl_parse_size(n->args[0], &v) != BL_OK)
            return invalid_value(c, n->args[0]);
        break;
    case FT_NUM:
        if (parse_num(n->args[0], 0, INT64_MAX / 2, &num) != BL_OK)
            return invalid_value(c, n->args[0]);
        v = (uint64_t)num;
        break;
    case FT_FLAG:
        if (strcmp(n->args[0], "on") == 0)
            v = 1;
        else if (strcmp(n->args[0], "off") == 0)
            v = 0;
        else
            return invalid_value(c, n->args[0]);
        break;
    default:
        return BL_ERR;
    }
    if (*f != UINT64_MAX)
        return fail(c, "\"%s\" directive is duplicate", n->name);
    *f = v;
    return BL_OK;
}

/* The docs' words for a typed row's argument. */
static const char *type_syntax(enum field_type t)
{
    switch (t) {
    case FT_TIME:
        return "TIME";
    case FT_SIZE:
        return "SIZE";
    case FT_NUM:
        return "NUMBER";
    case FT_FLAG:
        return "on | off";
    default:
        return "";
    }
}

static const char *context_names(unsigned ctx, char *buf, size_t len)
{
    if (ctx == CTX_ANY)
        return "any";
    buf[0] = '\0';
    size_t pos = 0;
    for (size_t i = 0; i < BL_ARRAY_LEN(ctx_names); i++)
        if (ctx & (1u << i))
            pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", pos ? ", " : "", ctx_names[i]);
    return buf;
}

const struct bl_directive_info *bl_conf_directives(size_t *n)
{
    static struct bl_directive_info info[BL_ARRAY_LEN(directives)];
    static char ctx_text[BL_ARRAY_LEN(directives)][64];
    for (size_t i = 0; i < BL_ARRAY_LEN(directives); i++) {
        const struct directive *d = &directives[i];
        info[i].name = d->name;
        info[i].contexts = context_names(d->contexts, ctx_text[i], sizeof(ctx_text[i]));
        info[i].syntax = d->syntax ? d->syntax : type_syntax(d->type);
        info[i].deflt = d->deflt;
        info[i].block = (d->flags & DIR_BLOCK) != 0;
    }
    *n = BL_ARRAY_LEN(directives);
    return info;
}

static int compile_directive(struct compiler *c, const struct bl_conf_node *n)
{
    c->node = n;
    const struct directive *d = NULL, *by_name = NULL;
    for (size_t i = 0; i < BL_ARRAY_LEN(directives); i++) {
        if (strcmp(directives[i].name, n->name) != 0)
            continue;
        if (!by_name)
            by_name = &directives[i];
        if (directives[i].contexts & c->ctx) {
            d = &directives[i];
            break;
        }
    }
    if (!by_name) {
        const struct bl_unsupported *u = bl_unsupported_directive(n->name, n->args, n->nargs);
        if (u) {
            char what[160];
            snprintf(what, sizeof(what), "\"%s\" directive", n->name);
            return unsupported(c, u, what);
        }
        return fail(c, "unknown directive \"%s\"", n->name);
    }
    if (!d && c->ctx == CTX_IF)
        return fail(c, "\"%s\" inside \"if\" is not supported in this build: only return, "
                       "rewrite, set and break, the forms nginx documents as safe", n->name);
    if (!d)
        return fail(c, "\"%s\" directive is not allowed here", n->name);
    int block = (d->flags & DIR_BLOCK) != 0;
    if (block && !n->is_block)
        return fail(c, "directive \"%s\" has no opening \"{\"", n->name);
    if (!block && n->is_block)
        return fail(c, "\"%s\" directive is not terminated by \";\"", n->name);
    if (n->nargs < d->min_args || (d->max_args != ANY_ARGS && n->nargs > d->max_args))
        return fail(c, "invalid number of arguments in \"%s\" directive", n->name);
    c->dir = d;
    return d->handler(c, n);
}

static int compile_block(struct compiler *c, const struct bl_conf_node *block, unsigned ctx)
{
    unsigned saved = c->ctx;
    c->ctx = ctx;
    for (int i = 0; i < block->nchildren; i++) {
        if (compile_directive(c, &block->children[i]) != BL_OK) {
            c->ctx = saved;
            return BL_ERR;
        }
    }
    c->ctx = saved;
    return BL_OK;
}

/* ---------------------------------------------------------------- defaults */

/* The outermost context of a row: where its default applies. */
static unsigned outermost(unsigned ctx)
{
    return ctx & -ctx;
}

/* The table's defaults as a config text, one block per context, read by the ordinary reader
 * so that a default is quoted and escaped as a file would write it:
 *   main { worker_processes auto; error_log stderr error; ... }
 *   events { worker_connections 10000; ... }
 *   http { access_log off; client_header_timeout 60s; ... }
 *   upstream { keepalive_requests 1000; keepalive_timeout 60s; }
 * Returns the tree, or NULL with err filled. */
static struct bl_conf_node *read_defaults(char *err, size_t errlen)
{
    size_t len = 1;
    for (size_t i = 0; i < BL_ARRAY_LEN(ctx_names); i++)
        len += strlen(ctx_names[i]) + 5;
    for (size_t k = 0; k < BL_ARRAY_LEN(directives); k++)
        if (directives[k].deflt)
            len += strlen(directives[k].name) + strlen(directives[k].deflt) + 3;
    char *text = conf_malloc(len);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t pos = 0;
    for (size_t i = 0; i < BL_ARRAY_LEN(ctx_names); i++) {
        pos += (size_t)snprintf(text + pos, len - pos, "%s {\n", ctx_names[i]);
        for (size_t k = 0; k < BL_ARRAY_LEN(directives); k++) {
            const struct directive *d = &directives[k];
            if (d->deflt && !(d->flags & DIR_DEFAULT_DOC) && outermost(d->contexts) == 1u << i)
                pos += (size_t)snprintf(text + pos, len - pos, "%s %s;\n", d->name, d->deflt);
        }
        pos += (size_t)snprintf(text + pos, len - pos, "}\n");
    }
    struct bl_conf_node *tree = bl_conf_read_string(text, "ballast defaults", err, errlen);
    free(text);
    return tree;
}

/* Compiles the defaults of context ctx (one CTX_* bit) into what the compiler points at now:
 * the config (main, events), the built-in level (http, server, location), the group
 * (upstream). The rows'
 * defaults load (test_conf.c), so only memory can fail here; the callers then name what the
 * user wrote rather than a line of the defaults. */
static int apply_defaults(struct compiler *c, unsigned ctx)
{
    for (int i = 0; i < c->defaults->nchildren; i++) {
        const struct bl_conf_node *block = &c->defaults->children[i];
        if (1u << i == ctx)
            return compile_block(c, block, ctx);
    }
    return BL_OK;
}

/* ---------------------------------------------------------------- finishing */

/* bl_loc_conf's scalars: the uint64_t fields before its lists (see conf.h). */
#define LC_NSCALARS (offsetof(struct bl_loc_conf, headers) / sizeof(uint64_t))

static void loc_conf_init(struct bl_loc_conf *lc)
{
    memset(lc, 0, sizeof(*lc));
    uint64_t *f = (uint64_t *)lc;
    for (size_t i = 0; i < LC_NSCALARS; i++)
        f[i] = UINT64_MAX;
}

/* Fills what child did not set from parent: nginx's merge_loc_conf, for every level. A list
 * is inherited whole, and only by a level that has none of its own. */
static void merge_loc_conf(struct bl_loc_conf *child, const struct bl_loc_conf *parent)
{
    uint64_t *cf = (uint64_t *)child;
    const uint64_t *pf = (const uint64_t *)parent;
    for (size_t i = 0; i < LC_NSCALARS; i++)
        if (cf[i] == UINT64_MAX)
            cf[i] = pf[i];
    if (!(child->set & BL_LC_HEADERS)) {
        child->headers = parent->headers;
        child->nheaders = parent->nheaders;
    }
    if (!(child->set & BL_LC_ACCESS_LOG)) {
        child->access_logs = parent->access_logs;
        child->naccess_logs = parent->naccess_logs;
    } else if (child->set & BL_LC_ACCESS_OFF) {
        /* the lines stay owned by this level, to be freed; none is used */
        for (uint32_t i = 0; i < child->naccess_logs; i++)
            bl_template_free(child->access_logs[i].cond);
        child->naccess_logs = 0;
    }
    if (!(child->set & BL_LC_ERROR_PAGES)) {
        child->error_pages = parent->error_pages;
        child->nerror_pages = parent->nerror_pages;
    }
    if (!(child->set & BL_LC_ROOT))
        child->root = parent->root;
    if (!(child->set & BL_LC_REQUEST_ID)) {
        child->request_id_header = parent->request_id_header;
        child->request_id_header_len = parent->request_id_header_len;
    }
    if (!(child->set & BL_LC_INDEX)) {
        child->index = parent->index;
        child->nindex = parent->nindex;
    }
    if (!(child->set & BL_LC_DEFAULT_TYPE))
        child->default_type = parent->default_type;
    if (!(child->set & BL_LC_GZIP_TYPES)) {
        child->gzip_types = parent->gzip_types;
        child->ngzip_types = parent->ngzip_types;
    }
    if (!(child->set & BL_LC_GZIP_DISABLE)) {
        child->gzip_disable = parent->gzip_disable;
        child->ngzip_disable = parent->ngzip_disable;
    }
    if (!(child->set & BL_LC_TYPES)) {
        child->types = parent->types;
        child->ntypes = parent->ntypes;
    }
    if (!(child->set & BL_LC_ADD_HEADERS)) {
        child->add_headers = parent->add_headers;
        child->nadd_headers = parent->nadd_headers;
    }
    if (!(child->set & BL_LC_HIDE)) {
        child->pass_headers = parent->pass_headers;
        child->hide_headers = parent->hide_headers;
        child->nhide_headers = parent->nhide_headers;
    }
    if (!(child->set & BL_LC_REALIP_FROM)) {
        child->realip_from = parent->realip_from;
        child->nrealip_from = parent->nrealip_from;
    }
    if (!(child->set & BL_LC_REALIP_HEADER)) {
        child->real_ip_header = parent->real_ip_header;
        child->real_ip_xff = parent->real_ip_xff;
        child->real_ip_pp = parent->real_ip_pp;
    }
    if (child->set & BL_LC_PROXY_SSL)
        bl_proxy_ssl_merge(child->proxy_ssl, parent->proxy_ssl);
    else
        child->proxy_ssl = parent->proxy_ssl;
    if (!(child->set & BL_LC_LIMIT_REQ)) {
        child->limit_reqs = parent->limit_reqs;
        child->nlimit_reqs = parent->nlimit_reqs;
    }
    if (!(child->set & BL_LC_LIMIT_CONN)) {
        child->limit_conns = parent->limit_conns;
        child->nlimit_conns = parent->nlimit_conns;
    }
    if (!(child->set & BL_LC_ACCESS_RULES)) {
        child->access_rules = parent->access_rules;
        child->naccess_rules = parent->naccess_rules;
    }
    if (child->set & BL_LC_CACHE)
        bl_cache_conf_merge(child->cache, parent->cache);
    else
        child->cache = parent->cache;
}

static void free_headers(struct bl_header_set *h, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free(h[i].name);
        bl_template_free(h[i].value);
    }
    free(h);
}

static void free_error_pages(struct bl_error_page *e, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(e[i].uri);
    free(e);
}

/* Frees the lists this level set itself; inherited ones belong to the level above. */
static void free_loc_conf(struct bl_loc_conf *lc)
{
    if (lc->set & BL_LC_ACCESS_LOG) {
        for (uint32_t i = 0; i < lc->naccess_logs; i++)
            bl_template_free(lc->access_logs[i].cond);
        free(lc->access_logs);
    }
    if (lc->set & BL_LC_REQUEST_ID)
        free(lc->request_id_header);
    if (lc->set & BL_LC_HEADERS)
        free_headers(lc->headers, lc->nheaders);
    if (lc->set & BL_LC_ERROR_PAGES)
        free_error_pages(lc->error_pages, lc->nerror_pages);
    if (lc->set & BL_LC_ROOT)
        free(lc->root);
    if (lc->set & BL_LC_INDEX) {
        for (uint32_t i = 0; i < lc->nindex; i++)
            free(lc->index[i]);
        free(lc->index);
    }
    if (lc->set & BL_LC_DEFAULT_TYPE)
        free(lc->default_type);
    if (lc->set & BL_LC_GZIP_TYPES) {
        for (uint32_t i = 0; i < lc->ngzip_types; i++)
            free(lc->gzip_types[i]);
        free(lc->gzip_types);
    }
    if (lc->set & BL_LC_GZIP_DISABLE) {
        for (uint32_t i = 0; i < lc->ngzip_disable; i++)
            bl_regex_free(lc->gzip_disable[i]);
        free(lc->gzip_disable);
    }
    if (lc->set & BL_LC_TYPES) {
        for (uint32_t i = 0; i < lc->ntypes; i++) {
            free(lc->types[i].ext);
            free(lc->types[i].type);
        }
        free(lc->types);
    }
    if (lc->set & BL_LC_ADD_HEADERS) {
        for (uint32_t i = 0; i < lc->nadd_headers; i++) {
            free(lc->add_headers[i].name);
            bl_template_free(lc->add_headers[i].value);
        }
        free(lc->add_headers);
    }
    if (lc->set & BL_LC_HIDE) {
        for (uint32_t i = 0; i < lc->nhide_headers; i++)
            free(lc->hide_headers[i]);
        free(lc->hide_headers);
    }
    if (lc->set & BL_LC_REALIP_FROM)
        free(lc->realip_from);
    if (lc->set & BL_LC_REALIP_HEADER)
        free(lc->real_ip_header);
    if (lc->set & BL_LC_PROXY_SSL)
        bl_proxy_ssl_free(lc->proxy_ssl);
    if (lc->set & BL_LC_LIMIT_REQ)
        free(lc->limit_reqs);
    if (lc->set & BL_LC_LIMIT_CONN)
        free(lc->limit_conns);
    if (lc->set & BL_LC_ACCESS_RULES)
        free(lc->access_rules);
}

static int resolve_proxy_passes(struct compiler *c)
{
    for (uint32_t i = 0; i < c->npending; i++) {
        struct pending_pass *p = &c->pending[i];
        struct bl_upstream_group *g = group_find(c->cfg, p->host);
        if (!g) {
            /* Not a group: a literal HOST:PORT, or localhost / an IP with the default port.
             * Other bare names are refused rather than looked up in DNS at load time. */
            char err[256];
            struct sockaddr_storage ss;
            socklen_t sl;
            int has_port = strchr(p->host, ':') && p->host[0] != '[';
            int ok = bl_addr_parse(p->host, p->tls ? 443 : 80,
                                   has_port || strcmp(p->host, "localhost") == 0,
                                   &ss, &sl, err, sizeof(err)) == 0;
            if (!ok) {
                snprintf(c->err, c->errlen, "host not found in upstream \"%s\" in %s:%d",
                         p->host, p->file, p->line);
                return BL_ERR;
            }
            struct bl_conf_node fake = {.name = (char *)"proxy_pass", .file = p->file,
                                        .line = p->line};
            g = group_new(c, p->host, &fake);
            if (!g)
                return BL_ERR;
            struct bl_upstream_server *s = group_add_server(g, p->host);
            if (!s)
                return oom_at(c, "proxy_pass", p->file, p->line);
            s->addr = ss;
            s->addrlen = sl;
            s->max_fails = 0; /* nginx: a single server is never marked unavailable */
        }
        p->loc->upstream = g;
    }
    return BL_OK;
}

/* Orders servers primaries first, assigns ids and shared state, runs balancer init. */
static int finish_groups(struct compiler *c)
{
    uint32_t id = 0;
    for (uint32_t gi = 0; gi < c->cfg->ngroups; gi++) {
        struct bl_upstream_group *g = c->cfg->groups[gi];
        struct bl_upstream_server *sorted = conf_calloc(g->nservers, sizeof(*sorted));
        if (!sorted)
            return oom_at(c, "upstream", g->file, g->line);
        uint32_t k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (uint32_t i = 0; i < g->nservers; i++)
                if (g->servers[i].backup == pass)
                    sorted[k++] = g->servers[i];
        free(g->servers);
        g->servers = sorted;
        g->nprimary = 0;
        if (!(g->gstate = conf_calloc(1, sizeof(*g->gstate))))
            return oom_at(c, "upstream", g->file, g->line);
        atomic_init(&g->gstate->refs, 1);
        bl_queue_init(&g->gstate->queue);
        for (uint32_t i = 0; i < g->nservers; i++) {
            struct bl_upstream_server *s = &g->servers[i];
            s->index = i;
            s->id = id++;
            s->group = g;
            if (!(s->state = conf_calloc(1, sizeof(*s->state))))
                return oom_at(c, "upstream", g->file, g->line);
            atomic_init(&s->state->refs, 1); /* a reload may share it (bl_upstream_carry) */
            if (!s->backup)
                g->nprimary++;
        }
        if (g->nprimary == 0) {
            snprintf(c->err, c->errlen, "upstream \"%s\" has only backup servers in %s:%d",
                     g->name, g->file, g->line);
            return BL_ERR;
        }
        char err[256] = "";
        if ((g->balancer->flags & BL_BALANCER_NO_BACKUP) && g->nprimary < g->nservers) {
            snprintf(c->err, c->errlen,
                     "balancing method \"%s\" does not allow \"backup\" servers in upstream "
                     "\"%s\" in %s:%d", g->balancer->name, g->name, g->file, g->line);
            return BL_ERR;
        }
        if (g->balancer->init && g->balancer->init(g, err, sizeof(err)) != BL_OK) {
            snprintf(c->err, c->errlen, "%s in upstream \"%s\" in %s:%d", err, g->name, g->file,
                     g->line);
            return BL_ERR;
        }
    }
    c->cfg->nupstream_servers = id;
    return BL_OK;
}

static int cmp_prefix_len(const void *a, const void *b)
{
    const struct bl_location *x = *(struct bl_location *const *)a;
    const struct bl_location *y = *(struct bl_location *const *)b;
    return (int)y->path_len - (int)x->path_len;
}

/* proxy_pass https://: the client context of the location's proxy_ssl_* settings. */
static int finish_proxy_tls(struct compiler *c, struct bl_location *loc)
{
    struct bl_config *cfg = c->cfg;
    struct bl_proxy_ssl *ps = loc->conf.proxy_ssl;
    if (loc->conf.proxy_protocol) {
        /* the header would have to go out in clear before the handshake (proxy_head.c puts it
         * in the request head) */
        snprintf(c->err, c->errlen, "\"proxy_protocol on\" with \"proxy_pass https://\" is not "
                 "supported in this build (for the location in %s:%d)", loc->file, loc->line);
        return BL_ERR;
    }
    if (!ps) {
        if (!cfg->proxy_ssl_default &&
            !(cfg->proxy_ssl_default = calloc(1, sizeof(*cfg->proxy_ssl_default))))
            return oom_at(c, "proxy_pass", loc->file, loc->line);
        ps = loc->conf.proxy_ssl = cfg->proxy_ssl_default;
    }
    char err[512];
    if (bl_proxy_ssl_build(ps, err, sizeof(err)) != BL_OK) {
        snprintf(c->err, c->errlen, "%s (for the location in %s:%d)", err, loc->file,
                 loc->line);
        return BL_ERR;
    }
    return BL_OK;
}

static void finish_location(struct bl_config *cfg, struct bl_server_block *s,
                            struct bl_location *loc)
{
    const struct bl_location *parent = loc->parent;
    merge_loc_conf(&loc->conf, parent ? &parent->conf : &s->conf);
    /* root is inherited by nested locations too, a location's own root included (nginx). */
    char *root = parent && parent->root ? parent->root : loc->conf.root;
    if (loc->kind == BL_LOC_NONE && root) { /* the server too: what no location matches */
        loc->kind = BL_LOC_STATIC;
        loc->root_inherited = 1;
        loc->root = root;
    }
    loc->set_xff = loc->set_xrip = loc->set_xfp = 1;
    for (uint32_t i = 0; i < loc->conf.nheaders; i++) {
        const char *n = loc->conf.headers[i].name;
        if (strcasecmp(n, "x-forwarded-for") == 0)
            loc->set_xff = 0;
        else if (strcasecmp(n, "x-real-ip") == 0)
            loc->set_xrip = 0;
        else if (strcasecmp(n, "x-forwarded-proto") == 0)
            loc->set_xfp = 0;
    }
    uint64_t head = loc->conf.lchb_number * loc->conf.lchb_size;
    if (head > cfg->max_head)
        cfg->max_head = (uint32_t)head;
}

/* Whether some component of path (as the kernel would walk it, from the working directory
 * when relative) is a symlink now. 0 also when a component is missing: such a directory is
 * not opened at load anyway. */
static int path_through_symlink(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof(buf))
        return 1; /* cannot check: open per request, which is always right */
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue; /* "//" */
        char keep = buf[i];
        buf[i] = '\0';
        struct stat st;
        int link = lstat(buf, &st) == 0 && S_ISLNK(st.st_mode);
        buf[i] = keep;
        if (link)
            return 1;
    }
    return 0;
}

/* disable_symlinks outside_root: the directory loc's files may not leave, and its O_PATH fd:
 * root or alias as written (http/static.c takes the alias's parent when the request's part
 * does not start at a slash), or an alias template's text before its first variable, up to
 * its last slash. A directory missing now is opened per request instead (nginx does not ask
 * for it at load either). BL_ERR: out of memory. */
static int open_base_dir(struct bl_location *loc)
{
    if (loc->kind != BL_LOC_STATIC || loc->conf.disable_symlinks != BL_SYMLINKS_BENEATH)
        return BL_OK;
    const char *dir = loc->alias ? loc->alias : loc->root;
    if (!dir)
        return BL_OK;
    size_t len = strlen(dir);
    if (loc->alias_tpl) {
        const char *var = strchr(dir, '$');
        if (var)
            len = (size_t)(var - dir);
        while (len > 0 && dir[len - 1] != '/')
            len--;
    }
    while (len > 1 && dir[len - 1] == '/')
        len--;
    if (!len)
        return BL_OK; /* "$dir/x": no fixed directory; relative paths start at "." */
    if (!(loc->base_dir = conf_malloc(len + 1)))
        return BL_ERR;
    memcpy(loc->base_dir, dir, len);
    loc->base_dir[len] = '\0';
    loc->base_len = (uint32_t)len;
    /* A directory reached through a symlink is opened per request: deploy tools switch
     * "current -> releases/N" under a live root, and an fd opened now would keep serving the
     * old release until a reload (nginx resolves the path per request). A path without one
     * changes only if a directory on it is renamed, which deploy tools do not do. */
    loc->base_fd = -1;
    if (!path_through_symlink(loc->base_dir))
        loc->base_fd = open(loc->base_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    loc->base_open = loc->base_fd >= 0;
    return BL_OK;
}

static void sort_prefixes(struct bl_loc_tree *t)
{
    if (t->nprefix > 1)
        qsort(t->prefix, t->nprefix, sizeof(t->prefix[0]), cmp_prefix_len);
}

static int finish(struct compiler *c)
{
    struct bl_config *cfg = c->cfg;
    c->node = NULL;
    if (resolve_proxy_passes(c) != BL_OK || finish_stream(c) != BL_OK ||
        finish_groups(c) != BL_OK)
        return BL_ERR;
    if (cfg->dns && bl_dns_conf_finish(cfg->dns, cfg->groups, cfg->ngroups, c->err,
                                       c->errlen) != BL_OK)
        return BL_ERR;
    if (c->resolve_node && !cfg->nresolvers) {
        c->node = c->resolve_node;
        return fail(c, "no resolver defined to resolve \"%s\" (add \"resolver ADDRESS;\" "
                    "to http)", c->resolve_node->args[0]);
    }
    if (!cfg->resolver_timeout_ms)
        cfg->resolver_timeout_ms = 30000;
    merge_loc_conf(&cfg->http_conf, &cfg->defaults);
    for (uint32_t i = 0; i < cfg->nservers; i++) {
        struct bl_server_block *s = cfg->servers[i];
        merge_loc_conf(&s->conf, &cfg->http_conf);
        bl_ssl_conf_merge(&s->ssl, &cfg->http_ssl);
        s->index = i;
        s->server_loc->index = UINT32_MAX;
        finish_location(cfg, s, s->server_loc);
        if (open_base_dir(s->server_loc) != BL_OK)
            return oom_at(c, "root", cfg->file, 0);
        /* Parents come before their children in s->all, so each merges a finished parent. */
        for (uint32_t k = 0; k < s->nall; k++) {
            s->all[k]->index = cfg->nlocations++;
            finish_location(cfg, s, s->all[k]);
            if (open_base_dir(s->all[k]) != BL_OK)
                return oom_at(c, s->all[k]->alias ? "alias" : "root", s->all[k]->file,
                              s->all[k]->line);
            if (s->all[k]->proxy_tls && finish_proxy_tls(c, s->all[k]) != BL_OK)
                return BL_ERR;
            sort_prefixes(&s->all[k]->nested);
        }
        sort_prefixes(&s->locs);
    }
    if (bl_limit_zones_finish(&cfg->limits, c->err, c->errlen) != BL_OK)
        return BL_ERR;
    if (bl_cache_conf_finish(&cfg->caches, c->err, c->errlen) != BL_OK)
        return BL_ERR;
    for (uint32_t i = 0; i < cfg->nservers; i++)
        for (uint32_t k = 0; k < cfg->servers[i]->nall; k++) {
            struct bl_location *loc = cfg->servers[i]->all[k];
            if (loc->conf.max_inflight > UINT32_MAX - 1)
                loc->conf.max_inflight = UINT32_MAX - 1;
            if (loc->conf.max_inflight && !(loc->inflight = conf_calloc(1, sizeof(uint32_t))))
                return oom_at(c, "max_inflight", loc->file, loc->line);
        }
    if (bl_ssl_build(cfg->servers, cfg->nservers, cfg->listens, cfg->nlistens, c->err,
                     c->errlen) != BL_OK)
        return BL_ERR;
    if (cfg->nservers == 0)
        cfg->max_head = (uint32_t)(cfg->http_conf.lchb_number * cfg->http_conf.lchb_size);
    for (uint32_t i = 0; i < cfg->naccess_logs; i++) {
        struct bl_access_log *al = cfg->access_logs[i];
        al->fd = open(al->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (al->fd < 0) {
            snprintf(c->err, c->errlen, "open() \"%s\" failed (%s)", al->path, strerror(errno));
            return BL_ERR;
        }
    }
    return BL_OK;
}

/* Adds name[0..len) to the config's variables unless it is there. BL_ERR: out of memory. */
static int var_add(struct bl_config *cfg, const char *name, size_t len)
{
    for (uint32_t i = 0; i < cfg->vars.n; i++)
        if (strlen(cfg->vars.names[i]) == len && memcmp(cfg->vars.names[i], name, len) == 0)
            return BL_OK;
    char **names = grow(cfg->vars.names, cfg->vars.n, sizeof(*names));
    if (!names)
        return BL_ERR;
    cfg->vars.names = names;
    if (!(names[cfg->vars.n] = conf_malloc(len + 1)))
        return BL_ERR;
    memcpy(names[cfg->vars.n], name, len);
    names[cfg->vars.n++][len] = '\0';
    return BL_OK;
}

/* Named groups of a regex as written: (?<name>...), (?P<name>...), (?'name'...). */
static int var_add_captures(struct bl_config *cfg, const char *re)
{
    for (const char *p = re; (p = strstr(p, "(?")); p += 2) {
        const char *q = p + 2;
        if (*q == 'P')
            q++;
        if (*q != '<' && *q != '\'')
            continue;
        if (q[1] == '=' || q[1] == '!')
            continue; /* lookbehind */
        char close = *q == '<' ? '>' : '\'';
        const char *start = ++q;
        while (*q && (isalnum((unsigned char)*q) || *q == '_'))
            q++;
        if (*q == close && q > start && var_add(cfg, start, (size_t)(q - start)) != BL_OK)
            return BL_ERR;
    }
    return BL_OK;
}

/* nginx resolves variable names once the whole file is read, so a `set $x` or a named capture
 * may come after a line that uses it: the names are gathered from the tree before compiling. */
static int collect_vars(struct bl_config *cfg, const struct bl_conf_node *n)
{
    int rc = BL_OK;
    if (strcmp(n->name, "set") == 0 && n->nargs >= 1 && n->args[0][0] == '$') {
        char err[256];
        struct bl_template *builtin = bl_template_compile(n->args[0], err, sizeof(err));
        if (builtin)
            bl_template_free(builtin); /* a built-in: h_set refuses it */
        else
            rc = var_add(cfg, n->args[0] + 1, strlen(n->args[0] + 1));
    } else if (strcmp(n->name, "location") == 0 || strcmp(n->name, "rewrite") == 0 ||
               strcmp(n->name, "if") == 0) {
        for (int i = 0; rc == BL_OK && i < n->nargs; i++)
            rc = var_add_captures(cfg, n->args[i]);
    } else if (strcmp(n->name, "map") == 0 && n->nargs == 2 && n->args[1][0] == '$' &&
               n->args[1][1]) {
        char err[256];
        struct bl_template *builtin = bl_template_compile(n->args[1], err, sizeof(err));
        if (builtin)
            bl_template_free(builtin); /* a built-in: h_map refuses it */
        else
            rc = var_add(cfg, n->args[1] + 1, strlen(n->args[1] + 1));
        return rc; /* the block's lines are keys, not directives */
    }
    /* split_clients and geo define their last argument; their lines are not directives. */
    if ((strcmp(n->name, "split_clients") == 0 || strcmp(n->name, "geo") == 0) && n->nargs &&
        n->args[n->nargs - 1][0] == '$' && n->args[n->nargs - 1][1]) {
        const char *v = n->args[n->nargs - 1];
        char err[256];
        struct bl_template *builtin = bl_template_compile(v, err, sizeof(err));
        if (builtin)
            bl_template_free(builtin); /* a built-in: the handler refuses it */
        else
            rc = var_add(cfg, v + 1, strlen(v + 1));
        return rc;
    }
    for (int i = 0; rc == BL_OK && i < n->nchildren; i++)
        rc = collect_vars(cfg, &n->children[i]);
    return rc;
}

static struct bl_config *compile_root(struct bl_conf_node *root, const char *file, char *err,
                                      size_t errlen)
{
    struct bl_config *cfg = conf_calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->file = conf_strdup(file))) {
        free(cfg);
        snprintf(err, errlen, "out of memory while loading %s", file);
        return NULL;
    }
    loc_conf_init(&cfg->defaults);
    loc_conf_init(&cfg->http_conf);
    loc_conf_init(&cfg->stream_log);

    struct compiler c = {.cfg = cfg, .err = err, .errlen = errlen};
    c.defaults = read_defaults(err, errlen);
    int rc = c.defaults ? BL_OK : BL_ERR;
    if (rc == BL_OK)
        rc = apply_defaults(&c, CTX_MAIN);
    if (rc == BL_OK)
        rc = apply_defaults(&c, CTX_EVENTS);
    /* A server- or location-only setting's default belongs to the same built-in level. */
    c.lc = &cfg->defaults;
    if (rc == BL_OK)
        rc = apply_defaults(&c, CTX_HTTP);
    if (rc == BL_OK)
        rc = apply_defaults(&c, CTX_SERVER);
    if (rc == BL_OK)
        rc = apply_defaults(&c, CTX_LOCATION);
    c.lc = NULL;
    stream_conf_init(&cfg->stream_defaults);
    stream_conf_init(&cfg->stream_conf);
    c.sc = &cfg->stream_defaults;
    if (rc == BL_OK)
        rc = apply_defaults(&c, CTX_STREAM);
    c.sc = NULL;
    if (rc != BL_OK && strncmp(err, "out of memory", 13) == 0)
        snprintf(err, errlen, "out of memory while loading %s", file);
    if (rc == BL_OK && collect_vars(cfg, root) != BL_OK) {
        snprintf(err, errlen, "out of memory while loading %s", file);
        rc = BL_ERR;
    }
    if (rc == BL_OK)
        rc = compile_block(&c, root, CTX_MAIN);
    if (rc == BL_OK && !c.seen_http && !c.seen_stream) {
        /* nginx's `no "events" section in configuration`: a config that cannot serve anything
         * (empty, or the wrong file) is refused rather than run without a listener. The line
         * is the last top-level directive's, where the block is missing from. */
        const struct bl_conf_node *last = root->nchildren ? &root->children[root->nchildren - 1]
                                                          : NULL;
        snprintf(err, errlen, "no \"http\" section in %s:%d", last ? last->file : file,
                 last ? last->line : 1);
        rc = BL_ERR;
    }
    if (rc == BL_OK)
        rc = finish(&c);
    for (uint32_t i = 0; i < c.npending; i++)
        free(c.pending[i].host);
    free(c.pending);
    bl_conf_free(c.defaults);
    if (rc != BL_OK) {
        bl_conf_release(cfg);
        return NULL;
    }
    return cfg;
}

/* The compiled config points into the directive tree for file names (messages), so the tree
 * lives as long as the config and is freed with it. */
static struct bl_config *keep_tree(struct bl_config *cfg, struct bl_conf_node *root)
{
    if (!cfg) {
        bl_conf_free(root);
        return NULL;
    }
    cfg->tree = root;
    return cfg;
}

struct bl_config *bl_conf_load(const char *file, char *err, size_t errlen)
{
    struct bl_conf_node *root = bl_conf_read(file, err, errlen);
    if (!root)
        return NULL;
    /* The admin API's added and removed servers, as if the file said so (overlay.h). */
    if (bl_conf_overlay_apply(root, err, errlen) != BL_OK) {
        bl_conf_free(root);
        return NULL;
    }
    return keep_tree(compile_root(root, file, err, errlen), root);
}

int bl_conf_check_server_line(const char *line, char *err, size_t errlen)
{
    if (strpbrk(line, ";{}\"'#\\$\r\n") || strlen(line) > 400) {
        snprintf(err, errlen, "not a server line (one of ;{}\"'#\\$ or a line break, or "
                 "over 400 bytes)");
        return BL_ERR;
    }
    if (!line[strspn(line, " \t")]) {
        snprintf(err, errlen, "empty server line");
        return BL_ERR;
    }
    /* The same compiler as the file's lines: one upstream holding just this line. */
    char text[512];
    snprintf(text, sizeof(text), "http { upstream check { server %s; } }\n", line);
    struct bl_config *cfg = bl_conf_load_string(text, "value", err, errlen);
    if (!cfg) {
        char *at = strstr(err, " in value:1");
        if (at)
            *at = 0;
        return BL_ERR;
    }
    bl_conf_release(cfg);
    return BL_OK;
}

struct bl_config *bl_conf_load_string(const char *text, const char *name, char *err,
                                      size_t errlen)
{
    struct bl_conf_node *root = bl_conf_read_string(text, name, err, errlen);
    if (!root)
        return NULL;
    return keep_tree(compile_root(root, name, err, errlen), root);
}

static void free_location(struct bl_location *loc)
{
    free_loc_conf(&loc->conf);
    if (!loc->root_inherited)
        free(loc->root);
    free(loc->alias);
    bl_template_free(loc->alias_tpl);
    free(loc->base_dir);
    if (loc->base_open)
        close(loc->base_fd);
    free(loc->path);
    free(loc->proxy_uri);
    free(loc->proxy_host);
    free(loc->proxy_port);
    free(loc->try_fallback);
    for (uint32_t i = 0; i < loc->ntry; i++)
        bl_template_free(loc->try_list[i].path);
    free(loc->try_list);
    free(loc->disable_text);
    free(loc->disable_uri);
    bl_template_free(loc->try_fallback_tpl);
    bl_template_free(loc->proxy_uri_tpl);
    bl_template_free(loc->proxy_host_tpl);
    bl_template_free(loc->return_text);
    bl_regex_free(loc->regex);
    rw_ops_free(loc->ops, loc->nops);
    free(loc->nested.exact);
    free(loc->nested.prefix);
    free(loc->nested.regex);
    free(loc->inflight);
    free(loc);
}

void bl_conf_release(struct bl_config *cfg)
{
    if (!cfg)
        return;
    for (uint32_t i = 0; i < cfg->nservers; i++) {
        struct bl_server_block *s = cfg->servers[i];
        for (uint32_t k = 0; k < s->nall; k++)
            free_location(s->all[k]);
        free(s->all);
        free(s->regex);
        free(s->named);
        free_location(s->server_loc);
        free_loc_conf(&s->conf);
        bl_ssl_conf_free(&s->ssl);
        bl_ssl_ctx_free(s->ssl_ctx);
        for (uint32_t k = 0; k < s->nnames; k++)
            free(s->names[k]);
        free(s->names);
        free(s->exact);
        free(s->prefix);
        free(s);
    }
    free_loc_conf(&cfg->http_conf);
    free_loc_conf(&cfg->defaults);
    bl_ssl_conf_free(&cfg->http_ssl);
    bl_proxy_ssl_free(cfg->proxy_ssl_default);
    free(cfg->servers);
    for (uint32_t i = 0; i < cfg->nstream_servers; i++) {
        free(cfg->stream_servers[i]->pass);
        bl_template_free(cfg->stream_servers[i]->pass_tpl);
        free_loc_conf(&cfg->stream_servers[i]->log);
        free(cfg->stream_servers[i]);
    }
    free(cfg->stream_servers);
    free_loc_conf(&cfg->stream_log);
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        free(cfg->listens[i].servers);
    free(cfg->listens);
    bl_dns_conf_free(cfg->dns);
    for (uint32_t i = 0; i < cfg->ngroups; i++) {
        struct bl_upstream_group *g = cfg->groups[i];
        if (g->balancer && g->balancer->destroy)
            g->balancer->destroy(g);
        for (uint32_t k = 0; k < g->nservers; k++) {
            free(g->servers[k].name);
            bl_server_state_put(g->servers[k].state);
        }
        free(g->servers);
        bl_group_state_put(g->gstate);
        bl_check_conf_free(g->check);
        bl_outlier_conf_free(g->outlier);
        bl_queue_conf_free(g->queue);
        bl_adaptive_free(g->adaptive);
        free(g->name);
        free(g->hash_key);
        bl_template_free(g->hash_key_compiled);
        free(g->discover_url);
        free(g->discover_prefix);
        for (uint32_t k = 0; k < g->nresolve; k++)
            free(g->resolve_names[k]);
        free(g->resolve_names);
        free(g);
    }
    free(cfg->groups);
    for (uint32_t i = 0; i < cfg->naccess_logs; i++) {
        if (cfg->access_logs[i]->fd >= 0)
            close(cfg->access_logs[i]->fd);
        free(cfg->access_logs[i]->path);
        free(cfg->access_logs[i]);
    }
    free(cfg->access_logs);
    for (uint32_t i = 0; i < cfg->nlog_formats; i++) {
        free(cfg->log_formats[i]->name);
        bl_template_free(cfg->log_formats[i]->line);
        free(cfg->log_formats[i]);
    }
    free(cfg->log_formats);
    free(cfg->error_log);
    free(cfg->pid_file);
    free(cfg->user);
    free(cfg->file);
    free(cfg->admin.token_file);
    if (cfg->admin.token)
        memset(cfg->admin.token, 0, cfg->admin.token_len);
    free(cfg->admin.token);
    for (uint32_t i = 0; cfg->var_maps && i < cfg->vars.n; i++)
        map_free(cfg->var_maps[i]);
    free(cfg->var_maps);
    for (uint32_t i = 0; cfg->var_blocks && i < cfg->vars.n; i++)
        varblock_free(cfg->var_blocks[i]);
    free(cfg->var_blocks);
    for (uint32_t i = 0; i < cfg->vars.n; i++)
        free(cfg->vars.names[i]);
    free(cfg->vars.names);
    bl_limit_zones_free(&cfg->limits);
    bl_cache_paths_free(&cfg->caches);
    bl_conf_free(cfg->tree);
    free(cfg);
}
