/* nginx-style variables in strings. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/proxy_proto.h"
#include "core/tls_hello.h"
#include "core/sock.h"
#include "http/h1_parser.h"
#include "http/template.h"

enum var_id {
    VAR_LITERAL = 0,
    VAR_HOST,
    VAR_HTTP_HOST,
    VAR_REMOTE_ADDR,
    VAR_REMOTE_PORT,
    VAR_PROXY_ADD_XFF,
    VAR_SCHEME,
    VAR_REQUEST_URI,
    VAR_URI,
    VAR_ARGS,
    VAR_IS_ARGS,
    VAR_REQUEST_METHOD,
    VAR_REQUEST,
    VAR_SERVER_PROTOCOL,
    VAR_HTTP2,
    VAR_SERVER_PORT,
    VAR_SERVER_ADDR,
    VAR_HOSTNAME,
    VAR_MSEC,
    VAR_PROXY_HOST,
    VAR_PROXY_PORT,
    VAR_REMOTE_USER,
    VAR_PID,
    VAR_TIME_LOCAL,
    VAR_TIME_ISO8601,
    VAR_REQUEST_ID,
    VAR_STATUS,
    VAR_BODY_BYTES_SENT,
    VAR_BYTES_SENT,
    VAR_REQUEST_LENGTH,
    VAR_REQUEST_TIME,
    VAR_UPSTREAM_ADDR,
    VAR_UPSTREAM_STATUS,
    VAR_UPSTREAM_RESPONSE_TIME,
    VAR_UPSTREAM_CONNECT_TIME,
    VAR_UPSTREAM_HEADER_TIME,
    VAR_CONNECTION_REQUESTS,
    VAR_SERVER_NAME,
    VAR_TRACE_ID,
    VAR_SPAN_ID,
    VAR_PARENT_ID,
    VAR_SSL_PROTOCOL,
    VAR_SSL_CIPHER,
    VAR_SSL_SERVER_NAME,
    VAR_SSL_CLIENT_VERIFY,          /* the five in BL_VAR_SSL_CLIENT_* order */
    VAR_SSL_CLIENT_S_DN,
    VAR_SSL_CLIENT_I_DN,
    VAR_SSL_CLIENT_SERIAL,
    VAR_SSL_CLIENT_FINGERPRINT,
    VAR_HTTPS,
    VAR_REALIP_REMOTE_ADDR,
    VAR_PP_ADDR,
    VAR_PP_PORT,
    VAR_PP_SERVER_ADDR,
    VAR_PP_SERVER_PORT,
    VAR_PREREAD_SERVER_NAME,
    VAR_PREREAD_ALPN,
    VAR_PREREAD_PROTOCOL,
    VAR_LIMIT_REQ_STATUS,
    VAR_LIMIT_CONN_STATUS,
    VAR_UPSTREAM_CACHE_STATUS,
    VAR_HTTP_,       /* $http_NAME */
    VAR_ARG_,        /* $arg_NAME */
    VAR_COOKIE_,     /* $cookie_NAME */
    VAR_CAPTURE,     /* $0..$9: len is the digit */
    VAR_USER,        /* set variable or named capture: len is the index, text the name */
};

static const struct {
    const char *name;
    enum var_id id;
} known_vars[] = {
    {"host", VAR_HOST},
    {"http_host", VAR_HTTP_HOST},
    {"remote_addr", VAR_REMOTE_ADDR},
    {"binary_remote_addr", VAR_REMOTE_ADDR},
    {"remote_port", VAR_REMOTE_PORT},
    {"proxy_add_x_forwarded_for", VAR_PROXY_ADD_XFF},
    {"scheme", VAR_SCHEME},
    {"request_uri", VAR_REQUEST_URI},
    {"uri", VAR_URI},
    {"document_uri", VAR_URI},
    {"args", VAR_ARGS},
    {"query_string", VAR_ARGS},
    {"is_args", VAR_IS_ARGS},
    {"request_method", VAR_REQUEST_METHOD},
    {"request", VAR_REQUEST},
    {"server_protocol", VAR_SERVER_PROTOCOL},
    {"http2", VAR_HTTP2},
    {"server_port", VAR_SERVER_PORT},
    {"server_addr", VAR_SERVER_ADDR},
    {"hostname", VAR_HOSTNAME},
    {"msec", VAR_MSEC},
    {"proxy_host", VAR_PROXY_HOST},
    {"proxy_port", VAR_PROXY_PORT},
    {"remote_user", VAR_REMOTE_USER},
    {"pid", VAR_PID},
    {"time_local", VAR_TIME_LOCAL},
    {"time_iso8601", VAR_TIME_ISO8601},
    {"request_id", VAR_REQUEST_ID},
    {"status", VAR_STATUS},
    {"body_bytes_sent", VAR_BODY_BYTES_SENT},
    {"bytes_sent", VAR_BYTES_SENT},
    {"request_length", VAR_REQUEST_LENGTH},
    {"request_time", VAR_REQUEST_TIME},
    {"bytes_received", VAR_REQUEST_LENGTH},    /* stream's names for a session */
    {"session_time", VAR_REQUEST_TIME},
    {"upstream_addr", VAR_UPSTREAM_ADDR},
    {"upstream_status", VAR_UPSTREAM_STATUS},
    {"upstream_response_time", VAR_UPSTREAM_RESPONSE_TIME},
    {"upstream_connect_time", VAR_UPSTREAM_CONNECT_TIME},
    {"upstream_header_time", VAR_UPSTREAM_HEADER_TIME},
    {"connection_requests", VAR_CONNECTION_REQUESTS},
    {"server_name", VAR_SERVER_NAME},
    {"trace_id", VAR_TRACE_ID},
    {"span_id", VAR_SPAN_ID},
    {"parent_id", VAR_PARENT_ID},
    /* the names nginx's OpenTelemetry module gives the same values */
    {"otel_trace_id", VAR_TRACE_ID},
    {"otel_span_id", VAR_SPAN_ID},
    {"otel_parent_id", VAR_PARENT_ID},
    /* TLS to clients */
    {"ssl_protocol", VAR_SSL_PROTOCOL},
    {"ssl_cipher", VAR_SSL_CIPHER},
    {"ssl_server_name", VAR_SSL_SERVER_NAME},
    {"ssl_client_verify", VAR_SSL_CLIENT_VERIFY},
    {"ssl_client_s_dn", VAR_SSL_CLIENT_S_DN},
    {"ssl_client_i_dn", VAR_SSL_CLIENT_I_DN},
    {"ssl_client_serial", VAR_SSL_CLIENT_SERIAL},
    {"ssl_client_fingerprint", VAR_SSL_CLIENT_FINGERPRINT},
    {"https", VAR_HTTPS},
    /* realip (http/realip.h) */
    {"realip_remote_addr", VAR_REALIP_REMOTE_ADDR},
    /* the PROXY protocol header the connection began with (core/proxy_proto.h) */
    {"proxy_protocol_addr", VAR_PP_ADDR},
    {"proxy_protocol_port", VAR_PP_PORT},
    {"proxy_protocol_server_addr", VAR_PP_SERVER_ADDR},
    {"proxy_protocol_server_port", VAR_PP_SERVER_PORT},
    /* stream ssl_preread (core/tls_hello.h) */
    {"ssl_preread_server_name", VAR_PREREAD_SERVER_NAME},
    {"ssl_preread_alpn_protocols", VAR_PREREAD_ALPN},
    {"ssl_preread_protocol", VAR_PREREAD_PROTOCOL},
    /* limits (src/policy/) */
    {"limit_req_status", VAR_LIMIT_REQ_STATUS},
    {"limit_conn_status", VAR_LIMIT_CONN_STATUS},
    /* the response cache (http/proxy_cache.c) */
    {"upstream_cache_status", VAR_UPSTREAM_CACHE_STATUS},
};

struct part {
    enum var_id id;
    const char *text;   /* literal text, or NAME of $http_NAME etc. */
    uint32_t len;
    uint32_t name_len;  /* VAR_USER: the name's length */
};

struct bl_template {
    char *source;
    size_t source_len;
    uint32_t nparts;
    int constant;
    struct part parts[];
};

static int is_var_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

struct bl_template *bl_template_compile(const char *text, char *err, size_t errlen)
{
    return bl_template_compile_vars(text, NULL, err, errlen);
}

/* $0..$9 and the config's own names (routing); 0 when name is neither. */
static int routing_var(const char *name, size_t nlen, const struct bl_var_names *names,
                       struct part *p)
{
    if (nlen == 1 && isdigit((unsigned char)name[0])) {
        *p = (struct part){VAR_CAPTURE, name, (uint32_t)(name[0] - '0'), 0};
        return 1;
    }
    for (uint32_t i = 0; names && i < names->n; i++)
        if (strlen(names->names[i]) == nlen && memcmp(names->names[i], name, nlen) == 0) {
            *p = (struct part){VAR_USER, name, i, (uint32_t)nlen};
            return 1;
        }
    return 0;
}

struct bl_template *bl_template_compile_vars(const char *text, const struct bl_var_names *names,
                                             char *err, size_t errlen)
{
    size_t len = strlen(text);
    /* At most one part per '$' and one literal between each: 2 * ($ count) + 1. */
    uint32_t max_parts = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '$')
            max_parts += 2;
    struct bl_template *t = calloc(1, sizeof(*t) + max_parts * sizeof(struct part));
    if (!t || !(t->source = strdup(text))) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->source_len = len;
    const char *s = t->source;
    size_t i = 0;
    while (i < len) {
        if (s[i] != '$') {
            size_t start = i;
            while (i < len && s[i] != '$')
                i++;
            t->parts[t->nparts++] = (struct part){VAR_LITERAL, s + start, (uint32_t)(i - start),
                                                  0};
            continue;
        }
        i++;
        int braced = i < len && s[i] == '{';
        if (braced)
            i++;
        size_t start = i;
        if (!braced && i < len && isdigit((unsigned char)s[i]))
            i++; /* "$1x" is capture 1 then "x", as in nginx */
        else
            while (i < len && is_var_char(s[i]))
                i++;
        size_t nlen = i - start;
        if (braced) {
            if (i >= len || s[i] != '}') {
                snprintf(err, errlen, "the closing bracket in \"%.*s\" variable is missing",
                         (int)nlen, s + start);
                bl_template_free(t);
                return NULL;
            }
            i++;
        }
        if (nlen == 0) {
            snprintf(err, errlen, "invalid variable name in \"%s\"", text);
            bl_template_free(t);
            return NULL;
        }
        const char *name = s + start;
        struct part p = {VAR_LITERAL, NULL, 0, 0};
        if (routing_var(name, nlen, names, &p)) {
            t->parts[t->nparts++] = p;
            continue;
        }
        for (size_t k = 0; k < sizeof(known_vars) / sizeof(known_vars[0]); k++)
            if (strlen(known_vars[k].name) == nlen && memcmp(known_vars[k].name, name, nlen) == 0)
                p.id = known_vars[k].id;
        if (p.id == VAR_LITERAL) {
            if (nlen > 5 && memcmp(name, "http_", 5) == 0)
                p = (struct part){VAR_HTTP_, name + 5, (uint32_t)(nlen - 5), 0};
            else if (nlen > 4 && memcmp(name, "arg_", 4) == 0)
                p = (struct part){VAR_ARG_, name + 4, (uint32_t)(nlen - 4), 0};
            else if (nlen > 7 && memcmp(name, "cookie_", 7) == 0)
                p = (struct part){VAR_COOKIE_, name + 7, (uint32_t)(nlen - 7), 0};
            else {
                snprintf(err, errlen, "unknown \"%.*s\" variable", (int)nlen, name);
                bl_template_free(t);
                return NULL;
            }
        }
        t->parts[t->nparts++] = p;
    }
    t->constant = 1;
    for (uint32_t k = 0; k < t->nparts; k++)
        if (t->parts[k].id != VAR_LITERAL)
            t->constant = 0;
    return t;
}

void bl_template_free(struct bl_template *t)
{
    if (!t)
        return;
    free(t->source);
    free(t);
}

int bl_template_is_constant(const struct bl_template *t) { return t->constant; }

const char *bl_template_text(const struct bl_template *t, size_t *len)
{
    if (len)
        *len = t->source_len;
    return t->source;
}

/* ------------------------------------------------------------ escaping */

/* Bytes each escape mode rewrites: escape=default as \xHH (nginx's ngx_http_log_escape()
 * table), escape=json with a backslash (ngx_escape_json()). */
static const uint8_t esc_default[256] = {
    [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x7f ... 0xff] = 1,
};
static const uint8_t esc_json[256] = {
    [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};

static const char hex_upper[] = "0123456789ABCDEF";

/* Where a value is written: out[0..cap) with pos counting every byte, written or not, so the
 * caller learns the full length. */
struct sink {
    char *out;
    size_t cap;
    size_t pos;
    uint8_t esc;      /* enum bl_escape */
};

static inline void raw(struct sink *s, const char *src, size_t n)
{
    if (s->pos < s->cap) {
        size_t room = s->cap - s->pos;
        memcpy(s->out + s->pos, src, n < room ? n : room);
    }
    s->pos += n;
}

/* The escape of one byte that needs one, into e; returns its length. */
static size_t escape_byte(uint8_t esc, unsigned char ch, char e[6])
{
    if (esc == BL_ESC_DEFAULT) {
        e[0] = '\\';
        e[1] = 'x';
        e[2] = hex_upper[ch >> 4];
        e[3] = hex_upper[ch & 0xf];
        return 4;
    }
    /* JSON (nginx's ngx_escape_json) */
    e[0] = '\\';
    switch (ch) {
    case '"': e[1] = '"'; return 2;
    case '\\': e[1] = '\\'; return 2;
    case '\n': e[1] = 'n'; return 2;
    case '\r': e[1] = 'r'; return 2;
    case '\t': e[1] = 't'; return 2;
    case '\b': e[1] = 'b'; return 2;
    case '\f': e[1] = 'f'; return 2;
    default:
        memcpy(e + 1, "u00", 3);
        e[4] = hex_upper[ch >> 4];
        e[5] = hex_upper[ch & 0xf];
        return 6;
    }
}

/* Eight bytes at a time: nonzero when some byte of w needs escaping in the mode (bit tricks of
 * "Bit Twiddling Hacks": a byte below n, a byte equal to c). A nonzero answer always has a
 * byte that needs it, so the byte loop after it stops within these eight. */
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t has_below(uint64_t w, uint64_t n) { return (w - ONES * n) & ~w & HIGHS; }
static inline uint64_t has_byte(uint64_t w, uint64_t c) { return has_below(w ^ (ONES * c), 1); }

static inline uint64_t word_needs_escape(uint64_t w, int dflt)
{
    uint64_t m = has_below(w, 0x20) | has_byte(w, '"') | has_byte(w, '\\');
    if (dflt)
        m |= (w & HIGHS) | has_byte(w, 0x7f);
    return m;
}

/* A value: escaped when the sink says so. Runs of plain bytes go in one copy. */
static void put(struct sink *s, const char *src, size_t n)
{
    if (s->esc == BL_ESC_RAW || s->esc == BL_ESC_NONE) {
        raw(s, src, n);
        return;
    }
    int dflt = s->esc == BL_ESC_DEFAULT;
    const uint8_t *table = dflt ? esc_default : esc_json;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        uint64_t w;
        while (i + 8 <= n && (memcpy(&w, src + i, 8), !word_needs_escape(w, dflt)))
            i += 8;
        while (i < n && !table[(unsigned char)src[i]])
            i++;
        if (i > start)
            raw(s, src + start, i - start);
        if (i < n) {
            char e[6];
            raw(s, e, escape_byte(s->esc, (unsigned char)src[i], e));
            i++;
        }
    }
}

size_t bl_escape(enum bl_escape esc, const char *str, size_t n, char *out, size_t cap)
{
    struct sink s = {out, cap, 0, (uint8_t)esc};
    put(&s, str, n);
    return s.pos;
}

/* ------------------------------------------------------------ values */

static inline char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c; }

/* $http_NAME: '_' in NAME matches '-' in the field name. */
static int header_name_eq(const struct bl_h1_header *h, const char *name, uint32_t len)
{
    if (h->name_len != len)
        return 0;
    for (uint32_t i = 0; i < len; i++) {
        char b = name[i] == '_' ? '-' : ascii_lower(name[i]);
        if (ascii_lower(h->name[i]) != b)
            return 0;
    }
    return 1;
}

/* Finds NAME=value in a list separated by sep ('&' for args, ';' for cookies). */
static int find_pair(const char *s, size_t len, char sep, const char *name, uint32_t nlen,
                     const char **val, size_t *vlen)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == sep))
            i++;
        size_t start = i;
        while (i < len && s[i] != sep)
            i++;
        const char *pair = s + start;
        size_t plen = i - start;
        if (plen > nlen && pair[nlen] == '=' && strncasecmp(pair, name, nlen) == 0) {
            *val = pair + nlen + 1;
            *vlen = plen - nlen - 1;
            return 1;
        }
    }
    return 0;
}

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* $remote_user: the user of "Authorization: Basic BASE64(user:password)", decoded as nginx's
 * ngx_http_auth_basic_user() does (decoding stops at '=', an invalid byte refuses it, a user
 * needs a ':' after it and at least one byte). Writes it into user (cap bytes) and returns its
 * length, or -1 when there is none. */
static long basic_user(const struct bl_h1_message *m, char *user, size_t cap)
{
    const struct bl_h1_header *h = NULL;
    for (uint32_t i = 0; m && m->method && i < m->nheaders && !h; i++)
        if (m->headers[i].name_len == 13 && strncasecmp(m->headers[i].name, "authorization", 13)
            == 0)
            h = &m->headers[i];
    if (!h || h->value_len < 6 || strncasecmp(h->value, "Basic ", 6) != 0)
        return -1;
    const char *s = h->value + 6;
    size_t n = h->value_len - 6;
    while (n && *s == ' ') {
        s++;
        n--;
    }
    size_t len = 0;
    while (len < n && s[len] != '=') {
        if (base64_value((unsigned char)s[len]) < 0)
            return -1;
        len++;
    }
    if (len == 0 || len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 6 | (uint32_t)base64_value((unsigned char)s[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char ch = (char)(acc >> bits & 0xff);
            if (ch == ':')
                return k ? (long)k : -1;
            if (k < cap)
                user[k] = ch;
            k++;
        }
    }
    return -1; /* no ':' */
}

/* Wall-clock time for the log, without a clock read per variable: the wall clock is read at
 * most once per second per thread and advanced by the loop's cached monotonic clock in
 * between; the texts are formatted once per second (thread-locals: docs/internals.md,
 * "Per-thread state"). */
static _Thread_local char time_local_text[32];
static _Thread_local char time_iso_text[32];
static _Thread_local size_t time_local_len, time_iso_len;
static _Thread_local uint64_t wall_base_us;     /* the wall clock at mono_base_us */
static _Thread_local uint64_t mono_base_us;
static _Thread_local uint64_t texts_until_us;   /* monotonic: the texts' second ends */

static uint64_t wall_now_us(void)
{
    if (bl_clock_us < mono_base_us || bl_clock_us >= texts_until_us || !wall_base_us) {
        wall_base_us = bl_wall_us();
        mono_base_us = bl_clock_us;
        time_t now = (time_t)(wall_base_us / 1000000);
        struct tm tm;
        localtime_r(&now, &tm);
        time_local_len = strftime(time_local_text, sizeof(time_local_text),
                                  "%d/%b/%Y:%H:%M:%S %z", &tm);
        /* nginx's $time_iso8601 writes the offset as +01:00 */
        char z[8];
        size_t l = strftime(time_iso_text, sizeof(time_iso_text), "%Y-%m-%dT%H:%M:%S", &tm);
        strftime(z, sizeof(z), "%z", &tm);
        snprintf(time_iso_text + l, sizeof(time_iso_text) - l, "%.3s:%.2s", z, z + 3);
        time_iso_len = strlen(time_iso_text);
        texts_until_us = mono_base_us + (1000000 - wall_base_us % 1000000);
    }
    return wall_base_us + (bl_clock_us - mono_base_us);
}

static void put_uint(struct sink *s, uint64_t v)
{
    char num[24];
    char *p = num + sizeof(num);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    raw(s, p, (size_t)(num + sizeof(num) - p));
}

/* Seconds with milliseconds, as nginx's "%T.%03M" (no printf on the log path). */
static void put_seconds(struct sink *s, uint64_t us)
{
    uint64_t ms = us / 1000;
    put_uint(s, ms / 1000);
    char frac[4] = {'.', (char)('0' + ms / 100 % 10), (char)('0' + ms / 10 % 10),
                    (char)('0' + ms % 10)};
    raw(s, frac, 4);
}

/* One $upstream_* value per try, separated by ", " as nginx separates retries. */
static int put_tries(struct sink *s, const struct bl_var_ctx *ctx, enum var_id id)
{
    const struct bl_var_resp *rv = ctx->resp;
    if (!rv || rv->ntries == 0)
        return 0;
    for (uint32_t i = 0; i < rv->ntries; i++) {
        const struct bl_upstream_try *t = &rv->tries[i];
        if (i)
            raw(s, ", ", 2);
        uint32_t us = BL_TRY_NONE;
        switch (id) {
        case VAR_UPSTREAM_ADDR:
            put(s, t->addr, strlen(t->addr));
            continue;
        case VAR_UPSTREAM_STATUS:
            if (t->status)
                put_uint(s, (uint64_t)t->status);
            else
                raw(s, "-", 1);
            continue;
        case VAR_UPSTREAM_CONNECT_TIME:
            us = t->connect_us;
            break;
        case VAR_UPSTREAM_HEADER_TIME:
            us = t->header_us;
            break;
        default:
            us = t->response_us;
            break;
        }
        if (us == BL_TRY_NONE)
            raw(s, "-", 1);
        else
            put_seconds(s, us);
    }
    return 1;
}

/* Writes variable p's value; returns 0 when it is "not found" (nothing was written). */
/* $0..$9 from the request's captures; set variables and named captures through its hook.
 * 0 when not found (nginx logs "-"). */
static int routing_value(struct sink *s, const struct part *p, const struct bl_var_ctx *ctx)
{
    if (p->id == VAR_CAPTURE) {
        const struct bl_captures *c = ctx->cap;
        if (!c || !c->re || p->len >= c->npairs || c->ovec[2 * p->len] == UINT32_MAX)
            return 0;
        put(s, c->subject + c->ovec[2 * p->len], c->ovec[2 * p->len + 1] - c->ovec[2 * p->len]);
        return 1;
    }
    size_t n = 0;
    const char *v = ctx->user_var ? ctx->user_var(ctx, p->len, p->text, p->name_len, &n) : NULL;
    if (!v)
        return 0;
    put(s, v, n);
    return 1;
}

static int put_var(struct sink *s, const struct part *p, const struct bl_var_ctx *ctx)
{
    const struct bl_h1_message *m = ctx->req && ctx->req->method ? ctx->req : NULL;
    char num[32];
    switch (p->id) {
    case VAR_LITERAL:
        return 1;
    case VAR_HOST:
        if (m && m->host) {
            /* nginx's $host: lowercase, without the port. */
            uint32_t n = m->host_len;
            if (m->host[0] != '[') {
                const char *colon = memchr(m->host, ':', n);
                if (colon)
                    n = (uint32_t)(colon - m->host);
            } else {
                const char *close = memchr(m->host, ']', n);
                if (close)
                    n = (uint32_t)(close - m->host + 1);
            }
            for (uint32_t i = 0; i < n; i++) {
                char c = (char)tolower((unsigned char)m->host[i]);
                put(s, &c, 1);
            }
        }
        return 1;
    case VAR_HTTP_HOST:
        if (m) {
            int i = bl_h1_find(m, BL_H1_HDR_HOST);
            if (i >= 0) {
                put(s, m->headers[i].value, m->headers[i].value_len);
                return 1;
            }
        }
        return 0;
    case VAR_REMOTE_ADDR:
        put(s, ctx->client_ip, ctx->client_ip_len);
        return 1;
    case VAR_REALIP_REMOTE_ADDR:
        if (ctx->realip_remote_addr)
            put(s, ctx->realip_remote_addr, ctx->realip_remote_addr_len);
        else
            put(s, ctx->client_ip, ctx->client_ip_len);
        return 1;
    case VAR_PP_ADDR:
    case VAR_PP_SERVER_ADDR: {
        /* not found without a header that named addresses (nginx: none, UNKNOWN, LOCAL) */
        if (!ctx->pp || !ctx->pp->has_addr)
            return 0;
        const char *a = p->id == VAR_PP_ADDR ? ctx->pp->src_ip : ctx->pp->dst_ip;
        put(s, a, strlen(a));
        return 1;
    }
    case VAR_PREREAD_SERVER_NAME:
    case VAR_PREREAD_ALPN:
    case VAR_PREREAD_PROTOCOL: {
        /* nginx: empty (not "not found") without a ClientHello or the field */
        if (!ctx->hello)
            return 1;
        const char *v = p->id == VAR_PREREAD_SERVER_NAME ? ctx->hello->server_name
                        : p->id == VAR_PREREAD_ALPN      ? ctx->hello->alpn
                                                         : ctx->hello->protocol;
        put(s, v, strlen(v));
        return 1;
    }
    case VAR_PP_PORT:
    case VAR_PP_SERVER_PORT:
        if (!ctx->pp || !ctx->pp->has_addr)
            return 0;
        put_uint(s, p->id == VAR_PP_PORT ? ctx->pp->src_port : ctx->pp->dst_port);
        return 1;
    case VAR_REMOTE_PORT:
        if (ctx->client_port) /* 0: realip took the address from a header without a port:
                               * nginx's value is empty then */
            put_uint(s, ctx->client_port);
        return 1;
    case VAR_REMOTE_USER: {
        char user[512];
        long n = basic_user(m, user, sizeof(user));
        if (n <= 0)
            return 0;
        put(s, user, (size_t)n < sizeof(user) ? (size_t)n : sizeof(user));
        return 1;
    }
    case VAR_PROXY_ADD_XFF: {
        int first = 1;
        if (m) {
            for (uint32_t i = 0; i < m->nheaders; i++) {
                if (m->headers[i].id != BL_H1_HDR_X_FORWARDED_FOR)
                    continue;
                if (!first)
                    put(s, ", ", 2);
                put(s, m->headers[i].value, m->headers[i].value_len);
                first = 0;
            }
        }
        if (!first)
            put(s, ", ", 2);
        put(s, ctx->client_ip, ctx->client_ip_len);
        return 1;
    }
    case VAR_SCHEME:
        if (ctx->ssl_protocol)
            put(s, "https", 5);
        else
            put(s, "http", 4);
        return 1;
    case VAR_HTTPS:
        if (ctx->ssl_protocol)
            put(s, "on", 2);
        return 1;
    case VAR_SSL_PROTOCOL:
    case VAR_SSL_CIPHER:
    case VAR_SSL_SERVER_NAME: {
        const char *v = p->id == VAR_SSL_PROTOCOL ? ctx->ssl_protocol
                        : p->id == VAR_SSL_CIPHER ? ctx->ssl_cipher
                                               : ctx->ssl_server_name;
        if (!v || !*v)
            return 0;
        put(s, v, strlen(v));
        return 1;
    }
    case VAR_LIMIT_REQ_STATUS:
    case VAR_LIMIT_CONN_STATUS:
    case VAR_UPSTREAM_CACHE_STATUS: {
        const char *v = p->id == VAR_LIMIT_REQ_STATUS    ? ctx->limit_req_status
                        : p->id == VAR_LIMIT_CONN_STATUS ? ctx->limit_conn_status
                                                         : ctx->upstream_cache_status;
        if (!v)
            return 0;
        put(s, v, strlen(v));
        return 1;
    }
    case VAR_SSL_CLIENT_VERIFY:
    case VAR_SSL_CLIENT_S_DN:
    case VAR_SSL_CLIENT_I_DN:
    case VAR_SSL_CLIENT_SERIAL:
    case VAR_SSL_CLIENT_FINGERPRINT: {
        char buf[1024];
        int n = ctx->ssl_client_var && ctx->tls
                    ? ctx->ssl_client_var(ctx->tls, (int)(p->id - VAR_SSL_CLIENT_VERIFY), buf,
                                          sizeof(buf))
                    : -1;
        if (n <= 0)
            return 0;
        put(s, buf, (size_t)n);
        return 1;
    }
    case VAR_PROXY_HOST:
        if (ctx->proxy_host)
            put(s, ctx->proxy_host, strlen(ctx->proxy_host));
        return 1;
    case VAR_PROXY_PORT:
        if (ctx->proxy_port)
            put(s, ctx->proxy_port, strlen(ctx->proxy_port));
        return 1;
    case VAR_REQUEST_URI:
        if (!m)
            return 0;
        if (m->flags & BL_H1_F_ABSOLUTE_FORM) {
            put(s, m->path, m->path_len);
            if (m->query) {
                put(s, "?", 1);
                put(s, m->query, m->query_len);
            }
        } else {
            put(s, m->target, m->target_len);
        }
        return 1;
    case VAR_URI:
        if (ctx->uri)
            put(s, ctx->uri, ctx->uri_len);
        else if (m)
            put(s, m->path, m->path_len);
        else
            return 0;
        return 1;
    case VAR_ARGS:
        if (ctx->args_set) { /* a rewrite changed them */
            put(s, ctx->args, ctx->args_len);
            return ctx->args_len != 0;
        }
        if (!m || !m->query)
            return 0;
        put(s, m->query, m->query_len);
        return 1;
    case VAR_IS_ARGS:
        if (ctx->args_set ? ctx->args_len != 0 : m && m->query)
            put(s, "?", 1);
        return 1;
    case VAR_REQUEST_METHOD:
        if (!m)
            return 0;
        put(s, m->method, m->method_len);
        return 1;
    case VAR_REQUEST:
        if (m) {
            put(s, m->method, m->method_len);
            put(s, " ", 1);
            put(s, m->target, m->target_len);
            if (ctx->http2)
                put(s, " HTTP/2.0", 9);
            else
                put(s, m->minor_version ? " HTTP/1.1" : " HTTP/1.0", 9);
            return 1;
        }
        if (ctx->raw_line) {
            put(s, ctx->raw_line, ctx->raw_line_len);
            return 1;
        }
        return 0;
    case VAR_SERVER_PROTOCOL:
        if (!m)
            return 0;
        if (ctx->http2)
            put(s, "HTTP/2.0", 8);
        else
            put(s, m->minor_version ? "HTTP/1.1" : "HTTP/1.0", 8);
        return 1;
    case VAR_HTTP2:
        if (!ctx->http2)
            return 0;
        put(s, ctx->http2, strlen(ctx->http2));
        return 1;
    case VAR_SERVER_PORT:
        put_uint(s, ctx->server_port);
        return 1;
    case VAR_SERVER_ADDR: {
        /* Looked up only when a template asks: a syscall, off the common path. */
        union bl_sockaddr sa;
        socklen_t len = sizeof(sa);
        char ip[64];
        if (ctx->fd >= 0 && getsockname(ctx->fd, &sa.sa, &len) == 0)
            put(s, ip, (size_t)bl_addr_format_ip(&sa.sa, ip, sizeof(ip)));
        return 1;
    }
    case VAR_HOSTNAME: {
        char hn[256];
        if (gethostname(hn, sizeof(hn)) == 0) {
            hn[sizeof(hn) - 1] = '\0';
            put(s, hn, strlen(hn));
        }
        return 1;
    }
    case VAR_PID: {
        static pid_t pid;   /* one process; written once with the same value by any thread */
        if (!pid)
            pid = getpid();
        put_uint(s, (uint64_t)pid);
        return 1;
    }
    case VAR_MSEC:
        put_seconds(s, wall_now_us());
        return 1;
    case VAR_TIME_LOCAL:
        wall_now_us();
        raw(s, time_local_text, time_local_len);
        return 1;
    case VAR_TIME_ISO8601:
        wall_now_us();
        raw(s, time_iso_text, time_iso_len);
        return 1;
    case VAR_REQUEST_ID:
        if (ctx->request_id)
            put(s, ctx->request_id, ctx->request_id_len);
        return 1;
    case VAR_CONNECTION_REQUESTS:
        put_uint(s, ctx->connection_requests);
        return 1;
    case VAR_SERVER_NAME:
        if (ctx->server_name)
            put(s, ctx->server_name, strlen(ctx->server_name));
        return 1;
    case VAR_TRACE_ID:
        if (!ctx->trace_id)
            return 0;
        raw(s, ctx->trace_id, 32);
        return 1;
    case VAR_SPAN_ID:
        if (!ctx->span_id)
            return 0;
        raw(s, ctx->span_id, 16);
        return 1;
    case VAR_PARENT_ID:
        if (!ctx->parent_id)
            return 0;
        raw(s, ctx->parent_id, 16);
        return 1;
    case VAR_STATUS:
        if (!ctx->resp)
            return 0;
        num[0] = (char)('0' + ctx->resp->status / 100 % 10);
        num[1] = (char)('0' + ctx->resp->status / 10 % 10);
        num[2] = (char)('0' + ctx->resp->status % 10);
        raw(s, num, 3);
        return 1;
    case VAR_BODY_BYTES_SENT:
    case VAR_BYTES_SENT:
    case VAR_REQUEST_LENGTH:
        if (!ctx->resp)
            return 0;
        put_uint(s, p->id == VAR_BODY_BYTES_SENT ? ctx->resp->body_bytes_sent
                    : p->id == VAR_BYTES_SENT    ? ctx->resp->bytes_sent
                                                 : ctx->resp->request_length);
        return 1;
    case VAR_REQUEST_TIME:
        if (!ctx->resp)
            return 0;
        put_seconds(s, ctx->resp->request_time_us);
        return 1;
    case VAR_UPSTREAM_ADDR:
    case VAR_UPSTREAM_STATUS:
    case VAR_UPSTREAM_RESPONSE_TIME:
    case VAR_UPSTREAM_CONNECT_TIME:
    case VAR_UPSTREAM_HEADER_TIME:
        return put_tries(s, ctx, p->id);
    case VAR_HTTP_:
        for (uint32_t i = 0; m && i < m->nheaders; i++) {
            if (header_name_eq(&m->headers[i], p->text, p->len)) {
                put(s, m->headers[i].value, m->headers[i].value_len);
                return 1;
            }
        }
        return 0;
    case VAR_ARG_: {
        const char *v, *q = ctx->args_set ? ctx->args : m ? m->query : NULL;
        size_t vl, ql = ctx->args_set ? ctx->args_len : m ? m->query_len : 0;
        if (q && find_pair(q, ql, '&', p->text, p->len, &v, &vl)) {
            put(s, v, vl);
            return 1;
        }
        return 0;
    }
    case VAR_CAPTURE:
    case VAR_USER:
        return routing_value(s, p, ctx);
    case VAR_COOKIE_:
        for (uint32_t i = 0; m && i < m->nheaders; i++) {
            const char *v;
            size_t vl;
            if (m->headers[i].name_len == 6 && strncasecmp(m->headers[i].name, "cookie", 6) == 0
                && find_pair(m->headers[i].value, m->headers[i].value_len, ';', p->text, p->len,
                             &v, &vl)) {
                put(s, v, vl);
                return 1;
            }
        }
        return 0;
    }
    return 1;
}

size_t bl_template_eval_esc(const struct bl_template *t, const struct bl_var_ctx *ctx,
                            enum bl_escape esc, char *out, size_t cap)
{
    struct sink s = {out, cap, 0, (uint8_t)esc};
    for (uint32_t k = 0; k < t->nparts; k++) {
        const struct part *p = &t->parts[k];
        if (p->id == VAR_LITERAL) {
            raw(&s, p->text, p->len);
            continue;
        }
        size_t before = s.pos;
        if (!put_var(&s, p, ctx) && esc == BL_ESC_DEFAULT && s.pos == before)
            raw(&s, "-", 1);
    }
    return s.pos;
}

size_t bl_template_eval(const struct bl_template *t, const struct bl_var_ctx *ctx, char *out,
                        size_t cap)
{
    return bl_template_eval_esc(t, ctx, BL_ESC_RAW, out, cap);
}
