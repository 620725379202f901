/* Access log lines: formatting through templates, per-worker buffering, flushing, reopening. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/status.h"
#include "http/access_log.h"
#include "http/template.h"

/* Writes all of data[0..len) (O_APPEND: one write() unless the disk is full or a signal cut
 * it short). A failing log must not stop the proxy: what did not go is dropped. */
static void write_all(int fd, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
}

static void flush_one(const struct bl_access_log *log, struct bl_log_buf *b)
{
    if (b->len)
        write_all(log->fd, b->data, b->len);
    b->len = 0;
}

/* Arms the timer for the earliest pending buffer's deadline (none: disarmed). */
static void arm_timer(struct bl_access_logs *al)
{
    const struct bl_config *cfg = al->cfg;
    uint64_t due = UINT64_MAX;
    for (uint32_t i = 0; i < cfg->naccess_logs; i++) {
        const struct bl_log_buf *b = &al->bufs[i];
        if (b->len && b->since_ms + cfg->access_logs[i]->flush_ms < due)
            due = b->since_ms + cfg->access_logs[i]->flush_ms;
    }
    if (due == UINT64_MAX)
        bl_timer_cancel(al->loop, &al->timer);
    else
        bl_timer_set(al->loop, &al->timer, due);
}

void bl_access_log_flush(struct bl_access_logs *al)
{
    const struct bl_config *cfg = al->cfg;
    for (uint32_t i = 0; i < cfg->naccess_logs; i++)
        flush_one(cfg->access_logs[i], &al->bufs[i]);
    if (al->loop)
        bl_timer_cancel(al->loop, &al->timer);
}

static void on_flush_timer(struct bl_timer *t)
{
    struct bl_access_logs *al = (struct bl_access_logs *)((char *)t -
                                                          offsetof(struct bl_access_logs, timer));
    const struct bl_config *cfg = al->cfg;
    for (uint32_t i = 0; i < cfg->naccess_logs; i++) {
        struct bl_log_buf *b = &al->bufs[i];
        if (b->len && b->since_ms + cfg->access_logs[i]->flush_ms <= bl_clock_ms)
            flush_one(cfg->access_logs[i], b);
    }
    arm_timer(al);
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

/* A line too long for the buffer: made in its own allocation and written at once, after what
 * is pending (lines stay in order). */
static void write_long_line(const struct bl_access_log *log, struct bl_log_buf *b,
                            const struct bl_var_ctx *ctx, size_t n)
{
    const struct bl_log_format *f = log->format;
    flush_one(log, b);
    char *line = malloc(n + 1);
    if (!line)
        return;
    bl_template_eval_esc(f->line, ctx, (enum bl_escape)f->escape, line, n);
    line[n] = '\n';
    write_all(log->fd, line, n + 1);
    free(line);
}

void bl_access_log_write(struct bl_access_logs *al, const struct bl_access_log *log,
                         const struct bl_var_ctx *ctx)
{
    const struct bl_log_format *f = log->format;
    struct bl_log_buf *b = &al->bufs[log->index];
    if (!b->data && !(b->data = malloc(log->buffer)))
        return;
    /* The line goes straight into the buffer; when it does not fit (eval says how long it
     * is), the buffer is written out and the line made again. */
    size_t room = log->buffer - b->len;
    size_t n = bl_template_eval_esc(f->line, ctx, (enum bl_escape)f->escape, b->data + b->len,
                                    room);
    if (n + 1 > room) {
        if (n + 1 > log->buffer) {
            write_long_line(log, b, ctx, n);
            arm_timer(al);
            return;
        }
        flush_one(log, b);
        n = bl_template_eval_esc(f->line, ctx, (enum bl_escape)f->escape, b->data, log->buffer);
        if (n + 1 > log->buffer) { /* a value changed between the two calls ($msec) */
            write_long_line(log, b, ctx, n);
            arm_timer(al);
            return;
        }
    }
    if (b->len == 0)
        b->since_ms = bl_clock_ms;
    b->data[b->len + n] = '\n';
    b->len += (uint32_t)n + 1;
    if (!bl_timer_armed(&al->timer))
        bl_timer_set(al->loop, &al->timer, b->since_ms + log->flush_ms);
    else if (b->len == n + 1)
        arm_timer(al); /* a log with a shorter flush= may be due first */
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

void bl_access_log_lines(struct bl_access_logs *al, const struct bl_log_line *lines, uint32_t n,
                         const struct bl_var_ctx *ctx)
{
    for (uint32_t i = 0; i < n; i++) {
        const struct bl_log_line *line = &lines[i];
        if (line->cond) {
            char val[2];
            size_t len = bl_template_eval(line->cond, ctx, val, sizeof(val));
            if (len == 0 || (len == 1 && val[0] == '0'))
                continue;
        }
        bl_access_log_write(al, line->log, ctx);
    }
}
