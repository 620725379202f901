/* The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the header a load
 * balancer in front sends before the client's first byte, naming the client's address, and the
 * same header written by ballast towards its upstreams.
 *
 * Reading is resumable the simple way: bl_pp_parse() is given every byte received so far
 * (from the connection's first byte) and answers "need more", "invalid" or the header's
 * length, so a header split across any number of reads parses as one. A header is at most
 * BL_PP_MAX_HEADER bytes (v1: 107 by the spec; v2: 16 + its length, which ballast bounds so
 * one peek sees it whole). Invalid input is refused at the first byte that cannot belong to a
 * header: "GET / HTTP/1.1" fails at once, not after a timeout.
 *
 * Pure functions on caller memory; any thread.
 */
#ifndef BL_CORE_PROXY_PROTO_H
#define BL_CORE_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define BL_PP_V1_MAX 107            /* the spec's longest v1 line, CRLF included */
#define BL_PP_MAX_HEADER 4096       /* longest header accepted (v2 with TLVs) */
#define BL_PP_WRITE_MAX 108         /* room bl_pp_write() needs at most */

/* What a header said. */
struct bl_pp_info {
    uint8_t version;                /* 1 or 2 */
    uint8_t has_addr;               /* 0: v1 UNKNOWN, v2 LOCAL, or a family other than
                                     * TCP/UDP over IPv4/IPv6: the connection's own addresses
                                     * stand, as the spec says */
    uint8_t family;                 /* AF_INET or AF_INET6 when has_addr */
    uint8_t src[16], dst[16];       /* network order, 4 bytes used for AF_INET */
    uint16_t src_port, dst_port;    /* host order */
    char src_ip[46], dst_ip[46];    /* the addresses as text ("" without has_addr) */
};

/* Parses the header at the start of buf[0..len). Returns its length (> 0; the bytes after it
 * are the client's) with *out filled, -2 when every byte so far fits a header that is not yet
 * complete, or -1 for a malformed one with *reason set to a static phrase ("broken header",
 * "unknown PROXY protocol version", ...). */
int bl_pp_parse(const char *buf, size_t len, struct bl_pp_info *out, const char **reason);

/* Reads the header at the start of socket fd without taking a byte past it: the received bytes
 * are peeked, parsed, and only the header's are consumed, so what follows (an HTTP request, a
 * TLS ClientHello) stays in the socket for whoever reads next. Returns 1 with *out filled; -2
 * when the header is not complete yet (wait for the next read event: every arrival raises
 * one); 0 when the peer closed or the socket failed (errno set, or 0 for EOF); -1 for a
 * malformed header, with *reason set and seen[] (seen_cap bytes, may be 0) holding the first
 * bytes received with unprintable ones as \xHH, for the log. */
int bl_pp_read(int fd, struct bl_pp_info *out, const char **reason, char *seen, size_t seen_cap);

/* Writes a header of version (1 or 2) saying that a connection came from src to dst into out
 * (cap >= BL_PP_WRITE_MAX). Returns its length, 0 when cap is too small. Addresses other than
 * IPv4/IPv6 give v1 "PROXY UNKNOWN" and v2 PROXY with family UNSPEC; an IPv4 address paired with an
 * IPv6 one is written as IPv4-mapped IPv6 (HAProxy's choice). */
size_t bl_pp_write(int version, const struct sockaddr *src, const struct sockaddr *dst,
                   char *out, size_t cap);

#endif
