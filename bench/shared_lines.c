/* The cost of the request path's counter writes when workers share a cache line, measured
 * without a proxy: two threads (pinned to cores 0 and 1 when there are two) each do what one
 * proxied request did to the upstream counters, in a loop, under four layouts:
 *
 *   shared-atomic   what ballast did before: lock add to server active, group active and
 *                   server requests, then lock sub from both actives, all threads on the
 *                   same lines (struct bl_server_state / bl_group_state)
 *   own-line        what it does now: each thread a relaxed load+store on its own 64-byte
 *                   line (struct bl_worker_counts)
 *   adjacent        own counters without atomics, but the two threads' counters in one line
 *                   (per-worker blocks not padded): false sharing alone
 *   one-thread      shared-atomic with a single thread: the lock prefix without contention
 *
 * Prints ns per "request" (the five updates) for each. The figures go to bench/RESULTS.md;
 * on a shared VM they move between runs, the ratios less so.
 *
 *   cc -O2 -pthread -o build/bench/shared_lines bench/shared_lines.c
 *   build/bench/shared_lines [iterations]     (default 20000000)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct shared_server {
    _Atomic uint32_t refs;
    _Atomic int32_t active;
    _Atomic uint32_t fails;
    _Atomic uint64_t fail_window_ms;
    _Atomic uint64_t down_until_ms;
    _Atomic uint64_t up_since_ms;
    _Atomic uint64_t requests;
};

struct shared_group {
    _Atomic uint32_t refs;
    _Atomic int32_t active;
};

struct own_line {
    _Alignas(64) _Atomic int64_t active;
    _Atomic uint64_t requests;
    _Atomic int64_t group_active;
};

struct adjacent {
    _Atomic int64_t active;
    _Atomic uint64_t requests;
    _Atomic int64_t group_active;
};

static struct shared_server server;
static struct shared_group group;
static struct own_line own[2];
static _Alignas(64) struct adjacent adj[2]; /* 24 bytes each: both in one line */

enum mode { SHARED_ATOMIC, OWN_LINE, ADJACENT };

struct job {
    int id;
    enum mode mode;
    uint64_t iters;
    pthread_barrier_t *start;
};

static inline void bump(_Atomic int64_t *c, int64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void bumpu(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void *run(void *arg)
{
    struct job *j = arg;
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(j->id, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    pthread_barrier_wait(j->start);
    for (uint64_t i = 0; i < j->iters; i++) {
        switch (j->mode) {
        case SHARED_ATOMIC:
            atomic_fetch_add_explicit(&server.active, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&group.active, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&server.requests, 1, memory_order_relaxed);
            /* the picks in between read the same lines (bl_server_available) */
            (void)atomic_load_explicit(&server.down_until_ms, memory_order_relaxed);
            atomic_fetch_sub_explicit(&server.active, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&group.active, 1, memory_order_relaxed);
            break;
        case OWN_LINE:
            bump(&own[j->id].active, 1);
            bump(&own[j->id].group_active, 1);
            bumpu(&own[j->id].requests, 1);
            (void)atomic_load_explicit(&server.down_until_ms, memory_order_relaxed);
            bump(&own[j->id].active, -1);
            bump(&own[j->id].group_active, -1);
            break;
        case ADJACENT:
            bump(&adj[j->id].active, 1);
            bump(&adj[j->id].group_active, 1);
            bumpu(&adj[j->id].requests, 1);
            (void)atomic_load_explicit(&server.down_until_ms, memory_order_relaxed);
            bump(&adj[j->id].active, -1);
            bump(&adj[j->id].group_active, -1);
            break;
        }
    }
    return NULL;
}

static double measure(enum mode mode, int nthreads, uint64_t iters)
{
    pthread_t t[2];
    struct job jobs[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = (struct job){.id = i, .mode = mode, .iters = iters, .start = &start};
        pthread_create(&t[i], NULL, run, &jobs[i]);
    }
    struct timespec a, b;
    pthread_barrier_wait(&start);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_barrier_destroy(&start);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    return ns / (double)iters; /* per request per thread: the threads run side by side */
}

int main(int argc, char **argv)
{
    uint64_t iters = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000000ull;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("shared_lines: %llu requests per thread, %ld cores%s\n", (unsigned long long)iters,
           ncpu, ncpu >= 2 ? ", threads pinned to cores 0 and 1" : " (not pinned)");
    printf("  %-14s %8.2f ns/request (2 threads)\n", "shared-atomic",
           measure(SHARED_ATOMIC, 2, iters));
    printf("  %-14s %8.2f ns/request (2 threads)\n", "own-line", measure(OWN_LINE, 2, iters));
    printf("  %-14s %8.2f ns/request (2 threads)\n", "adjacent", measure(ADJACENT, 2, iters));
    printf("  %-14s %8.2f ns/request (1 thread)\n", "one-thread",
           measure(SHARED_ATOMIC, 1, iters));
    return 0;
}
