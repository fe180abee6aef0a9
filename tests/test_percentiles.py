"""percentiles(): exact for short ranges, merged sketches for long ones, grouped, from any source."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rollup import add_points, add_queries, add_requests

import pipeline
from pipeline import ConfigError, Monitor, OwnershipError, Percentile, percentiles, rollup, sketch
from pipeline.percentiles import Plan, parse_window, plan
from pipeline.rollup import TierState
from pipeline.store import Store
from pipeline.testing import FakeClock, memory_store

T0 = FakeClock().now()
HOUR = 3600.0
BOUND = sketch.RELATIVE_ERROR


def spread(store: Store, hours: float, per_hour: int, seed: int = 7) -> None:
    """Requests on three routes, lognormal durations, evenly over ``hours`` from T0."""
    rng = random.Random(seed)
    n = int(hours * per_hour)
    rows = [(T0 + i * hours * HOUR / n, rng.choice(["/a", "/b", "/c"]), rng.choice(["GET", "POST"]),
             rng.choice([200, 200, 200, 404, 503]), rng.lognormvariate(3, 1)) for i in range(n)]
    add_requests(store, rows)


def close_to(sketched: float | None, exact: float | None) -> bool:
    assert sketched is not None and exact is not None
    return abs(sketched - exact) <= BOUND * exact * (1 + 1e-9)


# -- windows and plans -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("24h", 86400),
                                               ("7d", 604800), ("1.5h", 5400), (90, 90), (timedelta(hours=2), 7200)])
def test_windows_are_parsed(text: Any, seconds: float) -> None:
    """Window strings, numbers of seconds and timedeltas all give seconds."""
    assert parse_window(text) == seconds


@pytest.mark.parametrize("bad", ["1w", "h", "-5m", "5 minutes", "", 0, True, None])
def test_a_bad_window_names_the_accepted_forms(bad: Any) -> None:
    """A window that is not a positive duration raises ConfigError listing what is accepted."""
    with pytest.raises(ConfigError, match="window="):
        parse_window(bad)


def test_plan_uses_hours_then_minutes_then_raw_edges() -> None:
    """A long range: whole hours from the hour tier, whole minutes beside them, seconds and the tail from raw."""
    minute, hour = TierState(T0, T0 + 10 * HOUR + 1200), TierState(T0, T0 + 10 * HOUR)
    p = plan(T0 + 90.5, T0 + 10 * HOUR + 1500.25, minute, hour)
    assert p.hours == (T0 + HOUR, T0 + 10 * HOUR)
    assert p.minutes == ((T0 + 120, T0 + HOUR), (T0 + 10 * HOUR, T0 + 10 * HOUR + 1200))
    assert p.raw == ((T0 + 90.5, T0 + 120), (T0 + 10 * HOUR + 1200, T0 + 10 * HOUR + 1500.25))


def test_plan_without_rollups_is_all_raw() -> None:
    """Before any rollup ran, the whole range comes from raw rows."""
    assert plan(T0, T0 + 5 * HOUR, None, None) == Plan(None, (), ((T0, T0 + 5 * HOUR),))


def test_plan_respects_what_retention_removed() -> None:
    """Buckets before a tier's first kept bucket are never planned from that tier."""
    p = plan(T0, T0 + 5 * HOUR, TierState(T0 + 2 * HOUR + 60, T0 + 5 * HOUR), TierState(T0 + 3 * HOUR, T0 + 5 * HOUR))
    assert p.hours == (T0 + 3 * HOUR, T0 + 5 * HOUR)
    assert p.minutes == ((T0 + 2 * HOUR + 60, T0 + 3 * HOUR),)
    assert p.raw == ((T0, T0 + 2 * HOUR + 60),)


# -- exact and sketch ------------------------------------------------------------------------------------------
def test_short_ranges_are_exact(store: Store, clock: FakeClock) -> None:
    """Up to an hour, the answer is DuckDB's exact nearest-rank percentile with error bound 0."""
    spread(store, hours=1, per_hour=500)
    clock.advance(HOUR)
    result = percentiles(store, "request_duration", window="1h")
    exact = store.fetchall("SELECT count(*), quantile_disc(duration_ms, [0.5, 0.95, 0.99]) FROM requests "
                           "WHERE ts > $s", {"s": datetime(2026, 1, 1)})[0]
    assert set(result) == {0.5, 0.95, 0.99}
    assert [result[q].value for q in (0.5, 0.95, 0.99)] == exact[1]
    assert all(p.method == "exact" and p.error_bound == 0.0 and p.count == exact[0] for p in result.values())


def test_long_ranges_merge_sketches_within_the_error_bound(store: Store, clock: FakeClock) -> None:
    """Over 30 hours with rollups, the answer comes from bins, counts every row, and stays within 0.99 %."""
    spread(store, hours=30, per_hour=200)
    clock.advance(30 * HOUR + 30)
    rollup.run(store, clock.now())
    sketched = percentiles(store, "request_duration", (0.5, 0.9, 0.99, 1.0), start=T0, end=T0 + 30 * HOUR)
    exact = percentiles(store, "request_duration", (0.5, 0.9, 0.99, 1.0), start=T0, end=T0 + 30 * HOUR,
                        method="exact")
    assert all(p.method == "sketch" and p.error_bound == BOUND for p in sketched.values())
    for q in sketched:
        assert sketched[q].count == exact[q].count == 6000
        assert close_to(sketched[q].value, exact[q].value)


def test_the_unrolled_tail_comes_from_raw_rows(store: Store, clock: FakeClock) -> None:
    """Rows recorded after the last rollup run are binned on the fly, so a sketch answer misses nothing."""
    spread(store, hours=3, per_hour=100)
    clock.advance(3 * HOUR)
    rollup.run(store, clock.now())
    add_requests(store, [(T0 + 3 * HOUR + 5, "/a", "GET", 200, 10_000.0)] * 3)
    clock.advance(20)
    result = percentiles(store, "request_duration", 1.0, window="4h", method="sketch")
    assert result[1.0].count == 303
    assert close_to(result[1.0].value, 10_000.0)


def test_ragged_edges_make_sketch_and_exact_count_the_same_rows(store: Store, clock: FakeClock) -> None:
    """A range starting and ending mid-minute counts exactly the raw rows inside it."""
    spread(store, hours=5, per_hour=300)
    clock.advance(5 * HOUR + 600)
    rollup.run(store, clock.now())
    start, end = T0 + 1234.5, T0 + 4 * HOUR + 777.25
    sketched = percentiles(store, "request_duration", 0.5, start=start, end=end, method="sketch")
    exact = percentiles(store, "request_duration", 0.5, start=start, end=end, method="exact")
    assert sketched[0.5].count == exact[0.5].count
    assert close_to(sketched[0.5].value, exact[0.5].value)


def test_auto_falls_back_to_exact_when_rollups_do_not_cover_the_range(store: Store, clock: FakeClock) -> None:
    """A long range is exact while the rollup job has never run."""
    spread(store, hours=3, per_hour=50)
    clock.advance(3 * HOUR)
    assert percentiles(store, "request_duration", window="3h")[0.5].method == "exact"
    rollup.run(store, clock.now())
    assert percentiles(store, "request_duration", window="3h")[0.5].method == "sketch"
    assert percentiles(store, "request_duration", window="3h", exact_up_to_seconds=4 * HOUR)[0.5].method == "exact"


@given(values=st.lists(st.floats(min_value=0.01, max_value=1e7, allow_nan=False), min_size=1, max_size=80),
       q=st.floats(min_value=0, max_value=1))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_sql_sketch_matches_exact_nearest_rank_for_any_samples(values: list[float], q: float) -> None:
    """For any samples spread over hours, the SQL sketch percentile is within 1 % of exact nearest rank."""
    clock = FakeClock()
    s = memory_store(clock)
    try:
        step = 3 * HOUR / len(values)
        add_requests(s, [(T0 + i * step, "/", "GET", 200, v) for i, v in enumerate(values)])
        clock.advance(3 * HOUR + 60)
        rollup.run(s, clock.now())
        sketched = percentiles(s, "request_duration", (q, 0.5, 0.95, 0.99), start=T0, end=T0 + 3 * HOUR,
                               method="sketch")
        exact = percentiles(s, "request_duration", q, start=T0, end=T0 + 3 * HOUR, method="exact")
        assert abs(sketched[q].value - exact[q].value) <= 0.01 * exact[q].value  # type: ignore[operator]
        p50, p95, p99 = (sketched[x].value for x in (0.5, 0.95, 0.99))
        assert p50 is not None and p95 is not None and p99 is not None
        assert p50 <= p95 <= p99
    finally:
        s.close()


def test_linear_interpolation_follows_quantile_cont(store: Store, clock: FakeClock) -> None:
    """interpolation='linear' is quantile_cont when exact and within the bound of it when sketched."""
    spread(store, hours=4, per_hour=100)
    clock.advance(4 * HOUR)
    rollup.run(store, clock.now())
    exact = percentiles(store, "request_duration", (0.25, 0.9), window="4h", method="exact",
                        interpolation="linear")
    expected = store.scalar("SELECT quantile_cont(duration_ms, [0.25, 0.9]) FROM requests WHERE ts > $s",
                            {"s": datetime(2026, 1, 1)})
    assert [exact[0.25].value, exact[0.9].value] == expected
    sketched = percentiles(store, "request_duration", (0.25, 0.9), window="4h", method="sketch",
                           interpolation="linear")
    assert all(close_to(sketched[q].value, exact[q].value) for q in (0.25, 0.9))


def test_no_samples_give_no_value(store: Store, clock: FakeClock) -> None:
    """Without rows, each quantile has value None and count 0, exact or sketched."""
    clock.advance(10 * HOUR)
    rollup.run(store, clock.now())
    for method in ("exact", "sketch"):
        result = percentiles(store, "request_duration", window="5h", method=method)  # type: ignore[call-overload]
        assert result[0.99] == Percentile(None, method, 0.0 if method == "exact" else BOUND, 0)


# -- grouping and filters --------------------------------------------------------------------------------------
def test_grouped_results_are_a_dataframe(store: Store, clock: FakeClock) -> None:
    """With by, one row per group: the by columns, count, p-columns, method and error bound, sorted."""
    spread(store, hours=6, per_hour=300)
    clock.advance(6 * HOUR)
    rollup.run(store, clock.now())
    frame = percentiles(store, "request_duration", (0.5, 0.999), window="6h", by=("route", "status_class"))
    assert list(frame.columns) == ["route", "status_class", "count", "p50", "p99.9", "method", "error_bound"]
    assert list(zip(frame.route, frame.status_class, strict=True)) == [
        (r, s) for r in ("/a", "/b", "/c") for s in ("2xx", "4xx", "5xx")]
    assert set(frame.method) == {"sketch"}
    exact = percentiles(store, "request_duration", (0.5, 0.999), window="6h", by=("route", "status_class"),
                        method="exact")
    assert list(frame["count"]) == list(exact["count"])
    for got, want in zip(frame["p99.9"], exact["p99.9"], strict=True):
        assert close_to(got, want)


def test_filters_keep_only_matching_rows(store: Store, clock: FakeClock) -> None:
    """where={column: value or values} filters before the percentiles, exact and sketched alike."""
    spread(store, hours=3, per_hour=300)
    clock.advance(3 * HOUR)
    rollup.run(store, clock.now())
    expected = store.scalar("SELECT count(*) FROM requests WHERE route IN ('/a', '/b') AND method = 'GET'")
    for method in ("exact", "sketch"):
        frame = percentiles(store, "request_duration", start=T0, by="method", method=method,  # type: ignore[call-overload]
                            where={"route": ["/a", "/b"], "http_method": "GET"})
        assert list(frame.http_method) == ["GET"] and list(frame.method) == [method]
        assert list(frame["count"]) == [expected]


def test_raw_only_columns_force_exact(store: Store, clock: FakeClock) -> None:
    """Grouping by a column the rollups do not keep is exact under auto, and refused under sketch."""
    spread(store, hours=3, per_hour=100)
    clock.advance(3 * HOUR)
    rollup.run(store, clock.now())
    frame = percentiles(store, "request_duration", window="3h", by="status")
    assert list(frame.status) == [200, 404, 503] and set(frame.method) == {"exact"}
    with pytest.raises(ConfigError, match="cannot group or filter"):
        percentiles(store, "request_duration", window="3h", by="status", method="sketch")


def test_query_durations_by_fingerprint(store: Store, clock: FakeClock) -> None:
    """query_duration groups by fingerprint, exact and sketched."""
    add_queries(store, [(T0 + i * 10, "SELECT ?" if i % 2 else "UPDATE t SET x = ?", 1.0 + i, True)
                        for i in range(400)])
    clock.advance(2 * HOUR)
    rollup.run(store, clock.now())
    sketched = percentiles(store, "query_duration", 1.0, window="2h", by="fingerprint")
    exact = percentiles(store, "query_duration", 1.0, window="2h", by="fingerprint", method="exact")
    assert list(sketched.fingerprint) == ["SELECT ?", "UPDATE t SET x = ?"]
    assert list(exact.p100) == [400.0, 399.0]
    assert all(close_to(a, b) for a, b in zip(sketched.p100, exact.p100, strict=True))


def test_custom_histograms_by_label(store: Store, clock: FakeClock) -> None:
    """A histogram's percentiles group by label names and filter by label values."""
    add_points(store, [(1, "payload", "histogram", '{"queue": "mail", "region": "eu"}'),
                       (2, "payload", "histogram", '{"queue": "sms", "region": "eu"}'),
                       (3, "payload", "histogram", '{"queue": "mail", "region": "us"}')],
               [(T0 + i, 1 + i % 3, float(i % 3 * 100 + i % 50)) for i in range(3000)])
    clock.advance(2 * HOUR)
    rollup.run(store, clock.now())
    frame = percentiles(store, "payload", 1.0, start=T0, by="queue")
    assert list(frame.queue) == ["mail", "sms"] and list(frame["count"]) == [2000, 1000]
    exact = percentiles(store, "payload", 1.0, start=T0, by="queue", method="exact")
    assert list(exact.p100) == [249.0, 149.0]
    assert all(close_to(a, b) for a, b in zip(frame.p100, exact.p100, strict=True))
    only_us = percentiles(store, "payload", 1.0, start=T0, where={"region": "us"})
    assert only_us[1.0].count == 1000
    assert percentiles(store, "payload", window="2h", where={"region": "asia"})[0.5].count == 0


def test_unknown_metrics_and_columns_are_refused(store: Store) -> None:
    """Unknown metrics, group columns and filter columns raise ConfigError naming what is accepted."""
    with pytest.raises(ConfigError, match="custom histogram"):
        percentiles(store, "no_such_histogram")
    with pytest.raises(ConfigError, match="grouped by route, method, status_class"):
        percentiles(store, "request_duration", by="fingerprint")
    with pytest.raises(ConfigError, match="filtered by"):
        percentiles(store, "request_duration", where={"nope": 1})
    with pytest.raises(ConfigError, match="distinct"):
        percentiles(store, "request_duration", by=("route", "route"))
    with pytest.raises(ConfigError, match="metric="):
        percentiles(store, "")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"quantiles": ()}, "quantiles="), ({"quantiles": (1.5,)}, "quantiles="),
    ({"method": "fast"}, "method="), ({"interpolation": "cubic"}, "interpolation="),
    ({"window": "1h", "start": T0}, "not both"), ({"start": T0 + 10, "end": T0}, "start < end"),
    ({"start": "yesterday"}, "start="),
])
def test_bad_arguments_raise_config_error(store: Store, kwargs: dict[str, Any], match: str) -> None:
    """Every argument is checked, and the message says what is accepted."""
    with pytest.raises(ConfigError, match=match):
        percentiles(store, "request_duration", **kwargs)


def test_start_and_end_take_datetimes(store: Store, clock: FakeClock) -> None:
    """Aware and naive (UTC) datetimes delimit the same half-open range as epoch seconds."""
    add_requests(store, [(T0 + 10, "/", "GET", 200, 1.0), (T0 + 20, "/", "GET", 200, 2.0)])
    aware = percentiles(store, "request_duration", 1.0, start=datetime(2026, 1, 1, tzinfo=UTC),
                        end=datetime(2026, 1, 1, 0, 0, 20, tzinfo=UTC))
    naive = percentiles(store, "request_duration", 1.0, start=datetime(2026, 1, 1), end=T0 + 20)
    assert aware == naive
    assert aware[1.0].count == 1 and aware[1.0].value == 1.0


# -- sources ---------------------------------------------------------------------------------------------------
def test_the_monitor_is_a_source(monitor: Monitor, clock: FakeClock) -> None:
    """Monitor.percentiles and pipeline.percentiles(monitor, ...) read the owner's database."""
    for i in range(1, 101):
        monitor.track_request("/x", "GET", 200, float(i))
    monitor.flush()
    assert monitor.percentiles("request_duration", 0.95)[0.95].value == 95.0
    assert pipeline.percentiles(monitor, "request_duration", window="5m")[0.5].value == 50.0
    frame = monitor.percentiles("request_duration", by="route")
    assert isinstance(frame, pd.DataFrame) and list(frame.p99) == [99.0]


def test_a_producer_is_not_a_source(tmp_path: Path) -> None:
    """A producer has no database; percentiles says where to ask instead."""
    producer = Monitor(spool_dir=tmp_path / "spool", jobs=False, memory_interval_seconds=None)
    try:
        with pytest.raises(ConfigError, match="producer"):
            producer.percentiles("request_duration")
    finally:
        producer.close()


def test_a_file_path_opens_read_only_once_the_owner_is_gone(db_path: Path, clock: FakeClock) -> None:
    """A path works when no owner holds the file, and fails with a clear message while one does."""
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    for i in range(1, 11):
        owner.track_request("/x", "GET", 200, float(i))
    owner.flush()
    with pytest.raises(OwnershipError, match=r"Monitor\.percentiles"):
        percentiles(db_path, "request_duration", clock=clock)
    owner.close()
    result = percentiles(str(db_path), "request_duration", 0.5, clock=clock)
    assert result[0.5] == Percentile(5.0, "exact", 0.0, 10)
    with pytest.raises(ConfigError, match="no such DuckDB file"):
        percentiles(db_path.with_name("missing.duckdb"), "request_duration")


def test_a_plain_connection_without_rollup_tables_is_exact(clock: FakeClock) -> None:
    """A DuckDB connection to a database without rollup tables gets exact answers, and no sketch."""
    con = duckdb.connect()
    con.execute("CREATE TABLE requests (ts TIMESTAMP, route VARCHAR, method VARCHAR, status SMALLINT, "
                "duration_ms DOUBLE, host VARCHAR)")
    con.execute("INSERT INTO requests SELECT TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND, '/', 'GET', 200, i, 'h' "
                "FROM range(1, 101) t(i)")
    clock.advance(7 * 86400)
    result = percentiles(con, "request_duration", 0.9, window="7d", clock=clock)
    assert result[0.9] == Percentile(90.0, "exact", 0.0, 100)
    with pytest.raises(ConfigError, match="needs the rollup tables"):
        percentiles(con, "request_duration", window="7d", clock=clock, method="sketch")


def test_other_sources_are_refused() -> None:
    """Anything but a Monitor, Store, connection or path raises ConfigError."""
    with pytest.raises(ConfigError, match="source="):
        percentiles(42, "request_duration")


def test_percentile_is_a_frozen_value() -> None:
    """Percentile is immutable and exported from pipeline."""
    p = pipeline.Percentile(1.0, "exact", 0.0, 1)
    with pytest.raises(AttributeError):
        p.value = 2.0  # type: ignore[misc]
    assert math.isclose(BOUND, 0.0099, rel_tol=0.01)
