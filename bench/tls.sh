#!/usr/bin/env bash
# TLS to clients, ballast against nginx and HAProxy in the same run (one worker / thread each,
# ECDSA P-256 certificate, proxying to one plain nginx backend with upstream keep-alive), and
# the cost of the transport seam on plain HTTP against a baseline binary.
#
#   ka       keep-alive TLS: wrk -c$CONNS over HTTPS, requests/s and proxy CPU per request
#   hs       new TLS 1.3 handshakes: $HS_CONNS parallel `openssl s_time -new` (a full handshake
#            and one GET per connection, never resumed; wrk is not used here because it resumes
#            sessions on reconnect where the server allows it), handshakes/s and CPU per one
#   plain    plain HTTP through ballast and, with BALLAST_BASELINE_BIN, through the baseline
#            (main before the seam): CPU per request of each, to show the seam costs nothing
#
# Environment: BENCH_DURATION=5s BENCH_CONNS=50 BENCH_HS_CONNS=4 BENCH_ROUNDS=3
#              BALLAST_BIN=./ballast BALLAST_BASELINE_BIN=(none)
# Prints markdown tables (medians over the rounds; proxies in rotating order per round).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-5s}
CONNS=${BENCH_CONNS:-50}
HS_CONNS=${BENCH_HS_CONNS:-4}
ROUNDS=${BENCH_ROUNDS:-3}
BIN=${BALLAST_BIN:-./ballast}
BASE=${BALLAST_BASELINE_BIN:-}
TMP=$(mktemp -d /tmp/bench-tls.XXXXXX)
trap 'kill $(cat $TMP/*.pid 2>/dev/null) 2>/dev/null || true; sleep 0.3; rm -rf "$TMP"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BE=$(port); PB=$(port); PN=$(port); PH=$(port); PBP=$(port); PBASE=$(port)

openssl req -x509 -nodes -days 2 -subj /CN=localhost -newkey ec -pkeyopt \
    ec_paramgen_curve:P-256 -keyout "$TMP/key.pem" -out "$TMP/crt.pem" 2>/dev/null
cat "$TMP/crt.pem" "$TMP/key.pem" > "$TMP/haproxy.pem"

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

cat > "$TMP/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/nx.pidf; error_log $TMP/nx.err;
$ROOT
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  upstream be { server 127.0.0.1:$BE; keepalive 256; }
  server { listen 127.0.0.1:$PN ssl; ssl_certificate $TMP/crt.pem; ssl_certificate_key $TMP/key.pem;
           location / { proxy_pass http://be; proxy_http_version 1.1;
                        proxy_set_header Connection ""; } } }
NGX
nginx -p "$TMP" -c "$TMP/nginx.conf" & echo $! > "$TMP/nginx.pid"

cat > "$TMP/haproxy.cfg" <<HA
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:$PH ssl crt $TMP/haproxy.pem
  default_backend b
backend b
  server s1 127.0.0.1:$BE
HA
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.err" 2>&1 & echo $! > "$TMP/haproxy.pid"

ballast_conf() { # PORT SSL
  local tls=""
  [ "$2" = ssl ] && tls="ssl_certificate $TMP/crt.pem; ssl_certificate_key $TMP/key.pem;"
  cat <<CONF
worker_processes 1;
error_log $TMP/ballast.err;
http {
  upstream be { server 127.0.0.1:$BE; keepalive 256; }
  server { listen 127.0.0.1:$1 $([ "$2" = ssl ] && echo ssl); $tls access_log off;
           trace_propagation off; request_id_header off;
           location / { proxy_pass http://be; } }
}
CONF
}
# TLS and plain ballast are separate processes so that each one's CPU is its own.
ballast_conf "$PB" ssl > "$TMP/ballast-tls.conf"
"$BIN" -c "$TMP/ballast-tls.conf" & echo $! > "$TMP/ballast.pid"
ballast_conf "$PBP" plain > "$TMP/ballast-plain.conf"
"$BIN" -c "$TMP/ballast-plain.conf" & echo $! > "$TMP/ballastp.pid"
if [ -n "$BASE" ]; then
  ballast_conf "$PBASE" plain > "$TMP/ballast-base.conf"
  "$BASE" -c "$TMP/ballast-base.conf" & echo $! > "$TMP/ballastb.pid"
fi
for p in $PB $PN $PH; do
  for i in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$p/" && break; sleep 0.1; done
done
for p in $PBP $([ -n "$BASE" ] && echo $PBASE); do
  for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

HZ=$(getconf CLK_TCK)
ticks() { local t=0; for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' /proc/$pid/stat))); done; echo $t; }
declare -A PID URL RPS CPU
PID[ballast]=$(cat $TMP/ballast.pid); PID[nginx]=$(cat $TMP/nginx.pid); PID[haproxy]=$(cat $TMP/haproxy.pid)
PID[ballast-plain]=$(cat $TMP/ballastp.pid)
URL[ballast]=https://127.0.0.1:$PB/; URL[nginx]=https://127.0.0.1:$PN/; URL[haproxy]=https://127.0.0.1:$PH/
URL[ballast-plain]=http://127.0.0.1:$PBP/
PLAIN=(ballast-plain)
if [ -n "$BASE" ]; then
  PID[ballast-base]=$(cat $TMP/ballastb.pid); URL[ballast-base]=http://127.0.0.1:$PBASE/
  PLAIN+=(ballast-base)
fi

measure() { # KEY PROXY CONNS [wrk args...]
  local key=$1 px=$2 c=$3; shift 3
  wrk -t1 -c"$c" -d1s "$@" "${URL[$px]}" >/dev/null 2>&1 # warm-up
  local t0; t0=$(ticks ${PID[$px]})
  local out; out=$(wrk -t1 -c"$c" -d"$DUR" "$@" "${URL[$px]}")
  local t1; t1=$(ticks ${PID[$px]})
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  RPS[$key.$px]+="$rps "
  CPU[$key.$px]+="$(python3 -c "print(($t1-$t0)/$HZ*1e6/max($reqs,1))") "
}

handshakes() { # PROXY
  local px=$1 secs=${DUR%s} hp=${URL[$px]#https://}
  hp=${hp%/}
  local t0; t0=$(ticks ${PID[$px]})
  local start; start=$(date +%s.%N)
  local pids=""
  for i in $(seq "$HS_CONNS"); do
    timeout $((secs + 20)) openssl s_time -connect "$hp" -new -time "$secs" -www / \
      > "$TMP/st.$i" 2>&1 &
    pids="$pids $!"
  done
  wait $pids
  local end; end=$(date +%s.%N)
  local t1; t1=$(ticks ${PID[$px]})
  local n; n=$(cat "$TMP"/st.* | awk '/connections in .* real seconds/ {s += $1} END {print s + 0}')
  RPS[hs.$px]+="$(python3 -c "print($n / ($end - $start))") "
  CPU[hs.$px]+="$(python3 -c "print(($t1-$t0)/$HZ*1e6/max($n,1))") "
}

TLSP=(ballast nginx haproxy)
for r in $(seq "$ROUNDS"); do
  for k in 0 1 2; do
    px=${TLSP[$(( (k + r) % 3 ))]}
    measure ka "$px" "$CONNS"
    handshakes "$px"
  done
  for k in $(seq 0 $(( ${#PLAIN[@]} - 1 ))); do
    px=${PLAIN[$(( (k + r) % ${#PLAIN[@]} ))]}
    measure plain "$px" "$CONNS"
  done
done

med() { python3 -c "import statistics,sys; print('%.2f' % statistics.median(map(float, sys.argv[1:])))" $1; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
echo "TLS, one worker each, ECDSA P-256, $ROUNDS rounds of $DUR (medians):"
echo
echo "| proxy | keep-alive req/s (c=$CONNS) | CPU us/req | vs nginx | TLS 1.3 handshakes/s ($HS_CONNS clients) | CPU us/handshake | vs nginx |"
echo "|---|---:|---:|---:|---:|---:|---:|"
nk=$(med "${CPU[ka.nginx]}"); nh=$(med "${CPU[hs.nginx]}")
for px in "${TLSP[@]}"; do
  k=$(med "${CPU[ka.$px]}"); h=$(med "${CPU[hs.$px]}")
  printf "| %s | %s | %s | %s | %s | %s | %s |\n" "$px" "$(med "${RPS[ka.$px]}" | cut -d. -f1)" \
    "$k" "$(ratio "$k" "$nk")" "$(med "${RPS[hs.$px]}" | cut -d. -f1)" "$h" "$(ratio "$h" "$nh")"
done
echo
echo "Plain HTTP keep-alive (c=$CONNS), the transport seam's cost:"
echo
echo "| binary | req/s | CPU us/req |"
echo "|---|---:|---:|"
for px in "${PLAIN[@]}"; do
  printf "| %s | %s | %s |\n" "$px" "$(med "${RPS[plain.$px]}" | cut -d. -f1)" "$(med "${CPU[plain.$px]}")"
done
