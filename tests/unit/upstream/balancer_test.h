/* Shared by the balancer tests: groups of N servers built in memory with fresh state, a pick
 * context, spread counting, and assertions that print both values. Include after cmocka.h
 * and after the balancer .c under test. */
#ifndef BL_TEST_BALANCER_TEST_H
#define BL_TEST_BALANCER_TEST_H

#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "upstream/balancer.h"

#define TG_MAX 4096

struct tg {
    struct bl_upstream_group g;
    struct bl_server_state *states;
    char (*names)[64];
    void *wstate;
    uint8_t tried[TG_MAX / 8];
    struct bl_pick p;
    const struct bl_balancer_ops *ops;
    char err[256];
};

/* n servers named names[i] (NULL: "10.0.0.<i>:80" style) with weights w[i] (NULL: 1); the last
 * nbackup are backups. Not yet initialised: set fields, then tg_init(). */
static inline struct tg *tg_new_named(uint32_t n, const char *const *names, const int *w,
                                      uint32_t nbackup)
{
    struct tg *t = calloc(1, sizeof(*t));
    t->g.name = "test";
    t->g.servers = calloc(n, sizeof(*t->g.servers));
    t->states = calloc(n, sizeof(*t->states));
    t->names = calloc(n, sizeof(*t->names));
    t->g.gstate = calloc(1, sizeof(*t->g.gstate));
    t->g.nservers = n;
    t->g.nprimary = n - nbackup;
    for (uint32_t i = 0; i < n; i++) {
        struct bl_upstream_server *s = &t->g.servers[i];
        if (names)
            snprintf(t->names[i], sizeof(t->names[i]), "%s", names[i]);
        else
            snprintf(t->names[i], sizeof(t->names[i]), "10.0.%u.%u:80", i / 250, i % 250 + 1);
        s->name = t->names[i];
        s->weight = w ? w[i] : 1;
        s->max_fails = 1;
        s->fail_timeout_ms = 10000;
        s->backup = i >= n - nbackup;
        s->index = i;
        s->id = i;
        s->state = &t->states[i];
        s->group = &t->g;
    }
    return t;
}

static inline struct tg *tg_new(uint32_t n, const int *w, uint32_t nbackup)
{
    return tg_new_named(n, NULL, w, nbackup);
}

/* init() (must succeed) and worker state; picks start at now_ms = 1000000. */
static inline void tg_init(struct tg *t, const struct bl_balancer_ops *ops)
{
    t->ops = ops;
    t->g.balancer = ops;
    int rc = ops->init(&t->g, t->err, sizeof(t->err));
    if (rc != BL_OK)
        print_error("init failed: %s\n", t->err);
    assert_int_equal(rc, BL_OK);
    size_t size = ops->worker_size ? ops->worker_size(&t->g) : 0;
    t->wstate = calloc(1, size ? size : 1);
    if (ops->worker_init)
        ops->worker_init(&t->g, t->wstate);
    t->p.group = &t->g;
    t->p.wstate = t->wstate;
    t->p.now_ms = 1000000;
    t->p.tried = t->tried;
}

/* init() must fail; returns the message. */
static inline const char *tg_init_fails(struct tg *t, const struct bl_balancer_ops *ops)
{
    t->g.balancer = ops;
    int rc = ops->init(&t->g, t->err, sizeof(t->err));
    assert_int_equal(rc, BL_ERR);
    return t->err;
}

static inline void tg_free(struct tg *t)
{
    if (t->ops && t->ops->destroy)
        t->ops->destroy(&t->g);
    assert_null(t->g.balancer_data);
    free(t->wstate);
    for (uint32_t i = 0; i < t->g.nservers; i++)
        free(t->states[i].per_worker); /* bl_upstream_counts_init's, where a test called it */
    free(t->g.gstate->per_worker);
    free(t->g.gstate);
    free(t->g.servers);
    free(t->states);
    free(t->names);
    free(t);
}

/* A new request: no server tried, cursor at its start. */
static inline void tg_request(struct tg *t)
{
    memset(t->tried, 0, sizeof(t->tried));
    t->p.cursor = 0;
}

static inline void tg_set_tried(struct tg *t, uint32_t i)
{
    t->tried[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static inline void tg_key(struct tg *t, const char *key)
{
    t->p.key = key;
    t->p.key_len = strlen(key);
}

/* The request set up in t (key or client already set) retries through every server exactly
 * once, then gets NULL: what proxy_next_upstream relies on. */
static inline void tg_assert_retries_visit_all(struct tg *t)
{
    tg_request(t);
    unsigned seen = 0;
    for (uint32_t a = 0; a < t->g.nservers; a++) {
        struct bl_upstream_server *s = t->ops->pick(&t->p);
        assert_non_null(s);
        assert_false(seen & (1u << s->index));
        seen |= 1u << s->index;
        tg_set_tried(t, s->index);
    }
    assert_null(t->ops->pick(&t->p));
}

/* One first attempt of a new request; returns the server index or -1. */
static inline int tg_pick(struct tg *t)
{
    tg_request(t);
    struct bl_upstream_server *s = t->ops->pick(&t->p);
    return s ? (int)s->index : -1;
}

/* Pick, acquire, release at once (an idle group): returns the index or -1. */
static inline int tg_pick_release(struct tg *t, uint64_t latency_us)
{
    tg_request(t);
    struct bl_upstream_server *s = t->ops->pick(&t->p);
    if (!s)
        return -1;
    bl_server_acquire(s);
    bl_server_release(s);
    if (t->ops->release) {
        struct bl_pick_feedback fb = {200, 0, latency_us, 0};
        t->ops->release(&t->p, s, &fb);
    }
    return (int)s->index;
}

static inline void tg_mark_down(struct tg *t, uint32_t i)
{
    atomic_store(&t->states[i].down_until_ms, t->p.now_ms + 60000);
}

static inline int tg_total_weight(const struct tg *t, uint32_t from, uint32_t to)
{
    int w = 0;
    for (uint32_t i = from; i < to; i++)
        w += t->g.servers[i].weight;
    return w;
}

/* Each server's share of counts[] is its weight's share of servers [0, n) within tol
 * (absolute, as a fraction: 0.01 = one percentage point). Prints the spread. Returns the
 * largest deviation seen. */
static inline double tg_assert_spread(const struct tg *t, const unsigned *counts, uint32_t n,
                                      double tol, const char *what)
{
    unsigned total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += counts[i];
    int wsum = tg_total_weight(t, 0, n);
    double worst = 0;
    for (uint32_t i = 0; i < n; i++) {
        double share = (double)counts[i] / total;
        double want = (double)t->g.servers[i].weight / wsum;
        double dev = fabs(share - want);
        if (dev > worst)
            worst = dev;
        if (dev > tol) {
            print_error("%s: server %u (weight %d) got %.4f of %u picks, expected %.4f +- %.4f\n",
                        what, i, t->g.servers[i].weight, share, total, want, tol);
            fail();
        }
    }
    print_message("[ SPREAD   ] %s: largest deviation from weight share %.4f%% (points)\n", what,
                  worst * 100);
    return worst;
}

/* An IPv4 address a.b.c.d as a sockaddr. */
static inline struct sockaddr_in tg_ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    uint8_t *o = (uint8_t *)&sin.sin_addr.s_addr;
    o[0] = a;
    o[1] = b;
    o[2] = c;
    o[3] = d;
    return sin;
}

/* Names "backend-<i>.example:8080" for tg_new_named(), in buf. */
static inline void tg_backend_names(char (*buf)[48], const char **names, int n)
{
    for (int i = 0; i < n; i++) {
        snprintf(buf[i], sizeof(buf[i]), "backend-%d.example:8080", i);
        names[i] = buf[i];
    }
}

/* Keys "user:<i>" picked once each; out[i] = the chosen server's name, for disruption checks.
 * release: end each request (methods that count requests in flight). */
static inline void tg_map_keys(struct tg *t, int nkeys, char (*out)[64], int release)
{
    char key[32];
    for (int i = 0; i < nkeys; i++) {
        snprintf(key, sizeof(key), "user:%d", i);
        tg_key(t, key);
        int s = release ? tg_pick_release(t, 0) : tg_pick(t);
        assert_true(s >= 0);
        snprintf(out[i], 64, "%s", t->g.servers[s].name);
    }
}

/* Holds n requests open (never released), one pick each, and returns the worst distance seen of
 * any server's in-flight count from its weight's share, in requests per unit of weight. */
static inline double tg_hold_worst_deviation(struct tg *t, int n)
{
    double total = 0, worst = 0;
    for (uint32_t j = 0; j < t->g.nservers; j++)
        total += t->g.servers[j].weight;
    for (int i = 1; i <= n; i++) {
        int s = tg_pick(t);
        bl_server_acquire(&t->g.servers[s]);
        for (uint32_t j = 0; j < t->g.nservers; j++) {
            double w = t->g.servers[j].weight;
            double dev = fabs(atomic_load(&t->states[j].active) - i * w / total) / w;
            if (dev > worst)
                worst = dev;
        }
    }
    return worst;
}

#endif
