/* A scripted event loop backend for test_loop_seam.c: it records what loop.c asks of it and
 * hands back the events a test queued, so the generic part (dispatch, deferred work, timers,
 * poll timeouts) is tested without the kernel. Included by loop.c through BL_LOOP_BACKEND. */
#include <time.h>

#define FAKE_MAX 16

struct fake_event {
    struct bl_io *io;
    uint32_t ev;
};

struct loop_backend {
    struct bl_io *added[FAKE_MAX];
    int edge[FAKE_MAX];              /* loop_backend_add's mode per added io */
    int nadded, ndeleted, nclosed;
    struct fake_event queued[FAKE_MAX];   /* delivered by the next poll */
    int nqueued;
    struct fake_event batch[FAKE_MAX];    /* the last poll's events */
    int timeouts[64];                /* timeout_ms of each poll */
    int npolls;
};

static struct loop_backend *fake_backend; /* the test's window into the last loop created */

static int loop_backend_init(struct loop_backend *b, char *err, unsigned long errlen)
{
    memset(b, 0, sizeof(*b));
    fake_backend = b;
    return BL_OK;
}

static void loop_backend_free(struct loop_backend *b) { fake_backend = NULL; }

static int loop_backend_add(struct loop_backend *b, struct bl_io *io, int edge)
{
    if (b->nadded == FAKE_MAX)
        return BL_ERR;
    b->edge[b->nadded] = edge;
    b->added[b->nadded++] = io;
    return BL_OK;
}

static void loop_backend_del(struct loop_backend *b, struct bl_io *io) { b->ndeleted++; }

static void loop_backend_close(struct loop_backend *b, struct bl_io *io) { b->nclosed++; }

static void loop_backend_flush(struct loop_backend *b) { (void)b; }

/* Queues an event for the next poll. */
static void fake_queue(struct bl_io *io, uint32_t ev)
{
    fake_backend->queued[fake_backend->nqueued++] = (struct fake_event){io, ev};
}

static int loop_backend_poll(struct loop_backend *b, int timeout_ms)
{
    if (b->npolls < (int)(sizeof(b->timeouts) / sizeof(b->timeouts[0])))
        b->timeouts[b->npolls] = timeout_ms;
    b->npolls++;
    int n = b->nqueued;
    if (n == 0) {
        /* nothing scripted: pass the time a real wait would, so timers come due */
        struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    memcpy(b->batch, b->queued, (size_t)n * sizeof(b->batch[0]));
    b->nqueued = 0;
    return n;
}

static inline const struct bl_io *loop_backend_peek(const struct loop_backend *b, int i)
{
    return b->batch[i].io;
}

static inline struct bl_io *loop_backend_event(struct loop_backend *b, int i, uint32_t *ev)
{
    *ev = b->batch[i].ev;
    return b->batch[i].io;
}
