/* Fuzz target: Cache-Control and HTTP-date parsing (cache/cache_control.h). Byte 0 picks the
 * parser: even, Cache-Control (the rest as one field, then cut in two fields at byte 1's
 * position, which must not find a directive the whole did not, except at the cut); odd, an
 * HTTP-date and a delta-seconds. Checks: delta values saturate at 2^31, a parsed date formats
 * back to a date that parses to the same second. */
#include <stdlib.h>
#include <string.h>

#include "cache/cache_control.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int which = data[0] & 1;
    size_t cut = data[1];
    size -= 2;
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data + 2, size);
    if (which == 0) {
        struct bl_cc cc = {0};
        bl_cc_parse(&cc, buf, size);
        FUZZ_CHECK(!(cc.flags & BL_CC_MAX_AGE) || cc.max_age <= 2147483648u);
        FUZZ_CHECK(!(cc.flags & BL_CC_S_MAXAGE) || cc.s_maxage <= 2147483648u);
        if (cut > size)
            cut = size;
        /* the same bytes as two fields, each in its own allocation */
        char *a = malloc(cut ? cut : 1), *b = malloc(size - cut ? size - cut : 1);
        memcpy(a, buf, cut);
        memcpy(b, buf + cut, size - cut);
        struct bl_cc two = {0};
        bl_cc_parse(&two, a, cut);
        bl_cc_parse(&two, b, size - cut);
        free(a);
        free(b);
        /* a flag-only directive found whole is found in pieces too unless the cut split it
         * or a quoted string: no check of equality, only that parsing stays in bounds */
        (void)two;
    } else {
        int64_t t = bl_http_date_parse(buf, size);
        FUZZ_CHECK(t >= -1);
        if (t >= 0) {
            char out[29];
            bl_http_date_format(t, out);
            FUZZ_CHECK_EQ(bl_http_date_parse(out, sizeof(out)), t);
        }
        int64_t d = bl_cc_delta(buf, size);
        FUZZ_CHECK(d >= -1 && d <= 2147483648LL);
    }
    free(buf);
    return 0;
}
