#!/usr/bin/python3
"""Large bodies through ballast against the same transfer straight to the backend (issue 14,
"Large bodies"): a --size response (download) and a --size request body (upload), each timed
with curl directly against the backend nginx and through ballast, in alternating order, with
ballast's RSS sampled every 20 ms during its transfers.

  bench/large_body.py [--size 1g] [--rounds 3] [--bin ./ballast] [--base BIN]
                      [--haproxy] [--conf-extra 'LINES'] [--strace]

Downloads come from nginx (bench/conf/backend.nginx.conf.in plus a location serving a sparse
file of --size bytes with sendfile); uploads go to a Python sink that reads every body whole
(recv_into 1 MiB) before it answers; ballast proxies both with bench/conf/ballast.conf.in plus
`client_max_body_size 0;` (and --conf-extra). Throughput is --size / curl's total time.
Prints a table; the ratio column is through-ballast over direct, medians over the rounds.
Only ratios measured in the same run mean anything on the shared machines.
--base BIN runs a second ballast (a baseline build, same config, its own port) in the same
rounds, each transfer order rotated, so before and after are measured side by side.
--haproxy adds HAProxy in the same rounds (one thread, `option splice-response`, its default
pipes; uploads go to the same sink), to put ballast's ratio beside another splicing proxy's.
--strace then makes one more transfer each way per ballast under `strace -c -f` and prints its
system calls per GiB by name (strace slows the transfer: not timed).
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The upload sink: reads each request body whole before answering (nginx's `return` answers
# first and discards the rest, which a proxy may rightly stop relaying once the answer went).
SINK = r"""
import socket, sys, threading
def serve(c):
    try:
        serve1(c)
    except OSError:  # a proxy that resets the connection when it ends (HAProxy)
        pass
def serve1(c):
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with c:
        head = b""
        while True:
            while b"\r\n\r\n" not in head:
                d = c.recv(65536)
                if not d:
                    return
                head += d
            h, _, rest = head.partition(b"\r\n\r\n")
            n = 0
            for line in h.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v)
                if k.strip().lower() == b"expect":
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            n -= len(rest)
            while n > 0:
                got = c.recv_into(view, min(n, len(buf)))
                if not got:
                    return
                n -= got
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            head = b""
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


# HAProxy beside ballast (--haproxy): one thread as ballast has one worker, splicing responses
# with its default pipe size; /upload to the sink, the rest to the backend nginx.
HAPROXY_CFG = """global
    nbthread 1
    maxconn 1000
defaults
    mode http
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    option splice-response
    option http-keep-alive
frontend f
    bind 127.0.0.1:%d
    use_backend sink if { path_beg /upload }
    default_backend b
backend b
    server s1 127.0.0.1:%d
backend sink
    server s1 127.0.0.1:%d
"""


def size_arg(s):
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = s.lower()
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def render(tpl, port, backend_port, d):
    text = open(os.path.join(ROOT, "bench/conf", tpl)).read()
    user = "user root;" if os.getuid() == 0 else ""
    text = (text.replace("@DIR@", d).replace("@PORT@", str(port))
            .replace("@BACKEND_PORT@", str(backend_port)).replace("@USER_LINE@", user))
    return re.sub(r"@[A-Z0-9_]*@", "", text)  # the TLS rows' slots (bench/run.sh) left empty


def cpu_s(pid):
    """utime + stime of the process (all threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_ = pid, 0, threading.Event()

    def run(self):
        while not self.stop_.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.stop_.set()
        self.join()
        return self.peak


def curl(args, timeout):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total} "
                          "%{size_download} %{size_upload}"] + args,
                         capture_output=True, text=True, timeout=timeout)
    code, t, down, up = out.stdout.split()
    return int(code), float(t), int(float(down)), int(float(up))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=size_arg, default=1 << 30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default="./ballast")
    ap.add_argument("--base", help="a baseline ballast binary, measured in the same rounds")
    ap.add_argument("--strace", action="store_true", help="syscalls per GiB, one transfer each")
    ap.add_argument("--haproxy", action="store_true", help="HAProxy (splice) in the same rounds")
    ap.add_argument("--conf-extra", default="")
    ap.add_argument("--budget", type=int, default=900)
    args = ap.parse_args()
    os.chdir(ROOT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.budget)
    tmp = tempfile.mkdtemp(prefix="ballast-large.")
    procs = []
    try:
        big = os.path.join(tmp, "big")
        with open(big, "wb") as f:
            f.truncate(args.size)
        bport, port, sink_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)]))
        bd = os.path.join(tmp, "backend")
        for sub in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi", "www"):
            os.makedirs(os.path.join(bd, sub), exist_ok=True)
        os.link(big, os.path.join(bd, "www", "big"))
        conf = render("backend.nginx.conf.in", 0, bport, bd).replace(
            '        location / {\n            return 200 "hello from the backend\\n";\n        }',
            '        location / {\n            return 200 "hello from the backend\\n";\n        }\n'
            '        location /big { root %s/www; sendfile on; }' % bd)
        assert "location /big" in conf, "backend template changed"
        open(os.path.join(bd, "nginx.conf"), "w").write(conf)
        procs.append(subprocess.Popen(["nginx", "-p", bd, "-e", os.path.join(bd, "error.log"),
                                       "-c", os.path.join(bd, "nginx.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        insts = []  # (name, pid, port)
        for name, binary in [("ballast", args.bin)] + ([("base", args.base)] if args.base else []):
            bl_port = port if name == "ballast" else free_port()
            d = os.path.join(tmp, name)
            os.makedirs(d)
            bconf = render("ballast.conf.in", bl_port, bport, d).replace(
                "    access_log off;", "    access_log off;\n    client_max_body_size 0;\n    %s"
                % args.conf_extra, 1).replace(
                "        location / {", "        location /upload {\n"
                "            proxy_pass http://127.0.0.1:%d;\n        }\n        location / {"
                % sink_port, 1)
            assert "location /upload" in bconf, "ballast template changed"
            open(os.path.join(d, "ballast.conf"), "w").write(bconf)
            blog = open(os.path.join(d, "ballast.log"), "w")
            b = subprocess.Popen([binary, "-c", os.path.join(d, "ballast.conf")], stdout=blog,
                                 stderr=subprocess.STDOUT)
            procs.append(b)
            deadline = time.monotonic() + 10
            while True:
                try:
                    if curl(["http://127.0.0.1:%d/" % bl_port], 5)[0] == 200:
                        break
                except (subprocess.SubprocessError, ValueError):
                    pass
                if time.monotonic() > deadline or b.poll() is not None:
                    sys.exit("large_body.py: %s did not start: " % binary +
                             open(os.path.join(d, "ballast.log")).read()[-500:])
                time.sleep(0.1)
            insts.append((name, b.pid, bl_port))
        if args.haproxy:
            hp = free_port()
            d = os.path.join(tmp, "haproxy")
            os.makedirs(d)
            open(os.path.join(d, "haproxy.cfg"), "w").write(HAPROXY_CFG % (hp, bport, sink_port))
            h = subprocess.Popen(["haproxy", "-db", "-f", os.path.join(d, "haproxy.cfg")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(h)
            deadline = time.monotonic() + 10
            while True:
                try:
                    if curl(["http://127.0.0.1:%d/" % hp], 5)[0] == 200:
                        break
                except (subprocess.SubprocessError, ValueError):
                    pass
                if time.monotonic() > deadline or h.poll() is not None:
                    sys.exit("large_body.py: haproxy did not start")
                time.sleep(0.1)
            insts.append(("haproxy", h.pid, hp))
        # The file's first read fills the page cache (several times slower than the next ones):
        # one untimed download first, so every timed one reads cached pages.
        curl(["http://127.0.0.1:%d/big" % bport], 600)
        idle_rss = {name: rss_kb(pid) for name, pid, _ in insts}
        res = {}
        tmo = 600

        def transfer(kind, port, extra_args=()):
            url = "http://127.0.0.1:%d/%s" % (port, "big" if kind == "download" else "upload")
            extra = [] if kind == "download" else ["-T", big, "-H",
                                                  "Content-Type: application/octet-stream"]
            return curl(list(extra_args) + extra + [url], tmo)

        def label(name):
            return {"ballast": args.bin, "base": args.base}.get(name, name)

        load0 = open("/proc/loadavg").read().split()[:3]
        for rnd in range(args.rounds):
            for kind in ("download", "upload"):
                order = [("direct", None, bport if kind == "download" else sink_port)] + insts
                k = rnd % len(order)
                for name, pid, p in order[k:] + order[:k]:
                    s = Sampler(pid) if pid else None
                    if s:
                        s.start()
                    c0 = cpu_s(pid) if pid else 0
                    code, t, down, up = transfer(kind, p)
                    cpu = (cpu_s(pid) - c0) / (args.size / (1 << 30)) if s else None
                    peak = s.stop() if s else None
                    moved = down if kind == "download" else up
                    ok = code == 200 and moved == args.size
                    res.setdefault((kind, name), []).append(
                        (args.size / t / 1e6 if ok else 0.0, peak, ok, cpu))
        load1 = open("/proc/loadavg").read().split()[:3]
        print("%s bodies, %d rounds (rotating order), curl on loopback, one ballast worker; "
              "load average %s at start, %s at end" % (fmt_size(args.size), args.rounds,
                                                      " ".join(load0), " ".join(load1)))
        print("| transfer | ballast | direct MB/s | through ballast MB/s | ratio "
              "| ballast CPU s per GiB | ballast peak RSS KiB (idle) | failed |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for kind in ("download", "upload"):
            dr = res[(kind, "direct")]
            dm = statistics.median(x[0] for x in dr)
            for name, _, _ in insts:
                br = res[(kind, name)]
                bm = statistics.median(x[0] for x in br)
                print("| %s | %s | %.0f | %.0f | %.2fx | %.2f | %d (%d) | %d |" % (
                    kind, label(name), dm, bm,
                    bm / dm if dm else 0, statistics.median(x[3] for x in br),
                    max(x[1] for x in br), idle_rss[name],
                    sum(1 for x in dr + br if not x[2])))
        if args.strace:
            print("\nSystem calls per GiB (strace -c -f, one transfer each, not timed):")
            for kind in ("download", "upload"):
                for name, pid, p in insts:
                    out = os.path.join(tmp, "strace-%s-%s" % (kind, name))
                    st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1)  # attached to every thread
                    code, _, down, up = transfer(kind, p)
                    st.send_signal(signal.SIGINT)
                    st.wait(30)
                    calls = {}
                    for line in open(out):
                        f = line.split()
                        if len(f) >= 5 and f[3].isdigit() and f[-1] not in ("total", "syscall"):
                            calls[f[-1]] = int(f[3])
                    gib = (down if kind == "download" else up) / (1 << 30)
                    top = sorted(calls.items(), key=lambda kv: -kv[1])
                    print("- %s, %s: %d per GiB (%s)" % (
                        kind, label(name), sum(calls.values()) / gib if gib else 0,
                        ", ".join("%s %d" % (k, v / gib) for k, v in top if v / gib >= 1)))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if os.environ.get("BENCH_KEEP") == "1":
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def fmt_size(n):
    for unit, m in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= m and n % m == 0:
            return "%d %s" % (n // m, unit)
    return "%d B" % n


if __name__ == "__main__":
    main()
