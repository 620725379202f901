"""stream UDP (`listen ... udp`): small Python DNS responders (one query, one answer, built by
hand) behind ballast, queried with dig and raw sockets: answers come back, round robin spreads
sessions, proxy_responses ends a session, proxy_timeout ends an idle one (200, or 502 when an
answer is owed), a dead responder (ICMP port unreachable) fails over unseen, the access log
has the session's bytes and status."""
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import SLOW, free_port, wait_for

DIG = shutil.which("dig")


def udp_free_port():
    """A port free for both TCP (conftest's bookkeeping) and UDP."""
    for _ in range(50):
        p = free_port()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free UDP port")


def dns_query(name="example.test", qid=0x1234):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", 1, 1)


class Responder:
    """Answers every DNS query with one A record (ip); answer=False: stays silent."""

    def __init__(self, ip, answer=True, burst=1):
        self.ip, self.answer, self.burst = ip, answer, burst
        self.port = udp_free_port()
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if not self.answer or len(data) < 12:
                continue
            qid = struct.unpack(">H", data[:2])[0]
            end = 12
            while end < len(data) and data[end]:
                end += 1 + data[end]
            question = data[12:end + 5]
            ans = (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) +
                   socket.inet_aton(self.ip))
            head = struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0)
            try:
                for _ in range(self.burst):
                    self.sock.sendto(head + question + ans, peer)
            except OSError:
                pass

    def stop(self):
        self.stop_ev.set()
        self.sock.close()
        self.t.join(2)


@pytest.fixture
def responder():
    made = []

    def make(ip, **kw):
        r = Responder(ip, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


CONF = """
error_log @tmp@/error.log info;
stream {
    log_format udp '$remote_addr $upstream_addr $bytes_sent $bytes_received $status';
    access_log @tmp@/access.log udp;
    upstream dns {
        %(upstream)s
    }
    server {
        listen 127.0.0.1:%(port)d udp;
        proxy_pass dns;
        %(server)s
    }
}
"""


def udp_bound(port):
    for f in ("/proc/net/udp",):
        with open(f) as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def start(ballast, servers, upstream="", server="", workers=1):
    port = udp_free_port()
    lines = ["server 127.0.0.1:%d%s;" % (p, o) for p, o in servers] + \
            ([upstream] if upstream else [])
    bl = ballast(CONF % {"upstream": "\n        ".join(lines), "server": server, "port": port},
                 wait=False, workers=workers)
    assert wait_for(lambda: udp_bound(port), 5 * SLOW), bl.stderr_text()[-2000:]
    bl.udp_port = port
    return bl


def log_lines(bl):
    p = os.path.join(bl.dir, "access.log")
    return open(p).read().splitlines() if os.path.exists(p) else []


def ask(port, sock=None, qid=0x1234, timeout=2.0):
    """One query; the answer's A record as text, or None on timeout."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout * SLOW)
    try:
        s.sendto(dns_query(qid=qid), ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
        assert struct.unpack(">H", data[:2])[0] == qid
        return socket.inet_ntoa(data[-4:])
    except socket.timeout:
        return None
    finally:
        if own:
            s.close()


@pytest.mark.skipif(DIG is None, reason="dig (dnsutils) not installed")
def test_dig_through_ballast_round_robin(ballast, responder):
    a, b = responder("10.0.0.1"), responder("10.0.0.2")
    bl = start(ballast, [(a.port, ""), (b.port, "")], server="proxy_responses 1;")
    got = []
    for _ in range(6):
        r = subprocess.run([DIG, "@127.0.0.1", "-p", str(bl.udp_port), "+short", "+tries=1",
                            "+time=%d" % int(3 * SLOW), "example.test", "A"],
                           capture_output=True, text=True, timeout=10 * SLOW)
        got.append(r.stdout.strip())
    assert sorted(set(got)) == ["10.0.0.1", "10.0.0.2"], got
    assert a.queries == 3 and b.queries == 3, (a.queries, b.queries)
    # One log line per session: 200, the answer's bytes out, the query's bytes in.
    assert wait_for(lambda: len(log_lines(bl)) == 6, 3 * SLOW), log_lines(bl)
    for line in log_lines(bl):
        ip, up, sent, received, status = line.split()
        assert ip == "127.0.0.1" and status == "200", line
        assert up in ("127.0.0.1:%d" % a.port, "127.0.0.1:%d" % b.port), line
        assert int(sent) > 12 and int(received) > 12, line


def test_session_per_client_and_proxy_responses(ballast, responder):
    """Without proxy_responses one client address keeps its session (and server); with
    proxy_responses 1 each answer ends it, so the next query is a new session."""
    a, b = responder("10.0.0.1"), responder("10.0.0.2")
    bl = start(ballast, [(a.port, ""), (b.port, "")])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = {ask(bl.udp_port, s, qid=i) for i in range(4)}
    s.close()
    assert len(got) == 1 and None not in got, got
    assert log_lines(bl) == []                   # the session is still open (proxy_timeout)
    bl.stop()

    bl = start(ballast, [(a.port, ""), (b.port, "")], server="proxy_responses 1;")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = [ask(bl.udp_port, s, qid=i) for i in range(4)]
    s.close()
    assert sorted(set(got)) == ["10.0.0.1", "10.0.0.2"], got
    assert wait_for(lambda: len(log_lines(bl)) == 4, 3 * SLOW), log_lines(bl)


def test_proxy_responses_0_and_requests(ballast, responder):
    """proxy_responses 0: the datagram goes out and the session ends (syslog-like);
    proxy_requests 2: two datagrams per session."""
    sink = responder("10.0.0.9", answer=False)
    bl = start(ballast, [(sink.port, "")], server="proxy_responses 0;")
    for i in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"<13>hello %d" % i, ("127.0.0.1", bl.udp_port))
        s.close()
    assert wait_for(lambda: sink.queries == 3, 3 * SLOW), sink.queries
    assert wait_for(lambda: len(log_lines(bl)) == 3, 3 * SLOW), log_lines(bl)
    assert all(l.endswith(" 0 11 200") for l in log_lines(bl)), log_lines(bl)
    bl.stop()

    a = responder("10.0.0.1")
    bl = start(ballast, [(a.port, "")], server="proxy_requests 2; proxy_responses 1;")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert [ask(bl.udp_port, s, qid=i) for i in range(4)] == ["10.0.0.1"] * 4
    s.close()
    assert wait_for(lambda: len(log_lines(bl)) == 2, 3 * SLOW), log_lines(bl)


def test_proxy_timeout_ends_idle_sessions(ballast, responder):
    a = responder("10.0.0.1")
    silent = responder("10.0.0.2", answer=False)
    bl = start(ballast, [(a.port, "")], server="proxy_timeout 300ms;")
    assert ask(bl.udp_port) == "10.0.0.1"
    # Answered, nothing owed (no proxy_responses): idle end is a success.
    assert wait_for(lambda: len(log_lines(bl)) == 1, 3 * SLOW), log_lines(bl)
    assert log_lines(bl)[0].endswith(" 200"), log_lines(bl)
    bl.stop()

    bl = start(ballast, [(silent.port, "")], server="proxy_timeout 300ms; proxy_responses 1;")
    assert ask(bl.udp_port, timeout=1.0) is None
    assert wait_for(lambda: len(log_lines(bl)) == 1, 3 * SLOW), log_lines(bl)
    assert log_lines(bl)[0].endswith(" 0 %d 502" % len(dns_query())), log_lines(bl)
    log = open(os.path.join(bl.dir, "error.log")).read()
    assert "udp: upstream 127.0.0.1:%d timed out (0 of 1 answers" % silent.port in log


def test_dead_responder_fails_over(ballast, responder):
    """A server with nothing bound answers ICMP port unreachable: the query goes to the next
    server unseen by the client, and max_fails takes the dead one out."""
    live = responder("10.0.0.1")
    dead = udp_free_port()
    bl = start(ballast, [(dead, " max_fails=1 fail_timeout=30s"), (live.port, "")],
               server="proxy_responses 1; proxy_timeout 2s;")
    got = [ask(bl.udp_port, qid=i) for i in range(6)]
    assert got == ["10.0.0.1"] * 6, got
    assert wait_for(lambda: len(log_lines(bl)) == 6, 3 * SLOW), log_lines(bl)
    lines = log_lines(bl)
    failed_over = [l for l in lines if "127.0.0.1:%d, 127.0.0.1:%d" % (dead, live.port) in l]
    assert len(failed_over) == 1, lines       # then max_fails=1 keeps it out
    assert all(l.endswith(" 200") for l in lines), lines
    log = open(os.path.join(bl.dir, "error.log")).read()
    assert "udp: upstream 127.0.0.1:%d failed (Connection refused)" % dead in log


def test_hash_remote_addr_and_two_workers(ballast, responder):
    rs = [responder("10.0.0.%d" % i) for i in range(1, 5)]
    bl = start(ballast, [(r.port, "") for r in rs], upstream="hash $remote_addr consistent;",
               server="proxy_responses 1;", workers=2)
    got = {ask(bl.udp_port, qid=i) for i in range(8)}
    assert len(got) == 1 and None not in got, got   # one client address, one server


def test_udp_and_tcp_share_a_port(tmp_path, ballast, responder):
    a = responder("10.0.0.1")
    port = udp_free_port()
    bl = ballast("""
stream {
    server { listen 127.0.0.1:%d udp; listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; }
}
""" % (port, port, a.port))
    assert wait_for(lambda: udp_bound(port), 5 * SLOW)
    assert ask(port) == "10.0.0.1"


def test_answer_burst_all_relayed(ballast, responder):
    """A server answering one datagram with 100 (more than one read batch) gets every one
    relayed: the upstream socket is read until it is empty."""
    r = responder("10.0.0.7", burst=100)
    bl = start(ballast, [(r.port, "")], server="proxy_timeout 2s;")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.settimeout(3 * SLOW)
    s.sendto(dns_query(), ("127.0.0.1", bl.udp_port))
    got = 0
    try:
        while got < 100:
            s.recvfrom(65535)
            got += 1
    except socket.timeout:
        pass
    s.close()
    assert got == 100, got


def test_deny_and_limit_conn_apply_to_udp(ballast, responder):
    """allow/deny and limit_conn run for a UDP session's first datagram as for a TCP
    connection: a denied client gets no answer and the session is logged 403."""
    a = responder("10.0.0.1")
    bl = start(ballast, [(a.port, "")], server="deny 127.0.0.1; proxy_responses 1;")
    assert ask(bl.udp_port, timeout=0.5) is None
    assert a.queries == 0
    assert wait_for(lambda: len(log_lines(bl)) == 1, 3 * SLOW), log_lines(bl)
    assert log_lines(bl)[0].endswith(" 403"), log_lines(bl)
