/* realip: which address a request comes from behind trusted proxies. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "core/cidr.h"
#include "http/proxy_int.h"
#include "http/realip.h"

/* The values nginx's get_forwarded_addr steps return. */
enum { FWD_DECLINED = -1, FWD_OK = 0, FWD_DONE = 1 };

static int inet4(const char *s, size_t len, uint8_t out[4])
{
    uint32_t addr = 0, octet = 0, dots = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9') {
            octet = octet * 10 + (uint32_t)(ch - '0');
            if (octet > 255)
                return -1;
        } else if (ch == '.') {
            addr = (addr << 8) + octet;
            octet = 0;
            dots++;
        } else {
            return -1;
        }
    }
    if (dots != 3)
        return -1;
    addr = (addr << 8) + octet;
    if (addr == 0xffffffffu) /* INADDR_NONE: nginx cannot tell it from an error */
        return -1;
    out[0] = (uint8_t)(addr >> 24);
    out[1] = (uint8_t)(addr >> 16);
    out[2] = (uint8_t)(addr >> 8);
    out[3] = (uint8_t)addr;
    return 0;
}

static int parse_addr(const char *s, size_t len, struct bl_ipaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (inet4(s, len, out->a) == 0) {
        out->family = AF_INET;
        return 0;
    }
    char buf[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET6, buf, out->a) != 1)
        return -1;
    out->family = AF_INET6;
    return 0;
}

int bl_realip_parse(const char *s, size_t len, struct bl_ipaddr *out, uint16_t *port_out)
{
    *port_out = 0;
    if (parse_addr(s, len, out) == 0)
        return 0;
    const char *end = s + len, *p;
    if (len && s[0] == '[') {
        p = memchr(s, ']', len);
        if (!p || p == end - 1 || *++p != ':')
            return -1;
        s++;
        len -= 2;
    } else if (!(p = memchr(s, ':', len))) {
        return -1;
    }
    p++;
    size_t plen = (size_t)(end - p);
    if (plen == 0 || plen > 5)
        return -1;
    unsigned port = 0;
    for (size_t i = 0; i < plen; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        port = port * 10 + (unsigned)(p[i] - '0');
    }
    if (port < 1 || port > 65535 || parse_addr(s, len - plen - 1, out) != 0)
        return -1;
    *port_out = (uint16_t)port;
    return 0;
}

static int trusted(const struct bl_loc_conf *lc, const struct bl_ipaddr *a)
{
    for (uint32_t i = 0; i < lc->nrealip_from; i++)
        if (bl_cidr_match(&lc->realip_from[i], a))
            return 1;
    return 0;
}

/* One header value: the last address in it when *a is trusted, and with recursive on the
 * addresses before it while each found is trusted too (nginx's
 * ngx_http_get_forwarded_addr_internal). */
static int forwarded(const struct bl_loc_conf *lc, struct bl_ipaddr *a, uint16_t *port,
                     const char *xff, size_t len, int recursive)
{
    if (!trusted(lc, a) || len == 0)
        return FWD_DECLINED;
    const char *p = xff + len - 1;
    for (; p > xff; p--, len--)
        if (*p != ' ' && *p != ',')
            break;
    for (; p > xff; p--)
        if (*p == ' ' || *p == ',') {
            p++;
            break;
        }
    struct bl_ipaddr found;
    uint16_t fport;
    if (bl_realip_parse(p, len - (size_t)(p - xff), &found, &fport) != 0)
        return FWD_DECLINED;
    *a = found;
    *port = fport;
    if (recursive && p > xff) {
        int rc = forwarded(lc, a, port, xff, (size_t)(p - 1 - xff), 1);
        return rc == FWD_DECLINED ? FWD_DONE : rc;
    }
    return FWD_OK;
}

static int name_is(const struct bl_h1_header *h, const char *name, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

void bl_realip(struct bl_request *r, const struct bl_loc_conf *lc)
{
    if (r->realip_done || !lc->nrealip_from)
        return;
    struct bl_client *c = r->c;
    struct bl_ipaddr a;
    memset(&a, 0, sizeof(a));
    if (c->addr.sa.sa_family == AF_INET) {
        a.family = AF_INET;
        memcpy(a.a, &c->addr.in.sin_addr, 4);
    } else if (c->addr.sa.sa_family == AF_INET6) {
        a.family = AF_INET6;
        memcpy(a.a, &c->addr.in6.sin6_addr, 16);
    } else {
        return;
    }
    const struct bl_h1_message *m = &r->msg;
    const char *name = lc->real_ip_header ? lc->real_ip_header : "X-Real-IP";
    size_t nlen = strlen(name);
    int rc = FWD_DECLINED;
    uint16_t port = 0;
    if (lc->real_ip_pp) {
        /* the PROXY header's source, when the peer that sent it is trusted (nginx) */
        if (!c->pp || !trusted(lc, &a))
            return;
        memset(&a, 0, sizeof(a));
        a.family = c->pp->family;
        memcpy(a.a, c->pp->src, c->pp->family == AF_INET ? 4 : 16);
        port = c->pp->src_port;
        rc = FWD_OK;
    } else if (lc->real_ip_xff) {
        /* every X-Forwarded-For line, the last first (nginx) */
        int found = 0;
        for (uint32_t i = m->nheaders; i-- > 0;) {
            if (m->headers[i].id != BL_H1_HDR_X_FORWARDED_FOR)
                continue;
            rc = forwarded(lc, &a, &port, m->headers[i].value, m->headers[i].value_len,
                           (int)lc->real_ip_recursive);
            if (!lc->real_ip_recursive)
                break;
            if (rc == FWD_DECLINED && found) {
                rc = FWD_DONE;
                break;
            }
            if (rc != FWD_OK)
                break;
            found = 1;
        }
    } else {
        for (uint32_t i = 0; i < m->nheaders; i++)
            if (name_is(&m->headers[i], name, nlen)) {
                rc = forwarded(lc, &a, &port, m->headers[i].value, m->headers[i].value_len,
                               (int)lc->real_ip_recursive);
                break;
            }
    }
    if (rc == FWD_DECLINED)
        return;
    memcpy(r->realip_ip, c->ip, sizeof(r->realip_ip));
    r->realip_ip_len = c->ip_len;
    r->realip_port = c->port;
    r->realip_addr = c->addr;
    r->realip_done = 1;
    memset(&c->addr, 0, sizeof(c->addr));
    if (a.family == AF_INET) {
        c->addr.in.sin_family = AF_INET;
        memcpy(&c->addr.in.sin_addr, a.a, 4);
    } else {
        c->addr.in6.sin6_family = AF_INET6;
        memcpy(&c->addr.in6.sin6_addr, a.a, 16);
    }
    c->port = port; /* the header's ("1.2.3.4:5678"), else none: nginx 1.22 keeps it */
    c->ip_len = inet_ntop(a.family, a.a, c->ip, sizeof(c->ip)) ? (uint8_t)strlen(c->ip) : 0;
}

void bl_realip_restore(struct bl_request *r)
{
    if (!r->realip_done)
        return;
    struct bl_client *c = r->c;
    memcpy(c->ip, r->realip_ip, sizeof(c->ip));
    c->ip_len = r->realip_ip_len;
    c->port = r->realip_port;
    c->addr = r->realip_addr;
    r->realip_done = 0;
}
