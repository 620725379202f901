#!/bin/bash
# A keepalived pair of ballast nodes in network namespaces, failed over under a steady client.
#
# Builds, in namespaces of its own (names unique to this run: bl<PID>-...), a switch (a bridge
# in its own namespace, so nothing is added to the host's), two ballast nodes running
# examples/keepalived/ (VRRP v3, unicast, advert_int 0.1, nopreempt), two backends and a
# client. Addresses are 192.0.2.0/24 (TEST-NET-1, never routed) and exist only inside these
# namespaces, so fixed ports are safe. Then, while tests/multinode/client.py sends a request
# every 20 ms (one retry on failure), runs these cases one after another:
#   ballast_kill    SIGKILL the master's ballast          -> the address moves
#   ballast_back    start that ballast again              -> the address stays (nopreempt)
#   unhealthy       the master's /api/health answers 503  -> the address moves
#   unhealthy_back  that node healthy again               -> the address stays
#   node_down       the master's link down (cable pulled) -> the address moves
#   node_back       the link up again                     -> the address stays
# and prints one line per case:
#   case=NAME vip_move_s=X failed=N failed_with_retry=N client_s=Y flaps=N
# vip_move_s: from the fault to the new master's notify hook (keepalived has taken the address
# and sent gratuitous ARP); 'none' where the address is meant to stay. client_s: from the fault
# to the client's first answer from the new node. failed: requests (started in the case's
# window) whose first attempt failed; failed_with_retry: those whose retry failed too.
# flaps: master changes beyond the one the case causes.
#
# Exits 0 when every case behaved (the address moved where it had to, stayed where it had to,
# no flap), 1 otherwise, 77 when the machine cannot run it (not root, no `ip netns`, no
# keepalived), saying why. Everything it creates is removed on exit, failure or signal.
# Usage: tests/multinode/run.sh [BALLAST_BIN]   (default ./ballast); needs root.
set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(readlink -f "${1:-$repo/ballast}")
keepalived=${KEEPALIVED:-/usr/sbin/keepalived}
deadline=$((SECONDS + 150))

skip() { echo "multinode: skipped: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, keepalived)"
command -v ip >/dev/null || skip "no ip command (iproute2)"
[ -x "$keepalived" ] || skip "no keepalived at $keepalived (scripts/install-deps.sh test installs it)"
command -v curl >/dev/null || skip "no curl"
command -v python3 >/dev/null || skip "no python3"
[ -x "$bin" ] || { echo "multinode: no ballast binary at $bin (make ballast)"; exit 1; }

id=bl$$
sw=$id-sw
nodes="n1 n2"
all_ns="$sw $id-n1 $id-n2 $id-b1 $id-b2 $id-c"
dir=$(mktemp -d /tmp/ballast-multinode.XXXXXX)
chmod 700 "$dir"
pids=()

cleanup() {
    local rc=$?
    touch "$dir/stop" 2>/dev/null
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    # Processes started inside a namespace by a process we started (keepalived's children):
    # whatever still has one of our namespaces open.
    for ns in $all_ns; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        echo "multinode: failed (rc $rc); logs:"
        for f in "$dir"/*.log "$dir"/*.events; do
            [ -f "$f" ] || continue
            echo "--- $f"; tail -n 25 "$f"
        done
    fi
    rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "multinode: FAIL: $*"; exit 1; }
now() { date +%s.%N; }
# inns NS CMD...: run CMD in our namespace NS.
inns() { local ns=$1; shift; ip netns exec "$id-$ns" "$@"; }
# wait_for SECONDS CMD...: poll CMD every 50 ms.
wait_for() {
    local t=$1; shift
    local end=$(( $(date +%s%N) + t * 1000000000 ))
    while [ "$(date +%s%N)" -lt "$end" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    return 1
}

# ---- the network: a bridge in its own namespace, one veth per host -----------------------
ip netns add "$sw" || skip "ip netns add failed (no CAP_SYS_ADMIN or no netns support)"
ip -n "$sw" link set lo up
ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0 || fail "no bridge support"
ip -n "$sw" link set br0 up
declare -A addr=([n1]=192.0.2.11 [n2]=192.0.2.12 [b1]=192.0.2.21 [b2]=192.0.2.22 [c]=192.0.2.100)
vip=192.0.2.10
for h in n1 n2 b1 b2 c; do
    ip netns add "$id-$h" || fail "ip netns add $id-$h"
    ip -n "$id-$h" link set lo up
    # The host's end is eth0 inside its namespace; the switch's end is named after the host.
    ip -n "$sw" link add "$h" type veth peer name eth0 netns "$id-$h" || fail "veth for $h"
    ip -n "$sw" link set "$h" master br0 up
    ip -n "$id-$h" addr add "${addr[$h]}/24" dev eth0
    ip -n "$id-$h" link set eth0 up
done

# ---- backends and ballast nodes ---------------------------------------------------------
start() { # start NAME NS CMD...: in the background, logging to $dir/NAME.log
    local name=$1 ns=$2; shift 2
    ip netns exec "$id-$ns" "$@" >"$dir/$name.log" 2>&1 &
    pids+=($!)
    disown $!     # killed by cleanup: no "Killed" line from bash
    eval "pid_$name=$!"
}
for b in b1 b2; do
    cat >"$dir/$b.conf" <<CONF
worker_processes 1;
error_log stderr notice;
http { server { listen 8080; location / { return 200 "hello from $b\n"; } } }
CONF
    start "$b" "$b" "$bin" -c "$dir/$b.conf"
done
for n in $nodes; do
    # examples/keepalived/ballast-node.conf as it is, plus the header that tells the client
    # which node answered.
    sed -e "s|^\( *\)listen 80;|&\n\1add_header X-Node $n always;|" \
        "$repo/examples/keepalived/ballast-node.conf" >"$dir/$n.conf"
    "$bin" -t -c "$dir/$n.conf" >/dev/null 2>&1 || fail "ballast -t $dir/$n.conf: $("$bin" -t -c "$dir/$n.conf" 2>&1)"
done
# Under supervise.sh, which plays systemd's part for keepalived's track_file.
start_ballast() {
    start "ballast_$1" "$1" "$repo/tests/multinode/supervise.sh" "$dir/ballast-$1.pid" \
        "$dir/$1.down" "$bin" -c "$dir/$1.conf"
}
start_ballast n1
start_ballast n2
for b in b1 b2; do
    wait_for 10 inns c curl -sf -m 1 "http://${addr[$b]}:8080/" || fail "backend $b does not answer"
done
for n in $nodes; do
    wait_for 10 inns "$n" curl -sf -m 1 http://127.0.0.1:9901/api/health || fail "ballast $n is not healthy"
done

# ---- keepalived: the example files, paths moved into $dir ---------------------------------
cp "$repo/examples/keepalived/check_ballast.sh" "$repo/examples/keepalived/notify_ballast.sh" "$dir/"
chmod 700 "$dir"/*.sh
for i in 1 2; do
    n=n$i
    sed -e "s|/run/ballast-vrrp-down|$dir/$n.down|" \
        -e "s|/etc/keepalived/|$dir/|g" \
        -e "s|/etc/ballast/admin.token|$dir/no-token|" \
        -e "s|/var/log/ballast-vrrp.log|$dir/$n.events|" \
        "$repo/examples/keepalived/keepalived-node$i.conf" >"$dir/keepalived-$n.conf"
    touch "$dir/$n.events"
done
start_keepalived() {
    start "keepalived_$1" "$1" "$keepalived" --dont-fork --log-console --vrrp \
        --use-file "$dir/keepalived-$1.conf" --pid "$dir/keepalived-$1.pid" \
        --vrrp_pid "$dir/keepalived-vrrp-$1.pid" --config-id "$id-$1"
}
has_vip() { ip -n "$id-$1" -4 addr show dev eth0 | grep -q "inet $vip/"; }
# n1 first, so that it becomes the master (both are BACKUP with nopreempt).
start_keepalived n1
wait_for 10 has_vip n1 || fail "n1 never took $vip"
start_keepalived n2
wait_for 10 grep -q BACKUP "$dir/n2.events" || fail "n2 never became BACKUP"
master=n1
other() { [ "$1" = n1 ] && echo n2 || echo n1; }

# ---- the client ----------------------------------------------------------------------------
start client c python3 "$repo/tests/multinode/client.py" "$vip" 80 "$dir/client.out" "$dir/stop"
wait_for 10 test -s "$dir/client.out" || fail "the client sent nothing"
sleep 1

: >"$dir/cases"
case_start() { # case_start NAME EXPECT(move|stay) FROM
    echo "$1 $(now) $2 $3" >>"$dir/cases"
}
api_down() { # api_down NODE true|false: the node's servers out of (or back in) rotation
    for s in 0 1; do
        inns "$1" curl -sf -o /dev/null -m 2 -X PATCH -d "{\"down\": $2}" \
            "http://127.0.0.1:9901/api/upstreams/sites/servers/$s" || fail "PATCH on $1 failed"
    done
}
settle() { sleep "${1:-2}"; [ $SECONDS -lt $deadline ] || fail "out of time"; }

# ballast dead
case_start ballast_kill move $master
kill -KILL "$(cat "$dir/ballast-$master.pid")"
new=$(other $master)
wait_for 5 has_vip "$new" || fail "ballast_kill: $vip did not move to $new"
settle 2
case_start ballast_back stay $new
start_ballast $master
wait_for 10 inns $master curl -sf -m 1 http://127.0.0.1:9901/api/health || fail "ballast on $master did not come back"
settle 3
has_vip "$new" || fail "ballast_back: $vip left $new"
master=$new

# ballast unhealthy
case_start unhealthy move $master
api_down $master true
new=$(other $master)
wait_for 8 has_vip "$new" || fail "unhealthy: $vip did not move to $new"
settle 2
case_start unhealthy_back stay $new
api_down $master false
settle 4
has_vip "$new" || fail "unhealthy_back: $vip left $new"
master=$new

# node dead: its cable pulled at the switch
case_start node_down move $master
ip -n "$sw" link set "$master" down
new=$(other $master)
wait_for 5 has_vip "$new" || fail "node_down: $vip did not move to $new"
settle 2
case_start node_back stay $new
ip -n "$sw" link set "$master" up
settle 4
has_vip "$new" || fail "node_back: $vip left $new"
has_vip "$master" && fail "node_back: $vip on both nodes"
echo "end $(now) - -" >>"$dir/cases"

touch "$dir/stop"
wait_for 10 eval '! kill -0 $pid_client' || fail "the client did not stop"
python3 "$repo/tests/multinode/analyze.py" "$dir/cases" "$dir/client.out" "$dir/n1.events" "$dir/n2.events"
