"""``connect()``: a DuckDB connection over what an owner publishes, for notebooks, ``duckpulse sql`` and dashboards
in other processes; it never opens a file an owner holds.

Each table is one view over the hourly archive (``pipeline/archive.py``: hive partitions, with ``date`` and
``hour`` columns from the paths, which prune files when filtered on) and the minutes the owner published since
(``pipeline/publish.py``, every 15 s while it runs and once more when it closes), split at the watermark the owner
publishes with them: at most one publish interval plus a flush behind, never blocking the owner's writes. The
connection is in memory and only reads Parquet.

The live DuckDB file is attached read-only as ``live`` only for a file no owner holds and none has ever published
for (written by an older duckpulse): DuckDB lets no other process open a file an owner has open, and an attached
file would in turn keep an owner from starting.
"""

from __future__ import annotations

import fcntl
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from . import sqlfiles
from .archive import FILE_NAME, SERIES_DIR, TABLES, default_history_dir
from .errors import ConfigError
from .logs import logger
from .publish import EMPTY_FILE, RECENT_DIR, WATERMARK_FILE, WHOLE_FILE, WHOLE_TABLES
from .store import quote_identifier

if TYPE_CHECKING:
    from .objectstore import ObjectStoreSettings

SQL = "history.sql"
LIVE = "live"  # the name the live database is attached under
_VIEWS = {table: f"history-view-{table.replace('_', '-')}" for table in TABLES}


def owner_running(db_path: str | os.PathLike[str]) -> bool:
    """Whether an owner process holds the database now (its ``<db>.owner.lock`` flock, tested without waiting)."""
    path = Path(db_path)
    lock_file = path.with_name(path.name + ".owner.lock")
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock at once: the check must never hold an owner off
    return False


def connect(history_dir: str | os.PathLike[str] | None = None,
            db_path: str | os.PathLike[str] | None = None, *, attach_live: bool = True, since: date | None = None,
            cache_dir: str | os.PathLike[str] | None = None,
            store: ObjectStoreSettings | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table over the archive and what the owner published.

    ``history_dir`` defaults to ``<db_path>.history``. Views exist for the tables that have data there when the
    connection is made (reconnect to see a table that gets its first rows later). The live database is attached
    read-only as ``live`` when ``db_path`` is given, exists, no owner holds it, nothing was ever published for it
    and ``attach_live``.

    A history in object storage (``"s3://bucket/history"``, what a fleet's owner archives) is first brought into
    ``cache_dir`` (default ``~/.cache/duckpulse/history/<bucket>/<prefix>``), only what changed since the last
    call, and only the hour partitions from ``since`` on when given (pipeline/objecthistory.py); ``store`` says how
    to reach the store (endpoint, region; credentials come from the AWS environment and files).
    """
    if history_dir is None:
        if db_path is None:
            raise ConfigError("history.connect() needs history_dir=..., or db_path=... to use <db>.history")
        history_dir = default_history_dir(db_path)
    root = local_history(history_dir, since=since, cache_dir=cache_dir, store=store).resolve()
    con = duckdb.connect(":memory:")
    try:
        # Relative paths in the views resolve here first, then in the working directory (the user's own files).
        con.execute(sqlfiles.query(SQL, "history-search-path"), {"paths": f"{root},{Path.cwd()}"})
        con.execute(sqlfiles.query(SQL, "history-sketch-macros"))
        published = published_at(root, con) is not None
        for table, kind in _views(root, published).items():
            column = TABLES.get(table)
            if kind in ("history-view-archive-and-recent", "history-view-recent", "history-view-whole"):
                con.execute(_compose(sqlfiles.query(SQL, kind), table, column))
            else:
                con.execute(sqlfiles.query(SQL, kind))
        if attach_live and not published and db_path is not None and Path(db_path).exists():
            _attach_live(con, Path(db_path))
    except BaseException:
        con.close()
        raise
    return con


def _views(root: Path, published: bool) -> dict[str, str]:
    """The tables there is data for under ``root``, each with the SQL block of its view."""
    views: dict[str, str] = {}
    for table in TABLES:
        archived = any((root / table).glob(f"*/*/{FILE_NAME}"))
        recent = published and (root / RECENT_DIR / table / EMPTY_FILE).exists()
        if archived or recent:
            views[table] = ("history-view-archive-and-recent" if archived and recent
                            else "history-view-recent" if recent else _VIEWS[table])
    for table in WHOLE_TABLES:
        if published and (root / RECENT_DIR / table / WHOLE_FILE).exists():
            views[table] = "history-view-whole"
        elif table == SERIES_DIR and (root / SERIES_DIR / FILE_NAME).exists():
            views[table] = "history-view-series"
    return views


def published_tables(history_dir: str | os.PathLike[str]) -> frozenset[str]:
    """The tables ``connect(history_dir)`` makes views for, once an owner has published there (else none)."""
    root = Path(history_dir)
    published = (root / RECENT_DIR / WATERMARK_FILE).exists()
    return frozenset(_views(root, published)) if published else frozenset()


def local_history(history_dir: str | os.PathLike[str], *, since: date | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, store: ObjectStoreSettings | None = None) -> Path:
    """The directory to read a history from: ``history_dir`` itself, or for ``s3://...`` a local cache brought up
    to date (what changed since the last call only; see ``connect``). ``store`` defaults to the configuration's
    [object_store] ($DUCKPULSE_CONFIG, DUCKPULSE_OBJECT_STORE_* variables), else the AWS variables."""
    from .objectstore import is_object_url

    if not is_object_url(history_dir):
        return Path(history_dir)
    from .config import load
    from .objecthistory import default_cache_dir, pull
    from .objectstore import ObjectStore, parse_url

    location = parse_url(str(history_dir), "history_dir")
    settings = store or load().object_store
    return pull(ObjectStore(location, settings), cache_dir or default_cache_dir(location), since)


def published_at(history_dir: str | os.PathLike[str], con: duckdb.DuckDBPyConnection | None = None) -> float | None:
    """When an owner last published recent data under ``history_dir`` (epoch seconds), or None if never."""
    watermark = Path(history_dir) / RECENT_DIR / WATERMARK_FILE
    if not watermark.exists():
        return None
    reader = con.cursor() if con is not None else duckdb.connect(":memory:")
    try:
        row = reader.execute(sqlfiles.query(SQL, "history-published-at"), {"path": str(watermark)}).fetchone()
    except duckdb.Error:  # removed meanwhile, or not a watermark file: nothing usable was published
        return None
    finally:
        reader.close()
    return None if row is None or row[0] is None else float(row[0])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _compose(sql: str, table: str, column: str | None = None) -> str:
    # Only names from the fixed allow-lists (archive.TABLES, publish.WHOLE_TABLES) ever reach the SQL text.
    recent = f"{RECENT_DIR}/{table}/{WHOLE_FILE}" if column is None else f"{RECENT_DIR}/{table}/*.parquet"
    return (sql.replace("/* table-name */", _literal(table))
            .replace("/* table */", quote_identifier(table))
            .replace("/* column */", quote_identifier(column or ""))
            .replace("/* archive-files */", _literal(f"{table}/*/*/*.parquet"))
            .replace("/* recent-files */", _literal(recent)))


def _attach_live(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    if owner_running(db_path):
        logger.info("duckpulse history: %s is held by its owner, which has published nothing yet; querying the "
                    "archive only", db_path)
        return
    try:
        con.execute(sqlfiles.query(SQL, "history-attach-live"), {"path": str(db_path)})
    except duckdb.Error as exc:  # an owner started between the check and the attach
        logger.info("duckpulse history: cannot attach %s read-only (%s); querying the history only", db_path, exc)
