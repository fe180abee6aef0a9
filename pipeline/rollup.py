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
# Rows stamped before this (1970-01-01) are impossible: a clock that was never set, or a unit mistake. The jobs
# never roll or archive them (a timestamp of year -290309 is not even a Python datetime); retention expires them.
EARLIEST_SECONDS = 0.0


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
    return {tier: TierState(float(start), float(until)) for tier, start, until in rows}


def _extend_state(store: Store, tier: str, rolled_from: float, rolled_until: float, now: float) -> None:
    """Widen a tier's range to cover [rolled_from, rolled_until) (never narrow it: runs may overlap, and the
    wall clock may have gone back), inside the caller's transaction."""
    store.con.execute(sqlfiles.query(SQL, "rollup-state-extend"), {
        "tier": tier, "rolled_from": utc_datetime(rolled_from), "rolled_until": utc_datetime(rolled_until),
        "updated_at": utc_datetime(now)})


def _late_minute(store: Store, start: float, end: float) -> float | None:
    """The first minute in [start, end) whose raw rows differ in number from its rollup."""
    with store.reading() as cursor:
        row = cursor.execute(sqlfiles.query(SQL, "rollup-late-minute"),
                             {"start": utc_datetime(start), "end": utc_datetime(end)}).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def hours_with_rows(store: Store, start: float, end: float) -> list[float]:
    """The hours of [start, end) that hold raw rows the rollups read (epoch seconds, in order)."""
    with store.reading() as cursor:
        rows = cursor.execute(sqlfiles.query(SQL, "rollup-hours-with-rows"),
                              {"start": utc_datetime(start), "end": utc_datetime(end)}).fetchall()
    return [float(hour) for (hour,) in rows]


def _roll(store: Store, minutes_start: float, minutes_end: float, now: float) -> RollupSummary:
    """Rebuild minutes [minutes_start, minutes_end) and every hour they complete, one hour per transaction.

    Only the hours that hold raw rows are rolled (found by a read, without the writer's lock): a row stamped
    years ago costs one hour's work, not a walk through every empty minute since (issue 13, item 2: a row 6 years
    old stopped every flush for 47 s). Each hour is its own transaction, so the writer's lock is held for one
    hour's rows at a time and flushes go in between; the watermarks move with each hour, so an interrupted
    catch-up keeps its progress.
    """
    hours = hours_with_rows(store, minutes_start, minutes_end)
    first = max(hours[0], minutes_start) if hours else minutes_start
    built: list[float] = []
    for hour in hours:
        if _roll_hour(store, max(hour, minutes_start), min(hour + HOUR_SECONDS, minutes_end), now, first):
            built.append(hour)
    with store.transaction():  # the empty stretch after the last hour with rows is rolled too: it has nothing
        _extend_state(store, "1m", first, minutes_end, now)
        _extend_state(store, "1h", floor_to(first, HOUR_SECONDS),
                      max(floor_to(minutes_end, HOUR_SECONDS), floor_to(first, HOUR_SECONDS)), now)
    return RollupSummary(minutes_start, minutes_end, min(built) if built else None,
                         max(built) + HOUR_SECONDS if built else None)


def _roll_hour(store: Store, minutes_start: float, minutes_end: float, now: float, first: float) -> bool:
    """Rebuild minutes [minutes_start, minutes_end), all in one hour, and that hour if they complete it, in one
    transaction; ``first`` is the run's first minute with rows. Returns whether the hour was rebuilt."""
    hour = floor_to(minutes_start, HOUR_SECONDS)
    complete = minutes_end >= hour + HOUR_SECONDS
    minute_params = {"start": utc_datetime(minutes_start), "end": utc_datetime(minutes_end)}
    hour_params = {"start": utc_datetime(hour), "end": utc_datetime(hour + HOUR_SECONDS)}
    with store.transaction():
        for block in ("rollup-1m-delete", "rollup-1m-delete-bins"):
            store.con.execute(sqlfiles.query(SQL, block), minute_params)
        for source in SOURCES:
            store.con.execute(sqlfiles.query(SQL, f"rollup-1m-{source}"), minute_params)
            store.con.execute(sqlfiles.query(SQL, f"rollup-1m-{source}-bins"), minute_params)
        if complete:
            for block in ("rollup-1h-delete", "rollup-1h-delete-bins", "rollup-1h-build", "rollup-1h-build-bins"):
                store.con.execute(sqlfiles.query(SQL, block), hour_params)
        _extend_state(store, "1m", first, minutes_end, now)
        first_hour = floor_to(first, HOUR_SECONDS)
        _extend_state(store, "1h", first_hour, max(first_hour, floor_to(minutes_end, HOUR_SECONDS)), now)
    return complete


def run(store: Store, now: float, settings: RollupSettings | None = None) -> RollupSummary:
    """Roll every closed minute up to ``now`` (and the hours they close); safe to run any number of times.

    Rows stamped before 1970 (EARLIEST_SECONDS) are never rolled: no clock that works stamps them (retention
    expires them, counted). Rows stamped after ``now`` wait for their minute to close.
    """
    settings = settings or RollupSettings()
    end = floor_to(now, MINUTE_SECONDS)
    minute = read_state(store).get("1m")
    if minute is None:  # a first run: from the earliest row (the hours with rows are found, however far apart)
        with store.reading() as cursor:
            row = cursor.execute(sqlfiles.query(SQL, "rollup-raw-earliest"),
                                 {"earliest": utc_datetime(EARLIEST_SECONDS)}).fetchone()
        start = end if row is None or row[0] is None else min(floor_to(float(row[0]), MINUTE_SECONDS), end)
    else:
        start = max(minute.rolled_from, floor_to(minute.rolled_until - settings.grace_seconds, MINUTE_SECONDS))
    late = None
    if minute is not None and settings.late_lookback_seconds > 0:
        # Not clamped to rolled_from: rows stamped before the first rolled minute (the wall clock jumped
        # back, a backlog older than the first run) are late rows too.
        lookback = max(EARLIEST_SECONDS, floor_to(start - settings.late_lookback_seconds, MINUTE_SECONDS))
        late = _late_minute(store, lookback, start)
        if late is not None:
            start = late
    if end <= start:
        if minute is None:  # nothing recorded yet: start the watermark here
            with store.transaction():
                _extend_state(store, "1m", end, end, now)
                _extend_state(store, "1h", floor_to(end, HOUR_SECONDS), floor_to(end, HOUR_SECONDS), now)
        return RollupSummary()
    summary = _roll(store, start, end, now)
    if late is not None:
        return RollupSummary(summary.minutes_start, summary.minutes_end, summary.hours_start, summary.hours_end,
                             late)
    return summary


def rebuild(store: Store, start: float, end: float, now: float) -> RollupSummary:
    """Re-roll every closed minute in [start, end) and the hours they touch, e.g. after a late backfill."""
    if not end > start:
        raise ConfigError(f"rebuild(start={start!r}, end={end!r}): expected start < end")
    minutes_start = max(EARLIEST_SECONDS, floor_to(start, MINUTE_SECONDS))
    minutes_end = min(ceil_to(end, MINUTE_SECONDS), floor_to(now, MINUTE_SECONDS))
    if minutes_end <= minutes_start:
        return RollupSummary()
    return _roll(store, minutes_start, minutes_end, now)


def job(store: Store, settings: RollupSettings) -> Job:
    """The owner's "rollup" job."""
    from .jobs import Job

    return Job("rollup", settings.interval_seconds, lambda now: run(store, now, settings))
