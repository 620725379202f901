/* Cluster-wide limit_req: `limit_req_zone ... sync=redis://HOST:PORT [sync_interval=TIME]`.
 *
 * Each ballast keeps its own leaky buckets (zone.h) and the request path never waits on Redis:
 * a worker that admits a request of a synced zone adds one to the key's local count in a
 * sharded table (a short mutex, like the zone's). Every sync_interval one thread of the
 * process (the sync thread, started with the first synced zone) sends each key's count since
 * the last exchange to Redis in one pipeline (INCRBY ballast:limit_req:ZONE:KEY N, PEXPIRE),
 * learns the cluster's running total from the answer, and adds what the other nodes admitted
 * in the meantime to the local bucket (bl_zone_req_add), as if those requests had come here.
 * Every node thus sees every node's traffic within one interval: the cluster admits the rate
 * plus at most what arrives within an interval. Redis unreachable: local limits only
 * (fail-open), one error line per outage, one notice when it is joined again; counts made
 * during the outage are not sent. docs/discovery.md, "Cluster-wide rate limits".
 *
 * Threads: bl_cluster_note() on any worker; get/put on the control thread (config load and
 * free); bl_cluster_shutdown() at exit.
 */
#ifndef BL_POLICY_CLUSTER_H
#define BL_POLICY_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

struct bl_zone;
struct bl_cluster_table;

/* The sync table of zone for a config (kept across reloads when zone, address, interval and
 * rate are the same; a reference is taken). Once bl_cluster_start() was called, starts the
 * sync thread on first use. NULL with err filled (out of memory, no thread). */
struct bl_cluster_table *bl_cluster_table_get(struct bl_zone *zone, const char *host, int port,
                                              uint64_t interval_ms, uint64_t rate, char *err,
                                              size_t errlen);
void bl_cluster_table_put(struct bl_cluster_table *t);

/* The process serves (not `ballast -t`, not a test): the sync thread runs from now on while
 * a synced zone exists. BL_OK, or BL_ERR with err filled (no thread). Control thread. */
int bl_cluster_start(char *err, size_t errlen);

/* One request of key admitted here. Never blocks on the network. */
void bl_cluster_note(struct bl_cluster_table *t, const char *key, size_t len);

/* Stops the sync thread (at exit, after the workers). */
void bl_cluster_shutdown(void);

#endif
