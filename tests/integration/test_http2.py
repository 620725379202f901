"""HTTP/2 to clients: h2c with prior knowledge and h2 by ALPN (curl, h2load), HTTP/1.1 on the
same ports, bodies both ways, variables, GOAWAY on a graceful stop, and abuse (rapid reset, an
oversized header list, an HPACK bomb, a stalled handshake) bounded with other clients served.
A small raw HTTP/2 client (frames and literal HPACK, no library) drives the abuse cases."""
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import SLOW, body_sha256, proxy_conf, sha256, gen_body, wait_for

from test_tls import make_cert

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, CONTINUATION = 0, 1, 3, 4, 7, 9
END_STREAM, END_HEADERS = 0x1, 0x4


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("h2certs"))
    return make_cert(d, "a", "a.test", "ec")


def h2_conf(cert, listen_extra="http2", server="", http="", main="", error_log="info",
            location="", keepalive=16):
    """Two addresses for one server: @port@ plain (h2c when listen_extra says http2) and
    @ports@ TLS."""
    return proxy_conf(
        ["127.0.0.1:@pb@"], keepalive=keepalive, error_log=error_log, main=main,
        listen="127.0.0.1:@port@ %s;\n        listen 127.0.0.1:@ports@ ssl %s" % (
            listen_extra, listen_extra),
        location=location,
        # the smallest read buffer, so that bursts run into the per-event read budget
        http="client_max_body_size 0;\n    http2_recv_buffer_size 16k;\n    log_format h2 '$request|$server_protocol|$http2|"
             "$status';\n    access_log @tmp@/access.log h2;\n    " + http,
        server="ssl_certificate %s;\n        ssl_certificate_key %s;\n        "
               "location /vars { return 200 \"$server_protocol|$http2|$scheme|$request\\n\"; }\n"
               "        %s" % (cert[0], cert[1], server))


def curl(px, path, *args, tls=False, timeout=15):
    if tls:
        url = "https://a.test:%d%s" % (px.values["ports"], path)
        pre = ["--resolve", "a.test:%d:127.0.0.1" % px.values["ports"], "-k"]
    else:
        url = "http://127.0.0.1:%d%s" % (px.port, path)
        pre = []
    r = subprocess.run(["curl", "-sS", "--max-time", str(int(timeout * SLOW)), "-w",
                        "\n%{http_code} %{http_version}"] + pre + list(args) + [url],
                       capture_output=True, timeout=(timeout + 15) * SLOW)
    body, _, tail = r.stdout.rpartition(b"\n")
    code, _, ver = tail.decode().partition(" ")
    return r.returncode, int(code or 0), ver, body, r.stderr.decode()


@pytest.fixture
def px(ballast, backend, cert):
    be = backend("b")
    b = ballast(h2_conf(cert), pb=be.port)
    b.be = be
    return b


# -------------------------------------------------------------------------------- basics

def test_h2c_prior_knowledge_get(px, backend):
    rc, code, ver, body, err = curl(px, "/x?text=hello", "--http2-prior-knowledge")
    assert rc == 0, err
    assert (code, ver, body) == (200, "2", b"hello"), (code, ver, body)
    rc, code, ver, body, err = curl(px, "/echo/path?a=1", "--http2-prior-knowledge",
                                    "-H", "X-Test: yes", "-b", "a=1", "-b", "b=2")
    assert (rc, code, ver) == (0, 200, "2"), err
    e = json.loads(body)
    # The upstream sees HTTP/1.1 with Host from :authority, the client's fields, one Cookie.
    assert e["version"] == "HTTP/1.1" and e["target"] == "/echo/path?a=1", e
    hdrs = {k.lower(): v for k, v in e["headers"]}
    assert hdrs["host"] == "127.0.0.1:%d" % px.port, hdrs
    assert hdrs["x-test"] == "yes", hdrs
    assert hdrs["cookie"] in ("a=1; b=2", "a=1;b=2"), hdrs


def test_variables_show_http2(px):
    rc, code, ver, body, err = curl(px, "/vars", "--http2-prior-knowledge")
    assert (rc, code) == (0, 200), err
    assert body == b"HTTP/2.0|h2c|http|GET /vars HTTP/2.0\n", body
    rc, code, ver, body, err = curl(px, "/vars", "--http2", tls=True)
    assert (rc, code, ver) == (0, 200, "2"), err
    assert body == b"HTTP/2.0|h2|https|GET /vars HTTP/2.0\n", body
    rc, code, ver, body, err = curl(px, "/vars", "--http1.1", tls=True)
    assert (rc, code, ver) == (0, 200, "1.1"), err
    assert body == b"HTTP/1.1||https|GET /vars HTTP/1.1\n", body
    log = os.path.join(px.dir, "access.log")
    assert wait_for(lambda: os.path.exists(log) and
                    "GET /vars HTTP/2.0|HTTP/2.0|h2|200" in open(log).read(), 5 * SLOW)


def test_http11_on_the_same_ports(px):
    rc, code, ver, body, err = curl(px, "/x?text=one", "--http1.1")
    assert (rc, code, ver, body) == (0, 200, "1.1", b"one"), err
    rc, code, ver, body, err = curl(px, "/x?text=two", "--http1.1", tls=True)
    assert (rc, code, ver, body) == (0, 200, "1.1", b"two"), err
    rc, code, ver, body, err = curl(px, "/x?text=three", "--http2", tls=True)
    assert (rc, code, ver, body) == (0, 200, "2", b"three"), err


def test_http2_on_in_server_and_off_by_default(ballast, backend, cert):
    be = backend("b")
    on = ballast(h2_conf(cert, listen_extra="", server="http2 on;"), pb=be.port)
    rc, code, ver, body, err = curl(on, "/x?text=y", "--http2", tls=True)
    assert (rc, code, ver) == (0, 200, "2"), err
    rc, code, ver, body, err = curl(on, "/x?text=y", "--http2-prior-knowledge")
    assert (rc, code, ver) == (0, 200, "2"), err
    off = ballast(h2_conf(cert, listen_extra=""), pb=be.port)
    rc, code, ver, body, err = curl(off, "/x?text=y", "--http2", tls=True)
    assert (rc, code, ver) == (0, 200, "1.1"), err  # ALPN does not offer h2


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2"])
def test_bodies_both_ways(px, tls, tmp_path):
    flag = "--http2" if tls else "--http2-prior-knowledge"
    up = gen_body(1 << 20, seed=3)
    f = tmp_path / "up.bin"
    f.write_bytes(up)
    # with content-length
    rc, code, ver, body, err = curl(px, "/up", flag, "--data-binary", "@%s" % f, tls=tls)
    assert (rc, code, ver) == (0, 200, "2"), err
    e = json.loads(body)
    assert (e["body_len"], e["body_sha256"]) == (len(up), sha256(up)), e
    # without: the upstream gets it chunked
    rc, code, ver, body, err = curl(px, "/up", flag, "-T", str(f), "-X", "POST",
                                    "-H", "Content-Length:", tls=tls)
    assert (rc, code, ver) == (0, 200, "2"), err
    e = json.loads(body)
    assert (e["body_len"], e["body_sha256"]) == (len(up), sha256(up)), e
    # 10 MB down, with a length and chunked upstream
    for q in ("", "&chunked=1"):
        rc, code, ver, body, err = curl(px, "/down?size=%d%s" % (10 << 20, q), flag, tls=tls,
                                        timeout=60)
        assert (rc, code, ver) == (0, 200, "2"), err
        assert len(body) == 10 << 20 and sha256(body) == body_sha256(10 << 20), len(body)


def test_local_responses_and_errors(px):
    rc, code, ver, body, err = curl(px, "/x?status=404", "--http2-prior-knowledge")
    assert (rc, code) == (0, 404), err
    rc, code, ver, body, err = curl(px, "/x?status=204", "--http2-prior-knowledge")
    assert (rc, code, body) == (0, 204, b""), err
    rc, code, ver, body, err = curl(px, "/x?size=100", "-I", "--http2-prior-knowledge")
    assert (rc, code) == (0, 200), err
    assert b"content-length: 100" in body.lower(), body


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2"])
def test_h2load_many_streams(px, tls):
    url = ("https://127.0.0.1:%d/x?text=ok" % px.values["ports"]) if tls else \
          ("http://127.0.0.1:%d/x?text=ok" % px.port)
    r = subprocess.run(["h2load", "-n", "2000", "-c", "10", "-m", "10", url],
                       capture_output=True, text=True, timeout=120 * SLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    assert "status codes: 2000 2xx" in r.stdout, r.stdout


# -------------------------------------------------------------------------------- raw client

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hpack_int(v, bits, first=0):
    lim = (1 << bits) - 1
    if v < lim:
        return bytes([first | v])
    out = [first | lim]
    v -= lim
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def hpack_lit(name, value, index=False):
    """A literal field with a new name, not Huffman coded (indexed when index)."""
    if isinstance(name, str):
        name = name.encode()
    if isinstance(value, str):
        value = value.encode()
    return (b"\x40" if index else b"\x00") + hpack_int(len(name), 7) + name + \
        hpack_int(len(value), 7) + value


def request_block(path="/", authority="localhost", method="GET"):
    return (hpack_lit(":method", method) + hpack_lit(":scheme", "http") +
            hpack_lit(":path", path) + hpack_lit(":authority", authority))


class H2Raw:
    def __init__(self, port, timeout=10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def frames(self, until=None, timeout=10.0):
        """Reads frames until EOF, until(frames) is true, or timeout; returns (frames, eof)."""
        out = []
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                if f[0] == SETTINGS and not (f[1] & 1):
                    try:
                        self.s.sendall(frame(SETTINGS, 1, 0))
                    except OSError:
                        pass
                out.append(f)
            if until and until(out):
                return out, False
            self.s.settimeout(max(0.05, deadline - time.time()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return out, True
            if not d:
                return out, True
            self.buf += d
        return out, False

    def close(self):
        self.s.close()


def goaway_code(frames):
    for f in frames:
        if f[0] == GOAWAY:
            return int.from_bytes(f[3][4:8], "big")
    return None


def test_raw_client_request(px):
    c = H2Raw(px.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/x?text=raw")))
    fr, eof = c.frames(lambda fr: any(f[0] == DATA and f[2] == 1 and f[1] & END_STREAM
                                      for f in fr))
    c.close()
    assert b"raw" in b"".join(f[3] for f in fr if f[0] == DATA and f[2] == 1), fr


def test_goaway_on_graceful_stop(ballast, backend, cert):
    be = backend("b")
    b = ballast(h2_conf(cert), pb=be.port)
    c = H2Raw(b.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/x?text=late&delay=1")))
    assert wait_for(lambda: len(be.requests) == 1, 5 * SLOW)
    b.send_signal(signal.SIGTERM)
    fr, eof = c.frames(timeout=10)
    c.close()
    assert goaway_code(fr) == 0, fr          # GOAWAY, NO_ERROR
    body = b"".join(f[3] for f in fr if f[0] == DATA and f[2] == 1)
    assert body == b"late", fr               # the stream in flight finished
    assert eof, fr                           # then the connection closed
    assert b.wait(10) == 0


def test_rapid_reset_closes_the_connection(px, backend):
    """CVE-2023-44487: HEADERS then RST_STREAM, 10 000 times in a burst."""
    served = []
    stop = threading.Event()

    def normal_client():
        while not stop.is_set() and len(served) < 200:
            rc, code, ver, body, err = curl(px, "/x?text=ok", "--http2-prior-knowledge")
            served.append((rc, code, body))

    t = threading.Thread(target=normal_client, daemon=True)
    t.start()
    c = H2Raw(px.port)
    burst = []
    for i in range(10000):
        sid = 2 * i + 1
        burst.append(frame(HEADERS, END_HEADERS | END_STREAM, sid, request_block("/x?text=r")))
        burst.append(frame(RST_STREAM, 0, sid, struct.pack(">I", 8)))
    data = b"".join(burst)
    try:
        for i in range(0, len(data), 65536):
            c.send(data[i:i + 65536])
    except OSError:
        pass  # closed under us: what the test wants
    fr, eof = c.frames(timeout=10)
    c.close()
    assert eof, "connection still open after the burst"
    assert goaway_code(fr) in (None, 11), fr  # ENHANCE_YOUR_CALM when it got out
    stop.set()
    t.join(60 * SLOW)
    assert served and all(s == (0, 200, b"ok") for s in served), served[:5]
    rc, code, ver, body, err = curl(px, "/x?text=after", "--http2-prior-knowledge")
    assert (rc, code, body) == (0, 200, b"after"), err
    log = open(os.path.join(px.dir, "error.log")).read()
    assert "rapid reset" in log, log[-2000:]


def test_oversized_header_list_refused(px):
    # one field longer than a large_client_header_buffers buffer (8k)
    rc, code, ver, body, err = curl(px, "/x?text=no", "--http2-prior-knowledge",
                                    "-H", "X-Big: " + "a" * 20000)
    assert rc == 0, err
    assert code in (400, 414, 431), (code, body)
    # many fields over the whole list's bound (4 x 8k)
    args = []
    for i in range(40):
        args += ["-H", "X-H%d: %s" % (i, "b" * 1000)]
    rc, code, ver, body, err = curl(px, "/x?text=no", "--http2-prior-knowledge", *args)
    assert rc == 0, err
    assert code in (400, 431), (code, body)
    rc, code, ver, body, err = curl(px, "/x?text=fine", "--http2-prior-knowledge")
    assert (rc, code, body) == (0, 200, b"fine"), err


def test_hpack_bomb_closes_the_connection(px):
    """A 4 KB field put in the dynamic table, then referenced by one byte many times."""
    c = H2Raw(px.port)
    block = request_block("/x?text=bomb") + hpack_lit("x-bomb", "z" * 4000, index=True)
    block += bytes([0x80 | 62]) * 3000
    frames = b""
    first = True
    while block:
        part, block = block[:16000], block[16000:]
        flags = (END_HEADERS if not block else 0) | (END_STREAM if first else 0)
        frames += frame(HEADERS if first else CONTINUATION, flags, 1, part)
        first = False
    try:
        c.send(frames)
    except OSError:
        pass
    fr, eof = c.frames(timeout=10)
    c.close()
    assert eof, fr
    assert not any(f[0] == DATA and f[2] == 1 for f in fr), fr
    rc, code, ver, body, err = curl(px, "/x?text=alive", "--http2-prior-knowledge")
    assert (rc, code, body) == (0, 200, b"alive"), err


def test_stalled_handshake_does_not_block_others(px):
    stalled = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", px.values["ports"]))
        s.sendall(b"\x16\x03\x01\x02\x00")  # a ClientHello record header, then nothing
        stalled.append(s)
    p = socket.create_connection(("127.0.0.1", px.port))
    p.sendall(PREFACE[:10])  # a preface cut short
    stalled.append(p)
    try:
        for tls in (False, True):
            flag = "--http2" if tls else "--http2-prior-knowledge"
            rc, code, ver, body, err = curl(px, "/x?text=ok", flag, tls=tls)
            assert (rc, code, ver, body) == (0, 200, "2", b"ok"), err
    finally:
        for s in stalled:
            s.close()


def test_goaway_on_reload(ballast, backend, cert):
    be = backend("b")
    b = ballast(h2_conf(cert), pb=be.port)
    c = H2Raw(b.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/x?text=one")))
    fr, eof = c.frames(lambda fr: any(f[0] == DATA and f[1] & END_STREAM for f in fr))
    assert not eof, fr
    b.send_signal(signal.SIGHUP)
    fr, eof = c.frames(lambda fr: goaway_code(fr) is not None, timeout=10)
    c.close()
    assert goaway_code(fr) == 0, fr
    rc, code, ver, body, err = curl(b, "/x?text=new", "--http2-prior-knowledge")
    assert (rc, code, body) == (0, 200, b"new"), err


def test_slow_stream_does_not_stall_the_others(px, backend):
    """Stream 1 downloads 64 MB and never opens its window; stream 3 on the same connection is
    served, and the upstream of stream 1 is held back (ballast does not buffer its body)."""
    c = H2Raw(px.port)
    # a large connection window, so that only stream 1's own window holds it back
    c.send(frame(8, 0, 0, struct.pack(">I", (1 << 31) - 1 - 65535)))
    size = 64 << 20
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/big?size=%d" % size)))
    fr, eof = c.frames(lambda fr: sum(len(f[3]) for f in fr if f[0] == DATA and f[2] == 1)
                       >= 65535, timeout=10)
    assert not eof, fr
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, request_block("/x?text=other")))
    fr, eof = c.frames(lambda fr: any(f[0] == DATA and f[2] == 3 and f[1] & END_STREAM
                                      for f in fr), timeout=10)
    assert not eof, fr
    assert b"other" in b"".join(f[3] for f in fr if f[0] == DATA and f[2] == 3), fr
    time.sleep(0.5 * SLOW)
    assert px.be.body_bytes_sent < size // 2, px.be.body_bytes_sent
    c.close()


def test_continuation_flood_closes_the_connection(px):
    """CVE-2024-27316 class: a header block that never ends, in many CONTINUATION frames."""
    c = H2Raw(px.port)
    data = frame(HEADERS, END_STREAM, 1, request_block("/x?text=flood"))
    for i in range(2000):
        data += frame(CONTINUATION, 0, 1, hpack_lit("x-c%d" % i, "v" * 20))
    try:
        c.send(data)
    except OSError:
        pass
    fr, eof = c.frames(timeout=10)
    c.close()
    assert eof, fr
    assert not any(f[0] == DATA and f[2] == 1 for f in fr), fr
    rc, code, ver, body, err = curl(px, "/x?text=alive", "--http2-prior-knowledge")
    assert (rc, code, body) == (0, 200, b"alive"), err


def test_h2c_after_a_proxy_protocol_header(ballast, backend, cert):
    be = backend("b")
    b = ballast(h2_conf(cert, listen_extra="http2 proxy_protocol",
                        server='location /pp { return 200 "$proxy_protocol_addr $http2"; }'),
                pb=be.port)
    s = socket.create_connection(("127.0.0.1", b.port), timeout=10 * SLOW)
    s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\n")
    c = H2Raw.__new__(H2Raw)
    c.s, c.buf = s, b""
    c.send(PREFACE + frame(SETTINGS, 0, 0) +
           frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/pp")))
    fr, eof = c.frames(lambda fr: any(f[0] == DATA and f[2] == 1 and f[1] & END_STREAM
                                      for f in fr))
    c.close()
    assert b"".join(f[3] for f in fr if f[0] == DATA and f[2] == 1) == b"192.0.2.7 h2c", fr


def test_keepalive_requests_bounds_the_streams(ballast, backend, cert):
    be = backend("b")
    b = ballast(h2_conf(cert, http="keepalive_requests 3;"), pb=be.port)
    c = H2Raw(b.port)
    for sid in (1, 3, 5):
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, request_block("/x?text=%d" % sid)))
    fr, eof = c.frames(timeout=10)
    c.close()
    assert goaway_code(fr) == 0, fr
    for sid in (1, 3, 5):
        assert b"".join(f[3] for f in fr if f[0] == DATA and f[2] == sid) == b"%d" % sid, fr
    assert eof, fr
