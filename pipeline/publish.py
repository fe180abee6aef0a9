"""The publish job: the data the archive does not hold yet, as Parquet beside it, for readers in other processes.

DuckDB lets no other process open the owner's file, not even read-only, so ``duckpulse sql``, notebooks
(``pipeline.history.connect()``) and a dashboard in another process read what the owner publishes: the hourly
archive (``pipeline/archive.py``) and, every ``interval_seconds``, the minutes not archived yet. Layout under the
history directory::

    _recent/<table>/<YYYYmmddTHHMM>.parquet   one minute of a time-stamped table, raw or rollup
    _recent/<table>/_empty.parquet            no rows, the table's columns (a readers' pattern always matches)
    _recent/<table>/data.parquet              a small table published whole (series, alerts, silences)
    _recent/watermark.parquet                 per table, recent_from: readers take the archive below it and the
                                              minutes at or above it, so no row is counted twice nor missed
    _recent/_published.json                   what each file holds and the watermarks published lately, so that
                                              a new owner of the file re-exports only what changed

Every file is written under a temporary name (which readers' ``*.parquet`` patterns never match) and renamed into
place. A run re-exports only the minutes whose rows changed since the last run, late rows included: for tables
rows are only appended to, the minutes the store noted as it committed flushes and ingests
(``Store.take_written_minutes``), and every ``FULL_SCAN_SECONDS`` the row count of every minute (which also sees
rows written by other means); for the rollup tables, whose rows the rollup job rewrites, a hash of each minute.

The watermark of a table is its ``archived_until`` (or, when the archive lags more than ``max_window_seconds``,
that far back). It is written after the minute files at or above it, and a minute file is deleted only once every
watermark published in the last ``keep_seconds`` is above it: a query reads the watermark once, so one that read
an earlier watermark while the archive moved it still finds every row it needs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sqlfiles
from .archive import TABLES as TIME_TABLES
from .archive import ArchiveSettings, history_dir_of
from .clock import utc_datetime
from .settings import PublishSettings as PublishSettings  # defined with the other settings
from .sqlfiles import quote_identifier
from .store import Store

if TYPE_CHECKING:
    from .jobs import Job

SQL = "publish.sql"
RECENT_DIR = "_recent"
WATERMARK_FILE = "watermark.parquet"
INDEX_FILE = "_published.json"
EMPTY_FILE = "_empty.parquet"
WHOLE_FILE = "data.parquet"
MINUTE_SECONDS = 60
# Tables rows are only ever appended to (and cut from the old end by retention): a minute's row count says
# whether it changed. The rollup tables are rewritten as late rows are re-rolled: their content is hashed.
APPEND_ONLY = frozenset({"requests", "queries", "process_samples", "points"})
# Between two full counts of every minute of the window (which also see rows written other than by flushes and
# ingests, e.g. a backfill through Store.append), a run re-exports the minutes the store says it wrote to.
FULL_SCAN_SECONDS = 300.0
# Small tables published whole, each time their content changes.
WHOLE_TABLES = ("series", "alert_state", "alert_events", "silences")
Fingerprint = list[int]  # [rows, hash of their content] of a published file (hash 0 for append-only tables)


@dataclass(frozen=True)
class PublishSummary:
    """What one run wrote and deleted."""

    history_dir: str
    files_written: int = 0
    rows_written: int = 0
    files_deleted: int = 0
    minutes: dict[str, int] = field(default_factory=dict)  # table -> minute files written


def minute_name(minute: float) -> str:
    return f"{datetime.fromtimestamp(minute, UTC):%Y%m%dT%H%M}.parquet"


def _compose(sql: str, table: str, column: str | None = None) -> str:
    # Only names from the fixed allow-lists above ever reach the SQL text, quoted.
    sql = sql.replace("/* table */", quote_identifier(table))
    return sql.replace("/* column */", quote_identifier(column)) if column else sql


def _replace(tmp: Path, target: Path, write: Any) -> Any:
    """``write(tmp)``, then rename ``tmp`` over ``target``: readers see the old file or the new one, never half."""
    try:
        result = write(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return result


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


class Publisher:
    """Publishes one store's recent data under one history directory (the owner keeps one per file)."""

    def __init__(self, store: Store, history_dir: Path, settings: PublishSettings | None = None) -> None:
        self.store = store
        self.root = Path(history_dir) / RECENT_DIR
        self.settings = settings or PublishSettings()
        # Made at the first run, not here: an owner that never runs its jobs leaves nothing beside its file.
        for leftover in self.root.rglob(".*.tmp"):  # of an owner that died mid-write: only the owner writes here
            leftover.unlink(missing_ok=True)
        # What an earlier owner published: table -> minute (epoch seconds, a string as in the index file) -> the
        # fingerprint of its file; and the watermarks published within keep_seconds, with when, since readers may
        # still hold any of them (minute files below the lowest are needed by none).
        self.published, self._watermarks = self._load_index()
        store.watch_written_minutes()
        self._next_full_scan = -math.inf
        self._low: dict[str, float] = {}  # per table, the lowest watermark of the last run
        self._empty_written: set[str] = set()  # tables whose _empty.parquet this owner wrote (its schema's)

    def _load_index(self) -> tuple[dict[str, dict[str, Fingerprint]], list[tuple[float, dict[str, float]]]]:
        """The last owner's index, as far as its files are still there (a damaged index: nothing)."""
        try:
            index = json.loads((self.root / INDEX_FILE).read_text())
            files, watermarks = index["files"], index["watermarks"]
            kept = {table: {m: list(fp) for m, fp in minutes.items()
                            if (self.root / table / self._file_of(table, m)).exists()}
                    for table, minutes in files.items() if table in TIME_TABLES or table in WHOLE_TABLES}
            return kept, [(float(at), {t: float(w) for t, w in marks.items()}) for at, marks in watermarks]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}, []

    @staticmethod
    def _file_of(table: str, minute: str) -> str:
        return WHOLE_FILE if table in WHOLE_TABLES else minute_name(float(minute))

    def run(self, now: float) -> PublishSummary:
        """Export what changed, publish the watermark, delete what readers no longer need."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Rows flushed and ingested from here on are the next run's; those before are committed, so read below.
        written_minutes = self.store.take_written_minutes()
        archived = dict(self.store.fetchall(sqlfiles.query(SQL, "publish-archived-until")))
        window_start = math.floor((now - self.settings.max_window_seconds) / MINUTE_SECONDS) * MINUTE_SECONDS
        window_end = now + self.settings.max_window_seconds
        watermark = {table: max(archived.get(table, -math.inf), window_start) for table in TIME_TABLES}
        self._watermarks = [(t, w) for t, w in self._watermarks if now - self.settings.keep_seconds <= t <= now]
        self._watermarks.append((now, watermark))
        # Every FULL_SCAN_SECONDS (and first) every minute is counted instead of trusting the store's notes.
        full_scan = not self._next_full_scan - FULL_SCAN_SECONDS <= now < self._next_full_scan
        if full_scan:
            self._next_full_scan = now + FULL_SCAN_SECONDS
        written = rows = deleted = 0
        minutes_written: dict[str, int] = {}
        for table, column in TIME_TABLES.items():
            # The lowest watermark a reader may hold: minutes from there on stay published and current. When it
            # went down (the archive's state did), the minutes below the last run's are compared one by one.
            low = min(w.get(table, watermark[table]) for _, w in self._watermarks)
            lowered = low < self._low.get(table, -math.inf)
            self._low[table] = low
            journal = None if full_scan or lowered or table not in APPEND_ONLY else written_minutes.get(table, set())
            done, n_rows = self._publish_minutes(table, column, low, window_end, journal)
            written, rows, minutes_written[table] = written + done, rows + n_rows, done
            deleted += self._delete_below(table, low)
        for table in WHOLE_TABLES:
            done, n_rows = self._publish_whole(table)
            written, rows = written + done, rows + n_rows
        self._write_watermark(watermark, now)  # after the files at or above it
        self._write_index()
        return PublishSummary(str(self.root.parent), written, rows, deleted, minutes_written)

    def _publish_minutes(self, table: str, column: str, since: float, until: float,
                         journal: set[float] | None) -> tuple[int, int]:
        """Export the minutes in [since, until) that changed: the ones the store says it wrote to (``journal``),
        or, when that is None, every minute whose fingerprint differs from the published one."""
        folder = self.root / table
        folder.mkdir(exist_ok=True)
        if table not in self._empty_written:
            self._copy(_compose(sqlfiles.query(SQL, "publish-empty"), table), {}, folder / EMPTY_FILE)
            self._empty_written.add(table)
        published = self.published.setdefault(table, {})
        held: dict[str, Fingerprint | None]
        if journal is None:
            block = "publish-minutes-count" if table in APPEND_ONLY else "publish-minutes-hash"
            with self.store.reading() as cursor:
                held = {f"{float(m):.0f}": [int(n), int(h)] for m, n, h in cursor.execute(
                    _compose(sqlfiles.query(SQL, block), table, column),
                    {"since": utc_datetime(since), "until": utc_datetime(until)}).fetchall()}
            for minute in [m for m in published if float(m) >= since and m not in held]:
                (folder / minute_name(float(minute))).unlink(missing_ok=True)  # its rows are gone
                del published[minute]
        else:  # rows are only appended: a minute written to is re-exported, and its count is what the copy wrote
            held = {f"{m:.0f}": None for m in journal if since <= m < until}
        written = rows = 0
        for minute, fingerprint in sorted(held.items()):
            if fingerprint is not None and published.get(minute) == fingerprint:
                continue
            start = float(minute)
            copied = self._copy(_compose(sqlfiles.query(SQL, "publish-minute"), table, column),
                                {"start": utc_datetime(start), "end": utc_datetime(start + MINUTE_SECONDS)},
                                folder / minute_name(start))
            # A fingerprint taken before the copy: rows that arrived in between make a later run copy it again.
            published[minute] = fingerprint if fingerprint is not None else [copied, 0]
            written, rows = written + 1, rows + copied
        return written, rows

    def _publish_whole(self, table: str) -> tuple[int, int]:
        with self.store.reading() as cursor:
            row = cursor.execute(_compose(sqlfiles.query(SQL, "publish-whole-hash"), table)).fetchone()
        fingerprint = [int(row[0]), int(row[1])] if row else [0, 0]
        published = self.published.setdefault(table, {})
        if published.get("0") == fingerprint:
            return 0, 0
        folder = self.root / table
        folder.mkdir(exist_ok=True)
        self._copy(_compose(sqlfiles.query(SQL, "publish-whole"), table), {}, folder / WHOLE_FILE)
        published["0"] = fingerprint
        return 1, fingerprint[0]

    def _delete_below(self, table: str, limit: float) -> int:
        published = self.published.get(table, {})
        old = [m for m in published if float(m) < limit]
        for minute in old:
            (self.root / table / minute_name(float(minute))).unlink(missing_ok=True)
            del published[minute]
        return len(old)

    def _copy(self, sql: str, params: dict[str, Any], target: Path) -> int:
        """Run a COPY into ``target``; returns the rows written."""
        def write(tmp: Path) -> int:
            with self.store.reading() as cursor:
                row = cursor.execute(sql, {**params, "path": str(tmp)}).fetchone()
            return int(row[0]) if row else 0

        result: int = _replace(_temporary(target), target, write)
        return result

    def _write_watermark(self, watermark: dict[str, float], now: float) -> None:
        params = {"tables": list(watermark), "recent_from": [utc_datetime(w) for w in watermark.values()],
                  "published_at": utc_datetime(now)}
        self._copy(sqlfiles.query(SQL, "publish-watermark"), params, self.root / WATERMARK_FILE)

    def _write_index(self) -> None:
        index = {"files": self.published, "watermarks": self._watermarks}
        target = self.root / INDEX_FILE
        _replace(_temporary(target), target, lambda tmp: tmp.write_text(json.dumps(index)))


def watermark_path(history_dir: Path) -> Path:
    """The file whose presence says that an owner has published under ``history_dir``."""
    return history_dir / RECENT_DIR / WATERMARK_FILE


def job(store: Store, archive: ArchiveSettings, settings: PublishSettings | None = None) -> Job | None:
    """The owner's "publish" job over ``store``, or None when there is nowhere to publish (an in-memory store)."""
    from .jobs import Job

    history_dir = history_dir_of(store, archive)  # the archive's, also the published data's
    if history_dir is None:
        return None
    publisher = Publisher(store, history_dir, settings)
    return Job("publish", publisher.settings.interval_seconds, publisher.run)
