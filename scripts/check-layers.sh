#!/bin/sh
# Checks the include graph of src/ from its `#include "..."` lines:
#   1. layers form a stack: core < leaves < upstream, policy (limits, allow/deny), cache (the response cache's store) < conf < http, stream, dns (the front ends) <
#      worker (reload, upgrade) < admin, discover < ops < main, and no file includes a file of a higher layer. The leaves are the protocol
#      libraries any layer may use (HTTP/1 parser, URI normalizer, chunked decoder, variable
#      templates, trace context); they may themselves use only core and each other. ops is
#      what operating the process needs (-s, log reopening, sd_notify), kept out of main.c.
#   2. no include cycle between files (tsort finds it).
# Exits 1 and prints every violation; prints one summary line otherwise.
# Usage: scripts/check-layers.sh [SRCDIR]   (default: src)
set -eu
src=${1:-src}
cd "$src"

layer() {
    case "$1" in
    core/*) echo "0 core" ;;
    http/h1_parser.* | http/uri.* | http/dechunk.* | http/template.* | http/trace.* | dns/dns_msg.* | http/range.*)
        echo "1 leaf" ;;
    upstream/*) echo "2 upstream" ;;
    policy/*) echo "2 policy" ;;
    cache/*) echo "2 cache" ;;
    conf/*) echo "3 conf" ;;
    http/*) echo "4 http" ;;
    stream/*) echo "4 stream" ;;
    dns/*) echo "4 dns" ;;
    worker.* | reload.* | upgrade.*) echo "5 worker" ;;
    admin/*) echo "6 admin" ;;
    discover/*) echo "6 discover" ;;
    ops.*) echo "7 ops" ;;
    main.c) echo "8 main" ;;
    *) echo "? unknown" ;;
    esac
}

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
status=0
nfiles=0
for f in $(find . -name '*.[ch]' | sed 's|^\./||' | sort); do
    nfiles=$((nfiles + 1))
    set -- $(layer "$f")
    from_rank=$1 from_name=$2
    if [ "$from_rank" = "?" ]; then
        echo "check-layers: $src/$f is in no layer (add it to scripts/check-layers.sh)"
        status=1
        continue
    fi
    echo "$f $f" >>"$edges"
    for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
        if [ ! -f "$inc" ]; then
            echo "check-layers: $src/$f includes \"$inc\", which is not under $src/"
            status=1
            continue
        fi
        set -- $(layer "$inc")
        if [ "$1" = "?" ] || [ "$1" -gt "$from_rank" ]; then
            echo "check-layers: $src/$f ($from_name) includes $inc ($2): a lower layer may not" \
                 "include a higher one"
            status=1
        fi
        [ "$inc" = "$f" ] || echo "$f $inc" >>"$edges"
    done
done

if ! tsort "$edges" >/dev/null 2>"$edges.err"; then
    echo "check-layers: include cycle:"
    sed 's/^/  /' "$edges.err"
    status=1
fi
rm -f "$edges.err"

if [ $status -eq 0 ]; then
    echo "check-layers: $nfiles files, $(grep -vc '^\(.*\) \1$' "$edges") includes:" \
         "core < leaves < upstream, policy < conf < http, stream, dns < worker (reload, upgrade) < admin, discover < ops < main, no cycle"
fi
exit $status
