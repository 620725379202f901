/* Prometheus text exposition of the per-worker counters and shared server state (metrics.h).
 *
 * Families are written one at a time, each with its HELP and TYPE lines and every sample of
 * it together, as the format requires. The per-worker blocks are summed once per scrape into
 * scratch totals, so each family reads plain numbers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/api.h"
#include "admin/metrics.h"
#include "conf/conf.h"
#include "core/stats.h"
#include "core/status.h"
#include "core/strbuf.h"
#include "upstream/health_check.h"
#include "upstream/outlier.h"
#include "upstream/upstream.h"

_Static_assert(sizeof(struct bl_stats_zone) % sizeof(bl_counter) == 0, "zone: counters only");
_Static_assert(sizeof(struct bl_stats_peer) % sizeof(bl_counter) == 0, "peer: counters only");
_Static_assert(sizeof(struct bl_stats_listen) % sizeof(bl_counter) == 0, "listen: counters");

static const char *const class_label[BL_STATS_NCLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx",
                                                           "other"};

static const char *const fail_label[BL_SF_N] = {
    [BL_SF_CONNECT_ERROR] = "connect_error",
    [BL_SF_CONNECT_TIMEOUT] = "connect_timeout",
    [BL_SF_TIMEOUT] = "timeout",
    [BL_SF_ERROR] = "error",
    [BL_SF_INVALID] = "invalid_response",
};


/* Scrape-time totals: every worker's block summed (same layout, plain numbers). */
struct totals {
    uint64_t *servers;     /* nservers x zone counters */
    uint64_t *locations;   /* nlocations x zone counters */
    uint64_t *peers;       /* npeers x peer counters */
    uint64_t *listens;     /* nlistens x listen counters */
};

#define ZONE_N (sizeof(struct bl_stats_zone) / sizeof(bl_counter))
#define PEER_N (sizeof(struct bl_stats_peer) / sizeof(bl_counter))
#define LISTEN_N (sizeof(struct bl_stats_listen) / sizeof(bl_counter))

/* The index of a counter field in its struct, as a slot of struct totals. */
#define SLOT(type, field) (offsetof(type, field) / sizeof(bl_counter))

/* Adds n counters of each element of a worker's array (stride n) into dst. Every struct in
 * core/stats.h is made of bl_counter only (asserted above), so an element reads as an array
 * of counters. */
static void add_block(uint64_t *dst, const void *src, size_t elems, size_t n)
{
    const bl_counter *c = src;
    for (size_t i = 0; i < elems * n; i++)
        dst[i] += bl_stat_load(&c[i]);
}

static int totals_sum(struct totals *t, const struct bl_stats_set *set)
{
    t->servers = calloc(set->nservers * ZONE_N + 1, sizeof(uint64_t));
    t->locations = calloc(set->nlocations * ZONE_N + 1, sizeof(uint64_t));
    t->peers = calloc(set->npeers * PEER_N + 1, sizeof(uint64_t));
    t->listens = calloc(set->nlistens * LISTEN_N + 1, sizeof(uint64_t));
    if (!t->servers || !t->locations || !t->peers || !t->listens)
        return BL_ERR;
    /* The base holds what earlier configs counted for objects this one kept (reloads). */
    for (uint32_t w = 0; w <= set->nworkers; w++) {
        const struct bl_stats_worker *b = w < set->nworkers ? set->workers[w] : set->base;
        if (!b)
            continue;
        add_block(t->servers, b->servers, set->nservers, ZONE_N);
        add_block(t->locations, b->locations, set->nlocations, ZONE_N);
        add_block(t->peers, b->peers, set->npeers, PEER_N);
        add_block(t->listens, b->listens, set->nlistens, LISTEN_N);
    }
    return BL_OK;
}

static void totals_free(struct totals *t)
{
    free(t->servers);
    free(t->locations);
    free(t->peers);
    free(t->listens);
}

/* ------------------------------------------------------------ text */

void bl_metrics_escape(struct bl_strbuf *out, const char *value)
{
    const char *run = value;
    for (const char *p = value; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (!esc)
            continue;
        bl_strbuf_append(out, run, (size_t)(p - run));
        bl_strbuf_puts(out, esc);
        run = p + 1;
    }
    bl_strbuf_puts(out, run);
}

static void family(struct bl_strbuf *out, const char *name, const char *type, const char *help)
{
    bl_strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{labels[,extra="value"]} value — labels is an already escaped label list (may be ""). */
static void sample(struct bl_strbuf *out, const char *name, const char *labels,
                   const char *extra, const char *extra_value, const char *value)
{
    if (!labels)
        labels = ""; /* a label slot nothing filled (clang-tidy): no labels rather than a crash */
    bl_strbuf_puts(out, name);
    if (labels[0] || extra) {
        bl_strbuf_puts(out, "{");
        bl_strbuf_puts(out, labels);
        if (extra) {
            bl_strbuf_printf(out, "%s%s=\"", labels[0] ? "," : "", extra);
            bl_metrics_escape(out, extra_value);
            bl_strbuf_puts(out, "\"");
        }
        bl_strbuf_puts(out, "}");
    }
    bl_strbuf_printf(out, " %s\n", value);
}

static void sample_u(struct bl_strbuf *out, const char *name, const char *labels,
                     const char *extra, const char *extra_value, uint64_t v)
{
    char num[32];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    sample(out, name, labels, extra, extra_value, num);
}

/* A gauge summed from per-worker values that each go up and down (wrap-around arithmetic). */
static void sample_gauge(struct bl_strbuf *out, const char *name, const char *labels,
                         const char *extra, const char *extra_value, uint64_t v)
{
    char num[32];
    snprintf(num, sizeof(num), "%lld", (long long)(int64_t)v);
    sample(out, name, labels, extra, extra_value, num);
}

static void sample_seconds(struct bl_strbuf *out, const char *name, const char *labels,
                           const char *extra, const char *extra_value, uint64_t us)
{
    char num[48];
    snprintf(num, sizeof(num), "%llu.%06llu", (unsigned long long)(us / 1000000),
             (unsigned long long)(us % 1000000));
    sample(out, name, labels, extra, extra_value, num);
}

/* ------------------------------------------------------------ label sets */

/* Escaped label lists, one per object, built once per scrape. */
struct labels {
    char **listen;     /* listen="ADDR" */
    char **server;     /* server="NAME" (server blocks) */
    char **location;   /* server="NAME",location="PATH" (by location index) */
    char **peer;       /* upstream="NAME",server="ADDR" (by server id) */
    uint32_t nlisten, nserver, nlocation, npeer;
};

static char *label_text(const char *k1, const char *v1, const char *k2, const char *v2)
{
    struct bl_strbuf b = {0};
    bl_strbuf_printf(&b, "%s=\"", k1);
    bl_metrics_escape(&b, v1);
    bl_strbuf_puts(&b, "\"");
    if (k2) {
        bl_strbuf_printf(&b, ",%s=\"", k2);
        bl_metrics_escape(&b, v2);
        bl_strbuf_puts(&b, "\"");
    }
    if (b.failed) {
        bl_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

/* A server block's name for labels: its first server_name ("_" without one), with "#N" added
 * to the N-th block (N >= 2) that would otherwise carry the same name. */
static void server_name(const struct bl_config *cfg, uint32_t i, char *buf, size_t len)
{
    const struct bl_server_block *s = cfg->servers[i];
    const char *name = s->nnames ? s->names[0] : "_";
    uint32_t same = 1;
    for (uint32_t k = 0; k < i; k++) {
        const struct bl_server_block *o = cfg->servers[k];
        if (strcmp(o->nnames ? o->names[0] : "_", name) == 0)
            same++;
    }
    if (same == 1)
        snprintf(buf, len, "%s", name);
    else
        snprintf(buf, len, "%s#%u", name, same);
}

static void labels_free(struct labels *l)
{
    for (uint32_t i = 0; l->listen && i < l->nlisten; i++)
        free(l->listen[i]);
    for (uint32_t i = 0; l->server && i < l->nserver; i++)
        free(l->server[i]);
    for (uint32_t i = 0; l->location && i < l->nlocation; i++)
        free(l->location[i]);
    for (uint32_t i = 0; l->peer && i < l->npeer; i++)
        free(l->peer[i]);
    free(l->listen);
    free(l->server);
    free(l->location);
    free(l->peer);
}

static int labels_build(struct labels *l, const struct bl_config *cfg)
{
    l->nlisten = cfg->nlistens;
    l->nserver = cfg->nservers;
    l->nlocation = cfg->nlocations;
    l->npeer = cfg->nupstream_servers;
    l->listen = calloc(l->nlisten + 1, sizeof(char *));
    l->server = calloc(l->nserver + 1, sizeof(char *));
    l->location = calloc(l->nlocation + 1, sizeof(char *));
    l->peer = calloc(l->npeer + 1, sizeof(char *));
    if (!l->listen || !l->server || !l->location || !l->peer)
        return BL_ERR;
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        if (!(l->listen[i] = label_text("listen", cfg->listens[i].text, NULL, NULL)))
            return BL_ERR;
    for (uint32_t i = 0; i < cfg->nservers; i++) {
        const struct bl_server_block *s = cfg->servers[i];
        char name[300];
        server_name(cfg, i, name, sizeof(name));
        if (!(l->server[i] = label_text("server", name, NULL, NULL)))
            return BL_ERR;
        for (uint32_t k = 0; k < s->nexact + s->nprefix; k++) {
            const struct bl_location *loc = k < s->nexact ? s->exact[k]
                                                          : s->prefix[k - s->nexact];
            char path[1100];
            snprintf(path, sizeof(path), "%s%s", loc->exact ? "= " : "", loc->path);
            if (loc->index >= l->nlocation ||
                !(l->location[loc->index] = label_text("server", name, "location", path)))
                return BL_ERR;
        }
    }
    for (uint32_t g = 0; g < cfg->ngroups; g++) {
        const struct bl_upstream_group *grp = cfg->groups[g];
        for (uint32_t k = 0; k < grp->nservers; k++) {
            const struct bl_upstream_server *s = &grp->servers[k];
            if (s->id >= l->npeer ||
                !(l->peer[s->id] = label_text("upstream", grp->name, "server", s->name)))
                return BL_ERR;
        }
    }
    return BL_OK;
}

/* ------------------------------------------------------------ families */

static void render_process(struct bl_strbuf *out, const struct bl_metrics_source *src)
{
    const struct bl_process_stats *p = &bl_process_stats;
    family(out, "ballast_build_info", "gauge", "Always 1; the version label says which build.");
    sample(out, "ballast_build_info", "", "version", src->version, "1");

    uint64_t start_ms = atomic_load_explicit(&p->start_unix_ms, memory_order_relaxed);
    family(out, "ballast_start_time_seconds", "gauge",
           "When the process started, in seconds since the Unix epoch.");
    sample_seconds(out, "ballast_start_time_seconds", "", NULL, NULL, start_ms * 1000);

    uint64_t mono = atomic_load_explicit(&p->start_mono_ms, memory_order_relaxed);
    family(out, "ballast_uptime_seconds", "gauge", "Seconds since the process started.");
    sample_seconds(out, "ballast_uptime_seconds", "", NULL, NULL,
                   src->now_ms > mono ? (src->now_ms - mono) * 1000 : 0);

    family(out, "ballast_workers", "gauge", "Worker threads serving requests.");
    sample_u(out, "ballast_workers", "", NULL, NULL, src->stats->nworkers);

    family(out, "ballast_config_generation", "gauge",
           "Configuration generation serving new requests: 1 at start, one more per reload.");
    sample_u(out, "ballast_config_generation", "", NULL, NULL,
             atomic_load_explicit(&p->generation, memory_order_relaxed));

    family(out, "ballast_config_reloads_total", "counter",
           "Configuration reloads, by result: ok (a new generation serves) or failed (refused, "
           "the old generation kept serving).");
    sample_u(out, "ballast_config_reloads_total", "", "result", "ok",
             atomic_load_explicit(&p->reloads_ok, memory_order_relaxed));
    sample_u(out, "ballast_config_reloads_total", "", "result", "failed",
             atomic_load_explicit(&p->reloads_failed, memory_order_relaxed));
}

/* The spread of the traffic over the workers (SO_REUSEPORT hashing, a hot worker), from each
 * worker's own block; since the generation began (bl_stats_worker_totals). */
static void render_workers(struct bl_strbuf *out, const struct bl_stats_set *set)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"ballast_worker_requests_total", "counter",
         "HTTP requests answered by the worker since the configuration generation began."},
        {"ballast_worker_connections_accepted_total", "counter",
         "Client connections (and UDP sessions) the worker accepted since the configuration "
         "generation began."},
        {"ballast_worker_connections", "gauge",
         "Open client connections of the worker: active or idle (keep-alive)."},
    };
    struct bl_stats_worker_totals *wt = calloc(set->nworkers + 1, sizeof(*wt));
    if (!wt) {
        out->failed = 1;
        return;
    }
    for (uint32_t w = 0; w < set->nworkers; w++)
        bl_stats_worker_totals(set, w, &wt[w]);
    for (unsigned f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        family(out, fam[f].name, fam[f].type, fam[f].help);
        for (uint32_t w = 0; w < set->nworkers; w++) {
            char id[16];
            snprintf(id, sizeof(id), "%u", w + 1);
            if (f == 0)
                sample_u(out, fam[f].name, "", "worker", id, wt[w].requests);
            else if (f == 1)
                sample_u(out, fam[f].name, "", "worker", id, wt[w].accepted);
            else {
                char lab[32];
                snprintf(lab, sizeof(lab), "worker=\"%u\"", w + 1);
                sample_gauge(out, fam[f].name, lab, "state", "active",
                             (uint64_t)(wt[w].conns - wt[w].conns_idle));
                sample_gauge(out, fam[f].name, lab, "state", "idle", (uint64_t)wt[w].conns_idle);
            }
        }
    }
    free(wt);
}

static void render_listens(struct bl_strbuf *out, const struct totals *t, const struct labels *l)
{
    family(out, "ballast_listen_connections_accepted_total", "counter",
           "Client connections accepted on the listening address.");
    for (uint32_t i = 0; i < l->nlisten; i++)
        sample_u(out, "ballast_listen_connections_accepted_total", l->listen[i], NULL, NULL,
                 t->listens[i * LISTEN_N + SLOT(struct bl_stats_listen, accepted)]);
    family(out, "ballast_listen_connections", "gauge",
           "Open client connections of the listening address: active (reading or being "
           "answered) or idle (keep-alive, between requests).");
    for (uint32_t i = 0; i < l->nlisten; i++) {
        const uint64_t *c = &t->listens[i * LISTEN_N];
        uint64_t open = c[SLOT(struct bl_stats_listen, conns)];
        uint64_t idle = c[SLOT(struct bl_stats_listen, conns_idle)];
        sample_gauge(out, "ballast_listen_connections", l->listen[i], "state", "active",
                     open - idle);
        sample_gauge(out, "ballast_listen_connections", l->listen[i], "state", "idle", idle);
    }
}

/* Stream servers, one sample set per stream listen (TCP and UDP). Connections begun and open
 * are in the ballast_listen_* families above; upstream traffic in ballast_upstream_server_*. */
static void render_stream(struct bl_strbuf *out, const struct bl_config *cfg,
                          const struct totals *t)
{
    static const int codes[BL_STATS_NSTREAM - 1] = BL_STATS_STREAM_STATUSES;
    char **lab = calloc(cfg->nlistens + 1, sizeof(char *));
    if (!lab) {
        out->failed = 1;
        return;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < cfg->nlistens; i++) {
        const struct bl_listen *ls = &cfg->listens[i];
        if (!ls->stream)
            continue;
        n++;
        if (!(lab[i] = label_text("listen", ls->text, "upstream",
                                  ls->stream->upstream ? ls->stream->upstream->name : "")))
            out->failed = 1;
    }
    if (n && !out->failed) {
        family(out, "ballast_stream_server_sessions_total", "counter",
               "Stream sessions (TCP connections, UDP client sessions) that ended, by $status: "
               "200 (relayed), 400 (bad PROXY header), 403 (denied), 502 (no server answered or "
               "connected), 503 (no live server), other.");
        for (uint32_t i = 0; i < cfg->nlistens; i++)
            for (unsigned k = 0; lab[i] && k < BL_STATS_NSTREAM; k++) {
                char code[16];
                snprintf(code, sizeof(code), "%d", k < BL_STATS_NSTREAM - 1 ? codes[k] : 0);
                sample_u(out, "ballast_stream_server_sessions_total", lab[i], "status",
                         k < BL_STATS_NSTREAM - 1 ? code : "other",
                         t->listens[i * LISTEN_N + SLOT(struct bl_stats_listen, sessions) + k]);
            }
        family(out, "ballast_stream_server_received_bytes_total", "counter",
               "Bytes (payload) the stream server received from clients, counted when a "
               "session ends.");
        for (uint32_t i = 0; i < cfg->nlistens; i++)
            if (lab[i])
                sample_u(out, "ballast_stream_server_received_bytes_total", lab[i], NULL, NULL,
                         t->listens[i * LISTEN_N + SLOT(struct bl_stats_listen, bytes_in)]);
        family(out, "ballast_stream_server_sent_bytes_total", "counter",
               "Bytes (payload) the stream server sent to clients, counted when a session "
               "ends.");
        for (uint32_t i = 0; i < cfg->nlistens; i++)
            if (lab[i])
                sample_u(out, "ballast_stream_server_sent_bytes_total", lab[i], NULL, NULL,
                         t->listens[i * LISTEN_N + SLOT(struct bl_stats_listen, bytes_out)]);
        family(out, "ballast_stream_server_sessions", "gauge",
               "Open stream sessions of the stream server.");
        for (uint32_t i = 0; i < cfg->nlistens; i++)
            if (lab[i])
                sample_gauge(out, "ballast_stream_server_sessions", lab[i], NULL, NULL,
                             t->listens[i * LISTEN_N + SLOT(struct bl_stats_listen, conns)]);
    }
    for (uint32_t i = 0; i < cfg->nlistens; i++)
        free(lab[i]);
    free(lab);
}

/* The three families of server blocks (prefix "ballast_http_server") or locations. */
static void render_zones(struct bl_strbuf *out, const char *prefix, const char *what,
                         const uint64_t *t, char *const *labels, uint32_t n)
{
    char name[96], help[256];
    snprintf(name, sizeof(name), "%s_requests_total", prefix);
    snprintf(help, sizeof(help), "Requests answered by the %s, by status class of the "
             "response sent to the client (499: the client went away).", what);
    family(out, name, "counter", help);
    for (uint32_t i = 0; i < n; i++)
        for (unsigned k = 0; k < BL_STATS_NCLASSES; k++) {
            uint64_t v = t[i * ZONE_N + SLOT(struct bl_stats_zone, requests) + k];
            if (k < BL_STATS_NCLASSES - 1 || v)
                sample_u(out, name, labels[i], "code", class_label[k], v);
        }
    snprintf(name, sizeof(name), "%s_received_bytes_total", prefix);
    snprintf(help, sizeof(help), "Bytes of requests (head and body) the %s received from "
             "clients.", what);
    family(out, name, "counter", help);
    for (uint32_t i = 0; i < n; i++)
        sample_u(out, name, labels[i], NULL, NULL,
                 t[i * ZONE_N + SLOT(struct bl_stats_zone, bytes_in)]);
    snprintf(name, sizeof(name), "%s_sent_bytes_total", prefix);
    snprintf(help, sizeof(help), "Bytes of responses (head and body) the %s sent to clients.",
             what);
    family(out, name, "counter", help);
    for (uint32_t i = 0; i < n; i++)
        sample_u(out, name, labels[i], NULL, NULL,
                 t[i * ZONE_N + SLOT(struct bl_stats_zone, bytes_out)]);
}

/* One upstream server as the peer families read it. */
struct peer_view {
    const struct bl_upstream_server *s;
    const char *lab;          /* its escaped labels */
    const uint64_t *c;        /* its summed counters (PEER_N of them) */
};

#define PSLOT(field) SLOT(struct bl_stats_peer, field)

static void render_peer_traffic(struct bl_strbuf *out, const struct peer_view *pv, uint32_t n)
{
    family(out, "ballast_upstream_server_responses_total", "counter",
           "Response heads received from the upstream server, by status class (every attempt, "
           "retried ones too).");
    for (uint32_t i = 0; i < n; i++) {
        const char *lab = pv[i].lab;
        const uint64_t *c = pv[i].c;
        for (unsigned k = 0; k < BL_STATS_NCLASSES; k++) {
            uint64_t v = c[PSLOT(responses) + k];
            if (k < BL_STATS_NCLASSES - 1 || v)
                sample_u(out, "ballast_upstream_server_responses_total", lab, "code",
                         class_label[k], v);
        }
    }
    family(out, "ballast_upstream_server_sent_bytes_total", "counter",
           "Bytes sent to the upstream server (request heads and bodies).");
    for (uint32_t i = 0; i < n; i++) {
        const char *lab = pv[i].lab;
        const uint64_t *c = pv[i].c;
        sample_u(out, "ballast_upstream_server_sent_bytes_total", lab, NULL, NULL,
                 c[PSLOT(bytes_out)]);
    }
    family(out, "ballast_upstream_server_received_bytes_total", "counter",
           "Bytes received from the upstream server (response heads and bodies).");
    for (uint32_t i = 0; i < n; i++) {
        const char *lab = pv[i].lab;
        const uint64_t *c = pv[i].c;
        sample_u(out, "ballast_upstream_server_received_bytes_total", lab, NULL, NULL,
                 c[PSLOT(bytes_in)]);
    }
    family(out, "ballast_upstream_server_response_seconds", "histogram",
           "Time from asking for a connection to the upstream server to its response head "
           "(nginx's $upstream_header_time), per answered attempt.");
    for (uint32_t i = 0; i < n; i++) {
        const char *lab = pv[i].lab;
        const uint64_t *c = pv[i].c;
        const uint64_t *b = &c[PSLOT(header_time.buckets)];
        uint64_t cum = 0;
        for (unsigned j = 0; j <= BL_STATS_NBUCKETS; j++) {
            char le[32];
            if (j < BL_STATS_NBUCKETS)
                snprintf(le, sizeof(le), "%g", (double)bl_stats_bucket_us[j] / 1e6);
            else
                snprintf(le, sizeof(le), "+Inf");
            cum += b[j];
            sample_u(out, "ballast_upstream_server_response_seconds_bucket", lab, "le", le,
                     cum);
        }
        sample_seconds(out, "ballast_upstream_server_response_seconds_sum", lab, NULL, NULL,
                       c[PSLOT(header_time.sum_us)]);
        sample_u(out, "ballast_upstream_server_response_seconds_count", lab, NULL, NULL, cum);
    }
    family(out, "ballast_upstream_server_failures_total", "counter",
           "Failed attempts on the upstream server, by reason: connect_error, connect_timeout, "
           "timeout (send or read), error (reset or closed), invalid_response.");
    for (uint32_t i = 0; i < n; i++) {
        const char *lab = pv[i].lab;
        const uint64_t *c = pv[i].c;
        for (unsigned k = 0; k < BL_SF_N; k++)
            sample_u(out, "ballast_upstream_server_failures_total", lab, "reason",
                     fail_label[k], c[PSLOT(failures) + k]);
    }
    family(out, "ballast_upstream_server_retries_total", "counter",
           "Requests retried on another server after an attempt on this one failed.");
    for (uint32_t i = 0; i < n; i++) {
        const char *lab = pv[i].lab;
        const uint64_t *c = pv[i].c;
        sample_u(out, "ballast_upstream_server_retries_total", lab, NULL, NULL,
                 c[PSLOT(retries)]);
    }
    family(out, "ballast_upstream_server_retry_budget_refusals_total", "counter",
           "Retries that retry_budget refused after an attempt on this server failed.");
    for (uint32_t i = 0; i < n; i++) {
        const char *lab = pv[i].lab;
        const uint64_t *c = pv[i].c;
        sample_u(out, "ballast_upstream_server_retry_budget_refusals_total", lab, NULL, NULL,
                 c[PSLOT(retries_refused)]);
    }
    family(out, "ballast_upstream_server_connections", "gauge",
           "Open connections to the upstream server: active (carrying a request) or idle "
           "(in the keep-alive pool).");
    for (uint32_t i = 0; i < n; i++) {
        const char *lab = pv[i].lab;
        const uint64_t *c = pv[i].c;
        uint64_t open = c[PSLOT(conns)], idle = c[PSLOT(conns_idle)];
        sample_gauge(out, "ballast_upstream_server_connections", lab, "state", "active",
                     open - idle);
        sample_gauge(out, "ballast_upstream_server_connections", lab, "state", "idle", idle);
    }
}

static void render_peer_state(struct bl_strbuf *out, const struct peer_view *pv, uint32_t n,
                              uint64_t now_ms)
{
    family(out, "ballast_upstream_server_requests_in_flight", "gauge",
           "Requests in flight on the upstream server, all workers.");
    for (uint32_t i = 0; i < n; i++) {
        const struct bl_upstream_server *s = pv[i].s;
        const char *lab = pv[i].lab;
        sample_gauge(out, "ballast_upstream_server_requests_in_flight", lab, NULL, NULL,
                     (uint64_t)bl_server_active(s));
    }
    family(out, "ballast_upstream_server_weight", "gauge",
           "Weight of the upstream server in effect: the config's, or the admin API's.");
    for (uint32_t i = 0; i < n; i++) {
        const struct bl_upstream_server *s = pv[i].s;
        const char *lab = pv[i].lab;
        sample_u(out, "ballast_upstream_server_weight", lab, NULL, NULL, (uint64_t)bl_server_weight(s));
    }
    family(out, "ballast_upstream_server_state", "gauge",
           "1 for the state the upstream server is in, 0 for the others: down (marked down in "
           "the config or the admin API), draining (admin API: no new requests), checking "
           "(active checks have not yet let it in), unhealthy (failing active checks), ejected "
           "(outlier detection), unavail (max_fails within fail_timeout), up.");
    for (uint32_t i = 0; i < n; i++) {
        const struct bl_upstream_server *s = pv[i].s;
        const char *lab = pv[i].lab;
        enum bl_server_view_state st = bl_server_view(s, now_ms);
        for (unsigned k = 0; k < BL_SV_N; k++)
            sample(out, "ballast_upstream_server_state", lab, "state", bl_server_view_names[k],
                   k == (unsigned)st ? "1" : "0");
    }
    family(out, "ballast_upstream_server_checks_total", "counter",
           "Active health check probes of the upstream server, by result (only groups with "
           "`check`).");
    for (uint32_t i = 0; i < n; i++) {
        const struct bl_upstream_server *s = pv[i].s;
        const char *lab = pv[i].lab;
        if (s->group->check) {
            sample_u(out, "ballast_upstream_server_checks_total", lab, "result", "ok",
                     atomic_load_explicit(&s->state->checks_ok, memory_order_relaxed));
            sample_u(out, "ballast_upstream_server_checks_total", lab, "result", "failed",
                     atomic_load_explicit(&s->state->checks_failed, memory_order_relaxed));
        }
    }
    family(out, "ballast_upstream_server_ejections_total", "counter",
           "Times outlier detection ejected the upstream server (only groups with `outlier`).");
    for (uint32_t i = 0; i < n; i++) {
        const struct bl_upstream_server *s = pv[i].s;
        if (s->group->outlier)
            sample_u(out, "ballast_upstream_server_ejections_total", pv[i].lab, NULL, NULL,
                     atomic_load_explicit(&s->state->ejections_total, memory_order_relaxed));
    }
}

int bl_metrics_render(struct bl_strbuf *out, const struct bl_metrics_source *src)
{
    const struct bl_config *cfg = src->cfg;
    const struct bl_stats_set *set = src->stats;
    if (set->nservers != cfg->nservers || set->nlocations != cfg->nlocations ||
        set->npeers != cfg->nupstream_servers || set->nlistens != cfg->nlistens)
        return BL_ERR; /* a set made for another config */
    struct totals t = {0};
    struct labels l = {0};
    struct peer_view *pv = NULL;
    uint32_t npv = 0;
    int rc = BL_ERR;
    if (totals_sum(&t, set) != BL_OK || labels_build(&l, cfg) != BL_OK)
        goto done;
    render_process(out, src);
    render_workers(out, set);
    render_listens(out, &t, &l);
    render_zones(out, "ballast_http_server", "server block", t.servers, l.server, l.nserver);
    render_zones(out, "ballast_http_location", "location", t.locations, l.location,
                 l.nlocation);
    render_stream(out, cfg, &t);
    pv = calloc(cfg->nupstream_servers + 1, sizeof(*pv));
    if (!pv)
        goto done;
    for (uint32_t g = 0; g < cfg->ngroups; g++)
        for (uint32_t k = 0; k < cfg->groups[g]->nservers; k++) {
            const struct bl_upstream_server *s = &cfg->groups[g]->servers[k];
            pv[npv++] = (struct peer_view){s, l.peer[s->id], &t.peers[(size_t)s->id * PEER_N]};
        }
    render_peer_traffic(out, pv, npv);
    render_peer_state(out, pv, npv, src->now_ms);
    rc = out->failed ? BL_ERR : BL_OK;
done:
    free(pv);
    labels_free(&l);
    totals_free(&t);
    return rc;
}
