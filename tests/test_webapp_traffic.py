"""Traffic over any range (/api/timeline, /api/routes, /api/histogram): every number checked against SQL over the
raw rows, exactly for counts, and within the stated bound for percentiles merged from the rollups' sketches."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from pipeline import Monitor
from pipeline.clock import utc_datetime
from pipeline.sketch import GAMMA
from pipeline.testing import FakeClock
from webapp import create_app, ranges
from webapp.params import TimeRange
from webapp.testing import record_sample_traffic, sql

OUTAGE = (70, 76)  # minutes of the 90 recorded without any request: gaps the charts must show


@pytest.fixture(scope="module")
def mon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    clock = FakeClock()
    m = Monitor(db_path=tmp_path_factory.mktemp("traffic") / "m.duckdb", jobs=False, clock=clock,
                memory_interval_seconds=None)
    record_sample_traffic(m, clock, minutes=90, outage=OUTAGE)
    m.run_jobs_now()  # the rollups: ranges beyond an hour read them
    yield m
    m.close()


@pytest.fixture
def client(mon: Monitor) -> FlaskClient:
    return create_app({"TESTING": True}, monitor=mon).test_client()


def nearest_rank(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1] if ordered else None


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def in_bucket(mon: Monitor, start: datetime, end: datetime, bucket: datetime, step: timedelta,
              route: str | None = None) -> list[tuple[float, int]]:
    """(duration, status) of the requests of one bucket, clipped to the closed range [start, end]."""
    lo, hi = max(bucket, start), min(bucket + step, end + timedelta(microseconds=1))
    return sql(mon, "SELECT duration_ms, status FROM requests WHERE ts >= ? AND ts < ? AND (? IS NULL OR route = ?)",
               lo, hi, route, route)


def check_point(point: dict[str, Any], rows: list[tuple[float, int]], bound: float) -> None:
    durations = [r[0] for r in rows]
    errors = sum(1 for r in rows if r[1] >= 500)
    assert (point["count"], point["errors"]) == (len(durations), errors)
    assert point["clientErrors"] == sum(1 for r in rows if 400 <= r[1] < 500)
    if not durations:  # a gap: no number a chart would draw a line through
        assert point["errorRate"] is point["avg"] is point["p50"] is point["p95"] is point["p99"] is None
        return
    assert point["errorRate"] == pytest.approx(errors / len(durations))
    assert point["avg"] == pytest.approx(sum(durations) / len(durations))
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = nearest_rank(durations, q)
        assert exact is not None
        assert abs(point[key] - exact) <= bound * exact + 1e-9, (point["t"], key, point[key], exact)


@pytest.mark.parametrize("route", [None, "/checkout"])
def test_the_last_hour_is_every_bucket_exact_with_its_gaps(client: FlaskClient, mon: Monitor,
                                                           route: str | None) -> None:
    """/api/timeline over the last hour: one point per 5-minute bucket from the one holding the start to the one
    holding the end; requests, errors, error rate, mean and exact p50/p95/p99 per bucket equal SQL's; the outage's
    buckets count 0 with null percentiles."""
    body = client.get("/api/timeline", query_string={"window": "1h", "step": "5m", **(
        {"route": route} if route else {})}).get_json()
    end = utc_datetime(mon.clock.now())
    start = end - timedelta(hours=1)
    assert (body["method"], body["errorBound"], body["stepSeconds"], body["route"]) == ("exact", 0.0, 300, route)
    step = timedelta(minutes=5)
    times = [parse(p["t"]) for p in body["points"]]
    assert times[0] <= start < times[0] + step and times[-1] <= end < times[-1] + step
    assert all(b - a == step for a, b in itertools.pairwise(times)), "no bucket left out"
    for point, bucket in zip(body["points"], times, strict=True):
        check_point(point, in_bucket(mon, start, end, bucket, step, route), 0.0)
    assert sum(1 for p in body["points"] if p["count"] == 0) >= 1, "the outage is in the last hour"
    total = sql(mon, "SELECT count(*) FROM requests WHERE ts BETWEEN ? AND ? AND (? IS NULL OR route = ?)",
                start, end, route, route)[0][0]
    assert sum(p["count"] for p in body["points"]) == total > 0


def test_a_day_is_read_from_the_rollups_with_exact_counts(client: FlaskClient, mon: Monitor,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 24 hours (15-minute buckets, beyond the raw-row hour) counts stay exact and each bucket's percentiles,
    merged from the minute sketches, are within the stated relative error of the exact nearest rank."""
    monkeypatch.setattr(ranges, "EXACT_UP_TO_ROWS", 0)  # more rows than that: the tiers
    body = client.get("/api/timeline?window=24h").get_json()
    end = utc_datetime(mon.clock.now())
    start = end - timedelta(hours=24)
    assert (body["method"], body["stepSeconds"]) == ("sketch", 900)
    assert body["errorBound"] == pytest.approx((GAMMA - 1) / (GAMMA + 1))
    assert len(body["points"]) in (96, 97)
    step = timedelta(minutes=15)
    for point in body["points"]:
        check_point(point, in_bucket(mon, start, end, parse(point["t"]), step), body["errorBound"])
    assert sum(p["count"] for p in body["points"]) == sql(mon, "SELECT count(*) FROM requests")[0][0]


def test_a_custom_range_in_the_past(client: FlaskClient, mon: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """start/end name any range: 80 minutes ending 10 minutes before the last row, as a zoom would ask; the routes
    table over it counts exactly and its percentiles are within their bound."""
    monkeypatch.setattr(ranges, "EXACT_UP_TO_ROWS", 0)  # more rows than that: the tiers
    end = utc_datetime(mon.clock.now() - 600)
    start = end - timedelta(minutes=80)
    query = {"start": start.isoformat() + "Z", "end": end.isoformat() + "Z"}
    timeline = client.get("/api/timeline", query_string=query).get_json()
    assert (timeline["start"], timeline["end"]) == (start.isoformat(timespec="milliseconds") + "Z",
                                                    end.isoformat(timespec="milliseconds") + "Z")
    step = timedelta(seconds=timeline["stepSeconds"])
    assert step == timedelta(minutes=1), "the first round step giving at most 120 buckets"
    for point in timeline["points"]:
        check_point(point, in_bucket(mon, start, end, parse(point["t"]), step), timeline["errorBound"])
    routes = client.get("/api/routes", query_string=query).get_json()["routes"]
    expected = sql(mon, "SELECT route, list(duration_ms), count(*) FILTER (WHERE status >= 500), max(duration_ms) "
                        "FROM requests WHERE ts BETWEEN ? AND ? GROUP BY route ORDER BY count(*) DESC, route",
                   start, end)
    assert [r["route"] for r in routes] == [e[0] for e in expected]
    for got, (_route, durations, errors, slowest) in zip(routes, expected, strict=True):
        assert (got["count"], got["errors"], got["max"]) == (len(durations), errors, slowest)
        assert got["avg"] == pytest.approx(sum(durations) / len(durations))
        assert got["method"] == "sketch"
        for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            exact = nearest_rank(durations, q)
            assert exact is not None and abs(got[key] - exact) <= got["errorBound"] * exact + 1e-9
    one = client.get("/api/routes", query_string={**query, "route": "/checkout"}).get_json()["routes"]
    assert one == [r for r in routes if r["route"] == "/checkout"]


def test_beyond_an_hour_few_raw_rows_are_read_exactly(mon: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A range beyond an hour that holds at most EXACT_UP_TO_ROWS requests (of its route, on a route's page) is
    read from raw rows: its percentiles equal SQL's nearest rank, per route and per bucket. One request over the
    threshold, or a start before raw rows are kept (raw_since), sends it to the tiers."""
    client = create_app({"DUCKPULSE_CACHE_SECONDS": 0}, monitor=mon).test_client()  # the same URLs, asked again
    end = utc_datetime(mon.clock.now() - 600)
    start = end - timedelta(minutes=80)
    query = {"start": start.isoformat() + "Z", "end": end.isoformat() + "Z"}
    expected = sql(mon, "SELECT route, list(duration_ms) FROM requests WHERE ts BETWEEN ? AND ? GROUP BY route "
                        "ORDER BY count(*) DESC, route", start, end)
    rows = sum(len(durations) for _, durations in expected)
    monkeypatch.setattr(ranges, "EXACT_UP_TO_ROWS", rows)
    routes = client.get("/api/routes", query_string=query).get_json()["routes"]
    assert [r["route"] for r in routes] == [e[0] for e in expected]
    for got, (_route, durations) in zip(routes, expected, strict=True):
        assert (got["method"], got["errorBound"], got["count"]) == ("exact", 0.0, len(durations))
        assert [got["p50"], got["p95"], got["p99"]] == [nearest_rank(durations, q) for q in (0.5, 0.95, 0.99)]
    timeline = client.get("/api/timeline", query_string=query).get_json()
    assert (timeline["method"], timeline["errorBound"]) == ("exact", 0.0)
    step = timedelta(seconds=timeline["stepSeconds"])
    for point in timeline["points"]:
        check_point(point, in_bucket(mon, start, end, parse(point["t"]), step), 0.0)

    monkeypatch.setattr(ranges, "EXACT_UP_TO_ROWS", rows - 1)
    assert {r["method"] for r in client.get("/api/routes", query_string=query).get_json()["routes"]} == {"sketch"}
    checkout = next(len(durations) for route, durations in expected if route == "/checkout")
    assert checkout <= rows - 1, "one route holds fewer rows than all of them"
    one = client.get("/api/routes", query_string={**query, "route": "/checkout"}).get_json()["routes"]
    assert [(r["method"], r["count"]) for r in one] == [("exact", checkout)]

    monkeypatch.setattr(ranges, "EXACT_UP_TO_ROWS", rows)
    span = TimeRange(start, end)
    assert mon.store is not None
    with mon.store.reading() as cursor:
        assert ranges.reading(cursor, span, raw_since=start).exact
        assert not ranges.reading(cursor, span, raw_since=start + timedelta(seconds=1)).exact, \
            "raw rows no longer cover its start: the tiers hold what retention deleted"
        assert not ranges.reading(cursor, span).exact, "without raw_since only ranges up to an hour are exact"


@pytest.mark.parametrize("window,route", [("1h", None), ("24h", "/authors/<int:author_id>")])
def test_the_histogram_counts_every_request_in_its_bar(client: FlaskClient, mon: Monitor, window: str,
                                                       route: str | None) -> None:
    """/api/histogram: bars of equal width on a log scale (whole sketch bins), from the shortest to the longest
    duration; each bar's count equals SQL's count of the durations in (low, high], and they add up to the range."""
    body = client.get("/api/histogram", query_string={"window": window, **({"route": route} if route else {})}
                      ).get_json()
    end = utc_datetime(mon.clock.now())
    start = end - timedelta(seconds=3600 if window == "1h" else 86_400)
    durations = [r[0] for r in sql(mon, "SELECT duration_ms FROM requests WHERE ts BETWEEN ? AND ? AND "
                                        "(? IS NULL OR route = ?)", start, end, route, route)]
    bars = body["bars"]
    assert body["total"] == sum(b["count"] for b in bars) == len(durations) > 0
    assert 2 <= len(bars) <= 40
    width = round(math.log(bars[0]["high"] / bars[0]["low"], GAMMA))
    for bar, following in itertools.pairwise(bars):
        assert bar["high"] == following["low"], "the bars tile the axis"
        assert round(math.log(bar["high"] / bar["low"], GAMMA)) == width
    for bar in bars:
        first_bin = round(math.log(bar["low"], GAMMA)) + 1  # a bin b holds (GAMMA^(b-1), GAMMA^b]
        counted = sql(mon, "SELECT count(*) FROM requests WHERE ts BETWEEN ? AND ? AND (? IS NULL OR route = ?) "
                           "AND duckpulse_sketch_bin(duration_ms) BETWEEN ? AND ?", start, end, route, route,
                      first_bin, first_bin + width - 1)[0][0]
        assert bar["count"] == counted
        inside = sum(1 for d in durations if bar["low"] * (1 - 1e-12) < d <= bar["high"] * (1 + 1e-12))
        assert inside == bar["count"]
    assert bars[0]["low"] < min(durations) and max(durations) <= bars[-1]["high"]
