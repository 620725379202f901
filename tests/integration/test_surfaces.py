"""What a newcomer and an nginx operator meet first: exclusive listeners and a locked pid file,
nothing accepted silently, honest messages for what this build lacks, nginx's own configs."""
import os
import subprocess

from conftest import BALLAST_BIN, SLOW, listening_ports, render, run_ballast, wait_for

EXCLUSIVE = """
worker_processes 2;
pid @tmp@/ballast.pid;
error_log @tmp@/error.log notice;
http {
    access_log off;
    server { listen 127.0.0.1:@port@ @opts@; location / { return 200 "first"; } }
}
"""


def second_instance(tmp_path, conf, timeout=5.0):
    """Runs a second ballast on conf; returns (exit code, stderr). One that does not exit on
    its own (it started when it should have been refused) is killed and reported as None."""
    path = tmp_path / "second.conf"
    path.write_text(conf)
    p = subprocess.Popen([BALLAST_BIN, "-c", str(path)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout * SLOW)
        return p.returncode, err
    except subprocess.TimeoutExpired:
        p.terminate()
        _, err = p.communicate(timeout=15 * SLOW)
        return None, err


def test_second_instance_on_same_address_is_refused(ballast, tmp_path):
    first = ballast(EXCLUSIVE, workers=None, opts="")
    pidfile = os.path.join(first.dir, "ballast.pid")
    assert open(pidfile).read().strip() == str(first.pid)
    port = first.port
    assert listening_ports().get(port) == 2  # one socket per worker

    # Same config, same pid file: refused at bind, in nginx's words, before the pid file.
    rc, err = second_instance(tmp_path, first.conf_text)
    assert rc == 1, err
    assert "bind() to 127.0.0.1:%d failed (98: Address already in use)" % port in err, err

    # The first keeps its pid file, every listening socket and so all the traffic.
    assert open(pidfile).read().strip() == str(first.pid)
    assert listening_ports().get(port) == 2
    for _ in range(20):
        r = first.get("/")
        assert (r.status, r.body) == (200, b"first"), r


def test_second_instance_with_same_pid_file_is_refused(ballast, tmp_path):
    first = ballast(EXCLUSIVE, workers=None, opts="")
    pidfile = os.path.join(first.dir, "ballast.pid")
    other = first.conf_text.replace("127.0.0.1:%d" % first.port,
                                    "127.0.0.1:%s" % render("@port@", {}))
    rc, err = second_instance(tmp_path, other)
    assert rc == 1, err
    assert 'pid file "%s" is locked by a running ballast (pid %d)' % (pidfile, first.pid) \
        in err, err
    assert open(pidfile).read().strip() == str(first.pid)
    r = first.get("/")
    assert r.status == 200, r
    # The owner removes it at exit.
    assert first.stop() == 0
    assert not os.path.exists(pidfile)


def test_stale_pid_file_is_taken_over(ballast, tmp_path):
    pidfile = tmp_path / "stale.pid"
    pidfile.write_text("999999\n")
    b = ballast("""
pid %s;
http { server { listen 127.0.0.1:@port@; location / { return 200 "ok"; } } }
""" % pidfile)
    assert pidfile.read_text() == "%d\n" % b.pid


def test_listen_reuseport_lets_processes_share(ballast):
    first = ballast(EXCLUSIVE, workers=None, opts="reuseport")
    second = ballast(first.conf_text.replace("ballast.pid", "second.pid")
                     .replace('"first"', '"second"'), workers=None, port=first.port)
    assert wait_for(lambda: listening_ports().get(first.port) == 4)
    seen = set()
    for _ in range(200):
        r = first.get("/")
        assert r.status == 200, r
        seen.add(r.body)
        if len(seen) == 2:
            break
    assert seen == {b"first", b"second"}
    assert second.stop() == 0
    r = first.get("/")
    assert r.body == b"first", r
