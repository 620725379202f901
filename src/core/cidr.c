/* Networks and addresses for geo and realip. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"

int bl_ipaddr_parse(const char *s, size_t len, struct bl_ipaddr *out)
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->a) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out->a) == 1) {
        out->family = AF_INET6;
        return 0;
    }
    return -1;
}

int bl_cidr_parse(const char *s, struct bl_cidr *out)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(s, "all") == 0) {
        out->all = 1;
        return 0;
    }
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (bl_ipaddr_parse(s, alen, &out->addr) != 0)
        return -1;
    unsigned max = out->addr.family == AF_INET ? 32 : 128;
    unsigned bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3)
            return -1;
        bits = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max)
            return -1;
    }
    out->bits = (uint8_t)bits;
    int changed = 0;
    for (unsigned i = 0; i < max / 8; i++) {
        unsigned keep = bits >= (i + 1) * 8 ? 8 : bits > i * 8 ? bits - i * 8 : 0;
        uint8_t mask = keep ? (uint8_t)(0xff << (8 - keep)) : 0;
        if (out->addr.a[i] & ~mask)
            changed = 1;
        out->addr.a[i] &= mask;
    }
    return changed;
}

int bl_cidr_match(const struct bl_cidr *c, const struct bl_ipaddr *a)
{
    if (c->all)
        return 1;
    if (c->addr.family != a->family)
        return 0;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr.a, a->a, full) != 0)
        return 0;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((a->a[full] & mask) != c->addr.a[full])
            return 0;
    }
    return 1;
}
