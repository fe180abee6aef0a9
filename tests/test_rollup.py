"""Rollups: per-minute and per-hour statistics and bins, incremental, idempotent, and re-rolled for late rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline import ConfigError, Monitor, rollup, sketch
from pipeline.clock import utc_datetime
from pipeline.rollup import RollupSettings, RollupSummary
from pipeline.store import Store
from pipeline.testing import FakeClock

T0 = FakeClock().now()  # 2026-01-01T00:00:00Z, where every test's clock starts
STATS = "SELECT source, route, method, status_class, fingerprint, series_id, count, sum, min, max, errors FROM {t}"


def add_requests(store: Store, rows: Sequence[tuple[float, str, str, int, float]]) -> None:
    """Append (epoch, route, method, status, duration_ms) rows as a flush would."""
    store.append({"requests": pa.table({
        "ts": pa.array([utc_datetime(r[0]) for r in rows], pa.timestamp("us")),
        "route": [r[1] for r in rows], "method": [r[2] for r in rows],
        "status": pa.array([r[3] for r in rows], pa.int16()), "duration_ms": [float(r[4]) for r in rows],
        "request_id": pa.array([None] * len(rows), pa.int64()), "query_count": [0] * len(rows),
        "pid": [1] * len(rows), "host": ["h"] * len(rows)})})


def add_queries(store: Store, rows: Sequence[tuple[float, str, float, bool]]) -> None:
    """Append (epoch, fingerprint, duration_ms, success) rows."""
    store.append({"queries": pa.table({
        "ts": pa.array([utc_datetime(r[0]) for r in rows], pa.timestamp("us")),
        "fingerprint": [r[1] for r in rows], "fingerprint_id": [len(r[1]) for r in rows],
        "name": pa.array([None] * len(rows), pa.string()), "duration_ms": [float(r[2]) for r in rows],
        "success": [r[3] for r in rows], "request_id": pa.array([None] * len(rows), pa.int64()),
        "route": pa.array([None] * len(rows), pa.string()), "pid": [1] * len(rows), "host": ["h"] * len(rows)})})


def add_points(store: Store, series: Sequence[tuple[int, str, str, str]],
               rows: Sequence[tuple[float, int, float]]) -> None:
    """Register (series_id, name, kind, labels) and append (epoch, series_id, value) points."""
    store.append({
        "series": pa.table({"series_id": [s[0] for s in series], "name": [s[1] for s in series],
                            "kind": [s[2] for s in series], "labels": [s[3] for s in series]}),
        "points": pa.table({"ts": pa.array([utc_datetime(r[0]) for r in rows], pa.timestamp("us")),
                            "series_id": [r[1] for r in rows], "value": [float(r[2]) for r in rows],
                            "pid": [1] * len(rows), "host": ["h"] * len(rows)})})


def table(store: Store, name: str) -> list[tuple[Any, ...]]:
    return sorted(store.fetchall(f"SELECT * FROM {name}"), key=repr)


def traffic(start: float, minutes: int, per_minute: int = 7) -> list[tuple[float, str, str, int, float]]:
    rows = []
    for m in range(minutes):
        for i in range(per_minute):
            status = 500 if i == 3 else 404 if i == 5 else 200
            rows.append((start + m * 60 + i * 8.5, "/users/<id>" if i % 2 else "/", "GET" if i % 3 else "POST",
                         status, 1.5 + i * 10 + m))
    return rows


def test_settings_refuse_bad_values() -> None:
    """Negative or non-finite seconds raise ConfigError naming the setting."""
    with pytest.raises(ConfigError, match="grace_seconds"):
        RollupSettings(grace_seconds=-1)
    with pytest.raises(ConfigError, match="interval_seconds"):
        RollupSettings(interval_seconds=0)
    with pytest.raises(ConfigError, match="late_lookback_seconds"):
        RollupSettings(late_lookback_seconds=float("nan"))


def test_a_first_run_without_data_starts_the_watermark(store: Store, clock: FakeClock) -> None:
    """With no rows yet, a run rolls nothing and sets both watermarks at the current minute and hour."""
    clock.advance(90)
    assert rollup.run(store, clock.now()) == RollupSummary()
    state = rollup.read_state(store)
    assert state["1m"] == rollup.TierState(T0 + 60, T0 + 60)
    assert state["1h"] == rollup.TierState(T0, T0)


def test_minute_rollups_hold_the_raw_statistics(store: Store, clock: FakeClock) -> None:
    """Each minute's count, sum, min, max and errors per route, method and status class match the raw rows."""
    add_requests(store, traffic(T0, minutes=5))
    clock.advance(5 * 60)
    summary = rollup.run(store, clock.now())
    assert (summary.minutes_start, summary.minutes_end) == (T0, T0 + 300)
    expected = store.fetchall(
        "SELECT date_trunc('minute', ts), route, method, (status // 100)::VARCHAR || 'xx', count(*), "
        "sum(duration_ms), min(duration_ms), max(duration_ms), count(*) FILTER (WHERE status >= 500) "
        "FROM requests GROUP BY ALL ORDER BY ALL")
    got = store.fetchall("SELECT bucket_start, route, method, status_class, count, sum, min, max, errors "
                         "FROM rollups_1m WHERE source = 'requests' ORDER BY ALL")
    assert got == expected
    bins = store.fetchall("SELECT route, method, status_class, bin, sum(count) FROM rollup_bins_1m "
                          "GROUP BY ALL ORDER BY ALL")
    raw = store.fetchall("SELECT route, method, (status // 100)::VARCHAR || 'xx', duration_ms FROM requests")
    expected_bins: dict[tuple[Any, ...], int] = {}
    for route, method, status_class, duration in raw:
        key = (route, method, status_class, sketch.bin_of(duration))
        expected_bins[key] = expected_bins.get(key, 0) + 1
    assert {tuple(b[:4]): b[4] for b in bins} == expected_bins


def test_running_the_same_window_twice_does_not_double_count(store: Store, clock: FakeClock) -> None:
    """A second run at the same time leaves every rollup table exactly as the first left it."""
    add_requests(store, traffic(T0, minutes=70))
    clock.advance(75 * 60)
    rollup.run(store, clock.now())
    first = {t: table(store, t) for t in ("rollups_1m", "rollups_1h", "rollup_bins_1m", "rollup_bins_1h")}
    rollup.run(store, clock.now())
    rollup.rebuild(store, T0, clock.now(), clock.now())
    assert {t: table(store, t) for t in first} == first
    assert store.scalar("SELECT sum(count) FROM rollups_1m") == 70 * 7


def test_runs_are_incremental(store: Store, clock: FakeClock) -> None:
    """Later runs roll only the new minutes (plus the grace), and the totals always match the raw rows."""
    add_requests(store, traffic(T0, minutes=3))
    clock.advance(3 * 60)
    rollup.run(store, clock.now())
    add_requests(store, traffic(T0 + 180, minutes=4))
    clock.advance(4 * 60 + 10)
    summary = rollup.run(store, clock.now())
    assert summary.minutes_start == T0 + 180 - 120  # the grace before the old watermark
    assert summary.minutes_end == T0 + 420
    assert store.scalar("SELECT sum(count) FROM rollups_1m") == store.scalar("SELECT count(*) FROM requests")
    assert rollup.read_state(store)["1m"].rolled_until == T0 + 420


def test_the_open_minute_is_not_rolled(store: Store, clock: FakeClock) -> None:
    """Rows of the minute still in progress wait for the next run."""
    add_requests(store, [(T0 + 10, "/", "GET", 200, 1.0), (T0 + 65, "/", "GET", 200, 2.0)])
    clock.advance(70)
    rollup.run(store, clock.now())
    assert store.scalar("SELECT sum(count) FROM rollups_1m") == 1


def test_late_rows_within_the_grace_re_roll_their_minute(store: Store, clock: FakeClock) -> None:
    """A row that arrives after its minute was rolled, within the grace period, is counted by the next run."""
    settings = RollupSettings(grace_seconds=120, late_lookback_seconds=0)
    add_requests(store, traffic(T0, minutes=5))
    clock.advance(5 * 60)
    rollup.run(store, clock.now(), settings)
    add_requests(store, [(T0 + 4 * 60 + 30, "/", "GET", 200, 999.0)])  # minute 4, already rolled
    clock.advance(30)
    rollup.run(store, clock.now(), settings)
    assert store.scalar("SELECT count FROM rollups_1m WHERE bucket_start = $m AND max = 999.0",
                        {"m": utc_datetime(T0 + 240)}) is not None
    assert store.scalar("SELECT sum(count) FROM rollups_1m") == 5 * 7 + 1


def test_late_rows_beyond_the_grace_are_found_by_the_lookback(store: Store, clock: FakeClock) -> None:
    """Rows older than the grace but within the lookback make the run re-roll from their minute."""
    add_requests(store, traffic(T0, minutes=30))
    clock.advance(30 * 60)
    rollup.run(store, clock.now())
    add_requests(store, [(T0 + 10 * 60 + 1, "/", "GET", 200, 5.0)])  # a producer's backlog, 20 minutes late
    clock.advance(60)
    summary = rollup.run(store, clock.now())
    assert summary.late_minute == T0 + 600
    assert summary.minutes_start == T0 + 600
    assert store.scalar("SELECT sum(count) FROM rollups_1m") == 30 * 7 + 1


def test_without_lookback_older_stragglers_wait_for_rebuild(store: Store, clock: FakeClock) -> None:
    """With the lookback off, rows older than the grace stay out until rebuild() rolls their range again."""
    settings = RollupSettings(late_lookback_seconds=0)
    add_requests(store, traffic(T0, minutes=30))
    clock.advance(30 * 60)
    rollup.run(store, clock.now(), settings)
    add_requests(store, [(T0 + 10 * 60 + 1, "/", "GET", 200, 5.0)])
    clock.advance(60)
    rollup.run(store, clock.now(), settings)
    assert store.scalar("SELECT sum(count) FROM rollups_1m") == 30 * 7
    summary = rollup.rebuild(store, T0 + 600, T0 + 660, clock.now())
    assert (summary.minutes_start, summary.minutes_end) == (T0 + 600, T0 + 660)
    assert store.scalar("SELECT sum(count) FROM rollups_1m") == 30 * 7 + 1


def test_hour_rollups_are_merged_from_minutes(store: Store, clock: FakeClock) -> None:
    """A closed hour's statistics and bins are exactly the sums of its minutes; the open hour has none yet."""
    add_requests(store, traffic(T0, minutes=150, per_minute=3))
    clock.advance(150 * 60)
    summary = rollup.run(store, clock.now())
    assert (summary.hours_start, summary.hours_end) == (T0, T0 + 7200)
    merged = store.fetchall(
        "SELECT date_trunc('hour', bucket_start), source, route, method, status_class, sum(count), sum(sum), "
        "min(min), max(max), sum(errors) FROM rollups_1m WHERE bucket_start < $end GROUP BY ALL ORDER BY ALL",
        {"end": utc_datetime(T0 + 7200)})
    hours = store.fetchall("SELECT bucket_start, source, route, method, status_class, count, sum, min, max, "
                           "errors FROM rollups_1h ORDER BY ALL")
    assert hours == merged
    merged_bins = store.fetchall("SELECT date_trunc('hour', bucket_start), route, bin, sum(count) FROM "
                                 "rollup_bins_1m WHERE bucket_start < $end GROUP BY ALL ORDER BY ALL",
                                 {"end": utc_datetime(T0 + 7200)})
    hour_bins = store.fetchall("SELECT bucket_start, route, bin, sum(count) FROM rollup_bins_1h "
                               "GROUP BY ALL ORDER BY ALL")
    assert hour_bins == merged_bins
    assert rollup.read_state(store)["1h"] == rollup.TierState(T0, T0 + 7200)


def test_a_late_row_rebuilds_its_closed_hour(store: Store, clock: FakeClock) -> None:
    """A late row in the last minutes of a closed hour reaches that hour's rollup too."""
    add_requests(store, traffic(T0, minutes=60, per_minute=2))
    clock.advance(3600 + 30)
    rollup.run(store, clock.now())
    add_requests(store, [(T0 + 3599, "/late", "GET", 200, 1.0)])
    clock.advance(30)
    rollup.run(store, clock.now())
    assert store.scalar("SELECT count FROM rollups_1h WHERE route = '/late'") == 1


def test_queries_and_histograms_are_rolled_up(store: Store, clock: FakeClock) -> None:
    """Queries roll up by fingerprint with failures as errors; histogram series by series id, others not."""
    add_queries(store, [(T0 + 1, "SELECT ?", 2.0, True), (T0 + 2, "SELECT ?", 4.0, False),
                        (T0 + 3, "UPDATE t", 8.0, True)])
    add_points(store, [(1, "payload", "histogram", '{"q":"a"}'), (2, "jobs", "counter", "{}")],
               [(T0 + 5, 1, 10.0), (T0 + 6, 1, -2.0), (T0 + 7, 2, 1.0)])
    clock.advance(120)
    rollup.run(store, clock.now())
    rows = store.fetchall("SELECT source, fingerprint, series_id, count, sum, min, max, errors FROM rollups_1m "
                          "ORDER BY ALL")
    assert rows == [("histogram", None, 1, 2, 8.0, -2.0, 10.0, 0),
                    ("queries", "SELECT ?", None, 2, 6.0, 2.0, 4.0, 1),
                    ("queries", "UPDATE t", None, 1, 8.0, 8.0, 8.0, 0)]
    bins = store.fetchall("SELECT bin, count FROM rollup_bins_1m WHERE source = 'histogram' ORDER BY bin")
    assert bins == [(sketch.ZERO_BIN, 1), (sketch.bin_of(10.0), 1)]


def test_the_watermark_never_moves_back_with_the_clock(store: Store, clock: FakeClock) -> None:
    """After the wall clock jumps backwards, a run neither rolls the future nor lowers the watermark."""
    add_requests(store, traffic(T0, minutes=10))
    clock.advance(600)
    rollup.run(store, clock.now())
    clock.set_wall(T0 + 300)
    assert rollup.run(store, clock.now()) == RollupSummary()
    assert rollup.read_state(store)["1m"].rolled_until == T0 + 600


def test_rebuild_checks_its_range(store: Store, clock: FakeClock) -> None:
    """rebuild() refuses an empty range and rolls nothing that is not closed yet."""
    with pytest.raises(ConfigError, match="start < end"):
        rollup.rebuild(store, T0 + 60, T0, clock.now())
    assert rollup.rebuild(store, T0, T0 + 600, clock.now()) == RollupSummary()


def test_the_owner_runs_the_rollup_job(monitor: Monitor, clock: FakeClock) -> None:
    """An owner registers a "rollup" job; run_jobs_now flushes and rolls what was recorded."""
    assert "rollup" in monitor.jobs_runner.names
    for i in range(10):
        monitor.track_request("/", "GET", 200, float(i))
    clock.advance(120)
    result = monitor.run_jobs_now()["rollup"]
    assert isinstance(result, RollupSummary)
    assert monitor.store is not None
    assert monitor.store.scalar("SELECT sum(count) FROM rollups_1m") == 10


def test_the_rollup_job_is_the_owners(tmp_path: Path) -> None:
    """Only the owner runs the rollup job, every interval_seconds of its settings; a producer has no jobs."""
    producer = Monitor(spool_dir=tmp_path / "spool", jobs=False, memory_interval_seconds=None)
    try:
        assert producer.jobs_runner.names == [] and producer.run_jobs_now() == {}
    finally:
        producer.close()
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, memory_interval_seconds=None,
                 rollup=RollupSettings(interval_seconds=7)) as owner:
        assert owner.jobs_runner._jobs["rollup"].interval_seconds == 7
        assert "rollup" in owner.run_jobs_now()
