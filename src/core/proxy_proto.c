/* PROXY protocol v1 and v2: parsing a received header, writing one (proxy_proto.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/proxy_proto.h"

static const char v1_prefix[] = "PROXY ";
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum { PP_ERR = -1, PP_AGAIN = -2 };

static int refuse(const char **reason, const char *why)
{
    *reason = why;
    return PP_ERR;
}

/* A decimal port of 1-5 digits, at most 65535. */
static int parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int parse_ip(int family, const char *s, size_t n, uint8_t *out, char *text)
{
    if (n == 0 || n >= 46)
        return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(family, text, out) == 1 ? 0 : -1;
}

/* The bytes a v1 line may hold after "PROXY ": protocol names, addresses, ports, spaces. */
static int v1_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'f') ||
           c == '.' || c == ':' || c == ' ';
}

/* "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN[ anything]\r\n". */
static int parse_v1(const char *buf, size_t len, struct bl_pp_info *out, const char **reason)
{
    size_t n = len < sizeof(v1_prefix) - 1 ? len : sizeof(v1_prefix) - 1;
    if (memcmp(buf, v1_prefix, n) != 0)
        return refuse(reason, "broken header");
    size_t lim = len < BL_PP_V1_MAX ? len : BL_PP_V1_MAX;
    const char *nl = memchr(buf, '\n', lim);
    if (!nl) {
        /* Nothing a v1 line holds is outside these: refuse garbage before the line ends. */
        for (size_t i = n; i < lim; i++)
            if (!v1_char(buf[i]) && !(buf[i] == '\r' && i == lim - 1))
                return refuse(reason, "broken header");
        return len >= BL_PP_V1_MAX ? refuse(reason, "header is too long") : PP_AGAIN;
    }
    size_t line = (size_t)(nl - buf); /* without "\n" */
    if (line < 1 || buf[line - 1] != '\r')
        return refuse(reason, "broken header");
    line--;
    memset(out, 0, sizeof(*out));
    out->version = 1;
    const char *p = buf + 6, *end = buf + line;
    /* The whole line is held to the bytes a partial one is: a header must not be refused or
     * accepted depending on how the network cut it, and a NUL must not end an address early
     * ("10.1.2.3\0junk"): found by tests/fuzz/fuzz_proxy.c. */
    for (const char *q = p; q < end; q++)
        if (!v1_char(*q))
            return refuse(reason, "broken header");
    if ((size_t)(end - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0 &&
        (end - p == 7 || p[7] == ' ')) {
        /* The receiver ignores what follows UNKNOWN up to the CRLF (the spec). */
        return (int)(line + 2);
    }
    const char *tok[5];
    size_t tl[5];
    for (int i = 0; i < 5; i++) {
        const char *sp = i < 4 ? memchr(p, ' ', (size_t)(end - p)) : NULL;
        if (i < 4 && !sp)
            return refuse(reason, "broken header");
        tok[i] = p;
        tl[i] = (size_t)((i < 4 ? sp : end) - p);
        p = i < 4 ? sp + 1 : end;
    }
    int family;
    if (tl[0] == 4 && memcmp(tok[0], "TCP4", 4) == 0)
        family = AF_INET;
    else if (tl[0] == 4 && memcmp(tok[0], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return refuse(reason, "broken header");
    if (parse_ip(family, tok[1], tl[1], out->src, out->src_ip) != 0 ||
        parse_ip(family, tok[2], tl[2], out->dst, out->dst_ip) != 0 ||
        parse_port(tok[3], tl[3], &out->src_port) != 0 ||
        parse_port(tok[4], tl[4], &out->dst_port) != 0) {
        memset(out, 0, sizeof(*out));
        return refuse(reason, "broken header");
    }
    out->family = (uint8_t)family;
    out->has_addr = 1;
    return (int)(line + 2);
}

/* The TLVs after the addresses: each must end inside the header (their contents are skipped:
 * ballast uses none). */
static int check_tlvs(const uint8_t *p, size_t n)
{
    while (n >= 3) {
        size_t l = ((size_t)p[1] << 8) | p[2];
        if (l > n - 3)
            return -1;
        p += 3 + l;
        n -= 3 + l;
    }
    return n == 0 ? 0 : -1;
}

static int parse_v2(const uint8_t *b, size_t len, struct bl_pp_info *out, const char **reason)
{
    size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (memcmp(b, v2_sig, n) != 0)
        return refuse(reason, "broken header");
    if (len > 12) {
        if ((b[12] >> 4) != 2)
            return refuse(reason, "unknown PROXY protocol version");
        if ((b[12] & 0x0F) > 1)
            return refuse(reason, "unknown PROXY protocol v2 command");
    }
    if (len < 16)
        return PP_AGAIN;
    size_t total = 16 + (((size_t)b[14] << 8) | b[15]);
    if (total > BL_PP_MAX_HEADER)
        return refuse(reason, "header is too large");
    if (len < total)
        return PP_AGAIN;
    memset(out, 0, sizeof(*out));
    out->version = 2;
    if ((b[12] & 0x0F) == 0) /* LOCAL: the proxy's own connection (a health check) */
        return (int)total;
    const uint8_t *a = b + 16;
    size_t alen = total - 16;
    switch (b[13]) {
    case 0x11: /* TCP over IPv4 */
    case 0x12: /* UDP over IPv4 */
        if (alen < 12)
            return refuse(reason, "header is too short for its addresses");
        out->family = AF_INET;
        memcpy(out->src, a, 4);
        memcpy(out->dst, a + 4, 4);
        out->src_port = (uint16_t)(a[8] << 8 | a[9]);
        out->dst_port = (uint16_t)(a[10] << 8 | a[11]);
        a += 12;
        alen -= 12;
        break;
    case 0x21:
    case 0x22:
        if (alen < 36)
            return refuse(reason, "header is too short for its addresses");
        out->family = AF_INET6;
        memcpy(out->src, a, 16);
        memcpy(out->dst, a + 16, 16);
        out->src_port = (uint16_t)(a[32] << 8 | a[33]);
        out->dst_port = (uint16_t)(a[34] << 8 | a[35]);
        a += 36;
        alen -= 36;
        break;
    case 0x00: /* UNSPEC */
    case 0x31: /* AF_UNIX stream and datagram: no address ballast could use */
    case 0x32:
        return (int)total;
    default:
        return refuse(reason, "unknown PROXY protocol v2 address family");
    }
    if (check_tlvs(a, alen) != 0) {
        memset(out, 0, sizeof(*out));
        return refuse(reason, "broken TLV in PROXY protocol v2 header");
    }
    inet_ntop(out->family, out->src, out->src_ip, sizeof(out->src_ip));
    inet_ntop(out->family, out->dst, out->dst_ip, sizeof(out->dst_ip));
    out->has_addr = 1;
    return (int)total;
}

int bl_pp_parse(const char *buf, size_t len, struct bl_pp_info *out, const char **reason)
{
    *reason = NULL;
    if (len == 0)
        return PP_AGAIN;
    if (buf[0] == v1_prefix[0])
        return parse_v1(buf, len, out, reason);
    if ((uint8_t)buf[0] == v2_sig[0])
        return parse_v2((const uint8_t *)buf, len, out, reason);
    return refuse(reason, "broken header");
}

static void excerpt(const char *b, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (cap)
        out[o < cap ? o : cap - 1] = '\0';
}

int bl_pp_read(int fd, struct bl_pp_info *out, const char **reason, char *seen, size_t seen_cap)
{
    char buf[BL_PP_MAX_HEADER];
    *reason = NULL;
    if (seen_cap)
        seen[0] = '\0';
    ssize_t n;
    do
        n = recv(fd, buf, sizeof(buf), MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return PP_AGAIN;
    if (n <= 0) {
        if (n == 0)
            errno = 0;
        return 0;
    }
    int rc = bl_pp_parse(buf, (size_t)n, out, reason);
    if (rc == PP_ERR) {
        excerpt(buf, (size_t)n < 64 ? (size_t)n : 64, seen, seen_cap);
        return PP_ERR;
    }
    if (rc == PP_AGAIN)
        return PP_AGAIN;
    /* The header's bytes are in the socket: this takes exactly those. */
    do
        n = recv(fd, buf, (size_t)rc, 0);
    while (n < 0 && errno == EINTR);
    if (n != rc) {
        if (n >= 0)
            errno = EIO;
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ writing */

/* a as 16 bytes of IPv6 (an IPv4 address IPv4-mapped) and its port; 0 unless IPv4/IPv6. */
static int addr16(const struct sockaddr *sa, uint8_t out[16], uint16_t *port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(out, &s6->sin6_addr, 16);
        *port = ntohs(s6->sin6_port);
        return 1;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memset(out, 0, 10);
        out[10] = out[11] = 0xFF;
        memcpy(out + 12, &s4->sin_addr, 4);
        *port = ntohs(s4->sin_port);
        return 1;
    }
    return 0;
}

size_t bl_pp_write(int version, const struct sockaddr *src, const struct sockaddr *dst,
                   char *out, size_t cap)
{
    if (cap < BL_PP_WRITE_MAX)
        return 0;
    uint8_t s[16], d[16];
    uint16_t sp = 0, dp = 0;
    int known = addr16(src, s, &sp) && addr16(dst, d, &dp);
    int v4 = known && src->sa_family == AF_INET && dst->sa_family == AF_INET;
    if (version == 2) {
        uint8_t *o = (uint8_t *)out;
        memcpy(o, v2_sig, 12);
        o[12] = 0x21; /* version 2, PROXY */
        if (!known) {
            o[13] = 0x00;
            o[14] = o[15] = 0;
            return 16;
        }
        size_t alen = v4 ? 12 : 36, al = v4 ? 4 : 16;
        o[13] = v4 ? 0x11 : 0x21;
        o[14] = 0;
        o[15] = (uint8_t)alen;
        memcpy(o + 16, v4 ? s + 12 : s, al);
        memcpy(o + 16 + al, v4 ? d + 12 : d, al);
        uint8_t *p = o + 16 + 2 * al;
        p[0] = (uint8_t)(sp >> 8);
        p[1] = (uint8_t)sp;
        p[2] = (uint8_t)(dp >> 8);
        p[3] = (uint8_t)dp;
        return 16 + alen;
    }
    if (!known) {
        memcpy(out, "PROXY UNKNOWN\r\n", 15);
        return 15;
    }
    char st[INET6_ADDRSTRLEN], dt[INET6_ADDRSTRLEN];
    inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? s + 12 : s, st, sizeof(st));
    inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? d + 12 : d, dt, sizeof(dt));
    int n = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", st, dt,
                     (unsigned)sp, (unsigned)dp);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
