"""The archive job: closed hours exported to Parquet, in a hive layout that any engine can read.

``<history>/<table>/date=YYYY-MM-DD/hour=HH/data.parquet`` holds one hour of one table; ``<history>/series/``
holds the custom series. The history directory defaults to ``<db>.history`` next to the DuckDB file. A file is
written under a temporary name and renamed into place, so a reader never sees half a file and exporting the
same hour again replaces it whole: the archive is idempotent.

An hour is exported once it is closed: ``grace_seconds`` after its end for raw tables, and for the rollup tables
only once the hour rollups cover it too. Which hours to export comes from where rows are, not from a walk forward
from a watermark: the ledger ``archive_hours`` holds, per table and hour, how much of the hour's rows in the
database the history holds (rows; for rollup tables the raw rows they count), and an hour is exported whenever the
database holds more or other rows than that. So rows that arrive late, however late (a producer that could not
spool for a day, a wall clock that jumped ahead and back, a row stamped 15 years ago), reach their own hour's
partition, and an old row costs one file, not a crawl through every empty hour since. Retention deletes the raw
rows of an hour only once the ledger says the history holds all of them (pipeline/retention.py); a late row of an
hour whose rows retention already deleted goes into a second file of that partition, ``late-1.parquet`` (then
``late-2``...), so the earlier file is never overwritten. Readers glob ``*.parquet``: they read every file.

What never reaches the history, each counted by retention in ``expired_rows``: rows stamped before 1970 or more than
the raw retention ahead of the owner's clock (no working clock stamps them), and rows of an hour older than the
history itself keeps (``history_days``) when they reach the archive.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sqlfiles
from .clock import utc_datetime
from .errors import ConfigError
from .rollup import EARLIEST_SECONDS, HOUR_SECONDS, epoch_of, floor_to, read_state
from .settings import ArchiveSettings as ArchiveSettings  # defined with the other settings
from .store import Store, quote_identifier

if TYPE_CHECKING:
    from .jobs import Job

SQL = "archive.sql"
# Each archived table and its time column; the order is the order of export.
TABLES = {
    "requests": "ts",
    "queries": "ts",
    "process_samples": "ts",
    "points": "ts",
    "exceptions": "ts",
    "rollups_1m": "bucket_start",
    "rollup_bins_1m": "bucket_start",
    "rollups_1h": "bucket_start",
    "rollup_bins_1h": "bucket_start",
}
ROLLUP_TABLES = frozenset(t for t in TABLES if t.startswith("rollup"))
SERIES_DIR = "series"
FILE_NAME = "data.parquet"


@dataclass(frozen=True)
class ArchiveSummary:
    """What one run wrote and pruned."""

    history_dir: str | None
    files_written: int = 0
    hours: dict[str, int] = field(default_factory=dict)  # table -> hours exported
    partitions_pruned: int = 0


def default_history_dir(db_path: str | os.PathLike[str]) -> Path:
    """``<db>.history`` beside the DuckDB file."""
    path = Path(db_path)
    return path.with_name(path.name + ".history")


def partition_dir(history_dir: Path, table: str, hour_start: float) -> Path:
    """``<history>/<table>/date=YYYY-MM-DD/hour=HH`` for the hour starting at ``hour_start``."""
    moment = datetime.fromtimestamp(hour_start, UTC)
    return history_dir / table / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}"


def compose(sql: str, table: str) -> str:
    # Only names from the fixed TABLES allow-list ever reach the SQL text, quoted (and one of two fixed measures).
    measure = "sum(count)" if table in ROLLUP_TABLES else "count(*)"
    return (sql.replace("/* table */", quote_identifier(table)).replace("/* column */", quote_identifier(TABLES[table]))
            .replace("/* measure */", measure))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def history_dir_of(store: Store, settings: ArchiveSettings) -> Path | None:
    """Where the archive writes: ``settings.history_dir``, else ``<db>.history``; None for an in-memory store told
    nothing (it has no history, and retention then waits for none)."""
    if settings.history_dir is not None:
        return Path(settings.history_dir)
    return default_history_dir(store.path) if store.path is not None else None


def history_start(now: float, settings: ArchiveSettings) -> float:
    """The first hour the history keeps (epoch seconds): older hours are pruned, and rows of them that reach the
    archive later are never exported (retention expires them, counted)."""
    if settings.history_days is None:
        return EARLIEST_SECONDS
    return max(EARLIEST_SECONDS, floor_to(now - settings.history_days * 86_400, HOUR_SECONDS))


def file_name(part: int) -> str:
    """The file of an hour's partition that holds its ``part``: data.parquet, then late-1.parquet, ..."""
    return FILE_NAME if part == 0 else f"late-{part}.parquet"


def _replace(tmp: Path, target: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _temporary(target: Path) -> Path:
    # The temporary name does not end in .parquet, so the history views never read a half-written file.
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def _write(store: Store, sql: str, params: dict[str, object], target: Path) -> None:
    """Run a COPY ... TO into a temporary file beside ``target``, then rename it into place."""
    tmp = _temporary(target)
    try:
        with store.reading() as cursor:
            cursor.execute(sql, {**params, "path": str(tmp)})
        _replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def export_hour(store: Store, history_dir: Path, table: str, hour_start: float, part: int = 0) -> Path:
    """Write one hour of one table to its partition (replacing an earlier export of the same part)."""
    return _export(store, history_dir, table, hour_start, part)[0]


def _export(store: Store, history_dir: Path, table: str, hour_start: float, part: int) -> tuple[Path, int]:
    """export_hour, and the hour's measure (rows, or for rollup tables the raw rows they count) in the file: read
    in the same snapshot as the rows written, so rows arriving meanwhile make the hour differ again."""
    if table not in TABLES:
        raise ConfigError(f"table={table!r}: the archive exports {', '.join(TABLES)}")
    target = partition_dir(history_dir, table, hour_start) / file_name(part)
    params = {"start": utc_datetime(hour_start), "end": utc_datetime(hour_start + HOUR_SECONDS)}
    tmp = _temporary(target)
    try:
        with store.reading() as cursor:
            cursor.execute("BEGIN TRANSACTION")
            try:
                row = cursor.execute(compose(sqlfiles.query(SQL, "archive-hour-measure"), table), params).fetchone()
                cursor.execute(compose(sqlfiles.query(SQL, "archive-export"), table), {**params, "path": str(tmp)})
            finally:
                cursor.execute("COMMIT")
        _replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target, int(row[0]) if row and row[0] is not None else 0


def _prune(history_dir: Path, now: float, days: float) -> int:
    """Delete hour partitions that ended more than ``days`` ago."""
    oldest_kept = now - days * 86_400
    pruned = 0
    for table in (*TABLES, SERIES_DIR):
        for date_dir in sorted((history_dir / table).glob("date=*")):
            for hour_dir in sorted(date_dir.glob("hour=*")):
                try:
                    start = datetime.strptime(f"{date_dir.name[5:]} {hour_dir.name[5:]}", "%Y-%m-%d %H")
                except ValueError:
                    continue  # not ours: leave it alone
                if epoch_of(start) + HOUR_SECONDS <= oldest_kept:
                    shutil.rmtree(hour_dir)
                    pruned += 1
            if not any(date_dir.iterdir()):
                date_dir.rmdir()
    return pruned


def _read(store: Store, block: str, table: str, params: dict[str, object]) -> list[tuple[Any, ...]]:
    with store.reading() as cursor:
        return cursor.execute(compose(sqlfiles.query(SQL, block), table), params).fetchall()


def hours_to_export(store: Store, table: str, start: float, end: float) -> list[tuple[float, int]]:
    """(hour, part) of each hour in [start, end) whose rows in the database differ from what the ledger says the
    history holds of them (a per-hour count over the range: the caller keeps the range small or rare)."""
    params = {"table_name": table, "start": utc_datetime(start), "end": utc_datetime(end)}
    return [(float(hour), int(part)) for hour, part in _read(store, "archive-changed-hours", table, params)]


def _unchanged(store: Store, table: str, start: float, end: float) -> bool:
    """Whether the database holds exactly what the ledger says the history holds of [start, end), by one total on
    each side (a range scan, no grouping): true unless late rows arrived there."""
    params = {"table_name": table, "start": utc_datetime(start), "end": utc_datetime(end)}
    held, archived = _read(store, "archive-range-totals", table, params)[0]
    return bool(held == archived)


def run(store: Store, now: float, settings: ArchiveSettings | None = None) -> ArchiveSummary:
    """Export every closed hour whose rows the history does not hold yet (at most ``max_hours_per_run`` per table),
    late rows included."""
    settings = settings or ArchiveSettings()
    history_dir = history_dir_of(store, settings)
    if history_dir is None:
        return ArchiveSummary(None)  # an in-memory store: nowhere to archive to unless told
    low = history_start(now, settings)
    closed = floor_to(now - settings.grace_seconds, HOUR_SECONDS)
    hour_tier = read_state(store).get("1h")
    archived = {t: float(u) for t, u in store.fetchall(sqlfiles.query(SQL, "archive-state"))}
    files = 0
    hours_done: dict[str, int] = {}
    for table in TABLES:
        limit = closed
        if table in ROLLUP_TABLES:
            if hour_tier is None:
                continue
            limit = min(limit, hour_tier.rolled_until)
        if limit <= low:
            continue
        # Below the last run's limit, hours change only when late rows arrive: one total says whether any did.
        below = min(max(archived.get(table, low), low), limit)
        todo = [] if _unchanged(store, table, low, below) else hours_to_export(store, table, low, below)
        todo += hours_to_export(store, table, below, limit)  # the hours closed since (or all, at a first run)
        done = todo[:settings.max_hours_per_run]
        ledger = [(hour, part, _export(store, history_dir, table, hour, part)[1]) for hour, part in done]
        files += len(done)
        if done:
            hours_done[table] = len(done)
        # Every hour before this is in the history (as of this run): the first one left for the next run.
        until = todo[len(done)][0] if len(todo) > len(done) else limit
        if not ledger and until == archived.get(table):
            continue
        with store.transaction():
            if ledger:
                store.con.execute(sqlfiles.query(SQL, "archive-hours-record"), {
                    "table_name": table, "hours": [utc_datetime(h) for h, _, _ in ledger],
                    "parts": [p for _, p, _ in ledger], "archived": [m for _, _, m in ledger]})
            store.con.execute(sqlfiles.query(SQL, "archive-state-upsert"), {
                "table_name": table, "archived_until": utc_datetime(until), "updated_at": utc_datetime(now)})
    if files:
        _write(store, sqlfiles.query(SQL, "archive-series"), {}, history_dir / SERIES_DIR / FILE_NAME)
        files += 1
    # The ledger of pruned hours stays until retention has deleted their raw rows: it counts what the history had.
    pruned = _prune(history_dir, now, settings.history_days) if settings.history_days is not None else 0
    return ArchiveSummary(str(history_dir), files, hours_done, pruned)


def job(store: Store, settings: ArchiveSettings) -> Job:
    """The owner's "archive" job."""
    from .jobs import Job

    return Job("archive", settings.interval_seconds, lambda now: run(store, now, settings))
