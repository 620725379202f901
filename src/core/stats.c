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
    free(set);
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
