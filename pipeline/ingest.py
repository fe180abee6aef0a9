"""The owner's ingest: ready spool segments into DuckDB, each exactly once, whatever crashes in between.

One transaction loads a group of segments and writes their names into ``ingested_segments``; the files are
unlinked only after the commit. A crash before the commit leaves the files to be loaded again; a crash after it
leaves files whose names the ledger already holds, and those are just unlinked.

Segments come from sources: a local spool directory (``spool.LocalSpool``) or an object storage prefix a fleet's
hosts upload to (``objectspool.ObjectSpool``, whose ledger names are the object's URL and ETag). A source pages
ready segments oldest first, makes them readable as local files, and removes or quarantines them.

A segment is quarantined (moved to ``quarantine/``, counted) only when it is proven at fault: DuckDB refused it
alone, and it fails again when loaded alone into a fresh in-memory database (unreadable, cut short, a wrong
schema, a NULL where the table wants a value). When the store is what failed (a full disk, out of memory, a
lock, an invalidated instance, a schema the file no longer matches) the segments stay in ``ready/`` and the run
stops with ``StoreError``, for the next run to load them.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass, field
from typing import Protocol

from .clock import Clock
from .errors import SpoolError, StoreError
from .logs import ThrottledLog
from .spool import LocalSpool, Segment, expected_columns
from .store import Store

MAX_SEGMENTS_PER_RUN = 512


@dataclass
class IngestStats:
    """What the ingest has done since the owner started."""

    segments: int = 0
    rows: int = 0
    quarantined: int = 0
    # Files killed producers left half-written in tmp/, removed once old (spool.TMP_DEBRIS_AGE_SECONDS).
    debris_removed: int = 0
    runs: int = 0
    failures: int = 0
    last_ingest_at: float | None = None
    last_error: str | None = None
    quarantined_files: list[str] = field(default_factory=list)


class Source(Protocol):
    """Where ready segments wait (``spool.LocalSpool``, ``objectspool.ObjectSpool``)."""

    def page(self, limit: int) -> tuple[list[Segment], list[Segment]]:
        """Up to ``limit`` ready segments, oldest first, and what waits there but is not a segment."""

    def fetch(self, segments: list[Segment]) -> list[Segment]:
        """The segments readable at their ``path`` (downloaded if need be); those that vanished are left out."""

    def release(self, segments: list[Segment]) -> None:
        """Forget local copies ``fetch`` made (the segments themselves stay until ``remove``)."""

    def remove(self, segments: list[Segment]) -> None:
        """Delete segments the ledger holds."""

    def quarantine(self, segment: Segment) -> str:
        """Move a segment aside for good; returns where it went."""

    def backlog(self) -> int:
        """Segments waiting."""


class Ingestor:
    """Loads ready segments from spool sources into the store (a directory path is a ``LocalSpool``)."""

    def __init__(self, store: Store, spool: str | os.PathLike[str] | Source | list[Source], clock: Clock,
                 log: ThrottledLog) -> None:
        self.store = store
        if isinstance(spool, str | os.PathLike):
            self.sources: list[Source] = [LocalSpool(spool)]
        else:
            self.sources = list(spool) if isinstance(spool, list) else [spool]
        self.clock = clock
        self.log = log
        self.stats = IngestStats()
        # Set when the owner is closing: a drain stops after the page it is loading (the rest waits in ready/ for
        # the next owner), so SIGTERM to `duckpulse serve` is answered in seconds whatever the backlog.
        self.stopping = threading.Event()

    def backlog(self) -> int:
        return sum(source.backlog() for source in self.sources)

    def remove_debris(self, now: float) -> int:
        """Remove what killed producers left in local spools' tmp/ (object storage has none); returns how many."""
        removed = sum(source.remove_debris(now) for source in self.sources if isinstance(source, LocalSpool))
        self.stats.debris_removed += removed
        if removed:
            self.log.warning("spool-debris", f"duckpulse: removed {removed} half-written segment file(s) that "
                             "killed producers left in the spool's tmp/")
        return removed

    def run_once(self, max_segments: int = MAX_SEGMENTS_PER_RUN) -> int:
        """Ingest up to ``max_segments`` ready segments, oldest first; returns the rows loaded."""
        return self._run(max_segments)[0]

    def _run(self, max_segments: int) -> tuple[int, bool]:
        """run_once over every source, and whether one of them gave a full page (so more may be waiting)."""
        self.stats.runs += 1
        rows, more = 0, False
        for source in self.sources:
            loaded, full = self._run_source(source, max_segments)
            rows, more = rows + loaded, more or full
        return rows, more

    def _run_source(self, source: Source, max_segments: int) -> tuple[int, bool]:
        segments, strangers = source.page(max_segments)
        for stranger in strangers:
            self._quarantine(source, stranger, stranger.not_a_segment or "its name is not a segment name")
        if not segments:
            return 0, False
        done = self.store.already_ingested([s.name for s in segments])
        # Committed by an earlier run that died before removing them (or uploaded again by a producer that never
        # heard the store's answer: the same bytes have the same ETag).
        source.remove([s for s in segments if s.name in done])
        todo = source.fetch([s for s in segments if s.name not in done])
        rows = 0
        try:
            # Consecutive runs of the same table, so a backlog keeps its order across tables too.
            for table, group in itertools.groupby(todo, key=lambda s: s.table):
                rows += self._load(source, table, list(group))
        finally:
            source.release(todo)
        self.stats.last_ingest_at = self.clock.now()
        return rows, len(segments) == max_segments

    def drain(self, max_rounds: int = 64, max_segments: int = MAX_SEGMENTS_PER_RUN) -> int:
        """Ingest until the backlog is empty (or ``max_rounds`` runs, so busy producers cannot hold the job
        forever; one run once ``stopping`` is set); returns the rows loaded."""
        rows = 0
        for _ in range(max_rounds):
            # Whether to go on is whether the page was full, not how many segments were loaded: segments a killed
            # run had committed are only unlinked, and counting them as not loaded once stopped a backlog early.
            loaded, more = self._run(max_segments)
            rows += loaded
            if not more or self.stopping.is_set():
                break
        return rows

    def _load(self, source: Source, table: str, group: list[Segment]) -> int:
        try:
            return self._commit(source, table, group)
        except SpoolError as exc:
            if len(group) == 1:
                return self._refused(source, table, group[0], exc)
        # DuckDB refused the group: retry one by one, so the segments that are not at fault are loaded.
        return sum(self._load(source, table, [seg]) for seg in group)

    def _refused(self, source: Source, table: str, seg: Segment, exc: SpoolError) -> int:
        """DuckDB refused one segment: quarantine it if it is at fault, else stop the run and leave it."""
        fault = self.store.segment_fault(table, seg.name, seg.path, expected_columns(table))
        if fault is None:
            raise StoreError(f"the database refused spool segment {seg.name} ({exc.__cause__ or exc}), which loads "
                             "into a fresh database: the store failed, not the segment. It stays in ready/ for the "
                             "next run") from exc
        self._quarantine(source, seg, f"DuckDB cannot load it: {fault}")
        return 0

    def _commit(self, source: Source, table: str, group: list[Segment]) -> int:
        # The row counts, the table and the column types come from each file's own footer, not from its name.
        rows = self.store.ingest_files(table, [(s.name, s.path) for s in group], expected_columns(table))
        self.stats.segments += len(group)
        self.stats.rows += rows
        try:
            source.remove(group)
        except Exception as exc:  # committed: the ledger keeps them from being loaded again; removed next run
            self.stats.last_error = f"cannot remove {len(group)} ingested segment(s) from {source}: {exc}"
            self.log.warning("ingest-remove", f"duckpulse: {self.stats.last_error} (the ledger holds them: the next "
                             "run removes them without loading them again)")
        return rows

    def _quarantine(self, source: Source, seg: Segment, why: str) -> None:
        try:
            target = source.quarantine(seg)
        except Exception as exc:
            self.stats.failures += 1
            self.stats.last_error = f"cannot quarantine {seg.name}: {exc}"
            self.log.warning("quarantine", self.stats.last_error)
            return
        self.stats.quarantined += 1
        self.stats.quarantined_files.append(target.rsplit("/", 1)[-1])
        del self.stats.quarantined_files[:-20]
        self.log.warning("quarantine", f"spool segment {seg.name} moved to {target}: {why}. Inspect it there; "
                         "delete it once you no longer need it.")
