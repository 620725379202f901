/* ballast: the process. Flags, start-up, signals, graceful stop. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"
#include "conf/conf.h"
#include "conf/overlay.h"
#include "conf/conf_parse.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/crash.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/pid_file.h"
#include "core/stats.h"
#include "core/status.h"
#include "core/version.h"
#include "discover/discover.h"
#include "ops.h"
#include "policy/cluster.h"
#include "reload.h"
#include "upgrade.h"
#include "worker.h"

#define DEFAULT_CONF "/etc/ballast/ballast.conf"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ballast [-h] [-v] [-t | -T] [-s SIGNAL] [-c FILE]\n"
            "\n"
            "Options:\n"
            "  -c FILE    configuration file (default: " DEFAULT_CONF ")\n"
            "  -t         check the configuration and exit\n"
            "  -T         check the configuration, print it with its includes, and exit\n"
            "  -s SIGNAL  signal the running ballast named by the config's pid file:\n"
            "             reload (HUP), stop (TERM), quit (QUIT), reopen (USR1),\n"
            "             upgrade (USR2)\n"
            "  -v         print the version and exit\n"
            "  -h         print this help and exit\n"
            "\n"
            "Signals: TERM, INT or QUIT stop gracefully (in-flight requests finish, up to\n"
            "shutdown_timeout); USR1 reopens the log files; HUP reloads the configuration\n"
            "(docs/operations.md).\n");
}

/* The pid file stays open and flock()ed while the process runs, so that a second instance
 * with the same pid file neither overwrites it nor deletes it at exit; a stale file (no lock
 * held) is simply taken over. Returns the locked fd or -1 with err filled. */
static int pid_file_lock(const char *path, char *err, size_t errlen)
{
    for (int tries = 0; tries < 5; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "open() \"%s\" failed (%d: %s)", path, errno,
                     strerror(errno));
            return -1;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char buf[32] = "";
            ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
            buf[r > 0 ? r : 0] = '\0';
            buf[strcspn(buf, "\n")] = '\0';
            close(fd);
            if (e == EWOULDBLOCK)
                snprintf(err, errlen, "pid file \"%s\" is locked by a running ballast (pid %s)",
                         path, buf[0] ? buf : "?");
            else
                snprintf(err, errlen, "flock() \"%s\" failed (%d: %s)", path, e, strerror(e));
            return -1;
        }
        /* The previous owner may have unlinked the file between our open() and flock(): then
         * we hold a lock on a file nobody sees. Open the path again. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            char buf[32];
            int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
            if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
                snprintf(err, errlen, "write() to \"%s\" failed (%d: %s)", path, errno,
                         strerror(errno));
                close(fd);
                return -1;
            }
            return fd;
        }
        close(fd);
    }
    snprintf(err, errlen, "pid file \"%s\" keeps being replaced", path);
    return -1;
}

/* `user`: after the listeners are bound, the logs and the pid file open, and before any
 * thread starts (so every thread runs as the user), the process gives up root, as nginx's
 * workers do. Without root there is nothing to give up: nginx's warning. */
static int drop_privileges(const struct bl_config *cfg, char *err, size_t errlen)
{
    if (geteuid() != 0) {
        bl_log(BL_LOG_WARN, "the \"user\" directive makes sense only if ballast runs with "
               "super-user privileges, ignored");
        return BL_OK;
    }
    if (setgid(cfg->gid) != 0 || initgroups(cfg->user, cfg->gid) != 0 ||
        setuid(cfg->uid) != 0) {
        snprintf(err, errlen, "switching to user \"%s\" failed (%d: %s)", cfg->user, errno,
                 strerror(errno));
        return BL_ERR;
    }
    return BL_OK;
}

/* Room for every connection a worker may hold: a client, an upstream, and slack. */
static void raise_nofile(const struct bl_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = cfg->rlimit_nofile
                      ? (rlim_t)cfg->rlimit_nofile
                      : (rlim_t)cfg->workers * (rlim_t)cfg->worker_connections * 2 + 64;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* What the limit is now, after worker_rlimit_nofile or the raise (capped by the hard
     * limit): a worker that runs out of descriptors fails accepts and upstream connects. */
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    unsigned long long need = (unsigned long long)cfg->worker_connections *
                              (unsigned long long)cfg->workers * 2;
    if (need > rl.rlim_cur)
        bl_log(BL_LOG_WARN, "%d worker_connections x %d workers x 2 = %llu exceeds the open "
               "file limit %llu (RLIMIT_NOFILE%s): raise worker_rlimit_nofile or the hard limit "
               "(LimitNOFILE= in the unit, ulimit -Hn)", cfg->worker_connections, cfg->workers,
               need, (unsigned long long)rl.rlim_cur,
               cfg->rlimit_nofile ? ", from worker_rlimit_nofile" : ", the hard limit");
}

/* `daemon on`: the parent forks and waits until the child serves (or fails), so that its exit
 * code says whether the start worked and errors still reach the terminal; the child makes its
 * own session. Called once the listeners are open and before any thread starts or the pid
 * file is written (it must hold the child's pid). Returns, in the child, the pipe end that
 * daemon_ready() writes; -1 with err filled on failure. The parent never returns. */
static int daemonize(char *err, size_t errlen)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe2() failed (%d: %s)", errno, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork() failed (%d: %s)", errno, strerror(errno));
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        char c;
        ssize_t r;
        do
            r = read(p[0], &c, 1);
        while (r < 0 && errno == EINTR);
        _exit(r == 1 ? 0 : 1); /* the child said so, or died before it could */
    }
    close(p[0]);
    if (setsid() < 0) {
        snprintf(err, errlen, "setsid() failed (%d: %s)", errno, strerror(errno));
        close(p[1]);
        return -1;
    }
    return p[1];
}

/* The terminal is let go before the upgrade launcher forks (it would keep the parent's pipes
 * open, and a caller reading them would wait forever); what fails from here on is in the error
 * log only. */
static void daemon_stdio(void)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return;
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    close(null);
}

/* The child serves: the parent may exit 0. */
static void daemon_ready(int fd)
{
    if (fd < 0)
        return;
    ssize_t w = write(fd, "", 1);
    (void)w; /* the parent reads EOF and exits 1 if this failed: nothing better to do */
    close(fd);
}

/* The control thread's loop: signals arrive through a signalfd; active health checks run
 * here too, off the workers' loops. */
struct control {
    struct bl_io sig;
    struct bl_loop *loop;
    int stop_signal;
};

static void on_signal(struct bl_io *io, uint32_t ev)
{
    struct control *ctl = (struct control *)io;
    BL_UNUSED(ev);
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            char err[1024];
            bl_log(BL_LOG_NOTICE, "SIGHUP received, reloading");
            bl_ops_sd_notify_reloading();
            bl_reload(NULL, err, sizeof(err)); /* logs its outcome */
            bl_ops_sd_notify("READY=1\nSTATUS=serving"); /* the new generation or the old */
            continue;
        }
        if (si.ssi_signo == SIGUSR1) {
            bl_ops_reopen_logs(bl_reload_current()->cfg); /* the generation serving now */
            continue;
        }
        if (si.ssi_signo == SIGUSR2) {
            bl_log(BL_LOG_NOTICE, "SIGUSR2 received, upgrading the binary");
            bl_upgrade_start(); /* logs its outcome; stops this loop once the new one serves */
            continue;
        }
        /* TERM and INT drain as QUIT does (nginx's TERM is a fast stop): systemd, docker and
         * kubernetes stop with TERM and mean "finish what you are doing"; shutdown_timeout
         * bounds it. docs/operations.md, "Signals and the command line". */
        bl_log(BL_LOG_NOTICE, "signal %u (SIG%s) received, shutting down gracefully",
               si.ssi_signo, sigabbrev_np((int)si.ssi_signo));
        ctl->stop_signal = (int)si.ssi_signo;
        bl_loop_stop(ctl->loop);
    }
}

int main(int argc, char **argv)
{
    const char *conf_file = DEFAULT_CONF;
    int test_only = 0;         /* 1: -t, 2: -T */
    const char *signal_verb = NULL;
    int signo = 0;
    int opt;
    while ((opt = getopt(argc, argv, "c:ts:Tvh")) != -1) {
        switch (opt) {
        case 'c':
            conf_file = optarg;
            break;
        case 't':
            test_only = test_only ? test_only : 1;
            break;
        case 'T':
            test_only = 2;
            break;
        case 's':
            signal_verb = optarg;
            if (!(signo = bl_signal_by_name(optarg))) {
                fprintf(stderr, "ballast: invalid option: \"-s %s\"\n", optarg);
                return 1;
            }
            break;
        case 'v':
            printf("ballast version " BL_VERSION "\n");
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ballast: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 1;
    }

    char err[1024];
    if (signal_verb && !test_only)
        return bl_ops_signal_running(conf_file, signal_verb, signo);
    /* Started by a binary upgrade: the old process's sockets and pid file are ours. */
    int upgraded = 0, inherited_pid_fd = -1;
    if (!test_only) {
        bl_upgrade_init(argc, argv);
        if ((inherited_pid_fd = bl_upgrade_inherit(&upgraded, err, sizeof(err))) == -2) {
            fprintf(stderr, "ballast: %s\n", err);
            bl_upgrade_failed(err);
            return 1;
        }
    }
    struct bl_config *cfg = bl_conf_load(conf_file, err, sizeof(err));
    if (!cfg) {
        bl_upgrade_failed(err);
        fprintf(stderr, "ballast: %s\n", err);
        if (test_only)
            fprintf(stderr, "ballast: configuration file %s test failed\n", conf_file);
        return 1;
    }
    if (test_only) {
        fprintf(stderr, "ballast: the configuration file %s syntax is ok\n", conf_file);
        fprintf(stderr, "ballast: configuration file %s test is successful\n", conf_file);
        int rc = 0;
        if (test_only == 2 && bl_conf_dump(cfg->tree, stdout, err, sizeof(err)) != BL_OK) {
            fprintf(stderr, "ballast: %s\n", err);
            rc = 1;
        }
        bl_conf_release(cfg);
        return rc;
    }
    if (bl_log_open(cfg->error_log, cfg->error_log_level, err, sizeof(err)) != 0) {
        fprintf(stderr, "ballast: %s\n", err);
        bl_conf_release(cfg);
        return 1;
    }
    bl_crash_handlers_install();
    bl_buf_set_size(cfg->max_head + 1024);   /* a whole head fits one buffer, with slack */
    raise_nofile(cfg);

    /* Signals go to this thread only: workers inherit the blocked mask. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    bl_process_stats_start();
    /* Workers tell the control thread when they took or let go of a generation (reload.c). */
    int notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct bl_generation *gen = bl_generation_create(cfg, cfg->workers, NULL, err, sizeof(err));
    struct bl_worker *ws = gen ? bl_workers_create(gen, notify_fd, err, sizeof(err)) : NULL;
    if (!ws) {
        bl_upgrade_failed(err);
        bl_log(BL_LOG_EMERG, "%s", err);
        if (cfg->error_log && strcmp(cfg->error_log, "stderr") != 0)
            fprintf(stderr, "ballast: %s\n", err);
        /* The common failure (a port in use) leaves cfg ours: given back, so that a start
         * refused under ASan reports the refusal, not the config as leaked. */
        if (!gen)
            bl_conf_release(cfg);
        return 1;
    }
    /* After the listeners, so that a port that is taken fails the start in the foreground;
     * before the pid file, which names the child. An upgrade's new binary is started by the
     * old process, already detached. */
    int daemon_fd = -1;
    if (cfg->daemon && !upgraded && (daemon_fd = daemonize(err, sizeof(err))) < 0) {
        bl_log(BL_LOG_EMERG, "%s", err);
        return 1;
    }
    /* After the listeners, so that a second instance on the same address is refused with
     * nginx's bind() message; before anything runs, so that it leaves the pid file alone. */
    int pid_fd = inherited_pid_fd;
    if (cfg->pid_file && pid_fd < 0 &&
        (pid_fd = pid_file_lock(cfg->pid_file, err, sizeof(err))) < 0) {
        bl_upgrade_failed(err);
        bl_log(BL_LOG_EMERG, "%s", err);
        if (cfg->error_log && strcmp(cfg->error_log, "stderr") != 0)
            fprintf(stderr, "ballast: %s\n", err);
        return 1;
    }
    if (cfg->user)
        bl_ops_chown_logs(cfg);
    if (cfg->user && drop_privileges(cfg, err, sizeof(err)) != BL_OK) {
        bl_log(BL_LOG_EMERG, "%s", err);
        if (cfg->error_log && strcmp(cfg->error_log, "stderr") != 0)
            fprintf(stderr, "ballast: %s\n", err);
        return 1;
    }
    if (daemon_fd >= 0)
        daemon_stdio();
    if (bl_upgrade_launcher_start(err, sizeof(err)) != BL_OK) {
        bl_log(BL_LOG_EMERG, "%s", err);
        return 1;
    }
    if (bl_workers_start(ws, cfg->workers, err, sizeof(err)) != BL_OK) {
        bl_log(BL_LOG_EMERG, "%s", err);
        return 1;
    }
    bl_log(BL_LOG_NOTICE, "ballast " BL_VERSION " started: %d workers, %u listening "
           "addresses", cfg->workers, cfg->nlistens);

    struct control ctl = {.sig.handler = on_signal};
    ctl.loop = bl_loop_create(err, sizeof(err));
    ctl.sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (!ctl.loop || ctl.sig.fd < 0 || bl_loop_add_level(ctl.loop, &ctl.sig) != BL_OK) {
        bl_log(BL_LOG_EMERG, "control loop: %s", ctl.loop ? strerror(errno) : err);
        return 1;
    }
    if (bl_reload_init(ctl.loop, ws, cfg->workers, gen, notify_fd, err, sizeof(err)) != BL_OK) {
        bl_log(BL_LOG_EMERG, "health checks: %s", err);
        return 1;
    }
    bl_discover_start(ctl.loop);
    if (bl_cluster_start(err, sizeof(err)) != BL_OK) {
        bl_log(BL_LOG_EMERG, "limit_req sync: %s", err);
        return 1;
    }
    struct bl_admin *admin = NULL;
    if (cfg->admin.enabled && !(admin = bl_admin_start(ctl.loop, cfg, err, sizeof(err)))) {
        bl_log(BL_LOG_EMERG, "admin: %s", err);
        bl_upgrade_failed(err);
        return 1;
    }
    bl_generation_inherit_done(); /* an upgrade's sockets that nothing here listens on */
    if (admin)
        bl_upgrade_extra_socket(cfg->admin.text, bl_admin_listen_fd(admin));
    /* The pid file and the worker count stay the start's (a reload keeps them), but cfg
     * itself goes with its generation after a reload. */
    char *pid_file = cfg->pid_file ? strdup(cfg->pid_file) : NULL;
    int nworkers = cfg->workers;
    cfg = NULL;
    /* The listeners have been listening since bl_workers_create(): the kernel queues
     * connections before a worker polls, so this is the moment a client can connect. */
    bl_upgrade_setup(ctl.loop, ws, nworkers, pid_fd);
    bl_upgrade_ready(pid_fd); /* started by an upgrade: the old process may go */
    bl_ops_sd_notify(upgraded ? "READY=1\nSTATUS=serving (upgraded)" : "READY=1\nSTATUS=serving");
    daemon_ready(daemon_fd);
    bl_loop_run(ctl.loop);
    int handover = bl_upgrade_handed_over();
    if (handover) {
        char st[64];
        snprintf(st, sizeof(st), "MAINPID=%d\nSTATUS=handed over", bl_upgrade_new_pid());
        bl_ops_sd_notify(st);
    } else {
        bl_ops_sd_notify("STOPPING=1");
    }
    bl_admin_stop(admin);
    bl_workers_shutdown(ws, nworkers, handover);
    bl_workers_join(ws, nworkers);
    bl_log(BL_LOG_NOTICE, "exit");
    if (pid_fd >= 0) {
        if (pid_file && !handover)
            unlink(pid_file); /* while still holding the lock (after an upgrade: the new
                               * process's, which holds it too) */
        close(pid_fd);
    }
    free(pid_file);
    bl_discover_stop();
    bl_cluster_shutdown(); /* the Redis sync thread, before the zones go with the configs */
    bl_reload_shutdown(); /* frees cfg with its generation */
    bl_conf_overlay_clear();
    bl_loop_destroy(ctl.loop);
    close(ctl.sig.fd);
    close(notify_fd);
    bl_buf_drain();
    return 0;
}
