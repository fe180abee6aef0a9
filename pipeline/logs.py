"""Logging that cannot flood: each kind of problem is logged at most once per interval, with a count."""

from __future__ import annotations

import logging
import threading
from collections import Counter

from .clock import Clock

logger = logging.getLogger("duckpulse")


class ThrottledLog:
    """Logs a problem the first time, then at most once per ``interval_seconds`` per key, saying how many
    occurrences were not logged in between."""

    def __init__(self, clock: Clock, interval_seconds: float = 60.0, log: logging.Logger = logger) -> None:
        self._clock = clock
        self._interval = interval_seconds
        self._log = log
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, *, exc_info: BaseException | None = None) -> None:
        now = self._clock.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] += 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        self._log.warning("%s%s", message, more, exc_info=exc_info)
