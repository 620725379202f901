/* Server block and location selection. */
#include <ctype.h>
#include <string.h>

#include "conf/conf.h"
#include "core/regex.h"
#include "core/status.h"
#include "http/router.h"
#include "http/template.h"

/* server_name forms: exact "a.example.com", leading wildcard "*.example.com", ".example.com"
 * (the domain and its subdomains), trailing wildcard "www.example.*". */
static int name_matches(const char *pattern, const char *host, size_t len)
{
    size_t plen = strlen(pattern);
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t suffix = plen - 1; /* ".example.com" */
        return len > suffix && memcmp(host + len - suffix, pattern + 1, suffix) == 0;
    }
    if (pattern[0] == '.') {
        if (len == plen - 1 && memcmp(host, pattern + 1, len) == 0)
            return 1;
        return len > plen && memcmp(host + len - plen, pattern, plen) == 0;
    }
    if (plen >= 2 && pattern[plen - 1] == '*' && pattern[plen - 2] == '.') {
        return len > plen - 1 && memcmp(host, pattern, plen - 1) == 0;
    }
    return plen == len && memcmp(pattern, host, len) == 0;
}

const struct bl_server_block *bl_route_server(const struct bl_listen *l, const char *host,
                                              size_t host_len)
{
    if (l->nservers == 1 || !host || !host_len)
        return l->servers[0];
    char name[256];
    size_t n = 0;
    /* Lowercase, without the port and a trailing dot. */
    if (host[0] == '[') {
        while (n < host_len && host[n] != ']' && n < sizeof(name) - 1) {
            name[n] = (char)tolower((unsigned char)host[n]);
            n++;
        }
        if (n < host_len && n < sizeof(name) - 1)
            name[n] = ']', n++;
    } else {
        while (n < host_len && host[n] != ':' && n < sizeof(name) - 1) {
            name[n] = (char)tolower((unsigned char)host[n]);
            n++;
        }
    }
    if (n && name[n - 1] == '.')
        n--;
    /* Exact names win over wildcards, as in nginx. */
    for (uint32_t i = 0; i < l->nservers; i++)
        for (uint32_t k = 0; k < l->servers[i]->nnames; k++) {
            const char *p = l->servers[i]->names[k];
            if (p[0] != '*' && p[0] != '.' && strlen(p) == n && memcmp(p, name, n) == 0)
                return l->servers[i];
        }
    for (uint32_t i = 0; i < l->nservers; i++)
        for (uint32_t k = 0; k < l->servers[i]->nnames; k++)
            if (name_matches(l->servers[i]->names[k], name, n))
                return l->servers[i];
    return l->servers[0];
}

/* What a search step found, as nginx's ngx_http_core_find_location() returns it. */
enum find_rc {
    FIND_DECLINED,                  /* nothing at this level */
    FIND_PREFIX,                    /* a prefix matched; regexes may still win */
    FIND_DONE,                      /* exact or regex match: the search is over */
    FIND_ERROR,
};

/* One level: exact, longest prefix (then its nested locations), then the level's regexes
 * unless the prefix found is "^~". *found keeps the last location chosen, as nginx's
 * r->loc_conf does: a prefix stays chosen when nothing nested or regex beats it. */
static enum find_rc find_location(const struct bl_loc_tree *t, const char *path, size_t len,
                                  const struct bl_location **found, struct bl_captures *cap)
{
    for (uint32_t i = 0; i < t->nexact; i++) {
        const struct bl_location *loc = t->exact[i];
        if (loc->path_len == len && memcmp(loc->path, path, len) == 0) {
            *found = loc;
            return FIND_DONE;
        }
    }
    enum find_rc rc = FIND_DECLINED;
    int noregex = 0;
    for (uint32_t i = 0; i < t->nprefix; i++) {
        const struct bl_location *loc = t->prefix[i];
        if (loc->path_len <= len && memcmp(loc->path, path, loc->path_len) == 0) {
            *found = loc;
            noregex = loc->noregex;
            rc = find_location(&loc->nested, path, len, found, cap);
            if (rc == FIND_DONE || rc == FIND_ERROR)
                return rc;
            break;
        }
    }
    if (noregex)
        return rc;
    for (uint32_t i = 0; i < t->nregex; i++) {
        const struct bl_location *loc = t->regex[i];
        uint32_t ovec[2 * BL_REGEX_MAX_PAIRS];
        int n = bl_regex_exec(loc->regex, path, len, ovec, BL_REGEX_MAX_PAIRS);
        if (n == 0)
            continue;
        if (n < 0)
            return FIND_ERROR;
        if (cap) {
            cap->re = loc->regex;
            cap->subject = path;
            cap->npairs = (uint32_t)n;
            memcpy(cap->ovec, ovec, 2 * (size_t)n * sizeof(ovec[0]));
        }
        *found = loc;
        return find_location(&loc->nested, path, len, found, cap) == FIND_ERROR ? FIND_ERROR
                                                                               : FIND_DONE;
    }
    return rc;
}

const struct bl_location *bl_route_location_cap(const struct bl_server_block *s,
                                                const char *path, size_t path_len,
                                                struct bl_captures *cap)
{
    const struct bl_location *found = s->server_loc;
    if (find_location(&s->locs, path, path_len, &found, cap) == FIND_ERROR)
        return NULL;
    return found;
}

const struct bl_location *bl_route_location(const struct bl_server_block *s, const char *path,
                                            size_t path_len)
{
    const struct bl_location *loc = bl_route_location_cap(s, path, path_len, NULL);
    return loc ? loc : s->server_loc;
}

const struct bl_location *bl_route_named(const struct bl_server_block *s, const char *name,
                                         size_t len)
{
    for (uint32_t i = 0; i < s->nnamed; i++)
        if (s->named[i]->path_len == len && memcmp(s->named[i]->path, name, len) == 0)
            return s->named[i];
    return NULL;
}
