"""From a route to its status codes and slowest requests, and from one request to the queries it ran.

These read raw rows (kept for ``raw_days``, 7 by default): a request row is what carries its status code and its
request id, which ties it to its queries within its process (host, pid).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from .params import TimeRange, iso
from .reads import Row, number, rows

# A query's row is stamped when it ended, by a clock read every 10 ms, and a request's when it ended: a request's
# queries are looked for from its start to its end, widened by this much on both sides.
STAMP_SLACK = timedelta(seconds=1)


def _request(r: Row) -> Row:
    return {"ts": iso(r["ts"]), "route": r["route"], "method": r["method"], "status": int(r["status"]),
            "durationMs": number(r["duration_ms"]), "queryCount": int(r["query_count"]),
            # A string: request ids are 64-bit, beyond JavaScript's 53-bit numbers.
            "requestId": None if r["request_id"] is None else str(r["request_id"]),
            "pid": int(r["pid"]), "host": r["host"]}


def statuses(cursor: duckdb.DuckDBPyConnection, span: TimeRange, route: str | None) -> list[Row]:
    """Requests per HTTP status code over the range (or one route)."""
    return [{"status": int(r["status"]), "count": int(r["count"])}
            for r in rows(cursor, "route-statuses", {"since": span.start, "until": span.end, "route": route})]


def slowest(cursor: duckdb.DuckDBPyConnection, span: TimeRange, route: str | None, limit: int) -> list[Row]:
    """The slowest requests of the range (or one route), slowest first."""
    found = rows(cursor, "route-slowest", {"since": span.start, "until": span.end, "route": route, "limit": limit})
    return [_request(r) for r in found]


def request_queries(cursor: duckdb.DuckDBPyConnection, host: str, pid: int, request_id: int,
                    at: datetime) -> dict[str, Any] | None:
    """The request of ``host``/``pid`` with ``request_id`` that ended at ``at`` (within a second), and the queries
    it ran in the order they ended, each with its duration and when it started after the request did; None when
    no such request is stored (raw rows expire after ``raw_days``)."""
    key = {"host": host, "pid": pid, "request_id": request_id}
    found = rows(cursor, "request-row", {**key, "since": at - STAMP_SLACK, "until": at + STAMP_SLACK})
    if not found:
        return None
    req = found[0]
    started = req["ts"] - timedelta(milliseconds=req["duration_ms"])
    queries = rows(cursor, "request-queries", {**key, "since": started - STAMP_SLACK, "until": req["ts"] + STAMP_SLACK})
    return {
        "request": _request(req),
        "queries": [
            {"endedAt": iso(q["ts"]), "fingerprint": q["fingerprint"], "name": q["name"],
             "durationMs": number(q["duration_ms"]), "success": bool(q["success"]),
             "offsetMs": number((q["ts"] - started).total_seconds() * 1000 - q["duration_ms"])}
            for q in queries
        ],
    }
