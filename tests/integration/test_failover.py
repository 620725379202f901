"""Failover (issue 3): max_fails/fail_timeout, proxy_next_upstream and its limits, retry_budget,
active checks, outlier ejection, 503 + Retry-After / error_page when nothing is left, and the
upstream snippets of seeds 001 and 004. In-process backends, one worker (round robin is then
deterministic), transitions read from an error log at info."""
import functools
import os
import re
import threading
import time

import pytest

from conftest import (SLOW, Conn, ConnectionClosed, IncompleteResponse, closed_port, free_port,
                      hold_route, proxy_conf, raw_route, render, reset_route, run_ballast,
                      wait_for)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

# Every config here: group app of the given servers, location / proxied to it, the error log at
# info in @tmp@/error.log (the tests read health transitions from it).
conf = functools.partial(proxy_conf, error_log="info")


def addr_re(port):
    return re.compile(r"127\.0\.0\.1:%d(?!\d)" % port)


class ErrorLog:
    def __init__(self, px):
        self.path = os.path.join(px.dir, "error.log")

    def text(self):
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def lines(self, word, port=None):
        """Lines containing `word` (and the address 127.0.0.1:port when given)."""
        rx = addr_re(port) if port is not None else None
        return [ln for ln in self.text().splitlines()
                if word in ln and (rx is None or rx.search(ln))]

    def wait(self, word, port=None, timeout=5.0, count=1):
        """Polls (bounded) until `count` matching lines exist; returns them, or [] when
        there are fewer at the deadline."""

        def enough():
            ls = self.lines(word, port)
            return ls if len(ls) >= count else None

        return wait_for(enough, timeout) or []


def status_route(code, body=b"x", keep=True):
    """Answers every request with `code` (Content-Length framed)."""

    def fn(req, c):
        c.backend.read_body(req, c)
        c.backend.record(req)
        c.send(b"HTTP/1.1 %d Status\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n"
               % (code, c.backend.name.encode(), len(body)) + body)
        return keep

    return fn


def hits(be, prefix="/"):
    """Requests the backend got whose path starts with prefix (checks excluded by choice of
    prefix)."""
    return [r for r in list(be.requests) if r.path.startswith(prefix)]


def get_all(px, n, prefix, method="GET", body=None):
    """n requests on fresh connections; returns [(status, backend or None)]."""
    out = []
    for i in range(n):
        with px.conn() as c:
            r = c.request(method, "%s/%d" % (prefix, i), body=body)
            out.append((r.status, r.header("x-backend")))
    return out


def targets_by_backend(bes, prefix):
    """{target: [backend names that saw it, one entry per time]}"""
    seen = {}
    for be in bes:
        for r in hits(be, prefix):
            seen.setdefault(r.target, []).append(be.name)
    return seen


# --------------------------------------------------------------------------------------------
# max_fails / fail_timeout
# --------------------------------------------------------------------------------------------

def test_max_fails_counts_exactly_n_failures(ballast, backend):
    """A server that resets every request gets exactly max_fails attempts within fail_timeout;
    every client request is still answered by its peer."""
    bad, good = backend("bad"), backend("good")
    bad.route("/", reset_route)
    px = ballast(conf(["127.0.0.1:@pbad@ max_fails=3 fail_timeout=30s", "127.0.0.1:@pgood@"]),
                 pbad=bad.port, pgood=good.port)
    got = get_all(px, 20, "/n")
    assert got == [(200, "good")] * 20, got
    assert len(hits(bad, "/n")) == 3, "bad server got %d attempts, max_fails=3" % len(bad.requests)


def test_max_fails_refused_server_skipped_for_fail_timeout(ballast, backend):
    """A refused server is left out for fail_timeout after max_fails failures (a backend that
    starts listening on its port meanwhile gets nothing), then tried again."""
    good = backend("good")
    dead = closed_port()
    ft = 3.0 * SLOW
    px = ballast(conf(["127.0.0.1:@pdead@ max_fails=2 fail_timeout=%dms" % (ft * 1000),
                       "127.0.0.1:@pgood@"]), pdead=dead, pgood=good.port)
    t0 = time.monotonic()
    got = get_all(px, 8, "/m1")
    assert got == [(200, "good")] * 8, got
    t_marked = time.monotonic()
    revived = backend("revived", port=dead)
    got = get_all(px, 8, "/m2")
    in_window = time.monotonic() - t0
    assert got == [(200, "good")] * 8, got
    if in_window >= ft * 0.9:
        pytest.skip("machine too slow: the window checks took %.1fs of fail_timeout %.1fs"
                    % (in_window, ft))
    assert hits(revived) == [], "server marked by max_fails got %d requests within fail_timeout" \
        % len(revived.requests)
    time.sleep(max(0.0, t_marked + ft + 0.3 - time.monotonic()))
    got = get_all(px, 8, "/m3")
    assert all(s == 200 for s, _ in got), got
    assert len(hits(revived, "/m3")) >= 1, "server not tried again after fail_timeout: %s" % got


def test_no_live_upstreams_until_fail_timeout(ballast, backend):
    """Every server out through max_fails: as nginx 1.22, later requests within fail_timeout
    get 502 at once ("no live upstreams", no server tried); once it ends they are tried."""
    a, b = backend("a"), backend("b")
    failing = {"on": True}

    def maybe_reset(req, c):
        if failing["on"]:
            return reset_route(req, c)
        return status_route(200, b"fine")(req, c)

    a.route("/", maybe_reset)
    b.route("/", maybe_reset)
    ft = 2.0 * SLOW
    px = ballast(conf(["127.0.0.1:@pa@ max_fails=1 fail_timeout=%dms" % (ft * 1000),
                       "127.0.0.1:@pb@ max_fails=1 fail_timeout=%dms" % (ft * 1000)]),
                 pa=a.port, pb=b.port)
    t0 = time.monotonic()
    r = px.get("/first")
    assert r.status == 502, r
    assert (len(hits(a)), len(hits(b))) == (1, 1), "attempts a=%d b=%d, want 1 and 1" % (
        len(hits(a)), len(hits(b)))
    failing["on"] = False
    r = px.get("/second")
    if time.monotonic() - t0 < ft * 0.9:
        assert r.status == 502, r
        assert (len(hits(a)), len(hits(b))) == (1, 1), "a dead server was tried again"
        log = ErrorLog(px)
        assert log.wait("no live upstreams", timeout=3), "no 'no live upstreams' in the log:\n%s" \
            % log.text()[-3000:]
    time.sleep(max(0.0, t0 + ft + 0.3 - time.monotonic()))
    r = px.get("/third")
    assert (r.status, r.body) == (200, b"fine"), r


# --------------------------------------------------------------------------------------------
# proxy_next_upstream
# --------------------------------------------------------------------------------------------

def test_next_upstream_error_refused(ballast, backend):
    good = backend("good")
    px = ballast(conf(["127.0.0.1:@pdead@ max_fails=0", "127.0.0.1:@pgood@"]),
                 pdead=closed_port(), pgood=good.port)
    got = get_all(px, 20, "/e")
    assert got == [(200, "good")] * 20, got
    assert len(hits(good, "/e")) == 20


@pytest.mark.parametrize("listed", [True, False], ids=["timeout_listed", "timeout_not_listed"])
def test_next_upstream_timeout(ballast, backend, listed):
    """A backend that never answers: with `timeout` listed (the default) the request goes to
    the other server after proxy_read_timeout; without it the client gets 504."""
    hold, good = backend("hold"), backend("good")
    hold.route("/", hold_route(30))
    loc = "proxy_read_timeout 300ms;" + ("" if listed else " proxy_next_upstream error;")
    px = ballast(conf(["127.0.0.1:@ph@ max_fails=0", "127.0.0.1:@pg@"], location=loc),
                 ph=hold.port, pg=good.port)
    got = []
    for i in range(4):
        t0 = time.monotonic()
        r = px.get("/t/%d" % i, timeout=10)
        got.append((r.status, r.header("x-backend"), time.monotonic() - t0, "/t/%d" % i))
    held = {r.target for r in hits(hold, "/t")}
    assert held, "round robin over 2 servers never picked the silent one in 4 requests"
    for status, be, dt, target in got:
        if target in held:
            want = (200, "good") if listed else (504, None)
            assert (status, be) == want, (target, status, be, want)
            assert dt >= 0.25, "answered after %.2fs, before proxy_read_timeout 300ms" % dt
        else:
            assert (status, be) == (200, "good"), (target, status, be)
    if listed:
        assert len(hits(good, "/t")) == 4
    else:
        assert len(hits(good, "/t")) == 4 - len(held)


@pytest.mark.parametrize("listed", [True, False], ids=["invalid_header_listed",
                                                       "invalid_header_not_listed"])
def test_next_upstream_invalid_header(ballast, backend, listed):
    junk, good = backend("junk"), backend("good")
    junk.route("/", raw_route(b"SSH-2.0-OpenSSH_9.2 not http at all\r\n\r\n"))
    loc = "proxy_next_upstream error timeout%s;" % (" invalid_header" if listed else "")
    px = ballast(conf(["127.0.0.1:@pj@ max_fails=0", "127.0.0.1:@pg@"], location=loc),
                 pj=junk.port, pg=good.port)
    got = get_all(px, 6, "/ih")
    junked = {r.target for r in hits(junk, "/ih")}
    assert junked, "round robin never picked the junk server in 6 requests"
    if listed:
        assert got == [(200, "good")] * 6, got
    else:
        assert got.count((502, None)) == len(junked), (got, junked)
        assert got.count((200, "good")) == 6 - len(junked), got


def test_invalid_header_always_counts_as_failure(ballast, backend):
    """An invalid response head marks the server even when invalid_header is not listed."""
    junk, good = backend("junk"), backend("good")
    junk.route("/", raw_route(b"garbage\r\n\r\n"))
    px = ballast(conf(["127.0.0.1:@pj@ max_fails=1 fail_timeout=30s", "127.0.0.1:@pg@"]),
                 pj=junk.port, pg=good.port)
    got = get_all(px, 10, "/ihf")
    assert len(hits(junk, "/ihf")) == 1, "junk server got %d requests" % len(hits(junk, "/ihf"))
    assert got.count((502, None)) == 1 and got.count((200, "good")) == 9, got


# (status the bad server answers, proxy_next_upstream, retried?, counts as a failure?)
STATUS_CASES = [
    (503, "error timeout", False, False),
    (503, "error timeout http_503", True, True),
    (500, "error timeout http_500", True, True),
    (502, "error timeout http_502", True, True),
    (504, "error timeout http_504", True, True),
    (429, "error timeout http_429", True, True),
    (404, "error timeout http_404", True, False),
    (403, "error timeout http_403", True, False),
    (404, "error timeout", False, False),
]


@pytest.mark.parametrize("code,directive,retried,failure", STATUS_CASES,
                         ids=["%d-%s" % (c[0], c[1].replace(" ", "+")) for c in STATUS_CASES])
def test_next_upstream_http_status(ballast, backend, code, directive, retried, failure):
    """A listed status is retried on the other server; an unlisted one reaches the client.
    5xx/429 answers count towards max_fails only when listed; 403/404 never."""
    bad, good = backend("bad"), backend("good")
    bad.route("/", status_route(code, b"from bad"))
    px = ballast(conf(["127.0.0.1:@pbad@ max_fails=1 fail_timeout=30s", "127.0.0.1:@pgood@"],
                      location="proxy_next_upstream %s;" % directive),
                 pbad=bad.port, pgood=good.port)
    got = get_all(px, 10, "/s")
    nbad = len(hits(bad, "/s"))
    if failure:
        assert nbad == 1, "bad server got %d requests; a listed %d counts as a failure " \
                          "(max_fails=1)" % (nbad, code)
    else:
        assert nbad >= 4, "bad server got %d of 10 requests; %d must not count as a failure" \
                          % (nbad, code)
    if retried:
        assert got == [(200, "good")] * 10, got
    else:
        assert got.count((code, "bad")) == nbad, got
        assert got.count((200, "good")) == 10 - nbad, got


def test_retries_exhausted_after_5xx_give_last_response(ballast, backend):
    """Every server answers a listed 503: the client gets the last server's own answer (its
    body and headers), not a 502."""
    x, y = backend("x"), backend("y")
    x.route("/", status_route(503, b"x is busy"))
    y.route("/", status_route(503, b"y is busy"))
    px = ballast(conf(["127.0.0.1:@px@ max_fails=0", "127.0.0.1:@py@ max_fails=0"],
                      location="proxy_next_upstream error timeout http_503;"),
                 px=x.port, py=y.port)
    for i in range(4):
        r = px.get("/last/%d" % i)
        tried = sorted((rq.time, be.name) for be in (x, y) for rq in hits(be, "/last/%d" % i))
        assert [n for _, n in tried] in (["x", "y"], ["y", "x"]), tried
        last = tried[-1][1]
        assert (r.status, r.header("x-backend"), r.body) == (
            503, last, b"%s is busy" % last.encode()), (r, tried)


@pytest.mark.parametrize("where", ["http", "server", "location"])
def test_next_upstream_contexts(ballast, backend, where):
    """proxy_next_upstream, _tries and _timeout are accepted in http, server and location."""
    bad, good = backend("bad"), backend("good")
    bad.route("/", status_route(503, b"bad"))
    d = ("proxy_next_upstream error timeout http_503; proxy_next_upstream_tries 2; "
         "proxy_next_upstream_timeout 5s;")
    px = ballast(conf(["127.0.0.1:@pbad@ max_fails=0", "127.0.0.1:@pgood@ max_fails=0"],
                      **{where: d}), pbad=bad.port, pgood=good.port)
    got = get_all(px, 6, "/ctx")
    assert got == [(200, "good")] * 6, got
    assert hits(bad, "/ctx"), "round robin never picked the 503 server"


def test_next_upstream_off(ballast, backend):
    """`off`: a refused server's request is not retried (the client gets 502); the failure
    still counts for max_fails, so it happens once."""
    good = backend("good")
    px = ballast(conf(["127.0.0.1:@pdead@ max_fails=1 fail_timeout=30s", "127.0.0.1:@pgood@"],
                      location="proxy_next_upstream off;"),
                 pdead=closed_port(), pgood=good.port)
    got = get_all(px, 10, "/off")
    assert got.count((502, None)) == 1 and got.count((200, "good")) == 9, got


def test_next_upstream_tries_limits_attempts(ballast, backend):
    """proxy_next_upstream_tries 2 with three failing servers: 502 after exactly 2 attempts,
    on 2 different servers."""
    bes = [backend(n) for n in "xyz"]
    for be in bes:
        be.route("/", reset_route)
    px = ballast(conf(["127.0.0.1:@p%d@ max_fails=0" % i for i in range(3)],
                      location="proxy_next_upstream_tries 2;"),
                 **{"p%d" % i: be.port for i, be in enumerate(bes)})
    got = get_all(px, 3, "/tries")
    assert got == [(502, None)] * 3, got
    seen = targets_by_backend(bes, "/tries")
    assert len(seen) == 3, seen
    for target, names in seen.items():
        assert len(names) == 2 and len(set(names)) == 2, \
            "%s reached %s; want exactly 2 attempts on 2 servers" % (target, names)


def test_next_upstream_tries_default_is_every_server(ballast, backend):
    bes = [backend(n) for n in "xyz"]
    for be in bes:
        be.route("/", reset_route)
    px = ballast(conf(["127.0.0.1:@p%d@ max_fails=0" % i for i in range(3)]),
                 **{"p%d" % i: be.port for i, be in enumerate(bes)})
    got = get_all(px, 2, "/all")
    assert got == [(502, None)] * 2, got
    for target, names in targets_by_backend(bes, "/all").items():
        assert sorted(names) == ["x", "y", "z"], (target, names)


def test_next_upstream_timeout_bounds_retrying(ballast, backend):
    """proxy_next_upstream_timeout 600ms with read timeouts of 400ms on three silent servers:
    a second attempt starts (0.4s < 0.6s), no third (0.8s > 0.6s); the client gets 504."""
    bes = [backend(n) for n in "xyz"]
    for be in bes:
        be.route("/", hold_route(30))
    px = ballast(conf(["127.0.0.1:@p%d@ max_fails=0" % i for i in range(3)],
                      location="proxy_read_timeout 400ms; proxy_next_upstream_timeout 600ms;"),
                 **{"p%d" % i: be.port for i, be in enumerate(bes)})
    t0 = time.monotonic()
    r = px.get("/nut", timeout=10)
    dt = time.monotonic() - t0
    assert r.status == 504, r
    time.sleep(0.3)  # any further attempt would have reached a backend by now
    names = targets_by_backend(bes, "/nut").get("/nut", [])
    assert len(names) == 2 and len(set(names)) == 2, "attempts: %s, want 2 servers" % names
    assert 0.55 <= dt <= 0.8 + 1.5 * SLOW, "504 after %.2fs" % dt


def test_retry_goes_to_a_different_server(ballast, backend):
    """Two of three servers reset every request: each request is tried at most once per
    server and answered by the third."""
    b1, b2, good = backend("b1"), backend("b2"), backend("good")
    b1.route("/", reset_route)
    b2.route("/", reset_route)
    px = ballast(conf(["127.0.0.1:@p1@ max_fails=0", "127.0.0.1:@p2@ max_fails=0",
                       "127.0.0.1:@pg@ max_fails=0"]), p1=b1.port, p2=b2.port, pg=good.port)
    got = get_all(px, 12, "/diff")
    assert got == [(200, "good")] * 12, got
    seen = targets_by_backend([b1, b2, good], "/diff")
    for target, names in seen.items():
        assert len(names) == len(set(names)), "%s tried twice on one server: %s" % (target, names)
        assert "good" in names, (target, names)
    assert len(hits(b1, "/diff")) + len(hits(b2, "/diff")) >= 4, \
        "b1=%d b2=%d: round robin should send most requests to a failing server first" % (
            len(hits(b1, "/diff")), len(hits(b2, "/diff")))


# --------------------------------------------------------------------------------------------
# Non-idempotent requests, responses already started
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PATCH", "LOCK"])
@pytest.mark.parametrize("non_idempotent", [False, True], ids=["default", "non_idempotent"])
def test_non_idempotent_not_retried_after_sent(ballast, backend, method, non_idempotent):
    """The backend reads the whole request, then resets without answering. A POST/PATCH/LOCK
    was sent, so it is not retried (502, one backend saw it) unless non_idempotent is listed."""
    rst, good = backend("rst"), backend("good")
    rst.route("/", reset_route)
    loc = "proxy_next_upstream error timeout non_idempotent;" if non_idempotent else ""
    px = ballast(conf(["127.0.0.1:@pr@ max_fails=0", "127.0.0.1:@pg@ max_fails=0"],
                      location=loc), pr=rst.port, pg=good.port)
    got = get_all(px, 4, "/ni", method=method, body=b"payload")
    seen = targets_by_backend([rst, good], "/ni")
    reset_targets = [t for t, names in seen.items() if "rst" in names]
    assert reset_targets, "round robin over 2 servers never picked the resetting one: %s" % seen
    if non_idempotent:
        assert got == [(200, "good")] * 4, got
        for t in reset_targets:
            assert sorted(seen[t]) == ["good", "rst"], seen
    else:
        assert got.count((502, None)) == len(reset_targets), (got, seen)
        assert got.count((200, "good")) == 4 - len(reset_targets), (got, seen)
        for t, names in seen.items():
            assert len(names) == 1, "%s %s reached %s; want exactly one backend" % (
                method, t, names)
    assert all(r.body == b"payload" for r in hits(good, "/ni")), "body lost on the way"


def test_get_still_retried_after_reset(ballast, backend):
    """Control for the test above: the same failure on a GET is retried."""
    rst, good = backend("rst"), backend("good")
    rst.route("/", reset_route)
    px = ballast(conf(["127.0.0.1:@pr@ max_fails=0", "127.0.0.1:@pg@ max_fails=0"]),
                 pr=rst.port, pg=good.port)
    assert get_all(px, 4, "/g") == [(200, "good")] * 4


def test_no_retry_once_response_started(ballast, backend):
    """The backend sends a head and part of the body, then closes: the client already has
    bytes, so it gets a truncated response and the request reached one backend only."""
    part, good = backend("part"), backend("good")

    def partial(req, c):
        part.read_body(req, c)
        part.record(req)
        c.send(b"HTTP/1.1 200 OK\r\nX-Backend: part\r\nContent-Length: 100\r\n\r\n0123456789")
        c.sleep(0.3)  # ballast has relayed the head by now
        return False

    part.route("/", partial)
    px = ballast(conf(["127.0.0.1:@pp@ max_fails=0", "127.0.0.1:@pg@ max_fails=0"],
                      location="proxy_next_upstream error timeout invalid_header http_502;"),
                 pp=part.port, pg=good.port)
    truncated = 0
    for i in range(4):
        with px.conn() as c:
            c.send(b"GET /rs/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            try:
                r = c.read_response()
                assert (r.status, r.header("x-backend")) == (200, "good"), r
            except (IncompleteResponse, ConnectionClosed) as e:
                truncated += 1
                resp = getattr(e, "response", None)
                if resp is not None:
                    assert resp.status == 200 and resp.header("x-backend") == "part", resp
    seen = targets_by_backend([part, good], "/rs")
    started = [t for t, names in seen.items() if "part" in names]
    assert started, seen
    assert truncated == len(started), "truncated responses: %d, %s" % (truncated, seen)
    for t, names in seen.items():
        assert len(names) == 1, "%s reached %s after the response had started" % (t, names)


# --------------------------------------------------------------------------------------------
# retry_budget
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("budget,refused", [("0% min=0", True), ("0% min=1", False)],
                         ids=["budget0", "min1"])
def test_retry_budget(ballast, backend, budget, refused):
    """`retry_budget 0% min=0` allows no retry in flight: requests that met the refused server
    get the failure. With min=1 sequential requests always have budget for their one retry."""
    good = backend("good")
    px = ballast(conf(["127.0.0.1:@pdead@ max_fails=0", "127.0.0.1:@pgood@ max_fails=0"],
                      upstream="retry_budget %s;" % budget),
                 pdead=closed_port(), pgood=good.port)
    got = get_all(px, 10, "/rb")
    if refused:
        # round robin sends a first attempt to the refused server at least every other time
        assert got.count((502, None)) >= 3, got
        assert got.count((502, None)) + got.count((200, "good")) == 10, got
    else:
        assert got == [(200, "good")] * 10, got


def test_retry_budget_bites_under_concurrency(ballast, backend):
    """10% of the group's in-flight requests, min=1: with 10 slow requests in flight on the good
    server, at most max(1, 10% of ~11) = 1 retry may run; requests failing on the refused
    server beyond that get 502 instead of a retry."""
    slow = backend("slow")
    px = ballast(conf(["127.0.0.1:@pdead@ max_fails=0", "127.0.0.1:@pslow@ max_fails=0"],
                      upstream="retry_budget 10% min=1;"),
                 pdead=closed_port(), pslow=slow.port)
    # Every request sleeps 1.5 s on the live server: a retry stays in flight that long.
    results = []
    lock = threading.Lock()

    def one(i):
        try:
            with Conn(px.port, 10) as c:
                r = c.request("GET", "/cb/%d?delay=1.5" % i)
                st = r.status
        except Exception as e:  # recorded, asserted below
            st = repr(e)
        with lock:
            results.append(st)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in ts:
        t.start()
        time.sleep(0.02)
    for t in ts:
        t.join(15 * SLOW)
    assert len(results) == 10, results
    # about half the requests go to the refused server first; one or two of them may retry
    # while the budget allows, the rest must be refused
    assert 2 <= results.count(502) <= 6, results
    assert results.count(200) + results.count(502) == 10, results


# --------------------------------------------------------------------------------------------
# Active health checks
# --------------------------------------------------------------------------------------------

def check_path_route(code, body=b"alive"):
    """/status answers (code, body); everything else 200 with the backend name. Returns
    (route, switch): switch(code, body) makes checks parsed from now on get the new answer
    (decided by the request's parse time, so a check in flight at the switch is not
    miscounted)."""
    plan = [(0.0, (code, body), (code, body))]

    def switch(new_code, new_body=b"alive"):
        now = time.monotonic()
        plan[0] = (now, plan[0][2], (new_code, new_body))
        return now

    def fn(req, c):
        be = c.backend
        be.read_body(req, c)
        be.record(req)
        if req.path.startswith("/status"):
            since, old, new = plan[0]
            code, body = new if req.time >= since else old
        else:
            code, body = 200, be.name.encode()
        c.send(b"HTTP/1.1 %d Status\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n"
               % (code, be.name.encode(), len(body)) + (b"" if req.method == "HEAD" else body))
        return False

    return fn, switch


def test_tcp_check_marks_closed_port_down(ballast, backend):
    good = backend("good")
    dead = closed_port()
    interval, timeout, fall = 0.2, 0.2, 3
    t0 = time.monotonic()
    px = ballast(conf(["127.0.0.1:@pdead@ max_fails=0", "127.0.0.1:@pgood@"],
                      upstream="check interval=200 rise=2 fall=3 timeout=200 type=tcp;",
                      location="proxy_next_upstream off;"),
                 pdead=dead, pgood=good.port)
    log = ErrorLog(px)
    down = log.wait("is down", dead, timeout=5)
    dt = time.monotonic() - t0
    assert down, "no 'is down' for 127.0.0.1:%d; log:\n%s" % (dead, log.text()[-3000:])
    bound = fall * (interval + timeout) + 1.5 * SLOW
    assert dt <= bound, "marked down after %.2fs, bound %.2fs" % (dt, bound)
    assert not log.lines("is down", good.port), log.text()[-3000:]
    # down by checks: no traffic, so no 502 even with proxy_next_upstream off
    got = get_all(px, 10, "/tc")
    assert got == [(200, "good")] * 10, got
    # the port comes alive: the server is up again after rise successes
    ups = len(log.lines("is up", dead))
    revived = backend("revived", port=dead)
    t1 = time.monotonic()
    up = log.wait("is up", dead, timeout=5, count=ups + 1)
    assert up, "no 'is up' for 127.0.0.1:%d; log:\n%s" % (dead, log.text()[-3000:])
    assert time.monotonic() - t1 <= 2 * (interval + timeout) + 1.5 * SLOW
    got = get_all(px, 10, "/tc2")
    assert len(hits(revived, "/tc2")) >= 4, got


def test_tcp_check_port_parameter(ballast, backend):
    """check port=N probes that port instead of the server's: a refused check port takes a
    working server out."""
    a, b = backend("a"), backend("b")
    px = ballast(conf(["127.0.0.1:@pa@", "127.0.0.1:@pb@"],
                      upstream="check interval=200 rise=1 fall=1 timeout=200 type=tcp "
                               "port=@pcheck@;"),
                 pa=a.port, pb=b.port, pcheck=closed_port())
    log = ErrorLog(px)
    assert log.wait("is down", a.port, timeout=5), log.text()[-3000:]
    assert log.wait("is down", b.port, timeout=5), log.text()[-3000:]
    r = px.get("/cp")
    assert r.status == 503 and r.header("x-backend") is None, r


def test_http_check_503_marks_down_then_rise(ballast, backend):
    a, b = backend("a"), backend("b")
    route_a, switch_a = check_path_route(503)
    a.route("/", route_a)
    b.route("/", check_path_route(200)[0])
    rise = 3
    px = ballast(conf(["127.0.0.1:@pa@ max_fails=0", "127.0.0.1:@pb@ max_fails=0"],
                      upstream=r'''check interval=200 rise=%d fall=2 timeout=500 type=http;
        check_http_send "HEAD /status HTTP/1.0\r\n\r\n";
        check_http_expect_alive http_2xx http_3xx;''' % rise),
                 pa=a.port, pb=b.port)
    log = ErrorLog(px)
    assert log.wait("is down", a.port, timeout=5), "a answers 503 to the check; log:\n%s" \
        % log.text()[-3000:]
    assert hits(a, "/status"), "no check request reached a"
    assert hits(a, "/status")[0].method == "HEAD", hits(a, "/status")[0].raw_head
    assert not log.lines("is down", b.port), log.text()[-3000:]
    got = get_all(px, 10, "/hc")
    assert got == [(200, "b")] * 10, got
    assert hits(a, "/hc") == []
    # recovery: rise consecutive successes, counted at the backend
    ups = len(log.lines("is up", a.port))
    flip = switch_a(200)
    up = log.wait("is up", a.port, timeout=5, count=ups + 1)
    assert up, log.text()[-3000:]
    ok_checks = [r for r in hits(a, "/status") if r.time >= flip]
    assert len(ok_checks) >= rise, "up after %d successful checks, rise=%d" % (
        len(ok_checks), rise)
    got = get_all(px, 10, "/hc2")
    assert len(hits(a, "/hc2")) >= 4, got


def test_http_check_expect_body(ballast, backend):
    """A 200 whose body lacks the expected substring is a failed check (times with units)."""
    a, b = backend("a"), backend("b")
    a.route("/", check_path_route(200, b"status: degraded")[0])
    b.route("/", check_path_route(200, b"status: ok\n")[0])
    px = ballast(conf(["127.0.0.1:@pa@ max_fails=0", "127.0.0.1:@pb@ max_fails=0"],
                      upstream=r'''check interval=200ms rise=1 fall=1 timeout=1s type=http;
        check_http_send "GET /status HTTP/1.0\r\n\r\n";
        check_http_expect_alive http_2xx;
        check_http_expect_body "status: ok";'''),
                 pa=a.port, pb=b.port)
    log = ErrorLog(px)
    assert log.wait("is down", a.port, timeout=5), log.text()[-3000:]
    time.sleep(0.5)
    assert not log.lines("is down", b.port), log.text()[-3000:]
    got = get_all(px, 6, "/eb")
    assert got == [(200, "b")] * 6, got


def test_check_default_down_true(ballast, backend):
    """default_down=true: the server starts down, so the group has nothing to offer (503 with
    Retry-After) until the first `rise` successful checks."""
    a = backend("a")
    route = check_path_route(200)[0]
    # Checks after the first wait (unanswered, within the check's timeout) until the first
    # request has had its answer: however slow the machine, rise=2 cannot be reached first.
    first_answered, checks = threading.Event(), []

    def gated(req, c):
        if req.path.startswith("/status"):
            checks.append(req.path)
            if len(checks) > 1:
                first_answered.wait(20 * SLOW)
        return route(req, c)

    a.route("/", gated)
    iv = int(1000 * SLOW)
    px = ballast(conf(["127.0.0.1:@pa@"],
                      upstream=r'''check interval=%d rise=2 fall=1 timeout=%d type=http default_down=true;
        check_http_send "GET /status HTTP/1.0\r\n\r\n";
        check_http_expect_alive http_2xx;''' % (iv, int(30000 * SLOW))),
                 pa=a.port)
    r = px.get("/dd")
    first_answered.set()
    assert r.status == 503, r
    ra = r.header("retry-after")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, r.headers
    assert hits(a, "/dd") == []
    log = ErrorLog(px)
    assert log.wait("is up", a.port, timeout=5 * iv / 1000), log.text()[-3000:]
    r = px.get("/dd2")
    assert (r.status, r.header("x-backend")) == (200, "a"), r


def test_check_default_down_false_serves_at_once(ballast, backend):
    a = backend("a")
    a.route("/", check_path_route(200)[0])
    px = ballast(conf(["127.0.0.1:@pa@"],
                      upstream=r'''check interval=5000 rise=2 fall=1 timeout=1000 type=http;
        check_http_send "GET /status HTTP/1.0\r\n\r\n";'''),
                 pa=a.port)
    r = px.get("/df")
    assert (r.status, r.header("x-backend")) == (200, "a"), r


# --------------------------------------------------------------------------------------------
# Outlier detection
# --------------------------------------------------------------------------------------------

def drive(px, seconds, prefix, pace=0.02, stop=None):
    """Sequential GETs on fresh connections for `seconds` (bounded); returns
    [(t, status, backend)]. stop(): optional early exit."""
    out = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and i < 5000:
        r = px.get("%s/%d" % (prefix, i))
        out.append((time.monotonic(), r.status, r.header("x-backend")))
        i += 1
        if stop and stop():
            break
        time.sleep(pace)
    return out


def test_outlier_ejects_half_open_probe_and_backoff(ballast, backend):
    bad, b, c = backend("bad"), backend("b"), backend("c")
    bad.route("/", status_route(503, b"bad"))
    base = 1.0
    px = ballast(conf(["127.0.0.1:@pbad@", "127.0.0.1:@pb@", "127.0.0.1:@pc@"],
                      upstream="outlier consecutive_5xx=3 consecutive_gateway=3 interval=100ms "
                               "base_ejection=1s max_ejection=50%;"),
                 pbad=bad.port, pb=b.port, pc=c.port)
    log = ErrorLog(px)
    first = drive(px, 5 * SLOW, "/o1", stop=lambda: log.lines("ejected", bad.port))
    assert log.lines("ejected", bad.port), "not ejected after %d requests; log:\n%s" % (
        len(first), log.text()[-3000:])
    assert sum(1 for _, s, _ in first if s == 503) >= 3, first
    t_last = hits(bad)[-1].time
    # 1 s ejected, one probe (fails), 2 s ejected, one probe
    second = drive(px, base * 3 + 1.5 * SLOW, "/o2")
    probes = [r.time for r in hits(bad, "/o2")]
    assert len(probes) >= 2, "probes at %s (last hit before at %.2f)" % (probes, t_last)
    gap1, gap2 = probes[0] - t_last, probes[1] - probes[0]
    assert 0.8 * base <= gap1 <= base + 1.5 * SLOW, "first probe %.2fs after ejection" % gap1
    assert gap2 >= 1.6 * base and gap2 > gap1 * 1.3, \
        "second ejection %.2fs, first %.2fs: want base x 2" % (gap2, gap1)
    # while ejected the others take everything: 503s only from the probes
    assert sum(1 for _, s, _ in second if s != 200) == len(probes), second
    assert len(log.lines("ejected", bad.port)) >= 2, log.text()[-3000:]


def test_outlier_consecutive_gateway_bare_seconds(ballast, backend):
    """A server that resets every request (connect-level failures, retried, so clients see only
    200s) is ejected after consecutive_gateway=3; base_ejection=30 is seconds (a bare number),
    so it gets nothing for the rest of the test."""
    rst, b, c = backend("rst"), backend("b"), backend("c")
    rst.route("/", reset_route)
    px = ballast(conf(["127.0.0.1:@pr@ max_fails=0", "127.0.0.1:@pb@", "127.0.0.1:@pc@"],
                      upstream="outlier consecutive_5xx=100 consecutive_gateway=3 interval=100ms "
                               "base_ejection=30 max_ejection=50%;"),
                 pr=rst.port, pb=b.port, pc=c.port)
    log = ErrorLog(px)
    first = drive(px, 5 * SLOW, "/cg1", stop=lambda: log.lines("ejected", rst.port))
    assert log.lines("ejected", rst.port), "not ejected after %d requests; log:\n%s" % (
        len(first), log.text()[-3000:])
    assert all(s == 200 for _, s, _ in first), first
    after = drive(px, 1.5, "/cg2")
    assert all(s == 200 for _, s, _ in after), after
    assert hits(rst, "/cg2") == [], "ejected for 30 s, yet got %d requests within 1.5 s" % len(
        hits(rst, "/cg2"))


def test_outlier_max_ejection_percent(ballast, backend):
    """Two bad servers of three with max_ejection=33%: one is ejected, the other keeps getting
    traffic."""
    x, y, good = backend("x"), backend("y"), backend("good")
    x.route("/", status_route(503, b"x"))
    y.route("/", status_route(503, b"y"))
    px = ballast(conf(["127.0.0.1:@px@", "127.0.0.1:@py@", "127.0.0.1:@pg@"],
                      upstream="outlier consecutive_5xx=2 consecutive_gateway=2 interval=100ms "
                               "base_ejection=30s max_ejection=33%;"),
                 px=x.port, py=y.port, pg=good.port)
    drive(px, 1.5, "/mx1")
    drive(px, 1.5, "/mx2")
    late = {be.name: len([r for r in hits(be, "/mx2")]) for be in (x, y)}
    log = ErrorLog(px)
    assert log.lines("ejected"), log.text()[-3000:]
    assert sorted(late.values())[0] == 0 and sorted(late.values())[1] >= 5, \
        "requests in the last 1.5 s: %s; want one ejected (none) and one still in rotation" % late


def test_outlier_all_ejected_gives_503_retry_after(ballast, backend):
    x, y = backend("x"), backend("y")
    x.route("/", status_route(503, b"x"))
    y.route("/", status_route(503, b"y"))
    px = ballast(conf(["127.0.0.1:@px@", "127.0.0.1:@py@"],
                      upstream="outlier consecutive_5xx=2 consecutive_gateway=2 interval=100ms "
                               "base_ejection=30s max_ejection=100%;"),
                 px=x.port, py=y.port)
    log = ErrorLog(px)
    drive(px, 3 * SLOW, "/ae", stop=lambda: log.lines("ejected", x.port)
          and log.lines("ejected", y.port))
    assert log.lines("ejected", x.port) and log.lines("ejected", y.port), log.text()[-3000:]
    r = px.get("/ae-after")
    assert r.status == 503 and r.header("x-backend") is None, r
    ra = r.header("retry-after")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, r.headers


# --------------------------------------------------------------------------------------------
# Nothing left: 503 + Retry-After, error_page
# --------------------------------------------------------------------------------------------

ALL_DOWN_CHECK = "check interval=100 rise=1 fall=1 timeout=200 type=tcp;"


def all_down(ballast, location="", server="", files=None, http=""):
    d1, d2 = closed_port(), closed_port()
    px = ballast(conf(["127.0.0.1:@pd1@", "127.0.0.1:@pd2@"], upstream=ALL_DOWN_CHECK,
                      location=location, server=server, http=http),
                 files=files, pd1=d1, pd2=d2)
    log = ErrorLog(px)
    assert log.wait("is down", d1, timeout=5) and log.wait("is down", d2, timeout=5), \
        log.text()[-3000:]
    return px


def test_all_down_503_retry_after(ballast):
    px = all_down(ballast)
    r = px.get("/x")
    assert r.status == 503, r
    ra = r.header("retry-after")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, r.headers


def test_all_down_error_page_return(ballast):
    px = all_down(ballast, server='''error_page 503 /busy.html;
        location = /busy.html { return 200 "busy\\n"; }''')
    r = px.get("/x")
    assert (r.status, r.body) == (503, b"busy\n"), r


def test_all_down_error_page_status_override(ballast):
    px = all_down(ballast, server='''error_page 502 503 =200 /busy.html;
        location = /busy.html { return 200 "busy\\n"; }''')
    r = px.get("/x")
    assert (r.status, r.body) == (200, b"busy\n"), r


def test_all_down_error_page_static_root(ballast):
    px = all_down(ballast, server='''error_page 502 503 504 /errors/busy.html;
        location /errors/ { root @tmp@/www; }''',
                  files={"www/errors/busy.html": "<p>busy, try later</p>\n"})
    r = px.get("/x")
    assert (r.status, r.body) == (503, b"<p>busy, try later</p>\n"), r


def test_error_page_location_context(ballast):
    """error_page in the location, on a 502 from a refused server (no checks)."""
    px = ballast(conf(["127.0.0.1:@pd@"],
                      location="error_page 502 =200 /sorry;",
                      server='location = /sorry { return 200 "sorry\\n"; }'), pd=closed_port())
    r = px.get("/y")
    assert (r.status, r.body) == (200, b"sorry\n"), r


def test_root_serves_files_and_404(ballast):
    px = ballast("""
http {
    server {
        listen 127.0.0.1:@port@;
        location /static/ { root @tmp@/www; }
    }
}
""", files={"www/static/a.txt": "hello\n"})
    r = px.get("/static/a.txt")
    assert (r.status, r.body) == (200, b"hello\n"), r
    with px.conn() as c:
        r = c.request("HEAD", "/static/a.txt")
        assert r.status == 200 and r.body == b"", r
    r = px.get("/static/missing.txt")
    assert r.status == 404, r


# --------------------------------------------------------------------------------------------
# Seeds 001 and 004 (Chinese HA notes), addresses rewritten to 127.0.0.1 ports
# --------------------------------------------------------------------------------------------

SEED001_TCP = """
error_log @tmp@/error.log info;
http {
    upstream backend {
        server 127.0.0.1:@pa@ max_fails=2  fail_timeout=10s weight=1;
        server 127.0.0.1:@pb@ max_fails=2  fail_timeout=10s weight=1;
        check interval=%s rise=1 fall=3 timeout=%s type=tcp;
    }
    server {
        listen 127.0.0.1:@port@;
        location / {
            proxy_pass http://backend;
            proxy_next_upstream error timeout;
            proxy_next_upstream_timeout 0;
            proxy_next_upstream_tries 0;
        }
    }
}
"""

SEED001_HTTP = r"""
error_log @tmp@/error.log info;
http {
    upstream backend {
        server 127.0.0.1:@pa@ max_fails=2  fail_timeout=10s weight=1;
        server 127.0.0.1:@pb@ max_fails=2  fail_timeout=10s weight=1;
        check interval=%s rise=1 fall=3 timeout=%s type=http;
        check_http_send "HEAD /status HTTP/1.0\r\n\r\n";
        check_http_expect_alive http_2xx http_3xx;
    }
    server {
        listen 127.0.0.1:@port@;
        location / { proxy_pass http://backend; }
    }
}
"""

SEED004 = """
http {
    upstream test {
        server 127.0.0.1:@pa@;
        server 127.0.0.1:@pb@;
    }
    upstream test2 {
      server 127.0.0.1:@pc@ max_fails=1
      fail_timeout=30s;
      server 127.0.0.1:@pd@ backup;
    }
    server {
        listen 127.0.0.1:@port@;
        location / { proxy_pass http://test2; }
        location /rr/ { proxy_pass http://test; }
    }
}
"""


@pytest.mark.parametrize("text", [SEED001_TCP % ("3000", "2000"),
                                  SEED001_HTTP % ("3000", "2000"), SEED004],
                         ids=["seed001_tcp", "seed001_http", "seed004"])
def test_seed_configs_load_unchanged(tmp_path, text):
    p = tmp_path / "seed.conf"
    p.write_text(render(text, {"tmp": str(tmp_path), "port": free_port(), "pa": closed_port(),
                               "pb": closed_port(), "pc": closed_port(), "pd": closed_port()}))
    r = run_ballast(["-t", "-c", str(p)])
    assert r.returncode == 0, "ballast -t failed:\n%s%s" % (r.stdout, r.stderr)


def test_seed001_tcp_check_takes_dead_server_out(ballast, backend):
    """Seed 001's tcp check with interval 300ms and timeout 200ms instead of 3000/2000 (fall=3
    would take ~9 s otherwise): a dead server is marked down after 3 failed checks, one success
    (rise=1) brings it back."""
    a = backend("a")
    dead = closed_port()
    t0 = time.monotonic()
    px = ballast(SEED001_TCP % ("300", "200"), pa=a.port, pb=dead)
    log = ErrorLog(px)
    assert log.wait("is down", dead, timeout=5), log.text()[-3000:]
    assert time.monotonic() - t0 <= 3 * (0.3 + 0.2) + 1.5 * SLOW
    got = get_all(px, 6, "/s1")
    assert got == [(200, "a")] * 6, got
    ups = len(log.lines("is up", dead))
    revived = backend("b", port=dead)
    assert log.wait("is up", dead, timeout=3, count=ups + 1), log.text()[-3000:]
    got = get_all(px, 6, "/s1b")
    assert len(hits(revived, "/s1b")) >= 2, got


def test_seed001_http_check(ballast, backend):
    """Seed 001's HEAD /status check (interval 300ms instead of 3000): a server answering 503
    to it is taken out; 2xx/3xx keep a server in."""
    a, b = backend("a"), backend("b")
    a.route("/", check_path_route(503)[0])
    b.route("/", check_path_route(302)[0])
    px = ballast(SEED001_HTTP % ("300", "2000"), pa=a.port, pb=b.port)
    log = ErrorLog(px)
    assert log.wait("is down", a.port, timeout=5), log.text()[-3000:]
    assert all(r.method == "HEAD" and r.version == "HTTP/1.0" for r in hits(a, "/status"))
    time.sleep(0.4)
    assert not log.lines("is down", b.port), log.text()[-3000:]
    got = get_all(px, 6, "/s1h")
    assert got == [(200, "b")] * 6, got


def test_seed004_backup_takes_over_after_one_failure(ballast, backend):
    """Seed 004: `server A max_fails=1 fail_timeout=30s; server B backup;` -- A serves while
    healthy; after one failed request B takes the traffic (for fail_timeout)."""
    a, b = backend("a"), backend("b")
    failing = {"on": False}

    def a_route(req, c):
        if failing["on"]:
            return reset_route(req, c)
        return status_route(200, b"A")(req, c)

    a.route("/", a_route)
    x, y = backend("x"), backend("y")
    px = ballast(SEED004, pa=x.port, pb=y.port, pc=a.port, pd=b.port)
    got = get_all(px, 4, "/h")
    assert got == [(200, "a")] * 4, got
    assert hits(b) == []
    failing["on"] = True
    r = px.get("/fail")
    assert (r.status, r.header("x-backend")) == (200, "b"), r
    assert len(hits(a, "/fail")) == 1
    failing["on"] = False
    got = get_all(px, 6, "/after")
    assert got == [(200, "b")] * 6, got
    assert hits(a, "/after") == [], "A got traffic within fail_timeout after max_fails=1"
    # the plain group of the same seed: round robin over both
    got = [px.get("/rr/%d" % i).header("x-backend") for i in range(6)]
    assert sorted(got) == ["x"] * 3 + ["y"] * 3, got
