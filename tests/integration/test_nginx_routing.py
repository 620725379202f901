"""Routing side by side with nginx 1.22: the same http { } text runs in nginx and in ballast,
every request of a table goes to both, and status, Location (the port made neutral), the body
(the upstream and URI an echo backend saw, or return's text) must be the same.

The configs exercise nginx's location order (exact, ^~, regexes in config order against the
longest prefix, ~* case-insensitive, nested locations), named locations from error_page and
try_files, captures in proxy_pass / return / proxy_set_header, rewrite's flags, arguments and
its 10-redirect limit, return with variables and absolute_redirect, server_name_in_redirect,
port_in_redirect, and if / set."""
import http.client
import http.server
import re
import socketserver
import threading

import pytest

from conftest import SLOW, Ballast, free_port, render, wait_for

from nginx_ref import Nginx


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers "NAME METHOD URI [x-cap=...]": which backend, and what it was sent."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = "%s %s %s" % (self.server.name, self.command, self.path)
        if self.headers.get("X-Cap") is not None:
            body += " x-cap=%s" % self.headers.get("X-Cap")
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_HEAD = do_GET
    do_POST = do_GET

    def log_message(self, *a):
        pass


class _EchoServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _echo(name):
    s = _EchoServer(("127.0.0.1", free_port()), _Echo)
    s.name = name
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


ORDER = r"""
upstream b1 { server 127.0.0.1:@b1@; }
upstream b2 { server 127.0.0.1:@b2@; }
server {
    listen 127.0.0.1:@port@;
    location = /exact { return 200 "exact"; }
    location /exact { return 200 "prefix-exact"; }
    location ^~ /static/ { return 200 "static-noregex"; }
    location /img/ { return 200 "img-prefix"; }
    location ~ \.(png|jpg)$ { return 200 "regex-img $1"; }
    location ~* \.CSS$ { return 200 "regex-css-ci"; }
    location ~ ^/api/(v\d+)/(?<rest>.*)$ { proxy_pass http://b1/$1/x/$rest; }
    location /api/ { proxy_pass http://b2; }
    location ~ /first { return 200 "first-regex"; }
    location ~ /first/second { return 200 "second-regex"; }
    location /nest/ {
        location ~ \.txt$ { return 200 "nested-regex $uri"; }
        location /nest/deep/ {
            location ~ \.md$ { return 200 "deep-regex"; }
            return 200 "nested-prefix";
        }
        return 200 "nest";
    }
    location ^~ /nr/ {
        location ~ \.txt$ { return 200 "nr-nested-regex"; }
        return 200 "nr";
    }
    location ~ \.txt$ { return 200 "top-txt"; }
    location ~ ^/hdr/(\w+) { proxy_set_header X-Cap "$1-cap"; proxy_pass http://b1; }
    location / { return 200 "root $uri"; }
}
"""

NAMED = r"""
upstream b1 { server 127.0.0.1:@b1@; }
server {
    listen 127.0.0.1:@port@;
    root @docroot@;
    location / { try_files $uri $uri/ @fallback; }
    location @fallback { proxy_pass http://b1; }
    location /tf/ { try_files $uri /target?from=tf; }
    location = /target { return 200 "target $uri $args"; }
    location /ep1/ { error_page 404 = @page; return 404; }
    location /ep2/ { error_page 404 @page; return 404; }
    location @page { return 200 "named page"; }
    location /ep3/ { error_page 403 /ep-page; return 403; }
    location = /ep-page { return 200 "ep-page"; }
    location /ep4/ { error_page 404 =202 /ep-page; return 404; }
    location /wp/ { try_files $uri $uri/ /index.php?$args; }
    location = /index.php { return 200 "php $uri $args $request_uri"; }
}
"""

REWRITE = r"""
upstream b1 { server 127.0.0.1:@b1@; }
server {
    listen 127.0.0.1:@port@;
    rewrite ^/srv-old/(.*)$ /new/$1 last;
    rewrite ^/srv-perm/(.*)$ /new/$1 permanent;
    location /new/ { return 200 "new $uri args=$args"; }
    location /r/ {
        rewrite ^/r/last/(.*)$ /new/$1 last;
        rewrite ^/r/break/(.*)$ /brk/$1 break;
        rewrite ^/r/redir/(.*)$ /new/$1 redirect;
        rewrite ^/r/perm/(.*)$ /new/$1 permanent;
        rewrite ^/r/abs/(.*)$ http://example.com/$1;
        rewrite ^/r/args/(.*)$ /new/$1?a=1;
        rewrite ^/r/drop/(.*)$ /new/$1?;
        rewrite ^/r/chain/(.*)$ /r/chain2/$1;
        rewrite ^/r/chain2/(.*)$ /new/chained/$1;
        proxy_pass http://b1;
    }
    location /p/ {
        rewrite ^/p/(.*)$ /q/$1 break;
        proxy_pass http://b1/base/;
    }
    location /brk/ { return 200 "brk-loc"; }
    location /loop/ { rewrite ^/loop/(.*)$ /loop/x$1 last; }
    location ~ "^/m(a{0,9})$" { rewrite ^/m(a*)$ /ma$1 last; }
    location = /maaaaaaaaaa { return 200 "ten changes"; }
    location ~ "^/q(b{0,10})$" { rewrite ^/q(b*)$ /qb$1 last; }
    location = /qbbbbbbbbbbb { return 200 "eleven changes"; }
    location /capx/ { rewrite ^/capx/(?<name>\w+)/(\d+)$ /new/$name-$2 last; }
}
"""

RETURN = r"""
server {
    listen 127.0.0.1:@port@;
    server_name main.test alias.test;
    location /ret301 { return 301 https://$host$request_uri; }
    location /rel { return 302 /target?x=1; }
    location /noabs { absolute_redirect off; return 301 /t; }
    location /sname { server_name_in_redirect on; return 301 /t; }
    location /noport { port_in_redirect off; return 302 /t; }
    location /text { return 200 "host=$host uri=$uri args=$args is=$is_args"; }
    location ~ ^/cap/(\w+)/(?<id>\d+) { return 200 "c1=$1 id=$id"; }
    location /url { return https://example.com/x; }
    location /gone { return 410; }
    location /e { return 200; }
    location /drop { return 444; }
}
"""

IFSET = r"""
server {
    listen 127.0.0.1:@port@;
    location /if/ {
        if ($arg_x = "1") { return 200 "x is 1"; }
        if ($http_x_test ~* ^(yes|y)$) { return 200 "test $1"; }
        if ($uri ~ ^/if/rw/(.*)$) { set $p $1; rewrite ^ /new/$p last; }
        if ($arg_deny != "") { return 403; }
        set $who "anon";
        if ($cookie_user) { set $who "user-$cookie_user"; }
        return 200 "who=$who";
    }
    location /new/ { return 200 "new $uri"; }
    location /s/ {
        set $a "A";
        set $b "$a-B";
        if ($arg_stop) { break; }
        set $b "changed";
        return 200 "b=$b";
    }
}
"""

HEADERS = r"""
upstream b1 { server 127.0.0.1:@b1@; }
server {
    listen 127.0.0.1:@port@;
    add_header X-Srv srv;
    add_header X-Srv-Always "always $uri" always;
    location /inherit { return 200 "i"; }
    location /own { add_header X-Own own; return 200 "o"; }
    location /err { return 404; }
    location /own-err {
        add_header X-Own own;
        add_header X-A "a $uri" always;
        return 403;
    }
    location /redir { return 302 /x; }
    location /proxy { proxy_pass http://b1; }
    location /proxy-own { add_header X-P "p-$uri"; proxy_pass http://b1; }
    location ~ ^/cap/(\w+) { add_header X-Cap $1; return 200 "c"; }
    location /empty { add_header X-Empty ""; return 200 "e"; }
    location /nested/ {
        add_header X-Outer outer;
        location /nested/in/ { return 200 "in"; }
        location /nested/own/ { add_header X-Inner inner; return 200 "own"; }
    }
}
"""

CONFIGS = {"order": ORDER, "named": NAMED, "rewrite": REWRITE, "return": RETURN,
           "ifset": IFSET, "headers": HEADERS}
# The added fields compared for the "headers" config.
ADDED = ("X-Srv", "X-Srv-Always", "X-Own", "X-A", "X-P", "X-Cap", "X-Empty", "X-Outer",
         "X-Inner")

# (config, path, extra headers)
CASES = [
    ("order", "/exact", {}),
    ("order", "/exact/", {}),
    ("order", "/exactly", {}),
    ("order", "/exact.png", {}),
    ("order", "/static/a.png", {}),
    ("order", "/static/", {}),
    ("order", "/img/a.png", {}),
    ("order", "/img/a.jpg", {}),
    ("order", "/img/a.gif", {}),
    ("order", "/x/a.png", {}),
    ("order", "/x/A.css", {}),
    ("order", "/x/a.Css", {}),
    ("order", "/x/a.css.bak", {}),
    ("order", "/api/v2/users/7?q=1", {}),
    ("order", "/api/v10/", {}),
    ("order", "/api/other?q=2", {}),
    ("order", "/first/second", {}),
    ("order", "/a/first", {}),
    ("order", "/nest/", {}),
    ("order", "/nest/a.txt", {}),
    ("order", "/nest/a", {}),
    ("order", "/nest/deep/a", {}),
    ("order", "/nest/deep/a.md", {}),
    ("order", "/nest/deep/a.txt", {}),
    ("order", "/nest/a.png", {}),
    ("order", "/nr/a.txt", {}),
    ("order", "/nr/a.png", {}),
    ("order", "/other/a.txt", {}),
    ("order", "/%61pi/v3/enc", {}),
    ("order", "/hdr/abc/x", {}),
    ("order", "/", {}),
    ("named", "/", {}),
    ("named", "/a.txt", {}),
    ("named", "/nofile?q=1", {}),
    ("named", "/dir", {}),
    ("named", "/dir/", {}),
    ("named", "/tf/missing?orig=1", {}),
    ("named", "/ep1/x", {}),
    ("named", "/ep2/x", {}),
    ("named", "/ep3/x", {}),
    ("named", "/ep4/x", {}),
    ("named", "/wp/post?p=7&x=y", {}),
    ("named", "/wp/", {}),
    ("rewrite", "/srv-old/a?k=v", {}),
    ("rewrite", "/srv-perm/a?k=v", {}),
    ("rewrite", "/r/last/x?o=1", {}),
    ("rewrite", "/r/break/x?o=1", {}),
    ("rewrite", "/r/redir/x?o=1", {}),
    ("rewrite", "/r/perm/x", {}),
    ("rewrite", "/r/abs/x?o=1", {}),
    ("rewrite", "/r/args/x?orig=1", {}),
    ("rewrite", "/r/args/x", {}),
    ("rewrite", "/r/drop/x?orig=1", {}),
    ("rewrite", "/r/chain/x", {}),
    ("rewrite", "/r/none?z=1", {}),
    ("rewrite", "/p/y?z=1", {}),
    ("rewrite", "/loop/a", {}),
    ("rewrite", "/m", {}),
    ("rewrite", "/q", {}),
    ("rewrite", "/capx/bob/42", {}),
    ("return", "/ret301/a?b=1", {}),
    ("return", "/rel", {}),
    ("return", "/noabs", {}),
    ("return", "/sname", {"Host": "alias.test"}),
    ("return", "/noport", {}),
    ("return", "/text/x?y=1", {}),
    ("return", "/text/x", {}),
    ("return", "/cap/abc/123", {}),
    ("return", "/url", {}),
    ("return", "/gone", {}),
    ("return", "/e", {}),
    ("return", "/rel", {"Host": "MAIN.test:999"}),
    ("return", "/drop", {}),
    ("ifset", "/if/a?x=1", {}),
    ("ifset", "/if/a", {"X-Test": "YES"}),
    ("ifset", "/if/rw/zz", {}),
    ("ifset", "/if/a?deny=1", {}),
    ("ifset", "/if/a", {}),
    ("ifset", "/if/a", {"Cookie": "user=ann"}),
    ("ifset", "/s/", {}),
    ("ifset", "/s/?stop=1", {}),
    ("headers", "/inherit", {}),
    ("headers", "/own", {}),
    ("headers", "/err", {}),
    ("headers", "/own-err", {}),
    ("headers", "/redir", {}),
    ("headers", "/proxy", {}),
    ("headers", "/proxy-own?q=1", {}),
    ("headers", "/cap/zz", {}),
    ("headers", "/empty", {}),
    ("headers", "/nested/in/", {}),
    ("headers", "/nested/own/", {}),
    ("headers", "/nested/x", {}),
    ("headers", "/none", {}),
]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """For each config: (ballast, nginx) on the same text, on the same two echo backends."""
    b1, b2 = _echo("b1"), _echo("b2")
    base = tmp_path_factory.mktemp("routing")
    docroot = base / "docroot"
    (docroot / "dir").mkdir(parents=True)
    (docroot / "index.html").write_text("index\n")
    (docroot / "a.txt").write_text("file a\n")
    started, out = [], {}
    try:
        for name, body in CONFIGS.items():
            values = {"b1": b1.server_address[1], "b2": b2.server_address[1],
                      "docroot": str(docroot)}
            nvals = dict(values, port=free_port())
            n = Nginx(str(base / ("nginx-" + name)), render(body, nvals), access_log_off=True)
            started.append(n)
            if not n.started(nvals["port"]):
                pytest.fail("nginx did not start on %s: %s %s" % (
                    name, n.proc.stderr.read().decode() if n.proc.poll() is not None else "",
                    n.error_log()))
            b = Ballast(str(base / ("ballast-" + name)), "http {\n%s\n}\n" % body,
                        values=dict(values))
            started.append(b)
            b.start()
            out[name] = (b, n, nvals["port"])
        yield out
    finally:
        problems = []
        for p in started:
            if isinstance(p, Ballast):
                problems += p.finish()
            else:
                p.stop()
        b1.shutdown()
        b2.shutdown()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def ask(port, path, headers):
    h = {"Host": "main.test"}
    h.update(headers)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    try:
        c.request("GET", path, headers=h)
        try:
            r = c.getresponse()
        except http.client.RemoteDisconnected:
            return ("closed without a response",)
        body = r.read().decode("utf-8", "replace")
        loc = r.getheader("Location")
        if loc:
            loc = re.sub(r":%d\b" % port, ":PORT", loc)
        # Built-in pages are signed by each server: compare them by status only.
        if "<html>" in body:
            body = "(status page)"
        added = tuple((h, r.getheader(h)) for h in ADDED if r.getheader(h) is not None)
        return r.status, loc, body, added
    finally:
        c.close()


@pytest.mark.parametrize("config,path,headers", CASES,
                         ids=["%s:%s%s" % (c, p, "+" + ",".join(h) if h else "")
                              for c, p, h in CASES])
def test_same_answer_as_nginx(pairs, config, path, headers):
    b, _, nport = pairs[config]
    want = ask(nport, path, headers)
    got = ask(b.port, path, headers)
    assert got == want, "%s %s: ballast %r, nginx %r" % (config, path, got, want)


def test_cycle_logged_as_nginx_does(pairs):
    b, n, nport = pairs["rewrite"]
    assert ask(b.port, "/loop/a", {})[0] == 500
    assert ask(nport, "/loop/a", {})[0] == 500
    msg = "rewrite or internal redirection cycle while processing"
    assert msg in n.error_log()
    assert wait_for(lambda: msg in b.stderr_text(), 3 * SLOW), b.stderr_text()[-2000:]
