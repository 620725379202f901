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
