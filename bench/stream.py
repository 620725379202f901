#!/usr/bin/python3
"""L4 (TCP) proxying: ballast `stream`, nginx `stream` and HAProxy `mode tcp`, in the same run
(stdlib only), one worker each, the same two backends.

  bulk   one transfer of --size bytes (1 GiB) from a backend through the proxy; reported: MB/s
         and the proxy's CPU time (utime + stime from /proc) per GiB; "direct" is the same
         transfer without a proxy.
  short  for --seconds: connect, send 100 bytes, read the backend's 100 bytes, close, one at a
         time; reported: connections per second and the proxy's CPU per connection (the client
         and backend are Python, so connections per second says more about them than about
         the proxy: compare the CPU column).

    python3 bench/stream.py [--ballast ./ballast] [--size 1073741824] [--seconds 5] [--rounds 3]
"""
import argparse
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CHUNK = b"\xa5" * (1 << 20)


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s


def bulk_server(ls, size):
    while True:
        c, _ = ls.accept()
        left = size
        mv = memoryview(CHUNK)
        try:
            while left:
                n = c.send(mv[:min(left, len(CHUNK))])
                left -= n
        except OSError:
            pass
        c.close()


def echo_server(ls):
    """Reads 100 bytes, answers 100 bytes, closes (non-blocking, one thread)."""
    sel = selectors.DefaultSelector()
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    got = {}
    while True:
        for key, _ in sel.select():
            if key.fileobj is ls:
                try:
                    while True:
                        c, _ = ls.accept()
                        c.setblocking(False)
                        got[c] = 0
                        sel.register(c, selectors.EVENT_READ)
                except BlockingIOError:
                    pass
                continue
            c = key.fileobj
            try:
                d = c.recv(4096)
            except OSError:
                d = b""
            if d:
                got[c] += len(d)
                if got[c] < 100:
                    continue
                try:
                    c.send(b"y" * 100)
                except OSError:
                    pass
            sel.unregister(c)
            del got[c]
            c.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def listening(port):
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_port(port, timeout=5.0):
    """Waits for a listening socket without connecting (a connection would start a transfer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def bulk(port, size):
    c = socket.create_connection(("127.0.0.1", port))
    buf = bytearray(1 << 20)
    n = 0
    t0 = time.monotonic()
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        n += k
    dt = time.monotonic() - t0
    c.close()
    if n != size:
        raise RuntimeError("short transfer: %d of %d" % (n, size))
    return dt


def short(port, seconds):
    n = 0
    msg = b"x" * 100
    end = time.monotonic() + seconds
    t0 = time.monotonic()
    while time.monotonic() < end:
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(msg)
        got = 0
        while got < 100:
            d = c.recv(4096)
            if not d:
                break
            got += len(d)
        c.close()
        n += 1
    return n, time.monotonic() - t0


def configs(d, p_bulk, p_echo, b_bulk, b_echo):
    ballast = ("worker_processes 1;\nerror_log %s/ballast.log;\nevents { worker_connections 20000; }\n"
               "stream {\n  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; }\n"
               "  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; }\n}\n"
               % (d, p_bulk, b_bulk, p_echo, b_echo))
    nginx = ("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\ndaemon off;\n"
             "master_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
             "error_log %s/nginx.log;\nevents { worker_connections 20000; }\n"
             "stream {\n  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; }\n"
             "  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; }\n}\n"
             % (d, d, p_bulk, b_bulk, p_echo, b_echo))
    haproxy = ("global\n  nbthread 1\n  maxconn 8000\ndefaults\n  mode tcp\n"
               "  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
               "listen bulk\n  bind 127.0.0.1:%d\n  server s1 127.0.0.1:%d\n"
               "listen echo\n  bind 127.0.0.1:%d\n  server s1 127.0.0.1:%d\n"
               % (p_bulk, b_bulk, p_echo, b_echo))
    return {"ballast": ballast, "nginx": nginx, "haproxy": haproxy}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ballast", default="./ballast")
    ap.add_argument("--size", type=int, default=1 << 30)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="ballast,nginx,haproxy")
    a = ap.parse_args()
    lb, le = listener(), listener()
    threading.Thread(target=bulk_server, args=(lb, a.size), daemon=True).start()
    threading.Thread(target=echo_server, args=(le,), daemon=True).start()
    b_bulk, b_echo = lb.getsockname()[1], le.getsockname()[1]
    d = tempfile.mkdtemp(prefix="bench-stream-")
    cmds = {"ballast": lambda f: [a.ballast, "-c", f],
            "nginx": lambda f: ["nginx", "-c", f, "-p", d],
            "haproxy": lambda f: ["haproxy", "-f", f, "-db"]}
    rows = {}
    direct = [a.size / bulk(b_bulk, a.size) / 1e6 for _ in range(a.rounds)]
    print("direct bulk: %.0f MB/s" % statistics.median(direct), flush=True)
    for r in range(a.rounds):
        for name in a.only.split(","):
            if name != "ballast" and not shutil.which(name):
                continue
            p_bulk, p_echo = free_port(), free_port()
            text = configs(d, p_bulk, p_echo, b_bulk, b_echo)[name]
            f = os.path.join(d, name + ".conf")
            with open(f, "w") as fh:
                fh.write(text)
            proc = subprocess.Popen(cmds[name](f), stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(d, name + ".stderr"), "w"))
            try:
                wait_port(p_bulk)
                wait_port(p_echo)
                c0 = cpu_s(proc.pid)
                dt = bulk(p_bulk, a.size)
                c1 = cpu_s(proc.pid)
                n, st = short(p_echo, a.seconds)
                c2 = cpu_s(proc.pid)
                rows.setdefault(name, []).append(
                    (a.size / dt / 1e6, (c1 - c0) / (a.size / (1 << 30)), n / st,
                     (c2 - c1) / n * 1e6))
                print("round %d %-8s bulk %7.0f MB/s  cpu %.2f s/GiB   short %6.0f conn/s  "
                      "cpu %.1f us/conn" % ((r + 1, name) + rows[name][-1]), flush=True)
            finally:
                proc.terminate()
                proc.wait(10)
    print("\nmedians over %d rounds (direct loopback %.0f MB/s):" % (a.rounds,
                                                                     statistics.median(direct)))
    print("%-8s %10s %8s %12s %10s %14s" % ("proxy", "bulk MB/s", "x direct", "CPU s/GiB",
                                            "conn/s", "CPU us/conn"))
    for name, v in rows.items():
        m = [statistics.median(x[i] for x in v) for i in range(4)]
        print("%-8s %10.0f %8.2f %12.2f %10.0f %14.1f" % (name, m[0],
                                                          m[0] / statistics.median(direct),
                                                          m[1], m[2], m[3]))
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
