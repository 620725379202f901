"""Keep-alive clients across many reloads (docs/operations.md, "Reload"): a request finishes
on its generation, a keep-alive connection moves to the new generation between requests, and
no request goes unanswered. Clients that are idle, mid-request (head sent in two parts, a body
still coming, a slow upstream) and sending right at the switch (back to back, pipelined) hold
their connections, and others connect anew for each request (the listening socket is kept),
while reloads come by SIGHUP, by POST /api/reload and (in test_discover_etcd.py) by etcd
changes.

A close with no answer, a reset, a cut response or an unasked-for `Connection: close` is a
failure: no listener changes here, so nothing may be closed."""
import os
import random
import re
import signal
import threading
import time

from conftest import (ASAN, SLOW, TSAN, Conn, ConnectionClosed, IncompleteResponse, render,
                      wait_for)

CONF = """
worker_processes 2;
error_log @tmp@/error.log notice;
admin {
    listen 127.0.0.1:@port_admin@;
}
http {
    upstream app {
%(servers)s
        keepalive 16;
    }
    server {
        listen 127.0.0.1:@port@;
        location / {
            proxy_pass http://app;
        }
    }
}
"""

SETS = (["@a@"], ["@a@", "@b@"], ["@b@ weight=2", "@a@"], ["@b@"])


def conf(servers):
    return CONF % {"servers": "\n".join("        server %s;" % s for s in servers)}


class Clients:
    """One thread per kept connection, each with its own way of sending; every request must
    get a whole 200 on the same connection. `ok` counts answers, `failures` lists the rest."""

    KINDS = ("idle", "busy", "split", "body", "slow", "pipeline", "fresh")

    def __init__(self, port, per_kind=2, keepalive_requests=1000):
        self.port = port
        self.keepalive_requests = keepalive_requests
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.threads = [threading.Thread(target=self._run, args=(k, i), daemon=True)
                        for k in self.KINDS for i in range(per_kind)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15 * SLOW)

    def _check(self, kind, n, r, on_conn):
        """on_conn: the request's number on its connection (keepalive_requests ends it)."""
        if r.status != 200 or r.body != b"x%d" % n:
            raise AssertionError("status %d body %r" % (r.status, r.body[:60]))
        if r.has_token("Connection", "close") != (kind == "fresh" or
                                                  on_conn >= self.keepalive_requests):
            raise AssertionError("Connection: close unasked, or not when asked")
        with self.lock:
            self.ok += 1

    def _run(self, kind, i):
        rnd = random.Random("%s%d" % (kind, i))
        c = Conn(self.port, timeout=10)
        n = on_conn = 0
        try:
            while not self.stop_ev.is_set():
                n += 1
                q = "/?text=x%d" % n
                head = "GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % q
                if kind == "idle":
                    # idle between requests, often at the moment of a switch
                    time.sleep(rnd.uniform(0, 0.02))
                    c.send(head)
                elif kind == "busy":
                    c.send(head)
                elif kind == "split":
                    # the head arrives in two parts around a switch
                    cut = rnd.randint(1, len(head) - 1)
                    c.send(head[:cut])
                    time.sleep(rnd.uniform(0, 0.01))
                    c.send(head[cut:])
                elif kind == "body":
                    body = "b" * 64
                    c.send("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                           % (q, len(body), body[:20]))
                    time.sleep(rnd.uniform(0, 0.01))
                    c.send(body[20:])
                elif kind == "slow":
                    # the upstream answers late: the request runs while generations change
                    c.send("GET %s&delay=0.02 HTTP/1.1\r\nHost: x\r\n\r\n" % q)
                elif kind == "fresh":
                    # a connection per request: the listening socket is kept, never reopened
                    c.close()
                    c = Conn(self.port, timeout=10)
                    c.send("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % q)
                elif kind == "pipeline":
                    # in pairs: the 1000th request (keepalive_requests) is a pair's second
                    n += 1
                    c.send(head + "GET /?text=x%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
                    on_conn += 1
                    self._check(kind, n - 1, c.read_response("GET"), on_conn)
                on_conn += 1
                self._check(kind, n, c.read_response("POST" if kind == "body" else "GET"),
                            on_conn)
                if kind == "fresh":
                    on_conn = 0
                elif on_conn >= self.keepalive_requests:
                    c.close()
                    c = Conn(self.port, timeout=10)
                    on_conn = 0
        except (ConnectionClosed, IncompleteResponse, OSError, ValueError,
                AssertionError) as e:
            with self.lock:
                self.failures.append("%s%d request %d: %r" % (kind, i, n, e))
        finally:
            c.close()

    def wait_more(self, n, timeout=10.0):
        start = self.ok
        assert wait_for(lambda: self.ok >= start + n or self.failures, timeout * SLOW), \
            "clients stalled: %d answers" % self.ok


def log_tail(b, pos):
    path = os.path.join(b.dir, "error.log")
    with open(path, "rb") as f:
        f.seek(pos)
        data = f.read()
    return data.decode("utf-8", "replace"), pos + len(data)


def wait_serves(b, number, pos):
    """Waits (bounded) for 'generation N serves on every worker' after pos in the error log."""
    line = "generation %d serves on every worker" % number
    seen = ""

    def done():
        nonlocal seen, pos
        text, pos = log_tail(b, pos)
        seen += text
        assert "reload failed" not in seen, seen[-2000:]
        return line in seen

    assert wait_for(done, 10 * SLOW, 0.002), "no %r in the error log:\n%s" % (line, seen[-2000:])
    return pos


def rewrite(b, servers):
    with open(b.conf_path, "w") as f:
        f.write(render(conf(servers), b.values))


def api_reload(b):
    with Conn(b.values["port_admin"], timeout=10) as c:
        r = c.request("POST", "/api/reload")
        assert r.status == 200, r.body
        return r.json()["generation"]


def test_keepalive_clients_across_many_reloads(ballast, backend):
    a, bb = backend("a"), backend("b")
    b = ballast(conf(SETS[0]), workers=None, a=a.addr, b=bb.addr)
    rounds = 16 if ASAN or TSAN else 60
    gen, pos = 1, 0
    with Clients(b.port) as clients:
        clients.wait_more(30)
        for i in range(rounds):
            rewrite(b, SETS[(i + 1) % len(SETS)])
            if i % 2:
                b.send_signal(signal.SIGHUP)
                gen += 1
            else:
                gen = api_reload(b)
            pos = wait_serves(b, gen, pos)
            # some requests on the new generation before the next one
            clients.wait_more(len(clients.threads))
            if clients.failures:
                break
        clients.stop()
    assert clients.failures == [], clients.failures[:10]
    print("%d answers over %d reloads" % (clients.ok, rounds))
    assert re.search(r"generation %d serves on every worker" % gen,
                     open(os.path.join(b.dir, "error.log")).read())
