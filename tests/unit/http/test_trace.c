/* Request id checks and W3C traceparent: what a receiver must accept and refuse (the spec's
 * rules one by one), what ballast writes, and the per-thread generator's output form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/rand.h"
#include "http/trace.c"

#define TP_OK "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int parse(const char *s, struct bl_traceparent *tp)
{
    return bl_traceparent_parse(s, strlen(s), tp);
}

static void test_request_id_valid(void **state)
{
    (void)state;
    const char *good[] = {"a", "0123456789abcdef0123456789abcdef",
                          "550e8400-e29b-41d4-a716-446655440000", "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                          "req_1.2-X", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!bl_request_id_valid(good[i], strlen(good[i])))
            fail_msg("\"%s\" refused", good[i]);
    const char *bad[] = {"", "a b", "a\"b", "a\\b", "id;x", "caf\xc3\xa9", "a\x01", "a/b",
                         "a+b=", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (bl_request_id_valid(bad[i], strlen(bad[i])))
            fail_msg("\"%s\" accepted", bad[i]);
}

static void test_traceparent_valid(void **state)
{
    (void)state;
    struct bl_traceparent tp;
    assert_int_equal(parse(TP_OK, &tp), BL_OK);
    assert_memory_equal(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", 32);
    assert_memory_equal(tp.parent_id, "00f067aa0ba902b7", 16);
    assert_int_equal(tp.flags, 1);
    /* not sampled; unknown flag bits are dropped, known ones kept */
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &tp), BL_OK);
    assert_int_equal(tp.flags, 0);
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &tp), BL_OK);
    assert_int_equal(tp.flags, 3);
    /* a later version: its first fields are read, what follows a '-' ignored */
    assert_int_equal(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &tp), BL_OK);
    assert_int_equal(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever",
                           &tp), BL_OK);
    assert_memory_equal(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", 32);
}

static void test_traceparent_invalid(void **state)
{
    (void)state;
    struct bl_traceparent tp;
    const char *bad[] = {
        "",
        "00",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",       /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",     /* 00 is 55 bytes */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",      /* version ff */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",     /* later: '-' after */
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",      /* uppercase */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",      /* zero trace-id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",      /* zero parent-id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], &tp) != BL_ERR)
            fail_msg("\"%s\" accepted", bad[i]);
    /* every single-byte change of a valid value that breaks its form is refused */
    char s[56];
    for (size_t k = 0; k < 55; k++) {
        strcpy(s, TP_OK);
        s[k] = 'X';
        if (parse(s, &tp) != BL_ERR)
            fail_msg("\"%s\" accepted", s);
    }
}

static void test_traceparent_format_round_trip(void **state)
{
    (void)state;
    char out[56];
    bl_traceparent_format(out, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1);
    out[55] = 0;
    assert_string_equal(out, TP_OK);
    struct bl_traceparent tp;
    for (int i = 0; i < 1000; i++) {
        char trace[32], span[16];
        bl_rand_hex(trace, 16);
        bl_rand_hex(span, 8);
        bl_traceparent_format(out, trace, span, (uint8_t)(i & 1));
        if (!bl_trace_id_valid(trace, 32))
            continue; /* all zeros: 2^-128 */
        assert_int_equal(bl_traceparent_parse(out, 55, &tp), BL_OK);
        assert_memory_equal(tp.trace_id, trace, 32);
        assert_memory_equal(tp.parent_id, span, 16);
        assert_int_equal(tp.flags, i & 1);
    }
}

/* Generated ids: lowercase hex, and no repeats in a run of them. */
static void test_rand_hex(void **state)
{
    (void)state;
    static char ids[4096][33];
    for (int i = 0; i < 4096; i++) {
        bl_rand_hex(ids[i], 16);
        ids[i][32] = 0;
        for (int k = 0; k < 32; k++)
            if (!strchr("0123456789abcdef", ids[i][k]))
                fail_msg("id %s is not lowercase hex", ids[i]);
    }
    for (int i = 0; i < 4096; i++)
        for (int k = i + 1; k < 4096; k++)
            if (strcmp(ids[i], ids[k]) == 0)
                fail_msg("id %s repeated", ids[i]);
    /* each hex digit turns up about as often as the others */
    unsigned count[16] = {0};
    for (int i = 0; i < 4096; i++)
        for (int k = 0; k < 32; k++)
            count[strchr("0123456789abcdef", ids[i][k]) - "0123456789abcdef"]++;
    for (int d = 0; d < 16; d++)
        if (count[d] < 7000 || count[d] > 9400)
            fail_msg("digit %x: %u of 131072", d, count[d]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_id_valid),
        cmocka_unit_test(test_traceparent_valid),
        cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_traceparent_format_round_trip),
        cmocka_unit_test(test_rand_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
