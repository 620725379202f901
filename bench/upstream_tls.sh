#!/usr/bin/env bash
# TLS to upstreams, ballast against nginx in the same run (one worker each, plain HTTP from wrk
# to the proxy, the proxy to one nginx HTTPS backend with an ECDSA P-256 certificate and
# upstream keep-alive), and the cost of the upstream transport seam on plain HTTP against a
# baseline binary.
#
#   tls      wrk -c$CONNS keep-alive through the proxy to the https backend (proxy_pass https://,
#            keepalive 256, session reuse on): requests/s and proxy CPU per request
#   plain    plain HTTP to a plain backend through ballast and, with BALLAST_BASELINE_BIN,
#            through the baseline (main before the seam): CPU per request of each
#
# Environment: BENCH_DURATION=5s BENCH_CONNS=50 BENCH_ROUNDS=3
#              BALLAST_BIN=./ballast BALLAST_BASELINE_BIN=(none)
# Prints markdown tables (medians over the rounds; proxies in rotating order per round).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-5s}
CONNS=${BENCH_CONNS:-50}
ROUNDS=${BENCH_ROUNDS:-3}
BIN=${BALLAST_BIN:-./ballast}
BASE=${BALLAST_BASELINE_BIN:-}
source bench/mini.sh uptls

BES=$(port); BEP=$(port); PB=$(port); PN=$(port); PBP=$(port); PBASE=$(port)

openssl req -x509 -nodes -days 2 -subj /CN=localhost -newkey ec -pkeyopt \
    ec_paramgen_curve:P-256 -keyout "$TMP/key.pem" -out "$TMP/crt.pem" 2>/dev/null

# One backend process, two addresses: https for the TLS rows, plain for the seam rows.
cat > "$TMP/backend.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/be.pidf; error_log $TMP/be.err;
$ROOT
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  server { listen 127.0.0.1:$BES ssl; listen 127.0.0.1:$BEP;
           ssl_certificate $TMP/crt.pem; ssl_certificate_key $TMP/key.pem;
           ssl_session_cache shared:S:1m;
           location / { return 200 "hello from the backend\n"; } } }
NGX
nginx -p "$TMP" -c "$TMP/backend.conf" & echo $! > "$TMP/backend.pid"

cat > "$TMP/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/nx.pidf; error_log $TMP/nx.err;
$ROOT
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  upstream be { server 127.0.0.1:$BES; keepalive 256; }
  server { listen 127.0.0.1:$PN;
           location / { proxy_pass https://be; proxy_http_version 1.1;
                        proxy_set_header Connection ""; proxy_ssl_session_reuse on; } } }
NGX
nginx -p "$TMP" -c "$TMP/nginx.conf" & echo $! > "$TMP/nginx.pid"

ballast_conf() { # PORT SCHEME BACKEND_PORT
  cat <<CONF
worker_processes 1;
error_log $TMP/ballast.err;
http {
  upstream be { server 127.0.0.1:$3; keepalive 256; }
  server { listen 127.0.0.1:$1; access_log off; trace_propagation off; request_id_header off;
           location / { proxy_pass $2://be; } }
}
CONF
}
# TLS and plain ballast are separate processes so that each one's CPU is its own.
ballast_conf "$PB" https "$BES" > "$TMP/ballast-tls.conf"
"$BIN" -c "$TMP/ballast-tls.conf" & echo $! > "$TMP/ballast.pid"
ballast_conf "$PBP" http "$BEP" > "$TMP/ballast-plain.conf"
"$BIN" -c "$TMP/ballast-plain.conf" & echo $! > "$TMP/ballastp.pid"
if [ -n "$BASE" ]; then
  ballast_conf "$PBASE" http "$BEP" > "$TMP/ballast-base.conf"
  "$BASE" -c "$TMP/ballast-base.conf" & echo $! > "$TMP/ballastb.pid"
fi
for p in $PB $PN $PBP $([ -n "$BASE" ] && echo $PBASE); do
  for i in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

HZ=$(getconf CLK_TCK)
ticks() { local t=0; for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' /proc/$pid/stat))); done; echo $t; }
declare -A PID URL RPS CPU
PID[ballast]=$(cat $TMP/ballast.pid); PID[nginx]=$(cat $TMP/nginx.pid)
PID[ballast-plain]=$(cat $TMP/ballastp.pid)
URL[ballast]=http://127.0.0.1:$PB/; URL[nginx]=http://127.0.0.1:$PN/
URL[ballast-plain]=http://127.0.0.1:$PBP/
PLAIN=(ballast-plain)
if [ -n "$BASE" ]; then
  PID[ballast-base]=$(cat $TMP/ballastb.pid); URL[ballast-base]=http://127.0.0.1:$PBASE/
  PLAIN+=(ballast-base)
fi

measure() { # KEY PROXY
  local key=$1 px=$2
  wrk -t1 -c"$CONNS" -d1s "${URL[$px]}" >/dev/null 2>&1 # warm-up
  local t0; t0=$(ticks ${PID[$px]})
  local out; out=$(wrk -t1 -c"$CONNS" -d"$DUR" "${URL[$px]}")
  local t1; t1=$(ticks ${PID[$px]})
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  if echo "$out" | grep -q "Non-2xx"; then echo "warning: $px answered non-2xx" >&2; fi
  RPS[$key.$px]+="$rps "
  CPU[$key.$px]+="$(python3 -c "print(($t1-$t0)/$HZ*1e6/max($reqs,1))") "
}

TLSP=(ballast nginx)
for r in $(seq "$ROUNDS"); do
  for k in 0 1; do
    measure tls "${TLSP[$(( (k + r) % 2 ))]}"
  done
  for k in $(seq 0 $(( ${#PLAIN[@]} - 1 ))); do
    measure plain "${PLAIN[$(( (k + r) % ${#PLAIN[@]} ))]}"
  done
done

med() { python3 -c "import statistics,sys; print('%.2f' % statistics.median(map(float, sys.argv[1:])))" $1; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
echo "TLS to upstreams, one worker each, keep-alive both sides, $ROUNDS rounds of $DUR (medians):"
echo
echo "| proxy | req/s (c=$CONNS) | CPU us/req | vs nginx |"
echo "|---|---:|---:|---:|"
nk=$(med "${CPU[tls.nginx]}")
for px in "${TLSP[@]}"; do
  k=$(med "${CPU[tls.$px]}")
  printf "| %s | %s | %s | %s |\n" "$px" "$(med "${RPS[tls.$px]}" | cut -d. -f1)" "$k" \
    "$(ratio "$k" "$nk")"
done
echo
echo "Plain HTTP keep-alive (c=$CONNS), the upstream transport seam's cost:"
echo
echo "| binary | req/s | CPU us/req |"
echo "|---|---:|---:|"
for px in "${PLAIN[@]}"; do
  printf "| %s | %s | %s |\n" "$px" "$(med "${RPS[plain.$px]}" | cut -d. -f1)" "$(med "${CPU[plain.$px]}")"
done
