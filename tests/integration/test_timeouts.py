"""Client-side timeouts: a slow or idle client is answered 408 or closed in time, and never
holds up other connections."""
import functools
import socket
import threading
import time

import pytest

from conftest import SLOW, Conn, ConnectionClosed, proxy_conf


# Every config here: location / proxies to one backend on @pb@, /r answers "r" itself.
conf = functools.partial(proxy_conf, "127.0.0.1:@pb@", server='location = /r { return 200 "r"; }')


def expect_408_or_close(c, lo, hi):
    """Waits for a 408 answer or a close; returns the elapsed time. Fails outside [lo, hi]."""
    t0 = time.monotonic()
    c.sock.settimeout(hi * SLOW + 2)
    try:
        r = c.read_response()
        assert r.status == 408, "want 408 or close, got %r" % r
        assert c.closed(2), "connection open after 408"
    except ConnectionClosed:
        pass
    dt = time.monotonic() - t0
    assert lo <= dt <= hi * SLOW, "answered/closed after %.2fs, want [%.1f, %.1f]" % (dt, lo, hi)
    return dt


def test_client_header_timeout_partial_head(ballast, backend):
    be = backend("b")
    b = ballast(conf(http="client_header_timeout 1s;"), pb=be.port)
    with b.conn(timeout=10) as c:
        c.send(b"GET / HTTP/1.1\r\nHo")
        expect_408_or_close(c, 0.8, 3.5)
    assert be.requests == []


def test_client_header_timeout_partial_head_on_keepalive(ballast, backend):
    """The next request's head on a kept-alive connection gets client_header_timeout from its
    first byte, not the longer keepalive_timeout (the header deadline is armed only when a head
    does not come whole: proxy.c client_read_head), whether the first bytes come alone or with
    a whole request before them."""
    be = backend("b")
    b = ballast(conf(http="client_header_timeout 1s; keepalive_timeout 30s;"), pb=be.port)
    with b.conn(timeout=10) as c:
        r = c.request("GET", "/r")
        assert r.status == 200, r
        c.send(b"GET /r HTTP/1.1\r\nHo")
        expect_408_or_close(c, 0.8, 3.5)
    with b.conn(timeout=10) as c:
        r = c.request("GET", "/r")
        assert r.status == 200, r
        c.send(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\nGET /r HTTP/1.1\r\nHo")
        r = c.read_response()
        assert r.status == 200, r
        expect_408_or_close(c, 0.8, 3.5)


def test_client_header_timeout_nothing_sent(ballast, backend):
    be = backend("b")
    b = ballast(conf(http="client_header_timeout 1s;"), pb=be.port)
    with b.conn(timeout=10) as c:
        expect_408_or_close(c, 0.8, 3.5)


def test_client_header_timeout_is_not_reset_by_trickling(ballast, backend):
    """Slowloris: a byte every 200 ms does not extend the header deadline forever."""
    be = backend("b")
    b = ballast(conf(http="client_header_timeout 1s;"), pb=be.port)
    with b.conn(timeout=10) as c:
        t0 = time.monotonic()
        closed = False
        for ch in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 60:
            try:
                c.send(bytes([ch]))
            except OSError:
                closed = True
                break
            if c.closed(0.2 / SLOW):
                closed = True
                break
            if c.buf:
                closed = True  # a 408 arrived
                break
        dt = time.monotonic() - t0
        assert closed, "a trickling client kept its connection for %.1fs" % dt
        assert dt < 5 * SLOW, dt


def test_client_body_timeout(ballast, backend):
    be = backend("b")
    b = ballast(conf(http="client_body_timeout 1s;"), pb=be.port)
    with b.conn(timeout=10) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        t0 = time.monotonic()
        try:
            r = c.read_response()
            assert r.status == 408, "want 408 or close, got %r" % r
        except ConnectionClosed:
            pass
        assert c.closed(3), "connection open after the body timeout"
        dt = time.monotonic() - t0
        assert 0.8 <= dt <= 4 * SLOW, "closed after %.2fs with client_body_timeout 1s" % dt


def test_keepalive_timeout_closes_idle(ballast, backend):
    be = backend("b")
    b = ballast(conf(http="keepalive_timeout 1s;"), pb=be.port)
    with b.conn(timeout=10) as c:
        r = c.request("GET", "/r")
        assert r.status == 200, r
        t0 = time.monotonic()
        assert c.closed(4), "idle keep-alive connection still open after 4s"
        dt = time.monotonic() - t0
        assert 0.8 <= dt, "idle connection closed after only %.2fs" % dt
    with b.conn(timeout=10) as c:
        # activity restarts the idle timer: requests every 0.5s for 2s keep the connection
        for i in range(4):
            r = c.request("GET", "/r")
            assert r.status == 200, (i, r)
            time.sleep(0.5)


def test_keepalive_timeout_zero_disables_keepalive(ballast, backend):
    be = backend("b")
    b = ballast(conf(http="keepalive_timeout 0;"), pb=be.port)
    with b.conn() as c:
        r = c.request("GET", "/r")
        assert r.status == 200, r
        assert c.closed(2), "keepalive_timeout 0 must close after each response"


def test_slow_clients_do_not_block_others(ballast, backend):
    """20 clients trickling heads and 5 clients stalled mid-body, with one worker: normal
    requests keep being answered quickly."""
    be = backend("b")
    b = ballast(conf(http="client_header_timeout 30s; client_body_timeout 30s;"), pb=be.port)
    stop = threading.Event()
    slow = []
    try:
        for i in range(20):
            slow.append(Conn(b.port, 10))
        stalled = [Conn(b.port, 10) for _ in range(5)]
        slow += stalled
        for c in stalled:
            c.send(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")

        def trickle():
            n = 0
            while not stop.is_set() and n < 200:
                for c in slow[:20]:
                    try:
                        c.send(b"X" if n else b"GET /slow HTTP/1.1\r\nHost: x\r\nX-A: ")
                    except OSError:
                        pass
                n += 1
                stop.wait(0.05)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        worst = 0.0
        for i in range(40):
            t0 = time.monotonic()
            with b.conn() as c:
                r = c.request("GET", "/fast/%d" % i)
                assert r.status == 200, r
                r = c.request("GET", "/r")
                assert r.status == 200, r
            worst = max(worst, time.monotonic() - t0)
        assert worst < 1.0 * SLOW, "a normal request took %.2fs next to slow clients" % worst
    finally:
        stop.set()
        for c in slow:
            c.close()


def test_slow_reader_does_not_block_others(ballast, backend):
    """A client that never reads its (large) response does not stall the worker."""
    be = backend("b")
    b = ballast(conf(), pb=be.port)
    with b.conn(timeout=10, rcvbuf=4096) as hog:
        hog.send(b"GET /big?size=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert be.wait_requests(1)
        time.sleep(0.3)
        t0 = time.monotonic()
        for i in range(20):
            r = b.get("/fast/%d" % i)
            assert r.status == 200, r
        assert time.monotonic() - t0 < 2 * SLOW


def test_send_timeout_closes_a_client_that_stops_reading(ballast, backend):
    be = backend("b")
    b = ballast(conf(http="send_timeout 1s;"), pb=be.port)
    with b.conn(timeout=10, rcvbuf=4096) as c:
        c.send(b"GET /big?size=100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert be.wait_requests(1)
        time.sleep(3.0 * SLOW)  # read nothing: ballast's writes stall for longer than 1s
        # now drain: the stream must end (closed) well before 100 MB arrive
        got = 0
        c.sock.settimeout(5 * SLOW)
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 10 * SLOW:
                d = c.sock.recv(1 << 20)
                if not d:
                    break
                got += len(d)
        except (ConnectionResetError, socket.timeout):
            pass
        assert got < 50_000_000, "send_timeout did not close a stalled client (%d bytes)" % got


def test_proxy_send_timeout(ballast, backend):
    """The upstream stops reading the request body: after proxy_send_timeout ballast gives up
    (504, or a close if it could not answer)."""
    be = backend("b")
    b = ballast(conf(http="client_max_body_size 0;", location="proxy_send_timeout 1s;"),
                pb=be.port)
    size = 200_000_000
    with b.conn(timeout=15) as c:
        c.send(b"POST /u?readdelay=30 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        c.sock.settimeout(0.2)
        block = b"z" * 65536
        sent = 0
        t0 = time.monotonic()
        outcome = None
        while time.monotonic() - t0 < 10 * SLOW and sent < size:
            try:
                sent += c.sock.send(block)
            except socket.timeout:
                # writes stalled: see whether ballast has answered or closed
                if c.closed(0.01):
                    outcome = "closed"
                    break
                if c.buf:
                    outcome = "answered"
                    break
            except (BrokenPipeError, ConnectionResetError):
                outcome = "closed"
                break
        dt = time.monotonic() - t0
        assert outcome, "no answer and no close %.1fs into a stalled upload (%d bytes sent)" % (
            dt, sent)
        if outcome == "answered":
            c.sock.settimeout(5)
            r = c.read_response("POST")
            assert r.status == 504, r
        assert dt < 8 * SLOW, (outcome, dt)
