"""Keep-alive after the answers ballast generates itself, side by side with nginx 1.22: a 502,
503, 504, 404 or 429 keeps the client's connection when the request was read whole (nginx's
ngx_http_special_response_handler ends it only for 400, 413, 414, 495-497, 500, 501, and 408
ends it too); a request whose body is still unread is answered and the connection closed."""
import socket
import threading

import pytest

from conftest import SLOW, Ballast, Conn, build_request, closed_port, free_port, render
from nginx_ref import Nginx

HTTP = """
limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
server {
    listen 127.0.0.1:@port@;
    location / { proxy_pass http://127.0.0.1:@down@; }
    location /gone { return 404; }
    location /slow { proxy_pass http://127.0.0.1:@mute@; proxy_read_timeout 1s; }
    location /limited {
        limit_req zone=one;
        limit_req_status 429;
        proxy_pass http://127.0.0.1:@down@;
    }
}
"""

GET = ("GET", "/", None)
POST = ("POST", "/", b"x" * 300)
SEQUENCES = {
    "502s": [GET, GET, GET],
    "post-502-then-get": [POST, GET],
    "404s": [("GET", "/gone", None), ("GET", "/gone", None)],
    "429-after-502": [("GET", "/limited", None), ("GET", "/limited", None), GET],
    "504-then-502": [("GET", "/slow", None), GET],
    "400-closes": [GET, b"GET /a b c d\r\n\r\n", GET],
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(ballast port, nginx port) serving HTTP; the same unreachable and mute upstreams."""
    base = tmp_path_factory.mktemp("keepalive_errors")
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(64)  # never accepts: connects succeed, nothing is ever answered
    values = {"down": closed_port(), "mute": mute.getsockname()[1]}
    nvals = dict(values, port=free_port())
    n = Nginx(str(base / "nginx"), render(HTTP, nvals), access_log_off=True)
    b = Ballast(str(base / "ballast"), "http {\n%s\n}\n" % HTTP, values=dict(values))
    try:
        n.wait_listening(nvals["port"])
        b.start()
        yield b.port, nvals["port"]
    finally:
        problems = b.finish()
        n.stop()
        mute.close()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def run(port, steps):
    """The steps on one connection: [(status, 'kept' or 'closed')], up to the first close."""
    out = []
    with Conn(port, timeout=10 * SLOW) as c:
        for step in steps:
            if isinstance(step, bytes):
                c.send(step)
            else:
                method, path, body = step
                c.send(build_request(method, path, body=body))
            r = c.read_response(step[0] if not isinstance(step, bytes) else "GET")
            if r.has_token("Connection", "close"):
                assert c.closed(), "Connection: close said, the connection stayed open"
                out.append((r.status, "closed"))
                return out
            out.append((r.status, "kept"))
    return out


WANT = {
    "502s": [(502, "kept")] * 3,
    "post-502-then-get": [(502, "kept"), (502, "kept")],
    "404s": [(404, "kept"), (404, "kept")],
    "429-after-502": [(502, "kept"), (429, "kept"), (502, "kept")],
    "504-then-502": [(504, "kept"), (502, "kept")],
    "400-closes": [(502, "kept"), (400, "closed")],
}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_same_connection_fate_as_nginx(pair, name):
    bport, nport = pair
    got = run(bport, SEQUENCES[name])
    want = run(nport, SEQUENCES[name])
    assert want == WANT[name], "nginx itself: %r" % want
    assert got == want, "ballast %r, nginx %r" % (got, want)


def test_unread_body_closes(pair):
    """A 404 before a body that has not come (the head alone sent): ballast answers and closes
    rather than take the body for the next request."""
    bport, _ = pair
    with Conn(bport, timeout=10 * SLOW) as c:
        c.send(b"POST /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        r = c.read_response("POST")
        assert r.status == 404
        assert r.has_token("Connection", "close")
