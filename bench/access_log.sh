#!/usr/bin/env bash
# Cost of access logging and trace propagation: one ballast (one worker) with a server per
# variant in front of one nginx backend (keep-alive upstream); wrk against each variant in turn,
# interleaved over rounds; CPU per request from /proc/PID/stat (utime + stime) over each run.
#
#   off       access_log off, trace_propagation off, request_id_header off
#   combined  access_log FILE (combined), ids and tracing off
#   json      access_log FILE json (13 fields, upstream ones included), ids and tracing off
#   trace     access_log off, request_id_header and trace_propagation on (the defaults)
#   all       json log + the defaults: what a typical configuration pays
#
# Environment: BENCH_DURATION=3s BENCH_CONNS=50 BENCH_ROUNDS=7 BALLAST_BIN=./ballast
# Prints a markdown table (medians over the rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-3s}
CONNS=${BENCH_CONNS:-50}
ROUNDS=${BENCH_ROUNDS:-7}
BIN=${BALLAST_BIN:-./ballast}
TMP=$(mktemp -d /tmp/bench-access-log.XXXXXX)
trap 'kill $(cat $TMP/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$TMP"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BE=$(port)
declare -A P
for v in off combined json trace all; do P[$v]=$(port); done

mkdir -p "$TMP/nginx"
cat > "$TMP/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/nginx.pid; error_log $TMP/nginx.err;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx; fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
  server { listen 127.0.0.1:$BE; location / { return 200 "hello, world\n"; } } }
NGX
nginx -p "$TMP" -c "$TMP/nginx.conf" & echo $! > "$TMP/nginx.pid"

JSON='{"time":"$time_iso8601","addr":"$remote_addr","request":"$request","status":$status,"bytes":$body_bytes_sent,"referer":"$http_referer","agent":"$http_user_agent","rt":$request_time,"upstream":"$upstream_addr","ustatus":"$upstream_status","urt":"$upstream_response_time","uct":"$upstream_connect_time","id":"$request_id"}'
cat > "$TMP/ballast.conf" <<CONF
worker_processes 1;
error_log $TMP/ballast.err;
http {
  log_format json escape=json '$JSON';
  upstream be { server 127.0.0.1:$BE; keepalive 64; }
  server { listen 127.0.0.1:${P[off]}; access_log off; trace_propagation off;
           request_id_header off; location / { proxy_pass http://be; } }
  server { listen 127.0.0.1:${P[combined]}; access_log $TMP/combined.log; trace_propagation off;
           request_id_header off; location / { proxy_pass http://be; } }
  server { listen 127.0.0.1:${P[json]}; access_log $TMP/json.log json; trace_propagation off;
           request_id_header off; location / { proxy_pass http://be; } }
  server { listen 127.0.0.1:${P[trace]}; access_log off; location / { proxy_pass http://be; } }
  server { listen 127.0.0.1:${P[all]}; access_log $TMP/all.log json;
           location / { proxy_pass http://be; } }
}
CONF
"$BIN" -c "$TMP/ballast.conf" & BPID=$!; echo $BPID > "$TMP/ballast.pid"
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:${P[all]}/" && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' /proc/$BPID/stat; }
HZ=$(getconf CLK_TCK)
declare -A RPS CPU
VARIANTS=(off combined json trace all)
for r in $(seq "$ROUNDS"); do
  # each round starts at another variant, so a burst of load elsewhere does not always fall
  # on the same one
  for k in 0 1 2 3 4; do
    v=${VARIANTS[$(( (k + r) % 5 ))]}
    wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:${P[$v]}/" >/dev/null    # warm-up
    t0=$(cpu_ticks)
    out=$(wrk -t1 -c"$CONNS" -d"$DUR" "http://127.0.0.1:${P[$v]}/")
    t1=$(cpu_ticks)
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    us=$(python3 -c "print(($t1-$t0)/$HZ*1e6/$reqs)")
    RPS[$v]+="$rps "; CPU[$v]+="$us "
  done
done
med() { python3 -c "import statistics,sys; print('%.2f' % statistics.median(map(float, sys.argv[1:])))" $1; }
base=$(med "${CPU[off]}")
echo "| variant | req/s | CPU us/req | vs off |"
echo "|---|---:|---:|---:|"
for v in off combined json trace all; do
  c=$(med "${CPU[$v]}")
  printf "| %s | %s | %s | %s |\n" "$v" "$(med "${RPS[$v]}" | cut -d. -f1)" "$c" \
    "$(python3 -c "print('%+.1f%%' % (($c/$base - 1) * 100))")"
done
lines=$(cat "$TMP"/json.log | wc -l)
echo
echo "json lines written: $lines; every one parses with jq: $(jq -c . "$TMP/json.log" >/dev/null 2>&1 && echo yes || echo NO)"
