"""The clock every time-dependent part of duckpulse reads, so tests can pass a fake one."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
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


_EPOCH = datetime(1970, 1, 1)


def epoch_us(epoch_seconds: float) -> int:
    """The microsecond a row stamped ``epoch_seconds`` is stored at: what the store's inserts compute,
    ``round(ts * 1000000)`` in DuckDB, which rounds the double product half away from zero.

    Every bound compared with stored times is made here, so that a row and a bound of the same time are equal.
    Python's own conversions disagree with the store about one time in eight: ``round()`` rounds ties to even,
    and ``datetime.fromtimestamp`` rounds the exact value, not the product (whose last bit is a quarter of a
    microsecond at today's dates, so a tie is common). An alert sweep at the very time of a slow request missed
    it that way, and so did a range ending at a row's time.
    """
    fraction, whole = math.modf(epoch_seconds * 1_000_000)  # both parts exact
    return int(whole) + (fraction >= 0.5) - (fraction <= -0.5)


def utc_datetime(epoch_seconds: float) -> datetime:
    """Naive UTC datetime for an epoch time, the form DuckDB's TIMESTAMP columns hold, to the microsecond a row
    of that time is stored at (``epoch_us``)."""
    return _EPOCH + timedelta(microseconds=epoch_us(epoch_seconds))


class Timestamps:
    """The hot path's wall-clock time, read as one attribute (``ts = stamps.seconds``) instead of a clock call.

    Calling ``time.time()`` from Python costs ~45 ns, a third of the recording budget. With the system clock a
    thread stores the time in ``seconds`` every ``resolution_seconds`` while metrics are being recorded, so a
    row's timestamp is at most one resolution (10 ms by default) older than the call, plus however long some
    other thread held the GIL. After ``idle_seconds`` with nothing recorded (``activity()`` unchanged) the thread
    sets ``seconds`` to None and sleeps until woken: an idle app pays nothing for it. A reader that finds None
    calls ``now()``, which reads the clock itself (an exact timestamp) and wakes the thread.

    With any other clock (a test's fake clock), or a resolution of 0, the thread never runs and ``seconds``
    stays None: every timestamp is read from the clock, exactly.
    """

    __slots__ = ("_activity", "_clock", "_idle_ticks", "_resolution", "_running", "_thread", "_wake", "seconds")

    def __init__(self, clock: Clock, resolution_seconds: float, activity: Callable[[], int],
                 idle_seconds: float = 1.0) -> None:
        self.seconds: float | None = None
        self._clock = clock
        self._resolution = resolution_seconds if isinstance(clock, SystemClock) else 0.0
        self._activity = activity
        self._idle_ticks = max(1, round(idle_seconds / resolution_seconds)) if self._resolution else 0
        self._running = False
        self._wake: threading.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def coarse(self) -> bool:
        """True when a thread keeps ``seconds`` (timestamps within one resolution), False when exact."""
        return self._resolution > 0

    def now(self) -> float:
        """The clock's time now; the slow path of a reader that found ``seconds`` None."""
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()
        return self._clock.now()

    def start(self) -> None:
        """Start the refreshing thread (again, in a forked child: threads do not survive a fork)."""
        self.seconds = None
        if not self._resolution:
            return
        self._running = True
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._wake,), name="duckpulse-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._wake is not None:
            self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.seconds = None

    def _run(self, wake: threading.Event) -> None:
        now, sleep, activity = self._clock.now, time.sleep, self._activity
        last, quiet = activity(), 0
        while self._running:
            self.seconds = now()
            sleep(self._resolution)
            current = activity()
            if current != last:
                last, quiet = current, 0
                continue
            quiet += 1
            if quiet < self._idle_ticks:
                continue
            # Idle. Clear the event before publishing None: a reader that sees None sets it after the clear, so
            # its wake-up cannot be lost.
            wake.clear()
            self.seconds = None
            wake.wait()
            last, quiet = activity(), 0
        self.seconds = None
