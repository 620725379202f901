#!/usr/bin/env bash
# CPU per request of regex location matching: 50 `location ~` where the last one matches,
# against one plain `location /`, for ballast and nginx in the same run (one worker each,
# proxying to one nginx backend with upstream keep-alive; nginx with `pcre_jit on`, its
# fastest). Rounds interleave the four setups; the median of each is printed as a table and,
# unless BENCH_NO_RESULTS=1, put at the top of bench/RESULTS.md.
#
# Environment: BENCH_DURATION=5 (seconds per wrk run), BENCH_CONNS=50, BENCH_ROUNDS=3,
#              BALLAST_BIN=./ballast, BENCH_RESULTS=bench/RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${BENCH_DURATION:-5}
CONNS=${BENCH_CONNS:-50}
ROUNDS=${BENCH_ROUNDS:-3}
BALLAST_BIN=${BALLAST_BIN:-./ballast}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
NREGEX=50
CLK_TCK=$(getconf CLK_TCK)
TMP=$(mktemp -d /tmp/ballast-regex-bench.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$TMP"
}
trap cleanup EXIT
# A hang anywhere ends the run: 4 setups x ROUNDS runs plus start-up, generously.
( sleep $(( 60 + 4 * ROUNDS * (DUR + 5) )); echo "regex bench: time budget exceeded" >&2;
  kill -TERM $$ ) & PIDS+=($!)

for t in nginx wrk curl; do command -v $t >/dev/null || { echo "$t missing" >&2; exit 1; }; done
[ -x "$BALLAST_BIN" ] || { echo "$BALLAST_BIN missing (make ballast)" >&2; exit 1; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
BPORT=$(port)

nginx_main() {   # $1: dir
    mkdir -p "$1"
    printf '%s\nworker_processes 1;\ndaemon off;\nmaster_process off;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\npcre_jit on;\nevents { worker_connections 4096; }\n' \
        "$USER_LINE" "$1" "$1"
}
temp_paths() {
    for t in client_body proxy fastcgi uwsgi scgi; do printf '%s_temp_path %s/%s;\n' $t "$1" $t; done
}

# The backend: nginx answering 200.
{ nginx_main "$TMP/backend"; echo "http { access_log off; $(temp_paths "$TMP/backend")"
  echo "keepalive_requests 1000000; server { listen 127.0.0.1:$BPORT backlog=4096;"
  echo "location / { return 200 \"hello\\n\"; } } }"; } >"$TMP/backend.conf"

# The locations under test: $1 = regex | plain
locations() {
    if [ "$1" = regex ]; then
        for i in $(seq -w 1 $NREGEX); do
            echo "location ~ /svc$i/[a-z]+/item\\.json\$ { proxy_pass http://b; }"
        done
    else
        echo "location / { proxy_pass http://b; }"
    fi
}
http_body() {   # $1 regex|plain, $2 port
    echo "access_log off; keepalive_requests 1000000;"
    echo "upstream b { server 127.0.0.1:$BPORT; keepalive 64; }"
    echo "server { listen 127.0.0.1:$2 backlog=4096;"
    locations "$1"
    echo "}"
}

declare -A PORT PID
for kind in regex plain; do
    p=$(port); PORT[nginx-$kind]=$p
    { nginx_main "$TMP/nginx-$kind"; echo "http { $(temp_paths "$TMP/nginx-$kind")"
      echo "proxy_http_version 1.1; proxy_set_header Connection \"\";"
      http_body $kind "$p"; echo "}"; } >"$TMP/nginx-$kind.conf"
    p=$(port); PORT[ballast-$kind]=$p
    { echo "worker_processes 1; error_log stderr warn; events { worker_connections 4096; }"
      echo "http {"; http_body $kind "$p"; echo "}"; } >"$TMP/ballast-$kind.conf"
done

nginx -p "$TMP/backend" -c "$TMP/backend.conf" >/dev/null 2>&1 & PIDS+=($!)
for kind in regex plain; do
    nginx -p "$TMP/nginx-$kind" -c "$TMP/nginx-$kind.conf" >/dev/null 2>&1 &
    PID[nginx-$kind]=$!; PIDS+=($!)
    "$BALLAST_BIN" -c "$TMP/ballast-$kind.conf" 2>"$TMP/ballast-$kind.err" &
    PID[ballast-$kind]=$!; PIDS+=($!)
done
URL_PATH=/svc$NREGEX/abc/item.json
for s in "${!PORT[@]}"; do
    ok=0
    for _ in $(seq 50); do
        curl -fsS -o /dev/null "http://127.0.0.1:${PORT[$s]}$URL_PATH" 2>/dev/null && { ok=1; break; }
        sleep 0.1
    done
    [ $ok = 1 ] || { echo "$s did not answer" >&2; exit 1; }
done

ticks() { local f; read -r -a f <<<"$(sed 's/.*) //' "/proc/$1/stat")"; echo $(( f[11] + f[12] )); }

SETUPS=(nginx-plain ballast-plain nginx-regex ballast-regex)
declare -A RESULTS_US
for r in $(seq "$ROUNDS"); do
    for i in "${!SETUPS[@]}"; do
        s=${SETUPS[$(( (i + r) % ${#SETUPS[@]} ))]}
        t0=$(ticks "${PID[$s]}")
        out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:${PORT[$s]}$URL_PATH")
        t1=$(ticks "${PID[$s]}")
        reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
        non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
        [ -z "$non2xx" ] || { echo "$s answered non-2xx: $non2xx" >&2; exit 1; }
        us=$(awk -v t=$(( t1 - t0 )) -v n="$reqs" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
        RESULTS_US[$s]="${RESULTS_US[$s]:-} $us"
        echo "round $r $s: $reqs requests, $us us CPU/request" >&2
    done
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
table=$(
    echo "| setup | CPU µs/request (median of $ROUNDS) |"
    echo "|---|---|"
    for s in "${SETUPS[@]}"; do echo "| $s | $(median <<<"${RESULTS_US[$s]}") |"; done
)
nr=$(median <<<"${RESULTS_US[nginx-regex]}"); br=$(median <<<"${RESULTS_US[ballast-regex]}")
np=$(median <<<"${RESULTS_US[nginx-plain]}"); bp=$(median <<<"${RESULTS_US[ballast-plain]}")
summary=$(awk -v nr="$nr" -v br="$br" -v np="$np" -v bp="$bp" 'BEGIN {
    printf "ballast/nginx with %d regex locations: %.2f; regex cost over one prefix location: ballast %+.2f µs, nginx %+.2f µs", '"$NREGEX"', br / nr, br - bp, nr - np }')
echo "$table"
echo "$summary"
if [ "${BENCH_NO_RESULTS:-0}" != 1 ]; then
    section=$(printf '## %s — regex locations (bench/regex_locations.sh)\n\n%s locations `location ~ /svcNN/[a-z]+/item\\.json$`, the request matching the last; against one `location /`. One worker each, wrk -t1 -c%s -d%ss, proxying to one nginx backend with upstream keep-alive; nginx with `pcre_jit on`. CPU from /proc/PID/stat (utime+stime) over the requests wrk counted.\n\nCommand: `bench/regex_locations.sh` (BENCH_ROUNDS=%s)\n\n%s\n\n%s\n' \
        "$(date -u '+%Y-%m-%d %H:%M UTC')" "$NREGEX" "$CONNS" "$DUR" "$ROUNDS" "$table" "$summary")
    # newest first: before the first dated section
    SECTION="$section" python3 -c '
import os, sys
p = sys.argv[1]
text = open(p).read()
i = text.find("\n## ")
i = len(text) if i < 0 else i + 1
open(p, "w").write(text[:i] + os.environ["SECTION"] + "\n\n" + text[i:])' "$RESULTS"
fi
