/* least_conn (nginx's): the available server with the fewest in-flight requests per unit of
 * weight; ties broken by smooth weighted round robin among the tied, so an idle group spreads
 * exactly by weight. Backups only when no primary is available.
 *
 * In-flight counts are the shared atomics (all workers), where nginx without a zone counts per
 * worker process. Weights are effective weights, so a server in slow start looks more loaded.
 *
 * Groups of fewer than LC_TREE_MIN primaries run nginx's O(n) scan. Larger ones read a
 * tournament tree over the primaries, kept by pick() and release() themselves: O(log n), under
 * 100 ns per request at 1000 servers. docs/load-balancing.md has the reasoning and numbers.
 *
 * The tree (group->balancer_data, shared by every worker, relaxed atomics, no lock):
 * - leaf i holds servers[i]'s (in flight, full effective weight) as the last hook saw them, and
 *   a tag: the virtual time its next request is due, with i in the low bits. Nodes hold a copy
 *   of the first leaf below them, in the order: in-flight/weight (exact, cross-multiplied), then
 *   tag, then index. The root is the least loaded server.
 * - pick() takes the first leaf this request has not tried, checks it against the server's live
 *   state (a stale leaf is fixed and the search runs again), then charges it the request the
 *   caller acquires next and moves its tag 1/weight on. release() writes the count back.
 * - availability changes with no hook (checks, passive failures, ejection) and a slow-start ramp
 *   changes the weight by the millisecond, so a server the search finds unavailable or ramping
 *   is parked: its leaf sorts last, a bit is set in `parked`, and every pick reads the parked
 *   servers live until they can take requests at full weight, when they go back in the tree.
 * - exact when single-threaded: a leaf's key is never above its server's live key (counts move
 *   with the hooks; ramps only lower the weight; an unavailable server is caught at the top), so
 *   the first leaf that matches its live state is a true minimum.
 * - racing workers can leave a leaf or a node stale: picks are then momentarily approximate,
 *   never an unavailable server (the winner is checked live), and each pick re-reads one leaf and
 *   recomputes one node in turn, so damage (and counts changed behind the hooks, such as an older
 *   config generation's requests ending) is gone within n picks.
 * Ties go by tag, not by nginx's per-worker smooth round robin, which no O(log n) structure can
 * replay: an idle group still spreads exactly by weight, within one pick at every point.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "upstream/balancer_rr.h"
#include "upstream/slow_start.h"

/* Primaries from which the tree is used. It is already faster at 4 (measured, idle: 50 against
 * 65 ns; 7 servers: ~55 against ~100), but the usual small upstream block keeps nginx's exact
 * sequence while the scan costs under ~100 ns. */
#define LC_TREE_MIN 8

/* Most primaries the tree takes: tags keep the leaf index in their low bits. Beyond, the scan
 * (no such group is known to exist). */
#define LC_TREE_MAX (1u << 16)

/* Tags advance by LC_TAG_SCALE / effective weight per pick (<< shift). */
#define LC_TAG_SCALE (1ull << 32)

/* Stale leaves one pick fixes before it rebuilds the tree from the live state, and servers it
 * parks before it lets the scan decide (servers flapping faster than picks). */
#define LC_FIX_MAX 8
#define LC_PARK_MAX 32

#define LC_NONE UINT32_MAX

/* A node of the tree: a leaf, or a copy of the first leaf below it. */
struct lc_node {
    _Atomic uint64_t key;     /* in flight << 32 | effective weight, or LC_LAST */
    _Atomic uint64_t tag;     /* virtual start time << shift | leaf index */
};

struct lc_tree {
    uint32_t n;               /* group->nprimary */
    uint32_t nleaves;         /* 1 << shift >= n; leaves past n sort last */
    uint32_t shift;
    uint32_t nwords;          /* of parked */
    uint64_t index_mask;      /* nleaves - 1: the index bits of a tag */
    struct lc_node *node;     /* 2 * nleaves: node[1] the root, node[k] the first of 2k and
                               * 2k + 1, node[nleaves + i] the leaf of servers[i] */
    _Atomic uint64_t *parked; /* bit i: servers[i] is read live (unavailable or ramping) */
    uint64_t *stride;         /* per server: its tag's advance per pick at full weight */
};

/* Per-worker state after round robin's: the virtual time and the repair cursors. */
struct lc_worker {
    uint64_t vtime;           /* virtual time: the due tag of this worker's latest pick */
    uint32_t repair_leaf;
    uint32_t repair_node;
};

static inline int64_t lc_active(const struct bl_upstream_server *s)
{
    int32_t a = atomic_load_explicit(&s->state->active, memory_order_relaxed);
    return a > 0 ? a : 0;
}

static struct bl_upstream_server *lc_pick_range(struct bl_pick *p, uint32_t from, uint32_t to)
{
    struct bl_upstream_group *g = p->group;
    struct bl_rr_worker *w = p->wstate;
    struct bl_upstream_server *best = NULL;
    int64_t best_active = 0, best_weight = 1;
    int many = 0;

    for (uint32_t i = from; i < to; i++) {
        struct bl_upstream_server *s = &g->servers[i];
        if (bl_pick_tried(p, i) || !bl_server_available(s, p->now_ms))
            continue;
        int64_t a = lc_active(s), ew = (int64_t)bl_server_effective_weight(s, p->now_ms);
        /* a/ew < best_active/best_weight, without dividing */
        if (!best || a * best_weight < best_active * ew) {
            best = s;
            best_active = a;
            best_weight = ew;
            many = 0;
        } else if (a * best_weight == best_active * ew) {
            many = 1;
        }
    }
    if (!best || !many)
        return best;

    /* Smooth round robin among the tied, starting at the first of them (nginx does the same). */
    struct bl_upstream_server *first = best, *tied = NULL;
    int64_t total = 0, tied_current = 0;
    for (uint32_t i = first->index; i < to; i++) {
        struct bl_upstream_server *s = &g->servers[i];
        if (bl_pick_tried(p, i) || !bl_server_available(s, p->now_ms))
            continue;
        int64_t a = lc_active(s), ew = (int64_t)bl_server_effective_weight(s, p->now_ms);
        if (a * best_weight != best_active * ew)
            continue; /* not tied (or another worker moved it since the first pass) */
        int64_t c = w->current[i] += ew;
        total += ew;
        if (!tied || c > tied_current) {
            tied = s;
            tied_current = c;
        }
    }
    if (!tied)
        return first;
    w->current[tied->index] -= total;
    return tied;
}

/* ---- the tree ---------------------------------------------------------------------------- */

static inline uint64_t lc_key(uint64_t active, uint64_t ew)
{
    return active << 32 | ew;
}

static inline uint64_t lc_full_weight(const struct bl_upstream_server *s)
{
    return (uint64_t)s->weight * BL_WEIGHT_UNIT;
}

/* The key of a leaf out of the tree (parked, full, down in the config, padding): a ratio above
 * any real one (in flight < 2^31, weight >= 1). */
#define LC_LAST lc_key(UINT32_MAX, 1)

/* Whether key k1 with tag t1 goes before k2 with t2: fewer in flight per weight, compared
 * exactly (in flight < 2^32, weight < 2^30), then the older tag, then the lower index (tags
 * carry it). Tags wrap. Measured: these branches beat a branch-free version. */
static inline int lc_before(uint64_t k1, uint64_t t1, uint64_t k2, uint64_t t2)
{
    uint64_t l = (k1 >> 32) * (uint32_t)k2, r = (k2 >> 32) * (uint32_t)k1;
    if (l != r)
        return l < r;
    return (int64_t)(t1 - t2) < 0;
}

static inline uint64_t lc_load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static inline void lc_store(_Atomic uint64_t *v, uint64_t x)
{
    atomic_store_explicit(v, x, memory_order_relaxed);
}

/* Node k := the first of its children; returns whether it changed. */
static inline int lc_recompute(struct lc_node *nd, uint32_t k)
{
    uint64_t lk = lc_load(&nd[2 * k].key), lt = lc_load(&nd[2 * k].tag);
    uint64_t rk = lc_load(&nd[2 * k + 1].key), rt = lc_load(&nd[2 * k + 1].tag);
    if (lc_before(rk, rt, lk, lt)) {
        lk = rk;
        lt = rt;
    }
    if (lc_load(&nd[k].key) == lk && lc_load(&nd[k].tag) == lt)
        return 0;
    lc_store(&nd[k].key, lk);
    lc_store(&nd[k].tag, lt);
    return 1;
}

/* Leaf i changed: recompute its ancestors, up to the first one that does not change (all of
 * them when `all`: repairs after a race). */
static void lc_fix_path(struct lc_tree *t, uint32_t i, int all)
{
    struct lc_node *nd = t->node;
    uint32_t c = t->nleaves + i;
    uint64_t wk = lc_load(&nd[c].key), wt = lc_load(&nd[c].tag);
    while (c > 1) {
        uint64_t sk = lc_load(&nd[c ^ 1].key), st = lc_load(&nd[c ^ 1].tag);
        if (lc_before(sk, st, wk, wt)) {
            wk = sk;
            wt = st;
        }
        c >>= 1;
        if (lc_load(&nd[c].key) == wk && lc_load(&nd[c].tag) == wt) {
            if (!all)
                return; /* unchanged, hence so is every node above */
            continue;
        }
        lc_store(&nd[c].key, wk);
        lc_store(&nd[c].tag, wt);
    }
}

static inline void lc_fix(struct lc_tree *t, uint32_t i)
{
    lc_fix_path(t, i, 0);
}

static inline struct lc_node *lc_leaf(const struct lc_tree *t, uint32_t i)
{
    return &t->node[t->nleaves + i];
}

static inline int lc_is_parked(const struct lc_tree *t, uint32_t i)
{
    return (lc_load(&t->parked[i >> 6]) >> (i & 63)) & 1;
}

/* Sets leaf i to key k and fixes the path if that changes it. */
static inline void lc_set(struct lc_tree *t, uint32_t i, uint64_t k)
{
    if (lc_load(&lc_leaf(t, i)->key) != k) {
        lc_store(&lc_leaf(t, i)->key, k);
        lc_fix(t, i);
    }
}

/* Leaf i sorts last and the server is read live by every pick until it is unparked. */
static void lc_park(struct lc_tree *t, uint32_t i)
{
    atomic_fetch_or_explicit(&t->parked[i >> 6], 1ull << (i & 63), memory_order_relaxed);
    lc_set(t, i, LC_LAST);
}

/* The key leaf i should hold for a server with `active` in flight at full weight: LC_LAST when
 * down in the config or full (it comes back with the release that frees a slot). */
static inline uint64_t lc_live_key(const struct bl_upstream_server *s, uint64_t active)
{
    if (s->down || (s->max_conns && active >= (uint64_t)s->max_conns))
        return LC_LAST;
    return lc_key(active, lc_full_weight(s));
}

static inline int lc_can_unpark(const struct bl_upstream_server *s, uint64_t now_ms)
{
    return bl_server_available(s, now_ms) && bl_slow_start_ramp(s, now_ms) >= BL_WEIGHT_UNIT;
}

/* Back into the tree: s can take requests at full weight. */
static void lc_unpark(struct lc_tree *t, struct bl_upstream_server *s)
{
    uint32_t i = s->index;
    atomic_fetch_and_explicit(&t->parked[i >> 6], ~(1ull << (i & 63)), memory_order_relaxed);
    lc_set(t, i, lc_live_key(s, (uint64_t)lc_active(s)));
}

/* Every leaf from the live state, then every node. now_ms: park what cannot take requests now
 * (0: at init, where the first pick that meets them parks them). Ramping servers stay in at
 * full weight (a lower bound of their key): the search parks them when it meets them. */
static void lc_build(struct lc_tree *t, struct bl_upstream_group *g, uint64_t now_ms)
{
    for (uint32_t i = 0; i < t->nleaves; i++) {
        uint64_t k = LC_LAST;
        if (i < t->n) {
            struct bl_upstream_server *s = &g->servers[i];
            k = lc_live_key(s, (uint64_t)lc_active(s));
            if (now_ms && !s->down && !bl_server_available(s, now_ms)) {
                atomic_fetch_or_explicit(&t->parked[i >> 6], 1ull << (i & 63),
                                         memory_order_relaxed);
                k = LC_LAST;
            } else {
                atomic_fetch_and_explicit(&t->parked[i >> 6], ~(1ull << (i & 63)),
                                          memory_order_relaxed);
            }
        }
        lc_store(&lc_leaf(t, i)->key, k);
    }
    for (uint32_t k = t->nleaves - 1; k >= 1; k--)
        lc_recompute(t->node, k);
}

/* The first leaf under node k not tried by this request (LC_NONE: none that can take
 * requests), with its key and tag. Visits O(tried * depth) nodes. */
static uint32_t lc_search(const struct lc_tree *t, const struct bl_pick *p, uint32_t k,
                          uint64_t *key, uint64_t *tag)
{
    uint64_t wk = lc_load(&t->node[k].key), wt = lc_load(&t->node[k].tag);
    uint32_t w = (uint32_t)(wt & t->index_mask);
    if (wk == LC_LAST)
        return LC_NONE;
    if (bl_likely(w < t->n) && !bl_pick_tried(p, w)) {
        *key = wk;
        *tag = wt;
        return w;
    }
    /* tried, or a copy torn by a race (a padding leaf's index with a real key): below */
    if (k >= t->nleaves)
        return LC_NONE;
    uint64_t lk = 0, lt = 0, rk = 0, rt = 0; /* unset when lc_search finds none */
    uint32_t l = lc_search(t, p, 2 * k, &lk, &lt), r = lc_search(t, p, 2 * k + 1, &rk, &rt);
    if (l == LC_NONE || (r != LC_NONE && lc_before(rk, rt, lk, lt))) {
        l = r;
        lk = rk;
        lt = rt;
    }
    *key = lk;
    *tag = lt;
    return l;
}

static inline struct lc_worker *lc_worker_of(const struct bl_pick *p)
{
    return (struct lc_worker *)((char *)p->wstate + bl_rr_worker_size(p->group));
}

/* One leaf (its in-flight count, its tag's distance from this worker's clock) and one node
 * per pick, in turn: what races between workers (or releases of an older generation) left
 * stale is fixed within n picks. */
static void lc_repair(struct lc_tree *t, struct bl_upstream_group *g, struct lc_worker *lw)
{
    uint32_t i = lw->repair_leaf;
    lw->repair_leaf = i + 1 >= t->n ? 0 : i + 1;
    if (!lc_is_parked(t, i)) {
        struct bl_upstream_server *s = &g->servers[i];
        struct lc_node *leaf = lc_leaf(t, i);
        uint64_t tag = lc_load(&leaf->tag);
        if (bl_unlikely((int64_t)(lw->vtime - tag) > (int64_t)1 << 61)) {
            /* idle so long that the wrapping comparison is about to misread it */
            lc_store(&leaf->tag, lw->vtime | i);
            lc_fix(t, i);
        }
        /* Also puts back a leaf that lost its parked bit in a race: the search parks it
         * again if it still cannot take requests. */
        lc_set(t, i, lc_live_key(s, (uint64_t)lc_active(s)));
    }
    uint32_t k = lw->repair_node;
    lw->repair_node = k <= 1 ? t->nleaves - 1 : k - 1;
    lc_recompute(t->node, k);
}

static inline uint64_t lc_stride(const struct lc_tree *t, const struct bl_upstream_server *s,
                                 uint64_t ew)
{
    return ew == lc_full_weight(s) ? t->stride[s->index] : (LC_TAG_SCALE / ew) << t->shift;
}

/* The tag a parked server competes with: no further ahead of this worker's clock than one
 * advance at its weight now, so a server whose ramp has gone on since its last pick (and had
 * its tag moved on by the larger step of then) is not held back by that. Stored when cut. */
static inline uint64_t lc_parked_tag(struct lc_tree *t, const struct lc_worker *lw,
                                     const struct bl_upstream_server *s, uint64_t ew)
{
    uint64_t tag = lc_load(&lc_leaf(t, s->index)->tag), cap = lw->vtime + lc_stride(t, s, ew);
    if ((int64_t)((tag & ~t->index_mask) - cap) <= 0)
        return tag;
    lc_store(&lc_leaf(t, s->index)->tag, cap | s->index);
    return cap | s->index;
}

/* The request goes to s (acquired next). Tags are the virtual time each server's next request
 * is due (a server of weight w is due every 1/w, starting at 1/2w: picks in the order of
 * (picks + 1/2) / weight, within a pick of the weight's share at every point): the due time
 * becomes this worker's clock, and the next one is 1/weight later (a server back from a long
 * absence is due now, not at its old time). Unless parked, its leaf counts the request. */
static void lc_charge(struct lc_tree *t, struct bl_upstream_server *s, struct lc_worker *lw,
                      uint64_t tag, uint64_t ew, uint64_t active, int parked)
{
    uint32_t i = s->index;
    struct lc_node *leaf = lc_leaf(t, i);
    tag &= ~t->index_mask;
    if ((int64_t)(tag - lw->vtime) < 0)
        tag = lw->vtime;
    lw->vtime = tag;
    lc_store(&leaf->tag, (tag + lc_stride(t, s, ew)) | i);
    if (!parked)
        lc_store(&leaf->key, lc_live_key(s, active + 1));
    lc_fix(t, i);
}

/* The primary to use; NULL when none can take the request, or when other workers kept
 * changing what this pick looked at. */
static struct bl_upstream_server *lc_pick_tree(struct bl_pick *p, struct lc_tree *t)
{
    struct bl_upstream_group *g = p->group;
    struct lc_worker *lw = lc_worker_of(p);
    uint64_t now = p->now_ms;
    lc_repair(t, g, lw); /* first: the previous pick's server has been acquired by now */
    /* The parked servers, live: the best that can take the request, and back into the tree
     * those that can at full weight. */
    uint32_t v = LC_NONE;
    uint64_t vk = 0, vt = 0, vew = 0, va = 0;
    for (uint32_t wi = 0; wi < t->nwords; wi++) {
        uint64_t bits = lc_load(&t->parked[wi]);
        while (bl_unlikely(bits)) {
            uint32_t i = wi * 64 + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            struct bl_upstream_server *s = &g->servers[i];
            if (bl_unlikely(lc_load(&lc_leaf(t, i)->key) != LC_LAST))
                lc_set(t, i, LC_LAST); /* a race put it back in the tree: out again */
            /* the usual reasons first, inline: failing checks, in a failure window */
            if (atomic_load_explicit(&s->state->check_down, memory_order_relaxed) ||
                atomic_load_explicit(&s->state->down_until_ms, memory_order_relaxed) > now ||
                bl_pick_tried(p, i) || !bl_server_available(s, now))
                continue;
            uint64_t a = (uint64_t)lc_active(s), ew = bl_server_effective_weight(s, now);
            if (ew == lc_full_weight(s)) {
                lc_unpark(t, s); /* the search below meets it */
                continue;
            }
            uint64_t k = lc_key(a, ew);
            uint64_t tag = lc_parked_tag(t, lw, s, ew);
            if (v == LC_NONE || lc_before(k, tag, vk, vt)) {
                v = i;
                vk = k;
                vt = tag;
                vew = ew;
                va = a;
            }
        }
    }
    /* The tree: the first untried leaf whose key matches the live state. */
    uint32_t x = LC_NONE;
    uint64_t xk = 0, xt = 0;
    for (int fixes = 0, parks = 0;;) {
        if (bl_unlikely(fixes == LC_FIX_MAX)) {
            lc_build(t, g, now); /* many stale leaves: fix them all at once */
            fixes++;
        } else if (bl_unlikely(fixes > 2 * LC_FIX_MAX || parks > LC_PARK_MAX)) {
            return NULL;
        }
        x = lc_search(t, p, 1, &xk, &xt);
        if (x == LC_NONE)
            break;
        struct bl_upstream_server *s = &g->servers[x];
        if (!bl_server_available(s, now)) {
            lc_park(t, x);
            parks++;
            continue;
        }
        uint64_t ew = bl_server_effective_weight(s, now), a = (uint64_t)lc_active(s);
        if (ew != lc_full_weight(s)) {
            /* ramping: parked, and a candidate at its live weight */
            lc_park(t, x);
            parks++;
            uint64_t k = lc_key(a, ew), tag = lc_parked_tag(t, lw, s, ew);
            if (v == LC_NONE || lc_before(k, tag, vk, vt)) {
                v = x;
                vk = k;
                vt = tag;
                vew = ew;
                va = a;
            }
            continue;
        }
        uint64_t live = lc_live_key(s, a);
        if (live != xk) {
            fixes++;
            if (lc_load(&lc_leaf(t, x)->key) != live)
                lc_set(t, x, live);
            else
                lc_fix_path(t, x, 1); /* the leaf is right: a copy above it is not */
            continue;
        }
        break;
    }
    struct bl_upstream_server *s;
    if (x != LC_NONE && (v == LC_NONE || !lc_before(vk, vt, xk, xt))) {
        s = &g->servers[x];
        lc_charge(t, s, lw, xt, lc_full_weight(s), xk >> 32, 0);
    } else if (v != LC_NONE) {
        s = &g->servers[v];
        lc_charge(t, s, lw, vt, vew, va, 1);
    } else {
        s = NULL;
    }
    return s;
}

static int lc_init(struct bl_upstream_group *g, char *err, size_t errlen)
{
    if (bl_rr_check_group(g, &bl_balancer_least_conn, err, errlen) != BL_OK)
        return BL_ERR;
    g->balancer_data = NULL;
    uint32_t n = g->nprimary;
    if (n < LC_TREE_MIN || n > LC_TREE_MAX)
        return BL_OK;
    uint32_t shift = 0;
    while ((1u << shift) < n)
        shift++;
    uint32_t nleaves = 1u << shift, nwords = (n + 63) / 64;
    size_t head = (sizeof(struct lc_tree) + 63) & ~(size_t)63; /* siblings share a line */
    size_t size = head + 2 * nleaves * sizeof(struct lc_node) +
                  nwords * sizeof(uint64_t) + n * sizeof(uint64_t);
    struct lc_tree *t = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    memset(t, 0, size);
    t->n = n;
    t->nleaves = nleaves;
    t->shift = shift;
    t->nwords = nwords;
    t->index_mask = nleaves - 1;
    t->node = (struct lc_node *)((char *)t + head);
    t->parked = (_Atomic uint64_t *)(t->node + 2 * nleaves);
    t->stride = (uint64_t *)(t->parked + nwords);
    for (uint32_t k = 0; k < 2 * nleaves; k++) {
        atomic_init(&t->node[k].key, LC_LAST);
        atomic_init(&t->node[k].tag, k >= nleaves ? k - nleaves : 0);
    }
    for (uint32_t wi = 0; wi < nwords; wi++)
        atomic_init(&t->parked[wi], 0);
    for (uint32_t i = 0; i < n; i++) {
        t->stride[i] = (LC_TAG_SCALE / lc_full_weight(&g->servers[i])) << shift;
        atomic_store_explicit(&lc_leaf(t, i)->tag, (t->stride[i] / 2 & ~t->index_mask) | i,
                              memory_order_relaxed);
    }
    lc_build(t, g, 0);
    g->balancer_data = t;
    return BL_OK;
}

static void lc_destroy(struct bl_upstream_group *g)
{
    free(g->balancer_data);
    g->balancer_data = NULL;
}

static size_t lc_worker_size(const struct bl_upstream_group *g)
{
    return bl_rr_worker_size(g) + sizeof(struct lc_worker);
}

static void lc_worker_init(struct bl_upstream_group *g, void *wstate)
{
    bl_rr_worker_init(g, wstate);
    struct lc_worker *lw = (struct lc_worker *)((char *)wstate + bl_rr_worker_size(g));
    memset(lw, 0, sizeof(*lw));
    lw->repair_node = 1;
}

static struct bl_upstream_server *lc_pick(struct bl_pick *p)
{
    struct bl_upstream_group *g = p->group;
    struct lc_tree *t = g->balancer_data;
    /* A group the admin API changed: the tree holds the config's weights and limits. */
    struct bl_upstream_server *s =
        t && bl_likely(!bl_group_admin_live(g)) ? lc_pick_tree(p, t) : NULL;
    /* Without the tree, and to make sure before falling back to the backups: the tree's "none"
     * may come from a race (O(n), but then no primary can take requests, or it was tried). */
    if (!s)
        s = lc_pick_range(p, 0, g->nprimary);
    if (!s)
        s = lc_pick_range(p, g->nprimary, g->nservers);
    return s;
}

/* The server's in-flight count, back from the caller's bl_server_release() (or unchanged when
 * the pick was not attempted: fb == NULL), into its leaf. */
static void lc_release(struct bl_pick *p, struct bl_upstream_server *s,
                       const struct bl_pick_feedback *fb)
{
    struct lc_tree *t = s->group->balancer_data;
    if (!t || s->index >= t->n)
        return;
    if (lc_is_parked(t, s->index)) {
        if (lc_can_unpark(s, p->now_ms))
            lc_unpark(t, s);
    } else
        lc_set(t, s->index, lc_live_key(s, (uint64_t)lc_active(s)));
}

const struct bl_balancer_ops bl_balancer_least_conn = {
    .name = "least_conn",
    .flags = BL_BALANCER_ACTIVE,
    .init = lc_init,
    .worker_size = lc_worker_size,
    .worker_init = lc_worker_init,
    .pick = lc_pick,
    .release = lc_release,
    .destroy = lc_destroy,
};
