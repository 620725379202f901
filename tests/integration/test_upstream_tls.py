"""TLS to upstreams: proxy_pass https:// to real TLS backends (Python ssl servers with a test
CA): verification on with the right and a wrong CA, SNI, client certificates to the upstream,
keep-alive connections that keep their TLS session, session resumption on new connections,
retrying on the next server when a handshake fails, and config errors."""
import os
import re

import pytest

from conftest import proxy_conf, run_ballast, wait_for
from tlsutil import TLSBackend, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_backend(pki):
    made = []

    def make(name="tls", cert="server", **kw):
        b = TLSBackend(pki[cert][0], pki[cert][1], name=name, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def https_conf(to, location="", **kw):
    """proxy_conf whose `location /` proxies over TLS (other locations stay as written)."""
    text = proxy_conf(to, location=location, error_log="info", **kw)
    head, _, tail = text.rpartition("proxy_pass http://")
    return head + "proxy_pass https://" + tail


def error_log(b):
    p = os.path.join(b.dir, "error.log")
    return open(p).read() if os.path.exists(p) else ""


def test_verify_on_right_ca(ballast, tls_backend, pki):
    be = tls_backend()
    b = ballast(https_conf("127.0.0.1:%d" % be.port, location="""
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate %s;""" % pki["ca"][0]))
    r = b.get("/x")
    assert r.status == 200, (r.status, error_log(b))
    assert r.body == b"tls /x\n"
    assert be.handshakes == 1


def test_verify_wrong_ca_is_502_and_logged(ballast, tls_backend, pki):
    be = tls_backend()
    b = ballast(https_conf("127.0.0.1:%d" % be.port, location="""
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate %s;""" % pki["other"][0]))
    r = b.get("/x")
    assert r.status == 502
    # OpenSSL says 21 (unable to verify the first certificate) for a lone leaf whose issuer is
    # unknown, 20 (unable to get local issuer certificate) when a chain came
    assert wait_for(lambda: re.search(r"\[error\] .*upstream SSL certificate verify error: "
                                      r"\(2[01]:unable to [a-z ]+\) while SSL handshaking to "
                                      r"upstream 127.0.0.1:\d+, client 127.0.0.1",
                                      error_log(b))), error_log(b)
    assert be.requests == 0


def test_verify_name_mismatch(ballast, tls_backend, pki):
    be = tls_backend()
    b = ballast(https_conf("127.0.0.1:%d" % be.port, location="""
        proxy_ssl_verify on;
        proxy_ssl_name other.test;
        proxy_ssl_trusted_certificate %s;""" % pki["ca"][0]))
    assert b.get("/").status == 502
    assert wait_for(lambda: 'upstream SSL certificate does not match "other.test"'
                    in error_log(b)), error_log(b)


def test_verify_off_accepts_any_certificate(ballast, tls_backend):
    be = tls_backend(cert="wrong_server")
    b = ballast(https_conf("127.0.0.1:%d" % be.port))
    assert b.get("/").status == 200


def test_sni_sent_when_on(ballast, tls_backend, pki):
    be = tls_backend()
    b = ballast(https_conf(["127.0.0.1:%d" % be.port], group="backend.test", location="""
        proxy_ssl_server_name on;
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate %s;""" % pki["ca"][0]))
    r = b.get("/")
    assert r.status == 200, error_log(b)
    assert r.header("x-sni") == "backend.test"


def test_sni_name_and_variables(ballast, tls_backend, pki):
    be = tls_backend()
    b = ballast(https_conf("127.0.0.1:%d" % be.port, location="""
        proxy_ssl_server_name on;
        proxy_ssl_name $host;"""))
    r = b.get("/", host="api.backend.test")
    assert r.header("x-sni") == "api.backend.test"


def test_sni_not_sent_by_default(ballast, tls_backend):
    be = tls_backend()
    b = ballast(https_conf(["127.0.0.1:%d" % be.port], group="backend.test"))
    r = b.get("/")
    assert r.status == 200
    assert r.header("x-sni") == "-"


def test_upstream_client_certificate(ballast, tls_backend, pki):
    be = tls_backend(client_ca=pki["ca"][0])
    conf = https_conf("127.0.0.1:%d" % be.port, location="""
        proxy_ssl_certificate %s;
        proxy_ssl_certificate_key %s;""" % pki["client"])
    b = ballast(conf)
    r = b.get("/")
    assert r.status == 200, error_log(b)
    assert "commonName=client one" in r.header("x-peer")
    # without one, the backend refuses it (in TLS 1.3 after the client's handshake is done,
    # so it shows on the first read): 502, logged
    b2 = ballast(https_conf("127.0.0.1:%d" % be.port))
    assert b2.get("/").status == 502
    assert wait_for(lambda: re.search(r"\[error\] .*(while SSL handshaking to upstream|"
                                      r"while talking to upstream)", error_log(b2))), \
        error_log(b2)


def test_keepalive_keeps_tls_connections(ballast, tls_backend):
    be = tls_backend()
    b = ballast(https_conf(["127.0.0.1:%d" % be.port], keepalive=4))
    with b.conn() as c:
        for i in range(20):
            r = c.request("GET", "/k%d" % i)
            assert r.status == 200 and r.body == b"tls /k%d\n" % i
    assert be.handshakes == 1, be.handshakes
    assert be.requests == 20


@pytest.mark.parametrize("tls13", [True, False], ids=["tls13", "tls12"])
def test_session_reuse_on_new_connections(ballast, tls_backend, tls13):
    be = tls_backend(tls13=tls13)
    b = ballast(https_conf("127.0.0.1:%d" % be.port))  # no keepalive: a connection each
    for i in range(4):
        r = b.get("/s%d" % i)
        assert r.status == 200
    assert be.handshakes == 4
    assert be.reused >= 3, (be.reused, be.handshakes)


def test_session_reuse_off(ballast, tls_backend):
    be = tls_backend()
    b = ballast(https_conf("127.0.0.1:%d" % be.port, location="proxy_ssl_session_reuse off;"))
    for i in range(3):
        assert b.get("/").status == 200
    assert be.handshakes == 3 and be.reused == 0


def test_handshake_failure_retries_next_server(ballast, tls_backend, pki):
    bad = tls_backend("bad", cert="wrong_server")
    good = tls_backend("good")
    b = ballast(https_conf(["127.0.0.1:%d" % bad.port, "127.0.0.1:%d" % good.port],
                           location="""
        proxy_ssl_verify on;
        proxy_ssl_name backend.test;
        proxy_ssl_trusted_certificate %s;""" % pki["ca"][0]))
    for i in range(4):
        r = b.get("/r%d" % i)
        assert r.status == 200 and r.header("x-backend") == "good"
    assert bad.requests == 0
    assert "verify error" in error_log(b)
    # max_fails (1 by default) marks the bad server down: not every request tries it
    assert bad.handshakes + bad.failed_handshakes < 4


def test_connect_refused_over_https(ballast, tls_backend):
    from conftest import closed_port
    good = tls_backend("good")
    b = ballast(https_conf(["127.0.0.1:%d" % closed_port(), "127.0.0.1:%d" % good.port]))
    for _ in range(3):
        assert b.get("/").header("x-backend") == "good"
    assert "connect() failed (Connection refused)" in error_log(b)


def test_plain_backend_behind_https_is_502(ballast):
    """A plain HTTP server answers the ClientHello with a 400 in clear text."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(10)

    def serve():
        try:
            s, _ = srv.accept()
            s.recv(4096)
            s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            s.close()
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    b = ballast(https_conf("127.0.0.1:%d" % srv.getsockname()[1]))
    assert b.get("/").status == 502
    t.join(10)
    srv.close()
    assert wait_for(lambda: re.search(r"SSL_do_handshake\(\) failed \(SSL: .*wrong version "
                                      r"number\) while SSL handshaking to upstream",
                                      error_log(b))), error_log(b)


def test_http_and_https_to_one_group_keep_separate_pools(ballast, tls_backend):
    be = tls_backend()
    conf = https_conf(["127.0.0.1:%d" % be.port], keepalive=4, server="""
        location /plain { proxy_pass http://app; }""")
    b = ballast(conf)
    for i in range(3):
        assert b.get("/a").status == 200
        assert b.get("/plain").status == 502  # a TLS server, a plain request
        assert b.get("/b").status == 200
    assert be.handshakes == 1


def test_proxy_ssl_conf_command(ballast, tls_backend):
    be = tls_backend()
    b = ballast(https_conf("127.0.0.1:%d" % be.port, location="""
        proxy_ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256;
        proxy_ssl_conf_command Options KTLS;"""))
    r = b.get("/")
    assert r.status == 200, error_log(b)
    assert r.header("x-cipher") == "TLS_CHACHA20_POLY1305_SHA256"


def test_config_errors(tmp_path, pki):
    cases = [
        ("proxy_ssl_verify on;", r"no proxy_ssl_trusted_certificate for proxy_ssl_verify in "
         r".*\.conf:\d+"),
        ("proxy_ssl_certificate %s;" % pki["client"][0],
         r'no "proxy_ssl_certificate_key" is defined'),
        ("proxy_ssl_trusted_certificate /nonexistent/ca.pem;",
         r'cannot load trusted certificates "/nonexistent/ca.pem".*\.conf:\d+'),
        ("proxy_ssl_certificate %s; proxy_ssl_certificate_key %s;"
         % (pki["client"][0], pki["server"][1]), r"does not match certificate|key values mismatch"),
        ("proxy_ssl_verify maybe;", r'invalid value "maybe" in "proxy_ssl_verify"'),
        ("proxy_ssl_protocols SSLv3;", r'"SSLv3" is not supported'),
        ("proxy_ssl_conf_command NoSuchCommand x;",
         r'SSL_CONF_cmd\("NoSuchCommand", "x"\) failed .* in .*\.conf:1'),
    ]
    for i, (line, want) in enumerate(cases):
        p = tmp_path / ("c%d.conf" % i)
        p.write_text("http { server { listen 127.0.0.1:1; location / { proxy_pass "
                     "https://127.0.0.1:1; %s } } }\n" % line)
        r = run_ballast(["-t", "-c", str(p)])
        assert r.returncode != 0, line
        assert re.search(want, r.stderr), (line, r.stderr)


def test_https_default_port_is_443(tmp_path):
    p = tmp_path / "c.conf"
    p.write_text("http { server { listen 127.0.0.1:1; location / { proxy_pass "
                 "https://127.0.0.1; return 200 \"$proxy_port\"; } } }\n")
    r = run_ballast(["-t", "-c", str(p)])
    assert r.returncode == 0, r.stderr


def test_upgrade_tunnel_over_tls(ballast, tls_backend):
    be = tls_backend()
    b = ballast(https_conf("127.0.0.1:%d" % be.port, location="""
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";"""))
    with b.conn() as c:
        c.send(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n")
        r = c.read_head()
        assert r.status == 101
        payload = b"x" * 100000
        c.send(payload)
        got, c.buf = c.buf, b""
        while len(got) < len(payload):
            chunk = c.sock.recv(65536)
            assert chunk, "tunnel closed after %d bytes" % len(got)
            got += chunk
        assert got == payload


# ---- active checks over TLS (check ... ssl) ------------------------------------------------

def test_http_check_over_tls(ballast, tls_backend, backend):
    a, good = tls_backend("a", status=503), tls_backend("good")
    plain = backend("plain")
    b = ballast(https_conf(["127.0.0.1:%d max_fails=0" % a.port,
                            "127.0.0.1:%d max_fails=0" % good.port,
                            "127.0.0.1:%d max_fails=0" % plain.port],
                           upstream="check interval=100 rise=2 fall=1 timeout=1000 type=http ssl;"
                                    '\n        check_http_send "GET /health HTTP/1.0\\r\\n\\r\\n";'))
    assert wait_for(lambda: re.search(r"server 127.0.0.1:%d is down: status 503" % a.port,
                                      error_log(b)) and
                    # a plain server waits for a request head: the handshake times out
                    re.search(r"server 127.0.0.1:%d is down: (handshake timeout|TLS handshake "
                              r"failed \(.*\))" % plain.port, error_log(b)), timeout=10), \
        error_log(b)
    assert not re.search(r"127.0.0.1:%d is down" % good.port, error_log(b))
    for i in range(6):
        assert b.get("/t%d" % i).header("x-backend") == "good"
    a.status = 200
    assert wait_for(lambda: re.search(r"server 127.0.0.1:%d is up: status 200" % a.port,
                                      error_log(b)), timeout=10), error_log(b)
    assert a.handshakes >= 3  # each probe is a TLS connection of its own


def test_tcp_check_over_tls(ballast, tls_backend, backend):
    good = tls_backend("good")
    plain = backend("plain")
    b = ballast(https_conf(["127.0.0.1:%d" % good.port, "127.0.0.1:%d" % plain.port],
                           upstream="check interval=100 rise=1 fall=1 timeout=1000 type=tcp ssl "
                                    "default_down=true;"))
    assert wait_for(lambda: re.search(r"server 127.0.0.1:%d is up: TLS handshake done"
                                      % good.port, error_log(b)), timeout=10), error_log(b)
    assert not re.search(r"127.0.0.1:%d is up" % plain.port, error_log(b))
    for i in range(4):
        assert b.get("/").header("x-backend") == "good"
