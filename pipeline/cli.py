"""The ``duckpulse`` command."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from .errors import DuckPulseError

# Starts the dashboard beside the owner: (monitor, host, port) -> a running server with ``url`` and ``stop()``.
# pipeline never imports webapp (an import-linter contract), so webapp's entry point (webapp.cli:main) passes it in.
DashboardStarter = Callable[[Any, str, int], Any]


def _serve(args: argparse.Namespace) -> int:
    from .monitor import Monitor

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    monitor = Monitor(db_path=args.db, ingest_dir=args.spool, flush_interval_seconds=args.interval)
    print(f"duckpulse: owning {args.db}, ingesting segments from {args.spool} (pid {monitor.pid}); "
          "stop with Ctrl-C or SIGTERM", flush=True)
    dashboard = None
    try:
        starter: DashboardStarter | None = getattr(args, "dashboard", None)
        if starter is not None:
            dashboard = starter(monitor, args.host, args.port)
            print(f"duckpulse: dashboard at {dashboard.url}", flush=True)
        else:
            print("duckpulse: no dashboard with this entry point; `python -m webapp serve` serves one", flush=True)
        while not stop.wait(args.interval):
            pass
    finally:
        if dashboard is not None:
            dashboard.stop()  # no new requests while the last ingest runs
        monitor.close()  # a last flush and ingest
    print(f"duckpulse: stopped; {monitor.stats()['ingest']['rows']} rows ingested", flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    print(f"duckpulse demo: generating traffic for {args.duration:g} s into {args.db}", flush=True)
    run(args.db, args.duration)
    return 0


def _compact(args: argparse.Namespace) -> int:
    from .retention import compact

    result = compact(args.db)
    print(f"duckpulse: compacted {result.path}: {result.bytes_before / 1e6:.1f} MB -> "
          f"{result.bytes_after / 1e6:.1f} MB", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duckpulse", description="Performance monitoring stored in DuckDB.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="own a DuckDB file and ingest the segments producers spool")
    serve.add_argument("--db", required=True, help="the DuckDB file to own")
    serve.add_argument("--spool", required=True, help="the spool directory producers write to")
    serve.add_argument("--interval", type=float, default=1.0, help="seconds between ingests (default 1)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address the dashboard binds to (default 127.0.0.1; any other needs DUCKPULSE_TOKEN)")
    serve.add_argument("--port", type=int, default=8050, help="port of the dashboard (default 8050; 0: any free)")
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="an instrumented sample app under generated traffic")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds of traffic (default 20)")
    demo.add_argument("--db", default="duckpulse-demo.duckdb", help="the DuckDB file to write")
    demo.set_defaults(func=_demo)

    compact = sub.add_parser("compact", help="rewrite a DuckDB file no owner holds, giving deleted rows' space back")
    compact.add_argument("--db", required=True, help="the DuckDB file to compact")
    compact.set_defaults(func=_compact)
    return parser


def main(argv: Sequence[str] | None = None, *, dashboard: DashboardStarter | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.dashboard = dashboard
    try:
        return int(args.func(args))
    except DuckPulseError as exc:
        print(f"duckpulse: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
