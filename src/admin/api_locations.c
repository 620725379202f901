/* The admin API's location switch (api.h): GET /api/locations[/ID] and PATCH with
 * {"disabled": true | false | null}, which writes the location's disable_live atomic that
 * every worker reads per request (conf.h, bl_location_disabled()). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/api.h"
#include "conf/conf.h"
#include "core/log.h"
#include "http/h1_parser.h"
#include "upstream/adaptive.h"
#include "upstream/queue.h"
#include "upstream/upstream.h"

struct json_t *bl_api_protection_json(const struct bl_upstream_group *g, struct json_t *j)
{
    if (!j)
        return NULL;
    int bad = 0;
    if (g->queue) {
        struct bl_queue *q = &g->gstate->queue;
        bad |= json_object_set_new(j, "queue", json_pack(
            "{s:I, s:I, s:I, s:I, s:I}", "waiting",
            (json_int_t)atomic_load_explicit(&q->waiting, memory_order_relaxed), "size",
            (json_int_t)g->queue->max, "timeout_ms", (json_int_t)g->queue->timeout_ms,
            "timeouts",
            (json_int_t)atomic_load_explicit(&q->timeouts, memory_order_relaxed), "overflows",
            (json_int_t)atomic_load_explicit(&q->overflows, memory_order_relaxed)));
    }
    if (g->adaptive) {
        struct bl_adaptive *a = g->adaptive;
        bad |= json_object_set_new(j, "adaptive_concurrency", json_pack(
            "{s:I, s:I, s:I, s:I}", "limit",
            (json_int_t)atomic_load_explicit(&a->limit, memory_order_relaxed), "min",
            (json_int_t)a->min, "max", (json_int_t)a->max, "shed",
            (json_int_t)atomic_load_explicit(&a->shed, memory_order_relaxed)));
    }
    if (bad) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* "= /x", "^~ /x", "~ re", "/x", "@name": the location as written. */
static void location_name(const struct bl_location *loc, char *buf, size_t len)
{
    const char *mod = loc->exact ? "= " : loc->noregex ? "^~ " : loc->regex ? "~ " : "";
    snprintf(buf, len, "%s%.*s", mod, (int)loc->path_len, loc->path);
}

static json_t *location_json(const struct bl_server_block *srv, const struct bl_location *loc)
{
    char name[1024];
    location_name(loc, name, sizeof(name));
    uint8_t live = atomic_load_explicit(&((struct bl_location *)loc)->disable_live,
                                        memory_order_relaxed);
    return json_pack("{s:I, s:s, s:s, s:s, s:i, s:b, s:b, s:s, s:i}", "id",
                     (json_int_t)loc->index, "server",
                     srv->nnames ? srv->names[0] : "", "location", name, "file",
                     loc->file ? loc->file : "", "line", loc->line, "disabled",
                     bl_location_disabled(loc), "disabled_in_config", (int)loc->disable_conf,
                     "switch",
                     live == BL_DISABLE_ON    ? "api: disabled"
                     : live == BL_DISABLE_OFF ? "api: enabled"
                                              : "config",
                     "code", loc->disable_code ? loc->disable_code : 503);
}

/* The location whose id is the number in key, or the first whose path (as written, without
 * its modifier) is key. */
static struct bl_location *find_location(const struct bl_config *cfg, const char *key,
                                         const struct bl_server_block **srv)
{
    char *end;
    unsigned long id = strtoul(key, &end, 10);
    int by_id = key[0] >= '0' && key[0] <= '9' && *end == '\0';
    for (uint32_t i = 0; i < cfg->nservers; i++) {
        const struct bl_server_block *s = cfg->servers[i];
        for (uint32_t k = 0; k < s->nall; k++) {
            struct bl_location *loc = s->all[k];
            if (by_id ? loc->index == id
                      : strlen(key) == loc->path_len && memcmp(loc->path, key, loc->path_len) == 0) {
                *srv = s;
                return loc;
            }
        }
    }
    return NULL;
}

/* Percent-decodes [p, end) into buf. */
static void decode(const char *p, const char *end, char *buf, size_t len)
{
    size_t n = 0;
    while (p < end && n + 1 < len) {
        if (*p == '%' && end - p >= 3) {
            char hex[3] = {p[1], p[2], 0};
            char *e;
            long v = strtol(hex, &e, 16);
            if (*e == '\0' && v > 0) {
                buf[n++] = (char)v;
                p += 3;
                continue;
            }
        }
        buf[n++] = *p++;
    }
    buf[n] = '\0';
}

void bl_api_locations(const struct bl_api_ctx *ctx, const struct bl_api_request *req,
                      const char *p, const char *end, struct bl_api_response *resp)
{
    int get = req->method == BL_H1_M_GET || req->method == BL_H1_M_HEAD;
    const struct bl_config *cfg = ctx->cfg;
    if (p == end || (p + 1 == end && *p == '/')) {
        if (!get) {
            resp->allow = "GET, HEAD";
            bl_api_error(resp, 405, "method not allowed here (allowed: GET, HEAD)");
            return;
        }
        json_t *arr = json_array();
        for (uint32_t i = 0; arr && i < cfg->nservers; i++)
            for (uint32_t k = 0; arr && k < cfg->servers[i]->nall; k++)
                if (json_array_append_new(arr, location_json(cfg->servers[i],
                                                             cfg->servers[i]->all[k])) != 0) {
                    json_decref(arr);
                    arr = NULL;
                }
        bl_api_reply_json(resp, 200, arr ? json_pack("{s:o}", "locations", arr) : NULL);
        return;
    }
    char key[1024];
    decode(p + 1, end, key, sizeof(key));
    if (!get && req->method != BL_H1_M_PATCH) {
        resp->allow = "GET, HEAD, PATCH";
        bl_api_error(resp, 405, "method not allowed here (allowed: GET, HEAD, PATCH)");
        return;
    }
    const struct bl_server_block *srv = NULL;
    struct bl_location *loc = find_location(cfg, key, &srv);
    if (!loc) {
        char msg[1200];
        snprintf(msg, sizeof(msg), "no location \"%s\" (an id from GET /api/locations, or a "
                 "path as written)", key);
        bl_api_error(resp, get ? 404 : 400, msg);
        return;
    }
    if (get) {
        bl_api_reply_json(resp, 200, location_json(srv, loc));
        return;
    }
    json_error_t je;
    json_t *j = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES,
                           &je);
    json_t *v = j && json_is_object(j) && json_object_size(j) == 1
                    ? json_object_get(j, "disabled")
                    : NULL;
    if (!v || !(json_is_boolean(v) || json_is_null(v))) {
        json_decref(j);
        bl_api_error(resp, 400, "the body must be {\"disabled\": true | false | null} (null: "
                     "as the config says)");
        return;
    }
    uint8_t live = json_is_null(v) ? BL_DISABLE_AS_CONF
                   : json_is_true(v) ? BL_DISABLE_ON
                                     : BL_DISABLE_OFF;
    json_decref(j);
    atomic_store_explicit(&loc->disable_live, live, memory_order_relaxed);
    char name[1024];
    location_name(loc, name, sizeof(name));
    bl_log(BL_LOG_NOTICE, "admin: location \"%s\" (id %u) %s", name, loc->index,
           live == BL_DISABLE_ON ? "disabled" : live == BL_DISABLE_OFF ? "enabled"
                                                                       : "as configured");
    bl_api_reply_json(resp, 200, location_json(srv, loc));
}
