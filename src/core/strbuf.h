/* A growable text buffer for output built off the request path (metrics, API answers).
 *
 * Appends never fail loudly: running out of memory sets `failed` and later appends do
 * nothing, so a producer writes straight through and the caller checks once at the end.
 * Owned by one thread at a time.
 */
#ifndef BL_CORE_STRBUF_H
#define BL_CORE_STRBUF_H

#include <stddef.h>
#include <stdint.h>

struct bl_strbuf {
    char *data;          /* NUL-terminated when len > 0; NULL before the first append */
    size_t len;
    size_t cap;
    uint8_t failed;      /* an append ran out of memory: the text is incomplete */
};

/* An empty buffer is a zeroed struct; free with bl_strbuf_free(). */
void bl_strbuf_free(struct bl_strbuf *sb);

void bl_strbuf_append(struct bl_strbuf *sb, const char *s, size_t n);
void bl_strbuf_puts(struct bl_strbuf *sb, const char *s);
void bl_strbuf_printf(struct bl_strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
