#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/ from the unit tests' cases and the shipped
configs, so the fuzzers start from inputs that reach deep into each parser. Run from the
repository root after adding cases; the files are checked in (make fuzz-replay replays them).
"""
import ast
import glob
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
LIT = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def c_string(body):
    """The bytes of a C string literal's body (escapes as C reads them)."""
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("latin-1")
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "x":
            m = re.match(r"[0-9a-fA-F]+", body[i + 2:])
            out.append(int(m.group(0), 16) & 0xFF)
            i += 2 + len(m.group(0))
        elif nxt in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(0), 8) & 0xFF)
            i += 1 + len(m.group(0))
        else:
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\",
                    '"': b'"', "'": b"'", "a": b"\a"}.get(nxt, nxt.encode())
            i += 2
    return bytes(out)


def literals_after(text, start):
    """Adjacent string literals from text[start:] until the first non-literal token."""
    out = b""
    i = start
    while True:
        while i < len(text) and text[i] in " \t\n":
            i += 1
        m = LIT.match(text, i)
        if not m:
            return out
        out += c_string(m.group(1))
        i = m.end()


def put(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def h1_cases():
    text = open(os.path.join(ROOT, "tests/unit/http/test_h1_parser.c"), encoding="latin-1").read()
    ck_at = text.index("ck_cases[]")
    for m in re.finditer(r"\{\.name = ", text):
        end = text.find("\n    {.name", m.end())
        case = text[m.start(): end if end > 0 else len(text)]
        mm = case.find("MSG(")
        if mm < 0:
            continue
        msg = literals_after(case, mm + 4)
        tm = case.find(".tail = ")
        tail = literals_after(case, tm + 8) if tm >= 0 else b""
        if m.start() > ck_at:
            put("chunked", msg + tail)
        elif ".response = 1" in case:
            # first byte of a response input: bit 0 = answer to HEAD (fuzz_response.c)
            put("response", (b"\x01" if ".head_request = 1" in case else b"\x00") + msg + tail)
            put("split", b"\x01\x00" + msg + tail)
        else:
            put("request", msg + tail)
            put("split", b"\x00\x00" + msg + tail)


def uri_cases():
    text = open(os.path.join(ROOT, "tests/unit/http/test_uri.c"), encoding="latin-1").read()
    for m in re.finditer(r'expect_\w+\(\s*"((?:[^"\\]|\\.)*)"', text):
        put("uri", c_string(m.group(1)))


def conf_files():
    files = glob.glob(os.path.join(ROOT, "examples/*.conf")) + [os.path.join(ROOT, "dist/ballast.conf")]
    for f in files:
        put("conf", open(f, "rb").read())
    # The docs' examples: every ```nginx block (the docs check runs them too).
    for f in glob.glob(os.path.join(ROOT, "docs/*.md")):
        text = open(f, encoding="utf-8").read()
        for block in re.findall(r"```nginx\n(.*?)```", text, re.S):
            put("conf", block.encode())
    # The unit tests' inline configs (adjacent literals that look like config text).
    for f in glob.glob(os.path.join(ROOT, "tests/unit/conf/test_conf*.c")):
        text = open(f, encoding="latin-1").read()
        for m in re.finditer(r'(?:\(|=)\s*(?="[a-z_]+[ {])', text):
            data = literals_after(text, m.end())
            if b";" in data or b"{" in data:
                put("conf", data)


def admin_bodies():
    text = open(os.path.join(ROOT, "tests/unit/admin/test_api.c"), encoding="latin-1").read()
    for m in re.finditer(r'"(\{(?:[^"\\]|\\.)*\}|\[(?:[^"\\]|\\.)*\])"', text):
        body = c_string(m.group(1))
        put("admin", b"\x00" + body)  # PATCH
        put("admin", b"\x01" + body)  # POST
    for body in (b'{"server": "127.0.0.1:9999", "weight": 2, "max_conns": 3, "max_fails": 1, '
                 b'"fail_timeout": "10s", "slow_start": "30s", "backup": false, "down": true}',
                 b'{"weight": 5, "down": false, "drain": true, "max_conns": 0}'):
        put("admin", b"\x00" + body)
        put("admin", b"\x01" + body)
    # byte 0 = 2: "M PATH\n BODY", M's code mod 4 picks GET (`), HEAD (a), PATCH (b), PUT (c)
    for line in (b"`/api/locations\n", b"a/api/locations/1\n", b"`/api/locations/%2F\n",
                 b"b/api/locations/1\n{\"disabled\": true}", b"b/api/locations/1\n{\"disabled\": null}",
                 b"b/api/locations/%2F\n{\"disabled\": false}", b"c/api/locations/1\n{}",
                 b"`/api/upstreams/app/servers\n", b"b/api/upstreams/app/servers/2\n{\"weight\": 4}"):
        put("admin", b"\x02" + line)


def proxy_cases():
    text = open(os.path.join(ROOT, "tests/unit/core/test_proxy_proto.c"), encoding="latin-1").read()
    for m in re.finditer(r'(?:=|\(|,|\{)\s*(?="(?:PROXY|\\r\\n\\r\\n\\0|\\x0d))', text):
        data = literals_after(text, m.end())
        if data:
            put("proxy", data)
    v2sig = b"\r\n\r\n\x00\r\nQUIT\n"
    put("proxy", v2sig + b"\x21\x11\x00\x0c" + bytes([192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 1, 0xbb]))
    put("proxy", v2sig + b"\x21\x21\x00\x24" + bytes(15) + b"\x01" + bytes(15) + b"\x02" + b"\x00\x50\x01\xbb")
    put("proxy", v2sig + b"\x20\x00\x00\x00")
    put("proxy", b"PROXY UNKNOWN\r\n")
    put("proxy", b"PROXY TCP6 ::1 ::1 1 2\r\nGET / HTTP/1.1\r\n\r\n")


def h2_frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def hpack_int(v, prefix, first):
    """An HPACK integer (RFC 7541 5.1) with `prefix` bits, `first` the pattern bits above it."""
    top = (1 << prefix) - 1
    if v < top:
        return bytes([first | v])
    out = bytearray([first | top])
    v -= top
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    out.append(v)
    return bytes(out)


def hpack(fields, index=False):
    """Literal fields (without indexing, or with incremental indexing), no Huffman."""
    out = b""
    for k, v in fields:
        if isinstance(k, int):  # a static table index
            out += hpack_int(k, 7, 0x80)
            continue
        out += (b"\x40" if index else b"\x00") + hpack_int(len(k), 7, 0) + k
        out += hpack_int(len(v), 7, 0) + v
    return out


def h2_cases():
    """HTTP/2 client bytes after the preface, behind fuzz_h2.c's three control bytes."""
    settings = h2_frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64\x00\x04\x00\x00\xff\xff")
    ack = h2_frame(4, 1, 0)
    get = [(2, None), (6, None), (4, None), (b":authority", b"example.com")]
    post = [(3, None), (6, None), (b":path", b"/upload?x=1"), (b":authority", b"h")]
    EH, ES = 4, 1
    seeds = {
        "get": settings + h2_frame(1, EH | ES, 1, hpack(get)) + ack,
        "post_length": settings + h2_frame(1, EH, 1, hpack(post + [(b"content-length", b"10")]))
        + h2_frame(0, 0, 1, b"01234") + h2_frame(0, ES, 1, b"56789"),
        "post_chunked": settings + h2_frame(1, EH, 1, hpack(post)) + h2_frame(0, 0, 1, b"a" * 300)
        + h2_frame(0, ES, 1, b"b" * 40),
        "continuation": settings + h2_frame(1, 0, 1, hpack(get[:2])) + h2_frame(9, 0, 1, hpack(get[2:3]))
        + h2_frame(9, EH, 1, hpack(get[3:] + [(b"x-a", b"b")])),
        "streams_reset": settings + b"".join(h2_frame(1, EH | ES, i, hpack(get)) for i in (1, 3, 5))
        + h2_frame(3, 0, 3, b"\x00\x00\x00\x08"),
        "big_header": settings + h2_frame(1, EH | ES, 1, hpack(get + [(b"x-big", b"v" * 9000)])),
        "cookies_host_te": settings + h2_frame(1, EH | ES, 1, hpack(
            get + [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"host", b"other"), (b"te", b"trailers"),
                   (b"expect", b"100-continue"), (b"user-agent", b"fuzz")])),
        "control": settings + h2_frame(6, 0, 0, b"12345678") + h2_frame(8, 0, 0, b"\x00\x01\x00\x00")
        + h2_frame(2, 0, 1, b"\x00\x00\x00\x00\x10") + h2_frame(1, EH | ES, 1, hpack(get))
        + h2_frame(7, 0, 0, b"\x00\x00\x00\x01\x00\x00\x00\x00"),
        "trailers": settings + h2_frame(1, EH, 1, hpack(post)) + h2_frame(0, 0, 1, b"data")
        + h2_frame(1, EH | ES, 1, hpack([(b"x-trailer", b"t")])),
        "head": settings + h2_frame(1, EH | ES, 1, hpack([(b":method", b"HEAD")] + get[1:])),
        "rapid_reset": settings + b"".join(h2_frame(1, EH | ES, i, hpack(get))
                                           + h2_frame(3, 0, i, b"\x00\x00\x00\x08")
                                           for i in range(1, 160, 2)),
        "indexed": settings + h2_frame(1, EH | ES, 1, hpack(get + [(b"x-dyn", b"value")], index=True))
        + h2_frame(1, EH | ES, 3, hpack(get) + hpack_int(62, 7, 0x80) + b"\x20"),
        "window": settings + h2_frame(1, EH, 1, hpack(post)) + h2_frame(8, 0, 1, b"\x00\x10\x00\x00")
        + h2_frame(0, ES, 1, b"x" * 1000) + h2_frame(8, 0, 0, b"\x00\x10\x00\x00"),
        "bad_pseudo": settings + h2_frame(1, EH | ES, 1, hpack([(b":path", b"/"), (b"x", b"y"),
                                                                (b":method", b"GET")])),
    }
    for name, body in sorted(seeds.items()):
        for ctl in (b"\x00\x00\x00", b"\x91\x85\x01", b"\x26\x00\x00", b"\x31\x00\x01"):
            put("h2", ctl + body)


def cache_control_cases():
    """Byte 0: even Cache-Control, odd date; byte 1: where the field is cut in two."""
    for v in [b"max-age=60, s-maxage=30, public", b"no-store", b"no-cache=\"Set-Cookie, X\"",
              b"private=\"a,b\",max-age=\"7\"", b"stale-while-revalidate=30, stale-if-error=600",
              b"max-age=99999999999999999999", b" , ,max-age = 3 ,, x=\"q,\\\"r\", must-revalidate"]:
        put("cache_control", b"\x00" + bytes([len(v) // 2]) + v)
    for d in [b"Sun, 06 Nov 1994 08:49:37 GMT", b"Sunday, 06-Nov-94 08:49:37 GMT",
              b"Sun Nov  6 08:49:37 1994", b"Thu, 01 Jan 1970 00:00:00 GMT", b"42"]:
        put("cache_control", b"\x01\x00" + d)


def dns_cases():
    """Queries for fuzz_dns's zone (example.test): answered, NXDOMAIN, NODATA, refused, EDNS,
    and a few malformed ones."""
    def q(name, qtype=1, flags=0x0100, qd=1, tail=b"", ar=0, qclass=1):
        wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"
        return (struct.pack(">HHHHHH", 0x1234, flags, qd, 0, 0, ar) + wire +
                struct.pack(">HH", qtype, qclass) + tail)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    for name in ("www.example.test", "WWW.Example.TEST", "nope.example.test", "eu.example.test",
                 "api.eu.example.test", "example.test", "www.example.com", "test", ""):
        for qtype in (1, 28, 6, 255, 15):
            put("dns", q(name, qtype))
    put("dns", q("www.example.test", 28, tail=opt, ar=1))
    put("dns", q("www.example.test", 1, tail=opt[:6] + b"\x01" + opt[7:], ar=1))
    put("dns", q("www.example.test", 1, qclass=3))
    put("dns", q("www.example.test", 1, flags=0x1000))
    put("dns", q("www.example.test", 1, qd=2))
    put("dns", q("www.example.test")[:12] + b"\xc0\x0c\x00\x01\x00\x01")


if __name__ == "__main__":
    os.chdir(ROOT)
    h1_cases()
    uri_cases()
    conf_files()
    admin_bodies()
    proxy_cases()
    h2_cases()
    cache_control_cases()
    dns_cases()
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))), file=sys.stderr)
