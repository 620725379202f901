/* hash KEY [consistent [bound=F]]: nginx's two key hashes, plus consistent hashing with
 * bounded loads.
 *
 * hash KEY (nginx's, Cache::Memcached compatible): h += (crc32([REHASH] KEY) >> 16) & 0x7fff,
 * with the decimal rehash count prefixed from the second round on; h % total_weight lands on
 * a server by weight. A miss rehashes; after 20 misses the request goes to round robin.
 *
 * hash KEY consistent (nginx's ketama ring, Cache::Memcached::Fast compatible): every server
 * puts weight * 160 points on a ring of 32-bit values, point j being
 * crc32(HOST "\0" PORT prev) with prev the previous point's value as 4 little-endian bytes
 * (0 for the first), HOST and PORT split from the server's name as written in the config. A
 * key goes to the first point >= crc32(KEY), wrapping; a miss moves to the next point, and
 * after 20 misses to round robin. Same names and weights, same ring: keys map as under nginx.
 *
 * bound=F (Mirrokni et al., "Consistent Hashing with Bounded Loads"): a server takes a key only
 * while its in-flight requests stay within ceil(F * (in-flight on the group + 1) * weight /
 * total weight); otherwise the key moves on along the ring. The group's in-flight count is
 * kept by pick() and release(), so callers must pair them (balancer.h).
 *
 * Backups are a config error (as in nginx). An empty key, or a group of one, uses round robin.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/status.h"
#include "upstream/balancer_rr.h"
#include "upstream/lb_hash.h"
#include "upstream/slow_start.h"

#define HASH_MAX_TRIES   20     /* nginx: misses before round robin takes over */
#define CHASH_POINTS     160    /* ring points per unit of weight (nginx, ketama) */
#define CHASH_MAX_POINTS (1u << 24)
#define CHASH_NONE       UINT32_MAX

/* The key's CRC, computed once and only when a slow-start ramp needs a draw. */
struct key_draw {
    uint32_t crc;
    int have;
};

static inline int hash_admit(const struct bl_pick *p, const struct bl_upstream_server *s,
                             struct key_draw *d)
{
    if (bl_likely(bl_slow_start_ramp(s, p->now_ms) >= BL_WEIGHT_UNIT))
        return 1;
    if (!d->have) {
        d->crc = bl_lb_crc32(p->key, p->key_len);
        d->have = 1;
    }
    return bl_slow_start_admit(s, p->now_ms, d->crc);
}

static inline int hash_usable(const struct bl_pick *p, uint32_t i, struct key_draw *d)
{
    const struct bl_upstream_server *s = &p->group->servers[i];
    return !bl_pick_tried(p, i) && bl_server_available(s, p->now_ms) && hash_admit(p, s, d);
}

/* ---- hash KEY ---------------------------------------------------------------------------- */

/* cursor: bit 63 started, bits 0..31 the summed hash, 32..46 rounds so far, 47..62 misses. */
#define H_STARTED (1ull << 63)

/* Decimal digits of v into buf (nginx's "%ui"); returns the length. */
static size_t utoa(uint32_t v, char *buf)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static struct bl_upstream_server *hash_pick(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    const struct bl_rr_weights *wt = g->balancer_data;
    uint32_t hash = (uint32_t)p->cursor;
    uint32_t rehash = (uint32_t)(p->cursor >> 32) & 0x7fff;
    uint32_t tries = (uint32_t)(p->cursor >> 47) & 0xffff;
    if (tries > HASH_MAX_TRIES || g->nprimary < 2 || p->key_len == 0)
        return bl_rr_pick_smooth(p);

    struct key_draw d = {0, 0};
    struct bl_upstream_server *s = NULL;
    for (;;) {
        uint32_t crc = bl_lb_crc32_init();
        if (rehash > 0) {
            char buf[10];
            crc = bl_lb_crc32_update(crc, buf, utoa(rehash, buf));
        }
        crc = bl_lb_crc32_final(bl_lb_crc32_update(crc, p->key, p->key_len));
        hash += (crc >> 16) & 0x7fff;
        if (rehash < 0x7fff)
            rehash++;
        uint32_t idx = bl_rr_weights_find(wt, hash % wt->total);
        if (hash_usable(p, idx, &d)) {
            s = &g->servers[idx];
            break;
        }
        if (++tries > HASH_MAX_TRIES)
            break;
    }
    /* tries <= HASH_MAX_TRIES + 1 fits its 17 bits (a false positive of clang 14's analyzer) */
    /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    p->cursor = H_STARTED | (uint64_t)tries << 47 | (uint64_t)rehash << 32 | hash;
    return s ? s : bl_rr_pick_smooth(p);
}

const struct bl_balancer_ops bl_balancer_hash = {
    .name = "hash",
    .init = bl_rr_weights_init,
    .worker_size = bl_rr_worker_size,
    .worker_init = bl_rr_worker_init,
    .pick = hash_pick,
    .destroy = bl_rr_weights_destroy,
    .flags = BL_BALANCER_NO_BACKUP | BL_BALANCER_KEY,
};

/* ---- hash KEY consistent [bound=F] ------------------------------------------------------- */

struct chash_point {
    uint32_t hash;
    uint32_t server;          /* first server (in config order) with this point's name */
};

struct chash_ring {
    _Alignas(64) _Atomic int64_t inflight; /* bound=: picks not yet released, all workers */
    _Alignas(64) uint64_t total_weight;
    uint32_t npoints;
    uint32_t bucket_shift;    /* points whose hash >> bucket_shift == b start at bucket[b] */
    uint32_t *bucket;         /* (1 << (32 - bucket_shift)) + 1 entries */
    uint32_t *same_name;      /* per server: next server with the same name, or CHASH_NONE */
    struct chash_point *points;
};

/* cursor: bit 63 started, bits 0..31 the ring position, 32..47 misses. */
#define CH_STARTED (1ull << 63)

/* nginx's split of a server name into HOST and PORT for the ring. */
static void chash_split(const char *name, size_t len, const char **host, size_t *host_len,
                        const char **port, size_t *port_len)
{
    *host = name;
    *host_len = len;
    *port = "";
    *port_len = 0;
    if (len >= 5 && strncasecmp(name, "unix:", 5) == 0) {
        *host = name + 5;
        *host_len = len - 5;
        return;
    }
    for (size_t j = 0; j < len; j++) {
        char c = name[len - j - 1];
        if (c == ':') {
            *host_len = len - j - 1;
            *port = name + len - j;
            *port_len = j;
            return;
        }
        if (c < '0' || c > '9')
            return;
    }
}

static int chash_cmp(const void *a, const void *b)
{
    const struct chash_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    /* nginx keeps the first of equal points after glibc's (stable) sort: config order */
    return x->server < y->server ? -1 : x->server > y->server;
}

static void chash_free(struct chash_ring *r)
{
    if (!r)
        return;
    free(r->bucket);
    free(r->same_name);
    free(r->points);
    free(r);
}

static int chash_init(struct bl_upstream_group *g, char *err, size_t errlen)
{
    if (bl_rr_check_group(g, &bl_balancer_hash_consistent, err, errlen) != BL_OK)
        return BL_ERR;
    uint64_t total_weight = 0;
    for (uint32_t i = 0; i < g->nprimary; i++)
        total_weight += (uint64_t)g->servers[i].weight;
    if (total_weight * CHASH_POINTS > CHASH_MAX_POINTS) {
        snprintf(err, errlen, "total weight %llu is too large for a consistent hash ring (%u)",
                 (unsigned long long)total_weight, CHASH_MAX_POINTS / CHASH_POINTS);
        return BL_ERR;
    }

    struct chash_ring *r = aligned_alloc(64, sizeof(*r));
    if (!r)
        goto nomem;
    memset(r, 0, sizeof(*r));
    atomic_init(&r->inflight, 0);
    r->total_weight = total_weight;
    r->points = malloc(total_weight * CHASH_POINTS * sizeof(*r->points));
    r->same_name = malloc(g->nservers * sizeof(*r->same_name));
    if (!r->points || !r->same_name)
        goto nomem;

    uint32_t n = 0;
    for (uint32_t i = 0; i < g->nprimary; i++) {
        const struct bl_upstream_server *s = &g->servers[i];
        const char *name = s->name ? s->name : "";
        size_t len = strlen(name);

        /* nginx matches points to servers by name: equal names share their points */
        uint32_t first = i;
        r->same_name[i] = CHASH_NONE;
        for (uint32_t j = 0; j < i; j++) {
            const char *other = g->servers[j].name ? g->servers[j].name : "";
            if (strcmp(other, name) == 0) {
                first = j;
                break;
            }
        }
        if (first != i) {
            uint32_t last = first;
            while (r->same_name[last] != CHASH_NONE)
                last = r->same_name[last];
            r->same_name[last] = i;
        }

        const char *host, *port;
        size_t host_len, port_len;
        chash_split(name, len, &host, &host_len, &port, &port_len);
        uint32_t base = bl_lb_crc32_update(bl_lb_crc32_init(), host, host_len);
        base = bl_lb_crc32_update(base, "", 1);
        base = bl_lb_crc32_update(base, port, port_len);
        uint32_t prev = 0;
        for (uint32_t j = 0; j < (uint32_t)s->weight * CHASH_POINTS; j++) {
            uint8_t le[4] = {(uint8_t)prev, (uint8_t)(prev >> 8), (uint8_t)(prev >> 16),
                             (uint8_t)(prev >> 24)};
            uint32_t h = bl_lb_crc32_final(bl_lb_crc32_update(base, le, 4));
            r->points[n].hash = h;
            r->points[n].server = first;
            n++;
            prev = h;
        }
    }
    for (uint32_t i = g->nprimary; i < g->nservers; i++)
        r->same_name[i] = CHASH_NONE;

    qsort(r->points, n, sizeof(*r->points), chash_cmp);
    uint32_t u = 0;
    for (uint32_t j = 1; j < n; j++)
        if (r->points[j].hash != r->points[u].hash)
            r->points[++u] = r->points[j];
    r->npoints = u + 1;

    /* A bucket index over the top bits narrows the binary search to a point or two. */
    uint32_t bits = 8;
    while (bits < 16 && (1u << bits) < r->npoints)
        bits++;
    r->bucket_shift = 32 - bits;
    r->bucket = malloc(((1u << bits) + 1) * sizeof(*r->bucket));
    if (!r->bucket)
        goto nomem;
    uint32_t j = 0;
    for (uint32_t b = 0; b <= (1u << bits); b++) {
        while (j < r->npoints && (r->points[j].hash >> r->bucket_shift) < b)
            j++;
        r->bucket[b] = j;
    }
    g->balancer_data = r;
    return BL_OK;

nomem:
    chash_free(r);
    snprintf(err, errlen, "out of memory");
    return BL_ERR;
}

static void chash_destroy(struct bl_upstream_group *g)
{
    chash_free(g->balancer_data);
    g->balancer_data = NULL;
}

/* Index of the first point >= hash; npoints when there is none (the caller wraps). */
static uint32_t chash_find(const struct chash_ring *r, uint32_t hash)
{
    uint32_t b = hash >> r->bucket_shift;
    uint32_t lo = r->bucket[b], hi = r->bucket[b + 1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].hash < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A usable server named like point's, or NULL. Several servers with one name take turns by
 * smooth round robin, as nginx's peers of one name do. */
static struct bl_upstream_server *chash_server(struct bl_pick *p, const struct chash_ring *r,
                                               uint32_t first, struct key_draw *d)
{
    struct bl_upstream_group *g = p->group;
    if (bl_likely(r->same_name[first] == CHASH_NONE))
        return hash_usable(p, first, d) ? &g->servers[first] : NULL;
    struct bl_rr_worker *w = p->wstate;
    struct bl_upstream_server *best = NULL;
    int64_t total = 0;
    for (uint32_t i = first; i != CHASH_NONE; i = r->same_name[i]) {
        if (!hash_usable(p, i, d))
            continue;
        int64_t ew = (int64_t)bl_server_effective_weight(&g->servers[i], p->now_ms);
        w->current[i] += ew;
        total += ew;
        if (!best || w->current[i] > w->current[best->index])
            best = &g->servers[i];
    }
    if (best)
        w->current[best->index] -= total;
    return best;
}

/* bound=F: the first server along the ring from pos that has room; if none has (in-flight
 * counts moved under us), the least loaded usable one. *pos: where it was found. */
static struct bl_upstream_server *chash_pick_bounded(struct bl_pick *p,
                                                     const struct chash_ring *r, uint32_t *pos,
                                                     struct key_draw *d)
{
    struct bl_upstream_group *g = p->group;
    int64_t inflight = atomic_load_explicit(&r->inflight, memory_order_relaxed);
    double per_weight = g->hash_bound * (double)((inflight > 0 ? inflight : 0) + 1) /
                        (double)r->total_weight;
    struct bl_upstream_server *spill = NULL;
    double spill_load = 0;
    uint32_t idx = *pos;
    for (uint32_t k = 0; k < r->npoints; k++, idx = idx + 1 == r->npoints ? 0 : idx + 1) {
        for (uint32_t i = r->points[idx].server; i != CHASH_NONE; i = r->same_name[i]) {
            if (!hash_usable(p, i, d))
                continue;
            struct bl_upstream_server *s = &g->servers[i];
            int32_t a = atomic_load_explicit(&s->state->active, memory_order_relaxed);
            if ((double)a < ceil(per_weight * s->weight)) {
                *pos = idx;
                return s;
            }
            double load = (double)a / s->weight;
            if (!spill || load < spill_load) {
                spill = s;
                spill_load = load;
            }
        }
    }
    return spill;
}

static struct bl_upstream_server *chash_pick_unbounded(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    const struct chash_ring *r = g->balancer_data;
    uint32_t pos = (uint32_t)p->cursor;
    uint32_t tries = (uint32_t)(p->cursor >> 32) & 0xffff;
    if (tries > HASH_MAX_TRIES || g->nprimary < 2 || p->key_len == 0)
        return bl_rr_pick_smooth(p);

    struct key_draw d = {0, 0};
    if (!(p->cursor & CH_STARTED)) {
        d.crc = bl_lb_crc32(p->key, p->key_len);
        d.have = 1;
        pos = chash_find(r, d.crc);
        if (pos == r->npoints)
            pos = 0;
    }
    if (g->hash_bound > 0) {
        struct bl_upstream_server *s = chash_pick_bounded(p, r, &pos, &d);
        p->cursor = CH_STARTED | pos;
        return s ? s : bl_rr_pick_smooth(p);
    }
    struct bl_upstream_server *s;
    for (;;) {
        s = chash_server(p, r, r->points[pos].server, &d);
        if (s)
            break;
        pos = pos + 1 == r->npoints ? 0 : pos + 1;
        if (++tries > HASH_MAX_TRIES)
            break;
    }
    /* tries <= HASH_MAX_TRIES + 1 fits its bits (a false positive of clang 14's analyzer) */
    /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    p->cursor = CH_STARTED | (uint64_t)tries << 32 | pos;
    return s ? s : bl_rr_pick_smooth(p);
}

static struct bl_upstream_server *chash_pick(struct bl_pick *p)
{
    struct bl_upstream_server *s = chash_pick_unbounded(p);
    if (s && p->group->hash_bound > 0) {
        struct chash_ring *r = p->group->balancer_data;
        atomic_fetch_add_explicit(&r->inflight, 1, memory_order_relaxed);
    }
    return s;
}

static void chash_release(struct bl_pick *p, struct bl_upstream_server *s,
                          const struct bl_pick_feedback *fb)
{
    if (p->group->hash_bound > 0) {
        struct chash_ring *r = p->group->balancer_data;
        atomic_fetch_sub_explicit(&r->inflight, 1, memory_order_relaxed);
    }
}

const struct bl_balancer_ops bl_balancer_hash_consistent = {
    .name = "hash_consistent",
    .init = chash_init,
    .worker_size = bl_rr_worker_size,
    .worker_init = bl_rr_worker_init,
    .pick = chash_pick,
    .release = chash_release,
    .destroy = chash_destroy,
    .flags = BL_BALANCER_NO_BACKUP | BL_BALANCER_KEY | BL_BALANCER_BOUND,
};
