#!/usr/bin/env bash
# ballast, nginx and HAProxy side by side, in one run, against one shared nginx backend.
# See bench/README.md for what is measured and how to read it.
#
# Environment:
#   BENCH_ROWS=http,tls,h2,stream,cache,gzip  which rows (default all): http (plain HTTP/1.1
#                                keep-alive, syscalls, idle memory), tls (keep-alive TLS, new TLS 1.3
#                                handshakes), h2 (h2load over TLS), stream (L4: 1 GiB transfer,
#                                short connections), cache (proxy_cache hits), gzip (levels 1, 6);
#                                bench/rows.sh, cache.sh and gzip.sh have the knobs of the others
#   BENCH_ONLY=nginx,haproxy     which proxies (default: nginx,haproxy,ballast, and
#                                ballast-base when BALLAST_BASELINE_BIN is set; with the http
#                                row also ballast-uring, floor-epoll, floor-uring: bench/floor.sh)
#   BENCH_DURATION=10s           each measured wrk run
#   BENCH_CONNS=50,200           client connection counts, one set of runs per count
#   BENCH_ROUNDS=2               interleaved rounds per count (the median is reported)
#   BENCH_STRACE_DURATION=3s     the separate run under strace -c (syscalls per request)
#   BENCH_STRACE_CONNS=10
#   BENCH_IDLE_CONNS=5000        idle keep-alive connections for the memory measurement
#   BENCH_RESULTS=bench/RESULTS.md   where the dated section goes; BENCH_NO_RESULTS=1: nowhere
#   BALLAST_BIN=./ballast
#   BALLAST_BASELINE_BIN=PATH    a second ballast binary (say, main before a change), run as
#                                proxy "ballast-base" with ballast's config, interleaved with
#                                the others, so a change is compared within one run
#   BENCH_BUDGET=SECONDS         hard cap on the whole run (default: computed from the settings)
#   BENCH_KEEP=1                 keep the temp dir (configs, logs, raw wrk/strace output)
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_DIR=bench
PY=/usr/bin/python3
MAIN_PID=$$

BALLAST_BASELINE_BIN=${BALLAST_BASELINE_BIN:-}
BENCH_ROWS=${BENCH_ROWS:-http,tls,h2,stream,cache,gzip}
BENCH_ONLY_GIVEN=${BENCH_ONLY:-}
BENCH_ONLY=${BENCH_ONLY:-nginx,haproxy,ballast${BALLAST_BASELINE_BIN:+,ballast-base}}
BENCH_DURATION=${BENCH_DURATION:-10s}
BENCH_CONNS=${BENCH_CONNS:-50,200}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
BENCH_STRACE_DURATION=${BENCH_STRACE_DURATION:-3s}
BENCH_STRACE_CONNS=${BENCH_STRACE_CONNS:-10}
BENCH_IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
BENCH_RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
BALLAST_BIN=${BALLAST_BIN:-./ballast}
WARMUP=2s
START_TIMEOUT=5   # seconds a proxy gets to start and answer curl, else it is skipped

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
. "$BENCH_DIR/lib.sh"


for tool in nginx haproxy wrk strace curl getconf; do
    command -v "$tool" >/dev/null || die "$tool not found; run: scripts/install-deps.sh test"
done
[ -x "$PY" ] || die "$PY not found"

IFS=', ' read -r -a SELECTED <<<"$BENCH_ONLY"
for p in "${SELECTED[@]}"; do
    case $p in
        nginx|haproxy|ballast|ballast-uring|floor-epoll|floor-uring) ;;
        ballast-base) [ -n "$BALLAST_BASELINE_BIN" ] || die "BENCH_ONLY has ballast-base: set BALLAST_BASELINE_BIN" ;;
        *) die "BENCH_ONLY: unknown proxy '$p' (nginx, haproxy, ballast, ballast-base, ballast-uring, floor-epoll, floor-uring)" ;;
    esac
done
if [ -n "$BALLAST_BASELINE_BIN" ]; then
    [ -x "$BALLAST_BASELINE_BIN" ] || die "BALLAST_BASELINE_BIN: $BALLAST_BASELINE_BIN is not an executable"
    [[ " ${SELECTED[*]} " == *" ballast-base "* ]] || SELECTED+=(ballast-base)
fi
IFS=', ' read -r -a ROWS <<<"$BENCH_ROWS"
for r in "${ROWS[@]}"; do
    case $r in http|tls|h2|stream|cache|gzip) ;; *) die "BENCH_ROWS: unknown row '$r' (http, tls, h2, stream, cache, gzip)" ;; esac
done
row_on() { [[ " ${ROWS[*]} " == *" $1 "* ]]; }
. "$BENCH_DIR/floor.sh"
floor_select
IFS=', ' read -r -a CONNS_LIST <<<"$BENCH_CONNS"
for c in "${CONNS_LIST[@]}"; do [[ $c =~ ^[0-9]+$ ]] || die "BENCH_CONNS: bad count '$c'"; done
[[ $BENCH_ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer"
DUR_S=$(secs "$BENCH_DURATION")
STRACE_S=$(secs "$BENCH_STRACE_DURATION")
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- process bookkeeping
STARTED=()        # every pid this script started (or whose parent it started), for cleanup
WATCHDOG=""
TMP=$(mktemp -d /tmp/ballast-bench.XXXXXX)


trap bench_cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Hard cap on the whole run, in case something hangs despite the per-command timeouts.
NLEVELS=${#CONNS_LIST[@]}
source "$BENCH_DIR/rows.sh"
HTTP_BUDGET=0
row_on http && HTTP_BUDGET=$(( ${#SELECTED[@]} * (2 * START_TIMEOUT + 100 + 5 + STRACE_S + 20 + NLEVELS * BENCH_ROUNDS * (DUR_S + 10)) ))
BUDGET=${BENCH_BUDGET:-$(( 120 + HTTP_BUDGET + $(rows_budget) + $(floor_budget) ))}
(
    trap 'kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null; exit 0' TERM
    sleep "$BUDGET" & sp=$!
    wait "$sp"
    echo "bench: time budget of ${BUDGET}s exceeded, aborting" >&2
    kill -TERM "$MAIN_PID"
) &
WATCHDOG=$!

# ---------------------------------------------------------------- helpers
RECORDS=$TMP/records.tsv
: >"$RECORDS"
record() { local IFS=$'\t'; printf '%s\n' "$*" >>"$RECORDS"; }
oneline() { tr '\t\n' '  ' | sed 's/ *$//' | cut -c1-300; }



# Placeholders a row group does not fill (RENDER_EXTRA: sed expressions, say the TLS lines)
# are left empty.
RENDER_EXTRA=()
render() {   # template out port dir
    local tpl=$1 out=$2 port=$3 dir=$4 user_line=""
    [ "$(id -u)" = 0 ] && user_line="user root;"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@USER_LINE@|$user_line|g" "${RENDER_EXTRA[@]}" -e 's|@[A-Z0-9_]*@||g' "$tpl" >"$out"
}

# How a row group's proxies are reached: http, https (both must proxy the backend's answer)
# or tcp (L4: listening is enough, a connection would be a request).
SCHEME=http
answers() {   # port pid: does it answer, within START_TIMEOUT seconds?
    local port=$1 pid=$2 i body
    for i in $(seq $(( START_TIMEOUT * 10 ))); do
        alive "$pid" || return 1
        if [ "$SCHEME" = tcp ]; then
            "$PY" "$BENCH_DIR/stream.py" listening "$port" && return 0
        else
            body=$(curl -sk --max-time 1 "$SCHEME://127.0.0.1:$port/" 2>/dev/null || true)
            [ "$body" = "hello from the backend" ] && return 0
        fi
        sleep 0.1
    done
    return 1
}

start_nginx() {   # name template port -> sets PIDS_<name>; nginx master + its worker
    local name=$1 tpl=$2 port=$3 dir=$TMP/$1 master worker="" i
    mkdir -p "$dir"/{client_body,proxy,fastcgi,uwsgi,scgi}
    render "$tpl" "$dir/nginx.conf" "$port" "$dir"
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    master=$!
    STARTED+=("$master")
    for i in $(seq 50); do
        worker=$(pgrep -P "$master" | head -1 || true)
        [ -n "$worker" ] && break
        alive "$master" || break
        sleep 0.1
    done
    [ -n "$worker" ] && STARTED+=("$worker")
    PIDS[$name]="$master${worker:+ $worker}"
    [ -n "$worker" ] && answers "$port" "$master"
}

start_haproxy() {   # name template port
    local name=$1 port=$3 dir=$TMP/$1 pid
    mkdir -p "$dir"
    render "$2" "$dir/haproxy.cfg" "$port" "$dir"
    haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    PIDS[$name]=$pid
    answers "$port" "$pid"
}

start_ballast() {   # name template port binary: ballast and ballast-base run the same config
    local name=$1 port=$3 bin=$4 dir=$TMP/$1 pid
    mkdir -p "$dir"
    render "$2" "$dir/ballast.conf" "$port" "$dir"
    if [ ! -x "$bin" ]; then
        echo "binary $bin not built" >"$dir/ballast.log"
        return 1
    fi
    "$bin" -c "$dir/ballast.conf" >"$dir/ballast.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    PIDS[$name]=$pid
    answers "$port" "$pid"
}

proxy_log() {   # name, with its row group's prefix (tls/nginx)
    case ${1##*/} in
        nginx) cat "$TMP/$1/error.log" "$TMP/$1/stdout.log" 2>/dev/null ;;
        haproxy) cat "$TMP/$1/haproxy.log" 2>/dev/null ;;
        ballast|ballast-base) cat "$TMP/$1/ballast.log" 2>/dev/null ;;
        ballast-uring|floor-*) cat "$TMP/$1/proxy.log" 2>/dev/null ;;
    esac
}

stop_proxy() {   # a proxy we give up on: stop it, drop it from ACTIVE
    local name=$1 p keep=()
    for p in ${PIDS[$name]:-}; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${ACTIVE[@]}"; do [ "$p" != "$name" ] && keep+=("$p"); done
    ACTIVE=("${keep[@]}")
}

check_alive() {   # name phase: still running? if not, record it and drop it
    local name=$1 phase=$2 p
    for p in ${PIDS[$name]}; do
        if ! alive "$p"; then
            log "$name exited before '$phase'; dropping it. Last log lines:"
            proxy_log "$name" | tail -5 >&2
            record fail "$name" "$phase" "exited: $(proxy_log "$name" | tail -2 | oneline)"
            stop_proxy "$name"
            return 1
        fi
    done
}

parse_wrk() {   # wrk output file -> "reqs rps p99_ms errors"
    awk '
        / requests in / { reqs = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "99%" {
            v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
            m = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : 1
            p99 = v * m
        }
        /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { err += $5 }
        END { printf "%s %s %s %d\n", (reqs == "" ? 0 : reqs), (rps == "" ? 0 : rps), (p99 == "" ? -1 : p99), err }
    ' "$1"
}

url() { echo "$SCHEME://127.0.0.1:${PORTS[$1]}/"; }

run_wrk() {   # name conns round [seconds]
    local name=$1 conns=$2 round=$3 dur=${4:-$DUR_S} out=$TMP/wrk-${1//\//-}-c$2-r$3.txt t0 t1 b0 b1 reqs rps p99 err
    check_alive "$name" "wrk -c$conns round $round" || return 0
    b0=$(cpu_ticks ${PIDS[backend]}); t0=$(cpu_ticks ${PIDS[$name]})
    timeout $(( dur + 30 )) wrk -t1 -c"$conns" -d"${dur}s" --latency "$(url "$name")" >"$out" 2>&1 || true
    t1=$(cpu_ticks ${PIDS[$name]}); b1=$(cpu_ticks ${PIDS[backend]})
    read -r reqs rps p99 err < <(parse_wrk "$out")
    record wrk "$name" "$conns" "$round" "$reqs" "$rps" "$p99" "$err" $(( t1 - t0 )) $(( b1 - b0 ))
    printf 'bench:   %-12s c=%-4s round %s: %8.0f req/s  p99 %7.2f ms  %s errors\n' \
        "$name" "$conns" "$round" "$rps" "$p99" "$err" >&2
}

all_traced() {   # every thread of every pid has a tracer
    local p t
    for p in "$@"; do
        for t in /proc/"$p"/task/*; do
            grep -q '^TracerPid:[[:space:]]*[1-9]' "$t/status" 2>/dev/null || return 1
        done
    done
}

run_strace() {   # name: syscalls per request, from strace -c over a short wrk run
    local name=$1 out=$TMP/strace-$1.txt wout=$TMP/wrk-strace-$1.txt sp p args=() i reqs rps p99 err total top
    check_alive "$name" "strace" || return 0
    for p in ${PIDS[$name]}; do args+=(-p "$p"); done
    strace -c -f -S calls -o "$out" "${args[@]}" 2>"$TMP/strace-$name.err" &
    sp=$!
    STARTED+=("$sp")
    for i in $(seq 50); do all_traced ${PIDS[$name]} && break; sleep 0.1; done
    sleep 0.3
    timeout $(( STRACE_S + 30 )) wrk -t1 -c"$BENCH_STRACE_CONNS" -d"${STRACE_S}s" "$(url "$name")" >"$wout" 2>&1 || true
    kill -INT "$sp" 2>/dev/null || true
    for i in $(seq 100); do alive "$sp" || break; sleep 0.1; done
    alive "$sp" && kill -KILL "$sp" 2>/dev/null
    wait "$sp" 2>/dev/null || true
    read -r reqs rps p99 err < <(parse_wrk "$wout")
    # strace -c rows: % time, seconds, usecs/call, calls, [errors], syscall.
    total=$(awk '$NF == "total" { print $4 }' "$out")
    top=$(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" && NF >= 5 { printf "%s%s=%s", sep, $NF, $4; sep = "," }' "$out" | cut -d, -f1-8)
    record strace "$name" "$BENCH_STRACE_CONNS" "$reqs" "${total:-0}" "$top" "$err"
    log "  $name: ${total:-0} syscalls for $reqs requests under strace"
}

run_idle() {   # name: RSS per idle keep-alive client connection
    local name=$1 out=$TMP/idle-$1.json pids
    check_alive "$name" "idle connections" || return 0
    case $name in floor-*) return 0 ;; esac   # an upstream connection and 32 KiB per client
    pids=$(echo ${PIDS[$name]} | tr ' ' ',')
    timeout 120 "$PY" "$BENCH_DIR/idle_conns.py" --port "${PORTS[$name]}" --pids "$pids" \
        --conns "$BENCH_IDLE_CONNS" --settle 2.5 --timeout 90 >"$out" 2>"$TMP/idle-$name.err" || true
    if [ -s "$out" ]; then
        record idle "$name" "$(oneline <"$out")"
        log "  $name: $(cat "$out")"
    else
        record idle "$name" "{\"error\": \"$(oneline <"$TMP/idle-$name.err" | tr -d '"\\')\"}"
        log "  $name: idle connection test failed: $(cat "$TMP/idle-$name.err")"
    fi
}


# ---------------------------------------------------------------- start everything
declare -A PIDS PORTS
BACKEND_PORT=$(free_ports 1)

if [ -n "${MAKELEVEL:-}" ]; then CMD="make bench"; else CMD="bench/run.sh"; fi
for v in BALLAST_BIN BENCH_ROWS $ROWS_KNOBS $FLOOR_KNOBS BENCH_ONLY BENCH_DURATION BENCH_CONNS BENCH_ROUNDS BENCH_STRACE_DURATION BENCH_STRACE_CONNS BENCH_IDLE_CONNS BALLAST_BASELINE_BIN; do
    [ -n "$(printenv "$v" || true)" ] && CMD="$v=$(printenv "$v") $CMD"
done
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no -- src Makefile 2>/dev/null || true)" ]; then
    COMMIT="$COMMIT+uncommitted-src-changes"
fi
record meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
record meta command "$CMD"
record meta commit "$COMMIT"
record meta nproc "$(nproc)"
record meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
record meta kernel "$(uname -r)"
record meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
record meta nginx "$(nginx -v 2>&1 | sed 's|.*nginx/||')"
record meta haproxy "$(haproxy -v | awk 'NR == 1 { print $3 }')"
record meta wrk "$(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')"
record meta clk_tck "$CLK_TCK"
record meta duration "$DUR_S"
record meta conns "${CONNS_LIST[*]}"
record meta rounds "$BENCH_ROUNDS"
record meta strace_duration "$STRACE_S"
record meta strace_conns "$BENCH_STRACE_CONNS"
record meta idle_conns "$BENCH_IDLE_CONNS"
record meta selected "${SELECTED[*]}"
record meta rows "${ROWS[*]}"
if [ -n "$BALLAST_BASELINE_BIN" ]; then
    record meta baseline "$BALLAST_BASELINE_BIN ($(sha256sum "$BALLAST_BASELINE_BIN" | cut -c1-12), $(date -u -r "$BALLAST_BASELINE_BIN" '+%Y-%m-%d %H:%M UTC'))"
fi
read -r CPU_ALL0 CPU_STEAL0 < <(proc_stat_cpu)

log "temp dir $TMP; backend on :$BACKEND_PORT; time budget ${BUDGET}s"
start_nginx backend "$BENCH_DIR/conf/backend.nginx.conf.in" "$BACKEND_PORT" \
    || { cat "$TMP/backend/error.log" "$TMP/backend/stdout.log" >&2 2>/dev/null || true; die "the backend nginx did not start"; }

# A row group runs its own processes (so that each one's CPU is its own group's), named
# PREFIX/NAME (tls/nginx); the http rows' have no prefix. conf/NAME-SUFFIX.* are the templates.
start_group() {   # prefix template-suffix: starts every selected proxy, fills ACTIVE
    local prefix=$1 sfx=$2 name key ok why i=0 ports
    read -r -a ports <<<"$(free_ports ${#SELECTED[@]})"
    ACTIVE=()
    for name in "${SELECTED[@]}"; do
        key=$prefix$name
        PORTS[$key]=${ports[$i]}
        i=$(( i + 1 ))
        ok=0
        if http_only "$name" && [ -n "$prefix" ]; then continue; fi
        case $name in
            nginx) start_nginx "$key" "$BENCH_DIR/conf/nginx$sfx.conf.in" "${PORTS[$key]}" && ok=1 ;;
            haproxy) start_haproxy "$key" "$BENCH_DIR/conf/haproxy$sfx.cfg.in" "${PORTS[$key]}" && ok=1 ;;
            ballast) start_ballast "$key" "$BENCH_DIR/conf/ballast$sfx.conf.in" "${PORTS[$key]}" "$BALLAST_BIN" && ok=1 ;;
            ballast-base) start_ballast "$key" "$BENCH_DIR/conf/ballast$sfx.conf.in" "${PORTS[$key]}" "$BALLAST_BASELINE_BIN" && ok=1 ;;
            ballast-uring|floor-*) start_floor "$name" "$key" "${PORTS[$key]}" && ok=1 ;;
        esac
        if (( ok )); then
            ACTIVE+=("$key")
            log "$key up on :${PORTS[$key]} (pids ${PIDS[$key]})"
        else
            why=$(proxy_log "$key" | tail -3 | oneline)
            log "SKIPPING $key: did not start or answer within ${START_TIMEOUT}s: ${why:-no output}"
            record skip "$key" "did not start or answer within ${START_TIMEOUT}s: ${why:-no output}"
            for p in ${PIDS[$key]:-}; do kill -TERM "$p" 2>/dev/null || true; done
        fi
    done
    (( ${#ACTIVE[@]} )) || log "no proxy of the ${prefix:-http/} group is running; its rows are empty"
}

stop_group() {   # stops ACTIVE's processes before the next group starts (CPU, ports, memory)
    local name p i left
    for name in "${ACTIVE[@]}"; do for p in ${PIDS[$name]}; do kill -TERM "$p" 2>/dev/null || true; done; done
    for i in $(seq 50); do
        left=0
        for name in "${ACTIVE[@]}"; do for p in ${PIDS[$name]}; do alive "$p" && left=1; done; done
        (( left )) || break
        sleep 0.1
    done
    ACTIVE=()
}

rotated() {   # k: ACTIVE rotated left by k
    local n=${#ACTIVE[@]} i
    for (( i = 0; i < n; i++ )); do printf '%s ' "${ACTIVE[$(( (i + $1) % n ))]}"; done
}

# nginx allocates (and touches) its connection and event arrays for every worker_connections
# slot at start, so the idle-connection RSS delta misses that part of nginx's per-connection
# cost. Measure it: a second, untouched nginx with 1000 slots instead of 20000.
nginx_slot_bytes() {
    local dir=$TMP/nginx-slots port master worker="" i big small
    mkdir -p "$dir"/{client_body,proxy,fastcgi,uwsgi,scgi}
    port=$(free_ports 1)
    render "$BENCH_DIR/conf/nginx.conf.in" "$dir/nginx.conf" "$port" "$dir"
    sed -i 's/worker_connections 20000;/worker_connections 1000;/' "$dir/nginx.conf"
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >/dev/null 2>&1 &
    master=$!
    STARTED+=("$master")
    for i in $(seq 50); do
        worker=$(pgrep -P "$master" | head -1 || true)
        [ -n "$worker" ] && break
        sleep 0.1
    done
    if [ -n "$worker" ]; then
        STARTED+=("$worker")
        sleep 0.5
        small=$(awk '/^VmRSS:/ { print $2 }' "/proc/$worker/status" 2>/dev/null || true)
        big=$(awk '/^VmRSS:/ { print $2 }' "/proc/${PIDS[nginx]#* }/status" 2>/dev/null || true)
        if [ -n "$small" ] && [ -n "$big" ]; then
            record meta nginx_slot_bytes $(( (big - small) * 1024 / 19000 ))
            log "nginx preallocates $(( (big - small) * 1024 / 19000 )) bytes per worker_connections slot"
        fi
    fi
    kill -TERM "$master" 2>/dev/null || true
}

warm_up() {   # wrk -c50 for WARMUP on each ACTIVE proxy
    log "warm-up: ${WARMUP} per proxy"
    for name in "${ACTIVE[@]}"; do
        check_alive "$name" warm-up && timeout 30 wrk -t1 -c50 -d"$WARMUP" "$(url "$name")" >/dev/null 2>&1 || true
    done
}

# ---------------------------------------------------------------- measure
if row_on http; then
    start_group "" ""
    if [[ " ${ACTIVE[*]} " == *" nginx "* ]]; then nginx_slot_bytes; fi

    # Idle connections first, on processes that have served almost nothing yet.
    log "idle keep-alive connections: $BENCH_IDLE_CONNS per proxy"
    for name in "${ACTIVE[@]}"; do run_idle "$name"; done

    warm_up
    k=0
    for conns in "${CONNS_LIST[@]}"; do
        for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
            log "throughput: $conns connections, round $round/$BENCH_ROUNDS"
            for name in $(rotated $k); do run_wrk "$name" "$conns" "$round"; done
            k=$(( k + 1 ))
        done
    done

    log "syscalls: strace -c over ${STRACE_S}s at $BENCH_STRACE_CONNS connections per proxy"
    for name in "${ACTIVE[@]}"; do run_strace "$name"; done
    floor_syscalls   # bench/floor.sh
    stop_group
fi
rows_edge     # tls, h2 (bench/rows.sh)
rows_stream   # stream
rows_cache    # cache (bench/cache.sh)
rows_gzip     # gzip (bench/gzip.sh)

read -r CPU_ALL1 CPU_STEAL1 < <(proc_stat_cpu)
record meta steal_pct "$(awk -v a=$(( CPU_ALL1 - CPU_ALL0 )) -v s=$(( CPU_STEAL1 - CPU_STEAL0 )) 'BEGIN { printf "%.1f", a ? 100 * s / a : 0 }')"
record meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
report_args=("$RECORDS")
[ "${BENCH_NO_RESULTS:-0}" = 1 ] || report_args+=(--results "$BENCH_RESULTS")
"$PY" "$BENCH_DIR/report.py" "${report_args[@]}"
