"""The demo: a small instrumented Flask app under generated traffic, writing to a local DuckDB file.

Requests go through Flask's test client (no sockets needed), each timed and recorded with
``Monitor.track_request``; at the end the p50/p95/p99 per route are computed in SQL and printed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, g, request

from . import sqlfiles
from .clock import utc_datetime
from .monitor import Monitor

ROUTES: list[tuple[str, str, float]] = [
    # (path, route template, weight)
    ("/", "/", 5.0),
    ("/books/{n}", "/books/<int:book_id>", 10.0),
    ("/search?q=duck", "/search", 3.0),
    ("/report", "/report", 0.5),
    ("/boom", "/boom", 0.3),
]


def build_app(monitor: Monitor, rng: random.Random) -> Flask:
    """A tiny shop whose handlers take log-normally distributed time; /report is slow, /boom fails."""
    app = Flask("duckpulse-demo")

    def work(median_ms: float) -> None:
        time.sleep(min(rng.lognormvariate(0, 0.5) * median_ms, 200) / 1000.0)

    @app.before_request
    def start_timer() -> None:
        g.duckpulse_start = time.perf_counter()

    @app.after_request
    def record(response: Any) -> Any:
        rule = request.url_rule.rule if request.url_rule else "<unmatched>"
        monitor.track_request(rule, request.method, response.status_code,
                              (time.perf_counter() - g.duckpulse_start) * 1000.0)
        return response

    @app.get("/")
    def index() -> str:
        work(1.0)
        return "duckpulse demo shop"

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> dict[str, int]:
        with monitor.time_query("load_book", "SELECT * FROM books WHERE id = ?"):
            work(2.0)
        return {"id": book_id}

    @app.get("/search")
    def search() -> dict[str, list[str]]:
        monitor.track_query(f"SELECT title FROM books WHERE title LIKE '%{request.args.get('q', '')}%'",
                            rng.lognormvariate(1.5, 0.4))
        work(4.0)
        return {"results": []}

    @app.get("/report")
    def report() -> str:
        work(40.0)
        return "report"

    @app.get("/boom")
    def boom() -> tuple[str, int]:
        work(1.0)
        return "boom", 500

    return app


def run(db_path: str | Path, duration_seconds: float, out: Callable[[str], None] = print,
        seed: int = 7) -> list[tuple[Any, ...]]:
    """Drive the demo app for ``duration_seconds`` and return (and print) the per-route percentile table."""
    rng = random.Random(seed)
    started = datetime.now()
    with Monitor(db_path=db_path, memory_interval_seconds=1.0) as monitor:
        app = build_app(monitor, rng)
        client = app.test_client()
        paths = [p for p, _, _ in ROUTES]
        weights = [w for _, _, w in ROUTES]
        deadline = time.monotonic() + duration_seconds
        sent = 0
        next_report = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            path = rng.choices(paths, weights)[0].format(n=rng.randint(1, 500))
            client.get(path)
            sent += 1
            if time.monotonic() >= next_report:
                next_report += 2.0
                stats = monitor.stats()
                out(f"  {sent:6d} requests sent, {stats['flushed']:6d} metrics flushed to {db_path}")
        monitor.flush()
        assert monitor.store is not None
        rows = monitor.store.fetchall(sqlfiles.query("queries.sql", "route-percentiles"),
                                      {"since": utc_datetime(started.timestamp())})
    out(format_table(["route", "method", "count", "avg_ms", "p50_ms", "p95_ms", "p99_ms", "errors"], rows))
    return rows


def format_table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain fixed-width text table."""
    cells = [header, *[[str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
