/* Request id checks and W3C traceparent parsing and writing (trace.h). */
#include <string.h>

#include "core/status.h"
#include "http/trace.h"

int bl_request_id_valid(const char *s, size_t n)
{
    if (n == 0 || n > BL_REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static inline int lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static inline int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

/* n lowercase hex digits, not all '0'. */
static int hex_field(const char *s, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        if (!lower_hex(s[i]))
            return 0;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

int bl_trace_id_valid(const char *id, size_t n)
{
    return n == 32 && hex_field(id, 32);
}

int bl_traceparent_parse(const char *s, size_t n, struct bl_traceparent *tp)
{
    /* version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 */
    if (n < 55 || !lower_hex(s[0]) || !lower_hex(s[1]) || (s[0] == 'f' && s[1] == 'f'))
        return BL_ERR;
    int v00 = s[0] == '0' && s[1] == '0';
    if ((v00 && n != 55) || (!v00 && n > 55 && s[55] != '-'))
        return BL_ERR;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return BL_ERR;
    if (!hex_field(s + 3, 32) || !hex_field(s + 36, 16) || !lower_hex(s[53]) ||
        !lower_hex(s[54]))
        return BL_ERR;
    memcpy(tp->trace_id, s + 3, 32);
    memcpy(tp->parent_id, s + 36, 16);
    tp->flags = (uint8_t)((hex_value(s[53]) << 4 | hex_value(s[54])) & 0x03);
    return BL_OK;
}

void bl_traceparent_format(char out[55], const char trace_id[32], const char span_id[16],
                           uint8_t flags)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "00-", 3);
    memcpy(out + 3, trace_id, 32);
    out[35] = '-';
    memcpy(out + 36, span_id, 16);
    out[52] = '-';
    out[53] = hex[flags >> 4 & 0xf];
    out[54] = hex[flags & 0xf];
}
