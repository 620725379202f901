#!/usr/bin/env bash
# Where ballast's CPU per request goes beyond the floor's (issue 14): ballast and the relay that
# does not parse (build/bench/floor_relay) on the same loop method, interleaved, in front of one
# nginx backend, wrk -t1 -c$GAP_CONNS keep-alive. Per request, for each: user and system CPU
# (/proc/PID/stat utime and stime), syscalls, context switches and page faults (perf stat:
# raw_syscalls:sys_enter and software events, counted over the same runs); then one profiled
# run each (perf record -e cpu-clock, kernel and user) and the symbols whose share of CPU
# differs most between the two, in microseconds per request. Prints tables; writes nothing.
# Only ratios within one run mean anything on a shared machine.
#
#   GAP_USE=epoll          ballast's events method (epoll or io_uring); the floor runs the same
#   GAP_CONNS=200          client connections
#   GAP_DURATION=5         seconds per measured run
#   GAP_ROUNDS=2           interleaved rounds (medians)
#   GAP_PROFILE=1          0: no perf record run
#   BALLAST_BIN=./ballast  FLOOR_BIN=build/bench/floor_relay
set -euo pipefail
cd "$(dirname "$0")/.."

USE=${GAP_USE:-epoll}
CONNS=${GAP_CONNS:-200}
DUR=${GAP_DURATION:-5}
ROUNDS=${GAP_ROUNDS:-2}
PROFILE=${GAP_PROFILE:-1}
BALLAST_BIN=${BALLAST_BIN:-./ballast}
FLOOR_BIN=${FLOOR_BIN:-build/bench/floor_relay}
PY=/usr/bin/python3
MAIN_PID=$$
log() { printf 'floor_gap: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
. bench/lib.sh

case $USE in epoll|io_uring) ;; *) die "GAP_USE must be epoll or io_uring" ;; esac
for tool in nginx wrk perf curl; do command -v "$tool" >/dev/null || die "$tool not found"; done
[ -x "$BALLAST_BIN" ] || die "$BALLAST_BIN not built (make ballast)"
[ -x "$FLOOR_BIN" ] || make -s build/bench/floor_relay || die "$FLOOR_BIN not built"
perf stat -e raw_syscalls:sys_enter -x, -- true >/dev/null 2>&1 || die "perf cannot count syscalls here"

STARTED=()
WATCHDOG=""
TMP=$(mktemp -d /tmp/ballast-floor-gap.XXXXXX)
trap bench_cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

read -r BPORT PB PF < <(free_ports 3)
mkdir -p "$TMP/backend"/{client_body,proxy,fastcgi,uwsgi,scgi}
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
sed -e "s|@USER_LINE@|$USER_LINE|" -e "s|@DIR@|$TMP/backend|g" -e "s|@BACKEND_PORT@|$BPORT|g" \
    bench/conf/backend.nginx.conf.in >"$TMP/backend/nginx.conf"
nginx -p "$TMP/backend" -c "$TMP/backend/nginx.conf" -e "$TMP/backend/error.log" &
STARTED+=($!)

sed -e "s|@PORT@|$PB|g" -e "s|@BACKEND_PORT@|$BPORT|g" -e 's|@[A-Z0-9_]*@||g' \
    -e "/^events {/a\    use $USE;" bench/conf/ballast.conf.in >"$TMP/ballast.conf"
"$BALLAST_BIN" -c "$TMP/ballast.conf" >"$TMP/ballast.log" 2>&1 &
STARTED+=($!)
declare -A PID PORT
PID[ballast]=$!
PORT[ballast]=$PB
"$FLOOR_BIN" "$PF" "127.0.0.1:$BPORT" "$USE" >"$TMP/floor.log" 2>&1 &
STARTED+=($!)
PID[floor]=$!
PORT[floor]=$PF
for n in ballast floor; do
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:${PORT[$n]}/" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:${PORT[$n]}/" >/dev/null || die "$n does not answer"
done
grep -q "using epoll" "$TMP/ballast.log" && die "io_uring refused: $(cat "$TMP/ballast.log")"

stat_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }   # utime stime
# voluntary and involuntary context switches, summed over the process's threads
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt/ { v += $2 } /^nonvoluntary_ctxt/ { n += $2 } END { print v + 0, n + 0 }'; }
wrk_reqs() { awk '/ requests in / { print $1 }' "$1"; }
ROWS=$TMP/rows
: >"$ROWS"
log "warm-up"
for n in ballast floor; do wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${PORT[$n]}/" >/dev/null 2>&1 || true; done
EVENTS=raw_syscalls:sys_enter,context-switches,page-faults
for r in $(seq "$ROUNDS"); do
    order="ballast floor"
    (( r % 2 == 0 )) && order="floor ballast"
    for n in $order; do
        perf stat -e "$EVENTS" -x, -o "$TMP/perf-$n-$r" -p "${PID[$n]}" >/dev/null 2>&1 &
        pp=$!
        sleep 0.3
        read -r u0 s0 < <(stat_ticks "${PID[$n]}")
        read -r v0 i0 < <(switches "${PID[$n]}")
        wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:${PORT[$n]}/" >"$TMP/wrk-$n-$r" 2>&1 || true
        read -r u1 s1 < <(stat_ticks "${PID[$n]}")
        read -r v1 i1 < <(switches "${PID[$n]}")
        kill -INT "$pp" 2>/dev/null || true
        wait "$pp" 2>/dev/null || true
        reqs=$(wrk_reqs "$TMP/wrk-$n-$r")
        sc=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$TMP/perf-$n-$r")
        cs=$(awk -F, '$3 == "context-switches" { print $1 }' "$TMP/perf-$n-$r")
        pf=$(awk -F, '$3 == "page-faults" { print $1 }' "$TMP/perf-$n-$r")
        echo "$n $reqs $((u1 - u0)) $((s1 - s0)) ${sc:-0} ${cs:-0} ${pf:-0} $((v1 - v0)) $((i1 - i0))" >>"$ROWS"
        log "round $r $n: $reqs requests, utime $((u1 - u0)) stime $((s1 - s0)) ticks, $sc syscalls"
    done
done
if [ "$PROFILE" != 0 ]; then
    for n in ballast floor; do
        log "profile: $n"
        perf record -q -e cpu-clock -F 4000 -p "${PID[$n]}" -o "$TMP/prof-$n.data" >/dev/null 2>&1 &
        pp=$!
        sleep 0.3
        wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:${PORT[$n]}/" >"$TMP/wrk-prof-$n" 2>&1 || true
        kill -INT "$pp" 2>/dev/null || true
        wait "$pp" 2>/dev/null || true
        perf report -i "$TMP/prof-$n.data" --no-children --sort sym --stdio -q 2>/dev/null \
            | awk 'NF >= 3 && $1 ~ /%$/ { p = $1; sub(/%/, "", p); $1 = ""; print p "\t" substr($0, 2) }' \
            >"$TMP/syms-$n" || true
        echo "$(wrk_reqs "$TMP/wrk-prof-$n")" >"$TMP/reqs-prof-$n"
    done
fi

"$PY" - "$ROWS" "$(getconf CLK_TCK)" "$USE" "$CONNS" "$DUR" "$ROUNDS" "$TMP" "$PROFILE" <<'EOF'
import os, statistics, sys
rows, tck, use, conns, dur, rounds, tmp, profile = sys.argv[1:9]
tick_us = 1e6 / int(tck)
per = {}
for ln in open(rows):
    n, reqs, ut, st, sc, cs, pf, vol, inv = ln.split()
    reqs = max(int(reqs), 1)
    per.setdefault(n, []).append((int(ut) * tick_us / reqs, int(st) * tick_us / reqs,
                                  int(sc) / reqs, int(cs) / reqs, int(vol) / reqs,
                                  int(inv) / reqs, int(pf) / reqs, reqs))
med = {n: [statistics.median(v[i] for v in vals) for i in range(8)] for n, vals in per.items()}
print("ballast (use %s) against floor_relay %s, wrk -t1 -c%s, %s rounds of %ss (medians)"
      % (use, use, conns, rounds, dur))
print()
print("| per request | ballast | floor | ballast - floor | ballast / floor |")
print("|---|---:|---:|---:|---:|")
b, f = med["ballast"], med["floor"]
names = ["user CPU us", "system CPU us", "syscalls", "context switches (perf)",
         "  of which voluntary (/proc)", "  of which involuntary (/proc)", "page faults"]
for i, name in enumerate(names):
    print("| %s | %.3f | %.3f | %+.3f | %s |" % (name, b[i], f[i], b[i] - f[i],
                                               "%.2fx" % (b[i] / f[i]) if f[i] else "-"))
tb, tf = b[0] + b[1], f[0] + f[1]
print("| **CPU us (user + system)** | %.2f | %.2f | %+.2f | %.2fx |" % (tb, tf, tb - tf, tb / tf))
if profile == "0":
    sys.exit(0)
# perf record shares -> us per request, with the measured CPU per request as the whole.
prof = {}
for n, total in (("ballast", tb), ("floor", tf)):
    path = os.path.join(tmp, "syms-" + n)
    prof[n] = {}
    if os.path.exists(path):
        for ln in open(path):
            pct, sym = ln.rstrip("\n").split("\t", 1)
            prof[n][sym.strip()] = float(pct) / 100 * total
keys = set(prof["ballast"]) | set(prof["floor"])
diff = sorted(keys, key=lambda k: -(prof["ballast"].get(k, 0) - prof["floor"].get(k, 0)))
print()
print("Symbols by CPU per request (perf record -e cpu-clock, one run each; shares of the "
      "measured CPU per request above; [k] kernel, [.] user space), the 25 that cost ballast "
      "the most more than the floor:")
print()
print("| symbol | ballast us/req | floor us/req | difference |")
print("|---|---:|---:|---:|")
for k in diff[:25]:
    bb, ff = prof["ballast"].get(k, 0), prof["floor"].get(k, 0)
    print("| `%s` | %.3f | %.3f | %+.3f |" % (k, bb, ff, bb - ff))
for n in ("ballast", "floor"):
    kern = sum(v for s, v in prof[n].items() if s.startswith("[k]"))
    user = sum(v for s, v in prof[n].items() if not s.startswith("[k]"))
    print("\n%s: kernel symbols %.2f us/req, user-space symbols %.2f us/req (sampled)" % (n, kern, user))
EOF
