/* HTTP/2 to clients (RFC 9113), on Debian's libnghttp2: framing, HPACK and flow-control
 * bookkeeping are nghttp2's; this module maps streams onto ballast's HTTP/1.1 request path.
 *
 * Design (why it looks like this). Each stream gets a *stream client*: a struct bl_client of its
 * own, whose transport is the stream instead of a socket (c->h2 set; bl_h2_stream_conn() gives the
 * connection). The HEADERS frame is turned into an HTTP/1.1 request head (request line from
 * :method and :path, Host from :authority, cookies joined, a chunked body when the client gave no
 * content-length) placed in the stream client's input buffer; from there the existing path runs
 * unchanged: the h1 parser, routing, rewrites, realip, balancing, retries, failover, local
 * responses, error_page and the access log. bl_client_read() on a stream client gives the DATA
 * bytes; bl_client_writev() takes the HTTP/1.1 response the proxy writes, whose head becomes a
 * HEADERS frame (hop-by-hop fields dropped, names lowercased) and whose body (the proxy strips
 * chunked framing for stream clients) goes out as DATA through nghttp2's data provider. The
 * HTTP/1.1 path pays one extra test of c->h2 in its transport seam, nothing else. The price of the
 * design is one re-parse of a head ballast built itself, per stream.
 *
 * Flow control is back-pressure, both ways, with bounded memory per stream:
 *   - request bodies: automatic WINDOW_UPDATE is off; a stream's window is 64 KiB (one
 *     buffer, HTTP/2's default window) and is re-opened only as the proxy forwards the bytes upstream
 *     (nghttp2_session_consume_stream); the connection window is consumed at once, so a stream
 *     whose upstream is slow never stalls the others.
 *   - responses: a stream holds at most one buffer of response bytes; a full buffer makes the
 *     stream client's write short (wready cleared), so the proxy stops reading that upstream
 *     until the client's window lets nghttp2 take the bytes.
 *
 * Events for stream clients raised inside nghttp2's callbacks are queued and delivered after
 * nghttp2 returns (never re-entering it); output is gathered into one buffer and written once
 * per turn. Abuse bounds: max concurrent streams and header-list size are SETTINGS nghttp2
 * enforces with ours; a stream's decoded header list past 4x large_client_header_buffers (an
 * HPACK bomb) and a client that resets most of the streams it opens (CVE-2023-44487 rapid
 * reset) get GOAWAY and the connection closed, logged at info; nghttp2 bounds CONTINUATION
 * runs, SETTINGS/PING floods and the reset rate.
 *
 * All functions run on the worker thread that owns the connection.
 */
#ifndef BL_HTTP_H2_H
#define BL_HTTP_H2_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct bl_buf;
struct bl_client;
struct bl_h2_conn;
struct bl_h2_stream;

/* The client connection preface; a plain HTTP/2 listener recognizes it as h2c with prior
 * knowledge. */
#define BL_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define BL_H2_PREFACE_LEN 24

/* ---- the connection (called by proxy.c for a client in CS_H2) */

/* Makes c an HTTP/2 connection: sends SETTINGS, then feeds data[len] (bytes already read, the
 * preface included; none after ALPN). BL_OK, or BL_ERR (out of memory or a bad first flight:
 * logged; the caller closes c). */
int bl_h2_start(struct bl_client *c, const char *data, size_t len);
/* Readiness on the connection's socket. May close c. */
void bl_h2_conn_event(struct bl_client *c, uint32_t ev);
/* c's timer fired (idle, or output blocked past send_timeout). Closes c. */
void bl_h2_conn_timer(struct bl_client *c);
/* Graceful stop or reload: GOAWAY; c closes once its open streams are done. */
void bl_h2_goaway(struct bl_client *c);
/* c is closing (client_close): aborts its streams' requests and frees the session. */
void bl_h2_conn_free(struct bl_client *c);

/* ---- a stream client's transport (proxy.c's seam), same contracts as the socket's */

/* Request body bytes into b: > 0, 0 at the end of the stream, BL_AGAIN (c->rready cleared). */
ssize_t bl_h2_stream_read(struct bl_client *c, struct bl_buf *b);
/* Response bytes (an HTTP/1.1 head, then the body): bytes taken (> 0), BL_AGAIN (the stream's
 * buffer is full; c->wready cleared) or BL_ERR (the stream is gone). */
ssize_t bl_h2_stream_writev(struct bl_client *c, const struct iovec *iov, int n);
/* The connection client whose stream c (a stream client: c->h2 set) is. */
struct bl_client *bl_h2_stream_conn(const struct bl_client *c);
/* The stream client is done: complete, the response ended (END_STREAM after its bytes);
 * otherwise the stream is reset. c->h2 is cleared. */
void bl_h2_stream_detach(struct bl_client *c, int complete);

#endif
