/* Round robin's bookkeeping, shared by every balancer the way nginx's least_conn, hash and
 * ip_hash modules reuse round robin: the group checks every init() starts with, the per-worker
 * state every balancer's worker state starts with, and the smooth weighted pick the others
 * break ties with or fall back to.
 *
 * Threads: bl_rr_check_group() on the control thread; the rest on the worker that owns
 * wstate. Nothing here locks or allocates.
 */
#ifndef BL_UPSTREAM_BALANCER_RR_H
#define BL_UPSTREAM_BALANCER_RR_H

#include <stddef.h>
#include <stdint.h>

#include "upstream/balancer.h"
#include "upstream/lb_hash.h"

/* Per-worker state of round robin; every balancer's worker state starts with it (nginx: "the
 * round robin data must be first"), so p->wstate can be handed to the functions below. */
struct bl_rr_worker {
    uint64_t rng;        /* this worker's PRNG: random draws, slow-start admission */
    uint32_t seq_pos;    /* round robin: next position in the precomputed sequence */
    uint32_t n;          /* group->nservers */
    int64_t current[];   /* smooth weighted round robin's current weight of each server */
};

/* What every init() checks first: at least one primary, 1 <= weight <= BL_WEIGHT_MAX, no backup
 * when ops->flags has BL_BALANCER_NO_BACKUP, group->hash_bound and group->random_two only with
 * the methods that take them. BL_OK, or BL_ERR with err filled (the caller adds file:line). */
int bl_rr_check_group(const struct bl_upstream_group *g, const struct bl_balancer_ops *ops,
                      char *err, size_t errlen);

size_t bl_rr_worker_size(const struct bl_upstream_group *g);
void bl_rr_worker_init(struct bl_upstream_group *g, void *wstate);

/* Smooth weighted round robin, by effective weight, over the available untried servers in
 * servers[from..to), leaving out servers[skip] (UINT32_MAX: none). NULL if none. O(to - from). */
struct bl_upstream_server *bl_rr_pick_range(struct bl_pick *p, uint32_t from, uint32_t to,
                                            uint32_t skip);

/* nginx's round robin as the hash methods fall back to it: primaries, then backups. O(n). */
struct bl_upstream_server *bl_rr_pick_smooth(struct bl_pick *p);

/* The primaries' configured weights, built by init() and read-only after:
 * - laid end to end (nginx walks peer weights the same way): x in [0, total) falls on the
 *   server whose span holds it (bl_rr_weights_find, O(log n));
 * - as a Walker/Vose alias table, to draw a server in proportion to weight in O(1) with no
 *   data-dependent branch (bl_rr_weights_draw). Integer thresholds: exact proportions. */
struct bl_rr_alias {
    uint64_t threshold;       /* a draw u in [0, total) below it keeps this column's server */
    uint32_t alias;           /* else it goes to this one */
};

struct bl_rr_weights {
    uint32_t n;               /* group->nprimary */
    uint64_t total;           /* sum of their weights, down ones included (as nginx) */
    struct bl_rr_alias *column; /* n columns (in the same allocation) */
    uint64_t cum[];           /* cum[i]: weights of servers[0..i] */
};

/* One malloc'ed block (free() it); NULL when out of memory. */
struct bl_rr_weights *bl_rr_weights_build(const struct bl_upstream_group *g);

/* init()/destroy() of the methods whose process-wide data is just the weights table
 * (ip_hash, hash, random, least_time): bl_rr_check_group() against g->balancer, then
 * bl_rr_weights_build() into g->balancer_data. Control thread. */
int bl_rr_weights_init(struct bl_upstream_group *g, char *err, size_t errlen);
void bl_rr_weights_destroy(struct bl_upstream_group *g);

/* Index of the server whose span holds x (< total). O(log n). */
static inline uint32_t bl_rr_weights_find(const struct bl_rr_weights *wt, uint64_t x)
{
    uint32_t lo = 0, hi = wt->n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (wt->cum[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A server index drawn in proportion to weight, from two uniform 64-bit values. O(1). */
static inline uint32_t bl_rr_weights_draw(const struct bl_rr_weights *wt, uint64_t r1,
                                          uint64_t r2)
{
    uint32_t i = (uint32_t)bl_lb_range(r1, wt->n);
    const struct bl_rr_alias *c = &wt->column[i];
    return bl_lb_range(r2, wt->total) < c->threshold ? i : c->alias;
}

/* Draws up to want (1 or 2) distinct primaries at random in proportion to weight, keeping
 * those that are available, untried and admitted by their slow-start ramp; each rejected draw
 * costs one of the *tries nginx's random method allows (20). Returns how many were found, into
 * out[]. */
uint32_t bl_rr_draw(struct bl_pick *p, const struct bl_rr_weights *wt, uint32_t want,
                    struct bl_upstream_server **out, uint32_t *tries);

#endif
