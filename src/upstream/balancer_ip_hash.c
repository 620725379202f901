/* ip_hash (nginx's): the client's /24 (IPv4: first three octets) or whole IPv6 address picks
 * a server, so a client keeps its server while the group does not change. nginx's hash:
 * h = 89, then h = (h * 113 + octet) % 6271 per octet; h % total_weight lands on a server.
 * An unusable server rehashes (another round over the same octets); after 20 misses the
 * request goes to round robin. Backups are a config error, as in nginx.
 *
 * p->cursor keeps (hash, tries) across a request's retries the way nginx keeps them in its
 * per-request data, so a retry walks on from where the last pick stopped.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/status.h"
#include "upstream/balancer_rr.h"
#include "upstream/slow_start.h"

#define IPH_STARTED   (1ull << 63)
#define IPH_MAX_TRIES 20

/* The bytes nginx hashes: 3 octets of IPv4, 16 of IPv6, three zero bytes for anything else. */
static size_t iph_addr(const struct sockaddr *sa, const uint8_t **addr)
{
    static const uint8_t pseudo[3];
    if (sa && sa->sa_family == AF_INET) {
        *addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr.s_addr;
        return 3;
    }
    if (sa && sa->sa_family == AF_INET6) {
        *addr = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        return 16;
    }
    *addr = pseudo;
    return 3;
}

static struct bl_upstream_server *iph_pick(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    const struct bl_rr_weights *wt = g->balancer_data;
    uint32_t hash = 89, tries = 0;
    if (p->cursor & IPH_STARTED) {
        hash = (uint32_t)(p->cursor & 0xffff);
        tries = (uint32_t)(p->cursor >> 16) & 0xffff;
    }
    if (tries > IPH_MAX_TRIES || g->nprimary < 2)
        return bl_rr_pick_smooth(p);

    const uint8_t *addr;
    size_t len = iph_addr(p->client_addr, &addr);
    uint32_t client = bl_lb_crc32(addr, len); /* slow-start admission draws */
    struct bl_upstream_server *s;
    for (;;) {
        for (size_t i = 0; i < len; i++)
            hash = (hash * 113 + addr[i]) % 6271;
        uint32_t idx = bl_rr_weights_find(wt, hash % wt->total);
        s = &g->servers[idx];
        if (!bl_pick_tried(p, idx) && bl_server_available(s, p->now_ms) &&
            bl_slow_start_admit(s, p->now_ms, client))
            break;
        if (++tries > IPH_MAX_TRIES) {
            p->cursor = IPH_STARTED | (uint64_t)tries << 16 | hash;
            return bl_rr_pick_smooth(p);
        }
    }
    p->cursor = IPH_STARTED | (uint64_t)tries << 16 | hash;
    return s;
}

const struct bl_balancer_ops bl_balancer_ip_hash = {
    .name = "ip_hash",
    .init = bl_rr_weights_init,
    .worker_size = bl_rr_worker_size,
    .worker_init = bl_rr_worker_init,
    .pick = iph_pick,
    .destroy = bl_rr_weights_destroy,
    .flags = BL_BALANCER_NO_BACKUP | BL_BALANCER_CLIENT,
};
