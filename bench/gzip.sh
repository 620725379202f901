#!/usr/bin/env bash
# gzip compression throughput, ballast against nginx in the same run: one worker each, both
# proxying to one nginx backend that serves a 1 MiB text file (upstream keep-alive), gzip on
# with gzip_types text/plain at levels 1 and 6; wrk -t1 -c$CONNS with Accept-Encoding: gzip.
#
#   MB/s       uncompressed body megabytes (10^6) per second of wall time
#   CPU MB/s   uncompressed megabytes per second of the proxy's own CPU (user + system), the
#              figure that survives a shared machine best
#
# Environment: BENCH_DURATION=5s BENCH_CONNS=4 BENCH_ROUNDS=3 BALLAST_BIN=./ballast
# Prints a markdown table (medians over the rounds; proxies in rotating order per round).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-5s}
CONNS=${BENCH_CONNS:-4}
ROUNDS=${BENCH_ROUNDS:-3}
BIN=${BALLAST_BIN:-./ballast}
source bench/mini.sh gzip

BE=$(port)
mkdir -p "$TMP/www"
python3 - "$TMP/www/page.txt" <<'PY'
import sys
lines = [b"line %08d: the quick brown fox jumps over the lazy dog %d\n" % (i, i * 7919)
         for i in range(20000)]
open(sys.argv[1], "wb").write(b"".join(lines)[:1 << 20])
PY
SIZE=$(stat -c %s "$TMP/www/page.txt")
cat > "$TMP/backend.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/be.pidf; error_log $TMP/be.err;
$ROOT
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  types { text/plain txt; }
  server { listen 127.0.0.1:$BE; root $TMP/www; } }
NGX
nginx -p "$TMP" -c "$TMP/backend.conf" & echo $! > "$TMP/backend.pid"

declare -A PORTS
for level in 1 6; do
  pn=$(port); pb=$(port)
  PORTS[nginx$level]=$pn; PORTS[ballast$level]=$pb
  cat > "$TMP/nginx$level.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/nx$level.pidf; error_log $TMP/nx$level.err;
$ROOT
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  gzip on; gzip_types text/plain; gzip_comp_level $level;
  upstream be { server 127.0.0.1:$BE; keepalive 64; }
  server { listen 127.0.0.1:$pn; location / { proxy_pass http://be; proxy_http_version 1.1;
           proxy_set_header Connection ""; } } }
NGX
  nginx -p "$TMP" -c "$TMP/nginx$level.conf" & echo $! > "$TMP/nginx$level.pid"
  cat > "$TMP/ballast$level.conf" <<CONF
worker_processes 1; pid $TMP/b$level.pidf; error_log $TMP/b$level.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  gzip on; gzip_types text/plain; gzip_comp_level $level;
  upstream be { server 127.0.0.1:$BE; keepalive 64; }
  server { listen 127.0.0.1:$pb; location / { proxy_pass http://be; } } }
CONF
  "$BIN" -c "$TMP/ballast$level.conf" 2>>"$TMP/ballast$level.stderr" & echo $! > "$TMP/ballast$level.pid"
done
sleep 1

cpu_ticks() { # PID and its children (ballast's worker threads are in the process)
  awk '{print $14 + $15}' "/proc/$1/stat"
}
HZ=$(getconf CLK_TCK)

run() { # NAME -> "MB/s CPU_MB/s ratio"
  local name=$1 p=${PORTS[$1]} pid; pid=$(cat "$TMP/$1.pid")
  curl -s -H 'Accept-Encoding: gzip' -o "$TMP/check.gz" "http://127.0.0.1:$p/page.txt"
  gunzip -t "$TMP/check.gz"
  local c0; c0=$(cpu_ticks "$pid")
  local out; out=$(wrk -t1 -c"$CONNS" -d"$DUR" -H 'Accept-Encoding: gzip' \
                   "http://127.0.0.1:$p/page.txt")
  local c1; c1=$(cpu_ticks "$pid")
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local secs; secs=$(echo "$out" | awk '/requests in/ {gsub("s,","",$4); print $4}')
  python3 -c "
reqs, secs, cpu = $reqs, float('$secs'), ($c1 - $c0) / $HZ
mb = reqs * $SIZE / 1e6
print('%.1f %.1f' % (mb / secs, mb / cpu if cpu else 0))"
}

declare -A RES
names=(ballast1 nginx1 ballast6 nginx6)
for r in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2 3; do
    n=${names[$(( (i + r) % 4 ))]}
    RES[$n]+="$(run "$n");"
  done
done

echo "| level | proxy   | MB/s (wall) | CPU MB/s | CPU MB/s vs nginx |"
for level in 1 6; do
  nb=$(python3 -c "import statistics as s; v=[x.split() for x in '${RES[nginx$level]}'.strip(';').split(';')]; print(s.median(float(a[1]) for a in v))")
  for p in ballast nginx; do
    python3 -c "
import statistics as s
v = [x.split() for x in '${RES[$p$level]}'.strip(';').split(';')]
w = s.median(float(a[0]) for a in v); c = s.median(float(a[1]) for a in v)
print('| %5s | %-7s | %11.1f | %8.1f | %17.2f |' % ($level, '$p', w, c, c / $nb if $nb else 0))"
  done
done
