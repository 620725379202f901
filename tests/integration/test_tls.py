"""TLS to clients: SNI, RSA and ECDSA certificates, session resumption, plain HTTP on a TLS port,
a stalled handshake, load-time certificate errors, keep-alive with large bodies both ways, and
proxying to a plain backend. Certificates are made by openssl in the test's tmp dir."""
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import SLOW, Conn, body_sha256, build_request, gen_blocks, run_ballast, sha256


def make_cert(d, name, cn, kind="rsa", days=2, sans=None):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    new = ["-newkey", "rsa:2048"] if kind == "rsa" else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    san = ",".join("DNS:" + s for s in (sans or [cn]))
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", str(days), "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=" + san, "-keyout", key, "-out", crt] + new,
                   check=True, capture_output=True, timeout=60)
    return crt, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    c = {
        "a_rsa": make_cert(d, "a_rsa", "a.test", sans=["a.test", "*.a.test"]),
        "a_ec": make_cert(d, "a_ec", "a.test", "ec", sans=["a.test", "*.a.test"]),
        "b": make_cert(d, "b", "b.test", "ec"),
    }
    c["ca"] = os.path.join(d, "ca.pem")
    with open(c["ca"], "w") as f:
        for k in ("a_rsa", "a_ec", "b"):
            f.write(open(c[k][0]).read())
    c["dir"] = d
    return c


def tls_conf(certs, server_a="", server_b="", http=""):
    return """
http {
    client_header_timeout 2s;
    client_max_body_size 0;
    %s
    upstream app { server 127.0.0.1:@pb@; }
    server {
        listen 127.0.0.1:@port@ ssl;
        server_name a.test *.a.test;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_certificate %s;
        ssl_certificate_key %s;
        location /vars { return 200 "$scheme $ssl_protocol $ssl_server_name a\\n"; }
        location / { proxy_pass http://app; }
        %s
    }
    server {
        listen 127.0.0.1:@port@ ssl;
        server_name b.test;
        ssl_certificate %s;
        ssl_certificate_key %s;
        location /vars { return 200 "$scheme $ssl_protocol $ssl_server_name b\\n"; }
        %s
    }
}
""" % (http, certs["a_rsa"][0], certs["a_rsa"][1], certs["a_ec"][0], certs["a_ec"][1], server_a,
       certs["b"][0], certs["b"][1], server_b)


def tcurl(port, host, path, cacert, *args):
    r = subprocess.run(["curl", "-sS", "--max-time", str(int(10 * SLOW)), "--cacert", cacert,
                        "--resolve", "%s:%d:127.0.0.1" % (host, port),
                        "https://%s:%d%s" % (host, port, path)] + list(args),
                       capture_output=True, text=True, timeout=30 * SLOW)
    return r


@pytest.fixture
def px(ballast, backend, certs):
    be = backend("b")
    return ballast(tls_conf(certs), pb=be.port)


@pytest.mark.parametrize("ver", ["--tlsv1.2", "--tlsv1.3"])
def test_sni_picks_the_server_block(px, certs, ver):
    maxv = ["--tls-max", "1.2"] if ver == "--tlsv1.2" else []
    proto = "TLSv1.2" if ver == "--tlsv1.2" else "TLSv1.3"
    for host, tag in (("a.test", "a"), ("x.a.test", "a"), ("b.test", "b")):
        r = tcurl(px.port, host, "/vars", certs["ca"], ver, *maxv)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "https %s %s %s\n" % (proto, host, tag), r.stdout


def test_unknown_name_gets_the_default_server(px, certs):
    r = tcurl(px.port, "c.test", "/vars", certs["ca"], "-k")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(" c.test a\n"), r.stdout


@pytest.mark.parametrize("cert,cipher", [("a_rsa", "ECDHE-RSA-AES128-GCM-SHA256"),
                                         ("a_ec", "ECDHE-ECDSA-AES128-GCM-SHA256")])
def test_rsa_and_ecdsa_by_client_ability(px, certs, cert, cipher):
    """A client that can only take one key type gets that certificate (verified against it
    alone)."""
    r = tcurl(px.port, "a.test", "/vars", certs[cert][0], "--tlsv1.2", "--tls-max", "1.2",
              "--ciphers", cipher)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("https TLSv1.2 a.test"), r.stdout


def s_client(port, *args):
    req = b"GET /vars HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "a.test", "-ign_eof"] + list(args),
                       input=req, capture_output=True, timeout=20 * SLOW)
    return r.stdout.decode("latin-1")


@pytest.mark.parametrize("how", ["tls13-ticket", "tls12-ticket", "tls12-cache", "tls13-cache"])
def test_session_resumption(ballast, backend, certs, tmp_path, how):
    tickets = "ticket" in how
    extra = "ssl_session_cache shared:SSL:1m; ssl_session_tickets %s;" % (
        "on" if tickets else "off")
    b = ballast(tls_conf(certs, server_a=extra), pb=backend("b").port)
    sess = str(tmp_path / "sess.pem")
    args = ["-tls1_2"] if how.startswith("tls12") else ["-tls1_3"]
    if not tickets:
        args.append("-no_ticket")
    first = s_client(b.port, "-sess_out", sess, *args)
    assert "New, TLS" in first and "https TLSv1." in first, first
    second = s_client(b.port, "-sess_in", sess, *args)
    assert "Reused, TLS" in second, second
    assert "https TLSv1." in second, second


def test_no_session_cache_no_tickets_means_no_resumption(ballast, backend, certs, tmp_path):
    extra = "ssl_session_cache off; ssl_session_tickets off;"
    b = ballast(tls_conf(certs, server_a=extra), pb=backend("b").port)
    sess = str(tmp_path / "sess.pem")
    s_client(b.port, "-sess_out", sess, "-tls1_2")
    if os.path.exists(sess):
        second = s_client(b.port, "-sess_in", sess, "-tls1_2")
        assert "Reused" not in second and "https TLSv1.2" in second, second


def test_plain_http_to_tls_port(px):
    with Conn(px.port) as c:
        c.send(build_request("GET", "/vars", host="a.test"))
        r = c.read_response()
        assert r.status == 400, r
        assert b"The plain HTTP request was sent to HTTPS port" in r.body, r
        assert c.closed(3)
    # and the port still speaks TLS
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", px.port), timeout=5 * SLOW) as s:
        with ctx.wrap_socket(s, server_hostname="a.test") as t:
            assert t.version() in ("TLSv1.2", "TLSv1.3")


def test_stalled_handshake_is_timed_out_and_others_served(ballast, backend, certs):
    b = ballast(tls_conf(certs), pb=backend("b").port)
    stalled = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", b.port), timeout=10 * SLOW)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, cut short
        stalled.append(s)
    r = tcurl(b.port, "a.test", "/vars", certs["ca"])
    assert r.returncode == 0 and r.stdout.startswith("https "), r.stderr
    t0 = time.monotonic()
    for s in stalled:
        try:
            d = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            d = b""
        assert d == b"" or d.startswith(b"\x15"), d  # closed (maybe after an alert)
        s.close()
    assert time.monotonic() - t0 < 8 * SLOW


def test_handshake_failure_is_logged_not_fatal(ballast, backend, certs, tmp_path):
    conf = tls_conf(certs).replace("http {", "error_log @tmp@/error.log info;\nhttp {", 1)
    b = ballast(conf, pb=backend("b").port)
    with socket.create_connection(("127.0.0.1", b.port), timeout=5 * SLOW) as s:
        s.sendall(b"\x16\x03\x01\x00\x05garbage-not-a-hello" * 4)
        try:
            s.recv(100)
        except ConnectionResetError:
            pass
    r = tcurl(b.port, "a.test", "/vars", certs["ca"])
    assert r.returncode == 0, r.stderr
    log = open(os.path.join(b.dir, "error.log")).read()
    assert "SSL_do_handshake() failed" in log, log


def test_keepalive_large_bodies_both_ways(px, certs):
    """Two requests on one TLS connection: a 4 MB upload then a 4 MB download, through the
    proxy to a plain backend, intact."""
    ctx = ssl.create_default_context(cafile=certs["ca"])
    size = 4 << 20
    with Conn(px.port, 60) as c:
        c.sock = ctx.wrap_socket(c.sock, server_hostname="a.test")
        c.send(build_request("POST", "/ul", [("Content-Length", str(size))], host="a.test"))
        for blk in gen_blocks(size, 31):
            c.send(blk)
        r = c.read_response("POST")
        assert r.status == 200, r
        echo = r.json()
        assert echo["body_len"] == size and echo["body_sha256"] == body_sha256(size, 31)
        c.send(build_request("GET", "/dl?size=%d&seed=32" % size, host="a.test"))
        r = c.read_response()
        assert r.status == 200, r
        assert sha256(r.body) == body_sha256(size, 32)


@pytest.mark.parametrize("case", ["missing-cert", "mismatched-key", "no-cert"])
def test_bad_certificates_are_load_errors(tmp_path, certs, case):
    crt, key = certs["a_rsa"]
    if case == "missing-cert":
        crt = str(tmp_path / "nope.crt")
    if case == "mismatched-key":
        key = certs["b"][1]
    lines = ["http {", "    server {", "        listen 127.0.0.1:18443 ssl;"]
    if case != "no-cert":
        lines += ["        ssl_certificate %s;" % crt, "        ssl_certificate_key %s;" % key]
    lines += ["    }", "}", ""]
    p = tmp_path / "t.conf"
    p.write_text("\n".join(lines))
    r = run_ballast(["-t", "-c", str(p)])
    assert r.returncode == 1, r
    first = r.stderr.split("\n")[0]
    want = {"missing-cert": ("cannot load certificate", 4),
            "mismatched-key": ("does not match certificate", 5),
            "no-cert": ("no \"ssl_certificate\"", 2)}[case]
    assert want[0] in first, r.stderr
    assert first.endswith(" in %s:%d" % (p, want[1])), r.stderr


def test_expired_certificate_warns(tmp_path):
    d = str(tmp_path)
    key, crt = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-subj", "/CN=old", "-keyout", key, "-out", crt,
                    "-not_before", "20200101000000Z", "-not_after", "20200102000000Z"],
                   capture_output=True, timeout=60)
    if not os.path.exists(crt):  # openssl req without -not_after (OpenSSL < 3.4)
        csr = os.path.join(d, "c.csr")
        subprocess.run(["openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-subj", "/CN=old", "-keyout", key,
                        "-out", csr], check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-signkey", key, "-out", crt,
                        "-days", "-1"], capture_output=True, timeout=60)
    if not os.path.exists(crt) or os.path.getsize(crt) == 0:
        pytest.skip("openssl cannot make an expired certificate here")
    p = tmp_path / "t.conf"
    p.write_text("http {\n  server {\n    listen 127.0.0.1:18443 ssl;\n"
                 "    ssl_certificate %s;\n    ssl_certificate_key %s;\n  }\n}\n" % (crt, key))
    r = run_ballast(["-t", "-c", str(p)])
    if r.returncode == 0 and "has expired" not in r.stderr:
        pytest.skip("the certificate made is not expired")
    assert r.returncode == 0, r.stderr
    assert "has expired, in %s:4" % p in r.stderr, r.stderr


def test_reload_serves_the_new_certificate(ballast, backend, certs, tmp_path):
    import signal
    d = str(tmp_path)
    crt1, key1 = make_cert(d, "one", "r.test", "ec")
    crt2, key2 = make_cert(d, "two", "r.test", "ec")
    live_c, live_k = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
    for src, dst in ((crt1, live_c), (key1, live_k)):
        open(dst, "w").write(open(src).read())
    conf = """http { server { listen 127.0.0.1:@port@ ssl; ssl_certificate %s;
        ssl_certificate_key %s; location / { return 200 "ok\\n"; } } }""" % (live_c, live_k)
    b = ballast(conf)
    assert tcurl(b.port, "r.test", "/", crt1).returncode == 0
    for src, dst in ((crt2, live_c), (key2, live_k)):
        open(dst, "w").write(open(src).read())
    b.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10 * SLOW
    while time.monotonic() < deadline:
        r = tcurl(b.port, "r.test", "/", crt2)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
