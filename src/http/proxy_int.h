/* Internal to src/http: the connection and request records shared by the proxy state machine
 * (proxy.c) and local responses (local.c). Nothing outside src/http includes this; the
 * module's public face is proxy.h. All of it belongs to one worker thread.
 */
#ifndef BL_HTTP_PROXY_INT_H
#define BL_HTTP_PROXY_INT_H

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/loop.h"
#include "core/proxy_proto.h"
#include "core/sock.h"
#include "core/status.h"
#include "http/dechunk.h"
#include "http/h1_parser.h"
#include "http/h2.h"
#include "http/proxy_cache.h"
#include "http/template.h"
#include "http/tls.h"
#include "http/trace.h"
#include "http/tunnel.h"
#include "policy/limits.h"
#include "http/proxy.h"
#include "http/rewrite.h"
#include "upstream/attempt.h"

/* Client connection states. */
enum client_state {
    CS_IDLE = 0,      /* keep-alive, waiting for the first byte of a request; holds no buffer */
    CS_READ_HEAD,     /* reading a request head */
    CS_REQUEST,       /* a request is being served */
    CS_LINGER,        /* response sent, write side shut: draining input before close */
    CS_H2,            /* an HTTP/2 connection: its streams are stream clients (http/h2.h) */
    CS_CLOSED,
};

/* Request phases (bl_request.state, within CS_REQUEST), for logs and timeouts; the handlers
 * the phase sets in bl_request do its work (proxy.c, "request phases"). */
enum req_state {
    RS_CONNECT = 0,   /* waiting for the upstream connection to be established */
    RS_SEND_HEAD,     /* writing the request head (and the first body bytes) upstream */
    RS_BODY,          /* streaming the request body; the response may already be arriving */
    RS_WAIT_HEAD,     /* request sent, waiting for the response head */
    RS_RESPONSE,      /* streaming the response body to the client */
    RS_LOCAL,         /* writing a response made by ballast itself */
    RS_QUEUED,        /* waiting in the upstream group's queue for a free server */
    RS_DROP_BODY,     /* answered and logged; the unread request body is read and dropped
                       * before the connection takes its next request */
};

/* What a request does with W3C Trace Context (trace_propagation). */
enum bl_trace_state {
    BL_TRACE_NONE = 0,       /* trace_propagation off */
    BL_TRACE_CONTINUED,      /* a valid traceparent came: same trace, this hop's span */
    BL_TRACE_STARTED,        /* none or an invalid one came: a new trace starts here */
};

/* Upstream attempts a request remembers for the log ($upstream_addr ...). */
#define BL_LOG_TRIES 8

/* Header fields a request's head and its response's head keep inside the request object;
 * more go to a heap array of BL_H1_MAX_HEADERS that the object keeps while it is recycled
 * (http/h1_parser.h). Two inline arrays of 100 made the object 6512 bytes, of which a usual
 * request touches a few lines spread over two pages; it is 2720 now (memory per request in
 * flight; CPU per request did not move measurably: bench/RESULTS.md, "header fields"). 24
 * covers what browsers usually send; 16 what servers usually answer with. */
#define BL_REQ_FIELDS 24
#define BL_RESP_FIELDS 16

struct bl_request;
struct bl_pipe;

struct bl_client {
    struct bl_io io;
    struct bl_timer timer;
    struct bl_deferred defer;
    struct bl_http_worker *w;
    const struct bl_listen *listen;
    struct bl_buf *in;
    struct bl_request *req;
    struct ssl_st *tls;                /* NULL: plain TCP (the transport seam, proxy.c) */
    struct bl_h2_stream *h2;           /* a stream client: its transport is this HTTP/2
                                        * stream of its connection (bl_h2_stream_conn);
                                        * NULL otherwise */
    struct bl_h2_conn *h2c;            /* CS_H2: the connection's session */
    struct bl_client *prev, *next;     /* worker's list */
    uint32_t nrequests;
    uint16_t port;
    uint8_t state;                     /* enum client_state */
    uint8_t rready, wready, hup;
    uint8_t tls_want;                  /* BL_TLS_* bits (http/tls.h) */
    uint8_t tls_handshake;             /* the TLS handshake is not done yet */
    uint8_t pp_wait;                   /* listen ... proxy_protocol: the header has not come
                                        * yet (read before TLS and the request, proxy.c) */
    uint8_t ip_len;
    char ip[46];
    union bl_sockaddr addr;            /* the peer, as accepted (ip_hash reads it) */
    struct bl_pp_info *pp;             /* the PROXY header's addresses; NULL: none came (or
                                        * UNKNOWN / LOCAL) */
};

typedef int (*bl_req_handler)(struct bl_request *r);

struct bl_request {
    struct bl_client *c;
    /* What the current phase does on an event (proxy.c, "request phases"). */
    void (*client_handler)(struct bl_request *r, uint32_t ev); /* client readiness */
    bl_req_handler request_handler;    /* moves the request upstream; NULL once all sent */
    bl_req_handler response_handler;   /* moves the response to the client */
    const struct bl_server_block *srv;
    const struct bl_location *loc;
    struct bl_buf *out;                /* head being written (either direction) */
    uint32_t out_sent;
    uint32_t head_start, head_end;     /* request head in c->in */
    uint32_t body_sent;                /* next request-body byte to forward, in c->in */
    uint32_t body_end;                 /* end of request-body bytes in c->in */
    uint64_t req_left;                 /* Content-Length body: bytes not yet read */
    uint64_t resp_left;                /* Content-Length response body left to read */
    uint64_t body_bytes_sent;          /* response body bytes sent to the client */
    uint64_t bytes_in;                 /* request body bytes read (the head is head_end -
                                        * head_start) */
    uint64_t bytes_out;                /* response bytes sent to the client, head included */
    uint64_t start_us;
    int status;                        /* status sent to the client */
    uint8_t state;                     /* enum req_state */
    uint8_t req_body_done, resp_done, resp_started, resp_head_done;
    uint8_t keep_alive;                /* client connection stays open after this request */
    uint8_t up_reusable;               /* the response's framing lets the upstream connection
                                        * be reused */
    uint8_t continue_sent;
    uint8_t body_rewound;              /* body bytes already sent were overwritten in c->in */
    uint8_t error_page_done;           /* an error_page redirect happened: no second one */
    uint16_t discard_status;           /* answered once the unread body is dropped */
    int err_status;                    /* an error page being proxied: the status the client
                                        * gets instead of the upstream's (0: the upstream's) */
    const char *page_uri;              /* BL_LOCAL_PROXY: the page to redirect to (config) */
    uint8_t ntries;                    /* entries in tries[] */
    uint8_t request_id_len;            /* 0: request_id not made yet */
    uint8_t request_id_made;           /* request_id is ballast's (32 hex digits, not 0) */
    uint8_t trace_state;               /* enum bl_trace_state */
    uint8_t trace_flags;               /* traceparent flags sent upstream */
    uint8_t realip_done;               /* realip replaced c's address: realip_* hold the
                                        * peer's, given back when the request ends */
    uint8_t limit_req_done;            /* limit_req ran (once per request, as nginx) */
    uint8_t limit_req_status;          /* $limit_req_status: enum bl_limit_status */
    uint8_t limit_conn_status;         /* $limit_conn_status */
    uint32_t *inflight;                /* the max_inflight count entered, left at the end */
    struct bl_cache_req *cache;        /* proxy_cache: what the cache does for r
                                        * (http/proxy_cache.c); NULL without */
    uint8_t cache_status;              /* $upstream_cache_status: enum bl_cache_status */
    uint8_t cache_sink;                /* a background cache update: the upstream's answer
                                        * only fills the cache, the client was answered */
    struct bl_limit_held limit_held;   /* limit_conn counts, released at the end */
    struct bl_timer limit_timer;       /* limit_req's delay */
    const char *upath;                 /* path as matched: normalized (http/uri.h); allocated
                                        * when it is not msg.path */
    uint32_t upath_len;
    int file_fd;                       /* static file being sent, or -1 */
    uint64_t file_left;                /* bytes of the file (or of this part) still to send */
    uint64_t file_off;                 /* the next byte of the file to send */
    int64_t file_mtime;                /* the file's (expires modified); 0: no file */
    struct bl_static_parts *parts;     /* multipart/byteranges being sent (static.c), or NULL */
    struct bl_autoindex *listing;      /* a directory listing being sent (autoindex.h), or
                                        * NULL */
    struct bl_buf *file_in;            /* a compressed file's bytes on their way to r->gz */
    struct bl_timer file_timer;        /* a long file yields to the other connections */
    struct bl_rw_state rw;             /* captures, rewritten URI and arguments, set variables,
                                        * return (rewrite.c) */
    struct bl_attempt a;               /* the upstream side: server, connection, retries */
    struct bl_queue_waiter qwait;      /* RS_QUEUED: its place in the group's queue */
    struct bl_tunnel tun;              /* after a 101: the byte tunnel (tunnel.c) */
    struct bl_h1_parser parser;
    struct bl_h1_chunked req_chunked, resp_chunked;
    struct bl_dechunk dechunk;         /* chunked response to an HTTP/1.0 client */
    uint8_t dechunking;
    uint8_t gz_vary;                   /* gzip_vary: the client head gets Vary: Accept-Encoding */
    struct bl_gzip *gz;                /* the response body is compressed (http/gzip.h) */
    struct bl_pipe *pipe;              /* the response body is spliced upstream -> pipe ->
                                        * client (core/pipe.h; proxy.c relay_splice) */
    uint8_t no_splice;                 /* the body is not spliced (a filter needs its bytes,
                                        * or no pipe could be had) */
    uint8_t splice_cut;                /* the upstream closed (1) or failed (2) mid-body: the
                                        * pipe's bytes go to the client, then r is aborted */
    struct bl_pipe *req_pipe;          /* the request body is spliced client -> pipe ->
                                        * upstream (proxy.c upload_splice) */
    uint8_t no_req_splice;             /* the request body is not spliced */
    struct bl_h1_message msg;
    struct bl_h1_header msg_fields[BL_REQ_FIELDS];   /* msg's own array */
    struct bl_h1_message resp;
    struct bl_h1_header resp_fields[BL_RESP_FIELDS]; /* resp's own array */
    /* Not cleared when a request starts: valid up to ntries / request_id_len. */
    uint64_t try_start_us;             /* when tries[ntries - 1] began */
    struct bl_upstream_try tries[BL_LOG_TRIES]; /* $upstream_*: one per attempt; past
                                        * BL_LOG_TRIES the last entry is the latest attempt */
    char request_id[BL_REQUEST_ID_MAX]; /* $request_id (not NUL-terminated) */
    char trace_id[32];                 /* trace_state != BL_TRACE_NONE: the trace, */
    char span_id[16];                  /* this hop's span (the parent-id sent upstream), */
    char parent_id[16];                /* the client's span (BL_TRACE_CONTINUED) */
    char realip_ip[46];                /* realip_done: the connection's own address */
    uint8_t realip_ip_len;
    uint16_t realip_port;
    union bl_sockaddr realip_addr;
};

/* ---- proxy.c */

/* "connect", "send_head", ... for logs. */
const char *bl_req_state_str(int state);

/* I/O on the request's connections, for tunnel.c: bytes (> 0), 0 at EOF (reads), BL_AGAIN, or
 * BL_ERR with errno; a short read or write clears *ready. The client's and the upstream's go
 * through their transports (plain or TLS). */
ssize_t bl_fd_writev(int fd, struct iovec *iov, int n, uint8_t *ready);
ssize_t bl_client_read(struct bl_client *c, struct bl_buf *b);
ssize_t bl_upstream_read(struct bl_upconn *u, struct bl_buf *b);
ssize_t bl_upstream_writev(struct bl_upconn *u, struct iovec *iov, int n);
ssize_t bl_client_writev(struct bl_client *c, struct iovec *iov, int n);
/* Ends r as done: logged, its upstream connection closed unless reusable, the client
 * connection kept or closed as r->keep_alive says. */
void bl_request_end(struct bl_request *r);

/* For http/proxy_cache.c: r is answered with what local.c (or the cache) put in r->out and
 * r->file_fd (rc as bl_local_response() returns); r goes upstream (its content phase's proxy
 * step); r ends early with status (0: closed); the client handler of a request that waits. */
void bl_request_local_done(struct bl_request *r, int rc);
void bl_request_proxy(struct bl_request *r);
void bl_request_abort(struct bl_request *r, int status, const char *why);
void bl_request_wait_client(struct bl_request *r, uint32_t ev);

/* For local.c and static.c: r is answered by ballast itself while its body is still unread.
 * The connection stays when that body can be read and dropped (Content-Length, at most 1 MiB
 * left, no 100-continue awaited, HTTP/1.x): it is, while and after the answer goes, as nginx
 * discards it; otherwise r->keep_alive is cleared and the answer says Connection: close. */
void bl_request_unread_body(struct bl_request *r);

/* For http/h2.c. A stream client of connection p for stream st, its request head in head
 * (taken; freed with the client); it starts when its handler gets an event. NULL when out of
 * memory (head is then the caller's). */
struct bl_client *bl_client_new_stream(struct bl_client *p, struct bl_h2_stream *st,
                                       struct bl_buf *head);
/* The client reset stream client c's stream, or its connection is going: the request ends
 * (logged 499 when nothing was answered) and c is freed. */
void bl_client_stream_abort(struct bl_client *c, const char *why);
/* Closes a connection (client_close). */
void bl_client_close(struct bl_client *c);

/* ---- proxy_head.c: the heads the proxy writes, into r->out (out_sent 0). BL_OK, or BL_ERR
 * when the head does not fit in the buffer. */

/* The request head for the upstream (r->a.server is the attempt's server). */
int bl_proxy_upstream_head(struct bl_request *r);
/* The client's head for the upstream's response head in r->resp. */
int bl_proxy_client_head(struct bl_request *r);
/* The location's add_header lines for a response with status, written to buf: the length,
 * 0 for none, more than cap when they do not fit. */
size_t bl_add_headers(const struct bl_request *r, int status, char *buf, size_t cap);

/* ---- local.c: responses ballast makes itself, produced into r, never sent from there.
 * Each leaves the head in r->out (from out_sent 0) with a small body after it, or a file's
 * body to come in r->file_fd / r->file_left, and sets r->status, r->body_bytes_sent and
 * r->keep_alive (cleared when the unread request body forbids keep-alive). They return BL_OK,
 * or BL_ERR when no buffer could be had: the caller answers with a static 503 and closes. */

/* Status with body (NULL: a page naming the status) or a redirect to location. A 4xx/5xx
 * that an error_page names is redirected internally first. */
int bl_local_response(struct bl_request *r, int status, const char *body, size_t len,
                      const char *location, size_t location_len);
/* The answer of a disabled location (`disable`, or the admin API's switch): its text, its
 * page, or its status through error_page. */
int bl_local_disabled(struct bl_request *r);
/* Whether an error_page of r's location names status and none was followed yet
 * (proxy_intercept_errors asks before it drops an upstream answer). */
int bl_local_error_page_for(const struct bl_request *r, int status);
/* A location that does not proxy: return, root (files), or nothing (404). BL_LOCAL_REDIRECT:
 * try_files found nothing and names a fallback (r->loc->try_fallback), for bl_rw_redirect(). */
int bl_local_serve(struct bl_request *r);
#define BL_LOCAL_REDIRECT 1
/* From bl_local_response() (and the functions that call it): the error page's location
 * proxies; the caller redirects to r->page_uri and proxies it as a GET, the client's status
 * becoming r->err_status unless that is 0. */
#define BL_LOCAL_PROXY 2
/* A return location whose return did not run (a break came first): as nginx, its files under
 * root, or 404. */
int bl_local_serve_skipped_return(struct bl_request *r);
/* The return or redirect the rewrite directives chose (r->rw.ret_code). */
int bl_local_return(struct bl_request *r);

/* ---- static.c: files under root or alias (docs/static.md) */

struct bl_static_parts;
struct bl_autoindex;

/* Answers r with the file that loc maps path to, with status (200, or an error page's): its
 * head in r->out and its body to come through bl_static_next(), or the error, redirect or 304
 * nginx's static, index, range and not_modified modules answer. Same results as
 * bl_local_serve() (BL_LOCAL_REDIRECT: try_files' fallback). */
int bl_static_serve(struct bl_request *r, const struct bl_location *loc, const char *path,
                    size_t len, int status);
/* r->out is sent and r->file_fd is open: moves the body on. BL_OK: more went or waits in
 * r->out; BL_STATIC_DONE: the body is complete; BL_AGAIN: the client socket is full (sendfile);
 * BL_ERR: the file failed or shrank (logged, keep_alive cleared: the response is cut). */
int bl_static_next(struct bl_request *r);
#define BL_STATIC_DONE 1
/* Frees what a file response holds beyond file_fd (multipart state, gzip's input). */
void bl_static_free(struct bl_request *r);
/* The expires lines (Expires, Cache-Control) of r's location for a response with status,
 * written to buf: the length, 0 for none (expires off, or a status it does not apply to). */
size_t bl_static_expires(const struct bl_request *r, int status, char *buf, size_t cap);

/* ---- rewrite.c: nginx's rewrite phases and internal redirects */

/* Server rewrites, the location search for r->upath, the location's rewrites, again after
 * `rewrite ... last`. BL_OK: r->loc is set, and r->rw.ret_code when a return or redirect
 * answers. BL_ERR: answer *status (500: a redirect cycle or a regex error, logged; 503: out of
 * memory). */
int bl_rw_route(struct bl_request *r, int *status);
/* An internal redirect to uri ("/path[?args]", or "@name"): error_page, try_files. Same
 * results as bl_rw_route(). */
int bl_rw_redirect(struct bl_request *r, const char *uri, size_t len, int *status);
/* The bl_var_ctx.user_var hook: set variables, then named captures. */
const char *bl_rw_user_var(const struct bl_var_ctx *ctx, uint32_t idx, const char *name,
                           size_t name_len, size_t *len);
/* Frees what routing allocated for r. */
void bl_rw_free(struct bl_request *r);

/* ---- preaccess.c: limit_req, limit_conn, allow/deny, max_inflight */

/* Runs them for r (whose routing is done) in nginx's order, each once per request. BL_OK: go
 * on; BL_AGAIN: limit_req delays r by *delay_ms, call again then; BL_ERR: answer *status. */
int bl_http_preaccess(struct bl_request *r, int *status, uint64_t *delay_ms);
/* Gives back what r holds (connection counts, in-flight count, the delay timer). */
void bl_http_preaccess_end(struct bl_request *r);

/* ---- helpers */

/* Variables of r for templates. */
static inline void bl_request_var_ctx(const struct bl_request *r, struct bl_var_ctx *v)
{
    v->req = &r->msg;
    v->uri = r->upath;
    v->uri_len = r->upath_len;
    v->client_ip = r->c->ip;
    v->client_ip_len = r->c->ip_len;
    v->client_port = r->c->port;
    v->realip_remote_addr = r->realip_done ? r->realip_ip : r->c->ip;
    v->realip_remote_addr_len = r->realip_done ? r->realip_ip_len : r->c->ip_len;
    v->server_port = r->c->listen->port;
    v->fd = r->c->io.fd;
    /* proxy_pass http://$var: the group the value named, once a server is picked */
    v->proxy_host = !r->loc                              ? NULL
                    : r->loc->proxy_host_tpl && r->a.server ? r->a.server->group->name
                                                           : r->loc->proxy_host;
    v->proxy_port = r->loc ? r->loc->proxy_port : NULL;
    v->request_id = r->request_id;
    v->request_id_len = r->request_id_len;
    v->connection_requests = r->c->nrequests;
    v->server_name = r->srv && r->srv->nnames ? r->srv->names[0] : NULL;
    v->trace_id = r->trace_state ? r->trace_id : NULL;
    v->span_id = r->trace_state ? r->span_id : NULL;
    v->parent_id = r->trace_state == BL_TRACE_CONTINUED ? r->parent_id : NULL;
    v->raw_line = NULL;
    v->raw_line_len = 0;
    v->resp = NULL;
    v->cap = &r->rw.cap;
    v->user_var = bl_rw_user_var;
    v->user_arg = r;
    v->args = r->rw.args;
    v->args_len = r->rw.args_len;
    v->args_set = r->rw.args_set;
    v->limit_req_status = bl_limit_status_str(r->limit_req_status);
    v->limit_conn_status = bl_limit_status_str(r->limit_conn_status);
    v->upstream_cache_status = bl_cache_status_str(r->cache_status);
    const struct ssl_st *tls = r->c->h2 ? bl_h2_stream_conn(r->c)->tls : r->c->tls;
    v->http2 = r->c->h2 ? (tls ? "h2" : "h2c") : NULL;
    if (tls) {
        v->ssl_protocol = bl_tls_protocol(tls);
        v->ssl_cipher = bl_tls_cipher(tls);
        v->ssl_server_name = bl_tls_server_name(tls);
        v->ssl_client_var = bl_tls_client_var;
        v->tls = tls;
    } else {
        v->ssl_protocol = v->ssl_cipher = v->ssl_server_name = NULL;
        v->ssl_client_var = NULL;
        v->tls = NULL;
    }
    v->pp = r->c->pp;
}

static inline void bl_arm(struct bl_http_worker *w, struct bl_timer *t, uint64_t ms)
{
    bl_timer_set(w->loop, t, bl_clock_ms + (ms ? ms : 1));
}

#endif
