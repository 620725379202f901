#!/usr/bin/python3
"""Deterministic per-request cost of ballast: instructions (callgrind Ir) per proxied
keep-alive GET, by function, and heap bytes per idle keep-alive connection.

Wall-clock benchmarks on the shared 2-core machines move by 10-30% between runs; instruction
counts do not (a few tenths of a percent), so two binaries can be compared one after the other
and a regression of 2% shows. What this misses: the kernel's work (syscalls are counted by
`make bench`'s strace pass) and cache misses.

  bench/callgrind.py [--bin ./ballast] [--bin2 /tmp/ballast-before] [--requests 5000]
                     [--use io_uring] [--floor epoll|io_uring]

--use puts `use METHOD;` into ballast's events block. --floor also measures the relay that
does not parse (build/bench/floor_relay, bench/floor.sh) in that mode, the same way, after the
binaries: what is left of ballast's Ir per request above the floor's is its own work.

For each binary: a backend nginx (bench/conf/backend.nginx.conf.in), ballast with
bench/conf/ballast.conf.in (one worker, upstream keep-alive) under
`valgrind --tool=callgrind`; --warmup requests (the pools and the upstream connection fill),
`callgrind_control --zero`, --requests keep-alive GETs one after another on --conns client
connections, `callgrind_control --dump`; Ir of the dump / requests, the whole process (all
threads; the control thread's once-a-second work is part of it, a few hundred Ir per second).

Idle connections: ballast without valgrind, `gdb -batch -p PID -ex 'call malloc_stats()'`
(bytes in use over every arena, printed to ballast's stderr) before and after --idle
connections each served one GET and left open; (after - before) / idle. glibc's chunk
overhead is included, the kernel's socket buffers are not.

Prints a table; --json FILE writes the figures. Everything runs in a temp dir and is stopped
at the end (also on errors and Ctrl-C); bounded by --budget seconds.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def render(tpl, out, port, backend_port, d):
    with open(os.path.join(ROOT, "bench/conf", tpl)) as f:
        text = f.read()
    user = "user root;" if os.getuid() == 0 else ""
    text = (text.replace("@DIR@", d).replace("@PORT@", str(port))
            .replace("@BACKEND_PORT@", str(backend_port)).replace("@USER_LINE@", user))
    text = re.sub(r"@[A-Z0-9_]*@", "", text)  # the TLS rows' slots (bench/run.sh) left empty
    with open(out, "w") as f:
        f.write(text)


REQ = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: callgrind\r\nAccept: */*\r\n\r\n"


def get(sock, deadline):
    """Sends one keep-alive GET and reads its answer (Content-Length framed)."""
    sock.sendall(REQ)
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", buf[:end], re.I)
            need = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) >= need:
                if not buf.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError("unexpected answer: %r" % buf[:80])
                return
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed by the proxy")
        buf += chunk
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")


def wait_answer(port, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                get(s, time.monotonic() + 5)
                return
        except (OSError, RuntimeError):
            time.sleep(0.2)
    raise RuntimeError("did not answer in time")


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, argv, log):
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def parse_functions(dump, requests, top):
    """(total Ir, [(Ir per request, function, file)]) from callgrind_annotate's self costs."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", dump],
                         capture_output=True, text=True, check=True).stdout
    total = None
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+):(\S+)", line)
        if m:
            ir = int(m.group(1).replace(",", ""))
            rows.append((ir / requests, m.group(3), os.path.basename(m.group(2))))
    if total is None:
        m = re.search(r"([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", out)
        if not m:
            m = re.search(r"([\d,]+).*PROGRAM TOTALS", out)
        total = int(m.group(1).replace(",", ""))
    # The frames on the stack when the counters were zeroed (clone, start_thread, worker_main)
    # are listed with the whole dump's cost: what they did themselves is not separable.
    rows = [r for r in rows if r[0] * requests < 0.99 * total]
    return total, rows[:top]


def measure_ir(args, binary, tmp, procs, backend_port, floor_mode=None):
    d = tempfile.mkdtemp(dir=tmp)
    port = free_ports(1)[0]
    render("ballast.conf.in", os.path.join(d, "ballast.conf"), port, backend_port, d)
    # One client connection for all the requests: nginx's default of 1000 would close it.
    conf = open(os.path.join(d, "ballast.conf")).read()
    if "keepalive_requests" not in conf:
        conf = conf.replace("access_log off;", "access_log off;\n    keepalive_requests 100000000;", 1)
    if args.use:
        conf = conf.replace("events {", "events {\n    use %s;" % args.use, 1)
    with open(os.path.join(d, "ballast.conf"), "w") as f:
        f.write(conf)
    out = os.path.join(d, "cg.out")
    log = open(os.path.join(d, "valgrind.log"), "w")
    cmd = ([binary, str(port), "127.0.0.1:%d" % backend_port, floor_mode] if floor_mode
           else [binary, "-c", os.path.join(d, "ballast.conf")])
    p = procs.start(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                     "--dump-instr=no", "--collect-jumps=no"] + cmd, log)
    wait_answer(port, p, time.monotonic() + 90)
    deadline = time.monotonic() + args.budget
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
             for _ in range(args.conns)]
    for i in range(args.warmup):
        get(socks[i % len(socks)], deadline)
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], check=True,
                   capture_output=True, timeout=60)
    for i in range(args.requests):
        get(socks[i % len(socks)], deadline)
    subprocess.run(["callgrind_control", "--dump=measured", str(p.pid)], check=True,
                   capture_output=True, timeout=60)
    for s in socks:
        s.close()
    dumps = sorted(f for f in os.listdir(d) if f.startswith("cg.out."))
    if not dumps:
        raise RuntimeError("callgrind wrote no dump in %s" % d)
    total, rows = parse_functions(os.path.join(d, dumps[-1]), args.requests, args.top)
    procs.stop(p)
    return total / args.requests, rows


def malloc_in_use(pid, logpath):
    """Bytes in use over every malloc arena, as malloc_stats() prints them to stderr."""
    before = os.path.getsize(logpath)
    subprocess.run(["gdb", "-batch", "-nx", "-p", str(pid), "-ex", "call (void)malloc_stats()"],
                   capture_output=True, timeout=60, check=False)
    for _ in range(50):
        with open(logpath) as f:
            f.seek(before)
            text = f.read()
        m = re.search(r"Total \(incl\. mmap\):\s*\nsystem bytes\s*=\s*\d+\s*\nin use bytes\s*=\s*(\d+)",
                      text)
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    raise RuntimeError("malloc_stats() printed nothing (gdb missing or ptrace refused?)")


def measure_idle(args, binary, tmp, procs, backend_port):
    d = tempfile.mkdtemp(dir=tmp)
    port = free_ports(1)[0]
    render("ballast.conf.in", os.path.join(d, "ballast.conf"), port, backend_port, d)
    logpath = os.path.join(d, "ballast.log")
    log = open(logpath, "w")
    p = procs.start([binary, "-c", os.path.join(d, "ballast.conf")], log)
    wait_answer(port, p, time.monotonic() + 20)
    deadline = time.monotonic() + args.budget
    # One connection through first, so that what the first request allocates once (the
    # upstream connection, pools) is in `before`.
    warm = socket.create_connection(("127.0.0.1", port), timeout=10)
    for _ in range(20):
        get(warm, deadline)
    time.sleep(1.5)  # the once-a-second trim runs when nothing was allocated in a second
    before = malloc_in_use(p.pid, logpath)
    socks = []
    for _ in range(args.idle):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        get(s, deadline)
        socks.append(s)
    time.sleep(1.5)
    after = malloc_in_use(p.pid, logpath)
    for s in socks + [warm]:
        s.close()
    procs.stop(p)
    return (after - before) / args.idle


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="./ballast")
    ap.add_argument("--bin2", help="a second binary (say, main before a change), measured after")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--idle", type=int, default=1000, help="idle connections (0: skip)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json")
    ap.add_argument("--budget", type=int, default=900)
    ap.add_argument("--use", choices=("epoll", "io_uring"), help="ballast's events method")
    ap.add_argument("--floor", choices=("epoll", "io_uring"),
                    help="also measure build/bench/floor_relay in this mode")
    args = ap.parse_args()
    os.chdir(ROOT)
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "nginx"):
        if not shutil.which(tool):
            sys.exit("callgrind.py: %s not found (scripts/install-deps.sh test)" % tool)
    bins = [args.bin] + ([args.bin2] if args.bin2 else [])
    floor_bin = os.path.join("build", "bench", "floor_relay")
    if args.floor and not os.access(floor_bin, os.X_OK):
        subprocess.run(["make", "-s", floor_bin], check=False)
    for b in bins + ([floor_bin] if args.floor else []):
        if not os.access(b, os.X_OK):
            sys.exit("callgrind.py: %s is not an executable" % b)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.budget)
    tmp = tempfile.mkdtemp(prefix="ballast-callgrind.")
    procs = Procs()
    results = {}
    try:
        bport = free_ports(1)[0]
        bd = os.path.join(tmp, "backend")
        for sub in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(bd, sub), exist_ok=True)
        render("backend.nginx.conf.in", os.path.join(bd, "nginx.conf"), 0, bport, bd)
        b = procs.start(["nginx", "-p", bd, "-e", os.path.join(bd, "error.log"), "-c",
                         os.path.join(bd, "nginx.conf")], open(os.path.join(bd, "out"), "w"))
        t = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", bport), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > t or b.poll() is not None:
                    raise RuntimeError("the backend nginx did not start")
                time.sleep(0.1)
        for binary in bins:
            ir, rows = measure_ir(args, binary, tmp, procs, bport)
            idle = measure_idle(args, binary, tmp, procs, bport) if args.idle else None
            results[binary] = {"ir_per_request": ir, "idle_conn_bytes": idle,
                               "functions": [{"ir": r[0], "function": r[1], "file": r[2]}
                                             for r in rows]}
        if args.floor:
            ir, rows = measure_ir(args, floor_bin, tmp, procs, bport, args.floor)
            results["floor_relay " + args.floor] = {
                "ir_per_request": ir, "idle_conn_bytes": None,
                "functions": [{"ir": r[0], "function": r[1], "file": r[2]} for r in rows]}
    finally:
        procs.stop_all()
        if os.environ.get("BENCH_KEEP") == "1":
            print("kept " + tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("callgrind, %d keep-alive GETs on %d connection(s) after %d warm-up, one worker"
          % (args.requests, args.conns, args.warmup))
    for binary, r in results.items():
        idle = "%.0f" % r["idle_conn_bytes"] if r["idle_conn_bytes"] is not None else "-"
        print("\n%s: %.0f Ir per request; heap bytes per idle connection: %s"
              % (binary, r["ir_per_request"], idle))
        print("  %10s  %s" % ("Ir/req", "function (file)"))
        for f in r["functions"]:
            print("  %10.0f  %s (%s)" % (f["ir"], f["function"], f["file"]))
    if args.floor:
        fl = results["floor_relay " + args.floor]["ir_per_request"]
        for binary in bins:
            ir = results[binary]["ir_per_request"]
            print("%s - floor_relay %s: %.0f Ir per request (%.1fx the floor's)"
                  % (binary, args.floor, ir - fl, ir / fl))
    if len(bins) == 2:
        a, b2 = (results[x] for x in bins)
        print("\n%s / %s: Ir per request %.4fx" % (bins[0], bins[1],
                                                  a["ir_per_request"] / b2["ir_per_request"]))
        if a["idle_conn_bytes"] is not None:
            print("idle connection bytes: %.0f vs %.0f" % (a["idle_conn_bytes"],
                                                           b2["idle_conn_bytes"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
