/* Event loop, the generic part: run loop, lazy timer heap, deferred frees. The readiness
 * backend is #included below and chosen at compile time (docs/internals.md, "Event loop"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/loop.h"
#include "core/status.h"

/* Defines struct loop_backend and the static loop_backend_* functions. Included, not linked,
 * so the compiler inlines them into bl_loop_run: no indirect call per event. A unit test may
 * define BL_LOOP_BACKEND as another file to drive the generic part with scripted events. */
#ifdef BL_LOOP_BACKEND
#include BL_LOOP_BACKEND
#else
#include "core/loop_epoll.c" /* NOLINT(bugprone-suspicious-include): the backend seam, one
                             * translation unit (DESIGN.md) */
#endif

struct bl_loop {
    int running;
    struct bl_timer **heap;          /* min-heap on heap_when */
    uint32_t nheap, heap_cap;
    struct bl_deferred *deferred;
    struct loop_backend backend;
};

struct bl_loop *bl_loop_create(char *err, unsigned long errlen)
{
    struct bl_loop *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (loop_backend_init(&l->backend, err, errlen) != BL_OK) {
        free(l);
        return NULL;
    }
    return l;
}

static void run_deferred(struct bl_loop *l);

void bl_loop_destroy(struct bl_loop *l)
{
    if (!l)
        return;
    run_deferred(l);
    loop_backend_free(&l->backend);
    free(l->heap);
    free(l);
}

int bl_loop_add(struct bl_loop *l, struct bl_io *io)
{
    return loop_backend_add(&l->backend, io, 1);
}

int bl_loop_add_level(struct bl_loop *l, struct bl_io *io)
{
    return loop_backend_add(&l->backend, io, 0);
}

void bl_loop_del(struct bl_loop *l, struct bl_io *io)
{
    loop_backend_del(&l->backend, io);
}

void bl_loop_close(struct bl_loop *l, struct bl_io *io)
{
    if (io->fd < 0)
        return;
    loop_backend_close(&l->backend, io);
    io->fd = -1;
}

/* ---- timer heap ---- */

static void heap_place(struct bl_loop *l, uint32_t i, struct bl_timer *t)
{
    l->heap[i] = t;
    t->heap_index = i + 1;
}

static void heap_up(struct bl_loop *l, uint32_t i)
{
    struct bl_timer *t = l->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (l->heap[parent]->heap_when <= t->heap_when)
            break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void heap_down(struct bl_loop *l, uint32_t i)
{
    struct bl_timer *t = l->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= l->nheap)
            break;
        if (c + 1 < l->nheap && l->heap[c + 1]->heap_when < l->heap[c]->heap_when)
            c++;
        if (t->heap_when <= l->heap[c]->heap_when)
            break;
        heap_place(l, i, l->heap[c]);
        i = c;
    }
    heap_place(l, i, t);
}

static void heap_remove(struct bl_loop *l, struct bl_timer *t)
{
    uint32_t i = t->heap_index - 1;
    t->heap_index = 0;
    l->nheap--;
    if (i == l->nheap)
        return;
    heap_place(l, i, l->heap[l->nheap]);
    heap_up(l, i);
    heap_down(l, l->heap[i]->heap_index - 1);
}

static int heap_insert(struct bl_loop *l, struct bl_timer *t)
{
    if (l->nheap == l->heap_cap) {
        uint32_t cap = l->heap_cap ? l->heap_cap * 2 : 256;
        struct bl_timer **h = realloc(l->heap, cap * sizeof(*h));
        if (!h)
            return BL_ERR;
        l->heap = h;
        l->heap_cap = cap;
    }
    t->heap_when = t->when;
    heap_place(l, l->nheap++, t);
    heap_up(l, l->nheap - 1);
    return BL_OK;
}

void bl_timer_set(struct bl_loop *l, struct bl_timer *t, uint64_t when_ms)
{
    if (when_ms == 0)
        when_ms = 1;
    if (t->heap_index && when_ms >= t->heap_when) {
        t->when = when_ms;         /* lazy: re-sorted only if it reaches the top early */
        return;
    }
    if (t->heap_index)
        heap_remove(l, t);
    t->when = when_ms;
    if (heap_insert(l, t) != BL_OK) {
        /* Out of memory for the heap: fire soon rather than never. The handler re-checks. */
        t->when = 0;
    }
}

void bl_timer_cancel(struct bl_loop *l, struct bl_timer *t)
{
    if (t->heap_index)
        heap_remove(l, t);
    t->when = 0;
}

static void run_timers(struct bl_loop *l, uint64_t now)
{
    while (l->nheap) {
        struct bl_timer *t = l->heap[0];
        if (t->heap_when > now)
            break;
        if (t->when != t->heap_when) {
            /* Moved later since it was inserted: re-sort before firing, so that timers that
             * are both due still fire in deadline order. */
            t->heap_when = t->when;
            heap_down(l, 0);
            continue;
        }
        heap_remove(l, t);
        t->when = 0;
        t->handler(t);
    }
}

static int next_timeout(struct bl_loop *l, uint64_t now)
{
    if (l->deferred)
        return 0;
    if (!l->nheap)
        return 1000;
    uint64_t when = l->heap[0]->heap_when;
    if (when <= now)
        return 0;
    uint64_t d = when - now;
    return d > 1000 ? 1000 : (int)d;
}

void bl_loop_defer(struct bl_loop *l, struct bl_deferred *d)
{
    d->next = l->deferred;
    l->deferred = d;
}

static void run_deferred(struct bl_loop *l)
{
    while (l->deferred) {
        struct bl_deferred *d = l->deferred;
        l->deferred = d->next;
        d->next = NULL;
        d->run(d);
    }
}

void bl_loop_stop(struct bl_loop *l) { l->running = 0; }

void bl_loop_run(struct bl_loop *l)
{
    l->running = 1;
    uint64_t now = bl_clock_update();
    while (l->running) {
        int n = loop_backend_poll(&l->backend, next_timeout(l, now));
        now = bl_clock_update();
        for (int i = 0; i < n; i++) {
            uint32_t ev;
            struct bl_io *io = loop_backend_event(&l->backend, i, &ev);
            if (io->handler)
                io->handler(io, ev);
        }
        run_deferred(l);
        run_timers(l, now);
        run_deferred(l);
    }
}
