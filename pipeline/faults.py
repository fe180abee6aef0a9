"""Which faults are recent: health judges by them, while stats() keeps every count since the process started.

Fault counters (metrics dropped, flushes and ingest runs that failed, segments quarantined, the database file lost
under its owner) only ever grow, so a health check that read them stayed "degraded" forever after a fault that
had long recovered. ``RecentFaults`` watches those totals and remembers when each last grew; a fault is recent
for ``RECENT_FAULT_SECONDS`` after that (on the monotonic clock, which wall-clock jumps do not move).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from .clock import Clock

# How long a fault keeps health "degraded" after it was last seen: five minutes, several flush, ingest and alert
# intervals, so a fault that keeps happening never flickers to "ok", and one that stopped clears soon after.
RECENT_FAULT_SECONDS = 300.0


class RecentFaults:
    """Remembers when each fault counter last grew."""

    def __init__(self, clock: Clock, window_seconds: float = RECENT_FAULT_SECONDS) -> None:
        self.clock = clock
        self.window_seconds = window_seconds
        self._totals: dict[str, int] = {}
        self._grew_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, totals: Mapping[str, int]) -> dict[str, float]:
        """Note the current totals; returns the faults seen within the window: name -> seconds since last seen.

        A total that grew since the last observation grew now: observing often (every flush) dates faults to
        within a flush interval.
        """
        now = self.clock.monotonic()
        with self._lock:
            for name, total in totals.items():
                if total > self._totals.get(name, 0):
                    self._grew_at[name] = now
                self._totals[name] = total
            return {name: max(0.0, now - at) for name, at in self._grew_at.items()
                    if now - at < self.window_seconds}
