/* Fuzz target: the chunked-body scanner, fed whole and then one byte at a time (each byte in
 * its own allocation, so a look back at earlier bytes is caught); both must agree. A body it
 * accepts is then stripped by bl_dechunk(), which must find as many data bytes. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "http/dechunk.h"
#include "http/h1_parser.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct bl_h1_chunked whole;
    int done = 0;
    bl_h1_chunked_init(&whole);
    ssize_t r = bl_h1_chunked_scan(&whole, buf, size, &done);
    if (r == BL_ERR) {
        FUZZ_CHECK(whole.reason != NULL);
    } else {
        FUZZ_CHECK(r >= 0 && (size_t)r <= size);
        if (!done)
            FUZZ_CHECK_EQ(r, size); /* fewer only when the body ends inside buf */
    }
    (void)bl_h1_chunked_state_str(&whole);

    struct bl_h1_chunked one;
    int done1 = 0, err1 = 0;
    size_t used = 0;
    bl_h1_chunked_init(&one);
    for (size_t i = 0; i < size && !done1; i++) {
        char *b = malloc(1);
        b[0] = buf[i];
        ssize_t k = bl_h1_chunked_scan(&one, b, 1, &done1);
        free(b);
        if (k == BL_ERR) {
            err1 = 1;
            break;
        }
        FUZZ_CHECK(k == 0 || k == 1);
        used += (size_t)k;
        if (k == 0)
            FUZZ_CHECK(done1);
    }
    if (r == BL_ERR) {
        FUZZ_CHECK(err1);
    } else {
        FUZZ_CHECK(!err1);
        FUZZ_CHECK_EQ(done1, done);
        FUZZ_CHECK_EQ(used, r);
        FUZZ_CHECK_EQ(one.data_bytes, whole.data_bytes);
    }

    if (r > 0 && r <= (ssize_t)UINT32_MAX) {
        struct bl_dechunk d;
        bl_dechunk_init(&d);
        uint32_t n = bl_dechunk(&d, buf, (uint32_t)r);
        FUZZ_CHECK_EQ(n, whole.data_bytes);
    }
    free(buf);
    return 0;
}
