/* Prometheus metrics: renders every counter of a running config in the text exposition format
 * 0.0.4 (the `GET /metrics` answer of the admin listener). docs/operations.md, "Metrics",
 * lists the metrics.
 *
 * What it reads and why it never blocks a worker: the per-worker counter blocks
 * (core/stats.h) with relaxed atomic loads, summed here; the shared per-server state
 * (upstream.h: health, ejections, check results) with relaxed loads; the process registry.
 * It takes no lock and writes nothing a worker reads, so a scrape costs the workers nothing
 * but the cache misses of lines they own; a worker may run ahead of the scrape by a few
 * increments. It allocates only the caller's buffer and scratch memory of its own.
 */
#ifndef BL_ADMIN_METRICS_H
#define BL_ADMIN_METRICS_H

#include <stdint.h>

struct bl_config;
struct bl_stats_set;
struct bl_strbuf;

/* The content type of the answer. */
#define BL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct bl_metrics_source {
    const struct bl_config *cfg;          /* the config serving now */
    const struct bl_stats_set *stats;     /* its workers' counters (made for cfg) */
    const char *version;                  /* ballast's version, for ballast_build_info */
    uint64_t now_ms;                      /* monotonic clock (bl_clock_ms scale): server
                                           * states and uptime */
};

/* Appends the whole exposition to out. BL_OK, or BL_ERR when out of memory (out->failed, or
 * scratch memory): the text is then incomplete and must not be served. Any thread; src's
 * config and set must stay alive for the call. */
int bl_metrics_render(struct bl_strbuf *out, const struct bl_metrics_source *src);

/* Appends value to out escaped as a label value of the text format (backslash, double quote
 * and line feed escaped), without the quotes. */
void bl_metrics_escape(struct bl_strbuf *out, const char *value);

#endif
