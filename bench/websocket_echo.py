#!/usr/bin/python3
"""WebSocket echo round trips through ballast and through nginx, in the same run (stdlib only).

One backend process answers each Upgrade with 101 and then echoes bytes (a tunnel moves bytes,
it does not read frames, so a byte echo measures it exactly). ballast and nginx (one worker
each, nginx's WebSocket recipe, the same config text) proxy to it. For each proxy, in turns:
--conns connections are upgraded, then each sends a 32-byte masked text frame and waits for
its echo, again and again, for --seconds. Reported: round trips per second and the proxy's CPU
time (utime + stime from /proc) per round trip, the figure that does not depend on how fast
the Python client and backend are.

    python3 bench/websocket_echo.py [--ballast ./ballast] [--conns 50] [--seconds 5] [--rounds 3]
"""
import argparse
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

FRAME = bytes([0x81, 0x80 | 32]) + b"\x01\x02\x03\x04" + bytes(
    (b ^ k) for b, k in zip(b"x" * 32, b"\x01\x02\x03\x04" * 8))


def backend(port_w):
    """Accepts connections; answers the head with 101, then echoes."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1024)
    os.write(port_w, b"%d\n" % ls.getsockname()[1])
    sel = selectors.DefaultSelector()
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    heads = {}
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is ls:
                c, _ = ls.accept()
                c.setblocking(False)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                heads[c] = b""
                sel.register(c, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                heads.pop(s, None)
                s.close()
                continue
            if s in heads:
                heads[s] += data
                if b"\r\n\r\n" in heads[s]:
                    rest = heads.pop(s).split(b"\r\n\r\n", 1)[1]
                    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\n\r\n" + rest)
                continue
            s.sendall(data)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(port, conns, seconds, pid):
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade"
                  b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("proxy on %d closed during the handshake" % port)
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit("no 101 from %d: %r" % (port, head[:100]))
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    pending = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    cpu0, t0 = cpu_s(pid), time.monotonic()
    end = t0 + seconds
    trips = 0
    for s in socks:
        s.send(FRAME)
        pending[s] = len(FRAME)
    while time.monotonic() < end:
        for key, _ in sel.select(1):
            s = key.fileobj
            n = len(s.recv(65536))
            if n == 0:
                raise SystemExit("proxy closed a tunnel")
            pending[s] -= n
            if pending[s] <= 0:
                trips += 1
                s.send(FRAME)
                pending[s] = len(FRAME)
    elapsed, cpu = time.monotonic() - t0, cpu_s(pid) - cpu0
    for s in socks:
        s.close()
    return trips / elapsed, cpu * 1e6 / max(trips, 1)


CONF = """worker_processes 1;
%(main)s
events { worker_connections 4096; }
http {
    access_log off;
    %(http)s
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass http://127.0.0.1:%(be)d;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
    }
}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on %d" % port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ballast", default="./ballast")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    r, w = os.pipe()
    be = os.fork()
    if be == 0:
        os.close(r)
        try:
            backend(w)
        finally:
            os._exit(0)
    os.close(w)
    be_port = int(os.read(r, 64).split()[0])
    tmp = tempfile.mkdtemp(prefix="wsbench-")
    procs = {}
    try:
        bport, nport = free_port(), free_port()
        with open(tmp + "/ballast.conf", "w") as f:
            f.write(CONF % {"main": "", "http": "", "port": bport, "be": be_port})
        temp = "".join("%s_temp_path %s/%s;\n" % (t, tmp, t)
                       for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(tmp + "/nginx.conf", "w") as f:
            f.write(CONF % {"main": "user root;" if os.geteuid() == 0 else "", "http": temp,
                            "port": nport, "be": be_port})
        procs["ballast"] = subprocess.Popen([a.ballast, "-c", tmp + "/ballast.conf"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs["nginx"] = subprocess.Popen(
            [a.nginx, "-p", tmp, "-e", tmp + "/error.log", "-c", tmp + "/nginx.conf", "-g",
             "daemon off; master_process off; pid %s/nginx.pid;" % tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(bport)
        wait_port(nport)
        res = {"ballast": [], "nginx": []}
        for _ in range(a.rounds):
            for name, port in (("nginx", nport), ("ballast", bport)):
                res[name].append(run_client(port, a.conns, a.seconds, procs[name].pid))
        print("| proxy | round trips/s (median of %d) | proxy CPU µs/round trip |" % a.rounds)
        print("|---|---|---|")
        for name in ("nginx", "ballast"):
            rates = sorted(x[0] for x in res[name])
            cpus = sorted(x[1] for x in res[name])
            print("| %s | %.0f | %.2f |" % (name, rates[len(rates) // 2], cpus[len(cpus) // 2]))
    finally:
        for p in procs.values():
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        os.kill(be, signal.SIGKILL)
        os.waitpid(be, 0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
