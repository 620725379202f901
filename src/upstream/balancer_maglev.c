/* hash KEY maglev: Maglev's lookup table (Eisenbud et al., NSDI 2016). Every server walks its
 * own permutation of the table's slots (offset and skip from its name) and the servers take
 * turns, in proportion to weight, claiming their next free slot until the table is full. A key
 * goes to table[mix(crc32(KEY)) mod M]: one multiply and one load per pick. Changing one
 * server moves little more than that server's own share of keys, and every server ends up
 * with its share of slots within a fraction of a percent (M >= 100 * servers).
 *
 * A slot whose server cannot take the request sends the key to another slot drawn from the
 * key and the miss count (not the next slot: neighbouring slots are not independent of each
 * other's owners, so the keys of a down server would not spread by weight); after 20 misses
 * the request goes to round robin, as nginx's hash methods do. Backups are a config error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "upstream/balancer_rr.h"
#include "upstream/lb_hash.h"
#include "upstream/slow_start.h"

#define MAGLEV_SIZE      65537u  /* prime; enough for 655 servers at 1% imbalance */
#define MAGLEV_MAX_TRIES 20
#define MAGLEV_EMPTY     UINT32_MAX

struct maglev_table {
    uint32_t size;            /* M, a prime */
    uint32_t slot[];          /* server index of each slot */
};

/* cursor: bit 63 started, bits 0..15 misses. */
#define MG_STARTED (1ull << 63)

/* The slot a key tries after `misses` misses. */
static inline uint32_t maglev_slot(const struct maglev_table *t, uint32_t key, uint32_t misses)
{
    uint64_t h = misses ? bl_lb_mix64((uint64_t)key << 32 | misses)
                        : (uint64_t)bl_lb_mix32(key) << 32;
    return (uint32_t)bl_lb_range(h, t->size);
}

static int is_prime(uint32_t n)
{
    if (n < 2)
        return 0;
    for (uint32_t d = 2; (uint64_t)d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

static int maglev_init(struct bl_upstream_group *g, char *err, size_t errlen)
{
    if (bl_rr_check_group(g, &bl_balancer_hash_maglev, err, errlen) != BL_OK)
        return BL_ERR;
    uint32_t n = g->nprimary;
    uint64_t want = (uint64_t)n * 100;
    uint32_t m = MAGLEV_SIZE;
    if (want > m) {
        if (want > (1u << 26)) {
            snprintf(err, errlen, "too many servers for a maglev table (%u)",
                     (1u << 26) / 100);
            return BL_ERR;
        }
        for (m = (uint32_t)want; !is_prime(m); m++)
            ;
    }
    struct maglev_table *t = malloc(sizeof(*t) + (size_t)m * sizeof(uint32_t));
    uint64_t *offset = malloc(n * sizeof(uint64_t));
    uint64_t *skip = malloc(n * sizeof(uint64_t));
    uint64_t *next = calloc(n, sizeof(uint64_t));   /* position in each permutation */
    uint64_t *placed = calloc(n, sizeof(uint64_t)); /* slots each server holds */
    if (!t || !offset || !skip || !next || !placed) {
        free(t);
        free(offset);
        free(skip);
        free(next);
        free(placed);
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    t->size = m;
    for (uint32_t j = 0; j < m; j++)
        t->slot[j] = MAGLEV_EMPTY;

    int wmax = 1;
    for (uint32_t i = 0; i < n; i++) {
        const char *name = g->servers[i].name ? g->servers[i].name : "";
        /* The name alone decides the permutation: every ballast builds the same table, and a
         * server keeps its preferences when others come and go. */
        offset[i] = bl_lb_hash64(name, strlen(name), 0x6d61676c65763031ull) % m;
        skip[i] = bl_lb_hash64(name, strlen(name), 0x6d61676c65763032ull) % (m - 1) + 1;
        if (g->servers[i].weight > wmax)
            wmax = g->servers[i].weight;
    }

    /* Weighted population: in round k a server of weight w may hold up to k * w / wmax slots,
     * so shares follow weights while turns stay interleaved. */
    uint32_t filled = 0;
    for (uint64_t round = 1; filled < m; round++) {
        for (uint32_t i = 0; i < n && filled < m; i++) {
            while (placed[i] * (uint64_t)wmax < round * (uint64_t)g->servers[i].weight &&
                   filled < m) {
                uint64_t c = (offset[i] + next[i] * skip[i]) % m;
                while (t->slot[c] != MAGLEV_EMPTY) {
                    next[i]++;
                    c = (offset[i] + next[i] * skip[i]) % m;
                }
                t->slot[c] = i;
                next[i]++;
                placed[i]++;
                filled++;
            }
        }
    }
    free(offset);
    free(skip);
    free(next);
    free(placed);
    g->balancer_data = t;
    return BL_OK;
}

static void maglev_destroy(struct bl_upstream_group *g)
{
    free(g->balancer_data);
    g->balancer_data = NULL;
}

static struct bl_upstream_server *maglev_pick(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    const struct maglev_table *t = g->balancer_data;
    uint32_t tries = (uint32_t)p->cursor & 0xffff;
    if (tries > MAGLEV_MAX_TRIES || g->nprimary < 2 || p->key_len == 0)
        return bl_rr_pick_smooth(p);

    uint32_t key = bl_lb_crc32(p->key, p->key_len);
    struct bl_upstream_server *s = NULL;
    for (;;) {
        uint32_t i = t->slot[maglev_slot(t, key, tries)];
        struct bl_upstream_server *c = &g->servers[i];
        if (!bl_pick_tried(p, i) && bl_server_available(c, p->now_ms) &&
            bl_slow_start_admit(c, p->now_ms, key)) {
            s = c;
            break;
        }
        if (++tries > MAGLEV_MAX_TRIES)
            break;
    }
    p->cursor = MG_STARTED | tries;
    return s ? s : bl_rr_pick_smooth(p);
}

const struct bl_balancer_ops bl_balancer_hash_maglev = {
    .name = "hash_maglev",
    .init = maglev_init,
    .worker_size = bl_rr_worker_size,
    .worker_init = bl_rr_worker_init,
    .pick = maglev_pick,
    .destroy = maglev_destroy,
    .flags = BL_BALANCER_NO_BACKUP | BL_BALANCER_KEY,
};
