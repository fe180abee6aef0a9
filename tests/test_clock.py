"""The hot path's timestamps: a clock thread's coarse time with the system clock, exact with any other clock."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline import Monitor
from pipeline.clock import SYSTEM_CLOCK, Timestamps, epoch_us, utc_datetime
from pipeline.errors import ConfigError
from pipeline.testing import FakeClock


def _until(condition: Callable[[], bool], what: str, timeout_seconds: float = 10.0) -> None:
    """Poll a condition a real thread brings about (bounded: fails with ``what`` instead of hanging)."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


def _clock_threads() -> int:
    return sum(t.name == "duckpulse-clock" and t.is_alive() for t in threading.enumerate())


def test_a_fake_clock_gives_exact_timestamps_and_no_thread() -> None:
    clock = FakeClock()
    threads = _clock_threads()  # other tests' monitors may still be open
    stamps = Timestamps(clock, 0.01, activity=lambda: 0)
    stamps.start()
    assert not stamps.coarse and stamps.seconds is None and _clock_threads() == threads
    clock.advance(2.5)
    assert stamps.now() == clock.now()


def test_the_system_clock_thread_keeps_time_idles_and_wakes() -> None:
    activity = [0]
    threads = _clock_threads()
    stamps = Timestamps(SYSTEM_CLOCK, 0.002, activity=lambda: activity[0], idle_seconds=0.02)
    before = time.time()
    stamps.start()
    try:
        assert stamps.coarse
        _until(lambda: stamps.seconds is not None, "the thread published a time")
        published = stamps.seconds
        assert published is not None and before <= published <= time.time()
        # Nothing recorded (activity unchanged): the thread idles and says so with None.
        _until(lambda: stamps.seconds is None, "the thread went idle")
        t = stamps.now()  # a reader that found None: an exact time, and the thread wakes up
        assert before <= t <= time.time()
        _until(lambda: stamps.seconds is not None, "the thread woke up")
        # While something is recorded the time keeps moving; it stays within a few ticks of the clock.
        first = stamps.seconds
        assert first is not None

        def moved() -> bool:
            activity[0] += 1
            return stamps.seconds is not None and stamps.seconds > first
        _until(moved, "the time moved on")
        lag = time.time() - (stamps.seconds or 0.0)
        assert 0 <= lag < 1.0
    finally:
        stamps.stop()
    assert stamps.seconds is None and _clock_threads() == threads


def test_resolution_zero_means_exact_and_bad_values_are_refused(tmp_path: Path) -> None:
    threads = _clock_threads()
    with Monitor(db_path=tmp_path / "exact.duckdb", jobs=False, memory_interval_seconds=None,
                 timestamp_resolution_seconds=0) as mon:
        assert not mon._stamps.coarse and _clock_threads() == threads
    for bad in (-0.01, 1.0, float("nan"), "10ms"):
        with pytest.raises(ConfigError, match="timestamp_resolution_seconds"):
            Monitor(db_path=tmp_path / "bad.duckdb", timestamp_resolution_seconds=bad)  # type: ignore[arg-type]


def test_rows_recorded_with_the_system_clock_carry_the_time_of_the_call(tmp_path: Path) -> None:
    """End to end with the real clock thread: every row's ts lies within the recording calls' span (+ one tick)."""
    threads = _clock_threads()
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, memory_interval_seconds=None) as mon:
        assert mon._stamps.coarse and _clock_threads() == threads + 1
        hist = mon.histogram("latency_ms")
        start = time.time()
        for i in range(2_000):
            mon.track_request("/x", "GET", 200, 1.0, request_id=i)
            mon.track_query("SELECT 1", 0.5)
            hist.observe(float(i))
        end = time.time()
        mon.flush()
        assert mon.store is not None
        for table in ("requests", "queries", "points"):
            lo, hi, n = mon.store.fetchall(f"SELECT min(epoch(ts)), max(epoch(ts)), count(*) FROM {table}")[0]
            assert n == 2_000
            # A coarse time is older than the call by at most a tick plus a GIL hand-over: 0.25 s is generous.
            assert start - 0.25 <= lo <= hi <= end, (table, start, lo, hi, end)
    assert _clock_threads() == threads


# Times whose microseconds end in a half: x.0078125 s is 7,812.5 us exactly; 1796312660.3461185 is not a tie, but its
# product by 10^6 is (the double's last bit there is a quarter of a microsecond), and the store rounds the product.
TIES = (1_767_225_600.0078125, 1_796_312_660.3461185)


def test_a_bound_made_in_python_equals_the_stored_time_of_a_row_of_that_time(tmp_path: Path) -> None:
    """epoch_us and utc_datetime give the microsecond the store keeps for a row of the same time, ties included
    (about one time in eight today, where Python's round() and datetime.fromtimestamp round otherwise)."""
    clock = FakeClock(start=max(TIES) + 1)
    rng = random.Random(16)
    times = [*TIES, *(clock.now() - rng.uniform(0, 365 * 86_400) for _ in range(2_000))]
    assert sum(round(t * 1_000_000) != epoch_us(t) for t in times) > 100, "the times hold ties"
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 default_rules=False) as mon:
        for i, t in enumerate(times):
            mon.track_request("/x", "GET", 200, 1.0, request_id=i, ts=t)
        assert mon.flush() and mon.store is not None
        stored = dict(mon.store.fetchall("SELECT request_id, ts FROM requests"))
    assert [stored[i] for i in range(len(times))] == [utc_datetime(t) for t in times]
    assert [(stored[i] - datetime(1970, 1, 1)) // timedelta(microseconds=1) for i in range(len(times))] == [
        epoch_us(t) for t in times]


@pytest.mark.parametrize("start", TIES)
def test_an_alert_sweep_at_the_time_of_a_slow_request_sees_it(tmp_path: Path, start: float) -> None:
    """A request over 1 s fires request_over_1s at the flush that writes it, and the full sweep keeps it firing,
    both evaluated at the request's own time (a frozen clock): the window (now - 60 s, now] holds the row whatever
    its microseconds (the dashboard's browser tests showed no alert about one run in eight)."""
    clock = FakeClock(start=start)
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None) as mon:
        mon.track_request("/report", "GET", 200, 1_500.0)
        assert mon.flush() and mon.alerts is not None
        firing = [(s.rule, s.labels) for s in mon.alerts.states() if s.state == "firing"]
        assert firing == [("request_over_1s", (("route", "/report"),))]
        mon.run_jobs_now()
        assert [(s.rule, s.labels, s.evaluated_at) for s in mon.alerts.states() if s.state == "firing"] == [
            ("request_over_1s", (("route", "/report"),), start)]
