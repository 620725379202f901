"""Command line: -t checks a config (ok / errors that name file:line and the directive), -v, -h,
and the config grammar (includes, comments, quotes, units, ignored nginx directives)."""
import os
import re

import pytest

from conftest import http_get, run_ballast


def write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return str(p)


def line_of(text, needle):
    """1-based line number of the first line containing needle."""
    for i, line in enumerate(text.split("\n"), 1):
        if needle in line:
            return i
    raise AssertionError("%r not in config" % needle)


GOOD = """# a comment on the first line
worker_processes 1;   # trailing comment
error_log stderr warn;
shutdown_timeout 5s;
events { worker_connections 1024; }
http {
    access_log off;
    client_header_timeout 10s;
    client_body_timeout 1m;
    keepalive_timeout 75s;
    send_timeout 60s;
    client_max_body_size 1m;
    large_client_header_buffers 4 8k;
    upstream app {
        server 127.0.0.1:9001 weight=5;
        server 127.0.0.1:9002;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:18080;
        server_name example.test "www.example.test";
        location = /exact { return 200 "exact $server_port"; }
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header 'X-Quoted' 'a "b" c';
            proxy_connect_timeout 500ms;
            proxy_send_timeout 30s;
            proxy_read_timeout 1h;
        }
        location /direct { proxy_pass http://127.0.0.1:9003; }
    }
}
"""


def test_t_ok(tmp_path):
    conf = write(tmp_path, "ok.conf", GOOD)
    r = run_ballast(["-t", "-c", conf])
    out = r.stdout + r.stderr
    assert r.returncode == 0, "rc=%d out=%r" % (r.returncode, out)
    assert "ballast: the configuration file %s syntax is ok" % conf in out, out


def test_t_ok_with_include_glob(tmp_path):
    write(tmp_path, "conf.d/a.conf", "server { listen 127.0.0.1:18081; location / { return 200; } }\n")
    write(tmp_path, "conf.d/b.conf", "server { listen 127.0.0.1:18082; location / { return 204; } }\n")
    conf = write(tmp_path, "main.conf", "worker_processes 1;\nhttp {\n    include conf.d/*.conf;\n}\n")
    r = run_ballast(["-t", "-c", conf])
    assert r.returncode == 0, "rc=%d out=%r" % (r.returncode, r.stdout + r.stderr)


def test_include_is_used_at_run_time(ballast):
    b = ballast("http {\n    include conf.d/*.conf;\n}\n",
                files={"conf.d/one.conf": "server { listen 127.0.0.1:@port@;\n"
                                          "  location / { return 200 \"from include\"; } }\n"})
    r = b.get("/")
    assert (r.status, r.body) == (200, b"from include"), r


def test_version(tmp_path):
    r = run_ballast(["-v"])
    out = r.stdout + r.stderr
    assert r.returncode == 0, "rc=%d out=%r" % (r.returncode, out)
    assert re.search(r"ballast version \S+", out), out


def test_help(tmp_path):
    r = run_ballast(["-h"])
    out = r.stdout + r.stderr
    assert r.returncode == 0, "rc=%d out=%r" % (r.returncode, out)
    assert "usage" in out.lower(), out
    assert "-c" in out and "-t" in out, out


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / "nope.conf")
    r = run_ballast(["-t", "-c", missing])
    assert r.returncode == 1, "rc=%d out=%r" % (r.returncode, r.stdout + r.stderr)
    assert missing in r.stderr, r.stderr


def check_error(tmp_path, text, needle, expect, name="bad.conf"):
    """-t on `text` must exit 1 and print `expect` % {"F": file, "L": line of needle}."""
    conf = write(tmp_path, name, text)
    line = line_of(text, needle)
    r = run_ballast(["-t", "-c", conf])
    assert r.returncode == 1, "rc=%d stdout=%r stderr=%r" % (r.returncode, r.stdout, r.stderr)
    want = expect % {"F": conf, "L": line}
    assert want in r.stderr, "want %r in stderr %r" % (want, r.stderr)
    return r


def test_unknown_directive(tmp_path):
    text = ("worker_processes 1;\nhttp {\n    server {\n        listen 127.0.0.1:18080;\n"
            "        location / {\n            prox_pass http://127.0.0.1:9001;\n        }\n"
            "    }\n}\n")
    check_error(tmp_path, text, "prox_pass",
                'ballast: unknown directive "prox_pass" in %(F)s:%(L)d')


def test_unknown_directive_in_included_file(tmp_path):
    inc = "server {\n    listen 127.0.0.1:18080;\n\n    bogus_directive on;\n}\n"
    incpath = write(tmp_path, "inc/site.conf", inc)
    conf = write(tmp_path, "main.conf", "http {\n    include inc/site.conf;\n}\n")
    r = run_ballast(["-t", "-c", conf])
    assert r.returncode == 1, r
    want = 'unknown directive "bogus_directive" in %s:4' % incpath
    assert want in r.stderr, "want %r in %r" % (want, r.stderr)


def test_directive_not_allowed_here(tmp_path):
    text = ("http {\n    proxy_pass http://127.0.0.1:9001;\n    server {\n"
            "        listen 127.0.0.1:18080;\n    }\n}\n")
    check_error(tmp_path, text, "proxy_pass",
                '"proxy_pass" directive is not allowed here in %(F)s:%(L)d')


def test_listen_not_allowed_in_location(tmp_path):
    text = ("http {\n    server {\n        listen 127.0.0.1:18080;\n        location / {\n"
            "            listen 127.0.0.1:18081;\n        }\n    }\n}\n")
    check_error(tmp_path, text, "18081",
                '"listen" directive is not allowed here in %(F)s:%(L)d')


def test_invalid_number_of_arguments(tmp_path):
    text = "http {\n    server {\n        listen;\n        location / { return 200; }\n    }\n}\n"
    check_error(tmp_path, text, "listen;",
                'invalid number of arguments in "listen" directive in %(F)s:%(L)d')


def test_too_many_arguments(tmp_path):
    text = ("http {\n    server {\n        listen 127.0.0.1:18080;\n"
            "        location / { proxy_pass http://127.0.0.1:9001 http://127.0.0.1:9002; }\n"
            "    }\n}\n")
    check_error(tmp_path, text, "proxy_pass",
                'invalid number of arguments in "proxy_pass" directive in %(F)s:%(L)d')


@pytest.mark.parametrize("directive,text,needle", [
    ("keepalive",
     "http {\n upstream u {\n  server 127.0.0.1:9001;\n  keepalive abc;\n }\n"
     " server { listen 127.0.0.1:18080; location / { proxy_pass http://u; } }\n}\n",
     "keepalive abc"),
    ("client_max_body_size",
     "http {\n client_max_body_size 10q;\n server { listen 127.0.0.1:18080; }\n}\n",
     "client_max_body_size"),
    ("proxy_read_timeout",
     "http {\n server {\n  listen 127.0.0.1:18080;\n  location / {\n"
     "   proxy_pass http://127.0.0.1:9001;\n   proxy_read_timeout soon;\n  }\n }\n}\n",
     "proxy_read_timeout"),
    ("worker_processes", "worker_processes many;\nhttp { }\n", "worker_processes"),
    ("listen", "http {\n server {\n  listen 127.0.0.1:99999;\n }\n}\n", "listen"),
    ("weight",
     "http {\n upstream u {\n  server 127.0.0.1:9001 weight=x;\n }\n"
     " server { listen 127.0.0.1:18080; location / { proxy_pass http://u; } }\n}\n",
     "weight=x"),
], ids=["keepalive", "client_max_body_size", "proxy_read_timeout", "worker_processes", "listen",
        "weight"])
def test_invalid_value(tmp_path, directive, text, needle):
    # Wording differs between directives (nginx says "invalid value", "invalid port",
    # "invalid weight", ...): assert on file:line and on the directive or argument named.
    conf = write(tmp_path, "bad.conf", text)
    line = line_of(text, needle)
    r = run_ballast(["-t", "-c", conf])
    assert r.returncode == 1, "rc=%d stderr=%r" % (r.returncode, r.stderr)
    assert "%s:%d" % (conf, line) in r.stderr, "want %s:%d in %r" % (conf, line, r.stderr)
    assert directive in r.stderr or needle.split()[-1] in r.stderr, r.stderr


def test_unknown_upstream(tmp_path):
    text = ("http {\n    server {\n        listen 127.0.0.1:18080;\n"
            "        location / {\n            proxy_pass http://nosuch;\n        }\n    }\n}\n")
    check_error(tmp_path, text, "nosuch",
                'host not found in upstream "nosuch" in %(F)s:%(L)d')


def test_duplicate_listen(tmp_path):
    text = ("http {\n    server {\n        listen 127.0.0.1:18080;\n"
            "        listen 127.0.0.1:18080;\n        location / { return 200; }\n    }\n}\n")
    conf = write(tmp_path, "bad.conf", text)
    r = run_ballast(["-t", "-c", conf])
    assert r.returncode == 1, r
    want = "duplicate listen 127.0.0.1:18080 in %s:4" % conf
    assert want in r.stderr, "want %r in %r" % (want, r.stderr)


@pytest.mark.parametrize("text,line", [
    # unbalanced braces and a missing ';' are syntax errors that still name file:line
    ("http {\n    server {\n        listen 127.0.0.1:18080;\n    }\n}\n}\n", 6),
    ("http {\n    server {\n        listen 127.0.0.1:18080\n    }\n}\n", 4),
    ('http {\n    server {\n        server_name "unterminated;\n    }\n}\n', None),
], ids=["extra_brace", "missing_semicolon", "unterminated_quote"])
def test_syntax_errors(tmp_path, text, line):
    conf = write(tmp_path, "bad.conf", text)
    r = run_ballast(["-t", "-c", conf])
    assert r.returncode == 1, "rc=%d stderr=%r" % (r.returncode, r.stderr)
    assert r.stderr.startswith("ballast: ") or "\nballast: " in r.stderr, r.stderr
    if line is not None:
        assert "%s:%d" % (conf, line) in r.stderr, "want %s:%d in %r" % (conf, line, r.stderr)
    else:
        assert conf in r.stderr, r.stderr


def test_bad_config_does_not_start(tmp_path):
    """Without -t, a bad config also exits 1 (and does not listen)."""
    text = "http {\n    server {\n        listen 127.0.0.1:18080;\n        bogus 1;\n    }\n}\n"
    conf = write(tmp_path, "bad.conf", text)
    r = run_ballast(["-c", conf])
    assert r.returncode == 1, "rc=%d stderr=%r" % (r.returncode, r.stderr)
    assert 'unknown directive "bogus" in %s:4' % conf in r.stderr, r.stderr


def test_units_and_quotes_run(ballast):
    """Sizes, times, quoted arguments with spaces and escaped quotes, and comments, at run time."""
    b = ballast(r"""
events { worker_connections 512; }   # accepted and ignored
shutdown_timeout 2500ms;
http {
    client_max_body_size 2k;      # 2048 bytes
    client_header_timeout 1m;
    keepalive_timeout 1h;
    server {
        listen 127.0.0.1:@port@;
        location = /q { return 200 'single "double" # not a comment'; }
        location = /e { return 200 "esc \"x\" y"; }
    }
}
""")
    r = b.get("/q")
    assert (r.status, r.body) == (200, b'single "double" # not a comment'), r
    r = b.get("/e")
    assert (r.status, r.body) == (200, b'esc "x" y'), r


def test_pid_error_log_and_workers_auto(ballast):
    b = ballast("""
worker_processes auto;
pid @tmp@/ballast.pid;
error_log @tmp@/error.log warn;
http {
    server { listen 127.0.0.1:@port@; location / { return 200 "up"; } }
}
""", workers=None)
    r = b.get("/")
    assert (r.status, r.body) == (200, b"up"), r
    pidfile = os.path.join(b.dir, "ballast.pid")
    with open(pidfile) as f:
        assert f.read().strip() == str(b.pid)
    assert os.path.exists(os.path.join(b.dir, "error.log"))
