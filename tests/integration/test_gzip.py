"""gzip compression of proxied responses (docs/compression.md): what is compressed and what is
left alone as nginx decides it, streaming of large bodies in both framings, and the headers
compared with nginx's for one case."""
import functools
import gzip
import subprocess
import zlib

import pytest

from conftest import (Ballast, Conn, chunked, curl, free_port, proxy_conf, render, run_ballast,
                      still_serving)
from nginx_ref import Nginx

H = "Host: localhost\r\n"
GZ = "gzip on;\ngzip_types text/plain application/json;\ngzip_vary on;\n"


def text_body(size):
    """Compressible text that is not one repeated line (each line numbered)."""
    out, i = [], 0
    total = 0
    while total < size:
        line = b"line %08d: the quick brown fox jumps over the lazy dog %d\n" % (i, i * 7919)
        out.append(line)
        total += len(line)
        i += 1
    return b"".join(out)[:size]


def answer(status, headers, body, framing="length", keep=False):
    """A route that answers with headers and body, framed by length, chunks or close."""
    head = "HTTP/1.1 %s X\r\n" % status + "".join("%s: %s\r\n" % h for h in headers)
    if framing == "length":
        data = (head + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body
    elif framing == "chunked":
        data = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked(body, 16384)
    else:
        data = (head + "Connection: close\r\n\r\n").encode() + body

    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        c.send(data)
        return keep and framing != "close"
    return fn


@pytest.fixture
def be(backend):
    return backend("app")


def start(ballast, be, http=GZ):
    return ballast(proxy_conf("127.0.0.1:@pb@", http=http), pb=be.port)


def get(port, path, headers="", method="GET", version="1.1"):
    with Conn(port, 15.0) as c:
        c.send(("%s %s HTTP/%s\r\n%s%s\r\n" % (method, path, version, H, headers)).encode())
        return c.read_response(method=method)


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_curl_round_trip_5mb(ballast, be, tmp_path, framing):
    body = text_body(5 * 1024 * 1024)
    be.route("/big", answer(200, [("Content-Type", "text/plain; charset=utf-8"),
                                  ("ETag", '"abc"')], body, framing))
    px = start(ballast, be)
    raw = tmp_path / "raw.gz"
    hdr = tmp_path / "h.txt"
    p = curl("-sS", "-H", "Accept-Encoding: gzip", "-D", str(hdr), "-o", str(raw),
             px.url("/big"), timeout=60)
    assert p.returncode == 0, p.stderr
    heads = hdr.read_text().lower()
    assert "content-encoding: gzip" in heads and "transfer-encoding: chunked" in heads, heads
    assert "content-length" not in heads and "vary: accept-encoding" in heads, heads
    assert 'etag: w/"abc"' in heads, heads
    assert subprocess.run(["gunzip", "-t", str(raw)]).returncode == 0
    data = raw.read_bytes()
    assert len(data) < len(body) // 3
    assert gzip.decompress(data) == body
    p = curl("-sS", "--compressed", "-o", str(tmp_path / "plain"), px.url("/big"), timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "plain").read_bytes() == body
    still_serving(px.port)


def test_keepalive_after_compressed_response(ballast, be):
    body = text_body(100000)
    be.route("/k", answer(200, [("Content-Type", "text/plain")], body, "chunked", keep=True))
    px = start(ballast, be)
    with Conn(px.port, 15.0) as c:
        for _ in range(3):
            c.send(("GET /k HTTP/1.1\r\n" + H + "Accept-Encoding: gzip\r\n\r\n").encode())
            r = c.read_response()
            assert r.framing == "chunked" and r.header("Content-Encoding") == "gzip", r
            assert gzip.decompress(r.body) == body


@pytest.mark.parametrize("ae", [None, "gzip;q=0", "identity", "br, deflate", "gzip; q=0.000",
                                "*;q=0"])
def test_not_accepted_gets_identity(ballast, be, ae):
    body = text_body(5000)
    be.route("/", answer(200, [("Content-Type", "text/plain")], body))
    px = start(ballast, be)
    r = get(px.port, "/t", "Accept-Encoding: %s\r\n" % ae if ae else "")
    assert r.status == 200 and r.header("Content-Encoding") is None, r
    assert r.body == body and r.header("Content-Length") == str(len(body))
    assert r.header("Vary") == "Accept-Encoding"  # gzip_vary marks what could be compressed


@pytest.mark.parametrize("ae", ["gzip", "deflate, gzip;q=0.5", "x-gzip", "*", "GZIP;Q=1"])
def test_accepted_forms(ballast, be, ae):
    body = text_body(5000)
    be.route("/", answer(200, [("Content-Type", "text/plain")], body))
    px = start(ballast, be)
    r = get(px.port, "/t", "Accept-Encoding: %s\r\n" % ae)
    assert r.header("Content-Encoding") == "gzip", r
    assert gzip.decompress(r.body) == body


@pytest.mark.parametrize("case", ["encoded", "type", "short", "status", "head", "range",
                                  "via", "nocontenttype"])
def test_left_alone(ballast, be, case):
    body = text_body(5000)
    hdrs = [("Content-Type", "text/plain")]
    req, method, status = "", "GET", 200
    if case == "encoded":
        hdrs.append(("Content-Encoding", "br"))
    elif case == "type":
        hdrs = [("Content-Type", "image/png")]
    elif case == "short":
        body = b"0123456789"
    elif case == "status":
        status = 500
    elif case == "head":
        method = "HEAD"
    elif case == "range":
        req = "Range: bytes=0-9\r\n"
    elif case == "via":
        req = "Via: 1.1 cache\r\n"
    elif case == "nocontenttype":
        hdrs = []
    be.route("/", answer(status, hdrs, body))
    px = start(ballast, be)
    r = get(px.port, "/t", "Accept-Encoding: gzip\r\n" + req, method=method)
    assert r.status == status and r.header("Content-Encoding") == (
        "br" if case == "encoded" else None), r
    if method != "HEAD":
        assert r.body == body
    still_serving(px.port, status=status)


def test_304_untouched(ballast, be):
    be.route("/", answer(304, [("Content-Type", "text/plain"), ("ETag", '"x"')], b""))
    px = start(ballast, be)
    with Conn(px.port, 5.0) as c:
        c.send(("GET / HTTP/1.1\r\n" + H + "Accept-Encoding: gzip\r\n"
                "If-None-Match: \"x\"\r\n\r\n").encode())
        r = c.read_response()
    assert r.status == 304 and r.header("Content-Encoding") is None, r
    assert r.header("ETag") == '"x"'


def test_types_star_min_length_proxied_any(ballast, be):
    body = text_body(3000)
    be.route("/", answer(200, [("Content-Type", "image/svg+xml")], body))
    px = start(ballast, be, "gzip on;\ngzip_types *;\ngzip_min_length 2000;\n"
               "gzip_proxied any;\ngzip_comp_level 9;\n")
    r = get(px.port, "/a", "Accept-Encoding: gzip\r\nVia: 1.1 x\r\n")
    assert r.header("Content-Encoding") == "gzip" and r.header("Vary") is None, r
    assert gzip.decompress(r.body) == body
    be.route("/s", answer(200, [("Content-Type", "text/plain")], body[:1999]))
    r = get(px.port, "/s", "Accept-Encoding: gzip\r\n")
    assert r.header("Content-Encoding") is None and r.body == body[:1999], r


def test_disable_and_http10(ballast, be):
    body = text_body(5000)
    be.route("/", answer(200, [("Content-Type", "text/html")], body))
    px = start(ballast, be, "gzip on;\ngzip_disable \"curl/[0-9]\" msie6;\n")
    r = get(px.port, "/", "Accept-Encoding: gzip\r\nUser-Agent: CURL/8.0\r\n")
    assert r.header("Content-Encoding") is None and r.body == body, r
    r = get(px.port, "/", "Accept-Encoding: gzip\r\nUser-Agent: Mozilla/4.0 (MSIE 6.0)\r\n")
    assert r.header("Content-Encoding") is None, r
    r = get(px.port, "/", "Accept-Encoding: gzip\r\n")
    assert r.header("Content-Encoding") == "gzip", r
    # gzip_http_version 1.1 (the default): an HTTP/1.0 request is answered as is
    r = get(px.port, "/", "Accept-Encoding: gzip\r\n", version="1.0")
    assert r.header("Content-Encoding") is None and r.body == body, r


def test_http10_client_close_delimited(ballast, be):
    body = text_body(200000)
    be.route("/", answer(200, [("Content-Type", "text/html")], body, "chunked", keep=True))
    px = start(ballast, be, "gzip on;\ngzip_http_version 1.0;\n")
    r = get(px.port, "/", "Accept-Encoding: gzip\r\n", version="1.0")
    assert r.header("Content-Encoding") == "gzip" and r.framing == "close", r
    assert r.header("Transfer-Encoding") is None and r.header("Content-Length") is None
    assert gzip.decompress(r.body) == body


def test_config_errors(tmp_path):
    for i, (line, msg) in enumerate((("gzip_comp_level 10;", "must be 1..9"),
                                     ("gzip_http_version 2.0;", "invalid value"),
                                     ("gzip_proxied off any;", "takes no other value"),
                                     ("gzip_disable \"(\";", "invalid gzip_disable regex"),
                                     ("gzip_buffers 0 4k;", "invalid value"),
                                     ("gzip on;\ngzip on;", "duplicate"))):
        conf = tmp_path / ("c%d.conf" % i)
        conf.write_text("events {}\nhttp {\nserver {\nlisten 127.0.0.1:%d;\n%s\n}\n}\n"
                        % (free_port(), line))
        r = run_ballast(["-t", "-c", str(conf)])
        assert r.returncode != 0 and msg in r.stderr and "c%d.conf:" % i in r.stderr, \
            (line, r.stderr)
    conf = tmp_path / "ok.conf"
    conf.write_text("events {}\nhttp {\ngzip on; gzip_buffers 16 8k; gzip_types *;\n"
                    "gzip_proxied expired no-cache auth;\nserver {\nlisten 127.0.0.1:%d;\n"
                    "}\n}\n" % free_port())
    r = run_ballast(["-t", "-c", str(conf)])
    assert r.returncode == 0 and "ignored" not in r.stderr, r.stderr


def test_headers_match_nginx(tmp_path, backend):
    """The same http { } in nginx and ballast: the compressed answer's framing and coding
    fields agree, and both bodies decompress to the upstream's."""
    be = backend("app")
    body = text_body(50000)
    be.route("/", answer(200, [("Content-Type", "text/plain"), ("ETag", '"v1"')], body,
                         keep=True))
    conf = ("server {\nlisten 127.0.0.1:@port@;\ngzip on;\ngzip_types text/plain;\n"
            "gzip_vary on;\nlocation / { proxy_pass http://127.0.0.1:%d; }\n}\n" % be.port)
    nvals = {}
    n = Nginx(str(tmp_path / "nginx"), render(conf, nvals), access_log_off=True)
    b = Ballast(str(tmp_path / "ballast"), "http {\n%s\n}\n" % conf)
    try:
        n.wait_listening(nvals["port"])
        b.start()
        rs = [get(p, "/x", "Accept-Encoding: gzip\r\n") for p in (b.port, nvals["port"])]
        for name in ("Content-Encoding", "Transfer-Encoding", "Content-Length", "Vary", "ETag"):
            assert rs[0].header(name) == rs[1].header(name), (name, rs)
        assert [r.framing for r in rs] == ["chunked", "chunked"]
        for r in rs:
            assert zlib.decompress(r.body, 31) == body
    finally:
        n.stop()
        problems = b.finish()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def test_http2_client(ballast, be, tmp_path):
    """HTTP/2 frames the compressed body itself: no chunked framing inside the DATA frames."""
    body = text_body(1024 * 1024)
    be.route("/", answer(200, [("Content-Type", "text/plain")], body, "chunked", keep=True))
    px = start(ballast, be, GZ + "http2 on;\n")
    raw = tmp_path / "raw.gz"
    hdr = tmp_path / "h.txt"
    p = curl("-sS", "--http2-prior-knowledge", "-H", "Accept-Encoding: gzip", "-D", str(hdr),
             "-o", str(raw), px.url("/h2"), timeout=60)
    assert p.returncode == 0, p.stderr
    heads = hdr.read_text().lower()
    assert heads.startswith("http/2 200") and "content-encoding: gzip" in heads, heads
    assert gzip.decompress(raw.read_bytes()) == body
