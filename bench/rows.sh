# The edge and L4 rows of `make bench`, sourced by bench/run.sh (which owns the process
# bookkeeping, record(), cpu_ticks(), start_group() and the report). Each row group starts its
# own ballast / nginx / HAProxy (and ballast-base) processes, measures them in rotating order
# for BENCH_ROUNDS rounds, and stops them before the next group.
#
#   tls     keep-alive TLS: wrk -c$BENCH_TLS_CONNS over HTTPS for $BENCH_TLS_DURATION (the same
#           "wrk" records, and so the same table, as the plain rows); new TLS 1.3 handshakes:
#           $BENCH_HS_CLIENTS parallel `openssl s_time -new` for $BENCH_HS_DURATION (a full
#           handshake and one GET per connection, never resumed: wrk would resume sessions on
#           reconnect where the server allows it)
#   h2      h2load -n$BENCH_H2_REQUESTS -c$BENCH_H2_CONNS -m$BENCH_H2_STREAMS over TLS (ALPN h2)
#   stream  one transfer of $BENCH_STREAM_BYTES (1 GiB) backend -> proxy -> client, and "direct"
#           without a proxy; short connections (connect, 100 bytes each way, close) one at a
#           time for $BENCH_STREAM_SECONDS; backend and clients: bench/stream.py
#   cache   cache hits against nginx's proxy_cache and HAProxy's cache: bench/cache.sh
#   gzip    gzip MB/s at levels 1 and 6 against nginx and HAProxy: bench/gzip.sh
#
# tls and h2 share one process per proxy, with one listener `ssl http2` (ECDSA P-256
# certificate, TLSv1.2 TLSv1.3) in front of the same nginx backend as the plain rows: clients
# without ALPN (wrk, s_time) get HTTP/1.1, h2load gets h2.

BENCH_TLS_CONNS=${BENCH_TLS_CONNS:-50}
BENCH_TLS_DURATION=${BENCH_TLS_DURATION:-5s}
BENCH_HS_CLIENTS=${BENCH_HS_CLIENTS:-4}
BENCH_HS_DURATION=${BENCH_HS_DURATION:-5s}
BENCH_H2_REQUESTS=${BENCH_H2_REQUESTS:-50000}
BENCH_H2_CONNS=${BENCH_H2_CONNS:-10}
BENCH_H2_STREAMS=${BENCH_H2_STREAMS:-10}
BENCH_STREAM_BYTES=${BENCH_STREAM_BYTES:-1073741824}
BENCH_STREAM_SECONDS=${BENCH_STREAM_SECONDS:-3}
ROWS_KNOBS="BENCH_TLS_CONNS BENCH_TLS_DURATION BENCH_HS_CLIENTS BENCH_HS_DURATION BENCH_H2_REQUESTS
    BENCH_H2_CONNS BENCH_H2_STREAMS BENCH_STREAM_BYTES BENCH_STREAM_SECONDS"
TLS_S=$(secs "$BENCH_TLS_DURATION")
HS_S=$(secs "$BENCH_HS_DURATION")
STREAM_S=$(secs "$BENCH_STREAM_SECONDS")
for v in BENCH_TLS_CONNS BENCH_HS_CLIENTS BENCH_H2_REQUESTS BENCH_H2_CONNS BENCH_H2_STREAMS BENCH_STREAM_BYTES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
# One bulk transfer may not take longer than this (a proxy that stalls is dropped, not waited on).
BULK_TIMEOUT=$(( 30 + BENCH_STREAM_BYTES / (50 * 1024 * 1024) ))

rows_budget() {   # seconds the selected rows may take at most, for run.sh's watchdog
    local n=${#SELECTED[@]} t=0
    if row_on tls || row_on h2; then t=$(( t + 10 + n * (2 * START_TIMEOUT + 5) )); fi
    row_on tls && t=$(( t + n * BENCH_ROUNDS * (TLS_S + 10 + HS_S + 25) ))
    row_on h2 && t=$(( t + n * (BENCH_ROUNDS + 1) * 60 ))
    row_on stream && t=$(( t + 10 + BENCH_ROUNDS * BULK_TIMEOUT
                          + n * (2 * START_TIMEOUT + BENCH_ROUNDS * (BULK_TIMEOUT + STREAM_S + 15)) ))
    row_on cache && t=$(( t + $(cache_budget) ))
    row_on gzip && t=$(( t + $(gzip_budget) ))
    echo "$t"
}

# ops ROW NAME ROUND OPS WALL_SECONDS PROXY_TICKS ERRORS: what report.py's tables for these
# rows read (OPS is bytes for the bulk row).
record_ops() { record ops "$@"; }

run_handshakes() {   # name round
    local name=$1 round=$2 hp=127.0.0.1:${PORTS[$1]} t0 t1 w0 w1 i pids=() n err=0 f
    check_alive "$name" "handshakes round $round" || return 0
    t0=$(cpu_ticks ${PIDS[$name]}); w0=$(date +%s.%N)
    for i in $(seq "$BENCH_HS_CLIENTS"); do
        f=$TMP/s_time-${name//\//-}-r$round-$i.txt
        timeout $(( HS_S + 20 )) openssl s_time -connect "$hp" -new -time "$HS_S" -www / >"$f" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || err=$(( err + 1 )); done
    w1=$(date +%s.%N); t1=$(cpu_ticks ${PIDS[$name]})
    n=$(cat "$TMP"/s_time-"${name//\//-}"-r"$round"-*.txt |
        awk '/connections in .* real seconds/ { s += $1 } END { print s + 0 }')
    record_ops hs "$name" "$round" "$n" "$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')" \
        $(( t1 - t0 )) "$err"
    log "  $name round $round: $n new TLS handshakes, $(( t1 - t0 )) ticks, $err clients failed"
}

run_h2load() {   # name round
    local name=$1 round=$2 out=$TMP/h2load-${1//\//-}-r$2.txt t0 t1 ok wall
    check_alive "$name" "h2load round $round" || return 0
    t0=$(cpu_ticks ${PIDS[$name]})
    timeout 60 h2load -n "$BENCH_H2_REQUESTS" -c "$BENCH_H2_CONNS" -m "$BENCH_H2_STREAMS" \
        "$(url "$name")" >"$out" 2>&1 || true
    t1=$(cpu_ticks ${PIDS[$name]})
    ok=$(awk '/^status codes:/ { print $3 + 0 }' "$out")
    # "finished in 290.13ms, ..." or "finished in 1.23s, ..."
    wall=$(awk '/^finished in/ { v = $3; sub(/,$/, "", v); m = (v ~ /ms$/) ? 0.001 : 1
                                 sub(/[a-z]+$/, "", v); print v * m }' "$out")
    record_ops h2 "$name" "$round" "${ok:-0}" "${wall:-0}" $(( t1 - t0 )) $(( BENCH_H2_REQUESTS - ${ok:-0} ))
    log "  $name round $round: h2load ${ok:-0} of $BENCH_H2_REQUESTS 2xx in ${wall:-?}s"
}

run_bulk() {   # name round [port]: one transfer; name "direct" runs without a proxy
    local name=$1 round=$2 port=${3:-${PORTS[$1]:-}} t0=0 t1=0 bytes secs err=0
    [ "$name" = direct ] || check_alive "$name" "bulk round $round" || return 0
    [ "$name" = direct ] || t0=$(cpu_ticks ${PIDS[$name]})
    read -r bytes secs < <(timeout "$BULK_TIMEOUT" "$PY" "$BENCH_DIR/stream.py" bulk "$port" \
        "$BENCH_STREAM_BYTES" 2>"$TMP/bulk-${name//\//-}-r$round.err" || true)
    [ "$name" = direct ] || t1=$(cpu_ticks ${PIDS[$name]})
    [ "${bytes:-0}" = "$BENCH_STREAM_BYTES" ] || err=1
    record_ops bulk "$name" "$round" "${bytes:-0}" "${secs:-0}" $(( t1 - t0 )) "$err"
    log "  $name round $round: ${bytes:-0} bytes in ${secs:-?}s"
}

run_short() {   # name round
    local name=$1 round=$2 t0 t1 n secs err
    check_alive "$name" "short connections round $round" || return 0
    t0=$(cpu_ticks ${PIDS[$name]})
    read -r n secs err < <(timeout $(( STREAM_S + 30 )) "$PY" "$BENCH_DIR/stream.py" short \
        "${PORTS[$name]}" "$STREAM_S" 2>"$TMP/short-${name//\//-}-r$round.err" || true)
    t1=$(cpu_ticks ${PIDS[$name]})
    record_ops short "$name" "$round" "${n:-0}" "${secs:-0}" $(( t1 - t0 )) "${err:-1}"
    log "  $name round $round: ${n:-0} short connections in ${secs:-?}s, ${err:-?} failed"
}

rows_edge() {   # tls and h2
    row_on tls || row_on h2 || return 0
    local d=$TMP/certs round k=0 name
    mkdir -p "$d"
    openssl req -x509 -nodes -days 2 -subj /CN=localhost -newkey ec \
        -pkeyopt ec_paramgen_curve:P-256 -keyout "$d/key.pem" -out "$d/crt.pem" 2>/dev/null \
        || die "openssl req could not make the benchmark certificate"
    cat "$d/crt.pem" "$d/key.pem" >"$d/haproxy.pem"
    record meta tls_conns "$BENCH_TLS_CONNS"
    record meta tls "wrk -t1 -c$BENCH_TLS_CONNS -d${TLS_S}s over HTTPS; $BENCH_HS_CLIENTS x openssl s_time -new -time $HS_S; h2load -n $BENCH_H2_REQUESTS -c $BENCH_H2_CONNS -m $BENCH_H2_STREAMS"
    RENDER_EXTRA=(-e "s|@LISTEN_TLS@|ssl http2|"
        -e "s|@TLS_LINES@|ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $d/crt.pem; ssl_certificate_key $d/key.pem;|"
        -e "s|@HAPROXY_TLS@|ssl crt $d/haproxy.pem alpn h2,http/1.1|")
    SCHEME=https
    start_group tls/ ""
    RENDER_EXTRA=()
    warm_up
    if row_on tls; then
        for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
            log "TLS keep-alive ($BENCH_TLS_CONNS connections) and new handshakes, round $round/$BENCH_ROUNDS"
            for name in $(rotated $k); do
                run_wrk "$name" "$BENCH_TLS_CONNS" "$round" "$TLS_S"
                run_handshakes "$name" "$round"
            done
            k=$(( k + 1 ))
        done
    fi
    if row_on h2; then
        for name in "${ACTIVE[@]}"; do   # warm-up, not recorded
            timeout 30 h2load -n $(( BENCH_H2_REQUESTS / 10 )) -c "$BENCH_H2_CONNS" -m "$BENCH_H2_STREAMS" \
                "$(url "$name")" >/dev/null 2>&1 || true
        done
        for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
            log "HTTP/2: h2load, round $round/$BENCH_ROUNDS"
            for name in $(rotated $k); do run_h2load "$name" "$round"; done
            k=$(( k + 1 ))
        done
    fi
    stop_group
    SCHEME=http
}

rows_stream() {
    row_on stream || return 0
    local BACKEND_PORT pid round k=0 name i
    record meta stream "$BENCH_STREAM_BYTES bytes per bulk transfer; short connections for ${STREAM_S}s"
    "$PY" "$BENCH_DIR/stream.py" serve --size "$BENCH_STREAM_BYTES" >"$TMP/l4-backend.port" 2>"$TMP/l4-backend.err" &
    pid=$!
    STARTED+=("$pid")
    for i in $(seq 50); do [ -s "$TMP/l4-backend.port" ] && break; sleep 0.1; done
    BACKEND_PORT=$(head -1 "$TMP/l4-backend.port")
    [[ $BACKEND_PORT =~ ^[0-9]+$ ]] || die "the L4 backend (bench/stream.py serve) did not start: $(oneline <"$TMP/l4-backend.err")"
    SCHEME=tcp
    start_group l4/ -stream
    for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
        log "L4: one $BENCH_STREAM_BYTES-byte transfer and ${STREAM_S}s of short connections, round $round/$BENCH_ROUNDS"
        run_bulk direct "$round" "$BACKEND_PORT"
        for name in $(rotated $k); do
            run_bulk "$name" "$round"
            run_short "$name" "$round"
        done
        k=$(( k + 1 ))
    done
    stop_group
    kill -TERM "$pid" 2>/dev/null || true
    SCHEME=http
}

# The cache and gzip rows (rows_cache, rows_gzip, their knobs) live in their own files, which
# also run alone as `make bench-cache` and `make bench-gzip`.
source "$BENCH_DIR/cache.sh"
source "$BENCH_DIR/gzip.sh"
