"""Failover under chaos (issue 3): backends are separate processes (backend_proc.py) that get
SIGKILLed, restarted, frozen with SIGSTOP, or answer 503/garbage, while a few client threads keep
steady keep-alive GETs going through ballast. What must hold: no client request fails, a dead or
frozen server leaves rotation within the checks' bounds and comes back within rise x interval
(+ one interval), and the whole run's p99 stays under proxy_read_timeout + 1 s.

Figures (requests, failures, detection and recovery times) are printed; with CHAOS_FIGURES=FILE
they are also appended to FILE as JSON lines (bench/RESULTS.md quotes them).
"""
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import ASAN, SLOW, Conn, free_port, proxy_conf

HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND = os.path.join(HERE, "backend_proc.py")

# Under ASan ballast runs several times slower on the same 2 shared cores: with as many client
# threads at the same pace the run would measure ballast's queueing instead of its failover, so
# there are fewer threads and they pause longer between requests. Timing bounds scale by SLOW.
THREADS = 2 if ASAN else 4
PACE = 0.01 if ASAN else 0.002

CHECK_INTERVAL, CHECK_TIMEOUT, RISE, FALL = 0.3, 0.3, 2, 2
READ_TIMEOUT = 1.0
SLACK = 1.5 * SLOW


# --------------------------------------------------------------------------------------------
# backend processes
# --------------------------------------------------------------------------------------------

class BackendProc:
    """One backend_proc.py process; restartable on the same port."""

    def __init__(self, name, port, mode="ok", log=None):
        self.name, self.port, self.mode, self.log = name, port, mode, log
        self.proc = None
        self.stopped = False

    def start(self, timeout=5.0):
        """Starts the process and waits (bounded) for its "ready" line; returns the time."""
        args = [sys.executable, BACKEND, "--port", str(self.port), "--name", self.name,
                "--mode", self.mode]
        if self.log:
            args += ["--log", self.log]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout * SLOW
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                pytest.fail("backend %s did not start on port %d" % (self.name, self.port))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                b = os.read(self.proc.stdout.fileno(), 256)
                if not b:
                    continue
                line += b
        assert line.startswith(b"ready"), line
        self.stopped = False
        return time.monotonic()

    def signal(self, sig):
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False
        return time.monotonic()

    def kill(self):
        """SIGKILL (after SIGCONT when frozen) and reap; returns the time."""
        if self.proc is None:
            return time.monotonic()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        t = time.monotonic()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stopped = False
        return t

    def requests_logged(self):
        try:
            with open(self.log) as f:
                return sum(1 for _ in f)
        except (TypeError, FileNotFoundError):
            return 0


@pytest.fixture
def procs():
    """Factory: procs(name, port, mode="ok", log=None) -> started BackendProc. Every process is
    SIGCONTed and SIGKILLed at teardown, even when the test failed."""
    made = []

    def make(name, port, mode="ok", log=None):
        p = BackendProc(name, port, mode, log)
        made.append(p)
        p.start()
        return p

    yield make
    for p in made:
        p.kill()


# --------------------------------------------------------------------------------------------
# load client
# --------------------------------------------------------------------------------------------

class Load:
    """THREADS client threads doing keep-alive GETs until stopped or `limit` seconds. Records
    (end time, latency, status, X-Backend) per answer and every failure (non-200 or a broken
    connection)."""

    def __init__(self, port, prefix, limit=60.0, ok=(200,)):
        self.port, self.prefix, self.limit, self.ok = port, prefix, limit, ok
        self.samples = []
        self.failures = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(THREADS)]

    def __enter__(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15 * SLOW)
        self.t1 = time.monotonic()

    def _run(self, k):
        c = None
        deadline = time.monotonic() + self.limit
        i = 0
        while not self.stop_ev.is_set() and time.monotonic() < deadline and i < 500000:
            i += 1
            t0 = time.monotonic()
            try:
                if c is None:
                    c = Conn(self.port, timeout=10)
                r = c.request("GET", "/%s/%d/%d" % (self.prefix, k, i))
            except Exception as e:  # a failure the test counts
                with self.lock:
                    self.failures.append((time.monotonic(), "%s: %r" % (type(e).__name__, e)))
                if c:
                    c.close()
                c = None
                time.sleep(0.01)
                continue
            t1 = time.monotonic()
            be = r.header("x-backend")
            with self.lock:
                self.samples.append((t1, t1 - t0, r.status, be))
                if r.status not in self.ok:
                    self.failures.append((t1, "status %d from %s" % (r.status, be)))
            if r.has_token("connection", "close"):
                c.close()
                c = None
            time.sleep(PACE)
        if c:
            c.close()

    def first_hit(self, name, after):
        with self.lock:
            ts = [t for t, _, _, be in self.samples if be == name and t > after]
        return min(ts) if ts else None

    def wait_hit(self, name, after, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.first_hit(name, after)
            if t is not None:
                return t
            time.sleep(0.01)
        return self.first_hit(name, after)

    def count(self, pred):
        with self.lock:
            return sum(1 for s in self.samples if pred(s))

    def p99(self):
        with self.lock:
            lat = sorted(s[1] for s in self.samples)
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0

    def sent(self):
        with self.lock:
            return len(self.samples) + len(self.failures) - sum(
                1 for _, _, st, _ in self.samples if st not in self.ok)


def sleep_until(t):
    time.sleep(max(0.0, t - time.monotonic()))


class LogWatch:
    def __init__(self, px):
        self.path = os.path.join(px.dir, "error.log")

    def lines(self, word, port):
        rx = re.compile(r"127\.0\.0\.1:%d(?!\d)" % port)
        try:
            with open(self.path, errors="replace") as f:
                return [ln for ln in f.read().splitlines() if word in ln and rx.search(ln)]
        except FileNotFoundError:
            return []

    def wait(self, word, port, after_count, timeout):
        """Waits (bounded) for more than after_count matching lines; returns the time seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines(word, port)) > after_count:
                return time.monotonic()
            time.sleep(0.01)
        return None

    def tail(self):
        try:
            with open(self.path, errors="replace") as f:
                return f.read()[-3000:]
        except FileNotFoundError:
            return ""


def report(name, figures):
    figures = dict(test=name, asan=ASAN, threads=THREADS, **figures)
    print("chaos figures: " + json.dumps(figures))
    out = os.environ.get("CHAOS_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(figures) + "\n")


def chaos_conf(servers, upstream, location=""):
    """Group app of `servers` with `upstream` settings (checks, outlier), the error log at info
    and short upstream timeouts, so a failure shows within the test's time bounds."""
    return proxy_conf(servers, upstream=upstream, keepalive=16, error_log="info",
                      location="proxy_connect_timeout 500ms; proxy_read_timeout %dms; %s" % (
                          int(READ_TIMEOUT * 1000), location))


# Servers carry max_fails=0: the checks alone take them out and bring them back, so a restarted
# server's return is bounded by rise x interval and not by a passive fail_timeout that a failure
# just before the restart could have re-armed.
HTTP_CHECK = r"""check interval=%d rise=%d fall=%d timeout=%d type=http;
        check_http_send "GET /status HTTP/1.0\r\n\r\n";
        check_http_expect_alive http_2xx;""" % (CHECK_INTERVAL * 1000, RISE, FALL,
                                              CHECK_TIMEOUT * 1000)


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------

def test_kill_and_restart_under_load(procs, ballast, tmp_path):
    ports = {n: free_port() for n in "abc"}
    bs = {n: procs(n, ports[n]) for n in "abc"}
    px = ballast(chaos_conf(["127.0.0.1:%d max_fails=0" % ports[n] for n in "abc"], HTTP_CHECK,
                            "proxy_next_upstream error timeout;"))
    log = LogWatch(px)
    victim = bs["b"]
    detect, recover = [], []
    bound_up = RISE * CHECK_INTERVAL + CHECK_INTERVAL + SLACK
    with Load(px.port, "kill", limit=40) as load:
        time.sleep(2.0)
        for round_ in range(2):
            downs = len(log.lines("is down", victim.port))
            ups = len(log.lines("is up", victim.port))
            t_kill = victim.kill()
            t_down = log.wait("is down", victim.port, downs, FALL * (CHECK_INTERVAL +
                                                                     CHECK_TIMEOUT) + 2 * SLACK)
            detect.append(None if t_down is None else t_down - t_kill)
            sleep_until(t_kill + 2.0)
            t_ready = victim.start()
            t_hit = load.wait_hit("b", t_ready, bound_up + 3 * SLOW)
            recover.append(None if t_hit is None else t_hit - t_ready)
            log.wait("is up", victim.port, ups, 2 * SLOW)
            time.sleep(1.5)
    sent, failed = load.sent(), len(load.failures)
    figures = dict(sent=sent, failed=failed, p99_s=round(load.p99(), 3),
                   detect_s=[None if d is None else round(d, 3) for d in detect],
                   recover_s=[None if r is None else round(r, 3) for r in recover],
                   per_backend={n: load.count(lambda s, n=n: s[3] == n) for n in "abc"},
                   seconds=round(load.t1 - load.t0, 1))
    report("kill_restart", figures)
    assert sent > 200, figures
    assert failed == 0, "failed requests: %s\nfigures: %s" % (load.failures[:10], figures)
    for i, r in enumerate(recover):
        assert r is not None and r <= bound_up, \
            "restart %d: back in rotation after %s s, bound %.2f s (rise x interval + interval " \
            "+ slack); figures %s; log:\n%s" % (i + 1, r, bound_up, figures, log.tail())


def test_sigstop_frozen_backend(procs, ballast):
    ports = {n: free_port() for n in "abc"}
    bs = {n: procs(n, ports[n]) for n in "abc"}
    # A tcp check would not notice: the kernel completes handshakes for a stopped process.
    px = ballast(chaos_conf(["127.0.0.1:%d max_fails=0" % ports[n] for n in "abc"], HTTP_CHECK,
                            "proxy_next_upstream error timeout;"))
    log = LogWatch(px)
    victim = bs["b"]
    bound_down = FALL * (CHECK_INTERVAL + CHECK_TIMEOUT) + SLACK
    bound_up = RISE * CHECK_INTERVAL + CHECK_INTERVAL + SLACK
    with Load(px.port, "stop", limit=40) as load:
        time.sleep(2.0)
        downs = len(log.lines("is down", victim.port))
        ups = len(log.lines("is up", victim.port))
        t_stop = victim.signal(signal.SIGSTOP)
        t_down = log.wait("is down", victim.port, downs, bound_down + 3 * SLOW)
        sleep_until(t_stop + 3.5)
        t_cont = victim.signal(signal.SIGCONT)
        t_hit = load.wait_hit("b", t_cont, bound_up + 3 * SLOW)
        log.wait("is up", victim.port, ups, 2 * SLOW)
        time.sleep(1.5)
    detect = None if t_down is None else t_down - t_stop
    recover = None if t_hit is None else t_hit - t_cont
    slow = load.count(lambda s: s[1] >= READ_TIMEOUT * 0.9)
    sent, failed = load.sent(), len(load.failures)
    figures = dict(sent=sent, failed=failed, p99_s=round(load.p99(), 3),
                   max_latency_s=round(max((s[1] for s in load.samples), default=0), 3),
                   timed_out_then_retried=slow,
                   detect_s=None if detect is None else round(detect, 3),
                   recover_s=None if recover is None else round(recover, 3),
                   per_backend={n: load.count(lambda s, n=n: s[3] == n) for n in "abc"},
                   seconds=round(load.t1 - load.t0, 1))
    report("sigstop", figures)
    assert sent > 200, figures
    assert failed == 0, "failed requests: %s\nfigures: %s" % (load.failures[:10], figures)
    assert slow >= 1, "no request waited for the frozen backend (%s)" % figures
    assert detect is not None and detect <= bound_down, \
        "frozen backend marked down after %s s, bound %.2f s; log:\n%s" % (
            detect, bound_down, log.tail())
    assert load.p99() < READ_TIMEOUT + 1.0, figures
    assert recover is not None and recover <= bound_up, \
        "back in rotation %s s after SIGCONT, bound %.2f s; figures %s" % (recover, bound_up,
                                                                          figures)


def test_503_ejected_and_garbage_retried(procs, ballast, tmp_path):
    """b answers 503 to everything: outlier detection ejects it (its 503s reach clients only
    until then and as single half-open probes). c answers garbage: invalid_header retries every
    such request (no client sees it) and counts a failure, so max_fails=2 fail_timeout=2s keeps
    c to a couple of attempts per window.

    c's invalid heads are gateway failures too, so outlier detection may eject c as well:
    max_ejection=70% leaves room for both. With 50% (one server) c could take the only slot while
    b is on probation, and b would rightly stay in rotation, which is not what this test is
    about (test_failover.py covers max_ejection)."""
    ports = {n: free_port() for n in "abc"}
    clog = str(tmp_path / "c.requests")
    procs("a", ports["a"])
    procs("b", ports["b"], mode="503")
    garbage = procs("c", ports["c"], mode="garbage", log=clog)
    px = ballast(chaos_conf(["127.0.0.1:%d" % ports["a"], "127.0.0.1:%d" % ports["b"],
                             "127.0.0.1:%d max_fails=2 fail_timeout=2s" % ports["c"]],
                            "outlier consecutive_5xx=3 consecutive_gateway=3 interval=100ms "
                            "base_ejection=2s max_ejection=70%;",
                            "proxy_next_upstream error timeout invalid_header;"))
    log = LogWatch(px)
    run = 6.0
    with Load(px.port, "odd", limit=40, ok=(200,)) as load:
        t_ej = log.wait("ejected", ports["b"], 0, run)
        sleep_until(load.t0 + run)
    c_hits = garbage.requests_logged()
    sent = load.sent()
    b503 = [f for f in load.failures if f[1] == "status 503 from b"]
    other = [f for f in load.failures if f[1] != "status 503 from b"]
    figures = dict(sent=sent, failed=len(load.failures), b_503_to_clients=len(b503),
                   c_garbage_attempts=c_hits,
                   ejected_after_s=None if t_ej is None else round(t_ej - load.t0, 3),
                   per_backend={n: load.count(lambda s, n=n: s[3] == n) for n in "abc"},
                   p99_s=round(load.p99(), 3), seconds=round(load.t1 - load.t0, 1))
    report("503_and_garbage", figures)
    assert sent > 200, figures
    assert t_ej is not None, "b never ejected; log:\n%s" % log.tail()
    assert other == [], "failures other than b's 503s: %s" % other[:10]
    # 3 in a row, those already in flight on the other threads, and a probe per ejection
    # (2 s, then 4 s) at most
    assert 3 <= len(b503) <= 3 + THREADS + 3, figures
    # two attempts per 2 s window, plus what was in flight when it was marked
    assert c_hits <= 2 * (run / 2 + 1) + THREADS, figures
