/* The admin listener: a small HTTP/1.1 server on the control thread's loop that serves the
 * runtime API, /metrics and /status (routes in api.h). It never runs on a worker, so a scrape
 * or a PATCH never competes with request handling; what it changes, it changes through the
 * shared per-server atomics the workers read on every pick (upstream.h).
 *
 * HTTP: requests parsed by the project's h1 parser, keep-alive and pipelining, heads up to
 * 16 KiB (431 beyond), Content-Length bodies up to 64 KiB (413 beyond; chunked: 411), an idle
 * connection closed after 30 s, at most 64 connections at once (more are closed at accept).
 * With `token_file`, every call but GET /status (a static page with no data, which asks for
 * the token itself) needs `Authorization: Bearer TOKEN`, compared in constant time; 401 with
 * a JSON reason otherwise. docs/operations.md, "Runtime API", is the reference.
 *
 * Threads: everything here runs on the control thread.
 */
#ifndef BL_ADMIN_ADMIN_H
#define BL_ADMIN_ADMIN_H

#include <stddef.h>

struct bl_config;
struct bl_loop;

struct bl_admin;

/* Binds cfg->admin's address (the first generation's) and serves it on loop. Every call then
 * reports on, changes and checks its token against the generation serving at that moment
 * (bl_reload_current()), so a reload's upstreams and token apply to the next call; the
 * listener itself stays where the start put it. Returns the server, or NULL with err filled
 * (bind failure in nginx's words, out of memory). Call only when cfg->admin.enabled. */
struct bl_admin *bl_admin_start(struct bl_loop *loop, const struct bl_config *cfg, char *err,
                                size_t errlen);

/* The listening socket (a binary upgrade hands it over). */
int bl_admin_listen_fd(const struct bl_admin *a);

/* Closes the listener and every connection; their memory goes with the loop's deferred frees
 * (bl_loop_destroy runs them). NULL is a no-op. */
void bl_admin_stop(struct bl_admin *a);

#endif
