"""Test doubles that ship beside the interfaces they fake, so users can test their own instrumentation."""

from __future__ import annotations

import threading

from .store import Store


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
