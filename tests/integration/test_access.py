"""allow / deny (src/policy/access.c) in http, compared with nginx 1.22 on the same config,
IPv6 from ::1, after realip, and in stream; stream limit_conn."""
import os
import socket
import threading
import time

import pytest

from conftest import SLOW, Ballast, http_get, render, wait_for
from nginx_ref import Nginx

RULES = """
    server {
        listen 127.0.0.1:@port@;
        root @www@;
        location /first-deny/ { deny 127.0.0.1; allow all; }
        location /first-allow/ { allow 127.0.0.0/8; deny all; }
        location /deny-all/ { deny all; }
        location /other-net/ { allow 10.0.0.0/8; deny all; }
        location /v6-only/ { allow ::1; deny all; }
        location /no-match/ { deny 10.0.0.1; }
        location /inherit/ { }
        location /own/ { allow all; }
        location /cidr/ { deny 127.0.0.0/30; allow all; }
        location /cidr-out/ { deny 127.0.0.4/30; allow all; }
        deny 127.0.0.1;
    }
"""
PATHS = ["/first-deny/", "/first-allow/", "/deny-all/", "/other-net/", "/v6-only/",
         "/no-match/", "/inherit/", "/own/", "/cidr/", "/cidr-out/"]


def make_www(base):
    d = os.path.join(str(base), "www")
    for p in PATHS:
        os.makedirs(d + p, exist_ok=True)
        with open(d + p + "index.html", "w") as f:
            f.write("ok\n")
    return d


def test_rules_match_nginx(tmp_path):
    """First match wins, no match allows, a level with rules replaces the inherited ones:
    every path answers as nginx answers it."""
    d = make_www(tmp_path)
    nvals = {"www": d}
    n = Nginx(str(tmp_path / "nginx"), render(RULES, nvals), access_log_off=True)
    b = Ballast(str(tmp_path / "ballast"), "http {\n%s\n}\n" % RULES, values={"www": d})
    try:
        n.wait_listening(nvals["port"])
        b.start()
        got = {p: (http_get(b.port, p).status, http_get(nvals["port"], p).status)
               for p in PATHS}
        for p, (bs, ns) in got.items():
            assert bs == ns, "%s: ballast %s, nginx %s (all: %s)" % (p, bs, ns, got)
        assert got["/first-deny/"][0] == 403 and got["/first-allow/"][0] == 200
        assert got["/inherit/"][0] == 403 and got["/own/"][0] == 200
        assert "access forbidden by rule" in b.stderr_text()
    finally:
        n.stop()
        problems = b.finish()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def get6(port, path):
    s = socket.create_connection(("::1", port), timeout=5 * SLOW)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1])
    finally:
        s.close()


def can_connect6(port):
    try:
        socket.create_connection(("::1", port), timeout=1).close()
        return True
    except OSError:
        return False


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback")
def test_ipv6_rules(ballast, tmp_path):
    d = make_www(tmp_path)
    for p in ("v6", "net", "v4rule", "all"):
        os.makedirs(os.path.join(d, p), exist_ok=True)
        with open(os.path.join(d, p, "index.html"), "w") as f:
            f.write("ok\n")
    b = ballast("""
http {
    server {
        listen [::1]:@port@;
        root @www@;
        location /v6/ { allow ::1; deny all; }
        location /net/ { allow 2001:db8::/32; deny ::/0; }
        location /v4rule/ { deny 127.0.0.1; }
        location /all/ { deny all; }
    }
}
""", www=d, wait=False)
    assert wait_for(lambda: can_connect6(b.port), 5), b.stderr_text()
    assert get6(b.port, "/v6/") == 200
    assert get6(b.port, "/net/") == 403
    assert get6(b.port, "/v4rule/") == 200  # an IPv4 rule does not match ::1
    assert get6(b.port, "/all/") == 403


def test_rules_after_realip(ballast, tmp_path):
    """The rules see the address set_real_ip_from established."""
    d = make_www(tmp_path)
    b = ballast("""
http {
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Real-IP;
    server {
        listen 127.0.0.1:@port@;
        root @www@;
        location /other-net/ { allow 10.0.0.0/8; deny all; }
    }
}
""", www=d)
    assert http_get(b.port, "/other-net/").status == 403
    assert http_get(b.port, "/other-net/", headers={"X-Real-IP": "10.1.2.3"}).status == 200
    assert http_get(b.port, "/other-net/", headers={"X-Real-IP": "11.1.2.3"}).status == 403


# ---- stream --------------------------------------------------------------------------------

class Greeter:
    """A TCP server that writes "hi" to each connection, then closes it (hold=True: keeps it
    open until the client closes)."""

    def __init__(self, hold=False):
        self.hold = hold
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.sendall(b"hi\n")
            if self.hold:
                c.settimeout(30 * SLOW)
                while c.recv(4096):
                    pass
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stop_ev.set()
        self.sock.close()
        self.t.join(5)


@pytest.fixture
def greeter():
    made = []

    def make(**kw):
        g = Greeter(**kw)
        made.append(g)
        return g
    yield make
    for g in made:
        g.stop()


def stream_answers(port, timeout=3.0):
    """The first line a connection through the stream proxy reads ("" when it is closed
    without a byte)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    try:
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\n"):
                break
        return data.decode()
    finally:
        s.close()


def test_stream_allow_deny(ballast, greeter):
    be = greeter()
    b = ballast("""
stream {
    log_format l4 '$remote_addr $status';
    server {
        listen 127.0.0.1:@port@;
        access_log @tmp@/s.log l4 flush=100ms;
        allow 10.0.0.0/8;
        deny all;
        proxy_pass %s;
    }
    server {
        listen 127.0.0.1:@port2@;
        deny 10.0.0.0/8;
        allow 127.0.0.1;
        proxy_pass %s;
    }
}
""" % (be.addr, be.addr))
    assert stream_answers(b.port) == ""
    assert stream_answers(b.values["port2"]) == "hi\n"
    assert be.accepted == 1  # the denied connection never reached the backend
    log = os.path.join(b.dir, "s.log")
    assert wait_for(lambda: os.path.exists(log) and "403" in open(log).read(), 3)


@pytest.mark.serial
def test_stream_limit_conn(ballast, greeter):
    be = greeter(hold=True)
    b = ballast("""
stream {
    limit_conn_zone $binary_remote_addr zone=tcp:1m;
    log_format l4 '$status $limit_conn_status';
    access_log @tmp@/s.log l4 flush=100ms;
    server {
        listen 127.0.0.1:@port@;
        limit_conn tcp 2;
        proxy_pass %s;
    }
    server {
        listen 127.0.0.1:@port2@;
        limit_conn tcp 1;
        limit_conn_dry_run on;
        proxy_pass %s;
    }
}
""" % (be.addr, be.addr), workers=2)
    held = [socket.create_connection(("127.0.0.1", b.port), timeout=5 * SLOW) for _ in range(2)]
    try:
        # both held sessions are counted once they are accepted
        time.sleep(0.3 * SLOW)
        assert stream_answers(b.port) == ""
        assert "limiting connections" in b.stderr_text()
        assert be.accepted == 2
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: stream_answers(b.port, timeout=0.5).startswith("hi"), 3)

    # dry run: nothing refused, the log says where it would have been
    held = [socket.create_connection(("127.0.0.1", b.values["port2"]), timeout=5 * SLOW)
            for _ in range(2)]
    try:
        for s in held:
            assert s.recv(10) == b"hi\n"
    finally:
        for s in held:
            s.close()
    log = os.path.join(b.dir, "s.log")
    assert wait_for(lambda: os.path.exists(log) and "REJECTED_DRY_RUN" in open(log).read(), 5)
    text = open(log).read()
    assert "503 REJECTED" in text and "200 PASSED" in text, text


class UdpEcho:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.got = 0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            self.got += 1
            self.sock.sendto(b"echo:" + data, peer)

    def stop(self):
        self.stop_ev.set()
        self.t.join(5)
        self.sock.close()


def udp_ask(port, data=b"x", timeout=0.5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout * SLOW)
    try:
        s.sendto(data, ("127.0.0.1", port))
        return s.recvfrom(2048)[0]
    except socket.timeout:
        return None
    finally:
        s.close()


def test_udp_allow_deny_and_limit_conn(ballast):
    """UDP sessions pass the same phases: a denied client's datagram goes nowhere."""
    echo = UdpEcho()
    try:
        b = ballast("""
stream {
    limit_conn_zone $binary_remote_addr zone=u:1m;
    server {
        listen 127.0.0.1:@port@ udp;
        proxy_responses 1;
        deny 127.0.0.1;
        proxy_pass %s;
    }
    server {
        listen 127.0.0.1:@port2@ udp;
        proxy_responses 1;
        allow 127.0.0.1;
        deny all;
        limit_conn u 5;
        proxy_pass %s;
    }
}
""" % (echo.addr, echo.addr), wait=False)
        time.sleep(0.5 * SLOW)
        assert udp_ask(b.values["port2"], b"a") == b"echo:a"
        assert udp_ask(b.port, b"b") is None
        assert echo.got == 1
    finally:
        echo.stop()
