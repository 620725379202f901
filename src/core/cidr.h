/* IPv4 and IPv6 networks written as nginx writes them ("10.0.0.0/8", "2001:db8::/32", a bare
 * address for one host, "all"), and matching addresses against them: geo and set_real_ip_from. */
#ifndef BL_CORE_CIDR_H
#define BL_CORE_CIDR_H

#include <stdint.h>

/* An address: family AF_INET (the first 4 bytes used) or AF_INET6. */
struct bl_ipaddr {
    uint8_t family;
    uint8_t a[16];
};

struct bl_cidr {
    struct bl_ipaddr addr;          /* host bits cleared */
    uint8_t bits;                   /* prefix length */
    uint8_t all;                    /* "all": every address of both families */
};

/* Parses a textual address (no brackets, no port). 0 ok, -1 not an address. */
int bl_ipaddr_parse(const char *s, size_t len, struct bl_ipaddr *out);

/* Parses "ADDR/BITS", "ADDR" or "all". 0 ok; 1 ok but host bits were set and have been cleared
 * (nginx warns "low address bits of ... are meaningless"); -1 invalid. */
int bl_cidr_parse(const char *s, struct bl_cidr *out);

/* 1 when a is inside c. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is matched as IPv4 would
 * not be: families must agree, as in nginx. */
int bl_cidr_match(const struct bl_cidr *c, const struct bl_ipaddr *a);

#endif
