#!/usr/bin/python3
"""Memory per idle keep-alive client connection (stdlib only).

Reads VmRSS of the given pids, opens N connections to the proxy, sends one keep-alive GET on
each and reads its response (in batches, so at most --batch requests are in flight and the
proxy never needs more than that many upstream connections), leaves them all open and idle,
waits --settle seconds, reads VmRSS again, then closes everything.

Prints one JSON object on stdout:
  {"conns": opened and answered, "failed": ..., "closed_by_peer": ..., "rss_before_kb": ...,
   "rss_after_kb": ..., "per_conn_bytes": ...}
Exit status 0 if at least 90% of the connections were answered, 1 otherwise. Bounded by
--timeout seconds overall.
"""
import argparse
import json
import resource
import select
import socket
import sys
import time


def rss_kb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def read_response(sock, deadline):
    """Reads one HTTP/1.1 response with a Content-Length; returns the status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"connection" and b"close" in value.lower():
            raise ConnectionError("proxy answered Connection: close")
    if length is None:
        raise ConnectionError("response without Content-Length")
    while len(body) < length:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the response body")
        body += chunk
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pids", required=True, help="comma-separated pids whose VmRSS is summed")
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args()

    pids = [int(p) for p in args.pids.split(",") if p]
    deadline = time.monotonic() + args.timeout
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.conns + 64 > hard:
        sys.exit(f"idle_conns: fd limit {hard} too low for {args.conns} connections")

    request = f"GET / HTTP/1.1\r\nHost: {args.host}:{args.port}\r\nUser-Agent: ballast-bench-idle\r\n\r\n".encode()
    rss_before = rss_kb(pids)
    socks, failed, errors = [], 0, {}
    try:
        while len(socks) + failed < args.conns and time.monotonic() < deadline:
            batch = []
            for _ in range(min(args.batch, args.conns - len(socks) - failed)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.settimeout(5)
                    s.connect((args.host, args.port))
                    s.sendall(request)
                    batch.append(s)
                except OSError as e:
                    failed += 1
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    s.close()
            for s in batch:
                try:
                    if read_response(s, min(deadline, time.monotonic() + 10)) != 200:
                        raise ConnectionError("status not 200")
                    socks.append(s)
                except (OSError, ValueError, IndexError) as e:
                    failed += 1
                    errors[str(e)[:60] or type(e).__name__] = errors.get(str(e)[:60] or type(e).__name__, 0) + 1
                    s.close()
        time.sleep(args.settle)
        rss_after = rss_kb(pids)
        # A connection the proxy closed meanwhile shows up readable (EOF).
        poller = select.poll()
        for s in socks:
            poller.register(s, select.POLLIN | select.POLLRDHUP)
        closed = len(poller.poll(0))
    finally:
        for s in socks:
            s.close()

    n = len(socks)
    out = {
        "conns": n,
        "failed": failed,
        "closed_by_peer": closed,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "per_conn_bytes": round((rss_after - rss_before) * 1024 / n) if n else None,
    }
    if errors:
        out["errors"] = errors
    print(json.dumps(out))
    return 0 if n >= 0.9 * args.conns else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as e:   # typically: the proxy exited, so its /proc entry is gone
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
