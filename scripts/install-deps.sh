#!/bin/sh
# Installs the Debian packages ballast needs, only those missing: "run" for building and
# running, "test" for the tests and benchmarks too, "lint" for make lint and make fuzz (clang
# brings clang-tidy's own headers and libFuzzer). apt-get runs only when something is missing.
set -eu
what=${1:-run}
pkgs="gcc make libc6-dev libjansson-dev libpcre2-dev libssl-dev libnghttp2-dev zlib1g-dev liburing-dev openssl
    libhiredis-dev"
if [ "$what" = test ]; then
    # systemd: `systemd-analyze verify` of the unit; groff-base: the man page renders cleanly;
    # logrotate: examples/logrotate.ballast run as shipped; prometheus: promtool checks
    # /metrics; chromium: the status page test; jq: JSON access log lines parse
    # (tests/integration/test_logs.py); python3-websockets: the WebSocket echo backend and
    # client (tests/integration/test_websocket.py); libnginx-mod-stream: nginx's stream module
    # (nginx-light builds it as a module) for the L4 rows of bench/stream.py; redis-server: the
    # primary/replica swap behind check type=redis (tests/integration/test_checks_proto.py);
    # dnsutils: dig through the UDP proxy (tests/integration/test_stream_udp.py).
    # keepalived, iproute2: the VRRP pair in network namespaces (tests/multinode/run.sh).
    # valgrind and gdb: make bench-callgrind (bench/callgrind.py); util-linux: taskset
    # (bench/scale.sh);
    # etcd-server etcd-client: `discover etcd` (tests/integration/test_discover_etcd.py).
    # python3-pytest-xdist: make test spreads each integration pass over two processes
    # (tests/integration/run-passes.sh).
    pkgs="$pkgs libcmocka-dev python3-pytest python3-websockets curl nghttp2-client nginx-light libnginx-mod-stream
        haproxy wrk strace procps
        systemd groff-base logrotate prometheus chromium jq
        redis-server dnsutils
        keepalived iproute2 valgrind gdb util-linux
        etcd-server etcd-client python3-pytest-xdist"
fi
if [ "$what" = lint ]; then
    pkgs="$pkgs cppcheck clang-tidy clang"
fi
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages:$missing (run as root, or install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# nginx's and haproxy's packages would start system services; the tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends $missing
