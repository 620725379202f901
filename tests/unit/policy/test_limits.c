/* limit_req over several lines (nginx's handler and _account), delay= and nodelay, dry run,
 * empty keys; limit_conn lines; the parsers' nginx messages; allow/deny first match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "assert_eq.h"
#include "core/log.h"
#include "core/status.h"
#include "policy/access.h"
#include "policy/limits.h"

static char err[256];
static struct bl_limit_zones zones;

static int setup(void **state)
{
    (void)state;
    bl_log_level = BL_LOG_EMERG;
    memset(&zones, 0, sizeof(zones));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bl_limit_zones_free(&zones);
    return 0;
}

static int split(const char *line, char *buf, size_t cap, char **args)
{
    int n = 0;
    snprintf(buf, cap, "%s", line);
    for (char *tok = strtok(buf, " "); tok && n < 8; tok = strtok(NULL, " "))
        args[n++] = tok;
    return n;
}

/* A limit_req_zone line: "KEY zone=... rate=...". */
static int zone_line(int req, const char *line)
{
    char buf[256], *args[8];
    int n = split(line, buf, sizeof(buf), args);
    struct bl_template *key = bl_template_compile(args[0], err, sizeof(err));
    assert_non_null(key);
    int rc = bl_limit_zone_parse(req ? &zones.req : &zones.conn, req ? &zones.nreq : &zones.nconn,
                                 req, req ? "limit_req_zone" : "limit_conn_zone", key, args[0],
                                 args + 1, n - 1, "t.conf", 1, err, sizeof(err));
    if (rc != BL_OK)
        bl_template_free(key);
    return rc;
}

static int req_line(struct bl_limit_req **lines, uint32_t *n, const char *line)
{
    char buf[256], *args[8];
    int na = split(line, buf, sizeof(buf), args);
    return bl_limit_req_parse(&zones, lines, n, args, na, "t.conf", 2, err, sizeof(err));
}

static void test_parse_errors(void **state)
{
    (void)state;
    assert_int_equal(zone_line(1, "$remote_addr zone=a:1m rate=10r/s"), BL_OK);
    assert_int_equal(zone_line(1, "$uri zone=a:1m rate=10r/s"), BL_ERR);
    assert_string_equal(err, "limit_req_zone \"a\" is already bound to key \"$remote_addr\"");
    assert_int_equal(zone_line(1, "$uri zone=b:1k rate=1r/s"), BL_ERR);
    assert_string_equal(err, "zone \"zone=b:1k\" is too small");
    assert_int_equal(zone_line(1, "$uri zone=c:1m rate=0r/s"), BL_ERR);
    assert_string_equal(err, "invalid rate \"rate=0r/s\"");
    assert_int_equal(zone_line(1, "$uri rate=1r/s"), BL_ERR);
    assert_string_equal(err, "\"limit_req_zone\" must have \"zone\" parameter");
    assert_int_equal(zone_line(1, "$uri zone=d:1m rate=1r/s sync"), BL_ERR);
    assert_int_equal(zone_line(1, "$uri zone=e:1m rate=30r/m"), BL_OK);
    ASSERT_EQ(zones.req[zones.nreq - 1]->rate, 500);
    struct bl_limit_req *lines = NULL;
    uint32_t n = 0;
    assert_int_equal(req_line(&lines, &n, "zone=a burst=0"), BL_ERR);
    assert_string_equal(err, "invalid burst value \"burst=0\"");
    assert_int_equal(req_line(&lines, &n, "burst=3"), BL_ERR);
    assert_string_equal(err, "\"limit_req\" must have \"zone\" parameter");
    assert_int_equal(req_line(&lines, &n, "zone=a burst=3 delay=2"), BL_OK);
    ASSERT_EQ(lines[0].burst, 3000);
    ASSERT_EQ(lines[0].delay, 2000);
    assert_int_equal(req_line(&lines, &n, "zone=a"), BL_ERR);
    assert_string_equal(err, "\"limit_req\" directive is duplicate");
    assert_int_equal(req_line(&lines, &n, "zone=later nodelay"), BL_OK);
    ASSERT_EQ(lines[1].delay, BL_LIMIT_NODELAY);
    /* a zone named but never defined */
    assert_int_equal(bl_limit_zones_finish(&zones, err, sizeof(err)), BL_ERR);
    assert_string_equal(err, "unknown limit_req_zone \"later\" in t.conf:2");
    free(lines);
}

static struct bl_var_ctx ctx_for(const char *ip)
{
    struct bl_var_ctx v;
    memset(&v, 0, sizeof(v));
    v.client_ip = ip;
    v.client_ip_len = (uint32_t)strlen(ip);
    return v;
}

/* rate 10 r/s, burst 5: 6 pass at one instant, the first at once, the others delayed by 100,
 * 200, ... 500 ms; the 7th is rejected. nodelay: the same 6 pass undelayed. delay=2: the
 * first three undelayed, then 100 ms steps. */
static void run_burst(const char *extra, const uint64_t *want_delays, int ndelays)
{
    char line[64];
    snprintf(line, sizeof(line), "zone=z burst=5 %s", extra);
    struct bl_limit_req *lines = NULL;
    uint32_t n = 0;
    assert_int_equal(req_line(&lines, &n, line), BL_OK);
    assert_int_equal(bl_limit_zones_finish(&zones, err, sizeof(err)), BL_OK);
    struct bl_var_ctx v = ctx_for("10.0.0.1");
    struct bl_limit_log log = {BL_LOG_ERROR, 0, "10.0.0.1"};
    struct bl_limit_req_result res;
    for (int i = 0; i < ndelays; i++) {
        assert_int_equal(bl_limit_req_check(lines, n, &v, 100000, &log, &res), BL_OK);
        ASSERT_EQ(res.delay_ms, want_delays[i]);
        ASSERT_EQ(res.status, want_delays[i] ? BL_LIMIT_DELAYED : BL_LIMIT_PASSED);
    }
    assert_int_equal(bl_limit_req_check(lines, n, &v, 100000, &log, &res), BL_ERR);
    ASSERT_EQ(res.status, BL_LIMIT_REJECTED);
    free(lines);
}

static void test_burst_delay(void **state)
{
    (void)state;
    assert_int_equal(zone_line(1, "$remote_addr zone=z:1m rate=10r/s"), BL_OK);
    const uint64_t d[] = {0, 100, 200, 300, 400, 500};
    run_burst("", d, 6);
}

static void test_burst_nodelay(void **state)
{
    (void)state;
    assert_int_equal(zone_line(1, "$remote_addr zone=z:1m rate=10r/s"), BL_OK);
    const uint64_t d[] = {0, 0, 0, 0, 0, 0};
    run_burst("nodelay", d, 6);
}

static void test_burst_delay_n(void **state)
{
    (void)state;
    assert_int_equal(zone_line(1, "$remote_addr zone=z:1m rate=10r/s"), BL_OK);
    const uint64_t d[] = {0, 0, 0, 100, 200, 300};
    run_burst("delay=2", d, 6);
}

/* Two lines: the stricter rejects, and the first line's count is not taken then (nginx
 * unpins); an empty key skips its line; all keys empty: the module does not run. */
static void test_two_lines_and_empty_key(void **state)
{
    (void)state;
    assert_int_equal(zone_line(1, "$remote_addr zone=wide:1m rate=100r/s"), BL_OK);
    assert_int_equal(zone_line(1, "$http_x_key zone=narrow:1m rate=1r/s"), BL_OK);
    struct bl_limit_req *lines = NULL;
    uint32_t n = 0;
    assert_int_equal(req_line(&lines, &n, "zone=wide burst=10 nodelay"), BL_OK);
    assert_int_equal(req_line(&lines, &n, "zone=narrow"), BL_OK);
    assert_int_equal(bl_limit_zones_finish(&zones, err, sizeof(err)), BL_OK);
    struct bl_var_ctx v = ctx_for("10.0.0.2");
    struct bl_limit_log log = {BL_LOG_ERROR, 0, "x"};
    struct bl_limit_req_result res;
    /* no X-Key header: only "wide" applies; 11 pass at one instant */
    for (int i = 0; i < 11; i++)
        assert_int_equal(bl_limit_req_check(lines, n, &v, 5000, &log, &res), BL_OK);
    assert_int_equal(bl_limit_req_check(lines, n, &v, 5000, &log, &res), BL_ERR);
    /* only the empty-key line: not run at all */
    struct bl_var_ctx none = ctx_for("10.0.0.3");
    assert_int_equal(bl_limit_req_check(lines + 1, 1, &none, 5000, &log, &res), BL_OK);
    ASSERT_EQ(res.status, BL_LIMIT_NONE);
    free(lines);
}

static void test_dry_run(void **state)
{
    (void)state;
    assert_int_equal(zone_line(1, "$remote_addr zone=z:1m rate=1r/s"), BL_OK);
    struct bl_limit_req *lines = NULL;
    uint32_t n = 0;
    assert_int_equal(req_line(&lines, &n, "zone=z burst=1"), BL_OK);
    assert_int_equal(bl_limit_zones_finish(&zones, err, sizeof(err)), BL_OK);
    struct bl_var_ctx v = ctx_for("10.0.0.4");
    struct bl_limit_log log = {BL_LOG_ERROR, 1, "x"};
    struct bl_limit_req_result res;
    assert_int_equal(bl_limit_req_check(lines, n, &v, 1000, &log, &res), BL_OK);
    ASSERT_EQ(res.status, BL_LIMIT_PASSED);
    assert_int_equal(bl_limit_req_check(lines, n, &v, 1000, &log, &res), BL_OK);
    ASSERT_EQ(res.status, BL_LIMIT_DELAYED_DRY_RUN);
    ASSERT_EQ(res.delay_ms, 0);
    /* the delayed one was accounted: the third is over the burst */
    assert_int_equal(bl_limit_req_check(lines, n, &v, 1000, &log, &res), BL_OK);
    ASSERT_EQ(res.status, BL_LIMIT_REJECTED_DRY_RUN);
    free(lines);
}

static void test_conn_lines(void **state)
{
    (void)state;
    assert_int_equal(zone_line(0, "$remote_addr zone=addr:1m"), BL_OK);
    struct bl_limit_conn *lines = NULL;
    uint32_t n = 0;
    char *bad[] = {"addr", "0"};
    assert_int_equal(bl_limit_conn_parse(&zones, 0, &lines, &n, bad, "t", 1, err, sizeof(err)),
                     BL_ERR);
    assert_string_equal(err, "invalid number of connections \"0\"");
    char *good[] = {"addr", "2"};
    assert_int_equal(bl_limit_conn_parse(&zones, 0, &lines, &n, good, "t", 1, err, sizeof(err)),
                     BL_OK);
    assert_int_equal(bl_limit_zones_finish(&zones, err, sizeof(err)), BL_OK);
    struct bl_var_ctx v = ctx_for("10.0.0.5");
    struct bl_limit_log log = {BL_LOG_ERROR, 0, "x"};
    struct bl_limit_held h1 = {0}, h2 = {0}, h3 = {0};
    int st;
    assert_int_equal(bl_limit_conn_acquire(lines, n, &v, &log, &h1, &st), BL_OK);
    ASSERT_EQ(st, BL_LIMIT_PASSED);
    assert_int_equal(bl_limit_conn_acquire(lines, n, &v, &log, &h2, &st), BL_OK);
    assert_int_equal(bl_limit_conn_acquire(lines, n, &v, &log, &h3, &st), BL_ERR);
    ASSERT_EQ(st, BL_LIMIT_REJECTED);
    ASSERT_EQ(h3.n, 0);
    bl_limit_conn_release(&h1);
    assert_int_equal(bl_limit_conn_acquire(lines, n, &v, &log, &h3, &st), BL_OK);
    bl_limit_conn_release(&h2);
    bl_limit_conn_release(&h3);
    ASSERT_EQ(bl_zone_count(zones.conn[0]->zone), 0);
    free(lines);
}

static int allowed(const struct bl_access_rule *r, uint32_t n, const char *ip)
{
    struct bl_ipaddr a;
    assert_int_equal(bl_ipaddr_parse(ip, strlen(ip), &a), 0);
    return bl_access_allowed(r, n, &a);
}

static void test_access(void **state)
{
    (void)state;
    const char *rules_text[][2] = {{"deny", "192.168.1.1"}, {"allow", "192.168.1.0/24"},
                                   {"allow", "10.0.0.0/8"},  {"allow", "2001:db8::/32"},
                                   {"deny", "all"}};
    struct bl_access_rule rules[5];
    int warned;
    for (int i = 0; i < 5; i++)
        assert_int_equal(bl_access_parse(rules_text[i][1], rules_text[i][0][0] == 'd',
                                         &rules[i], &warned, err, sizeof(err)), BL_OK);
    assert_false(allowed(rules, 5, "192.168.1.1"));
    assert_true(allowed(rules, 5, "192.168.1.2"));
    assert_true(allowed(rules, 5, "10.1.2.3"));
    assert_false(allowed(rules, 5, "127.0.0.1"));
    assert_true(allowed(rules, 5, "2001:db8::1"));
    assert_false(allowed(rules, 5, "::1"));
    /* an IPv4-mapped address is matched as the IPv4 address it carries */
    assert_true(allowed(rules, 5, "::ffff:10.0.0.1"));
    assert_false(allowed(rules, 5, "::ffff:192.168.1.1"));
    /* no rule matches: allowed */
    assert_true(allowed(rules, 2, "8.8.8.8"));
    assert_int_equal(bl_access_parse("10.0.0.1/8", 0, &rules[0], &warned, err, sizeof(err)),
                     BL_OK);
    assert_true(warned);
    assert_int_equal(bl_access_parse("nonsense", 0, &rules[0], &warned, err, sizeof(err)),
                     BL_ERR);
    assert_string_equal(err, "invalid parameter \"nonsense\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_nodelay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_delay_n, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_lines_and_empty_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
