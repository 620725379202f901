/* Nanoseconds per request spent in each balancing method (pick + acquire + release with
 * feedback, one thread, warm caches) for 10, 100 and 1000 servers, and the allocations made
 * while picking (must be 0). Run with `make bench-balancers`; docs/load-balancing.md quotes
 * the table. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "upstream/balancer.h"

/* Every allocation in the process goes through these while the bench runs; glibc's own entry
 * points do the work. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);

static int counting;
static unsigned long allocs;

void *malloc(size_t size)
{
    allocs += counting;
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    allocs += counting;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    allocs += counting;
    return __libc_realloc(p, size);
}

void free(void *p)
{
    __libc_free(p);
}

#define NKEYS 4096

struct variant {
    const char *label;
    const char *method;
    double bound;
    uint8_t two;
    int down;          /* mark servers[1] down (the slow paths) */
    uint32_t hold;     /* keep this many requests in flight (released oldest first) */
};

/* method NULL: no pick, the acquire + release every row includes, on rotating servers */
static const struct variant variants[] = {
    {"(acquire + release only)", NULL, 0, 0, 0, 0},
    {"round_robin", "round_robin", 0, 0, 0, 0},
    {"round_robin, 1 server down", "round_robin", 0, 0, 1, 0},
    {"least_conn", "least_conn", 0, 0, 0, 0},
    {"least_conn, 1000 in flight", "least_conn", 0, 0, 0, 1000},
    {"least_conn, 1 server down", "least_conn", 0, 0, 1, 0},
    {"ip_hash", "ip_hash", 0, 0, 0, 0},
    {"hash", "hash", 0, 0, 0, 0},
    {"hash consistent", "hash_consistent", 0, 0, 0, 0},
    {"hash consistent bound=1.25", "hash_consistent", 1.25, 0, 0, 0},
    {"  same, 1000 in flight", "hash_consistent", 1.25, 0, 0, 1000},
    {"hash maglev", "hash_maglev", 0, 0, 0, 0},
    {"random", "random", 0, 0, 0, 0},
    {"random two", "random", 0, 1, 0, 0},
    {"least_time", "least_time", 0, 0, 0, 0},
    {"least_time, 1000 in flight", "least_time", 0, 0, 0, 1000},
};

static char keys[NKEYS][40];
static size_t key_lens[NKEYS];
static struct sockaddr_in clients[NKEYS];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct bench_group {
    struct bl_upstream_group g;
    struct bl_server_state *states;
    char (*names)[32];
    void *wstate;
    uint8_t tried[1000 / 8 + 1];
    int baseline;
    uint32_t hold;
    struct bl_upstream_server *held[1000];
};

static int group_make(struct bench_group *b, const struct variant *v, uint32_t n)
{
    memset(b, 0, sizeof(*b));
    b->g.name = "bench";
    b->g.servers = calloc(n, sizeof(*b->g.servers));
    b->states = calloc(n, sizeof(*b->states));
    b->names = calloc(n, sizeof(*b->names));
    b->g.nservers = b->g.nprimary = n;
    b->g.gstate = calloc(1, sizeof(*b->g.gstate));
    b->g.hash_bound = v->bound;
    b->g.random_two = v->two;
    b->g.balancer = bl_balancer_find(v->method ? v->method : "round_robin");
    b->baseline = v->method == NULL;
    b->hold = v->hold;
    for (uint32_t i = 0; i < n; i++) {
        struct bl_upstream_server *s = &b->g.servers[i];
        snprintf(b->names[i], sizeof(b->names[i]), "10.1.%u.%u:8080", i / 250, i % 250 + 1);
        s->name = b->names[i];
        s->weight = 1 + (int)(i % 4);
        s->max_fails = 1;
        s->fail_timeout_ms = 10000;
        s->index = s->id = i;
        s->state = &b->states[i];
        s->group = &b->g;
        atomic_store(&b->states[i].ewma_latency_us, 20000 + 100 * (i % 7));
        atomic_store(&b->states[i].ewma_stamp_ms, 1000000);
    }
    if (v->down)
        atomic_store(&b->states[1].down_until_ms, UINT64_MAX);
    char err[256];
    if (b->g.balancer->init(&b->g, err, sizeof(err)) != BL_OK) {
        fprintf(stderr, "%s: %s\n", v->label, err);
        return BL_ERR;
    }
    size_t size = b->g.balancer->worker_size ? b->g.balancer->worker_size(&b->g) : 0;
    b->wstate = calloc(1, size ? size : 1);
    if (b->g.balancer->worker_init)
        b->g.balancer->worker_init(&b->g, b->wstate);
    return BL_OK;
}

static void group_free(struct bench_group *b)
{
    if (b->g.balancer->destroy)
        b->g.balancer->destroy(&b->g);
    free(b->wstate);
    free(b->g.servers);
    free(b->states);
    free(b->names);
}

static void finish(struct bench_group *b, struct bl_pick *p, struct bl_upstream_server *s,
                   const struct bl_pick_feedback *fb)
{
    bl_server_release(s);
    if (b->g.balancer->release && !b->baseline)
        b->g.balancer->release(p, s, fb);
}

/* iters requests through the balancer; returns the nanoseconds they took. */
static uint64_t run(struct bench_group *b, uint64_t iters)
{
    const struct bl_balancer_ops *ops = b->g.balancer;
    struct bl_pick p = {.group = &b->g, .wstate = b->wstate, .now_ms = 1000000,
                        .tried = b->tried};
    struct bl_pick_feedback fb = {.status = 200, .latency_us = 20000};
    uint32_t slot = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint32_t k = (uint32_t)i & (NKEYS - 1);
        p.key = keys[k];
        p.key_len = key_lens[k];
        p.client_addr = (const struct sockaddr *)&clients[k];
        p.cursor = 0;
        struct bl_upstream_server *s =
            b->baseline ? &b->g.servers[k % b->g.nservers] : ops->pick(&p);
        if (bl_unlikely(!s)) {
            fprintf(stderr, "%s: no server\n", ops->name);
            exit(1);
        }
        bl_server_acquire(s);
        if (!b->hold) {
            finish(b, &p, s, &fb);
            continue;
        }
        if (b->held[slot])
            finish(b, &p, b->held[slot], &fb);
        b->held[slot] = s;
        slot = slot + 1 == b->hold ? 0 : slot + 1;
    }
    uint64_t ns = now_ns() - t0;
    for (uint32_t j = 0; j < b->hold; j++)
        if (b->held[j]) {
            finish(b, &p, b->held[j], &fb);
            b->held[j] = NULL;
        }
    return ns;
}

int main(void)
{
    static const uint32_t sizes[] = {10, 100, 1000};
    for (uint32_t k = 0; k < NKEYS; k++) {
        key_lens[k] = (size_t)snprintf(keys[k], sizeof(keys[k]), "/static/img/%u.png",
                                       k * 2654435761u % 1000000);
        clients[k].sin_family = AF_INET;
        clients[k].sin_addr.s_addr = htonl(0x0a000000u | (k * 2654435761u >> 8));
    }
    printf("ns per request in the balancer (pick + acquire + release), best of 5, one thread;\n"
           "weights 1-4; hash keys like \"/static/img/123456.png\"; allocs: mallocs per 1000 "
           "picks\n\n");
    printf("%-28s %12s %12s %12s %8s\n", "method", "10 servers", "100 servers", "1000 servers",
           "allocs");
    unsigned long total_allocs = 0;
    for (size_t v = 0; v < BL_ARRAY_LEN(variants); v++) {
        printf("%-28s", variants[v].label);
        unsigned long v_allocs = 0;
        uint64_t v_picks = 0;
        for (size_t z = 0; z < BL_ARRAY_LEN(sizes); z++) {
            struct bench_group b;
            if (group_make(&b, &variants[v], sizes[z]) != BL_OK)
                return 1;
            run(&b, 20000); /* warm up, and size the timed runs to ~30 ms */
            uint64_t probe = run(&b, 20000);
            uint64_t iters = probe ? 20000 * 30000000ull / probe : 1000000;
            if (iters < 20000)
                iters = 20000;
            double best = 1e18;
            for (int r = 0; r < 5; r++) {
                allocs = 0;
                counting = 1;
                uint64_t ns = run(&b, iters);
                counting = 0;
                v_allocs += allocs;
                v_picks += iters;
                if ((double)ns / iters < best)
                    best = (double)ns / iters;
            }
            printf(" %12.1f", best);
            fflush(stdout);
            group_free(&b);
        }
        printf(" %8.3f\n", v_picks ? 1000.0 * v_allocs / v_picks : 0);
        total_allocs += v_allocs;
    }
    if (total_allocs) {
        printf("\nFAIL: %lu allocations while picking\n", total_allocs);
        return 1;
    }
    return 0;
}
