/* nginx's preaccess and access phases for a request: limit_req, limit_conn, allow/deny, then
 * ballast's max_inflight (the policies themselves are in src/policy/). */
#include <string.h>

#include "core/log.h"
#include "http/proxy_int.h"
#include "policy/access.h"
#include "policy/limits.h"

static int client_addr(const struct bl_client *c, struct bl_ipaddr *a)
{
    memset(a, 0, sizeof(*a));
    if (c->addr.sa.sa_family == AF_INET) {
        a->family = AF_INET;
        memcpy(a->a, &c->addr.in.sin_addr, 4);
        return BL_OK;
    }
    if (c->addr.sa.sa_family == AF_INET6) {
        a->family = AF_INET6;
        memcpy(a->a, &c->addr.in6.sin6_addr, 16);
        return BL_OK;
    }
    return BL_ERR;
}

int bl_http_preaccess(struct bl_request *r, int *status, uint64_t *delay_ms)
{
    const struct bl_loc_conf *lc = &r->loc->conf;
    if (!r->limit_req_done) {
        r->limit_req_done = 1;
        if (lc->nlimit_reqs) {
            struct bl_var_ctx v;
            bl_request_var_ctx(r, &v);
            struct bl_limit_log log = {(int)lc->limit_req_log_level, (int)lc->limit_req_dry_run,
                                       r->c->ip};
            struct bl_limit_req_result res;
            int rc = bl_limit_req_check(lc->limit_reqs, lc->nlimit_reqs, &v, bl_clock_ms, &log,
                                        &res);
            r->limit_req_status = (uint8_t)res.status;
            if (rc != BL_OK) {
                *status = (int)lc->limit_req_status;
                return BL_ERR;
            }
            if (res.status == BL_LIMIT_DELAYED) {
                *delay_ms = res.delay_ms;
                return BL_AGAIN;
            }
        }
    }
    if (lc->nlimit_conns && !r->limit_conn_status) {
        struct bl_var_ctx v;
        bl_request_var_ctx(r, &v);
        struct bl_limit_log log = {(int)lc->limit_conn_log_level, (int)lc->limit_conn_dry_run,
                                   r->c->ip};
        int st;
        int rc = bl_limit_conn_acquire(lc->limit_conns, lc->nlimit_conns, &v, &log,
                                       &r->limit_held, &st);
        r->limit_conn_status = (uint8_t)st;
        if (rc != BL_OK) {
            *status = (int)lc->limit_conn_status;
            return BL_ERR;
        }
    }
    if (lc->naccess_rules) {
        struct bl_ipaddr a;
        if (client_addr(r->c, &a) == BL_OK &&
            !bl_access_allowed(lc->access_rules, lc->naccess_rules, &a)) {
            bl_log(BL_LOG_ERROR, "access forbidden by rule, client: %s", r->c->ip);
            *status = 403;
            return BL_ERR;
        }
    }
    if (r->loc->inflight && !r->inflight) {
        if (bl_inflight_enter(r->loc->inflight, (uint32_t)lc->max_inflight) != 0) {
            bl_log(BL_LOG_WARN, "max_inflight %llu reached in location \"%s\", client: %s",
                   (unsigned long long)lc->max_inflight, r->loc->path, r->c->ip);
            *status = 503;
            return BL_ERR;
        }
        r->inflight = r->loc->inflight;
    }
    return BL_OK;
}

void bl_http_preaccess_end(struct bl_request *r)
{
    if (bl_timer_armed(&r->limit_timer))
        bl_timer_cancel(r->c->w->loop, &r->limit_timer);
    if (r->limit_held.n)
        bl_limit_conn_release(&r->limit_held);
    if (r->inflight) {
        bl_inflight_leave(r->inflight);
        r->inflight = NULL;
    }
}
