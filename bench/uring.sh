#!/usr/bin/env bash
# ballast on its two loop backends side by side, in one run: `use epoll;` against
# `use io_uring;`, the same binary, one worker each, the same nginx backend (12-byte-ish body,
# upstream keep-alive). Interleaved rounds at each connection count; per backend and count:
# requests/s, CPU per request (the process's utime+stime over the run), p99, and syscalls per
# request (perf stat's count over the same runs; strace -c over a short run names them). Only ratios within one run mean anything on
# a shared machine. `make bench-uring`.
#
# Environment:
#   URING_CONNS=50,200,2000   connection counts
#   URING_DURATION=8          seconds per measured wrk run
#   URING_ROUNDS=2            interleaved rounds per count (the median is reported)
#   URING_STRACE=3            seconds of the strace run per backend and count, which names the
#                             syscalls (0: none); the counts per request come from perf stat
#                             over the measured runs where perf can count them
#   BALLAST_BIN=./ballast
#   BALLAST_BASELINE_BIN=PATH another build (e.g. main before a change) run on io_uring in the
#                             same rounds, as the row "io_uring-base"
#   URING_VARIANTS=name=PATH,...  more builds on io_uring, one row each ("io_uring-NAME")
#   BENCH_RESULTS=bench/RESULTS.md   the section is appended there; BENCH_NO_RESULTS=1: not
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${URING_CONNS:-50,200,2000}
DUR=${URING_DURATION:-8}
ROUNDS=${URING_ROUNDS:-2}
STRACE_S=${URING_STRACE:-3}
BALLAST_BIN=${BALLAST_BIN:-./ballast}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
CLK_TCK=$(getconf CLK_TCK)

log() { printf 'bench-uring: %s\n' "$*" >&2; }
for tool in nginx wrk strace curl; do
    command -v "$tool" >/dev/null || { log "$tool not found; run: scripts/install-deps.sh test"; exit 1; }
done
[ -x "$BALLAST_BIN" ] || { log "$BALLAST_BIN not built (make ballast)"; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d /tmp/ballast-bench-uring.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BPORT=$(free_port)
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
mkdir -p "$TMP/nginx"
sed -e "s|@USER_LINE@|$USER_LINE|" -e "s|@DIR@|$TMP/nginx|g" -e "s|@BACKEND_PORT@|$BPORT|g" \
    bench/conf/backend.nginx.conf.in >"$TMP/nginx/nginx.conf"
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" &
PIDS+=($!)

declare -A PORT PID BIN USE
METHODS="epoll io_uring"
BIN[epoll]=$BALLAST_BIN; USE[epoll]=epoll
BIN[io_uring]=$BALLAST_BIN; USE[io_uring]=io_uring
if [ -n "${BALLAST_BASELINE_BIN:-}" ]; then
    METHODS="$METHODS io_uring-base"; BIN[io_uring-base]=$BALLAST_BASELINE_BIN; USE[io_uring-base]=io_uring
fi
IFS=, read -r -a VARIANTS <<<"${URING_VARIANTS:-}"
for v in "${VARIANTS[@]}"; do
    [ -n "$v" ] || continue
    METHODS="$METHODS io_uring-${v%%=*}"; BIN[io_uring-${v%%=*}]=${v#*=}; USE[io_uring-${v%%=*}]=io_uring
done
for m in $METHODS; do
    [ -x "${BIN[$m]}" ] || { log "${BIN[$m]} ($m) is not an executable"; exit 1; }
    PORT[$m]=$(free_port)
    # make bench's plain HTTP/1.1 config (bench/conf/ballast.conf.in) with the method.
    cat >"$TMP/ballast-$m.conf" <<EOF
worker_processes 1;
error_log stderr warn;
events {
    worker_connections 20000;
    use ${USE[$m]};
}
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 300s;
    upstream b {
        server 127.0.0.1:$BPORT;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:${PORT[$m]};
        location / {
            proxy_pass http://b;
        }
    }
}
EOF
    "${BIN[$m]}" -c "$TMP/ballast-$m.conf" 2>"$TMP/ballast-$m.err" &
    PID[$m]=$!
    PIDS+=($!)
done
for m in $METHODS; do
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:${PORT[$m]}/" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:${PORT[$m]}/" >/dev/null || { log "ballast ($m) does not answer"; cat "$TMP/ballast-$m.err"; exit 1; }
done
if grep -q "using epoll" "$TMP/ballast-io_uring.err"; then
    log "io_uring refused here: $(grep 'using epoll' "$TMP/ballast-io_uring.err")"
    log "nothing to compare; no results written"
    exit 0
fi

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# wrk output -> "requests rps p99_ms"
parse_wrk() {
    awk '/requests in/ { r = $1 } /^Requests\/sec/ { s = $2 }
         /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 }
                    else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 }
                    p = v }
         END { printf "%d %.0f %.2f\n", r, s, p }' "$1"
}

ROWS=$TMP/rows
# Syscalls per request: perf counts them (a tracepoint, all threads) over the measured runs
# at no cost worth the name; strace -c, slow, only names them.
PERF=""
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    PERF=1
else
    log "perf cannot count syscalls here: syscalls per request come from strace alone"
fi
: >"$ROWS"
log "warm-up"
for m in $METHODS; do wrk -t1 -c50 -d2s "http://127.0.0.1:${PORT[$m]}/" >/dev/null 2>&1 || true; done
IFS=, read -r -a CL <<<"$CONNS"
for c in "${CL[@]}"; do
    for r in $(seq "$ROUNDS"); do
        order=$METHODS
        (( r % 2 == 0 )) && order=$(printf '%s\n' $METHODS | tac | tr '\n' ' ')
        for m in $order; do
            pp=""
            if [ -n "$PERF" ]; then
                perf stat -e raw_syscalls:sys_enter -x, -o "$TMP/perf" -p "${PID[$m]}" 2>/dev/null &
                pp=$!
                sleep 0.2
            fi
            t0=$(ticks "${PID[$m]}")
            wrk -t1 -c"$c" -d"${DUR}s" --latency "http://127.0.0.1:${PORT[$m]}/" >"$TMP/wrk" 2>&1 || true
            t1=$(ticks "${PID[$m]}")
            sc=-1
            if [ -n "$pp" ]; then
                kill -INT "$pp" 2>/dev/null || true
                wait "$pp" 2>/dev/null || true
                sc=$(awk -F, '/raw_syscalls/ { print $1 }' "$TMP/perf")
                [[ $sc =~ ^[0-9]+$ ]] || sc=-1
            fi
            read -r reqs rps p99 < <(parse_wrk "$TMP/wrk")
            echo "wrk $m $c $reqs $rps $p99 $((t1 - t0)) $sc" >>"$ROWS"
            log "c=$c round $r $m: $rps req/s, p99 ${p99} ms, $((t1 - t0)) ticks, $sc syscalls"
        done
    done
    if [ "$STRACE_S" != 0 ]; then
        for m in $METHODS; do
            tids=$(ls "/proc/${PID[$m]}/task" | sed 's/^/-p /' | tr '\n' ' ')
            # shellcheck disable=SC2086
            strace -c -f -o "$TMP/strace" $tids 2>/dev/null &
            sp=$!
            sleep 0.5
            wrk -t1 -c"$c" -d"${STRACE_S}s" "http://127.0.0.1:${PORT[$m]}/" >"$TMP/wrk" 2>&1 || true
            kill -INT "$sp" 2>/dev/null || true
            wait "$sp" 2>/dev/null || true
            read -r reqs _ _ < <(parse_wrk "$TMP/wrk")
            # strace -c rows: % time, seconds, usecs/call, calls, [errors], syscall
            total=$(awk '$NF == "total" { print $4 }' "$TMP/strace")
            top=$(awk 'NR > 2 && $1 ~ /^[0-9.]+$/ && $NF != "total" { printf "%s%s %s", sep, $NF, $4; sep = ", " } ' "$TMP/strace" | cut -c1-120)
            echo "strace $m $c $reqs ${total:-0} $top" >>"$ROWS"
            log "c=$c $m: ${total:-0} syscalls for $reqs requests under strace ($top)"
        done
    fi
done

REPORT=$TMP/report.md
/usr/bin/python3 - "$ROWS" "$CLK_TCK" "$DUR" "$ROUNDS" "$(nproc)" "$METHODS" >"$REPORT" <<'EOF'
import statistics, sys
rows, tck, dur, rounds, ncpu = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
methods = sys.argv[6].split()
wrk, st = {}, {}
for ln in open(rows):
    f = ln.split()
    if f[0] == "wrk":
        reqs, rps, p99, t, sc = int(f[3]), float(f[4]), float(f[5]), int(f[6]), int(f[7])
        wrk.setdefault((f[1], int(f[2])), []).append(
            (rps, t * 1e6 / tck / max(reqs, 1), p99, sc / max(reqs, 1) if sc >= 0 else -1))
    else:
        reqs, total = int(f[3]), int(f[4])
        st[(f[1], int(f[2]))] = (total / max(reqs, 1), " ".join(f[5:]))
conns = sorted({c for _, c in wrk})
print("| conns | backend | req/s | CPU us/req | p99 ms | syscalls/req | io_uring/epoll: rps, CPU/req, syscalls/req |")
print("|---|---|---|---|---|---|---|")
for c in conns:
    med = {}
    for m in methods:
        v = wrk.get((m, c))
        if not v:
            continue
        med[m] = tuple(statistics.median(x[i] for x in v) for i in range(4))
    for m in methods:
        if m not in med:
            continue
        rps, cpu, p99, sc = med[m]
        if sc < 0 and (m, c) in st:
            sc = st[(m, c)][0]  # no perf: strace's count (its short run includes set-up)
        ratio = ""
        if m != "epoll" and "epoll" in med:
            e = med["epoll"]
            ratio = "%.2fx, %.2fx, %s" % (rps / e[0], cpu / e[1],
                                         "%.2fx" % (sc / e[3]) if sc >= 0 and e[3] > 0 else "-")
        print("| %d | %s | %.0f | %.1f | %.2f | %s | %s |" % (
            c, m, rps, cpu, p99, "%.2f" % sc if sc >= 0 else "-", ratio))
print()
print("Medians of %s interleaved rounds of %ss (wrk -t1, keep-alive), one ballast worker each, "
      "%s CPUs shared with the backend and wrk; syscalls per request counted by perf stat "
      "(raw_syscalls:sys_enter, all threads) over the same runs. Syscalls by name over a short "
      "run under strace -c (its start includes the connections' set-up):" % (rounds, dur, ncpu))
for (m, c), (per, top) in sorted(st.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print("- %s, %d conns: %s" % (m, c, top))
EOF
cat "$REPORT"
if [ -z "${BENCH_NO_RESULTS:-}" ]; then
    # A dated section of its own, newest first like the others (above the first "## ").
    /usr/bin/python3 - "$RESULTS" "$REPORT" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
        "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" <<'EOF'
import os, sys
path, report, when, rev = sys.argv[1:5]
text = open(path).read() if os.path.exists(path) else "# ballast benchmark results\n"
sec = ("## %s — io_uring backend: ballast %s, `use epoll;` vs `use io_uring;` (make bench-uring)\n\n"
       "The same binary twice, one worker each, behind them one nginx backend, in one run "
       "(bench/uring.sh). The machine is shared and noisy: only the ratios within this run "
       "mean anything.\n\n%s\n" % (when, rev, open(report).read()))
i = text.find("\n## ")
text = text + "\n" + sec if i < 0 else text[:i + 1] + sec + text[i + 1:]
open(path, "w").write(text)
EOF
    log "written to $RESULTS"
fi
