#!/usr/bin/python3
"""Overload figure (issue 11): a backend whose capacity is cut in half mid-run, under more
concurrent clients than it can serve, behind ballast without protection and with
`adaptive_concurrency`. Stdlib only; not part of `make test`.

The backend (asyncio, one process) serves each request in --service ms while holding one of
--cap slots; a request that finds every slot busy waits for one (the server's own queue). At
half time the slots drop to --cap2. The clients (asyncio, one process, keep-alive, closed
loop) send GETs through ballast (2 workers) as fast as they are answered; after a 503 a
client waits --backoff ms (it honours Retry-After in spirit), so the shed requests do not spin.

Prints, for the second half (after the cut, its first second left out), per mode: admitted
requests/s (200), shed requests/s (503), p50/p99 of the admitted latency, and p99 of the
shed answers; JSON on stdout with --json.
"""
import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ------------------------------------------------------------------ backend (own process)

async def backend_main(port, cap, cap2, service, cut_after):
    state = {"cap": cap, "busy": 0}
    cond = asyncio.Condition()
    t0 = time.monotonic()

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                if state["cap"] != cap2 and time.monotonic() - t0 >= cut_after:
                    state["cap"] = cap2
                async with cond:
                    await cond.wait_for(lambda: state["busy"] < state["cap"])
                    state["busy"] += 1
                try:
                    await asyncio.sleep(service)
                finally:
                    async with cond:
                        state["busy"] -= 1
                        cond.notify(1)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with srv:
        await srv.serve_forever()


# ------------------------------------------------------------------ clients

async def client(port, stop_at, backoff, out):
    reader = writer = None
    while time.monotonic() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t = time.monotonic()
            writer.write(b"GET /x HTTP/1.1\r\nHost: b\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v)
                elif k == b"connection" and v.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
            now = time.monotonic()
            out.append((now, status, now - t))
            if close:
                writer.close()
                writer = None
            if status != 200:
                await asyncio.sleep(backoff)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            out.append((time.monotonic(), 0, 0.0))
            if writer:
                writer.close()
            writer = None
            await asyncio.sleep(backoff)
    if writer:
        writer.close()


async def clients_main(port, n, seconds, backoff):
    out = []
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(client(port, stop_at, backoff, out) for _ in range(n)))
    return out


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


# ------------------------------------------------------------------ one mode

CONF = """worker_processes 2;
error_log %(dir)s/error.log notice;
events { worker_connections 4096; }
http {
    access_log off;
    upstream app { server 127.0.0.1:%(pb)d; keepalive 512; %(protect)s }
    server { listen 127.0.0.1:%(port)d;
             location / { proxy_pass http://app; proxy_http_version 1.1;
                          proxy_set_header Connection ""; proxy_read_timeout 120s; } }
}
"""


def run_mode(name, protect, args):
    d = tempfile.mkdtemp(prefix="overload-")
    pb, port = free_port(), free_port()
    with open(d + "/b.conf", "w") as f:
        f.write(CONF % {"dir": d, "pb": pb, "port": port, "protect": protect})
    be = subprocess.Popen([sys.executable, __file__, "--backend-only", str(pb),
                           "--cap", str(args.cap), "--cap2", str(args.cap2),
                           "--service", str(args.service),
                           "--cut-after", str(args.seconds / 2 + 0.5)],
                          start_new_session=True)
    bl = subprocess.Popen([args.ballast, "-c", d + "/b.conf"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                socket.create_connection(("127.0.0.1", pb), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        t0 = time.monotonic()
        out = asyncio.run(clients_main(port, args.clients, args.seconds, args.backoff / 1000))
    finally:
        for p in (bl, be):
            p.send_signal(signal.SIGTERM)
        for p in (bl, be):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    cut = t0 + args.seconds / 2 + 0.5
    lo, hi = cut + 1.0, t0 + args.seconds
    span = hi - lo
    win = [(s, lat) for ts, s, lat in out if lo <= ts < hi]
    ok = [lat for s, lat in win if s == 200]
    shed = [lat for s, lat in win if s == 503]
    other = [s for s, _ in win if s not in (200, 503)]
    before = [lat for ts, s, lat in out if t0 + 1.0 <= ts < cut and s == 200]
    log = open(d + "/error.log").read()
    moves = [ln.split("limit ", 1)[1] for ln in log.splitlines() if "adaptive_concurrency" in ln
             and "limit " in ln and "->" in ln]
    shutil.rmtree(d, ignore_errors=True)
    return {"mode": name, "admitted_rps": round(len(ok) / span), "shed_rps":
            round(len(shed) / span), "errors": len(other),
            "p50_ms": round(pct(ok, 50) * 1000, 1), "p99_ms": round(pct(ok, 99) * 1000, 1),
            "shed_p99_ms": round(pct(shed, 99) * 1000, 1),
            "before_cut_p99_ms": round(pct(before, 99) * 1000, 1),
            "before_cut_rps": round(len(before) / max(0.1, cut - t0 - 1.0)),
            "limit_moves": moves[-6:]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ballast", default=os.path.join(ROOT, "ballast"))
    ap.add_argument("--cap", type=int, default=100)
    ap.add_argument("--cap2", type=int, default=50)
    ap.add_argument("--service", type=float, default=0.02)
    ap.add_argument("--clients", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=16)
    ap.add_argument("--backoff", type=float, default=20, help="ms after a 503")
    ap.add_argument("--protect", default="adaptive_concurrency min=5 max=1000;")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--backend-only", type=int)
    ap.add_argument("--cut-after", type=float)
    args = ap.parse_args()
    if args.backend_only:
        asyncio.run(backend_main(args.backend_only, args.cap, args.cap2, args.service,
                                 args.cut_after))
        return
    res = [run_mode("unprotected", "", args), run_mode("adaptive", args.protect, args)]
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print("capacity %d -> %d at %.0fs, %.0f ms service, %d clients, %.0fs, backoff %.0f ms"
          % (args.cap, args.cap2, args.seconds / 2 + 0.5, args.service * 1000, args.clients,
             args.seconds, args.backoff))
    print("| mode | admitted rps | shed rps | p50 ms | p99 ms | shed p99 ms | before cut: rps, "
          "p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in res:
        print("| %s | %d | %d | %.1f | %.1f | %.1f | %d, %.1f |" % (
            r["mode"], r["admitted_rps"], r["shed_rps"], r["p50_ms"], r["p99_ms"],
            r["shed_p99_ms"], r["before_cut_rps"], r["before_cut_p99_ms"]))
    for r in res:
        if r["limit_moves"]:
            print("%s: last limit moves: %s" % (r["mode"], "; ".join(r["limit_moves"])))
        if r["errors"]:
            print("%s: %d answers neither 200 nor 503" % (r["mode"], r["errors"]))


if __name__ == "__main__":
    main()
