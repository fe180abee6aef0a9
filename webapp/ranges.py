"""Request statistics over any range, each part read from the cheapest tier that holds it (sql/ranges.sql).

A range up to an hour is read from raw rows, and its percentiles are exact. So is a longer one (up to a day) that
raw rows still cover and that holds at most ``EXACT_UP_TO_ROWS`` requests (of its route, on a route's page): one
scan of them costs less than merging the sketches. Any other range is split as ``pipeline.percentiles`` splits it:
whole hours from the hourly rollups, whole minutes from the minute rollups, the rest from raw rows; counts stay
exact and percentiles come from the merged sketches, within their stated relative error. A series bucketed by
``step`` uses a tier only when its buckets fall whole inside one step (minutes for a step that is a whole number of
minutes, hours for whole hours).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from pipeline import sqlfiles
from pipeline.clock import utc_datetime
from pipeline.percentiles import EXACT_UP_TO_SECONDS, plan, plan_params
from pipeline.rollup import epoch_of, floor_to, read_state
from pipeline.sketch import RELATIVE_ERROR

from .params import TimeRange

SQL = "ranges.sql"
# The groups a statement may have, and the only text Python puts into the SQL (at the blocks' markers).
GROUPS = {"bucket": "time_bucket($step, ts, TIMESTAMP '1970-01-01') AS bucket", "route": "route"}
_PARAM = re.compile(r"\$([a-z][a-z0-9_]*)")
ONE_MICROSECOND = timedelta(microseconds=1)
# Beyond an hour, a range holding at most this many requests is still read from raw rows. Measured at 10M rows
# (70k requests an hour, 2 cores, 2026-12-03) one scan of the raw rows cost less CPU than merging the sketches up to
# ~350k rows (5 h: 3 h took 19 ms exact against 28 ms merged for a timeline, 13 against 19 for the routes) and
# more beyond (24 h: 95 against 65); this keeps a margin below that.
EXACT_UP_TO_ROWS = 250_000
# Ranges longer than this always use the tiers (the row count is not even asked for).
COUNT_UP_TO_SECONDS = 86_400.0


@dataclass(frozen=True)
class Reading:
    """How one range is read: from raw rows only (exact percentiles) or from the tiers (sketch percentiles)."""

    exact: bool
    params: dict[str, Any]

    @property
    def method(self) -> str:
        return "exact" if self.exact else "sketch"

    @property
    def error_bound(self) -> float:
        """The percentiles' relative error bound."""
        return 0.0 if self.exact else RELATIVE_ERROR


def _few_raw_rows(cursor: duckdb.DuckDBPyConnection, start: datetime, end: datetime, route: str | None) -> bool:
    """Whether [start, end) holds at most EXACT_UP_TO_ROWS raw requests (of ``route``); the scan stops past that."""
    row = cursor.execute(sqlfiles.query(SQL, "raw-rows-up-to"),
                         {"start": start, "end": end, "route": route, "limit": EXACT_UP_TO_ROWS + 1}).fetchone()
    return row is not None and row[0] <= EXACT_UP_TO_ROWS


def reading(cursor: duckdb.DuckDBPyConnection, span: TimeRange, route: str | None = None,
            step: timedelta | None = None, raw_since: datetime | None = None) -> Reading:
    """The plan of ``span`` (closed, as the API's ranges are) for a statement grouped by ``step`` buckets or not.

    ``raw_since``: from when raw rows are kept (retention's raw_days back from now); a range starting at or after it
    is read from raw rows when it holds few enough of them. None reads raw rows only for ranges up to an hour.
    """
    end = span.end + ONE_MICROSECOND  # the tiers' ranges are half-open
    params: dict[str, Any] = {"start": span.start, "end": end, "route": route}
    if step is not None:
        params["step"] = step
        params["first"] = utc_datetime(floor_to(epoch_of(span.start), int(step.total_seconds())))
        params["last"] = span.end
    start_s, end_s = epoch_of(span.start), epoch_of(end)
    if span.seconds <= EXACT_UP_TO_SECONDS or (
            raw_since is not None and span.start >= raw_since and span.seconds <= COUNT_UP_TO_SECONDS
            and _few_raw_rows(cursor, span.start, end, route)):
        tiers = plan(start_s, end_s, None, None)
    else:
        state = read_state(cursor)
        step_s = None if step is None else step.total_seconds()
        tiers = plan(start_s, end_s, state.get("1m") if step_s is None or step_s % 60 == 0 else None,
                     state.get("1h") if step_s is None or step_s % 3600 == 0 else None)
    params.update(plan_params(tiers))
    return Reading(not tiers.hours and not tiers.minutes, params)


def _compose(block: str, groups: tuple[str, ...]) -> str:
    """Put the allow-listed group text at a block's markers."""
    return (block.replace("/* by */", "".join(f"{GROUPS[g]}, " for g in groups))
                 .replace("/* keys */", "".join(f"{g}, " for g in groups))
                 .replace("/* partition */", f"PARTITION BY {', '.join(groups)}" if groups else "")
                 .replace("/* join */", f"LEFT JOIN quantiles q USING ({', '.join(groups)})" if groups
                          else "CROSS JOIN quantiles q"))


# What a statement reads, as the CTE blocks it is made of: the stats (counts and percentiles) of a range read from
# raw rows or from the tiers, the counts alone, or the sketch bins alone. A range read from raw rows only has its
# own blocks: the tiers' union with every tier slot empty cost about twice the raw scan alone.
_PARTS = {("stats", True): ("range-exact",), ("stats", False): ("range-counts", "range-bins", "range-sketch"),
          ("counts", True): ("range-counts-raw",), ("counts", False): ("range-counts",),
          ("bins", True): ("range-bins-raw",), ("bins", False): ("range-bins",)}


def statement(final: str, groups: tuple[str, ...], exact: bool, reads: str = "stats") -> str:
    """One statement: WITH the CTE blocks ``reads`` needs (``stats``, ``counts`` or ``bins``), then ``final``."""
    joined = ",\n".join(_compose(sqlfiles.query(SQL, b), groups) for b in _PARTS[(reads, exact)])
    tail = sqlfiles.query(SQL, final)
    separator = "\n" if tail.lstrip().upper().startswith("SELECT") else ",\n"
    return f"WITH {joined}{separator}{tail}"


def run(cursor: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """Execute with the parameters the statement names (DuckDB refuses any it does not use)."""
    used = set(_PARAM.findall(sql))
    return cursor.execute(sql, {k: v for k, v in params.items() if k in used})
