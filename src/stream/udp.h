/* UDP proxying for stream servers (`listen ... udp`): datagrams from one client address form a
 * session with one upstream server, picked by the same upstream layer as TCP sessions
 * (balancers, hash $remote_addr, backup, max_fails, checks), and relayed through a connected
 * UDP socket of its own, so the server's answers come back to that session only.
 *
 * Sockets: every worker has its own SO_REUSEPORT socket per `listen ... udp` address (as for
 * TCP), so the kernel spreads datagrams over the workers by the 4-tuple hash and every datagram
 * of one client address reaches the same worker, where its session lives. Answers go back
 * through (a dup of) the listening socket, from the listened address.
 *
 * A session ends:
 *   - with proxy_responses N: once N x (datagrams from the client) answers came back (nginx's
 *     rule; 0: right after the client's datagram went out, answers are not awaited);
 *   - with proxy_requests N: after the client's N-th datagram the session takes no more (the
 *     next one starts a new session) and ends once its answers came back (as above);
 *   - after proxy_timeout without a datagram either way: a success ($status 200) when no answer
 *     was owed (proxy_responses unset, or all came), else an upstream failure (502, counts
 *     against max_fails as a timeout);
 *   - on an ICMP error from the server (port unreachable: ECONNREFUSED on the connected socket):
 *     a failure against max_fails; before the first answer the session's last datagram (when
 *     at most BL_UDP_RESEND_MAX bytes) is sent to the next server (proxy_next_upstream, _tries,
 *     _timeout), unseen by the client.
 * Each session is logged when it ends (stream access_log; $bytes_received: payload bytes from
 * the client, $bytes_sent: to it, $session_time, $status 200/502/503, $upstream_addr).
 *
 * Bounds: a datagram is at most 65535 bytes (one 64 KiB receive buffer per worker); a worker
 * holds at most worker_connections sessions and connections together: a datagram from a new
 * client beyond that is dropped (logged at most once a second). A session holds two sockets
 * and, until the first answer, a copy of its last datagram when that is small.
 *
 * Worker thread only.
 */
#ifndef BL_STREAM_UDP_H
#define BL_STREAM_UDP_H

#include <stdint.h>

struct bl_listen;
struct bl_stream_worker;

/* Largest datagram a session keeps to resend to the next server after an ICMP error. */
#define BL_UDP_RESEND_MAX 4096u

/* Reads the datagrams waiting on a UDP listener (fd, level-triggered) of listen, dispatching
 * each to its client's session or a new one; at most room new sessions. */
void bl_stream_udp_read(struct bl_stream_worker *sw, const struct bl_listen *listen, int fd,
                        uint32_t room);

/* Ends every UDP session of sw now (logged, the server released without blame). */
void bl_stream_udp_close_all(struct bl_stream_worker *sw);

/* Frees the worker's table and buffer (no session may be open). */
void bl_stream_udp_free(struct bl_stream_worker *sw);

#endif
