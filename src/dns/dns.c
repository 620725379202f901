/* The health-aware DNS front end (dns.h). */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "conf/dns_conf.h"
#include "core/status.h"
#include "dns/dns.h"
#include "dns/dns_msg.h"
#include "upstream/health_check.h"
#include "upstream/outlier.h"
#include "upstream/upstream.h"

#define DNS_READ_BATCH 64
#define DNS_MAX_ADDRS  64      /* addresses per answer at most: 64 AAAA fill 1232 bytes */
#define DNS_IN_MAX     4096    /* larger queries are dropped: ours are never that big */

/* Rotates answers by one per query, per worker: no shared counter to bounce between cores. */
static _Thread_local uint32_t rotation;

/* The /api/health notion of up (admin/api.c, bl_server_view: BL_SV_UP), without max_conns: a
 * busy server is still a place to send clients. */
static int server_up(const struct bl_upstream_server *s, uint64_t now_ms)
{
    if (bl_server_down(s) || (bl_server_admin(s) & BL_ADMIN_DRAIN))
        return 0;
    if (!bl_server_check_ok(s))
        return 0;
    if (s->group->outlier && bl_outlier_server_state(s, now_ms) == BL_OUTLIER_EJECTED)
        return 0;
    uint64_t until = atomic_load_explicit(&s->state->down_until_ms, memory_order_relaxed);
    return !(until && now_ms < until);
}

struct addrs {
    uint8_t a[DNS_MAX_ADDRS][16];
    uint32_t n;
};

static void collect(const struct bl_upstream_group *g, uint32_t from, uint32_t to, int family,
                    uint64_t now_ms, struct addrs *out)
{
    size_t len = family == AF_INET ? 4 : 16;
    for (uint32_t i = from; i < to && out->n < DNS_MAX_ADDRS; i++) {
        const struct bl_upstream_server *s = &g->servers[i];
        if (s->addr.ss_family != family || !server_up(s, now_ms))
            continue;
        const void *ip = family == AF_INET
                             ? (const void *)&((const struct sockaddr_in *)&s->addr)->sin_addr
                             : (const void *)&((const struct sockaddr_in6 *)&s->addr)->sin6_addr;
        /* Two servers on one address (other ports) are one address to DNS. */
        int dup = 0;
        for (uint32_t k = 0; k < out->n && !dup; k++)
            dup = memcmp(out->a[k], ip, len) == 0;
        if (!dup)
            memcpy(out->a[out->n++], ip, len);
    }
}

/* Adds the record's addresses; returns how many. */
static uint32_t add_record(struct bl_dns_writer *w, const struct bl_dns_conf *d,
                           const struct bl_dns_record *r, uint64_t now_ms)
{
    const struct bl_upstream_group *g = r->group;
    int family = r->type == BL_DNS_T_A ? AF_INET : AF_INET6;
    size_t len = family == AF_INET ? 4 : 16;
    struct addrs got;
    got.n = 0;
    collect(g, 0, g->nprimary, family, now_ms, &got);
    if (!got.n)
        collect(g, g->nprimary, g->nservers, family, now_ms, &got);
    uint32_t first = got.n ? rotation % got.n : 0;
    for (uint32_t k = 0; k < got.n; k++)
        bl_dns_add_addr(w, r->type, got.a[(first + k) % got.n], len, d->ttl_s);
    return got.n;
}

size_t bl_dns_respond(const struct bl_dns_conf *d, const uint8_t *in, size_t in_len,
                      uint8_t *out, size_t cap, uint64_t now_ms)
{
    struct bl_dns_query q;
    struct bl_dns_writer w = {.out = out, .cap = cap};
    switch (bl_dns_parse_query(in, in_len, &q)) {
    case BL_DNS_PARSE_DROP:
        return 0;
    case BL_DNS_PARSE_FORMERR:
        bl_dns_begin(&w, &q, BL_DNS_FORMERR, 0, 0);
        return w.len;
    case BL_DNS_PARSE_NOTIMP:
        bl_dns_begin(&w, &q, BL_DNS_NOTIMP, 0, 0);
        return w.len;
    case BL_DNS_PARSE_BADVERS:
        bl_dns_begin(&w, &q, BL_DNS_BADVERS, 0, 0);
        bl_dns_add_opt(&w, BL_DNS_BADVERS);
        return w.len;
    case BL_DNS_PARSE_OK:
        break;
    }
    size_t limit = bl_dns_answer_limit(&q);
    w.cap = (limit < cap ? limit : cap) - (q.edns ? 11 : 0);   /* room for the OPT */
    rotation++;
    if (q.qclass != BL_DNS_C_IN ||
        bl_dns_name_suffix(q.name, q.name_len, d->zone, d->zone_len) < 0) {
        bl_dns_begin(&w, &q, BL_DNS_REFUSED, 0, 1);
    } else {
        int exists = q.name_len == d->zone_len, answered = 0;
        bl_dns_begin(&w, &q, BL_DNS_NOERROR, 1, 1);
        for (uint32_t i = 0; i < d->nrecords; i++) {
            const struct bl_dns_record *r = &d->records[i];
            if (r->name_len == q.name_len && memcmp(r->name, q.name, q.name_len) == 0) {
                exists = 1;
                if (q.qtype == r->type || q.qtype == BL_DNS_T_ANY)
                    answered += (int)add_record(&w, d, r, now_ms);
            } else if (!exists) {
                /* RFC 8020: a name with records below it exists (NODATA, not NXDOMAIN). */
                exists = bl_dns_name_suffix(r->name, r->name_len, q.name, q.name_len) >= 0;
            }
        }
        if (q.qtype == BL_DNS_T_SOA && q.name_len == d->zone_len) {
            bl_dns_add_soa(&w, 0, d->zone_len, d->ttl_s, d->serial);
            answered = 1;
        }
        if (!exists)
            w.out[3] = (uint8_t)((w.out[3] & 0xf0) | BL_DNS_NXDOMAIN);
        if (!answered)
            bl_dns_add_soa(&w, 1, d->zone_len, d->ttl_s, d->serial);
    }
    if (q.edns) {
        w.cap += 11;
        w.truncated = 0;    /* the OPT's room was kept: it always fits */
        bl_dns_add_opt(&w, BL_DNS_NOERROR);
    }
    return w.len;
}

void bl_dns_read(const struct bl_dns_conf *d, int fd, uint64_t now_ms)
{
    uint8_t in[DNS_IN_MAX], out[BL_DNS_UDP_MAX];
    for (int i = 0; i < DNS_READ_BATCH; i++) {
        struct sockaddr_storage peer;
        memset(&peer, 0, sizeof(peer));     /* the analyzer cannot see recvfrom fill it */
        socklen_t plen = sizeof(peer);
        ssize_t r = recvfrom(fd, in, sizeof(in), MSG_TRUNC, (struct sockaddr *)&peer, &plen);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return;                /* EAGAIN: all read; anything else: the next event */
        }
        if ((size_t)r > sizeof(in))
            continue;
        /* Port 0 cannot be answered; it is also what a spoofed reflection would carry. */
        uint16_t port = 0;
        if (peer.ss_family == AF_INET)
            port = ((const struct sockaddr_in *)&peer)->sin_port;
        else if (peer.ss_family == AF_INET6)
            port = ((const struct sockaddr_in6 *)&peer)->sin6_port;
        if (port == 0)
            continue;
        size_t n = bl_dns_respond(d, in, (size_t)r, out, sizeof(out), now_ms);
        if (n)
            (void)sendto(fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&peer,
                         plen);
    }
}
