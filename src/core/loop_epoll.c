/* Event loop backend: epoll, the default. #included by loop.c next to loop_uring.c (the
 * Makefile does not compile it on its own).
 *
 * Every function here is static and called from one place in loop.c, so the compiler inlines
 * the backend into the run loop: choosing a backend costs no indirect call per event (Redis
 * ae.c includes ae_epoll.c the same way; loop.c picks between the two once per bl_loop_run). The contract a backend meets is in
 * docs/internals.md, "Event loop".
 *
 * Interest is registered once per fd, edge-triggered for both directions, so a connection
 * costs one epoll_ctl in its lifetime and none per request; there is nothing to batch before
 * the wait. close() removes the fd from the epoll set, so loop_epoll_close() only closes.
 */
#include <sys/epoll.h>

#define LOOP_MAX_EVENTS 512

struct loop_epoll {
    int epfd;
    struct epoll_event events[LOOP_MAX_EVENTS];
};


static int loop_epoll_init(struct loop_epoll *b, char *err, unsigned long errlen)
{
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        snprintf(err, errlen, "epoll_create1() failed (%s)", strerror(errno));
        return BL_ERR;
    }
    return BL_OK;
}

static void loop_epoll_free(struct loop_epoll *b) { close(b->epfd); }

/* edge: edge-triggered read and write (connections); else level-triggered read only
 * (listeners, eventfd, signalfd). */
static int loop_epoll_add(struct loop_epoll *b, struct bl_io *io, int edge)
{
    struct epoll_event ev = {
        .events = edge ? EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET : EPOLLIN,
        .data.ptr = io,
    };
    return epoll_ctl(b->epfd, EPOLL_CTL_ADD, io->fd, &ev) == 0 ? BL_OK : BL_ERR;
}

static void loop_epoll_del(struct loop_epoll *b, struct bl_io *io)
{
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

static void loop_epoll_close(struct loop_epoll *b, struct bl_io *io) { close(io->fd); }

/* The loop stops: nothing is queued. */
static void loop_epoll_flush(struct loop_epoll *b) { (void)b; }

/* Waits up to timeout_ms; returns how many events are ready (0 on timeout or a signal). */
static int loop_epoll_poll(struct loop_epoll *b, int timeout_ms)
{
    int n = bl_sys_epoll_wait(b->epfd, b->events, LOOP_MAX_EVENTS, timeout_ms);
    return n > 0 ? n : 0;
}

/* The io of the i-th event, for a prefetch: nothing changes. */
static inline const struct bl_io *loop_epoll_peek(const struct loop_epoll *b, int i)
{
    return b->events[i].data.ptr;
}

/* The i-th ready event of the last poll: its io, and its BL_EV_* bits in *ev. */
static inline struct bl_io *loop_epoll_event(struct loop_epoll *b, int i, uint32_t *ev)
{
    uint32_t e = b->events[i].events, out = 0;
    if (e & (EPOLLIN | EPOLLRDHUP))
        out |= BL_EV_READ;
    if (e & EPOLLOUT)
        out |= BL_EV_WRITE;
    if (e & (EPOLLRDHUP | EPOLLHUP))
        out |= BL_EV_HUP;
    if (e & (EPOLLERR | EPOLLHUP))
        out |= BL_EV_ERROR | BL_EV_READ | BL_EV_WRITE;
    *ev = out;
    return b->events[i].data.ptr;
}
