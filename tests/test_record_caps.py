"""Caps on names, routes, methods and labels: a careless or hostile caller cannot make a process or the dashboard
grow without bound (issue 13 item 11).

Before: 1M metric names held 1M instruments (+590 MB), nothing folded or counted; 1M routes through
track_request made /api/routes answer 165 MB in 47 s and the owner reach 2.7 GB; names, routes and methods of
1,000,000 characters were stored as they were. Memory is measured (RSS), never time.
"""

from __future__ import annotations

import gc
from pathlib import Path

import psutil
import pytest

from pipeline import InvalidMetricError, Monitor
from pipeline.caps import MAX_METHOD_CHARS, MAX_METHODS, MAX_ROUTE_CHARS, OVERFLOW_METHOD, OVERFLOW_ROUTE
from pipeline.testing import FakeClock
from webapp import create_app

MILLION = 1_000_000
MB = 1024 * 1024


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def test_a_million_metric_names_hold_max_instruments_and_count_the_rest(db_path: Path, clock: FakeClock) -> None:
    """Each new name beyond max_instruments is refused (its calls counted as rejected); the process holds at most
    max_instruments instruments: RSS grows by a few MB, not the 590 MB 1M instruments cost."""
    with Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None,
                 max_instruments=1_000) as mon:
        before = rss()
        for i in range(MILLION):
            mon.counter(f"name_{i}").inc()
        grown = rss() - before
        mon.flush()
        stats = mon.stats()
        assert stats["rejected"] == {"too_many_instruments": 2 * (MILLION - 1_000)}  # the creation and the inc
        assert stats["recorded"] == stats["flushed"] == 1_000
        assert mon.store is not None and mon.store.scalar("SELECT count(*) FROM series") == 1_000
    print(f"FIGURE caps: 1M counter names, RSS +{grown / MB:.1f} MB, 1,000 held")
    assert grown < 64 * MB


def test_a_million_routes_fold_into_other_and_the_routes_api_answers_small(db_path: Path,
                                                                          clock: FakeClock) -> None:
    """Routes beyond max_routes are stored as <other>, each row counted in stats()['folded']; the database holds
    max_routes + 1 routes and /api/routes answers in kilobytes. RSS stays bounded while 1M routes are recorded."""
    with Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, max_routes=500) as mon:
        before = rss()
        for batch in range(10):
            for i in range(batch * MILLION // 10, (batch + 1) * MILLION // 10):
                mon.track_request(f"/user/{i}", "GET", 200, 1.0)
            assert mon.flush() is True
        grown = rss() - before
        stats = mon.stats()
        assert stats["recorded"] == stats["flushed"] == MILLION
        assert stats["folded"] == {"too_many_routes": MILLION - 500}
        assert mon.store is not None
        assert mon.store.fetchall("SELECT count(DISTINCT route), count(*) FILTER (route = $o) FROM requests",
                                  {"o": OVERFLOW_ROUTE}) == [(501, MILLION - 500)]
        answer = create_app({"TESTING": True}, monitor=mon).test_client().get("/api/routes?window=1h")
        assert answer.status_code == 200
        body = answer.get_data()
    print(f"FIGURE caps: 1M routes, RSS +{grown / MB:.1f} MB, /api/routes {len(body) / 1024:.0f} KB")
    assert len(body) < 512 * 1024
    assert grown < 256 * MB


def test_long_routes_methods_and_names_are_cut_or_refused_and_counted(monitor: Monitor) -> None:
    """A route or a method of 1,000,000 characters is stored cut to its cap (counted); a metric name that long is
    refused; methods beyond MAX_METHODS distinct fold into OTHER."""
    huge = "x" * MILLION
    monitor.track_request("/" + huge, "GET", 200, 1.0)
    monitor.track_request("/ok", huge, 200, 1.0)
    # A flush admits a chunk's distinct values in no set order: the long ones go first, in a flush of their own, so
    # the cap on distinct methods is reached by the M<i> below and never by them.
    monitor.flush()
    for i in range(MAX_METHODS + 5):
        monitor.track_request("/m", f"M{i}", 200, 1.0)
    monitor.counter(huge).inc()
    monitor.flush()
    stats = monitor.stats()
    assert stats["folded"] == {"route_too_long": 1, "method_too_long": 1, "too_many_methods": 7}
    assert stats["rejected"] == {"name_too_long": 2}
    assert monitor.store is not None
    lengths = monitor.store.fetchall("SELECT max(length(route)), max(length(method)) FROM requests")
    assert lengths == [(MAX_ROUTE_CHARS, MAX_METHOD_CHARS)]
    assert monitor.store.scalar("SELECT count(*) FROM requests WHERE method = $m", {"m": OVERFLOW_METHOD}) == 7


def test_caps_are_settings_with_clear_errors(tmp_path: Path) -> None:
    """max_routes and max_instruments are settings, checked; strict mode raises at the cap with its name."""
    with pytest.raises(ValueError, match=r"max_routes=0: expected an integer >= 1 \(distinct routes per process\)"):
        Monitor(db_path=tmp_path / "a.duckdb", max_routes=0)
    with Monitor(db_path=tmp_path / "b.duckdb", jobs=False, strict=True, max_instruments=1,
                 memory_interval_seconds=None) as mon:
        mon.counter("a")
        with pytest.raises(InvalidMetricError, match="max_instruments=1"):
            mon.counter("b")
