#!/usr/bin/env bash
# issue 14's 1/2/4/8-worker table (make bench-scale) on a lent 16-core machine in one call.
# That machine has no package registry and may lack nginx, HAProxy, wrk, curl and ballast's
# libraries, and it builds nothing: everything is bundled here and carried there.
#
#   here:   make ballast && bench/scale_device.sh bundle .bench-device
#           (nginx, haproxy, wrk through ../shared/tools/device-bundle.sh, plus ./ballast and
#           curl with the libraries they need; the folder goes into .git/info/exclude)
#   there:  run(command="bench/scale_device.sh run .bench-device", carry=[".bench-device"],
#               timeout_s=600)
#           prints the table and leaves it in $OUT/scale.md (and the raw records, scale.tsv)
#
# The run: SCALE_WORKERS=1,2,4,8, SCALE_DURATION=8s, SCALE_ROUNDS=2,
# SCALE_ONLY=ballast,nginx,nginx-reuseport,haproxy (knobs as bench/scale.sh, overridable),
# everything pinned (8 workers + backend 4 + wrk 4 = 16 cores): 4 counts x 4 proxies x 2 rounds
# x (start + 2 s warm-up + 8 s + stop, ~12 s) is about 6.5 minutes, under the 10-minute call.
# nginx-reuseport is nginx with a listening socket per worker, hashed by the kernel as
# ballast's are: if its p99 at 4 and 8 workers rises to ballast's, the hashing is the cause.
# bench/README.md, "bench-scale", says what the columns mean; the RESULTS.md section it writes
# there comes back in $OUT for a session here to paste.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: bench/scale_device.sh bundle|run DIR}
dir=${2:?usage: bench/scale_device.sh bundle|run DIR}

case $mode in
bundle)
    [ -x ./ballast ] || { echo "scale_device: build ./ballast first (make ballast)" >&2; exit 1; }
    bundler=../shared/tools/device-bundle.sh
    [ -x "$bundler" ] || bundler=/work/shared/tools/device-bundle.sh
    "$bundler" "$dir"
    cp ./ballast "$(command -v curl)" "$dir/bin/"
    ldd ./ballast "$(command -v curl)" | awk '/=>/ { print $3 }' | sort -u |
        grep -v -E '/lib(c|m|pthread|dl|rt)\.so' | xargs -r -I{} cp -L {} "$dir/lib/"
    grep -qx "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >>"$(git rev-parse --git-path info/exclude)"
    echo "scale_device: $dir ready ($(du -sh "$dir" | cut -f1)); carry it: [\"$dir\"]"
    ;;
run)
    [ -x "$dir/bin/ballast" ] || { echo "scale_device: $dir/bin/ballast missing (bundle first)" >&2; exit 1; }
    dir=$(cd "$dir" && pwd)
    export PATH="$dir/bin:$PATH" LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    mkdir -p /var/lib/nginx   # nginx's compiled-in temp path must exist even when unused
    out=${OUT:-/tmp/scale-device-out}
    mkdir -p "$out"
    echo "scale_device: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    nginx -v 2>&1; haproxy -v | head -1; wrk -v 2>&1 | head -1 || true
    : >"$out/scale.md"
    BALLAST_BIN="$dir/bin/ballast" BENCH_RESULTS="$out/scale.md" BENCH_KEEP=1 \
        SCALE_WORKERS=${SCALE_WORKERS:-1,2,4,8} SCALE_DURATION=${SCALE_DURATION:-8s} \
        SCALE_ROUNDS=${SCALE_ROUNDS:-2} SCALE_ONLY=${SCALE_ONLY:-ballast,nginx,nginx-reuseport,haproxy} \
        bench/scale.sh 2>"$out/scale.log" || rc=$?
    tail -5 "$out/scale.log"
    kept=$(sed -n 's/^bench-scale: kept //p' "$out/scale.log" | tail -1)
    if [ -n "$kept" ] && [ -d "$kept" ]; then
        cp "$kept/records.tsv" "$out/scale.tsv" 2>/dev/null || true
        rm -rf "$kept"
    fi
    cat "$out/scale.md"
    exit "${rc:-0}"
    ;;
*)
    echo "usage: bench/scale_device.sh bundle|run DIR" >&2
    exit 2
    ;;
esac
