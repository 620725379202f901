"""adaptive_concurrency (issue 11, "Overload protection"): with a backend that slows down, the
learned limit comes down and the excess gets 503 at once; a fast backend is not limited."""
import http.client
import json
import threading
import time

import pytest

from conftest import SLOW

CONF = """
error_log @tmp@/error.log info;
admin { listen 127.0.0.1:@port_admin@; }
http {
    upstream a { server 127.0.0.1:@pb@; adaptive_concurrency min=2 max=40 latency_target=50ms; }
    server { listen 127.0.0.1:@port@; location / { proxy_pass http://a; } }
}"""


def delay_route(delay):
    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        c.sleep(delay["s"])
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True
    return fn


def burst(port, n):
    out = []
    lock = threading.Lock()

    def one():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * SLOW)
        try:
            c.request("GET", "/x")
            r = c.getresponse()
            r.read()
            st = r.status
        except Exception as e:
            st = repr(e)
        finally:
            c.close()
        with lock:
            out.append(st)

    ts = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60 * SLOW)
    return out


@pytest.mark.serial
def test_sheds_when_backend_slows(ballast, backend):
    delay = {"s": 0.005}
    be = backend("b")
    be.route("/", delay_route(delay))
    b = ballast(CONF, workers=2, pb=be.port)
    fast = []
    for _ in range(5):
        fast += burst(b.port, 10)
    assert fast.count(200) == len(fast), "a fast backend was limited: %r" % fast
    delay["s"] = 0.3
    slow = []
    deadline = time.monotonic() + 30 * SLOW
    while time.monotonic() < deadline and slow.count(503) == 0:
        slow += burst(b.port, 20)
    assert slow.count(503) > 0, "nothing shed with a 300 ms backend and a 50 ms target: %r" % (
        slow,)
    assert slow.count(200) > 0, slow
    assert set(slow) <= {200, 503}, slow
    log = open(b.dir + "/error.log").read()
    assert "adaptive_concurrency of upstream \"a\": limit" in log, log[-2000:]
    c = http.client.HTTPConnection("127.0.0.1", b.values["port_admin"], timeout=10 * SLOW)
    c.request("GET", "/api/upstreams/a")
    j = json.loads(c.getresponse().read())
    c.close()
    ac = j["adaptive_concurrency"]
    assert 2 <= ac["limit"] <= 40 and ac["shed"] >= slow.count(503), j


def test_config_errors(ballast):
    import subprocess
    import tempfile
    from conftest import BALLAST_BIN
    for text, want in [("adaptive_concurrency min=0;", "invalid parameter"),
                       ("adaptive_concurrency min=9 max=3;", "above max"),
                       ("adaptive_concurrency; adaptive_concurrency;", "duplicate")]:
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("http { upstream q { server 127.0.0.1:1; %s } "
                    "server { listen 127.0.0.1:1; location / { proxy_pass http://q; } } }\n"
                    % text)
        r = subprocess.run([BALLAST_BIN, "-t", "-c", f.name], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0 and want in r.stderr, (text, r.stderr)
