/* Fuzz target: the request-path normalizer and escaper. The normal form is never longer than
 * the path, starts with '/', has no "//" and no "." or ".." segment; a path that does not need
 * normalizing comes out as it went in; an escaped path decodes back to the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "http/uri.h"
#include "fuzz.h"

static void check_normal(const char *s, size_t n)
{
    FUZZ_CHECK(n >= 1 && s[0] == '/');
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '/')
            continue;
        FUZZ_CHECK(i + 1 >= n || s[i + 1] != '/');
        size_t seg = i + 1, e = seg;
        while (e < n && s[e] != '/')
            e++;
        FUZZ_CHECK(!(e - seg == 1 && s[seg] == '.'));
        FUZZ_CHECK(!(e - seg == 2 && s[seg] == '.' && s[seg + 1] == '.'));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || data[0] != '/')
        return 0;
    char *in = malloc(size);
    memcpy(in, data, size);
    char *out = malloc(size);
    size_t outlen = 0;
    int needs = bl_uri_needs_normalize(in, size);
    if (bl_uri_normalize(in, size, out, &outlen) == BL_OK) {
        FUZZ_CHECK(outlen <= size);
        check_normal(out, outlen);
        if (!needs)
            FUZZ_CHECK(outlen == size && memcmp(out, in, size) == 0);

        /* an escaped NUL is refused by design, so a raw one cannot make the round trip */
        if (memchr(out, '\0', outlen))
            goto done;
        size_t cap = 3 * outlen;
        char *esc = malloc(cap ? cap : 1);
        size_t elen = bl_uri_escape(out, outlen, esc, cap);
        FUZZ_CHECK(elen <= cap);
        FUZZ_CHECK(!memchr(esc, ' ', elen) && !memchr(esc, '?', elen) && !memchr(esc, '#', elen));
        char *back = malloc(elen ? elen : 1);
        size_t blen = 0;
        /* the escaped form of a normal path is itself normal once decoded */
        FUZZ_CHECK_EQ(bl_uri_normalize(esc, elen, back, &blen), BL_OK);
        FUZZ_CHECK(blen == outlen && memcmp(back, out, outlen) == 0);
        free(back);
        free(esc);
    } else {
        FUZZ_CHECK(needs);
    }
done:
    free(out);
    free(in);
    return 0;
}
