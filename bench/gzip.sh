#!/usr/bin/env bash
# The `gzip` rows of `make bench`: gzip compression through ballast, nginx and HAProxy (and
# ballast-base) in the same run. One origin nginx serves a 1 MiB text file (numbered lines)
# uncompressed; for each level in BENCH_GZIP_LEVELS (1 and 6) every proxy runs in its own
# process with `gzip on; gzip_types text/plain; gzip_comp_level LEVEL` (HAProxy: `compression
# algo gzip`, `compression type text/plain`, `tune.comp.maxlevel LEVEL`; conf/*-gzip.*.in),
# upstream keep-alive, one worker. Each proxy's answer is checked first (Content-Encoding:
# gzip, gunzips to the file; its size is the compressed bytes per response), then wrk -t1
# -c$BENCH_GZIP_CONNS -H 'Accept-Encoding: gzip' for BENCH_GZIP_DURATION, BENCH_ROUNDS rounds
# in rotating order.
#
#   out MB/s            compressed megabytes (10^6) sent per second of wall time
#   out MB per CPU s    compressed megabytes per second of the proxy's own CPU (user + system):
#                       the figure that survives a shared machine best
#   in MB per CPU s     the same in uncompressed (input) megabytes: the compressor's speed
#
# Debian's HAProxy 2.6 is built with libslz, not zlib (haproxy -vv: USE_SLZ, -ZLIB): slz has
# one level (HAProxy passes !!level), so its rows at every level measure the same compressor,
# faster and with a larger output than zlib's level 1.
#
# Sourced by bench/rows.sh (run.sh owns the processes, records and the report). Run directly
# (`make bench-gzip`), it is `BENCH_ROWS=gzip bench/run.sh` printing its tables without
# touching RESULTS.md, and takes its old knobs: BENCH_DURATION=5s BENCH_CONNS=4
# BENCH_ROUNDS=3 BALLAST_BIN=./ballast.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cd "$(dirname "$0")/.."
    export BENCH_GZIP_DURATION=${BENCH_GZIP_DURATION:-${BENCH_DURATION:-5s}}
    export BENCH_GZIP_CONNS=${BENCH_GZIP_CONNS:-${BENCH_CONNS:-4}}
    export BENCH_ROUNDS=${BENCH_ROUNDS:-3} BENCH_NO_RESULTS=${BENCH_NO_RESULTS:-1}
    unset BENCH_DURATION BENCH_CONNS
    BENCH_ROWS=gzip exec bench/run.sh
fi

BENCH_GZIP_DURATION=${BENCH_GZIP_DURATION:-5s}
BENCH_GZIP_CONNS=${BENCH_GZIP_CONNS:-4}
BENCH_GZIP_LEVELS=${BENCH_GZIP_LEVELS:-1,6}
ROWS_KNOBS="$ROWS_KNOBS BENCH_GZIP_DURATION BENCH_GZIP_CONNS BENCH_GZIP_LEVELS"
GZIP_S=$(secs "$BENCH_GZIP_DURATION")
[[ $BENCH_GZIP_CONNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_GZIP_CONNS must be a positive integer"
IFS=', ' read -r -a GZIP_LEVELS <<<"$BENCH_GZIP_LEVELS"
for v in "${GZIP_LEVELS[@]}"; do
    [[ $v =~ ^[1-9]$ ]] || die "BENCH_GZIP_LEVELS: '$v' is not a gzip level from 1 to 9"
done

gzip_budget() {   # seconds the gzip rows may take at most
    echo $(( 20 + ${#GZIP_LEVELS[@]} * ${#SELECTED[@]} * (2 * START_TIMEOUT + 15 + BENCH_ROUNDS * (GZIP_S + 35)) ))
}

declare -A GZIP_BYTES   # proxy (gzip1/nginx) -> compressed bytes of one response

gzip_check() {   # name: the answer is gzip and gunzips to the file; sets GZIP_BYTES[name]
    local name=$1 d=$TMP/gzip/check-${1//\//-} why=""
    mkdir -p "$d"
    curl -s --max-time 10 -H 'Accept-Encoding: gzip' -D "$d/head" -o "$d/body.gz" \
        "$(url "$name")page.txt" || true
    if ! tr -d '\r' <"$d/head" | grep -qi '^content-encoding: *gzip$'; then
        why="answer without Content-Encoding: gzip"
    elif ! gunzip -c "$d/body.gz" 2>/dev/null | cmp -s - "$TMP/gzip/www/page.txt"; then
        why="the answer does not gunzip to the file"
    else
        GZIP_BYTES[$name]=$(stat -c %s "$d/body.gz")
        return 0
    fi
    record fail "$name" "gzip check" "$why"
    log "$name: $why; dropping it"
    stop_proxy "$name"
    return 1
}

gzip_run() {   # name round level: recorded as ops row "gzipLEVEL", compressed bytes per response last
    local name=$1 round=$2 level=$3 out=$TMP/wrk-${1//\//-}-r$2.txt t0 t1 reqs rps p99 err
    check_alive "$name" "gzip round $round" || return 0
    t0=$(cpu_ticks ${PIDS[$name]})
    timeout $(( GZIP_S + 30 )) wrk -t1 -c"$BENCH_GZIP_CONNS" -d"${GZIP_S}s" -H 'Accept-Encoding: gzip' \
        "$(url "$name")page.txt" >"$out" 2>&1 || true
    t1=$(cpu_ticks ${PIDS[$name]})
    read -r reqs rps p99 err < <(parse_wrk "$out")
    record_ops "gzip$level" "$name" "$round" "$reqs" "$(awk -v n="$reqs" -v r="$rps" 'BEGIN { printf "%.3f", (r > 0 ? n / r : 0) }')" \
        $(( t1 - t0 )) "$err" "${GZIP_BYTES[$name]}"
    log "  $name round $round: $reqs responses at $rps/s, $(( t1 - t0 )) ticks, $err errors"
}

rows_gzip() {
    row_on gzip || return 0
    local BACKEND_PORT round k=0 name level
    mkdir -p "$TMP/gzip/www"
    "$PY" - "$TMP/gzip/www/page.txt" <<'EOF'
import sys
lines = [b"line %08d: the quick brown fox jumps over the lazy dog %d\n" % (i, i * 7919)
         for i in range(20000)]
open(sys.argv[1], "wb").write(b"".join(lines)[:1 << 20])
EOF
    record meta gzip_in_bytes "$(stat -c %s "$TMP/gzip/www/page.txt")"
    record meta gzip_levels "${GZIP_LEVELS[*]}"
    record meta gzip "a 1 MiB text file (numbered lines), gzip_types text/plain, \`wrk -t1 -c$BENCH_GZIP_CONNS -d${GZIP_S}s -H 'Accept-Encoding: gzip'\`"
    BACKEND_PORT=$(free_ports 1)
    RENDER_EXTRA=(-e "s|@WWW@|$TMP/gzip/www|")
    start_nginx gzip/origin "$BENCH_DIR/conf/backend-gzip.nginx.conf.in" "$BACKEND_PORT" \
        || die "the gzip rows' origin nginx did not start: $(cat "$TMP/gzip/origin/error.log" 2>/dev/null | tail -2 | oneline)"
    for level in "${GZIP_LEVELS[@]}"; do
        RENDER_EXTRA=(-e "s|@GZIP_LEVEL@|$level|")
        start_group "gzip$level/" -gzip
        RENDER_EXTRA=()
        for name in "${ACTIVE[@]}"; do gzip_check "$name" || true; done
        for name in "${ACTIVE[@]}"; do   # warm-up, not recorded
            timeout 30 wrk -t1 -c"$BENCH_GZIP_CONNS" -d"$WARMUP" -H 'Accept-Encoding: gzip' \
                "$(url "$name")page.txt" >/dev/null 2>&1 || true
        done
        for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
            log "gzip level $level: $BENCH_GZIP_CONNS connections, round $round/$BENCH_ROUNDS"
            for name in $(rotated $k); do gzip_run "$name" "$round" "$level"; done
            k=$(( k + 1 ))
        done
        stop_group
    done
    for p in ${PIDS[gzip/origin]}; do kill -TERM "$p" 2>/dev/null || true; done
}
