/* Statistics carried over a reload: the flat sum of a set (workers and base) and the carry of
 * kept objects' counters into the new set's base, by the reload's identity map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>

#include "core/stats.h"

#include "assert_eq.h"

#define NONE UINT32_MAX

static void test_sum_covers_workers_and_base(void **state)
{
    (void)state;
    struct bl_stats_set *s = bl_stats_create(2, 2, 1, 2, 1);
    assert_non_null(s);
    bl_stat_add(&s->workers[0]->peers[1].retries, 3);
    bl_stat_add(&s->workers[1]->peers[1].retries, 4);
    bl_stat_add(&s->base->peers[1].retries, 10);
    bl_stat_add(&s->workers[1]->listens[0].accepted, 5);
    uint64_t *sum = bl_stats_sum(s);
    assert_non_null(sum);
    size_t zone = sizeof(struct bl_stats_zone) / sizeof(bl_counter);
    size_t peer = sizeof(struct bl_stats_peer) / sizeof(bl_counter);
    size_t at = 3 * zone + peer + offsetof(struct bl_stats_peer, retries) / sizeof(bl_counter);
    ASSERT_EQ(sum[at], 17);
    ASSERT_EQ(sum[3 * zone + 2 * peer], 5); /* listens[0].accepted is its first counter */
    ASSERT_EQ(bl_stats_ncounters(s), 3 * zone + 2 * peer +
                                         sizeof(struct bl_stats_listen) / sizeof(bl_counter));
    free(sum);
    bl_stats_free(s);
}

static void test_carry_by_map(void **state)
{
    (void)state;
    struct bl_stats_set *old = bl_stats_create(2, 2, 1, 3, 2);
    struct bl_stats_set *new = bl_stats_create(2, 1, 2, 2, 1);
    assert_non_null(old);
    assert_non_null(new);
    bl_stat_add(&old->workers[0]->servers[1].requests[1], 7);
    bl_stat_add(&old->workers[1]->servers[0].requests[1], 99); /* server 0 goes away */
    bl_stat_add(&old->workers[0]->locations[0].bytes_out, 50);
    bl_stat_add(&old->workers[1]->peers[2].responses[1], 11);
    bl_stat_add(&old->workers[0]->peers[0].responses[1], 5);
    bl_stat_add(&old->workers[0]->listens[1].conns, 2);    /* a gauge carries too */
    bl_stat_add(&old->workers[1]->peers[2].header_time.buckets[3], 4);

    uint32_t servers[] = {NONE, 0}, locations[] = {1}, peers[] = {1, NONE, 0},
             listens[] = {NONE, 0};
    struct bl_stats_map map = {servers, locations, peers, listens};
    uint64_t *snap = bl_stats_sum(old);
    bl_stats_carry(new, old, snap, NULL, &map);
    ASSERT_EQ(bl_stat_load(&new->base->servers[0].requests[1]), 7);
    ASSERT_EQ(bl_stat_load(&new->base->locations[1].bytes_out), 50);
    ASSERT_EQ(bl_stat_load(&new->base->locations[0].bytes_out), 0);
    ASSERT_EQ(bl_stat_load(&new->base->peers[0].responses[1]), 11);
    ASSERT_EQ(bl_stat_load(&new->base->peers[1].responses[1]), 5);
    ASSERT_EQ(bl_stat_load(&new->base->peers[0].header_time.buckets[3]), 4);
    ASSERT_EQ(bl_stat_load(&new->base->listens[0].conns), 2);

    /* The old generation goes on counting until its last request ends (and the gauge drops);
     * at its end, only what it counted since the snapshot is added. */
    bl_stat_add(&old->workers[1]->peers[2].responses[1], 1);
    bl_stat_sub(&old->workers[0]->listens[1].conns, 2);
    uint64_t *fin = bl_stats_sum(old);
    bl_stats_carry(new, old, fin, snap, &map);
    ASSERT_EQ(bl_stat_load(&new->base->peers[0].responses[1]), 12);
    ASSERT_EQ(bl_stat_load(&new->base->servers[0].requests[1]), 7);
    ASSERT_EQ((int64_t)bl_stat_load(&new->base->listens[0].conns), 0);
    free(snap);
    free(fin);
    bl_stats_free(old);
    bl_stats_free(new);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_covers_workers_and_base),
        cmocka_unit_test(test_carry_by_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
