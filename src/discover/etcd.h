/* `discover etcd URL prefix=P`: one watcher per upstream, over etcd's v3 JSON gateway.
 *
 * Protocol (etcd 3.4+): POST /v3/kv/range {key, range_end} (base64) gives the set and its
 * revision; POST /v3/watch {create_request: {key, range_end, start_revision: rev + 1}} streams
 * the changes (chunked, one JSON object a line). A broken stream resumes from the last
 * revision seen; a compacted revision (compact_revision in the answer) starts over with a
 * range. etcd unreachable: the last set stays, retries back off from 100 ms to 5 s, one log
 * line per outage. Each value is a server line, checked with bl_conf_check_server_line(); a
 * bad one is logged with its key and left out. An empty prefix keeps the last set.
 *
 * Threads: the control thread (discover.c owns the watchers).
 */
#ifndef BL_DISCOVER_ETCD_H
#define BL_DISCOVER_ETCD_H

struct bl_loop;
struct bl_upstream_group;
struct bl_etcd;

/* A watcher for g's `discover` (g->discover_url set), started at once; NULL when out of
 * memory. */
struct bl_etcd *bl_etcd_start(struct bl_loop *loop, const struct bl_upstream_group *g);

/* Whether w watches what g asks for (same upstream, URL and prefix). */
int bl_etcd_same(const struct bl_etcd *w, const struct bl_upstream_group *g);

/* Stops w and frees it; forgets its set when forget is 1. */
void bl_etcd_stop(struct bl_etcd *w, int forget);

#endif
