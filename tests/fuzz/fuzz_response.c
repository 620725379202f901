/* Fuzz target: an HTTP/1.x response head. The first byte says whether it answers a HEAD
 * request (bit 0); the rest is the head. */
#include <stdlib.h>
#include <string.h>

#include "h1_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int head_request = data[0] & 1;
    size_t len = size - 1;
    char *buf = malloc(len ? len : 1);
    memcpy(buf, data + 1, len);
    static struct bl_h1_message m;
    struct bl_h1_parser p;
    bl_h1_parser_init_response(&p, 8192, 65536, head_request);
    int r = bl_h1_parse(&p, buf, len, &m);
    if (r > 0) {
        h1_check_message(&p, buf, len, r, &m);
        if (head_request || m.status < 200 || m.status == 204 || m.status == 304)
            FUZZ_CHECK(m.body == BL_H1_BODY_NONE);
    } else if (r == BL_ERR) {
        h1_check_error(&p);
    } else {
        FUZZ_CHECK_EQ(r, BL_AGAIN);
    }
    free(buf);
    return 0;
}
