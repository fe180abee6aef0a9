"""``percentiles()``: p50/p95/p99 (any quantiles) of a metric over a time range, exact or from merged sketches.

Short ranges (up to an hour by default) are computed exactly from raw rows. Longer ones merge log-bucket bins:
whole hours from the hourly rollups, whole minutes from the minute rollups, and the rest (the range's ragged
edges and the minutes the rollup job has not reached yet) from raw rows binned on the fly, all in one SQL
statement, so the answer is complete up to the last flushed row. Every answer says how it was computed
(``exact`` or ``sketch``) and its relative error bound.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload, runtime_checkable

from . import sketch, sqlfiles
from .clock import SYSTEM_CLOCK, Clock, utc_datetime
from .errors import ConfigError, OwnershipError
from .rollup import HOUR_SECONDS, MINUTE_SECONDS, TierState, ceil_to, epoch_of, floor_to, read_state
from .sqlfiles import quote_identifier

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from .store import Store

SQL = "percentiles.sql"
EXACT_UP_TO_SECONDS = 3600.0  # ranges up to this long are computed exactly from raw rows when method="auto"
# A row stamped at this very instant (a test's fake clock that has not moved) belongs to a window ending now.
_NOW_INCLUSIVE_SECONDS = 1e-6
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
Method = Literal["auto", "exact", "sketch"]
Interpolation = Literal["nearest", "linear"]


@runtime_checkable
class HasStore(Protocol):
    """Anything that may hold the owner's store (a Monitor): ``store`` is None while it does not own the file."""

    @property
    def store(self) -> Store | None: ...

    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True)
class Percentile:
    """One quantile of a metric: its value (None without samples), how it was computed and how precise it is."""

    value: float | None
    method: str  # "exact" (raw rows) or "sketch" (merged log-bucket bins)
    error_bound: float  # relative: 0.0 for exact, (gamma-1)/(gamma+1) ~ 0.0099 for sketch
    count: int  # samples the value was computed from


@dataclass(frozen=True)
class _Metric:
    kind: str  # requests, queries or histogram: which SQL blocks
    rollup_columns: tuple[str, ...]  # group-by / filter columns the rollups keep
    raw_only_columns: tuple[str, ...]  # columns only raw rows have (forces the exact method)


_BUILTIN = {
    "request_duration": _Metric("requests", ("route", "method", "status_class"), ("status", "host")),
    "query_duration": _Metric("queries", ("fingerprint",), ("name", "route", "host", "success")),
}
_RESULT_COLUMNS = ("count", "method", "error_bound")
# Request's HTTP method is grouped as "method" (its column) or "http_method", and always comes back as
# "http_method": the result's "method" column says how each percentile was computed.
_ALIASES = {"http_method": "method"}
_OUTPUT_NAMES = {"method": "http_method"}


@dataclass(frozen=True)
class Plan:
    """Which tier serves which part of a sketch range (epoch seconds, half-open)."""

    hours: tuple[float, float] | None
    minutes: tuple[tuple[float, float], ...]  # at most 2
    raw: tuple[tuple[float, float], ...]  # at most 4


def parse_window(window: str | float | timedelta) -> float:
    """Seconds in a window: ``"30s"``, ``"5m"``, ``"1h"``, ``"24h"``, ``"7d"``, a number of seconds or a timedelta."""
    if isinstance(window, timedelta):
        seconds = window.total_seconds()
    elif isinstance(window, int | float) and not isinstance(window, bool):
        seconds = float(window)
    else:
        match = _WINDOW.match(window) if isinstance(window, str) else None
        if match is None:
            raise ConfigError(f"window={window!r}: expected a number followed by s, m, h or d (e.g. '30s', "
                              "'5m', '1h', '24h', '7d'), a number of seconds or a timedelta")
        seconds = float(match[1]) * _UNITS[match[2]]
    if not 0 < seconds < math.inf:
        raise ConfigError(f"window={window!r}: expected a duration > 0")
    return seconds


def _epoch(name: str, value: datetime | float) -> float:
    if isinstance(value, datetime):
        return epoch_of(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ConfigError(f"{name}={value!r}: expected a datetime (naive means UTC) or epoch seconds")


def plan(start: float, end: float, minute: TierState | None, hour: TierState | None) -> Plan:
    """Split [start, end) into hour buckets, minute buckets and raw edges, using only buckets that are built."""
    remaining: list[tuple[float, float]] = [(start, end)]
    hours = None
    if hour is not None:
        lo = max(ceil_to(start, HOUR_SECONDS), hour.rolled_from)
        hi = min(floor_to(end, HOUR_SECONDS), hour.rolled_until)
        if lo < hi:
            hours = (lo, hi)
            remaining = [(start, lo), (hi, end)]
    minutes: list[tuple[float, float]] = []
    raw: list[tuple[float, float]] = []
    for a, b in remaining:
        if a >= b:
            continue
        lo = max(ceil_to(a, MINUTE_SECONDS), minute.rolled_from) if minute else b
        hi = min(floor_to(b, MINUTE_SECONDS), minute.rolled_until) if minute else b
        if lo < hi:
            minutes.append((lo, hi))
            raw.extend(r for r in ((a, lo), (hi, b)) if r[0] < r[1])
        else:
            raw.append((a, b))
    return Plan(hours, tuple(minutes), tuple(raw))


def _column_name(q: float) -> str:
    """``p`` + 100·q, exactly: 0.5 -> p50, 0.999 -> p99.9."""
    return "p" + format((Decimal(repr(q)) * 100).normalize(), "f")


def _quantiles(quantiles: float | Sequence[float]) -> tuple[float, ...]:
    qs = (quantiles,) if isinstance(quantiles, int | float) else tuple(quantiles)
    if not qs or not all(isinstance(q, int | float) and not isinstance(q, bool) and 0 <= q <= 1 for q in qs):
        raise ConfigError(f"quantiles={quantiles!r}: expected one or more numbers from 0 to 1, e.g. (0.5, 0.95)")
    return tuple(float(q) for q in qs)


def _rank_fraction(q: float) -> tuple[str, str]:
    num, den = sketch.quantile_fraction(q)
    if den > 10**30:  # beyond HUGEINT arithmetic; ceil(n * q) is 1 for any realistic n anyway
        num, den = (1 if num else 0), 10**30
    return str(num), str(den)


@contextmanager
def _connect(source: Any) -> Iterator[tuple[duckdb.DuckDBPyConnection, Clock]]:
    # Here, not at the top: `import pipeline` (which imports this module) must not load DuckDB, which only an owner
    # or a reader needs.
    import duckdb

    from .store import Store

    if isinstance(source, Store):
        with source.reading() as cursor:
            yield cursor, source.clock
    elif isinstance(source, duckdb.DuckDBPyConnection):
        yield source, SYSTEM_CLOCK
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"{path}: no such DuckDB file")
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            raise OwnershipError(
                f"cannot open {path} read-only: {exc}. A running owner keeps every other process out of the "
                "file: call Monitor.percentiles() in the owner, or query the Parquet history with "
                "pipeline.history.connect()") from exc
        try:
            yield con, SYSTEM_CLOCK
        finally:
            con.close()
    elif isinstance(source, HasStore):
        store = source.store
        if store is None:
            raise ConfigError("this Monitor does not own its DuckDB file (another process does, or it is a "
                              "producer), so it has no database to read; call percentiles() in the owner process, "
                              "or read the published history with pipeline.history.connect()")
        with store.reading() as cursor:
            yield cursor, source.clock
    else:
        raise ConfigError(f"source={source!r}: expected a Monitor, a Store, a DuckDB connection or a file path")


def _rollup_state(con: duckdb.DuckDBPyConnection) -> dict[str, TierState] | None:
    """The rollup watermarks; None when the database has no rollup tables at all."""
    row = con.execute(sqlfiles.query("rollup.sql", "rollup-tables-present")).fetchone()
    return read_state(con) if row and row[0] else None


def _histogram_groups(con: duckdb.DuckDBPyConnection, name: str, by: tuple[str, ...],
                      where: Mapping[str, list[Any]]) -> tuple[list[int], list[int], list[tuple[Any, ...]]]:
    """The series of a custom histogram that match ``where``, and the group (label values of ``by``) of each."""
    rows = con.execute(sqlfiles.query(SQL, "percentiles-histogram-series"), {"name": name}).fetchall()
    if not rows:
        raise ConfigError(f"metric={name!r}: expected request_duration, query_duration or the name of a custom "
                          "histogram with recorded values (no histogram series has this name)")
    series_ids: list[int] = []
    group_ids: list[int] = []
    groups: dict[tuple[Any, ...], int] = {}
    for series_id, labels_json in rows:
        labels = json.loads(labels_json)
        if any(labels.get(key) not in {str(v) for v in values} for key, values in where.items()):
            continue
        key = tuple(labels.get(k) for k in by)
        series_ids.append(series_id)
        group_ids.append(groups.setdefault(key, len(groups)))
    return series_ids, group_ids, list(groups)


def _compose(sql: str, by_sql: Sequence[str], where_sql: Sequence[str]) -> str:
    """Put quoted, allow-listed column names at the block's markers (the only text Python adds to SQL)."""
    return (sql.replace("/* by */", "".join(f"{c}, " for c in by_sql))
               .replace("/* partition */", f"PARTITION BY {', '.join(by_sql)}" if by_sql else "")
               .replace("/* where */", "".join(f" AND {w}" for w in where_sql)))


def plan_params(p: Plan) -> dict[str, Any]:
    """A plan as the parameters of a tiered statement: h_start/h_end, m1_* and m2_*, r1_* to r4_* (naive UTC);
    an unused slot matches nothing (start = end)."""
    params: dict[str, Any] = {}
    never = utc_datetime(0)
    hours = p.hours or (0.0, 0.0)
    params["h_start"], params["h_end"] = utc_datetime(hours[0]), utc_datetime(hours[1])
    for i in range(2):
        a, b = p.minutes[i] if i < len(p.minutes) else (0.0, 0.0)
        params[f"m{i + 1}_start"], params[f"m{i + 1}_end"] = utc_datetime(a), utc_datetime(b)
    for i in range(4):
        a, b = p.raw[i] if i < len(p.raw) else (0.0, 0.0)
        params[f"r{i + 1}_start"] = utc_datetime(a) if b > a else never
        params[f"r{i + 1}_end"] = utc_datetime(b) if b > a else never
    return params


def _where(metric: str, spec: _Metric | None, where: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    clean: dict[str, list[Any]] = {}
    for key, value in (where or {}).items():
        if spec is not None and key not in spec.rollup_columns + spec.raw_only_columns:
            raise ConfigError(f"where={{{key!r}: ...}}: {metric} can be filtered by "
                              f"{', '.join(spec.rollup_columns + spec.raw_only_columns)}")
        clean[key] = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    return clean


def _choose(method: str, spec: _Metric | None, by: tuple[str, ...], where: Mapping[str, Any], seconds: float,
            state: Mapping[str, TierState] | None, start: float, exact_up_to_seconds: float, metric: str) -> str:
    raw_only = [c for c in (*by, *where) if spec is not None and c in spec.raw_only_columns]
    if method == "sketch":
        if raw_only:
            raise ConfigError(f"method='sketch' cannot group or filter {metric} by {', '.join(raw_only)}: the "
                              f"rollups keep only {', '.join(spec.rollup_columns if spec else ())}; use "
                              "method='exact' or 'auto'")
        if state is None:
            raise ConfigError("method='sketch' needs the rollup tables, and this database has none (it was "
                              "never opened by an owner of this duckpulse version); use method='exact'")
        return "sketch"
    if method == "exact" or state is None:
        return "exact"
    minute = state.get("1m")
    covered = minute is not None and minute.rolled_until > start
    return "sketch" if seconds > exact_up_to_seconds and covered and not raw_only else "exact"


# An empty ``by`` (the default) returns a mapping, any other a DataFrame.
@overload
def percentiles(source: Any, metric: str, quantiles: float | Sequence[float] = ...,
                window: str | float | timedelta | None = ..., *, start: datetime | float | None = ...,
                end: datetime | float | None = ..., by: tuple[()] = ..., where: Mapping[str, Any] | None = ...,
                method: Method = ..., interpolation: Interpolation = ..., clock: Clock | None = ...,
                exact_up_to_seconds: float = ...) -> dict[float, Percentile]: ...
@overload
def percentiles(source: Any, metric: str, quantiles: float | Sequence[float] = ...,
                window: str | float | timedelta | None = ..., *, start: datetime | float | None = ...,
                end: datetime | float | None = ..., by: str | Sequence[str], where: Mapping[str, Any] | None = ...,
                method: Method = ..., interpolation: Interpolation = ..., clock: Clock | None = ...,
                exact_up_to_seconds: float = ...) -> pd.DataFrame: ...
def percentiles(source: Any, metric: str, quantiles: float | Sequence[float] = (0.5, 0.95, 0.99),
                window: str | float | timedelta | None = None, *, start: datetime | float | None = None,
                end: datetime | float | None = None, by: str | Sequence[str] = (),
                where: Mapping[str, Any] | None = None, method: Method = "auto",
                interpolation: Interpolation = "nearest", clock: Clock | None = None,
                exact_up_to_seconds: float = EXACT_UP_TO_SECONDS) -> pd.DataFrame | dict[float, Percentile]:
    """Quantiles of ``metric`` over the last ``window`` (default 1 h, up to and including now) or [start, end).

    ``source``: a Monitor (the owner; anything with ``store`` and ``clock``), a Store, a DuckDB connection, or a
    file path (opened read-only; fails while an owner holds the file). ``metric``: ``request_duration``,
    ``query_duration`` or the name of a custom histogram. ``by``: group-by columns (requests: route, method
    (returned as ``http_method``), status_class, and status, host from raw rows only; queries: fingerprint, and
    name, route, host, success from raw rows only; histograms: label names).
    ``where``: {column: value or list of values}. ``method``: ``auto`` (exact up to ``exact_up_to_seconds``, or
    when the rollups do not cover the range), ``exact`` or ``sketch``. ``interpolation``: ``nearest``
    (nearest rank, ``quantile_disc``) or ``linear`` (``quantile_cont``).

    Without ``by``: {quantile: Percentile}. With ``by``: a pandas DataFrame, one row per group, with the ``by``
    columns, ``count``, one column per quantile named ``p`` + 100·q (``p50``, ``p99.9``), ``method`` and
    ``error_bound``.
    """
    qs = _quantiles(quantiles)
    by_cols = (by,) if isinstance(by, str) else tuple(by)
    if metric == "request_duration":
        by_cols = tuple(_ALIASES.get(c, c) for c in by_cols)
        where = {_ALIASES.get(k, k): v for k, v in where.items()} if where else where
    if method not in ("auto", "exact", "sketch"):
        raise ConfigError(f"method={method!r}: expected 'auto', 'exact' or 'sketch'")
    if interpolation not in ("nearest", "linear"):
        raise ConfigError(f"interpolation={interpolation!r}: expected 'nearest' (quantile_disc) or 'linear' "
                          "(quantile_cont)")
    spec = _BUILTIN.get(metric)
    if spec is None and not (isinstance(metric, str) and metric):
        raise ConfigError(f"metric={metric!r}: expected request_duration, query_duration or a custom histogram's "
                          "name")
    if spec is not None:
        bad = [c for c in by_cols if c not in spec.rollup_columns + spec.raw_only_columns]
        if bad:
            raise ConfigError(f"by={by!r}: {metric} can be grouped by "
                              f"{', '.join(spec.rollup_columns + spec.raw_only_columns)}")
    outputs = [_OUTPUT_NAMES.get(c, c) if spec is not None else c for c in by_cols]
    clash = [c for c in outputs if c in _RESULT_COLUMNS or c in {_column_name(q) for q in qs}]
    if clash or len(set(by_cols)) != len(by_cols):
        raise ConfigError(f"by={by!r}: group names must be distinct and differ from the result columns")
    filters = _where(metric, spec, where)
    if window is not None and start is not None:
        raise ConfigError("give either window=... or start=/end=, not both")

    with _connect(source) as (con, source_clock):
        now = (clock or source_clock).now()
        if start is None:
            t_end = _epoch("end", end) if end is not None else now + _NOW_INCLUSIVE_SECONDS
            t_start = t_end - parse_window(window if window is not None else "1h")
        else:
            t_start = _epoch("start", start)
            t_end = _epoch("end", end) if end is not None else now + _NOW_INCLUSIVE_SECONDS
        if not t_end > t_start:
            raise ConfigError(f"start={start!r}, end={end!r}: expected start < end")
        state = _rollup_state(con)
        chosen = _choose(method, spec, by_cols, filters, t_end - t_start, state, t_start,
                         exact_up_to_seconds, metric)
        rows, group_keys = _run(con, metric, spec, chosen, interpolation, qs, by_cols, filters, t_start, t_end,
                                state)
    bound = 0.0 if chosen == "exact" else sketch.RELATIVE_ERROR
    if not by_cols:
        count = int(rows[0][0] or 0) if rows else 0  # a sketch over no rows aggregates to one NULL row
        values = rows[0][1] if rows and rows[0][1] is not None else [None] * len(qs)
        return {q: Percentile(None if v is None else float(v), chosen, bound, count) for q, v in zip(qs, values,
                                                                                                    strict=True)}
    return _frame(rows, group_keys, tuple(outputs), qs, chosen, bound)


def _run(con: duckdb.DuckDBPyConnection, metric: str, spec: _Metric | None, chosen: str, interpolation: str,
         qs: tuple[float, ...], by: tuple[str, ...], filters: Mapping[str, list[Any]], start: float, end: float,
         state: Mapping[str, TierState] | None) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]] | None]:
    params: dict[str, Any] = {"quantiles": list(qs)}
    group_keys = None
    if spec is None:
        series_ids, group_ids, group_keys = _histogram_groups(con, metric, by, filters)
        if not series_ids:
            return [], group_keys
        kind = "histogram"
        params.update(series_ids=series_ids, groups=group_ids)
        by_sql = [quote_identifier("grp")] if by else []
        where_sql: list[str] = []
    else:
        kind = spec.kind
        by_sql = [quote_identifier(c) for c in by]
        where_sql = []
        for i, (column, values) in enumerate(filters.items()):
            params[f"w{i}"] = values
            where_sql.append(f"list_contains($w{i}, {quote_identifier(column)})")
    if chosen == "exact":
        block = f"percentiles-exact-{kind}" if interpolation == "nearest" else f"percentiles-exact-linear-{kind}"
        params.update(start=utc_datetime(start), end=utc_datetime(end))
    else:
        block = f"percentiles-sketch-{kind}"
        tiers = state or {}
        params.update(plan_params(plan(start, end, tiers.get("1m"), tiers.get("1h"))))
        params["linear"] = interpolation == "linear"
        fractions = [_rank_fraction(q) for q in qs]
        params["q_num"] = [f[0] for f in fractions]
        params["q_den"] = [f[1] for f in fractions]
    sql = sqlfiles.query(SQL, block)
    if chosen != "exact":  # every sketch block ends at its pieces CTE; merging and ranking are shared
        sql = f"{sql},\n{sqlfiles.query(SQL, 'percentiles-sketch-rank')}"
    sql = _compose(sql, by_sql, where_sql)
    return con.execute(sql, params).fetchall(), group_keys


def _frame(rows: list[tuple[Any, ...]], group_keys: list[tuple[Any, ...]] | None, by: tuple[str, ...],
           qs: tuple[float, ...], chosen: str, bound: float) -> pd.DataFrame:
    import pandas as pd

    records = []
    for row in rows:
        keys = tuple(row[: len(by)]) if group_keys is None else group_keys[row[0]]
        count, values = row[-2], row[-1]
        record: dict[str, Any] = dict(zip(by, keys, strict=True))
        record["count"] = int(count)
        for q, v in zip(qs, values if values is not None else [None] * len(qs), strict=True):
            record[_column_name(q)] = None if v is None else float(v)
        record["method"], record["error_bound"] = chosen, bound
        records.append(record)
    columns = [*by, "count", *(_column_name(q) for q in qs), "method", "error_bound"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    if len(frame):
        frame = frame.sort_values(list(by), kind="stable", na_position="last").reset_index(drop=True)
    return frame
