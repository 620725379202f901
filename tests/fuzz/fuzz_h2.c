/* Fuzz target: a client's HTTP/2 bytes (after the preface) through http/h2.c's nghttp2 session
 * and callbacks: HPACK decoding into the HTTP/1.1 request head, header-list bounds (431, the
 * HPACK-bomb kill), CONTINUATION runs, stream limits, rapid reset, request bodies under flow
 * control and responses written back through the stream transport.
 *
 * h2.c is included whole; the rest of the worker (the proxy's stream clients, the loop's timers
 * and deferred calls, the socket) is replaced by the small fakes below, so one input is one
 * connection's life, deterministic, with nothing outside the process touched.
 *
 * Input: byte 0 picks the limits (large_client_header_buffers 4 8k / 2 1k / 1 256 / 8 2k,
 * http2_max_concurrent_streams 128 / 1 / 4 / 100) and what a stream client does (answer at
 * once; read the body, then answer with a long body; reset; never answer); byte 1 bounds each
 * read (1..256 bytes, 0: as much as fits) and each write of the connection (bit 7: 7 bytes, so
 * output blocks); byte 2 bit 0 ends the connection by EOF instead of its timer. The rest is what
 * the client sends after the preface, which the target adds.
 *
 * Checks beyond "no crash, no leak, no UB": every head h2.c builds for a stream that fitted is
 * one whole HTTP/1.1 request head to ballast's own parser (nothing a client puts in a field can
 * end the head early or start a second request: no smuggling through the conversion), and its
 * request line is :method and :path as the client sent them. */
#include <errno.h>
#include <string.h>

#include "http/h2.c"

#include "fuzz.h"
#include "http/h1_parser.h"

/* ---- fakes for the worker around h2.c */

enum { MODE_ANSWER, MODE_BODY_THEN_LONG, MODE_RESET, MODE_SILENT };

struct fuzz_stream {
    struct bl_client c; /* first: the stream client h2.c sees */
    int checked, answered;
    size_t long_left;   /* MODE_BODY_THEN_LONG: response body bytes still to write */
    struct fuzz_stream *next;
};

static struct {
    const uint8_t *in;
    size_t in_len, in_off;
    size_t read_max, write_max;
    int write_short;            /* the next write is cut to write_max (every other one) */
    int eof;
    int mode;
    int closed;                 /* the connection client was closed */
    struct bl_deferred *defer;  /* bl_loop_defer()'s queue */
    struct fuzz_stream *streams;
} F;

void bl_timer_set(struct bl_loop *l, struct bl_timer *t, uint64_t when_ms)
{
    (void)l;
    t->when = when_ms ? when_ms : 1;
}

void bl_timer_cancel(struct bl_loop *l, struct bl_timer *t)
{
    (void)l;
    t->when = 0;
}

void bl_loop_defer(struct bl_loop *l, struct bl_deferred *d)
{
    (void)l;
    d->next = F.defer;
    F.defer = d;
}

static void run_deferred(void)
{
    for (int i = 0; i < 10000 && F.defer; i++) {
        struct bl_deferred *d = F.defer;
        F.defer = d->next;
        d->run(d);
    }
}

ssize_t bl_client_read(struct bl_client *c, struct bl_buf *b)
{
    size_t left = F.in_len - F.in_off;
    if (!left) {
        if (F.eof)
            return 0;
        c->rready = 0;
        return BL_AGAIN;
    }
    size_t n = bl_buf_room(b);
    if (F.read_max && n > F.read_max)
        n = F.read_max;
    if (n > left)
        n = left;
    memcpy(b->data + b->end, F.in + F.in_off, n);
    b->end += (uint32_t)n;
    F.in_off += n;
    return (ssize_t)n;
}

ssize_t bl_client_writev(struct bl_client *c, struct iovec *iov, int n)
{
    size_t all = 0;
    for (int i = 0; i < n; i++)
        all += iov[i].iov_len;
    F.write_short = !F.write_short;
    if (F.write_max && all > F.write_max && F.write_short) {
        c->wready = 0; /* the harness makes it writable again on the next event */
        return (ssize_t)F.write_max;
    }
    return all ? (ssize_t)all : BL_AGAIN;
}

static void stream_end(struct fuzz_stream *fs, int complete)
{
    for (struct fuzz_stream **p = &F.streams; *p; p = &(*p)->next)
        if (*p == fs) {
            *p = fs->next;
            break;
        }
    bl_buf_put(fs->c.in);
    bl_h2_stream_detach(&fs->c, complete);
    free(fs);
}

void bl_client_stream_abort(struct bl_client *c, const char *why)
{
    (void)why;
    stream_end((struct fuzz_stream *)c, 0);
}

void bl_client_close(struct bl_client *c)
{
    if (F.closed)
        return;
    F.closed = 1;
    bl_h2_conn_free(c);
}

/* The head h2.c made must be one whole request to the HTTP/1.1 parser (when it fitted). */
static void check_head(struct fuzz_stream *fs)
{
    struct bl_h2_stream *st = fs->c.h2;
    struct bl_buf *b = fs->c.in;
    if (st->overflow)
        return; /* made to be refused with 431 */
    const struct bl_loc_conf *conf = &fs->c.listen->servers[0]->conf;
    static struct bl_h1_message m;
    struct bl_h1_parser p;
    bl_h1_parser_init_request(&p, (uint32_t)conf->lchb_size,
                              (uint32_t)(conf->lchb_number * conf->lchb_size));
    int rc = bl_h1_parse(&p, b->data + b->start, bl_buf_len(b), &m);
    FUZZ_CHECK(rc != BL_AGAIN); /* the head ends with its blank line */
    if (rc < 0)
        return; /* a target or method the HTTP/1.1 parser refuses: 400, not a finding */
    FUZZ_CHECK_EQ(rc, bl_buf_len(b));
    nghttp2_vec meth = nghttp2_rcbuf_get_buf(st->method), path = nghttp2_rcbuf_get_buf(st->path);
    FUZZ_CHECK_EQ(m.method_len, meth.len);
    FUZZ_CHECK(memcmp(m.method, meth.base, meth.len) == 0);
    FUZZ_CHECK_EQ(m.target_len, path.len);
    FUZZ_CHECK(memcmp(m.target, path.base, path.len) == 0);
}

static void drain_body(struct fuzz_stream *fs)
{
    struct bl_buf *b = bl_buf_get();
    if (!b)
        return;
    for (int i = 0; i < 64 && fs->c.rready; i++) {
        b->start = b->end = 0;
        ssize_t n = bl_h2_stream_read(&fs->c, b);
        if (n <= 0)
            break;
    }
    bl_buf_put(b);
}

static const char RESP[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive"
                           "\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n";

static void stream_event(struct bl_io *io, uint32_t ev)
{
    (void)ev;
    struct fuzz_stream *fs = (struct fuzz_stream *)((char *)io - offsetof(struct bl_client, io));
    if (!fs->checked) {
        fs->checked = 1;
        check_head(fs);
        if (fs->c.h2->overflow || F.mode == MODE_RESET) {
            stream_end(fs, 0);
            return;
        }
    }
    if (F.mode == MODE_SILENT) {
        drain_body(fs);
        return;
    }
    if (F.mode == MODE_BODY_THEN_LONG) {
        drain_body(fs);
        if (!fs->c.h2->rx_eof)
            return;
    }
    if (!fs->answered) {
        fs->answered = 1;
        struct iovec iov = {(void *)RESP, sizeof(RESP) - 1};
        ssize_t n = bl_h2_stream_writev(&fs->c, &iov, 1);
        if (n < 0) {
            stream_end(fs, 0);
            return;
        }
        fs->long_left = F.mode == MODE_BODY_THEN_LONG ? 100000 : 5;
    }
    static char body[16384];
    while (fs->long_left && fs->c.wready) {
        struct iovec iov = {body, fs->long_left < sizeof(body) ? fs->long_left : sizeof(body)};
        memset(body, 'b', iov.iov_len);
        ssize_t n = bl_h2_stream_writev(&fs->c, &iov, 1);
        if (n == BL_AGAIN)
            return;
        if (n < 0) {
            stream_end(fs, 0);
            return;
        }
        fs->long_left -= (size_t)n;
    }
    if (!fs->long_left)
        stream_end(fs, 1);
}

struct bl_client *bl_client_new_stream(struct bl_client *p, struct bl_h2_stream *st,
                                       struct bl_buf *head)
{
    struct fuzz_stream *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return NULL;
    fs->c.io.handler = stream_event;
    fs->c.w = p->w;
    fs->c.listen = p->listen;
    fs->c.in = head;
    fs->c.h2 = st;
    fs->c.rready = fs->c.wready = 1;
    fs->next = F.streams;
    F.streams = fs;
    return &fs->c;
}

/* ---- the target */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    bl_log_level = BL_LOG_EMERG + 1; /* what h2.c logs about a client is not a finding */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    static const uint32_t lchb[4][2] = {{4, 8192}, {2, 1024}, {1, 256}, {8, 2048}};
    static const uint32_t streams[4] = {128, 1, 4, 100};
    static struct bl_config cfg;
    static struct bl_server_block srv;
    static struct bl_server_block *srvs[1] = {&srv};
    static struct bl_listen listen = {.servers = srvs, .nservers = 1};
    static struct bl_http_worker w;
    struct bl_loc_conf *conf = &srv.conf;
    conf->lchb_number = lchb[data[0] & 3][0];
    conf->lchb_size = lchb[data[0] & 3][1];
    conf->http2_max_concurrent_streams = streams[(data[0] >> 2) & 3];
    conf->keepalive_requests = 1000;
    conf->keepalive_timeout = 75000;
    conf->send_timeout = 60000;
    cfg.http_conf.http2_recv_buffer_size = 16384;
    w.cfg = &cfg;

    memset(&F, 0, sizeof(F));
    F.mode = (data[0] >> 4) & 3;
    F.read_max = data[1] & 0x7f ? (size_t)(data[1] & 0x7f) * 2 : 0;
    F.write_max = data[1] & 0x80 ? 7 : 0;
    int close_by_eof = data[2] & 1;
    /* the preface and the client's bytes, in an allocation of their exact size */
    size_t len = BL_H2_PREFACE_LEN + size - 3;
    uint8_t *in = malloc(len);
    memcpy(in, BL_H2_PREFACE, BL_H2_PREFACE_LEN);
    memcpy(in + BL_H2_PREFACE_LEN, data + 3, size - 3);
    F.in = in;
    F.in_len = len;

    struct bl_client *c = calloc(1, sizeof(*c));
    c->w = &w;
    c->listen = &listen;
    c->wready = 1;
    memcpy(c->ip, "127.0.0.1", 10);
    /* bl_h2_start takes what was read with the preface: give it the preface alone */
    F.in_off = BL_H2_PREFACE_LEN;
    if (bl_h2_start(c, (const char *)in, BL_H2_PREFACE_LEN) != BL_OK)
        bl_client_close(c);
    /* turns of the loop while there is input, or output and stream events to process */
    for (int turn = 0; turn < 20000 && !F.closed; turn++) {
        run_deferred();
        if (F.closed)
            break;
        struct bl_h2_conn *h = c->h2c;
        int more = F.in_off < F.in_len;
        if (!more && !(h && (h->out || h->pend_len || h->ready)))
            break;
        c->rready = more;
        c->wready = 1;
        bl_h2_conn_event(c, BL_EV_READ | BL_EV_WRITE);
    }
    if (!F.closed) {
        run_deferred();
        /* the connection ends: the client goes (EOF) or its timer fires */
        if (close_by_eof) {
            F.eof = 1;
            c->rready = 1;
            if (!F.closed)
                bl_h2_conn_event(c, BL_EV_READ);
        } else if (!F.closed) {
            c->rready = 0;
            bl_h2_conn_timer(c);
        }
        if (!F.closed)
            bl_client_close(c);
    }
    run_deferred();
    FUZZ_CHECK(F.streams == NULL); /* every stream client ended with its connection */
    free(w.h2_rbuf);
    w.h2_rbuf = NULL;
    free(c);
    free(in);
    return 0;
}
