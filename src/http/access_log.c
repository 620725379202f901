/* Access log formatting and per-worker buffering. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    char *p = b->data + b->len;
    size_t cap = LOG_LINE_MAX, k = 0;
    k += (size_t)snprintf(p + k, cap - k, "%.*s - - [%s] \"", (int)e->client_ip_len,
                          e->client_ip, log_time());
    const struct bl_h1_message *m = e->msg;
    if (m && m->method) {
        k += put_escaped(p + k, cap - k - 64, m->method, m->method_len);
        p[k++] = ' ';
        k += put_escaped(p + k, cap - k - 600, m->target,
                         m->target_len > 2048 ? 2048 : m->target_len);
        k += (size_t)snprintf(p + k, cap - k, " HTTP/1.%d", m->minor_version);
    }
    k += (size_t)snprintf(p + k, cap - k, "\" %d %llu ", e->status,
                          (unsigned long long)e->body_bytes);
    if (e->upstream)
        k += (size_t)snprintf(p + k, cap - k, "\"%s\" ", e->upstream);
    else
        k += (size_t)snprintf(p + k, cap - k, "\"-\" ");
    if (e->upstream_status)
        k += (size_t)snprintf(p + k, cap - k, "%d ", e->upstream_status);
    else
        k += (size_t)snprintf(p + k, cap - k, "- ");
    k += (size_t)snprintf(p + k, cap - k, "%llu.%03llu ",
                          (unsigned long long)(e->request_time_us / 1000000),
                          (unsigned long long)(e->request_time_us / 1000 % 1000));
    if (e->has_upstream_time)
        k += (size_t)snprintf(p + k, cap - k, "%llu.%03llu\n",
                              (unsigned long long)(e->upstream_time_us / 1000000),
                              (unsigned long long)(e->upstream_time_us / 1000 % 1000));
    else
        k += (size_t)snprintf(p + k, cap - k, "-\n");
    if (k >= cap)
        k = cap - 1, p[k - 1] = '\n';
    b->len += (uint32_t)k;
    if (!bl_timer_armed(&al->timer))
        bl_timer_set(al->loop, &al->timer, bl_clock_ms + 500);
}
