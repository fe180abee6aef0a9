"""Unhandled exceptions grouped by signature (sql/exceptions.sql): what the overview and a route page list.

A signature is the exception's type, where it was raised (module, function, line) and its message with every
literal removed (pipeline/exceptions.py): the API never holds a raw message, so it can never return one.
"""

from __future__ import annotations

from typing import Any

import duckdb

from .params import TimeRange, iso
from .reads import Row, rows

SQL = "exceptions.sql"


def groups(cursor: duckdb.DuckDBPyConnection, span: TimeRange, route: str | None, limit: int) -> dict[str, Any]:
    """The error groups of the range (or one route), most frequent first, and the range's totals."""
    bounds = {"since": span.start, "until": span.end, "route": route}
    found: list[Row] = []
    groups = rows(cursor, "error-groups", {**bounds, "limit": limit}, SQL)
    for r in groups:
        latest = r["latest"]
        found.append({
            # Strings: 64-bit ids do not survive JavaScript's 53-bit numbers.
            "signatureId": str(r["signature_id"]),
            "type": r["type"], "module": r["module"], "function": r["function"], "line": int(r["line"]),
            "message": r["message"], "count": int(r["count"]),
            "routes": [route for route in r["routes"] if route is not None],
            "firstSeen": iso(r["first_seen"]), "lastSeen": iso(r["last_seen"]),
            "firstInRange": iso(r["first_in_range"]), "lastInRange": iso(r["last_in_range"]),
            "latest": {"ts": iso(latest["ts"]), "route": latest["route"],
                       "requestId": None if latest["request_id"] is None else str(latest["request_id"]),
                       "pid": int(latest["pid"]), "host": latest["host"]},
        })
    # The totals ride on every group's row (counted before the limit); no group means no exception in the range.
    total, signatures = (int(groups[0]["total_count"]), int(groups[0]["total_signatures"])) if groups else (0, 0)
    return {"total": total, "signatures": signatures, "groups": found}
