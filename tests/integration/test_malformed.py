"""Strict parsing: malformed or ambiguous requests are refused (400/413/414/431/505) and the
connection closed, without reaching the backend; malformed upstream answers become 502."""
import pytest

from conftest import (Conn, ConnectionClosed, IncompleteResponse, build_request, gen_body,
                      proxy_conf, raw_route, still_serving)

H = "Host: localhost\r\n"


@pytest.fixture
def be(backend):
    return backend("app")


@pytest.fixture
def px(ballast, be):
    return ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)


def refused(port, data, status, timeout=5.0):
    """Sends data; asserts the answer has `status` and the connection is closed after it."""
    with Conn(port, timeout) as c:
        c.send(data)
        try:
            r = c.read_response()
        except ConnectionClosed as e:
            pytest.fail("no %d response, connection closed: %s" % (status, e))
        assert r.status == status, "want %d, got %r" % (status, r)
        assert r.header("server").startswith("ballast"), r.headers
        assert c.closed(3), "connection still open after %d" % status
        return r


# Refused while reading the head: the backend must never see them.
HEAD_400 = {
    "cl_and_te": "POST / HTTP/1.1\r\n" + H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te_and_cl": "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    "cl_duplicate_differ": "POST / HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "cl_list_differ": "POST / HTTP/1.1\r\n" + H + "Content-Length: 5, 6\r\n\r\n",
    "cl_not_number": "POST / HTTP/1.1\r\n" + H + "Content-Length: abc\r\n\r\n",
    "cl_negative": "POST / HTTP/1.1\r\n" + H + "Content-Length: -1\r\n\r\n",
    "te_final_not_chunked": "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked, gzip\r\n\r\n",
    "te_gzip_only": "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n\r\n",
    "space_before_colon": "GET / HTTP/1.1\r\n" + H + "X-Foo : bar\r\n\r\n",
    "tab_before_colon": "GET / HTTP/1.1\r\n" + H + "X-Foo\t: bar\r\n\r\n",
    "obs_fold": "GET / HTTP/1.1\r\n" + H + "X-Foo: a\r\n  b\r\n\r\n",
    "obs_fold_tab": "GET / HTTP/1.1\r\n" + H + "X-Foo: a\r\n\tb\r\n\r\n",
    "bare_cr_in_value": "GET / HTTP/1.1\r\n" + H + "X-Foo: a\rb\r\n\r\n",
    "bare_lf_header": "GET / HTTP/1.1\r\n" + H + "X-Foo: a\nX-Bar: b\r\n\r\n",
    "bare_lf_request_line": "GET / HTTP/1.1\n" + H + "\r\n",
    "nul_in_value": "GET / HTTP/1.1\r\n" + H + "X-Foo: a\x00b\r\n\r\n",
    "nul_in_target": "GET /a\x00b HTTP/1.1\r\n" + H + "\r\n",
    "bad_method_char": "G(T / HTTP/1.1\r\n" + H + "\r\n",
    "bad_method_at": "GE@T / HTTP/1.1\r\n" + H + "\r\n",
    "bad_header_name_char": "GET / HTTP/1.1\r\n" + H + "X@Foo: bar\r\n\r\n",
    "bad_header_name_brace": "GET / HTTP/1.1\r\n" + H + "X{Foo}: bar\r\n\r\n",
    "empty_header_name": "GET / HTTP/1.1\r\n" + H + ": bar\r\n\r\n",
    "no_host_http11": "GET / HTTP/1.1\r\nX-Foo: bar\r\n\r\n",
    "garbage_request_line": "HELLO\r\n" + H + "\r\n",
}


@pytest.mark.parametrize("name", sorted(HEAD_400))
def test_refused_400(px, be, name):
    refused(px.port, HEAD_400[name].encode("latin-1"), 400)
    assert be.requests == [], "backend received %r" % be.requests[0].raw_head
    still_serving(px.port)


def test_505_http2_request_line(px, be):
    refused(px.port, b"GET / HTTP/2.0\r\n" + H.encode() + b"\r\n", 505)
    assert be.requests == []


def post_chunked(body):
    return b"POST /c HTTP/1.1\r\n" + H.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + body


@pytest.mark.parametrize("name,body", [
    ("not_hex", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("overflow", b"ffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("negative", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("no_crlf_after_data", b"5\r\nhelloXX\r\n0\r\n\r\n"),
    ("data_longer_than_size", b"3\r\nhello\r\n0\r\n\r\n"),
    ("bare_lf_size_line", b"5\nhello\r\n0\r\n\r\n"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_chunk_framing_400(px, be, name, body):
    """Bad chunk framing before any response started: 400 and close."""
    refused(px.port, post_chunked(body), 400)
    still_serving(px.port)


def test_bad_chunk_mid_body_closes(ballast, backend):
    """A bad chunk after the response started: the connection is closed (status already
    sent, so no 400 can follow)."""
    be = backend("early")

    def early(req, c):
        # answers before reading the body, then reads it (fails when ballast aborts)
        c.backend.record(req)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
        c.backend.read_body(req, c)
        return False

    be.route("/", early)
    b = ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)
    with b.conn() as c:
        c.send(post_chunked(b"5\r\nhello\r\n"))
        # a streaming proxy forwards the head and the first chunk at once; give it a moment
        be.wait_requests(1, timeout=2.0)
        c.send(b"zz\r\nbad\r\n0\r\n\r\n")
        r = None
        try:
            r = c.read_response()
        except (ConnectionClosed, IncompleteResponse):
            pass
        if r is not None and r.status != 400:
            # the early answer was relayed; nothing may follow it but the close
            assert (r.status, r.body) == (200, b"early"), r
        assert c.closed(3), "connection not closed after a bad chunk mid-body (got %r)" % r
    # a new request gets the early route's complete answer: the bad chunk cost one connection
    still_serving(b.port, body=b"early")


def test_414_request_line_too_long(px, be):
    refused(px.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H.encode() + b"\r\n", 414)
    assert be.requests == []


def test_431_header_line_too_long(px, be):
    refused(px.port, b"GET / HTTP/1.1\r\n" + H.encode() + b"X-Big: " + b"v" * 9000 + b"\r\n\r\n",
            431)
    assert be.requests == []


def test_431_head_too_large(px, be):
    hdrs = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 7000) for i in range(5))  # ~35 KB
    refused(px.port, b"GET / HTTP/1.1\r\n" + H.encode() + hdrs + b"\r\n", 431)
    assert be.requests == []


def test_large_heads_under_the_limits_pass(px, be):
    """Just under the defaults (4 8k): a 8000-byte request line, a 8000-byte header, 28 KB of
    headers are all fine."""
    with px.conn() as c:
        path = "/" + "p" * 8000
        r = c.request("GET", path)
        assert r.status == 200 and r.json()["target"] == path, r.status
        r = c.request("GET", "/h", [("X-Big", "v" * 8000)])
        assert r.status == 200, r.status
        r = c.request("GET", "/h", [("X-Big-%d" % i, "v" * 7000) for i in range(4)])
        assert r.status == 200, r.status
        assert be.requests[-1].header("x-big-3") == "v" * 7000


def test_large_client_header_buffers_configured(ballast, be):
    b = ballast(proxy_conf("127.0.0.1:@pb@", http="large_client_header_buffers 2 1k;"),
                pb=be.port)
    refused(b.port, b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + H.encode() + b"\r\n", 414)
    refused(b.port, b"GET / HTTP/1.1\r\n" + H.encode() + b"X-Big: " + b"v" * 1100 + b"\r\n\r\n",
            431)
    hdrs = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 900) for i in range(3))  # > 2 KB
    refused(b.port, b"GET / HTTP/1.1\r\n" + H.encode() + hdrs + b"\r\n", 431)
    with b.conn() as c:
        r = c.request("GET", "/" + "a" * 900, [("X-Mid", "v" * 900)])
        assert r.status == 200, r
    assert len(be.requests) == 1


def test_413_default_limit(px, be):
    refused(px.port, b"POST /big HTTP/1.1\r\n" + H.encode() + b"Content-Length: 1048577\r\n\r\n", 413)
    assert be.requests == []
    # exactly 1m is allowed
    data = gen_body(1048576, 3)
    with px.conn(timeout=15) as c:
        r = c.request("POST", "/ok", body=data)
        assert r.status == 200 and r.json()["body_len"] == len(data), r


def test_413_configured_limit_chunked_and_length(ballast, be):
    b = ballast(proxy_conf("127.0.0.1:@pb@", http="client_max_body_size 10k;"), pb=be.port)
    refused(b.port, b"POST /l HTTP/1.1\r\n" + H.encode() + b"Content-Length: 10241\r\n\r\n", 413)
    # chunked: the limit is found while streaming; no response had started yet
    refused(b.port, post_chunked(b"2800\r\n" + b"x" * 0x2800 + b"\r\n"
                                 + b"10\r\n" + b"y" * 16 + b"\r\n0\r\n\r\n"), 413)
    with b.conn() as c:
        r = c.request("POST", "/ok", body=b"z" * 10240)
        assert r.status == 200 and r.json()["body_len"] == 10240, r


def test_client_max_body_size_zero_is_unlimited(ballast, be):
    b = ballast(proxy_conf("127.0.0.1:@pb@", http="client_max_body_size 0;"), pb=be.port)
    data = gen_body(3 << 20, 12)
    with b.conn(timeout=20) as c:
        r = c.request("POST", "/big", body=data)
        assert r.status == 200, r
        assert r.json()["body_len"] == len(data), r.json()


# Malformed upstream answers: the client gets 502 (nothing of the bad answer is relayed).
UPSTREAM_BAD = {
    "garbage": b"garbage\r\n\r\n",
    "not_http": b"SSH-2.0-OpenSSH_9.2\r\n",
    "bad_status_code": b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nhi",
    "status_code_4_digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nhi",
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    "cl_duplicate_differ": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!",
    "cl_not_number": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nhi",
    "te_final_not_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nhi",
    "space_before_colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi",
    "obs_fold": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Foo: a\r\n b\r\n\r\nhi",
    "bare_cr": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Foo: a\rb\r\n\r\nhi",
    "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
    "nul_in_value": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Foo: a\x00b\r\n\r\nhi",
    "bad_header_name": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX@Foo: b\r\n\r\nhi",
    "empty_answer": b"",
    "head_then_close": b"HTTP/1.1 200 OK\r\nContent-Le",
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_BAD))
def test_upstream_malformed_502(ballast, backend, name):
    be = backend("bad")
    be.route("/", raw_route(UPSTREAM_BAD[name]))
    b = ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)
    with b.conn() as c:
        r = c.request("GET", "/x")
        assert r.status == 502, "upstream %s: got %r" % (name, r)
        assert r.header("server").startswith("ballast"), r.headers
        assert r.header("x-foo") is None and r.body != b"hi", r


@pytest.mark.parametrize("name,data", [
    ("bad_chunk_size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("chunk_no_crlf", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    ("truncated_length", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"),
    ("truncated_chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nshort"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_upstream_bad_body(ballast, backend, name, data):
    """A body that breaks after the head: 502 if ballast had not started the response, else the
    client sees a truncated response and the connection closed, never a complete answer."""
    be = backend("bad")
    be.route("/", raw_route(data))
    b = ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)
    with b.conn() as c:
        c.send(build_request("GET", "/x"))
        try:
            r = c.read_response()
        except (IncompleteResponse, ConnectionClosed, ValueError):
            assert c.closed(3), "connection not closed after a broken upstream body"
            return
        assert r.status == 502, "a broken upstream body was relayed as complete: %r" % r
