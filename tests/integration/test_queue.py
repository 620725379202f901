"""Upstream queues (issue 11, "Overload protection"): `queue N timeout=T` with max_conns. A
request that finds every server full waits in a FIFO shared by the workers and is served when
a slot frees; past the queue's length it gets 503 at once, past the timeout 503 with
Retry-After. Behaviour only: the bounds are generous, the timings go nowhere."""
import http.client
import json
import threading
import time

from conftest import SLOW


def slow_route(seconds):
    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        c.sleep(seconds)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True
    return fn


CONF = """
error_log @tmp@/error.log info;
admin { listen 127.0.0.1:@port_admin@; }
http {
    upstream q { server 127.0.0.1:@pb@ max_conns=1; queue 2 timeout=%s; }
    server { listen 127.0.0.1:@port@;
             location / { proxy_pass http://q; proxy_read_timeout 30s; } }
}"""


def get(port, path, out, i):
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * SLOW)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        out[i] = (r.status, body, r.getheader("Retry-After"), time.monotonic() - t0)
    except Exception as e:  # recorded for the assertion message
        out[i] = ("error", repr(e), None, time.monotonic() - t0)
    finally:
        c.close()


def start_at(port, path, out, i):
    t = threading.Thread(target=get, args=(port, path, out, i), daemon=True)
    t.start()
    return t


def test_queue_waits_then_overflows(ballast, backend):
    """max_conns=1, queue 2: the 1st is served, the 2nd and 3rd wait and are served in turn,
    the 4th finds the queue full and gets 503 at once."""
    be = backend("b")
    be.route("/", slow_route(0.4 * SLOW))
    b = ballast(CONF % "20s", workers=2, pb=be.port)
    out = {}
    threads = [start_at(b.port, "/r1", out, 1)]
    assert be.wait_requests(1, 5 * SLOW), "the first request never reached the backend"
    threads += [start_at(b.port, "/r%d" % i, out, i) for i in (2, 3)]
    time.sleep(0.15 * SLOW)  # the 2nd and 3rd are queued by now (the 1st holds 0.4 s)
    get(b.port, "/r4", out, 4)
    assert out[4][0] == 503 and out[4][2] == "1", out[4]
    for t in threads:
        t.join(30 * SLOW)
    for i in (1, 2, 3):
        assert out[i][:2] == (200, b"ok"), (i, out)
    assert sorted(r.path for r in be.requests) == ["/r1", "/r2", "/r3"]
    assert out[4][3] < out[3][3], "the overflowing request waited: %r" % out
    c = http.client.HTTPConnection("127.0.0.1", b.values["port_admin"], timeout=10 * SLOW)
    c.request("GET", "/api/upstreams/q")
    q = json.loads(c.getresponse().read())["queue"]
    c.close()
    assert (q["waiting"], q["size"], q["overflows"]) == (0, 2, 1), q


def test_queue_timeout(ballast, backend):
    """A waiter no slot reaches within timeout= gets 503 with Retry-After; the held request is
    served in the end."""
    be = backend("b")
    be.route("/", slow_route(4 * SLOW))
    b = ballast(CONF % "1s", workers=2, pb=be.port)
    out = {}
    t1 = start_at(b.port, "/hold", out, 1)
    assert be.wait_requests(1, 5 * SLOW)
    get(b.port, "/late", out, 2)
    assert out[2][0] == 503 and out[2][2] == "1", out
    assert 2 not in out or out[2][3] < 4 * SLOW, out
    t1.join(30 * SLOW)
    assert out[1][:2] == (200, b"ok"), out
    assert [r.path for r in be.requests] == ["/hold"]


def test_queue_client_gone(ballast, backend):
    """A client that leaves while queued frees its place: the next waiter is served."""
    be = backend("b")
    be.route("/", slow_route(0.5 * SLOW))
    b = ballast(CONF % "20s", workers=1, pb=be.port)
    out = {}
    t1 = start_at(b.port, "/a", out, 1)
    assert be.wait_requests(1, 5 * SLOW)
    c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=5)
    c.request("GET", "/gone")
    time.sleep(0.1)
    c.close()
    t3 = start_at(b.port, "/b", out, 3)
    t1.join(30 * SLOW)
    t3.join(30 * SLOW)
    assert out[1][0] == 200 and out[3][0] == 200, out
    assert "/b" in [r.path for r in be.requests]


def test_queue_config_errors(ballast):
    import subprocess
    from conftest import BALLAST_BIN
    import tempfile
    for text, want in [("queue 0;", "invalid queue length"), ("queue 2 timeout=x;",
                                                               "invalid parameter"),
                       ("queue 2; queue 3;", "duplicate"),
                       ("stream", "not supported in a stream upstream")]:
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            if text == "stream":
                f.write("stream { upstream q { server 127.0.0.1:1; queue 2; } "
                        "server { listen 127.0.0.1:1; proxy_pass q; } }\n")
            else:
                f.write("http { upstream q { server 127.0.0.1:1 max_conns=1; %s } "
                        "server { listen 127.0.0.1:1; location / { proxy_pass http://q; } } }\n"
                        % text)
        r = subprocess.run([BALLAST_BIN, "-t", "-c", f.name], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0 and want in r.stderr, (text, r.stderr)


def test_retry_waits_in_queue(ballast, backend):
    """A retry that finds every other server full waits in the queue too: the dead server
    refuses, the busy one serves the request once its slot frees."""
    from conftest import closed_port
    be = backend("b")
    be.route("/", slow_route(0.5 * SLOW))
    b = ballast("""
error_log @tmp@/error.log info;
http {
    upstream q { server 127.0.0.1:@pd@ max_fails=0; server 127.0.0.1:@pb@ max_conns=1;
                 queue 4 timeout=20s; }
    server { listen 127.0.0.1:@port@; location / { proxy_pass http://q; } }
}""", workers=1, pb=be.port, pd=closed_port())
    out = {}
    t1 = start_at(b.port, "/first", out, 1)
    assert be.wait_requests(1, 5 * SLOW)
    get(b.port, "/second", out, 2)
    t1.join(30 * SLOW)
    assert out[1][:2] == (200, b"ok") and out[2][:2] == (200, b"ok"), out
    assert [r.path for r in be.requests] == ["/first", "/second"]


def test_queue_across_reload(ballast, backend):
    """A reload carries the queue: requests queued under either configuration wait in one
    FIFO, and a slot freed by either generation's requests serves the oldest."""
    import signal
    be = backend("b")
    be.route("/", slow_route(0.6 * SLOW))
    b = ballast(CONF % "20s", workers=2, pb=be.port)
    out = {}
    ts = [start_at(b.port, "/old1", out, 1)]
    assert be.wait_requests(1, 5 * SLOW)
    ts.append(start_at(b.port, "/old2", out, 2))
    time.sleep(0.1 * SLOW)
    b.send_signal(signal.SIGHUP)
    time.sleep(0.3 * SLOW)
    ts.append(start_at(b.port, "/new3", out, 3))
    for t in ts:
        t.join(40 * SLOW)
    assert [out[i][0] for i in (1, 2, 3)] == [200, 200, 200], out
    assert sorted(r.path for r in be.requests) == ["/new3", "/old1", "/old2"]
