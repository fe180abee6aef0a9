"""Flush throughput into a DuckDB file, end to end from the buffer, beside executemany.

Budget (DESIGN.md, "Budgets"): >= 2,000,000 metrics/s. Two end-to-end figures, each on a fresh DuckDB file:

- ``Monitor.flush()`` after recording N metrics: what the application pays at a flush. Most rows were already
  compacted into columns by the flusher thread (and inline, each time a raw list filled up) while they
  were recorded, so this is the last compaction + take + the segment files + one DuckDB transaction;
- raw values -> committed rows, all N compacted inside the timed span: ``Buffer.compact()`` then
  ``Buffer.take()`` then the segment files written (``pipeline.spool.write_segment``, as every flush does) and
  loaded by ``Store.load_files()`` in one transaction, each also timed on its own.

The reference is DuckDB's ``executemany`` on a small N (it is thousands of times slower).

The verdict is on wall time. The machine may be shared, so the process's CPU time (every thread, DuckDB's
too) is printed beside it: wall much above CPU means the run waited for cores other processes held.

    .venv/bin/python benchmarks/bench_flush.py [--n 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    Budget,
    finish,
    header,
    parse_args,
    quiet_monitor,
    stopwatch,
    stopwatch_cpu,
    table,
    temp_dir,
)

from pipeline.buffer import Buffer, Flush
from pipeline.clock import SYSTEM_CLOCK
from pipeline.spool import write_segment
from pipeline.store import Store

BUDGET = Budget(2_000_000.0, at_most=False, label=">= 2,000,000/s")
ROUTES = ("/users/<id>", "/orders/<id>", "/health", "/search")
METHODS = ("GET", "POST")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1_000_000, help="metrics per flush (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh runs per figure; the best is shown")
    parser.add_argument("--executemany-n", type=int, default=5_000, help="rows for the executemany reference")


def _request_rows(n: int) -> list[tuple[float, str, str, int, float, None, int]]:
    now = time.time()
    return [(now + i * 1e-6, ROUTES[i & 3], METHODS[i & 1], 200, float(i % 997) * 0.5, None, 0)
            for i in range(n)]


def _point_rows(n: int) -> list[tuple[float, int, float]]:
    now = time.time()
    return [(now + i * 1e-6, 1234567, float(i % 997) * 0.5) for i in range(n)]


def monitor_flush(kind: str, n: int, tmp: Path) -> tuple[float, float]:
    """Record n metrics through the public API, then time ``flush()``; returns (wall, CPU) seconds."""
    mon = quiet_monitor(tmp, max_buffered=2 * n)
    try:
        if kind == "requests":
            track = mon.track_request
            for i in range(n):
                track(ROUTES[i & 3], METHODS[i & 1], 200, float(i % 997) * 0.5)
        else:
            observe = mon.histogram("latency_ms", {"route": "/x"}).observe
            for i in range(n):
                observe(float(i % 997) * 0.5)
        before = mon.stats()["flushed"]
        seconds = stopwatch_cpu(mon.flush)
        flushed = mon.stats()["flushed"] - before
        assert mon.store is not None
        stored = mon.store.scalar(f"SELECT count(*) FROM {kind}")  # a fixed table name
        if flushed != n or stored != n:
            raise SystemExit(f"{kind}: expected {n:,} rows flushed and stored, got {flushed:,} / {stored:,}")
        return seconds
    finally:
        mon.close()


def stages(kind: str, n: int, tmp: Path) -> dict[str, tuple[float, float]]:
    """Raw values -> columns -> segment file -> DuckDB, each stage timed; the whole of n is compacted in the
    timed span."""
    buffer = Buffer(2 * n, os.getpid(), "bench-host")
    rows = _request_rows(n) if kind == "requests" else _point_rows(n)
    buffer.raw[kind].extend(value for row in rows for value in row)  # the hot path lays rows flat
    out = {"compact": stopwatch_cpu(buffer.compact)}
    taken: list[Flush] = []
    out["take"] = stopwatch_cpu(lambda: taken.append(buffer.take()))
    path = tmp / f"{kind}.parquet"

    def write() -> None:
        with open(path, "wb") as f:
            write_segment(f, taken[0], kind)

    out["write"] = stopwatch_cpu(write)
    store = Store(tmp / "stages.duckdb", SYSTEM_CLOCK)
    try:
        out["insert"] = stopwatch_cpu(lambda: store.load_files([(kind, path)]))
        if store.scalar(f"SELECT count(*) FROM {kind}") != n:  # a fixed table name
            raise SystemExit(f"{kind}: the store does not hold the {n:,} rows appended")
    finally:
        store.close()
    return out


def executemany_rate(n: int, tmp: Path) -> float:
    """Rows/s of executemany into the same requests table (the way DESIGN.md rules out)."""
    store = Store(tmp / "executemany.duckdb", SYSTEM_CLOCK)
    try:
        ts = datetime.now(UTC).replace(tzinfo=None)
        pid = os.getpid()
        rows = [(ts, ROUTES[i & 3], METHODS[i & 1], 200, float(i % 997) * 0.5, None, 0, pid, "bench-host")
                for i in range(n)]
        sql = ("INSERT INTO requests (ts, route, method, status, duration_ms, request_id, query_count, pid, "
               "host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        with store.lock:
            seconds = stopwatch(lambda: store.con.executemany(sql, rows))
        return n / seconds
    finally:
        store.close()


def _fresh(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir()
    return path


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], _options)
    header(f"bench_flush: {args.n:,} metrics from the buffer into a DuckDB file (best of {args.repeat})")
    n = args.n
    rows, verdicts, notes = [], [], []
    with temp_dir("duckpulse-bench-flush-") as tmp:
        for kind in ("requests", "points"):
            flush = min(monitor_flush(kind, n, _fresh(tmp, f"flush-{kind}-{r}")) for r in range(args.repeat))
            runs = [stages(kind, n, _fresh(tmp, f"stages-{kind}-{r}")) for r in range(args.repeat)]
            best = min(runs, key=lambda s: sum(wall for wall, _ in s.values()))
            total = (sum(wall for wall, _ in best.values()), sum(cpu for _, cpu in best.values()))
            for label, (seconds, cpu), judged in (
                (f"{kind}: Monitor.flush() after recording", flush, True),
                (f"{kind}: compact + take + insert (all N)", total, True),
                (f"{kind}:   compact (values -> columns)", best["compact"], False),
                (f"{kind}:   take (chunks -> one table)", best["take"], False),
                (f"{kind}:   write (the segment file)", best["write"], False),
                (f"{kind}:   insert (read_parquet, one transaction)", best["insert"], False),
            ):
                rate = n / seconds
                verdict = BUDGET.verdict(rate) if judged else ""
                if judged:
                    verdicts.append(verdict)
                rows.append([label, f"{seconds * 1e3:,.1f}", f"{rate:,.0f}", f"{seconds / n * 1e9:,.0f}",
                             f"{cpu * 1e3:,.1f}", f"{n / cpu:,.0f}" if cpu > 0 else "",
                             BUDGET.label if judged else "", verdict])
        em_n = args.executemany_n
        em = max(executemany_rate(em_n, _fresh(tmp, f"executemany-{r}")) for r in range(args.repeat))
        rows.append([f"(reference) executemany, {em_n:,} requests", f"{em_n / em * 1e3:,.1f}", f"{em:,.0f}",
                     f"{1e9 / em:,.0f}", "", "", "", ""])
        flush_rate = float(rows[0][2].replace(",", ""))
        notes.append(f"Monitor.flush() of requests is {flush_rate / em:,.0f}x the executemany rate")
    print()
    print(table(["what", "wall ms", "rows/s", "ns/row", "CPU ms", "rows/CPU-s", "budget", "verdict"], rows))
    print("\n" + "\n".join(notes))
    return finish(verdicts, args.check)


if __name__ == "__main__":
    sys.exit(main())
