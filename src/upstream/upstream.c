/* Server availability and passive health (max_fails / fail_timeout, nginx semantics). */
#include "upstream/upstream.h"
#include "upstream/outlier.h"

int bl_server_available(const struct bl_upstream_server *s, uint64_t now_ms)
{
    if (s->down)
        return 0;
    /* Active health checks' verdict (health_check.c writes it). */
    if (atomic_load_explicit(&s->state->check_down, memory_order_relaxed))
        return 0;
    uint64_t until = atomic_load_explicit(&s->state->down_until_ms, memory_order_relaxed);
    if (until && now_ms < until)
        return 0;
    if (s->max_conns &&
        atomic_load_explicit(&s->state->active, memory_order_relaxed) >= s->max_conns)
        return 0;
    /* Last: the only check that may write (an ejection that just ended moves to probation). */
    if (s->group->outlier && !bl_outlier_admit(s, now_ms))
        return 0;
    return 1;
}

void bl_server_report(struct bl_upstream_server *s, int failed, uint64_t now_ms)
{
    struct bl_server_state *st = s->state;
    if (!failed) {
        /* nginx forgets the failures of a window once a request succeeds after it ended. */
        if (atomic_load_explicit(&st->fails, memory_order_relaxed) &&
            now_ms >= atomic_load_explicit(&st->fail_window_ms, memory_order_relaxed) +
                          s->fail_timeout_ms)
            atomic_store_explicit(&st->fails, 0, memory_order_relaxed);
        return;
    }
    if (s->max_fails == 0)
        return;
    uint64_t start = atomic_load_explicit(&st->fail_window_ms, memory_order_relaxed);
    if (now_ms >= start + s->fail_timeout_ms) {
        atomic_store_explicit(&st->fail_window_ms, now_ms, memory_order_relaxed);
        atomic_store_explicit(&st->fails, 0, memory_order_relaxed);
    }
    uint32_t n = atomic_fetch_add_explicit(&st->fails, 1, memory_order_relaxed) + 1;
    if (n >= (uint32_t)s->max_fails) {
        atomic_store_explicit(&st->down_until_ms, now_ms + s->fail_timeout_ms,
                              memory_order_relaxed);
        atomic_store_explicit(&st->up_since_ms, now_ms + s->fail_timeout_ms,
                              memory_order_relaxed);
    }
}
