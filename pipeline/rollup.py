"""Rollups: per-minute and per-hour statistics and log-bucket histograms of requests, queries and histograms.

Each run rolls the closed minutes since the 1-minute watermark into ``rollups_1m`` / ``rollup_bins_1m``, and
rebuilds from them every hour those minutes touch in ``rollups_1h`` / ``rollup_bins_1h`` (sketches merge bin by
bin, so an hour is exactly the sum of its minutes). A run deletes and rebuilds whole buckets inside one
transaction, so running the same window twice never double counts.

Late rows: every run re-rolls the ``grace_seconds`` before its watermark, which catches rows that a producer's
spool or a slow flush delivers a little late. Beyond that, each run compares the raw row count of every minute in
the last ``late_lookback_seconds`` with what its rollup holds and re-rolls from the first minute that differs
(a producer's backlog ingested an hour late still ends up in the rollups). Older stragglers are left to
``rebuild``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import sqlfiles
from .clock import utc_datetime
from .errors import ConfigError
from .settings import RollupSettings as RollupSettings  # defined with the other settings

if TYPE_CHECKING:
    from .jobs import Job
    from .store import Store

SQL = "rollup.sql"
MINUTE_SECONDS = 60
HOUR_SECONDS = 3600
SOURCES = ("requests", "queries", "histograms")
CHUNK_SECONDS = 86_400  # the most one rollup transaction covers


def floor_to(epoch_seconds: float, step_seconds: int) -> float:
    """The start of the ``step_seconds`` bucket holding an epoch time."""
    return float(math.floor(epoch_seconds / step_seconds) * step_seconds)


def ceil_to(epoch_seconds: float, step_seconds: int) -> float:
    """The first bucket boundary at or after an epoch time."""
    return float(math.ceil(epoch_seconds / step_seconds) * step_seconds)


def epoch_of(value: datetime) -> float:
    """Epoch seconds of a naive-UTC (as DuckDB returns TIMESTAMPs) or aware datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


@dataclass(frozen=True)
class TierState:
    """How far one tier is rolled: buckets in ``[rolled_from, rolled_until)`` are built (epoch seconds)."""

    rolled_from: float
    rolled_until: float


@dataclass(frozen=True)
class RollupSummary:
    """What one run rebuilt (epoch seconds; None when nothing)."""

    minutes_start: float | None = None
    minutes_end: float | None = None
    hours_start: float | None = None
    hours_end: float | None = None
    late_minute: float | None = None  # the first minute re-rolled because late rows arrived beyond the grace


def read_state(con: Any) -> dict[str, TierState]:
    """The watermark of each tier (``1m``, ``1h``) from a store or a DuckDB connection; {} before any run."""
    from .store import Store  # here: percentiles (imported by `import pipeline`) must not load DuckDB

    sql = sqlfiles.query(SQL, "rollup-state")
    rows = con.fetchall(sql) if isinstance(con, Store) else con.execute(sql).fetchall()
    return {tier: TierState(epoch_of(start), epoch_of(until)) for tier, start, until in rows}


def _write_state(store: Store, tier: str, state: TierState, now: float) -> None:
    store.con.execute(sqlfiles.query(SQL, "rollup-state-upsert"), {
        "tier": tier, "rolled_from": utc_datetime(state.rolled_from),
        "rolled_until": utc_datetime(state.rolled_until), "updated_at": utc_datetime(now)})


def _late_minute(store: Store, start: float, end: float) -> float | None:
    """The first minute in [start, end) whose raw rows differ in number from its rollup."""
    found = store.scalar(sqlfiles.query(SQL, "rollup-late-minute"),
                         {"start": utc_datetime(start), "end": utc_datetime(end)})
    return None if found is None else epoch_of(found)


def _roll(store: Store, minutes_start: float, minutes_end: float, now: float,
          state: dict[str, TierState], rolled_from: float) -> RollupSummary:
    """Rebuild minutes [minutes_start, minutes_end) and every hour they touch, a day per transaction.

    A catch-up over a long backlog (a first run over weeks of rows) then holds the store's lock for one day's
    worth at a time, sorts a day at a time, and keeps its progress if it is interrupted.
    """
    hours: list[float] = []
    start = minutes_start
    while start < minutes_end:
        end = min(floor_to(start, CHUNK_SECONDS) + CHUNK_SECONDS, minutes_end)
        hours_start, hours_end = _roll_chunk(store, start, end, now, state, rolled_from)
        if hours_end > hours_start:
            hours += [hours_start, hours_end]
        start = end
    return RollupSummary(minutes_start, minutes_end, min(hours) if hours else None, max(hours) if hours else None)


def _roll_chunk(store: Store, minutes_start: float, minutes_end: float, now: float,
                state: dict[str, TierState], rolled_from: float) -> tuple[float, float]:
    """Rebuild minutes [minutes_start, minutes_end) and the hours they touch in one transaction."""
    hours_start = floor_to(minutes_start, HOUR_SECONDS)
    hours_end = floor_to(minutes_end, HOUR_SECONDS)
    minute_params = {"start": utc_datetime(minutes_start), "end": utc_datetime(minutes_end)}
    hour_params = {"start": utc_datetime(hours_start), "end": utc_datetime(hours_end)}
    with store.transaction():
        for block in ("rollup-1m-delete", "rollup-1m-delete-bins"):
            store.con.execute(sqlfiles.query(SQL, block), minute_params)
        for source in SOURCES:
            store.con.execute(sqlfiles.query(SQL, f"rollup-1m-{source}"), minute_params)
            store.con.execute(sqlfiles.query(SQL, f"rollup-1m-{source}-bins"), minute_params)
        if hours_end > hours_start:
            for block in ("rollup-1h-delete", "rollup-1h-delete-bins", "rollup-1h-build", "rollup-1h-build-bins"):
                store.con.execute(sqlfiles.query(SQL, block), hour_params)
        minute = state.get("1m")
        until = max(minutes_end, minute.rolled_until) if minute else minutes_end
        _write_state(store, "1m", TierState(min(rolled_from, minute.rolled_from) if minute else rolled_from,
                                            until), now)
        hour = state.get("1h")
        hour_from = floor_to(rolled_from, HOUR_SECONDS)
        _write_state(store, "1h", TierState(
            min(hour_from, hour.rolled_from) if hour else hour_from,
            max(hours_end, hour.rolled_until) if hour else max(hours_end, hour_from)), now)
    return hours_start, hours_end


def run(store: Store, now: float, settings: RollupSettings | None = None) -> RollupSummary:
    """Roll every closed minute up to ``now`` (and the hours they close); safe to run any number of times."""
    settings = settings or RollupSettings()
    end = floor_to(now, MINUTE_SECONDS)
    with store.lock:  # the state read and the rebuild must see the same watermark
        state = read_state(store)
        minute = state.get("1m")
        if minute is None:
            earliest = store.scalar(sqlfiles.query(SQL, "rollup-raw-earliest"))
            start = end if earliest is None else min(floor_to(epoch_of(earliest), MINUTE_SECONDS), end)
            rolled_from = start
        else:
            rolled_from = minute.rolled_from
            start = max(rolled_from, floor_to(minute.rolled_until - settings.grace_seconds, MINUTE_SECONDS))
        late = None
        if minute is not None and settings.late_lookback_seconds > 0:
            # Not clamped to rolled_from: rows stamped before the first rolled minute (the wall clock jumped
            # back, a backlog older than the first run) are late rows too.
            lookback = floor_to(start - settings.late_lookback_seconds, MINUTE_SECONDS)
            late = _late_minute(store, lookback, start)
            if late is not None:
                start = late
        if end <= start:
            if minute is None:  # nothing recorded yet: start the watermark here
                with store.transaction():
                    _write_state(store, "1m", TierState(end, end), now)
                    hour = floor_to(end, HOUR_SECONDS)
                    _write_state(store, "1h", TierState(hour, hour), now)
            return RollupSummary()
        summary = _roll(store, start, end, now, state, min(rolled_from, start))
    if late is not None:
        return RollupSummary(summary.minutes_start, summary.minutes_end, summary.hours_start, summary.hours_end,
                             late)
    return summary


def rebuild(store: Store, start: float, end: float, now: float) -> RollupSummary:
    """Re-roll every closed minute in [start, end) and the hours they touch, e.g. after a late backfill."""
    if not end > start:
        raise ConfigError(f"rebuild(start={start!r}, end={end!r}): expected start < end")
    minutes_start = floor_to(start, MINUTE_SECONDS)
    minutes_end = min(ceil_to(end, MINUTE_SECONDS), floor_to(now, MINUTE_SECONDS))
    if minutes_end <= minutes_start:
        return RollupSummary()
    with store.lock:
        state = read_state(store)
        minute = state.get("1m")
        rolled_from = min(minutes_start, minute.rolled_from) if minute else minutes_start
        return _roll(store, minutes_start, minutes_end, now, state, rolled_from)


def job(store: Store, settings: RollupSettings) -> Job:
    """The owner's "rollup" job."""
    from .jobs import Job

    return Job("rollup", settings.interval_seconds, lambda now: run(store, now, settings))
