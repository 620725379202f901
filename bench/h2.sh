#!/usr/bin/env bash
# HTTP/2 over TLS to clients, ballast against nginx in the same run (one worker each, ECDSA
# P-256 certificate, ALPN h2, proxying as HTTP/1.1 to one plain nginx backend with upstream
# keep-alive), and the HTTP/1.1 path's cost of the HTTP/2 seam against a baseline binary.
#
#   h2       h2load -n$N -c$CONNS -m$STREAMS over h2 (TLS): requests/s and proxy CPU per request
#   plain    plain HTTP/1.1 through ballast and, with BALLAST_BASELINE_BIN, through the baseline
#            (main before HTTP/2): wrk -c$CONNS, CPU per request of each
#
# Environment: BENCH_REQUESTS=100000 BENCH_CONNS=10 BENCH_STREAMS=10 BENCH_ROUNDS=3
#              BENCH_DURATION=5s (plain rows) BALLAST_BIN=./ballast BALLAST_BASELINE_BIN=(none)
# Prints markdown tables (medians over the rounds; proxies in rotating order per round).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_REQUESTS:-100000}
CONNS=${BENCH_CONNS:-10}
STREAMS=${BENCH_STREAMS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
DUR=${BENCH_DURATION:-5s}
BIN=${BALLAST_BIN:-./ballast}
BASE=${BALLAST_BASELINE_BIN:-}
TMP=$(mktemp -d /tmp/bench-h2.XXXXXX)
trap 'kill $(cat $TMP/*.pid 2>/dev/null) 2>/dev/null || true; sleep 0.3; rm -rf "$TMP"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BE=$(port); PB=$(port); PN=$(port); PBP=$(port); PBASE=$(port)

openssl req -x509 -nodes -days 2 -subj /CN=localhost -newkey ec -pkeyopt \
    ec_paramgen_curve:P-256 -keyout "$TMP/key.pem" -out "$TMP/crt.pem" 2>/dev/null

mkdir -p "$TMP/nginx"
TEMPS="client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx; fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;"
ROOT=$( [ "$(id -u)" = 0 ] && echo "user root;" || true )
cat > "$TMP/backend.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/be.pidf; error_log $TMP/be.err;
$ROOT
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  server { listen 127.0.0.1:$BE; location / { return 200 "hello from the backend\n"; } } }
NGX
nginx -p "$TMP" -c "$TMP/backend.conf" & echo $! > "$TMP/backend.pid"

# nginx 1.22 (Debian 12) spells HTTP/2 on the listen line.
cat > "$TMP/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/nx.pidf; error_log $TMP/nx.err;
$ROOT
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  upstream be { server 127.0.0.1:$BE; keepalive 256; }
  server { listen 127.0.0.1:$PN ssl http2; ssl_certificate $TMP/crt.pem;
           ssl_certificate_key $TMP/key.pem;
           location / { proxy_pass http://be; proxy_http_version 1.1;
                        proxy_set_header Connection ""; } } }
NGX
nginx -p "$TMP" -c "$TMP/nginx.conf" & echo $! > "$TMP/nginx.pid"

ballast_conf() { # PORT ssl|plain
  local tls=""
  [ "$2" = ssl ] && tls="ssl_certificate $TMP/crt.pem; ssl_certificate_key $TMP/key.pem;"
  cat <<CONF
worker_processes 1;
error_log $TMP/ballast.err;
http {
  upstream be { server 127.0.0.1:$BE; keepalive 256; }
  server { listen 127.0.0.1:$1 $([ "$2" = ssl ] && echo ssl http2); $tls access_log off;
           trace_propagation off; request_id_header off;
           location / { proxy_pass http://be; } }
}
CONF
}
ballast_conf "$PB" ssl > "$TMP/ballast-h2.conf"
"$BIN" -c "$TMP/ballast-h2.conf" & echo $! > "$TMP/ballast.pid"
ballast_conf "$PBP" plain > "$TMP/ballast-plain.conf"
"$BIN" -c "$TMP/ballast-plain.conf" & echo $! > "$TMP/ballastp.pid"
if [ -n "$BASE" ]; then
  ballast_conf "$PBASE" plain > "$TMP/ballast-base.conf"
  "$BASE" -c "$TMP/ballast-base.conf" & echo $! > "$TMP/ballastb.pid"
fi
for p in $PB $PN; do
  for i in $(seq 50); do curl -sk --http2 -o /dev/null "https://127.0.0.1:$p/" && break; sleep 0.1; done
done
for p in $PBP $([ -n "$BASE" ] && echo $PBASE); do
  for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

HZ=$(getconf CLK_TCK)
ticks() { local t=0; for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' /proc/$pid/stat))); done; echo $t; }
declare -A PID URL RPS CPU
PID[ballast]=$(cat $TMP/ballast.pid); PID[nginx]=$(cat $TMP/nginx.pid)
PID[ballast-plain]=$(cat $TMP/ballastp.pid)
URL[ballast]=https://127.0.0.1:$PB/; URL[nginx]=https://127.0.0.1:$PN/
URL[ballast-plain]=http://127.0.0.1:$PBP/
PLAIN=(ballast-plain)
if [ -n "$BASE" ]; then
  PID[ballast-base]=$(cat $TMP/ballastb.pid); URL[ballast-base]=http://127.0.0.1:$PBASE/
  PLAIN+=(ballast-base)
fi

h2() { # PROXY
  local px=$1
  h2load -n $((N / 10)) -c "$CONNS" -m "$STREAMS" "${URL[$px]}" >/dev/null 2>&1 # warm-up
  local t0; t0=$(ticks ${PID[$px]})
  local out; out=$(h2load -n "$N" -c "$CONNS" -m "$STREAMS" "${URL[$px]}")
  local t1; t1=$(ticks ${PID[$px]})
  echo "$out" | grep -q "status codes: $N 2xx" || { echo "$px: not all 2xx:" >&2; echo "$out" >&2; }
  RPS[h2.$px]+="$(echo "$out" | awk '/^finished in/ {print $4}') "
  CPU[h2.$px]+="$(python3 -c "print(($t1-$t0)/$HZ*1e6/$N)") "
}

plain() { # PROXY
  local px=$1
  wrk -t1 -c50 -d1s "${URL[$px]}" >/dev/null 2>&1
  local t0; t0=$(ticks ${PID[$px]})
  local out; out=$(wrk -t1 -c50 -d"$DUR" "${URL[$px]}")
  local t1; t1=$(ticks ${PID[$px]})
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  RPS[plain.$px]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
  CPU[plain.$px]+="$(python3 -c "print(($t1-$t0)/$HZ*1e6/max($reqs,1))") "
}

H2P=(ballast nginx)
for r in $(seq "$ROUNDS"); do
  for k in 0 1; do h2 "${H2P[$(( (k + r) % 2 ))]}"; done
  for k in $(seq 0 $(( ${#PLAIN[@]} - 1 ))); do
    plain "${PLAIN[$(( (k + r) % ${#PLAIN[@]} ))]}"
  done
done

med() { python3 -c "import statistics,sys; print('%.2f' % statistics.median(map(float, sys.argv[1:])))" $1; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
echo "HTTP/2 over TLS, one worker each, ECDSA P-256, h2load -n $N -c $CONNS -m $STREAMS, $ROUNDS rounds (medians):"
echo
echo "| proxy | req/s | CPU us/req | vs nginx |"
echo "|---|---:|---:|---:|"
nk=$(med "${CPU[h2.nginx]}")
for px in "${H2P[@]}"; do
  k=$(med "${CPU[h2.$px]}")
  printf "| %s | %s | %s | %s |\n" "$px" "$(med "${RPS[h2.$px]}" | cut -d. -f1)" "$k" "$(ratio "$k" "$nk")"
done
echo
echo "Plain HTTP/1.1 keep-alive (wrk -c50, $DUR), the HTTP/2 seam's cost:"
echo
echo "| binary | req/s | CPU us/req |"
echo "|---|---:|---:|"
for px in "${PLAIN[@]}"; do
  printf "| %s | %s | %s |\n" "$px" "$(med "${RPS[plain.$px]}" | cut -d. -f1)" "$(med "${CPU[plain.$px]}")"
done
