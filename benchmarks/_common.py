"""Shared helpers of the benchmark scripts: a quiet Monitor on a temporary file, timers, the verdict table.

Benchmarks are not tests: they print figures (and a PASS/OVER verdict against DESIGN.md's budgets) and exit 0,
unless ``--check`` is given, which makes a missed budget exit 1. The machine is shared, so every figure is a
median of many small timed batches, and peers are measured in the same process: ratios are what carry over.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as `python benchmarks/<name>.py` from the checkout: make `pipeline` importable without an install too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import Monitor

NEVER_SECONDS = 1e6  # a flush interval that never comes during a benchmark


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 when a budget is missed")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def quiet_monitor(directory: Path, *, spool: bool = False, max_buffered: int = 4_000_000, **kwargs: Any
                  ) -> Monitor:
    """A monitor that never flushes or samples on its own: the benchmark decides when (compaction still runs
    on the flusher thread every tick, as in production)."""
    where: dict[str, Any] = ({"spool_dir": directory / "spool"} if spool
                             else {"db_path": directory / "bench.duckdb"})
    return Monitor(**where, flush_interval_seconds=NEVER_SECONDS, flush_rows=10**12,
                   max_buffered=max_buffered, memory_interval_seconds=None, jobs=False, **kwargs)


def batch_ns(stmt: str, namespace: dict[str, Any], number: int,
             clock: Callable[[], float] = time.perf_counter) -> Callable[[], float]:
    """A function timing ``number`` runs of ``stmt`` with the garbage collector ON; returns ns per call.

    ``clock=time.thread_time`` counts only the CPU time of the calling thread: on a shared machine, the time
    this thread spends descheduled (other processes running) is then not counted against the code measured.
    """
    # timeit turns gc off by default; a hot path that allocates must be measured with it on.
    timer = timeit.Timer(stmt, setup="gc.enable()", timer=clock, globals={**namespace, "gc": gc})
    return lambda: timer.timeit(number) / number * 1e9


def interleaved(cases: dict[str, Callable[[], float]], rounds: int, seed: int = 1) -> dict[str, list[float]]:
    """Run each case once per round, so load from other processes hits every case alike, in a new random order
    each round: in a fixed order every case would always follow the same neighbour and pay for its garbage."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    shuffle = random.Random(seed).shuffle
    for _ in range(rounds):
        shuffle(names)
        for name in names:
            samples[name].append(cases[name]())
    return samples


def best_of(repeat: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    """(minimum, all) of ``repeat`` timed runs of something that returns seconds."""
    runs = [run() for _ in range(repeat)]
    return min(runs), runs


def stopwatch(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stopwatch_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process, every thread) of one call of ``fn``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class Budget:
    """A budget from DESIGN.md: ``value`` is a maximum (``at_most``) or a minimum."""

    value: float
    at_most: bool
    label: str

    def verdict(self, measured: float) -> str:
        ok = measured <= self.value if self.at_most else measured >= self.value
        return "PASS" if ok else "OVER"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A plain-text table; numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_looks_numeric(r[i]) for r in cells[1:] if r[i]) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        cells = zip(row, widths, numeric, strict=True)
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in cells)

    out = [title] if title else []
    out += [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _looks_numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "").replace("x", "").replace("-", "").strip().isdigit()


def header(title: str) -> None:
    import duckdb
    import pyarrow

    print(f"== {title}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"   python {platform.python_version()}, duckdb {duckdb.__version__}, "
          f"pyarrow {pyarrow.__version__}, {os.cpu_count()} cpu(s), load average {load}")


def finish(verdicts: Sequence[str], check: bool) -> int:
    missed = sum(v == "OVER" for v in verdicts)
    over = f", {missed} OVER" if missed else ""
    print(f"\n{len(verdicts) - missed} of {len(verdicts)} budgets met{over}")
    return 1 if (check and missed) else 0


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class GcWatch:
    """Counts garbage collections per generation and the CPU time spent in them, while installed."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        # A collection runs whole in the thread that set it off, holding the GIL: that thread's CPU time is
        # its cost, and time spent descheduled by other processes on a shared machine is not counted.
        if phase == "start":
            self._start = time.thread_time()
        else:
            generation = info["generation"]
            self.collections[generation] += 1
            self.seconds[generation] += time.thread_time() - self._start

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)
