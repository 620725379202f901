"""Health-aware DNS (`dns { listen ... udp; zone ...; record ... upstream=...; }`): dig sees the
addresses of an upstream's healthy servers only, while a server is taken down (its port closed,
active checks notice) and brought back; NXDOMAIN, NODATA, REFUSED and the SOA as RFC 1034/2308
say; malformed datagrams from raw sockets are dropped or answered FORMERR/NOTIMP/BADVERS and the
server keeps answering; config errors name file:line."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile

import pytest

from conftest import BALLAST_BIN, SLOW, free_port, wait_for

DIG = shutil.which("dig")
pytestmark = pytest.mark.skipif(DIG is None, reason="dig (Debian dnsutils) is not installed")

CONF = """
error_log stderr notice;
http {
    upstream sites {
        server 127.0.0.1:%(p1)d;
        server 127.0.0.2:%(p2)d;
        server [::1]:%(p3)d;
        server 127.0.0.3:%(p4)d backup;
        check interval=100 rise=1 fall=1 timeout=300 type=tcp;
    }
}
dns {
    listen 127.0.0.1:%(dport)d udp;
    zone Example.TEST;
    ttl 7s;
    record www A upstream=sites;
    record www AAAA upstream=sites;
    record api.eu A upstream=sites;
}
"""


def udp_free_port():
    for _ in range(50):
        p = free_port()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free UDP port")


class Site:
    """A TCP listener that active checks (type=tcp) find up while it listens."""

    def __init__(self, host, family=socket.AF_INET):
        self.host, self.family = host, family
        self.port = free_port()
        self.sock = None
        self.up()

    def up(self):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(64)
        self.sock = s

    def down(self):
        if self.sock:
            self.sock.close()
            self.sock = None


@pytest.fixture
def sites():
    made = []

    def make(host, family=socket.AF_INET):
        s = Site(host, family)
        made.append(s)
        return s

    yield make
    for s in made:
        s.down()


def start(ballast, sites):
    a, b = sites("127.0.0.1"), sites("127.0.0.2")
    c = sites("::1", socket.AF_INET6)
    d = sites("127.0.0.3")
    dport = udp_free_port()
    bl = ballast(CONF % {"p1": a.port, "p2": b.port, "p3": c.port, "p4": d.port,
                         "dport": dport}, wait=False)
    bl.dport = dport
    assert wait_for(lambda: dig(bl, "www.example.test", "A", short=True) is not None,
                    5 * SLOW), bl.stderr_text()[-2000:]
    return bl, a, b, c, d


def dig(bl, name, qtype="A", short=False, extra=()):
    """dig's answer: sorted +short lines, or the whole text; None when nothing came."""
    args = [DIG, "@127.0.0.1", "-p", str(bl.dport), "+norec", "+tries=1",
            "+time=%d" % int(2 * SLOW)] + list(extra) + [name, qtype]
    if short:
        args.insert(1, "+short")
    r = subprocess.run(args, capture_output=True, text=True, timeout=10 * SLOW)
    if "connection timed out" in r.stdout or "no servers could be reached" in r.stdout:
        return None
    if short:
        return sorted(r.stdout.split())
    return r.stdout


def status(text):
    return text.split("status: ", 1)[1].split(",", 1)[0]


def flags(text):
    return text.split(";; flags: ", 1)[1].split(";", 1)[0].split()


def test_answers_follow_health(ballast, sites):
    """A site taken down leaves the answers, comes back when it listens again; AAAA likewise;
    with every primary down the backup is answered; then NODATA."""
    bl, a, b, c, d = start(ballast, sites)
    both = ["127.0.0.1", "127.0.0.2"]
    assert wait_for(lambda: dig(bl, "www.example.test", short=True) == both, 5 * SLOW)
    assert dig(bl, "WWW.Example.Test", "AAAA", short=True) == ["::1"]
    b.down()
    assert wait_for(lambda: dig(bl, "www.example.test", short=True) == ["127.0.0.1"],
                    5 * SLOW), bl.stderr_text()[-2000:]
    b.up()
    assert wait_for(lambda: dig(bl, "www.example.test", short=True) == both, 5 * SLOW)
    c.down()
    assert wait_for(lambda: dig(bl, "www.example.test", "AAAA", short=True) == [], 5 * SLOW)
    # Every primary down: the backup's address.
    a.down()
    b.down()
    assert wait_for(lambda: dig(bl, "www.example.test", short=True) == ["127.0.0.3"], 5 * SLOW)
    d.down()
    assert wait_for(lambda: dig(bl, "www.example.test", short=True) == [], 5 * SLOW)
    text = dig(bl, "www.example.test")
    assert status(text) == "NOERROR" and "ANSWER: 0" in text and "SOA" in text, text
    a.up()
    assert wait_for(lambda: dig(bl, "www.example.test", short=True) == ["127.0.0.1"], 5 * SLOW)


def test_ttl_flags_and_rotation(ballast, sites):
    bl = start(ballast, sites)[0]
    assert wait_for(lambda: dig(bl, "www.example.test", short=True) ==
                    ["127.0.0.1", "127.0.0.2"], 5 * SLOW)
    text = dig(bl, "www.example.test", extra=["+nocmd", "+noall", "+answer", "+comments"])
    assert "\t7\tIN\tA\t127.0.0.1" in text, text
    assert "aa" in flags(text) and "ra" not in flags(text), text
    firsts = set()
    for _ in range(4):
        out = subprocess.run([DIG, "@127.0.0.1", "-p", str(bl.dport), "+short", "+norec",
                              "www.example.test", "A"], capture_output=True, text=True,
                             timeout=10 * SLOW).stdout.split()
        firsts.add(out[0])
    assert firsts == {"127.0.0.1", "127.0.0.2"}, firsts


def test_rcodes(ballast, sites):
    bl = start(ballast, sites)[0]
    t = dig(bl, "nope.example.test")
    assert status(t) == "NXDOMAIN" and "aa" in flags(t), t
    assert "example.test.\t\t7\tIN\tSOA\tns.example.test. hostmaster.example.test." in t, t
    # A name with records below it exists (RFC 8020): NODATA, not NXDOMAIN.
    t = dig(bl, "eu.example.test")
    assert status(t) == "NOERROR" and "ANSWER: 0" in t and "AUTHORITY: 1" in t, t
    t = dig(bl, "www.example.test", "MX")
    assert status(t) == "NOERROR" and "ANSWER: 0" in t and "SOA" in t, t
    t = dig(bl, "example.test", "SOA")
    assert status(t) == "NOERROR" and "ANSWER: 1" in t, t
    t = dig(bl, "api.eu.example.test", "AAAA")
    assert status(t) == "NOERROR" and "ANSWER: 0" in t, t
    # Outside the zone, or another class: refused, no recursion offered.
    t = dig(bl, "www.example.com")
    assert status(t) == "REFUSED" and "aa" not in flags(t) and "ra" not in flags(t), t
    t = dig(bl, "www.example.test", extra=["-c", "CH"])
    assert status(t) == "REFUSED", t
    # A recursive query is answered the same way, without recursion.
    r = subprocess.run([DIG, "@127.0.0.1", "-p", str(bl.dport), "+rec", "+tries=1",
                        "www.example.com", "A"], capture_output=True, text=True,
                       timeout=10 * SLOW).stdout
    assert status(r) == "REFUSED" and "rd" in flags(r) and "ra" not in flags(r), r


def query(name="www.example.test", qid=0x4242, qtype=1, flags_=0x0000, qd=1, tail=b""):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", qid, flags_, qd, 0, 0, 0) + q + struct.pack(">HH", qtype, 1) \
        + tail


def raw(bl, data, timeout=0.5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout * SLOW)
    try:
        s.sendto(data, ("127.0.0.1", bl.dport))
        return s.recvfrom(65535)[0]
    except socket.timeout:
        return None
    finally:
        s.close()


def rcode(answer):
    return answer[3] & 0x0f


def test_malformed_queries(ballast, sites):
    bl = start(ballast, sites)[0]
    ok = raw(bl, query())
    assert ok is not None and rcode(ok) == 0 and ok[:2] == b"\x42\x42" and ok[2] & 0x80, ok
    # Nothing worth an answer: shorter than a header, empty, or a response (QR set).
    assert raw(bl, b"\x12\x34\x01") is None
    assert raw(bl, b"") is None
    assert raw(bl, query(flags_=0x8000)) is None
    # FORMERR, header only, id echoed.
    for bad in (query(qd=2), query(qd=0),
                query()[:-3],                                     # question cut short
                query(tail=b"junk"),                              # bytes after the question
                query()[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01",  # pointer in the question
                query()[:12] + b"\x40abc\x00\x00\x01\x00\x01",     # extended label type
                query()[:12] + b"\x05ab\x00\x01\x00\x01",          # label past the end
                query()[:12] + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01"):  # > 255
        got = raw(bl, bad)
        assert got is not None and rcode(got) == 1 and got[:2] == bad[:2], (bad, got)
        assert got[4:12] == b"\x00" * 8, got
    # Another opcode (STATUS): NOTIMP.
    got = raw(bl, query(flags_=0x1000))
    assert got is not None and rcode(got) == 4, got
    # EDNS: two OPT records are malformed; version 1 gets BADVERS (16: 1 in the OPT's TTL).
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    two = bytearray(query(tail=opt + opt))
    two[11] = 2
    got = raw(bl, bytes(two))
    assert got is not None and rcode(got) == 1, got
    v1 = bytearray(query(tail=b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00"))
    v1[11] = 1
    got = raw(bl, bytes(v1))
    assert got is not None and rcode(got) == 0 and got[-11:-8] == b"\x00\x00\x29", got
    assert got[-6] == 1, got
    # Random garbage of every length up to 64: never a crash, never an answer but FORMERR.
    rnd = os.urandom(2048)
    for n in range(64):
        data = bytearray(rnd[n * 30:n * 30 + n])
        if len(data) > 2:
            data[2] &= 0x7f
        got = raw(bl, bytes(data), timeout=0.05)
        assert got is None or got[2] & 0x80, got
    assert raw(bl, query()) is not None, bl.stderr_text()[-2000:]


def check(conf):
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(conf)
    try:
        r = subprocess.run([BALLAST_BIN, "-t", "-c", f.name], capture_output=True, text=True,
                           timeout=30)
        return r.returncode, r.stderr, f.name
    finally:
        os.unlink(f.name)


@pytest.mark.parametrize("body,msg", [
    ("listen 127.0.0.1:5353 udp; record www A upstream=sites;", '"dns" block has no "zone"'),
    ("zone example.test; record www A upstream=sites;", '"dns" block has no "listen"'),
    ("listen 127.0.0.1:5353; zone example.test;", 'DNS over TCP is not supported'),
    ("listen 127.0.0.1:5353 udp; zone example.test; record www MX upstream=sites;",
     'record type "MX" is not supported'),
    ("listen 127.0.0.1:5353 udp; zone example.test; record www A upstream=nosuch;",
     'no upstream "nosuch" for record "www"'),
    ("listen 127.0.0.1:5353 udp; zone example.test; record www AAAA upstream=sites;",
     'upstream "sites" has no IPv6 server for record "www AAAA"'),
    ("listen 127.0.0.1:5353 udp; zone example.test; record www A upstream=sites;\n"
     "record www A upstream=sites;", 'duplicate record "www A"'),
    ("listen 127.0.0.1:5353 udp; zone exa..mple; ", 'invalid zone name "exa..mple"'),
    ("listen 127.0.0.1:5353 udp; zone example.test; ttl 1.5s;", 'invalid value "1.5s"'),
    ("listen 127.0.0.1:5353 udp; zone example.test; record w/w A upstream=sites;",
     'invalid record name "w/w"'),
])
def test_config_errors(body, msg):
    rc, err, name = check("http { upstream sites { server 127.0.0.1:1; } }\ndns {\n%s\n}\n"
                          % body)
    assert rc == 1 and msg in err and name + ":" in err, err


def test_dns_only_config_and_reload(ballast, sites):
    """A config with nothing but an upstream and a dns block serves; a reload that changes
    the TTL answers with the new one on the same socket."""
    a = sites("127.0.0.1")
    dport = udp_free_port()
    conf = ("error_log stderr notice;\n"
            "http { upstream s { server 127.0.0.1:%d; check interval=100 rise=1 fall=1 "
            "type=tcp; } }\n"
            "dns { listen 127.0.0.1:%d udp; zone t.test; ttl %%s; record @ A upstream=s; }\n"
            % (a.port, dport))
    bl = ballast(conf % "3s", wait=False)
    bl.dport = dport
    assert wait_for(lambda: dig(bl, "t.test", short=True) == ["127.0.0.1"], 5 * SLOW), \
        bl.stderr_text()[-2000:]
    with open(bl.conf_path, "w") as f:
        f.write("worker_processes 1;\n" + conf % "9s")
    os.kill(bl.proc.pid, signal.SIGHUP)
    assert wait_for(lambda: "\t9\tIN\tA\t" in (dig(bl, "t.test", extra=["+noall", "+answer"])
                                               or ""), 5 * SLOW), bl.stderr_text()[-2000:]
