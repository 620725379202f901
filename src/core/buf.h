/* Fixed-size I/O buffers from a per-thread free list.
 *
 * Every buffer has the same capacity, bl_buf_size(), set once at start-up with
 * bl_buf_set_size() before any worker runs. A thread keeps free buffers for reuse, as many as
 * it had in use at once lately and at least BL_BUF_CACHE (core/freelist.h), and returns the
 * rest to malloc, so idle connections, which hold no buffer, cost no buffer memory. The free list is a thread-local: docs/internals.md, "Per-thread state", says
 * why. With -DBL_NO_POOL every get/put is a malloc/free so AddressSanitizer sees each buffer's
 * lifetime.
 */
#ifndef BL_CORE_BUF_H
#define BL_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BL_BUF_CACHE 64   /* kept free even when idle */

struct bl_buf {
    uint32_t start;          /* first unread byte */
    uint32_t end;            /* one past the last byte */
    uint32_t cap;            /* bytes in data[] */
    uint32_t pad;
    struct bl_buf *next;     /* link of the large buffers' free list */
    char data[];
};

#define BL_BUF_MIN_SIZE (32 * 1024)

/* Sets the capacity of every buffer to at least `bytes` (which should cover the largest
 * request or response head plus slack): never below BL_BUF_MIN_SIZE, rounded up to 4 KiB.
 * Called once by main, before any thread takes a buffer; BL_ERR (nothing changed) when called
 * again or after the first bl_buf_get(). Main thread only. */
int bl_buf_set_size(uint32_t bytes);

/* Capacity of every buffer, bytes (BL_BUF_MIN_SIZE until bl_buf_set_size()). Any thread. */
uint32_t bl_buf_size(void);

/* Returns an empty buffer (start = end = 0) or NULL when out of memory. Any thread; the free
 * list is the calling thread's. */
struct bl_buf *bl_buf_get(void);

/* Large buffers, for a body that streams through: BL_BUF_LARGE_SIZE bytes (or bl_buf_size()
 * when that is larger), from a second, smaller per-thread free list (BL_BUF_LARGE_CACHE). A
 * 1 GiB response relayed through 256 KiB instead of 32 KiB takes an eighth of the recv and
 * send calls (bench/RESULTS.md, "Large bodies"); memory stays one buffer per direction. Any
 * thread; give it back with bl_buf_put(). NULL when out of memory. */
#define BL_BUF_LARGE_SIZE (256 * 1024)
#define BL_BUF_LARGE_CACHE 4
struct bl_buf *bl_buf_get_large(void);

/* Capacity of a large buffer. Any thread. */
uint32_t bl_buf_large_size(void);

/* Gives b back (NULL is fine); a large buffer goes back to its own list. */
void bl_buf_put(struct bl_buf *b);

/* Once a second on a worker: the free list's cap follows the buffers in use at once during
 * the last two seconds; the surplus goes back to malloc (counted by bl_buf_overflow). */
void bl_buf_tick(void);

/* Frees this thread's cached buffers (at thread exit). */
void bl_buf_drain(void);

/* Buffers this thread has handed back to malloc, and taken from it, since the last call;
 * resets both. The worker uses them to give freed memory back to the kernel once a burst is
 * over (malloc_trim), not while it lasts. */
void bl_buf_overflow(uint32_t *freed, uint32_t *allocated);

static inline uint32_t bl_buf_len(const struct bl_buf *b) { return b->end - b->start; }
static inline uint32_t bl_buf_room(const struct bl_buf *b) { return b->cap - b->end; }

#endif
