"""limit_req, limit_conn and max_inflight (src/policy/), each compared with nginx 1.22 on the
same http { } text and the same client timing where nginx has the feature: the same schedule of
requests goes to both at the same instants, and the admitted counts (and $limit_req_status in
each access log) must agree within 2."""
import collections
import concurrent.futures
import os
import signal
import socket
import threading
import time

import pytest

from conftest import SLOW, Ballast, http_get, render, wait_for
from nginx_ref import Nginx


def www(base):
    d = os.path.join(str(base), "www")
    os.makedirs(d, exist_ok=True)
    for sub in ("", "exempt"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, sub, "index.html"), "w") as f:
            f.write("hello\n")
    return d


class Pair:
    """nginx and ballast on the same http { } body (placeholders: @port@ the listen port,
    @www@ a directory with index.html, @log@ the instance's own access log path, @backend@)."""

    def __init__(self, base, body, workers=1, backend=None):
        self.www = www(base)
        self.nlog = os.path.join(str(base), "nginx-access.log")
        self.blog = os.path.join(str(base), "ballast-access.log")
        extra = {"www": self.www}
        if backend:
            extra["backend"] = backend
        nvals = dict(extra, log=self.nlog)
        self.nginx = Nginx(os.path.join(str(base), "nginx"), render(body, nvals))
        self.nport = nvals["port"]
        bvals = dict(extra, log=self.blog)
        self.ballast = Ballast(os.path.join(str(base), "ballast"), "http {\n%s\n}\n" % body,
                               workers=workers, values=bvals)
        self.bport = None

    def start(self):
        self.nginx.wait_listening(self.nport)
        self.ballast.start()
        self.bport = self.ballast.port
        return self

    def stop(self):
        self.nginx.stop()
        return self.ballast.finish()

    def statuses(self, which):
        """$limit_req_status (or the last field) of each access log line."""
        path = self.nlog if which == "nginx" else self.blog
        if not wait_for(lambda: os.path.exists(path), 2):
            return collections.Counter()
        # ballast writes its log lines at least every 500 ms
        time.sleep(0.7)
        return collections.Counter(l.split()[-1] for l in open(path) if l.strip())


@pytest.fixture
def pair(tmp_path):
    made = []

    def make(body, **kw):
        p = Pair(tmp_path / ("p%d" % len(made)), body, **kw)
        made.append(p)
        return p.start()

    yield make
    problems = []
    for p in made:
        problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def get_status(port, path, headers=None):
    try:
        return http_get(port, path, headers=headers, timeout=15).status
    except Exception as e:  # counted as a failure to answer
        return "error: %r" % e


def fire(ports, path, count, interval, headers_of=None):
    """Sends `count` GETs to every port, request i at t0 + i*interval on its own connection
    (the same instant for every port). Returns {port: Counter(status)}."""
    results = {p: collections.Counter() for p in ports}
    lock = threading.Lock()
    t0 = time.monotonic() + 0.2

    def one(i, port):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        h = headers_of(i) if headers_of else None
        s = get_status(port, path, h)
        with lock:
            results[port][s] += 1

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as ex:
        futs = [ex.submit(one, i, p) for i in range(count) for p in ports]
        for f in futs:
            f.result(timeout=120)
    return results


def near(a, b, slack=2):
    return abs(a - b) <= slack


STATIC = """
    limit_req_zone $binary_remote_addr zone=one:1m rate=10r/s;
    log_format st '$status $limit_req_status';
    server {
        listen 127.0.0.1:@port@;
        access_log @log@ st;
        location / {
            root @www@;
            %s
        }
    }
"""


@pytest.mark.parametrize("line", ["limit_req zone=one burst=5;",
                                  "limit_req zone=one burst=5 nodelay;",
                                  "limit_req zone=one burst=8 delay=3;"],
                         ids=["delay", "nodelay", "delay3"])
def test_burst_matches_nginx(pair, line):
    """10 r/s, a burst, 20 r/s offered for 5 s: ballast admits what nginx admits (within 2),
    and its $limit_req_status counts (PASSED, DELAYED, REJECTED) agree with nginx's."""
    p = pair(STATIC % line)
    got = fire([p.bport, p.nport], "/", 100, 0.05)
    b, n = got[p.bport], got[p.nport]
    assert set(b) <= {200, 503} and set(n) <= {200, 503}, (b, n)
    assert near(b[200], n[200]), "ballast %s, nginx %s" % (b, n)
    assert b[503] > 20 and n[503] > 20, (b, n)
    bs, ns = p.statuses("ballast"), p.statuses("nginx")
    for k in ("PASSED", "DELAYED", "REJECTED"):
        assert near(bs[k], ns[k]), "%s: ballast %s, nginx %s" % (k, bs, ns)
    if "nodelay" in line:
        assert bs["DELAYED"] == 0
    else:
        assert bs["DELAYED"] > 0


def test_two_workers_share_one_zone(pair):
    """worker_processes 2: the zone is one for the process, so a burst over many connections
    (spread over both workers by SO_REUSEPORT) admits what nginx's single zone admits."""
    p = pair(STATIC % "limit_req zone=one burst=5 nodelay;", workers=2)
    got = fire([p.bport, p.nport], "/", 40, 0.0)
    b, n = got[p.bport], got[p.nport]
    assert near(b[200], n[200], 1), "ballast %s, nginx %s" % (b, n)
    assert b[200] <= 8, b  # one zone per worker would admit about twice as many


def test_status_429_and_log_level(pair):
    body = """
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    limit_req_status 429;
    server {
        listen 127.0.0.1:@port@;
        location / { root @www@; limit_req zone=one; }
    }
"""
    p = pair(body)
    for port in (p.bport, p.nport):
        assert get_status(port, "/") == 200
        assert get_status(port, "/") == 429
    assert wait_for(lambda: "limiting requests" in p.ballast.stderr_text(), 2)
    assert "limiting requests" in p.nginx.error_log()


def test_empty_key_is_not_limited_and_map_geo_exempt(pair):
    """An empty key is not limited; map + geo exempt 127.0.0.0/8 as operators do in nginx."""
    body = """
    geo $limited { default 1; 127.0.0.0/8 0; }
    map $limited $exempt_key { 0 ""; 1 $binary_remote_addr; }
    limit_req_zone $exempt_key zone=ip:1m rate=1r/m;
    limit_req_zone $http_x_key zone=hdr:1m rate=1r/m;
    server {
        listen 127.0.0.1:@port@;
        location / { root @www@; limit_req zone=hdr; }
        location /exempt/ { root @www@; limit_req zone=ip; }
    }
"""
    p = pair(body)
    for port in (p.bport, p.nport):
        # no X-Key: empty key, never limited
        assert [get_status(port, "/") for _ in range(5)] == [200] * 5
        # with X-Key: the second is refused; another key is a bucket of its own
        assert get_status(port, "/", {"X-Key": "a"}) == 200
        assert get_status(port, "/", {"X-Key": "a"}) == 503
        assert get_status(port, "/", {"X-Key": "b"}) == 200
        # geo says 127.0.0.1 is internal: its key is empty
        assert [get_status(port, "/exempt/") for _ in range(5)] == [200] * 5


def test_zone_eviction_keeps_working(ballast):
    """A tiny zone (32k: 256 keys) fed 800 keys evicts the oldest, logs it once, and goes on
    limiting the keys it holds."""
    b = ballast("""
error_log @tmp@/error.log warn;
http {
    limit_req_zone $arg_k zone=tiny:32k rate=1r/m;
    server {
        listen 127.0.0.1:@port@;
        location / { root @tmp@; limit_req zone=tiny; }
    }
}
""", files={"index.html": "x\n"})
    statuses = collections.Counter()
    for i in range(800):
        statuses[get_status(b.port, "/?k=%d" % i)] += 1
    assert statuses == {200: 800}, statuses
    # the newest key is still held: refused; the oldest was evicted: admitted afresh
    assert get_status(b.port, "/?k=799") == 503
    assert get_status(b.port, "/?k=0") == 200
    log = open(os.path.join(b.dir, "error.log")).read()
    assert log.count('limit_req zone "tiny" is full') == 1, log[-2000:]


def test_dry_run(pair):
    body = """
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    log_format st '$status $limit_req_status';
    server {
        listen 127.0.0.1:@port@;
        access_log @log@ st;
        location / { root @www@; limit_req zone=one burst=1; limit_req_dry_run on; }
    }
"""
    p = pair(body)
    for port in (p.bport, p.nport):
        assert [get_status(port, "/") for _ in range(4)] == [200] * 4
    bs, ns = p.statuses("ballast"), p.statuses("nginx")
    assert bs == ns, (bs, ns)
    assert bs["REJECTED_DRY_RUN"] == 2 and bs["DELAYED_DRY_RUN"] == 1, bs


def test_reload_keeps_zone(ballast):
    """A reload that keeps the zone's name, key and size keeps its buckets."""
    conf = """
http {
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    server {
        listen 127.0.0.1:@port@;
        location / { root @tmp@; limit_req zone=one; }
        location = /gen { return 200 "%s"; }
    }
}
"""
    b = ballast(conf % "1", files={"index.html": "x\n"})
    assert get_status(b.port, "/") == 200
    assert get_status(b.port, "/") == 503
    with open(b.conf_path, "w") as f:
        f.write(b.conf_text.replace('return 200 "1"', 'return 200 "2"'))
    b.send_signal(signal.SIGHUP)
    assert wait_for(lambda: http_get(b.port, "/gen").text == "2", 5), "no reload"
    assert get_status(b.port, "/") == 503


# ---- limit_conn and max_inflight: held requests on a slow backend ------------------------

def hold(port, path, n):
    """Opens n requests at once and returns their statuses once all are answered."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
        return collections.Counter(ex.map(lambda _: get_status(port, path), range(n)))


def slow_backend(backend, seconds):
    b = backend("slow")

    def route(req, conn):
        time.sleep(seconds)
        body = b"slow\n"
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True
    b.route("/", route)
    return b


def test_limit_conn_matches_nginx(pair, backend):
    """Held requests (a backend that answers after 1 s): limit_conn 2 lets 2 of 6 through at
    once and answers the rest 503 at once, as nginx; the counts come back afterwards."""
    be = slow_backend(backend, 1.0 * SLOW)
    body = """
    limit_conn_zone $binary_remote_addr zone=addr:1m;
    log_format st '$status $limit_conn_status';
    server {
        listen 127.0.0.1:@port@;
        access_log @log@ st;
        location / { limit_conn addr 2; proxy_pass http://@backend@; }
    }
"""
    p = pair(body, backend=be.addr)
    for port in (p.bport, p.nport):
        got = hold(port, "/", 6)
        assert got == {200: 2, 503: 4}, (port, got)
        assert get_status(port, "/") == 200  # released
    bs, ns = p.statuses("ballast"), p.statuses("nginx")
    assert bs == ns, (bs, ns)


def test_limit_conn_status_and_dry_run(ballast, backend):
    be = slow_backend(backend, 1.0 * SLOW)
    b = ballast("""
http {
    limit_conn_zone $binary_remote_addr zone=addr:1m;
    limit_conn_status 429;
    server {
        listen 127.0.0.1:@port@;
        location /dry { limit_conn addr 1; limit_conn_dry_run on; proxy_pass http://%s; }
        location / { limit_conn addr 1; proxy_pass http://%s; }
    }
}
""" % (be.addr, be.addr))
    assert hold(b.port, "/", 3) == {200: 1, 429: 2}
    assert hold(b.port, "/dry", 3) == {200: 3}


def test_max_inflight_across_workers(ballast, backend):
    """max_inflight 3 over two workers: 3 of 8 held requests run, 5 get 503 at once; another
    location is not affected; the count comes back."""
    be = slow_backend(backend, 1.0 * SLOW)
    b = ballast("""
http {
    server {
        listen 127.0.0.1:@port@;
        location /slow { max_inflight 3; proxy_pass http://%s; }
        location /other { max_inflight 3; proxy_pass http://%s; }
    }
}
""" % (be.addr, be.addr), workers=2)
    results = {}

    def run(path, n):
        results[path] = hold(b.port, path, n)

    t1 = threading.Thread(target=run, args=("/slow", 8))
    t1.start()
    time.sleep(0.3 * SLOW)
    other = hold(b.port, "/other", 2)
    t1.join(30)
    assert results["/slow"] == {200: 3, 503: 5}, results
    assert other == {200: 2}
    assert hold(b.port, "/slow", 3) == {200: 3}


def test_client_closing_during_delay_ends_the_request(ballast, backend):
    """A client that goes away while limit_req delays it is not proxied afterwards: the request
    ends at once with 499, as nginx's ngx_http_test_reading ends it."""
    be = backend("a")
    b = ballast("""
http {
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    log_format st '$status $limit_req_status';
    server {
        listen 127.0.0.1:@port@;
        access_log @tmp@/access.log st flush=100ms;
        location / { limit_req zone=one burst=5; proxy_pass http://%s; }
    }
}
""" % be.addr)
    assert get_status(b.port, "/") == 200
    c = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    c.sendall(b"GET /delayed HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3 * SLOW)
    c.close()
    log = os.path.join(b.dir, "access.log")
    assert wait_for(lambda: os.path.exists(log) and "499 DELAYED" in open(log).read(), 5), \
        open(log).read() if os.path.exists(log) else "no log"
    assert len(be.requests) == 1
