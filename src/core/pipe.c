/* Pipes for splice(2), with a per-thread free list (core/pipe.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/pipe.h"
#include "core/status.h"

static _Thread_local struct bl_pipe *free_pipes;
static _Thread_local uint32_t nfree;
static _Thread_local uint8_t taken; /* a pipe was taken since the last bl_pipe_tick() */
static _Thread_local uint32_t nbig;  /* grown pipes open, in use or free (bl_pipe_grow) */

static void pipe_close(struct bl_pipe *p)
{
    if (p->size >= BL_PIPE_SIZE_BIG)
        nbig--;
    close(p->fd[0]);
    close(p->fd[1]);
    free(p);
}

struct bl_pipe *bl_pipe_get(void)
{
    taken = 1;
    struct bl_pipe *p = free_pipes;
    if (p) {
        free_pipes = p->next;
        nfree--;
        return p;
    }
    if (!(p = malloc(sizeof(*p))))
        return NULL;
    if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(p);
        return NULL;
    }
    int got = fcntl(p->fd[1], F_SETPIPE_SZ, BL_PIPE_SIZE);
    if (got < 0)
        got = fcntl(p->fd[1], F_GETPIPE_SZ);
    if (got < 65536) {
        /* past pipe-user-pages-soft: two pages, slower than copying through a buffer */
        pipe_close(p);
        return NULL;
    }
    p->size = (uint32_t)got;
    if (p->size >= BL_PIPE_SIZE_BIG)
        nbig++; /* a build with BL_PIPE_SIZE that large: pipe_close counts it back */
    p->piped = 0;
    p->next = NULL;
    return p;
}

void bl_pipe_put(struct bl_pipe *p)
{
    if (!p)
        return;
    if (p->piped || nfree >= BL_PIPE_CACHE) {
        pipe_close(p);
        return;
    }
    p->next = free_pipes;
    free_pipes = p;
    nfree++;
}

void bl_pipe_grow(struct bl_pipe *p)
{
    if (p->size >= BL_PIPE_SIZE_BIG || nbig >= BL_PIPE_BIG_MAX)
        return;
    int got = fcntl(p->fd[1], F_SETPIPE_SZ, BL_PIPE_SIZE_BIG);
    if (got < BL_PIPE_SIZE_BIG)
        return; /* EPERM past the user's pipe limits: p is as it was */
    p->size = (uint32_t)got;
    nbig++;
}

ssize_t bl_pipe_in(struct bl_pipe *p, int src, uint64_t max, uint8_t *ready)
{
    size_t want = p->size - p->piped;
    if (max < want)
        want = (size_t)max;
    ssize_t n;
    do
        n = splice(src, NULL, p->fd[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        p->piped += (uint32_t)n;
        return n;
    }
    if (n == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!p->piped)
            *ready = 0;
        return BL_AGAIN;
    }
    return BL_ERR;
}

ssize_t bl_pipe_out(struct bl_pipe *p, int dst, uint8_t *ready)
{
    ssize_t n;
    do
        n = splice(p->fd[0], NULL, dst, NULL, p->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        if ((uint32_t)n < p->piped)
            *ready = 0;
        p->piped -= (uint32_t)n;
        return n;
    }
    if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
        *ready = 0;
        return BL_AGAIN;
    }
    return BL_ERR;
}

void bl_pipe_tick(void)
{
    if (!taken)
        bl_pipe_drain();
    taken = 0;
}

void bl_pipe_drain(void)
{
    while (free_pipes) {
        struct bl_pipe *p = free_pipes;
        free_pipes = p->next;
        pipe_close(p);
    }
    nfree = 0;
}
