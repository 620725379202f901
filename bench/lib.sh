# Helpers shared by the bench scripts (run.sh, scale.sh, callgrind.sh); sourced, never run.
# The caller defines die() and PY (the Python with Debian's packages).

secs() {   # "10s" / "500ms" / "2m" / "10" -> whole seconds (at least 1)
    local v=$1
    case $v in
        *ms) v=$(( ${v%ms} / 1000 )) ;;
        *s)  v=${v%s} ;;
        *m)  v=$(( ${v%m} * 60 )) ;;
        *h)  v=$(( ${v%h} * 3600 )) ;;
    esac
    [[ $v =~ ^[0-9]+$ ]] || die "bad duration: $1"
    (( v < 1 )) && v=1
    echo "$v"
}

alive() {   # a pid that exists and is not a zombie
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [ "${s%% *}" != Z ]
}

cpu_ticks() {   # utime+stime (clock ticks) summed over the given pids, all threads included
    local p s f t=0
    for p in "$@"; do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -r -a f <<<"${s##*) }"
        t=$(( t + f[11] + f[12] ))   # fields 14 and 15 of stat; f[0] is field 3
    done
    echo "$t"
}

free_ports() {   # n distinct free ports on 127.0.0.1
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

proc_stat_cpu() { awk '$1 == "cpu" { print $2+$3+$4+$5+$6+$7+$8+$9, $9 }' /proc/stat; }

# EXIT trap of the scripts that keep their children's pids in STARTED and their files in TMP
# (run.sh, scale.sh): stops WATCHDOG (when set) and every child, TERM then KILL after 5 s,
# removes TMP unless BENCH_KEEP=1, exits with the script's status. Subshells do nothing.
bench_cleanup() {
    local rc=$? p left i
    [ "${BASHPID:-$$}" = "$MAIN_PID" ] || return 0
    trap - EXIT INT TERM
    [ -n "${WATCHDOG:-}" ] && kill -TERM "$WATCHDOG" 2>/dev/null || true
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 50); do
        left=0
        for p in "${STARTED[@]}"; do alive "$p" && left=1; done
        (( left )) || break
        sleep 0.1
    done
    for p in "${STARTED[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null || true
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
