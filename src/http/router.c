/* Server block and location selection. */
#include <ctype.h>
#include <string.h>

#include "conf/conf.h"
#include "http/router.h"

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

const struct bl_location *bl_route_location(const struct bl_server_block *s, const char *path,
                                            size_t path_len)
{
    for (uint32_t i = 0; i < s->nexact; i++) {
        const struct bl_location *loc = s->exact[i];
        if (loc->path_len == path_len && memcmp(loc->path, path, path_len) == 0)
            return loc;
    }
    for (uint32_t i = 0; i < s->nprefix; i++) {
        const struct bl_location *loc = s->prefix[i];
        if (loc->path_len <= path_len && memcmp(loc->path, path, loc->path_len) == 0)
            return loc;
    }
    return s->server_loc;
}
