/* `ballast -s`: read the pid file, check that a live ballast owns it, send the signal. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/pid_file.h"
#include "core/status.h"

static const struct {
    const char *verb;
    int sig;
} verbs[] = {
    {"reload", SIGHUP}, {"stop", SIGTERM}, {"quit", SIGQUIT},
    {"reopen", SIGUSR1}, {"upgrade", SIGUSR2},
};

int bl_signal_by_name(const char *verb)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(verb, verbs[i].verb) == 0)
            return verbs[i].sig;
    return 0;
}

/* nginx's rule: the whole file, less trailing line ends and blanks, is a positive number. */
static pid_t parse_pid(const char *s)
{
    if (*s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || errno != 0 || v <= 0 || v > INT_MAX)
        return -1;
    return (pid_t)v;
}

int bl_pid_file_signal(const char *path, int sig, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "open() \"%s\" failed (%d: %s)", path, errno, strerror(errno));
        return BL_ERR;
    }
    char buf[64];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0) {
        snprintf(err, errlen, "read() \"%s\" failed (%d: %s)", path, errno, strerror(errno));
        close(fd);
        return BL_ERR;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                     buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    pid_t pid = parse_pid(buf);
    if (pid < 0) {
        /* Quoted as nginx does, but control bytes would garble the terminal: '?' instead. */
        for (ssize_t i = 0; i < n; i++)
            if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] == 0x7f)
                buf[i] = '?';
        snprintf(err, errlen, "invalid PID number \"%s\" in \"%s\"", buf, path);
        close(fd);
        return BL_ERR;
    }
    /* Taking the lock shared succeeds only when no running ballast holds it. */
    int unowned = flock(fd, LOCK_SH | LOCK_NB) == 0;
    close(fd);
    if (unowned && kill(pid, 0) == 0) {
        snprintf(err, errlen, "pid file \"%s\" is stale: process %d does not hold its lock, "
                 "not signalled", path, (int)pid);
        return BL_ERR;
    }
    if (kill(pid, sig) != 0) {
        snprintf(err, errlen, "kill(%d, %d) failed (%d: %s)", (int)pid, sig, errno,
                 strerror(errno));
        return BL_ERR;
    }
    return BL_OK;
}
