"""Shared fixtures: a fake clock, a fresh in-memory store, a monitor on a real DuckDB file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import Monitor
from pipeline.store import Store
from pipeline.testing import FakeClock, RecordingNotifier, memory_store

collect_ignore = ["apps"]  # apps with test suites of their own, which tests/test_app_*.py run


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> Iterator[Store]:
    s = memory_store(clock)
    yield s
    s.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "metrics.duckdb"


@pytest.fixture
def monitor(db_path: Path, clock: FakeClock) -> Iterator[Monitor]:
    """An owner on a real DuckDB file, no scheduler, no background sampling: tests drive it."""
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    yield mon
    mon.close()


@pytest.fixture
def mon(db_path: Path, clock: FakeClock) -> Iterator[Monitor]:
    """An owner without the default rules, jobs driven by the test (the alert tests' monitor)."""
    m = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
    yield m
    m.close()


@pytest.fixture
def rec(mon: Monitor) -> RecordingNotifier:
    """Every notification ``mon`` delivers."""
    r = RecordingNotifier()
    mon.on_alert(r)
    return r


@pytest.fixture(autouse=True)
def _duckpulse_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="duckpulse")
