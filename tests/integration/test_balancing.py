"""Load balancing through the real binary (issue 4, integration part): the spread, stickiness
and load-awareness each method promises in docs/load-balancing.md, seen by real clients
talking to ballast and real backends behind it.

Request counts are smaller under ASan (BALLAST_ASAN=1), where every request costs several
times more: the spreads checked here are exact (round robin) or their tolerance is computed
from the sample size, so fewer requests test the same promises. Every loop is bounded by a
count and a deadline. Timing is asserted nowhere except as the share of requests a method
gives a slow server (least_time, least_conn).
"""
import collections
import functools
import math
import re
import socket
import threading
import time

from conftest import (ASAN, SLOW, Conn, ConnectionClosed, port_refuses, proxy_conf, render,
                      run_ballast, wait_for)

# Fewer requests under ASan (see the module docstring).
N_SPREAD = 300 if ASAN else 1000
N_KEYS = 100 if ASAN else 200


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


# Every group here keeps 16 idle connections: the spread tests run thousands of requests.
upstream_conf = functools.partial(proxy_conf, keepalive=16)


def srv(b, extra=""):
    """A `server` line's text for backend b, written as 127.0.0.1:PORT (the consistent ring
    hashes the name as written, so every config in a test writes it the same way)."""
    return ("127.0.0.1:%d %s" % (b.port, extra)).strip()


def slow_route(seconds):
    """Records the request as soon as it arrives (so `requests` counts those in flight), then
    answers 200 with X-Backend `seconds` later."""

    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        if not c.sleep(seconds):
            return False
        c.send("HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: 4\r\n\r\nslow"
               % c.backend.name)
        return True

    return fn


class BoundConn(Conn):
    """A Conn whose socket is bound to a chosen source address (any 127.x.y.z is loopback)."""

    def __init__(self, port, src, timeout=5.0):
        self.port = port
        self.timeout = timeout * SLOW
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.timeout)
        self.sock.bind((src, 0))
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.eof = False


def get_from(port, src, path="/"):
    with BoundConn(port, src) as c:
        return c.request("GET", path)


def backend_of(r):
    assert r.status == 200, r
    return r.header("x-backend")


def measured(what, value):
    """Prints a measured spread (visible with pytest -s; docs/load-balancing.md quotes them)."""
    print("\nMEASURED %s: %s" % (what, value))


def counts(names, keys):
    c = collections.Counter(names)
    return {k: c.get(k, 0) for k in keys}


def run_load(port, path, threads, duration, max_each):
    """`threads` clients, each on its own keep-alive connection, send GET path back to back
    until `duration` seconds have passed or they have sent `max_each` requests. Returns
    [(status, x-backend)] of every answered request and the number of errors."""
    results = []
    errors = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def client(t):
        conn = None
        n = 0
        try:
            while n < max_each and time.monotonic() < deadline:
                if conn is None:
                    conn = Conn(port, timeout=10.0)
                try:
                    r = conn.request("GET", "%s?t=%d&n=%d" % (path, t, n))
                except ConnectionClosed:
                    conn.close()
                    conn = None
                    continue
                n += 1
                with lock:
                    results.append((r.status, r.header("x-backend")))
                if r.has_token("connection", "close"):
                    conn.close()
                    conn = None
        except Exception as e:
            with lock:
                errors.append(repr(e))
        finally:
            if conn:
                conn.close()

    ts = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(duration + 30 * SLOW)
    return results, errors


def share(results, name):
    ok = [b for s, b in results if s == 200]
    return ok.count(name) / len(ok) if ok else 0.0


def assert_split(got, want, tol_pp):
    """got: {name: count}; want: {name: share}. Every share within tol_pp percentage points."""
    total = sum(got.values())
    assert total > 0, got
    for k, w in want.items():
        pp = 100.0 * got.get(k, 0) / total
        assert abs(pp - 100.0 * w) <= tol_pp, \
            "server %s got %.2f%% want %.2f%% +- %.2f (counts %s)" % (k, pp, 100 * w, tol_pp, got)


def binomial_tol_pp(n, p, sigmas=4.5):
    return 100.0 * sigmas * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------------------------
# Round robin
# --------------------------------------------------------------------------------------------


def three(backend):
    return backend("a"), backend("b"), backend("c")


def test_weights_5_3_2_one_worker(ballast, backend):
    a, b, c = three(backend)
    px = ballast(upstream_conf([srv(a, "weight=5"), srv(b, "weight=3"), srv(c, "weight=2")]))
    got = []
    with px.conn() as conn:
        for i in range(N_SPREAD):
            got.append(backend_of(conn.request("GET", "/w/%d" % i)))
    split = counts(got, "abc")
    assert_split(split, {"a": 0.5, "b": 0.3, "c": 0.2}, 2.0)
    measured("rr 5:3:2, 1 worker", split)


def test_weights_5_3_2_two_workers(ballast, backend):
    """Each worker keeps its own round-robin position, as each nginx worker does; spread over
    both (a fresh connection per request lets the kernel pick the worker)."""
    a, b, c = three(backend)
    px = ballast(upstream_conf([srv(a, "weight=5"), srv(b, "weight=3"), srv(c, "weight=2")]),
                 workers=2)
    got = []
    lock = threading.Lock()

    def client(k):
        mine = []
        for i in range(N_SPREAD // 4):
            with Conn(px.port) as conn:
                mine.append(backend_of(conn.request("GET", "/w2/%d/%d" % (k, i))))
        with lock:
            got.extend(mine)

    ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60 * SLOW)
    assert len(got) == 4 * (N_SPREAD // 4), "only %d answers" % len(got)
    assert_split(counts(got, "abc"), {"a": 0.5, "b": 0.3, "c": 0.2}, 2.0)


def test_smooth_sequence_5_1_1(ballast, backend):
    a, b, c = three(backend)
    px = ballast(upstream_conf([srv(a, "weight=5"), srv(b), srv(c)]))
    with px.conn() as conn:
        got = "".join(backend_of(conn.request("GET", "/s/%d" % i)) for i in range(70))
    assert got == "aabacaa" * 10, "got %s want %s" % (got, "aabacaa" * 10)


# --------------------------------------------------------------------------------------------
# least_conn, least_time
# --------------------------------------------------------------------------------------------


def test_least_conn_avoids_server_holding_requests(ballast, backend):
    """One server holds every request for 1 s, two answer at once. Round robin gives it its
    third regardless; least_conn sends it a request only when it has no more in flight than
    the others, i.e. a small fraction."""
    slow, f1, f2 = backend("slow"), backend("f1"), backend("f2")
    slow.route("/", slow_route(1.0))
    servers = [srv(slow), srv(f1), srv(f2)]
    rr = ballast(upstream_conf(servers))
    lc = ballast(upstream_conf(servers, upstream="least_conn;"))
    threads, duration = 6, 1.5
    rr_res, rr_err = run_load(rr.port, "/rr", threads, duration, 500)
    lc_res, lc_err = run_load(lc.port, "/lc", threads, duration, 500)
    assert not rr_err and not lc_err, (rr_err, lc_err)
    assert all(s == 200 for s, _ in rr_res + lc_res), \
        collections.Counter(s for s, _ in rr_res + lc_res)
    rr_share, lc_share = share(rr_res, "slow"), share(lc_res, "slow")
    measured("holding server share: rr, of, least_conn, of",
             (rr_share, len(rr_res), lc_share, len(lc_res)))
    assert rr_share >= 0.25, "round robin gave the holding server %.3f of %d" % (
        rr_share, len(rr_res))
    assert lc_share < rr_share / 3, \
        "least_conn gave the holding server %.3f of %d requests, round robin %.3f of %d" % (
            lc_share, len(lc_res), rr_share, len(rr_res))


def test_least_time_avoids_slower_server(ballast, backend):
    """A server 50 ms slower than its peers gets at most 10% once measured."""
    slow, f1, f2 = backend("slow"), backend("f1"), backend("f2")
    slow.route("/", slow_route(0.05))
    px = ballast(upstream_conf([srv(slow), srv(f1), srv(f2)], upstream="least_time;"))
    warm, err = run_load(px.port, "/warm", 3, 2.0, 10)  # every server gets measured
    assert not err, err
    res, err = run_load(px.port, "/lt", 4, 1.5, 400 if not ASAN else 100)
    assert not err, err
    assert all(s == 200 for s, _ in res), collections.Counter(s for s, _ in res)
    got = counts([b for _, b in res], ["slow", "f1", "f2"])
    measured("least_time +50ms server", got)
    assert got["slow"] <= 0.10 * len(res), \
        "slower server got %d of %d (%s)" % (got["slow"], len(res), got)
    assert got["f1"] and got["f2"], got


# --------------------------------------------------------------------------------------------
# ip_hash, hash
# --------------------------------------------------------------------------------------------


def four(backend):
    return [backend(n) for n in "ABCD"]


def nets(n):
    """n client addresses in n different /24 networks (ip_hash uses the first three octets)."""
    return ["127.0.%d.1" % k for k in range(1, n + 1)]


def test_ip_hash_one_client_one_server(ballast, backend):
    bs = four(backend)
    px = ballast(upstream_conf([srv(b) for b in bs], upstream="ip_hash;"))
    # the whole /24 is one client for ip_hash
    got = {backend_of(get_from(px.port, "127.0.7.%d" % h, "/ip/%d" % i))
           for i, h in enumerate([1, 2, 77, 200, 254] * 4)}
    assert len(got) == 1, got
    # and different networks spread over the servers
    spread = collections.Counter(backend_of(get_from(px.port, a, "/n")) for a in nets(N_KEYS))
    assert set(spread) == set("ABCD"), spread


def ip_hash_map(port, addrs):
    return {a: backend_of(get_from(port, a, "/m")) for a in addrs}


def test_ip_hash_down_server_moves_only_its_clients(ballast, backend):
    """nginx's way to take a server out of an ip_hash group without remapping the others is to
    mark it `down` (deleting its line changes the modulus, and nginx then maps almost every
    client anew; ballast keeps that, see the second half). With D down, D's clients rehash
    onto A/B/C and everyone else stays where they were."""
    bs = four(backend)
    A, B, C, D = bs
    addrs = nets(N_KEYS)
    before = ip_hash_map(ballast(upstream_conf([srv(b) for b in bs], upstream="ip_hash;")).port,
                         addrs)
    assert set(before.values()) == set("ABCD"), collections.Counter(before.values())
    after = ip_hash_map(ballast(upstream_conf([srv(A), srv(B), srv(C), srv(D, "down")],
                                              upstream="ip_hash;")).port, addrs)
    moved = [a for a in addrs if before[a] != "D" and after[a] != before[a]]
    assert not moved, "clients of A/B/C moved: %s" % [(a, before[a], after[a]) for a in moved]
    assert all(after[a] in "ABC" for a in addrs if before[a] == "D"), after
    # Deleting the line: nginx remaps by the new total weight; count, do not assert.
    deleted = ip_hash_map(ballast(upstream_conf([srv(A), srv(B), srv(C)],
                                                upstream="ip_hash;")).port, addrs)
    measured("ip_hash D deleted: D's clients, others moved, of", (
        sum(before[a] == "D" for a in addrs),
        sum(before[a] != "D" and deleted[a] != before[a] for a in addrs), len(addrs)))


def uri_map(px, uris):
    with px.conn() as conn:
        return {u: backend_of(conn.request("GET", u)) for u in uris}


def test_hash_consistent_sticks_and_removal_moves_only_removed_keys(ballast, backend):
    bs = four(backend)
    A, B, C, D = bs
    uris = ["/item/%d?v=%d" % (i, i * 7) for i in range(N_KEYS)]
    method = "hash $request_uri consistent;"
    px = ballast(upstream_conf([srv(b) for b in bs], upstream=method))
    before = uri_map(px, uris)
    again = uri_map(px, uris)
    assert again == before, [(u, before[u], again[u]) for u in uris if again[u] != before[u]]
    assert set(before.values()) == set("ABCD"), collections.Counter(before.values())
    for servers, label in (([srv(A), srv(B), srv(C)], "removed"),
                           ([srv(A), srv(B), srv(C), srv(D, "down")], "down")):
        after = uri_map(ballast(upstream_conf(servers, upstream=method)), uris)
        moved = [(u, before[u], after[u]) for u in uris
                 if before[u] != "D" and after[u] != before[u]]
        assert not moved, "D %s: keys of A/B/C moved: %s" % (label, moved)
        assert all(after[u] in "ABC" for u in uris if before[u] == "D"), (label, after)
    measured("hash consistent 4 servers", collections.Counter(before.values()))


def test_hash_maglev_spreads_and_sticks(ballast, backend):
    bs = four(backend)
    px = ballast(upstream_conf([srv(b) for b in bs], upstream="hash $arg_id maglev;"))
    ids = ["/m?id=user%d" % i for i in range(2 * N_KEYS)]
    first = uri_map(px, ids)
    # the key is only the id: another path with the same id goes to the same server
    with px.conn() as conn:
        for u in ids[::5]:
            other = "/other/path?x=1&id=" + u.split("id=")[1]
            assert backend_of(conn.request("GET", other)) == first[u], u
    assert uri_map(px, ids) == first
    got = collections.Counter(first.values())
    measured("maglev", got)
    assert_split(got, {k: 0.25 for k in "ABCD"}, binomial_tol_pp(len(ids), 0.25))


def test_hash_consistent_bound_sticks_then_spills_hot_key(ballast, backend):
    """Every request comes from 127.0.0.1: one hot key. Unloaded it sticks to one server;
    with N requests held open at once, no server holds more than ceil(1.25 * N / 4) of them
    (the bound for the last pick) and the rest spill along the ring."""
    bs = four(backend)
    hold = 1.5
    for b in bs:
        b.route("/hold", slow_route(hold))
    px = ballast(upstream_conf([srv(b) for b in bs],
                               upstream="hash $remote_addr consistent bound=1.25;"))
    with px.conn() as conn:
        home = {backend_of(conn.request("GET", "/u/%d" % i)) for i in range(20)}
    assert len(home) == 1, home
    n = 12
    results = []
    lock = threading.Lock()

    def one(i):
        try:
            r = px.get("/hold/%d" % i, timeout=10.0)
            with lock:
                results.append((r.status, r.header("x-backend")))
        except Exception as e:
            with lock:
                results.append((repr(e), None))

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    # All n are held at the backends at once (each for `hold` s): the counts are in-flight.
    arrived = wait_for(lambda: sum(len(b.requests) for b in bs) >= 20 + n, timeout=hold)
    held = {b.name: sum(r.path.startswith("/hold") for r in b.requests) for b in bs}
    for t in ts:
        t.join(30 * SLOW)
    measured("bound=1.25 home, held", (home, held))
    assert arrived, "only %s of %d held requests arrived together" % (held, n)
    assert all(s == 200 for s, _ in results) and len(results) == n, results
    cap = math.ceil(1.25 * n / 4)
    assert max(held.values()) <= cap, "in flight per server %s, bound %d" % (held, cap)
    (home_name,) = home
    assert held[home_name] >= 1 and sum(v > 0 for v in held.values()) > 1, held
    # unloaded again: the key is back home
    with px.conn() as conn:
        again = {backend_of(conn.request("GET", "/u2/%d" % i)) for i in range(10)}
    assert again == home, (again, home)


def test_random_two_least_conn_spreads_by_weight(ballast, backend):
    a, b, c = three(backend)
    px = ballast(upstream_conf([srv(a, "weight=5"), srv(b, "weight=3"), srv(c, "weight=2")],
                               upstream="random two least_conn;"))
    got = []
    with px.conn() as conn:
        for i in range(N_SPREAD):
            got.append(backend_of(conn.request("GET", "/r/%d" % i)))
    split = counts(got, "abc")
    measured("random two 5:3:2", split)
    assert_split(split, {"a": 0.5, "b": 0.3, "c": 0.2}, binomial_tol_pp(N_SPREAD, 0.5))


# --------------------------------------------------------------------------------------------
# backup, max_conns
# --------------------------------------------------------------------------------------------


def test_backup_only_when_primaries_fail(ballast, backend):
    p1, p2, bk = backend("p1"), backend("p2"), backend("bk")
    px = ballast(upstream_conf([srv(p1, "max_fails=1 fail_timeout=10s"),
                                srv(p2, "max_fails=1 fail_timeout=10s"),
                                srv(bk, "backup")], keepalive=None))
    first = [backend_of(px.get("/p/%d" % i)) for i in range(20)]
    assert counts(first, ["p1", "p2", "bk"]) == {"p1": 10, "p2": 10, "bk": 0}, first
    assert not bk.requests
    p1.stop()
    p2.stop()
    assert wait_for(lambda: port_refuses(p1.port) and port_refuses(p2.port)), "ports still open"
    got = []
    for i in range(30):
        r = px.get("/f/%d" % i)
        got.append((r.status, r.header("x-backend")))
    failed = [i for i, (s, _) in enumerate(got) if s != 200]
    measured("backup: failed requests before the backup took over", failed)
    # refused connects answer 502 (no retries configured) until each primary is marked failed
    # by its first failure: at most one failed request per primary, and only at the start
    assert len(failed) <= 2 and all(i < 2 for i in failed), got
    assert all(g == (200, "bk") for g in got[len(failed):]), got
    assert all(s in (200, 502) for s, _ in got), got


def test_max_conns_full_server_skipped(ballast, backend):
    """max_conns=1 on a server that holds every request 1.5 s: while it holds one, concurrent
    and later requests go to its peer."""
    hold = 1.5
    full, free = backend("full"), backend("free")
    full.route("/", slow_route(hold))
    px = ballast(upstream_conf([srv(full, "max_conns=1"), srv(free)]))
    results = []
    lock = threading.Lock()

    def one(i):
        try:
            r = px.get("/c/%d" % i, timeout=10.0)
            with lock:
                results.append((r.status, r.header("x-backend")))
        except Exception as e:
            with lock:
                results.append((repr(e), None))

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
    for t in ts:
        t.start()
    assert full.wait_requests(1, timeout=hold), "the max_conns server got nothing"
    t0 = time.monotonic()
    later = []
    while time.monotonic() - t0 < hold / 3 and len(later) < 20:
        later.append(backend_of(px.get("/later/%d" % len(later))))
    n_full = len(full.requests)
    for t in ts:
        t.join(30 * SLOW)
    assert n_full == 1, "max_conns=1 server took %d at once" % n_full
    assert later and all(b == "free" for b in later), later
    assert len(results) == 8 and all(s == 200 for s, _ in results), results
    assert counts([b for _, b in results], ["full", "free"]) == {"full": 1, "free": 7}, results


# --------------------------------------------------------------------------------------------
# Config errors (ballast -t)
# --------------------------------------------------------------------------------------------


def check_conf_error(tmp_path, upstream_body, message, line_marker):
    """Writes a config whose upstream block holds upstream_body; ballast -t must exit 1 with
    `message` and CONF:LINE, LINE being the line holding line_marker (a string or a tuple of
    acceptable markers)."""
    text = render(proxy_conf([], group="grp", upstream=upstream_body.strip(),
                             main="worker_processes 1;"), {})
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    r = run_ballast(["-t", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode == 1, "rc=%d out=%r" % (r.returncode, out)
    assert message in out, "want %r in %r" % (message, out)
    markers = line_marker if isinstance(line_marker, tuple) else (line_marker,)
    lines = [i for i, ln in enumerate(text.split("\n"), 1) if any(m in ln for m in markers)]
    assert any("%s:%d" % (conf, ln) in out for ln in lines), \
        "want %s:%s in %r" % (conf, lines, out)


def test_conf_two_methods(tmp_path):
    check_conf_error(tmp_path, "        least_conn;\n        ip_hash;\n"
                               "        server 127.0.0.1:1;",
                     'load balancing method redefined by "ip_hash" in', "ip_hash;")


def test_conf_backup_with_hash(tmp_path):
    check_conf_error(tmp_path, "        hash $request_uri consistent;\n"
                               "        server 127.0.0.1:1;\n        server 127.0.0.1:2 backup;",
                     'does not allow "backup" servers', ("upstream grp", "backup;"))


def test_conf_weight_zero(tmp_path):
    check_conf_error(tmp_path, "        server 127.0.0.1:1 weight=0;",
                     'invalid value "weight=0"', "weight=0")


def test_conf_unknown_variable_in_hash_key(tmp_path):
    check_conf_error(tmp_path, "        hash $nosuch;\n        server 127.0.0.1:1;",
                     'unknown "nosuch" variable', "$nosuch")
