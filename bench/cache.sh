#!/usr/bin/env bash
# Cache hits, ballast against nginx's proxy_cache in the same run: one worker each, both in
# front of one nginx backend serving a file (SIZE bytes, Cache-Control: max-age=3600), each
# with its own proxy_cache_path in a temp dir; the URL is fetched once (MISS), then wrk -t1
# -c$CONNS asks for it for DUR (every answer a HIT, checked by X-Cache-Status).
#
#   req/s        hits per second of wall time
#   CPU us/hit   the proxy's own CPU (user + system) per hit, the figure that survives a
#                shared machine best
#
# Environment: BENCH_DURATION=5s BENCH_CONNS=50 BENCH_ROUNDS=3 BENCH_SIZE=4096
#              BALLAST_BIN=./ballast
# Prints a markdown table (medians over the rounds; the proxies' order alternates per round).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-5s}
CONNS=${BENCH_CONNS:-50}
ROUNDS=${BENCH_ROUNDS:-3}
SIZE=${BENCH_SIZE:-4096}
BIN=${BALLAST_BIN:-./ballast}
source bench/mini.sh cache

BE=$(port); PN=$(port); PB=$(port)
mkdir -p "$TMP/www" "$TMP/ncache" "$TMP/bcache"
head -c "$SIZE" /dev/urandom > "$TMP/www/obj.bin"
cat > "$TMP/backend.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/be.pidf; error_log $TMP/be.err;
$ROOT
events { worker_connections 1024; }
http { access_log off; $TEMPS
  server { listen 127.0.0.1:$BE; root $TMP/www; add_header Cache-Control "max-age=3600"; } }
NGX
nginx -p "$TMP" -c "$TMP/backend.conf" & echo $! > "$TMP/backend.pid"
cat > "$TMP/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/nx.pidf; error_log $TMP/nx.err;
$ROOT
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  proxy_cache_path $TMP/ncache keys_zone=one:10m levels=1:2;
  upstream be { server 127.0.0.1:$BE; keepalive 16; }
  server { listen 127.0.0.1:$PN; location / { proxy_pass http://be; proxy_http_version 1.1;
           proxy_set_header Connection ""; proxy_cache one;
           add_header X-Cache-Status \$upstream_cache_status; } } }
NGX
nginx -p "$TMP" -c "$TMP/nginx.conf" & echo $! > "$TMP/nginx.pid"
cat > "$TMP/ballast.conf" <<CONF
worker_processes 1; pid $TMP/b.pidf; error_log $TMP/b.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  proxy_cache_path $TMP/bcache keys_zone=one:10m levels=1:2;
  upstream be { server 127.0.0.1:$BE; keepalive 16; }
  server { listen 127.0.0.1:$PB; location / { proxy_pass http://be; proxy_cache one;
           add_header X-Cache-Status \$upstream_cache_status; } } }
CONF
"$BIN" -c "$TMP/ballast.conf" 2>>"$TMP/ballast.stderr" & echo $! > "$TMP/ballast.pid"
sleep 1
declare -A PORTS=([nginx]=$PN [ballast]=$PB)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

for p in nginx ballast; do  # fill, then check that the next answer is a hit
  curl -s -o /dev/null "http://127.0.0.1:${PORTS[$p]}/obj.bin"
  st=$(curl -s -D - -o /dev/null "http://127.0.0.1:${PORTS[$p]}/obj.bin" | tr -d '\r' |
       awk -F': ' 'tolower($1)=="x-cache-status" {print $2}')
  [ "$st" = HIT ] || { echo "bench: $p does not answer from its cache ($st)" >&2; exit 1; }
done

run() { # NAME -> "req/s us_per_hit"
  local p=${PORTS[$1]} pid; pid=$(cat "$TMP/$1.pid")
  local c0; c0=$(cpu_ticks "$pid")
  local out; out=$(wrk -t1 -c"$CONNS" -d"$DUR" "http://127.0.0.1:$p/obj.bin")
  local c1; c1=$(cpu_ticks "$pid")
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local secs; secs=$(echo "$out" | awk '/requests in/ {gsub("s,","",$4); print $4}')
  if echo "$out" | grep -q "Non-2xx"; then echo "bench: $1 answered non-2xx" >&2; exit 1; fi
  python3 -c "
reqs, secs, cpu = $reqs, float('$secs'), ($c1 - $c0) / $HZ
print('%.0f %.2f' % (reqs / secs, cpu * 1e6 / reqs if reqs else 0))"
}

declare -A RES
names=(ballast nginx)
for r in $(seq 1 "$ROUNDS"); do
  for i in 0 1; do
    n=${names[$(( (i + r) % 2 ))]}
    RES[$n]+="$(run "$n");"
  done
done

nb=$(python3 -c "import statistics as s; v=[x.split() for x in '${RES[nginx]}'.strip(';').split(';')]; print(s.median(float(a[1]) for a in v))")
echo "| proxy   | hits/s (wall) | CPU us/hit | CPU/hit vs nginx |"
echo "| ------- | ------------- | ---------- | ---------------- |"
for p in ballast nginx; do
  python3 -c "
import statistics as s
v = [x.split() for x in '${RES[$p]}'.strip(';').split(';')]
w = s.median(float(a[0]) for a in v); c = s.median(float(a[1]) for a in v)
print('| %-7s | %13.0f | %10.2f | %16.2f |' % ('$p', w, c, c / $nb if $nb else 0))"
done
