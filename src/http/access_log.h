/* Access log lines, buffered per worker and written at most every 500 ms or when 32 KiB are
 * pending, so logging costs no syscall per request.
 *
 * Formats (enum bl_log_format; docs/configuration.md, "Access log format"):
 *   combined  nginx's, field for field (the default):
 *             $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
 *             "$http_referer" "$http_user_agent"
 *   upstream  combined, then "$upstream_addr" $upstream_status $request_time
 *             $upstream_response_time, with "-" where no upstream was involved.
 */
#ifndef BL_HTTP_ACCESS_LOG_H
#define BL_HTTP_ACCESS_LOG_H

#include <stdint.h>

#include "core/loop.h"

struct bl_access_log;
struct bl_config;
struct bl_h1_message;

/* One worker's buffer for one access log. */
struct bl_log_buf {
    char *data;
    uint32_t len;
};

/* One worker's access log buffers and their flush timer. */
struct bl_access_logs {
    struct bl_loop *loop;
    const struct bl_config *cfg;
    struct bl_log_buf *bufs;           /* indexed by position in cfg->access_logs */
    struct bl_timer timer;             /* flush at most 500 ms after a line */
};

/* Sets up al for cfg's logs. BL_OK or BL_ERR (out of memory). Any thread, before use. */
int bl_access_logs_init(struct bl_access_logs *al, struct bl_loop *loop,
                        const struct bl_config *cfg);

/* Frees the buffers (flush first: pending lines are dropped). */
void bl_access_logs_free(struct bl_access_logs *al);

struct bl_access_entry {
    const char *client_ip;
    uint32_t client_ip_len;
    const struct bl_h1_message *msg;   /* method NULL when the request line was not parsed */
    int status;
    uint64_t body_bytes;
    const char *upstream;              /* server name or NULL */
    int upstream_status;
    uint64_t request_time_us;
    uint64_t upstream_time_us;
    int has_upstream_time;
};

/* SIGUSR1 (logrotate): opens each of cfg's access log files again by its path (creating it)
 * and puts it in place of the old one under the same descriptor (dup3), which every worker
 * shares: a line written meanwhile lands in the old file or the new one, none is lost, and
 * lines still buffered in a worker go to the new file at its next flush. A file that cannot be
 * opened keeps its old descriptor; the others are still reopened. Control thread. Returns
 * BL_OK, or BL_ERR with err naming the first failure. */
int bl_access_logs_reopen(const struct bl_config *cfg, char *err, unsigned long errlen);

/* Worker thread. */
void bl_access_log_write(struct bl_access_logs *al, const struct bl_access_log *log,
                         const struct bl_access_entry *e);

/* Writes every pending line of this worker (timer, and at exit). */
void bl_access_log_flush(struct bl_access_logs *al);

#endif
