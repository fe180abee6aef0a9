"""A DuckDB connection that can read the history and the live file, and change nothing anywhere (``duckpulse sql``).

Two locks, because neither holds alone (measured on duckdb 2.0.1):

- **The files it may touch.** ``enable_external_access = false`` refuses every file, extension and secret outside
  ``allowed_directories`` (the history) and ``allowed_paths`` (the live file and its WAL), and
  ``lock_configuration = true`` keeps a query from turning that back on. But those lists allow *writing* too:
  ``COPY ... TO '<history>/x.csv'`` and ``ATTACH '<db>' AS w`` (read-write, after ``DETACH live``) both succeed.
- **The statements it may run.** Only SELECT (which covers WITH, VALUES, FROM-first, DESCRIBE, SHOW and
  SUMMARIZE): ``EXPLAIN ANALYZE COPY ... TO`` is an EXPLAIN statement that writes the file, so EXPLAIN is refused
  too; so are PRAGMA, CALL and SET. A SELECT can only write into this connection's own in-memory catalog
  (``read_csv(..., rejects_table=...)``), which ends with it; ``query('COPY ...')`` takes a single SELECT only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import duckdb

from .errors import DuckPulseError

ALLOWED_STATEMENTS = frozenset({duckdb.StatementType.SELECT})


class WriteRefused(DuckPulseError):
    """A query that would change something or write somewhere (``duckpulse sql`` only reads)."""


def _forms(path: Path) -> list[str]:
    """The path as given (absolute) and resolved: DuckDB compares strings, and either may be the one it sees."""
    return sorted({os.path.abspath(path), str(path.resolve())})


def lock_down(con: duckdb.DuckDBPyConnection, readable_dirs: Iterable[Path], readable_files: Iterable[Path]) -> None:
    """From now on ``con`` reads only under ``readable_dirs`` and the ``readable_files`` (a DuckDB file: with its
    write-ahead log), and its configuration cannot be changed back. Views and attachments made before stay.

    The folders of ``readable_dirs`` are also allowed by their bare names, which DuckDB takes as relative to the
    working directory: what the views' relative globs need."""
    dirs = [form.rstrip("/") + "/" for d in readable_dirs for form in _forms(d)]
    # The history's views read relative globs ('requests/*/*/*.parquet', resolved through file_search_path), and
    # DuckDB checks such a glob as if it were under the working directory before it checks each file it resolves
    # to: each top-level folder's name is allowed there too (for reading: no statement that writes gets here).
    dirs += sorted({p.name + "/" for d in readable_dirs if d.is_dir() for p in d.iterdir() if p.is_dir()})
    files = [form + suffix for f in readable_files for form in _forms(f) for suffix in ("", ".wal")]
    con.execute("SET allowed_directories = $dirs", {"dirs": dirs})
    con.execute("SET allowed_paths = $files", {"files": files})
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def check_query(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise WriteRefused unless every statement of ``query`` is a SELECT (a parse error raises DuckDB's own)."""
    for statement in con.extract_statements(query):
        if statement.type not in ALLOWED_STATEMENTS:
            kind = statement.type.name.replace("_", " ")
            raise WriteRefused(
                f"duckpulse sql only reads: the query holds a {kind} statement ({_head(statement.query)}), and "
                "only SELECT statements run here (WITH, DESCRIBE, SHOW and SUMMARIZE too). Nothing was run. To "
                "change the data, stop its owner and open the file with DuckDB yourself; to save a result, use "
                "--format csv or json and redirect the output to a file")


def _head(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."
