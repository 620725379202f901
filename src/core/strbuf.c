/* Growable text buffer (strbuf.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

void bl_strbuf_free(struct bl_strbuf *sb)
{
    free(sb->data);
    memset(sb, 0, sizeof(*sb));
}

/* Room for n more bytes and a NUL. 0, or -1 (failed set). */
static int reserve(struct bl_strbuf *sb, size_t n)
{
    if (sb->failed)
        return -1;
    if (sb->len + n + 1 <= sb->cap)
        return 0;
    size_t cap = sb->cap ? sb->cap : 4096;
    while (cap < sb->len + n + 1) {
        if (cap > SIZE_MAX / 2) {
            sb->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    char *d = realloc(sb->data, cap);
    if (!d) {
        sb->failed = 1;
        return -1;
    }
    sb->data = d;
    sb->cap = cap;
    return 0;
}

void bl_strbuf_append(struct bl_strbuf *sb, const char *s, size_t n)
{
    if (reserve(sb, n) != 0)
        return;
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void bl_strbuf_puts(struct bl_strbuf *sb, const char *s)
{
    bl_strbuf_append(sb, s, strlen(s));
}

void bl_strbuf_printf(struct bl_strbuf *sb, const char *fmt, ...)
{
    if (sb->failed)
        return;
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->failed = 1;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        bl_strbuf_append(sb, small, (size_t)n);
        return;
    }
    if (reserve(sb, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}
