/* Access log formatting and per-worker buffering. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/status.h"
#include "http/access_log.h"
#include "http/h1_parser.h"

#define LOG_BUF_SIZE (32 * 1024)
#define LOG_LINE_MAX 4096

/* The log time, formatted once per second per thread: a thread-local, see docs/internals.md,
 * "Per-thread state". */
static _Thread_local char time_text[40];
static _Thread_local time_t time_sec;

static const char *log_time(void)
{
    time_t now = (time_t)(bl_wall_us() / 1000000);
    if (now != time_sec) {
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(time_text, sizeof(time_text), "%d/%b/%Y:%H:%M:%S %z", &tm);
        time_sec = now;
    }
    return time_text;
}

static void flush_one(const struct bl_access_log *log, struct bl_log_buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(log->fd, b->data + off, b->len - off);
        if (n <= 0)
            break; /* a failing log must not stop the proxy; the lines are dropped */
        off += (size_t)n;
    }
    b->len = 0;
}

void bl_access_log_flush(struct bl_access_logs *al)
{
    const struct bl_config *cfg = al->cfg;
    for (uint32_t i = 0; i < cfg->naccess_logs; i++)
        if (al->bufs[i].len)
            flush_one(cfg->access_logs[i], &al->bufs[i]);
}

static void on_flush_timer(struct bl_timer *t)
{
    bl_access_log_flush((struct bl_access_logs *)((char *)t -
                                                  offsetof(struct bl_access_logs, timer)));
}

int bl_access_logs_init(struct bl_access_logs *al, struct bl_loop *loop,
                        const struct bl_config *cfg)
{
    memset(al, 0, sizeof(*al));
    al->loop = loop;
    al->cfg = cfg;
    al->timer.handler = on_flush_timer;
    al->bufs = calloc(cfg->naccess_logs + 1, sizeof(*al->bufs));
    return al->bufs ? BL_OK : BL_ERR;
}

void bl_access_logs_free(struct bl_access_logs *al)
{
    if (!al->bufs)
        return;
    for (uint32_t i = 0; i < al->cfg->naccess_logs; i++)
        free(al->bufs[i].data);
    free(al->bufs);
    al->bufs = NULL;
}

int bl_access_logs_reopen(const struct bl_config *cfg, char *err, unsigned long errlen)
{
    int rc = BL_OK;
    for (uint32_t i = 0; i < cfg->naccess_logs; i++) {
        const struct bl_access_log *log = cfg->access_logs[i];
        if (log->fd < 0)
            continue;
        int fd = open(log->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        int e = errno;
        if (fd >= 0 && dup3(fd, log->fd, O_CLOEXEC) < 0)
            e = errno;
        else if (fd >= 0)
            e = 0;
        if (fd >= 0)
            close(fd);
        if (e && rc == BL_OK) {
            snprintf(err, errlen, "reopening \"%s\" failed (%d: %s), still writing to the old "
                     "file", log->path, e, strerror(e));
            rc = BL_ERR;
        }
    }
    return rc;
}

static int log_index(const struct bl_config *cfg, const struct bl_access_log *log)
{
    for (uint32_t i = 0; i < cfg->naccess_logs; i++)
        if (cfg->access_logs[i] == log)
            return (int)i;
    return -1;
}

/* Request lines are logged as sent, but control bytes cannot occur (the parser refuses them)
 * and '"' is escaped as nginx does, so a line is always one parseable line. */
static size_t put_escaped(char *out, size_t cap, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)
            k += (size_t)snprintf(out + k, cap - k, "\\x%02X", ch);
        else
            out[k++] = (char)ch;
    }
    return k;
}

/* A line being built: appends never write past cap and never let len pass it, so every field
 * is cut at its budget instead of overrunning the buffer. */
struct line {
    char *p;
    size_t len, cap;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (n > l->cap - l->len)
        n = l->cap - l->len;
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void putf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->p + l->len, l->cap - l->len + 1, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < l->cap - l->len ? (size_t)n : l->cap - l->len;
}

/* Escaped, with at most `budget` bytes of output. */
static void put_esc(struct line *l, const char *s, size_t n, size_t budget)
{
    size_t room = l->cap - l->len;
    l->len += put_escaped(l->p + l->len, budget < room ? budget : room, s, n);
}

/* "VALUE" of the request's field NAME, escaped as nginx escapes it, or "-" (quoted, as in
 * nginx's combined format) when the request has none. */
static void put_field(struct line *l, const struct bl_h1_message *m, const char *name,
                      size_t nlen)
{
    const struct bl_h1_header *h = NULL;
    for (uint32_t i = 0; m && m->method && i < m->nheaders && !h; i++)
        if (m->headers[i].name_len == nlen && strncasecmp(m->headers[i].name, name, nlen) == 0)
            h = &m->headers[i];
    put(l, "\"", 1);
    if (h)
        put_esc(l, h->value, h->value_len, 1024);
    else
        put(l, "-", 1);
    put(l, "\"", 1);
}

static void put_seconds(struct line *l, uint64_t us)
{
    putf(l, "%llu.%03llu", (unsigned long long)(us / 1000000),
         (unsigned long long)(us / 1000 % 1000));
}

void bl_access_log_write(struct bl_access_logs *al, const struct bl_access_log *log,
                         const struct bl_access_entry *e)
{
    int idx = log_index(al->cfg, log);
    if (idx < 0)
        return;
    struct bl_log_buf *b = &al->bufs[idx];
    if (!b->data && !(b->data = malloc(LOG_BUF_SIZE)))
        return;
    if (b->len + LOG_LINE_MAX > LOG_BUF_SIZE)
        flush_one(log, b);
    /* One byte is kept back for the newline, whatever the fields took. */
    struct line l = {b->data + b->len, 0, LOG_LINE_MAX - 1};
    putf(&l, "%.*s - - [%s] \"", (int)e->client_ip_len, e->client_ip, log_time());
    const struct bl_h1_message *m = e->msg;
    if (m && m->method) {
        put_esc(&l, m->method, m->method_len, 64);
        put(&l, " ", 1);
        put_esc(&l, m->target, m->target_len, 2048);
        putf(&l, " HTTP/1.%d", m->minor_version);
    }
    putf(&l, "\" %d %llu ", e->status, (unsigned long long)e->body_bytes);
    put_field(&l, m, "Referer", 7);
    put(&l, " ", 1);
    put_field(&l, m, "User-Agent", 10);
    if (log->format == BL_LOG_FORMAT_UPSTREAM) {
        putf(&l, " \"%s\" ", e->upstream ? e->upstream : "-");
        if (e->upstream_status)
            putf(&l, "%d ", e->upstream_status);
        else
            put(&l, "- ", 2);
        put_seconds(&l, e->request_time_us);
        put(&l, " ", 1);
        if (e->has_upstream_time)
            put_seconds(&l, e->upstream_time_us);
        else
            put(&l, "-", 1);
    }
    l.p[l.len++] = '\n';
    b->len += (uint32_t)l.len;
    if (!bl_timer_armed(&al->timer))
        bl_timer_set(al->loop, &al->timer, bl_clock_ms + 500);
}
