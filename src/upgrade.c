/* Binary upgrade: start the new binary with our listening sockets, wait for it, hand over. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/status.h"
#include "reload.h"
#include "upgrade.h"
#include "worker.h"

#define ENV_LISTEN "BALLAST_LISTEN_FDS"    /* ADDR=FD,FD;ADDR=FD... */
#define ENV_READY "BALLAST_UPGRADE_FD"     /* write end of the ready pipe */
#define ENV_PID "BALLAST_PID_FD"           /* the locked pid file */

/* How long the new process may take to report ready before it is killed. */
#define READY_TIMEOUT_MS 30000

#define MAX_FDS 1024

extern char **environ;

static struct {
    char exe[PATH_MAX];
    char **argv;
    struct bl_loop *loop;
    struct bl_worker *ws;
    int n;
    int pid_fd;
    pid_t child;                 /* the new process while it starts, 0 otherwise */
    struct bl_io pipe;           /* its ready pipe */
    struct bl_timer timeout;
    char msg[512];               /* what it wrote */
    size_t msglen;
    int handed_over;
    pid_t new_pid;               /* the process that took over */
    int ready_fd;                /* in a new process: the write end, until ready */
    uint64_t start_us;
} U = {.pipe.fd = -1, .pid_fd = -1, .ready_fd = -1};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void bl_upgrade_init(int argc, char **argv)
{
    ssize_t n = readlink("/proc/self/exe", U.exe, sizeof(U.exe) - 1);
    U.exe[n > 0 ? n : 0] = '\0';
    U.argv = calloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; U.argv && i < argc; i++)
        U.argv[i] = argv[i];
}

/* ------------------------------------------------------------ the new process */

static int env_fd(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return -1;
    char *end;
    long fd = strtol(v, &end, 10);
    return *end || fd < 0 || fd > INT_MAX ? -1 : (int)fd;
}

int bl_upgrade_inherit(int *is_child, char *err, size_t errlen)
{
    const char *spec = getenv(ENV_LISTEN);
    *is_child = spec != NULL;
    if (!spec)
        return -1;
    U.ready_fd = env_fd(ENV_READY);
    int pid_fd = env_fd(ENV_PID);
    if (U.ready_fd >= 0)
        fcntl(U.ready_fd, F_SETFD, FD_CLOEXEC);
    if (pid_fd >= 0)
        fcntl(pid_fd, F_SETFD, FD_CLOEXEC);
    int rc = bl_generation_inherit(spec, err, errlen);
    /* A later upgrade sets them anew; nothing this process starts may see these. */
    unsetenv(ENV_LISTEN);
    unsetenv(ENV_READY);
    unsetenv(ENV_PID);
    return rc == BL_OK ? pid_fd : -2;
}

void bl_upgrade_ready(int pid_fd)
{
    if (U.ready_fd < 0)
        return;
    if (pid_fd >= 0) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
        if (ftruncate(pid_fd, 0) != 0 || pwrite(pid_fd, buf, (size_t)n, 0) != n)
            bl_log(BL_LOG_ALERT, "upgrade: writing the pid file failed (%s)", strerror(errno));
    }
    ssize_t w = write(U.ready_fd, "ready\n", 6);
    (void)w;
    close(U.ready_fd);
    U.ready_fd = -1;
}

void bl_upgrade_failed(const char *why)
{
    if (U.ready_fd < 0)
        return;
    ssize_t w = write(U.ready_fd, why, strlen(why));
    (void)w;
    close(U.ready_fd);
    U.ready_fd = -1;
}

/* ------------------------------------------------------------ the old process */

void bl_upgrade_setup(struct bl_loop *loop, struct bl_worker *ws, int n, int pid_fd)
{
    U.loop = loop;
    U.ws = ws;
    U.n = n;
    U.pid_fd = pid_fd;
}

int bl_upgrade_handed_over(void)
{
    return U.handed_over;
}

int bl_upgrade_new_pid(void)
{
    return (int)U.new_pid;
}

static void child_done(void)
{
    if (U.pipe.fd >= 0) {
        bl_loop_del(U.loop, &U.pipe);
        close(U.pipe.fd);
        U.pipe.fd = -1;
    }
    bl_timer_cancel(U.loop, &U.timeout);
    U.child = 0;
}

/* The new process is gone without reporting ready: reap it and say why. */
static void child_failed(const char *why)
{
    int status = 0;
    pid_t r = 0;
    for (int i = 0; i < 1000 && (r = waitpid(U.child, &status, WNOHANG)) == 0; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    char how[64] = "still running";
    if (r == U.child && WIFEXITED(status))
        snprintf(how, sizeof(how), "exit status %d", WEXITSTATUS(status));
    else if (r == U.child && WIFSIGNALED(status))
        snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
    U.msg[U.msglen] = '\0';
    U.msg[strcspn(U.msg, "\n")] = '\0';
    bl_log(BL_LOG_ERROR, "upgrade failed, this process (pid %d) serves on: new process %d (%s) "
           "%s (%s)%s%s", (int)getpid(), (int)U.child, U.exe, why, how, U.msglen ? ": " : "",
           U.msg);
    child_done();
}

static void on_pipe(struct bl_io *io, uint32_t ev)
{
    BL_UNUSED(ev);
    for (;;) {
        ssize_t r = read(io->fd, U.msg + U.msglen, sizeof(U.msg) - 1 - U.msglen);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0 || U.msglen + (size_t)r >= sizeof(U.msg) - 1) {
            if (r > 0)
                U.msglen += (size_t)r;
            child_failed("exited before it was ready");
            return;
        }
        U.msglen += (size_t)r;
        U.msg[U.msglen] = '\0';
        if (strcmp(U.msg, "ready\n") == 0)
            break;
    }
    pid_t child = U.child;
    child_done();
    U.handed_over = 1;
    U.new_pid = child;
    bl_log(BL_LOG_NOTICE, "upgrade: new process %d serves, %.3f ms after the upgrade began; "
           "this one (pid %d) stops accepting and drains", (int)child,
           (double)(mono_us() - U.start_us) / 1000.0, (int)getpid());
    bl_loop_stop(U.loop);
}

static void on_timeout(struct bl_timer *t)
{
    BL_UNUSED(t);
    kill(U.child, SIGKILL);
    child_failed("did not report ready within 30 s and was killed");
}

static int set_env(char **envp, int *k, const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    char *e = malloc(len);
    if (!e)
        return BL_ERR;
    snprintf(e, len, "%s=%s", name, value);
    envp[(*k)++] = e;
    return BL_OK;
}

void bl_upgrade_start(void)
{
    if (U.child) {
        bl_log(BL_LOG_WARN, "upgrade: new process %d is still starting, SIGUSR2 ignored",
               (int)U.child);
        return;
    }
    if (U.handed_over)
        return;
    if (!U.exe[0] || !U.argv) {
        bl_log(BL_LOG_ERROR, "upgrade failed, this process serves on: the path of the running "
               "binary is unknown");
        return;
    }
    U.start_us = mono_us();
    static char spec[65536];
    static int fds[MAX_FDS + 2];
    int nfds = 0;
    if (bl_workers_listen_fds(U.ws, U.n, spec, sizeof(spec), fds, &nfds, MAX_FDS) != BL_OK) {
        bl_log(BL_LOG_ERROR, "upgrade failed, this process serves on: too many listening "
               "sockets to hand over");
        return;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        bl_log(BL_LOG_ERROR, "upgrade failed, this process serves on: pipe2() failed (%s)",
               strerror(errno));
        return;
    }
    /* The write end must block in the child (it writes once); only ours is non-blocking. */
    fcntl(p[1], F_SETFL, 0);
    fds[nfds++] = p[1];
    if (U.pid_fd >= 0)
        fds[nfds++] = U.pid_fd;

    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 4, sizeof(char *));
    char num[16], pidnum[16];
    snprintf(num, sizeof(num), "%d", p[1]);
    snprintf(pidnum, sizeof(pidnum), "%d", U.pid_fd);
    int k = 0;
    int ok = envp != NULL;
    for (size_t i = 0; ok && i < nenv; i++)
        if (strncmp(environ[i], "BALLAST_", 8) != 0)
            envp[k++] = environ[i];
    int first_own = k;
    ok = ok && set_env(envp, &k, ENV_LISTEN, spec) == BL_OK &&
         set_env(envp, &k, ENV_READY, num) == BL_OK &&
         (U.pid_fd < 0 || set_env(envp, &k, ENV_PID, pidnum) == BL_OK);
    pid_t pid = ok ? fork() : -1;
    if (pid == 0) {
        /* Only async-signal-safe calls until exec: this process has threads. */
        for (int i = 0; i < nfds; i++)
            fcntl(fds[i], F_SETFD, 0);
        execve(U.exe, U.argv, envp);
        const char *m = "execve() of the new binary failed";
        ssize_t w = write(p[1], m, strlen(m));
        (void)w;
        _exit(127);
    }
    int e = errno;
    close(p[1]);
    for (int i = first_own; envp && i < k; i++)
        free(envp[i]);
    free(envp);
    if (pid < 0) {
        close(p[0]);
        bl_log(BL_LOG_ERROR, "upgrade failed, this process serves on: %s",
               ok ? strerror(e) : "out of memory");
        return;
    }
    U.child = pid;
    U.msglen = 0;
    U.pipe.fd = p[0];
    U.pipe.handler = on_pipe;
    if (bl_loop_add_level(U.loop, &U.pipe) != BL_OK) {
        kill(pid, SIGKILL);
        child_failed("could not be watched");
        return;
    }
    U.timeout.handler = on_timeout;
    bl_timer_set(U.loop, &U.timeout, bl_clock_update() + READY_TIMEOUT_MS);
    bl_log(BL_LOG_NOTICE, "upgrade: started %s as pid %d with %d listening sockets", U.exe,
           (int)pid, nfds - 1 - (U.pid_fd >= 0));
}
