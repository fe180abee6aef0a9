"""Memory per buffered metric at 1M buffered: requests and histogram points, beside a plain list of tuples.

Budget (DESIGN.md, "Budgets"): <= 40 bytes per buffered metric. Each scenario runs in a fresh child process
(so one scenario's freed memory cannot hide another's): record 1M metrics into a Monitor that never flushes,
let ``Monitor.stats()`` compact what is still raw, then count what the buffer holds:

- Python: the tracemalloc delta over the same span, in a second child run with tracemalloc on (the columns are
  ``array.array`` buffers, which tracemalloc sees, plus any Python object still held and the raw lists);
- RSS delta as a cross-check (it also counts allocator slack and memory freed but not returned to the OS).

    .venv/bin/python benchmarks/bench_memory.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _common import Budget, finish, header, parse_args, quiet_monitor, rss_bytes, table, temp_dir

from pipeline.tables import SPECS

BUDGET = Budget(40.0, at_most=True, label="<= 40 B")
ROUTES = ("/users/<id>", "/orders/<id>", "/health", "/search")
METHODS = ("GET", "POST")
SCENARIOS = ("requests", "points", "tuples")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1_000_000, help="metrics buffered (default 1,000,000)")
    parser.add_argument("--worker", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)


def _settle() -> None:
    gc.collect()


def _record(scenario: str, n: int, tmp: Path) -> dict[str, Any]:
    """Record n metrics and measure; runs in a child process."""
    if scenario == "tuples":  # the reference: what a buffer of raw tuples would hold
        _settle()
        rss0 = rss_bytes()
        traced0 = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
        now = time.time
        held = [(now(), ROUTES[i & 3], METHODS[i & 1], 200, float(i % 997) * 0.5, None, 0) for i in range(n)]
        _settle()
        traced = tracemalloc.get_traced_memory()[0] - traced0 if tracemalloc.is_tracing() else 0
        out = {"python": traced, "rss": rss_bytes() - rss0,
               "pending": len(held), "flushed": 0, "columns": {}}
        del held
        return out

    mon = quiet_monitor(tmp, max_buffered=2 * n)
    try:
        h = mon.histogram("latency_ms", {"route": "/x"})
        track, observe = mon.track_request, h.observe
        # Warm up: the first compaction builds dictionaries and caches, which must not count as buffer.
        for i in range(1000):
            track(ROUTES[i & 3], METHODS[i & 1], 200, 1.0)
            observe(1.0)
        mon.stats()
        mon._buffer.take()  # discard the warm-up rows without writing them
        flushed0 = mon.stats()["flushed"]
        _settle()
        rss0 = rss_bytes()
        traced0 = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
        if scenario == "requests":
            for i in range(n):
                track(ROUTES[i & 3], METHODS[i & 1], 200, float(i % 997) * 0.5)
        else:
            for i in range(n):
                observe(float(i % 997) * 0.5)
        stats = mon.stats()  # compacts whatever is still raw; nothing is flushed (the interval never comes)
        _settle()
        traced = tracemalloc.get_traced_memory()[0] - traced0 if tracemalloc.is_tracing() else 0
        out = {"python": traced, "rss": rss_bytes() - rss0,
               "pending": stats["pending"], "flushed": stats["flushed"] - flushed0,
               "dropped": stats["dropped"],
               "buffered_bytes": stats["buffered_bytes"],
               "raw_left": sum(len(r) for r in mon._buffer.raw.values())}
        if not tracemalloc.is_tracing():
            # Where the bytes go, column by column, in the chunks the buffer holds (a private attribute: this
            # is a benchmark looking inside, not an API).
            chunks = mon._buffer._chunks[scenario]
            spec = SPECS[scenario]
            columns: dict[str, float] = {}
            for chunk in chunks:
                seen: set[int] = set()
                for column, values in zip(spec.columns, chunk.arrays, strict=True):
                    if id(values) not in seen:  # a derived column shares its source's ids
                        seen.add(id(values))
                        columns[column.name] = columns.get(column.name, 0.0) + values.itemsize * len(values) / n
            out["columns"], out["batches"] = columns, len(chunks)
        return out
    finally:
        mon._buffer.take()  # drop what is buffered: close() must not spend time writing it
        mon.close()


def _child(scenario: str, n: int, trace: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", scenario, "--n", str(n)]
    if trace:
        cmd.append("--trace")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{scenario} child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], _options)
    if args.worker:
        if args.trace:
            tracemalloc.start()
        with temp_dir("duckpulse-bench-memory-") as tmp:
            print(json.dumps(_record(args.worker, args.n, tmp)))
        return 0

    header(f"bench_memory: bytes per buffered metric at {args.n:,} buffered")
    n = args.n
    rows, verdicts, breakdown = [], [], []
    for scenario in SCENARIOS:
        plain = _child(scenario, n, trace=False)
        traced = _child(scenario, n, trace=True)
        if scenario != "tuples" and (plain["pending"] != n or plain["flushed"] or plain.get("raw_left")):
            raise SystemExit(f"{scenario}: expected {n:,} compacted rows pending and none flushed, "
                             f"got {plain}")
        per = traced["python"] / n
        ours = scenario != "tuples"
        verdict = BUDGET.verdict(per) if ours else ""
        if ours:
            verdicts.append(verdict)
        label = {"requests": "duckpulse requests (track_request)", "points": "duckpulse points (histogram)",
                 "tuples": f"(reference) list of {n:,} request tuples"}[scenario]
        rows.append([label, f"{per:.1f}",
                     f"{plain['rss'] / n:.1f}", BUDGET.label if ours else "", verdict])
        if plain.get("columns"):
            cols = "  ".join(f"{k} {v:.1f}" for k, v in plain["columns"].items())
            breakdown.append(f"  {scenario}: {cols}  (= {sum(plain['columns'].values()):.1f} B/row in "
                             f"{plain['batches']} chunks)")
    print()
    print(table(["buffer", "B/metric (tracemalloc)", "rss B (check)", "budget", "verdict"],
                rows))
    print("\nBytes per row of each buffered column (array.array items; strings are ids into per-flush "
          "dictionaries):")
    print("\n".join(breakdown))
    print("\nB/metric = tracemalloc delta (a separate child with tracemalloc on); every scenario in a fresh "
          "process")
    return finish(verdicts, args.check)


if __name__ == "__main__":
    sys.exit(main())
