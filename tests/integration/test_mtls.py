"""Client certificates (mTLS to clients): ssl_verify_client on / optional / optional_no_ca
with ssl_client_certificate, nginx's 400 pages for a missing or bad certificate, the
$ssl_client_* variables in a response, a proxied header and the access log, and load errors.
Certificates come from tlsutil.make_pki (openssl in the test's tmp dir)."""
import os
import re
import subprocess

import pytest

from conftest import SLOW, run_ballast, wait_for
from tlsutil import make_pki

VARS = "$ssl_client_verify|$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial|" \
       "$ssl_client_fingerprint"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def mtls_conf(pki, verify="on", extra="", http=""):
    return """
http {
    error_log @tmp@/error.log info;
    %s
    server {
        listen 127.0.0.1:@port@ ssl;
        server_name backend.test;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_verify_client %s;
        ssl_client_certificate %s;
        location / { return 200 "%s\\n"; }
        %s
    }
}
""" % (http, pki["server"][0], pki["server"][1], verify, pki["ca"][0], VARS, extra)


def tcurl(b, pki, cert=None, path="/", *args):
    cmd = ["curl", "-sS", "--max-time", str(int(10 * SLOW)), "--cacert", pki["ca"][0],
           "--resolve", "backend.test:%d:127.0.0.1" % b.port,
           "-w", "\n%{http_code}", "https://backend.test:%d%s" % (b.port, path)]
    if cert:
        cmd += ["--cert", pki[cert][0], "--key", pki[cert][1]]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30 * SLOW)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body, r.stderr


def error_log(b):
    p = os.path.join(b.dir, "error.log")
    return open(p).read() if os.path.exists(p) else ""


def cert_facts(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial", "-fingerprint",
                          "-sha1"], capture_output=True, text=True, check=True).stdout
    serial = re.search(r"serial=([0-9A-F]+)", out).group(1).lstrip("0") or "0"
    fp = re.search(r"Fingerprint=([0-9A-F:]+)", out).group(1).replace(":", "").lower()
    return serial, fp


def test_verified_client_and_variables(ballast, pki):
    b = ballast(mtls_conf(pki))
    code, body, err = tcurl(b, pki, "client")
    assert code == 200, (code, body, err, error_log(b))
    verify, s_dn, i_dn, serial, fp = body.strip().split("|")
    assert verify == "SUCCESS"
    assert s_dn == "CN=client one,O=ballast tests"
    assert i_dn == "CN=ballast test CA"
    want_serial, want_fp = cert_facts(pki["client"][0])
    assert serial.lstrip("0") == want_serial
    assert fp == want_fp


def test_no_certificate_is_refused(ballast, pki):
    b = ballast(mtls_conf(pki))
    code, body, _ = tcurl(b, pki)
    assert code == 400
    assert "<title>400 No required SSL certificate was sent</title>" in body
    assert wait_for(lambda: "client sent no required SSL certificate while reading client "
                    "request headers, client 127.0.0.1" in error_log(b)), error_log(b)


def test_certificate_of_another_ca_is_refused(ballast, pki):
    b = ballast(mtls_conf(pki))
    code, body, _ = tcurl(b, pki, "client_other")
    assert code == 400
    assert "<title>400 The SSL certificate error</title>" in body
    assert wait_for(lambda: re.search(r"\[info\] .*client SSL certificate verify error: "
                                      r"\(\d+:[^)]+\) while reading client request headers",
                                      error_log(b))), error_log(b)


def test_optional(ballast, pki):
    b = ballast(mtls_conf(pki, "optional"))
    code, body, _ = tcurl(b, pki)
    assert code == 200 and body.startswith("NONE|"), (code, body)
    code, body, _ = tcurl(b, pki, "client")
    assert code == 200 and body.startswith("SUCCESS|CN=client one"), (code, body)
    code, body, _ = tcurl(b, pki, "client_other")
    assert code == 400 and "The SSL certificate error" in body


def test_optional_no_ca(ballast, pki):
    b = ballast(mtls_conf(pki, "optional_no_ca"))
    code, body, _ = tcurl(b, pki, "client_other")
    assert code == 200, (code, body)
    assert body.startswith("FAILED:"), body
    assert "|CN=client two,O=ballast tests|CN=other test CA|" in body
    code, body, _ = tcurl(b, pki, "client")
    assert code == 200 and body.startswith("SUCCESS|")


def test_variables_in_proxied_header_and_log(ballast, backend, pki):
    be = backend("app")
    extra = """
        location /app {
            proxy_pass http://127.0.0.1:%d;
            proxy_set_header X-Client-DN $ssl_client_s_dn;
            proxy_set_header X-Client-Verify $ssl_client_verify;
        }""" % be.port
    http = """log_format certs '$status $ssl_client_verify "$ssl_client_s_dn"';
    access_log @tmp@/access.log certs;"""
    b = ballast(mtls_conf(pki, "optional", extra, http))
    code, _, err = tcurl(b, pki, "client", "/app/x")
    assert code == 200, err
    code, _, err = tcurl(b, pki, None, "/app/y")
    assert code == 200, err
    reqs = be.requests
    assert len(reqs) == 2
    assert reqs[0].header("x-client-dn") == "CN=client one,O=ballast tests"
    assert reqs[0].header("x-client-verify") == "SUCCESS"
    assert reqs[1].header("x-client-verify") == "NONE"
    assert reqs[1].header("x-client-dn") in (None, "")  # empty: nginx leaves the field out
    log = os.path.join(b.dir, "access.log")
    assert wait_for(lambda: os.path.exists(log) and len(open(log).read().splitlines()) >= 2)
    lines = open(log).read().splitlines()
    assert lines[0] == '200 SUCCESS "CN=client one,O=ballast tests"', lines
    assert lines[1] == '200 NONE "-"', lines


def test_keepalive_requests_are_each_checked(ballast, pki):
    b = ballast(mtls_conf(pki))
    cmd_urls = ["https://backend.test:%d/%d" % (b.port, i) for i in range(3)]
    r = subprocess.run(["curl", "-sS", "--cacert", pki["ca"][0], "--resolve",
                        "backend.test:%d:127.0.0.1" % b.port, "--cert", pki["client"][0],
                        "--key", pki["client"][1]] + cmd_urls,
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.stdout.count("SUCCESS|") == 3, r


def test_load_errors(tmp_path, pki):
    base = ("http { server { listen 127.0.0.1:1 ssl; ssl_certificate %s; "
            "ssl_certificate_key %s; %%s location / { return 200; } } }\n" % pki["server"])
    cases = [
        ("ssl_verify_client on;", r"no ssl_client_certificate for ssl_verify_client in "
         r".*\.conf:1"),
        ("ssl_verify_client maybe;", r'invalid value "maybe" in "ssl_verify_client"'),
        ("ssl_verify_client on; ssl_client_certificate /nonexistent.pem;",
         r'cannot load client certificates "/nonexistent.pem"'),
        ("ssl_crl crl.pem;", r"client certificate revocation lists are not supported"),
    ]
    for i, (line, want) in enumerate(cases):
        p = tmp_path / ("c%d.conf" % i)
        p.write_text(base % line)
        r = run_ballast(["-t", "-c", str(p)])
        assert r.returncode != 0, line
        assert re.search(want, r.stderr), (line, r.stderr)
    # optional_no_ca needs no CA file; ssl_trusted_certificate alone is enough for "on"
    for i, line in enumerate(["ssl_verify_client optional_no_ca;",
                              "ssl_verify_client on; ssl_trusted_certificate %s;"
                              % pki["ca"][0]]):
        p = tmp_path / ("ok%d.conf" % i)
        p.write_text(base % line)
        r = run_ballast(["-t", "-c", str(p)])
        assert r.returncode == 0, (line, r.stderr)


def test_http2_streams_are_checked(ballast, pki):
    b = ballast(mtls_conf(pki, extra="http2 on;"))
    code, body, err = tcurl(b, pki, "client", "/", "--http2", "-v")
    assert code == 200 and body.startswith("SUCCESS|CN=client one"), (code, body)
    assert "using HTTP/2" in err or "HTTP/2 200" in err, err
    code, body, _ = tcurl(b, pki, None, "/", "--http2")
    assert code == 400 and "No required SSL certificate was sent" in body, (code, body)


def test_ssl_conf_command(ballast, pki):
    b = ballast(mtls_conf(pki, "off", extra="""
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        ssl_conf_command Options KTLS;
        location /c { return 200 "$ssl_cipher\\n"; }"""))
    code, body, err = tcurl(b, pki, None, "/c")
    assert code == 200, err
    assert body.strip() == "TLS_AES_128_GCM_SHA256"
    p = os.path.join(b.dir, "bad.conf")
    with open(p, "w") as f:
        f.write(open(b.conf_path).read().replace("Options KTLS", "Options NoSuchOption"))
    r = run_ballast(["-t", "-c", p])
    assert r.returncode != 0
    assert re.search(r'SSL_CONF_cmd\("Options", "NoSuchOption"\) failed', r.stderr), r.stderr
