/* Fuzz target: ssl_preread's ClientHello reader (core/tls_hello.h). Every prefix of a hello it
 * reads must say "need more"; once a prefix is refused every longer one is too; what it reads
 * is NUL-terminated text inside its fields (the name lowercased, no NUL inside); and a refusal
 * leaves every field empty. */
#include <stdlib.h>
#include <string.h>

#include "core/tls_hello.h"
#include "fuzz.h"

static void check_fields(const struct bl_tls_hello *h)
{
    FUZZ_CHECK(memchr(h->server_name, 0, sizeof(h->server_name)) != NULL);
    FUZZ_CHECK(memchr(h->alpn, 0, sizeof(h->alpn)) != NULL);
    FUZZ_CHECK(memchr(h->protocol, 0, sizeof(h->protocol)) != NULL);
    for (const char *p = h->server_name; *p; p++)
        FUZZ_CHECK(!(*p >= 'A' && *p <= 'Z'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct bl_tls_hello h, part;
    int r = bl_tls_hello_parse(buf, size, &h);
    FUZZ_CHECK(r == 0 || r == -1 || r == -2);
    check_fields(&h);
    if (r != 0)
        FUZZ_CHECK(!h.server_name[0] && !h.alpn[0] && !h.protocol[0]);
    if (size >= BL_TLS_HELLO_MAX)
        FUZZ_CHECK(r != -2);
    /* prefixes (at most 512 of them, spread), each in an exact-size copy */
    size_t step = size / 512 + 1;
    int refused = 0;
    for (size_t k = 0; k < size; k += step) {
        uint8_t *p = malloc(k ? k : 1);
        memcpy(p, buf, k);
        int rk = bl_tls_hello_parse(p, k, &part);
        free(p);
        if (refused)
            FUZZ_CHECK_EQ(rk, -1);
        if (rk == -1)
            refused = 1;
        if (rk == 0) /* a complete hello in a prefix: the same answer for the whole */
            FUZZ_CHECK_EQ(r, 0);
    }
    if (refused)
        FUZZ_CHECK_EQ(r, -1);
    free(buf);
    return 0;
}
