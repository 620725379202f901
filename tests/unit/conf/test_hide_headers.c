/* Unit tests for nginx's default hidden response fields (src/conf/hide_headers.c): the word
 * compares give what a case-insensitive compare with each listed name gives, for the names in
 * every case and for every byte value put at every position of each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <strings.h>

#include "conf/hide_headers.c"

/* The plain definition: strncasecmp against the table. */
static uint32_t reference(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
        if (hidden[i].len == len && strncasecmp(hidden[i].name, name, len) == 0)
            return hidden[i].bit;
    return 0;
}

static void check(const char *name, size_t len)
{
    uint32_t want = reference(name, len), got = bl_hidden_by_default(name, len);
    if (want != got)
        fail_msg("\"%.*s\" (%zu bytes): %#x, want %#x", (int)len, name, len, got, want);
}

static void test_every_byte_everywhere(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
        size_t len = hidden[i].len;
        char name[32];
        memcpy(name, hidden[i].name, len);
        check(name, len);
        for (size_t k = 0; k < len; k++) /* upper-case, then lower-case */
            name[k] = (char)(name[k] >= 'a' && name[k] <= 'z' ? name[k] - 32 : name[k]);
        check(name, len);
        for (size_t k = 0; k < len; k++)
            name[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
        check(name, len);
        for (size_t pos = 0; pos < len; pos++) {
            for (unsigned c = 0; c < 256; c++) {
                memcpy(name, hidden[i].name, len);
                name[pos] = (char)c;
                check(name, len);
            }
        }
    }
}

static void test_other_names(void **state)
{
    (void)state;
    static const char *const names[] = {"Dat", "Dates", "Content-Type", "Content-Length",
                                        "Servers", "X-Accel-Expirez", "Y-Accel-Expires",
                                        "x-accel-charset", "X-PAD", "x\r-pad", ""};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        check(names[i], strlen(names[i]));
    assert_int_equal(bl_hidden_by_default("x-ACCEL-redirect", 16), BL_HIDE_X_ACCEL_REDIRECT);
    assert_int_equal(bl_hidden_by_default("DATE", 4), BL_HIDE_DATE);
    assert_int_equal(bl_hidden_by_default("\rate", 4), 0);
    assert_int_equal(bl_hidden_by_default("x\rpad", 5), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_byte_everywhere),
        cmocka_unit_test(test_other_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
