/* Run-time discovery of upstream servers: `discover etcd` and `server NAME resolve`.
 *
 * One owner, the control thread, watches every source and publishes through the reload path
 * (conf/discovered.h, reload.h): a change is recorded, a new generation is compiled from the
 * file plus what discovery knows, and every worker switches to it on its next loop turn; the
 * servers that stay keep their state (health, counters, slow start, ejection) because a kept
 * identity (upstream + address) shares its state across generations. Workers do no discovery
 * I/O and take no lock. docs/discovery.md explains the choice.
 *
 * Threads: the control thread only.
 */
#ifndef BL_DISCOVER_DISCOVER_H
#define BL_DISCOVER_DISCOVER_H

struct bl_config;
struct bl_loop;

/* Starts the watchers the serving config (bl_reload_current()) asks for, on loop, and follows
 * every later generation (a reload adds, keeps or stops watchers). */
void bl_discover_start(struct bl_loop *loop);

/* Stops every watcher and forgets what they found (at exit). */
void bl_discover_stop(void);

/* For watchers: what they publish changed; a reload follows shortly (changes within a few ms
 * share one). what: for the log. */
void bl_discover_changed(const char *what);

#endif
