"""Variables from split_clients and geo blocks, side by side with nginx 1.22: the same http { }
text runs in both and every request must get the same answer. split_clients is checked over
10 000 keys (every key in the same bucket as nginx, the shares within 1% of the percentages),
geo over IPv4 and IPv6 networks, the longest prefix winning."""
import http.client

import pytest

from conftest import SLOW, Ballast, free_port, listening_ports, render, run_ballast, wait_for
from test_nginx_routing import Nginx

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
    n = Nginx(str(base / "nginx"), render(VARS, {"port": nport}))
    b = None
    try:
        if not wait_for(lambda: n.proc.poll() is None and nport in listening_ports(), 5 * SLOW):
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
