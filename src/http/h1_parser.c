/* HTTP/1.x head parser and chunked-body scanner; the contract is in h1_parser.h. */
#include "http/h1_parser.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/status.h"

/* ---------------------------------------------------------------------------------------------
 * Character classes: one table, one bit per class, so that every hot loop is a load and a test.
 */
enum {
    H1_C_TCHAR  = 0x01, /* token (RFC 9110 5.6.2): methods, field names, codings */
    H1_C_VALUE  = 0x02, /* field-value / reason byte: VCHAR, obs-text, SP, HTAB */
    H1_C_TARGET = 0x04, /* request-target byte except '?': not CTL, SP or DEL (obs-text allowed) */
    H1_C_HEX    = 0x08,
    H1_C_HOST   = 0x10, /* uri-host [":" port]: unreserved, pct-encoded, sub-delims, ':', '[]' */
    H1_C_QDTEXT = 0x20, /* quoted-string qdtext (RFC 9110 5.6.4) */
    H1_C_OWS    = 0x40, /* SP, HTAB */
};

/* Generated from the RFC 9110 grammar; tests/unit/http/test_h1_parser.c rebuilds it from the
 * definitions above and compares. */
static const uint8_t h1_class[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* 0x00 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* 0x10 */
    0x62, 0x37, 0x06, 0x27, 0x37, 0x37, 0x37, 0x37, 0x36, 0x36, 0x37, 0x37, 0x36, 0x37, 0x37, 0x26,  /* 0x20 */
    0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x36, 0x36, 0x26, 0x36, 0x26, 0x22,  /* 0x30 */
    0x26, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37,  /* 0x40 */
    0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x36, 0x06, 0x36, 0x27, 0x37,  /* 0x50 */
    0x27, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37,  /* 0x60 */
    0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x26, 0x27, 0x26, 0x37, 0x00,  /* 0x70 */
    0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,  /* 0x80 */
    0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,  /* 0x90 */
    0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,  /* 0xa0 */
    0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,  /* 0xb0 */
    0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,  /* 0xc0 */
    0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,  /* 0xd0 */
    0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,  /* 0xe0 */
    0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,  /* 0xf0 */
};

static inline bool h1_is(unsigned char c, unsigned cls)
{
    return (h1_class[c] & cls) != 0;
}

/* The two long runs of a head, field values and request-targets, are scanned 16 bytes at a
 * time where SSE2 exists (every x86-64). Both return the first index in [i, end) whose byte is
 * not in the class, or end; they never read at or past end, nor before b. */
#ifdef __SSE2__
/* Bit k set: p[k] cannot be in a field value (a CTL other than HTAB, or DEL). */
static inline unsigned h1_value_bad16(const unsigned char *p)
{
    const __m128i c1f = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'),
                  del = _mm_set1_epi8(0x7f);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v); /* v <= 0x1f */
    __m128i bad = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(v, tab), ctl),
                               _mm_cmpeq_epi8(v, del));
    return (unsigned)_mm_movemask_epi8(bad);
}
#endif

static inline size_t h1_skip_value(const unsigned char *b, size_t i, size_t end)
{
#ifdef __SSE2__
    while (end - i >= 16) {
        unsigned mask = h1_value_bad16(b + i);
        if (mask)
            return i + (unsigned)__builtin_ctz(mask);
        i += 16;
    }
    /* The last bytes of the buffer in one load too, of the 16 that end at end: the bytes
     * before i in it were read already (they belong to the buffer), their bits shift out. */
    if (i < end && end >= 16) {
        unsigned mask = h1_value_bad16(b + end - 16) >> (16 - (end - i));
        return mask ? i + (unsigned)__builtin_ctz(mask) : end;
    }
#endif
    while (i < end && (h1_class[b[i]] & H1_C_VALUE))
        i++;
    return i;
}

#ifdef __SSE2__
/* Bit k set: p[k] ends a request-target run (CTL, SP, DEL or '?'). */
static inline unsigned h1_target_bad16(const unsigned char *p)
{
    const __m128i c20 = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f),
                  qm = _mm_set1_epi8('?');
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, c20), v), /* v <= 0x20 */
                               _mm_or_si128(_mm_cmpeq_epi8(v, del), _mm_cmpeq_epi8(v, qm)));
    return (unsigned)_mm_movemask_epi8(bad);
}
#endif

static inline size_t h1_skip_target(const unsigned char *b, size_t i, size_t end)
{
#ifdef __SSE2__
    while (end - i >= 16) {
        unsigned mask = h1_target_bad16(b + i);
        if (mask)
            return i + (unsigned)__builtin_ctz(mask);
        i += 16;
    }
    if (i < end && end >= 16) { /* as in h1_skip_value */
        unsigned mask = h1_target_bad16(b + end - 16) >> (16 - (end - i));
        return mask ? i + (unsigned)__builtin_ctz(mask) : end;
    }
#endif
    while (i < end && (h1_class[b[i]] & H1_C_TARGET))
        i++;
    return i;
}

/* Field names: the usual letters, digits and '-' 16 bytes at a time, then the other tchars
 * byte by byte; returns the first index in [i, end) that is not a tchar, or end. */
#ifdef __SSE2__
/* Bit k set: p[k] is not a letter, digit or '-'. */
static inline unsigned h1_name_other16(const unsigned char *p)
{
    const __m128i fold = _mm_set1_epi8(0x20), a1 = _mm_set1_epi8('a' - 1),
                  z1 = _mm_set1_epi8('z' + 1), d1 = _mm_set1_epi8('0' - 1),
                  d9 = _mm_set1_epi8('9' + 1), dash = _mm_set1_epi8('-');
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i l = _mm_or_si128(v, fold); /* signed compares: bytes >= 0x80 fail both */
    __m128i ok = _mm_or_si128(
        _mm_and_si128(_mm_cmpgt_epi8(l, a1), _mm_cmpgt_epi8(z1, l)),
        _mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(v, d1), _mm_cmpgt_epi8(d9, v)),
                     _mm_cmpeq_epi8(v, dash)));
    return (unsigned)_mm_movemask_epi8(ok) ^ 0xffffu;
}
#endif

static inline size_t h1_skip_name(const unsigned char *b, size_t i, size_t end)
{
#ifdef __SSE2__
    for (;;) {
        unsigned mask;
        if (end - i >= 16) {
            mask = h1_name_other16(b + i);
        } else if (i < end && end >= 16) { /* as in h1_skip_value */
            mask = h1_name_other16(b + end - 16) >> (16 - (end - i));
            if (!mask)
                return end;
        } else {
            break;
        }
        if (mask) {
            i += (unsigned)__builtin_ctz(mask);
            if (b[i] == ':') /* the usual end of a name, not a tchar */
                return i;
            break;
        }
        i += 16;
    }
#endif
    while (i < end && (h1_class[b[i]] & H1_C_TCHAR))
        i++;
    return i;
}

static inline unsigned char h1_lower(unsigned char c)
{
    return (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

/* a[0..n) equals lower[0..n) ignoring case; lower holds lower-case letters, digits and '-'.
 * OR-ing 0x20 folds only letters here because a and b come from tokens or field values, where
 * the control bytes that would also fold (CR to '-', 0x10 to '0') cannot occur. */
static inline uint64_t h1_load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t h1_load4(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint16_t h1_load2(const char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline bool h1_eq_lower(const char *a, const char *lower, size_t n)
{
    /* The same byte test eight bytes at a time (the last word overlapping the one before),
     * for the field names and tokens of 8 bytes or more: every header name of every message
     * goes through h1_header_id (bench/README.md, "Profile"). */
    if (n >= 8) {
        const uint64_t fold = 0x2020202020202020ull;
        size_t k = 0;
        for (; k + 8 <= n; k += 8)
            if ((h1_load8(a + k) | fold) != h1_load8(lower + k))
                return false;
        return k == n || (h1_load8(a + n - 8) | fold) == h1_load8(lower + n - 8);
    }
    if (n >= 4) { /* two words of four, overlapping */
        const uint32_t fold = 0x20202020u;
        return (h1_load4(a) | fold) == h1_load4(lower) &&
               (h1_load4(a + n - 4) | fold) == h1_load4(lower + n - 4);
    }
    for (size_t k = 0; k < n; k++)
        if (((unsigned char)a[k] | 0x20) != (unsigned char)lower[k])
            return false;
    return true;
}

/* Case-insensitive equality of two arbitrary byte strings of length n. */
static inline bool h1_eq_nocase(const char *a, const char *b, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (h1_lower((unsigned char)a[k]) != h1_lower((unsigned char)b[k]))
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Head parser states. Each call resumes at p->scanned in p->state; everything the state needs
 * from earlier bytes is either in p (line_start) or already stored in m.
 */
enum h1_state {
    H1_S_START        = 0,  /* request: before the request line, skipping empty lines */
    H1_S_START_LF     = 1,  /* request: CR of a leading empty line seen, LF expected */
    H1_S_METHOD       = 2,  /* in the method token */
    H1_S_TARGET_START = 3,  /* first byte after the SP that ends the method */
    H1_S_TARGET       = 4,  /* in the request-target */
    H1_S_VERSION      = 5,  /* request: "HTTP/1.x" CR, checked by position */
    H1_S_STATUS       = 6,  /* response: "HTTP/1.x SP 3DIGIT" then SP or CR, by position */
    H1_S_REASON       = 7,  /* response: reason-phrase */
    H1_S_LINE_LF      = 8,  /* CR ending the start line or a field line seen, LF expected */
    H1_S_FIELD        = 9,  /* start of a field line or of the empty line ending the head */
    H1_S_NAME         = 10, /* in a field name */
    H1_S_VALUE_OWS    = 11, /* after ':', skipping OWS */
    H1_S_VALUE        = 12, /* in a field value */
    H1_S_END_LF       = 13, /* CR of the empty line ending the head seen, LF expected */
    H1_S_DONE         = 14, /* head complete; m is valid */
    H1_S_ERROR        = 15, /* head invalid; p->error and p->reason say why */
};

static const char *const h1_state_names[] = {
    "start", "start-lf", "method", "target-start", "target", "version", "status", "reason",
    "line-lf", "field", "name", "value-ows", "value", "end-lf", "done", "error",
};

/* States inside a line whose length max_line bounds (CR not yet seen). */
#define H1_IN_LINE_MASK                                                                        \
    ((1u << H1_S_METHOD) | (1u << H1_S_TARGET_START) | (1u << H1_S_TARGET) |                  \
     (1u << H1_S_VERSION) | (1u << H1_S_STATUS) | (1u << H1_S_REASON) | (1u << H1_S_NAME) |   \
     (1u << H1_S_VALUE_OWS) | (1u << H1_S_VALUE))
#define H1_START_LINE_MASK                                                                     \
    ((1u << H1_S_METHOD) | (1u << H1_S_TARGET_START) | (1u << H1_S_TARGET) |                  \
     (1u << H1_S_VERSION) | (1u << H1_S_STATUS) | (1u << H1_S_REASON))

const char *bl_h1_parser_state_str(const struct bl_h1_parser *p)
{
    return p->state < BL_ARRAY_LEN(h1_state_names) ? h1_state_names[p->state] : "?";
}

/* A line's length is counted without its CRLF: a line of exactly max_line bytes is accepted. */
static inline bool h1_line_too_long(const struct bl_h1_parser *p, unsigned st, size_t i,
                                    size_t ls)
{
    return ((1u << st) & H1_IN_LINE_MASK) && i - ls > p->max_line;
}

static inline int h1_too_long(struct bl_h1_parser *p, unsigned st, size_t i)
{
    p->state = H1_S_ERROR;
    p->scanned = (uint32_t)i;
    if ((1u << st) & H1_START_LINE_MASK) {
        p->error = p->is_response ? 431 : 414;
        p->reason = p->is_response ? "status line too long" : "request line too long";
    } else {
        p->error = 431;
        p->reason = "header line too long";
    }
    return BL_ERR;
}

/* Fails the head at byte i. The line limit is checked first so that the error does not depend
 * on how the bytes were split across calls: a line longer than max_line is reported as such
 * whatever byte follows, exactly as it is when the call ends inside that line. */
static inline int h1_fail(struct bl_h1_parser *p, unsigned st, size_t i, size_t ls,
                          uint16_t status, const char *reason)
{
    if (h1_line_too_long(p, st, i, ls))
        return h1_too_long(p, st, i);
    p->state = H1_S_ERROR;
    p->scanned = (uint32_t)i;
    p->error = status;
    p->reason = reason;
    return BL_ERR;
}

void bl_h1_parser_init_request(struct bl_h1_parser *p, uint32_t max_line, uint32_t max_head)
{
    memset(p, 0, sizeof(*p));
    p->max_line = max_line;
    /* The head length is returned as an int. */
    p->max_head = max_head > INT32_MAX ? INT32_MAX : max_head;
    p->state = H1_S_START;
}

void bl_h1_parser_init_response(struct bl_h1_parser *p, uint32_t max_line, uint32_t max_head,
                                int head_request)
{
    bl_h1_parser_init_request(p, max_line, max_head);
    p->is_response = 1;
    p->head_request = head_request != 0;
    p->state = H1_S_STATUS;
}

static inline uint8_t h1_method_id(const char *s, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(s, "GET", 3) == 0) return BL_H1_M_GET;
        if (memcmp(s, "PUT", 3) == 0) return BL_H1_M_PUT;
        break;
    case 4:
        if (memcmp(s, "POST", 4) == 0) return BL_H1_M_POST;
        if (memcmp(s, "HEAD", 4) == 0) return BL_H1_M_HEAD;
        break;
    case 5:
        if (memcmp(s, "PATCH", 5) == 0) return BL_H1_M_PATCH;
        if (memcmp(s, "TRACE", 5) == 0) return BL_H1_M_TRACE;
        break;
    case 6:
        if (memcmp(s, "DELETE", 6) == 0) return BL_H1_M_DELETE;
        break;
    case 7:
        if (memcmp(s, "OPTIONS", 7) == 0) return BL_H1_M_OPTIONS;
        if (memcmp(s, "CONNECT", 7) == 0) return BL_H1_M_CONNECT;
        break;
    }
    return BL_H1_M_OTHER;
}

/* Well-known field names by length, then by a distinguishing byte. */
static inline uint8_t h1_header_id(const char *s, size_t n)
{
    unsigned c0 = (unsigned char)s[0] | 0x20;
    switch (n) {
    case 2:
        return h1_eq_lower(s, "te", 2) ? BL_H1_HDR_TE : BL_H1_HDR_OTHER;
    case 4:
        if (c0 == 'h')
            return h1_eq_lower(s, "host", 4) ? BL_H1_HDR_HOST : BL_H1_HDR_OTHER;
        return h1_eq_lower(s, "date", 4) ? BL_H1_HDR_DATE : BL_H1_HDR_OTHER;
    case 6:
        if (c0 == 'e')
            return h1_eq_lower(s, "expect", 6) ? BL_H1_HDR_EXPECT : BL_H1_HDR_OTHER;
        return h1_eq_lower(s, "server", 6) ? BL_H1_HDR_SERVER : BL_H1_HDR_OTHER;
    case 7:
        if (c0 == 'u')
            return h1_eq_lower(s, "upgrade", 7) ? BL_H1_HDR_UPGRADE : BL_H1_HDR_OTHER;
        return h1_eq_lower(s, "trailer", 7) ? BL_H1_HDR_TRAILER : BL_H1_HDR_OTHER;
    case 9:
        return h1_eq_lower(s, "x-real-ip", 9) ? BL_H1_HDR_X_REAL_IP : BL_H1_HDR_OTHER;
    case 10:
        switch (c0) {
        case 'c':
            return h1_eq_lower(s, "connection", 10) ? BL_H1_HDR_CONNECTION : BL_H1_HDR_OTHER;
        case 'k':
            return h1_eq_lower(s, "keep-alive", 10) ? BL_H1_HDR_KEEP_ALIVE : BL_H1_HDR_OTHER;
        case 't':
            return h1_eq_lower(s, "tracestate", 10) ? BL_H1_HDR_TRACESTATE : BL_H1_HDR_OTHER;
        }
        return BL_H1_HDR_OTHER;
    case 11:
        return h1_eq_lower(s, "traceparent", 11) ? BL_H1_HDR_TRACEPARENT : BL_H1_HDR_OTHER;
    case 14:
        return h1_eq_lower(s, "content-length", 14) ? BL_H1_HDR_CONTENT_LENGTH : BL_H1_HDR_OTHER;
    case 15:
        return h1_eq_lower(s, "x-forwarded-for", 15) ? BL_H1_HDR_X_FORWARDED_FOR
                                                      : BL_H1_HDR_OTHER;
    case 16:
        return h1_eq_lower(s, "proxy-connection", 16) ? BL_H1_HDR_PROXY_CONNECTION
                                                       : BL_H1_HDR_OTHER;
    case 17:
        if (c0 == 't')
            return h1_eq_lower(s, "transfer-encoding", 17) ? BL_H1_HDR_TRANSFER_ENCODING
                                                            : BL_H1_HDR_OTHER;
        return h1_eq_lower(s, "x-forwarded-proto", 17) ? BL_H1_HDR_X_FORWARDED_PROTO
                                                        : BL_H1_HDR_OTHER;
    }
    return BL_H1_HDR_OTHER;
}

/* Fields that are hop-by-hop whatever Connection says (RFC 9110 7.6.1). */
static const uint8_t h1_hop_by_id[BL_H1_HDR__COUNT] = {
    [BL_H1_HDR_CONNECTION] = 1, [BL_H1_HDR_KEEP_ALIVE] = 1, [BL_H1_HDR_PROXY_CONNECTION] = 1,
    [BL_H1_HDR_TE] = 1,         [BL_H1_HDR_TRAILER] = 1,    [BL_H1_HDR_UPGRADE] = 1,
};

/* Splits m->target into path, query and (absolute-form) host. m->query already points after
 * the first '?' if there was one. Returns 0 or a reason for a 400. */
static const char *h1_split_target(struct bl_h1_message *m)
{
    const char *t = m->target;
    const char *end = t + m->target_len;
    const char *qmark = m->query ? m->query - 1 : end;

    if (t[0] != '/') {
        /* scheme "://" authority [path]: absolute-form (RFC 9112 3.2.2) */
        const char *s = t;
        if ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z') {
            s++;
            while (s < qmark && (((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z') ||
                                 (*s >= '0' && *s <= '9') || *s == '+' || *s == '-' ||
                                 *s == '.'))
                s++;
        }
        if (s == t || qmark - s < 3 || memcmp(s, "://", 3) != 0) {
            /* asterisk-form or authority-form: no path/query split (RFC 9112 3.2.3, 3.2.4) */
            m->path = t;
            m->path_len = m->target_len;
            m->query = NULL;
            m->query_len = 0;
            return NULL;
        }
        size_t scheme_len = (size_t)(s - t);
        if (!((scheme_len == 4 && h1_eq_lower(t, "http", 4)) ||
              (scheme_len == 5 && h1_eq_lower(t, "https", 5))))
            return "unsupported scheme in request-target";
        const char *a = s + 3, *ae = a;
        while (ae < qmark && *ae != '/') {
            /* '@' (userinfo) is not a host byte: RFC 9110 4.2.4 says treat it as an error */
            if (!h1_is((unsigned char)*ae, H1_C_HOST))
                return "bad authority in request-target";
            ae++;
        }
        if (ae == a)
            return "empty authority in request-target";
        m->host = a;
        m->host_len = (uint32_t)(ae - a);
        m->flags |= BL_H1_F_ABSOLUTE_FORM;
        if (ae < qmark) {
            m->path = ae;
            m->path_len = (uint32_t)(qmark - ae);
        } else {
            /* "http://h" or "http://h?q": the origin-form path is "/" (RFC 9112 3.2.1). Not a
             * slice of the buffer, but static. */
            m->path = "/";
            m->path_len = 1;
        }
    } else {
        m->path = t;
        m->path_len = (uint32_t)(qmark - t);
    }
    if (m->query)
        m->query_len = (uint32_t)(end - m->query);
    return NULL;
}

/* Walks a comma-separated list value: returns the next element [*es, *ee) (OWS trimmed; may be
 * empty) and advances *pos past the comma (NULL after the last element). Returns false at the
 * end of the value. */
static inline bool h1_list_next(const char **pos, const char *end, const char **es,
                                const char **ee)
{
    const char *s = *pos;
    if (!s)
        return false;
    while (s < end && h1_is((unsigned char)*s, H1_C_OWS))
        s++;
    const char *e = s;
    while (e < end && *e != ',')
        e++;
    *pos = e < end ? e + 1 : NULL;
    while (e > s && h1_is((unsigned char)e[-1], H1_C_OWS))
        e--;
    *es = s;
    *ee = e;
    return true;
}

static inline bool h1_is_token(const char *s, const char *e)
{
    if (s == e)
        return false;
    for (; s < e; s++)
        if (!h1_is((unsigned char)*s, H1_C_TCHAR))
            return false;
    return true;
}

/* Content-Length: 1*DIGIT, or a list of equal such values (RFC 9110 8.6). A list is
 * narrowed to its first element in place: section 8.6 lets a recipient accept such a list
 * only by replacing it with the single value, and a backend that reads "1000,1000" its own
 * way would frame the body differently from ballast. */
static const char *h1_content_length(struct bl_h1_header *h, uint64_t *out)
{
    const char *pos = h->value, *end = h->value + h->value_len, *s, *e;
    const char *first_s = NULL, *first_e = NULL;
    bool any = false;
    uint64_t first = 0;

    /* The usual field, one plain number of at most 18 digits (no overflow possible), in one
     * pass; anything else goes the list way below. */
    if (h->value_len && h->value_len <= 18) {
        uint64_t v = 0;
        uint32_t k = 0;
        for (; k < h->value_len; k++) {
            unsigned d = (unsigned char)h->value[k] - '0';
            if (d > 9)
                break;
            v = v * 10 + d;
        }
        if (k == h->value_len) {
            *out = v;
            return NULL;
        }
    }

    while (h1_list_next(&pos, end, &s, &e)) {
        if (s == e)
            return "empty Content-Length";
        if (!any) {
            first_s = s;
            first_e = e;
        }
        uint64_t v = 0;
        for (; s < e; s++) {
            unsigned d = (unsigned char)*s - '0';
            if (d > 9)
                return "bad Content-Length";
            if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10)
                return "Content-Length overflow";
            v = v * 10 + d;
        }
        if (any && v != first)
            return "differing Content-Length values";
        first = v;
        any = true;
    }
    h->value = first_s;
    h->value_len = (uint32_t)(first_e - first_s);
    *out = first;
    return NULL;
}

/* Transfer-Encoding over all its fields, in order (RFC 9112 6.1). */
struct h1_te {
    unsigned codings;       /* non-empty list elements */
    unsigned chunked;       /* how many were "chunked" */
    bool last_chunked;      /* the last one was "chunked" */
    bool other_before;      /* a coding other than chunked came before the last one */
};

static const char *h1_transfer_encoding(const struct bl_h1_header *h, struct h1_te *te)
{
    const char *pos = h->value, *end = h->value + h->value_len, *s, *e;

    while (h1_list_next(&pos, end, &s, &e)) {
        if (s == e)
            continue; /* empty list elements are allowed (RFC 9110 5.6.1) */
        /* transfer-coding = token *( OWS ";" OWS transfer-parameter ) */
        const char *te_end = s;
        while (te_end < e && h1_is((unsigned char)*te_end, H1_C_TCHAR))
            te_end++;
        if (te_end == s || (te_end < e && !h1_is((unsigned char)*te_end, H1_C_OWS) &&
                            *te_end != ';'))
            return "bad Transfer-Encoding";
        if (te->codings && !te->last_chunked)
            te->other_before = true;
        /* "chunked" takes no parameters; "chunked;x=y" is some other coding */
        bool chunked = te_end == e && e - s == 7 && h1_eq_lower(s, "chunked", 7);
        te->codings++;
        te->chunked += chunked;
        te->last_chunked = chunked;
    }
    return NULL;
}

/* Connection: close / keep-alive / upgrade set flags; every other option names fields that
 * are hop-by-hop for this message (RFC 9110 7.6.1), wherever they are in the head. */
static const char *h1_connection(struct bl_h1_message *m, const struct bl_h1_header *h)
{
    const char *pos = h->value, *end = h->value + h->value_len, *s, *e;

    /* The usual value, one option that sets a flag, without the list walk: what the loop
     * below does with it (h1_eq_lower folds only letters here: '-' could only come from a CR,
     * which a value cannot hold). */
    if (h->value_len == 10 && h1_eq_lower(h->value, "keep-alive", 10)) {
        m->flags |= BL_H1_F_KEEPALIVE;
        return NULL;
    }
    if (h->value_len == 5 && h1_eq_lower(h->value, "close", 5)) {
        m->flags |= BL_H1_F_CLOSE;
        return NULL;
    }
    while (h1_list_next(&pos, end, &s, &e)) {
        if (s == e)
            continue;
        if (!h1_is_token(s, e))
            return "bad Connection option";
        size_t n = (size_t)(e - s);
        if (n == 5 && h1_eq_lower(s, "close", 5)) {
            m->flags |= BL_H1_F_CLOSE;
        } else if (n == 10 && h1_eq_lower(s, "keep-alive", 10)) {
            m->flags |= BL_H1_F_KEEPALIVE;
        } else if (n == 7 && h1_eq_lower(s, "upgrade", 7)) {
            m->flags |= BL_H1_F_UPGRADE;
        } else {
            for (unsigned k = 0; k < m->nheaders; k++) {
                struct bl_h1_header *o = &m->headers[k];
                /* Framing and routing fields stay whatever the client lists: dropping
                 * Content-Length or Transfer-Encoding while forwarding the body would
                 * desynchronise the upstream connection. */
                if (o->name_len == n && o->id != BL_H1_HDR_HOST &&
                    o->id != BL_H1_HDR_CONTENT_LENGTH &&
                    o->id != BL_H1_HDR_TRANSFER_ENCODING && h1_eq_nocase(o->name, s, n))
                    o->hop = 1;
            }
        }
    }
    return NULL;
}

/* The one Transfer-Encoding field's value is exactly "chunked" (the usual case, sent on
 * as it is). */
static bool h1_te_plain(const struct bl_h1_message *m)
{
    for (unsigned k = 0; k < m->nheaders; k++) {
        const struct bl_h1_header *h = &m->headers[k];
        if (h->id == BL_H1_HDR_TRANSFER_ENCODING)
            return h->value_len == 7 && memcmp(h->value, "chunked", 7) == 0;
    }
    return false;
}

size_t bl_h1_te_format(const struct bl_h1_message *m, char *out, size_t cap)
{
    static const char name[] = "Transfer-Encoding: ";
    size_t n = 0;
    bool first = true;
#define TE_PUT(src, len)                                                                     \
    do {                                                                                     \
        if (n + (len) <= cap)                                                                \
            memcpy(out + n, (src), (len));                                                   \
        n += (len);                                                                          \
    } while (0)
    TE_PUT(name, sizeof(name) - 1);
    for (unsigned k = 0; k < m->nheaders; k++) {
        const struct bl_h1_header *h = &m->headers[k];
        if (h->id != BL_H1_HDR_TRANSFER_ENCODING)
            continue;
        const char *pos = h->value, *end = h->value + h->value_len, *s, *e;
        while (h1_list_next(&pos, end, &s, &e)) {
            if (s == e)
                continue;
            if (!first)
                TE_PUT(", ", 2);
            first = false;
            if (e - s == 7 && h1_eq_lower(s, "chunked", 7))
                TE_PUT("chunked", 7);
            else
                TE_PUT(s, (size_t)(e - s));
        }
    }
    TE_PUT("\r\n", 2);
#undef TE_PUT
    return n;
}

/* The head is complete and syntactically valid: apply the field semantics (framing, Host,
 * Connection, Expect). Only the values of the fields concerned are read again. Returns 0 or
 * sets the error. */
static int h1_finish(struct bl_h1_parser *p, struct bl_h1_message *m)
{
    struct h1_te te = {0};
    unsigned hosts = 0, te_fields = 0;
    bool have_cl = false;
    uint64_t cl = 0;
    const char *why;

    for (unsigned k = 0; k < m->nheaders; k++) {
        struct bl_h1_header *h = &m->headers[k];
        switch (h->id) {
        case BL_H1_HDR_HOST:
            if (p->is_response)
                break;
            if (++hosts > 1) {
                why = "multiple Host fields";
                goto bad_400;
            }
            for (uint32_t j = 0; j < h->value_len; j++)
                if (!h1_is((unsigned char)h->value[j], H1_C_HOST)) {
                    why = "bad Host";
                    goto bad_400;
                }
            if (!(m->flags & BL_H1_F_ABSOLUTE_FORM)) {
                m->host = h->value;
                m->host_len = h->value_len;
            }
            break;
        case BL_H1_HDR_CONTENT_LENGTH: {
            uint64_t v;
            if ((why = h1_content_length(h, &v)) != NULL)
                goto bad_400;
            if (have_cl && v != cl) {
                why = "differing Content-Length values";
                goto bad_400;
            }
            h->hop = have_cl; /* a repeated equal field goes on once (RFC 9110 8.6) */
            have_cl = true;
            cl = v;
            break;
        }
        case BL_H1_HDR_TRANSFER_ENCODING:
            te_fields++;
            if ((why = h1_transfer_encoding(h, &te)) != NULL)
                goto bad_400;
            break;
        case BL_H1_HDR_CONNECTION:
            if ((why = h1_connection(m, h)) != NULL)
                goto bad_400;
            break;
        case BL_H1_HDR_EXPECT:
            /* HTTP/1.0 requests' 100-continue is ignored (RFC 9110 10.1.1) */
            if (!p->is_response && m->minor_version == 1 && h->value_len == 12 &&
                h1_eq_lower(h->value, "100-continue", 12))
                m->flags |= BL_H1_F_EXPECT_CONTINUE;
            break;
        }
    }

    if (!p->is_response && hosts == 0 && m->minor_version == 1) {
        why = "missing Host";
        goto bad_400;
    }

    if (te_fields) {
        if (have_cl) {
            why = "both Content-Length and Transfer-Encoding";
            goto bad_400;
        }
        /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing */
        if (m->minor_version == 0) {
            why = "Transfer-Encoding in HTTP/1.0";
            goto bad_400;
        }
        if (te.chunked > 1) {
            why = "chunked applied twice";
            goto bad_400;
        }
        if (!te.last_chunked) {
            why = "final transfer coding is not chunked";
            goto bad_400;
        }
        /* Codings before the final chunked (gzip, chunked) are the end's business: a proxy
         * frames by the final chunked and forwards them (RFC 9112 6.1), as HAProxy does.
         * Anything but one field saying exactly "chunked" is sent on rewritten as one
         * canonical list (bl_h1_te_format), so a backend cannot read the list its own way. */
        if (te.other_before)
            m->flags |= BL_H1_F_TE_CODINGS;
        if (te_fields > 1 || te.codings > 1 || !h1_te_plain(m))
            m->flags |= BL_H1_F_TE_REWRITE;
    }

    /* RFC 9112 6.3 */
    if (p->is_response && (p->head_request || m->status < 200 || m->status == 204 ||
                           m->status == 304))
        m->body = BL_H1_BODY_NONE;
    else if (te_fields)
        m->body = BL_H1_BODY_CHUNKED;
    else if (have_cl)
        m->body = BL_H1_BODY_LENGTH;
    else
        m->body = p->is_response ? BL_H1_BODY_CLOSE : BL_H1_BODY_NONE;
    m->content_length = have_cl ? cl : 0;

    if (m->minor_version == 1)
        m->keep_alive = !(m->flags & BL_H1_F_CLOSE);
    else
        m->keep_alive = (m->flags & (BL_H1_F_KEEPALIVE | BL_H1_F_CLOSE)) == BL_H1_F_KEEPALIVE;
    if (m->body == BL_H1_BODY_CLOSE)
        m->keep_alive = 0;
    return BL_OK;

bad_400:
    p->error = 400;
    p->reason = why;
    return BL_ERR;
}

/* Checks byte c at position k of "HTTP/1.x" (k < 8). The version numbers are checked once the
 * whole token has been seen, so that "HTTP/2.0" is a 505 and "HTTP/x" a 400. */
static inline bool h1_version_byte(unsigned char c, size_t k)
{
    if (k < 5)
        return c == (unsigned char)"HTTP/"[k];
    if (k == 6)
        return c == '.';
    return c >= '0' && c <= '9';
}

/* HTTP/1.x for any minor x: a higher minor version is processed as the highest this
 * implementation supports, 1.1 (RFC 9110 2.5); other majors get 505. */
static inline bool h1_version_ok(const unsigned char *v) { return v[5] == '1'; }

static inline uint8_t h1_minor(const unsigned char *v) { return v[7] == '0' ? 0 : 1; }

/* The array of a message without one of its own (room 0: never written), so that headers is
 * never NULL. */
static struct bl_h1_header h1_no_fields[1];

/* m's fields go to its own array again (none: room 0). */
static inline void h1_use_own(struct bl_h1_message *m)
{
    m->headers = m->own ? m->own : h1_no_fields;
    m->room = m->own_room;
}

void bl_h1_message_init(struct bl_h1_message *m, struct bl_h1_header *fields, uint16_t n)
{
    memset(m, 0, sizeof(*m));
    m->own = fields;
    m->own_room = fields ? (n < BL_H1_MAX_HEADERS ? n : BL_H1_MAX_HEADERS) : 0;
    h1_use_own(m);
}

void bl_h1_message_free(struct bl_h1_message *m)
{
    if (m->heap && m->headers == m->heap) {
        h1_use_own(m);
        m->nheaders = 0;
    }
    free(m->heap);
    m->heap = NULL;
}

/* The head has more fields than the owner's array holds: they move to the heap array, made
 * the first time. Cold: a usual head fits. */
static __attribute__((cold, noinline)) int h1_grow(struct bl_h1_message *m)
{
    if (!m->heap && !(m->heap = malloc(BL_H1_MAX_HEADERS * sizeof(*m->heap))))
        return BL_ERR;
    memcpy(m->heap, m->headers, m->nheaders * sizeof(*m->heap));
    m->headers = m->heap;
    m->room = BL_H1_MAX_HEADERS;
    return BL_OK;
}

int bl_h1_parse(struct bl_h1_parser *p, const char *buf, size_t len, struct bl_h1_message *m)
{
    if (bl_unlikely(p->state >= H1_S_DONE))
        return p->state == H1_S_DONE ? (int)m->head_len : BL_ERR;
    if (p->scanned == 0) {
        memset(m, 0, offsetof(struct bl_h1_message, room));
        h1_use_own(m);
    }

    const unsigned char *b = (const unsigned char *)buf;
    /* Bytes past max_head cannot belong to an acceptable head. */
    size_t end = len < p->max_head ? len : p->max_head;
    size_t i = p->scanned;
    size_t ls = p->line_start;
    unsigned st = p->state;
    struct bl_h1_header *h = &m->headers[m->nheaders]; /* a call resumes inside a field */

    while (i < end) {
        switch (st) {
        case H1_S_START:
            if (b[i] == '\r') {
                st = H1_S_START_LF;
                i++;
                break;
            }
            if (!h1_is(b[i], H1_C_TCHAR))
                return h1_fail(p, st, i, ls, 400,
                               b[i] == '\n' ? "bare LF" : "bad byte in method");
            ls = i;
            m->method = buf + i;
            st = H1_S_METHOD;
            i++;
            break;

        case H1_S_START_LF:
            if (b[i] != '\n')
                return h1_fail(p, st, i, ls, 400, "bare CR");
            st = H1_S_START;
            i++;
            break;

        case H1_S_METHOD:
            while (i < end && h1_is(b[i], H1_C_TCHAR))
                i++;
            if (i == end)
                break;
            if (b[i] != ' ')
                return h1_fail(p, st, i, ls, 400, "bad byte in method");
            m->method_len = (uint32_t)(i - ls);
            m->method_id = h1_method_id(m->method, m->method_len);
            st = H1_S_TARGET_START;
            i++;
            break;

        case H1_S_TARGET_START:
            if (!h1_is(b[i], H1_C_TARGET) && b[i] != '?')
                return h1_fail(p, st, i, ls, 400, "bad request-target");
            m->target = buf + i;
            st = H1_S_TARGET;
            /* fall through */
        case H1_S_TARGET:
            for (;;) {
                i = h1_skip_target(b, i, end);
                if (i == end || b[i] != '?')
                    break;
                if (!m->query)
                    m->query = buf + i + 1;
                i++;
            }
            if (i == end)
                break;
            if (b[i] != ' ')
                return h1_fail(p, st, i, ls, 400, "bad byte in request-target");
            m->target_len = (uint32_t)(buf + i - m->target);
            {
                const char *why = h1_split_target(m);
                if (why)
                    return h1_fail(p, st, i, ls, 400, why);
            }
            st = H1_S_VERSION;
            i++;
            break;

        case H1_S_VERSION: {
            size_t vs = (size_t)(m->target + m->target_len + 1 - buf);
            size_t k = i - vs;
            if (k == 0 && end - i >= 8 && h1_load8((const char *)b + i) == h1_load8("HTTP/1.1")) {
                /* The usual version in one step: the bytes the loop below accepts; and its
                 * CR too when it is there and the line is not too long. */
                if (end - i >= 9 && b[i + 8] == '\r' && i + 8 - ls <= p->max_line) {
                    m->minor_version = 1;
                    st = H1_S_LINE_LF;
                    i += 9;
                    if (i < end)
                        goto line_lf;
                    break;
                }
                i += 8;
                break;
            }
            if (k < 8) {
                if (!h1_version_byte(b[i], k))
                    return h1_fail(p, st, i, ls, 400, "bad HTTP version");
                i++;
                break;
            }
            if (b[i] != '\r')
                return h1_fail(p, st, i, ls, 400, "bad request line");
            if (i - ls > p->max_line)
                return h1_too_long(p, st, i);
            if (!h1_version_ok(b + vs))
                return h1_fail(p, st, i, ls, 505, "unsupported HTTP version");
            m->minor_version = h1_minor(b + vs);
            st = H1_S_LINE_LF;
            i++;
            break;
        }

        case H1_S_STATUS: {
            size_t k = i - ls;
            unsigned char c = b[i];
            if (k == 0 && end - i >= 8 && h1_load8((const char *)b + i) == h1_load8("HTTP/1.1")) {
                /* As in H1_S_VERSION; with "SP 3DIGIT SP" after it (the usual status line),
                 * up to the reason in one step: what the byte loop below accepts. */
                if (end - i >= 13 && b[i + 8] == ' ' && b[i + 9] >= '1' && b[i + 9] <= '5' &&
                    b[i + 10] >= '0' && b[i + 10] <= '9' && b[i + 11] >= '0' &&
                    b[i + 11] <= '9' && b[i + 12] == ' ') {
                    m->minor_version = 1;
                    m->status = (uint16_t)((b[i + 9] - '0') * 100 + (b[i + 10] - '0') * 10 +
                                           (b[i + 11] - '0'));
                    m->reason = buf + i + 13;
                    st = H1_S_REASON;
                    i += 13;
                    if (i < end)
                        goto reason;
                    break;
                }
                i += 8;
                break;
            }
            if (k < 8) {
                if (!h1_version_byte(c, k))
                    return h1_fail(p, st, i, ls, 400, "bad HTTP version");
            } else if (k == 8) {
                if (c != ' ')
                    return h1_fail(p, st, i, ls, 400, "bad status line");
                if (!h1_version_ok(b + ls))
                    return h1_fail(p, st, i, ls, 505, "unsupported HTTP version");
                m->minor_version = h1_minor(b + ls);
            } else if (k < 12) {
                if (c < '0' || c > '9' || (k == 9 && (c < '1' || c > '5')))
                    return h1_fail(p, st, i, ls, 400, "bad status code");
            } else {
                m->status = (uint16_t)((b[ls + 9] - '0') * 100 + (b[ls + 10] - '0') * 10 +
                                       (b[ls + 11] - '0'));
                if (c == ' ') {
                    m->reason = buf + i + 1;
                    st = H1_S_REASON;
                } else if (c == '\r') {
                    if (k > p->max_line)
                        return h1_too_long(p, st, i);
                    /* "HTTP/1.1 200" CRLF: the SP before an empty reason is often omitted */
                    m->reason = buf + i;
                    st = H1_S_LINE_LF;
                } else {
                    return h1_fail(p, st, i, ls, 400, "bad status line");
                }
            }
            i++;
            break;
        }

        case H1_S_REASON:
        reason:
            i = h1_skip_value(b, i, end);
            if (i == end)
                break;
            if (b[i] != '\r')
                return h1_fail(p, st, i, ls, 400, "bad byte in reason phrase");
            if (i - ls > p->max_line)
                return h1_too_long(p, st, i);
            m->reason_len = (uint32_t)(buf + i - m->reason);
            st = H1_S_LINE_LF;
            i++;
            if (i < end)
                goto line_lf;
            break;

        /* A field line runs FIELD, NAME, VALUE_OWS, VALUE, LINE_LF by falling through, each
         * state going on as long as bytes are left: one trip round the loop per line instead
         * of one per state (bench/README.md, "Profile"). */
        case H1_S_FIELD:
        field:
            if (b[i] == '\r') {
                st = H1_S_END_LF;
                i++;
                if (i < end)
                    goto end_lf;
                break;
            }
            if (!h1_is(b[i], H1_C_TCHAR)) {
                const char *why = b[i] == ' ' || b[i] == '\t'
                                      ? (m->nheaders ? "obs-fold" : "whitespace before field")
                                  : b[i] == '\n' ? "bare LF"
                                                 : "bad byte in field name";
                return h1_fail(p, st, i, ls, 400, why);
            }
            if (bl_unlikely(m->nheaders == m->room)) {
                if (m->room == BL_H1_MAX_HEADERS)
                    return h1_fail(p, st, i, ls, 431, "too many header fields");
                if (h1_grow(m) != BL_OK)
                    return h1_fail(p, st, i, ls, 500, "out of memory for header fields");
            }
            ls = i;
            h = &m->headers[m->nheaders];
            h->name = buf + i;
            st = H1_S_NAME;
            i++;
            /* fall through */
        case H1_S_NAME:
            i = h1_skip_name(b, i, end);
            if (i == end)
                break;
            /* The usual ": " with the value's first byte after it: what NAME and VALUE_OWS
             * below accept, in one test. */
            if (end - i >= 3 && h1_load2((const char *)b + i) == h1_load2(": ") &&
                b[i + 2] > ' ' && i - ls <= UINT16_MAX) {
                h->name_len = (uint16_t)(i - ls);
                i += 2;
                h->value = buf + i;
                st = H1_S_VALUE;
                goto value;
            }
            if (b[i] != ':')
                return h1_fail(p, st, i, ls, 400,
                               h1_is(b[i], H1_C_OWS) ? "whitespace before colon"
                                                     : "bad byte in field name");
            if (i - ls > UINT16_MAX)
                return h1_too_long(p, st, i);
            h->name_len = (uint16_t)(i - ls);
            st = H1_S_VALUE_OWS;
            i++;
            /* fall through */
        case H1_S_VALUE_OWS:
            while (i < end && h1_is(b[i], H1_C_OWS))
                i++;
            if (i == end)
                break;
            h->value = buf + i;
            st = H1_S_VALUE;
            /* fall through */
        case H1_S_VALUE:
        value:
            i = h1_skip_value(b, i, end);
            if (i == end)
                break;
            if (b[i] != '\r')
                return h1_fail(p, st, i, ls, 400,
                               b[i] == '\n' ? "bare LF" : "control byte in field value");
            if (i - ls > p->max_line)
                return h1_too_long(p, st, i);
            {
                const char *ve = buf + i;
                while (ve > h->value && h1_is((unsigned char)ve[-1], H1_C_OWS))
                    ve--;
                h->value_len = (uint32_t)(ve - h->value);
            }
            h->id = h1_header_id(h->name, h->name_len);
            h->hop = h1_hop_by_id[h->id];
            m->nheaders++;
            st = H1_S_LINE_LF;
            i++;
            if (i == end)
                break;
            /* fall through */
        case H1_S_LINE_LF:
        line_lf:
            if (b[i] != '\n')
                return h1_fail(p, st, i, ls, 400, "bare CR");
            st = H1_S_FIELD;
            i++;
            /* the next line without a trip round the loop (bench/README.md, "Profile") */
            if (i < end)
                goto field;
            break;

        case H1_S_END_LF:
        end_lf:
            if (b[i] != '\n')
                return h1_fail(p, st, i, ls, 400, "bare CR");
            i++;
            m->head_len = (uint32_t)i;
            p->scanned = (uint32_t)i;
            p->line_start = (uint32_t)ls;
            if (h1_finish(p, m) != BL_OK) {
                p->state = H1_S_ERROR;
                return BL_ERR;
            }
            p->state = H1_S_DONE;
            return (int)i;
        }
    }

    p->scanned = (uint32_t)i;
    p->line_start = (uint32_t)ls;
    p->state = (uint8_t)st;
    if (h1_line_too_long(p, st, i, ls))
        return h1_too_long(p, st, i);
    if (len >= p->max_head)
        return h1_fail(p, st, i, ls, 431, "head too large");
    return BL_AGAIN;
}

int bl_h1_find(const struct bl_h1_message *m, enum bl_h1_hdr_id id)
{
    for (unsigned k = 0; k < m->nheaders; k++)
        if (m->headers[k].id == id)
            return (int)k;
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Chunked body scanner (RFC 9112 7.1). Unlike the head parser it sees each byte once and
 * keeps no pointer into earlier buffers: everything it needs is in struct bl_h1_chunked.
 */
enum h1_chunk_state {
    H1_CK_SIZE_START = 0,   /* first byte of a chunk-size line: a hex digit */
    H1_CK_SIZE,             /* in the hex digits */
    H1_CK_SIZE_BWS,         /* whitespace after the size: only allowed before ';' */
    H1_CK_EXT_START,        /* after ';': BWS, then an extension name */
    H1_CK_EXT_NAME,         /* in an extension name */
    H1_CK_EXT_NAME_BWS,     /* whitespace after a name: '=', ';' or CR follows */
    H1_CK_EXT_VAL_START,    /* after '=': BWS, then a token or a quoted-string */
    H1_CK_EXT_VAL_TOKEN,    /* in a token value */
    H1_CK_EXT_VAL_QUOTED,   /* in a quoted-string value */
    H1_CK_EXT_VAL_QPAIR,    /* after '\' in a quoted-string */
    H1_CK_EXT_VAL_END,      /* after a value: BWS, then ';' or CR */
    H1_CK_SIZE_LF,          /* CR ending the size line seen, LF expected */
    H1_CK_DATA,             /* in chunk data, c->remaining bytes left */
    H1_CK_DATA_CR,          /* chunk data done, CR expected */
    H1_CK_DATA_LF,          /* LF expected after chunk data */
    H1_CK_TRAILER,          /* start of a trailer line or of the final empty line */
    H1_CK_TRAILER_NAME,     /* in a trailer field name */
    H1_CK_TRAILER_VALUE,    /* after the colon: field value (with its OWS) */
    H1_CK_TRAILER_LF,       /* CR ending a trailer line seen, LF expected */
    H1_CK_END_LF,           /* CR of the final empty line seen, LF expected */
    H1_CK_DONE,             /* body complete */
    H1_CK_ERROR,            /* bad framing; c->reason says why */
};

static const char *const h1_chunk_state_names[] = {
    "size-start", "size", "size-bws", "ext-start", "ext-name", "ext-name-bws",
    "ext-val-start", "ext-val-token", "ext-val-quoted", "ext-val-qpair", "ext-val-end",
    "size-lf", "data", "data-cr", "data-lf", "trailer", "trailer-name", "trailer-value",
    "trailer-lf", "end-lf", "done", "error",
};

#define H1_CK_MAX_LINE     4096
#define H1_CK_MAX_TRAILERS 100

/* States inside a size line or a trailer line (whose value part counts itself). */
#define H1_CK_LINE_MASK                                                                        \
    (((1u << (H1_CK_EXT_VAL_END + 1)) - 1) | (1u << H1_CK_TRAILER) | (1u << H1_CK_TRAILER_NAME))

const char *bl_h1_chunked_state_str(const struct bl_h1_chunked *c)
{
    return c->state < BL_ARRAY_LEN(h1_chunk_state_names) ? h1_chunk_state_names[c->state]
                                                         : "?";
}

void bl_h1_chunked_init(struct bl_h1_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = H1_CK_SIZE_START;
}

uint64_t bl_h1_chunked_data_left(const struct bl_h1_chunked *c)
{
    return c->state == H1_CK_DATA ? c->remaining : 0;
}

void bl_h1_chunked_skip(struct bl_h1_chunked *c, uint64_t n)
{
    c->remaining -= n;
    c->data_bytes += n;
    if (c->remaining == 0)
        c->state = H1_CK_DATA_CR;
}

static inline ssize_t h1_ck_fail(struct bl_h1_chunked *c, const char *reason)
{
    c->state = H1_CK_ERROR;
    c->reason = reason;
    return BL_ERR;
}

static inline unsigned h1_hex_value(unsigned char ch)
{
    return ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
}

ssize_t bl_h1_chunked_scan(struct bl_h1_chunked *c, const char *buf, size_t len, int *done)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = 0;
    unsigned st = c->state;

    *done = 0;
    if (bl_unlikely(st >= H1_CK_DONE)) {
        *done = st == H1_CK_DONE;
        return st == H1_CK_DONE ? 0 : BL_ERR;
    }

    while (i < len) {
        unsigned char ch = b[i];

        /* Size and trailer lines are bounded; the CR ending them is not counted. */
        if (((1u << st) & H1_CK_LINE_MASK) && ch != '\r' && ++c->line_len > H1_CK_MAX_LINE)
            return h1_ck_fail(c, "chunk line too long");

        switch (st) {
        case H1_CK_SIZE_START:
            if (!h1_is(ch, H1_C_HEX))
                return h1_ck_fail(c, "bad chunk size");
            c->remaining = h1_hex_value(ch);
            st = H1_CK_SIZE;
            i++;
            break;

        case H1_CK_SIZE:
            if (h1_is(ch, H1_C_HEX)) {
                if (c->remaining >> 58)
                    return h1_ck_fail(c, "chunk size too large");
                c->remaining = (c->remaining << 4) | h1_hex_value(ch);
            } else if (ch == '\r') {
                st = H1_CK_SIZE_LF;
            } else if (ch == ';') {
                st = H1_CK_EXT_START;
            } else if (h1_is(ch, H1_C_OWS)) {
                st = H1_CK_SIZE_BWS;
            } else {
                return h1_ck_fail(c, "bad chunk size");
            }
            i++;
            break;

        case H1_CK_SIZE_BWS:
            if (ch == ';')
                st = H1_CK_EXT_START;
            else if (!h1_is(ch, H1_C_OWS))
                return h1_ck_fail(c, "whitespace after chunk size");
            i++;
            break;

        case H1_CK_EXT_START:
            if (h1_is(ch, H1_C_TCHAR))
                st = H1_CK_EXT_NAME;
            else if (!h1_is(ch, H1_C_OWS))
                return h1_ck_fail(c, "bad chunk extension");
            i++;
            break;

        case H1_CK_EXT_NAME:
        case H1_CK_EXT_VAL_TOKEN:
            if (h1_is(ch, H1_C_TCHAR))
                ;
            else if (ch == '=' && st == H1_CK_EXT_NAME)
                st = H1_CK_EXT_VAL_START;
            else if (ch == ';')
                st = H1_CK_EXT_START;
            else if (ch == '\r')
                st = H1_CK_SIZE_LF;
            else if (h1_is(ch, H1_C_OWS))
                st = st == H1_CK_EXT_NAME ? H1_CK_EXT_NAME_BWS : H1_CK_EXT_VAL_END;
            else
                return h1_ck_fail(c, "bad chunk extension");
            i++;
            break;

        case H1_CK_EXT_NAME_BWS:
        case H1_CK_EXT_VAL_END:
            if (ch == '=' && st == H1_CK_EXT_NAME_BWS)
                st = H1_CK_EXT_VAL_START;
            else if (ch == ';')
                st = H1_CK_EXT_START;
            else if (ch == '\r')
                st = H1_CK_SIZE_LF;
            else if (!h1_is(ch, H1_C_OWS))
                return h1_ck_fail(c, "bad chunk extension");
            i++;
            break;

        case H1_CK_EXT_VAL_START:
            if (h1_is(ch, H1_C_TCHAR))
                st = H1_CK_EXT_VAL_TOKEN;
            else if (ch == '"')
                st = H1_CK_EXT_VAL_QUOTED;
            else if (!h1_is(ch, H1_C_OWS))
                return h1_ck_fail(c, "bad chunk extension value");
            i++;
            break;

        case H1_CK_EXT_VAL_QUOTED:
            if (ch == '"')
                st = H1_CK_EXT_VAL_END;
            else if (ch == '\\')
                st = H1_CK_EXT_VAL_QPAIR;
            else if (!h1_is(ch, H1_C_QDTEXT))
                return h1_ck_fail(c, "bad chunk extension value");
            i++;
            break;

        case H1_CK_EXT_VAL_QPAIR:
            /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ): the field-value class */
            if (!h1_is(ch, H1_C_VALUE))
                return h1_ck_fail(c, "bad chunk extension value");
            st = H1_CK_EXT_VAL_QUOTED;
            i++;
            break;

        case H1_CK_SIZE_LF:
            if (ch != '\n')
                return h1_ck_fail(c, "bare CR in chunk size line");
            c->line_len = 0;
            st = c->remaining ? H1_CK_DATA : H1_CK_TRAILER;
            i++;
            break;

        case H1_CK_DATA: {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            i += n;
            c->remaining -= n;
            c->data_bytes += n;
            if (c->remaining == 0)
                st = H1_CK_DATA_CR;
            break;
        }

        case H1_CK_DATA_CR:
            if (ch != '\r')
                return h1_ck_fail(c, "no CRLF after chunk data");
            st = H1_CK_DATA_LF;
            i++;
            break;

        case H1_CK_DATA_LF:
            if (ch != '\n')
                return h1_ck_fail(c, "no CRLF after chunk data");
            st = H1_CK_SIZE_START;
            i++;
            break;

        case H1_CK_TRAILER:
            if (ch == '\r') {
                st = H1_CK_END_LF;
            } else if (h1_is(ch, H1_C_TCHAR)) {
                if (c->ntrailers == H1_CK_MAX_TRAILERS)
                    return h1_ck_fail(c, "too many trailer fields");
                st = H1_CK_TRAILER_NAME;
            } else {
                return h1_ck_fail(c, h1_is(ch, H1_C_OWS) ? "obs-fold in trailer"
                                                         : "bad byte in trailer name");
            }
            i++;
            break;

        case H1_CK_TRAILER_NAME:
            if (ch == ':')
                st = H1_CK_TRAILER_VALUE;
            else if (!h1_is(ch, H1_C_TCHAR))
                return h1_ck_fail(c, "bad byte in trailer name");
            i++;
            break;

        case H1_CK_TRAILER_VALUE: {
            size_t s = i;
            i = h1_skip_value(b, i, len);
            if (i - s > H1_CK_MAX_LINE - c->line_len)
                return h1_ck_fail(c, "chunk line too long");
            c->line_len += (uint32_t)(i - s);
            if (i == len)
                break;
            if (b[i] != '\r')
                return h1_ck_fail(c, "control byte in trailer");
            st = H1_CK_TRAILER_LF;
            i++;
            break;
        }

        case H1_CK_TRAILER_LF:
            if (ch != '\n')
                return h1_ck_fail(c, "bare CR in trailer");
            c->ntrailers++;
            c->line_len = 0;
            st = H1_CK_TRAILER;
            i++;
            break;

        case H1_CK_END_LF:
            if (ch != '\n')
                return h1_ck_fail(c, "bare CR at end of chunked body");
            c->state = H1_CK_DONE;
            *done = 1;
            return (ssize_t)(i + 1);
        }
    }
    c->state = (uint8_t)st;
    return (ssize_t)len;
}
