/* PROXY protocol v1/v2: every valid header cut at every byte and fed whole, malformed forms,
 * and the writer's bytes read back by the parser. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "assert_eq.h"
#include "core/status.h"
#include "core/proxy_proto.c"

/* Every prefix of a valid header asks for more; the whole header (and the header followed by
 * client bytes) parses to its length. */
static void check_cuts(const char *h, size_t hlen, struct bl_pp_info *out)
{
    const char *reason;
    for (size_t cut = 0; cut < hlen; cut++) {
        int rc = bl_pp_parse(h, cut, out, &reason);
        if (rc != PP_AGAIN)
            print_error("cut at %zu of %zu: %d (%s)\n", cut, hlen, rc, reason ? reason : "");
        ASSERT_EQ(rc, PP_AGAIN);
    }
    char buf[BL_PP_MAX_HEADER + 64];
    memcpy(buf, h, hlen);
    memcpy(buf + hlen, "GET / HTTP/1.1\r\n", 16);
    ASSERT_EQ(bl_pp_parse(buf, hlen + 16, out, &reason), (long long)hlen);
    ASSERT_EQ(bl_pp_parse(h, hlen, out, &reason), (long long)hlen);
}

static void test_v1_tcp4(void **state)
{
    (void)state;
    struct bl_pp_info pi;
    const char h[] = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
    check_cuts(h, sizeof(h) - 1, &pi);
    ASSERT_EQ(pi.version, 1);
    ASSERT_EQ(pi.has_addr, 1);
    ASSERT_EQ(pi.family, AF_INET);
    assert_string_equal(pi.src_ip, "192.0.2.7");
    assert_string_equal(pi.dst_ip, "198.51.100.1");
    ASSERT_EQ(pi.src_port, 56324);
    ASSERT_EQ(pi.dst_port, 443);
    ASSERT_EQ(pi.src[0], 192);
}

static void test_v1_tcp6_and_unknown(void **state)
{
    (void)state;
    struct bl_pp_info pi;
    const char h6[] = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    check_cuts(h6, sizeof(h6) - 1, &pi);
    ASSERT_EQ(pi.family, AF_INET6);
    assert_string_equal(pi.src_ip, "2001:db8::1");
    assert_string_equal(pi.dst_ip, "::1");
    ASSERT_EQ(pi.src_port, 65535);
    ASSERT_EQ(pi.dst_port, 0);
    const char hu[] = "PROXY UNKNOWN\r\n";
    check_cuts(hu, sizeof(hu) - 1, &pi);
    ASSERT_EQ(pi.has_addr, 0);
    ASSERT_EQ(pi.version, 1);
    /* UNKNOWN with addresses after it: ignored up to the CRLF (the spec) */
    const char hu2[] = "PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n";
    check_cuts(hu2, sizeof(hu2) - 1, &pi);
    ASSERT_EQ(pi.has_addr, 0);
    /* the longest line the spec allows (107 bytes) */
    const char hmax[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    ASSERT_EQ(sizeof(hmax) - 1, 104);
    check_cuts(hmax, sizeof(hmax) - 1, &pi);
}

static void test_v1_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "PROXY\r\n",
        "PROXY \r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          /* LF without CR */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",          /* a port missing */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",      /* one too many */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",       /* two spaces */
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",            /* family mismatch */
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        "PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 x\r\n",
        "PROXY UNKNOWNX\r\n",
        "\r\n\r\nX",                                  /* a v2 signature gone wrong */
        "\x16\x03\x01\x02\x00",                       /* TLS ClientHello */
        "",
    };
    const char *reason;
    struct bl_pp_info pi;
    for (size_t i = 0; i < BL_ARRAY_LEN(bad); i++) {
        size_t n = strlen(bad[i]);
        if (n == 0)
            continue; /* the empty string only asks for more */
        int rc = bl_pp_parse(bad[i], n, &pi, &reason);
        if (rc != PP_ERR)
            print_error("accepted (%d): %s\n", rc, bad[i]);
        ASSERT_EQ(rc, PP_ERR);
        assert_non_null(reason);
    }
    /* no CRLF within 107 bytes */
    char longl[200];
    memset(longl, '1', sizeof(longl));
    memcpy(longl, "PROXY TCP4 ", 11);
    ASSERT_EQ(bl_pp_parse(longl, sizeof(longl), &pi, &reason), PP_ERR);
    assert_string_equal(reason, "header is too long");
    ASSERT_EQ(bl_pp_parse(longl, BL_PP_V1_MAX - 1, &pi, &reason), PP_AGAIN);
    /* garbage inside an unfinished line is refused at once */
    ASSERT_EQ(bl_pp_parse("PROXY TCP4 1.2.3.4 \x01", 20, &pi, &reason), PP_ERR);
    ASSERT_EQ(bl_pp_parse("PROXY TCP4 1.2.3.4 x", 20, &pi, &reason), PP_ERR);
    ASSERT_EQ(bl_pp_parse("", 0, &pi, &reason), PP_AGAIN);
}

/* A v2 header: command, family byte, address block, then extra (TLV) bytes. */
static size_t v2(uint8_t *out, uint8_t cmd, uint8_t fam, const uint8_t *addr, size_t alen,
                 const uint8_t *extra, size_t elen)
{
    memcpy(out, v2_sig, 12);
    out[12] = (uint8_t)(0x20 | cmd);
    out[13] = fam;
    size_t l = alen + elen;
    out[14] = (uint8_t)(l >> 8);
    out[15] = (uint8_t)l;
    memcpy(out + 16, addr, alen);
    if (elen)
        memcpy(out + 16 + alen, extra, elen);
    return 16 + l;
}

static const uint8_t a4[12] = {192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0x01, 0xBB};

static void test_v2_inet(void **state)
{
    (void)state;
    uint8_t h[512];
    struct bl_pp_info pi;
    size_t n = v2(h, 1, 0x11, a4, sizeof(a4), NULL, 0);
    check_cuts((char *)h, n, &pi);
    ASSERT_EQ(pi.version, 2);
    ASSERT_EQ(pi.has_addr, 1);
    assert_string_equal(pi.src_ip, "192.0.2.7");
    assert_string_equal(pi.dst_ip, "198.51.100.1");
    ASSERT_EQ(pi.src_port, 56324);
    ASSERT_EQ(pi.dst_port, 443);
    /* with TLVs (ALPN, authority, NOOP padding of zero length): skipped */
    const uint8_t tlv[] = {0x01, 0x00, 0x02, 'h', '2', 0x02, 0x00, 0x03, 'a', '.', 'b',
                           0x04, 0x00, 0x00};
    n = v2(h, 1, 0x11, a4, sizeof(a4), tlv, sizeof(tlv));
    check_cuts((char *)h, n, &pi);
    assert_string_equal(pi.src_ip, "192.0.2.7");
    /* UDP over IPv4 reads the same addresses */
    n = v2(h, 1, 0x12, a4, sizeof(a4), NULL, 0);
    check_cuts((char *)h, n, &pi);
    ASSERT_EQ(pi.has_addr, 1);
    /* IPv6 */
    uint8_t a6[36] = {0};
    inet_pton(AF_INET6, "2001:db8::7", a6);
    inet_pton(AF_INET6, "::1", a6 + 16);
    a6[32] = 0x30;
    a6[33] = 0x39;
    a6[35] = 80;
    n = v2(h, 1, 0x21, a6, sizeof(a6), NULL, 0);
    check_cuts((char *)h, n, &pi);
    ASSERT_EQ(pi.family, AF_INET6);
    assert_string_equal(pi.src_ip, "2001:db8::7");
    assert_string_equal(pi.dst_ip, "::1");
    ASSERT_EQ(pi.src_port, 12345);
    ASSERT_EQ(pi.dst_port, 80);
}

static void test_v2_local_unspec_unix(void **state)
{
    (void)state;
    uint8_t h[512], unix_addr[216] = {0};
    struct bl_pp_info pi;
    size_t n = v2(h, 0, 0x00, NULL, 0, NULL, 0); /* LOCAL */
    check_cuts((char *)h, n, &pi);
    ASSERT_EQ(pi.has_addr, 0);
    n = v2(h, 0, 0x11, a4, sizeof(a4), NULL, 0); /* LOCAL with addresses: ignored */
    check_cuts((char *)h, n, &pi);
    ASSERT_EQ(pi.has_addr, 0);
    n = v2(h, 1, 0x00, NULL, 0, NULL, 0); /* PROXY UNSPEC */
    check_cuts((char *)h, n, &pi);
    ASSERT_EQ(pi.has_addr, 0);
    n = v2(h, 1, 0x31, unix_addr, sizeof(unix_addr), NULL, 0);
    check_cuts((char *)h, n, &pi);
    ASSERT_EQ(pi.has_addr, 0);
}

static void test_v2_malformed(void **state)
{
    (void)state;
    uint8_t h[BL_PP_MAX_HEADER + 64];
    struct bl_pp_info pi;
    const char *reason;
    size_t n = v2(h, 1, 0x11, a4, sizeof(a4), NULL, 0);
    /* each signature byte wrong */
    for (size_t i = 0; i < 12; i++) {
        uint8_t c[64];
        memcpy(c, h, n);
        c[i] ^= 0x40;
        for (size_t cut = i + 1; cut <= n; cut++)
            ASSERT_EQ(bl_pp_parse((char *)c, cut, &pi, &reason), PP_ERR);
    }
    h[12] = 0x11; /* version 1 in a v2 header */
    ASSERT_EQ(bl_pp_parse((char *)h, 13, &pi, &reason), PP_ERR);
    assert_string_equal(reason, "unknown PROXY protocol version");
    h[12] = 0x22; /* command 2 */
    ASSERT_EQ(bl_pp_parse((char *)h, 13, &pi, &reason), PP_ERR);
    h[12] = 0x21;
    h[13] = 0x41; /* family 4 */
    ASSERT_EQ(bl_pp_parse((char *)h, n, &pi, &reason), PP_ERR);
    h[13] = 0x13; /* transport 3 */
    ASSERT_EQ(bl_pp_parse((char *)h, n, &pi, &reason), PP_ERR);
    /* addresses longer than the length says */
    n = v2(h, 1, 0x11, a4, 8, NULL, 0);
    ASSERT_EQ(bl_pp_parse((char *)h, n, &pi, &reason), PP_ERR);
    assert_string_equal(reason, "header is too short for its addresses");
    uint8_t a6[20] = {0};
    n = v2(h, 1, 0x21, a6, sizeof(a6), NULL, 0);
    ASSERT_EQ(bl_pp_parse((char *)h, n, &pi, &reason), PP_ERR);
    /* a TLV running past the header, a cut TLV head */
    const uint8_t over[] = {0x01, 0x00, 0x05, 'h', '2'};
    n = v2(h, 1, 0x11, a4, sizeof(a4), over, sizeof(over));
    ASSERT_EQ(bl_pp_parse((char *)h, n, &pi, &reason), PP_ERR);
    assert_string_equal(reason, "broken TLV in PROXY protocol v2 header");
    const uint8_t cut[] = {0x01, 0x00};
    n = v2(h, 1, 0x11, a4, sizeof(a4), cut, sizeof(cut));
    ASSERT_EQ(bl_pp_parse((char *)h, n, &pi, &reason), PP_ERR);
    /* longer than ballast accepts: refused from the 16 bytes that say so */
    memcpy(h, v2_sig, 12);
    h[12] = 0x21;
    h[13] = 0x11;
    h[14] = (uint8_t)((BL_PP_MAX_HEADER - 15) >> 8);
    h[15] = (uint8_t)(BL_PP_MAX_HEADER - 15);
    ASSERT_EQ(bl_pp_parse((char *)h, 16, &pi, &reason), PP_ERR);
    assert_string_equal(reason, "header is too large");
    h[14] = (uint8_t)((BL_PP_MAX_HEADER - 16) >> 8);
    h[15] = (uint8_t)(BL_PP_MAX_HEADER - 16);
    memcpy(h + 16, a4, 12);
    memset(h + 28, 0, BL_PP_MAX_HEADER - 28);
    /* the largest header accepted: its TLV area is zero-type TLVs of length 0 ... which do
     * not divide 4068 bytes evenly in threes; make one TLV of the rest */
    size_t rest = BL_PP_MAX_HEADER - 28;
    h[28] = 0x04;
    h[29] = (uint8_t)((rest - 3) >> 8);
    h[30] = (uint8_t)(rest - 3);
    ASSERT_EQ(bl_pp_parse((char *)h, BL_PP_MAX_HEADER - 1, &pi, &reason), PP_AGAIN);
    ASSERT_EQ(bl_pp_parse((char *)h, BL_PP_MAX_HEADER, &pi, &reason), BL_PP_MAX_HEADER);
}

static void test_write_read_back(void **state)
{
    (void)state;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(40000)};
    struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons(8080)};
    inet_pton(AF_INET, "10.1.2.3", &s4.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &d4.sin_addr);
    char out[BL_PP_WRITE_MAX];
    size_t n = bl_pp_write(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, out, sizeof(out));
    const char want1[] = "PROXY TCP4 10.1.2.3 127.0.0.1 40000 8080\r\n";
    ASSERT_EQ(n, sizeof(want1) - 1);
    assert_memory_equal(out, want1, n);
    n = bl_pp_write(2, (struct sockaddr *)&s4, (struct sockaddr *)&d4, out, sizeof(out));
    ASSERT_EQ(n, 28);
    const uint8_t want2[28] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                               0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C, 10, 1, 2, 3, 127, 0, 0,
                               1, 0x9C, 0x40, 0x1F, 0x90};
    assert_memory_equal(out, want2, 28);
    struct bl_pp_info pi;
    const char *reason;
    ASSERT_EQ(bl_pp_parse(out, n, &pi, &reason), 28);
    assert_string_equal(pi.src_ip, "10.1.2.3");
    /* mixed families: IPv4-mapped IPv6 */
    struct sockaddr_in6 d6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    inet_pton(AF_INET6, "::1", &d6.sin6_addr);
    n = bl_pp_write(1, (struct sockaddr *)&s4, (struct sockaddr *)&d6, out, sizeof(out));
    const char want6[] = "PROXY TCP6 ::ffff:10.1.2.3 ::1 40000 443\r\n";
    ASSERT_EQ(n, sizeof(want6) - 1);
    assert_memory_equal(out, want6, n);
    n = bl_pp_write(2, (struct sockaddr *)&s4, (struct sockaddr *)&d6, out, sizeof(out));
    ASSERT_EQ(n, 52);
    ASSERT_EQ(bl_pp_parse(out, n, &pi, &reason), 52);
    assert_string_equal(pi.src_ip, "::ffff:10.1.2.3");
    ASSERT_EQ(pi.dst_port, 443);
    /* not IP: UNKNOWN, UNSPEC */
    struct sockaddr su = {.sa_family = AF_UNIX};
    n = bl_pp_write(1, &su, (struct sockaddr *)&d4, out, sizeof(out));
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", n);
    n = bl_pp_write(2, &su, (struct sockaddr *)&d4, out, sizeof(out));
    ASSERT_EQ(n, 16);
    ASSERT_EQ(out[13], 0);
    ASSERT_EQ(bl_pp_write(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, out, 10), 0);
}

/* bl_pp_read on a socket: a header in two pieces, then the client's bytes left in the socket;
 * a malformed one with its bytes for the log; EOF. */
static void test_read_socket(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct bl_pp_info pi;
    const char *reason;
    char seen[80];
    ASSERT_EQ(bl_pp_read(sv[1], &pi, &reason, seen, sizeof(seen)), PP_AGAIN);
    ASSERT_EQ(write(sv[0], "PROXY TCP4 1.2.3.4 ", 19), 19);
    ASSERT_EQ(bl_pp_read(sv[1], &pi, &reason, seen, sizeof(seen)), PP_AGAIN);
    ASSERT_EQ(write(sv[0], "5.6.7.8 1 2\r\nGET /", 18), 18);
    ASSERT_EQ(bl_pp_read(sv[1], &pi, &reason, seen, sizeof(seen)), 1);
    assert_string_equal(pi.src_ip, "1.2.3.4");
    char rest[16];
    ASSERT_EQ(read(sv[1], rest, sizeof(rest)), 5);
    assert_memory_equal(rest, "GET /", 5);
    ASSERT_EQ(write(sv[0], "GET / HTTP/1.1\r\n\x01\"", 18), 18);
    ASSERT_EQ(bl_pp_read(sv[1], &pi, &reason, seen, sizeof(seen)), PP_ERR);
    assert_string_equal(seen, "GET / HTTP/1.1\\x0D\\x0A\\x01\\x22");
    assert_string_equal(reason, "broken header");
    close(sv[0]);
    ASSERT_EQ(read(sv[1], rest, sizeof(rest)), 16);
    ASSERT_EQ(read(sv[1], rest, sizeof(rest)), 2);
    ASSERT_EQ(bl_pp_read(sv[1], &pi, &reason, seen, sizeof(seen)), 0);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6_and_unknown),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_v2_inet),
        cmocka_unit_test(test_v2_local_unspec_unix),
        cmocka_unit_test(test_v2_malformed),
        cmocka_unit_test(test_write_read_back),
        cmocka_unit_test(test_read_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
