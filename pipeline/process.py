"""One sample of this process's resources, taken with psutil off the request path."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import psutil

Sample = tuple[float, int, int, float | None, int, int | None, int, int | None]
# CPU use is measured between two samples at least this far apart: cpu_times() counts in clock ticks (10 ms), so
# over a shorter interval one tick more or less moves the figure by tens of percent.
MIN_CPU_INTERVAL_SECONDS = 1.0


def cpu_percent(previous: tuple[float, float] | None, current: tuple[float, float], cores: int) -> float | None:
    """CPU use between two (monotonic seconds, CPU seconds) readings, in percent of one core; None when it cannot
    be right: no earlier reading (a process's first sample), an interval shorter than MIN_CPU_INTERVAL_SECONDS,
    CPU time going backwards, or more than 100% per core (4172% was once stored for a first sample on 2 cores)."""
    if previous is None:
        return None
    elapsed = current[0] - previous[0]
    used = current[1] - previous[1]
    if elapsed < MIN_CPU_INTERVAL_SECONDS or used < 0:
        return None
    percent = used / elapsed * 100.0
    return percent if percent <= 100.0 * cores else None


class ProcessSampler:
    """Samples the current process; re-created after fork so a child never reports its parent's pid.

    CPU use is computed here from ``cpu_times()`` between samples rather than by psutil's ``cpu_percent()``,
    whose first call returns a meaningless figure: the first sample of a process stores no CPU figure (NULL).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pid = os.getpid()
        self._proc = psutil.Process(self.pid)
        self._monotonic = monotonic
        self._cores = psutil.cpu_count() or 1
        self._cpu_baseline: tuple[float, float] | None = None  # (monotonic, CPU seconds) CPU use counts from

    def sample(self, now: float, full: bool = False) -> Sample:
        """(ts, rss, vms, cpu% or None, threads, fds, gc collections, uss): the row layout of process_samples.

        ``full`` adds USS from memory_full_info(), which reads /proc/<pid>/smaps and costs milliseconds.
        """
        proc = self._proc
        with proc.oneshot():
            mem = proc.memory_info()
            times = proc.cpu_times()
            threads = proc.num_threads()
            try:
                fds: int | None = proc.num_fds()
            except (AttributeError, psutil.Error):  # Windows has handles, not descriptors
                fds = None
        reading = (self._monotonic(), times.user + times.system)
        cpu = cpu_percent(self._cpu_baseline, reading, self._cores)
        # The baseline moves once a figure could be computed (or could never be): samples taken in quick
        # succession are measured against the last one far enough back, not against each other.
        if self._cpu_baseline is None or reading[0] - self._cpu_baseline[0] >= MIN_CPU_INTERVAL_SECONDS:
            self._cpu_baseline = reading
        uss = proc.memory_full_info().uss if full else None
        collections = sum(gen["collections"] for gen in gc.get_stats())
        return (now, mem.rss, mem.vms, cpu, threads, fds, collections, uss)
