/* The admin API's routes: one request in, one response out, no I/O (admin.c does the HTTP).
 *
 *   GET   /metrics                               Prometheus text (metrics.h)
 *   GET   /status                                the status page (status_page.h)
 *   GET   /api/health                            200 or 503 with the reason
 *   GET   /api/upstreams                         every upstream and its servers
 *   GET   /api/upstreams/NAME                    one upstream
 *   GET   /api/upstreams/NAME/servers            its servers
 *   GET   /api/upstreams/NAME/servers/ID         one server
 *   PATCH /api/upstreams/NAME/servers/ID         {"weight": N, "down": B, "drain": B,
 *                                                 "max_conns": N}: all or nothing
 *   POST  /api/upstreams/NAME/servers            {"server": "IP:PORT", "weight": N, ...}:
 *                                                 added through a reload (conf/overlay.h)
 *   DELETE /api/upstreams/NAME/servers/ID        removed through a reload
 *   POST  /api/reload                            bl_reload(); its error as JSON
 *   GET   /api/locations[/ID]                    locations and their `disable` switch
 *   PATCH /api/locations/ID                      {"disabled": B | null} (api_locations.c)
 *   GET   /api/cache[/ZONE]                      cache zones and their counters (api_cache.c)
 *   DELETE /api/cache/ZONE?key=KEY[*]            purge a key, or every key with a prefix
 * Bodies are JSON (Debian libjansson); errors are {"error": "REASON"} with 400 (bad call),
 * 404 (no such route, upstream or server) or 405 (method; with Allow).
 * docs/operations.md, "Runtime API", is the reference.
 *
 * Threads: the control thread (it writes the servers' admin atomics, upstream.h, and calls
 * bl_reload()).
 */
#ifndef BL_ADMIN_API_H
#define BL_ADMIN_API_H

#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"

struct bl_config;
struct bl_stats_set;
struct bl_upstream_server;

struct bl_api_ctx {
    const struct bl_config *cfg;           /* the generation serving now */
    const struct bl_stats_set *stats;      /* its counters */
    uint64_t now_ms;                       /* monotonic (bl_clock_ms) */
};

struct bl_api_request {
    int method;                            /* enum bl_h1_method */
    const char *path;                      /* without the query; not NUL-terminated */
    size_t path_len;
    const char *query;                     /* after '?', not NUL-terminated; NULL: none */
    size_t query_len;
    const char *body;                      /* Content-Length bytes (maybe 0) */
    size_t body_len;
};

struct bl_api_response {
    int status;
    const char *content_type;              /* static */
    const char *allow;                     /* 405: the Allow header's value; else NULL */
    const char *static_body;               /* a static body (the page), or NULL: body below */
    size_t static_len;
    struct bl_strbuf body;                 /* owned by the caller: bl_strbuf_free() */
};

/* Answers req into resp (zeroed by the caller). Always fills a status; out of memory is a 500
 * with a short body. */
void bl_api_handle(const struct bl_api_ctx *ctx, const struct bl_api_request *req,
                   struct bl_api_response *resp);

/* Adds the group's `queue` and `adaptive_concurrency` state to its JSON j (consumed; NULL
 * on failure) (api_locations.c). */
struct bl_upstream_group;
struct json_t;
struct json_t *bl_api_protection_json(const struct bl_upstream_group *g, struct json_t *j);

/* /api/locations, [p, end) the path after it (api_locations.c). */
void bl_api_locations(const struct bl_api_ctx *ctx, const struct bl_api_request *req,
                      const char *p, const char *end, struct bl_api_response *resp);

/* /api/cache, [p, end) the path after it (api_cache.c). */
void bl_api_cache(const struct bl_api_ctx *ctx, const struct bl_api_request *req,
                  const char *p, const char *end, struct bl_api_response *resp);

/* Serves j (a jansson json_t, consumed) with status, indented, fields in order. NULL j: out of
 * memory (a 500). */
void bl_api_reply_json(struct bl_api_response *resp, int status, struct json_t *j);

/* Fills resp with {"error": reason} and status. */
void bl_api_error(struct bl_api_response *resp, int status, const char *reason);

/* What a server is doing, as the API and the metrics name it: the first that holds, in this
 * order. */
enum bl_server_view_state {
    BL_SV_DOWN = 0,     /* marked down: config `down` or the API */
    BL_SV_DRAINING,     /* the API's drain: no new requests */
    BL_SV_CHECKING,     /* active checks configured, no verdict yet */
    BL_SV_UNHEALTHY,    /* failing active checks */
    BL_SV_EJECTED,      /* outlier detection */
    BL_SV_UNAVAIL,      /* max_fails within fail_timeout */
    BL_SV_UP,
    BL_SV_N,
};

extern const char *const bl_server_view_names[BL_SV_N];

/* Pure reads of atomics; any thread. */
enum bl_server_view_state bl_server_view(const struct bl_upstream_server *s, uint64_t now_ms);

/* Whether a server in that state takes new requests (up, or checking before a verdict that
 * has not taken it out). */
int bl_server_view_available(const struct bl_upstream_server *s, uint64_t now_ms);

#endif
