#!/usr/bin/env python3
"""A steady HTTP client for tests/multinode/run.sh: starts one GET / on a new connection every
INTERVAL seconds (open loop: a slow answer does not slow the next request), and when the first
attempt fails (refused, reset, timeout, a status other than 200) tries once more after
RETRY_DELAY. One line per request in OUT:
    START_TIME OK1 OK2 NODE1 NODE2
times in seconds since the epoch (the driver's `date +%s.%N` is the same clock), OK 1/0 (OK2 is
'-' when no retry was needed), NODE the X-Node header of the answer ('-' for none).
Stops when STOP_FILE exists, or after MAX_SECONDS whatever happens."""
import socket
import sys
import threading
import time

vip, port, out_path, stop_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
INTERVAL = float(sys.argv[5]) if len(sys.argv) > 5 else 0.02
ATTEMPT_TIMEOUT = float(sys.argv[6]) if len(sys.argv) > 6 else 1.5
RETRY_DELAY = float(sys.argv[7]) if len(sys.argv) > 7 else 0.3
MAX_SECONDS = 300

lock = threading.Lock()
out = open(out_path, "w", buffering=1)


def attempt():
    """(ok, node) for one GET on a new connection."""
    deadline = time.time() + ATTEMPT_TIMEOUT
    try:
        with socket.create_connection((vip, port), timeout=ATTEMPT_TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
            data = b""
            while time.time() < deadline:
                s.settimeout(max(0.01, deadline - time.time()))
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                if len(data) > 65536:
                    break
    except OSError:
        return False, "-"
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    node = "-"
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "x-node":
            node = v.strip()
    ok = lines[0].startswith("HTTP/1.1 200") and b"\r\n\r\n" in data
    return ok, node


def request(start):
    ok1, node1 = attempt()
    ok2, node2 = "-", "-"
    if not ok1:
        time.sleep(RETRY_DELAY)
        ok2, node2 = attempt()
        ok2 = int(ok2)
    with lock:
        out.write(f"{start:.6f} {int(ok1)} {ok2} {node1} {node2}\n")


def main():
    import os
    t_end = time.time() + MAX_SECONDS
    nxt = time.time()
    threads = []
    while not os.path.exists(stop_file) and time.time() < t_end:
        start = time.time()
        t = threading.Thread(target=request, args=(start,), daemon=True)
        t.start()
        threads.append(t)
        threads = [x for x in threads if x.is_alive()]
        nxt += INTERVAL
        time.sleep(max(0.0, nxt - time.time()))
    for t in threads:
        t.join(ATTEMPT_TIMEOUT * 2 + RETRY_DELAY + 1)
    out.close()


main()
