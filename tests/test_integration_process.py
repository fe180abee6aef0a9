"""Process sampling with psutil: one sample on demand, periodic samples from the flusher's tick, producers too."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipeline import Monitor
from pipeline.process import MIN_CPU_INTERVAL_SECONDS, ProcessSampler, cpu_percent
from pipeline.testing import FakeClock

COLUMNS = ["ts", "pid", "host", "rss_bytes", "vms_bytes", "cpu_percent", "num_threads", "num_fds",
           "gc_collections", "uss_bytes"]


def samples(monitor: Monitor, pid: int | None = None) -> list[dict[str, Any]]:
    monitor.flush()
    assert monitor.store is not None
    where = "" if pid is None else f"WHERE pid = {int(pid)}"
    rows = monitor.store.fetchall(f"SELECT {', '.join(COLUMNS)} FROM process_samples {where} ORDER BY rowid")
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def stop_flusher(monitor: Monitor) -> None:
    # The flusher thread calls tick() on its own every 0.1 s; stopped, the test's tick() calls are the only ones.
    monitor._stop.set()
    monitor._thread.join(timeout=30)
    assert not monitor._thread.is_alive()


def test_one_sample_describes_this_process(monitor: Monitor) -> None:
    """track_memory() records rss, vms, cpu, threads, fds and gc counts for this pid; USS only when full=True."""
    before = sum(s["collections"] for s in gc.get_stats())
    monitor.track_memory()
    gc.collect()
    monitor.track_memory(full=True)
    first, second = samples(monitor)
    for s in (first, second):
        assert s["pid"] == os.getpid()
        assert s["host"] == monitor.host
        assert 0 < s["rss_bytes"] <= s["vms_bytes"]
        assert s["num_threads"] >= 2  # this thread and the flusher
        assert s["num_fds"] > 0
    assert first["cpu_percent"] is None, "a process's first sample has no CPU figure to compare against"
    assert first["gc_collections"] >= before
    assert second["gc_collections"] > first["gc_collections"]  # the gc.collect() in between
    assert first["uss_bytes"] is None
    assert 0 < second["uss_bytes"] <= second["rss_bytes"]


def test_flusher_samples_every_memory_interval(db_path: Path, clock: FakeClock) -> None:
    """tick() samples when memory_interval_seconds has passed on the monitor's clock, and not before."""
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=10.0,
                  flush_interval_seconds=3600)
    try:
        stop_flusher(mon)
        start = clock.now()
        for step in (0, 5, 5, 10, 9):  # seconds to advance before each tick: due at 0, 10 and 20 only
            clock.advance(step)
            mon.tick()
        taken = samples(mon)
        assert [s["ts"].timestamp() - start for s in taken] == [0.0, 10.0, 20.0]
        assert {s["pid"] for s in taken} == {os.getpid()}
        assert all(s["uss_bytes"] is None for s in taken)  # the periodic sample never pays for USS
    finally:
        mon.close()


def test_no_periodic_sampling_when_disabled(monitor: Monitor, clock: FakeClock) -> None:
    """memory_interval_seconds=None: ticks never sample (the fixture's monitor)."""
    stop_flusher(monitor)
    for _ in range(3):
        clock.advance(60)
        monitor.tick()
    assert samples(monitor) == []


PRODUCER = textwrap.dedent("""
    import os, sys, time
    from pipeline import Monitor
    from pipeline.testing import FakeClock

    clock = FakeClock(time.time())  # today: the owner's retention job would expire older rows
    mon = Monitor(spool_dir=sys.argv[1], clock=clock, memory_interval_seconds=10.0, flush_interval_seconds=3600)
    mon._stop.set(); mon._thread.join()  # the script drives tick() itself
    for step in (0, 5, 5, 10):  # due at 0, 10 and 20
        clock.advance(step)
        mon.tick()
    mon.track_memory(full=True)
    mon.close()  # flushes the samples into the spool
    print(os.getpid(), flush=True)
""")


def test_producer_process_samples_reach_the_owner(tmp_path: Path) -> None:
    """A producer process samples itself into its spool; the owner ingests the rows under the producer's pid."""
    spool = tmp_path / "spool"
    proc = subprocess.run([sys.executable, "-c", PRODUCER, str(spool)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    child_pid = int(proc.stdout.split()[-1])
    owner = Monitor(db_path=tmp_path / "owner.duckdb", ingest_dir=spool, jobs=False, memory_interval_seconds=None)
    try:
        owner.run_jobs_now()
        taken = samples(owner, child_pid)
        assert child_pid != os.getpid()
        assert len(taken) == 4
        assert [round(s["ts"].timestamp() - taken[0]["ts"].timestamp()) for s in taken] == [0, 10, 20, 20]
        assert all(s["rss_bytes"] > 0 and s["num_threads"] >= 1 and s["num_fds"] > 0 for s in taken)
        assert [s["uss_bytes"] is not None for s in taken] == [False, False, False, True]
        assert samples(owner, os.getpid()) == []  # the owner itself took no sample
    finally:
        owner.close()


def test_cpu_figures_that_cannot_be_right_are_not_given() -> None:
    """CPU use between two readings: None without an earlier reading, over too short an interval, for time going
    backwards, or above 100% per core; otherwise CPU seconds over wall seconds."""
    assert cpu_percent(None, (10.0, 5.0), cores=2) is None
    assert cpu_percent((10.0, 5.0), (12.0, 6.0), cores=2) == pytest.approx(50.0)
    assert cpu_percent((10.0, 5.0), (12.0, 9.0), cores=2) == pytest.approx(200.0)  # both cores busy
    assert cpu_percent((10.0, 5.0), (12.0, 9.2), cores=2) is None  # 210% on 2 cores
    assert cpu_percent((10.0, 5.0), (10.0 + MIN_CPU_INTERVAL_SECONDS / 2, 5.0), cores=2) is None
    assert cpu_percent((10.0, 5.0), (12.0, 4.0), cores=2) is None


def test_the_sampler_measures_cpu_from_its_first_sample_on() -> None:
    """The first sample stores no CPU figure; the next one, an interval later, the CPU this process used meanwhile
    (bounded by 100% per core); samples in quick succession are measured against the last one far enough back."""
    wall = [1000.0]
    sampler = ProcessSampler(monotonic=lambda: wall[0])
    assert sampler.sample(0.0)[3] is None
    spin = sum(i * i for i in range(1_000_000))  # some CPU time for the next figure
    assert spin > 0
    wall[0] += 0.5
    assert sampler.sample(0.5)[3] is None, "half a second is too short to measure"
    wall[0] += 0.5
    figure = sampler.sample(1.0)[3]
    assert figure is not None and 0 < figure <= 100.0 * (os.cpu_count() or 1)
