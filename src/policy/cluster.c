/* Cluster-wide limit_req through Redis: local counts, one pipelined exchange per interval
 * (cluster.h). */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/fnv.h"
#include "core/log.h"
#include "core/status.h"
#include "policy/cluster.h"
#include "policy/zone.h"

#define SHARDS 16
#define SLOTS 256                /* per shard: 4096 keys synced per zone */
#define PROBES 32
#define KEY_MAX 96               /* longer keys are limited locally only */
#define IDLE_MS 10000            /* a key not seen here for this long stops being asked for */
#define IO_TIMEOUT_MS 250        /* one exchange with Redis */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 5000

enum { SLOT_EMPTY = 0, SLOT_USED, SLOT_GONE };

struct entry {
    uint64_t hash;
    uint64_t active_ms;          /* last admitted request here */
    uint64_t last_total;         /* the cluster's total after our last exchange */
    uint32_t pending;            /* admitted here since the last exchange */
    uint8_t state;               /* SLOT_* */
    uint8_t known;               /* last_total is valid */
    uint16_t len;
    char key[KEY_MAX];
};

struct tshard {
    pthread_mutex_t lock;
    struct entry e[SLOTS];
} __attribute__((aligned(64)));

struct bl_cluster_table {
    struct bl_cluster_table *next;   /* the registry */
    atomic_uint refs;
    struct bl_zone *zone;
    char *host;
    int port;
    uint64_t interval_ms, rate;
    uint64_t next_ms;                /* sync thread: the next exchange */
    uint64_t retry_ms;               /* sync thread: the next connect after a failure */
    uint32_t backoff_ms;
    int outage;                      /* "unreachable" logged, not yet "joined" */
    _Atomic int overflow_logged;
    redisContext *redis;             /* sync thread only */
    struct tshard shards[SHARDS];
};

static struct {
    pthread_mutex_t lock;            /* registry, started, stop */
    pthread_cond_t wake;
    struct bl_cluster_table *tables;
    pthread_t thread;
    int started, stop;
    int enabled;                     /* bl_cluster_start() was called: a serving process */
} S = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* ------------------------------------------------------------ the worker side */

void bl_cluster_note(struct bl_cluster_table *t, const char *key, size_t len)
{
    if (len > KEY_MAX) {
        if (!atomic_exchange(&t->overflow_logged, 1))
            bl_log(BL_LOG_WARN, "limit_req zone \"%s\": keys over %d bytes are limited on this "
                   "node only", bl_zone_name(t->zone), KEY_MAX);
        return;
    }
    uint64_t h = bl_fnv1a64(key, len);
    struct tshard *s = &t->shards[h % SHARDS];
    pthread_mutex_lock(&s->lock);
    struct entry *free_slot = NULL;
    for (uint32_t p = 0; p < PROBES; p++) {
        struct entry *e = &s->e[(h / SHARDS + p) % SLOTS];
        if (e->state == SLOT_USED && e->hash == h && e->len == len &&
            memcmp(e->key, key, len) == 0) {
            e->pending++;
            e->active_ms = bl_now_ms();
            pthread_mutex_unlock(&s->lock);
            return;
        }
        if (e->state != SLOT_USED && !free_slot)
            free_slot = e;
        if (e->state == SLOT_EMPTY)
            break;
    }
    if (free_slot) {
        memset(free_slot, 0, sizeof(*free_slot));
        free_slot->state = SLOT_USED;
        free_slot->hash = h;
        free_slot->len = (uint16_t)len;
        memcpy(free_slot->key, key, len);
        free_slot->pending = 1;
        free_slot->active_ms = bl_now_ms();
    } else if (!atomic_exchange(&t->overflow_logged, 1)) {
        bl_log(BL_LOG_WARN, "limit_req zone \"%s\": more keys than the cluster sync tracks "
               "(%d); the others are limited on this node only", bl_zone_name(t->zone),
               SHARDS * SLOTS);
    }
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------ the sync thread */

struct item {
    uint64_t hash;               /* the slot may hold another key by the time Redis answers */
    uint16_t shard, slot;
    uint32_t sent;
};

static void outage(struct bl_cluster_table *t, uint64_t now, const char *why)
{
    if (t->redis) {
        redisFree(t->redis);
        t->redis = NULL;
    }
    if (!t->outage)
        bl_log(BL_LOG_ERROR, "limit_req zone \"%s\": redis %s:%d unreachable (%s); limiting on "
               "this node only until it answers", bl_zone_name(t->zone), t->host, t->port, why);
    t->outage = 1;
    if (t->backoff_ms < BACKOFF_MIN_MS)
        t->backoff_ms = BACKOFF_MIN_MS;
    t->retry_ms = now + t->backoff_ms;
    t->backoff_ms = t->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : t->backoff_ms * 2;
}

/* Counts made while Redis is away are not sent later: the buckets here limited them. */
static void forget_pending(struct bl_cluster_table *t)
{
    for (int s = 0; s < SHARDS; s++) {
        pthread_mutex_lock(&t->shards[s].lock);
        for (int i = 0; i < SLOTS; i++) {
            t->shards[s].e[i].pending = 0;
            t->shards[s].e[i].known = 0;
        }
        pthread_mutex_unlock(&t->shards[s].lock);
    }
}

static int connect_redis(struct bl_cluster_table *t, uint64_t now)
{
    struct timeval tv = {0, IO_TIMEOUT_MS * 1000};
    t->redis = redisConnectWithTimeout(t->host, t->port, tv);
    if (!t->redis || t->redis->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", t->redis ? t->redis->errstr : "out of memory");
        outage(t, now, why);
        return BL_ERR;
    }
    redisSetTimeout(t->redis, tv);
    return BL_OK;
}

static void sync_table(struct bl_cluster_table *t, uint64_t now)
{
    if (!t->redis) {
        if (now < t->retry_ms) {
            forget_pending(t);
            return;
        }
        if (connect_redis(t, now) != BL_OK) {
            forget_pending(t);
            return;
        }
    }
    struct item *items = malloc(sizeof(*items) * SHARDS * SLOTS);
    if (!items)
        return;
    uint32_t n = 0;
    const char *zname = bl_zone_name(t->zone);
    size_t zlen = strlen(zname);
    char rkey[64 + KEY_MAX + 256];
    uint64_t ttl = t->interval_ms * 20 > 60000 ? t->interval_ms * 20 : 60000;
    for (uint16_t s = 0; s < SHARDS; s++) {
        struct tshard *sh = &t->shards[s];
        pthread_mutex_lock(&sh->lock);
        for (uint16_t i = 0; i < SLOTS; i++) {
            struct entry *e = &sh->e[i];
            if (e->state != SLOT_USED)
                continue;
            if (!e->pending && now > e->active_ms + IDLE_MS) {
                e->state = SLOT_GONE;
                continue;
            }
            int kl = snprintf(rkey, sizeof(rkey), "ballast:limit_req:%.*s:", (int)zlen, zname);
            memcpy(rkey + kl, e->key, e->len);
            redisAppendCommand(t->redis, "INCRBY %b %u", rkey, (size_t)kl + e->len,
                               e->pending);
            redisAppendCommand(t->redis, "PEXPIRE %b %llu", rkey, (size_t)kl + e->len,
                               (unsigned long long)ttl);
            items[n++] = (struct item){e->hash, s, i, e->pending};
            e->pending = 0;
        }
        pthread_mutex_unlock(&sh->lock);
    }
    for (uint32_t k = 0; k < n; k++) {
        redisReply *r1 = NULL, *r2 = NULL;
        if (redisGetReply(t->redis, (void **)&r1) != REDIS_OK ||
            redisGetReply(t->redis, (void **)&r2) != REDIS_OK) {
            char why[128];
            snprintf(why, sizeof(why), "%s", t->redis->errstr[0] ? t->redis->errstr
                                                                 : "no answer");
            freeReplyObject(r1);
            outage(t, now, why);
            free(items);
            forget_pending(t);
            return;
        }
        if (r1->type == REDIS_REPLY_INTEGER && r1->integer >= 0) {
            uint64_t total = (uint64_t)r1->integer, remote = 0;
            struct tshard *sh = &t->shards[items[k].shard];
            pthread_mutex_lock(&sh->lock);
            struct entry *e = &sh->e[items[k].slot];
            if (e->state == SLOT_USED && e->hash == items[k].hash) {
                if (e->known && total >= e->last_total + items[k].sent)
                    remote = total - e->last_total - items[k].sent;
                e->last_total = total;
                e->known = 1;
                char key[KEY_MAX];
                size_t len = e->len;
                memcpy(key, e->key, len);
                pthread_mutex_unlock(&sh->lock);
                if (remote)
                    bl_zone_req_add(t->zone, key, len, bl_clock_update(), t->rate,
                                    remote * 1000);
            } else {
                pthread_mutex_unlock(&sh->lock);
            }
        }
        freeReplyObject(r1);
        freeReplyObject(r2);
    }
    free(items);
    if (t->outage)
        bl_log(BL_LOG_NOTICE, "limit_req zone \"%s\": redis %s:%d answers; limiting with the "
               "cluster again", zname, t->host, t->port);
    t->outage = 0;
    t->backoff_ms = 0;
}

static void table_free(struct bl_cluster_table *t)
{
    if (t->redis)
        redisFree(t->redis);
    for (int s = 0; s < SHARDS; s++)
        pthread_mutex_destroy(&t->shards[s].lock);
    bl_zone_put(t->zone);
    free(t->host);
    free(t);
}

void bl_cluster_table_put(struct bl_cluster_table *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&S.lock);
    if (atomic_fetch_sub(&t->refs, 1) != 1) {
        pthread_mutex_unlock(&S.lock);
        return;
    }
    for (struct bl_cluster_table **p = &S.tables; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            break;
        }
    pthread_mutex_unlock(&S.lock);
    table_free(t);
}

static void *sync_main(void *arg)
{
    (void)arg;
    for (;;) {
        uint64_t now = bl_clock_update();
        struct bl_cluster_table *due[64];
        int ndue = 0;
        uint64_t next = now + 50;
        pthread_mutex_lock(&S.lock);
        if (S.stop) {
            pthread_mutex_unlock(&S.lock);
            return NULL;
        }
        for (struct bl_cluster_table *t = S.tables; t && ndue < 64; t = t->next) {
            if (now >= t->next_ms) {
                atomic_fetch_add(&t->refs, 1);
                due[ndue++] = t;
            } else if (t->next_ms < next) {
                next = t->next_ms;
            }
        }
        pthread_mutex_unlock(&S.lock);
        for (int i = 0; i < ndue; i++) {
            due[i]->next_ms = now + due[i]->interval_ms;
            sync_table(due[i], now);
            bl_cluster_table_put(due[i]);
        }
        if (ndue)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait_ms = next > now ? next - now : 1;
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        ts.tv_sec += (time_t)(wait_ms / 1000) + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&S.lock);
        if (!S.stop)
            pthread_cond_timedwait(&S.wake, &S.lock, &ts);
        pthread_mutex_unlock(&S.lock);
    }
}

/* With S.lock held. */
static int start_thread(char *err, size_t errlen)
{
    if (S.started)
        return BL_OK;
    /* Signals belong to the control thread's signalfd, whatever the caller's mask is. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&S.thread, NULL, sync_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the cluster sync thread (%s)", strerror(rc));
        return BL_ERR;
    }
    S.started = 1;
    return BL_OK;
}

int bl_cluster_start(char *err, size_t errlen)
{
    pthread_mutex_lock(&S.lock);
    S.enabled = 1;
    int rc = S.tables ? start_thread(err, errlen) : BL_OK;
    pthread_mutex_unlock(&S.lock);
    return rc;
}

struct bl_cluster_table *bl_cluster_table_get(struct bl_zone *zone, const char *host, int port,
                                              uint64_t interval_ms, uint64_t rate, char *err,
                                              size_t errlen)
{
    pthread_mutex_lock(&S.lock);
    for (struct bl_cluster_table *t = S.tables; t; t = t->next)
        if (t->zone == zone && t->port == port && t->interval_ms == interval_ms &&
            t->rate == rate && strcmp(t->host, host) == 0 && atomic_load(&t->refs) > 0) {
            atomic_fetch_add(&t->refs, 1);
            pthread_mutex_unlock(&S.lock);
            return t;
        }
    struct bl_cluster_table *t = calloc(1, sizeof(*t));
    if (!t || !(t->host = strdup(host))) {
        free(t);
        pthread_mutex_unlock(&S.lock);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int s = 0; s < SHARDS; s++)
        pthread_mutex_init(&t->shards[s].lock, NULL);
    atomic_init(&t->refs, 1);
    t->port = port;
    t->interval_ms = interval_ms;
    t->rate = rate;
    bl_zone_hold(zone);
    t->zone = zone;
    if (S.enabled && start_thread(err, errlen) != BL_OK) {
        pthread_mutex_unlock(&S.lock);
        table_free(t);
        return NULL;
    }
    t->next = S.tables;
    S.tables = t;
    pthread_cond_signal(&S.wake);
    pthread_mutex_unlock(&S.lock);
    return t;
}

void bl_cluster_shutdown(void)
{
    pthread_mutex_lock(&S.lock);
    int started = S.started;
    S.stop = 1;
    pthread_cond_signal(&S.wake);
    pthread_mutex_unlock(&S.lock);
    if (started)
        pthread_join(S.thread, NULL);
    pthread_mutex_lock(&S.lock);
    S.started = 0;
    S.stop = 0;
    pthread_mutex_unlock(&S.lock);
}
