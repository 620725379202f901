"""Upstream groups: smooth weighted round robin, keep-alive pools (reuse, and never reusing a
connection the server closed), 502 for refused/reset, 504 for timeouts."""
import socket
import time

import pytest

from conftest import SLOW, Conn, closed_port, hold_route, proxy_conf, reset_route


def test_weighted_round_robin_order(ballast, backend):
    a, b, c = backend("a"), backend("b"), backend("c")
    px = ballast(proxy_conf(["127.0.0.1:@pa@ weight=5", "127.0.0.1:@pb@", "127.0.0.1:@pc@"]),
                 pa=a.port, pb=b.port, pc=c.port)
    got = []
    with px.conn() as conn:
        for i in range(21):
            r = conn.request("GET", "/rr/%d" % i)
            assert r.status == 200, r
            got.append(r.header("x-backend"))
    want = list("aabacaa") * 3
    assert got == want, "got %s want %s" % ("".join(got), "".join(want))


def test_round_robin_equal_weights_spread(ballast, backend):
    bs = [backend(n) for n in "xyz"]
    px = ballast(proxy_conf(["127.0.0.1:@p%d@" % i for i in range(3)]),
                 **{"p%d" % i: b.port for i, b in enumerate(bs)})
    got = [px.get("/s/%d" % i).header("x-backend") for i in range(30)]
    assert {n: got.count(n) for n in "xyz"} == {"x": 10, "y": 10, "z": 10}, got
    # strict rotation: no server twice in a row
    assert all(got[i] != got[i + 1] for i in range(len(got) - 1)), got


def test_keepalive_reuse_one_client_connection(ballast, backend):
    be = backend("ka")
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=4), pb=be.port)
    with px.conn() as c:
        for i in range(100):
            r = c.request("GET", "/k/%d" % i)
            assert r.status == 200, (i, r)
    assert len(be.requests) == 100
    assert be.accepted == 1, "backend accepted %d connections for 100 sequential requests" % be.accepted


def test_keepalive_reuse_across_client_connections(ballast, backend):
    be = backend("ka")
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=4), pb=be.port)
    for i in range(50):
        r = px.get("/k/%d" % i)
        assert r.status == 200, (i, r)
    assert be.accepted == 1, "backend accepted %d connections for 50 sequential requests" % be.accepted


def test_keepalive_reuse_two_workers(ballast, backend):
    be = backend("ka")
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=4), workers=2, pb=be.port)
    for i in range(60):
        r = px.get("/k/%d" % i)
        assert r.status == 200, (i, r)
    # one pool per worker: a handful of connections, not one per request
    assert 1 <= be.accepted <= 4, "backend accepted %d connections for 60 requests" % be.accepted


def test_backend_connection_close_not_reused(ballast, backend):
    be = backend("closer")
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=4), pb=be.port)
    with px.conn() as c:
        for i in range(30):
            r = c.request("GET", "/cc/%d?connclose=1" % i)
            assert r.status == 200, (i, r)
            assert r.json()["target"].startswith("/cc/%d" % i)
    assert len(be.requests) == 30
    assert be.accepted == 30, be.accepted


def test_backend_silent_close_after_n_not_reused(ballast, backend):
    """The backend closes every connection after 3 answers without saying so."""
    be = backend("closer", close_after=3)
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=4), pb=be.port)
    with px.conn() as c:
        for i in range(30):
            r = c.request("GET", "/n/%d" % i)
            assert r.status == 200, (i, r)
    assert len(be.requests) == 30, len(be.requests)
    assert be.accepted >= 10, be.accepted


def test_idle_pooled_connection_closed_by_server(ballast, backend):
    """A pooled connection that the server closes while idle is dropped from the pool; the next
    request goes on a new connection and succeeds."""
    be = backend("idle")

    def answer_then_close_later(req, c):
        be.read_body(req, c)
        be.record(req)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: idle\r\n\r\nok")
        c.sleep(0.2)
        return False  # closes the idle keep-alive connection

    be.route("/", answer_then_close_later)
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=4), pb=be.port)
    with px.conn() as c:
        for i in range(5):
            r = c.request("GET", "/i/%d" % i)
            assert (r.status, r.body) == (200, b"ok"), (i, r)
            time.sleep(0.5)
    assert len(be.requests) == 5
    assert be.accepted == 5, be.accepted


def test_502_connection_refused(ballast):
    px = ballast(proxy_conf(["127.0.0.1:@pdead@"]), pdead=closed_port())
    t0 = time.monotonic()
    r = px.get("/refused")
    assert r.status == 502, r
    assert r.header("server").startswith("ballast"), r.headers
    assert time.monotonic() - t0 < 3 * SLOW


def test_502_literal_address_refused(ballast):
    px = ballast(proxy_conf("127.0.0.1:@pdead@"), pdead=closed_port())
    with px.conn() as c:
        r = c.request("GET", "/refused")
        assert r.status == 502, r
        # ballast's own error answer does not cost the client its connection
        if not r.has_token("connection", "close"):
            r = c.request("GET", "/again")
            assert r.status == 502, r


def test_502_reset(ballast, backend):
    be = backend("rst")
    be.route("/", reset_route)
    px = ballast(proxy_conf(["127.0.0.1:@pb@"]), pb=be.port)
    r = px.get("/reset")
    assert r.status == 502, r
    assert be.requests, "request never reached the backend"


def test_502_group_mixed_refused_and_alive(ballast, backend):
    """The live server keeps answering while its peer refuses."""
    be = backend("live")
    px = ballast(proxy_conf(["127.0.0.1:@pb@", "127.0.0.1:@pdead@"]),
                 pb=be.port, pdead=closed_port())
    statuses = [px.get("/m/%d" % i).status for i in range(10)]
    assert statuses.count(200) >= 5, statuses
    assert set(statuses) <= {200, 502}, statuses


def test_504_read_timeout(ballast, backend):
    be = backend("slow")
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], location="proxy_read_timeout 500ms;"),
                 pb=be.port)
    t0 = time.monotonic()
    r = px.get("/slow?delay=10", timeout=10)
    dt = time.monotonic() - t0
    assert r.status == 504, r
    assert r.header("server").startswith("ballast"), r.headers
    assert 0.4 <= dt < 3 * SLOW, "504 after %.2fs with proxy_read_timeout 500ms" % dt
    # a fast request still works afterwards
    r = px.get("/fast")
    assert r.status == 200, r


def test_504_read_timeout_hold(ballast, backend):
    be = backend("hold")
    be.route("/", hold_route(30))
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], location="proxy_read_timeout 1s;"),
                 pb=be.port)
    t0 = time.monotonic()
    r = px.get("/held", timeout=10)
    dt = time.monotonic() - t0
    assert r.status == 504, r
    assert 0.9 <= dt < 4 * SLOW, dt


@pytest.fixture
def blackhole():
    """A port whose accept queue is full: SYNs are dropped, so connect() hangs."""
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.bind(("127.0.0.1", 0))
    l.listen(0)
    fill = []
    for _ in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(l.getsockname())
        except BlockingIOError:
            pass
        fill.append(s)
    time.sleep(0.1)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect(l.getsockname())
        pytest.skip("cannot make a blackhole port on this kernel")
    except socket.timeout:
        pass
    finally:
        probe.close()
    yield l.getsockname()[1]
    for s in fill:
        s.close()
    l.close()


def test_504_connect_timeout(ballast, blackhole):
    px = ballast(proxy_conf(["127.0.0.1:@pbh@"], location="proxy_connect_timeout 500ms;"),
                 pbh=blackhole)
    t0 = time.monotonic()
    r = px.get("/connect", timeout=10)
    dt = time.monotonic() - t0
    assert r.status == 504, r
    assert 0.4 <= dt < 3 * SLOW, "answer after %.2fs with proxy_connect_timeout 500ms" % dt


def test_slow_upstream_does_not_block_others(ballast, backend):
    be = backend("mixed")
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=4), pb=be.port)
    slow = [Conn(px.port, 10) for _ in range(5)]
    try:
        for c in slow:
            c.send(b"GET /slow?delay=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert be.wait_requests(5)
        t0 = time.monotonic()
        for i in range(10):
            r = px.get("/fast/%d" % i)
            assert r.status == 200, r
        assert time.monotonic() - t0 < 1.5 * SLOW, "fast requests waited for slow ones"
        for c in slow:
            assert c.read_response().status == 200
    finally:
        for c in slow:
            c.close()
