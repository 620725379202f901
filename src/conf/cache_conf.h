/* The response cache's directives (docs/cache.md): proxy_cache_path at the http level, and the
 * proxy_cache* lines of http, server and location, compiled into struct bl_cache_conf. A level
 * with any such line gets its own struct, which takes what it does not set from the level
 * above (nginx's per-directive inheritance); defaults are filled by bl_cache_conf_finish().
 * Control thread; the compiled structs are read by workers (http/proxy_cache.c).
 */
#ifndef BL_CONF_CACHE_CONF_H
#define BL_CONF_CACHE_CONF_H

#include <stdint.h>

#include "cache/cache.h"
#include "upstream/queue.h"

struct bl_template;
struct bl_var_names;

/* bl_cache_conf.use_stale (proxy_cache_use_stale) */
#define BL_CUS_ERROR          0x001u
#define BL_CUS_TIMEOUT        0x002u
#define BL_CUS_INVALID_HEADER 0x004u
#define BL_CUS_UPDATING       0x008u
#define BL_CUS_HTTP_500       0x010u
#define BL_CUS_HTTP_502       0x020u
#define BL_CUS_HTTP_503       0x040u
#define BL_CUS_HTTP_504       0x080u
#define BL_CUS_HTTP_403       0x100u
#define BL_CUS_HTTP_404       0x200u
#define BL_CUS_HTTP_429       0x400u

/* bl_cache_conf.ignore_headers (proxy_ignore_headers) */
#define BL_CIH_X_ACCEL_EXPIRES 0x01u
#define BL_CIH_EXPIRES         0x02u
#define BL_CIH_CACHE_CONTROL   0x04u
#define BL_CIH_SET_COOKIE      0x08u
#define BL_CIH_VARY            0x10u

/* One proxy_cache_valid line. */
struct bl_cache_valid {
    uint16_t codes[16];              /* 0 entries: the default 200 301 302 */
    uint8_t ncodes;
    uint8_t any;
    uint64_t ms;
};

struct bl_cache_conf {
    uint32_t set;                    /* BL_CCS_* bits: set at this level (merging from the
                                     * level above copies values, not bits) */
    struct bl_cache_conf *next;      /* every struct of the config (freed together) */
    const struct bl_cache_conf *parent; /* the level merged from (proxy_cache resolves
                                     * through it) */
    /* proxy_cache */
    char *zone_name;                 /* NULL with off */
    struct bl_cache_path *path;      /* resolved by bl_cache_conf_finish(); NULL: off */
    const char *file;                /* where proxy_cache was written */
    int line;
    struct bl_template *key;         /* proxy_cache_key */
    struct bl_cache_valid *valid;    /* proxy_cache_valid lines, in order */
    uint32_t nvalid;
    uint32_t methods;                /* 1 << enum bl_h1_method; GET and HEAD always */
    uint32_t min_uses;
    struct bl_template **bypass;     /* proxy_cache_bypass values */
    uint32_t nbypass;
    struct bl_template **no_cache;   /* proxy_no_cache values */
    uint32_t nno_cache;
    uint32_t ignore_headers;         /* BL_CIH_* */
    uint32_t use_stale;              /* BL_CUS_* */
    uint8_t revalidate;              /* proxy_cache_revalidate */
    uint8_t lock;                    /* proxy_cache_lock */
    uint8_t background_update;       /* proxy_cache_background_update */
    uint32_t jitter_pct;             /* proxy_cache_valid_jitter */
    uint64_t lock_timeout_ms;
    uint64_t lock_age_ms;
    struct bl_queue_conf lock_q;     /* the lock's wait: lock_timeout as deadline */
    struct bl_template *purge;       /* proxy_cache_purge */
    /* lists owned by this level (the others are the parent's) */
    uint8_t own_valid, own_bypass, own_no_cache, own_key;
};

/* bl_cache_conf.set */
#define BL_CCS_CACHE        0x0001u
#define BL_CCS_KEY          0x0002u
#define BL_CCS_VALID        0x0004u
#define BL_CCS_METHODS      0x0008u
#define BL_CCS_MIN_USES     0x0010u
#define BL_CCS_BYPASS       0x0020u
#define BL_CCS_NO_CACHE     0x0040u
#define BL_CCS_IGNORE       0x0080u
#define BL_CCS_USE_STALE    0x0100u
#define BL_CCS_REVALIDATE   0x0200u
#define BL_CCS_LOCK         0x0400u
#define BL_CCS_BG_UPDATE    0x0800u
#define BL_CCS_JITTER       0x1000u
#define BL_CCS_LOCK_TIMEOUT 0x2000u
#define BL_CCS_LOCK_AGE     0x4000u
#define BL_CCS_PURGE        0x8000u

/* Every proxy_cache_path of a config, and every bl_cache_conf made for it. */
struct bl_cache_paths {
    struct bl_cache_path **paths;
    uint32_t npaths;
    struct bl_cache_conf *all;
};

/* proxy_cache_path ARGS. BL_OK or BL_ERR with err filled. */
int bl_cache_path_add(struct bl_cache_paths *cp, char *const *args, int nargs,
                      const char *file, int line, char *err, size_t errlen);

/* One proxy_cache* line (name, args) into the level's *cc (made on its first line). BL_OK or
 * BL_ERR with err filled (the caller adds file:line). */
int bl_cache_conf_set(struct bl_cache_paths *cp, struct bl_cache_conf **cc,
                      const struct bl_var_names *vars, const char *name, char *const *args,
                      int nargs, const char *file, int line, char *err, size_t errlen);

/* child takes what it does not set from parent (NULL: nothing above). */
void bl_cache_conf_merge(struct bl_cache_conf *child, const struct bl_cache_conf *parent);

/* After the merge: defaults, zone names resolved (an unknown one is an error naming the
 * proxy_cache line), zones acquired. BL_OK or BL_ERR with err filled. */
int bl_cache_conf_finish(struct bl_cache_paths *cp, char *err, size_t errlen);

void bl_cache_paths_free(struct bl_cache_paths *cp);

#endif
