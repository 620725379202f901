/* nginx's realip module: behind trusted proxies (set_real_ip_from), the client address is taken
 * from a request header (real_ip_header: X-Real-IP, X-Forwarded-For or another field, the last
 * address of it, or with real_ip_recursive the last one not itself trusted), or with
 * real_ip_header proxy_protocol from the connection's PROXY protocol header. The connection's
 * address is replaced for the request, so $remote_addr, logs, X-Forwarded-For, ip_hash and hash
 * keys all see it, and given back when the request ends; $realip_remote_addr keeps the peer's. */
#ifndef BL_HTTP_REALIP_H
#define BL_HTTP_REALIP_H

#include <stddef.h>
#include <stdint.h>

struct bl_request;
struct bl_loc_conf;
struct bl_ipaddr;

/* Applies lc's realip settings to r unless an earlier call applied some: nginx runs realip at
 * the server's level before the rewrite directives and at the location's after them. */
void bl_realip(struct bl_request *r, const struct bl_loc_conf *lc);

/* Gives r's connection back the address it was accepted with. */
void bl_realip_restore(struct bl_request *r);

/* nginx's ngx_parse_addr_port on a forwarded value: an IPv4 address as ngx_inet_addr reads
 * them (empty octets are 0, 255.255.255.255 is refused), an IPv6 one, either with a port
 * ("1.2.3.4:80", "[::1]:80": *port, else 0). 0 ok, -1 not an address. */
int bl_realip_parse(const char *s, size_t len, struct bl_ipaddr *out, uint16_t *port);

#endif
