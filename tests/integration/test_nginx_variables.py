"""Variables from split_clients and geo blocks, side by side with nginx 1.22: the same http { }
text runs in both and every request must get the same answer. split_clients is checked over
10 000 keys (every key in the same bucket as nginx, the shares within 1% of the percentages),
geo over IPv4 and IPv6 networks, the longest prefix winning."""
import http.client
import os
import socket

import pytest

from conftest import SLOW, Ballast, free_port, render, run_ballast, wait_for
from nginx_ref import Nginx
from test_nginx_routing import _echo

VARS = r"""
split_clients "$http_x_key" $variant { 10% v2; 0.5% v3; * v1; }
split_clients "k${arg_k}x$http_user_agent" $part { 33.33% a; 33.33% b; }
split_clients "$remote_addr" $whole { 100% all; }
geo $g { default none; 127.0.0.0/8 loop; 127.0.0.1 one; 10.0.0.0/8 ten; }
geo $arg_ip $gip {
    default dflt;
    0.0.0.0/1 low;
    10.0.0.0/8 ten;
    10.1.2.0/24 ten12;
    10.1.2.3 host;
    10.1.3.0/24 gone;
    delete 10.1.3.0/24;
    10.1.4.0/24 first;
    10.1.4.0/24 second;
    192.168.0.0/16 c;
    2001:db8::/32 doc;
    2001:db8:1::/48 doc1;
    2001:db8:1:2::1 doc-host;
    ::/0 any6;
}
server {
    listen 127.0.0.1:@port@;
    location /split { return 200 "$variant"; }
    location /part { return 200 "[$part]"; }
    location /whole { return 200 "[$whole]"; }
    location /geo { return 200 "$g"; }
    location /gip { return 200 "[$gip] [$gip]"; }
}
"""

GEO_IPS = ["10.1.2.3", "10.1.2.4", "10.9.9.9", "10.1.3.7", "10.1.4.1", "192.168.7.7",
           "11.0.0.1", "200.1.1.1", "255.255.255.255", "0.0.0.0", "2001:db8:1::5",
           "2001:db8:2::5", "2001:db8:1:2::1", "2001:db8:1:2::2", "fe80::1", "::1",
           "::ffff:10.1.2.3", "junk", "10.1.2.3.4", "", "10.1.2.3/24"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("variables")
    nport = free_port()
    n = Nginx(str(base / "nginx"), render(VARS, {"port": nport}), access_log_off=True)
    b = None
    try:
        if not n.started(nport):
            pytest.fail("nginx did not start: %s" % n.error_log())
        b = Ballast(str(base / "ballast"), "http {\n%s\n}\n" % VARS, values={})
        b.start()
        yield b, n, nport
    finally:
        n.stop()
        problems = b.finish() if b else []
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def answers(port, requests):
    """(status, body) for each (path, headers), over one keep-alive connection."""
    out = []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    try:
        for path, headers in requests:
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            out.append((r.status, r.read().decode()))
    finally:
        c.close()
    return out


def test_split_clients_buckets_equal_nginx_over_10000_keys(pair):
    b, _, nport = pair
    keys = ["user-%d-%s" % (i, "x" * (i % 7)) for i in range(10000)]
    reqs = [("/split", {"X-Key": k}) for k in keys]
    got, want = answers(b.port, reqs), answers(nport, reqs)
    diff = [(k, g, w) for k, g, w in zip(keys, got, want) if g != w]
    assert not diff, "%d keys differ, first: %r" % (len(diff), diff[:5])
    shares = {v: sum(1 for s, body in got if body == v) / len(keys) for v in ("v1", "v2", "v3")}
    assert abs(shares["v2"] - 0.10) < 0.01, shares
    assert abs(shares["v3"] - 0.005) < 0.01, shares
    assert abs(shares["v1"] - 0.895) < 0.01, shares


def test_split_without_star_and_full_share(pair):
    b, _, nport = pair
    reqs = [("/part?k=%d" % i, {"User-Agent": "ua/%d" % (i % 13)}) for i in range(300)]
    reqs += [("/whole", {}), ("/split", {})]  # no X-Key: the empty key has a bucket too
    got, want = answers(b.port, reqs), answers(nport, reqs)
    assert got == want
    assert {body for _, body in got[:300]} == {"[a]", "[b]", "[]"}


@pytest.mark.parametrize("ip", GEO_IPS)
def test_geo_same_as_nginx(pair, ip):
    b, _, nport = pair
    req = [("/gip?ip=" + ip, {})]
    assert answers(b.port, req) == answers(nport, req)


def test_geo_client_address(pair):
    b, _, nport = pair
    assert answers(b.port, [("/geo", {})]) == answers(nport, [("/geo", {})]) == [(200, "one")]


BAD = [
    ('split_clients "$uri" $s { 60% a; 50% b; }', "percent total is greater than 100%"),
    ('split_clients "$uri" $s { 50% a; * b; 10% c; }', "percent total is greater than 100%"),
    ('split_clients "$uri" $s { abc a; }', 'invalid percent value "abc"'),
    ('split_clients "$uri" $s { 0% a; }', 'invalid percent value "0%"'),
    ('split_clients "$uri" $s { 1.234% a; }', 'invalid percent value "1.234%"'),
    ('split_clients "$uri" $s { 10% a b; }', "invalid number of parameters"),
    ('split_clients "$uri" $uri { 10% a; }', 'the built-in variable "$uri"'),
    ("geo $g { 10.0.0.0/33 x; }", 'invalid network "10.0.0.0/33"'),
    ("geo $g { nonsense x; }", 'invalid network "nonsense"'),
    ("geo $g { ranges; }", '"ranges" inside "geo" is not supported'),
    ("geo $g { proxy 10.0.0.0/8; }", '"proxy" inside "geo" is not supported'),
    ("geo $g { default a; } geo $g { default b; }", 'duplicate "g" variable'),
]


@pytest.mark.parametrize("text,msg", BAD, ids=[m for _, m in BAD])
def test_bad_blocks_refused(tmp_path, text, msg):
    conf = tmp_path / "b.conf"
    conf.write_text("http {\n%s\nserver { listen 127.0.0.1:%d; }\n}\n" % (text, free_port()))
    r = run_ballast(["-t", "-c", str(conf)])
    assert r.returncode != 0
    assert msg in r.stderr and "b.conf:" in r.stderr, r.stderr


def test_geo_include(tmp_path):
    (tmp_path / "nets.conf").write_text("10.0.0.0/8 ten;\n10.1.0.0/16 ten1;\n")
    port = free_port()
    b = Ballast(str(tmp_path / "b"), "http { geo $arg_ip $g { default d; include %s; }\n"
                "server { listen 127.0.0.1:%d; location / { return 200 $g; } } }\n"
                % (tmp_path / "nets.conf", port))
    b.start()
    try:
        assert answers(port, [("/?ip=10.1.2.3", {}), ("/?ip=10.2.0.1", {}), ("/?ip=9.0.0.1", {})]) \
            == [(200, "ten1"), (200, "ten"), (200, "d")]
    finally:
        assert not b.finish()


# ---- proxy_pass http://$variable: the value names an upstream group (grey releases)

PROXY = r"""
upstream v1 { server 127.0.0.1:@b1@; }
upstream v2 { server 127.0.0.1:@b2@; }
split_clients "$http_x_key" $variant { 20% v2; * v1; }
server {
    listen 127.0.0.1:@port@;
    location /s/ { proxy_pass http://$variant; }
    location /port/ { proxy_pass http://$variant:@b1@; }
    location /u/ { proxy_pass http://$variant/fixed/$arg_x; }
    location /to/ { proxy_pass http://$arg_to; }
    location ~ ^/re/(\w+)/(.*)$ { proxy_pass http://$1/r/$2; }
    location /lit/ { proxy_pass http://127.0.0.1:@b1@; }
}
"""

PROXY_CASES = [
    ("/s/a?q=1", {"X-Key": "k1"}),
    ("/s/a?q=1", {"X-Key": "k2"}),
    ("/s/a?q=1", {"X-Key": "k3"}),
    ("/s/a", {"X-Key": "zzz"}),
    ("/port/a", {"X-Key": "k1"}),
    ("/u/a?x=7", {"X-Key": "k1"}),
    ("/u/a", {"X-Key": "zzz"}),
    ("/to/a?to=v1", {}),
    ("/to/a?to=V2", {}),
    ("/to/a?to=nosuch", {}),
    ("/to/a?to=", {}),
    ("/to/a", {}),
    ("/re/v2/x/y?z=1", {}),
    ("/re/v3/x", {}),
]


@pytest.fixture(scope="module")
def proxy_pair(tmp_path_factory):
    b1, b2 = _echo("b1"), _echo("b2")
    base = tmp_path_factory.mktemp("proxyvar")
    values = {"b1": b1.server_address[1], "b2": b2.server_address[1]}
    nport = free_port()
    n = Nginx(str(base / "nginx"), render(PROXY, dict(values, port=nport)), access_log_off=True)
    b = None
    try:
        if not n.started(nport):
            pytest.fail("nginx did not start: %s" % n.error_log())
        b = Ballast(str(base / "ballast"), "http {\n%s\n}\n" % PROXY, values=dict(values))
        b.start()
        yield b, n, nport
    finally:
        n.stop()
        b1.shutdown()
        b2.shutdown()
        problems = b.finish() if b else []
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.mark.parametrize("path,headers", PROXY_CASES,
                         ids=["%s%s" % (p, "+" + h.get("X-Key", "")) for p, h in PROXY_CASES])
def test_proxy_pass_variable_same_as_nginx(proxy_pair, path, headers):
    b, _, nport = proxy_pair
    want = answers(nport, [(path, headers)])
    got = answers(b.port, [(path, headers)])
    # nginx's error pages and ballast's are each signed: compare those by status only
    norm = [(s, body if s == 200 else "") for s, body in got + want]
    assert norm[0] == norm[1], "ballast %r, nginx %r" % (got, want)


def test_proxy_pass_variable_errors_logged(proxy_pair):
    b, n, nport = proxy_pair
    # nginx is asked too, so that its line is there whichever tests ran before on the pair
    assert answers(nport, [("/to/a?to=nosuch", {})])[0][0] == 502
    assert wait_for(lambda: "no resolver defined to resolve nosuch" in n.error_log(), 3 * SLOW)
    assert answers(b.port, [("/to/a?to=nosuch", {})])[0][0] == 502
    assert wait_for(lambda: "no resolver defined to resolve nosuch" in b.stderr_text(),
                    3 * SLOW), b.stderr_text()[-2000:]
    # an address nginx would connect to directly: refused here, saying why
    assert answers(b.port, [("/to/a?to=127.0.0.1:1", {})])[0][0] == 502
    assert wait_for(lambda: "only upstream group names are supported" in b.stderr_text(),
                    3 * SLOW), b.stderr_text()[-2000:]


def test_proxy_pass_variable_shares(proxy_pair):
    b, _, _ = proxy_pair
    got = answers(b.port, [("/s/x", {"X-Key": "key-%d" % i}) for i in range(2000)])
    v2 = sum(1 for _, body in got if body.startswith("b2 "))
    assert abs(v2 / 2000 - 0.20) < 0.03, v2


GREY = r"""
worker_processes 1;
error_log @tmp@/error.log info;
http {
upstream stable { server 127.0.0.1:@b1@; }
upstream canary { server 127.0.0.1:@b2@; }
split_clients "$http_x_key" $pool { @pct@ canary; * stable; }
server {
    listen 127.0.0.1:@port@;
    location / { proxy_pass http://$pool; }
}
}
"""


def test_grey_release_reload_moves_exactly_that_share(tmp_path):
    """10% -> 25% canary by reload: every key that was on canary stays there, the keys that
    move are stable -> canary only, and they are 15% of the keys (within 1%)."""
    from test_reload import Reloader
    b1, b2 = _echo("b1"), _echo("b2")
    port = free_port()
    values = {"b1": b1.server_address[1], "b2": b2.server_address[1], "port": port,
              "pct": "10%"}
    b = Ballast(str(tmp_path / "b"), GREY, values=values)
    b.start()
    try:
        keys = ["user-%d" % i for i in range(4000)]
        reqs = [("/", {"X-Key": k}) for k in keys]

        def canary():
            return {k for k, (s, body) in zip(keys, answers(port, reqs))
                    if s == 200 and body.startswith("b2 ")}
        before = canary()
        assert abs(len(before) / len(keys) - 0.10) < 0.01, len(before)
        b.values["pct"] = "25%"
        reloader = Reloader(b)
        reloader.reload(GREY)
        after = canary()
        assert before <= after, "keys left the canary: %r" % sorted(before - after)[:5]
        assert abs(len(after - before) / len(keys) - 0.15) < 0.01, len(after - before)
        # and back: exactly the same keys as before
        b.values["pct"] = "10%"
        reloader.reload(GREY)
        assert canary() == before
    finally:
        b1.shutdown()
        b2.shutdown()
        assert not b.finish()


# ---- realip: set_real_ip_from, real_ip_header, real_ip_recursive

SHOW = 'return 200 "$remote_addr|$realip_remote_addr|$proxy_add_x_forwarded_for\\n";'
REALIP = r"""
server {
    listen 127.0.0.1:@p1@;
    set_real_ip_from 127.0.0.1;
    set_real_ip_from 10.0.0.0/8;
    real_ip_header X-Forwarded-For;
    location / { SHOW }
    location /port { return 200 "[$remote_port]"; }
}
server {
    listen 127.0.0.1:@p2@;
    set_real_ip_from 127.0.0.1;
    set_real_ip_from 10.0.0.0/8;
    set_real_ip_from 2001:db8::/32;
    real_ip_header X-Forwarded-For;
    real_ip_recursive on;
    location / { SHOW }
}
server {
    listen 127.0.0.1:@p3@;
    set_real_ip_from 127.0.0.0/8;
    location / { SHOW }
}
server {
    listen 127.0.0.1:@p4@;
    set_real_ip_from 0.0.0.0/0;
    set_real_ip_from ::/0;
    real_ip_header X-Client;
    real_ip_recursive on;
    location / { SHOW }
}
server {
    listen 127.0.0.1:@p5@;
    set_real_ip_from 10.0.0.0/8;
    real_ip_header X-Forwarded-For;
    location / { SHOW }
}
server {
    listen 127.0.0.1:@p6@;
    location / { SHOW }
    location /loc/ {
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        real_ip_recursive on;
        set_real_ip_from 10.0.0.0/8;
        location /loc/ret/ { SHOW }
        proxy_set_header X-Cap "$remote_addr|$realip_remote_addr|$proxy_add_x_forwarded_for";
        proxy_pass http://127.0.0.1:@b1@;
    }
}
""".replace("SHOW", SHOW)

REALIP_CASES = [
    [],
    ["X-Forwarded-For: 1.2.3.4"],
    ["X-Forwarded-For: 1.2.3.4, 10.0.0.5"],
    ["X-Forwarded-For: 1.2.3.4, 10.0.0.5, 10.0.0.6"],
    ["X-Forwarded-For: 10.0.0.5, 10.0.0.6"],
    ["X-Forwarded-For: 1.2.3.4,10.0.0.5"],
    ["X-Forwarded-For: garbage"],
    ["X-Forwarded-For: 1.2.3.4, garbage"],
    ["X-Forwarded-For: garbage, 10.0.0.5"],
    ["X-Forwarded-For: 1.2.3.4:8080"],
    ["X-Forwarded-For: 1.2.3.4:0"],
    ["X-Forwarded-For: [2001:db8::1]:443"],
    ["X-Forwarded-For: 2001:db8::1"],
    ["X-Forwarded-For: 3.3.3.3, 2001:db8::7"],
    ["X-Forwarded-For: 1.2.3.4,,  "],
    ["X-Forwarded-For: 255.255.255.255"],
    ["X-Forwarded-For: 1..2.3"],
    ["X-Forwarded-For: 001.002.003.004"],
    ["X-Forwarded-For: 1.2.3.256"],
    ["X-Forwarded-For: ::ffff:10.0.0.9"],
    ["X-Forwarded-For: 1.1.1.1", "X-Forwarded-For: 10.0.0.7"],
    ["X-Forwarded-For: 1.1.1.1, 10.0.0.8", "X-Forwarded-For: 10.0.0.7"],
    ["X-Forwarded-For: 10.0.0.8", "X-Forwarded-For: garbage"],
    ["X-Real-IP: 5.6.7.8"],
    ["X-Real-IP: 5.6.7.8, 9.9.9.9"],
    ["X-Real-IP: 5.6.7.8", "X-Real-IP: 9.9.9.9"],
    ["X-Real-IP: bogus"],
    ["X-Client: 7.7.7.7"],
    ["X-Client: 7.7.7.7, 8.8.8.8"],
    ["x-client: 7.7.7.7"],
]
REALIP_PATHS = [("p1", "/"), ("p2", "/"), ("p3", "/"), ("p4", "/"), ("p5", "/"), ("p6", "/"),
                ("p6", "/loc/x"), ("p6", "/loc/ret/x")]


def raw_answer(port, path, lines):
    """Status line and body for a request with these header lines, as sent."""
    req = ("GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n"
           % (path, "".join(l + "\r\n" for l in lines))).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode()


@pytest.fixture(scope="module")
def realip_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("realip")
    b1 = _echo("b1")
    ports = {"p%d" % i: free_port() for i in range(1, 7)}
    nports = {k: free_port() for k in ports}
    ports["b1"] = nports["b1"] = b1.server_address[1]
    n = Nginx(str(base / "nginx"), render(REALIP, nports), access_log_off=True)
    b = None
    try:
        if not n.started(nports["p6"]):
            pytest.fail("nginx did not start: %s" % n.error_log())
        b = Ballast(str(base / "ballast"), "http {\n%s\n}\n" % REALIP, values=dict(ports))
        b.start()
        yield b, ports, nports
    finally:
        n.stop()
        b1.shutdown()
        problems = b.finish() if b else []
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.mark.parametrize("lines", REALIP_CASES, ids=[" + ".join(c) or "none" for c in REALIP_CASES])
def test_realip_same_as_nginx(realip_pair, lines):
    _, ports, nports = realip_pair
    for key, path in REALIP_PATHS:
        got = raw_answer(ports[key], path, lines)
        want = raw_answer(nports[key], path, lines)
        assert got == want, "%s %s: ballast %r, nginx %r" % (key, path, got, want)


def test_realip_per_request_on_one_connection(realip_pair):
    """The address is the request's: the next request on the connection starts from the
    peer's own."""
    b, ports, _ = realip_pair
    reqs = [("/", {"X-Forwarded-For": "1.2.3.4"}), ("/", {}), ("/", {"X-Forwarded-For": "5.5.5.5"})]
    got = answers(ports["p1"], reqs)
    assert [body.split("|")[0] for _, body in got] == ["1.2.3.4", "127.0.0.1", "5.5.5.5"]


REALIP_LOG = r"""
worker_processes 1;
error_log @tmp@/error.log info;
http {
log_format addr "$remote_addr $realip_remote_addr $upstream_addr";
upstream h { hash $remote_addr; server 127.0.0.1:@b1@; server 127.0.0.1:@b2@; }
server {
    listen 127.0.0.1:@port@;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    access_log @tmp@/access.log addr buffer=1k flush=100ms;
    location / { proxy_pass http://h; }
}
}
"""


def test_realip_feeds_logs_and_hash_keys(tmp_path):
    b1, b2 = _echo("b1"), _echo("b2")
    port = free_port()
    b = Ballast(str(tmp_path / "b"), REALIP_LOG,
                values={"b1": b1.server_address[1], "b2": b2.server_address[1], "port": port})
    b.start()
    try:
        ips = ["10.%d.%d.1" % (i, i * 7 % 256) for i in range(40)]
        first = answers(port, [("/", {"X-Forwarded-For": ip}) for ip in ips])
        again = answers(port, [("/", {"X-Forwarded-For": ip}) for ip in ips])
        # the hash key is the real address: the same client always on the same backend, and
        # the clients spread over both
        assert [body.split()[0] for _, body in first] == [body.split()[0] for _, body in again]
        assert {body.split()[0] for _, body in first} == {"b1", "b2"}
        log = os.path.join(b.dir, "access.log")
        assert wait_for(lambda: os.path.exists(log) and
                        len(open(log).read().splitlines()) >= 80, 5 * SLOW)
        lines = open(log).read().splitlines()
        assert [l.split()[0] for l in lines[:40]] == ips
        assert all(l.split()[1] == "127.0.0.1" for l in lines)
    finally:
        b1.shutdown()
        b2.shutdown()
        assert not b.finish()


REALIP_BAD = [
    ("set_real_ip_from 10.0.0.0/40;", 'invalid network or address "10.0.0.0/40"'),
    ("set_real_ip_from example.com;", 'invalid network or address "example.com"'),
    ("set_real_ip_from all;", 'invalid network or address "all"'),
    ("set_real_ip_from unix:;", '"set_real_ip_from unix:" is not supported'),
    ("real_ip_header X-A; real_ip_header X-B;", '"real_ip_header" directive is duplicate'),
    ("real_ip_recursive maybe;", 'invalid value "maybe"'),
]


@pytest.mark.parametrize("text,msg", REALIP_BAD, ids=[m for _, m in REALIP_BAD])
def test_realip_refused(tmp_path, text, msg):
    conf = tmp_path / "b.conf"
    conf.write_text("http {\nserver { listen 127.0.0.1:%d;\n%s\n}\n}\n" % (free_port(), text))
    r = run_ballast(["-t", "-c", str(conf)])
    assert r.returncode != 0
    assert msg in r.stderr and "b.conf:3" in r.stderr, r.stderr


def test_realip_remote_port_as_nginx(realip_pair):
    """nginx 1.22 keeps the port a forwarded address carries, and has none without one."""
    _, ports, nports = realip_pair
    for lines, want in ((["X-Forwarded-For: 1.2.3.4:5678"], "[5678]"),
                        (["X-Forwarded-For: [2001:db8::1]:443"], "[443]"),
                        (["X-Forwarded-For: 1.2.3.4"], "[]")):
        got = raw_answer(ports["p1"], "/port", lines)
        assert got == raw_answer(nports["p1"], "/port", lines) == ("HTTP/1.1 200 OK", want)
    # untouched without the header: the peer's port
    status, body = raw_answer(ports["p1"], "/port", [])
    assert status == "HTTP/1.1 200 OK" and body.strip("[]").isdigit(), body
