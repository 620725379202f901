#!/usr/bin/env bash
# Static small files, ballast against nginx in the same run: one worker each serving the same
# directory (a 1 KiB and a 16 KiB file, sendfile on, etag on), wrk -t1 -c$CONNS keep-alive.
#
#   rps         requests per second of wall time
#   CPU us/req  the server's own CPU (user + system) per request, the figure that survives a
#               shared machine best
#
# Environment: BENCH_DURATION=5s BENCH_CONNS=50 BENCH_ROUNDS=3 BALLAST_BIN=./ballast
#   BALLAST_BASE=PATH  a second ballast (a build of main, say) measured in the same rounds, as
#                      "base", so a change is judged against it rather than across runs
# Prints a markdown table (medians over the rounds; servers in alternating order per round).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-5s}
CONNS=${BENCH_CONNS:-50}
ROUNDS=${BENCH_ROUNDS:-3}
BIN=${BALLAST_BIN:-./ballast}
source bench/mini.sh static

mkdir -p "$TMP/www"
head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 > "$TMP/www/small.css"
head -c 16384 /dev/urandom > "$TMP/www/medium.png"
cp conf/mime.types "$TMP/mime.types"
PN=$(port); PB=$(port)
cat > "$TMP/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1; pid $TMP/nx.pidf; error_log $TMP/nx.err;
$ROOT
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; $TEMPS include mime.types; sendfile on;
  server { listen 127.0.0.1:$PN; root $TMP/www; } }
NGX
nginx -p "$TMP" -c "$TMP/nginx.conf" & echo $! > "$TMP/nginx.pid"
cat > "$TMP/ballast.conf" <<CONF
worker_processes 1; pid $TMP/b.pidf; error_log $TMP/b.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; include mime.types; sendfile on;
  server { listen 127.0.0.1:$PB; root $TMP/www; } }
CONF
"$BIN" -c "$TMP/ballast.conf" 2>>"$TMP/ballast.stderr" & echo $! > "$TMP/ballast.pid"
declare -A PORTS=([nginx]=$PN [ballast]=$PB)
SERVERS="ballast nginx"
if [ -n "${BALLAST_BASE:-}" ]; then
  PM=$(port); PORTS[base]=$PM; SERVERS="ballast base nginx"
  sed -e "s/:$PB;/:$PM;/" -e "s#b.pidf#m.pidf#" "$TMP/ballast.conf" > "$TMP/base.conf"
  "$BALLAST_BASE" -c "$TMP/base.conf" 2>>"$TMP/base.stderr" & echo $! > "$TMP/base.pid"
fi
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

run() { # NAME FILE -> "rps us_per_req"
  local name=$1 file=$2 p=${PORTS[$1]} pid; pid=$(cat "$TMP/$1.pid")
  curl -sf -o /dev/null "http://127.0.0.1:$p/$file"
  local c0; c0=$(cpu_ticks "$pid")
  local out; out=$(wrk -t1 -c"$CONNS" -d"$DUR" "http://127.0.0.1:$p/$file")
  local c1; c1=$(cpu_ticks "$pid")
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local secs; secs=$(echo "$out" | awk '/requests in/ {gsub("s,","",$4); print $4}')
  python3 -c "
reqs, secs, cpu = $reqs, float('$secs'), ($c1 - $c0) / $HZ
print('%.0f %.2f' % (reqs / secs, cpu * 1e6 / reqs if reqs else 0))"
}

declare -A RES
for file in small.css medium.png; do
  for r in $(seq 1 "$ROUNDS"); do
    order=$SERVERS
    if (( r % 2 == 0 )); then order=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for n in $order; do RES[$n$file]+="$(run "$n" "$file");"; done
  done
done

echo "| file | server | rps | CPU us/req | CPU/req vs nginx |"
echo "|---|---|---:|---:|---:|"
for file in small.css medium.png; do
  nb=$(python3 -c "import statistics as s; v=[x.split() for x in '${RES[nginx$file]}'.strip(';').split(';')]; print(s.median(float(a[1]) for a in v))")
  for p in $SERVERS; do
    python3 -c "
import statistics as s
v = [x.split() for x in '${RES[$p$file]}'.strip(';').split(';')]
w = s.median(float(a[0]) for a in v); c = s.median(float(a[1]) for a in v)
print('| %s | %s | %.0f | %.2f | %.2f |' % ('$file', '$p', w, c, c / $nb if $nb else 0))"
  done
done
