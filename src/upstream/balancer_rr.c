/* Smooth weighted round robin (nginx's): each pick adds every server's weight to its current
 * weight, takes the largest and subtracts the total, so weights 5,1,1 give a a b a c a a.
 *
 * nginx's loop is O(n) per pick: 1000 servers cost microseconds. With every primary available
 * the sequence is a fixed function of the weights with period sum(weights)/gcd, so init()
 * computes it once and a pick reads the next entry: O(1). When that entry's server cannot take
 * the request (down, failed, full, tried, or declined by its slow-start ramp), that one pick
 * runs the O(n) loop over the others, which shares the server's turns out by weight. The
 * reasoning and measurements are in docs/load-balancing.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "upstream/balancer_rr.h"
#include "upstream/lb_hash.h"
#include "upstream/slow_start.h"

/* Longest sequence precomputed, and the most init() work spent on it (steps * servers). */
#define RR_SEQ_MAX_LEN  (1u << 18)
#define RR_SEQ_MAX_WORK (1ull << 26)

/* The smooth sequence of the primaries at their configured weights, from zero currents. */
struct rr_seq {
    uint32_t len;
    uint64_t total_weight;    /* of the primaries, as configured */
    uint32_t idx[];           /* server index of each step */
};

int bl_rr_check_group(const struct bl_upstream_group *g, const struct bl_balancer_ops *ops,
                      char *err, size_t errlen)
{
    if (g->nprimary == 0 || g->nprimary > g->nservers) {
        snprintf(err, errlen, "no servers in upstream \"%s\"", g->name ? g->name : "");
        return BL_ERR;
    }
    for (uint32_t i = 0; i < g->nservers; i++) {
        const struct bl_upstream_server *s = &g->servers[i];
        if (s->weight < 1 || s->weight > BL_WEIGHT_MAX) {
            snprintf(err, errlen, "invalid weight=%d of server \"%s\" (1..%d)", s->weight,
                     s->name ? s->name : "", BL_WEIGHT_MAX);
            return BL_ERR;
        }
        if (i >= g->nprimary && (ops->flags & BL_BALANCER_NO_BACKUP)) {
            snprintf(err, errlen, "backup server \"%s\" cannot be used with \"%s\"",
                     s->name ? s->name : "", ops->name);
            return BL_ERR;
        }
    }
    if (g->hash_bound != 0 && !(ops->flags & BL_BALANCER_BOUND)) {
        snprintf(err, errlen, "\"bound=\" is only valid with \"hash KEY consistent\"");
        return BL_ERR;
    }
    if (g->hash_bound != 0 && !(g->hash_bound >= 1.0 && g->hash_bound <= 1000.0)) {
        snprintf(err, errlen, "invalid \"bound=%g\" (a factor from 1 to 1000, e.g. 1.25)",
                 g->hash_bound);
        return BL_ERR;
    }
    if (g->random_two && !(ops->flags & BL_BALANCER_TWO)) {
        snprintf(err, errlen, "\"two\" is only valid with \"random\"");
        return BL_ERR;
    }
    return BL_OK;
}

size_t bl_rr_worker_size(const struct bl_upstream_group *g)
{
    return sizeof(struct bl_rr_worker) + g->nservers * sizeof(int64_t);
}

void bl_rr_worker_init(struct bl_upstream_group *g, void *wstate)
{
    /* Distinct, reproducible seeds: workers must not draw the same "random" servers in step. */
    static _Atomic uint64_t seeds;
    struct bl_rr_worker *w = wstate;
    w->rng = bl_lb_mix64(atomic_fetch_add(&seeds, 1) ^ (uint64_t)(uintptr_t)g);
    w->seq_pos = 0;
    w->n = g->nservers;
    for (uint32_t i = 0; i < g->nservers; i++)
        w->current[i] = 0;
}

struct bl_upstream_server *bl_rr_pick_range(struct bl_pick *p, uint32_t from, uint32_t to,
                                            uint32_t skip)
{
    struct bl_upstream_group *g = p->group;
    struct bl_rr_worker *w = p->wstate;
    struct bl_upstream_server *best = NULL;
    int64_t total = 0, best_current = 0;
    for (uint32_t i = from; i < to; i++) {
        struct bl_upstream_server *s = &g->servers[i];
        if (i == skip || bl_pick_tried(p, i) || !bl_server_available(s, p->now_ms))
            continue;
        int64_t ew = (int64_t)bl_server_effective_weight(s, p->now_ms);
        int64_t c = w->current[i] += ew;
        total += ew;
        if (!best || c > best_current) {
            best = s;
            best_current = c;
        }
    }
    if (best)
        w->current[best->index] -= total;
    return best;
}

struct bl_upstream_server *bl_rr_pick_smooth(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    struct bl_upstream_server *s = bl_rr_pick_range(p, 0, g->nprimary, UINT32_MAX);
    if (!s)
        s = bl_rr_pick_range(p, g->nprimary, g->nservers, UINT32_MAX);
    return s;
}

struct bl_rr_weights *bl_rr_weights_build(const struct bl_upstream_group *g)
{
    uint32_t n = g->nprimary;
    size_t head = sizeof(struct bl_rr_weights) + n * sizeof(uint64_t);
    head = (head + 15) & ~(size_t)15;
    struct bl_rr_weights *wt = malloc(head + n * sizeof(struct bl_rr_alias));
    uint64_t *scaled = malloc(n * sizeof(uint64_t));
    uint32_t *small = malloc(n * sizeof(uint32_t)), *large = malloc(n * sizeof(uint32_t));
    if (!wt || !scaled || !small || !large) {
        free(wt);
        free(scaled);
        free(small);
        free(large);
        return NULL;
    }
    wt->n = n;
    wt->total = 0;
    wt->column = (struct bl_rr_alias *)((char *)wt + head);
    for (uint32_t i = 0; i < n; i++) {
        wt->total += (uint64_t)g->servers[i].weight;
        wt->cum[i] = wt->total;
    }

    /* Vose: every column holds `total` units, weight * n of them spread over the columns, a
     * light server's column topped up by one heavy server. */
    uint32_t ns = 0, nl = 0;
    for (uint32_t i = 0; i < n; i++) {
        scaled[i] = (uint64_t)g->servers[i].weight * n;
        if (scaled[i] < wt->total)
            small[ns++] = i;
        else
            large[nl++] = i;
    }
    while (ns && nl) {
        uint32_t l = small[--ns], h = large[--nl];
        wt->column[l].threshold = scaled[l];
        wt->column[l].alias = h;
        scaled[h] -= wt->total - scaled[l];
        if (scaled[h] < wt->total)
            small[ns++] = h;
        else
            large[nl++] = h;
    }
    while (nl) {
        uint32_t h = large[--nl];
        wt->column[h].threshold = wt->total;
        wt->column[h].alias = h;
    }
    while (ns) { /* not reached with exact integers; kept for safety */
        uint32_t l = small[--ns];
        wt->column[l].threshold = wt->total;
        wt->column[l].alias = l;
    }
    free(scaled);
    free(small);
    free(large);
    return wt;
}

/* A primary drawn in proportion to the weights in effect now, for groups the admin API
 * changed (the alias table holds the config's weights). O(n). */
static uint32_t rr_draw_live(const struct bl_upstream_group *g, uint64_t r)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < g->nprimary; i++)
        total += (uint64_t)bl_server_weight(&g->servers[i]);
    uint64_t x = bl_lb_range(r, total);
    for (uint32_t i = 0; i < g->nprimary; i++) {
        uint64_t wi = (uint64_t)bl_server_weight(&g->servers[i]);
        if (x < wi)
            return i;
        x -= wi;
    }
    return g->nprimary - 1; /* a weight changed between the two loops */
}

uint32_t bl_rr_draw(struct bl_pick *p, const struct bl_rr_weights *wt, uint32_t want,
                    struct bl_upstream_server **out, uint32_t *tries)
{
    struct bl_upstream_group *g = p->group;
    struct bl_rr_worker *w = p->wstate;
    uint32_t found = 0;
    int live = bl_group_admin_live(g);
    while (found < want) {
        uint64_t r1 = bl_lb_rand(&w->rng), r2 = bl_lb_rand(&w->rng);
        uint32_t i = bl_likely(!live) ? bl_rr_weights_draw(wt, r1, r2) : rr_draw_live(g, r1);
        struct bl_upstream_server *s = &g->servers[i];
        if (!(found && out[0] == s) && !bl_pick_tried(p, i) &&
            bl_server_available(s, p->now_ms)) {
            uint32_t ramp = bl_slow_start_ramp(s, p->now_ms);
            if (bl_likely(ramp >= BL_WEIGHT_UNIT) ||
                (bl_lb_rand(&w->rng) & (BL_WEIGHT_UNIT - 1)) < ramp) {
                out[found++] = s;
                continue;
            }
        }
        if (++*tries > 20)
            break;
    }
    return found;
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The sequence, or NULL when it would be too long to keep or too slow to compute (then every
 * pick runs the loop, as nginx does). Servers marked `down` in the config are left out, as
 * nginx's loop skips them, so they cost no slow pick. */
static struct rr_seq *rr_seq_build(const struct bl_upstream_group *g)
{
    uint32_t n = g->nprimary;
    uint64_t div = 0, total = 0, total_weight = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!g->servers[i].down)
            div = gcd64(div, (uint64_t)g->servers[i].weight);
    if (div == 0)
        return NULL;
    for (uint32_t i = 0; i < n; i++)
        if (!g->servers[i].down) {
            total += (uint64_t)g->servers[i].weight / div;
            total_weight += (uint64_t)g->servers[i].weight;
        }
    if (total > RR_SEQ_MAX_LEN || total * n > RR_SEQ_MAX_WORK)
        return NULL;
    struct rr_seq *seq = malloc(sizeof(*seq) + total * sizeof(uint32_t));
    int64_t *cur = calloc(n, sizeof(*cur));
    if (!seq || !cur) {
        free(seq);
        free(cur);
        return NULL;
    }
    seq->len = (uint32_t)total;
    seq->total_weight = total_weight;
    for (uint32_t t = 0; t < seq->len; t++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t i = 0; i < n; i++) {
            if (g->servers[i].down)
                continue;
            cur[i] += g->servers[i].weight / (int64_t)div;
            if (best == UINT32_MAX || cur[i] > cur[best])
                best = i;
        }
        cur[best] -= (int64_t)total;
        seq->idx[t] = best;
    }
    free(cur);
    return seq;
}

static int rr_init(struct bl_upstream_group *g, char *err, size_t errlen)
{
    if (bl_rr_check_group(g, &bl_balancer_rr, err, errlen) != BL_OK)
        return BL_ERR;
    g->balancer_data = rr_seq_build(g);
    return BL_OK;
}

static void rr_destroy(struct bl_upstream_group *g)
{
    free(g->balancer_data);
    g->balancer_data = NULL;
}

/* Whether a ramping server takes its turn in the sequence. Declined turns go to the others,
 * so it must take a share q of its turns that makes its share of all picks its effective
 * weight's share, f*w / (W - w + f*w) with f = ramp / UNIT: q = f*W / (W - (1 - f)*w). */
static int rr_ramp_admit(const struct rr_seq *seq, const struct bl_upstream_server *s,
                         uint32_t ramp, struct bl_rr_worker *w)
{
    double f = (double)ramp / BL_WEIGHT_UNIT, total = (double)seq->total_weight;
    double q = f * total / (total - (1.0 - f) * s->weight);
    return (double)(bl_lb_rand(&w->rng) >> 11) * 0x1p-53 < q;
}

static struct bl_upstream_server *rr_pick(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    struct bl_rr_worker *w = p->wstate;
    const struct rr_seq *seq = g->balancer_data;
    uint32_t skip = UINT32_MAX;
    if (bl_likely(seq != NULL) && bl_likely(!bl_group_admin_live(g))) {
        uint32_t pos = w->seq_pos;
        w->seq_pos = pos + 1 == seq->len ? 0 : pos + 1;
        uint32_t i = seq->idx[pos];
        struct bl_upstream_server *s = &g->servers[i];
        if (!bl_pick_tried(p, i) && bl_server_available(s, p->now_ms)) {
            uint32_t ramp = bl_slow_start_ramp(s, p->now_ms);
            if (bl_likely(ramp >= BL_WEIGHT_UNIT) || rr_ramp_admit(seq, s, ramp, w))
                return s;
            skip = i; /* declined by its ramp: this turn goes to the others, by weight */
        }
    }
    struct bl_upstream_server *s = bl_rr_pick_range(p, 0, g->nprimary, skip);
    if (!s && skip != UINT32_MAX)
        s = &g->servers[skip]; /* ramping, but the only primary left: better than a backup */
    if (!s)
        s = bl_rr_pick_range(p, g->nprimary, g->nservers, UINT32_MAX);
    return s;
}

const struct bl_balancer_ops bl_balancer_rr = {
    .name = "round_robin",
    .init = rr_init,
    .worker_size = bl_rr_worker_size,
    .worker_init = bl_rr_worker_init,
    .pick = rr_pick,
    .destroy = rr_destroy,
};

int bl_rr_weights_init(struct bl_upstream_group *g, char *err, size_t errlen)
{
    if (bl_rr_check_group(g, g->balancer, err, errlen) != BL_OK)
        return BL_ERR;
    g->balancer_data = bl_rr_weights_build(g);
    if (!g->balancer_data) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    return BL_OK;
}

void bl_rr_weights_destroy(struct bl_upstream_group *g)
{
    free(g->balancer_data);
    g->balancer_data = NULL;
}
