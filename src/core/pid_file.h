/* Signalling a running ballast through its pid file: `ballast -s VERB`, as nginx's -s.
 *
 * The running process keeps its pid file open and flock()ed (main.c). A reader that can take
 * the lock itself therefore knows that no ballast owns the file: the pid in it is stale and
 * may by now belong to an unrelated process, which is not signalled (nginx would signal it).
 */
#ifndef BL_CORE_PID_FILE_H
#define BL_CORE_PID_FILE_H

#include <stddef.h>

/* The signal a -s verb sends: reload SIGHUP, stop SIGTERM, quit SIGQUIT, reopen SIGUSR1,
 * upgrade SIGUSR2. 0 for any other word. */
int bl_signal_by_name(const char *verb);

/* Reads the pid in PATH and sends it sig. Returns BL_OK, or BL_ERR with err holding one line
 * in nginx's words (no program prefix):
 *   open() "/run/ballast.pid" failed (2: No such file or directory)
 *   invalid PID number "" in "/run/ballast.pid"
 *   kill(1234, 1) failed (3: No such process)
 * and, where nginx has no check, pid file "PATH" is stale: process N does not hold its lock,
 * not signalled. Any thread; no side effect but the signal. */
int bl_pid_file_signal(const char *path, int sig, char *err, size_t errlen);

#endif
