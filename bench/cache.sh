#!/usr/bin/env bash
# The `cache` rows of `make bench`: cache hits, ballast's proxy_cache against nginx's
# proxy_cache and HAProxy's `cache` (and ballast-base) in the same run. One worker each, in front
# of one origin nginx that serves a BENCH_CACHE_SIZE-byte file with Cache-Control:
# max-age=3600 and logs every request; each proxy has its own cache in its own temp dir
# (conf/*-cache.*.in). The URL is fetched once (miss, fills), a second GET must not reach the
# origin (else the proxy is dropped), then wrk -t1 -c$BENCH_CACHE_CONNS asks for it for
# BENCH_CACHE_DURATION, BENCH_ROUNDS rounds in rotating order.
#
#   hits/s       wrk's requests per second of wall time
#   CPU us/hit   the proxy's own CPU (user + system, all its processes) per hit: the figure that
#                survives a shared machine best
#   errors       non-2xx answers, socket errors, and requests that reached the origin during the
#                measured run (misses: there should be none)
#
# With BENCH_CACHE_MISS=1 (the default) the miss path follows: the same wrk with a new URL per
# request (cache_miss.lua; the origin answers every /miss/ URL with the object), so each
# request goes to the origin and its answer is stored: misses/s and CPU us/miss, no target.
#
# Sourced by bench/rows.sh (run.sh owns the processes, records and the report). Run directly
# (`make bench-cache`), it is `BENCH_ROWS=cache bench/run.sh` printing its tables without
# touching RESULTS.md, and takes its old knobs: BENCH_DURATION=5s BENCH_CONNS=50
# BENCH_ROUNDS=3 BENCH_SIZE=4096 BALLAST_BIN=./ballast.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cd "$(dirname "$0")/.."
    export BENCH_CACHE_DURATION=${BENCH_CACHE_DURATION:-${BENCH_DURATION:-5s}}
    export BENCH_CACHE_CONNS=${BENCH_CACHE_CONNS:-${BENCH_CONNS:-50}}
    export BENCH_CACHE_SIZE=${BENCH_CACHE_SIZE:-${BENCH_SIZE:-4096}}
    export BENCH_ROUNDS=${BENCH_ROUNDS:-3} BENCH_NO_RESULTS=${BENCH_NO_RESULTS:-1}
    unset BENCH_DURATION BENCH_CONNS BENCH_SIZE
    BENCH_ROWS=cache exec bench/run.sh
fi

BENCH_CACHE_DURATION=${BENCH_CACHE_DURATION:-5s}
BENCH_CACHE_CONNS=${BENCH_CACHE_CONNS:-50}
BENCH_CACHE_SIZE=${BENCH_CACHE_SIZE:-4096}
BENCH_CACHE_MISS=${BENCH_CACHE_MISS:-1}
ROWS_KNOBS="$ROWS_KNOBS BENCH_CACHE_DURATION BENCH_CACHE_CONNS BENCH_CACHE_SIZE BENCH_CACHE_MISS"
CACHE_S=$(secs "$BENCH_CACHE_DURATION")
for v in BENCH_CACHE_CONNS BENCH_CACHE_SIZE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[[ $BENCH_CACHE_MISS =~ ^[01]$ ]] || die "BENCH_CACHE_MISS must be 0 or 1"

cache_budget() {   # seconds the cache rows may take at most
    echo $(( 20 + ${#SELECTED[@]} * (2 * START_TIMEOUT + 10 + (1 + BENCH_CACHE_MISS) * BENCH_ROUNDS * (CACHE_S + 35)) ))
}

cache_origin_requests() { wc -l <"$TMP/cache/origin/access.log" 2>/dev/null || echo 0; }

cache_fill() {   # name: one GET fills the cache, the next must not reach the origin
    local name=$1 u=$SCHEME://127.0.0.1:${PORTS[$1]}/obj.bin n0 n1
    curl -s -o /dev/null --max-time 5 "$u" || true
    n0=$(cache_origin_requests)
    curl -s -o "$TMP/cache/check.bin" --max-time 5 "$u" || true
    n1=$(cache_origin_requests)
    if ! cmp -s "$TMP/cache/check.bin" "$TMP/cache/www/obj.bin"; then
        record fail "$name" "cache fill" "the second GET did not return the file"
    elif [ "$n1" != "$n0" ]; then
        record fail "$name" "cache fill" "the second GET reached the origin: not cached"
    else
        return 0
    fi
    log "$name: does not answer from its cache; dropping it"
    stop_proxy "$name"
    return 1
}

cache_run() {   # name round [miss]: wrk on the cached URL (ops row "cache"), or on new URLs
    local name=$1 round=$2 miss=${3:-} out=$TMP/wrk-${1//\//-}-r$2${3:+-miss}.txt t0 t1 n0 n1 reqs rps p99 err
    local args=("$SCHEME://127.0.0.1:${PORTS[$name]}/obj.bin")
    [ -n "$miss" ] && args=(-s "$BENCH_DIR/cache_miss.lua" "$SCHEME://127.0.0.1:${PORTS[$name]}/" "/miss/r$round-")
    check_alive "$name" "cache round $round${miss:+ (misses)}" || return 0
    n0=$(cache_origin_requests); t0=$(cpu_ticks ${PIDS[$name]})
    timeout $(( CACHE_S + 30 )) wrk -t1 -c"$BENCH_CACHE_CONNS" -d"${CACHE_S}s" "${args[@]}" >"$out" 2>&1 || true
    t1=$(cpu_ticks ${PIDS[$name]}); n1=$(cache_origin_requests)
    read -r reqs rps p99 err < <(parse_wrk "$out")
    # hits: a request that reached the origin is an error; misses: all of them must
    # (wrk may stop with up to -c requests sent and not counted)
    if [ -n "$miss" ]; then
        (( n1 - n0 >= reqs )) || err=$(( err + reqs - (n1 - n0) ))
    else
        err=$(( err + n1 - n0 ))
    fi
    record_ops "cache${miss:+_miss}" "$name" "$round" "$reqs" "$(awk -v n="$reqs" -v r="$rps" 'BEGIN { printf "%.3f", (r > 0 ? n / r : 0) }')" \
        $(( t1 - t0 )) "$err"
    log "  $name round $round: $reqs $( [ -n "$miss" ] && echo misses || echo hits ) at $rps/s, $(( t1 - t0 )) ticks, $(( n1 - n0 )) reached the origin, $err errors"
}

rows_cache() {
    row_on cache || return 0
    local BACKEND_PORT round k=0 name
    mkdir -p "$TMP/cache/www"
    head -c "$BENCH_CACHE_SIZE" /dev/urandom >"$TMP/cache/www/obj.bin"
    record meta cache "one ${BENCH_CACHE_SIZE}-byte object (Cache-Control: max-age=3600), \`wrk -t1 -c$BENCH_CACHE_CONNS -d${CACHE_S}s\`"
    BACKEND_PORT=$(free_ports 1)
    RENDER_EXTRA=(-e "s|@WWW@|$TMP/cache/www|")
    start_nginx cache/origin "$BENCH_DIR/conf/backend-cache.nginx.conf.in" "$BACKEND_PORT" \
        || die "the cache rows' origin nginx did not start: $(cat "$TMP/cache/origin/error.log" 2>/dev/null | tail -2 | oneline)"
    RENDER_EXTRA=()
    start_group cache/ -cache
    for name in "${ACTIVE[@]}"; do cache_fill "$name" || true; done
    for name in "${ACTIVE[@]}"; do   # warm-up, not recorded
        timeout 30 wrk -t1 -c"$BENCH_CACHE_CONNS" -d"$WARMUP" "$(url "$name")obj.bin" >/dev/null 2>&1 || true
    done
    for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
        log "cache hits: ${BENCH_CACHE_SIZE}-byte object, $BENCH_CACHE_CONNS connections, round $round/$BENCH_ROUNDS"
        for name in $(rotated $k); do cache_run "$name" "$round"; done
        k=$(( k + 1 ))
    done
    (( BENCH_CACHE_MISS )) && for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
        log "cache misses: a new URL per request, $BENCH_CACHE_CONNS connections, round $round/$BENCH_ROUNDS"
        for name in $(rotated $k); do cache_run "$name" "$round" miss; done
        k=$(( k + 1 ))
    done
    stop_group
    for p in ${PIDS[cache/origin]}; do kill -TERM "$p" 2>/dev/null || true; done
}
