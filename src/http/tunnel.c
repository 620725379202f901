/* Upgraded connections (tunnel.h): the 101 head to the client, then bytes both ways. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "http/proxy_int.h"
#include "http/tunnel.h"

int bl_tunnel_wanted(const struct bl_request *r)
{
    if (r->msg.minor_version != 1)
        return 0;
    for (uint32_t i = 0; i < r->msg.nheaders; i++)
        if (r->msg.headers[i].id == BL_H1_HDR_UPGRADE)
            return 1;
    return 0;
}

/* The client's write side is done: TLS says so with close_notify, then TCP's FIN. */
static void client_shut(struct bl_client *c)
{
    if (c->tls)
        bl_tls_shutdown(c->tls);
    bl_loop_shutdown_wr(c->w->loop, &c->io); /* after a staged send (io_uring) */
}

/* Client -> upstream through c->in, whose bytes from start to end are still to go; the request
 * head before r->head_end stays (the access log reads it). BL_OK, or BL_ERR on an error. */
static int pump_up(struct bl_request *r, int *moved)
{
    struct bl_client *c = r->c;
    struct bl_upconn *u = r->a.conn;
    struct bl_tunnel *t = &r->tun;
    struct bl_buf *b = c->in;
    for (;;) {
        if (bl_buf_len(b) && u->wready) {
            struct iovec iov = {b->data + b->start, bl_buf_len(b)};
            ssize_t w = bl_upstream_writev(u, &iov, 1);
            if (w == BL_ERR)
                return BL_ERR;
            if (w > 0) {
                b->start += (uint32_t)w;
                *moved = 1;
            }
        }
        if (bl_buf_len(b) == 0)
            b->start = b->end = r->head_end;
        if (t->up_eof || !c->rready || bl_buf_room(b) == 0 || bl_buf_len(b))
            break; /* nothing to read, or what was read waits for the upstream */
        ssize_t n = bl_client_read(c, b);
        if (n == BL_AGAIN)
            break;
        if (n < 0)
            return BL_ERR;
        *moved = 1;
        if (n == 0)
            t->up_eof = 1;
    }
    if (t->up_eof && bl_buf_len(b) == 0 && !t->up_shut) {
        if (u->tls)
            bl_tls_shutdown(u->tls);
        bl_loop_shutdown_wr(u->pool->loop, &u->io);
        t->up_shut = 1;
    }
    return BL_OK;
}

/* Upstream -> client through u->in. */
static int pump_down(struct bl_request *r, int *moved)
{
    struct bl_client *c = r->c;
    struct bl_upconn *u = r->a.conn;
    struct bl_tunnel *t = &r->tun;
    struct bl_buf *b = u->in;
    for (;;) {
        if (bl_buf_len(b) && c->wready) {
            struct iovec iov = {b->data + b->start, bl_buf_len(b)};
            ssize_t w = bl_client_writev(c, &iov, 1);
            if (w == BL_ERR)
                return BL_ERR;
            if (w > 0) {
                b->start += (uint32_t)w;
                r->bytes_out += (uint64_t)w;
                r->body_bytes_sent += (uint64_t)w;
                *moved = 1;
            }
        }
        if (bl_buf_len(b) == 0)
            b->start = b->end = 0;
        if (t->down_eof || !u->rready || bl_buf_room(b) == 0 || bl_buf_len(b))
            break;
        ssize_t n = bl_upstream_read(u, b);
        if (n == BL_AGAIN)
            break;
        if (n < 0)
            return BL_ERR;
        *moved = 1;
        if (n == 0)
            t->down_eof = 1;
    }
    if (t->down_eof && bl_buf_len(b) == 0 && !t->down_shut) {
        client_shut(c);
        t->down_shut = 1;
    }
    return BL_OK;
}

static void tunnel_end(struct bl_request *r, const char *why)
{
    bl_log(BL_LOG_DEBUG, "tunnel of client %s ends: %s", r->c->ip, why);
    bl_request_end(r);
}

void bl_tunnel_run(struct bl_request *r)
{
    struct bl_client *c = r->c;
    struct bl_upconn *u = r->a.conn;
    /* The 101 head first: nothing of the tunnel may overtake it. */
    if (r->out && r->out_sent < r->out->end) {
        if (!c->wready)
            return;
        struct iovec iov = {r->out->data + r->out_sent, r->out->end - r->out_sent};
        ssize_t w = bl_client_writev(c, &iov, 1);
        if (w == BL_ERR) {
            tunnel_end(r, "client write failed");
            return;
        }
        if (w > 0) {
            r->out_sent += (uint32_t)w;
            r->bytes_out += (uint64_t)w;
        }
        if (r->out_sent < r->out->end)
            return;
    }
    int moved = 0, any = 0;
    do {
        moved = 0;
        if (pump_up(r, &moved) != BL_OK) {
            tunnel_end(r, errno ? strerror(errno) : "upstream write failed");
            return;
        }
        if (pump_down(r, &moved) != BL_OK) {
            tunnel_end(r, errno ? strerror(errno) : "client write failed");
            return;
        }
        any |= moved;
    } while (moved);
    if (r->tun.up_shut && r->tun.down_shut) {
        tunnel_end(r, "both sides closed");
        return;
    }
    /* Either direction moving keeps the tunnel alive (nginx: proxy_read_timeout). */
    if (any)
        bl_arm(c->w, &u->timer, r->loc->conf.proxy_read_timeout);
}

void bl_tunnel_start(struct bl_request *r)
{
    struct bl_client *c = r->c;
    struct bl_tunnel *t = &r->tun;
    t->on = 1;
    r->keep_alive = 0;
    r->up_reusable = 0;
    r->resp_started = 1;
    r->request_handler = NULL;
    /* Bytes the client sent after the request head (a body nginx would have sent as such, or
     * early frames) go up first. */
    c->in->start = r->body_sent;
    if (c->in->start > c->in->end)
        c->in->start = c->in->end;
    bl_timer_cancel(c->w->loop, &c->timer);
    bl_arm(c->w, &r->a.conn->timer, r->loc->conf.proxy_read_timeout);
    bl_tunnel_run(r);
}

void bl_tunnel_timeout(struct bl_request *r)
{
    bl_log(BL_LOG_INFO, "tunnel of client %s to %s idle for proxy_read_timeout, closed",
           r->c->ip, r->a.server ? r->a.server->name : "?");
    tunnel_end(r, "proxy_read_timeout");
}
