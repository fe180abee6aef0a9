"""The clock every time-dependent part of duckpulse reads, so tests can pass a fake one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock and monotonic time in seconds."""

    def now(self) -> float:
        """Seconds since the Unix epoch, UTC (what rows are stamped with)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards (what intervals are measured with)."""
        ...


class SystemClock:
    """The production clock: the operating system's."""

    # Plain functions rather than methods: the hot path calls ``now`` once per metric.
    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)


SYSTEM_CLOCK = SystemClock()


def utc_datetime(epoch_seconds: float) -> datetime:
    """Naive UTC datetime for an epoch time, the form DuckDB's TIMESTAMP columns hold."""
    return datetime.fromtimestamp(epoch_seconds, UTC).replace(tzinfo=None)
