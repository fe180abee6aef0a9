"""The owner's ingest: ready spool segments into DuckDB, each exactly once, whatever crashes in between.

One transaction loads a group of segments and writes their names into ``ingested_segments``; the files are
unlinked only after the commit. A crash before the commit leaves the files to be loaded again; a crash after it
leaves files whose names the ledger already holds, and those are just unlinked. A file DuckDB cannot read is
moved to ``quarantine/`` and counted, and the rest of the queue goes on.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from .clock import Clock
from .errors import SpoolError
from .logs import ThrottledLog
from .spool import Segment, backlog, quarantine, ready_segments
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
        self.stats.runs += 1
        segments, strangers = ready_segments(self.root, max_segments)
        for path in strangers:
            self._quarantine(path, "its name is not a segment name")
        if not segments:
            return 0
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
        return rows

    def drain(self, max_rounds: int = 64, max_segments: int = MAX_SEGMENTS_PER_RUN) -> int:
        """Ingest until the backlog is empty (or ``max_rounds`` runs, so busy producers cannot hold the job
        forever); returns the rows loaded."""
        rows = 0
        for _ in range(max_rounds):
            before = self.stats.segments + self.stats.quarantined
            rows += self.run_once(max_segments)
            if self.stats.segments + self.stats.quarantined - before < max_segments:
                break
        return rows

    def _load(self, table: str, group: list[Segment]) -> int:
        try:
            self._commit(table, group)
            return sum(s.rows for s in group)
        except SpoolError:
            if len(group) == 1:
                self._quarantine(group[0].path, "DuckDB cannot read it")
                return 0
        # One unreadable file fails the whole group: retry one by one to isolate it.
        return sum(self._load(table, [seg]) for seg in group)

    def _commit(self, table: str, group: list[Segment]) -> None:
        self.store.ingest_files(table, [(s.name, s.path, s.rows) for s in group])
        for seg in group:
            seg.path.unlink(missing_ok=True)
        self.stats.segments += len(group)
        self.stats.rows += sum(s.rows for s in group)

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
