/* Picking the server block (by listen address and Host) and the location (= exact first, then
 * the longest prefix), as nginx does. Read-only on the compiled config; any thread. */
#ifndef BL_HTTP_ROUTER_H
#define BL_HTTP_ROUTER_H

#include <stddef.h>

struct bl_listen;
struct bl_server_block;
struct bl_location;

/* host: the Host value (may carry a port, any case), or NULL. Never returns NULL. */
const struct bl_server_block *bl_route_server(const struct bl_listen *l, const char *host,
                                              size_t host_len);

/* Returns the location for path, or the server-level pseudo location when none matches. */
const struct bl_location *bl_route_location(const struct bl_server_block *s, const char *path,
                                            size_t path_len);

#endif
