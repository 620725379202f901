"""What a newcomer and an nginx operator meet first: exclusive listeners and a locked pid file,
nothing accepted silently, honest messages for what this build lacks, nginx's own configs."""
import os
import subprocess

import pytest

from conftest import BALLAST_BIN, SLOW, listening_ports, render, run_ballast, wait_for

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
    assert pidfile.read_text() == "%d\n" % b.pid


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
    (SERVER % (" ssl", "", ""),
     'TLS is not supported in this build: "ssl" parameter of "listen"'),
    (SERVER % (" http2", "", ""),
     'HTTP/2 is not supported in this build: "http2" parameter of "listen"'),
    (SERVER % (" proxy_protocol", "", ""),
     'the PROXY protocol is not supported in this build: "proxy_protocol" parameter'),
    (SERVER % ("", "        ssl on;\n", ""), 'TLS is not supported in this build: "ssl" directive'),
    (SERVER % ("", "        location / { proxy_pass https://127.0.0.1:9; }\n", ""),
     'TLS is not supported in this build: "https://127.0.0.1:9" in "proxy_pass"'),
    # nginx's WebSocket recipe, from its map to its headers.
    ("http {\n    map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n}\n",
     'WebSocket proxying is not supported in this build: "map" directive'),
    (SERVER % ("", "        location / { proxy_pass http://127.0.0.1:9;\n"
               "            proxy_http_version 1.1;\n"
               "            proxy_set_header Upgrade $http_upgrade; }\n", ""),
     'WebSocket proxying is not supported in this build: "proxy_set_header Upgrade"'),
    (SERVER % ("", "        location / { proxy_pass http://127.0.0.1:9;\n"
               "            proxy_set_header Connection \"upgrade\"; }\n", ""),
     'WebSocket proxying is not supported in this build: "proxy_set_header Connection"'),
    (SERVER % ("", "        limit_req zone=one burst=5;\n", ""),
     'rate and connection limits are not supported in this build: "limit_req" directive'),
    ("http {\n    limit_req_zone $binary_remote_addr zone=one:10m rate=1r/s;\n}\n",
     'rate and connection limits are not supported in this build: "limit_req_zone"'),
    (SERVER % ("", "        allow 10.0.0.0/8;\n", ""),
     'access control is not supported in this build: "allow" directive'),
    (SERVER % ("", "        proxy_cache one;\n", ""),
     'caching is not supported in this build: "proxy_cache" directive'),
    (SERVER % ("", "        add_header X-Frame-Options DENY;\n", ""),
     'changing response headers and bodies is not supported in this build: "add_header"'),
    (SERVER % ("", "        if ($http_x) { return 403; }\n", ""),
     'rewrite, if and set are not supported in this build: "if" directive'),
    ("stream {\n    server { listen 12345; }\n}\n",
     'L4 proxying (stream) is not supported in this build: "stream" directive'),
])
def test_missing_feature_is_named(tmp_path, text, needle):
    path, r = check(tmp_path, text)
    assert r.returncode == 1, r
    line = next(i for i, l in enumerate(text.split("\n"), 1)
                if any(w in l for w in ("ssl", "http2", "proxy_protocol", "https", "map ",
                                        "Upgrade", "Connection", "limit_req", "allow",
                                        "proxy_cache", "add_header", "if (", "stream")))
    first = r.stderr.split("\n")[0]
    assert first.startswith("ballast: ") and needle in first, r.stderr
    assert first.endswith(" in %s:%d" % (path, line)), r.stderr
    assert "invalid value" not in r.stderr and "unknown directive" not in r.stderr


def test_harmless_missing_feature_loads_with_a_warning(tmp_path):
    """Lines that only tune what this build does not do load, as in Debian's stock nginx.conf,
    with one warning each that says what is ignored."""
    text = ("http {\n    gzip on;\n    gzip_types text/plain;\n    ssl_protocols TLSv1.2;\n"
            "    server { listen 127.0.0.1:18080 deferred; location / { return 200; } }\n}\n")
    path, r = check(tmp_path, text)
    assert r.returncode == 0, r
    for needle, line in (('compression is not supported in this build, "gzip" directive '
                          'ignored', 2),
                         ('"gzip_types" directive ignored', 3),
                         ('TLS is not supported in this build, "ssl_protocols" directive '
                          'ignored', 4),
                         ('"deferred" parameter of "listen" ignored', 5)):
        warned = [l for l in r.stderr.split("\n") if needle in l]
        assert len(warned) == 1 and "[warn]" in warned[0], r.stderr
        assert warned[0].endswith(" in %s:%d" % (path, line)), r.stderr

