"""The dashboard's read source when this process does not own the database: what its owner publishes.

DuckDB lets no other process open the owner's file, so a dashboard served elsewhere (``python -m webapp serve
--db X`` while an app owns X, a gunicorn worker that is a producer for now) reads the hourly archive and the
minutes the owner publishes every ``[publish] interval_seconds`` (pipeline/publish.py) through
``pipeline.history.connect()``: the same table names, so the dashboard's own named queries run unchanged, at most
one publish interval plus a flush behind the owner, and never blocking its writes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import duckdb

from pipeline import history
from pipeline.archive import default_history_dir
from pipeline.objectstore import is_object_url

from .params import ApiError


class PublishedReads:
    """Per-thread read cursors over what the owner of ``db_path`` publishes under ``history_dir``.

    The connection is made once something is published and made anew when the owner publishes a table the
    connection has no view for yet (a view is made for each table present at connect time)."""

    def __init__(self, db_path: Path, history_dir: str | os.PathLike[str] | None = None) -> None:
        self.db_path = Path(db_path)
        # The owner publishes into its local history: <db>.history when the archive goes to object storage.
        local = history_dir is not None and not is_object_url(history_dir)
        self.history_dir = Path(history_dir) if local and history_dir is not None else default_history_dir(self.db_path)
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._tables: frozenset[str] = frozenset()
        self._generation = 0
        self._readers = threading.local()

    def reader(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor over the published tables; ApiError 503 while nothing is published."""
        with self._lock:
            tables = history.published_tables(self.history_dir)
            if not tables:
                raise ApiError(503, f"this process (pid {os.getpid()}) does not own {self.db_path}, so it reads what "
                               f"the owner publishes in {self.history_dir}, and nothing is published there yet (a "
                               "running owner publishes every 15 s; an owner with jobs=False only in run_jobs_now())")
            if self._con is None or not tables <= self._tables:
                # Not closed: another thread may be reading through its cursor; each thread moves to the new one
                # at its next read, and the old connection goes with its last cursor.
                self._con = history.connect(self.history_dir, attach_live=False)
                self._tables, self._generation = tables, self._generation + 1
            cursor: duckdb.DuckDBPyConnection | None = getattr(self._readers, "cursor", None)
            if cursor is None or getattr(self._readers, "generation", 0) != self._generation:
                cursor = self._con.cursor()
                self._readers.cursor, self._readers.generation = cursor, self._generation
            return cursor

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
