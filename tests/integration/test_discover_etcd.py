"""`discover etcd` (issue 15, "Service discovery without reload"): a real etcd (Debian
etcd-server) on free ports with a temporary data dir, the real binary, real backends.

Servers appear, change weight and disappear without a reload from the operator; the config's
servers serve until etcd answers; a server that stays keeps its state (here the operator's
`down` from the admin API, which lives in the shared server state); etcd stopped = the last
set serves on, one error line per outage; an etcd restart and a compaction are followed.
"""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import SLOW, Conn, free_port, wait_for

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"

pytestmark = pytest.mark.skipif(not os.path.exists(ETCD) or not os.path.exists(ETCDCTL),
                                reason="etcd-server and etcd-client are not installed "
                                       "(scripts/install-deps.sh test)")


class Etcd:
    """One etcd member on 127.0.0.1, restartable on the same ports and data dir."""

    def __init__(self, tmp):
        self.dir = os.path.join(str(tmp), "etcd")
        self.port = free_port()
        self.peer = free_port()
        self.proc = None
        self.log = os.path.join(str(tmp), "etcd.log")

    def start(self):
        self.proc = subprocess.Popen(
            [ETCD, "--name", "t", "--data-dir", self.dir,
             "--listen-client-urls", "http://127.0.0.1:%d" % self.port,
             "--advertise-client-urls", "http://127.0.0.1:%d" % self.port,
             "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer,
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer,
             "--initial-cluster", "t=http://127.0.0.1:%d" % self.peer],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        assert wait_for(self.ready, timeout=20 * SLOW), "etcd did not start: see %s" % self.log

    def ready(self):
        try:
            self.call("/v3/kv/range", {"key": _b64("/")})
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def call(self, path, body):
        data = json.dumps(body).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (path.encode(), len(data), data))
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        head, _, rest = out.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise OSError("etcd: %r" % head[:100])
        return json.loads(rest)

    def put(self, key, value):
        r = self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(r["header"]["revision"])

    def delete(self, key):
        return int(self.call("/v3/kv/deleterange", {"key": _b64(key)})["header"]["revision"])

    def compact(self, rev):
        subprocess.run([ETCDCTL, "--endpoints", "127.0.0.1:%d" % self.port, "compact", str(rev)],
                       check=True, env=dict(os.environ, ETCDCTL_API="3"),
                       stdout=subprocess.DEVNULL, timeout=20)


def _b64(s):
    return base64.b64encode(s.encode()).decode()


class Cut:
    """A TCP forwarder in front of etcd that can cut ballast off (close every connection and
    refuse new ones) while etcd itself keeps running."""

    def __init__(self, to_port):
        self.to = to_port
        self.port = free_port()
        self.open = True
        self.socks = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(16)
        self.ls.settimeout(0.1)
        self.stopping = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self.open:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.to), timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        a.settimeout(None)
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open = False
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.socks = []

    def restore(self):
        self.open = True

    def stop(self):
        self.stopping = True
        self.cut()
        self.ls.close()
        self.t.join(5)


@pytest.fixture
def etcd(tmp_path):
    e = Etcd(tmp_path)
    yield e
    e.stop()


def conf(etcd_port, file_servers, prefix="/services/app/"):
    return """
admin {
    listen 127.0.0.1:@port_admin@;
}
http {
    upstream app {
        discover etcd http://127.0.0.1:%d prefix=%s;
%s
    }
    server {
        listen 127.0.0.1:@port@;
        location / {
            proxy_pass http://app;
        }
    }
}
""" % (etcd_port, prefix, "\n".join("        server %s;" % s for s in file_servers))


def who(b, n=20):
    """Which backends answer n requests: {name: count}. Keep-alive, with a new connection
    after an answer that says Connection: close (ballast keeps it after its own 502)."""
    seen = {}
    c = None
    try:
        for _ in range(n):
            if c is None:
                c = Conn(b.port, timeout=5 * SLOW)
            r = c.request("GET", "/")
            # a status in place of a name: a 502 before etcd answered fails a comparison,
            # not the wait for it
            name = r.header("X-Backend") if r.status == 200 else str(r.status)
            seen[name] = seen.get(name, 0) + 1
            if r.has_token("Connection", "close"):
                c.close()
                c = None
    finally:
        if c:
            c.close()
    return seen


def api(b, method, path, body=None):
    with Conn(b.values["port_admin"], timeout=5 * SLOW) as c:
        data = json.dumps(body) if body is not None else None
        h = {"Content-Type": "application/json"} if data else None
        r = c.request(method, path, headers=h, body=data)
        return r.status, r.json()


def servers(b):
    st, j = api(b, "GET", "/api/upstreams/app/servers")
    assert st == 200, j
    return {s["server"]: s for s in (j["servers"] if isinstance(j, dict) else j)}


def until(pred, what, timeout=5.0):
    assert wait_for(pred, timeout=timeout * SLOW, interval=0.05), what


def test_discover_lifecycle(ballast, backend, etcd, tmp_path):
    a, bb, c = backend("a"), backend("b"), backend("c")
    etcd.start()
    # The config's server serves until etcd answers: etcd has nothing yet under the prefix.
    b = ballast(conf(etcd.port, [c.addr]) .replace("admin {", "error_log @tmp@/error.log "
                                                  "info;\nadmin {"))
    assert who(b) == {"c": 20}

    # A first key: the set replaces the config's servers within a second or so.
    t0 = time.monotonic()
    etcd.put("/services/app/a", a.addr)
    until(lambda: who(b, 4) == {"a": 4}, "the etcd set did not replace the file's servers")
    took = time.monotonic() - t0
    print("appeared after %.3f s" % took)

    # The operator marks a down through the API: that state lives in the shared server state.
    st, j = api(b, "PATCH", "/api/upstreams/app/servers/0", {"down": True})
    assert st == 200, j
    etcd.put("/services/app/b", bb.addr + " weight=2")
    until(lambda: bb.addr in servers(b), "b did not appear")
    s = servers(b)
    assert s[a.addr]["state"] == "down", s       # a stayed: its state stayed
    assert s[bb.addr]["config_weight"] == 2, s
    assert who(b, 10) == {"b": 10}
    st, j = api(b, "PATCH", "/api/upstreams/app/servers/0", {"down": False})
    assert st == 200, j

    # A weight change and a removal.
    etcd.put("/services/app/a", a.addr + " weight=3")
    until(lambda: servers(b)[a.addr]["config_weight"] == 3, "a's weight did not change")
    seen = who(b, 50)
    assert seen.get("a", 0) > seen.get("b", 0), seen
    etcd.delete("/services/app/b")
    until(lambda: bb.addr not in servers(b), "b was not removed")
    assert who(b, 10) == {"a": 10}

    # A bad value is logged with its key and left out; the rest serves on.
    etcd.put("/services/app/zz", "not-an-address:x weight=banana")
    until(lambda: "/services/app/zz" in open(os.path.join(b.dir, "error.log")).read(),
          "the bad value was not logged")
    assert who(b, 10) == {"a": 10}

    # etcd stops: the last set serves on; one error line for the outage.
    etcd.stop()
    time.sleep(1.5 * SLOW)
    assert who(b, 10) == {"a": 10}
    log = open(os.path.join(b.dir, "error.log")).read()
    assert log.count("failed:") >= 1 and log.count("keeping the last set") == 1, log[-3000:]

    # etcd comes back (same data dir): the watch resumes and follows new changes.
    etcd.start()
    etcd.put("/services/app/c", c.addr)
    until(lambda: set(who(b, 20)) == {"a", "c"}, "the watch did not resume after a restart",
          timeout=15.0)
    until(lambda: "answers again" in open(os.path.join(b.dir, "error.log")).read(),
          "the end of the outage was not logged")


def test_discover_compaction(ballast, backend, etcd):
    a, bb = backend("a"), backend("b")
    etcd.start()
    etcd.put("/services/app/a", a.addr)
    fwd = Cut(etcd.port)
    try:
        b = ballast(conf(fwd.port, ["127.0.0.1:9"]).replace(
            "admin {", "error_log @tmp@/error.log info;\nadmin {"))
        until(lambda: who(b, 4) == {"a": 4}, "etcd's set was not applied")
        # ballast loses etcd; meanwhile the prefix changes and the history is compacted, so
        # the watch cannot resume from its revision and must read the prefix again.
        fwd.cut()
        etcd.delete("/services/app/a")
        rev = etcd.put("/services/app/b", bb.addr)
        etcd.put("/other/key", "x")
        etcd.compact(rev + 1)
        fwd.restore()
        until(lambda: who(b, 4) == {"b": 4}, "the set after a compaction was not read",
              timeout=15.0)
        assert "compacted revision" in open(os.path.join(b.dir, "error.log")).read()
    finally:
        fwd.stop()


def newest_generation(b):
    found = re.findall(r"generation (\d+) serves on every worker",
                       open(os.path.join(b.dir, "error.log")).read())
    return max(int(n) for n in found) if found else 1


def test_discover_changes_drop_no_keepalive_request(ballast, backend, etcd):
    """Every etcd change is a reload: keep-alive clients (idle, mid-request, sending at the
    switch; test_reload_keepalive.py) get every answer while the set changes again and
    again. It starts with etcd out of reach, so that the first requests get the file's 502,
    which ends its connection with Connection: close: a client that sent its next request on
    that connection anyway saw "a close with no answer" (CI, under ASan, when etcd's first
    answer came after the first request). who() opens a new connection there, as a client
    must."""
    from test_reload_keepalive import Clients
    a, bb = backend("a"), backend("b")
    etcd.start()
    etcd.put("/services/app/a", a.addr)
    fwd = Cut(etcd.port)
    fwd.cut()
    try:
        b = ballast(conf(fwd.port, ["127.0.0.1:9"]).replace(
            "admin {", "worker_processes 2;\nerror_log @tmp@/error.log notice;\nadmin {"),
            workers=None)
        assert who(b, 3) == {"502": 3}
        fwd.restore()
        until(lambda: who(b, 4) == {"a": 4}, "etcd's set was not applied", timeout=15.0)
        gen = newest_generation(b)
        changes = [("put", "b", bb.addr), ("delete", "a"), ("put", "a", a.addr + " weight=2"),
                   ("delete", "b")]
        rounds = 6 if SLOW > 1 else 20
        with Clients(b.port) as clients:
            clients.wait_more(20)
            for i in range(rounds):
                ch = changes[i % len(changes)]
                if ch[0] == "put":
                    etcd.put("/services/app/" + ch[1], ch[2])
                else:
                    etcd.delete("/services/app/" + ch[1])
                until(lambda: newest_generation(b) > gen, "change %d was not applied" % i)
                gen = newest_generation(b)
                clients.wait_more(len(clients.threads))
                if clients.failures:
                    break
            clients.stop()
        assert clients.failures == [], clients.failures[:10]
        print("%d answers over %d etcd changes" % (clients.ok, rounds))
    finally:
        fwd.stop()


def test_discover_config_errors(tmp_path):
    from conftest import run_ballast
    cases = [
        ("discover consul http://127.0.0.1:1;", "unknown discovery \"consul\""),
        ("discover etcd https://127.0.0.1:2379;", "plain http://"),
        ("discover etcd http://127.0.0.1:2379 foo=bar;", "invalid value \"foo=bar\""),
    ]
    for line, want in cases:
        p = tmp_path / "c.conf"
        p.write_text("http { upstream u { %s server 127.0.0.1:1; } server { listen "
                     "127.0.0.1:%d; location / { proxy_pass http://u; } } }\n"
                     % (line, free_port()))
        r = run_ballast(["-t", "-c", str(p)])
        assert r.returncode != 0 and want in r.stderr, (line, r.stderr)
        assert "c.conf:1" in r.stderr, r.stderr
