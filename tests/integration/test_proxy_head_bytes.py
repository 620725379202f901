"""The heads ballast writes, byte for byte, in the usual case and around its fast paths
(bench/README.md, "Profile"): the request line as received or rewritten to HTTP/1.1, the
client's field lines as they came (or normalised), the lines ballast adds, in order; the
client's head with ballast's Server and Date, the upstream's fields after them."""
import re

import pytest

from conftest import proxy_conf

HEX32 = rb"[0-9a-f]{32}"


@pytest.fixture
def be(backend):
    return backend("app")


@pytest.mark.parametrize("keepalive", [None, 8])
@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2"])
def test_upstream_head_bytes(ballast, be, version, keepalive):
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=keepalive), pb=be.port)
    with px.conn() as c:
        c.send(b"GET /p/q?a=1 " + version + b"\r\nHost: h.test\r\nUser-Agent: t\r\n"
               b"X-Odd:  spaced \t\r\nX-Tight:v\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert re.fullmatch(r"ballast(/\S+)?", r.header("server") or ""), r.headers
        assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT",
                            r.header("date") or ""), r.headers
        assert len(r.headers_all("server")) == 1 and len(r.headers_all("date")) == 1, r.headers
    head = be.requests[-1].raw_head
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /p/q?a=1 HTTP/1.1", head
    assert lines[1:6] == [b"Host: h.test", b"User-Agent: t", b"X-Odd: spaced", b"X-Tight: v",
                          b"Accept: */*"], head
    added = [ln for ln in lines[6:] if ln]
    assert added[:3] == [b"X-Forwarded-For: 127.0.0.1", b"X-Real-IP: 127.0.0.1",
                         b"X-Forwarded-Proto: http"], head
    assert re.fullmatch(rb"X-Request-ID: " + HEX32, added[3]), head
    assert re.fullmatch(rb"traceparent: 00-" + HEX32 + rb"-[0-9a-f]{16}-01", added[4]), head
    assert added[4][16:48] == added[3][14:], head  # the trace is the request's id


def test_upstream_head_client_ids_replaced(ballast, be):
    px = ballast(proxy_conf(["127.0.0.1:@pb@"]), pb=be.port)
    tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with px.conn() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nTRACEPARENT: " + tp + b"\r\nTraceState: a=1\r\n"
               b"X-Forwarded-For: 192.0.2.1\r\nx-real-ip: 192.0.2.2\r\n\r\n")
        assert c.read_response().status == 200
    head = be.requests[-1].raw_head
    lines = [ln for ln in head.split(b"\r\n") if ln]
    assert b"TraceState: a=1" in lines, head  # continued: the client's state goes on
    assert not any(ln.lower().startswith(b"x-real-ip: 192") for ln in lines), head
    assert b"X-Forwarded-For: 192.0.2.1, 127.0.0.1" in lines, head
    tps = [ln for ln in lines if ln.lower().startswith(b"traceparent:")]
    assert len(tps) == 1, head
    assert tps[0].startswith(b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-"), head
    assert not tps[0].endswith(b"b7ad6b7169203331-01"), head  # a span of this hop


def test_many_fields_both_ways_on_one_connection(ballast, be):
    """Heads with more fields than a request object keeps inline (http/proxy_int.h: 24 for the
    request, 16 for the response) go through whole and in order, and the heads after them on
    the same connections, larger or smaller, are not mixed up with them: the request object and
    the heap array its fields moved to are recycled."""
    def answer(req, c):
        c.backend.record(req)
        n = int(req.query.get("n", "0"))
        lines = ["HTTP/1.1 200 OK", "Content-Length: 2"]
        lines += ["X-R%d: v%d" % (i, i) for i in range(n)]
        c.send(("\r\n".join(lines) + "\r\n\r\nok").encode())
        return True

    be.route("/f", answer)
    px = ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=8), pb=be.port)
    with px.conn() as c:
        # 99 fields with Host and 99 with Content-Length: the parser's limit (100) minus one
        # for the line ballast adds on the way.
        for nreq, nresp in ((98, 98), (1, 1), (30, 20), (0, 0), (23, 15), (24, 16), (25, 17),
                            (98, 2), (2, 98)):
            fields = b"".join(b"X-Q%d: w%d\r\n" % (i, i) for i in range(nreq))
            c.send(b"GET /f?n=%d HTTP/1.1\r\nHost: h\r\n" % nresp + fields + b"\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == b"ok", (nreq, nresp, r)
            got = [(k, v) for k, v in r.headers if k.startswith("X-R")]
            assert got == [("X-R%d" % i, "v%d" % i) for i in range(nresp)], (nreq, nresp, r)
            lines = be.requests[-1].raw_head.split(b"\r\n")
            assert lines[1] == b"Host: h", lines
            q = [ln for ln in lines if ln.startswith(b"X-Q")]
            assert q == [b"X-Q%d: w%d" % (i, i) for i in range(nreq)], (nreq, nresp, lines)


def test_too_many_fields_still_refused(ballast, be):
    px = ballast(proxy_conf(["127.0.0.1:@pb@"]), pb=be.port)
    with px.conn() as c:
        fields = b"".join(b"X-Q%d: w\r\n" % i for i in range(100))
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n")
        assert c.read_response().status == 431


def test_date_follows_the_clock(ballast, be):
    """The Date line is made once a second per worker from its loop's clock: two answers more
    than a second apart on one connection carry different, current dates."""
    import email.utils
    import time

    px = ballast(proxy_conf(["127.0.0.1:@pb@"]), pb=be.port)
    seen = []
    with px.conn() as c:
        for _ in range(2):
            c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            r = c.read_response()
            assert r.status == 200, r
            when = email.utils.parsedate_to_datetime(r.header("date")).timestamp()
            assert abs(when - time.time()) <= 2, (r.header("date"), time.time())
            seen.append(when)
            time.sleep(1.3)
    assert seen[1] > seen[0], seen
