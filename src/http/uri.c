/* Path normalization for matching (nginx's ngx_http_parse_complex_uri, simplified). */
#include <string.h>

#include "core/status.h"
#include "core/units.h"
#include "http/uri.h"

int bl_uri_needs_normalize(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '%')
            return 1;
        if (p[i] == '/' && i + 1 < len && (p[i + 1] == '/' || p[i + 1] == '.'))
            return 1;
    }
    return 0;
}

int bl_uri_normalize(const char *p, size_t len, char *out, size_t *outlen)
{
    /* First decode and merge slashes, then resolve dot segments on the result, so that
     * "%2e%2e" and "%2F" count as what they decode to. */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '%') {
            if (i + 2 >= len)
                return BL_ERR;
            int hi = bl_hex_digit(p[i + 1]), lo = bl_hex_digit(p[i + 2]);
            if (hi < 0 || lo < 0)
                return BL_ERR;
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                return BL_ERR;
            i += 2;
        }
        if (c == '/' && n > 0 && out[n - 1] == '/')
            continue;
        out[n++] = c;
    }
    if (n == 0 || out[0] != '/')
        return BL_ERR;
    /* Dot segments, in place: out[0..n) -> out[0..k). */
    size_t k = 0, i = 0;
    while (i < n) {
        /* at a '/' that starts a segment */
        size_t seg = i + 1, end = seg;
        while (end < n && out[end] != '/')
            end++;
        size_t slen = end - seg;
        if (slen == 1 && out[seg] == '.') {
            if (end == n)
                out[k++] = '/'; /* "/a/." is "/a/" */
        } else if (slen == 2 && out[seg] == '.' && out[seg + 1] == '.') {
            if (k == 0)
                return BL_ERR; /* above the root */
            while (k > 0 && out[k - 1] != '/')
                k--;
            if (k > 0)
                k--; /* drop the previous segment and its slash */
            if (end == n)
                out[k++] = '/';
        } else {
            memmove(out + k, out + i, end - i);
            k += end - i;
        }
        i = end;
    }
    if (k == 0)
        out[k++] = '/';
    *outlen = k;
    return BL_OK;
}

size_t bl_uri_escape(const char *p, size_t len, char *out, size_t cap)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c && strchr("-._~!$&'()*+,;=:@/", c));
        if (plain) {
            if (n < cap)
                out[n] = (char)c;
            n++;
        } else {
            if (n + 2 < cap) {
                out[n] = '%';
                out[n + 1] = digits[c >> 4];
                out[n + 2] = digits[c & 15];
            }
            n += 3;
        }
    }
    return n;
}
