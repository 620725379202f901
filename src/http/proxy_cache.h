/* The response cache on the request path (docs/cache.md; the store is cache/cache.h): lookup
 * in the content phase, serving hits from the file, the fill that tees the upstream's body to
 * disk, revalidation, stale answers, purge. proxy.c calls the hooks below at a few places;
 * everything runs on the request's worker thread.
 */
#ifndef BL_HTTP_PROXY_CACHE_H
#define BL_HTTP_PROXY_CACHE_H

#include <stdint.h>

struct bl_request;
struct bl_h1_header;

/* $upstream_cache_status (bl_request.cache_status) */
enum bl_cache_status {
    BL_CS_NONE = 0,   /* the cache did not run: not found */
    BL_CS_MISS,
    BL_CS_BYPASS,
    BL_CS_EXPIRED,
    BL_CS_STALE,
    BL_CS_UPDATING,
    BL_CS_REVALIDATED,
    BL_CS_HIT,
};

static inline const char *bl_cache_status_str(int s)
{
    static const char *const names[] = {NULL, "MISS", "BYPASS", "EXPIRED", "STALE",
                                        "UPDATING", "REVALIDATED", "HIT"};
    return s > 0 && s <= BL_CS_HIT ? names[s] : NULL;
}

#define BL_CACHE_PROXY 1   /* bl_proxy_cache_start(): the request goes upstream */

/* The content phase of a proxied location with proxy_cache: BL_OK when the cache took r (a
 * hit is being sent, r waits for a fill, a purge was answered), BL_CACHE_PROXY when r goes
 * upstream as usual (r->cache may then hold a fill). */
int bl_proxy_cache_start(struct bl_request *r);

/* The upstream's final head is parsed in r->resp (before the client head is made): decides
 * whether the response is stored and opens the fill, or answers from the cache instead (a 304
 * to a revalidation, a stale copy for an error status). BL_OK: go on; BL_ERR: r was answered
 * from the cache (the caller returns without touching r). */
int bl_proxy_cache_response(struct bl_request *r);

/* Response body bytes [from, end) of the upstream buffer were accounted: they go to the fill
 * too. Once r->resp_done is set (called then with no bytes where none came), the fill is
 * committed at once, before the client has the last bytes: the entry is seen by every worker
 * and proxy_cache_lock's waiters go on. */
void bl_proxy_cache_body(struct bl_request *r, uint32_t from);

/* The request is about to be answered with status because the upstream failed (status 502,
 * 503 or 504, nothing sent yet): BL_OK when a stale copy was served instead. */
int bl_proxy_cache_error(struct bl_request *r, int status);

/* A cached answer went whole: 1 when r goes on (a background update starts upstream, its
 * response only filling the cache), 0 when r finishes. */
int bl_proxy_cache_answered(struct bl_request *r);

/* The upstream request head: fields the cache adds (a revalidation's If-None-Match and
 * If-Modified-Since) into buf, their length (more than cap: they do not fit). */
size_t bl_proxy_cache_upstream_fields(const struct bl_request *r, char *buf, size_t cap);
/* Whether the client's field h is left out of the upstream request (a fill asks for the whole
 * response: no conditionals, no Range). */
int bl_proxy_cache_drops(const struct bl_request *r, const struct bl_h1_header *h);

/* r ends: a fill still open (its body never came whole: the upstream or the client failed)
 * is dropped, its temp file removed; what r held is freed. */
void bl_proxy_cache_end(struct bl_request *r);

#endif
