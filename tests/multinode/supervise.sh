#!/bin/sh
# What examples/keepalived/ballast-vrrp.service.conf has systemd do, for run.sh's namespaces:
# runs CMD, writes its pid to PIDFILE, 0 into STATEFILE once it runs and 1 the moment it exits
# (written beside and renamed, so keepalived never reads a half-written file).
# Usage: supervise.sh PIDFILE STATEFILE CMD...
pidfile=$1 state=$2
shift 2
put() { echo "$1" >"$state.tmp" && mv "$state.tmp" "$state"; }
"$@" &
child=$!
echo "$child" >"$pidfile"
trap 'kill -TERM $child 2>/dev/null' TERM INT
put 0
wait "$child"
# wait returns early when a trapped signal arrives: wait again for the exit itself.
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
put 1
