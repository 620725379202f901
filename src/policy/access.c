/* allow / deny: first match wins (access.h). */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/status.h"
#include "policy/access.h"

int bl_access_parse(const char *text, int deny, struct bl_access_rule *rule, int *warned,
                    char *err, size_t errlen)
{
    *warned = 0;
    if (strncmp(text, "unix:", 5) == 0) {
        snprintf(err, errlen, "\"unix:\" is not supported: ballast does not listen on unix "
                 "sockets");
        return BL_ERR;
    }
    int rc = bl_cidr_parse(text, &rule->net);
    if (rc < 0) {
        snprintf(err, errlen, "invalid parameter \"%s\"", text);
        return BL_ERR;
    }
    *warned = rc == 1;
    rule->deny = (uint8_t)(deny != 0);
    return BL_OK;
}

int bl_access_allowed(const struct bl_access_rule *rules, uint32_t n,
                      const struct bl_ipaddr *addr)
{
    struct bl_ipaddr v4;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (addr->family == AF_INET6 && memcmp(addr->a, mapped, 12) == 0) {
        memset(&v4, 0, sizeof(v4));
        v4.family = AF_INET;
        memcpy(v4.a, addr->a + 12, 4);
        addr = &v4;
    }
    for (uint32_t i = 0; i < n; i++)
        if (bl_cidr_match(&rules[i].net, addr))
            return !rules[i].deny;
    return 1;
}
