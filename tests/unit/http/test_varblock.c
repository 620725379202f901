/* split_clients buckets (MurmurHash2 and nginx's bounds) and geo's CIDR matching. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "core/cidr.h"
#include "core/murmur.h"
#include "http/realip.h"
#include "http/varblock.h"

static void test_murmur2(void **state)
{
    (void)state;
    /* The empty key: nothing mixed in, the avalanche of 0 is 0. */
    assert_int_equal(bl_murmur2("", 0), 0);
    /* Every tail length (0..3 bytes after the 4-byte blocks) changes the hash, and the hash
     * depends on the length as well as the bytes. */
    const char *s = "abcdefgh";
    uint32_t seen[8];
    for (int i = 1; i <= 8; i++) {
        seen[i - 1] = bl_murmur2(s, (size_t)i);
        for (int j = 0; j < i - 1; j++)
            assert_int_not_equal(seen[j], seen[i - 1]);
    }
    assert_int_not_equal(bl_murmur2("\0", 1), bl_murmur2("\0\0", 2));
    /* Deterministic: nginx's buckets depend on nothing but the key. */
    assert_int_equal(bl_murmur2("user-1", 6), bl_murmur2("user-1", 6));
}

static struct bl_varblock *first_block(struct bl_config *cfg)
{
    for (uint32_t i = 0; i < cfg->vars.n; i++)
        if (cfg->var_blocks && cfg->var_blocks[i])
            return cfg->var_blocks[i];
    return NULL;
}

static void test_split_bounds(void **state)
{
    (void)state;
    char err[512] = "";
    struct bl_config *cfg = bl_conf_load_string(
        "http { split_clients \"$uri\" $v { 0.5% one; 2.0% two; * rest; } }", "t.conf", err,
        sizeof(err));
    assert_non_null(cfg);
    struct bl_varblock *b = first_block(cfg);
    assert_non_null(b);
    assert_int_equal(b->nparts, 3);
    /* nginx's documentation: 0 .. 21474835 is 0.5%, 21474836 .. 107374180 is 2% */
    assert_int_equal(b->parts[0].upto, 21474836);
    assert_int_equal(b->parts[1].upto, 107374181);
    assert_int_equal(b->parts[2].upto, 0);
    /* Over many keys the shares follow the percentages. */
    unsigned counts[3] = {0};
    for (int i = 0; i < 100000; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "10.0.%d.%dAAA", i / 256, i % 256);
        const struct bl_split_part *p = bl_split_pick(b->parts, b->nparts, key, (size_t)n);
        assert_non_null(p);
        counts[p - b->parts]++;
    }
    assert_true(counts[0] > 300 && counts[0] < 700);
    assert_true(counts[1] > 1700 && counts[1] < 2300);
    bl_conf_release(cfg);

    /* Without "*", hashes past the last share find no part (the variable is empty). */
    struct bl_split_part none[1] = {{1, (char *)"x"}};
    assert_true(bl_split_pick(none, 1, "a", 1) == (bl_murmur2("a", 1) < 1 ? &none[0] : NULL));
}

static void test_cidr(void **state)
{
    (void)state;
    struct bl_cidr c;
    struct bl_ipaddr a;
    assert_int_equal(bl_cidr_parse("10.0.0.0/8", &c), 0);
    assert_int_equal(bl_ipaddr_parse("10.255.0.1", 10, &a), 0);
    assert_true(bl_cidr_match(&c, &a));
    assert_int_equal(bl_ipaddr_parse("11.0.0.1", 8, &a), 0);
    assert_false(bl_cidr_match(&c, &a));
    /* host bits set: cleared, and said so */
    assert_int_equal(bl_cidr_parse("10.1.2.3/16", &c), 1);
    assert_int_equal(bl_ipaddr_parse("10.1.9.9", 8, &a), 0);
    assert_true(bl_cidr_match(&c, &a));
    /* prefixes not on a byte boundary */
    assert_int_equal(bl_cidr_parse("192.168.0.0/23", &c), 0);
    assert_int_equal(bl_ipaddr_parse("192.168.1.255", 13, &a), 0);
    assert_true(bl_cidr_match(&c, &a));
    assert_int_equal(bl_ipaddr_parse("192.168.2.0", 11, &a), 0);
    assert_false(bl_cidr_match(&c, &a));
    /* IPv6, and families kept apart */
    assert_int_equal(bl_cidr_parse("2001:db8::/33", &c), 0);
    assert_int_equal(bl_ipaddr_parse("2001:db8:7fff::1", 16, &a), 0);
    assert_true(bl_cidr_match(&c, &a));
    assert_int_equal(bl_ipaddr_parse("2001:db8:8000::1", 16, &a), 0);
    assert_false(bl_cidr_match(&c, &a));
    assert_int_equal(bl_ipaddr_parse("10.0.0.1", 8, &a), 0);
    assert_false(bl_cidr_match(&c, &a));
    assert_int_equal(bl_cidr_parse("::/0", &c), 0);
    assert_false(bl_cidr_match(&c, &a));
    assert_int_equal(bl_cidr_parse("0.0.0.0/0", &c), 0);
    assert_true(bl_cidr_match(&c, &a));
    /* a bare address is one host; "all" is everything */
    assert_int_equal(bl_cidr_parse("10.0.0.1", &c), 0);
    assert_int_equal(c.bits, 32);
    assert_true(bl_cidr_match(&c, &a));
    assert_int_equal(bl_cidr_parse("all", &c), 0);
    assert_true(bl_cidr_match(&c, &a));
    static const char *const bad[] = {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "x",
                                      "10.0.0.0/8x", "", "1.2.3.4/-1", "[::1]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bl_cidr_parse(bad[i], &c), -1);
}

static void test_geo_longest_prefix(void **state)
{
    (void)state;
    struct bl_geo_net nets[4];
    assert_int_equal(bl_cidr_parse("10.0.0.0/8", &nets[0].net), 0);
    nets[0].value = (char *)"ten";
    assert_int_equal(bl_cidr_parse("10.1.2.0/24", &nets[1].net), 0);
    nets[1].value = (char *)"ten12";
    assert_int_equal(bl_cidr_parse("10.1.0.0/16", &nets[2].net), 0);
    nets[2].value = (char *)"ten1";
    assert_int_equal(bl_cidr_parse("2001:db8::/32", &nets[3].net), 0);
    nets[3].value = (char *)"doc";
    static const struct {
        const char *ip, *want;
    } cases[] = {{"10.1.2.3", "ten12"}, {"10.1.3.3", "ten1"}, {"10.2.0.0", "ten"},
                 {"11.0.0.0", NULL},     {"2001:db8::1", "doc"}, {"::ffff:10.1.2.9", "ten12"},
                 {"::1", NULL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bl_ipaddr a;
        assert_int_equal(bl_ipaddr_parse(cases[i].ip, strlen(cases[i].ip), &a), 0);
        const char *v = bl_geo_find(nets, 4, &a);
        if (cases[i].want)
            assert_string_equal(v, cases[i].want);
        else
            assert_null(v);
    }
}

/* Forwarded addresses as nginx's ngx_parse_addr_port reads them, quirks included. */
static void test_realip_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want; /* NULL: refused */
    } cases[] = {
        {"1.2.3.4", "1.2.3.4"},       {"1.2.3.4:80", "1.2.3.4"},
        {"[2001:db8::1]:443", "2001:db8::1"}, {"2001:db8::1", "2001:db8::1"},
        {"1..2.3", "1.0.2.3"},        {"001.002.003.004", "1.2.3.4"},
        {"1.2.3.", "1.2.3.0"},        {"255.255.255.255", NULL},
        {"1.2.3.256", NULL},          {"1.2.3.4:0", NULL},
        {"1.2.3.4:65536", NULL},      {"1.2.3.4:", NULL},
        {"[::1]", NULL},              {"[::1]x", NULL},
        {"garbage", NULL},            {"", NULL},
        {"1.2.3.4.5", NULL},          {" 1.2.3.4", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bl_ipaddr a;
        uint16_t port;
        int rc = bl_realip_parse(cases[i].text, strlen(cases[i].text), &a, &port);
        if (!cases[i].want) {
            if (rc == 0)
                fail_msg("\"%s\" should be refused", cases[i].text);
            continue;
        }
        assert_int_equal(rc, 0);
        char buf[64];
        assert_non_null(inet_ntop(a.family, a.a, buf, sizeof(buf)));
        assert_string_equal(buf, cases[i].want);
    }
    struct bl_ipaddr a;
    uint16_t port = 1;
    assert_int_equal(bl_realip_parse("1.2.3.4:5678", 12, &a, &port), 0);
    assert_int_equal(port, 5678);
    assert_int_equal(bl_realip_parse("[::1]:443", 9, &a, &port), 0);
    assert_int_equal(port, 443);
    assert_int_equal(bl_realip_parse("1.2.3.4", 7, &a, &port), 0);
    assert_int_equal(port, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2),
        cmocka_unit_test(test_split_bounds),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_geo_longest_prefix),
        cmocka_unit_test(test_realip_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
