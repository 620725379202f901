"""Routing: `location =` exact before longest prefix; server blocks by listen address, then
Host against server_name; the first server of a listen is its default; `return` with text and
variables."""
import pytest

from conftest import Conn, http_get

LOCATIONS = """
http {
    server {
        listen 127.0.0.1:@port@;
        location = /exact { return 200 "exact"; }
        location /exact { return 200 "prefix-exact"; }
        location /a { return 200 "a"; }
        location /a/b { return 200 "a/b"; }
        location /a/b/c/d { return 200 "a/b/c/d"; }
        location = / { return 200 "root-exact"; }
        location / { return 200 "root"; }
    }
}
"""


@pytest.fixture
def locs(ballast):
    return ballast(LOCATIONS)


@pytest.mark.parametrize("path,want", [
    ("/exact", "exact"),
    ("/exact?x=1", "exact"),          # the query string is not part of the match
    ("/exact/", "prefix-exact"),
    ("/exactly", "prefix-exact"),     # prefix match is a string prefix, as in nginx
    ("/a", "a"),
    ("/ab", "a"),
    ("/a/x", "a"),
    ("/a/b", "a/b"),
    ("/a/b/c", "a/b"),                # longest matching prefix, not the first declared
    ("/a/b/c/d/e", "a/b/c/d"),
    ("/", "root-exact"),
    ("/zzz", "root"),
    ("/A", "root"),                   # case-sensitive
])
def test_location_match(locs, path, want):
    r = locs.get(path)
    assert r.status == 200, r
    assert r.body.decode() == want, "path %s: got %r want %r" % (path, r.body, want)


def test_return_response_is_well_formed(locs):
    with locs.conn() as c:
        r = c.request("GET", "/exact")
        assert r.status == 200
        assert r.header("server").startswith("ballast"), r.headers
        assert r.header("content-length") == "5", r.headers
        assert r.body == b"exact"
        # keep-alive by default on HTTP/1.1: a second request on the same connection works
        r = c.request("GET", "/a")
        assert (r.status, r.body) == (200, b"a"), r


def test_return_codes_and_variables(ballast):
    b = ballast("""
http {
    server {
        listen 127.0.0.1:@port@;
        location = /port { return 200 "port=$server_port"; }
        location = /notfound { return 404; }
        location = /teapot { return 418 "short and stout"; }
        location = /empty { return 204; }
        location = /gone { return 410 "gone\n"; }
    }
}
""")
    r = b.get("/port")
    assert (r.status, r.text) == (200, "port=%d" % b.port), r
    r = b.get("/notfound")
    assert r.status == 404, r
    assert r.header("server").startswith("ballast"), r.headers
    r = b.get("/teapot")
    assert (r.status, r.body) == (418, b"short and stout"), r
    with b.conn() as c:
        r = c.request("GET", "/empty")
        assert r.status == 204 and r.body == b"", r
        assert r.header("content-length") in (None, "0"), r.headers
        r = c.request("GET", "/gone")
        assert (r.status, r.body) == (410, b"gone\n"), r


def test_head_on_return_has_no_body(locs):
    with locs.conn() as c:
        r = c.request("HEAD", "/exact")
        assert r.status == 200, r
        # the next response must parse cleanly, proving no body bytes followed the HEAD answer
        r = c.request("GET", "/a")
        assert (r.status, r.body) == (200, b"a"), r


SERVER_NAMES = """
http {
    server {
        listen 127.0.0.1:@port@;
        server_name first.test;
        location / { return 200 "first"; }
    }
    server {
        listen 127.0.0.1:@port@;
        server_name b.test www.b.test;
        location / { return 200 "b"; }
    }
    server {
        listen 127.0.0.1:@port@;
        server_name c.test;
        location / { return 200 "c"; }
    }
    server {
        listen 127.0.0.1:@port2@;
        server_name b.test;
        location / { return 200 "other-listen-b"; }
    }
    server {
        listen 127.0.0.1:@port2@;
        server_name z.test;
        location / { return 200 "other-listen-z"; }
    }
}
"""


@pytest.fixture
def names(ballast):
    return ballast(SERVER_NAMES)


@pytest.mark.parametrize("host,want", [
    ("first.test", "first"),
    ("b.test", "b"),
    ("www.b.test", "b"),
    ("c.test", "c"),
    ("c.test:8080", "c"),             # the port in Host is not part of the name
    ("unknown.test", "first"),        # default server = first for that listen
    ("test", "first"),
    ("127.0.0.1", "first"),
])
def test_server_name(names, host, want):
    r = names.get("/", host=host)
    assert r.status == 200, r
    assert r.body.decode() == want, "Host %s: got %r want %r" % (host, r.body, want)


@pytest.mark.parametrize("host,want", [
    ("b.test", "other-listen-b"),
    ("z.test", "other-listen-z"),
    ("first.test", "other-listen-b"),  # names of another listen do not apply; default is first
    ("c.test", "other-listen-b"),
])
def test_server_chosen_by_listen_first(names, host, want):
    r = names.get("/", host=host, port=names.values["port2"])
    assert r.status == 200, r
    assert r.body.decode() == want, "Host %s: got %r want %r" % (host, r.body, want)


def test_http10_without_host_goes_to_default(names):
    with Conn(names.port) as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"first"), r


def test_host_per_request_on_one_connection(names):
    """Each request on a keep-alive connection is routed by its own Host."""
    with names.conn() as c:
        for host, want in [("b.test", b"b"), ("c.test", b"c"), ("x.test", b"first"),
                           ("b.test", b"b")]:
            r = c.request("GET", "/", host=host)
            assert (r.status, r.body) == (200, want), (host, r)


def test_location_chooses_upstream(ballast, backend):
    a = backend("a")
    bb = backend("b")
    b = ballast("""
http {
    server {
        listen 127.0.0.1:@port@;
        location /api/ { proxy_pass http://127.0.0.1:@pa@; }
        location = /api/exact { proxy_pass http://127.0.0.1:@pb@; }
        location / { proxy_pass http://127.0.0.1:@pb@; }
    }
}
""", pa=a.port, pb=bb.port)
    for path, want in [("/api/x", "a"), ("/api/exact", "b"), ("/api/exact/y", "a"),
                       ("/other", "b"), ("/apix", "b")]:
        r = b.get(path)
        assert r.status == 200, (path, r)
        assert r.header("x-backend") == want, "%s -> %r want %s" % (path, r.header("x-backend"), want)
        # the request target is forwarded unchanged (proxy_pass without a URI part)
        assert r.json()["target"] == path, r.json()


def test_request_body_to_return_location_is_discarded(ballast):
    """A body sent to a `return` location is read and dropped: the next request on the
    connection is parsed from the right place (no smuggling through an unread body)."""
    b = ballast("""
http {
    server {
        listen 127.0.0.1:@port@;
        location = /r { return 200 "r"; }
        location = /s { return 200 "s"; }
    }
}
""")
    with b.conn() as c:
        smuggled = b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n"
        r = c.request("POST", "/r", body=smuggled)
        assert (r.status, r.body) == (200, b"r"), r
        c.send(b"POST /r HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"r"), r
        r = c.request("GET", "/r")
        assert (r.status, r.body) == (200, b"r"), r
        # nothing else is pending: the smuggled GET /s never ran
        assert not c.closed(0.3) and c.buf == b"", c.buf


def test_listen_port_only_and_several_listens(ballast):
    b = ballast("""
http {
    server {
        listen @port@;
        listen 127.0.0.1:@port2@;
        location / { return 200 "both"; }
    }
}
""")
    for p in (b.port, b.values["port2"]):
        r = b.get("/", port=p)
        assert (r.status, r.body) == (200, b"both"), (p, r)


# Locations match the normalized path, as in nginx: an encoded, doubled or dotted path cannot
# walk around a location meant to guard it.
GUARDED = """
http {
    server {
        listen 127.0.0.1:@port@;
        location /admin/ { return 403; }
        location = "/a b" { return 200 "space"; }
        location /api/ { proxy_pass http://127.0.0.1:@pb@/v2/; }
        location / { return 200 "open $uri"; }
    }
}
"""


@pytest.mark.parametrize("path,status", [
    ("/admin/", 403),
    ("/%61dmin/", 403),
    ("//admin/", 403),
    ("/x/../admin/", 403),
    ("/x/%2e%2e/admin/", 403),
    ("/./admin/", 403),
    ("/admin%2Fsecret", 403),
    ("/a%20b", 200),
    ("/../etc/passwd", 400),
    ("/%2e%2e/etc", 400),
    ("/bad%zz", 400),
    ("/nul%00", 400),
])
def test_location_matches_normalized_path(ballast, backend, path, status):
    be = backend("b")
    b = ballast(GUARDED, pb=be.port)
    with Conn(b.port) as c:
        c.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        r = c.read_response()
        assert r.status == status, "path %s: %r" % (path, r)


def test_normalized_uri_variable_and_proxy_uri(ballast, backend):
    be = backend("b")
    b = ballast(GUARDED, pb=be.port)
    r = b.get("/x//y/./z/../w")
    assert (r.status, r.body) == (200, b"open /x/y/w"), r
    # proxy_pass with a URI part: the matched prefix of the normalized path is replaced and
    # the rest re-escaped; the query goes as sent
    r = b.get("/api//users/%7Ejo%20e/./me?q=a%20b")
    assert r.status == 200, r
    assert r.json()["target"] == "/v2/users/~jo%20e/me?q=a%20b", r.json()
