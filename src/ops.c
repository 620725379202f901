/* Operating the process: -s, log reopening and ownership, systemd notification. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/conf_parse.h"
#include "core/log.h"
#include "core/pid_file.h"
#include "core/sd_notify.h"
#include "core/status.h"
#include "http/access_log.h"
#include "ops.h"

/* Only the `pid` line is read (the last one at the top level, as the compiler keeps the last),
 * nothing is compiled: compiling would open, and as root create, the log files, and a log file
 * newly created by root is one that a reopen after `user` cannot take over. */
int bl_ops_signal_running(const char *conf_file, const char *verb, int signo)
{
    char err[1024];
    struct bl_conf_node *root = bl_conf_read(conf_file, err, sizeof(err));
    if (!root) {
        fprintf(stderr, "ballast: %s\n", err);
        return 1;
    }
    const char *pid_file = NULL;
    for (int i = 0; i < root->nchildren; i++) {
        const struct bl_conf_node *n = &root->children[i];
        if (strcmp(n->name, "pid") == 0 && n->nargs == 1)
            pid_file = strcmp(n->args[0], "off") == 0 ? NULL : n->args[0];
    }
    int rc = 0;
    if (!pid_file) {
        fprintf(stderr, "ballast: -s %s needs the \"pid\" directive in %s: without it the "
                "running process writes no pid file\n", verb, conf_file);
        rc = 1;
    } else if (bl_pid_file_signal(pid_file, signo, err, sizeof(err)) != BL_OK) {
        fprintf(stderr, "ballast: %s\n", err);
        rc = 1;
    }
    bl_conf_free(root);
    return rc;
}

static void chown_log(int fd, const struct bl_config *cfg)
{
    struct stat st;
    if (fd > 2 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid != cfg->uid &&
        fchown(fd, cfg->uid, (gid_t)-1) != 0)
        bl_log(BL_LOG_WARN, "fchown() of a log file to user \"%s\" failed (%s): SIGUSR1 may "
               "not be able to reopen it", cfg->user, strerror(errno));
}

/* nginx's master does the same when it reopens the logs. Regular files only (not /dev/null);
 * the group stays. */
void bl_ops_chown_logs(const struct bl_config *cfg)
{
    if (geteuid() != 0)
        return;
    chown_log(bl_log_fd(), cfg);
    for (uint32_t i = 0; i < cfg->naccess_logs; i++)
        chown_log(cfg->access_logs[i]->fd, cfg);
}

/* The error log first, so that a failing access log is reported in the new error log. */
void bl_ops_reopen_logs(const struct bl_config *cfg)
{
    char err[512];
    bl_log(BL_LOG_NOTICE, "SIGUSR1 received, reopening logs");
    int ok = 1;
    if (bl_log_reopen(err, sizeof(err)) != BL_OK) {
        bl_log(BL_LOG_ALERT, "%s", err);
        ok = 0;
    }
    if (bl_access_logs_reopen(cfg, err, sizeof(err)) != BL_OK) {
        bl_log(BL_LOG_ALERT, "%s", err);
        ok = 0;
    }
    if (ok)
        bl_log(BL_LOG_NOTICE, "logs reopened");
}

void bl_ops_sd_notify(const char *state)
{
    if (bl_sd_notify(state) < 0)
        bl_log(BL_LOG_WARN, "sd_notify(\"%.*s\") to \"%s\" failed (%s)",
               (int)strcspn(state, "\n"), state, getenv("NOTIFY_SOCKET"), strerror(errno));
}

void bl_ops_sd_notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char state[64];
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    bl_ops_sd_notify(state);
}
