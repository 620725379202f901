/* `server NAME resolve` with `resolver ADDRESS [valid=TIME]`: one watcher per upstream and NAME
 * that asks the resolvers for A and AAAA records over UDP (core/dns.h), again when the
 * shortest TTL of the answer runs out (or after valid=), and publishes the addresses
 * (conf/discovered.h). A resolver that does not answer within resolver_timeout hands over to
 * the next; when none answers, or the name has no address, the last set stays (one log line
 * per outage) and the question is asked again after a backoff (1 s to 30 s) or 5 s.
 *
 * Threads: the control thread (discover.c owns the watchers).
 */
#ifndef BL_DISCOVER_RESOLVE_H
#define BL_DISCOVER_RESOLVE_H

struct bl_config;
struct bl_loop;
struct bl_resolve;

/* A watcher for `server name resolve` in upstream group, with cfg's resolver settings; asks
 * at once. NULL when out of memory. */
struct bl_resolve *bl_resolve_start(struct bl_loop *loop, const struct bl_config *cfg,
                                    const char *group, const char *name);

/* Whether w is the watcher of (group, name). */
int bl_resolve_same(const struct bl_resolve *w, const char *group, const char *name);

/* Takes cfg's resolver settings (a reload may change them); the next question uses them. */
void bl_resolve_update(struct bl_resolve *w, const struct bl_config *cfg);

/* Stops w and frees it; forgets its addresses when forget is 1. */
void bl_resolve_stop(struct bl_resolve *w, int forget);

#endif
