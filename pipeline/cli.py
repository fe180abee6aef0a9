"""The ``duckpulse`` command."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import DuckPulseError
from .objectstore import is_object_url
from .settings import MIN_FLUSH_INTERVAL_SECONDS

# Starts the dashboard beside the owner: (monitor, host, port) -> a running server with ``url`` and ``stop()``.
# pipeline never imports webapp (an import-linter contract), so webapp's entry point (webapp.cli:main) passes it in.
DashboardStarter = Callable[[Any, str, int], Any]
# Raises (ConfigError) for what the starter would refuse: a public host without DUCKPULSE_TOKEN, a bad DUCKPULSE_*
# value. Called before any monitor exists, so a refused `serve` or `demo` records nothing, not even a memory sample.
DashboardCheck = Callable[[str, int], None]


def _serve(args: argparse.Namespace) -> int:
    from .monitor import Monitor

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    starter, check = _dashboard(args)
    if args.dashboard_only and starter is None:
        raise DuckPulseError("--dashboard-only serves the dashboard, which needs the webapp package: install "
                             "duckpulse from a checkout with its webapp, or run `python -m webapp serve ...`")
    if check is not None:
        check(args.host, args.port)  # before the monitor: a refused bind leaves no file and no row behind
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A dedicated owner: another owner is an error, not a handover. With --dashboard-only, never the owner: the
    # dashboard reads what the file's owner publishes (webapp/published.py).
    options: dict[str, Any] = {"role": "producer" if args.dashboard_only else "owner"}
    if args.spool is not None:
        # A directory (producers on this machine), or a fleet's object storage (producers on any host).
        options["spool_url" if is_object_url(args.spool) else "ingest_dir"] = args.spool
    if args.interval is not None:
        options["flush_interval_seconds"] = args.interval
    monitor = Monitor(db_path=args.db, config=args.config, **options)
    if args.dashboard_only:
        print(f"duckpulse: serving the dashboard of {args.db} from what its owner publishes, never opening the "
              f"file (pid {monitor.pid}); stop with Ctrl-C or SIGTERM", flush=True)
    else:
        rules = len(monitor.alerts.rules) if monitor.alerts is not None else 0
        sources = monitor.stats().get("ingest", {}).get("sources") or [monitor.ingest_dir]
        _check_object_store(monitor)
        print(f"duckpulse: owning {args.db}, ingesting segments from {' and '.join(map(str, sources))} "
              f"(pid {monitor.pid}), "
              f"configuration {monitor.settings.config_file or 'none'}, {rules} alert rules; stop with Ctrl-C or "
              "SIGTERM", flush=True)
    dashboard = None
    try:
        if starter is not None:
            dashboard = starter(monitor, args.host, args.port)
            print(f"duckpulse: dashboard at {dashboard.url}", flush=True)
        else:
            print("duckpulse: no dashboard (the webapp package is not installed)", flush=True)
        while not stop.wait(monitor.flush_interval_seconds):
            pass
    finally:
        if dashboard is not None:
            dashboard.stop()  # no new requests while the last ingest runs
        monitor.close()  # a last flush and ingest
    if not args.dashboard_only:
        print(f"duckpulse: stopped; {monitor.stats().get('ingest', {}).get('rows', 0)} rows ingested", flush=True)
    return 0


def _check_object_store(monitor: Any) -> None:
    """Say at start-up, not only in the ingest's counts, when the fleet's bucket cannot be used (the owner runs on:
    the store may come back)."""
    from .errors import ObjectStoreError
    from .objectstore import ObjectStore

    url = monitor.settings.owner.storage.spool_url
    if url is None:
        return
    try:
        ObjectStore(url, monitor.settings.object_store).check_bucket()
    except ObjectStoreError as exc:
        print(f"duckpulse: warning: {exc}; ingesting as soon as it answers", file=sys.stderr, flush=True)


def _config_check(args: argparse.Namespace) -> int:
    from . import config as settings

    path = settings.find_config_file(args.file, args.db, os.environ)
    if path is None:
        raise DuckPulseError("no configuration file to check: give its path (duckpulse config check FILE), set "
                             f"{settings.CONFIG_VARIABLE}, or put {settings.CONFIG_FILE_NAME} beside the database "
                             "(--db PATH)")
    # The file alone: DUCKPULSE_* variables would hide its mistakes (they are checked where they are read).
    checked = settings.load(db_path=args.db, config=path, environ={})
    print(f"duckpulse: {path} is valid", flush=True)
    for line in settings.describe(checked):
        print(f"  {line}")
    return 0


def _dashboard(args: argparse.Namespace) -> tuple[DashboardStarter | None, DashboardCheck | None]:
    """The dashboard's starter and its check: the ones handed to ``main``, else webapp's when installed."""
    starter: DashboardStarter | None = getattr(args, "dashboard", None)
    check: DashboardCheck | None = getattr(args, "dashboard_check", None)
    if starter is None:
        # The console script's serve and demo still show the dashboard: webapp is looked up at run time, only
        # when installed, as DuckPulse(dashboard=True) does (pipeline never imports webapp at module level).
        try:
            server = importlib.import_module("webapp.server")
        except ImportError:
            return None, None
        starter, check = getattr(server, "start", None), getattr(server, "check", None)
    return starter, check


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run

    settings = DemoSettings(db_path=Path(args.db), duration_seconds=args.duration, workers=args.workers,
                            host=args.host, port=args.port, rate_per_second=args.rate,
                            backfill_hours=args.backfill_hours)
    starter, check = _dashboard(args)
    if check is not None:
        check(settings.host, settings.port)  # before the backfill and the monitor: a refusal records nothing
    try:
        run(settings, dashboard=starter)
    except KeyboardInterrupt:  # Ctrl-C while starting or finishing: the monitor was closed on the way out
        print("duckpulse demo: interrupted", file=sys.stderr)
        return 130
    return 0


def _non_negative(kind: type[int] | type[float], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


def _interval(text: str) -> float:
    """``serve --interval``: a number of seconds, not below the flusher's floor."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not MIN_FLUSH_INTERVAL_SECONDS <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= {MIN_FLUSH_INTERVAL_SECONDS} "
                                         "(shorter intervals only burn CPU; 1 is the default)")
    return value


def _compact(args: argparse.Namespace) -> int:
    from .retention import compact

    result = compact(args.db)
    now = _megabytes(result.bytes_before)
    if result.wal_bytes_before:
        now += f" ({_megabytes(result.bytes_before - result.wal_bytes_before)} and a write-ahead log of " \
               f"{_megabytes(result.wal_bytes_before)})"
    if result.compacted:
        print(f"duckpulse: compacted {result.path}: {now} -> {_megabytes(result.bytes_after)}", flush=True)
    else:
        print(f"duckpulse: nothing to reclaim in {result.path}: it takes {now}, a rewrite would take "
              f"{_megabytes(result.rewritten_bytes)}; the file is left as it was", flush=True)
    return 0


def _megabytes(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.2f} MB" if size_bytes < 10e6 else f"{size_bytes / 1e6:,.1f} MB"


def _alerts_backtest(args: argparse.Namespace) -> int:
    from .alerts.backtest import backtest_file

    if not args.db:
        raise DuckPulseError("which database? Pass --db PATH (or set DUCKPULSE_DB_PATH)")
    print(backtest_file(args.db, args.rules, since=args.since, step=args.step, until=args.until,
                        history_dir=args.history), flush=True)
    return 0


# `duckpulse sql`: the tables a query can read, and the time column that splits history from the live file.
SQL_FORMATS = ("table", "csv", "json")
# Beyond this age, `duckpulse sql` says that what it reads is older than an owner running well publishes.
PUBLISHED_FRESH_SECONDS = 60.0
SQL_EXAMPLE = 'duckpulse sql "SELECT route, count(*) AS n FROM requests GROUP BY route ORDER BY n DESC"'


def _history_and_live(db_path: Path, history_dir: Path) -> tuple[Any, list[str]]:
    """``pipeline.history.connect`` over what the owner publishes (the archive and its recent minutes, one table
    per name); for a file nothing was ever published for (an older duckpulse wrote it), the live file instead.

    The live file (attached when no owner holds it) keeps every row from its oldest one on (retention only cuts
    a prefix), so a table is then the history's rows older than the live file's oldest row, then the live rows.
    Returns the connection and notes for the user (e.g. that what was published is old).
    """
    from . import history
    from .archive import TABLES
    from .store import quote_identifier

    notes: list[str] = []
    if not db_path.exists() and not history_dir.is_dir():
        raise DuckPulseError(f"no database at {db_path} and no history at {history_dir}: pass --db PATH (or set "
                             "DUCKPULSE_DB_PATH) and, if the history is elsewhere, --history DIR "
                             "(DUCKPULSE_HISTORY_DIR); `duckpulse demo --duration 30` makes one to try")
    con = history.connect(history_dir, db_path)
    published = history.published_at(history_dir, con)
    live = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'live'"
                                      " AND schema_name = 'main'").fetchall()}
    archived = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE database_name = 'memory'"
                                          " AND schema_name = 'main' AND NOT internal").fetchall()}
    if published is not None:
        # An owner that closed published at its close: only a running one can be behind.
        age_seconds = time.time() - published
        if age_seconds > PUBLISHED_FRESH_SECONDS and history.owner_running(db_path):
            notes.append(f"the owner of {db_path} last published {age_seconds:.0f} s ago, so newer rows are "
                         "missing (is its scheduler running? Monitor(jobs=False) publishes only in run_jobs_now())")
    elif db_path.exists() and not live:
        notes.append(f"{db_path} is held by its owner, which has not published its recent rows yet (it does "
                     "every 15 s), so only the archived history is read")
    # Identifiers come from DuckDB's own catalog and the archive's allow-list, always quoted.
    for table in sorted(live):
        name, live_name = quote_identifier(table), f"live.{quote_identifier(table)}"
        column = TABLES.get(table)
        if table in archived and column is not None:
            old, ts = quote_identifier(f"history_{table}"), quote_identifier(column)
            con.execute(f"ALTER VIEW {name} RENAME TO {old}")
            con.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (date, hour) FROM {old} WHERE {ts} < "
                        f"coalesce((SELECT min({ts}) FROM {live_name}), 'infinity'::TIMESTAMP) "
                        f"UNION ALL BY NAME SELECT * FROM {live_name}")
        else:  # not archived (yet), or a table the live file holds whole (series, alert_state, ...)
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {live_name}")
    return con, notes


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _sql(args: argparse.Namespace) -> int:
    import csv
    import json

    import duckdb

    from . import readonly

    if not args.query.strip():
        raise DuckPulseError(f"no query given; for example: {SQL_EXAMPLE}")
    db_path = Path(args.db)
    from . import history

    # A history in object storage (s3://...) is read through a local cache brought up to date first.
    history_dir = history.local_history(args.history) if args.history else db_path.with_name(db_path.name + ".history")
    con, notes = _history_and_live(db_path, history_dir)
    try:
        # Views and the live file are in place: from here the connection reads them and changes nothing anywhere.
        readonly.lock_down(con, [history_dir], [db_path])
        for note in notes:
            print(f"duckpulse: note: {note}", file=sys.stderr)
        try:
            readonly.check_query(con, args.query)
            cursor = con.execute(args.query)
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall() if columns else []
        except duckdb.Error as exc:
            tables = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE database_name = "
                                                "'memory' AND schema_name = 'main' AND NOT internal "
                                                "ORDER BY 1").fetchall()]
            if isinstance(exc, duckdb.PermissionException):
                raise readonly.WriteRefused(
                    f"the query was refused: {exc}\nduckpulse sql reads the history ({history_dir}) and the live "
                    f"file ({db_path}) and nothing else, and writes nowhere; to join other files, open "
                    "pipeline.history.connect() in Python") from None
            raise DuckPulseError(f"the query failed: {exc}\nThe tables are: {', '.join(tables) or '(none yet)'}; "
                                 f"for example: {SQL_EXAMPLE}") from None
    finally:
        con.close()
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    elif args.format == "json":
        def plain(value: Any) -> Any:  # timestamps as ISO 8601, decimals and the rest as text
            return value.isoformat() if hasattr(value, "isoformat") else str(value)

        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=plain, indent=1))
    else:
        shown = rows[:args.max_rows]
        cells = [columns, *[[_cell(v) for v in row] for row in shown]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        print("\n".join(lines))
        more = len(rows) - len(shown)
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}"
              + (f"; {more} not shown: raise --max-rows or use --format csv)" if more else ")"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duckpulse", description="Performance monitoring stored in DuckDB.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="own a DuckDB file and ingest the segments producers spool")
    serve.add_argument("--db", required=True, help="the DuckDB file to own")
    serve.add_argument("--spool", default=None,
                       help="the spool directory producers write to (default $DUCKPULSE_SPOOL_DIR, else <db>.spool), "
                            "or a fleet's spool in object storage, s3://bucket/prefix, which hosts upload to "
                            "(Monitor(spool_url=...)); the endpoint and region come from [object_store] or the AWS "
                            "variables, the credentials from the AWS environment and files")
    serve.add_argument("--config", default=None, metavar="FILE",
                       help="duckpulse.toml: alert rules, notifiers, retention, archive, DuckDB memory (default "
                            "$DUCKPULSE_CONFIG, else duckpulse.toml beside the database)")
    serve.add_argument("--interval", type=_interval, default=None,
                       help=f"seconds between ingests, at least {MIN_FLUSH_INTERVAL_SECONDS} (default: the flush "
                            "interval of the configuration, 1)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address the dashboard binds to (default 127.0.0.1; any other needs DUCKPULSE_TOKEN)")
    serve.add_argument("--port", type=int, default=8050, help="port of the dashboard (default 8050; 0: any free)")
    serve.add_argument("--dashboard-only", action="store_true",
                       help="serve only the dashboard, over what the file's owner (an app, another serve) publishes, "
                            "at most ~15 s behind; the file is never opened")
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="a sample bookshop app under generated traffic, with the dashboard",
                          description="Run a sample bookshop (Flask + SQLite, instrumented with DuckPulse) under "
                          "generated traffic, with the jobs, alerts printed here and the dashboard served; at the "
                          "end, print p50/p95/p99 per route.")
    demo.add_argument("--duration", type=_non_negative(float, "a number of seconds >= 0"), default=None,
                      metavar="SECONDS", help="seconds of traffic (default: until Ctrl-C)")
    demo.add_argument("--workers", type=_non_negative(int, "a number of processes >= 0"), default=0, metavar="N",
                      help="run the bookshop in N producer processes, this one owning the file (default 0: "
                           "everything in one process)")
    demo.add_argument("--db", default="duckpulse-demo.duckdb", help="the DuckDB file to write "
                      "(default duckpulse-demo.duckdb; kept afterwards for `duckpulse sql` and the notebooks)")
    demo.add_argument("--host", default="127.0.0.1", help="address of the dashboard (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8050, help="port of the dashboard (default 8050; 0: any free)")
    demo.add_argument("--rate", type=_non_negative(float, "a rate >= 0"), default=60.0, metavar="PER_SECOND",
                      help="mean requests per second per process (default 60)")
    demo.add_argument("--backfill-hours", type=_non_negative(float, "a number of hours >= 0"), default=0.0,
                      metavar="HOURS", help="first record HOURS of synthetic past history, archived for the "
                      "notebooks (needs a new --db file; default 0)")
    demo.set_defaults(func=_demo)

    compact = sub.add_parser("compact", help="rewrite a DuckDB file no owner holds, giving deleted rows' space back")
    compact.add_argument("--db", required=True, help="the DuckDB file to compact")
    compact.set_defaults(func=_compact)

    alerts = sub.add_parser("alerts", help="alert rules").add_subparsers(dest="alerts_command", required=True)
    backtest = alerts.add_parser("backtest", help="how often, and how long, rules would have fired over history")
    backtest.add_argument("rules", help="a TOML file of [[rule]] tables")
    backtest.add_argument("--since", default="7d", help="how far back to replay: 90m, 12h, 7d, 2w (default 7d)")
    backtest.add_argument("--db", default=os.environ.get("DUCKPULSE_DB_PATH"),
                          help="the DuckDB file (default $DUCKPULSE_DB_PATH); no owner may hold it")
    backtest.add_argument("--step", default="60s", help="time between evaluations (default 60s)")
    backtest.add_argument("--until", default=None, help="end of the replay, ISO 8601 UTC (default now)")
    backtest.add_argument("--history", default=os.environ.get("DUCKPULSE_HISTORY_DIR"),
                          help="the Parquet history read while an owner runs (its file is never opened then; "
                               "default $DUCKPULSE_HISTORY_DIR, else <db>.history)")
    backtest.set_defaults(func=_alerts_backtest)

    config = sub.add_parser("config", help="the configuration file").add_subparsers(dest="config_command",
                                                                                    required=True)
    check = config.add_parser("check", help="validate a duckpulse.toml; errors name the file, line and field")
    check.add_argument("file", nargs="?", default=None,
                       help="the file (default $DUCKPULSE_CONFIG, else duckpulse.toml beside --db)")
    check.add_argument("--db", default=os.environ.get("DUCKPULSE_DB_PATH"),
                       help="the database the file configures (paths in it are checked relative to the file)")
    check.set_defaults(func=_config_check)

    sql = sub.add_parser("sql", help="run a SQL query over the history and the live file",
                         description="Run one SQL query (DuckDB's dialect) over the Parquet history and the live "
                         "DuckDB file (when no owner holds it): tables requests, queries, process_samples, points, "
                         f"series, rollups_1m, rollups_1h, alert_events, ... For example: {SQL_EXAMPLE}")
    sql.add_argument("query", help="the SQL to run")
    sql.add_argument("--db", default=os.environ.get("DUCKPULSE_DB_PATH") or "duckpulse-demo.duckdb",
                     help="the DuckDB file (default $DUCKPULSE_DB_PATH, else duckpulse-demo.duckdb)")
    sql.add_argument("--history", default=os.environ.get("DUCKPULSE_HISTORY_DIR"),
                     help="the Parquet history directory, or s3://bucket/history (default $DUCKPULSE_HISTORY_DIR, "
                          "else <db>.history)")
    sql.add_argument("--format", choices=SQL_FORMATS, default="table", help="output format (default table)")
    sql.add_argument("--max-rows", type=_non_negative(int, "a number of rows >= 0"), default=1000, metavar="N",
                     help="rows printed by the table format (default 1000; csv and json print every row)")
    sql.set_defaults(func=_sql)
    return parser


def main(argv: Sequence[str] | None = None, *, dashboard: DashboardStarter | None = None,
         dashboard_check: DashboardCheck | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.dashboard, args.dashboard_check = dashboard, dashboard_check
    try:
        return int(args.func(args))
    except DuckPulseError as exc:
        print(f"duckpulse: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
