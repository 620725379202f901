"""Framing fields as they go on: a Content-Length list becomes its single value, repeated
equal Content-Length fields go once, Transfer-Encoding lists are framed by the final chunked
and forwarded as one canonical line, and HTTP/1.x minor versions above 1 are read as 1.1
(RFC 9110 2.5, 8.6; RFC 9112 6.1). A backend must never see a framing field it could read
differently from ballast."""
import pytest

from conftest import Conn, chunked, proxy_conf, raw_route, still_serving

H = "Host: localhost\r\n"


@pytest.fixture
def be(backend):
    return backend("app")


@pytest.fixture
def px(ballast, be):
    return ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)


def exchange(port, data):
    with Conn(port, 5.0) as c:
        c.send(data)
        return c.read_response()


def head_lines(req, name):
    """The backend's raw head lines for field `name` (as bytes, name included)."""
    n = name.lower().encode()
    return [l for l in req.raw_head.split(b"\r\n") if l.lower().startswith(n + b":")]


@pytest.mark.parametrize("fields", [
    "Content-Length: 5, 5\r\n",
    "Content-Length: 5,5 , 5\r\n",
    "Content-Length: 5\r\nContent-Length: 5\r\n",
    "Content-Length: 5, 5\r\nContent-Length: 5\r\n",
], ids=["list", "list_three", "two_fields", "list_and_field"])
def test_content_length_list_goes_as_one_value(px, be, fields):
    r = exchange(px.port, ("POST /cl HTTP/1.1\r\n" + H + fields + "\r\nhello").encode())
    assert r.status == 200, r
    req = be.requests[-1]
    assert head_lines(req, "content-length") == [b"Content-Length: 5"], req.raw_head
    assert req.body == b"hello"


def test_transfer_codings_before_chunked_are_forwarded(px, be):
    body = chunked(b"x" * 3000, 1000)
    r = exchange(px.port, ("POST /te HTTP/1.1\r\n" + H +
                           "Transfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n")
                 .encode() + body)
    assert r.status == 200, r
    req = be.requests[-1]
    assert head_lines(req, "transfer-encoding") == [b"Transfer-Encoding: gzip, chunked"], \
        req.raw_head
    assert req.body_len == 3000
    still_serving(px.port)


def test_plain_chunked_goes_as_written(px, be):
    r = exchange(px.port, ("POST /te HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n")
                 .encode() + chunked(b"abc"))
    assert r.status == 200, r
    assert head_lines(be.requests[-1], "transfer-encoding") == [b"Transfer-Encoding: chunked"]


def test_chunked_with_parameters_stays_refused(px, be):
    r = exchange(px.port, ("POST /te HTTP/1.1\r\n" + H +
                           "Transfer-Encoding: chunked;foo=bar\r\n\r\n").encode())
    assert r.status == 400, r
    assert be.requests == []


def test_http_1_2_is_served_as_1_1(px, be):
    r = exchange(px.port, ("GET /v HTTP/1.2\r\n" + H + "\r\n").encode())
    assert r.status == 200, r
    assert r.version == "HTTP/1.1", r
    assert be.requests[-1].raw_head.split(b"\r\n")[0] == b"GET /v HTTP/1.1"


def test_http_2_request_line_still_505(px, be):
    r = exchange(px.port, ("GET / HTTP/2.0\r\n" + H + "\r\n").encode())
    assert r.status == 505, r


def test_response_content_length_list_reaches_client_once(ballast, backend):
    be = backend("up")
    be.route("/", raw_route(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n"
                            b"Content-Length: 2\r\n\r\nhi"))
    b = ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)
    with b.conn() as c:
        r = c.request("GET", "/x")
    assert r.status == 200 and r.body == b"hi", r
    assert r.headers_all("content-length") == ["2"], r.headers


def test_response_gzip_chunked_relayed_canonical(ballast, backend):
    be = backend("up")
    be.route("/", raw_route(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip ,chunked\r\n\r\n"
                            b"2\r\nhi\r\n0\r\n\r\n"))
    b = ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)
    with b.conn() as c:
        r = c.request("GET", "/x")
    assert r.status == 200 and r.body == b"hi", r
    assert r.headers_all("transfer-encoding") == ["gzip, chunked"], r.headers


def test_response_gzip_chunked_to_http10_client_is_502(ballast, backend):
    """HTTP/1.0 has no transfer codings: removing chunked would leave the body gzip-coded
    with nothing saying so."""
    be = backend("up")
    be.route("/", raw_route(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                            b"2\r\nhi\r\n0\r\n\r\n"))
    b = ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)
    r = exchange(b.port, b"GET /x HTTP/1.0\r\n\r\n")
    assert r.status == 502, r
