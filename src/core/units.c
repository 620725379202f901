/* nginx's number, size and time syntax. */
#include "core/status.h"
#include "core/units.h"

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

int bl_parse_time_ms(const char *s, uint64_t bare_unit_ms, uint64_t max_ms, uint64_t *out)
{
    uint64_t total = 0;
    const char *p = s;
    if (!*p)
        return BL_ERR;
    while (*p) {
        if (!is_digit(*p))
            return BL_ERR;
        uint64_t v = 0;
        while (is_digit(*p)) {
            v = v * 10 + (uint64_t)(*p++ - '0');
            if (v > max_ms)
                return BL_ERR;
        }
        uint64_t mult;
        if (p[0] == 'm' && p[1] == 's') {
            mult = 1;
            p += 2;
        } else if (*p == 's') {
            mult = 1000;
            p++;
        } else if (*p == 'm') {
            mult = 60000;
            p++;
        } else if (*p == 'h') {
            mult = 3600000;
            p++;
        } else if (*p == 'd') {
            mult = 86400000;
            p++;
        } else if (*p == 'w') {
            mult = 7 * 86400000ull;
            p++;
        } else if (!*p) {
            mult = bare_unit_ms; /* "1m30": the trailing number is in the bare unit */
        } else {
            return BL_ERR;
        }
        if (v > max_ms / mult)
            return BL_ERR;
        total += v * mult;
        if (total > max_ms)
            return BL_ERR;
    }
    *out = total;
    return BL_OK;
}

int bl_parse_size(const char *s, uint64_t *out)
{
    const char *p = s;
    uint64_t v = 0;
    if (!is_digit(*p))
        return BL_ERR;
    while (is_digit(*p)) {
        v = v * 10 + (uint64_t)(*p++ - '0');
        if (v > (1ull << 40))
            return BL_ERR;
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0':
        break;
    case 'k': case 'K':
        shift = 10;
        p++;
        break;
    case 'm': case 'M':
        shift = 20;
        p++;
        break;
    case 'g': case 'G':
        shift = 30;
        p++;
        break;
    default:
        return BL_ERR;
    }
    if (*p || v > (1ull << 40) >> shift)
        return BL_ERR;
    *out = v << shift;
    return BL_OK;
}

int bl_parse_uint(const char *s, uint64_t min, uint64_t max, int allow_percent, uint64_t *out)
{
    const char *p = s;
    uint64_t v = 0;
    if (!is_digit(*p))
        return BL_ERR;
    while (is_digit(*p)) {
        v = v * 10 + (uint64_t)(*p++ - '0');
        if (v > max)
            return BL_ERR;
    }
    if (allow_percent && *p == '%')
        p++;
    if (*p || v < min)
        return BL_ERR;
    *out = v;
    return BL_OK;
}
