# The floor of issue 14 in make bench's plain HTTP rows, sourced by bench/run.sh (which owns
# the process bookkeeping, render(), answers(), record() and the report).
#
# Three more proxies join the `http` group (never tls, h2 or stream), measured interleaved with
# ballast, nginx and HAProxy in the same rounds:
#   ballast-uring  ballast with `use io_uring;` in the events block of conf/ballast.conf.in
#   floor-epoll    build/bench/floor_relay ... epoll: no parsing, one upstream connection per
#   floor-uring    client, made at accept (bench/floor_relay.c); ... io_uring
# ballast is compared with floor-epoll, ballast-uring with floor-uring (report.py and
# floor_report.py: a "CPU vs floor" column, a table against the floor, the 5% target).
#
# After the strace pass, floor_syscalls counts every active proxy's syscalls per request at
# each BENCH_CONNS count: perf stat (raw_syscalls:sys_enter, all threads) over a wrk run of
# BENCH_STRACE_DURATION of its own, so the measured runs stay unobserved and io_uring's
# batching is not distorted as under strace. The count includes setting up the connections
# (about ten syscalls per connection for the floor: a few hundredths of a syscall per request).
#
#   BENCH_FLOOR=1       0: leave the three out (they are in by default when BENCH_ONLY is unset;
#                       BENCH_ONLY may name them)
#   FLOOR_BIN=build/bench/floor_relay   built by `make bench` (or here, with make, if missing)

BENCH_FLOOR=${BENCH_FLOOR:-1}
FLOOR_BIN=${FLOOR_BIN:-build/bench/floor_relay}
FLOOR_KNOBS="BENCH_FLOOR FLOOR_BIN"

http_only() { case $1 in ballast-uring|floor-epoll|floor-uring) return 0 ;; esac; return 1; }

floor_select() {   # adds the three to SELECTED for a default run with the http row
    [ "$BENCH_FLOOR" != 0 ] && [ -z "$BENCH_ONLY_GIVEN" ] && row_on http || return 0
    SELECTED+=(ballast-uring floor-epoll floor-uring)
}

floor_budget() {   # seconds floor_syscalls may take
    [ "$BENCH_FLOOR" != 0 ] && row_on http || { echo 0; return; }
    echo $(( ${#SELECTED[@]} * NLEVELS * (STRACE_S + 10) ))
}

start_floor() {   # name key port: start_group's case for the http-only proxies
    local name=$1 key=$2 port=$3 dir=$TMP/$2 pid
    mkdir -p "$dir"
    case $name in
        ballast-uring)
            render "$BENCH_DIR/conf/ballast.conf.in" "$dir/ballast.conf" "$port" "$dir"
            sed -i '/^events {/a\    use io_uring;' "$dir/ballast.conf"
            "$BALLAST_BIN" -c "$dir/ballast.conf" >"$dir/proxy.log" 2>&1 &
            ;;
        floor-epoll|floor-uring)
            if [ ! -x "$FLOOR_BIN" ] && [ "$FLOOR_BIN" = build/bench/floor_relay ]; then
                make -s build/bench/floor_relay >"$dir/proxy.log" 2>&1 || true
            fi
            if [ ! -x "$FLOOR_BIN" ]; then
                echo "$FLOOR_BIN not built (make build/bench/floor_relay)" >>"$dir/proxy.log"
                return 1
            fi
            local mode=epoll
            [ "$name" = floor-uring ] && mode=io_uring
            "$FLOOR_BIN" "$port" "127.0.0.1:$BACKEND_PORT" "$mode" >"$dir/proxy.log" 2>&1 &
            ;;
    esac
    pid=$!
    STARTED+=("$pid")
    PIDS[$key]=$pid
    answers "$port" "$pid" || return 1
    # A refused io_uring would measure epoll twice under two names.
    if [ "$name" = ballast-uring ] && grep -q "using epoll" "$dir/proxy.log"; then
        kill -TERM "$pid" 2>/dev/null || true
        return 1
    fi
}

floor_syscalls() {   # syscalls per request of every ACTIVE proxy at each BENCH_CONNS count
    [ "$BENCH_FLOOR" != 0 ] || return 0
    if ! command -v perf >/dev/null || ! perf stat -e raw_syscalls:sys_enter -x, -- true >/dev/null 2>&1; then
        log "perf cannot count syscalls here: no syscalls per request by connection count"
        record meta floor_perf "perf stat cannot count raw_syscalls:sys_enter here"
        return 0
    fi
    local conns name out pp reqs rps p99 err n i
    log "syscalls: perf stat over ${STRACE_S}s at ${CONNS_LIST[*]} conns per proxy"
    for conns in "${CONNS_LIST[@]}"; do
        for name in "${ACTIVE[@]}"; do
            check_alive "$name" "perf stat -c$conns" || continue
            out=$TMP/perf-$name-c$conns
            perf stat -e raw_syscalls:sys_enter -x, -o "$out.perf" \
                -p "$(echo ${PIDS[$name]} | tr ' ' ',')" >/dev/null 2>&1 &
            pp=$!
            STARTED+=("$pp")
            sleep 0.3
            timeout $(( STRACE_S + 30 )) wrk -t1 -c"$conns" -d"${STRACE_S}s" "$(url "$name")" >"$out.wrk" 2>&1 || true
            kill -INT "$pp" 2>/dev/null || true
            for i in $(seq 50); do alive "$pp" || break; sleep 0.1; done
            wait "$pp" 2>/dev/null || true
            n=$(awk -F, '/raw_syscalls/ { print $1 }' "$out.perf" 2>/dev/null)
            [[ $n =~ ^[0-9]+$ ]] || n=0
            read -r reqs rps p99 err < <(parse_wrk "$out.wrk")
            record perf "$name" "$conns" "$reqs" "$n"
            log "  $name c=$conns: $n syscalls for $reqs requests"
        done
    done
}
