/* Compiling the `dns { }` block (dns_conf.h). */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "conf/conf_alloc.h"
#include "conf/dns_conf.h"
#include "core/status.h"
#include "upstream/upstream.h"

int bl_dns_conf_zone(struct bl_dns_conf *d, const char *text, char *err, size_t errlen)
{
    if (d->zone_len) {
        snprintf(err, errlen, "\"zone\" directive is duplicate (one zone per \"dns\" block)");
        return BL_ERR;
    }
    int n = bl_dns_name_from_text(text, d->zone);
    if (n < 0) {
        snprintf(err, errlen, "invalid zone name \"%s\" (labels of letters, digits, \"-\" and "
                 "\"_\", 63 bytes each, 255 in all)", text);
        return BL_ERR;
    }
    d->zone_len = (size_t)n;
    return BL_OK;
}

int bl_dns_conf_record(struct bl_dns_conf *d, char *const *args, const char *file, int line,
                       char *err, size_t errlen)
{
    uint16_t type;
    if (strcasecmp(args[1], "A") == 0)
        type = BL_DNS_T_A;
    else if (strcasecmp(args[1], "AAAA") == 0)
        type = BL_DNS_T_AAAA;
    else {
        snprintf(err, errlen, "record type \"%s\" is not supported (A or AAAA: the addresses "
                 "of an upstream's healthy servers)", args[1]);
        return BL_ERR;
    }
    if (strncmp(args[2], "upstream=", 9) != 0 || !args[2][9] || strchr(args[2] + 9, ':')) {
        snprintf(err, errlen, "invalid parameter \"%s\" (upstream=NAME of an upstream block)",
                 args[2]);
        return BL_ERR;
    }
    uint8_t tmp[BL_DNS_NAME_MAX];
    const char *name = args[0];
    if (strcmp(name, "@") != 0 && (name[strlen(name) - 1] == '.' ||
                                   bl_dns_name_from_text(name, tmp) < 0)) {
        snprintf(err, errlen, "invalid record name \"%s\" (a name relative to the zone, as "
                 "\"www\" or \"eu.www\", or \"@\" for the zone itself)", name);
        return BL_ERR;
    }
    struct bl_dns_record *r = conf_realloc(d->records, (d->nrecords + 1) * sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    d->records = r;
    r = &d->records[d->nrecords];
    memset(r, 0, sizeof(*r));
    r->type = type;
    r->file = file;
    r->line = line;
    r->text = conf_strdup(name);
    r->upstream = conf_strdup(args[2] + 9);
    d->nrecords++;
    if (!r->text || !r->upstream) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    return BL_OK;
}

static int has_family(const struct bl_upstream_group *g, int family)
{
    for (uint32_t i = 0; i < g->nservers; i++)
        if (g->servers[i].addr.ss_family == family)
            return 1;
    return 0;
}

int bl_dns_conf_finish(struct bl_dns_conf *d, struct bl_upstream_group *const *groups,
                       uint32_t ngroups, char *err, size_t errlen)
{
    if (!d->ttl_set)
        d->ttl_s = BL_DNS_TTL_DEFAULT_S;
    d->serial = (uint32_t)time(NULL);
    for (uint32_t i = 0; i < d->nrecords; i++) {
        struct bl_dns_record *r = &d->records[i];
        if (strcmp(r->text, "@") == 0) {
            memcpy(r->name, d->zone, d->zone_len);
            r->name_len = d->zone_len;
        } else {
            int n = bl_dns_name_from_text(r->text, r->name);
            /* n - 1: without its root label, the zone's labels follow */
            if (n < 0 || (size_t)n - 1 + d->zone_len > BL_DNS_NAME_MAX) {
                snprintf(err, errlen, "record name \"%s\" with the zone is longer than 255 bytes "
                         "in %s:%d", r->text, r->file, r->line);
                return BL_ERR;
            }
            memcpy(r->name + n - 1, d->zone, d->zone_len);
            r->name_len = (size_t)n - 1 + d->zone_len;
        }
        for (uint32_t k = 0; k < i; k++)
            if (d->records[k].type == r->type && d->records[k].name_len == r->name_len &&
                memcmp(d->records[k].name, r->name, r->name_len) == 0) {
                snprintf(err, errlen, "duplicate record \"%s %s\" in %s:%d", r->text,
                         r->type == BL_DNS_T_A ? "A" : "AAAA", r->file, r->line);
                return BL_ERR;
            }
        for (uint32_t k = 0; k < ngroups && !r->group; k++)
            if (strcmp(groups[k]->name, r->upstream) == 0)
                r->group = groups[k];
        if (!r->group) {
            snprintf(err, errlen, "no upstream \"%s\" for record \"%s\" in %s:%d", r->upstream,
                     r->text, r->file, r->line);
            return BL_ERR;
        }
        int family = r->type == BL_DNS_T_A ? AF_INET : AF_INET6;
        if (!has_family(r->group, family)) {
            snprintf(err, errlen, "upstream \"%s\" has no %s server for record \"%s %s\" in "
                     "%s:%d", r->upstream, family == AF_INET ? "IPv4" : "IPv6", r->text,
                     r->type == BL_DNS_T_A ? "A" : "AAAA", r->file, r->line);
            return BL_ERR;
        }
    }
    return BL_OK;
}

void bl_dns_conf_free(struct bl_dns_conf *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->nrecords; i++) {
        free(d->records[i].text);
        free(d->records[i].upstream);
    }
    free(d->records);
    free(d);
}
