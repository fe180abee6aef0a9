"""Tiered retention: raw rows, minute rollups and hour rollups each expire after their own time, then CHECKPOINT.

DuckDB reuses the blocks that deleted rows free, but never shrinks the file; ``compact`` (``duckpulse
compact``) rewrites it into a fresh file with ``COPY FROM DATABASE`` and swaps the two atomically.

Retention never deletes what the next tier has not absorbed yet: raw rows stay until the minute rollups cover
them, minute rollups until the hour rollups do, whatever the settings say (a stalled rollup job delays expiry
instead of losing data). An owner that archives (pipeline/archive.py) deletes the rows of an archived table only
by whole hours, and only hours whose rows the history holds, all of them (its ledger says so): rows that arrived
late wait for the archive, however old they are.

Rows that never reach the history are deleted and counted by reason in ``expired_rows`` (``expired_totals``),
under these rules (EXPIRED): rows stamped before 1970 and rows stamped more than ``raw_days`` ahead of the owner's
clock (no working clock stamps them: an unset clock, milliseconds taken for seconds; such rows would otherwise
never expire), and rows of an hour older than the history keeps (``ArchiveSettings.history_days``) that had not
reached it. Without a history (an in-memory store) rows simply expire after their tier's time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from . import archive, sqlfiles
from .clock import SYSTEM_CLOCK, utc_datetime
from .errors import ConfigError, OwnershipError
from .rollup import EARLIEST_SECONDS, HOUR_SECONDS, MINUTE_SECONDS, ceil_to, floor_to, read_state
from .settings import ArchiveSettings
from .settings import RetentionSettings as RetentionSettings  # defined with the other settings
from .store import OwnerLock, Store

if TYPE_CHECKING:
    from .jobs import Job

SQL = "retention.sql"
DAY_SECONDS = 86_400
# Tables that are not archived, expired by time alone (the archived ones are archive.TABLES).
OTHER_RAW_BLOCKS = ("retention-ingested-segments",)
HOUR_BLOCKS = ("retention-alert-events", "retention-expired-silences")
# Why rows were deleted without reaching the history (the reasons of expired_rows and RetentionSummary.expired).
BEFORE_1970 = "stamped before 1970"
FUTURE = "stamped further ahead than raw_days"
OLDER_THAN_HISTORY = "older than the history keeps"
EXPIRED = (BEFORE_1970, FUTURE, OLDER_THAN_HISTORY)


@dataclass(frozen=True)
class RetentionSummary:
    """What one run deleted, and the cutoffs it used (epoch seconds)."""

    raw_cutoff: float
    rollups_1m_cutoff: float
    rollups_1h_cutoff: float
    deleted: dict[str, int] = field(default_factory=dict)  # table (with - for _) or block name -> rows
    checkpointed: bool = False
    # Rows deleted without reaching the history: reason (EXPIRED) -> table -> rows.
    expired: dict[str, dict[str, int]] = field(default_factory=dict)


def cutoff(now: float, keep_seconds: float) -> float:
    """The oldest time kept: rows stamped before ``now - keep_seconds`` expire."""
    if not keep_seconds > 0:
        raise ConfigError(f"keep_seconds={keep_seconds!r}: expected a number of seconds > 0")
    return now - keep_seconds


def expired_totals(store: Store) -> dict[str, dict[str, int]]:
    """Rows deleted without reaching the history since the database was created: reason -> table -> rows."""
    totals: dict[str, dict[str, int]] = {}
    for table, reason, rows in store.fetchall(sqlfiles.query(SQL, "retention-expired-totals")):
        totals.setdefault(reason, {})[table] = int(rows)
    return totals


class _Expiry:
    """One run's deletions of archived tables, in the caller's transaction: counts them in ``deleted`` and what
    never reached the history in ``expired`` (reason -> table -> rows) and in the expired_rows table."""

    def __init__(self, store: Store, deleted: dict[str, int], expired: dict[str, dict[str, int]]) -> None:
        self.store = store
        self.deleted = deleted
        self.expired = expired

    def execute(self, block: str, table: str, params: dict[str, object]) -> int:
        row = self.store.con.execute(archive.compose(sqlfiles.query(SQL, block), table), params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def delete(self, table: str, start: float, end: float) -> int:
        """Delete the rows of [start, end) (either may be infinite); returns how many."""
        rows = self.execute("retention-delete-range", table, {
            "start": utc_datetime(start) if math.isfinite(start) else None,
            "end": utc_datetime(end) if math.isfinite(end) else None})
        key = table.replace("_", "-")
        self.deleted[key] = self.deleted.get(key, 0) + rows
        return rows

    def count(self, table: str, reason: str, rows: int) -> None:
        if rows > 0 and table not in archive.ROLLUP_TABLES:  # rollup rows count raw rows, counted themselves
            self.expired.setdefault(reason, {})[table] = self.expired.get(reason, {}).get(table, 0) + rows
            self.store.con.execute(sqlfiles.query(SQL, "retention-expired-add"),
                                   {"table_name": table, "reason": reason, "rows": rows})

    def impossible(self, table: str, future_from: float) -> None:
        """Rows no working clock stamps: before 1970, or further ahead than the raw tier keeps rows."""
        if table in archive.ROLLUP_TABLES:
            return  # built from closed minutes since 1970 only
        self.count(table, BEFORE_1970, self.delete(table, -math.inf, EARLIEST_SECONDS))
        self.count(table, FUTURE, self.delete(table, future_from, math.inf))

    def hours_with_rows(self, table: str, end: float) -> list[float]:
        """The hours that hold rows stamped in [1970, end) (epoch seconds, in order), read without the writer's
        lock: each is then deleted in a transaction of its own."""
        with self.store.reading() as cursor:
            rows = cursor.execute(archive.compose(sqlfiles.query(SQL, "retention-hours-with-rows"), table), {
                "earliest": utc_datetime(EARLIEST_SECONDS), "end": utc_datetime(end)}).fetchall()
        return [float(hour) for (hour,) in rows]

    def archived_hour(self, table: str, hour: float, history_start: float) -> None:
        """Delete the rows of ``hour`` if the history holds all of them, or if the hour is older than it keeps (those
        it lacks are counted as expired); checked in the caller's transaction, so a row arriving meanwhile keeps it."""
        span = {"start": utc_datetime(hour), "end": utc_datetime(hour + HOUR_SECONDS)}
        rows = self.store.con.execute(archive.compose(sqlfiles.query(SQL, "retention-hours"), table),
                                      {"table_name": table, **span}).fetchall()
        for _, n, measure, done in rows:
            if measure != done and hour >= history_start:
                continue  # late rows the archive has not exported yet: they wait for it
            self.delete(table, hour, hour + HOUR_SECONDS)
            self.execute("retention-hours-deleted", table, {"table_name": table, **span})
            if measure != done:
                self.count(table, OLDER_THAN_HISTORY, int(n) - int(done))

    def forget(self, table: str, before: float) -> None:
        self.execute("retention-hours-forget", table, {"table_name": table, "before": utc_datetime(before)})


def run(store: Store, now: float, settings: RetentionSettings | None = None,
        archive_settings: ArchiveSettings | None = None) -> RetentionSummary:
    """Delete every expired row of every tier, then CHECKPOINT. With ``archive_settings`` (the owner's archive, when
    it has a history), archived tables lose only hours the history holds, and whatever never reaches it is counted.

    Each hour of each table is its own transaction, so the writer's lock is held for one hour's deletions at a time.
    """
    settings = settings or RetentionSettings()
    raw_cut = cutoff(now, settings.raw_days * DAY_SECONDS)
    minute_cut = cutoff(now, settings.rollups_1m_days * DAY_SECONDS)
    hour_cut = cutoff(now, settings.rollups_1h_days * DAY_SECONDS)
    state = read_state(store)
    if "1m" in state:
        raw_cut = min(raw_cut, state["1m"].rolled_until)
    if "1h" in state:
        minute_cut = min(minute_cut, state["1h"].rolled_until)
    history = archive_settings is not None and archive.history_dir_of(store, archive_settings) is not None
    history_start = archive.history_start(now, archive_settings) if archive_settings is not None else 0.0
    deleted: dict[str, int] = {}
    expired: dict[str, dict[str, int]] = {}
    tier_cut = {"1m": minute_cut, "1h": hour_cut}
    for table in archive.TABLES:
        cut = tier_cut.get(table[-2:], raw_cut) if table in archive.ROLLUP_TABLES else raw_cut
        expiry = _Expiry(store, deleted, expired)
        with store.transaction():
            expiry.impossible(table, now + settings.raw_days * DAY_SECONDS)
        # Hour by hour, each its own transaction: a backlog (an archive that failed for days, a first run over an
        # old file) never holds the writer's lock for more than one hour's rows of one table.
        end = floor_to(cut, HOUR_SECONDS) if history else cut  # with a history, whole hours only
        for hour in expiry.hours_with_rows(table, end):
            with store.transaction():
                if history:
                    expiry.archived_hour(table, hour, history_start)
                else:
                    expiry.delete(table, hour, min(hour + HOUR_SECONDS, end))
        if history:
            with store.transaction():
                expiry.forget(table, min(history_start, end))
    with store.transaction():
        for blocks, cut in ((OTHER_RAW_BLOCKS, raw_cut), (HOUR_BLOCKS, hour_cut)):
            for block in blocks:
                row = store.con.execute(sqlfiles.query(SQL, block), {"cutoff": utc_datetime(cut)}).fetchone()
                deleted[block.removeprefix("retention-")] = int(row[0]) if row else 0
        for tier, cut, step in (("1m", minute_cut, MINUTE_SECONDS), ("1h", hour_cut, HOUR_SECONDS)):
            store.con.execute(sqlfiles.query(SQL, "retention-advance-tier"), {
                "tier": tier, "first_kept": utc_datetime(ceil_to(cut, step)), "now": utc_datetime(now)})
    with store.lock:
        try:
            store.con.execute(sqlfiles.query(SQL, "retention-checkpoint"))
            checkpointed = True
        except duckdb.Error:  # another connection's open transaction: the next run checkpoints instead
            checkpointed = False
    return RetentionSummary(raw_cut, minute_cut, hour_cut, deleted, checkpointed, expired)


def job(store: Store, settings: RetentionSettings, archive_settings: ArchiveSettings) -> Job:
    """The owner's "retention" job (it deletes archived rows only once the owner's archive holds them)."""
    from .jobs import Job

    return Job("retention", settings.interval_seconds, lambda now: run(store, now, settings, archive_settings))


@dataclass(frozen=True)
class CompactResult:
    """What ``compact`` checked and did."""

    path: Path
    # The file and its write-ahead log before, and after (the same when nothing was reclaimed).
    bytes_before: int
    bytes_after: int
    # The part of bytes_before that was the write-ahead log.
    wal_bytes_before: int
    # The size of the rewritten copy; it replaced the file only if smaller than bytes_before.
    rewritten_bytes: int

    @property
    def compacted(self) -> bool:
        """Whether the rewrite replaced the file (it was smaller)."""
        return self.rewritten_bytes < self.bytes_before


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _run_in_scratch(*steps: tuple[str, dict[str, str]]) -> None:
    """Run named blocks in an in-memory store, so that the only module that writes DuckDB stays store.py."""
    scratch = Store(None, SYSTEM_CLOCK)
    try:
        with scratch.lock:
            for block, params in steps:
                scratch.con.execute(sqlfiles.query(SQL, block), params)
    finally:
        scratch.close()


def compact(db_path: str | os.PathLike[str]) -> CompactResult:
    """Rewrite a database no owner holds into a fresh file, giving the space of deleted rows back.

    The file is never made larger: the copy replaces it only when smaller than the file and its write-ahead log
    together; otherwise the copy is deleted and the file, log included, is left exactly as it was. The copy is
    written beside the file and renamed over it only once complete, so a crash at any point leaves either the
    old file or the new one, never a mix.
    """
    path = Path(db_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such DuckDB file to compact")
    try:
        lock = OwnerLock(path)
    except OwnershipError:
        lock_file = path.with_name(path.name + ".owner.lock")
        holder = lock_file.read_text(errors="replace").strip() or "unknown"
        raise OwnershipError(
            f"cannot compact {path}: process {holder} owns it (lock file {lock_file}). Compacting rewrites the "
            "whole file, so stop the owner first (`duckpulse serve`, or the application that opened "
            "Monitor(db_path=...)), then run `duckpulse compact` again") from None
    target = path.with_name(path.name + ".compact-tmp")
    wal = path.with_name(path.name + ".wal")
    try:
        wal_before = _size(wal)
        before = path.stat().st_size + wal_before
        for stale in (target, target.with_name(target.name + ".wal")):
            stale.unlink(missing_ok=True)  # the leftovers of a compaction that crashed
        source = {"path": str(path)}
        _run_in_scratch(("compact-attach-source", source), ("compact-attach-target", {"path": str(target)}),
                        ("compact-copy", {}), ("compact-detach-target", {}), ("compact-detach-source", {}))
        _fsync(target)
        rewritten = target.stat().st_size
        if rewritten >= before:  # a file without deleted rows, or one whose log was small: nothing to reclaim
            return CompactResult(path, before, before, wal_before, rewritten)
        if wal_before:
            # The copy holds the log's rows too; folding the log into the file first means the rename below
            # never pairs the new file with the old log, whatever moment a crash picks.
            _run_in_scratch(("compact-attach-checkpoint", source), ("compact-detach-source", {}))
            wal.unlink(missing_ok=True)
        os.replace(target, path)
        _fsync(path.parent)
        return CompactResult(path, before, path.stat().st_size, wal_before, rewritten)
    finally:
        target.unlink(missing_ok=True)
        lock.release()
