/* map in stream { }: a map's value for a stream session's variables (nginx's stream map
 * module), so `map $ssl_preread_server_name $backend { ... }` can feed `proxy_pass $backend`.
 * Worker thread. */
#ifndef BL_STREAM_STREAM_MAP_H
#define BL_STREAM_STREAM_MAP_H

#include <stddef.h>

struct bl_map;
struct bl_var_ctx;

/* Works out m's value for ctx into out[0..cap) (a longer value is cut at cap): its source
 * evaluated, lowercased, matched against the strings and wildcards, then the regexes (whose
 * captures the value may use), else the default. Returns out with *len set. */
const char *bl_stream_map_value(const struct bl_map *m, const struct bl_var_ctx *ctx, char *out,
                                size_t cap, size_t *len);

#endif
