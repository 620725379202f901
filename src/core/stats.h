/* Per-worker statistics: counter blocks that one worker thread writes and a reader (the
 * metrics endpoint, on another thread) sums over all workers at scrape time.
 *
 * The request path takes no lock and does no atomic read-modify-write (DESIGN.md): every
 * counter has exactly one writer, its worker, which bumps it with a relaxed load and a relaxed
 * store (a plain load/add/store on x86, no `lock` prefix), and each worker's block is its own
 * cache-line-aligned allocation, so no line is shared between workers. A reader loads with
 * relaxed atomic loads: it may see a counter a few increments old, never a torn value, and
 * ThreadSanitizer sees no race. Gauges (connections) are counters that also go down; each
 * worker's own value never goes below zero, and the reader sums them as signed numbers.
 *
 * Which object owns which block: struct bl_stats_worker is indexed by the compiled config's
 * numbering (bl_server_block.index, bl_location.index, bl_upstream_server.id, position in
 * bl_config.listens), so a set belongs to one config. docs/operations.md, "Metrics", lists what
 * each counter is exported as.
 *
 * Build switch: -DBL_NO_STATS compiles every bump away (the counters stay 0), for measuring
 * what the counters cost (bench/RESULTS.md).
 */
#ifndef BL_CORE_STATS_H
#define BL_CORE_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef _Atomic uint64_t bl_counter;

/* Status classes: 1xx..5xx, then anything outside 100..599. */
#define BL_STATS_NCLASSES 6

/* Upstream response time histogram: Prometheus's default buckets (5 ms .. 10 s), in
 * microseconds; an observation goes in the first bucket whose bound it does not exceed, the
 * last slot is +Inf. */
#define BL_STATS_NBUCKETS 11
extern const uint64_t bl_stats_bucket_us[BL_STATS_NBUCKETS];

/* Why an upstream attempt failed (bl_stats_peer.failures). */
enum bl_stats_fail {
    BL_SF_CONNECT_ERROR = 0, /* connect refused/unreachable: failed before any request byte */
    BL_SF_CONNECT_TIMEOUT,   /* proxy_connect_timeout */
    BL_SF_TIMEOUT,           /* proxy_send_timeout / proxy_read_timeout */
    BL_SF_ERROR,             /* reset or closed after connecting, before or during the answer */
    BL_SF_INVALID,           /* invalid or too large response head, bad chunked framing */
    BL_SF_N,
};

/* A server block or a location. */
struct bl_stats_zone {
    bl_counter requests[BL_STATS_NCLASSES]; /* by status sent to the client */
    bl_counter bytes_in;                    /* request head and body bytes from clients */
    bl_counter bytes_out;                   /* response head and body bytes to clients */
};

struct bl_stats_hist {
    bl_counter buckets[BL_STATS_NBUCKETS + 1]; /* not cumulative; the last is +Inf */
    bl_counter sum_us;
};

/* An upstream server. */
struct bl_stats_peer {
    bl_counter responses[BL_STATS_NCLASSES]; /* answers (response heads), per attempt */
    bl_counter bytes_out;                    /* bytes sent to the server */
    bl_counter bytes_in;                     /* bytes read from the server */
    bl_counter failures[BL_SF_N];
    bl_counter retries;                      /* retries made after an attempt here failed */
    bl_counter retries_refused;              /* retries retry_budget refused after one failed */
    bl_counter conns;                        /* gauge: open connections (in use + idle) */
    bl_counter conns_idle;                   /* gauge: of those, idle in the keep-alive pool */
    struct bl_stats_hist header_time;        /* connect start to response head */
};

/* Stream session outcomes counted apart, by $status (nginx's stream codes); the last slot
 * takes any other. */
#define BL_STATS_NSTREAM 7
#define BL_STATS_STREAM_STATUSES {200, 400, 403, 500, 502, 503}

/* A listening address. Stream listens (TCP and UDP) count a session as a connection. */
struct bl_stats_listen {
    bl_counter accepted;                     /* connections accepted (UDP: sessions begun) */
    bl_counter conns;                        /* gauge: open client connections */
    bl_counter conns_idle;                   /* gauge: of those, idle between requests */
    bl_counter sessions[BL_STATS_NSTREAM];   /* stream: ended sessions by $status */
    bl_counter bytes_in;                     /* stream: bytes (payload) from clients */
    bl_counter bytes_out;                    /* stream: bytes (payload) to clients */
};

/* One worker's block. */
struct bl_stats_worker {
    struct bl_stats_zone *servers;           /* by bl_server_block.index */
    struct bl_stats_zone *locations;         /* by bl_location.index */
    struct bl_stats_peer *peers;             /* by bl_upstream_server.id */
    struct bl_stats_listen *listens;         /* by position in bl_config.listens */
};

/* Every worker's block for one config. */
struct bl_stats_set {
    uint32_t nworkers, nservers, nlocations, npeers, nlistens;
    struct bl_stats_worker **workers;        /* [nworkers], each its own aligned allocation */
    struct bl_stats_worker *base;            /* what earlier configs counted for the objects
                                              * this one kept (a reload carries it over,
                                              * bl_stats_carry); written by the control
                                              * thread only, summed with the workers' */
};

/* A zeroed set. NULL when out of memory. Control thread. */
struct bl_stats_set *bl_stats_create(uint32_t nworkers, uint32_t nservers, uint32_t nlocations,
                                     uint32_t npeers, uint32_t nlistens);

/* Frees the set once no worker writes to it. NULL is a no-op. */
void bl_stats_free(struct bl_stats_set *set);

/* ---- reloads: counters of the objects a new config keeps continue from the old config's.
 * A block reads as one flat array of counters: servers, locations, peers, listens in that
 * order (each struct above is made of bl_counter only). */

/* Counters in one block of set. */
size_t bl_stats_ncounters(const struct bl_stats_set *set);

/* Every worker's block plus the base, summed into a new array of bl_stats_ncounters(set)
 * numbers; NULL when out of memory. Any thread (relaxed loads). */
uint64_t *bl_stats_sum(const struct bl_stats_set *set);

/* Where each object of the old config went in the new one: per kind, indexed by the old
 * config's number (server block index, location index, server id, listen position), the new
 * number or UINT32_MAX for an object the new config does not have. */
struct bl_stats_map {
    const uint32_t *servers, *locations, *peers, *listens;
};

/* Adds sum - minus (minus may be NULL: nothing subtracted) of every kept object of `from`
 * (the set sum and minus were taken of) into to->base, at the object's new number. Gauges
 * carry as counters do (the difference may be negative, as a wrapped uint64). Control
 * thread. */
void bl_stats_carry(struct bl_stats_set *to, const struct bl_stats_set *from,
                    const uint64_t *sum, const uint64_t *minus, const struct bl_stats_map *map);

/* One worker's share of the traffic, read from its own block (nothing more is counted on the
 * request path for it): HTTP requests answered (every server block's requests, any status),
 * client connections accepted (TCP and UDP sessions too) and open now, of those idle. The
 * block is the set's, so the figures start at 0 with each configuration generation (a reload
 * resets them; requests finishing on an older generation count there). Any thread. */
struct bl_stats_worker_totals {
    uint64_t requests, accepted;
    int64_t conns, conns_idle;
};
void bl_stats_worker_totals(const struct bl_stats_set *set, uint32_t worker,
                            struct bl_stats_worker_totals *out);

/* ---- the writer's side (the owning worker only) */

static inline void bl_stat_add(bl_counter *c, uint64_t n)
{
#ifndef BL_NO_STATS
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
#else
    (void)c;
    (void)n;
#endif
}

/* Gauges go down with the unsigned wrap-around; the reader sums as int64. */
static inline void bl_stat_sub(bl_counter *c, uint64_t n)
{
    bl_stat_add(c, (uint64_t)0 - n);
}

static inline unsigned bl_stats_class(int status)
{
    unsigned k = (unsigned)(status / 100 - 1);
    return status >= 100 && k < 5 ? k : 5;
}

static inline unsigned bl_stats_stream_slot(int status)
{
    static const int codes[BL_STATS_NSTREAM - 1] = BL_STATS_STREAM_STATUSES;
    unsigned k = 0;
    while (k < BL_STATS_NSTREAM - 1 && codes[k] != status)
        k++;
    return k;
}

static inline void bl_stat_observe(struct bl_stats_hist *h, uint64_t us)
{
#ifndef BL_NO_STATS
    unsigned i = 0;
    while (i < BL_STATS_NBUCKETS && us > bl_stats_bucket_us[i])
        i++;
    bl_stat_add(&h->buckets[i], 1);
    bl_stat_add(&h->sum_us, us);
#else
    (void)h;
    (void)us;
#endif
}

/* ---- the reader's side (any thread) */

static inline uint64_t bl_stat_load(const bl_counter *c)
{
    return atomic_load_explicit((bl_counter *)c, memory_order_relaxed);
}

/* ---- the process: start time, config generation and reloads */

struct bl_process_stats {
    _Atomic uint64_t start_unix_ms;   /* wall clock at start */
    _Atomic uint64_t start_mono_ms;   /* monotonic clock at start (uptime) */
    _Atomic uint64_t generation;      /* config generation serving now: 1 at start */
    _Atomic uint64_t reloads_ok;      /* reloads that put a new generation in service */
    _Atomic uint64_t reloads_failed;  /* reloads refused (bad config, out of memory) */
};

extern struct bl_process_stats bl_process_stats;

/* Records the start (generation 1, no reloads). Control thread, once. */
void bl_process_stats_start(void);

/* A reload ended: ok puts generation in service (0: the next number) and counts it; a
 * failure is counted and leaves the generation alone. Control thread. */
void bl_process_stats_reload(int ok, uint64_t generation);

#endif
