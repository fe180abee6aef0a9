"""Cost of recording one metric on the hot path, beside prometheus_client and the OpenTelemetry SDK.

Budget (DESIGN.md, "Budgets"): <= 150 ns per recorded request or histogram observation, with the garbage
collector ON and 100k-1M records buffered, amortized (the second table: every row's compaction counted, which the
process pays whether it runs inline or on the flusher thread). The first table times the call itself: every case
runs in many small timed batches, in a new random order each round with its peers in this process, so a burst of
load from elsewhere hits all of them alike; the median batch is the figure, shown against the budget for reference.
The mean is printed too: it also carries the compactions that run inline when a raw list fills up. The clock
is this thread's CPU time (``--clock thread``, the default) so that time spent descheduled on a shared machine
is not counted; ``--clock wall`` measures wall time instead. Two reference rows time the same calls with the
collector OFF (what timeit reports by default), to show the collector's share, and one times
``track_request`` on a monitor with exact timestamps (``timestamp_resolution_seconds=0``: a clock call per
metric, ~40 ns) instead of the default clock thread's time (refreshed every 10 ms).

A second table measures what recording really costs the application over a long run: a plain loop of
``--loop`` calls per case on a fresh monitor (100k pre-filled), the process's CPU time per call (every thread:
the flusher's too) minus the empty loop, with the time the garbage collector took. For duckpulse this includes
compacting every row into columns (inline, or on the flusher thread) and any collections compaction
provokes.

    .venv/bin/python benchmarks/bench_record.py [--rounds 150] [--number 1000] [--loop 500000] [--clock wall]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from _common import (
    Budget,
    GcWatch,
    batch_ns,
    finish,
    header,
    interleaved,
    parse_args,
    quiet_monitor,
    table,
    temp_dir,
)

BUDGET = Budget(150.0, at_most=True, label="<= 150 ns")
PREFILL = 100_000


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=150, help="timed batches per case (default 150)")
    parser.add_argument("--number", type=int, default=1000, help="calls per timed batch (default 1000)")
    parser.add_argument("--loop", type=int, default=500_000, help="calls per case in the amortized loop")
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread",
                        help="thread CPU time (default) or wall time for the timed batches")


LOOP_CASES = {
    "duckpulse track_request": 'mon.track_request("/users/<id>", "GET", 200, 12.5)',
    "duckpulse histogram.observe": "h.observe(12.5)",
    "prometheus_client labels().observe": 'prom.labels(route="/x").observe(12.5)',
    "OTel SDK histogram.record": "otel.record(12.5, attrs)",
}


def amortized(tmp: Path, loop: int) -> tuple[list[list[str]], list[str]]:
    """Per case: ns per call over a plain loop of ``loop`` calls, and the garbage collector's share; with the
    verdicts of duckpulse's cases against the budget."""
    verdicts = []
    rows = []
    for name, stmt in LOOP_CASES.items():
        case_dir = tmp / name.split()[0] / name.split()[-1]
        case_dir.mkdir(parents=True)
        mon = quiet_monitor(case_dir)
        provider, otel = _otel_histogram()
        try:
            h = mon.histogram("latency_ms", {"route": "/x"})
            for i in range(PREFILL):
                mon.track_request("/users/<id>", "GET", 200, float(i % 500))
                h.observe(float(i % 500))
            mon.stats()
            namespace = {"mon": mon, "h": h, "prom": _prometheus_histogram(), "otel": otel,
                         "attrs": {"route": "/x"}, "gc": gc}
            # CPU time of the whole process: the flusher thread's compactions are part of the cost.
            cpu = time.process_time
            empty = timeit.Timer("pass", "gc.enable()", timer=cpu, globals=namespace).timeit(loop)
            with GcWatch() as watch:
                seconds = timeit.Timer(stmt, "gc.enable()", timer=cpu, globals=namespace).timeit(loop)
            # What the flusher thread has not compacted yet is compacted now, and counted, as it would be.
            if name.startswith("duckpulse"):
                start = time.process_time()
                mon.stats()
                seconds += time.process_time() - start
        finally:
            mon.close()
            provider.shutdown()  # type: ignore[attr-defined]
        per_call = (seconds - empty) / loop * 1e9
        gc_ns = [s / loop * 1e9 for s in watch.seconds]
        verdict = BUDGET.verdict(per_call) if name.startswith("duckpulse") else ""
        if verdict:
            verdicts.append(verdict)
        rows.append([name, f"{per_call:,.0f}", f"{sum(gc_ns):,.0f}",
                     " / ".join(f"{c:,}" for c in watch.collections),
                     " / ".join(f"{g:,.0f}" for g in gc_ns), BUDGET.label if verdict else "", verdict])
    return rows, verdicts


def _prometheus_histogram() -> object:
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()  # not the global one: nothing else in this process sees it
    return Histogram("latency_ms", "request latency", ["route"], registry=registry)


def _otel_histogram() -> tuple[object, object]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    return provider, provider.get_meter("bench").create_histogram("latency_ms", unit="ms")


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], _options)
    header(f"bench_record: one metric on the hot path (gc ON, ns per call, {args.clock} clock)")
    with temp_dir("duckpulse-bench-record-") as tmp:
        mon = quiet_monitor(tmp)
        (tmp / "exact").mkdir()
        exact = quiet_monitor(tmp / "exact", timestamp_resolution_seconds=0)
        try:
            h = mon.histogram("latency_ms", {"route": "/x"})
            for i in range(PREFILL):
                mon.track_request("/users/<id>", "GET", 200, float(i % 500))
                exact.track_request("/users/<id>", "GET", 200, float(i % 500))
                h.observe(float(i % 500))
            mon.stats()  # compacts the pre-fill into columns, as the flusher thread would
            exact.stats()
            buffered_before = mon.stats()["pending"]
            prom = _prometheus_histogram()
            provider, otel = _otel_histogram()
            namespace = {"mon": mon, "exact": exact, "h": h, "prom": prom, "otel": otel, "attrs": {"route": "/x"},
                         "time": time}
            n = args.number
            clock = time.thread_time if args.clock == "thread" else time.perf_counter

            def gc_off(stmt: str) -> Callable[[], float]:
                timer = timeit.Timer(stmt, timer=clock, globals=namespace)  # timeit's default: gc disabled
                return lambda: timer.timeit(n) / n * 1e9

            cases = {
                "duckpulse track_request(positional)":
                    batch_ns('mon.track_request("/users/<id>", "GET", 200, 12.5)', namespace, n, clock),
                "duckpulse track_request(keywords)":
                    batch_ns('mon.track_request(route="/users/<id>", method="GET", status=200, '
                             'duration_ms=12.5)', namespace, n, clock),
                "duckpulse histogram.observe":
                    batch_ns("h.observe(12.5)", namespace, n, clock),
                # The SQL text is buffered as is; its fingerprint is made on the flusher thread.
                "duckpulse track_query":
                    batch_ns('mon.track_query("SELECT * FROM users WHERE id = 42", 3.1)', namespace, n, clock),
                "duckpulse track_query(dialect=)":
                    batch_ns('mon.track_query("SELECT * FROM users WHERE id = 42", 3.1, dialect="postgres")',
                             namespace, n, clock),
                "prometheus_client labels().observe":
                    batch_ns('prom.labels(route="/x").observe(12.5)', namespace, n, clock),
                "OTel SDK histogram.record":
                    batch_ns("otel.record(12.5, attrs)", namespace, n, clock),
                "(floor) time.time()":
                    batch_ns("time.time()", namespace, n, clock),
                "(gc OFF) duckpulse track_request":
                    gc_off('mon.track_request("/users/<id>", "GET", 200, 12.5)'),
                "(gc OFF) duckpulse histogram.observe":
                    gc_off("h.observe(12.5)"),
                "(exact timestamps) duckpulse track_request":
                    batch_ns('exact.track_request("/users/<id>", "GET", 200, 12.5)', namespace, n, clock),
            }
            for run in cases.values():  # warm up every code path and cache
                run()
            samples = interleaved(cases, args.rounds)
            buffered_after = mon.stats()["pending"]
            stats = mon.stats()
        finally:
            mon.close()
            exact.close()
            provider.shutdown()  # type: ignore[attr-defined]

    med = {name: statistics.median(v) for name, v in samples.items()}
    prom_ns, otel_ns = med["prometheus_client labels().observe"], med["OTel SDK histogram.record"]
    rows = []
    for name, values in samples.items():
        ours = name.startswith("duckpulse")
        verdict = BUDGET.verdict(med[name]) if ours else ""  # for reference: the budget's figure is amortized
        rows.append([
            name, f"{med[name]:,.0f}", f"{min(values):,.0f}", f"{statistics.fmean(values):,.0f}",
            BUDGET.label if ours else "", verdict,
            f"{prom_ns / med[name]:.1f}x" if ours else "", f"{otel_ns / med[name]:.1f}x" if ours else "",
        ])
    print()
    print(table(["case", "median ns", "best ns", "mean ns", "budget", "median within", "prom/this", "otel/this"],
                rows))
    print(f"\n{args.rounds} batches of {args.number:,} calls per case, random order each round; buffered rows "
          f"{buffered_before:,} -> {buffered_after:,} (flushed {stats['flushed']:,}, "
          f"dropped {stats['dropped']})")
    print("prom/this, otel/this: how many times faster than the peer (peer median / this median)")

    with temp_dir("duckpulse-bench-record-loop-") as tmp:
        loop_rows, verdicts = amortized(tmp, args.loop)
    print()
    print(table(["case (plain loop, gc ON)", "amortized CPU ns/call", "of which gc ns",
                 "collections gen0/1/2", "gc ns gen0/1/2", "budget", "verdict"], loop_rows,
                title=f"Amortized over {args.loop:,} calls per case: what recording costs the app, every thread "
                      "counted; the budget's figure"))
    return finish(verdicts, args.check)


if __name__ == "__main__":
    sys.exit(main())
