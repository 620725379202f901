/* Event loop backend: io_uring, readiness style (step 1 in core/loop.h). #included by loop.c
 * next to loop_epoll.c; the Makefile does not compile it on its own.
 *
 * A registered fd is one poll request in the ring: a multishot IORING_OP_POLL_ADD for a
 * connection (one CQE per wake-up, like an edge-triggered epoll registration, whose mask says
 * what is ready now), a one-shot one for a level fd (listener, eventfd), re-armed each time it
 * is handed out: a poll that is armed on a ready fd completes at once, which is level
 * semantics without an epoll_ctl. Every change (arm, re-arm, cancel) is an SQE queued during
 * the turn and submitted with the wait by one io_uring_enter; the wait's timeout is passed
 * with it (IORING_FEAT_EXT_ARG), so timers cost no SQE.
 *
 * CQEs name a slot (index + generation; bl_io.loop_slot holds the same user_data, never 0, as
 * generations start at 1) rather than the bl_io: a poll that was cancelled or
 * whose fd was closed can still post a CQE a turn later, when its bl_io is freed; a stale
 * generation is dropped. Slots are checked when an event is handed out, not when it is
 * reaped, so a handler that closes another fd earlier in the same batch is safe too (epoll
 * needs bl_loop_defer for that; it still works here).
 *
 * Why bl_loop_close matters here: a poll request holds a reference to the file, so a plain
 * close() would not close the socket (no FIN) while the poll stays armed. Close cancels the
 * poll by its user_data, then closes the fd; the cancel goes out with the turn's submit, in
 * order with the SQEs after it, so a new socket that reuses the fd number is not touched.
 *
 * Threads: the ring is set up IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN where the kernel has
 * them (6.1+: completions run in the loop's own io_uring_enter, nothing between turns), and
 * R_DISABLED, because loops are made on the main thread and run on their worker's: the first
 * poll enables the ring on the thread that runs it. Registration from another thread (a
 * reload builds a generation's eventfds on the control thread) goes through a locked queue
 * that the owner drains at its next turn.
 */
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/syscall.h>

#define URING_SQ_ENTRIES 1024u
#define URING_CQ_ENTRIES 8192u      /* > SQ: one connection's poll may post several CQEs */
#define URING_MAX_EVENTS 512

/* Tests replace the setup call to drive the fall-back path. */
#ifndef LOOP_URING_SETUP
#define LOOP_URING_SETUP io_uring_queue_init_params
#endif

struct uring_slot {
    struct bl_io *io;            /* NULL: free */
    uint32_t gen;                /* bumped when freed: CQEs of the old owner are stale */
    uint8_t level;               /* one-shot poll, re-armed when handed out */
};

struct uring_event {
    uint64_t ud;
    int32_t res;
    uint32_t flags;
};

/* A registration or unregistration made on a thread other than the loop's. */
struct uring_remote {
    struct bl_io *io;
    uint64_t ud;                 /* 0: add io (edge below); else: cancel this registration */
    int edge;
};

struct loop_uring {
    struct io_uring ring;
    int enabled;                 /* the owner thread enabled the ring (R_DISABLED) */
    int disabled_setup;          /* the ring was made with IORING_SETUP_R_DISABLED */
    struct uring_slot *slots;
    uint32_t nslots, cap;
    uint32_t *free;              /* free slot indexes */
    uint32_t nfree;
    struct uring_event ev[URING_MAX_EVENTS];
    _Atomic int started;         /* the owner runs: other threads go through remote */
    _Atomic int nremote;
    pthread_mutex_t lock;        /* remote, nremote writers */
    struct uring_remote *remote;
    uint32_t remote_cap;
};

/* The loop whose backend this thread runs (set when bl_loop_run starts). See
 * docs/internals.md, "Per-thread state": a registration must know whether it runs on the
 * loop's own thread, without a syscall per connection. */
static _Thread_local const struct loop_uring *uring_owner;

static uint64_t uring_ud(const struct loop_uring *b, uint32_t idx)
{
    return (uint64_t)b->slots[idx].gen << 32 | idx;
}

static int loop_uring_init(struct loop_uring *b, char *err, unsigned long errlen)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_CQSIZE,
    };
    memset(b, 0, sizeof(*b));
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        struct io_uring_params p = {.flags = flag_sets[i], .cq_entries = URING_CQ_ENTRIES};
        rc = LOOP_URING_SETUP(URING_SQ_ENTRIES, &b->ring, &p);
        if (rc == 0) {
            if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) {
                /* Before 5.11: the wait's timeout would need an SQE and a lost CQE would be
                 * a lost wake-up. Not worth a second code path: epoll serves these. */
                io_uring_queue_exit(&b->ring);
                rc = -EOPNOTSUPP;
                break;
            }
            b->disabled_setup = (flag_sets[i] & IORING_SETUP_R_DISABLED) != 0;
            b->enabled = !b->disabled_setup;
            break;
        }
        if (rc != -EINVAL)
            break; /* refused (ENOSYS, EPERM, ENOMEM): older flags will not help */
    }
    if (rc != 0) {
        snprintf(err, errlen, "io_uring_setup() failed (%s)%s", strerror(-rc),
                 rc == -EPERM ? "; see /proc/sys/kernel/io_uring_disabled" : "");
        return BL_ERR;
    }
    pthread_mutex_init(&b->lock, NULL);
    return BL_OK;
}

static void loop_uring_free(struct loop_uring *b)
{
    if (uring_owner == b)
        uring_owner = NULL; /* a later loop at this address is not this thread's */
    io_uring_queue_exit(&b->ring);
    pthread_mutex_destroy(&b->lock);
    free(b->slots);
    free(b->free);
    free(b->remote);
}

/* The next SQE; when the SQ ring is full, what is queued is submitted first. */
static struct io_uring_sqe *uring_sqe(struct loop_uring *b)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (!sqe && b->enabled) {
        io_uring_submit(&b->ring);
        sqe = io_uring_get_sqe(&b->ring);
    }
    return sqe;
}

static int uring_arm(struct loop_uring *b, uint32_t idx)
{
    struct io_uring_sqe *sqe = uring_sqe(b);
    if (!sqe) {
        errno = EAGAIN;
        return BL_ERR;
    }
    const struct uring_slot *s = &b->slots[idx];
    if (s->level)
        io_uring_prep_poll_add(sqe, s->io->fd, EPOLLIN);
    else
        io_uring_prep_poll_multishot(sqe, s->io->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    io_uring_sqe_set_data64(sqe, uring_ud(b, idx));
    return BL_OK;
}

static int uring_add_local(struct loop_uring *b, struct bl_io *io, int edge)
{
    uint32_t idx;
    if (b->nfree) {
        idx = b->free[--b->nfree];
    } else {
        if (b->nslots == b->cap) {
            uint32_t cap = b->cap ? b->cap * 2 : 256;
            struct uring_slot *s = realloc(b->slots, cap * sizeof(*s));
            if (!s)
                return BL_ERR;
            b->slots = s;
            uint32_t *f = realloc(b->free, cap * sizeof(*f));
            if (!f)
                return BL_ERR;
            b->free = f;
            b->cap = cap;
        }
        idx = b->nslots++;
        b->slots[idx].gen = 1;
    }
    b->slots[idx].io = io;
    b->slots[idx].level = !edge;
    if (uring_arm(b, idx) != BL_OK) {
        b->slots[idx].io = NULL;
        b->free[b->nfree++] = idx;
        return BL_ERR;
    }
    io->loop_slot = uring_ud(b, idx);
    return BL_OK;
}

/* Frees io's slot and cancels its poll (by the slot's user_data, with the turn's submit). */
static void uring_forget(struct loop_uring *b, uint64_t ud)
{
    uint32_t idx = (uint32_t)ud;
    if (idx >= b->nslots || b->slots[idx].gen != (uint32_t)(ud >> 32) || !b->slots[idx].io)
        return;
    struct io_uring_sqe *sqe = uring_sqe(b);
    if (sqe) {
        io_uring_prep_cancel64(sqe, ud, 0);
        io_uring_sqe_set_data64(sqe, 0);
        io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    }
    /* else: the SQ ring is full and cannot be flushed (before the first turn); the poll's
     * CQEs are stale from now on and the file is released when the ring is. */
    b->slots[idx].io = NULL;
    b->slots[idx].gen++;
    b->free[b->nfree++] = idx;
}

static int uring_remote_push(struct loop_uring *b, struct bl_io *io, uint64_t ud, int edge)
{
    pthread_mutex_lock(&b->lock);
    int n = atomic_load_explicit(&b->nremote, memory_order_relaxed);
    if ((uint32_t)n == b->remote_cap) {
        uint32_t cap = b->remote_cap ? b->remote_cap * 2 : 16;
        struct uring_remote *r = realloc(b->remote, cap * sizeof(*r));
        if (!r) {
            pthread_mutex_unlock(&b->lock);
            errno = ENOMEM;
            return BL_ERR;
        }
        b->remote = r;
        b->remote_cap = cap;
    }
    b->remote[n] = (struct uring_remote){.io = io, .ud = ud, .edge = edge};
    atomic_store_explicit(&b->nremote, n + 1, memory_order_release);
    pthread_mutex_unlock(&b->lock);
    return BL_OK;
}

/* Drops a queued remote add of io; 1 when there was one. */
static int uring_remote_drop(struct loop_uring *b, const struct bl_io *io)
{
    int found = 0;
    pthread_mutex_lock(&b->lock);
    int n = atomic_load_explicit(&b->nremote, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
        if (b->remote[i].io == io && !b->remote[i].ud) {
            b->remote[i] = b->remote[--n];
            found = 1;
            break;
        }
    }
    atomic_store_explicit(&b->nremote, n, memory_order_release);
    pthread_mutex_unlock(&b->lock);
    return found;
}

static void uring_remote_drain(struct loop_uring *b)
{
    pthread_mutex_lock(&b->lock);
    int n = atomic_load_explicit(&b->nremote, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
        struct uring_remote *r = &b->remote[i];
        if (r->ud)
            uring_forget(b, r->ud);
        else
            (void)uring_add_local(b, r->io, r->edge); /* out of memory: the fd stays silent,
                                                       * as after a failed epoll_ctl */
    }
    atomic_store_explicit(&b->nremote, 0, memory_order_release);
    pthread_mutex_unlock(&b->lock);
}

static int uring_foreign(const struct loop_uring *b)
{
    return atomic_load_explicit(&b->started, memory_order_acquire) && uring_owner != b;
}

static int loop_uring_add(struct loop_uring *b, struct bl_io *io, int edge)
{
    if (uring_foreign(b))
        return uring_remote_push(b, io, 0, edge);
    return uring_add_local(b, io, edge);
}

/* Unregisters io; the cancel goes out with the turn's submit. */
static void uring_del_queued(struct loop_uring *b, struct bl_io *io)
{
    if (uring_foreign(b)) {
        /* A queued add is dropped; a registration the owner made is cancelled there. */
        if (!uring_remote_drop(b, io) && io->loop_slot)
            uring_remote_push(b, NULL, io->loop_slot, 0);
    } else if (io->loop_slot) {
        uring_forget(b, io->loop_slot);
    } else if (atomic_load_explicit(&b->nremote, memory_order_acquire)) {
        uring_remote_drop(b, io);
    }
    io->loop_slot = 0;
}

/* bl_loop_del: the caller may close the fd right after (a listener at shutdown or when a
 * reload drops its address), and until the cancel has run the poll keeps the socket alive,
 * in its SO_REUSEPORT group, taking connections that nobody will accept. So the cancel is
 * submitted now, and its completion run (DEFER_TASKRUN runs it in an enter that gets events):
 * a syscall, on a rare path. */
static void loop_uring_del(struct loop_uring *b, struct bl_io *io)
{
    int had = io->loop_slot != 0;
    uring_del_queued(b, io);
    if (had && b->enabled && !uring_foreign(b))
        io_uring_submit_and_get_events(&b->ring);
}

/* bl_loop_close, per connection: the cancel rides on the turn's submit (no extra syscall);
 * the socket closes (FIN) when it has run, at the end of this turn at the latest, or in
 * loop_uring_flush when the loop stops. */
static void loop_uring_close(struct loop_uring *b, struct bl_io *io)
{
    uring_del_queued(b, io);
    close(io->fd);
}

/* The loop stops: what is queued (cancels of closed fds) goes out now, not when the ring is
 * freed, so that closed sockets close. */
static void loop_uring_flush(struct loop_uring *b)
{
    if (b->enabled && io_uring_sq_ready(&b->ring))
        io_uring_submit_and_get_events(&b->ring);
}

static int loop_uring_poll(struct loop_uring *b, int timeout_ms)
{
    if (!b->enabled) {
        /* The first turn, on the thread that runs the loop (SINGLE_ISSUER binds the ring to
         * the thread that enables it). */
        /* Debian 12's liburing 2.3 declares io_uring_enable_rings() but does not export it. */
        if (b->disabled_setup && syscall(__NR_io_uring_register, b->ring.ring_fd,
                                         IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
            return 0;
        b->enabled = 1;
    }
    if (!atomic_load_explicit(&b->started, memory_order_relaxed)) {
        uring_owner = b;
        atomic_store_explicit(&b->started, 1, memory_order_release);
    }
    if (atomic_load_explicit(&b->nremote, memory_order_acquire))
        uring_remote_drain(b);
    if (io_uring_cq_ready(&b->ring) == 0) {
        if (timeout_ms == 0) {
            io_uring_submit_and_get_events(&b->ring);
        } else {
            struct io_uring_cqe *cqe;
            struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                           .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
            io_uring_submit_and_wait_timeout(&b->ring, &cqe, 1, &ts, NULL);
        }
    } else if (io_uring_sq_ready(&b->ring)) {
        io_uring_submit(&b->ring);
    }
    /* Copy the CQEs out and hand the ring's space back before any handler runs: handlers
     * queue SQEs whose completions need room. */
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0, n = 0;
    io_uring_for_each_cqe(&b->ring, head, cqe) {
        if (n == URING_MAX_EVENTS)
            break;
        seen++;
        if (cqe->user_data == 0)
            continue; /* a cancel that found nothing left to cancel */
        b->ev[n++] = (struct uring_event){.ud = cqe->user_data, .res = cqe->res,
                                          .flags = cqe->flags};
    }
    io_uring_cq_advance(&b->ring, seen);
    return (int)n;
}

/* The i-th event of the last poll: its io (NULL when stale) and its BL_EV_* bits. */
static inline struct bl_io *loop_uring_event(struct loop_uring *b, int i, uint32_t *ev)
{
    const struct uring_event *e = &b->ev[i];
    uint32_t idx = (uint32_t)e->ud;
    if (idx >= b->nslots)
        return NULL;
    struct uring_slot *s = &b->slots[idx];
    if (s->gen != (uint32_t)(e->ud >> 32) || !s->io)
        return NULL;
    struct bl_io *io = s->io;
    if (e->res < 0) {
        if (e->res == -ECANCELED)
            return NULL;
        /* The poll itself failed (EBADF, ENOMEM): the owner's next I/O says why. */
        *ev = BL_EV_ERROR | BL_EV_READ | BL_EV_WRITE;
        return io;
    }
    if (s->level || !(e->flags & IORING_CQE_F_MORE)) {
        /* One-shot by design (level) or ended by the kernel (multishot, e.g. on a CQ
         * overflow): arm again; a poll armed on a ready fd completes at once. */
        if (uring_arm(b, idx) != BL_OK) {
            /* SQ full and not flushable: nothing better than to report both directions so
             * the owner tries its I/O. */
            *ev = BL_EV_ERROR | BL_EV_READ | BL_EV_WRITE;
            return io;
        }
    }
    uint32_t m = (uint32_t)e->res, out = 0;
    if (m & (EPOLLIN | EPOLLRDHUP))
        out |= BL_EV_READ;
    if (m & EPOLLOUT)
        out |= BL_EV_WRITE;
    if (m & (EPOLLRDHUP | EPOLLHUP))
        out |= BL_EV_HUP;
    if (m & (EPOLLERR | EPOLLHUP))
        out |= BL_EV_ERROR | BL_EV_READ | BL_EV_WRITE;
    *ev = out;
    return io;
}
