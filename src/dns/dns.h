/* The health-aware DNS front end (`dns { listen ... udp; zone ...; record ...; }`): an
 * authoritative server for one zone whose A and AAAA records are the addresses of the servers
 * of an upstream group that are up at the moment of the query, as the upstream layer sees them
 * (active checks, passive failures, outlier ejection, the admin API's down and drain). For DNS
 * round robin across sites: each site's address is a server of the upstream, and a site that
 * fails its checks leaves the answers within one check interval (plus the TTL resolvers
 * cache it for). docs/high-availability.md, "DNS round robin across sites".
 *
 * Answers (RFC 1034/1035, 2308, 6891, 8020):
 *   - a name outside the zone, or a class other than IN: REFUSED (no recursion, RA clear);
 *   - A/AAAA (or ANY) for a record's name: the healthy primaries' addresses of that family,
 *     rotated by one per query so that clients taking the first spread; none healthy: the
 *     healthy backups'; none either: NODATA; AA set, TTL `ttl`;
 *   - SOA at the zone's apex: its SOA; any other type, or a name that only has records below
 *     it (an empty non-terminal), or the apex: NODATA with the SOA in the authority section;
 *   - a name in the zone with nothing at or below it: NXDOMAIN with the SOA;
 *   - malformed queries: FORMERR when the header could be read, else nothing; responses (QR
 *     set) are never answered; other opcodes: NOTIMP; EDNS version above 0: BADVERS.
 * Answers fit 512 bytes, or the client's EDNS payload size up to 1232; what does not fit is
 * left out with TC set.
 *
 * Sockets: the listener machinery of the other front ends (worker.c): each worker has its own
 * SO_REUSEPORT UDP socket per `listen`, level-triggered; a reload keeps sockets whose address
 * stays. UDP only.
 *
 * Threads: worker threads; reads the shared per-server state with relaxed atomic loads.
 */
#ifndef BL_DNS_DNS_H
#define BL_DNS_DNS_H

#include <stddef.h>
#include <stdint.h>

struct bl_dns_conf;

/* Reads up to a batch of the queries waiting on fd (a `dns` listener, non-blocking) and sends
 * each its answer. now_ms: the worker's cached clock. */
void bl_dns_read(const struct bl_dns_conf *d, int fd, uint64_t now_ms);

/* The answer to the query [in, in + in_len) in out[0, cap) (cap >= 512). Returns its length,
 * or 0 when the query gets none. */
size_t bl_dns_respond(const struct bl_dns_conf *d, const uint8_t *in, size_t in_len,
                      uint8_t *out, size_t cap, uint64_t now_ms);

#endif
