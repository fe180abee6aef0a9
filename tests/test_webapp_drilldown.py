"""From a route to its status codes and slowest requests, from a request to its queries, and processes live or
gone: every number checked against SQL over the raw rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest
from flask.testing import FlaskClient

from pipeline import Monitor
from pipeline.clock import utc_datetime
from pipeline.testing import FakeClock
from webapp import create_app
from webapp.testing import record_sample_traffic, sql

GONE_PID = 4_000_000  # a process that reported for a while and stopped (never a real pid: above pid_max)


@pytest.fixture(scope="module")
def mon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    clock = FakeClock()
    m = Monitor(db_path=tmp_path_factory.mktemp("drilldown") / "m.duckdb", jobs=False, clock=clock,
                memory_interval_seconds=None)
    record_sample_traffic(m, clock, minutes=30)
    assert m.store is not None
    # A second process, gone 20 minutes ago: ten samples, one a minute, of 300 MB.
    ts = [utc_datetime(clock.now() - 1800 + 60 * i) for i in range(10)]
    m.store.append({"process_samples": pa.table({
        "ts": pa.array(ts, pa.timestamp("us")), "pid": pa.array([GONE_PID] * 10, pa.int32()),
        "host": ["other-host"] * 10, "rss_bytes": pa.array([300 * 2**20 + i for i in range(10)], pa.int64()),
        "vms_bytes": pa.array([2**31] * 10, pa.int64()), "cpu_percent": pa.array([None] + [5.0] * 9, pa.float64()),
        "num_threads": pa.array([4] * 10, pa.int32()), "num_fds": pa.array([12] * 10, pa.int32()),
        "gc_collections": pa.array(range(10), pa.int64()), "uss_bytes": pa.array([None] * 10, pa.int64())})})
    yield m
    m.close()


@pytest.fixture
def client(mon: Monitor) -> FlaskClient:
    return create_app({"TESTING": True}, monitor=mon).test_client()


def last_hour(mon: Monitor) -> tuple[Any, Any]:
    end = utc_datetime(mon.clock.now())
    return end - timedelta(hours=1), end


@pytest.mark.parametrize("route", [None, "/checkout"])
def test_status_codes_match_sql(client: FlaskClient, mon: Monitor, route: str | None) -> None:
    """/api/statuses: requests per status code of the range (or one route), by code."""
    body = client.get("/api/statuses", query_string={"window": "1h", **({"route": route} if route else {})}
                      ).get_json()
    expected = sql(mon, "SELECT status, count(*) FROM requests WHERE ts BETWEEN ? AND ? AND (? IS NULL OR route = ?) "
                        "GROUP BY status ORDER BY status", *last_hour(mon), route, route)
    assert [(s["status"], s["count"]) for s in body["statuses"]] == expected
    assert {s["status"] for s in body["statuses"]} == {200, 500}


def test_the_slowest_requests_of_a_route_open_to_their_queries(client: FlaskClient, mon: Monitor) -> None:
    """/api/requests/slowest lists a route's slowest requests (as SQL orders them); each one's
    /api/requests/queries returns that request and the queries it ran, in order, with their durations."""
    route = "/authors/<int:author_id>"  # seven queries per request
    body = client.get("/api/requests/slowest", query_string={"window": "1h", "route": route, "limit": 5}
                      ).get_json()
    expected = sql(mon, "SELECT ts, duration_ms, status, request_id, pid, host, query_count FROM requests "
                        "WHERE route = ? AND ts BETWEEN ? AND ? ORDER BY duration_ms DESC, ts DESC LIMIT 5",
                   route, *last_hour(mon))
    got = body["requests"]
    assert [(r["durationMs"], r["status"], r["requestId"], r["pid"], r["host"], r["queryCount"]) for r in got] == [
        (e[1], e[2], str(e[3]), e[4], e[5], e[6]) for e in expected]
    assert all(r["route"] == route and r["method"] == "GET" for r in got)
    for request in got:
        key = {"host": request["host"], "pid": request["pid"], "requestId": request["requestId"], "at": request["ts"]}
        detail = client.get("/api/requests/queries", query_string=key).get_json()
        assert detail["request"] == request
        queries = sql(mon, "SELECT fingerprint, duration_ms, success, ts FROM queries WHERE host = ? AND pid = ? "
                           "AND request_id = ? ORDER BY ts, rowid", request["host"], request["pid"],
                      int(request["requestId"]))
        assert len(queries) == 7
        assert [(q["fingerprint"], q["durationMs"], q["success"]) for q in detail["queries"]] == [
            q[:3] for q in queries]
        ended = sql(mon, "SELECT ts FROM requests WHERE host = ? AND pid = ? AND request_id = ?", request["host"],
                    request["pid"], int(request["requestId"]))[0][0]
        started = ended - timedelta(milliseconds=request["durationMs"])
        for q, row in zip(detail["queries"], queries, strict=True):
            assert q["endedAt"] == row[3].isoformat(timespec="milliseconds") + "Z"
            assert q["offsetMs"] == pytest.approx((row[3] - started).total_seconds() * 1000 - row[1])
    limited = client.get("/api/requests/slowest", query_string={"window": "1h"}).get_json()["requests"]
    assert len(limited) == 20 and limited[0]["durationMs"] == sql(
        mon, "SELECT max(duration_ms) FROM requests WHERE ts BETWEEN ? AND ?", *last_hour(mon))[0][0]


def test_a_request_that_is_not_stored_is_a_404_and_a_malformed_key_a_400(client: FlaskClient) -> None:
    """The queries of an unknown request: 404 saying where request keys come from; a bad key: 400."""
    missing = client.get("/api/requests/queries", query_string={"host": "h", "pid": 1, "requestId": "5",
                                                               "at": "2026-01-01T00:00:00Z"})
    assert missing.status_code == 404 and "/api/requests/slowest" in missing.get_json()["error"]["message"]
    for bad, fragment in (({"host": "h", "pid": 1}, "missing requestId, at"),
                          ({"host": "h", "pid": "x", "requestId": "1", "at": "0"}, "pid='x'"),
                          ({"host": "h", "pid": 1, "requestId": "1e3", "at": "0"}, "requestId='1e3'"),
                          ({"host": "h", "pid": 1, "requestId": "1", "at": "noon"}, "at='noon' is not a time")):
        response = client.get("/api/requests/queries", query_string=bad)
        assert response.status_code == 400 and fragment in response.get_json()["error"]["message"], bad


def test_live_and_gone_processes(client: FlaskClient, mon: Monitor) -> None:
    """/api/memory: the process still reporting is live; the one that stopped 20 minutes ago is gone, with when it
    was last seen; totals (and the performance summary's memory) count live processes only."""
    body = client.get("/api/memory?window=1h").get_json()
    live, gone = body["processes"]
    assert (live["live"], gone["live"]) == (True, False)
    assert gone["pid"] == GONE_PID and gone["host"] == "other-host"
    gone_rows = sql(mon, "SELECT max(ts), arg_max(rss_bytes, ts), max(rss_bytes), count(*) FROM process_samples "
                         "WHERE pid = ?", GONE_PID)[0]
    assert gone["lastSeen"] == gone_rows[0].isoformat(timespec="milliseconds") + "Z"
    assert (gone["current"], gone["max"], gone["samples"]) == gone_rows[1:]
    assert gone["cpuPercent"] == 5.0, "the latest CPU figure (the first sample had none)"
    live_rss = sql(mon, "SELECT arg_max(rss_bytes, ts) FROM process_samples WHERE pid <> ?", GONE_PID)[0][0]
    assert live["current"] == live_rss
    assert body["totals"] == {"liveProcesses": 1, "goneProcesses": 1, "currentBytes": live_rss}
    assert body["liveWithinSeconds"] == 60.0
    assert all(p["avg"] is None for p in gone["points"][-15:]), "no sample: a gap, not a zero"
    summary = client.get("/api/metrics/performance?window=1h").get_json()["memory"]
    assert (summary["current"], summary["liveProcesses"]) == (live_rss, 1)
    earlier = client.get("/api/memory", query_string={
        "start": (utc_datetime(mon.clock.now()) - timedelta(minutes=40)).isoformat(),
        "end": (utc_datetime(mon.clock.now()) - timedelta(minutes=25)).isoformat()}).get_json()
    assert {p["pid"]: p["live"] for p in earlier["processes"]}[GONE_PID] is True, "live at the end of that range"
