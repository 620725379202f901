/* The event loop on its io_uring backend: every test of test_loop.c (timers, edge and level
 * triggering, error bits, close) plus what is io_uring's own: a closed socket's peer reads
 * EOF (the cancelled poll let go of the file), an event for an fd closed earlier in the same
 * batch is dropped, registrations from another thread reach the running loop, more fds than
 * the submission ring holds register in one turn, and a kernel that refuses io_uring gives an
 * epoll loop that says why. Skipped where the kernel refuses io_uring. */
#include <errno.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <liburing.h>

/* Lets a test make io_uring_setup fail the way a kernel that refuses it does. */
static int fake_setup_errno;
static int fake_setup(unsigned entries, struct io_uring *ring, struct io_uring_params *p)
{
    if (fake_setup_errno)
        return -fake_setup_errno;
    return io_uring_queue_init_params(entries, ring, p);
}
#define LOOP_URING_SETUP fake_setup
/* A small receive ring, so that the tests reach its edges (queue full, ring dry). */
#define URING_RBUF_SIZE  64u
#define URING_RBUF_COUNT 16u
#define URING_RECV_QMAX  4u

#define TEST_LOOP_METHOD BL_LOOP_IO_URING
#define TEST_LOOP_EXTRA                                                                      \
    cmocka_unit_test(test_close_sends_fin), cmocka_unit_test(test_stale_event_dropped),      \
        cmocka_unit_test(test_remote_registration), cmocka_unit_test(test_many_fds_one_turn),  \
        cmocka_unit_test(test_refused_falls_back_to_epoll), cmocka_unit_test(test_del_releases_listener), \
        cmocka_unit_test(test_multishot_accept), cmocka_unit_test(test_accept_del_hands_back),  \
        cmocka_unit_test(test_accept_epoll_says_again), cmocka_unit_test(test_send_staged),      \
        cmocka_unit_test(test_send_full_socket), cmocka_unit_test(test_send_close_orphan),      \
        cmocka_unit_test(test_send_error_sticks), cmocka_unit_test(test_send_epoll_now),      \
        cmocka_unit_test(test_recv_queue), cmocka_unit_test(test_recv_idle_holds_none),      \
        cmocka_unit_test(test_recv_past_queue_in_order), cmocka_unit_test(test_recv_eof),    \
        cmocka_unit_test(test_recv_close_gives_back), cmocka_unit_test(test_recv_epoll_plain),  \
        cmocka_unit_test(test_recv_pause_hands_socket_over),

static void test_close_sends_fin(void **state);
static void test_stale_event_dropped(void **state);
static void test_remote_registration(void **state);
static void test_many_fds_one_turn(void **state);
static void test_refused_falls_back_to_epoll(void **state);
static void test_del_releases_listener(void **state);
static void test_multishot_accept(void **state);
static void test_accept_del_hands_back(void **state);
static void test_accept_epoll_says_again(void **state);
static void test_send_staged(void **state);
static void test_send_full_socket(void **state);
static void test_send_close_orphan(void **state);
static void test_send_error_sticks(void **state);
static void test_send_epoll_now(void **state);
static void test_recv_queue(void **state);
static void test_recv_idle_holds_none(void **state);
static void test_recv_past_queue_in_order(void **state);
static void test_recv_eof(void **state);
static void test_recv_close_gives_back(void **state);
static void test_recv_epoll_plain(void **state);
static void test_recv_pause_hands_socket_over(void **state);

#include "test_loop.c"

static void on_stop_io(struct bl_io *io, uint32_t ev) { bl_loop_stop(loop_under_test); }

/* One turn of the loop: a timer stops it. */
static void one_turn(struct bl_loop *l, int ms)
{
    struct bl_timer t = {.handler = on_stop_timer};
    bl_timer_set(l, &t, bl_clock_update() + (uint64_t)ms);
    bl_loop_run(l);
    bl_timer_cancel(l, &t);
}

static void test_close_sends_fin(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct bl_io io = {.fd = sv[0], .handler = on_stop_io};
    assert_int_equal(bl_loop_add(l, &io), BL_OK);
    one_turn(l, 20); /* armed: the poll holds a reference to the socket now */
    bl_loop_close(l, &io);
    one_turn(l, 5);  /* the cancel goes out with this turn's submit */
    char b;
    assert_int_equal(read(sv[1], &b, 1), 0); /* EOF, not EAGAIN: the socket is closed */
    close(sv[1]);
    bl_loop_destroy(l);
}

struct pair_io {
    struct bl_io io;
    struct pair_io *other;
    int calls;
};

static void on_pair(struct bl_io *io, uint32_t ev)
{
    struct pair_io *p = (struct pair_io *)io;
    p->calls++;
    bl_loop_close(loop_under_test, &p->other->io);
    bl_loop_close(loop_under_test, io);
    bl_loop_stop(loop_under_test);
}

static void test_stale_event_dropped(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int a[2], b[2];
    assert_int_equal(pipe2(a, O_NONBLOCK), 0);
    assert_int_equal(pipe2(b, O_NONBLOCK), 0);
    struct pair_io pa = {.io = {.fd = a[0], .handler = on_pair}};
    struct pair_io pb = {.io = {.fd = b[0], .handler = on_pair}};
    pa.other = &pb;
    pb.other = &pa;
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    assert_int_equal(bl_loop_add(l, &pa.io), BL_OK);
    assert_int_equal(bl_loop_add(l, &pb.io), BL_OK);
    bl_loop_run(l); /* both ready in one batch: the first handler closes both */
    one_turn(l, 10);
    assert_int_equal(pa.calls + pb.calls, 1);
    close(a[1]);
    close(b[1]);
    bl_loop_destroy(l);
}

static int remote_calls;

static void on_remote(struct bl_io *io, uint32_t ev)
{
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) > 0)
        ;
    remote_calls++;
    bl_loop_stop(loop_under_test);
}

static void on_tick(struct bl_timer *t)
{
    bl_timer_set(loop_under_test, t, bl_clock_ms + 2); /* keeps the loop turning */
}

static void *run_thread(void *arg)
{
    bl_loop_run(arg);
    return NULL;
}

static void test_remote_registration(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    struct bl_timer tick = {.handler = on_tick};
    bl_timer_set(l, &tick, bl_clock_update() + 2);
    remote_calls = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_thread, l), 0);
    for (int i = 0; i < 500 && !atomic_load(&l->b.ur.started); i++)
        usleep(2000);
    assert_true(atomic_load(&l->b.ur.started));
    /* An add and a del of one fd before the loop sees either: nothing is left of it. */
    struct bl_io gone = {.fd = eventfd(1, EFD_NONBLOCK), .handler = on_remote};
    assert_int_equal(bl_loop_add_level(l, &gone), BL_OK);
    bl_loop_del(l, &gone);
    struct bl_io io = {.fd = eventfd(0, EFD_NONBLOCK), .handler = on_remote};
    assert_int_equal(bl_loop_add_level(l, &io), BL_OK);
    uint64_t one = 1;
    assert_int_equal(write(io.fd, &one, sizeof(one)), sizeof(one));
    pthread_join(th, NULL);
    assert_int_equal(remote_calls, 1);
    /* From this thread: queued for a turn that never comes; the ring's exit cancels it. */
    bl_loop_close(l, &io);
    close(gone.fd);
    bl_timer_cancel(l, &tick);
    bl_loop_destroy(l);
}

enum { MANY = 1500 };
static int many_calls;

static void on_many(struct bl_io *io, uint32_t ev)
{
    if (ev & BL_EV_READ) {
        char b[4];
        if (read(io->fd, b, sizeof(b)) == 1 && ++many_calls == MANY)
            bl_loop_stop(loop_under_test);
    }
}

struct many_state {
    struct bl_io io[MANY];
    int peer[MANY];
    struct bl_timer t;
};
static struct many_state *many;

static void add_many(struct bl_timer *t)
{
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(bl_loop_add(loop_under_test, &many->io[i]), BL_OK);
        assert_int_equal(write(many->peer[i], "y", 1), 1);
    }
}

static void test_many_fds_one_turn(void **state)
{
    (void)state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * MANY + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < 2 * MANY + 64)
            skip();
    }
    struct bl_loop *l = make_loop();
    many = calloc(1, sizeof(*many));
    assert_non_null(many);
    for (int i = 0; i < MANY; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        many->io[i] = (struct bl_io){.fd = sv[0], .handler = on_many};
        many->peer[i] = sv[1];
    }
    many_calls = 0;
    /* Registered inside a turn: more SQEs than the submission ring holds (1024). */
    many->t.handler = add_many;
    bl_timer_set(l, &many->t, bl_clock_update() + 1);
    struct bl_timer guard = {.handler = on_stop_timer};
    bl_timer_set(l, &guard, bl_clock_update() + 5000);
    bl_loop_run(l);
    bl_timer_cancel(l, &guard);
    assert_int_equal(many_calls, MANY);
    for (int i = 0; i < MANY; i++) {
        bl_loop_close(l, &many->io[i]);
        close(many->peer[i]);
    }
    free(many);
    bl_loop_destroy(l);
}

static void test_refused_falls_back_to_epoll(void **state)
{
    (void)state;
    char err[128];
    fake_setup_errno = EPERM;
    struct bl_loop *l = bl_loop_create_method(BL_LOOP_IO_URING, err, sizeof(err));
    fake_setup_errno = 0;
    assert_non_null(l);
    assert_int_equal(bl_loop_method(l), BL_LOOP_EPOLL);
    assert_non_null(bl_loop_fallback(l));
    assert_non_null(strstr(bl_loop_fallback(l), "Operation not permitted"));
    assert_non_null(strstr(bl_loop_fallback(l), "io_uring_disabled"));
    /* and it works */
    loop_under_test = l;
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    struct bl_io io = {.fd = fds[0], .handler = on_stop_io};
    assert_int_equal(bl_loop_add(l, &io), BL_OK);
    assert_int_equal(write(fds[1], "x", 1), 1);
    bl_loop_run(l);
    bl_loop_close(l, &io);
    close(fds[1]);
    bl_loop_destroy(l);

    fake_setup_errno = ENOSYS;
    l = bl_loop_create_method(BL_LOOP_IO_URING, err, sizeof(err));
    fake_setup_errno = 0;
    assert_non_null(l);
    assert_int_equal(bl_loop_method(l), BL_LOOP_EPOLL);
    assert_non_null(strstr(bl_loop_fallback(l), "Function not implemented"));
    bl_loop_destroy(l);
    /* epoll asked for: nothing to fall back from */
    l = bl_loop_create(err, sizeof(err));
    assert_null(bl_loop_fallback(l));
    bl_loop_destroy(l);
}

/* A listener unregistered and closed (shutdown, a reload that drops its address) is closed at
 * once, not when the loop turns again: a connection is refused rather than queued on a
 * socket that the cancelled poll still held. */
static void test_del_releases_listener(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    struct bl_io io = {.fd = fd, .handler = on_stop_io};
    assert_int_equal(bl_loop_add_level(l, &io), BL_OK);
    one_turn(l, 10); /* armed */
    bl_loop_del(l, &io);
    close(fd);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(c);
    bl_loop_destroy(l);
}

/* ---- multishot accept (step 2) */

static int listener_on_loopback(struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    socklen_t alen = sizeof(*a);
    *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)a, &alen), 0);
    return fd;
}

static int accepted[16];
static int naccepted, accept_errors, readiness_calls;

static void on_readiness(struct bl_io *io, uint32_t ev) { readiness_calls++; }

static void on_accepted_fd(struct bl_io *io, int res)
{
    (void)io;
    if (res < 0) {
        accept_errors++;
        return;
    }
    assert_true(naccepted < (int)BL_ARRAY_LEN(accepted));
    accepted[naccepted++] = res;
}

static void close_accepted(void)
{
    for (int i = 0; i < naccepted; i++)
        close(accepted[i]);
    naccepted = accept_errors = 0;
}

/* The loop accepts: each connection reaches the handler as a non-blocking fd whose peer is
 * the client, and the listener's readiness handler is never called. */
static void test_multishot_accept(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    struct sockaddr_in a;
    int fd = listener_on_loopback(&a);
    struct bl_io io = {.fd = fd, .handler = on_readiness};
    readiness_calls = 0;
    assert_int_equal(bl_loop_add_accept(l, &io, on_accepted_fd), BL_OK);
    int c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(c[i], (struct sockaddr *)&a, sizeof(a)), 0);
    }
    for (int t = 0; t < 100 && naccepted < 3; t++)
        one_turn(l, 10);
    assert_int_equal(naccepted, 3);
    assert_int_equal(accept_errors, 0);
    assert_int_equal(readiness_calls, 0);
    for (int i = 0; i < 3; i++) {
        assert_true(fcntl(accepted[i], F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(accepted[i], F_GETFD) & FD_CLOEXEC);
        struct sockaddr_in peer, mine;
        socklen_t plen = sizeof(peer), mlen = sizeof(mine);
        assert_int_equal(getpeername(accepted[i], (struct sockaddr *)&peer, &plen), 0);
        assert_int_equal(getsockname(c[i], (struct sockaddr *)&mine, &mlen), 0);
        assert_int_equal(peer.sin_port, mine.sin_port);
    }
    close_accepted();
    for (int i = 0; i < 3; i++)
        close(c[i]);
    bl_loop_del(l, &io);
    close(fd);
    bl_loop_destroy(l);
}

static int del_in_handler;

/* Unregisters at its first connection, as a worker that becomes full does. */
static void on_accepted_then_del(struct bl_io *io, int res)
{
    on_accepted_fd(io, res);
    if (!del_in_handler++)
        bl_loop_del(loop_under_test, io);
    bl_loop_stop(loop_under_test);
}

/* Unregistering a multishot accept loses no connection: each one the kernel had accepted is
 * handed to the handler, from inside bl_loop_del (those later in the same batch, or already
 * in the CQ ring), the others are still in the listen queue; and once unregistered, the loop
 * accepts nothing more. Done both outside the loop and from the handler itself. */
static void test_accept_del_hands_back(void **state)
{
    (void)state;
    for (int from_handler = 0; from_handler < 2; from_handler++) {
        struct bl_loop *l = make_loop();
        struct sockaddr_in a;
        int fd = listener_on_loopback(&a);
        struct bl_io io = {.fd = fd, .handler = on_readiness};
        del_in_handler = 0;
        assert_int_equal(bl_loop_add_accept(l, &io, from_handler ? on_accepted_then_del
                                                                 : on_accepted_fd), BL_OK);
        one_turn(l, 10); /* armed */
        int c[4];
        for (int i = 0; i < 4; i++) {
            c[i] = socket(AF_INET, SOCK_STREAM, 0);
            assert_int_equal(connect(c[i], (struct sockaddr *)&a, sizeof(a)), 0);
        }
        if (from_handler)
            one_turn(l, 100);
        else
            bl_loop_del(l, &io);
        int handed = naccepted, queued = 0;
        for (int k; (k = accept4(fd, NULL, NULL, SOCK_NONBLOCK)) >= 0;) {
            queued++;
            close(k);
        }
        assert_int_equal(handed + queued, 4);
        one_turn(l, 10);
        assert_int_equal(naccepted, handed);
        int late = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(late, (struct sockaddr *)&a, sizeof(a)), 0);
        one_turn(l, 10);
        assert_int_equal(naccepted, handed); /* still in the queue: */
        int k = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
        assert_true(k >= 0);
        close(k);
        close(late);
        close_accepted();
        for (int i = 0; i < 4; i++)
            close(c[i]);
        close(fd);
        bl_loop_destroy(l);
    }
}

/* epoll has no completion accept: the caller is told to register readiness. */
static void test_accept_epoll_says_again(void **state)
{
    (void)state;
    char err[160];
    struct bl_loop *l = bl_loop_create_method(BL_LOOP_EPOLL, err, sizeof(err));
    assert_non_null(l);
    struct bl_io io = {.fd = 0, .handler = on_readiness};
    assert_int_equal(bl_loop_add_accept(l, &io, on_accepted_fd), BL_AGAIN);
    bl_loop_destroy(l);
}

/* ---- staged sends (step 2) */

struct sender {
    struct bl_io io;
    uint32_t seen;
    int calls;
};

static void on_sender(struct bl_io *io, uint32_t ev)
{
    struct sender *s = (struct sender *)io;
    s->seen |= ev;
    s->calls++;
}

static ssize_t send_str(struct bl_loop *l, struct sender *s, const char *a, const char *b)
{
    struct iovec iov[2] = {{.iov_base = (void *)a, .iov_len = strlen(a)},
                           {.iov_base = (void *)b, .iov_len = b ? strlen(b) : 0}};
    return bl_loop_send(l, &s->io, iov, b ? 2 : 1);
}

/* Reads what is there (non-blocking). */
static ssize_t drain(int fd, char *buf, size_t len)
{
    ssize_t got = 0, n;
    while ((size_t)got < len && (n = recv(fd, buf + got, len - (size_t)got, MSG_DONTWAIT)) > 0)
        got += n;
    return got;
}

/* The bytes are taken at once, go out with the turn's enter (none before), in order; a
 * second send while the first is out says BL_AGAIN, and the owner hears BL_EV_WRITE when
 * it went; a shutdown asked for meanwhile comes after the bytes. */
static void test_send_staged(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add(l, &s.io), BL_OK);
    one_turn(l, 10);
    char a[64] = "head ", buf[128];
    assert_int_equal(send_str(l, &s, a, "body"), 9);
    memcpy(a, "XXXXX", 5); /* the loop copied it */
    assert_int_equal(drain(sv[1], buf, sizeof(buf)), 0);
    s.seen = 0;
    assert_int_equal(send_str(l, &s, "more", NULL), BL_AGAIN);
    bl_loop_shutdown_wr(l, &s.io);
    for (int t = 0; t < 50 && !(s.seen & BL_EV_WRITE); t++)
        one_turn(l, 10);
    assert_true(s.seen & BL_EV_WRITE);
    assert_int_equal(bl_loop_send_busy(l, &s.io), 0);
    assert_int_equal(drain(sv[1], buf, sizeof(buf)), 9);
    assert_memory_equal(buf, "head body", 9);
    assert_int_equal(recv(sv[1], buf, 1, MSG_DONTWAIT), 0); /* then the FIN */
    bl_loop_close(l, &s.io);
    close(sv[1]);
    bl_loop_destroy(l);
}

/* A socket that takes part or none: the rest waits for room, the owner is told BL_AGAIN
 * until all went, and the peer gets every byte in order. */
static void test_send_full_socket(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add(l, &s.io), BL_OK);
    one_turn(l, 10);
    static char fill[1 << 16];
    memset(fill, 'f', sizeof(fill));
    size_t filled = 0;
    for (ssize_t n; (n = send(sv[0], fill, sizeof(fill), MSG_DONTWAIT)) > 0;)
        filled += (size_t)n;
    char msg[BL_LOOP_SEND_STAGE];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)('a' + i % 26);
    struct iovec iov = {.iov_base = msg, .iov_len = sizeof(msg)};
    assert_int_equal(bl_loop_send(l, &s.io, &iov, 1), (ssize_t)sizeof(msg));
    one_turn(l, 10);
    assert_int_equal(send_str(l, &s, "x", NULL), BL_AGAIN);
    assert_int_equal(bl_loop_send_busy(l, &s.io), 1);
    s.seen = 0;
    static char got[(1 << 20)];
    size_t have = 0;
    for (int t = 0; t < 200 && !(s.seen & BL_EV_WRITE); t++) {
        have += (size_t)drain(sv[1], got + have, sizeof(got) - have);
        one_turn(l, 10);
    }
    assert_true(s.seen & BL_EV_WRITE);
    for (int t = 0; t < 50 && have < filled + sizeof(msg); t++)
        have += (size_t)drain(sv[1], got + have, sizeof(got) - have);
    assert_int_equal(have, filled + sizeof(msg));
    assert_memory_equal(got + filled, msg, sizeof(msg));
    bl_loop_close(l, &s.io);
    close(sv[1]);
    bl_loop_destroy(l);
}

/* Closed with its send not gone (the socket full): the fd stays open until the bytes went,
 * then the peer reads them and EOF, as after close() on a socket holding unsent data. */
static void test_send_close_orphan(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add(l, &s.io), BL_OK);
    one_turn(l, 10);
    static char fill[1 << 16];
    size_t filled = 0;
    for (ssize_t n; (n = send(sv[0], fill, sizeof(fill), MSG_DONTWAIT)) > 0;)
        filled += (size_t)n;
    assert_int_equal(send_str(l, &s, "last words", NULL), 10);
    one_turn(l, 10);
    bl_loop_close(l, &s.io);
    assert_int_equal(s.io.fd, -1);
    static char got[1 << 20];
    size_t have = 0;
    int eof = 0;
    for (int t = 0; t < 300 && !eof; t++) {
        one_turn(l, 5);
        ssize_t n;
        while ((n = recv(sv[1], got + have, sizeof(got) - have, MSG_DONTWAIT)) > 0)
            have += (size_t)n;
        eof = n == 0;
    }
    assert_true(eof);
    assert_int_equal(have, filled + 10);
    assert_memory_equal(got + filled, "last words", 10);
    close(sv[1]);
    bl_loop_destroy(l);
}

/* A staged send that fails (the peer is gone) reports BL_EV_ERROR, and the next send the
 * error. */
static void test_send_error_sticks(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add(l, &s.io), BL_OK);
    one_turn(l, 10);
    close(sv[1]);
    s.seen = 0;
    assert_int_equal(send_str(l, &s, "into the void", NULL), 13);
    for (int t = 0; t < 50 && !(s.seen & BL_EV_ERROR); t++)
        one_turn(l, 10);
    assert_true(s.seen & BL_EV_ERROR);
    errno = 0;
    assert_int_equal(send_str(l, &s, "again", NULL), BL_ERR);
    assert_int_equal(errno, EPIPE);
    bl_loop_close(l, &s.io);
    bl_loop_destroy(l);
}

/* epoll: bl_loop_send is the plain send, made at once. */
static void test_send_epoll_now(void **state)
{
    (void)state;
    char err[160];
    struct bl_loop *l = bl_loop_create_method(BL_LOOP_EPOLL, err, sizeof(err));
    assert_non_null(l);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add(l, &s.io), BL_OK);
    assert_int_equal(send_str(l, &s, "now", NULL), 3);
    assert_int_equal(bl_loop_send_busy(l, &s.io), 0);
    char buf[8];
    assert_int_equal(drain(sv[1], buf, sizeof(buf)), 3);
    bl_loop_close(l, &s.io);
    close(sv[1]);
    bl_loop_destroy(l);
}

/* ---- loop receive (step 3): multishot recv into the shared ring */

/* Turns until s saw ev (bounded). */
static void turn_until(struct bl_loop *l, struct sender *s, uint32_t ev)
{
    for (int t = 0; t < 100 && !(s->seen & ev); t++)
        one_turn(l, 5);
}

/* Bytes come without a recv of the owner's: queued, handed over by bl_loop_recv (a peek
 * leaves them), each buffer back in the ring once copied out; then EAGAIN, no syscall. */
static void test_recv_queue(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    one_turn(l, 1); /* the ring is set up on the loop's first turn, on its thread */
    assert_non_null(l->b.ur.br);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add_recv(l, &s.io), BL_OK);
    assert_true(bl_loop_reads(l, &s.io)); /* so its owner must not splice it */
    one_turn(l, 5);
    assert_int_equal(write(sv[1], "hello, ring", 11), 11);
    s.seen = 0;
    turn_until(l, &s, BL_EV_READ);
    assert_true(s.seen & BL_EV_READ);
    assert_false(s.seen & BL_EV_HUP);
    /* The bytes left the socket: the kernel has nothing for a plain recv. */
    char buf[128];
    assert_int_equal(recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT), -1);
    assert_int_equal(l->b.ur.rheld, 1);
    assert_int_equal(bl_loop_recv(l, &s.io, buf, 5, MSG_PEEK), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(bl_loop_recv(l, &s.io, buf, 7, 0), 7);
    assert_memory_equal(buf, "hello, ", 7);
    assert_int_equal(l->b.ur.rheld, 1); /* part of the buffer is still the owner's */
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 4);
    assert_memory_equal(buf, "ring", 4);
    assert_int_equal(l->b.ur.rheld, 0);
    errno = 0;
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), -1);
    assert_int_equal(errno, EAGAIN);
    /* Two writes before the owner reads: one read takes both, in order. */
    assert_int_equal(write(sv[1], "ab", 2), 2);
    one_turn(l, 5);
    assert_int_equal(write(sv[1], "cd", 2), 2);
    one_turn(l, 5);
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 4);
    assert_memory_equal(buf, "abcd", 4);
    bl_loop_close(l, &s.io);
    close(sv[1]);
    bl_loop_destroy(l);
}

/* Idle connections hold no buffer: the ring is shared, a buffer is taken only while bytes
 * wait for their owner. */
static void test_recv_idle_holds_none(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    one_turn(l, 1);
    enum { N = 3 * URING_RBUF_COUNT };
    static int peer[N];
    static struct sender s[N];
    for (int i = 0; i < N; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        s[i] = (struct sender){.io = {.fd = sv[0], .handler = on_sender}};
        peer[i] = sv[1];
        assert_int_equal(bl_loop_add_recv(l, &s[i].io), BL_OK);
    }
    one_turn(l, 5);
    assert_int_equal(l->b.ur.rheld, 0);
    /* More connections than buffers each get a request in turn, read as it comes. */
    for (int i = 0; i < N; i++) {
        char buf[8];
        assert_int_equal(write(peer[i], "GET", 3), 3);
        s[i].seen = 0;
        turn_until(l, &s[i], BL_EV_READ);
        assert_int_equal(bl_loop_recv(l, &s[i].io, buf, sizeof(buf), 0), 3);
        assert_int_equal(l->b.ur.rheld, 0);
    }
    for (int i = 0; i < N; i++) {
        bl_loop_close(l, &s[i].io);
        close(peer[i]);
    }
    bl_loop_destroy(l);
}

/* More than the queue and the ring hold, unread: the loop stops receiving for it (queue
 * full: cancelled; ring dry: ENOBUFS), the rest waits in the socket, and the owner reads
 * every byte in order, the loop's receive armed again once the socket is drained. */
static void test_recv_past_queue_in_order(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    one_turn(l, 1);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add_recv(l, &s.io), BL_OK);
    one_turn(l, 5);
    enum { TOTAL = 40 * URING_RBUF_SIZE };
    static char out[TOTAL], in[TOTAL];
    for (int i = 0; i < TOTAL; i++)
        out[i] = (char)('A' + i % 23);
    size_t sent = 0, got = 0;
    int stopped = 0;
    for (int round = 0; round < 400 && got < TOTAL; round++) {
        if (sent < TOTAL) {
            ssize_t w = write(sv[1], out + sent, TOTAL - sent < 300 ? TOTAL - sent : 300);
            if (w > 0)
                sent += (size_t)w;
        }
        one_turn(l, 2);
        assert_true(l->b.ur.rheld <= URING_RBUF_COUNT);
        stopped |= l->b.ur.slots[s.io.loop_slot & URING_UD_INDEX].recv == URING_RECV_IDLE;
        if (round < 10)
            continue; /* the owner is busy: the queue fills, then the ring runs dry */
        ssize_t n = bl_loop_recv(l, &s.io, in + got, 100, 0);
        if (n > 0)
            got += (size_t)n;
        else
            assert_true(n < 0 && errno == EAGAIN);
    }
    assert_int_equal(got, TOTAL);
    assert_true(stopped); /* the owner read the socket itself for a while */
    assert_memory_equal(in, out, TOTAL);
    assert_int_equal(l->b.ur.rheld, 0);
    /* And the loop receives again: a new write comes as a queue event. */
    s.seen = 0;
    assert_int_equal(write(sv[1], "z", 1), 1);
    turn_until(l, &s, BL_EV_READ);
    char c;
    assert_int_equal(bl_loop_recv(l, &s.io, &c, 1, 0), 1);
    assert_int_equal(c, 'z');
    bl_loop_close(l, &s.io);
    close(sv[1]);
    bl_loop_destroy(l);
}

/* The peer's last bytes and FIN: BL_EV_HUP with them, the bytes, then 0 (for good). */
static void test_recv_eof(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    one_turn(l, 1);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add_recv(l, &s.io), BL_OK);
    one_turn(l, 5);
    assert_int_equal(write(sv[1], "bye", 3), 3);
    close(sv[1]);
    s.seen = 0;
    turn_until(l, &s, BL_EV_HUP);
    assert_true(s.seen & BL_EV_READ);
    assert_true(s.seen & BL_EV_HUP);
    char buf[16];
    assert_int_equal(bl_loop_recv(l, &s.io, buf, 1, MSG_PEEK), 1);
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 3);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), MSG_PEEK), 0);
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 0);
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 0);
    bl_loop_close(l, &s.io);
    bl_loop_destroy(l);
}

/* A connection closed with bytes queued and its recv still armed: the buffers go back at
 * once, a CQE that comes after the close never reaches the freed owner (ASan watches it:
 * the owner is heap memory freed right after the close), and the ring serves the next. */
static void test_recv_close_gives_back(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    one_turn(l, 1);
    for (int round = 0; round < 3 * (int)URING_RBUF_COUNT; round++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        struct sender *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        s->io = (struct bl_io){.fd = sv[0], .handler = on_sender};
        assert_int_equal(bl_loop_add_recv(l, &s->io), BL_OK);
        one_turn(l, 2);
        assert_int_equal(write(sv[1], "queued", 6), 6);
        one_turn(l, 2);
        assert_int_equal(write(sv[1], "in flight", 9), 9); /* may land after the close */
        bl_loop_close(l, &s->io);
        free(s);
        one_turn(l, 2);
        assert_int_equal(l->b.ur.rheld, 0);
        close(sv[1]);
    }
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add_recv(l, &s.io), BL_OK);
    one_turn(l, 2);
    assert_int_equal(write(sv[1], "next", 4), 4);
    turn_until(l, &s, BL_EV_READ);
    char buf[8];
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 4);
    bl_loop_close(l, &s.io);
    close(sv[1]);
    bl_loop_destroy(l);
}

/* epoll: bl_loop_add_recv is bl_loop_add, bl_loop_recv the plain recv. */
static void test_recv_epoll_plain(void **state)
{
    (void)state;
    char err[160];
    struct bl_loop *l = bl_loop_create_method(BL_LOOP_EPOLL, err, sizeof(err));
    assert_non_null(l);
    loop_under_test = l;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add_recv(l, &s.io), BL_OK);
    assert_false(bl_loop_reads(l, &s.io));
    assert_int_equal(write(sv[1], "plain", 5), 5);
    char buf[8];
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 5);
    errno = 0;
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), -1);
    assert_int_equal(errno, EAGAIN);
    bl_loop_close(l, &s.io);
    close(sv[1]);
    bl_loop_destroy(l);
}

/* A pause (an owner that splices): queued bytes first, through bl_loop_recv; then the socket
 * is the owner's, with readiness edges; resumed, the loop receives again. */
static void test_recv_pause_hands_socket_over(void **state)
{
    (void)state;
    struct bl_loop *l = make_loop();
    one_turn(l, 1);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sender s = {.io = {.fd = sv[0], .handler = on_sender}};
    assert_int_equal(bl_loop_add_recv(l, &s.io), BL_OK);
    one_turn(l, 5);
    assert_int_equal(write(sv[1], "queued", 6), 6);
    turn_until(l, &s, BL_EV_READ);
    assert_int_equal(bl_loop_recv_pause(l, &s.io, 1), 0); /* bytes are queued */
    char buf[16];
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 6);
    int owned = 0;
    for (int t = 0; t < 50 && !owned; t++) {
        one_turn(l, 5);
        owned = bl_loop_recv_pause(l, &s.io, 1);
    }
    assert_true(owned);
    one_turn(l, 5);
    s.seen = 0;
    assert_int_equal(write(sv[1], "mine", 4), 4);
    turn_until(l, &s, BL_EV_READ);
    assert_true(s.seen & BL_EV_READ);
    assert_int_equal(recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT), 4); /* in the socket */
    /* A second edge while paused: readiness goes on. */
    s.seen = 0;
    assert_int_equal(write(sv[1], "more", 4), 4);
    turn_until(l, &s, BL_EV_READ);
    assert_true(s.seen & BL_EV_READ);
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 4); /* not armed again */
    assert_int_equal(recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT), -1);
    bl_loop_recv_pause(l, &s.io, 0);
    one_turn(l, 5);
    s.seen = 0;
    assert_int_equal(write(sv[1], "loop", 4), 4);
    turn_until(l, &s, BL_EV_READ);
    assert_int_equal(l->b.ur.rheld, 1); /* the loop took it */
    assert_int_equal(bl_loop_recv(l, &s.io, buf, sizeof(buf), 0), 4);
    bl_loop_close(l, &s.io);
    close(sv[1]);
    bl_loop_destroy(l);
}
