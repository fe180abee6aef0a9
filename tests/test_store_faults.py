"""The store under faults from outside: a reopen racing a reader, the database file deleted under its owner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.store import Store
from pipeline.testing import FakeClock


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
