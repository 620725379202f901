"""stream {}: the L4 TCP proxy against real TCP servers (Python, below): balancing over the
shared upstream layer, half-close both ways, a large transfer intact with bounded memory,
connect failover unseen by the client, max_fails, proxy_timeout, graceful stop, reload."""
import errno
import hashlib
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import SLOW, RssSampler, free_port, closed_port, render, run_ballast, wait_for


class TcpServer:
    """A threaded TCP server on 127.0.0.1 running handler(conn, server) per connection."""

    def __init__(self, handler, name="s"):
        self.name = name
        self.handler = handler
        self.port = free_port()
        self.accepted = 0
        self.lock = threading.Lock()
        self.events = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
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
            with self.lock:
                self.accepted += 1
            c.settimeout(30 * SLOW)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c, self)
        except OSError:
            pass
        finally:
            c.close()

    def note(self, what):
        with self.lock:
            self.events.append(what)

    def stop(self):
        self.stop_ev.set()
        self.sock.close()
        self.t.join(2)


def echo(c, srv):
    """Echoes with the server's name in front of each chunk; FIN after the client's FIN."""
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(srv.name.encode() + b":" + d)
    c.shutdown(socket.SHUT_WR)


def pattern(n):
    """n deterministic bytes, sent in 1 MiB pieces."""
    block = hashlib.sha256(b"ballast-stream").digest() * (1 << 15)  # 1 MiB
    while n > 0:
        k = min(n, len(block))
        yield block[:k]
        n -= k


def pattern_sha(n):
    h = hashlib.sha256()
    for piece in pattern(n):
        h.update(piece)
    return h.hexdigest()


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


CONF = """
error_log @tmp@/error.log info;
shutdown_timeout @shutdown@;
stream {
    upstream app {
        %(upstream)s
    }
    server {
        listen 127.0.0.1:@port@;
        proxy_pass app;
        %(server)s
    }
}
"""


def start(ballast, servers, upstream_extra="", server="", shutdown="5s"):
    up = "\n        ".join(["server 127.0.0.1:%d%s;" % (p, opts) for p, opts in servers] +
                           ([upstream_extra] if upstream_extra else []))
    return ballast(CONF % {"upstream": up, "server": server}, shutdown=shutdown)


def talk(port, data=b"hi", timeout=5.0):
    """Sends data, half-closes, returns everything until the proxy's FIN (or reset: a
    session closed with the client's bytes unread is reset by the kernel)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    out = b""
    try:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        while True:
            d = c.recv(65536)
            if not d:
                return out
            out += d
    except OSError as e:
        if e.errno not in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE):
            raise
        return out
    finally:
        c.close()


def test_round_robin_echo(ballast, tcp):
    a, b = tcp(name="a"), tcp(name="b")
    bl = start(ballast, [(a.port, ""), (b.port, "")])
    got = [talk(bl.port, b"x%d" % i) for i in range(10)]
    assert sorted(set(g.split(b":")[0] for g in got)) == [b"a", b"b"]
    assert all(g.split(b":", 1)[1] == b"x%d" % i for i, g in enumerate(got))
    assert a.accepted == 5 and b.accepted == 5, (a.accepted, b.accepted)


def test_hash_remote_addr_consistent(ballast, tcp):
    servers = [tcp(name=n) for n in "abcd"]
    bl = start(ballast, [(s.port, "") for s in servers], "hash $remote_addr consistent;")
    got = {talk(bl.port).split(b":")[0] for _ in range(12)}
    assert len(got) == 1, got  # one client address, one server
    assert sum(s.accepted for s in servers) == 12


def test_least_conn_and_random_load(ballast, tcp):
    a, b = tcp(name="a"), tcp(name="b")
    for method in ("least_conn;", "random two;"):
        bl = start(ballast, [(a.port, ""), (b.port, "")], method)
        assert all(talk(bl.port).endswith(b":hi") for _ in range(6))
        bl.stop()


def test_half_close_client_first(ballast, tcp):
    """The client's FIN reaches the server, which answers after it; the answer comes back."""
    def late(c, srv):
        data = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
        srv.note("eof")
        time.sleep(0.2)
        c.sendall(b"after-eof:" + data)
        c.shutdown(socket.SHUT_WR)

    s = tcp(late)
    bl = start(ballast, [(s.port, "")])
    assert talk(bl.port, b"question") == b"after-eof:question"
    assert s.events == ["eof"]


def test_half_close_server_first(ballast, tcp):
    """The server's FIN reaches the client, which can still send; the server reads it all."""
    done = threading.Event()

    def greeter(c, srv):
        c.sendall(b"hello")
        c.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
        srv.note(data)
        done.set()

    s = tcp(greeter)
    bl = start(ballast, [(s.port, "")])
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=5 * SLOW)
    got = b""
    while True:
        d = c.recv(100)
        if not d:
            break
        got += d
    assert got == b"hello"
    c.sendall(b"still talking")
    c.shutdown(socket.SHUT_WR)
    assert done.wait(5 * SLOW)
    assert s.events == [b"still talking"]
    assert c.recv(10) == b""
    c.close()


BIG = 100 * 1024 * 1024


def test_large_download_intact_slow_reader_bounded_memory(ballast, tcp):
    def bulk(c, srv):
        c.recv(16)
        for piece in pattern(BIG):
            c.sendall(piece)
        c.shutdown(socket.SHUT_WR)

    s = tcp(bulk)
    bl = start(ballast, [(s.port, "")])
    base = bl.rss_kb()
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=30 * SLOW)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    c.sendall(b"go")
    h = hashlib.sha256()
    n = 0
    with RssSampler(bl.pid) as rss:
        time.sleep(1.0)  # a slow reader: the server's sends must stall, not ballast's memory grow
        stalled = rss.update()
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
    c.close()
    assert n == BIG
    assert h.hexdigest() == pattern_sha(BIG)
    # Two 16k buffers per session; allow for malloc and the sampler's noise, not 100 MB.
    assert stalled - base < 8 * 1024, (base, stalled)
    assert rss.max - base < 16 * 1024, (base, rss.max)


def test_large_upload_intact(ballast, tcp):
    def sink(c, srv):
        h = hashlib.sha256()
        n = 0
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        c.sendall(("%d %s" % (n, h.hexdigest())).encode())
        c.shutdown(socket.SHUT_WR)

    s = tcp(sink)
    bl = start(ballast, [(s.port, "")])
    size = 32 * 1024 * 1024
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=30 * SLOW)
    for piece in pattern(size):
        c.sendall(piece)
    c.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        d = c.recv(4096)
        if not d:
            break
        out += d
    c.close()
    assert out.decode() == "%d %s" % (size, pattern_sha(size))


def pipes(pid):
    """Pipes open in pid and its descendants (splice's, while a direction splices)."""
    n = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            n += sum(os.readlink("/proc/%d/fd/%s" % (p, fd)).startswith("pipe:")
                     for fd in os.listdir("/proc/%d/fd" % p))
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return n


def test_bulk_both_ways_spliced_half_close_passes(ballast, tcp):
    """Past 64 KiB a direction moves through a pipe with splice(2): the bytes arrive intact
    both ways, the server's FIN reaches the client while the client still uploads, and the
    pipes exist while the download is stalled and are closed with the session."""
    size = 8 * 1024 * 1024

    def server(c, srv):
        for piece in pattern(size):
            c.sendall(piece)
        c.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        n = 0
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        srv.note((n, h.hexdigest()))

    s = tcp(server)
    bl = start(ballast, [(s.port, "")])
    before = pipes(bl.pid)
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=30 * SLOW)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    # nothing read yet: the download stalls in ballast's pipe, not in its memory
    assert wait_for(lambda: pipes(bl.pid) >= before + 2, 5), (before, pipes(bl.pid))
    h = hashlib.sha256()
    n = 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
    assert (n, h.hexdigest()) == (size, pattern_sha(size))
    for piece in pattern(size):
        c.sendall(piece)
    c.shutdown(socket.SHUT_WR)
    assert wait_for(lambda: s.events, 10)
    assert s.events == [(size, pattern_sha(size))]
    assert c.recv(10) == b""
    c.close()
    assert wait_for(lambda: pipes(bl.pid) == before, 5), (before, pipes(bl.pid))


def test_next_upstream_on_connect_refused(ballast, tcp):
    """A refused connect moves on to the next server; the client never sees it."""
    a = tcp(name="a")
    dead = closed_port()
    bl = start(ballast, [(dead, " max_fails=0"), (a.port, "")])
    for i in range(6):
        assert talk(bl.port, b"m%d" % i) == b"a:m%d" % i
    assert a.accepted == 6
    log = open(os.path.join(bl.dir, "error.log")).read()
    assert "127.0.0.1:%d" % dead in log and "Connection refused" in log


def test_next_upstream_off_closes_client(ballast, tcp):
    dead = closed_port()
    bl = start(ballast, [(dead, "")], server="proxy_next_upstream off;")
    assert talk(bl.port) == b""


def test_next_upstream_tries(ballast, tcp):
    """tries=2 with two dead servers first: the third (alive) is never reached."""
    a = tcp(name="a")
    d1, d2 = closed_port(), closed_port()
    bl = start(ballast, [(d1, " max_fails=0"), (d2, " max_fails=0"), (a.port, "")],
               server="proxy_next_upstream_tries 2;")
    assert talk(bl.port) == b""  # d1, then d2: two tries, none answered
    assert a.accepted == 0


def test_max_fails_marks_server_down(ballast, tcp):
    a = tcp(name="a")
    dead = closed_port()
    bl = start(ballast, [(dead, " max_fails=1 fail_timeout=60s"), (a.port, "")],
               server="proxy_next_upstream off;")
    got = [talk(bl.port) for _ in range(8)]
    # The first pick of the dead server fails (client closed); after that it is down.
    assert got.count(b"") == 1, got
    assert got.count(b"a:hi") == 7


def test_proxy_timeout_idle_close(ballast, tcp):
    a = tcp(name="a")
    bl = start(ballast, [(a.port, "")], server="proxy_timeout 500ms;")
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=10 * SLOW)
    c.sendall(b"one")
    assert c.recv(100) == b"a:one"
    t0 = time.monotonic()
    assert c.recv(100) == b""  # closed by ballast after 500ms of silence
    assert time.monotonic() - t0 < 8 * SLOW
    c.close()


def test_connect_timeout_tries_next(ballast, tcp):
    """A server whose accept queue is full drops the SYN: the connect times out and the next
    server serves, unseen by the client."""
    a = tcp(name="a")
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):  # fill the queue (Linux admits backlog + 1)
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(full.getsockname())
        fillers.append(f)
    time.sleep(0.2)
    try:
        bl = start(ballast, [(full.getsockname()[1], " max_fails=0"), (a.port, "")],
                   server="proxy_connect_timeout 300ms;")
        assert talk(bl.port, timeout=10) == b"a:hi"
        log = open(os.path.join(bl.dir, "error.log")).read()
        assert "timed out" in log, log
    finally:
        for f in fillers:
            f.close()
        full.close()


def test_graceful_stop_drains_sessions(ballast, tcp):
    a = tcp(name="a")
    bl = start(ballast, [(a.port, "")])
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=5 * SLOW)
    c.sendall(b"before")
    assert c.recv(100) == b"a:before"
    bl.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert bl.proc.poll() is None  # still running: a session is open
    c.sendall(b"during")
    assert c.recv(100) == b"a:during"
    c.shutdown(socket.SHUT_WR)
    assert c.recv(100) == b""
    c.close()
    assert bl.wait(5) == 0


def test_shutdown_timeout_closes_sessions(ballast, tcp):
    a = tcp(name="a")
    bl = start(ballast, [(a.port, "")], shutdown="500ms")
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=10 * SLOW)
    c.sendall(b"x")
    assert c.recv(100) == b"a:x"
    bl.send_signal(signal.SIGTERM)
    assert bl.wait(8) == 0
    assert c.recv(100) == b""
    c.close()


def test_reload_session_stays_on_its_generation(ballast, tcp):
    a, b = tcp(name="a"), tcp(name="b")
    bl = start(ballast, [(a.port, "")])
    c = socket.create_connection(("127.0.0.1", bl.port), timeout=5 * SLOW)
    c.sendall(b"1")
    assert c.recv(100) == b"a:1"
    with open(bl.conf_path, "w") as f:
        f.write("worker_processes 1;\n" + render(
            CONF % {"upstream": "server 127.0.0.1:%d;" % b.port, "server": ""}, bl.values))
    bl.send_signal(signal.SIGHUP)
    log = os.path.join(bl.dir, "error.log")
    deadline = time.monotonic() + 5 * SLOW
    while "generation 2 serves on every worker" not in open(log).read():
        assert time.monotonic() < deadline, open(log).read()[-2000:]
        time.sleep(0.02)
    assert talk(bl.port) == b"b:hi"  # new sessions: the new generation
    c.sendall(b"2")
    assert c.recv(100) == b"a:2"  # the old session: still its server
    c.close()


@pytest.mark.parametrize("line,what", [
])
def test_unbuilt_parts_refused(tmp_path, line, what):
    p = tmp_path / "s.conf"
    p.write_text("stream {\n    server {\n        listen 127.0.0.1:%d;\n        proxy_pass "
                 "127.0.0.1:2;\n        %s\n    }\n}\n" % (free_port(), line))
    r = run_ballast(["-t", "-c", str(p)])
    assert r.returncode != 0
    assert what in r.stderr and "%s:5" % p in r.stderr, r.stderr


def test_config_errors(tmp_path):
    cases = [
        ("stream { server { listen 127.0.0.1:%d; } }", "no \"proxy_pass\""),
        ("stream { server { proxy_pass 127.0.0.1:2; } }", "no \"listen\""),
        ("stream { server { listen 127.0.0.1:%d; proxy_pass nowhere; } }",
         "host not found in upstream \"nowhere\""),
        ("stream { upstream u { server 127.0.0.1:2; hash $request_uri; }\n"
         "server { listen 127.0.0.1:%d; proxy_pass u; } }", "stream does not have"),
        ("http { server { listen 127.0.0.1:%(p)d; return 200; } }\n"
         "stream { server { listen 127.0.0.1:%(p)d; proxy_pass 127.0.0.1:2; } }",
         "duplicate listen"),
    ]
    for text, want in cases:
        p = tmp_path / "e.conf"
        port = free_port()
        p.write_text(text % ({"p": port} if "%(p)" in text else (port,) * text.count("%d")))
        r = run_ballast(["-t", "-c", str(p)])
        assert r.returncode != 0 and want in r.stderr, (text, r.stderr)


def test_access_log(ballast, tcp):
    """One line per session when it ends: who, where to (every server tried), bytes each way,
    time, status (200 connected, 502 no connect succeeded, 503 no live server)."""
    a = tcp(name="a")
    dead = closed_port()
    bl = ballast("""
error_log @tmp@/error.log info;
stream {
    log_format l4 '$remote_addr|$upstream_addr|$bytes_sent|$bytes_received|$session_time|$status';
    access_log @tmp@/stream.log l4 buffer=1 flush=1ms;
    upstream app { server 127.0.0.1:%d max_fails=0; server 127.0.0.1:%d; }
    upstream gone { server 127.0.0.1:%d down; }
    server { listen 127.0.0.1:@port@; proxy_pass app; }
    server { listen 127.0.0.1:@port2@; proxy_pass 127.0.0.1:%d; }
    server { listen 127.0.0.1:@port3@; proxy_pass gone; access_log off; }
}
""" % (dead, a.port, dead, dead))
    assert talk(bl.port, b"12345") == b"a:12345"
    assert talk(bl.values["port2"]) == b""
    assert talk(bl.values["port3"]) == b""
    path = os.path.join(bl.dir, "stream.log")
    deadline = time.monotonic() + 5 * SLOW
    while True:
        lines = open(path).read().splitlines() if os.path.exists(path) else []
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(lines) == 2, lines
    f = lines[0].split("|")
    assert f[0] == "127.0.0.1"
    assert f[1] == "127.0.0.1:%d, 127.0.0.1:%d" % (dead, a.port)
    assert f[2:4] == ["7", "5"]  # "a:12345" back, "12345" up
    assert re.match(r"^\d+\.\d{3}$", f[4]) and f[5] == "200"
    f = lines[1].split("|")
    assert f[1] == "127.0.0.1:%d" % dead and f[2:4] == ["0", "0"] and f[5] == "502"


def test_active_check_takes_dead_server_out(ballast, tcp):
    """The http upstream layer's active checks serve stream groups unchanged: once a check
    finds a server dead, sessions stop going there (proxy_next_upstream off: nothing hides a
    pick of the dead server)."""
    a = tcp(name="a")
    dead = closed_port()
    bl = start(ballast, [(dead, " max_fails=0"), (a.port, "")],
               "check interval=100 rise=1 fall=1 timeout=500 type=tcp;",
               server="proxy_next_upstream off;")
    log = os.path.join(bl.dir, "error.log")
    deadline = time.monotonic() + 5 * SLOW
    while True:
        got = [talk(bl.port) for _ in range(4)]
        if all(g == b"a:hi" for g in got):
            break
        assert time.monotonic() < deadline, (got, open(log).read()[-2000:])
        time.sleep(0.1)
    assert all(talk(bl.port) == b"a:hi" for _ in range(10))
