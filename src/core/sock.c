/* Socket helpers. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sock.h"

static int parse_port(const char *s, int *port)
{
    if (!*s)
        return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 65535)
            return -1;
    }
    if (v == 0)
        return -1;
    *port = (int)v;
    return 0;
}

int bl_addr_parse(const char *text, int default_port, int resolve, struct sockaddr_storage *out,
                  socklen_t *outlen, char *err, size_t errlen)
{
    char host[256];
    const char *port_text = NULL;
    int port = default_port;
    memset(out, 0, sizeof(*out));

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || (size_t)(close - text - 1) >= sizeof(host)) {
            snprintf(err, errlen, "invalid address \"%s\"", text);
            return -1;
        }
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        if (close[1] == ':')
            port_text = close + 2;
        else if (close[1]) {
            snprintf(err, errlen, "invalid address \"%s\"", text);
            return -1;
        }
    } else {
        const char *colon = strrchr(text, ':');
        if (colon) {
            if ((size_t)(colon - text) >= sizeof(host)) {
                snprintf(err, errlen, "invalid address \"%s\"", text);
                return -1;
            }
            memcpy(host, text, (size_t)(colon - text));
            host[colon - text] = '\0';
            port_text = colon + 1;
        } else if (!resolve && strspn(text, "0123456789") == strlen(text)) {
            strcpy(host, "*");
            port_text = text;
        } else {
            if (strlen(text) >= sizeof(host)) {
                snprintf(err, errlen, "invalid address \"%s\"", text);
                return -1;
            }
            strcpy(host, text);
        }
    }
    if (port_text && parse_port(port_text, &port) != 0) {
        snprintf(err, errlen, "invalid port in \"%s\"", text);
        return -1;
    }
    if (port == 0) {
        snprintf(err, errlen, "no port in \"%s\"", text);
        return -1;
    }

    struct sockaddr_in *in = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (strcmp(host, "*") == 0 || host[0] == '\0') {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        *outlen = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *outlen = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *outlen = sizeof(*in6);
        return 0;
    }
    if (!resolve && strcmp(host, "localhost") != 0) {
        snprintf(err, errlen, "invalid address \"%s\"", text);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "host not found in \"%s\"", text);
        return -1;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *outlen = res->ai_addrlen;
    if (out->ss_family == AF_INET)
        in->sin_port = htons((uint16_t)port);
    else
        in6->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

int bl_addr_format_ip(const struct sockaddr *sa, char *buf, size_t len)
{
    const void *a = sa->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!inet_ntop(sa->sa_family, a, buf, (socklen_t)len)) {
        snprintf(buf, len, "?");
    }
    return (int)strlen(buf);
}

int bl_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    bl_addr_format_ip(sa, ip, sizeof(ip));
    if (sa->sa_family == AF_INET)
        return snprintf(buf, len, "%s:%u", ip,
                        ntohs(((const struct sockaddr_in *)sa)->sin_port));
    return snprintf(buf, len, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
}

static void bind_failed(const struct sockaddr *sa, int e, char *err, size_t errlen)
{
    char name[BL_ADDR_STRLEN];
    bl_addr_format(sa, name, sizeof(name));
    snprintf(err, errlen, "bind() to %s failed (%d: %s)", name, e, strerror(e));
}

static int probe_exclusive(int type, const struct sockaddr *sa, socklen_t len, char *err,
                           size_t errlen)
{
    int fd = socket(sa->sa_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket() failed (%d: %s)", errno, strerror(errno));
        return -1;
    }
    /* SO_REUSEADDR so that TIME_WAIT leftovers of a previous run do not count; a socket in
     * LISTEN still conflicts. No SO_REUSEPORT: that is the whole point of the probe. */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = bind(fd, sa, len);
    int e = errno;
    close(fd);
    if (rc != 0) {
        bind_failed(sa, e, err, errlen);
        return -1;
    }
    return 0;
}

int bl_sock_probe_exclusive(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen)
{
    return probe_exclusive(SOCK_STREAM, sa, len, err, errlen);
}

int bl_sock_probe_exclusive_udp(const struct sockaddr *sa, socklen_t len, char *err,
                                size_t errlen)
{
    return probe_exclusive(SOCK_DGRAM, sa, len, err, errlen);
}

int bl_sock_udp(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen)
{
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket() failed (%d: %s)", errno, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, sa, len) != 0) {
        int e = errno;
        bind_failed(sa, e, err, errlen);
        close(fd);
        return -1;
    }
    return fd;
}

int bl_sock_listen(const struct sockaddr *sa, socklen_t len, int backlog, int reuseport,
                   unsigned sndbuf, unsigned rcvbuf, char *err, size_t errlen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket() failed (%d: %s)", errno, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Before listen(): the first connection accepted must already get them (and rcvbuf sets
     * the window scale each handshake offers). A cap is the caller's to report. */
    if (bl_sock_set_bufs(fd, sndbuf, rcvbuf, err, errlen) < 0) {
        close(fd);
        return -1;
    }
    if (bind(fd, sa, len) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        bind_failed(sa, e, err, errlen);
        close(fd);
        return -1;
    }
    return fd;
}

/* One buffer: Linux stores twice what it is given (the other half is its bookkeeping), so a
 * read-back below 2 * size means the sysctl cap cut it. */
static int set_buf(int fd, int opt, const char *name, unsigned size, char *err, size_t errlen)
{
    int v = (int)size, got = 0;
    socklen_t len = sizeof(got);
    if (setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)) != 0) {
        snprintf(err, errlen, "setsockopt(%s, %u) failed (%d: %s)", name, size, errno,
                 strerror(errno));
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, opt, &got, &len) == 0 && got / 2 < v) {
        snprintf(err, errlen, "%s=%u is capped by the kernel to %d (net.core.%s)",
                 opt == SO_SNDBUF ? "sndbuf" : "rcvbuf", size, got / 2,
                 opt == SO_SNDBUF ? "wmem_max" : "rmem_max");
        return 1;
    }
    return 0;
}

int bl_sock_set_bufs(int fd, unsigned sndbuf, unsigned rcvbuf, char *err, size_t errlen)
{
    int rc = 0, r;
    if (sndbuf && (r = set_buf(fd, SO_SNDBUF, "SO_SNDBUF", sndbuf, err, errlen)) != 0) {
        if (r < 0)
            return -1;
        rc = 1;
    }
    if (rcvbuf) {
        size_t at = rc ? strlen(err) : 0;
        if (at && at + 3 < errlen) {
            memcpy(err + at, "; ", 3);
            at += 2;
        }
        if ((r = set_buf(fd, SO_RCVBUF, "SO_RCVBUF", rcvbuf, err + at, errlen - at)) != 0)
            return r;
    }
    return rc;
}

int bl_sock_connect(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}
