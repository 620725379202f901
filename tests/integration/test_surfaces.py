"""What a newcomer and an nginx operator meet first: exclusive listeners and a locked pid file,
nothing accepted silently, honest messages for what this build lacks, nginx's own configs."""
import os
import shutil
import subprocess
import time

import pytest

from conftest import (BALLAST_BIN, SLOW, http_get, listening_ports, raw_route, render,
                      run_ballast, wait_for)

from nginx_ref import Nginx


@pytest.fixture
def nginx(tmp_path):
    made = []

    def start(http_body, port):
        n = Nginx(str(tmp_path / ("nginx%d" % len(made))), http_body)
        made.append(n)
        n.wait_listening(port)
        return n

    yield start
    for n in made:
        n.stop()

EXCLUSIVE = """
worker_processes 2;
pid @tmp@/ballast.pid;
error_log @tmp@/error.log notice;
http {
    access_log off;
    server { listen 127.0.0.1:@port@ @opts@; location / { return 200 "first"; } }
}
"""


def second_instance(tmp_path, conf, timeout=5.0):
    """Runs a second ballast on conf; returns (exit code, stderr). One that does not exit on
    its own (it started when it should have been refused) is killed and reported as None."""
    path = tmp_path / "second.conf"
    path.write_text(conf)
    p = subprocess.Popen([BALLAST_BIN, "-c", str(path)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout * SLOW)
        return p.returncode, err
    except subprocess.TimeoutExpired:
        p.terminate()
        _, err = p.communicate(timeout=15 * SLOW)
        return None, err


def test_second_instance_on_same_address_is_refused(ballast, tmp_path):
    first = ballast(EXCLUSIVE, workers=None, opts="")
    pidfile = os.path.join(first.dir, "ballast.pid")
    assert open(pidfile).read().strip() == str(first.pid)
    port = first.port
    assert listening_ports().get(port) == 2  # one socket per worker

    # Same config, same pid file: refused at bind, in nginx's words, before the pid file.
    rc, err = second_instance(tmp_path, first.conf_text)
    assert rc == 1, err
    assert "bind() to 127.0.0.1:%d failed (98: Address already in use)" % port in err, err
    assert "LeakSanitizer" not in err, err  # (the ASan run) a refused start gives back its config

    # The first keeps its pid file, every listening socket and so all the traffic.
    assert open(pidfile).read().strip() == str(first.pid)
    assert listening_ports().get(port) == 2
    for _ in range(20):
        r = first.get("/")
        assert (r.status, r.body) == (200, b"first"), r


def test_second_instance_with_same_pid_file_is_refused(ballast, tmp_path):
    first = ballast(EXCLUSIVE, workers=None, opts="")
    pidfile = os.path.join(first.dir, "ballast.pid")
    other = first.conf_text.replace("127.0.0.1:%d" % first.port,
                                    "127.0.0.1:%s" % render("@port@", {}))
    rc, err = second_instance(tmp_path, other)
    assert rc == 1, err
    assert 'pid file "%s" is locked by a running ballast (pid %d)' % (pidfile, first.pid) \
        in err, err
    assert open(pidfile).read().strip() == str(first.pid)
    r = first.get("/")
    assert r.status == 200, r
    # The owner removes it at exit.
    assert first.stop() == 0
    assert not os.path.exists(pidfile)


def test_stale_pid_file_is_taken_over(ballast, tmp_path):
    pidfile = tmp_path / "stale.pid"
    pidfile.write_text("999999\n")
    b = ballast("""
pid %s;
http { server { listen 127.0.0.1:@port@; location / { return 200 "ok"; } } }
""" % pidfile)
    # The port accepts (the listener is bound) a moment before the pid file is written, as
    # with nginx: wait for the file rather than race it.
    want = "%d\n" % b.pid
    assert wait_for(lambda: pidfile.read_text() == want), pidfile.read_text()


def test_listen_reuseport_lets_processes_share(ballast):
    first = ballast(EXCLUSIVE, workers=None, opts="reuseport")
    second = ballast(first.conf_text.replace("ballast.pid", "second.pid")
                     .replace('"first"', '"second"'), workers=None, port=first.port)
    assert wait_for(lambda: listening_ports().get(first.port) == 4)
    seen = set()
    for _ in range(200):
        r = first.get("/")
        assert r.status == 200, r
        seen.add(r.body)
        if len(seen) == 2:
            break
    assert seen == {b"first", b"second"}
    assert second.stop() == 0
    r = first.get("/")
    assert r.body == b"first", r


# --------------------------------------------------------------------------------------------
# Nothing accepted silently; what this build lacks is named for what it is
# --------------------------------------------------------------------------------------------

def check(tmp_path, text, name="t.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p), run_ballast(["-t", "-c", str(p)])


@pytest.mark.parametrize("text,line", [
    ("", 1),
    ("# nothing but a comment\n", 1),
    ("worker_processes 1;\nevents { worker_connections 64; }\n", 2),
])
def test_config_without_http_is_an_error(tmp_path, text, line):
    path, r = check(tmp_path, text)
    assert r.returncode == 1, r
    assert 'ballast: no "http" section in %s:%d' % (path, line) in r.stderr, r.stderr
    assert "test failed" in r.stderr


def test_config_without_http_does_not_start(tmp_path):
    p = tmp_path / "empty.conf"
    p.write_text("")
    r = run_ballast(["-c", str(p)])
    assert r.returncode == 1, r
    assert 'no "http" section' in r.stderr


SERVER = "http {\n    server {\n        listen 127.0.0.1:18080%s;\n%s    }\n%s}\n"


@pytest.mark.parametrize("text,needle", [
    # The line's place is given by a marker: the directive on the line that holds it.
    (SERVER % ("", "        ssl_crl crl.pem;\n", ""),
     'client certificate revocation lists are not supported in this build: "ssl_crl"'),
    (SERVER % ("", "        ssl on;\n", ""), 'TLS is not supported in this build: "ssl" directive'),
    # map, geo and split_clients are supported; geo's ranges are not yet.
    ("http {\n    geo $remote_addr $zone { ranges; }\n}\n",
     '"ranges" inside "geo" is not supported in this build'),
    (SERVER % ("", "        limit_rate 10k;\n", ""),
     'bandwidth limits are not supported in this build: "limit_rate" directive'),
    (SERVER % ("", "        auth_basic x;\n", ""),
     'access control is not supported in this build: "auth_basic" directive'),
    (SERVER % ("", "        proxy_store on;\n", ""),
     'caching is not supported in this build: "proxy_store" directive'),
    (SERVER % ("", "        sub_filter a b;\n", ""),
     'changing response headers and bodies is not supported in this build: "sub_filter"'),
    (SERVER % ("", "        if ($http_x) { proxy_pass http://127.0.0.1:1; }\n", ""),
     '"proxy_pass" inside "if" is not supported in this build: only return, rewrite, set and '
     'break'),
])
def test_missing_feature_is_named(tmp_path, text, needle):
    path, r = check(tmp_path, text)
    assert r.returncode == 1, r
    line = next(i for i, l in enumerate(text.split("\n"), 1)
                if any(w in l for w in ("ssl", "http2", "proxy_protocol", "https", "geo ",
                                        "Upgrade", "Connection", "limit_rate", "auth_basic",
                                        "proxy_store", "sub_filter", "if (", "udp")))
    first = r.stderr.split("\n")[0]
    assert first.startswith("ballast: ") and needle in first, r.stderr
    assert first.endswith(" in %s:%d" % (path, line)), r.stderr
    assert "invalid value" not in r.stderr and "unknown directive" not in r.stderr


def test_harmless_missing_feature_loads_with_a_warning(tmp_path):
    """Lines that only tune what this build does not do load, as in Debian's stock nginx.conf,
    with one warning each that says what is ignored."""
    text = ("http {\n    gunzip on;\n    brotli on;\n    ssl_stapling on;\n"
            "    server { listen 127.0.0.1:18080 deferred; location / { return 200; } }\n}\n")
    path, r = check(tmp_path, text)
    assert r.returncode == 0, r
    for needle, line in (('compression is not supported in this build, "gunzip" directive '
                          'ignored', 2),
                         ('"brotli" directive ignored', 3),
                         ('OCSP stapling is not supported in this build, "ssl_stapling" '
                          'directive ignored', 4),
                         ('"deferred" parameter of "listen" ignored', 5)):
        warned = [l for l in r.stderr.split("\n") if needle in l]
        assert len(warned) == 1 and "[warn]" in warned[0], r.stderr
        assert warned[0].endswith(" in %s:%d" % (path, line)), r.stderr


# --------------------------------------------------------------------------------------------
# Variables with nginx's values
# --------------------------------------------------------------------------------------------

PROXY_VARS = """
    upstream app { server 127.0.0.1:@pb@; }
    server {
        listen 127.0.0.1:@port@;
        proxy_set_header X-PH "$proxy_host";
        proxy_set_header X-PP "$proxy_port";
        location /group/ { proxy_pass http://app; }
        location /addr/ { proxy_pass http://127.0.0.1:@pb@; }
        location /uri/ { proxy_pass http://127.0.0.1:@pb@/other/; }
        location /host/ { proxy_pass http://app; proxy_set_header Host $proxy_host; }
    }
"""


def test_proxy_host_and_port_match_nginx(ballast, backend, nginx):
    be = backend("b")
    seen = {}
    for name in ("ballast", "nginx"):
        values = {"pb": be.port}
        text = render(PROXY_VARS, values)
        if name == "ballast":
            proxy = ballast("http {\n%s\n}\n" % text)
            port = proxy.port
        else:
            port = values["port"]
            nginx(text, port)
        for path in ("/group/x", "/addr/x", "/uri/x", "/host/x"):
            n = len(be.requests)
            r = http_get(port, path)
            assert r.status == 200, (name, path, r)
            req = be.requests[n]
            seen.setdefault(path, {})[name] = (req.header("X-PH"), req.header("X-PP"),
                                               req.header("Host") if path == "/host/x" else "")
    for path, got in seen.items():
        assert got["ballast"] == got["nginx"], (path, got)
    assert seen["/group/x"]["nginx"][:2] == ("app", "80")
    assert seen["/addr/x"]["nginx"][:2] == ("127.0.0.1:%d" % be.port, str(be.port))


# --------------------------------------------------------------------------------------------
# Access log formats
# --------------------------------------------------------------------------------------------

def read_log(path, n):
    def get():
        try:
            lines = open(path).read().split("\n")[:-1]
        except FileNotFoundError:
            return None
        return lines if len(lines) >= n else None
    got = wait_for(get, 3 * SLOW)
    assert got, "no %d lines in %s" % (n, path)
    return got


def without_time(line):
    a, b = line.index("["), line.index("]")
    return line[:a] + line[b:]


def test_combined_is_nginx_combined(ballast, nginx, tmp_path):
    """The default layout and `combined` are nginx's combined, field for field, escapes too."""
    requests = [
        ("/a?x=1", {}),
        ("/b", {"Referer": "http://example.com/page?q=\"quoted\"", "User-Agent": "curl/8.0"}),
        ("/c", {"User-Agent": "agent with \\backslash and \"quotes\""}),
        ("/missing", {"Referer": "-"}),
    ]
    body = """
    server {
        listen 127.0.0.1:%d;
        access_log %s %s;
        location / { return 200 "hello"; }
        location = /missing { return 404 "nope"; }
    }
"""
    logs = {}
    for name in ("ballast", "ballast-default", "nginx"):
        port = int(render("@port@", {}))
        log = str(tmp_path / ("%s.log" % name))
        fmt = "" if name == "ballast-default" else "combined"
        if name == "nginx":
            nginx(body % (port, log, fmt), port)
        else:
            ballast("http {\n%s\n}\n" % (body % (port, log, fmt)))
        for path, headers in requests:
            r = http_get(port, path, headers=headers)
            assert r.status in (200, 404), r
        logs[name] = [without_time(l) for l in read_log(log, len(requests))]
    assert logs["ballast"] == logs["nginx"], logs
    assert logs["ballast-default"] == logs["nginx"], logs


@pytest.mark.parametrize("fmt", ["main", "Combined", "upstream_time"])
def test_unknown_log_format_is_an_error(tmp_path, fmt):
    text = ("http {\n    server {\n        listen 127.0.0.1:18080;\n"
            "        access_log %s/a.log %s;\n        location / { return 200; }\n    }\n}\n"
            % (tmp_path, fmt))
    path, r = check(tmp_path, text)
    assert r.returncode == 1, r
    assert 'ballast: unknown log format "%s" in %s:4' % (fmt, path) in r.stderr, r.stderr


def test_log_format_errors_name_the_line(tmp_path):
    for text, want in [
        ("log_format main '$remote_addr';\n    log_format main '$status';", 
         'duplicate "log_format" name "main" in %s:3'),
        ("log_format combined '$remote_addr';", 'duplicate "log_format" name "combined" in %s:2'),
        ("log_format j escape=yaml '$status';", 'unknown log format escaping "yaml" in %s:2'),
        ("log_format j '$no_such_thing';", 'unknown "no_such_thing" variable in %s:2'),
        ("access_log /tmp/x.log combined buffer=8k;\n    access_log /tmp/x.log combined "
         "buffer=16k;", 'access_log "/tmp/x.log" already defined with conflicting parameters '
         'in %s:3'),
        ("access_log /tmp/x.log combined buffer=0;", 'invalid buffer size "0" in %s:2'),
        ("access_log syslog:server=127.0.0.1 combined;",
         'logging to syslog is not supported in this build: "access_log syslog:" in %s:2'),
        ("access_log /tmp/x.log combined gzip=5;",
         'compressed access logs are not supported in this build: "gzip=5" in %s:2'),
        ("access_log /tmp/x.log combined if=$nosuch;", 'unknown "nosuch" variable in %s:2'),
        ("access_log /tmp/$host.log;", 'variables in "access_log" paths are not supported '
         'in %s:2'),
    ]:
        path, r = check(tmp_path, "http {\n    %s\n}\n" % text)
        assert r.returncode == 1, r
        assert ("ballast: " + want % path) in r.stderr, (text, r.stderr)


# --------------------------------------------------------------------------------------------
# Server and Date: ballast's own, as nginx's proxy_hide_header defaults have it
# --------------------------------------------------------------------------------------------

UPSTREAM_HEAD = (b"HTTP/1.1 200 OK\r\nServer: upstream/9.9\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\n"
                 b"X-Pad: avoid browser bug\r\nX-Accel-Buffering: no\r\n"
                 b"X-Secret: s\r\nX-Kept: k\r\nContent-Length: 2\r\n\r\nok")


def headers_of(r):
    return [(k.lower(), v) for k, v in r.headers]


def proxied(ballast, backend, location_extra="", server_extra=""):
    be = backend("b").route("/", raw_route(UPSTREAM_HEAD))
    return ballast("""
http {
    server {
        listen 127.0.0.1:@port@;
        %s
        location / { proxy_pass http://127.0.0.1:@pb@; %s }
    }
}
""" % (server_extra, location_extra), pb=be.port)


def test_upstream_server_and_date_hidden_by_default(ballast, backend, nginx):
    b = proxied(ballast, backend)
    r = b.get("/")
    assert (r.status, r.body) == (200, b"ok"), r
    assert r.headers_all("Server") == ["ballast/0.1.0"], r.headers
    dates = r.headers_all("Date")
    assert len(dates) == 1 and "2001" not in dates[0], r.headers
    assert time.strptime(dates[0], "%a, %d %b %Y %H:%M:%S GMT")
    for gone in ("X-Pad", "X-Accel-Buffering"):
        assert r.header(gone) is None, r.headers
    assert r.header("X-Secret") == "s" and r.header("X-Kept") == "k", r.headers
    # The same fields as nginx sends (its Server reads nginx/1.22.1), Server and Date first as
    # in nginx; nginx moves Content-Length up too, ballast keeps the upstream's order.
    be = backend("n").route("/", raw_route(UPSTREAM_HEAD))
    values = {"pb": be.port}
    body = render("server { listen 127.0.0.1:@port@; "
                  "location / { proxy_pass http://127.0.0.1:@pb@; } }", values)
    nginx(body, values["port"])
    n = http_get(values["port"], "/")
    assert n.status == 200, n
    names = [k for k, _ in headers_of(r) if k != "connection"]
    nginx_names = [k for k, _ in headers_of(n) if k != "connection"]
    assert names[:2] == nginx_names[:2] == ["server", "date"], (r.headers, n.headers)
    assert sorted(names) == sorted(nginx_names), (r.headers, n.headers)


def test_server_tokens_off(ballast, backend):
    b = proxied(ballast, backend, server_extra="server_tokens off;")
    r = b.get("/")
    assert r.headers_all("Server") == ["ballast"], r.headers
    b2 = ballast("""
http {
    server_tokens off;
    server { listen 127.0.0.1:@port@; location = /x { return 404; } }
}
""")
    r = b2.get("/x")
    assert r.status == 404 and r.headers_all("Server") == ["ballast"], r
    assert b"<hr><center>ballast</center>" in r.body, r.body
    b3 = ballast("""
http { server { listen 127.0.0.1:@port@; location = /x { return 404; } } }
""")
    r = b3.get("/x")
    assert r.headers_all("Server") == ["ballast/0.1.0"], r
    assert b"<hr><center>ballast/0.1.0</center>" in r.body, r.body


def test_proxy_pass_header_server_and_date(ballast, backend):
    b = proxied(ballast, backend, "proxy_pass_header Server; proxy_pass_header Date;"
                                  " proxy_pass_header X-Accel-Buffering;")
    r = b.get("/")
    assert r.headers_all("Server") == ["upstream/9.9"], r.headers
    assert r.headers_all("Date") == ["Mon, 01 Jan 2001 00:00:00 GMT"], r.headers
    assert r.header("X-Accel-Buffering") == "no" and r.header("X-Pad") is None, r.headers


def test_proxy_hide_header(ballast, backend):
    b = proxied(ballast, backend, "proxy_hide_header X-Secret;")
    r = b.get("/")
    assert r.header("X-Secret") is None and r.header("X-Kept") == "k", r.headers
    assert r.headers_all("Server") == ["ballast/0.1.0"], r.headers


def test_pass_and_hide_inherit_together(ballast, backend):
    """nginx's rule: a level with proxy_hide_header or proxy_pass_header inherits neither."""
    b = proxied(ballast, backend, "proxy_hide_header X-Secret;",
                server_extra="proxy_pass_header Server;")
    r = b.get("/")
    assert r.headers_all("Server") == ["ballast/0.1.0"], r.headers
    assert r.header("X-Secret") is None, r.headers


def test_proxy_pass_header_of_a_passed_field_is_an_error(tmp_path):
    path, r = check(tmp_path, "http {\n    proxy_pass_header X-Kept;\n"
                              "    server { listen 127.0.0.1:18080; }\n}\n")
    assert r.returncode == 1, r
    assert '"X-Kept" is passed to the client anyway' in r.stderr and ":2" in r.stderr, r.stderr


# --------------------------------------------------------------------------------------------
# nginx's own configs: Debian's stock nginx.conf and its default site
# --------------------------------------------------------------------------------------------

STOCK = "/etc/nginx/nginx.conf"
STOCK_SITE = "/etc/nginx/sites-available/default"


def stock_copy(tmp_path, listen=None, root=None):
    """Debian's nginx.conf and default site under tmp_path, paths moved there, with no module
    enabled (modules-enabled/*.conf matches nothing) and ballast's conf/mime.types."""
    if not (os.path.exists(STOCK) and os.path.exists(STOCK_SITE)):
        pytest.skip("Debian's nginx package is not installed")
    etc = tmp_path / "etc"
    for d in ("modules-enabled", "conf.d", "sites-enabled"):
        (etc / d).mkdir(parents=True, exist_ok=True)
    main = open(STOCK).read().replace("/etc/nginx/", str(etc) + "/")
    main = main.replace("/var/log/nginx/", str(tmp_path) + "/").replace("/run/", str(tmp_path) + "/")
    (etc / "nginx.conf").write_text(main)
    shutil.copy(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "conf", "mime.types"), etc / "mime.types")
    site = open(STOCK_SITE).read()
    if listen:
        site = site.replace("listen 80 default_server;", "listen 127.0.0.1:%d default_server;"
                            % listen).replace("listen [::]:80 default_server;", "")
    if root:
        site = site.replace("root /var/www/html;", "root %s;" % root)
    (etc / "sites-enabled" / "default").write_text(site)
    return str(etc / "nginx.conf")


def test_debian_stock_config_loads(tmp_path):
    conf = stock_copy(tmp_path)
    r = run_ballast(["-t", "-c", conf])
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr
    # The parts this build does not do are named, not silently dropped.
    assert '"gzip" directive ignored' not in r.stderr, r.stderr  # gzip is real now
    assert '"ssl_protocols" directive ignored' not in r.stderr, r.stderr  # TLS is real now


def make_site(root):
    os.makedirs(os.path.join(root, "dir"))
    os.makedirs(os.path.join(root, "noindex"))
    for name, text in (("index.html", "<p>home</p>"), ("dir/index.html", "dir"),
                       ("a.css", "b{}"), ("f.unknownext", "x"), ("data.json", "{}")):
        with open(os.path.join(root, name), "w") as f:
            f.write(text)


SITE_PATHS = ("/", "/index.html", "/dir", "/dir/", "/noindex/", "/a.css", "/f.unknownext",
              "/data.json", "/missing", "/a.css/")


def test_debian_default_site_serves_as_nginx(ballast, nginx, tmp_path):
    """The stock site (root, index, try_files $uri $uri/ =404, mime.types, default_type) gives
    the same status, type and body as nginx on the same files."""
    root = str(tmp_path / "www")
    make_site(root)
    port = int(render("@port@", {}))
    conf = stock_copy(tmp_path / "b", listen=port, root=root)
    body = open(os.path.join(os.path.dirname(conf), "sites-enabled", "default")).read()
    # The test harness finds the port in the text: the site goes inline, comments (the mail
    # block's listen lines) go, and so does `user` (the files are root's).
    text = open(conf).read().replace("user www-data;", "").replace(
        "include %s/sites-enabled/*;" % os.path.dirname(conf), body)
    text = "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("#"))
    b = ballast(text, workers=None)
    nport = int(render("@port@", {}))
    nginx("include %s/mime.types;\ndefault_type application/octet-stream;\n%s" % (
        os.path.dirname(conf), body.replace(str(port), str(nport))), nport)
    for path in SITE_PATHS:
        got = b.get(path)
        want = http_get(nport, path)
        assert got.status == want.status, (path, got, want)
        if got.status == 200:
            assert got.body == want.body, path
            assert got.header("Content-Type") == want.header("Content-Type"), (path, got, want)
        if got.status == 301:
            assert got.header("Location").endswith(path + "/"), got


def test_try_files_forms(tmp_path):
    """Any files load (http/static.c tries them); a last argument that is no fallback is
    named with its line."""
    text = ("http {\n    server {\n        listen 127.0.0.1:18080;\n        root /tmp;\n"
            "        location / { try_files $uri $uri.html /index.html =404; }\n    }\n}\n")
    path, r = check(tmp_path, text)
    assert r.returncode == 0, r
    text = text.replace("=404", "fallback")
    path, r = check(tmp_path, text)
    assert r.returncode == 1, r
    assert ('the last "try_files" argument must be =CODE, @NAME or a URI, not "fallback" in '
            '%s:5' % path) in r.stderr, r.stderr


def test_user_drops_privileges(ballast, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    b = ballast("""
user nobody nogroup;
http { server { listen 127.0.0.1:@port@; location / { return 200 "up"; } } }
""")
    r = b.get("/")
    assert (r.status, r.body) == (200, b"up"), r
    status = open("/proc/%d/status" % b.pid).read()
    uid = [l.split()[1:] for l in status.split("\n") if l.startswith("Uid:")][0]
    assert set(uid) == {"65534"}, status


def test_user_that_does_not_exist(tmp_path):
    path, r = check(tmp_path, "user no-such-user-here;\nhttp { }\n")
    assert r.returncode == 1, r
    assert 'getpwnam("no-such-user-here") failed in %s:1' % path in r.stderr, r.stderr
