/* DNS messages (RFC 1035, 6891): the query parser and the answer writer of the health-aware
 * DNS front end (dns/dns.h). No I/O, no allocation, no config: bytes in, bytes out, so the
 * fuzzer (tests/fuzz/fuzz_dns.c) and the unit tests drive it directly.
 *
 * What a query must be to get an answer (anything else is dropped or answered FORMERR, see
 * bl_dns_parse_query): a 12-byte header with QR clear; QDCOUNT 1, ANCOUNT and NSCOUNT 0; the
 * question's name as uncompressed labels of 1-63 bytes, 255 bytes in all; the additional
 * section well formed, holding at most one OPT record (EDNS) and nothing after it.
 *
 * Threads: any; no state.
 */
#ifndef BL_DNS_DNS_MSG_H
#define BL_DNS_DNS_MSG_H

#include <stddef.h>
#include <stdint.h>

#define BL_DNS_HEADER     12u
#define BL_DNS_NAME_MAX   255u    /* a name in wire form, root label included */
#define BL_DNS_UDP_MIN    512u    /* answer size without EDNS (RFC 1035) */
#define BL_DNS_UDP_MAX    1232u   /* the most we answer with EDNS (DNS flag day 2020: no
                                   * fragmentation on common paths) */

/* Types and classes we act on. */
#define BL_DNS_T_A     1u
#define BL_DNS_T_NS    2u
#define BL_DNS_T_SOA   6u
#define BL_DNS_T_AAAA  28u
#define BL_DNS_T_OPT   41u
#define BL_DNS_T_ANY   255u
#define BL_DNS_C_IN    1u

/* Response codes (RFC 1035 4.1.1, RFC 6891 for BADVERS, extended: 16). */
#define BL_DNS_NOERROR  0
#define BL_DNS_FORMERR  1
#define BL_DNS_SERVFAIL 2
#define BL_DNS_NXDOMAIN 3
#define BL_DNS_NOTIMP   4
#define BL_DNS_REFUSED  5
#define BL_DNS_BADVERS  16

/* What bl_dns_parse_query() made of a datagram. */
enum bl_dns_parse {
    BL_DNS_PARSE_OK = 0,      /* a query to answer: every field of struct bl_dns_query set */
    BL_DNS_PARSE_DROP,        /* no answer at all: shorter than a header, or a response (QR
                               * set; answering those lets two servers loop) */
    BL_DNS_PARSE_FORMERR,     /* answer FORMERR (header only: id, opcode, rd) */
    BL_DNS_PARSE_NOTIMP,      /* an opcode other than QUERY: answer NOTIMP (header only) */
    BL_DNS_PARSE_BADVERS,     /* EDNS version above 0: answer BADVERS with an OPT */
};

struct bl_dns_query {
    uint16_t id;
    uint8_t opcode;
    uint8_t rd;                       /* recursion desired, echoed (we never recurse) */
    uint8_t cd;                       /* checking disabled, echoed */
    uint16_t qtype, qclass;
    const uint8_t *question;          /* the question as received (name, type, class): the
                                       * answer repeats it byte for byte, case included */
    size_t question_len;
    uint8_t name[BL_DNS_NAME_MAX];    /* the name, lowercased, wire form, root label last */
    size_t name_len;
    uint8_t edns;                     /* an OPT record came */
    uint16_t edns_size;               /* its UDP payload size (0 without EDNS) */
};

/* Parses the datagram [p, p + len). Every field of q is set for BL_DNS_PARSE_OK; for FORMERR,
 * NOTIMP and BADVERS id, opcode, rd and cd are set (and edns for BADVERS) and the rest is
 * zero. Never reads outside [p, p + len). */
enum bl_dns_parse bl_dns_parse_query(const uint8_t *p, size_t len, struct bl_dns_query *q);

/* The most an answer to q may take: 512 bytes without EDNS, else its payload size within
 * [512, BL_DNS_UDP_MAX]. */
size_t bl_dns_answer_limit(const struct bl_dns_query *q);

/* Builds an answer in out[0, cap) (cap >= BL_DNS_HEADER). */
struct bl_dns_writer {
    uint8_t *out;
    size_t cap;
    size_t len;
    uint8_t truncated;                /* a record did not fit: TC is set, later adds do nothing */
};

/* Starts the answer: header (id, opcode, rd and cd from q; QR; AA when aa; rcode's low four
 * bits) and, when with_question, q's question. Returns BL_OK, or BL_ERR when cap cannot hold
 * them (cap below 12 + the question). */
int bl_dns_begin(struct bl_dns_writer *w, const struct bl_dns_query *q, int rcode, int aa,
                 int with_question);

/* Appends an answer record for the question's name (a pointer to offset 12): type A (len 4)
 * or AAAA (len 16) with ttl seconds. Sets TC and stops when it does not fit. */
void bl_dns_add_addr(struct bl_dns_writer *w, uint16_t type, const void *addr, size_t len,
                     uint32_t ttl);

/* Appends the zone's SOA record, in the answer section (section 0: a SOA question) or the
 * authority section (1: NXDOMAIN and NODATA, for negative caching, RFC 2308). zone_len: the
 * length of the zone's wire form, which the question's name must end with (the record's owner
 * is a pointer into the question). ttl is also the SOA's minimum field. The
 * primary server's name is ns.ZONE and the mailbox hostmaster.ZONE. */
void bl_dns_add_soa(struct bl_dns_writer *w, int section, size_t zone_len,
                    uint32_t ttl, uint32_t serial);

/* Appends an OPT record (EDNS) with our payload size and the extended rcode's upper bits;
 * added last, as it goes in the additional section. */
void bl_dns_add_opt(struct bl_dns_writer *w, int rcode);

/* Converts text ("www.example.test", "example.test.", "@" is not accepted here) into
 * lowercased wire form in out (room BL_DNS_NAME_MAX). Returns the length, or -1 for an empty
 * label, a label over 63 bytes, a name over 255 bytes or a byte that is not a letter, digit,
 * '-', '_' or '*'. */
int bl_dns_name_from_text(const char *text, uint8_t *out);

/* Whether wire-form name ends with wire-form suffix at a label boundary (both lowercased);
 * returns the offset of the suffix in name, or -1. */
int bl_dns_name_suffix(const uint8_t *name, size_t name_len, const uint8_t *suffix,
                       size_t suffix_len);

#endif
