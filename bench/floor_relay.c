/* floor_relay: the "floor" of issue 14, a relay that costs what the kernel's TCP work costs.
 *
 *   floor_relay LISTEN_PORT UPSTREAM_HOST:PORT epoll|io_uring
 *
 * Each accepted client gets its own upstream connection, opened at accept time; bytes are
 * copied both ways without parsing, and the pair is closed when either side closes or fails.
 * Nothing is pooled, balanced, timed out or logged: what is left is the least a proxy of
 * keep-alive HTTP/1.1 can do per request, and ballast's CPU and syscalls per request are
 * measured against it (bench/floor.sh, make bench's `http` rows).
 *
 * epoll: edge-triggered, both sockets registered once for IN|OUT|RDHUP. A request is one recv
 * and one send per side: a recv that returns less than the buffer drained the socket (the next
 * byte is a new edge), so there is no second recv that answers EAGAIN. A short send keeps the
 * rest and waits for the peer's EPOLLOUT edge; the source is read again only once it is out.
 *
 * io_uring: one recv in flight per side. A recv's bytes go out as a send to the peer with
 * MSG_WAITALL (the kernel finishes a short send itself), linked to the next recv on the same
 * side (IOSQE_IO_LINK: it starts once the buffer is free, with IORING_RECVSEND_POLL_FIRST,
 * as the next bytes cannot be there yet in request/response traffic). Everything a turn
 * queues goes to the kernel with the wait in one io_uring_enter (io_uring_submit_and_wait).
 * Accepts are one multishot accept; upstream connects are IORING_OP_CONNECT.
 *
 * Single-threaded; SIGTERM/SIGINT end it (the kernel closes the sockets).
 */
#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (16 * 1024)
#define MAX_EVENTS 512
#define ACCEPT_BATCH 64
#define RING_ENTRIES 4096u

/* io_uring user_data: a side pointer (8-byte aligned) with the operation in the low bits. */
enum op { OP_ACCEPT = 0, OP_RECV = 1, OP_SEND = 2, OP_CONNECT = 3 };
#define OP_MASK 3u

struct pair;

/* One socket of a pair and the bytes read from it that are still to go out on its peer. */
struct side {
    int fd;
    int rd_ready;        /* epoll: an edge came that was not read to EAGAIN or a short read */
    int hup;             /* epoll: the peer's FIN or an error was seen: read until recv says so */
    int connecting;      /* upstream: connect() not finished; what the client sent waits */
    size_t off, len;     /* buf[off, off + len): read here, not yet sent to the peer */
    struct side *peer;
    struct pair *pair;
    char *buf;
};

struct pair {
    struct side c, u;
    int closing;         /* io_uring: shut down, waiting for its requests to come back */
    int inflight;        /* io_uring: SQEs whose CQE has not been seen */
    struct pair *next_dead;
    _Alignas(64) char bufs[2][BUF_SIZE];
};

static struct sockaddr_storage upstream_addr;
static socklen_t upstream_len;
static struct pair *dead;   /* epoll: closed during this turn, freed after it */

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct pair *pair_new(int cfd)
{
    struct pair *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    memset(p, 0, offsetof(struct pair, bufs));
    p->c = (struct side){.fd = cfd, .peer = &p->u, .pair = p, .buf = p->bufs[0]};
    p->u = (struct side){.fd = -1, .peer = &p->c, .pair = p, .buf = p->bufs[1], .connecting = 1};
    return p;
}

static int upstream_socket(void)
{
    int fd = socket(upstream_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0)
        set_nodelay(fd);
    return fd;
}

/* ------------------------------------------------------------------------------- epoll */

static int ep;

static void ep_close(struct pair *p)
{
    if (p->closing)
        return;
    p->closing = 1;
    close(p->c.fd);   /* also leaves the epoll set */
    if (p->u.fd >= 0)
        close(p->u.fd);
    p->next_dead = dead;
    dead = p;
}

/* Sends what s read to its peer. 1: all out; 0: the rest waits for the peer's EPOLLOUT;
 * -1: the pair was closed. */
static int ep_flush(struct side *s)
{
    struct side *d = s->peer;
    if (d->connecting)
        return 0;
    while (s->len) {
        ssize_t n = send(d->fd, s->buf + s->off, s->len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN)
                return 0;
            if (errno == EINTR)
                continue;
            ep_close(s->pair);
            return -1;
        }
        s->off += (size_t)n;
        s->len -= (size_t)n;
    }
    s->off = 0;
    return 1;
}

static void ep_read(struct side *s)
{
    while (s->rd_ready && s->len == 0) {
        ssize_t n = recv(s->fd, s->buf, BUF_SIZE, 0);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN) {
                s->rd_ready = 0;
                return;
            }
            if (n < 0 && errno == EINTR)
                continue;
            ep_close(s->pair);
            return;
        }
        /* Short: the socket is empty now; more bytes will be a new edge. A FIN that came
         * with the bytes is no new edge, so after one the next recv must see it. */
        s->rd_ready = n == BUF_SIZE || s->hup;
        s->len = (size_t)n;
        if (ep_flush(s) <= 0)
            return;
    }
}

static void ep_writable(struct side *d)
{
    struct side *s = d->peer;   /* the side whose bytes go out on d */
    if (d->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            ep_close(d->pair);
            return;
        }
        d->connecting = 0;
    }
    if (s->len && ep_flush(s) <= 0)
        return;
    ep_read(s);
}

static void ep_add(int fd, void *ptr, uint32_t events)
{
    struct epoll_event e = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0)
        die("epoll_ctl");
}

/* An accepted client with its own upstream socket (not yet connected), or NULL when either
 * could not be had (the client is closed). Both modes accept this way. */
static struct pair *pair_open(int cfd)
{
    set_nodelay(cfd);
    struct pair *p = pair_new(cfd);
    int ufd = p ? upstream_socket() : -1;
    if (ufd < 0) {
        free(p);
        close(cfd);
        return NULL;
    }
    p->u.fd = ufd;
    return p;
}

static void ep_accept(int lfd)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;   /* EAGAIN, or out of fds: the listener stays readable */
        struct pair *p = pair_open(cfd);
        if (!p)
            continue;
        int ufd = p->u.fd;
        if (connect(ufd, (struct sockaddr *)&upstream_addr, upstream_len) < 0 &&
            errno != EINPROGRESS) {
            close(ufd);
            close(cfd);
            free(p);
            continue;
        }
        ep_add(cfd, &p->c, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        ep_add(ufd, &p->u, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    }
}

static void run_epoll(int lfd)
{
    struct epoll_event ev[MAX_EVENTS];
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    ep_add(lfd, NULL, EPOLLIN);
    for (;;) {
        int n = epoll_wait(ep, ev, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct side *s = ev[i].data.ptr;
            if (!s) {
                ep_accept(lfd);
                continue;
            }
            if (s->pair->closing)
                continue;
            uint32_t e = ev[i].events;
            if (e & (EPOLLOUT | EPOLLERR))
                ep_writable(s);
            if (s->pair->closing)
                continue;
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                s->rd_ready = 1;
                s->hup |= (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
                ep_read(s);
            }
        }
        while (dead) {
            struct pair *p = dead;
            dead = p->next_dead;
            free(p);
        }
    }
}

/* ---------------------------------------------------------------------------- io_uring */

static struct io_uring ring;

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {   /* full: what is queued goes now, outside the turn's one submit */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
        if (!sqe)
            die("io_uring_get_sqe");
    }
    return sqe;
}

static void ud_set(struct io_uring_sqe *sqe, struct side *s, enum op op)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | op);
    if (s)
        s->pair->inflight++;
}

static void ur_recv(struct side *s, int poll_first)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv(sqe, s->fd, s->buf, BUF_SIZE, 0);
    if (poll_first)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    ud_set(sqe, s, OP_RECV);
}

/* s->buf[0, len) to the peer, then the next recv on s once the send is done. */
static void ur_forward(struct side *s)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, s->peer->fd, s->buf, s->len, MSG_NOSIGNAL | MSG_WAITALL);
    sqe->flags |= IOSQE_IO_LINK;
    ud_set(sqe, s, OP_SEND);
    ur_recv(s, 1);
}

/* Shut both sockets down so that every pending request comes back; the fds are closed and
 * the pair freed when the last one has (an fd closed earlier could be reused by an accept
 * while a linked recv still names its number). */
static void ur_close(struct pair *p)
{
    if (!p->closing) {
        p->closing = 1;
        shutdown(p->c.fd, SHUT_RDWR);
        if (p->u.fd >= 0)
            shutdown(p->u.fd, SHUT_RDWR);
    }
    if (p->inflight == 0) {
        close(p->c.fd);
        if (p->u.fd >= 0)
            close(p->u.fd);
        free(p);
    }
}

static void ur_accept_arm(int lfd)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ud_set(sqe, NULL, OP_ACCEPT);
}

static void ur_accepted(int cfd)
{
    struct pair *p = pair_open(cfd);
    if (!p)
        return;
    int ufd = p->u.fd;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_connect(sqe, ufd, (struct sockaddr *)&upstream_addr, upstream_len);
    ud_set(sqe, &p->u, OP_CONNECT);
    ur_recv(&p->c, 0);
}

static void ur_complete(struct side *s, enum op op, int res)
{
    struct pair *p = s->pair;
    p->inflight--;
    if (p->closing) {
        ur_close(p);
        return;
    }
    switch (op) {
    case OP_CONNECT:
        if (res < 0)
            break;
        s->connecting = 0;
        ur_recv(s, 1);
        if (s->peer->len)   /* the client spoke first */
            ur_forward(s->peer);
        return;
    case OP_RECV:
        if (res <= 0)
            break;
        s->len = (size_t)res;
        if (!s->peer->connecting)
            ur_forward(s);
        return;
    case OP_SEND:
        if (res < 0 || (size_t)res != s->len)
            break;   /* MSG_WAITALL: short only on an error; the linked recv is cancelled */
        s->len = 0;
        return;
    case OP_ACCEPT:
        return;
    }
    ur_close(p);
}

static void run_uring(int lfd)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
            IORING_SETUP_CQSIZE,
        IORING_SETUP_CQSIZE,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]) && rc < 0; i++) {
        struct io_uring_params prm = {.flags = flag_sets[i], .cq_entries = 4 * RING_ENTRIES};
        rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &prm);
    }
    if (rc < 0) {
        errno = -rc;
        die("io_uring_queue_init_params");
    }
    ur_accept_arm(lfd);
    for (;;) {
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            errno = -rc;
            die("io_uring_submit_and_wait");
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            struct side *s = (struct side *)(uintptr_t)(cqe->user_data & ~(uint64_t)OP_MASK);
            enum op op = (enum op)(cqe->user_data & OP_MASK);
            if (op == OP_ACCEPT) {
                if (cqe->res >= 0)
                    ur_accepted(cqe->res);
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    ur_accept_arm(lfd);
                continue;
            }
            ur_complete(s, op, cqe->res);
        }
        io_uring_cq_advance(&ring, seen);
    }
}

/* ---------------------------------------------------------------------------- main */

static int listen_on(const char *port)
{
    char *end;
    long v = strtol(port, &end, 10);
    if (*end || v <= 0 || v > 65535) {
        fprintf(stderr, "floor_relay: bad listen port '%s'\n", port);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)v),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0)
        die("listen");
    return fd;
}

static void resolve(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host)) {
        fprintf(stderr, "floor_relay: upstream must be HOST:PORT, not '%s'\n", hostport);
        exit(2);
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc) {
        fprintf(stderr, "floor_relay: %s: %s\n", hostport, gai_strerror(rc));
        exit(2);
    }
    memcpy(&upstream_addr, res->ai_addr, res->ai_addrlen);
    upstream_len = res->ai_addrlen;
    freeaddrinfo(res);
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[3], "epoll") != 0 && strcmp(argv[3], "io_uring") != 0)) {
        fprintf(stderr, "usage: floor_relay LISTEN_PORT UPSTREAM_HOST:PORT epoll|io_uring\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    resolve(argv[2]);
    int lfd = listen_on(argv[1]);
    if (argv[3][0] == 'e')
        run_epoll(lfd);
    else
        run_uring(lfd);
    return 0;
}
