"""Just enough of the Chrome DevTools Protocol to drive Debian's headless Chromium from a test: a WebSocket client,
a page target, a browser that can reach 127.0.0.1 and nothing else, and what went wrong on a page."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
DESKTOP = {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
# Every wait has an end, so a broken page fails its test instead of hanging the suite: a condition inside the page
# is given PAGE_WAIT_SECONDS, and any answer or event from the browser WAIT_SECONDS (more, so the page's own
# timeout is the one reported). Generous, for a 2-core machine at load average 20-30 (a suite beside others).
PAGE_WAIT_SECONDS = 60.0
WAIT_SECONDS = PAGE_WAIT_SECONDS + 60.0


class WebSocket:
    """Just enough of RFC 6455 for the DevTools Protocol: masked text frames out, (fragmented) frames in."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("the DevTools endpoint closed during the handshake")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the DevTools endpoint closed the connection")
            data += chunk
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._exact(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            opcode = first & 0x0F
            if opcode == 0x9:  # ping: answer, then keep reading
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                continue
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class DevTools:
    """A page target: send commands, wait for their results, keep every event."""

    def __init__(self, ws_url: str) -> None:
        self.ws = WebSocket(ws_url)
        self.events: list[dict[str, Any]] = []
        self._next = 0

    def _message(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        """The next message, unless ``deadline`` (monotonic) has passed: a page that keeps sending events (a
        refresh every second) would otherwise keep a wait alive forever after it broke."""
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {waiting_for} from the browser within {WAIT_SECONDS:g} s")
        message: dict[str, Any] = json.loads(self.ws.recv())
        return message

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self.ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            message = self._message(deadline, f"answer to {method}")
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    def wait_for(self, method: str) -> dict[str, Any]:
        """Read messages until the event ``method`` arrives (the browser pushes it: nothing to poll)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            message = self._message(deadline, f"event {method}")
            self.events.append(message)
            if message.get("method") == method:
                return message

    def evaluate(self, expression: str) -> Any:
        """The value of an expression; a promise is awaited inside the page (no polling from here)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, seconds: float = PAGE_WAIT_SECONDS) -> Any:
        """The value of ``expression`` once it is truthy, checked inside the page every 50 ms (the page's own timer:
        the test sleeps on the socket, never polls); fails after ``seconds`` saying what it waited for."""
        failure = json.dumps("timed out waiting for: " + expression)
        return self.evaluate(f"""new Promise(function (resolve, reject) {{
            var until = Date.now() + {seconds * 1000:.0f};
            (function check() {{
              var v = ({expression}); if (v) {{ resolve(v); }}
              else if (Date.now() > until) {{ reject(new Error({failure})); }}
              else {{ setTimeout(check, 50); }} }}());
        }})""")

    def mouse(self, kind: str, x: float, y: float, pressed: bool = False) -> None:
        """A real mouse event at page coordinates: mousePressed, mouseMoved or mouseReleased (left button);
        ``pressed`` says whether the button is held during a move."""
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left" if kind != "mouseMoved" or pressed
                  else "none", buttons=1 if kind == "mousePressed" or (kind == "mouseMoved" and pressed) else 0,
                  clickCount=1)

    def screenshot(self, path: Path) -> None:
        metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def chromium(profile: Path) -> Iterator[str]:
    """A headless Chromium that can reach 127.0.0.1 and nothing else; yields its DevTools HTTP address."""
    assert CHROMIUM is not None
    log = (profile / "chromium.log").open("wb")
    proc = subprocess.Popen([
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        # Any host name other than the loopback address fails to resolve: nothing can leave this machine.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "about:blank"], stdout=log, stderr=log)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {(profile / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.05)  # another process: it has no hook to call back
        yield f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def open_page(devtools_http: str, url: str, device: dict[str, Any]) -> DevTools:
    targets = json.load(urllib.request.urlopen(f"{devtools_http}/json/list", timeout=30))
    page = next(t for t in targets if t["type"] == "page")
    tools = DevTools(page["webSocketDebuggerUrl"])
    # The tab still shows the previous test's page, which refreshes itself every second: leave it before recording,
    # or its requests (window=1h, not this page's range) and their aborts count as this page's. Under load the
    # calls below took long enough for a refresh to land among them (the custom range test failed 4 times in 27).
    tools.call("Page.enable")
    tools.call("Page.navigate", url="about:blank")
    tools.wait_for("Page.loadEventFired")
    tools.events.clear()
    for domain in ("Runtime", "Log", "Network"):
        tools.call(f"{domain}.enable")
    tools.call("Emulation.setDeviceMetricsOverride", **device)
    # No scrollbar: a full-page screenshot lays the page out without one, and would then cut its right edge off.
    tools.call("Emulation.setScrollbarsHidden", hidden=True)
    tools.call("Page.navigate", url=url)
    tools.wait_for("Page.loadEventFired")
    return tools


def problems(tools: DevTools, origin: str) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """(console errors and exceptions, URLs requested outside the origin, requests to the API)."""
    errors, outside, api = [], [], []
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert", "warning"):
            errors.append(f"console.{params['type']}: {params['args']}")
        elif method == "Runtime.exceptionThrown":
            errors.append(f"exception: {params['exceptionDetails']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            errors.append(f"request failed: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not (url.startswith(origin + "/") or url.startswith("data:") or url == "about:blank"):
                outside.append(url)
            if "/api/" in url:
                api.append(params["request"])
    return errors, outside, api
