/* The DNS query parser, the answer writer and the front end's answers (dns_msg.c, dns.c),
 * with a config compiled from text so the records point at real upstream groups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "assert_eq.h"
#include "conf/conf.h"
#include "conf/dns_conf.h"
#include "dns/dns.h"
#include "dns/dns_msg.h"
#include "upstream/upstream.h"

/* A query for name (dotted) of qtype, RD set, with an OPT of payload size edns (0: none). */
static size_t make_query(uint8_t *out, const char *name, uint16_t qtype, uint16_t edns)
{
    static const uint8_t head[12] = {0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(out, head, 12);
    size_t n = 12;
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        out[n++] = (uint8_t)l;
        memcpy(out + n, p, l);
        n += l;
        p += l + (dot ? 1 : 0);
    }
    out[n++] = 0;
    out[n++] = (uint8_t)(qtype >> 8);
    out[n++] = (uint8_t)qtype;
    out[n++] = 0;
    out[n++] = 1;
    if (edns) {
        out[11] = 1;
        const uint8_t opt[11] = {0, 0, 41, (uint8_t)(edns >> 8), (uint8_t)edns, 0, 0, 0, 0, 0, 0};
        memcpy(out + n, opt, sizeof(opt));
        n += sizeof(opt);
    }
    return n;
}

static void test_parse_query(void **state)
{
    (void)state;
    uint8_t q[512];
    size_t n = make_query(q, "WwW.Example.TEST", BL_DNS_T_AAAA, 4096);
    struct bl_dns_query d;
    ASSERT_EQ(bl_dns_parse_query(q, n, &d), BL_DNS_PARSE_OK);
    ASSERT_EQ(d.id, 0xabcd);
    ASSERT_EQ(d.rd, 1);
    ASSERT_EQ(d.qtype, BL_DNS_T_AAAA);
    ASSERT_EQ(d.qclass, BL_DNS_C_IN);
    ASSERT_EQ(d.edns, 1);
    ASSERT_EQ(d.edns_size, 4096);
    ASSERT_EQ(bl_dns_answer_limit(&d), BL_DNS_UDP_MAX);
    assert_memory_equal(d.name, "\3www\7example\4test", 18);
    ASSERT_EQ(d.name_len, 18);
    ASSERT_EQ(d.question_len, 18 + 4);
    assert_memory_equal(d.question, "\3WwW", 4);   /* as received */
}

/* Every cut of a valid query is refused (dropped or FORMERR), never read past. */
static void test_every_prefix_refused(void **state)
{
    (void)state;
    uint8_t q[512];
    size_t n = make_query(q, "www.example.test", BL_DNS_T_A, 1232);
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);   /* its own allocation: ASan sees overreads */
        memcpy(copy, q, cut);
        struct bl_dns_query d;
        enum bl_dns_parse r = bl_dns_parse_query(copy, cut, &d);
        if (cut < 12)
            ASSERT_EQ(r, BL_DNS_PARSE_DROP);
        else
            ASSERT_EQ(r, BL_DNS_PARSE_FORMERR);
        free(copy);
    }
}

static void test_parse_refusals(void **state)
{
    (void)state;
    uint8_t q[512];
    struct bl_dns_query d;
    size_t n = make_query(q, "a.test", BL_DNS_T_A, 0);
    q[2] |= 0x80;                                  /* a response */
    ASSERT_EQ(bl_dns_parse_query(q, n, &d), BL_DNS_PARSE_DROP);
    n = make_query(q, "a.test", BL_DNS_T_A, 0);
    q[2] = (uint8_t)(q[2] | 2 << 3);               /* opcode STATUS */
    ASSERT_EQ(bl_dns_parse_query(q, n, &d), BL_DNS_PARSE_NOTIMP);
    n = make_query(q, "a.test", BL_DNS_T_A, 0);
    q[7] = 1;                                      /* an answer record in a query */
    ASSERT_EQ(bl_dns_parse_query(q, n, &d), BL_DNS_PARSE_FORMERR);
    n = make_query(q, "a.test", BL_DNS_T_A, 512);
    q[n - 5] = 1;                                  /* EDNS version 1 */
    ASSERT_EQ(bl_dns_parse_query(q, n, &d), BL_DNS_PARSE_BADVERS);
    ASSERT_EQ(d.id, 0xabcd);
    ASSERT_EQ(d.edns, 1);
    n = make_query(q, "a.test", BL_DNS_T_A, 0);
    q[12] = 0xc0;                                  /* a pointer as the first label */
    ASSERT_EQ(bl_dns_parse_query(q, n, &d), BL_DNS_PARSE_FORMERR);
}

static void test_names(void **state)
{
    (void)state;
    uint8_t w[BL_DNS_NAME_MAX];
    ASSERT_EQ(bl_dns_name_from_text("Example.Test.", w), 14);
    assert_memory_equal(w, "\7example\4test", 14);
    ASSERT_EQ(bl_dns_name_from_text("a..b", w), -1);
    ASSERT_EQ(bl_dns_name_from_text("", w), -1);
    ASSERT_EQ(bl_dns_name_from_text(".", w), -1);
    ASSERT_EQ(bl_dns_name_from_text("a b", w), -1);
    char long_label[80];
    memset(long_label, 'x', 64);
    long_label[64] = '\0';
    ASSERT_EQ(bl_dns_name_from_text(long_label, w), -1);
    long_label[63] = '\0';
    ASSERT_EQ(bl_dns_name_from_text(long_label, w), 65);
    uint8_t zone[BL_DNS_NAME_MAX];
    int zl = bl_dns_name_from_text("example.test", zone);
    ASSERT_EQ(bl_dns_name_suffix((const uint8_t *)"\3www\7example\4test", 18, zone, (size_t)zl),
              4);
    ASSERT_EQ(bl_dns_name_suffix((const uint8_t *)"\7example\4test", 14, zone, (size_t)zl), 0);
    /* "xexample.test" is not inside "example.test": labels, not bytes. */
    ASSERT_EQ(bl_dns_name_suffix((const uint8_t *)"\10xexample\4test", 15, zone, (size_t)zl),
              -1);
}

static const char *conf_text =
    "http { upstream sites { server 10.0.0.1:80; server 10.0.0.2:80; server 10.0.0.2:81;\n"
    "  server [2001:db8::1]:80; server 10.0.0.9:80 backup; }\n"
    "  server { listen 127.0.0.1:18999; location / { return 200; } } }\n"
    "dns { listen 127.0.0.1:15399 udp; zone example.test; ttl 9s;\n"
    "  record www A upstream=sites; record www AAAA upstream=sites;\n"
    "  record api.eu A upstream=sites; }\n";

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Answers to name/qtype: rcode, answer count, and the first answer's address bytes. */
static size_t ask(const struct bl_config *c, const char *name, uint16_t qtype, uint8_t *out,
                  int *rcode, int *ancount)
{
    uint8_t q[512];
    size_t n = make_query(q, name, qtype, 0);
    size_t len = bl_dns_respond(c->dns, q, n, out, BL_DNS_UDP_MAX, 1000);
    *rcode = len ? out[3] & 0x0f : -1;
    *ancount = len ? rd16(out + 6) : -1;
    return len;
}

static void test_answers(void **state)
{
    (void)state;
    char err[512];
    struct bl_config *c = bl_conf_load_string(conf_text, "t.conf", err, sizeof(err));
    if (!c)
        print_error("%s\n", err);
    assert_non_null(c);
    uint8_t out[BL_DNS_UDP_MAX];
    int rc, an;
    size_t len = ask(c, "www.example.test", BL_DNS_T_A, out, &rc, &an);
    ASSERT_EQ(rc, BL_DNS_NOERROR);
    ASSERT_EQ(an, 2);                        /* 10.0.0.2 twice is one address; backup left out */
    ASSERT_EQ(out[2] & 0x84, 0x84);          /* QR, AA */
    ASSERT_EQ(out[3] & 0x80, 0);             /* no RA */
    ASSERT_EQ(len, 12 + 22 + 2 * 16);
    ASSERT_EQ(rd16(out + 34 + 6) << 16 | rd16(out + 34 + 8), 9);   /* the TTL */

    /* The upstream layer's view: the admin API's down takes a server out of the answers. */
    struct bl_upstream_group *g = c->dns->records[0].group;
    atomic_store(&g->servers[0].state->admin, BL_ADMIN_DOWN);
    atomic_store(&g->servers[1].state->admin, BL_ADMIN_DRAIN);
    atomic_store(&g->servers[2].state->admin, BL_ADMIN_DOWN);
    ask(c, "www.example.test", BL_DNS_T_A, out, &rc, &an);
    ASSERT_EQ(an, 1);                        /* no primary: the backup */
    assert_memory_equal(out + 34 + 12, "\x0a\x00\x00\x09", 4);
    atomic_store(&g->servers[4].state->check_down, 1);
    ask(c, "www.example.test", BL_DNS_T_A, out, &rc, &an);
    ASSERT_EQ(rc, BL_DNS_NOERROR);
    ASSERT_EQ(an, 0);
    ASSERT_EQ(rd16(out + 8), 1);             /* the SOA in authority */
    atomic_store(&g->servers[0].state->admin, 0);

    ask(c, "www.example.test", BL_DNS_T_AAAA, out, &rc, &an);
    ASSERT_EQ(an, 1);
    ask(c, "nope.example.test", BL_DNS_T_A, out, &rc, &an);
    ASSERT_EQ(rc, BL_DNS_NXDOMAIN);
    ask(c, "eu.example.test", BL_DNS_T_A, out, &rc, &an);
    ASSERT_EQ(rc, BL_DNS_NOERROR);           /* an empty non-terminal exists */
    ASSERT_EQ(an, 0);
    ask(c, "example.test", BL_DNS_T_SOA, out, &rc, &an);
    ASSERT_EQ(an, 1);
    ask(c, "www.example.com", BL_DNS_T_A, out, &rc, &an);
    ASSERT_EQ(rc, BL_DNS_REFUSED);
    ASSERT_EQ(out[2] & 0x04, 0);             /* not authoritative */
    ask(c, "test", BL_DNS_T_A, out, &rc, &an);
    ASSERT_EQ(rc, BL_DNS_REFUSED);           /* the parent is outside the zone */
    bl_conf_release(c);
}

/* An answer never exceeds 512 bytes without EDNS: TC set, whole records only. */
static void test_truncation(void **state)
{
    (void)state;
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof(text), "http { upstream big {");
    for (int i = 1; i <= 60; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, " server [2001:db8::%x]:80;", i);
    snprintf(text + n, sizeof(text) - n, " } server { listen 127.0.0.1:18998; location / { "
             "return 200; } } }\ndns { listen 127.0.0.1:15398 udp; zone t; record x AAAA "
             "upstream=big; }\n");
    char err[512];
    struct bl_config *c = bl_conf_load_string(text, "t.conf", err, sizeof(err));
    if (!c)
        print_error("%s\n", err);
    assert_non_null(c);
    uint8_t q[512], out[BL_DNS_UDP_MAX];
    size_t ql = make_query(q, "x.t", BL_DNS_T_AAAA, 0);
    size_t len = bl_dns_respond(c->dns, q, ql, out, sizeof(out), 0);
    assert_true(len <= 512);
    ASSERT_EQ(out[2] & 0x02, 0x02);
    ASSERT_EQ(len, 12 + 9 + rd16(out + 6) * 28u);
    ql = make_query(q, "x.t", BL_DNS_T_AAAA, 4096);
    len = bl_dns_respond(c->dns, q, ql, out, sizeof(out), 0);
    assert_true(len <= BL_DNS_UDP_MAX);
    ASSERT_EQ(rd16(out + 10), 1);            /* the OPT is there */
    ASSERT_EQ(len, 12 + 9 + rd16(out + 6) * 28u + 11);
    bl_conf_release(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_query),    cmocka_unit_test(test_every_prefix_refused),
        cmocka_unit_test(test_parse_refusals), cmocka_unit_test(test_names),
        cmocka_unit_test(test_answers),        cmocka_unit_test(test_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
