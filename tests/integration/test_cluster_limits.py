"""Cluster-wide limit_req through Redis (issue 15, "Cluster-wide rate limits"): two ballast
processes share one `limit_req_zone ... sync=redis://` with a real redis-server on a free port.

Two nodes each sent 10 requests a second for a 10 r/s zone (burst=5 nodelay, so one node alone
admits all its own) admit about 10 a second in total, not 20. Redis stopped: each node limits
on its own (fail-open: about 20 a second in total), one error line per node; Redis back: the
cluster limit holds again. Counts have generous bounds; nothing is timed.
"""
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import SLOW, Conn, free_port, wait_for

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS),
                                reason="redis-server is not installed (scripts/install-deps.sh "
                                       "test)")

SECONDS = 4
RATE = 10


class Redis:
    def __init__(self, tmp):
        self.port = free_port()
        self.dir = str(tmp)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(self.ping, timeout=10 * SLOW), "redis-server did not start"

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()


def conf(redis_port, backend_port):
    return """
error_log @tmp@/error.log info;
http {
    limit_req_zone $binary_remote_addr zone=one:1m rate=%dr/s sync=redis://127.0.0.1:%d
                   sync_interval=100ms;
    server {
        listen 127.0.0.1:@port@;
        location / {
            limit_req zone=one burst=5 nodelay;
            proxy_pass http://127.0.0.1:%d;
        }
    }
}
""" % (RATE, redis_port, backend_port)


def load(nodes):
    """RATE requests a second to each node for SECONDS; the 200s over all nodes, and the 503s."""
    counts = {200: 0, 503: 0, "other": 0}
    lock = threading.Lock()

    def run(b):
        with Conn(b.port, timeout=5 * SLOW) as c:
            start = time.monotonic()
            for i in range(RATE * SECONDS):
                delay = start + i / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                st = c.request("GET", "/").status
                with lock:
                    counts[st if st in (200, 503) else "other"] += 1

    ts = [threading.Thread(target=run, args=(b,)) for b in nodes]
    for t in ts:
        t.start()
    for t in ts:
        t.join(SECONDS * 10 * SLOW)
    return counts


def log(b):
    return open(os.path.join(b.dir, "error.log")).read()


def test_two_nodes_share_the_rate(ballast, backend, redis):
    be = backend("be")
    nodes = [ballast(conf(redis.port, be.port)) for _ in range(2)]
    total = RATE * SECONDS * 2

    c = load(nodes)
    print("synced:", c)
    assert c["other"] == 0, c
    # one node's share alone would be RATE * SECONDS + burst; two unsynced nodes admit ~all
    assert c[200] <= RATE * SECONDS * 1.5 + 10, c
    assert c[200] >= RATE * SECONDS * 0.6, c

    # Redis goes: each node limits on its own (fail-open), one error line each.
    redis.stop()
    time.sleep(1.5)   # let the buckets drain and the nodes notice
    c = load(nodes)
    print("redis down:", c)
    assert c[200] >= total * 0.8, c
    for b in nodes:
        assert log(b).count("unreachable") == 1, log(b)[-2000:]

    # Redis returns: the nodes join again and the cluster limit holds.
    redis.start()
    for b in nodes:
        assert wait_for(lambda: "limiting with the cluster again" in log(b),
                        timeout=15 * SLOW), log(b)[-2000:]
    time.sleep(1.5)
    c = load(nodes)
    print("rejoined:", c)
    assert c[200] <= RATE * SECONDS * 1.5 + 10, c


def test_sync_config_errors(tmp_path):
    from conftest import run_ballast
    cases = [
        ("sync", "zone_sync"),
        ("sync=http://127.0.0.1:6379", "invalid sync"),
        ("sync=redis://redis.example:6379", "invalid sync"),
        ("sync_interval=100ms", "needs \"sync=redis://HOST:PORT\""),
        ("sync=redis://127.0.0.1 sync_interval=1ms", "invalid sync_interval"),
    ]
    for params, want in cases:
        p = tmp_path / "c.conf"
        p.write_text("http {\nlimit_req_zone $binary_remote_addr zone=z:1m rate=1r/s %s;\n"
                     "server { listen 127.0.0.1:%d; location / { limit_req zone=z; "
                     "return 200; } } }\n" % (params, free_port()))
        r = run_ballast(["-t", "-c", str(p)])
        assert r.returncode != 0 and want in r.stderr, (params, r.stderr)
        assert "c.conf:2" in r.stderr, r.stderr
