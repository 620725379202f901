"""PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt): `listen ... proxy_protocol` on http
and stream listeners with raw sockets sending the headers (whole and split across sends), the
$proxy_protocol_* variables in headers, logs and hash keys, realip from the header, malformed,
missing and late headers closed and logged."""
import errno
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import SLOW, proxy_conf, run_ballast, wait_for
from test_stream import TcpServer, echo

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src="192.0.2.7", dst="198.51.100.1", sport=56324, dport=443, fam="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src="192.0.2.7", dst="198.51.100.1", sport=56324, dport=443, cmd=1, tlvs=b""):
    if ":" in src:
        addr = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + struct.pack("!HH", sport, dport))
        fam = 0x21
    else:
        addr = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
        fam = 0x11
    body = addr + tlvs
    return V2_SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


REQ = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def exchange(port, pieces, timeout=5.0, pause=0.05):
    """Sends pieces one by one (pausing between them so each is its own read), then reads
    until EOF or reset. Returns the bytes received."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    out = b""
    try:
        for i, p in enumerate(pieces):
            if i:
                time.sleep(pause)
            c.sendall(p)
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except ConnectionResetError:
        pass
    finally:
        c.close()
    return out


def split(data, at):
    return [data[:at], data[at:]]


HTTP_FORMS = [
    ("v1", [v1() + REQ], "192.0.2.7", 56324, "198.51.100.1", 443),
    ("v1-split", split(v1(), 9) + [REQ], "192.0.2.7", 56324, "198.51.100.1", 443),
    ("v1-split-crlf", split(v1() + REQ, len(v1()) - 1), "192.0.2.7", 56324, "198.51.100.1",
     443),
    ("v1-tcp6", [v1("2001:db8::7", "::1", 1000, 80, "TCP6") + REQ], "2001:db8::7", 1000, "::1",
     80),
    ("v2", [v2() + REQ], "192.0.2.7", 56324, "198.51.100.1", 443),
    ("v2-split-sig", split(v2() + REQ, 5), "192.0.2.7", 56324, "198.51.100.1", 443),
    ("v2-split-addr", split(v2(), 20) + [REQ], "192.0.2.7", 56324, "198.51.100.1", 443),
    ("v2-tlv", [v2(tlvs=b"\x01\x00\x02h2\x04\x00\x00") + REQ], "192.0.2.7", 56324,
     "198.51.100.1", 443),
    ("v2-ipv6", [v2("2001:db8::9", "2001:db8::1", 7, 8) + REQ], "2001:db8::9", 7,
     "2001:db8::1", 8),
]


@pytest.fixture
def http_pp(ballast, backend):
    be = backend()
    bl = ballast(proxy_conf(
        "127.0.0.1:%d" % be.port, listen="127.0.0.1:@port@ proxy_protocol", error_log="info",
        http="log_format pp '$remote_addr|$proxy_protocol_addr|$proxy_protocol_port|"
             "$proxy_protocol_server_addr|$proxy_protocol_server_port|$realip_remote_addr';\n"
             "access_log @tmp@/access.log pp buffer=1 flush=10ms;",
        location="proxy_set_header X-PP $proxy_protocol_addr:$proxy_protocol_port;\n"
                 "proxy_set_header X-PPS $proxy_protocol_server_addr:"
                 "$proxy_protocol_server_port;\n"
                 "proxy_set_header X-RA $remote_addr;"))
    return bl, be


def log_lines(bl, name="access.log", n=1):
    path = os.path.join(bl.dir, name)
    wait_for(lambda: os.path.exists(path) and len(open(path).read().splitlines()) >= n,
             timeout=5 * SLOW)
    return open(path).read().splitlines()


@pytest.mark.parametrize("name,pieces,src,sport,dst,dport", HTTP_FORMS,
                         ids=[f[0] for f in HTTP_FORMS])
def test_http_header_sets_variables(http_pp, name, pieces, src, sport, dst, dport):
    bl, be = http_pp
    out = exchange(bl.port, pieces)
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    req = be.requests[-1]
    assert req.header("X-PP") == "%s:%d" % (src, sport)
    assert req.header("X-PPS") == "%s:%d" % (dst, dport)
    assert req.header("X-RA") == "127.0.0.1"  # no realip: the peer stays $remote_addr
    assert log_lines(bl)[-1] == "127.0.0.1|%s|%d|%s|%d|127.0.0.1" % (src, sport, dst, dport)


def test_http_keepalive_after_header(http_pp):
    """The header is read once; every request on the connection sees its addresses."""
    bl, be = http_pp
    keep = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
    out = exchange(bl.port, [v1("10.9.8.7") + keep, keep, REQ])
    assert out.count(b"HTTP/1.1 200 ") == 3, out
    assert [r.header("X-PP") for r in be.requests[-3:]] == ["10.9.8.7:56324"] * 3


def test_http_unknown_and_local_keep_the_peer(http_pp):
    bl, be = http_pp
    for hdr in (b"PROXY UNKNOWN\r\n", v2(cmd=0)):
        out = exchange(bl.port, [hdr + REQ])
        assert out.startswith(b"HTTP/1.1 200 "), out[:200]
        assert be.requests[-1].header("X-PP") == ":"  # not found: empty in a header
    assert log_lines(bl, n=2)[-1] == "127.0.0.1|-|-|-|-|127.0.0.1"


BAD = [
    ("missing", REQ),
    ("lowercase", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + REQ),
    ("bad-address", b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n" + REQ),
    ("bad-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n" + REQ),
    ("lf-only", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + REQ),
    ("too-long", b"PROXY TCP4 " + b"1" * 120 + b"\r\n"),
    ("v2-version", V2_SIG + b"\x11\x11\x00\x0c" + b"\x00" * 12 + REQ),
    ("v2-short-addr", V2_SIG + b"\x21\x11\x00\x04" + b"\x00" * 4 + REQ),
    ("v2-bad-tlv", v2(tlvs=b"\x01\x00\x09h2") + REQ),
    ("v2-too-large", V2_SIG + b"\x21\x11\xff\xff" + b"\x00" * 64),
    ("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
]


@pytest.mark.parametrize("name,data", BAD, ids=[b[0] for b in BAD])
def test_http_malformed_header_closes_and_logs(http_pp, name, data):
    bl, be = http_pp
    n = len(be.requests)
    assert exchange(bl.port, [data]) == b""
    assert len(be.requests) == n
    wait_for(lambda: "while reading PROXY protocol" in open(
        os.path.join(bl.dir, "error.log")).read(), timeout=5 * SLOW)
    err = open(os.path.join(bl.dir, "error.log")).read()
    assert "[error]" in err and "client: 127.0.0.1" in err, err[-2000:]
    if name == "missing":
        assert 'broken header: "GET /x HTTP/1.1\\x0D\\x0A' in err, err[-2000:]


def test_http_header_timeout_and_eof(ballast, backend):
    """No header within client_header_timeout: closed and logged at info; a client that
    closes halfway through the header is closed too (no request reaches the backend)."""
    be = backend()
    bl = ballast(proxy_conf("127.0.0.1:%d" % be.port, listen="127.0.0.1:@port@ proxy_protocol",
                            error_log="info", server="client_header_timeout 1s;"))
    t0 = time.monotonic()
    assert exchange(bl.port, [b"PROXY TCP4 1.2"], timeout=10) == b""
    assert time.monotonic() - t0 < 8 * SLOW
    c = socket.create_connection(("127.0.0.1", bl.port))
    c.sendall(b"PROXY TCP4 1.2.3")
    c.shutdown(socket.SHUT_WR)
    c.settimeout(5 * SLOW)
    try:
        assert c.recv(100) == b""
    except ConnectionResetError:
        pass  # closed with the header's bytes unread: the kernel resets
    c.close()
    err = open(os.path.join(bl.dir, "error.log")).read()
    assert "timed out while sending the PROXY protocol header" in err, err[-2000:]
    assert "closed the connection in the PROXY protocol header" in err, err[-2000:]
    assert be.requests == []


def test_http_realip_from_header(ballast, backend):
    """set_real_ip_from + real_ip_header proxy_protocol: $remote_addr and $remote_port become
    the header's source (X-Forwarded-For, X-Real-IP follow), only from a trusted peer."""
    be = backend()
    conf = proxy_conf("127.0.0.1:%d" % be.port, listen="127.0.0.1:@port@ proxy_protocol",
                      server="real_ip_header proxy_protocol;\n"
                             "location /untrusted { set_real_ip_from 10.0.0.0/8;\n"
                             "  proxy_pass http://127.0.0.1:%d; }" % be.port,
                      location="set_real_ip_from 127.0.0.0/8;\n"
                               "proxy_set_header X-RA $remote_addr:$remote_port;\n"
                               "proxy_set_header X-Peer $realip_remote_addr;")
    bl = ballast(conf)
    out = exchange(bl.port, [v2("203.0.113.5", sport=4444) + REQ])
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    r = be.requests[-1]
    assert r.header("X-RA") == "203.0.113.5:4444"
    assert r.header("X-Peer") == "127.0.0.1"
    assert r.header("X-Forwarded-For") == "203.0.113.5"
    assert r.header("X-Real-IP") == "203.0.113.5"
    out = exchange(bl.port, [v1("203.0.113.6") + REQ.replace(b"/x", b"/untrusted")])
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert be.requests[-1].header("X-Forwarded-For") == "127.0.0.1"


def test_http_hash_on_header_address(ballast, backend):
    """$proxy_protocol_addr as a hash key: one source address, one server."""
    bes = [backend(name=n) for n in "abc"]
    bl = ballast(proxy_conf(["127.0.0.1:%d" % b.port for b in bes],
                            upstream="hash $proxy_protocol_addr consistent;",
                            listen="127.0.0.1:@port@ proxy_protocol"))
    for src in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        got = set()
        for sport in range(3):
            out = exchange(bl.port, [v1(src, sport=1000 + sport) + REQ])
            got.add(json.loads(out.split(b"\r\n\r\n", 1)[1])["server"])
        assert len(got) == 1, (src, got)


def test_http_tls_after_header(ballast, backend, tmp_path):
    """With ssl on the same listen, the header comes before the TLS handshake (the ClientHello
    stays in the socket for TLS)."""
    key, crt = str(tmp_path / "k.pem"), str(tmp_path / "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=pp.test",
                    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", key,
                    "-out", crt], check=True, capture_output=True, timeout=60)
    be = backend()
    bl = ballast(proxy_conf("127.0.0.1:%d" % be.port,
                            listen="127.0.0.1:@port@ ssl proxy_protocol",
                            server="ssl_certificate %s; ssl_certificate_key %s;" % (crt, key),
                            location="proxy_set_header X-PP $proxy_protocol_addr;"))
    raw = socket.create_connection(("127.0.0.1", bl.port), timeout=5 * SLOW)
    raw.sendall(v2("198.18.0.1"))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(raw, server_hostname="pp.test") as t:
        t.sendall(REQ)
        out = b""
        while True:
            d = t.recv(65536)
            if not d:
                break
            out += d
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert be.requests[-1].header("X-PP") == "198.18.0.1"


# ------------------------------------------------------------------ stream

STREAM_CONF = """
error_log @tmp@/error.log info;
stream {
    log_format pp '$remote_addr|$proxy_protocol_addr|$proxy_protocol_port|'
                  '$proxy_protocol_server_addr|$proxy_protocol_server_port|$status';
    access_log @tmp@/access.log pp buffer=1 flush=10ms;
    upstream app {
        %(upstream)s
    }
    server {
        listen 127.0.0.1:@port@ proxy_protocol;
        proxy_pass app;
        %(server)s
    }
}
"""


@pytest.fixture
def tcp():
    made = []

    def make(handler=echo, name="s"):
        s = TcpServer(handler, name)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def stream_start(ballast, servers, upstream="", server=""):
    up = "\n        ".join(["server 127.0.0.1:%d;" % s.port for s in servers] +
                           ([upstream] if upstream else []))
    return ballast(STREAM_CONF % {"upstream": up, "server": server})


def stream_talk(port, pieces, pause=0.05):
    """Sends pieces (pausing between them), half-closes, reads to EOF."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    out = b""
    try:
        for i, p in enumerate(pieces):
            if i:
                time.sleep(pause)
            c.sendall(p)
        c.shutdown(socket.SHUT_WR)
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except (ConnectionResetError, BrokenPipeError):
        pass  # ballast closed first, with the client's bytes unread
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            raise
    finally:
        c.close()
    return out


STREAM_FORMS = [
    ("v1", [v1() + b"hello"]),
    ("v1-split", split(v1(), 12) + [b"hello"]),
    ("v1-split-data", split(v1() + b"hello", len(v1()) + 2)),
    ("v2", [v2() + b"hello"]),
    ("v2-split", split(v2(), 3) + [b"hello"]),
    ("v2-header-only-then-data", [v2(), b"hello"]),
]


@pytest.mark.parametrize("name,pieces", STREAM_FORMS, ids=[f[0] for f in STREAM_FORMS])
def test_stream_header_then_relay(ballast, tcp, name, pieces):
    """The header is taken off; the bytes after it, and only those, reach the upstream."""
    s = tcp(name="a")
    bl = stream_start(ballast, [s])
    out = stream_talk(bl.port, pieces)
    assert out.startswith(b"a:") and out.replace(b"a:", b"") == b"hello", out
    line = log_lines(bl)[-1]
    assert line == "127.0.0.1|192.0.2.7|56324|198.51.100.1|443|200", line


def test_stream_realip_and_hash(ballast, tcp):
    """set_real_ip_from in stream: $remote_addr is the header's source for the log and for
    `hash $remote_addr`; an untrusted peer keeps its own."""
    servers = [tcp(name=n) for n in "abcd"]
    bl = stream_start(ballast, servers, "hash $remote_addr consistent;",
                      "set_real_ip_from 127.0.0.1;")
    for src in ("10.1.0.1", "10.1.0.2", "10.1.0.3"):
        got = {stream_talk(bl.port, [v1(src, sport=p) + b"x"]).split(b":")[0]
               for p in (1, 2, 3)}
        assert len(got) == 1, (src, got)
    lines = log_lines(bl, n=9)
    assert lines[-1].startswith("10.1.0.3|10.1.0.3|3|"), lines[-1]
    bl.stop()
    bl2 = stream_start(ballast, servers, "hash $proxy_protocol_addr;",
                       "set_real_ip_from 10.0.0.0/8;")
    assert stream_talk(bl2.port, [v1("10.2.0.1") + b"x"]).endswith(b":x")
    assert log_lines(bl2)[-1].startswith("127.0.0.1|10.2.0.1|"), log_lines(bl2)[-1]


@pytest.mark.parametrize("name,data", BAD, ids=[b[0] for b in BAD])
def test_stream_malformed_header(ballast, tcp, name, data):
    s = tcp()
    bl = stream_start(ballast, [s])
    assert stream_talk(bl.port, [data]) == b""
    line = log_lines(bl)[-1]
    assert line.endswith("|400"), line
    err = open(os.path.join(bl.dir, "error.log")).read()
    assert "while reading PROXY protocol, client: 127.0.0.1" in err, err[-2000:]
    assert s.accepted == 0


def test_stream_header_timeout(ballast, tcp):
    s = tcp()
    bl = stream_start(ballast, [s], server="proxy_protocol_timeout 500ms;")
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=10 * SLOW)
    t0 = time.monotonic()
    c.sendall(b"PROXY TCP4 ")
    try:
        assert c.recv(100) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - t0 < 5 * SLOW
    c.close()
    assert log_lines(bl)[-1].endswith("|400")
    err = open(os.path.join(bl.dir, "error.log")).read()
    assert "proxy_protocol_timeout" in err, err[-2000:]
    assert s.accepted == 0


# ------------------------------------------------------------------ sending


class Recorder:
    """A TCP server that keeps the bytes each connection sent (first `upto` of them) and then
    answers: echo for stream, one HTTP response for http."""

    def __init__(self, tcp, http=False):
        self.conns = []
        self.http = http

        def handler(c, srv):
            data = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                data += d
                if self.http and b"\r\n\r\n" in data:
                    body = b"ok"
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)
                    break
                if not self.http:
                    c.sendall(d)
            srv.note(data)
            if not self.http:
                c.shutdown(socket.SHUT_WR)

        self.srv = tcp(handler)
        self.port = self.srv.port

    def received(self, n=1):
        wait_for(lambda: len(self.srv.events) >= n, timeout=5 * SLOW)
        return self.srv.events


SEND_CONF = """
error_log @tmp@/error.log info;
stream {
    server {
        listen %(listen)s;
        proxy_pass %(to)s;
        proxy_protocol on;
        %(extra)s
    }
}
"""


def client_talk(family, port, data):
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    c = socket.socket(family)
    c.settimeout(5 * SLOW)
    c.connect((host, port))
    cport = c.getsockname()[1]
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        out += d
    c.close()
    return cport, out


def ipv6_ok():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("version", [1, 2])
def test_stream_sends_header_byte_for_byte(ballast, tcp, version):
    rec = Recorder(tcp)
    bl = ballast(SEND_CONF % {"listen": "127.0.0.1:@port@", "to": "127.0.0.1:%d" % rec.port,
                              "extra": "proxy_protocol_version %d;" % version})
    cport, out = client_talk(socket.AF_INET, bl.port, b"payload")
    assert out.endswith(b"payload")  # the recorder echoes all it got, header included
    got = rec.received()[0]
    if version == 1:
        want = b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, bl.port)
    else:
        want = (V2_SIG + b"\x21\x11\x00\x0c" + socket.inet_aton("127.0.0.1") * 2 +
                struct.pack("!HH", cport, bl.port))
    assert got == want + b"payload", got


@pytest.mark.skipif(not ipv6_ok(), reason="no IPv6 loopback")
@pytest.mark.parametrize("version", [1, 2])
def test_stream_sends_ipv6_header(ballast, tcp, version):
    rec = Recorder(tcp)
    bl = ballast(SEND_CONF % {"listen": "[::1]:@port@", "to": "127.0.0.1:%d" % rec.port,
                              "extra": "proxy_protocol_version %d;" % version})
    cport, out = client_talk(socket.AF_INET6, bl.port, b"six")
    assert out.endswith(b"six")
    got = rec.received()[0]
    if version == 1:
        want = b"PROXY TCP6 ::1 ::1 %d %d\r\n" % (cport, bl.port)
    else:
        one = socket.inet_pton(socket.AF_INET6, "::1")
        want = V2_SIG + b"\x21\x21\x00\x24" + one + one + struct.pack("!HH", cport, bl.port)
    assert got == want + b"six", got


def test_stream_sends_realip_address(ballast, tcp):
    """Behind a trusted balancer, the header sent on names the client the first header named."""
    rec = Recorder(tcp)
    bl = ballast(SEND_CONF % {"listen": "127.0.0.1:@port@ proxy_protocol",
                              "to": "127.0.0.1:%d" % rec.port,
                              "extra": "set_real_ip_from 127.0.0.1;"})
    _, out = client_talk(socket.AF_INET, bl.port, v1("192.0.2.9", "198.51.100.2", 1234, 99) +
                         b"data")
    assert out.endswith(b"data")
    assert rec.received()[0] == b"PROXY TCP4 192.0.2.9 127.0.0.1 1234 %d\r\ndata" % bl.port


def test_stream_chain_v2_into_proxy_protocol_listener(ballast, tcp):
    """ballast (proxy_protocol on, version 2) -> ballast (listen ... proxy_protocol): the
    second one logs the first one's client."""
    s = tcp(name="e")
    back = ballast(STREAM_CONF % {"upstream": "server 127.0.0.1:%d;" % s.port, "server": ""})
    front = ballast(SEND_CONF % {"listen": "127.0.0.1:@port@", "to": "127.0.0.1:%d" % back.port,
                                 "extra": "proxy_protocol_version 2;"})
    cport, out = client_talk(socket.AF_INET, front.port, b"hop")
    assert out == b"e:hop"
    line = log_lines(back)[-1]
    assert line == "127.0.0.1|127.0.0.1|%d|127.0.0.1|%d|200" % (cport, front.port), line


@pytest.mark.parametrize("version", [1, 2])
def test_http_sends_header_per_connection(ballast, tcp, version):
    """proxy_protocol on in a location: each upstream connection starts with the header of its
    own client; with keepalive in the group the connections are still not pooled."""
    rec = Recorder(tcp, http=True)
    bl = ballast(proxy_conf(["127.0.0.1:%d" % rec.port], keepalive=4,
                            location="proxy_protocol on;\nproxy_protocol_version %d;" % version))
    ports = []
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", bl.port), timeout=5 * SLOW)
        ports.append(c.getsockname()[1])
        c.sendall(b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while not data.endswith(b"ok"):
            d = c.recv(65536)
            assert d, data
            data += d
        c.close()
    got = rec.received(3)
    assert rec.srv.accepted == 3
    # The recorder may list the connections in another order than the clients came (it records
    # each as it ends): match every client's header to exactly one upstream connection.
    unmatched = list(got)
    for cport in ports:
        if version == 1:
            hdr = b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, bl.port)
        else:
            hdr = (V2_SIG + b"\x21\x11\x00\x0c" + socket.inet_aton("127.0.0.1") * 2 +
                   struct.pack("!HH", cport, bl.port))
        raw = next((r for r in unmatched if r.startswith(hdr + b"GET /p HTTP/1.1\r\n")), None)
        assert raw is not None, (cport, got)
        unmatched.remove(raw)
        assert b"\r\nConnection: close\r\n" in raw, raw


def test_http_chain_v2_realip(ballast, backend):
    """ballast (http, proxy_protocol on, v2) -> ballast (listen ... proxy_protocol,
    real_ip_header proxy_protocol) -> backend: the backend sees the first hop's client."""
    be = backend()
    back = ballast(proxy_conf("127.0.0.1:%d" % be.port, listen="127.0.0.1:@port@ proxy_protocol",
                              server="set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;",
                              location="proxy_set_header X-PP $proxy_protocol_addr:"
                                       "$proxy_protocol_port;"))
    front = ballast(proxy_conf("127.0.0.1:%d" % back.port,
                               location="proxy_protocol on; proxy_protocol_version 2;"))
    c = socket.create_connection(("127.0.0.1", front.port), timeout=5 * SLOW)
    cport = c.getsockname()[1]
    c.sendall(REQ)
    out = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        out += d
    c.close()
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    r = be.requests[-1]
    assert r.header("X-PP") == "127.0.0.1:%d" % cport
    assert r.header("X-Real-IP") == "127.0.0.1"


# ------------------------------------------------------------------ rates

RATE_CONF = """
error_log @tmp@/error.log info;
stream {
    server {
        listen 127.0.0.1:@port@;
        proxy_pass 127.0.0.1:%(to)d;
        %(extra)s
    }
}
"""


def test_download_rate_paces_a_megabyte(ballast, tcp):
    """proxy_download_rate 200k: 1 MB from the upstream takes about 4-5 s (one second's worth
    may go at once, as in nginx), intact; the client's own bytes are not slowed."""
    mb = bytes(range(256)) * 4096

    def sender(c, srv):
        c.recv(100)
        c.sendall(mb)
        c.shutdown(socket.SHUT_WR)
        c.recv(100)

    s = tcp(sender)
    bl = ballast(RATE_CONF % {"to": s.port, "extra": "proxy_download_rate 200k;"})
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=20 * SLOW)
    t0 = time.monotonic()
    c.sendall(b"go")
    got = bytearray()
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += d
    elapsed = time.monotonic() - t0
    c.close()
    assert bytes(got) == mb
    assert elapsed > 3.0, elapsed


def test_upload_rate_paces_the_client(ballast, tcp):
    """proxy_upload_rate 100k: 300 KB from the client take at least 1.5 s to reach the
    upstream; proxy_upload_rate 0 (nginx's "no limit") does not hold them."""
    data = b"u" * 300000

    def counter(c, srv):
        n = 0
        while True:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
        c.sendall(b"%d" % n)
        c.shutdown(socket.SHUT_WR)

    s = tcp(counter)
    for extra, slow in (("proxy_upload_rate 100k;", True), ("proxy_upload_rate 0;", False)):
        bl = ballast(RATE_CONF % {"to": s.port, "extra": extra})
        t0 = time.monotonic()
        _, out = client_talk(socket.AF_INET, bl.port, data)
        elapsed = time.monotonic() - t0
        assert out == b"300000"
        if slow:
            assert elapsed > 1.5, elapsed
        bl.stop()


def test_rate_refused_values(tmp_path):
    for bad in ("proxy_upload_rate -1;", "proxy_download_rate fast;",
                "proxy_download_rate 1k; proxy_download_rate 2k;"):
        p = tmp_path / "r.conf"
        p.write_text("stream { server { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; %s } }\n"
                     % bad)
        r = run_ballast(["-t", "-c", str(p)])
        assert r.returncode != 0 and "r.conf:1" in r.stderr, r.stderr


@pytest.mark.parametrize("line", ["proxy_protocol on;", "proxy_upload_rate 1k;",
                                  "proxy_download_rate 1k;"])
def test_tcp_only_settings_refused_for_udp(tmp_path, line):
    p = tmp_path / "u.conf"
    p.write_text("stream {\n server { listen 127.0.0.1:1 udp; proxy_pass 127.0.0.1:2;\n %s\n"
                 " }\n}\n" % line)
    r = run_ballast(["-t", "-c", str(p)])
    assert r.returncode != 0
    assert "is not supported for UDP" in r.stderr and "u.conf:2" in r.stderr, r.stderr
def test_http_sender_refused_with_tls_upstream(tmp_path):
    p = tmp_path / "t.conf"
    p.write_text("http { server { listen 127.0.0.1:1;\n location / { proxy_protocol on;\n"
                 " proxy_pass https://127.0.0.1:2; } } }\n")
    r = run_ballast(["-t", "-c", str(p)])
    assert r.returncode != 0
    assert '"proxy_protocol on" with "proxy_pass https://" is not supported' in r.stderr
    assert "t.conf:2" in r.stderr, r.stderr


# ------------------------------------------------------------------ ssl_preread


def client_hello(sni, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(i, o, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return o.read()


PREREAD_CONF = """
error_log @tmp@/error.log info;
stream {
    log_format sni '$ssl_preread_server_name|$ssl_preread_alpn_protocols|'
                   '$ssl_preread_protocol|$upstream_addr|$status';
    access_log @tmp@/access.log sni buffer=1 flush=10ms;
    upstream a { server 127.0.0.1:%(a)d; }
    upstream b { server 127.0.0.1:%(b)d; }
    map $ssl_preread_server_name $backend {
        hostnames;
        a.example      a;
        *.a.example    a;
        default        b;
    }
    server {
        listen 127.0.0.1:@port@;
        ssl_preread on;
        proxy_pass $backend;
        %(extra)s
    }
}
"""


def test_ssl_preread_routes_by_sni(ballast, tcp):
    """map $ssl_preread_server_name + proxy_pass $backend: the ClientHello picks the group and
    reaches it byte for byte (the TLS is not terminated); bytes that are not TLS go to the
    default."""
    a, b = tcp(name="a"), tcp(name="b")
    bl = ballast(PREREAD_CONF % {"a": a.port, "b": b.port, "extra": ""})
    for sni, want in (("a.example", b"a"), ("x.A.example", b"a"), ("other.example", b"b"),
                      (None, b"b")):
        hello = client_hello(sni, ["h2", "http/1.1"])
        pieces = split(hello, 40)  # the hello in two reads
        out = stream_talk(bl.port, pieces)
        assert out.split(b":")[0] == want, (sni, out[:20])
        assert out.replace(want + b":", b"") == hello
    out = stream_talk(bl.port, [b"GET / HTTP/1.0\r\n\r\n"])
    assert out == b"b:GET / HTTP/1.0\r\n\r\n"
    lines = log_lines(bl, n=5)
    assert lines[0] == "a.example|h2,http/1.1|TLSv1.3|127.0.0.1:%d|200" % a.port, lines
    assert lines[1].startswith("x.a.example|"), lines
    assert lines[3] == "|h2,http/1.1|TLSv1.3|127.0.0.1:%d|200" % b.port, lines
    assert lines[4] == "|||127.0.0.1:%d|200" % b.port, lines


def test_ssl_preread_full_handshake_passes_through(ballast, tmp_path):
    """A real TLS session through ssl_preread: the backend's certificate and data come back."""
    key, crt = str(tmp_path / "k.pem"), str(tmp_path / "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=a.example",
                    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", key,
                    "-out", crt], check=True, capture_output=True, timeout=60)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]

    def serve():
        try:
            c, _ = lsock.accept()
            with sctx.wrap_socket(c, server_side=True) as t:
                t.sendall(b"tls:" + t.recv(100))
        except OSError:
            pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    bl = ballast(PREREAD_CONF % {"a": port, "b": 1, "extra": ""})
    cctx = ssl.create_default_context(cafile=crt)
    with socket.create_connection(("127.0.0.1", bl.port), timeout=5 * SLOW) as raw:
        with cctx.wrap_socket(raw, server_hostname="a.example") as t:
            t.sendall(b"ping")
            assert t.recv(100) == b"tls:ping"
            assert t.getpeercert()["subject"][0][0][1] == "a.example"
    th.join(5)
    lsock.close()


def test_ssl_preread_timeout_and_unknown_group(ballast, tcp):
    a = tcp(name="a")
    conf = PREREAD_CONF.replace("default        b;", "default        nowhere;")
    bl = ballast(conf % {"a": a.port, "b": a.port, "extra": "preread_timeout 500ms;"})
    # half a hello, then silence: closed after preread_timeout
    hello = client_hello("a.example")
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=10 * SLOW)
    c.sendall(hello[:30])
    try:
        assert c.recv(100) == b""
    except ConnectionResetError:
        pass
    c.close()
    # a name the map sends to a group that does not exist: closed, logged
    assert stream_talk(bl.port, [client_hello("zzz.example")]) == b""
    err = open(os.path.join(bl.dir, "error.log")).read()
    assert "preread_timeout" in err, err[-2000:]
    assert 'no upstream "nowhere"' in err, err[-2000:]
    assert a.accepted == 0
