"""The archive job: closed hours exported to Parquet, in a hive layout that any engine can read.

``<history>/<table>/date=YYYY-MM-DD/hour=HH/data.parquet`` holds one hour of one table; ``<history>/series/``
holds the custom series. The history directory defaults to ``<db>.history`` next to the DuckDB file. A file is
written under a temporary name and renamed into place, so a reader never sees half a file and exporting the
same hour again replaces it whole: the archive is idempotent.

An hour is exported once it is closed: ``grace_seconds`` after its end for raw tables (rows arrive a little
late), and for the rollup tables only once the hour rollups cover it too.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import sqlfiles
from .clock import utc_datetime
from .errors import ConfigError
from .rollup import HOUR_SECONDS, epoch_of, floor_to, read_state
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


def _compose(sql: str, table: str) -> str:
    # Only names from the fixed TABLES allow-list ever reach the SQL text, quoted.
    return sql.replace("/* table */", quote_identifier(table)).replace("/* column */", quote_identifier(TABLES[table]))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(store: Store, sql: str, params: dict[str, object], target: Path) -> None:
    """Run a COPY ... TO into a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name does not end in .parquet, so the history views never read a half-written file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with store.reading() as cursor:
            cursor.execute(sql, {**params, "path": str(tmp)})
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def export_hour(store: Store, history_dir: Path, table: str, hour_start: float) -> Path:
    """Write one hour of one table to its partition (replacing an earlier export of the same hour)."""
    if table not in TABLES:
        raise ConfigError(f"table={table!r}: the archive exports {', '.join(TABLES)}")
    target = partition_dir(history_dir, table, hour_start) / FILE_NAME
    _write(store, _compose(sqlfiles.query(SQL, "archive-export"), table),
           {"start": utc_datetime(hour_start), "end": utc_datetime(hour_start + HOUR_SECONDS)}, target)
    return target


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


def run(store: Store, now: float, settings: ArchiveSettings | None = None) -> ArchiveSummary:
    """Export every closed hour not archived yet (at most ``max_hours_per_run`` per table)."""
    settings = settings or ArchiveSettings()
    if settings.history_dir is not None:
        history_dir = Path(settings.history_dir)
    elif store.path is not None:
        history_dir = default_history_dir(store.path)
    else:
        return ArchiveSummary(None)  # an in-memory store: nowhere to archive to unless told
    closed = floor_to(now - settings.grace_seconds, HOUR_SECONDS)
    hour_tier = read_state(store).get("1h")
    archived = {t: epoch_of(u) for t, u in store.fetchall(sqlfiles.query(SQL, "archive-state"))}
    files = 0
    hours_done: dict[str, int] = {}
    for table in TABLES:
        limit = closed
        if table in ROLLUP_TABLES:
            if hour_tier is None:
                continue
            limit = min(limit, hour_tier.rolled_until)
        start = archived.get(table)
        if start is None:
            earliest = store.scalar(_compose(sqlfiles.query(SQL, "archive-earliest"), table))
            if earliest is None:
                continue
            start = floor_to(epoch_of(earliest), HOUR_SECONDS)
        end = min(limit, start + settings.max_hours_per_run * HOUR_SECONDS)
        if end <= start:
            continue
        hours = store.fetchall(_compose(sqlfiles.query(SQL, "archive-hours"), table),
                               {"start": utc_datetime(start), "end": utc_datetime(end)})
        for (hour,) in hours:
            export_hour(store, history_dir, table, epoch_of(hour))
        files += len(hours)
        hours_done[table] = len(hours)
        with store.transaction():
            store.con.execute(sqlfiles.query(SQL, "archive-state-upsert"), {
                "table_name": table, "archived_until": utc_datetime(end), "updated_at": utc_datetime(now)})
    if files:
        _write(store, sqlfiles.query(SQL, "archive-series"), {}, history_dir / SERIES_DIR / FILE_NAME)
        files += 1
    pruned = _prune(history_dir, now, settings.history_days) if settings.history_days is not None else 0
    return ArchiveSummary(str(history_dir), files, hours_done, pruned)


def job(store: Store, settings: ArchiveSettings) -> Job:
    """The owner's "archive" job."""
    from .jobs import Job

    return Job("archive", settings.interval_seconds, lambda now: run(store, now, settings))
