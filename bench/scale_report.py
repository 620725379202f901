#!/usr/bin/python3
"""Tables for bench/scale.sh (make bench-scale): medians over the rounds per proxy and worker
count; with a results path, a dated section at the top of bench/RESULTS.md (newest first).

usage: scale_report.py RECORDS.tsv RESULTS|"" DATE COMMIT NCPU CLK_TCK NOTE RUNS VERSIONS
"""
import statistics
import sys


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def max_min(before, after):
    """(max/mean, min/mean) of the per-worker differences of two space-separated counts."""
    d = [y - x for x, y in zip((int(v) for v in before.split()), (int(v) for v in after.split()))]
    if not d or sum(d) <= 0:
        return None
    mean = sum(d) / len(d)
    return (max(d) / mean, min(d) / mean)


def main():
    records, results, date, commit, ncpu, clk_tck, note, runs, versions = sys.argv[1:10]
    tick_us = 1e6 / int(clk_tck)
    runs_by = {}
    fails = []
    for line in open(records):
        f = line.rstrip("\n").split("\t")
        if f[0] == "fail":
            fails.append("%s with %s workers (round %s) did not start" % (f[1], f[2], f[3]))
            continue
        if f[0] != "run":
            continue
        name, w = f[1], int(f[2])
        reqs, rps, ticks = int(f[4] or 0), float(f[5] or 0), int(f[6])
        p50, p99, p999, err = (int(x) for x in f[7:11])
        spread = conns = None
        if len(f) > 12 and f[11] and f[12]:
            spread = max_min(f[11], f[12])
        if len(f) > 14 and f[13] and f[14]:
            conns = max_min(f[13], f[14])
        runs_by.setdefault((name, w), []).append({
            "rps": rps, "cpu": ticks * tick_us / reqs if reqs else None,
            "p50": p50 / 1000 if p50 >= 0 else None, "p99": p99 / 1000 if p99 >= 0 else None,
            "p999": p999 / 1000 if p999 >= 0 else None, "err": err, "spread": spread,
            "conns": conns})
    workers = sorted({w for _, w in runs_by})
    names = [n for n in ("ballast", "nginx", "nginx-reuseport", "haproxy")
             if any(k[0] == n for k in runs_by)]
    lines = ["| workers | proxy | req/s | CPU us/req | CPU vs nginx | p50 ms | p99 ms | p99.9 ms "
             "| p99 vs nginx | errors | ballast per-worker requests max/min vs mean "
             "| connections max/min vs mean |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for w in workers:
        ng = runs_by.get(("nginx", w), [])
        ng_cpu, ng_p99 = med([r["cpu"] for r in ng]), med([r["p99"] for r in ng])
        for n in names:
            rs = runs_by.get((n, w))
            if not rs:
                continue
            cpu, p99 = med([r["cpu"] for r in rs]), med([r["p99"] for r in rs])
            sp = [r["spread"] for r in rs if r["spread"]]
            spread = ", ".join("%.2f/%.2f" % s for s in sp) if sp else ""
            cs = [r["conns"] for r in rs if r["conns"]]
            conns = ", ".join("%.2f/%.2f" % s for s in cs) if cs else ""
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
                w, n, fmt(med([r["rps"] for r in rs]), ",.0f"), fmt(cpu, ".1f"),
                fmt(cpu / ng_cpu if cpu and ng_cpu else None, ".2f") + ("x" if cpu and ng_cpu else ""),
                fmt(med([r["p50"] for r in rs]), ".2f"), fmt(p99, ".2f"),
                fmt(med([r["p999"] for r in rs]), ".2f"),
                fmt(p99 / ng_p99 if p99 and ng_p99 else None, ".2f") + ("x" if p99 and ng_p99 else ""),
                sum(r["err"] for r in rs), spread, conns))
    table = "\n".join(lines)
    print(note)
    print(table)
    for f in fails:
        print("note: " + f)
    if not results:
        return
    section = ("## %s — bench-scale: ballast %s, nginx and HAProxy at %s workers\n\n"
               "- Command: `make bench-scale`\n- Machine: %s cores; %s\n- Layout: %s\n"
               "- Runs: %s; CPU per request is the proxy's utime+stime (all processes and "
               "threads) over the requests wrk completed; percentiles from wrk's latency "
               "histogram (`done` callback); per-worker spread from GET /api/workers before and "
               "after each run (one pair per round)\n%s\n%s\n\n") % (
        date, commit, "/".join(str(w) for w in workers), ncpu, versions, note, runs,
        "".join("- " + f + "\n" for f in fails), table)
    try:
        text = open(results).read()
    except FileNotFoundError:
        text = "# ballast benchmark results\n\n"
    at = text.find("\n## ")
    text = text + "\n" + section if at < 0 else text[:at + 1] + section + text[at + 1:]
    with open(results, "w") as f:
        f.write(text)
    print("bench-scale: section added to " + results)


if __name__ == "__main__":
    main()
