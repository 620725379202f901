/* Server sets found at run time by discovery (src/discover/), kept for the compiler.
 *
 * Discovery never edits a running config: the control thread records what it found here and
 * reloads (reload.h), and the compiler reads it while building the new generation, so the
 * servers that stay keep their state through bl_upstream_carry() exactly as on a reload or an
 * admin API change (docs/discovery.md). Two kinds of entries, both keyed by upstream name:
 *   - name NULL: the servers of `discover etcd` (items are server lines, "IP:PORT weight=2");
 *     they replace the file's server lines of that upstream.
 *   - name NAME: the addresses of `server NAME resolve` (items are IP literals, no port); the
 *     line compiles to one server per address.
 * An entry with no item is never stored: an empty answer keeps the last set (the caller logs).
 *
 * Threads: the control thread only (it both publishes and compiles).
 */
#ifndef BL_CONF_DISCOVERED_H
#define BL_CONF_DISCOVERED_H

#include <stdint.h>

struct bl_discovered {
    char **items;
    uint32_t nitems;
};

/* Replaces the entry (group, name) by copies of items[0..n) (n >= 1). Returns 1 when the entry
 * changed, 0 when it already held exactly these items, BL_ERR when out of memory (the old
 * entry stays). */
int bl_conf_discovered_set(const char *group, const char *name, char *const *items, uint32_t n);

/* The entry (group, name), or NULL. Valid until the next set/drop of that entry. */
const struct bl_discovered *bl_conf_discovered_get(const char *group, const char *name);

/* Forgets an entry (its watcher stopped: the file's lines apply again at the next load). */
void bl_conf_discovered_drop(const char *group, const char *name);

/* Forgets every entry (at exit). */
void bl_conf_discovered_clear(void);

#endif
