/* proxy_cache_path and the proxy_cache* directives (cache_conf.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cache_conf.h"
#include "conf/conf_alloc.h"
#include "core/status.h"
#include "core/units.h"
#include "http/h1_parser.h"
#include "http/template.h"

static int err_at(char *err, size_t errlen, const char *fmt, const char *a)
{
    snprintf(err, errlen, fmt, a);
    return BL_ERR;
}

int bl_cache_path_add(struct bl_cache_paths *cp, char *const *args, int nargs,
                      const char *file, int line, char *err, size_t errlen)
{
    struct bl_cache_path pc = {.inactive_ms = 600000, .file = file, .line = line};
    size_t plen = strlen(args[0]);
    while (plen > 1 && args[0][plen - 1] == '/')
        plen--;
    for (int i = 1; i < nargs; i++) {
        const char *a = args[i];
        if (strncmp(a, "keys_zone=", 10) == 0) {
            const char *colon = strchr(a + 10, ':');
            if (!colon || colon == a + 10 || bl_parse_size(colon + 1, &pc.keys_size) != BL_OK ||
                pc.keys_size < 8192) {
                free(pc.name);
                return err_at(err, errlen, "invalid keys_zone \"%s\" (want NAME:SIZE, at least "
                              "8k)", a + 10);
            }
            free(pc.name);
            if (!(pc.name = strndup(a + 10, (size_t)(colon - (a + 10)))))
                return err_at(err, errlen, "%s", "out of memory");
        } else if (strncmp(a, "max_size=", 9) == 0) {
            if (bl_parse_size(a + 9, &pc.max_size) != BL_OK)
                goto bad;
        } else if (strncmp(a, "inactive=", 9) == 0) {
            if (bl_parse_time_ms(a + 9, 1000, 365ULL * 86400000, &pc.inactive_ms) != BL_OK)
                goto bad;
        } else if (strncmp(a, "levels=", 7) == 0) {
            const char *p = a + 7;
            pc.nlevels = 0;
            while (*p) {
                if (pc.nlevels == 3 || *p < '1' || *p > '2')
                    goto bad;
                pc.levels[pc.nlevels++] = (uint8_t)(*p - '0');
                p++;
                if (*p == ':' && p[1])
                    p++;
                else if (*p)
                    goto bad;
            }
            if (!pc.nlevels)
                goto bad;
        } else if (strcmp(a, "use_temp_path=off") == 0 || strcmp(a, "use_temp_path=on") == 0) {
            /* temp files are always in the cache directory (one rename, no copy) */
        } else {
            free(pc.name);
            snprintf(err, errlen, "invalid parameter \"%s\" of \"proxy_cache_path\" (ballast has "
                     "keys_zone=, max_size=, inactive=, levels=, use_temp_path=)", a);
            return BL_ERR;
        }
        continue;
    bad:
        free(pc.name);
        return err_at(err, errlen, "invalid parameter \"%s\" of \"proxy_cache_path\"", a);
    }
    if (!pc.name)
        return err_at(err, errlen, "%s", "\"proxy_cache_path\" needs keys_zone=NAME:SIZE");
    for (uint32_t i = 0; i < cp->npaths; i++) {
        int same_name = strcmp(cp->paths[i]->name, pc.name) == 0;
        int same_path = strlen(cp->paths[i]->path) == plen &&
                        strncmp(cp->paths[i]->path, args[0], plen) == 0;
        if (same_name || same_path) {
            snprintf(err, errlen, "duplicate proxy_cache_path %s \"%s\" (first in %s:%d)",
                     same_name ? "zone" : "path", same_name ? pc.name : args[0],
                     cp->paths[i]->file, cp->paths[i]->line);
            free(pc.name);
            return BL_ERR;
        }
    }
    struct bl_cache_path *p = conf_calloc(1, sizeof(*p));
    struct bl_cache_path **list = p ? realloc(cp->paths, (cp->npaths + 1) * sizeof(*list)) : NULL;
    if (!p || !list || !(pc.path = strndup(args[0], plen))) {
        free(p);
        if (list)
            cp->paths = list;
        free(pc.name);
        return err_at(err, errlen, "%s", "out of memory");
    }
    *p = pc;
    cp->paths = list;
    list[cp->npaths++] = p;
    return BL_OK;
}

static int flag(const char *a, uint8_t *out)
{
    if (strcmp(a, "on") == 0)
        *out = 1;
    else if (strcmp(a, "off") == 0)
        *out = 0;
    else
        return BL_ERR;
    return BL_OK;
}

static int templates(struct bl_template ***list, uint32_t *n, const struct bl_var_names *vars,
                     char *const *args, int nargs, char *err, size_t errlen)
{
    struct bl_template **l = realloc(*list, (*n + (uint32_t)nargs) * sizeof(*l));
    if (!l)
        return err_at(err, errlen, "%s", "out of memory");
    *list = l;
    for (int i = 0; i < nargs; i++) {
        if (!(l[*n] = bl_template_compile_vars(args[i], vars, err, errlen)))
            return BL_ERR;
        (*n)++;
    }
    return BL_OK;
}

static int valid_line(struct bl_cache_conf *cc, char *const *args, int nargs, char *err,
                      size_t errlen)
{
    struct bl_cache_valid v = {.ncodes = 0};
    if (bl_parse_time_ms(args[nargs - 1], 1000, 365ULL * 86400000 * 10, &v.ms) != BL_OK)
        return err_at(err, errlen, "invalid time \"%s\"", args[nargs - 1]);
    for (int i = 0; i < nargs - 1; i++) {
        if (strcmp(args[i], "any") == 0) {
            v.any = 1;
            continue;
        }
        char *end;
        long code = strtol(args[i], &end, 10);
        if (*end || code < 200 || code > 599)
            return err_at(err, errlen, "invalid status code \"%s\"", args[i]);
        if (v.ncodes == BL_ARRAY_LEN(v.codes))
            return err_at(err, errlen, "%s", "too many status codes in one line");
        v.codes[v.ncodes++] = (uint16_t)code;
    }
    if (!v.any && !v.ncodes) {
        v.codes[0] = 200;
        v.codes[1] = 301;
        v.codes[2] = 302;
        v.ncodes = 3;
    }
    struct bl_cache_valid *l = realloc(cc->valid, (cc->nvalid + 1) * sizeof(*l));
    if (!l)
        return err_at(err, errlen, "%s", "out of memory");
    cc->valid = l;
    l[cc->nvalid++] = v;
    return BL_OK;
}

static int words(const char *const *names, const uint32_t *bits, size_t nnames,
                 char *const *args, int nargs, uint32_t *out, int off_ok, char *err,
                 size_t errlen)
{
    uint32_t v = 0;
    for (int i = 0; i < nargs; i++) {
        if (off_ok && strcmp(args[i], "off") == 0 && nargs == 1) {
            *out = 0;
            return BL_OK;
        }
        size_t k = 0;
        while (k < nnames && strcmp(names[k], args[i]) != 0)
            k++;
        if (k == nnames)
            return err_at(err, errlen, "invalid value \"%s\"", args[i]);
        v |= bits[k];
    }
    *out = v;
    return BL_OK;
}

int bl_cache_conf_set(struct bl_cache_paths *cp, struct bl_cache_conf **ccp,
                      const struct bl_var_names *vars, const char *name, char *const *args,
                      int nargs, const char *file, int line, char *err, size_t errlen)
{
    struct bl_cache_conf *cc = *ccp;
    if (!cc) {
        if (!(cc = conf_calloc(1, sizeof(*cc))))
            return err_at(err, errlen, "%s", "out of memory");
        cc->next = cp->all;
        cp->all = cc;
        *ccp = cc;
    }
    static const struct {
        const char *name;
        uint32_t bit;
    } bits[] = {
        {"proxy_cache", BL_CCS_CACHE},           {"proxy_cache_key", BL_CCS_KEY},
        {"proxy_cache_valid", BL_CCS_VALID},     {"proxy_cache_methods", BL_CCS_METHODS},
        {"proxy_cache_min_uses", BL_CCS_MIN_USES}, {"proxy_cache_bypass", BL_CCS_BYPASS},
        {"proxy_no_cache", BL_CCS_NO_CACHE},     {"proxy_ignore_headers", BL_CCS_IGNORE},
        {"proxy_cache_use_stale", BL_CCS_USE_STALE},
        {"proxy_cache_revalidate", BL_CCS_REVALIDATE}, {"proxy_cache_lock", BL_CCS_LOCK},
        {"proxy_cache_background_update", BL_CCS_BG_UPDATE},
        {"proxy_cache_valid_jitter", BL_CCS_JITTER},
        {"proxy_cache_lock_timeout", BL_CCS_LOCK_TIMEOUT},
        {"proxy_cache_lock_age", BL_CCS_LOCK_AGE}, {"proxy_cache_purge", BL_CCS_PURGE},
    };
    uint32_t bit = 0;
    for (size_t i = 0; i < BL_ARRAY_LEN(bits); i++)
        if (strcmp(bits[i].name, name) == 0)
            bit = bits[i].bit;
    if (!bit)
        return err_at(err, errlen, "unknown cache directive \"%s\"", name);
    /* lists accumulate over lines of one level; everything else is once per level */
    int list = bit == BL_CCS_VALID || bit == BL_CCS_BYPASS || bit == BL_CCS_NO_CACHE;
    if ((cc->set & bit) && !list)
        return err_at(err, errlen, "\"%s\" directive is duplicate", name);
    cc->set |= bit;
    switch (bit) {
    case BL_CCS_CACHE:
        cc->file = file;
        cc->line = line;
        if (strcmp(args[0], "off") == 0)
            return BL_OK;
        if (strchr(args[0], '$'))
            return err_at(err, errlen, "proxy_cache \"%s\": a zone named by a variable is not "
                          "supported", args[0]);
        if (!(cc->zone_name = strdup(args[0])))
            return err_at(err, errlen, "%s", "out of memory");
        return BL_OK;
    case BL_CCS_KEY:
        return (cc->key = bl_template_compile_vars(args[0], vars, err, errlen)) ? BL_OK
                                                                                : BL_ERR;
    case BL_CCS_VALID:
        cc->own_valid = 1;
        return valid_line(cc, args, nargs, err, errlen);
    case BL_CCS_METHODS: {
        static const char *const names[] = {"GET", "HEAD", "POST"};
        static const uint32_t m[] = {1u << BL_H1_M_GET, 1u << BL_H1_M_HEAD, 1u << BL_H1_M_POST};
        if (words(names, m, 3, args, nargs, &cc->methods, 0, err, errlen) != BL_OK)
            return BL_ERR;
        if (cc->methods & (1u << BL_H1_M_POST))
            return err_at(err, errlen, "%s", "proxy_cache_methods POST is not supported yet "
                          "(the request body is not part of the key)");
        return BL_OK;
    }
    case BL_CCS_MIN_USES: {
        char *end;
        long v = strtol(args[0], &end, 10);
        if (*end || v < 1 || v > 1000000)
            return err_at(err, errlen, "invalid value \"%s\"", args[0]);
        cc->min_uses = (uint32_t)v;
        return BL_OK;
    }
    case BL_CCS_BYPASS:
        cc->own_bypass = 1;
        return templates(&cc->bypass, &cc->nbypass, vars, args, nargs, err, errlen);
    case BL_CCS_NO_CACHE:
        cc->own_no_cache = 1;
        return templates(&cc->no_cache, &cc->nno_cache, vars, args, nargs, err, errlen);
    case BL_CCS_IGNORE: {
        static const char *const names[] = {"X-Accel-Expires", "Expires", "Cache-Control",
                                            "Set-Cookie", "Vary", "X-Accel-Redirect",
                                            "X-Accel-Limit-Rate", "X-Accel-Buffering",
                                            "X-Accel-Charset"};
        /* the X-Accel-* fields other than Expires mean nothing to ballast: accepted */
        static const uint32_t b[] = {BL_CIH_X_ACCEL_EXPIRES, BL_CIH_EXPIRES,
                                     BL_CIH_CACHE_CONTROL, BL_CIH_SET_COOKIE, BL_CIH_VARY, 0, 0,
                                     0, 0};
        return words(names, b, BL_ARRAY_LEN(names), args, nargs, &cc->ignore_headers, 0, err,
                     errlen);
    }
    case BL_CCS_USE_STALE: {
        static const char *const names[] = {"error", "timeout", "invalid_header", "updating",
                                            "http_500", "http_502", "http_503", "http_504",
                                            "http_403", "http_404", "http_429"};
        static const uint32_t b[] = {BL_CUS_ERROR, BL_CUS_TIMEOUT, BL_CUS_INVALID_HEADER,
                                     BL_CUS_UPDATING, BL_CUS_HTTP_500, BL_CUS_HTTP_502,
                                     BL_CUS_HTTP_503, BL_CUS_HTTP_504, BL_CUS_HTTP_403,
                                     BL_CUS_HTTP_404, BL_CUS_HTTP_429};
        return words(names, b, BL_ARRAY_LEN(names), args, nargs, &cc->use_stale, 1, err, errlen);
    }
    case BL_CCS_REVALIDATE:
    case BL_CCS_LOCK:
    case BL_CCS_BG_UPDATE: {
        uint8_t *f = bit == BL_CCS_REVALIDATE ? &cc->revalidate
                     : bit == BL_CCS_LOCK     ? &cc->lock
                                              : &cc->background_update;
        if (flag(args[0], f) != BL_OK)
            return err_at(err, errlen, "invalid value \"%s\" (want on | off)", args[0]);
        return BL_OK;
    }
    case BL_CCS_JITTER: {
        char *end;
        long v = strtol(args[0], &end, 10);
        if (*end == '%')
            end++;
        if (*end || v < 0 || v > 50)
            return err_at(err, errlen, "invalid jitter \"%s\" (0..50 percent)", args[0]);
        cc->jitter_pct = (uint32_t)v;
        return BL_OK;
    }
    case BL_CCS_LOCK_TIMEOUT:
    case BL_CCS_LOCK_AGE: {
        uint64_t *f = bit == BL_CCS_LOCK_AGE ? &cc->lock_age_ms : &cc->lock_timeout_ms;
        if (bl_parse_time_ms(args[0], 1000, 86400000, f) != BL_OK)
            return err_at(err, errlen, "invalid time \"%s\"", args[0]);
        return BL_OK;
    }
    case BL_CCS_PURGE:
        return (cc->purge = bl_template_compile_vars(args[0], vars, err, errlen)) ? BL_OK
                                                                                  : BL_ERR;
    default:
        return BL_ERR;
    }
}

void bl_cache_conf_merge(struct bl_cache_conf *c, const struct bl_cache_conf *p)
{
    if (!p)
        return;
    uint32_t s = c->set;
    if (!(s & BL_CCS_CACHE)) {
        /* the zone is resolved by bl_cache_conf_finish() through c->parent */
        c->file = p->file;
        c->line = p->line;
    }
    if (!(s & BL_CCS_KEY))
        c->key = p->key;
    if (!(s & BL_CCS_VALID)) {
        c->valid = p->valid;
        c->nvalid = p->nvalid;
    }
    if (!(s & BL_CCS_METHODS))
        c->methods = p->methods;
    if (!(s & BL_CCS_MIN_USES))
        c->min_uses = p->min_uses;
    if (!(s & BL_CCS_BYPASS)) {
        c->bypass = p->bypass;
        c->nbypass = p->nbypass;
    }
    if (!(s & BL_CCS_NO_CACHE)) {
        c->no_cache = p->no_cache;
        c->nno_cache = p->nno_cache;
    }
    if (!(s & BL_CCS_IGNORE))
        c->ignore_headers = p->ignore_headers;
    if (!(s & BL_CCS_USE_STALE))
        c->use_stale = p->use_stale;
    if (!(s & BL_CCS_REVALIDATE))
        c->revalidate = p->revalidate;
    if (!(s & BL_CCS_LOCK))
        c->lock = p->lock;
    if (!(s & BL_CCS_BG_UPDATE))
        c->background_update = p->background_update;
    if (!(s & BL_CCS_JITTER))
        c->jitter_pct = p->jitter_pct;
    if (!(s & BL_CCS_LOCK_TIMEOUT))
        c->lock_timeout_ms = p->lock_timeout_ms;
    if (!(s & BL_CCS_LOCK_AGE))
        c->lock_age_ms = p->lock_age_ms;
    if (!(s & BL_CCS_PURGE))
        c->purge = p->purge;
    c->parent = p;
}

int bl_cache_conf_finish(struct bl_cache_paths *cp, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < cp->npaths; i++) {
        struct bl_cache_path *p = cp->paths[i];
        char e[400];
        if (!p->zone && !(p->zone = bl_cache_zone_get(p, e, sizeof(e)))) {
            snprintf(err, errlen, "%s in %s:%d", e, p->file, p->line);
            return BL_ERR;
        }
    }
    /* own zone names first: inherited paths are copied by the merge, which ran before this,
     * so resolve those whose struct set proxy_cache, then re-copy into the rest */
    for (struct bl_cache_conf *cc = cp->all; cc; cc = cc->next) {
        if (!cc->zone_name)
            continue;
        cc->path = NULL;
        for (uint32_t i = 0; i < cp->npaths; i++)
            if (strcmp(cp->paths[i]->name, cc->zone_name) == 0)
                cc->path = cp->paths[i];
        if (!cc->path) {
            snprintf(err, errlen, "unknown cache zone \"%s\" in \"proxy_cache\" directive in "
                     "%s:%d", cc->zone_name, cc->file, cc->line);
            return BL_ERR;
        }
    }
    for (struct bl_cache_conf *cc = cp->all; cc; cc = cc->next) {
        const struct bl_cache_conf *from = cc;
        while (from && !(from->set & BL_CCS_CACHE))
            from = from->parent;
        if (from != cc)
            cc->path = from ? from->path : NULL;
    }
    for (struct bl_cache_conf *cc = cp->all; cc; cc = cc->next) {
        if (!(cc->set & BL_CCS_METHODS))
            cc->methods = 0;
        cc->methods |= (1u << BL_H1_M_GET) | (1u << BL_H1_M_HEAD);
        if (!cc->min_uses)
            cc->min_uses = 1;
        if (!cc->key) {
            /* nginx's default key */
            if (!(cc->key = bl_template_compile("$scheme$proxy_host$request_uri", err, errlen)))
                return BL_ERR;
            cc->own_key = 1;
        }
        if (!(cc->set & BL_CCS_LOCK_TIMEOUT) || !cc->lock_timeout_ms)
            cc->lock_timeout_ms = cc->lock_timeout_ms ? cc->lock_timeout_ms : 5000;
        if (!cc->lock_age_ms)
            cc->lock_age_ms = 5000;
        cc->lock_q.max = 1u << 30;
        cc->lock_q.timeout_ms = cc->lock_timeout_ms;
    }
    return BL_OK;
}

void bl_cache_paths_free(struct bl_cache_paths *cp)
{
    for (struct bl_cache_conf *cc = cp->all, *nx; cc; cc = nx) {
        nx = cc->next;
        free(cc->zone_name);
        if ((cc->set & BL_CCS_KEY) || cc->own_key)
            bl_template_free(cc->key);
        if (cc->set & BL_CCS_PURGE)
            bl_template_free(cc->purge);
        if (cc->own_valid)
            free(cc->valid);
        for (uint32_t i = 0; cc->own_bypass && i < cc->nbypass; i++)
            bl_template_free(cc->bypass[i]);
        if (cc->own_bypass)
            free(cc->bypass);
        for (uint32_t i = 0; cc->own_no_cache && i < cc->nno_cache; i++)
            bl_template_free(cc->no_cache[i]);
        if (cc->own_no_cache)
            free(cc->no_cache);
        free(cc);
    }
    for (uint32_t i = 0; i < cp->npaths; i++) {
        bl_cache_zone_put(cp->paths[i]->zone);
        free(cp->paths[i]->name);
        free(cp->paths[i]->path);
        free(cp->paths[i]);
    }
    free(cp->paths);
    memset(cp, 0, sizeof(*cp));
}
