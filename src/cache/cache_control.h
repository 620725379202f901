/* HTTP caching fields as RFC 9111 reads them: Cache-Control directives, HTTP-dates, and the
 * freshness arithmetic (RFC 9111 section 4.2). Pure functions of their arguments: any thread,
 * no allocation. The response cache (cache/cache.h, http/proxy_cache.c) and its unit and fuzz
 * tests use them.
 */
#ifndef BL_CACHE_CACHE_CONTROL_H
#define BL_CACHE_CACHE_CONTROL_H

#include <stddef.h>
#include <stdint.h>

/* bl_cc.flags: the directives seen */
#define BL_CC_NO_STORE         0x0001u
#define BL_CC_NO_CACHE         0x0002u  /* unqualified, or qualified (no-cache="f"): both make
                                         * every use revalidate (the stricter reading) */
#define BL_CC_PRIVATE          0x0004u  /* unqualified or qualified: a shared cache does not
                                         * store it */
#define BL_CC_PUBLIC           0x0008u
#define BL_CC_MUST_REVALIDATE  0x0010u
#define BL_CC_PROXY_REVALIDATE 0x0020u
#define BL_CC_MAX_AGE          0x0040u  /* max_age is valid */
#define BL_CC_S_MAXAGE         0x0080u  /* s_maxage is valid */
#define BL_CC_SWR              0x0100u  /* stale-while-revalidate (RFC 5861) */
#define BL_CC_SIE              0x0200u  /* stale-if-error (RFC 5861) */
#define BL_CC_NO_TRANSFORM     0x0400u
#define BL_CC_ONLY_IF_CACHED   0x0800u  /* requests */
#define BL_CC_INVALID          0x1000u  /* a delta-seconds that did not parse: RFC 9111 4.2.1
                                         * says treat the response as stale */

struct bl_cc {
    uint32_t flags;
    uint32_t max_age, s_maxage, swr, sie; /* seconds (delta-seconds past 2^31 saturate) */
};

/* Adds the directives of one Cache-Control field value v[0..len) to *cc (a message may carry
 * several fields: call once per field on a zeroed cc). Unknown directives are ignored, a
 * repeated one keeps its first value (the conservative choice RFC 9111 4.2.1 allows). */
void bl_cc_parse(struct bl_cc *cc, const char *v, size_t len);

/* An HTTP-date (IMF-fixdate, RFC 850 or asctime form, RFC 9110 5.6.7) as seconds since the
 * epoch, or -1 when it is not one. */
int64_t bl_http_date_parse(const char *s, size_t len);

/* Writes t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes) into out[29]. */
void bl_http_date_format(int64_t t, char out[29]);

/* Heuristically cacheable status codes (RFC 9110 15.1): 200 203 204 206 300 301 308 404 405
 * 410 414 501. */
int bl_cc_heuristic_status(int status);

/* delta-seconds of a field value such as Age: -1 when it is not a number. */
int64_t bl_cc_delta(const char *s, size_t len);

#endif
