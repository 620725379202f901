/* Operating the running process: the `-s` command, log files across rotation and `user`,
 * systemd's readiness notification. docs/operations.md describes what operators see. */
#ifndef BL_OPS_H
#define BL_OPS_H

struct bl_config;

/* `ballast -s VERB`: reads conf_file's `pid` directive and sends signo to the pid in that file
 * (core/pid_file.h). Prints the error, as nginx words it, on stderr. Returns the exit status:
 * 0, or 1 on any error (syntax error in the config, no `pid`, bad or stale pid file, kill()
 * failing). */
int bl_ops_signal_running(const char *conf_file, const char *verb, int signo);

/* With `user`, before privileges are dropped: hands the error log and access log files to
 * cfg->uid, so that SIGUSR1 can reopen them without root. A rotated-away file is recreated by
 * the user, so the log directory must be writable by it, or logrotate's `create` makes the new
 * file for it (docs/operations.md, "Log rotation"). No-op unless running as root. */
void bl_ops_chown_logs(const struct bl_config *cfg);

/* SIGUSR1: reopens the error log and cfg's access logs by path, each in place of its old
 * descriptor; logs "logs reopened" in the new error log, or an alert per file that keeps its
 * old one. Control thread. */
void bl_ops_reopen_logs(const struct bl_config *cfg);

/* sd_notify(state) to $NOTIFY_SOCKET; a failure is a warning in the error log, not a stop. */
void bl_ops_sd_notify(const char *state);

/* Before a reload: "RELOADING=1" with MONOTONIC_USEC, as systemd.service(5) asks (systemd then
 * waits for the next READY=1, which the caller sends whether the reload took or was refused). */
void bl_ops_sd_notify_reloading(void);

#endif
