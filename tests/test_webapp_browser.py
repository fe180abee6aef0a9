"""The HTML dashboard in headless Chromium, driven over the Chrome DevTools Protocol.

A real server on 127.0.0.1 (port 0) serves a store filled with known traffic; Chromium opens the page at a
phone's width with the token in the URL. The test reads the tables and charts the page drew, checks them
against SQL, watches every request the page makes and every console message, and saves screenshots under
test-artifacts/.
"""

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
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pipeline import Monitor
from pipeline.clock import utc_datetime
from pipeline.testing import FakeClock
from webapp.server import DashboardServer
from webapp.testing import record_sample_traffic

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "browser-test-token"
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
DESKTOP = {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")


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

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self.ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    def wait_for(self, method: str) -> dict[str, Any]:
        """Read messages until the event ``method`` arrives (the browser pushes it: nothing to poll)."""
        while True:
            message = json.loads(self.ws.recv())
            self.events.append(message)
            if message.get("method") == method:
                return message

    def evaluate(self, expression: str) -> Any:
        """The value of an expression; a promise is awaited inside the page (no polling from here)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True,
                           timeout=60_000)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DashboardServer, Monitor, FakeClock]]:
    clock = FakeClock(start=time.time() - 3600)  # the page's clock labels stay near the real time
    mon = Monitor(db_path=tmp_path_factory.mktemp("browser") / "m.duckdb", jobs=False, clock=clock,
                  memory_interval_seconds=None)
    record_sample_traffic(mon, clock, minutes=50)
    mon.run_jobs_now()  # the slow /report request fires an alert for the page to show
    with DashboardServer(mon, "127.0.0.1", 0, TOKEN, config={"DUCKPULSE_REFRESH_SECONDS": 1}) as srv:
        yield srv, mon, clock
    mon.close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A headless Chromium that can reach 127.0.0.1 and nothing else; yields its DevTools HTTP address."""
    assert CHROMIUM is not None
    profile = tmp_path_factory.mktemp("chromium-profile")
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
                pytest.fail(f"chromium did not start: {(profile / 'chromium.log').read_text()[-2000:]}")
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
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.call(f"{domain}.enable")
    tools.call("Emulation.setDeviceMetricsOverride", **device)
    tools.call("Page.navigate", url=url)
    tools.wait_for("Page.loadEventFired")
    return tools


def ms(value: float | None) -> str:
    """The page's ms() in Python: toFixed rounds the exact binary value half up."""
    if value is None:
        return "\u2013"  # the en dash the page shows for no value

    def fixed(x: float, places: int) -> str:
        return str(Decimal(x).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))

    if value >= 1000:
        return fixed(value / 1000, 2) + " s"
    return (fixed(value, 0) if value >= 100 else fixed(value, 1)) + " ms"


READ_PAGE = """
new Promise(function (resolve) {
  function ready() { return document.body && Number(document.body.getAttribute("data-refreshes") || 0) >= 1; }
  function read() {
    function rows(sel) {
      return Array.from(document.querySelectorAll(sel + " tbody tr")).map(function (tr) {
        return Array.from(tr.children).map(function (td) { return td.textContent; });
      });
    }
    return {
      search: location.search,
      routes: rows("#routes"), queries: rows("#queries"), memory: rows("#memory"),
      charts: Array.from(document.querySelectorAll("#charts figure")).map(function (f) {
        return { route: f.getAttribute("data-route"),
                 lines: Array.from(f.querySelectorAll("path.line")).map(function (p) {
                   return { cls: p.getAttribute("class"), d: p.getAttribute("d"),
                            points: Number(p.getAttribute("data-points")) }; }) };
      }),
      sparklines: document.querySelectorAll("#memory-charts figure svg path.line").length,
      nplusone: Array.from(document.querySelectorAll("#nplusone li")).map(function (li) { return li.textContent; }),
      alerts: Array.from(document.querySelectorAll("#alerts li")).map(function (li) {
        return { rule: li.getAttribute("data-rule"), text: li.textContent }; }),
      summary: document.getElementById("s-requests").textContent,
      health: document.getElementById("health").textContent,
      error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
      tokenForm: !document.getElementById("token-form").hidden,
      scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth
    };
  }
  (function wait() { if (ready()) { resolve(read()); } else { setTimeout(wait, 50); } }());
})
"""


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


def test_the_dashboard_draws_the_stores_data_on_a_phone(server: tuple[DashboardServer, Monitor, FakeClock],
                                                        chromium: str) -> None:
    """At phone width: tables and charts hold the store's data, it refreshes itself, no console error, no
    request leaves the host, the token travels in the Authorization header; a screenshot is saved."""
    srv, mon, clock = server
    tools = open_page(chromium, f"{srv.url}/?token={TOKEN}", PHONE)
    try:
        page = tools.evaluate(READ_PAGE)
        assert page["error"] == "" and not page["tokenForm"], page["error"]
        assert page["search"] == "", "the token is taken out of the address bar"
        assert page["scrollWidth"] <= page["innerWidth"] == PHONE["width"], "no sideways scrolling on a phone"

        assert mon.store is not None
        since, until = utc_datetime(clock.now() - 3600), utc_datetime(clock.now())
        expected = mon.store.fetchall(
            "SELECT route, count(*), quantile_disc(duration_ms, 0.5), quantile_disc(duration_ms, 0.95), "
            "quantile_disc(duration_ms, 0.99) FROM requests WHERE ts BETWEEN ? AND ? GROUP BY route "
            "ORDER BY count(*) DESC, route", [since, until])
        assert [r[0] for r in page["routes"]] == [e[0] for e in expected]
        for row, (_route, count, p50, p95, p99) in zip(page["routes"], expected, strict=True):
            assert int(row[1].replace(",", "")) == count
            assert row[3:6] == [ms(p50), ms(p95), ms(p99)]
        total = mon.store.fetchall("SELECT count(*) FROM requests WHERE ts BETWEEN ? AND ?", [since, until])[0][0]
        assert int(page["summary"].replace(",", "")) == total

        assert {c["route"] for c in page["charts"]} == {e[0] for e in expected}
        for chart in page["charts"]:
            assert [line["cls"] for line in chart["lines"]] == ["line p50", "line p95", "line p99"]
            assert all(line["d"].startswith("M") and line["points"] >= 1 for line in chart["lines"])
        busiest = next(c for c in page["charts"] if c["route"] == "/")
        buckets = mon.store.fetchall("SELECT count(DISTINCT floor(epoch(ts) / 30)) FROM requests WHERE route = '/' "
                                     "AND ts BETWEEN ? AND ?", [since, until])[0][0]  # 1h: 30 s buckets
        assert busiest["lines"][0]["points"] in (120, 121), "every 30 s bucket of the hour"
        assert busiest["lines"][0]["d"].count("L") + busiest["lines"][0]["d"].count("M") == buckets > 40, \
            "one vertex per bucket holding requests"

        fingerprints = {r[0] for r in page["queries"]}
        assert "SELECT * FROM books WHERE author_id = ? AND position = ?" in fingerprints
        assert any(r[5] == "N+1" for r in page["queries"])
        assert len(page["nplusone"]) == 1 and "author_id" in page["nplusone"][0]
        assert len(page["memory"]) == 1 and page["memory"][0][0].endswith(f"/ {os.getpid()}")
        assert page["sparklines"] == 1
        assert [a["rule"] for a in page["alerts"]] == ["request_over_1s"]
        assert page["health"] == "health: ok"

        # It refreshes itself: a request recorded now shows up without reloading the page.
        mon.track_request("/fresh", "GET", 200, 1.0)
        mon.flush()
        # Time goes on, as it does for a real app: the page asks for the window ending at its clock's "now" in
        # milliseconds, and a row stamped with the frozen fake clock's sub-millisecond remainder lies past that
        # end until the clock moves (the test hung about one run in two when it never moved).
        clock.advance(1.0)
        tools.evaluate("""new Promise(function (resolve) {
            (function wait() {
              var found = Array.from(document.querySelectorAll("#routes td")).some(function (td) {
                return td.textContent === "/fresh"; });
              if (found) { resolve(true); } else { setTimeout(wait, 50); } }());
          })""")
        tools.screenshot(ARTIFACTS / "dashboard-phone.png")
        errors, outside, api = problems(tools, srv.url)
        assert errors == []
        assert outside == []
        assert api and all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in api)
        assert sum(1 for r in api if "/api/metrics/performance" in r["url"]) >= 2, "it fetched more than once"
    finally:
        tools.ws.close()


def test_the_dashboard_on_a_desktop_asks_for_a_missing_token(server: tuple[DashboardServer, Monitor, FakeClock],
                                                             chromium: str) -> None:
    """Without a token the page shows the token form; entering it loads the data (screenshot saved)."""
    srv, _, _ = server
    tools = open_page(chromium, f"{srv.url}/", DESKTOP)
    try:
        tools.call("Runtime.evaluate", expression="sessionStorage.clear()")
        tools.call("Page.reload")
        tools.wait_for("Page.loadEventFired")
        shown = tools.evaluate("""new Promise(function (resolve) {
            (function wait() { if (!document.getElementById("token-form").hidden) { resolve(true); }
                               else { setTimeout(wait, 50); } }()); })""")
        assert shown is True
        tools.evaluate(f"""(function () {{
            document.getElementById("token-input").value = {json.dumps(TOKEN)};
            document.getElementById("token-form").requestSubmit(); return true; }}())""")
        page = tools.evaluate(READ_PAGE)
        assert page["routes"] and not page["tokenForm"]
        tools.screenshot(ARTIFACTS / "dashboard-desktop.png")
        _, outside, _ = problems(tools, srv.url)
        assert outside == []
    finally:
        tools.ws.close()
