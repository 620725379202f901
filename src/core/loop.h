/* Per-thread event loop: edge-triggered readiness, a timer heap, deferred frees.
 *
 * An fd is registered once (bl_loop_add) for both directions, edge-triggered; its owner keeps
 * its own "ready" flags and never asks the kernel again until the next edge, so the loop makes
 * no epoll_ctl per request. Timers are lazy: moving a deadline later costs nothing until the
 * timer reaches the top of the heap. Owned and used by one thread only.
 *
 * Two readiness backends sit behind this API, chosen per loop when it is created (the config's
 * `events { use epoll | io_uring; }`): epoll, the default, and io_uring. Both are compiled into
 * loop.c and inlined into its run loop; see docs/internals.md, "Event loop".
 *
 * io_uring, the plan and where it stands (issue 14). The seam is readiness-based: the loop says
 * "readable"/"writable" and the owner calls recv()/send()/accept() itself, keeping its own
 * ready flags. The target is a completion design (multishot accept, multishot recv into
 * provided buffers, batched sends, one io_uring_enter per turn), which changes who does the
 * I/O, so it comes in steps that each pass every test under both backends:
 *   Step 1 (done): a readiness backend on io_uring. A connection is one multishot
 *     IORING_OP_POLL_ADD (edge-like: one CQE per wake-up, re-armed when the kernel ends it);
 *     a level fd (listener, eventfd) a one-shot poll re-armed each time it fires, which is
 *     level semantics. Registrations, cancels and re-arms are SQEs queued during the turn and
 *     submitted with the wait in one io_uring_enter (the wait's timeout rides on it: timers
 *     need no SQE). Syscalls: epoll's epoll_ctl per connection goes into the batch; recv/send
 *     stay the owners'. Every registered fd must be closed with bl_loop_close(): an armed poll
 *     holds a reference to the file, so a plain close() would keep the socket open.
 *   Step 2 (done): completion ops for the hot paths, next to the readiness seam,
 *     each measured against step 1 and epoll in the same run (bench/RESULTS.md, "io_uring
 *     step 2"):
 *     2a. Multishot accept (bl_loop_add_accept): a listener is one IORING_OP_ACCEPT with
 *       IORING_ACCEPT_MULTISHOT; the loop hands each connection to the worker's accept
 *       handler (worker.c on_accepted), no accept4. It takes every connection that comes, so
 *       within 512 connections of worker_connections the worker goes back to readiness and
 *       accept4, which stops exactly at the limit; connections a cancelled accept hands back
 *       (a burst larger than that before the worker's turn) wait open in the listener
 *       (held) as they would in the listen queue. A kernel without it (EINVAL)
 *       turns the registration into the level poll of step 1.
 *     2b. Staged sends (bl_loop_send): the HTTP/1 client and upstream sides' small writes
 *       (a head and a small body, up to BL_LOOP_SEND_STAGE bytes) are copied and go out as
 *       IORING_OP_SEND (MSG_DONTWAIT, not SEND_ZC) with the turn's one io_uring_enter: no
 *       sendto/writev of their own. What the socket refuses waits for the poll's EPOLLOUT;
 *       a close with bytes left keeps the fd until they went (URING_LINGER_MS at most).
 *       TLS, HTTP/2 streams, sendfile and large writes stay plain writes (after what is
 *       staged: bl_loop_send_busy, bl_loop_shutdown_wr).
 *   Step 3: multishot recv into a ring of provided buffers (bl_loop_add_recv, bl_loop_recv),
 *     for plain HTTP/1 (and h2c) clients and plain upstream connections: their recv(2) goes,
 *     the bytes come with the turn's io_uring_enter. TLS and PROXY-protocol clients, TLS
 *     upstreams, L4 streams and checks keep readiness (OpenSSL and the PROXY header reader
 *     read the socket themselves). Measured in bench/RESULTS.md, "io_uring step 3".
 * Until io_uring wins everywhere, epoll stays the default.
 */
#ifndef BL_CORE_LOOP_H
#define BL_CORE_LOOP_H

#include <stdint.h>
#include <sys/types.h>

struct iovec;

#define BL_EV_READ  0x1u   /* readable, or the peer closed its side */
#define BL_EV_WRITE 0x2u   /* writable */
#define BL_EV_ERROR 0x4u   /* error or hang-up: the next read or write reports it */
#define BL_EV_HUP   0x8u   /* the peer closed its side: a short read is not the end of input,
                            * read on until it returns 0 */

struct bl_io;
typedef void (*bl_io_handler)(struct bl_io *io, uint32_t events);
typedef void (*bl_io_prefetch)(const struct bl_io *io);

/* Prefetch. A turn hands out a batch of events (about 30 under load, up to 512), and the work
 * between two turns (the kernel's, other processes') evicts a connection's objects from the
 * caches, so each handler would start with cache misses on its owner's objects: at 200
 * connections the first touches of the request, its buffers and its upstream connection were
 * about a quarter of ballast's user-space time per request (bench/RESULTS.md, "cache misses").
 * So the run loop prefetches ahead of the handlers: the io of the event two places ahead
 * (its cache line and the next, where owners keep their pointers), and for the next event it
 * calls io->prefetch, which may read io's own struct (already on its way) and
 * __builtin_prefetch what the handler will touch next. A
 * prefetch hook must not write, act, or read anything beyond its own struct: its io may have
 * been closed by an earlier handler of the batch (its memory stays valid until the batch's
 * deferred frees, but what it points to may not). */
struct bl_io {
    int fd;
    bl_io_handler handler;   /* called with BL_EV_* bits */
    bl_io_prefetch prefetch; /* NULL or the owner's prefetch hook (above) */
    uint64_t loop_slot;      /* the backend's handle while registered (io_uring); 0 = none */
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

enum bl_loop_method {
    BL_LOOP_EPOLL = 0,       /* `use epoll;`, the default */
    BL_LOOP_IO_URING = 1,    /* `use io_uring;` */
};

/* Creates an epoll loop; NULL with err filled on failure. */
struct bl_loop *bl_loop_create(char *err, unsigned long errlen);
/* Creates a loop with method m. When the kernel refuses io_uring (ENOSYS, EPERM from
 * kernel.io_uring_disabled or a seccomp filter, ...), the loop falls back to epoll and
 * bl_loop_fallback() says why; the caller warns. NULL with err filled on failure. */
struct bl_loop *bl_loop_create_method(enum bl_loop_method m, char *err, unsigned long errlen);
/* The method the loop runs. */
enum bl_loop_method bl_loop_method(const struct bl_loop *l);
/* Why an io_uring loop fell back to epoll ("Operation not permitted ..."), or NULL. */
const char *bl_loop_fallback(const struct bl_loop *l);
void bl_loop_destroy(struct bl_loop *l);

/* Registers io->fd for edge-triggered read and write readiness. BL_OK or BL_ERR (errno).
 * The loop's own thread registers and closes; another thread may register and unregister
 * too (a reload builds a generation's eventfds on the control thread): io_uring queues those
 * for the owner's next turn. With io_uring an invalid fd is reported as BL_EV_ERROR on the
 * next turn rather than as BL_ERR here. */
int bl_loop_add(struct bl_loop *l, struct bl_io *io);
/* Registers io->fd for level-triggered reads only (listeners, eventfd). */
int bl_loop_add_level(struct bl_loop *l, struct bl_io *io);
/* Completion-style accept (io_uring; step 2 above). handler(io, fd) for each connection the
 * kernel accepted on the listener io->fd (non-blocking, close-on-exec; the handler owns fd, and
 * gets its peer with getpeername: a multishot accept returns no address), handler(io, -errno)
 * when accepting failed (EMFILE, ...): the loop accepts again unless the handler calls
 * bl_loop_del. Returns BL_OK, or BL_AGAIN where the loop accepts no other way than readiness
 * (epoll, a kernel that refused multishot accept once, a call from another thread): the
 * caller registers with bl_loop_add_level. io->handler stays the readiness handler: a kernel
 * that refuses at run time (before 5.19: EINVAL) turns the registration into a level one
 * without telling the caller. bl_loop_del cancels it; the connections the kernel accepted
 * before the cancel ran are handed to handler from inside bl_loop_del, so a handler that
 * pauses its listener must be ready to hold them. The loop's own thread only. */
typedef void (*bl_accept_handler)(struct bl_io *io, int res);
int bl_loop_add_accept(struct bl_loop *l, struct bl_io *io, bl_accept_handler handler);
/* Completion-style send (io_uring; step 2 above), for an fd registered with bl_loop_add.
 * Returns what a non-blocking writev would: bytes taken (> 0; fewer than offered means the
 * socket is full), BL_AGAIN (nothing taken: wait for BL_EV_WRITE) or BL_ERR (errno). On
 * io_uring, up to BL_LOOP_SEND_STAGE bytes are copied and go out as an IORING_OP_SEND with
 * the turn's io_uring_enter (no syscall of their own), and all of them count as taken; what
 * the socket refuses goes when it has room, and until all went, bl_loop_send says BL_AGAIN
 * and the owner gets BL_EV_WRITE when it has. A staged send that fails is reported as
 * BL_EV_ERROR and its errno by the next bl_loop_send. Larger writes, and every write on epoll,
 * are a plain send/writev made at once. The iov may be reused as soon as this returns.
 * An owner that also writes around this (sendfile) asks bl_loop_send_busy first, and
 * half-closes with bl_loop_shutdown_wr; a fd closed with a send still staged stays open until
 * the send went (at most a linger time), as the kernel keeps sending what a closed socket
 * holds. The loop's own thread only. */
#define BL_LOOP_SEND_STAGE 2048
ssize_t bl_loop_send(struct bl_loop *l, struct bl_io *io, const struct iovec *iov, int n);
/* Completion-style receive (io_uring; step 3 above): registers io->fd as bl_loop_add does,
 * and on io_uring the loop reads it: a multishot IORING_OP_RECV into the loop's ring of
 * provided buffers (shared by all connections: an idle one holds none), whose bytes wait in
 * a per-fd queue until the owner takes them with bl_loop_recv; the owner gets BL_EV_READ
 * (with BL_EV_HUP once the end is queued) when bytes came, as from an edge. Such an fd is
 * read only through bl_loop_recv (not recv, SSL or splice: they would pass the
 * queue) and is best closed with bl_loop_close; bl_loop_del drops what was queued. Where the
 * loop cannot (epoll, a kernel without buffer rings or multishot recv, another thread, before
 * the loop's first turn) this is bl_loop_add and bl_loop_recv is recv(2). */
int bl_loop_add_recv(struct bl_loop *l, struct bl_io *io);
/* What recv(io->fd, buf, len, flags) would return (bytes, 0 at EOF, -1 with errno: EAGAIN
 * when nothing is there), MSG_PEEK included: for an fd of bl_loop_add_recv, from its queue,
 * then, where the loop's recv is not armed (the ring ran dry, the queue was full), from the
 * socket, arming it again once drained; a short read means drained, as with edge-triggered
 * epoll. Any other fd: recv(2). The loop's own thread only. */
ssize_t bl_loop_recv(struct bl_loop *l, struct bl_io *io, void *buf, size_t len, int flags);
/* For an owner that wants to read io's socket itself for a while (splice): on = 1 stops the
 * loop's receive for io (on io_uring: its recv cancelled, its poll watching reads again, so
 * the owner gets BL_EV_READ edges as from bl_loop_add) and returns 1 once nothing of io's
 * is queued or still coming (the socket is the owner's, in order), 0 while it is: read on
 * with bl_loop_recv, which after the queue reads the socket, and ask again (the owner hears
 * BL_EV_READ when the recv's end came). on = 0: the loop receives again. epoll: always 1. */
int bl_loop_recv_pause(struct bl_loop *l, struct bl_io *io, int on);
/* Whether the loop reads io (bl_loop_add_recv took effect): its bytes may wait in the loop's
 * queue, so the owner must not read the socket any other way (splice). */
int bl_loop_reads(const struct bl_loop *l, const struct bl_io *io);
/* Whether io has bytes staged by bl_loop_send that the socket has not taken yet; if so, the
 * owner gets BL_EV_WRITE once they went. */
int bl_loop_send_busy(struct bl_loop *l, const struct bl_io *io);
/* shutdown(io->fd, SHUT_WR), after what bl_loop_send staged. */
void bl_loop_shutdown_wr(struct bl_loop *l, struct bl_io *io);
/* Unregisters (needed only for an fd that stays open, e.g. a listener being paused). */
void bl_loop_del(struct bl_loop *l, struct bl_io *io);
/* Closes io->fd, registered or not, and sets it to -1 (nothing when already -1). A backend
 * that queues work per fd (io_uring) cancels it here, so registered fds are best closed this
 * way rather than with close(). */
void bl_loop_close(struct bl_loop *l, struct bl_io *io);

/* Arms or moves timer t to fire at when_ms. */
void bl_timer_set(struct bl_loop *l, struct bl_timer *t, uint64_t when_ms);
/* Stops t and takes it out of the heap: after it, t's memory may be freed. */
void bl_timer_cancel(struct bl_loop *l, struct bl_timer *t);
/* Stops t (it will not fire; bl_timer_armed says 0) but leaves it in the heap until its old
 * deadline comes up, so that a timer re-armed soon after (a keep-alive connection's, once per
 * request) costs no heap work. The heap still points at t: its owner must call
 * bl_timer_cancel before freeing it. */
void bl_timer_disarm(struct bl_loop *l, struct bl_timer *t);
static inline int bl_timer_armed(const struct bl_timer *t) { return t->when != 0; }

/* Runs d->run(d) after the current batch of events: objects whose fd may still have events
 * pending in this batch are freed this way. */
void bl_loop_defer(struct bl_loop *l, struct bl_deferred *d);

/* Runs until bl_loop_stop(). Updates the thread's cached clock once per turn. */
void bl_loop_run(struct bl_loop *l);
void bl_loop_stop(struct bl_loop *l);

#endif
