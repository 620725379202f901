/* The directive table and the compiler from the directive tree to struct bl_config.
 *
 * One table drives parsing, validation, defaults and the docs check: a directive is found by
 * name and context, its argument count is checked, then its handler runs. Settings that http,
 * server and location may all hold live in struct bl_loc_conf and are merged downwards after
 * the whole file is read, as nginx merges them, so their order in the file does not matter.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/conf_parse.h"
#include "conf/unsupported.h"
#include "core/log.h"
#include "core/status.h"
#include "core/units.h"
#include "http/template.h"
#include "upstream/balancer.h"
#include "upstream/health_check.h"
#include "upstream/outlier.h"
#include "upstream/retry_budget.h"

/* Contexts, as bits. */
#define CTX_MAIN     0x01u
#define CTX_EVENTS   0x02u
#define CTX_HTTP     0x04u
#define CTX_UPSTREAM 0x08u
#define CTX_SERVER   0x10u
#define CTX_LOCATION 0x20u
#define CTX_HSL      (CTX_HTTP | CTX_SERVER | CTX_LOCATION)

#define ANY_ARGS -1

struct compiler;
typedef int (*handler_fn)(struct compiler *c, const struct bl_conf_node *n);

enum field_type {
    FT_NONE = 0,     /* handler only */
    FT_TIME,         /* loc_conf field, milliseconds */
    FT_SIZE,         /* loc_conf field, bytes */
    FT_NUM,          /* loc_conf field, plain number */
    FT_FLAG,         /* loc_conf field, on|off */
};

struct directive {
    const char *name;
    unsigned contexts;
    int min_args, max_args;
    int block;                 /* 1: must be a block; 0: must not */
    enum field_type type;
    size_t offset;             /* into struct bl_loc_conf, for typed fields */
    const char *deflt;         /* default value, as the docs show it (NULL: none) */
    handler_fn handler;
};

struct compiler {
    struct bl_config *cfg;
    unsigned ctx;
    struct bl_server_block *srv;
    struct bl_location *loc;
    struct bl_upstream_group *grp;
    /* Where directives of the current level (http, server or location) store what they set. */
    struct level {
        struct bl_loc_conf *lc;
        struct bl_header_set **hdrs;
        uint32_t *nhdrs;
        uint8_t *headers_set;
        struct bl_access_log **alog;
        uint8_t *alog_set;
        struct bl_error_page **epages;
        uint32_t *nepages;
        uint8_t *epages_set;
    } level;
    int seen_http, seen_events;
    struct pending_pass {
        struct bl_location *loc;
        char *host;                      /* NAME or HOST:PORT, owned */
        const char *file;
        int line;
    } *pending;
    uint32_t npending;
    char *err;
    size_t errlen;
    const struct bl_conf_node *node;     /* directive being compiled, for errors */
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

static void *zalloc(size_t n)
{
    void *p = calloc(1, n);
    if (!p) {
        fprintf(stderr, "ballast: out of memory while loading the configuration\n");
        exit(1);
    }
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p) {
        fprintf(stderr, "ballast: out of memory while loading the configuration\n");
        exit(1);
    }
    return p;
}

/* Appends one element to a growable array of pointers or structs. */
static void *grow(void *arr, uint32_t n, size_t elem)
{
    void *p = realloc(arr, (n + 1) * elem);
    if (!p) {
        fprintf(stderr, "ballast: out of memory while loading the configuration\n");
        exit(1);
    }
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

static uint64_t *lc_field(struct bl_loc_conf *lc, size_t offset)
{
    return (uint64_t *)((char *)lc + offset);
}

/* ---------------------------------------------------------------- the walk */

static int compile_block(struct compiler *c, const struct bl_conf_node *block, unsigned ctx);

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
    free(c->cfg->error_log);
    c->cfg->error_log = xstrdup(n->args[0]);
    c->cfg->error_log_level = level;
    return BL_OK;
}

static int h_pid(struct compiler *c, const struct bl_conf_node *n)
{
    free(c->cfg->pid_file);
    c->cfg->pid_file = strcmp(n->args[0], "off") == 0 ? NULL : xstrdup(n->args[0]);
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

static int h_use(struct compiler *c, const struct bl_conf_node *n)
{
    if (strcmp(n->args[0], "epoll") != 0)
        return invalid_value(c, n->args[0]);
    return BL_OK;
}

/* ---- http context ---- */

static struct level enter_level(struct compiler *c, struct level next)
{
    struct level saved = c->level;
    c->level = next;
    return saved;
}

static int h_http(struct compiler *c, const struct bl_conf_node *n)
{
    if (c->seen_http++)
        return fail(c, "\"http\" directive is duplicate");
    struct bl_config *cfg = c->cfg;
    enter_level(c, (struct level){&cfg->http_conf, &cfg->http_headers, &cfg->nhttp_headers,
                                  &cfg->http_headers_set, &cfg->http_access_log,
                                  &cfg->http_access_log_set, &cfg->http_error_pages,
                                  &cfg->nhttp_error_pages, &cfg->http_error_pages_set});
    return compile_block(c, n, CTX_HTTP);
}

static int h_typed(struct compiler *c, const struct bl_conf_node *n);

static struct bl_access_log *access_log_get(struct compiler *c, const char *path)
{
    for (uint32_t i = 0; i < c->cfg->naccess_logs; i++)
        if (strcmp(c->cfg->access_logs[i]->path, path) == 0)
            return c->cfg->access_logs[i];
    struct bl_access_log *al = zalloc(sizeof(*al));
    al->path = xstrdup(path);
    al->fd = -1;
    c->cfg->access_logs = grow(c->cfg->access_logs, c->cfg->naccess_logs, sizeof(al));
    c->cfg->access_logs[c->cfg->naccess_logs++] = al;
    return al;
}

static int h_access_log(struct compiler *c, const struct bl_conf_node *n)
{
    if (*c->level.alog_set)
        return fail(c, "\"access_log\" directive is duplicate");
    *c->level.alog_set = 1;
    if (strcmp(n->args[0], "off") == 0) {
        *c->level.alog = NULL;
        return BL_OK;
    }
    /* A format name after the path (nginx: "access_log FILE main;") is accepted; the line
     * format is ballast's own, documented in docs/configuration.md. */
    *c->level.alog = access_log_get(c, n->args[0]);
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
    c->level.lc->lchb_number = (uint64_t)num;
    c->level.lc->lchb_size = size;
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
    /* nginx's WebSocket recipe: Upgrade from $http_upgrade, Connection "upgrade". */
    if (strcasecmp(name, "upgrade") == 0 ||
        (strcasecmp(name, "connection") == 0 && (strcasestr(n->args[1], "upgrade")))) {
        static const struct bl_unsupported ws = {"proxy_set_header", BL_UNSUPPORTED_ERROR,
                                                 "WebSocket proxying is"};
        char what[160];
        snprintf(what, sizeof(what), "\"proxy_set_header %s\"", name);
        return unsupported(c, &ws, what);
    }
    if (strcasecmp(name, "connection") == 0 || strcasecmp(name, "content-length") == 0 ||
        strcasecmp(name, "transfer-encoding") == 0)
        return fail(c, "\"proxy_set_header\" cannot change \"%s\"", name);
    char err[256];
    struct bl_template *t = NULL;
    if (n->args[1][0]) {
        t = bl_template_compile(n->args[1], err, sizeof(err));
        if (!t)
            return fail(c, "%s", err);
    }
    *c->level.hdrs = grow(*c->level.hdrs, *c->level.nhdrs, sizeof(struct bl_header_set));
    struct bl_header_set *h = &(*c->level.hdrs)[(*c->level.nhdrs)++];
    h->name = xstrdup(name);
    h->name_len = (uint32_t)strlen(name);
    h->remove = t == NULL;
    h->value = t;
    *c->level.headers_set = 1;
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

static struct bl_upstream_group *group_new(struct compiler *c, const char *name,
                                           const struct bl_conf_node *n)
{
    struct bl_upstream_group *g = zalloc(sizeof(*g));
    g->name = xstrdup(name);
    g->file = n->file;
    g->line = n->line;
    g->balancer = &bl_balancer_rr;
    g->keepalive_requests = 1000;
    g->keepalive_timeout_ms = 60000;
    g->index = c->cfg->ngroups;
    c->cfg->groups = grow(c->cfg->groups, c->cfg->ngroups, sizeof(g));
    c->cfg->groups[c->cfg->ngroups++] = g;
    return g;
}

static int h_upstream(struct compiler *c, const struct bl_conf_node *n)
{
    if (group_find(c->cfg, n->args[0]))
        return fail(c, "duplicate upstream \"%s\"", n->args[0]);
    c->grp = group_new(c, n->args[0], n);
    int rc = compile_block(c, n, CTX_UPSTREAM);
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

static struct bl_upstream_server *group_add_server(struct bl_upstream_group *g)
{
    g->servers = grow(g->servers, g->nservers, sizeof(struct bl_upstream_server));
    struct bl_upstream_server *s = &g->servers[g->nservers];
    s->index = g->nservers++;
    s->weight = 1;
    s->max_fails = 1;
    s->fail_timeout_ms = 10000;
    return s;
}

static int h_upstream_server(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_upstream_group *g = c->grp;
    char err[256];
    struct sockaddr_storage ss;
    socklen_t sl;
    if (bl_addr_parse(n->args[0], 80, 1, &ss, &sl, err, sizeof(err)) != 0)
        return fail(c, "%s in upstream \"%s\"", err, g->name);
    struct bl_upstream_server *s = group_add_server(g);
    s->name = xstrdup(n->args[0]);
    s->addr = ss;
    s->addrlen = sl;
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
        } else {
            return invalid_value(c, a);
        }
    }
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
    c->grp->hash_key = xstrdup(n->args[0]);
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

static void loc_conf_unset(struct bl_loc_conf *lc)
{
    uint64_t *f = (uint64_t *)lc;
    for (size_t i = 0; i < sizeof(*lc) / sizeof(uint64_t); i++)
        f[i] = UINT64_MAX;
}

static int h_server(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_server_block *s = zalloc(sizeof(*s));
    s->file = n->file;
    s->line = n->line;
    loc_conf_unset(&s->conf);
    c->cfg->servers = grow(c->cfg->servers, c->cfg->nservers, sizeof(s));
    c->cfg->servers[c->cfg->nservers++] = s;
    /* The server-level pseudo location carries server-level return and settings. */
    s->server_loc = zalloc(sizeof(*s->server_loc));
    s->server_loc->file = n->file;
    s->server_loc->line = n->line;
    s->server_loc->path = xstrdup("");

    c->srv = s;
    struct level saved = enter_level(c, (struct level){&s->conf, &s->headers, &s->nheaders,
                                                       &s->headers_set, &s->access_log,
                                                       &s->access_log_set, &s->error_pages,
                                                       &s->nerror_pages, &s->error_pages_set});
    int rc = compile_block(c, n, CTX_SERVER);
    c->srv = NULL;
    enter_level(c, saved);
    if (rc != BL_OK)
        return rc;
    /* A server without listen listens on *:80, as nginx's does (when run as root). */
    int listening = 0;
    for (uint32_t i = 0; i < c->cfg->nlistens; i++)
        for (uint32_t k = 0; k < c->cfg->listens[i].nservers; k++)
            listening |= c->cfg->listens[i].servers[k] == s;
    if (!listening) {
        c->node = n;
        return fail(c, "server block has no \"listen\" directive");
    }
    return BL_OK;
}

static int h_listen(struct compiler *c, const struct bl_conf_node *n)
{
    char err[256];
    struct sockaddr_storage ss;
    socklen_t sl;
    if (bl_addr_parse(n->args[0], 80, 0, &ss, &sl, err, sizeof(err)) != 0)
        return fail(c, "%s in \"listen\" directive", err);
    int def = 0, backlog = 511, reuseport = 0;
    for (int i = 1; i < n->nargs; i++) {
        int64_t v;
        if (strcmp(n->args[i], "default_server") == 0 || strcmp(n->args[i], "default") == 0)
            def = 1;
        else if (strcmp(n->args[i], "reuseport") == 0)
            reuseport = 1;
        else if (strncmp(n->args[i], "backlog=", 8) == 0) {
            if (parse_num(n->args[i] + 8, 1, 65535, &v) != BL_OK)
                return invalid_value(c, n->args[i]);
            backlog = (int)v;
        } else if (strcmp(n->args[i], "bind") == 0 || strcmp(n->args[i], "ipv6only=on") == 0) {
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
    struct bl_listen *l = NULL;
    for (uint32_t i = 0; i < c->cfg->nlistens; i++)
        if (strcmp(c->cfg->listens[i].text, text) == 0)
            l = &c->cfg->listens[i];
    if (!l) {
        c->cfg->listens = grow(c->cfg->listens, c->cfg->nlistens, sizeof(*l));
        l = &c->cfg->listens[c->cfg->nlistens++];
        l->addr = ss;
        l->addrlen = sl;
        l->backlog = backlog;
        snprintf(l->text, sizeof(l->text), "%s", text);
        l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    l->reuseport |= (uint8_t)reuseport;
    for (uint32_t k = 0; k < l->nservers; k++) {
        if (l->servers[k] == c->srv)
            return fail(c, "duplicate listen %s", text);
    }
    if (def && l->nservers && l->servers[0]->is_default)
        return fail(c, "a duplicate default server for %s", text);
    l->servers = grow(l->servers, l->nservers, sizeof(c->srv));
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

static int h_server_name(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_server_block *s = c->srv;
    for (int i = 0; i < n->nargs; i++) {
        if (n->args[i][0] == '~')
            return fail(c, "regular expression server names are not supported (\"%s\")",
                        n->args[i]);
        s->names = grow(s->names, s->nnames, sizeof(char *));
        char *name = xstrdup(n->args[i]);
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        s->names[s->nnames++] = name;
    }
    return BL_OK;
}

/* ---- location ---- */

static int h_location(struct compiler *c, const struct bl_conf_node *n)
{
    if (c->loc)
        return fail(c, "nested locations are not supported");
    const char *path;
    int exact = 0;
    if (n->nargs == 2) {
        if (strcmp(n->args[0], "=") == 0)
            exact = 1;
        else if (strcmp(n->args[0], "^~") == 0)
            exact = 0;
        else if (strcmp(n->args[0], "~") == 0 || strcmp(n->args[0], "~*") == 0)
            return fail(c, "regular expression locations are not supported");
        else
            return invalid_value(c, n->args[0]);
        path = n->args[1];
    } else {
        path = n->args[0];
        if (path[0] == '~' || path[0] == '@')
            return fail(c, "regular expression and named locations are not supported");
        if (path[0] == '=') {
            exact = 1;
            path++;
        }
    }
    struct bl_server_block *s = c->srv;
    struct bl_location **list = exact ? s->exact : s->prefix;
    uint32_t nlist = exact ? s->nexact : s->nprefix;
    for (uint32_t i = 0; i < nlist; i++)
        if (strcmp(list[i]->path, path) == 0)
            return fail(c, "duplicate location \"%s\"", path);

    struct bl_location *loc = zalloc(sizeof(*loc));
    loc->path = xstrdup(path);
    loc->path_len = (uint32_t)strlen(path);
    loc->exact = (uint8_t)exact;
    loc->file = n->file;
    loc->line = n->line;
    loc_conf_unset(&loc->conf);
    if (exact) {
        s->exact = grow(s->exact, s->nexact, sizeof(loc));
        s->exact[s->nexact++] = loc;
    } else {
        s->prefix = grow(s->prefix, s->nprefix, sizeof(loc));
        s->prefix[s->nprefix++] = loc;
    }

    c->loc = loc;
    struct level saved = enter_level(c, (struct level){&loc->conf, &loc->headers,
                                                       &loc->nheaders, &loc->headers_set,
                                                       &loc->access_log, &loc->access_log_set,
                                                       &loc->error_pages, &loc->nerror_pages,
                                                       &loc->error_pages_set});
    int rc = compile_block(c, n, CTX_LOCATION);
    c->loc = NULL;
    enter_level(c, saved);
    return rc;
}

static int h_proxy_pass(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_location *loc = c->loc;
    if (loc->kind == BL_LOC_STATIC)
        return fail(c, "\"root\" and \"proxy_pass\" in one location");
    if (loc->kind != BL_LOC_NONE)
        return fail(c, "\"proxy_pass\" directive is duplicate");
    const char *url = n->args[0];
    if (strncmp(url, "http://", 7) != 0) {
        if (strncmp(url, "https://", 8) == 0)
            return fail(c, "TLS is not supported in this build: \"%s\" in \"proxy_pass\"", url);
        return fail(c, "invalid URL prefix in \"%s\"", url);
    }
    const char *host = url + 7;
    const char *slash = strchr(host, '/');
    size_t hlen = slash ? (size_t)(slash - host) : strlen(host);
    if (hlen == 0)
        return fail(c, "no host in \"%s\"", url);
    if (strchr(host, '$'))
        return fail(c, "variables in \"proxy_pass\" are not supported");
    loc->kind = BL_LOC_PROXY;
    if (slash) {
        loc->has_proxy_uri = 1;
        loc->proxy_uri = xstrdup(slash);
        loc->proxy_uri_len = (uint32_t)strlen(slash);
    }
    c->pending = grow(c->pending, c->npending, sizeof(*c->pending));
    struct pending_pass *p = &c->pending[c->npending++];
    p->loc = loc;
    p->host = zalloc(hlen + 1);
    memcpy(p->host, host, hlen);
    p->file = n->file;
    p->line = n->line;
    return BL_OK;
}

static int h_return(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_location *loc = c->loc ? c->loc : c->srv->server_loc;
    if (loc->kind == BL_LOC_PROXY)
        return fail(c, "\"return\" and \"proxy_pass\" in one location");
    int64_t code;
    const char *text = NULL;
    if (parse_num(n->args[0], 0, 999, &code) != BL_OK) {
        /* nginx: "return URL;" is a 302 redirect. */
        if (n->nargs == 1 && (strncmp(n->args[0], "http://", 7) == 0 ||
                              strncmp(n->args[0], "https://", 8) == 0)) {
            code = 302;
            text = n->args[0];
        } else {
            return invalid_value(c, n->args[0]);
        }
    } else {
        if (code < 100 || code > 599)
            return invalid_value(c, n->args[0]);
        if (n->nargs > 1)
            text = n->args[1];
    }
    char err[256];
    loc->kind = BL_LOC_RETURN;
    loc->return_code = (int)code;
    bl_template_free(loc->return_text);
    loc->return_text = NULL;
    if (text && !(loc->return_text = bl_template_compile(text, err, sizeof(err))))
        return fail(c, "%s", err);
    return BL_OK;
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
    if (c->level.lc->next_upstream != UINT64_MAX)
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
    c->level.lc->next_upstream = mask;
    return BL_OK;
}

static int h_error_page(struct compiler *c, const struct bl_conf_node *n)
{
    const char *uri = n->args[n->nargs - 1];
    int overwrite = 0, ncodes = n->nargs - 1;
    const char *last = n->args[n->nargs - 2];
    if (last[0] == '=') {
        int64_t v;
        if (parse_num(last + 1, 100, 599, &v) != BL_OK)
            return invalid_value(c, last);
        overwrite = (int)v;
        ncodes--;
    }
    if (ncodes < 1)
        return fail(c, "invalid number of arguments in \"error_page\" directive");
    if (uri[0] != '/')
        return fail(c, "\"error_page\" URI must start with \"/\": \"%s\"", uri);
    for (int i = 0; i < ncodes; i++) {
        int64_t code;
        if (parse_num(n->args[i], 300, 599, &code) != BL_OK)
            return fail(c, "value \"%s\" must be between 300 and 599", n->args[i]);
        struct bl_error_page **list = c->level.epages;
        *list = grow(*list, *c->level.nepages, sizeof(**list));
        struct bl_error_page *e = &(*list)[(*c->level.nepages)++];
        e->code = (int)code;
        e->overwrite = overwrite;
        e->uri = xstrdup(uri);
    }
    *c->level.epages_set = 1;
    return BL_OK;
}

static int h_root(struct compiler *c, const struct bl_conf_node *n)
{
    struct bl_location *loc = c->loc;
    if (loc->root)
        return fail(c, "\"root\" directive is duplicate");
    if (loc->kind == BL_LOC_PROXY)
        return fail(c, "\"root\" and \"proxy_pass\" in one location");
    loc->root = xstrdup(n->args[0]);
    size_t len = strlen(loc->root);
    while (len > 1 && loc->root[len - 1] == '/')
        loc->root[--len] = '\0';
    if (loc->kind == BL_LOC_NONE)
        loc->kind = BL_LOC_STATIC;
    return BL_OK;
}

/* ---- typed settings ---- */

static int h_typed(struct compiler *c, const struct bl_conf_node *n);

#define LC(f) offsetof(struct bl_loc_conf, f)

static const struct directive directives[] = {
    /* main */
    {"worker_processes", CTX_MAIN, 1, 1, 0, FT_NONE, 0, "auto", h_worker_processes},
    {"error_log", CTX_MAIN | CTX_HTTP, 1, 2, 0, FT_NONE, 0, "stderr error", h_error_log},
    {"pid", CTX_MAIN, 1, 1, 0, FT_NONE, 0, NULL, h_pid},
    {"shutdown_timeout", CTX_MAIN, 1, 1, 0, FT_NONE, 0, "10s", h_shutdown_timeout},
    {"worker_rlimit_nofile", CTX_MAIN, 1, 1, 0, FT_NONE, 0, NULL, h_worker_rlimit_nofile},
    {"daemon", CTX_MAIN, 1, 1, 0, FT_NONE, 0, "off", h_flag_ignore},
    {"events", CTX_MAIN, 0, 0, 1, FT_NONE, 0, NULL, h_events},
    {"http", CTX_MAIN, 0, 0, 1, FT_NONE, 0, NULL, h_http},
    /* events */
    {"worker_connections", CTX_EVENTS, 1, 1, 0, FT_NONE, 0, "10000", h_worker_connections},
    {"use", CTX_EVENTS, 1, 1, 0, FT_NONE, 0, "epoll", h_use},
    {"multi_accept", CTX_EVENTS, 1, 1, 0, FT_NONE, 0, "off", h_flag_ignore},
    {"accept_mutex", CTX_EVENTS, 1, 1, 0, FT_NONE, 0, "off", h_flag_ignore},
    /* http */
    {"upstream", CTX_HTTP, 1, 1, 1, FT_NONE, 0, NULL, h_upstream},
    {"server", CTX_HTTP, 0, 0, 1, FT_NONE, 0, NULL, h_server},
    {"access_log", CTX_HSL, 1, 2, 0, FT_NONE, 0, "off", h_access_log},
    {"client_header_timeout", CTX_HTTP | CTX_SERVER, 1, 1, 0, FT_TIME,
     LC(client_header_timeout), "60s", h_typed},
    {"client_body_timeout", CTX_HSL, 1, 1, 0, FT_TIME, LC(client_body_timeout), "60s", h_typed},
    {"keepalive_timeout", CTX_HSL, 1, 2, 0, FT_TIME, LC(keepalive_timeout), "75s", h_typed},
    {"keepalive_requests", CTX_HSL, 1, 1, 0, FT_NUM, LC(keepalive_requests), "1000", h_typed},
    {"send_timeout", CTX_HSL, 1, 1, 0, FT_TIME, LC(send_timeout), "60s", h_typed},
    {"client_max_body_size", CTX_HSL, 1, 1, 0, FT_SIZE, LC(client_max_body_size), "1m",
     h_typed},
    {"large_client_header_buffers", CTX_HTTP | CTX_SERVER, 2, 2, 0, FT_NONE, 0, "4 8k",
     h_large_client_header_buffers},
    {"proxy_connect_timeout", CTX_HSL, 1, 1, 0, FT_TIME, LC(proxy_connect_timeout), "60s",
     h_typed},
    {"proxy_send_timeout", CTX_HSL, 1, 1, 0, FT_TIME, LC(proxy_send_timeout), "60s", h_typed},
    {"proxy_read_timeout", CTX_HSL, 1, 1, 0, FT_TIME, LC(proxy_read_timeout), "60s", h_typed},
    {"proxy_buffering", CTX_HSL, 1, 1, 0, FT_FLAG, LC(proxy_buffering), "on", h_typed},
    {"proxy_request_buffering", CTX_HSL, 1, 1, 0, FT_FLAG, LC(proxy_request_buffering), "on",
     h_typed},
    {"proxy_set_header", CTX_HSL, 2, 2, 0, FT_NONE, 0, NULL, h_proxy_set_header},
    {"proxy_next_upstream", CTX_HSL, 1, 12, 0, FT_NONE, 0, "error timeout",
     h_proxy_next_upstream},
    {"proxy_next_upstream_tries", CTX_HSL, 1, 1, 0, FT_NUM, LC(next_upstream_tries), "0",
     h_typed},
    {"proxy_next_upstream_timeout", CTX_HSL, 1, 1, 0, FT_TIME, LC(next_upstream_timeout), "0",
     h_typed},
    {"error_page", CTX_HSL, 2, ANY_ARGS, 0, FT_NONE, 0, NULL, h_error_page},
    {"proxy_http_version", CTX_HSL, 1, 1, 0, FT_NONE, 0, "1.1", h_ignore},
    {"sendfile", CTX_HSL, 1, 1, 0, FT_NONE, 0, "off", h_flag_ignore},
    {"tcp_nopush", CTX_HSL, 1, 1, 0, FT_NONE, 0, "off", h_flag_ignore},
    {"tcp_nodelay", CTX_HSL, 1, 1, 0, FT_NONE, 0, "on", h_flag_ignore},
    {"server_tokens", CTX_HSL, 1, 1, 0, FT_NONE, 0, "on", h_flag_ignore},
    /* upstream */
    {"server", CTX_UPSTREAM, 1, ANY_ARGS, 0, FT_NONE, 0, NULL, h_upstream_server},
    {"keepalive", CTX_UPSTREAM, 1, 1, 0, FT_NONE, 0, NULL, h_upstream_keepalive},
    {"check", CTX_UPSTREAM, 0, ANY_ARGS, 0, FT_NONE, 0, NULL, h_check},
    {"check_http_send", CTX_UPSTREAM, 1, 1, 0, FT_NONE, 0, "\"GET / HTTP/1.0\\r\\n\\r\\n\"",
     h_check},
    {"check_http_expect_alive", CTX_UPSTREAM, 1, 5, 0, FT_NONE, 0, "http_2xx http_3xx", h_check},
    {"check_http_expect_body", CTX_UPSTREAM, 1, 1, 0, FT_NONE, 0, NULL, h_check},
    {"outlier", CTX_UPSTREAM, 0, ANY_ARGS, 0, FT_NONE, 0, NULL, h_outlier},
    {"retry_budget", CTX_UPSTREAM, 1, 2, 0, FT_NONE, 0, NULL, h_retry_budget},
    {"least_conn", CTX_UPSTREAM, 0, 0, 0, FT_NONE, 0, NULL, h_lb_simple},
    {"ip_hash", CTX_UPSTREAM, 0, 0, 0, FT_NONE, 0, NULL, h_lb_simple},
    {"least_time", CTX_UPSTREAM, 0, 0, 0, FT_NONE, 0, NULL, h_lb_simple},
    {"hash", CTX_UPSTREAM, 1, 3, 0, FT_NONE, 0, NULL, h_lb_hash},
    {"random", CTX_UPSTREAM, 0, 2, 0, FT_NONE, 0, NULL, h_lb_random},
    {"keepalive_requests", CTX_UPSTREAM, 1, 1, 0, FT_NONE, 0, "1000",
     h_upstream_keepalive_requests},
    {"keepalive_timeout", CTX_UPSTREAM, 1, 1, 0, FT_NONE, 0, "60s",
     h_upstream_keepalive_timeout},
    /* server */
    {"listen", CTX_SERVER, 1, ANY_ARGS, 0, FT_NONE, 0, NULL, h_listen},
    {"server_name", CTX_SERVER, 1, ANY_ARGS, 0, FT_NONE, 0, "\"\"", h_server_name},
    {"location", CTX_SERVER | CTX_LOCATION, 1, 2, 1, FT_NONE, 0, NULL, h_location},
    {"return", CTX_SERVER | CTX_LOCATION, 1, 2, 0, FT_NONE, 0, NULL, h_return},
    /* location */
    {"proxy_pass", CTX_LOCATION, 1, 1, 0, FT_NONE, 0, NULL, h_proxy_pass},
    {"root", CTX_LOCATION, 1, 1, 0, FT_NONE, 0, NULL, h_root},
};

static int h_typed(struct compiler *c, const struct bl_conf_node *n)
{
    const struct directive *d = NULL;
    for (size_t i = 0; i < BL_ARRAY_LEN(directives); i++)
        if (strcmp(directives[i].name, n->name) == 0 && (directives[i].contexts & c->ctx))
            d = &directives[i];
    uint64_t *f = lc_field(c->level.lc, d->offset);
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

static const char *context_names(unsigned ctx, char *buf, size_t len)
{
    static const char *const names[] = {"main", "events", "http", "upstream", "server",
                                        "location"};
    buf[0] = '\0';
    size_t pos = 0;
    for (int i = 0; i < 6; i++)
        if (ctx & (1u << i))
            pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", pos ? ", " : "", names[i]);
    return buf;
}

const struct bl_directive_info *bl_conf_directives(size_t *n)
{
    static struct bl_directive_info info[BL_ARRAY_LEN(directives)];
    static char ctx_text[BL_ARRAY_LEN(directives)][64];
    for (size_t i = 0; i < BL_ARRAY_LEN(directives); i++) {
        info[i].name = directives[i].name;
        info[i].contexts = context_names(directives[i].contexts, ctx_text[i], sizeof(ctx_text[i]));
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
    if (!d)
        return fail(c, "\"%s\" directive is not allowed here", n->name);
    if (d->block && !n->is_block)
        return fail(c, "directive \"%s\" has no opening \"{\"", n->name);
    if (!d->block && n->is_block)
        return fail(c, "\"%s\" directive is not terminated by \";\"", n->name);
    if (n->nargs < d->min_args || (d->max_args != ANY_ARGS && n->nargs > d->max_args))
        return fail(c, "invalid number of arguments in \"%s\" directive", n->name);
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

/* ---------------------------------------------------------------- finishing */

static void merge_conf(struct bl_loc_conf *child, const struct bl_loc_conf *parent)
{
    uint64_t *cf = (uint64_t *)child;
    const uint64_t *pf = (const uint64_t *)parent;
    for (size_t i = 0; i < sizeof(*child) / sizeof(uint64_t); i++)
        if (cf[i] == UINT64_MAX)
            cf[i] = pf[i];
}

static void http_defaults(struct bl_loc_conf *lc)
{
    const struct bl_loc_conf d = {
        .client_header_timeout = 60000,
        .client_body_timeout = 60000,
        .keepalive_timeout = 75000,
        .keepalive_requests = 1000,
        .send_timeout = 60000,
        .client_max_body_size = 1024 * 1024,
        .proxy_connect_timeout = 60000,
        .proxy_send_timeout = 60000,
        .proxy_read_timeout = 60000,
        .lchb_number = 4,
        .lchb_size = 8192,
        .proxy_buffering = 1,
        .proxy_request_buffering = 1,
        .next_upstream = BL_NEXT_ERROR | BL_NEXT_TIMEOUT,
        .next_upstream_tries = 0,
        .next_upstream_timeout = 0,
    };
    merge_conf(lc, &d);
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
            int ok = bl_addr_parse(p->host, 80, has_port || strcmp(p->host, "localhost") == 0,
                                   &ss, &sl, err, sizeof(err)) == 0;
            if (!ok) {
                snprintf(c->err, c->errlen, "host not found in upstream \"%s\" in %s:%d",
                         p->host, p->file, p->line);
                return BL_ERR;
            }
            struct bl_conf_node fake = {.file = (char *)p->file, .line = p->line};
            g = group_new(c, p->host, &fake);
            struct bl_upstream_server *s = group_add_server(g);
            s->name = xstrdup(p->host);
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
        struct bl_upstream_server *sorted = zalloc(g->nservers * sizeof(*sorted));
        uint32_t k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (uint32_t i = 0; i < g->nservers; i++)
                if (g->servers[i].backup == pass)
                    sorted[k++] = g->servers[i];
        free(g->servers);
        g->servers = sorted;
        g->nprimary = 0;
        g->gstate = zalloc(sizeof(*g->gstate));
        for (uint32_t i = 0; i < g->nservers; i++) {
            struct bl_upstream_server *s = &g->servers[i];
            s->index = i;
            s->id = id++;
            s->group = g;
            s->state = zalloc(sizeof(*s->state));
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

static void finish_location(struct bl_config *cfg, struct bl_server_block *s,
                            struct bl_location *loc)
{
    merge_conf(&loc->conf, &s->conf);
    if (!loc->headers_set) {
        loc->headers = s->headers;
        loc->nheaders = s->nheaders;
    }
    if (!loc->access_log_set)
        loc->access_log = s->access_log;
    if (!loc->error_pages_set) {
        loc->error_pages = s->error_pages;
        loc->nerror_pages = s->nerror_pages;
    }
    loc->set_xff = loc->set_xrip = loc->set_xfp = 1;
    for (uint32_t i = 0; i < loc->nheaders; i++) {
        const char *n = loc->headers[i].name;
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

static int finish(struct compiler *c)
{
    struct bl_config *cfg = c->cfg;
    if (resolve_proxy_passes(c) != BL_OK || finish_groups(c) != BL_OK)
        return BL_ERR;
    http_defaults(&cfg->http_conf);
    for (uint32_t i = 0; i < cfg->nservers; i++) {
        struct bl_server_block *s = cfg->servers[i];
        merge_conf(&s->conf, &cfg->http_conf);
        if (!s->headers_set) {
            s->headers = cfg->http_headers;
            s->nheaders = cfg->nhttp_headers;
        }
        if (!s->access_log_set)
            s->access_log = cfg->http_access_log;
        if (!s->error_pages_set) {
            s->error_pages = cfg->http_error_pages;
            s->nerror_pages = cfg->nhttp_error_pages;
        }
        loc_conf_unset(&s->server_loc->conf);
        finish_location(cfg, s, s->server_loc);
        for (uint32_t k = 0; k < s->nexact; k++)
            finish_location(cfg, s, s->exact[k]);
        for (uint32_t k = 0; k < s->nprefix; k++)
            finish_location(cfg, s, s->prefix[k]);
        if (s->nprefix > 1)
            qsort(s->prefix, s->nprefix, sizeof(s->prefix[0]), cmp_prefix_len);
    }
    if (cfg->max_head < 1024)
        cfg->max_head = 4 * 8192;
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

static struct bl_config *compile_root(struct bl_conf_node *root, const char *file, char *err,
                                      size_t errlen)
{
    struct bl_config *cfg = zalloc(sizeof(*cfg));
    cfg->file = xstrdup(file);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = cpus > 0 ? (int)cpus : 1;
    cfg->worker_connections = 10000;
    cfg->error_log = xstrdup("stderr");
    cfg->error_log_level = BL_LOG_ERROR;
    cfg->shutdown_timeout = 10000;
    loc_conf_unset(&cfg->http_conf);

    struct compiler c = {.cfg = cfg, .err = err, .errlen = errlen};
    int rc = compile_block(&c, root, CTX_MAIN);
    if (rc == BL_OK && !c.seen_http) {
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
    return keep_tree(compile_root(root, file, err, errlen), root);
}

struct bl_config *bl_conf_load_string(const char *text, const char *name, char *err,
                                      size_t errlen)
{
    struct bl_conf_node *root = bl_conf_read_string(text, name, err, errlen);
    if (!root)
        return NULL;
    return keep_tree(compile_root(root, name, err, errlen), root);
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

static void free_location(struct bl_location *loc, const struct bl_server_block *s)
{
    if (loc->error_pages_set)
        free_error_pages(loc->error_pages, loc->nerror_pages);
    free(loc->root);
    free(loc->path);
    free(loc->proxy_uri);
    bl_template_free(loc->return_text);
    if (loc->headers_set)
        free_headers(loc->headers, loc->nheaders);
    BL_UNUSED(s);
    free(loc);
}

void bl_conf_release(struct bl_config *cfg)
{
    if (!cfg)
        return;
    for (uint32_t i = 0; i < cfg->nservers; i++) {
        struct bl_server_block *s = cfg->servers[i];
        for (uint32_t k = 0; k < s->nexact; k++)
            free_location(s->exact[k], s);
        for (uint32_t k = 0; k < s->nprefix; k++)
            free_location(s->prefix[k], s);
        bl_template_free(s->server_loc->return_text);
        free(s->server_loc->path);
        free(s->server_loc);
        if (s->headers_set)
            free_headers(s->headers, s->nheaders);
        if (s->error_pages_set)
            free_error_pages(s->error_pages, s->nerror_pages);
        for (uint32_t k = 0; k < s->nnames; k++)
            free(s->names[k]);
        free(s->names);
        free(s->exact);
        free(s->prefix);
        free(s);
    }
    free_headers(cfg->http_headers, cfg->nhttp_headers);
    free_error_pages(cfg->http_error_pages, cfg->nhttp_error_pages);
    free(cfg->servers);
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        free(cfg->listens[i].servers);
    free(cfg->listens);
    for (uint32_t i = 0; i < cfg->ngroups; i++) {
        struct bl_upstream_group *g = cfg->groups[i];
        if (g->balancer && g->balancer->destroy)
            g->balancer->destroy(g);
        for (uint32_t k = 0; k < g->nservers; k++) {
            free(g->servers[k].name);
            free(g->servers[k].state);
        }
        free(g->servers);
        free(g->gstate);
        bl_check_conf_free(g->check);
        bl_outlier_conf_free(g->outlier);
        free(g->name);
        free(g->hash_key);
        bl_template_free(g->hash_key_compiled);
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
    free(cfg->error_log);
    free(cfg->pid_file);
    free(cfg->file);
    bl_conf_free(cfg->tree);
    free(cfg);
}
