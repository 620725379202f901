/* HTTP/2 to clients: nghttp2 sessions whose streams run as stream clients of the HTTP/1.1
 * request path. The design and its bounds are in http/h2.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "core/buf.h"
#include "core/log.h"
#include "http/h2.h"
#include "http/proxy_int.h"

/* Event bit for a stream client: the stream was reset or its connection is going. */
#define H2_EV_ABORT 0x100u

/* Header bytes a stream may send, past which the connection is closed (an HPACK bomb or
 * a CONTINUATION flood): a multiple of what the request head may hold. */
#define H2_HEADER_KILL_FACTOR 4

/* Rapid reset: a client that has reset at least this many streams... */
#define H2_RESET_MIN 64
/* ...and more than half of those it opened is closed (Envoy's premature-reset rule). */

struct bl_h2_stream {
    struct bl_h2_conn *h;
    struct bl_client *vc;              /* the stream client; NULL once it ended */
    struct bl_h2_stream *prev, *next;  /* h->streams */
    struct bl_h2_stream *ready_next;   /* h->ready */
    int32_t id;
    uint32_t ev;                       /* BL_EV_* / H2_EV_ABORT waiting for vc */
    uint32_t hdr_bytes;                /* decoded header bytes (name + value + 32 each) */
    struct bl_buf *head;               /* the HTTP/1.1 request head being made */
    struct bl_buf *rx;                 /* request body bytes not yet read by vc */
    struct bl_buf *tx;                 /* response bytes not yet taken by nghttp2 */
    nghttp2_rcbuf *method, *path, *authority;
    char *cookie;                      /* cookie fields joined with "; " */
    uint32_t cookie_len;
    uint8_t in_ready;                  /* on h->ready */
    uint8_t line_done;                 /* the request line (and Host) are in head */
    uint8_t overflow;                  /* the head did not fit: the request gets 431 */
    uint8_t has_length;                /* the client sent content-length */
    uint8_t chunked;                   /* the body goes to the proxy chunked */
    uint8_t chunk_end;                 /* ... and its last chunk was given */
    uint8_t rx_eof;                    /* END_STREAM came */
    uint8_t head_sent;                 /* the response HEADERS are submitted */
    uint8_t tx_eof;                    /* the response is complete */
    uint8_t deferred;                  /* the data provider waits for bytes */
    uint8_t closed;                    /* nghttp2 closed the stream */
    uint8_t started;                   /* vc exists */
    uint8_t is_head;                   /* :method HEAD */
};

struct bl_h2_conn {
    struct bl_client *c;
    nghttp2_session *s;
    struct bl_h2_stream *streams;      /* every stream record (doubly linked) */
    struct bl_h2_stream *ready, *ready_tail; /* streams with events for their client */
    struct bl_buf *out;                /* frames gathered for one write */
    const uint8_t *pend;               /* a chunk from nghttp2 that did not fit in out */
    size_t pend_len;
    struct bl_deferred kick;           /* a service run after this batch of events */
    uint32_t nstreams;                 /* stream records alive */
    uint32_t opened, resets;           /* streams the client opened, and reset */
    uint32_t requests;                 /* streams that became requests */
    uint32_t max_head;                 /* the request head's bound (large_client_header_buffers) */
    uint32_t lchb_size;
    uint8_t kick_queued, servicing, again;
    uint8_t dead;                      /* freed but for the queued kick */
    uint8_t kill;                      /* close after flushing what is queued */
    uint8_t goaway;                    /* GOAWAY sent (stop or reload) */
};

static void service(struct bl_h2_conn *h);

/* ------------------------------------------------------------ small helpers */

static void kick_run(struct bl_deferred *d)
{
    struct bl_h2_conn *h = (struct bl_h2_conn *)((char *)d - offsetof(struct bl_h2_conn, kick));
    h->kick_queued = 0;
    if (h->dead) {
        free(h);
        return;
    }
    bl_h2_conn_event(h->c, 0); /* reads on if a turn's read budget stopped it */
}

/* Output or events are waiting: a service run after this batch of events (once). */
static void kick(struct bl_h2_conn *h)
{
    if (h->servicing) {
        h->again = 1;
        return;
    }
    if (h->kick_queued || h->dead)
        return;
    h->kick_queued = 1;
    bl_loop_defer(h->c->w->loop, &h->kick);
}

static void post(struct bl_h2_stream *st, uint32_t ev)
{
    st->ev |= ev;
    if (st->in_ready)
        return;
    st->in_ready = 1;
    st->ready_next = NULL;
    if (st->h->ready_tail)
        st->h->ready_tail->ready_next = st;
    else
        st->h->ready = st;
    st->h->ready_tail = st;
}

static void stream_free(struct bl_h2_stream *st)
{
    struct bl_h2_conn *h = st->h;
    if (st->prev)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    h->nstreams--;
    bl_buf_put(st->head);
    free(st->rx);
    bl_buf_put(st->tx);
    if (st->method)
        nghttp2_rcbuf_decref(st->method);
    if (st->path)
        nghttp2_rcbuf_decref(st->path);
    if (st->authority)
        nghttp2_rcbuf_decref(st->authority);
    free(st->cookie);
    free(st);
}

/* Frees st once nghttp2 closed it and its client ended (and it is off the ready list). */
static void stream_maybe_free(struct bl_h2_stream *st)
{
    if (st->closed && !st->vc && !st->in_ready)
        stream_free(st);
}

static int head_put(struct bl_h2_stream *st, const char *p, size_t len)
{
    struct bl_buf *b = st->head;
    if (st->overflow || len + 8 > bl_buf_room(b)) {
        st->overflow = 1;
        return -1;
    }
    memcpy(b->data + b->end, p, len);
    b->end += (uint32_t)len;
    return 0;
}

static void head_rc(struct bl_h2_stream *st, nghttp2_rcbuf *rc)
{
    nghttp2_vec v = nghttp2_rcbuf_get_buf(rc);
    head_put(st, (const char *)v.base, v.len);
}

/* The request line and Host, once every pseudo-header came. */
static void head_line(struct bl_h2_stream *st)
{
    if (st->line_done)
        return;
    st->line_done = 1;
    if (!st->method || !st->path) {
        /* nghttp2 resets such a stream at the end of its header block */
        st->overflow = 1;
        return;
    }
    head_rc(st, st->method);
    head_put(st, " ", 1);
    head_rc(st, st->path);
    head_put(st, " HTTP/1.1\r\n", 11);
    if (st->authority) {
        head_put(st, "Host: ", 6);
        head_rc(st, st->authority);
        head_put(st, "\r\n", 2);
    }
}

/* ------------------------------------------------------------ nghttp2 callbacks (receiving) */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct bl_h2_conn *h = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct bl_h2_stream *st = calloc(1, sizeof(*st));
    if (!st || !(st->head = bl_buf_get())) {
        free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->h = h;
    st->id = f->hd.stream_id;
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    h->streams = st;
    h->nstreams++;
    h->opened++;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, nghttp2_rcbuf *name,
                     nghttp2_rcbuf *value, uint8_t flags, void *user)
{
    (void)flags;
    struct bl_h2_conn *h = user;
    struct bl_h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: not forwarded */
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name), v = nghttp2_rcbuf_get_buf(value);
    st->hdr_bytes += (uint32_t)(n.len + v.len + 32);
    if (st->hdr_bytes > h->max_head * H2_HEADER_KILL_FACTOR) {
        bl_log(BL_LOG_INFO, "client %s sent a header list of over %u bytes on an HTTP/2 stream "
               "(HPACK bomb or CONTINUATION flood?): closing the connection", h->c->ip,
               st->hdr_bytes);
        h->kill = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (st->overflow)
        return 0;
    if (n.len + v.len + 4 > h->lchb_size) {
        st->overflow = 1; /* the parser's 431 for a line longer than the buffer */
        return 0;
    }
    const char *nm = (const char *)n.base;
    if (nm[0] == ':') {
        nghttp2_rcbuf **slot = n.len == 7 && memcmp(nm, ":method", 7) == 0 ? &st->method
                             : n.len == 5 && memcmp(nm, ":path", 5) == 0 ? &st->path
                             : n.len == 10 && memcmp(nm, ":authority", 10) == 0 ? &st->authority
                                                                              : NULL;
        if (slot && !*slot) {
            nghttp2_rcbuf_incref(value);
            *slot = value;
            if (slot == &st->method && v.len == 4 && memcmp(v.base, "HEAD", 4) == 0)
                st->is_head = 1;
        }
        return 0;
    }
    head_line(st);
    switch (n.len) {
    case 2:
        if (memcmp(nm, "te", 2) == 0)
            return 0; /* only "trailers" is allowed, and it is hop-by-hop */
        break;
    case 4:
        if (memcmp(nm, "host", 4) == 0 && st->authority)
            return 0; /* :authority wins (RFC 9113 8.3.1) */
        break;
    case 6:
        if (memcmp(nm, "cookie", 6) == 0) {
            /* split crumbs are joined into one field (RFC 9113 8.2.3) */
            char *p = realloc(st->cookie, st->cookie_len + v.len + 2);
            if (!p) {
                st->overflow = 1;
                return 0;
            }
            if (st->cookie_len) {
                memcpy(p + st->cookie_len, "; ", 2);
                st->cookie_len += 2;
            }
            memcpy(p + st->cookie_len, v.base, v.len);
            st->cookie_len += (uint32_t)v.len;
            st->cookie = p;
            return 0;
        }
        if (memcmp(nm, "expect", 6) == 0)
            return 0; /* the body comes under flow control: no 100 Continue */
        break;
    case 14:
        if (memcmp(nm, "content-length", 14) == 0)
            st->has_length = 1;
        break;
    default:
        break;
    }
    head_put(st, nm, n.len);
    head_put(st, ": ", 2);
    head_put(st, (const char *)v.base, v.len);
    head_put(st, "\r\n", 2);
    return 0;
}

/* The header block is complete: the head is finished and the stream client made. */
static int request_ready(struct bl_h2_conn *h, struct bl_h2_stream *st, int end_stream)
{
    head_line(st);
    if (st->cookie_len) {
        head_put(st, "Cookie: ", 8);
        head_put(st, st->cookie, st->cookie_len);
        head_put(st, "\r\n", 2);
    }
    if (!end_stream && !st->has_length) {
        head_put(st, "Transfer-Encoding: chunked\r\n", 28);
        st->chunked = 1;
    }
    if (end_stream)
        st->rx_eof = 1;
    if (st->overflow) {
        /* A head the parser refuses with 431 (longer than the head may be, no end). */
        struct bl_buf *b = st->head;
        memset(b->data + b->end, 'x', bl_buf_room(b));
        b->end = b->cap;
        st->rx_eof = 1;
        st->chunked = 0;
    } else {
        memcpy(st->head->data + st->head->end, "\r\n", 2);
        st->head->end += 2;
    }
    struct bl_client *vc = bl_client_new_stream(h->c, st, st->head);
    if (!vc) {
        bl_log(BL_LOG_ERROR, "out of memory for an HTTP/2 stream, client %s", h->c->ip);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->head = NULL; /* vc's input now */
    st->vc = vc;
    st->started = 1;
    post(st, BL_EV_READ | BL_EV_WRITE);
    /* keepalive_requests bounds the streams of a connection, as in nginx since 1.19.7: this
     * one is served, the client opens the next ones on a new connection. */
    if (++h->requests >= h->c->listen->servers[0]->conf.keepalive_requests)
        bl_h2_goaway(h->c);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct bl_h2_conn *h = user;
    struct bl_h2_stream *st = f->hd.stream_id
                                  ? nghttp2_session_get_stream_user_data(s, f->hd.stream_id)
                                  : NULL;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (!st)
            return 0;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            return request_ready(h, st, f->hd.flags & NGHTTP2_FLAG_END_STREAM);
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) { /* trailers end the body */
            st->rx_eof = 1;
            if (st->vc) {
                st->vc->rready = 1;
                post(st, BL_EV_READ);
            }
        }
        return 0;
    case NGHTTP2_DATA:
        if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            st->rx_eof = 1;
            if (st->vc) {
                st->vc->rready = 1;
                post(st, BL_EV_READ);
            }
        }
        return 0;
    case NGHTTP2_RST_STREAM:
        h->resets++;
        if (h->resets >= H2_RESET_MIN && h->resets * 2 > h->opened && !h->kill) {
            bl_log(BL_LOG_INFO, "client %s reset %u of the %u HTTP/2 streams it opened "
                   "(rapid reset): closing the connection", h->c->ip, h->resets, h->opened);
            h->kill = 1;
            nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
        }
        return 0;
    default:
        return 0;
    }
}

/* A stream's request-body buffer: its whole window, whichever of ours (H2_WINDOW) or the
 * protocol's default (until the client acknowledges our SETTINGS) is larger. */
#define H2_WINDOW 65535u
static struct bl_buf *rx_new(void)
{
    struct bl_buf *b = malloc(sizeof(*b) + H2_WINDOW + 1);
    if (b) {
        b->start = b->end = 0;
        b->cap = H2_WINDOW + 1;
    }
    return b;
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                              size_t len, void *user)
{
    (void)flags;
    (void)user;
    /* The connection's window is given back at once: only streams exert back-pressure. */
    nghttp2_session_consume_connection(s, len);
    struct bl_h2_stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st || !st->vc || st->rx_eof || st->overflow) {
        nghttp2_session_consume_stream(s, id, len);
        return 0;
    }
    if (!st->rx && !(st->rx = rx_new()))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    struct bl_buf *b = st->rx;
    if (bl_buf_room(b) < len && b->start) {
        memmove(b->data, b->data + b->start, bl_buf_len(b));
        b->end -= b->start;
        b->start = 0;
    }
    if (bl_buf_room(b) < len)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* past the window we gave */
    memcpy(b->data + b->end, data, len);
    b->end += (uint32_t)len;
    st->vc->rready = 1;
    post(st, BL_EV_READ);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error, void *user)
{
    (void)user;
    struct bl_h2_stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st)
        return 0;
    (void)error;
    st->closed = 1;
    /* A response without a body (HEAD, 204, 304) is complete once its HEADERS went, even if
     * its client has not ended yet; otherwise the client reset the stream or the connection
     * is ending. */
    if (st->vc && !(st->head_sent && st->tx_eof)) {
        post(st, H2_EV_ABORT);
        return 0;
    }
    stream_maybe_free(st);
    return 0;
}

/* ------------------------------------------------------------ responses */

/* Response body bytes for nghttp2, from the stream's buffer. */
static ssize_t data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)user;
    struct bl_h2_stream *st = src->ptr;
    struct bl_buf *b = st->tx;
    size_t n = b ? bl_buf_len(b) : 0;
    if (n > len)
        n = len;
    if (n) {
        memcpy(buf, b->data + b->start, n);
        b->start += (uint32_t)n;
        if (b->start == b->end)
            b->start = b->end = 0;
    }
    if ((!b || bl_buf_len(b) == 0) && st->tx_eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (!st->rx_eof) /* the request body is not wanted any more */
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
        return (ssize_t)n;
    }
    if (!n) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    /* Room again: the stream client may write more. */
    if (st->vc && !st->vc->wready && bl_buf_room(b) + b->start >= bl_buf_size() / 2) {
        st->vc->wready = 1;
        post(st, BL_EV_WRITE);
    }
    return (ssize_t)n;
}

static int hop_by_hop(const char *n, size_t len)
{
    return (len == 10 && strncasecmp(n, "connection", 10) == 0) ||
           (len == 10 && strncasecmp(n, "keep-alive", 10) == 0) ||
           (len == 16 && strncasecmp(n, "proxy-connection", 16) == 0) ||
           (len == 17 && strncasecmp(n, "transfer-encoding", 17) == 0) ||
           (len == 7 && strncasecmp(n, "upgrade", 7) == 0);
}

#define H2_MAX_RESP_HEADERS 128

/* Submits the HTTP/1.1 response head at p[len] (written by ballast itself: a status line and
 * well-formed fields) as HEADERS. BL_OK or BL_ERR. */
static int submit_head(struct bl_h2_stream *st, char *p, size_t len)
{
    nghttp2_nv nv[H2_MAX_RESP_HEADERS];
    size_t n = 0;
    char *end = p + len;
    char *eol = memchr(p, '\n', len);
    if (len < 12 || !eol || memcmp(p, "HTTP/1.", 7) != 0)
        return BL_ERR;
    int status = atoi(p + 9); /* NOLINT(cert-err34-c): ballast wrote these three digits */
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)p + 9, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (char *l = eol + 1; l < end && *l != '\r' && *l != '\n';) {
        char *e = memchr(l, '\n', (size_t)(end - l));
        if (!e)
            break;
        char *colon = memchr(l, ':', (size_t)(e - l));
        char *vend = e;
        if (vend > l && vend[-1] == '\r')
            vend--;
        if (colon && n < H2_MAX_RESP_HEADERS && !hop_by_hop(l, (size_t)(colon - l))) {
            for (char *q = l; q < colon; q++)
                if (*q >= 'A' && *q <= 'Z')
                    *q = (char)(*q + 32);
            char *v = colon + 1;
            while (v < vend && (*v == ' ' || *v == '\t'))
                v++;
            nv[n++] = (nghttp2_nv){(uint8_t *)l, (uint8_t *)v, (size_t)(colon - l),
                                   (size_t)(vend - v), NGHTTP2_NV_FLAG_NONE};
        }
        l = e + 1;
    }
    int body = !st->is_head && status != 204 && status != 304;
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = data_read};
    if (nghttp2_submit_response(st->h->s, st->id, nv, n, body ? &dp : NULL) != 0)
        return BL_ERR;
    if (!body)
        st->tx_eof = 1;
    st->head_sent = 1;
    return BL_OK;
}

ssize_t bl_h2_stream_writev(struct bl_client *c, const struct iovec *iov, int n)
{
    struct bl_h2_stream *st = c->h2;
    if (st->closed) {
        if (st->head_sent && st->tx_eof) { /* a bodiless response that went whole */
            size_t all = 0;
            for (int i = 0; i < n; i++)
                all += iov[i].iov_len;
            return all ? (ssize_t)all : BL_AGAIN;
        }
        errno = EPIPE;
        return BL_ERR;
    }
    if (!st->tx && !(st->tx = bl_buf_get())) {
        errno = ENOMEM;
        return BL_ERR;
    }
    struct bl_buf *b = st->tx;
    if (b->start && bl_buf_room(b) < bl_buf_size() / 2) {
        memmove(b->data, b->data + b->start, bl_buf_len(b));
        b->end -= b->start;
        b->start = 0;
    }
    size_t total = 0, want = 0;
    for (int i = 0; i < n; i++) {
        want += iov[i].iov_len;
        size_t k = iov[i].iov_len < bl_buf_room(b) ? iov[i].iov_len : bl_buf_room(b);
        memcpy(b->data + b->end, iov[i].iov_base, k);
        b->end += (uint32_t)k;
        total += k;
    }
    if (!st->head_sent) {
        char *p = b->data + b->start;
        uint32_t len = bl_buf_len(b);
        char *e = len >= 4 ? memmem(p, len, "\r\n\r\n", 4) : NULL;
        if (!e) {
            if (bl_buf_room(b) == 0) {
                errno = EPROTO;
                return BL_ERR;
            }
        } else {
            size_t hl = (size_t)(e - p) + 4;
            if (submit_head(st, p, hl) != BL_OK) {
                bl_log(BL_LOG_ERROR, "could not make HTTP/2 response headers, client %s",
                       c->ip);
                errno = EPROTO;
                return BL_ERR;
            }
            b->start += (uint32_t)hl;
        }
    }
    if (st->head_sent && st->tx_eof) /* no body (HEAD, 204, 304): what follows is not sent */
        b->start = b->end = 0;
    if (total < want)
        c->wready = 0;
    if (st->head_sent && st->deferred && bl_buf_len(b)) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->h->s, st->id);
    }
    kick(st->h);
    if (total == 0)
        return BL_AGAIN;
    return (ssize_t)total;
}

ssize_t bl_h2_stream_read(struct bl_client *c, struct bl_buf *b)
{
    struct bl_h2_stream *st = c->h2;
    struct bl_buf *rx = st->rx;
    uint32_t have = rx ? bl_buf_len(rx) : 0;
    uint32_t room = bl_buf_room(b);
    ssize_t n = 0;
    if (have) {
        uint32_t take;
        if (st->chunked) {
            if (room <= 16)
                return BL_AGAIN;
            take = have < room - 16 ? have : room - 16;
            int k = snprintf(b->data + b->end, 12, "%x\r\n", take);
            memcpy(b->data + b->end + k, rx->data + rx->start, take);
            memcpy(b->data + b->end + k + take, "\r\n", 2);
            n = k + take + 2;
        } else {
            take = have < room ? have : room;
            memcpy(b->data + b->end, rx->data + rx->start, take);
            n = take;
        }
        b->end += (uint32_t)n;
        rx->start += take;
        if (rx->start == rx->end)
            rx->start = rx->end = 0;
        have -= take;
        nghttp2_session_consume_stream(st->h->s, st->id, take);
        kick(st->h); /* WINDOW_UPDATE */
    }
    if (!have && st->rx_eof && st->chunked && !st->chunk_end && bl_buf_room(b) >= 5) {
        memcpy(b->data + b->end, "0\r\n\r\n", 5);
        b->end += 5;
        n += 5;
        st->chunk_end = 1;
    }
    if (!have && !st->rx_eof)
        c->rready = 0;
    if (n)
        return n;
    if (st->rx_eof && (!st->chunked || st->chunk_end))
        return 0;
    c->rready = 0;
    return BL_AGAIN;
}

struct bl_client *bl_h2_stream_conn(const struct bl_client *c)
{
    return c->h2->h->c;
}

void bl_h2_stream_detach(struct bl_client *c, int complete)
{
    struct bl_h2_stream *st = c->h2;
    c->h2 = NULL;
    if (!st)
        return;
    st->vc = NULL;
    struct bl_h2_conn *h = st->h;
    if (!h->dead && !h->kill && !st->closed) {
        if (complete && st->head_sent) {
            st->tx_eof = 1;
            if (st->deferred) {
                st->deferred = 0;
                nghttp2_session_resume_data(h->s, st->id);
            }
        } else {
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        }
        kick(h);
    }
    /* The request body still coming is not wanted: its window is given back as it arrives
     * (on_data_chunk_recv), and what is buffered now. */
    if (st->rx) {
        if (!h->dead && !st->closed && bl_buf_len(st->rx))
            nghttp2_session_consume_stream(h->s, st->id, bl_buf_len(st->rx));
        free(st->rx);
        st->rx = NULL;
    }
    stream_maybe_free(st);
}

/* ------------------------------------------------------------ the connection */

/* Writes what nghttp2 has to send, gathered into h->out. BL_OK (all went), BL_AGAIN (the
 * socket is full) or BL_ERR. */
static int flush(struct bl_h2_conn *h)
{
    struct bl_client *c = h->c;
    for (;;) {
        if (!h->out && !(h->out = bl_buf_get()))
            return BL_ERR;
        struct bl_buf *o = h->out;
        while (!h->pend_len) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h->s, &data);
            if (n < 0) {
                bl_log(BL_LOG_INFO, "HTTP/2 session error (%s), client %s",
                       nghttp2_strerror((int)n), c->ip);
                return BL_ERR;
            }
            if (n == 0)
                break;
            if ((size_t)n <= bl_buf_room(o)) {
                memcpy(o->data + o->end, data, (size_t)n);
                o->end += (uint32_t)n;
            } else {
                h->pend = data;
                h->pend_len = (size_t)n;
            }
        }
        if (!bl_buf_len(o) && !h->pend_len) {
            bl_buf_put(h->out);
            h->out = NULL;
            return BL_OK;
        }
        if (!c->wready)
            return BL_AGAIN;
        struct iovec iov[2];
        int k = 0;
        uint32_t olen = bl_buf_len(o);
        if (olen)
            iov[k++] = (struct iovec){o->data + o->start, olen};
        if (h->pend_len)
            iov[k++] = (struct iovec){(void *)h->pend, h->pend_len};
        ssize_t w = bl_client_writev(c, iov, k);
        if (w == BL_AGAIN)
            return BL_AGAIN;
        if (w < 0)
            return BL_ERR;
        size_t from_out = (size_t)w < olen ? (size_t)w : olen;
        o->start += (uint32_t)from_out;
        if (o->start == o->end)
            o->start = o->end = 0;
        size_t from_pend = (size_t)w - from_out;
        if (from_pend) { /* pend may be NULL: NULL + 0 is undefined (fuzz_h2, UBSan) */
            h->pend += from_pend;
            h->pend_len -= from_pend;
        }
        if ((size_t)w < olen + (h->pend_len + from_pend))
            return BL_AGAIN;
    }
}

/* Delivers the queued events to stream clients, then writes; closes the connection when
 * it is over. */
static void service(struct bl_h2_conn *h)
{
    struct bl_client *c = h->c;
    if (h->servicing) {
        h->again = 1;
        return;
    }
    h->servicing = 1;
    int rc = BL_OK;
    for (int round = 0; round < 64; round++) {
        h->again = 0;
        while (h->ready && !h->kill) {
            struct bl_h2_stream *st = h->ready;
            h->ready = st->ready_next;
            if (!h->ready)
                h->ready_tail = NULL;
            st->in_ready = 0;
            uint32_t ev = st->ev;
            st->ev = 0;
            if (st->vc) {
                if (ev & H2_EV_ABORT)
                    bl_client_stream_abort(st->vc, "client reset the HTTP/2 stream");
                else
                    st->vc->io.handler(&st->vc->io, ev);
            }
            /* st may be gone now if it was closed and its client ended */
            else
                stream_maybe_free(st);
        }
        rc = flush(h);
        if (rc == BL_ERR || (!h->ready && !h->again))
            break;
    }
    h->servicing = 0;
    if ((h->ready || h->again) && rc == BL_OK && !h->kill)
        kick(h); /* the round limit stopped it: go on after this batch (the socket bounds it) */
    const struct bl_loc_conf *conf = &c->listen->servers[0]->conf;
    if (rc == BL_ERR || (h->kill && rc == BL_OK) ||
        (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s) && rc == BL_OK) ||
        (h->goaway && h->nstreams == 0 && rc == BL_OK)) {
        bl_client_close(c);
        return;
    }
    if (rc == BL_AGAIN)
        bl_arm(c->w, &c->timer, conf->send_timeout);
    else if (h->nstreams == 0)
        bl_arm(c->w, &c->timer, conf->http2_idle_timeout ? conf->http2_idle_timeout
                                                          : conf->keepalive_timeout);
    else
        bl_timer_cancel(c->w->loop, &c->timer);
}

int bl_h2_start(struct bl_client *c, const char *data, size_t len)
{
    const struct bl_loc_conf *conf = &c->listen->servers[0]->conf;
    struct bl_h2_conn *h = calloc(1, sizeof(*h));
    if (!h)
        return BL_ERR;
    h->c = c;
    h->kick.run = kick_run;
    h->lchb_size = (uint32_t)conf->lchb_size;
    h->max_head = (uint32_t)(conf->lchb_number * conf->lchb_size);
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        free(h);
        return BL_ERR;
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        free(h);
        return BL_ERR;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback2(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_continuations(opt, 8);
    int rc = nghttp2_session_server_new2(&h->s, cb, h, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc != 0) {
        free(h);
        return BL_ERR;
    }
    c->h2c = h;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)conf->http2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, h->max_head},
    };
    nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, BL_ARRAY_LEN(iv));
    /* The connection window: large, given back as DATA arrives (streams bound memory). */
    nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, 1 << 30);
    if (len) {
        ssize_t n = nghttp2_session_mem_recv(h->s, (const uint8_t *)data, len);
        if (n < 0) {
            bl_log(BL_LOG_INFO, "client %s sent an invalid HTTP/2 preface (%s)", c->ip,
                   nghttp2_strerror((int)n));
            return BL_ERR;
        }
    }
    c->rready = 1; /* what came after the bytes already read */
    bl_h2_conn_event(c, BL_EV_READ);
    return BL_OK;
}

void bl_h2_conn_event(struct bl_client *c, uint32_t ev)
{
    struct bl_h2_conn *h = c->h2c;
    struct bl_http_worker *w = c->w;
    (void)ev; /* c->rready says it */
    if (c->rready && !h->kill) {
        uint64_t size = w->cfg->http_conf.http2_recv_buffer_size;
        if (size < 16384)
            size = 16384;
        if (!w->h2_rbuf) {
            if (!(w->h2_rbuf = malloc(sizeof(struct bl_buf) + size))) {
                bl_client_close(c);
                return;
            }
            w->h2_rbuf->cap = (uint32_t)size;
        }
        struct bl_buf *b = w->h2_rbuf;
        /* A bounded number of reads per event, so one client cannot hold the worker; the
         * rest is read on the next turn (a 1 ms timer, below: no new edge will come). */
        for (int i = 0; i < 16 && c->rready && !h->kill; i++) {
            b->start = b->end = 0;
            ssize_t n = bl_client_read(c, b);
            if (n == BL_AGAIN)
                break;
            if (n <= 0) {
                bl_client_close(c);
                return;
            }
            ssize_t k = nghttp2_session_mem_recv(h->s, (const uint8_t *)b->data, (size_t)n);
            if (k < 0) {
                if (!h->kill)
                    bl_log(BL_LOG_INFO, "client %s: HTTP/2 error (%s), closing the connection",
                           c->ip, nghttp2_strerror((int)k));
                bl_client_close(c);
                return;
            }
        }
    }
    int more = c->rready && !h->kill;
    service(h);
    if (more && c->h2c == h) /* still open */
        bl_arm(c->w, &c->timer, 1);
}

void bl_h2_conn_timer(struct bl_client *c)
{
    struct bl_h2_conn *h = c->h2c;
    if (c->rready && !h->kill) { /* input left by the read budget */
        bl_h2_conn_event(c, 0);
        return;
    }
    if (h->nstreams == 0) {
        /* idle: say goodbye, best effort, then close */
        nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h->s), NGHTTP2_NO_ERROR,
                              NULL, 0);
        flush(h);
    } else {
        bl_log(BL_LOG_INFO, "client %s timed out while receiving HTTP/2 frames", c->ip);
    }
    bl_client_close(c);
}

void bl_h2_goaway(struct bl_client *c)
{
    struct bl_h2_conn *h = c->h2c;
    if (!h || h->goaway)
        return;
    h->goaway = 1;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    kick(h);
}

void bl_h2_conn_free(struct bl_client *c)
{
    struct bl_h2_conn *h = c->h2c;
    if (!h)
        return;
    h->kill = 1;
    /* Stream clients end first (their requests are logged); no nghttp2 call is made for
     * them (h->kill). */
    for (struct bl_h2_stream *st = h->streams; st; st = st->next)
        st->closed = 1;
    struct bl_h2_stream *st = h->streams;
    while (st) {
        struct bl_h2_stream *next = st->next;
        if (st->vc)
            bl_client_stream_abort(st->vc, "HTTP/2 connection closed");
        st = next;
    }
    while (h->streams) {
        /* stream_free() unlinks the head it frees (st->h is h): the analyzer cannot see it */
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        h->streams->in_ready = 0;
        stream_free(h->streams);
    }
    h->ready = h->ready_tail = NULL;
    nghttp2_session_del(h->s);
    h->s = NULL;
    bl_buf_put(h->out);
    h->out = NULL;
    c->h2c = NULL;
    if (h->kick_queued)
        h->dead = 1; /* kick_run frees it */
    else
        free(h);
}
