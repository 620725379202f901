/* nginx's number, size and time syntax, shared by every directive parser. Pure functions; any
 * thread. Each returns BL_OK with *out set, or BL_ERR (out untouched). */
#ifndef BL_CORE_UNITS_H
#define BL_CORE_UNITS_H

#include <stdint.h>

/* "30s", "500ms", "1m30s", "2h", "1d", "1w". A number without a unit counts in bare_unit_ms:
 * 1000 for nginx's directives (seconds), 1 for nginx_upstream_check_module's (milliseconds).
 * Totals above max_ms are refused. */
int bl_parse_time_ms(const char *s, uint64_t bare_unit_ms, uint64_t max_ms, uint64_t *out);

/* "1024", "8k", "1m", "1g" (either case), at most 1 TiB. */
int bl_parse_size(const char *s, uint64_t *out);

/* A plain decimal in [min, max]; with allow_percent a trailing '%' is accepted ("10%"). */
int bl_parse_uint(const char *s, uint64_t min, uint64_t max, int allow_percent, uint64_t *out);

/* Value of a hex digit, or -1. */
static inline int bl_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
