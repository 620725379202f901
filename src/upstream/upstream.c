/* Server availability and passive health (max_fails / fail_timeout, nginx semantics), and
 * runtime state carried over a reload by server identity. */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "core/status.h"
#include "upstream/balancer.h"
#include "upstream/upstream.h"
#include "upstream/outlier.h"

int bl_server_available(const struct bl_upstream_server *s, uint64_t now_ms)
{
    uint32_t admin = atomic_load_explicit(&s->state->admin, memory_order_relaxed);
    if (bl_likely(!admin)) {
        if (s->down)
            return 0;
    } else if ((admin & (BL_ADMIN_DOWN | BL_ADMIN_DRAIN)) || (s->down && !(admin & BL_ADMIN_UP))) {
        return 0;
    }
    /* Active health checks' verdict (health_check.c writes it). */
    if (atomic_load_explicit(&s->state->check_down, memory_order_relaxed))
        return 0;
    uint64_t until = atomic_load_explicit(&s->state->down_until_ms, memory_order_relaxed);
    if (until && now_ms < until)
        return 0;
    int max_conns = bl_likely(!(admin & BL_ADMIN_MAX_CONNS))
                        ? s->max_conns
                        : atomic_load_explicit(&s->state->admin_max_conns, memory_order_relaxed);
    if (max_conns && bl_server_active_pick(s) >= max_conns)
        return 0;
    /* Last: the only check that may write (an ejection that just ended moves to probation). */
    if (s->group->outlier && !bl_outlier_admit(s, now_ms))
        return 0;
    return 1;
}

void bl_server_report(struct bl_upstream_server *s, int failed, uint64_t now_ms)
{
    struct bl_server_state *st = s->state;
    if (!failed) {
        /* nginx forgets the failures of a window once a request succeeds after it ended. */
        if (atomic_load_explicit(&st->fails, memory_order_relaxed) &&
            now_ms >= atomic_load_explicit(&st->fail_window_ms, memory_order_relaxed) +
                          s->fail_timeout_ms)
            atomic_store_explicit(&st->fails, 0, memory_order_relaxed);
        return;
    }
    /* nginx never marks a group's only server failed (round robin's peers->single, no
     * backup): with nowhere else to go, each request tries it. */
    if (s->max_fails == 0 || s->group->nservers == 1)
        return;
    uint64_t start = atomic_load_explicit(&st->fail_window_ms, memory_order_relaxed);
    if (now_ms >= start + s->fail_timeout_ms) {
        atomic_store_explicit(&st->fail_window_ms, now_ms, memory_order_relaxed);
        atomic_store_explicit(&st->fails, 0, memory_order_relaxed);
    }
    uint32_t n = atomic_fetch_add_explicit(&st->fails, 1, memory_order_relaxed) + 1;
    if (n >= (uint32_t)s->max_fails) {
        atomic_store_explicit(&st->down_until_ms, now_ms + s->fail_timeout_ms,
                              memory_order_relaxed);
        atomic_store_explicit(&st->up_since_ms, now_ms + s->fail_timeout_ms,
                              memory_order_relaxed);
    }
}

int bl_upstream_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    if (a->ss_family == AF_UNIX)
        return strcmp(((const struct sockaddr_un *)a)->sun_path,
                      ((const struct sockaddr_un *)b)->sun_path) == 0;
    return memcmp(a, b, sizeof(*a)) == 0;
}

void bl_server_state_put(struct bl_server_state *st)
{
    if (st && atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1) {
        free(st->per_worker);
        free(st);
    }
}

void bl_group_state_put(struct bl_group_state *gs)
{
    if (gs && atomic_fetch_sub_explicit(&gs->refs, 1, memory_order_acq_rel) == 1) {
        bl_queue_destroy(&gs->queue);
        free(gs->per_worker);
        free(gs);
    }
}

/* ------------------------------------------------------------ per-worker counts */

static struct bl_worker_counts *counts_new(uint32_t n)
{
    size_t size = (size_t)n * sizeof(struct bl_worker_counts);
    struct bl_worker_counts *c = aligned_alloc(_Alignof(struct bl_worker_counts), size);
    if (c)
        memset(c, 0, size);
    return c;
}

/* Whether a pick of g reads the in-flight counts (see shared_active). */
static int group_needs_shared(const struct bl_upstream_group *g)
{
    if ((g->balancer && (g->balancer->flags & BL_BALANCER_ACTIVE)) || g->random_two ||
        g->hash_bound != 0 || g->queue || g->retry_budget_set || g->adaptive)
        return 1;
    for (uint32_t i = 0; i < g->nservers; i++)
        if (g->servers[i].max_conns)
            return 1;
    return 0;
}

int bl_upstream_counts_init(struct bl_upstream_group *const *groups, uint32_t ngroups,
                            uint32_t nworkers)
{
    if (nworkers == 0)
        nworkers = 1;
    for (uint32_t gi = 0; gi < ngroups; gi++) {
        struct bl_upstream_group *g = groups[gi];
        g->shared_active = (uint8_t)group_needs_shared(g);
        struct bl_group_state *gs = g->gstate;
        /* A kept state was made for the same worker count: a reload cannot change it. */
        if (!gs->per_worker) {
            if (!(gs->per_worker = counts_new(nworkers)))
                return BL_ERR;
            gs->nworkers = nworkers;
        }
        for (uint32_t i = 0; i < g->nservers; i++) {
            struct bl_server_state *st = g->servers[i].state;
            if (st->per_worker)
                continue;
            if (!(st->per_worker = counts_new(nworkers)))
                return BL_ERR;
            st->nworkers = nworkers;
        }
    }
    return BL_OK;
}

int64_t bl_server_active(const struct bl_upstream_server *s)
{
    const struct bl_server_state *st = s->state;
    int64_t n = atomic_load_explicit(&st->active, memory_order_relaxed);
    for (uint32_t w = 0; w < st->nworkers; w++)
        n += atomic_load_explicit(&st->per_worker[w].active, memory_order_relaxed);
    return n;
}

uint64_t bl_server_requests(const struct bl_upstream_server *s)
{
    const struct bl_server_state *st = s->state;
    uint64_t n = 0;
    for (uint32_t w = 0; w < st->nworkers; w++)
        n += atomic_load_explicit(&st->per_worker[w].requests, memory_order_relaxed);
    return n;
}

int64_t bl_group_active(const struct bl_upstream_group *g)
{
    const struct bl_group_state *gs = g->gstate;
    int64_t n = atomic_load_explicit(&gs->active, memory_order_relaxed);
    for (uint32_t w = 0; w < gs->nworkers; w++)
        n += atomic_load_explicit(&gs->per_worker[w].active, memory_order_relaxed);
    return n;
}

static struct bl_upstream_group *find_group(struct bl_upstream_group *const *groups, uint32_t n,
                                            const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(groups[i]->name, name) == 0)
            return groups[i];
    return NULL;
}

void bl_upstream_carry(struct bl_upstream_group *const *groups, uint32_t ngroups,
                       struct bl_upstream_group *const *old, uint32_t nold,
                       struct bl_upstream_server **map)
{
    for (uint32_t gi = 0; gi < nold; gi++)
        for (uint32_t k = 0; k < old[gi]->nservers; k++)
            map[old[gi]->servers[k].id] = NULL;
    for (uint32_t gi = 0; gi < ngroups; gi++) {
        struct bl_upstream_group *g = groups[gi];
        struct bl_upstream_group *og = find_group(old, nold, g->name);
        if (!og)
            continue;
        if (og->gstate != g->gstate) {
            bl_group_state_put(g->gstate);
            g->gstate = og->gstate;
            atomic_fetch_add_explicit(&g->gstate->refs, 1, memory_order_relaxed);
        }
        /* The new balancing structures are built from the file: bypassed again only if an
         * operator's change is left after the carry below. */
        atomic_store_explicit(&g->gstate->admin_live, 0, memory_order_relaxed);
        /* The same address twice in one group (nginx allows it) pairs in order. */
        for (uint32_t si = 0; si < g->nservers; si++) {
            struct bl_upstream_server *s = &g->servers[si];
            for (uint32_t k = 0; k < og->nservers; k++) {
                struct bl_upstream_server *o = &og->servers[k];
                if (map[o->id] || !bl_upstream_addr_equal(&s->addr, &o->addr))
                    continue;
                map[o->id] = s;
                if (s->state != o->state) {
                    bl_server_state_put(s->state);
                    s->state = o->state;
                    atomic_fetch_add_explicit(&s->state->refs, 1, memory_order_relaxed);
                }
                bl_server_admin_carry(o, s);
                break;
            }
        }
        if (g->outlier)
            bl_outlier_recount(g);
    }
}

void bl_server_admin_carry(const struct bl_upstream_server *old_s,
                           struct bl_upstream_server *new_s)
{
    uint32_t a = atomic_load_explicit(&new_s->state->admin, memory_order_relaxed);
    if (old_s->weight != new_s->weight)
        a &= ~BL_ADMIN_WEIGHT;
    if (old_s->max_conns != new_s->max_conns)
        a &= ~BL_ADMIN_MAX_CONNS;
    if (old_s->down != new_s->down)
        a &= ~(BL_ADMIN_DOWN | BL_ADMIN_UP);
    else if (!new_s->down)
        a &= ~BL_ADMIN_UP; /* "up although the config says down" means nothing now */
    if ((a & BL_ADMIN_WEIGHT) &&
        atomic_load_explicit(&new_s->state->admin_weight, memory_order_relaxed) ==
            new_s->weight)
        a &= ~BL_ADMIN_WEIGHT;
    atomic_store_explicit(&new_s->state->admin, a, memory_order_release);
    if (a)
        atomic_store_explicit(&new_s->group->gstate->admin_live, 1, memory_order_release);
}
