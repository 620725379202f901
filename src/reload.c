/* In-process reload on the control thread: build, check, publish, retire generations. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/stats.h"
#include "core/status.h"
#include "reload.h"
#include "upstream/health_check.h"
#include "worker.h"

/* Longest a reload waits for every worker to have switched to the previous one, before it is
 * refused: generations are applied one after the other, so a worker never skips one (the
 * sockets and pooled connections it hands over are relative to the previous generation). */
#define ADOPT_WAIT_MS 2000

static struct {
    struct bl_loop *loop;
    struct bl_worker *ws;
    int n;
    struct bl_generation *gens;   /* newest (current) first */
    struct bl_health *health;     /* the current generation's checker */
    struct bl_io notify;
} R = {.notify.fd = -1};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The oldest generation some worker may still switch from: every worker has seen past g. */
static int all_seen(uint64_t number)
{
    for (int i = 0; i < R.n; i++)
        if (atomic_load_explicit(&R.ws[i].seen, memory_order_acquire) < number)
            return 0;
    return 1;
}

/* ------------------------------------------------------------ statistics by identity */

/* A server block's identity: its first server_name ("_" without one) and its rank among the
 * blocks with that name (the metrics label, admin/metrics.c). */
static const char *block_name(const struct bl_server_block *s)
{
    return s->nnames ? s->names[0] : "_";
}

static uint32_t block_rank(const struct bl_config *cfg, uint32_t i)
{
    uint32_t same = 0;
    for (uint32_t k = 0; k < i; k++)
        same += strcmp(block_name(cfg->servers[k]), block_name(cfg->servers[i])) == 0;
    return same;
}

struct id_maps {
    uint32_t *servers, *locations, *peers, *listens;
};

static void maps_free(struct id_maps *m)
{
    free(m->servers);
    free(m->locations);
    free(m->peers);
    free(m->listens);
}

static uint32_t *map_new(uint32_t n)
{
    uint32_t *m = malloc(((size_t)n + 1) * sizeof(*m));
    for (uint32_t i = 0; m && i < n; i++)
        m[i] = UINT32_MAX;
    return m;
}

static void map_locations(const struct bl_server_block *o, const struct bl_server_block *s,
                          uint32_t *map)
{
    for (int exact = 0; exact < 2; exact++) {
        struct bl_location *const *ol = exact ? o->exact : o->prefix;
        struct bl_location *const *nl = exact ? s->exact : s->prefix;
        uint32_t on = exact ? o->nexact : o->nprefix, nn = exact ? s->nexact : s->nprefix;
        for (uint32_t a = 0; a < on; a++)
            for (uint32_t b = 0; b < nn; b++)
                if (strcmp(ol[a]->path, nl[b]->path) == 0) {
                    map[ol[a]->index] = nl[b]->index;
                    break;
                }
    }
}

/* Where each object of old went in cfg, by the identity its metrics labels carry: listening
 * address; server block name; location path within it; upstream name and server address. */
static int maps_build(struct id_maps *m, const struct bl_config *old, const struct bl_config *cfg)
{
    m->servers = map_new(old->nservers);
    m->locations = map_new(old->nlocations);
    m->peers = map_new(old->nupstream_servers);
    m->listens = map_new(old->nlistens);
    if (!m->servers || !m->locations || !m->peers || !m->listens)
        return BL_ERR;
    for (uint32_t i = 0; i < old->nlistens; i++)
        for (uint32_t k = 0; k < cfg->nlistens; k++)
            if (strcmp(old->listens[i].text, cfg->listens[k].text) == 0) {
                m->listens[i] = k;
                break;
            }
    for (uint32_t i = 0; i < old->nservers; i++) {
        uint32_t rank = block_rank(old, i);
        for (uint32_t k = 0; k < cfg->nservers; k++)
            if (strcmp(block_name(old->servers[i]), block_name(cfg->servers[k])) == 0 &&
                block_rank(cfg, k) == rank) {
                m->servers[i] = k;
                map_locations(old->servers[i], cfg->servers[k], m->locations);
                break;
            }
    }
    for (uint32_t gi = 0; gi < old->ngroups; gi++) {
        const struct bl_upstream_group *og = old->groups[gi];
        const struct bl_upstream_group *g = NULL;
        for (uint32_t k = 0; k < cfg->ngroups && !g; k++)
            if (strcmp(cfg->groups[k]->name, og->name) == 0)
                g = cfg->groups[k];
        if (!g)
            continue;
        /* The same address twice in a group pairs in order, as bl_upstream_carry does. */
        uint8_t *taken = calloc(g->nservers + 1, 1);
        if (!taken)
            return BL_ERR;
        for (uint32_t a = 0; a < og->nservers; a++)
            for (uint32_t b = 0; b < g->nservers; b++)
                if (!taken[b] && bl_upstream_addr_equal(&og->servers[a].addr,
                                                        &g->servers[b].addr)) {
                    taken[b] = 1;
                    m->peers[og->servers[a].id] = g->servers[b].id;
                    break;
                }
        free(taken);
    }
    return BL_OK;
}

/* Adds what `from` counted (sum, less minus) for the objects `to` kept into to's base. */
static int carry_stats(struct bl_generation *to, const struct bl_generation *from,
                       const uint64_t *sum, const uint64_t *minus)
{
    struct id_maps m = {0};
    int rc = maps_build(&m, from->cfg, to->cfg);
    if (rc == BL_OK) {
        struct bl_stats_map sm = {m.servers, m.locations, m.peers, m.listens};
        bl_stats_carry(to->stats, from->stats, sum, minus, &sm);
    }
    maps_free(&m);
    return rc;
}

/* ------------------------------------------------------------ retiring generations */

/* Frees the generations no worker uses any more, after adding what they counted since they
 * stopped being current to the current one; logs when the current one serves everywhere. */
static void collect(void)
{
    struct bl_generation *cur = R.gens;
    if (!cur)
        return;
    if (!cur->announced && all_seen(cur->number)) {
        cur->announced = 1;
        if (cur->reload_start_us)
            bl_log(BL_LOG_NOTICE, "reload: generation %llu serves on every worker, %.3f ms "
                   "after the reload began", (unsigned long long)cur->number,
                   (double)(mono_us() - cur->reload_start_us) / 1000.0);
    }
    struct bl_generation **pp = &cur->next;
    while (*pp) {
        struct bl_generation *g = *pp;
        if (!all_seen(g->number + 1) ||
            atomic_load_explicit(&g->users, memory_order_acquire) != 0) {
            pp = &g->next;
            continue;
        }
        uint64_t *sum = bl_stats_sum(g->stats);
        if (!sum || carry_stats(cur, g, sum, g->snapshot) != BL_OK)
            bl_log(BL_LOG_WARN, "reload: out of memory carrying the statistics of generation "
                   "%llu; some counts are lost", (unsigned long long)g->number);
        free(sum);
        *pp = g->next;
        free(g->snapshot);
        bl_log(BL_LOG_INFO, "reload: generation %llu freed", (unsigned long long)g->number);
        bl_generation_free(g);
    }
}

static void on_notify(struct bl_io *io, uint32_t ev)
{
    BL_UNUSED(ev);
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        ;
    collect();
}

/* ------------------------------------------------------------ reload */

/* What a running process cannot change in place. BL_ERR with err filled. */
static int check_live(const struct bl_config *run, const struct bl_config *cfg, char *err,
                      size_t errlen)
{
    if (cfg->workers != run->workers) {
        snprintf(err, errlen, "\"worker_processes\" changed from %d to %d in %s: a reload "
                 "keeps the running workers; restart ballast or upgrade it in place "
                 "(ballast -s upgrade) to apply it", run->workers, cfg->workers, cfg->file);
        return BL_ERR;
    }
    if ((run->user == NULL) != (cfg->user == NULL) ||
        (run->user && (strcmp(run->user, cfg->user) != 0 || run->uid != cfg->uid ||
                       run->gid != cfg->gid))) {
        snprintf(err, errlen, "\"user\" changed in %s: restart ballast to apply it (privileges "
                 "are dropped once, at start)", cfg->file);
        return BL_ERR;
    }
    if ((uint64_t)cfg->max_head + 1024 > bl_buf_size()) {
        snprintf(err, errlen, "\"large_client_header_buffers\" grew beyond the %u bytes the "
                 "buffers were sized for at start in %s: restart ballast to apply it",
                 bl_buf_size() - 1024, cfg->file);
        return BL_ERR;
    }
    return BL_OK;
}

static int refuse(char *err, size_t errlen)
{
    bl_process_stats_reload(0, 0);
    bl_log(BL_LOG_ERROR, "reload failed, generation %llu serves on: %s",
           (unsigned long long)(R.gens ? R.gens->number : 0), err);
    return BL_ERR;
}

int bl_reload(const char *file, char *err, size_t errlen)
{
    uint64_t t0 = mono_us();
    struct bl_generation *cur = R.gens;
    if (!cur) {
        snprintf(err, errlen, "not running");
        return BL_ERR;
    }
    /* Generations are applied in order: wait for the workers to have taken the last one. */
    for (int i = 0; i < ADOPT_WAIT_MS && !all_seen(cur->number); i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (!all_seen(cur->number)) {
        snprintf(err, errlen, "the workers have not yet switched to generation %llu",
                 (unsigned long long)cur->number);
        return refuse(err, errlen);
    }
    if (!file)
        file = cur->cfg->file;
    bl_log(BL_LOG_NOTICE, "reload: reading %s", file);
    struct bl_config *cfg = bl_conf_load(file, err, errlen);
    if (!cfg)
        return refuse(err, errlen);
    if (check_live(cur->cfg, cfg, err, errlen) != BL_OK) {
        bl_conf_release(cfg);
        return refuse(err, errlen);
    }
    if (cfg->pid_file && (!cur->cfg->pid_file || strcmp(cfg->pid_file, cur->cfg->pid_file) != 0))
        bl_log(BL_LOG_WARN, "reload: \"pid\" changed; the pid file stays %s until a restart",
               cur->cfg->pid_file ? cur->cfg->pid_file : "off");
    if (strcmp(cfg->error_log ? cfg->error_log : "", cur->cfg->error_log ? cur->cfg->error_log
                                                                          : "") != 0 ||
        cfg->error_log_level != cur->cfg->error_log_level)
        bl_log(BL_LOG_WARN, "reload: \"error_log\" changed; it applies at the next restart");
    if (cfg->events_use != cur->cfg->events_use)
        bl_log(BL_LOG_WARN, "reload: \"use\" changed; the workers keep their event loop until a "
               "restart or binary upgrade");

    struct bl_generation *g = bl_generation_create(cfg, R.n, cur, err, errlen);
    if (!g) {
        bl_conf_release(cfg);
        return refuse(err, errlen);
    }
    g->reload_start_us = t0;
    uint64_t *snap = NULL;
    struct bl_health *health = NULL;
    if (bl_generation_build(g, R.ws, err, errlen) != BL_OK ||
        !(snap = bl_stats_sum(cur->stats)) || carry_stats(g, cur, snap, NULL) != BL_OK) {
        if (!snap || !err[0])
            snprintf(err, errlen, "out of memory");
        free(snap);
        bl_generation_free(g);
        return refuse(err, errlen);
    }
    /* The new checker takes over the verdicts of the servers kept (their state is shared)
     * before the old one stops, so a kept server is neither probed in a burst nor reset. */
    health = bl_health_start(R.loop, cfg->groups, cfg->ngroups, err, errlen);
    if (!health) {
        free(snap);
        bl_generation_free(g);
        return refuse(err, errlen);
    }
    bl_health_stop(R.health);
    R.health = health;
    cur->snapshot = snap;
    g->next = cur;
    R.gens = g;
    bl_process_stats_reload(1, g->number);
    bl_generation_publish(R.ws, R.n, g);
    bl_log(BL_LOG_NOTICE, "reload: generation %llu built from %s in %.3f ms; workers switch to "
           "it", (unsigned long long)g->number, file, (double)(mono_us() - t0) / 1000.0);
    collect();
    return BL_OK;
}

int bl_reload_init(struct bl_loop *loop, struct bl_worker *ws, int n,
                   struct bl_generation *first, int notify_fd, char *err, size_t errlen)
{
    R.loop = loop;
    R.ws = ws;
    R.n = n;
    R.gens = first;
    first->announced = 1;
    R.health = bl_health_start(loop, first->cfg->groups, first->cfg->ngroups, err, errlen);
    if (!R.health)
        return BL_ERR;
    R.notify.fd = notify_fd;
    R.notify.handler = on_notify;
    if (notify_fd >= 0 && bl_loop_add_level(loop, &R.notify) != BL_OK) {
        snprintf(err, errlen, "epoll_ctl() failed (%s)", strerror(errno));
        return BL_ERR;
    }
    return BL_OK;
}

const struct bl_generation *bl_reload_current(void)
{
    return R.gens;
}

void bl_reload_shutdown(void)
{
    bl_health_stop(R.health);
    R.health = NULL;
    while (R.gens) {
        struct bl_generation *g = R.gens;
        R.gens = g->next;
        free(g->snapshot);
        bl_generation_free(g);
    }
}
