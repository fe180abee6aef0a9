"""What the owner's publish job costs at the soak's rate (~400 requests/s, 1.5 queries each), per run and per
second of the owner's life.

Run: ``.venv/bin/python benchmarks/bench_publish.py [--rps 400] [--hours 2.5] [--interval 15]``

An owner on a temporary DuckDB file, with a fake clock, records ``--rps`` requests a second (six routes, 1.5 SQL
queries each, a process sample every 10 s) for ``--hours`` simulated hours; every ``--interval`` seconds it
flushes and runs its jobs as the scheduler would (rollup every 30 s, archive every 300 s, the publish job every
interval), so the archive moves the watermark and the window of minutes not archived yet stays what it is in
production (60 to 75 minutes). Printed: the publish job's CPU time per run (the whole process, DuckDB's threads
included) and wall time, first run and steady state (after the first archived hour), what that is per second of
the owner's life (the fraction of one core), the files and rows a run writes, the bytes under ``_recent/``, and
the owner's RSS growth across the steady-state runs. Beside it, the same figures for the archive job, the peer
that also writes Parquet for readers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import temp_dir

from pipeline import Monitor
from pipeline.publish import RECENT_DIR
from pipeline.testing import FakeClock

ROUTES = ["/users/<int:id>", "/items", "/search", "/fail", "<unmatched>", "/cart"]
SQL = ["SELECT * FROM users WHERE id = 1", "SELECT * FROM items ORDER BY id LIMIT 20",
       "SELECT * FROM items WHERE title LIKE '%x%'", "UPDATE carts SET n = 2 WHERE id = 3"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rps", type=int, default=400)
    parser.add_argument("--hours", type=float, default=2.5)
    parser.add_argument("--interval", type=float, default=15.0)
    args = parser.parse_args()
    proc = psutil.Process()
    with temp_dir("duckpulse-bench-publish-") as tmp:
        clock = FakeClock()
        mon = Monitor(db_path=tmp / "m.duckdb", clock=clock, jobs=False, memory_interval_seconds=None,
                      flush_interval_seconds=1e6, flush_rows=10**12, default_rules=False)
        jobs = mon.jobs_runner
        due = {"rollup": 0.0, "archive": 0.0, "retention": 0.0, "release-cache": 0.0}
        every = {"rollup": 30.0, "archive": 300.0, "retention": 3600.0, "release-cache": 10.0}
        runs: dict[str, list[tuple[float, float, float]]] = {"publish": [], "archive": []}  # (cpu, wall, t)
        written: list[tuple[int, int]] = []
        rss: list[tuple[float, int]] = []
        steps = int(args.hours * 3600 / args.interval)
        per_step = int(args.rps * args.interval)
        started = clock.now()
        for _ in range(steps):
            for i in range(per_step):  # spread over the interval, as the flusher's rows are
                ts = clock.now() + i * args.interval / per_step
                mon.track_request(ROUTES[i % 6], "GET", 200 if i % 50 else 500, 5.0 + i % 97, ts=ts)
            for i in range(per_step * 3 // 2):
                mon.track_query(SQL[i % 4], 0.5 + i % 13)
            clock.advance(args.interval)
            mon.track_memory()
            mon.flush()
            mon.ingest_now()
            for name in due:
                if clock.now() >= due[name]:
                    due[name] = clock.now() + every[name]
                    cpu, wall = time.process_time(), time.perf_counter()
                    jobs.run(name)
                    if name in runs:
                        runs[name].append((time.process_time() - cpu, time.perf_counter() - wall, clock.now()))
            cpu, wall = time.process_time(), time.perf_counter()
            summary = jobs.run("publish")
            runs["publish"].append((time.process_time() - cpu, time.perf_counter() - wall, clock.now()))
            written.append((summary.files_written, summary.rows_written))
            rss.append((clock.now(), proc.memory_info().rss))
            assert jobs.status()["publish"]["failures"] == 0, jobs.status()["publish"]["last_error"]
        steady_from = started + 2 * 3600  # the first hours archived: the window is at its production size
        recent = tmp / "m.duckdb.history" / RECENT_DIR
        recent_bytes = sum(p.stat().st_size for p in recent.rglob("*.parquet"))
        mon.close()

    def line(name: str, interval: float) -> None:
        first = runs[name][0]
        steady = [r for r in runs[name] if r[2] >= steady_from]
        cpu = statistics.median(r[0] for r in steady)
        wall = statistics.median(r[1] for r in steady)
        p95 = sorted(r[0] for r in steady)[int(len(steady) * 0.95)]
        print(f"{name:8s} first run {first[0] * 1000:7.0f} ms CPU ({first[1] * 1000:6.0f} ms wall); steady state "
              f"over {len(steady)} runs: median {cpu * 1000:5.1f} ms CPU (p95 {p95 * 1000:5.1f}), "
              f"{wall * 1000:5.1f} ms wall; every {interval:g} s = {cpu / interval * 100:.2f}% of one core")

    print(f"owner at {args.rps} requests/s ({args.rps * 3 // 2} queries/s), {args.hours:g} simulated hours, "
          f"publish every {args.interval:g} s")
    line("publish", args.interval)
    line("archive", every["archive"])
    steady_written = [w for w, (_, _, t) in zip(written, runs["publish"], strict=True) if t >= steady_from]
    print(f"publish writes per run (steady): median {statistics.median(w[0] for w in steady_written):.0f} files, "
          f"{statistics.median(w[1] for w in steady_written):,.0f} rows; _recent/ holds {recent_bytes / 2**20:.1f} MB")
    steady_rss = [r for t, r in rss if t >= steady_from]
    print(f"owner RSS over the steady-state runs: {steady_rss[0] / 2**20:.0f} MB -> {steady_rss[-1] / 2**20:.0f} MB "
          f"(max {max(steady_rss) / 2**20:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
