"""The owner's ingest: ready spool segments into DuckDB, each exactly once, whatever crashes in between.

One transaction loads a group of segments and writes their names into ``ingested_segments``; the files are
unlinked only after the commit. A crash before the commit leaves the files to be loaded again; a crash after it
leaves files whose names the ledger already holds, and those are just unlinked.

A segment is quarantined (moved to ``quarantine/``, counted) only when it is proven at fault: DuckDB refused it
alone, and it fails again when loaded alone into a fresh in-memory database (unreadable, cut short, a wrong
schema, a NULL where the table wants a value). When the store is what failed (a full disk, out of memory, a
lock, an invalidated instance, a schema the file no longer matches) the segments stay in ``ready/`` and the run
stops with ``StoreError``, for the next run to load them.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from .clock import Clock
from .errors import SpoolError, StoreError
from .logs import ThrottledLog
from .spool import Segment, backlog, expected_columns, quarantine, ready_segments
from .store import Store

MAX_SEGMENTS_PER_RUN = 512


@dataclass
class IngestStats:
    """What the ingest has done since the owner started."""

    segments: int = 0
    rows: int = 0
    quarantined: int = 0
    runs: int = 0
    failures: int = 0
    last_ingest_at: float | None = None
    last_error: str | None = None
    quarantined_files: list[str] = field(default_factory=list)


class Ingestor:
    """Loads ready segments from one spool directory into the store."""

    def __init__(self, store: Store, spool_root: str | os.PathLike[str], clock: Clock, log: ThrottledLog) -> None:
        self.store = store
        self.root = Path(spool_root)
        self.clock = clock
        self.log = log
        self.stats = IngestStats()

    def backlog(self) -> int:
        return backlog(self.root)

    def run_once(self, max_segments: int = MAX_SEGMENTS_PER_RUN) -> int:
        """Ingest up to ``max_segments`` ready segments, oldest first; returns the rows loaded."""
        return self._run(max_segments)[0]

    def _run(self, max_segments: int) -> tuple[int, bool]:
        """run_once, and whether it took a full page of segments (so more may be waiting)."""
        self.stats.runs += 1
        segments, strangers = ready_segments(self.root, max_segments)
        for path in strangers:
            self._quarantine(path, "its name is not a segment name")
        if not segments:
            return 0, False
        done = self.store.already_ingested([s.name for s in segments])
        for seg in segments:
            if seg.name in done:  # committed by an earlier run that died before unlinking
                seg.path.unlink(missing_ok=True)
        todo = [s for s in segments if s.name not in done]
        rows = 0
        # Consecutive runs of the same table, so a backlog keeps its order across tables too.
        for table, group in itertools.groupby(todo, key=lambda s: s.table):
            rows += self._load(table, list(group))
        self.stats.last_ingest_at = self.clock.now()
        return rows, len(segments) == max_segments

    def drain(self, max_rounds: int = 64, max_segments: int = MAX_SEGMENTS_PER_RUN) -> int:
        """Ingest until the backlog is empty (or ``max_rounds`` runs, so busy producers cannot hold the job
        forever); returns the rows loaded."""
        rows = 0
        for _ in range(max_rounds):
            # Whether to go on is whether the page was full, not how many segments were loaded: segments a killed
            # run had committed are only unlinked, and counting them as not loaded once stopped a backlog early.
            loaded, more = self._run(max_segments)
            rows += loaded
            if not more:
                break
        return rows

    def _load(self, table: str, group: list[Segment]) -> int:
        try:
            return self._commit(table, group)
        except SpoolError as exc:
            if len(group) == 1:
                return self._refused(table, group[0], exc)
        # DuckDB refused the group: retry one by one, so the segments that are not at fault are loaded.
        return sum(self._load(table, [seg]) for seg in group)

    def _refused(self, table: str, seg: Segment, exc: SpoolError) -> int:
        """DuckDB refused one segment: quarantine it if it is at fault, else stop the run and leave it."""
        fault = self.store.segment_fault(table, seg.name, seg.path, expected_columns(table))
        if fault is None:
            raise StoreError(f"the database refused spool segment {seg.name} ({exc.__cause__ or exc}), which loads "
                             "into a fresh database: the store failed, not the segment. It stays in ready/ for the "
                             "next run") from exc
        self._quarantine(seg.path, f"DuckDB cannot load it: {fault}")
        return 0

    def _commit(self, table: str, group: list[Segment]) -> int:
        # The row counts, the table and the column types come from each file's own footer, not from its name.
        rows = self.store.ingest_files(table, [(s.name, s.path) for s in group], expected_columns(table))
        for seg in group:
            seg.path.unlink(missing_ok=True)
        self.stats.segments += len(group)
        self.stats.rows += rows
        return rows

    def _quarantine(self, path: Path, why: str) -> None:
        try:
            target = quarantine(self.root, path)
        except OSError as exc:
            self.stats.failures += 1
            self.stats.last_error = f"cannot quarantine {path}: {exc}"
            self.log.warning("quarantine", self.stats.last_error)
            return
        self.stats.quarantined += 1
        self.stats.quarantined_files.append(target.name)
        del self.stats.quarantined_files[:-20]
        self.log.warning("quarantine", f"spool segment {path.name} moved to {target.parent}: {why}. Inspect it "
                         "there; delete it once you no longer need it.")
