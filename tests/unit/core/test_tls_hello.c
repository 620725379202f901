/* ssl_preread's ClientHello reader: real OpenSSL hellos cut at every byte, split over records,
 * and bytes that are not a ClientHello. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "assert_eq.h"
#include "core/tls_hello.c"
#include "hello_samples.h"

static void test_sni_alpn_at_every_cut(void **state)
{
    (void)state;
    struct bl_tls_hello h;
    for (size_t cut = 0; cut < sizeof(hello_sni_alpn); cut++)
        ASSERT_EQ(bl_tls_hello_parse(hello_sni_alpn, cut, &h), HELLO_AGAIN);
    ASSERT_EQ(bl_tls_hello_parse(hello_sni_alpn, sizeof(hello_sni_alpn), &h), 0);
    assert_string_equal(h.server_name, "backend-a.example");
    assert_string_equal(h.alpn, "h2,http/1.1");
    assert_string_equal(h.protocol, "TLSv1.3");
}

static void test_plain_tls12(void **state)
{
    (void)state;
    struct bl_tls_hello h;
    ASSERT_EQ(bl_tls_hello_parse(hello_plain12, sizeof(hello_plain12), &h), 0);
    assert_string_equal(h.server_name, "");
    assert_string_equal(h.alpn, "");
    assert_string_equal(h.protocol, "TLSv1.2");
}

/* The same handshake message in two records (split at every point of its body). */
static void test_split_records(void **state)
{
    (void)state;
    const uint8_t *hs = hello_sni_alpn + 5;
    size_t hl = sizeof(hello_sni_alpn) - 5;
    uint8_t b[sizeof(hello_sni_alpn) + 5];
    for (size_t at = 1; at < hl; at += 7) {
        memcpy(b, hello_sni_alpn, 3);
        b[3] = (uint8_t)(at >> 8);
        b[4] = (uint8_t)at;
        memcpy(b + 5, hs, at);
        memcpy(b + 5 + at, hello_sni_alpn, 3);
        b[8 + at] = (uint8_t)((hl - at) >> 8);
        b[9 + at] = (uint8_t)(hl - at);
        memcpy(b + 10 + at, hs + at, hl - at);
        struct bl_tls_hello h;
        ASSERT_EQ(bl_tls_hello_parse(b, 5 + at, &h), HELLO_AGAIN);
        ASSERT_EQ(bl_tls_hello_parse(b, sizeof(b) - 1, &h), HELLO_AGAIN);
        ASSERT_EQ(bl_tls_hello_parse(b, sizeof(b), &h), 0);
        assert_string_equal(h.server_name, "backend-a.example");
    }
}

static void test_not_hello(void **state)
{
    (void)state;
    struct bl_tls_hello h;
    static const struct {
        const char *b;
        size_t n;
    } bad[] = {
        {"GET / HTTP/1.1\r\n", 16},
        {"\x16\x02", 2},                       /* not TLS 1.x */
        {"\x15\x03\x01\x00\x02", 5},           /* an alert */
        {"\x16\x03\x01\x00\x00", 5},           /* an empty record */
        {"\x16\x03\x01\x00\x04\x02\x00\x00\x00", 9}, /* a ServerHello */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(bl_tls_hello_parse((const uint8_t *)bad[i].b, bad[i].n, &h), HELLO_ERR);
    /* lengths that run past the message: every length byte of the hello made too large */
    uint8_t b[sizeof(hello_sni_alpn)];
    memcpy(b, hello_sni_alpn, sizeof(b));
    b[5 + 4 + 2 + 32] = 33; /* session id longer than 32 */
    ASSERT_EQ(bl_tls_hello_parse(b, sizeof(b), &h), HELLO_ERR);
    assert_string_equal(h.server_name, "");
    /* any single byte changed: never a crash, never a name that is not in the bytes */
    for (size_t i = 0; i < sizeof(b); i++) {
        memcpy(b, hello_sni_alpn, sizeof(b));
        b[i] ^= 0xA5;
        int rc = bl_tls_hello_parse(b, sizeof(b), &h);
        assert_true(rc == 0 || rc == HELLO_ERR || rc == HELLO_AGAIN);
    }
    /* never AGAIN once the buffer is full */
    static uint8_t big[BL_TLS_HELLO_MAX + 10];
    big[0] = 0x16;
    big[1] = 3;
    big[3] = 0x40;
    big[5] = 1;
    big[6] = 0x01; /* a 64 KiB+ hello */
    ASSERT_EQ(bl_tls_hello_parse(big, sizeof(big), &h), HELLO_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sni_alpn_at_every_cut),
        cmocka_unit_test(test_plain_tls12),
        cmocka_unit_test(test_split_records),
        cmocka_unit_test(test_not_hello),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
