/* Upstream attempts: pick, acquire, connect, retry and release with feedback (attempt.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/line.h"
#include "core/log.h"
#include "core/status.h"
#include "upstream/attempt.h"
#include "upstream/outlier.h"
#include "upstream/retry_budget.h"

/* ------------------------------------------------------------ per-worker state */

int bl_upstream_worker_init(struct bl_upstream_worker *uw, struct bl_loop *loop,
                            struct bl_upstream_group *const *groups, uint32_t ngroups,
                            uint32_t nservers, struct bl_stats_peer *stats, char *err,
                            size_t errlen)
{
    memset(uw, 0, sizeof(*uw));
    uw->ngroups = ngroups;
    uw->stats = stats;
    uw->lb_state = calloc(ngroups + 1, sizeof(void *));
    if (!uw->lb_state || bl_conn_pool_init(&uw->pool, loop, nservers) != BL_OK)
        goto oom;
    uw->pool.stats = stats;
    for (uint32_t i = 0; i < ngroups; i++)
        if (groups[i]->queue) {
            if (bl_queue_worker_init(&uw->queue, loop) != BL_OK) {
                snprintf(err, errlen, "eventfd() for upstream queues failed");
                bl_upstream_worker_free(uw);
                return BL_ERR;
            }
            break;
        }
    for (uint32_t i = 0; i < ngroups; i++) {
        struct bl_upstream_group *g = groups[i];
        size_t size = g->balancer->worker_size ? g->balancer->worker_size(g) : 0;
        if (!size)
            continue;
        /* written on every pick: its own lines, not next to another worker's */
        if (!(uw->lb_state[i] = bl_line_calloc(1, size)))
            goto oom;
        if (g->balancer->worker_init)
            g->balancer->worker_init(g, uw->lb_state[i]);
    }
    return BL_OK;
oom:
    snprintf(err, errlen, "out of memory for balancer state");
    bl_upstream_worker_free(uw);
    return BL_ERR;
}

void bl_upstream_worker_free(struct bl_upstream_worker *uw)
{
    if (uw->lb_state)
        for (uint32_t i = 0; i < uw->ngroups; i++)
            free(uw->lb_state[i]);
    free(uw->lb_state);
    uw->lb_state = NULL;
    bl_queue_worker_free(&uw->queue);
    bl_conn_pool_free(&uw->pool);
}

/* ------------------------------------------------------------ picking */

static inline void mark_tried(struct bl_attempt *a, const struct bl_upstream_server *s)
{
    if (s->index < sizeof(a->tried) * 8)
        a->tried[s->index >> 3] |= (uint8_t)(1u << (s->index & 7));
}

/* The balancer's pick, admitted by outlier detection: probation lets one probe at a time
 * through, so a server whose probe another worker just took (or that was ejected since the
 * pick) is skipped like a tried one and the balancer asked again. */
static struct bl_upstream_server *pick_admitted(struct bl_attempt *a,
                                                struct bl_upstream_group *g, uint32_t *probe)
{
    struct bl_upstream_server *s = g->balancer->pick(&a->pick);
    *probe = 0;
    for (uint32_t n = 0; s && g->outlier; n++) {
        if (bl_outlier_begin(s, a->pick.now_ms, probe))
            break;
        mark_tried(a, s);
        if (g->balancer->release)
            g->balancer->release(&a->pick, s, NULL);
        s = n < g->nservers ? g->balancer->pick(&a->pick) : NULL;
    }
    return s;
}

/* The balancer's choice for the next attempt, not yet tried by this request; NULL when none.
 * A group whose servers are all out for their own failures stays out until fail_timeout
 * ends, as nginx 1.22's round robin keeps it ("no live upstreams"): nothing is retried on
 * every request. */
static struct bl_upstream_server *pick_server(struct bl_attempt *a, struct bl_upstream_worker *uw,
                                              struct bl_upstream_group *g, const char *key,
                                              size_t key_len, const struct sockaddr *client,
                                              uint32_t *probe)
{
    a->pick.group = g;
    a->pick.wstate = uw->lb_state[g->index];
    a->pick.now_ms = bl_clock_ms;
    a->pick.tried = g->nservers <= sizeof(a->tried) * 8 ? a->tried : NULL;
    a->pick.key = key;
    a->pick.key_len = key_len;
    a->pick.client_addr = client;
    struct bl_upstream_server *s = pick_admitted(a, g, probe);
    a->pick.key = NULL; /* the key and the address are the caller's, for this call only */
    a->pick.client_addr = NULL;
    if (s)
        mark_tried(a, s);
    return s;
}

/* The attempt now holds s: counted active, with its outlier probe ticket. */
static void attempt_acquire(struct bl_attempt *a, const struct bl_upstream_worker *uw,
                            struct bl_upstream_server *s, uint32_t probe)
{
    a->worker = uw->worker;
    bl_server_acquire_on(s, a->worker);
    a->server = s;
    a->released = 0;
    a->probe = probe;
    a->outcome_reported = 0;
    a->tries++;
}

int bl_attempt_first(struct bl_attempt *a, struct bl_upstream_worker *uw,
                     struct bl_upstream_group *g, const char *key, size_t key_len,
                     const struct sockaddr *client)
{
    uint32_t probe;
    struct bl_upstream_server *s = pick_server(a, uw, g, key, key_len, client, &probe);
    if (!s)
        return BL_ERR;
    attempt_acquire(a, uw, s, probe);
    return BL_OK;
}

int bl_group_full(const struct bl_upstream_group *g)
{
    for (uint32_t i = 0; i < g->nservers; i++) {
        const struct bl_upstream_server *s = &g->servers[i];
        int max = bl_server_max_conns(s);
        if (max && bl_server_active_pick(s) >= max)
            return 1;
    }
    return 0;
}

int bl_group_has_room(const struct bl_upstream_group *g, uint64_t now_ms)
{
    for (uint32_t i = 0; i < g->nservers; i++)
        if (bl_server_available(&g->servers[i], now_ms))
            return 1;
    return 0;
}

int bl_group_failed(const struct bl_upstream_group *g, uint64_t now_ms)
{
    for (uint32_t i = 0; i < g->nservers; i++)
        if (atomic_load_explicit(&g->servers[i].state->down_until_ms, memory_order_relaxed) >
            now_ms)
            return 1;
    return 0;
}

/* ------------------------------------------------------------ connecting */

int bl_attempt_connect(struct bl_attempt *a, struct bl_upstream_worker *uw, int fresh,
                       void *owner, bl_upconn_handler on_io, bl_upconn_handler on_timeout)
{
    a->start_us = bl_clock_us;
    a->sent_any = 0;
    a->conn = bl_upconn_get(&uw->pool, a->server, a->tls_key, a->loop_reads, !fresh, owner,
                            on_io, on_timeout);
    if (!a->conn)
        return BL_ERR;
    a->conn->nrequests++;
    return BL_OK;
}

void bl_attempt_answered(struct bl_attempt *a, int status)
{
    a->status = status;
    a->time_us = bl_clock_us - a->start_us;
}

void bl_attempt_outcome(struct bl_attempt *a, int status, int gateway)
{
    struct bl_upstream_server *s = a->server;
    if (!s || a->outcome_reported || !s->group->outlier)
        return;
    a->outcome_reported = 1;
    bl_outlier_report(s, status, gateway, bl_clock_ms);
}

/* ------------------------------------------------------------ failures and retries */

uint64_t bl_next_upstream_status(int status)
{
    switch (status) {
    case 500: return BL_NEXT_HTTP_500;
    case 502: return BL_NEXT_HTTP_502;
    case 503: return BL_NEXT_HTTP_503;
    case 504: return BL_NEXT_HTTP_504;
    case 403: return BL_NEXT_HTTP_403;
    case 404: return BL_NEXT_HTTP_404;
    case 429: return BL_NEXT_HTTP_429;
    default: return 0;
    }
}

int bl_attempt_retry_allowed(const struct bl_attempt *a, const struct bl_retry_policy *p,
                             enum bl_attempt_error kind, int status)
{
    uint64_t mask = p->next_upstream;
    uint64_t bit = kind == BL_AE_ERROR ? BL_NEXT_ERROR
                 : kind == BL_AE_TIMEOUT ? BL_NEXT_TIMEOUT
                 : kind == BL_AE_INVALID ? BL_NEXT_INVALID_HEADER
                 : bl_next_upstream_status(status);
    if ((mask & BL_NEXT_OFF) || !(mask & bit) || p->committed)
        return 0;
    if (a->sent_any && p->non_idempotent && !(mask & BL_NEXT_NON_IDEMPOTENT))
        return 0;
    if (p->tries && a->tries >= p->tries)
        return 0;
    if (p->timeout_ms && bl_clock_us - p->start_us >= p->timeout_ms * 1000)
        return 0;
    return 1;
}

int bl_attempt_counts_as_failure(uint64_t next_upstream, enum bl_attempt_error kind, int status)
{
    if (kind != BL_AE_STATUS)
        return 1;
    return (status >= 500 || status == 429) && (next_upstream & bl_next_upstream_status(status));
}

int bl_attempt_resend_stale(struct bl_attempt *a, enum bl_attempt_error kind, int committed)
{
    struct bl_upconn *u = a->conn;
    if (kind != BL_AE_ERROR || !u || u->nrequests <= 1 || a->stale_retried || committed ||
        (u->in && bl_buf_len(u->in)))
        return 0;
    bl_log(BL_LOG_INFO, "keep-alive connection to %s was closed by the server, resending on a "
           "new connection", a->server->name);
    a->stale_retried = 1;
    bl_upconn_close(u);
    a->conn = NULL;
    return 1;
}

int bl_attempt_failed(struct bl_attempt *a, struct bl_upstream_worker *uw,
                      const struct bl_retry_policy *p, enum bl_attempt_error kind, int status,
                      const char *key, size_t key_len, const struct sockaddr *client)
{
    struct bl_upstream_server *s = a->server;
    int failed = bl_attempt_counts_as_failure(p->next_upstream, kind, status);
    if (failed)
        bl_server_report(s, 1, bl_clock_ms);
    bl_attempt_outcome(a, status, kind != BL_AE_STATUS);
    if (!bl_attempt_retry_allowed(a, p, kind, status))
        return BL_ERR;
    if (!bl_retry_acquire(s->group)) {
        if (uw->stats)
            bl_stat_add(&uw->stats[s->id].retries_refused, 1);
        return BL_ERR;
    }
    uint32_t probe;
    struct bl_upstream_server *next = pick_server(a, uw, s->group, key, key_len, client,
                                                  &probe);
    if (!next) {
        bl_retry_release(s->group);
        if (kind != BL_AE_STATUS && s->group->queue && bl_group_full(s->group)) {
            /* the retry may wait in the group's queue for a server not yet tried */
            bl_attempt_release(a, failed, 0, 0);
            return BL_AGAIN;
        }
        return BL_ERR;
    }
    /* The next server is picked while the old one still counts as busy, then the old one is
     * let go: balancers see the load as it was when they chose. */
    bl_attempt_release(a, failed, 0, 0);
    if (uw->stats)
        bl_stat_add(&uw->stats[s->id].retries, 1);
    a->retry_held = 1; /* the retry slot goes with the new attempt */
    attempt_acquire(a, uw, next, probe);
    return BL_OK;
}

/* ------------------------------------------------------------ releasing */

void bl_attempt_release(struct bl_attempt *a, int failed, int reusable, uint64_t bytes)
{
    struct bl_upstream_server *s = a->server;
    if (a->conn) {
        if (reusable)
            bl_upconn_release(a->conn, 1);
        else
            bl_upconn_close(a->conn);
        a->conn = NULL;
    }
    if (!s || a->released)
        return;
    a->released = 1;
    bl_server_release_on(s, a->worker);
    if (s->group->queue) {
        /* the release above before the queue's count: a waiter that enqueued meanwhile
         * either sees the room or is seen here (queue.h) */
        atomic_thread_fence(memory_order_seq_cst);
        bl_queue_released(&s->group->gstate->queue);
    } else if (__builtin_expect(atomic_load_explicit(&s->group->gstate->queue.waiting,
                                                     memory_order_relaxed), 0)) {
        /* a reload gave the group a queue: requests of this generation free slots too */
        bl_queue_wake_one(&s->group->gstate->queue);
    }
    if (s->group->outlier) {
        bl_outlier_end(s, a->probe);
        a->probe = 0;
    }
    if (a->retry_held) {
        bl_retry_release(s->group);
        a->retry_held = 0;
    }
    if (!failed)
        bl_server_report(s, 0, bl_clock_ms);
    if (s->group->adaptive && !failed && a->status)
        bl_adaptive_sample(s->group->adaptive, a->time_us,
                           atomic_load_explicit(&s->group->gstate->active, memory_order_relaxed),
                           bl_clock_ms);
    if (s->group->balancer->release) {
        a->pick.now_ms = bl_clock_ms;
        struct bl_pick_feedback fb = {.status = a->status,
                                      .failed = failed,
                                      .latency_us = a->time_us,
                                      .bytes = bytes};
        s->group->balancer->release(&a->pick, s, &fb);
    }
}
