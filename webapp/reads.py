"""What the API reads: the named queries of ``sql/dashboard.sql``, shaped into JSON-ready values.

Every function takes a DuckDB read cursor (``Store.reader()``, one per serving thread, so concurrent clients read
in parallel) and bound values; none of them builds SQL text.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from pipeline import sqlfiles
from pipeline.percentiles import EXACT_UP_TO_SECONDS, percentiles

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


def _number(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _rate(errors: int, count: int) -> float:
    return errors / count if count else 0.0


def performance(cursor: duckdb.DuckDBPyConnection, span: TimeRange, slow_limit: int) -> dict[str, Any]:
    """The plan's ``/api/metrics/performance`` body, less its timestamp."""
    req = rows(cursor, "performance-requests", _range(span))[0]
    by_route = rows(cursor, "performance-by-route", _range(span))
    qry = rows(cursor, "performance-queries", _range(span))[0]
    slow = rows(cursor, "slow-queries", {**_range(span), "limit": slow_limit})
    mem = rows(cursor, "performance-memory", _range(span))[0]
    return {
        "requests": {
            "total": int(req["total"]),
            "byRoute": {r["route"]: int(r["count"]) for r in by_route},
            "avgDuration": _number(req["avg_ms"]),
            "p95Duration": _number(req["p95_ms"]),
        },
        "queries": {
            "total": int(qry["total"]),
            "avgDuration": _number(qry["avg_ms"]),
            "slowQueries": [
                {"fingerprint": s["fingerprint"], "count": int(s["count"]), "avgDuration": _number(s["avg_ms"]),
                 "p95Duration": _number(s["p95_ms"]), "maxDuration": _number(s["max_ms"])}
                for s in slow
            ],
        },
        "memory": {
            "current": None if mem["current_bytes"] is None else int(mem["current_bytes"]),
            "avg": _number(mem["avg_bytes"]),
        },
    }


def _percentiles(pcts: list[float] | None) -> dict[str, float | None]:
    p50, p95, p99 = pcts if pcts else (None, None, None)
    return {"p50": _number(p50), "p95": _number(p95), "p99": _number(p99)}


def route_stats(cursor: duckdb.DuckDBPyConnection, span: TimeRange) -> list[Row]:
    """Per route: count, errors, error rate, mean, max and p50/p95/p99 duration in ms, with how the percentiles
    were computed: exact (a sort of the raw rows) up to an hour, beyond it by ``pipeline.percentiles`` (merged
    sketches from the rollups, within their stated relative error), which spares sorting days of rows."""
    if span.seconds <= EXACT_UP_TO_SECONDS:
        return [
            {"route": r["route"], "count": int(r["count"]), "errors": int(r["errors"]),
             "errorRate": _rate(r["errors"], r["count"]), "avg": _number(r["avg_ms"]), "max": _number(r["max_ms"]),
             **_percentiles(r["pcts"]), "method": "exact", "errorBound": 0.0}
            for r in rows(cursor, "route-stats", _range(span))
        ]
    totals = rows(cursor, "route-totals", _range(span))
    if not totals:
        return []
    # percentiles() takes [start, end); the API's ranges are closed, so end moves by its finest unit.
    frame = percentiles(cursor, "request_duration", start=_epoch(span.start),
                        end=_epoch(span.end + timedelta(microseconds=1)), by="route")
    by_route = {r["route"]: r for r in frame.to_dict("records")}
    result = []
    for r in totals:
        pct = by_route.get(r["route"], {})
        result.append({"route": r["route"], "count": int(r["count"]), "errors": int(r["errors"]),
                       "errorRate": _rate(r["errors"], r["count"]), "avg": _number(r["avg_ms"]),
                       "max": _number(r["max_ms"]), "p50": _number(pct.get("p50")), "p95": _number(pct.get("p95")),
                       "p99": _number(pct.get("p99")), "method": str(pct.get("method", "exact")),
                       "errorBound": float(pct.get("error_bound", 0.0))})
    return result


def _epoch(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


def route_series(cursor: duckdb.DuckDBPyConnection, span: TimeRange, step: timedelta,
                 route: str | None) -> RawJson:
    """Per route, the non-empty ``step`` buckets: count, errors, error rate and p50/p95/p99 in ms (JSON text:
    a thousand points are shaped by DuckDB in C++ instead of one Python dict each)."""
    row = cursor.execute(sqlfiles.query(SQL_FILE, "route-series"),
                         {**_range(span), "step": step, "route": route}).fetchone()
    assert row is not None
    return RawJson(row[0])


def query_fingerprints(cursor: duckdb.DuckDBPyConnection, span: TimeRange, limit: int,
                       threshold: int) -> list[Row]:
    """Per fingerprint: count, failures, total/mean/p95/max ms, routes and the N+1 flags."""
    return [
        {"fingerprint": r["fingerprint"],
         # A string: the 64-bit id does not survive JavaScript's 53-bit numbers.
         "fingerprintId": str(r["fingerprint_id"]),
         "name": r["name"], "count": int(r["count"]), "failures": int(r["failures"]),
         "totalDuration": _number(r["total_ms"]), "avgDuration": _number(r["avg_ms"]),
         "p95Duration": _number(r["p95_ms"]), "maxDuration": _number(r["max_ms"]),
         "routes": [route for route in r["routes"] if route is not None],
         "nPlusOne": r["n_plus_one_requests"] > 0,
         "nPlusOneRequests": int(r["n_plus_one_requests"]),
         "maxPerRequest": int(r["max_per_request"])}
        for r in rows(cursor, "query-fingerprints", {**_range(span), "limit": limit, "threshold": threshold})
    ]


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def memory(cursor: duckdb.DuckDBPyConnection, span: TimeRange, step: timedelta) -> list[Row]:
    """Per process: its latest sample, mean and peak RSS, and its RSS per ``step`` bucket."""
    points: dict[tuple[str, int], list[Row]] = {}
    for r in rows(cursor, "memory-series", {**_range(span), "step": step}):
        points.setdefault((r["host"], r["pid"]), []).append(
            {"t": iso(r["bucket"]), "avg": _number(r["avg_rss_bytes"]), "max": int(r["max_rss_bytes"])})
    return [
        {"host": r["host"], "pid": int(r["pid"]), "samples": int(r["samples"]), "current": int(r["rss_bytes"]),
         "avg": _number(r["avg_rss_bytes"]), "max": int(r["max_rss_bytes"]), "vms": int(r["vms_bytes"]),
         "cpuPercent": _number(r["cpu_percent"]), "numThreads": int(r["num_threads"]),
         "numFds": _optional_int(r["num_fds"]), "firstSeen": iso(r["first_seen"]),
         "lastSeen": iso(r["last_seen"]), "points": points.get((r["host"], r["pid"]), [])}
        for r in rows(cursor, "memory-per-process", _range(span))
    ]


def _labels(text: str) -> dict[str, Any]:
    labels = json.loads(text) if text else {}
    return labels if isinstance(labels, dict) else {}


def active_alerts(cursor: duckdb.DuckDBPyConnection) -> list[Row]:
    """Alerts pending or firing, most severe first."""
    return [
        {"rule": r["rule"], "labels": _labels(r["labels"]), "metric": r["metric"], "level": r["level"],
         "state": r["state"], "value": _number(r["value"]), "threshold": _number(r["threshold"]),
         "since": iso(r["since"]), "evaluatedAt": iso(r["evaluated_at"]), "message": r["message"]}
        for r in rows(cursor, "alerts-active", {})
    ]


def alert_history(cursor: duckdb.DuckDBPyConnection, span: TimeRange, rule: str | None, limit: int) -> list[Row]:
    """Alert transitions over the range, newest first."""
    return [
        {"ts": iso(r["ts"]), "rule": r["rule"], "labels": _labels(r["labels"]), "metric": r["metric"],
         "level": r["level"], "from": r["from_state"], "to": r["to_state"], "value": _number(r["value"]),
         "threshold": _number(r["threshold"]), "message": r["message"]}
        for r in rows(cursor, "alert-history", {**_range(span), "rule": rule, "limit": limit})
    ]


def silences(cursor: duckdb.DuckDBPyConnection, now: float, silence_id: str | None = None) -> list[Row]:
    """The silences in force at ``now``, or only the one ``silence_id`` names (sql/alerts.sql's own query)."""
    result = cursor.execute(sqlfiles.query("alerts.sql", "silences-active"),
                            {"now_us": int(now * 1_000_000), "silence_id": silence_id})
    return [
        {"id": sid, "matchers": _labels(matchers), "startsAt": iso_epoch(starts), "endsAt": iso_epoch(ends),
         "comment": comment, "createdAt": iso_epoch(created)}
        for sid, matchers, starts, ends, comment, created in result.fetchall()
    ]
