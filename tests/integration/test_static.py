"""Static files as nginx serves them (docs/static.md): root, alias, index, try_files, types and
`include mime.types`, validators and 304, single and multipart ranges and 416, expires,
add_header, gzip_static, disable_symlinks, path traversal, and a 10 GB sparse file served with
flat memory. Real curl and raw sockets; nginx itself answers the same config side by side where
the answers are compared."""
import gzip
import os
import re
import subprocess

import pytest

from conftest import ASAN, Conn, RssSampler, curl, render, wait_for
from conftest import Ballast
from nginx_ref import Nginx
from test_reload import Reloader

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIME = open(os.path.join(REPO, "conf", "mime.types")).read()
A_TXT = "0123456789abcdefghij"  # 20 bytes


def make_tree(root):
    """The files the tests serve, under root."""
    files = {
        "a.txt": A_TXT,
        "index.html": "<h1>home</h1>\n",
        "dir/index.html": "dir index\n",
        "empty/.keep": "",
        "style.css": "body{}\n",
        "blob.unknownext": "x",
        "img/logo.png": "PNGDATA",
        "big.js": "var x = 1;\n" * 500,
    }
    for name, text in files.items():
        p = os.path.join(root, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    with open(os.path.join(root, "big.js.gz"), "wb") as f:
        f.write(gzip.compress(files["big.js"].encode()))
    os.makedirs(os.path.join(os.path.dirname(root), "secret"), exist_ok=True)
    with open(os.path.join(os.path.dirname(root), "secret", "key"), "w") as f:
        f.write("TOPSECRET\n")
    with open(os.path.join(os.path.dirname(root), "outside.txt"), "w") as f:
        f.write("TOPSECRET\n")
    return root


def serve(ballast, tmp_path, body, **values):
    """ballast with `http { include mime.types; ... }` and the tree under @www@."""
    www = make_tree(str(tmp_path / "site" / "www"))
    conf = ("error_log @tmp@/error.log info;\nhttp {\ninclude mime.types;\n"
            "default_type application/octet-stream;\n%s\n}\n" % body)
    return ballast(conf, files={"mime.types": MIME}, www=www, **values), www


def get(port, path, headers=None, method="GET"):
    with Conn(port) as c:
        return c.request(method, path, headers)


SITE = """
server {
    listen 127.0.0.1:@port@;
    root @www@;
    index index.html;
    location /i/ { alias @www@/img/; }
}
"""


def test_root_index_types_and_errors(ballast, tmp_path):
    px, www = serve(ballast, tmp_path, SITE)
    r = get(px.port, "/a.txt")
    assert (r.status, r.body) == (200, A_TXT.encode()), r
    assert r.header("Content-Type") == "text/plain"
    assert r.header("Content-Length") == "20"
    assert r.header("Accept-Ranges") == "bytes"
    assert re.fullmatch(r'"[0-9a-f]+-14"', r.header("ETag")), r
    assert r.header("Last-Modified").endswith(" GMT")
    # types from the shipped mime.types, default_type for what it does not name
    assert get(px.port, "/style.css").header("Content-Type") == "text/css"
    assert get(px.port, "/i/logo.png").header("Content-Type") == "image/png"
    assert get(px.port, "/blob.unknownext").header("Content-Type") == "application/octet-stream"
    r = get(px.port, "/")
    assert (r.status, r.body) == (200, b"<h1>home</h1>\n"), r
    assert r.header("Content-Type") == "text/html"
    r = get(px.port, "/dir?x=1")
    assert r.status == 301 and r.header("Location").endswith("/dir/?x=1"), r
    assert get(px.port, "/dir/").body == b"dir index\n"
    assert get(px.port, "/empty/").status == 403
    assert get(px.port, "/missing.txt").status == 404
    for m in ("DELETE", "PUT", "OPTIONS"):
        assert get(px.port, "/a.txt", method=m).status == 405, m
    assert get(px.port, "/a.txt", method="POST").status == 405
    r = get(px.port, "/a.txt", method="HEAD")
    assert (r.status, r.body, r.header("Content-Length")) == (200, b"", "20"), r
    log = open(os.path.join(px.dir, "error.log")).read()
    assert 'open() "%s/missing.txt" failed (2: No such file or directory)' % www in log, log
    assert 'directory index of "%s/empty/" is forbidden' % www in log, log


def test_side_by_side_with_nginx(tmp_path):
    """The same config in nginx and ballast: the same statuses and the same headers that
    matter to caches and clients."""
    www = make_tree(str(tmp_path / "site" / "www"))
    body = ("include mime.types;\ndefault_type application/octet-stream;\n"
            + SITE.replace("@www@", www))
    nvals = {}
    os.makedirs(str(tmp_path / "nginx"))
    with open(str(tmp_path / "nginx" / "mime.types"), "w") as f:
        f.write(MIME)
    n = Nginx(str(tmp_path / "nginx"), render(body, nvals), access_log_off=True)
    b = Ballast(str(tmp_path / "ballast"), "http {\n%s\n}\n" % body, files={"mime.types": MIME})
    try:
        n.wait_listening(nvals["port"])
        b.start()
        cases = [("GET", "/a.txt", {}), ("HEAD", "/a.txt", {}), ("GET", "/", {}),
                 ("GET", "/dir", {}), ("GET", "/empty/", {}), ("GET", "/nope", {}),
                 ("DELETE", "/a.txt", {}), ("POST", "/a.txt", {}), ("GET", "/i/logo.png", {}),
                 ("GET", "/a.txt", {"Range": "bytes=2-5"}),
                 ("GET", "/a.txt", {"Range": "bytes=-3"}),
                 ("GET", "/a.txt", {"Range": "bytes=15-"}),
                 ("GET", "/a.txt", {"Range": "bytes=30-40"}),
                 ("GET", "/a.txt", {"Range": "bytes=x-y"}),
                 ("GET", "/a.txt", {"Range": "items=1-2"}),
                 ("GET", "/a.txt", {"Range": "bytes=0-5,0-5,0-5,0-5"}),
                 ("GET", "/a.txt", {"If-Range": "Mon, 01 Jan 2001 00:00:00 GMT",
                                    "Range": "bytes=0-1"})]
        for method, path, hdrs in cases:
            rb = get(b.port, path, hdrs, method)
            rn = get(nvals["port"], path, hdrs, method)
            assert rb.status == rn.status, (method, path, hdrs, rb, rn)
            names = ["Content-Type", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified"]
            if rb.status < 300:  # error pages are signed with the server's name
                names.append("Content-Length")
            if rb.status < 300:
                assert rb.body == rn.body, (path, hdrs, rb, rn)
            for name in names:
                assert rb.header(name) == rn.header(name), (name, method, path, hdrs, rb, rn)
        # validators: each answers the other's conditional request the same way
        rn = get(nvals["port"], "/a.txt")
        for hdrs in ({"If-None-Match": rn.header("ETag")},
                     {"If-Modified-Since": rn.header("Last-Modified")},
                     {"If-None-Match": '"other"'}):
            rb2, rn2 = get(b.port, "/a.txt", hdrs), get(nvals["port"], "/a.txt", hdrs)
            assert rb2.status == rn2.status, (hdrs, rb2, rn2)
            assert rb2.header("ETag") == rn2.header("ETag")
    finally:
        n.stop()
        for p in b.finish():
            pytest.fail(p)


def test_conditional_requests(ballast, tmp_path):
    px, www = serve(ballast, tmp_path, SITE)
    r = get(px.port, "/a.txt")
    etag, lm = r.header("ETag"), r.header("Last-Modified")
    r = get(px.port, "/a.txt", {"If-None-Match": etag})
    assert (r.status, r.body) == (304, b""), r
    assert r.header("ETag") == etag and r.header("Content-Length") is None, r
    assert get(px.port, "/a.txt", {"If-None-Match": 'W/%s' % etag}).status == 304
    assert get(px.port, "/a.txt", {"If-None-Match": '"x", %s' % etag}).status == 304
    assert get(px.port, "/a.txt", {"If-None-Match": "*"}).status == 304
    assert get(px.port, "/a.txt", {"If-Modified-Since": lm}).status == 304
    # If-None-Match decides alone when both came (RFC 9110 13.2.2)
    r = get(px.port, "/a.txt", {"If-None-Match": '"nope"', "If-Modified-Since": lm})
    assert r.status == 200, r
    assert get(px.port, "/a.txt", {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}
               ).status == 200
    assert get(px.port, "/a.txt", {"If-Modified-Since": "garbage"}).status == 200
    assert get(px.port, "/a.txt", {"If-Match": '"nope"'}).status == 412
    assert get(px.port, "/a.txt", {"If-Match": etag}).status == 200
    assert get(px.port, "/a.txt", {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}
               ).status == 412
    # curl's own conditional GET (-z sends If-Modified-Since from the date)
    p = curl("-o", "/dev/null", "-w", "%{http_code}", "-z", lm, px.url("/a.txt"))
    assert p.stdout == b"304", p


def multipart(r):
    """The parts of a multipart/byteranges response: [(content-range, bytes)]."""
    m = re.search(r"boundary=(\S+)", r.header("Content-Type"))
    assert m, r
    parts = []
    for chunk in r.body.split(b"--" + m.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        cr = re.search(rb"Content-Range: (.*)\r\n", head + b"\r\n").group(1).decode()
        parts.append((cr, data[:-2]))  # the CRLF before the next boundary
    return parts


def test_ranges(ballast, tmp_path):
    px, www = serve(ballast, tmp_path, SITE)
    r = get(px.port, "/a.txt", {"Range": "bytes=2-5"})
    assert (r.status, r.body, r.header("Content-Range")) == (206, b"2345", "bytes 2-5/20"), r
    assert get(px.port, "/a.txt", {"Range": "bytes=-3"}).body == b"hij"
    assert get(px.port, "/a.txt", {"Range": "bytes=18-"}).body == b"ij"
    assert get(px.port, "/a.txt", {"Range": "bytes=18-100"}).body == b"ij"
    r = get(px.port, "/a.txt", {"Range": "bytes=0-1, 4-5,19-"})
    assert r.status == 206 and r.header("Content-Type").startswith("multipart/byteranges"), r
    assert int(r.header("Content-Length")) == len(r.body)
    assert multipart(r) == [("bytes 0-1/20", b"01"), ("bytes 4-5/20", b"45"),
                            ("bytes 19-19/20", b"j")], r
    r = get(px.port, "/a.txt", {"Range": "bytes=20-30"})
    assert (r.status, r.header("Content-Range")) == (416, "bytes */20"), r
    assert get(px.port, "/a.txt", {"Range": "bytes=5-x"}).status == 416
    # another unit, or ranges adding up to more than the file: the whole file
    assert get(px.port, "/a.txt", {"Range": "lines=1-2"}).status == 200
    assert get(px.port, "/a.txt", {"Range": "bytes=0-15,0-15"}).status == 200
    # If-Range: the same validator gets the range, another one the whole file
    etag = get(px.port, "/a.txt").header("ETag")
    assert get(px.port, "/a.txt", {"Range": "bytes=0-0", "If-Range": etag}).status == 206
    assert get(px.port, "/a.txt", {"Range": "bytes=0-0", "If-Range": '"old"'}).status == 200
    r = get(px.port, "/a.txt", {"Range": "bytes=1-2"}, "HEAD")
    assert (r.status, r.body, r.header("Content-Length")) == (206, b"", "2"), r
    # curl's -r
    p = curl("-r", "10-12", px.url("/a.txt"))
    assert p.stdout == b"abc", p


def test_traversal_refused(ballast, tmp_path):
    px, www = serve(ballast, tmp_path, """
server {
    listen 127.0.0.1:@port@;
    root @www@;
    location /i { alias @www@/img/; }
    location /al/ { alias @www@/; }
}
""")
    attempts = ["/../outside.txt", "/../secret/key", "/%2e%2e/outside.txt",
                "/%2E%2E/%2e%2e/secret/key", "/dir/..%2f..%2foutside.txt",
                "/dir/%2e%2e%2f%2e%2e%2fsecret/key", "/a.txt%00.html", "/.%2e/outside.txt",
                "/i../outside.txt", "/i/../../outside.txt", "/al/../outside.txt",
                "/al/..%2Foutside.txt", "//../outside.txt", "/dir/.../outside.txt",
                "/%5c..%5coutside.txt"]
    for path in attempts:
        r = get(px.port, path)
        assert b"TOPSECRET" not in r.body, (path, r)
        assert r.status in (400, 403, 404), (path, r)
    # the raw bytes too: a NUL and a backslash path on the wire
    with Conn(px.port) as c:
        c.send(b"GET /a.txt\x00/../../outside.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 400 and b"TOPSECRET" not in r.body, r
    # curl --path-as-is sends the dots unresolved
    p = curl("--path-as-is", "-o", "-", "-w", "%{http_code}", px.url("/../secret/key"))
    assert b"TOPSECRET" not in p.stdout and p.stdout.endswith((b"400", b"404")), p
    # what legitimately contains dots still works
    assert get(px.port, "/i/logo.png").status == 200


def test_symlinks(ballast, tmp_path):
    px, www = serve(ballast, tmp_path, """
server {
    listen 127.0.0.1:@port@;
    root @www@;
    index index.html;
    location /on/ { alias @www@/; disable_symlinks on; }
    location /owner/ { alias @www@/; disable_symlinks if_not_owner; }
    location /fromroot/ { alias @linkroot@/; disable_symlinks on from=$document_root; }
    location /off/ { alias @www@/; disable_symlinks off; }
    location /al/ { alias @www@/; }
    location /tf/ { alias @www@/; try_files $uri =404; }
}
""", linkroot=str(tmp_path / "site" / "linkroot"))
    site = os.path.dirname(www)
    os.symlink(os.path.join(site, "outside.txt"), os.path.join(www, "out"))
    os.symlink("a.txt", os.path.join(www, "in"))
    os.symlink(os.path.join(www, "a.txt"), os.path.join(www, "abs_in"))  # absolute, inside
    os.symlink("../outside.txt", os.path.join(www, "up"))
    os.symlink("/etc/passwd", os.path.join(www, "passwd"))
    os.symlink("/etc", os.path.join(www, "etc"))
    os.symlink("dir", os.path.join(www, "linkdir"))
    for d, target in (("idxout", "../../outside.txt"), ("idxin", "../a.txt")):
        os.makedirs(os.path.join(www, d))
        os.symlink(target, os.path.join(www, d, "index.html"))
    other = os.path.join(site, "other.txt")
    with open(other, "w") as f:
        f.write("OTHER\n")
    os.chown(other, 65534, 65534)
    os.symlink(other, os.path.join(www, "foreign"))
    # a root reached through a symlink, checked only below it (from=$document_root)
    os.symlink(www, os.path.join(site, "linkroot"))
    # no disable_symlinks line (ballast's default): followed while they stay under root
    for path in ("/in", "/abs_in", "/linkdir/index.html", "/linkdir/", "/idxin/", "/al/in",
                 "/al/linkdir/", "/tf/in"):
        r = get(px.port, path)
        assert r.status == 200 and r.body in (A_TXT.encode(), b"dir index\n"), (path, r)
    for path in ("/out", "/up", "/passwd", "/etc/passwd", "/idxout/", "/al/passwd",
                 "/al/etc/passwd", "/%65tc/passwd", "/linkdir/../passwd"):
        r = get(px.port, path)
        assert r.status == 403 and b"root:" not in r.body, (path, r)
    assert get(px.port, "/tf/passwd").status == 404  # try_files: not a file it may serve
    assert get(px.port, "/linkdir").status == 301
    # off written out: nginx's default, followed wherever they lead
    assert get(px.port, "/off/out").body == b"TOPSECRET\n"
    assert get(px.port, "/off/passwd").body.startswith(b"root:")
    assert get(px.port, "/off/etc/passwd").status == 200
    # on: any symlink is refused
    assert get(px.port, "/on/out").status == 403
    assert get(px.port, "/on/in").status == 403
    assert get(px.port, "/on/a.txt").status == 200
    # if_not_owner: a link owned as its target is followed, another is refused
    assert get(px.port, "/owner/in").status == 200
    assert get(px.port, "/owner/foreign").status == 403
    r = get(px.port, "/fromroot/a.txt")
    assert r.status == 200, r
    assert get(px.port, "/fromroot/in").status == 403
    log = open(os.path.join(px.dir, "error.log")).read()
    assert "(40: Too many levels of symbolic links)" in log, log
    assert 'open() "%s/passwd" failed: a symlink leads out of "%s"' % (www, www) in log, log
    # a reload opens the new root and lets go of the old one's directory
    www2 = str(tmp_path / "site" / "www2")
    os.makedirs(www2)
    with open(os.path.join(www2, "a.txt"), "w") as f:
        f.write("two\n")
    os.symlink("/etc/passwd", os.path.join(www2, "passwd"))

    def fds_on(d):
        n = 0
        for fd in os.listdir("/proc/%d/fd" % px.pid):
            try:
                n += os.readlink("/proc/%d/fd/%s" % (px.pid, fd)) == d
            except OSError:
                pass
        return n
    assert fds_on(www) >= 1
    Reloader(px).reload(px.conf_text.replace(www, www2))
    assert get(px.port, "/a.txt").body == b"two\n"
    assert get(px.port, "/passwd").status == 403
    assert wait_for(lambda: fds_on(www) == 0, 5), fds_on(www)
    assert fds_on(www2) >= 1


def test_root_through_switched_symlink(ballast, tmp_path):
    """A deploy switching "current -> releases/N" (ln -sfn + rename) is seen by the very next
    request, as nginx sees it; a symlink out of the new release is still refused."""
    app = tmp_path / "app"
    for n in ("1", "2"):
        os.makedirs(app / "releases" / n / "public")
        (app / "releases" / n / "public" / "v.txt").write_text("release %s\n" % n)
    os.symlink("/etc/passwd", str(app / "releases" / "2" / "public" / "passwd"))
    os.symlink("releases/1", str(app / "current"))
    px = ballast("""
http {
    server {
        listen 127.0.0.1:@port@;
        root @app@/current/public;
        location /al/ { alias @app@/current/public/; }
    }
}
""", app=str(app))
    assert get(px.port, "/v.txt").body == b"release 1\n"
    assert get(px.port, "/al/v.txt").body == b"release 1\n"
    os.symlink("releases/2", str(app / "current.tmp"))
    os.rename(str(app / "current.tmp"), str(app / "current"))
    assert get(px.port, "/v.txt").body == b"release 2\n"
    assert get(px.port, "/al/v.txt").body == b"release 2\n"
    for path in ("/passwd", "/al/passwd"):
        r = get(px.port, path)
        assert r.status == 403 and b"root:" not in r.body, (path, r)


def test_expires_and_add_header(ballast, tmp_path):
    px, www = serve(ballast, tmp_path, """
server {
    listen 127.0.0.1:@port@;
    root @www@;
    location /a.txt { expires 1h; add_header X-Static yes; add_header X-Err e always; }
    location = /style.css { expires max; }
    location = /dir/index.html { expires epoch; }
    location = /index.html { expires modified 1d; }
    location /img/ { expires -1; etag off; }
}
""")
    r = get(px.port, "/a.txt")
    assert r.header("Cache-Control") == "max-age=3600" and r.header("Expires"), r
    assert (r.header("X-Static"), r.header("X-Err")) == ("yes", "e"), r
    r = get(px.port, "/a.txt", {"If-None-Match": r.header("ETag")})
    assert r.status == 304 and r.header("Cache-Control") == "max-age=3600", r
    r = get(px.port, "/style.css")
    assert (r.header("Cache-Control"), r.header("Expires")) == (
        "max-age=315360000", "Thu, 31 Dec 2037 23:55:55 GMT"), r
    r = get(px.port, "/dir/index.html")
    assert (r.header("Cache-Control"), r.header("Expires")) == (
        "no-cache", "Thu, 01 Jan 1970 00:00:01 GMT"), r
    r = get(px.port, "/index.html")
    age = int(r.header("Cache-Control").split("=")[1])
    assert 80000 < age <= 86400, r
    r = get(px.port, "/img/logo.png")
    assert r.header("Cache-Control") == "no-cache" and r.header("ETag") is None, r
    r = get(px.port, "/a.txt/missing")
    assert r.status == 404 and r.header("X-Static") is None and r.header("X-Err") == "e", r


def test_expires_on_proxied_responses_replaces_the_upstreams(ballast, backend):
    be = backend()
    px = ballast("""
http { server { listen 127.0.0.1:@port@;
    location / { proxy_pass http://127.0.0.1:%d; expires 10m; } } }
""" % be.port)
    r = px.get("/?text=hi")
    assert r.status == 200 and r.headers_all("Cache-Control") == ["max-age=600"], r


def test_gzip_static(ballast, tmp_path):
    px, www = serve(ballast, tmp_path, """
server {
    listen 127.0.0.1:@port@;
    root @www@;
    location / { gzip_static on; gzip_vary on; }
    location /always/ { alias @www@/; gzip_static always; }
}
""")
    plain = open(os.path.join(www, "big.js"), "rb").read()
    r = get(px.port, "/big.js", {"Accept-Encoding": "gzip, br"})
    assert r.header("Content-Encoding") == "gzip" and r.header("Vary") == "Accept-Encoding", r
    assert gzip.decompress(r.body) == plain
    assert r.header("Content-Type") == "text/javascript", r  # the type of big.js, not .gz
    r = get(px.port, "/big.js")
    assert r.header("Content-Encoding") is None and r.body == plain, r
    assert r.header("Vary") is None
    r = get(px.port, "/big.js", {"Accept-Encoding": "gzip;q=0"})
    assert r.header("Content-Encoding") is None, r
    # no .gz beside it: the file itself
    r = get(px.port, "/a.txt", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") is None and r.body == A_TXT.encode(), r
    r = get(px.port, "/always/big.js")
    assert r.header("Content-Encoding") == "gzip", r
    # curl --compressed decodes it; the raw bytes pass gunzip -t
    p = curl("--compressed", px.url("/big.js"))
    assert p.stdout == plain, p
    raw = str(tmp_path / "raw.gz")
    p = curl("-H", "Accept-Encoding: gzip", "-o", raw, px.url("/big.js"))
    assert p.returncode == 0, p
    assert subprocess.run(["gunzip", "-t", raw]).returncode == 0


def test_try_files_and_named_fallback_to_upstream(ballast, backend, tmp_path):
    be = backend()
    px, www = serve(ballast, tmp_path, """
upstream app { server 127.0.0.1:%d; }
server {
    listen 127.0.0.1:@port@;
    root @www@;
    location / { try_files $uri $uri/ @app; }
    location /code/ { try_files $uri =418; }
    location @app { proxy_pass http://app; }
}
""" % be.port)
    assert get(px.port, "/a.txt").body == A_TXT.encode()
    assert get(px.port, "/dir/").body == b"dir index\n"
    r = get(px.port, "/not/here?text=from-app")
    assert (r.status, r.body) == (200, b"from-app"), r
    assert be.requests and be.requests[-1].path == "/not/here", be.requests
    assert get(px.port, "/code/x").status == 418


def test_try_files_side_by_side_with_nginx(tmp_path, backend):
    """Several files, directories, =CODE and a named location that proxies, in nginx and
    ballast: the same answers."""
    be = backend()
    www = make_tree(str(tmp_path / "site" / "www"))
    body = ("""
upstream app { server 127.0.0.1:%d; }
server {
    listen 127.0.0.1:@port@;
    root %s;
    location / { try_files $uri $uri/ =404; }
    location /m/ { try_files /maintenance.html $uri $uri.txt $uri/index.html @app; }
    location /c/ { try_files /nope /a.txt; }
    location @app { proxy_pass http://app; }
}
""" % (be.port, www))
    nvals = {}
    n = Nginx(str(tmp_path / "nginx"), render(body, nvals), access_log_off=True)
    b = Ballast(str(tmp_path / "ballast"), "http {\n%s\n}\n" % body)
    try:
        n.wait_listening(nvals["port"])
        b.start()
        for path in ["/a.txt", "/dir", "/dir/", "/empty/", "/empty", "/missing", "/",
                     "/m/x?text=app", "/c/anything"]:
            rb, rn = get(b.port, path), get(nvals["port"], path)
            assert rb.status == rn.status, (path, rb, rn)
            if rb.status < 300:
                assert rb.body == rn.body, (path, rb, rn)
            if rb.status == 301:
                assert rb.header("Location").split("/", 3)[3] == \
                    rn.header("Location").split("/", 3)[3], (path, rb, rn)
    finally:
        n.stop()
        for p in b.finish():
            pytest.fail(p)


def test_regex_location_and_alias_captures(ballast, tmp_path):
    px, www = serve(ballast, tmp_path, """
server {
    listen 127.0.0.1:@port@;
    location ~ ^/pics/(.+\\.(?:gif|jpg|jpeg|png))$ { alias @www@/img/$1; expires 30d; }
    location ~ \\.(gif|jpg|jpeg|png|css|js)$ { root @www@; }
    location / { return 404; }
}
""")
    r = get(px.port, "/pics/logo.png")
    assert (r.status, r.body) == (200, b"PNGDATA"), r
    assert r.header("Cache-Control") == "max-age=2592000", r
    assert get(px.port, "/style.css").body == b"body{}\n"
    assert get(px.port, "/pics/../a.txt.png").status in (400, 403, 404)


# 10 GB, sparse: no disk is used, and nothing here reads all of it.
HUGE = 10 * 1024 ** 3


@pytest.mark.parametrize("sendfile", ["on", "off"])
def test_huge_sparse_file_flat_memory(ballast, tmp_path, sendfile):
    px, www = serve(ballast, tmp_path, """
server { listen 127.0.0.1:@port@; root @www@; sendfile %s; }
""" % sendfile)
    path = os.path.join(www, "huge.bin")
    with open(path, "wb") as f:
        f.truncate(HUGE)
        f.seek(HUGE - 5)
        f.write(b"TAIL!")
    r = get(px.port, "/huge.bin", {"Range": "bytes=%d-" % (HUGE - 10)})
    assert r.status == 206 and r.body == b"\0" * 5 + b"TAIL!", r
    assert r.header("Content-Range") == "bytes %d-%d/%d" % (HUGE - 10, HUGE - 1, HUGE)
    r = get(px.port, "/huge.bin", method="HEAD")
    assert r.header("Content-Length") == str(HUGE), r
    # A bounded part of the whole-file answer, with memory watched, then the client goes.
    want = (16 if ASAN else 200) * 1024 * 1024
    base = px.rss_kb()
    with RssSampler(px.pid) as s, Conn(px.port, 60) as c:
        c.send(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head = c.read_head()
        got = len(c.buf)
        c.buf = b""
        while got < want and c._fill():
            got += len(c.buf)
            c.buf = b""
    assert head.status == 200 and head.header("Content-Length") == str(HUGE), head
    assert got >= want, got
    assert s.max - base < 64 * 1024, "RSS grew by %d KB" % (s.max - base)
    # still serving
    assert get(px.port, "/a.txt").status == 200


def test_sendfile_keepalive_pipelined(ballast, tmp_path):
    """sendfile on a keep-alive connection: one response after another, exact lengths."""
    px, www = serve(ballast, tmp_path, "server { listen 127.0.0.1:@port@; root @www@; "
                                       "sendfile on; }")
    big = os.path.join(www, "mid.bin")
    data = os.urandom(3 * 1024 * 1024 + 17)
    with open(big, "wb") as f:
        f.write(data)
    with Conn(px.port, 30) as c:
        c.send(b"GET /mid.bin HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /mid.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-1999,5-9\r\n\r\n")
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
    assert r1.body == data and r2.body == A_TXT.encode(), (r1.status, r2)
    assert multipart(r3) == [("bytes 1000-1999/%d" % len(data), data[1000:2000]),
                             ("bytes 5-9/%d" % len(data), data[5:10])]


def test_config_errors(tmp_path):
    from conftest import BALLAST_BIN
    cases = [
        ("location / { root /x; alias /y/; }", '"alias" directive is duplicate'),
        ("location / { alias /y/; root /x; }", '"root" directive is duplicate'),
        ("location / { expires soon; }", 'invalid value "soon"'),
        ("location / { expires @15h; }", "not supported in this build"),
        ("location / { disable_symlinks maybe; }", 'invalid value "maybe"'),
        ("location / { disable_symlinks on from=/x; }", "from=$document_root"),
        ("location / { autoindex_format xml; }", '"autoindex_format xml" is not supported'),
        ("location / { gzip_static sometimes; }", 'invalid value "sometimes"'),
        ("location / { etag on; etag off; }", "duplicate"),
    ]
    for i, (loc, want) in enumerate(cases):
        p = tmp_path / ("c%d.conf" % i)
        p.write_text("http { server { listen 127.0.0.1:1; %s } }\n" % loc)
        r = subprocess.run([BALLAST_BIN, "-t", "-c", str(p)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        err = r.stderr.decode()
        assert r.returncode == 1 and want in err and ":1" in err, (loc, err)


def test_gzip_on_compresses_files_and_pages(ballast, tmp_path):
    """gzip on: files (streamed through the compressor, any size, memory bounded), `return`
    texts and error pages are compressed by gzip_types, as nginx's gzip filter does for every
    response; ranges, HEAD and clients that do not accept gzip get the plain bytes."""
    px, www = serve(ballast, tmp_path, """
gzip on;
gzip_types text/plain application/javascript text/javascript;
gzip_vary on;
server {
    listen 127.0.0.1:@port@;
    root @www@;
    location = /text { return 200 "a text that is long enough to be compressed by gzip\\n"; }
}
""")
    big = os.path.join(www, "big.txt")
    plain = b"".join(b"line %d of a text file\n" % i for i in range(300000))  # ~7 MB
    with open(big, "wb") as f:
        f.write(plain)
    r = get(px.port, "/big.txt", {"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.header("Content-Encoding") == "gzip", r
    assert r.framing == "chunked" and r.header("Vary") == "Accept-Encoding", r
    assert r.header("ETag").startswith('W/"') and r.header("Accept-Ranges") is None, r
    assert gzip.decompress(r.body) == plain
    p = curl("--compressed", px.url("/big.txt"))
    assert p.stdout == plain
    raw = str(tmp_path / "big.gz")
    assert curl("-H", "Accept-Encoding: gzip", "-o", raw, px.url("/big.txt")).returncode == 0
    assert subprocess.run(["gunzip", "-t", raw]).returncode == 0
    # HTTP/1.0: no chunks, the body ends at close
    p = curl("--http1.0", "--compressed", px.url("/big.txt"))
    assert p.stdout == plain
    # what is not compressed
    r = get(px.port, "/big.txt")
    assert r.header("Content-Encoding") is None and r.body == plain, r
    assert r.header("Vary") == "Accept-Encoding"
    r = get(px.port, "/big.txt", {"Accept-Encoding": "gzip", "Range": "bytes=0-3"})
    assert (r.status, r.body, r.header("Content-Encoding")) == (206, b"line", None), r
    r = get(px.port, "/big.txt", {"Accept-Encoding": "gzip"}, "HEAD")
    assert r.status == 200 and r.body == b"", r
    r = get(px.port, "/img/logo.png", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") is None, r  # not in gzip_types
    # pages and texts made by ballast
    r = get(px.port, "/text", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") == "gzip", r
    assert gzip.decompress(r.body) == b"a text that is long enough to be compressed by gzip\n"
    r = get(px.port, "/missing", {"Accept-Encoding": "gzip"})
    assert r.status == 404 and r.header("Content-Encoding") == "gzip", r
    assert b"404 Not Found" in gzip.decompress(r.body)
    # memory stays flat while a large file is compressed for a reader
    with open(os.path.join(www, "huge.txt"), "wb") as f:
        f.truncate((64 if ASAN else 512) * 1024 * 1024)
    base = px.rss_kb()
    with RssSampler(px.pid) as s:
        p = curl("-H", "Accept-Encoding: gzip", "-o", str(tmp_path / "huge.gz"),
                 px.url("/huge.txt"), timeout=120)
    assert p.returncode == 0, p
    assert s.max - base < 64 * 1024, "RSS grew by %d KB" % (s.max - base)
    assert subprocess.run(["gunzip", "-t", str(tmp_path / "huge.gz")]).returncode == 0


def test_static_over_tls_with_sendfile_on(ballast, tmp_path):
    """TLS connections read the file and write it through TLS whatever sendfile says."""
    from tlsutil import make_pki
    os.makedirs(str(tmp_path / "pki"))
    pki = make_pki(str(tmp_path / "pki"))
    px, www = serve(ballast, tmp_path, """
server {
    listen 127.0.0.1:@port@ ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    root @www@;
    sendfile on;
}
""" % pki["server"])
    data = os.urandom(2 * 1024 * 1024 + 5)
    with open(os.path.join(www, "r.bin"), "wb") as f:
        f.write(data)
    p = curl("-k", "https://127.0.0.1:%d/r.bin" % px.port)
    assert p.stdout == data, p.stderr
    p = curl("-k", "-r", "100-199", "https://127.0.0.1:%d/r.bin" % px.port)
    assert p.stdout == data[100:200]


def autoindex_tree(www):
    """A directory that exercises nginx's listing: escaping, order, dotfiles, links, sizes."""
    d = os.path.join(www, "ls")
    for sub in ("zdir", "Bdir", ".hdir", "empty"):
        os.makedirs(os.path.join(d, sub))
    names = ["a.txt", "B.txt", "<img src=x onerror=alert(1)>.txt", 'q&a "x".txt', "%41.txt",
             "sp ace?#.txt", "\u00fcn\u00ef.txt", "l" * 60 + ".txt", "n" * 50, ".hidden",
             "it's (1).txt", "a:b"]
    for name in names:
        with open(os.path.join(d, name), "w") as f:
            f.write("x\n")
    os.makedirs(os.path.join(d, "d" * 50))
    for name, size in (("k.bin", 20000), ("m.bin", 3 * 1024 * 1024 + 600000),
                       ("g.bin", 5 * 1024 ** 3 - 1)):
        with open(os.path.join(d, name), "wb") as f:
            f.truncate(size)
    os.symlink("zdir", os.path.join(d, "linkdir"))
    os.symlink("a.txt", os.path.join(d, "link.txt"))
    os.symlink("/nonexistent", os.path.join(d, "dangling"))
    big = os.path.join(www, "big")
    os.makedirs(big)
    for i in range(10000):
        os.close(os.open(os.path.join(big, "file-%05d.dat" % i), os.O_CREAT | os.O_WRONLY))
    return d


AUTOINDEX_SITE = """
server {
    listen 127.0.0.1:@port@;
    root @www@;
    autoindex on;
    location /j/ { alias @www@/; autoindex_format json; }
    location /h/ { alias @www@/; autoindex_exact_size off; autoindex_localtime on; }
    location /off/ { alias @www@/; autoindex off; }
}
"""


def test_autoindex_side_by_side_with_nginx(tmp_path, monkeypatch):
    """The same tree listed by nginx and ballast: the same bytes, html and json."""
    www = str(tmp_path / "www")
    autoindex_tree(www)
    monkeypatch.setenv("TZ", "XST-5:30")  # both take it: autoindex_localtime's offset
    nvals = {}
    n = Nginx(str(tmp_path / "nginx"), render(AUTOINDEX_SITE.replace("@www@", www), nvals),
              access_log_off=True)
    b = Ballast(str(tmp_path / "ballast"),
                "error_log @tmp@/error.log info;\nhttp {\n%s\n}\n"
                % AUTOINDEX_SITE.replace("@www@", www))
    try:
        n.wait_listening(nvals["port"])
        b.start()
        base = b.rss_kb()
        for path in ("/ls/", "/j/ls/", "/h/ls/", "/ls/empty/", "/j/ls/empty/", "/big/",
                     "/j/big/", "/ls/linkdir/"):
            rb, rn = get(b.port, path), get(nvals["port"], path)
            assert (rb.status, rb.header("Content-Type")) == (200, rn.header("Content-Type")), \
                (path, rb, rn)
            assert rb.body == rn.body, (path, rb.body[:3000], rn.body[:3000])
            assert int(rb.header("Content-Length")) == len(rb.body)
        # 10,000 entries listed through one buffer: memory back where it was
        assert b.rss_kb() - base < (64 if ASAN else 16) * 1024, (base, b.rss_kb())
        for path in ("/ls/dangling/", "/nope/", "/off/ls/", "/ls/a.txt/"):
            rb, rn = get(b.port, path), get(nvals["port"], path)
            assert rb.status == rn.status, (path, rb, rn)
        r = get(b.port, "/ls/", method="HEAD")
        assert r.status == 200 and r.body == b"" and int(r.header("Content-Length")) > 1000
        assert get(b.port, "/ls/", method="POST").status == 405
        # what a browser sees: no tag from a name, every href escaped
        page = get(b.port, "/ls/").body.decode()
        assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;.txt" in page
        assert 'href="%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt"' in page
        assert ".hidden" not in page and ".hdir" not in page
    finally:
        n.stop()
        for p in b.finish():
            pytest.fail(p)
