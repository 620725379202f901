/* Upstream connections: connect, keep-alive pool per worker and server, idle checks. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/sock.h"
#include "http/proxy.h"
#include "http/proxy_int.h"

static void upconn_free(struct bl_deferred *d)
{
    struct bl_upconn *u = (struct bl_upconn *)((char *)d - offsetof(struct bl_upconn, defer));
    free(u);
}

static void pool_unlink(struct bl_upconn *u)
{
    struct bl_idle_pool *p = &u->w->idle[u->server->id];
    if (u->prev)
        u->prev->next = u->next;
    else
        p->head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->next = u->prev = NULL;
    u->idle = 0;
    p->count--;
}

void bl_upconn_close(struct bl_upconn *u)
{
    if (u->idle)
        pool_unlink(u);
    bl_timer_cancel(u->w->loop, &u->timer);
    if (u->io.fd >= 0)
        close(u->io.fd);
    u->io.fd = -1;
    u->io.handler = NULL;
    bl_buf_put(u->in);
    u->in = NULL;
    u->w->nupconns--;
    bl_loop_defer(u->w->loop, &u->defer);
}

static void upconn_idle_event(struct bl_upconn *u, uint32_t ev)
{
    /* Anything on an idle connection (data, FIN, RST) makes it unusable. */
    if (ev & BL_EV_READ || ev & BL_EV_ERROR) {
        char b[64];
        ssize_t n = recv(u->io.fd, b, sizeof(b), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        bl_upconn_close(u);
    }
}

static void upconn_on_event(struct bl_io *io, uint32_t ev)
{
    struct bl_upconn *u = (struct bl_upconn *)io;
    if (ev & BL_EV_READ)
        u->rready = 1;
    if (ev & BL_EV_HUP)
        u->hup = 1;
    if (ev & BL_EV_WRITE)
        u->wready = 1;
    if (u->idle) {
        upconn_idle_event(u, ev);
        return;
    }
    if (u->req)
        bl_proxy_run(u->req);
}

static void upconn_on_timer(struct bl_timer *t)
{
    struct bl_upconn *u = (struct bl_upconn *)((char *)t - offsetof(struct bl_upconn, timer));
    if (u->idle || !u->req) {
        bl_upconn_close(u);
        return;
    }
    bl_proxy_upstream_timeout(u->req);
}

/* Returns an idle pooled connection to s, or a new connecting one; NULL with errno. */
struct bl_upconn *bl_upconn_get(struct bl_worker *w, struct bl_upstream_server *s,
                                int allow_pooled)
{
    struct bl_idle_pool *p = &w->idle[s->id];
    if (allow_pooled && p->head) {
        struct bl_upconn *u = p->head;
        pool_unlink(u);
        bl_timer_cancel(w->loop, &u->timer);
        return u;
    }
    int fd = bl_sock_connect((struct sockaddr *)&s->addr, s->addrlen);
    if (fd < 0)
        return NULL;
    struct bl_upconn *u = calloc(1, sizeof(*u));
    if (!u) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    u->io.fd = fd;
    u->io.handler = upconn_on_event;
    u->timer.handler = upconn_on_timer;
    u->defer.run = upconn_free;
    u->w = w;
    u->server = s;
    u->connecting = 1;
    if (bl_loop_add(w->loop, &u->io) != BL_OK) {
        close(fd);
        free(u);
        return NULL;
    }
    w->nupconns++;
    return u;
}

/* Keeps u for reuse if the group allows; closes it otherwise. */
void bl_upconn_release(struct bl_upconn *u, int reusable)
{
    struct bl_upstream_group *g = u->server->group;
    u->req = NULL;
    struct bl_idle_pool *p = &u->w->idle[u->server->id];
    if (!reusable || g->keepalive == 0 || p->count >= g->keepalive || u->w->draining ||
        u->nrequests >= g->keepalive_requests || (u->in && bl_buf_len(u->in))) {
        bl_upconn_close(u);
        return;
    }
    bl_buf_put(u->in);
    u->in = NULL;
    u->idle = 1;
    u->prev = NULL;
    u->next = p->head;
    if (p->head)
        p->head->prev = u;
    p->head = u;
    p->count++;
    bl_arm(u->w, &u->timer, g->keepalive_timeout_ms);
}

void bl_http_close_upstream_pools(struct bl_worker *w)
{
    for (uint32_t i = 0; i < w->cfg->nupstream_servers; i++)
        while (w->idle[i].head)
            bl_upconn_close(w->idle[i].head);
}
