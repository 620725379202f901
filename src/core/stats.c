/* Per-worker statistics blocks and the process's reload registry (stats.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/stats.h"

const uint64_t bl_stats_bucket_us[BL_STATS_NBUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

struct bl_process_stats bl_process_stats;

#define LINE 64u

static size_t round_line(size_t n)
{
    return (n + LINE - 1) / LINE * LINE;
}

/* One allocation per worker: the header, then its arrays, padded to whole cache lines so that
 * no line holds two workers' counters. */
static struct bl_stats_worker *worker_block(const struct bl_stats_set *set)
{
    size_t off_servers = round_line(sizeof(struct bl_stats_worker));
    size_t off_locations = off_servers + set->nservers * sizeof(struct bl_stats_zone);
    size_t off_peers = off_locations + set->nlocations * sizeof(struct bl_stats_zone);
    size_t off_listens = off_peers + set->npeers * sizeof(struct bl_stats_peer);
    size_t size = round_line(off_listens + set->nlistens * sizeof(struct bl_stats_listen));
    char *m = aligned_alloc(LINE, size);
    if (!m)
        return NULL;
    memset(m, 0, size);
    struct bl_stats_worker *w = (struct bl_stats_worker *)m;
    w->servers = (struct bl_stats_zone *)(m + off_servers);
    w->locations = (struct bl_stats_zone *)(m + off_locations);
    w->peers = (struct bl_stats_peer *)(m + off_peers);
    w->listens = (struct bl_stats_listen *)(m + off_listens);
    return w;
}

struct bl_stats_set *bl_stats_create(uint32_t nworkers, uint32_t nservers, uint32_t nlocations,
                                     uint32_t npeers, uint32_t nlistens)
{
    struct bl_stats_set *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    set->nservers = nservers;
    set->nlocations = nlocations;
    set->npeers = npeers;
    set->nlistens = nlistens;
    set->workers = calloc(nworkers + 1, sizeof(*set->workers));
    if (!set->workers) {
        free(set);
        return NULL;
    }
    if (!(set->base = worker_block(set))) {
        bl_stats_free(set);
        return NULL;
    }
    for (uint32_t i = 0; i < nworkers; i++) {
        if (!(set->workers[i] = worker_block(set))) {
            bl_stats_free(set);
            return NULL;
        }
        set->nworkers = i + 1;
    }
    return set;
}

void bl_stats_free(struct bl_stats_set *set)
{
    if (!set)
        return;
    for (uint32_t i = 0; i < set->nworkers; i++)
        free(set->workers[i]);
    free(set->workers);
    free(set->base);
    free(set);
}

#define ZONE_N (sizeof(struct bl_stats_zone) / sizeof(bl_counter))
#define PEER_N (sizeof(struct bl_stats_peer) / sizeof(bl_counter))
#define LISTEN_N (sizeof(struct bl_stats_listen) / sizeof(bl_counter))
_Static_assert(sizeof(struct bl_stats_zone) % sizeof(bl_counter) == 0, "zone: counters only");
_Static_assert(sizeof(struct bl_stats_peer) % sizeof(bl_counter) == 0, "peer: counters only");
_Static_assert(sizeof(struct bl_stats_listen) % sizeof(bl_counter) == 0, "listen: counters");

size_t bl_stats_ncounters(const struct bl_stats_set *set)
{
    return ((size_t)set->nservers + set->nlocations) * ZONE_N + (size_t)set->npeers * PEER_N +
           (size_t)set->nlistens * LISTEN_N;
}

/* The arrays of a block follow each other without gaps (worker_block), so the servers'
 * first counter starts the flat array. */
static void add_flat(uint64_t *dst, const struct bl_stats_worker *b, size_t n)
{
    const bl_counter *c = (const bl_counter *)(const void *)b->servers;
    for (size_t i = 0; i < n; i++)
        dst[i] += bl_stat_load(&c[i]);
}

uint64_t *bl_stats_sum(const struct bl_stats_set *set)
{
    size_t n = bl_stats_ncounters(set);
    uint64_t *sum = calloc(n + 1, sizeof(*sum));
    if (!sum)
        return NULL;
    add_flat(sum, set->base, n);
    for (uint32_t w = 0; w < set->nworkers; w++)
        add_flat(sum, set->workers[w], n);
    return sum;
}

void bl_stats_worker_totals(const struct bl_stats_set *set, uint32_t worker,
                            struct bl_stats_worker_totals *out)
{
    *out = (struct bl_stats_worker_totals){0};
    const struct bl_stats_worker *b = worker < set->nworkers ? set->workers[worker] : NULL;
    if (!b)
        return;
    for (uint32_t i = 0; i < set->nservers; i++)
        for (unsigned k = 0; k < BL_STATS_NCLASSES; k++)
            out->requests += bl_stat_load(&b->servers[i].requests[k]);
    uint64_t conns = 0, idle = 0;
    for (uint32_t i = 0; i < set->nlistens; i++) {
        out->accepted += bl_stat_load(&b->listens[i].accepted);
        conns += bl_stat_load(&b->listens[i].conns);
        idle += bl_stat_load(&b->listens[i].conns_idle);
    }
    /* Gauges wrap below zero per listen while a connection that moved to this generation
     * (a reload) closes here; summed as uint64 and read as signed they come out right. */
    out->conns = (int64_t)conns;
    out->conns_idle = (int64_t)idle;
}

/* Adds count objects of width counters each, from flat position src_off (old) to dst (new
 * block's array of the same kind). */
static void carry_kind(bl_counter *dst, const uint64_t *sum, const uint64_t *minus,
                       size_t src_off, uint32_t count, size_t width, const uint32_t *map,
                       uint32_t dst_count)
{
    for (uint32_t i = 0; i < count; i++) {
        if (!map || map[i] == UINT32_MAX || map[i] >= dst_count)
            continue;
        for (size_t k = 0; k < width; k++) {
            size_t at = src_off + i * width + k;
            uint64_t d = sum[at] - (minus ? minus[at] : 0);
            bl_counter *c = &dst[(size_t)map[i] * width + k];
            atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                                  memory_order_relaxed);
        }
    }
}

void bl_stats_carry(struct bl_stats_set *to, const struct bl_stats_set *from,
                    const uint64_t *sum, const uint64_t *minus, const struct bl_stats_map *map)
{
    struct bl_stats_worker *b = to->base;
    size_t off = 0;
    carry_kind((bl_counter *)(void *)b->servers, sum, minus, off, from->nservers, ZONE_N,
               map->servers, to->nservers);
    off += (size_t)from->nservers * ZONE_N;
    carry_kind((bl_counter *)(void *)b->locations, sum, minus, off, from->nlocations, ZONE_N,
               map->locations, to->nlocations);
    off += (size_t)from->nlocations * ZONE_N;
    carry_kind((bl_counter *)(void *)b->peers, sum, minus, off, from->npeers, PEER_N,
               map->peers, to->npeers);
    off += (size_t)from->npeers * PEER_N;
    carry_kind((bl_counter *)(void *)b->listens, sum, minus, off, from->nlistens, LISTEN_N,
               map->listens, to->nlistens);
}

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void bl_process_stats_start(void)
{
    atomic_store(&bl_process_stats.start_unix_ms, clock_ms(CLOCK_REALTIME));
    atomic_store(&bl_process_stats.start_mono_ms, clock_ms(CLOCK_MONOTONIC));
    atomic_store(&bl_process_stats.generation, 1);
    atomic_store(&bl_process_stats.reloads_ok, 0);
    atomic_store(&bl_process_stats.reloads_failed, 0);
}

void bl_process_stats_reload(int ok, uint64_t generation)
{
    if (!ok) {
        atomic_fetch_add(&bl_process_stats.reloads_failed, 1);
        return;
    }
    if (!generation)
        generation = atomic_load(&bl_process_stats.generation) + 1;
    atomic_store(&bl_process_stats.generation, generation);
    atomic_fetch_add(&bl_process_stats.reloads_ok, 1);
}
