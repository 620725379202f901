/* What static files answer conditional and range requests with (RFC 9110 sections 8.8, 13
 * and 14, as nginx's not_modified and range filters read them): entity tags and the Range
 * field (HTTP dates: cache/cache_control.h). Pure functions; any thread. */
#ifndef BL_HTTP_RANGE_H
#define BL_HTTP_RANGE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* One byte range, both ends inclusive, within the representation. */
struct bl_range {
    uint64_t first, last;
};

/* bl_range_parse() */
#define BL_RANGE_IGNORE   0   /* no byte ranges asked (another unit): the whole file, 200 */
#define BL_RANGE_OK       1   /* *n ranges (>= 1) are satisfiable: 206 */
#define BL_RANGE_NONE     2   /* malformed or none satisfiable: 416 with bytes star/size */

/* Reads a Range value (v, len) against a representation of size bytes into out (at most max
 * entries, in the order asked; unsatisfiable specs are dropped as RFC 9110 14.1.2 says).
 * nginx's rules: a spec that does not parse makes the whole field 416; more ranges than max,
 * or ranges whose total exceeds size (overlap used to amplify), answer the whole file
 * (BL_RANGE_IGNORE), so a client cannot make one small file cost many times its size. */
int bl_range_parse(const char *v, size_t len, uint64_t size, struct bl_range *out, int max,
                   int *n);

/* nginx's strong entity tag for a file: "MTIME-SIZE" in hex, quotes included. Writes at most
 * cap bytes (40 is enough) and returns the length. */
size_t bl_etag_make(char *out, size_t cap, int64_t mtime, uint64_t size);

/* Whether the If-Match / If-None-Match list (v, len) names etag (quoted, strong): "*" matches
 * any; weak: W/ tags compare by their opaque part (If-None-Match, RFC 9110 8.8.3.2), else
 * a W/ tag never matches (If-Match, If-Range). */
int bl_etag_match(const char *v, size_t len, const char *etag, size_t elen, int weak);

#endif
