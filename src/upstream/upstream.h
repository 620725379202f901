/* Upstream groups and servers: the compiled, immutable description plus the shared runtime
 * state every worker reads and updates with atomics.
 *
 * Threads: groups and servers are built by the control thread while compiling a config and are
 * read-only afterwards. bl_server_state is shared by all workers; touch it only through atomics
 * (the helpers below). Nothing here takes a lock.
 */
#ifndef BL_UPSTREAM_UPSTREAM_H
#define BL_UPSTREAM_UPSTREAM_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "upstream/queue.h"

struct bl_balancer_ops;
struct bl_check_conf;    /* health_check.h */
struct bl_outlier_conf;  /* outlier.h */
struct bl_queue_conf;    /* queue.h */
struct bl_adaptive;      /* adaptive.h */

/* One worker's counts for a server or a group: its own cache line, written by that worker
 * alone with a relaxed load and store (no lock prefix), read by any thread with relaxed loads
 * (core/stats.h does the same). */
struct bl_worker_counts {
    _Alignas(64) _Atomic int64_t active; /* in flight from this worker (groups without
                                          * shared_active); an attempt is taken and let go
                                          * on one worker, so it never goes below zero */
    _Atomic uint64_t requests;           /* requests sent (servers only) */
};

/* Runtime state of one server, shared by every worker. Survives reloads for a server that keeps
 * its identity (group name + address). */
struct bl_server_state {
    _Atomic uint32_t refs;           /* configs that hold it (1 + one per reload that kept the
                                      * server while an older config is still in use) */
    _Atomic int32_t active;          /* requests in flight on this server, all workers, from
                                      * groups with shared_active (bl_server_active() adds the
                                      * per-worker counts of the others) */
    _Atomic uint32_t fails;          /* failed attempts in the current fail_timeout window */
    _Atomic uint64_t fail_window_ms; /* start of the current failure-counting window */
    _Atomic uint64_t down_until_ms;  /* passive health: unavailable until then (0 = available) */
    _Atomic uint64_t up_since_ms;    /* when it last became available (for slow_start) */
    _Atomic uint64_t ewma_latency_us;/* peak-EWMA of response time (least_time) */
    _Atomic uint64_t ewma_stamp_ms;  /* when ewma_latency_us was last fed (least_time decays it
                                      * with the time since) */
    /* Active health checks (health_check.c writes, everyone reads). */
    _Atomic uint8_t check_down;      /* 1: the last `fall` checks failed; not used */
    _Atomic uint64_t checks_ok;      /* probes that passed, for statistics */
    _Atomic uint64_t checks_failed;  /* probes that failed, for statistics */
    /* Outlier detection (outlier.c owns these). */
    _Atomic uint32_t consecutive_5xx;     /* 5xx answers in a row */
    _Atomic uint32_t consecutive_gateway; /* 502/503/504 or connect/timeout failures in a row */
    _Atomic uint32_t ejections;           /* times ejected (the ejection multiplier) */
    _Atomic uint64_t ejected_until_ms;    /* ejected until then; 0 = not ejected */
    _Atomic uint64_t probation_until_ms;  /* after an ejection: half-open until then */
    _Atomic int32_t probes;               /* half-open: requests in flight as probes */
    _Atomic uint64_t ejections_total;     /* times ejected since start, for statistics (the
                                           * multiplier above decays; this does not) */
    /* The operator's changes through the admin API: the control thread writes, every worker
     * reads them on its next pick (no message, no lock). They override the config's values
     * (bl_server_weight() and friends below) until the operator changes them back. */
    _Atomic uint32_t admin;               /* BL_ADMIN_* bits; 0: as configured */
    _Atomic int32_t admin_weight;         /* with BL_ADMIN_WEIGHT: 1..BL_WEIGHT_MAX */
    _Atomic int32_t admin_max_conns;      /* with BL_ADMIN_MAX_CONNS: 0 = unlimited */
    /* Each worker's counts ([nworkers], bl_upstream_counts_init; NULL until a generation is
     * made with the server): requests always, active for groups without shared_active. */
    struct bl_worker_counts *per_worker;
    uint32_t nworkers;
};

/* bl_server_state.admin */
#define BL_ADMIN_DOWN      0x01u  /* down: takes no request (overrides the config) */
#define BL_ADMIN_UP        0x02u  /* in service although the config says `down` */
#define BL_ADMIN_DRAIN     0x04u  /* draining: no new request, in-flight ones finish; hash
                                   * keys move as if it were down */
#define BL_ADMIN_WEIGHT    0x08u  /* admin_weight replaces weight= */
#define BL_ADMIN_MAX_CONNS 0x10u  /* admin_max_conns replaces max_conns= */

/* Runtime state of a group, shared by every worker. */
struct bl_group_state {
    _Atomic uint32_t refs;           /* configs that hold it, as bl_server_state.refs */
    _Atomic int32_t active;          /* requests in flight to any server of the group, from
                                      * groups with shared_active (bl_group_active() adds the
                                      * per-worker counts of the others) */
    _Atomic int32_t retries;         /* of those, retries (retry_budget) */
    _Atomic int32_t ejected;         /* servers currently ejected by outlier detection */
    _Atomic uint64_t retry_warn_ms;  /* next time a refused retry may be logged */
    /* Set (never cleared) once the admin API changed any server of the group: the balancers'
     * precomputed structures (round robin's sequence, least_conn's tree, the weight tables of
     * random and least_time) were built from the config's weights and `down` flags, so they
     * step aside for nginx's O(n) loops, which read the live values on every pick. A reload
     * builds them again. */
    _Atomic uint8_t admin_live;
    /* `queue`: the waiting requests of every generation that shares this state (queue.h). */
    struct bl_queue queue;
    struct bl_worker_counts *per_worker; /* [nworkers], as bl_server_state's (active only) */
    uint32_t nworkers;
};

struct bl_upstream_server {
    char *name;                      /* as written in the config: "10.0.0.1:80" */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int weight;                      /* >= 1 */
    int max_fails;                   /* 0 = never mark unavailable; default 1 */
    uint32_t fail_timeout_ms;        /* default 10 s */
    int max_conns;                   /* 0 = unlimited */
    uint32_t slow_start_ms;          /* 0 = none */
    uint8_t backup;                  /* only used when no primary is available */
    uint8_t down;                    /* marked down in the config: never used */
    uint32_t index;                  /* position in group->servers */
    uint32_t id;                     /* process-wide index: per-worker arrays are indexed by it */
    struct bl_server_state *state;
    struct bl_upstream_group *group;
};

struct bl_upstream_group {
    char *name;                      /* upstream NAME; "host:port" for a literal proxy_pass */
    const char *file;                /* where it was defined, for messages */
    int line;
    struct bl_upstream_server *servers;
    uint32_t nservers;
    uint32_t nprimary;               /* servers[0..nprimary) are primaries, the rest backups */
    uint32_t keepalive;              /* idle connections kept per worker (0 = none) */
    uint32_t keepalive_requests;     /* requests per upstream connection before it is closed */
    uint64_t keepalive_timeout_ms;   /* idle upstream connection lifetime */
    const struct bl_balancer_ops *balancer;
    void *balancer_data;             /* process-wide data built by balancer->init (ring, table) */
    char *hash_key;                  /* KEY of hash methods, as written (NULL otherwise) */
    void *hash_key_compiled;         /* compiled KEY (struct bl_template *) */
    /* Parameters of the balancing method that are not part of its name (balancer.h lists the
     * names); zero when not given. The config compiler sets them before balancer->init(). */
    double hash_bound;               /* "hash KEY consistent bound=F": F >= 1.0; 0 = unbounded */
    uint8_t random_two;              /* "random two [least_conn]": the less loaded of two */
    uint32_t index;                  /* position in the config's group list */
    struct bl_check_conf *check;     /* `check ...;` active health checks, or NULL */
    struct bl_outlier_conf *outlier; /* `outlier ...;` outlier detection, or NULL */
    struct bl_queue_conf *queue;     /* `queue N [timeout=T];`: requests wait for a slot
                                      * (in gstate->queue), or NULL */
    struct bl_adaptive *adaptive;    /* `adaptive_concurrency ...;`: the learned limit, or
                                      * NULL */
    uint8_t retry_budget_set;        /* `retry_budget P [min=N];` given (P may be 0) */
    uint8_t shared_active;           /* 1: attempts count in state->active and gstate->active
                                      * (atomics), because a pick reads them: the balancer
                                      * (least_conn, least_time, random two, hash bound=),
                                      * max_conns, queue, retry_budget, adaptive_concurrency.
                                      * 0: in each worker's bl_worker_counts. Set by
                                      * bl_upstream_counts_init() */
    uint32_t retry_budget_percent;
    uint32_t retry_budget_min;       /* retries always allowed in flight (default 3) */
    struct bl_group_state *gstate;
    /* Run-time discovery (src/discover/, docs/discovery.md): the control thread reads these
     * from the serving config and publishes what it finds as a new generation. */
    char *discover_url;              /* `discover etcd URL`: "http://HOST:PORT", or NULL */
    char *discover_prefix;           /* its prefix= (default "/services/NAME/") */
    struct sockaddr_storage discover_addr; /* URL's address, resolved when compiled */
    socklen_t discover_addrlen;
    char **resolve_names;            /* `server NAME resolve`: each NAME as written */
    uint32_t nresolve;
};

static inline uint32_t bl_server_admin(const struct bl_upstream_server *s)
{
    /* s is never NULL: every caller holds a server of a group (analyzer false positive) */
    return atomic_load_explicit(&s->state->admin, /* NOLINT(clang-analyzer-core.NullDereference) */
                                memory_order_relaxed);
}

/* The weight in effect: the config's, or the operator's. Any thread. */
static inline int bl_server_weight(const struct bl_upstream_server *s)
{
    if (__builtin_expect(bl_server_admin(s) & BL_ADMIN_WEIGHT, 0))
        return atomic_load_explicit(&s->state->admin_weight, memory_order_relaxed);
    return s->weight;
}

/* max_conns in effect (0 = unlimited). Any thread. */
static inline int bl_server_max_conns(const struct bl_upstream_server *s)
{
    if (__builtin_expect(bl_server_admin(s) & BL_ADMIN_MAX_CONNS, 0))
        return atomic_load_explicit(&s->state->admin_max_conns, memory_order_relaxed);
    return s->max_conns;
}

/* Marked down, by the config or the operator (draining is not down). Any thread. */
static inline int bl_server_down(const struct bl_upstream_server *s)
{
    uint32_t a = bl_server_admin(s);
    if (a & BL_ADMIN_DOWN)
        return 1;
    return s->down && !(a & BL_ADMIN_UP);
}

/* Whether the group's precomputed balancing structures must be bypassed (see admin_live). */
static inline int bl_group_admin_live(const struct bl_upstream_group *g)
{
    return atomic_load_explicit(&g->gstate->admin_live, memory_order_relaxed);
}

/* Reload: new_s (in the new generation) shares old_s's state (same upstream name and address).
 * The operator's changes survive the reload except where the file itself changed that server:
 * a weight=, max_conns= or down that differs between old_s and new_s drops the API's value for
 * it. When any change is left, new_s's group is marked admin_live (its balancing structures
 * were built from the file's values). Control thread, before the new generation serves. */
void bl_server_admin_carry(const struct bl_upstream_server *old_s,
                           struct bl_upstream_server *new_s);

/* Whether server s may take a new request now: not down, not in a passive-failure window,
 * below max_conns, not failing active checks, not ejected by outlier detection (and, in
 * probation, with its probe slot free). now_ms: the caller's cached clock. */
int bl_server_available(const struct bl_upstream_server *s, uint64_t now_ms);

/* Feedback after an attempt: failed (per proxy_next_upstream rules) or not. Updates the
 * max_fails/fail_timeout window. Any worker thread. */
void bl_server_report(struct bl_upstream_server *s, int failed, uint64_t now_ms);

/* Reload: gives every server of groups[0..ngroups) that keeps its identity in
 * old[0..nold) (same group name, same address) the old server's runtime state (health,
 * passive failures, ejection, slow start, counters), and a kept group its group state; both
 * are shared (refcounted) from then on, so requests still running on the old config update
 * the same state. map[old server id] is set to the kept server of the new config, or NULL;
 * map has room for the old config's server count. Recounts outlier ejections in each new
 * group. Control thread, before the new config serves (and before its health checker starts). */
void bl_upstream_carry(struct bl_upstream_group *const *groups, uint32_t ngroups,
                       struct bl_upstream_group *const *old, uint32_t nold,
                       struct bl_upstream_server **map);

/* Drops one config's hold on a state (bl_conf_release); frees it with the last. */
void bl_server_state_put(struct bl_server_state *st);
void bl_group_state_put(struct bl_group_state *gs);

/* Whether two server addresses are the same (family, address, port). */
int bl_upstream_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* Gives every server state and group state of groups[0..ngroups) that lacks them per-worker
 * counts for nworkers workers (a state a reload kept has them already), and sets each group's
 * shared_active. BL_OK, or BL_ERR when out of memory. Control thread, before the generation
 * serves. */
int bl_upstream_counts_init(struct bl_upstream_group *const *groups, uint32_t ngroups,
                            uint32_t nworkers);

/* Requests in flight on s, from every worker and generation. Any thread. When s's group has
 * shared_active this is one load plus one per worker (only a reload that changed what the
 * group needs leaves counts in both). */
int64_t bl_server_active(const struct bl_upstream_server *s);
/* Requests sent to s since its state was made. Any thread. */
uint64_t bl_server_requests(const struct bl_upstream_server *s);
/* Requests in flight to any server of g. Any thread. */
int64_t bl_group_active(const struct bl_upstream_group *g);

/* In flight on s as a pick compares it with max_conns: the shared count where the group keeps
 * one (one load; requests an older generation counted per worker are not seen), else the sum
 * (a max_conns the operator set on a group without one). Any thread. */
static inline int64_t bl_server_active_pick(const struct bl_upstream_server *s)
{
    if (s->group->shared_active)
        return atomic_load_explicit(&s->state->active, memory_order_relaxed);
    return bl_server_active(s);
}

/* The shared in-flight counts of s and its group, one more / one less (atomics). What a
 * group with shared_active does per attempt; balancer tests call these directly. */
static inline void bl_server_acquire(struct bl_upstream_server *s)
{
    atomic_fetch_add_explicit(&s->state->active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->group->gstate->active, 1, memory_order_relaxed);
}

static inline void bl_server_release(struct bl_upstream_server *s)
{
    atomic_fetch_sub_explicit(&s->state->active, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->group->gstate->active, 1, memory_order_relaxed);
}

/* The owner's add to its own counter: a plain load and store, no lock prefix. */
static inline void bl_worker_count_add(_Atomic int64_t *c, int64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* An attempt of worker `worker` (0-based) takes s / lets it go: counted in the worker's own
 * lines, or in the shared counts when the group's balancing reads them. Both calls of one
 * attempt run on the same worker with the same group. Worker thread. */
static inline void bl_server_acquire_on(struct bl_upstream_server *s, uint32_t worker)
{
    struct bl_worker_counts *c = &s->state->per_worker[worker];
    atomic_store_explicit(&c->requests,
                          atomic_load_explicit(&c->requests, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (s->group->shared_active) {
        bl_server_acquire(s);
        return;
    }
    bl_worker_count_add(&c->active, 1);
    bl_worker_count_add(&s->group->gstate->per_worker[worker].active, 1);
}

static inline void bl_server_release_on(struct bl_upstream_server *s, uint32_t worker)
{
    if (s->group->shared_active) {
        bl_server_release(s);
        return;
    }
    bl_worker_count_add(&s->state->per_worker[worker].active, -1);
    bl_worker_count_add(&s->group->gstate->per_worker[worker].active, -1);
}

#endif
