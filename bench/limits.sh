#!/bin/bash
# limit_req's cost end to end: ballast (one worker, upstream keep-alive to one nginx backend)
# with and without a limit_req that never rejects (one key, a rate far above what wrk sends),
# interleaved rounds in one run; req/s from wrk, CPU per request from /proc/PID/stat.
# Prints a table. Knobs: BALLAST_BIN (./ballast), DUR (5), ROUNDS (3), CONNS (50).
set -eu
BIN=${BALLAST_BIN:-./ballast}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
DIR=$(mktemp -d /tmp/ballast-limits-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BP=$(port); P0=$(port); P1=$(port)
cat >"$DIR/backend.conf" <<EOC
daemon off; master_process off; worker_processes 1; pid $DIR/nginx.pid; error_log $DIR/nginx.err;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 1024; }
http { access_log off;
  client_body_temp_path $DIR/cb; proxy_temp_path $DIR/pt; fastcgi_temp_path $DIR/ft;
  uwsgi_temp_path $DIR/ut; scgi_temp_path $DIR/st;
  server { listen 127.0.0.1:$BP; keepalive_requests 100000; location / { return 200 "hello from the backend\n"; } } }
EOC
nginx -p "$DIR" -c "$DIR/backend.conf" & pids+=($!)
mk() {   # port, extra http lines, extra location lines
    cat <<EOC
worker_processes 1;
error_log $DIR/ballast-\$1.err;
http {
    access_log off;
    $2
    upstream be { server 127.0.0.1:$BP; keepalive 64; }
    server { listen 127.0.0.1:$1; location / { $3 proxy_pass http://be; } }
}
EOC
}
mk "$P0" "" "" >"$DIR/off.conf"
mk "$P1" 'limit_req_zone $binary_remote_addr zone=one:10m rate=100000000r/s;' \
   'limit_req zone=one burst=1000000 nodelay;' >"$DIR/on.conf"
"$BIN" -c "$DIR/off.conf" & B0=$!; pids+=($B0)
"$BIN" -c "$DIR/on.conf" & B1=$!; pids+=($B1)
sleep 1
for p in $P0 $P1; do curl -sf "http://127.0.0.1:$p/" >/dev/null; done
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A RPS CPU
for r in $(seq 1 "$ROUNDS"); do
    order="off on"; [ $((r % 2)) = 0 ] && order="on off"
    for name in $order; do
        if [ $name = off ]; then p=$P0; pid=$B0; else p=$P1; pid=$B1; fi
        c0=$(cpu $pid)
        out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:$p/")
        c1=$(cpu $pid)
        reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
        rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
        non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
        [ -n "$non2xx" ] && echo "warning: $name round $r: $non2xx non-2xx answers" >&2
        us=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", c / hz * 1e6 / n }')
        RPS[$name]="${RPS[$name]:-} $rps"; CPU[$name]="${CPU[$name]:-} $us"
        echo "round $r $name: $rps req/s, $us us CPU/req"
    done
done
med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
echo "| limit_req | req/s (median) | CPU us/req (median) |"
echo "|---|---:|---:|"
for name in off on; do
    echo "| $name | $(echo ${RPS[$name]} | med) | $(echo ${CPU[$name]} | med) |"
done
