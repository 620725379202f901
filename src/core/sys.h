/* Socket syscalls for the per-request path without glibc's cancellation wrappers.
 *
 * ballast is multi-threaded (a control thread beside the workers), so glibc wraps every
 * cancellation point (recv, send, writev, epoll_wait, ...) in __pthread_enable_asynccancel /
 * __pthread_disable_asynccancel: about 40 instructions per call, 190 per proxied request
 * (bench/README.md, "Profile"). Nothing in ballast cancels a thread (no pthread_cancel), so
 * that work buys nothing. On x86_64 these make the system call inline; elsewhere, and in the
 * sanitizer builds (whose interceptors check the buffers and track fds), they are the libc
 * calls. Same syscalls as glibc makes (recv is recvfrom, send is sendto), same results:
 * the count or -1 with errno set. Any thread.
 *
 * bl_sys_sendv is writev for a socket: sendmsg(2) with MSG_NOSIGNAL, which skips writev's VFS
 * path (vfs_writev, fdget_pos); an fd that is not a socket gets writev. */
#ifndef BL_CORE_SYS_H
#define BL_CORE_SYS_H

#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                  \
    __has_feature(memory_sanitizer)
#define BL_SYS_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BL_SYS_SANITIZED 1
#endif

#if defined(__x86_64__) && !defined(BL_SYS_SANITIZED) && !defined(BL_SYS_LIBC)
#define BL_SYS_RAW 1

/* The x86_64 syscall ABI: number in rax, arguments in rdi rsi rdx r10 r8 r9; the kernel
 * clobbers rcx and r11; -errno comes back in rax. */
static inline long bl_sys6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long ret;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static inline ssize_t bl_sys_result(long r)
{
    if ((unsigned long)r > -4096UL) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

static inline ssize_t bl_sys_recv(int fd, void *buf, size_t len, int flags)
{
    return bl_sys_result(bl_sys6(SYS_recvfrom, fd, (long)buf, (long)len, flags, 0, 0));
}

static inline ssize_t bl_sys_send(int fd, const void *buf, size_t len, int flags)
{
    return bl_sys_result(bl_sys6(SYS_sendto, fd, (long)buf, (long)len, flags, 0, 0));
}

static inline ssize_t bl_sys_sendmsg(int fd, const struct msghdr *m, int flags)
{
    return bl_sys_result(bl_sys6(SYS_sendmsg, fd, (long)m, flags, 0, 0, 0));
}

static inline int bl_sys_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms)
{
    return (int)bl_sys_result(bl_sys6(SYS_epoll_wait, epfd, (long)ev, max, timeout_ms, 0, 0));
}

#else

static inline ssize_t bl_sys_recv(int fd, void *buf, size_t len, int flags)
{
    return recv(fd, buf, len, flags);
}

static inline ssize_t bl_sys_send(int fd, const void *buf, size_t len, int flags)
{
    return send(fd, buf, len, flags);
}

static inline ssize_t bl_sys_sendmsg(int fd, const struct msghdr *m, int flags)
{
    return sendmsg(fd, m, flags);
}

static inline int bl_sys_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms)
{
    return epoll_wait(epfd, ev, max, timeout_ms);
}

#endif

static inline ssize_t bl_sys_sendv(int fd, const struct iovec *iov, int n)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    ssize_t w = bl_sys_sendmsg(fd, &m, MSG_NOSIGNAL);
    if (w < 0 && errno == ENOTSOCK)
        w = writev(fd, iov, n);
    return w;
}

#endif
