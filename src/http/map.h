/* The string side of nginx's map lookup: the key of a map (conf.h struct bl_map) that a
 * source value matches. Regex keys and values are the caller's (rewrite.c). Any thread. */
#ifndef BL_HTTP_MAP_H
#define BL_HTTP_MAP_H

#include <stddef.h>

#include "conf/conf.h"

/* The key of m that name[0..len) (already lowercase, a hostnames trailing dot removed)
 * matches: the exact string; else, with hostnames, the longest "*.x" or ".x" wildcard, else
 * the longest "x.*" one (nginx's combined hash order). NULL when none does. */
const struct bl_map_key *bl_map_find(const struct bl_map *m, const char *name, size_t len);

#endif
