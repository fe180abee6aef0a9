"""What ``/api/hosts`` reads: a fleet's hosts side by side, filtered by route or host (``sql/hosts.sql``).

A central owner ingests every host's segments (README, "A fleet"), and every row keeps the host that recorded it,
so a slow or failing host shows here beside the others, and ``host=`` narrows the answer to one host with its
routes. The rollups keep no host, so these are exact percentiles over raw rows, said as such in every answer.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb

from . import reads
from .params import TimeRange, iso
from .reads import Row

SQL_FILE = "hosts.sql"


def _ms(value: Any) -> float | None:
    """A duration as a finite float, or None (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _stats(r: Row) -> Row:
    """The counts and percentiles shared by a host's row and a route's row."""
    p50, p95, p99 = r["pcts"] if r["pcts"] else (None, None, None)
    requests, errors = int(r["requests"]), int(r["errors"])
    return {"requests": requests, "errors": errors, "errorRate": errors / requests if requests else 0.0,
            "p50": _ms(p50), "p95": _ms(p95), "p99": _ms(p99)}


def hosts(cursor: duckdb.DuckDBPyConnection, span: TimeRange, route: str | None, host: str | None) -> dict[str, Any]:
    """The ``/api/hosts`` body, less its timestamp: every host over the range (only ``host`` when given, only
    requests and queries of ``route`` when given), busiest first; with ``host``, that host's routes too."""
    values = {"since": span.start, "until": span.end, "route": route, "host": host}
    body: dict[str, Any] = {
        "start": iso(span.start), "end": iso(span.end), "route": route, "host": host,
        "method": "exact", "errorBound": 0.0,
        "hosts": [{"host": r["host"], **_stats(r), "queries": int(r["queries"]),
                   "queryTime": float(r["query_ms"]), "processes": int(r["processes"]),
                   "lastSeen": iso(r["last_seen"])}
                  for r in reads.rows(cursor, "hosts", values, SQL_FILE)],
    }
    if host is not None:
        body["routes"] = [{"route": r["route"], **_stats(r)}
                          for r in reads.rows(cursor, "host-routes", {"since": span.start, "until": span.end,
                                                                "host": host}, SQL_FILE)]
    return body
