/* The owner of run-time discovery on the control thread (discover.h). */
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/discovered.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/status.h"
#include "discover/discover.h"
#include "discover/etcd.h"
#include "discover/resolve.h"
#include "reload.h"
#include "worker.h"

/* Changes that arrive within this many ms share one reload (an etcd transaction, several
 * records of one DNS answer, a burst of puts). */
#define BATCH_MS 20
/* After a refused reload (the file on disk is broken now, say), the next try. */
#define RETRY_MS 1000

static struct {
    struct bl_loop *loop;
    struct bl_etcd **etcd;      /* one per upstream with `discover etcd` */
    uint32_t netcd;
    struct bl_resolve **dns;    /* one per upstream and `server NAME resolve` */
    uint32_t ndns;
    struct bl_timer reload;
    uint64_t generation;        /* the generation the watchers follow */
    struct bl_timer follow;     /* notices reloads made by others (SIGHUP, the API) */
    int started;
} D;

static void sync_resolvers(const struct bl_config *cfg)
{
    uint32_t want = 0;
    for (uint32_t g = 0; g < cfg->ngroups; g++)
        want += cfg->groups[g]->nresolve;
    struct bl_resolve **keep = calloc(want + 1, sizeof(*keep));
    if (!keep) {
        bl_log(BL_LOG_ERROR, "discover: out of memory; resolvers unchanged");
        return;
    }
    uint32_t nkeep = 0;
    for (uint32_t g = 0; g < cfg->ngroups; g++) {
        const struct bl_upstream_group *grp = cfg->groups[g];
        for (uint32_t r = 0; r < grp->nresolve; r++) {
            const char *name = grp->resolve_names[r];
            struct bl_resolve *w = NULL;
            for (uint32_t i = 0; i < D.ndns && !w; i++)
                if (D.dns[i] && bl_resolve_same(D.dns[i], grp->name, name)) {
                    w = D.dns[i];
                    D.dns[i] = NULL;
                }
            for (uint32_t i = 0; i < nkeep && !w; i++)
                if (bl_resolve_same(keep[i], grp->name, name))
                    w = keep[i]; /* the same name twice in one upstream: one watcher */
            if (w) {
                bl_resolve_update(w, cfg);
                int listed = 0;
                for (uint32_t i = 0; i < nkeep && !listed; i++)
                    listed = keep[i] == w;
                if (!listed)
                    keep[nkeep++] = w;
                continue;
            }
            if (!(w = bl_resolve_start(D.loop, cfg, grp->name, name)))
                bl_log(BL_LOG_ERROR, "discover: out of memory starting the resolver of \"%s\"",
                       name);
            else
                keep[nkeep++] = w;
        }
    }
    for (uint32_t i = 0; i < D.ndns; i++)
        bl_resolve_stop(D.dns[i], 1);
    free(D.dns);
    D.dns = keep;
    D.ndns = nkeep;
}

/* Starts, keeps or stops watchers so they match cfg. */
static void sync_watchers(const struct bl_config *cfg)
{
    struct bl_etcd **keep = calloc(cfg->ngroups + 1, sizeof(*keep));
    if (!keep) {
        bl_log(BL_LOG_ERROR, "discover: out of memory; watchers unchanged");
        return;
    }
    uint32_t nkeep = 0;
    for (uint32_t g = 0; g < cfg->ngroups; g++) {
        const struct bl_upstream_group *grp = cfg->groups[g];
        if (!grp->discover_url)
            continue;
        struct bl_etcd *w = NULL;
        for (uint32_t i = 0; i < D.netcd && !w; i++)
            if (D.etcd[i] && bl_etcd_same(D.etcd[i], grp)) {
                w = D.etcd[i];
                D.etcd[i] = NULL;
            }
        if (!w && !(w = bl_etcd_start(D.loop, grp)))
            bl_log(BL_LOG_ERROR, "discover: out of memory starting the watcher of upstream "
                   "\"%s\"", grp->name);
        if (w)
            keep[nkeep++] = w;
    }
    for (uint32_t i = 0; i < D.netcd; i++)
        bl_etcd_stop(D.etcd[i], 1); /* its upstream is gone or watches elsewhere now */
    free(D.etcd);
    D.etcd = keep;
    D.netcd = nkeep;
    sync_resolvers(cfg);
}

static void follow(void)
{
    const struct bl_generation *gen = bl_reload_current();
    if (gen && gen->number != D.generation) {
        D.generation = gen->number;
        sync_watchers(gen->cfg);
    }
}

static void on_reload_timer(struct bl_timer *t)
{
    (void)t;
    char err[1024];
    if (bl_reload(NULL, err, sizeof(err)) != BL_OK) {
        /* bl_reload logged why; what discovery found stays recorded for the next try */
        bl_timer_set(D.loop, &D.reload, bl_now_ms() + RETRY_MS);
        return;
    }
    follow();
}

static void on_follow_timer(struct bl_timer *t)
{
    follow();
    bl_timer_set(D.loop, t, bl_now_ms() + 200);
}

void bl_discover_changed(const char *what)
{
    bl_log(BL_LOG_NOTICE, "discover: %s; reloading", what);
    if (!bl_timer_armed(&D.reload) || D.reload.when > bl_now_ms() + BATCH_MS)
        bl_timer_set(D.loop, &D.reload, bl_now_ms() + BATCH_MS);
}

void bl_discover_start(struct bl_loop *loop)
{
    D.loop = loop;
    D.reload.handler = on_reload_timer;
    D.follow.handler = on_follow_timer;
    D.started = 1;
    follow();
    /* A SIGHUP or an admin API reload may add or drop a `discover` line: followed within
     * 200 ms (a check of one number; no hook into reload.c). */
    bl_timer_set(loop, &D.follow, bl_now_ms() + 200);
}

void bl_discover_stop(void)
{
    if (!D.started)
        return;
    bl_timer_cancel(D.loop, &D.reload);
    bl_timer_cancel(D.loop, &D.follow);
    for (uint32_t i = 0; i < D.netcd; i++)
        bl_etcd_stop(D.etcd[i], 1);
    free(D.etcd);
    D.etcd = NULL;
    D.netcd = 0;
    for (uint32_t i = 0; i < D.ndns; i++)
        bl_resolve_stop(D.dns[i], 1);
    free(D.dns);
    D.dns = NULL;
    D.ndns = 0;
    bl_conf_discovered_clear();
    D.started = 0;
}
