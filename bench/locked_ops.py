#!/usr/bin/python3
"""Atomic read-modify-writes per proxied keep-alive GET: every x86 `lock`-prefixed instruction
(and xchg with memory, which locks implicitly) that ran, by function and source line, counted
by callgrind with --dump-instr=yes. Deterministic, like bench/callgrind.py: a locked operation
on a line other workers write costs a cache-line transfer between cores on every request, and
on a 2-core VM that transfer cannot be timed, but it can be counted. bench/README.md, "Shared
writes on the request path", lists what each one is.

  bench/locked_ops.py [--bin ./ballast] [--requests 2000] [--conf bench/conf/ballast.conf.in]
                      [--workers 1]

The setup is callgrind.py's (backend nginx, ballast with the bench config, warm-up, zero,
requests, dump). Addresses in the dump are where valgrind loaded each object; the lock
instructions come from `objdump -d` of each object (the executable and the shared libraries
that ran), matched through the load bias of the object's functions (entry address in the dump
minus the symbol's address in `nm`).
"""
import argparse
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import callgrind as cg  # noqa: E402

LOCKED = re.compile(r"^\s*([0-9a-f]+):\s+(lock\s+\S+|xchg\s+\S*\(|xchg\s+%\w+,.*\()")


def locked_addrs(obj):
    """Link-time addresses of the locked instructions in obj."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], capture_output=True,
                         text=True, check=True).stdout
    addrs = set()
    for line in out.splitlines():
        m = LOCKED.match(line)
        if m:
            addrs.add(int(m.group(1), 16))
    return addrs


def symbols(obj):
    out = subprocess.run(["nm", "--defined-only", obj], capture_output=True, text=True).stdout
    if not out.strip():
        out = subprocess.run(["nm", "-D", "--defined-only", obj], capture_output=True,
                             text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwWiI":
            syms.setdefault(parts[2], int(parts[0], 16))
    return syms


def parse_dump(path):
    """{object: {function: {addr: (line, Ir)}}} of self costs (call lines left out)."""
    data = collections.defaultdict(lambda: collections.defaultdict(dict))
    ob = fn = None
    skip = False
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("ob="):
                ob = line[3:]
            elif line.startswith("fn="):
                fn = line[3:]
            elif line.startswith("calls="):
                skip = True  # the next cost line is the call's inclusive cost
            elif line.startswith("0x"):
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if len(parts) >= 3 and ob and fn:
                    addr = int(parts[0], 16)
                    prev = data[ob][fn].get(addr, (0, 0))
                    data[ob][fn][addr] = (int(parts[1]), prev[1] + int(parts[2]))
    return data


def count_locked(dump, requests):
    data = parse_dump(dump)
    rows = []
    for ob, fns in data.items():
        if not os.path.exists(ob):
            continue
        syms = symbols(ob)
        biases = collections.Counter()
        for fn, instrs in fns.items():
            if fn in syms and instrs:
                biases[min(instrs) - syms[fn]] += 1
        if not biases:
            continue
        bias = biases.most_common(1)[0][0]
        locks = locked_addrs(ob)
        for fn, instrs in fns.items():
            for addr, (line, ir) in instrs.items():
                if addr - bias in locks and ir:
                    rows.append((ir / requests, os.path.basename(ob), fn, line))
    rows.sort(key=lambda r: -r[0])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="./ballast")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--conf", default="ballast.conf.in", help="template in bench/conf")
    ap.add_argument("--budget", type=int, default=600)
    args = ap.parse_args()
    os.chdir(cg.ROOT)
    for tool in ("valgrind", "callgrind_control", "nginx", "objdump", "nm"):
        if not shutil.which(tool):
            sys.exit("locked_ops.py: %s not found" % tool)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.budget)
    tmp = tempfile.mkdtemp(prefix="ballast-locked.")
    procs = cg.Procs()
    try:
        bport = cg.free_ports(1)[0]
        bd = os.path.join(tmp, "backend")
        for sub in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(bd, sub), exist_ok=True)
        cg.render("backend.nginx.conf.in", os.path.join(bd, "nginx.conf"), 0, bport, bd)
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
        d = tempfile.mkdtemp(dir=tmp)
        port = cg.free_ports(1)[0]
        conf = os.path.join(d, "ballast.conf")
        cg.render(args.conf, conf, port, bport, d)
        text = open(conf).read()
        text = re.sub(r"^worker_processes \d+;", "worker_processes %d;" % args.workers, text,
                      flags=re.M)
        if "keepalive_requests" not in text:
            text = text.replace("access_log off;",
                                "access_log off;\n    keepalive_requests 100000000;", 1)
        open(conf, "w").write(text)
        out = os.path.join(d, "cg.out")
        p = procs.start(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                         "--dump-instr=yes", "--compress-pos=no", "--compress-strings=no",
                         "--collect-jumps=no", args.bin, "-c", conf],
                        open(os.path.join(d, "valgrind.log"), "w"))
        cg.wait_answer(port, p, time.monotonic() + 90)
        deadline = time.monotonic() + args.budget
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
                 for _ in range(args.conns)]
        for i in range(args.warmup):
            cg.get(socks[i % len(socks)], deadline)
        subprocess.run(["callgrind_control", "--zero", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
        for i in range(args.requests):
            cg.get(socks[i % len(socks)], deadline)
        subprocess.run(["callgrind_control", "--dump=measured", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
        for s in socks:
            s.close()
        dumps = sorted(f for f in os.listdir(d) if f.startswith("cg.out."))
        if not dumps:
            raise RuntimeError("callgrind wrote no dump in %s" % d)
        rows = count_locked(os.path.join(d, dumps[-1]), args.requests)
    finally:
        procs.stop_all()
        if os.environ.get("BENCH_KEEP") == "1":
            print("kept " + tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("locked instructions per keep-alive GET (%d requests on %d connection(s), %d "
          "worker(s), %s)" % (args.requests, args.conns, args.workers, args.conf))
    total = sum(r[0] for r in rows)
    print("  %8s  %s" % ("per req", "object function:line"))
    for per, ob, fn, line in rows:
        if per >= 0.001:
            print("  %8.3f  %s %s:%d" % (per, ob, fn, line))
    print("  %8.3f  total" % total)


if __name__ == "__main__":
    main()
