"""The publish job: readers in other processes see the owner's recent rows, each once, while the archive moves the
watermark; only what changed is exported; `duckpulse sql` in another process is at most a few intervals behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import ConfigError, Monitor, history, objecthistory
from pipeline.archive import ArchiveSettings
from pipeline.publish import RECENT_DIR, WATERMARK_FILE, PublishSettings
from pipeline.testing import FakeClock

ROLES = str(Path(__file__).with_name("process_roles.py"))
# How far behind the owner `duckpulse sql` may be in the test under load: well under the promised 60 s, with room
# for a loaded machine (the owner publishes every 2 s there, flushes every 0.25 s).
LAG_SECONDS = 15
COUNTS = ("SELECT (SELECT count(*) FROM requests), (SELECT sum(duration_ms) FROM requests), "
          "(SELECT sum(count) FROM rollups_1m WHERE source = 'request'), (SELECT count(*) FROM series)")


def owner(db: Path, clock: FakeClock, **options: Any) -> Monitor:
    return Monitor(db_path=db, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False,
                   archive=ArchiveSettings(grace_seconds=120, interval_seconds=60), **options)


def in_the_file(mon: Monitor) -> tuple[Any, ...]:
    assert mon.store is not None
    return tuple(mon.store.fetchall(COUNTS)[0])


def read(db: Path, con: Any = None) -> tuple[Any, ...]:
    reader = con or history.connect(db_path=db)
    try:
        return tuple(reader.execute(COUNTS).fetchall()[0])
    finally:
        if con is None:
            reader.close()


def test_readers_see_every_row_once_while_the_archive_moves_the_watermark(db_path: Path) -> None:
    """Three hours of minutes, jobs run every 12 minutes (archive, rollups, publish): after every run a new reader
    and a reader kept open since the first archived hour see exactly what the file holds, late rows too."""
    clock = FakeClock()
    mon = owner(db_path, clock)
    counter = mon.counter("jobs_done")
    kept = None
    for minute in range(180):
        for i in range(5):
            mon.track_request(f"/r{i % 2}", "GET", 200, float(minute * 10 + i))
        counter.inc()
        if minute % 7 == 3:  # a late row: two minutes back
            mon.track_request("/late", "GET", 200, 1.0, ts=clock.now() - 120)
        clock.advance(60)
        if minute % 12 == 0:
            mon.run_jobs_now()
            assert read(db_path) == in_the_file(mon), f"minute {minute}"
            if kept is None and any((db_path.parent / f"{db_path.name}.history" / "requests").glob("*/*/*")):
                kept = history.connect(db_path=db_path)
            if kept is not None:
                assert read(db_path, kept) == in_the_file(mon), f"minute {minute}, long-lived reader"
    assert kept is not None
    kept.close()
    mon.close()


def test_runs_every_15_s_between_full_counts_miss_no_row(db_path: Path) -> None:
    """Runs every 15 s use the store's notes of the minutes each flush wrote (a full count only every 5 min): rows
    on a minute's edge, in the middle and late ones are all published, each once, and a run re-exports only the
    minutes they fall in."""
    clock = FakeClock()
    mon = owner(db_path, clock)
    for step in range(48):  # 12 minutes
        for i in range(15):
            mon.track_request("/a", "GET", 200, float(i))  # one at each whole second, minute edges included
            clock.advance(1)
        if step % 5 == 2:
            mon.track_request("/late", "GET", 200, 1.0, ts=clock.now() - 180)
        summary = mon.run_jobs_now()["publish"]
        assert summary.minutes["requests"] <= 3, step  # this step's one or two minutes, and a late row's
        assert read(db_path) == in_the_file(mon), step
    mon.close()


def test_a_run_exports_only_what_changed_and_a_new_owner_too(db_path: Path) -> None:
    """A second run with nothing new writes nothing; a late row re-exports its one minute; a new owner of the
    file starts from what the last one published."""
    clock = FakeClock()
    mon = owner(db_path, clock)
    for _ in range(10):
        mon.track_request("/a", "GET", 200, 1.0)
        clock.advance(60)
    first = mon.run_jobs_now()["publish"]
    assert first.minutes["requests"] == 10
    # What a fleet pushes to object storage is the archive: the recent minutes are for readers on this machine.
    assert objecthistory.RECENT_DIR == RECENT_DIR
    assert len(list((Path(first.history_dir) / RECENT_DIR).rglob("*.parquet"))) > 10
    assert [key for key in objecthistory._files(Path(first.history_dir)) if RECENT_DIR in key] == []
    assert mon.run_jobs_now()["publish"].files_written == 0
    mon.track_request("/late", "GET", 200, 1.0, ts=clock.now() - 5 * 60)
    again = mon.run_jobs_now()["publish"]
    assert again.minutes["requests"] == 1 and again.rows_written >= 2  # the late row's minute, whole
    mon.close()
    mon = owner(db_path, clock)
    assert mon.run_jobs_now()["publish"].minutes["requests"] == 0
    assert read(db_path)[0] == 11
    mon.close()


def test_a_reader_of_the_previous_watermark_still_finds_every_row(db_path: Path) -> None:
    """The archive moves the watermark past an hour: its minute files stay while a watermark below them was
    published within keep_seconds, so a query that read the previous watermark counts every row, none twice;
    then they go."""
    clock = FakeClock()
    mon = owner(db_path, clock, publish=PublishSettings(keep_seconds=3600))
    recent = db_path.parent / f"{db_path.name}.history" / RECENT_DIR
    for _ in range(50):
        mon.track_request("/a", "GET", 200, 1.0)
        clock.advance(60)
    mon.run_jobs_now()  # nothing archived yet: the first hour ends at minute 60
    before = (recent / WATERMARK_FILE).read_bytes()
    for _ in range(40):
        mon.track_request("/a", "GET", 200, 1.0)
        clock.advance(60)
    summary = mon.run_jobs_now()
    assert summary["archive"].hours.get("requests") == 1 and summary["publish"].files_deleted == 0
    assert read(db_path)[0] == 90
    after = (recent / WATERMARK_FILE).read_bytes()
    (recent / WATERMARK_FILE).write_bytes(before)  # a reader that read the watermark just before the move
    assert read(db_path)[0] == 90
    (recent / WATERMARK_FILE).write_bytes(after)
    clock.advance(3600)
    assert mon.run_jobs_now()["publish"].files_deleted >= 50
    assert read(db_path)[0] == 90
    mon.close()


def test_readers_never_open_the_owners_file(db_path: Path, tmp_path: Path) -> None:
    """history.connect() reads only Parquet while nothing holds the file either: an owner can start meanwhile."""
    clock = FakeClock()
    with owner(db_path, clock) as mon:
        mon.track_request("/a", "GET", 200, 1.0)
        mon.run_jobs_now()
    con = history.connect(db_path=db_path)
    try:
        assert "live" not in {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
        with owner(db_path, clock) as again:  # the file is free although the reader is open
            again.track_request("/b", "GET", 200, 1.0)
            again.run_jobs_now()
        assert con.execute("SELECT count(*) FROM requests").fetchone() == (2,)
    finally:
        con.close()


def test_an_in_memory_owner_publishes_nothing_and_bad_settings_are_refused(tmp_path: Path) -> None:
    """Without a history directory there is nowhere to publish; a bad setting names itself."""
    with Monitor(db_path=":memory:", jobs=False, memory_interval_seconds=None) as mon:
        assert "publish" not in mon.jobs_runner.names
    with Monitor(db_path=":memory:", jobs=False, memory_interval_seconds=None,
                 archive=ArchiveSettings(history_dir=tmp_path / "h")) as mon:
        mon.track_request("/a", "GET", 200, 1.0)
        assert mon.run_jobs_now()["publish"].minutes["requests"] == 1
    with pytest.raises(ConfigError, match="interval_seconds=0"):
        PublishSettings(interval_seconds=0)


def under_load(db: Path, read: Callable[[], Any]) -> tuple[Any, int, int]:
    """Start an owner of ``db`` in another process recording ~400 requests/s and publishing every 2 s; once it has
    run LAG_SECONDS + 5 s, call ``read()``; returns its result, what the owner had recorded LAG_SECONDS before the
    call started and what it had recorded when it ended (as the owner reports it, four times a second)."""
    proc = subprocess.Popen([sys.executable, ROLES, "publishing_owner", str(db), "2"], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timeline: list[tuple[float, int]] = []  # (wall time, requests recorded by then)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        while not timeline or timeline[-1][0] - timeline[0][0] < LAG_SECONDS + 5:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            t, n = line.split()
            timeline.append((float(t), int(n)))
        started = time.time()
        result = read()
        ended = time.time()
        while timeline[-1][0] < ended:  # the owner's reports up to the end of the read
            t, n = proc.stdout.readline().split()
            timeline.append((float(t), int(n)))
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    recorded_before = max((n for t, n in timeline if t <= started - LAG_SECONDS), default=0)
    recorded_after = next(n for t, n in timeline if t >= ended)
    assert recorded_before > 1_000
    return result, recorded_before, recorded_after


def test_duckpulse_sql_from_another_process_while_the_owner_runs_under_load(tmp_path: Path) -> None:
    """`duckpulse sql` in another process (which cannot open the file) counts at least what the owner had recorded
    LAG_SECONDS before it started (the promise is 60 s; a publish interval plus a flush is the design), and no
    more than it had recorded when it ended."""
    db = tmp_path / "m.duckdb"
    run, recorded_before, recorded_after = under_load(db, lambda: subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "sql", "--db", str(db), "--format", "csv",
         "SELECT count(*) FROM requests"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd()}))
    assert run.returncode == 0, run.stderr
    count = int(run.stdout.splitlines()[1])
    assert recorded_before <= count <= recorded_after, (recorded_before, count, recorded_after)
    assert "note" not in run.stderr


def served_performance(db: Path) -> dict[str, Any]:
    """`python -m webapp serve --db DB --dashboard-only` in a process of its own: its /api/metrics/performance."""
    server = subprocess.Popen([sys.executable, "-m", "webapp", "serve", "--db", str(db), "--dashboard-only",
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if "dashboard at " in line:
                url = line.split("dashboard at ")[1].strip()
                break
        else:
            raise AssertionError(server.stderr.read() if server.stderr else "no dashboard")
        with urllib.request.urlopen(f"{url}/api/metrics/performance?window=1h", timeout=60) as response:
            body: dict[str, Any] = json.loads(response.read())
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, server.stderr.read() if server.stderr else ""
        return body
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_dashboard_in_another_process_reads_what_the_owner_publishes(tmp_path: Path) -> None:
    """create_app over a file another process owns: its monitor records as a producer, and the dashboard's own
    endpoints answer from what the owner publishes, as fresh as `duckpulse sql`; silences, which only the owner
    keeps, are refused with where to set them. `python -m webapp serve --dashboard-only` serves the same."""
    from webapp import create_app

    db = tmp_path / "m.duckdb"

    def dashboard() -> tuple[dict[str, Any], list[int], str, int, dict[str, Any]]:
        served = served_performance(db)
        app = create_app({"DUCKPULSE_DB_PATH": str(db), "DUCKPULSE_CACHE_SECONDS": 0})
        monitor = app.extensions["duckpulse"]["monitor"]
        try:
            assert not monitor.is_owner
            client = app.test_client()
            with client.get("/api/metrics/performance?window=1h") as perf:
                body = perf.get_json()
            statuses = []
            for url in ("/api/routes?window=1h", "/api/series?window=1h", "/api/queries?window=1h",
                        "/api/memory?window=1h", "/api/alerts", "/api/alerts/history?window=1h", "/api/silences",
                        "/metrics"):
                with client.get(url) as response:
                    statuses.append(response.status_code)
            with client.post("/api/silences", json={"matchers": {"route": "/load"}, "duration": "1h"}) as silence:
                return body, statuses, silence.get_json()["error"]["message"], silence.status_code, served
        finally:
            monitor.close()  # before the owner ends, so that this process does not take the file over

    (perf, statuses, refusal, refusal_status, served), recorded_before, recorded_after = under_load(db, dashboard)
    assert statuses == [200] * len(statuses)
    assert recorded_before <= served["requests"]["total"] <= perf["requests"]["total"] <= recorded_after
    assert perf["requests"]["byRoute"] == {"/load": perf["requests"]["total"]}
    assert refusal_status == 503 and "does not own" in refusal and "owns the file" in refusal


def test_a_clean_close_publishes_every_row(db_path: Path) -> None:
    """An owner running its jobs publishes once more at close: a reader then sees every row it recorded. So does
    an owner with jobs=False once a publication exists (its own run_jobs_now(), or an earlier owner's), since
    readers then read it instead of the file; one that never published leaves the file to be read."""
    mon = Monitor(db_path=db_path, memory_interval_seconds=None, default_rules=False)
    for _ in range(25):
        mon.track_request("/a", "GET", 200, 1.0)
    mon.close()
    assert read(db_path)[0] == 25
    history_dir = db_path.parent / f"{db_path.name}.history"
    with Monitor(db_path=db_path, jobs=False, memory_interval_seconds=None, default_rules=False) as mon:
        mon.track_request("/a", "GET", 200, 1.0)  # jobs=False, and an earlier owner's publication
    assert read(db_path)[0] == 26
    shutil.rmtree(history_dir)
    with Monitor(db_path=db_path, jobs=False, memory_interval_seconds=None, default_rules=False) as mon:
        mon.track_request("/a", "GET", 200, 1.0)
        mon.run_jobs_now()
        mon.track_request("/a", "GET", 200, 1.0)  # after its own publication
    assert read(db_path)[0] == 28
    shutil.rmtree(history_dir)
    with Monitor(db_path=db_path, jobs=False, memory_interval_seconds=None, default_rules=False) as mon:
        mon.track_request("/a", "GET", 200, 1.0)
    assert not history_dir.exists()  # nothing published: the free file is read, attached as "live"
    con = history.connect(db_path=db_path)
    try:
        assert con.execute("SELECT count(*) FROM live.requests").fetchone() == (29,)
    finally:
        con.close()
