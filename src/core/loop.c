/* Event loop, the generic part: run loop, lazy timer heap, deferred frees. The readiness
 * backends are #included below; each loop runs one, chosen when it is created
 * (docs/internals.md, "Event loop"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/line.h"
#include "core/loop.h"
#include "core/status.h"
#include "core/sys.h"

#include <sys/socket.h>
#include <sys/uio.h>

/* bl_loop_send where nothing is staged: the owners' plain write (proxy.c's before the seam):
 * bytes written (> 0), BL_AGAIN (nothing went) or BL_ERR (errno). Pieces that come to at most
 * BL_LOOP_SEND_STAGE bytes (a head and a small body) are copied together and go as one send:
 * sendmsg's message header and iovec import cost more than the copy of a hot stack buffer
 * (perf at 200 connections on epoll: ____sys_sendmsg and its callers, bench/RESULTS.md
 * "one send"), as io_uring's staged sends copy them too. */
static ssize_t loop_writev_now(int fd, const struct iovec *iov, int n)
{
    ssize_t w;
    char one[BL_LOOP_SEND_STAGE];
    struct iovec gathered;
    if (n > 1) {
        size_t total = 0;
        for (int k = 0; k < n; k++)
            total += iov[k].iov_len;
        if (total <= sizeof(one)) {
            gathered = (struct iovec){.iov_base = one, .iov_len = 0};
            for (int k = 0; k < n; k++) {
                memcpy(one + gathered.iov_len, iov[k].iov_base, iov[k].iov_len);
                gathered.iov_len += iov[k].iov_len;
            }
            iov = &gathered;
            n = 1;
        }
    }
    do
        w = n == 1 ? bl_sys_send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                   : bl_sys_sendv(fd, iov, n);
    while (w < 0 && errno == EINTR);
    if (w > 0)
        return w;
    if (w == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
        return BL_AGAIN;
    return BL_ERR;
}

/* The backends define struct loop_epoll / loop_uring and static loop_epoll_* / loop_uring_*
 * functions. Included, not linked, so the compiler inlines them into bl_loop_run: no indirect
 * call per event. A unit test may define BL_LOOP_BACKEND as another file (struct
 * loop_backend, loop_backend_*) to drive the generic part with scripted events; it then
 * stands in for every method. */
#ifdef BL_LOOP_BACKEND
#include BL_LOOP_BACKEND
#else
#include "core/loop_epoll.c" /* NOLINT(bugprone-suspicious-include): the backend seam, one
                             * translation unit (DESIGN.md) */
#include "core/loop_uring.c" /* NOLINT(bugprone-suspicious-include): the same */
#endif

struct bl_loop {
    int running;
    enum bl_loop_method method;
    struct bl_timer **heap;          /* min-heap on heap_when */
    uint32_t nheap, heap_cap;
    struct bl_deferred *deferred;
    char fallback[160];              /* why io_uring was refused; "" if it was not */
    union {
#ifdef BL_LOOP_BACKEND
        struct loop_backend fake;
#else
        struct loop_epoll ep;
        struct loop_uring ur;
#endif
    } b;
};

/* Per-call dispatch: one predictable branch on the method. The run loop below is stamped
 * out once per method, so the per-event path has none. */
#ifdef BL_LOOP_BACKEND
#define BE(l, op, ...) loop_backend_##op(&(l)->b.fake, ##__VA_ARGS__)
#define BE_RUN(l, uring, op, ...) loop_backend_##op(&(l)->b.fake, ##__VA_ARGS__)
#else
#define BE(l, op, ...)                                                                       \
    ((l)->method == BL_LOOP_IO_URING ? loop_uring_##op(&(l)->b.ur, ##__VA_ARGS__)            \
                                     : loop_epoll_##op(&(l)->b.ep, ##__VA_ARGS__))
#define BE_RUN(l, uring, op, ...)                                                            \
    ((uring) ? loop_uring_##op(&(l)->b.ur, ##__VA_ARGS__)                                    \
             : loop_epoll_##op(&(l)->b.ep, ##__VA_ARGS__))
#endif

struct bl_loop *bl_loop_create_method(enum bl_loop_method m, char *err, unsigned long errlen)
{
    /* written every turn: its own cache lines, not shared with the next worker's loop */
    struct bl_loop *l = bl_line_calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
#ifndef BL_LOOP_BACKEND
    if (m == BL_LOOP_IO_URING) {
        char why[sizeof(l->fallback)];
        if (loop_uring_init(&l->b.ur, why, sizeof(why)) == BL_OK) {
            l->method = BL_LOOP_IO_URING;
            return l;
        }
        snprintf(l->fallback, sizeof(l->fallback), "%s", why);
    }
#else
    (void)m;
#endif
    l->method = BL_LOOP_EPOLL;
    if (BE(l, init, err, errlen) != BL_OK) {
        free(l);
        return NULL;
    }
    return l;
}

struct bl_loop *bl_loop_create(char *err, unsigned long errlen)
{
    return bl_loop_create_method(BL_LOOP_EPOLL, err, errlen);
}

enum bl_loop_method bl_loop_method(const struct bl_loop *l) { return l->method; }

const char *bl_loop_fallback(const struct bl_loop *l)
{
    return l->fallback[0] ? l->fallback : NULL;
}

static void run_deferred(struct bl_loop *l);

void bl_loop_destroy(struct bl_loop *l)
{
    if (!l)
        return;
    run_deferred(l);
    BE(l, free);
    free(l->heap);
    free(l);
}

int bl_loop_add(struct bl_loop *l, struct bl_io *io)
{
    return BE(l, add, io, 1);
}

int bl_loop_add_level(struct bl_loop *l, struct bl_io *io)
{
    return BE(l, add, io, 0);
}

int bl_loop_add_accept(struct bl_loop *l, struct bl_io *io, bl_accept_handler handler)
{
#ifdef BL_LOOP_BACKEND
    (void)l, (void)io, (void)handler;
    return BL_AGAIN;
#else
    if (l->method != BL_LOOP_IO_URING)
        return BL_AGAIN;
    return loop_uring_add_accept(&l->b.ur, io, handler);
#endif
}

ssize_t bl_loop_send(struct bl_loop *l, struct bl_io *io, const struct iovec *iov, int n)
{
#ifndef BL_LOOP_BACKEND
    if (l->method == BL_LOOP_IO_URING)
        return loop_uring_send(&l->b.ur, io, iov, n);
#endif
    (void)l;
    return loop_writev_now(io->fd, iov, n);
}

int bl_loop_add_recv(struct bl_loop *l, struct bl_io *io)
{
#ifndef BL_LOOP_BACKEND
    if (l->method == BL_LOOP_IO_URING)
        return loop_uring_add_recv(&l->b.ur, io);
#endif
    return BE(l, add, io, 1);
}

ssize_t bl_loop_recv(struct bl_loop *l, struct bl_io *io, void *buf, size_t len, int flags)
{
#ifndef BL_LOOP_BACKEND
    if (l->method == BL_LOOP_IO_URING)
        return loop_uring_recv(&l->b.ur, io, buf, len, flags);
#endif
    (void)l;
    return bl_sys_recv(io->fd, buf, len, flags);
}

int bl_loop_recv_pause(struct bl_loop *l, struct bl_io *io, int on)
{
#ifndef BL_LOOP_BACKEND
    if (l->method == BL_LOOP_IO_URING)
        return loop_uring_recv_pause(&l->b.ur, io, on);
#endif
    (void)l, (void)io, (void)on;
    return 1;
}

int bl_loop_reads(const struct bl_loop *l, const struct bl_io *io)
{
#ifndef BL_LOOP_BACKEND
    if (l->method == BL_LOOP_IO_URING)
        return loop_uring_reads(&l->b.ur, io);
#endif
    (void)l, (void)io;
    return 0;
}

int bl_loop_send_busy(struct bl_loop *l, const struct bl_io *io)
{
#ifndef BL_LOOP_BACKEND
    if (l->method == BL_LOOP_IO_URING)
        return loop_uring_send_busy(&l->b.ur, io);
#endif
    (void)l, (void)io;
    return 0;
}

void bl_loop_shutdown_wr(struct bl_loop *l, struct bl_io *io)
{
#ifndef BL_LOOP_BACKEND
    if (l->method == BL_LOOP_IO_URING) {
        loop_uring_shutdown_wr(&l->b.ur, io);
        return;
    }
#endif
    (void)l;
    shutdown(io->fd, SHUT_WR);
}

void bl_loop_del(struct bl_loop *l, struct bl_io *io)
{
    BE(l, del, io);
}

void bl_loop_close(struct bl_loop *l, struct bl_io *io)
{
    if (io->fd < 0)
        return;
    BE(l, close, io);
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
    if (t->heap_index) {
        t->when = when_ms;
        if (when_ms >= t->heap_when)
            return;                /* lazy: re-sorted only if it reaches the top early */
        /* Earlier than where the heap has it: move it up in place (a decrease-key). */
        t->heap_when = when_ms;
        heap_up(l, t->heap_index - 1);
        return;
    }
    t->when = when_ms;
    if (heap_insert(l, t) != BL_OK) {
        /* Out of memory for the heap: fire soon rather than never. The handler re-checks. */
        t->when = 0;
    }
}

void bl_timer_disarm(struct bl_loop *l, struct bl_timer *t)
{
    (void)l;
    t->when = 0; /* run_timers drops it when its old deadline reaches the top */
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
            if (t->when == 0) { /* disarmed (bl_timer_disarm) */
                heap_remove(l, t);
                continue;
            }
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

/* The run loop, stamped out per backend (uring is a constant at each call site). An event
 * may come back without an io: io_uring drops a stale one (its fd was closed in this batch). */
static inline __attribute__((always_inline)) void run_with(struct bl_loop *l, const int uring)
{
    l->running = 1;
    uint64_t now = bl_clock_update();
    while (l->running) {
        int n = BE_RUN(l, uring, poll, next_timeout(l, now));
        now = bl_clock_update();
        for (int i = 0; i < n; i++) {
            /* Prefetch ahead of the handlers (core/loop.h, "Prefetch"). */
            if (i + 2 < n) {
                const struct bl_io *ahead = BE_RUN(l, uring, peek, i + 2);
                if (ahead) { /* the io and the line after it: the owner's pointers */
                    __builtin_prefetch(ahead);
                    __builtin_prefetch((const char *)ahead + 64);
                }
            }
            if (i + 1 < n) {
                const struct bl_io *next = BE_RUN(l, uring, peek, i + 1);
                if (next && next->prefetch)
                    next->prefetch(next);
            }
            uint32_t ev = 0;
            struct bl_io *io = BE_RUN(l, uring, event, i, &ev);
            if (io && io->handler)
                io->handler(io, ev);
        }
        run_deferred(l);
        run_timers(l, now);
        run_deferred(l);
    }
    BE_RUN(l, uring, flush);
}

void bl_loop_run(struct bl_loop *l)
{
    if (l->method == BL_LOOP_IO_URING)
        run_with(l, 1);
    else
        run_with(l, 0);
}
