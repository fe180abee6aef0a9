"""What duckpulse adds to a Flask app's memory (RSS), against prometheus_flask_exporter and OpenTelemetry.

Each variant runs in a process of its own (``--child``): RSS is read after ``import flask``, then the variant is
set up, a one-route Flask app (``/books/<int:book_id>``) serves ``--requests`` requests as a WSGI app called
directly, everything is flushed (duckpulse's ``flush()``; OpenTelemetry's ``force_flush``), and RSS is read
again. The added RSS is the difference: imports, threads, buffers, caches, and DuckDB in an owner. Variants:

- bare Flask (what serving alone adds, for scale);
- duckpulse producer: ``Monitor(spool_dir=...)`` with its defaults, as each gunicorn worker runs it;
- duckpulse S3 producer: ``Monitor(spool_url="s3://...")``, a fleet's host: the same, plus the outbox, its uploader
  thread and the MinIO SDK, uploading to moto's S3 server (tests/s3_server.py, a process of its own); RSS is read
  once the outbox is empty;
- duckpulse embedded owner: ``Monitor(db_path=...)`` with its defaults (jobs scheduled, DuckDB capped);
- prometheus_flask_exporter's ``PrometheusMetrics(app)``;
- OpenTelemetry's ``FlaskInstrumentor`` with the SDK's tracer and meter providers (a batch span processor
  feeding an exporter that drops spans, an in-memory metric reader).

RSS is read from /proc/self/status (no psutil: it would count itself). Variants run ``--rounds`` times each, in
a new random order every round; the figure is the median. The child also lists which heavy packages it
imported, and how much of the RSS it added is file-backed (``RssFile``: the code pages of shared libraries such as
DuckDB's, which every process mapping them shares). Budgets (DESIGN.md): producer <= 20 MB, embedded owner
<= 80 MB, on the whole RSS.

    python benchmarks/bench_footprint.py [--requests 100000] [--rounds 3] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEAVY = ("pandas", "pyarrow", "numpy", "duckdb", "apscheduler", "webapp", "psutil", "minio")
VARIANTS = ("bare Flask", "duckpulse producer", "duckpulse S3 producer", "duckpulse embedded owner",
            "prometheus_flask_exporter", "OpenTelemetry FlaskInstrumentor")
S3_ENDPOINT = "DUCKPULSE_BENCH_S3_ENDPOINT"  # the S3 server the parent started, for the S3 producer's children
BUDGETS_MB = {"duckpulse producer": 20.0, "duckpulse embedded owner": 80.0}


def rss_mb(kind: str = "VmRSS") -> float:
    """This process's resident memory in MB (``RssAnon``, ``RssFile``: its anonymous and file-backed parts)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(kind + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {kind} in /proc/self/status")


def child(variant: str, requests: int, tmp: str) -> dict[str, Any]:
    """Run one variant in this process; returns its figures (printed as JSON for the parent)."""
    import flask

    before, file_before = rss_mb(), rss_mb("RssFile")
    app = flask.Flask(variant.split()[0])

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> str:
        return f"book {book_id}"

    final_flush: Any = None
    if variant.startswith("duckpulse"):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from pipeline import Monitor
        from pipeline.integrations.flask import DuckPulse

        local = variant == "duckpulse producer"
        where: dict[str, Any] = {"spool_dir": Path(tmp) / "spool"} if local else {"db_path": Path(tmp) / "m.duckdb"}
        if variant == "duckpulse S3 producer":
            from pipeline.settings import ObjectStoreSettings, OutboxSettings

            where = {"spool_url": "s3://footprint/fleet", "outbox": OutboxSettings(outbox_dir=Path(tmp) / "outbox"),
                     "object_store": ObjectStoreSettings(endpoint_url=os.environ[S3_ENDPOINT])}
        monitor = Monitor(**where)
        DuckPulse(app, monitor=monitor)

        def final_flush() -> None:
            monitor.flush()
            while monitor.stats().get("outbox", {}).get("waiting_segments"):  # an S3 producer: uploaded too
                time.sleep(0.05)
    elif variant == "prometheus_flask_exporter":
        from prometheus_flask_exporter import PrometheusMetrics

        PrometheusMetrics(app)
    elif variant.startswith("OpenTelemetry"):
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class DropExporter(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter()))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        FlaskInstrumentor().instrument_app(app, tracer_provider=tracer_provider, meter_provider=meter_provider)

        def final_flush() -> None:
            tracer_provider.force_flush()
            meter_provider.force_flush()

    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/books/42", method="GET").get_environ()

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    for _ in range(requests):
        body = app(dict(environ), start_response)
        for _chunk in body:
            pass
        body.close()
    if final_flush is not None:
        final_flush()
    after = rss_mb()
    imported = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
    return {"before_mb": before, "after_mb": after, "added_mb": after - before,
            "added_file_mb": rss_mb("RssFile") - file_before, "imported": imported}


def run_child(variant: str, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="duckpulse-footprint-") as tmp:
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--requests", str(requests),
                              "--tmp", tmp], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def start_s3_server() -> subprocess.Popen[str]:
    """moto's S3 server for the S3 producer (its address in the environment the children inherit), bucket made."""
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    server = Path(__file__).resolve().parent.parent / "tests" / "s3_server.py"
    proc = subprocess.Popen([sys.executable, str(server)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None
    os.environ[S3_ENDPOINT] = f"http://127.0.0.1:{int(proc.stdout.readline())}"
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from pipeline.objectstore import ObjectStore, ObjectStoreSettings

    ObjectStore("s3://footprint", ObjectStoreSettings(endpoint_url=os.environ[S3_ENDPOINT])).client.make_bucket(
        "footprint")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check", action="store_true", help="exit 1 when a budget is missed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.requests, args.tmp)))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import finish, header, median, table

    header(f"RSS added to a Flask app: a process per variant, {args.requests:,} requests served and flushed")
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    rng = random.Random(args.seed)
    server = start_s3_server()
    try:
        for _ in range(args.rounds):
            rng.shuffle(order)
            for variant in order:
                results[variant].append(run_child(variant, args.requests))
    finally:
        server.terminate()
        server.wait(timeout=60)
    added: dict[str, float] = {}
    rows = []
    for variant, runs in results.items():
        errors = [r["error"] for r in runs if "error" in r]
        good = runs
        if errors:
            rows.append((variant, "-", "-", "-", "-", "-", f"failed: {errors[0]}"[:60]))
            continue
        added[variant] = median([r["added_mb"] for r in good])
        rows.append((variant, f"{median([r['before_mb'] for r in good]):.1f}",
                     f"{median([r['after_mb'] for r in good]):.1f}", f"{added[variant]:+.1f}",
                     f"{min(r['added_mb'] for r in good):+.1f} .. {max(r['added_mb'] for r in good):+.1f}",
                     f"{median([r['added_file_mb'] for r in good]):+.1f}",
                     ", ".join(good[-1]["imported"]) or "-"))
    print(table(("variant", "RSS after import flask MB", "RSS after MB", "added MB (median)", "range",
                 "of which file-backed MB", "heavy packages imported"), rows,
                f"\n{args.rounds} processes per variant, in a new random order each round; file-backed: pages of "
                "shared libraries and files, shared with every process that maps them"))
    verdicts = []
    producer = added.get("duckpulse producer")
    if producer and "duckpulse S3 producer" in added:
        fleet = added["duckpulse S3 producer"]
        print(f"duckpulse S3 producer: {fleet:+.1f} MB, {fleet - producer:+.1f} MB over a local producer (the outbox, "
              f"its uploader thread and the MinIO SDK); the producer budget (<= 20 MB) is "
              f"{'met' if fleet <= 20 else 'not met'} by it too")
    if producer:
        for peer in ("prometheus_flask_exporter", "OpenTelemetry FlaskInstrumentor"):
            if peer in added:
                print(f"{peer}: {added[peer]:+.1f} MB, {added[peer] / producer:.2f}x duckpulse producer's")
    for variant, budget in BUDGETS_MB.items():
        if variant not in added:
            verdicts.append("FAILED")
            continue
        verdict = "PASS" if added[variant] <= budget else "OVER"
        verdicts.append(verdict)
        print(f"RSS added, {variant}: {added[variant]:.1f} MB, budget <= {budget:g} MB: {verdict}")
    return finish(verdicts, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
