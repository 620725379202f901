"""The core proxy path: GET/POST through curl and raw sockets, the headers the backend sees
(hop-by-hop removed, X-Forwarded-*, proxy_set_header), client keep-alive, HTTP/1.0 clients,
pipelining, Expect: 100-continue, bodiless responses, close-delimited and chunked bodies."""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import (SLOW, Conn, build_request, chunked, curl, gen_body, proxy_conf,
                      raw_route, sha256)


@pytest.fixture
def be(backend):
    return backend("app")


@pytest.fixture
def px(ballast, be):
    """ballast proxying everything to one backend, upstream keep-alive on."""
    return ballast(proxy_conf(["127.0.0.1:@pb@"], keepalive=8), pb=be.port)


def test_get_via_curl(px, be):
    r = curl("-i", px.url("/hello?x=1"))
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"X-Backend: app" in head, head
    echo = json.loads(body)
    assert echo["method"] == "GET" and echo["target"] == "/hello?x=1", echo
    assert echo["version"] == "HTTP/1.1", echo


def test_post_via_curl(px, be, tmp_path):
    data = gen_body(200000, seed=4)
    f = tmp_path / "data.bin"
    f.write_bytes(data)
    r = curl("-H", "Expect:", "--data-binary", "@%s" % f, px.url("/upload"))
    assert r.returncode == 0, r.stderr
    echo = json.loads(r.stdout)
    assert echo["method"] == "POST", echo
    assert (echo["body_len"], echo["body_sha256"]) == (len(data), sha256(data)), echo


def test_get_and_post_raw(px, be):
    with px.conn() as c:
        r = c.request("GET", "/raw")
        assert r.status == 200 and r.header("x-backend") == "app", r
        r = c.request("POST", "/raw", [("Content-Type", "text/plain")], body=b"hello world")
        assert r.status == 200, r
        echo = r.json()
        assert echo["body_len"] == 11 and echo["body_sha256"] == sha256(b"hello world"), echo
        assert dict((k.lower(), v) for k, v in echo["headers"])["content-length"] == "11", echo


def test_status_and_headers_relayed(px, be):
    r = px.get("/x?status=503&text=busy")
    assert (r.status, r.body) == (503, b"busy"), r
    assert r.header("x-backend") == "app", r.headers
    r = px.get("/x?status=404")
    assert r.status == 404, r


def sent_headers(be, i=-1):
    req = be.requests[i]
    return req, {k.lower(): v for k, v in req.headers}


def test_hop_by_hop_headers_removed(px, be):
    with px.conn() as c:
        r = c.request("GET", "/hop", [
            ("Connection", "keep-alive, X-Hop-A, x-hop-b"),
            ("X-Hop-A", "1"),
            ("X-Hop-B", "2"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Upgrade", "foo/1"),
            ("X-End-To-End", "kept"),
        ])
        assert r.status == 200, r
    req, h = sent_headers(be)
    for name in ("x-hop-a", "x-hop-b", "keep-alive", "proxy-connection", "te", "trailer",
                 "upgrade"):
        assert name not in h, "%s forwarded: %r" % (name, req.raw_head)
    # Connection may be present only as ballast's own (keep-alive/close), never the client's
    # list of names.
    conn = h.get("connection", "").lower()
    assert "x-hop" not in conn, req.raw_head
    assert h.get("x-end-to-end") == "kept", req.raw_head


def test_forwarded_headers_defaults(px, be):
    r = px.get("/fwd", host="example.test:1234")
    assert r.status == 200, r
    req, h = sent_headers(be)
    assert req.version == "HTTP/1.1", req.raw_head
    assert h.get("host") == "example.test:1234", req.raw_head  # client Host kept
    assert h.get("x-forwarded-for") == "127.0.0.1", req.raw_head
    assert h.get("x-real-ip") == "127.0.0.1", req.raw_head
    assert h.get("x-forwarded-proto") == "http", req.raw_head
    assert len(req.headers_all("host")) == 1, req.raw_head


def test_x_forwarded_for_appended(px, be):
    r = px.get("/fwd", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert r.status == 200, r
    req, h = sent_headers(be)
    xff = req.headers_all("x-forwarded-for")
    assert len(xff) == 1, req.raw_head
    assert re.fullmatch(r"203\.0\.113\.7,\s*127\.0\.0\.1", xff[0]), xff


def test_proxy_set_header_variables(ballast, be):
    b = ballast(proxy_conf("127.0.0.1:@pb@", location="""
            proxy_set_header Host $host;
            proxy_set_header X-Vars "$remote_addr|$scheme|$request_uri|$uri|$args|$server_port";
            proxy_set_header X-Copy $http_x_custom;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Static "fixed value";
            proxy_set_header X-Custom "overridden";
    """), pb=be.port)
    r = b.get("/p/q?a=1&b=2", headers=[("X-Custom", "hello"), ("X-Forwarded-For", "10.0.0.1")],
              host="example.test:8080")
    assert r.status == 200, r
    req, h = sent_headers(be)
    assert h["host"] == "example.test", req.raw_head
    assert h["x-vars"] == "127.0.0.1|http|/p/q?a=1&b=2|/p/q|a=1&b=2|%d" % b.port, req.raw_head
    assert h["x-copy"] == "hello", req.raw_head
    assert re.fullmatch(r"10\.0\.0\.1,\s*127\.0\.0\.1", h["x-forwarded-for"]), req.raw_head
    assert h["x-static"] == "fixed value", req.raw_head
    assert req.headers_all("x-custom") == ["overridden"], req.raw_head
    assert req.target == "/p/q?a=1&b=2", req.target


def test_proxy_set_header_empty_removes(ballast, be):
    b = ballast(proxy_conf("127.0.0.1:@pb@", location="""
            proxy_set_header X-Real-IP "";
            proxy_set_header User-Agent "";
            proxy_set_header X-Remove-Me "";
    """), pb=be.port)
    r = b.get("/rm", headers=[("User-Agent", "test/1"), ("X-Remove-Me", "x"), ("X-Stay", "y")])
    assert r.status == 200, r
    req, h = sent_headers(be)
    assert "x-real-ip" not in h, req.raw_head
    assert "user-agent" not in h, req.raw_head
    assert "x-remove-me" not in h, req.raw_head
    assert h.get("x-stay") == "y", req.raw_head


def test_client_keepalive(px, be):
    with px.conn() as c:
        for i in range(20):
            r = c.request("GET", "/ka/%d" % i)
            assert r.status == 200, (i, r)
            assert r.json()["target"] == "/ka/%d" % i
            assert not r.has_token("connection", "close"), r.headers
        assert not c.closed(0.2), "connection closed after keep-alive responses"


def test_client_connection_close(px, be):
    with px.conn() as c:
        r = c.request("GET", "/bye", [("Connection", "close")])
        assert r.status == 200, r
        assert c.closed(3), "ballast kept the connection after Connection: close"


def test_http10_client_closes(px, be):
    with px.conn() as c:
        c.send(b"GET /ten HTTP/1.0\r\nHost: localhost\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.version in ("HTTP/1.1", "HTTP/1.0"), r.version
        assert r.json()["target"] == "/ten"
        assert c.closed(3), "HTTP/1.0 connection without keep-alive was not closed"


def test_http10_keepalive(px, be):
    with px.conn() as c:
        for i in range(3):
            c.send(b"GET /ten%d HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n" % i)
            r = c.read_response()
            assert r.status == 200, r
            assert r.framing == "length", r  # a 1.0 keep-alive answer must be length-framed
            assert r.json()["target"] == "/ten%d" % i
        assert not c.closed(0.2)


def test_http10_client_gets_no_chunked(px, be):
    """An HTTP/1.0 client cannot read chunked coding: a chunked upstream answer is re-framed."""
    with px.conn() as c:
        c.send(b"GET /c?size=100000&seed=2&chunked=1 HTTP/1.0\r\nHost: localhost\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.header("transfer-encoding") is None, r.headers
        assert r.body == gen_body(100000, 2)


def test_pipelining_in_order(px, be):
    reqs = []
    methods = []
    for i in range(10):
        if i == 3:
            reqs.append(build_request("POST", "/pipe/%d" % i, body=b"x" * (i * 100)))
            methods.append("POST")
        elif i == 6:
            reqs.append(build_request("HEAD", "/pipe/%d" % i))
            methods.append("HEAD")
        else:
            reqs.append(build_request("GET", "/pipe/%d?delay=%s" % (i, "0.05" if i == 1 else "0")))
            methods.append("GET")
    with px.conn() as c:
        c.send(b"".join(reqs))
        for i in range(10):
            r = c.read_response(methods[i])
            assert r.status == 200, (i, r)
            if methods[i] == "HEAD":
                assert r.body == b"", r
                continue
            echo = r.json()
            assert echo["target"].split("?")[0] == "/pipe/%d" % i, (i, echo["target"])
            assert echo["method"] == methods[i], echo
            if i == 3:
                assert echo["body_len"] == 300, echo
        assert not c.closed(0.2)
    assert len(be.requests) == 10


def test_expect_100_continue(px, be):
    with px.conn() as c:
        c.send(build_request("POST", "/expect",
                             [("Expect", "100-continue"), ("Content-Length", "11")]))
        interim = c.read_head()
        assert interim.status == 100, interim
        assert interim.version == "HTTP/1.1", interim
        c.send(b"hello world")
        r = c.read_response("POST")
        assert r.status == 200, r
        echo = r.json()
        assert (echo["body_len"], echo["body_sha256"]) == (11, sha256(b"hello world")), echo
        # and the connection is still good
        r = c.request("GET", "/after")
        assert r.status == 200, r


def test_expect_100_continue_via_curl(px, be, tmp_path):
    data = gen_body(300000, seed=9)
    f = tmp_path / "d.bin"
    f.write_bytes(data)
    t0 = time.monotonic()
    r = curl("-H", "Expect: 100-continue", "--expect100-timeout", "5", "--data-binary",
             "@%s" % f, px.url("/curl-expect"))
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    echo = json.loads(r.stdout)
    assert echo["body_sha256"] == sha256(data), echo
    # curl waits up to --expect100-timeout when no 100 comes; ballast must answer it at once
    assert elapsed < 4 * SLOW, "took %.1fs: 100 Continue not sent promptly" % elapsed


@pytest.mark.parametrize("query,status", [("status=204", 204), ("status=304", 304)])
def test_bodiless_statuses(px, be, query, status):
    with px.conn() as c:
        r = c.request("GET", "/nb?" + query)
        assert r.status == status, r
        assert r.header("transfer-encoding") is None, r.headers
        # the next response parses cleanly: nothing was sent after the bodiless head
        r = c.request("GET", "/next")
        assert r.status == 200 and r.json()["target"] == "/next", r


def test_head(px, be):
    with px.conn() as c:
        r = c.request("HEAD", "/h?size=5000")
        assert r.status == 200, r
        assert r.header("content-length") in (None, "5000"), r.headers
        r = c.request("GET", "/next")
        assert r.status == 200 and r.json()["target"] == "/next", r
    assert be.requests[0].method == "HEAD", be.requests[0].raw_head


def test_close_delimited_upstream(px, be):
    size = 300000
    with px.conn() as c:
        r = c.request("GET", "/cd?close=1&size=%d&seed=5" % size)
        assert r.status == 200, r
        assert r.body == gen_body(size, 5), "body of %d bytes differs" % len(r.body)
        if r.framing == "close":
            assert c.closed(1)
        else:
            # re-framed (chunked): the connection must still be usable
            assert r.framing == "chunked", r
            r2 = c.request("GET", "/after")
            assert r2.status == 200, r2


def test_close_delimited_upstream_with_keepalive_group(px, be):
    """After a close-delimited answer the upstream connection is gone; the next request must
    still succeed on a new one."""
    for i in range(3):
        r = px.get("/cd%d?close=1&text=abc" % i)
        assert (r.status, r.body) == (200, b"abc"), r
    r = px.get("/plain")
    assert r.status == 200, r


def test_chunked_request_body(px, be):
    data = gen_body(150000, seed=6)
    with px.conn() as c:
        c.send(build_request("POST", "/chunked-up", [("Transfer-Encoding", "chunked")])
               + chunked(data, 7000))
        r = c.read_response("POST")
        assert r.status == 200, r
        echo = r.json()
        assert (echo["body_len"], echo["body_sha256"]) == (len(data), sha256(data)), echo
        # chunk extensions and a trailer are legal
        c.send(build_request("POST", "/chunked-ext", [("Transfer-Encoding", "chunked")])
               + b"5;name=value\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response("POST")
        assert r.status == 200, r
        assert r.json()["body_len"] == 5, r.json()


def test_chunked_response_body(px, be):
    with px.conn() as c:
        for size in (1, 65536, 200001):
            r = c.request("GET", "/chunked-down?chunked=1&size=%d&seed=8&chunk=3000" % size)
            assert r.status == 200, r
            assert r.body == gen_body(size, 8), "size %d" % size
        r = c.request("GET", "/chunked-empty?chunked=1&text=")
        assert (r.status, r.body) == (200, b""), r


def test_curl_chunked_upload(px, be, tmp_path):
    data = gen_body(120000, seed=11)
    f = tmp_path / "c.bin"
    f.write_bytes(data)
    r = curl("-H", "Transfer-Encoding: chunked", "-H", "Expect:", "--data-binary", "@%s" % f,
             px.url("/curl-chunked"))
    assert r.returncode == 0, r.stderr
    echo = json.loads(r.stdout)
    assert echo["body_sha256"] == sha256(data), echo


def test_wrk_load_no_errors(px, be):
    """50 keep-alive connections for 2 s: every response is a 2xx and no socket errors."""
    secs = 2
    r = subprocess.run(["wrk", "-t2", "-c50", "-d%ds" % secs, "--timeout", "5s",
                        px.url("/load?text=ok")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60 * SLOW,
                       text=True)
    out = r.stdout
    assert r.returncode == 0, out
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 100, out
    assert "Non-2xx" not in out, out
    assert "Socket errors" not in out, out


@pytest.mark.serial
def test_keepalive_latency(px, be):
    """Sequential requests on a keep-alive connection are not held back by Nagle's algorithm
    against delayed ACKs: a ~40 ms stall per request when ballast relays a response in two
    small writes without TCP_NODELAY. The backend sends head and body 2 ms apart, so they reach
    ballast in separate reads."""

    def split(req, c):
        be.read_body(req, c)
        be.record(req)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\nX-Backend: app\r\n\r\n")
        time.sleep(0.002)
        c.send(b"x" * 300)
        return True

    be.route("/split", split)
    with px.conn() as c:
        c.request("GET", "/split/warm")
        times = []
        for i in range(40):
            t0 = time.perf_counter()
            r = c.request("GET", "/split/%d" % i)
            times.append(time.perf_counter() - t0)
            assert (r.status, len(r.body)) == (200, 300), r
    times.sort()
    median = times[len(times) // 2]
    assert median < 0.015 * SLOW, "median keep-alive request took %.1f ms (p90 %.1f ms)" % (
        median * 1000, times[int(len(times) * 0.9)] * 1000)


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"v1\"\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nETag: \"v1\"\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
], ids=["304_with_length", "304_with_chunked", "204"])
def test_bodiless_status_with_framing_headers(px, be, head):
    """A 304 may carry the representation's Content-Length (or even Transfer-Encoding): there
    is still no body, so ballast must not wait for one."""
    be.route("/nb", raw_route(head, keep=True))
    with px.conn() as c:
        t0 = time.monotonic()
        r = c.request("GET", "/nb")
        assert r.status in (204, 304) and r.body == b"", r
        assert time.monotonic() - t0 < 2 * SLOW, "ballast waited for a body after %d" % r.status
        r = c.request("GET", "/next")
        assert r.status == 200 and r.json()["target"] == "/next", r


def test_head_with_length_and_chunked_upstream(px, be):
    with px.conn() as c:
        for q in ("size=5000", "size=5000&chunked=1"):
            t0 = time.monotonic()
            r = c.request("HEAD", "/h?" + q)
            assert r.status == 200, r
            assert time.monotonic() - t0 < 2 * SLOW, "ballast waited for a HEAD body"
            r = c.request("GET", "/next")
            assert r.status == 200 and r.json()["target"] == "/next", (q, r)


@pytest.mark.parametrize("interim", [
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
], ids=["100", "103", "102_103"])
def test_upstream_interim_responses(px, be, interim):
    """1xx answers before the final one carry no body: the client gets the final answer intact
    (the 1xx may be relayed or dropped) and the connection stays in sync."""
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Backend: app\r\n\r\nfinal"
    be.route("/1xx", raw_route(interim + final, keep=True))
    with px.conn() as c:
        c.send(build_request("POST", "/1xx", body=b"abc"))
        r = c.read_response("POST")  # skips interim answers
        assert (r.status, r.body) == (200, b"final"), r
        r = c.request("GET", "/next")
        assert r.status == 200 and r.json()["target"] == "/next", r


def test_http10_upstream_response(px, be):
    """An HTTP/1.0 upstream answer without Content-Length ends at the close."""
    be.route("/ten", raw_route(b"HTTP/1.0 200 OK\r\nX-Backend: app\r\n\r\nold school"))
    with px.conn() as c:
        r = c.request("GET", "/ten")
        assert (r.status, r.body) == (200, b"old school"), r
        if r.framing != "close":
            r = c.request("GET", "/next")
            assert r.status == 200, r
