"""Test PKI and a TLS backend for the upstream-TLS and mTLS tests.

make_pki(dir) makes, with the openssl command line, a CA, a second unrelated CA, a server
certificate (backend.test, 127.0.0.1) and a client certificate signed by the first CA, and a
client certificate signed by the second. Keys live in the test's tmp dir only.

TLSBackend is an HTTP/1.1 keep-alive server over TLS in a thread of the test process: it
counts handshakes, notes the SNI name, whether the session was resumed and the client
certificate's subject of each connection, and answers every request with them in headers."""
import os
import socket
import ssl
import subprocess
import threading
import time

from conftest import free_port


def _run(*args):
    subprocess.run(list(args), check=True, capture_output=True, timeout=60)


def _ca(d, name, cn):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    _run("openssl", "req", "-x509", "-nodes", "-days", "2", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-subj", "/CN=" + cn, "-keyout", key, "-out", crt,
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
         "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def _leaf(d, name, cn, ca, sans=None, client=False):
    key, csr, crt = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        if sans:
            f.write("subjectAltName=%s\n" % ",".join(sans))
    _run("openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-subj", "/O=ballast tests/CN=" + cn, "-keyout", key,
         "-out", csr)
    _run("openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
         "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt)
    return crt, key


def make_pki(d):
    d = str(d)
    ca = _ca(d, "ca", "ballast test CA")
    other = _ca(d, "other", "other test CA")
    return {
        "dir": d,
        "ca": ca,
        "other": other,
        "server": _leaf(d, "server", "backend.test", ca,
                        ["DNS:backend.test", "DNS:*.backend.test", "IP:127.0.0.1"]),
        "client": _leaf(d, "client", "client one", ca, client=True),
        "client_other": _leaf(d, "client_other", "client two", other, client=True),
        "wrong_server": _leaf(d, "wrong_server", "backend.test", other,
                              ["DNS:backend.test", "IP:127.0.0.1"]),
    }


class TLSBackend:
    """HTTPS/1.1 server on 127.0.0.1:port (a free one unless given)."""

    def __init__(self, cert, key, client_ca=None, name="tls", port=None, tls13=True,
                 status=200):
        self.name = name
        self.status = status
        self.port = port or free_port()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if not tls13:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        self.snis = []
        self.lock = threading.Lock()
        self.handshakes = 0
        self.failed_handshakes = 0
        self.reused = 0
        self.requests = 0
        self.peers = []

        def sni_cb(sslobj, server_name, context):
            with self.lock:
                self.snis.append(server_name)

        ctx.sni_callback = sni_cb
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.threads = []
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, raw):
        raw.settimeout(10)
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.failed_handshakes += 1
            raw.close()
            return
        with self.lock:
            self.handshakes += 1
            if s.session_reused:
                self.reused += 1
            peer = s.getpeercert()
        subj = ""
        if peer:
            subj = ",".join("%s=%s" % kv for rdn in peer.get("subject", ()) for kv in rdn)
        with self.lock:
            self.peers.append(subj)
        sni = self.snis[-1] if self.snis else ""
        buf = b""
        try:
            while not self.stopping:
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
                clen = 0
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    if k.strip().lower() == "content-length":
                        clen = int(v.strip())
                while len(buf) < clen:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[clen:]
                with self.lock:
                    self.requests += 1
                if path == "/upgrade":
                    # 101, then echo every byte back until the peer closes
                    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                              b"Connection: Upgrade\r\n\r\n" + buf)
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            return
                        s.sendall(chunk)
                body = ("%s %s\n" % (self.name, path)).encode()
                resp = ("HTTP/1.1 %d OK\r\nContent-Length: %d\r\nX-Backend: %s\r\n"
                        "X-SNI: %s\r\nX-Reused: %d\r\nX-Peer: %s\r\nX-Cipher: %s\r\n\r\n"
                        % (self.status, len(body), self.name, sni or "-",
                           int(s.session_reused), subj or "-", s.cipher()[0])).encode() + body
                s.sendall(resp)
        except (ssl.SSLError, OSError):
            return
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.t.join(5)
        deadline = time.monotonic() + 5
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
