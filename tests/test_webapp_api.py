"""The dashboard's JSON API on a store filled with known traffic: every number checked against SQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipeline import Monitor
from pipeline.clock import utc_datetime
from pipeline.testing import FakeClock
from webapp import create_app, ranges
from webapp.testing import Traffic, record_sample_traffic, sql


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Monitor, FakeClock, Traffic]]:
    clock = FakeClock()
    mon = Monitor(db_path=tmp_path_factory.mktemp("api") / "m.duckdb", jobs=False, clock=clock,
                  memory_interval_seconds=None)
    traffic = record_sample_traffic(mon, clock, minutes=90)
    mon.run_jobs_now()  # the alert sweep: the slow /report request fires the plan's 1 s warning
    yield mon, clock, traffic
    mon.close()


@pytest.fixture(scope="module")
def app(filled: tuple[Monitor, FakeClock, Traffic]) -> Flask:
    return create_app({"TESTING": True}, monitor=filled[0])


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def mon(filled: tuple[Monitor, FakeClock, Traffic]) -> Monitor:
    return filled[0]


def nearest_rank(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile, computed in Python from the raw values SQL returned."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def window_bounds(mon: Monitor, seconds: float) -> tuple[datetime, datetime]:
    end = utc_datetime(mon.clock.now())
    return end - timedelta(seconds=seconds), end


def iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds") + "Z"


@pytest.mark.parametrize("window,seconds", [("5m", 300), ("1h", 3600), ("24h", 86_400), ("90s", 90)])
def test_performance_has_the_plans_shape_and_the_stores_numbers(client: FlaskClient, mon: Monitor, window: str,
                                                                 seconds: int, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """/api/metrics/performance answers the plan's shape; each number equals SQL over the same window."""
    monkeypatch.setattr(ranges, "EXACT_UP_TO_ROWS", 0)  # beyond an hour, the tiers (whatever the rows)
    body = client.get(f"/api/metrics/performance?window={window}").get_json()
    assert set(body) == {"requests", "queries", "memory", "timestamp"}
    assert set(body["requests"]) == {"total", "byRoute", "avgDuration", "p95Duration", "method", "errorBound"}
    assert set(body["queries"]) == {"total", "avgDuration", "slowQueries"}
    assert set(body["memory"]) == {"current", "avg", "liveProcesses"}
    assert body["timestamp"] == iso(utc_datetime(mon.clock.now()))
    since, until = window_bounds(mon, seconds)

    durations = [r[0] for r in sql(mon, "SELECT duration_ms FROM requests WHERE ts BETWEEN ? AND ?", since, until)]
    assert body["requests"]["total"] == len(durations) > 0
    assert body["requests"]["avgDuration"] == pytest.approx(sum(durations) / len(durations))
    p95 = nearest_rank(durations, 0.95)
    assert p95 is not None
    if seconds <= 3600:  # exact from raw rows
        assert (body["requests"]["method"], body["requests"]["errorBound"]) == ("exact", 0.0)
        assert body["requests"]["p95Duration"] == p95
    else:  # merged from the rollups' sketches, within their bound
        assert body["requests"]["method"] == "sketch"
        assert abs(body["requests"]["p95Duration"] - p95) <= body["requests"]["errorBound"] * p95
    by_route = dict(sql(mon, "SELECT route, count(*) FROM requests WHERE ts BETWEEN ? AND ? GROUP BY route",
                        since, until))
    assert body["requests"]["byRoute"] == by_route
    counts = list(body["requests"]["byRoute"].values())
    assert counts == sorted(counts, reverse=True), "busiest route first"

    q = [r[0] for r in sql(mon, "SELECT duration_ms FROM queries WHERE ts BETWEEN ? AND ?", since, until)]
    assert body["queries"]["total"] == len(q)
    assert body["queries"]["avgDuration"] == pytest.approx(sum(q) / len(q))
    slow = body["queries"]["slowQueries"]
    assert slow and len(slow) <= 10
    maxes = [s["maxDuration"] for s in slow]
    assert maxes == sorted(maxes, reverse=True)
    for s in slow:
        per_fp = [r[0] for r in sql(mon, "SELECT duration_ms FROM queries WHERE ts BETWEEN ? AND ? AND "
                                         "fingerprint = ?", since, until, s["fingerprint"])]
        assert s["count"] == len(per_fp)
        assert s["maxDuration"] == max(per_fp)
        assert s["avgDuration"] == pytest.approx(sum(per_fp) / len(per_fp))
        assert s["p95Duration"] == nearest_rank(per_fp, 0.95)
    slowest_anywhere = sql(mon, "SELECT max(duration_ms) FROM queries WHERE ts BETWEEN ? AND ?", since, until)[0][0]
    assert maxes[0] == slowest_anywhere

    rss = sql(mon, "SELECT ts, rss_bytes FROM process_samples WHERE ts BETWEEN ? AND ? ORDER BY ts", since, until)
    if rss:
        assert body["memory"]["current"] == rss[-1][1]  # one live process: its latest sample
        assert body["memory"]["liveProcesses"] == 1
        assert body["memory"]["avg"] == pytest.approx(sum(r[1] for r in rss) / len(rss))
    else:
        assert body["memory"] == {"current": None, "avg": None, "liveProcesses": 0}


def test_an_empty_store_answers_zeros_and_nulls(monitor: Monitor) -> None:
    """With no rows, counts are zero, averages and percentiles null (never NaN), lists empty."""
    client = create_app({"TESTING": True}, monitor=monitor).test_client()
    body = client.get("/api/metrics/performance").get_json()
    assert body["requests"] == {"total": 0, "byRoute": {}, "avgDuration": None, "p95Duration": None,
                                "method": "exact", "errorBound": 0.0}
    assert body["queries"] == {"total": 0, "avgDuration": None, "slowQueries": []}
    assert body["memory"] == {"current": None, "avg": None, "liveProcesses": 0}
    for path, key in (("/api/routes", "routes"), ("/api/series", "series"), ("/api/queries", "queries"),
                      ("/api/memory", "processes"), ("/api/alerts", "alerts"), ("/api/silences", "silences"),
                      ("/api/errors", "groups"), ("/api/statuses", "statuses"), ("/api/histogram", "bars"),
                      ("/api/requests/slowest", "requests")):
        assert client.get(path).get_json()[key] == [], path
    points = client.get("/api/timeline?window=5m").get_json()["points"]
    assert len(points) >= 10 and all(p["count"] == 0 and p["p95"] is None for p in points)


def test_routes_match_sql_per_route(client: FlaskClient, mon: Monitor) -> None:
    """/api/routes: per route, count, errors, error rate and nearest-rank p50/p95/p99 equal SQL's."""
    body = client.get("/api/routes?window=1h").get_json()
    since, until = window_bounds(mon, 3600)
    assert body["start"] == iso(since) and body["end"] == iso(until)
    routes = {r["route"]: r for r in body["routes"]}
    expected = sql(mon, "SELECT route, list(duration_ms), count(*) FILTER (WHERE status >= 500) FROM requests "
                        "WHERE ts BETWEEN ? AND ? GROUP BY route", since, until)
    assert set(routes) == {e[0] for e in expected}
    for route, durations, errors in expected:
        got = routes[route]
        assert got["count"] == len(durations)
        assert got["errors"] == errors
        assert got["errorRate"] == pytest.approx(errors / len(durations))
        assert got["p50"] == nearest_rank(durations, 0.50)
        assert got["p95"] == nearest_rank(durations, 0.95)
        assert got["p99"] == nearest_rank(durations, 0.99)
        assert got["avg"] == pytest.approx(sum(durations) / len(durations))
        assert got["max"] == max(durations)
        assert got["p50"] <= got["p95"] <= got["p99"] <= got["max"]
    assert any(r["errors"] for r in body["routes"]), "the sample traffic has failing requests"


def test_long_ranges_take_percentiles_from_the_rollups_within_their_bound(client: FlaskClient, mon: Monitor,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond an hour (and more raw rows than EXACT_UP_TO_ROWS), /api/routes counts exactly and takes p50/p95/p99
    from the rollups' sketches, each within its stated relative error of the exact nearest rank; up to an hour
    they are exact."""
    monkeypatch.setattr(ranges, "EXACT_UP_TO_ROWS", 0)
    assert {r["method"] for r in client.get("/api/routes?window=1h").get_json()["routes"]} == {"exact"}
    body = client.get("/api/routes?window=24h").get_json()
    since, until = window_bounds(mon, 86_400)
    expected = {r[0]: r[1:] for r in sql(mon, "SELECT route, list(duration_ms), count(*) FILTER "
                                              "(WHERE status >= 500), max(duration_ms) FROM requests "
                                              "WHERE ts BETWEEN ? AND ? GROUP BY route", since, until)}
    assert {r["route"] for r in body["routes"]} == set(expected)
    for got in body["routes"]:
        durations, errors, slowest = expected[got["route"]]
        assert (got["count"], got["errors"], got["max"]) == (len(durations), errors, slowest)
        assert got["method"] in ("exact", "sketch")
        assert got["errorBound"] == (0.0 if got["method"] == "exact" else pytest.approx(0.0099, abs=1e-4))
        for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            exact = nearest_rank(durations, q)
            assert exact is not None
            assert abs(got[key] - exact) <= got["errorBound"] * exact + 1e-9, (got["route"], key)
    assert "sketch" in {r["method"] for r in body["routes"]}, "90 minutes of rolled-up history use the sketches"


def test_series_buckets_match_sql(client: FlaskClient, mon: Monitor) -> None:
    """/api/series: per route and 10-minute bucket, count, errors and percentiles equal SQL over that bucket."""
    body = client.get("/api/series?window=1h&step=10m").get_json()
    assert body["stepSeconds"] == 600
    since, until = window_bounds(mon, 3600)
    assert {s["route"] for s in body["series"]} == {r[0] for r in sql(
        mon, "SELECT DISTINCT route FROM requests WHERE ts BETWEEN ? AND ?", since, until)}
    checked = 0
    for series in body["series"]:
        times = [p["t"] for p in series["points"]]
        assert times == sorted(times)
        for point in series["points"]:
            aware = datetime.fromisoformat(point["t"].replace("Z", "+00:00"))
            assert aware.timestamp() % 600 == 0, "buckets are aligned on the epoch"
            bucket = aware.replace(tzinfo=None)
            lo, hi = max(bucket, since), min(bucket + timedelta(minutes=10), until + timedelta(microseconds=1))
            rows = sql(mon, "SELECT duration_ms, status FROM requests WHERE route = ? AND ts >= ? AND ts < ?",
                       series["route"], lo, hi)
            durations = [r[0] for r in rows]
            errors = sum(1 for r in rows if r[1] >= 500)
            assert point["count"] == len(durations)
            assert point["errors"] == errors
            assert point["errorRate"] == (pytest.approx(errors / len(durations)) if durations else None)
            assert (point["p50"], point["p95"], point["p99"]) == (
                nearest_rank(durations, 0.5), nearest_rank(durations, 0.95), nearest_rank(durations, 0.99))
            checked += 1
        assert len(series["points"]) == 7, "every bucket of the hour, from the one holding its start"
    assert checked == 5 * 7
    assert (body["method"], body["errorBound"]) == ("exact", 0.0)


def test_series_of_one_route_over_start_and_end(client: FlaskClient, mon: Monitor) -> None:
    """route= keeps one route; start/end bound the range; without step a round step gives <= 120 buckets."""
    start = utc_datetime(mon.clock.now() - 1800)
    end = utc_datetime(mon.clock.now() - 600)
    route = "/checkout"
    response = client.get("/api/series", query_string={"route": route, "start": iso(start), "end": iso(end)})
    body = response.get_json()
    assert [s["route"] for s in body["series"]] == [route]
    assert body["stepSeconds"] == 10  # the first round step giving at most 120 buckets over 1200 s
    total = sum(p["count"] for p in body["series"][0]["points"])
    assert total == sql(mon, "SELECT count(*) FROM requests WHERE route = ? AND ts BETWEEN ? AND ?",
                        route, start, end)[0][0]
    epoch = client.get("/api/series", query_string={"route": route, "start": str(start.replace(
        tzinfo=UTC).timestamp()), "end": str(end.replace(tzinfo=UTC).timestamp())}).get_json()
    assert epoch["series"] == body["series"], "epoch seconds and ISO 8601 name the same range"
    assert client.get("/api/series", query_string={"route": "/nowhere"}).get_json()["series"] == []


def test_queries_fingerprints_and_n_plus_one_flags_match_sql(client: FlaskClient, mon: Monitor) -> None:
    """/api/queries: per fingerprint, count, total, p95 and failures equal SQL; N+1 flags the repeated query."""
    body = client.get("/api/queries?window=24h").get_json()
    since, until = window_bounds(mon, 86_400)
    threshold = body["nPlusOneThreshold"]
    assert threshold == 5
    expected = sql(mon, "SELECT fingerprint, list(duration_ms), count(*) FILTER (WHERE NOT success), "
                        "list_sort(list_distinct(list(route))) FROM queries WHERE ts BETWEEN ? AND ? "
                        "GROUP BY fingerprint", since, until)
    got = {q["fingerprint"]: q for q in body["queries"]}
    assert set(got) == {e[0] for e in expected}
    for fingerprint, durations, failures, routes in expected:
        q = got[fingerprint]
        assert q["count"] == len(durations)
        assert q["totalDuration"] == pytest.approx(sum(durations))
        assert q["p95Duration"] == nearest_rank(durations, 0.95)
        assert q["maxDuration"] == max(durations)
        assert q["failures"] == failures
        assert q["routes"] == routes
        per_request = sql(mon, "SELECT count(*) FROM queries WHERE ts BETWEEN ? AND ? AND fingerprint = ? "
                               "GROUP BY host, pid, request_id", since, until, fingerprint)
        repeated = sum(1 for (n,) in per_request if n >= threshold)
        assert q["nPlusOneRequests"] == repeated
        assert q["maxPerRequest"] == max(n for (n,) in per_request)
        assert q["nPlusOne"] is (repeated > 0)
    flagged = [q["fingerprint"] for q in body["queries"] if q["nPlusOne"]]
    assert flagged == ["SELECT * FROM books WHERE author_id = ? AND position = ?"]
    totals = [q["totalDuration"] for q in body["queries"]]
    assert totals == sorted(totals, reverse=True)
    assert len(client.get("/api/queries?limit=2").get_json()["queries"]) == 2


def test_memory_per_process_matches_sql(client: FlaskClient, mon: Monitor) -> None:
    """/api/memory: per process, latest, mean and peak RSS and the bucketed series equal SQL's."""
    body = client.get("/api/memory?window=1h&step=15m").get_json()
    since, until = window_bounds(mon, 3600)
    rows = sql(mon, "SELECT host, pid, ts, rss_bytes, vms_bytes, num_threads FROM process_samples "
                    "WHERE ts BETWEEN ? AND ? ORDER BY ts", since, until)
    assert len(body["processes"]) == len({(r[0], r[1]) for r in rows}) == 1
    p = body["processes"][0]
    rss = [r[3] for r in rows]
    assert (p["host"], p["pid"]) == (rows[0][0], rows[0][1])
    assert p["samples"] == len(rows)
    assert p["current"] == rows[-1][3] and p["vms"] == rows[-1][4] and p["numThreads"] == rows[-1][5]
    assert p["avg"] == pytest.approx(sum(rss) / len(rss))
    assert p["max"] == max(rss)
    assert p["lastSeen"] == iso(rows[-1][2]) and p["firstSeen"] == iso(rows[0][2])
    assert len(p["points"]) == 5, "every 15-minute bucket of the hour, from the one holding its start"
    for point in p["points"]:
        start = datetime.fromisoformat(point["t"].replace("Z", "+00:00")).replace(tzinfo=None)
        in_bucket = [r[3] for r in rows if start <= r[2] < start + timedelta(minutes=15)]
        assert point["max"] == (max(in_bucket) if in_bucket else None)
        assert point["avg"] == (pytest.approx(sum(in_bucket) / len(in_bucket)) if in_bucket else None)
    assert p["live"] is True and body["totals"] == {"liveProcesses": 1, "goneProcesses": 0,
                                                    "currentBytes": p["current"]}


def test_active_alerts_and_history_match_the_alert_tables(client: FlaskClient, mon: Monitor) -> None:
    """/api/alerts lists the firing and pending states; /api/alerts/history the transitions, newest first."""
    active = client.get("/api/alerts").get_json()["alerts"]
    expected = sql(mon, "SELECT rule, labels, state, value, threshold FROM alert_state "
                        "WHERE state IN ('pending', 'firing')")
    assert {(a["rule"], a["state"], a["value"], a["threshold"]) for a in active} == {
        (r[0], r[2], r[3], r[4]) for r in expected}
    fired = [a for a in active if a["rule"] == "request_over_1s"]
    assert fired and fired[0]["labels"] == {"route": "/report"} and fired[0]["level"] == "warning"
    assert fired[0]["message"]
    events = client.get("/api/alerts/history?window=24h").get_json()["events"]
    count = sql(mon, "SELECT count(*) FROM alert_events")[0][0]
    assert len(events) == count > 0
    assert [e["ts"] for e in events] == sorted((e["ts"] for e in events), reverse=True)
    only = client.get("/api/alerts/history", query_string={"rule": "request_over_1s", "limit": 1}).get_json()
    assert len(only["events"]) == 1 and only["events"][0]["rule"] == "request_over_1s"
    assert only["events"][0]["to"] == "firing"


def test_silences_are_created_listed_and_expired(client: FlaskClient, mon: Monitor) -> None:
    """POST /api/silences creates one (stored in silences), GET lists it, DELETE ends it; nothing else writes."""
    before = sql(mon, "SELECT count(*) FROM silences")[0][0]
    response = client.post("/api/silences", json={"matchers": {"route": "/report"}, "duration": "2h",
                                                  "comment": "known slow report"})
    assert response.status_code == 201
    silence = response.get_json()["silence"]
    assert silence["matchers"] == {"route": "/report"} and silence["comment"] == "known slow report"
    now = mon.clock.now()
    assert silence["startsAt"] == iso(utc_datetime(now)) and silence["endsAt"] == iso(utc_datetime(now + 7200))
    assert sql(mon, "SELECT count(*) FROM silences")[0][0] == before + 1
    listed = client.get("/api/silences").get_json()["silences"]
    assert silence in listed
    until = iso(utc_datetime(now + 600))
    second = client.post("/api/silences", json={"matchers": {"rule": "request_over_1s", "level": "warning"},
                                                "endsAt": until}).get_json()["silence"]
    assert second["endsAt"] == until and second["comment"] == ""
    assert client.delete(f"/api/silences/{silence['id']}").get_json()["expired"] == silence["id"]
    ids = [s["id"] for s in client.get("/api/silences").get_json()["silences"]]
    assert silence["id"] not in ids and second["id"] in ids
    assert sql(mon, "SELECT ends_at FROM silences WHERE silence_id = ?", silence["id"])[0][0] == utc_datetime(now)
    assert client.delete(f"/api/silences/{silence['id']}").status_code == 404


@pytest.mark.parametrize("body,status,fragment", [
    ({"matchers": {}, "duration": "1h"}, 400, "matchers must be an object of 1 to 16"),
    ({"matchers": {"rule": 3}, "duration": "1h"}, 400, "string values"),
    ({"matchers": {"rule": "a"}}, 400, "exactly one of duration"),
    ({"matchers": {"rule": "a"}, "duration": "1h", "endsAt": "2026-01-01T00:00:00Z"}, 400, "exactly one"),
    ({"matchers": {"rule": "a"}, "duration": "soon"}, 400, "is not a duration"),
    ({"matchers": {"rule": "a"}, "duration": 60}, 400, "duration must be a string"),
    ({"matchers": {"rule": "a"}, "endsAt": 5}, 400, "endsAt must be a string"),
    ({"matchers": {"rule": "a"}, "endsAt": "2020-01-01T00:00:00Z"}, 400, "not after now"),
    ({"matchers": {"rule": "a"}, "duration": "1h", "comment": 7}, 400, "comment must be a string"),
    ({"matchers": {"rule": "a"}, "duration": "1h", "who": "me"}, 400, "unknown field(s) who"),
    ([1, 2], 400, "must be a JSON object"),
])
def test_bad_silences_are_refused_with_a_message(client: FlaskClient, body: Any, status: int,
                                                 fragment: str) -> None:
    """A malformed silence is a 400 whose message says what is wrong; nothing is stored."""
    response = client.post("/api/silences", json=body)
    assert response.status_code == status
    assert fragment in response.get_json()["error"]["message"]


def test_a_silence_must_be_json(client: FlaskClient) -> None:
    """A silence sent as a form (what a cross-site page could send) is refused with 415."""
    response = client.post("/api/silences", data={"matchers": "x"})
    assert response.status_code == 415
    assert "application/json" in response.get_json()["error"]["message"]


def test_health_reports_the_monitors_stats(client: FlaskClient, mon: Monitor) -> None:
    """/api/health shows recorded/flushed/dropped, the spool backlog, the last ingest and the jobs."""
    body = client.get("/api/health").get_json()
    stats = mon.stats()
    assert body["status"] == "ok" and body["problems"] == []
    assert body["recorded"] == stats["recorded"] and body["flushed"] == stats["flushed"]
    assert body["dropped"] == stats["dropped"] and body["rejected"] == stats["rejected"]
    assert body["pending"] == stats["pending"]
    assert body["flushFailures"] == 0
    assert body["lastFlushAt"] == iso(utc_datetime(stats["last_flush_at"]))
    assert body["spool"]["backlog"] == stats["ingest"]["backlog"] == 0
    assert set(body["jobs"]) == set(stats["jobs"])
    assert all(job["runs"] == stats["jobs"][name]["runs"] for name, job in body["jobs"].items())
    assert "lastError" in body["jobs"]["ingest"], "without a token every client sees the error texts"


def test_health_is_degraded_when_metrics_were_lost() -> None:
    """Recent drops, failed flushes, failed or quarantined ingests, a lost database file and failing jobs make the
    status degraded; the same counts with no recent fault (it recovered) leave only the failing job."""
    from webapp.bodies import health_body

    stats: dict[str, object] = {
        "recorded": 10, "flushed": 5, "pending": 0, "dropped": {"buffer_full": 5}, "rejected": {},
        "flush_failures": 2, "last_flush_at": None, "role": "owner", "pid": 1,
        "ingest": {"backlog": 3, "segments": 1, "rows": 5, "quarantined": 1, "failures": 1,
                   "last_ingest_at": 1_767_225_600.0, "last_error": "boom"},
        "store": {"file_lost": 1, "rows_lost": 7, "last_file_lost_at": 1_767_225_600.0, "last_error": "gone"},
        "jobs": {"rollup": {"runs": 2, "failures": 1, "last_run_at": 1_767_225_600.0,
                            "last_duration_seconds": 0.1, "last_error": "ValueError: x"}},
        "recent_faults": {"dropped": 1.0, "flush_failures": 2.0, "ingest_failures": 3.0, "quarantined": 4.0,
                          "database_file_lost": 5.0},
        "fault_window_seconds": 300.0}
    body = health_body(stats, detailed=False)
    assert body["status"] == "degraded"
    assert len(body["problems"]) == 6
    assert body["database"] == {"fileLost": 1, "rowsLost": 7, "lastFileLostAt": "2026-01-01T00:00:00.000Z"}
    recovered = health_body({**stats, "recent_faults": {}}, detailed=False)
    assert recovered["problems"] == ["the last run of job 'rollup' failed"]
    assert recovered["flushFailures"] == 2 and recovered["spool"]["quarantined"] == 1
    assert "lastError" not in body["spool"] and "lastError" not in body["jobs"]["rollup"]
    assert "lastFlushError" not in body
    assert body["spool"]["lastIngestAt"] == "2026-01-01T00:00:00.000Z"
    detailed = health_body(stats, detailed=True)
    assert detailed["spool"]["lastError"] == "boom" and detailed["jobs"]["rollup"]["lastError"] == "ValueError: x"


def test_openapi_describes_every_route_of_the_app(client: FlaskClient, app: Flask) -> None:
    """Every API route the app serves is in the OpenAPI document, with its methods."""
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith(("static", "page")):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        served |= {(path, m) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    assert served == documented


def test_the_page_is_served_with_its_assets_and_a_strict_policy(client: FlaskClient) -> None:
    """/ is the HTML dashboard; its script and style come from the app; the CSP allows nothing else."""
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="/static/dashboard.js"' in html and 'href="/static/dashboard.css"' in html
    assert "http://" not in html and "https://" not in html, "nothing is loaded from elsewhere"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert client.get(asset).status_code == 200


def test_create_app_owns_the_file_when_given_no_monitor(tmp_path: Path) -> None:
    """Without a monitor, create_app opens DUCKPULSE_DB_PATH as the owner (and ingests DUCKPULSE_SPOOL_DIR)."""
    db = tmp_path / "own.duckdb"
    app = create_app({"DUCKPULSE_DB_PATH": str(db), "DUCKPULSE_SPOOL_DIR": str(tmp_path / "spool")})
    mon = app.extensions["duckpulse"]["monitor"]
    try:
        assert mon.is_owner and mon.ingest_dir == tmp_path / "spool"
        mon.track_request("/x", "GET", 200, 4.0)
        mon.flush()
        body = app.test_client().get("/api/metrics/performance?window=5m").get_json()
        assert body["requests"]["byRoute"] == {"/x": 1}
    finally:
        mon.close()
    response = app.test_client().get("/api/routes")
    assert response.status_code == 503, "a closed monitor is reported, not a crash"
    assert "closed" in response.get_json()["error"]["message"]
