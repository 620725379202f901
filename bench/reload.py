#!/usr/bin/env python3
"""Reload time: from SIGHUP to the new configuration generation serving; with --upgrades N,
binary upgrade hand-over time too (SIGUSR2 to the new process serving).

    python3 bench/reload.py [--bin ./ballast] [--reloads 200] [--workers 2] [--servers 50]
                            [--upgrades 0]

Starts ballast with a config of one server block whose `location = /gen` returns the
generation's tag and an upstream of --servers servers, then reloads --reloads times
alternating two configs (server weights and the tag differ). Two figures per reload:
  internal  what ballast logs: reload begun on the control thread -> every worker switched
  external  os.kill(SIGHUP) -> the first request on a new connection answered with the new tag
            (polled as fast as Python can; includes the poll's own latency)
Upgrades (after the reloads), each from the process the previous one started:
  upgrade   what the old process logs: SIGUSR2 -> the new process reported ready
  handover  os.kill(SIGUSR2) -> the pid file names the new process and it answers
Prints median, p90, p99 and max of each, in milliseconds.
"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CONF = """worker_processes %(workers)d;
pid %(dir)s/ballast.pid;
error_log %(dir)s/error.log notice;
http {
    access_log off;
    upstream app {
%(servers)s
    }
    server {
        listen 127.0.0.1:%(port)d;
        location = /gen { return 200 "%(tag)s"; }
        location / { proxy_pass http://app; }
    }
}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /gen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    return data.split(b"\r\n\r\n", 1)[-1].decode()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="./ballast")
    ap.add_argument("--reloads", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--servers", type=int, default=50)
    ap.add_argument("--upgrades", type=int, default=0)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="ballast-reload-")
    port = free_port()
    conf_path = os.path.join(d, "ballast.conf")

    def write(tag, weight):
        servers = "\n".join("        server 127.0.0.1:%d weight=%d;" % (30000 + i, weight)
                            for i in range(a.servers))
        with open(conf_path, "w") as f:
            f.write(CONF % {"workers": a.workers, "dir": d, "servers": servers, "port": port,
                            "tag": tag})

    write("t0", 1)
    proc = subprocess.Popen([a.bin, "-c", conf_path], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                if get(port) == "t0":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit("ballast did not start")
            time.sleep(0.01)
        log = os.path.join(d, "error.log")
        external = []
        for i in range(1, a.reloads + 1):
            tag = "t%d" % i
            write(tag, 1 + i % 2)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            while get(port) != tag:
                if time.monotonic() - t0 > 5:
                    sys.exit("reload %d did not apply" % i)
            external.append((time.monotonic() - t0) * 1000)
        time.sleep(0.2)
        internal = [float(m) for m in re.findall(
            r"serves on every worker, ([0-9.]+) ms after", open(log).read())]
        pid_path = os.path.join(d, "ballast.pid")
        pid = proc.pid
        handover = []
        for i in range(a.upgrades):
            t0 = time.monotonic()
            os.kill(pid, signal.SIGUSR2)
            while True:
                try:
                    new = int(open(pid_path).read())
                except ValueError:
                    new = pid
                if new != pid and get(port) == "t%d" % a.reloads:
                    break
                if time.monotonic() - t0 > 10:
                    sys.exit("upgrade %d did not happen" % i)
            handover.append((time.monotonic() - t0) * 1000)
            pid = new
            if i == 0:
                proc.wait(10)
        time.sleep(0.2)
        upgrade = [float(m) for m in re.findall(
            r"upgrade: new process \d+ serves, ([0-9.]+) ms after", open(log).read())]
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, NameError):
            proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    print("reloads: %d, workers: %d, upstream servers: %d" % (a.reloads, a.workers, a.servers))
    series = [("internal", internal), ("external", external)]
    if a.upgrades:
        series += [("upgrade", upgrade), ("handover", handover)]
    for name, xs in series:
        print("%-9s ms: median %.3f  p90 %.3f  p99 %.3f  max %.3f  (n=%d)" % (
            name, statistics.median(xs), pct(xs, 90), pct(xs, 99), max(xs), len(xs)))


if __name__ == "__main__":
    main()
