"""`events { use epoll | io_uring; }`: the worker loop backend. io_uring serves HTTP and
stream traffic and closes what it closes (the clients read EOF); a kernel that refuses
io_uring gets a warning and epoll; an unknown method is a config error with file:line.
(`make integration-uring` runs the whole suite on io_uring; this file checks the directive.)"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import (ASAN, BALLAST_BIN, SLOW, free_port, http_get, io_uring_refused,
                      listening_ports, proxy_conf, run_ballast, wait_for)

REFUSED = io_uring_refused()


def ring_fds(pid):
    """How many io_uring instances the process holds (one per io_uring worker loop)."""
    n = 0
    d = "/proc/%d/fd" % pid
    for f in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, f)) == "anon_inode:[io_uring]":
                n += 1
        except OSError:
            pass
    return n


def test_io_uring_serves_and_closes(ballast, backend):
    be = backend()
    b = ballast(proxy_conf(be.addr, main="events { use io_uring; worker_connections 512; }",
                           server="location /local { return 200 \"local\\n\"; }"), workers=2)
    if REFUSED:
        assert "using epoll" in b.stderr_text()
        assert ring_fds(b.pid) == 0
    else:
        assert ring_fds(b.pid) == 2, "one ring per worker"
        assert "using epoll" not in b.stderr_text()
    for i in range(20):
        assert b.get("/x%d" % i).status == 200
    assert b.get("/local").body == b"local\n"
    # keep-alive over several requests, then ballast closes: the client reads EOF, which an
    # armed poll request would hold back if the close did not cancel it
    with b.conn() as c:
        for _ in range(3):
            assert c.request("GET", "/k").status == 200
        r = c.request("GET", "/k", headers={"Connection": "close"})
        assert r.status == 200
        assert c.closed(), "ballast closed the connection: the client must read EOF"


def test_io_uring_stream(ballast):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    b = ballast("""
events { use io_uring; }
stream {
    server {
        listen 127.0.0.1:@port@;
        proxy_pass 127.0.0.1:%d;
    }
}
""" % port)
    try:
        c = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        srv.settimeout(5)
        s, _ = srv.accept()
        c.sendall(b"ping")
        assert s.recv(16) == b"ping"
        s.sendall(b"pong")
        assert c.recv(16) == b"pong"
        s.close()  # the upstream closes: ballast closes the client
        c.settimeout(5)
        assert c.recv(16) == b""
        c.close()
    finally:
        srv.close()


def test_epoll_explicit_has_no_ring(ballast, backend):
    be = backend()
    b = ballast(proxy_conf(be.addr, main="events { use epoll; }"))
    assert b.get("/").status == 200
    assert ring_fds(b.pid) == 0


def test_unknown_method_is_a_config_error(tmp_path):
    p = tmp_path / "b.conf"
    p.write_text("events {\n    use kqueue;\n}\nhttp {\n    server {\n"
                 "        listen 127.0.0.1:1;\n    }\n}\n")
    r = run_ballast(["-t", "-c", str(p)])
    assert r.returncode != 0
    assert 'invalid value "kqueue" in "use" directive in %s:2' % p in r.stderr


def test_use_needs_one_argument(tmp_path):
    p = tmp_path / "b.conf"
    p.write_text("events {\n    use;\n}\n")
    r = run_ballast(["-t", "-c", str(p)])
    assert r.returncode != 0
    assert "%s:2" % p in r.stderr and '"use"' in r.stderr


@pytest.mark.skipif(REFUSED is not None, reason="io_uring refused here: %s" % REFUSED)
def test_reload_keeps_the_running_loop(ballast, backend):
    """A reload that changes `use` keeps serving on the loop the workers run."""
    be = backend()
    b = ballast(proxy_conf(be.addr, main="events { use io_uring; }", error_log="notice"))
    assert ring_fds(b.pid) == 1
    log = os.path.join(b.dir, "error.log")
    with open(b.conf_path) as f:
        text = f.read()
    with open(b.conf_path, "w") as f:
        f.write(text.replace("use io_uring;", "use epoll;"))
    b.send_signal(1)
    assert wait_for(lambda: "serves on every worker" in open(log).read(), 5)
    assert '"use" changed; the workers keep their event loop' in open(log).read()
    for i in range(5):
        assert b.get("/r%d" % i).status == 200
    assert ring_fds(b.pid) == 1


def test_io_uring_accept_stops_at_worker_connections(ballast, backend):
    """The multishot accept (io_uring step 2) takes whatever arrives, so near
    worker_connections the worker accepts on readiness: 600 idle clients against 560 leave the
    process holding 560 of them (the rest wait in the listen queue; none is dropped), and once
    they go the worker serves again. A pass on epoll too."""
    be = backend()
    b = ballast(proxy_conf(be.addr, http="client_header_timeout 30s;",
                           main="events { use io_uring; worker_connections 560; }"))
    assert b.get("/first").status == 200

    def nfds():
        return len(os.listdir("/proc/%d/fd" % b.pid))

    def settled():
        """The count once the first request's connection is closed on ballast's side."""
        last = nfds()
        for _ in range(50):
            time.sleep(0.05)
            now = nfds()
            if now == last:
                return now
            last = now
        return last
    base = settled()
    socks = []
    try:
        # 100 first: the worker leaves multishot at 48 (512 of room left), then the rest
        # arrive while it accepts on readiness, which stops at the limit.
        for n in (100, 500):
            for _ in range(n):
                socks.append(socket.create_connection(("127.0.0.1", b.port), 5 * SLOW))
            want = min(len(socks), 560)
            assert wait_for(lambda: nfds() >= base + want, 10 * SLOW), (nfds(), base, want)
        time.sleep(0.2)
        assert nfds() == base + 560, (nfds(), base)
        gone = 0
        for s in socks:  # none was accepted and dropped
            s.setblocking(False)
            try:
                gone += s.recv(1) == b""
            except BlockingIOError:
                pass
        assert gone == 0, gone
    finally:
        for s in socks:
            s.close()
    assert wait_for(lambda: nfds() <= base, 20 * SLOW), (nfds(), base)
    for i in range(3):
        assert b.get("/again%d" % i).status == 200


@pytest.mark.parametrize("errno_name,text", [
    ("EPERM", "(Operation not permitted); see /proc/sys/kernel/io_uring_disabled"),
    ("ENOSYS", "(Function not implemented)"),
])
@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
def test_refused_io_uring_falls_back_to_epoll(tmp_path, errno_name, text):
    """The kernel refuses io_uring_setup (strace injects the error, as io_uring_disabled, a
    seccomp filter or an old kernel would): a warning that says why, then epoll serves."""
    port = free_port()
    conf = tmp_path / "b.conf"
    conf.write_text("worker_processes 2;\nworker_rlimit_nofile 4096;\nerror_log stderr warn;\n"
                    "events { use io_uring; worker_connections 512; }\n"
                    "http {\n    server {\n"
                    "        listen 127.0.0.1:%d;\n        location / { return 200 \"ok\\n\"; }\n"
                    "    }\n}\n" % port)
    env = dict(os.environ)
    if ASAN:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    err = tmp_path / "stderr"
    with open(err, "wb") as ef:
        p = subprocess.Popen(["strace", "-f", "-o", "/dev/null", "-e", "trace=io_uring_setup",
                              "-e", "inject=io_uring_setup:error=%s" % errno_name,
                              BALLAST_BIN, "-c", str(conf)],
                             stdout=subprocess.DEVNULL, stderr=ef, env=env,
                             start_new_session=True)
    try:
        assert wait_for(lambda: port in listening_ports() or p.poll() is not None, 10 * SLOW)
        assert p.poll() is None, err.read_text()
        r = http_get(port, "/")
        assert r.status == 200 and r.body == b"ok\n"
        log = err.read_text()
        assert ('"use io_uring" is not possible here: io_uring_setup() failed %s; using epoll'
                % text) in log, log
        assert log.count("is not possible here") == 1, "said once, not per worker"
        assert ring_fds(p.pid) == 0
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(15 * SLOW)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
