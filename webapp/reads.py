"""What the API reads: the named queries of ``sql/dashboard.sql``, shaped into JSON-ready values.

Every function takes a DuckDB read cursor (``Store.reader()``, one per serving thread, so concurrent clients read
in parallel) and bound values; none of them builds SQL text.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import duckdb

from pipeline import sqlfiles
from pipeline.clock import epoch_us, utc_datetime
from pipeline.rollup import epoch_of, floor_to

from .params import TimeRange, iso, iso_epoch

SQL_FILE = "dashboard.sql"
Row = dict[str, Any]


def rows(cursor: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any], sql_file: str = SQL_FILE) -> list[Row]:
    """Run one named block with bound values; each row as a dict keyed by column name."""
    result = cursor.execute(sqlfiles.query(sql_file, name), params)
    columns = [d[0] for d in result.description or ()]
    return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]


class RawJson(str):
    """JSON text DuckDB already wrote (``to_json``): passed through to the response as is."""


def _range(span: TimeRange) -> dict[str, Any]:
    return {"since": span.start, "until": span.end}


def number(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def rate(errors: int, count: int) -> float:
    return errors / count if count else 0.0


def performance(cursor: duckdb.DuckDBPyConnection, span: TimeRange, slow_limit: int, live_since: datetime,
                req: Row, by_route: dict[str, int]) -> dict[str, Any]:
    """The plan's ``/api/metrics/performance`` body, less its timestamp, around the request totals ``req`` and
    counts ``by_route`` (webapp/traffic.py); its p95 says how it was computed, and its memory counts live
    processes only (a sample at or after ``live_since``)."""
    qry = rows(cursor, "performance-queries", _range(span))[0]
    slow = rows(cursor, "slow-queries", {**_range(span), "limit": slow_limit})
    mem = rows(cursor, "performance-memory", {**_range(span), "live_since": live_since})[0]
    return {
        "requests": {
            "total": req["count"],
            "byRoute": by_route,
            "avgDuration": req["avg"],
            "p95Duration": req["p95"],
            "method": req["method"],
            "errorBound": req["errorBound"],
        },
        "queries": {
            "total": int(qry["total"]),
            "avgDuration": number(qry["avg_ms"]),
            "slowQueries": [
                {"fingerprint": s["fingerprint"], "count": int(s["count"]), "avgDuration": number(s["avg_ms"]),
                 "p95Duration": number(s["p95_ms"]), "maxDuration": number(s["max_ms"])}
                for s in slow
            ],
        },
        "memory": {
            "current": None if mem["current_bytes"] is None else int(mem["current_bytes"]),
            "avg": number(mem["avg_bytes"]),
            "liveProcesses": int(mem["live_processes"]),
        },
    }


def query_fingerprints(cursor: duckdb.DuckDBPyConnection, span: TimeRange, limit: int, threshold: int,
                       route: str | None = None) -> list[Row]:
    """Per fingerprint (of one route's requests, or all): count, failures, total/mean/p95/max ms, routes and the
    N+1 flags."""
    return [
        {"fingerprint": r["fingerprint"],
         # A string: the 64-bit id does not survive JavaScript's 53-bit numbers.
         "fingerprintId": str(r["fingerprint_id"]),
         "name": r["name"], "count": int(r["count"]), "failures": int(r["failures"]),
         "totalDuration": number(r["total_ms"]), "avgDuration": number(r["avg_ms"]),
         "p95Duration": number(r["p95_ms"]), "maxDuration": number(r["max_ms"]),
         "routes": [route for route in r["routes"] if route is not None],
         "nPlusOne": r["n_plus_one_requests"] > 0,
         "nPlusOneRequests": int(r["n_plus_one_requests"]),
         "maxPerRequest": int(r["max_per_request"])}
        for r in rows(cursor, "query-fingerprints",
                      {**_range(span), "limit": limit, "threshold": threshold, "route": route})
    ]


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def memory(cursor: duckdb.DuckDBPyConnection, span: TimeRange, step: timedelta,
           live_since: datetime) -> list[Row]:
    """Per process: its latest sample, mean and peak RSS, whether it is live (a sample at or after ``live_since``)
    or gone (then ``lastSeen`` says when it last reported), and its RSS in every ``step`` bucket of the range
    (null where it took no sample). Live processes first, most memory first; then gone ones, latest first."""
    found: dict[tuple[str, int], dict[datetime, Row]] = {}
    for r in rows(cursor, "memory-series", {**_range(span), "step": step}):
        found.setdefault((r["host"], r["pid"]), {})[r["bucket"]] = {
            "avg": number(r["avg_rss_bytes"]), "max": int(r["max_rss_bytes"])}
    grid = [(t, iso(t)) for t in buckets(span, step)]  # each bucket's time written once, not once per process
    processes = [
        {"host": r["host"], "pid": int(r["pid"]), "live": r["last_seen"] >= live_since,
         "samples": int(r["samples"]), "current": int(r["rss_bytes"]),
         "avg": number(r["avg_rss_bytes"]), "max": int(r["max_rss_bytes"]), "vms": int(r["vms_bytes"]),
         "cpuPercent": number(r["cpu_percent"]), "numThreads": int(r["num_threads"]),
         "numFds": _optional_int(r["num_fds"]), "firstSeen": iso(r["first_seen"]),
         "lastSeen": iso(r["last_seen"]),
         "points": [{"t": text, **found.get((r["host"], r["pid"]), {}).get(t, {"avg": None, "max": None})}
                    for t, text in grid]}
        for r in rows(cursor, "memory-per-process", _range(span))
    ]
    live = sorted((p for p in processes if p["live"]), key=lambda p: -p["current"])
    gone = sorted((p for p in processes if not p["live"]), key=lambda p: p["lastSeen"] or "", reverse=True)
    return live + gone


def buckets(span: TimeRange, step: timedelta) -> list[datetime]:
    """The start of every ``step`` bucket (aligned on the Unix epoch) that overlaps the range, oldest first."""
    seconds = int(step.total_seconds())
    first = utc_datetime(floor_to(epoch_of(span.start), seconds))
    return [first + step * i for i in range(int((span.end - first) / step) + 1)]


def _labels(text: str) -> dict[str, Any]:
    labels = json.loads(text) if text else {}
    return labels if isinstance(labels, dict) else {}


def active_alerts(cursor: duckdb.DuckDBPyConnection) -> list[Row]:
    """Alerts pending or firing, most severe first."""
    return [
        {"rule": r["rule"], "labels": _labels(r["labels"]), "metric": r["metric"], "level": r["level"],
         "state": r["state"], "value": number(r["value"]), "threshold": number(r["threshold"]),
         "since": iso(r["since"]), "evaluatedAt": iso(r["evaluated_at"]), "message": r["message"]}
        for r in rows(cursor, "alerts-active", {})
    ]


def alert_history(cursor: duckdb.DuckDBPyConnection, span: TimeRange, rule: str | None, limit: int) -> list[Row]:
    """Alert transitions over the range, newest first."""
    return [
        {"ts": iso(r["ts"]), "rule": r["rule"], "labels": _labels(r["labels"]), "metric": r["metric"],
         "level": r["level"], "from": r["from_state"], "to": r["to_state"], "value": number(r["value"]),
         "threshold": number(r["threshold"]), "message": r["message"]}
        for r in rows(cursor, "alert-history", {**_range(span), "rule": rule, "limit": limit})
    ]


def silences(cursor: duckdb.DuckDBPyConnection, now: float, silence_id: str | None = None) -> list[Row]:
    """The silences in force at ``now``, or only the one ``silence_id`` names (sql/alerts.sql's own query)."""
    result = cursor.execute(sqlfiles.query("alerts.sql", "silences-active"),
                            {"now_us": epoch_us(now), "silence_id": silence_id})
    return [
        {"id": sid, "matchers": _labels(matchers), "startsAt": iso_epoch(starts), "endsAt": iso_epoch(ends),
         "comment": comment, "createdAt": iso_epoch(created)}
        for sid, matchers, starts, ends, comment, created in result.fetchall()
    ]
