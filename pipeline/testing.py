"""Test doubles that ship beside the interfaces they fake, so users can test their own instrumentation."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .alerts.delivery import settle_all
from .store import Store

if TYPE_CHECKING:
    from .alerts.notify import Notification


class FakeClock:
    """A clock that moves only when told to.

    ``advance`` refuses to go backwards, like trio's ``MockClock.jump``: a test that wants the wall clock to
    jump backwards says so explicitly with ``set_wall``, which leaves monotonic time alone, as real systems do.
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._wall = float(start)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (>= 0)."""
        if not seconds >= 0:
            raise ValueError(f"FakeClock.advance({seconds!r}): time only moves forward; use set_wall() to "
                             "simulate a wall-clock jump")
        with self._lock:
            self._wall += seconds
            self._mono += seconds

    def set_wall(self, epoch_seconds: float) -> None:
        """Set the wall clock (it may jump backwards, as NTP can make it); monotonic time does not move."""
        with self._lock:
            self._wall = float(epoch_seconds)


def memory_store(clock: FakeClock | None = None) -> Store:
    """A fresh in-memory store with the full schema: a real DuckDB, nothing on disk."""
    return Store(None, clock or FakeClock())


class RecordingNotifier:
    """An alert notifier that records every notification it is given, for tests (``mon.on_alert(rec)``).

    Notifiers run on a thread of their own (pipeline/alerts/delivery.py); reading what it received first waits
    until every notification decided so far went through the notifiers.
    """

    def __init__(self) -> None:
        self._notifications: list[Notification] = []
        self._lock = threading.Lock()

    def __call__(self, notification: Notification) -> None:
        with self._lock:
            self._notifications.append(notification)

    @property
    def notifications(self) -> list[Notification]:
        settle_notifications()
        with self._lock:
            return list(self._notifications)

    def states(self) -> list[tuple[str, str]]:
        """(rule, state) of each notification received, in order."""
        return [(n.rule, n.state) for n in self.notifications]

    def clear(self) -> None:
        settle_notifications()
        with self._lock:
            self._notifications.clear()


def settle_notifications(timeout: float = 10.0) -> bool:
    """Wait (up to ``timeout`` seconds) until every alert notification decided in this process so far went
    through its notifiers, which run on a thread of their own; False if one is still running."""
    return settle_all(timeout)
