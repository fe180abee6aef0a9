"""p95 per route over 30 days at 50M raw requests: merged rollup bins against the exact scan; budget 150 ms.

Run: ``.venv/bin/python benchmarks/bench_percentiles.py [--rows 50000000] [--days 30] [--routes 20]``

The requests are generated with DuckDB SQL into a temporary file, evenly over ``--days`` days ending at the
query's ``now`` (mid-hour, so the plan has ragged edges: hours, minutes and a raw tail): 20 routes with their
own median, lognormal durations (sigma 0.8, Box-Muller on hashed bits), GET or POST, 1 % 5xx and 4 % 4xx.
The rollup job then builds its minute and hour tiers in one first run. Printed: the build times, the sizes,
``pipeline.percentiles(..., by="route")`` over the whole range from the rollups (``method="sketch"``) and from
raw rows (``method="exact"``), interleaved, best and median, and the largest relative error of the sketch
against the exact nearest-rank p95, per route.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, when run from anywhere

from _common import Budget, finish, header, interleaved, median, parse_args, table, temp_dir

from pipeline import percentiles, rollup
from pipeline.sketch import RELATIVE_ERROR
from pipeline.store import Store
from pipeline.testing import FakeClock

BUDGET_MS = 150.0
DAY = 86_400
START = 1_767_225_600  # 2026-01-01T00:00:00Z

# Evenly spaced timestamps; every other attribute comes from bits of hash(i), so a run is reproducible.
GENERATE = """
INSERT INTO requests
SELECT make_timestamp(($start_us + i::HUGEINT * $span_us // $n)::BIGINT) AS ts,
       '/api/v1/resource' || r::VARCHAR AS route,
       CASE WHEN h % 5 = 0 THEN 'POST' ELSE 'GET' END AS method,
       CASE WHEN (h >> 8) % 100 = 0 THEN 500 WHEN (h >> 8) % 100 < 5 THEN 404 ELSE 200 END AS status,
       exp(ln(8 + 6 * r) + 0.8 * sqrt(-2 * ln(u1)) * cos(2 * pi() * u2)) AS duration_ms,
       i AS request_id, 0 AS query_count, 1000 + (i % 4)::INT AS pid, 'host' || (i % 2)::VARCHAR AS host
FROM (SELECT i, h, (h >> 40) % $routes AS r,
             (((h >> 16) & 1048575) + 0.5) / 1048576 AS u1, (((h >> 36) & 1048575) + 0.5) / 1048576 AS u2
      FROM (SELECT i, hash(i) AS h FROM range($n) t(i)))
"""


def extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=50_000_000, help="raw requests (default 50M)")
    parser.add_argument("--days", type=float, default=30.0, help="days they span (default 30)")
    parser.add_argument("--routes", type=int, default=20, help="distinct routes (default 20)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each query (default 7)")
    parser.add_argument("--db", type=Path, help="build the file here and keep it (default: a temporary file)")
    parser.add_argument("--reuse", action="store_true", help="measure the --db file built by an earlier run")


def build(path: Path, rows: int, days: float, routes: int, now: float) -> list[tuple[str, str]]:
    clock = FakeClock(now)
    store = Store(path, clock)
    figures: list[tuple[str, str]] = []
    try:
        started = time.perf_counter()
        with store.transaction():
            store.con.execute(GENERATE, {"start_us": int((now - days * DAY) * 1e6), "span_us": int(days * DAY * 1e6),
                                         "n": rows, "routes": routes})
        figures.append(("generate raw rows", f"{time.perf_counter() - started:.1f} s"))
        started = time.perf_counter()
        summary = rollup.run(store, now)
        figures.append(("rollup job, first run (1m and 1h tiers)", f"{time.perf_counter() - started:.1f} s"))
        assert summary.minutes_end is not None
        for name in ("requests", "rollups_1m", "rollup_bins_1m", "rollups_1h", "rollup_bins_1h"):
            figures.append((f"rows in {name}", f"{store.scalar(f'SELECT count(*) FROM {name}'):,}"))
    finally:
        store.close()
    figures.append(("file size", f"{path.stat().st_size / 1e6:,.0f} MB"))
    return figures


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], extra)
    header(f"p95 per route over {args.days:g} days, {args.rows:,} raw requests")
    # Mid-hour and mid-minute, so the range has every kind of piece: raw seconds, minutes, hours, a raw tail.
    now = START + args.days * DAY + 17 * 60 + 23.5
    with temp_dir("duckpulse-bench-pct-") as tmp:
        path = args.db or tmp / "bench.duckdb"
        if not (args.reuse and args.db and path.exists()):
            path.unlink(missing_ok=True)
            figures = build(path, args.rows, args.days, args.routes, now)
            print(table(["step", "figure"], figures, title="\nbuild"))
        con = duckdb.connect(str(path), read_only=True)
        clock = FakeClock(now)
        window = f"{args.days * 24:g}h"

        def sketch_run() -> float:
            started = time.perf_counter()
            percentiles(con, "request_duration", 0.95, window, by="route", method="sketch", clock=clock)
            return time.perf_counter() - started

        def exact_run() -> float:
            started = time.perf_counter()
            percentiles(con, "request_duration", 0.95, window, by="route", method="exact", clock=clock)
            return time.perf_counter() - started

        sketch_run(), exact_run()  # warm the buffer pool: both read from memory from now on
        samples = interleaved({"sketch": sketch_run, "exact": exact_run}, args.repeat)
        sketched = percentiles(con, "request_duration", 0.95, window, by="route", method="sketch", clock=clock)
        exact = percentiles(con, "request_duration", 0.95, window, by="route", method="exact", clock=clock)
        con.close()
    assert list(sketched.route) == list(exact.route) and list(sketched["count"]) == list(exact["count"])
    errors = [abs(s - e) / e for s, e in zip(sketched.p95, exact.p95, strict=True)]
    best_sketch, best_exact = min(samples["sketch"]) * 1e3, min(samples["exact"]) * 1e3
    budget = Budget(BUDGET_MS, True, "p95 per route over 30 days from rollups")
    rows = [
        ("from rollups (sketch)", f"{best_sketch:.1f}", f"{median(samples['sketch']) * 1e3:.1f}",
         f"{BUDGET_MS:.0f}", budget.verdict(best_sketch)),
        ("exact scan over raw rows", f"{best_exact:.1f}", f"{median(samples['exact']) * 1e3:.1f}", "", ""),
    ]
    print(table(["query", "best ms", "median ms", "budget ms", "verdict"], rows, title="\npercentiles()"))
    print(f"\nexact / sketch: {best_exact / best_sketch:.1f}x faster from rollups")
    print(f"relative error of p95 against exact nearest rank over {len(errors)} routes: max {max(errors):.4%}, "
          f"mean {sum(errors) / len(errors):.4%} (bound {RELATIVE_ERROR:.4%}); rows counted: "
          f"{int(sketched['count'].sum()):,} by both")
    verdicts = [budget.verdict(best_sketch), "PASS" if max(errors) <= RELATIVE_ERROR * (1 + 1e-9) else "OVER"]
    return finish(verdicts, args.check)


if __name__ == "__main__":
    sys.exit(main())
