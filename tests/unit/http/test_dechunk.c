/* De-chunking in place: whole, cut at every byte, and one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/dechunk.c"

static const struct {
    const char *in;
    const char *out;
} cases[] = {
    {"5\r\nhello\r\n0\r\n\r\n", "hello"},
    {"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n", "abcde"},
    {"A\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n", "0123456789x"},
    {"0\r\n\r\n", ""},
};

/* Feeds the input in pieces of the given sizes (0 = the rest) and returns the output. */
static void run(const char *in, size_t cut, size_t step, char *out, size_t *outlen)
{
    struct bl_dechunk d;
    bl_dechunk_init(&d);
    size_t len = strlen(in), pos = 0;
    *outlen = 0;
    while (pos < len) {
        size_t n = pos == 0 && cut ? cut : (step ? step : len - pos);
        if (n > len - pos)
            n = len - pos;
        char piece[256];
        memcpy(piece, in + pos, n);
        uint32_t k = bl_dechunk(&d, piece, (uint32_t)n);
        memcpy(out + *outlen, piece, k);
        *outlen += k;
        pos += n;
    }
    out[*outlen] = '\0';
}

static void test_dechunk(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        size_t n;
        run(cases[i].in, 0, 0, out, &n);
        assert_string_equal(out, cases[i].out);
        run(cases[i].in, 0, 1, out, &n);
        assert_string_equal(out, cases[i].out);
        for (size_t cut = 1; cut < strlen(cases[i].in); cut++) {
            run(cases[i].in, cut, 0, out, &n);
            assert_string_equal(out, cases[i].out);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_dechunk)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
