#!/usr/bin/python3
"""The TCP backend and clients for the L4 rows of `make bench` (bench/rows.sh runs them against
ballast `stream`, nginx `stream` and HAProxy `mode tcp`). Stdlib only.

One backend port serves both measurements, so a proxy needs one listener:
  - a connection whose first bytes are b"BULK" gets --size bytes, then a close;
  - any other connection is read up to 100 bytes, answered with 100 bytes and closed.

    stream.py serve --size 1073741824      prints the port, serves until killed
    stream.py bulk PORT SIZE               one transfer; prints "BYTES SECONDS"
    stream.py short PORT SECONDS           connect, 100 bytes each way, close, one at a time
                                           for SECONDS; prints "CONNECTIONS SECONDS ERRORS"
    stream.py listening PORT [TIMEOUT]     exits 0 once something listens on 127.0.0.1:PORT
                                           (checked without connecting: a connection would be
                                           a request)

The client and backend are Python on the same two cores as the proxy, so connections per
second says more about them than about the proxy: the proxy's CPU per connection is the figure
to compare. The bulk client reads with 1 MiB recv_into, which keeps up with loopback.
"""
import argparse
import selectors
import socket
import sys
import threading
import time

CHUNK = b"\xa5" * (1 << 20)
SHORT_BYTES = 100


def send_bulk(c, size):
    left = size
    mv = memoryview(CHUNK)
    try:
        c.setblocking(True)
        while left:
            left -= c.send(mv[:min(left, len(CHUNK))])
    except OSError:
        pass
    c.close()


def serve(size):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    ls.setblocking(False)
    print(ls.getsockname()[1], flush=True)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    got = {}
    while True:
        for key, _ in sel.select():
            if key.fileobj is ls:
                try:
                    while True:
                        c, _ = ls.accept()
                        c.setblocking(False)
                        got[c] = b""
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
                got[c] += d
                if got[c].startswith(b"BULK"):
                    sel.unregister(c)
                    del got[c]
                    threading.Thread(target=send_bulk, args=(c, size), daemon=True).start()
                    continue
                if len(got[c]) < SHORT_BYTES:
                    continue
                try:
                    c.send(b"y" * SHORT_BYTES)
                except OSError:
                    pass
            sel.unregister(c)
            del got[c]
            c.close()


def bulk(port, size):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"BULK")
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
    print(n, "%.6f" % dt)
    return 0 if n == size else 1


def short(port, seconds):
    n = errors = 0
    msg = b"x" * SHORT_BYTES
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(msg)
            got = 0
            while got < SHORT_BYTES:
                d = c.recv(4096)
                if not d:
                    break
                got += len(d)
            c.close()
        except OSError:
            errors += 1
            continue
        if got == SHORT_BYTES:
            n += 1
        else:
            errors += 1
    print(n, "%.6f" % (time.monotonic() - t0), errors)
    return 0


def listening(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    return 0
        time.sleep(0.05)
    return 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--size", type=int, default=1 << 30)
    s = sub.add_parser("bulk")
    s.add_argument("port", type=int)
    s.add_argument("size", type=int)
    s = sub.add_parser("short")
    s.add_argument("port", type=int)
    s.add_argument("seconds", type=float)
    s = sub.add_parser("listening")
    s.add_argument("port", type=int)
    s.add_argument("timeout", type=float, nargs="?", default=0.1)
    a = ap.parse_args()
    if a.cmd == "serve":
        return serve(a.size)
    if a.cmd == "bulk":
        return bulk(a.port, a.size)
    if a.cmd == "short":
        return short(a.port, a.seconds)
    return listening(a.port, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
