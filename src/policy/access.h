/* allow / deny (nginx's ngx_http_access_module and its stream twin): rules tried in order, the
 * first that matches the client's address decides; no match allows. */
#ifndef BL_POLICY_ACCESS_H
#define BL_POLICY_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "core/cidr.h"

struct bl_access_rule {
    struct bl_cidr net;             /* "all" matches every address */
    uint8_t deny;
};

/* Parses allow/deny's argument (ADDRESS, CIDR or all) into rule. BL_OK; BL_ERR with err
 * filled; a CIDR with host bits set is accepted with *warned = 1 (nginx warns). */
int bl_access_parse(const char *text, int deny, struct bl_access_rule *rule, int *warned,
                    char *err, size_t errlen);

/* 1 when rules[0..n) let addr in. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is matched
 * as the IPv4 address it carries, as nginx does. Any thread. */
int bl_access_allowed(const struct bl_access_rule *rules, uint32_t n,
                      const struct bl_ipaddr *addr);

#endif
