"""Operations: `ballast -s VERB` through the pid file (nginx's words when it cannot), `-T`,
SIGUSR1 log reopening under logrotate's rename, and the graceful QUIT."""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import (BALLAST_BIN, REPO, SLOW, Conn, ConnectionClosed, IncompleteResponse,
                      closed_port, run_ballast, wait_for)

CONF = """
pid @tmp@/ballast.pid;
error_log @tmp@/error.log info;
http {
    access_log @tmp@/access.log;
    server {
        listen 127.0.0.1:@port@;
        location / { return 200 "ok"; }
        location /dead { proxy_pass http://127.0.0.1:@pdead@; }
    }
}
"""


def start(ballast, conf=CONF, **kw):
    b = ballast(conf, pdead=closed_port(), **kw)
    pid_path = os.path.join(b.dir, "ballast.pid")
    # The port accepts a moment before the pid file is written.
    assert wait_for(lambda: os.path.exists(pid_path) and open(pid_path).read().strip(), 5), \
        "no pid file at %s" % pid_path
    return b, pid_path


def ctl(b, verb):
    return run_ballast(["-c", b.conf_path, "-s", verb])


def errlog(b):
    try:
        return open(os.path.join(b.dir, "error.log")).read()
    except FileNotFoundError:
        return ""


def serves(port):
    try:
        with Conn(port, 2.0) as c:
            return c.request("GET", "/").status == 200
    except (OSError, ConnectionClosed, IncompleteResponse):
        return False


# --------------------------------------------------------------------------------------------
# -s
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("verb,sig", [("quit", "SIGQUIT"), ("stop", "SIGTERM")])
def test_s_quit_and_stop_end_the_process(ballast, verb, sig):
    b, _ = start(ballast)
    r = ctl(b, verb)
    assert r.returncode == 0, "rc=%d stderr=%r" % (r.returncode, r.stderr)
    assert r.stderr == "", r.stderr
    rc = b.wait(10)
    assert rc == 0, "ballast did not exit 0 within 10s of -s %s: rc=%r" % (verb, rc)
    log = errlog(b)
    assert "(%s) received, shutting down gracefully" % sig in log, log
    assert not os.path.exists(os.path.join(b.dir, "ballast.pid")), "pid file left behind"


def test_s_quit_is_graceful(ballast, backend):
    """A request in flight when QUIT arrives is answered in full."""
    be = backend("slow")
    b = ballast(CONF.replace('location / { return 200 "ok"; }',
                             "location / { proxy_pass http://127.0.0.1:@pb@; }"),
                pb=be.port, pdead=closed_port())
    pid_path = os.path.join(b.dir, "ballast.pid")
    assert wait_for(lambda: os.path.exists(pid_path) and open(pid_path).read().strip(), 5)
    with Conn(b.port, 10) as c:
        c.send(b"GET /?delay=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: be.requests, 3), "backend never saw the request"
        assert ctl(b, "quit").returncode == 0
        r = c.read_response()
    assert r.status == 200, r
    assert b.wait(10) == 0


@pytest.mark.parametrize("verb", ["reopen", "reload", "upgrade"])
def test_s_verbs_that_keep_it_serving(ballast, verb):
    b, _ = start(ballast)
    r = ctl(b, verb)
    assert r.returncode == 0, "rc=%d stderr=%r" % (r.returncode, r.stderr)
    assert r.stderr == "", r.stderr
    # reload and upgrade may hand over to a new generation or process; either way the port
    # keeps answering.
    assert wait_for(lambda: serves(b.port), 5), "not serving after -s %s" % verb
    if verb == "reopen":
        assert wait_for(lambda: "logs reopened" in errlog(b), 3), errlog(b)
    if verb == "upgrade":
        # The new process took over (test_reload.py checks the hand-over under load); it is
        # not the fixture's child, so stop it here.
        assert b.wait(15) == 0, errlog(b)[-2000:]
        pid_path = os.path.join(b.dir, "ballast.pid")
        new_pid = int(open(pid_path).read())
        assert new_pid != b.pid
        os.kill(new_pid, signal.SIGTERM)
        assert wait_for(lambda: not os.path.exists(pid_path), 15 * SLOW), errlog(b)[-2000:]


def test_s_missing_pid_file(ballast):
    b, pid_path = start(ballast)
    os.unlink(pid_path)
    r = ctl(b, "reload")
    assert r.returncode == 1
    assert r.stderr == 'ballast: open() "%s" failed (2: No such file or directory)\n' % pid_path, \
        r.stderr
    assert serves(b.port)


@pytest.mark.parametrize("content,shown", [("", ""), ("\n", ""), ("abc\n", "abc"),
                                           ("-1\n", "-1"), ("0\n", "0"), ("12x\n", "12x"),
                                           ("99999999999\n", "99999999999")])
def test_s_invalid_pid_number(tmp_path, content, shown):
    pid_path = str(tmp_path / "b.pid")
    open(pid_path, "w").write(content)
    conf = tmp_path / "b.conf"
    conf.write_text("pid %s;\nhttp { }\n" % pid_path)
    r = run_ballast(["-c", str(conf), "-s", "reload"])
    assert r.returncode == 1
    assert r.stderr == 'ballast: invalid PID number "%s" in "%s"\n' % (shown, pid_path), r.stderr


def test_s_process_gone(tmp_path):
    p = subprocess.Popen(["true"])
    p.wait()
    pid_path = str(tmp_path / "b.pid")
    open(pid_path, "w").write("%d\n" % p.pid)
    conf = tmp_path / "b.conf"
    conf.write_text("pid %s;\nhttp { }\n" % pid_path)
    r = run_ballast(["-c", str(conf), "-s", "reload"])
    assert r.returncode == 1
    assert r.stderr == "ballast: kill(%d, %d) failed (3: No such process)\n" % (
        p.pid, signal.SIGHUP), r.stderr


def test_s_stale_pid_of_a_live_stranger_is_not_signalled(tmp_path):
    """A pid file nobody holds the lock on names a process that is not ballast (the pid was
    reused): nginx would signal it; ballast refuses."""
    p = subprocess.Popen(["sleep", "30"])
    try:
        pid_path = str(tmp_path / "b.pid")
        open(pid_path, "w").write("%d\n" % p.pid)
        conf = tmp_path / "b.conf"
        conf.write_text("pid %s;\nhttp { }\n" % pid_path)
        r = run_ballast(["-c", str(conf), "-s", "stop"])
        assert r.returncode == 1
        assert r.stderr == ('ballast: pid file "%s" is stale: process %d does not hold its lock,'
                            ' not signalled\n' % (pid_path, p.pid)), r.stderr
        assert p.poll() is None, "the stranger was signalled"
    finally:
        p.kill()
        p.wait()


def test_s_needs_pid_directive(tmp_path):
    conf = tmp_path / "b.conf"
    conf.write_text("http { }\n")
    r = run_ballast(["-c", str(conf), "-s", "reload"])
    assert r.returncode == 1
    assert 'needs the "pid" directive in %s' % conf in r.stderr, r.stderr


def test_s_bad_verb_and_missing_argument(tmp_path):
    r = run_ballast(["-s", "restart"])
    assert r.returncode == 1
    assert r.stderr == 'ballast: invalid option: "-s restart"\n', r.stderr
    r = run_ballast(["-s"])
    assert r.returncode == 1
    assert "-- 's'" in r.stderr, r.stderr


def test_s_reads_only_the_pid_line(tmp_path, ballast):
    """-s compiles nothing but `pid`: a semantic error elsewhere (a config being edited) does
    not stop `-s quit`, and no log file is created by it; a syntax error is reported."""
    b, pid_path = start(ballast)
    conf = tmp_path / "b.conf"
    conf.write_text("pid %s;\nhttp { prox_pass x; access_log %s/new.log; }\n"
                    % (pid_path, tmp_path))
    r = run_ballast(["-c", str(conf), "-s", "quit"])
    assert r.returncode == 0, r.stderr
    assert b.wait(10) == 0
    assert not (tmp_path / "new.log").exists()
    conf.write_text("pid %s;\nhttp {\n" % pid_path)
    r = run_ballast(["-c", str(conf), "-s", "quit"])
    assert r.returncode == 1
    assert r.stderr == ('ballast: unexpected end of file, expecting "}" in %s:3\n'
                        % conf), r.stderr


# --------------------------------------------------------------------------------------------
# -T
# --------------------------------------------------------------------------------------------

def test_T_prints_every_file_once(tmp_path):
    d = tmp_path / "etc"
    (d / "conf.d").mkdir(parents=True)
    main = ("worker_processes 1;\nhttp {\n    include conf.d/*.conf;\n"
            "    include conf.d/a.conf;\n}\n")
    a = "server { listen 127.0.0.1:18091; location / { return 200; } }\n"
    b = "# no newline at the end\nupstream u { server 127.0.0.1:1; }"
    (d / "ballast.conf").write_text(main)
    (d / "conf.d" / "a.conf").write_text(a)
    (d / "conf.d" / "b.conf").write_text(b)
    conf = str(d / "ballast.conf")
    r = run_ballast(["-T", "-c", conf])
    assert r.returncode == 0, r.stderr
    assert r.stderr == ("ballast: the configuration file %s syntax is ok\n"
                        "ballast: configuration file %s test is successful\n" % (conf, conf))
    want = ("# configuration file %s:\n%s\n" % (conf, main) +
            "# configuration file %s/conf.d/a.conf:\n%s\n" % (d, a) +
            "# configuration file %s/conf.d/b.conf:\n%s\n" % (d, b))
    assert r.stdout == want


def test_T_error_is_t_error(tmp_path):
    conf = tmp_path / "b.conf"
    conf.write_text("http {\n    include missing.conf;\n}\n")
    r = run_ballast(["-T", "-c", str(conf)])
    assert r.returncode == 1
    assert r.stdout == ""
    assert "ballast: open() \"%s/missing.conf\" failed" % tmp_path in r.stderr, r.stderr
    assert r.stderr.endswith("ballast: configuration file %s test failed\n" % conf), r.stderr


# --------------------------------------------------------------------------------------------
# SIGUSR1: reopen the logs (logrotate renames, then signals)
# --------------------------------------------------------------------------------------------

class Load:
    """Requests /r/N one after the other on fresh connections until stopped (bounded)."""

    def __init__(self, port):
        self.port = port
        self.done = []
        self.failed = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        deadline = time.monotonic() + 30 * SLOW
        i = 0
        while not self.stop.is_set() and time.monotonic() < deadline and i < 20000:
            path = "/r/%d" % i
            try:
                with Conn(self.port, 5.0) as c:
                    r = c.request("GET", path)
                (self.done if r.status == 200 else self.failed).append(path)
            except (OSError, ConnectionClosed, IncompleteResponse) as e:
                self.failed.append("%s: %s" % (path, e))
            i += 1

    def wait_count(self, n):
        assert wait_for(lambda: len(self.done) >= n, 10), "only %d requests done" % len(self.done)

    def finish(self):
        self.stop.set()
        self.t.join(30 * SLOW)
        return list(self.done)


def logged_paths(path):
    try:
        text = open(path).read()
    except FileNotFoundError:
        return []
    return [ln.split('"')[1].split(" ")[1] for ln in text.split("\n") if ln]


def rotate_and_check(b, logdir, signal_it, renamed_by_signal=False):
    """Under load: rename the logs (unless signal_it does, as logrotate), signal_it(), and
    check that the new files get the new lines and that old + new hold every request once."""
    access = os.path.join(logdir, "access.log")
    error = os.path.join(logdir, "error.log")
    load = Load(b.port)
    try:
        load.wait_count(50)
        # Lines wait up to 500 ms in a worker's buffer: let some reach the old file.
        assert wait_for(lambda: logged_paths(access), 5), "nothing in the access log"
        if not renamed_by_signal:
            os.rename(access, access + ".1")
            os.rename(error, error + ".1")
        signal_it()
        assert wait_for(lambda: "logs reopened" in (open(error).read()
                                                    if os.path.exists(error) else ""), 5), \
            "no 'logs reopened' in the new error log; old one:\n" + open(error + ".1").read()
        n = len(load.done)
        load.wait_count(n + 50)
        # A worker's error line lands in the new file too.
        with Conn(b.port, 5) as c:
            assert c.request("GET", "/dead").status == 502
    finally:
        done = load.finish()
    assert not load.failed, load.failed[:5]
    assert b.stop(signal.SIGQUIT) == 0
    old, new = logged_paths(access + ".1"), logged_paths(access)
    assert "SIGUSR1 received, reopening logs" in open(error + ".1").read()
    assert re.search(r"\[error\] \d+#[1-9]\d*: ", open(error).read()), \
        "no worker's error line in the new error log:\n" + open(error).read()
    assert new, "nothing was written to the new access log"
    assert old, "nothing was written to the old access log"
    got = sorted(p for p in old + new if p.startswith("/r/"))
    assert got == sorted(done), "lost %d lines, %d extra" % (
        len(set(done) - set(got)), len(got) - len(set(done) & set(got)))
    # The last requests went to the new file.
    assert done[-1] in new


def test_sigusr1_reopens_renamed_logs_without_losing_a_line(ballast):
    b, _ = start(ballast, workers=2)
    rotate_and_check(b, b.dir, lambda: b.send_signal(signal.SIGUSR1))


def test_reopen_after_reload_reopens_the_running_configs_logs(ballast):
    """SIGUSR1 after SIGHUP: the logs reopened are those of the configuration now running (a
    reload replaces the config the logs hang off; reopening a freed one would be a
    use-after-free, which the ASan run reports)."""
    b, _ = start(ballast, workers=2)
    assert ctl(b, "reload").returncode == 0
    assert wait_for(lambda: serves(b.port), 5)
    rotate_and_check(b, b.dir, lambda: b.send_signal(signal.SIGUSR1))


def test_s_reopen_after_user_dropped_root(ballast):
    """As root with `user nobody`: the log files are handed to nobody at start-up, so the
    reopen works without root; the directory is writable for the new files."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    logdir = tempfile.mkdtemp(prefix="ballast-logs-")
    try:
        os.chmod(logdir, 0o777)
        b, _ = start(ballast, conf=CONF.replace("@tmp@/error.log", logdir + "/error.log")
                     .replace("@tmp@/access.log", logdir + "/access.log")
                     .replace("http {", "user nobody nogroup;\nhttp {", 1))
        for f in ("error.log", "access.log"):
            st = os.stat(os.path.join(logdir, f))
            assert st.st_uid == pw.pw_uid, "%s owned by uid %d, not nobody" % (f, st.st_uid)

        def reopen():
            r = ctl(b, "reopen")
            assert r.returncode == 0, r.stderr
        rotate_and_check(b, logdir, reopen)
        assert os.stat(os.path.join(logdir, "access.log")).st_uid == pw.pw_uid
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def test_logrotate_with_the_shipped_snippet(ballast):
    """examples/logrotate.ballast, run by logrotate itself (forced), with its paths moved into
    the test's directory: the logs rotate, ballast writes on into the new files, nothing is
    lost."""
    if not shutil.which("logrotate"):
        pytest.skip("logrotate is not installed (Debian logrotate)")
    b, _ = start(ballast, workers=2)
    snippet = open(os.path.join(REPO, "examples", "logrotate.ballast")).read()
    snippet = (snippet.replace("/var/log/ballast", b.dir)
               .replace("/usr/local/sbin/ballast", BALLAST_BIN)
               .replace("/etc/ballast/ballast.conf", b.conf_path))
    if os.geteuid() != 0:
        snippet = snippet.replace("create 0640 www-data adm", "create")
    conf = os.path.join(b.dir, "logrotate.conf")
    open(conf, "w").write(snippet)

    def rotate():
        r = subprocess.run(["logrotate", "-f", "-s", os.path.join(b.dir, "logrotate.state"),
                            conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60 * SLOW)
        assert r.returncode == 0, r.stdout
    rotate_and_check(b, b.dir, rotate, renamed_by_signal=True)


def test_sigusr1_with_stderr_log_and_unwritable_path(ballast):
    """error_log stderr: nothing to reopen. An access log whose path became unwritable keeps
    its old file and says so."""
    b = ballast("""
error_log stderr info;
http {
    access_log @tmp@/logs/access.log;
    server { listen 127.0.0.1:@port@; location / { return 200 "ok"; } }
}
""", files={"logs/.keep": ""})
    logs = os.path.join(b.dir, "logs")
    os.rename(logs, logs + ".old")
    b.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: "still writing to the old file" in b.stderr_text(), 5), \
        b.stderr_text()
    with Conn(b.port, 5) as c:
        assert c.request("GET", "/x").status == 200
    assert b.stop(signal.SIGQUIT) == 0
    assert "/x" in open(os.path.join(logs + ".old", "access.log")).read()


# --------------------------------------------------------------------------------------------
# systemd: READY=1 / STOPPING=1 on $NOTIFY_SOCKET
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_ready_reloading_stopping(ballast, tmp_path, abstract):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        if abstract:
            name = "ballast-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            s.bind("\0" + name)
            addr = "@" + name
        else:
            addr = str(tmp_path / "notify.sock")
            s.bind(addr)
        s.settimeout(10 * SLOW)
        b = ballast(CONF, pdead=closed_port(), wait=False, env={"NOTIFY_SOCKET": addr})
        msg = s.recv(4096).decode()
        assert "READY=1" in msg.split("\n"), msg
        # When READY=1 arrives, the port accepts and answers.
        with Conn(b.port, 5) as c:
            assert c.request("GET", "/").status == 200
        # A reload is bracketed by RELOADING=1 (with the monotonic time systemd asks for) and
        # READY=1, whether the config took or not.
        for _ in range(2):
            b.send_signal(signal.SIGHUP)
            msg = s.recv(4096).decode().split("\n")
            assert msg[0] == "RELOADING=1" and msg[1].startswith("MONOTONIC_USEC="), msg
            assert int(msg[1].split("=")[1]) > 0
            msg = s.recv(4096).decode()
            assert "READY=1" in msg.split("\n"), msg
            open(b.conf_path, "a").write("\nbroken;\n")
        assert serves(b.port)
        b.send_signal(signal.SIGTERM)
        msg = s.recv(4096).decode()
        assert msg == "STOPPING=1", msg
        assert b.wait(10) == 0
    finally:
        s.close()


def test_sd_notify_bad_socket_is_a_warning(ballast, tmp_path):
    b = ballast(CONF, pdead=closed_port(), env={"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert wait_for(lambda: 'sd_notify("READY=1") to "%s" failed' % (tmp_path / "nobody")
                    in errlog(b), 5), errlog(b)
    assert serves(b.port)


# --------------------------------------------------------------------------------------------
# make install, the man page, the systemd unit
# --------------------------------------------------------------------------------------------

INSTALLED = [
    "etc/ballast/ballast.conf",
    "etc/ballast/mime.types",
    "usr/local/lib/systemd/system/ballast.service",
    "usr/local/sbin/ballast",
    "usr/local/share/doc/ballast/README.md",
    "usr/local/share/doc/ballast/examples/logrotate.ballast",
    "usr/local/share/doc/ballast/operations.md",
    "usr/local/share/man/man8/ballast.8",
]


def make(*args, timeout=600):
    """make in the repository; install builds ./ballast first when it is missing or stale
    (integration-asan alone does not build it)."""
    return subprocess.run(["make", "-j2", "--no-print-directory", "-C", REPO] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def tree(root):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


def test_make_install_destdir_and_uninstall(tmp_path):
    dest = str(tmp_path / "dest")
    r = make("install", "DESTDIR=" + dest)
    assert r.returncode == 0, r.stdout
    got = tree(dest)
    for f in INSTALLED:
        assert f in got, "%s not installed; installed: %s" % (f, got)
    assert os.access(os.path.join(dest, "usr/local/sbin/ballast"), os.X_OK)
    unit = open(os.path.join(dest, "usr/local/lib/systemd/system/ballast.service")).read()
    assert "ExecStart=/usr/local/sbin/ballast -c /etc/ballast/ballast.conf\n" in unit, unit
    assert "@" not in unit.replace("$MAINPID", ""), unit

    # The installed example config is valid (its paths moved into the test's directory).
    conf = os.path.join(dest, "etc/ballast/ballast.conf")
    text = open(conf).read()
    assert "pid /run/ballast.pid;" in text and "include mime.types;" in text
    moved = os.path.join(dest, "etc/ballast/moved.conf")
    open(moved, "w").write(text.replace("/var/log/ballast", str(tmp_path))
                           .replace("/run/ballast.pid", str(tmp_path / "b.pid")))
    r = run_ballast(["-t", "-c", moved])
    assert r.returncode == 0, r.stderr

    # A second install leaves the operator's config alone.
    open(conf, "w").write("# mine\n")
    r = make("install", "DESTDIR=" + dest)
    assert r.returncode == 0, r.stdout
    assert "exists, left as it is" in r.stdout, r.stdout
    assert open(conf).read() == "# mine\n"

    r = make("uninstall", "DESTDIR=" + dest)
    assert r.returncode == 0, r.stdout
    assert tree(dest) == sorted(["etc/ballast/ballast.conf", "etc/ballast/mime.types",
                                 "etc/ballast/moved.conf"]), tree(dest)


def test_man_page_renders_without_warnings():
    if not shutil.which("groff"):
        pytest.skip("groff is not installed (Debian groff-base)")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                        os.path.join(REPO, "man", "ballast.8")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30,
                       env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou",
                        os.path.join(REPO, "man", "ballast.8")],
                       stdout=subprocess.PIPE, text=True, timeout=30,
                       env=dict(os.environ, LC_ALL="C.UTF-8"))
    for section in ("SYNOPSIS", "OPTIONS", "SIGNALS", "FILES", "SEE ALSO"):
        assert section in r.stdout, section


def test_systemd_unit_verifies(tmp_path):
    """systemd-analyze verify checks the unit's syntax, that ExecStart's binary exists and
    that the man page its Documentation= names is there: install with real paths under the
    test's directory (no DESTDIR) so that all three are."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian systemd)")
    prefix = str(tmp_path / "usr")
    r = make("install", "PREFIX=" + prefix, "SYSCONFDIR=" + str(tmp_path / "etc"))
    assert r.returncode == 0, r.stdout
    unit = os.path.join(prefix, "lib/systemd/system/ballast.service")
    text = open(unit).read()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM",
                 "ExecStartPre=%s/sbin/ballast -t -c %s/etc/ballast/ballast.conf"
                 % (prefix, tmp_path), "LimitNOFILE=", "NoNewPrivileges=yes",
                 "ProtectSystem="):
        assert line in text, line
    r = subprocess.run(["systemd-analyze", "verify", unit], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60,
                       env=dict(os.environ, MANPATH=os.path.join(prefix, "share/man")))
    assert r.returncode == 0 and r.stdout == "", r.stdout
