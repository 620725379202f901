/* The `dns { }` block (the health-aware DNS front end, dns/dns.h): its zone, records and TTL as
 * compiled from the file. conf.c parses the lines and calls these; the listeners are ordinary
 * `struct bl_listen` entries with `dns` set. docs/configuration.md, "DNS context".
 *
 * Threads: built by the control thread while compiling a config, read-only afterwards.
 */
#ifndef BL_CONF_DNS_CONF_H
#define BL_CONF_DNS_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "dns/dns_msg.h"

struct bl_upstream_group;

struct bl_dns_record {
    char *text;                       /* the name as written ("www", "@"), owned */
    uint8_t name[BL_DNS_NAME_MAX];    /* record + zone, wire form, lowercased (at finish) */
    size_t name_len;
    uint16_t type;                    /* BL_DNS_T_A or BL_DNS_T_AAAA */
    char *upstream;                   /* upstream=NAME, owned */
    struct bl_upstream_group *group;  /* resolved at finish */
    const char *file;                 /* where the line is, for messages (the tree's) */
    int line;
};

struct bl_dns_conf {
    uint8_t zone[BL_DNS_NAME_MAX];    /* wire form, lowercased */
    size_t zone_len;                  /* 0: no `zone` line yet */
    uint32_t ttl_s;                   /* answers' TTL and the negative caching time */
    uint8_t ttl_set;
    uint32_t serial;                  /* the SOA serial: when the config was loaded */
    struct bl_dns_record *records;
    uint32_t nrecords;
};

#define BL_DNS_TTL_DEFAULT_S 5u

/* `zone NAME;`. BL_OK or BL_ERR with err (the caller adds file:line). */
int bl_dns_conf_zone(struct bl_dns_conf *d, const char *text, char *err, size_t errlen);

/* `record NAME A|AAAA upstream=GROUP;` (args[0..2]); file/line kept for later messages. */
int bl_dns_conf_record(struct bl_dns_conf *d, char *const *args, const char *file, int line,
                       char *err, size_t errlen);

/* After the whole file: names the records in full, finds their upstream groups (an `upstream`
 * block of http or stream) and checks each has a server of the record's family and that no
 * two records are the same name and type. err names the record's file:line. */
int bl_dns_conf_finish(struct bl_dns_conf *d, struct bl_upstream_group *const *groups,
                       uint32_t ngroups, char *err, size_t errlen);

void bl_dns_conf_free(struct bl_dns_conf *d);

#endif
