/* Socket helpers: address parsing, listening and non-blocking connects. Errors go to a
 * caller-owned string (Redis anet.c style) so the caller can add file:line. */
#ifndef BL_CORE_SOCK_H
#define BL_CORE_SOCK_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

union bl_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* Longest text of an address with port: "[ffff:...:ffff]:65535". */
#define BL_ADDR_STRLEN 56

/* Parses "PORT", "*:PORT", "ADDR:PORT", "[V6]:PORT" (listen form; a bare port binds 0.0.0.0)
 * or, with resolve = 1, "HOST:PORT" where HOST is a name resolved once with getaddrinfo (the
 * first IPv4/IPv6 answer). default_port is used when the text has no port (0: port required).
 * Returns 0 or -1 with err filled. */
int bl_addr_parse(const char *text, int default_port, int resolve, struct sockaddr_storage *out,
                  socklen_t *outlen, char *err, size_t errlen);

/* Writes "1.2.3.4:80" or "[::1]:80"; returns the length. */
int bl_addr_format(const struct sockaddr *sa, char *buf, size_t len);

/* Writes the IP only ("1.2.3.4", "::1"); returns the length. */
int bl_addr_format_ip(const struct sockaddr *sa, char *buf, size_t len);

/* Checks that no other socket holds the address: binds a socket without SO_REUSEPORT and
 * closes it. Returns 0, or -1 with err in nginx's words ("bind() to 127.0.0.1:8080 failed (98:
 * Address already in use)"). See bl_workers_create for why. */
int bl_sock_probe_exclusive(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen);

/* A non-blocking listening socket with SO_REUSEADDR and, when reuseport, SO_REUSEPORT, and
 * sndbuf / rcvbuf (nonzero) set before listen() as bl_sock_set_bufs does. Returns the fd or
 * -1 with err filled. */
int bl_sock_listen(const struct sockaddr *sa, socklen_t len, int backlog, int reuseport,
                   unsigned sndbuf, unsigned rcvbuf, char *err, size_t errlen);

/* Sets SO_SNDBUF and SO_RCVBUF on fd where nonzero (a listening socket: the connections it
 * accepts inherit both, and the kernel's autotuning stops for them). Returns 0; 1 when the
 * kernel capped a size (net.core.wmem_max / rmem_max), with err saying so; -1 with err filled
 * when setsockopt failed. Any thread. */
int bl_sock_set_bufs(int fd, unsigned sndbuf, unsigned rcvbuf, char *err, size_t errlen);

/* UDP counterparts (stream `listen ... udp`): the probe binds a datagram socket without
 * SO_REUSEPORT; bl_sock_udp returns a bound, non-blocking datagram socket with SO_REUSEPORT
 * (every worker has its own) or -1 with err filled. */
int bl_sock_probe_exclusive_udp(const struct sockaddr *sa, socklen_t len, char *err,
                                size_t errlen);
int bl_sock_udp(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen);

/* Starts a non-blocking connect. Returns the fd (connecting or connected) or -1 with errno. */
int bl_sock_connect(const struct sockaddr *sa, socklen_t len);

#endif
