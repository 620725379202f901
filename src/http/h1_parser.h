/* HTTP/1.x message-head parser and chunked-body scanner (RFC 9110 / RFC 9112).
 *
 * Contract
 * - Zero copy: every string in a parsed message is a slice of the caller's buffer. The caller
 *   keeps the bytes in place (same address) from the first call until it is done with the
 *   message; if it moves them it must call bl_h1_parser_init() again and parse from the start.
 * - Resumable at any byte: call bl_h1_parse() again with the same buffer grown by new bytes
 *   (same start address, larger len). The parser remembers how far it has scanned, so feeding
 *   a head one byte at a time costs O(total length), not O(n^2).
 * - Strict where ambiguity enables request smuggling. A head is refused (BL_ERR, with
 *   parser->error set to the HTTP status to answer) for: both Content-Length and
 *   Transfer-Encoding; several Content-Length values that differ; a Content-Length that is not
 *   a plain decimal number; a Transfer-Encoding whose final coding is not chunked, or with
 *   chunked twice; whitespace between a field name and the colon; obs-fold (a line starting
 *   with SP or HTAB); bare CR; bare LF (every line must end in CRLF); NUL or other control
 *   characters in a field value; a method or field name with a non-tchar byte; a request line
 *   not of the form `METHOD SP TARGET SP HTTP/1.x CRLF`; HTTP/1.1 without exactly one Host, or
 *   with more than one Host.
 *   Errors: 400 for all of the above; 414 when the request line exceeds max_line; 431 when a
 *   header line exceeds max_line, the head exceeds max_head, or there are more than
 *   BL_H1_MAX_HEADERS fields; 505 for a version other than HTTP/1.0 and HTTP/1.1; 501 for a
 *   Transfer-Encoding with a coding other than chunked before the final chunked.
 *   For responses the same checks apply and the caller turns any error into 502.
 * - Leading empty lines (CRLF) before a request line are skipped (RFC 9112 section 2.2).
 * - Thread-safe: no globals; a parser belongs to one connection.
 */
#ifndef BL_HTTP_H1_PARSER_H
#define BL_HTTP_H1_PARSER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BL_H1_MAX_HEADERS 100

/* Well-known fields, recognised case-insensitively while parsing so that later stages do not
 * compare names again. */
enum bl_h1_hdr_id {
    BL_H1_HDR_OTHER = 0,
    BL_H1_HDR_HOST,
    BL_H1_HDR_CONTENT_LENGTH,
    BL_H1_HDR_TRANSFER_ENCODING,
    BL_H1_HDR_CONNECTION,
    BL_H1_HDR_KEEP_ALIVE,
    BL_H1_HDR_PROXY_CONNECTION,
    BL_H1_HDR_TE,
    BL_H1_HDR_TRAILER,
    BL_H1_HDR_UPGRADE,
    BL_H1_HDR_EXPECT,
    BL_H1_HDR_X_FORWARDED_FOR,
    BL_H1_HDR_X_REAL_IP,
    BL_H1_HDR_X_FORWARDED_PROTO,
    /* Named so that the heads the proxy writes need no string compare for them (proxy_head.c):
     * the upstream's Date and Server are replaced, a client's traceparent and tracestate are
     * replaced while tracing. */
    BL_H1_HDR_DATE,
    BL_H1_HDR_SERVER,
    BL_H1_HDR_TRACEPARENT,
    BL_H1_HDR_TRACESTATE,
    BL_H1_HDR__COUNT
};

struct bl_h1_header {
    const char *name;
    const char *value;      /* optional whitespace around the value already trimmed */
    uint32_t value_len;
    uint16_t name_len;
    uint8_t id;             /* enum bl_h1_hdr_id */
    uint8_t hop;            /* 1: not forwarded: hop-by-hop (Connection, Keep-Alive,
                             * Proxy-Connection, TE, Trailer, Upgrade, or named in
                             * Connection), or a repeat of an equal Content-Length */
};

enum bl_h1_method {
    BL_H1_M_OTHER = 0,      /* any other valid token: forwarded as is */
    BL_H1_M_GET,
    BL_H1_M_HEAD,
    BL_H1_M_POST,
    BL_H1_M_PUT,
    BL_H1_M_DELETE,
    BL_H1_M_CONNECT,
    BL_H1_M_OPTIONS,
    BL_H1_M_TRACE,
    BL_H1_M_PATCH,
};

/* How the body that follows the head is delimited. */
enum bl_h1_body {
    BL_H1_BODY_NONE = 0,    /* no body (request without CL/TE; HEAD, 1xx, 204, 304 responses) */
    BL_H1_BODY_LENGTH,      /* exactly content_length bytes (may be 0) */
    BL_H1_BODY_CHUNKED,     /* chunked; scan it with bl_h1_chunked_scan() */
    BL_H1_BODY_CLOSE,       /* responses only: until the server closes */
};

/* bl_h1_message.flags */
#define BL_H1_F_CLOSE           0x01u  /* "Connection: close" seen */
#define BL_H1_F_KEEPALIVE       0x02u  /* "Connection: keep-alive" seen */
#define BL_H1_F_UPGRADE         0x04u  /* "Connection: upgrade" seen */
#define BL_H1_F_EXPECT_CONTINUE 0x08u  /* "Expect: 100-continue" (requests) */
#define BL_H1_F_ABSOLUTE_FORM   0x10u  /* request-target was absolute-form (http://host/...) */
#define BL_H1_F_TE_REWRITE      0x20u  /* Transfer-Encoding is not one plain "chunked" field:
                                        * send bl_h1_te_format()'s line in its place */
#define BL_H1_F_TE_CODINGS      0x40u  /* codings other than chunked came before it (gzip,
                                        * chunked): removing chunked alone leaves them on */

struct bl_h1_message {
    /* Request line (requests only). */
    const char *method;
    const char *target;     /* request-target as sent */
    const char *path;       /* origin-form path: target up to '?' (absolute-form: after host;
                             * the static string "/" when that part is empty) */
    const char *query;      /* after '?', without it; NULL when there is none */
    uint32_t method_len, target_len, path_len, query_len;
    uint8_t method_id;      /* enum bl_h1_method */

    /* Status line (responses only). */
    uint16_t status;        /* 100..599 */
    const char *reason;
    uint32_t reason_len;

    uint8_t minor_version;  /* 0 or 1 */
    uint8_t body;           /* enum bl_h1_body */
    uint8_t keep_alive;     /* persistent after this message: 1.1 without close, 1.0 with
                             * keep-alive */
    uint32_t flags;         /* BL_H1_F_* */
    uint64_t content_length;/* valid when body == BL_H1_BODY_LENGTH */

    const char *host;       /* Host field value (requests), or authority of an absolute-form
                             * target; NULL when absent (HTTP/1.0) */
    uint32_t host_len;

    uint32_t head_len;      /* bytes of the head including the final CRLF CRLF */
    uint16_t nheaders;
    /* Storage (not cleared by a new head): the fields go to the owner's array `own` (room
     * for own_room, bl_h1_message_init) while they fit, so that an owner sized for the usual
     * head need not carry room for BL_H1_MAX_HEADERS (a proxied request: 6512 -> 2720 bytes,
     * http/proxy_int.h); a head with more moves them to `heap`, room for BL_H1_MAX_HEADERS,
     * made on first need and kept for the next heads until bl_h1_message_free(). A zeroed
     * message has no array of its own: its first field makes the heap one. */
    uint16_t room;          /* fields headers[] has room for */
    uint16_t own_room;
    struct bl_h1_header *headers; /* own or heap */
    struct bl_h1_header *own;
    struct bl_h1_header *heap;
};

/* Gives m the array fields, room for n fields (n <= BL_H1_MAX_HEADERS; NULL, 0: none), before
 * its first parse. */
void bl_h1_message_init(struct bl_h1_message *m, struct bl_h1_header *fields, uint16_t n);
/* Frees the heap array a head with more fields than the owner's array made (m stays usable:
 * the next such head makes another). */
void bl_h1_message_free(struct bl_h1_message *m);

struct bl_h1_parser {
    uint32_t scanned;       /* bytes already checked; resume point */
    uint32_t max_line;      /* longest request/status line and header line */
    uint32_t max_head;      /* longest head in total */
    uint8_t is_response;
    uint8_t head_request;   /* responses: answer to a HEAD request (no body) */
    uint16_t error;         /* on BL_ERR: HTTP status (400, 414, 431, 501, 505) */
    const char *reason;     /* on BL_ERR: static text for logs, e.g. "bare LF in header" */
    /* private resumable state */
    uint32_t line_start;
    uint32_t head_start;
    uint8_t state;
};

/* Prepares p for a new request head. max_line and max_head are byte limits (> 0). */
void bl_h1_parser_init_request(struct bl_h1_parser *p, uint32_t max_line, uint32_t max_head);

/* Prepares p for a new response head to a request; head_request: the request was HEAD, so the
 * response has no body whatever its fields say. */
void bl_h1_parser_init_response(struct bl_h1_parser *p, uint32_t max_line, uint32_t max_head,
                                int head_request);

/* Parses the head at buf[0..len). Returns the head length (> 0) once the head is complete and
 * valid, with m filled in; BL_AGAIN when more bytes are needed (m is then unspecified, but it
 * holds the parse so far: pass the same m on every call for one head);
 * BL_ERR when the head is invalid (p->error, p->reason say why; 500 when no memory could be
 * had for more fields than the owner's array holds). Body framing (m->body,
 * m->content_length) follows RFC 9112 section 6.3. */
int bl_h1_parse(struct bl_h1_parser *p, const char *buf, size_t len, struct bl_h1_message *m);

/* The message's Transfer-Encoding fields as one canonical line, "Transfer-Encoding: gzip,
 * chunked\r\n" (empty elements dropped, "chunked" lowercased), for a message parsed with
 * BL_H1_F_TE_REWRITE. Returns the length; writes only when it fits in cap. */
size_t bl_h1_te_format(const struct bl_h1_message *m, char *out, size_t cap);

/* Name of the parser's current state, for logs. */
const char *bl_h1_parser_state_str(const struct bl_h1_parser *p);

/* Finds a field by id; returns its index in m->headers or -1. */
int bl_h1_find(const struct bl_h1_message *m, enum bl_h1_hdr_id id);

/* Scanner for a chunked body that is forwarded as is (framing kept). */
struct bl_h1_chunked {
    uint64_t remaining;     /* data bytes left in the current chunk */
    uint64_t data_bytes;    /* data bytes scanned so far (without framing) */
    uint32_t line_len;      /* length of the size or trailer line being scanned */
    uint8_t state;          /* private */
    uint8_t ntrailers;
    const char *reason;     /* on BL_ERR: static text for logs */
};

void bl_h1_chunked_init(struct bl_h1_chunked *c);

/* Scans buf[0..len), the next bytes of a chunked body. Returns how many bytes belong to the
 * body (<= len; fewer only when the body ends inside buf, the rest being the next message),
 * and sets *done = 1 once the last chunk and the trailer section are complete. Returns BL_ERR
 * on bad framing: a size that is not hex or overflows 2^62, a missing CRLF after chunk data,
 * a bare LF or CR, a size line or trailer line longer than 4096 bytes, more than 100 trailers,
 * control characters in extensions or trailers. Resumable at any byte. */
ssize_t bl_h1_chunked_scan(struct bl_h1_chunked *c, const char *buf, size_t len, int *done);

/* Data bytes of the current chunk still to come while the scanner is inside chunk data, 0
 * elsewhere (size line, CRLF, trailers, done): a relay may move that many bytes without
 * looking at them (splice) and report them with bl_h1_chunked_skip(). */
uint64_t bl_h1_chunked_data_left(const struct bl_h1_chunked *c);

/* Counts n data bytes, at most bl_h1_chunked_data_left(), as scanned. */
void bl_h1_chunked_skip(struct bl_h1_chunked *c, uint64_t n);

/* Name of the scanner's current state, for logs. */
const char *bl_h1_chunked_state_str(const struct bl_h1_chunked *c);

#endif
