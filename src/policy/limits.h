/* limit_req, limit_conn and max_inflight: their configuration and the checks a request (or a
 * stream session) runs, with nginx's semantics (docs/protection.md). The zones' state lives
 * in policy/zone.h; the keys are templates evaluated against the caller's bl_var_ctx.
 */
#ifndef BL_POLICY_LIMITS_H
#define BL_POLICY_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "http/template.h"
#include "policy/cluster.h"
#include "policy/zone.h"

/* A limit_req_zone or limit_conn_zone line (or a name a limit_* line used before the zone
 * line came: key NULL until it does). */
struct bl_limit_zone {
    char *name;
    struct bl_template *key;
    char *key_text;
    uint64_t size;
    uint64_t rate;                  /* limit_req: milli-requests per second */
    struct bl_zone *zone;           /* made at the end of the load */
    /* sync=redis://HOST:PORT (limit_req_zone): counts shared with other nodes (cluster.h) */
    char *sync_host;                /* NULL: this node only */
    int sync_port;
    uint64_t sync_interval_ms;      /* sync_interval= (default 100 ms) */
    struct bl_cluster_table *sync;  /* made at the end of the load */
    const char *file;               /* where the zone was first named, for "unknown zone" */
    int line;
};

/* A limit_req line. */
struct bl_limit_req {
    struct bl_limit_zone *z;
    uint64_t burst;                 /* milli-requests */
    uint64_t delay;                 /* milli-requests served without delay; BL_LIMIT_NODELAY */
};
#define BL_LIMIT_NODELAY (UINT64_MAX / 4)
#define BL_LIMIT_REQ_MAX 32         /* limit_req lines at one level */

/* A limit_conn line. */
struct bl_limit_conn {
    struct bl_limit_zone *z;
    uint32_t conn;
};

/* The zone lines of a configuration: http's limit_req and limit_conn zones, stream's
 * limit_conn zones (three name spaces, as in nginx). Owned by struct bl_config. */
struct bl_limit_zones {
    struct bl_limit_zone **req, **conn, **stream_conn;
    uint32_t nreq, nconn, nstream_conn;
};

/* $limit_req_status and $limit_conn_status values (0: the module did not run: empty). */
enum bl_limit_status {
    BL_LIMIT_NONE = 0,
    BL_LIMIT_PASSED,
    BL_LIMIT_DELAYED,
    BL_LIMIT_REJECTED,
    BL_LIMIT_DELAYED_DRY_RUN,
    BL_LIMIT_REJECTED_DRY_RUN,
};
/* "PASSED", ...; NULL for BL_LIMIT_NONE. */
const char *bl_limit_status_str(int status);

/* ---- configuration (control thread). Each returns BL_OK or BL_ERR with err holding nginx's
 * message (the caller adds the file:line). */

/* The zone named name in the list (created, without a key, when absent). NULL: no memory. */
struct bl_limit_zone *bl_limit_zone_ref(struct bl_limit_zone ***list, uint32_t *n,
                                        const char *name, size_t len, const char *file,
                                        int line);
/* limit_req_zone KEY zone=NAME:SIZE rate=R (req: 1) or limit_conn_zone KEY zone=NAME:SIZE
 * (req: 0): args after KEY. key is the compiled KEY, owned by the zone on success. */
int bl_limit_zone_parse(struct bl_limit_zone ***list, uint32_t *n, int req, const char *dname,
                        struct bl_template *key, const char *key_text, char *const *args,
                        int nargs, const char *file, int line, char *err, size_t errlen);
/* limit_req zone=NAME [burst=N] [nodelay | delay=N], appended to *lines (after checking the
 * zone is not already named there). */
int bl_limit_req_parse(struct bl_limit_zones *zones, struct bl_limit_req **lines, uint32_t *n,
                       char *const *args, int nargs, const char *file, int line, char *err,
                       size_t errlen);
/* limit_conn NAME N; stream: stream's zones. */
int bl_limit_conn_parse(struct bl_limit_zones *zones, int stream, struct bl_limit_conn **lines,
                        uint32_t *n, char *const *args, const char *file, int line, char *err,
                        size_t errlen);
/* After the whole file: every zone named has its zone line, and its shared zone (kept from the
 * running configuration when unchanged). */
int bl_limit_zones_finish(struct bl_limit_zones *zones, char *err, size_t errlen);
void bl_limit_zones_free(struct bl_limit_zones *zones);

/* ---- run time (worker threads) */

/* What limit_req decided. */
struct bl_limit_req_result {
    int status;                     /* enum bl_limit_status */
    uint64_t delay_ms;              /* BL_LIMIT_DELAYED: how long to hold the request */
};

/* Logging settings of a level. */
struct bl_limit_log {
    int level;                      /* limit_*_log_level */
    int dry_run;
    const char *client;             /* for the log line */
};

/* nginx's limit_req handler over lines[0..n) (all apply; a key that is empty is skipped):
 * BL_OK with res->status PASSED, DELAYED (res->delay_ms), DELAYED_DRY_RUN or REJECTED_DRY_RUN,
 * or NONE when every key was empty; BL_ERR: rejected (REJECTED), answer limit_req_status. */
int bl_limit_req_check(const struct bl_limit_req *lines, uint32_t n, const struct bl_var_ctx *v,
                       uint64_t now_ms, const struct bl_limit_log *log,
                       struct bl_limit_req_result *res);

/* The counts a request or session holds (released when it ends). */
#define BL_LIMIT_CONN_MAX 8
struct bl_limit_held {
    struct bl_zone *zone[BL_LIMIT_CONN_MAX];
    uint32_t ref[BL_LIMIT_CONN_MAX];
    uint8_t n;
};

/* nginx's limit_conn handler: counts the request under each line's key. BL_OK (*status
 * PASSED, REJECTED_DRY_RUN or NONE), or BL_ERR (REJECTED: answer limit_conn_status; nothing
 * is held). */
int bl_limit_conn_acquire(const struct bl_limit_conn *lines, uint32_t n,
                          const struct bl_var_ctx *v, const struct bl_limit_log *log,
                          struct bl_limit_held *held, int *status);
void bl_limit_conn_release(struct bl_limit_held *held);

/* max_inflight: one more request in a location whose count is *count, unless max are in
 * flight already (BL_ERR). Any thread. */
static inline int bl_inflight_enter(uint32_t *count, uint32_t max)
{
    if (__atomic_add_fetch(count, 1, __ATOMIC_RELAXED) > max) {
        __atomic_sub_fetch(count, 1, __ATOMIC_RELAXED);
        return -1;
    }
    return 0;
}
static inline void bl_inflight_leave(uint32_t *count)
{
    __atomic_sub_fetch(count, 1, __ATOMIC_RELAXED);
}

#endif
