#!/usr/bin/env bash
# make test's integration passes: against ./ballast (epoll), against ./ballast on the io_uring
# loop, and against build/asan/ballast, run side by side, then the tests marked `serial` (the
# timing-sensitive ones) of each pass one pass after the other with nothing else of ours
# running. Most of a pass is waiting (timeouts, health-check intervals, reloads: the three
# passes together keep 2 cores less than a third busy), so each pass also spreads its test
# files over INTEGRATION_JOBS pytest-xdist workers (default 2; 1 runs each pass in one
# process).
#
# Each pass takes its own slice of the test ports (conftest.free_port locks one) and writes
# its own log in build/test-logs/; a failed pass's log is printed whole at the end. Extra
# pytest arguments come from PYTEST_ARGS. Exit status: 0 when every pass passed.
set -u
cd "$(dirname "$0")/../.." || exit 1
logs=build/test-logs
mkdir -p "$logs"
passes=(epoll io_uring asan)
jobs=${INTEGRATION_JOBS:-2}
xdist=()
if [ "$jobs" -gt 1 ]; then
    if pytest --help 2>/dev/null | grep -q -- '--numprocesses'; then
        xdist=(-n "$jobs" --dist loadfile)   # a file's tests share its module fixtures
    else
        echo "make test:   pytest-xdist is not installed (python3-pytest-xdist): one process per pass"
    fi
fi

pass_env() {  # the environment of pass $1, as `env` arguments
    case $1 in
    epoll)    echo "BALLAST_BIN=./ballast" ;;
    io_uring) echo "BALLAST_BIN=./ballast BALLAST_EVENTS_USE=io_uring" ;;
    asan)     echo "BALLAST_BIN=build/asan/ballast BALLAST_ASAN=1" ;;
    esac
}

pids=()
cleanup() {  # only the pytest processes this script started
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
}
trap 'cleanup; exit 130' INT TERM

summary() {  # pytest's own summary line of log $1
    grep -aE '^(=+ )?[0-9]+ (passed|failed|error|skipped|deselected)|no tests ran' "$1" | tail -1
}

failed=0
report() {  # pass name, phase, rc, seconds, log
    echo "make test:   $1 ($2): $(summary "$5"), ${4}s"
    if [ "$3" -ne 0 ] && [ "$3" -ne 5 ]; then   # 5: no test selected (PYTEST_ARGS -k ...)
        failed=1
        failed_logs="${failed_logs:-} $5"
    fi
}

start=$(date +%s)
echo "make test:   side by side: ${passes[*]}, ${xdist[1]:-1} process(es) each (logs in $logs/)"
declare -A t0 log
for p in "${passes[@]}"; do
    log[$p]=$logs/integration-$p.log
    t0[$p]=$(date +%s)
    # shellcheck disable=SC2046,SC2086
    env $(pass_env "$p") pytest -q "${xdist[@]}" -m "not serial" tests/integration \
        ${PYTEST_ARGS:-} >"${log[$p]}" 2>&1 &
    pids+=($!)
done
i=0
for p in "${passes[@]}"; do
    wait "${pids[$i]}"; rc=$?
    report "$p" concurrent "$rc" $(( $(date +%s) - t0[$p] )) "${log[$p]}"
    i=$((i + 1))
done
pids=()

echo "make test:   the serial tests of each pass, one pass at a time"
# Only the files that mark a test serial: collecting the whole suite again takes longer than
# running them.
mapfile -t serial_files < <(grep -l 'pytest.mark.serial' tests/integration/test_*.py)
for p in "${passes[@]}"; do
    slog=$logs/integration-$p-serial.log
    s=$(date +%s)
    # shellcheck disable=SC2046,SC2086
    env $(pass_env "$p") pytest -q -m serial "${serial_files[@]}" ${PYTEST_ARGS:-} >"$slog" 2>&1
    report "$p" serial $? $(( $(date +%s) - s )) "$slog"
done

echo "make test:   integration passes took $(( $(date +%s) - start ))s"
if [ "$failed" -ne 0 ]; then
    for f in $failed_logs; do
        echo "======== $f"
        cat "$f"
    done
    exit 1
fi
