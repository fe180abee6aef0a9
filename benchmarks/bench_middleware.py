"""Per-request overhead of the Flask integration, against bare Flask and its peers, in one process.

Each variant is a fresh one-route Flask app (``/books/<int:book_id>``) called as a WSGI application directly:
the environ is built once (a shallow copy per request, as a server hands out a fresh dict), the response
iterable is consumed and closed. Variants:

- bare Flask;
- duckpulse: ``DuckPulse(app, monitor=...)`` on a Monitor writing to a temporary DuckDB file, memory
  sampling off; the benchmark flushes every 50 rounds (timed separately: off the request path);
- the same middleware on a stand-in monitor that records nothing (its ``track_request`` does nothing, it has
  no threads), which splits duckpulse's figure between the middleware and the monitor;
- prometheus_flask_exporter's ``PrometheusMetrics(app)`` (its own registry);
- OpenTelemetry's ``FlaskInstrumentor().instrument_app(app)`` with the SDK's tracer and meter providers
  (a batch span processor feeding an exporter that drops spans, an in-memory metric reader).

The machine is shared, so variants are interleaved finely: every round serves a small batch (20 requests)
through each variant in turn, in a new random order (``--seed``); the figure is the median over rounds of
(variant - bare Flask) per request in the same round. Time is the serving thread's CPU time (``--clock
thread``, the default): what a request costs the worker that serves it, without the waits for a core that
other processes cause here; ``--clock wall`` uses perf_counter instead. The monitor's work off the request
path (the flusher thread's compaction, and ``flush()`` writing into DuckDB every few rounds) is measured in
CPU time too and printed beside it (the peers' background threads, OpenTelemetry's span processor, are not counted).
Budget (DESIGN.md): <= 3 us.

``--whole-process`` measures what a request costs the whole process instead, every thread counted: each variant
runs in a process of its own (the duckpulse variants with a Monitor's defaults: the embedded owner with its jobs,
and a producer spooling segments), serves ``--requests`` requests after a warm-up, then flushes (duckpulse's
``flush()``, OpenTelemetry's ``force_flush``); the figure is the process's CPU time over the requests and that
final flush, per request, against bare Flask's (median over ``--rounds`` rounds, the variants alternated in a new
random order each round). The serving thread's CPU time is the second column. Budget (DESIGN.md): <= 0.10x
bare Flask's CPU per request.

    python benchmarks/bench_middleware.py [--rounds 4000] [--batch 20] [--clock thread|wall] [--check]
    python benchmarks/bench_middleware.py --whole-process [--requests 50000] [--rounds 5] [--check]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import Budget, finish, header, median, parse_args, quiet_monitor, table, temp_dir
from flask import Flask
from werkzeug.test import EnvironBuilder

from pipeline import Monitor
from pipeline.integrations.flask import DuckPulse

BUDGET = Budget(3.0, at_most=True, label="per-request overhead, direct WSGI call (us)")
WHOLE_BUDGET = Budget(0.10, at_most=True, label="whole-process CPU per request over bare Flask's (ratio)")
WHOLE_VARIANTS = ("bare Flask", "duckpulse embedded owner", "duckpulse producer", "prometheus_flask_exporter",
                  "OpenTelemetry FlaskInstrumentor")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def one_route_app(name: str) -> Flask:
    app = Flask(__name__)
    app.name = name

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> str:
        return f"book {book_id}"

    return app


def bare() -> Flask:
    return one_route_app("bare")


def duckpulse(monitor: Monitor) -> Flask:
    app = one_route_app("duckpulse")
    DuckPulse(app, monitor=monitor, response_time_header=False)
    return app


class NullMonitor:
    """Stands in for a Monitor: the middleware's own cost on the request path, without the row it records."""

    closed = False
    strict = False

    def __init__(self) -> None:
        self.next_request_id = itertools.count(1).__next__

    def track_request(self, *row: Any) -> None:
        pass


def duckpulse_without_recording(null: NullMonitor) -> Flask:
    app = one_route_app("duckpulse-null")
    DuckPulse(app, monitor=null, response_time_header=False)  # type: ignore[arg-type]  # a stand-in
    return app


def prometheus() -> Flask | None:
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_flask_exporter import PrometheusMetrics
    except ImportError:
        return None
    app = one_route_app("prometheus")
    PrometheusMetrics(app, registry=CollectorRegistry())
    return app


def opentelemetry() -> Flask | None:
    try:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    except ImportError:
        return None

    class DropExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    app = one_route_app("opentelemetry")
    FlaskInstrumentor().instrument_app(app, tracer_provider=tracer_provider, meter_provider=meter_provider)
    app.extensions["benchmark_flush"] = lambda: (tracer_provider.force_flush(), meter_provider.force_flush())
    return app


def driver(app: WSGIApp, environ: dict[str, Any], requests: int, clock: Callable[[], float]
           ) -> Callable[[], float]:
    """A function serving ``requests`` requests through ``app``; returns microseconds per request."""

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
        return _write

    def run() -> float:
        start = clock()
        for _ in range(requests):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            body.close()
        return (clock() - start) / requests * 1e6

    return run


def _write(data: bytes) -> None:
    pass


def whole_process_child(variant: str, requests: int, tmp: Path) -> dict[str, float]:
    """Serve ``requests`` requests through one variant in this process; CPU time per request (us) of the whole
    process and of the serving thread, the final flush included."""
    final_flush: Callable[[], Any] = lambda: None  # noqa: E731  # bare Flask and prometheus have nothing to flush
    if variant == "bare Flask":
        app = bare()
    elif variant.startswith("duckpulse"):
        where: dict[str, Any] = ({"spool_dir": tmp / "spool"} if "producer" in variant
                                 else {"db_path": tmp / "bench.duckdb"})
        monitor = Monitor(**where)  # the defaults a user gets: flusher, clock thread, samples, jobs in an owner
        app = duckpulse(monitor)
        final_flush = monitor.flush
    elif variant == "prometheus_flask_exporter":
        app = prometheus()  # type: ignore[assignment]
    else:
        app = opentelemetry()  # type: ignore[assignment]
        if app is not None:
            final_flush = app.extensions["benchmark_flush"]  # its span processor's queue, exported
    if app is None:
        raise SystemExit(f"{variant} is not installed (pip install -e '.[bench]')")
    environ = EnvironBuilder(path="/books/42", method="GET").get_environ()
    driver(app, environ, 2_000, time.perf_counter)()  # warm up: caches, first flush interval
    final_flush()
    process_start, thread_start = time.process_time(), time.thread_time()
    driver(app, environ, requests, time.perf_counter)()
    final_flush()
    return {"process_us": (time.process_time() - process_start) / requests * 1e6,
            "thread_us": (time.thread_time() - thread_start) / requests * 1e6}


def whole_process(args: argparse.Namespace) -> int:
    header(f"whole-process CPU per request: a process per variant, {args.requests:,} requests + the final flush")
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in WHOLE_VARIANTS}
    order = list(WHOLE_VARIANTS)
    rng = random.Random(args.seed)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for variant in order:
            with tempfile.TemporaryDirectory(prefix="duckpulse-bench-mw-") as tmp:
                out = subprocess.run([sys.executable, __file__, "--child", variant, "--requests", str(args.requests),
                                      "--tmp", tmp], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"{variant}: failed: {out.stderr.strip()[-300:]}")
                continue
            samples[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = median([s["process_us"] for s in samples["bare Flask"]])
    base_thread = median([s["thread_us"] for s in samples["bare Flask"]])
    ratios: dict[str, float] = {}
    rows = []
    for variant, runs in samples.items():
        if not runs:
            continue
        process_us = median([s["process_us"] for s in runs])
        thread_us = median([s["thread_us"] for s in runs])
        ratios[variant] = (process_us - base) / base
        rows.append((variant, f"{process_us:.1f}", "-" if variant == "bare Flask" else f"{process_us - base:+.1f}",
                     "-" if variant == "bare Flask" else f"{ratios[variant]:.3f}x",
                     f"{thread_us:.1f}", "-" if variant == "bare Flask" else f"{thread_us - base_thread:+.2f}"))
    print(table(("variant", "process CPU us/request", "added us", "added vs bare's CPU",
                 "serving thread us/request", "serving thread added us"), rows,
                f"\n{args.rounds} processes per variant, alternated in a new random order each round; medians; "
                "every thread of the process counted, the final flush included"))
    verdicts = []
    for variant in ("duckpulse embedded owner", "duckpulse producer"):
        if variant not in ratios:
            verdicts.append("FAILED")
            continue
        verdict = WHOLE_BUDGET.verdict(ratios[variant])
        verdicts.append(verdict)
        print(f"{WHOLE_BUDGET.label}, {variant}: {ratios[variant]:.3f}x, budget <= {WHOLE_BUDGET.value:g}x: "
              f"{verdict}")
    return finish(verdicts, args.check)


def main() -> int:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rounds", type=int, default=4000, help="interleaved rounds (default 4000)")
        parser.add_argument("--batch", type=int, default=20, help="requests per variant per round (default 20)")
        parser.add_argument("--seed", type=int, default=1, help="seed of the per-round variant order")
        parser.add_argument("--flush-every", type=int, default=50, help="rounds between flushes (default 50)")
        parser.add_argument("--clock", choices=("thread", "wall"), default="thread",
                            help="thread: the serving thread's CPU time (default); wall: perf_counter")
        parser.add_argument("--whole-process", action="store_true",
                            help="every thread counted: a process per variant (see the module docstring)")
        parser.add_argument("--requests", type=int, default=50_000, help="requests per process (--whole-process)")
        parser.add_argument("--child", help=argparse.SUPPRESS)
        parser.add_argument("--tmp", help=argparse.SUPPRESS)

    args = parse_args(__doc__.splitlines()[0], extra)
    if args.child:
        print(json.dumps(whole_process_child(args.child, args.requests, Path(args.tmp))))
        return 0
    if args.whole_process:
        if args.rounds == 4000:  # the default of the in-process mode: a process per variant costs seconds
            args.rounds = 5
        return whole_process(args)
    header("per-request overhead of the Flask integration (direct WSGI call)")
    environ = EnvironBuilder(path="/books/42", method="GET").get_environ()
    with temp_dir("duckpulse-bench-mw-") as tmp:
        monitor = quiet_monitor(tmp)
        null = NullMonitor()
        try:
            apps: dict[str, Flask | None] = {
                "bare Flask": bare(),
                "duckpulse DuckPulse": duckpulse(monitor),
                "  middleware alone (records nothing)": duckpulse_without_recording(null),
                "prometheus_flask_exporter": prometheus(),
                "OpenTelemetry FlaskInstrumentor": opentelemetry(),
            }
            missing = [name for name, app in apps.items() if app is None]
            clock = time.thread_time if args.clock == "thread" else time.perf_counter
            runs = {name: driver(app, environ, args.batch, clock) for name, app in apps.items() if app is not None}
            for run in runs.values():  # warm up: first requests build caches (url map, jinja, metrics)
                for _ in range(20):
                    run()
            monitor.flush()

            samples: dict[str, list[float]] = {name: [] for name in runs}
            flush_seconds = 0.0
            # The flusher thread compacts buffered rows every tick, off the request path: its CPU time is read
            # from its own clock (a private attribute, read by a benchmark only).
            flusher_clock = time.pthread_getcpuclockid(monitor._thread.ident or 0)
            flusher_start = time.clock_gettime(flusher_clock)
            names = list(runs)
            shuffle = random.Random(args.seed).shuffle
            for round_number in range(args.rounds):
                # A new random order every round, so no variant always runs right after the same neighbour (a
                # rotation would keep neighbours: bare Flask always after OpenTelemetry, whose garbage it paid for).
                order = names[:]
                shuffle(order)
                for name in order:
                    samples[name].append(runs[name]())
                if round_number % args.flush_every == args.flush_every - 1:
                    start = time.process_time()  # DuckDB's own threads work for the flush too
                    monitor.flush()
                    flush_seconds += time.process_time() - start
            start = time.process_time()
            monitor.flush()
            flush_seconds += time.process_time() - start
            flusher_seconds = time.clock_gettime(flusher_clock) - flusher_start

            served = (args.rounds + 20) * args.batch
            assert monitor.store is not None
            recorded = monitor.store.scalar("SELECT count(*) FROM requests")
        finally:
            monitor.close()

    base = samples["bare Flask"]
    overheads = {name: sorted(v - b for v, b in zip(values, base, strict=True)) for name, values in samples.items()}
    ours = overheads["duckpulse DuckPulse"]
    our_overhead = median(ours)
    rows = []
    for name, values in samples.items():
        overhead = median(overheads[name])
        rows.append((
            name,
            f"{median(values):.1f}",
            "-" if name == "bare Flask" else f"{overhead:+.2f}",
            f"{median(values) / median(base):.3f}x",
            "-" if name == "bare Flask" else f"{overhead / our_overhead:.1f}x",
        ))
    print(table(("variant", "us/request", "overhead us", "time vs bare", "overhead vs duckpulse"), rows,
                f"\n{args.rounds} rounds x {args.batch} requests per variant, interleaved, {args.clock} time; "
                "medians over rounds"))
    quartiles = statistics.quantiles(ours, n=4)
    print(f"\nduckpulse overhead over rounds (us): quartiles {quartiles[0]:.2f} / {quartiles[1]:.2f} / "
          f"{quartiles[2]:.2f}")
    timed_requests = args.rounds * args.batch
    print(f"duckpulse off the request path, CPU per request: flusher thread's compaction "
          f"{flusher_seconds / timed_requests * 1e6:.2f} us, "
          f"flush() into DuckDB {flush_seconds / timed_requests * 1e6:.2f} us")
    print(f"duckpulse recorded {recorded:,} request rows for {served:,} requests served")
    if missing:
        print(f"not measured (not installed; pip install -e '.[bench]'): {', '.join(missing)}")
    verdict = BUDGET.verdict(our_overhead)
    print(f"\n{BUDGET.label}: {our_overhead:.2f} us, budget <= {BUDGET.value:g} us: {verdict}")
    return finish([verdict], args.check)


if __name__ == "__main__":
    raise SystemExit(main())
