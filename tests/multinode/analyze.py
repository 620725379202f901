#!/usr/bin/env python3
"""Reads what tests/multinode/run.sh recorded and prints one line per case:
    case=NAME vip_move_s=X failed=N failed_with_retry=N client_s=Y flaps=N
Usage: analyze.py CASES CLIENT_OUT N1_EVENTS N2_EVENTS. Exits 1 when a case that should move
the address did not, or a master change happened that no case caused (a flap)."""
import sys

cases_path, client_path, ev_paths = sys.argv[1], sys.argv[2], sys.argv[3:]

cases = []
for line in open(cases_path):
    name, t0, expect, origin = line.split()
    cases.append((name, float(t0), expect, origin))

masters = []  # (time, node) for each MASTER transition
for i, path in enumerate(ev_paths, 1):
    for line in open(path):
        f = line.split()
        # date hostname TYPE NAME STATE PRIORITY
        if len(f) >= 5 and f[4] == "MASTER":
            masters.append((float(f[0]), f"n{i}"))
masters.sort()

reqs = []
for line in open(client_path):
    start, ok1, ok2, node1, node2 = line.split()
    reqs.append((float(start), ok1 == "1", ok2 == "1", node1, node2))

ok = True
for i, (name, t0, expect, origin) in enumerate(cases[:-1]):
    t1 = cases[i + 1][1]
    new = "n2" if origin == "n1" else "n1"
    in_window = [m for m in masters if t0 <= m[0] < t1]
    win = [r for r in reqs if t0 <= r[0] < t1]
    failed = sum(1 for r in win if not r[1])
    failed_retry = sum(1 for r in win if not r[1] and not r[2])
    if expect == "move":
        moved = [m for m in in_window if m[1] == new]
        move = f"{moved[0][0] - t0:.3f}" if moved else "never"
        flaps = max(0, len(in_window) - 1)
        served = [r[0] for r in win if r[1] and r[3] == new]
        client = f"{served[0] - t0:.3f}" if served else "never"
        if not moved:
            ok = False
    else:
        move, client = "none", "none"
        flaps = len(in_window)
    if flaps:
        ok = False
    print(f"case={name} vip_move_s={move} failed={failed} failed_with_retry={failed_retry} "
          f"client_s={client} flaps={flaps} requests={len(win)}")
sys.exit(0 if ok else 1)
