/* Event loop backend: io_uring, readiness style (step 1 in core/loop.h) with the completion
 * ops of step 2 beside it: multishot accept on listeners (bl_loop_add_accept) and staged
 * sends (bl_loop_send, struct uring_send below). #included by loop.c next to loop_epoll.c;
 * the Makefile does not compile it on its own.
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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#define URING_SQ_ENTRIES 1024u
#define URING_CQ_ENTRIES 8192u      /* > SQ: one connection's poll may post several CQEs */
#define URING_MAX_EVENTS 512

/* Tests replace the setup call to drive the fall-back path. */
#ifndef LOOP_URING_SETUP
#define LOOP_URING_SETUP io_uring_queue_init_params
#endif

/* Loop receive (step 3, bl_loop_add_recv): a slot's multishot recv, by state. */
enum uring_recv_state {
    URING_RECV_OFF = 0,          /* the owner reads the socket itself (readiness) */
    URING_RECV_ARMED = 1,        /* a multishot recv is out: bytes come as CQEs */
    URING_RECV_CANCELLING = 2,   /* its cancel is out (queue full): CQEs may still come */
    URING_RECV_IDLE = 3,         /* none is out (ENOBUFS, cancelled, ended): bl_loop_recv reads
                                  * the socket after the queue and arms again once drained */
};

struct uring_slot {
    struct bl_io *io;            /* NULL: free */
    bl_accept_handler accept;    /* a multishot accept (step 2), not a poll; else NULL */
    uint32_t gen;                /* bumped when freed: CQEs of the old owner are stale */
    uint32_t send;               /* the io's staged send (index in sends + 1); 0: none */
    int send_err;                /* errno of a staged send that failed: the next send says */
    uint8_t level;               /* one-shot poll, re-armed when handed out */
    uint8_t send_wait;           /* the owner was told BL_AGAIN: BL_EV_WRITE once it went */
    uint8_t shut_wr;             /* shutdown(SHUT_WR) once the staged send went */
    uint8_t write_owed;          /* the poll said writable while a send was staged: the owner
                                  * hears it when the send went (a loop-receive fd's poll
                                  * watches writes only, so no later read edge repeats it) */
    uint8_t recv;                /* enum uring_recv_state */
    uint8_t rnotify;             /* an event for the recv is in this batch already */
    uint8_t rpaused;             /* bl_loop_recv_pause: not armed again, the poll watches
                                  * reads, the owner may read the socket (splice) */
    int32_t rend;                /* after the queue: 0 more may come, 1 EOF, -errno */
    uint32_t rq_head, rq_tail;   /* received bytes: ring buffer ids, oldest first */
    uint32_t rq_n;               /* buffers in that queue */
};

/* One provided buffer of the receive ring, while it is out of the ring (in a slot's queue). */
struct uring_rbuf {
    uint32_t next;               /* the queue's next buffer id; URING_NONE: last */
    uint32_t len, off;           /* bytes the kernel put there, bytes the owner took */
};

/* A send staged by bl_loop_send (step 2): the bytes, copied, go out as an IORING_OP_SEND with
 * MSG_DONTWAIT in the turn's io_uring_enter, so they never wait in the kernel: what the socket
 * did not take waits here for the slot's poll to say writable. Closed by its owner before it
 * went, the send keeps the fd (an orphan) until it has, or URING_LINGER_MS passed. */
struct uring_send {
    char *buf;                   /* URING_SEND_MAX bytes; NULL until first used */
    uint32_t len, off;           /* bytes staged, bytes the socket took */
    uint64_t owner;              /* the owner's slot user_data; 0: an orphan */
    uint64_t deadline;           /* orphan: when it gives up (bl_clock_ms) */
    int fd;                      /* orphan: the fd it closes when done */
    uint32_t next_free;
    uint8_t inflight;            /* an SQE of it (send, or an orphan's poll) is out */
    uint8_t used;
    uint8_t shut_wr;             /* orphan: shutdown(SHUT_WR) before the close */
};

#define URING_SEND_MAX   BL_LOOP_SEND_STAGE /* a response or request head and a small body; larger
                                  * writes go straight to writev when nothing is staged */
#define URING_SEND_CACHE 256u    /* free stage buffers kept */
#define URING_LINGER_MS  30000u
#define URING_NONE       UINT32_MAX

/* user_data: generation << 32 | URING_UD_ACCEPT (an accept slot) | slot index. The accept bit
 * survives the slot: a stale accept CQE carries a connection the loop must close. A staged
 * send's is URING_UD_SEND | its index (high half 0: no slot's, generations start at 1), with
 * URING_UD_WPOLL for an orphan's one-shot wait for room. */
#define URING_UD_ACCEPT 0x80000000u
#define URING_UD_SEND   0x40000000u
#define URING_UD_WPOLL  0x20000000u
#define URING_UD_RECV   0x10000000u
#define URING_UD_INDEX  0x0fffffffu

/* The receive ring (step 3): one per loop, shared by every connection, so an idle connection
 * holds no buffer; a buffer leaves the ring when bytes land in it and goes back as soon as the
 * owner has copied them out. A connection that queues URING_RECV_QMAX buffers without reading
 * them (back-pressure) has its recv cancelled and reads the socket itself from then on, so one
 * slow reader cannot take the ring from the others (nor read a socket the owner wants left
 * full, which is how TCP pushes back). The kernel takes buffers in ring order, so in time it
 * writes to all of them: they are touched when the ring is set up, and the worker's RSS is
 * flat from its start (1 MiB) rather than growing to that under load. Tests make it small. */
#ifndef URING_RBUF_SIZE
#define URING_RBUF_SIZE  2048u    /* a request or response head; bodies take several */
#endif
#ifndef URING_RBUF_COUNT
#define URING_RBUF_COUNT 512u    /* a power of two (the ring's mask) */
#endif
#ifndef URING_RECV_QMAX
#define URING_RECV_QMAX  8u
#endif
#define URING_RBUF_GROUP 0

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
    int nev;                     /* events of the last poll */
    int cur;                     /* the one being handed out (bl_loop_del of an accept looks
                                  * at those after it) */
    int no_accept;               /* the kernel refused multishot accept: readiness instead */
    struct uring_send *sends;    /* staged sends, by index */
    uint32_t nsends, sends_cap;
    uint32_t send_free;          /* free list head (URING_NONE: empty) */
    uint32_t nsend_free;         /* on it with a buffer */
    uint32_t norphans;
    _Atomic int started;         /* the owner runs: other threads go through remote */
    _Atomic int nremote;
    pthread_mutex_t lock;        /* remote, nremote writers */
    struct uring_remote *remote;
    uint32_t remote_cap;
    struct io_uring_buf_ring *br; /* the receive ring; NULL: none (yet, or refused) */
    char *rmem;                  /* its buffers, URING_RBUF_SIZE each, by buffer id */
    struct uring_rbuf *rb;       /* per buffer id, while out of the ring */
    uint32_t rheld;              /* buffers in slots' queues (tests, stats) */
    int no_recv;                 /* the kernel refused the ring or multishot recv */
    uint64_t *kick;              /* recv user_data to hand BL_EV_READ next turn, no CQE */
    uint32_t nkick, kick_cap;
};

/* The loop whose backend this thread runs (set when bl_loop_run starts). See
 * docs/internals.md, "Per-thread state": a registration must know whether it runs on the
 * loop's own thread, without a syscall per connection. */
static _Thread_local const struct loop_uring *uring_owner;

static void uring_send_put(struct loop_uring *b, uint32_t i);
static int uring_foreign(const struct loop_uring *b);

static uint64_t uring_ud(const struct loop_uring *b, uint32_t idx)
{
    return (uint64_t)b->slots[idx].gen << 32 | (b->slots[idx].accept ? URING_UD_ACCEPT : 0) |
           idx;
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
    b->send_free = URING_NONE;
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
    for (uint32_t i = 0; i < b->nsends; i++) {
        if (b->sends[i].used && !b->sends[i].owner)
            close(b->sends[i].fd); /* an orphan that had not gone yet */
        free(b->sends[i].buf);
    }
    free(b->sends);
    /* After the ring: its exit has cancelled the recvs that wrote into these. */
    free(b->br);
    free(b->rmem);
    free(b->rb);
    free(b->kick);
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
    if (s->accept)
        io_uring_prep_multishot_accept(sqe, s->io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else if (s->level)
        io_uring_prep_poll_add(sqe, s->io->fd, EPOLLIN);
    else if (s->recv && !s->rpaused)
        io_uring_prep_poll_multishot(sqe, s->io->fd, EPOLLOUT); /* reads come as recv CQEs */
    else
        io_uring_prep_poll_multishot(sqe, s->io->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    io_uring_sqe_set_data64(sqe, uring_ud(b, idx));
    return BL_OK;
}

static int uring_recv_arm(struct loop_uring *b, uint32_t idx);
static void uring_kick(struct loop_uring *b, uint32_t idx);

/* recv: the loop receives for io (bl_loop_add_recv): its poll watches writes only. */
static int uring_add_local(struct loop_uring *b, struct bl_io *io, int edge,
                           bl_accept_handler accept, int recv)
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
        b->slots[idx] = (struct uring_slot){.gen = 1};
    }
    b->slots[idx].io = io;
    b->slots[idx].level = !edge;
    b->slots[idx].accept = accept;
    b->slots[idx].recv = recv ? URING_RECV_ARMED : URING_RECV_OFF;
    if (uring_arm(b, idx) != BL_OK) {
        b->slots[idx].io = NULL;
        b->slots[idx].accept = NULL;
        b->slots[idx].recv = URING_RECV_OFF;
        b->free[b->nfree++] = idx;
        return BL_ERR;
    }
    io->loop_slot = uring_ud(b, idx);
    if (recv && uring_recv_arm(b, idx) != BL_OK) {
        /* SQ full and unflushable: the owner reads the socket and arms it once drained. */
        b->slots[idx].recv = URING_RECV_IDLE;
        uring_kick(b, idx);
    }
    return BL_OK;
}

/* ---- the receive ring (step 3) */

/* Sets up the ring of provided buffers, on the loop's thread (SINGLE_ISSUER: the thread that
 * enabled the ring registers). A kernel without it (before 5.19) leaves loop receive off. */
static void uring_rbufs_setup(struct loop_uring *b)
{
    void *br = NULL;
    size_t ring_bytes = URING_RBUF_COUNT * sizeof(struct io_uring_buf);
    if (posix_memalign(&br, 4096, ring_bytes < 4096 ? 4096 : ring_bytes) != 0) {
        b->no_recv = 1;
        return;
    }
    b->rmem = malloc((size_t)URING_RBUF_COUNT * URING_RBUF_SIZE);
    if (b->rmem)
        memset(b->rmem, 0, (size_t)URING_RBUF_COUNT * URING_RBUF_SIZE);
    b->rb = calloc(URING_RBUF_COUNT, sizeof(*b->rb));
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br,
                                   .ring_entries = URING_RBUF_COUNT,
                                   .bgid = URING_RBUF_GROUP};
    if (!b->rmem || !b->rb || io_uring_register_buf_ring(&b->ring, &reg, 0) != 0) {
        free(br);
        free(b->rmem);
        free(b->rb);
        b->rmem = NULL;
        b->rb = NULL;
        b->no_recv = 1;
        return;
    }
    b->br = br;
    io_uring_buf_ring_init(b->br);
    for (uint32_t i = 0; i < URING_RBUF_COUNT; i++)
        io_uring_buf_ring_add(b->br, b->rmem + (size_t)i * URING_RBUF_SIZE, URING_RBUF_SIZE,
                              (unsigned short)i, io_uring_buf_ring_mask(URING_RBUF_COUNT),
                              (int)i);
    io_uring_buf_ring_advance(b->br, URING_RBUF_COUNT);
}

/* Hands buffer bid back to the kernel (a store to the ring's tail, no syscall). */
static void uring_rbuf_put(struct loop_uring *b, uint32_t bid)
{
    io_uring_buf_ring_add(b->br, b->rmem + (size_t)bid * URING_RBUF_SIZE, URING_RBUF_SIZE,
                          (unsigned short)bid, io_uring_buf_ring_mask(URING_RBUF_COUNT), 0);
    io_uring_buf_ring_advance(b->br, 1);
}

static uint64_t uring_recv_ud(const struct loop_uring *b, uint32_t idx)
{
    return uring_ud(b, idx) | URING_UD_RECV;
}

/* Arms slot idx's multishot recv (IOSQE_BUFFER_SELECT from the ring). */
static int uring_recv_arm(struct loop_uring *b, uint32_t idx)
{
    struct io_uring_sqe *sqe = uring_sqe(b);
    if (!sqe)
        return BL_ERR;
    io_uring_prep_recv_multishot(sqe, b->slots[idx].io->fd, NULL, 0, 0);
    sqe->buf_group = URING_RBUF_GROUP;
    io_uring_sqe_set_flags(sqe, IOSQE_BUFFER_SELECT);
    io_uring_sqe_set_data64(sqe, uring_recv_ud(b, idx));
    b->slots[idx].recv = URING_RECV_ARMED;
    return BL_OK;
}

/* Cancels slot idx's recv by its user_data; its last CQE says when it is gone. */
static void uring_recv_cancel(struct loop_uring *b, uint32_t idx)
{
    struct io_uring_sqe *sqe = uring_sqe(b);
    if (!sqe)
        return; /* SQ full and unflushable: the queue grows on, bounded by the ring */
    io_uring_prep_cancel64(sqe, uring_recv_ud(b, idx), 0);
    io_uring_sqe_set_data64(sqe, 0);
    io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    b->slots[idx].recv = URING_RECV_CANCELLING;
}

/* The slot's owner hears BL_EV_READ next turn, though no CQE says so (bytes or an end the
 * owner's short read left behind). */
static void uring_kick(struct loop_uring *b, uint32_t idx)
{
    struct uring_slot *s = &b->slots[idx];
    if (s->rnotify)
        return;
    if (b->nkick == b->kick_cap) {
        uint32_t cap = b->kick_cap ? b->kick_cap * 2 : 64;
        uint64_t *k = realloc(b->kick, cap * sizeof(*k));
        if (!k)
            return; /* the owner's next read finds it */
        b->kick = k;
        b->kick_cap = cap;
    }
    b->kick[b->nkick++] = uring_recv_ud(b, idx);
    s->rnotify = 1;
}

/* Gives the slot's queued buffers back to the ring and turns its loop receive off (the slot
 * is being freed, or unregistered: the owner reads the socket from now on). */
static void uring_recv_drop(struct loop_uring *b, uint32_t idx)
{
    struct uring_slot *s = &b->slots[idx];
    if (s->recv == URING_RECV_ARMED || s->recv == URING_RECV_CANCELLING) {
        struct io_uring_sqe *sqe = uring_sqe(b);
        if (sqe) {
            io_uring_prep_cancel64(sqe, uring_recv_ud(b, idx), 0);
            io_uring_sqe_set_data64(sqe, 0);
            io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
        }
    }
    for (uint32_t bid = s->rq_head; s->rq_n; s->rq_n--) {
        uint32_t next = b->rb[bid].next;
        uring_rbuf_put(b, bid);
        b->rheld--;
        bid = next;
    }
    s->recv = URING_RECV_OFF;
    s->rend = 0;
    s->rnotify = 0;
    s->rpaused = 0;
}

/* Changes slot idx's poll to watch reads too (the loop's recv paused) or writes only. */
static void uring_poll_remask(struct loop_uring *b, uint32_t idx)
{
    const struct uring_slot *s = &b->slots[idx];
    struct io_uring_sqe *sqe = uring_sqe(b);
    if (!sqe)
        return; /* SQ full and unflushable: reads are noticed at the next edge of the other */
    io_uring_prep_poll_update(sqe, uring_ud(b, idx), 0, /* new_user_data: unchanged */
                              s->rpaused ? EPOLLIN | EPOLLOUT | EPOLLRDHUP : EPOLLOUT,
                              IORING_POLL_UPDATE_EVENTS | IORING_POLL_ADD_MULTI);
    io_uring_sqe_set_data64(sqe, 0);
    io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
}

/* A recv CQE, as it is reaped (before any handler of the batch runs, so each handler sees
 * every byte the batch brought): its bytes join the slot's queue. Returns 1 when the owner is
 * to hear of it (once per batch: rnotify). A CQE of a slot freed since (a late one, after a
 * close) only gives its buffer back: it never reaches the bl_io. */
static int uring_recv_cqe(struct loop_uring *b, const struct io_uring_cqe *cqe)
{
    uint32_t idx = (uint32_t)cqe->user_data & URING_UD_INDEX;
    struct uring_slot *s = idx < b->nslots ? &b->slots[idx] : NULL;
    int has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
    uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (!s || s->gen != (uint32_t)(cqe->user_data >> 32) || !s->io ||
        (s->recv != URING_RECV_ARMED && s->recv != URING_RECV_CANCELLING)) {
        if (has_buf && b->br && bid < URING_RBUF_COUNT)
            uring_rbuf_put(b, bid);
        return 0;
    }
    if (cqe->res > 0 && has_buf && bid < URING_RBUF_COUNT) {
        b->rb[bid] = (struct uring_rbuf){.next = URING_NONE, .len = (uint32_t)cqe->res};
        if (s->rq_n++)
            b->rb[s->rq_tail].next = bid;
        else
            s->rq_head = bid;
        s->rq_tail = bid;
        b->rheld++;
    } else if (has_buf && b->br && bid < URING_RBUF_COUNT) {
        uring_rbuf_put(b, bid);
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        if (cqe->res == 0) {
            s->rend = 1;
            s->recv = URING_RECV_IDLE;
        } else if (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP) {
            /* No multishot recv here (before 6.0): readiness for this fd and all later. */
            b->no_recv = 1;
            s->recv = URING_RECV_IDLE;
            struct io_uring_sqe *sqe = uring_sqe(b);
            if (sqe) {
                io_uring_prep_poll_update(sqe, uring_ud(b, idx), 0, /* new_user_data: unchanged */
                                          EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                                          IORING_POLL_UPDATE_EVENTS | IORING_POLL_ADD_MULTI);
                io_uring_sqe_set_data64(sqe, 0);
                io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
            }
        } else if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
            s->rend = cqe->res; /* ECONNRESET, ...: after the bytes before it */
            s->recv = URING_RECV_IDLE;
        } else {
            /* ENOBUFS (the ring ran dry: the bytes wait in the socket), our cancel, or
             * ended for another reason: the owner reads the socket until it is drained. */
            s->recv = URING_RECV_IDLE;
        }
    } else if (s->rq_n >= URING_RECV_QMAX && s->recv == URING_RECV_ARMED) {
        uring_recv_cancel(b, idx);
    }
    if (s->rnotify)
        return 0;
    s->rnotify = 1;
    return 1;
}

/* bl_loop_recv: recv(2)'s answer from the slot's queue, then (not armed) from the socket. */
static ssize_t loop_uring_recv(struct loop_uring *b, struct bl_io *io, void *buf, size_t len,
                               int flags)
{
    uint64_t ud = io->loop_slot;
    uint32_t idx = (uint32_t)ud & URING_UD_INDEX;
    struct uring_slot *s = ud && idx < b->nslots ? &b->slots[idx] : NULL;
    if (!s || s->io != io || s->recv == URING_RECV_OFF)
        return bl_sys_recv(io->fd, buf, len, flags);
    size_t got = 0;
    int peek = (flags & MSG_PEEK) != 0;
    uint32_t bid = s->rq_head;
    for (uint32_t k = 0; k < s->rq_n && got < len;) {
        struct uring_rbuf *rb = &b->rb[bid];
        size_t take = rb->len - rb->off;
        if (take > len - got)
            take = len - got;
        memcpy((char *)buf + got, b->rmem + (size_t)bid * URING_RBUF_SIZE + rb->off, take);
        got += take;
        uint32_t next = rb->next;
        if (peek) {
            k++;
        } else if ((rb->off += (uint32_t)take) == rb->len) {
            uring_rbuf_put(b, bid); /* at once: the ring is everyone's */
            b->rheld--;
            s->rq_n--;
            s->rq_head = next;
        }
        bid = next;
    }
    if (got == len || s->recv != URING_RECV_IDLE || s->rend) {
        if (got)
            return (ssize_t)got;
        if (s->rend == 1)
            return 0;
        errno = s->rend ? -s->rend : EAGAIN;
        return -1;
    }
    if (s->rq_n)
        return (ssize_t)got; /* a peek stops at what is queued */
    /* Idle with the queue drained: the socket itself, which holds what came after. */
    ssize_t n;
    do
        n = bl_sys_recv(io->fd, (char *)buf + got, len - got, flags);
    while (n < 0 && errno == EINTR);
    if (peek)
        return got ? (ssize_t)got : n;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        if (!got)
            return n;
        s->rend = n == 0 ? 1 : -errno; /* told after the bytes; their short read needs the
                                        * owner to hear of it */
        uring_kick(b, idx);
        return (ssize_t)got;
    }
    if ((n < 0 || got + (size_t)n < len) && !s->rpaused) {
        /* Drained: bytes come as CQEs again (ENOBUFS again if the ring is still dry). */
        if (!b->no_recv && uring_recv_arm(b, idx) != BL_OK)
            uring_kick(b, idx); /* SQ full: the owner reads again next turn */
    }
    if (n > 0)
        got += (size_t)n;
    if (got)
        return (ssize_t)got;
    errno = EAGAIN;
    return -1;
}

/* Frees io's slot and cancels its poll (by the slot's user_data, with the turn's submit). */
static void uring_forget(struct loop_uring *b, uint64_t ud)
{
    uint32_t idx = (uint32_t)ud & URING_UD_INDEX;
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
    if (b->slots[idx].send) {
        /* Unregistered with a send staged (not closed: bl_loop_close made it an orphan):
         * the fd stays its owner's, so what is left of the send is dropped when it returns. */
        uint32_t i = b->slots[idx].send - 1;
        struct uring_send *op = &b->sends[i];
        if (op->inflight) {
            op->owner = 0;
            op->fd = -1;
            op->deadline = UINT64_MAX;
            b->norphans++;
        } else {
            uring_send_put(b, i);
        }
    }
    if (b->slots[idx].recv)
        uring_recv_drop(b, idx);
    b->slots[idx].io = NULL;
    b->slots[idx].accept = NULL;
    b->slots[idx].send = 0;
    b->slots[idx].send_err = 0;
    b->slots[idx].send_wait = 0;
    b->slots[idx].write_owed = 0;
    b->slots[idx].shut_wr = 0;
    b->slots[idx].gen++;
    b->free[b->nfree++] = idx;
}

/* ---- staged sends (step 2) */

static uint32_t uring_send_get(struct loop_uring *b)
{
    uint32_t i;
    if (b->send_free != URING_NONE) {
        i = b->send_free;
        b->send_free = b->sends[i].next_free;
        if (b->sends[i].buf)
            b->nsend_free--;
    } else {
        if (b->nsends == b->sends_cap) {
            uint32_t cap = b->sends_cap ? b->sends_cap * 2 : 64;
            struct uring_send *n = realloc(b->sends, cap * sizeof(*n));
            if (!n)
                return URING_NONE;
            b->sends = n;
            b->sends_cap = cap;
        }
        i = b->nsends++;
        b->sends[i].buf = NULL;
    }
    struct uring_send *op = &b->sends[i];
    if (!op->buf && !(op->buf = malloc(URING_SEND_MAX))) {
        op->used = 0;
        op->next_free = b->send_free;
        b->send_free = i;
        return URING_NONE;
    }
    char *buf = op->buf;
    *op = (struct uring_send){.buf = buf, .used = 1, .fd = -1};
    return i;
}

static void uring_send_put(struct loop_uring *b, uint32_t i)
{
    struct uring_send *op = &b->sends[i];
#ifdef BL_NO_POOL
    const uint32_t cache = 0; /* ASan sees every buffer's lifetime */
#else
    const uint32_t cache = URING_SEND_CACHE;
#endif
    if (b->nsend_free >= cache) {
        free(op->buf);
        op->buf = NULL;
    } else {
        b->nsend_free++;
    }
    op->used = 0;
    op->next_free = b->send_free;
    b->send_free = i;
}

/* Queues what is left of send i on fd. */
static int uring_send_submit(struct loop_uring *b, uint32_t i, int fd)
{
    struct io_uring_sqe *sqe = uring_sqe(b);
    if (!sqe)
        return BL_ERR;
    struct uring_send *op = &b->sends[i];
    io_uring_prep_send(sqe, fd, op->buf + op->off, op->len - op->off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, URING_UD_SEND | i);
    op->inflight = 1;
    return BL_OK;
}

/* An orphan is done (sent, failed or out of time): its fd closes. */
static void uring_orphan_end(struct loop_uring *b, uint32_t i)
{
    struct uring_send *op = &b->sends[i];
    if (op->fd >= 0) {
        if (op->shut_wr)
            shutdown(op->fd, SHUT_WR);
        close(op->fd);
    }
    b->norphans--;
    uring_send_put(b, i);
}

/* An orphan waits for room: a one-shot poll of its own (its owner's poll is cancelled). */
static void uring_orphan_wait(struct loop_uring *b, uint32_t i)
{
    struct uring_send *op = &b->sends[i];
    struct io_uring_sqe *sqe = op->fd >= 0 ? uring_sqe(b) : NULL;
    if (!sqe) {
        uring_orphan_end(b, i);
        return;
    }
    io_uring_prep_poll_add(sqe, op->fd, EPOLLOUT);
    io_uring_sqe_set_data64(sqe, URING_UD_SEND | URING_UD_WPOLL | i);
    op->inflight = 1;
}

/* Orphans past their time give up (their wait is cancelled; its CQE ends them). Only while
 * there are orphans, once per turn. */
static void uring_orphans_expire(struct loop_uring *b)
{
    uint64_t now = bl_clock_ms;
    for (uint32_t i = 0; i < b->nsends; i++) {
        struct uring_send *op = &b->sends[i];
        if (!op->used || op->owner || op->deadline > now)
            continue;
        op->deadline = UINT64_MAX;
        struct io_uring_sqe *sqe = op->inflight ? uring_sqe(b) : NULL;
        if (sqe) {
            io_uring_prep_cancel64(sqe, URING_UD_SEND | URING_UD_WPOLL | i, 0);
            io_uring_sqe_set_data64(sqe, 0);
            io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
        }
    }
}

/* bl_loop_send on io_uring: stage and queue, or say why not. */
static ssize_t loop_uring_send(struct loop_uring *b, struct bl_io *io, const struct iovec *iov,
                               int n)
{
    uint64_t ud = io->loop_slot;
    uint32_t si = (uint32_t)ud & URING_UD_INDEX;
    if (!ud || (ud & URING_UD_ACCEPT) || si >= b->nslots || !b->enabled || uring_foreign(b))
        return loop_writev_now(io->fd, iov, n);
    struct uring_slot *s = &b->slots[si];
    if (s->send_err) {
        errno = s->send_err;
        return BL_ERR;
    }
    if (s->send) {
        s->send_wait = 1;
        return BL_AGAIN;
    }
    size_t total = 0;
    for (int k = 0; k < n; k++)
        total += iov[k].iov_len;
    if (total == 0 || total > URING_SEND_MAX || s->shut_wr)
        return loop_writev_now(io->fd, iov, n);
    uint32_t i = uring_send_get(b);
    if (i == URING_NONE)
        return loop_writev_now(io->fd, iov, n);
    struct uring_send *op = &b->sends[i];
    for (int k = 0; k < n; k++) {
        memcpy(op->buf + op->len, iov[k].iov_base, iov[k].iov_len);
        op->len += (uint32_t)iov[k].iov_len;
    }
    op->owner = ud;
    if (uring_send_submit(b, i, io->fd) != BL_OK) {
        uring_send_put(b, i);
        return loop_writev_now(io->fd, iov, n);
    }
    b->slots[si].send = i + 1;
    return (ssize_t)total;
}

/* Whether io has a staged send that has not all gone. */
static int uring_send_pending(const struct loop_uring *b, const struct bl_io *io)
{
    uint64_t ud = io->loop_slot;
    uint32_t si = (uint32_t)ud & URING_UD_INDEX;
    return ud && !(ud & URING_UD_ACCEPT) && si < b->nslots && b->slots[si].send != 0;
}

/* bl_loop_send_busy: busy, and the owner hears BL_EV_WRITE when it is not. */
static int loop_uring_send_busy(struct loop_uring *b, const struct bl_io *io)
{
    if (!uring_send_pending(b, io))
        return 0;
    b->slots[(uint32_t)io->loop_slot & URING_UD_INDEX].send_wait = 1;
    return 1;
}

/* bl_loop_shutdown_wr: after the staged send, if there is one. */
static void loop_uring_shutdown_wr(struct loop_uring *b, struct bl_io *io)
{
    if (uring_send_pending(b, io))
        b->slots[(uint32_t)io->loop_slot & URING_UD_INDEX].shut_wr = 1;
    else
        shutdown(io->fd, SHUT_WR);
}

/* A staged send's CQE (or an orphan's poll): its owner's io with the bits to report, or NULL. */
static struct bl_io *uring_send_event(struct loop_uring *b, const struct uring_event *e,
                                      uint32_t *ev)
{
    uint32_t i = (uint32_t)e->ud & URING_UD_INDEX;
    if (i >= b->nsends || !b->sends[i].used)
        return NULL;
    struct uring_send *op = &b->sends[i];
    op->inflight = 0;
    if (e->ud & URING_UD_WPOLL) {
        if (e->res < 0 || op->deadline == UINT64_MAX || uring_send_submit(b, i, op->fd) != BL_OK)
            uring_orphan_end(b, i);
        return NULL;
    }
    if (e->res > 0)
        op->off += (uint32_t)e->res;
    int done = op->off >= op->len;
    int failed = e->res < 0 && e->res != -EAGAIN;
    if (!op->owner) {
        if (done || failed || op->fd < 0)
            uring_orphan_end(b, i);
        else
            uring_orphan_wait(b, i);
        return NULL;
    }
    struct uring_slot *s = &b->slots[(uint32_t)op->owner & URING_UD_INDEX];
    if (!done && !failed)
        return NULL; /* the rest goes when the slot's poll says writable */
    uring_send_put(b, i);
    s->send = 0;
    if (failed) {
        s->send_err = -e->res;
        s->send_wait = 0;
        s->write_owed = 0;
        *ev = BL_EV_ERROR | BL_EV_READ | BL_EV_WRITE;
        return s->io;
    }
    if (s->shut_wr) {
        s->shut_wr = 0;
        shutdown(s->io->fd, SHUT_WR);
    }
    if (!s->send_wait && !s->write_owed)
        return NULL;
    s->send_wait = 0;
    s->write_owed = 0;
    *ev = BL_EV_WRITE;
    return s->io;
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
            (void)uring_add_local(b, r->io, r->edge, NULL, 0); /* out of memory: the fd stays silent,
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
    return uring_add_local(b, io, edge, NULL, 0);
}

/* bl_loop_add_accept: a multishot IORING_OP_ACCEPT (5.19+) in place of a level poll. The
 * owner's thread only: a foreign registration (none exists for listeners) gets readiness. */
static int loop_uring_add_accept(struct loop_uring *b, struct bl_io *io, bl_accept_handler h)
{
    if (b->no_accept || uring_foreign(b))
        return BL_AGAIN;
    return uring_add_local(b, io, 0, h, 0);
}

/* bl_loop_recv_pause: on, the loop stops receiving for io (its recv cancelled, its poll
 * watching reads again) and says 1 once nothing of io's is queued or in flight: the socket is
 * the owner's; off, the loop receives again. */
static int loop_uring_recv_pause(struct loop_uring *b, struct bl_io *io, int on)
{
    uint64_t ud = io->loop_slot;
    uint32_t idx = (uint32_t)ud & URING_UD_INDEX;
    if (!ud || idx >= b->nslots || b->slots[idx].io != io || !b->slots[idx].recv)
        return 1;
    struct uring_slot *s = &b->slots[idx];
    if (on && !s->rpaused) {
        s->rpaused = 1;
        if (s->recv == URING_RECV_ARMED)
            uring_recv_cancel(b, idx);
        uring_poll_remask(b, idx);
    } else if (!on && s->rpaused) {
        s->rpaused = 0;
        uring_poll_remask(b, idx);
        if (s->recv == URING_RECV_IDLE && !s->rend && !b->no_recv &&
            uring_recv_arm(b, idx) != BL_OK)
            uring_kick(b, idx);
    }
    return s->recv == URING_RECV_IDLE && s->rq_n == 0 && s->rend == 0;
}

/* bl_loop_reads: io's slot is (or was) read by the loop; a slot whose recv the kernel
 * refused reads the socket again, but may still hold queued bytes, so it counts. */
static int loop_uring_reads(const struct loop_uring *b, const struct bl_io *io)
{
    uint64_t ud = io->loop_slot;
    uint32_t idx = (uint32_t)ud & URING_UD_INDEX;
    return ud && idx < b->nslots && b->slots[idx].io == io &&
           b->slots[idx].recv != URING_RECV_OFF;
}

/* bl_loop_add_recv: a connection whose reads the loop makes (multishot recv into the ring);
 * readiness where there is no ring (refused by the kernel, or before the first turn) or from
 * another thread. */
static int loop_uring_add_recv(struct loop_uring *b, struct bl_io *io)
{
    if (b->no_recv || !b->br || uring_foreign(b))
        return loop_uring_add(b, io, 1);
    return uring_add_local(b, io, 1, NULL, 1);
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

/* A multishot accept was cancelled: the connections the kernel accepted before the cancel ran
 * sit in this batch (after the event being handed out) or come to the CQ ring until the
 * accept's last CQE (no IORING_CQE_F_MORE: -ECANCELED, usually). They are real connections,
 * taken off their listener's queue: each goes to the handler now (which holds them while its
 * listener is paused), and its CQE is blanked (user_data 0, skipped when reaped; the CQ ring
 * is the process's memory, the kernel never reads a CQE back). The cancel runs in this
 * thread's task work, so the last CQE comes within an io_uring_enter or two; waiting for it
 * here (bounded: 200 ms, in case the accept was not armed and nothing will come) is what
 * keeps a connection from arriving after the listener let go of it, on a rare path (a pause,
 * a reload, shutdown). One that still does is closed when reaped. */
/* Keeps fd for the handler (fds grows; out of memory: the connection closes). */
static void uring_salvaged(int **fds, int *n, int *cap, int fd)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 64;
        int *f = realloc(*fds, (size_t)c * sizeof(*f));
        if (!f) {
            close(fd);
            return;
        }
        *fds = f;
        *cap = c;
    }
    (*fds)[(*n)++] = fd;
}

static void uring_accept_salvage(struct loop_uring *b, struct bl_io *io, uint64_t ud,
                                 bl_accept_handler accept)
{
    int *fds = NULL;
    int n = 0, cap = 0, ended = 0;
    for (int i = b->cur + 1; i < b->nev; i++) {
        if (b->ev[i].ud != ud)
            continue;
        b->ev[i].ud = 0;
        if (!(b->ev[i].flags & IORING_CQE_F_MORE))
            ended = 1;
        if (b->ev[i].res >= 0)
            uring_salvaged(&fds, &n, &cap, b->ev[i].res);
    }
    for (int tries = 0; b->enabled && !uring_foreign(b); tries++) {
        struct io_uring_cqe *cqe;
        unsigned head;
        io_uring_for_each_cqe(&b->ring, head, cqe) {
            if (cqe->user_data != ud)
                continue;
            cqe->user_data = 0;
            if (!(cqe->flags & IORING_CQE_F_MORE))
                ended = 1;
            if (cqe->res >= 0)
                uring_salvaged(&fds, &n, &cap, cqe->res);
        }
        if (ended || tries == 20)
            break;
        struct __kernel_timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        io_uring_submit_and_wait_timeout(&b->ring, &cqe, io_uring_cq_ready(&b->ring) + 1, &ts,
                                         NULL);
    }
    for (int i = 0; i < n; i++)
        accept(io, fds[i]);
    free(fds);
}

/* bl_loop_del: the caller may close the fd right after (a listener at shutdown or when a
 * reload drops its address), and until the cancel has run the poll keeps the socket alive,
 * in its SO_REUSEPORT group, taking connections that nobody will accept. So the cancel is
 * submitted now, and its completion run (DEFER_TASKRUN runs it in an enter that gets events):
 * a syscall, on a rare path. */
static void loop_uring_del(struct loop_uring *b, struct bl_io *io)
{
    uint64_t ud = io->loop_slot;
    bl_accept_handler accept = NULL;
    if (ud && (ud & URING_UD_ACCEPT) && ((uint32_t)ud & URING_UD_INDEX) < b->nslots)
        accept = b->slots[(uint32_t)ud & URING_UD_INDEX].accept;
    uring_del_queued(b, io);
    if (ud && b->enabled && !uring_foreign(b))
        io_uring_submit_and_get_events(&b->ring);
    if (accept)
        uring_accept_salvage(b, io, ud, accept);
}

/* bl_loop_close, per connection: the cancel rides on the turn's submit (no extra syscall);
 * the socket closes (FIN) when it has run, at the end of this turn at the latest, or in
 * loop_uring_flush when the loop stops. */
static void loop_uring_close(struct loop_uring *b, struct bl_io *io)
{
    if (uring_send_pending(b, io) && !uring_foreign(b)) {
        /* A staged send has not gone (all) yet: the send keeps the fd and closes it once it
         * has (the socket must not close under it, nor its number go to a new socket while
         * its SQE still names it). */
        struct uring_slot *s = &b->slots[(uint32_t)io->loop_slot & URING_UD_INDEX];
        uint32_t i = s->send - 1;
        struct uring_send *op = &b->sends[i];
        op->owner = 0;
        op->fd = io->fd;
        op->shut_wr = s->shut_wr;
        op->deadline = bl_clock_ms + URING_LINGER_MS;
        b->norphans++;
        s->send = 0;
        uring_del_queued(b, io);
        if (!op->inflight)
            uring_orphan_wait(b, i);
        return;
    }
    uring_del_queued(b, io);
    close(io->fd);
}

/* The loop stops: what is queued (cancels of closed fds) goes out now, not when the ring is
 * freed, so that closed sockets close. */
static int loop_uring_poll(struct loop_uring *b, int timeout_ms);
static inline struct bl_io *loop_uring_event(struct loop_uring *b, int i, uint32_t *ev);

static void loop_uring_flush(struct loop_uring *b)
{
    if (b->enabled && io_uring_sq_ready(&b->ring))
        io_uring_submit_and_get_events(&b->ring);
    /* Staged sends of connections closed on the way out (a drained worker's last
     * responses) go before the ring does, as close() would let them: up to 2 s. Nothing
     * else is handed out now. */
    for (int t = 0; t < 200 && b->norphans && b->enabled; t++) {
        int n = loop_uring_poll(b, 10);
        for (int i = 0; i < n; i++) {
            const struct uring_event *e = &b->ev[i];
            uint32_t ev = 0;
            if ((e->ud >> 32) == 0 && (e->ud & URING_UD_SEND))
                (void)loop_uring_event(b, i, &ev);
            else if ((e->ud & URING_UD_ACCEPT) && e->res >= 0)
                close(e->res); /* a listener still armed: nobody serves it now */
        }
    }
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
        uring_rbufs_setup(b);
    }
    if (!atomic_load_explicit(&b->started, memory_order_relaxed)) {
        uring_owner = b;
        atomic_store_explicit(&b->started, 1, memory_order_release);
    }
    if (atomic_load_explicit(&b->nremote, memory_order_acquire))
        uring_remote_drain(b);
    if (b->norphans)
        uring_orphans_expire(b);
    if (io_uring_cq_ready(&b->ring) == 0) {
        if (timeout_ms == 0 || b->nkick) {
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
            continue; /* a cancel that found nothing left to cancel, or a salvaged accept */
        if ((cqe->user_data & URING_UD_RECV) && (cqe->user_data >> 32)) {
            if (uring_recv_cqe(b, cqe))
                b->ev[n++] = (struct uring_event){.ud = cqe->user_data};
            continue;
        }
        b->ev[n++] = (struct uring_event){.ud = cqe->user_data, .res = cqe->res,
                                          .flags = cqe->flags};
    }
    io_uring_cq_advance(&b->ring, seen);
    uint32_t k = 0;
    for (; k < b->nkick && n < URING_MAX_EVENTS; k++)
        b->ev[n++] = (struct uring_event){.ud = b->kick[k]};
    if (k) {
        memmove(b->kick, b->kick + k, (b->nkick - k) * sizeof(*b->kick));
        b->nkick -= k;
    }
    b->nev = (int)n;
    b->cur = -1;
    return (int)n;
}

/* An accept CQE: a connection (res >= 0) or why accepting stopped. Handed to the slot's
 * handler here (the run loop gets NULL: there is no readiness to report). */
static void uring_accept_event(struct loop_uring *b, struct uring_slot *s, uint32_t idx,
                               const struct uring_event *e)
{
    struct bl_io *io = s->io;
    bl_accept_handler accept = s->accept;
    if (e->res == -EINVAL || e->res == -EOPNOTSUPP) {
        /* No multishot accept in this kernel (before 5.19): the registration becomes the
         * level poll it stands in for, and io->handler accepts on readiness from now on. */
        b->no_accept = 1;
        s->accept = NULL;
        s->level = 1;
        if (uring_arm(b, idx) == BL_OK)
            io->loop_slot = uring_ud(b, idx);
        else
            uring_forget(b, io->loop_slot);
        return;
    }
    if (!(e->flags & IORING_CQE_F_MORE) && e->res != -ECANCELED)
        (void)uring_arm(b, idx); /* ended by the kernel (an error, a CQ overflow): again; the
                                  * handler cancels it if it pauses (SQ full and unflushable:
                                  * silent until the owner re-adds it, as after a failed add) */
    if (e->res == -ECANCELED)
        return;
    accept(io, e->res);
}

/* The io the i-th event is for, for a prefetch: nothing changes; a staged send's event and
 * a blanked one have none here, a stale one the slot's current io (harmless). */
static inline const struct bl_io *loop_uring_peek(const struct loop_uring *b, int i)
{
    uint64_t ud = b->ev[i].ud;
    uint32_t idx = (uint32_t)ud & URING_UD_INDEX;
    if ((ud >> 32) == 0 || idx >= b->nslots)
        return NULL;
    return b->slots[idx].io;
}

/* The i-th event of the last poll: its io (NULL when stale) and its BL_EV_* bits. */
static inline struct bl_io *loop_uring_event(struct loop_uring *b, int i, uint32_t *ev)
{
    const struct uring_event *e = &b->ev[i];
    b->cur = i;
    if ((e->ud >> 32) == 0 && (e->ud & URING_UD_SEND))
        return uring_send_event(b, e, ev);
    uint32_t idx = (uint32_t)e->ud & URING_UD_INDEX;
    struct uring_slot *s = idx < b->nslots ? &b->slots[idx] : NULL;
    if (e->ud & URING_UD_RECV) {
        /* Bytes (or their end) queued for the owner when reaped, or a kick. */
        if (!s || s->gen != (uint32_t)(e->ud >> 32) || !s->io)
            return NULL;
        s->rnotify = 0;
        *ev = BL_EV_READ | (s->rend ? BL_EV_HUP : 0);
        return s->io;
    }
    if (!s || s->gen != (uint32_t)(e->ud >> 32) || !s->io) {
        if ((e->ud & URING_UD_ACCEPT) && e->res >= 0)
            close(e->res); /* accepted after its listener was unregistered */
        return NULL;
    }
    if (s->accept) {
        uring_accept_event(b, s, idx, e);
        return NULL;
    }
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
    if (s->send) {
        /* Room for what is left of the staged send; the owner hears BL_EV_WRITE when all of
         * it went. */
        if (m & EPOLLOUT)
            s->write_owed = 1;
        if ((m & EPOLLOUT) && !b->sends[s->send - 1].inflight)
            (void)uring_send_submit(b, s->send - 1, io->fd); /* SQ full: the next edge */
        m &= ~(uint32_t)EPOLLOUT;
    }
    if (m & EPOLLOUT)
        out |= BL_EV_WRITE;
    if (m & (EPOLLRDHUP | EPOLLHUP))
        out |= BL_EV_HUP;
    if (m & (EPOLLERR | EPOLLHUP))
        out |= BL_EV_ERROR | BL_EV_READ | BL_EV_WRITE;
    *ev = out;
    return io;
}
