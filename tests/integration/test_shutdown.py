"""Graceful stop on SIGTERM/SIGINT: listeners close at once, in-flight requests finish (up to
shutdown_timeout), idle keep-alive connections are closed, exit code 0."""
import signal
import threading
import time

import pytest

from conftest import SLOW, Conn, ConnectionClosed, port_refuses, proxy_conf, wait_for


def conf(main=""):
    return proxy_conf(["127.0.0.1:@pb@"], keepalive=4, main=main,
                      server='location = /r { return 200 "r"; }')


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_in_flight_request_completes(ballast, backend, sig):
    be = backend("slow")
    b = ballast(conf(), pb=be.port)
    with b.conn(timeout=15) as c:
        c.send(b"GET /slow?delay=1.5&size=200000&seed=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert be.wait_requests(1), "slow request did not reach the backend"
        t0 = time.monotonic()
        b.send_signal(sig)
        # listeners close promptly: new connections are refused
        assert wait_for(lambda: port_refuses(b.port, 0.5), 2.0), \
            "new connections still accepted after the signal"
        assert b.proc.poll() is None, "ballast exited before the in-flight request finished"
        r = c.read_response()
        assert r.status == 200, r
        assert r.body_len == 200000, r.body_len
        # the connection does not stay open for more requests
        assert r.has_token("connection", "close") or c.closed(3), \
            "connection kept open during shutdown"
    rc = b.wait(10)
    assert rc == 0, "exit code %r after the in-flight request, stderr:\n%s" % (rc, b.stderr_text())
    assert time.monotonic() - t0 < 8 * SLOW


def test_idle_keepalive_closed(ballast, backend):
    be = backend("b")
    b = ballast(conf(), pb=be.port)
    idle = []
    try:
        for i in range(5):
            c = Conn(b.port, 10)
            assert c.request("GET", "/r").status == 200
            idle.append(c)
        c = Conn(b.port, 10)  # proxied, so the upstream pool is not empty either
        assert c.request("GET", "/p").status == 200
        idle.append(c)
        t0 = time.monotonic()
        b.send_signal(signal.SIGTERM)
        for c in idle:
            assert c.closed(3), "idle keep-alive connection not closed on SIGTERM"
        rc = b.wait(5)
        assert rc == 0, "exit code %r" % rc
        # nothing was in flight: no reason to wait for shutdown_timeout (default 10s)
        assert time.monotonic() - t0 < 3 * SLOW, "took %.1fs to stop" % (time.monotonic() - t0)
    finally:
        for c in idle:
            c.close()


def test_shutdown_timeout_bounds_the_wait(ballast, backend):
    be = backend("hang")
    b = ballast(conf(main="shutdown_timeout 1s;"), pb=be.port)
    with b.conn(timeout=30) as c:
        c.send(b"GET /hang?delay=60 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert be.wait_requests(1)
        t0 = time.monotonic()
        b.send_signal(signal.SIGTERM)
        rc = b.wait(6)
        dt = time.monotonic() - t0
        assert rc is not None, "still running 6s after SIGTERM with shutdown_timeout 1s"
        assert rc == 0, "exit code %r" % rc
        assert 0.8 <= dt < 4 * SLOW, "stopped after %.2fs with shutdown_timeout 1s" % dt
        # the client is not left hanging
        try:
            c.read_response()
        except ConnectionClosed:
            pass
        assert c.closed(2)


def test_request_arriving_on_open_connection_during_shutdown(ballast, backend):
    """A keep-alive connection that is busy at the signal gets its response, then closes;
    ballast does not start new work on it forever."""
    be = backend("b")
    b = ballast(conf(), pb=be.port)
    with b.conn(timeout=15) as c:
        c.send(b"GET /a?delay=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert be.wait_requests(1)
        b.send_signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200, r
        # a request sent after that answer is either answered with Connection: close or
        # meets a closed connection; in both cases the connection ends
        try:
            c.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            r2 = c.read_response()
            assert r2.has_token("connection", "close"), r2
        except (ConnectionClosed, OSError):
            pass
        assert c.closed(3)
    assert b.wait(10) == 0


def test_stop_under_load(ballast, backend):
    """SIGTERM while 20 clients send requests in a loop: every answer already started is
    complete, and ballast exits 0."""
    be = backend("b")
    b = ballast(conf(), pb=be.port)
    stop = threading.Event()
    bad = []
    ok = [0]

    def client():
        deadline = time.monotonic() + 10 * SLOW
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                c = Conn(b.port, 5)
            except OSError:
                return  # refused: listeners closed
            try:
                while time.monotonic() < deadline:
                    c.send(b"GET /l?delay=0.05 HTTP/1.1\r\nHost: x\r\n\r\n")
                    r = c.read_response()
                    if r.status != 200:
                        bad.append(r.status)
                    ok[0] += 1
                    if r.has_token("connection", "close"):
                        break
            except (ConnectionClosed, OSError):
                pass  # closed between requests: allowed
            except Exception as e:
                bad.append(repr(e))
            finally:
                c.close()

    ts = [threading.Thread(target=client, daemon=True) for _ in range(20)]
    for t in ts:
        t.start()
    time.sleep(0.7)
    b.send_signal(signal.SIGTERM)
    rc = b.wait(12)
    stop.set()
    for t in ts:
        t.join(10)
    assert rc == 0, "exit code %r" % rc
    assert ok[0] > 20, ok[0]
    assert bad == [], bad
