/* The upstream connection pool: connect, reuse of the most recent idle connection, the
 * keepalive / keepalive_requests limits, unread input, draining, the idle timeout, an idle
 * connection closed by the server, and the owner's handlers, against a listening socket on
 * 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "upstream/conn_pool.c"

#include "assert_eq.h"

struct fixture {
    struct bl_loop *loop;
    struct bl_conn_pool pool;
    int lfd;                                 /* the "upstream server" */
    struct bl_upstream_group g;
    struct bl_upstream_server s[2];
    struct bl_server_state st[2];
    struct bl_timer stop;
    int owner_events, owner_timeouts;
};

static struct fixture *fx;

static void on_stop(struct bl_timer *t)
{
    (void)t;
    bl_loop_stop(fx->loop);
}

/* Runs the loop for ms milliseconds. */
static void run_for(uint64_t ms)
{
    fx->stop.handler = on_stop;
    bl_timer_set(fx->loop, &fx->stop, bl_clock_update() + ms);
    bl_loop_run(fx->loop);
}

static int setup(void **state)
{
    (void)state;
    char err[128];
    fx = calloc(1, sizeof(*fx));
    fx->loop = bl_loop_create(err, sizeof(err));
    assert_non_null(fx->loop);
    assert_int_equal(bl_conn_pool_init(&fx->pool, fx->loop, 2), BL_OK);
    fx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fx->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fx->lfd, 64), 0);
    socklen_t len = sizeof(sin);
    getsockname(fx->lfd, (struct sockaddr *)&sin, &len);
    fx->g.name = "g";
    fx->g.keepalive = 4;
    fx->g.keepalive_requests = 100;
    fx->g.keepalive_timeout_ms = 60000;
    for (int i = 0; i < 2; i++) {
        struct bl_upstream_server *s = &fx->s[i];
        memcpy(&s->addr, &sin, sizeof(sin));
        s->addrlen = sizeof(sin);
        s->id = (uint32_t)i;
        s->name = "127.0.0.1";
        s->group = &fx->g;
        s->state = &fx->st[i];
    }
    bl_clock_update();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bl_conn_pool_free(&fx->pool);
    run_for(1); /* deferred frees */
    close(fx->lfd);
    bl_loop_destroy(fx->loop);
    free(fx);
    return 0;
}

static void owner_io(struct bl_upconn *u)
{
    ((struct fixture *)u->owner)->owner_events++;
    bl_loop_stop(fx->loop);
}

static void owner_timeout(struct bl_upconn *u)
{
    ((struct fixture *)u->owner)->owner_timeouts++;
}

static struct bl_upconn *get(int server, int pooled)
{
    return bl_upconn_get(&fx->pool, &fx->s[server], NULL, 0, pooled, fx, owner_io,
                         owner_timeout);
}

static uint32_t idle_count(int server)
{
    return fx->pool.idle[server].count;
}

/* Pooled connections are handed out only to owners asking for the same TLS context. */
static void test_tls_key_separates(void **state)
{
    (void)state;
    static const int ctx_a = 1;
    struct bl_upconn *plain = get(0, 1);
    struct bl_upconn *tls = bl_upconn_get(&fx->pool, &fx->s[0], &ctx_a, 0, 1, fx, owner_io,
                                          owner_timeout);
    assert_ptr_equal(tls->tls_key, &ctx_a);
    assert_null(plain->tls_key);
    plain->nrequests = tls->nrequests = 1;
    bl_upconn_release(plain, 1);
    bl_upconn_release(tls, 1); /* most recent: first in the list */
    ASSERT_EQ(idle_count(0), 2);
    assert_ptr_equal(get(0, 1), plain); /* skips the TLS one */
    assert_ptr_equal(bl_upconn_get(&fx->pool, &fx->s[0], &ctx_a, 0, 1, fx, owner_io,
                                   owner_timeout), tls);
    ASSERT_EQ(idle_count(0), 0);
    bl_upconn_close(plain);
    bl_upconn_close(tls);
    ASSERT_EQ(fx->pool.nconns, 0);
}

/* A connection the loop reads (loop_reads, for bl_loop_recv owners) goes only to such owners:
 * an L4 stream splices and recv()s its own and must get a plain-readiness one. */
static void test_loop_reads_separates(void **state)
{
    (void)state;
    struct bl_upconn *ready = get(0, 1);
    struct bl_upconn *looped = bl_upconn_get(&fx->pool, &fx->s[0], NULL, 1, 1, fx, owner_io,
                                             owner_timeout);
    ASSERT_EQ(looped->loop_reads, 1);
    ASSERT_EQ(ready->loop_reads, 0);
    ready->nrequests = looped->nrequests = 1;
    bl_upconn_release(ready, 1);
    bl_upconn_release(looped, 1);
    assert_ptr_equal(get(0, 1), ready); /* skips the looped one */
    assert_ptr_equal(bl_upconn_get(&fx->pool, &fx->s[0], NULL, 1, 1, fx, owner_io,
                                   owner_timeout), looped);
    bl_upconn_close(ready);
    bl_upconn_close(looped);
    ASSERT_EQ(fx->pool.nconns, 0);
}


static void test_connect_and_owner_events(void **state)
{
    (void)state;
    struct bl_upconn *u = get(0, 1);
    assert_non_null(u);
    ASSERT_EQ(u->connecting, 1);
    ASSERT_EQ(fx->pool.nconns, 1);
    assert_ptr_equal(u->owner, fx);
    run_for(1000); /* the connect completes: writable, reported to the owner */
    ASSERT_EQ(fx->owner_events, 1);
    ASSERT_EQ(u->wready, 1);
    bl_timer_set(fx->loop, &u->timer, bl_clock_ms + 5);
    run_for(50);
    ASSERT_EQ(fx->owner_timeouts, 1);
    bl_upconn_close(u);
    ASSERT_EQ(fx->pool.nconns, 0);
}

static void test_reuse_most_recent(void **state)
{
    (void)state;
    struct bl_upconn *a = get(0, 1), *b = get(0, 1);
    assert_ptr_not_equal(a, b);
    a->nrequests = b->nrequests = 1;
    bl_upconn_release(a, 1);
    bl_upconn_release(b, 1);
    ASSERT_EQ(idle_count(0), 2);
    assert_null(a->owner);
    assert_true(bl_timer_armed(&b->timer)); /* keepalive_timeout */
    /* most recently used first, timer disarmed, handlers replaced */
    struct bl_upconn *u = get(0, 1);
    assert_ptr_equal(u, b);
    ASSERT_EQ(idle_count(0), 1);
    assert_false(bl_timer_armed(&u->timer));
    assert_ptr_equal(u->owner, fx);
    /* another server's pool is separate; allow_pooled = 0 connects anew */
    struct bl_upconn *c = get(1, 1);
    assert_ptr_not_equal(c, a);
    struct bl_upconn *d = get(0, 0);
    assert_ptr_not_equal(d, a);
    ASSERT_EQ(idle_count(0), 1);
    ASSERT_EQ(fx->pool.nconns, 4);
    bl_upconn_close(u);
    bl_upconn_close(c);
    bl_upconn_close(d);
    bl_conn_pool_drain(&fx->pool); /* a, idle */
    ASSERT_EQ(fx->pool.nconns, 0);
    ASSERT_EQ(idle_count(0), 0);
}

/* Reload: idle connections to a kept server move to the new config's pool (most recent
 * first, as they were), those to a server that went away close, and the old pool closes what
 * is released into it afterwards. */
static void test_adopt(void **state)
{
    (void)state;
    struct bl_upconn *a = get(0, 1), *b = get(0, 1), *c = get(1, 1), *busy = get(0, 1);
    a->nrequests = b->nrequests = c->nrequests = busy->nrequests = 1;
    bl_upconn_release(a, 1);
    bl_upconn_release(b, 1);
    bl_upconn_release(c, 1);
    ASSERT_EQ(fx->pool.nconns, 4);

    /* The new config: server 0 kept as its server 1 (keepalive 4), server 1 gone. */
    struct bl_conn_pool to;
    assert_int_equal(bl_conn_pool_init(&to, fx->loop, 2), BL_OK);
    struct bl_upstream_group g2 = fx->g;
    struct bl_upstream_server s2 = fx->s[0];
    s2.id = 1;
    s2.group = &g2;
    struct bl_upstream_server *map[2] = {&s2, NULL};
    bl_conn_pool_adopt(&to, &fx->pool, map);
    ASSERT_EQ(fx->pool.nconns, 1);           /* busy, still in use on the old config */
    ASSERT_EQ(to.nconns, 2);
    ASSERT_EQ(to.idle[1].count, 2);
    assert_ptr_equal(to.idle[1].head, b);   /* most recently used first, still */
    assert_ptr_equal(b->pool, &to);
    assert_ptr_equal(b->server, &s2);
    ASSERT_EQ(idle_count(0), 0);
    ASSERT_EQ(idle_count(1), 0);
    /* Released into the old pool after the switch: closed. */
    bl_upconn_release(busy, 1);
    ASSERT_EQ(fx->pool.nconns, 0);
    struct bl_upconn *u = bl_upconn_get(&to, &s2, NULL, 0, 1, fx, owner_io, owner_timeout);
    assert_ptr_equal(u, b);
    bl_upconn_close(u);
    bl_conn_pool_free(&to);
    ASSERT_EQ(to.nconns, 0);
}

static void test_limits(void **state)
{
    (void)state;
    fx->g.keepalive = 1;
    struct bl_upconn *a = get(0, 1), *b = get(0, 1);
    bl_upconn_release(a, 1);
    bl_upconn_release(b, 1); /* no room: closed */
    ASSERT_EQ(idle_count(0), 1);
    ASSERT_EQ(fx->pool.nconns, 1);

    struct bl_upconn *u = get(0, 1);
    bl_upconn_release(u, 0); /* not reusable: closed */
    ASSERT_EQ(fx->pool.nconns, 0);

    u = get(0, 1);
    u->nrequests = 100; /* keepalive_requests served */
    bl_upconn_release(u, 1);
    ASSERT_EQ(fx->pool.nconns, 0);

    u = get(0, 1);
    u->in = bl_buf_get(); /* unread input: the next response would be wrong */
    u->in->end = 1;
    bl_upconn_release(u, 1);
    ASSERT_EQ(fx->pool.nconns, 0);

    fx->g.keepalive = 0; /* no keep-alive */
    u = get(0, 1);
    bl_upconn_release(u, 1);
    ASSERT_EQ(fx->pool.nconns, 0);

    fx->g.keepalive = 4;
    bl_conn_pool_drain(&fx->pool);
    u = get(0, 1);
    bl_upconn_release(u, 1); /* draining: closed */
    ASSERT_EQ(fx->pool.nconns, 0);
    ASSERT_EQ(idle_count(0), 0);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    fx->g.keepalive_timeout_ms = 10;
    struct bl_upconn *u = get(0, 1);
    run_for(1000); /* connected */
    bl_upconn_release(u, 1);
    ASSERT_EQ(idle_count(0), 1);
    run_for(100);
    ASSERT_EQ(idle_count(0), 0);
    ASSERT_EQ(fx->pool.nconns, 0);
    ASSERT_EQ(fx->owner_timeouts, 0);
}

static void test_idle_closed_by_server(void **state)
{
    (void)state;
    struct bl_upconn *u = get(0, 1);
    run_for(1000);
    int sfd = accept(fx->lfd, NULL, NULL);
    assert_true(sfd >= 0);
    bl_upconn_release(u, 1);
    run_for(20);
    ASSERT_EQ(idle_count(0), 1); /* quiet: kept */
    close(sfd);
    run_for(200);
    ASSERT_EQ(idle_count(0), 0);
    ASSERT_EQ(fx->pool.nconns, 0);
    ASSERT_EQ(fx->owner_events, 1); /* only the connect, while it was owned */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_and_owner_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_most_recent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_key_separates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_reads_separates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_closed_by_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
