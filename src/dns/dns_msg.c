/* DNS query parser and answer writer (dns_msg.h). */
#include <string.h>

#include "core/status.h"
#include "dns/dns_msg.h"

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/* Skips a name at p[*off] in a record of the additional section; compression pointers are
 * allowed there (RFC 1035 4.1.4) and not followed: a pointer ends the name. Returns BL_OK. */
static int skip_name(const uint8_t *p, size_t len, size_t *off)
{
    size_t o = *off, total = 0;
    for (;;) {
        if (o >= len)
            return BL_ERR;
        uint8_t l = p[o];
        if ((l & 0xc0) == 0xc0) {
            if (o + 2 > len)
                return BL_ERR;
            *off = o + 2;
            return BL_OK;
        }
        if (l & 0xc0)
            return BL_ERR;             /* 0x40, 0x80: extended label types, obsolete */
        o++;
        if (l == 0) {
            *off = o;
            return BL_OK;
        }
        total += (size_t)l + 1;
        if (total + 1 > BL_DNS_NAME_MAX || o + l > len)
            return BL_ERR;
        o += l;
    }
}

enum bl_dns_parse bl_dns_parse_query(const uint8_t *p, size_t len, struct bl_dns_query *q)
{
    memset(q, 0, sizeof(*q));
    if (len < BL_DNS_HEADER || (p[2] & 0x80))
        return BL_DNS_PARSE_DROP;
    q->id = get16(p);
    q->opcode = (uint8_t)((p[2] >> 3) & 0x0f);
    q->rd = p[2] & 0x01;
    q->cd = (p[3] >> 4) & 0x01;
    if (q->opcode != 0)
        return BL_DNS_PARSE_NOTIMP;
    uint16_t qd = get16(p + 4), an = get16(p + 6), ns = get16(p + 8), ar = get16(p + 10);
    /* RFC 9619: a query has exactly one question. */
    if (qd != 1 || an != 0 || ns != 0)
        return BL_DNS_PARSE_FORMERR;
    size_t o = BL_DNS_HEADER, n = 0;
    for (;;) {
        if (o >= len)
            return BL_DNS_PARSE_FORMERR;
        uint8_t l = p[o];
        /* The question's name is the first in the message: a pointer could only point
         * into the header, so any is malformed. */
        if (l & 0xc0)
            return BL_DNS_PARSE_FORMERR;
        if (n + 1u + l > BL_DNS_NAME_MAX || o + 1u + l > len)
            return BL_DNS_PARSE_FORMERR;
        q->name[n++] = l;
        for (size_t i = 0; i < l; i++)
            q->name[n++] = lower(p[o + 1 + i]);
        o += 1u + l;
        if (l == 0)
            break;
    }
    if (o + 4 > len)
        return BL_DNS_PARSE_FORMERR;
    q->name_len = n;
    q->qtype = get16(p + o);
    q->qclass = get16(p + o + 2);
    q->question = p + BL_DNS_HEADER;
    q->question_len = o + 4 - BL_DNS_HEADER;
    o += 4;
    int badvers = 0;
    for (uint16_t i = 0; i < ar; i++) {
        size_t name_at = o;
        if (skip_name(p, len, &o) != BL_OK || o + 10 > len)
            return BL_DNS_PARSE_FORMERR;
        uint16_t type = get16(p + o), rdlen = get16(p + o + 8);
        if (o + 10u + rdlen > len)
            return BL_DNS_PARSE_FORMERR;
        if (type == BL_DNS_T_OPT) {
            /* RFC 6891 6.1.1: one OPT at most, owned by the root. */
            if (q->edns || p[name_at] != 0)
                return BL_DNS_PARSE_FORMERR;
            q->edns = 1;
            q->edns_size = get16(p + o + 2);
            badvers = p[o + 5] != 0;    /* TTL's second byte: the EDNS version */
        }
        o += 10u + rdlen;
    }
    if (o != len)
        return BL_DNS_PARSE_FORMERR;   /* bytes after the last record */
    if (badvers) {
        uint8_t edns = q->edns;
        uint16_t id = q->id;
        uint8_t rd = q->rd, cd = q->cd;
        memset(q, 0, sizeof(*q));
        q->id = id;
        q->rd = rd;
        q->cd = cd;
        q->edns = edns;
        return BL_DNS_PARSE_BADVERS;
    }
    return BL_DNS_PARSE_OK;
}

size_t bl_dns_answer_limit(const struct bl_dns_query *q)
{
    if (!q->edns || q->edns_size <= BL_DNS_UDP_MIN)
        return BL_DNS_UDP_MIN;
    return q->edns_size < BL_DNS_UDP_MAX ? q->edns_size : BL_DNS_UDP_MAX;
}

static void count_add(struct bl_dns_writer *w, size_t at)
{
    put16(w->out + at, (uint16_t)(get16(w->out + at) + 1));
}

/* Reserves n bytes; on failure sets TC and truncated. */
static uint8_t *reserve(struct bl_dns_writer *w, size_t n)
{
    if (w->truncated)
        return NULL;
    if (w->len + n > w->cap) {
        w->truncated = 1;
        w->out[2] |= 0x02;
        return NULL;
    }
    uint8_t *p = w->out + w->len;
    w->len += n;
    return p;
}

int bl_dns_begin(struct bl_dns_writer *w, const struct bl_dns_query *q, int rcode, int aa,
                 int with_question)
{
    size_t need = BL_DNS_HEADER + (with_question ? q->question_len : 0);
    if (w->cap < need)
        return BL_ERR;
    memset(w->out, 0, BL_DNS_HEADER);
    put16(w->out, q->id);
    w->out[2] = (uint8_t)(0x80 | (q->opcode & 0x0f) << 3 | (aa ? 0x04 : 0) | q->rd);
    w->out[3] = (uint8_t)((q->cd ? 0x10 : 0) | (rcode & 0x0f));
    w->len = BL_DNS_HEADER;
    w->truncated = 0;
    if (with_question) {
        memcpy(w->out + BL_DNS_HEADER, q->question, q->question_len);
        w->len += q->question_len;
        put16(w->out + 4, 1);
    }
    return BL_OK;
}

void bl_dns_add_addr(struct bl_dns_writer *w, uint16_t type, const void *addr, size_t len,
                     uint32_t ttl)
{
    uint8_t *p = reserve(w, 12 + len);
    if (!p)
        return;
    put16(p, 0xc000 | BL_DNS_HEADER);   /* the question's name */
    put16(p + 2, type);
    put16(p + 4, BL_DNS_C_IN);
    put32(p + 6, ttl);
    put16(p + 10, (uint16_t)len);
    memcpy(p + 12, addr, len);
    count_add(w, 6);
}

void bl_dns_add_soa(struct bl_dns_writer *w, int section, size_t zone_len,
                    uint32_t ttl, uint32_t serial)
{
    /* The zone's name inside the question (its owner), found from the question's end. */
    size_t qname_len = 0;
    const uint8_t *qn = w->out + BL_DNS_HEADER;
    while (BL_DNS_HEADER + qname_len < w->len && qn[qname_len])
        qname_len += 1u + qn[qname_len];
    qname_len++;
    if (zone_len > qname_len)
        return;
    uint16_t zone_ptr = (uint16_t)(0xc000 | (BL_DNS_HEADER + qname_len - zone_len));
    /* owner(2) type class ttl rdlen(10) mname "ns"+ptr(5) rname "hostmaster"+ptr(13) 5x4 */
    uint8_t *p = reserve(w, 2 + 10 + 5 + 13 + 20);
    if (!p)
        return;
    put16(p, zone_ptr);
    put16(p + 2, BL_DNS_T_SOA);
    put16(p + 4, BL_DNS_C_IN);
    put32(p + 6, ttl);
    put16(p + 10, 5 + 13 + 20);
    uint8_t *r = p + 12;
    memcpy(r, "\002ns", 3);
    put16(r + 3, zone_ptr);
    memcpy(r + 5, "\012hostmaster", 11);
    put16(r + 16, zone_ptr);
    put32(r + 18, serial);
    put32(r + 22, 3600);                 /* refresh, retry, expire: no secondaries here */
    put32(r + 26, 600);
    put32(r + 30, 86400);
    put32(r + 34, ttl);                  /* minimum: the negative caching time */
    count_add(w, section == 0 ? 6 : 8);
}

void bl_dns_add_opt(struct bl_dns_writer *w, int rcode)
{
    /* The caller keeps 11 bytes free for it while adding answers (dns.c). */
    uint8_t *p = reserve(w, 11);
    if (!p)
        return;
    p[0] = 0;                            /* root */
    put16(p + 1, BL_DNS_T_OPT);
    put16(p + 3, BL_DNS_UDP_MAX);
    p[5] = (uint8_t)(rcode >> 4);        /* extended rcode, version 0, no flags */
    p[6] = 0;
    put16(p + 7, 0);
    put16(p + 9, 0);
    count_add(w, 10);
}

int bl_dns_name_from_text(const char *text, uint8_t *out)
{
    size_t tl = strlen(text), n = 0;
    if (tl && text[tl - 1] == '.')
        tl--;                            /* "example.test." is "example.test" */
    if (tl == 0)
        return -1;
    for (size_t i = 0; i <= tl;) {
        size_t start = i;
        while (i < tl && text[i] != '.')
            i++;
        size_t l = i - start;
        if (l == 0 || l > 63 || n + 1 + l + 1 > BL_DNS_NAME_MAX)
            return -1;
        out[n++] = (uint8_t)l;
        for (size_t k = start; k < i; k++) {
            uint8_t c = lower((uint8_t)text[k]);
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '*'))
                return -1;
            out[n++] = c;
        }
        i++;                             /* past the dot, or past the end */
    }
    out[n++] = 0;
    return (int)n;
}

int bl_dns_name_suffix(const uint8_t *name, size_t name_len, const uint8_t *suffix,
                       size_t suffix_len)
{
    size_t o = 0;
    while (o < name_len) {
        if (name_len - o == suffix_len && memcmp(name + o, suffix, suffix_len) == 0)
            return (int)o;
        if (name[o] == 0)
            break;
        o += 1u + name[o];
    }
    return -1;
}
