/* Unit tests for the per-thread generator's hex ids (src/core/rand.c): lower-case hex only,
 * exactly 2n digits written, and every digit value at every position. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/rand.h"

static void test_hex_digits(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 24; n++) {
        unsigned seen[48] = {0}; /* a bit per digit value, per position */
        for (int round = 0; round < 2000; round++) {
            char buf[64];
            memset(buf, '#', sizeof(buf));
            bl_rand_hex(buf + 4, n);
            for (size_t k = 0; k < 4; k++)
                assert_int_equal(buf[k], '#');
            for (size_t k = 4 + 2 * n; k < sizeof(buf); k++)
                assert_int_equal(buf[k], '#'); /* nothing past the 2n digits */
            for (size_t k = 0; k < 2 * n; k++) {
                char c = buf[4 + k];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (d < 0)
                    fail_msg("n %zu: byte %zu is 0x%02x, not a lower-case hex digit", n, k,
                             (unsigned char)c);
                seen[k] |= 1u << d;
            }
        }
        for (size_t k = 0; k < 2 * n; k++)
            if (seen[k] != 0xffff)
                fail_msg("n %zu: position %zu saw digits %#x, want all 16", n, k, seen[k]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
