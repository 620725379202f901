/* Picking the server block (by listen address and Host) and the location, in nginx's order
 * (docs/routing.md): "=" exact, else the longest prefix; unless that prefix is "^~", the
 * regexes ("~", "~*") in config order, the first that matches winning over the prefix;
 * nested locations searched the same way inside the one found. Read-only on the compiled
 * config; any thread. */
#ifndef BL_HTTP_ROUTER_H
#define BL_HTTP_ROUTER_H

#include <stddef.h>

struct bl_listen;
struct bl_server_block;
struct bl_location;
struct bl_captures;

/* host: the Host value (may carry a port, any case), or NULL. Never returns NULL. */
const struct bl_server_block *bl_route_server(const struct bl_listen *l, const char *host,
                                              size_t host_len);

/* Returns the location for path, or the server-level pseudo location when none matches. */
const struct bl_location *bl_route_location(const struct bl_server_block *s, const char *path,
                                            size_t path_len);

/* The same; when a regex location matched, its captures go to cap (left alone otherwise).
 * path must stay valid as long as cap is used. Returns NULL when a regex match failed (PCRE2
 * error, e.g. its match limit): nginx answers 500. */
const struct bl_location *bl_route_location_cap(const struct bl_server_block *s,
                                                const char *path, size_t path_len,
                                                struct bl_captures *cap);

/* location @NAME of s (name with its '@'), or NULL. */
const struct bl_location *bl_route_named(const struct bl_server_block *s, const char *name,
                                         size_t len);

#endif
