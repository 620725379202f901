"""A headless chromium driven over the DevTools protocol, stdlib only: a minimal WebSocket
client (RFC 6455: masked client frames, fragmented and 64-bit-length server frames, ping/pong)
and the few protocol calls the status page test needs. Used as

    with Browser(tmp_path) as br:
        br.navigate(url)
        br.eval("document.title")
        br.click("button.drain")
        br.screenshot(path)

Every wait is bounded; the browser and its profile directory are gone after the `with`.
"""
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request

from conftest import SLOW, free_port


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class WebSocket:
    def __init__(self, url, timeout):
        assert url.startswith("ws://"), url
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        # No Origin header: chromium accepts DevTools clients that send none.
        self.sock.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            d = self.sock.recv(4096)
            if not d:
                raise ConnectionError("websocket handshake: connection closed")
            head += d
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError("websocket handshake refused: %r" % head[:200])

    def _read(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(1 << 20)
            if not d:
                raise ConnectionError("websocket closed")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.sock.sendall(hdr + mask + masked)

    def recv(self):
        """The next text message (fragments joined); control frames are handled here."""
        parts = []
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            if op == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if op == 0x9:  # ping
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + b"\0" * 4
                                  + payload)
                continue
            if op == 0xA:
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Browser:
    def __init__(self, workdir, timeout=20.0):
        self.dir = os.path.join(str(workdir), "chromium")
        self.timeout = timeout * SLOW
        self.proc = None
        self.ws = None
        self.next_id = 0

    def __enter__(self):
        exe = chromium_path()
        port = free_port()
        os.makedirs(self.dir, exist_ok=True)
        self.log = open(os.path.join(self.dir, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-sync",
             "--window-size=1200,800", "--user-data-dir=" + os.path.join(self.dir, "profile"),
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=%d" % port,
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        url = None
        while url is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("chromium did not start; see %s" % self.log.name)
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port,
                                            timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    url = pages[0]["webSocketDebuggerUrl"]
            except (OSError, ValueError, http.client.HTTPException):
                # While it starts, chromium's endpoint may refuse, drop the connection, or
                # answer with an empty or partial body: all mean "not yet".
                time.sleep(0.1)
        self.ws = WebSocket(url, self.timeout)
        self.call("Page.enable")
        self.call("Runtime.enable")
        return self

    def __exit__(self, *a):
        if self.ws:
            self.ws.close()
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self.log.close()

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
        raise TimeoutError(method)

    def navigate(self, url):
        self.call("Page.navigate", url=url)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait(self, expr, timeout=10.0):
        """Polls a JavaScript expression until it is truthy; returns its value. An expression
        that throws (the page is still loading) counts as false until the deadline."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            try:
                v = self.eval(expr)
            except RuntimeError as e:  # the page is not there yet (null element)
                v = e
            if v and not isinstance(v, RuntimeError):
                return v
            if time.monotonic() > deadline:
                raise TimeoutError("waited %.0fs for %s (last %r)" % (timeout * SLOW, expr, v))
            time.sleep(0.05)

    def click(self, selector, hold=0.0):
        """A real mouse click (press and release) at the centre of the element; with hold, the
        button stays down that many seconds (a slow human click)."""
        box = self.eval("(function(){var e=document.querySelector(%s);"
                        "if(!e)return null;e.scrollIntoView();var r=e.getBoundingClientRect();"
                        "return [r.left+r.width/2, r.top+r.height/2];})()" % json.dumps(selector))
        assert box, "no element %s" % selector
        for t in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=t, x=box[0], y=box[1], button="left",
                      clickCount=1)
            if t == "mousePressed" and hold:
                time.sleep(hold)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path
