#!/usr/bin/env python3
"""A standalone HTTP/1.1 backend process for the chaos tests: a process of its own so a test can
SIGKILL, SIGSTOP and restart it while ballast carries load.

    python3 backend_proc.py --port P --name N [--mode ok|503|garbage] [--log FILE]

Keep-alive, one thread per connection, Content-Length framing only. Every answer goes out in one
write (head and body together), so a SIGKILL never leaves half a response on the wire. Modes:
  ok       200 with body "NAME\\n" and X-Backend: NAME (health checks get 200 "ok\\n")
  503      503 to every request, checks included
  garbage  a line that is not HTTP, then close (invalid_header)
--log FILE appends one line per request ("METHOD TARGET"), so a test can count requests whose
answers it never sees. Prints "ready PORT" on stdout once listening.
"""
import argparse
import socket
import sys
import threading


def read_head(sock, buf):
    """Returns (head, rest) or (None, buf) on EOF."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > 65536:
            return None, buf
        d = sock.recv(65536)
        if not d:
            return None, buf
        buf += d
    i = buf.index(b"\r\n\r\n")
    return buf[:i], buf[i + 4:]


def serve(sock, args, log, log_lock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            head, buf = read_head(sock, buf)
            if head is None:
                return
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            method = parts[0]
            target = parts[1] if len(parts) > 1 else b"/"
            version = parts[2] if len(parts) > 2 else b"HTTP/1.0"
            clen = 0
            close = version == b"HTTP/1.0"
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                k = k.strip().lower()
                v = v.strip().lower()
                if k == b"content-length":
                    clen = int(v)
                elif k == b"connection":
                    if v == b"close":
                        close = True
                    elif v == b"keep-alive":
                        close = False
            while len(buf) < clen:
                d = sock.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[clen:]
            if log:
                with log_lock:
                    log.write("%s %s\n" % (method.decode("latin-1"), target.decode("latin-1")))
                    log.flush()
            if args.mode == "garbage":
                sock.sendall(b"this is not an HTTP response\r\n\r\n")
                return
            if args.mode == "503":
                status, body = b"503 Service Unavailable", b"unavailable\n"
            elif target.startswith(b"/status"):
                status, body = b"200 OK", b"ok\n"
            else:
                status, body = b"200 OK", args.name.encode() + b"\n"
            out = [b"HTTP/1.1 " + status,
                   b"X-Backend: " + args.name.encode(),
                   b"Content-Type: text/plain",
                   b"Content-Length: %d" % len(body)]
            if close:
                out.append(b"Connection: close")
            sock.sendall(b"\r\n".join(out) + b"\r\n\r\n" + (b"" if method == b"HEAD" else body))
            if close:
                return
    except OSError:
        return
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="b")
    ap.add_argument("--mode", choices=("ok", "503", "garbage"), default="ok")
    ap.add_argument("--log")
    args = ap.parse_args()
    log = open(args.log, "a") if args.log else None
    log_lock = threading.Lock()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # a restarted backend binds the port its killed predecessor left in TIME_WAIT
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(512)
    sys.stdout.write("ready %d\n" % args.port)
    sys.stdout.flush()
    while True:
        try:
            s, _ = ls.accept()
        except InterruptedError:
            continue
        t = threading.Thread(target=serve, args=(s, args, log, log_lock), daemon=True)
        t.start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
