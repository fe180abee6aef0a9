"""Hours of bookshop history, synthesized in seconds: what the notebooks (and their tests) analyse.

The live demo makes half a minute of data; percentiles over hours, alert back-tests and memory trends need
more, and the archive job only exports closed hours. ``backfill`` records the bookshop's traffic shapes over
``hours`` ending at ``end`` on a ``FakeClock``: the same routes and queries as ``bookshop.py``, log-normal
latencies, a traffic wave, the N+1 route, checkout errors, a leaking worker process, a deploy that restarts
the workers, and a twelve-minute incident (checkout failing, search slow) for the alert rules to find. Rows go
through the same conversion and store as recorded ones (``pipeline.tables`` batches, ``Store.append``; custom
metrics through the Monitor's instruments), then the jobs run as the owner would run them: rollups, alert
sweeps, and the archive of every closed hour into ``<db>.history``.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..buffer import Flush
from ..monitor import Monitor
from ..rollup import HOUR_SECONDS, floor_to
from ..spool import write_segment
from ..tables import SPECS, TableData, new_interners, to_chunk
from ..testing import FakeClock
from .bookshop import MB

HOST = "bookshop-1"
# route, method, weight, handler median ms, sigma, queries: (sql, median ms) the handler runs
Query = tuple[str, float]
ROUTES: list[tuple[str, str, float, float, float, list[Query]]] = [
    ("/", "GET", 20, 4, 0.5, [("SELECT id, title, price_cents FROM books WHERE stock > 0 ORDER BY stock DESC "
                               "LIMIT 10", 0.8)]),
    ("/books/<int:book_id>", "GET", 34, 6, 0.5,
     [("SELECT b.id, b.title, a.name, b.price_cents FROM books b JOIN authors a ON a.id = b.author_id "
       "WHERE b.id = 17", 0.3), ("SELECT stars, body FROM reviews WHERE book_id = 17 ORDER BY id DESC LIMIT 5", 0.4)]),
    ("/search", "GET", 12, 5, 0.5, [("SELECT id, title FROM books WHERE title LIKE '%duck%' LIMIT 20", 12.0)]),
    ("/authors/<int:author_id>", "GET", 8, 3, 0.5, [("SELECT id, title FROM books WHERE author_id = 3", 0.4)]),
    ("/cart/checkout", "POST", 7, 25, 0.4,
     [("SELECT id, price_cents FROM books WHERE id IN (1, 2, 3, 4)", 0.4),
      ("INSERT INTO orders (customer, created_at, total_cents) VALUES ('customer-9', 1767225600.0, 2599)", 1.5),
      ("INSERT INTO order_items VALUES (1501, 17, 2)", 1.0)]),
    ("/reports/sales", "GET", 2.5, 40, 0.5,
     [("SELECT b.title, sum(i.quantity) AS sold FROM order_items i JOIN books b ON b.id = i.book_id "
       "GROUP BY b.title ORDER BY sold DESC LIMIT 10", 260.0)]),
    ("/recommendations/<int:user_id>", "GET", 10, 8, 0.5,
     [("SELECT id, title FROM books WHERE author_id = 42 % 60 + 1 LIMIT 5", 0.5)]),
    ("<unmatched>", "GET", 1, 0.3, 0.3, []),
]
N_PLUS_ONE_SQL = "SELECT avg(stars) FROM reviews WHERE book_id = 17"
LEAK_BYTES = 512 * 1024  # per /recommendations request, as in bookshop.py


@dataclass
class _Worker:
    """A simulated worker process: its pid, request ids, leaked memory and garbage collections."""

    pid: int
    started: float
    next_request_id: int = 1
    leaked_bytes: int = 0
    gc_collections: int = 0


@dataclass
class BackfillSummary:
    """What ``backfill`` wrote."""

    start: float
    end: float
    rows: dict[str, int] = field(default_factory=dict)
    history_dir: str | None = None


def default_end(now: float) -> float:
    """The start of the hour before the current one: the whole backfill is past and closed, so its rollups,
    alert states and archive never run ahead of the real clock."""
    return floor_to(now, HOUR_SECONDS) - HOUR_SECONDS


def backfill(db_path: str | os.PathLike[str], *, hours: float = 3.0, end: float | None = None, seed: int = 7,
             requests_per_minute: float = 12.0, workers: int = 2,
             on_progress: Callable[[str], None] | None = None) -> BackfillSummary:
    """Record ``hours`` of bookshop history ending at ``end`` (default ``default_end(now)``) into ``db_path``."""
    if not hours > 0 or not requests_per_minute > 0 or workers < 1:
        raise ValueError("backfill needs hours > 0, requests_per_minute > 0 and workers >= 1")
    end = default_end(time.time()) if end is None else float(end)
    start = end - hours * HOUR_SECONDS
    rng = random.Random(seed)
    clock = FakeClock(start)
    summary = BackfillSummary(start, end)
    counts: dict[str, int] = defaultdict(int)
    minutes = round(hours * 60)
    deploy_minute, incident = int(minutes * 0.4), (int(minutes * 0.6), int(minutes * 0.6) + 12)
    next_pid = 41_001
    pool = []
    for _ in range(workers):
        pool.append(_Worker(next_pid, start))
        next_pid += 1
    weights = [r[2] for r in ROUTES]
    with Monitor(db_path=db_path, clock=clock, jobs=False, memory_interval_seconds=None,
                 flush_interval_seconds=3600) as monitor:
        assert monitor.store is not None
        add_history_rules(monitor)
        orders = monitor.counter("orders_placed", {"shop": "bookshop"})
        cart = monitor.histogram("cart_items", {"shop": "bookshop"})
        rows: dict[str, dict[int, list[tuple[Any, ...]]]] = defaultdict(lambda: defaultdict(list))
        for minute in range(minutes):
            t0 = start + minute * 60
            if minute == deploy_minute:  # a deploy: every worker restarts, its memory starts over
                pool = []
                for _ in range(workers):
                    pool.append(_Worker(next_pid, t0))
                    next_pid += 1
            in_incident = incident[0] <= minute < incident[1]
            wave = 1.0 + 0.5 * math.sin(2 * math.pi * minute / 120)
            n = _poisson(rng, requests_per_minute * wave)
            for ts in sorted(t0 + rng.uniform(0, 60) for _ in range(n)):
                worker = pool[rng.randrange(len(pool))]
                route, method, _, median, sigma, queries = rng.choices(ROUTES, weights)[0]
                rid = worker.next_request_id
                worker.next_request_id += 1
                statements = list(queries)
                if route == "/authors/<int:author_id>":
                    statements += [(N_PLUS_ONE_SQL, 0.3)] * rng.randint(3, 12)  # one per book: the N+1
                slow = 4.0 if in_incident and route == "/search" else 1.0
                elapsed = 0.0
                for sql, q_median in statements:
                    q_ms = rng.lognormvariate(0.0, 0.6) * q_median * slow
                    rows["queries"][worker.pid].append((ts + elapsed / 1000, sql, None, q_ms, True, rid, route,
                                                        "sqlite"))  # the bookshop's database, as live
                    elapsed += q_ms
                elapsed += rng.lognormvariate(0.0, sigma) * median * slow
                status = 200
                if route == "/cart/checkout":
                    if rng.random() < (0.35 if in_incident else 0.05):
                        status, elapsed = 502, elapsed + 2000  # the payment provider timed out
                    else:
                        status = 201
                        clock.advance(max(0.0, ts - clock.now()))
                        orders.inc()
                        cart.observe(rng.randint(1, 4))
                elif route == "<unmatched>":
                    status = 404
                elif route == "/recommendations/<int:user_id>":
                    worker.leaked_bytes += LEAK_BYTES
                # Stamped when it ends, as the middleware records it.
                rows["requests"][worker.pid].append((ts + elapsed / 1000, route, method, status, elapsed, rid,
                                                     len(statements)))
            for worker in pool:  # a process sample every 30 s from each worker
                for half in (0, 30):
                    worker.gc_collections += rng.randint(5, 40)
                    rss = 96 * MB + worker.leaked_bytes + rng.randint(0, 4 * MB)
                    rows["process_samples"][worker.pid].append(
                        (t0 + half, rss, rss + 350 * MB, rng.uniform(3, 35) * wave, 6, 12 + rng.randint(0, 3),
                         worker.gc_collections, None))
            _append(monitor, rows, counts)
            clock.advance(max(0.0, t0 + 60 - clock.now()))
            if minute % 10 == 9 or minute == minutes - 1:
                monitor.run_jobs_now()  # rollups and the rest every ten minutes
                if on_progress is not None:
                    on_progress(f"  backfilled {minute + 1}/{minutes} minutes")
            else:
                assert monitor.alerts is not None
                monitor.alerts.sweep(clock.now())  # the alert sweep every minute
        # Past the archive's grace: every hour of the backfill is closed, and exported.
        clock.advance(max(0.0, end + monitor.archive_settings.grace_seconds + 1 - clock.now()))
        result = monitor.run_jobs_now()
        archive = result.get("archive")
        summary.history_dir = getattr(archive, "history_dir", None)
    summary.rows = dict(counts)
    return summary


def add_history_rules(monitor: Monitor) -> None:
    """Rules for the backfill's pace (a dozen requests a minute): five-minute windows, two minutes pending."""
    monitor.add_threshold("error_rate", "gt", 0.2, "critical", "a fifth of the route's requests fail",
                          aggregation="avg", window_seconds=300, for_seconds=120, by=("route",),
                          name="route_errors_over_20pct")
    monitor.add_threshold("request_duration", "gt", 100, "warning", "p95 latency over 100 ms for 5 minutes",
                          aggregation="p95", window_seconds=300, for_seconds=120, by=("route",),
                          where={"route": "/search"}, name="search_p95_over_100ms")


def _append(monitor: Monitor, rows: dict[str, dict[int, list[tuple[Any, ...]]]], counts: dict[str, int]) -> None:
    assert monitor.store is not None
    files: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory(prefix="duckpulse-backfill-") as tmp:
        # Each worker's rows as the segment its own flush would have written, loaded in one transaction.
        for table, by_pid in rows.items():
            spec = SPECS[table]
            for pid, chunk in by_pid.items():
                if not chunk:
                    continue
                interners = new_interners(spec)
                columns = to_chunk(spec, [value for row in chunk for value in row], interners)
                data = TableData(spec, columns.rows, columns.arrays, {k: i.values for k, i in interners.items()})
                path = Path(tmp) / f"{table}-{pid}.parquet"
                with open(path, "wb") as f:
                    write_segment(f, Flush(pid, HOST, tables={table: data}), table)
                files.append((table, path))
                counts[table] += columns.rows
        monitor.store.load_files(files)
    rows.clear()


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1

