"""Stream counters in /metrics (Prometheus text, checked with promtool) and the admin API
(/api/stream, /api/upstreams): TCP and UDP sessions by $status, client bytes, open sessions,
and the upstream servers' bytes and state, with exact counts."""
import json
import shutil
import socket
import subprocess

import pytest

from conftest import SLOW, http_get, listening_ports, wait_for
from test_stream import TcpServer, echo, talk
from test_stream_udp import Responder, ask, dns_query, udp_bound, udp_free_port

CONF = """
error_log @tmp@/error.log info;
admin {
    listen 127.0.0.1:@port_admin@;
}
stream {
    upstream tcpapp { server 127.0.0.1:%(tcp)d; }
    upstream dns { server 127.0.0.1:%(dns)d; }
    upstream gone { server 127.0.0.1:%(dns)d down; }
    server { listen 127.0.0.1:@port@; proxy_pass tcpapp; }
    server { listen 127.0.0.1:%(udp)d udp; proxy_pass dns; proxy_responses 1; }
    server { listen 127.0.0.1:%(udp2)d udp; proxy_pass gone; }
}
"""


def metric(text, name, labels):
    for line in text.splitlines():
        if line.startswith(name + "{" + labels + "}"):
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("%s{%s} not in:\n%s" % (name, labels, text[-3000:]))


def test_stream_metrics_and_api(ballast):
    srv = TcpServer(echo, "a")
    dns = Responder("10.0.0.1")
    try:
        udp, udp2 = udp_free_port(), udp_free_port()
        bl = ballast(CONF % {"tcp": srv.port, "dns": dns.port, "udp": udp, "udp2": udp2},
                     workers=2, wait=False)
        admin = bl.values["port_admin"]
        assert wait_for(lambda: udp_bound(udp) and udp_bound(udp2) and
                        {admin, bl.port} <= set(listening_ports()), 5 * SLOW)
        for _ in range(3):
            assert talk(bl.port, b"hello") == b"a:hello"
        for i in range(4):
            assert ask(udp, qid=i) == "10.0.0.1"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(dns_query(), ("127.0.0.1", udp2))  # no live server: 503
        s.close()

        def ended():
            t = http_get(admin, "/metrics").body.decode()
            return (metric(t, "ballast_stream_server_sessions_total",
                           'listen="127.0.0.1:%d",upstream="tcpapp",status="200"' % bl.port) == 3
                    and metric(t, "ballast_stream_server_sessions_total",
                               'listen="127.0.0.1:%d udp",upstream="gone",status="503"'
                               % udp2) == 1)
        assert wait_for(ended, 5 * SLOW)

        r = http_get(admin, "/metrics")
        if shutil.which("promtool"):
            out = subprocess.run(["promtool", "check", "metrics"], input=r.body,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            assert out.returncode == 0, out.stdout.decode()
        t = r.body.decode()
        tl = 'listen="127.0.0.1:%d",upstream="tcpapp"' % bl.port
        ul = 'listen="127.0.0.1:%d udp",upstream="dns"' % udp
        q = len(dns_query())
        assert metric(t, "ballast_stream_server_received_bytes_total", tl) == 15
        assert metric(t, "ballast_stream_server_sent_bytes_total", tl) == 21
        assert metric(t, "ballast_stream_server_sessions", tl) == 0
        assert metric(t, "ballast_stream_server_sessions_total", ul + ',status="200"') == 4
        assert metric(t, "ballast_stream_server_sessions_total", ul + ',status="502"') == 0
        assert metric(t, "ballast_stream_server_received_bytes_total", ul) == 4 * q
        answer = metric(t, "ballast_stream_server_sent_bytes_total", ul)
        assert answer > 4 * q
        assert metric(t, "ballast_listen_connections_accepted_total",
                      'listen="127.0.0.1:%d udp"' % udp) == 4
        peer = 'upstream="dns",server="127.0.0.1:%d"' % dns.port
        assert metric(t, "ballast_upstream_server_sent_bytes_total", peer) == 4 * q
        assert metric(t, "ballast_upstream_server_received_bytes_total", peer) == answer
        assert metric(t, "ballast_upstream_server_state", peer + ',state="up"') == 1
        assert metric(t, "ballast_upstream_server_connections", peer + ',state="active"') == 0
        tpeer = 'upstream="tcpapp",server="127.0.0.1:%d"' % srv.port
        assert metric(t, "ballast_upstream_server_sent_bytes_total", tpeer) == 15
        assert metric(t, "ballast_upstream_server_received_bytes_total", tpeer) == 21

        j = json.loads(http_get(admin, "/api/stream").body)
        by = {e["listen"]: e for e in j["servers"]}
        u = by["127.0.0.1:%d udp" % udp]
        assert u["protocol"] == "udp" and u["upstream"] == "dns", u
        assert u["sessions_started"] == 4 and u["active"] == 0, u
        assert u["sessions"]["200"] == 4 and u["received_bytes"] == 4 * q, u
        tc = by["127.0.0.1:%d" % bl.port]
        assert tc["protocol"] == "tcp" and tc["sessions"]["200"] == 3, tc
        assert tc["received_bytes"] == 15 and tc["sent_bytes"] == 21, tc
        assert by["127.0.0.1:%d udp" % udp2]["sessions"]["503"] == 1
        ups = json.loads(http_get(admin, "/api/upstreams/dns").body)
        assert ups["servers"][0]["sent_bytes"] == 4 * q, ups
    finally:
        srv.stop()
        dns.stop()
