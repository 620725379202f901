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

PROXIES = ["ballast", "ballast-base", "nginx", "haproxy"]
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
    meta, wrk, strace, idle, skip, fail = {}, [], {}, {}, {}, []
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
    return meta, wrk, strace, idle, skip, fail


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


def build(meta, wrk, strace, idle, skip, fail):
    tick_us = 1e6 / int(meta.get("clk_tck", "100"))
    selected = meta.get("selected", "").split()
    order = [p for p in PROXIES if p in selected]
    levels = [int(c) for c in meta.get("conns", "").split()]
    rounds = meta.get("rounds", "?")

    # Per proxy and connection count: medians over the interleaved rounds.
    agg = {}
    for p in order:
        for c in levels:
            runs = [w for w in wrk if w["proxy"] == p and w["conns"] == c and w["reqs"] > 0]
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

    def missing(p):   # short, for a table cell; the notes under the tables say why
        if p in skip:
            return "skipped, see notes"
        if any(q == p for q, _, _ in fail):
            return "dropped, see notes"
        return "no data"

    has_base = BASE in order

    def vs_base(p, value, base_value):   # the "vs base" cell of ballast's and the base's rows
        if p not in ("ballast", BASE):
            return ""
        r = ratio(value, base_value)
        return fmt(r, ".2f") + "x" if r else "-"

    out = []
    # --- throughput, latency, CPU
    rows = []
    for c in levels:
        ref = agg.get(("nginx", c))
        base = agg.get((BASE, c))
        for p in order:
            a = agg.get((p, c))
            if a is None:
                rows.append([c, p, "-", "-", "-", "-"] + (["-"] if has_base else []) +
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
                        ([vs_base(p, a["cpu"], base and base["cpu"])] if has_base else []) +
                        [fmt(a["backend"], ".1f"), a["errors"], note])
    out.append("### Throughput, latency, CPU per request\n")
    out.append(table(["conns", "proxy", "req/s", "p99 ms", "CPU us/req", "CPU vs nginx"] +
                     (["CPU vs base"] if has_base else []) +
                     ["backend us/req", "errors", "notes"], rows,
                     ["r", "l", "r", "r", "r", "r"] + (["r"] if has_base else []) +
                     ["r", "r", "l"]))

    # --- syscalls and memory
    rows = []
    sref = strace.get("nginx")
    sref_v = sref["total"] / sref["reqs"] if sref and sref["reqs"] else None
    sbase = strace.get(BASE)
    sbase_v = sbase["total"] / sbase["reqs"] if sbase and sbase["reqs"] else None
    # nginx's idle cost per connection = its RSS delta + the slot it preallocated at start.
    slot = int(meta["nginx_slot_bytes"]) if meta.get("nginx_slot_bytes", "").lstrip("-").isdigit() else None
    iref = idle.get("nginx", {}).get("per_conn_bytes")
    if iref is not None and slot is not None and slot > 0:
        iref += slot
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

    # --- targets
    rows = []
    if "ballast" in order:
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
        per = idle.get("ballast", {}).get("per_conn_bytes")
        rows.append(["idle conn memory < nginx's", (fmt(per, ",d") + " B vs " + fmt(iref, ",d") + " B")
                     if per is not None else "-",
                     "-" if per is None or iref is None else ("PASS" if per < iref else "FAIL")])
        if not b_measured:
            rows = [[t, "-", "not yet measured"] for t, _, _ in rows]
        else:
            rows = [[t, v, "not measured" if st == "-" else st] for t, v, st in rows]
    else:
        rows.append(["(ballast not selected)", "-", "-"])
    out.append("\n### Targets for ballast (from the issue)\n")
    out.append(table(["target", "ballast", "status"], rows, ["l", "r", "l"]))

    notes = []
    for p in order:
        if p in skip:
            notes.append(f"- {p} skipped: {skip[p]}")
    for p, ph, r in fail:
        notes.append(f"- {p} dropped at {ph}: {r}")
    if notes:
        out.append("\n" + "\n".join(notes))
    return "\n".join(out) + "\n"


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
        f"- Runs: `wrk -t1 -c<conns> -d{m.get('duration', '?')}s --latency`, conns "
        f"{', '.join(m.get('conns', '').split())}, {m.get('rounds', '?')} interleaved rounds in rotating "
        f"order (medians); syscalls: `strace -c -f` over {m.get('strace_duration', '?')}s at "
        f"{m.get('strace_conns', '?')} conns; memory: {m.get('idle_conns', '?')} idle keep-alive "
        f"connections; one worker per proxy, upstream keep-alive to one nginx backend",
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
    meta, wrk, strace, idle, skip, fail = load(args.records)
    tables = build(meta, wrk, strace, idle, skip, fail)
    section = header_block(meta) + "\n" + tables
    print()
    print(section)
    if args.results:
        key = f"{meta.get('date', '?')[:10]} {meta.get('commit', '?')} {meta.get('command', '')}"
        update_results(args.results, section, key)
        print(f"bench: results written to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
