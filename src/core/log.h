/* The error log: one line per message, written with one write() so lines from several threads
 * never interleave. Format (nginx's): "2026/11/22 01:30:00 [error] 1234#2: message". */
#ifndef BL_CORE_LOG_H
#define BL_CORE_LOG_H

#include <stddef.h>

enum bl_log_level {
    BL_LOG_DEBUG = 0,
    BL_LOG_INFO,
    BL_LOG_NOTICE,
    BL_LOG_WARN,
    BL_LOG_ERROR,
    BL_LOG_CRIT,
    BL_LOG_ALERT,
    BL_LOG_EMERG,
};

/* Current threshold; messages below it are dropped. Set at start-up by the control thread. */
extern int bl_log_level;

/* This thread's worker number for the "#N" in log lines (0 = control thread). */
extern _Thread_local int bl_log_thread_id;

/* Parses "debug".."emerg"; returns the level or -1. */
int bl_log_level_parse(const char *name);

/* Opens the error log: "stderr" or a file path (appended). Control thread, at start-up.
 * Returns 0 or -1 with err filled. */
int bl_log_open(const char *target, int level, char *err, size_t errlen);

/* SIGUSR1: opens the error log file again by its path (creating it) and puts it in place of
 * the old one under the same descriptor, so that threads logging meanwhile lose nothing. A
 * no-op for stderr. On failure the old file stays in use. Control thread. Returns 0 or -1 with
 * err filled. */
int bl_log_reopen(char *err, size_t errlen);

/* The error log's descriptor (2 for stderr), e.g. to fchown() it before dropping root. */
int bl_log_fd(void);

void bl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define bl_log_enabled(level) ((level) >= bl_log_level)

#endif
