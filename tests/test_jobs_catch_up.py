"""Catch-up jobs over rows stamped far apart (years back, before 1970, centuries ahead): each step is bounded,
the writer's lock is free between steps, empty ranges are skipped, and no timestamp makes a job fail."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from test_rollup import add_requests
from test_store_faults import in_thread

from pipeline import Monitor, rollup
from pipeline.store import Store
from pipeline.testing import FakeClock

YEAR = 365 * 86_400.0
HOUR = 3600.0


@pytest.fixture
def file_store(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = Store(db_path, clock)
    yield s
    s.close()


def lock_is_free(store: Store) -> bool:
    """Whether another thread can take the store's writer lock at once (taken and given back)."""
    def attempt() -> bool:
        got = store.lock.acquire(blocking=False)
        if got:
            store.lock.release()
        return got
    result: bool = in_thread(attempt)
    return result


def probe_steps(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Before each write transaction of the store, whether another thread could take the writer lock then."""
    free: list[bool] = []
    transaction = store.transaction

    def probed() -> AbstractContextManager[None]:
        free.append(lock_is_free(store))
        return transaction()

    monkeypatch.setattr(store, "transaction", probed)
    return free


@pytest.mark.parametrize("old", [400 * 86_400.0, 6 * YEAR, None], ids=["400 days", "6 years", "ts=1.0"])
def test_a_first_rollup_over_an_old_row_steps_hour_by_hour_with_the_lock_free_between(
        file_store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, old: float | None) -> None:
    """Issue 13, item 2: a row 6 years old held the store lock for 47 s in the first rollup run (ts=1.0: 891 s),
    walking every empty day since. Now the run rolls only the hours that hold rows, one transaction each, and
    another thread can take the writer lock before every step (so a flush waits for one hour's work at most)."""
    now = clock.now()
    stamp = 1.0 if old is None else now - old
    add_requests(file_store, [(stamp, "/old", "GET", 200, 5.0), (now - 2 * HOUR + 10, "/", "GET", 200, 1.0),
                              (now - HOUR + 10, "/", "GET", 200, 2.0), (now - HOUR + 20, "/", "GET", 500, 3.0)])
    free = probe_steps(file_store, monkeypatch)
    summary = rollup.run(file_store, now)
    assert free == [True] * 4  # three hours with rows, then the watermark: never a walk through empty days
    print(f"\nFIGURE first rollup over a row {'ts=1.0' if old is None else f'{old / 86_400:.0f} days old'}: "
          f"{len(free)} write transactions, the writer lock free before each of them")
    assert summary.minutes_start == rollup.floor_to(stamp, 60) and summary.minutes_end == now
    assert file_store.scalar("SELECT sum(count) FROM rollups_1m") == 4
    assert file_store.scalar("SELECT sum(count) FROM rollups_1h") == 4
    state = rollup.read_state(file_store)
    assert state["1m"] == rollup.TierState(rollup.floor_to(stamp, 60), now)
    assert state["1h"] == rollup.TierState(rollup.floor_to(stamp, HOUR), now)


def test_retention_over_a_backlog_deletes_hour_by_hour_with_the_lock_free_between(
        file_store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retention run over days of archived raw rows (the archive failed for days, or a first run over an old file)
    deleted everything of a table in one transaction, holding the writer's lock throughout. Now each hour that holds
    rows is its own transaction, checked there against the archive's ledger, and another thread can take the writer
    lock before every one of them."""
    from pipeline import archive, retention

    now = clock.now()
    stamps = [now - 9 * 86_400 + 10, now - 9 * 86_400 + 20, now - 8.5 * 86_400, now - 8 * 86_400, now - HOUR]
    add_requests(file_store, [(ts, "/", "GET", 200, float(n)) for n, ts in enumerate(stamps)])
    rollup.run(file_store, now)
    archive.run(file_store, now)
    hours = {rollup.floor_to(ts, HOUR) for ts in stamps[:-1]}  # the ones older than raw_days (7)

    free = probe_steps(file_store, monkeypatch)
    summary = retention.run(file_store, now, retention.RetentionSettings(), archive.ArchiveSettings())
    # Per table: the impossible rows, then each hour with rows on its own, then the ledger; at the end the tables
    # that are not archived.
    assert all(free) and len(free) == len(archive.TABLES) * 2 + len(hours) + 1
    assert summary.deleted["requests"] == 4 and file_store.scalar("SELECT count(*) FROM requests") == 1
    print(f"\nFIGURE retention over archived rows 8-9 days old: {len(hours)} hours deleted in {len(hours)} "
          f"transactions of their own, the writer lock free before each of the {len(free)} transactions")


def test_rows_with_impossible_timestamps_fail_no_job_and_expire_counted(monitor: Monitor, clock: FakeClock) -> None:
    """Issue 13, item 6 (the jobs' side): an older duckpulse stored ts=NaN/inf as DuckDB's first timestamp (year
    290309 BC) and milliseconds as year 55840; the rollup and archive jobs then failed every run ("'str' object has
    no attribute 'tzinfo'": such timestamps are no Python datetime) and the future rows never expired. Now every
    job runs clean beside them, the ordinary rows reach the rollups and the history, and retention expires the
    impossible ones at once, counted by their rule: before 1970, or further ahead than raw_days."""
    from test_late_rows import history_ids, plant

    from pipeline import retention
    from pipeline.retention import BEFORE_1970, FUTURE

    assert monitor.store is not None
    plant(monitor.store, "requests", [], first_id=0)
    with monitor.store.transaction():  # DuckDB's first and last timestamps, as a NaN and an overflow were stored
        for n, micros in enumerate((-9_223_372_022_400_000_000, 9_223_372_036_854_775_806)):
            monitor.store.con.execute(
                "INSERT INTO requests (ts, route, method, status, duration_ms, query_count, pid, host) "
                "VALUES (make_timestamp($us), '/old', 'GET', 200, $id, 0, 1, 'h')", {"us": micros, "id": 100.0 + n})
    plant(monitor.store, "requests", [1_700_000_000_000.0, -86_400.0], first_id=200)
    monitor.track_request("/", "GET", 200, 1.0)
    clock.advance(2 * HOUR)
    results = monitor.run_jobs_now()
    assert {name: s["failures"] for name, s in monitor.stats()["jobs"].items()} == dict.fromkeys(results, 0)
    assert monitor.store.scalar("SELECT sum(count) FROM rollups_1h") == 1
    assert results["retention"].expired == {BEFORE_1970: {"requests": 2}, FUTURE: {"requests": 2}}
    assert retention.expired_totals(monitor.store) == results["retention"].expired
    assert monitor.store.scalar("SELECT count(*) FROM requests") == 1
    assert history_ids(monitor.store.path) == [1.0]  # type: ignore[arg-type]
