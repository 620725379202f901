#!/usr/bin/env bash
# make bench-scale: ballast, nginx and HAProxy at 1/2/4/8 workers side by side in one run
# (issue 14's table): req/s, CPU per request, p50/p99/p99.9, and for ballast how the requests
# spread over its workers (GET /api/workers). See bench/README.md, "bench-scale".
#
# Layout: with enough cores every party gets its own: proxy cores 0..W-1 (W = the largest
# worker count), the backend nginx (4 workers) the next 4, wrk (4 threads) the next 4, each
# started under `taskset -c`, so 8 workers need 16 cores. A worker count that does not fit
# is left out; on a machine without room for even one worker plus backend and wrk (fewer
# than 9 cores) nothing is pinned, the counts are cut to those <= the core count, and the
# report says so: the figures then measure the machine's sharing as much as the proxies.
#
# Environment:
#   SCALE_WORKERS=1,2,4,8    worker counts (cut to what fits, see above)
#   SCALE_ONLY=ballast,nginx,haproxy   (nginx-reuseport: nginx with `listen ... reuseport`,
#                            the kernel's per-worker hashing that ballast's listeners get)
#   SCALE_CONNS=400          wrk connections (keep-alive)
#   SCALE_DURATION=10s       each measured run
#   SCALE_ROUNDS=2           rounds per worker count, proxies in rotating order
#   SCALE_BACKEND_WORKERS=4  SCALE_WRK_THREADS=4
#   SCALE_PIN=auto|0         auto: pin when the cores are there; 0: never
#   BENCH_RESULTS=bench/RESULTS.md  (BENCH_NO_RESULTS=1: tables only), BALLAST_BIN=./ballast
#   BENCH_KEEP=1             keep the temp dir
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_DIR=bench
PY=/usr/bin/python3
MAIN_PID=$$
log() { printf 'bench-scale: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
. "$BENCH_DIR/lib.sh"

SCALE_WORKERS=${SCALE_WORKERS:-1,2,4,8}
SCALE_ONLY=${SCALE_ONLY:-ballast,nginx,haproxy}
SCALE_CONNS=${SCALE_CONNS:-400}
SCALE_DURATION=${SCALE_DURATION:-10s}
SCALE_ROUNDS=${SCALE_ROUNDS:-2}
SCALE_BACKEND_WORKERS=${SCALE_BACKEND_WORKERS:-4}
SCALE_WRK_THREADS=${SCALE_WRK_THREADS:-4}
SCALE_PIN=${SCALE_PIN:-auto}
BENCH_RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
BALLAST_BIN=${BALLAST_BIN:-./ballast}

for tool in nginx haproxy wrk curl taskset; do
    command -v "$tool" >/dev/null || die "$tool not found; run: scripts/install-deps.sh test"
done
[[ $SCALE_CONNS =~ ^[1-9][0-9]*$ ]] || die "SCALE_CONNS: not a count"
[[ $SCALE_ROUNDS =~ ^[1-9][0-9]*$ ]] || die "SCALE_ROUNDS: not a count"
DUR_S=$(secs "$SCALE_DURATION")
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
IFS=', ' read -r -a WANT <<<"$SCALE_WORKERS"
IFS=', ' read -r -a PROXIES <<<"$SCALE_ONLY"
for p in "${PROXIES[@]}"; do
    case $p in nginx|nginx-reuseport|haproxy|ballast) ;; *) die "SCALE_ONLY: unknown proxy '$p'" ;; esac
done

# ---------------------------------------------------------------- the core layout
OTHERS=$(( SCALE_BACKEND_WORKERS + SCALE_WRK_THREADS ))
WORKERS=()
PINNED=0
NOTE=""
if [ "$SCALE_PIN" != 0 ] && (( NCPU >= 1 + OTHERS )); then
    PINNED=1
    for w in "${WANT[@]}"; do
        [[ $w =~ ^[1-9][0-9]*$ ]] || die "SCALE_WORKERS: bad count '$w'"
        if (( w + OTHERS <= NCPU )); then WORKERS+=("$w"); else NOTE+="$w workers left out: $w + $OTHERS cores needed, $NCPU here. "; fi
    done
    WMAX=0
    for w in "${WORKERS[@]}"; do (( w > WMAX )) && WMAX=$w; done
    CPU_BACKEND="$WMAX-$(( WMAX + SCALE_BACKEND_WORKERS - 1 ))"
    CPU_WRK="$(( WMAX + SCALE_BACKEND_WORKERS ))-$(( WMAX + OTHERS - 1 ))"
    NOTE+="Pinned with taskset: proxy cores 0..W-1, backend nginx ($SCALE_BACKEND_WORKERS workers) cores $CPU_BACKEND, wrk ($SCALE_WRK_THREADS threads) cores $CPU_WRK."
else
    for w in "${WANT[@]}"; do
        [[ $w =~ ^[1-9][0-9]*$ ]] || die "SCALE_WORKERS: bad count '$w'"
        if (( w <= NCPU )); then WORKERS+=("$w"); fi
    done
    NOTE="NOT PINNED: $NCPU cores, fewer than the $(( 1 + OTHERS )) one worker plus the backend ($SCALE_BACKEND_WORKERS) and wrk ($SCALE_WRK_THREADS) need (or SCALE_PIN=0); proxy, backend and wrk share every core, worker counts cut to <= $NCPU (${WORKERS[*]:-none}). These figures show the sharing as much as the proxies: issue 14's table needs a machine with 16 cores."
fi
(( ${#WORKERS[@]} )) || die "no worker count fits on $NCPU cores"
log "$NOTE"

# A command prefix, not a function: a function run with & would be a subshell whose pid is
# not the proxy's.
pin() {   # cpus -> PIN=(taskset -c cpus) when pinning, else ()
    PIN=()
    if (( PINNED )); then PIN=(taskset -c "$1"); fi
}

# ---------------------------------------------------------------- processes
STARTED=()
TMP=$(mktemp -d /tmp/ballast-scale.XXXXXX)
trap bench_cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Hard cap: every run plus start/stop slack.
BUDGET=$(( 120 + ${#WORKERS[@]} * ${#PROXIES[@]} * (30 + SCALE_ROUNDS * (DUR_S + 15)) ))
( trap 'kill "$sp" 2>/dev/null; exit 0' TERM; sleep "$BUDGET" & sp=$!; wait "$sp"
  echo "bench-scale: time budget of ${BUDGET}s exceeded, aborting" >&2; kill -TERM "$MAIN_PID" ) &
STARTED+=($!)

read -r BACKEND_PORT ADMIN_PORT P_NGINX P_HAPROXY P_BALLAST < <(free_ports 5)
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"

render() {   # template out port dir workers
    sed -e "s|@DIR@|$4|g" -e "s|@PORT@|$3|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@USER_LINE@|$USER_LINE|g" -e 's|@[A-Z0-9_]*@||g' "$1" >"$2"   # TLS rows' slots left empty
}

descendants() {   # pid -> every process below it
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do echo -n "$c "; descendants "$c"; done
}

answers() {   # port pid
    local i
    for i in $(seq 100); do
        alive "$2" || return 1
        [ "$(curl -s --max-time 1 "http://127.0.0.1:$1/" 2>/dev/null || true)" = "hello from the backend" ] && return 0
        sleep 0.1
    done
    return 1
}

PID_MAIN=""   # the proxy being measured: its main pid; PIDS_ALL: every pid whose CPU counts
start_proxy() {   # name workers cpus
    local name=$1 w=$2 cpus=$3 dir=$TMP/$1-$2
    mkdir -p "$dir"/{client_body,proxy,fastcgi,uwsgi,scgi}
    case $name in
        nginx|nginx-reuseport)
            render "$BENCH_DIR/conf/nginx.conf.in" "$dir/nginx.conf" "$P_NGINX" "$dir"
            sed -i -e "s/^worker_processes 1;/worker_processes $w;/" -e "s/worker_connections 20000;/worker_connections 4000;/" "$dir/nginx.conf"
            # nginx-reuseport: a listening socket per worker, hashed by the kernel as
            # ballast's are; plain nginx: one socket all workers accept from (EPOLLEXCLUSIVE)
            [ "$name" = nginx-reuseport ] && sed -i "s/backlog=4096/backlog=4096 reuseport/" "$dir/nginx.conf"
            pin "$cpus"; "${PIN[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
            PORT=$P_NGINX ;;
        haproxy)
            render "$BENCH_DIR/conf/haproxy.cfg.in" "$dir/haproxy.cfg" "$P_HAPROXY" "$dir"
            sed -i "s/nbthread 1/nbthread $w/" "$dir/haproxy.cfg"
            pin "$cpus"; "${PIN[@]}" haproxy -db -f "$dir/haproxy.cfg" >"$dir/out.log" 2>&1 &
            PORT=$P_HAPROXY ;;
        ballast)
            render "$BENCH_DIR/conf/ballast.conf.in" "$dir/ballast.conf" "$P_BALLAST" "$dir"
            sed -i -e "s/^worker_processes 1;/worker_processes $w;/" -e "s/worker_connections 20000;/worker_connections 4000;/" "$dir/ballast.conf"
            # The admin listener (loopback, no token) for GET /api/workers.
            printf 'admin {\n    listen 127.0.0.1:%s;\n}\n' "$ADMIN_PORT" >>"$dir/ballast.conf"
            pin "$cpus"; "${PIN[@]}" "$BALLAST_BIN" -c "$dir/ballast.conf" >"$dir/out.log" 2>&1 &
            PORT=$P_BALLAST ;;
    esac
    PID_MAIN=$!
    STARTED+=("$PID_MAIN")
    answers "$PORT" "$PID_MAIN" || { log "$name with $w workers did not start: $(tail -3 "$dir"/*.log "$dir/out.log" 2>/dev/null | tr '\n' ' ' | cut -c1-300)"; return 1; }
    PIDS_ALL="$PID_MAIN $(descendants "$PID_MAIN")"
    for p in $PIDS_ALL; do STARTED+=("$p"); done
}

stop_proxy() {
    local p i
    for p in $PIDS_ALL; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 100); do
        alive "$PID_MAIN" || break
        sleep 0.1
    done
    alive "$PID_MAIN" && kill -KILL "$PID_MAIN" 2>/dev/null || true
    wait "$PID_MAIN" 2>/dev/null || true
}

worker_counts() {   # ballast: FIELD per worker, space-separated, from GET /api/workers
    curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/api/workers" 2>/dev/null |
        "$PY" -c 'import json,sys; print(" ".join(str(w[sys.argv[1]]) for w in json.load(sys.stdin)["workers"]))' "$1" 2>/dev/null || true
}

cat >"$TMP/pctl.lua" <<'EOF'
done = function(summary, latency, requests)
    io.write(string.format("PCTL %d %d %d %d\n", latency:percentile(50), latency:percentile(99),
                           latency:percentile(99.9), summary.requests))
end
EOF

RECORDS=$TMP/records.tsv
: >"$RECORDS"

# ---------------------------------------------------------------- run
log "backend nginx on :$BACKEND_PORT; temp dir $TMP; budget ${BUDGET}s"
mkdir -p "$TMP/backend"/{client_body,proxy,fastcgi,uwsgi,scgi}
render "$BENCH_DIR/conf/backend.nginx.conf.in" "$TMP/backend/nginx.conf" 0 "$TMP/backend"
sed -i "s/^worker_processes 1;/worker_processes $SCALE_BACKEND_WORKERS;/" "$TMP/backend/nginx.conf"
pin "${CPU_BACKEND:-0}"; "${PIN[@]}" nginx -p "$TMP/backend" -e "$TMP/backend/error.log" -c "$TMP/backend/nginx.conf" >/dev/null 2>&1 &
STARTED+=($!)
sleep 0.5
for p in $(descendants $!); do STARTED+=("$p"); done

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
k=0
for w in "${WORKERS[@]}"; do
    cpus="0-$(( w - 1 ))"
    for (( round = 1; round <= SCALE_ROUNDS; round++ )); do
        n=${#PROXIES[@]}
        for (( i = 0; i < n; i++ )); do
            name=${PROXIES[$(( (i + k) % n ))]}
            log "$name, $w worker(s), round $round/$SCALE_ROUNDS"
            start_proxy "$name" "$w" "$cpus" || { printf 'fail\t%s\t%s\t%s\n' "$name" "$w" "$round" >>"$RECORDS"; continue; }
            url="http://127.0.0.1:$PORT/"
            pin "${CPU_WRK:-0}"
            "${PIN[@]}" timeout 30 wrk -t"$SCALE_WRK_THREADS" -c"$SCALE_CONNS" -d2s "$url" >/dev/null 2>&1 || true
            w0=""; c0=""; [ "$name" = ballast ] && w0=$(worker_counts requests)
            # connections: the warm-up's are closed; the measured run opens its own
            [ "$name" = ballast ] && c0=$(worker_counts connections_accepted)
            t0=$(cpu_ticks $PIDS_ALL)
            out=$TMP/wrk-$name-$w-$round.txt
            "${PIN[@]}" timeout $(( DUR_S + 30 )) wrk -t"$SCALE_WRK_THREADS" -c"$SCALE_CONNS" -d"${DUR_S}s" --latency -s "$TMP/pctl.lua" "$url" >"$out" 2>&1 || true
            t1=$(cpu_ticks $PIDS_ALL)
            w1=""; c1=""; [ "$name" = ballast ] && w1=$(worker_counts requests) && c1=$(worker_counts connections_accepted)
            read -r p50 p99 p999 reqs < <(awk '$1 == "PCTL" { print $2, $3, $4, $5 }' "$out"; echo "")
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
            err=$(awk '/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 } /Non-2xx/ { e += $5 } END { print e + 0 }' "$out")
            printf 'run\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$w" "$round" \
                "${reqs:-0}" "${rps:-0}" $(( t1 - t0 )) "${p50:--1}" "${p99:--1}" "${p999:--1}" "$err" "$w0" "$w1" "$c0" "$c1" >>"$RECORDS"
            stop_proxy
        done
        k=$(( k + 1 ))
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no -- src Makefile 2>/dev/null || true)" ] && COMMIT="$COMMIT+uncommitted"
results=""; [ "${BENCH_NO_RESULTS:-0}" = 1 ] || results=$BENCH_RESULTS
"$PY" "$BENCH_DIR/scale_report.py" "$RECORDS" "$results" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$COMMIT" "$NCPU" "$CLK_TCK" "$NOTE" \
    "wrk -t$SCALE_WRK_THREADS -c$SCALE_CONNS -d${DUR_S}s --latency, $SCALE_ROUNDS round(s) per worker count in rotating order (medians); load average $LOAD0 at start, $LOAD1 at end" \
    "nginx $(nginx -v 2>&1 | sed 's|.*nginx/||'), HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
