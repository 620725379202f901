"""Every configuration the docs show loads with `ballast -t`: whole configs (examples/*.conf,
fenced nginx blocks in README.md and docs/*.md) as they are, and each directive's **Example:**
in docs/configuration.md inside a minimal config of a context its section names."""
import glob
import os
import re
import subprocess

import pytest

from conftest import REPO, run_ballast

DOCS = sorted(glob.glob(os.path.join(REPO, "docs", "*.md"))) + [os.path.join(REPO, "README.md")]
EXAMPLES = sorted(glob.glob(os.path.join(REPO, "examples", "*.conf")))

FENCE = re.compile(r"^( *)```([a-z]*)\n(.*?)^\1```", re.M | re.S)


def whole_configs():
    out = []
    for path in DOCS:
        text = open(path).read()
        for m in FENCE.finditer(text):
            lang, body = m.group(2), m.group(3)
            if lang == "nginx" or re.search(r"^\s*http\s*\{", body, re.M):
                line = text[:m.start()].count("\n") + 1
                out.append(pytest.param(body, id="%s:%d" % (os.path.basename(path), line)))
    for path in EXAMPLES:
        out.append(pytest.param(open(path).read(), id=os.path.relpath(path, REPO)))
    return out


def test_there_are_whole_configs():
    assert len(whole_configs()) >= 2


@pytest.mark.parametrize("text", whole_configs())
def test_whole_config_loads(tmp_path, text):
    p = tmp_path / "doc.conf"
    p.write_text(text)
    if re.search(r"^\s*include\s+mime\.types;", text, re.M):
        # read beside the config, as the installed one is (conf/mime.types)
        (tmp_path / "mime.types").write_text(open(os.path.join(REPO, "conf", "mime.types")).read())
    m = re.search(r"ssl_certificate\s+(\S*)certs/localhost\.", text)
    if m:
        # The TLS examples name certificates that scripts/make-cert.sh makes (never committed),
        # relative to the config file's directory.
        subprocess.run([os.path.join(REPO, "scripts", "make-cert.sh"),
                        str(tmp_path / (m.group(1) + "certs"))], check=True,
                       capture_output=True, timeout=120)
    r = run_ballast(["-t", "-c", str(p)], cwd=str(tmp_path))
    assert r.returncode == 0, "%s\n--- config:\n%s" % (r.stderr, text)


# ---- directive examples ------------------------------------------------------------------

SECTION = re.compile(r"^### `([a-z_0-9]+)`[^\n]*\n(.*?)(?=^##)", re.M | re.S)
PARENT = {"events": "main", "http": "main", "upstream": "http", "server": "http",
          "location": "server", "admin": "main", "stream": "main",
          "stream server": "stream", "dns": "main"}
GROUPS = ("app", "api", "backend")


def wrap(ctx, x):
    """A minimal config with x placed in context ctx."""
    groups = "".join("upstream %s { server 127.0.0.1:1; }\n" % g for g in GROUPS
                     if not re.search(r"\bupstream\s+%s\b" % g, x))
    if ctx == "main":
        if re.search(r"^\s*http\s*\{", x, re.M):
            return x
        return x + "\n" + wrap("http", "")
    if ctx == "events":
        return "events {\n%s\n}\n%s" % (x, wrap("http", ""))
    if ctx == "http":
        server = ("server { listen 127.0.0.1:18081; location / { return 200; } }"
                  if not re.search(r"^\s*server\s*\{", x, re.M) else "")
        return "http {\n%s%s\n%s\n}\n" % (groups, x, server)
    if ctx == "upstream":
        if "check_http" in x and not re.search(r"^\s*check\b", x, re.M):
            x = "check type=http;\n" + x  # the check_http_* lines need a check
        return ("http {\nupstream doc {\n%s\nserver 127.0.0.1:1;\n}\n"
                "server { listen 127.0.0.1:18081; location / { proxy_pass http://doc; } }\n}\n"
                % x)
    if ctx == "server":
        listen = "" if re.search(r"^\s*listen\b", x, re.M) else "listen 127.0.0.1:18081;\n"
        return "http {\n%sserver {\n%s%s\nlocation /__doc__ { return 200; }\n}\n}\n" % (
            groups, listen, x)
    if ctx == "stream":
        server = ("server { listen 127.0.0.1:18082; proxy_pass app; }"
                  if not re.search(r"^\s*server\s*\{", x, re.M) else "")
        return "stream {\n%s%s\n%s\n}\n" % (groups, x, server)
    if ctx == "stream server":
        listen = "" if re.search(r"^\s*listen\b", x, re.M) else "listen 127.0.0.1:18082;\n"
        pp = "" if re.search(r"^\s*proxy_pass\b", x, re.M) else "proxy_pass app;\n"
        return "stream {\n%sserver {\n%s%s%s\n}\n}\n" % (groups, listen, pp, x)
    if ctx == "admin":
        return "admin {\n%s\n}\n%s" % (x, wrap("http", ""))
    if ctx == "dns":
        listen = "" if re.search(r"^\s*listen\b", x, re.M) else "listen 127.0.0.1:18083 udp;\n"
        zone = "" if re.search(r"^\s*zone\b", x, re.M) else "zone example.test;\n"
        return "dns {\n%s%s%s\n}\n%s" % (listen, zone, x, wrap("http", ""))
    if ctx == "location":
        return ("http {\n%sserver {\nlisten 127.0.0.1:18081;\nlocation /__doc__ {\n%s\n}\n}\n}\n"
                % (groups, x))
    raise ValueError(ctx)


def directive_examples():
    text = open(os.path.join(REPO, "docs", "configuration.md")).read()
    out = []
    for m in SECTION.finditer(text):
        name, body = m.group(1), m.group(2)
        ctx = re.search(r"\*\*Context:\*\* ([^\n]+)", body)
        ex = re.search(r"\*\*Example:\*\*(.*?)(?=^- \*\*|\Z)", body, re.M | re.S)
        if not ctx or not ex:
            continue
        contexts = [c.strip() for c in ctx.group(1).split(",")]
        if contexts == ["any"]:
            contexts = ["main"]
        fenced = FENCE.search(ex.group(1))
        snippets = ([fenced.group(3)] if fenced else
                    re.findall(r"`([^`]+)`", ex.group(1)))
        for i, snip in enumerate(snippets):
            out.append(pytest.param(name, contexts, snip.replace("...", ""),
                                    id="%s-%d" % (name, i)))
    return out


def test_every_section_has_an_example_checked():
    assert len(directive_examples()) > 50


@pytest.mark.parametrize("name,contexts,snippet", directive_examples())
def test_directive_example_loads(tmp_path, name, contexts, snippet):
    """The example loads in one of the section's contexts, or (an example that shows the
    enclosing block, as `upstream app { least_conn; ... }`) in one of their parents."""
    # Log files the examples name go to the test's directory: -t opens them, as nginx's does.
    snippet = snippet.replace("/var/log/ballast/", str(tmp_path) + "/")
    # Token files too: -t reads them.
    if "/etc/ballast/admin.token" in snippet:
        (tmp_path / "admin.token").write_text("doc-example-token\n")
        snippet = snippet.replace("/etc/ballast/admin.token", str(tmp_path / "admin.token"))
    tried = []
    for ctx in contexts + [PARENT[c] for c in contexts if c in PARENT]:
        conf = wrap(ctx, snippet)
        p = tmp_path / ("%s.conf" % ctx)
        p.write_text(conf)
        r = run_ballast(["-t", "-c", str(p)])
        if r.returncode == 0:
            return
        tried.append("%s: %s" % (ctx, r.stderr.strip().split("\n")[0]))
    pytest.fail("the example of \"%s\" loads in none of its contexts:\n%s\n--- example:\n%s"
                % (name, "\n".join(tried), snippet))
