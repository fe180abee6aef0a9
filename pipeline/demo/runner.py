"""Running the demo: the owner, the bookshop under traffic (here or in producer processes), alerts, progress.

One process (``workers=0``): this process owns the DuckDB file, runs the jobs, serves the dashboard and the
bookshop's traffic. Multi-process (``workers=N``): N producer processes (started with ``spawn``, each a
``Monitor(spool_dir=...)`` running its own bookshop app and traffic against the shared SQLite database) write
Parquet segments into the owner's spool; this process is the owner, ingesting them and serving the dashboard,
as ``duckpulse serve`` does beside gunicorn workers.

pipeline never imports webapp, so the dashboard comes in as a ``DashboardStarter`` (``(monitor, host, port)
-> server`` with ``url`` and ``stop()``), as for ``duckpulse serve``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import random
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import psutil

from .. import sqlfiles
from ..alerts.notify import Notification
from ..clock import utc_datetime
from ..errors import ConfigError
from ..monitor import Monitor
from .bookshop import MB, Bookshop, create_app, seed
from .traffic import Traffic

Out = Callable[[str], None]
DashboardStarter = Callable[[Monitor, str, int], Any]
COUNTS_PER_WORKER = 4  # requests sent, 5xx responses, resident memory once warmed up, 1 once serving
WORKERS_START_SECONDS = 120.0  # spawned workers import Flask, DuckDB and pyarrow: slow on a busy machine
WARM_UP_SECONDS = 5.0
# The memory rule fires this far above the warmed-up resident memory (the leak adds ~1-2 MB/s, up to 96 MB).
LEAK_ALERT_MB = 40
TABLE_HEADER = ["route", "method", "count", "avg_ms", "p50_ms", "p95_ms", "p99_ms", "errors"]


@dataclass(frozen=True)
class DemoSettings:
    """What ``duckpulse demo`` was asked for."""

    # The DuckDB file the owner writes (kept after the demo, for `duckpulse sql` and the notebooks).
    db_path: Path
    # How long traffic runs, in seconds; None runs until Ctrl-C (or SIGTERM).
    duration_seconds: float | None = 20.0
    # 0: everything in this process; N: N producer processes and this process as their owner.
    workers: int = 0
    # Where the dashboard is served (port 0 picks a free one).
    host: str = "127.0.0.1"
    port: int = 8050
    # Traffic per process: threads sending requests, and the mean arrival rate over all of them.
    threads: int = 4
    rate_per_second: float = 60.0
    # Seeds the bookshop's data and the traffic, so two runs send the same sequence of requests.
    seed: int = 7
    # How often a progress line is printed, in seconds.
    progress_interval_seconds: float = 2.0
    # Hours of synthetic past history recorded (and archived) before the live traffic: what the notebooks read.
    backfill_hours: float = 0.0


def _print(line: str) -> None:
    print(line, flush=True)


def format_table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain fixed-width text table."""
    cells = [header, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The demo prints alerts itself (its on_alert callback); the owner's logging notifier would print them
    again on stderr through Python's last-resort handler, and APScheduler warns each time a job is skipped
    because its previous run is still going (harmless: jobs coalesce), which a loaded laptop sees often.
    Muted for the demo's duration only."""
    muted = [logging.getLogger("duckpulse.alerts"), logging.getLogger("apscheduler.scheduler"),
             logging.getLogger("apscheduler.executors")]
    saved = [(log.propagate, log.level) for log in muted]
    mute = logging.NullHandler()
    for log in muted:
        log.propagate = False
        log.addHandler(mute)  # without any handler, logging would fall back to its last-resort one
    try:
        yield
    finally:
        for log, (propagate, level) in zip(muted, saved, strict=True):
            log.removeHandler(mute)
            log.propagate = propagate
            log.setLevel(level)


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_demo_rules(monitor: Monitor) -> None:
    """Rules with windows short enough to fire within a 30-second demo (the plan's defaults stay on too)."""
    monitor.add_threshold("request_duration", "gt", 500, "warning", "p95 latency over 500 ms for 20 s",
                          aggregation="p95", window_seconds=20, for_seconds=4, by=("route",),
                          name="route_p95_over_500ms")
    monitor.add_threshold("error_rate", "gt", 0.02, "warning", "more than 2% of requests failed",
                          aggregation="avg", window_seconds=30, for_seconds=4, by=("route",),
                          name="route_error_rate_over_2pct")


def add_memory_rule(monitor: Monitor, rss_baseline_bytes: int) -> None:
    """A memory rule relative to the bookshop processes' resident memory once warmed up: the leak crosses it."""
    limit_mb = rss_baseline_bytes // MB + LEAK_ALERT_MB
    monitor.add_threshold("memory_rss", "gt", limit_mb * MB, "warning",
                          f"resident memory over {limit_mb} MB: a leak?", by=("pid",), name="memory_growth")


def _worker(index: int, spool_dir: str, sqlite_path: str, settings: DemoSettings, stop: MpEvent,
            counts: SynchronizedArray[int]) -> None:
    """A producer process: its own Monitor(spool_dir=...), bookshop app and traffic, until ``stop``.

    ``counts[4 * index:4 * index + 4]`` is where it reports requests sent, 5xx responses, its resident memory
    once warmed up, and 1 once its traffic runs.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the owner says when to stop
    slot = COUNTS_PER_WORKER * index
    with Monitor(spool_dir=spool_dir, flush_interval_seconds=0.5, memory_interval_seconds=1.0) as monitor:
        shop = Bookshop(Path(sqlite_path), monitor, settings.seed + index)
        local_stop = threading.Event()
        traffic = Traffic(create_app(shop), local_stop, threads=settings.threads,
                          rate_per_second=settings.rate_per_second, seed=settings.seed * 1000 + index).start()
        warm_at = time.monotonic() + WARM_UP_SECONDS
        counts[slot + 3] = 1
        try:
            while not stop.wait(0.25):
                counts[slot], counts[slot + 1] = traffic.counts.snapshot()
                if not counts[slot + 2] and time.monotonic() >= warm_at:
                    counts[slot + 2] = psutil.Process().memory_info().rss
        finally:
            local_stop.set()
            traffic.join()
            shop.close()
            counts[slot], counts[slot + 1] = traffic.counts.snapshot()
    # Leaving the block closed the monitor: its last segment is in the spool for the owner to ingest.


class _Load:
    """The traffic of the demo, in this process or in producer processes, behind one interface."""

    def __init__(self, settings: DemoSettings, owner: Monitor, sqlite_path: Path) -> None:
        self.settings = settings
        self.workers = settings.workers
        self._stop = threading.Event()
        self._shop: Bookshop | None = None
        self._traffic: Traffic | None = None
        self._processes: list[multiprocessing.process.BaseProcess] = []
        if self.workers == 0:
            self._shop = Bookshop(sqlite_path, owner, settings.seed)
            self._traffic = Traffic(create_app(self._shop), self._stop, threads=settings.threads,
                                    rate_per_second=settings.rate_per_second, seed=settings.seed)
        else:
            ctx = multiprocessing.get_context("spawn")  # never fork a process holding DuckDB and threads
            self._mp_stop = ctx.Event()
            self._counts = ctx.Array("q", COUNTS_PER_WORKER * self.workers)
            assert owner.ingest_dir is not None
            self._processes = [ctx.Process(target=_worker, name=f"duckpulse-demo-worker-{i}", daemon=True,
                                           args=(i, str(owner.ingest_dir), str(sqlite_path), settings,
                                                 self._mp_stop, self._counts))
                               for i in range(self.workers)]

    def start(self, out: Out) -> None:
        """Start the traffic; with producer processes, return once each one serves (the duration starts then)."""
        if self._traffic is not None:
            self._traffic.start()
            return
        for proc in self._processes:
            proc.start()
        out(f"duckpulse demo: starting {self.workers} producer processes")
        deadline = time.monotonic() + WORKERS_START_SECONDS
        while not all(self._counts[3::COUNTS_PER_WORKER]):
            dead = [p.name for p in self._processes if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                raise ConfigError(f"the demo's producer processes did not start ({', '.join(dead) or 'timed out'}); "
                                  "their error is printed above. Try --workers 0 to run everything in one process")
            time.sleep(0.05)  # other processes starting up: nothing to wait on but their flag

    def counts(self) -> tuple[int, int]:
        """Requests sent and 5xx responses so far, over every process."""
        if self._traffic is not None:
            return self._traffic.counts.snapshot()
        values = self._counts[:]
        return sum(values[0::COUNTS_PER_WORKER]), sum(values[1::COUNTS_PER_WORKER])

    def warm_rss_bytes(self) -> int | None:
        """The resident memory of the bookshop's processes once warmed up (the largest), None until known."""
        if self._traffic is not None:
            return psutil.Process().memory_info().rss
        values = self._counts[2::COUNTS_PER_WORKER]
        return max(values) if all(values) else None

    def alive(self) -> int:
        return sum(p.is_alive() for p in self._processes) if self._processes else 1

    def stop(self) -> None:
        self._stop.set()
        if self._traffic is not None:
            self._traffic.join()
        if self._shop is not None:
            self._shop.close()
        if self._processes:
            self._mp_stop.set()
            for proc in self._processes:
                proc.join(timeout=60)
                if proc.is_alive():  # pragma: no cover - a worker stuck past a minute: do not hang the demo
                    proc.kill()
                    proc.join()


def _rss_mb() -> float:
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / MB


def run(settings: DemoSettings, dashboard: DashboardStarter | None = None,
        out: Out = _print) -> list[tuple[Any, ...]]:
    """Run the demo until its duration is reached (or Ctrl-C), then print and return the per-route table."""
    if settings.duration_seconds is not None and not settings.duration_seconds >= 0:
        raise ValueError("duration_seconds must be >= 0")
    started = time.time()
    alerts: list[Notification] = []

    def on_alert(n: Notification) -> None:
        alerts.append(n)
        out(f"  ALERT {n.summary()}")

    with tempfile.TemporaryDirectory(prefix="duckpulse-bookshop-") as tmp, _quiet_logs():
        sqlite_path = seed(Path(tmp) / "bookshop.sqlite3", random.Random(settings.seed))
        if settings.backfill_hours > 0:
            _backfill(settings, out)
        owner = Monitor(db_path=settings.db_path, role="owner", flush_interval_seconds=0.5,
                        memory_interval_seconds=1.0, alert_interval_seconds=2.0)
        server = None
        try:
            add_demo_rules(owner)
            owner.on_alert(on_alert)
            if dashboard is not None:
                server = dashboard(owner, settings.host, settings.port)
                out(f"duckpulse demo: dashboard at {server.url} (open it while the demo runs)")
            else:
                out("duckpulse demo: no dashboard (the webapp package is not installed)")
            load = _Load(settings, owner, sqlite_path)
            mode = (f"{settings.workers} producer processes spooling to {owner.ingest_dir}, this process owning "
                    f"{settings.db_path}" if settings.workers else f"one process owning {settings.db_path}")
            until = f"for {settings.duration_seconds:g} s" if settings.duration_seconds is not None else \
                "until Ctrl-C"
            out(f"duckpulse demo: bookshop traffic {until}; {mode}")
            try:
                load.start(out)
                _progress(settings, owner, load, alerts, out)
            finally:
                load.stop()  # producers flush their last segments into the spool as they exit
            owner.run_jobs_now()  # the producers' last segments, rollups, a last alert sweep
            assert owner.store is not None
            rows = owner.store.fetchall(sqlfiles.query("queries.sql", "route-percentiles"),
                                        {"since": utc_datetime(started)})
        finally:
            if server is not None:
                server.stop()
            owner.close()
    out(format_table(TABLE_HEADER, rows))
    sent = sum(r[2] for r in rows)
    query = "SELECT route, count(*) AS requests FROM requests GROUP BY ALL ORDER BY requests DESC"
    out(f"duckpulse demo: {sent} requests recorded, {len(alerts)} alert notifications; the data stays in "
        f"{settings.db_path}: try `{duckpulse_command()} sql --db {shlex.quote(str(settings.db_path))} "
        f"{shlex.quote(query)}` or the notebooks in notebooks/")
    return rows


def duckpulse_command() -> str:
    """How to run ``duckpulse`` from the current directory, as typed: the bare name when PATH finds this
    installation's script, else the script's path beside this interpreter (``.venv/bin/duckpulse`` after
    ``make demo``, whose virtualenv is not on PATH), else ``python -m pipeline.cli``."""
    script = Path(os.path.abspath(sys.executable)).parent / "duckpulse"
    found = shutil.which("duckpulse")
    if found is not None and Path(found).resolve() == script.resolve():
        return "duckpulse"
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m pipeline.cli"
    relative = os.path.relpath(script, Path.cwd())
    return shlex.quote(relative if not relative.startswith("..") else str(script))


def _backfill(settings: DemoSettings, out: Out) -> None:
    from datetime import UTC, datetime

    from .synthetic import backfill, default_end

    if settings.db_path.exists():
        raise ConfigError(f"--backfill-hours writes hours of past history, which must not interleave with the data "
                          f"already in {settings.db_path}: pass a new file with --db, or remove that one")
    end = default_end(time.time())
    out(f"duckpulse demo: backfilling {settings.backfill_hours:g} h of synthetic history up to "
        f"{datetime.fromtimestamp(end, UTC):%Y-%m-%d %H:%M} UTC (the notebooks' data)")
    summary = backfill(settings.db_path, hours=settings.backfill_hours, end=end, seed=settings.seed)
    out(f"duckpulse demo: {summary.rows.get('requests', 0):,} requests of history archived in {summary.history_dir}")


def _progress(settings: DemoSettings, owner: Monitor, load: _Load, alerts: list[Notification], out: Out) -> None:
    """Print a progress line every interval until the duration is reached, Ctrl-C or SIGTERM."""
    stop = threading.Event()
    start = time.monotonic()
    deadline = None if settings.duration_seconds is None else start + settings.duration_seconds
    memory_rule = False
    with _stop_on_sigterm(stop):
        try:
            while not stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                wait = settings.progress_interval_seconds
                if deadline is not None:
                    wait = min(wait, deadline - now)
                if stop.wait(wait):
                    break
                sent, errors = load.counts()
                elapsed = time.monotonic() - start
                if not memory_rule and elapsed >= WARM_UP_SECONDS:
                    warm = load.warm_rss_bytes()
                    if warm is not None:
                        add_memory_rule(owner, warm)
                        memory_rule = True
                stats = owner.stats()
                stored = stats["flushed"] + stats.get("ingest", {}).get("rows", 0)
                workers = f"  workers {load.alive()}/{settings.workers}" if settings.workers else ""
                out(f"  {elapsed:5.0f}s  requests {sent:,} ({sent / max(elapsed, 1e-9):.0f}/s)  5xx {errors}  "
                    f"rows in DuckDB {stored:,}  alerts {len(alerts)}  rss {_rss_mb():.0f} MB{workers}")
        except KeyboardInterrupt:
            out("duckpulse demo: interrupted; stopping the traffic")
