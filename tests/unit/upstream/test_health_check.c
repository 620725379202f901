/* Active health checks: directive parsing and validation, and the prober against real sockets
 * on 127.0.0.1 served by a tiny server running in the same loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upstream/health_check.c"

#define ASSERT_STR(got, want)                                                              \
    do {                                                                                   \
        if (strcmp((got), (want)) != 0)                                                    \
            print_error("got \"%s\"\nwant \"%s\"\n", (got), (want));                       \
        assert_string_equal((got), (want));                                                \
    } while (0)

static char log_path[] = "/tmp/test_health_check_log_XXXXXX";

/* ------------------------------------------------------------------ parsing */

/* Splits a directive's arguments on spaces (no quoting needed for these tests). */
struct targs {
    char buf[512];
    char *v[16];
    int n;
};

static struct targs *targs(const char *line)
{
    static struct targs a;
    memset(&a, 0, sizeof(a));
    snprintf(a.buf, sizeof(a.buf), "%s", line);
    for (char *save = NULL, *t = strtok_r(a.buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
        a.v[a.n++] = t;
    return &a;
}

static int parse_check(struct bl_check_conf **cc, const char *line, char *err, size_t errlen)
{
    struct targs *a = targs(line);
    return bl_check_parse(cc, a->v, a->n, err, errlen);
}

static void test_parse_check_defaults(void **state)
{
    struct bl_check_conf *cc = NULL;
    char err[256] = "";
    assert_int_equal(bl_check_parse(&cc, NULL, 0, err, sizeof(err)), BL_OK);
    assert_non_null(cc);
    assert_int_equal(cc->interval_ms, 30000);
    assert_int_equal(cc->rise, 2);
    assert_int_equal(cc->fall, 5);
    assert_int_equal(cc->timeout_ms, 1000);
    assert_int_equal(cc->type, BL_CHECK_TCP);
    assert_int_equal(cc->default_down, 0);
    assert_int_equal(cc->port, 0);
    ASSERT_STR(cc->http_send, "GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(cc->http_send_len, strlen("GET / HTTP/1.0\r\n\r\n"));
    assert_int_equal(cc->expect_alive, BL_CHECK_ALIVE_2XX | BL_CHECK_ALIVE_3XX);
    assert_null(cc->expect_body);
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_OK);
    bl_check_conf_free(cc);
}

/* The seed's lines, as written. */
static void test_parse_check_seed(void **state)
{
    struct bl_check_conf *cc = NULL;
    char err[256] = "";
    assert_int_equal(parse_check(&cc, "interval=3000 rise=1 fall=3 timeout=2000 type=tcp", err,
                                 sizeof(err)), BL_OK);
    assert_int_equal(cc->interval_ms, 3000);
    assert_int_equal(cc->rise, 1);
    assert_int_equal(cc->fall, 3);
    assert_int_equal(cc->timeout_ms, 2000);
    assert_int_equal(cc->type, BL_CHECK_TCP);
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_OK);
    bl_check_conf_free(cc);

    cc = NULL;
    assert_int_equal(parse_check(&cc, "interval=3000 rise=2 fall=5 timeout=1000 type=http", err,
                                 sizeof(err)), BL_OK);
    char *send[] = {"HEAD /status HTTP/1.0\r\n\r\n"};
    assert_int_equal(bl_check_parse_http_send(&cc, send, 1, err, sizeof(err)), BL_OK);
    struct targs *a = targs("http_2xx http_3xx");
    assert_int_equal(bl_check_parse_expect_alive(&cc, a->v, a->n, err, sizeof(err)), BL_OK);
    ASSERT_STR(cc->http_send, "HEAD /status HTTP/1.0\r\n\r\n");
    assert_int_equal(cc->expect_alive, BL_CHECK_ALIVE_2XX | BL_CHECK_ALIVE_3XX);
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_OK);
    bl_check_conf_free(cc);
}

static void test_parse_check_units_and_options(void **state)
{
    static const struct {
        const char *line;
        uint32_t interval, timeout;
        uint16_t port;
        uint8_t type, default_down;
    } ok[] = {
        {"interval=3s timeout=500ms", 3000, 500, 0, BL_CHECK_TCP, 0},
        {"interval=1m30s timeout=1s", 90000, 1000, 0, BL_CHECK_TCP, 0},
        {"interval=2h timeout=1d", 7200000, 86400000, 0, BL_CHECK_TCP, 0},
        {"interval=5 timeout=7", 5, 7, 0, BL_CHECK_TCP, 0},
        {"type=http port=8080 default_down=true", 30000, 1000, 8080, BL_CHECK_HTTP, 1},
        {"default_down=false port=0 type=tcp", 30000, 1000, 0, BL_CHECK_TCP, 0},
        {"timeout=5000 interval=1000", 1000, 5000, 0, BL_CHECK_TCP, 0}, /* timeout > interval */
        {"port=65535", 30000, 1000, 65535, BL_CHECK_TCP, 0},
    };
    for (size_t i = 0; i < BL_ARRAY_LEN(ok); i++) {
        struct bl_check_conf *cc = NULL;
        char err[256] = "";
        int rc = parse_check(&cc, ok[i].line, err, sizeof(err));
        if (rc != BL_OK)
            print_error("check %s: %s\n", ok[i].line, err);
        assert_int_equal(rc, BL_OK);
        assert_int_equal(cc->interval_ms, ok[i].interval);
        assert_int_equal(cc->timeout_ms, ok[i].timeout);
        assert_int_equal(cc->port, ok[i].port);
        assert_int_equal(cc->type, ok[i].type);
        assert_int_equal(cc->default_down, ok[i].default_down);
        assert_int_equal(cc->ssl, 0);
        assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_OK);
        bl_check_conf_free(cc);
    }
}

/* ssl: a bare word, with either type. */
static void test_parse_check_ssl(void **state)
{
    (void)state;
    static const char *const lines[] = {"type=http ssl", "ssl type=tcp interval=1s"};
    for (size_t i = 0; i < BL_ARRAY_LEN(lines); i++) {
        struct bl_check_conf *cc = NULL;
        char err[256] = "";
        assert_int_equal(parse_check(&cc, lines[i], err, sizeof(err)), BL_OK);
        assert_int_equal(cc->ssl, 1);
        assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_OK);
        bl_check_conf_free(cc);
    }
}

static void test_parse_check_errors(void **state)
{
    static const struct {
        const char *line, *err;
    } bad[] = {
        {"intervl=3000", "invalid parameter \"intervl=3000\""},
        {"interval", "invalid parameter \"interval\""},
        {"rise=1 fast", "invalid parameter \"fast\""},
        {"=5", "invalid parameter \"=5\""},
        {"rise=abc", "invalid value \"abc\" for \"rise\""},
        {"rise=0", "invalid value \"0\" for \"rise\""},
        {"rise=", "invalid value \"\" for \"rise\""},
        {"rise=99999999999", "invalid value \"99999999999\" for \"rise\""},
        {"fall=-1", "invalid value \"-1\" for \"fall\""},
        {"fall=2x", "invalid value \"2x\" for \"fall\""},
        {"interval=0", "invalid value \"0\" for \"interval\""},
        {"interval=0s", "invalid value \"0s\" for \"interval\""},
        {"interval=10x", "invalid value \"10x\" for \"interval\""},
        {"interval=1q500", "invalid value \"1q500\" for \"interval\""},
        {"interval=s", "invalid value \"s\" for \"interval\""},
        {"interval=99999999999", "invalid value \"99999999999\" for \"interval\""},
        {"interval=30d", "invalid value \"30d\" for \"interval\""},
        {"timeout=0", "invalid value \"0\" for \"timeout\""},
        {"timeout=-5", "invalid value \"-5\" for \"timeout\""},
        {"type=udp", "invalid value \"udp\" for \"type\""},
        {"type=ssl_hello", "invalid value \"ssl_hello\" for \"type\""},
        {"type=HTTP", "invalid value \"HTTP\" for \"type\""},
        {"default_down=yes", "invalid value \"yes\" for \"default_down\""},
        {"port=65536", "invalid value \"65536\" for \"port\""},
        {"port=http", "invalid value \"http\" for \"port\""},
    };
    for (size_t i = 0; i < BL_ARRAY_LEN(bad); i++) {
        struct bl_check_conf *cc = NULL;
        char err[256] = "";
        assert_int_equal(parse_check(&cc, bad[i].line, err, sizeof(err)), BL_ERR);
        ASSERT_STR(err, bad[i].err);
        assert_null(cc);                  /* a refused line allocates nothing */
    }

    struct bl_check_conf *cc = NULL;
    char err[256] = "";
    assert_int_equal(parse_check(&cc, "interval=1000", err, sizeof(err)), BL_OK);
    assert_int_equal(parse_check(&cc, "interval=2000", err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "\"check\" directive is duplicate");
    assert_int_equal(cc->interval_ms, 1000);
    bl_check_conf_free(cc);
}

static void test_parse_http_send(void **state)
{
    struct bl_check_conf *cc = NULL;
    char err[256] = "";
    /* check_http_send before check: the group's conf is made by whichever comes first. */
    char *req[] = {"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"};
    assert_int_equal(bl_check_parse_http_send(&cc, req, 1, err, sizeof(err)), BL_OK);
    assert_int_equal(parse_check(&cc, "type=http interval=1s", err, sizeof(err)), BL_OK);
    ASSERT_STR(cc->http_send, req[0]);
    assert_int_equal(cc->http_send_len, strlen(req[0]));
    assert_int_equal(cc->interval_ms, 1000);
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_OK);

    assert_int_equal(bl_check_parse_http_send(&cc, req, 1, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "\"check_http_send\" directive is duplicate");
    bl_check_conf_free(cc);

    cc = NULL;
    char *two[] = {"GET / HTTP/1.0\r\n\r\n", "x"};
    assert_int_equal(bl_check_parse_http_send(&cc, two, 2, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid number of arguments in \"check_http_send\" directive");
    assert_int_equal(bl_check_parse_http_send(&cc, two, 0, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid number of arguments in \"check_http_send\" directive");
    char *empty[] = {""};
    assert_int_equal(bl_check_parse_http_send(&cc, empty, 1, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid value \"\" in \"check_http_send\" directive");
    assert_null(cc);
}

static void test_parse_expect_alive(void **state)
{
    static const struct {
        const char *line;
        uint32_t bits;
    } ok[] = {
        {"http_2xx http_3xx", BL_CHECK_ALIVE_2XX | BL_CHECK_ALIVE_3XX},
        {"http_2xx", BL_CHECK_ALIVE_2XX},
        {"http_1xx http_4xx http_5xx", BL_CHECK_ALIVE_1XX | BL_CHECK_ALIVE_4XX |
                                       BL_CHECK_ALIVE_5XX},
        {"http_2xx http_2xx", BL_CHECK_ALIVE_2XX},
    };
    char err[256] = "";
    for (size_t i = 0; i < BL_ARRAY_LEN(ok); i++) {
        struct bl_check_conf *cc = NULL;
        struct targs *a = targs(ok[i].line);
        assert_int_equal(bl_check_parse_expect_alive(&cc, a->v, a->n, err, sizeof(err)), BL_OK);
        assert_int_equal(cc->expect_alive, ok[i].bits);
        bl_check_conf_free(cc);
    }
    static const char *const bad[] = {"http_6xx", "http_0xx", "http_2XX", "2xx", "http_2xxx",
                                      "http_2x", "HTTP_2xx", "http_200"};
    for (size_t i = 0; i < BL_ARRAY_LEN(bad); i++) {
        struct bl_check_conf *cc = NULL;
        char line[64], want[128];
        snprintf(line, sizeof(line), "http_2xx %s", bad[i]);
        struct targs *a = targs(line);
        assert_int_equal(bl_check_parse_expect_alive(&cc, a->v, a->n, err, sizeof(err)),
                         BL_ERR);
        snprintf(want, sizeof(want),
                 "invalid value \"%s\" in \"check_http_expect_alive\" directive", bad[i]);
        ASSERT_STR(err, want);
        assert_null(cc);
    }
    struct bl_check_conf *cc = NULL;
    assert_int_equal(bl_check_parse_expect_alive(&cc, NULL, 0, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid number of arguments in \"check_http_expect_alive\" directive");
    struct targs *a = targs("http_2xx");
    assert_int_equal(bl_check_parse_expect_alive(&cc, a->v, a->n, err, sizeof(err)), BL_OK);
    assert_int_equal(bl_check_parse_expect_alive(&cc, a->v, a->n, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "\"check_http_expect_alive\" directive is duplicate");
    bl_check_conf_free(cc);
}

static void test_parse_expect_body(void **state)
{
    struct bl_check_conf *cc = NULL;
    char err[256] = "";
    char *body[] = {"\"status\": \"ok\""};
    assert_int_equal(bl_check_parse_expect_body(&cc, body, 1, err, sizeof(err)), BL_OK);
    ASSERT_STR(cc->expect_body, body[0]);
    assert_int_equal(cc->expect_body_len, strlen(body[0]));
    assert_int_equal(bl_check_parse_expect_body(&cc, body, 1, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "\"check_http_expect_body\" directive is duplicate");
    bl_check_conf_free(cc);

    cc = NULL;
    char *empty[] = {""};
    assert_int_equal(bl_check_parse_expect_body(&cc, empty, 1, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid value \"\" in \"check_http_expect_body\" directive");
    char *two[] = {"a", "b"};
    assert_int_equal(bl_check_parse_expect_body(&cc, two, 2, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid number of arguments in \"check_http_expect_body\" directive");
    assert_null(cc);
}

static void test_validate(void **state)
{
    char err[256] = "";
    assert_int_equal(bl_check_validate(NULL, err, sizeof(err)), BL_OK);

    static const struct {
        const char *check;          /* NULL: no check line */
        const char *directive;      /* which check_http_* to add */
        const char *arg;
        const char *err;            /* NULL: valid */
    } cases[] = {
        {"type=tcp", "check_http_send", "GET / HTTP/1.0\r\n\r\n",
         "\"check_http_send\" requires \"type=http\""},
        {"interval=1000", "check_http_expect_alive", "http_2xx",
         "\"check_http_expect_alive\" requires \"type=http\""},
        {"type=tcp", "check_http_expect_body", "ok",
         "\"check_http_expect_body\" requires \"type=http\""},
        {NULL, "check_http_send", "GET / HTTP/1.0\r\n\r\n",
         "\"check_http_send\" requires \"check\""},
        {NULL, "check_http_expect_body", "ok", "\"check_http_expect_body\" requires \"check\""},
        {"type=http", "check_http_send", "GET / HTTP/1.0",
         "\"check_http_send\" request does not end its head with an empty line "
         "(\"\\r\\n\\r\\n\")"},
        {"type=http", "check_http_send", "GET / HTTP/1.0\n\n",
         "\"check_http_send\" request does not end its head with an empty line "
         "(\"\\r\\n\\r\\n\")"},
        {"type=http", "check_http_send", "POST /h HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
         NULL},
        {"type=http timeout=5s interval=1s", "check_http_expect_body", "ok", NULL},
        {"type=http", "check_http_expect_alive", "http_5xx", NULL},
    };
    for (size_t i = 0; i < BL_ARRAY_LEN(cases); i++) {
        struct bl_check_conf *cc = NULL;
        if (cases[i].check)
            assert_int_equal(parse_check(&cc, cases[i].check, err, sizeof(err)), BL_OK);
        char *arg[] = {(char *)cases[i].arg};
        int rc;
        if (strcmp(cases[i].directive, "check_http_send") == 0)
            rc = bl_check_parse_http_send(&cc, arg, 1, err, sizeof(err));
        else if (strcmp(cases[i].directive, "check_http_expect_body") == 0)
            rc = bl_check_parse_expect_body(&cc, arg, 1, err, sizeof(err));
        else
            rc = bl_check_parse_expect_alive(&cc, arg, 1, err, sizeof(err));
        assert_int_equal(rc, BL_OK);
        err[0] = '\0';
        rc = bl_check_validate(cc, err, sizeof(err));
        if (cases[i].err) {
            assert_int_equal(rc, BL_ERR);
            ASSERT_STR(err, cases[i].err);
        } else {
            if (rc != BL_OK)
                print_error("case %zu: %s\n", i, err);
            assert_int_equal(rc, BL_OK);
        }
        bl_check_conf_free(cc);
    }

    /* A conf built by hand (not through the parsers) is checked as well. */
    struct bl_check_conf *cc = NULL;
    assert_int_equal(parse_check(&cc, "type=tcp", err, sizeof(err)), BL_OK);
    cc->timeout_ms = 0;
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid value \"0\" for \"timeout\"");
    cc->timeout_ms = 10;
    cc->interval_ms = 0;
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid value \"0\" for \"interval\"");
    cc->interval_ms = 10;
    cc->fall = 0;
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_ERR);
    ASSERT_STR(err, "invalid value \"0\" for \"fall\"");
    bl_check_conf_free(cc);
    bl_check_conf_free(NULL);
}

/* ------------------------------------------------------------------ a tiny backend */

struct tconn {
    struct bl_io io;
    struct tsrv *srv;
    char req[2048];
    size_t rlen;
    int answered;
    struct tconn *next;
};

/* Listens on 127.0.0.1:port (bound at once; listening only after tsrv_listen, so until then
 * connects are refused). Answers each request, once its head is in, with resp, then half-closes
 * and waits for the checker to close (so no unread bytes turn the close into a reset). */
struct tsrv {
    struct bl_io lio;
    struct bl_loop *loop;
    uint16_t port;
    const char *resp;              /* NULL: accept and never answer */
    int accept;                    /* 0: listen but never accept (the kernel still completes
                                    * the handshake: connects succeed, answers never come) */
    int accepted;
    char last_req[2048];
    struct tconn *conns;
};

static void tconn_io(struct bl_io *io, uint32_t events)
{
    struct tconn *c = (struct tconn *)(void *)io;
    if (io->fd < 0)
        return;
    for (;;) {
        char tmp[4096];
        ssize_t n = recv(io->fd, tmp, sizeof(tmp), 0);
        if (n > 0) {
            size_t take = (size_t)n < sizeof(c->req) - 1 - c->rlen ? (size_t)n
                                                                   : sizeof(c->req) - 1 - c->rlen;
            memcpy(c->req + c->rlen, tmp, take);
            c->rlen += take;
            c->req[c->rlen] = '\0';
            if (!c->answered && c->srv->resp && strstr(c->req, "\r\n\r\n")) {
                c->answered = 1;
                snprintf(c->srv->last_req, sizeof(c->srv->last_req), "%s", c->req);
                ssize_t w = send(io->fd, c->srv->resp, strlen(c->srv->resp), MSG_NOSIGNAL);
                (void)w;
                shutdown(io->fd, SHUT_WR);
            }
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            close(io->fd);
            io->fd = -1;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return;
    }
}

static void tsrv_accept(struct bl_io *io, uint32_t events)
{
    struct tsrv *s = (struct tsrv *)(void *)io;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        s->accepted++;
        struct tconn *c = calloc(1, sizeof(*c));
        assert_non_null(c);
        c->io.fd = fd;
        c->io.handler = tconn_io;
        c->srv = s;
        c->next = s->conns;
        s->conns = c;
        assert_int_equal(bl_loop_add(s->loop, &c->io), BL_OK);
    }
}

static struct tsrv *tsrv_new(struct bl_loop *loop, const char *resp)
{
    struct tsrv *s = calloc(1, sizeof(*s));
    s->loop = loop;
    s->resp = resp;
    s->accept = 1;
    s->lio.handler = tsrv_accept;
    s->lio.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s->lio.fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lio.fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(s->lio.fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    return s;
}

static void tsrv_listen(struct tsrv *s)
{
    assert_int_equal(listen(s->lio.fd, 128), 0);
    if (s->accept)
        assert_int_equal(bl_loop_add_level(s->loop, &s->lio), BL_OK);
}

static void tsrv_free(struct tsrv *s)
{
    while (s->conns) {
        struct tconn *c = s->conns;
        s->conns = c->next;
        if (c->io.fd >= 0)
            close(c->io.fd);
        free(c);
    }
    close(s->lio.fd);
    free(s);
}

/* ------------------------------------------------------------------ groups and the loop */

struct tgroup {
    struct bl_upstream_group g;
    struct bl_upstream_server s[128];
    struct bl_server_state st[128];
    char names[128][32];
    struct bl_group_state gs;
};

/* n servers on 127.0.0.1 at ports[i] (all the same when ports has one element: nports 1). */
static struct tgroup *tgroup_new(const char *name, uint32_t n, const uint16_t *ports,
                                 struct bl_check_conf *cc)
{
    struct tgroup *t = calloc(1, sizeof(*t));
    t->g.name = (char *)name;
    t->g.servers = t->s;
    t->g.nservers = n;
    t->g.nprimary = n;
    t->g.check = cc;
    t->g.gstate = &t->gs;
    for (uint32_t i = 0; i < n; i++) {
        struct sockaddr_in *a = (struct sockaddr_in *)&t->s[i].addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(ports[i]);
        t->s[i].addrlen = sizeof(*a);
        snprintf(t->names[i], sizeof(t->names[i]), "127.0.0.1:%u", ports[i]);
        t->s[i].name = t->names[i];
        t->s[i].weight = 1;
        t->s[i].index = i;
        t->s[i].state = &t->st[i];
        t->s[i].group = &t->g;
    }
    return t;
}

static struct bl_check_conf *conf_from(const char *check, const char *send, const char *body)
{
    struct bl_check_conf *cc = NULL;
    char err[256] = "";
    assert_int_equal(parse_check(&cc, check, err, sizeof(err)), BL_OK);
    if (send) {
        char *a[] = {(char *)send};
        assert_int_equal(bl_check_parse_http_send(&cc, a, 1, err, sizeof(err)), BL_OK);
    }
    if (body) {
        char *a[] = {(char *)body};
        assert_int_equal(bl_check_parse_expect_body(&cc, a, 1, err, sizeof(err)), BL_OK);
    }
    if (bl_check_validate(cc, err, sizeof(err)) != BL_OK)
        print_error("%s\n", err);
    assert_int_equal(bl_check_validate(cc, err, sizeof(err)), BL_OK);
    return cc;
}

/* Runs the loop until pred(arg) or ms elapse. Returns whether pred came true. */
struct runner {
    struct bl_timer t;
    struct bl_loop *loop;
    uint64_t deadline;
    int (*pred)(const struct probe *p);
    const struct probe *arg;
    int met;
};

static void runner_tick(struct bl_timer *t)
{
    struct runner *r = (struct runner *)(void *)t;
    if (r->pred(r->arg)) {
        r->met = 1;
        bl_loop_stop(r->loop);
    } else if (bl_now_ms() >= r->deadline) {
        bl_loop_stop(r->loop);
    } else {
        bl_timer_set(r->loop, t, bl_now_ms() + 1);
    }
}

static int run_until(struct bl_loop *loop, uint64_t ms, int (*pred)(const struct probe *),
                     const struct probe *arg)
{
    struct runner r = {.t.handler = runner_tick, .loop = loop, .pred = pred, .arg = arg};
    r.deadline = bl_clock_update() + ms;
    bl_timer_set(loop, &r.t, bl_now_ms() + 1);
    bl_loop_run(loop);
    bl_timer_cancel(loop, &r.t);
    return r.met;
}

static int is_down(const struct probe *p) { return !bl_server_check_ok(p->srv); }
static int is_up(const struct probe *p) { return bl_server_check_ok(p->srv); }
static uint32_t want_n;
static int n_failures(const struct probe *p) { return p->failures >= want_n; }
static int n_successes(const struct probe *p) { return p->successes >= want_n; }
static int n_done(const struct probe *p) { return p->started >= want_n && p->phase == PH_IDLE; }

struct env {
    struct bl_loop *loop;
    struct bl_health *h;
    struct tgroup *t;
    struct tsrv *srv;
};

static struct probe *env_start(struct env *e, struct bl_check_conf *cc, uint32_t n,
                               const uint16_t *ports)
{
    char err[256] = "";
    if (!e->loop)
        e->loop = bl_loop_create(err, sizeof(err));
    assert_non_null(e->loop);
    e->t = tgroup_new("app", n, ports, cc);
    struct bl_upstream_group *g = &e->t->g;
    e->h = bl_health_start(e->loop, &g, 1, err, sizeof(err));
    assert_non_null(e->h);
    return e->h->nprobes ? &e->h->probes[0] : NULL;
}

static void env_free(struct env *e)
{
    bl_health_stop(e->h);
    if (e->srv)
        tsrv_free(e->srv);
    bl_loop_destroy(e->loop);
    bl_check_conf_free(e->t->g.check);
    free(e->t);
}

static int log_count(const char *needle)
{
    FILE *f = fopen(log_path, "r");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static int log_has(const char *needle)
{
    FILE *f = fopen(log_path, "r");
    if (!f)
        return 0;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    if (!found)
        print_error("log has no line with: %s\n", needle);
    return found;
}

/* ------------------------------------------------------------------ runtime tests */

static void test_tcp_up(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, NULL);
    tsrv_listen(e.srv);
    struct probe *p = env_start(&e, conf_from("interval=20 timeout=500 rise=1 fall=1", NULL,
                                              NULL), 1, &e.srv->port);
    want_n = 3;
    assert_true(run_until(e.loop, 2000, n_done, p));
    assert_int_equal(p->failures, 0);
    assert_true(p->successes >= 3);
    ASSERT_STR(p->last, "connected");
    assert_true(bl_server_check_ok(p->srv));
    assert_true(e.srv->accepted >= 3);     /* a fresh connection per probe */
    env_free(&e);
}

static void test_tcp_refused_down_after_fall(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, NULL);      /* bound, not listening: refused */
    struct probe *p = env_start(&e, conf_from("interval=20 timeout=500 rise=1 fall=3", NULL,
                                              NULL), 1, &e.srv->port);
    assert_true(bl_server_check_ok(p->srv));   /* default_down=false */
    want_n = 2;
    assert_true(run_until(e.loop, 2000, n_failures, p));
    assert_true(bl_server_check_ok(p->srv));   /* two failures are not yet fall=3 */
    assert_true(run_until(e.loop, 2000, is_down, p));
    assert_int_equal(p->failures, 3);
    ASSERT_STR(p->last, "connect refused");
    char want[128];
    snprintf(want, sizeof(want),
             "upstream \"app\" server 127.0.0.1:%u is down: connect refused (3 checks failed)",
             e.srv->port);
    assert_true(log_has(want));
    env_free(&e);
}

static void test_http_200_up(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    /* A HEAD answer: Content-Length but no body. */
    e.srv = tsrv_new(e.loop, "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n");
    tsrv_listen(e.srv);
    struct probe *p = env_start(&e, conf_from("interval=20 timeout=500 rise=2 fall=1 type=http "
                                              "default_down=true",
                                              "HEAD /status HTTP/1.0\r\n\r\n", NULL),
                                1, &e.srv->port);
    assert_true(is_down(p));              /* default_down=true: proven first */
    uint64_t t0 = bl_clock_update();
    want_n = 1;
    assert_true(run_until(e.loop, 2000, n_successes, p));
    assert_true(is_down(p));              /* one success is not yet rise=2 */
    assert_true(run_until(e.loop, 2000, is_up, p));
    assert_int_equal(p->successes, 2);
    ASSERT_STR(p->last, "status 200");
    ASSERT_STR(e.srv->last_req, "HEAD /status HTTP/1.0\r\n\r\n");
    assert_true(atomic_load(&p->srv->state->up_since_ms) >= t0);
    char want[128];
    snprintf(want, sizeof(want),
             "upstream \"app\" server 127.0.0.1:%u is up: status 200 (2 checks passed)",
             e.srv->port);
    assert_true(log_has(want));
    env_free(&e);
}

static void test_http_503_down(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
    tsrv_listen(e.srv);
    struct probe *p = env_start(&e, conf_from("interval=20 timeout=500 fall=2 type=http", NULL,
                                              NULL), 1, &e.srv->port);
    assert_true(run_until(e.loop, 2000, is_down, p));
    assert_int_equal(p->failures, 2);
    ASSERT_STR(p->last, "status 503");
    ASSERT_STR(e.srv->last_req, "GET / HTTP/1.0\r\n\r\n");
    char want[128];
    snprintf(want, sizeof(want),
             "upstream \"app\" server 127.0.0.1:%u is down: status 503 (2 checks failed)",
             e.srv->port);
    assert_true(log_has(want));
    env_free(&e);
}

/* One server, one answer, one expect_body: the outcome of the first probe. */
static void expect_outcome(const char *resp, const char *check, const char *body, int ok,
                           const char *last)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, resp);
    tsrv_listen(e.srv);
    struct probe *p = env_start(&e, conf_from(check, NULL, body), 1, &e.srv->port);
    want_n = 1;
    assert_true(run_until(e.loop, 2000, n_done, p));
    if (strcmp(p->last, last) != 0)
        print_error("response %s\n", resp);
    ASSERT_STR(p->last, last);
    assert_int_equal(p->successes, ok ? 1 : 0);
    assert_int_equal(p->failures, ok ? 0 : 1);
    env_free(&e);
}

static void test_http_body(void **state)
{
    const char *chk = "interval=30 timeout=500 rise=1 fall=1 type=http";
    /* Content-Length body. */
    expect_outcome("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", chk, "world",
                   1, "status 200");
    expect_outcome("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", chk, "healthy",
                   0, "body mismatch");
    /* Bytes after Content-Length are not body. */
    expect_outcome("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world", chk, "world", 0,
                   "body mismatch");
    /* Until close. */
    expect_outcome("HTTP/1.0 200 OK\r\n\r\nall is healthy here", chk, "healthy", 1,
                   "status 200");
    expect_outcome("HTTP/1.0 200 OK\r\n\r\nall is well", chk, "healthy", 0, "body mismatch");
    /* Chunked, the needle split across chunks: framing removed before matching. */
    expect_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "4\r\nheal\r\n3;x=y\r\nthy\r\n0\r\n\r\n", chk, "healthy", 1, "status 200");
    expect_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "4\r\nheal\r\n3\r\nthx\r\n0\r\n\r\n", chk, "healthy", 0, "body mismatch");
    /* The framing itself never matches. */
    expect_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "2\r\nab\r\n0\r\n\r\n", chk, "2\r\nab", 0, "body mismatch");
    expect_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", chk, "x", 0,
                   "invalid response (bad chunk size)");
    /* A body that stops short of Content-Length. */
    expect_outcome("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", chk, "healthy", 0,
                   "invalid response (closed inside the body)");
    /* A bad status is decided before the body. */
    expect_outcome("HTTP/1.1 500 Oops\r\nContent-Length: 7\r\n\r\nhealthy", chk, "healthy", 0,
                   "status 500");
    expect_outcome("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", chk, NULL, 0,
                   "status 404");
    expect_outcome("HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n", chk, NULL, 1,
                   "status 302");
}

static void test_http_invalid(void **state)
{
    const char *chk = "interval=30 timeout=500 rise=1 fall=1 type=http";
    expect_outcome("HELLO\r\n\r\n", chk, NULL, 0, "invalid response (bad HTTP version)");
    expect_outcome("HTTP/1.1 200 OK\r\nContent-Length: 0\n\n", chk, NULL, 0,
                   "invalid response (bare LF)");
    expect_outcome("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                   chk, NULL, 0, "invalid response (both Content-Length and Transfer-Encoding)");
    expect_outcome("HTTP/1.1 200 OK\r\nContent-Le", chk, NULL, 0,
                   "invalid response (closed inside the head)");
    expect_outcome("", chk, NULL, 0, "invalid response (closed without a response)");
}

/* A head that never ends within the cap. */
static void test_http_head_too_large(void **state)
{
    static char resp[BL_CHECK_MAX_RESPONSE + 4096];
    int n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n");
    while ((size_t)n < sizeof(resp) - 64)
        n += snprintf(resp + n, sizeof(resp) - (size_t)n, "X-Filler: %0100d\r\n", 0);
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, resp);
    tsrv_listen(e.srv);
    struct probe *p = env_start(&e, conf_from("interval=30 timeout=500 fall=1 type=http", NULL,
                                              NULL), 1, &e.srv->port);
    want_n = 1;
    assert_true(run_until(e.loop, 2000, n_done, p));
    assert_int_equal(p->failures, 1);
    assert_true(strncmp(p->last, "invalid response", 16) == 0);
    env_free(&e);
}

static void test_http_timeout(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, NULL);
    e.srv->accept = 0;                    /* the kernel accepts; nobody answers */
    tsrv_listen(e.srv);
    struct probe *p = env_start(&e, conf_from("interval=50 timeout=30 fall=1 type=http", NULL,
                                              NULL), 1, &e.srv->port);
    uint64_t t0 = bl_clock_update();
    assert_true(run_until(e.loop, 2000, is_down, p));
    ASSERT_STR(p->last, "read timeout");
    /* timeout counts from the probe's start, which was within the first interval */
    assert_true(bl_now_ms() >= t0 + 30);
    env_free(&e);
}

static void test_rise_after_recovery(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, "HTTP/1.0 204 No Content\r\n\r\n");
    struct probe *p = env_start(&e, conf_from("interval=20 timeout=500 rise=3 fall=1 type=http",
                                              NULL, NULL), 1, &e.srv->port);
    assert_true(run_until(e.loop, 2000, is_down, p));
    ASSERT_STR(p->last, "connect refused");
    tsrv_listen(e.srv);                  /* the server comes back */
    uint64_t back = bl_clock_update();
    want_n = 2;
    assert_true(run_until(e.loop, 2000, n_successes, p));
    assert_true(is_down(p));
    assert_true(run_until(e.loop, 2000, is_up, p));
    assert_int_equal(p->successes, 3);
    ASSERT_STR(p->last, "status 204");
    uint64_t since = atomic_load(&p->srv->state->up_since_ms);
    assert_true(since >= back && since <= bl_now_ms());
    char want[128];
    snprintf(want, sizeof(want),
             "upstream \"app\" server 127.0.0.1:%u is up: status 204 (3 checks passed)",
             e.srv->port);
    assert_true(log_has(want));
    env_free(&e);
}

static void test_default_down(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, NULL);      /* refused */
    uint16_t ports[3] = {e.srv->port, e.srv->port, e.srv->port};
    struct probe *p = env_start(&e, conf_from("interval=20 timeout=500 rise=1 fall=1 "
                                              "default_down=true", NULL, NULL), 3, ports);
    for (uint32_t i = 0; i < 3; i++)
        assert_true(is_down(&e.h->probes[i]));
    want_n = 3;
    assert_true(run_until(e.loop, 2000, n_failures, p));
    assert_true(is_down(p));
    char line[128];
    snprintf(line, sizeof(line), "server 127.0.0.1:%u is", e.srv->port);
    assert_int_equal(log_count(line), 0);  /* it started down and stays down: no transition */
    env_free(&e);

    /* default_down=false (ballast's default): up from the start. */
    struct env f = {0};
    f.loop = bl_loop_create(err, sizeof(err));
    f.srv = tsrv_new(f.loop, NULL);
    p = env_start(&f, conf_from("interval=20", NULL, NULL), 1, &f.srv->port);
    assert_true(is_up(p));
    env_free(&f);
}

/* port= probes another port than the server's. */
static void test_port_override(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, NULL);
    tsrv_listen(e.srv);
    struct tsrv *closed = tsrv_new(e.loop, NULL);   /* the server's own port refuses */
    char check[128];
    snprintf(check, sizeof(check), "interval=20 timeout=500 rise=1 fall=1 port=%u",
             e.srv->port);
    struct probe *p = env_start(&e, conf_from(check, NULL, NULL), 1, &closed->port);
    want_n = 2;
    assert_true(run_until(e.loop, 2000, n_done, p));
    ASSERT_STR(p->last, "connected");
    assert_int_equal(p->failures, 0);
    tsrv_free(closed);
    env_free(&e);
}

/* down servers are skipped, backups are checked, groups without check cost nothing. */
static void test_which_servers(void **state)
{
    char err[256];
    struct bl_loop *loop = bl_loop_create(err, sizeof(err));
    uint16_t ports[4] = {1, 2, 3, 4};
    struct tgroup *a = tgroup_new("a", 4, ports, conf_from("interval=1000", NULL, NULL));
    a->s[1].down = 1;
    a->s[3].backup = 1;
    a->g.nprimary = 3;
    struct tgroup *b = tgroup_new("b", 2, ports, NULL);
    atomic_store(&b->st[0].check_down, 1);     /* stale verdict of an earlier generation */
    struct bl_upstream_group *groups[] = {&a->g, &b->g};
    struct bl_health *h = bl_health_start(loop, groups, 2, err, sizeof(err));
    assert_non_null(h);
    assert_int_equal(h->nprobes, 3);
    assert_ptr_equal(h->probes[0].srv, &a->s[0]);
    assert_ptr_equal(h->probes[1].srv, &a->s[2]);
    assert_ptr_equal(h->probes[2].srv, &a->s[3]);
    assert_true(bl_server_check_ok(&b->s[0]));
    bl_health_stop(h);

    /* Nothing to check: still a checker, with no probes. */
    struct bl_upstream_group *none[] = {&b->g};
    h = bl_health_start(loop, none, 1, err, sizeof(err));
    assert_non_null(h);
    assert_int_equal(h->nprobes, 0);
    bl_health_stop(h);
    bl_health_stop(NULL);

    bl_loop_destroy(loop);
    bl_check_conf_free(a->g.check);
    free(a);
    free(b);
}

/* First probes of 100 servers spread over the first interval, read off the scheduled timers. */
static void test_jitter_spread(void **state)
{
    char err[256];
    struct bl_loop *loop = bl_loop_create(err, sizeof(err));
    uint16_t ports[100];
    for (int i = 0; i < 100; i++)
        ports[i] = (uint16_t)(10000 + i);
    struct tgroup *t = tgroup_new("many", 100, ports, conf_from("interval=1000", NULL, NULL));
    struct bl_upstream_group *g = &t->g;
    struct bl_health *h = bl_health_start(loop, &g, 1, err, sizeof(err));
    uint64_t now = bl_now_ms();
    assert_int_equal(h->nprobes, 100);
    uint64_t lo = UINT64_MAX, hi = 0;
    unsigned buckets[10] = {0}, distinct = 0;
    uint8_t seen[1000] = {0};
    for (int i = 0; i < 100; i++) {
        const struct bl_timer *tm = &h->probes[i].timer;
        assert_true(bl_timer_armed(tm));
        assert_int_equal(h->probes[i].started, 0);
        uint64_t off = tm->when - now;
        if (tm->when < now || off >= 1000)
            print_error("probe %d at +%lld ms\n", i, (long long)(tm->when - now));
        assert_true(tm->when >= now && off < 1000);
        lo = off < lo ? off : lo;
        hi = off > hi ? off : hi;
        buckets[off / 100]++;
        distinct += !seen[off];
        seen[off] = 1;
    }
    /* Uniform: ~95 distinct ms, ~10 per 100 ms; bounds are many sigmas wide. */
    if (distinct < 80 || hi - lo < 700)
        print_error("distinct %u, span %llu ms\n", distinct, (unsigned long long)(hi - lo));
    assert_true(distinct >= 80);
    assert_true(hi - lo >= 700);
    for (int b = 0; b < 10; b++) {
        if (buckets[b] > 30)
            print_error("bucket %d holds %u of 100\n", b, buckets[b]);
        assert_true(buckets[b] <= 30);
    }
    bl_health_stop(h);
    bl_loop_destroy(loop);
    bl_check_conf_free(t->g.check);
    free(t);
}

/* Later probes start one interval after the previous start, not after its end. */
static void test_interval_cadence(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, NULL);
    e.srv->accept = 0;
    tsrv_listen(e.srv);
    /* http with no answer: each probe lasts its 20 ms timeout. */
    struct probe *p = env_start(&e, conf_from("interval=60 timeout=20 fall=100 type=http", NULL,
                                              NULL), 1, &e.srv->port);
    uint64_t first = p->timer.when;
    want_n = 1;
    assert_true(run_until(e.loop, 2000, n_done, p));
    ASSERT_STR(p->last, "read timeout");
    assert_int_equal(p->timer.when, first + 60);
    want_n = 2;
    assert_true(run_until(e.loop, 2000, n_done, p));
    assert_int_equal(p->timer.when, first + 120);
    env_free(&e);
}

/* A reload that keeps a server's state keeps its verdict; one that drops the check clears it. */
static void test_reload_carries_verdict(void **state)
{
    struct env e = {0};
    char err[256];
    e.loop = bl_loop_create(err, sizeof(err));
    e.srv = tsrv_new(e.loop, NULL);      /* refused */
    struct probe *p = env_start(&e, conf_from("interval=20 timeout=500 fall=2", NULL, NULL), 1,
                                &e.srv->port);
    assert_true(run_until(e.loop, 2000, is_down, p));

    /* New generation, same server state, default_down=false: still down until it rises. */
    struct bl_check_conf *cc2 = conf_from("interval=20 timeout=500 fall=2 rise=2", NULL, NULL);
    struct bl_check_conf *cc1 = e.t->g.check;
    e.t->g.check = cc2;
    struct bl_upstream_group *g = &e.t->g;
    struct bl_health *h2 = bl_health_start(e.loop, &g, 1, err, sizeof(err));
    assert_non_null(h2);
    bl_health_stop(e.h);
    e.h = h2;
    bl_check_conf_free(cc1);
    assert_true(is_down(&h2->probes[0]));
    assert_int_equal(h2->probes[0].down, 1);
    assert_true(h2->probes[0].failures >= 2);

    /* And a generation without check lets it go. */
    g->check = NULL;
    struct bl_health *h3 = bl_health_start(e.loop, &g, 1, err, sizeof(err));
    assert_true(bl_server_check_ok(&e.t->s[0]));
    bl_health_stop(h3);
    g->check = cc2;
    env_free(&e);
}

/* Stopping from inside a handler of the same loop, with probes in flight. */
static void stop_cb(struct bl_timer *t);
static struct bl_health *stop_target;
static struct bl_loop *stop_loop;
static void stop_cb(struct bl_timer *t)
{
    bl_health_stop(stop_target);
    bl_loop_stop(stop_loop);
}

static void test_stop_in_flight(void **state)
{
    char err[256];
    struct bl_loop *loop = bl_loop_create(err, sizeof(err));
    struct tsrv *srv = tsrv_new(loop, NULL);
    srv->accept = 0;
    tsrv_listen(srv);
    uint16_t ports[50];
    for (int i = 0; i < 50; i++)
        ports[i] = srv->port;
    struct tgroup *t = tgroup_new("app", 50, ports,
                                  conf_from("interval=10 timeout=1000 type=http", NULL, NULL));
    struct bl_upstream_group *g = &t->g;
    stop_target = bl_health_start(loop, &g, 1, err, sizeof(err));
    stop_loop = loop;
    struct bl_timer stop = {.handler = stop_cb};
    bl_timer_set(loop, &stop, bl_clock_update() + 40);
    bl_loop_run(loop);
    bl_loop_destroy(loop);                /* runs the deferred free */
    tsrv_free(srv);
    bl_check_conf_free(t->g.check);
    free(t);
}

int main(void)
{
    int fd = mkstemp(log_path);
    if (fd < 0)
        return 1;
    close(fd);
    char err[256];
    if (bl_log_open(log_path, BL_LOG_NOTICE, err, sizeof(err)) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_check_defaults),
        cmocka_unit_test(test_parse_check_seed),
        cmocka_unit_test(test_parse_check_units_and_options),
        cmocka_unit_test(test_parse_check_ssl),
        cmocka_unit_test(test_parse_check_errors),
        cmocka_unit_test(test_parse_http_send),
        cmocka_unit_test(test_parse_expect_alive),
        cmocka_unit_test(test_parse_expect_body),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_tcp_up),
        cmocka_unit_test(test_tcp_refused_down_after_fall),
        cmocka_unit_test(test_http_200_up),
        cmocka_unit_test(test_http_503_down),
        cmocka_unit_test(test_http_body),
        cmocka_unit_test(test_http_invalid),
        cmocka_unit_test(test_http_head_too_large),
        cmocka_unit_test(test_http_timeout),
        cmocka_unit_test(test_rise_after_recovery),
        cmocka_unit_test(test_default_down),
        cmocka_unit_test(test_port_override),
        cmocka_unit_test(test_which_servers),
        cmocka_unit_test(test_jitter_spread),
        cmocka_unit_test(test_interval_cadence),
        cmocka_unit_test(test_reload_carries_verdict),
        cmocka_unit_test(test_stop_in_flight),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bl_log_open("stderr", BL_LOG_NOTICE, err, sizeof(err));
    unlink(log_path);
    return rc;
}
