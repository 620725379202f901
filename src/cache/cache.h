/* The response cache's store: an index shared by every worker plus bodies on disk
 * (proxy_cache_path). The HTTP side (what is cached, for how long, serving and filling) is
 * http/proxy_cache.c; the directives are cache/cache_conf.h; docs/cache.md is the user's view.
 *
 * Design
 * - One zone per keys_zone NAME. Workers are threads of one process, so "shared memory" is
 *   process memory: the index is a chained hash table of entries (key, file name, metadata,
 *   LRU links) behind one mutex per zone. Every critical section is a hash lookup plus a few
 *   pointer moves; file I/O (open, read, write, rename, unlink) never happens under the lock
 *   (unlinks of evicted files are collected and done after it is released).
 * - Zones outlive configurations as limit zones do (policy/zone.c): bl_cache_zone_get() hands
 *   a reload the running zone of the same name and path, so a reload keeps the index and the
 *   requests waiting on it; max_size, inactive and keys_zone's size are updated in place. A
 *   zone whose name or path changed is a new zone (loaded from its directory).
 * - Entry states, each a combination of three facts under the lock:
 *     uses only (no file, no fill)   proxy_cache_min_uses is counting requests;
 *     FILLING, no file               a MISS is being fetched: with proxy_cache_lock the others
 *                                    wait for it, otherwise they go upstream without storing;
 *     READY (file)                   fresh or stale by its metadata and the clock;
 *     READY + FILLING                stale and being refreshed (revalidation, background
 *                                    update): others get the stale copy (UPDATING) when
 *                                    allowed, wait with the lock, or go upstream.
 *   A fill is owned by one request through a fill id; lock_age lets another request take a
 *   fill over when the owner is slow. A response that turns out not cacheable leaves a short
 *   "pass" mark (5 s) so that the lock does not serialize an uncacheable URL.
 *   Vary: the entry under the proxy_cache_key value itself is then a vary record naming the
 *   request fields that select a variant; each variant is an entry whose key is the primary key,
 *   a newline, and the selecting fields' values (normalized).
 * - Files: PATH/L1/L2/NAME, NAME the MD5 of the entry key in hex (levels as nginx: the last
 *   characters of NAME). Layout: struct bl_cache_meta, the key, the Vary names, the stored
 *   response head (hop-by-hop fields, Content-Length and Transfer-Encoding removed), the body
 *   (de-chunked). A fill writes PATH/tmp-XXXXXX while the same bytes stream to the first client
 *   from the upstream buffer (the client never waits for the disk), then on a complete body
 *   writes the final metadata at offset 0 and renames the file into place: a reader sees either
 *   the old file or the whole new one, never a partial one; an aborted fill unlinks its temp.
 * - Waiters: a request that must wait for a fill is a bl_queue_waiter (upstream/queue.h) on
 *   the zone's queue, queued under the zone lock so that a fill ending in between cannot be
 *   missed. A fill's end (commit, abort, freshen) wakes every waiter of the zone through each
 *   worker's eventfd; each looks its key up again on its own thread and is served from the
 *   file, waits again with its original deadline (another key's fill), or after
 *   proxy_cache_lock_timeout goes upstream without storing (nginx's behaviour).
 * - Start: a new zone reads its directory (the control thread, before workers serve): every
 *   file whose metadata is whole and names its own key becomes a READY entry, temp files are
 *   removed, the rest is left alone. So the cache survives a restart.
 * - Eviction: least recently used first when the files exceed max_size or the entries exceed
 *   what keys_zone's size allows (one entry per 256 bytes), and entries idle for `inactive`,
 *   checked at the tail of the LRU on each fill and miss.
 */
#ifndef BL_CACHE_CACHE_H
#define BL_CACHE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "upstream/queue.h"

#define BL_CACHE_MAGIC   0x31484341434c42ULL  /* "BLCACH1" */
#define BL_CACHE_VERSION 1u
#define BL_CACHE_ENTRY_BYTES 256u             /* keys_zone bytes one entry is counted as */

/* bl_cache_meta.flags */
#define BL_CM_MUST_REVALIDATE 0x01u  /* must-revalidate, proxy-revalidate, s-maxage: never
                                      * served stale */
#define BL_CM_NO_CACHE        0x02u  /* no-cache: every use revalidates */
#define BL_CM_ETAG            0x04u  /* the stored head has an ETag */
#define BL_CM_LAST_MODIFIED   0x08u  /* ... a Last-Modified */

/* The metadata at the start of every cache file, and in every READY entry. Wall-clock
 * milliseconds since the epoch (the file outlives the process). */
struct bl_cache_meta {
    uint64_t magic;                  /* BL_CACHE_MAGIC once the file is complete */
    uint32_t version;
    uint32_t key_len;                /* entry key bytes after the metadata */
    uint32_t primary_len;            /* the first primary_len bytes of it: proxy_cache_key */
    uint32_t vary_len;               /* Vary field names after the key ("" without Vary) */
    uint32_t head_len;               /* stored response head after them */
    uint32_t flags;                  /* BL_CM_* */
    uint64_t body_len;               /* body bytes after the head */
    int64_t response_ms;             /* when the response (or its last revalidation) came */
    int64_t fresh_until_ms;          /* fresh before this instant (jitter applied) */
    int64_t initial_age_ms;          /* RFC 9111 4.2.3 corrected_initial_age */
    uint32_t swr_s;                  /* stale-while-revalidate seconds (0: none) */
    uint32_t sie_s;                  /* stale-if-error seconds */
    uint16_t status;
    uint16_t pad[3];
};

static inline uint64_t bl_cache_body_offset(const struct bl_cache_meta *m)
{
    return sizeof(*m) + (uint64_t)m->key_len + m->vary_len + m->head_len;
}

struct bl_cache_zone;

/* proxy_cache_path's parameters. */
struct bl_cache_path {
    char *path;                      /* directory, without a trailing '/' */
    char *name;                      /* keys_zone NAME */
    uint64_t keys_size;              /* keys_zone SIZE, bytes */
    uint64_t max_size;               /* bytes of files; 0: no limit */
    uint64_t inactive_ms;            /* default 10 minutes */
    uint8_t levels[3];               /* levels=1:2 -> {1, 2, 0} */
    uint8_t nlevels;
    struct bl_cache_zone *zone;      /* the running zone (a reference) */
    const char *file;
    int line;
};

/* The zone for pc (the running one with pc's name and path, reconfigured, or a new one loaded
 * from the directory, which is created when missing). NULL with err filled. Control thread. */
struct bl_cache_zone *bl_cache_zone_get(const struct bl_cache_path *pc, char *err,
                                        size_t errlen);
/* Drops a reference; the last frees the index (files stay). Any thread. */
void bl_cache_zone_put(struct bl_cache_zone *z);
const char *bl_cache_zone_name(const struct bl_cache_zone *z);

/* Results of bl_cache_lookup() */
enum bl_cache_lk {
    BL_CL_MISS = 1,   /* no file: fill_id != 0 the caller fills, 0 it passes (no store) */
    BL_CL_HIT,        /* fresh file */
    BL_CL_STALE,      /* stale file; fill_id != 0: the caller refreshes it */
    BL_CL_UPDATING,   /* stale file, another request refreshes it and the stale copy may be
                       * served (use_stale updating, or within stale-while-revalidate) */
    BL_CL_WAIT,       /* the waiter was queued: on_ready comes on the caller's thread */
    BL_CL_VARY,       /* a vary record: look the variant up (vary holds the field names) */
};

struct bl_cache_lookup {
    /* in */
    const char *key;
    uint32_t key_len;
    int64_t now_ms;                  /* wall clock */
    uint32_t min_uses;               /* proxy_cache_min_uses */
    uint64_t lock_age_ms;            /* a fill older than this may be taken over */
    uint8_t lock;                    /* proxy_cache_lock on: wait for a running fill */
    uint8_t may_fill;                /* 0: never take a fill (HEAD, bypass) */
    uint8_t stale_updating;          /* proxy_cache_use_stale updating */
    uint8_t force;                   /* proxy_cache_bypass: take the fill whatever the state
                                      * (unless another runs), never wait */
    uint8_t requeue;                 /* the waiter was woken before: it waits again with its
                                      * first deadline (bl_queue_requeue) */
    struct bl_queue_waiter *waiter;  /* for BL_CL_WAIT (lock on) */
    struct bl_queue_worker *qw;
    const struct bl_queue_conf *qc;  /* its deadline: proxy_cache_lock_timeout */
    bl_queue_ready on_ready;
    /* out */
    struct bl_cache_meta m;          /* HIT, STALE, UPDATING */
    char name[33];                   /* the file's name (MD5 hex) */
    uint32_t fill_id;                /* != 0: this request owns the entry's fill */
    char vary[512];                  /* BL_CL_VARY: field names, ", "-separated */
};

/* Looks key up, takes a fill or queues the waiter as the entry's state and the inputs say.
 * Worker thread (the waiter's). */
int bl_cache_lookup(struct bl_cache_zone *z, struct bl_cache_lookup *lk);

/* path[cap] := the file of name (levels applied). */
void bl_cache_file_path(const struct bl_cache_zone *z, const char *name, char *path,
                        size_t cap);
/* A temp file in the zone's directory, open for writing: its fd (path filled), or -1. */
int bl_cache_tmp_open(struct bl_cache_zone *z, char *path, size_t cap);

/* The fill fill_id of key ends with a complete file at tmp_path whose metadata is m (already
 * written): it is renamed into place and becomes the entry of store_key (key itself, or the
 * variant the response's Vary selects); with m->vary_len, the primary key (m->primary_len
 * bytes) becomes a vary record naming vary. Waiters are woken. When the fill was taken over or
 * purged meanwhile the temp file is removed. Worker thread. */
void bl_cache_commit(struct bl_cache_zone *z, const char *key, uint32_t key_len,
                     uint32_t fill_id, const char *store_key, uint32_t store_len,
                     const struct bl_cache_meta *m, const char *vary, const char *tmp_path);
/* The fill ends without a file (error, not cacheable: pass_mark 1 leaves the 5 s mark). */
void bl_cache_abort(struct bl_cache_zone *z, const char *key, uint32_t key_len,
                    uint32_t fill_id, int pass_mark);
/* A revalidation (304) refreshed the entry and the fill fill_id ends, waiters woken. With
 * tmp_path, a complete file (metadata m, the stored head updated from the 304, the same body)
 * is renamed into place and m becomes the entry's metadata; the temp file is removed when the
 * fill was taken over or purged meanwhile. Without it, only m's times and flags are written
 * over the file's metadata (m's head and body lengths must be the file's). Worker thread. */
void bl_cache_freshen(struct bl_cache_zone *z, const char *key, uint32_t key_len,
                      uint32_t fill_id, const struct bl_cache_meta *m, const char *tmp_path);
/* Removes the entry of primary key key[0..len), its vary record and all its variants, and
 * their files; with prefix, every entry whose key begins with key[0..len) (len 0: all). Fills
 * of those keys that run do not land. Returns how many stored responses (files) went. Any
 * thread; the scan holds the zone lock for a batch of removals at a time. */
uint32_t bl_cache_purge(struct bl_cache_zone *z, const char *key, uint32_t len, int prefix);

/* Entries and file bytes now (tests, the admin API). */
void bl_cache_zone_stats(struct bl_cache_zone *z, uint32_t *entries, uint64_t *bytes);

/* A zone's counters since it was made (a reload that keeps the zone keeps them): lookups by
 * their result (a request that waited for a fill counts once, by what it found after), and
 * stored responses purged. */
struct bl_cache_counters {
    uint64_t hits;                   /* fresh: BL_CL_HIT */
    uint64_t updating;               /* stale, served while another request refreshes it */
    uint64_t expired;                /* stale: refreshed or revalidated (BL_CL_STALE) */
    uint64_t misses;                 /* no stored response */
    uint64_t purged;
    uint32_t entries, max_entries;   /* index entries now, and keys_zone's room */
    uint64_t bytes, max_size;        /* file bytes now, and max_size (0: none) */
};
void bl_cache_zone_counters(struct bl_cache_zone *z, struct bl_cache_counters *out);

/* The MD5 of s[0..len) as 32 hex digits and a NUL. */
void bl_cache_name(const char *s, size_t len, char out[33]);

#endif
