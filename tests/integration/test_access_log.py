"""access_log: one line per request in the documented format, written within about a second.
These use the `upstream` format (combined plus the upstream fields); test_surfaces.py checks
`combined` against nginx's."""
import datetime
import os
import re
import time

import pytest

from conftest import SLOW, closed_port, wait_for

LINE = re.compile(
    r'^(?P<client>\S+) - - \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) '
    r'(?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" '
    r'"(?P<upstream>[^"]*)" (?P<ustatus>\S+) (?P<rtime>\d+\.\d+) '
    r'(?P<utime>\S+)$')


def read_lines(path, n, timeout=3.0):
    """Polls the log until it has at least n complete lines (up to timeout)."""
    def get():
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        lines = text.split("\n")
        done = lines[:-1]  # only newline-terminated lines
        return done if len(done) >= n else None

    got = wait_for(get, timeout)
    if not got:
        try:
            text = open(path).read()
        except FileNotFoundError:
            text = "<no file>"
        pytest.fail("access log %s: want %d lines within %.0fs, have %r" % (path, n, timeout, text))
    return got


def parse(line):
    m = LINE.match(line)
    assert m, "access log line does not match the format: %r" % line
    return m.groupdict()


@pytest.fixture
def logged(ballast, backend):
    be = backend("app")
    b = ballast("""
http {
    access_log @tmp@/access.log upstream;
    server {
        listen 127.0.0.1:@port@;
        location /app { proxy_pass http://127.0.0.1:@pb@; }
        location = /ret { return 200 "twelve bytes"; }
        location /dead { proxy_pass http://127.0.0.1:@pdead@; }
    }
}
""", pb=be.port, pdead=closed_port())
    b.log = os.path.join(b.dir, "access.log")
    b.be = be
    return b


def test_proxied_request_line(logged):
    r = logged.get("/app/path?q=1&text=hello")
    assert r.status == 200, r
    line = read_lines(logged.log, 1)[0]
    f = parse(line)
    assert f["client"] == "127.0.0.1", line
    assert f["request"] == "GET /app/path?q=1&text=hello HTTP/1.1", line
    assert f["status"] == "200", line
    assert f["bytes"] == "5", line  # body bytes sent
    assert f["upstream"] == logged.be.addr, line
    assert f["ustatus"] == "200", line
    assert re.fullmatch(r"\d+\.\d+", f["utime"]), line
    assert float(f["rtime"]) < 5 and float(f["utime"]) <= float(f["rtime"]) + 0.001, line
    t = datetime.datetime.strptime(f["time"], "%d/%b/%Y:%H:%M:%S %z")
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - t).total_seconds()) < 60, "log time %s, now %s" % (t, now)


def test_return_has_no_upstream(logged):
    r = logged.get("/ret")
    assert r.status == 200, r
    f = parse(read_lines(logged.log, 1)[0])
    assert (f["status"], f["bytes"]) == ("200", "12"), f
    assert (f["upstream"], f["ustatus"], f["utime"]) == ("-", "-", "-"), f


def test_request_time_measures_upstream_delay(logged):
    r = logged.get("/app/slow?delay=0.5")
    assert r.status == 200, r
    f = parse(read_lines(logged.log, 1)[0])
    assert float(f["rtime"]) >= 0.45, f
    assert float(f["utime"]) >= 0.45, f


def test_one_line_per_request_in_order(logged):
    with logged.conn() as c:
        for i in range(10):
            assert c.request("GET", "/app/%d" % i).status == 200
        assert c.request("HEAD", "/app/head").status == 200
        assert c.request("POST", "/app/post", body=b"x" * 100).status == 200
    lines = read_lines(logged.log, 12)
    assert len(lines) == 12, lines
    reqs = [parse(l)["request"] for l in lines]
    assert reqs == ["GET /app/%d HTTP/1.1" % i for i in range(10)] + \
        ["HEAD /app/head HTTP/1.1", "POST /app/post HTTP/1.1"], reqs
    assert parse(lines[10])["bytes"] == "0", lines[10]


def test_error_statuses_logged(logged):
    r = logged.get("/dead")
    assert r.status == 502, r
    r = logged.get("/app/x?status=404")
    assert r.status == 404, r
    lines = read_lines(logged.log, 2)
    f0, f1 = parse(lines[0]), parse(lines[1])
    assert f0["status"] == "502", lines[0]
    assert f0["upstream"] == "127.0.0.1:%d" % logged.values["pdead"], lines[0]
    assert (f1["status"], f1["ustatus"]) == ("404", "404"), lines[1]


def test_access_log_off(ballast):
    b = ballast("""
http {
    access_log off;
    server { listen 127.0.0.1:@port@; location / { return 204; } }
}
""")
    assert b.get("/quiet").status == 204
    time.sleep(1.2)  # a buffered line would have been written by now
    logs = [n for n in os.listdir(b.dir) if n.endswith(".log") or n == "off"]
    assert logs == [], "files written with access_log off: %r" % logs
    assert "quiet" not in b.stderr_text()


def test_written_promptly_without_traffic(logged):
    """A single request is flushed without further traffic or shutdown."""
    t0 = time.monotonic()
    assert logged.get("/ret").status == 200
    read_lines(logged.log, 1, timeout=3.0)
    assert time.monotonic() - t0 < 3.0 * SLOW


def test_bad_request_logged(logged):
    """A refused request still leaves a line with its status."""
    from conftest import Conn
    with Conn(logged.port) as c:
        c.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host
        r = c.read_response()
        assert r.status == 400, r
    f = parse(read_lines(logged.log, 1)[0])
    assert f["status"] == "400", f
    assert f["upstream"] == "-", f
