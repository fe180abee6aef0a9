"""The spool: how producer processes hand batches to the owner without touching the DuckDB file.

Layout under the spool directory::

    tmp/          segments being written (a crash leaves debris here, never in ready/)
    ready/        complete segments: written to tmp/, fsynced, then renamed here (rename is atomic)
    quarantine/   segments the owner could not read, moved aside so they never block the queue

A segment is one Parquet file (written by ``pipeline.parquet``, no pyarrow) holding one table's rows from one
flush. Its name sorts by creation time, so the owner ingests a backlog in the order it was written:
``<time_ns>-<table>-<host>-<pid>-<token>-<seq>-<rows>.parquet``, where ``token`` is random per writer, so that
two hosts never make the same name even with the same host name and pid (containers: pid 1 everywhere) when their
segments meet in object storage (pipeline/outbox.py). The name is for ordering and for people: the owner takes the
table, the columns and the row count from the file's own footer (``expected_columns``).

``LocalSpool`` is the owner's side of this directory for the ingest (pipeline/ingest.py); an object storage
prefix has its own (pipeline/objectspool.py).
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from . import parquet
from .errors import SpoolError
from .tables import KINDS, SPECS, TABLE_ORDER, parquet_columns, series_columns

if TYPE_CHECKING:
    from .buffer import Flush

SUFFIX = ".parquet"
# A file in tmp/ untouched this long was left by a producer killed mid-write (a write takes milliseconds and
# fsyncs before it is renamed away): the owner removes it (``remove_debris``), counted.
TMP_DEBRIS_AGE_SECONDS = 900.0


@dataclass(frozen=True)
class Segment:
    """A ready segment and what its name says about it.

    ``path`` is where the owner reads it (for an object, its downloaded copy); ``ledger_name`` is what the ingest
    ledger records: the file name, or for an object its URL and ETag (``ObjectSpool``).
    """

    path: Path
    table: str
    rows: int
    ledger_name: str = ""
    # For what waits in ready/ but is not a segment: why (quarantined with this reason).
    not_a_segment: str = ""

    @property
    def name(self) -> str:
        return self.ledger_name or self.path.name


def spool_of(db_path: Path | None, spool_dir: str | os.PathLike[str] | None) -> Path | None:
    """The spool of a database: ``spool_dir`` if given, else ``<db>.spool`` beside the file (None in memory)."""
    if spool_dir is not None:
        return Path(spool_dir)
    return db_path.with_name(db_path.name + ".spool") if db_path is not None else None


def spool_dirs(root: Path) -> tuple[Path, Path, Path]:
    """(tmp, ready, quarantine) under ``root``, created if missing."""
    dirs = (root / "tmp", root / "ready", root / "quarantine")
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)[:40] or "_"


class SpoolWriter:
    """Writes one segment per table per flush (the producer side)."""

    def __init__(self, root: str | os.PathLike[str], host: str | None = None) -> None:
        self.root = Path(root)
        self.tmp, self.ready, self.quarantine = spool_dirs(self.root)
        self.host = _safe(host or socket.gethostname())
        self.token = os.urandom(4).hex()
        self._seq = itertools.count()

    def write(self, flush: Flush) -> list[Path]:
        """Write each table of a flush as a segment; all of them become visible, or (on error) none do."""
        written: list[tuple[Path, Path]] = []
        try:
            spool_dirs(self.root)  # re-created if a cleaner or an operator removed them: the next flush recovers
            for table, rows in flush_tables(flush):
                name = (f"{time.time_ns():020d}-{table}-{self.host}-{os.getpid()}-{self.token}-{next(self._seq)}-"
                        f"{rows}{SUFFIX}")
                tmp = self.tmp / name
                written.append((tmp, self.ready / name))  # before writing: a half-written file is removed too
                with open(tmp, "wb") as f:
                    write_segment(f, flush, table, time_span(flush, table))
                    f.flush()
                    os.fsync(f.fileno())
            # Renames last, so a failure above leaves nothing in ready/ that would be ingested twice later.
            for tmp, final in written:
                os.rename(tmp, final)
            _fsync_dir(self.ready)
        except OSError as exc:
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)
            raise SpoolError(f"cannot write a spool segment under {self.root}: {exc}") from exc
        return [final for _, final in written]


def flush_tables(flush: Flush) -> list[tuple[str, int]]:
    """(table, rows) of each segment a flush makes, series first."""
    out = [("series", len(flush.series))] if flush.series else []
    return out + [(name, data.rows) for name, data in flush.tables.items()]


# Footer keys of a segment's first and last row time (epoch seconds, ``repr`` of the float): the owner notes the
# minutes a segment's rows fall in from them (for the publish job) instead of reading the file a second time.
FIRST_TS_KEY = "duckpulse.first_ts"
LAST_TS_KEY = "duckpulse.last_ts"


def time_span(flush: Flush, table: str) -> tuple[float, float] | None:
    """The first and last time (epoch seconds) of the rows of ``table`` in a flush; None for a table without time
    (series) or without rows."""
    data = flush.tables.get(table)
    if data is None or not data.rows or not any(c.name == "ts" for c in data.spec.columns):
        return None
    ts = data.column("ts")
    return min(ts), max(ts)


def write_segment(f: BinaryIO, flush: Flush, table: str, span: tuple[float, float] | None = None) -> int:
    """Write one table of a flush as a segment file to ``f``, with its rows' time ``span`` (``time_span``) in the
    footer when given; returns the bytes written."""
    metadata = {"duckpulse.table": table, "duckpulse.segment": "1"}
    if table == "series":
        columns, rows = series_columns(flush.series), len(flush.series)
    else:
        data = flush.tables[table]
        columns, rows = parquet_columns(data, flush.pid, flush.host), data.rows
    if span is not None:
        metadata[FIRST_TS_KEY], metadata[LAST_TS_KEY] = repr(span[0]), repr(span[1])
    return parquet.write(f, columns, rows, metadata)


def footer_span(metadata: Mapping[str, str]) -> tuple[float, float] | None:
    """The rows' time span a segment's footer gives (``write_segment``), or None when it gives none (a segment
    of series, or of a duckpulse before this) or one that cannot be right (not two finite numbers in order)."""
    try:
        first, last = float(metadata[FIRST_TS_KEY]), float(metadata[LAST_TS_KEY])
    except (KeyError, ValueError):
        return None
    return (first, last) if math.isfinite(first) and math.isfinite(last) and first <= last else None


def expected_columns(table: str) -> dict[str, int]:
    """The columns (name -> Parquet physical type) a segment of ``table`` holds: what the owner checks each
    file's footer against before loading it."""
    if table == "series":
        return {"series_id": parquet.INT64, "name": parquet.BYTE_ARRAY, "kind": parquet.BYTE_ARRAY,
                "labels": parquet.BYTE_ARRAY}
    columns = {c.name: KINDS[c.kind][1] for c in SPECS[table].columns}
    return {**columns, "pid": parquet.INT32, "host": parquet.BYTE_ARRAY}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_name(path: Path, ledger_name: str = "") -> Segment | None:
    """The segment a ready file name describes, or None for a name that is not a segment's (names without the
    token, from duckpulse before fleets, are segments too)."""
    if not path.name.endswith(SUFFIX):
        return None
    parts = path.name[: -len(SUFFIX)].split("-")
    if len(parts) not in (6, 7) or not parts[0].isdigit() or parts[1] not in TABLE_ORDER or not parts[-1].isdigit():
        return None
    return Segment(path, parts[1], int(parts[-1]), ledger_name)


def ready_segments(root: Path, limit: int) -> tuple[list[Segment], list[Segment]]:
    """Up to ``limit`` ready segments, oldest first, and what else waits in ready/ (as segments of no table, with
    the reason): names that are not segments', and anything that is not a regular file.

    A FIFO named like a segment would block the reader that opens it forever (and a device, a socket, a
    directory or a symlink to elsewhere is no segment either), so only regular files are segments here, by
    ``lstat``; reading a footer checks the opened file again (``parquet.read_footer``), for one swapped in since.
    """
    ready = root / "ready"
    try:
        entries = sorted(os.scandir(ready), key=lambda e: e.name)
    except FileNotFoundError:
        return [], []
    segments: list[Segment] = []
    strangers: list[Segment] = []
    for entry in entries:
        seg = parse_name(Path(entry.path))
        if seg is None:
            strangers.append(Segment(Path(entry.path), "", 0, not_a_segment="its name is not a segment name"))
        elif len(segments) < limit:
            kind = _not_regular(entry)
            if kind:
                strangers.append(Segment(Path(entry.path), "", 0, not_a_segment=f"it is {kind}, not a regular file"))
            else:
                segments.append(seg)
    return segments, strangers


def _not_regular(entry: os.DirEntry[str]) -> str:
    """What a directory entry is when it is not a regular file (a symlink is not followed), else ''."""
    if entry.is_file(follow_symlinks=False):  # from the listing's file type on Linux: no system call
        return ""
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except FileNotFoundError:
        return ""  # gone meanwhile (ingested by a run that overlapped): the next listing will not see it
    if stat.S_ISREG(mode):
        return ""
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"))
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def backlog(root: Path) -> int:
    """How many segments wait in ready/."""
    try:
        return sum(1 for n in os.listdir(root / "ready") if n.endswith(SUFFIX))
    except FileNotFoundError:
        return 0


def quarantine(root: Path, path: Path) -> Path:
    """Move an unreadable file out of ready/ so it never blocks the queue; returns its new path."""
    target = root / "quarantine" / path.name
    (root / "quarantine").mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def remove_debris(root: Path, now: float, max_age_seconds: float = TMP_DEBRIS_AGE_SECONDS) -> int:
    """Delete files in ``root``/tmp not modified for ``max_age_seconds`` at ``now`` (epoch seconds); returns how
    many. Folders are left alone (no producer makes any there)."""
    removed = 0
    try:
        entries = list(os.scandir(root / "tmp"))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode) and now - info.st_mtime >= max_age_seconds:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # renamed into ready/ meanwhile, or removed by another cleaner
            continue
    return removed


class LocalSpool:
    """A spool directory as the ingest reads it: pages of ready segments, removed once committed."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def page(self, limit: int) -> tuple[list[Segment], list[Segment]]:
        """Up to ``limit`` ready segments, oldest first, and what is there but is not a segment (as segments of
        no table, to be quarantined)."""
        return ready_segments(self.root, limit)

    def fetch(self, segments: list[Segment]) -> list[Segment]:
        """The segments, readable at their paths (a local spool's already are)."""
        return segments

    def release(self, segments: list[Segment]) -> None:
        """Nothing to clean: the files stay until ``remove`` or the next run."""

    def remove(self, segments: list[Segment]) -> None:
        """Delete segments the ledger holds (committed now, or by an earlier run that died before this)."""
        for seg in segments:
            seg.path.unlink(missing_ok=True)

    def quarantine(self, segment: Segment) -> str:
        """Move a segment aside for good; returns where it went."""
        return str(quarantine(self.root, segment.path))

    def backlog(self) -> int:
        return backlog(self.root)

    def remove_debris(self, now: float) -> int:
        """Delete what killed producers left in tmp/ (see ``TMP_DEBRIS_AGE_SECONDS``); returns how many files."""
        return remove_debris(self.root, now)
