"""Request traffic over a range: totals, per route, over time and as a latency histogram (webapp/ranges.py).

Counts are exact whatever the range. Percentiles are exact for a range read from raw rows and come from the merged
sketches otherwise; every answer that carries a percentile says which (``method``) and how precise it is
(``errorBound``, relative).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import duckdb

from pipeline.sketch import GAMMA, INF_BIN, ZERO_BIN

from . import ranges
from .params import TimeRange
from .reads import RawJson, Row, number, rate

# A histogram has at most this many bars: wide enough to read on a phone, fine enough to show two modes.
HISTOGRAM_BARS = 40


def _percentiles(pcts: list[float] | None) -> dict[str, float | None]:
    p50, p95, p99 = pcts if pcts else (None, None, None)
    return {"p50": number(p50), "p95": number(p95), "p99": number(p99)}


def method_of(reading: ranges.Reading) -> dict[str, Any]:
    """How the percentiles of a reading were computed, as the API says it."""
    return {"method": reading.method, "errorBound": reading.error_bound}


def _stats(r: Row) -> Row:
    count = int(r["count"] or 0)
    return {"count": count, "errors": int(r["errors"] or 0), "clientErrors": int(r["client_errors"] or 0),
            "errorRate": rate(int(r["errors"] or 0), count),
            "avg": number(r["sum_ms"] / count) if count else None, "max": number(r["max_ms"]),
            **_percentiles(r["pcts"])}


def _rows(cursor: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[Row]:
    result = ranges.run(cursor, sql, params)
    columns = [d[0] for d in result.description or ()]
    return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]


def totals(cursor: duckdb.DuckDBPyConnection, span: TimeRange,
           raw_since: datetime | None = None) -> tuple[Row, dict[str, int]]:
    """The whole range: requests, errors, client errors, error rate, mean, max, p50/p95/p99; and its requests per
    route, busiest first. Both read by one plan (its row count or tier state asked for once).

    ``raw_since`` (here and below): from when raw rows are kept, see ``ranges.reading``."""
    reading = ranges.reading(cursor, span, raw_since=raw_since)
    found = _rows(cursor, ranges.statement("totals", (), reading.exact), reading.params)
    per_route = _rows(cursor, ranges.statement("route-counts", ("route",), reading.exact, "counts"),
                      reading.params)
    return {**_stats(found[0]), **method_of(reading)}, {r["route"]: int(r["count"]) for r in per_route}


def routes(cursor: duckdb.DuckDBPyConnection, span: TimeRange, route: str | None = None,
           raw_since: datetime | None = None) -> tuple[list[Row], Row]:
    """Per route (or the one asked for), busiest first: its stats and percentiles; and how they were computed."""
    reading = ranges.reading(cursor, span, route, raw_since=raw_since)
    found = _rows(cursor, ranges.statement("routes", ("route",), reading.exact), reading.params)
    return [{"route": r["route"], **_stats(r), **method_of(reading)} for r in found], method_of(reading)


def timeline(cursor: duckdb.DuckDBPyConnection, span: TimeRange, step: timedelta,
             route: str | None, raw_since: datetime | None = None) -> tuple[RawJson, Row]:
    """Every ``step`` bucket of the range, all routes together or one: requests, errors, error rate, mean and
    p50/p95/p99 (JSON text shaped by DuckDB); and how the percentiles were computed."""
    reading = ranges.reading(cursor, span, route, step, raw_since)
    row = ranges.run(cursor, ranges.statement("timeline", ("bucket",), reading.exact), reading.params).fetchone()
    assert row is not None
    return RawJson(row[0]), method_of(reading)


def series(cursor: duckdb.DuckDBPyConnection, span: TimeRange, step: timedelta,
           route: str | None, raw_since: datetime | None = None) -> tuple[RawJson, Row]:
    """Per route, every ``step`` bucket of the range (JSON text); and how the percentiles were computed."""
    reading = ranges.reading(cursor, span, route, step, raw_since)
    sql = ranges.statement("series", ("route", "bucket"), reading.exact)
    row = ranges.run(cursor, sql, reading.params).fetchone()
    assert row is not None
    return RawJson(row[0]), method_of(reading)


def _bound(bin_: int) -> float:
    """The upper end of a sketch bin, in ms: a bin b holds the values in (GAMMA^(b-1), GAMMA^b]."""
    return float(GAMMA**bin_)


def histogram(cursor: duckdb.DuckDBPyConnection, span: TimeRange, route: str | None,
              raw_since: datetime | None = None) -> list[Row]:
    """Request durations of the range (or one route) in at most HISTOGRAM_BARS bars of equal width on a log scale.

    A bar holds the durations in (low, high] ms; its count is exact: bars are made of whole sketch bins, whose
    counts are exact whatever tier they come from. Durations of 0 ms get their own bar (low = high = 0).
    """
    reading = ranges.reading(cursor, span, route, raw_since=raw_since)
    sql = ranges.statement("histogram", (), reading.exact, "bins")
    bins = [(int(b), int(n)) for b, n in ranges.run(cursor, sql, reading.params).fetchall()]
    bars: list[Row] = []
    zero = sum(n for b, n in bins if b <= ZERO_BIN)
    if zero:
        bars.append({"low": 0.0, "high": 0.0, "count": zero})
    finite = [(b, n) for b, n in bins if ZERO_BIN < b < INF_BIN]
    if finite:
        first, last = finite[0][0], finite[-1][0]
        width = max(1, math.ceil((last - first + 1) / HISTOGRAM_BARS))
        counts: dict[int, int] = {}
        for b, n in finite:
            # Bars aligned on multiples of the width, so a bar's bins are the same whatever the range holds.
            bar = math.floor((b - 1) / width)
            counts[bar] = counts.get(bar, 0) + n
        for bar in range(min(counts), max(counts) + 1):
            bars.append({"low": _bound(bar * width), "high": _bound(bar * width + width),
                         "count": counts.get(bar, 0)})
    return bars
