/* A free list of same-sized objects whose size follows demand.
 *
 * A fixed cap is wrong both ways: 16 requests or 64 buffers are too few for 200 connections
 * with a request in flight each (the surplus went through malloc and free on every burst, and
 * glibc trimmed the arena with madvise between bursts: bench/RESULTS.md, "the gap to the
 * floor"), and a cap sized for the busiest moment would keep that memory forever. So the list
 * keeps up to the most objects that were in use at once during the last two tick intervals
 * (never fewer than `min`): under steady load nothing is allocated, and within two ticks of
 * the load ending (the worker ticks once a second) the surplus goes back to malloc.
 *
 * One owner thread. The free objects' addresses sit in an array, not in the objects: taking
 * one reads nothing of it and giving one back writes nothing into it, so a cold object costs
 * no load miss here (the caller's first touch is usually a store). A prefetch of the object
 * the next take returns was tried and gained nothing (bench/RESULTS.md, "cache misses").
 * With -DBL_NO_POOL nothing is kept (AddressSanitizer then sees every object's lifetime). */
#ifndef BL_CORE_FREELIST_H
#define BL_CORE_FREELIST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct bl_freelist {
    void **items;        /* free objects, items[n - 1] taken next */
    uint32_t n;          /* objects on the list */
    uint32_t cap;        /* room in items[] */
    uint32_t min;        /* kept even when idle */
    uint32_t limit;      /* the list's cap: max(min, peak, prev_peak) */
    int32_t in_use;      /* taken and not given back (may dip below 0 when another thread's
                          * object is given here: clamped where it is read) */
    int32_t peak;        /* most in use at once since the last tick */
    int32_t prev_peak;   /* ... during the tick interval before */
};

#define BL_FREELIST_INIT(min_) {.min = (min_), .limit = (min_)}

/* A free object, or NULL when the list is empty (the caller allocates one). Either way the
 * object the caller ends up with counts as in use. */
static inline void *bl_freelist_take(struct bl_freelist *f)
{
    if (++f->in_use > f->peak)
        f->peak = f->in_use;
#ifndef BL_NO_POOL
    if (f->n) {
        void *p = f->items[--f->n];
        return p;
    }
#endif
    return NULL;
}

/* Takes p back: 1 when kept, 0 when the list is full (the caller frees p). */
static inline int bl_freelist_give(struct bl_freelist *f, void *p)
{
    f->in_use--;
#ifndef BL_NO_POOL
    if (f->n < f->limit) {
        if (f->n == f->cap) {
            /* Grows with the demand it follows (limit), rarely: doubling. */
            uint32_t cap = f->cap ? f->cap * 2 : (f->limit > 16 ? f->limit : 16);
            void **items = realloc(f->items, (size_t)cap * sizeof(*items));
            if (!items)
                return 0;
            f->items = items;
            f->cap = cap;
        }
        f->items[f->n++] = p;
        return 1;
    }
#endif
    return 0;
}

/* Once per interval: the cap follows the last two intervals' peaks; what the list holds
 * beyond it goes to free_one. Returns how many were freed. */
static inline uint32_t bl_freelist_tick(struct bl_freelist *f, void (*free_one)(void *))
{
    uint32_t peak = (uint32_t)(f->peak > f->prev_peak ? f->peak : f->prev_peak);
    f->limit = peak > f->min ? peak : f->min;
    f->prev_peak = f->peak;
    f->peak = f->in_use > 0 ? f->in_use : 0;
    uint32_t freed = 0;
    while (f->n > f->limit) {
        free_one(f->items[--f->n]);
        freed++;
    }
    return freed;
}

/* Frees every object on the list, and the list (thread or owner exit). */
static inline void bl_freelist_drain(struct bl_freelist *f, void (*free_one)(void *))
{
    while (f->n)
        free_one(f->items[--f->n]);
    free(f->items);
    f->items = NULL;
    f->cap = 0;
}

#endif
