"""The recording API of an embedded owner: what goes in comes out of DuckDB, once, in UTC."""

from __future__ import annotations

import math
import threading
from datetime import datetime
from pathlib import Path

import pytest

from pipeline import ConfigError, InvalidMetricError, Monitor, NoMonitorError, default_monitor
from pipeline.testing import FakeClock


def rows(mon: Monitor, sql: str) -> list[tuple[object, ...]]:
    assert mon.store is not None
    return mon.store.fetchall(sql)


def test_recorded_requests_land_in_duckdb_with_the_clock_time(monitor: Monitor, clock: FakeClock) -> None:
    """Each track_request becomes one row stamped with the injected clock's UTC time."""
    monitor.track_request("/users/<id>", "GET", 200, 12.5)
    clock.advance(1.5)
    monitor.track_request("/books", "POST", 201, 3.25, request_id=7, query_count=2)
    assert monitor.flush() is True
    got = rows(monitor, "SELECT ts, route, method, status, duration_ms, request_id, query_count, pid "
                        "FROM requests ORDER BY ts")
    assert got == [
        (datetime(2026, 1, 1, 0, 0, 0), "/users/<id>", "GET", 200, 12.5, None, 0, monitor.pid),
        (datetime(2026, 1, 1, 0, 0, 1, 500000), "/books", "POST", 201, 3.25, 7, 2, monitor.pid),
    ]
    stats = monitor.stats()
    assert (stats["recorded"], stats["flushed"], stats["pending"]) == (2, 2, 0)
    assert stats["last_flush_at"] == clock.now()


def test_queries_are_stored_as_fingerprints_never_literals(monitor: Monitor) -> None:
    """Query text is fingerprinted before it is written: the literal values never reach DuckDB."""
    monitor.track_query("SELECT * FROM users WHERE id = 42 AND name = 'alice'", 3.1)
    monitor.track_query("SELECT * FROM users WHERE id = 43 AND name = 'bob'", 4.0, success=False, name="u")
    monitor.flush()
    got = rows(monitor, "SELECT fingerprint, fingerprint_id, name, duration_ms, success FROM queries ORDER BY ts")
    assert len(got) == 2
    assert got[0][0] == got[1][0]
    assert got[0][1] == got[1][1]
    assert "42" not in str(got[0][0]) and "alice" not in str(got[0][0])
    assert [(g[2], g[3], g[4]) for g in got] == [(None, 3.1, True), ("u", 4.0, False)]


def test_time_query_records_duration_and_failure(monitor: Monitor) -> None:
    """time_query works as a context manager and a decorator; an exception records success=False and propagates."""
    with monitor.time_query("load_user"):
        pass

    @monitor.time_query("save_user")
    def save() -> int:
        return 5

    assert save() == 5
    with pytest.raises(KeyError), monitor.time_query("broken"):
        raise KeyError("x")
    monitor.flush()
    got = rows(monitor, "SELECT name, success, duration_ms >= 0 FROM queries ORDER BY ts, name")
    assert sorted(got) == [("broken", False, True), ("load_user", True, True), ("save_user", True, True)]


def test_custom_metrics_are_points_of_interned_series(monitor: Monitor) -> None:
    """Counters, gauges and histograms write points keyed by a stable series id, with one series row each."""
    jobs = monitor.counter("jobs_done", {"queue": "mail"})
    assert monitor.counter("jobs_done", {"queue": "mail"}) is jobs
    jobs.inc()
    jobs.inc(2)
    g = monitor.gauge("queue_depth")
    g.set(10)
    g.dec(3)
    g.inc()
    h = monitor.histogram("payload_bytes", {"kind": "json"})
    h.observe(512)
    with h.time():
        pass
    monitor.flush()
    series = rows(monitor, "SELECT name, kind, labels FROM series ORDER BY name")
    assert series == [("jobs_done", "counter", '{"queue": "mail"}'), ("payload_bytes", "histogram", '{"kind": "json"}'),
                      ("queue_depth", "gauge", "{}")]
    points = rows(monitor, "SELECT s.name, list(p.value ORDER BY p.ts, p.value) FROM points p "
                           "JOIN series s USING (series_id) GROUP BY s.name ORDER BY s.name")
    assert points[0] == ("jobs_done", [1.0, 2.0])
    assert points[1][0] == "payload_bytes" and 512.0 in points[1][1] and len(points[1][1]) == 2
    assert points[2] == ("queue_depth", [7.0, 8.0, 10.0])


def test_series_ids_are_the_same_in_every_monitor(tmp_path: Path, monitor: Monitor) -> None:
    """A series id depends only on name, kind and labels, so producers need no coordination."""
    with Monitor(spool_dir=tmp_path / "spool", jobs=False, memory_interval_seconds=None) as other:
        mine = monitor.counter("c", {"b": "2", "a": "1"})
        assert other.counter("c", {"a": "1", "b": "2"}).series_id == mine.series_id
        assert other.counter("c", {"a": "1"}).series_id != monitor.gauge("c", {"a": "1"}).series_id


@pytest.mark.parametrize(("value", "reason"), [
    (math.nan, "nan_duration"),
    (math.inf, "infinite_duration"),
    (-1.0, "negative_duration"),
    ("12", "duration_not_number"),
    (None, "duration_not_number"),
])
def test_bad_durations_are_rejected_and_counted(monitor: Monitor, value: object, reason: str) -> None:
    """A bad duration is refused without raising, counted by reason, and nothing is written."""
    monitor.track_request("/a", "GET", 200, value)  # type: ignore[arg-type]
    monitor.track_query("SELECT 1", value)  # type: ignore[arg-type]
    monitor.flush()
    assert monitor.stats()["rejected"] == {reason: 2}
    assert rows(monitor, "SELECT count(*) FROM requests") == [(0,)]


def test_bad_fields_are_rejected_at_compaction_keeping_the_good_rows(monitor: Monitor) -> None:
    """Wrong types and empty names found when a chunk becomes columns cost only their own rows."""
    monitor.track_request("/ok", "GET", 200, 1.0)
    monitor.track_request("", "GET", 200, 1.0)
    monitor.track_request("/bad-status", "GET", "two hundred", 1.0)  # type: ignore[arg-type]
    monitor.track_request(None, "GET", 200, 1.0)  # type: ignore[arg-type]
    monitor.track_request("/ok", "GET", 200, 2.0)
    monitor.flush()
    stats = monitor.stats()
    assert stats["rejected"] == {"empty_name": 2, "invalid_requests_row": 1}
    assert rows(monitor, "SELECT route, duration_ms FROM requests ORDER BY duration_ms") == [("/ok", 1.0), ("/ok", 2.0)]
    assert stats["recorded"] == 2


def test_bad_custom_metric_values_and_names(monitor: Monitor) -> None:
    """Counters refuse decreases and non-numbers; empty names give an instrument whose every call is counted."""
    c = monitor.counter("c")
    c.inc(-1)
    c.inc(math.nan)
    c.inc("x")  # type: ignore[arg-type]
    monitor.gauge("g").set(math.inf)
    monitor.histogram("h").observe(math.nan)
    nameless = monitor.counter("")
    nameless.inc()
    nameless.inc()
    monitor.histogram("h2", {"k": "v" * 10}).observe(1.0)
    too_many = monitor.counter("wide", {f"k{i}": "v" for i in range(40)})
    too_many.inc()
    assert monitor.stats()["rejected"] == {"invalid_value": 5, "empty_name": 3, "too_many_labels": 2}


def test_non_string_labels_are_converted_and_counted(monitor: Monitor) -> None:
    """Label values that are not strings are kept as str(value), and the conversion is counted."""
    c = monitor.counter("hits", {"code": 200})  # type: ignore[dict-item]
    assert c.labels == {"code": "200"}
    assert monitor.stats()["folded"] == {"label_not_string": 1}


def test_label_sets_beyond_the_cap_fold_into_one_overflow_series(tmp_path: Path, clock: FakeClock) -> None:
    """More than max_series_per_metric label sets go to one overflow series; each fold is counted."""
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 max_series_per_metric=3) as mon:
        for i in range(10):
            mon.counter("by_user", {"user": str(i)}).inc()
        mon.flush()
        assert mon.stats()["folded"] == {"too_many_series": 7}
        assert mon.store is not None
        got = mon.store.fetchall("SELECT labels, count(*), sum(value) FROM points JOIN series USING (series_id) "
                                 "GROUP BY labels ORDER BY labels")
        assert got[0] == ('{"__overflow__": "true"}', 7, 7.0)
        assert len(got) == 4


def test_strict_mode_raises_instead_of_counting(tmp_path: Path, clock: FakeClock) -> None:
    """With strict=True, bad input raises InvalidMetricError naming the reason (and is still counted)."""
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 strict=True) as mon:
        with pytest.raises(InvalidMetricError, match="nan_duration"):
            mon.track_request("/a", "GET", 200, math.nan)
        with pytest.raises(InvalidMetricError, match="empty_name"):
            mon.counter("")
        mon.track_request("", "GET", 200, 1.0)
        with pytest.raises(InvalidMetricError, match="empty_name"):
            mon.flush()
        assert mon.stats()["rejected"] == {"nan_duration": 1, "empty_name": 2}


def test_rejections_are_logged_once_per_interval(monitor: Monitor, clock: FakeClock,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A flood of bad input logs one line per reason per interval, then says how many were not logged."""
    for _ in range(100):
        monitor.track_request("/a", "GET", 200, -5)
    assert len([r for r in caplog.records if "rejected" in r.message]) == 1
    clock.advance(61)
    monitor.track_request("/a", "GET", 200, -5)
    messages = [r.message for r in caplog.records if "rejected" in r.message]
    assert len(messages) == 2 and "99 more since the last report" in messages[1]


def test_a_full_buffer_drops_the_newest_and_counts_them(tmp_path: Path, clock: FakeClock) -> None:
    """Beyond max_buffered, rows are dropped and counted; recorded == flushed + dropped + pending."""
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 max_buffered=100) as mon:
        for i in range(150):
            mon.track_request("/a", "GET", 200, float(i))
        stats = mon.stats()
        assert stats["dropped"] == {"buffer_full": 50}
        assert stats["pending"] == 100
        mon.flush()
        assert mon.store is not None
        assert mon.store.fetchall("SELECT count(*), max(duration_ms) FROM requests") == [(100, 99.0)]
        stats = mon.stats()
        assert stats["recorded"] == stats["flushed"] + sum(stats["dropped"].values()) + stats["pending"] == 150


def test_sample_rate_records_a_fraction_and_counts_the_rest(tmp_path: Path, clock: FakeClock) -> None:
    """sample_rate=0 records no request; 0.5 records some; every skipped request is counted."""
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 sample_rate=0.5) as mon:
        for _ in range(2000):
            mon.track_request("/a", "GET", 200, 1.0)
        stats = mon.stats()
        assert stats["recorded"] + stats["sampled_out"] == 2000
        assert 700 < stats["recorded"] < 1300
    with Monitor(db_path=tmp_path / "n.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 sample_rate=0.0) as mon:
        mon.track_request("/a", "GET", 200, 1.0)
        assert mon.stats()["recorded"] == 0


def test_many_threads_record_at_once_and_nothing_is_lost(monitor: Monitor) -> None:
    """32 threads recording concurrently, past the raw list's cap, while flushes run: every row lands once."""
    per_thread = 5_000
    start = threading.Barrier(33)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            monitor.track_request("/t", "GET", 200, float(i), request_id=t * per_thread + i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(32)]
    for th in threads:
        th.start()
    start.wait()
    while any(th.is_alive() for th in threads):
        monitor.flush()
    for th in threads:
        th.join()
    monitor.flush()
    got = rows(monitor, "SELECT count(*), count(DISTINCT request_id), sum(duration_ms) FROM requests")
    assert got == [(32 * per_thread, 32 * per_thread, 32 * sum(range(per_thread)))]
    assert monitor.stats()["dropped"] == {}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one of db_path"),
    ({"db_path": "a.duckdb", "spool_dir": "s"}, "exactly one of db_path"),
    ({"db_path": "a.duckdb", "flush_interval_seconds": 0}, "flush_interval_seconds=0"),
    ({"db_path": "a.duckdb", "sample_rate": 1.5}, "sample_rate=1.5"),
    ({"db_path": "a.duckdb", "max_buffered": 0}, "max_buffered=0"),
    ({"db_path": "a.duckdb", "flush_rows": -1}, "flush_rows=-1"),
    ({"db_path": "a.duckdb", "max_series_per_metric": 0}, "max_series_per_metric=0"),
    ({"db_path": "a.duckdb", "memory_interval_seconds": -1}, "memory_interval_seconds=-1"),
])
def test_bad_settings_raise_config_error_naming_the_option(tmp_path: Path, kwargs: dict[str, object],
                                                           message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad setting raises ConfigError naming the option and the accepted range."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        Monitor(**kwargs)  # type: ignore[arg-type]


def test_default_monitor_is_the_latest_open_one(tmp_path: Path) -> None:
    """default_monitor() returns the most recently created open Monitor, and says so clearly when none is."""
    with Monitor(spool_dir=tmp_path / "a", jobs=False, memory_interval_seconds=None) as a:
        assert default_monitor() is a
        with Monitor(spool_dir=tmp_path / "b", jobs=False, memory_interval_seconds=None) as b:
            assert default_monitor() is b
        assert default_monitor() is a
    with pytest.raises(NoMonitorError, match="Create one first"):
        default_monitor()


def test_track_memory_samples_this_process(monitor: Monitor) -> None:
    """One psutil sample: rss, vms, threads, fds and gc counts of this pid; USS only when asked for."""
    monitor.track_memory()
    monitor.track_memory(full=True)
    monitor.flush()
    got = rows(monitor, "SELECT pid, rss_bytes > 0, vms_bytes >= rss_bytes, num_threads >= 1, num_fds > 0, "
                        "gc_collections >= 0, uss_bytes FROM process_samples ORDER BY uss_bytes NULLS FIRST")
    assert [g[:6] for g in got] == [(monitor.pid, True, True, True, True, True)] * 2
    assert got[0][6] is None and isinstance(got[1][6], int) and got[1][6] > 0


def stop_flusher(monitor: Monitor) -> None:
    # The flusher thread calls tick() on its own every 0.1 s; stopped, the test's tick() calls are the only ones.
    monitor._stop.set()
    monitor._thread.join(timeout=30)
    assert not monitor._thread.is_alive()


def test_the_flusher_thread_flushes_on_its_interval(tmp_path: Path, clock: FakeClock) -> None:
    """tick() flushes once flush_interval_seconds have passed on the monitor's clock, and not before, as an owner
    and as a producer (what a SIGKILL can lose is one interval of rows)."""
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=60.0,
                 flush_interval_seconds=2.0) as mon, \
            Monitor(spool_dir=tmp_path / "spool", clock=clock, memory_interval_seconds=None,
                    flush_interval_seconds=2.0) as producer:
        stop_flusher(mon)
        stop_flusher(producer)
        mon.track_request("/a", "GET", 200, 1.0)
        producer.track_request("/a", "GET", 200, 1.0)
        mon.tick()  # samples memory (due at start), not yet a flush
        producer.tick()
        assert mon.stats()["flushed"] == producer.stats()["flushed"] == 0
        clock.advance(1.9)
        mon.tick()
        producer.tick()
        assert mon.stats()["flushed"] == producer.stats()["flushed"] == 0
        clock.advance(0.1)
        mon.tick()
        producer.tick()
        assert producer.stats()["flushed"] == 1
        assert mon.stats()["flushed"] == 2  # the request and the process sample
        assert mon.store is not None
        assert mon.store.fetchall("SELECT count(*) FROM process_samples") == [(1,)]


def test_flush_rows_triggers_an_early_flush(tmp_path: Path, clock: FakeClock) -> None:
    """A buffer holding flush_rows rows is flushed at the next tick, before the interval."""
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 flush_rows=10) as mon:
        for _ in range(10):
            mon.track_request("/a", "GET", 200, 1.0)
        mon.tick()
        assert mon.stats()["flushed"] == 10


def test_close_flushes_and_data_survives_reopening(db_path: Path, clock: FakeClock) -> None:
    """close() makes everything durable; a new owner of the same file reads it back."""
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    mon.track_request("/a", "GET", 200, 1.0)
    mon.close()
    mon.close()  # closing twice is harmless
    assert mon.flush() is True
    with Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None) as again:
        assert again.store is not None
        assert again.store.fetchall("SELECT count(*) FROM requests") == [(1,)]
        assert again.store.fetchall("SELECT max(version) FROM schema_version")[0][0] >= 1


def test_jobs_run_in_a_scheduler_unless_switched_off(db_path: Path) -> None:
    """An owner with jobs=True runs its jobs on APScheduler; run_jobs_now runs them synchronously too."""
    with Monitor(db_path=db_path, memory_interval_seconds=None) as mon:
        assert mon.jobs_runner._scheduler is not None
        results = mon.run_jobs_now()
        assert "ingest" in results
        assert mon.stats()["jobs"]["ingest"]["runs"] >= 1
