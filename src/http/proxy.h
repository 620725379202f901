/* The L7 proxy: client connections, requests and upstream connections of one worker.
 * Every function here runs on the worker thread that owns the connection.
 */
#ifndef BL_HTTP_PROXY_H
#define BL_HTTP_PROXY_H

#include <sys/socket.h>

struct bl_worker;
struct bl_listener;

/* Takes a freshly accepted, non-blocking client socket. Closes fd on failure. */
void bl_http_accept(struct bl_listener *l, int fd, const struct sockaddr *peer,
                    socklen_t peerlen);

/* Shutdown: closes idle keep-alive connections and marks busy ones to close after their
 * current response. */
void bl_http_drain(struct bl_worker *w);

/* Force-closes every connection (shutdown_timeout expired). */
void bl_http_close_all(struct bl_worker *w);

/* Closes idle upstream connections (worker exit). */
void bl_http_close_upstream_pools(struct bl_worker *w);

#endif
