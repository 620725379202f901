"""Field lines as they go on, both ways: every forwarded field is written "Name: value" CRLF
whatever the spacing it came with (no space or a tab after the colon, spaces around the
value), in the order it came, with the fields ballast drops or replaces taken out from
between them. proxy_head.c copies runs of lines that already read that way in one piece and
writes the others field by field: this checks the seams between the two."""
import pytest

from conftest import Conn, proxy_conf, raw_route

FIELDS_IN = (b"A-One: 1\r\n"
             b"B-Two:2\r\n"
             b"C-Three: 3\r\n"
             b"Connection: keep-alive, X-Hop\r\n"
             b"D-Four: 4\r\n"
             b"X-Hop: gone\r\n"
             b"E-Five:\t5\r\n"
             b"F-Six: 6  \r\n"
             b"G-Seven:   7\r\n"
             b"H-Empty: \r\n"
             b"I-Nine: 9\r\n"
             b"J-Ten: a  b\r\n")
FIELDS_OUT = [b"A-One: 1", b"B-Two: 2", b"C-Three: 3", b"D-Four: 4", b"E-Five: 5",
              b"F-Six: 6", b"G-Seven: 7", b"H-Empty: ", b"I-Nine: 9", b"J-Ten: a  b"]


def lines_of(raw_head):
    keep = tuple(f.split(b":")[0].lower() + b":" for f in FIELDS_OUT) + (b"x-hop:",)
    return [l for l in raw_head.split(b"\r\n") if l.lower().startswith(keep)]


def test_request_fields_canonical_in_order(ballast, backend):
    be = backend("app")
    b = ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)
    with Conn(b.port, 5.0) as c:
        for _ in range(2):  # a fresh upstream connection, then a pooled one
            c.send(b"GET /h HTTP/1.1\r\nHost: localhost\r\n" + FIELDS_IN + b"\r\n")
            r = c.read_response()
            assert r.status == 200, r
    assert len(be.requests) == 2
    for req in be.requests:
        assert lines_of(req.raw_head) == FIELDS_OUT, req.raw_head


def test_response_fields_canonical_in_order(ballast, backend):
    be = backend("app")
    be.route("/", raw_route(b"HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 2\r\n" +
                            FIELDS_IN + b"Date: Mon, 07 Dec 2026 00:00:00 GMT\r\n\r\nhi",
                            keep=True))
    b = ballast(proxy_conf("127.0.0.1:@pb@"), pb=be.port)
    with Conn(b.port, 5.0) as c:
        for _ in range(2):
            c.send(b"GET /r HTTP/1.1\r\nHost: localhost\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == b"hi", r
            assert lines_of(r.raw_head) == FIELDS_OUT, r.raw_head
            assert r.headers_all("server") != ["up"], r.headers
