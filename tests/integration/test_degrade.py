"""Degradation (issue 11): error_page for ballast's own 502/503/504 and, with
proxy_intercept_errors, for upstream answers (side by side with nginx 1.22 on the same text);
nginx's "no live upstreams" once every server is out for its own failures; the `disable`
switch in the config and through the admin API."""
import http.client
import json
import os
import time

import pytest

from conftest import SLOW, Backend, Ballast, closed_port, free_port, render, wait_for
from nginx_ref import Nginx

# One http { } body that nginx and ballast both run. @pb@ is a backend whose answer the path
# chooses (/icpt/404 answers 404, ...); @pd1@/@pd2@ refuse connections.
HTTP = """
upstream none { server 127.0.0.1:@pd1@; server 127.0.0.1:@pd2@; }
server {
    listen 127.0.0.1:@port@;
    location /none { proxy_pass http://none; error_page 502 503 504 =503 /sorry; }
    location /none-keep { proxy_pass http://none; error_page 502 /sorry; }
    location = /sorry { return 503 "sorry"; }
    location = /okpage { return 200 "ok page"; }
    location @named { return 200 "named"; }
    location /icpt/ {
        proxy_pass http://127.0.0.1:@pb@;
        proxy_intercept_errors on;
        error_page 404 = /sorry;
        error_page 500 =200 /okpage;
        error_page 418 @named;
        error_page 302 =201 /okpage;
    }
    location /none-named { proxy_pass http://none; error_page 502 @fallback; }
    location /none-named-own { proxy_pass http://none; error_page 502 = @fallback; }
    location /none-uri { proxy_pass http://none; error_page 502 =200 /fb/201; }
    location /none-uri-own { proxy_pass http://none; error_page 502 = /fb/201; }
    location /fb/ { proxy_pass http://127.0.0.1:@pb@; }
    location @fallback { proxy_pass http://127.0.0.1:@pb@; }
    location /icpt-proxy/ {
        proxy_pass http://127.0.0.1:@pb@;
        proxy_intercept_errors on;
        error_page 500 503 = /fb/202;
        error_page 404 @fallback;
    }
    location /plain/ {
        proxy_pass http://127.0.0.1:@pb@;
        error_page 404 500 /sorry;
    }
}
"""

CASES = ["/none", "/none-keep", "/icpt/404", "/icpt/500", "/icpt/418", "/icpt/403",
         "/icpt/200", "/icpt/302", "/plain/404", "/plain/500",
         "/none-named", "/none-named-own", "/none-uri", "/none-uri-own", "/icpt-proxy/500",
         "/icpt-proxy/503", "/icpt-proxy/404", "/icpt-proxy/200"]


def _backend_route(backend):
    def fn(req, c):
        last = req.path.rstrip("/").rsplit("/", 1)[-1]
        code = int(last) if last.isdigit() else 200
        body = b"backend says %d to %s %s" % (code, req.method.encode(), req.path.encode())
        extra = b"Location: http://example.test/\r\n" if code == 302 else b""
        c.send(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s"
               % (code, len(body), extra, body))
    backend.route("/", fn)


def ask(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        if "<html>" in body:
            body = "(status page)"  # each signs its own pages
        return r.status, body
    finally:
        c.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    be = Backend("codes")
    _backend_route(be)
    base = tmp_path_factory.mktemp("degrade")
    values = {"pb": be.port, "pd1": closed_port(), "pd2": closed_port()}
    nvals = dict(values, port=free_port())
    n = Nginx(str(base / "nginx"), render(HTTP, nvals), access_log_off=True)
    b = Ballast(str(base / "ballast"), "error_log @tmp@/error.log info;\nhttp {\n%s\n}\n" % HTTP,
                values=dict(values))
    try:
        n.wait_listening(nvals["port"])
        b.start()
        yield b, n, nvals["port"]
    finally:
        problems = b.finish()
        n.stop()
        be.stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.mark.parametrize("path", CASES)
def test_error_page_as_nginx(pair, path):
    b, _, nport = pair
    want = ask(nport, path)
    got = ask(b.port, path)
    assert got == want, "%s: ballast %r, nginx %r" % (path, got, want)


@pytest.mark.parametrize("method", ["DELETE", "HEAD"])
def test_error_page_proxied_method_as_nginx(pair, method):
    """An error page that proxies goes as a GET to a URI (HEAD stays HEAD), with the request's
    method to a named location, as nginx sends it."""
    b, _, nport = pair
    for path in ("/none-named", "/icpt-proxy/404", "/none-uri", "/icpt-proxy/500"):
        want = ask(nport, path, method)
        got = ask(b.port, path, method)
        assert got == want, "%s %s: ballast %r, nginx %r" % (method, path, got, want)


def test_issue_case(pair):
    """The issue's words: every server refused, error_page 502 503 504 =503 /sorry."""
    b, _, _ = pair
    assert ask(b.port, "/none") == (503, "sorry")



def _log(b):
    try:
        with open(os.path.join(b.dir, "error.log"), errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _connect_failures(b):
    return [ln for ln in _log(b).splitlines() if "connect() failed" in ln or
            "Connection refused" in ln]


def test_no_live_upstreams(ballast):
    """Two dead servers marked failed by max_fails: the next 20 requests within fail_timeout
    get 502 at once with nginx's log line, and no connect is tried (nginx 1.22 counts the
    same: two refused connects, then "no live upstreams")."""
    b = ballast("""
error_log @tmp@/error.log info;
http {
    upstream none { server 127.0.0.1:@pd1@ max_fails=1 fail_timeout=60s;
                    server 127.0.0.1:@pd2@ max_fails=1 fail_timeout=60s; }
    server { listen 127.0.0.1:@port@;
             location / { proxy_pass http://none; error_page 502 =503 /sorry; }
             location = /sorry { return 503 "sorry"; } }
}""", pd1=closed_port(), pd2=closed_port())
    got = [ask(b.port, "/r%d" % i) for i in range(21)]
    assert got == [(503, "sorry")] * 21, got
    assert wait_for(lambda: "no live upstreams while connecting to upstream" in _log(b),
                    3 * SLOW), _log(b)[-2000:]
    fails = _connect_failures(b)
    assert 1 <= len(fails) <= 2, "connect attempts logged: %d\n%s" % (len(fails),
                                                                      "\n".join(fails))


def test_single_server_always_tried(ballast):
    """nginx never marks a lone server failed: each request tries it (and logs it)."""
    b = ballast("""
error_log @tmp@/error.log info;
http {
    upstream one { server 127.0.0.1:@pd@ max_fails=1 fail_timeout=60s; }
    server { listen 127.0.0.1:@port@; location / { proxy_pass http://one; } }
}""", pd=closed_port())
    got = [ask(b.port, "/s%d" % i)[0] for i in range(3)]
    assert got == [502] * 3, got
    assert wait_for(lambda: len(_connect_failures(b)) >= 3, 3 * SLOW), _log(b)[-2000:]
    assert "no live upstreams" not in _log(b)


def api(b, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", b.values["port_admin"], timeout=10 * SLOW)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


DISABLE = """
error_log @tmp@/error.log info;
admin { listen 127.0.0.1:@port_admin@; }
http {
    server { listen 127.0.0.1:@port@;
        location /off { disable; proxy_pass http://127.0.0.1:@pb@; }
        location /text { disable 410 "gone for now"; proxy_pass http://127.0.0.1:@pb@; }
        location /page { disable 503 /maint; proxy_pass http://127.0.0.1:@pb@; }
        location /styled { disable; proxy_pass http://127.0.0.1:@pb@; error_page 503 /maint; }
        location = /maint { return 200 "maintenance"; }
        location /live { proxy_pass http://127.0.0.1:@pb@; }
    }
}"""


def test_disable_in_config(ballast, backend):
    be = backend("b")
    b = ballast(DISABLE, pb=be.port)
    c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10 * SLOW)
    c.request("GET", "/off")
    r = c.getresponse()
    r.read()
    assert (r.status, r.getheader("Retry-After")) == (503, "1")
    assert ask(b.port, "/text") == (410, "gone for now")
    assert ask(b.port, "/page") == (503, "maintenance")
    assert ask(b.port, "/styled") == (503, "maintenance")
    assert ask(b.port, "/live")[0] == 200
    assert [r.path for r in be.requests] == ["/live"], "a disabled location reached the backend"


def test_disable_through_api(ballast, backend):
    be = backend("b")
    b = ballast(DISABLE, pb=be.port)
    st, j = api(b, "GET", "/api/locations")
    assert st == 200, j
    live = [l for l in j["locations"] if l["location"] == "/live"][0]
    assert live["disabled"] is False and live["switch"] == "config", live
    assert ask(b.port, "/live/1")[0] == 200
    st, j = api(b, "PATCH", "/api/locations/%d" % live["id"], {"disabled": True})
    assert (st, j["disabled"], j["switch"]) == (200, True, "api: disabled"), j
    assert ask(b.port, "/live/2")[0] == 503
    # by path, URL-encoded: a config-disabled location enabled over its `disable` line
    st, j = api(b, "PATCH", "/api/locations/%2Foff", {"disabled": False})
    assert (st, j["disabled"]) == (200, False), j
    assert ask(b.port, "/off/3")[0] == 200
    st, j = api(b, "PATCH", "/api/locations/%2Foff", {"disabled": None})
    assert (st, j["disabled"], j["switch"]) == (200, True, "config"), j
    assert ask(b.port, "/off/4")[0] == 503
    st, j = api(b, "GET", "/api/locations/%d" % live["id"])
    assert (st, j["disabled"]) == (200, True), j
    assert api(b, "PATCH", "/api/locations/%d" % live["id"], {"disabled": "yes"})[0] == 400
    assert api(b, "PATCH", "/api/locations/9999", {"disabled": True})[0] == 400
    assert api(b, "GET", "/api/locations/9999")[0] == 404
    assert api(b, "PATCH", "/api/locations/%d" % live["id"], {"disabled": False})[0] == 200
    assert ask(b.port, "/live/5")[0] == 200
    assert [r.path for r in be.requests] == ["/live/1", "/off/3", "/live/5"], \
        [r.path for r in be.requests]
    assert wait_for(lambda: 'admin: location "/live"' in _log(b), 3 * SLOW), _log(b)[-2000:]


def test_error_page_proxy_with_body_is_plain(pair):
    """A request with a body cannot be sent again to an error page that proxies: the plain
    status page, and a warning (nginx, which buffers bodies, sends it)."""
    b, _, _ = pair
    c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10 * SLOW)
    try:
        c.request("POST", "/none-named", body=b"x" * 10)
        r = c.getresponse()
        assert r.status == 502 and b"<html>" in r.read()
    finally:
        c.close()
    assert wait_for(lambda: "cannot send again" in _log(b), 3 * SLOW), _log(b)[-2000:]
