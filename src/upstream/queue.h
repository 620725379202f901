/* Upstream queues (nginx Plus's `queue N [timeout=T];`): a request that finds every server of
 * its group full (max_conns) waits in a bounded FIFO, shared by every worker, for a slot.
 *
 * Waking: a worker that releases a server of a group whose queue has waiters pops the oldest
 * waiter (under the queue's lock) and hands it to the waiter's own worker: a ready list and an
 * eventfd of that worker (struct bl_queue_worker, inside bl_upstream_worker). The owner then
 * calls the waiter's on_ready(w, 1), which picks again; when another request took the slot in
 * the meantime the waiter goes back to the head of the queue (bl_queue_requeue) with its
 * original deadline. A waiter whose deadline passes gets on_ready(w, 0). The fast path (no
 * waiter) costs one relaxed atomic load per release.
 *
 * The queue itself lives in the group's shared state (bl_group_state.queue), which a reload
 * carries to the new generation: requests queued under the old configuration and the new one
 * wait in one FIFO, and a release in either wakes the oldest. Its length and timeout are the
 * configuration's (struct bl_queue_conf, bl_upstream_group.queue).
 *
 * Lock order: the queue's lock, then a worker's ready-list lock. Every waiter callback runs on
 * the waiter's own worker thread.
 */
#ifndef BL_UPSTREAM_QUEUE_H
#define BL_UPSTREAM_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"

struct bl_queue_worker;
struct bl_queue_waiter;

/* bl_queue_waiter.state */
#define BL_QW_IDLE   0   /* in no list */
#define BL_QW_QUEUED 1   /* in its queue */
#define BL_QW_WOKEN  2   /* in its worker's ready list, on the way to on_ready(w, 1) */

/* ok 1: a slot was freed (pick again); 0: the deadline passed (or the queue went away). */
typedef void (*bl_queue_ready)(struct bl_queue_waiter *w, int ok);

/* One waiting request; owned by it (embedded), zeroed before first use. */
struct bl_queue_waiter {
    struct bl_queue_waiter *prev, *next;
    struct bl_queue *q;
    struct bl_queue_worker *qw;        /* the owner's worker */
    bl_queue_ready on_ready;
    struct bl_timer timer;             /* the deadline, on the owner's loop */
    uint64_t deadline_ms;
    uint8_t state;                     /* BL_QW_*: written under q->lock */
};

/* `queue N [timeout=T];` */
struct bl_queue_conf {
    uint32_t max;                      /* N */
    uint64_t timeout_ms;               /* T, default 60 s */
};

/* A group's queue: in its shared state (upstream.h), set up by bl_queue_init(). */
struct bl_queue {
    pthread_mutex_t lock;
    struct bl_queue_waiter *head, *tail;
    uint32_t len;                      /* waiters QUEUED */
    _Atomic uint32_t waiting;          /* len, readable without the lock */
    _Atomic uint64_t timeouts, overflows; /* statistics */
};

/* A worker's side: where woken waiters wait for their thread. */
struct bl_queue_worker {
    struct bl_loop *loop;
    struct bl_io wake;                 /* eventfd, level-triggered on loop */
    pthread_mutex_t lock;
    struct bl_queue_waiter *ready;     /* woken waiters (singly linked through next) */
};

/* Parses `queue N [timeout=T]` into a new *qc. BL_OK, or BL_ERR with err filled. Control
 * thread. */
int bl_queue_parse(struct bl_queue_conf **qc, char *const *args, int nargs, char *err,
                   size_t errlen);
/* Frees qc (NULL: nothing). */
void bl_queue_conf_free(struct bl_queue_conf *qc);
/* Sets up an empty queue / tears one down (no waiter may remain). */
void bl_queue_init(struct bl_queue *q);
void bl_queue_destroy(struct bl_queue *q);

/* Sets up qw on loop (an eventfd). BL_OK or BL_ERR (errno). Before the worker runs. */
int bl_queue_worker_init(struct bl_queue_worker *qw, struct bl_loop *loop);
/* Closes it; woken waiters left get nothing (their owners are gone with the loop). */
void bl_queue_worker_free(struct bl_queue_worker *qw);

/* Puts w at the tail of q with deadline now + qc->timeout_ms, on_ready to be called on qw's
 * thread. BL_OK, or BL_ERR when q holds qc->max already (w untouched). Caller's thread is
 * qw's. */
int bl_queue_wait(struct bl_queue *q, const struct bl_queue_conf *qc,
                  struct bl_queue_waiter *w, struct bl_queue_worker *qw,
                  bl_queue_ready on_ready);
/* A woken waiter found no slot: back to the head of q, same deadline. BL_OK, or BL_ERR when
 * its deadline has passed (the caller answers as for a timeout). */
int bl_queue_requeue(struct bl_queue_waiter *w);
/* Takes w out of wherever it is (a request that ends while waiting). A wake it had received
 * is passed on to the next waiter. Owner's thread. */
void bl_queue_cancel(struct bl_queue_waiter *w);
/* A slot of q's group may be free: wakes the oldest waiter, if any. Any worker thread. */
void bl_queue_wake_one(struct bl_queue *q);

/* Wakes every waiter of q (the response cache: a fill ended, each waiter looks its key up
 * again and may wait again with bl_queue_requeue()). Any worker thread. */
void bl_queue_wake_all(struct bl_queue *q);

/* After a release: wakes one waiter when q has any. Any worker thread. */
static inline void bl_queue_released(struct bl_queue *q)
{
    if (atomic_load_explicit(&q->waiting, memory_order_seq_cst))
        bl_queue_wake_one(q);
}

#endif
