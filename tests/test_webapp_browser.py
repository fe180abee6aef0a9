"""The HTML dashboard in headless Chromium, driven over the Chrome DevTools Protocol (tests/devtools.py).

A real server on 127.0.0.1 (port 0) serves a store filled with known traffic (with an outage, failed checkouts
that raised, a slow request that fires an alert). The tests read what the page drew, check it against SQL, act
as a user would (a range in the URL, a drag on a chart, a click on an alert and on a slow request), watch every
request the page makes and every console message, and save screenshots at desktop and phone sizes under
test-artifacts/.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from devtools import CHROMIUM, DESKTOP, PHONE, DevTools, open_page, problems
from devtools import chromium as start_chromium

from pipeline import Monitor
from pipeline.clock import utc_datetime
from pipeline.testing import FakeClock
from webapp.server import DashboardServer
from webapp.testing import record_sample_traffic, sql

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "browser-test-token"
OUTAGE = (30, 34)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DashboardServer, Monitor, FakeClock]]:
    clock = FakeClock(start=time.time() - 3600)  # the page's clock labels stay near the real time
    mon = Monitor(db_path=tmp_path_factory.mktemp("browser") / "m.duckdb", jobs=False, clock=clock,
                  memory_interval_seconds=None)
    record_sample_traffic(mon, clock, minutes=50, outage=OUTAGE)
    mon.run_jobs_now()  # the slow /report request fires an alert for the page to show
    with DashboardServer(mon, "127.0.0.1", 0, TOKEN, config={"DUCKPULSE_REFRESH_SECONDS": 1}) as srv:
        yield srv, mon, clock
    mon.close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_chromium(tmp_path_factory.mktemp("chromium-profile")) as address:
        yield address


def ms(value: float | None) -> str:
    """The page's ms() in Python: toFixed rounds the exact binary value half up."""
    if value is None:
        return "\u2013"  # the en dash the page shows for no value

    def fixed(x: float, places: int) -> str:
        return str(Decimal(x).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))

    if value >= 1000:
        return fixed(value / 1000, 2) + " s"
    return (fixed(value, 0) if value >= 100 else fixed(value, 1)) + " ms"


def epoch(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def refreshed(tools: DevTools, after: int = 0) -> int:
    """Wait for a refresh of the page beyond ``after`` (the page counts them in data-refreshes)."""
    return int(tools.wait(f"Number(document.body.getAttribute('data-refreshes') || 0) > {after} && "
                          "Number(document.body.getAttribute('data-refreshes'))"))


READ = """(function () {
  function rows(sel) {
    return Array.from(document.querySelectorAll(sel + " tbody tr")).map(function (tr) {
      return Array.from(tr.children).map(function (td) { return td.textContent; }); });
  }
  function visible(el) { return !!el && el.getClientRects().length > 0; }
  var charts = window.duckpulse.charts;
  return {
    search: location.search, routes: rows("#routes"), memory: rows("#memory"), queries: rows("#queries"),
    charts: Object.keys(charts).map(function (key) {
      var u = charts[key];
      return { key: key, min: u.scales.x.min, max: u.scales.x.max, points: u.data[0].length,
               series: u.series.slice(1).map(function (s) { return s.label; }),
               nulls: u.data.slice(1).map(function (d) {
                 return d.filter(function (v) { return v === null; }).length; }) };
    }),
    errors: Array.from(document.querySelectorAll("#errors li.error-group")).map(function (li) {
      return { signature: li.getAttribute("data-signature"), type: li.querySelector(".type").textContent,
               message: li.querySelector(".message").textContent, where: li.querySelector(".where").textContent,
               count: li.querySelector(".count").textContent }; }),
    alerts: Array.from(document.querySelectorAll("#alerts li.alert")).map(function (li) {
      return { rule: li.getAttribute("data-rule"), text: li.textContent }; }),
    summary: document.getElementById("s-requests").textContent, health: document.getElementById("health").textContent,
    error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
    tokenForm: !document.getElementById("token-form").hidden,
    columns: Array.from(document.querySelectorAll("#routes thead th")).map(function (th) {
      var r = th.getBoundingClientRect();
      return { name: th.textContent.replace(/[^A-Za-z0-9]/g, ""), shown: visible(th), right: r.right }; }),
    range: document.getElementById("window").value, pause: document.getElementById("pause").textContent,
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth
  };
}())"""


def check_no_trouble(tools: DevTools, origin: str) -> list[dict[str, Any]]:
    """No console error or warning, no failed request, nothing requested outside the origin, the token in the
    Authorization header of every API call; returns those calls."""
    errors, outside, api = problems(tools, origin)
    assert errors == []
    assert outside == []
    assert api and all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in api)
    return api


def test_the_overview_on_a_phone(server: tuple[DashboardServer, Monitor, FakeClock], chromium: str) -> None:
    """At phone width: the routes table, the summary, the charts spanning the whole hour with the outage as a gap,
    the error groups with their signatures and the processes hold the store's data; route, count, p95 and errors
    are on screen without sideways scrolling; the page refreshes itself; a screenshot is saved."""
    srv, mon, clock = server
    tools = open_page(chromium, f"{srv.url}/?token={TOKEN}", PHONE)
    try:
        refreshed(tools)
        page = tools.evaluate(READ)
        assert page["error"] == "" and not page["tokenForm"], page["error"]
        assert page["search"] == "", "the token is taken out of the address bar"
        assert page["scrollWidth"] <= page["innerWidth"] == PHONE["width"], "no sideways scrolling on a phone"
        shown = {c["name"]: c for c in page["columns"] if c["shown"]}
        assert set(shown) == {"Route", "Count", "p95", "Errors"}, "the columns that matter, and only those"
        assert all(c["right"] <= PHONE["width"] for c in shown.values())

        since, until = utc_datetime(clock.now() - 3600), utc_datetime(clock.now())
        expected = sql(mon, "SELECT route, count(*), quantile_disc(duration_ms, 0.95), count(*) FILTER (WHERE "
                            "status >= 500) FROM requests WHERE ts BETWEEN ? AND ? GROUP BY route "
                            "ORDER BY count(*) DESC, route", since, until)
        assert [r[0] for r in page["routes"]] == [e[0] for e in expected]
        for row, (_route, count, p95, errors) in zip(page["routes"], expected, strict=True):
            assert int(row[1].replace(",", "")) == count
            assert row[3] == ms(p95)
            assert row[5].split(" ")[0] == str(errors)
        total = sql(mon, "SELECT count(*) FROM requests WHERE ts BETWEEN ? AND ?", since, until)[0][0]
        assert int(page["summary"].replace(",", "")) == total

        charts = {c["key"]: c for c in page["charts"]}
        assert {"overview:latency", "overview:throughput", "overview:errors", "overview:memory"} <= set(charts)
        latency = charts["overview:latency"]
        assert latency["series"] == ["p50", "p95", "p99"]
        assert (latency["min"], latency["max"]) == (pytest.approx(clock.now() - 3600, abs=1e-3),
                                                    pytest.approx(clock.now(), abs=1e-3)), "the whole hour"
        assert latency["points"] in (120, 121)
        assert latency["nulls"][0] >= 2 * (OUTAGE[1] - OUTAGE[0]) - 1, "the outage is a gap, not a line"

        groups = sql(mon, "SELECT signature_id, type, message, module, function, line, count(*) FROM exceptions "
                          "WHERE ts BETWEEN ? AND ? GROUP BY ALL ORDER BY count(*) DESC", since, until)
        assert [(g["signature"], g["type"], g["message"], g["where"], g["count"]) for g in page["errors"]] == [
            (str(sid), kind, message, f"at {module}.{function}:{line}", f"\u00d7{n}")
            for sid, kind, message, module, function, line, n in groups]
        assert page["errors"] and "?" in page["errors"][0]["message"]

        assert len(page["memory"]) == 1 and page["memory"][0][0].endswith(f"/ {os.getpid()}")
        assert page["memory"][0][1] == "live"
        assert [a["rule"] for a in page["alerts"]] == ["request_over_1s"]
        assert page["health"] == "health: ok"

        # It refreshes itself: a request recorded now shows up without reloading the page.
        mon.track_request("/fresh", "GET", 200, 1.0)
        mon.flush()
        # Time goes on, as it does for a real app: the page asks for the window ending at its clock's "now" in
        # milliseconds, and a row stamped with the frozen fake clock's sub-millisecond remainder lies past that
        # end until the clock moves (the test hung about one run in two when it never moved).
        clock.advance(1.0)
        tools.wait("Array.from(document.querySelectorAll('#routes td')).some(function (td) { "
                   "return td.textContent === '/fresh'; })")
        tools.screenshot(ARTIFACTS / "dashboard-phone.png")
        api = check_no_trouble(tools, srv.url)
        assert sum(1 for r in api if "/api/timeline" in r["url"]) >= 2, "it fetched more than once"
    finally:
        tools.ws.close()


def test_a_custom_range_from_the_url_then_a_zoom_by_drag(server: tuple[DashboardServer, Monitor, FakeClock],
                                                        chromium: str) -> None:
    """A link with start/end shows that range: every chart spans it, every API call asks for it, the routes table
    counts it, the picker says custom and nothing refreshes. A drag across the latency chart zooms: the range
    under the drag becomes the URL's, and the tables follow. The back button returns to the first range."""
    srv, mon, clock = server
    end = utc_datetime(clock.now() - 600)
    start = end - timedelta(minutes=30)
    query = f"start={start.isoformat()}Z&end={end.isoformat()}Z"
    tools = open_page(chromium, f"{srv.url}/?{query}&token={TOKEN}", DESKTOP)
    try:
        refreshed(tools)
        page = tools.evaluate(READ)
        assert parse_qs(page["search"][1:]) == {"start": [start.isoformat() + "Z"], "end": [end.isoformat() + "Z"]}
        assert page["range"] == "custom" and page["pause"] == "Fixed range"
        for chart in page["charts"]:
            assert (chart["min"], chart["max"]) == (pytest.approx(epoch(start), abs=1e-3),
                                                    pytest.approx(epoch(end), abs=1e-3)), chart["key"]
        counts = dict(sql(mon, "SELECT route, count(*) FROM requests WHERE ts BETWEEN ? AND ? GROUP BY route",
                          start, end))
        assert {r[0]: int(r[1].replace(",", "")) for r in page["routes"]} == counts
        _, _, api = problems(tools, srv.url)
        ranged = [r["url"] for r in api if "/api/" in r["url"] and "alerts" not in r["url"]
                  and "silences" not in r["url"] and "health" not in r["url"]]
        assert ranged and all(f"start={quote(start.isoformat() + 'Z', safe='')}" in u for u in ranged)

        # Drag from a quarter to three quarters of the latency chart's plotting area.
        box = tools.evaluate("""(function () {
            var u = window.duckpulse.charts["overview:latency"], r = u.over.getBoundingClientRect();
            u.over.scrollIntoView();
            r = u.over.getBoundingClientRect();
            return { left: r.left, top: r.top, width: r.width, height: r.height,
                     from: u.posToVal(r.width * 0.25, "x"), to: u.posToVal(r.width * 0.75, "x") }; }())""")
        y = box["top"] + box["height"] / 2
        before = refreshed(tools)
        tools.mouse("mouseMoved", box["left"] + box["width"] * 0.25, y)
        tools.mouse("mousePressed", box["left"] + box["width"] * 0.25, y)
        for step in range(1, 11):
            tools.mouse("mouseMoved", box["left"] + box["width"] * (0.25 + 0.05 * step), y, pressed=True)
        tools.mouse("mouseReleased", box["left"] + box["width"] * 0.75, y)
        refreshed(tools, before)
        zoomed = tools.evaluate(READ)
        params = parse_qs(zoomed["search"][1:])
        zoom_start, zoom_end = iso_seconds(params["start"][0]), iso_seconds(params["end"][0])
        pixel = (end - start).total_seconds() / box["width"]
        assert zoom_start == pytest.approx(box["from"], abs=2 * pixel)
        assert zoom_end == pytest.approx(box["to"], abs=2 * pixel)
        latency = next(c for c in zoomed["charts"] if c["key"] == "overview:latency")
        assert (latency["min"], latency["max"]) == (pytest.approx(zoom_start, abs=1e-3),
                                                    pytest.approx(zoom_end, abs=1e-3))
        counts = dict(sql(mon, "SELECT route, count(*) FROM requests WHERE ts BETWEEN ? AND ? GROUP BY route",
                          utc_datetime(zoom_start), utc_datetime(zoom_end)))
        assert {r[0]: int(r[1].replace(",", "")) for r in zoomed["routes"]} == counts
        tools.screenshot(ARTIFACTS / "dashboard-desktop-zoomed.png")

        before = refreshed(tools)
        tools.evaluate("history.back(), true")
        refreshed(tools, before)
        back = tools.evaluate(READ)
        assert parse_qs(back["search"][1:]) == {"start": [start.isoformat() + "Z"], "end": [end.isoformat() + "Z"]}
        check_no_trouble(tools, srv.url)
    finally:
        tools.ws.close()


def test_a_route_page_from_an_alert_and_a_slow_request_opened_to_its_queries(
        server: tuple[DashboardServer, Monitor, FakeClock], chromium: str) -> None:
    """The firing alert links to its route's page: percentiles, histogram and status codes of that route equal
    SQL's; a slow request opens to the queries it ran, in order, with their durations. Screenshots of the
    overview and the route page at desktop size, and of the route page at phone size."""
    srv, mon, clock = server
    tools = open_page(chromium, f"{srv.url}/?token={TOKEN}", DESKTOP)
    try:
        refreshed(tools)
        tools.screenshot(ARTIFACTS / "dashboard-desktop.png")
        before = refreshed(tools)
        tools.evaluate("document.querySelector('#alerts li.alert a[data-route]').click(), true")
        refreshed(tools, before)
        tools.wait("!document.getElementById('route-page').hidden && "
                   "!!document.querySelector('#slowest tbody tr.request')")
        assert tools.evaluate("location.search") == "?route=%2Freport"
        assert tools.evaluate("document.getElementById('route-name').textContent") == "/report"
        since, until = utc_datetime(clock.now() - 3600), utc_datetime(clock.now())
        count, p50, p95, p99 = sql(mon, "SELECT count(*), quantile_disc(duration_ms, 0.5), quantile_disc("
                                        "duration_ms, 0.95), quantile_disc(duration_ms, 0.99) FROM requests WHERE "
                                        "route = '/report' AND ts BETWEEN ? AND ?", since, until)[0]
        assert tools.evaluate("document.getElementById('r-count').textContent") == str(count)
        assert tools.evaluate("document.getElementById('r-pcts').textContent") == f"{ms(p50)} / {ms(p95)} / {ms(p99)}"
        bars = tools.evaluate("Array.from(document.querySelectorAll('#histogram .column')).map(function (c) { "
                              "return Number(c.getAttribute('data-count')); })")
        assert sum(bars) == count
        statuses = tools.evaluate("Array.from(document.querySelectorAll('#statuses tbody tr')).map(function (tr) { "
                                  "return [tr.children[0].textContent, tr.children[1].textContent]; })")
        assert statuses == [[str(s), str(n)] for s, n in sql(
            mon, "SELECT status, count(*) FROM requests WHERE route = '/report' AND ts BETWEEN ? AND ? "
                 "GROUP BY status ORDER BY status", since, until)]

        # The slowest request that ran a query: open it.
        row = tools.evaluate("""(function () {
            var rows = Array.from(document.querySelectorAll('#slowest tbody tr.request'));
            var tr = rows.find(function (r) { return r.duckpulseRequest.queryCount > 0; });
            tr.scrollIntoView(); tr.click(); return tr.duckpulseRequest; }())""")
        tools.wait("!!document.querySelector('#slowest tr.detail .waterfall li')")
        shown = tools.evaluate("Array.from(document.querySelectorAll('#slowest tr.detail .waterfall li')).map("
                               "function (li) { return [li.querySelector('.duration').textContent, "
                               "li.querySelector('.query').textContent]; })")
        queries = sql(mon, "SELECT duration_ms, fingerprint FROM queries WHERE host = ? AND pid = ? AND request_id = ? "
                           "ORDER BY ts, rowid", row["host"], row["pid"], int(row["requestId"]))
        assert shown == [[ms(d), f] for d, f in queries] and queries
        assert tools.evaluate("document.querySelector('#slowest tr.request[aria-expanded=true]') !== null")
        tools.screenshot(ARTIFACTS / "route-desktop.png")

        tools.call("Emulation.setDeviceMetricsOverride", **PHONE)
        # The charts follow the new width (after the page's resize debounce): none wider than its box.
        fits = tools.wait(f"""window.innerWidth === {PHONE['width']} && (function () {{
            var charts = window.duckpulse.charts;
            return Object.keys(charts).every(function (key) {{
              var u = charts[key], card = u.root.closest('.card');
                return u.root.getBoundingClientRect().right <= card.getBoundingClientRect().right; }})
              && document.documentElement.scrollWidth <= window.innerWidth; }}())""")
        assert fits is True, "no sideways scrolling on a phone"
        tools.screenshot(ARTIFACTS / "route-phone.png")
        check_no_trouble(tools, srv.url)
    finally:
        tools.ws.close()


def test_the_dashboard_on_a_desktop_asks_for_a_missing_token(server: tuple[DashboardServer, Monitor, FakeClock],
                                                             chromium: str) -> None:
    """Without a token the page shows the token form; entering it loads the data."""
    srv, _, _ = server
    tools = open_page(chromium, f"{srv.url}/", DESKTOP)
    try:
        tools.call("Runtime.evaluate", expression="sessionStorage.clear()")
        tools.call("Page.reload")
        tools.wait_for("Page.loadEventFired")
        assert tools.wait("!document.getElementById('token-form').hidden") is True
        # A condition that never holds fails its wait, saying what it waited for (a broken page never hangs a test).
        with pytest.raises(RuntimeError, match=r"timed out waiting for: window\.neverSet"):
            tools.wait("window.neverSet", seconds=0.2)
        tools.evaluate(f"""(function () {{
            document.getElementById("token-input").value = {json.dumps(TOKEN)};
            document.getElementById("token-form").requestSubmit(); return true; }}())""")
        refreshed(tools)
        page = tools.evaluate(READ)
        assert page["routes"] and not page["tokenForm"]
        _, outside, _ = problems(tools, srv.url)
        assert outside == []
        assert urlsplit(srv.url).hostname == "127.0.0.1"
    finally:
        tools.ws.close()
