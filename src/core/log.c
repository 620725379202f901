/* The error log. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

int bl_log_level = BL_LOG_NOTICE;
_Thread_local int bl_log_thread_id;
static int log_fd = 2;
static char log_path[4096];   /* "" while the log is stderr */

static const char *const level_names[] = {
    "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg",
};

int bl_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

int bl_log_open(const char *target, int level, char *err, size_t errlen)
{
    int fd = 2;
    if (strcmp(target, "stderr") != 0) {
        fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "open() \"%s\" failed (%s)", target, strerror(errno));
            return -1;
        }
    }
    if (log_fd > 2)
        close(log_fd);
    log_fd = fd;
    bl_log_level = level;
    snprintf(log_path, sizeof(log_path), "%s", fd > 2 ? target : "");
    return 0;
}

int bl_log_reopen(char *err, size_t errlen)
{
    if (!log_path[0])
        return 0;
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "open() \"%s\" failed (%d: %s), still writing to the old file",
                 log_path, errno, strerror(errno));
        return -1;
    }
    /* dup3 swaps the file under the same number atomically: a write() racing with it lands in
     * the old file or the new one, never in a closed descriptor. */
    int rc = dup3(fd, log_fd, O_CLOEXEC);
    int e = errno;
    close(fd);
    if (rc < 0) {
        snprintf(err, errlen, "dup3() for \"%s\" failed (%d: %s)", log_path, e, strerror(e));
        return -1;
    }
    return 0;
}

int bl_log_fd(void)
{
    return log_fd;
}

void bl_log(int level, const char *fmt, ...)
{
    if (level < bl_log_level)
        return;
    char line[2048];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S ", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, "[%s] %d#%d: ", level_names[level],
                  (int)getpid(), bl_log_thread_id);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, (size_t)n);
    (void)w; /* nowhere to report a failing error log */
}
