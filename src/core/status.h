/* Status codes shared by every module (nginx NGX_OK/NGX_ERROR/NGX_AGAIN). */
#ifndef BL_CORE_STATUS_H
#define BL_CORE_STATUS_H

#define BL_OK     0   /* done */
#define BL_ERR   (-1) /* failed or invalid; see the module's error report */
#define BL_AGAIN (-2) /* incomplete: call again with more input or when the fd is ready */

/* I/O results: one convention for every helper that reads or writes a socket.
 *
 * Transfer helpers (a recv, a send, a writev with their bookkeeping) return
 *   n > 0      bytes moved (reads), or BL_OK when everything asked for went (writes);
 *   0          end of input (reads only: the peer closed its side);
 *   BL_AGAIN   the socket would block: the connection's ready flag is cleared, nothing more
 *              happens until its next edge; partial progress is already accounted;
 *   BL_ERR     the socket failed, errno says why. Nothing was closed or freed: the caller
 *              decides, and may touch the connection and its request as before.
 * A transfer helper never clears a ready flag on a short transfer unless the kernel said the
 * socket is drained, so that edge-triggered readiness is never lost.
 *
 * Step helpers of a state machine (send the request, read the body, parse the answer) return
 *   BL_OK      the step is complete, go on;
 *   BL_AGAIN   blocked: the right timer is armed, return to the loop;
 *   BL_ERR     the failure was handled already (answered, retried elsewhere or closed): the
 *              request, and the connections it held, may be freed. The caller returns at once
 *              and touches nothing it reached through them.
 */

#define BL_UNUSED(x) ((void)(x))
#define BL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define bl_likely(x)   __builtin_expect(!!(x), 1)
#define bl_unlikely(x) __builtin_expect(!!(x), 0)

#endif
