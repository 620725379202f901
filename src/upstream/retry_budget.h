/* Retry budget (Envoy's retry_budget): retries in flight to a group may not exceed a share of
 * the group's requests in flight, so a failing tier is not hit by a retry storm.
 *
 * Directive (upstream block):  retry_budget PERCENT[%] [min=N];
 *   PERCENT 1..100; min=N (default 3, 0..1000000) retries are always allowed in flight, so a
 *   quiet group can still retry. Without the directive every retry is allowed.
 *
 * Contract (worker threads): before each retry (an attempt after the request's first), the
 * proxy calls bl_retry_acquire(g). On 0 it does not retry (the request fails with what the last
 * attempt got). On 1 it makes the retry and calls bl_retry_release(g) exactly once when that
 * retry attempt ends, on every path; a further retry acquires again. The pairing holds with or
 * without a budget (retries are counted either way, for statistics and so a budget added by a
 * reload sees the true count).
 */
#ifndef BL_UPSTREAM_RETRY_BUDGET_H
#define BL_UPSTREAM_RETRY_BUDGET_H

#include <stddef.h>

#include "upstream/upstream.h"

/* Parses the directive's arguments (without its name) into g->retry_budget_percent and
 * g->retry_budget_min. Returns BL_OK, or BL_ERR with err filled, without file:line:
 *   invalid value "0" in "retry_budget" directive     invalid parameter "max=3"
 *   "retry_budget" directive is duplicate              invalid number of arguments in ...
 * Control thread (config compile). */
int bl_retry_budget_parse(struct bl_upstream_group *g, char *const *args, int nargs, char *err,
                          size_t errlen);

/* 1: the retry may go (counted in g->gstate->retries: call bl_retry_release() when it ends);
 * 0: refused, because retries in flight >= max(min, percent x g->gstate->active / 100), with
 * active as it stands at the call. A refusal is logged at warn, at most once a second per group
 * (groups beyond the 256th share a rate-limit slot with an earlier one). Uses the thread's
 * cached clock (bl_clock_ms). */
int bl_retry_acquire(struct bl_upstream_group *g);

/* The retry admitted by bl_retry_acquire() has ended. */
void bl_retry_release(struct bl_upstream_group *g);

#endif
