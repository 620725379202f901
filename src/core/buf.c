/* Per-thread buffer free lists. */
#include <stdatomic.h>
#include <stdlib.h>

#include "core/buf.h"
#include "core/freelist.h"
#include "core/status.h"

/* Written once by bl_buf_set_size() before the workers start (thread creation orders it before
 * their reads); `fixed` makes a second setting, or one after buffers exist, an error instead
 * of buffers of two sizes. */
static uint32_t buf_size = BL_BUF_MIN_SIZE;
static atomic_int fixed;

int bl_buf_set_size(uint32_t bytes)
{
    if (atomic_exchange_explicit(&fixed, 1, memory_order_relaxed))
        return BL_ERR;
    if (bytes < BL_BUF_MIN_SIZE)
        bytes = BL_BUF_MIN_SIZE;
    buf_size = (bytes + 4095) & ~4095u;
    return BL_OK;
}

uint32_t bl_buf_size(void) { return buf_size; }

/* Thread-locals: docs/internals.md, "Per-thread state". */
static _Thread_local struct bl_freelist bufs = BL_FREELIST_INIT(BL_BUF_CACHE);
static _Thread_local uint32_t overflow_freed, overflow_allocated;
static _Thread_local struct bl_buf *large_list;
static _Thread_local uint32_t nlarge;

uint32_t bl_buf_large_size(void)
{
    return buf_size > BL_BUF_LARGE_SIZE ? buf_size : BL_BUF_LARGE_SIZE;
}

/* A large buffer is one whose capacity is BL_BUF_LARGE_SIZE while ordinary ones are smaller
 * (with ordinary buffers of that size or more, large ones are ordinary ones). */
static inline int is_large(const struct bl_buf *b)
{
    return buf_size < BL_BUF_LARGE_SIZE && b->cap == BL_BUF_LARGE_SIZE;
}

struct bl_buf *bl_buf_get_large(void)
{
    if (buf_size >= BL_BUF_LARGE_SIZE)
        return bl_buf_get();
    struct bl_buf *b;
#ifndef BL_NO_POOL
    if (large_list) {
        b = large_list;
        large_list = b->next;
        nlarge--;
        b->start = b->end = 0;
        b->next = NULL;
        return b;
    }
#endif
    b = malloc(sizeof(*b) + BL_BUF_LARGE_SIZE);
    if (!b)
        return NULL;
    overflow_allocated++;
    b->start = b->end = 0;
    b->cap = BL_BUF_LARGE_SIZE;
    b->next = NULL;
    return b;
}

struct bl_buf *bl_buf_get(void)
{
    struct bl_buf *b = bl_freelist_take(&bufs);
    if (b) {
        b->start = b->end = 0;
        b->next = NULL;
        return b;
    }
    if (bl_unlikely(!atomic_load_explicit(&fixed, memory_order_relaxed)))
        atomic_store_explicit(&fixed, 1, memory_order_relaxed);
    b = malloc(sizeof(*b) + buf_size);
    if (!b) {
        bufs.in_use--;
        return NULL;
    }
    overflow_allocated++;
    b->start = b->end = 0;
    b->cap = buf_size;
    b->next = NULL;
    return b;
}

void bl_buf_put(struct bl_buf *b)
{
    if (!b)
        return;
    if (is_large(b)) {
#ifndef BL_NO_POOL
        if (nlarge < BL_BUF_LARGE_CACHE) {
            b->next = large_list;
            large_list = b;
            nlarge++;
            return;
        }
#endif
        overflow_freed++;
        free(b);
        return;
    }
    if (bl_freelist_give(&bufs, b))
        return;
    overflow_freed++;
    free(b);
}

void bl_buf_tick(void)
{
    overflow_freed += bl_freelist_tick(&bufs, free);
}

void bl_buf_overflow(uint32_t *freed, uint32_t *allocated)
{
    *freed = overflow_freed;
    *allocated = overflow_allocated;
    overflow_freed = overflow_allocated = 0;
}

void bl_buf_drain(void)
{
    bl_freelist_drain(&bufs, free);
    while (large_list) {
        struct bl_buf *b = large_list;
        large_list = b->next;
        free(b);
    }
    nlarge = 0;
}
