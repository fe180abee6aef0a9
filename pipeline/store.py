"""The DuckDB store: the one module that opens the database for writing.

Exactly one process owns a duckpulse database (DuckDB lets one process open a file for writing, and no other
process may even read it meanwhile). Owning means holding an exclusive ``flock`` on ``<db>.owner.lock``
(``OwnerLock``), taken before DuckDB opens the file: a process that finds it held records as a producer instead
(pipeline/owner.py decides), or fails at once with a message saying what to do, instead of DuckDB's bare error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from . import malloc, parquet, sqlfiles
from .clock import Clock, epoch_us, utc_datetime
from .errors import OwnershipError, SpoolError, SqlFileError, StoreError
from .logs import logger
from .malloc import DEFAULT_MEMORY_LIMIT as DEFAULT_MEMORY_LIMIT  # how it was chosen: pipeline/settings.py
from .owner_lock import OwnerLock as OwnerLock  # the lock Store takes (or is given) before it opens the file
from .spool import footer_span
from .sqlfiles import quote_identifier as quote_identifier

STORE_FILE = "store.sql"
TABLES = ("series", "requests", "queries", "points", "process_samples", "exceptions")
# What DuckDB 2.x says when a COMMIT was written to the WAL but the automatic checkpoint after it failed (e.g. on
# a full disk): the rows are durable, so the caller must not write them again, but the instance is invalidated.
_DURABLE_ANYWAY = "COMMIT succeeded and is durable"
# Errors that say the database could not take rows (disk full, I/O error, invalidated instance), as opposed to
# a segment file that cannot be read: the segments must then stay in the spool for a later run.
_STORE_FAILURES = (duckdb.IOException, duckdb.FatalException, duckdb.TransactionException,
                   duckdb.OutOfMemoryException, duckdb.ConnectionException)



def migrations() -> list[tuple[int, str]]:
    """Every ``migration-N`` block of every sql/*.sql file (each concept keeps its tables in its own file)."""
    found: dict[int, str] = {}
    for filename in sqlfiles.names():
        for name, sql in sqlfiles.load(filename).items():
            if name.startswith("migration-"):
                version = int(name.removeprefix("migration-"))
                if version in found:
                    raise SqlFileError(f"sql/{filename}: migration-{version} is defined in two files")
                found[version] = sql
    return sorted(found.items())


def _check_segments(table: str, paths: Sequence[str], columns: Mapping[str, int],
                    spans: dict[str, tuple[float, float] | None] | None = None) -> dict[str, int]:
    """Each file's row count, from its own footer; SpoolError unless every footer says the file holds ``table``
    with exactly ``columns`` (name -> Parquet physical type). ``spans``, when given, gets each file's rows' time
    span as its footer says it (``spool.footer_span``: None when it says none)."""
    rows: dict[str, int] = {}
    for path in paths:
        try:
            footer = parquet.read_footer(path)
        except (OSError, parquet.FooterError) as exc:
            raise SpoolError(f"{path}: {exc}") from exc
        said = footer.metadata.get("duckpulse.table")
        if said != table:
            raise SpoolError(f"{path} is not a duckpulse segment of {table} (its footer says {said!r}): it was not "
                             "written by duckpulse, or by an incompatible version")
        if footer.columns != dict(columns):
            raise SpoolError(f"{path} holds columns {footer.columns} where a segment of {table} holds "
                             f"{dict(columns)} (Parquet physical types)")
        rows[path] = footer.num_rows
        if spans is not None:
            spans[path] = footer_span(footer.metadata)
    return rows


# DuckDB checkpoints automatically once the WAL holds this much; until then the rows appended since the last
# checkpoint stay in memory, uncompressed (DuckDB's default 16MB of WAL held ~20 MB there at 400 requests/s).
CHECKPOINT_THRESHOLD = "4MB"
# DuckDB keeps every table block it wrote at a checkpoint or read for a query until memory_limit forces it out:
# inside the host app that cache grew ~1.5-5 MB/min under load (RELIABILITY.md). release_cache() evicts it down to
# this many bytes of table blocks, and the owner runs it every CACHE_RELEASE_INTERVAL_SECONDS.
CACHE_KEPT_BYTES = 8 * 2**20
CACHE_RELEASE_INTERVAL_SECONDS = 10.0
# How long release_cache() waits for running reads to finish before it skips a round (new reads wait meanwhile).
CACHE_RELEASE_WAIT_SECONDS = 0.25
# A long-lived DuckDB instance also keeps C++ objects for every block and checkpoint it handled (~0.4 MB/min of
# malloc'd memory at 400 requests/s, RELIABILITY.md) that only closing the database frees: release_memory()
# closes and reopens it this often, and hands the freed pages back to the OS.
RECYCLE_INTERVAL_SECONDS = 60.0


class ReadGate:
    """Reads share it; releasing DuckDB's cache excludes them, briefly.

    Evicting the cache means lowering DuckDB's memory_limit for a moment, and a query running meanwhile could then
    fail to allocate (measured: it does, and so can the statement that restores the limit). So reads hold the gate
    in shared mode, and the release waits until none runs, holding off new ones for the ~1 ms it takes. Shared mode
    is re-entrant per thread: a read inside a read (a dashboard view calling Monitor.percentiles) never waits for an
    exclusive holder that waits for it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._reads = 0
        self._excluding = False
        self._depth = threading.local()

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth: int = getattr(self._depth, "n", 0)
        if depth == 0:
            with self._cond:
                while self._excluding:
                    self._cond.wait()
                self._reads += 1
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            if depth == 0:
                with self._cond:
                    self._reads -= 1
                    if self._reads == 0:
                        self._cond.notify_all()

    @contextmanager
    def exclusive(self, timeout_seconds: float) -> Iterator[bool]:
        """Yields True once no read runs (new ones wait), or False if reads still ran after the timeout."""
        with self._cond:
            self._excluding = True
            drained = self._cond.wait_for(lambda: self._reads == 0, timeout_seconds)
            if not drained:
                self._excluding = False
                self._cond.notify_all()
        try:
            yield drained
        finally:
            if drained:
                with self._cond:
                    self._excluding = False
                    self._cond.notify_all()


@dataclass
class FileLoss:
    """The database file deleted (or replaced) under its owner: how often, and what was only in it."""

    # Times the owner found another file (or none) at its path and recreated the database there.
    count: int = 0
    # Rows of requests, queries, points and process samples that were in the lost file (counted when it was left).
    rows_lost: int = 0
    # When it last happened (epoch seconds), and what was said.
    last_at: float | None = None
    last_message: str | None = None


# A flush whose rows span at most this many minutes has every minute of that span noted as written (a few
# comparisons, not a query over the file: ~10 ms a flush at the soak's rate); a wider one (late rows among them)
# has its rows' minutes read from the file, so that the minutes between are not re-exported for nothing.
SPAN_MINUTES_MAX = 2


def _minutes_between(first: float, last: float) -> list[float]:
    """Every minute (epoch seconds) from the one holding ``first`` to the one holding ``last``, each time rounded
    to the microsecond as the inserts store it (so that a row on a minute's edge falls in the same minute)."""
    start, end = (epoch_us(t) // 60_000_000 * 60 for t in (first, last))
    return [float(m) for m in range(start, end + 60, 60)]


class Store:
    """The owner's connection to the DuckDB file (or an in-memory database for tests)."""

    def __init__(self, db_path: str | os.PathLike[str] | None, clock: Clock,
                 memory_limit: str | None = DEFAULT_MEMORY_LIMIT, owner_lock: OwnerLock | None = None) -> None:
        """Open the file (replaying its WAL), holding ``owner_lock`` if given, else taking it (OwnershipError if
        another process holds it); the store releases the lock when it closes."""
        self.clock = clock
        self.memory_limit = memory_limit
        self.path = Path(db_path) if db_path not in (None, ":memory:") else None
        self._owner_lock = owner_lock or (OwnerLock(self.path) if self.path is not None else None)
        # Before DuckDB starts its threads: an owner of a file keeps DuckDB in the host app (see malloc.py).
        self.malloc_arenas_limited = self.path is not None and malloc.limit_arenas()
        try:
            self.con = duckdb.connect(str(self.path) if self.path else ":memory:", config=self._config())
        except duckdb.Error as exc:
            if self._owner_lock:
                self._owner_lock.release()
            raise OwnershipError(f"cannot open {self.path}: {exc}. If another program (a notebook, the "
                                 "duckdb CLI) has the file open, close it first.") from exc
        # One connection, used by the flusher, the jobs and the webapp: DuckDB connections are not safe to
        # share between threads without a lock, and one writer at a time is what DuckDB does anyway.
        self.lock = threading.RLock()
        self.read_gate = ReadGate()
        # The limit release_cache() restores: the one asked for, or DuckDB's default as DuckDB printed it when
        # first read (printed values are rounded, so reading it again after each restore would drift).
        self._limit_to_restore = memory_limit
        self._readers = threading.local()
        self._cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()  # closed by recycle()
        self._invalidated = False  # DuckDB invalidated the instance after a fatal error: reopen before writing
        self._generation = 0  # bumped at each reopen, so per-thread read cursors of the old instance are dropped
        self._recycled_at = clock.now()
        # The file DuckDB opened, to notice when the path no longer names it (deleted, or replaced by another).
        self._file_id = self._identity()
        self.file_lost = FileLoss()
        # The minutes of time-stamped rows committed since the last take_written_minutes(), per table; None until
        # a reader of them (the publish job) asks with watch_written_minutes(), so that nothing else pays for it.
        self._written: dict[str, set[float]] | None = None
        self._written_lock = threading.Lock()
        self.migrate()

    def _config(self) -> dict[str, str | bool | int | float | list[str]]:
        # DuckDB's buffer pool keeps the blocks it read or wrote up to memory_limit (80% of RAM by default):
        # inside the host app that would look like a leak, so the owner caps it. A smaller checkpoint threshold
        # keeps the rows waiting for the next checkpoint (held in memory, uncompressed) to a few MB.
        # Background threads let DuckDB's allocator give freed pages back to the OS without waiting for the next
        # allocation (an evicted cache otherwise stays resident).
        config: dict[str, str | bool | int | float | list[str]] = {"checkpoint_threshold": CHECKPOINT_THRESHOLD,
                                                                    "allocator_background_threads": True}
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        return config

    # -- schema ------------------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply every migration newer than the file's schema_version; returns the version reached."""
        with self.lock:
            self.con.execute(sqlfiles.query(STORE_FILE, "schema-version-create"))
            current = self.scalar(sqlfiles.query(STORE_FILE, "schema-version-current"))
            applied = False
            for version, sql in migrations():
                if version <= current:
                    continue
                with self.transaction():
                    self.con.execute(sql)
                    self.con.execute(sqlfiles.query(STORE_FILE, "schema-version-record"),
                                     {"version": version, "applied_at": utc_datetime(self.clock.now())})
                current = version
                applied = True
            if applied:  # the new tables' catalog changes leave the WAL, and the memory holding them
                self.con.execute("CHECKPOINT")
            return int(current)

    # -- writing -----------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_file()
        with self.lock:
            if self._invalidated:
                self._reopen()
            committing = False
            try:
                self.con.execute("BEGIN TRANSACTION")
                try:
                    yield
                except BaseException:
                    self.con.execute("ROLLBACK")
                    raise
                committing = True
                self.con.execute("COMMIT")
            except duckdb.FatalException as exc:
                # After a fatal error (an automatic checkpoint that hit a full disk) DuckDB refuses every statement
                # until the database is reopened; the next transaction does that, once the cause may be gone.
                self._invalidated = self.path is not None
                if not (committing and _DURABLE_ANYWAY in str(exc)):
                    raise

    def _reopen(self) -> None:
        """Replace the connection with a new one (which replays the WAL): after DuckDB invalidated it, or to free
        what a long-lived instance keeps (recycle); raises while the cause lasts, and the next transaction retries.

        When the path no longer names the file that was open (deleted, or replaced), the database is made anew there
        with the schema (connecting alone would give a file without tables, and every flush would fail), and what
        only the old file held is counted as lost.
        """
        self._invalidated = True  # until it is open again
        self._generation += 1  # per-thread read cursors of the old instance are dropped, even if the connect fails
        lost = self._identity() != self._file_id
        rows = self._rows_held() if lost else 0
        with contextlib.suppress(duckdb.Error):
            self.con.close()  # checkpoints into the file that was open, deleted or not
        wal = self.path.with_name(self.path.name + ".wal") if self.path is not None else None
        if lost and wal is not None and self._identity() is None:
            wal.unlink(missing_ok=True)  # the deleted file's log: a new file would replay it (and fail)
        self.con = duckdb.connect(str(self.path), config=self._config())
        self._file_id = self._identity()
        self._invalidated = False
        if lost:
            self.migrate()
            self._note_lost_file(rows)

    def _identity(self) -> tuple[int, int] | None:
        """The device and inode of the file at the path (None: no file there, or an in-memory database)."""
        if self.path is None:
            return None
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def _rows_held(self) -> int:
        """The rows of the data tables in the open database (those of a file about to be left), 0 if unreadable."""
        try:
            row = self.con.execute(sqlfiles.query(STORE_FILE, "rows-held")).fetchone()
        except duckdb.Error:
            return 0
        return int(row[0]) if row and row[0] is not None else 0

    def _note_lost_file(self, rows: int) -> None:
        lost = self.file_lost
        lost.count += 1
        lost.rows_lost += rows
        lost.last_at = self.clock.now()
        lost.last_message = (f"{self.path} was deleted or replaced while this process owned it: the database was "
                             f"made anew there with its schema, and the {rows} rows only the lost file held are "
                             "lost (the history keeps the hours archived before). Find what removes the file "
                             "(a cleanup job, a deploy that replaces the directory) and keep it away from it")
        logger.error("duckpulse: %s", lost.last_message)

    def check_file(self) -> bool:
        """Whether the path still names the open file; if not (deleted, replaced), make the database anew there
        (see _reopen) with no read or write running, and return False. StoreError while reads keep running: the
        caller's rows stay where they are (a flush keeps them buffered) for the next attempt."""
        if self.path is None or self._identity() == self._file_id:
            return True
        with self._alone() as alone:
            if not alone:
                raise StoreError(f"{self.path} was deleted or replaced under its owner; the database is made anew "
                                 "there as soon as the reads running now finish")
            if self._identity() != self._file_id:  # not done by another thread meanwhile
                self._close_cursors()
                self._reopen()
        return False

    def _insert_relation(self, table: str, data: object) -> None:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
        self.con.register("__batch", data)
        try:
            if table == "series":
                self.con.execute(sqlfiles.query(STORE_FILE, "series-insert"))
            else:
                self.con.execute(f"INSERT INTO {quote_identifier(table)} BY NAME SELECT * FROM __batch")
        finally:
            # In a transaction that a failed statement aborted, unregister fails too: keep the first error (e.g.
            # "No space left on device") rather than "transaction is aborted". register() replaces it next time.
            with contextlib.suppress(duckdb.TransactionException):
                self.con.unregister("__batch")

    def append(self, tables: Mapping[str, object]) -> None:
        """Append relations DuckDB can scan (Arrow tables, DataFrames: for tests and tools; duckpulse itself
        writes segment files, see ``load_files``) in one transaction: all of them are committed, or none."""
        with self.transaction():
            for table, data in tables.items():
                self._insert_relation(table, data)

    def load_files(self, files: Sequence[tuple[str, Path]],
                   spans: Mapping[str, tuple[float, float]] | None = None) -> None:
        """Load the owner's own flush, written as segment files (table, path), in one transaction: the same
        path a producer's segments take, without the ledger (nothing names these files twice). ``spans`` gives,
        per table, the first and last time of its rows (epoch seconds), when the caller knows them."""
        written: list[tuple[str, list[float]]] = []
        with self.transaction():
            for table, path in files:
                self._load_locked(table, [str(path)], None)
                minutes = self._minutes_of([str(path)], table, {str(path): (spans or {}).get(table)})
                written.append((table, minutes))
        for table, minutes in written:  # after the commit: a take between the two re-exports, never misses
            self._note_written(table, minutes)
        malloc.purge_duckdb()  # what loading the files used, given back now rather than within a second

    def watch_written_minutes(self) -> None:
        """Start noting the minutes of the time-stamped rows every flush and ingest commits (the publish job's
        journal of what changed; nothing else pays for it)."""
        with self._written_lock:
            if self._written is None:
                self._written = {}

    def take_written_minutes(self) -> dict[str, set[float]]:
        """The minutes (epoch seconds) written per table since the last call, and start anew."""
        with self._written_lock:
            taken, self._written = self._written or {}, {}
        return taken

    def _minutes_of(self, paths: list[str], table: str,
                    spans: Mapping[str, tuple[float, float] | None] | None = None) -> list[float]:
        """The minutes the rows of segment files fall in, when watched: from a file's narrow time span (its
        footer's, in ``spans``), else read from the files in the loading transaction."""
        if self._written is None or table == "series":
            return []
        minutes: set[float] = set()
        unread: list[str] = []
        for path in paths:
            span = (spans or {}).get(path)
            if span is not None and span[1] - span[0] <= SPAN_MINUTES_MAX * 60:
                minutes.update(_minutes_between(*span))
            else:
                unread.append(path)
        if unread:
            minutes.update(m for (m,) in self.con.execute(sqlfiles.query(STORE_FILE, "segment-minutes"),
                                                          {"files": unread}).fetchall() if m is not None)
        return sorted(minutes)

    def _note_written(self, table: str, minutes: Iterable[float]) -> None:
        with self._written_lock:
            if self._written is not None:
                self._written.setdefault(table, set()).update(minutes)

    def already_ingested(self, names: Sequence[str]) -> set[str]:
        self.check_file()
        with self.lock:
            if self._invalidated:  # an owner that only ingests must recover too, not only one that flushes
                self._reopen()
            try:
                rows = self.con.execute(sqlfiles.query(STORE_FILE, "segments-already-ingested"),
                                        {"names": list(names)}).fetchall()
            except duckdb.FatalException:
                self._invalidated = self.path is not None
                raise
        return {r[0] for r in rows}

    def ingest_files(self, table: str, files: Sequence[tuple[str, Path]], columns: Mapping[str, int]) -> int:
        """Load segment files of one table and record them in the ledger, in one transaction; returns the rows.

        ``files`` holds (segment name, path). Each file's footer must say it holds ``table`` with exactly
        ``columns`` (name -> Parquet physical type); its row count is the footer's. Raises SpoolError if any
        file is unreadable or not such a segment; nothing is then committed, and the caller retries the files
        one by one to find the bad one.
        """
        paths = [str(f[1]) for f in files]
        try:
            spans: dict[str, tuple[float, float] | None] = {}
            with self.transaction():
                rows = self._load_locked(table, paths, columns, spans)
                minutes = self._minutes_of(paths, table, spans)
                self.con.execute(sqlfiles.query(STORE_FILE, "ledger-insert"),
                                 {"segments": [f[0] for f in files], "rows": [rows[p] for p in paths],
                                  "ingested_at": utc_datetime(self.clock.now())})
        except _STORE_FAILURES as exc:
            if not any(p in str(exc) for p in paths):
                raise  # the database could not take the rows (disk full...): not the files' fault
            raise SpoolError(f"cannot load {len(paths)} segment(s) of {table}: {exc}") from exc
        except duckdb.Error as exc:
            raise SpoolError(f"cannot load {len(paths)} segment(s) of {table}: {exc}") from exc
        self._note_written(table, minutes)  # after the commit, as in load_files()
        malloc.purge_duckdb()
        return sum(rows.values())

    def segment_fault(self, table: str, name: str, path: Path, columns: Mapping[str, int]) -> str | None:
        """Why DuckDB refused a segment, if the segment is to blame: the error it raises when loaded alone into a
        fresh in-memory database with the same schema (its footer checked the same way), or None when it loads
        there (then this store failed, not the file). A failure of the fresh database itself (out of memory...)
        propagates: nothing is proven."""
        probe = Store(None, self.clock, memory_limit=self.memory_limit)
        try:
            probe.ingest_files(table, [(name, path)], columns)
        except SpoolError as exc:
            return str(exc.__cause__ or exc)
        finally:
            probe.close()
        return None

    def _load_locked(self, table: str, paths: list[str], columns: Mapping[str, int] | None,
                     spans: dict[str, tuple[float, float] | None] | None = None) -> dict[str, int]:
        """Insert segment files into ``table`` (their footers checked against ``columns`` first, each file's time
        span put in ``spans``); returns the rows of each file, from its footer. ``columns`` None: the owner's own
        flush, neither checked nor counted."""
        if table not in TABLES:
            raise SpoolError(f"unknown table {table!r} in a segment name")
        rows = _check_segments(table, paths, columns, spans) if columns is not None else {}
        params = {"files": paths}
        if table == "series":
            self.con.execute(sqlfiles.query(STORE_FILE, "segment-series-insert"), params)
        else:
            # Segments carry time as epoch seconds (DOUBLE): stored as TIMESTAMP, to the microsecond (rounded as
            # pipeline.clock.epoch_us rounds every bound made in Python).
            self.con.execute(f"INSERT INTO {quote_identifier(table)} BY NAME SELECT * REPLACE "
                             "(make_timestamp(CAST(round(ts * 1000000) AS BIGINT)) AS ts) FROM read_parquet($files)",
                             params)
        return rows

    # -- reading -----------------------------------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The calling thread's read cursor, for reads that run while this is open (see ReadGate)."""
        while True:
            cursor = self.reader()  # before the gate: reader() may take the writer's lock, which is taken after it
            with self.read_gate.shared():
                # recycle() may have closed that cursor meanwhile: then take the new instance's, and try again.
                if self._readers.generation == self._generation:
                    yield cursor
                    return

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A read connection for the calling thread (DuckDB cursors on one database read concurrently and
        see committed data; the writer's lock is not taken). Read through ``reading()``."""
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._readers, "cursor", None)
        if cursor is None or getattr(self._readers, "generation", 0) != self._generation:
            with self.lock:
                cursor = self.con.cursor()
                # The instance this cursor belongs to, read while no reopen can run: a reopen right after the lock
                # is released closes it, and pairing it with the generation read then would make reading() trust it.
                generation = self._generation
                self._cursors.add(cursor)
            self._readers.cursor = cursor
            self._readers.generation = generation
        return cursor

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with self.lock:
            row = self.con.execute(sql, params or {}).fetchone()
        return None if row is None else row[0]

    def fetchall(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.con.execute(sql, params or {}).fetchall()

    # -- memory ------------------------------------------------------------------------------------------
    def release_memory(self, now: float) -> dict[str, int | bool | None]:
        """What the owner's release-cache job runs: evict the cache, or reopen the database every
        RECYCLE_INTERVAL_SECONDS, then give freed pages back to the OS. Returns what it did."""
        if not self.check_file():  # an idle owner notices a lost file too, not only one that writes
            self._recycled_at = now
        if now < self._recycled_at:  # the clock went backwards: count the interval from now
            self._recycled_at = now
        recycled = now - self._recycled_at >= RECYCLE_INTERVAL_SECONDS and self.recycle()
        if recycled:
            self._recycled_at = now
        evicted = None if recycled else self.release_cache()
        return {"evicted_bytes": evicted, "recycled": recycled, "purged": malloc.purge_duckdb(),
                "trimmed": malloc.trim()}

    def recycle(self) -> bool:
        """Close the database and open it again, with no read or write running; False when reads kept running.

        A long-lived DuckDB instance keeps C++ objects per checkpoint and per block it ever handled (~0.4 MB/min
        at 400 requests/s, RELIABILITY.md) that only closing it frees; every read cursor is closed too (each
        holds the instance), and threads get a new one at their next read.
        """
        if self.path is None:
            return False
        with self._alone() as alone:
            if not alone:
                return False
            self._close_cursors()
            self._reopen()
            return True

    def _close_cursors(self) -> None:
        """Close every read cursor (each holds the instance open); threads get a new one at their next read."""
        for cursor in list(self._cursors):
            with contextlib.suppress(duckdb.Error):
                cursor.close()
        self._cursors.clear()

    def release_cache(self) -> int | None:
        """Evict DuckDB's cached table blocks down to CACHE_KEPT_BYTES; returns the bytes DuckDB held before minus
        after, or None when skipped (an in-memory database, whose tables are not a cache; or reads that kept
        running for CACHE_RELEASE_WAIT_SECONDS).

        DuckDB has no statement that only evicts: lowering memory_limit does it, so the limit is lowered to what
        DuckDB holds besides table blocks plus CACHE_KEPT_BYTES, then set back, with no read running meanwhile.
        """
        if self.path is None:
            return None
        with self._alone() as alone:
            return None if not alone or self._invalidated else self._evict_cache()

    @contextmanager
    def _alone(self) -> Iterator[bool]:
        """Hold off every read (the read gate) and write (the writer's lock); yields False when running reads
        or a write did not finish within CACHE_RELEASE_WAIT_SECONDS (new reads wait meanwhile)."""
        with self.read_gate.exclusive(CACHE_RELEASE_WAIT_SECONDS) as drained:
            # The writer's lock with a timeout too: a thread holding it while it waits for the gate (a read inside
            # a write) must not wait forever for us.
            if not drained or not self.lock.acquire(timeout=CACHE_RELEASE_WAIT_SECONDS):
                yield False
                return
            try:
                yield True
            finally:
                self.lock.release()

    def _evict_cache(self) -> int:
        limit, held, other = self.con.execute(sqlfiles.query(STORE_FILE, "memory-held")).fetchone() or (None, 0, 0)
        target = int(other or 0) + CACHE_KEPT_BYTES
        if limit is None or target >= int(held or 0):
            return 0
        self._limit_to_restore = self._limit_to_restore or limit
        try:
            self.con.execute(f"SET memory_limit = '{target}B'")
        except duckdb.OutOfMemoryException:
            pass  # DuckDB could not evict that much (blocks in use): it evicted what it could
        finally:
            self.con.execute(f"SET memory_limit = '{self._limit_to_restore}'")
        after = self.con.execute(sqlfiles.query(STORE_FILE, "memory-held")).fetchone()
        return int(held or 0) - int((after[1] if after else 0) or 0)

    def close(self) -> None:
        with self.lock:
            try:
                try:
                    self.con.execute("CHECKPOINT")
                except duckdb.TransactionException:
                    # Another cursor's transaction is still open (a read that was interrupted by the shutdown):
                    # FORCE aborts it, so the file is whole at close rather than replayed from the WAL next time.
                    self.con.execute("FORCE CHECKPOINT")
            finally:
                self.con.close()
                if self._owner_lock:
                    self._owner_lock.release()

    def abandon(self) -> None:
        """In a forked child: forget the parent's connection without closing it.

        Closing would checkpoint into the parent's file from the child. The connection object is leaked on
        purpose (kept referenced forever) so that no destructor ever runs in the child.
        """
        # A list would not do: module globals are cleared at interpreter exit, which would run the destructor.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self.con))
        if self._owner_lock:
            self._owner_lock.forget()
