/* Stream sessions' counters (TCP and UDP alike): the listen's block of core/stats.h (sessions
 * begun, open, ended by $status, client bytes) and the upstream server's (bytes each way).
 * Worker thread; a worker without stats (sw->stats NULL, unit tests) counts nothing. */
#ifndef BL_STREAM_STREAM_STATS_H
#define BL_STREAM_STREAM_STATS_H

#include "conf/conf.h"
#include "core/stats.h"
#include "stream/stream.h"

static inline struct bl_stats_listen *bl_stream_listen_stats(const struct bl_stream_worker *sw,
                                                             const struct bl_listen *l)
{
    if (!sw->stats || !sw->cfg || l < sw->cfg->listens || l >= sw->cfg->listens + sw->cfg->nlistens)
        return NULL;
    return &sw->stats->listens[l - sw->cfg->listens];
}

/* A session began on l. */
static inline void bl_stream_stats_open(const struct bl_stream_worker *sw,
                                        const struct bl_listen *l)
{
    struct bl_stats_listen *ls = bl_stream_listen_stats(sw, l);
    if (ls) {
        bl_stat_add(&ls->accepted, 1);
        bl_stat_add(&ls->conns, 1);
    }
}

/* The session ended with status; from/to_client: payload bytes; server: the last one it used
 * (NULL: none), which got to_server bytes and sent from_server. */
static inline void bl_stream_stats_close(const struct bl_stream_worker *sw,
                                         const struct bl_listen *l, int status,
                                         uint64_t from_client, uint64_t to_client,
                                         const struct bl_upstream_server *server,
                                         uint64_t to_server, uint64_t from_server)
{
    struct bl_stats_listen *ls = bl_stream_listen_stats(sw, l);
    if (ls) {
        bl_stat_sub(&ls->conns, 1);
        bl_stat_add(&ls->sessions[bl_stats_stream_slot(status)], 1);
        bl_stat_add(&ls->bytes_in, from_client);
        bl_stat_add(&ls->bytes_out, to_client);
    }
    if (server && sw->up && sw->up->stats) {
        bl_stat_add(&sw->up->stats[server->id].bytes_out, to_server);
        bl_stat_add(&sw->up->stats[server->id].bytes_in, from_server);
    }
}

#endif
