/* Static files as nginx's static, index, range, not_modified and gzip_static modules serve
 * them: the URI mapped under root or alias, opened under the disable_symlinks policy, the
 * validators (Last-Modified, ETag) and conditional requests, byte ranges, expires; the body
 * leaves by sendfile(2) on plain connections or pread() into the head buffer otherwise, a
 * bounded amount per call, so memory stays flat whatever the file size (docs/static.md). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#include "cache/cache_control.h"
#include "core/log.h"
#include "http/autoindex.h"
#include "http/gzip.h"
#include "http/proxy_int.h"
#include "http/range.h"
#include "http/response.h"

/* Most ranges one request may ask for; more are answered with the whole file (nginx's
 * max_ranges does the same). */
#define MAX_RANGES 64
/* Bytes one sendfile(2) call may move. */
#define SENDFILE_CHUNK (1u << 20)

/* A multipart/byteranges body: the parts still to send. */
struct bl_static_parts {
    const char *type;             /* the file's Content-Type (the config's string) */
    uint64_t size;                /* the file's */
    int n, next;                  /* ranges, and the next one whose part header is due */
    uint8_t closed;               /* the closing boundary was queued */
    char boundary[16];
    struct bl_range ranges[];
};

/* ------------------------------------------------------------ helpers */

static int server_tokens(const struct bl_request *r)
{
    const struct bl_server_block *srv = r->srv ? r->srv : r->c->listen->servers[0];
    return (int)(r->loc ? r->loc : srv->server_loc)->conf.server_tokens;
}

/* The request's header named name (case-insensitive), or NULL. */
static const struct bl_h1_header *req_header(const struct bl_request *r, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < r->msg.nheaders; i++) {
        const struct bl_h1_header *h = &r->msg.headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0)
            return h;
    }
    return NULL;
}

/* nginx's error log line for a file: `open() "/x" failed (2: No such file or directory),
 * client: ..., server: ..., request: "...", host: "..."`. */
static void log_file(const struct bl_request *r, int level, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void log_file(const struct bl_request *r, int level, int err, const char *fmt, ...)
{
    if (!bl_log_enabled(level))
        return;
    char what[PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    char code[96] = "";
    if (err)
        snprintf(code, sizeof(code), " (%d: %s)", err, strerror(err));
    const struct bl_h1_message *m = &r->msg;
    const char *server = r->srv && r->srv->nnames ? r->srv->names[0] : "";
    char host[300] = "";
    if (m->host && m->host_len)
        snprintf(host, sizeof(host), ", host: \"%.*s\"", (int)(m->host_len > 255 ? 255 : m->host_len),
                 m->host);
    bl_log(level, "%s%s, client: %s, server: %s, request: \"%.*s %.*s HTTP/1.%d\"%s", what, code,
           r->c->ip, server, (int)m->method_len, m->method ? m->method : "",
           (int)(m->target_len > 2048 ? 2048 : m->target_len), m->target ? m->target : "",
           m->minor_version, host);
}

/* The type of a file from its extension: the location's `types` when it has some (any case,
 * as nginx matches them), else the built-in list below; `default_type` when neither knows it. */
static const char *content_type(const struct bl_location *loc, const char *path, size_t len)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html"},       {"htm", "text/html"},
        {"css", "text/css"},         {"js", "application/javascript"},
        {"json", "application/json"}, {"txt", "text/plain"},
        {"xml", "text/xml"},         {"png", "image/png"},
        {"jpg", "image/jpeg"},       {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},        {"svg", "image/svg+xml"},
        {"ico", "image/x-icon"},     {"webp", "image/webp"},
        {"pdf", "application/pdf"},  {"wasm", "application/wasm"},
    };
    const char *dot = NULL;
    for (size_t i = len; i > 0; i--) {
        if (path[i - 1] == '/')
            break;
        if (path[i - 1] == '.') {
            dot = path + i;
            break;
        }
    }
    if (dot) {
        size_t elen = (size_t)(path + len - dot);
        if (loc->conf.types) {
            for (uint32_t i = 0; i < loc->conf.ntypes; i++)
                if (strlen(loc->conf.types[i].ext) == elen &&
                    strncasecmp(loc->conf.types[i].ext, dot, elen) == 0)
                    return loc->conf.types[i].type;
        } else {
            for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                if (strlen(types[i].ext) == elen && strncasecmp(types[i].ext, dot, elen) == 0)
                    return types[i].type;
        }
    }
    return loc->conf.default_type ? loc->conf.default_type : "text/plain";
}

/* Whether p (the part of a file path that came from the URI) holds a "." or ".." segment or a
 * NUL. The URI was normalized before routing (http/uri.h), so this catches what mapping adds:
 * `location /i { alias /data/; }` turns "/i../x" into "/data/../x". */
static int has_dot_segment(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\0')
            return 1;
        if (p[i] != '.' || (i > 0 && p[i - 1] != '/'))
            continue;
        size_t k = i + 1;
        if (k < len && p[k] == '.')
            k++;
        if (k == len || p[k] == '/')
            return 1;
    }
    return 0;
}

/* Maps the URI path (uri, len) to a file path in full (cap bytes) as nginx's
 * ngx_http_map_uri_to_path() does: root + URI, or alias + the URI past the location's prefix,
 * or an alias with variables as the whole path. *from: where the part the URI chose starts.
 * BL_OK, or BL_ERR with errno (ENAMETOOLONG; EACCES: the mapped part climbs out). */
static int map_path(const struct bl_request *r, const struct bl_location *loc, const char *uri,
                    size_t len, char *full, size_t cap, size_t *from)
{
    int n;
    if (loc->alias_tpl) {
        struct bl_var_ctx v;
        bl_request_var_ctx(r, &v);
        size_t k = bl_template_eval(loc->alias_tpl, &v, full, cap - 1);
        if (k >= cap - 1) {
            errno = ENAMETOOLONG;
            return BL_ERR;
        }
        full[k] = '\0';
        n = (int)k;
        *from = 0;
        /* the whole path came from the request's captures: every segment is checked */
    } else if (loc->alias) {
        size_t skip = loc->path_len <= len && !loc->regex ? loc->path_len : 0;
        if (!loc->regex && (skip > len || strncmp(uri, loc->path, skip) != 0))
            skip = 0; /* an error page's URI in another location: taken whole */
        size_t alen = strlen(loc->alias);
        n = snprintf(full, cap, "%s%.*s", loc->alias, (int)(len - skip), uri + skip);
        *from = alen ? alen - 1 : 0;
    } else {
        n = snprintf(full, cap, "%s%.*s", loc->root, (int)len, uri);
        *from = strlen(loc->root);
    }
    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        return BL_ERR;
    }
    if (has_dot_segment(full + *from, (size_t)n - *from) || memchr(uri, '\0', len)) {
        errno = EACCES;
        return BL_ERR;
    }
    return BL_OK;
}

/* ------------------------------------------------------------ opening */

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* Opens full component by component without following symlinks, except those whose owner is
 * the target's when owner_ok (disable_symlinks if_not_owner); components before from are
 * followed as they are. -1 with errno (ELOOP for a refused link) on failure. */
static int walk_open(const char *full, size_t from, int owner_ok)
{
    char path[PATH_MAX];
    size_t len = strlen(full);
    if (len >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, full, len + 1);
    /* The unchecked prefix: up to the last '/' at or before from. */
    size_t cut = from;
    while (cut > 0 && path[cut] != '/')
        cut--;
    int dfd;
    if (cut > 0) {
        path[cut] = '\0';
        dfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        path[cut] = '/';
    } else {
        dfd = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (dfd < 0)
        return -1;
    char *p = path + cut;
    for (;;) {
        while (*p == '/')
            p++;
        if (!*p) {
            /* a trailing slash: the directory itself */
            int fd = openat(dfd, ".", OPEN_FLAGS);
            int e = errno;
            close(dfd);
            errno = e;
            return fd;
        }
        char *end = strchr(p, '/');
        int last = !end || !end[strspn(end, "/")];
        if (end)
            *end = '\0';
        int flags = last ? OPEN_FLAGS | O_NOFOLLOW : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        int fd = openat(dfd, p, flags);
        if (fd >= 0 && !last) {
            /* O_PATH | O_NOFOLLOW opens a link itself rather than failing */
            struct stat st;
            if (fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
                close(fd);
                fd = -1;
                errno = ELOOP;
            }
        }
        if (fd < 0 && (errno == ELOOP || errno == ENOTDIR || errno == EMLINK)) {
            int e = errno;
            struct stat ls, ts;
            int link = fstatat(dfd, p, &ls, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(ls.st_mode);
            if (link && owner_ok && fstatat(dfd, p, &ts, 0) == 0 && ls.st_uid == ts.st_uid)
                fd = openat(dfd, p, flags & ~O_NOFOLLOW);
            else
                errno = link ? ELOOP : e;
        }
        int e = errno;
        close(dfd);
        if (fd < 0) {
            errno = e;
            return -1;
        }
        if (last)
            return fd;
        dfd = fd;
        p = end + 1;
    }
}

#ifdef SYS_openat2
/* 0 until openat2 fails as a kernel without it (or a seccomp filter) does: then the slow way
 * for the rest of the process's life. Any thread may set it; a stale 0 costs one call. */
static _Atomic int no_openat2;

static int openat2_at(int dfd, const char *path, int flags, uint64_t resolve)
{
    struct open_how how = {.flags = (uint64_t)flags, .resolve = resolve};
    return (int)syscall(SYS_openat2, dfd, path, &how, sizeof(how));
}
#endif

/* Whether path (absolute or relative to the working directory, as base is) resolves, every
 * symlink followed, to base's directory or below it. 1 with the resolved path in real
 * (PATH_MAX), 0 when it leaves, -1 with errno when either cannot be resolved. */
static int resolves_beneath(const char *base, const char *path, char *real)
{
    char rbase[PATH_MAX];
    if (!realpath(base, rbase) || !realpath(path, real))
        return -1;
    size_t n = strlen(rbase);
    if (n == 1)
        return 1; /* "/" */
    return strncmp(real, rbase, n) == 0 && (real[n] == '/' || real[n] == '\0');
}

/* disable_symlinks outside_root: opens full, refusing (EXDEV) a path that leaves the
 * location's directory through a symlink. One openat2(RESOLVE_BENEATH) on the directory's fd
 * opened at load; the kernel refuses an absolute symlink there even when it points back
 * inside, so a refusal is checked again with realpath(), which also serves kernels without
 * openat2. */
static int open_beneath(const struct bl_location *loc, const char *full)
{
    size_t blen = loc->base_len;
    if (!loc->base_dir || (strncmp(full, loc->base_dir, blen) == 0 && full[blen] == '\0'))
        return open(full, OPEN_FLAGS); /* nothing of the path came from the request */
    if (strncmp(full, loc->base_dir, blen) != 0) {
        errno = EXDEV; /* mapping always starts with the directory: refused if not */
        return -1;
    }
    const char *rel = full + blen;
    int dfd = loc->base_open ? loc->base_fd : -1;
    char parent[PATH_MAX];
    const char *base = loc->base_dir;
    if (*rel != '/' && base[blen - 1] != '/') {
        /* `location /i/ { alias /data/img; }` maps "/i/x" to "/data/imgx": the parent's */
        const char *slash = memrchr(base, '/', blen);
        size_t plen = slash ? (size_t)(slash - base) : 0;
        snprintf(parent, sizeof(parent), "%.*s", (int)plen, base);
        if (!slash)
            snprintf(parent, sizeof(parent), ".");
        else if (plen == 0)
            snprintf(parent, sizeof(parent), "/");
        base = parent;
        rel = full + plen;
        dfd = -1;
    }
    while (*rel == '/')
        rel++;
    if (!*rel)
        rel = ".";
    int fd = -1;
#ifdef SYS_openat2
    if (!no_openat2) {
        int own = dfd < 0;
        if (own && (dfd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
            return -1;
        fd = openat2_at(dfd, rel, OPEN_FLAGS, RESOLVE_BENEATH);
        if (fd < 0 && errno == EAGAIN) /* a rename raced the lookup: once more */
            fd = openat2_at(dfd, rel, OPEN_FLAGS, RESOLVE_BENEATH);
        int e = errno;
        if (own)
            close(dfd);
        errno = e;
        if (fd >= 0 || (e != EXDEV && e != EAGAIN && e != ENOSYS && e != EPERM && e != EINVAL))
            return fd;
        if (e != EXDEV && e != EAGAIN)
            no_openat2 = 1;
    }
#endif
    char real[PATH_MAX];
    int in = resolves_beneath(base, full, real);
    if (in <= 0) {
        if (in == 0)
            errno = EXDEV;
        return -1;
    }
    /* what realpath() checked, its last component not followed: a link swapped in there
     * since is refused */
    return open(real, OPEN_FLAGS | O_NOFOLLOW);
}

/* Opens a file path under loc's disable_symlinks. from: where the checked part begins
 * (from=$document_root), else the whole path is checked. */
static int open_file(const struct bl_location *loc, const char *full, size_t from)
{
    uint64_t mode = loc->conf.disable_symlinks;
    if (mode == BL_SYMLINKS_FOLLOW)
        return open(full, OPEN_FLAGS);
    if (mode == BL_SYMLINKS_BENEATH)
        return open_beneath(loc, full);
    if (!loc->conf.disable_symlinks_from_root)
        from = 0;
#ifdef SYS_openat2
    if (mode == BL_SYMLINKS_REFUSE && from == 0) {
        /* one call where the kernel has it (5.6+): no component may be a symlink */
        struct open_how how = {.flags = OPEN_FLAGS, .resolve = RESOLVE_NO_SYMLINKS};
        int fd = (int)syscall(SYS_openat2, AT_FDCWD, full, &how, sizeof(how));
        if (fd >= 0 || (errno != ENOSYS && errno != EPERM && errno != EINVAL))
            return fd;
    }
#endif
    return walk_open(full, from, mode == BL_SYMLINKS_IF_NOT_OWNER);
}

/* ------------------------------------------------------------ the head */

struct head {
    char *p;
    size_t len, cap;
    int overflow;
};

static void put(struct head *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct head *h, const char *fmt, ...)
{
    if (h->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(h->p + h->len, h->cap - h->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= h->cap - h->len)
        h->overflow = 1;
    else
        h->len += (size_t)n;
}

static void http_date(char *out, size_t cap, int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}


size_t bl_static_expires(const struct bl_request *r, int status, char *buf, size_t cap)
{
    const struct bl_location *loc = r->loc;
    if (!loc || loc->conf.expires == BL_EXPIRES_OFF || !bl_http_status_takes_added_fields(status))
        return 0;
    struct head h = {buf, 0, cap, 0};
    int64_t t = (int64_t)loc->conf.expires_time;
    int64_t now = (int64_t)time(NULL);
    char date[64];
    switch (loc->conf.expires) {
    case BL_EXPIRES_EPOCH:
        put(&h, "Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\nCache-Control: no-cache\r\n");
        break;
    case BL_EXPIRES_MAX:
        put(&h, "Expires: Thu, 31 Dec 2037 23:55:55 GMT\r\nCache-Control: max-age=315360000\r\n");
        break;
    default: {
        int64_t at;
        if (loc->conf.expires == BL_EXPIRES_MODIFIED) {
            if (!r->file_mtime)
                return 0; /* no Last-Modified to count from */
            at = r->file_mtime + t;
        } else {
            at = now + t;
        }
        http_date(date, sizeof(date), at);
        if (at - now <= 0 || t < 0)
            put(&h, "Expires: %s\r\nCache-Control: no-cache\r\n", date);
        else
            put(&h, "Expires: %s\r\nCache-Control: max-age=%lld\r\n", date,
                (long long)(at - now));
    }
    }
    return h.overflow ? 0 : h.len;
}

/* Starts the head of a file response: status line, Server, Date, and what only some have. */
static void head_start(struct bl_request *r, struct head *h, int status)
{
    size_t dlen;
    const char *date = bl_http_date_header(&dlen);
    put(h, "HTTP/1.1 %d %s\r\nServer: %s\r\n%.*s", status, bl_http_reason(status),
        bl_http_server_name(server_tokens(r)), (int)dlen, date);
}

/* Ends the head: Connection, the location's expires and add_header lines, the empty line;
 * then stores it in r->out. BL_OK, or BL_ERR when it did not fit. */
static int head_finish(struct bl_request *r, struct head *h, int status)
{
    const struct bl_h1_message *m = &r->msg;
    if (!r->keep_alive)
        put(h, "Connection: close\r\n");
    else if (m->minor_version == 0)
        put(h, "Connection: keep-alive\r\n");
    if (!h->overflow) {
        size_t n = bl_add_headers(r, status, h->p + h->len, h->cap - h->len);
        if (n > h->cap - h->len)
            bl_log(BL_LOG_ERROR, "add_header fields do not fit in the response head, client %s",
                   r->c->ip);
        else
            h->len += n;
    }
    put(h, "\r\n");
    if (h->overflow)
        return BL_ERR;
    r->status = status;
    r->out->start = 0;
    r->out->end = (uint32_t)h->len;
    r->out_sent = 0;
    r->body_bytes_sent = 0;
    return BL_OK;
}

/* ------------------------------------------------------------ conditions and ranges */

/* RFC 9110 13.2.2's order, with nginx's if_modified_since exact: 0 to go on, or the status
 * that answers instead (304, 412). */
static int preconditions(const struct bl_request *r, const char *etag, size_t elen,
                         int64_t mtime)
{
    const struct bl_h1_header *h;
    if ((h = req_header(r, "If-Match"))) {
        if (!elen || !bl_etag_match(h->value, h->value_len, etag, elen, 0))
            return 412;
    } else if ((h = req_header(r, "If-Unmodified-Since"))) {
        int64_t t = bl_http_date_parse(h->value, h->value_len);
        if (t >= 0 && mtime > t)
            return 412;
    }
    if ((h = req_header(r, "If-None-Match"))) {
        if (elen && bl_etag_match(h->value, h->value_len, etag, elen, 1))
            return 304; /* GET and HEAD only reach here */
        return 0; /* If-Modified-Since is not read when If-None-Match is there */
    }
    if ((h = req_header(r, "If-Modified-Since"))) {
        int64_t t = bl_http_date_parse(h->value, h->value_len);
        if (t >= 0 && t == mtime)
            return 304;
    }
    return 0;
}

/* If-Range (RFC 9110 13.1.5): whether the Range field applies. A date must be the file's
 * Last-Modified exactly; an entity tag must match strongly. */
static int if_range_holds(const struct bl_request *r, const char *etag, size_t elen,
                          int64_t mtime)
{
    const struct bl_h1_header *h = req_header(r, "If-Range");
    if (!h)
        return 1;
    if (h->value_len && (h->value[0] == '"' || h->value[0] == 'W'))
        return elen && bl_etag_match(h->value, h->value_len, etag, elen, 0);
    return bl_http_date_parse(h->value, h->value_len) == mtime;
}

static int part_header(char *out, size_t cap, const struct bl_static_parts *p,
                       const struct bl_range *rg)
{
    return snprintf(out, cap, "\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %llu-%llu/%llu\r\n\r\n",
                    p->boundary, p->type, (unsigned long long)rg->first,
                    (unsigned long long)rg->last, (unsigned long long)p->size);
}

/* ------------------------------------------------------------ serving */

/* Nothing to serve: try_files' fallback (an internal redirect the caller makes), or status. */
static int try_fallback(struct bl_request *r, const struct bl_location *loc, int status)
{
    if (loc->try_fallback && !r->error_page_done)
        return BL_LOCAL_REDIRECT;
    return bl_local_response(r, status, NULL, 0, NULL, 0);
}

/* Opens the first `index` name under the directory full (ending in '/'). The fd, or -1 with
 * errno (ENOENT when none exists); full holds the name tried last. */
static int open_index(const struct bl_location *loc, char *full, size_t cap, size_t from)
{
    size_t dlen = strlen(full);
    int e = ENOENT;
    for (uint32_t i = 0; i < loc->conf.nindex; i++) {
        int n = snprintf(full + dlen, cap - dlen, "%s", loc->conf.index[i]);
        if (n < 0 || (size_t)n >= cap - dlen) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = open_file(loc, full, from);
        if (fd >= 0)
            return fd;
        if (errno != ENOENT)
            e = errno;
    }
    full[dlen] = '\0';
    errno = e;
    return -1;
}

/* The answer to a failed open() (nginx's ngx_http_static_handler). */
static int open_failed(struct bl_request *r, const struct bl_location *loc, const char *full,
                       int e, int missing)
{
    if (e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG) {
        if (loc->conf.log_not_found)
            log_file(r, BL_LOG_ERROR, e, "open() \"%s\" failed", full);
        return bl_local_response(r, missing, NULL, 0, NULL, 0);
    }
    if (e == EACCES || e == ELOOP || e == EMLINK) {
        log_file(r, BL_LOG_ERROR, e, "open() \"%s\" failed", full);
        return bl_local_response(r, 403, NULL, 0, NULL, 0);
    }
    if (e == EXDEV) {
        log_file(r, BL_LOG_ERROR, 0, "open() \"%s\" failed: a symlink leads out of \"%s\" "
                 "(disable_symlinks)", full, loc->base_dir ? loc->base_dir : "");
        return bl_local_response(r, 403, NULL, 0, NULL, 0);
    }
    log_file(r, BL_LOG_CRIT, e, "open() \"%s\" failed", full);
    return bl_local_response(r, 500, NULL, 0, NULL, 0);
}

/* try_files: the first FILE that exists (a regular file, or a directory for one ending in
 * "/"), its URI path in out. 1, or 0 when none does. */
static int try_files(struct bl_request *r, const struct bl_location *loc, char *out, size_t cap,
                     size_t *olen)
{
    struct bl_var_ctx v;
    bl_request_var_ctx(r, &v);
    for (uint32_t i = 0; i < loc->ntry; i++) {
        const struct bl_try_file *t = &loc->try_list[i];
        size_t n = bl_template_eval(t->path, &v, out, cap - 1);
        if (n == 0 || n >= cap - 1 || out[0] != '/')
            continue;
        out[n] = '\0';
        char full[PATH_MAX];
        size_t from;
        if (map_path(r, loc, out, n, full, sizeof(full), &from) != BL_OK)
            continue;
        int fd = open_file(loc, full, from);
        if (fd < 0)
            continue;
        struct stat st;
        int ok = fstat(fd, &st) == 0 && (t->dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
        close(fd);
        if (ok) {
            /* a directory is tested with its slash and served without (nginx): "/dir"
             * is redirected to "/dir/", "/dir/" gets its index */
            *olen = t->dir && n > 1 ? n - 1 : n;
            out[*olen] = '\0';
            return 1;
        }
    }
    return 0;
}

/* gzip_static: FILE.gz instead of FILE when the client accepts gzip (or always). The .gz fd
 * with *st filled, or -1 to serve FILE. */
static int open_gz(struct bl_request *r, const struct bl_location *loc, const char *full,
                   size_t from, struct stat *st)
{
    const struct bl_h1_header *ae = req_header(r, "Accept-Encoding");
    if (loc->conf.gzip_static == BL_GZIP_STATIC_ON &&
        (!ae || !bl_gzip_accepted(ae->value, ae->value_len) ||
         r->msg.minor_version < loc->conf.gzip_http_version))
        return -1;
    char gz[PATH_MAX];
    int n = snprintf(gz, sizeof(gz), "%s.gz", full);
    if (n < 0 || (size_t)n >= sizeof(gz))
        return -1;
    int fd = open_file(loc, gz, from);
    if (fd < 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            log_file(r, BL_LOG_ERROR, errno, "open() \"%s\" failed", gz);
        return -1;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* autoindex: the directory full (ending in "/", no index file in it) listed for the URI path
 * (path, len), as nginx's autoindex module lists it. */
static int serve_listing(struct bl_request *r, const struct bl_location *loc, const char *full,
                         size_t from, const char *path, size_t len)
{
    const struct bl_h1_message *m = &r->msg;
    if (m->method_id != BL_H1_M_GET && m->method_id != BL_H1_M_HEAD)
        return bl_local_response(r, 405, NULL, 0, NULL, 0);
    int fd = open_file(loc, full, from);
    if (fd < 0)
        return open_failed(r, loc, full, errno, 404);
    struct bl_autoindex *a =
        bl_autoindex_open(fd, path, len, loc->conf.autoindex_format == BL_AUTOINDEX_JSON,
                          (int)loc->conf.autoindex_exact_size, (int)loc->conf.autoindex_localtime);
    if (!a) {
        if (errno == EFBIG)
            log_file(r, BL_LOG_ERROR, 0, "directory \"%s\" has too many entries to list (more "
                     "than %u bytes of names)", full, BL_AUTOINDEX_MAX_BYTES);
        else
            log_file(r, BL_LOG_CRIT, errno, "listing \"%s\" failed", full);
        return bl_local_response(r, 500, NULL, 0, NULL, 0);
    }
    if (!r->out && !(r->out = bl_buf_get())) {
        bl_autoindex_free(a);
        return BL_ERR;
    }
    bl_request_unread_body(r);
    struct head h = {r->out->data, 0, r->out->cap, 0};
    head_start(r, &h, 200);
    put(&h, "Content-Type: %s\r\nContent-Length: %llu\r\n",
        loc->conf.autoindex_format == BL_AUTOINDEX_JSON ? "application/json" : "text/html",
        (unsigned long long)bl_autoindex_length(a));
    if (head_finish(r, &h, 200) != BL_OK) {
        bl_autoindex_free(a);
        return bl_local_response(r, 500, NULL, 0, NULL, 0);
    }
    if (m->method_id == BL_H1_M_HEAD)
        bl_autoindex_free(a);
    else
        r->listing = a;
    return BL_OK;
}

int bl_static_serve(struct bl_request *r, const struct bl_location *loc, const char *path,
                    size_t len, int status)
{
    const struct bl_h1_message *m = &r->msg;
    int page = status != 200; /* an error page: served as a GET, no conditions or ranges */
    if (!page && m->method_id != BL_H1_M_GET && m->method_id != BL_H1_M_HEAD &&
        m->method_id != BL_H1_M_POST)
        return bl_local_response(r, 405, NULL, 0, NULL, 0);
    if (!len || path[0] != '/')
        return bl_local_response(r, 404, NULL, 0, NULL, 0);
    /* try_files: the first of its files that exists is served here; none: its fallback */
    char tried[PATH_MAX];
    if (loc->try_files) {
        size_t tlen;
        if (!try_files(r, loc, tried, sizeof(tried), &tlen))
            return try_fallback(r, loc, loc->try_code ? loc->try_code : 404);
        path = tried;
        len = tlen;
    }
    int missing = 404;
    char full[PATH_MAX];
    size_t from;
    if (map_path(r, loc, path, len, full, sizeof(full), &from) != BL_OK) {
        if (errno == EACCES) {
            log_file(r, BL_LOG_ERROR, 0, "\"%.*s\" maps outside of the location's directory",
                     (int)len, path);
            return bl_local_response(r, 403, NULL, 0, NULL, 0);
        }
        return bl_local_response(r, 404, NULL, 0, NULL, 0);
    }
    size_t flen = strlen(full);
    int fd;
    if (full[flen - 1] == '/') {
        fd = open_index(loc, full, sizeof(full), from);
        if (fd < 0 && errno == ENOENT) {
            /* nginx: a directory without an index file is forbidden, not missing. */
            struct stat dst;
            int dir = stat(full, &dst) == 0 && S_ISDIR(dst.st_mode);
            if (dir && loc->conf.autoindex && !page)
                return serve_listing(r, loc, full, from, path, len);
            if (dir) {
                log_file(r, BL_LOG_ERROR, 0, "directory index of \"%s\" is forbidden", full);
                return bl_local_response(r, 403, NULL, 0, NULL, 0);
            }
            if (loc->conf.log_not_found)
                log_file(r, BL_LOG_ERROR, ENOENT, "\"%s\" is not found", full);
            return bl_local_response(r, missing, NULL, 0, NULL, 0);
        }
    } else {
        fd = open_file(loc, full, from);
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return open_failed(r, loc, full, e, missing);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        /* nginx: a directory without the slash is redirected to the slash, arguments kept */
        char to[PATH_MAX + 8];
        int k = snprintf(to, sizeof(to), "%.*s/%s%.*s", (int)len, path, m->query ? "?" : "",
                         m->query ? (int)m->query_len : 0, m->query ? m->query : "");
        if (k < 0 || (size_t)k >= sizeof(to))
            return bl_local_response(r, 414, NULL, 0, NULL, 0);
        return bl_local_response(r, 301, NULL, 0, to, (size_t)k);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        log_file(r, BL_LOG_CRIT, 0, "\"%s\" is not a regular file", full);
        return bl_local_response(r, 404, NULL, 0, NULL, 0);
    }
    if (!page && m->method_id == BL_H1_M_POST) {
        close(fd);
        return bl_local_response(r, 405, NULL, 0, NULL, 0);
    }
    const char *type = content_type(loc, full, strlen(full));
    int gz = 0;
    if (loc->conf.gzip_static) {
        struct stat gst;
        int gfd = open_gz(r, loc, full, from, &gst);
        if (gfd >= 0) {
            close(fd);
            fd = gfd;
            st = gst;
            gz = 1;
        }
    }
    if (!r->out && !(r->out = bl_buf_get())) {
        close(fd);
        return BL_ERR;
    }
    bl_request_unread_body(r);
    int64_t mtime = (int64_t)st.st_mtime;
    uint64_t size = (uint64_t)st.st_size;
    r->file_mtime = mtime;
    char etag[48];
    size_t elen = loc->conf.etag ? bl_etag_make(etag, sizeof(etag), mtime, size) : 0;
    char lm[64];
    http_date(lm, sizeof(lm), mtime);
    int head_only = m->method_id == BL_H1_M_HEAD;

    struct bl_range ranges[MAX_RANGES];
    int nranges = 0;
    if (!page) {
        int pre = preconditions(r, etag, elen, mtime);
        if (pre == 412) {
            close(fd);
            return bl_local_response(r, 412, NULL, 0, NULL, 0);
        }
        if (pre == 304) {
            close(fd);
            struct head h = {r->out->data, 0, r->out->cap, 0};
            head_start(r, &h, 304);
            put(&h, "Last-Modified: %s\r\n", lm);
            if (elen)
                put(&h, "ETag: %s\r\n", etag);
            if (gz && loc->conf.gzip_vary)
                put(&h, "Vary: Accept-Encoding\r\n");
            return head_finish(r, &h, 304) == BL_OK ? BL_OK : BL_ERR;
        }
        const struct bl_h1_header *rh = req_header(r, "Range");
        if (rh && if_range_holds(r, etag, elen, mtime)) {
            int rc = bl_range_parse(rh->value, rh->value_len, size, ranges, MAX_RANGES,
                                    &nranges);
            if (rc == BL_RANGE_NONE) {
                close(fd);
                int res = bl_local_response(r, 416, NULL, 0, NULL, 0);
                if (res == BL_OK && r->status == 416) {
                    /* the Content-Range an unsatisfiable range must carry */
                    char cr[64];
                    int k = snprintf(cr, sizeof(cr), "Content-Range: bytes */%llu\r\n",
                                     (unsigned long long)size);
                    struct bl_buf *b = r->out;
                    char *at = memmem(b->data, b->end, "\r\n", 2);
                    if (at && b->end + (uint32_t)k <= b->cap) {
                        at += 2;
                        memmove(at + k, at, (size_t)(b->data + b->end - at));
                        memcpy(at, cr, (size_t)k);
                        b->end += (uint32_t)k;
                    }
                }
                return res;
            }
            if (rc != BL_RANGE_OK)
                nranges = 0;
        }
    }

    /* gzip on: the file compressed as it is read (nginx's gzip filter), for 200 and error
     * pages; never with ranges (decided above: a Range field rules it out). */
    int gzd = gz ? BL_GZIP_NO : bl_gzip_decide_local(r, status, type, size);
    int chunked = !r->c->h2 && m->minor_version == 1;
    if (gzd == BL_GZIP_YES && !head_only) {
        if (!(r->gz = bl_gzip_new((int)loc->conf.gzip_comp_level, chunked)) ||
            !(r->file_in = bl_buf_get())) {
            close(fd);
            return BL_ERR;
        }
        if (!chunked && !r->c->h2)
            r->keep_alive = 0; /* HTTP/1.0: the body ends at close */
    }
    struct head h = {r->out->data, 0, r->out->cap, 0};
    head_start(r, &h, nranges ? 206 : status);
    uint64_t body_len = size;
    struct bl_static_parts *parts = NULL;
    if (nranges == 1) {
        body_len = ranges[0].last - ranges[0].first + 1;
        put(&h, "Content-Type: %s\r\nContent-Length: %llu\r\n", type,
            (unsigned long long)body_len);
    } else if (nranges > 1) {
        parts = malloc(sizeof(*parts) + (size_t)nranges * sizeof(parts->ranges[0]));
        if (!parts) {
            close(fd);
            return BL_ERR;
        }
        static _Thread_local uint32_t boundary_seq;
        parts->type = type;
        parts->size = size;
        parts->n = nranges;
        parts->next = 0;
        parts->closed = 0;
        snprintf(parts->boundary, sizeof(parts->boundary), "%010u", ++boundary_seq);
        memcpy(parts->ranges, ranges, (size_t)nranges * sizeof(ranges[0]));
        char tmp[512];
        body_len = 0;
        for (int i = 0; i < nranges; i++)
            body_len += (uint64_t)part_header(tmp, sizeof(tmp), parts, &ranges[i]) +
                        ranges[i].last - ranges[i].first + 1;
        body_len += strlen(parts->boundary) + 8; /* "\r\n--B--\r\n" */
        put(&h, "Content-Type: multipart/byteranges; boundary=%s\r\nContent-Length: %llu\r\n",
            parts->boundary, (unsigned long long)body_len);
    } else if (r->gz) {
        put(&h, "Content-Type: %s\r\n", type);
    } else {
        put(&h, "Content-Type: %s\r\nContent-Length: %llu\r\n", type, (unsigned long long)size);
    }
    if (status == 200 || nranges)
        put(&h, "Last-Modified: %s\r\n", lm);
    if (elen && (status == 200 || nranges)) /* compressed: the same bytes no more (nginx) */
        put(&h, "ETag: %s%s\r\n", r->gz ? "W/" : "", etag);
    if (r->gz) {
        put(&h, "Content-Encoding: gzip\r\n");
        if (chunked)
            put(&h, "Transfer-Encoding: chunked\r\n");
    }
    if (gzd != BL_GZIP_NO && loc->conf.gzip_vary)
        put(&h, "Vary: Accept-Encoding\r\n");
    if (nranges == 1)
        put(&h, "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)ranges[0].first,
            (unsigned long long)ranges[0].last, (unsigned long long)size);
    if (gz) {
        put(&h, "Content-Encoding: gzip\r\n");
        if (loc->conf.gzip_vary)
            put(&h, "Vary: Accept-Encoding\r\n");
    }
    if (status == 200 && !nranges && !r->gz)
        put(&h, "Accept-Ranges: bytes\r\n");
    if (head_finish(r, &h, nranges ? 206 : status) != BL_OK) {
        close(fd);
        free(parts);
        bl_log(BL_LOG_ERROR, "the response head of \"%s\" does not fit, client %s", full,
               r->c->ip);
        return bl_local_response(r, 500, NULL, 0, NULL, 0);
    }
    if (head_only || body_len == 0) {
        close(fd);
        free(parts);
        return BL_OK;
    }
    r->file_fd = fd;
    r->parts = parts;
    if (parts) {
        r->file_left = 0; /* bl_static_next() queues the first part's header */
        r->file_off = 0;
    } else {
        r->file_off = nranges ? ranges[0].first : 0;
        r->file_left = body_len;
    }
    return BL_OK;
}

static void file_shrank(struct bl_request *r, ssize_t n);

void bl_static_free(struct bl_request *r)
{
    free(r->parts);
    r->parts = NULL;
    bl_autoindex_free(r->listing);
    r->listing = NULL;
    bl_buf_put(r->file_in);
    r->file_in = NULL;
}

/* bl_static_next() for a compressed file: the next bytes into r->file_in, which the proxy's
 * writer feeds to r->gz (it returned with the input used up). */
static int next_gzip(struct bl_request *r)
{
    if (bl_gzip_done(r->gz))
        return BL_STATIC_DONE;
    if (r->file_left == 0) {
        r->resp_done = 1; /* the compressor writes its trailer */
        return BL_OK;
    }
    struct bl_buf *in = r->file_in;
    size_t want = r->file_left < in->cap ? (size_t)r->file_left : in->cap;
    ssize_t n;
    do
        n = pread(r->file_fd, in->data, want, (off_t)r->file_off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        file_shrank(r, n);
        return BL_ERR;
    }
    in->start = 0;
    in->end = (uint32_t)n;
    r->file_off += (uint64_t)n;
    r->file_left -= (uint64_t)n;
    if (r->file_left == 0)
        r->resp_done = 1;
    return BL_OK;
}

/* The next part's header (or the closing boundary) into r->out. */
static int next_part(struct bl_request *r)
{
    struct bl_static_parts *p = r->parts;
    struct bl_buf *b = r->out;
    int n;
    if (p->next < p->n) {
        const struct bl_range *rg = &p->ranges[p->next++];
        n = part_header(b->data, b->cap, p, rg);
        r->file_off = rg->first;
        r->file_left = rg->last - rg->first + 1;
    } else {
        n = snprintf(b->data, b->cap, "\r\n--%s--\r\n", p->boundary);
        p->closed = 1;
    }
    if (n < 0 || (uint32_t)n >= b->cap)
        return BL_ERR;
    b->start = 0;
    b->end = (uint32_t)n;
    r->out_sent = 0;
    r->body_bytes_sent += (uint64_t)n;
    return BL_OK;
}

static void file_shrank(struct bl_request *r, ssize_t n)
{
    bl_log(BL_LOG_ERROR, "reading a file failed or it shrank while being sent (%s), client %s",
           n < 0 ? strerror(errno) : "end of file", r->c->ip);
    r->keep_alive = 0;
}

int bl_static_next(struct bl_request *r)
{
    if (r->listing) {
        size_t n = bl_autoindex_fill(r->listing, r->out->data, r->out->cap);
        if (!n)
            return BL_STATIC_DONE;
        r->out->start = 0;
        r->out->end = (uint32_t)n;
        r->out_sent = 0;
        r->body_bytes_sent += n;
        return BL_OK;
    }
    if (r->gz)
        return next_gzip(r);
    if (r->file_left == 0) {
        if (!r->parts || r->parts->closed)
            return BL_STATIC_DONE;
        return next_part(r);
    }
    struct bl_client *c = r->c;
    if (r->loc && r->loc->conf.sendfile && !c->tls && !c->h2) {
        size_t want = r->file_left < SENDFILE_CHUNK ? (size_t)r->file_left : SENDFILE_CHUNK;
        off_t off = (off_t)r->file_off;
        if (!c->wready)
            return BL_AGAIN;
        if (bl_loop_send_busy(c->w->loop, &c->io)) {
            /* The head is still staged (io_uring, core/loop.h): the file waits for it; the
             * loop says BL_EV_WRITE once it went. */
            c->wready = 0;
            return BL_AGAIN;
        }
        ssize_t n;
        do
            n = sendfile(c->io.fd, r->file_fd, &off, want);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->wready = 0;
            return BL_AGAIN;
        }
        if (n <= 0) {
            if (n < 0 && errno != EINVAL && errno != ENOSYS) {
                r->keep_alive = 0;
                return BL_ERR; /* the client went: nothing to log about the file */
            }
            file_shrank(r, n);
            return BL_ERR;
        }
        r->file_off += (uint64_t)n;
        r->file_left -= (uint64_t)n;
        r->body_bytes_sent += (uint64_t)n;
        r->bytes_out += (uint64_t)n;
        r->resp_started = 1;
        if ((size_t)n < want) {
            /* a short send: the socket is full (or the file ended, which the next call
             * finds) */
            c->wready = 0;
            return BL_AGAIN;
        }
        return BL_OK;
    }
    /* Through the head buffer, one buffer at a time, paced by the client. */
    size_t want = r->file_left < r->out->cap ? (size_t)r->file_left : r->out->cap;
    ssize_t n;
    do
        n = pread(r->file_fd, r->out->data, want, (off_t)r->file_off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        file_shrank(r, n);
        return BL_ERR;
    }
    r->out->start = 0;
    r->out->end = (uint32_t)n;
    r->out_sent = 0;
    r->file_off += (uint64_t)n;
    r->file_left -= (uint64_t)n;
    r->body_bytes_sent += (uint64_t)n;
    return BL_OK;
}
