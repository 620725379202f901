/* ClientHello fields for ssl_preread (tls_hello.h). */
#include <ctype.h>
#include <string.h>

#include "core/tls_hello.h"

enum { HELLO_ERR = -1, HELLO_AGAIN = -2 };

static size_t be16(const uint8_t *p) { return (size_t)p[0] << 8 | p[1]; }
static size_t be24(const uint8_t *p) { return (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2]; }

static const char *version_name(size_t v)
{
    switch (v) {
    case 0x0301: return "TLSv1";
    case 0x0302: return "TLSv1.1";
    case 0x0303: return "TLSv1.2";
    case 0x0304: return "TLSv1.3";
    default: return NULL;
    }
}

/* server_name: a list of (type, name); the first host_name (type 0) counts. */
static int ext_sni(const uint8_t *p, size_t n, struct bl_tls_hello *out)
{
    if (n < 2 || be16(p) != n - 2)
        return -1;
    p += 2;
    n -= 2;
    while (n >= 3) {
        size_t l = be16(p + 1);
        if (l > n - 3)
            return -1;
        if (p[0] == 0 && !out->server_name[0]) {
            if (l == 0 || l >= sizeof(out->server_name))
                return -1;
            for (size_t i = 0; i < l; i++) {
                if (p[3 + i] == 0)
                    return -1;
                out->server_name[i] = (char)tolower(p[3 + i]);
            }
            out->server_name[l] = '\0';
        }
        p += 3 + l;
        n -= 3 + l;
    }
    return n == 0 ? 0 : -1;
}

/* ALPN: a list of length-prefixed names, joined with ',' as nginx does. */
static int ext_alpn(const uint8_t *p, size_t n, struct bl_tls_hello *out)
{
    if (n < 2 || be16(p) != n - 2)
        return -1;
    p += 2;
    n -= 2;
    size_t o = 0;
    while (n) {
        size_t l = p[0];
        if (l == 0 || l > n - 1)
            return -1;
        if (o + l + 2 < sizeof(out->alpn)) {
            if (o)
                out->alpn[o++] = ',';
            memcpy(out->alpn + o, p + 1, l);
            o += l;
        }
        p += 1 + l;
        n -= 1 + l;
    }
    out->alpn[o] = '\0';
    return 0;
}

/* supported_versions: the highest version this reader knows (GREASE values are skipped). */
static int ext_versions(const uint8_t *p, size_t n, size_t *best)
{
    if (n < 1 || p[0] != n - 1 || (p[0] & 1))
        return -1;
    for (size_t i = 1; i + 1 < n; i += 2) {
        size_t v = be16(p + i);
        if (version_name(v) && v > *best)
            *best = v;
    }
    return 0;
}

/* The ClientHello body (after the 4-byte handshake header). */
static int parse_hello(const uint8_t *p, size_t n, struct bl_tls_hello *out)
{
    if (n < 2 + 32 + 1)
        return -1;
    size_t version = be16(p), best = 0;
    size_t off = 2 + 32;
    size_t sid = p[off];
    if (sid > 32 || off + 1 + sid + 2 > n)
        return -1;
    off += 1 + sid;
    size_t cs = be16(p + off);
    if ((cs & 1) || off + 2 + cs + 1 > n)
        return -1;
    off += 2 + cs;
    size_t comp = p[off];
    if (off + 1 + comp > n)
        return -1;
    off += 1 + comp;
    if (off < n) {
        if (off + 2 > n || off + 2 + be16(p + off) != n)
            return -1;
        off += 2;
        while (off < n) {
            if (off + 4 > n)
                return -1;
            size_t type = be16(p + off), l = be16(p + off + 2);
            const uint8_t *e = p + off + 4;
            if (l > n - off - 4)
                return -1;
            int rc = 0;
            if (type == 0)
                rc = ext_sni(e, l, out);
            else if (type == 16)
                rc = ext_alpn(e, l, out);
            else if (type == 43)
                rc = ext_versions(e, l, &best);
            if (rc != 0)
                return -1;
            off += 4 + l;
        }
    }
    const char *name = version_name(best ? best : version);
    if (name)
        strcpy(out->protocol, name);
    return 0;
}

int bl_tls_hello_parse(const uint8_t *buf, size_t len, struct bl_tls_hello *out)
{
    uint8_t hs[BL_TLS_HELLO_MAX];
    size_t hs_len = 0, p = 0;
    memset(out, 0, sizeof(*out));
    /* A record whose header is incomplete: refuse what cannot start one at once. */
    if (len >= 1 && buf[0] != 0x16)
        return HELLO_ERR;
    if (len >= 2 && buf[1] != 3)
        return HELLO_ERR;
    while (p + 5 <= len) {
        if (buf[p] != 0x16 || buf[p + 1] != 3)
            return HELLO_ERR;
        size_t rlen = be16(buf + p + 3);
        if (rlen == 0 || rlen > 16384)
            return HELLO_ERR;
        size_t have = len - p - 5 < rlen ? len - p - 5 : rlen;
        if (hs_len + have > sizeof(hs))
            return HELLO_ERR;
        memcpy(hs + hs_len, buf + p + 5, have);
        hs_len += have;
        p += 5 + have;
        if (hs_len >= 1 && hs[0] != 1)
            return HELLO_ERR; /* a handshake that does not start with a ClientHello */
        if (hs_len >= 4) {
            size_t need = 4 + be24(hs + 1);
            if (need > sizeof(hs))
                return HELLO_ERR;
            if (hs_len >= need) {
                if (parse_hello(hs + 4, need - 4, out) != 0) {
                    memset(out, 0, sizeof(*out));
                    return HELLO_ERR;
                }
                return 0;
            }
        }
        if (have < rlen)
            break;
    }
    return len >= BL_TLS_HELLO_MAX ? HELLO_ERR : HELLO_AGAIN;
}
