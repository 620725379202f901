/* Cache-line-sized allocations for what one worker writes and another thread's objects must
 * not share a line with (false sharing: every write by one core evicts the line from the
 * other's cache).
 *
 * The control thread allocates each worker's state one worker after another, so without this
 * the tail of worker 1's last block and the head of worker 2's first could sit in one 64-byte
 * line. A block from bl_line_calloc() starts on a line and is padded to whole lines, so no
 * other allocation lies in its lines. Freed with free(). Any thread.
 */
#ifndef BL_CORE_LINE_H
#define BL_CORE_LINE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BL_CACHE_LINE 64u

/* n * size zeroed bytes, line-aligned and rounded up to whole lines (at least one); NULL when
 * out of memory or when n * size overflows. */
static inline void *bl_line_calloc(size_t n, size_t size)
{
    if (size && n > (SIZE_MAX - BL_CACHE_LINE) / size)
        return NULL;
    size_t bytes = (n * size + BL_CACHE_LINE - 1) / BL_CACHE_LINE * BL_CACHE_LINE;
    if (!bytes)
        bytes = BL_CACHE_LINE;
    void *p = aligned_alloc(BL_CACHE_LINE, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

#endif
