/* gzip: Accept-Encoding parsing (q=0 honoured) and the compressor's framing, inflated back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "http/gzip.h"

static void test_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int want;
    } cases[] = {
        {"gzip", 1}, {"GZip", 1}, {"gzip, deflate, br", 1}, {"br;q=1.0, gzip;q=0.8", 1},
        {"x-gzip", 1}, {"*", 1}, {"deflate, *;q=0.1", 1}, {"gzip ; q=0.001", 1},
        {"gzip;q=1", 1}, {"gzip;level=1;q=0.5", 1},
        {"", 0}, {"identity", 0}, {"br, deflate", 0}, {"gzip;q=0", 0}, {"gzip; q=0.0", 0},
        {"gzip;Q=0.000", 0}, {"*;q=0", 0}, {"gzip;q=0, *", 0}, {"*, gzip;q=0", 0},
        {"gzipx", 0}, {"xgzip", 0}, {"gzi", 0}, {",,,", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (bl_gzip_accepted(cases[i].v, strlen(cases[i].v)) != cases[i].want)
            fail_msg("\"%s\": want %d", cases[i].v, cases[i].want);
    }
}

/* Compresses n bytes fed in pieces of step, collects the output, unframes chunks when
 * chunked, and inflates it back. */
static void round_trip(int chunked, size_t n, size_t step)
{
    char *in = malloc(n), *wire = malloc(n + 65536), *out = malloc(n + 1);
    assert_non_null(in);
    assert_non_null(wire);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        in[i] = (char)("abcdefgh ijk\n"[i % 13] + (i / 1000) % 3);
    struct bl_gzip *g = bl_gzip_new(6, chunked);
    assert_non_null(g);
    size_t off = 0, wlen = 0;
    while (!bl_gzip_done(g)) {
        size_t len = n - off < step ? n - off : step;
        int finish = off + len == n;
        uint32_t used = 0;
        assert_int_equal(bl_gzip_feed(g, in + off, (uint32_t)len, finish, &used), 0);
        off += used;
        struct bl_buf *o = bl_gzip_out(g);
        assert_true(wlen + bl_buf_len(o) <= n + 65536);
        memcpy(wire + wlen, o->data + o->start, bl_buf_len(o));
        wlen += bl_buf_len(o);
        o->start = o->end;
    }
    assert_int_equal(off, n);
    size_t glen = wlen;
    if (chunked) {
        /* chunks: "HEX\r\n" DATA "\r\n" ... "0\r\n\r\n" */
        size_t r = 0;
        glen = 0;
        for (;;) {
            char *end;
            unsigned long sz = strtoul(wire + r, &end, 16);
            assert_memory_equal(end, "\r\n", 2);
            r = (size_t)(end - wire) + 2;
            if (sz == 0) {
                assert_memory_equal(wire + r, "\r\n", 2);
                assert_int_equal(r + 2, wlen);
                break;
            }
            memmove(wire + glen, wire + r, sz);
            glen += sz;
            r += sz;
            assert_memory_equal(wire + r, "\r\n", 2);
            r += 2;
        }
    }
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)wire;
    z.avail_in = (uInt)glen;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)n + 1;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(z.total_out, n);
    assert_memory_equal(out, in, n);
    inflateEnd(&z);
    bl_gzip_free(g);
    free(in);
    free(wire);
    free(out);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip(1, 0, 1);
    round_trip(0, 0, 1);
    round_trip(1, 100, 7);
    round_trip(0, 300000, 65536);
    round_trip(1, 300000, 65536);
    round_trip(1, 1 << 20, 1 << 20);
}

/* One-shot compression (pages and texts ballast makes): inflates back; too small an output
 * is refused rather than cut. */
static void test_compress_whole(void **state)
{
    (void)state;
    char in[3000], z[4096], back[4096];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)('a' + i % 7);
    size_t n = bl_gzip_compress(1, in, sizeof(in), z, sizeof(z));
    assert_true(n > 18 && n < sizeof(in));
    assert_int_equal((unsigned char)z[0], 0x1f); /* a gzip member */
    assert_int_equal((unsigned char)z[1], 0x8b);
    z_stream s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(inflateInit2(&s, 15 + 16), Z_OK);
    s.next_in = (Bytef *)z;
    s.avail_in = (uInt)n;
    s.next_out = (Bytef *)back;
    s.avail_out = sizeof(back);
    assert_int_equal(inflate(&s, Z_FINISH), Z_STREAM_END);
    assert_int_equal(s.total_out, sizeof(in));
    inflateEnd(&s);
    assert_memory_equal(back, in, sizeof(in));
    assert_int_equal(bl_gzip_compress(6, in, sizeof(in), z, 10), 0);
    assert_true(bl_gzip_compress(9, "", 0, z, sizeof(z)) > 0); /* an empty member */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_compress_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
