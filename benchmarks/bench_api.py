"""The dashboard API under 16 concurrent clients, on a real server on loopback, with 10M request rows stored.

Budget (DESIGN.md, "Budgets"; issue 16): p99 <= 50 ms with the 1 s response cache on, and p99 <= 100 ms with it
off (``--cache-seconds 0``: a custom range or a route page is a URL no cache holds), at 10M rows and 16 concurrent
clients, for every endpoint the page calls: the overview and a route's page over the last hour, the overview over
a custom three-hour range, and the queries of one request. The day-long rows are measured without a budget.

The rows are generated with DuckDB SQL straight into a file (10M requests spread evenly over the last six days,
in time order as the flusher appends them; 1M queries, each of one request; an exception for one failed request
in ten; a process sample every 10 s for 4 processes), then an
owner Monitor opens the file, runs its jobs once (the first rollup and archive of the history), and serves the
dashboard with ``webapp.server.DashboardServer`` (``--jobs`` keeps the jobs scheduled while measuring). Each
endpoint is then hit by ``--clients`` client processes, each on its own keep-alive connection, back to back
(``--think-ms`` apart) for ``--seconds``; latency is measured by the client, from sending the request to reading
the last byte. Before that, one client alone for a second gives the endpoint's service time ("1 client"): what
the 16 queue behind (back to back on 2 cores, the p99 is ~8-15x it, so an uncached endpoint must cost ~5 ms of
CPU, DuckDB's threads and Python together, to make 100 ms). The peer, measured first and last in the same run, is
a WSGI app that does nothing on the same threaded werkzeug server: the floor this machine sets, whatever the app
does. The dashboard's 1 s response cache is on as in production; ``--cache-seconds 0`` measures every request
computed from the store. A file kept with ``--db`` is reused, read with the clock moved back to its newest
request (so "the last hour" is full whenever it runs); ``--duckdb-threads`` sets DuckDB's threads for the run.

    .venv/bin/python benchmarks/bench_api.py [--rows 10000000] [--clients 16] [--seconds 10] [--db PATH]
                                             [--think-ms 0] [--cache-seconds 1] [--jobs] [--only TEXT] [--check]
                                             [--duckdb-threads N]
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _common import Budget, finish, header, parse_args, table, temp_dir
from werkzeug.serving import make_server

from pipeline import Monitor
from pipeline.clock import utc_datetime
from webapp.server import DashboardServer, QuietHandler

BUDGET = Budget(50.0, True, "p99 <= 50 ms")
BUDGET_UNCACHED = Budget(100.0, True, "p99 <= 100 ms")
ROUTE = "/api/items/%3Cint:item_id%3E"  # the route page measured: one of the 20 routes, 1 request in 20
# Ranges the page asks for: the default (the last hour), a custom range (three hours that ended an hour ago, as a
# drag to zoom or the range picker makes) and a day (beyond the budget's list: the tiers at work).
LAST_HOUR = "window=1h"
CUSTOM = "start={custom_start}&end={custom_end}"
# (label, path, budgeted): every endpoint the page calls, on the overview, on a route page and for one request.
ENDPOINTS: list[tuple[str, str, bool]] = [
    ("performance 1h", f"/api/metrics/performance?{LAST_HOUR}", True),
    ("timeline 1h", f"/api/timeline?{LAST_HOUR}", True),
    ("routes 1h", f"/api/routes?{LAST_HOUR}", True),
    ("queries 1h", f"/api/queries?{LAST_HOUR}", True),
    ("memory 1h", f"/api/memory?{LAST_HOUR}", True),
    ("errors 1h", f"/api/errors?{LAST_HOUR}", True),
    ("alerts", "/api/alerts", True),
    ("alert history 1h", f"/api/alerts/history?{LAST_HOUR}", True),
    ("silences", "/api/silences", True),
    ("health", "/api/health", True),
    ("custom: performance 3h", f"/api/metrics/performance?{CUSTOM}", True),
    ("custom: timeline 3h", f"/api/timeline?{CUSTOM}", True),
    ("custom: routes 3h", f"/api/routes?{CUSTOM}", True),
    ("custom: queries 3h", f"/api/queries?{CUSTOM}", True),
    ("custom: memory 3h", f"/api/memory?{CUSTOM}", True),
    ("custom: errors 3h", f"/api/errors?{CUSTOM}", True),
    ("route: totals 1h", f"/api/routes?{LAST_HOUR}&route={ROUTE}", True),
    ("route: timeline 1h", f"/api/timeline?{LAST_HOUR}&route={ROUTE}", True),
    ("route: histogram 1h", f"/api/histogram?{LAST_HOUR}&route={ROUTE}", True),
    ("route: statuses 1h", f"/api/statuses?{LAST_HOUR}&route={ROUTE}", True),
    ("route: slowest 1h", f"/api/requests/slowest?{LAST_HOUR}&route={ROUTE}", True),
    ("route: queries 1h", f"/api/queries?{LAST_HOUR}&route=/route/3", True),
    ("route: errors 1h", f"/api/errors?{LAST_HOUR}&route={ROUTE}", True),
    ("request: its queries", "/api/requests/queries?{request}", True),
    ("day: timeline 24h", "/api/timeline?window=24h", False),
    ("day: routes 24h", "/api/routes?window=24h", False),
    ("day: route timeline 24h", f"/api/timeline?window=24h&route={ROUTE}", False),
]
ROUTES = 20
SPAN_DAYS = 6  # inside the 7-day raw retention, so the retention job deletes nothing during the run

GENERATE = f"""
SELECT setseed(0.42);
INSERT INTO requests
SELECT $now - INTERVAL {SPAN_DAYS} DAY + to_microseconds(
           (i * ({SPAN_DAYS} * 86400000000 // $rows))::BIGINT)                       AS ts,
       CASE WHEN i % {ROUTES} = 0 THEN '/api/items/<int:item_id>'
            ELSE '/route/' || (i % {ROUTES}) END                                   AS route,
       CASE WHEN i % 7 = 0 THEN 'POST' ELSE 'GET' END                              AS method,
       CASE WHEN random() < 0.02 THEN 500 ELSE 200 END                             AS status,
       -- log-normal around 20 ms (Box-Muller)
       20 * exp(0.6 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))      AS duration_ms,
       i                                                                          AS request_id,
       (i % 5)::INTEGER                                                            AS query_count,
       (1000 + i % 4)::INTEGER                                                     AS pid,
       'bench-host'                                                                AS host
FROM range($rows) t(i);
-- one query for one request in ten (request j = 10 i + i % 10, every route), a millisecond before it ended
INSERT INTO queries
SELECT $now - INTERVAL {SPAN_DAYS} DAY + to_microseconds(
           ((10 * i + i % 10) * ({SPAN_DAYS} * 86400000000 // $rows) - 1000)::BIGINT),
       'SELECT * FROM table_' || (i % 50) || ' WHERE id = ?', i % 50, NULL,
       2 * exp(0.8 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())),
       random() > 0.001, 10 * i + i % 10,
       CASE WHEN (10 * i + i % 10) % {ROUTES} = 0 THEN '/api/items/<int:item_id>'
            ELSE '/route/' || ((10 * i + i % 10) % {ROUTES}) END,
       (1000 + (10 * i + i % 10) % 4)::INTEGER, 'bench-host'
FROM range($queries) t(i);
-- one failed request in ten raised an exception: three kinds, by where they were raised
INSERT INTO exceptions
SELECT ts, route, request_id,
       ['KeyError', 'app.errors.PaymentDeclined', 'ZeroDivisionError'][request_id % 3 + 1],
       'app.views', ['load_item', 'checkout', 'ratio'][request_id % 3 + 1], 40 + request_id % 3,
       ['?', 'card ending ? declined for ?', 'division by zero'][request_id % 3 + 1], request_id % 3, pid, host
FROM requests WHERE status = 500 AND request_id % 10 = 0;
INSERT INTO process_samples
SELECT $now - INTERVAL {SPAN_DAYS} DAY + INTERVAL 10 SECOND * (i // 4), (1000 + i % 4)::INTEGER,
       'bench-host', (200 + (i % 4) * 50) * 1048576 + (i % 997) * 4096, 1500 * 1048576, random() * 100, 12,
       40, i, NULL
FROM range({SPAN_DAYS} * 8640 * 4) t(i);
"""


def generate(db: Path, rows: int) -> float:
    """Create the schema with a Monitor, then fill the raw tables with DuckDB SQL; returns seconds."""
    import duckdb

    Monitor(db_path=db, jobs=False, memory_interval_seconds=None).close()  # the schema, by migration
    started = time.perf_counter()
    con = duckdb.connect(str(db))
    try:
        for statement in filter(str.strip, GENERATE.split(";")):
            values = {"rows": rows, "queries": rows // 10, "now": utc_datetime(time.time())}
            params = {k: v for k, v in values.items() if f"${k}" in statement}
            con.execute(statement, params)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return time.perf_counter() - started


class ShiftedClock:
    """The system clock moved back so that "now" is just after the newest stored request: a file reused hours
    after it was generated still has its last hour (and the custom range) full of rows."""

    def __init__(self, newest_epoch_seconds: float) -> None:
        self.offset_seconds = max(0.0, time.time() - newest_epoch_seconds - 1.0)

    def now(self) -> float:
        return time.time() - self.offset_seconds

    def monotonic(self) -> float:
        return time.monotonic()


def newest_request(db: Path) -> float:
    """Epoch seconds of the newest request stored in ``db`` (read before an owner opens it)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT epoch(max(ts)) FROM requests").fetchone()
    finally:
        con.close()
    assert row is not None and row[0] is not None, f"{db} holds no request"
    return float(row[0])


def client(port: int, path: str, seconds: float, start_at: float, think_seconds: float, out: Any) -> None:
    """One client process: a keep-alive connection, requests back to back (or ``think_seconds`` apart); sends
    its latencies in ms."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    errors = 0
    while time.time() < start_at:  # every client starts together
        time.sleep(0.001)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - sent) * 1000)
        errors += response.status != 200
        if think_seconds:
            time.sleep(think_seconds)
    conn.close()
    out.send((latencies, errors))


def bare_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The peer: a WSGI app that does nothing, on the same threaded werkzeug server (this machine's floor)."""
    body = b'{"ok":true}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def run_endpoint(port: int, path: str, clients: int, seconds: float, think_seconds: float = 0.0
                 ) -> tuple[list[float], int]:
    ctx = multiprocessing.get_context("spawn")  # never fork the owner: its children would become producers
    pipes, procs = [], []
    start_at = time.time() + 1.0 + clients * 0.05
    for _ in range(clients):
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=client, args=(port, path, seconds, start_at, think_seconds, sender))
        proc.start()
        pipes.append(receiver)
        procs.append(proc)
    latencies: list[float] = []
    errors = 0
    for receiver, proc in zip(pipes, procs, strict=True):
        got, failed = receiver.recv()
        latencies += got
        errors += failed
        proc.join()
    return latencies, errors


def request_paths(monitor: Monitor) -> dict[str, str]:
    """The values the paths leave open: the custom range (three hours ending an hour before the newest request)
    and one request of the last hour that ran a query (what a click on a slow request opens)."""
    assert monitor.store is not None
    newest = monitor.store.scalar("SELECT max(ts) FROM requests")
    end = newest - timedelta(hours=1)
    host, pid, request_id, ts = monitor.store.fetchall(
        "SELECT r.host, r.pid, r.request_id, r.ts FROM requests r JOIN queries q USING (host, pid, request_id) "
        "WHERE r.ts > $since ORDER BY r.duration_ms DESC LIMIT 1", {"since": newest - timedelta(hours=1)})[0]
    request = urlencode({"host": host, "pid": pid, "requestId": request_id, "at": ts.isoformat() + "Z"})
    return {"custom_start": (end - timedelta(hours=3)).isoformat() + "Z", "custom_end": end.isoformat() + "Z",
            "request": request}


def main() -> int:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rows", type=int, default=10_000_000, help="request rows (default 10M)")
        parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
        parser.add_argument("--seconds", type=float, default=10.0, help="seconds per endpoint (default 10)")
        parser.add_argument("--db", type=Path, help="keep the generated file here (reused if it exists, with the "
                                                    "clock moved back to its newest request)")
        parser.add_argument("--think-ms", type=float, default=0.0,
                            help="pause between a client's requests (default 0: back to back, the worst case)")
        parser.add_argument("--jobs", action="store_true",
                            help="keep the owner's scheduled jobs running while measuring (default: they run "
                                 "once before; their own cost is measured by their benchmarks)")
        parser.add_argument("--cache-seconds", type=float, default=None,
                            help="DUCKPULSE_CACHE_SECONDS for the server (default: the dashboard's, 1 s; "
                                 "0 measures every request computed from the store)")
        parser.add_argument("--duckdb-threads", type=int, default=None,
                            help="SET threads on the owner's DuckDB instance before serving (default: DuckDB's)")
        parser.add_argument("--only", default="", help="measure only the endpoints whose label contains this")

    args = parse_args(__doc__.splitlines()[0], extra)
    pace = f"{args.think_ms:g} ms apart" if args.think_ms else "back to back"
    header(f"dashboard API: {args.clients} concurrent clients ({pace}), {args.rows:,} request rows")
    with temp_dir("duckpulse-bench-api-") as tmp:
        db = args.db or tmp / "bench.duckdb"
        if not db.exists():
            print(f"   generating {args.rows:,} requests in SQL: {generate(db, args.rows):.1f} s", flush=True)
        clock = ShiftedClock(newest_request(db))
        monitor = Monitor(db_path=db, memory_interval_seconds=10.0, jobs=args.jobs, clock=clock)
        try:
            warm = time.perf_counter()
            monitor.run_jobs_now()  # the first rollup over the history happens here, not during the run
            print(f"   owner jobs run once before measuring: {time.perf_counter() - warm:.1f} s", flush=True)
            if args.duckdb_threads:
                assert monitor.store is not None
                with monitor.store.lock:
                    monitor.store.con.execute(f"SET threads = {int(args.duckdb_threads)}")
            config = {} if args.cache_seconds is None else {"DUCKPULSE_CACHE_SECONDS": args.cache_seconds}
            values = request_paths(monitor)
            with DashboardServer(monitor, "127.0.0.1", 0, config=config) as server:
                cache_seconds = server.app.extensions["duckpulse"]["settings"].cache_seconds
                budget = BUDGET if cache_seconds > 0 else BUDGET_UNCACHED
                print(f"   response cache: {cache_seconds:g} s; custom range {values['custom_start']} to "
                      f"{values['custom_end']}", flush=True)
                peer = make_server("127.0.0.1", 0, bare_app, threaded=True, request_handler=QuietHandler)
                threading.Thread(target=peer.serve_forever, daemon=True).start()
                rows, verdicts = [], []
                chosen = [(label, path.format(**values), budgeted, server.port)
                          for label, path, budgeted in ENDPOINTS if args.only in label]
                plan = [("peer: bare werkzeug (first)", "/", False, peer.server_port), *chosen,
                        ("peer: bare werkzeug (last)", "/", False, peer.server_port)]
                for label, path, budgeted, port in plan:
                    # One client alone first (it also warms caches and connections): the service time, which
                    # 16 clients on this machine's cores queue behind (p99 ~ 8-15x it on 2 cores).
                    alone, _ = run_endpoint(port, path, 1, 1.0)
                    latencies, errors = run_endpoint(port, path, args.clients, args.seconds, args.think_ms / 1000)
                    p50, p99 = nearest_rank(latencies, 0.5), nearest_rank(latencies, 0.99)
                    verdict = budget.verdict(p99) if budgeted else ""
                    if budgeted:
                        verdicts.append(verdict)
                    service = nearest_rank(alone, 0.5)
                    rows.append((label, f"{service:.1f}", f"{p50:.1f}", f"{p99:.1f}", f"{max(latencies):.1f}",
                                 f"{len(latencies) / args.seconds:.0f}", errors, verdict))
                    print(f"   {label}: 1 client {service:.1f} ms; p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
                peer.shutdown()
        finally:
            monitor.close()
    print()
    print(table(("endpoint", "1 client p50 ms", "p50 ms", "p99 ms", "max ms", "req/s", "errors", budget.label), rows))
    return finish(verdicts, args.check)


if __name__ == "__main__":
    sys.exit(main())
