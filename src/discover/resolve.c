/* The DNS watcher of `server NAME resolve` (resolve.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/discovered.h"
#include "core/clock.h"
#include "core/dns.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/rand.h"
#include "core/status.h"
#include "discover/discover.h"
#include "discover/resolve.h"

#define MAX_ADDRS 64
#define NEGATIVE_RETRY_MS 5000   /* no address (NXDOMAIN, NODATA): ask again after this */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define MIN_TTL_MS 1000          /* TTL 0 does not make a question per loop turn */
#define MAX_TTL_MS 3600000

struct bl_resolve {
    struct bl_loop *loop;
    char *group, *name;
    char host[BL_DNS_NAME_MAX + 2];  /* name without its :PORT */
    struct sockaddr_storage resolvers[4];
    socklen_t resolver_lens[4];
    uint32_t nresolvers, current;    /* the resolver asked now */
    uint32_t tried;                  /* resolvers tried in this round */
    uint64_t valid_ms, timeout_ms;
    uint8_t ipv4, ipv6;
    struct bl_io io;                 /* UDP, connected to the current resolver */
    struct bl_timer timer;           /* the round's deadline, or the next round */
    int asking;                      /* a round is in progress */
    uint16_t ids[2];                 /* [0] A, [1] AAAA: the ids asked */
    uint8_t pending[2];              /* the answers still awaited */
    struct bl_dns_addr addrs[MAX_ADDRS];
    uint32_t naddrs;
    uint32_t min_ttl;
    int rcode;
    uint32_t backoff_ms;
    int outage;                      /* "no resolver answers" was logged */
    int empty;                       /* "has no address" was logged */
};

static void start_round(struct bl_resolve *w);

static void close_socket(struct bl_resolve *w)
{
    bl_loop_close(w->loop, &w->io);
}

static const char *kept(const struct bl_resolve *w)
{
    return bl_conf_discovered_get(w->group, w->name) ? "the last addresses"
                                                    : "the address found at load";
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Both answers are in (or the resolver gave up): publish, then plan the next question. */
static void finish_round(struct bl_resolve *w)
{
    w->asking = 0;
    bl_timer_cancel(w->loop, &w->timer);
    uint64_t next;
    if (w->outage)
        bl_log(BL_LOG_NOTICE, "resolve: a resolver answers again for \"%s\" in upstream "
               "\"%s\"", w->host, w->group);
    w->outage = 0;
    w->backoff_ms = 0;
    if (w->naddrs == 0) {
        if (!w->empty)
            bl_log(BL_LOG_WARN, "resolve: \"%s\" in upstream \"%s\" has no address (rcode "
                   "%d); keeping %s", w->host, w->group, w->rcode, kept(w));
        w->empty = 1;
        next = w->valid_ms && w->valid_ms < NEGATIVE_RETRY_MS ? w->valid_ms : NEGATIVE_RETRY_MS;
        bl_timer_set(w->loop, &w->timer, bl_now_ms() + next);
        return;
    }
    if (w->empty)
        bl_log(BL_LOG_NOTICE, "resolve: \"%s\" in upstream \"%s\" has addresses again",
               w->host, w->group);
    w->empty = 0;
    char text[MAX_ADDRS][INET6_ADDRSTRLEN];
    char *items[MAX_ADDRS] = {0};
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->naddrs; i++) {
        if (!inet_ntop(w->addrs[i].family, w->addrs[i].addr, text[n], sizeof(text[n])))
            continue;
        int dup = 0;
        for (uint32_t k = 0; k < n && !dup; k++)
            dup = strcmp(text[k], text[n]) == 0;
        if (!dup) {
            items[n] = text[n];
            n++;
        }
    }
    qsort(items, n, sizeof(items[0]), cmp_str);
    int rc = n ? bl_conf_discovered_set(w->group, w->name, items, n) : 0;
    if (rc == BL_ERR) {
        bl_log(BL_LOG_ERROR, "resolve: out of memory publishing \"%s\"", w->host);
    } else if (rc == 1) {
        char what[512];
        snprintf(what, sizeof(what), "resolve: \"%s\" in upstream \"%s\" has %u addresses "
                 "(first %s)", w->host, w->group, n, items[0]);
        bl_discover_changed(what);
    }
    uint64_t ttl_ms = (uint64_t)w->min_ttl * 1000;
    next = w->valid_ms ? w->valid_ms
                       : ttl_ms < MIN_TTL_MS ? MIN_TTL_MS : ttl_ms > MAX_TTL_MS ? MAX_TTL_MS
                                                                                : ttl_ms;
    bl_timer_set(w->loop, &w->timer, bl_now_ms() + next);
}

static void on_readable(struct bl_io *io, uint32_t ev)
{
    (void)ev;
    struct bl_resolve *w = (struct bl_resolve *)((char *)io - offsetof(struct bl_resolve, io));
    for (;;) {
        uint8_t msg[4096];
        ssize_t r = recv(w->io.fd, msg, sizeof(msg), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            /* EAGAIN, or ECONNREFUSED from an ICMP port unreachable: the timer decides */
            return;
        }
        if (!w->asking)
            continue;
        for (int t = 0; t < 2; t++) {
            if (!w->pending[t])
                continue;
            struct bl_dns_result res;
            uint16_t type = t ? BL_DNS_AAAA : BL_DNS_A;
            if (bl_dns_parse(msg, (size_t)r, w->ids[t], w->host, type, w->addrs + w->naddrs,
                             MAX_ADDRS - w->naddrs, &res) != BL_OK)
                continue;
            if (res.rcode != 0 && res.rcode != 3) {
                /* SERVFAIL, REFUSED: this resolver cannot say; the next one may */
                continue;
            }
            w->pending[t] = 0;
            w->naddrs += res.naddrs;
            if (res.naddrs && res.min_ttl < w->min_ttl)
                w->min_ttl = res.min_ttl;
            if (res.rcode)
                w->rcode = res.rcode;
            break;
        }
        if (w->asking && !w->pending[0] && !w->pending[1]) {
            finish_round(w);
            return;
        }
    }
}

/* Asks the current resolver; BL_ERR when the socket cannot be made or the question sent. */
static int ask(struct bl_resolve *w)
{
    close_socket(w);
    const struct sockaddr *sa = (const struct sockaddr *)&w->resolvers[w->current];
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return BL_ERR;
    w->io.fd = fd;
    w->io.handler = on_readable;
    if (connect(fd, sa, w->resolver_lens[w->current]) != 0 ||
        bl_loop_add(w->loop, &w->io) != BL_OK) {
        close_socket(w);
        return BL_ERR;
    }
    for (int t = 0; t < 2; t++) {
        if (!w->pending[t])
            continue;
        uint8_t q[512];
        w->ids[t] = (uint16_t)bl_rand64();
        int ql = bl_dns_query(w->ids[t], w->host, t ? BL_DNS_AAAA : BL_DNS_A, q, sizeof(q));
        if (ql < 0 || send(fd, q, (size_t)ql, 0) != ql)
            return BL_ERR;
    }
    return BL_OK;
}

static void next_resolver(struct bl_resolve *w, const char *why)
{
    w->tried++;
    w->current = (w->current + 1) % w->nresolvers;
    if (w->tried < w->nresolvers) {
        w->pending[0] = w->ipv4;
        w->pending[1] = w->ipv6;
        w->naddrs = 0;
        w->min_ttl = UINT32_MAX;
        w->rcode = 0;
        if (ask(w) == BL_OK) {
            bl_timer_set(w->loop, &w->timer, bl_now_ms() + w->timeout_ms);
            return;
        }
        next_resolver(w, "the question could not be sent");
        return;
    }
    /* every resolver failed this round */
    w->asking = 0;
    close_socket(w);
    if (!w->outage)
        bl_log(BL_LOG_ERROR, "resolve: no resolver answers for \"%s\" in upstream \"%s\" "
               "(%s); keeping %s and asking again", w->host, w->group, why, kept(w));
    w->outage = 1;
    if (w->backoff_ms < BACKOFF_MIN_MS)
        w->backoff_ms = BACKOFF_MIN_MS;
    bl_timer_set(w->loop, &w->timer, bl_now_ms() + w->backoff_ms);
    w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
}

static void start_round(struct bl_resolve *w)
{
    w->asking = 1;
    w->tried = 0;
    w->pending[0] = w->ipv4;
    w->pending[1] = w->ipv6;
    w->naddrs = 0;
    w->min_ttl = UINT32_MAX;
    w->rcode = 0;
    if (ask(w) != BL_OK) {
        next_resolver(w, "the question could not be sent");
        return;
    }
    bl_timer_set(w->loop, &w->timer, bl_now_ms() + w->timeout_ms);
}

static void on_timer(struct bl_timer *t)
{
    struct bl_resolve *w = (struct bl_resolve *)((char *)t - offsetof(struct bl_resolve, timer));
    if (w->asking)
        next_resolver(w, "no answer within resolver_timeout");
    else
        start_round(w);
}

void bl_resolve_update(struct bl_resolve *w, const struct bl_config *cfg)
{
    memcpy(w->resolvers, cfg->resolvers, sizeof(w->resolvers));
    memcpy(w->resolver_lens, cfg->resolver_lens, sizeof(w->resolver_lens));
    w->nresolvers = cfg->nresolvers ? cfg->nresolvers : 1;
    if (w->current >= w->nresolvers)
        w->current = 0;
    w->valid_ms = cfg->resolver_valid_ms;
    w->timeout_ms = cfg->resolver_timeout_ms ? cfg->resolver_timeout_ms : 30000;
    w->ipv4 = cfg->resolver_ipv4;
    w->ipv6 = cfg->resolver_ipv6;
}

struct bl_resolve *bl_resolve_start(struct bl_loop *loop, const struct bl_config *cfg,
                                    const char *group, const char *name)
{
    struct bl_resolve *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->loop = loop;
    w->io.fd = -1;
    w->timer.handler = on_timer;
    if (!(w->group = strdup(group)) || !(w->name = strdup(name))) {
        bl_resolve_stop(w, 0);
        return NULL;
    }
    /* NAME:PORT or NAME */
    snprintf(w->host, sizeof(w->host), "%s", name);
    char *colon = strrchr(w->host, ':');
    if (colon)
        *colon = 0;
    bl_resolve_update(w, cfg);
    start_round(w);
    return w;
}

int bl_resolve_same(const struct bl_resolve *w, const char *group, const char *name)
{
    return strcmp(w->group, group) == 0 && strcmp(w->name, name) == 0;
}

void bl_resolve_stop(struct bl_resolve *w, int forget)
{
    if (!w)
        return;
    if (forget && w->group && w->name)
        bl_conf_discovered_drop(w->group, w->name);
    close_socket(w);
    bl_timer_cancel(w->loop, &w->timer);
    free(w->group);
    free(w->name);
    free(w);
}
