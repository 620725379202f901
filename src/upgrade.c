/* Binary upgrade: start the new binary with our listening sockets, wait for it, hand over. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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
    char extra_addr[4][80];      /* other listening sockets to hand over (the admin API's) */
    int extra_fd[4];
    int nextra;
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
    U.msg[U.msglen] = '\0';
    U.msg[strcspn(U.msg, "\n")] = '\0';
    bl_log(BL_LOG_ERROR, "upgrade failed, this process (pid %d) serves on: new process %d (%s) "
           "%s%s%s", (int)getpid(), (int)U.child, U.exe, why, U.msglen ? ": " : "", U.msg);
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

/* ------------------------------------------------------------ the launcher
 *
 * Why a launcher: fork() copies every descriptor of the process, client sockets included, and
 * a worker that closes a client socket while the copy exists (until the child's exec) keeps
 * it registered in its epoll set, whose next event would then point at freed memory. So a
 * small process is forked at start, before any thread or client exists, keeping nothing but
 * its end of a socket pair; an upgrade sends it the sockets to hand over (SCM_RIGHTS) and it
 * starts the new binary. It exits when this process goes (end of file on the pair). */

#define MSG_MAX 65536

static int launcher_fd = -1;

/* Replaces "#N" in spec by the launcher's fd for the N-th descriptor received. */
static int spec_resolve(const char *in, const int *fds, int nfds, char *out, size_t len)
{
    size_t at = 0;
    for (const char *p = in; *p; p++) {
        if (*p != '#') {
            if (at + 1 >= len)
                return -1;
            out[at++] = *p;
            continue;
        }
        char *end;
        long k = strtol(p + 1, &end, 10);
        if (end == p + 1 || k < 0 || k >= nfds)
            return -1;
        int w = snprintf(out + at, len - at, "%d", fds[k]);
        if (w < 0 || (size_t)w >= len - at)
            return -1;
        at += (size_t)w;
        p = end - 1;
    }
    out[at] = '\0';
    return 0;
}

/* One request: payload "LISTEN\0READY\0PID\0" with "#N" for received descriptors. Starts the
 * binary (a grandchild, so that nobody has to reap it) and answers with its pid (or -errno). */
static void launch(int sp, const char *msg, size_t n, const int *fds, int nfds)
{
    static char listen_env[MSG_MAX + 64], ready_env[64], pid_env[64];
    const char *parts[3] = {msg, NULL, NULL};
    for (int i = 1; i < 3; i++) {
        const char *z = memchr(parts[i - 1], '\0', n - (size_t)(parts[i - 1] - msg));
        parts[i] = z && z + 1 < msg + n ? z + 1 : "";
    }
    strcpy(listen_env, ENV_LISTEN "=");
    strcpy(ready_env, ENV_READY "=");
    strcpy(pid_env, ENV_PID "=");
    int32_t pid = -EINVAL;
    if (spec_resolve(parts[0], fds, nfds, listen_env + strlen(listen_env),
                     sizeof(listen_env) - strlen(listen_env)) == 0 &&
        spec_resolve(parts[1], fds, nfds, ready_env + strlen(ready_env),
                     sizeof(ready_env) - strlen(ready_env)) == 0 &&
        spec_resolve(parts[2], fds, nfds, pid_env + strlen(pid_env),
                     sizeof(pid_env) - strlen(pid_env)) == 0) {
        size_t nenv = 0;
        while (environ[nenv])
            nenv++;
        char **envp = calloc(nenv + 4, sizeof(char *));
        if (!envp) {
            pid = -ENOMEM;
        } else {
            int k = 0;
            for (size_t i = 0; i < nenv; i++)
                if (strncmp(environ[i], "BALLAST_", 8) != 0)
                    envp[k++] = environ[i];
            envp[k++] = listen_env;
            envp[k++] = ready_env;
            if (parts[2][0])
                envp[k++] = pid_env;
            int p[2];
            if (pipe2(p, O_CLOEXEC) != 0) {
                pid = -errno;
            } else {
                pid_t mid = fork();
                if (mid == 0) {
                    pid_t child = fork();
                    if (child == 0) {
                        execve(U.exe, U.argv, envp);
                        int e = errno;
                        int rfd = -1;
                        /* the fd we wrote ourselves; -1 stays on a bad one, dprintf fails */
                        /* NOLINTNEXTLINE(cert-err34-c) */
                        sscanf(ready_env + strlen(ENV_READY "="), "%d", &rfd);
                        dprintf(rfd, "execve() \"%s\" failed (%d: %s)", U.exe, e, strerror(e));
                        _exit(127);
                    }
                    int32_t c = child > 0 ? child : -errno;
                    ssize_t w = write(p[1], &c, sizeof(c));
                    (void)w;
                    _exit(0);
                }
                close(p[1]);
                if (mid < 0 || read(p[0], &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
                    pid = mid < 0 ? -errno : -EIO;
                close(p[0]);
                if (mid > 0)
                    waitpid(mid, NULL, 0);
            }
            free(envp);
        }
    }
    ssize_t w = write(sp, &pid, sizeof(pid));
    (void)w;
}

static void launcher_main(int sp)
{
    static char msg[MSG_MAX];
    for (;;) {
        int fds[MAX_FDS + 2];
        char cbuf[CMSG_SPACE(sizeof(fds))];
        struct iovec iov = {msg, sizeof(msg)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        ssize_t n = recvmsg(sp, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0);
        int nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                memcpy(fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
            }
        /* The new process inherits them: exec keeps what has no close-on-exec flag. Only its
         * grandchild execs; this process closes its copies right after. */
        for (int i = 0; i < nfds; i++)
            fcntl(fds[i], F_SETFD, 0);
        launch(sp, msg, (size_t)n, fds, nfds);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
    }
}

int bl_upgrade_launcher_start(char *err, size_t errlen)
{
    if (!U.exe[0])
        return BL_OK; /* the binary is unknown: SIGUSR2 will say so */
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
        snprintf(err, errlen, "socketpair() failed (%s)", strerror(errno));
        return BL_ERR;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork() failed (%s)", strerror(errno));
        close(sp[0]);
        close(sp[1]);
        return BL_ERR;
    }
    if (pid == 0) {
        /* Keep stdio (the new process writes there too) and the pair, nothing else. */
        int keep = sp[1];
        if (keep != 3) {
            if (dup3(keep, 3, O_CLOEXEC) < 0)
                _exit(1);
            keep = 3;
        }
        if (close_range(4, ~0U, 0) != 0)
            for (int fd = 4; fd < 65536; fd++)
                close(fd);
        prctl(PR_SET_NAME, "ballast-launch");
        launcher_main(keep);
    }
    close(sp[1]);
    launcher_fd = sp[0];
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
    if (!U.exe[0] || !U.argv || launcher_fd < 0) {
        bl_log(BL_LOG_ERROR, "upgrade failed, this process serves on: the path of the running "
               "binary is unknown");
        return;
    }
    U.start_us = mono_us();
    static char msg[MSG_MAX];
    static int fds[MAX_FDS + 2];
    int nfds = 0;
    if (bl_workers_listen_fds(U.ws, U.n, msg, sizeof(msg) - 64, fds, &nfds, MAX_FDS) != BL_OK ||
        nfds + 2 + U.nextra > MAX_FDS) {
        bl_log(BL_LOG_ERROR, "upgrade failed, this process serves on: too many listening "
               "sockets to hand over");
        return;
    }
    /* Descriptors travel as "#N" (the N-th one sent); the launcher puts its own numbers. */
    static char spec[MSG_MAX];
    size_t at = (size_t)snprintf(spec, sizeof(spec), "%s", msg);
    for (int e = 0; e < U.nextra && at + 64 < sizeof(spec); e++) {
        at += (size_t)snprintf(spec + at, sizeof(spec) - at, "%s%s=#%d", at ? ";" : "",
                               U.extra_addr[e], nfds);
        fds[nfds++] = U.extra_fd[e];
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        bl_log(BL_LOG_ERROR, "upgrade failed, this process serves on: pipe2() failed (%s)",
               strerror(errno));
        return;
    }
    fcntl(p[1], F_SETFL, 0); /* blocking in the new process, which writes once */
    int ready_idx = nfds;
    fds[nfds++] = p[1];
    int pid_idx = -1;
    if (U.pid_fd >= 0) {
        pid_idx = nfds;
        fds[nfds++] = U.pid_fd;
    }
    size_t mlen = (size_t)snprintf(msg, sizeof(msg), "%s%c#%d%c", spec, 0, ready_idx, 0);
    if (pid_idx >= 0)
        mlen += (size_t)snprintf(msg + mlen, sizeof(msg) - mlen, "#%d", pid_idx);
    msg[mlen++] = '\0';

    char cbuf[CMSG_SPACE(sizeof(int) * (MAX_FDS + 2))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {msg, mlen};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    int32_t pid = -EIO;
    if (sendmsg(launcher_fd, &mh, MSG_NOSIGNAL) < 0 ||
        read(launcher_fd, &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
        pid = -errno;
    close(p[1]);
    if (pid <= 0) {
        close(p[0]);
        bl_log(BL_LOG_ERROR, "upgrade failed, this process serves on: starting %s failed (%s)",
               U.exe, strerror(-pid));
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
           (int)pid, ready_idx);
}

void bl_upgrade_extra_socket(const char *addr, int fd)
{
    if (U.nextra < (int)(sizeof(U.extra_fd) / sizeof(U.extra_fd[0])) && fd >= 0) {
        snprintf(U.extra_addr[U.nextra], sizeof(U.extra_addr[0]), "%s", addr);
        U.extra_fd[U.nextra++] = fd;
    }
}
