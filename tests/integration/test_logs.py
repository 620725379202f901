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
from test_surfaces import Nginx

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
