"""Big bodies stream through ballast in bounded memory, both ways, with Content-Length and
chunked, and a slow reader (or a slow upstream reader) gets back-pressure instead of ballast
buffering the body."""
import socket
import threading
import time

import pytest

from conftest import (ASAN, SLOW, Conn, RssSampler, body_sha256, build_request, gen_blocks,
                      proxy_conf, wait_for)

# 100 MB normally. Under ASan (BALLAST_ASAN=1) every byte costs far more and the point of that
# run is memory errors, not volume, so the transfers shrink to 16 MB.
BIG = (16 if ASAN else 100) * 1024 * 1024
# Growth of ballast's VmRSS allowed during one transfer. Bounded buffers need a few MB at most;
# buffering the body would need BIG.
RSS_GROWTH_LIMIT_KB = 64 * 1024


@pytest.fixture
def be(backend):
    return backend("big", io_timeout=60)


@pytest.fixture
def px(ballast, be):
    b = ballast(proxy_conf(["127.0.0.1:@pb@"], group="big", keepalive=4,
                           http="client_max_body_size 0;"), pb=be.port)
    # warm up: first request allocates the pools; measure growth from there
    assert b.get("/warm").status == 200
    return b


def check_rss(px, sampler, base):
    growth = sampler.max - base
    assert growth < RSS_GROWTH_LIMIT_KB, \
        "ballast RSS grew by %d KB (base %d KB, peak %d KB) moving %d MB" % (
            growth, base, sampler.max, BIG >> 20)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_big_download(px, be, chunked):
    base = px.rss_kb()
    path = "/dl?size=%d&seed=21%s" % (BIG, "&chunked=1" if chunked else "")
    with RssSampler(px.pid) as s, Conn(px.port, 60) as c:
        r = c.request("GET", path, sink=lambda b: None)
    assert r.status == 200, r
    assert r.body_len == BIG, "got %d of %d bytes" % (r.body_len, BIG)
    assert r.body_sha256 == body_sha256(BIG, 21), "SHA-256 differs"
    check_rss(px, s, base)


def upload(port, chunked, size, seed):
    with Conn(port, 60) as c:
        if chunked:
            c.send(build_request("POST", "/ul", [("Transfer-Encoding", "chunked")]))
            for blk in gen_blocks(size, seed, 50000):
                c.send(b"%x\r\n" % len(blk) + blk + b"\r\n")
            c.send(b"0\r\n\r\n")
        else:
            c.send(build_request("POST", "/ul", [("Content-Length", str(size))]))
            for blk in gen_blocks(size, seed):
                c.send(blk)
        return c.read_response("POST")


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_big_upload(px, be, chunked):
    base = px.rss_kb()
    with RssSampler(px.pid) as s:
        r = upload(px.port, chunked, BIG, 22)
    assert r.status == 200, r
    echo = r.json()
    assert echo["body_len"] == BIG, echo
    assert echo["body_sha256"] == body_sha256(BIG, 22), "SHA-256 differs"
    check_rss(px, s, base)


def test_slow_reader_gets_backpressure(px, be):
    """A client that stops reading: the upstream is throttled (it cannot push the whole body
    into ballast) and ballast's memory stays flat; the body then arrives intact."""
    size = BIG
    base = px.rss_kb()
    with RssSampler(px.pid) as s, Conn(px.port, 60, rcvbuf=65536) as c:
        c.send(build_request("GET", "/slowread?size=%d&seed=23" % size))
        assert be.wait_requests(2)  # /warm and this one
        # stall: read nothing for a while; everything in flight is in socket buffers
        time.sleep(1.5 * SLOW)
        sent1 = be.body_bytes_sent
        time.sleep(0.5 * SLOW)
        sent2 = be.body_bytes_sent
        assert sent2 - sent1 < 1024 * 1024, \
            "upstream kept sending while the client read nothing (%d bytes in 0.5s)" % (sent2 - sent1)
        assert sent2 < size // 2 or size < 32 * 1024 * 1024, \
            "upstream pushed %d of %d bytes to a client that read nothing" % (sent2, size)
        stalled_peak = s.update()
        r = c.read_response(sink=lambda b: None)
    assert r.status == 200, r
    assert r.body_sha256 == body_sha256(size, 23)
    assert stalled_peak - base < RSS_GROWTH_LIMIT_KB, \
        "RSS grew %d KB while the client stalled" % (stalled_peak - base)
    check_rss(px, s, base)


def test_slow_upstream_reader_backpressures_client(px, be):
    """The upstream reads the request body only after 2 s: ballast stops reading from the
    client instead of buffering the upload."""
    size = BIG
    base = px.rss_kb()
    sent = [0]
    done = threading.Event()
    result = {}

    def send_all():
        try:
            with Conn(px.port, 60) as c:
                c.send(build_request("POST", "/ul?readdelay=%s" % (2 * SLOW),
                                     [("Content-Length", str(size))]))
                for blk in gen_blocks(size, 24):
                    c.send(blk)
                    sent[0] += len(blk)
                result["r"] = c.read_response("POST")
        except Exception as e:
            result["e"] = e
        finally:
            done.set()

    with RssSampler(px.pid) as s:
        t = threading.Thread(target=send_all, daemon=True)
        t.start()
        time.sleep(1.5 * SLOW)
        stalled = sent[0]
        stalled_peak = s.update()
        assert done.wait(60 * SLOW), "upload did not finish"
        t.join(5)
    assert "e" not in result, result.get("e")
    r = result["r"]
    assert r.status == 200, r
    assert r.json()["body_sha256"] == body_sha256(size, 24)
    # the client could only fill socket buffers and ballast's bounded buffers
    assert stalled < 48 * 1024 * 1024 or size <= 48 * 1024 * 1024, \
        "client pushed %d bytes while the upstream read nothing" % stalled
    assert stalled_peak - base < RSS_GROWTH_LIMIT_KB, \
        "RSS grew %d KB while the upstream did not read" % (stalled_peak - base)


def test_concurrent_downloads(px, be):
    """Eight parallel 1/8-size downloads, each intact."""
    size = BIG // 8
    results = [None] * 8
    base = px.rss_kb()

    def one(i):
        try:
            with Conn(px.port, 60) as c:
                r = c.request("GET", "/p%d?size=%d&seed=%d" % (i, size, 30 + i),
                              sink=lambda b: None)
                results[i] = (r.status, r.body_sha256 == body_sha256(size, 30 + i))
        except Exception as e:
            results[i] = repr(e)

    with RssSampler(px.pid) as s:
        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60 * SLOW)
    assert results == [(200, True)] * 8, results
    check_rss(px, s, base)


def test_response_relayed_before_upstream_finishes(px, be):
    """ballast streams: the first part of a body reaches the client while the upstream is
    still producing the rest."""

    def trickle(req, c):
        be.read_body(req, c)
        be.record(req)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + b"a" * 10000)
        if c.sleep(2.0):
            c.send(b"b" * 10000)
        return True

    be.route("/trickle", trickle)
    with Conn(px.port, 10) as c:
        c.send(build_request("GET", "/trickle"))
        t0 = time.monotonic()
        head = c.read_head()
        assert head.status == 200, head
        while len(c.buf) < 10000 and c._fill():
            pass
        dt = time.monotonic() - t0
        assert len(c.buf) >= 10000, "connection ended early"
        assert dt < 1.0 * SLOW, "first half of the body took %.2fs (buffered until the end?)" % dt
        c.buf = c.buf[10000:]
        while len(c.buf) < 10000 and c._fill():
            pass
        assert c.buf[:10000] == b"b" * 10000


def test_request_body_relayed_before_client_finishes(px, be):
    """The upstream sees the start of an upload while the client is still sending it."""
    half = threading.Event()

    def watch(req, c):
        while len(c.buf) < 9000:  # raw bytes, whatever framing ballast chose
            c._fill()
        half.set()
        be.read_body(req, c)
        be.record(req)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (
            len(str(req.body_len)), req.body_len))
        return True

    be.route("/watch", watch)
    with Conn(px.port, 10) as c:
        c.send(build_request("POST", "/watch", [("Content-Length", "20000")]) + b"x" * 10000)
        assert half.wait(2.0 * SLOW), \
            "the upstream got no body bytes while the client was still sending (buffered?)"
        c.send(b"y" * 10000)
        r = c.read_response("POST")
        assert (r.status, r.body) == (200, b"20000"), r
