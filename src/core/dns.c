/* DNS query writer and answer parser (dns.h). */
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/dns.h"
#include "core/status.h"

int bl_dns_query(uint16_t id, const char *name, uint16_t type, uint8_t *out, size_t cap)
{
    size_t nl = strlen(name);
    if (nl && name[nl - 1] == '.')
        nl--;
    if (nl == 0 || nl > BL_DNS_NAME_MAX || cap < 12 + nl + 2 + 4)
        return BL_ERR;
    uint8_t hdr[12] = {(uint8_t)(id >> 8), (uint8_t)id, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(out, hdr, 12);
    size_t o = 12;
    const char *p = name, *end = name + nl;
    while (p < end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t ll = (size_t)((dot ? dot : end) - p);
        if (ll == 0 || ll > 63)
            return BL_ERR;
        out[o++] = (uint8_t)ll;
        memcpy(out + o, p, ll);
        o += ll;
        p += ll + (dot ? 1 : 0);
        if (dot && p == end)
            return BL_ERR; /* "a..": an empty label */
    }
    out[o++] = 0;
    out[o++] = (uint8_t)(type >> 8);
    out[o++] = (uint8_t)type;
    out[o++] = 0;
    out[o++] = 1; /* IN */
    return (int)o;
}

/* Reads the (maybe compressed) name at *off into buf as dotted lowercase text; *off moves past
 * it in the message. BL_ERR when it runs out of the message, loops, or is too long. */
static int read_name(const uint8_t *msg, size_t len, size_t *off, char *buf, size_t cap)
{
    size_t o = *off, out = 0;
    int jumped = 0, hops = 0;
    for (;;) {
        if (o >= len)
            return BL_ERR;
        uint8_t l = msg[o];
        if ((l & 0xc0) == 0xc0) {
            if (o + 1 >= len || ++hops > 32)
                return BL_ERR;
            size_t to = ((size_t)(l & 0x3f) << 8) | msg[o + 1];
            if (!jumped)
                *off = o + 2;
            jumped = 1;
            if (to >= o) /* pointers go backwards: a forward one could loop */
                return BL_ERR;
            o = to;
            continue;
        }
        if (l & 0xc0)
            return BL_ERR; /* extended label types: not in answers we ask for */
        o++;
        if (l == 0)
            break;
        if (o + l > len || out + l + 1 >= cap)
            return BL_ERR;
        if (out)
            buf[out++] = '.';
        for (uint8_t i = 0; i < l; i++) {
            char ch = (char)msg[o + i];
            buf[out++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        o += l;
    }
    buf[out] = 0;
    if (!jumped)
        *off = o;
    return BL_OK;
}

static uint16_t u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static int same_name(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la && a[la - 1] == '.')
        la--;
    if (lb && b[lb - 1] == '.')
        lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

int bl_dns_parse(const uint8_t *msg, size_t len, uint16_t id, const char *name, uint16_t type,
                 struct bl_dns_addr *out, uint32_t max, struct bl_dns_result *res)
{
    memset(res, 0, sizeof(*res));
    res->min_ttl = UINT32_MAX;
    if (len < 12 || u16(msg) != id || !(msg[2] & 0x80) || ((msg[2] >> 3) & 0x0f) != 0)
        return BL_ERR; /* not a response to a standard query of ours */
    res->truncated = (msg[2] & 0x02) != 0;
    res->rcode = msg[3] & 0x0f;
    uint16_t qd = u16(msg + 4), an = u16(msg + 6);
    if (qd != 1)
        return BL_ERR;
    char qname[BL_DNS_NAME_MAX + 2];
    size_t off = 12;
    if (read_name(msg, len, &off, qname, sizeof(qname)) != BL_OK || off + 4 > len ||
        !same_name(qname, name) || u16(msg + off) != type || u16(msg + off + 2) != 1)
        return BL_ERR;
    off += 4;
    /* The names that lead to the addresses: the question's, then each CNAME target. Answers
     * list a chain in order (RFC 1034 4.3.2), and a chain is short. */
    char chain[8][BL_DNS_NAME_MAX + 2];
    int nchain = 1;
    memcpy(chain[0], qname, sizeof(qname));
    for (uint16_t i = 0; i < an; i++) {
        char owner[BL_DNS_NAME_MAX + 2];
        if (read_name(msg, len, &off, owner, sizeof(owner)) != BL_OK || off + 10 > len)
            return res->truncated ? BL_OK : BL_ERR;
        uint16_t rtype = u16(msg + off), rclass = u16(msg + off + 2);
        uint32_t ttl = ((uint32_t)msg[off + 4] << 24) | ((uint32_t)msg[off + 5] << 16) |
                       ((uint32_t)msg[off + 6] << 8) | msg[off + 7];
        uint16_t rdlen = u16(msg + off + 8);
        off += 10;
        if (off + rdlen > len)
            return res->truncated ? BL_OK : BL_ERR;
        if (ttl > 0x7fffffffu)
            ttl = 0; /* RFC 2181 8: a TTL with the top bit set means zero */
        int ours = 0;
        for (int k = 0; k < nchain && !ours; k++)
            ours = same_name(owner, chain[k]);
        if (ours && rclass == 1 && rtype == BL_DNS_CNAME && nchain < 8) {
            size_t t = off;
            if (read_name(msg, len, &t, chain[nchain], sizeof(chain[0])) != BL_OK)
                return BL_ERR;
            nchain++;
        } else if (ours && rclass == 1 && rtype == type &&
                   rdlen == (type == BL_DNS_A ? 4 : 16)) {
            if (res->naddrs < max) {
                struct bl_dns_addr *a = &out[res->naddrs++];
                a->family = type == BL_DNS_A ? AF_INET : AF_INET6;
                memset(a->addr, 0, sizeof(a->addr));
                memcpy(a->addr, msg + off, rdlen);
                a->ttl = ttl;
            }
            if (ttl < res->min_ttl)
                res->min_ttl = ttl;
        }
        off += rdlen;
    }
    return BL_OK;
}
