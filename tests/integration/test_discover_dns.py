"""`server NAME resolve` with `resolver` (issue 15, nginx 1.27 OSS meaning): a small UDP DNS
server run by the test answers A and AAAA questions from a table the test changes; backends
listen on other loopback addresses (127.0.0.2, 127.0.0.3) of one port.

The name is `localhost`, so that the system resolver finds an address when the config is first
loaded (as for any name in a server line); after that only the test's DNS server counts.
"""
import os
import socket
import struct
import threading
import time

import pytest

from conftest import SLOW, Conn, free_port, run_ballast, wait_for


class Dns:
    """Answers A/AAAA for names in self.records ({name: [ip, ...]}) with self.ttl; NXDOMAIN for
    other names; drops every question while self.silent. Counts questions."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self.records = {}
        self.ttl = 1
        self.silent = False
        self.questions = 0
        self.stopping = False
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopping:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.questions += 1
                if self.silent:
                    continue
                try:
                    self.sock.sendto(self._answer(msg), peer)
                except (ValueError, IndexError, struct.error, OSError):
                    pass

    def _answer(self, msg):
        qid, flags, qd = struct.unpack("!HHH", msg[:6])
        off, labels = 12, []
        while msg[off]:
            ln = msg[off]
            labels.append(msg[off + 1:off + 1 + ln].decode())
            off += 1 + ln
        qend = off + 5
        qtype = struct.unpack("!H", msg[off + 1:off + 3])[0]
        name = ".".join(labels).lower()
        question = msg[12:qend]
        ips = self.records.get(name)
        answers = b""
        n = 0
        for ip in ips or []:
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            if (qtype == 1 and fam == socket.AF_INET) or (qtype == 28 and fam == socket.AF_INET6):
                rd = socket.inet_pton(fam, ip)
                answers += struct.pack("!HHHIH", 0xC00C, qtype, 1, self.ttl, len(rd)) + rd
                n += 1
        rcode = 0 if ips is not None else 3
        hdr = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, n, 0, 0)
        return hdr + question + answers

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.t.join(5)


@pytest.fixture
def dns():
    d = Dns()
    yield d
    d.stop()


def conf(dns_port, port, extra=""):
    return """
error_log @tmp@/error.log info;
admin {
    listen 127.0.0.1:@port_admin@;
}
http {
    resolver 127.0.0.1:%d valid=300ms ipv6=off %s;
    resolver_timeout 300ms;
    upstream app {
        server localhost:%d resolve max_fails=0;
    }
    server {
        listen 127.0.0.1:@port@;
        location / {
            proxy_pass http://app;
        }
    }
}
""" % (dns_port, extra, port)


def who(b, n=20):
    seen = {}
    with Conn(b.port, timeout=5 * SLOW) as c:
        for _ in range(n):
            r = c.request("GET", "/")
            assert r.status == 200, r.status
            seen[r.header("X-Backend")] = seen.get(r.header("X-Backend"), 0) + 1
    return seen


def servers(b):
    import json
    with Conn(b.values["port_admin"], timeout=5 * SLOW) as c:
        r = c.request("GET", "/api/upstreams/app/servers")
        j = json.loads(r.body)
    return {s["server"]: s for s in (j["servers"] if isinstance(j, dict) else j)}


def until(pred, what, timeout=5.0):
    assert wait_for(pred, timeout=timeout * SLOW, interval=0.05), what


def log(b):
    return open(os.path.join(b.dir, "error.log")).read()


def test_resolve_follows_dns(ballast, backend, dns):
    port = free_port()
    one = backend("one", port=port, host="127.0.0.1")
    two = backend("two", port=port, host="127.0.0.2")
    three = backend("three", port=port, host="127.0.0.3")
    dns.records["localhost"] = ["127.0.0.2"]
    b = ballast(conf(dns.port, port))
    # The system resolver's answer at load (127.0.0.1) gives way to the DNS server's.
    until(lambda: who(b, 4) == {"two": 4}, "the resolver's address was not applied")

    # Two addresses: a server each. The operator marks the first down: it keeps that state
    # when the answer changes around it.
    dns.records["localhost"] = ["127.0.0.2", "127.0.0.3"]
    until(lambda: set(who(b, 10)) == {"two", "three"}, "the second address did not appear")
    import json
    with Conn(b.values["port_admin"], timeout=5 * SLOW) as c:
        ids = {s["server"]: s["id"] for s in servers(b).values()}
        r = c.request("PATCH", "/api/upstreams/app/servers/%d" % ids["127.0.0.2:%d" % port],
                      headers={"Content-Type": "application/json"},
                      body=json.dumps({"down": True}))
        assert r.status == 200, r.body
    dns.records["localhost"] = ["127.0.0.2", "127.0.0.3", "127.0.0.1"]
    until(lambda: "127.0.0.1:%d" % port in servers(b), "the third address did not appear")
    assert servers(b)["127.0.0.2:%d" % port]["state"] == "down"
    assert set(who(b, 12)) == {"three", "one"}

    # An address goes away.
    dns.records["localhost"] = ["127.0.0.3"]
    until(lambda: set(servers(b)) == {"127.0.0.3:%d" % port}, "the addresses were not removed")
    assert who(b, 6) == {"three": 6}

    # The resolver stops answering: the last addresses serve on, one error line; then the
    # name has no address (NXDOMAIN): kept as well.
    dns.silent = True
    until(lambda: "no resolver answers" in log(b), "the outage was not logged")
    assert who(b, 6) == {"three": 6}
    dns.silent = False
    del dns.records["localhost"]
    until(lambda: "has no address" in log(b), "the empty answer was not logged")
    assert who(b, 6) == {"three": 6}
    assert log(b).count("no resolver answers") == 1, log(b)[-2000:]
    dns.records["localhost"] = ["127.0.0.2"]
    until(lambda: who(b, 4) == {"two": 4}, "resolution did not resume")
    for x in (one, two, three):
        assert not x.errors


def test_resolve_config_errors(tmp_path):
    cases = [
        ("", "server localhost:1 resolve;", "no resolver defined to resolve \"localhost:1\""),
        ("resolver 127.0.0.1 valid=0;", "server 127.0.0.1:1;", "invalid value \"valid=0\""),
        ("resolver foo.example;", "server 127.0.0.1:1;", "in \"resolver\""),
        ("resolver 127.0.0.1 ipv4=off ipv6=off;", "server 127.0.0.1:1;", "ipv4=off"),
    ]
    for http, srv, want in cases:
        p = tmp_path / "c.conf"
        p.write_text("http {\n%s\nupstream u { %s }\nserver { listen 127.0.0.1:%d; location / "
                     "{ proxy_pass http://u; } } }\n" % (http, srv, free_port()))
        r = run_ballast(["-t", "-c", str(p)])
        assert r.returncode != 0 and want in r.stderr, (http, srv, r.stderr)
        assert "c.conf:" in r.stderr, r.stderr
