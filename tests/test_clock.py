"""The hot path's timestamps: a clock thread's coarse time with the system clock, exact with any other clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import Monitor
from pipeline.clock import SYSTEM_CLOCK, Timestamps
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
