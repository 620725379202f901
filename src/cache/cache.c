/* The response cache's shared index and its files (cache.h: the design). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "core/clock.h"
#include "core/fnv.h"
#include "core/log.h"
#include "core/status.h"

#define PASS_MARK_MS 5000
#define EVICT_BATCH  32

struct entry {
    struct entry *hnext;             /* hash chain */
    struct entry *prev, *next;       /* LRU, most recent first */
    uint64_t hash;
    struct bl_cache_meta m;          /* has_file */
    int64_t last_ms;                 /* last use */
    int64_t fill_since_ms;           /* fill_id != 0: when the fill began */
    int64_t pass_until_ms;           /* not cacheable lately: no lock until then */
    uint32_t fill_id;
    uint32_t uses;
    uint8_t has_file;
    uint8_t is_vary;                 /* a vary record: vary names the fields */
    char *vary;
    char name[33];
    uint32_t key_len;
    char key[];
};

struct bl_cache_zone {
    struct bl_cache_zone *next;      /* registry */
    _Atomic uint32_t refs;
    char *name, *path;
    uint8_t levels[3], nlevels;
    pthread_mutex_t lock;
    struct entry **buckets;
    uint32_t mask;
    uint32_t nentries, max_entries;
    uint64_t bytes, max_size;
    int64_t inactive_ms;
    struct entry *lru_head, *lru_tail;
    uint32_t next_fill;
    struct bl_queue waiters;         /* requests waiting for a fill (proxy_cache_lock) */
    struct bl_cache_counters counted; /* under the lock */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bl_cache_zone *registry;

void bl_cache_name(const char *s, size_t len, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    if (!EVP_Digest(s, len, md, &n, EVP_md5(), NULL) || n != 16) {
        /* MD5 unavailable (a FIPS-only provider): FNV-1a, twice, still a stable name */
        uint64_t h1 = 1469598103934665603ULL, h2 = 1099511628211ULL;
        for (size_t i = 0; i < len; i++) {
            h1 = (h1 ^ (unsigned char)s[i]) * 1099511628211ULL;
            h2 = (h2 ^ (unsigned char)s[i]) * 14695981039346656037ULL;
        }
        memcpy(md, &h1, 8);
        memcpy(md + 8, &h2, 8);
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[32] = 0;
}

/* ------------------------------------------------------------ index (zone lock held) */

static void lru_unlink(struct bl_cache_zone *z, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        z->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        z->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(struct bl_cache_zone *z, struct entry *e)
{
    e->prev = NULL;
    e->next = z->lru_head;
    if (z->lru_head)
        z->lru_head->prev = e;
    else
        z->lru_tail = e;
    z->lru_head = e;
}

static void lru_touch(struct bl_cache_zone *z, struct entry *e)
{
    if (z->lru_head != e) {
        lru_unlink(z, e);
        lru_front(z, e);
    }
}

static struct entry *find(struct bl_cache_zone *z, const char *key, uint32_t len, uint64_t h)
{
    for (struct entry *e = z->buckets[h & z->mask]; e; e = e->hnext)
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static uint64_t file_bytes(const struct entry *e)
{
    return e->has_file ? bl_cache_body_offset(&e->m) + e->m.body_len : 0;
}

static struct entry *entry_new(struct bl_cache_zone *z, const char *key, uint32_t len,
                               uint64_t h)
{
    struct entry *e = calloc(1, sizeof(*e) + len + 1);
    if (!e)
        return NULL;
    e->hash = h;
    e->key_len = len;
    memcpy(e->key, key, len);
    bl_cache_name(key, len, e->name);
    e->hnext = z->buckets[h & z->mask];
    z->buckets[h & z->mask] = e;
    lru_front(z, e);
    z->nentries++;
    return e;
}

/* Unlinks e from the index; its file's name is added to gone (to unlink after the lock) when
 * it has one and there is room, else the file is left for the next start to find. */
struct doomed {
    char names[EVICT_BATCH + 1][33];
    uint32_t n;
};

static void entry_remove(struct bl_cache_zone *z, struct entry *e, struct doomed *gone)
{
    for (struct entry **p = &z->buckets[e->hash & z->mask]; *p; p = &(*p)->hnext)
        if (*p == e) {
            *p = e->hnext;
            break;
        }
    lru_unlink(z, e);
    z->nentries--;
    z->bytes -= file_bytes(e);
    if (e->has_file && gone && gone->n < BL_ARRAY_LEN(gone->names))
        memcpy(gone->names[gone->n++], e->name, 33);
    free(e->vary);
    free(e);
}

/* LRU and inactive eviction at the tail, a batch at most. */
static void evict(struct bl_cache_zone *z, int64_t now, struct doomed *gone)
{
    struct entry *e = z->lru_tail;
    for (int i = 0; e && i < EVICT_BATCH; i++) {
        struct entry *prev = e->prev;
        int over = (z->max_size && z->bytes > z->max_size) || z->nentries > z->max_entries;
        int idle = now - e->last_ms > z->inactive_ms;
        if (!over && !idle)
            break;
        if (!e->fill_id)
            entry_remove(z, e, gone);
        e = prev;
    }
}

static void unlink_all(struct bl_cache_zone *z, const struct doomed *gone)
{
    char path[PATH_MAX];
    for (uint32_t i = 0; i < gone->n; i++) {
        bl_cache_file_path(z, gone->names[i], path, sizeof(path));
        unlink(path);
    }
}

static int fill_stale(const struct bl_cache_zone *z, const struct entry *e, int64_t now,
                      uint64_t lock_age_ms)
{
    (void)z;
    return now - e->fill_since_ms >= (int64_t)lock_age_ms;
}

static uint32_t fill_take(struct bl_cache_zone *z, struct entry *e, int64_t now)
{
    if (++z->next_fill == 0)
        z->next_fill = 1;
    e->fill_id = z->next_fill;
    e->fill_since_ms = now;
    return e->fill_id;
}

int bl_cache_lookup(struct bl_cache_zone *z, struct bl_cache_lookup *lk)
{
    uint64_t h = bl_fnv1a64(lk->key, lk->key_len);
    struct doomed gone = {.n = 0};
    int rc;
    lk->fill_id = 0;
    pthread_mutex_lock(&z->lock);
    struct entry *e = find(z, lk->key, lk->key_len, h);
    if (e)
        e->last_ms = lk->now_ms;
    if (e && e->is_vary) {
        lru_touch(z, e);
        snprintf(lk->vary, sizeof(lk->vary), "%s", e->vary);
        pthread_mutex_unlock(&z->lock);
        return BL_CL_VARY;
    }
    if (!e) {
        evict(z, lk->now_ms, &gone);
        e = entry_new(z, lk->key, lk->key_len, h);
        if (!e) {
            rc = BL_CL_MISS; /* out of memory: pass */
            goto out;
        }
    } else {
        lru_touch(z, e);
    }
    memcpy(lk->name, e->name, sizeof(lk->name));
    if (lk->force) {
        if (e->has_file)
            lk->m = e->m;
        if (lk->may_fill && (!e->fill_id || fill_stale(z, e, lk->now_ms, lk->lock_age_ms)))
            lk->fill_id = fill_take(z, e, lk->now_ms);
        rc = e->has_file ? BL_CL_STALE : BL_CL_MISS;
        goto out;
    }
    if (e->has_file) {
        lk->m = e->m;
        if (lk->now_ms < e->m.fresh_until_ms && !(e->m.flags & BL_CM_NO_CACHE)) {
            rc = BL_CL_HIT;
            goto out;
        }
        if (!e->fill_id || fill_stale(z, e, lk->now_ms, lk->lock_age_ms)) {
            if (lk->may_fill)
                lk->fill_id = fill_take(z, e, lk->now_ms);
            rc = BL_CL_STALE;
            goto out;
        }
        /* another request refreshes it */
        int swr = !(e->m.flags & BL_CM_MUST_REVALIDATE) &&
                  lk->now_ms < e->m.fresh_until_ms + (int64_t)e->m.swr_s * 1000;
        if (lk->stale_updating || swr) {
            rc = BL_CL_UPDATING;
            goto out;
        }
    } else if (!e->fill_id || fill_stale(z, e, lk->now_ms, lk->lock_age_ms)) {
        e->uses++;
        if (lk->may_fill && e->uses >= lk->min_uses)
            lk->fill_id = fill_take(z, e, lk->now_ms);
        rc = BL_CL_MISS;
        goto out;
    }
    /* a fill runs: wait for it (lock), or go upstream without storing */
    if (lk->lock && lk->waiter && e->pass_until_ms <= lk->now_ms &&
        (lk->requeue ? bl_queue_requeue(lk->waiter)
                     : bl_queue_wait(&z->waiters, lk->qc, lk->waiter, lk->qw, lk->on_ready))
            == BL_OK) {
        rc = BL_CL_WAIT;
        goto out;
    }
    rc = e->has_file ? BL_CL_STALE : BL_CL_MISS;
out:
    switch (rc) {
    case BL_CL_HIT: z->counted.hits++; break;
    case BL_CL_UPDATING: z->counted.updating++; break;
    case BL_CL_STALE: z->counted.expired++; break;
    case BL_CL_MISS: z->counted.misses++; break;
    default: break;
    }
    pthread_mutex_unlock(&z->lock);
    unlink_all(z, &gone);
    return rc;
}

void bl_cache_file_path(const struct bl_cache_zone *z, const char *name, char *path, size_t cap)
{
    size_t n = (size_t)snprintf(path, cap, "%s/", z->path);
    size_t end = 32;
    for (int i = 0; i < z->nlevels && n < cap; i++) {
        size_t l = z->levels[i];
        end -= l;
        n += (size_t)snprintf(path + n, cap - n, "%.*s/", (int)l, name + end);
    }
    if (n < cap)
        snprintf(path + n, cap - n, "%s", name);
}

int bl_cache_tmp_open(struct bl_cache_zone *z, char *path, size_t cap)
{
    if ((size_t)snprintf(path, cap, "%s/tmp-XXXXXX", z->path) >= cap)
        return -1;
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        bl_log(BL_LOG_ERROR, "proxy_cache: cannot create a temp file in %s: %s", z->path,
               strerror(errno));
    return fd;
}

/* mkdir of the levels of name's file. */
static void make_levels(const struct bl_cache_zone *z, const char *name)
{
    char path[PATH_MAX];
    size_t n = (size_t)snprintf(path, sizeof(path), "%s", z->path);
    size_t end = 32;
    for (int i = 0; i < z->nlevels; i++) {
        end -= z->levels[i];
        n += (size_t)snprintf(path + n, sizeof(path) - n, "/%.*s", (int)z->levels[i],
                              name + end);
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return;
    }
}

static void wake(struct bl_cache_zone *z)
{
    if (atomic_load_explicit(&z->waiters.waiting, memory_order_seq_cst))
        bl_queue_wake_all(&z->waiters);
}

/* The primary key's entry becomes (or stays) a vary record naming vary (lock held); a file
 * it had (the URL did not vary before) goes. */
static void set_vary(struct bl_cache_zone *z, const char *key, uint32_t len, const char *vary,
                     int64_t now, struct doomed *gone)
{
    uint64_t h = bl_fnv1a64(key, len);
    struct entry *e = find(z, key, len, h);
    if (e && e->fill_id && !e->is_vary)
        return; /* a fill of the primary key runs: its answer decides */
    if (!e && !(e = entry_new(z, key, len, h)))
        return;
    char *v = strdup(vary);
    if (!v)
        return;
    if (e->has_file) {
        z->bytes -= file_bytes(e);
        if (gone->n < BL_ARRAY_LEN(gone->names))
            memcpy(gone->names[gone->n++], e->name, 33);
        e->has_file = 0;
    }
    free(e->vary);
    e->vary = v;
    e->is_vary = 1;
    e->last_ms = now;
}

void bl_cache_commit(struct bl_cache_zone *z, const char *key, uint32_t key_len,
                     uint32_t fill_id, const char *store_key, uint32_t store_len,
                     const struct bl_cache_meta *m, const char *vary, const char *tmp_path)
{
    uint64_t h = bl_fnv1a64(key, key_len), sh = bl_fnv1a64(store_key, store_len);
    char name[33], path[PATH_MAX];
    bl_cache_name(store_key, store_len, name);
    bl_cache_file_path(z, name, path, sizeof(path));
    make_levels(z, name);
    struct doomed gone = {.n = 0};
    int64_t now = (int64_t)(bl_wall_us() / 1000);
    pthread_mutex_lock(&z->lock);
    struct entry *f = find(z, key, key_len, h);
    int ok = f && f->fill_id == fill_id;
    if (ok)
        f->fill_id = 0;
    struct entry *e = !ok ? NULL : sh == h && store_len == key_len && !memcmp(store_key, key, key_len)
                                       ? f
                                       : find(z, store_key, store_len, sh);
    if (ok && !e)
        e = entry_new(z, store_key, store_len, sh);
    if (e && e->fill_id)
        e = NULL; /* the variant has a fill of its own running: it decides */
    /* renamed under the lock: a purge or another fill of the key cannot interleave */
    if (e && rename(tmp_path, path) != 0) {
        bl_log(BL_LOG_ERROR, "proxy_cache: rename(%s, %s) failed: %s", tmp_path, path,
               strerror(errno));
        e = NULL;
    }
    if (e) {
        if (e->is_vary) { /* the URL stopped varying */
            free(e->vary);
            e->vary = NULL;
            e->is_vary = 0;
        }
        z->bytes -= file_bytes(e);
        e->m = *m;
        e->has_file = 1;
        e->last_ms = now;
        e->pass_until_ms = 0;
        z->bytes += file_bytes(e);
        lru_touch(z, e);
        if (m->vary_len && m->primary_len < store_len)
            set_vary(z, store_key, m->primary_len, vary, now, &gone);
        evict(z, now, &gone);
    }
    pthread_mutex_unlock(&z->lock);
    if (!e)
        unlink(tmp_path);
    unlink_all(z, &gone);
    wake(z);
}

void bl_cache_abort(struct bl_cache_zone *z, const char *key, uint32_t key_len,
                    uint32_t fill_id, int pass_mark)
{
    uint64_t h = bl_fnv1a64(key, key_len);
    int64_t now = (int64_t)(bl_wall_us() / 1000);
    pthread_mutex_lock(&z->lock);
    struct entry *e = find(z, key, key_len, h);
    if (e && e->fill_id == fill_id) {
        e->fill_id = 0;
        if (pass_mark)
            e->pass_until_ms = now + PASS_MARK_MS;
    }
    pthread_mutex_unlock(&z->lock);
    wake(z);
}

void bl_cache_freshen(struct bl_cache_zone *z, const char *key, uint32_t key_len,
                      uint32_t fill_id, const struct bl_cache_meta *m, const char *tmp_path)
{
    uint64_t h = bl_fnv1a64(key, key_len);
    char name[33], path[PATH_MAX];
    bl_cache_name(key, key_len, name);
    bl_cache_file_path(z, name, path, sizeof(path));
    int64_t now = (int64_t)(bl_wall_us() / 1000);
    int kept = 0;
    pthread_mutex_lock(&z->lock);
    struct entry *e = find(z, key, key_len, h);
    if (e && e->fill_id == fill_id) {
        e->fill_id = 0;
        if (e->has_file && tmp_path) {
            /* a new head: the whole file is replaced, renamed under the lock as a commit is,
             * so a reader has the old file or the new one */
            if (rename(tmp_path, path) == 0) {
                kept = 1;
                z->bytes -= file_bytes(e);
                e->m = *m;
                e->last_ms = now;
                z->bytes += file_bytes(e);
            } else {
                bl_log(BL_LOG_ERROR, "proxy_cache: rename(%s, %s) failed: %s", tmp_path, path,
                       strerror(errno));
            }
        } else if (e->has_file && e->m.body_len == m->body_len &&
                   e->m.head_len == m->head_len) {
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                /* only times change: a reader of the old bytes sees a valid header either
                 * way */
                ssize_t n = pwrite(fd, m, sizeof(*m), 0);
                (void)n;
                close(fd);
            }
            e->m = *m;
        }
    }
    pthread_mutex_unlock(&z->lock);
    if (tmp_path && !kept)
        unlink(tmp_path);
    wake(z);
}

uint32_t bl_cache_purge(struct bl_cache_zone *z, const char *key, uint32_t len, int prefix)
{
    uint32_t n = 0;
    for (;;) {
        /* variants share the primary key as a prefix followed by '\n': a scan (purges are
         * rare; the batch bounds the time under the lock) */
        struct doomed gone = {.n = 0};
        int more = 0;
        pthread_mutex_lock(&z->lock);
        for (uint32_t b = 0; b <= z->mask && !more; b++) {
            for (struct entry *e = z->buckets[b], *nx; e; e = nx) {
                nx = e->hnext;
                if (e->key_len < len || memcmp(e->key, key, len) != 0 ||
                    (!prefix && e->key_len > len && e->key[len] != '\n'))
                    continue;
                if (gone.n == EVICT_BATCH) {
                    more = 1;
                    break;
                }
                if (e->fill_id) {
                    /* the running fill must not land: its commit finds no entry */
                    e->fill_id = 0;
                }
                n += e->has_file;
                z->counted.purged += e->has_file;
                entry_remove(z, e, &gone);
            }
        }
        pthread_mutex_unlock(&z->lock);
        unlink_all(z, &gone);
        if (!more)
            break;
    }
    wake(z);
    return n;
}

void bl_cache_zone_stats(struct bl_cache_zone *z, uint32_t *entries, uint64_t *bytes)
{
    pthread_mutex_lock(&z->lock);
    *entries = z->nentries;
    *bytes = z->bytes;
    pthread_mutex_unlock(&z->lock);
}

void bl_cache_zone_counters(struct bl_cache_zone *z, struct bl_cache_counters *out)
{
    pthread_mutex_lock(&z->lock);
    *out = z->counted;
    out->entries = z->nentries;
    out->max_entries = z->max_entries;
    out->bytes = z->bytes;
    out->max_size = z->max_size;
    pthread_mutex_unlock(&z->lock);
}

const char *bl_cache_zone_name(const struct bl_cache_zone *z) { return z->name; }

/* ------------------------------------------------------------ loading at start */

static int hex_name(const char *s)
{
    if (strlen(s) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* One file: an entry when its metadata is whole and its key hashes to its name. */
static void load_file(struct bl_cache_zone *z, const char *path, const char *name,
                      int64_t now)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    struct bl_cache_meta m;
    char *kv = NULL;
    if (fstat(fd, &st) != 0 || pread(fd, &m, sizeof(m), 0) != (ssize_t)sizeof(m) ||
        m.magic != BL_CACHE_MAGIC || m.version != BL_CACHE_VERSION || m.key_len == 0 ||
        m.key_len > 65536 || m.vary_len > 511 || m.primary_len > m.key_len ||
        bl_cache_body_offset(&m) + m.body_len != (uint64_t)st.st_size)
        goto done;
    size_t kvlen = (size_t)m.key_len + m.vary_len;
    kv = malloc(kvlen + 1);
    if (!kv || pread(fd, kv, kvlen, sizeof(m)) != (ssize_t)kvlen)
        goto done;
    kv[kvlen] = 0;
    char check[33];
    bl_cache_name(kv, m.key_len, check);
    if (strcmp(check, name) != 0)
        goto done;
    uint64_t h = bl_fnv1a64(kv, m.key_len);
    pthread_mutex_lock(&z->lock);
    struct entry *e = find(z, kv, m.key_len, h);
    if (!e && z->nentries < z->max_entries)
        e = entry_new(z, kv, m.key_len, h);
    if (e && !e->is_vary) {
        z->bytes -= file_bytes(e);
        e->m = m;
        e->has_file = 1;
        e->last_ms = now;
        z->bytes += file_bytes(e);
        if (m.vary_len && m.primary_len < m.key_len) {
            struct doomed gone = {.n = 0};
            set_vary(z, kv, m.primary_len, kv + m.key_len, now, &gone);
        }
    }
    pthread_mutex_unlock(&z->lock);
done:
    free(kv);
    close(fd);
}

static void load_dir(struct bl_cache_zone *z, const char *dir, int depth, int64_t now,
                     uint32_t *nfiles)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char path[PATH_MAX];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path))
            continue;
        if (depth == 0 && strncmp(de->d_name, "tmp-", 4) == 0) {
            unlink(path); /* a fill that did not end before the process did */
            continue;
        }
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < z->nlevels)
            load_dir(z, path, depth + 1, now, nfiles);
        else if (S_ISREG(st.st_mode) && depth == z->nlevels && hex_name(de->d_name)) {
            load_file(z, path, de->d_name, now);
            (*nfiles)++;
        }
    }
    closedir(d);
}

/* ------------------------------------------------------------ zones */

static void zone_free(struct bl_cache_zone *z)
{
    for (uint32_t b = 0; z->buckets && b <= z->mask; b++)
        for (struct entry *e = z->buckets[b], *nx; e; e = nx) {
            nx = e->hnext;
            free(e->vary);
            free(e);
        }
    free(z->buckets);
    bl_queue_destroy(&z->waiters);
    pthread_mutex_destroy(&z->lock);
    free(z->name);
    free(z->path);
    free(z);
}

static void zone_configure(struct bl_cache_zone *z, const struct bl_cache_path *pc)
{
    pthread_mutex_lock(&z->lock);
    uint64_t n = pc->keys_size / BL_CACHE_ENTRY_BYTES;
    z->max_entries = n > UINT32_MAX ? UINT32_MAX : n ? (uint32_t)n : 1;
    z->max_size = pc->max_size;
    z->inactive_ms = (int64_t)pc->inactive_ms;
    pthread_mutex_unlock(&z->lock);
}

static struct bl_cache_zone *zone_new(const struct bl_cache_path *pc, char *err, size_t errlen)
{
    if (mkdir(pc->path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create proxy_cache_path \"%s\": %s", pc->path,
                 strerror(errno));
        return NULL;
    }
    if (access(pc->path, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "proxy_cache_path \"%s\" is not writable: %s", pc->path,
                 strerror(errno));
        return NULL;
    }
    struct bl_cache_zone *z = calloc(1, sizeof(*z));
    uint32_t nb = 1024;
    uint64_t want = pc->keys_size / BL_CACHE_ENTRY_BYTES;
    while (nb < want && nb < (1u << 22))
        nb <<= 1;
    if (!z || !(z->buckets = calloc(nb, sizeof(*z->buckets))) || !(z->name = strdup(pc->name)) ||
        !(z->path = strdup(pc->path))) {
        if (z) {
            free(z->buckets);
            free(z->name);
            free(z);
        }
        snprintf(err, errlen, "out of memory for cache zone \"%s\"", pc->name);
        return NULL;
    }
    z->mask = nb - 1;
    memcpy(z->levels, pc->levels, sizeof(z->levels));
    z->nlevels = pc->nlevels;
    pthread_mutex_init(&z->lock, NULL);
    bl_queue_init(&z->waiters);
    atomic_store(&z->refs, 1);
    zone_configure(z, pc);
    uint32_t nfiles = 0;
    int64_t now = (int64_t)(bl_wall_us() / 1000);
    load_dir(z, z->path, 0, now, &nfiles);
    if (nfiles)
        bl_log(BL_LOG_INFO, "proxy_cache \"%s\": %u entries loaded from %s (%u files)",
               z->name, z->nentries, z->path, nfiles);
    return z;
}

struct bl_cache_zone *bl_cache_zone_get(const struct bl_cache_path *pc, char *err,
                                        size_t errlen)
{
    pthread_mutex_lock(&registry_lock);
    for (struct bl_cache_zone *z = registry; z; z = z->next) {
        if (strcmp(z->name, pc->name) == 0 && strcmp(z->path, pc->path) == 0 &&
            z->nlevels == pc->nlevels && memcmp(z->levels, pc->levels, 3) == 0 &&
            atomic_load(&z->refs) > 0) {
            atomic_fetch_add(&z->refs, 1);
            pthread_mutex_unlock(&registry_lock);
            zone_configure(z, pc);
            return z;
        }
    }
    struct bl_cache_zone *z = zone_new(pc, err, errlen);
    if (z) {
        z->next = registry;
        registry = z;
    }
    pthread_mutex_unlock(&registry_lock);
    return z;
}

void bl_cache_zone_put(struct bl_cache_zone *z)
{
    if (!z)
        return;
    pthread_mutex_lock(&registry_lock);
    if (atomic_fetch_sub(&z->refs, 1) == 1) {
        for (struct bl_cache_zone **p = &registry; *p; p = &(*p)->next)
            if (*p == z) {
                *p = z->next;
                break;
            }
        zone_free(z);
    }
    pthread_mutex_unlock(&registry_lock);
}
