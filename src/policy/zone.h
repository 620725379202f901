/* Keyed state shared by every worker thread: the limit_req and limit_conn zones.
 *
 * A zone is process memory (workers are threads), split into shards by the key's hash; each
 * shard has its own mutex, hash table and LRU list, so two workers contend only when their
 * keys fall into the same shard, and then for a few hundred nanoseconds. A zone holds SIZE /
 * BL_ZONE_SLOT keys (128 bytes each: 10m holds 81920 keys), all allocated when the zone is
 * made. When a limit_req zone is full the least recently used key of the shard is evicted
 * (logged at most once a minute); a limit_conn zone never evicts (its keys are the live
 * connections and are removed when their count drops to 0), it refuses instead, as nginx.
 *
 * Zones outlive a configuration: bl_zone_get() hands back the running zone of the same name
 * when kind, key and size are unchanged, so a reload keeps the counters (docs/protection.md).
 * Keys longer than BL_ZONE_KEY_INLINE bytes are told apart by their first bytes, their length
 * and a 64-bit hash of the whole key.
 */
#ifndef BL_POLICY_ZONE_H
#define BL_POLICY_ZONE_H

#include <stddef.h>
#include <stdint.h>

#define BL_ZONE_SLOT       128u     /* bytes a key costs */
#define BL_ZONE_KEY_INLINE 80u      /* key bytes stored in the slot */
#define BL_ZONE_MIN_SIZE   32768u   /* nginx refuses zones under 8 pages */

enum bl_zone_kind {
    BL_ZONE_REQ = 1,                /* limit_req_zone */
    BL_ZONE_CONN,                   /* limit_conn_zone (http) */
    BL_ZONE_STREAM_CONN,            /* limit_conn_zone (stream): another name space */
};

/* Results of the lookups below. */
enum bl_zone_rc {
    BL_ZONE_OK = 0,                 /* limit_req: accounted; limit_conn: counted */
    BL_ZONE_PINNED,                 /* limit_req: under the burst, node pinned for account */
    BL_ZONE_BUSY,                   /* over the burst / at the connection limit */
    BL_ZONE_FULL,                   /* no room for a new key (every slot pinned or counted) */
};

struct bl_zone;

/* The zone NAME of kind for a new configuration: the running one when its key text and size
 * are the same (a reference is taken), else a new empty zone. NULL with err filled (out of
 * memory). Control thread. */
struct bl_zone *bl_zone_get(const char *name, int kind, uint64_t size, const char *key_text,
                            char *err, size_t errlen);
/* One more reference on z (the caller holds one). Any thread. */
void bl_zone_hold(struct bl_zone *z);
/* Drops a configuration's reference; the last one frees the zone. Any thread. */
void bl_zone_put(struct bl_zone *z);

const char *bl_zone_name(const struct bl_zone *z);
/* Keys the zone holds at most. */
uint32_t bl_zone_capacity(const struct bl_zone *z);
/* Keys in the zone now (locks each shard in turn; tests and metrics). */
uint32_t bl_zone_count(struct bl_zone *z);

/* 1 at most once a minute per zone: whether a "zone is full" line is due now. Any thread. */
int bl_zone_log_due(struct bl_zone *z);

/* limit_req's lookup (nginx's ngx_http_limit_req_lookup): the key's excess after this request
 * into *excess (milli-requests). rate in milli-requests per second, burst in milli-requests.
 * BL_ZONE_BUSY: excess > burst, nothing changed. With account: the node takes the new excess
 * and time, BL_ZONE_OK. Without: the node is pinned (not evicted) and *pin names it for
 * bl_zone_req_account() or bl_zone_req_unpin(), BL_ZONE_PINNED. BL_ZONE_FULL: no slot. Any
 * worker thread. */
int bl_zone_req_lookup(struct bl_zone *z, const char *key, size_t len, uint64_t now_ms,
                       uint64_t rate, uint64_t burst, int account, uint64_t *excess,
                       uint32_t *pin);
/* Accounts a pinned node now (the request passed every limit): returns its new excess. */
uint64_t bl_zone_req_account(struct bl_zone *z, uint32_t pin, uint64_t now_ms, uint64_t rate);
/* Releases a pinned node without accounting (a later limit rejected the request). */
void bl_zone_req_unpin(struct bl_zone *z, uint32_t pin);

/* Cluster sync (cluster.h): milli more milli-requests for key, admitted by other nodes; the
 * bucket drains to now first. A key not in the zone is added (nothing when the zone is full).
 * Any thread. */
void bl_zone_req_add(struct bl_zone *z, const char *key, size_t len, uint64_t now_ms,
                     uint64_t rate, uint64_t milli);

/* limit_conn: counts one more connection of key unless it has limit already (BL_ZONE_BUSY) or
 * the zone is full (BL_ZONE_FULL); *ref names the count for bl_zone_conn_release(). */
int bl_zone_conn_acquire(struct bl_zone *z, const char *key, size_t len, uint32_t limit,
                         uint32_t *ref);
void bl_zone_conn_release(struct bl_zone *z, uint32_t ref);

/* The bucket's arithmetic (nginx's, in milli-requests): prev plus this request, less what ms
 * at rate drained; never below 0. */
uint64_t bl_leaky_excess(uint64_t prev, uint64_t rate, int64_t ms);

#endif
