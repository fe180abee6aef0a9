"""The archive job (closed hours to Parquet, idempotently) and history.connect() for notebooks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from test_rollup import add_points, add_requests

from pipeline import ConfigError, Monitor, archive, history, percentiles, rollup
from pipeline.archive import ArchiveSettings, ArchiveSummary
from pipeline.store import Store
from pipeline.testing import FakeClock

T0 = FakeClock().now()
HOUR = 3600.0


def hourly(store: Store, hours: int, per_hour: int = 6) -> None:
    add_requests(store, [(T0 + h * HOUR + i * 600, f"/r{i % 2}", "GET", 200, float(h * 100 + i))
                         for h in range(hours) for i in range(per_hour)])


@pytest.fixture
def file_store(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = Store(db_path, clock)
    yield s
    s.close()


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"grace_seconds": -1}, "grace_seconds"), ({"interval_seconds": 0}, "interval_seconds"),
    ({"max_hours_per_run": 0}, "max_hours_per_run"), ({"history_days": 0}, "history_days"),
])
def test_settings_refuse_bad_values(kwargs: dict[str, float], match: str) -> None:
    """Each setting is checked and the error names it."""
    with pytest.raises(ConfigError, match=match):
        ArchiveSettings(**kwargs)  # type: ignore[arg-type]


def test_closed_hours_land_in_a_hive_layout(file_store: Store, clock: FakeClock, db_path: Path) -> None:
    """Each closed hour of each table is one Parquet file under <db>.history/<table>/date=/hour=/."""
    hourly(file_store, 3)
    clock.advance(3 * HOUR + 700)  # past the third hour and its grace
    rollup.run(file_store, clock.now())
    summary = archive.run(file_store, clock.now())
    root = db_path.with_name(db_path.name + ".history")
    assert summary.history_dir == str(root)
    assert summary.hours["requests"] == 3 and summary.hours["rollups_1h"] == 3
    assert "requests/date=2026-01-01/hour=00/data.parquet" in files(root)
    assert "requests/date=2026-01-01/hour=02/data.parquet" in files(root)
    assert "series/data.parquet" in files(root)
    assert not [f for f in files(root) if not f.endswith(".parquet")]  # no temporary file left behind
    hour1 = pq.read_table(root / "requests/date=2026-01-01/hour=01/data.parquet")
    assert hour1.num_rows == 6 and sorted(hour1.column("duration_ms").to_pylist()) == [100.0 + i for i in range(6)]


def test_the_open_hour_waits_for_its_grace(file_store: Store, clock: FakeClock, db_path: Path) -> None:
    """An hour is exported only grace_seconds after it ends; rollup tables also wait for the hour rollups."""
    hourly(file_store, 2)
    clock.advance(2 * HOUR + 60)
    summary = archive.run(file_store, clock.now())
    assert summary.hours == {"requests": 1}  # hour 1 is within its grace; no hour rollups yet
    clock.advance(600)
    assert archive.run(file_store, clock.now()).hours == {"requests": 1}


def test_archiving_is_idempotent(file_store: Store, clock: FakeClock, db_path: Path) -> None:
    """Running again exports nothing new; exporting an hour again replaces its file with the same rows."""
    hourly(file_store, 2)
    clock.advance(3 * HOUR)
    rollup.run(file_store, clock.now())
    archive.run(file_store, clock.now())
    root = archive.default_history_dir(db_path)
    before = {f: pq.read_table(root / f).to_pylist() for f in files(root)}
    again = archive.run(file_store, clock.now())
    assert again == ArchiveSummary(str(root), 0, {}, 0)
    target = archive.export_hour(file_store, root, "requests", T0 + HOUR)
    assert target == root / "requests/date=2026-01-01/hour=01/data.parquet"
    assert {f: pq.read_table(root / f).to_pylist() for f in files(root)} == before
    with pytest.raises(ConfigError, match="exports"):
        archive.export_hour(file_store, root, "alert_events", T0)


def test_a_backlog_is_exported_a_few_hours_per_run(file_store: Store, clock: FakeClock, tmp_path: Path) -> None:
    """max_hours_per_run bounds each run; later runs carry on where the last stopped."""
    hourly(file_store, 5)
    clock.advance(6 * HOUR)
    settings = ArchiveSettings(history_dir=tmp_path / "hist", max_hours_per_run=2)
    assert archive.run(file_store, clock.now(), settings).hours["requests"] == 2
    assert archive.run(file_store, clock.now(), settings).hours["requests"] == 2
    assert archive.run(file_store, clock.now(), settings).hours["requests"] == 1
    assert len(list((tmp_path / "hist" / "requests").glob("*/*/*.parquet"))) == 5


def test_old_history_is_pruned(file_store: Store, clock: FakeClock, tmp_path: Path) -> None:
    """history_days deletes hour partitions (and emptied date folders) older than that many days."""
    hourly(file_store, 2)
    clock.advance(2 * HOUR + 700)
    root = tmp_path / "hist"
    archive.run(file_store, clock.now(), ArchiveSettings(history_dir=root))
    (root / "requests" / "date=2026-01-01" / "notes").mkdir()  # not a partition: left alone
    (root / "requests" / "date=someday" / "hour=xx").mkdir(parents=True)  # nor is this
    clock.advance(3 * 86400)
    summary = archive.run(file_store, clock.now(), ArchiveSettings(history_dir=root, history_days=1))
    assert summary.partitions_pruned == 2  # the two hours of requests (no other table had rows)
    assert not list((root / "requests").glob("date=2026-*/hour=*"))
    assert (root / "requests" / "date=2026-01-01" / "notes").is_dir()
    assert (root / "requests" / "date=someday" / "hour=xx").is_dir()
    assert not (root / "points").exists()
    (root / "points" / "date=2026-01-01" / "hour=00").mkdir(parents=True)
    pruning = ArchiveSettings(history_dir=root, history_days=1)
    assert archive.run(file_store, clock.now(), pruning).partitions_pruned == 1
    assert not (root / "points" / "date=2026-01-01").exists()  # an emptied date folder goes too


def test_an_in_memory_store_has_no_history(store: Store, clock: FakeClock, tmp_path: Path) -> None:
    """Without a file (and no history_dir given) the archive has nowhere to write and skips."""
    hourly(store, 2)
    clock.advance(3 * HOUR)
    assert archive.run(store, clock.now()) == ArchiveSummary(None)
    assert archive.run(store, clock.now(), ArchiveSettings(history_dir=tmp_path / "h")).files_written == 3


def test_the_owner_runs_the_archive_job(monitor: Monitor, clock: FakeClock, db_path: Path) -> None:
    """An owner registers an "archive" job; run_jobs_now exports closed hours."""
    monitor.track_request("/", "GET", 200, 1.0)
    clock.advance(2 * HOUR)
    result = monitor.run_jobs_now()["archive"]
    assert isinstance(result, ArchiveSummary) and result.hours["requests"] == 1


def test_the_archive_job_is_the_owners(tmp_path: Path) -> None:
    """Only the owner runs the archive job, every interval_seconds of its settings; a producer has no jobs."""
    producer = Monitor(spool_dir=tmp_path / "spool", jobs=False, memory_interval_seconds=None)
    try:
        assert producer.jobs_runner.names == [] and producer.run_jobs_now() == {}
    finally:
        producer.close()
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, memory_interval_seconds=None,
                 archive=ArchiveSettings(interval_seconds=7)) as owner:
        assert owner.jobs_runner._jobs["archive"].interval_seconds == 7
        assert "archive" in owner.run_jobs_now()


# -- history.connect -------------------------------------------------------------------------------------------
def test_history_views_read_the_parquet(file_store: Store, clock: FakeClock, db_path: Path) -> None:
    """One view per archived table, with date and hour columns from the partitions, and the sketch macros."""
    hourly(file_store, 3)
    add_points(file_store, [(7, "payload", "histogram", '{"q": "a"}')], [(T0 + 5, 7, 3.0)])
    clock.advance(4 * HOUR)
    rollup.run(file_store, clock.now())
    archive.run(file_store, clock.now())
    con = history.connect(history_dir=archive.default_history_dir(db_path))
    try:
        assert con.execute("SELECT hour, count(*) FROM requests GROUP BY hour ORDER BY hour").fetchall() == [
            (0, 6), (1, 6), (2, 6)]
        assert con.execute("SELECT sum(count) FROM rollups_1h WHERE source = 'requests'").fetchone() == (18,)
        assert con.execute("SELECT name FROM series").fetchall() == [("payload",)]
        assert con.execute("SELECT duckpulse_sketch_bin(100.0)").fetchone() == (233,)
        assert con.cursor().execute("SELECT count(*) FROM points").fetchone() == (1,)
        exact = percentiles(con, "request_duration", 1.0, start=T0, end=T0 + 3 * HOUR)
        assert exact[1.0].value == 205.0 and exact[1.0].count == 18
    finally:
        con.close()


def test_history_connect_needs_a_place(tmp_path: Path) -> None:
    """Without history_dir or db_path there is nothing to connect to; an empty history has no views."""
    with pytest.raises(ConfigError, match="history_dir"):
        history.connect()
    con = history.connect(history_dir=tmp_path / "nothing")
    try:
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone() == (0,)
    finally:
        con.close()


def test_the_live_file_is_attached_when_no_owner_holds_it(db_path: Path, clock: FakeClock) -> None:
    """With the owner gone, the live database is attached read-only as `live`; attach_live=False skips it."""
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    owner.track_request("/", "GET", 200, 1.0)
    owner.flush()
    assert history.owner_running(db_path)
    owner.close()
    assert not history.owner_running(db_path)
    con = history.connect(db_path=db_path)
    try:
        assert con.execute("SELECT count(*) FROM live.requests").fetchone() == (1,)
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM live.requests")
    finally:
        con.close()
    con = history.connect(db_path=db_path, attach_live=False)
    try:
        assert "live" not in {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    finally:
        con.close()


def test_a_file_duckdb_cannot_attach_leaves_the_history_usable(tmp_path: Path) -> None:
    """If the live file cannot be attached (not a database, or an owner just started), the history still works."""
    db = tmp_path / "broken.duckdb"
    db.write_bytes(b"not a duckdb file at all" * 100)
    assert not history.owner_running(db)  # no lock file: no owner ever ran
    con = history.connect(db_path=db)
    try:
        assert "live" not in {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    finally:
        con.close()


OWNER = textwrap.dedent("""
    import sys
    from pipeline import Monitor
    from pipeline.testing import FakeClock

    clock = FakeClock()
    owner = Monitor(db_path=sys.argv[1], clock=clock, memory_interval_seconds=None)  # jobs: it publishes at close
    for i in range(360):  # three hours, one request every 30 s
        owner.track_request("/a" if i % 2 else "/b", "GET", 200, float(i))
        clock.advance(30)
    clock.advance(3600)
    owner.run_jobs_now()
    print("ready", flush=True)
    sys.stdin.readline()
    owner.track_request("/late", "GET", 200, 1.0)
    owner.close()
""")


def test_history_works_while_an_owner_runs_in_another_process(db_path: Path) -> None:
    """A notebook reads the history while another process owns the file, never opening it; once the owner exits,
    what it published at its close holds its last row too."""
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(db_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        assert history.owner_running(db_path)
        con = history.connect(db_path=db_path)
        try:
            assert con.execute("SELECT count(*), count(DISTINCT hour) FROM requests").fetchone() == (360, 3)
            databases = {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
            assert "live" not in databases
        finally:
            con.close()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    con = history.connect(db_path=db_path)
    try:
        assert con.execute("SELECT count(*), count(*) FILTER (WHERE route = '/late') FROM requests").fetchone() == (
            361, 1)
        assert "live" not in {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    finally:
        con.close()
