/* least_conn: fewest in-flight per weight, ties by smooth round robin; backups, max_conns,
 * down, tried, slow start. Small groups (the scan) first, then large ones (the tree): exact
 * against a reference scan, availability, tried, backups, slow start, spread, self-repair, and
 * worker threads racing (run it under -fsanitize=thread too). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "upstream/balancer_least_conn.c"

#include "balancer_test.h"

/* An idle group ties everywhere: exactly smooth round robin. */
static void test_least_conn_idle_is_round_robin(void **state)
{
    struct tg *t = tg_new(3, (int[]){5, 1, 1}, 0);
    tg_init(t, &bl_balancer_least_conn);
    const char *want = "aabacaaaabacaa";
    for (int i = 0; want[i]; i++)
        assert_int_equal(tg_pick_release(t, 0), want[i] - 'a');
    tg_free(t);
}

static void test_least_conn_idle_spread(void **state)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, &bl_balancer_least_conn);
    unsigned counts[4] = {0};
    for (int i = 0; i < 100000; i++)
        counts[tg_pick_release(t, 0)]++;
    tg_assert_spread(t, counts, 4, 0.0005, "least_conn (idle), weights 1,2,3,4");
    tg_free(t);
}

/* Requests held open: in-flight counts stay proportional to weight, to within one request. */
static void test_least_conn_loaded_spread(void **state)
{
    int w[] = {1, 2, 3, 4};
    struct tg *t = tg_new(4, w, 0);
    tg_init(t, &bl_balancer_least_conn);
    for (int i = 1; i <= 100000; i++) {
        int s = tg_pick(t);
        bl_server_acquire(&t->g.servers[s]);
        if (i % 10 == 0)
            for (int j = 0; j < 4; j++) {
                int a = atomic_load(&t->states[j].active);
                assert_in_range(a, i * w[j] / 10 - w[j], i * w[j] / 10 + w[j]);
            }
    }
    unsigned counts[4];
    for (int j = 0; j < 4; j++)
        counts[j] = (unsigned)atomic_load(&t->states[j].active);
    tg_assert_spread(t, counts, 4, 0.0005, "least_conn (loaded), weights 1,2,3,4");
    tg_free(t);
}

/* A busy server gets nothing until the others catch up. */
static void test_least_conn_prefers_idle(void **state)
{
    struct tg *t = tg_new(3, NULL, 0);
    tg_init(t, &bl_balancer_least_conn);
    atomic_store(&t->states[0].active, 5);
    for (int i = 0; i < 10; i++) {
        int s = tg_pick(t);
        assert_int_not_equal(s, 0);
        bl_server_acquire(&t->g.servers[s]);
    }
    /* now 5, 5, 5: all tied again */
    unsigned counts[3] = {0};
    for (int i = 0; i < 300; i++)
        counts[tg_pick_release(t, 0)]++;
    assert_int_equal(counts[0], 100);
    tg_free(t);
}

static void test_least_conn_backup_max_conns_down(void **state)
{
    struct tg *t = tg_new(5, (int[]){1, 1, 1, 1, 3}, 2);
    t->g.servers[0].max_conns = 1;
    t->g.servers[1].down = 1;
    tg_init(t, &bl_balancer_least_conn);
    atomic_store(&t->states[0].active, 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tg_pick_release(t, 0), 2); /* the only usable primary */
    tg_mark_down(t, 2);
    unsigned counts[5] = {0};
    for (int i = 0; i < 400; i++)
        counts[tg_pick_release(t, 0)]++;
    assert_int_equal(counts[3], 100);
    assert_int_equal(counts[4], 300);
    atomic_store(&t->states[0].active, 0); /* room again: back to the primary */
    assert_int_equal(tg_pick(t), 0);
    tg_free(t);
}

static void test_least_conn_tried(void **state)
{
    struct tg *t = tg_new(4, (int[]){2, 1, 1, 1}, 1);
    tg_init(t, &bl_balancer_least_conn);
    for (int r = 0; r < 100; r++) {
        tg_request(t);
        unsigned seen = 0;
        for (int a = 0; a < 4; a++) {
            struct bl_upstream_server *s = t->ops->pick(&t->p);
            assert_non_null(s);
            assert_false(seen & (1u << s->index));
            if (a < 3)
                assert_true(s->index < 3); /* primaries first */
            seen |= 1u << s->index;
            tg_set_tried(t, s->index);
        }
        assert_null(t->ops->pick(&t->p));
    }
    tg_free(t);
}

/* A ramping server counts as lighter-weighted: an idle group gives it f/(f+3) of the picks. */
static void test_least_conn_slow_start(void **state)
{
    struct tg *t = tg_new(4, NULL, 0);
    t->g.servers[3].slow_start_ms = 30000;
    tg_init(t, &bl_balancer_least_conn);
    uint64_t back = t->p.now_ms;
    atomic_store(&t->states[3].up_since_ms, back);
    for (int step = 0; step <= 30; step += 6) {
        t->p.now_ms = back + (uint64_t)step * 1000;
        unsigned counts[4] = {0};
        for (int i = 0; i < 20000; i++)
            counts[tg_pick_release(t, 0)]++;
        double f = step ? step / 30.0 : 1.0 / BL_WEIGHT_UNIT;
        double want = f / (f + 3), got = counts[3] / 20000.0;
        if (fabs(got - want) > 0.005)
            print_error("%d s into a 30 s ramp: share %.4f, want %.4f\n", step, got, want);
        assert_true(fabs(got - want) <= 0.005);
    }
    tg_free(t);
}


/* ---- large groups: the tree ------------------------------------------------------------- */

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* The caller's side of the contract after an attempt: bl_server_release(), then release(). */
static void lc_done(struct tg *t, struct bl_upstream_server *s)
{
    bl_server_release(s);
    struct bl_pick_feedback fb = {200, 0, 1000, 0};
    t->ops->release(&t->p, s, &fb);
}

/* Picked, not attempted: release() with fb == NULL and no acquire. */
static void lc_not_attempted(struct tg *t, struct bl_upstream_server *s)
{
    t->ops->release(&t->p, s, NULL);
}

static int64_t ew_of(struct tg *t, uint32_t i)
{
    return (int64_t)bl_server_effective_weight(&t->g.servers[i], t->p.now_ms);
}

/* What the answer must be, by brute force: the least in-flight per effective weight among the
 * available servers this request has not tried, primaries first. Returns 0 (a primary), 1 (a
 * backup) or -1 (none), and the least ratio as *ra / *re. */
static int ref_least(struct tg *t, int64_t *ra, int64_t *re)
{
    uint32_t range[3] = {0, t->g.nprimary, t->g.nservers};
    for (int cls = 0; cls < 2; cls++) {
        int found = 0;
        for (uint32_t i = range[cls]; i < range[cls + 1]; i++) {
            struct bl_upstream_server *s = &t->g.servers[i];
            if (bl_pick_tried(&t->p, i) || !bl_server_available(s, t->p.now_ms))
                continue;
            int64_t a = lc_active(s), e = ew_of(t, i);
            if (!found || a * *re < *ra * e) {
                *ra = a;
                *re = e;
                found = 1;
            }
        }
        if (found)
            return cls;
    }
    return -1;
}

/* s is what pick() just returned for t->p: it must be a least loaded server (exact). */
static void assert_least(struct tg *t, struct bl_upstream_server *s)
{
    int64_t ra = 0, re = 1;
    int cls = ref_least(t, &ra, &re);
    if (cls < 0) {
        assert_null(s);
        return;
    }
    assert_non_null(s);
    assert_false(bl_pick_tried(&t->p, s->index));
    assert_true(bl_server_available(s, t->p.now_ms));
    assert_int_equal(s->index >= t->g.nprimary, cls);
    int64_t a = lc_active(s), e = ew_of(t, s->index);
    if (a * re != ra * e)
        print_error("picked server %u at %lld/%lld in flight per weight unit, the least is "
                    "%lld/%lld\n", s->index, (long long)a, (long long)e, (long long)ra,
                    (long long)re);
    assert_true(a * re == ra * e);
}

/* The tree matches the live state: every leaf out of the parked set holds the server's live key,
 * every node the first of its children, and no parked server could be back in the tree. */
static void assert_tree_consistent(struct tg *t)
{
    struct lc_tree *tr = t->g.balancer_data;
    assert_non_null(tr);
    for (uint32_t i = 0; i < tr->n; i++) {
        struct bl_upstream_server *s = &t->g.servers[i];
        uint64_t k = lc_load(&lc_leaf(tr, i)->key);
        if (lc_is_parked(tr, i)) {
            assert_int_equal(k, LC_LAST);
            assert_false(lc_can_unpark(s, t->p.now_ms) && !s->down);
            continue;
        }
        if (k != lc_live_key(s, (uint64_t)lc_active(s)))
            print_error("leaf %u: key %#llx, live %#llx\n", i, (unsigned long long)k,
                        (unsigned long long)lc_live_key(s, (uint64_t)lc_active(s)));
        assert_int_equal(k, lc_live_key(s, (uint64_t)lc_active(s)));
        assert_int_equal(lc_load(&lc_leaf(tr, i)->tag) & tr->index_mask, i);
    }
    for (uint32_t k = tr->nleaves - 1; k >= 1; k--)
        assert_int_equal(lc_recompute(tr->node, k), 0);
}

/* n servers with weights drawn from w_max (and a few heavy ones), the last nbackup backups. */
static struct tg *lc_big(uint32_t n, uint32_t nbackup, int w_max, uint64_t *seed)
{
    int *w = calloc(n, sizeof(*w));
    for (uint32_t i = 0; i < n; i++)
        w[i] = rnd(seed) % 50 == 0 ? 1 + (int)(rnd(seed) % BL_WEIGHT_MAX)
                                   : 1 + (int)(rnd(seed) % (uint64_t)w_max);
    struct tg *t = tg_new(n, w, nbackup);
    free(w);
    return t;
}

/* 1000 servers (weights 1..10, a few up to 10^6), random in-flight counts, max_conns, config
 * `down`, slow start; then a random walk of new requests, retries, attempts not made,
 * releases, health flips (check_down, down_until with and without a ramp after it) and time
 * passing. Every pick equals the reference's least ratio. */
static void test_least_conn_tree_exact_random(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    const uint32_t n = 1004, nb = 4;
    struct tg *t = lc_big(n, nb, 10, &seed);
    for (uint32_t i = 0; i < n; i++) {
        struct bl_upstream_server *s = &t->g.servers[i];
        atomic_store(&t->states[i].active, (int32_t)(rnd(&seed) % 40));
        if (rnd(&seed) % 20 == 0)
            s->max_conns = 1 + (int)(rnd(&seed) % 40);
        if (rnd(&seed) % 100 == 0)
            s->down = 1;
        if (rnd(&seed) % 30 == 0) {
            s->slow_start_ms = 30000;
            atomic_store(&t->states[i].up_since_ms, 1000000 - rnd(&seed) % 40000);
        }
    }
    tg_init(t, &bl_balancer_least_conn);
    assert_non_null(t->g.balancer_data); /* the tree */
    struct bl_upstream_server **held = calloc(8192, sizeof(*held));
    uint32_t nheld = 0, picks = 0;
    for (int step = 0; step < 60000; step++) {
        uint64_t r = rnd(&seed) % 100;
        if (r < 40 || (r < 70 && !nheld)) { /* a new request */
            struct bl_upstream_server *s = (tg_request(t), t->ops->pick(&t->p));
            assert_least(t, s);
            picks++;
            if (!s)
                continue;
            bl_server_acquire(s);
            if (nheld == 8192) {
                uint32_t j = (uint32_t)(rnd(&seed) % nheld);
                lc_done(t, held[j]);
                held[j] = held[--nheld];
            }
            held[nheld++] = s;
        } else if (r < 50) { /* a retry, after 1-3 servers (often the best ones) */
            tg_request(t);
            for (int k = 0; k < 1 + (int)(rnd(&seed) % 3); k++) {
                struct bl_upstream_server *s = t->ops->pick(&t->p);
                assert_least(t, s);
                picks++;
                if (!s)
                    break;
                lc_not_attempted(t, s);
                tg_set_tried(t, rnd(&seed) % 2 ? s->index : (uint32_t)(rnd(&seed) % n));
            }
            struct bl_upstream_server *s = t->ops->pick(&t->p);
            assert_least(t, s);
            if (s)
                lc_not_attempted(t, s);
        } else if (r < 70) { /* a request ends */
            uint32_t j = (uint32_t)(rnd(&seed) % nheld);
            lc_done(t, held[j]);
            held[j] = held[--nheld];
        } else if (r < 90) { /* health changes, no hook */
            uint32_t i = (uint32_t)(rnd(&seed) % n);
            struct bl_server_state *st = &t->states[i];
            switch (rnd(&seed) % 4) {
            case 0:
                atomic_store(&st->check_down, !atomic_load(&st->check_down));
                break;
            case 1:
                atomic_store(&st->down_until_ms, t->p.now_ms + rnd(&seed) % 20000);
                break;
            case 2:
                atomic_store(&st->down_until_ms, 0);
                break;
            default: /* back from a failure window, ramping if it has slow_start */
                atomic_store(&st->down_until_ms, 0);
                atomic_store(&st->up_since_ms, t->p.now_ms);
                break;
            }
        } else {
            t->p.now_ms += rnd(&seed) % 3000;
        }
    }
    while (nheld)
        lc_done(t, held[--nheld]);
    print_message("[ TREE     ] %u picks checked against the scan\n", picks);
    free(held);
    tg_free(t);
}

/* A server that goes down is passed over at once; one that comes back (check cleared, failure
 * window over, slot freed) is used again at once. */
static void test_least_conn_tree_availability(void **state)
{
    struct tg *t = tg_new(100, NULL, 0);
    t->g.servers[7].max_conns = 2;
    for (uint32_t i = 0; i < 100; i++)
        atomic_store(&t->states[i].active, i == 7 ? 0 : 5);
    tg_init(t, &bl_balancer_least_conn);

    struct bl_upstream_server *s7 = &t->g.servers[7];
    struct bl_upstream_server *x = (tg_request(t), t->ops->pick(&t->p));
    assert_ptr_equal(x, s7);
    lc_not_attempted(t, x);
    atomic_store(&t->states[7].check_down, 1);
    for (int i = 0; i < 10; i++) {
        int s = tg_pick_release(t, 0);
        assert_int_not_equal(s, 7);
        assert_int_not_equal(s, -1);
    }
    atomic_store(&t->states[7].check_down, 0);
    assert_int_equal(tg_pick_release(t, 0), 7);

    atomic_store(&t->states[7].down_until_ms, t->p.now_ms + 5000);
    assert_int_not_equal(tg_pick_release(t, 0), 7);
    t->p.now_ms += 5000;
    assert_int_equal(tg_pick_release(t, 0), 7);

    /* max_conns=2: two requests, then full until one ends */
    struct bl_upstream_server *a = (tg_request(t), t->ops->pick(&t->p));
    assert_ptr_equal(a, s7);
    bl_server_acquire(a);
    struct bl_upstream_server *b = (tg_request(t), t->ops->pick(&t->p));
    assert_ptr_equal(b, s7);
    bl_server_acquire(b);
    for (int i = 0; i < 20; i++) {
        struct bl_upstream_server *c = (tg_request(t), t->ops->pick(&t->p));
        assert_ptr_not_equal(c, s7);
        assert_least(t, c);
        bl_server_acquire(c);
        lc_done(t, c);
    }
    lc_done(t, a);
    assert_int_equal(tg_pick_release(t, 0), 7);
    lc_done(t, b);
    assert_tree_consistent(t);
    tg_free(t);
}

/* One request trying everything: every primary once, least loaded first, then the backups,
 * then nothing. */
static void test_least_conn_tree_tried_backups(void **state)
{
    uint64_t seed = 42;
    struct tg *t = lc_big(43, 3, 5, &seed);
    for (uint32_t i = 0; i < 43; i++)
        atomic_store(&t->states[i].active, (int32_t)(rnd(&seed) % 6));
    tg_init(t, &bl_balancer_least_conn);
    struct bl_upstream_server *got[43];
    for (int r = 0; r < 20; r++) {
        tg_request(t);
        for (uint32_t a = 0; a < 43; a++) {
            got[a] = t->ops->pick(&t->p);
            assert_least(t, got[a]);
            assert_true((got[a]->index < 40) == (a < 40)); /* primaries first */
            tg_set_tried(t, got[a]->index);
        }
        assert_null(t->ops->pick(&t->p));
        for (uint32_t a = 0; a < 43; a++)
            lc_not_attempted(t, got[a]);
    }
    /* every primary down: the backups, least loaded first; one primary back: that one */
    for (uint32_t i = 0; i < 40; i++)
        atomic_store(&t->states[i].check_down, 1);
    for (int i = 0; i < 30; i++) {
        struct bl_upstream_server *s = (tg_request(t), t->ops->pick(&t->p));
        assert_least(t, s);
        assert_true(s->backup);
        bl_server_acquire(s);
        got[i % 3] = s;
        if (i % 3 == 2)
            for (int j = 0; j < 3; j++)
                lc_done(t, got[j]);
    }
    atomic_store(&t->states[17].check_down, 0);
    assert_int_equal(tg_pick_release(t, 0), 17);
    tg_free(t);
}

/* Idle (every pick released at once): the tags spread picks exactly by weight, and smoothly:
 * each server's count stays within one pick of its share at every point. */
static void test_least_conn_tree_idle_spread(void **state)
{
    const uint32_t n = 1000;
    int *w = calloc(n, sizeof(*w));
    for (uint32_t i = 0; i < n; i++)
        w[i] = 1 + (int)(i % 4);
    struct tg *t = tg_new(n, w, 0);
    tg_init(t, &bl_balancer_least_conn);
    unsigned *counts = calloc(n, sizeof(*counts));
    int wsum = tg_total_weight(t, 0, n);
    double worst = 0;
    for (int k = 1; k <= 100 * wsum; k++) {
        int s = tg_pick_release(t, 0);
        assert_in_range(s, 0, n - 1);
        counts[s]++;
        if (k % 997 == 0 || k % wsum == 0)
            for (uint32_t i = 0; i < n; i++) {
                double dev = fabs(counts[i] - (double)k * w[i] / wsum);
                worst = dev > worst ? dev : worst;
            }
    }
    print_message("[ SPREAD   ] least_conn tree (idle), 1000 servers, weights 1-4: largest lag "
                  "%.3f picks\n", worst);
    assert_true(worst <= 1.0 + 1e-9);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(counts[i], 100 * (unsigned)w[i]);
    free(counts);
    free(w);

    struct tg *u = tg_new(16, (int[]){1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}, 0);
    tg_init(u, &bl_balancer_least_conn);
    unsigned c16[16] = {0};
    for (int i = 0; i < 100000; i++)
        c16[tg_pick_release(u, 0)]++;
    tg_assert_spread(u, c16, 16, 0.0005, "least_conn tree (idle), 16 servers, weights 1-4");
    tg_free(u);
    tg_free(t);
}

/* Requests held open: in-flight per weight never differs by more than one request between
 * servers (it is exact). */
static void test_least_conn_tree_loaded_spread(void **state)
{
    const uint32_t n = 1000;
    int *w = calloc(n, sizeof(*w));
    for (uint32_t i = 0; i < n; i++)
        w[i] = 1 + (int)(i % 4);
    struct tg *t = tg_new(n, w, 0);
    tg_init(t, &bl_balancer_least_conn);
    for (int k = 1; k <= 30000; k++) {
        struct bl_upstream_server *s = (tg_request(t), t->ops->pick(&t->p));
        assert_non_null(s);
        bl_server_acquire(s);
        if (k % 1000 == 0) {
            double lo = 1e9, hi = 0;
            for (uint32_t i = 0; i < n; i++) {
                double r = (double)atomic_load(&t->states[i].active) / w[i];
                lo = r < lo ? r : lo;
                hi = r > hi ? r : hi;
            }
            assert_true(hi - lo <= 1.0);
        }
    }
    tg_free(t);
    free(w);
}

/* A ramping server counts as lighter-weighted (parked, read live); once ramped, it is back in
 * the tree. */
static void test_least_conn_tree_slow_start(void **state)
{
    struct tg *t = tg_new(32, NULL, 0);
    t->g.servers[31].slow_start_ms = 30000;
    tg_init(t, &bl_balancer_least_conn);
    uint64_t back = t->p.now_ms;
    atomic_store(&t->states[31].up_since_ms, back);
    for (int step = 0; step <= 30; step += 6) {
        t->p.now_ms = back + (uint64_t)step * 1000;
        unsigned counts[32] = {0};
        for (int i = 0; i < 64000; i++)
            counts[tg_pick_release(t, 0)]++;
        double f = step ? step / 30.0 : 1.0 / BL_WEIGHT_UNIT;
        double want = f / (f + 31), got = counts[31] / 64000.0;
        if (fabs(got - want) > 0.002)
            print_error("%d s into a 30 s ramp: share %.4f, want %.4f\n", step, got, want);
        assert_true(fabs(got - want) <= 0.002);
        assert_int_equal(lc_is_parked(t->g.balancer_data, 31), step < 30);
    }
    assert_tree_consistent(t);
    tg_free(t);
}

/* Damage the tree (counts changed behind its back both ways, scribbled nodes, parked bits lost
 * and invented): within a few passes of picks it is consistent again, and exact. */
static void test_least_conn_tree_self_heals(void **state)
{
    uint64_t seed = 7;
    const uint32_t n = 1000;
    struct tg *t = lc_big(n, 0, 8, &seed);
    tg_init(t, &bl_balancer_least_conn);
    struct lc_tree *tr = t->g.balancer_data;
    for (uint32_t i = 0; i < 50; i++)
        atomic_store(&t->states[(i * 37) % n].check_down, 1);
    for (int i = 0; i < 5000; i++)
        tg_pick_release(t, 0);
    /* The winner's count raised behind its back: exact at once, as it is checked live. */
    for (int i = 0; i < 200; i++) {
        uint32_t top = (uint32_t)(lc_load(&tr->node[1].tag) & tr->index_mask);
        atomic_fetch_add(&t->states[top].active, 1 + i % 3); /* no hook */
        struct bl_upstream_server *s = (tg_request(t), t->ops->pick(&t->p));
        assert_least(t, s);
        assert_int_not_equal(s->index, top);
        bl_server_acquire(s);
        lc_done(t, s);
    }
    for (uint32_t i = 0; i < 200; i++) {
        uint32_t j = (uint32_t)(rnd(&seed) % n);
        atomic_store(&t->states[j].active, (int32_t)(rnd(&seed) % 20));
    }
    for (uint32_t i = 0; i < 300; i++) {
        uint32_t k = 1 + (uint32_t)(rnd(&seed) % (tr->nleaves - 1));
        lc_store(&tr->node[k].key, rnd(&seed));
        lc_store(&tr->node[k].tag, rnd(&seed));
    }
    atomic_store(&tr->parked[0], 0);
    atomic_store(&tr->parked[3], ~0ull);
    for (uint32_t i = 0; i < 3 * tr->nleaves; i++) {
        struct bl_upstream_server *s = (tg_request(t), t->ops->pick(&t->p));
        assert_non_null(s);
        assert_true(bl_server_available(s, t->p.now_ms));
        bl_server_acquire(s);
        lc_done(t, s);
    }
    assert_tree_consistent(t);
    for (int i = 0; i < 3000; i++) {
        struct bl_upstream_server *s = (tg_request(t), t->ops->pick(&t->p));
        assert_least(t, s);
        bl_server_acquire(s);
        if (i % 2)
            lc_done(t, s);
    }
    tg_free(t);
}

/* Worker threads racing on one group while another flips health. */
#define LC_THREADS 4
#define LC_N 600

struct lc_race {
    struct tg *t;
    _Atomic int stop;
    _Atomic unsigned long picks, nulls, bad;
};

struct lc_racer {
    struct lc_race *race;
    uint64_t seed;
};

static void *lc_race_worker(void *arg)
{
    struct lc_racer *me = arg;
    struct lc_race *r = me->race;
    struct tg *t = r->t;
    void *wstate = calloc(1, t->ops->worker_size(&t->g));
    t->ops->worker_init(&t->g, wstate);
    uint8_t tried[LC_N / 8 + 1];
    struct bl_pick p = {.group = &t->g, .wstate = wstate, .now_ms = 1000000, .tried = tried};
    struct bl_upstream_server *held[64] = {0};
    struct bl_pick_feedback fb = {200, 0, 1000, 0};
    unsigned long picks = 0;
    for (uint32_t k = 0; !atomic_load(&r->stop) || k < 20000; k++) {
        memset(tried, 0, sizeof(tried));
        int retry = rnd(&me->seed) % 8 == 0;
        if (retry)
            for (int j = 0; j < 3; j++) {
                uint32_t i = (uint32_t)(rnd(&me->seed) % LC_N);
                tried[i >> 3] |= (uint8_t)(1u << (i & 7));
            }
        struct bl_upstream_server *s = t->ops->pick(&p);
        picks++;
        if (!s) {
            atomic_fetch_add(&r->nulls, 1);
            continue;
        }
        /* never a server that is out for the whole run, nor one this request tried */
        if (s->down || s->index % 10 == 3 || bl_pick_tried(&p, s->index))
            atomic_fetch_add(&r->bad, 1);
        if (rnd(&me->seed) % 16 == 0) {
            t->ops->release(&p, s, NULL);
            continue;
        }
        bl_server_acquire(s);
        uint32_t slot = (uint32_t)(rnd(&me->seed) % 64);
        if (held[slot]) {
            bl_server_release(held[slot]);
            t->ops->release(&p, held[slot], &fb);
        }
        held[slot] = s;
    }
    for (int j = 0; j < 64; j++)
        if (held[j]) {
            bl_server_release(held[j]);
            t->ops->release(&p, held[j], &fb);
        }
    atomic_fetch_add(&r->picks, picks);
    free(wstate);
    return NULL;
}

static void *lc_race_flipper(void *arg)
{
    struct lc_racer *me = arg;
    struct lc_race *r = me->race;
    while (!atomic_load(&r->stop)) {
        uint32_t i = (uint32_t)(rnd(&me->seed) % LC_N);
        if (i % 10 != 7)
            continue; /* the flappers */
        struct bl_server_state *st = &r->t->states[i];
        if (rnd(&me->seed) % 2)
            atomic_store(&st->check_down, !atomic_load(&st->check_down));
        else
            atomic_store(&st->down_until_ms, atomic_load(&st->down_until_ms) ? 0 : UINT64_MAX);
    }
    return NULL;
}

static void test_least_conn_tree_threads(void **state)
{
    uint64_t seed = 99;
    struct tg *t = lc_big(LC_N, 2, 6, &seed);
    for (uint32_t i = 0; i < LC_N - 2; i++) {
        struct bl_upstream_server *s = &t->g.servers[i];
        if (i % 10 == 3)
            atomic_store(&t->states[i].check_down, 1); /* out all along */
        if (i % 10 == 5)
            s->max_conns = 3;
        if (i % 50 == 9)
            s->down = 1;
        if (i % 10 == 1) {
            s->slow_start_ms = 1000000;
            atomic_store(&t->states[i].up_since_ms, 1000000 - 500000);
        }
    }
    tg_init(t, &bl_balancer_least_conn);
    struct lc_race race = {.t = t};
    struct lc_racer racers[LC_THREADS + 1];
    pthread_t th[LC_THREADS + 1];
    for (int i = 0; i <= LC_THREADS; i++) {
        racers[i] = (struct lc_racer){&race, 0x1234567ull * (uint64_t)(i + 1)};
        assert_int_equal(pthread_create(&th[i], NULL, i < LC_THREADS ? lc_race_worker
                                                                      : lc_race_flipper,
                                        &racers[i]), 0);
    }
    struct timespec d = {0, 300 * 1000 * 1000};
    nanosleep(&d, NULL);
    atomic_store(&race.stop, 1);
    for (int i = 0; i <= LC_THREADS; i++)
        pthread_join(th[i], NULL);
    print_message("[ RACE     ] %d threads, %lu picks, %lu none, %lu bad\n", LC_THREADS,
                  atomic_load(&race.picks), atomic_load(&race.nulls), atomic_load(&race.bad));
    assert_int_equal(atomic_load(&race.bad), 0);
    assert_int_equal(atomic_load(&race.nulls), 0); /* plenty of servers up all along */
    for (uint32_t i = 0; i < LC_N; i++)
        assert_int_equal(atomic_load(&t->states[i].active), 0);

    /* Quiet again: a few passes of picks, and the tree is consistent and exact. */
    struct lc_tree *tr = t->g.balancer_data;
    for (uint32_t i = 0; i < 3 * tr->nleaves; i++) {
        struct bl_upstream_server *s = (tg_request(t), t->ops->pick(&t->p));
        assert_non_null(s);
        bl_server_acquire(s);
        lc_done(t, s);
    }
    assert_tree_consistent(t);
    for (int i = 0; i < 3000; i++) {
        struct bl_upstream_server *s = (tg_request(t), t->ops->pick(&t->p));
        assert_least(t, s);
        bl_server_acquire(s);
        if (i % 3)
            lc_done(t, s);
    }
    tg_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_least_conn_idle_is_round_robin),
        cmocka_unit_test(test_least_conn_idle_spread),
        cmocka_unit_test(test_least_conn_loaded_spread),
        cmocka_unit_test(test_least_conn_prefers_idle),
        cmocka_unit_test(test_least_conn_backup_max_conns_down),
        cmocka_unit_test(test_least_conn_tried),
        cmocka_unit_test(test_least_conn_slow_start),
        cmocka_unit_test(test_least_conn_tree_exact_random),
        cmocka_unit_test(test_least_conn_tree_availability),
        cmocka_unit_test(test_least_conn_tree_tried_backups),
        cmocka_unit_test(test_least_conn_tree_idle_spread),
        cmocka_unit_test(test_least_conn_tree_loaded_spread),
        cmocka_unit_test(test_least_conn_tree_slow_start),
        cmocka_unit_test(test_least_conn_tree_self_heals),
        cmocka_unit_test(test_least_conn_tree_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
