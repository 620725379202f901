/* Sharded keyed state for limit_req and limit_conn, shared by the worker threads (zone.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/fnv.h"
#include "core/log.h"
#include "core/status.h"
#include "policy/zone.h"

/* One key: 128 bytes with the inline key (BL_ZONE_SLOT). Links are slot indexes + 1 within
 * the shard, 0 for none. */
struct node {
    uint64_t hash;
    uint32_t hnext;                 /* next in the hash chain */
    uint32_t prev, next;            /* LRU list, most recent first; free list uses next */
    uint32_t len;                   /* the key's full length */
    uint64_t last_ms;               /* limit_req: when excess was last accounted */
    uint64_t excess;                /* limit_req: milli-requests above the rate */
    uint32_t count;                 /* limit_req: pins (requests between lookup and account);
                                     * limit_conn: connections */
    uint32_t used;
    char key[BL_ZONE_KEY_INLINE];
};

_Static_assert(sizeof(struct node) == BL_ZONE_SLOT, "a zone slot is BL_ZONE_SLOT bytes");

struct shard {
    pthread_mutex_t lock;
    uint32_t *buckets;              /* mask + 1 chains */
    uint32_t mask;
    struct node *nodes;             /* per_shard slots */
    uint32_t used;
    uint32_t free_head;
    uint32_t lru_head, lru_tail;
} __attribute__((aligned(64)));

struct bl_zone {
    char *name;
    char *key_text;
    int kind;
    uint64_t size;
    atomic_uint refs;
    uint32_t nshards;               /* a power of two */
    uint32_t per_shard;
    struct shard *shards;
    _Atomic uint64_t evict_logged_ms; /* last "evicting" line, at most one a minute */
    struct bl_zone *next;           /* the registry */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bl_zone *registry;

/* ------------------------------------------------------------ arithmetic */

uint64_t bl_leaky_excess(uint64_t prev, uint64_t rate, int64_t ms)
{
    /* nginx takes |ms| (the clock went back) and treats a jump back by a minute as 1 ms */
    if (ms < -60000)
        ms = 1;
    else if (ms < 0)
        ms = -ms;
    /* rate * ms must not overflow: past a day every bucket has drained anyway */
    if (ms > 86400000)
        ms = 86400000;
    /* nginx clamps at 0 after adding this request: a key idle long enough leaves 0 */
    uint64_t drained = rate * (uint64_t)ms / 1000, e = prev + 1000;
    return e > drained ? e - drained : 0;
}

/* ------------------------------------------------------------ hashing */

/* ------------------------------------------------------------ making and finding zones */

static void zone_free(struct bl_zone *z)
{
    if (!z)
        return;
    if (z->shards) {
        for (uint32_t i = 0; i < z->nshards; i++) {
            pthread_mutex_destroy(&z->shards[i].lock);
            free(z->shards[i].buckets);
            free(z->shards[i].nodes);
        }
        free(z->shards);
    }
    free(z->name);
    free(z->key_text);
    free(z);
}

static struct bl_zone *zone_new(const char *name, int kind, uint64_t size, const char *key_text)
{
    struct bl_zone *z = calloc(1, sizeof(*z));
    if (!z)
        return NULL;
    z->name = strdup(name);
    z->key_text = strdup(key_text);
    z->kind = kind;
    z->size = size;
    atomic_init(&z->refs, 1);
    uint64_t slots = size / BL_ZONE_SLOT;
    if (slots > UINT32_MAX / 2)
        slots = UINT32_MAX / 2;
    /* Up to 64 shards, each with at least 64 keys so that LRU eviction stays meaningful. */
    uint32_t n = 1;
    while (n < 64 && slots / (n * 2) >= 64)
        n *= 2;
    z->nshards = n;
    z->per_shard = (uint32_t)(slots / n);
    z->shards = calloc(n, sizeof(*z->shards));
    if (!z->name || !z->key_text || !z->shards) {
        zone_free(z);
        return NULL;
    }
    uint32_t nb = 1;
    while (nb < z->per_shard)
        nb *= 2;
    for (uint32_t i = 0; i < n; i++) {
        struct shard *s = &z->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->mask = nb - 1;
        s->buckets = calloc(nb, sizeof(uint32_t));
        s->nodes = calloc(z->per_shard, sizeof(struct node));
        if (!s->buckets || !s->nodes) {
            z->nshards = i + 1;
            zone_free(z);
            return NULL;
        }
        for (uint32_t k = 0; k < z->per_shard; k++)
            s->nodes[k].next = k + 2 <= z->per_shard ? k + 2 : 0;
        s->free_head = z->per_shard ? 1 : 0;
    }
    return z;
}

struct bl_zone *bl_zone_get(const char *name, int kind, uint64_t size, const char *key_text,
                            char *err, size_t errlen)
{
    pthread_mutex_lock(&registry_lock);
    for (struct bl_zone *z = registry; z; z = z->next) {
        if (z->kind == kind && z->size == size && strcmp(z->name, name) == 0 &&
            strcmp(z->key_text, key_text) == 0 && atomic_load(&z->refs) > 0) {
            atomic_fetch_add(&z->refs, 1);
            pthread_mutex_unlock(&registry_lock);
            return z;
        }
    }
    struct bl_zone *z = zone_new(name, kind, size, key_text);
    if (z) {
        z->next = registry;
        registry = z;
    } else {
        snprintf(err, errlen, "out of memory for zone \"%s\"", name);
    }
    pthread_mutex_unlock(&registry_lock);
    return z;
}

void bl_zone_put(struct bl_zone *z)
{
    if (!z)
        return;
    pthread_mutex_lock(&registry_lock);
    if (atomic_fetch_sub(&z->refs, 1) == 1) {
        for (struct bl_zone **p = &registry; *p; p = &(*p)->next)
            if (*p == z) {
                *p = z->next;
                break;
            }
        zone_free(z);
    }
    pthread_mutex_unlock(&registry_lock);
}

void bl_zone_hold(struct bl_zone *z)
{
    atomic_fetch_add(&z->refs, 1);
}

const char *bl_zone_name(const struct bl_zone *z) { return z->name; }

uint32_t bl_zone_capacity(const struct bl_zone *z) { return z->per_shard * z->nshards; }

uint32_t bl_zone_count(struct bl_zone *z)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < z->nshards; i++) {
        pthread_mutex_lock(&z->shards[i].lock);
        n += z->shards[i].used;
        pthread_mutex_unlock(&z->shards[i].lock);
    }
    return n;
}

int bl_zone_log_due(struct bl_zone *z)
{
    uint64_t now = bl_clock_ms, last = atomic_load(&z->evict_logged_ms);
    return (last == 0 || now - last >= 60000) &&
           atomic_compare_exchange_strong(&z->evict_logged_ms, &last, now ? now : 1);
}

/* ------------------------------------------------------------ a shard's table */

static inline struct shard *shard_of(struct bl_zone *z, uint64_t hash)
{
    return &z->shards[(hash >> 40) & (z->nshards - 1)];
}

static inline struct node *N(struct shard *s, uint32_t i) { return &s->nodes[i - 1]; }

static uint32_t find(struct shard *s, uint64_t hash, const char *key, size_t len)
{
    size_t inl = len < BL_ZONE_KEY_INLINE ? len : BL_ZONE_KEY_INLINE;
    for (uint32_t i = s->buckets[hash & s->mask]; i; i = N(s, i)->hnext) {
        struct node *n = N(s, i);
        if (n->hash == hash && n->len == len && memcmp(n->key, key, inl) == 0)
            return i;
    }
    return 0;
}

static void lru_unlink(struct shard *s, uint32_t i)
{
    struct node *n = N(s, i);
    if (n->prev)
        N(s, n->prev)->next = n->next;
    else
        s->lru_head = n->next;
    if (n->next)
        N(s, n->next)->prev = n->prev;
    else
        s->lru_tail = n->prev;
    n->prev = n->next = 0;
}

static void lru_push(struct shard *s, uint32_t i)
{
    struct node *n = N(s, i);
    n->prev = 0;
    n->next = s->lru_head;
    if (s->lru_head)
        N(s, s->lru_head)->prev = i;
    s->lru_head = i;
    if (!s->lru_tail)
        s->lru_tail = i;
}

static inline void lru_touch(struct shard *s, uint32_t i)
{
    if (s->lru_head != i) {
        lru_unlink(s, i);
        lru_push(s, i);
    }
}

static void node_remove(struct shard *s, uint32_t i)
{
    struct node *n = N(s, i);
    for (uint32_t *p = &s->buckets[n->hash & s->mask]; *p; p = &N(s, *p)->hnext)
        if (*p == i) {
            *p = n->hnext;
            break;
        }
    lru_unlink(s, i);
    n->used = 0;
    n->next = s->free_head;
    s->free_head = i;
    s->used--;
}

/* A new node for the key, or 0 when the shard is full and nothing may be evicted. */
static uint32_t node_new(struct bl_zone *z, struct shard *s, uint64_t hash, const char *key,
                         size_t len)
{
    if (!s->free_head && z->kind == BL_ZONE_REQ) {
        /* Evict the least recently used key that no request holds pinned. */
        uint32_t i = s->lru_tail;
        for (int tries = 0; i && tries < 16; tries++, i = N(s, i)->prev)
            if (N(s, i)->count == 0)
                break;
        if (!i || N(s, i)->count)
            return 0;
        node_remove(s, i);
        if (bl_zone_log_due(z))
            bl_log(BL_LOG_WARN, "limit_req zone \"%s\" is full (%u keys): evicting the least "
                   "recently used keys", z->name, bl_zone_capacity(z));
    }
    uint32_t i = s->free_head;
    if (!i)
        return 0;
    struct node *n = N(s, i);
    s->free_head = n->next;
    n->hash = hash;
    n->len = (uint32_t)len;
    memcpy(n->key, key, len < BL_ZONE_KEY_INLINE ? len : BL_ZONE_KEY_INLINE);
    n->last_ms = 0;
    n->excess = 0;
    n->count = 0;
    n->used = 1;
    n->hnext = s->buckets[hash & s->mask];
    s->buckets[hash & s->mask] = i;
    lru_push(s, i);
    s->used++;
    return i;
}

static inline uint32_t pin_of(const struct bl_zone *z, const struct shard *s, uint32_t i)
{
    return (uint32_t)(s - z->shards) * z->per_shard + (i - 1);
}

static inline struct shard *pin_shard(struct bl_zone *z, uint32_t pin, uint32_t *i)
{
    *i = pin % z->per_shard + 1;
    return &z->shards[pin / z->per_shard];
}

/* ------------------------------------------------------------ limit_req */

int bl_zone_req_lookup(struct bl_zone *z, const char *key, size_t len, uint64_t now_ms,
                       uint64_t rate, uint64_t burst, int account, uint64_t *excess,
                       uint32_t *pin)
{
    uint64_t hash = bl_fnv1a64(key, len);
    struct shard *s = shard_of(z, hash);
    pthread_mutex_lock(&s->lock);
    uint32_t i = find(s, hash, key, len);
    if (i) {
        struct node *n = N(s, i);
        lru_touch(s, i);
        uint64_t e = bl_leaky_excess(n->excess, rate, (int64_t)(now_ms - n->last_ms));
        *excess = e;
        if (e > burst) {
            pthread_mutex_unlock(&s->lock);
            return BL_ZONE_BUSY;
        }
        if (account) {
            n->excess = e;
            n->last_ms = now_ms;
            pthread_mutex_unlock(&s->lock);
            return BL_ZONE_OK;
        }
        n->count++;
        *pin = pin_of(z, s, i);
        pthread_mutex_unlock(&s->lock);
        return BL_ZONE_PINNED;
    }
    *excess = 0;
    i = node_new(z, s, hash, key, len);
    if (!i) {
        pthread_mutex_unlock(&s->lock);
        return BL_ZONE_FULL;
    }
    struct node *n = N(s, i);
    if (account) {
        n->last_ms = now_ms;
        pthread_mutex_unlock(&s->lock);
        return BL_ZONE_OK;
    }
    /* nginx: a pinned new node is accounted from time 0, i.e. fully drained */
    n->last_ms = 0;
    n->count = 1;
    *pin = pin_of(z, s, i);
    pthread_mutex_unlock(&s->lock);
    return BL_ZONE_PINNED;
}

uint64_t bl_zone_req_account(struct bl_zone *z, uint32_t pin, uint64_t now_ms, uint64_t rate)
{
    uint32_t i;
    struct shard *s = pin_shard(z, pin, &i);
    pthread_mutex_lock(&s->lock);
    struct node *n = N(s, i);
    uint64_t e = bl_leaky_excess(n->excess, rate, (int64_t)(now_ms - n->last_ms));
    n->last_ms = now_ms;
    n->excess = e;
    n->count--;
    pthread_mutex_unlock(&s->lock);
    return e;
}

void bl_zone_req_add(struct bl_zone *z, const char *key, size_t len, uint64_t now_ms,
                     uint64_t rate, uint64_t milli)
{
    uint64_t hash = bl_fnv1a64(key, len);
    struct shard *s = shard_of(z, hash);
    pthread_mutex_lock(&s->lock);
    uint32_t i = find(s, hash, key, len);
    if (!i) {
        i = node_new(z, s, hash, key, len);
        if (!i) {
            pthread_mutex_unlock(&s->lock);
            return;
        }
        N(s, i)->excess = 0;
        N(s, i)->last_ms = now_ms;
    }
    struct node *n = N(s, i);
    /* the workers' clocks and this thread's differ by a loop turn: never drain backwards */
    int64_t ms = (int64_t)(now_ms - n->last_ms);
    if (ms < 0)
        ms = 0;
    if (ms > 86400000)
        ms = 86400000;
    uint64_t drained = rate * (uint64_t)ms / 1000;
    n->excess = (n->excess > drained ? n->excess - drained : 0) + milli;
    if (ms > 0)
        n->last_ms = now_ms;
    pthread_mutex_unlock(&s->lock);
}

void bl_zone_req_unpin(struct bl_zone *z, uint32_t pin)
{
    uint32_t i;
    struct shard *s = pin_shard(z, pin, &i);
    pthread_mutex_lock(&s->lock);
    N(s, i)->count--;
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------ limit_conn */

int bl_zone_conn_acquire(struct bl_zone *z, const char *key, size_t len, uint32_t limit,
                         uint32_t *ref)
{
    uint64_t hash = bl_fnv1a64(key, len);
    struct shard *s = shard_of(z, hash);
    pthread_mutex_lock(&s->lock);
    uint32_t i = find(s, hash, key, len);
    if (!i) {
        i = node_new(z, s, hash, key, len);
        if (!i) {
            pthread_mutex_unlock(&s->lock);
            return BL_ZONE_FULL;
        }
    } else if (N(s, i)->count >= limit) {
        pthread_mutex_unlock(&s->lock);
        return BL_ZONE_BUSY;
    }
    N(s, i)->count++;
    *ref = pin_of(z, s, i);
    pthread_mutex_unlock(&s->lock);
    return BL_ZONE_OK;
}

void bl_zone_conn_release(struct bl_zone *z, uint32_t ref)
{
    uint32_t i;
    struct shard *s = pin_shard(z, ref, &i);
    pthread_mutex_lock(&s->lock);
    struct node *n = N(s, i);
    if (n->used && n->count && --n->count == 0)
        node_remove(s, i);
    pthread_mutex_unlock(&s->lock);
}
