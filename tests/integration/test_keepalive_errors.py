"""Keep-alive after the answers ballast generates itself, side by side with nginx 1.22: a 502,
503, 504, 404 or 429 keeps the client's connection when the request was read whole (nginx's
ngx_http_special_response_handler ends it only for 400, 413, 414, 495-497, 500, 501, and 408
ends it too); a request whose body is still unread is answered, then its body is read and
dropped (up to 1 MiB; past that, or awaiting 100-continue, the connection closes)."""
import socket
import time

import pytest

from conftest import SLOW, Ballast, Conn, build_request, closed_port, free_port, render
from nginx_ref import Nginx

HTTP = """
limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
server {
    listen 127.0.0.1:@port@;
    client_max_body_size 10m;
    client_body_timeout 2s;
    location / { proxy_pass http://127.0.0.1:@down@; }
    location /gone { return 404; }
    location /ret { return 200 "ok"; }
    location /denied { deny all; }
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


@pytest.mark.parametrize("who", ["ballast", "nginx"])
def test_body_after_the_failure_is_dropped(pair, who):
    """The upstream refuses before the body came: the body is read and dropped, then the 502
    keeps the connection, and a request pipelined behind the body is answered."""
    port = pair[0] if who == "ballast" else pair[1]
    with Conn(port, timeout=10 * SLOW) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        time.sleep(0.2)  # the connect is refused before the body comes (no timing asserted)
        c.send(b"y" * 5000 + build_request("GET", "/gone"))
        r = c.read_response("POST")
        assert (r.status, r.has_token("Connection", "close")) == (502, False)
        r = c.read_response("GET")
        assert (r.status, r.has_token("Connection", "close")) == (404, False)


@pytest.mark.parametrize("path,status", [("/ret", 200), ("/gone", 404), ("/denied", 403)])
@pytest.mark.parametrize("who", ["ballast", "nginx"])
def test_body_after_a_local_answer_is_dropped(pair, who, path, status):
    """A local answer (return, deny) goes before the body has come and keeps the connection;
    the body, which reads as a request of its own, is then read and dropped, never taken for
    the next request: the request pipelined behind it gets the one answer that follows."""
    port = pair[0] if who == "ballast" else pair[1]
    smuggled = b"GET /ret HTTP/1.1\r\nHost: x\r\n\r\n"
    with Conn(port, timeout=10 * SLOW) as c:
        c.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % (path.encode(), len(smuggled) + 5000))
        r = c.read_response("POST")
        assert (r.status, r.has_token("Connection", "close")) == (status, False)
        c.send(smuggled + b"y" * 5000 + build_request("GET", "/gone"))
        r = c.read_response("GET")
        assert (r.status, r.has_token("Connection", "close")) == (404, False)
        c.send(build_request("GET", "/gone", headers={"Connection": "close"}))
        r = c.read_response("GET")
        assert r.status == 404 and c.closed() and not c.buf


def test_dropped_body_that_stops_closes(pair):
    """ballast: after the answer, a body that stops coming closes the connection once
    client_body_timeout passes; one whose client goes away ends there."""
    bport, _ = pair
    for close_first in (False, True):
        with Conn(bport, timeout=10 * SLOW) as c:
            c.send(b"POST /ret HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            r = c.read_response("POST")
            assert (r.status, r.has_token("Connection", "close")) == (200, False)
            c.send(b"x" * 10)
            if close_first:
                continue
            assert c.closed(timeout=10) and not c.buf
    with Conn(bport, timeout=10 * SLOW) as c:  # the server goes on
        c.send(build_request("GET", "/ret"))
        assert c.read_response("GET").status == 200


def test_unread_body_closes(pair):
    """A body that has not come and is not dropped (past ballast's 1 MiB bound, or one whose
    100-continue was not sent): ballast answers and closes rather than take the body for the
    next request."""
    bport, _ = pair
    for path, length, expect, status in (("/", 2 << 20, False, 502),
                                         ("/gone", 2 << 20, False, 404),
                                         ("/ret", 100, True, 200)):
        with Conn(bport, timeout=10 * SLOW) as c:
            c.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
                   % (path.encode(), length, b"Expect: 100-continue\r\n" if expect else b""))
            r = c.read_response("POST")
            assert r.status == status
            assert r.has_token("Connection", "close")
            assert c.closed()
