/* The admin API's server additions and removals, kept across reloads.
 *
 * `POST /api/upstreams/NAME/servers` and `DELETE .../servers/ID` change the set of servers of
 * an upstream. A set is part of the compiled config, so the API registers the change here and
 * reloads (reload.h); every config this process reads from a file afterwards (bl_conf_load: a
 * SIGHUP, `POST /api/reload`, the API's own reloads) gets the change applied to its directive
 * tree before it is compiled, as if the file had the line (or lacked it). The file wins as soon
 * as it speaks about that server itself: an added server the file now names, a removed server
 * whose line the file changed or dropped, or an upstream the file no longer has, ends the entry
 * (logged at notice).
 *
 * Servers are matched by address (IP:PORT, as bl_addr_parse reads it without DNS) within the
 * upstream block of the same name. Control thread only; nothing here is read by a worker.
 */
#ifndef BL_CONF_OVERLAY_H
#define BL_CONF_OVERLAY_H

#include <stddef.h>

struct bl_conf_node;

/* Registers `server ARGS...;` (args[0] the address) to be added to upstream group. Returns an
 * entry handle for bl_conf_overlay_undo(), or NULL when out of memory. */
void *bl_conf_overlay_add(const char *group, char *const *args, int nargs);

/* Registers the removal of the server at addr from group. line/nline: the server line's
 * arguments as the file has them now (a later file that changes them ends the removal). A
 * server the overlay added is removed by forgetting that addition instead. *handle receives
 * the entry for bl_conf_overlay_undo() (NULL: nothing was registered). BL_OK or BL_ERR (out
 * of memory). */
int bl_conf_overlay_remove(const char *group, const char *addr, char *const *line, int nline,
                           void **handle);

/* Takes back the registration that returned h (the reload it was for failed). */
void bl_conf_overlay_undo(void *h);

/* Applies every entry to the tree root (a bl_conf_read() result), dropping the entries the file
 * overrides. BL_OK, or BL_ERR when out of memory (the tree is then unchanged where it failed;
 * err filled). */
int bl_conf_overlay_apply(struct bl_conf_node *root, char *err, size_t errlen);

/* Whether the upstream block named group exists in the tree (the API refuses to add to a
 * proxy_pass address, which has no block). */
int bl_conf_overlay_has_upstream(const struct bl_conf_node *root, const char *group);

/* Copies of the arguments of group's server line for addr in root, or NULL (not there). *n
 * receives their count; free with bl_conf_overlay_free_args(). */
char **bl_conf_overlay_line(const struct bl_conf_node *root, const char *group,
                            const char *addr, int *n);
void bl_conf_overlay_free_args(char **args, int n);

/* Drops every entry (at exit). */
void bl_conf_overlay_clear(void);

#endif
