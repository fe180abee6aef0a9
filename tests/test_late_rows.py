"""Every committed row reaches the history, however late it arrives, or is counted as expired by a stated rule
(issue 13, item 1): the archive exports hours where rows are, and retention deletes only hours the history holds."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rollup import add_requests

from pipeline import Monitor, archive, history, retention, rollup
from pipeline.archive import ArchiveSettings
from pipeline.retention import BEFORE_1970, FUTURE, OLDER_THAN_HISTORY, RetentionSettings
from pipeline.store import Store, migrations
from pipeline.testing import FakeClock

T0 = FakeClock().now()  # 2026-01-01T00:00:00Z
HOUR = 3600.0
DAY = 86_400.0
YEAR = 365 * DAY
STEP = 2 * HOUR  # the jobs run every two hours of fake time here (they find what changed, whenever they run)
RAW_DAYS = 2.0  # raw rows kept (more than the 26 h a backlog is late here), so that the test reaches their expiry


def plant(store: Store, table: str, epochs: list[float], first_id: int) -> None:
    """Rows of an older duckpulse that stored any timestamp it was given (years -283230 or 55840 included):
    written the way DuckDB stored them, with an id in duration_ms."""
    with store.transaction():
        for n, epoch in enumerate(epochs):
            store.con.execute(f"INSERT INTO {table} (ts, route, method, status, duration_ms, query_count, pid, host) "
                              "VALUES (make_timestamp($us), '/old', 'GET', 200, $id, 0, 1, 'h')",
                              {"us": int(epoch * 1_000_000), "id": float(first_id + n)})


def history_ids(db_path: Path) -> list[float]:
    """The ids (duration_ms) of every request in the Parquet history, duplicates kept."""
    con = history.connect(db_path=db_path, attach_live=False)
    try:
        return sorted(r[0] for r in con.execute("SELECT duration_ms FROM requests").fetchall())
    finally:
        con.close()


@pytest.fixture
def owner(db_path: Path) -> Iterator[tuple[Monitor, FakeClock]]:
    clock = FakeClock(T0)
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False,
                  retention=RetentionSettings(raw_days=RAW_DAYS))
    yield mon, clock
    mon.close()


def test_late_very_old_clock_jumped_and_impossible_rows_are_each_in_the_history_or_counted(
        owner: tuple[Monitor, FakeClock], db_path: Path) -> None:
    """A fresh owner's first row is stamped 15 years back; a producer's backlog delivers rows 2 h and 26 h late;
    the wall clock jumps a day ahead for four hours, then back; an old file holds rows stamped before 1970 and in
    year 55840 (milliseconds taken for seconds). The jobs run every two hours for three days, then until retention has
    deleted every raw row: each committed row is in the history exactly once, except the two impossible ones,
    which are counted as expired with their reason. (Before: 0 of 100 late rows archived, 1,370 of 4,320 requests
    after the clock jump missing, the watermark crawling 48 h per run from the 15-year-old row.)"""
    mon, clock = owner
    assert mon.store is not None
    ids = itertools.count(1)
    recorded: list[float] = []
    kinds: Counter[str] = Counter()

    def record(ts: float, kind: str, rows: int = 3) -> None:
        kinds[kind] += rows
        for _ in range(rows):
            n = float(next(ids))
            mon.track_request("/r", "GET", 200, n, ts=ts)
            recorded.append(n)

    def tick() -> dict[str, object]:
        clock.advance(STEP)
        mon.flush()
        return {job: mon.jobs_runner.run(job) for job in ("rollup", "archive", "retention")}

    record(T0 - 15 * YEAR, "15 years old")
    plant(mon.store, "requests", [-5.0 * YEAR, 1_700_000_000_000.0], first_id=1_000_000)
    first = tick()["archive"]
    assert isinstance(first, archive.ArchiveSummary)
    assert first.hours["requests"] == 1  # the 15-year-old hour at once: no crawl from it through empty hours
    for step in range(3 * 12):
        record(clock.now() - 60, "on time")
        if step % 3 == 1:
            record(clock.now() - 2 * HOUR, "2 h late")
        if step % 5 == 2:
            record(clock.now() - 26 * HOUR, "26 h late")
        if step == 15:  # the wall clock jumps a day ahead for four hours, then is put right
            real = clock.now()
            clock.set_wall(real + DAY)
            for _ in range(2):
                record(clock.now() - 60, "a day ahead")
                tick()
            clock.set_wall(real + 2 * STEP)
        tick()
    for _ in range(int((RAW_DAYS + 1) * DAY / STEP)):  # until retention deleted every raw row (once the history has it)
        tick()

    assert mon.store.scalar("SELECT count(*) FROM requests") == 0
    assert all(status["failures"] == 0 for status in mon.stats()["jobs"].values())
    got = history_ids(db_path)
    assert len(got) == len(set(got))  # no row twice
    assert got == sorted(recorded)  # and every one of them
    assert retention.expired_totals(mon.store) == {BEFORE_1970: {"requests": 1}, FUTURE: {"requests": 1}}
    print(f"\nFIGURE late rows: {len(got)} of {len(recorded)} committed requests in the history, once each "
          f"({', '.join(f'{n} {kind}' for kind, n in kinds.items())}); 2 impossible ones expired, counted by rule; "
          "0 job failures; raw table empty at the end")


def test_a_late_row_of_an_hour_retention_already_deleted_goes_to_a_second_file(
        db_path: Path, clock: FakeClock) -> None:
    """Once retention deleted an archived hour's raw rows, a row of that hour arriving later is exported into a
    second file of the same partition (late-1.parquet), never over the first, and only once however often the
    archive runs; retention then deletes it too, and a third row goes to late-2."""
    store = Store(db_path, clock)
    try:
        settings, keep = ArchiveSettings(), RetentionSettings(raw_days=1)
        add_requests(store, [(T0 + 60, "/", "GET", 200, 1.0), (T0 + 120, "/", "GET", 200, 2.0)])
        clock.advance(3 * DAY)

        def jobs() -> None:
            rollup.run(store, clock.now())
            archive.run(store, clock.now(), settings)
            retention.run(store, clock.now(), keep, settings)

        jobs()
        assert store.scalar("SELECT count(*) FROM requests") == 0
        partition = archive.partition_dir(archive.default_history_dir(db_path), "requests", T0)
        for n, name in ((3.0, "late-1.parquet"), (4.0, "late-2.parquet")):
            add_requests(store, [(T0 + 900, "/late", "GET", 200, n)])
            jobs()
            jobs()
            assert sorted(p.name for p in partition.iterdir()) == sorted(
                ["data.parquet", "late-1.parquet", "late-2.parquet"][: int(n) - 1])
            assert name in {p.name for p in partition.iterdir()}
        assert history_ids(db_path) == [1.0, 2.0, 3.0, 4.0]
        assert store.scalar("SELECT count(*) FROM requests") == 0
    finally:
        store.close()


def test_rows_older_than_the_history_keeps_expire_counted(db_path: Path, clock: FakeClock) -> None:
    """With history_days = 30, a row stamped 40 days back is never exported (its hour is pruned from the history)
    and retention deletes it as expired "older than the history keeps", counted; newer ones reach the history."""
    store = Store(db_path, clock)
    try:
        settings = ArchiveSettings(history_days=30)
        add_requests(store, [(T0 - 40 * DAY, "/", "GET", 200, 1.0), (T0 - 20 * DAY, "/", "GET", 200, 2.0)])
        rollup.run(store, clock.now())
        assert archive.run(store, clock.now(), settings).hours["requests"] == 1
        summary = retention.run(store, clock.now(), RetentionSettings(), settings)
        assert summary.expired == {OLDER_THAN_HISTORY: {"requests": 1}}
        assert retention.expired_totals(store) == {OLDER_THAN_HISTORY: {"requests": 1}}
        assert store.scalar("SELECT count(*) FROM requests") == 0
        assert history_ids(db_path) == [2.0]
    finally:
        store.close()


def test_retention_keeps_raw_rows_the_archive_has_not_exported(db_path: Path, clock: FakeClock) -> None:
    """Raw rows past raw_days stay while the history lacks them (the archive failing, or rows that came late), and
    go once it has them: retention never deletes raw rows of an hour that was not archived."""
    store = Store(db_path, clock)
    try:
        settings = ArchiveSettings()
        add_requests(store, [(T0 + 60, "/", "GET", 200, 1.0)])
        clock.advance(2 * HOUR)
        rollup.run(store, clock.now())
        archive.run(store, clock.now(), settings)
        add_requests(store, [(T0 + 90, "/", "GET", 200, 2.0)])  # late, into the archived hour
        clock.advance(10 * DAY)
        rollup.run(store, clock.now())
        retention.run(store, clock.now(), RetentionSettings(), settings)
        assert store.scalar("SELECT count(*) FROM requests") == 2  # the hour is not wholly in the history
        archive.run(store, clock.now(), settings)
        retention.run(store, clock.now(), RetentionSettings(), settings)
        assert store.scalar("SELECT count(*) FROM requests") == 0
        assert history_ids(db_path) == [1.0, 2.0]
    finally:
        store.close()


def test_a_database_archived_before_the_ledger_keeps_its_archived_hours(db_path: Path, clock: FakeClock) -> None:
    """A file whose archive ran before the ledger existed (only archived_until) has the hours below it taken as
    archived whole when it is opened: they are not exported again, and retention deletes them when they expire."""
    store = Store(db_path, clock)
    add_requests(store, [(T0 + 60, "/", "GET", 200, 1.0), (T0 + HOUR + 60, "/", "GET", 200, 2.0)])
    with store.transaction():  # what the archive of an older duckpulse left: the watermark, and no ledger
        store.con.execute("INSERT INTO archive_state VALUES ('requests', $until, $until)",
                          {"until": archive.utc_datetime(T0 + HOUR)})
        store.con.execute("DELETE FROM archive_hours")
        ledger = next(version for version, sql in migrations() if "CREATE TABLE IF NOT EXISTS archive_hours" in sql)
        store.con.execute("DELETE FROM schema_version WHERE version >= $v", {"v": ledger})
    store.close()
    store = Store(db_path, clock)
    try:
        assert store.fetchall("SELECT epoch(hour), part, archived FROM archive_hours") == [(T0, 0, 1)]
        clock.advance(9 * DAY)
        rollup.run(store, clock.now())
        assert archive.run(store, clock.now()).hours["requests"] == 1  # the hour after the old watermark only
        retention.run(store, clock.now(), RetentionSettings(), ArchiveSettings())
        assert store.scalar("SELECT count(*) FROM requests") == 0
        assert history_ids(db_path) == [2.0]  # hour 0 stays the old archive's file (none in this test)
    finally:
        store.close()
