/* Pipes for splice(2): bytes that pass through untransformed move socket -> pipe -> socket in
 * the kernel, without the two copies through a user-space buffer (bench/RESULTS.md, "HTTP
 * splice").
 *
 * A pipe is asked for BL_PIPE_SIZE bytes (F_SETPIPE_SZ); past the user's
 * fs.pipe-user-pages-soft the kernel gives new pipes two pages, which would splice slower than
 * a buffer copies, so such a pipe is refused and the caller copies. Empty pipes are kept on a
 * small per-thread free list (BL_PIPE_CACHE) so a stream of large responses does not pay
 * pipe2 + fcntl + two closes each; it follows demand (bl_pipe_tick), so an idle worker holds
 * no pipe. All of it belongs to the calling thread.
 */
#ifndef BL_CORE_PIPE_H
#define BL_CORE_PIPE_H

#include <stdint.h>
#include <sys/types.h>

#ifndef BL_PIPE_SIZE
#define BL_PIPE_SIZE (256 * 1024)
#endif
#define BL_PIPE_CACHE 4
/* A long body's pipe is grown to BL_PIPE_SIZE_BIG (bl_pipe_grow): a third fewer CPU seconds
 * per GiB spliced at half the splice calls (bench/RESULTS.md, "1 MiB pipes"). 1 MiB is also
 * the most an unprivileged user may ask (fs.pipe-max-size), and each such pipe takes 256 of
 * the user's 16384 soft pipe pages, so a thread grows at most BL_PIPE_BIG_MAX of them at a
 * time: past that (or where the kernel refuses) a pipe stays at BL_PIPE_SIZE, and the budget
 * still leaves room for the small pipes that keep other bodies off the copy path. */
#ifndef BL_PIPE_SIZE_BIG
#define BL_PIPE_SIZE_BIG (1024 * 1024)
#endif
#define BL_PIPE_BIG_MAX 8

struct bl_pipe {
    int fd[2];               /* read end, write end; both non-blocking */
    uint32_t piped;          /* bytes in the pipe */
    uint32_t size;           /* its capacity, bytes */
    struct bl_pipe *next;    /* free-list link */
};

/* An empty pipe, or NULL when none can be had (out of fds or memory, or the kernel gives only
 * small pipes): the caller copies instead. */
struct bl_pipe *bl_pipe_get(void);

/* Gives p back (NULL is fine): an empty one to the free list (or closed when the list is
 * full), one that still holds bytes closed. */
void bl_pipe_put(struct bl_pipe *p);

/* Grows p to BL_PIPE_SIZE_BIG for a body with more than p->size bytes to come, unless the
 * thread already holds BL_PIPE_BIG_MAX grown pipes or the kernel refuses (p keeps its size;
 * a failure costs one fcntl). A grown pipe stays grown on the free list. */
void bl_pipe_grow(struct bl_pipe *p);

/* Moves up to max bytes from socket src into p (at most its free room). Returns bytes (> 0),
 * 0 at end of input, BL_AGAIN or BL_ERR (errno); core/status.h's transfer convention. EAGAIN
 * means an empty socket or a full pipe (the pipe counts page slots, not bytes), so *ready is
 * cleared only when the pipe is empty, when it can only mean the socket's edge is spent. A
 * source that cannot splice (EINVAL) is BL_ERR with errno EINVAL before anything moved. */
ssize_t bl_pipe_in(struct bl_pipe *p, int src, uint64_t max, uint8_t *ready);

/* Moves p's bytes to socket dst. Returns bytes (> 0), BL_AGAIN or BL_ERR (errno); a short
 * write clears *ready (the socket is full). */
ssize_t bl_pipe_out(struct bl_pipe *p, int dst, uint8_t *ready);

/* Once a second on a worker: the free pipes are closed when none was taken since the last
 * tick (idle connections hold no fds but their sockets). */
void bl_pipe_tick(void);

/* Closes the thread's free pipes (its end). */
void bl_pipe_drain(void);

#endif
