#!/usr/bin/python3
"""Normal clients' p99 latency under slow and hostile clients, ballast against nginx in one run
(issue 12). Stdlib plus Debian's wrk, slowhttptest and nginx.

One nginx backend serves /ok (2 bytes) and /big (100 MB). ballast and nginx proxy to it, one
worker each, the same timeouts (client_header_timeout, client_body_timeout and send_timeout
60s, nginx's defaults, so the attackers are not simply cut off), worker_connections 10000;
nginx with proxy_max_temp_file_size 0 (no spooling of answers to disk, as ballast). For each proxy and attack, --rounds times: wrk -t1 -c10 --latency against /ok alone (the
baseline), then the same during the attack:

  slowloris    slowhttptest -H: 1000 connections sending a header field every 10 s
  slow_post    slowhttptest -B: 1000 uploads sending a body piece every 10 s, to /post, whose
               backend (ours) reads the whole body before it answers
  slow_read    slowhttptest -X: 100 connections reading /big a few bytes at a time
  never_read   50 connections (our own) asking for /big and reading nothing

The readers are kept to 100 and 50: each holds about 7.5 MB of kernel socket memory along the
chain (the backend's send buffer, the proxy's receive and send buffers), so 200 of them already
reach this VM's tcp_mem pressure threshold (1.5 GB) and 500 its limit, where every TCP socket
on the machine stalls, whichever proxy is in the middle (see bench/RESULTS.md).
  idle         5000 connections (our own) that connect and send nothing

The attack starts, ramps for --ramp seconds, then wrk runs --duration seconds beside it. Peak
RSS (KB) and descriptors of the proxy during the attack are sampled every 0.2 s.

Prints a markdown table: the medians of p99 baseline, p99 under attack and of the ratios of
each pair (every ratio listed), wrk's request rate and errors, peak RSS and fds, and the most
the kernel held queued for sending on the proxy's client connections (the sum of `ss -tm`'s w
at the end of each ramp), for each proxy and attack. --sndbuf SIZE adds `sndbuf=SIZE` to both
proxies' listen (nginx has the same parameter). The machine is shared and noisy: compare
ballast with nginx within one run; the absolute figures move from run to run.

    bench/hostile.py [--duration 5] [--ramp 3] [--rounds 3] [--attacks slowloris,idle]
                     [--ballast ./ballast] [--sndbuf 64k]     (BENCH_DURATION, BENCH_ROUNDS)
"""
import argparse
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTACKS = ["slowloris", "slow_post", "slow_read", "never_read", "idle"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listening(port, timeout=10):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


TIMEOUTS = "client_header_timeout 60s; client_body_timeout 60s; send_timeout 60s;"


def nginx_conf(tmp, name, body):
    temps = "".join("%s_temp_path %s/%s_%s;\n" % (t, tmp, name, t)
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""
    path = os.path.join(tmp, name + ".conf")
    with open(path, "w") as f:
        f.write("daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 30000;\n"
                "pid %s/%s.pid; error_log %s/%s.err;\n%s"
                "events { worker_connections 10000; }\n"
                "http { access_log off; keepalive_requests 1000000; %s\n%s\n}\n"
                % (tmp, name, tmp, name, user, temps, body))
    return path


class Proc:
    def __init__(self, argv, **kw):
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True, **kw)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.rss = self.fds = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.rss = max(self.rss, status_kb(self.pid, "VmRSS"))
            self.fds = max(self.fds, nfds(self.pid))
            self.stop.wait(0.2)


def wrk(port, duration):
    """p99 in ms, requests/s and the error count of wrk against /ok."""
    out = subprocess.run(["wrk", "-t1", "-c10", "-d%ds" % duration, "--latency", "--timeout", "10s",
                          "http://127.0.0.1:%d/ok" % port], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=duration + 60).stdout
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99 = float(m.group(1)) * unit[m.group(2)] if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rps = float(m.group(1)) if m else 0.0
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs += int(m.group(1)) if m else 0
    return p99, rps, errs


class BodyBackend(threading.Thread):
    """/post's backend: reads a request's whole Content-Length body, then answers 200, as an
    application does (nginx's own static handler answers a POST at once with 405, so the slow
    body would never be waited for). One thread, selectors: it holds a thousand slow uploads."""

    def __init__(self):
        super().__init__(daemon=True)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4096)
        self.ls.setblocking(False)
        self.port = self.ls.getsockname()[1]
        self.stop = threading.Event()

    def run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.ls, selectors.EVENT_READ, None)
        state = {}
        while not self.stop.is_set():
            for key, _ in sel.select(0.2):
                if key.data is None:
                    try:
                        s, _ = self.ls.accept()
                    except OSError:
                        continue
                    s.setblocking(False)
                    state[s] = [b"", None]
                    sel.register(s, selectors.EVENT_READ, 1)
                    continue
                s = key.fileobj
                st = state[s]
                try:
                    d = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if not d:
                    sel.unregister(s)
                    s.close()
                    del state[s]
                    continue
                st[0] += d
                while True:
                    if st[1] is None:
                        i = st[0].find(b"\r\n\r\n")
                        if i < 0:
                            break
                        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", st[0][:i])
                        st[1] = int(m.group(1)) if m else 0
                        st[0] = st[0][i + 4:]
                    if len(st[0]) < st[1]:
                        break
                    st[0], st[1] = st[0][st[1]:], None
                    try:
                        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    except OSError:
                        break

    def end(self):
        self.stop.set()
        self.join(5)
        self.ls.close()


class OwnAttack(threading.Thread):
    """never_read: n connections that ask for /big and never read; idle: n that send nothing.
    Connections the proxy closes are opened again, so the pressure holds."""

    def __init__(self, port, kind, n):
        super().__init__(daemon=True)
        self.port, self.kind, self.n = port, kind, n
        self.stop = threading.Event()
        self.socks = []

    def open_one(self):
        s = socket.socket()
        if self.kind == "never_read":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", self.port))
            if self.kind == "never_read":
                s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setblocking(False)
            return s
        except OSError:
            s.close()
            return None

    def run(self):
        while not self.stop.is_set() and len(self.socks) < self.n:
            for _ in range(min(100, self.n - len(self.socks))):
                s = self.open_one()
                if s:
                    self.socks.append(s)
            self.stop.wait(0.01)
        while not self.stop.wait(1.0):
            keep = []
            for s in self.socks:
                try:
                    if self.kind == "idle" and s.recv(1, socket.MSG_PEEK) == b"":
                        raise OSError
                    keep.append(s)
                except BlockingIOError:
                    keep.append(s)
                except OSError:
                    s.close()
            while len(keep) < self.n and not self.stop.is_set():
                s = self.open_one()
                if not s:
                    break
                keep.append(s)
            self.socks = keep

    def end(self):
        self.stop.set()
        self.join(10)
        for s in self.socks:
            s.close()


def send_queued(port):
    """Bytes the kernel holds queued for sending on the connections accepted on port."""
    out = subprocess.run(["ss", "-tmnH", "state", "established", "( sport = :%d )" % port],
                         stdout=subprocess.PIPE, text=True).stdout
    return sum(int(w) for w in re.findall(r"skmem:\(r\d+,rb\d+,t\d+,tb\d+,f\d+,w(\d+)", out))


def start_attack(kind, port, duration):
    url = "http://127.0.0.1:%d/" % port
    common = ["-l", str(duration), "-r", "500", "-p", "5", "-v", "0"]
    if kind == "slowloris":
        return Proc(["slowhttptest", "-H", "-c", "1000", "-i", "10", "-x", "1", "-u", url] + common)
    if kind == "slow_post":
        return Proc(["slowhttptest", "-B", "-c", "1000", "-i", "10", "-s", "1000000", "-x", "1",
                     "-u", url + "post"] + common)
    if kind == "slow_read":
        return Proc(["slowhttptest", "-X", "-c", "100", "-k", "1", "-n", "1", "-w", "10", "-y", "20",
                     "-z", "32", "-u", url + "big"] + common)
    a = OwnAttack(port, kind, 50 if kind == "never_read" else 5000)
    a.start()
    return a


def stop_attack(a):
    if isinstance(a, OwnAttack):
        a.end()
    else:
        a.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "5")))
    ap.add_argument("--ramp", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--ballast", default=os.environ.get("BALLAST_BIN", os.path.join(ROOT, "ballast")))
    ap.add_argument("--sndbuf", default="", help="listen ... sndbuf=SIZE in both proxies")
    args = ap.parse_args()
    for tool in ("wrk", "slowhttptest", "nginx"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            sys.exit("hostile.py: %s is missing (scripts/install-deps.sh test)" % tool)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    attacks = [a for a in args.attacks.split(",") if a]
    tmp = tempfile.mkdtemp(prefix="bench-hostile.")
    procs = []
    try:
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "ok"), "w") as f:
            f.write("ok")
        with open(os.path.join(www, "big"), "wb") as f:
            f.truncate(100 * 1000 * 1000)
        be = free_port()
        p = Proc(["nginx", "-p", tmp, "-c", nginx_conf(
            tmp, "backend", "server { listen 127.0.0.1:%d; root %s; }" % (be, www))])
        procs.append(p)
        body_be = BodyBackend()
        body_be.start()
        procs.append(body_be)
        ports = {"ballast": free_port(), "nginx": free_port()}
        proxy = ("upstream be { server 127.0.0.1:%d; keepalive 64; }\n"
                 "server { listen 127.0.0.1:%%d%s; %s\n"
                 "  location /post { proxy_pass http://127.0.0.1:%d; }\n"
                 "  location / { proxy_pass http://be; proxy_http_version 1.1;\n"
                 "               proxy_set_header Connection \"\"; } }"
                 % (be, " sndbuf=" + args.sndbuf if args.sndbuf else "", TIMEOUTS, body_be.port))
        # nginx would spool each never-read 100 MB answer to a temp file (20 GB for 200
        # readers); ballast keeps none: both hold only their memory buffers here
        nproxy = (proxy % ports["nginx"]).replace("proxy_pass http://be;",
                                                  "proxy_pass http://be; proxy_max_temp_file_size 0;")
        pn = Proc(["nginx", "-p", tmp, "-c", nginx_conf(tmp, "nginx", nproxy)])
        procs.append(pn)
        bconf = os.path.join(tmp, "ballast.conf")
        with open(bconf, "w") as f:
            f.write("worker_processes 1; error_log %s/ballast.err; worker_rlimit_nofile 30000;\n"
                    "events { worker_connections 10000; }\n"
                    "http { access_log off; keepalive_requests 1000000;\n%s\n}\n"
                    % (tmp, proxy % ports["ballast"]))
        pb = Proc([args.ballast, "-c", bconf])
        procs.append(pb)
        pids = {"ballast": pb.p.pid, "nginx": pn.p.pid}
        for name, port in [("backend", be)] + list(ports.items()):
            if not listening(port):
                sys.exit("hostile.py: %s did not start" % name)
        print("bench/hostile.py: wrk -t1 -c10 -d%ds on /ok; attacks ramp %ds; %s"
              % (args.duration, args.ramp, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
              file=sys.stderr)
        rows = []
        med = lambda v: sorted(v)[len(v) // 2] if v else None
        for who in ("ballast", "nginx"):
            port, pid = ports[who], pids[who]
            wrk(port, 2)  # warm-up: upstream keep-alive connections
            for kind in attacks:
                # rounds of (baseline, attack) pairs, so that each ratio compares two
                # measurements taken seconds apart on this noisy machine; medians reported
                bases, p99s, ratios, rpss, errs, queued = [], [], [], [], 0, 0
                s = Sampler(pid)
                s.start()
                for _ in range(args.rounds):
                    base, _, e0 = wrk(port, args.duration)
                    a = start_attack(kind, port, args.ramp + args.duration + 5)
                    time.sleep(args.ramp)
                    queued = max(queued, send_queued(port))
                    p99, rps, e1 = wrk(port, args.duration)
                    stop_attack(a)
                    time.sleep(2)  # let the proxy close what the attack left
                    errs += e0 + e1
                    if base and p99:
                        bases.append(base)
                        p99s.append(p99)
                        ratios.append(p99 / base)
                        rpss.append(rps)
                s.stop.set()
                s.join()
                rows.append((who, kind, med(bases), med(p99s), med(ratios), med(rpss) or 0, errs,
                             s.rss, s.fds, ratios, queued))
                print("  %s %s: ratios %s, RSS %d KB, %d fds" % (
                    who, kind, " ".join("%.2f" % r for r in ratios), s.rss, s.fds), file=sys.stderr)
        print("| proxy | attack | p99 base (ms) | p99 attack (ms) | ratio (median) | ratios | "
              "req/s | errors | peak RSS (MB) | peak fds | send queues (MB) |")
        print("|-------|--------|--------------:|----------------:|------:|------|------:|"
              "-------:|--------------:|---------:|-----------------:|")
        for who, kind, base, p99, ratio, rps, err, rss, fds, ratios, queued in rows:
            print("| %s | %s | %s | %s | %s | %s | %.0f | %d | %.1f | %d | %.1f |"
                  % (who, kind, "%.2f" % base if base else "-", "%.2f" % p99 if p99 else "-",
                     "%.2f" % ratio if ratio else "-", " ".join("%.2f" % r for r in ratios),
                     rps, err, rss / 1024, fds, queued / 1e6))
    finally:
        for p in reversed(procs):
            p.end() if isinstance(p, BodyBackend) else p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    main()
