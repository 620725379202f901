"""ballast against the floor (bench/floor.sh, bench/floor_relay.c): the parts of report.py's
tables that compare each proxy with a relay that does not parse. Imported by report.py.

The floor of an epoll proxy (ballast, ballast-base, nginx, HAProxy) is floor-epoll; ballast's
io_uring backend (ballast-uring) is compared with floor-uring. Syscalls per request come from
the "perf" records (perf stat over a short run per proxy and connection count).
"""

HTTP_ONLY = ("ballast-uring", "floor-epoll", "floor-uring")
# issue 14: "CPU per request within 5% of the floor relay at 200 connections on one worker"
TARGET_RATIO = 1.05
TARGET_CONNS = 200


def floor_of(proxy):
    if proxy.startswith("floor-"):
        return None
    return "floor-uring" if proxy == "ballast-uring" else "floor-epoll"


def load_perf(path):
    """{(proxy, conns): syscalls per request} from the records file's "perf" lines."""
    out = {}
    with open(path) as f:
        for line in f:
            r = line.rstrip("\n").split("\t")
            if r[0] == "perf" and len(r) >= 5 and int(r[3] or 0) > 0 and int(r[4] or 0) > 0:
                out[(r[1], int(r[2]))] = int(r[4]) / int(r[3])
    return out


def cpu_vs_floor(agg, proxy, conns):
    """The "CPU vs floor" cell of the throughput table."""
    fl = floor_of(proxy)
    a, f = agg.get((proxy, conns)), agg.get((fl, conns)) if fl else None
    if not a or not f or not f["cpu"]:
        return "-"
    return f"{a['cpu'] / f['cpu']:.2f}x"


def has_floor(order):
    return any(p.startswith("floor-") for p in order)


def tables(agg, perf, order, levels, table):
    """The section "Against the floor": every proxy at each count, CPU and syscalls per request
    against its floor's. table is report.table."""
    if not has_floor(order):
        return []
    rows = []
    for c in levels:
        for p in order:
            a = agg.get((p, c))
            if a is None:
                continue
            fl = floor_of(p)
            f = agg.get((fl, c)) if fl else None
            s, fs = perf.get((p, c)), perf.get((fl, c)) if fl else None
            rows.append([c, p, fl or "", f"{a['cpu']:.1f}",
                         f"{a['cpu'] / f['cpu']:.2f}x" if f and f["cpu"] else "-",
                         f"{s:.2f}" if s else "-",
                         f"{s / fs:.2f}x" if s and fs else "-",
                         f"{a['rps'] / f['rps']:.2f}x" if f and f["rps"] else "-"])
    out = ["\n### Against the floor: a relay that does not parse (bench/floor_relay.c)\n",
           "Each client gets its own upstream connection at accept; bytes are copied both "
           "ways. floor-epoll: edge-triggered, one recv and one send per side per request; "
           "floor-uring: recv and linked send+recv completions, one io_uring_enter per turn. "
           "syscalls/req: perf stat over a separate short run at that count (connection set-up "
           "included).\n",
           table(["conns", "proxy", "its floor", "CPU us/req", "CPU vs floor", "syscalls/req",
                  "syscalls vs floor", "req/s vs floor"], rows,
                 ["r", "l", "l", "r", "r", "r", "r", "r"])]
    return out


def targets(agg, levels):
    """The issue-14 rows of the targets table: [target, value, PASS/FAIL/-]."""
    rows = []
    if TARGET_CONNS not in levels:
        return rows
    for p in ("ballast", "ballast-uring"):
        a, f = agg.get((p, TARGET_CONNS)), agg.get((floor_of(p), TARGET_CONNS))
        r = a["cpu"] / f["cpu"] if a and f and f["cpu"] else None
        rows.append([f"{p}: CPU/req within {100 * (TARGET_RATIO - 1):.0f}% of {floor_of(p)}'s "
                     f"at {TARGET_CONNS} conns", f"{r:.2f}x" if r else "-",
                     "-" if r is None else ("PASS" if r <= TARGET_RATIO else "FAIL")])
    return rows
