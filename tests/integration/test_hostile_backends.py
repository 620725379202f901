"""Backends that misbehave (issue 12): endless headers, a body longer than its Content-Length, a
response that never ends, a backend that accepts and never reads, garbage and a close mid-body.
Each is bounded (memory, time), logged, and the client answered: 502/504 while no byte of the
response went, otherwise the client connection is closed so the client sees the truncation. A
connection that misbehaved is never pooled: the next request opens a new one."""
import functools
import socket
import threading
import time

import pytest

from conftest import (SLOW, Backend, Conn, ConnectionClosed, IncompleteResponse, RssSampler,
                      build_request, free_port, proxy_conf, wait_for)
from nginx_ref import Nginx

# One backend group with a keep-alive pool (so "never pooled" is observable), short timeouts.
conf = functools.partial(proxy_conf, ["127.0.0.1:@pb@"], keepalive=4,
                         location="proxy_read_timeout 1s; proxy_send_timeout 1s;",
                         http="client_max_body_size 0;")


class Seen:
    """What a raw handler saw of ballast's side of the connection."""

    def __init__(self):
        self.cut = threading.Event()      # ballast closed the connection on the backend
        self.bytes = 0


def wait_cut(sock, seen, limit):
    """Reads until ballast closes (EOF or reset), at most `limit` seconds."""
    sock.settimeout(0.2)
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            d = b""
        if not d:
            seen.cut.set()
            return


def endless_headers(seen, one_line=False):
    """Header fields that never end: many short ones, or one line that never ends."""
    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        line = b"a" * 10000 if one_line else (b"X-Endless: " + b"a" * 100 + b"\r\n") * 100
        try:
            c.send(b"HTTP/1.1 200 OK\r\n" + (b"X-Endless: " if one_line else b""))
            while seen.bytes < 20_000_000 and not c.backend.stopping.is_set():
                c.send(line)
                seen.bytes += len(line)
        except OSError:
            seen.cut.set()
        return False
    return fn


@pytest.mark.parametrize("one_line", [False, True], ids=["many_fields", "one_line"])
def test_endless_headers_502_bounded_logged(ballast, backend, one_line):
    seen = Seen()
    be = backend("b", io_timeout=10)
    be.route("/endless", endless_headers(seen, one_line))
    b = ballast(conf(), pb=be.port)
    with RssSampler(b.pid) as rss:
        before = rss.max
        with b.conn(timeout=10) as c:
            r = c.request("GET", "/endless")
        assert r.status == 502, r
        assert r.header("x-endless") is None, r
    assert seen.cut.wait(5 * SLOW), "ballast kept reading an endless header (%d bytes)" % seen.bytes
    assert seen.bytes < 5_000_000, seen.bytes
    assert rss.max - before < 16 * 1024, "RSS grew %d KB" % (rss.max - before)
    err = b.stderr_text()
    assert ("upstream sent too big header" in err or "too many header fields" in err or
            "sent invalid header" in err), err
    # the next request is answered on a new connection
    r = b.get("/ok")
    assert r.status == 200, r
    assert be.accepted == 2, be.accepted


def longer_than_announced(extra_delay):
    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Backend: lie\r\n\r\nhello"
        evil = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Backend: evil\r\n\r\nevil"
        if extra_delay:
            c.send(head)
            c.sleep(extra_delay)
            c.send(evil)
        else:
            c.send(head + evil)
        return True  # keep the connection: a proxy that pools it serves "evil" next
    return fn


@pytest.mark.parametrize("extra_delay", [0, 0.3], ids=["same_write", "later"])
def test_body_longer_than_content_length_not_pooled(ballast, backend, extra_delay):
    """The bytes past Content-Length are dropped, the response ends at its length, the upstream
    connection is closed (not reused), and no request ever gets the extra bytes as its answer."""
    be = backend("b")
    be.route("/lie", longer_than_announced(extra_delay))
    b = ballast(conf(main="error_log stderr warn;"), pb=be.port)
    with b.conn() as c:
        r = c.request("GET", "/lie")
        assert r.status == 200 and r.body == b"hello", r
        if extra_delay:
            time.sleep(extra_delay + 0.3)
        for i in range(3):
            r = c.request("GET", "/ok/%d" % i)
            assert r.status == 200 and r.header("x-backend") == "b", (i, r)
    assert be.accepted == 2, "the lying connection was reused (%d accepted)" % be.accepted
    if not extra_delay:
        assert "sent more data than specified in \"Content-Length\"" in b.stderr_text()


def stall_mid_body(seen):
    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100000)
        wait_cut(c.sock, seen, 10 * SLOW)
        return False
    return fn


def test_response_that_stops_mid_body_is_cut(ballast, backend):
    """proxy_read_timeout between two reads of the body: the client sees the truncation (its
    connection closed), the upstream connection is closed, the timeout logged."""
    seen = Seen()
    be = backend("b")
    be.route("/stall", stall_mid_body(seen))
    b = ballast(conf(), pb=be.port)
    with b.conn(timeout=10) as c:
        c.send(build_request("GET", "/stall"))
        with pytest.raises(IncompleteResponse) as e:
            c.read_response()
        assert e.value.response.status == 200 and e.value.response.body_len == 100000
    assert seen.cut.wait(5 * SLOW), "the upstream connection stayed open"
    assert "upstream timed out while reading the response body" in b.stderr_text()
    assert b.get("/ok").status == 200


def never_ending(seen):
    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        block = b"y" * 65536
        try:
            c.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
            while seen.bytes < 2_000_000_000 and not c.backend.stopping.is_set():
                c.send(block)
                seen.bytes += len(block)
        except OSError:
            seen.cut.set()
        return False
    return fn


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_never_ending_response_bounded(ballast, backend, framing):
    """A body that never ends streams with bounded memory; when the client goes, the upstream
    connection is closed (the backend's writes fail) instead of being read to its end."""
    seen = Seen()
    be = backend("b", io_timeout=10)
    if framing == "close":
        be.route("/forever", never_ending(seen))
        path = "/forever"
    else:
        # a chunked body whose chunks keep coming: the backend's own size=... with a huge size
        path = "/forever?size=100000000000&chunked=1"
    b = ballast(conf(), pb=be.port)
    with RssSampler(b.pid) as rss:
        before = rss.max
        with b.conn(timeout=10) as c:
            c.send(build_request("GET", path))
            r = c.read_head()
            assert r.status == 200, r
            got = len(c.buf)
            c.buf = b""
            while got < 50_000_000:
                d = c.sock.recv(1 << 20)
                assert d, "the stream ended after %d bytes" % got
                got += len(d)
        grew = rss.max - before
    assert grew < 16 * 1024, "RSS grew %d KB while relaying 50 MB" % grew
    if framing == "close":
        assert seen.cut.wait(5 * SLOW), "upstream still streaming after the client left"
    else:
        assert wait_for(lambda: be.errors or len(be.conns) == 0, 5), "upstream still streaming"
    assert b.get("/ok").status == 200


TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8


def never_reads(seen):
    def fn(req, c):
        c.backend.record(req)  # reads nothing of the body, answers nothing
        # ballast's FIN (or RST) waits behind the unread body: watch the socket's TCP state
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 * SLOW and not c.backend.stopping.is_set():
            state = c.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
            if state in (TCP_CLOSE, TCP_CLOSE_WAIT):
                seen.cut.set()
                break
            time.sleep(0.05)
        return False
    return fn


@pytest.mark.parametrize("size", [1000, 200_000_000], ids=["small", "large"])
def test_backend_that_never_reads_the_upload(ballast, backend, size):
    """A backend that accepts and never reads: a large upload stalls (proxy_send_timeout), a
    small one waits for an answer (proxy_read_timeout); either way 504 (or a close when the
    answer cannot go), logged, and the upstream connection closed."""
    seen = Seen()
    be = backend("b")
    be.route("/up", never_reads(seen))
    b = ballast(conf(), pb=be.port)
    with b.conn(timeout=15) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        c.sock.settimeout(0.2)
        block = b"z" * min(size, 65536)
        sent = 0
        t0 = time.monotonic()
        outcome = None
        while time.monotonic() - t0 < 10 * SLOW:
            if sent < size:
                try:
                    sent += c.sock.send(block[:size - sent])
                    continue
                except socket.timeout:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    outcome = "closed"
                    break
            if c.closed(0.05):
                outcome = "closed"
                break
            if c.buf:
                outcome = "answered"
                break
        assert outcome, "no answer %.1fs into an upload nobody reads" % (time.monotonic() - t0)
        if outcome == "answered":
            c.sock.settimeout(5)
            r = c.read_response("POST")
            assert r.status == 504, r
    assert seen.cut.wait(5 * SLOW), "the upstream connection stayed open"
    err = b.stderr_text()
    assert ("upstream timed out while sending the request" in err or
            "upstream timed out while reading the response" in err), err[-2000:]
    assert b.get("/ok").status == 200


def close_mid_body(req, c):
    c.backend.read_body(req, c)
    c.backend.record(req)
    c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"q" * 300)
    c.sleep(0.3)
    return False


def garbage_after_head(req, c):
    c.backend.read_body(req, c)
    c.backend.record(req)
    c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n")
    c.sleep(0.3)  # the head has gone to the client by now: it can only be cut
    c.send(b"\x00\xff garbage \r\n\r\n")
    c.sleep(2)
    return False


@pytest.mark.parametrize("name,fn,log", [
    ("close_mid_body", close_mid_body, "prematurely closed connection while reading response body"),
    ("garbage_mid_body", garbage_after_head, "sent invalid chunked body"),
])
def test_broken_body_after_head_truncates(ballast, backend, name, fn, log):
    be = backend("b")
    be.route("/broken", fn)
    b = ballast(conf(), pb=be.port)
    with b.conn() as c:
        c.send(build_request("GET", "/broken"))
        with pytest.raises((IncompleteResponse, ConnectionClosed, ValueError)):
            c.read_response()
        assert c.closed(3), "client connection left open after a broken upstream body"
    assert log in b.stderr_text()
    r = b.get("/ok")
    assert r.status == 200, r
    assert be.accepted == 2, be.accepted


def test_garbage_head_502_not_pooled(ballast, backend):
    be = backend("b")
    be.route("/garbage", lambda req, c: (c.backend.record(req),
                                         c.send(b"\x16\x03\x01 not http at all\r\n\r\n"), True)[2])
    b = ballast(conf(), pb=be.port)
    with b.conn() as c:
        r = c.request("GET", "/garbage")
        assert r.status == 502, r
    assert "sent invalid header" in b.stderr_text()
    assert b.get("/ok").status == 200
    assert be.accepted == 2, be.accepted


# nginx as the reference for the two answers a client can compare

NGINX_HTTP = """
upstream app { server 127.0.0.1:%(pb)d; keepalive 4; }
server {
    listen 127.0.0.1:%(port)d;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_read_timeout 1s; }
}
"""


def test_same_answers_as_nginx(tmp_path, ballast):
    """Endless headers: 502 from both. A body longer than its Content-Length: both relay the
    announced bytes and answer the next request from a new connection."""
    out = {}
    for who in ("ballast", "nginx"):
        seen = Seen()
        be = Backend("b")
        be.route("/endless", endless_headers(seen))
        be.route("/lie", longer_than_announced(0))
        n = None
        try:
            if who == "nginx":
                port = free_port()
                n = Nginx(str(tmp_path / "nginx"), NGINX_HTTP % {"pb": be.port, "port": port},
                          access_log_off=True)
                n.wait_listening(port)
            else:
                port = ballast(conf(), pb=be.port).port
            with Conn(port, 10) as c:
                endless = c.request("GET", "/endless").status
            with Conn(port, 10) as c:
                lie = c.request("GET", "/lie").body
                nxt = c.request("GET", "/ok").header("x-backend")
            out[who] = (endless, lie, nxt)
        finally:
            if n:
                n.stop()
            be.stop()
    assert out["ballast"] == out["nginx"], out
    assert out["ballast"] == (502, b"hello", "b"), out
