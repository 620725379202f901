"""map side by side with nginx 1.22: the same http { } text runs in both, each request goes to
both, and status and body (return texts made from map variables) must be the same. Covers
exact keys (matched ignoring case), regex keys in order with captures in values, ~* keys,
default, values with variables, maps of maps, hostnames wildcards, and nginx's WebSocket
recipe map."""
import http.client

import pytest

from conftest import SLOW, Ballast, free_port, render, run_ballast
from nginx_ref import Nginx

MAPS = r"""
map $arg_k $plain {
    default     dflt;
    apple       red;
    Banana      yellow;
    ""          empty-key;
    \default    escaped;
    ~^re(\d+)$  regex-$1;
    ~*^CI       caseless;
    ~^re        second-regex;
}
map $arg_v $withvar {
    default     "u=$uri";
    a           "a-$arg_k";
    b           $plain;
}
map $plain $ofmap {
    red         from-red;
    default     other;
}
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}
map $host $site {
    hostnames;
    default           none;
    example.com       exact;
    *.example.com     head;
    .example.org      dot;
    www.example.*     tail;
}
map $arg_none $nodefault {
    x 1;
}
server {
    listen 127.0.0.1:@port@;
    location /plain { return 200 "[$plain]"; }
    location /withvar { return 200 "[$withvar]"; }
    location /ofmap { return 200 "[$ofmap]"; }
    location /conn { return 200 "[$connection_upgrade]"; }
    location /site { return 200 "[$site]"; }
    location /nodefault { return 200 "[$nodefault]"; }
    location /set { set $x "$plain+$plain"; return 200 "[$x]"; }
}
"""

CASES = [
    ("/plain?k=apple", {}), ("/plain?k=APPLE", {}), ("/plain?k=banana", {}),
    ("/plain?k=", {}), ("/plain", {}), ("/plain?k=default", {}), ("/plain?k=re42", {}),
    ("/plain?k=rex", {}), ("/plain?k=cIx", {}), ("/plain?k=zzz", {}),
    ("/withvar?v=a&k=1", {}), ("/withvar?v=b&k=apple", {}), ("/withvar?v=zz", {}),
    ("/ofmap?k=apple", {}), ("/ofmap?k=banana", {}),
    ("/conn", {}), ("/conn", {"Upgrade": "websocket"}),
    ("/site", {"Host": "example.com"}), ("/site", {"Host": "a.example.com"}),
    ("/site", {"Host": "example.org"}), ("/site", {"Host": "b.c.example.org"}),
    ("/site", {"Host": "www.example.net"}), ("/site", {"Host": "other.test"}),
    ("/site", {"Host": "EXAMPLE.COM"}),
    ("/nodefault", {}), ("/set?k=apple", {}),
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("map")
    nvals = {"port": free_port()}
    n = Nginx(str(base / "nginx"), render(MAPS, nvals), access_log_off=True)
    b = Ballast(str(base / "ballast"), "http {\n%s\n}\n" % MAPS, values={})
    try:
        if not n.started(nvals["port"]):
            pytest.fail("nginx did not start: %s" % n.error_log())
        b.start()
        yield b.port, nvals["port"]
    finally:
        n.stop()
        problems = b.finish()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def ask(port, path, headers):
    h = {"Host": "main.test"}
    h.update(headers)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    try:
        c.request("GET", path, headers=h)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


@pytest.mark.parametrize("path,headers", CASES,
                         ids=["%s%s" % (p, "+" + ",".join(h.values()) if h else "")
                              for p, h in CASES])
def test_map_same_as_nginx(pair, path, headers):
    bport, nport = pair
    want = ask(nport, path, headers)
    got = ask(bport, path, headers)
    assert got == want, "%s: ballast %r, nginx %r" % (path, got, want)


@pytest.mark.parametrize("body,msg", [
    ("map $arg_a $b { x; }", "invalid number of the map parameters"),
    ("map $arg_a $b { x 1; X 2; }", "conflicting parameter \"X\""),
    ("map $arg_a $b { ~(x 1; }", "pcre2_compile() failed"),
    ("map $arg_a $host { x 1; }", "cannot be a map's target"),
    ("map $arg_a $b { x $nope; }", "unknown \"nope\" variable"),
])
def test_map_errors(tmp_path, body, msg):
    conf = tmp_path / "b.conf"
    conf.write_text("events {}\nhttp {\n%s\nserver { listen 127.0.0.1:%d; }\n}\n"
                    % (body, free_port()))
    r = run_ballast(["-t", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0 and msg in out, out
