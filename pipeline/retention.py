"""Tiered retention: raw rows, minute rollups and hour rollups each expire after their own time, then CHECKPOINT.

DuckDB reuses the blocks that deleted rows free, but never shrinks the file; ``compact`` (``duckpulse
compact``) rewrites it into a fresh file with ``COPY FROM DATABASE`` and swaps the two atomically.

Retention never deletes what the next tier has not absorbed yet: raw rows stay until the minute rollups cover
them, minute rollups until the hour rollups do, whatever the settings say (a stalled rollup job delays expiry
instead of losing data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from . import sqlfiles
from .clock import SYSTEM_CLOCK, utc_datetime
from .errors import ConfigError, OwnershipError
from .rollup import HOUR_SECONDS, MINUTE_SECONDS, ceil_to, read_state
from .settings import RetentionSettings as RetentionSettings  # defined with the other settings
from .store import OwnerLock, Store

if TYPE_CHECKING:
    from .jobs import Job

SQL = "retention.sql"
DAY_SECONDS = 86_400
RAW_BLOCKS = ("retention-requests", "retention-queries", "retention-process-samples", "retention-points",
              "retention-ingested-segments")
MINUTE_BLOCKS = ("retention-rollups-1m", "retention-rollup-bins-1m")
HOUR_BLOCKS = ("retention-rollups-1h", "retention-rollup-bins-1h", "retention-alert-events",
               "retention-expired-silences")


@dataclass(frozen=True)
class RetentionSummary:
    """What one run deleted, and the cutoffs it used (epoch seconds)."""

    raw_cutoff: float
    rollups_1m_cutoff: float
    rollups_1h_cutoff: float
    deleted: dict[str, int] = field(default_factory=dict)  # block name -> rows
    checkpointed: bool = False


def cutoff(now: float, keep_seconds: float) -> float:
    """The oldest time kept: rows stamped before ``now - keep_seconds`` expire."""
    if not keep_seconds > 0:
        raise ConfigError(f"keep_seconds={keep_seconds!r}: expected a number of seconds > 0")
    return now - keep_seconds


def run(store: Store, now: float, settings: RetentionSettings | None = None) -> RetentionSummary:
    """Delete every expired row of every tier in one transaction, then CHECKPOINT."""
    settings = settings or RetentionSettings()
    raw_cut = cutoff(now, settings.raw_days * DAY_SECONDS)
    minute_cut = cutoff(now, settings.rollups_1m_days * DAY_SECONDS)
    hour_cut = cutoff(now, settings.rollups_1h_days * DAY_SECONDS)
    deleted: dict[str, int] = {}
    with store.lock:
        state = read_state(store)
        if "1m" in state:
            raw_cut = min(raw_cut, state["1m"].rolled_until)
        if "1h" in state:
            minute_cut = min(minute_cut, state["1h"].rolled_until)
        with store.transaction():
            for blocks, cut in ((RAW_BLOCKS, raw_cut), (MINUTE_BLOCKS, minute_cut), (HOUR_BLOCKS, hour_cut)):
                for block in blocks:
                    row = store.con.execute(sqlfiles.query(SQL, block), {"cutoff": utc_datetime(cut)}).fetchone()
                    deleted[block.removeprefix("retention-")] = int(row[0]) if row else 0
            for tier, cut, step in (("1m", minute_cut, MINUTE_SECONDS), ("1h", hour_cut, HOUR_SECONDS)):
                store.con.execute(sqlfiles.query(SQL, "retention-advance-tier"), {
                    "tier": tier, "first_kept": utc_datetime(ceil_to(cut, step)), "now": utc_datetime(now)})
        try:
            store.con.execute(sqlfiles.query(SQL, "retention-checkpoint"))
            checkpointed = True
        except duckdb.Error:  # another connection's open transaction: the next run checkpoints instead
            checkpointed = False
    return RetentionSummary(raw_cut, minute_cut, hour_cut, deleted, checkpointed)


def job(store: Store, settings: RetentionSettings) -> Job:
    """The owner's "retention" job."""
    from .jobs import Job

    return Job("retention", settings.interval_seconds, lambda now: run(store, now, settings))


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
