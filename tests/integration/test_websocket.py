"""WebSocket and other Upgrades through ballast with nginx's recipe (`proxy_http_version 1.1;
proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;` with
its `map`): a python3-websockets echo backend and client (text, binary, 1 MB, fragmented,
ping/pong, close handshake, 50 tunnels at once), the idle timeout, refused upgrades relayed as
ordinary responses, the recipe left out (a plain request, as nginx), and raw-socket edge cases:
bytes right after the 101 head, half-closes both ways, back-pressure with a reader that stops,
the access log line written when the tunnel closes, and a graceful stop with a tunnel open."""
import asyncio
import os
import signal
import socket
import threading
import time

import pytest
import websockets

from conftest import ASAN, SLOW, RssSampler, wait_for

RECIPE = """
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}
"""


def conf(backend_port, location="", http="", main=""):
    return """%s
http {
    %s
    log_format ws "$request $status $body_bytes_sent $upstream_addr";
    access_log @tmp@/access.log ws;
    server {
        listen 127.0.0.1:@port@;
        location / {
            proxy_pass http://127.0.0.1:%d;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            %s
        }
        location /norecipe {
            proxy_pass http://127.0.0.1:%d;
        }
    }
}
""" % (main, RECIPE + http, backend_port, location, backend_port)


# ------------------------------------------------------------------ websockets echo backend

class EchoServer:
    """python3-websockets on its own asyncio loop in a thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_ev = None
        self.port = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _echo(self, ws, path=None):
        try:
            async for msg in ws:
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass

    async def _main(self):
        self.stop_ev = asyncio.Event()
        async with websockets.serve(self._echo, "127.0.0.1", 0, max_size=None,
                                    ping_interval=None) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            self.ready.set()
            await self.stop_ev.wait()

    def _run(self):
        self.loop.run_until_complete(self._main())

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_ev.set)
        self.thread.join(10)


@pytest.fixture
def echo():
    s = EchoServer()
    yield s
    s.stop()


@pytest.fixture
def px(ballast, echo):
    return ballast(conf(echo.port))


def run(coro, timeout=60 * SLOW):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(port, path="/echo", **kw):
    return websockets.connect("ws://127.0.0.1:%d%s" % (port, path), max_size=None,
                              ping_interval=None, open_timeout=10 * SLOW, **kw)


def log_lines(b):
    try:
        return open(os.path.join(b.dir, "access.log")).read().splitlines()
    except FileNotFoundError:
        return []


# ------------------------------------------------------------------ through websockets

def test_text_and_binary(px):
    async def go():
        async with connect(px.port) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
    run(go())


def test_one_megabyte_messages(px):
    big_text = "x" * (1 << 20)
    big_bin = os.urandom(1 << 20)

    async def go():
        async with connect(px.port) as ws:
            for m in (big_text, big_bin, big_text):
                await ws.send(m)
                assert await ws.recv() == m
    run(go())


def test_fragmented_message(px):
    async def go():
        async with connect(px.port) as ws:
            await ws.send(["frag-%d " % i for i in range(50)])  # one message, 50 frames
            assert await ws.recv() == "".join("frag-%d " % i for i in range(50))
            await ws.send([b"a" * 70000, b"b" * 3, b"c" * 200000])
            assert await ws.recv() == b"a" * 70000 + b"b" * 3 + b"c" * 200000
    run(go())


def test_ping_pong_and_close_handshake(px):
    async def go():
        async with connect(px.port) as ws:
            pong = await ws.ping(b"are-you-there")
            await asyncio.wait_for(pong, 10 * SLOW)
            await ws.close(code=4000, reason="bye")
            assert ws.close_code == 4000
            assert ws.close_reason == "bye"
    run(go())
    # the access log line comes when the tunnel closes: 101 and the bytes sent
    assert wait_for(lambda: any(" 101 " in ln for ln in log_lines(px)), 5 * SLOW), \
        log_lines(px)
    line = [ln for ln in log_lines(px) if " 101 " in ln][0]
    assert line.startswith("GET /echo HTTP/1.1 101 ")
    assert int(line.split()[4]) > 0


def test_fifty_tunnels_at_once(px):
    async def one(i):
        async with connect(px.port, "/t%d" % i) as ws:
            for k in range(10):
                msg = "%d-%d-%s" % (i, k, "y" * (i * 100))
                await ws.send(msg)
                assert await ws.recv() == msg

    async def go():
        await asyncio.gather(*(one(i) for i in range(50)))
    run(go())
    assert wait_for(lambda: sum(" 101 " in ln for ln in log_lines(px)) == 50, 10 * SLOW)


def test_idle_timeout_closes_tunnel(ballast, echo):
    b = ballast(conf(echo.port, location="proxy_read_timeout 1s;"))

    async def go():
        async with connect(b.port) as ws:
            await ws.send("alive")  # activity resets the idle timer
            assert await ws.recv() == "alive"
            t0 = time.monotonic()
            await asyncio.wait_for(ws.wait_closed(), 20 * SLOW)
            return time.monotonic() - t0
    waited = run(go())
    assert waited >= 0.5, "closed after %.2fs, before the idle timeout" % waited


@pytest.mark.parametrize("status,body", [(200, b"plain body"), (403, b"forbidden"),
                                         (426, b"upgrade first")])
def test_refused_upgrade_is_an_ordinary_response(ballast, status, body):
    reply = b"HTTP/1.1 %d Nope\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
    up = RawUpstream(reply, lambda c: None)
    try:
        b = ballast(conf(up.port))
        head, rest = raw_upgrade(b.port, "/x")
        assert head.startswith(b"HTTP/1.1 %d " % status), head
        assert rest == body
        assert b"\r\nupgrade:" not in head.lower()
        # the upstream was asked for the upgrade, as the recipe says
        assert up.done.wait(5 * SLOW)
        assert b"\r\nupgrade: websocket" in up.heads[0].lower()
    finally:
        up.close()


def test_upgrade_without_recipe_is_a_plain_request(px):
    # Upgrade and Connection are hop-by-hop: without the recipe the upstream sees a plain GET
    # and websockets answers 426, relayed as it is (nginx does the same).
    head, _ = raw_upgrade(px.port, "/norecipe")
    assert head.startswith(b"HTTP/1.1 426 "), head


def raw_upgrade(port, path, timeout=10 * SLOW):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  b"\r\n" % path.encode())
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        # read what body there is
        s.settimeout(1)
        try:
            while len(rest) < 100:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except socket.timeout:
            pass
        return head, rest
    finally:
        s.close()


# ------------------------------------------------------------------ raw sockets

class RawUpstream:
    """Accepts one connection at a time, reads a head, answers with `reply` (bytes), then runs
    `after(conn)`."""

    def __init__(self, reply, after):
        self.reply, self.after = reply, after
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.errors = []
        self.done = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        with c:
            try:
                c.settimeout(20 * SLOW)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                self.heads.append(data.split(b"\r\n\r\n")[0])
                c.sendall(self.reply)
                self.after(c)
            except Exception as e:  # reported by the test
                self.errors.append(repr(e))
            finally:
                self.done.set()

    def close(self):
        self.sock.close()


def open_client(port, path="/raw"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: custom/1\r\nConnection: upgrade\r\n\r\n"
              % path.encode())
    return s


def read_until(s, marker, limit=1 << 20):
    data = b""
    while marker not in data and len(data) < limit:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: custom/1\r\nConnection: Upgrade\r\n"
          b"X-Up: 1\r\n\r\n")


def test_bytes_after_101_head_and_half_closes(ballast):
    def after(c):
        c.sendall(b"EXTRA")                       # already sent with the head, below too
        got = b""
        while True:                               # echo upper-case until the client's EOF
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
            c.sendall(chunk.upper())
        c.sendall(b"bye after " + str(len(got)).encode())
        c.shutdown(socket.SHUT_WR)

    up = RawUpstream(SWITCH + b"EARLY", after)
    try:
        b = ballast(conf(up.port))
        s = open_client(b.port)
        with s:
            data = read_until(s, b"EARLYEXTRA")
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            assert b"\r\nupgrade: custom/1" in head.lower()
            assert b"\r\nconnection: upgrade" in head.lower()
            assert b"\r\nx-up: 1" in head.lower()
            assert rest.startswith(b"EARLY")
            if len(rest) < 10:
                rest += read_until(s, b"EXTRA")
            assert rest == b"EARLYEXTRA"
            s.sendall(b"hello tunnel")
            assert read_until(s, b"HELLO TUNNEL").endswith(b"HELLO TUNNEL")
            s.shutdown(socket.SHUT_WR)            # client half-close: upstream sees EOF
            assert recv_all(s) == b"bye after 12"  # and its last bytes, then EOF, come back
        assert up.done.wait(10 * SLOW)
        assert not up.errors, up.errors
        # the upstream got the client's Upgrade and Connection as the recipe says
        h = up.heads[0].lower()
        assert b"\r\nupgrade: custom/1" in h and b"\r\nconnection: upgrade" in h, h
        assert wait_for(lambda: any(ln.startswith("GET /raw HTTP/1.1 101 ")
                                    for ln in log_lines(b)), 5 * SLOW), log_lines(b)
    finally:
        up.close()


def test_upstream_half_close_then_client_sends(ballast):
    def after(c):
        c.sendall(b"server-done")
        c.shutdown(socket.SHUT_WR)                # upstream finished sending first
        got = b""
        while not got.endswith(b"END"):
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
        assert got == b"late data END", got

    up = RawUpstream(SWITCH, after)
    try:
        b = ballast(conf(up.port))
        with open_client(b.port) as s:
            data = read_until(s, b"server-done")
            assert data.endswith(b"server-done")
            assert recv_all(s) == b""             # upstream's EOF passed on
            s.sendall(b"late data END")           # the other direction still flows
            assert up.done.wait(10 * SLOW)
        assert not up.errors, up.errors
    finally:
        up.close()


def test_backpressure_reader_that_stops(ballast):
    sent = []
    stop = threading.Event()

    def after(c):
        c.settimeout(2)
        block = b"z" * 65536
        total = 0
        try:
            while not stop.is_set() and total < (1 << 30):
                total += c.send(block)
        except (socket.timeout, BlockingIOError):
            pass
        sent.append(total)
        stop.wait(20 * SLOW)

    up = RawUpstream(SWITCH, after)
    try:
        b = ballast(conf(up.port))
        base = b.rss_kb()
        s = open_client(b.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        with s, RssSampler(b.pid) as rss:
            # the client reads nothing: the upstream must block, bounded (kernel buffers and
            # ballast's 32 KiB), not buffered without end
            assert wait_for(lambda: sent, 30 * SLOW), "upstream never blocked"
            assert sent[0] < 64 << 20, "upstream sent %d bytes to a client not reading" % sent[0]
            stop.set()
        growth = rss.max - base
        assert growth < 16 * 1024, "ballast RSS grew by %d KB" % growth
    finally:
        stop.set()
        up.close()


def test_101_without_upgrade_request_is_502(ballast):
    up = RawUpstream(SWITCH, lambda c: None)
    try:
        b = ballast(conf(up.port))
        with socket.create_connection(("127.0.0.1", b.port), timeout=10 * SLOW) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 502 ")
    finally:
        up.close()


def test_graceful_stop_closes_open_tunnel(ballast, echo):
    b = ballast(conf(echo.port, main="shutdown_timeout 1s;"))
    ws_sock = socket.create_connection(("127.0.0.1", b.port), timeout=10 * SLOW)
    ws_sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
                    b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert read_until(ws_sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
    t0 = time.monotonic()
    os.kill(b.pid, signal.SIGTERM)
    # the tunnel is closed within shutdown_timeout and ballast exits
    assert wait_for(lambda: b.proc.poll() is not None, 15 * SLOW), "ballast did not exit"
    assert b.proc.returncode == 0
    assert time.monotonic() - t0 < 10 * SLOW
    ws_sock.settimeout(5)
    try:
        while ws_sock.recv(65536):
            pass
    except (ConnectionResetError, socket.timeout):
        pass
    ws_sock.close()


@pytest.mark.skipif(ASAN, reason="leaks are checked by the other tests; this one is about time")
def test_many_sequential_tunnels_do_not_leak_connections(px):
    async def go():
        for i in range(30):
            async with connect(px.port) as ws:
                await ws.send("m%d" % i)
                assert await ws.recv() == "m%d" % i
    run(go())
    assert wait_for(lambda: sum(" 101 " in ln for ln in log_lines(px)) == 30, 10 * SLOW)


def test_wss_through_tls_termination(ballast, echo, tmp_path):
    """The tunnel reads and writes the client side through its transport: TLS works too."""
    import ssl
    from test_tls import make_cert
    crt, key = make_cert(str(tmp_path), "ws", "ws.test")
    text = conf(echo.port).replace("listen 127.0.0.1:@port@;",
                                   "listen 127.0.0.1:@port@ ssl;\n        ssl_certificate %s;\n"
                                   "        ssl_certificate_key %s;" % (crt, key))
    b = ballast(text)
    ctx = ssl.create_default_context(cafile=crt)
    big = os.urandom(1 << 20)

    async def go():
        async with websockets.connect("wss://127.0.0.1:%d/tls" % b.port, ssl=ctx,
                                      server_hostname="ws.test", max_size=None,
                                      ping_interval=None, open_timeout=10 * SLOW) as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"
            await ws.send(big)
            assert await ws.recv() == big
            await ws.close(code=4001)
            assert ws.close_code == 4001
    run(go())


def test_tunnel_survives_reload(ballast, echo):
    """A reload leaves an open tunnel on the generation it started on: it keeps flowing, and
    a new tunnel starts on the new generation."""
    b = ballast(conf(echo.port, main="error_log stderr notice;"))

    async def go():
        async with connect(b.port, "/before") as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
            b.send_signal(signal.SIGHUP)
            ok = "generation 2 serves on every worker"
            assert await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_for(lambda: ok in b.stderr_text(), 10 * SLOW)), \
                b.stderr_text()[-2000:]
            await ws.send("two")
            assert await ws.recv() == "two"
            async with connect(b.port, "/after") as ws2:
                await ws2.send("three")
                assert await ws2.recv() == "three"
    run(go())


def test_upgrade_request_with_body(ballast):
    """As nginx: the body goes upstream as the request's body; what follows the 101 is the
    tunnel's, and the body is not sent twice."""
    def after(c):
        c.sendall(b"tunnel-up")
        got = b""
        while not got.endswith(b"END"):
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
        c.sendall(b"[" + got + b"]")
        c.shutdown(socket.SHUT_WR)

    class BodyUpstream(RawUpstream):
        def _run(self):
            # read head + 5-byte body before answering
            c, _ = self.sock.accept()
            with c:
                c.settimeout(20 * SLOW)
                data = b""
                while not (b"\r\n\r\n" in data and len(data.split(b"\r\n\r\n", 1)[1]) >= 5):
                    chunk = c.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                head, body = data.split(b"\r\n\r\n", 1)
                self.heads.append(head)
                self.body = body
                c.sendall(self.reply)
                try:
                    self.after(c)
                except Exception as e:
                    self.errors.append(repr(e))
                self.done.set()

    up = BodyUpstream(SWITCH, after)
    try:
        b = ballast(conf(up.port))
        with socket.create_connection(("127.0.0.1", b.port), timeout=10 * SLOW) as s:
            s.sendall(b"POST /b HTTP/1.1\r\nHost: x\r\nUpgrade: custom/1\r\nConnection: upgrade"
                      b"\r\nContent-Length: 5\r\n\r\nhello")
            data = read_until(s, b"tunnel-up")
            assert data.startswith(b"HTTP/1.1 101 ") and data.endswith(b"tunnel-up"), data
            s.sendall(b"frames END")
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b"[frames END]"
        assert up.done.wait(10 * SLOW)
        assert up.body == b"hello"
        assert not up.errors, up.errors
    finally:
        up.close()
