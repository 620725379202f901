"""Per-worker request and connection counters (issue 14, "Tail latency across workers"): with
several workers, /metrics' ballast_worker_* series and GET /api/workers account for every
request and connection a client made, worker by worker, and agree with each other.

The spread itself is the kernel's (SO_REUSEPORT hashing); the tests only check that what was
sent is counted once, on some worker, and that many connections did not all land on one
worker (200 connections over 4 workers: all on one has probability 4^-199).
"""
import re

from conftest import SLOW, Conn, wait_for
from test_admin import Api, start

WORKERS = 4


def metrics_workers(api):
    """{family: {worker: value}} (connections: active + idle) from /metrics."""
    r = api.call("GET", "/metrics")
    assert r.status == 200, r
    out = {}
    for m in re.finditer(r'^(ballast_worker_\w+)\{(?:worker="(\d+)"(?:,state="(\w+)")?)\} (-?\d+)$',
                         r.body.decode(), re.M):
        fam, w, v = m.group(1), int(m.group(2)), int(m.group(4))
        out.setdefault(fam, {})
        out[fam][w] = out[fam].get(w, 0) + v
    return out


def api_workers(api):
    j = api.ok("GET", "/api/workers")
    ws = j["workers"]
    assert [w["id"] for w in ws] == list(range(1, WORKERS + 1)), j
    return ws


def totals(ws, key):
    return sum(w[key] for w in ws)


def test_worker_counters_sum_to_what_was_sent(ballast, backend):
    b1 = backend("a")
    b = start(ballast, [b1], workers=WORKERS)
    api = Api(b)
    try:
        before = api_workers(api)
        req0, acc0 = totals(before, "requests"), totals(before, "connections_accepted")

        # 200 one-request connections (the kernel spreads them), then 300 requests on 3
        # keep-alive connections.
        for _ in range(200):
            with Conn(b.port, timeout=10 * SLOW) as c:
                assert c.request("GET", "/").status == 200
        keep = [Conn(b.port, timeout=10 * SLOW) for _ in range(3)]
        for i in range(300):
            assert keep[i % 3].request("GET", "/").status == 200

        def settled():
            ws = api_workers(api)
            return (totals(ws, "requests") - req0 == 500 and
                    totals(ws, "connections_accepted") - acc0 == 203 and ws)

        ws = wait_for(settled, timeout=5 * SLOW)
        assert ws, api_workers(api)
        # The three keep-alive connections are open and idle; the 200 others are closed.
        ws = wait_for(lambda: (totals(api_workers(api), "connections_idle") == 3 and
                               api_workers(api)), timeout=5 * SLOW)
        assert ws, api_workers(api)
        assert totals(ws, "connections_active") == 0, ws
        busy = [w for w in ws if w["connections_accepted"] > 0]
        assert len(busy) >= 2, ("every connection on one worker", ws)

        # /metrics says the same, worker by worker.
        m = metrics_workers(api)
        assert set(m) == {"ballast_worker_requests_total",
                          "ballast_worker_connections_accepted_total",
                          "ballast_worker_connections"}, m
        for w in ws:
            assert m["ballast_worker_requests_total"][w["id"]] == w["requests"], (m, ws)
            assert (m["ballast_worker_connections_accepted_total"][w["id"]] ==
                    w["connections_accepted"]), (m, ws)
            assert (m["ballast_worker_connections"][w["id"]] ==
                    w["connections_active"] + w["connections_idle"]), (m, ws)
        for c in keep:
            c.close()
        assert wait_for(lambda: totals(api_workers(api), "connections_idle") == 0,
                        timeout=5 * SLOW), api_workers(api)
    finally:
        api.close()


def test_workers_api_method(ballast, backend):
    b1 = backend("a")
    b = start(ballast, [b1], workers=2)
    api = Api(b)
    try:
        r = api.call("POST", "/api/workers")
        assert r.status == 405 and r.header("Allow") == "GET, HEAD", r
        r = api.call("GET", "/api/workers", token="wrong")
        assert r.status == 401, r
        assert len(api.ok("GET", "/api/workers")["workers"]) == 2
    finally:
        api.close()


def test_in_flight_and_requests_sum_over_workers(ballast, backend):
    """Round robin keeps the in-flight and request counts in each worker's own cache line
    (upstream.h, shared_active): the admin API and /metrics sum them. 40 requests held open on
    40 connections (spread over the workers by the kernel) all show, then none, and each was
    counted once."""
    import threading

    hold = threading.Event()

    def slow(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        hold.wait(20 * SLOW)
        c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True

    b1 = backend("a")
    b1.route("/slow", slow)
    b = start(ballast, [b1], workers=WORKERS)
    api = Api(b)
    n = 40
    results = []
    try:
        req0 = api.server("app", 0)["requests"]

        def one():
            with Conn(b.port, timeout=30 * SLOW) as c:
                results.append(c.request("GET", "/slow").status)

        ts = [threading.Thread(target=one) for _ in range(n)]
        for t in ts:
            t.start()
        try:
            assert wait_for(lambda: len(b1.requests) >= n, 10 * SLOW), len(b1.requests)
            ws = api_workers(api)
            assert len([w for w in ws if w["connections_active"] > 0]) >= 2, ws
            assert api.server("app", 0)["in_flight"] == n
            assert api.ok("GET", "/api/upstreams/app")["in_flight"] == n
            r = api.call("GET", "/metrics")
            lab = 'upstream="app",server="127.0.0.1:%d"' % b1.port
            assert ("ballast_upstream_server_requests_in_flight{%s} %d" % (lab, n)
                    in r.body.decode()), r.body.decode()
        finally:
            hold.set()
            for t in ts:
                t.join(30 * SLOW)
        assert results == [200] * n, results
        assert wait_for(lambda: api.server("app", 0)["in_flight"] == 0, 10 * SLOW)
        assert api.ok("GET", "/api/upstreams/app")["in_flight"] == 0
        assert api.server("app", 0)["requests"] - req0 == n
    finally:
        api.close()
