"""log_format and access_log as nginx has them, checked side by side with nginx itself: the same
log_format lines give the same lines for the same hostile requests (raw sockets: quotes,
backslashes, control bytes, UTF-8 and invalid UTF-8); JSON lines parse with jq; the upstream
variables show every attempt of a retried request; buffer= and flush= bound how long a line
waits."""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import SLOW, Conn, closed_port, render, wait_for
from nginx_ref import Nginx

JQ = shutil.which("jq")


def read_lines(path, n, timeout=3.0):
    """The log's first n complete lines, waiting up to timeout for them."""
    def get():
        try:
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")[:-1]
        except FileNotFoundError:
            return None
        return lines if len(lines) >= n else None
    got = wait_for(get, timeout * SLOW)
    if not got:
        text = open(path, "rb").read() if os.path.exists(path) else b"<no file>"
        pytest.fail("%s: want %d lines within %.0fs, have %r" % (path, n, timeout, text))
    return got


def raw_exchange(port, data):
    """Sends data, reads until the server closes or 2 s pass; returns the status code."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + 2 * SLOW
        while time.monotonic() < deadline and b"\r\n" not in buf:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
        m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
        return int(m.group(1)) if m else None
    finally:
        s.close()


# Every variable whose value nginx and ballast must agree on for the same request (not the
# times, ids, ports, or byte counts that include the Server header).
FIELDS = ("$remote_addr|$remote_user|$request|$status|$http_referer|$http_user_agent|"
          "$http_x_test|$args|$arg_a|$request_method|$request_uri|$uri|$server_protocol|"
          "$is_args|$host|$http_host|$cookie_c|$request_length|$query_string")

JSON_LINE = ('{"remote_addr":"$remote_addr","user":"$remote_user","request":"$request",'
             '"status":$status,"referer":"$http_referer","agent":"$http_user_agent",'
             '"x":"$http_x_test","args":"$args","uri":"$uri","host":"$host",'
             '"length":$request_length}')

# Requests both servers answer with 200: the hostile bytes are in places HTTP allows them.
GOOD = [
    b"GET /plain HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /q?a=\"x\"\\y&b=%22 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: a \"quoted\" \\ agent"
    b"\r\nReferer: http://e.com/?q=\"1\"\r\n\r\n",
    b"GET /utf8/\xc3\xa9\xe2\x82\xac?a=\xff\xfe HTTP/1.1\r\nHost: localhost\r\n"
    b"X-Test: caf\xc3\xa9 \xff\xc3\x28 \xed\xa0\x80 end\r\nUser-Agent: \xf0\x9f\x98\x80\r\n\r\n",
    b"GET /tab HTTP/1.1\r\nHost: localhost\r\nX-Test: a\tb\r\nCookie: c=\"v\\\"; d=1\r\n\r\n",
    # Basic credentials whose user has a quote, a backslash and control bytes
    b"GET /auth HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic "
    b"dSJcAR9cbn9lcjpwYXNz\r\n\r\n",
    b"GET /del%7f HTTP/1.1\r\nHost: LocalHost:80\r\nX-Test: ~\x80{}\r\n\r\n",
    b"GET http://localhost/abs?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /h10 HTTP/1.0\r\n\r\n",
]

# Requests both refuse with 400: the line is logged as it was received.
BAD = [
    b"GET /ctl\x01\x1b[31m HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"G\"ET\\ / HTTP/1.1\r\nHost: localhost\r\n\r\n",
]


def run_both(ballast, tmp_path, formats, requests):
    """Runs each request against nginx and ballast with the same http { } body, returns
    {name: [lines...]} per server for each format name."""
    logs = {}
    for server in ("nginx", "ballast"):
        port = int(render("@port@", {}))
        d = tmp_path / server
        d.mkdir()
        decl = "".join("    log_format %s %s;\n" % (name, text) for name, text in formats)
        use = "".join("        access_log %s/%s.log %s;\n" % (d, name, name)
                      for name, _ in formats)
        body = ("%s    server {\n        listen 127.0.0.1:%d;\n%s"
                "        location / { return 200 \"hello\"; }\n    }\n" % (decl, port, use))
        n = None
        try:
            if server == "nginx":
                n = Nginx(str(d / "nginx"), body)
                n.wait_listening(port)
            else:
                ballast("http {\n%s\n}\n" % body)
            logs[server] = {"statuses": [raw_exchange(port, r) for r in requests]}
            # read before nginx stops: it logs a refused request when the connection closes
            for name, _ in formats:
                logs[server][name] = read_lines(str(d / ("%s.log" % name)), len(requests))
        finally:
            if n:
                n.stop()
    return logs


@pytest.mark.skipif(not os.path.exists("/usr/sbin/nginx") and not shutil.which("nginx"),
                    reason="nginx is not installed")
@pytest.mark.parametrize("escape", ["default", "json", "none"])
def test_same_lines_as_nginx(ballast, tmp_path, escape):
    fmt = "'%s'" % FIELDS if escape == "default" else "escape=%s '%s'" % (escape, FIELDS)
    requests = GOOD + BAD
    logs = run_both(ballast, tmp_path, [("f", fmt)], requests)
    assert logs["ballast"]["statuses"] == logs["nginx"]["statuses"], logs
    assert logs["ballast"]["statuses"] == [200] * len(GOOD) + [400] * len(BAD), logs
    for i, (a, b) in enumerate(zip(logs["ballast"]["f"], logs["nginx"]["f"])):
        assert a == b, "request %r:\n ballast %r\n nginx   %r" % (requests[i], a, b)


@pytest.mark.skipif(not JQ, reason="jq is not installed")
def test_json_lines_parse_with_jq(ballast, tmp_path):
    """Every line of an escape=json format is one JSON object for jq, whatever the bytes."""
    requests = GOOD + BAD + [
        b"GET /" + bytes(range(0x80, 0x100)) + b" HTTP/1.1\r\nHost: localhost\r\n"
        b"User-Agent: " + bytes(range(0x21, 0x7f)) + bytes(range(0x80, 0x100)) + b"\r\n\r\n",
        b"\x01\x02\x03\x7f\xff\r\n\r\n",
        b"GET /\"},{\"injected\":1 HTTP/1.1\r\nHost: localhost\r\nX-Test: \"}\\\r\n\r\n",
    ]
    b = ballast("""
http {
    log_format j escape=json '%s';
    server {
        listen 127.0.0.1:@port@;
        access_log @tmp@/j.log j;
        location / { return 200 "hello"; }
    }
}
""" % JSON_LINE)
    for r in requests:
        raw_exchange(b.port, r)
    lines = read_lines(os.path.join(b.dir, "j.log"), len(requests))
    for line in lines:
        out = subprocess.run([JQ, "-c", "."], input=line + b"\n", capture_output=True,
                             timeout=10)
        assert out.returncode == 0, (line, out.stderr)
        obj = json.loads(out.stdout)
        assert set(obj) == {"remote_addr", "user", "request", "status", "referer", "agent", "x",
                            "args", "uri", "host", "length"}, obj
    first = json.loads(subprocess.run([JQ, "-c", "."], input=lines[1] + b"\n",
                                      capture_output=True, timeout=10).stdout)
    assert first["agent"] == 'a "quoted" \\ agent', first
    assert first["request"] == 'GET /q?a="x"\\y&b=%22 HTTP/1.1', first
    injected = json.loads(subprocess.run([JQ, "-c", "."], input=lines[-1] + b"\n",
                                         capture_output=True, timeout=10).stdout)
    assert injected["x"] == '"}\\' and "injected" not in injected, injected


UPSTREAM_JSON = ('{"status":$status,"addr":"$upstream_addr","ustatus":"$upstream_status",'
                 '"connect":"$upstream_connect_time","header":"$upstream_header_time",'
                 '"response":"$upstream_response_time","rt":$request_time,'
                 '"id":"$request_id","len":$request_length,"sent":$bytes_sent,'
                 '"body":$body_bytes_sent}')


def json_lines(path, n):
    return [json.loads(l) for l in read_lines(path, n)]


def test_upstream_variables_show_every_attempt(ballast, backend):
    """A retried request: $upstream_addr and $upstream_status list both attempts, ", "
    between them, as nginx does; the failed connect has no connect or header time."""
    be = backend("app")
    dead = closed_port()
    b = ballast("""
http {
    log_format u escape=json '%s';
    upstream pair { server 127.0.0.1:@pdead@; server 127.0.0.1:@pb@; }
    upstream five { server 127.0.0.1:@pb@; server 127.0.0.1:@pb2@; }
    upstream allgone { server 127.0.0.1:@pb@ down; }
    server {
        listen 127.0.0.1:@port@;
        access_log @tmp@/u.log u;
        location /gone { proxy_pass http://allgone; }
        location / { proxy_pass http://pair; }
        location /five { proxy_pass http://five; proxy_next_upstream http_503; }
        location = /local { return 204; }
    }
}
""" % UPSTREAM_JSON, pb=be.port, pdead=dead, pb2=be.port)
    assert b.get("/a").status == 200
    assert b.get("/b").status == 200
    assert b.get("/local").status == 204
    assert b.get("/five?status=503").status == 503
    assert b.get("/gone").status == 503
    lines = json_lines(os.path.join(b.dir, "u.log"), 5)
    # round robin: one of the first two requests tries the dead server first
    retried = [l for l in lines[:2] if ", " in l["addr"]]
    straight = [l for l in lines[:2] if ", " not in l["addr"]]
    assert len(retried) == 1 and len(straight) == 1, lines
    r = retried[0]
    assert r["addr"] == "127.0.0.1:%d, 127.0.0.1:%d" % (dead, be.port), r
    assert r["ustatus"] == "502, 200", r
    c0, c1 = r["connect"].split(", ")
    h0, h1 = r["header"].split(", ")
    assert (c0, h0) == ("-", "-"), r
    assert re.fullmatch(r"\d+\.\d{3}", c1) and re.fullmatch(r"\d+\.\d{3}", h1), r
    assert all(re.fullmatch(r"\d+\.\d{3}", t) for t in r["response"].split(", ")), r
    assert straight[0]["addr"] == be.addr and straight[0]["ustatus"] == "200", straight
    assert re.fullmatch(r"[0-9a-f]{32}", r["id"]) and r["id"] != straight[0]["id"], lines
    assert r["body"] > 0 and r["sent"] > r["body"] and r["len"] > 0, r
    local = lines[2]
    assert (local["status"], local["addr"], local["ustatus"], local["response"]) == \
        (204, "", "", ""), local
    five = lines[3]
    assert five["addr"] == "%s, %s" % (be.addr, be.addr) and five["ustatus"] == "503, 503", five
    assert five["status"] == 503, five
    # no server to pick: nginx's $upstream_addr is the group's name
    gone = lines[4]
    assert (gone["status"], gone["addr"], gone["ustatus"], gone["connect"]) == \
        (503, "allgone", "-", "-"), gone


def test_flush_time_bounds_the_wait(ballast):
    """buffer=1m flush=200ms: a lone line appears without more traffic; a line that overflows
    a small buffer pushes out the ones before it at once."""
    b = ballast("""
http {
    log_format short '$request_uri';
    server {
        listen 127.0.0.1:@port@;
        access_log @tmp@/slow.log short buffer=1m flush=200ms;
        location / { return 204; }
        location /small { access_log @tmp@/small.log short buffer=256 flush=1h; return 204; }
    }
}
""")
    t0 = time.monotonic()
    assert b.get("/lone").status == 204
    assert read_lines(os.path.join(b.dir, "slow.log"), 1, timeout=3.0) == [b"/lone"]
    waited = time.monotonic() - t0
    assert waited < 3.0 * SLOW, waited
    # 256 bytes hold a few 50-byte lines: once full, each new line pushes the pending ones out
    paths = ["/small/%02d/%s" % (i, "x" * 40) for i in range(12)]
    with Conn(b.port) as c:
        for p in paths:
            assert c.request("GET", p).status == 204
    lines = read_lines(os.path.join(b.dir, "small.log"), 8, timeout=2.0)
    assert [l.decode() for l in lines] == paths[:len(lines)], lines
    assert len(lines) < len(paths), "flush=1h wrote every line early: %r" % lines


def test_shutdown_flushes_and_long_lines(ballast):
    """Lines waiting in a buffer are written when ballast stops; a line longer than the
    buffer is written whole."""
    b = ballast("""
http {
    log_format ua '$http_user_agent';
    server {
        listen 127.0.0.1:@port@;
        access_log @tmp@/a.log ua buffer=1k flush=1h;
        location / { return 204; }
    }
}
""")
    long_ua = "L" * 3000
    assert b.get("/", headers={"User-Agent": "first"}).status == 204
    assert b.get("/", headers={"User-Agent": long_ua}).status == 204
    assert b.get("/", headers={"User-Agent": "last"}).status == 204
    log = os.path.join(b.dir, "a.log")
    assert read_lines(log, 2) [:2] == [b"first", long_ua.encode()]
    assert b.stop() == 0
    assert open(log, "rb").read() == b"first\n" + long_ua.encode() + b"\nlast\n"


def test_several_logs_and_off(ballast):
    """Two access_log lines at one level write both files; off at a level wins over its own
    lines; a level without lines inherits."""
    b = ballast("""
http {
    log_format p '$uri';
    access_log @tmp@/http.log p;
    server {
        listen 127.0.0.1:@port@;
        location /both { access_log @tmp@/one.log p; access_log @tmp@/two.log combined;
                         return 204; }
        location /off { access_log @tmp@/never.log p; access_log off; return 204; }
        location / { return 204; }
    }
}
""")
    for p in ("/both", "/off", "/inherit"):
        assert b.get(p).status == 204
    assert read_lines(os.path.join(b.dir, "one.log"), 1) == [b"/both"]
    assert b'"GET /both HTTP/1.1" 204 0' in read_lines(os.path.join(b.dir, "two.log"), 1)[0]
    assert read_lines(os.path.join(b.dir, "http.log"), 1) == [b"/inherit"]
    time.sleep(0.7)
    assert open(os.path.join(b.dir, "http.log"), "rb").read() == b"/inherit\n"
    assert not os.path.exists(os.path.join(b.dir, "never.log")) or \
        open(os.path.join(b.dir, "never.log"), "rb").read() == b""


# --------------------------------------------------------------------------------------------
# Request ids and W3C Trace Context
# --------------------------------------------------------------------------------------------

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
IDS_LINE = "$request_id $trace_id $span_id $parent_id $otel_trace_id $http_x_request_id"
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def traced(ballast, backend):
    be = backend("app")
    b = ballast("""
http {
    log_format ids '%s';
    access_log @tmp@/ids.log ids;
    upstream pair { server 127.0.0.1:@pdead@; server 127.0.0.1:@pb@; }
    server {
        listen 127.0.0.1:@port@;
        location / { proxy_pass http://127.0.0.1:@pb@; }
        location /off/ { trace_propagation off; request_id_header off;
                         proxy_pass http://127.0.0.1:@pb@; }
        location /named/ { request_id_header X-Correlation-ID; proxy_pass http://127.0.0.1:@pb@; }
        location /set/ { proxy_set_header X-Request-ID "set-$request_id";
                         proxy_set_header traceparent ""; proxy_pass http://127.0.0.1:@pb@; }
        location /retry/ { proxy_pass http://pair; }
    }
}
""" % IDS_LINE, pb=be.port, pdead=closed_port())
    b.be = be
    b.log = os.path.join(b.dir, "ids.log")
    return b


def sent(traced, path, headers=()):
    """Sends GET path with the header lines given (repeats allowed) on a raw socket; returns
    what the backend saw and the log line's fields."""
    n = len(traced.be.requests)
    head = "".join("%s: %s\r\n" % h for h in headers)
    assert raw_exchange(traced.port, ("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n"
                                      % (path, head)).encode()) == 200
    assert traced.be.wait_requests(n + 1)
    req = traced.be.requests[-1]
    line = read_lines(traced.log, n + 1)[n].decode().split(" ")
    return req, dict(zip(["id", "trace", "span", "parent", "otel", "client"], line))


def test_request_id_and_trace_started(traced):
    req, log = sent(traced, "/a")
    ids = req.headers_all("x-request-id")
    assert len(ids) == 1 and HEX32.fullmatch(ids[0]), req.headers
    assert log["id"] == ids[0], log
    tps = req.headers_all("traceparent")
    assert len(tps) == 1, req.headers
    v, trace, span, flags = tps[0].split("-")
    # a trace started here: its id is the request id, sampled
    assert (v, trace, flags) == ("00", ids[0], "01"), tps
    assert re.fullmatch(r"[0-9a-f]{16}", span) and span != "0" * 16, tps
    assert (log["trace"], log["span"], log["parent"], log["otel"]) == (trace, span, "-", trace)
    req2, log2 = sent(traced, "/b")
    assert log2["id"] != log["id"] and log2["span"] != log["span"], (log, log2)


def test_valid_client_ids_are_kept(traced):
    req, log = sent(traced, "/a", [("X-Request-ID", "Client-ID_1.2"), ("traceparent", TP),
                                   ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")])
    assert req.headers_all("x-request-id") == ["Client-ID_1.2"], req.headers
    assert log["id"] == "Client-ID_1.2", log
    v, trace, span, flags = req.header("traceparent").split("-")
    assert (v, trace, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01"), req.headers
    assert span != "00f067aa0ba902b7", "the parent-id sent upstream is this hop's span"
    assert (log["trace"], log["span"], log["parent"]) == (trace, span, "00f067aa0ba902b7"), log
    assert req.headers_all("tracestate") == ["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"]
    assert len(req.headers_all("traceparent")) == 1, req.headers


@pytest.mark.parametrize("headers", [
    [("traceparent", TP.upper())],
    [("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")],
    [("traceparent", TP + "-")],
    [("traceparent", TP), ("traceparent", TP)],
])
def test_invalid_traceparent_starts_a_trace(traced, headers):
    req, log = sent(traced, "/a", headers + [("tracestate", "rojo=00f067aa0ba902b7"),
                                             ("X-Request-ID", "bad id"),
                                             ("X-Request-ID", "x" * 65)])
    ids = req.headers_all("x-request-id")
    assert len(ids) == 1 and HEX32.fullmatch(ids[0]), req.headers
    tps = req.headers_all("traceparent")
    assert len(tps) == 1 and tps[0].split("-")[1] == ids[0], req.headers
    assert req.headers_all("tracestate") == [], "tracestate of a trace not continued"
    assert log["parent"] == "-" and log["trace"] == ids[0], log


def test_propagation_off_passes_headers_through(traced):
    req, log = sent(traced, "/off/x", [("traceparent", TP.upper()), ("tracestate", "a=b"),
                                       ("X-Request-ID", "bad id")])
    assert req.headers_all("traceparent") == [TP.upper()], req.headers
    assert req.headers_all("tracestate") == ["a=b"], req.headers
    assert req.headers_all("x-request-id") == ["bad id"], req.headers
    assert HEX32.fullmatch(log["id"]) and log["trace"] == "-" and log["span"] == "-", log
    req, log = sent(traced, "/off/y")
    assert req.header("traceparent") is None and req.header("x-request-id") is None, req.headers


def test_named_and_set_request_id(traced):
    req, log = sent(traced, "/named/x", [("X-Correlation-ID", "corr-7"),
                                         ("X-Request-ID", "other")])
    assert req.headers_all("x-correlation-id") == ["corr-7"], req.headers
    assert req.headers_all("x-request-id") == ["other"], req.headers
    assert log["id"] == "corr-7", log
    req, log = sent(traced, "/set/x", [("X-Request-ID", "keep-me")])
    assert req.headers_all("x-request-id") == ["set-keep-me"], req.headers
    assert req.header("traceparent") is None, "proxy_set_header traceparent \"\" removes it"


def test_retry_keeps_ids(traced):
    """Both attempts of a retried request carry the same ids (one request, one span)."""
    for i in range(2):
        req, log = sent(traced, "/retry/%d" % i)
        assert req.header("x-request-id") == log["id"], (req.headers, log)
        assert req.header("traceparent") == "00-%s-%s-01" % (log["trace"], log["span"])


@pytest.mark.skipif(not os.path.exists("/usr/sbin/nginx") and not shutil.which("nginx"),
                    reason="nginx is not installed")
def test_upstream_variables_as_nginx(ballast, backend, tmp_path):
    """The same upstream block with a dead first server, nginx and ballast side by side: the
    same $upstream_* lines (times masked), the retried request listing both attempts."""
    be = backend("app")
    dead = closed_port()
    fmt = ("'$status|$upstream_addr|$upstream_status|$upstream_connect_time|"
           "$upstream_header_time|$upstream_response_time|$request_length'")
    got = {}
    for server in ("nginx", "ballast"):
        port = int(render("@port@", {}))
        d = tmp_path / server
        d.mkdir()
        body = ("    log_format u %s;\n"
                "    upstream pair { server 127.0.0.1:%d; server 127.0.0.1:%d; }\n"
                "    server {\n        listen 127.0.0.1:%d;\n        access_log %s/u.log u;\n"
                "        location / { proxy_pass http://pair; }\n"
                "        location /none { return 204; }\n    }\n"
                % (fmt, dead, be.port, port, d))
        n = None
        try:
            if server == "nginx":
                n = Nginx(str(d / "nginx"), body)
                n.wait_listening(port)
            else:
                ballast("http {\n%s\n}\n" % body)
            reqs = [b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n",
                    b"GET /b HTTP/1.1\r\nHost: localhost\r\n\r\n",
                    b"GET /none HTTP/1.1\r\nHost: localhost\r\n\r\n"]
            assert [raw_exchange(port, r) for r in reqs] == [200, 200, 204]
            lines = read_lines(str(d / "u.log"), 3)
        finally:
            if n:
                n.stop()
        masked = [re.sub(rb"\d+\.\d{3}", b"T", l) for l in lines]
        got[server] = sorted(masked[:2]) + masked[2:]
    assert got["ballast"] == got["nginx"], got
    retried = [l for l in got["nginx"] if b", " in l]
    assert retried == [b"200|127.0.0.1:%d, 127.0.0.1:%d|502, 200|-, T|-, T|T, T|36"
                       % (dead, be.port)], got


def test_if_condition(ballast):
    """access_log ... if=: a request whose condition is empty or "0" is not logged by that
    line; `set` variables work in conditions and in formats."""
    b = ballast("""
http {
    log_format v '$uri $tag';
    server {
        listen 127.0.0.1:@port@;
        set $tag none;
        access_log @tmp@/arg.log v if=$arg_log;
        access_log @tmp@/all.log v;
        location /tagged { set $tag t1; return 204; }
        location / { return 204; }
    }
}
""")
    for p in ("/a?log=1", "/b?log=0", "/c?log=", "/d", "/tagged?log=yes"):
        assert b.get(p).status == 204
    assert read_lines(os.path.join(b.dir, "all.log"), 5) == \
        [b"/a none", b"/b none", b"/c none", b"/d none", b"/tagged t1"]
    assert read_lines(os.path.join(b.dir, "arg.log"), 2) == [b"/a none", b"/tagged t1"]


def test_workers_never_mix_lines(ballast):
    """Two workers, one file, small buffers: every line arrives whole (each flush is one
    O_APPEND write of whole lines), none lost, none twice."""
    import threading
    b = ballast("""
worker_processes 2;
http {
    log_format j escape=json '{"uri":"$request_uri","pad":"$http_x_pad"}';
    server {
        listen 127.0.0.1:@port@;
        access_log @tmp@/j.log j buffer=1k flush=100ms;
        location / { return 204; }
    }
}
""", workers=None)
    errors = []

    def client(k):
        try:
            with Conn(b.port) as c:
                for i in range(50):
                    r = c.request("GET", "/%d/%d" % (k, i), headers={"X-Pad": "p" * (k * 37)})
                    assert r.status == 204
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    lines = read_lines(os.path.join(b.dir, "j.log"), 400, timeout=5.0)
    uris = sorted(json.loads(l)["uri"] for l in lines)
    assert uris == sorted("/%d/%d" % (k, i) for k in range(8) for i in range(50))


@pytest.mark.skipif(not os.path.exists("/usr/sbin/nginx") and not shutil.which("nginx"),
                    reason="nginx is not installed")
def test_connection_variables_as_nginx(ballast, tmp_path):
    """$server_name and $connection_requests as nginx gives them: three requests on one
    keep-alive connection to a block with two names, one to a block with none."""
    got = {}
    for server in ("nginx", "ballast"):
        port = int(render("@port@", {}))
        d = tmp_path / server
        d.mkdir()
        body = ("    log_format c '$server_name|$connection_requests|$host';\n"
                "    server {\n        listen 127.0.0.1:%d;\n        server_name Www.Example.com"
                " example.org;\n        access_log %s/c.log c;\n"
                "        location / { return 204; }\n    }\n"
                "    server {\n        listen 127.0.0.1:%d;\n        server_name other;\n"
                "        access_log %s/c.log c;\n        location / { return 204; }\n    }\n"
                % (port, d, port, d))
        n = None
        try:
            if server == "nginx":
                n = Nginx(str(d / "nginx"), body)
                n.wait_listening(port)
            else:
                ballast("http {\n%s\n}\n" % body)
            with Conn(port) as c:
                for host in ("example.org", "www.example.com", "other"):
                    assert c.request("GET", "/", host=host).status == 204
            got[server] = read_lines(str(d / "c.log"), 3)
        finally:
            if n:
                n.stop()
    assert got["ballast"] == got["nginx"], got
