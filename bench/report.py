#!/usr/bin/python3
"""Turns the records bench/run.sh collected into tables (stdout) and a dated section of
bench/RESULTS.md (newest first; a rerun with the same date, commit and settings replaces its
section, every other section is kept). Stdlib only.

With a baseline binary (BALLAST_BASELINE_BIN, proxy "ballast-base") the tables also show
ballast against the baseline measured in the same run.

usage: report.py RECORDS.tsv [--results bench/RESULTS.md]
"""
import argparse
import json
import os
import re
import statistics
import sys

import floor_report

# ballast-uring, floor-epoll and floor-uring: the http rows only (bench/floor.sh).
PROXIES = ["ballast", "ballast-uring", "ballast-base", "nginx", "haproxy", "floor-epoll",
           "floor-uring"]
BASE = "ballast-base"   # BALLAST_BASELINE_BIN: the same ballast config on another binary

# From the project's issue: the bar ballast has to clear, measured in the same run as nginx.
TARGET_SYSCALLS_PER_REQ = 4.5
GOAL_CPU_RATIO = 0.7
# A change that is not meant to cost anything: CPU per request within 3% of the baseline's.
BASE_CPU_TOLERANCE = 1.03

RESULTS_HEADER = """# ballast benchmark results

Written by `make bench` (bench/run.sh); see bench/README.md for what each column means.
Newest first. Only ratios within one section mean anything: the machines are shared and noisy.
"""


def load(path):
    meta, wrk, strace, idle, skip, fail, ops = {}, [], {}, {}, {}, [], []
    with open(path) as f:
        for line in f:
            r = line.rstrip("\n").split("\t")
            kind = r[0]
            if kind == "meta":
                meta[r[1]] = r[2] if len(r) > 2 else ""
            elif kind == "wrk":
                name, conns, rnd, reqs, rps, p99, err, pt, bt = r[1:10]
                wrk.append(dict(proxy=name, conns=int(conns), round=int(rnd), reqs=int(reqs),
                                rps=float(rps), p99=float(p99), errors=int(err),
                                proxy_ticks=int(pt), backend_ticks=int(bt)))
            elif kind == "strace":
                name, conns, reqs, total, top, err = (r[1:7] + [""] * 6)[:6]
                strace[name] = dict(conns=int(conns), reqs=int(reqs or 0), total=int(total or 0),
                                    top=[(t.split("=")[0], int(t.split("=")[1]))
                                         for t in top.split(",") if "=" in t],
                                    errors=int(err or 0))
            elif kind == "idle":
                try:
                    idle[r[1]] = json.loads(r[2])
                except ValueError:
                    idle[r[1]] = {"error": r[2]}
            elif kind == "skip":
                skip[r[1]] = r[2]
            elif kind == "fail":
                fail.append((r[1], r[2], r[3] if len(r) > 3 else ""))
            elif kind == "ops":
                row, name, rnd, n, wall, pt, err = r[1:8]
                ops.append(dict(row=row, proxy=name, round=int(rnd), ops=int(n), wall=float(wall),
                                proxy_ticks=int(pt), errors=int(err),
                                extra=r[8] if len(r) > 8 else ""))
    return meta, wrk, strace, idle, skip, fail, ops


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def table(headers, rows, align):
    """A markdown table padded so it also reads well as plain text."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        out = []
        for i, c in enumerate(r):
            out.append(c.rjust(widths[i]) if align[i] == "r" else c.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells[1:]])


def wrk_medians(wrk, order, levels, tick_us, prefix=""):
    """Per proxy and connection count: medians over the interleaved rounds. prefix picks a row
    group's processes ("tls/"); the keys are the bare proxy names."""
    agg = {}
    for p in order:
        for c in levels:
            runs = [w for w in wrk if w["proxy"] == prefix + p and w["conns"] == c and w["reqs"] > 0]
            if not runs:
                continue
            agg[(p, c)] = dict(
                rps=statistics.median(w["rps"] for w in runs),
                p99=statistics.median(w["p99"] for w in runs),
                cpu=statistics.median(w["proxy_ticks"] * tick_us / w["reqs"] for w in runs),
                backend=statistics.median(w["backend_ticks"] * tick_us / w["reqs"] for w in runs),
                errors=sum(w["errors"] for w in runs),
                reqs=sum(w["reqs"] for w in runs),
                n=len(runs),
            )
    return agg


def missing_cell(skip, fail, prefix=""):
    def missing(p):   # short, for a table cell; the notes under the tables say why
        if prefix + p in skip:
            return "skipped, see notes"
        if any(q == prefix + p for q, _, _ in fail):
            return "dropped, see notes"
        return "no data"
    return missing


def vs_base(p, value, base_value):   # the "vs base" cell of ballast's and the base's rows
    if p not in ("ballast", BASE):
        return ""
    r = ratio(value, base_value)
    return fmt(r, ".2f") + "x" if r else "-"


def throughput_table(agg, order, levels, rounds, missing):
    """conns | proxy | req/s | p99 | CPU us/req | vs nginx | [vs floor] | [vs base] | backend |
    errors | notes"""
    has_base = BASE in order
    has_floor = floor_report.has_floor(order)
    rows = []
    for c in levels:
        ref = agg.get(("nginx", c))
        base = agg.get((BASE, c))
        for p in order:
            a = agg.get((p, c))
            if a is None:
                rows.append([c, p, "-", "-", "-", "-"] + (["-"] if has_floor else []) +
                            (["-"] if has_base else []) +
                            ["-", "-", ("not yet measured" if p == "ballast" else "")
                             + " (" + missing(p) + ")"])
                continue
            note = ""
            best_backend = min(v["backend"] for (q, cc), v in agg.items() if cc == c)
            if best_backend > 0 and a["backend"] > 1.3 * best_backend:
                note = (f"backend +{100 * (a['backend'] / best_backend - 1):.0f}% vs the best: "
                        "upstream connection churn?")
            if a["errors"]:
                note = (note + "; " if note else "") + f"{a['errors']} errors in {a['reqs']} requests"
            if a["n"] < int(rounds if str(rounds).isdigit() else a["n"]):
                note = (note + "; " if note else "") + f"{a['n']} of {rounds} rounds"
            rows.append([c, p, fmt(a["rps"], ",.0f"), fmt(a["p99"], ".2f"), fmt(a["cpu"], ".1f"),
                         fmt(ratio(a["cpu"], ref and ref["cpu"]), ".2f") + "x" if ref else "-"] +
                        ([floor_report.cpu_vs_floor(agg, p, c)] if has_floor else []) +
                        ([vs_base(p, a["cpu"], base and base["cpu"])] if has_base else []) +
                        [fmt(a["backend"], ".1f"), a["errors"], note])
    return table(["conns", "proxy", "req/s", "p99 ms", "CPU us/req", "CPU vs nginx"] +
                 (["CPU vs floor"] if has_floor else []) + (["CPU vs base"] if has_base else []) +
                 ["backend us/req", "errors", "notes"], rows,
                 ["r", "l", "r", "r", "r", "r"] + (["r"] if has_floor else []) +
                 (["r"] if has_base else []) +
                 ["r", "r", "l"])


def build(meta, wrk, strace, idle, skip, fail, ops, perf=None):
    tick_us = 1e6 / int(meta.get("clk_tck", "100"))
    selected = meta.get("selected", "").split()
    order = [p for p in PROXIES if p in selected]
    levels = [int(c) for c in meta.get("conns", "").split()]
    rounds = meta.get("rounds", "?")
    row_sel = meta.get("rows", "http").split()   # records from before BENCH_ROWS: http only
    agg = wrk_medians(wrk, order, levels, tick_us)
    missing = missing_cell(skip, fail)

    out = []
    if "http" in row_sel:
        out += http_tables(meta, agg, strace, idle, order, levels, rounds, missing)
        out += floor_report.tables(agg, perf or {}, order, levels, table)
    edge_order = [p for p in order if p not in floor_report.HTTP_ONLY]
    edge_tables, edge_targets = row_tables(meta, wrk, ops, skip, fail, edge_order, tick_us,
                                           rounds, row_sel)
    out += edge_tables
    out += targets_table(meta, agg, strace, idle, order, levels, row_sel, edge_targets)

    notes = []
    for p in sorted(skip, key=lambda k: (k.count("/"), k)):
        if p.split("/")[-1] in order:
            notes.append(f"- {p} skipped: {skip[p]}")
    for p, ph, r in fail:
        notes.append(f"- {p} dropped at {ph}: {r}")
    if notes:
        out.append("\n" + "\n".join(notes))
    return "\n".join(out) + "\n"


# The edge and L4 rows (bench/rows.sh): per row, how to turn an "ops" record into a rate and a
# CPU cost, and the column names. CPU is utime + stime of the proxy's processes over the run.
OPS_ROWS = {
    "hs": dict(title="New TLS 1.3 handshakes (ECDSA P-256), one per connection, never resumed",
               rate="handshakes/s", rate_scale=1, cpu="CPU us/handshake", cpu_scale=1e6,
               per_core="handshakes per CPU second"),
    "h2": dict(title="HTTP/2 over TLS (h2load), each stream proxied as HTTP/1.1",
               rate="req/s", rate_scale=1, cpu="CPU us/req", cpu_scale=1e6),
    "bulk": dict(title="L4 (TCP): one transfer backend -> proxy -> client",
                 rate="MB/s", rate_scale=1e-6, cpu="CPU s/GiB", cpu_scale=1 << 30),
    "short": dict(title="L4 (TCP): short connections, one at a time (connect, 100 bytes each way, "
                        "close)", rate="conn/s", rate_scale=1, cpu="CPU us/conn", cpu_scale=1e6),
    "cache": dict(title="Cache hits: one object from each proxy's cache (ballast and nginx "
                        "proxy_cache, HAProxy cache); errors include requests that reached the "
                        "origin", rate="hits/s", rate_scale=1, cpu="CPU us/hit", cpu_scale=1e6,
                  per_core="hits per CPU second"),
    "cache_miss": dict(title="Cache misses: a new URL per request, fetched from the origin and "
                             "stored (no target); errors include requests that did not reach it",
                       rate="misses/s", rate_scale=1, cpu="CPU us/miss", cpu_scale=1e6),
}


def ops_medians(ops, row, order, tick_us, prefix):
    agg = {}
    for p in order + ["direct"]:
        name = p if p == "direct" else prefix + p
        runs = [o for o in ops if o["row"] == row and o["proxy"] == name and o["ops"] > 0
                and o["wall"] > 0]
        if runs:
            agg[p] = dict(rate=statistics.median(o["ops"] / o["wall"] for o in runs),
                          cpu=statistics.median(o["proxy_ticks"] * tick_us / 1e6 / o["ops"]
                                                for o in runs),
                          errors=sum(o["errors"] for o in runs), ops=sum(o["ops"] for o in runs),
                          n=len(runs))
    return agg


def ops_table(row, agg, order, rounds, missing):
    """proxy | rate | [x direct] | rate vs nginx | CPU per op | CPU vs nginx | [vs base] | ..."""
    spec = OPS_ROWS[row]
    has_base = BASE in order
    direct = agg.get("direct")
    ref, base = agg.get("nginx"), agg.get(BASE)
    rows = []
    for p in order:
        a = agg.get(p)
        if a is None:
            rows.append([p, "-"] + (["-"] if direct else []) + ["-", "-", "-"] +
                        (["-"] if "per_core" in spec else []) + (["-"] if has_base else []) +
                        ["-", ("not yet measured" if p == "ballast" else "") + " (" + missing(p) + ")"])
            continue
        note = []
        if a["errors"]:
            note.append(f"{a['errors']} errors")
        if str(rounds).isdigit() and a["n"] < int(rounds):
            note.append(f"{a['n']} of {rounds} rounds")
        cpu = a["cpu"] * spec["cpu_scale"]
        rows.append([p, fmt(a["rate"] * spec["rate_scale"], ",.0f")] +
                    ([fmt(ratio(a["rate"], direct["rate"]), ".2f") + "x"] if direct else []) +
                    [fmt(ratio(a["rate"], ref and ref["rate"]), ".2f") + "x" if ref else "-",
                     fmt(cpu, ".2f" if cpu < 10 else ".1f")] +
                    ([fmt(1 / a["cpu"] if a["cpu"] else None, ",.0f")] if "per_core" in spec else []) +
                    [fmt(ratio(a["cpu"], ref and ref["cpu"]), ".2f") + "x" if ref else "-"] +
                    ([vs_base(p, a["cpu"], base and base["cpu"])] if has_base else []) +
                    [a["errors"], "; ".join(note)])
    headers = (["proxy", spec["rate"]] + (["vs direct"] if direct else []) +
               [spec["rate"] + " vs nginx", spec["cpu"]] +
               ([spec["per_core"]] if "per_core" in spec else []) + ["CPU vs nginx"] +
               (["CPU vs base"] if has_base else []) + ["errors", "notes"])
    out = "\n### " + spec["title"] + "\n\n"
    if direct:
        out += (f"Direct loopback without a proxy, same client and backend: "
                f"{direct['rate'] * spec['rate_scale']:,.0f} {spec['rate']}.\n\n")
    return out + table(headers, rows, ["l"] + ["r"] * (len(headers) - 2) + ["l"])


def row_tables(meta, wrk, ops, skip, fail, order, tick_us, rounds, row_sel):
    """The tls, h2 and stream tables, and their lines of the targets table."""
    out, targets = [], []
    has_base = BASE in order

    def cpu_target(what, b, n, base):
        r = ratio(b and b["cpu"], n and n["cpu"])
        targets.append([f"{what}: CPU <= nginx's", fmt(r, ".2f") + "x" if r else "-",
                        "-" if r is None else ("PASS" if r <= 1.0 else "FAIL")])
        if has_base:
            r = ratio(b and b["cpu"], base and base["cpu"])
            targets.append([f"{what}: CPU within {100 * (BASE_CPU_TOLERANCE - 1):.0f}% of {BASE}'s",
                            fmt(r, ".2f") + "x" if r else "-",
                            "-" if r is None else ("PASS" if r <= BASE_CPU_TOLERANCE else "FAIL")])

    if "tls" in row_sel:
        conns = int(meta.get("tls_conns", "50"))
        agg = wrk_medians(wrk, order, [conns], tick_us, "tls/")
        out += ["\n### Keep-alive TLS (HTTP/1.1 over TLS 1.3, ECDSA P-256)\n",
                throughput_table(agg, order, [conns], rounds, missing_cell(skip, fail, "tls/"))]
        cpu_target(f"TLS keep-alive at {conns} conns", agg.get(("ballast", conns)),
                   agg.get(("nginx", conns)), agg.get((BASE, conns)))
    for row, prefix, sel in (("hs", "tls/", "tls"), ("h2", "tls/", "h2"),
                             ("bulk", "l4/", "stream"), ("short", "l4/", "stream"),
                             ("cache", "cache/", "cache"), ("cache_miss", "cache/", "cache")):
        if sel not in row_sel:
            continue
        agg = ops_medians(ops, row, order, tick_us, prefix)
        if row == "cache_miss" and not agg:   # BENCH_CACHE_MISS=0
            continue
        out.append(ops_table(row, agg, order, rounds, missing_cell(skip, fail, prefix)))
        b, n, h = agg.get("ballast"), agg.get("nginx"), agg.get("haproxy")
        if row in ("hs", "h2"):
            cpu_target("new TLS 1.3 handshakes" if row == "hs" else "HTTP/2 (h2load) per request",
                       b, n, agg.get(BASE))
        elif row == "cache":
            cpu_target("cache hit", b, n, agg.get(BASE))
        elif row == "bulk":
            for ref_name, ref in (("nginx", n), ("HAProxy", h)):
                r = ratio(b and b["rate"], ref and ref["rate"])
                targets.append([f"L4 one-transfer throughput >= {ref_name}'s",
                                fmt(r, ".2f") + "x" if r else "-",
                                "-" if r is None else ("PASS" if r >= 1.0 else "FAIL")])
    if "gzip" in row_sel:
        out += gzip_tables(meta, ops, order, tick_us, rounds, skip, fail)
    return out, targets


def gzip_tables(meta, ops, order, tick_us, rounds, skip, fail):
    """One table per gzip level (bench/gzip.sh): compressed MB/s of wall time, compressed and
    uncompressed MB per CPU second, CPU per response against nginx's at the same level."""
    in_bytes = int(meta.get("gzip_in_bytes", "0") or 0)
    has_base = BASE in order
    out = []
    for level in meta.get("gzip_levels", "").split():
        prefix = f"gzip{level}/"
        missing = missing_cell(skip, fail, prefix)
        agg = {}
        for p in order:
            runs = [o for o in ops if o["row"] == "gzip" + level and o["proxy"] == prefix + p
                    and o["ops"] > 0 and o["wall"] > 0 and o["extra"].isdigit()]
            if runs:
                gz = statistics.median(int(o["extra"]) for o in runs)
                cpu = statistics.median(o["proxy_ticks"] * tick_us / 1e6 / o["ops"] for o in runs)
                agg[p] = dict(gz=gz, cpu=cpu,
                              wall=statistics.median(o["ops"] / o["wall"] for o in runs) * gz / 1e6,
                              errors=sum(o["errors"] for o in runs), n=len(runs))
        ref, base = agg.get("nginx"), agg.get(BASE)
        rows = []
        for p in order:
            a = agg.get(p)
            if a is None:
                rows.append([p] + ["-"] * (6 + has_base) + [missing(p)])
                continue
            note = ([f"{a['n']} of {rounds} rounds"]
                    if str(rounds).isdigit() and a["n"] < int(rounds) else [])
            if p == "haproxy":
                note.append("libslz: one level")
            rows.append([p, fmt(a["wall"], ",.1f"),
                         fmt(a["gz"] / 1e6 / a["cpu"] if a["cpu"] else None, ",.1f"),
                         fmt(in_bytes / 1e6 / a["cpu"] if a["cpu"] and in_bytes else None, ",.1f"),
                         fmt(ratio(a["cpu"], ref and ref["cpu"]), ".2f") + "x" if ref else "-"] +
                        ([vs_base(p, a["cpu"], base and base["cpu"])] if has_base else []) +
                        [f"{a['gz']:,.0f} ({100 * a['gz'] / in_bytes:.1f}%)" if in_bytes
                         else f"{a['gz']:,.0f}", a["errors"], "; ".join(note)])
        headers = (["proxy", "out MB/s", "out MB per CPU s", "in MB per CPU s", "CPU vs nginx"] +
                   (["CPU vs base"] if has_base else []) +
                   ["bytes per response", "errors", "notes"])
        out.append(f"\n### gzip level {level}: a {in_bytes / 1e6:.2f} MB text file compressed by "
                   "each proxy (MB = 10^6 bytes; out = compressed; CPU per response)\n\n" +
                   table(headers, rows, ["l"] + ["r"] * (len(headers) - 2) + ["l"]))
    return out


def http_tables(meta, agg, strace, idle, order, levels, rounds, missing):
    has_base = BASE in order
    out = ["### Throughput, latency, CPU per request\n",
           throughput_table(agg, order, levels, rounds, missing)]

    # --- syscalls and memory
    rows = []
    sref = strace.get("nginx")
    sref_v = sref["total"] / sref["reqs"] if sref and sref["reqs"] else None
    sbase = strace.get(BASE)
    sbase_v = sbase["total"] / sbase["reqs"] if sbase and sbase["reqs"] else None
    iref = nginx_idle_bytes(meta, idle)
    for p in order:
        s, i = strace.get(p), idle.get(p, {})
        spr = s["total"] / s["reqs"] if s and s["reqs"] else None
        top = ", ".join(f"{n} {v / s['reqs']:.2f}" for n, v in s["top"][:5]) if s and s["reqs"] else ""
        per = i.get("per_conn_bytes")
        if i.get("error"):
            rss = "error: " + str(i["error"])[:80]
        elif i:
            rss = f"{i['rss_before_kb'] / 1024:.1f} -> {i['rss_after_kb'] / 1024:.1f} MiB"
            if i.get("failed") or i.get("closed_by_peer"):
                rss += f" ({i.get('failed', 0)} failed, {i.get('closed_by_peer', 0)} closed)"
        else:
            rss = "-"
        if s is None and not i:
            rows.append([p, "-", "-"] + (["-"] if has_base else []) +
                        [("not yet measured" if p == "ballast" else "") + " (" + missing(p) + ")",
                         "-", "-", "-"])
            continue
        per_cell = fmt(per, ",d")
        if p == "nginx" and per is not None and iref is not None and iref != per:
            per_cell = f"{per:,d} + {iref - per:,d} preallocated = {iref:,d}"
            per = iref
        rows.append([p, fmt(spr, ".2f"), fmt(ratio(spr, sref_v), ".2f") + "x" if sref_v and spr else "-"] +
                    ([vs_base(p, spr, sbase_v)] if has_base else []) +
                    [top, per_cell, fmt(ratio(per, iref), ".2f") + "x" if iref and per is not None else "-",
                     rss])
    out.append("\n### Syscalls per request, memory per idle keep-alive connection\n")
    out.append(table(["proxy", "syscalls/req", "vs nginx"] + (["vs base"] if has_base else []) +
                     ["top syscalls per req", "idle conn bytes", "vs nginx", "RSS before -> after"],
                     rows, ["l", "r", "r"] + (["r"] if has_base else []) + ["l", "r", "r", "l"]))
    return out


def nginx_idle_bytes(meta, idle):
    """nginx's idle cost per connection: its RSS delta + the slot it preallocated at start."""
    slot = int(meta["nginx_slot_bytes"]) if meta.get("nginx_slot_bytes", "").lstrip("-").isdigit() else None
    iref = idle.get("nginx", {}).get("per_conn_bytes")
    if iref is not None and slot is not None and slot > 0:
        iref += slot
    return iref


def targets_table(meta, agg, strace, idle, order, levels, row_sel, edge_targets):
    has_base = BASE in order
    iref = nginx_idle_bytes(meta, idle)
    rows = []
    if "ballast" in order and "http" in row_sel:
        b_measured = (any(p == "ballast" for p, _ in agg) or "ballast" in strace
                      or idle.get("ballast", {}).get("per_conn_bytes") is not None)
        for c in levels:
            b, n = agg.get(("ballast", c)), agg.get(("nginx", c))
            r = ratio(b and b["cpu"], n and n["cpu"])
            rows.append([f"CPU/req <= nginx's at {c} conns", fmt(r, ".2f") + "x" if r else "-",
                         "-" if r is None else ("PASS" if r <= 1.0 else "FAIL")])
        for c in levels:
            b, n = agg.get(("ballast", c)), agg.get(("nginx", c))
            r = ratio(b and b["cpu"], n and n["cpu"])
            rows.append([f"goal: CPU/req <= {GOAL_CPU_RATIO}x nginx's at {c} conns",
                         fmt(r, ".2f") + "x" if r else "-",
                         "-" if r is None else ("PASS" if r <= GOAL_CPU_RATIO else "not yet")])
        s = strace.get("ballast")
        spr = s["total"] / s["reqs"] if s and s["reqs"] else None
        rows.append([f"syscalls/req <= {TARGET_SYSCALLS_PER_REQ}", fmt(spr, ".2f"),
                     "-" if spr is None else ("PASS" if spr <= TARGET_SYSCALLS_PER_REQ else "FAIL")])
        if has_base:
            for c in levels:
                b, n = agg.get(("ballast", c)), agg.get((BASE, c))
                r = ratio(b and b["cpu"], n and n["cpu"])
                rows.append([f"CPU/req within {100 * (BASE_CPU_TOLERANCE - 1):.0f}% of {BASE}'s "
                             f"at {c} conns", fmt(r, ".2f") + "x" if r else "-",
                             "-" if r is None else ("PASS" if r <= BASE_CPU_TOLERANCE else "FAIL")])
        rows += floor_report.targets(agg, levels)
        per = idle.get("ballast", {}).get("per_conn_bytes")
        rows.append(["idle conn memory < nginx's", (fmt(per, ",d") + " B vs " + fmt(iref, ",d") + " B")
                     if per is not None else "-",
                     "-" if per is None or iref is None else ("PASS" if per < iref else "FAIL")])
        if not b_measured:
            rows = [[t, "-", "not yet measured"] for t, _, _ in rows]
        else:
            rows = [[t, v, "not measured" if st == "-" else st] for t, v, st in rows]
    if "ballast" in order:
        rows += [[t, v, "not measured" if st == "-" else st] for t, v, st in edge_targets]
    else:
        rows.append(["(ballast not selected)", "-", "-"])
    if not rows:   # rows without a stated target (gzip)
        return []
    return ["\n### Targets for ballast (from the issues)\n",
            table(["target", "ballast", "status"], rows, ["l", "r", "l"])]


def busy_warning(m):
    try:
        busy = float(m.get("loadavg_start", "0").split()[0]) > int(m.get("nproc", "0"))
    except ValueError:
        return []
    if not busy:
        return []
    return ["- **The machine was busy when the run started (load average above the CPU count): "
            "other jobs shared the cores, so small differences mean little.**"]


def header_block(meta):
    m = meta
    rows = m.get("rows", "http").split()
    lines = [
        f"## {m.get('date', '?')} — ballast {m.get('commit', '?')}",
        f"<!-- bench-key: {m.get('date', '?')[:10]} {m.get('commit', '?')} {m.get('command', '')} -->",
        "",
        f"- Command: `{m.get('command', '?')}`",
        f"- Machine: {m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), kernel {m.get('kernel', '?')}; "
        f"load average {m.get('loadavg_start', '?')} at start, {m.get('loadavg_end', '?')} at end; "
        f"steal {m.get('steal_pct', '?')}% during the run",
        f"- Versions: nginx {m.get('nginx', '?')}, HAProxy {m.get('haproxy', '?')}, "
        f"wrk {m.get('wrk', '?')}, ballast {m.get('commit', '?')}",
        *busy_warning(m),
        *([f"- Baseline (`{BASE}`): {m['baseline']}, same config as ballast"]
          if m.get("baseline") else []),
        f"- Rows: {', '.join(rows)}; {m.get('rounds', '?')} interleaved rounds in rotating order "
        f"(medians); one worker per proxy, each row group in its own processes",
        *([f"- http: `wrk -t1 -c<conns> -d{m.get('duration', '?')}s --latency`, conns "
           f"{', '.join(m.get('conns', '').split())}; syscalls: `strace -c -f` over "
           f"{m.get('strace_duration', '?')}s at {m.get('strace_conns', '?')} conns; memory: "
           f"{m.get('idle_conns', '?')} idle keep-alive connections; upstream keep-alive to one "
           f"nginx backend"] if "http" in rows else []),
        *([f"- tls, h2: one `ssl http2` listener per proxy (ECDSA P-256, TLSv1.2 TLSv1.3) in front "
           f"of the same nginx backend: {m['tls']}"] if m.get("tls") else []),
        *([f"- stream: ballast `stream`, nginx `stream`, HAProxy `mode tcp` in front of "
           f"bench/stream.py's backend: {m['stream']}"] if m.get("stream") else []),
        *([f"- cache: ballast and nginx `proxy_cache` (on disk, `levels=1:2`), HAProxy `cache` "
           f"(in memory), in front of an origin nginx: {m['cache']}"] if m.get("cache") else []),
        *([f"- gzip: `gzip on; gzip_comp_level {'|'.join(m.get('gzip_levels', '').split())}` "
           f"(HAProxy: `compression algo gzip`, libslz), each level in its own processes, in "
           f"front of an origin nginx: {m['gzip']}"] if m.get("gzip") else []),
        "",
    ]
    return "\n".join(lines)


def update_results(path, section, key):
    text = open(path).read() if os.path.exists(path) else ""
    parts = re.split(r"(?m)^(?=## )", text)
    head = parts[0] if parts and parts[0].strip() and not parts[0].startswith("## ") else RESULTS_HEADER
    sections = [s for s in parts if s.startswith("## ")]
    sections = [s for s in sections if f"<!-- bench-key: {key} -->" not in s]
    body = head.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    for s in sections:
        body += "\n" + s.rstrip("\n") + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("records")
    ap.add_argument("--results")
    args = ap.parse_args()
    meta, wrk, strace, idle, skip, fail, ops = load(args.records)
    tables = build(meta, wrk, strace, idle, skip, fail, ops, floor_report.load_perf(args.records))
    section = header_block(meta) + "\n" + tables
    print()
    print(section)
    if args.results:
        key = f"{meta.get('date', '?')[:10]} {meta.get('commit', '?')} {meta.get('command', '')}"
        update_results(args.results, section, key)
        print(f"bench: results written to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
