/* Upstream queues: a shared FIFO of waiting requests per group (queue.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "core/units.h"
#include "upstream/queue.h"

int bl_queue_parse(struct bl_queue_conf **q, char *const *args, int nargs, char *err,
                   size_t errlen)
{
    if (*q) {
        snprintf(err, errlen, "\"queue\" directive is duplicate");
        return BL_ERR;
    }
    char *end;
    errno = 0;
    long n = strtol(args[0], &end, 10);
    if (errno || *end || end == args[0] || n < 1 || n > 1000000) {
        snprintf(err, errlen, "invalid queue length \"%s\" (1..1000000)", args[0]);
        return BL_ERR;
    }
    uint64_t timeout = 60000;
    for (int i = 1; i < nargs; i++) {
        if (strncmp(args[i], "timeout=", 8) != 0 ||
            bl_parse_time_ms(args[i] + 8, 1000, 86400000, &timeout) != BL_OK || timeout == 0) {
            snprintf(err, errlen, "invalid parameter \"%s\" (want timeout=TIME)", args[i]);
            return BL_ERR;
        }
    }
    struct bl_queue_conf *nq = calloc(1, sizeof(*nq));
    if (!nq) {
        snprintf(err, errlen, "out of memory");
        return BL_ERR;
    }
    nq->max = (uint32_t)n;
    nq->timeout_ms = timeout;
    *q = nq;
    return BL_OK;
}

void bl_queue_conf_free(struct bl_queue_conf *qc)
{
    free(qc);
}

void bl_queue_init(struct bl_queue *q)
{
    memset(q, 0, sizeof(*q));
    pthread_mutex_init(&q->lock, NULL);
}

void bl_queue_destroy(struct bl_queue *q)
{
    pthread_mutex_destroy(&q->lock);
}

/* ------------------------------------------------------------ the worker's side */

/* The eventfd fired: run on_ready(w, 1) for every waiter handed to this worker. */
static void on_wake(struct bl_io *io, uint32_t ev)
{
    struct bl_queue_worker *qw =
        (struct bl_queue_worker *)((char *)io - offsetof(struct bl_queue_worker, wake));
    (void)ev;
    uint64_t v;
    ssize_t n = read(io->fd, &v, sizeof(v));
    (void)n;
    for (;;) {
        pthread_mutex_lock(&qw->lock);
        struct bl_queue_waiter *w = qw->ready;
        if (w) {
            qw->ready = w->next;
            w->next = NULL;
            w->state = BL_QW_IDLE;
        }
        pthread_mutex_unlock(&qw->lock);
        if (!w)
            return;
        bl_timer_cancel(qw->loop, &w->timer);
        w->on_ready(w, 1);
    }
}

int bl_queue_worker_init(struct bl_queue_worker *qw, struct bl_loop *loop)
{
    memset(qw, 0, sizeof(*qw));
    qw->loop = loop;
    qw->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    qw->wake.handler = on_wake;
    if (qw->wake.fd < 0)
        return BL_ERR;
    if (bl_loop_add_level(loop, &qw->wake) != BL_OK) {
        close(qw->wake.fd);
        qw->wake.fd = -1;
        return BL_ERR;
    }
    pthread_mutex_init(&qw->lock, NULL);
    return BL_OK;
}

void bl_queue_worker_free(struct bl_queue_worker *qw)
{
    if (!qw->loop)
        return;
    if (qw->wake.fd >= 0)
        bl_loop_close(qw->loop, &qw->wake);
    pthread_mutex_destroy(&qw->lock);
    qw->loop = NULL;
}

/* ------------------------------------------------------------ the queue */

static void unlink_locked(struct bl_queue *q, struct bl_queue_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    q->len--;
    atomic_store_explicit(&q->waiting, q->len, memory_order_seq_cst);
}

/* The deadline passed: out of the queue and answered, unless a wake is already on its way
 * (then on_ready(w, 1) comes, and the requeue finds the deadline passed). */
static void on_timeout(struct bl_timer *t)
{
    struct bl_queue_waiter *w =
        (struct bl_queue_waiter *)((char *)t - offsetof(struct bl_queue_waiter, timer));
    struct bl_queue *q = w->q;
    pthread_mutex_lock(&q->lock);
    int queued = w->state == BL_QW_QUEUED;
    if (queued) {
        unlink_locked(q, w);
        w->state = BL_QW_IDLE;
    }
    pthread_mutex_unlock(&q->lock);
    if (queued) {
        atomic_fetch_add_explicit(&q->timeouts, 1, memory_order_relaxed);
        w->on_ready(w, 0);
    }
}

int bl_queue_wait(struct bl_queue *q, const struct bl_queue_conf *qc,
                  struct bl_queue_waiter *w, struct bl_queue_worker *qw,
                  bl_queue_ready on_ready)
{
    pthread_mutex_lock(&q->lock);
    if (q->len >= qc->max) {
        pthread_mutex_unlock(&q->lock);
        atomic_fetch_add_explicit(&q->overflows, 1, memory_order_relaxed);
        return BL_ERR;
    }
    w->q = q;
    w->qw = qw;
    w->on_ready = on_ready;
    w->deadline_ms = bl_clock_ms + qc->timeout_ms;
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->state = BL_QW_QUEUED;
    q->len++;
    atomic_store_explicit(&q->waiting, q->len, memory_order_seq_cst);
    pthread_mutex_unlock(&q->lock);
    w->timer.handler = on_timeout;
    bl_timer_set(qw->loop, &w->timer, w->deadline_ms);
    return BL_OK;
}

int bl_queue_requeue(struct bl_queue_waiter *w)
{
    struct bl_queue *q = w->q;
    if (bl_clock_ms >= w->deadline_ms) {
        atomic_fetch_add_explicit(&q->timeouts, 1, memory_order_relaxed);
        return BL_ERR;
    }
    pthread_mutex_lock(&q->lock);
    w->prev = NULL;
    w->next = q->head;
    if (q->head)
        q->head->prev = w;
    else
        q->tail = w;
    q->head = w;
    w->state = BL_QW_QUEUED;
    q->len++;
    atomic_store_explicit(&q->waiting, q->len, memory_order_seq_cst);
    pthread_mutex_unlock(&q->lock);
    w->timer.handler = on_timeout;
    bl_timer_set(w->qw->loop, &w->timer, w->deadline_ms);
    return BL_OK;
}

void bl_queue_cancel(struct bl_queue_waiter *w)
{
    struct bl_queue *q = w->q;
    if (!q)
        return;
    bl_timer_cancel(w->qw->loop, &w->timer);
    int pass_on = 0;
    pthread_mutex_lock(&q->lock);
    if (w->state == BL_QW_QUEUED) {
        unlink_locked(q, w);
    } else if (w->state == BL_QW_WOKEN) {
        struct bl_queue_worker *qw = w->qw;
        pthread_mutex_lock(&qw->lock);
        for (struct bl_queue_waiter **p = &qw->ready; *p; p = &(*p)->next)
            if (*p == w) {
                *p = w->next;
                break;
            }
        pthread_mutex_unlock(&qw->lock);
        w->next = NULL;
        pass_on = 1; /* the slot it was woken for is someone else's now */
    }
    w->state = BL_QW_IDLE;
    pthread_mutex_unlock(&q->lock);
    w->q = NULL;
    if (pass_on)
        bl_queue_wake_one(q);
}

/* Moves the queue's head waiter (q->lock held) to the end of its worker's ready list, so that
 * list keeps the queue's order (the owner may pop between two calls, so no tail pointer is
 * kept across them); returns that worker. */
static struct bl_queue_worker *hand_over_head_locked(struct bl_queue *q)
{
    struct bl_queue_waiter *w = q->head;
    unlink_locked(q, w);
    struct bl_queue_worker *qw = w->qw;
    pthread_mutex_lock(&qw->lock);
    w->state = BL_QW_WOKEN;
    struct bl_queue_waiter **p = &qw->ready;
    while (*p)
        p = &(*p)->next;
    *p = w;
    pthread_mutex_unlock(&qw->lock);
    return qw;
}

static void poke(struct bl_queue_worker *qw)
{
    uint64_t one = 1;
    ssize_t n = write(qw->wake.fd, &one, sizeof(one));
    (void)n; /* an eventfd write fails only when the counter would overflow: already awake */
}

void bl_queue_wake_one(struct bl_queue *q)
{
    pthread_mutex_lock(&q->lock);
    if (!q->head) {
        pthread_mutex_unlock(&q->lock);
        return;
    }
    struct bl_queue_worker *qw = hand_over_head_locked(q);
    pthread_mutex_unlock(&q->lock);
    poke(qw);
}

void bl_queue_wake_all(struct bl_queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->head) {
        struct bl_queue_worker *qw = hand_over_head_locked(q);
        /* one eventfd write per run of waiters of the same worker */
        if (!q->head || q->head->qw != qw)
            poke(qw);
    }
    pthread_mutex_unlock(&q->lock);
}
