/* Per-thread buffer free lists. */
#include <stdlib.h>

#include "core/buf.h"

uint32_t bl_buf_size = 32 * 1024;

static _Thread_local struct bl_buf *free_list;
static _Thread_local uint32_t nfree;
static _Thread_local uint32_t overflow_freed, overflow_allocated;

struct bl_buf *bl_buf_get(void)
{
    struct bl_buf *b;
#ifndef BL_NO_POOL
    if (free_list) {
        b = free_list;
        free_list = b->next;
        nfree--;
        b->start = b->end = 0;
        b->next = NULL;
        return b;
    }
#endif
    b = malloc(sizeof(*b) + bl_buf_size);
    if (!b)
        return NULL;
    overflow_allocated++;
    b->start = b->end = 0;
    b->cap = bl_buf_size;
    b->next = NULL;
    return b;
}

void bl_buf_put(struct bl_buf *b)
{
    if (!b)
        return;
#ifndef BL_NO_POOL
    if (nfree < BL_BUF_CACHE) {
        b->next = free_list;
        free_list = b;
        nfree++;
        return;
    }
#endif
    overflow_freed++;
    free(b);
}

void bl_buf_overflow(uint32_t *freed, uint32_t *allocated)
{
    *freed = overflow_freed;
    *allocated = overflow_allocated;
    overflow_freed = overflow_allocated = 0;
}

void bl_buf_drain(void)
{
    while (free_list) {
        struct bl_buf *b = free_list;
        free_list = b->next;
        free(b);
    }
    nfree = 0;
}
