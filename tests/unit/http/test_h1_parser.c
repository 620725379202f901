/* Unit tests for the HTTP/1.x head parser and chunked scanner: valid and invalid corpora, each
 * fed whole, cut at every byte, and one byte at a time. `test_h1_parser --bench` times a parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "http/h1_parser.c"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

/* Under ASan, the bytes the parser has not been given are poisoned, so reading past len (or
 * before buf, for the chunked scanner) is caught. */
static void poison(const char *p, size_t n)
{
#ifdef __SANITIZE_ADDRESS__
    ASAN_POISON_MEMORY_REGION(p, n);
#else
    (void)p;
    (void)n;
#endif
}

static void unpoison(const char *p, size_t n)
{
#ifdef __SANITIZE_ADDRESS__
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
    (void)p;
    (void)n;
#endif
}

/* Where we are, printed when an assertion fails (cmocka prints both values and the line). */
static char where[160];

#define EXPECT_INT(a, b)                                                                       \
    do {                                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                                    \
        if (a_ != b_)                                                                          \
            print_error("  at: %s\n", where);                                                  \
        assert_int_equal(a_, b_);                                                              \
    } while (0)

#define EXPECT_PTR(a, b)                                                                       \
    do {                                                                                       \
        const void *a_ = (a), *b_ = (b);                                                       \
        if (a_ != b_)                                                                          \
            print_error("  at: %s\n", where);                                                  \
        assert_ptr_equal(a_, b_);                                                              \
    } while (0)

/* A slice equals a C string; NULL expects a NULL slice. */
static void expect_slice(const char *what, const char *s, uint32_t n, const char *want)
{
    if (!want) {
        if (s)
            print_error("  at: %s (%s should be NULL)\n", where, what);
        assert_null(s);
        return;
    }
    if (!s) {
        print_error("  at: %s (%s is NULL)\n", where, what);
        fail();
        return;
    }
    char got[512];
    snprintf(got, sizeof(got), "%.*s", (int)n, s);
    if (strlen(want) != n || memcmp(s, want, n) != 0)
        print_error("  at: %s (%s)\n", where, what);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
}

/* ------------------------------------------------------------------------------------------ */
/* Head corpus */

struct req_case {
    const char *name;
    const char *msg;             /* the head (valid cases) or the whole input (invalid ones) */
    size_t len;
    const char *tail;            /* bytes after the head: a body, the next message */
    char *(*gen)(size_t *len);   /* builds msg instead (long or many-field heads) */
    int response, head_request;
    uint32_t max_line, max_head; /* 0: 8192 / 65536 */
    int error;                   /* 0: valid; else the expected p->error */
    /* valid cases: */
    const char *method, *path, *query, *host, *reason;
    uint8_t method_id, minor, body, keep_alive;
    uint16_t status;
    uint32_t flags;
    uint64_t cl;
    int nheaders;
    void (*check)(const struct bl_h1_message *m);
};

#define MSG(s) .msg = (s), .len = sizeof(s) - 1

static const struct bl_h1_header *hdr(const struct bl_h1_message *m, const char *name)
{
    for (unsigned k = 0; k < m->nheaders; k++)
        if (m->headers[k].name_len == strlen(name) &&
            strncasecmp(m->headers[k].name, name, m->headers[k].name_len) == 0)
            return &m->headers[k];
    return NULL;
}

/* -- custom checks -- */

/* Fast paths of the parser (bench/README.md, "Profile"): the 16-byte runs and the overlapping
 * load of a buffer's last bytes must find the same ends as the byte loop would. */
static void check_vector_edges(const struct bl_h1_message *m)
{
    expect_slice("name crossing 16 bytes", m->headers[1].name, m->headers[1].name_len,
                 "X-A-Rather-Long-Header-Name");
    expect_slice("its value", m->headers[1].value, m->headers[1].value_len,
                 "0123456789abcdef0123456789abcdef\x80\xff|~");
    expect_slice("name with '_' after 16 letters", m->headers[2].name, m->headers[2].name_len,
                 "Abcdefghijklmnop_q");
    expect_slice("its value, OWS around", m->headers[2].value, m->headers[2].value_len,
                 "a \t b");
    expect_slice("no SP after colon", m->headers[3].value, m->headers[3].value_len, "v");
    expect_slice("empty value", m->headers[4].value, m->headers[4].value_len, "");
    expect_slice("last name, near the end", m->headers[5].name, m->headers[5].name_len, "A_b");
    expect_slice("its value", m->headers[5].value, m->headers[5].value_len, "c");
}

static void check_new_ids(const struct bl_h1_message *m)
{
    static const uint8_t want[] = {BL_H1_HDR_DATE, BL_H1_HDR_SERVER, BL_H1_HDR_TRACEPARENT,
                                   BL_H1_HDR_TRACESTATE, BL_H1_HDR_OTHER, BL_H1_HDR_OTHER,
                                   BL_H1_HDR_OTHER, BL_H1_HDR_OTHER, BL_H1_HDR_OTHER,
                                   BL_H1_HDR_HOST, BL_H1_HDR_EXPECT, BL_H1_HDR_TRAILER,
                                   BL_H1_HDR_KEEP_ALIVE, BL_H1_HDR_CONTENT_LENGTH};
    assert_int_equal(m->nheaders, sizeof(want));
    for (unsigned k = 0; k < sizeof(want); k++) {
        snprintf(where, sizeof(where), "field %u (%.*s)", k, (int)m->headers[k].name_len,
                 m->headers[k].name);
        EXPECT_INT(m->headers[k].id, want[k]);
    }
}

static void check_connection_option(const struct bl_h1_message *m)
{
    assert_int_equal(m->headers[1].hop, 1); /* keep_alive is an option naming a field */
    assert_int_equal(m->headers[2].hop, 1);
}

static void check_cl_list_narrowed(const struct bl_h1_message *m)
{
    expect_slice("Content-Length", m->headers[1].value, m->headers[1].value_len, "5");
    assert_int_equal(m->headers[1].hop, 0);
    assert_int_equal(m->headers[2].hop, 1); /* the repeat is not forwarded */
}

static void check_te_canonical(const struct bl_h1_message *m)
{
    char line[64];
    size_t n = bl_h1_te_format(m, line, sizeof(line));
    expect_slice("Transfer-Encoding line", line, n, "Transfer-Encoding: gzip, chunked\r\n");
    assert_int_equal(bl_h1_te_format(m, line, 4), n); /* length even when it does not fit */
}

static void check_basic_fields(const struct bl_h1_message *m)
{
    assert_int_equal(m->headers[0].id, BL_H1_HDR_HOST);
    expect_slice("Host", m->headers[0].value, m->headers[0].value_len, "example.com");
    assert_int_equal(m->headers[0].hop, 0);
    assert_int_equal(m->headers[1].id, BL_H1_HDR_OTHER);
    expect_slice("User-Agent", m->headers[1].value, m->headers[1].value_len, "curl/8.0");
    assert_int_equal(bl_h1_find(m, BL_H1_HDR_HOST), 0);
    assert_int_equal(bl_h1_find(m, BL_H1_HDR_CONTENT_LENGTH), -1);
}

static void check_ows(const struct bl_h1_message *m)
{
    expect_slice("A", hdr(m, "A")->value, hdr(m, "A")->value_len, "a b");
    expect_slice("B", hdr(m, "B")->value, hdr(m, "B")->value_len, "");
    expect_slice("C", hdr(m, "C")->value, hdr(m, "C")->value_len, "");
    expect_slice("D", hdr(m, "D")->value, hdr(m, "D")->value_len, "x\t y");
    expect_slice("E", hdr(m, "E")->value, hdr(m, "E")->value_len, "\x80\xff");
}

static void check_hop(const struct bl_h1_message *m)
{
    /* X-Foo appears before and after Connection; both are hop-by-hop. */
    unsigned foo = 0;
    for (unsigned k = 0; k < m->nheaders; k++) {
        const struct bl_h1_header *h = &m->headers[k];
        if (h->name_len == 5 && strncasecmp(h->name, "x-foo", 5) == 0) {
            assert_int_equal(h->hop, 1);
            foo++;
        }
    }
    assert_int_equal(foo, 2);
    assert_int_equal(hdr(m, "X-Bar")->hop, 1);
    assert_int_equal(hdr(m, "X-Keep")->hop, 0);
    assert_int_equal(hdr(m, "Host")->hop, 0);
    assert_int_equal(hdr(m, "Connection")->hop, 1);
    assert_int_equal(hdr(m, "Upgrade")->hop, 1);
    assert_int_equal(hdr(m, "Keep-Alive")->hop, 1);
    assert_int_equal(hdr(m, "Proxy-Connection")->hop, 1);
    assert_int_equal(hdr(m, "TE")->hop, 1);
    assert_int_equal(hdr(m, "Trailer")->hop, 1);
}

static void check_hop_protected(const struct bl_h1_message *m)
{
    assert_int_equal(hdr(m, "Content-Length")->hop, 0);
    assert_int_equal(hdr(m, "Host")->hop, 0);
    assert_int_equal(hdr(m, "X-Real-IP")->hop, 1);
}

static void check_ids(const struct bl_h1_message *m)
{
    static const struct { const char *name; uint8_t id; } want[] = {
        {"hOsT", BL_H1_HDR_HOST},
        {"content-LENGTH", BL_H1_HDR_CONTENT_LENGTH},
        {"CONNECTION", BL_H1_HDR_CONNECTION},
        {"keep-alive", BL_H1_HDR_KEEP_ALIVE},
        {"Proxy-Connection", BL_H1_HDR_PROXY_CONNECTION},
        {"te", BL_H1_HDR_TE},
        {"Trailer", BL_H1_HDR_TRAILER},
        {"UPGRADE", BL_H1_HDR_UPGRADE},
        {"Expect", BL_H1_HDR_EXPECT},
        {"X-Forwarded-For", BL_H1_HDR_X_FORWARDED_FOR},
        {"x-real-ip", BL_H1_HDR_X_REAL_IP},
        {"X-FORWARDED-PROTO", BL_H1_HDR_X_FORWARDED_PROTO},
        {"Hosts", BL_H1_HDR_OTHER},
        {"Content-Lengths", BL_H1_HDR_OTHER},
        {"X-Forwarded-Prot0", BL_H1_HDR_OTHER},
        {"Transfer-Encodinf", BL_H1_HDR_OTHER},
    };
    assert_int_equal(m->nheaders, BL_ARRAY_LEN(want));
    for (unsigned k = 0; k < BL_ARRAY_LEN(want); k++) {
        snprintf(where, sizeof(where), "header %s", want[k].name);
        expect_slice("name", m->headers[k].name, m->headers[k].name_len, want[k].name);
        EXPECT_INT(m->headers[k].id, want[k].id);
    }
}

static void check_te_hdr(const struct bl_h1_message *m)
{
    assert_int_equal(m->headers[1].id, BL_H1_HDR_TRANSFER_ENCODING);
    assert_int_equal(m->headers[1].hop, 0);
}

/* -- generated heads -- */

static char *gen_fields(size_t *len, unsigned extra, const char *prefix)
{
    size_t cap = 64 + extra * 32 + strlen(prefix);
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "%s", prefix);
    for (unsigned k = 0; k < extra; k++)
        n += (size_t)snprintf(s + n, cap - n, "X-Field-%03u: value %u\r\n", k, k);
    n += (size_t)snprintf(s + n, cap - n, "\r\n");
    *len = n;
    return s;
}

static char *gen_100_fields(size_t *len)
{
    return gen_fields(len, 99, "GET /many HTTP/1.1\r\nHost: h\r\n");
}

static char *gen_101_fields(size_t *len)
{
    return gen_fields(len, 100, "GET /many HTTP/1.1\r\nHost: h\r\n");
}

static char *gen_100_fields_response(size_t *len)
{
    return gen_fields(len, 99, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
}

static char *gen_101_fields_response(size_t *len)
{
    return gen_fields(len, 101, "HTTP/1.1 200 OK\r\n");
}

static char *gen_long_cookie(size_t *len)
{
    /* one 6000-byte value: fits the default max_line */
    size_t cap = 6200;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\nHost: h\r\nCookie: ");
    for (unsigned k = 0; k < 6000; k++)
        s[n++] = (char)('a' + k % 26);
    memcpy(s + n, "\r\n\r\n", 4);
    *len = n + 4;
    return s;
}

static const struct req_case req_valid[] = {
    {.name = "GET origin-form",
     MSG("GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/index.html", .host = "example.com",
     .minor = 1, .body = BL_H1_BODY_NONE, .keep_alive = 1, .nheaders = 2,
     .check = check_basic_fields},
    {.name = "GET with query",
     MSG("GET /search?q=a+b&x=%20 HTTP/1.1\r\nHost: h:8080\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/search", .query = "q=a+b&x=%20",
     .host = "h:8080", .minor = 1, .keep_alive = 1, .nheaders = 1},
    {.name = "empty query, second '?' stays in the query",
     MSG("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n"), .method = "GET", .method_id = BL_H1_M_GET,
     .path = "/p", .query = "", .host = "h", .minor = 1, .keep_alive = 1, .nheaders = 1},
    {.name = "query with '?'", MSG("GET /p?a?b HTTP/1.1\r\nHost: h\r\n\r\n"), .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/p", .query = "a?b", .host = "h", .minor = 1,
     .keep_alive = 1, .nheaders = 1},
    {.name = "POST with Content-Length",
     MSG("POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"), .tail = "hello",
     .method = "POST", .method_id = BL_H1_M_POST, .path = "/api", .host = "h", .minor = 1,
     .body = BL_H1_BODY_LENGTH, .cl = 5, .keep_alive = 1, .nheaders = 2},
    {.name = "Content-Length: 0", MSG("PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
     .method = "PUT", .method_id = BL_H1_M_PUT, .path = "/x", .host = "h", .minor = 1,
     .body = BL_H1_BODY_LENGTH, .cl = 0, .keep_alive = 1, .nheaders = 2},
    {.name = "Content-Length list of equal values",
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n"),
     .tail = "hello", .method = "POST", .method_id = BL_H1_M_POST, .path = "/", .host = "h",
     .minor = 1, .body = BL_H1_BODY_LENGTH, .cl = 5, .keep_alive = 1, .nheaders = 3,
     .check = check_cl_list_narrowed},
    {.name = "gzip before chunked: framed by the final chunked (RFC 9112 6.1)",
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip , Chunked\r\n\r\n"),
     .method = "POST", .method_id = BL_H1_M_POST, .path = "/", .host = "h", .minor = 1,
     .body = BL_H1_BODY_CHUNKED, .keep_alive = 1, .nheaders = 2,
     .flags = BL_H1_F_TE_REWRITE | BL_H1_F_TE_CODINGS, .check = check_te_canonical},
    {.name = "gzip before chunked over two fields",
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
         "Transfer-Encoding: chunked\r\n\r\n"),
     .method = "POST", .method_id = BL_H1_M_POST, .path = "/", .host = "h", .minor = 1,
     .body = BL_H1_BODY_CHUNKED, .keep_alive = 1, .nheaders = 3,
     .flags = BL_H1_F_TE_REWRITE | BL_H1_F_TE_CODINGS, .check = check_te_canonical},
    {.name = "chunked with an empty list element is rewritten",
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n"),
     .method = "POST", .method_id = BL_H1_M_POST, .path = "/", .host = "h", .minor = 1,
     .body = BL_H1_BODY_CHUNKED, .keep_alive = 1, .nheaders = 2,
     .flags = BL_H1_F_TE_REWRITE},
    {.name = "HTTP/1.2 is processed as 1.1 (RFC 9110 2.5)",
     MSG("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), .method = "GET", .method_id = BL_H1_M_GET,
     .path = "/", .host = "h", .minor = 1, .keep_alive = 1, .nheaders = 1},
    {.name = "Content-Length leading zeros, large",
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0009223372036854775807\r\n\r\n"),
     .method = "POST", .method_id = BL_H1_M_POST, .path = "/", .host = "h", .minor = 1,
     .body = BL_H1_BODY_LENGTH, .cl = INT64_MAX, .keep_alive = 1, .nheaders = 2},
    {.name = "POST chunked",
     MSG("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .tail = "5\r\nhello\r\n0\r\n\r\n", .method = "POST", .method_id = BL_H1_M_POST,
     .path = "/up", .host = "h", .minor = 1, .body = BL_H1_BODY_CHUNKED, .keep_alive = 1,
     .nheaders = 2, .check = check_te_hdr},
    {.name = "chunked: case and empty list elements",
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , ChUnKeD ,\r\n\r\n"),
     .method = "POST", .method_id = BL_H1_M_POST, .path = "/", .host = "h", .minor = 1,
     .body = BL_H1_BODY_CHUNKED, .keep_alive = 1, .nheaders = 2,
     .flags = BL_H1_F_TE_REWRITE},
    {.name = "pipelined: two requests back to back",
     MSG("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"), .tail = "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/1", .host = "h", .minor = 1,
     .keep_alive = 1, .nheaders = 1},
    {.name = "pipelined: POST body then a request",
     MSG("POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"),
     .tail = "abcGET /2 HTTP/1.1\r\nHost: h\r\n\r\n", .method = "POST",
     .method_id = BL_H1_M_POST, .path = "/1", .host = "h", .minor = 1,
     .body = BL_H1_BODY_LENGTH, .cl = 3, .keep_alive = 1, .nheaders = 2},
    {.name = "absolute-form overrides Host",
     MSG("GET http://example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: other\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/a/b", .query = "x=1",
     .host = "example.com:8080", .minor = 1, .keep_alive = 1,
     .flags = BL_H1_F_ABSOLUTE_FORM, .nheaders = 1},
    {.name = "absolute-form without path",
     MSG("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"), .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/", .host = "example.com", .minor = 1,
     .keep_alive = 1, .flags = BL_H1_F_ABSOLUTE_FORM, .nheaders = 1},
    {.name = "absolute-form https, query without path",
     MSG("GET HTTPS://[::1]:443?q HTTP/1.1\r\nHost: x\r\n\r\n"), .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/", .query = "q", .host = "[::1]:443", .minor = 1,
     .keep_alive = 1, .flags = BL_H1_F_ABSOLUTE_FORM, .nheaders = 1},
    {.name = "absolute-form HTTP/1.0 without Host",
     MSG("GET http://h/x HTTP/1.0\r\n\r\n"), .method = "GET", .method_id = BL_H1_M_GET,
     .path = "/x", .host = "h", .minor = 0, .keep_alive = 0,
     .flags = BL_H1_F_ABSOLUTE_FORM, .nheaders = 0},
    {.name = "OPTIONS *", MSG("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), .method = "OPTIONS",
     .method_id = BL_H1_M_OPTIONS, .path = "*", .host = "h", .minor = 1, .keep_alive = 1,
     .nheaders = 1},
    {.name = "CONNECT authority-form",
     MSG("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
     .method = "CONNECT", .method_id = BL_H1_M_CONNECT, .path = "example.com:443",
     .host = "example.com:443", .minor = 1, .keep_alive = 1, .nheaders = 1},
    {.name = "HTTP/1.0 without Host", MSG("GET / HTTP/1.0\r\n\r\n"), .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/", .minor = 0, .keep_alive = 0, .nheaders = 0},
    {.name = "HTTP/1.0 keep-alive",
     MSG("GET / HTTP/1.0\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n"), .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 0, .keep_alive = 1,
     .flags = BL_H1_F_KEEPALIVE, .nheaders = 2},
    {.name = "HTTP/1.0 keep-alive and close",
     MSG("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/", .minor = 0, .keep_alive = 0,
     .flags = BL_H1_F_KEEPALIVE | BL_H1_F_CLOSE, .nheaders = 1},
    {.name = "HTTP/1.1 close", MSG("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1,
     .keep_alive = 0, .flags = BL_H1_F_CLOSE, .nheaders = 2},
    {.name = "leading empty lines", MSG("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1,
     .keep_alive = 1, .nheaders = 1},
    {.name = "100 fields", .gen = gen_100_fields, .method = "GET", .method_id = BL_H1_M_GET,
     .path = "/many", .host = "h", .minor = 1, .keep_alive = 1, .nheaders = 100},
    {.name = "6000-byte cookie", .gen = gen_long_cookie, .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1, .keep_alive = 1,
     .nheaders = 2},
    {.name = "Connection names fields before and after it",
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX-Foo: 1\r\nKeep-Alive: 5\r\n"
         "Connection: x-foo, Upgrade,  X-BAR , keep-alive\r\nX-Bar: 2\r\nX-Keep: 3\r\n"
         "x-foo: 4\r\nUpgrade: websocket\r\nProxy-Connection: x\r\nTE: trailers\r\n"
         "Trailer: X\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1,
     .keep_alive = 1, .flags = BL_H1_F_UPGRADE | BL_H1_F_KEEPALIVE, .nheaders = 11,
     .check = check_hop},
    {.name = "Connection cannot drop framing or Host",
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nX-Real-IP: 1.2.3.4\r\n"
         "Connection: content-length, host, x-real-ip, transfer-encoding\r\n\r\n"),
     .tail = "x", .method = "POST", .method_id = BL_H1_M_POST, .path = "/", .host = "h",
     .minor = 1, .body = BL_H1_BODY_LENGTH, .cl = 1, .keep_alive = 1, .nheaders = 4,
     .check = check_hop_protected},
    {.name = "OWS trimmed, empty values, obs-text",
     MSG("GET / HTTP/1.1\r\nHost: h\r\nA: \t a b \t \r\nB:\r\nC:   \r\nD:x\t y\r\n"
         "E: \x80\xff\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1,
     .keep_alive = 1, .nheaders = 6, .check = check_ows},
    {.name = "Expect: 100-continue",
     MSG("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n"),
     .method = "PUT", .method_id = BL_H1_M_PUT, .path = "/f", .host = "h", .minor = 1,
     .body = BL_H1_BODY_LENGTH, .cl = 10, .keep_alive = 1, .flags = BL_H1_F_EXPECT_CONTINUE,
     .nheaders = 3},
    {.name = "Expect ignored in HTTP/1.0",
     MSG("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"),
     .method = "PUT", .method_id = BL_H1_M_PUT, .path = "/f", .minor = 0,
     .body = BL_H1_BODY_LENGTH, .cl = 1, .keep_alive = 0, .nheaders = 2},
    {.name = "other methods",
     MSG("PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n"), .method = "PURGE",
     .method_id = BL_H1_M_OTHER, .path = "/x", .host = "h", .minor = 1, .keep_alive = 1,
     .nheaders = 1},
    {.name = "methods are case-sensitive", MSG("get / HTTP/1.1\r\nHost: h\r\n\r\n"),
     .method = "get", .method_id = BL_H1_M_OTHER, .path = "/", .host = "h", .minor = 1,
     .keep_alive = 1, .nheaders = 1},
    {.name = "HEAD", MSG("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"), .method = "HEAD",
     .method_id = BL_H1_M_HEAD, .path = "/", .host = "h", .minor = 1, .keep_alive = 1,
     .nheaders = 1},
    {.name = "DELETE", MSG("DELETE /r/1 HTTP/1.1\r\nHost: h\r\n\r\n"), .method = "DELETE",
     .method_id = BL_H1_M_DELETE, .path = "/r/1", .host = "h", .minor = 1, .keep_alive = 1,
     .nheaders = 1},
    {.name = "PATCH", MSG("PATCH /r HTTP/1.1\r\nHost: h\r\n\r\n"), .method = "PATCH",
     .method_id = BL_H1_M_PATCH, .path = "/r", .host = "h", .minor = 1, .keep_alive = 1,
     .nheaders = 1},
    {.name = "TRACE", MSG("TRACE / HTTP/1.1\r\nHost: h\r\n\r\n"), .method = "TRACE",
     .method_id = BL_H1_M_TRACE, .path = "/", .host = "h", .minor = 1, .keep_alive = 1,
     .nheaders = 1},
    {.name = "target with obs-text", MSG("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/caf\xc3\xa9", .host = "h",
     .minor = 1, .keep_alive = 1, .nheaders = 1},
    {.name = "empty Host", MSG("GET / HTTP/1.1\r\nHost:\r\n\r\n"), .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/", .host = "", .minor = 1, .keep_alive = 1,
     .nheaders = 1},
    {.name = "well-known field ids",
     MSG("GET / HTTP/1.1\r\nhOsT: h\r\ncontent-LENGTH: 0\r\nCONNECTION: x\r\nkeep-alive: 1\r\n"
         "Proxy-Connection: 1\r\nte: trailers\r\nTrailer: a\r\nUPGRADE: b\r\nExpect: c\r\n"
         "X-Forwarded-For: 1\r\nx-real-ip: 1\r\nX-FORWARDED-PROTO: 1\r\nHosts: 1\r\n"
         "Content-Lengths: 1\r\nX-Forwarded-Prot0: 1\r\nTransfer-Encodinf: 1\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1,
     .body = BL_H1_BODY_LENGTH, .cl = 0, .keep_alive = 1, .nheaders = 16, .check = check_ids},
    {.name = "request line exactly max_line, field line exactly max_line",
     MSG("GET /abc HTTP/1.1\r\nHost: abcdefghijk\r\n\r\n"), .max_line = 17, .method = "GET",
     .method_id = BL_H1_M_GET, .path = "/abc", .host = "abcdefghijk", .minor = 1,
     .keep_alive = 1, .nheaders = 1},
    {.name = "head exactly max_head", MSG("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), .max_head = 27,
     .tail = "GET", .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h",
     .minor = 1, .keep_alive = 1, .nheaders = 1},

    /* responses */
    {.name = "200 with Content-Length", .response = 1,
     MSG("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: x\r\n\r\n"), .tail = "ok",
     .status = 200, .reason = "OK", .minor = 1, .body = BL_H1_BODY_LENGTH, .cl = 2,
     .keep_alive = 1, .nheaders = 2},
    {.name = "200 chunked", .response = 1,
     MSG("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .tail = "0\r\n\r\n",
     .status = 200, .reason = "OK", .minor = 1, .body = BL_H1_BODY_CHUNKED, .keep_alive = 1,
     .nheaders = 1},
    {.name = "200 close-delimited", .response = 1, MSG("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"),
     .tail = "until the end", .status = 200, .reason = "OK", .minor = 1,
     .body = BL_H1_BODY_CLOSE, .keep_alive = 0, .nheaders = 1},
    {.name = "HTTP/1.0 keep-alive response", .response = 1,
     MSG("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"),
     .status = 200, .reason = "OK", .minor = 0, .body = BL_H1_BODY_LENGTH, .cl = 0,
     .keep_alive = 1, .flags = BL_H1_F_KEEPALIVE, .nheaders = 2},
    {.name = "HTTP/1.0 response without keep-alive", .response = 1,
     MSG("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), .status = 200, .reason = "OK",
     .minor = 0, .body = BL_H1_BODY_LENGTH, .keep_alive = 0, .nheaders = 1},
    {.name = "response Connection: close", .response = 1,
     MSG("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), .status = 200,
     .reason = "OK", .minor = 1, .body = BL_H1_BODY_LENGTH, .keep_alive = 0,
     .flags = BL_H1_F_CLOSE, .nheaders = 2},
    {.name = "100 Continue", .response = 1, MSG("HTTP/1.1 100 Continue\r\n\r\n"),
     .tail = "HTTP/1.1 200 OK\r\n", .status = 100, .reason = "Continue", .minor = 1,
     .body = BL_H1_BODY_NONE, .keep_alive = 1},
    {.name = "101 Switching Protocols", .response = 1,
     MSG("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
     .status = 101, .reason = "Switching Protocols", .minor = 1, .body = BL_H1_BODY_NONE,
     .keep_alive = 1, .flags = BL_H1_F_UPGRADE, .nheaders = 2},
    {.name = "204 ignores Content-Length", .response = 1,
     MSG("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"), .status = 204,
     .reason = "No Content", .minor = 1, .body = BL_H1_BODY_NONE, .cl = 7, .keep_alive = 1,
     .nheaders = 1},
    {.name = "304", .response = 1,
     MSG("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"), .status = 304,
     .reason = "Not Modified", .minor = 1, .body = BL_H1_BODY_NONE, .keep_alive = 1,
     .nheaders = 1},
    {.name = "response to HEAD", .response = 1, .head_request = 1,
     MSG("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"), .tail = "HTTP/1.1 200 OK\r\n",
     .status = 200, .reason = "OK", .minor = 1, .body = BL_H1_BODY_NONE, .cl = 1234,
     .keep_alive = 1, .nheaders = 1},
    {.name = "response to HEAD without length", .response = 1, .head_request = 1,
     MSG("HTTP/1.1 200 OK\r\n\r\n"), .status = 200, .reason = "OK", .minor = 1,
     .body = BL_H1_BODY_NONE, .keep_alive = 1},
    {.name = "status line without SP before empty reason", .response = 1,
     MSG("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), .status = 200, .reason = "",
     .minor = 1, .body = BL_H1_BODY_LENGTH, .keep_alive = 1, .nheaders = 1},
    {.name = "empty reason", .response = 1, MSG("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"),
     .status = 404, .reason = "", .minor = 1, .body = BL_H1_BODY_LENGTH, .keep_alive = 1,
     .nheaders = 1},
    {.name = "reason with HTAB and obs-text", .response = 1,
     MSG("HTTP/1.1 599 a\tb \xe9t\xe9\r\nContent-Length: 0\r\n\r\n"), .status = 599,
     .reason = "a\tb \xe9t\xe9", .minor = 1, .body = BL_H1_BODY_LENGTH, .keep_alive = 1,
     .nheaders = 1},
    {.name = "responses have no Host rules", .response = 1,
     MSG("HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\nContent-Length: 0\r\n\r\n"),
     .status = 200, .reason = "OK", .minor = 1, .body = BL_H1_BODY_LENGTH, .keep_alive = 1,
     .nheaders = 3},
    {.name = "response with 100 fields", .response = 1, .gen = gen_100_fields_response,
     .status = 200, .reason = "OK", .minor = 1, .body = BL_H1_BODY_LENGTH, .keep_alive = 1,
     .nheaders = 100},
    /* the parser's fast paths at their edges */
    {.name = "names and values across 16-byte boundaries, tail of the buffer",
     MSG("GET / HTTP/1.1\r\nHost: h\r\n"
         "X-A-Rather-Long-Header-Name: 0123456789abcdef0123456789abcdef\x80\xff|~\r\n"
         "Abcdefghijklmnop_q:  a \t b \t\r\nX:v\r\nY: \r\nA_b: c\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1,
     .keep_alive = 1, .nheaders = 6, .check = check_vector_edges},
    {.name = "Connection: KEEP-ALIVE in capitals, HTTP/1.0", .response = 1,
     MSG("HTTP/1.0 200 OK\r\nConnection: KEEP-ALIVE \r\nContent-Length: 0\r\n\r\n"),
     .status = 200, .reason = "OK", .minor = 0, .body = BL_H1_BODY_LENGTH, .keep_alive = 1,
     .flags = BL_H1_F_KEEPALIVE, .nheaders = 2},
    {.name = "Connection: Close", MSG("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1,
     .keep_alive = 0, .flags = BL_H1_F_CLOSE, .nheaders = 2},
    {.name = "Connection option of 10 bytes that is not keep-alive",
     MSG("GET / HTTP/1.1\r\nHost: h\r\nkeep_alive: 1\r\nConnection: keep_alive\r\n\r\n"),
     .method = "GET", .method_id = BL_H1_M_GET, .path = "/", .host = "h", .minor = 1,
     .keep_alive = 1, .nheaders = 3, .check = check_connection_option},
    {.name = "field ids by length and first letter", .response = 1,
     MSG("HTTP/1.1 200 OK\r\nDATE: d\r\nsErVeR: s\r\nTraceParent: p\r\ntracestate: t\r\n"
         "Data: 1\r\nServes: 2\r\ntraceparens: 3\r\nUser-Agent: 4\r\nhosT2: 5\r\nhOsT: 6\r\n"
         "Expect: 7\r\nTrailer: 8\r\nKeep-Alive: 9\r\nContent-Length: 0\r\n\r\n"),
     .status = 200, .reason = "OK", .minor = 1, .body = BL_H1_BODY_LENGTH, .keep_alive = 1,
     .nheaders = 14, .check = check_new_ids},
};

static const struct req_case req_invalid[] = {
    /* framing */
    {.name = "Content-Length and Transfer-Encoding", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {.name = "Transfer-Encoding then Content-Length", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n")},
    {.name = "two differing Content-Length fields", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")},
    {.name = "differing Content-Length list", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n")},
    {.name = "Content-Length with sign", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n")},
    {.name = "negative Content-Length", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n")},
    {.name = "Content-Length not a number", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5a\r\n\r\n")},
    {.name = "Content-Length hex", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n")},
    {.name = "empty Content-Length", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n")},
    {.name = "Content-Length with inner space", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n")},
    {.name = "Content-Length empty list element", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,,5\r\n\r\n")},
    {.name = "Content-Length overflow", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n")},
    {.name = "Content-Length huge", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n")},
    {.name = "Transfer-Encoding not ending in chunked", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n")},
    {.name = "chunked then gzip", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")},
    {.name = "chunked twice in one field", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n")},
    {.name = "chunked twice over two fields", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n")},
    {.name = "chunked with parameters", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n")},
    {.name = "empty Transfer-Encoding", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n")},
    {.name = "bad Transfer-Encoding token", .error = 400,
     MSG("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n")},
    {.name = "Transfer-Encoding in HTTP/1.0", .error = 400,
     MSG("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")},
    /* field syntax */
    {.name = "space before colon", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost : h\r\n\r\n")},
    {.name = "tab before colon", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\t: chunked\r\n\r\n")},
    {.name = "obs-fold", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n")},
    {.name = "obs-fold with HTAB", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n")},
    {.name = "whitespace before the first field", .error = 400,
     MSG("GET / HTTP/1.1\r\n Host: h\r\n\r\n")},
    {.name = "bare CR in value", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n")},
    {.name = "bare CR ending a field", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n")},
    {.name = "bare CR ending the head", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\n\rX")},
    {.name = "bare CR ending the request line", .error = 400, MSG("GET / HTTP/1.1\rHost: h\r\n\r\n")},
    {.name = "bare LF ending the request line", .error = 400, MSG("GET / HTTP/1.1\nHost: h\r\n\r\n")},
    {.name = "bare LF ending a field", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n")},
    {.name = "bare LF ending the head", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\n\n")},
    {.name = "bare LF before the request line", .error = 400, MSG("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "bare CR before the request line", .error = 400, MSG("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "NUL in value", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n")},
    {.name = "control byte in value", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n")},
    {.name = "DEL in value", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n")},
    {.name = "NUL after OWS", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\nX: \0\r\n\r\n")},
    {.name = "bad header-name byte", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\nX@Y: 1\r\n\r\n")},
    {.name = "header name with obs-text", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\nX\xe9: 1\r\n\r\n")},
    {.name = "empty header name", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n")},
    {.name = "field without colon", .error = 400, MSG("GET / HTTP/1.1\r\nHost: h\r\nX\r\n\r\n")},
    /* request line */
    {.name = "bad method byte", .error = 400, MSG("G(T / HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "method with obs-text", .error = 400, MSG("G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "leading SP before method", .error = 400, MSG(" GET / HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "two SP after method", .error = 400, MSG("GET  / HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "two SP after target", .error = 400, MSG("GET /  HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "HTAB separator", .error = 400, MSG("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "no version (HTTP/0.9)", .error = 400, MSG("GET /\r\n\r\n")},
    {.name = "trailing SP after version", .error = 400, MSG("GET / HTTP/1.1 \r\nHost: h\r\n\r\n")},
    {.name = "lower-case version", .error = 400, MSG("GET / http/1.1\r\nHost: h\r\n\r\n")},
    {.name = "version with two digits", .error = 400, MSG("GET / HTTP/1.10\r\nHost: h\r\n\r\n")},
    {.name = "version not digits", .error = 400, MSG("GET / HTTP/1.x\r\nHost: h\r\n\r\n")},
    {.name = "HTTP/2.0", .error = 505, MSG("GET / HTTP/2.0\r\nHost: h\r\n\r\n")},
    {.name = "HTTP/3.0", .error = 505, MSG("GET / HTTP/3.0\r\nHost: h\r\n\r\n")},
    {.name = "HTTP/0.9 version", .error = 505, MSG("GET / HTTP/0.9\r\n\r\n")},
    {.name = "CTL in target", .error = 400, MSG("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "DEL in target", .error = 400, MSG("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "NUL in target", .error = 400, MSG("GET /a\0 HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "HTAB in target", .error = 400, MSG("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "absolute-form with userinfo", .error = 400,
     MSG("GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "absolute-form with empty authority", .error = 400,
     MSG("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "absolute-form with another scheme", .error = 400,
     MSG("GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n")},
    /* Host */
    {.name = "no Host on HTTP/1.1", .error = 400, MSG("GET / HTTP/1.1\r\nX: 1\r\n\r\n")},
    {.name = "no Host on HTTP/1.1 absolute-form", .error = 400, MSG("GET http://h/ HTTP/1.1\r\n\r\n")},
    {.name = "two Host fields", .error = 400, MSG("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")},
    {.name = "two Host fields on HTTP/1.0", .error = 400, MSG("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n")},
    {.name = "Host with SP", .error = 400, MSG("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")},
    {.name = "Host with userinfo", .error = 400, MSG("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n")},
    {.name = "Host with path", .error = 400, MSG("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n")},
    {.name = "bad Connection option", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nConnection: close, a b\r\n\r\n")},
    /* limits */
    {.name = "request line over max_line", .error = 414, .max_line = 32,
     MSG("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "request line one over max_line", .error = 414, .max_line = 16,
     MSG("GET /abc HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "long request line with a bad byte past the limit", .error = 414, .max_line = 16,
     MSG("GET /aaaaaaaaaaaaaaaaaaa\x01 HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "long method", .error = 414, .max_line = 16, MSG("GETGETGETGETGETGETGET")},
    {.name = "header line over max_line", .error = 431, .max_line = 32,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX-Long: 0123456789012345678901234567890123456789\r\n\r\n")},
    {.name = "header line one over max_line", .error = 431, .max_line = 17,
     MSG("GET /abc HTTP/1.1\r\nHost: abcdefghijkl\r\n\r\n")},
    {.name = "long field name", .error = 431, .max_line = 17,
     MSG("GET /abc HTTP/1.1\r\nHost: h\r\nXXXXXXXXXXXXXXXXXXXXXXXX")},
    {.name = "head over max_head", .error = 431, .max_head = 64,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX-A: aaaaaaaaaa\r\nX-B: bbbbbbbbbb\r\nX-C: cccccccccc\r\n\r\n")},
    {.name = "head one over max_head", .error = 431, .max_head = 26,
     MSG("GET / HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "empty lines over max_head", .error = 431, .max_head = 16,
     MSG("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n")},
    {.name = "101 fields", .error = 431, .gen = gen_101_fields},
    /* responses */
    {.name = "status 99", .response = 1, .error = 400, MSG("HTTP/1.1 099 X\r\n\r\n")},
    {.name = "status 600", .response = 1, .error = 400, MSG("HTTP/1.1 600 X\r\n\r\n")},
    {.name = "two-digit status", .response = 1, .error = 400, MSG("HTTP/1.1 20 OK\r\n\r\n")},
    {.name = "four-digit status", .response = 1, .error = 400, MSG("HTTP/1.1 2000 OK\r\n\r\n")},
    {.name = "status not digits", .response = 1, .error = 400, MSG("HTTP/1.1 2x0 OK\r\n\r\n")},
    {.name = "no status", .response = 1, .error = 400, MSG("HTTP/1.1\r\n\r\n")},
    {.name = "response HTTP/2.0", .response = 1, .error = 505, MSG("HTTP/2.0 200 OK\r\n\r\n")},
    {.name = "response not HTTP", .response = 1, .error = 400, MSG("ICY 200 OK\r\n\r\n")},
    {.name = "response leading CRLF", .response = 1, .error = 400,
     MSG("\r\nHTTP/1.1 200 OK\r\n\r\n")},
    {.name = "control byte in reason", .response = 1, .error = 400,
     MSG("HTTP/1.1 200 O\x01K\r\n\r\n")},
    {.name = "response CL and TE", .response = 1, .error = 400,
     MSG("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {.name = "response CL and TE to HEAD", .response = 1, .head_request = 1, .error = 400,
     MSG("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {.name = "response differing Content-Length", .response = 1, .error = 400,
     MSG("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n")},
    {.name = "response TE not chunked", .response = 1, .error = 400,
     MSG("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")},
    {.name = "response obs-fold", .response = 1, .error = 400,
     MSG("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n")},
    {.name = "response bare LF", .response = 1, .error = 400, MSG("HTTP/1.1 200 OK\n\r\n")},
    {.name = "status line over max_line", .response = 1, .error = 431, .max_line = 20,
     MSG("HTTP/1.1 200 A very long reason\r\n\r\n")},
    {.name = "response with 101 fields", .response = 1, .error = 431,
     .gen = gen_101_fields_response},
    /* the parser's fast paths at their edges */
    {.name = "CR in byte 17 of a value", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789abcdef\rg\r\n\r\n")},
    {.name = "NUL in a 16-byte run of a value", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789\0bcdefghij\r\n\r\n")},
    {.name = "DEL at the end of a value", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789abcdefghij\x7f\r\n\r\n")},
    {.name = "DEL in the request-target's last 16 bytes", .error = 400,
     MSG("GET /0123456789abcdefghij\x7f HTTP/1.1\r\nHost: h\r\n\r\n")},
    {.name = "LF in the last bytes of a value", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nX: ab\n\r\n")},
    {.name = "obs-text in a field name after 16 letters", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nAbcdefghijklmnop\xe9: v\r\n\r\n")},
    {.name = "SP before the colon after a long name", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nAbcdefghijklmnopq : v\r\n\r\n")},
    {.name = "bad Connection option", .error = 400,
     MSG("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive;\r\n\r\n")},
};

/* -- runner -- */

static void init_parser(struct bl_h1_parser *p, const struct req_case *tc)
{
    uint32_t max_line = tc->max_line ? tc->max_line : 8192;
    uint32_t max_head = tc->max_head ? tc->max_head : 65536;
    if (tc->response)
        bl_h1_parser_init_response(p, max_line, max_head, tc->head_request);
    else
        bl_h1_parser_init_request(p, max_line, max_head);
}

static void expect_same_message(const struct bl_h1_message *a, const struct bl_h1_message *b)
{
    EXPECT_PTR(a->method, b->method);
    EXPECT_INT(a->method_len, b->method_len);
    EXPECT_INT(a->method_id, b->method_id);
    EXPECT_PTR(a->target, b->target);
    EXPECT_INT(a->target_len, b->target_len);
    EXPECT_PTR(a->path, b->path);
    EXPECT_INT(a->path_len, b->path_len);
    EXPECT_PTR(a->query, b->query);
    EXPECT_INT(a->query_len, b->query_len);
    EXPECT_INT(a->status, b->status);
    EXPECT_PTR(a->reason, b->reason);
    EXPECT_INT(a->reason_len, b->reason_len);
    EXPECT_INT(a->minor_version, b->minor_version);
    EXPECT_INT(a->body, b->body);
    EXPECT_INT(a->keep_alive, b->keep_alive);
    EXPECT_INT(a->flags, b->flags);
    EXPECT_INT(a->content_length, b->content_length);
    EXPECT_PTR(a->host, b->host);
    EXPECT_INT(a->host_len, b->host_len);
    EXPECT_INT(a->head_len, b->head_len);
    EXPECT_INT(a->nheaders, b->nheaders);
    for (unsigned k = 0; k < a->nheaders; k++) {
        EXPECT_PTR(a->headers[k].name, b->headers[k].name);
        EXPECT_INT(a->headers[k].name_len, b->headers[k].name_len);
        EXPECT_PTR(a->headers[k].value, b->headers[k].value);
        EXPECT_INT(a->headers[k].value_len, b->headers[k].value_len);
        EXPECT_INT(a->headers[k].id, b->headers[k].id);
        EXPECT_INT(a->headers[k].hop, b->headers[k].hop);
    }
}

static void expect_message(const struct req_case *tc, const struct bl_h1_message *m,
                           const char *buf, size_t head_len)
{
    EXPECT_INT(m->head_len, head_len);
    EXPECT_INT(m->minor_version, tc->minor);
    EXPECT_INT(m->body, tc->body);
    EXPECT_INT(m->content_length, tc->cl);
    EXPECT_INT(m->keep_alive, tc->keep_alive);
    EXPECT_INT(m->flags, tc->flags);
    EXPECT_INT(m->nheaders, tc->nheaders);
    if (tc->response) {
        EXPECT_INT(m->status, tc->status);
        expect_slice("reason", m->reason, m->reason_len, tc->reason);
        assert_null(m->method);
        assert_null(m->host);
    } else {
        expect_slice("method", m->method, m->method_len, tc->method);
        EXPECT_INT(m->method_id, tc->method_id);
        expect_slice("path", m->path, m->path_len, tc->path);
        expect_slice("query", m->query, m->query_len, tc->query);
        expect_slice("host", m->host, m->host_len, tc->host);
        assert_true(m->target >= buf && m->target + m->target_len <= buf + head_len);
        EXPECT_INT(m->status, 0);
    }
    /* Every field is a trimmed slice of the head. */
    for (unsigned k = 0; k < m->nheaders; k++) {
        const struct bl_h1_header *h = &m->headers[k];
        assert_true(h->name >= buf && h->name + h->name_len <= buf + head_len);
        assert_true(h->value >= buf && h->value + h->value_len <= buf + head_len);
        assert_true(h->name_len > 0);
        if (h->value_len) {
            assert_false(h->value[0] == ' ' || h->value[0] == '\t');
            assert_false(h->value[h->value_len - 1] == ' ' || h->value[h->value_len - 1] == '\t');
        }
        assert_null(memchr(h->value, '\r', h->value_len));
        assert_null(memchr(h->value, '\n', h->value_len));
    }
    if (tc->check)
        tc->check(m);
}

static void run_req_case(void **state)
{
    const struct req_case *tc = *state;
    size_t hlen, tlen = tc->tail ? strlen(tc->tail) : 0;
    char *head = tc->gen ? tc->gen(&hlen) : NULL;
    if (!head)
        hlen = tc->len;
    size_t n = hlen + tlen;
    /* exactly n bytes, so ASan sees any read past the input */
    char *buf = malloc(n);
    memcpy(buf, head ? head : tc->msg, hlen);
    if (tlen)
        memcpy(buf + hlen, tc->tail, tlen);
    free(head);

    int expect = tc->error ? BL_ERR : (int)hlen;
    struct bl_h1_parser p;
    struct bl_h1_message *whole = calloc(1, sizeof(*whole));
    struct bl_h1_message *m = calloc(1, sizeof(*m));
    /* m's own array is small, so that a head moves to the heap array at every point of a cut
     * (whole has none: its first field makes the heap one) */
    struct bl_h1_header m_fields[3];
    bl_h1_message_init(m, m_fields, 3);

    /* (a) whole */
    snprintf(where, sizeof(where), "%s: whole", tc->name);
    init_parser(&p, tc);
    int r = bl_h1_parse(&p, buf, n, whole);
    EXPECT_INT(r, expect);
    if (tc->error) {
        EXPECT_INT(p.error, tc->error);
        assert_non_null(p.reason);
        assert_string_equal(bl_h1_parser_state_str(&p), "error");
    } else {
        expect_message(tc, whole, buf, hlen);
        assert_string_equal(bl_h1_parser_state_str(&p), "done");
    }
    EXPECT_INT(bl_h1_parse(&p, buf, n, whole), expect); /* idempotent once finished */

    /* (b) cut at every byte: buf[0..k) then the whole buffer */
    for (size_t k = 0; k < n; k++) {
        snprintf(where, sizeof(where), "%s: cut at %zu", tc->name, k);
        init_parser(&p, tc);
        /* the parser must not rely on a zeroed message (its storage part aside) */
        memset(m, 0xa5, offsetof(struct bl_h1_message, room));
        poison(buf + k, n - k);
        r = bl_h1_parse(&p, buf, k, m);
        unpoison(buf + k, n - k);
        if (r == BL_ERR) {
            EXPECT_INT(tc->error != 0, 1);
            EXPECT_INT(p.error, tc->error);
            continue;
        }
        EXPECT_INT(r, !tc->error && k >= hlen ? (int)hlen : BL_AGAIN);
        r = bl_h1_parse(&p, buf, n, m);
        EXPECT_INT(r, expect);
        if (tc->error)
            EXPECT_INT(p.error, tc->error);
        else
            expect_same_message(m, whole);
    }

    /* (c) one byte at a time, same buffer, len growing by one */
    snprintf(where, sizeof(where), "%s: byte by byte", tc->name);
    init_parser(&p, tc);
    memset(m, 0x5a, offsetof(struct bl_h1_message, room));
    size_t len = 0;
    for (r = BL_AGAIN; r == BL_AGAIN && len <= n; len++) {
        poison(buf + len, n - len);
        r = bl_h1_parse(&p, buf, len, m);
        unpoison(buf + len, n - len);
    }
    EXPECT_INT(r, expect);
    if (tc->error) {
        EXPECT_INT(p.error, tc->error);
    } else {
        EXPECT_INT(len - 1, hlen); /* complete exactly when the last head byte arrived */
        expect_same_message(m, whole);
    }

    bl_h1_message_free(whole);
    bl_h1_message_free(m);
    free(whole);
    free(m);
    free(buf);
}

/* ------------------------------------------------------------------------------------------ */
/* Chunked corpus */

struct ck_case {
    const char *name;
    const char *msg;             /* the body (valid) or the whole input (invalid) */
    size_t len;
    const char *tail;            /* bytes after the body */
    char *(*gen)(size_t *len);
    int invalid;
    int incomplete;              /* valid so far, not finished */
};

static char *gen_big_chunk(size_t *len)
{
    size_t cap = 20100;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "%x\r\n", 20000);
    memset(s + n, 'd', 20000);
    n += 20000;
    n += (size_t)snprintf(s + n, cap - n, "\r\n1\r\nx\r\n0\r\n\r\n");
    *len = n;
    return s;
}

static char *gen_trailers(size_t *len, unsigned count)
{
    size_t cap = 16 + count * 16;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "0\r\n");
    for (unsigned k = 0; k < count; k++)
        n += (size_t)snprintf(s + n, cap - n, "T%u: %u\r\n", k, k);
    n += (size_t)snprintf(s + n, cap - n, "\r\n");
    *len = n;
    return s;
}

static char *gen_100_trailers(size_t *len)
{
    return gen_trailers(len, 100);
}

static char *gen_101_trailers(size_t *len)
{
    return gen_trailers(len, 101);
}

static char *gen_line(size_t *len, const char *prefix, size_t fill, const char *suffix)
{
    size_t cap = strlen(prefix) + fill + strlen(suffix) + 1;
    char *s = malloc(cap);
    size_t n = strlen(prefix);
    memcpy(s, prefix, n);
    memset(s + n, 'e', fill);
    n += fill;
    memcpy(s + n, suffix, strlen(suffix));
    *len = n + strlen(suffix);
    return s;
}

static char *gen_ext_4096(size_t *len)
{
    /* "1;" + 4094 bytes: a size line of exactly 4096 bytes */
    return gen_line(len, "1;", 4094, "\r\nx\r\n0\r\n\r\n");
}

static char *gen_ext_4097(size_t *len)
{
    return gen_line(len, "1;", 4095, "\r\nx\r\n0\r\n\r\n");
}

static char *gen_trailer_4096(size_t *len)
{
    return gen_line(len, "0\r\nT:", 4094, "\r\n\r\n");
}

static char *gen_trailer_4097(size_t *len)
{
    return gen_line(len, "0\r\nT:", 4095, "\r\n\r\n");
}

static const struct ck_case ck_cases[] = {
    {.name = "last chunk only", MSG("0\r\n\r\n")},
    {.name = "one chunk", MSG("5\r\nhello\r\n0\r\n\r\n")},
    {.name = "several chunks, hex of both cases",
     MSG("a\r\n0123456789\r\nA\r\n0123456789\r\n1F\r\n0123456789012345678901234567890\r\n"
         "000\r\n\r\n")},
    {.name = "data containing CRLF and size-like bytes", MSG("4\r\n\r\n0\r\r\n0\r\n\r\n")},
    {.name = "extensions", MSG("5;foo=bar;baz\r\nhello\r\n0;last\r\n\r\n")},
    {.name = "extension with BWS",
     MSG("5 ; a = b ;c\t=\t\"d\"\r\nhello\r\n0 ;x\r\n\r\n")},
    {.name = "quoted extension with escapes", MSG("5;a=\"x\\\"y;\\\\z\" ;b=\"\"\r\nhello\r\n0\r\n\r\n")},
    {.name = "trailers", MSG("3\r\nabc\r\n0\r\nX-Checksum: 123\r\nEmpty:\r\nY:  a b \r\n\r\n")},
    {.name = "followed by the next request", MSG("3\r\nabc\r\n0\r\n\r\n"),
     .tail = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
    {.name = "trailers then the next request", MSG("0\r\nT: 1\r\n\r\n"), .tail = "POST"},
    {.name = "20000-byte chunk", .gen = gen_big_chunk},
    {.name = "100 trailers", .gen = gen_100_trailers},
    {.name = "size line of 4096 bytes", .gen = gen_ext_4096},
    {.name = "trailer line of 4096 bytes", .gen = gen_trailer_4096},
    {.name = "largest size", MSG("3fffffffffffffff\r\nabc"), .incomplete = 1},
    {.name = "incomplete data", MSG("5\r\nhel"), .incomplete = 1},
    {.name = "incomplete trailers", MSG("0\r\nT: 1\r\n"), .incomplete = 1},

    {.name = "empty size", .invalid = 1, MSG("\r\n\r\n")},
    {.name = "size not hex", .invalid = 1, MSG("g\r\n\r\n")},
    {.name = "size 0x prefix", .invalid = 1, MSG("0x5\r\nhello\r\n0\r\n\r\n")},
    {.name = "negative size", .invalid = 1, MSG("-1\r\n\r\n")},
    {.name = "size with sign", .invalid = 1, MSG("+5\r\nhello\r\n0\r\n\r\n")},
    {.name = "leading SP before size", .invalid = 1, MSG(" 5\r\nhello\r\n0\r\n\r\n")},
    {.name = "SP after size without extension", .invalid = 1, MSG("5 \r\nhello\r\n0\r\n\r\n")},
    {.name = "size overflows 2^62", .invalid = 1, MSG("4000000000000000\r\n")},
    {.name = "size overflows 2^64", .invalid = 1, MSG("100000000000000000\r\n")},
    {.name = "no CRLF after data", .invalid = 1, MSG("5\r\nhelloXX0\r\n\r\n")},
    {.name = "data longer than size", .invalid = 1, MSG("3\r\nhello\r\n0\r\n\r\n")},
    {.name = "LF only after data", .invalid = 1, MSG("5\r\nhello\n0\r\n\r\n")},
    {.name = "CR only after data", .invalid = 1, MSG("5\r\nhello\r0\r\n\r\n")},
    {.name = "bare LF after size", .invalid = 1, MSG("5\nhello\r\n0\r\n\r\n")},
    {.name = "bare CR after size", .invalid = 1, MSG("5\rhello\r\n0\r\n\r\n")},
    {.name = "bare LF at the end", .invalid = 1, MSG("0\r\n\n")},
    {.name = "bare CR at the end", .invalid = 1, MSG("0\r\n\rX")},
    {.name = "control byte in extension", .invalid = 1, MSG("5;a\x01\r\nhello\r\n0\r\n\r\n")},
    {.name = "NUL in extension value", .invalid = 1, MSG("5;a=b\0\r\nhello\r\n0\r\n\r\n")},
    {.name = "control byte in quoted extension", .invalid = 1,
     MSG("5;a=\"b\x7f\"\r\nhello\r\n0\r\n\r\n")},
    {.name = "unterminated quoted extension", .invalid = 1, MSG("5;a=\"b\r\nhello\r\n0\r\n\r\n")},
    {.name = "empty extension name", .invalid = 1, MSG("5;=b\r\nhello\r\n0\r\n\r\n")},
    {.name = "empty extension value", .invalid = 1, MSG("5;a=\r\nhello\r\n0\r\n\r\n")},
    {.name = "bad byte in extension", .invalid = 1, MSG("5;a b\r\nhello\r\n0\r\n\r\n")},
    {.name = "size line over 4096 bytes", .invalid = 1, .gen = gen_ext_4097},
    {.name = "trailer line over 4096 bytes", .invalid = 1, .gen = gen_trailer_4097},
    {.name = "101 trailers", .invalid = 1, .gen = gen_101_trailers},
    {.name = "obs-fold in trailer", .invalid = 1, MSG("0\r\nT: 1\r\n 2\r\n\r\n")},
    {.name = "control byte in trailer", .invalid = 1, MSG("0\r\nT: \x01\r\n\r\n")},
    {.name = "space before colon in trailer", .invalid = 1, MSG("0\r\nT : 1\r\n\r\n")},
    {.name = "trailer without colon", .invalid = 1, MSG("0\r\nT\r\n\r\n")},
    {.name = "bare LF in trailer", .invalid = 1, MSG("0\r\nT: 1\n\r\n")},
    {.name = "bare CR in trailer", .invalid = 1, MSG("0\r\nT: 1\rX\r\n\r\n")},
};

/* Feeds buf[from..to) and accumulates; returns 1 once finished (done or error). */
static int ck_feed(struct bl_h1_chunked *c, const char *buf, size_t n, size_t from, size_t to,
                   ssize_t *total, int *done)
{
    poison(buf, from);
    poison(buf + to, n - to);
    ssize_t r = bl_h1_chunked_scan(c, buf + from, to - from, done);
    unpoison(buf, n);
    if (r == BL_ERR) {
        *total = BL_ERR;
        return 1;
    }
    assert_true(r >= 0 && (size_t)r <= to - from);
    if (!*done)
        EXPECT_INT(r, to - from); /* everything is consumed until the body ends */
    *total += r;
    return *done;
}

static void run_ck_case(void **state)
{
    const struct ck_case *tc = *state;
    size_t blen, tlen = tc->tail ? strlen(tc->tail) : 0;
    char *body = tc->gen ? tc->gen(&blen) : NULL;
    if (!body)
        blen = tc->len;
    size_t n = blen + tlen;
    char *buf = malloc(n);
    memcpy(buf, body ? body : tc->msg, blen);
    if (tlen)
        memcpy(buf + blen, tc->tail, tlen);
    free(body);

    ssize_t expect = tc->invalid ? BL_ERR : (ssize_t)blen;
    int expect_done = !tc->invalid && !tc->incomplete;
    struct bl_h1_chunked c;
    ssize_t total;
    int done;

    /* (a) whole */
    snprintf(where, sizeof(where), "%s: whole", tc->name);
    bl_h1_chunked_init(&c);
    total = 0;
    done = 0;
    ck_feed(&c, buf, n, 0, n, &total, &done);
    EXPECT_INT(total, expect);
    if (total == BL_ERR) {
        assert_non_null(c.reason);
        assert_string_equal(bl_h1_chunked_state_str(&c), "error");
    } else {
        EXPECT_INT(done, expect_done);
    }
    if (expect_done) {
        /* finished: nothing more belongs to the body */
        EXPECT_INT(bl_h1_chunked_scan(&c, buf, n, &done), 0);
        EXPECT_INT(done, 1);
    }

    /* (b) cut at every byte */
    for (size_t k = 0; k <= n; k++) {
        snprintf(where, sizeof(where), "%s: cut at %zu", tc->name, k);
        bl_h1_chunked_init(&c);
        total = 0;
        done = 0;
        if (!ck_feed(&c, buf, n, 0, k, &total, &done))
            ck_feed(&c, buf, n, k, n, &total, &done);
        EXPECT_INT(total, expect);
        if (total != BL_ERR)
            EXPECT_INT(done, expect_done);
    }

    /* (c) one byte at a time, with empty calls in between */
    snprintf(where, sizeof(where), "%s: byte by byte", tc->name);
    bl_h1_chunked_init(&c);
    total = 0;
    done = 0;
    for (size_t k = 0; k < n; k++) {
        if (ck_feed(&c, buf, n, k, k, &total, &done) || ck_feed(&c, buf, n, k, k + 1, &total, &done))
            break;
    }
    EXPECT_INT(total, expect);
    if (total != BL_ERR)
        EXPECT_INT(done, expect_done);

    free(buf);
}

/* ------------------------------------------------------------------------------------------ */
/* Tables and small functions */

static void test_class_table(void **state)
{
    (void)state;
    const char *tchar = "!#$%&'*+-.^_`|~";
    const char *host = "-._~%!$&'()*+,;=:[]";
    for (unsigned c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        unsigned want = 0;
        if (alnum || (c && strchr(tchar, (int)c)))
            want |= H1_C_TCHAR;
        if ((c >= 0x21 && c <= 0x7e) || c >= 0x80 || c == ' ' || c == '\t')
            want |= H1_C_VALUE;
        if (((c >= 0x21 && c <= 0x7e) || c >= 0x80) && c != '?')
            want |= H1_C_TARGET;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            want |= H1_C_HEX;
        if (alnum || (c && strchr(host, (int)c)))
            want |= H1_C_HOST;
        if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
            (c >= 0x5d && c <= 0x7e) || c >= 0x80)
            want |= H1_C_QDTEXT;
        if (c == ' ' || c == '\t')
            want |= H1_C_OWS;
        snprintf(where, sizeof(where), "class of byte 0x%02x", c);
        EXPECT_INT(h1_class[c], want);
    }
}

/* Every byte value at every position of a 16-byte block, in a field value, a reason phrase and
 * a request-target: the bulk scanners must agree with the class table. */
static void test_scan_every_byte(void **state)
{
    (void)state;
    struct bl_h1_message *m = calloc(1, sizeof(*m));
    char buf[128];
    for (unsigned c = 0; c < 256; c++) {
        for (unsigned pos = 0; pos < 33; pos++) {
            char run[40];
            memset(run, 'a', sizeof(run));
            run[pos] = (char)c;
            struct bl_h1_parser p;
            int n, r;

            /* field value (CR would be a bare CR, an error as well) */
            snprintf(where, sizeof(where), "byte 0x%02x at %u of a field value", c, pos);
            n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: ");
            memcpy(buf + n, run, sizeof(run));
            n += (int)sizeof(run);
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\r\n\r\n");
            bl_h1_parser_init_request(&p, 8192, 65536);
            r = bl_h1_parse(&p, buf, (size_t)n, m);
            EXPECT_INT(r, (h1_class[c] & H1_C_VALUE) ? n : BL_ERR);

            /* reason phrase */
            snprintf(where, sizeof(where), "byte 0x%02x at %u of a reason", c, pos);
            n = snprintf(buf, sizeof(buf), "HTTP/1.1 200 ");
            memcpy(buf + n, run, sizeof(run));
            n += (int)sizeof(run);
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\r\n\r\n");
            bl_h1_parser_init_response(&p, 8192, 65536, 0);
            r = bl_h1_parse(&p, buf, (size_t)n, m);
            EXPECT_INT(r, (h1_class[c] & H1_C_VALUE) ? n : BL_ERR);

            /* field name (scanned 16 bytes at a time for letters, digits and '-'): a ':'
             * after the first byte ends the name early, the rest going to the value */
            snprintf(where, sizeof(where), "byte 0x%02x at %u of a field name", c, pos);
            n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
            memcpy(buf + n, run, sizeof(run));
            n += (int)sizeof(run);
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, ": v\r\n\r\n");
            bl_h1_parser_init_request(&p, 8192, 65536);
            r = bl_h1_parse(&p, buf, (size_t)n, m);
            EXPECT_INT(r, (h1_class[c] & H1_C_TCHAR) || (c == ':' && pos > 0) ? n : BL_ERR);
            if (r > 0)
                EXPECT_INT(m->headers[1].name_len, c == ':' ? pos : sizeof(run));

            /* request-target ('?' starts the query, SP ends the target early) */
            if (c == ' ')
                continue;
            snprintf(where, sizeof(where), "byte 0x%02x at %u of a target", c, pos);
            run[0] = '/';
            if (pos == 0)
                continue;
            n = snprintf(buf, sizeof(buf), "GET ");
            memcpy(buf + n, run, sizeof(run));
            n += (int)sizeof(run);
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, " HTTP/1.1\r\nHost: h\r\n\r\n");
            bl_h1_parser_init_request(&p, 8192, 65536);
            r = bl_h1_parse(&p, buf, (size_t)n, m);
            EXPECT_INT(r, (h1_class[c] & H1_C_TARGET) || c == '?' ? n : BL_ERR);
            if (r > 0 && c == '?') {
                EXPECT_INT(m->path_len, pos);
                EXPECT_INT(m->query_len, sizeof(run) - pos - 1);
            }
        }
    }
    bl_h1_message_free(m);
    free(m);
}

/* A message's own array holds the usual head; a head with more fields moves them to the heap
 * array (made once, kept), the next small head goes back to the own array, and the limit is
 * still BL_H1_MAX_HEADERS whatever the own array's size. Whole and one byte at a time, the
 * move falling inside a resumed field. */
static void test_fields_own_then_heap(void **state)
{
    (void)state;
    struct bl_h1_header own[2];
    struct bl_h1_message *m = malloc(sizeof(*m));
    struct bl_h1_parser p;
    char buf[8192];
    assert_non_null(m);
    bl_h1_message_init(m, own, 2);
    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        for (unsigned n = 0; n <= BL_H1_MAX_HEADERS; n++) {
            snprintf(where, sizeof(where), "%u fields%s", n, bytewise ? ", byte by byte" : "");
            int len = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
            for (unsigned k = 0; k < n; k++)
                len += k == 0 ? snprintf(buf + len, sizeof(buf) - (size_t)len, "Host: h\r\n")
                              : snprintf(buf + len, sizeof(buf) - (size_t)len,
                                         "X-F%u: value %u\r\n", k, k);
            len += snprintf(buf + len, sizeof(buf) - (size_t)len, "\r\n");
            int want = n == 0 ? BL_ERR : len; /* HTTP/1.1 without Host: 400 */
            bl_h1_parser_init_request(&p, 8192, 65536);
            int r = BL_AGAIN;
            if (bytewise)
                for (int k = 1; k <= len && r == BL_AGAIN; k++)
                    r = bl_h1_parse(&p, buf, (size_t)k, m);
            else
                r = bl_h1_parse(&p, buf, (size_t)len, m);
            EXPECT_INT(r, want);
            if (r <= 0)
                continue;
            EXPECT_INT(m->nheaders, n);
            assert_true(m->headers == (n <= 2 ? own : m->heap));
            for (unsigned k = 1; k < n; k++) {
                char name[16], value[16];
                snprintf(name, sizeof(name), "X-F%u", k);
                snprintf(value, sizeof(value), "value %u", k);
                EXPECT_INT(m->headers[k].name_len, strlen(name));
                assert_memory_equal(m->headers[k].name, name, strlen(name));
                EXPECT_INT(m->headers[k].value_len, strlen(value));
                assert_memory_equal(m->headers[k].value, value, strlen(value));
            }
            EXPECT_INT(bl_h1_find(m, BL_H1_HDR_HOST), 0);
        }
    }
    /* one more than the limit: 431, as with a full own array */
    int len = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (unsigned k = 0; k < BL_H1_MAX_HEADERS; k++)
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "X-F%u: v\r\n", k);
    len += snprintf(buf + len, sizeof(buf) - (size_t)len, "\r\n");
    bl_h1_parser_init_request(&p, 8192, 65536);
    EXPECT_INT(bl_h1_parse(&p, buf, (size_t)len, m), BL_ERR);
    EXPECT_INT(p.error, 431);
    /* freed: back to the own array, and a large head makes a new heap array */
    bl_h1_message_free(m);
    assert_null(m->heap);
    assert_true(m->headers == own);
    static const char three[] = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    bl_h1_parser_init_request(&p, 8192, 65536);
    EXPECT_INT(bl_h1_parse(&p, three, sizeof(three) - 1, m), sizeof(three) - 1);
    assert_non_null(m->heap);
    assert_true(m->headers == m->heap);
    EXPECT_INT(m->headers[2].value[0], '2');
    bl_h1_message_free(m);
    free(m);
}

static void test_find_and_reuse(void **state)
{
    (void)state;
    static const char req[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
    struct bl_h1_parser p;
    struct bl_h1_message m;
    bl_h1_message_init(&m, NULL, 0); /* no array of its own: the heap one */
    snprintf(where, sizeof(where), "find");
    bl_h1_parser_init_request(&p, 8192, 65536);
    EXPECT_INT(bl_h1_parse(&p, req, sizeof(req) - 1, &m), sizeof(req) - 1);
    EXPECT_INT(bl_h1_find(&m, BL_H1_HDR_HOST), 0);
    EXPECT_INT(bl_h1_find(&m, BL_H1_HDR_X_FORWARDED_FOR), 1);
    EXPECT_INT(bl_h1_find(&m, BL_H1_HDR_CONTENT_LENGTH), -1);

    /* A parser initialised again parses the next message into the same struct. */
    static const char resp[] = "HTTP/1.1 204 No Content\r\n\r\n";
    bl_h1_parser_init_response(&p, 8192, 65536, 0);
    EXPECT_INT(bl_h1_parse(&p, resp, sizeof(resp) - 1, &m), sizeof(resp) - 1);
    EXPECT_INT(m.nheaders, 0);
    assert_null(m.method);
    assert_null(m.host);
    EXPECT_INT(m.status, 204);

    /* A state name for every state, and a fallback. */
    for (unsigned s = 0; s <= H1_S_ERROR; s++) {
        p.state = (uint8_t)s;
        assert_string_not_equal(bl_h1_parser_state_str(&p), "?");
    }
    p.state = 200;
    assert_string_equal(bl_h1_parser_state_str(&p), "?");
    bl_h1_message_free(&m);
    struct bl_h1_chunked c;
    for (unsigned s = 0; s <= H1_CK_ERROR; s++) {
        c.state = (uint8_t)s;
        assert_string_not_equal(bl_h1_chunked_state_str(&c), "?");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Micro-benchmark: a typical browser request of about 400 bytes. */

static const char bench_req[] =
    "GET /assets/js/app.3f9a1c.js?v=20240611 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36\r\n"
    "Accept: */*\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Referer: https://www.example.com/products/42\r\n"
    "Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* 1e6 parses in 10 rounds; the best round is the least disturbed by other load on the box. */
static void run_bench(void)
{
    enum { ROUNDS = 10, LOOPS = 100000 };
    static struct bl_h1_message m;
    struct bl_h1_parser p;
    double per[ROUNDS];
    long sum = 0;

    for (int r = 0; r < ROUNDS; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int k = 0; k < LOOPS; k++) {
            bl_h1_parser_init_request(&p, 8192, 65536);
            sum += bl_h1_parse(&p, bench_req, sizeof(bench_req) - 1, &m);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        per[r] = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
                 LOOPS;
    }
    qsort(per, ROUNDS, sizeof(per[0]), cmp_double);
    printf("h1 parse: %zu-byte request, %d fields, %d parses: best %.1f ns/parse "
           "(%.2f ns/byte), median %.1f [check %ld]\n",
           sizeof(bench_req) - 1, m.nheaders, ROUNDS * LOOPS, per[0],
           per[0] / (double)(sizeof(bench_req) - 1), per[ROUNDS / 2],
           sum / (ROUNDS * LOOPS));
}

/* ------------------------------------------------------------------------------------------ */

/* A relay that splices chunk data without reading it reports it with bl_h1_chunked_skip():
 * the framing scanned around skipped data ends where scanning every byte ends, and
 * bl_h1_chunked_data_left() is 0 everywhere but inside chunk data (a size line's digits are
 * not data). */
static void test_chunked_skip(void **state)
{
    (void)state;
    const char body[] = "5\r\nhello\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n";
    struct bl_h1_chunked c;
    bl_h1_chunked_init(&c);
    int done = 0;
    EXPECT_INT(bl_h1_chunked_data_left(&c), 0);
    EXPECT_INT(bl_h1_chunked_scan(&c, body, 5, &done), 5); /* "5\r\nhe" */
    EXPECT_INT(bl_h1_chunked_data_left(&c), 3);
    bl_h1_chunked_skip(&c, 3);
    EXPECT_INT(bl_h1_chunked_data_left(&c), 0);
    EXPECT_INT(bl_h1_chunked_scan(&c, body + 8, 4, &done), 4); /* "\r\n10" */
    EXPECT_INT(bl_h1_chunked_data_left(&c), 0);
    EXPECT_INT(bl_h1_chunked_scan(&c, body + 12, 6, &done), 6); /* ";x=y\r\n" */
    EXPECT_INT(bl_h1_chunked_data_left(&c), 16);
    bl_h1_chunked_skip(&c, 10);
    EXPECT_INT(bl_h1_chunked_data_left(&c), 6);
    EXPECT_INT(done, 0);
    size_t len = sizeof(body) - 1;
    EXPECT_INT(bl_h1_chunked_scan(&c, body + 28, len - 28, &done), (ssize_t)(len - 28));
    EXPECT_INT(done, 1);
    EXPECT_INT(c.data_bytes, 21);
    EXPECT_INT(bl_h1_chunked_data_left(&c), 0);
}

static int run_corpus(const char *group, const void *cases, size_t count, size_t size,
                      CMUnitTestFunction fn)
{
    struct CMUnitTest *tests = calloc(count, sizeof(*tests));
    for (size_t k = 0; k < count; k++) {
        const void *tc = (const char *)cases + k * size;
        tests[k].name = *(const char *const *)tc; /* every case struct starts with its name */
        tests[k].test_func = fn;
        tests[k].initial_state = (void *)(uintptr_t)tc;
    }
    int failed = _cmocka_run_group_tests(group, tests, count, NULL, NULL);
    free(tests);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        run_bench();
        return 0;
    }
    const struct CMUnitTest misc[] = {
        cmocka_unit_test(test_class_table),
        cmocka_unit_test(test_scan_every_byte),
        cmocka_unit_test(test_fields_own_then_heap),
        cmocka_unit_test(test_find_and_reuse),
        cmocka_unit_test(test_chunked_skip),
    };
    int failed = cmocka_run_group_tests_name("h1_misc", misc, NULL, NULL);
    failed += run_corpus("h1_valid_heads", req_valid, BL_ARRAY_LEN(req_valid), sizeof(req_valid[0]),
                         run_req_case);
    failed += run_corpus("h1_invalid_heads", req_invalid, BL_ARRAY_LEN(req_invalid),
                         sizeof(req_invalid[0]), run_req_case);
    failed += run_corpus("h1_chunked", ck_cases, BL_ARRAY_LEN(ck_cases), sizeof(ck_cases[0]),
                         run_ck_case);
    return failed ? 1 : 0;
}
