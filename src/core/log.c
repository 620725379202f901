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
    return 0;
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
