/* Metrics: the text exposition rendered from fake worker blocks — sums over workers, label
 * escaping, histogram buckets (cumulative, +Inf, _sum, _count), gauges, server states, process
 * registry, and the format's structure (HELP and TYPE before each family, families whole). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/metrics.h"
#include "conf/conf.h"
#include "core/stats.h"
#include "core/status.h"
#include "core/strbuf.h"

#include "assert_eq.h"

static const char conf_text[] =
    "events { }\n"
    "http {\n"
    "  access_log off;\n"
    "  upstream backend {\n"
    "    server 127.0.0.1:9101;\n"
    "    server 127.0.0.1:9102 weight=3;\n"
    "    server 127.0.0.1:9103 down;\n"
    "    check interval=1000 rise=1 fall=1 timeout=500 type=tcp;\n"
    "  }\n"
    "  upstream other {\n"
    "    server 127.0.0.1:9201;\n"
    "    outlier consecutive_5xx=3;\n"
    "  }\n"
    "  server {\n"
    "    listen 127.0.0.1:18080;\n"
    "    server_name example.com;\n"
    "    location / { proxy_pass http://backend; }\n"
    "    location = \"/q\\\"uo\\\\te\" { return 200 ok; }\n"
    "  }\n"
    "  server {\n"
    "    listen 127.0.0.1:18081;\n"
    "    server_name example.com;\n"
    "    location /o/ { proxy_pass http://other; }\n"
    "  }\n"
    "}\n";

struct fx {
    struct bl_config *cfg;
    struct bl_stats_set *set;
    struct bl_strbuf out;
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
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    bl_strbuf_free(&f->out);
    bl_stats_free(f->set);
    bl_conf_release(f->cfg);
    free(f);
    return 0;
}

static const char *render(struct fx *f)
{
    bl_strbuf_free(&f->out);
    struct bl_metrics_source src = {.cfg = f->cfg, .stats = f->set, .version = "9.9\"x",
                                    .now_ms = 1000000};
    ASSERT_EQ(bl_metrics_render(&f->out, &src), BL_OK);
    assert_non_null(f->out.data);
    return f->out.data;
}

/* The line of text that starts with prefix followed by a space; fails when absent. */
static void expect_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return;
    fail_msg("line not found: %s\n--- text ---\n%s", line, text);
}

static void expect_no_prefix(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, n) == 0)
            fail_msg("unexpected line starting %s", prefix);
}

static uint32_t peer_id(const struct bl_config *cfg, const char *group, uint32_t k)
{
    for (uint32_t g = 0; g < cfg->ngroups; g++)
        if (strcmp(cfg->groups[g]->name, group) == 0)
            return cfg->groups[g]->servers[k].id;
    fail_msg("no group %s", group);
    return 0;
}

static void test_escape(void **state)
{
    (void)state;
    struct bl_strbuf b = {0};
    bl_metrics_escape(&b, "a\"b\\c\nd");
    assert_string_equal(b.data, "a\\\"b\\\\c\\nd");
    bl_strbuf_free(&b);
    bl_metrics_escape(&b, "plain");
    assert_string_equal(b.data, "plain");
    bl_strbuf_free(&b);
}

/* Counters written into two workers' blocks come out summed, per server block and class. */
static void test_zone_sums(void **state)
{
    struct fx *f = *state;
    struct bl_stats_worker *w0 = f->set->workers[0], *w1 = f->set->workers[1];
    bl_stat_add(&w0->servers[0].requests[bl_stats_class(200)], 4);
    bl_stat_add(&w1->servers[0].requests[bl_stats_class(204)], 3);
    bl_stat_add(&w1->servers[0].requests[bl_stats_class(404)], 3);
    bl_stat_add(&w0->servers[0].requests[bl_stats_class(502)], 2);
    bl_stat_add(&w0->servers[0].bytes_in, 100);
    bl_stat_add(&w1->servers[0].bytes_in, 23);
    bl_stat_add(&w1->servers[0].bytes_out, 7);
    bl_stat_add(&w1->servers[1].requests[bl_stats_class(301)], 1);
    const char *t = render(f);
    expect_line(t, "ballast_http_server_requests_total{server=\"example.com\",code=\"1xx\"} 0");
    expect_line(t, "ballast_http_server_requests_total{server=\"example.com\",code=\"2xx\"} 7");
    expect_line(t, "ballast_http_server_requests_total{server=\"example.com\",code=\"4xx\"} 3");
    expect_line(t, "ballast_http_server_requests_total{server=\"example.com\",code=\"5xx\"} 2");
    /* The second block with the same name is told apart. */
    expect_line(t, "ballast_http_server_requests_total{server=\"example.com#2\",code=\"3xx\"} 1");
    expect_line(t, "ballast_http_server_received_bytes_total{server=\"example.com\"} 123");
    expect_line(t, "ballast_http_server_sent_bytes_total{server=\"example.com\"} 7");
    /* No status outside 100..599 was seen: no "other" series. */
    expect_no_prefix(t, "ballast_http_server_requests_total{server=\"example.com\",code=\"other\"}");
    bl_stat_add(&w0->servers[0].requests[bl_stats_class(700)], 1);
    t = render(f);
    expect_line(t, "ballast_http_server_requests_total{server=\"example.com\",code=\"other\"} 1");
}

/* Location labels: "= " for exact ones, quote and backslash escaped. */
static void test_location_labels(void **state)
{
    struct fx *f = *state;
    const struct bl_server_block *s = f->cfg->servers[0];
    assert_int_equal(s->nexact, 1);
    bl_stat_add(&f->set->workers[1]->locations[s->exact[0]->index].requests[1], 5);
    bl_stat_add(&f->set->workers[0]->locations[s->prefix[0]->index].bytes_out, 9);
    const char *t = render(f);
    expect_line(t, "ballast_http_location_requests_total{server=\"example.com\","
                   "location=\"= /q\\\"uo\\\\te\",code=\"2xx\"} 5");
    expect_line(t, "ballast_http_location_sent_bytes_total{server=\"example.com\","
                   "location=\"/\"} 9");
    expect_line(t, "ballast_http_location_requests_total{server=\"example.com#2\","
                   "location=\"/o/\",code=\"2xx\"} 0");
}

/* Histogram: buckets cumulative over the bounds, +Inf equals _count, _sum in seconds. */
static void test_histogram(void **state)
{
    struct fx *f = *state;
    uint32_t id = peer_id(f->cfg, "backend", 1);
    struct bl_stats_peer *p0 = &f->set->workers[0]->peers[id];
    struct bl_stats_peer *p1 = &f->set->workers[1]->peers[id];
    bl_stat_observe(&p0->header_time, 3000);     /* 0.003 s: le 0.005 */
    bl_stat_observe(&p1->header_time, 5000);     /* on the bound: le 0.005 */
    bl_stat_observe(&p1->header_time, 7000);     /* le 0.01 */
    bl_stat_observe(&p0->header_time, 300000);   /* le 0.5 */
    bl_stat_observe(&p0->header_time, 20000000); /* 20 s: +Inf only */
    const char *t = render(f);
    const char *lab = "upstream=\"backend\",server=\"127.0.0.1:9102\"";
    static const struct {
        const char *le;
        int n;
    } want[] = {{"0.005", 2}, {"0.01", 3}, {"0.025", 3}, {"0.05", 3}, {"0.1", 3}, {"0.25", 3},
                {"0.5", 4},   {"1", 4},    {"2.5", 4},   {"5", 4},    {"10", 4},  {"+Inf", 5}};
    char line[256];
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(line, sizeof(line), "ballast_upstream_server_response_seconds_bucket{%s,"
                 "le=\"%s\"} %d", lab, want[i].le, want[i].n);
        expect_line(t, line);
    }
    snprintf(line, sizeof(line), "ballast_upstream_server_response_seconds_sum{%s} 20.315000",
             lab);
    expect_line(t, line);
    snprintf(line, sizeof(line), "ballast_upstream_server_response_seconds_count{%s} 5", lab);
    expect_line(t, line);
    expect_line(t, "# TYPE ballast_upstream_server_response_seconds histogram");
    /* Another server's histogram is empty but complete. */
    expect_line(t, "ballast_upstream_server_response_seconds_bucket{upstream=\"backend\","
                   "server=\"127.0.0.1:9101\",le=\"+Inf\"} 0");
    expect_line(t, "ballast_upstream_server_response_seconds_count{upstream=\"backend\","
                   "server=\"127.0.0.1:9101\"} 0");
}

/* Peer counters, gauges summed as signed numbers, shared state. */
static void test_peers(void **state)
{
    struct fx *f = *state;
    uint32_t a = peer_id(f->cfg, "backend", 0), o = peer_id(f->cfg, "other", 0);
    struct bl_stats_worker *w0 = f->set->workers[0], *w1 = f->set->workers[1];
    bl_stat_add(&w0->peers[a].failures[BL_SF_CONNECT_ERROR], 2);
    bl_stat_add(&w1->peers[a].failures[BL_SF_TIMEOUT], 1);
    bl_stat_add(&w1->peers[a].retries, 4);
    bl_stat_add(&w0->peers[a].retries_refused, 1);
    bl_stat_add(&w0->peers[a].responses[bl_stats_class(503)], 6);
    /* Connections: opened on one worker, and a worker whose idle count went up and down. */
    bl_stat_add(&w0->peers[a].conns, 5);
    bl_stat_add(&w0->peers[a].conns_idle, 3);
    bl_stat_sub(&w0->peers[a].conns_idle, 1);
    bl_stat_add(&w1->peers[a].conns, 1);
    atomic_store(&f->cfg->groups[0]->servers[0].state->active, 3);
    atomic_store(&f->cfg->groups[0]->servers[0].state->checks_ok, 8);
    atomic_store(&f->cfg->groups[0]->servers[0].state->checks_failed, 2);
    atomic_store(&f->cfg->groups[0]->servers[0].state->check_down, 1);
    atomic_store(&f->cfg->groups[1]->servers[0].state->ejections_total, 2);
    atomic_store(&f->cfg->groups[1]->servers[0].state->down_until_ms, 2000000);
    const char *t = render(f);
    const char *l = "upstream=\"backend\",server=\"127.0.0.1:9101\"";
    char line[256];
#define EXPECT(fmt) (snprintf(line, sizeof(line), fmt, l), expect_line(t, line))
    EXPECT("ballast_upstream_server_failures_total{%s,reason=\"connect_error\"} 2");
    EXPECT("ballast_upstream_server_failures_total{%s,reason=\"timeout\"} 1");
    EXPECT("ballast_upstream_server_failures_total{%s,reason=\"invalid_response\"} 0");
    EXPECT("ballast_upstream_server_retries_total{%s} 4");
    EXPECT("ballast_upstream_server_retry_budget_refusals_total{%s} 1");
    EXPECT("ballast_upstream_server_responses_total{%s,code=\"5xx\"} 6");
    EXPECT("ballast_upstream_server_connections{%s,state=\"active\"} 4");
    EXPECT("ballast_upstream_server_connections{%s,state=\"idle\"} 2");
    EXPECT("ballast_upstream_server_requests_in_flight{%s} 3");
    EXPECT("ballast_upstream_server_checks_total{%s,result=\"ok\"} 8");
    EXPECT("ballast_upstream_server_checks_total{%s,result=\"failed\"} 2");
    EXPECT("ballast_upstream_server_state{%s,state=\"unhealthy\"} 1");
    EXPECT("ballast_upstream_server_state{%s,state=\"up\"} 0");
    EXPECT("ballast_upstream_server_weight{%s} 1");
#undef EXPECT
    expect_line(t, "ballast_upstream_server_weight{upstream=\"backend\",server=\"127.0.0.1:9102\"}"
                   " 3");
    expect_line(t, "ballast_upstream_server_state{upstream=\"backend\",server=\"127.0.0.1:9102\","
                   "state=\"up\"} 1");
    expect_line(t, "ballast_upstream_server_state{upstream=\"backend\",server=\"127.0.0.1:9103\","
                   "state=\"down\"} 1");
    /* Passive failures (max_fails) make "unavail" until down_until_ms. */
    expect_line(t, "ballast_upstream_server_state{upstream=\"other\",server=\"127.0.0.1:9201\","
                   "state=\"unavail\"} 1");
    expect_line(t, "ballast_upstream_server_ejections_total{upstream=\"other\","
                   "server=\"127.0.0.1:9201\"} 2");
    /* Checks only for groups with `check`, ejections only for groups with `outlier`. */
    expect_no_prefix(t, "ballast_upstream_server_checks_total{upstream=\"other\"");
    expect_no_prefix(t, "ballast_upstream_server_ejections_total{upstream=\"backend\"");
    (void)o;
}

static void test_process_and_listens(void **state)
{
    struct fx *f = *state;
    bl_stat_add(&f->set->workers[0]->listens[0].accepted, 10);
    bl_stat_add(&f->set->workers[1]->listens[0].accepted, 2);
    bl_stat_add(&f->set->workers[1]->listens[0].conns, 3);
    bl_stat_add(&f->set->workers[1]->listens[0].conns_idle, 1);
    const char *t = render(f);
    expect_line(t, "ballast_build_info{version=\"9.9\\\"x\"} 1");
    expect_line(t, "ballast_workers 2");
    expect_line(t, "ballast_config_generation 1");
    expect_line(t, "ballast_config_reloads_total{result=\"ok\"} 0");
    expect_line(t, "ballast_config_reloads_total{result=\"failed\"} 0");
    expect_line(t, "ballast_listen_connections_accepted_total{listen=\"127.0.0.1:18080\"} 12");
    expect_line(t, "ballast_listen_connections{listen=\"127.0.0.1:18080\",state=\"active\"} 2");
    expect_line(t, "ballast_listen_connections{listen=\"127.0.0.1:18080\",state=\"idle\"} 1");
    expect_line(t, "ballast_listen_connections{listen=\"127.0.0.1:18081\",state=\"idle\"} 0");
    bl_process_stats_reload(0, 0);
    bl_process_stats_reload(1, 0);
    bl_process_stats_reload(1, 7);
    t = render(f);
    expect_line(t, "ballast_config_generation 7");
    expect_line(t, "ballast_config_reloads_total{result=\"ok\"} 2");
    expect_line(t, "ballast_config_reloads_total{result=\"failed\"} 1");
}

/* After a reload, what earlier configs counted for kept objects sits in the set's base and is
 * added to the workers' counts: counters continue instead of starting over. */
static void test_base_carried(void **state)
{
    struct fx *f = *state;
    bl_stat_add(&f->set->base->servers[0].requests[bl_stats_class(200)], 40);
    bl_stat_add(&f->set->workers[1]->servers[0].requests[bl_stats_class(200)], 2);
    bl_stat_add(&f->set->base->listens[0].accepted, 9);
    const char *t = render(f);
    expect_line(t, "ballast_http_server_requests_total{server=\"example.com\",code=\"2xx\"} 42");
    expect_line(t, "ballast_listen_connections_accepted_total{listen=\"127.0.0.1:18080\"} 9");
}

/* The format's structure: each family's HELP then TYPE, then only its samples (a histogram's
 * with _bucket/_sum/_count), and no family twice; counters end in _total. */
static void test_structure(void **state)
{
    struct fx *f = *state;
    const char *t = render(f);
    char family[128] = "", type[16] = "";
    char seen[64][128];
    int nseen = 0, nsamples = 0;
    const char *p = t;
    while (*p) {
        const char *e = strchr(p, '\n');
        assert_non_null(e);
        char line[1024];
        size_t n = (size_t)(e - p);
        assert_true(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p = e + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_true(sscanf(line + 7, "%127s", family) == 1);
            for (int i = 0; i < nseen; i++)
                if (strcmp(seen[i], family) == 0)
                    fail_msg("family %s twice", family);
            assert_true(nseen < 64);
            strcpy(seen[nseen++], family);
            type[0] = '\0';
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128];
            assert_true(sscanf(line + 7, "%127s %15s", name, type) == 2);
            assert_string_equal(name, family);
            if (strcmp(type, "counter") == 0)
                assert_non_null(strstr(family, "_total"));
            continue;
        }
        assert_true(type[0] != '\0'); /* a sample before its TYPE line */
        size_t fl = strlen(family);
        assert_true(strncmp(line, family, fl) == 0);
        const char *rest = line + fl;
        if (strcmp(type, "histogram") == 0 &&
            (strncmp(rest, "_bucket", 7) == 0 || strncmp(rest, "_sum", 4) == 0 ||
             strncmp(rest, "_count", 6) == 0))
            rest = strchr(rest, '{') ? strchr(rest, '{') : strchr(rest, ' ');
        assert_true(*rest == '{' || *rest == ' ');
        nsamples++;
    }
    assert_true(nseen >= 25);
    assert_true(nsamples > 100);
}

/* A set made for another config is refused, not read out of bounds. */
static void test_mismatch(void **state)
{
    struct fx *f = *state;
    struct bl_stats_set *other = bl_stats_create(1, 1, 0, 0, 1);
    struct bl_strbuf b = {0};
    struct bl_metrics_source src = {.cfg = f->cfg, .stats = other, .version = "x"};
    ASSERT_EQ(bl_metrics_render(&b, &src), BL_ERR);
    bl_strbuf_free(&b);
    bl_stats_free(other);
}

/* The blocks of different workers never share a cache line. */
static void test_alignment(void **state)
{
    struct fx *f = *state;
    for (uint32_t i = 0; i < f->set->nworkers; i++)
        ASSERT_EQ((uintptr_t)f->set->workers[i] % 64, 0);
    ASSERT_EQ((uintptr_t)f->set->workers[0]->servers % 64, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test_setup_teardown(test_zone_sums, setup, teardown),
        cmocka_unit_test_setup_teardown(test_location_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_process_and_listens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_carried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_structure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alignment, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
