/* The admin API's routes without sockets: a compiled config, fake counters, requests in,
 * status and JSON out. PATCH validation is all or nothing; the shared admin atomics are what
 * the balancers read (availability, weight, max_conns); a reload's carry keeps or drops the
 * operator's changes as the file says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/api.h"
#include "conf/conf.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/status.h"
#include "http/h1_parser.h"
#include "upstream/balancer.h"
#include "upstream/slow_start.h"
#include "upstream/upstream.h"

#include "assert_eq.h"

static const char conf_text[] =
    "http {\n"
    "  upstream app {\n"
    "    server 127.0.0.1:9101;\n"
    "    server 127.0.0.1:9102 weight=3 max_conns=5;\n"
    "    server 127.0.0.1:9103 down;\n"
    "  }\n"
    "  upstream keyed { hash $request_uri; server 127.0.0.1:9201; server 127.0.0.1:9202; }\n"
    "  server { listen 127.0.0.1:18080; location / { proxy_pass http://app; } }\n"
    "}\n";

struct fx {
    struct bl_config *cfg;
    struct bl_stats_set *set;
    struct bl_api_response resp;
    json_t *json;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[512] = "";
    f->cfg = bl_conf_load_string(conf_text, "t.conf", err, sizeof(err));
    if (!f->cfg)
        fail_msg("config: %s", err);
    f->set = bl_stats_create(2, f->cfg->nservers, f->cfg->nlocations, f->cfg->nupstream_servers,
                             f->cfg->nlistens);
    assert_non_null(f->set);
    bl_process_stats_start();
    bl_log_level = BL_LOG_WARN; /* the API logs each change at notice */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    bl_strbuf_free(&f->resp.body);
    json_decref(f->json);
    bl_stats_free(f->set);
    bl_conf_release(f->cfg);
    free(f);
    return 0;
}

/* Runs one request; returns the status. The body, when JSON, is parsed into f->json. */
static int call(struct fx *f, int method, const char *path, const char *body)
{
    bl_strbuf_free(&f->resp.body);
    json_decref(f->json);
    f->json = NULL;
    memset(&f->resp, 0, sizeof(f->resp));
    struct bl_api_ctx ctx = {.cfg = f->cfg, .stats = f->set, .now_ms = 1000000};
    struct bl_api_request rq = {.method = method, .path = path, .path_len = strlen(path),
                                .body = body, .body_len = body ? strlen(body) : 0};
    bl_api_handle(&ctx, &rq, &f->resp);
    if (f->resp.content_type && strcmp(f->resp.content_type, "application/json") == 0) {
        json_error_t je;
        f->json = json_loadb(f->resp.body.data, f->resp.body.len, 0, &je);
        if (!f->json)
            fail_msg("not JSON: %.*s", (int)f->resp.body.len, f->resp.body.data);
    }
    return f->resp.status;
}

static const char *error_of(struct fx *f)
{
    json_t *e = json_object_get(f->json, "error");
    assert_non_null(e);
    return json_string_value(e);
}

static struct bl_upstream_server *server(struct fx *f, uint32_t g, uint32_t i)
{
    return &f->cfg->groups[g]->servers[i];
}

static void test_listing(void **state)
{
    struct fx *f = *state;
    bl_stat_add(&f->set->workers[0]->peers[server(f, 0, 1)->id].responses[1], 4);
    bl_stat_add(&f->set->workers[1]->peers[server(f, 0, 1)->id].responses[1], 2);
    bl_stat_observe(&f->set->workers[0]->peers[server(f, 0, 1)->id].header_time, 3000);
    bl_stat_observe(&f->set->workers[1]->peers[server(f, 0, 1)->id].header_time, 5000);
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/upstreams", NULL), 200);
    json_t *ups = json_object_get(f->json, "upstreams");
    ASSERT_EQ(json_array_size(ups), 2);
    json_t *app = json_array_get(ups, 0);
    assert_string_equal(json_string_value(json_object_get(app, "name")), "app");
    ASSERT_EQ(json_integer_value(json_object_get(app, "available")), 2);
    json_t *s1 = json_array_get(json_object_get(app, "servers"), 1);
    ASSERT_EQ(json_integer_value(json_object_get(s1, "id")), 1);
    ASSERT_EQ(json_integer_value(json_object_get(s1, "weight")), 3);
    ASSERT_EQ(json_integer_value(json_object_get(s1, "max_conns")), 5);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(s1, "responses"), "2xx")), 6);
    assert_true(json_real_value(json_object_get(s1, "latency_ms")) == 4.0);
    json_t *s2 = json_array_get(json_object_get(app, "servers"), 2);
    assert_string_equal(json_string_value(json_object_get(s2, "state")), "down");

    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/upstreams/keyed", NULL), 200);
    assert_true(json_is_true(json_object_get(f->json, "weights_fixed")));
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/upstreams/app/servers/2", NULL), 200);
    assert_string_equal(json_string_value(json_object_get(f->json, "server")),
                        "127.0.0.1:9103");
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/upstreams/app/servers", NULL), 200);
    ASSERT_EQ(json_array_size(f->json), 3);
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/upstreams/nope", NULL), 404);
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/upstreams/app/servers/3", NULL), 404);
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/upstreams/a%70p", NULL), 200); /* %70 = 'p' */
    ASSERT_EQ(call(f, BL_H1_M_GET, "/metrics", NULL), 200);
    assert_non_null(strstr(f->resp.body.data, "ballast_upstream_server_weight"));
    ASSERT_EQ(call(f, BL_H1_M_GET, "/status", NULL), 200);
    assert_non_null(f->resp.static_body);
    ASSERT_EQ(call(f, BL_H1_M_DELETE, "/metrics", NULL), 405);
    assert_string_equal(f->resp.allow, "GET, HEAD");
    ASSERT_EQ(call(f, BL_H1_M_GET, "/nothing", NULL), 404);
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/reload", NULL), 405);
}

/* A bad PATCH changes nothing; a good one changes all it names. */
static void test_patch(void **state)
{
    struct fx *f = *state;
    struct bl_upstream_server *s = server(f, 0, 0);
    const char *p = "/api/upstreams/app/servers/0";
    static const char *const bad[] = {
        "", "{", "[]", "{}", "{\"drain\": 1}", "{\"weight\": 0}", "{\"weight\": 1000001}",
        "{\"drain\": true, \"weight\": -3}", "{\"drain\": true, \"x\": 1}",
        "{\"max_conns\": -1}", "{\"drain\": true, \"drain\": true}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (call(f, BL_H1_M_PATCH, p, bad[i]) != 400)
            fail_msg("%s: %d", bad[i], f->resp.status);
        ASSERT_EQ(bl_server_admin(s), 0);
    }
    ASSERT_EQ(call(f, BL_H1_M_PATCH, "/api/upstreams/keyed/servers/0", "{\"weight\": 2}"), 400);
    assert_non_null(strstr(error_of(f), "hash"));
    ASSERT_EQ(call(f, BL_H1_M_PATCH, "/api/upstreams/nope/servers/0", "{\"drain\": true}"), 400);
    ASSERT_EQ(call(f, BL_H1_M_PATCH, "/api/upstreams/app/servers/9", "{\"drain\": true}"), 400);
    assert_false(bl_group_admin_live(f->cfg->groups[0]));

    ASSERT_EQ(call(f, BL_H1_M_PATCH, p, "{\"weight\": 7, \"max_conns\": 2, \"drain\": true}"),
              200);
    assert_string_equal(json_string_value(json_object_get(f->json, "state")), "draining");
    ASSERT_EQ(bl_server_weight(s), 7);
    ASSERT_EQ(bl_server_effective_weight(s, 1000000), 7 * BL_WEIGHT_UNIT);
    ASSERT_EQ(bl_server_max_conns(s), 2);
    assert_true(bl_group_admin_live(f->cfg->groups[0]));
    assert_false(bl_server_available(s, 1000000));
    ASSERT_EQ(call(f, BL_H1_M_PATCH, p, "{\"drain\": false}"), 200);
    assert_true(bl_server_available(s, 1000000));
    atomic_store(&s->state->active, 2);
    assert_false(bl_server_available(s, 1000000)); /* max_conns 2 reached */
    atomic_store(&s->state->active, 0);
    /* Back to the config's values: the overrides go. */
    ASSERT_EQ(call(f, BL_H1_M_PATCH, p, "{\"weight\": 1, \"max_conns\": 0}"), 200);
    ASSERT_EQ(bl_server_admin(s), 0);

    /* down in the config, enabled by the API; then down again. */
    struct bl_upstream_server *d = server(f, 0, 2);
    assert_false(bl_server_available(d, 1000000));
    ASSERT_EQ(call(f, BL_H1_M_PATCH, "/api/upstreams/app/servers/2", "{\"down\": false}"), 200);
    assert_true(bl_server_available(d, 1000000));
    assert_string_equal(json_string_value(json_object_get(f->json, "state")), "up");
    ASSERT_EQ(call(f, BL_H1_M_PATCH, "/api/upstreams/app/servers/2", "{\"down\": true}"), 200);
    assert_false(bl_server_available(d, 1000000));
    assert_true(json_is_true(json_object_get(f->json, "down")));
}

static void test_health(void **state)
{
    struct fx *f = *state;
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/health", NULL), 200);
    ASSERT_EQ(call(f, BL_H1_M_PATCH, "/api/upstreams/keyed/servers/0", "{\"drain\": true}"), 200);
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/health", NULL), 200);
    ASSERT_EQ(call(f, BL_H1_M_PATCH, "/api/upstreams/keyed/servers/1", "{\"down\": true}"), 200);
    ASSERT_EQ(call(f, BL_H1_M_GET, "/api/health", NULL), 503);
    assert_non_null(strstr(json_string_value(json_object_get(f->json, "reason")), "keyed"));
    /* Checks that have not let a default_down server in yet: "checking", not available. */
    struct bl_upstream_server *s = server(f, 0, 0);
    atomic_store(&s->state->check_down, 1);
    ASSERT_EQ(bl_server_view(s, 1000000), BL_SV_CHECKING);
    atomic_store(&s->state->checks_failed, 1);
    ASSERT_EQ(bl_server_view(s, 1000000), BL_SV_UNHEALTHY);
    atomic_store(&s->state->check_down, 0);
    ASSERT_EQ(bl_server_view(s, 1000000), BL_SV_UP);
}

/* A reload that keeps the server's state: the file wins where it changed the server. */
static void test_reload_carry(void **state)
{
    struct fx *f = *state;
    struct bl_upstream_server *s = server(f, 0, 1);
    ASSERT_EQ(call(f, BL_H1_M_PATCH, "/api/upstreams/app/servers/1",
                   "{\"weight\": 9, \"drain\": true, \"max_conns\": 1}"), 200);
    char err[512];
    struct bl_config *next = bl_conf_load_string(
        "http { upstream app { server 127.0.0.1:9101; server 127.0.0.1:9102 weight=3 "
        "max_conns=8; } server { listen 127.0.0.1:18080; location / { proxy_pass "
        "http://app; } } }\n", "t2.conf", err, sizeof(err));
    assert_non_null(next);
    struct bl_upstream_server *n = &next->groups[0]->servers[1];
    struct bl_server_state *fresh = n->state;
    n->state = s->state; /* what the reload does for a kept server */
    bl_server_admin_carry(s, n);
    ASSERT_EQ(bl_server_weight(n), 9);           /* the file kept weight=3: the API's stays */
    ASSERT_EQ(bl_server_max_conns(n), 8);        /* the file changed max_conns: the file's */
    assert_true(bl_server_admin(n) & BL_ADMIN_DRAIN);
    assert_true(bl_group_admin_live(next->groups[0]));
    n->state = fresh;
    bl_conf_release(next);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_carry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
