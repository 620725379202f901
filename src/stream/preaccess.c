/* limit_conn and allow/deny for stream sessions (preaccess.h). */
#include <arpa/inet.h>
#include <string.h>

#include "core/log.h"
#include "core/status.h"
#include "policy/access.h"
#include "stream/preaccess.h"

int bl_stream_preaccess(const struct bl_stream_server *srv, const union bl_sockaddr *peer,
                        const char *ip, uint16_t server_port, struct bl_limit_held *held,
                        uint8_t *conn_status, int *status)
{
    const struct bl_loc_conf *lc = &srv->log;
    if (lc->nlimit_conns) {
        struct bl_var_ctx v = {
            .client_ip = ip,
            .client_ip_len = (uint32_t)strlen(ip),
            .client_port = ntohs(peer->in.sin_port),
            .server_port = server_port,
            .fd = -1,
        };
        struct bl_limit_log log = {(int)lc->limit_conn_log_level, (int)lc->limit_conn_dry_run,
                                   ip};
        int st;
        int rc = bl_limit_conn_acquire(lc->limit_conns, lc->nlimit_conns, &v, &log, held, &st);
        *conn_status = (uint8_t)st;
        if (rc != BL_OK) {
            *status = 503;
            return BL_ERR;
        }
    }
    if (lc->naccess_rules) {
        struct bl_ipaddr a;
        memset(&a, 0, sizeof(a));
        if (peer->sa.sa_family == AF_INET) {
            a.family = AF_INET;
            memcpy(a.a, &peer->in.sin_addr, 4);
        } else {
            a.family = AF_INET6;
            memcpy(a.a, &peer->in6.sin6_addr, 16);
        }
        if (!bl_access_allowed(lc->access_rules, lc->naccess_rules, &a)) {
            bl_log(BL_LOG_ERROR, "access forbidden by rule, client: %s", ip);
            *status = 403;
            return BL_ERR;
        }
    }
    return BL_OK;
}
