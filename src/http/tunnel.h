/* The byte tunnel a request becomes after an upstream's 101 Switching Protocols (WebSocket and
 * any other Upgrade), as nginx's upgraded connections: the client's and the upstream's
 * connections are joined both ways with back-pressure through the two buffers the request
 * already holds (the client's input and the upstream's), so memory stays at those 2 x 32 KiB
 * whatever flows. Each direction ends on its own (a half-close is passed on with shutdown once
 * that side's bytes went); the tunnel ends when both have, on an error, or when nothing moved
 * either way for proxy_read_timeout. It is then logged (status 101, the bytes sent to the
 * client) and both connections close: neither is ever reused.
 * Internal to src/http; one worker thread. */
#ifndef BL_HTTP_TUNNEL_H
#define BL_HTTP_TUNNEL_H

#include <stdint.h>

struct bl_request;

/* Per-request tunnel state (bl_request.tun); zero until bl_tunnel_start(). */
struct bl_tunnel {
    uint8_t on;                     /* the request is a tunnel */
    uint8_t up_eof, up_shut;        /* client -> upstream: client sent EOF; passed on */
    uint8_t down_eof, down_shut;    /* upstream -> client: upstream sent EOF; passed on */
};

/* Whether a 101 in answer to r may start a tunnel: the client asked for an Upgrade over
 * HTTP/1.1 (nginx relays a 101 only then). */
int bl_tunnel_wanted(const struct bl_request *r);

/* Starts the tunnel once the 101 head for the client is in r->out and the upstream's bytes
 * after its head are in r->a.conn->in; runs it as far as it goes now. */
void bl_tunnel_start(struct bl_request *r);

/* Moves what can move both ways; ends the tunnel when it is over. */
void bl_tunnel_run(struct bl_request *r);

/* proxy_read_timeout passed with nothing moving: ends the tunnel. */
void bl_tunnel_timeout(struct bl_request *r);

#endif
