"""Hardening of the process: the crash notice, `daemon on`, the open-file warning at start,
the rate-limited worker_connections warning, the privilege drop seen from /proc, and inputs
the fuzzers and the static analysers showed to be dangerous."""
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import (ASAN, BALLAST_BIN, SLOW, Conn, render, run_ballast, free_port,
                      wait_for)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].split()
    return []


# ---- crash notice


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE])
def test_crash_logs_one_line_then_dies_by_the_signal(tmp_path, sig):
    port = free_port()
    conf = tmp_path / "b.conf"
    log = tmp_path / "error.log"
    conf.write_text("worker_processes 2;\nerror_log %s notice;\nhttp { server { listen "
                    "127.0.0.1:%d; location / { return 200 \"ok\"; } } }\n" % (log, port))
    env = dict(os.environ)
    # ASan's own SEGV/BUS/FPE handler would report and exit 1: let the default action show
    env["ASAN_OPTIONS"] = "handle_segv=0:handle_sigbus=0:handle_sigfpe=0:detect_leaks=0"
    p = subprocess.Popen([BALLAST_BIN, "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    try:
        assert wait_for(lambda: connects(port), 5 * SLOW)
        os.kill(p.pid, sig)
        rc = p.wait(10 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == -sig, rc
    lines = [l for l in read(log).splitlines() if "crashed" in l]
    assert len(lines) == 1, read(log)
    name = signal.Signals(sig).name
    assert "[alert] %d#" % p.pid in lines[0], lines[0]
    assert ("crashed: signal %d (%s), exiting" % (sig, name)) in lines[0], lines[0]
    assert "worker " in lines[0] or "the control thread" in lines[0], lines[0]


# ---- daemon on


DAEMON_CONF = """
daemon on;
worker_processes 1;
pid @tmp@/b.pid;
error_log @tmp@/error.log notice;
http { server { listen 127.0.0.1:@port@; location / { return 200 "daemon\\n"; } } }
"""


def run_daemon(tmp_path, port, pid_name="b.pid"):
    conf = tmp_path / "b.conf"
    conf.write_text(render(DAEMON_CONF, {"tmp": str(tmp_path), "port": port})
                    .replace("b.pid", pid_name))
    return run_ballast(["-c", str(conf)], timeout=10)


def stop_daemon(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    assert wait_for(lambda: not alive(pid), 10 * SLOW), "daemon %d did not stop" % pid


def test_daemon_on_detaches_after_the_listeners_and_pid_file(tmp_path):
    port = free_port()
    r = run_daemon(tmp_path, port)
    # the parent returns once the child serves: the port answers and the pid file is there
    assert r.returncode == 0, r.stderr
    pid = int(read(tmp_path / "b.pid"))
    try:
        assert alive(pid)
        assert os.getsid(pid) == pid            # its own session, no controlling terminal
        for fd in (0, 1, 2):
            assert os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/null"
        with Conn(port) as c:
            resp = c.request("GET", "/")
            assert resp.status == 200 and resp.body == b"daemon\n"
    finally:
        stop_daemon(pid)
    assert not os.path.exists(tmp_path / "b.pid")   # removed at exit, as in the foreground


def test_daemon_on_failing_start_is_the_parents_exit_code(tmp_path):
    port = free_port()
    r = run_daemon(tmp_path, port)
    assert r.returncode == 0, r.stderr
    pid = int(read(tmp_path / "b.pid"))
    try:
        # the same pid file: the second one forks, then fails on the lock; its parent says so
        second = tmp_path / "second"
        second.mkdir()
        conf = second / "b.conf"
        conf.write_text(render(DAEMON_CONF, {"tmp": str(tmp_path), "port": free_port()}))
        r2 = run_ballast(["-c", str(conf)], timeout=10)
        assert r2.returncode == 1
        assert "is locked by a running ballast (pid %d)" % pid in r2.stderr, r2.stderr
        # a port that is taken fails before the fork, as in the foreground
        r3 = run_daemon(tmp_path, port, pid_name="c.pid")
        assert r3.returncode == 1 and "bind()" in r3.stderr, r3.stderr
        assert alive(pid)
    finally:
        stop_daemon(pid)


# ---- limits


def test_open_file_limit_too_low_is_warned_at_start(tmp_path):
    """A hard limit of 512 descriptors cannot hold 1000 connections x 2 workers x 2: said at
    start, with the numbers, and ballast runs on."""
    import resource
    port = free_port()
    conf = tmp_path / "b.conf"
    log = tmp_path / "error.log"
    conf.write_text("worker_processes 2;\nerror_log %s notice;\n"
                    "events { worker_connections 1000; }\n"
                    "http { server { listen 127.0.0.1:%d; location / { return 200; } } }\n"
                    % (log, port))

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))
    p = subprocess.Popen([BALLAST_BIN, "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, preexec_fn=limit)
    try:
        assert wait_for(lambda: connects(port), 5 * SLOW)
        line = [l for l in read(log).splitlines() if "exceeds the open file limit" in l]
        assert line, read(log)
        assert "[warn]" in line[0], line
        assert "1000 worker_connections x 2 workers x 2 = 4000" in line[0], line
        assert "limit 512 (RLIMIT_NOFILE, the hard limit)" in line[0], line
    finally:
        p.terminate()
        assert p.wait(15 * SLOW) == 0


def test_worker_rlimit_nofile_raises_the_soft_limit(tmp_path):
    """worker_rlimit_nofile 3000 from a soft limit of 256 (hard 4096): the process runs with
    3000 (/proc/PID/limits), and 1000 worker_connections x 2 workers x 2 still exceeds it,
    which is warned about as coming from the directive."""
    import resource
    port = free_port()
    conf = tmp_path / "b.conf"
    log = tmp_path / "error.log"
    conf.write_text("worker_processes 2;\nworker_rlimit_nofile 3000;\nerror_log %s notice;\n"
                    "events { worker_connections 1000; }\n"
                    "http { server { listen 127.0.0.1:%d; location / { return 200; } } }\n"
                    % (log, port))

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
    p = subprocess.Popen([BALLAST_BIN, "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, preexec_fn=limit)
    try:
        assert wait_for(lambda: connects(port), 5 * SLOW)
        limits = [l.split() for l in read("/proc/%d/limits" % p.pid).splitlines()
                  if l.startswith("Max open files")]
        assert limits and limits[0][3:5] == ["3000", "4096"], limits
        line = [l for l in read(log).splitlines() if "exceeds the open file limit" in l]
        assert line and "limit 3000 (RLIMIT_NOFILE, from worker_rlimit_nofile)" in line[0], \
            read(log)
    finally:
        p.terminate()
        assert p.wait(15 * SLOW) == 0


def test_worker_connections_full_warning_once_a_minute(ballast):
    b = ballast("error_log @tmp@/error.log notice;\nevents { worker_connections 2; }\n"
                "http { server { listen 127.0.0.1:@port@; keepalive_timeout 60s;\n"
                "    location / { return 200 \"ok\"; } } }\n")
    log = os.path.join(b.dir, "error.log")
    word = "worker_connections are not enough"
    for _ in range(4):
        conns = [Conn(b.port) for _ in range(2)]
        for c in conns:
            assert c.request("GET", "/").status == 200
        extra = socket.create_connection(("127.0.0.1", b.port), 2)  # queued, not accepted
        assert wait_for(lambda: word in read(log), 5)
        for c in conns:
            c.close()
        # the paused listener resumes and takes the queued one
        extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        extra.settimeout(5 * SLOW)
        assert extra.recv(100).startswith(b"HTTP/1.1 200")
        extra.close()
    assert read(log).count(word) == 1, read(log)


# ---- privileges


def test_user_nobody_drops_root_and_keeps_a_privileged_port(ballast):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    import grp
    import pwd
    try:
        uid = pwd.getpwnam("nobody").pw_uid
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no user nobody or group nogroup")
    low = 81
    if connects(low):
        pytest.skip("port 81 is in use")
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", low))
        s.close()
    except OSError:
        pytest.skip("port 81 cannot be bound here")
    b = ballast("user nobody nogroup;\n"
                "http { access_log off; server { listen 127.0.0.1:@port@; listen 127.0.0.1:%d;\n"
                "    location / { return 200 \"low\"; } } }\n" % low)
    # The listeners accept (into the kernel's backlog) before the drop; a served request
    # proves the worker threads run, and they start only after it.
    with Conn(low) as c:
        resp = c.request("GET", "/")
        assert resp.status == 200 and resp.body == b"low"
    pid = b.proc.pid
    assert status_field(pid, "Uid") == [str(uid)] * 4
    assert status_field(pid, "Gid") == [str(gid)] * 4
    assert "0" not in status_field(pid, "Groups")
    assert int(status_field(pid, "CapEff")[0], 16) == 0
    for task in os.listdir("/proc/%d/task" % pid):   # every thread, not only the first
        with open("/proc/%d/task/%s/status" % (pid, task)) as f:
            assert "Uid:\t%d\t%d\t%d\t%d" % ((uid,) * 4) in f.read()


# ---- the sanitizers


@pytest.mark.skipif(not ASAN, reason="the ASan build's leak check (make integration-asan)")
def test_leak_check_runs_at_a_clean_shutdown(tmp_path):
    """Every test's teardown fails on a LeakSanitizer report, which only means something if
    the check runs when ballast exits after SIGTERM (through exit(), not _exit() or a signal).
    A preloaded library leaks 4242 bytes before main(): serving ballast with two workers and
    stopped by SIGTERM reports them and exits nonzero."""
    lib = tmp_path / "leak.so"
    src = tmp_path / "leak.c"
    src.write_text("#include <stdint.h>\n#include <stdlib.h>\nuintptr_t bl_hidden;\n"
                   "__attribute__((constructor)) static void leak(void)\n"
                   "{ bl_hidden = (uintptr_t)malloc(4242) ^ 0x5a5a5a5aUL; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                   timeout=30)
    asan = subprocess.run(["cc", "-print-file-name=libasan.so"], stdout=subprocess.PIPE,
                          text=True, timeout=30).stdout.strip()
    port = free_port()
    conf = tmp_path / "b.conf"
    conf.write_text("worker_processes 2;\nhttp { server { listen 127.0.0.1:%d;\n"
                    "    location / { return 200 \"ok\"; } } }\n" % port)
    env = dict(os.environ, LD_PRELOAD="%s:%s" % (asan, lib),
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    p = subprocess.Popen([BALLAST_BIN, "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env, text=True, errors="replace")
    try:
        assert wait_for(lambda: connects(port), 10 * SLOW)
        with Conn(port) as c:
            assert c.request("GET", "/").status == 200
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=15 * SLOW)[1]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0 and "LeakSanitizer: detected memory leaks" in err, err[-3000:]
    assert "Direct leak of 4242 byte(s) in 1 object(s)" in err, err[-3000:]


# ---- found by lint and fuzzing


def test_variable_upstream_name_too_long_is_502_not_a_crash(ballast):
    """cppcheck: the log line for an over-long upstream name read the template's length
    through a NULL pointer; a client sending a long header could crash the process."""
    b = ballast("http { upstream a { server 127.0.0.1:1; }\n"
                "  server { listen 127.0.0.1:@port@; location / { proxy_pass http://$http_x_up; } } }\n")
    with Conn(b.port) as c:
        resp = c.request("GET", "/", headers={"X-Up": "u" * 400})
        assert resp.status == 502
    with Conn(b.port) as c:
        assert c.request("GET", "/", headers={"X-Up": "a"}).status in (502, 504)
