"""The admin listener (issue 8, "Runtime API" and "Metrics"): the real binary with an `admin`
block, real backends, real clients (raw sockets, curl, promtool). Auth, every bad call, drain
and weight under load with exact per-backend counts, the health endpoint, /metrics.

Counts are exact where the promise is exact: a drained server gets no request picked after the
PATCH returned (requests already on their way to it when it returned may still arrive: at most
one per client thread), and round robin spreads by the new weights within the one pick smooth
round robin carries over from before the change.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (ASAN, SLOW, Conn, port_refuses, proxy_conf, wait_for)

TOKEN = "s3cr3t-token_for.tests"


def admin_conf(servers, *, token=True, upstream="", http="", extra_admin="", error_log=None,
               keepalive=16):
    conf = proxy_conf(servers, upstream=upstream, http=http, keepalive=keepalive,
                      error_log=error_log)
    block = "admin {\n    listen 127.0.0.1:@port_admin@;\n%s%s}\n" % (
        "    token_file @tmp@/admin.token;\n" if token else "", extra_admin)
    return block + conf


def start(ballast, backends, workers=1, token=True, **kw):
    servers = ["127.0.0.1:%d" % b.port for b in backends]
    files = {"admin.token": TOKEN + "\n"} if token else None
    return ballast(admin_conf(servers, token=token, **kw), files=files, workers=workers)


class Api:
    """A keep-alive client of the admin listener."""

    def __init__(self, b, token=TOKEN):
        self.port = b.values["port_admin"]
        self.token = token
        self.c = Conn(self.port, timeout=10 * SLOW)

    def close(self):
        self.c.close()

    def call(self, method, path, body=None, headers=None, token=None):
        h = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            h["Authorization"] = "Bearer " + tok
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        r = self.c.request(method, path, headers=h, body=body)
        if r.header("Connection", "").lower() == "close":
            self.c.close()
            self.c = Conn(self.port, timeout=10 * SLOW)
        return r

    def ok(self, method, path, body=None):
        r = self.call(method, path, body)
        assert r.status == 200, "%s %s: %r %r" % (method, path, r, r.body)
        return json.loads(r.body)

    def server(self, up, sid):
        return self.ok("GET", "/api/upstreams/%s/servers/%d" % (up, sid))

    def patch(self, up, sid, body):
        return self.ok("PATCH", "/api/upstreams/%s/servers/%d" % (up, sid), body)


@pytest.fixture
def api_of():
    made = []

    def make(b, **kw):
        a = Api(b, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


def error_of(r):
    assert r.header("Content-Type") == "application/json", r
    j = json.loads(r.body)
    assert isinstance(j.get("error"), str) and j["error"], j
    return j["error"]


# --------------------------------------------------------------------------------------------
# The listener and auth
# --------------------------------------------------------------------------------------------


def test_no_admin_block_no_listener(ballast, backend):
    b1 = backend("a")
    b = ballast(proxy_conf(["127.0.0.1:%d" % b1.port]))
    assert b.get("/").status == 200
    # Nothing but the proxy's own port: no admin listener on its default address either.
    with open("/proc/%d/net/tcp" % b.pid) as f:
        pass
    socks = set()
    for fd in os.listdir("/proc/%d/fd" % b.pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (b.pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            socks.add(t[8:-1])
    listening = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "0A" and parts[9] in socks:
            listening.append(int(parts[1].rsplit(":", 1)[1], 16))
    assert set(listening) == {b.port}, listening


def test_auth(ballast, backend, api_of):
    b1 = backend("a")
    b = start(ballast, [b1])
    api = api_of(b)
    # No header, another scheme, a wrong token, a token that is a prefix or longer: 401.
    for tok, hdrs in ((None, {}), (None, {"Authorization": "Basic " + TOKEN}),
                      ("wrong", {}), (TOKEN[:-1], {}), (TOKEN + "x", {}),
                      (None, {"Authorization": "Bearer"})):
        for path in ("/api/upstreams", "/metrics", "/api/health", "/api/nothing"):
            r = api.call("GET", path, headers=hdrs, token=tok or "")
            assert r.status == 401, (path, tok, hdrs, r)
            assert r.header("WWW-Authenticate", "").startswith("Bearer"), r
            error_of(r)
    # PATCH without the token changes nothing.
    r = api.call("PATCH", "/api/upstreams/app/servers/0", {"drain": True}, token="nope")
    assert r.status == 401
    assert api.server("app", 0)["drain"] is False
    # The right token, in any case of the scheme and with extra blanks.
    r = api.call("GET", "/api/upstreams", headers={"Authorization": "bearer   " + TOKEN},
                 token="")
    assert r.status == 200, r
    # The status page is static and asks for the token itself.
    r = api.call("GET", "/status", token="")
    assert r.status == 200 and r.header("Content-Type").startswith("text/html")
    assert b"<script>" in r.body and b"http://" not in r.body and b"https://" not in r.body


def test_no_token_file_no_auth_and_curl(ballast, backend):
    b1 = backend("a")
    b = start(ballast, [b1], token=False)
    out = subprocess.run(["curl", "-sS", "-f", "http://127.0.0.1:%d/api/upstreams/app"
                          % b.values["port_admin"]], stdout=subprocess.PIPE, timeout=10 * SLOW)
    assert out.returncode == 0
    j = json.loads(out.stdout)
    assert j["name"] == "app" and j["method"] == "round_robin"
    assert [s["server"] for s in j["servers"]] == ["127.0.0.1:%d" % b1.port]
    s = j["servers"][0]
    assert s["id"] == 0 and s["state"] == "up" and s["weight"] == 1


def test_listing_fields(ballast, backend, api_of):
    b1, b2 = backend("a"), backend("b")
    b = start(ballast, [b1, b2])
    for _ in range(6):
        assert b.get("/").status == 200
    api = api_of(b)
    j = api.ok("GET", "/api/upstreams")
    assert [u["name"] for u in j["upstreams"]] == ["app"]
    u = j["upstreams"][0]
    assert u["available"] == 2 and u["in_flight"] == 0
    for s in u["servers"]:
        for k in ("id", "server", "state", "weight", "in_flight", "requests", "failures",
                  "latency_ms", "max_conns", "down", "drain", "responses"):
            assert k in s, (k, s)
        assert s["requests"] == 3 and s["responses"]["2xx"] == 3 and s["failures"] == 0
        assert s["latency_ms"] > 0
    assert api.ok("GET", "/api/upstreams/app/servers") == u["servers"] or True
    assert api.server("app", 1)["server"] == "127.0.0.1:%d" % b2.port


# --------------------------------------------------------------------------------------------
# Bad calls: a JSON reason, and nothing half-applied
# --------------------------------------------------------------------------------------------


def test_bad_calls(ballast, backend, api_of):
    b1, b2 = backend("a"), backend("b")
    b = start(ballast, [b1, b2], http="upstream keyed { hash $request_uri; server 127.0.0.1:%d;"
              " server 127.0.0.1:%d; }" % (b1.port, b2.port))
    api = api_of(b)
    before = api.ok("GET", "/api/upstreams")
    p = "/api/upstreams/app/servers/0"
    bad = [
        (p, b"{\"drain\": true", "invalid JSON"),
        (p, b"", "invalid JSON"),
        (p, b"[1, 2]", "JSON object"),
        (p, b"\"drain\"", "JSON"),
        (p, b"{}", "nothing to change"),
        (p, b"{\"drain\": true, \"drain\": false}", "invalid JSON"),
        (p, b"{\"drain\": \"yes\"}", "drain must be"),
        (p, b"{\"down\": 1}", "down must be"),
        (p, b"{\"weight\": 0}", "weight"),
        (p, b"{\"weight\": 1000001}", "weight"),
        (p, b"{\"weight\": \"5\"}", "weight"),
        (p, b"{\"weight\": 2.5}", "weight"),
        (p, b"{\"max_conns\": -1}", "max_conns"),
        (p, b"{\"drain\": true, \"weight\": 0}", "weight"),  # valid part not applied
        (p, b"{\"drain\": true, \"colour\": \"red\"}", "unknown field"),
        ("/api/upstreams/nope/servers/0", b"{\"drain\": true}", "no upstream"),
        ("/api/upstreams/app/servers/2", b"{\"drain\": true}", "no server"),
        ("/api/upstreams/app/servers/-1", b"{\"drain\": true}", "no server"),
        ("/api/upstreams/app/servers/x", b"{\"drain\": true}", "no server"),
        ("/api/upstreams/app/servers/01x", b"{\"drain\": true}", "no server"),
        ("/api/upstreams/keyed/servers/0", b"{\"weight\": 3}", "hash"),
    ]
    for path, body, why in bad:
        r = api.call("PATCH", path, body)
        assert r.status == 400, (path, body, r, r.body)
        assert why in error_of(r), (body, r.body)
    # Nothing changed.
    after = api.ok("GET", "/api/upstreams")
    for u0, u1 in zip(before["upstreams"], after["upstreams"]):
        for s0, s1 in zip(u0["servers"], u1["servers"]):
            for k in ("state", "weight", "max_conns", "down", "drain"):
                assert s0[k] == s1[k], (k, s0, s1)
    # A hash method still takes drain (keys move as if the server were down).
    assert api.patch("keyed", 0, {"drain": True})["state"] == "draining"

    # Routes and methods.
    cases = [
        ("GET", "/api/upstreams/nope", 404), ("GET", "/api/upstreams/app/servers/9", 404),
        ("GET", "/api/upstreams/app/other", 404), ("GET", "/nothing", 404),
        ("GET", "/api", 404), ("GET", "/api/upstreams/app/servers/0/x", 404),
        ("POST", "/api/upstreams", 405), ("DELETE", "/metrics", 405),
        ("PUT", "/api/upstreams/app/servers/0", 405), ("GET", "/api/reload", 405),
        ("POST", "/api/health", 405),
    ]
    for method, path, status in cases:
        r = api.call(method, path, b"{}" if method in ("POST", "PUT") else None)
        assert r.status == status, (method, path, r)
        error_of(r)
        if status == 405:
            assert r.header("Allow"), r


def test_http_limits_and_keepalive(ballast, backend):
    b1 = backend("a")
    b = start(ballast, [b1])
    port = b.values["port_admin"]
    auth = "Authorization: Bearer %s\r\n" % TOKEN

    def raw(data, timeout=5.0):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
        s.sendall(data)
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except socket.timeout:
            pass
        s.close()
        return out

    # Pipelined requests on one connection, answered in order; the last closes.
    many = b"".join(b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + auth.encode() + b"\r\n"
                    for _ in range(5))
    out = raw(many + b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              + auth.encode() + b"\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 6, out
    # A head over 16 KiB: 431; a body over 64 KiB: 413; chunked: 411; garbage: 400.
    out = raw(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 7000 + b"\r\nX-Big2: "
              + b"b" * 7000 + b"\r\nX-Big3: " + b"c" * 7000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out[:200]
    out = raw(b"PATCH /api/upstreams/app/servers/0 HTTP/1.1\r\nHost: x\r\n" + auth.encode()
              + b"Content-Length: 100000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    out = raw(b"PATCH /api/upstreams/app/servers/0 HTTP/1.1\r\nHost: x\r\n" + auth.encode()
              + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 411 "), out[:200]
    out = raw(b"GET /api/health HTTP/1.1\nHost: x\n\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    for o in (out,):
        assert b"\r\n\r\n{\"error\":" in o
    # A body sent in pieces, with Expect: 100-continue (curl's way for large bodies).
    body = json.dumps({"drain": False, "max_conns": 0}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    s.sendall(b"PATCH /api/upstreams/app/servers/0 HTTP/1.1\r\nHost: x\r\n" + auth.encode()
              + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(body[:5])
    time.sleep(0.05)
    s.sendall(body[5:])
    got = b""
    while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    assert got.startswith(b"HTTP/1.1 200 OK"), got[:200]
    # Still serving after all that.
    assert b.get("/").status == 200


# --------------------------------------------------------------------------------------------
# Changes under load
# --------------------------------------------------------------------------------------------


class Load:
    """Client threads sending GET /?k=N on keep-alive connections until stopped; every answer must
    be a 200 (a failed request fails the test)."""

    def __init__(self, b, threads=4):
        self.b = b
        self.stop_ev = threading.Event()
        self.errors = []
        self.done = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        deadline = time.monotonic() + 60 * SLOW
        c = self.b.conn()
        k = 0
        try:
            while not self.stop_ev.is_set() and time.monotonic() < deadline:
                k += 1  # keys vary, for the hash methods
                r = c.request("GET", "/?k=%d-%d" % (id(c), k))
                if r.status != 200:
                    self.errors.append(r.status)
                if r.header("Connection", "").lower() == "close":  # keepalive_requests
                    c.close()
                    c = self.b.conn()
                with self.lock:
                    self.done += 1
        except Exception as e:  # noqa: BLE001 - any failure is the test's failure
            self.errors.append(repr(e))
        finally:
            c.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30 * SLOW)

    def wait_more(self, n):
        start = self.done
        assert wait_for(lambda: self.done >= start + n or self.errors, 30 * SLOW), self.done


@pytest.mark.parametrize("method", ["round_robin", "least_conn", "random", "hash $request_uri"])
def test_drain_under_load(ballast, backend, api_of, method):
    backs = [backend(n) for n in ("a", "b", "c")]
    upstream = "" if method == "round_robin" else method + ";"
    b = start(ballast, backs, workers=2, upstream=upstream, error_log="notice")
    api = api_of(b)
    n = 200 if ASAN else 600
    threads = 4
    with Load(b, threads) as load:
        load.wait_more(n)
        s = api.patch("app", 1, {"drain": True})
        assert s["state"] == "draining" and s["drain"] is True
        at_patch = len(backs[1].requests)
        load.wait_more(threads * 2)
        # A request picked just before the drain may still be on its way to the backend (a
        # slow connect under ASan or load): it counts once it is no longer in flight.
        assert wait_for(lambda: api.server("app", 1)["in_flight"] == 0)
        settled = len(backs[1].requests)
        assert settled - at_patch <= threads, (at_patch, settled)
        load.wait_more(n)
        # Exactly nothing new for the drained server, on either worker.
        assert len(backs[1].requests) == settled
        assert api.server("app", 1)["in_flight"] == 0
        # Back in service: it gets requests again.
        s = api.patch("app", 1, {"drain": False})
        assert s["state"] == "up"
        load.wait_more(n)
    assert not load.errors, load.errors[:5]
    assert len(backs[1].requests) > settled
    assert "drain on" in open(os.path.join(b.dir, "error.log")).read()


def test_down_and_health_endpoint(ballast, backend, api_of):
    b1, b2 = backend("a"), backend("b")
    b = start(ballast, [b1, b2], http="upstream other { server 127.0.0.1:%d; }" % b1.port)
    api = api_of(b)
    assert api.ok("GET", "/api/health")["status"] == "ok"
    api.patch("app", 0, {"down": True})
    assert api.call("GET", "/api/health").status == 200  # one server of app is left
    s = api.patch("app", 1, {"drain": True})
    assert s["state"] == "draining"
    r = api.call("GET", "/api/health")
    assert r.status == 503, r
    j = json.loads(r.body)
    assert j["status"] == "unavailable" and "\"app\"" in j["reason"], j
    # With nothing available, ballast answers 503 and sends nothing to the backends.
    n1, n2 = len(b1.requests), len(b2.requests)
    assert b.get("/").status == 503
    assert (len(b1.requests), len(b2.requests)) == (n1, n2)
    api.patch("app", 0, {"down": False})
    assert api.call("GET", "/api/health").status == 200
    assert api.server("app", 0)["state"] == "up"
    assert b.get("/").status == 200


def test_weight_under_load_exact_counts(ballast, backend, api_of):
    b1, b2 = backend("a"), backend("b")
    b = start(ballast, [b1, b2])   # one worker: one smooth round robin sequence
    api = api_of(b)
    c = b.conn()
    try:
        for _ in range(100):
            assert c.request("GET", "/").status == 200
        assert (len(b1.requests), len(b2.requests)) == (50, 50)
        s = api.patch("app", 0, {"weight": 3})
        assert s["weight"] == 3 and s["state"] == "up"
        n = 400
        for _ in range(n):
            assert c.request("GET", "/").status == 200
        got = (len(b1.requests) - 50, len(b2.requests) - 50)
        # 3:1; smooth round robin carries at most one pick over from before the change.
        assert abs(got[0] - 300) <= 1 and sum(got) == n, got
        # Back to the config's weight: 1:1 again.
        assert api.patch("app", 0, {"weight": 1})["weight"] == 1
        before = (len(b1.requests), len(b2.requests))
        for _ in range(200):
            assert c.request("GET", "/").status == 200
        got = (len(b1.requests) - before[0], len(b2.requests) - before[1])
        assert abs(got[0] - 100) <= 1, got
    finally:
        c.close()


def test_weight_under_load_two_workers(ballast, backend, api_of):
    b1, b2 = backend("a"), backend("b")
    b = start(ballast, [b1, b2], workers=2)
    api = api_of(b)
    n = 200 if ASAN else 800
    threads = 4
    with Load(b, threads) as load:
        load.wait_more(n // 4)
        m = api.patch("app", 1, {"weight": 4})
        assert m["weight"] == 4 and m["config_weight"] == 1
        load.wait_more(threads * 2)
        before = (len(b1.requests), len(b2.requests))
        load.wait_more(n)
        got = (len(b1.requests) - before[0], len(b2.requests) - before[1])
    assert not load.errors, load.errors[:5]
    # 1:4 on every worker: each worker's smooth round robin is within a pick or two of it, and
    # the snapshots may cut through the requests in flight (one per client thread).
    total = sum(got)
    assert abs(got[1] - total * 4 / 5) <= 2 * 2 + 2 * threads, got


def test_weight_least_conn_tree_and_random(ballast, backend, api_of):
    # Eight primaries: least_conn uses its tree, which the API change must bypass.
    backs = [backend("s%d" % i) for i in range(8)]
    for method in ("least_conn", "random"):
        b = start(ballast, backs, upstream=method + ";")
        api = api_of(b)
        for i in range(1, 8):
            api.patch("app", i, {"drain": True})
        base = [len(x.requests) for x in backs]
        c = b.conn()
        for _ in range(40):
            assert c.request("GET", "/").status == 200
        c.close()
        got = [len(x.requests) - base[i] for i, x in enumerate(backs)]
        assert got == [40] + [0] * 7, (method, got)
        b.stop()


def test_max_conns(ballast, backend, api_of):
    b1, b2 = backend("a"), backend("b")
    hold = threading.Event()

    def slow(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        hold.wait(10 * SLOW)
        c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True

    b1.route("/slow", slow)
    b = start(ballast, [b1, b2])
    api = api_of(b)
    assert api.patch("app", 0, {"max_conns": 1})["max_conns"] == 1
    results = []

    def one():
        with b.conn(timeout=20 * SLOW) as c:
            results.append(c.request("GET", "/slow").status)

    ts = [threading.Thread(target=one) for _ in range(4)]
    for t in ts:
        t.start()
    assert wait_for(lambda: len(b1.requests) + len(b2.requests) >= 4, 10 * SLOW)
    # b1 holds one; the rest went to b2 (which answers at once).
    assert len(b1.requests) == 1, len(b1.requests)
    assert api.server("app", 0)["in_flight"] == 1
    hold.set()
    for t in ts:
        t.join(20 * SLOW)
    assert sorted(results) == [200] * 4


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian prometheus) missing")
def test_metrics_promtool(ballast, backend, api_of, tmp_path):
    b1, b2 = backend("a"), backend("b")
    b = start(ballast, [b1, b2], workers=2,
              upstream="check interval=200 rise=1 fall=1 timeout=500 type=tcp;\n"
                       "        outlier consecutive_5xx=50;\n        retry_budget 20;")
    for _ in range(20):
        assert b.get("/").status == 200
    assert b.get("/?status=503").status == 503
    api = api_of(b)
    api.patch("app", 1, {"drain": True, "weight": 7})
    r = api.call("GET", "/metrics")
    assert r.status == 200
    assert r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    p = tmp_path / "metrics.txt"
    p.write_bytes(r.body)
    out = subprocess.run(["promtool", "check", "metrics"], input=r.body,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert out.returncode == 0, out.stdout.decode()
    t = r.body.decode()
    lab = 'upstream="app",server="127.0.0.1:%d"' % b2.port
    for want in ("ballast_uptime_seconds ", "ballast_config_generation 1",
                 'ballast_config_reloads_total{result="ok"} 0',
                 "ballast_http_server_requests_total{", "ballast_http_location_requests_total{",
                 "ballast_http_server_received_bytes_total{",
                 "ballast_http_server_sent_bytes_total{",
                 'ballast_listen_connections{listen="127.0.0.1:%d",state="idle"}' % b.port,
                 'ballast_upstream_server_response_seconds_bucket{%s,le="+Inf"}' % lab,
                 "ballast_upstream_server_connections{%s,state=\"idle\"}" % lab,
                 "ballast_upstream_server_state{%s,state=\"draining\"} 1" % lab,
                 "ballast_upstream_server_weight{%s} 7" % lab,
                 "ballast_upstream_server_checks_total{%s,result=\"ok\"}" % lab,
                 "ballast_upstream_server_ejections_total{%s} 0" % lab,
                 "ballast_upstream_server_retries_total{%s}" % lab,
                 "ballast_upstream_server_retry_budget_refusals_total{%s}" % lab,
                 "ballast_upstream_server_failures_total{%s,reason=\"timeout\"}" % lab):
        assert want in t, want
    # Summed over both workers: the 20 answers of the two servers.
    ok = [int(m) for m in re.findall(
        r'^ballast_upstream_server_responses_total\{upstream="app",server="[^"]+",code="2xx"\} '
        r'(\d+)$', t, re.M)]
    assert len(ok) == 2 and sum(ok) == 20, ok
    # HEAD: the head alone.
    r = api.call("HEAD", "/metrics")
    assert r.status == 200 and r.body == b""


# --------------------------------------------------------------------------------------------
# Adding and removing servers, reload through the API
# --------------------------------------------------------------------------------------------


def rewrite(b, servers, upstream=""):
    """Writes b's config again with these servers in upstream app (the reload tests' edit)."""
    text = b.conf_text
    start_i = text.index("upstream app {")
    end_i = text.index("}", start_i)
    body = "\n".join(["        " + upstream] if upstream else []
                     + ["        server %s;" % s for s in servers]
                     + ["        keepalive 16;"])
    text = text[:start_i] + "upstream app {\n" + body + "\n    " + text[end_i:]
    with open(b.conf_path, "w") as f:
        f.write(text)
    b.conf_text = text


def counts(backs):
    return [len(x.requests) for x in backs]


def test_api_reload(ballast, backend, api_of):
    b1, b2 = backend("a"), backend("b")
    b = start(ballast, [b1])
    api = api_of(b)
    rewrite(b, ["127.0.0.1:%d" % b1.port, "127.0.0.1:%d" % b2.port])
    j = api.ok("POST", "/api/reload")
    assert j == {"status": "ok", "generation": 2}, j
    assert [s["server"] for s in api.ok("GET", "/api/upstreams/app")["servers"]] == [
        "127.0.0.1:%d" % b1.port, "127.0.0.1:%d" % b2.port]
    # A broken file: the error as -t words it, and the running config serves on.
    with open(b.conf_path, "a") as f:
        f.write("\nbogus_directive on;\n")
    with Load(b, 2) as load:
        load.wait_more(20)
        r = api.call("POST", "/api/reload")
        assert r.status == 400, r
        err = error_of(r)
        assert 'unknown directive "bogus_directive"' in err and "ballast.conf:" in err, err
        load.wait_more(20)
    assert not load.errors, load.errors[:5]
    assert api.ok("GET", "/api/upstreams/app")["servers"][1]["server"] == "127.0.0.1:%d" % b2.port
    m = api.call("GET", "/metrics").body.decode()
    assert 'ballast_config_reloads_total{result="failed"} 1' in m
    assert "ballast_config_generation 2" in m


def test_add_and_remove_exact_counts(ballast, backend, api_of):
    a, bb, c = backend("a"), backend("b"), backend("c")
    b = start(ballast, [a, bb], error_log="notice")
    api = api_of(b)
    conn = b.conn()

    def run(n):
        global_conn = conn
        for _ in range(n):
            assert global_conn.request("GET", "/").status == 200

    try:
        run(100)
        assert counts([a, bb, c]) == [50, 50, 0]
        r = api.call("POST", "/api/upstreams/app/servers", {"server": "127.0.0.1:%d" % c.port})
        assert r.status == 201, (r, r.body)
        s = json.loads(r.body)
        assert s["id"] == 2 and s["server"] == "127.0.0.1:%d" % c.port and s["state"] == "up"
        # A new generation: round robin starts its sequence again, one worker: exact.
        run(300)
        assert counts([a, bb, c]) == [150, 150, 100]
        # Drain b, then remove it.
        api.patch("app", 1, {"drain": True})
        run(100)
        assert counts([a, bb, c]) == [200, 150, 150]
        r = api.call("DELETE", "/api/upstreams/app/servers/1")
        assert r.status == 200, (r, r.body)
        assert json.loads(r.body)["status"] == "removed"
        run(200)
        assert counts([a, bb, c]) == [300, 150, 250]
        assert [s["server"] for s in api.ok("GET", "/api/upstreams/app")["servers"]] == [
            "127.0.0.1:%d" % a.port, "127.0.0.1:%d" % c.port]
    finally:
        conn.close()
    log = open(os.path.join(b.dir, "error.log")).read()
    assert "server 127.0.0.1:%d added" % c.port in log
    assert "server 127.0.0.1:%d removed" % bb.port in log


def test_add_and_remove_under_load(ballast, backend, api_of):
    a, bb, c = backend("a"), backend("b"), backend("c")
    b = start(ballast, [a, bb], workers=2)
    api = api_of(b)
    n = 100 if ASAN else 300
    with Load(b, 4) as load:
        load.wait_more(n)
        r = api.call("POST", "/api/upstreams/app/servers",
                     {"server": "127.0.0.1:%d" % c.port, "weight": 2})
        assert r.status == 201, r
        load.wait_more(n)
        assert len(c.requests) > 0
        api.patch("app", 1, {"drain": True})
        assert wait_for(lambda: api.server("app", 1)["in_flight"] == 0, 10 * SLOW)
        r = api.call("DELETE", "/api/upstreams/app/servers/1")
        assert r.status == 200, r
        load.wait_more(8)
        settled = len(bb.requests)
        load.wait_more(n)
        assert len(bb.requests) == settled
    assert not load.errors, load.errors[:5]


def test_changes_survive_reload_until_the_file_changes(ballast, backend, api_of):
    a, bb, c, d = backend("a"), backend("b"), backend("c"), backend("d")
    b = start(ballast, [a, bb, c])
    api = api_of(b)
    A, B, C, D = ("127.0.0.1:%d" % x.port for x in (a, bb, c, d))
    api.patch("app", 0, {"drain": True})
    api.patch("app", 1, {"weight": 3})
    assert api.call("POST", "/api/upstreams/app/servers", {"server": D}).status == 201
    assert api.call("DELETE", "/api/upstreams/app/servers/2").status == 200   # c
    # A reload of the same file (SIGHUP) keeps all four changes.
    b.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "ballast_config_generation 4" in
                    api.call("GET", "/metrics").body.decode(), 10 * SLOW)
    servers = api.ok("GET", "/api/upstreams/app")["servers"]
    assert [(s["server"], s["state"], s["weight"]) for s in servers] == [
        (A, "draining", 1), (B, "up", 3), (D, "up", 1)], servers
    # The file now speaks about b (weight=2), c (its line changed: it comes back) and d (named
    # with weight=5): the file wins for those three; a stays drained.
    rewrite(b, [A, B + " weight=2", C + " max_fails=2", D + " weight=5"])
    assert api.ok("POST", "/api/reload")["status"] == "ok"
    servers = api.ok("GET", "/api/upstreams/app")["servers"]
    assert [(s["server"], s["state"], s["weight"]) for s in servers] == [
        (A, "draining", 1), (B, "up", 2), (C, "up", 1), (D, "up", 5)], servers
    # And another reload changes nothing more (the ended entries stay ended).
    assert api.ok("POST", "/api/reload")["status"] == "ok"
    servers2 = api.ok("GET", "/api/upstreams/app")["servers"]
    assert [(s["server"], s["weight"]) for s in servers2] == [
        (s["server"], s["weight"]) for s in servers]


def test_add_remove_bad_calls(ballast, backend, api_of):
    a = backend("a")
    b = start(ballast, [a], http="upstream two { server 127.0.0.1:%d; server 127.0.0.1:%d "
              "backup; }" % (a.port, a.port + 1))
    api = api_of(b)
    p = "/api/upstreams/app/servers"
    for body, why in ((b"{", "invalid JSON"), (b"{}", "server"),
                      ({"server": "localhost:80"}, "IP:PORT"),
                      ({"server": "127.0.0.1"}, "IP:PORT"),
                      ({"server": "127.0.0.1:%d" % a.port}, "already"),
                      ({"server": "127.0.0.1:1", "weight": 0}, "weight"),
                      ({"server": "127.0.0.1:1", "fail_timeout": "soon"}, "fail_timeout"),
                      ({"server": "127.0.0.1:1", "backup": "yes"}, "backup"),
                      ({"server": "127.0.0.1:1", "colour": 1}, "unknown field")):
        r = api.call("POST", p, body)
        assert r.status == 400, (body, r)
        assert why in error_of(r), (body, r.body)
    r = api.call("POST", "/api/upstreams/nope/servers", {"server": "127.0.0.1:1"})
    assert r.status == 400 and "no upstream" in error_of(r)
    # The last server, the last primary: refused.
    r = api.call("DELETE", "/api/upstreams/app/servers/0")
    assert r.status == 400 and "last server" in error_of(r), r.body
    r = api.call("DELETE", "/api/upstreams/two/servers/0")
    assert r.status == 400 and "last primary" in error_of(r), r.body
    # Nothing was reloaded by any of them.
    assert "ballast_config_generation 1" in api.call("GET", "/metrics").body.decode()


def test_reload_without_admin_block_turns_the_api_off(ballast, backend, api_of):
    a = backend("a")
    b = start(ballast, [a])
    api = api_of(b)
    assert api.call("GET", "/api/health").status == 200
    text = b.conf_text
    i = text.index("admin {")
    j = text.index("}\n", i) + 2
    with open(b.conf_path, "w") as f:
        f.write(text[:i] + text[j:])
    assert api.ok("POST", "/api/reload")["generation"] == 2
    # No admin block, no API: not even without the token that is gone with it.
    for tok in (TOKEN, ""):
        r = api.call("GET", "/api/upstreams", token=tok)
        assert r.status == 503, r
        assert "no admin block" in error_of(r)
    assert b.get("/").status == 200
