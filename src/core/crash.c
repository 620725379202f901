/* Crash notices in the error log (contract in crash.h). */
#include "core/crash.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
static struct sigaction previous[sizeof(crash_signals) / sizeof(crash_signals[0])];
static long utc_offset;      /* seconds east of UTC at start-up: localtime is not safe here */

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_uint(char *p, unsigned long long v, int width)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < width)
        tmp[n++] = '0';
    while (n)
        *p++ = tmp[--n];
    return p;
}

static const char *signal_name(int signo)
{
    switch (signo) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    default: return "?";
    }
}

int bl_crash_format(char *buf, int signo, long long now, int pid, int thread_id)
{
    /* days to a civil date (Howard Hinnant's algorithm): no library call, no lock */
    long long days = now >= 0 ? now / 86400 : (now - 86399) / 86400;
    long long secs = now - days * 86400;
    days += 719468;
    long long era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long y = (long long)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;

    char *p = buf;
    p = put_uint(p, (unsigned long long)y, 4);
    *p++ = '/';
    p = put_uint(p, m, 2);
    *p++ = '/';
    p = put_uint(p, d, 2);
    *p++ = ' ';
    p = put_uint(p, (unsigned long long)secs / 3600, 2);
    *p++ = ':';
    p = put_uint(p, (unsigned long long)secs / 60 % 60, 2);
    *p++ = ':';
    p = put_uint(p, (unsigned long long)secs % 60, 2);
    p = put_str(p, " [alert] ");
    p = put_uint(p, (unsigned)pid, 0);
    *p++ = '#';
    p = put_uint(p, (unsigned)thread_id, 0);
    p = put_str(p, ": ");
    if (thread_id > 0) {
        p = put_str(p, "worker ");
        p = put_uint(p, (unsigned)thread_id, 0);
    } else {
        p = put_str(p, "the control thread");
    }
    p = put_str(p, " crashed: signal ");
    p = put_uint(p, (unsigned)signo, 0);
    p = put_str(p, " (");
    p = put_str(p, signal_name(signo));
    p = put_str(p, "), exiting\n");
    return (int)(p - buf);
}

static void on_crash(int signo)
{
    int saved_errno = errno;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[192];
    int n = bl_crash_format(line, signo, (long long)ts.tv_sec + utc_offset, (int)getpid(),
                            bl_log_thread_id);
    ssize_t w = write(bl_log_fd(), line, (size_t)n);
    (void)w; /* nowhere to report a failing error log */
    /* The previous disposition (the default, or ASan's handler) takes it from here: the signal
     * raised again is blocked until this handler returns, then delivered to it. */
    for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
        if (crash_signals[i] == signo)
            sigaction(signo, &previous[i], NULL);
    raise(signo);
    errno = saved_errno;
}

void bl_crash_handlers_install(void)
{
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm))
        utc_offset = tm.tm_gmtoff;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_crash;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
        sigaction(crash_signals[i], &sa, &previous[i]);
}
