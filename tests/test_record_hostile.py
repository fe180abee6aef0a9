"""Hostile and impossible arguments to the recording API (issue 13, items 4, 5, 6 and flush() after close()).

Each one is refused at record time or dropped alone at compaction, counted by reason; with ``strict=False`` no
call raises into the app, and the good rows recorded around a bad one all reach DuckDB.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline import InvalidMetricError, Monitor, MonitorClosedError
from pipeline.testing import FakeClock
from pipeline.validate import TS_MAX_AGE_SECONDS


def count(mon: Monitor, table: str) -> int:
    assert mon.store is not None
    return int(mon.store.scalar(f"SELECT count(*) FROM {table}"))


class Boom(Exception):
    pass


class HostileRoute:
    """A route object whose every dunder a storage path could call raises."""

    def __repr__(self) -> str:
        raise Boom("repr")

    def __str__(self) -> str:
        raise Boom("str")

    def __hash__(self) -> int:
        raise Boom("hash")


class HashlessSql(str):
    """A SQL text (a str subclass: it passes isinstance checks) whose __hash__ raises."""

    def __hash__(self) -> int:
        raise Boom("hash")


class LoudNumber:
    """A duration whose comparisons raise something else than TypeError."""

    def __ge__(self, other: object) -> bool:
        raise Boom("compare")

    __le__ = __gt__ = __lt__ = __ge__


@pytest.mark.parametrize("bad", ["route_repr", "sql_hash", "route_in_query"])
def test_a_hostile_argument_costs_its_own_row_only(monitor: Monitor, bad: str) -> None:
    """Issue 13 item 4: a route whose __repr__/__str__/__hash__ raise, or a SQL str subclass whose __hash__ raises,
    aborted compaction after the chunk had left the buffer (3,001 good rows lost, `recorded 0, dropped {}`), and
    flush() and stats() raised into the app. Now the bad row alone is refused, counted, and 3,001 good rows land."""
    table = "requests" if bad == "route_repr" else "queries"

    def good(i: int) -> None:
        if table == "requests":
            monitor.track_request("/ok", "GET", 200, float(i))
        else:
            monitor.track_query("SELECT 1", float(i), route="/ok")

    for i in range(1_500):
        good(i)
    if bad == "route_repr":
        monitor.track_request(HostileRoute(), "GET", 200, 1.0)  # type: ignore[arg-type]
    elif bad == "sql_hash":
        monitor.track_query(HashlessSql("SELECT 2"), 1.0)
    else:
        monitor.track_query("SELECT 3", 1.0, route=HostileRoute())  # type: ignore[arg-type]
    for i in range(1_501):
        good(i)
    assert monitor.flush() is True
    stats = monitor.stats()
    assert stats["rejected"] == {f"invalid_{table}_row": 1}
    assert stats["recorded"] == stats["flushed"] == 3_001
    assert stats["pending"] == 0 and stats["dropped"] == {}
    assert count(monitor, table) == 3_001


def test_a_comparison_that_raises_is_refused_not_raised(monitor: Monitor) -> None:
    """A duration whose comparisons raise (not TypeError) is counted as not a number, never raised."""
    monitor.track_request("/a", "GET", 200, LoudNumber())  # type: ignore[arg-type]
    monitor.track_query("SELECT 1", LoudNumber())  # type: ignore[arg-type]
    monitor.counter("c").inc(LoudNumber())  # type: ignore[arg-type]
    assert monitor.stats()["rejected"] == {"duration_not_number": 2, "invalid_value": 1}


DECIMALS = [(Decimal("NaN"), "nan"), (Decimal("sNaN"), "nan"), (Decimal("-1"), "negative"),
            (Decimal("Infinity"), "infinite"), (Decimal("-Infinity"), "negative")]


@pytest.mark.parametrize(("value", "problem"), DECIMALS, ids=[str(v) for v, _ in DECIMALS])
def test_bad_decimals_are_refused_by_reason(monitor: Monitor, value: Decimal, problem: str) -> None:
    """Issue 13 item 5: Decimal('NaN') (drivers return Decimal for NUMERIC columns) raised
    decimal.InvalidOperation into the app from every recording call. Now each is refused and counted by reason;
    gauges and histograms take negative values (as they take -1.0), so only NaN and infinities are refused there."""
    monitor.track_request("/a", "GET", 200, value)  # type: ignore[arg-type]
    monitor.track_query("SELECT 1", value)  # type: ignore[arg-type]
    monitor.counter("c").inc(value)  # type: ignore[arg-type]
    monitor.gauge("g").set(value)  # type: ignore[arg-type]
    monitor.histogram("h").observe(value)  # type: ignore[arg-type]
    refused_by_all = not value.is_finite()
    assert monitor.stats()["rejected"] == {f"{problem}_duration": 2, "invalid_value": 3 if refused_by_all else 1}
    monitor.track_request("/a", "GET", 200, Decimal("12.5"))  # type: ignore[arg-type]
    monitor.flush()
    assert monitor.store is not None
    assert monitor.store.fetchall("SELECT duration_ms FROM requests") == [(12.5,)]


@pytest.mark.parametrize("call", ["request", "query", "counter", "gauge", "histogram"])
def test_strict_mode_raises_a_value_error_that_says_how_to_fix_it(tmp_path: Path, clock: FakeClock,
                                                                    call: str) -> None:
    """strict=True: a Decimal NaN raises InvalidMetricError (a ValueError) naming the value and the fix."""
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 strict=True) as mon:
        record: dict[str, Callable[[], None]] = {
            "request": lambda: mon.track_request("/a", "GET", 200, Decimal("NaN")),  # type: ignore[arg-type]
            "query": lambda: mon.track_query("SELECT 1", Decimal("sNaN")),  # type: ignore[arg-type]
            "counter": lambda: mon.counter("c").inc(Decimal("NaN")),  # type: ignore[arg-type]
            "gauge": lambda: mon.gauge("g").set(Decimal("NaN")),  # type: ignore[arg-type]
            "histogram": lambda: mon.histogram("h").observe(Decimal("Infinity")),  # type: ignore[arg-type]
        }
        with pytest.raises(ValueError, match=r"Decimal\('s?NaN'\)|Decimal\('Infinity'\)") as caught:
            record[call]()
        assert isinstance(caught.value, InvalidMetricError)
        assert "float(x)" in str(caught.value)


YEAR = 365 * 86_400.0


@pytest.mark.parametrize(("ts", "reason"), [
    (math.nan, "ts_not_finite"), (math.inf, "ts_not_finite"), (-math.inf, "ts_not_finite"),
    (Decimal("sNaN"), "ts_not_finite"), (1e20, "ts_in_future"), ("milliseconds", "ts_in_future"),
    (-1.0, "ts_not_positive"), (0, "ts_not_positive"), ("31 years ago", "ts_too_old"), ("now", "ts_not_number"),
])
def test_impossible_timestamps_are_refused_at_record_time(monitor: Monitor, clock: FakeClock, ts: object,
                                                          reason: str) -> None:
    """Issue 13 item 6: ts=NaN/inf/1e20 were stored as year -290309, milliseconds as year 58891, and the rollup and
    archive then failed. Now ts must be seconds since the epoch within 30 years before now and a day after."""
    now = clock.now()
    value = {"milliseconds": now * 1000, "31 years ago": now - 31 * YEAR}.get(ts, ts) if isinstance(ts, str) else ts
    monitor.track_request("/a", "GET", 200, 1.0, ts=value)  # type: ignore[arg-type]
    monitor.track_request("/ok", "GET", 200, 1.0, ts=now - 15 * YEAR)  # a backlog's old row is accepted
    monitor.track_request("/ok", "GET", 200, 1.0, ts=now + 3600)  # a clock an hour ahead too
    monitor.flush()
    assert monitor.stats()["rejected"] == {reason: 1}
    assert count(monitor, "requests") == 2


def test_a_refused_timestamp_says_the_accepted_range(tmp_path: Path, clock: FakeClock) -> None:
    """The strict error says ts is epoch seconds, the range, and spots milliseconds."""
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 strict=True) as mon:
        with pytest.raises(InvalidMetricError, match="ts_in_future") as caught:
            mon.track_request("/a", "GET", 200, 1.0, ts=clock.now() * 1000)
        message = str(caught.value)
        assert f"within {TS_MAX_AGE_SECONDS / YEAR:g} years before now and 24 hours after" in message
        assert "milliseconds: divide by 1000" in message and "seconds since the epoch" in message


def test_flush_after_close_is_false_while_rows_are_pending(tmp_path: Path, clock: FakeClock) -> None:
    """Issue 13 item 16 (part): flush() after close() returned True while the rows recorded since stayed pending.
    Now it returns True only when nothing waits, else False (strict: MonitorClosedError); the rows stay counted."""
    mon = Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None)
    mon.track_request("/a", "GET", 200, 1.0)
    mon.close()
    assert mon.flush() is True  # the close flushed everything
    mon.track_request("/late", "GET", 200, 1.0)
    assert mon.flush() is False
    assert mon.stats()["pending"] == 1
    strict = Monitor(db_path=tmp_path / "s.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                     strict=True)
    strict.close()
    strict.counter("late").inc()
    with pytest.raises(MonitorClosedError, match="1 rows recorded since"):
        strict.flush()
