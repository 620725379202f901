/* Fuzz target: an HTTP/1.x request head, whole, under the default limits and under small ones
 * (so 414 and 431 are reached too). */
#include <stdlib.h>
#include <string.h>

#include "h1_check.h"

static void parse(const char *buf, size_t len, uint32_t max_line, uint32_t max_head)
{
    static struct bl_h1_message m;
    struct bl_h1_parser p;
    bl_h1_parser_init_request(&p, max_line, max_head);
    int r = bl_h1_parse(&p, buf, len, &m);
    if (r > 0) {
        h1_check_message(&p, buf, len, r, &m);
        FUZZ_CHECK_EQ(bl_h1_parse(&p, buf, len, &m), r); /* idempotent once finished */
    } else if (r == BL_ERR) {
        h1_check_error(&p);
    } else {
        FUZZ_CHECK_EQ(r, BL_AGAIN);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exactly size bytes, so ASan sees any read past the input */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    parse(buf, size, 8192, 65536);
    parse(buf, size, 40, 200);
    free(buf);
    return 0;
}
