/* The DNS query writer and answer parser (core/dns.h): the records that count, CNAME chains,
 * NXDOMAIN, answers that are not ours, compression loops, and every answer cut at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "core/dns.h"
#include "core/status.h"

/* An answer to (0x1234, "svc.test", A): header, question, then the records given. */
static size_t answer(uint8_t *m, uint16_t flags, const uint8_t *records, size_t rlen,
                     uint16_t ancount)
{
    uint8_t hdr[12] = {0x12, 0x34, (uint8_t)(flags >> 8), (uint8_t)flags, 0, 1,
                       (uint8_t)(ancount >> 8), (uint8_t)ancount, 0, 0, 0, 0};
    static const uint8_t q[] = {3, 's', 'v', 'c', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
    memcpy(m, hdr, 12);
    memcpy(m + 12, q, sizeof(q));
    memcpy(m + 12 + sizeof(q), records, rlen);
    return 12 + sizeof(q) + rlen;
}

static const uint8_t TWO_A[] = {
    0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1,
    0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 2,
};

static void test_query(void **state)
{
    (void)state;
    uint8_t q[512];
    int n = bl_dns_query(0xbeef, "svc.test.", BL_DNS_AAAA, q, sizeof(q));
    static const uint8_t want[] = {0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 's', 'v', 'c',
                                   4, 't', 'e', 's', 't', 0, 0, 28, 0, 1};
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(q, want, sizeof(want));
    assert_int_equal(bl_dns_query(1, "a..b", BL_DNS_A, q, sizeof(q)), BL_ERR);
    assert_int_equal(bl_dns_query(1, "", BL_DNS_A, q, sizeof(q)), BL_ERR);
    char longlabel[80];
    memset(longlabel, 'x', 64);
    longlabel[64] = 0;
    assert_int_equal(bl_dns_query(1, longlabel, BL_DNS_A, q, sizeof(q)), BL_ERR);
    assert_int_equal(bl_dns_query(1, "svc.test", BL_DNS_A, q, 20), BL_ERR);
}

static void test_answers(void **state)
{
    (void)state;
    uint8_t m[512];
    struct bl_dns_addr a[4];
    struct bl_dns_result r;
    size_t n = answer(m, 0x8180, TWO_A, sizeof(TWO_A), 2);
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "SVC.test", BL_DNS_A, a, 4, &r), BL_OK);
    assert_int_equal(r.naddrs, 2);
    assert_int_equal(r.min_ttl, 5);
    assert_int_equal(a[1].family, AF_INET);
    assert_int_equal(a[1].addr[3], 2);
    /* room for one: one kept, the TTL still the smallest of both */
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "svc.test", BL_DNS_A, a, 1, &r), BL_OK);
    assert_int_equal(r.naddrs, 1);
    assert_int_equal(r.min_ttl, 5);
    /* not ours: another id, another name, another type, a question (QR clear) */
    assert_int_equal(bl_dns_parse(m, n, 0x1235, "svc.test", BL_DNS_A, a, 4, &r), BL_ERR);
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "svc.tes", BL_DNS_A, a, 4, &r), BL_ERR);
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "svc.test", BL_DNS_AAAA, a, 4, &r), BL_ERR);
    m[2] = 0x01;
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "svc.test", BL_DNS_A, a, 4, &r), BL_ERR);

    n = answer(m, 0x8183, NULL, 0, 0);
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "svc.test", BL_DNS_A, a, 4, &r), BL_OK);
    assert_int_equal(r.rcode, 3);
    assert_int_equal(r.naddrs, 0);
}

static void test_cname_and_strangers(void **state)
{
    (void)state;
    static const uint8_t recs[] = {
        /* svc.test CNAME real.test (ptr to "test" at 16) */
        0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 7, 4, 'r', 'e', 'a', 'l', 0xc0, 16,
        /* real.test A 10.9.9.9 (ptr to the CNAME target at 38) */
        0xc0, 38, 0, 1, 0, 1, 0, 0, 0, 20, 0, 4, 10, 9, 9, 9,
        /* other.test A 10.6.6.6: not on the chain */
        5, 'o', 't', 'h', 'e', 'r', 0xc0, 16, 0, 1, 0, 1, 0, 0, 0, 20, 0, 4, 10, 6, 6, 6,
    };
    uint8_t m[512];
    struct bl_dns_addr a[4];
    struct bl_dns_result r;
    size_t n = answer(m, 0x8180, recs, sizeof(recs), 3);
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "svc.test", BL_DNS_A, a, 4, &r), BL_OK);
    assert_int_equal(r.naddrs, 1);
    assert_int_equal(a[0].addr[1], 9);

    /* a name pointer to itself, and one pointing forward */
    static const uint8_t loop[] = {0xc0, 26, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1};
    n = answer(m, 0x8180, loop, sizeof(loop), 1);
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "svc.test", BL_DNS_A, a, 4, &r), BL_ERR);
    static const uint8_t fwd[] = {0xc0, 40, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1};
    n = answer(m, 0x8180, fwd, sizeof(fwd), 1);
    assert_int_equal(bl_dns_parse(m, n, 0x1234, "svc.test", BL_DNS_A, a, 4, &r), BL_ERR);
}

static void test_every_cut(void **state)
{
    (void)state;
    uint8_t m[512];
    struct bl_dns_addr a[4];
    struct bl_dns_result r;
    size_t n = answer(m, 0x8180, TWO_A, sizeof(TWO_A), 2);
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *copy = test_malloc(cut ? cut : 1);
        memcpy(copy, m, cut);
        int rc = bl_dns_parse(copy, cut, 0x1234, "svc.test", BL_DNS_A, a, 4, &r);
        assert_true(rc == BL_ERR || (rc == BL_OK && r.naddrs < 2));
        test_free(copy);
    }
    m[2] |= 0x02; /* TC: a cut answer keeps what it has */
    assert_int_equal(bl_dns_parse(m, n - 3, 0x1234, "svc.test", BL_DNS_A, a, 4, &r), BL_OK);
    assert_int_equal(r.naddrs, 1);
    assert_int_equal(r.truncated, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_cname_and_strangers),
        cmocka_unit_test(test_every_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
