/* Binary upgrade (SIGUSR2, `ballast -s upgrade`): the running process starts the binary at its
 * own path with the same arguments, handing it the listening sockets as inherited descriptors
 * (named in the environment, as nginx's NGINX variable does) and its pid file; the new process
 * loads the config, starts serving on those very sockets and reports ready over a pipe; then
 * the old one stops accepting and drains within shutdown_timeout. If the new process fails
 * to start or to load the config, it exits, the old one logs why and serves on.
 * docs/operations.md, "Binary upgrade".
 *
 * Threads: the control thread, except where a function says otherwise.
 */
#ifndef BL_UPGRADE_H
#define BL_UPGRADE_H

#include <stddef.h>

struct bl_loop;
struct bl_worker;

/* At start, before anything else: remembers the binary's path (/proc/self/exe, resolved now,
 * so that a binary replaced on disk is the one started) and argv. */
void bl_upgrade_init(int argc, char **argv);

/* In a process an upgrade started (the environment says so): takes over the listening sockets
 * (bl_generation_inherit) and returns the inherited pid file descriptor (its lock included),
 * or -1 when there is none; *is_child is set to 1. Not an upgrade: returns -1, *is_child 0.
 * -2 with err filled when the inherited state is malformed. */
int bl_upgrade_inherit(int *is_child, char *err, size_t errlen);

/* The new process serves: writes its pid into the pid file (pid_fd, -1: none) and tells the
 * old process, which then drains. */
void bl_upgrade_ready(int pid_fd);

/* The new process could not start: sends why to the old process (which logs it) before
 * exiting. No-op when this process was not started by an upgrade. */
void bl_upgrade_failed(const char *why);

/* After start: what an upgrade hands over. pid_fd: the locked pid file, or -1. */
void bl_upgrade_setup(struct bl_loop *loop, struct bl_worker *ws, int n, int pid_fd);

/* At start, after privileges are dropped and before any thread or connection exists: forks
 * the small process that will start the new binary (upgrade.c says why). BL_OK, or BL_ERR
 * with err filled. */
int bl_upgrade_launcher_start(char *err, size_t errlen);

/* Another listening socket to hand over (the admin API's), under its address as `listen`
 * prints it. */
void bl_upgrade_extra_socket(const char *addr, int fd);

/* SIGUSR2: starts the new process; the outcome comes later on the loop and is logged. When
 * it reports ready, this process's loop is stopped (the caller then shuts down with
 * bl_workers_shutdown(..., handover = 1)). */
void bl_upgrade_start(void);

/* Whether a new process took over (the pid file is then its, not to be removed at exit). */
int bl_upgrade_handed_over(void);

/* The pid of the process that took over (0: none). */
int bl_upgrade_new_pid(void);

#endif
