"""Protocol-aware active checks (check type=redis|mysql, type=tcp send/expect) against real
servers: a Debian redis-server primary and replica swapped with REPLICAOF while a client writes
through a stream proxy, small Python MySQL greeters (a valid protocol-10 greeting and garbage),
a tcp send/expect pair, and the same checks on an http upstream."""
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import SLOW, free_port, wait_for

REDIS = shutil.which("redis-server")


class LineServer:
    """Threaded TCP server: reply(data_received_so_far) -> bytes to send (or None to wait);
    greet: bytes sent on accept."""

    def __init__(self, greet=b"", reply=None):
        self.port = free_port()
        self.greet, self.reply = greet, reply
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
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
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(5 * SLOW)
            if self.greet:
                c.sendall(self.greet)
            data = b""
            while self.reply:
                d = c.recv(4096)
                if not d:
                    break
                data += d
                out = self.reply(data)
                if out is not None:
                    c.sendall(out)
                    break
            else:
                while c.recv(4096):     # silent: read until the peer gives up
                    pass
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stop_ev.set()
        self.sock.close()
        self.t.join(2)


@pytest.fixture
def servers():
    made = []

    def make(**kw):
        s = LineServer(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def mysql_greeting(version=b"8.0.36"):
    payload = (b"\x0a" + version + b"\x00" + struct.pack("<I", 7) + b"abcdefgh" + b"\x00" +
               struct.pack("<H", 0xf7ff) + b"\x21" + struct.pack("<H", 2) +
               struct.pack("<H", 0x81ff) + b"\x15" + b"\x00" * 10 + b"ijklmnopqrst\x00" +
               b"mysql_native_password\x00")
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


STREAM = """
error_log @tmp@/error.log info;
stream {
    upstream g {
        %(servers)s
        %(check)s
    }
    server {
        listen 127.0.0.1:@port@;
        proxy_pass g;
        proxy_connect_timeout 1s;
    }
}
"""


def stream_conf(ports, check):
    return STREAM % {"servers": "\n        ".join("server 127.0.0.1:%d;" % p for p in ports),
                     "check": check}


def log_text(bl):
    with open(os.path.join(bl.dir, "error.log")) as f:
        return f.read()


def wait_log(bl, needle, timeout=5.0):
    assert wait_for(lambda: needle in log_text(bl), timeout * SLOW), \
        "%r not in error.log:\n%s" % (needle, log_text(bl)[-3000:])


def test_mysql_check_greeting_up_garbage_down(ballast, servers):
    good = servers(greet=mysql_greeting())
    bad = servers(greet=b"HTTP/1.0 400 Bad Request\r\n\r\n")
    err = servers(greet=b"\x17\x00\x00\x00\xff\x10\x04Too many connections")
    bl = ballast(stream_conf([good.port, bad.port, err.port],
                             "check interval=100 rise=1 fall=1 timeout=1000 type=mysql;"))
    wait_log(bl, "server 127.0.0.1:%d is down: mysql: invalid greeting (bad packet header)" % bad.port)
    wait_log(bl, "server 127.0.0.1:%d is down: mysql: error 1040: Too many connections"
             % err.port)
    assert "127.0.0.1:%d is down" % good.port not in log_text(bl)
    # Every session now lands on the greeter that passes.
    before = good.accepted
    for _ in range(4):
        c = socket.create_connection(("127.0.0.1", bl.port), timeout=5 * SLOW)
        assert c.recv(4) [3:4] == b"\x00"
        c.close()
    assert wait_for(lambda: good.accepted >= before + 4, 3 * SLOW)


def test_tcp_send_expect(ballast, servers):
    pong = servers(reply=lambda d: b"+PONG\r\n" if d.endswith(b"\r\n") else None)
    wrong = servers(reply=lambda d: b"-ERR nope\r\n" if d.endswith(b"\r\n") else None)
    silent = servers()
    bl = ballast(stream_conf([pong.port, wrong.port, silent.port],
                             'check interval=100 rise=1 fall=1 timeout=500 type=tcp '
                             'send="PING\\r\\n" expect="~^\\+PONG";'))
    wait_log(bl, "server 127.0.0.1:%d is down: expect mismatch (got \"-ERR nope??\")"
             % wrong.port)
    wait_log(bl, "server 127.0.0.1:%d is down: read timeout" % silent.port)
    assert "127.0.0.1:%d is down" % pong.port not in log_text(bl)


def test_redis_check_on_http_upstream(ballast, servers, backend):
    """The same checks serve http upstreams: a PONG-less server is taken out of an http
    group (the group's only server, so the check itself must be what says down)."""
    noauth = servers(reply=lambda d: b"-NOAUTH Authentication required.\r\n"
                     if d.endswith(b"\r\n") else None)
    be = backend()
    bl = ballast("""
error_log @tmp@/error.log info;
http {
    upstream r {
        server 127.0.0.1:%d;
        server 127.0.0.1:%d;
        check interval=100 rise=1 fall=1 type=redis;
    }
    server { listen 127.0.0.1:@port@; location / { proxy_pass http://r; } }
}
""" % (noauth.port, be.port))
    wait_log(bl, "server 127.0.0.1:%d is down: redis requires AUTH (-NOAUTH Authentication "
             "required.)" % noauth.port)


# ---------------------------------------------------------------- Redis primary/replica swap

class Redis:
    def __init__(self, tmp, name, replicaof=None):
        self.port = free_port()
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if replicaof:
            args += ["--replicaof", "127.0.0.1", str(replicaof)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: self._ping(), 10 * SLOW), "redis-server did not start"

    def _ping(self):
        try:
            return self.cmd("PING") == b"+PONG"
        except OSError:
            return False

    def cmd(self, *args, port=None):
        return redis_cmd(port or self.port, *args)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def redis_cmd(port, *args, timeout=2.0):
    """One command on a fresh connection; returns the first reply line (without CRLF)."""
    req = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() if isinstance(x, str) else x
                                                  for x in args))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW) as c:
        c.sendall(req)
        data = b""
        while b"\r\n" not in data:
            d = c.recv(4096)
            if not d:
                break
            data += d
    return data.split(b"\r\n", 1)[0]


@pytest.mark.serial
@pytest.mark.skipif(REDIS is None, reason="redis-server not installed")
def test_redis_failover_writes_follow_primary(ballast, tmp_path):
    interval_ms, fall = 200, 2
    p1 = Redis(str(tmp_path), "p1")
    p2 = Redis(str(tmp_path), "p2", replicaof=p1.port)
    try:
        bl = ballast(stream_conf([p1.port, p2.port],
                                 "check interval=%d rise=1 fall=%d timeout=500 type=redis "
                                 "role=master;" % (interval_ms, fall)))
        wait_log(bl, "server 127.0.0.1:%d is down: redis role:slave, not master" % p2.port)
        assert redis_cmd(bl.port, "SET", "k", "before") == b"+OK"

        results = []        # (time, reply)
        stop = threading.Event()

        def writer():
            i = 0
            deadline = time.monotonic() + 60 * SLOW
            while not stop.is_set() and time.monotonic() < deadline:
                i += 1
                try:
                    r = redis_cmd(bl.port, "SET", "k", "v%d" % i)
                except OSError as e:
                    r = b"error " + str(e).encode()
                results.append((time.monotonic(), r, i))
                time.sleep(0.02)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        time.sleep(0.5 * SLOW)
        # Swap: the replica becomes the primary, the old primary its replica. A write answered
        # after the swap began but before `swapped` is read (a busy machine) is neither side.
        swap_began = time.monotonic()
        assert p2.cmd("REPLICAOF", "NO", "ONE") == b"+OK"
        assert p1.cmd("REPLICAOF", "127.0.0.1", str(p2.port)) == b"+OK"
        swapped = time.monotonic()
        # fall failed checks at one interval each, plus one interval for the first probe's
        # slot, plus the probe itself and scheduling margin.
        window = (fall + 1) * interval_ms / 1000.0 + 0.5 * SLOW
        time.sleep(window + 1.5 * SLOW)
        stop.set()
        t.join(5 * SLOW)

        before = [r for r in results if r[0] < swap_began]
        after = [r for r in results if r[0] >= swapped + window]
        assert before and all(r[1] == b"+OK" for r in before), before
        assert len(after) >= 5, (len(after), results[-5:])
        bad = [r for r in after if r[1] != b"+OK"]
        assert not bad, "writes failed after fall x interval: %r" % bad[:5]
        # The last write is on the new primary.
        last = after[-1][2]
        assert wait_for(lambda: p2.cmd("GET", "k") == b"$%d" % len("v%d" % last), 2 * SLOW)
        wait_log(bl, "server 127.0.0.1:%d is down: redis role:slave, not master" % p1.port)
        wait_log(bl, "server 127.0.0.1:%d is up: redis +PONG role:master" % p2.port)
    finally:
        p2.stop()
        p1.stop()
