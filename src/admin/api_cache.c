/* The admin API's cache routes (api.h): GET /api/cache[/ZONE] lists the proxy_cache_path
 * zones of the serving configuration with their counters, DELETE /api/cache/ZONE?key=KEY
 * purges a key (KEY* every key that begins with KEY) from the zone's shared index and its
 * files, for every worker at once. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/api.h"
#include "cache/cache.h"
#include "conf/conf.h"
#include "core/log.h"
#include "http/h1_parser.h"

#define KEY_MAX 4096

static json_t *zone_json(const struct bl_cache_path *p)
{
    struct bl_cache_counters c;
    bl_cache_zone_counters(p->zone, &c);
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "name",
                     p->name, "path", p->path, "entries", (json_int_t)c.entries,
                     "max_entries", (json_int_t)c.max_entries, "size", (json_int_t)c.bytes,
                     "max_size", (json_int_t)c.max_size, "inactive_s",
                     (json_int_t)(p->inactive_ms / 1000), "hits", (json_int_t)c.hits,
                     "updating", (json_int_t)c.updating, "expired", (json_int_t)c.expired,
                     "misses", (json_int_t)c.misses, "purged", (json_int_t)c.purged);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The value of parameter name in the query q[0..len), %XX and '+' decoded into out: its
 * length, -1 when absent, -2 when it does not fit or is badly encoded. */
static int query_param(const char *q, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = q, *end = q + len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) >= nl + 1 && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t n = 0;
            for (const char *c = p + nl + 1; c < e; c++) {
                char ch = *c;
                if (ch == '+') {
                    ch = ' ';
                } else if (ch == '%') {
                    int hi = e - c >= 3 ? hexval(c[1]) : -1, lo = hi >= 0 ? hexval(c[2]) : -1;
                    if (hi < 0 || lo < 0)
                        return -2;
                    ch = (char)(hi * 16 + lo);
                    c += 2;
                }
                if (n + 1 >= cap)
                    return -2;
                out[n++] = ch;
            }
            out[n] = 0;
            return (int)n;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

static void route_purge(const struct bl_api_request *req, const struct bl_cache_path *p,
                        struct bl_api_response *resp)
{
    char *key = malloc(KEY_MAX);
    if (!key) {
        bl_api_error(resp, 500, "out of memory");
        return;
    }
    int n = req->query ? query_param(req->query, req->query_len, "key", key, KEY_MAX) : -1;
    if (n < 0) {
        bl_api_error(resp, 400, n == -1 ? "give the key to purge: ?key=KEY (the proxy_cache_key "
                                          "value, URL-encoded), or ?key=PREFIX* for every key "
                                          "that begins with PREFIX"
                                        : "key is badly %-encoded or longer than 4095 bytes");
        free(key);
        return;
    }
    int prefix = n > 0 && key[n - 1] == '*';
    uint32_t len = (uint32_t)(prefix ? n - 1 : n);
    uint32_t removed = bl_cache_purge(p->zone, key, len, prefix);
    bl_log(BL_LOG_NOTICE, "admin: proxy_cache \"%s\": purge of %s\"%.*s\" removed %u stored "
           "responses", p->name, prefix ? "keys beginning with " : "", (int)len, key, removed);
    bl_api_reply_json(resp, 200, json_pack("{s:s, s:s, s:b, s:I}", "zone", p->name, "key", key,
                                           "prefix", prefix, "removed", (json_int_t)removed));
    free(key);
}

void bl_api_cache(const struct bl_api_ctx *ctx, const struct bl_api_request *req,
                  const char *p, const char *end, struct bl_api_response *resp)
{
    const struct bl_cache_paths *cp = &ctx->cfg->caches;
    int get = req->method == BL_H1_M_GET || req->method == BL_H1_M_HEAD;
    if (p < end && *p == '/')
        p++;
    if (p == end) {
        if (!get) {
            bl_api_error(resp, 405, "method not allowed here (allowed: GET, HEAD)");
            resp->allow = "GET, HEAD";
            return;
        }
        json_t *arr = json_array();
        for (uint32_t i = 0; arr && i < cp->npaths; i++)
            if (!cp->paths[i]->zone ||
                json_array_append_new(arr, zone_json(cp->paths[i])) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        bl_api_reply_json(resp, 200, arr ? json_pack("{s:o}", "caches", arr) : NULL);
        return;
    }
    size_t nl = (size_t)(end - p);
    if (memchr(p, '/', nl)) {
        bl_api_error(resp, 404, "no such resource: /api/cache/ZONE");
        return;
    }
    if (!get && req->method != BL_H1_M_DELETE) {
        bl_api_error(resp, 405, "method not allowed here (allowed: GET, HEAD, DELETE)");
        resp->allow = "GET, HEAD, DELETE";
        return;
    }
    const struct bl_cache_path *zp = NULL;
    for (uint32_t i = 0; !zp && i < cp->npaths; i++)
        if (strlen(cp->paths[i]->name) == nl && memcmp(cp->paths[i]->name, p, nl) == 0 &&
            cp->paths[i]->zone)
            zp = cp->paths[i];
    if (!zp) {
        char msg[320];
        snprintf(msg, sizeof(msg), "no cache zone \"%.*s\" (see GET /api/cache)",
                 (int)(nl > 256 ? 256 : nl), p);
        bl_api_error(resp, 404, msg);
        return;
    }
    if (get)
        bl_api_reply_json(resp, 200, zone_json(zp));
    else
        route_purge(req, zp, resp);
}
