/* Access logs: one line per request in a log_format (http/template.h evaluates it), buffered
 * per worker and written with one write() per flush: when a log's buffer would overflow
 * (buffer=, 32 KiB by default), when its oldest line has waited flush= (500 ms by default),
 * and when the worker stops. Files are opened with O_APPEND, so lines from several workers
 * never interleave mid-line.
 *
 * The formats and files belong to the config (conf/conf.h: struct bl_log_format,
 * struct bl_access_log); a worker keeps only its buffers, indexed by bl_access_log.index.
 */
#ifndef BL_HTTP_ACCESS_LOG_H
#define BL_HTTP_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"

struct bl_access_log;
struct bl_config;
struct bl_var_ctx;

/* One worker's buffer for one access log. */
struct bl_log_buf {
    char *data;
    uint32_t len;
    uint64_t since_ms;                 /* when its oldest pending line was added */
};

/* One worker's access log buffers and their flush timer. */
struct bl_access_logs {
    struct bl_loop *loop;
    const struct bl_config *cfg;
    struct bl_log_buf *bufs;           /* indexed by bl_access_log.index */
    struct bl_timer timer;             /* the earliest flush due */
};

/* Sets up al for cfg's logs. BL_OK or BL_ERR (out of memory). Any thread, before use. */
int bl_access_logs_init(struct bl_access_logs *al, struct bl_loop *loop,
                        const struct bl_config *cfg);

/* Frees the buffers (flush first: pending lines are dropped). */
void bl_access_logs_free(struct bl_access_logs *al);

/* Adds the line for the request ctx describes (ctx->resp set) to log's buffer. A line longer
 * than the buffer is written on its own. Never blocks beyond one write() of a regular file;
 * a failing file drops lines rather than stop the proxy. Worker thread. */
void bl_access_log_write(struct bl_access_logs *al, const struct bl_access_log *log,
                         const struct bl_var_ctx *ctx);

/* Writes ctx's line to every log of lines[0..n) whose if= condition holds (not "" or "0",
 * as nginx): the access_log lines of an http location or a stream server. */
struct bl_log_line;
void bl_access_log_lines(struct bl_access_logs *al, const struct bl_log_line *lines, uint32_t n,
                         const struct bl_var_ctx *ctx);

/* Writes every pending line of this worker (the timer, and at exit). Worker thread. */
void bl_access_log_flush(struct bl_access_logs *al);

/* SIGUSR1 (logrotate): opens each of cfg's access log files again by its path (creating it)
 * and puts it in place of the old one under the same descriptor (dup3), which every worker
 * shares: a line written meanwhile lands in the old file or the new one, none is lost, and
 * lines still buffered in a worker go to the new file at its next flush. A file that cannot be
 * opened keeps its old descriptor; the others are still reopened. Control thread. Returns
 * BL_OK, or BL_ERR with err naming the first failure. */
int bl_access_logs_reopen(const struct bl_config *cfg, char *err, unsigned long errlen);

#endif
