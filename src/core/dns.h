/* DNS messages for the run-time resolver (RFC 1035, RFC 3596): a query for one name and type,
 * and the addresses of an answer to it. No I/O; any thread; the parser reads untrusted bytes
 * from the network (tests/fuzz/fuzz_dns.c) and never reads outside [msg, msg + len).
 */
#ifndef BL_CORE_DNS_H
#define BL_CORE_DNS_H

#include <stddef.h>
#include <stdint.h>

#define BL_DNS_A    1
#define BL_DNS_AAAA 28
#define BL_DNS_CNAME 5

#define BL_DNS_NAME_MAX 253

struct bl_dns_addr {
    int family;           /* AF_INET or AF_INET6 */
    uint8_t addr[16];     /* 4 or 16 bytes, network order */
    uint32_t ttl;         /* seconds */
};

/* Writes a recursive query (RD) for name (dotted, a trailing dot optional) and type into
 * out[0..cap). Returns its length, or BL_ERR (a label over 63 bytes, a name over 253, an empty
 * label, or no room). */
int bl_dns_query(uint16_t id, const char *name, uint16_t type, uint8_t *out, size_t cap);

/* What an answer said. */
struct bl_dns_result {
    int rcode;            /* 0 NOERROR, 3 NXDOMAIN, ... */
    int truncated;        /* TC: the addresses below are those that fit */
    uint32_t naddrs;      /* addresses kept (up to max) */
    uint32_t min_ttl;     /* smallest TTL of the records used; UINT32_MAX when none */
};

/* Parses msg[0..len) as the answer to query (id, name, type): the header must say response,
 * match id, and echo the question; A or AAAA records (of that type) count when their owner is
 * name or a name a CNAME in the answer leads to. Fills out[0..max). BL_OK, or BL_ERR for a
 * message that is malformed or not the answer to this query. */
int bl_dns_parse(const uint8_t *msg, size_t len, uint16_t id, const char *name, uint16_t type,
                 struct bl_dns_addr *out, uint32_t max, struct bl_dns_result *res);

#endif
