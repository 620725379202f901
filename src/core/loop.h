/* Per-thread event loop: edge-triggered readiness, a timer heap, deferred frees.
 *
 * An fd is registered once (bl_loop_add) for both directions, edge-triggered; its owner keeps
 * its own "ready" flags and never asks the kernel again until the next edge, so the loop makes
 * no epoll_ctl per request. Timers are lazy: moving a deadline later costs nothing until the
 * timer reaches the top of the heap. Owned and used by one thread only.
 *
 * The readiness backend (epoll today) is chosen at compile time behind this API; see
 * docs/internals.md, "Event loop", for the seam and what a second backend must provide.
 */
#ifndef BL_CORE_LOOP_H
#define BL_CORE_LOOP_H

#include <stdint.h>

#define BL_EV_READ  0x1u   /* readable, or the peer closed its side */
#define BL_EV_WRITE 0x2u   /* writable */
#define BL_EV_ERROR 0x4u   /* error or hang-up: the next read or write reports it */
#define BL_EV_HUP   0x8u   /* the peer closed its side: a short read is not the end of input,
                            * read on until it returns 0 */

struct bl_io;
typedef void (*bl_io_handler)(struct bl_io *io, uint32_t events);

struct bl_io {
    int fd;
    bl_io_handler handler;   /* called with BL_EV_* bits */
};

struct bl_timer;
typedef void (*bl_timer_handler)(struct bl_timer *t);

struct bl_timer {
    uint64_t when;           /* deadline in ms (bl_clock_ms scale); 0 = not armed */
    uint64_t heap_when;      /* deadline the heap is ordered by (<= when) */
    uint32_t heap_index;     /* position in the heap + 1; 0 = not in the heap */
    bl_timer_handler handler;
};

struct bl_deferred {
    struct bl_deferred *next;
    void (*run)(struct bl_deferred *d);
};

struct bl_loop;

/* Creates a loop; NULL with err filled on failure. */
struct bl_loop *bl_loop_create(char *err, unsigned long errlen);
void bl_loop_destroy(struct bl_loop *l);

/* Registers io->fd for edge-triggered read and write readiness. BL_OK or BL_ERR (errno). */
int bl_loop_add(struct bl_loop *l, struct bl_io *io);
/* Registers io->fd for level-triggered reads only (listeners, eventfd). */
int bl_loop_add_level(struct bl_loop *l, struct bl_io *io);
/* Unregisters (needed only for an fd that stays open, e.g. a listener being paused). */
void bl_loop_del(struct bl_loop *l, struct bl_io *io);
/* Closes io->fd, registered or not, and sets it to -1 (nothing when already -1). A backend
 * that queues work per fd (io_uring) cancels it here, so registered fds are best closed this
 * way rather than with close(). */
void bl_loop_close(struct bl_loop *l, struct bl_io *io);

/* Arms or moves timer t to fire at when_ms. */
void bl_timer_set(struct bl_loop *l, struct bl_timer *t, uint64_t when_ms);
void bl_timer_cancel(struct bl_loop *l, struct bl_timer *t);
static inline int bl_timer_armed(const struct bl_timer *t) { return t->when != 0; }

/* Runs d->run(d) after the current batch of events: objects whose fd may still have events
 * pending in this batch are freed this way. */
void bl_loop_defer(struct bl_loop *l, struct bl_deferred *d);

/* Runs until bl_loop_stop(). Updates the thread's cached clock once per turn. */
void bl_loop_run(struct bl_loop *l);
void bl_loop_stop(struct bl_loop *l);

#endif
