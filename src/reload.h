/* In-process reload: SIGHUP and the admin API's `POST /api/reload` read and check the config
 * on the control thread, build a new generation (worker.h) beside the running one and switch
 * the workers to it; a config that fails is refused and the running generation serves on
 * untouched. docs/operations.md, "Reload", says what is kept, what is refused and why.
 *
 * Threads: everything here runs on the control thread (the signal handler's loop, which also
 * runs the admin API and the health checks).
 */
#ifndef BL_RELOAD_H
#define BL_RELOAD_H

#include <stddef.h>
#include <stdint.h>

struct bl_generation;
struct bl_health;
struct bl_loop;
struct bl_worker;

/* Takes charge of the running process: n workers ws started on generation first (which it
 * owns from now on), the control loop, and notify_fd (the eventfd the workers were created
 * with: readable when a worker adopted or released a generation). Starts the active health
 * checks of first. BL_OK, or BL_ERR with err filled (out of memory). */
int bl_reload_init(struct bl_loop *loop, struct bl_worker *ws, int n,
                   struct bl_generation *first, int notify_fd, char *err, size_t errlen);

/* Reloads the config from file (NULL: the file the running config came from). BL_OK: the new
 * generation is built and published, every worker switches to it within one loop turn (its
 * number is bl_reload_current()->number). BL_ERR: refused, err holds why in the words `-t`
 * prints (`unknown directive "x" in FILE:LINE`), or names what needs a restart (a changed
 * `worker_processes` or `user`, a privileged port after privileges were dropped, larger
 * header buffers); the error is also logged at `error` and counted
 * (bl_process_stats.reloads_failed), and the running generation is untouched. */
int bl_reload(const char *file, char *err, size_t errlen);

/* The generation new requests run on: its config and statistics are what the metrics and the
 * API show. Valid until the next bl_reload(). */
const struct bl_generation *bl_reload_current(void);

/* At exit, after bl_workers_join(): stops the health checks and frees every generation. */
void bl_reload_shutdown(void);

#endif
