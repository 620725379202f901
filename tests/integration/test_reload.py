"""Reload (SIGHUP): a new config generation replaces the running one without a failed request;
a broken config is refused and the old one serves on; listeners are diffed; a server that keeps
its identity keeps its health; memory does not grow over many reloads.
docs/operations.md, "Reload"."""
import os
import re
import signal
import threading
import time

import pytest

from conftest import (ASAN, SLOW, TSAN, Conn, ConnectionClosed, IncompleteResponse, free_port,
                      port_refuses, render, skmem, wait_for)

CONF = """
worker_processes @nworkers@;
error_log @tmp@/error.log @level@;
http {
    upstream app {
        %(upstream)s
    }
    server {
        %(listens)s
        location / {
            proxy_pass http://app;
            proxy_next_upstream error timeout http_502;
        }
    }
}
"""


def conf(servers, listens=("127.0.0.1:@port@",), extra=""):
    lines = [extra] + ["server %s;" % s for s in servers] + ["keepalive 16;"]
    return CONF % {"upstream": "\n        ".join(ln for ln in lines if ln),
                   "listens": "\n        ".join("listen %s;" % ls for ls in listens)}


class Reloader:
    """Rewrites a running ballast's config file, sends SIGHUP and waits (bounded) until the
    error log says how the reload ended."""

    def __init__(self, b):
        self.b = b
        self.log = os.path.join(b.dir, "error.log")
        self.pos = 0
        self.generation = 1

    def _tail(self):
        try:
            with open(self.log, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return ""
        # Only whole lines.
        end = data.rfind(b"\n") + 1
        self.pos += end
        return data[:end].decode("utf-8", "replace")

    def reload(self, text, expect_ok=True, timeout=5.0):
        with open(self.b.conf_path, "w") as f:
            f.write(render(text, self.b.values))
        self._tail()  # skip what came before
        self.b.send_signal(signal.SIGHUP)
        want = self.generation + 1
        ok_line = "generation %d serves on every worker" % want
        seen = []
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            seen.append(self._tail())
            text_seen = "".join(seen)
            if ok_line in text_seen:
                assert expect_ok, "reload was expected to fail:\n" + text_seen
                self.generation = want
                return text_seen
            m = re.search(r"\[error\].*reload failed.*", text_seen)
            if m:
                assert not expect_ok, "reload failed: " + m.group(0)
                return m.group(0)
            time.sleep(0.002)
        pytest.fail("no reload outcome in the error log within %.0fs:\n%s"
                    % (timeout * SLOW, "".join(seen)[-3000:]))


class Load:
    """Client threads that send requests until stopped: `keepalive` threads reuse one
    connection (reconnecting only after a response that said Connection: close), `fresh`
    threads open a connection per request. Every request that does not get a 200 is a
    failure; answers are counted per backend (X-Backend) in `counts`, or in `after` once
    `mark()` was called."""

    def __init__(self, port, keepalive=1, fresh=1, path="/?text=x"):
        self.port = port
        self.path = path
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.after = None
        self.threads = [threading.Thread(target=self._run, args=(True,), daemon=True)
                        for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self._run, args=(False,), daemon=True)
                         for _ in range(fresh)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10 * SLOW)

    def _record(self, r):
        with self.lock:
            if r.status != 200:
                self.failures.append("status %d" % r.status)
                return
            self.ok += 1
            if self.after is not None:
                name = r.header("X-Backend")
                self.after[name] = self.after.get(name, 0) + 1

    def _run(self, keep):
        c = None
        while not self.stop_ev.is_set():
            try:
                if c is None:
                    c = Conn(self.port, timeout=10)
                r = c.request("GET", self.path,
                              headers=None if keep else [("Connection", "close")])
                self._record(r)
                if not keep or r.has_token("Connection", "close"):
                    c.close()
                    c = None
            except (ConnectionClosed, IncompleteResponse, OSError, ValueError) as e:
                with self.lock:
                    self.failures.append(("keep " if keep else "fresh ") + repr(e))
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    def mark(self):
        with self.lock:
            self.after = {}

    def wait_ok(self, n, timeout=10.0):
        start = self.ok
        assert wait_for(lambda: self.ok >= start + n, timeout * SLOW), \
            "load stalled: %d ok, failures %r" % (self.ok, self.failures[:5])


def start(ballast, text, workers=1, level="notice", **values):
    return ballast(text, workers=None, nworkers=workers, level=level, **values)


@pytest.fixture
def three(backend):
    return [backend(n) for n in ("a", "b", "c")]


def test_reloads_under_load_change_servers_and_weights(ballast, three):
    a, b, c = three
    v = {"a": a.addr, "b": b.addr, "c": c.addr}
    configs = [
        conf(["@a@", "@b@"]),
        conf(["@a@", "@b@", "@c@"]),
        conf(["@a@ weight=3", "@c@"]),
        conf(["@b@", "@c@ weight=2"]),
    ]
    bl = start(ballast, configs[0], workers=2, **v)
    r = Reloader(bl)
    with Load(bl.port, keepalive=2, fresh=1) as load:
        load.wait_ok(20)
        t0 = time.monotonic()
        for i in range(20):
            r.reload(configs[(i + 1) % len(configs)])
            load.wait_ok(5)
            time.sleep(max(0.0, t0 + (i + 1) * 0.5 - time.monotonic()))
        # New weights take effect: b gets four times a's share, c none.
        r.reload(conf(["@a@", "@b@ weight=4"]))
        load.mark()
        load.wait_ok(400)
        load.stop()
    assert load.failures == [], load.failures[:10]
    got = load.after
    assert set(got) <= {"a", "b"}, got
    total = got.get("a", 0) + got.get("b", 0)
    # Smooth weighted round robin per worker: within a few requests of 1:4.
    assert abs(got.get("b", 0) - 4 * total / 5) <= 2 * 5, got


def test_broken_config_is_refused_and_old_one_serves(ballast, three):
    a, b, _ = three
    bl = start(ballast, conf(["@a@"]), a=a.addr, b=b.addr)
    r = Reloader(bl)
    with Load(bl.port) as load:
        load.wait_ok(10)
        bad = conf(["@b@"]).replace("proxy_pass http://app;", "proxy_pass http://app;\n"
                                    "            prox_pass http://app;")
        line = r.reload(bad, expect_ok=False)
        load.mark()
        load.wait_ok(30)
        load.stop()
    assert load.failures == [], load.failures[:10]
    n = [i + 1 for i, ln in enumerate(open(bl.conf_path).read().split("\n"))
         if "prox_pass" in ln][0]
    assert 'unknown directive "prox_pass" in %s:%d' % (bl.conf_path, n) in line, line
    # The old generation serves on: only a.
    assert set(load.after) == {"a"}, load.after
    # A good config after the bad one applies.
    r.reload(conf(["@b@"]))
    with Conn(bl.port) as cn:
        assert cn.request("GET", "/?text=x").header("X-Backend") == "b"


def test_changes_that_need_a_restart_are_refused(ballast, backend):
    a = backend("a")
    bl = start(ballast, conf(["@a@"]), a=a.addr)
    r = Reloader(bl)
    text = conf(["@a@"]).replace("worker_processes @nworkers@;", "worker_processes 3;")
    line = r.reload(text, expect_ok=False)
    assert "worker_processes" in line and "restart" in line, line
    with Conn(bl.port) as cn:
        assert cn.request("GET", "/?text=x").status == 200


def test_listener_added_and_removed(ballast, backend):
    a = backend("a")
    slow = backend("slow")
    bl = start(ballast, conf(["@a@"]), a=a.addr, slow=slow.addr)
    bl.values["port2"] = free_port()
    r = Reloader(bl)
    assert port_refuses(bl.values["port2"])
    both = conf(["@a@", "@slow@ backup"], listens=("127.0.0.1:@port@", "127.0.0.1:@port2@"))
    with Load(bl.port) as load:
        load.wait_ok(5)
        r.reload(both)
        with Conn(bl.values["port2"]) as cn:
            assert cn.request("GET", "/?text=x").status == 200
        # A request in flight on the address about to go finishes there.
        hold = conf(["@slow@"], listens=("127.0.0.1:@port@", "127.0.0.1:@port2@"))
        r.reload(hold)
        cn = Conn(bl.values["port2"], timeout=10)
        cn.send("GET /?delay=%.1f&text=s HTTP/1.1\r\nHost: x\r\n\r\n" % (1.0 * SLOW))
        assert wait_for(lambda: any(q.target.startswith("/?delay") for q in slow.requests),
                        5 * SLOW)
        r.reload(conf(["@a@"]))
        resp = cn.read_response()
        assert resp.status == 200 and resp.header("X-Backend") == "slow", resp
        assert resp.has_token("Connection", "close"), resp
        assert cn.closed(), "the connection of a removed address stays open"
        cn.close()
        assert wait_for(lambda: port_refuses(bl.values["port2"]), 3 * SLOW)
        load.wait_ok(5)
        load.stop()
    # The kept address never refused a connection.
    assert load.failures == [], load.failures[:10]


def test_server_state_survives_reload(ballast, backend):
    good = backend("good")
    bad = backend("bad").route("/", lambda req, c: (c.backend.record(req), c.send(
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"), True)[2])
    v = {"good": good.addr, "bad": bad.addr}
    base = ["@good@", "@bad@ max_fails=1 fail_timeout=60s"]
    bl = start(ballast, conf(base), **v)
    r = Reloader(bl)
    # Passive health: one 502 marks bad down for 60 s (the request is retried on good).
    for _ in range(4):
        with Conn(bl.port) as cn:
            assert cn.request("GET", "/?text=x").status == 200
    assert len(bad.requests) == 1, len(bad.requests)
    r.reload(conf(["@good@ weight=2", "@bad@ max_fails=1 fail_timeout=60s"]))
    for _ in range(10):
        with Conn(bl.port) as cn:
            assert cn.request("GET", "/?text=x").header("X-Backend") == "good"
    assert len(bad.requests) == 1, "a reload forgot that the server is down"

    # Active checks: a server the checks took down stays down through a reload that slows
    # the checks to once a minute (it would start up again if its state were new).
    hc = backend("hc").route("/hc", lambda req, c: (c.backend.record(req), c.send(
        b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n"), True)[2])
    v["hc"] = hc.addr
    check = ('check interval=%d rise=1 fall=1 timeout=1000 type=http;\n'
             '        check_http_send "GET /hc HTTP/1.0\\r\\n\\r\\n";')
    bl.values.update(v)
    r.reload(conf(["@good@", "@hc@"], extra=check % 100))
    assert wait_for(lambda: "server %s is down" % hc.addr in open(r.log).read(), 5 * SLOW)
    r.reload(conf(["@good@", "@hc@"], extra=check % 60000))
    before = len([q for q in hc.requests if q.target != "/hc"])
    for _ in range(10):
        with Conn(bl.port) as cn:
            assert cn.request("GET", "/?text=x").header("X-Backend") == "good"
    assert len([q for q in hc.requests if q.target != "/hc"]) == before


def test_many_reloads_do_not_grow_memory(ballast, backend):
    a = backend("a")
    b2 = backend("b")
    bl = start(ballast, conf(["@a@"]), a=a.addr, b=b2.addr)
    r = Reloader(bl)
    texts = [conf(["@a@"]), conf(["@a@", "@b@ weight=2"])]
    n = 1000 if not ASAN else 150
    keep = Conn(bl.port, timeout=10)

    def cycle(count):
        for i in range(count):
            r.reload(texts[i % 2])
            if i % 10 == 0:
                assert keep.request("GET", "/?text=x").status == 200
                with Conn(bl.port) as cn:
                    assert cn.request("GET", "/?text=x").status == 200

    cycle(100)  # warm up: allocator arenas, caches
    rss0 = bl.rss_kb()
    cycle(n)
    rss1 = bl.rss_kb()
    keep.close()
    print("RSS %d KiB -> %d KiB over %d reloads" % (rss0, rss1, n))
    if ASAN or TSAN:
        return  # ASan's quarantine keeps freed memory on purpose (it checks leaks instead);
        #         TSan keeps the history of every access
    assert rss1 - rss0 < 1024, "RSS grew by %d KiB over %d reloads" % (rss1 - rss0, n)


# ------------------------------------------------------------------------------------------
# Binary upgrade (SIGUSR2)
# ------------------------------------------------------------------------------------------

def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _stop_pid(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_for(lambda: not _alive(pid), 15 * SLOW):
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the upgraded process %d did not stop on SIGTERM" % pid)


def _metric(port, line_start):
    with Conn(port) as cn:
        r = cn.request("GET", "/metrics")
    assert r.status == 200, r
    for ln in r.text.split("\n"):
        if ln.startswith(line_start + " "):
            return int(float(ln.rsplit(" ", 1)[1]))
    pytest.fail("no %s in /metrics:\n%s" % (line_start, r.text[:3000]))


ADMIN = "admin { listen 127.0.0.1:@portadmin@; }\nhttp {"


def test_metrics_continue_across_reloads(ballast, three):
    a, b, c = three
    bl = start(ballast, conf(["@a@", "@b@"]).replace("http {", ADMIN, 1), a=a.addr, b=b.addr,
               c=c.addr)
    r = Reloader(bl)
    adm = bl.values["portadmin"]
    for _ in range(10):
        with Conn(bl.port) as cn:
            assert cn.request("GET", "/?text=x").status == 200
    peer_a = 'ballast_upstream_server_responses_total{upstream="app",server="%s",code="2xx"}' \
        % a.addr
    listen = 'ballast_listen_connections_accepted_total{listen="127.0.0.1:%d"}' % bl.port
    assert _metric(adm, peer_a) == 5
    assert _metric(adm, listen) == 10
    # a kept (with a new weight), b removed, c added: a's and the listener's counts go on.
    r.reload(conf(["@a@ weight=2", "@c@"]).replace("http {", ADMIN, 1))
    for _ in range(3):
        with Conn(bl.port) as cn:
            assert cn.request("GET", "/?text=x").status == 200
    assert _metric(adm, peer_a) == 7
    assert _metric(adm, listen) == 13
    assert _metric(adm, "ballast_config_generation") == 2
    r.reload(conf(["@a@", "@c@"]).replace("http {", ADMIN + "\nbogus;", 1), expect_ok=False)
    assert _metric(adm, 'ballast_config_reloads_total{result="ok"}') == 1
    assert _metric(adm, 'ballast_config_reloads_total{result="failed"}') == 1
    assert _metric(adm, peer_a) == 7


def test_upgrade_under_load_hands_over_without_a_failed_request(ballast, three):
    a, b, _ = three
    text = conf(["@a@", "@b@"]).replace("http {", "pid @tmp@/ballast.pid;\n" + ADMIN, 1)
    bl = start(ballast, text, workers=2, a=a.addr, b=b.addr)
    pid_file = os.path.join(bl.dir, "ballast.pid")
    assert wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(),
                    3 * SLOW)
    assert int(open(pid_file).read()) == bl.pid
    new_pid = None
    try:
        with Load(bl.port, keepalive=2, fresh=1) as load:
            load.wait_ok(20)
            bl.send_signal(signal.SIGUSR2)
            # The old process hands over, drains and exits 0; the pid file names the new one.
            assert bl.wait(15) == 0, "the old process did not exit after the upgrade"
            new_pid = int(open(pid_file).read())
            assert new_pid != bl.pid and _alive(new_pid)
            load.wait_ok(50)
            load.stop()
        assert load.failures == [], load.failures[:10]
        log = open(os.path.join(bl.dir, "error.log")).read()
        assert "upgrade: new process %d serves" % new_pid in log, log[-2000:]
        # The new process serves, its admin API on the socket it took over.
        with Conn(bl.port) as cn:
            assert cn.request("GET", "/?text=x").status == 200
        assert _metric(bl.values["portadmin"], "ballast_config_generation") == 1
    finally:
        if new_pid:
            _stop_pid(new_pid)
    assert not os.path.exists(pid_file), "the last process removes the pid file"


def test_upgrade_with_a_broken_config_keeps_the_old_process(ballast, backend):
    a = backend("a")
    bl = start(ballast, conf(["@a@"]), a=a.addr)
    with Load(bl.port) as load:
        load.wait_ok(5)
        with open(bl.conf_path, "a") as f:
            f.write("bogus_directive;\n")
        bl.send_signal(signal.SIGUSR2)
        log = os.path.join(bl.dir, "error.log")
        assert wait_for(lambda: "upgrade failed" in open(log).read(), 10 * SLOW)
        load.wait_ok(10)
        load.stop()
    assert load.failures == [], load.failures[:10]
    line = [ln for ln in open(log).read().split("\n") if "upgrade failed" in ln][0]
    assert 'unknown directive "bogus_directive" in %s' % bl.conf_path in line, line
    assert bl.proc.poll() is None


def _conns_tb(port, n=4):
    """The send buffers (ss -tm's tb) of n fresh connections to port, each with a request
    answered: with 2 workers they land on both workers' sockets."""
    conns = [Conn(port) for _ in range(n)]
    try:
        for cn in conns:
            assert cn.request("GET", "/?text=x").status == 200
        mine = {cn.sock.getsockname()[1] for cn in conns}
        return sorted(m["tb"] for m in skmem(port) if m["peer"] in mine)
    finally:
        for cn in conns:
            cn.close()


def test_listen_buffer_sizes_change_on_reload_without_a_refused_connection(ballast, backend):
    """A changed sndbuf= applies to the kept sockets in place; a dropped one rebuilds them
    (a size cannot be unset), and the queue of the old sockets is taken over: no request of
    the load fails through either, and each fresh connection has the configured size (the
    kernel doubles it) or, without one, the autotuned default."""
    a = backend("a")
    listen = "127.0.0.1:@port@ sndbuf=%s"
    bl = start(ballast, conf(["@a@"], listens=(listen % "64k",)), workers=2, a=a.addr)
    r = Reloader(bl)
    assert _conns_tb(bl.port) == [2 * 65536] * 4
    with Load(bl.port, keepalive=1, fresh=2) as load:
        load.wait_ok(5)
        r.reload(conf(["@a@"], listens=(listen % "32k backlog=100",)))
        assert _conns_tb(bl.port) == [2 * 32768] * 4
        load.wait_ok(5)
        r.reload(conf(["@a@"]))
        tbs = _conns_tb(bl.port)
        assert all(tb > 2 * 65536 for tb in tbs), tbs
        load.wait_ok(5)
        r.reload(conf(["@a@"], listens=(listen % "64k",)))
        assert _conns_tb(bl.port) == [2 * 65536] * 4
        load.wait_ok(5)
        load.stop()
    assert load.failures == [], load.failures[:10]


def test_upgrade_applies_the_new_configs_listen_buffer_sizes(ballast, backend):
    """SIGUSR2 with sndbuf=32k changed to 64k in the file: the new process sets the size on
    the sockets it inherits, so its connections get 64k (doubled by the kernel)."""
    a = backend("a")
    text = conf(["@a@"], listens=("127.0.0.1:@port@ sndbuf=%s",)).replace(
        "http {", "pid @tmp@/ballast.pid;\nhttp {", 1)
    bl = start(ballast, text % "32k", workers=2, a=a.addr)
    pid_file = os.path.join(bl.dir, "ballast.pid")
    assert wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), 3 * SLOW)
    assert _conns_tb(bl.port) == [2 * 32768] * 4
    with open(bl.conf_path, "w") as f:
        f.write(render(text % "64k", bl.values))
    new_pid = None
    try:
        bl.send_signal(signal.SIGUSR2)
        assert bl.wait(15) == 0, "the old process did not exit after the upgrade"
        new_pid = int(open(pid_file).read())
        assert new_pid != bl.pid and _alive(new_pid)
        assert _conns_tb(bl.port) == [2 * 65536] * 4
    finally:
        if new_pid:
            _stop_pid(new_pid)


def test_privileged_port_after_user_dropped_root_is_refused(ballast, backend):
    """As root with `user nobody`: the process gave up root before its workers started, so a
    reload that adds a port below 1024 cannot bind it; it is refused with the address named and
    the running config serves on. An unprivileged new port is fine."""
    import pwd
    import shutil
    import tempfile
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    a = backend("a")
    d = tempfile.mkdtemp(prefix="ballast-reload-")
    try:
        os.chmod(d, 0o777)  # nobody re-reads the config and writes the log
        base = (conf(["@a@"]).replace("error_log @tmp@/error.log", "error_log %s/error.log" % d)
                .replace("http {", "user nobody nogroup;\nhttp {\n    access_log off;", 1))
        conf_path = os.path.join(d, "ballast.conf")
        values = {"port": free_port(), "a": a.addr, "nworkers": 1, "level": "notice"}
        with open(conf_path, "w") as f:
            f.write(render(base, values))
        os.chmod(conf_path, 0o644)
        bl = ballast(render(base, values), workers=None, args=["-c", conf_path], **values)
        bl.conf_path = conf_path
        r = Reloader(bl)
        r.log = os.path.join(d, "error.log")
        low = 1000  # below 1024; the suite's ports are 20000-32000
        line = r.reload(conf(["@a@"], listens=("127.0.0.1:@port@", "127.0.0.1:%d" % low))
                        .replace("error_log @tmp@/error.log", "error_log %s/error.log" % d)
                        .replace("http {", "user nobody nogroup;\nhttp {\n    access_log off;",
                                 1), expect_ok=False)
        assert "127.0.0.1:%d" % low in line and "restart" in line, line
        with Conn(bl.port) as cn:
            assert cn.request("GET", "/?text=x").status == 200
    finally:
        shutil.rmtree(d, ignore_errors=True)
