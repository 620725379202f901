"""Fixtures and helpers for the ballast integration suite: the real binary, real backends.

Everything here is stdlib: a raw HTTP/1.1 backend (threaded, so tests control framing byte by
byte), a raw client that reads responses by their framing, port allocation, and a `Ballast`
process wrapper that fails the test when the process exits badly or a sanitizer reports.

Tests import the helpers with `from conftest import ...` (pytest puts this directory on
sys.path because it has no __init__.py).
"""
import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

ASAN = os.environ.get("BALLAST_ASAN") == "1"
TSAN = os.environ.get("BALLAST_TSAN") == "1"   # make integration-tsan
# Everything is slower under ASan and TSan: scale waits (never assertions on ballast's own
# timeouts' lower bounds).
SLOW = 4.0 if ASAN or TSAN else 1.0


def _resolve_bin():
    b = os.environ.get("BALLAST_BIN", "./ballast")
    if os.path.isabs(b):
        return b
    if os.path.exists(b):
        return os.path.abspath(b)
    return os.path.join(REPO, b)


BALLAST_BIN = _resolve_bin()

# make integration-uring: every ballast the fixtures start runs its workers on this event loop
# backend (`use METHOD;` put into the config's events block, see with_events_use).
EVENTS_USE = os.environ.get("BALLAST_EVENTS_USE") or None


def io_uring_refused():
    """Why this kernel refuses io_uring (a sentence), or None when it allows it. Asks the
    kernel directly, the way ballast's start-up does (io_uring_setup with 4 entries)."""
    import ctypes
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            if f.read().strip() == "2":
                return "kernel.io_uring_disabled is 2"
    except OSError:
        pass
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)     # struct io_uring_params, zeroed
    nr = 425                                       # io_uring_setup on every architecture
    fd = libc.syscall(nr, 4, params)
    if fd < 0:
        e = ctypes.get_errno()
        return "io_uring_setup() failed (%s)" % os.strerror(e)
    os.close(fd)
    return None


def with_events_use(text, method):
    """The config text with `use METHOD;` in its events block, adding an events block at the
    end when there is none. A config that names its method itself keeps it (the tests of
    `use` do). Lines keep their numbers: tests read file:line in ballast's messages."""
    if re.search(r"(?m)(^|[{;])\s*use\s+[A-Za-z_]+\s*;", text):
        return text
    out, n = re.subn(r"(?<![\w$@\"'])events\s*\{", "events { use %s;" % method, text, count=1)
    if n:
        return out
    return text + "\nevents { use %s; }\n" % method


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "serial: timing-sensitive; make test runs it after the concurrent passes, "
        "with nothing of its own beside it (tests/integration/run-passes.sh)")


def pytest_collection_modifyitems(config, items):
    """make integration-uring on a kernel that refuses io_uring: every test is skipped with
    the reason, said once on the terminal (ballast itself would warn and fall back to epoll,
    so the run would only repeat `make integration`)."""
    if EVENTS_USE != "io_uring":
        return
    why = io_uring_refused()
    if not why:
        return
    msg = "io_uring refused by this kernel (%s): the io_uring run is skipped" % why
    print("\n" + msg)
    mark = pytest.mark.skip(reason=msg)
    for item in items:
        item.add_marker(mark)


SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "ThreadSanitizer")


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------

_port_lock = threading.Lock()
_ports_given = set()
# Below the kernel's ephemeral range (32768-60999), so an outgoing connection cannot take a
# port between the moment we pick it and the moment ballast or a backend binds it.
_PORT_LO, _PORT_HI = 10000, 32000
_SLICE = 1000
_slice = []   # [lo, hi, lock fd or None], claimed at the first free_port()
_port_next = [0]


def _claim_slice():
    """Claims a slice of _SLICE ports for this process: the first one whose lock file in
    $TMPDIR/ballast-test-ports no other process holds (flock, released when the process ends).
    Pytest processes that run side by side (make test's three passes, pytest-xdist workers,
    another checkout's suite) so never hand out the same port, whether it is about to be bound
    or kept unbound by closed_port for a whole test. With every slice taken, or no lock
    directory, the whole range is shared as before (the bind check still applies)."""
    d = os.path.join(tempfile.gettempdir(), "ballast-test-ports")
    try:
        os.makedirs(d, mode=0o1777, exist_ok=True)
    except OSError:
        return [_PORT_LO, _PORT_HI, None]
    for lo in range(_PORT_LO, _PORT_HI, _SLICE):
        try:
            fd = os.open(os.path.join(d, str(lo)), os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return [lo, min(lo + _SLICE, _PORT_HI), fd]
    return [_PORT_LO, _PORT_HI, None]


def free_port():
    """A TCP port on 127.0.0.1 in this process's slice that nothing is bound to and that this
    session has not given out since it last went round the slice (by then the tests that took
    a port are long over; one still bound is skipped by the bind)."""
    with _port_lock:
        if not _slice:
            _slice[:] = _claim_slice()
            _port_next[0] = _slice[0] + (os.getpid() * 97) % (_slice[1] - _slice[0])
        lo, hi = _slice[0], _slice[1]
        for _ in range(2 * (hi - lo)):
            p = _port_next[0]
            if p + 1 >= hi:
                # A port given out is reached again only after a whole round.
                _port_next[0] = lo
                _ports_given.clear()
            else:
                _port_next[0] = p + 1
            if p in _ports_given:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", p))  # no SO_REUSEADDR: TIME_WAIT leftovers also skip
            except OSError:
                continue
            finally:
                s.close()
            _ports_given.add(p)
            return p
    raise RuntimeError("no free port in %d-%d" % (lo, hi - 1))


def closed_port():
    """A port with nothing listening on it (connections are refused)."""
    return free_port()


def listening_ports():
    """Ports with a socket in LISTEN state (IPv4 and IPv6), as {port: count}."""
    out = {}
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "0A":
                        port = int(parts[1].rsplit(":", 1)[1], 16)
                        out[port] = out.get(port, 0) + 1
        except FileNotFoundError:
            pass
    return out


def port_refuses(port, timeout=1.0):
    """True when a connect to 127.0.0.1:port is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------------------------
# Deterministic bodies (for SHA-256 checks of big transfers)
# --------------------------------------------------------------------------------------------

_BLOCK = 65536


def _base_block(seed):
    out = bytearray()
    h = hashlib.sha256(b"ballast-seed-%d" % seed).digest()
    while len(out) < _BLOCK:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:_BLOCK])


_base_cache = {}


def gen_blocks(size, seed=1, block=_BLOCK):
    """Yields `size` bytes derived from seed, in pieces of at most `block` bytes. Every 64 KiB
    block starts with its index, so a lost, repeated or reordered block changes the digest."""
    base = _base_cache.get(seed)
    if base is None:
        base = _base_cache[seed] = _base_block(seed)
    i = 0
    sent = 0
    while sent < size:
        b = struct.pack(">Q", i) + base[8:]
        n = min(len(b), size - sent)
        b = b[:n]
        for off in range(0, n, block):
            yield b[off:off + block]
        sent += n
        i += 1


def gen_body(size, seed=1):
    return b"".join(gen_blocks(size, seed))


def body_sha256(size, seed=1):
    h = hashlib.sha256()
    for b in gen_blocks(size, seed):
        h.update(b)
    return h.hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Raw HTTP client
# --------------------------------------------------------------------------------------------


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection before a complete response head arrived."""


class IncompleteResponse(Exception):
    """The peer closed the connection in the middle of a framed response body."""

    def __init__(self, msg, response=None):
        super().__init__(msg)
        self.response = response


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = ""
        self.headers = []  # [(name, value)] in order
        self.body = b""
        self.raw_head = b""
        self.framing = None  # "none", "length", "chunked", "close"
        self.body_len = 0
        self.body_sha256 = None
        self.trailers = []

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def headers_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def has_token(self, name, token):
        """True when header `name` lists `token` (comma-separated, case-insensitive)."""
        for v in self.headers_all(name):
            if token.lower() in [t.strip().lower() for t in v.split(",")]:
                return True
        return False

    def json(self):
        return json.loads(self.body.decode())

    @property
    def text(self):
        return self.body.decode("latin-1")

    def __repr__(self):
        return "<Response %s %s framing=%s headers=%r body=%r>" % (
            self.status, self.reason, self.framing, self.headers, self.body[:200])


class Conn:
    """A raw client connection to 127.0.0.1:port with a read buffer (pipelining safe)."""

    def __init__(self, port, timeout=5.0, rcvbuf=None):
        self.port = port
        self.timeout = timeout * SLOW
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, n=262144):
        """Reads more bytes into the buffer. Returns False on EOF or reset."""
        if self.eof:
            return False
        try:
            d = self.sock.recv(n)
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _read_line(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self._fill():
                raise ConnectionClosed("closed while reading a line")

    def _read_exact(self, n, sink):
        got = 0
        while got < n:
            if not self.buf and not self._fill():
                return got
            take = self.buf[:n - got]
            self.buf = self.buf[len(take):]
            sink(take)
            got += len(take)
        return got

    def read_head(self, limit=1 << 20):
        """Reads one response head. Returns a Response with status and headers only."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if len(self.buf) > limit:
                raise ValueError("response head too large")
            if not self._fill():
                raise ConnectionClosed("closed before a complete response head (got %r)"
                                       % self.buf[:300])
        head, self.buf = self.buf[:i], self.buf[i + 4:]
        r = Response()
        r.raw_head = head
        lines = head.split(b"\r\n")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0].decode("latin-1"))
        if not m:
            raise ValueError("malformed status line: %r" % lines[0][:200])
        r.version, r.status, r.reason = m.group(1), int(m.group(2)), m.group(3) or ""
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            r.headers.append((k, v.strip()))
        return r

    def read_response(self, method="GET", sink=None, keep_interim=False, limit_body=None):
        """Reads one complete response, framed as RFC 9112 section 6.3 says. Interim (1xx)
        responses are skipped unless keep_interim. With sink, body bytes go to sink(bytes)
        instead of .body (the SHA-256 and length are always computed)."""
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101 and not keep_interim:
                continue
            break
        h = hashlib.sha256()
        parts = []

        def take(b):
            h.update(b)
            r.body_len += len(b)
            if sink:
                sink(b)
            else:
                parts.append(b)

        te = ",".join(r.headers_all("transfer-encoding")).lower()
        cl = r.header("content-length")
        if method == "HEAD" or 100 <= r.status < 200 or r.status in (204, 304):
            r.framing = "none"
        elif te:
            r.framing = "chunked"
            if te.split(",")[-1].strip() != "chunked":
                raise ValueError("response with non-chunked transfer-encoding: %r" % te)
            while True:
                try:
                    line = self._read_line()
                except ConnectionClosed:
                    raise IncompleteResponse("closed inside a chunked body", r)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        try:
                            t = self._read_line()
                        except ConnectionClosed:
                            raise IncompleteResponse("closed inside the trailer", r)
                        if not t:
                            break
                        r.trailers.append(t)
                    break
                if self._read_exact(size, take) < size:
                    raise IncompleteResponse("closed inside a chunk", r)
                try:
                    crlf = self._read_line()
                except ConnectionClosed:
                    raise IncompleteResponse("closed after chunk data", r)
                if crlf != b"":
                    raise ValueError("chunk not followed by CRLF: %r" % crlf[:50])
        elif cl is not None:
            r.framing = "length"
            n = int(cl)
            if self._read_exact(n, take) < n:
                r.body = b"".join(parts)
                raise IncompleteResponse("closed after %d of %d body bytes" % (r.body_len, n), r)
        else:
            r.framing = "close"
            while True:
                if self.buf:
                    b, self.buf = self.buf, b""
                    take(b)
                if not self._fill():
                    break
        r.body = b"".join(parts)
        r.body_sha256 = h.hexdigest()
        return r

    def request(self, method="GET", path="/", headers=None, body=None, host="localhost",
                version="HTTP/1.1", sink=None):
        self.send(build_request(method, path, headers, body, host, version))
        return self.read_response(method, sink=sink)

    def closed(self, timeout=3.0):
        """Waits up to timeout for the peer to close. True on EOF or reset; False when the
        connection is still open at the deadline or data arrived (the data is kept)."""
        if self.eof:
            return True
        if self.buf:
            return False
        deadline = time.monotonic() + timeout * SLOW
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    return False
                except (ConnectionResetError, BrokenPipeError):
                    self.eof = True
                    return True
                if not d:
                    self.eof = True
                    return True
                self.buf += d
                return False
        finally:
            self.sock.settimeout(self.timeout)


def build_request(method="GET", path="/", headers=None, body=None, host="localhost",
                  version="HTTP/1.1"):
    """Builds request bytes. headers: list of (name, value) or dict. Host is added first unless
    host is None or headers carry one. A Content-Length is added for a body unless headers
    already frame it (Content-Length or Transfer-Encoding)."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    lines = ["%s %s %s" % (method, path, version)]
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if isinstance(body, str):
        body = body.encode()
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(data, size=1000):
    """Encodes data with chunked transfer coding, in chunks of `size` bytes."""
    out = b""
    for i in range(0, len(data), size):
        c = data[i:i + size]
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    return out + b"0\r\n\r\n"


def http_get(port, path="/", headers=None, host="localhost", timeout=5.0):
    """One GET on a fresh connection."""
    with Conn(port, timeout) as c:
        return c.request("GET", path, headers, host=host)


def curl(*args, timeout=15):
    """Runs curl with -sS and a max time; returns the CompletedProcess (bytes)."""
    cmd = ["curl", "-sS", "--max-time", str(int(timeout * SLOW))] + [str(a) for a in args]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout * SLOW + 10)


def wait_for(pred, timeout=3.0, interval=0.02):
    """Polls pred() until it returns something truthy or timeout (scaled under ASan)."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def _status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return _status_kb(pid, "VmRSS")


def reset_peak_rss(pid):
    """Resets VmHWM (peak RSS) of pid; False when the kernel or permissions do not allow it."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Tracks the peak VmRSS of a process over a block: samples every `interval` seconds in a
    thread and, when the kernel lets us reset it at the start, also reads VmHWM at the end, so
    a transfer shorter than the sampling interval is still covered. .max is the peak in KB."""

    def __init__(self, pid, interval=0.01):
        self.pid = pid
        self.interval = interval
        self.hwm = reset_peak_rss(pid)
        self.max = rss_kb(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.update()
            self._stop.wait(self.interval)

    def update(self):
        try:
            self.max = max(self.max, rss_kb(self.pid))
            if self.hwm:
                self.max = max(self.max, _status_kb(self.pid, "VmHWM"))
            self.samples += 1
        except OSError:
            pass
        return self.max

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(5)
        self.update()


# --------------------------------------------------------------------------------------------
# Backend: a raw, threaded HTTP/1.1 server
# --------------------------------------------------------------------------------------------


class BackendRequest:
    def __init__(self):
        self.method = self.target = self.version = None
        self.headers = []
        self.raw_head = b""
        self.body = b""  # kept only when small (< 1 MiB)
        self.body_len = 0
        self.body_sha256 = None
        self.chunked = False
        self.conn_id = 0
        self.index_on_conn = 0
        self.time = 0.0

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def headers_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    @property
    def query(self):
        q = self.target.split("?", 1)[1] if "?" in self.target else ""
        return dict(urllib.parse.parse_qsl(q, keep_blank_values=True))


class BackendConn:
    """One accepted connection, handed to route handlers."""

    def __init__(self, backend, sock, conn_id):
        self.backend = backend
        self.sock = sock
        self.conn_id = conn_id
        self.buf = b""
        self.requests = 0

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def reset(self):
        """Closes with SO_LINGER 0: the peer gets a RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def sleep(self, seconds):
        """Sleeps, but wakes when the backend stops. Returns False when stopped."""
        return not self.backend.stopping.wait(seconds)

    def _fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise EOFError
        self.buf += d

    def read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > (1 << 20):
                raise ValueError("line too long")
            self._fill()
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def read_exact(self, n, sink):
        while n > 0:
            if not self.buf:
                self._fill()
            take = self.buf[:n]
            self.buf = self.buf[len(take):]
            sink(take)
            n -= len(take)

    def read_head(self):
        while True:
            # Tolerate leading CRLFs (RFC 9112 section 2.2).
            while self.buf.startswith(b"\r\n"):
                self.buf = self.buf[2:]
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if len(self.buf) > (1 << 20):
                raise ValueError("head too large")
            self._fill()
        head, self.buf = self.buf[:i], self.buf[i + 4:]
        return head


def _reason(code):
    return {100: "Continue", 200: "OK", 201: "Created", 204: "No Content",
            301: "Moved Permanently", 304: "Not Modified", 400: "Bad Request",
            404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"
            }.get(code, "Status")


class Backend:
    """A threaded HTTP/1.1 test server on 127.0.0.1.

    Records every request (`requests`, with the raw head), counts accepted connections
    (`accepted`) and answers through route handlers: `route(prefix, fn)` where
    fn(req, conn) writes the answer with conn.send() and returns True to keep the connection
    or False to close it. Unrouted requests get `default_response`, driven by query parameters:
      status=N      status code (204, 304 and 1xx get no body)
      size=N seed=S body of N bytes from gen_blocks(N, S) (else a JSON echo of the request)
      text=T        body T
      chunked=1     chunked response (chunk=N bytes per chunk, default 64 KiB)
      close=1       close-delimited response (no Content-Length, connection closed after)
      connclose=1   Connection: close with a Content-Length, then close
      delay=SEC     wait before the response head
      readdelay=SEC wait before reading the request body
    Every response carries X-Backend: NAME.
    close_after=N closes each connection (silently, without Connection: close) after N
    responses.
    """

    def __init__(self, name="b", port=None, close_after=None, io_timeout=30.0,
                 host="127.0.0.1"):
        self.name = name
        self.host = host      # another loopback address (127.0.0.2) for DNS-named servers
        self.port = port or free_port()
        self.close_after = close_after
        self.io_timeout = io_timeout * SLOW
        self.routes = []
        self.requests = []
        self.accepted = 0
        self.body_bytes_sent = 0
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conns = {}
        self.threads = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, self.port))
        self.lsock.listen(512)
        self.lsock.settimeout(0.1)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name="backend-%s" % name)
        self.thread.start()

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def route(self, prefix, fn):
        self.routes.insert(0, (prefix, fn))
        return self

    def wait_requests(self, n, timeout=3.0):
        return wait_for(lambda: len(self.requests) >= n, timeout)

    def stop(self):
        self.stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        self.thread.join(5)
        with self.lock:
            socks = list(self.conns.values())
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self.threads):
            t.join(5)

    def _accept_loop(self):
        cid = 0
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            cid += 1
            with self.lock:
                self.accepted += 1
                self.conns[cid] = s
            t = threading.Thread(target=self._serve, args=(s, cid), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, s, cid):
        s.settimeout(self.io_timeout)
        # head and body go out in separate sends: without NODELAY, Nagle plus delayed ACKs
        # add 40 ms to every keep-alive exchange
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = BackendConn(self, s, cid)
        try:
            while not self.stopping.is_set():
                try:
                    head = c.read_head()
                except (EOFError, OSError):
                    return
                req = self._parse_head(head)
                req.conn_id = cid
                req.index_on_conn = c.requests
                c.requests += 1
                fn = None
                for prefix, f in self.routes:
                    if req.path.startswith(prefix):
                        fn = f
                        break
                if fn is None:
                    fn = self.default_response
                keep = fn(req, c)
                if not keep:
                    return
                if self.close_after and c.requests >= self.close_after:
                    return
        except Exception as e:  # keep the thread quiet; tests see the effect
            if not self.stopping.is_set():
                self.errors.append(repr(e))
        finally:
            with self.lock:
                self.conns.pop(cid, None)
            try:
                s.close()
            except OSError:
                pass

    def _parse_head(self, head):
        req = BackendRequest()
        req.raw_head = head
        req.time = time.monotonic()
        lines = head.split(b"\r\n")
        req.method, req.target, req.version = lines[0].decode("latin-1").split(" ", 2)
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            req.headers.append((k, v.strip()))
        return req

    def read_body(self, req, c):
        """Reads the request body per its framing; hashes it; keeps it when small."""
        h = hashlib.sha256()
        parts = []

        def take(b):
            h.update(b)
            req.body_len += len(b)
            if req.body_len <= (1 << 20):
                parts.append(b)

        te = ",".join(req.headers_all("transfer-encoding")).lower()
        if te:
            req.chunked = True
            while True:
                size = int(c.read_line().split(b";")[0].strip(), 16)
                if size == 0:
                    while c.read_line() != b"":
                        pass
                    break
                c.read_exact(size, take)
                if c.read_line() != b"":
                    raise ValueError("bad chunk framing from ballast")
        elif req.header("content-length") is not None:
            c.read_exact(int(req.header("content-length")), take)
        req.body = b"".join(parts) if req.body_len <= (1 << 20) else None
        req.body_sha256 = h.hexdigest()

    def record(self, req):
        with self.lock:
            self.requests.append(req)

    def echo(self, req):
        return {
            "server": self.name,
            "method": req.method,
            "target": req.target,
            "version": req.version,
            "headers": req.headers,
            "body_len": req.body_len,
            "body_sha256": req.body_sha256,
            "chunked": req.chunked,
            "conn_id": req.conn_id,
            "index_on_conn": req.index_on_conn,
        }

    def default_response(self, req, c):
        q = req.query
        if "readdelay" in q:
            c.sleep(float(q["readdelay"]))
        self.read_body(req, c)
        self.record(req)
        if "delay" in q:
            if not c.sleep(float(q["delay"])):
                return False
        status = int(q.get("status", "200"))
        close_delim = q.get("close") == "1"
        conn_close = q.get("connclose") == "1"
        use_chunked = q.get("chunked") == "1"
        no_body = status in (204, 304) or 100 <= status < 200
        if "size" in q:
            size = int(q["size"])
            seed = int(q.get("seed", "1"))
            blocks = lambda: gen_blocks(size, seed, int(q.get("chunk", _BLOCK)))
        else:
            if "text" in q:
                data = q["text"].encode()
            else:
                data = json.dumps(self.echo(req)).encode()
            size = len(data)
            blocks = lambda: iter([data] if data else [])
        hdrs = ["HTTP/1.1 %d %s" % (status, _reason(status)),
                "X-Backend: %s" % self.name,
                "X-Conn: %d" % c.conn_id]
        if not no_body:
            hdrs.append("Content-Type: application/octet-stream" if "size" in q
                        else "Content-Type: text/plain")
            if close_delim:
                pass
            elif use_chunked:
                hdrs.append("Transfer-Encoding: chunked")
            else:
                hdrs.append("Content-Length: %d" % size)
        if close_delim or conn_close:
            hdrs.append("Connection: close")
        c.send(("\r\n".join(hdrs) + "\r\n\r\n").encode())
        if no_body or req.method == "HEAD":
            return not (close_delim or conn_close)
        for b in blocks():
            if use_chunked and not close_delim:
                c.send(b"%x\r\n" % len(b) + b + b"\r\n")
            else:
                c.send(b)
            with self.lock:
                self.body_bytes_sent += len(b)
        if use_chunked and not close_delim:
            c.send(b"0\r\n\r\n")
        return not (close_delim or conn_close)


def raw_route(data, keep=False, read_body=True):
    """A route handler that answers with exactly `data` (bytes), then closes unless keep."""

    def fn(req, c):
        if read_body:
            c.backend.read_body(req, c)
        c.backend.record(req)
        c.send(data)
        return keep

    return fn


def reset_route(req, c):
    """Reads the request, then resets the connection (RST, no answer)."""
    c.backend.read_body(req, c)
    c.backend.record(req)
    c.reset()
    return False


def hold_route(seconds=30.0):
    """Reads the request, then sends nothing for `seconds` (or until the backend stops)."""

    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        c.sleep(seconds)
        return False

    return fn


# --------------------------------------------------------------------------------------------
# ballast process
# --------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)@")


def render(text, values):
    """Replaces @name@ with values[name]. A name starting with "port" that has no value gets a
    fresh free port (stored back into values)."""

    def sub(m):
        k = m.group(1)
        if k not in values:
            if k.startswith("port"):
                values[k] = free_port()
            else:
                raise KeyError("no value for placeholder @%s@" % k)
        return str(values[k])

    return _PLACEHOLDER.sub(sub, text)


_LISTEN = re.compile(r"(?<![\w$])listen\s+(?:(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.*]+):)?(\d+)\b")


class Ballast:
    """One ballast process. Use through the `ballast` fixture."""

    def __init__(self, workdir, conf, files=None, workers=1, values=None, args=None,
                 env=None):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.values = dict(values or {})
        self.values.setdefault("tmp", workdir)
        self.files = {}
        for name, text in (files or {}).items():
            p = os.path.join(workdir, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(render(text, self.values))
            self.files[name] = p
        text = render(conf, self.values)
        # Pin the worker count unless the test sets it: round-robin order, keep-alive counts
        # and pools are per worker.
        if workers is not None and not re.search(r"^\s*worker_processes\b", text, re.M):
            text = "worker_processes %s;\n" % workers + text
        if EVENTS_USE:
            text = with_events_use(text, EVENTS_USE)
        self.conf_text = text
        self.conf_path = os.path.join(workdir, "ballast.conf")
        with open(self.conf_path, "w") as f:
            f.write(text)
        alltext = text + "\n".join(open(p).read() for p in self.files.values())
        self.listen_ports = sorted({int(m.group(2)) for m in _LISTEN.finditer(alltext)})
        assert self.listen_ports, "no listen directive found in the config"
        self.port = self.values.get("port", self.listen_ports[0] if self.listen_ports else None)
        self.stderr_path = os.path.join(workdir, "ballast.stderr")
        self.stdout_path = os.path.join(workdir, "ballast.stdout")
        self.args = args
        self.env = env
        self.proc = None
        self.stopped_rc = None

    def start(self, wait=True):
        env = dict(os.environ)
        if ASAN:
            env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
            env["UBSAN_OPTIONS"] = "print_stacktrace=1"
        if self.env:
            env.update(self.env)
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        args = self.args if self.args is not None else ["-c", self.conf_path]
        self.proc = subprocess.Popen([BALLAST_BIN] + args, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err, cwd=self.dir, env=env,
                                     start_new_session=True)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=5.0):
        deadline = time.monotonic() + timeout * SLOW
        while True:
            if self.proc.poll() is not None:
                pytest.fail("ballast exited with %s during start-up; stderr:\n%s"
                            % (self.proc.returncode, self.stderr_text()[-4000:]))
            lp = listening_ports()
            if all(p in lp for p in self.listen_ports):
                return
            if time.monotonic() > deadline:
                pytest.fail("ballast did not listen on %s within %.0fs; stderr:\n%s"
                            % (self.listen_ports, timeout * SLOW, self.stderr_text()[-4000:]))
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def rss_kb(self):
        return rss_kb(self.proc.pid)

    def conn(self, port=None, timeout=5.0, **kw):
        return Conn(port or self.port, timeout, **kw)

    def get(self, path="/", headers=None, host="localhost", port=None, timeout=5.0):
        return http_get(port or self.port, path, headers, host, timeout)

    def url(self, path="/", port=None):
        return "http://127.0.0.1:%d%s" % (port or self.port, path)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None when still running."""
        try:
            return self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends sig and waits; kills after timeout. Returns the exit code (None if killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            rc = self.wait(timeout)
            if rc is None:
                self.kill()
                return None
        return self.proc.returncode

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def finish(self):
        """Teardown: stop, then return a list of problems (empty when all is well)."""
        if self.proc is None:
            return []
        problems = []
        was_running = self.proc.poll() is None
        rc = self.stop()
        if was_running and rc is None:
            problems.append("ballast (pid %d) did not exit within %.0fs of SIGTERM; killed"
                            % (self.proc.pid, 15 * SLOW))
        elif rc != 0:
            problems.append("ballast exited with code %s" % rc)
        for fh in (self._err, self._out):
            fh.close()
        err = self.stderr_text()
        for m in SANITIZER_MARKERS:
            if m in err:
                problems.append("sanitizer report (%s) in ballast stderr" % m)
                break
        if problems:
            problems.append("stderr (%s), last 6000 bytes:\n%s" % (self.stderr_path, err[-6000:]))
        return problems


@pytest.fixture
def backend():
    """Factory: backend(name="a", **kw) -> a started Backend, stopped at teardown."""
    made = []

    def make(name="b", **kw):
        b = Backend(name, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def ballast(tmp_path, backend):
    """Factory: ballast(conf, files=None, workers=1, wait=True, **values) -> started Ballast.

    conf is an nginx-dialect config with @name@ placeholders: @port...@ get free ports unless
    given, @tmp@ is the instance's directory; any other @name@ must be passed as a keyword.
    `worker_processes 1;` is prepended unless the config sets it (workers=None: prepend
    nothing). At teardown ballast gets SIGTERM; the test fails if it does not exit in time,
    exits nonzero, or a sanitizer wrote a report. (Depends on `backend` so that backends
    outlive ballast.)"""
    made = []

    def start(conf, files=None, workers=1, wait=True, args=None, env=None, **values):
        d = str(tmp_path / ("ballast%d" % len(made)))
        b = Ballast(d, conf, files=files, workers=workers, values=values, args=args, env=env)
        made.append(b)
        b.start(wait=wait)
        return b

    yield start
    problems = []
    for b in made:
        try:
            problems += b.finish()
        except Exception as e:  # keep cleaning up the others
            problems.append("teardown error: %r" % e)
            b.kill()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def proxy_conf(to, *, group="app", upstream="", keepalive=None, location="", server="",
               http="", main="", error_log=None, listen="127.0.0.1:@port@"):
    """The suite's one config builder: one server on `listen` whose `location /` proxies to `to`.

    to         a proxy_pass target without the scheme ("127.0.0.1:@pb@"), or a list of `server`
               lines (text after "server", without the ";") that become upstream `group`,
               which location / then proxies to
    upstream   more lines inside the upstream block, written before the servers (a balancing
               method such as "least_conn;", `check ...`)
    keepalive  N: the group keeps N idle connections per worker; the location also carries
               nginx's `proxy_http_version 1.1;` and `proxy_set_header Connection "";`, which
               ballast accepts and does not need, so the text stays a valid nginx config
    location   more lines inside location /
    server     more lines inside the server block (other locations, error_page, ...)
    http       more lines inside the http block, before the upstream
    main       lines before the http block
    error_log  a level ("info"): the error log goes to @tmp@/error.log at that level

    A file whose tests share settings binds them once with functools.partial. Write a config
    inline only when its text is what the test is about (routing tables, the seeds' configs,
    grammar errors) or it has no proxy location."""
    if isinstance(to, str):
        group_block, target = "", to
    else:
        lines = [upstream] + ["server %s;" % s for s in to]
        if keepalive:
            lines.append("keepalive %d;" % keepalive)
        group_block = "upstream %s {\n%s\n    }" % (
            group, "\n".join("        " + ln for ln in lines if ln))
        target = group
    loc = [location]
    if keepalive:
        loc[:0] = ["proxy_http_version 1.1;", 'proxy_set_header Connection "";']
    head = [main]
    if error_log:
        head.append("error_log @tmp@/error.log %s;" % error_log)
    return """%s
http {
    %s
    %s
    server {
        listen %s;
        %s
        location / {
            proxy_pass http://%s;
%s
        }
    }
}
""" % ("\n".join(h for h in head if h), http, group_block, listen, server, target,
       "\n".join("            " + ln for ln in loc if ln))


def still_serving(port, path="/alive", status=200, body=None, timeout=5.0):
    """Asserts that ballast on `port` still serves: a request on a fresh connection gets a
    complete answer with `status` (and `body` when given). A refused or closed connection, or a
    truncated answer, fails the test. Returns the response."""
    with Conn(port, timeout) as c:
        try:
            r = c.request("GET", path)
        except (ConnectionClosed, IncompleteResponse) as e:
            pytest.fail("ballast on :%d is not serving: %s" % (port, e))
    assert r.status == status, "want %d from %s, got %r" % (status, path, r)
    if body is not None:
        assert r.body == body, "want body %r from %s, got %r" % (body, path, r)
    return r


_SKMEM = re.compile(r":(\d+)\s+\S+:(\d+)\s+skmem:\(r(\d+),rb(\d+),t(\d+),tb(\d+),f(\d+),w(\d+)")


def skmem(port):
    """The kernel's memory figures (ss -tm) of each established connection accepted on port:
    dicts of peer (the client's port), r, rb (receive queue and buffer), t, tb (send), f, w
    (queued for sending)."""
    out = subprocess.run(["ss", "-tmnH", "state", "established", "( sport = :%d )" % port],
                         stdout=subprocess.PIPE, text=True, timeout=10).stdout
    return [dict(zip(("peer", "r", "rb", "t", "tb", "f", "w"), map(int, m.groups()[1:])))
            for m in _SKMEM.finditer(out)]


def run_ballast(args, cwd=None, timeout=10.0):
    """Runs ballast to completion (for -t, -v, -h). Returns CompletedProcess with text."""
    env = dict(os.environ)
    if ASAN:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    return subprocess.run([BALLAST_BIN] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=cwd, env=env, timeout=timeout * SLOW,
                          text=True, errors="replace")
