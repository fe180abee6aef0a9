"""One sample of this process's resources, taken with psutil off the request path."""

from __future__ import annotations

import gc
import os

import psutil

Sample = tuple[float, int, int, float, int, int | None, int, int | None]


class ProcessSampler:
    """Samples the current process; re-created after fork so a child never reports its parent's pid."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._proc = psutil.Process(self.pid)
        # The first cpu_percent() call only starts the measurement; prime it so the first sample is real.
        self._proc.cpu_percent(interval=None)

    def sample(self, now: float, full: bool = False) -> Sample:
        """(ts, rss, vms, cpu%, threads, fds, gc collections, uss): the row layout of process_samples.

        ``full`` adds USS from memory_full_info(), which reads /proc/<pid>/smaps and costs milliseconds.
        """
        proc = self._proc
        with proc.oneshot():
            mem = proc.memory_info()
            cpu = proc.cpu_percent(interval=None)
            threads = proc.num_threads()
            try:
                fds: int | None = proc.num_fds()
            except (AttributeError, psutil.Error):  # Windows has handles, not descriptors
                fds = None
        uss = proc.memory_full_info().uss if full else None
        collections = sum(gen["collections"] for gen in gc.get_stats())
        return (now, mem.rss, mem.vms, cpu, threads, fds, collections, uss)
