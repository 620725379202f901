/* Protocol-aware active checks: what a redis, mysql or tcp send/expect probe sends, and the
 * verdict on what it received (contracts in health_check.h). Kept apart from the prober so the
 * judging is a pure function the unit tests drive byte by byte. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/regex.h"
#include "core/status.h"
#include "upstream/health_check.h"

/* Pipelined: one round trip; a server that needs AUTH answers -NOAUTH to both. */
static const char REDIS_PING[] = "PING\r\n";
static const char REDIS_PING_INFO[] = "PING\r\nINFO replication\r\n";

const char *bl_check_request(const struct bl_check_conf *cc, uint32_t *len)
{
    switch (cc->type) {
    case BL_CHECK_HTTP:
        *len = cc->http_send_len;
        return cc->http_send;
    case BL_CHECK_REDIS:
        *len = cc->role_master ? sizeof(REDIS_PING_INFO) - 1 : sizeof(REDIS_PING) - 1;
        return cc->role_master ? REDIS_PING_INFO : REDIS_PING;
    case BL_CHECK_TCP:
        *len = cc->tcp_send ? cc->tcp_send_len : 0;
        return cc->tcp_send;
    default:
        *len = 0;
        return NULL;
    }
}

int bl_check_reads(const struct bl_check_conf *cc)
{
    return cc->type != BL_CHECK_TCP || cc->expect != NULL;
}

static int judged(int rc, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int judged(int rc, char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return rc;
}

/* Printable copy of a server's line for a log reason: at most 80 bytes, controls as '?'. */
static void printable(char *dst, size_t dstlen, const char *src, size_t len)
{
    size_t n = len < dstlen - 1 ? len : dstlen - 1;
    if (n > 80)
        n = 80;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    dst[n] = '\0';
}

/* One RESP line ending in CRLF at data[0..len): its length without CRLF, or -1 if incomplete. */
static long resp_line(const char *data, size_t len)
{
    const char *cr = memmem(data, len, "\r\n", 2);
    return cr ? (long)(cr - data) : -1;
}

static int judge_redis(const struct bl_check_conf *cc, const char *d, size_t len, int eof,
                       char *why, size_t whylen)
{
    char text[96];
    long l1 = resp_line(d, len);
    if (l1 < 0) {
        if (eof)
            return judged(BL_ERR, why, whylen, "redis: %s",
                          len ? "closed inside the PING reply" : "closed without a reply");
        if (len >= BL_CHECK_MAX_RESPONSE)
            return judged(BL_ERR, why, whylen, "redis: PING reply line too long");
        return BL_AGAIN;
    }
    printable(text, sizeof(text), d, (size_t)l1);
    if (l1 >= 7 && memcmp(d, "-NOAUTH", 7) == 0)
        return judged(BL_ERR, why, whylen, "redis requires AUTH (%s)", text);
    if (l1 != 5 || memcmp(d, "+PONG", 5) != 0)
        return judged(BL_ERR, why, whylen, "redis: PING answered \"%s\"", text);
    if (!cc->role_master)
        return judged(BL_OK, why, whylen, "redis +PONG");

    /* INFO replication: a bulk string "$N\r\n" N bytes "\r\n". */
    const char *b = d + l1 + 2;
    size_t blen = len - (size_t)l1 - 2;
    long l2 = resp_line(b, blen);
    if (l2 < 0) {
        if (eof || len >= BL_CHECK_MAX_RESPONSE)
            return judged(BL_ERR, why, whylen, "redis: no INFO replication reply");
        return BL_AGAIN;
    }
    printable(text, sizeof(text), b, (size_t)l2);
    if (l2 < 2 || b[0] != '$')
        return judged(BL_ERR, why, whylen, "redis: INFO replication answered \"%s\"", text);
    unsigned long n = 0;
    for (long i = 1; i < l2; i++) {
        if (b[i] < '0' || b[i] > '9' || n > BL_CHECK_MAX_RESPONSE)
            return judged(BL_ERR, why, whylen, "redis: INFO replication answered \"%s\"", text);
        n = n * 10 + (unsigned long)(b[i] - '0');
    }
    const char *body = b + l2 + 2;
    size_t have = blen - (size_t)l2 - 2;
    if (have < n) {
        if (eof || len >= BL_CHECK_MAX_RESPONSE)
            return judged(BL_ERR, why, whylen, "redis: INFO replication reply cut short");
        return BL_AGAIN;
    }
    const char *role = memmem(body, n, "role:", 5);
    if (!role)
        return judged(BL_ERR, why, whylen, "redis: INFO replication has no role");
    size_t rl = 0, rmax = n - (size_t)(role + 5 - body);
    while (rl < rmax && role[5 + rl] != '\r' && role[5 + rl] != '\n')
        rl++;
    printable(text, sizeof(text), role + 5, rl);
    if (rl == 6 && memcmp(role + 5, "master", 6) == 0)
        return judged(BL_OK, why, whylen, "redis +PONG role:master");
    return judged(BL_ERR, why, whylen, "redis role:%s, not master", text);
}

/* MySQL's Protocol::HandshakeV10: header (3-byte length, sequence 0), then protocol version 10,
 * the server version NUL-terminated, a 4-byte connection id, 8 bytes of auth data, a 0 filler.
 * A server refusing the client sends an ERR packet (0xff, code, message) instead. */
static int judge_mysql(const char *d, size_t len, int eof, char *why, size_t whylen)
{
    const unsigned char *u = (const unsigned char *)d;
    char text[96];
    if (len < 4) {
        if (eof)
            return judged(BL_ERR, why, whylen, "mysql: %s",
                          len ? "closed inside the greeting" : "closed without a greeting");
        return BL_AGAIN;
    }
    size_t plen = (size_t)u[0] | (size_t)u[1] << 8 | (size_t)u[2] << 16;
    if (u[3] != 0 || plen < 1 || plen > BL_CHECK_MAX_RESPONSE - 4)
        return judged(BL_ERR, why, whylen, "mysql: invalid greeting (bad packet header)");
    if (len < 4 + plen) {
        if (eof)
            return judged(BL_ERR, why, whylen, "mysql: closed inside the greeting");
        return BL_AGAIN;
    }
    const unsigned char *p = u + 4;
    if (p[0] == 0xff) {
        /* code (2 bytes), then with CLIENT_PROTOCOL_41 '#' and a 5-byte SQL state. */
        size_t off = 3;
        if (plen > 3 && p[3] == '#')
            off = 9;
        printable(text, sizeof(text), (const char *)p + off, plen > off ? plen - off : 0);
        return judged(BL_ERR, why, whylen, "mysql: error %u: %s",
                      plen >= 3 ? (unsigned)(p[1] | p[2] << 8) : 0u, text);
    }
    if (p[0] != 10)
        return judged(BL_ERR, why, whylen, "mysql: protocol version %u, not 10", p[0]);
    const unsigned char *nul = memchr(p + 1, 0, plen - 1);
    if (!nul)
        return judged(BL_ERR, why, whylen, "mysql: invalid greeting (no server version)");
    size_t vlen = (size_t)(nul - p - 1);
    size_t rest = plen - 1 - vlen - 1;
    if (rest < 4 + 8 + 1 || nul[1 + 4 + 8] != 0)
        return judged(BL_ERR, why, whylen, "mysql: invalid greeting (short handshake)");
    printable(text, sizeof(text), (const char *)p + 1, vlen);
    return judged(BL_OK, why, whylen, "mysql greeting %s", text);
}

static int judge_expect(const struct bl_check_conf *cc, const char *d, size_t len, int eof,
                        char *why, size_t whylen)
{
    if (cc->expect_re) {
        uint32_t ovec[2];
        int r = bl_regex_exec(cc->expect_re, d, len, ovec, 1);
        if (r > 0)
            return judged(BL_OK, why, whylen, "expect matched");
        if (r < 0)
            return judged(BL_ERR, why, whylen, "expect: regex match failed");
    } else if (memmem(d, len, cc->expect, cc->expect_len)) {
        return judged(BL_OK, why, whylen, "expect matched");
    }
    if (eof || len >= BL_CHECK_MAX_RESPONSE) {
        char text[96];
        printable(text, sizeof(text), d, len);
        return judged(BL_ERR, why, whylen, "expect mismatch (got \"%s\")", text);
    }
    return BL_AGAIN;
}

int bl_check_proto_judge(const struct bl_check_conf *cc, const char *data, size_t len, int eof,
                         char *why, size_t whylen)
{
    switch (cc->type) {
    case BL_CHECK_REDIS:
        return judge_redis(cc, data, len, eof, why, whylen);
    case BL_CHECK_MYSQL:
        return judge_mysql(data, len, eof, why, whylen);
    case BL_CHECK_TCP:
        if (cc->expect)
            return judge_expect(cc, data, len, eof, why, whylen);
        return judged(BL_OK, why, whylen, "sent");
    default:
        return judged(BL_ERR, why, whylen, "no protocol to judge");
    }
}
