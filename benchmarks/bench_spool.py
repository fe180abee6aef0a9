"""The spool: a producer's cost to write a segment, and the owner's ingest rate.

DESIGN.md ("Processes") expects ~1 ms per 1,000-row segment on the producer side (Parquet written to
``spool/tmp/``, fsynced, renamed into ``spool/ready/``, directory fsynced) and sets no number for the ingest;
its rate is printed beside the 2M rows/s flush budget for scale. Each segment is one ``Monitor.flush()`` of a
producer (``Monitor(spool_dir=...)``), so the write cost includes the compaction of its rows.

    .venv/bin/python benchmarks/bench_spool.py [--segments 200] [--rows 5000] [--writes 200]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

from _common import Budget, finish, header, parse_args, quiet_monitor, stopwatch, table, temp_dir

from pipeline import Monitor
from pipeline.buffer import Buffer, Flush
from pipeline.spool import backlog, write_segment

WRITE_BUDGET = Budget(1.0, at_most=True, label="~1 ms (DESIGN)")
INGEST_SCALE = 2_000_000  # the flush budget, for scale: the ingest has no budget of its own
ROUTES = ("/users/<id>", "/orders/<id>", "/health", "/search")
METHODS = ("GET", "POST")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writes", type=int, default=200, help="segments timed per size (default 200)")
    parser.add_argument("--segments", type=int, default=200, help="segments to ingest (default 200)")
    parser.add_argument("--rows", type=int, default=5_000, help="rows per ingested segment (default 5,000)")
    parser.add_argument("--repeat", type=int, default=3, help="ingest runs; the best is shown (default 3)")


def _record(mon: Monitor, rows: int, start: int = 0) -> None:
    track = mon.track_request
    for i in range(start, start + rows):
        track(ROUTES[i & 3], METHODS[i & 1], 200, float(i % 997) * 0.5)


def write_costs(tmp: Path, rows: int, writes: int) -> list[float]:
    """Seconds per ``flush()`` of a producer holding ``rows`` requests (one segment per flush)."""
    mon = quiet_monitor(tmp, spool=True)
    try:
        _record(mon, rows)
        mon.flush()  # warm-up: imports, first Parquet writer
        costs = []
        for _ in range(writes):
            _record(mon, rows)
            costs.append(stopwatch(mon.flush))
        return costs
    finally:
        mon.close()


def _fill(buffer: Buffer, rows: int) -> None:
    """Requests as the hot path leaves them: in the C recorder where it was built (pipeline/_record.c), else in
    the raw list."""
    recorder = buffer.attach_recorder(_not_taken, 0.01)
    now = time.time()
    for i in range(rows):
        row = (ROUTES[i & 3], METHODS[i & 1], 200, float(i % 997) * 0.5)
        if recorder is not None:
            recorder.track_request(*row)
        else:
            buffer.append("requests", (now, *row, None, 0))


def _not_taken(*args: object) -> None:
    raise SystemExit(f"the C recorder refused a valid request: {args}")


def write_stages(tmp: Path, rows: int, writes: int) -> dict[str, list[float]]:
    """The steps of one segment write (as ``SpoolWriter.write`` does them), each timed on its own."""
    out: dict[str, list[float]] = {k: [] for k in ("compact + take", "Parquet encode (pipeline.parquet)", "write file",
                                                   "fsync file", "rename + fsync dir")}
    for i in range(writes):
        buffer = Buffer(10 * rows, os.getpid(), "bench-host")
        _fill(buffer, rows)
        taken: list[Flush] = []
        out["compact + take"].append(stopwatch(lambda b=buffer, t=taken: t.append(b.take())))
        sink = io.BytesIO()
        out["Parquet encode (pipeline.parquet)"].append(
            stopwatch(lambda s=sink, t=taken: write_segment(s, t[0], "requests")))
        data = sink.getvalue()
        path = tmp / f"segment-{i}.parquet"
        with open(path, "wb") as f:
            out["write file"].append(stopwatch(lambda f=f, d=data: (f.write(d), f.flush())))
            out["fsync file"].append(stopwatch(lambda f=f: os.fsync(f.fileno())))

        def publish(path: Path = path) -> None:
            os.rename(path, path.with_suffix(".ready"))
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        out["rename + fsync dir"].append(stopwatch(publish))
    return out


def ingest_rate(tmp: Path, segments: int, rows: int) -> tuple[float, int, int]:
    """(seconds, rows, segments) for one owner's ``ingest_now()`` calls over a spool of ready segments."""
    producer = quiet_monitor(tmp, spool=True)
    try:
        for s in range(segments):
            _record(producer, rows, s * rows)
            producer.flush()
    finally:
        producer.close()
    spool = tmp / "spool"
    ready = backlog(spool)
    owner = Monitor(db_path=tmp / "owner.duckdb", ingest_dir=spool, jobs=False, memory_interval_seconds=None,
                    flush_interval_seconds=1e6)
    try:
        loaded = 0

        def drain() -> None:
            nonlocal loaded
            while backlog(spool):
                loaded += owner.ingest_now()

        seconds = stopwatch(drain)
        assert owner.store is not None
        stored = owner.store.scalar("SELECT count(*) FROM requests")
        if loaded != segments * rows or stored != segments * rows:
            raise SystemExit(f"ingest: expected {segments * rows:,} rows, loaded {loaded:,}, "
                             f"stored {stored:,}")
        return seconds, loaded, ready
    finally:
        owner.close()


def _fresh(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir()
    return path


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], _options)
    header("bench_spool: producer segment writes and the owner's ingest")
    rows, verdicts = [], []
    with temp_dir("duckpulse-bench-spool-") as tmp:
        for size in (1_000, args.rows):
            costs = write_costs(_fresh(tmp, f"write-{size}"), size, args.writes)
            med = statistics.median(costs) * 1e3
            per_1000 = med * 1_000 / size
            judged = size == 1_000
            verdict = WRITE_BUDGET.verdict(per_1000) if judged else ""
            if judged:
                verdicts.append(verdict)
            rows.append([f"producer flush -> segment of {size:,} rows", f"{med:.2f}",
                         f"{min(costs) * 1e3:.2f}", f"{per_1000:.2f}", f"{size / med * 1e3:,.0f}",
                         WRITE_BUDGET.label if judged else "", verdict])
            if judged:
                for stage, times in write_stages(_fresh(tmp, "stages"), size, args.writes).items():
                    rows.append([f"  {stage}", f"{statistics.median(times) * 1e3:.2f}",
                                 f"{min(times) * 1e3:.2f}", "", "", "", ""])
        runs = [ingest_rate(_fresh(tmp, f"ingest-{r}"), args.segments, args.rows) for r in range(args.repeat)]
        seconds, loaded, ready = min(runs)
        rate = loaded / seconds
        rows.append([f"owner ingest_now(): {ready} segments x {args.rows:,} rows",
                     f"{seconds * 1e3:,.1f}", "",
                     f"{seconds * 1e3 / ready * 1_000 / args.rows:.2f}", f"{rate:,.0f}",
                     "none", f"{rate / INGEST_SCALE:.2f}x of 2M/s"])
    print()
    print(table(["what", "median ms", "best ms", "ms per 1,000 rows", "rows/s", "budget", "verdict"], rows))
    print(f"\nproducer: median of {args.writes} timed flushes per size; the indented rows time the steps "
          "of a 1,000-row segment one by one.")
    print(f"ingest: best of {args.repeat} runs, each on a fresh spool and DuckDB file; the ingest has no "
          "budget (2M/s for scale)")
    return finish(verdicts, args.check)


if __name__ == "__main__":
    sys.exit(main())
