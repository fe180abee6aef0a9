"""Tiered retention (raw, minute rollups, hour rollups, the ingest ledger) and `duckpulse compact`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from test_rollup import add_points, add_queries, add_requests

from pipeline import ConfigError, Monitor, OwnershipError, archive, retention, rollup
from pipeline.cli import main
from pipeline.clock import utc_datetime
from pipeline.retention import RetentionSettings, RetentionSummary, cutoff
from pipeline.store import Store
from pipeline.testing import FakeClock

T0 = FakeClock().now()
DAY = 86_400.0


def add_ledger(store: Store, names_and_times: list[tuple[str, float]]) -> None:
    with store.transaction():
        for name, at in names_and_times:
            store.con.execute("INSERT INTO ingested_segments VALUES ($s, 1, $at)", {"s": name, "at": utc_datetime(at)})


def add_samples(store: Store, times: list[float]) -> None:
    n = len(times)
    store.append({"process_samples": pa.table({
        "ts": pa.array([utc_datetime(t) for t in times], pa.timestamp("us")), "pid": [1] * n, "host": ["h"] * n,
        "rss_bytes": [1] * n, "vms_bytes": [1] * n, "cpu_percent": [0.0] * n, "num_threads": [1] * n,
        "num_fds": [1] * n, "gc_collections": [0] * n})})


def count(store: Store, table: str) -> int:
    return int(store.scalar(f"SELECT count(*) FROM {table}"))


def test_cutoff_is_a_pure_function_of_now() -> None:
    """cutoff(now, keep) is now - keep, and refuses a keep that is not positive."""
    assert cutoff(T0, 7 * DAY) == T0 - 7 * DAY
    with pytest.raises(ConfigError, match="keep_seconds"):
        cutoff(T0, 0)


@pytest.mark.parametrize("field", ["raw_days", "rollups_1m_days", "rollups_1h_days"])
@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "7"])
def test_settings_refuse_bad_days(field: str, bad: object) -> None:
    """Every tier's days must be a finite number > 0; the error names the field."""
    with pytest.raises(ConfigError, match=field):
        RetentionSettings(**{field: bad})  # type: ignore[arg-type]


def test_settings_refuse_a_bad_interval() -> None:
    """The job interval must be a positive number of seconds."""
    with pytest.raises(ConfigError, match="interval_seconds"):
        RetentionSettings(interval_seconds=-5)


def test_defaults_are_seven_thirty_and_four_hundred_days() -> None:
    """Raw rows 7 days, minute rollups 30 days, hour rollups 400 days."""
    s = RetentionSettings()
    assert (s.raw_days, s.rollups_1m_days, s.rollups_1h_days) == (7, 30, 400)


def test_raw_rows_expire_after_the_raw_tier(store: Store, clock: FakeClock) -> None:
    """Raw requests, queries, samples, points and ledger rows older than raw_days go; newer ones stay."""
    add_requests(store, [(T0, "/", "GET", 200, 1.0), (T0 + 2 * DAY, "/", "GET", 200, 2.0)])
    add_queries(store, [(T0, "SELECT ?", 1.0, True), (T0 + 2 * DAY, "SELECT ?", 1.0, True)])
    add_points(store, [(1, "h", "histogram", "{}")], [(T0, 1, 1.0), (T0 + 2 * DAY, 1, 1.0)])
    add_samples(store, [T0, T0 + 2 * DAY])
    add_ledger(store, [("old.parquet", T0), ("new.parquet", T0 + 2 * DAY)])
    clock.advance(8 * DAY)
    summary = retention.run(store, clock.now())
    assert summary.raw_cutoff == T0 + DAY
    for table in ("requests", "queries", "points", "process_samples", "ingested_segments"):
        assert count(store, table) == 1, table
    assert summary.deleted["requests"] == 1 and summary.deleted["ingested-segments"] == 1
    assert summary.checkpointed


def test_minute_rollups_expire_after_their_tier(store: Store, clock: FakeClock) -> None:
    """Minute rollups older than rollups_1m_days go, while hour rollups of the same time stay."""
    add_requests(store, [(T0 + 30, "/", "GET", 200, 1.0), (T0 + 5 * DAY, "/", "GET", 200, 2.0)])
    clock.advance(5 * DAY + 3600)
    rollup.run(store, clock.now())
    clock.set_wall(T0 + 35 * DAY)
    retention.run(store, clock.now())
    assert store.fetchall("SELECT count FROM rollups_1m") == [(1,)]
    assert count(store, "rollup_bins_1m") == 1
    assert count(store, "rollups_1h") == 2
    state = rollup.read_state(store)
    assert state["1m"].rolled_from == T0 + 5 * DAY  # percentile plans no longer count on expired minutes


def test_hour_rollups_expire_after_their_tier(store: Store, clock: FakeClock) -> None:
    """Hour rollups older than rollups_1h_days go."""
    add_requests(store, [(T0 + 30, "/", "GET", 200, 1.0), (T0 + 50 * DAY, "/", "GET", 200, 2.0)])
    clock.advance(50 * DAY + 7200)
    rollup.run(store, clock.now())
    clock.set_wall(T0 + 420 * DAY)
    summary = retention.run(store, clock.now())
    assert store.fetchall("SELECT bucket_start FROM rollups_1h") == [(utc_datetime(T0 + 50 * DAY),)]
    assert summary.deleted["rollups-1h"] == 1 and summary.deleted["rollup-bins-1h"] == 1
    assert rollup.read_state(store)["1h"].rolled_from == T0 + 20 * DAY


def test_custom_tiers_are_honoured(store: Store, clock: FakeClock) -> None:
    """Shorter settings expire sooner: half a day of raw rows keeps only the last 12 hours."""
    add_requests(store, [(T0 + h * 3600, "/", "GET", 200, 1.0) for h in range(24)])
    clock.advance(24 * 3600)
    rollup.run(store, clock.now())
    retention.run(store, clock.now(), RetentionSettings(raw_days=0.5))
    assert count(store, "requests") == 12


def test_raw_rows_wait_for_the_rollups(store: Store, clock: FakeClock) -> None:
    """Raw rows the minute rollups have not covered yet are kept past their expiry, then go once rolled."""
    add_requests(store, [(T0 + 30, "/", "GET", 200, 1.0)])
    clock.advance(60)
    rollup.run(store, clock.now())  # the watermark: T0 + 60
    add_requests(store, [(T0 + 3600, "/", "GET", 200, 1.0)])
    clock.advance(10 * DAY)
    summary = retention.run(store, clock.now(), RetentionSettings(raw_days=1))
    assert summary.raw_cutoff == T0 + 60
    assert count(store, "requests") == 1
    rollup.run(store, clock.now())
    retention.run(store, clock.now(), RetentionSettings(raw_days=1))
    assert count(store, "requests") == 0


def test_the_owner_runs_the_retention_job(monitor: Monitor, clock: FakeClock) -> None:
    """An owner registers a "retention" job, run after the archive."""
    names = monitor.jobs_runner.names
    assert names.index("archive") < names.index("retention")
    monitor.track_request("/", "GET", 200, 1.0)
    clock.advance(8 * DAY)
    result = monitor.run_jobs_now()["retention"]
    assert isinstance(result, RetentionSummary) and result.deleted["requests"] == 1


def test_the_retention_job_is_the_owners(tmp_path: Path) -> None:
    """Only the owner runs the retention job, every interval_seconds of its settings; a producer has no jobs."""
    producer = Monitor(spool_dir=tmp_path / "spool", jobs=False, memory_interval_seconds=None)
    try:
        assert producer.jobs_runner.names == [] and producer.run_jobs_now() == {}
    finally:
        producer.close()
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, memory_interval_seconds=None,
                 retention=RetentionSettings(interval_seconds=7)) as owner:
        assert owner.jobs_runner._jobs["retention"].interval_seconds == 7
        assert "retention" in owner.run_jobs_now()


def filled_file(db_path: Path, clock: FakeClock, rows: int = 150_000) -> None:
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    for i in range(rows):
        owner.track_request(f"/r{i % 50}", "GET", 200, float(i % 997))
    owner.flush()
    clock.advance(30 * DAY)
    owner.track_request("/kept", "GET", 200, 1.0)
    owner.flush()
    assert owner.store is not None
    retention.run(owner.store, clock.now())
    owner.close()


def test_compact_gives_space_back_and_keeps_every_row(db_path: Path, clock: FakeClock) -> None:
    """After retention deleted most rows, compact shrinks the file; the schema and the kept rows remain."""
    filled_file(db_path, clock)
    result = retention.compact(db_path)
    assert result.bytes_after < result.bytes_before
    assert db_path.stat().st_size == result.bytes_after
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    try:
        assert owner.store is not None
        assert owner.store.fetchall("SELECT route FROM requests") == [("/kept",)]
        assert owner.store.scalar("SELECT duckpulse_sketch_bin(100.0)") == 233
        assert owner.store.scalar("SELECT max(version) FROM schema_version") >= 2
    finally:
        owner.close()
    assert not list(db_path.parent.glob("*.compact-tmp*"))


def test_compact_refuses_while_an_owner_holds_the_file(db_path: Path, clock: FakeClock) -> None:
    """With an owner running, compact fails with a message saying to stop the owner first."""
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    try:
        with pytest.raises(OwnershipError, match=r"stop the owner first.*duckpulse compact"):
            retention.compact(db_path)
    finally:
        owner.close()


def test_compact_needs_an_existing_file(tmp_path: Path) -> None:
    """Compacting a missing file is a ConfigError."""
    with pytest.raises(ConfigError, match="no such DuckDB file"):
        retention.compact(tmp_path / "missing.duckdb")


def leave_in_wal(db_path: Path, rows: int) -> None:
    """Append requests that stay in the write-ahead log, as an owner killed before its checkpoint leaves them."""
    con = duckdb.connect(str(db_path))
    con.execute("SET checkpoint_threshold = '1GB'")
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("INSERT INTO requests SELECT make_timestamp(1767225600000000 + i), '/wal', 'GET', 200, i, NULL, 0, "
                "1, 'h' FROM range($n) t(i)", {"n": rows})
    con.close()
    assert db_path.with_name(db_path.name + ".wal").stat().st_size > 0


def file_bytes(db_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db_path.parent.glob(db_path.name + "*") if not p.name.endswith(".lock")}


def test_the_compact_command(db_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    """`duckpulse compact --db PATH` on a file with deleted rows (and rows still in its write-ahead log) shrinks it,
    keeps every row and says so; against a held file it exits 2 with the reason."""
    filled_file(db_path, clock, rows=20_000)
    leave_in_wal(db_path, 100)
    assert main(["compact", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(rf"duckpulse: compacted {re.escape(str(db_path))}: [\d.]+ MB \([\d.]+ MB and a write-ahead "
                        r"log of [\d.]+ MB\) -> [\d.]+ MB\n", out), out
    assert not db_path.with_name(db_path.name + ".wal").exists()
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    try:
        assert owner.store is not None
        assert owner.store.fetchall("SELECT route, count(*) FROM requests GROUP BY ALL ORDER BY 1") == [
            ("/kept", 1), ("/wal", 100)]
        assert main(["compact", "--db", str(db_path)]) == 2
        assert "owns it" in capsys.readouterr().err
    finally:
        owner.close()


KILLED_OWNER = """
import os, sys
from pipeline import Monitor
owner = Monitor(db_path=sys.argv[1], jobs=False, memory_interval_seconds=None)
for _ in range(3000):
    owner.track_request("/a", "GET", 200, 1.0)
owner.flush()
os._exit(0)
"""


@pytest.mark.parametrize("wal", [False, True], ids=["checkpointed-file", "rows-in-the-log"])
def test_compact_with_nothing_to_reclaim_leaves_the_file_as_it_was(
        db_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str], wal: bool) -> None:
    """A file without deleted rows is never made larger: when the rewrite is not smaller than the file and its
    write-ahead log, both stay byte for byte as they were, and the command says what it compared. (A small file
    whose rows are still in its log used to grow from 0.2 MB to 1.8 MB: the rewrite checkpoints them.)"""
    if wal:  # an owner killed before its first checkpoint after its rows: the file holds the schema (checkpointed
        # once migrated), its 3,000 rows are in the log
        subprocess.run([sys.executable, "-c", KILLED_OWNER, str(db_path)], check=True, timeout=120)
        assert db_path.with_name(db_path.name + ".wal").stat().st_size > 3000 * 16
    else:
        owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
        for _ in range(3000):
            owner.track_request("/a", "GET", 200, 1.0)
        owner.close()
    before = file_bytes(db_path)
    result = retention.compact(db_path)
    assert not result.compacted and result.rewritten_bytes >= result.bytes_before
    assert result.bytes_after == result.bytes_before == sum(len(b) for b in before.values())
    assert file_bytes(db_path) == before
    assert main(["compact", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"duckpulse: nothing to reclaim in {db_path}: it takes ") and \
        "a rewrite would take" in out and out.endswith("; the file is left as it was\n"), out
    assert ("write-ahead log" in out) is wal
    assert file_bytes(db_path) == before
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    try:
        assert owner.store is not None
        assert owner.store.scalar("SELECT count(*) FROM requests") == 3000
    finally:
        owner.close()


def test_the_monitor_passes_its_settings_to_the_jobs(db_path: Path, clock: FakeClock) -> None:
    """Monitor(retention=..., rollup=..., archive=...) settings are what its jobs run with."""
    settings = RetentionSettings(raw_days=1)
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, retention=settings,
                    rollup=rollup.RollupSettings(grace_seconds=0),
                    archive=retention_archive_settings(db_path))
    try:
        assert owner.retention_settings is settings and owner.rollup_settings.grace_seconds == 0
        owner.track_request("/", "GET", 200, 1.0)
        clock.advance(2 * DAY)
        owner.track_request("/", "GET", 200, 2.0)
        assert owner.run_jobs_now()["retention"].deleted["requests"] == 1
        assert (db_path.parent / "elsewhere").is_dir()
    finally:
        owner.close()


def retention_archive_settings(db_path: Path) -> archive.ArchiveSettings:
    return archive.ArchiveSettings(history_dir=db_path.parent / "elsewhere")


def test_alert_history_and_ended_silences_expire_with_the_hour_tier(store: Store, clock: FakeClock) -> None:
    """Alert events and silences that ended more than rollups_1h_days ago are deleted; newer ones stay."""
    with store.transaction():
        for at in (T0, T0 + 300 * DAY):
            store.con.execute("INSERT INTO alert_events VALUES ($ts, 'r', '{}', 'm', 'warning', 'pending', 'firing', "
                              "1.0, 0.5, '')", {"ts": utc_datetime(at)})
            store.con.execute("INSERT INTO silences VALUES ($id, '{}', $ts, $ts, '', $ts)",
                              {"id": str(at), "ts": utc_datetime(at)})
    clock.set_wall(T0 + 420 * DAY)
    summary = retention.run(store, clock.now())
    assert store.fetchall("SELECT ts FROM alert_events") == [(utc_datetime(T0 + 300 * DAY),)]
    assert count(store, "silences") == 1
    assert summary.deleted["alert-events"] == 1 and summary.deleted["expired-silences"] == 1
