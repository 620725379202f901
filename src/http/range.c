/* Entity tags, HTTP dates and Range fields for static files (range.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/range.h"

static size_t skip_sp(const char *v, size_t len, size_t i)
{
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    return i;
}

/* Digits at v[*i]: BL_OK with the value, or -1 when there are none or they overflow. */
static int read_num(const char *v, size_t len, size_t *i, uint64_t *out)
{
    size_t k = *i;
    uint64_t n = 0;
    if (k >= len || v[k] < '0' || v[k] > '9')
        return -1;
    for (; k < len && v[k] >= '0' && v[k] <= '9'; k++) {
        if (n > (UINT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (uint64_t)(v[k] - '0');
    }
    *i = k;
    *out = n;
    return 0;
}

int bl_range_parse(const char *v, size_t len, uint64_t size, struct bl_range *out, int max,
                   int *n)
{
    *n = 0;
    if (len < 6 || strncasecmp(v, "bytes=", 6) != 0)
        return BL_RANGE_IGNORE;
    uint64_t total = 0;
    size_t i = 6;
    for (;;) {
        uint64_t start = 0, end = 0; /* end exclusive, as nginx computes it */
        int suffix = 0;
        i = skip_sp(v, len, i);
        if (i < len && v[i] == '-') {
            suffix = 1;
            i++;
        } else {
            if (read_num(v, len, &i, &start) < 0)
                return BL_RANGE_NONE;
            i = skip_sp(v, len, i);
            if (i >= len || v[i] != '-')
                return BL_RANGE_NONE;
            i = skip_sp(v, len, i + 1);
            if (i >= len || v[i] == ',') {
                end = size; /* "N-": to the end */
                goto found;
            }
        }
        if (read_num(v, len, &i, &end) < 0)
            return BL_RANGE_NONE;
        i = skip_sp(v, len, i);
        if (i < len && v[i] != ',')
            return BL_RANGE_NONE;
        if (suffix) {
            start = end < size ? size - end : 0;
            end = size ? size - 1 : 0;
        }
        end = end >= size ? size : end + 1;
    found:
        if (start < end) {
            if (*n == max)
                return BL_RANGE_IGNORE;
            out[*n].first = start;
            out[*n].last = end - 1;
            (*n)++;
            total += end - start;
        } else if (start == 0) {
            /* "bytes=0-" or "-N" of an empty file: the whole (empty) file */
            *n = 0;
            return BL_RANGE_IGNORE;
        }
        if (i >= len)
            break;
        i++; /* the ',' */
    }
    if (*n == 0)
        return BL_RANGE_NONE;
    if (total > size) {
        *n = 0;
        return BL_RANGE_IGNORE;
    }
    return BL_RANGE_OK;
}

size_t bl_etag_make(char *out, size_t cap, int64_t mtime, uint64_t size)
{
    int n = snprintf(out, cap, "\"%llx-%llx\"", (unsigned long long)mtime,
                     (unsigned long long)size);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

int bl_etag_match(const char *v, size_t len, const char *etag, size_t elen, int weak)
{
    size_t i = 0;
    for (;;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i >= len)
            return 0;
        if (v[i] == '*')
            return 1;
        int is_weak = 0;
        if (i + 2 <= len && v[i] == 'W' && v[i + 1] == '/') {
            is_weak = 1;
            i += 2;
        }
        if (i >= len || v[i] != '"')
            return 0; /* not a list of tags: nothing matches */
        size_t start = i++;
        while (i < len && v[i] != '"')
            i++;
        if (i >= len)
            return 0;
        i++;
        size_t tlen = i - start;
        if ((weak || !is_weak) && tlen == elen && memcmp(v + start, etag, elen) == 0)
            return 1;
    }
}
