/* Cluster limits (policy/cluster.h, zone.h): what other nodes admitted fills the local bucket
 * and drains at the rate; the zone line's sync= parameters. The Redis exchange itself runs
 * against a real redis-server in tests/integration/test_cluster_limits.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "policy/limits.h"
#include "policy/zone.h"

static void test_remote_excess(void **state)
{
    (void)state;
    char err[256];
    struct bl_zone *z = bl_zone_get("c", BL_ZONE_REQ, 65536, "$k", err, sizeof(err));
    assert_non_null(z);
    uint64_t excess;
    uint32_t pin;
    /* 10 r/s, burst 5: other nodes admitted 6 requests of key "a" at t=1000 */
    bl_zone_req_add(z, "a", 1, 1000, 10000, 6000);
    assert_int_equal(bl_zone_req_lookup(z, "a", 1, 1000, 10000, 5000, 1, &excess, &pin),
                     BL_ZONE_BUSY);
    assert_int_equal(excess, 7000);
    /* 200 ms later two have drained: 4 + this one = 5, within the burst */
    assert_int_equal(bl_zone_req_lookup(z, "a", 1, 1200, 10000, 5000, 1, &excess, &pin),
                     BL_ZONE_OK);
    assert_int_equal(excess, 5000);
    /* added at an earlier time than the last account: nothing drains backwards */
    bl_zone_req_add(z, "a", 1, 1100, 10000, 1000);
    assert_int_equal(bl_zone_req_lookup(z, "a", 1, 1200, 10000, 10000, 1, &excess, &pin),
                     BL_ZONE_OK);
    assert_int_equal(excess, 7000);
    bl_zone_put(z);
}

static void test_sync_parse(void **state)
{
    (void)state;
    struct bl_limit_zones zones = {0};
    char err[256];
    char *args[] = {"zone=one:1m", "rate=10r/s", "sync=redis://localhost", "sync_interval=50ms"};
    assert_int_equal(bl_limit_zone_parse(&zones.req, &zones.nreq, 1, "limit_req_zone", NULL,
                                         "$k", args, 4, "t.conf", 1, err, sizeof(err)),
                     BL_OK);
    assert_string_equal(zones.req[0]->sync_host, "127.0.0.1");
    assert_int_equal(zones.req[0]->sync_port, 6379);
    assert_int_equal(zones.req[0]->sync_interval_ms, 50);
    char *bad[] = {"zone=two:1m", "sync=redis://127.0.0.1:0"};
    assert_int_equal(bl_limit_zone_parse(&zones.req, &zones.nreq, 1, "limit_req_zone", NULL,
                                         "$k", bad, 2, "t.conf", 2, err, sizeof(err)),
                     BL_ERR);
    assert_non_null(strstr(err, "invalid sync"));
    bl_limit_zones_free(&zones);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remote_excess),
        cmocka_unit_test(test_sync_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
