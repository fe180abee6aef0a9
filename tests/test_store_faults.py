"""The store under faults from outside: a reopen racing a reader, the database file deleted under its owner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import Monitor
from pipeline.faults import RECENT_FAULT_SECONDS
from pipeline.store import Store
from pipeline.testing import FakeClock
from webapp.bodies import health_body


class HookedLock:
    """The store's writer lock, running ``hook`` once right after a release armed by the test (on the releasing
    thread, which no longer holds the lock): a way to put another thread's work exactly into a gap."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.hook: Callable[[], None] | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def in_thread(work: Callable[[], Any]) -> Any:
    """Run ``work`` on a real thread of its own and wait for it; returns its result (or raises its exception)."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def test_a_reopen_between_a_new_cursor_and_its_generation_never_hands_out_a_closed_cursor(tmp_path: Path) -> None:
    """A reader takes a cursor under the writer's lock; the periodic reopen runs (on another thread) right after
    that lock is released, closing the cursor. The read still succeeds, on a cursor of the new instance: the
    cursor is paired with the generation it was made in, not the one current when the pairing is stored (issue
    13, item 9: "Connection already closed!" in 1 sweep of 86)."""
    store = Store(tmp_path / "m.duckdb", FakeClock())
    try:
        hooked = HookedLock()
        store.lock = hooked  # type: ignore[assignment]  # the same interface as the RLock it wraps
        recycled: list[bool] = []
        hooked.hook = lambda: recycled.append(in_thread(store.recycle))
        with store.reading() as cursor:  # this thread has no cursor yet: reader() makes one, and the hook fires
            assert recycled == [True]  # the reopen did run in the gap, closing the cursor just made
            assert cursor.execute("SELECT count(*) FROM requests").fetchone() == (0,)
    finally:
        store.close()


def test_the_database_file_deleted_under_its_owner_is_made_anew_said_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 13, item 7: `rm metrics.duckdb` under a running owner. Before, it wrote into the deleted file for ~60 s
    with health ok, then its periodic reopen created a file without the schema and every flush and ingest failed
    until a restart, and 5 healthy segments were quarantined ("table does not exist"). Now the next write notices
    that the path no longer names the open file, makes the database anew there with its schema, says so in the
    log and in stats()/health, counts the rows only the deleted file held as lost, and goes on: the flush, the
    producers' segments (none quarantined) and the periodic reopen all land in the new file."""
    clock = FakeClock()
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    owner = Monitor(db_path=db, ingest_dir=spool, jobs=False, clock=clock, memory_interval_seconds=None,
                    default_rules=False)
    producer = Monitor(spool_dir=spool, jobs=False, clock=clock, memory_interval_seconds=None)
    try:
        for i in range(5):
            owner.track_request("/before", "GET", 200, float(i))
        assert owner.flush()
        assert health_body(owner.stats(), detailed=False)["status"] == "ok"
        db.unlink()
        for i in range(3):
            owner.track_request("/after", "GET", 200, float(i))
            producer.track_request("/producer", "GET", 200, float(i))
        assert producer.flush()
        assert owner.flush()  # noticed at this write: the file is made anew, and the rows go into it
        assert db.exists()
        assert owner.ingest_now() == 3
        store = owner.stats()["store"]
        assert (store["file_lost"], store["rows_lost"], store["last_file_lost_at"]) == (1, 5, clock.now())
        assert owner.stats()["ingest"]["quarantined"] == 0
        assert "was deleted or replaced while this process owned it" in caplog.text
        health = health_body(owner.stats(), detailed=True)
        assert health["status"] == "degraded"
        assert any("deleted or replaced" in problem and "5 rows" in problem for problem in health["problems"])
        print(f"\nFIGURE database file deleted under its owner: made anew at the next write, {store['rows_lost']} rows "
              f"of the deleted file counted lost, the 3 flushed and 3 ingested after stored, "
              f"{owner.stats()['ingest']['quarantined']} segments quarantined, health degraded")
        clock.advance(61)
        assert owner.store is not None
        assert owner.store.release_memory(clock.now())["recycled"]  # the periodic reopen opens the new file
        owner.track_request("/later", "GET", 200, 1.0)
        assert owner.flush()
        clock.advance(RECENT_FAULT_SECONDS)  # recovered: health clears, the counts stay (issue 13, item 16)
        assert health_body(owner.stats(), detailed=False)["status"] == "ok"
        assert owner.stats()["store"]["file_lost"] == 1
    finally:
        producer.close()
        owner.close()
    with duckdb.connect(str(db), read_only=True) as con:  # what the new file holds once the owner is gone
        assert con.execute("SELECT route, count(*) FROM requests GROUP BY 1 ORDER BY 1").fetchall() == [
            ("/after", 3), ("/later", 1), ("/producer", 3)]


def test_health_reflects_recent_faults_and_keeps_the_counts(tmp_path: Path) -> None:
    """Issue 13, item 16: health stayed "degraded" forever after a fault that recovered, because it read
    cumulative counters. Drops make it degraded while they are recent (RECENT_FAULT_SECONDS on the monotonic
    clock); once that long has passed without a new one it is "ok" again, and the drop counts stay in stats() and in
    the body. A new drop makes it degraded again."""
    clock = FakeClock()
    mon = Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                  default_rules=False, max_buffered=3)
    try:
        for i in range(5):
            mon.track_request("/", "GET", 200, float(i))
        mon.flush()
        health = health_body(mon.stats(), detailed=False)
        assert health["status"] == "degraded" and health["dropped"] == {"buffer_full": 2}
        assert set(health["recentFaults"]) == {"dropped"}
        clock.advance(RECENT_FAULT_SECONDS - 1)
        assert health_body(mon.stats(), detailed=False)["status"] == "degraded"
        clock.advance(1)
        health = health_body(mon.stats(), detailed=False)
        assert (health["status"], health["problems"], health["dropped"]) == ("ok", [], {"buffer_full": 2})
        print(f"\nFIGURE health after 2 drops: degraded for {RECENT_FAULT_SECONDS:.0f} s, then ok with the counts kept")
        for i in range(5):
            mon.track_request("/", "GET", 200, float(i))
        mon.flush()
        assert health_body(mon.stats(), detailed=False)["status"] == "degraded"
    finally:
        mon.close()
