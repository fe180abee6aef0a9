"""The per-process buffer: raw values from the hot path, compacted into Arrow batches until a flush takes them.

The hot path only extends a plain list (``raw[table]``) with one row's values (``raw += (ts, route, ...)``),
after checking the list's length against ``RAW_CAP``: list extension is atomic under the GIL, so recording
takes no lock, and rows laid end to end leave no tuple alive for the garbage collector to walk (a list of
tuples made collections cost more than the appends). Compaction moves the front of each list into columns with
``chunk = raw[:n]; del raw[:n]`` — two atomic list operations that never lose a row racing with them, unlike
swapping the list for a new one. Compaction runs on the flusher thread, and inline on the hot path only when a
raw list is full.

Accounting, kept exact by construction: ``recorded == flushed + sum(dropped) + pending_rows`` once compacted.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pyarrow as pa

from .tables import (
    MAX_CHUNK_ROWS,
    ORIGIN_FIELDS,
    SERIES_SCHEMA,
    SPECS,
    TABLE_ORDER,
    EmptyValueError,
    Row,
    TableSpec,
    flat_to_columns,
    to_columns,
    with_origin,
)

# Raw tuples cost ~150 B each; columns cost ~30 B. Keeping at most this many raw tuples per table bounds the
# memory a buffered metric costs at 1M buffered to the columnar size plus a few bytes.
RAW_CAP = 131_072  # values, i.e. 16,384 rows of 8 values
# The flusher's periodic compaction waits for this many raw rows (a flush compacts whatever there is).
TICK_COMPACT_ROWS = 2_048


class Buffer:
    """Bounded buffer of every table, with the counts that prove nothing is lost silently."""

    def __init__(self, max_buffered: int, pid: int, host: str) -> None:
        self.max_buffered = max_buffered
        self.host = host
        # The lists the hot path appends to, one per table; never replaced, only trimmed from the front.
        self.raw: dict[str, list[Any]] = {name: [] for name in SPECS}
        self.compacted_values = 0  # raw values moved out of the raw lists so far (see activity())
        self._start_empty(pid)

    def _start_empty(self, pid: int) -> None:
        self.pid = pid
        self._batches: dict[str, list[pa.RecordBatch]] = {name: [] for name in SPECS}
        self._series: list[tuple[int, str, str, str]] = []
        self.pending_rows = 0
        self.recorded = 0
        self.flushed = 0
        self.dropped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.lock = threading.Lock()

    def reset_after_fork(self, pid: int) -> None:
        """In a forked child: start empty (with a fresh lock: the parent's threads may have held it at the fork).
        What the parent buffered is the parent's to flush."""
        for raw in self.raw.values():
            del raw[:]  # in place: the hot path and the instruments hold these lists
        self._start_empty(pid)

    # -- hot-path slow branch ---------------------------------------------------------------------------
    def raw_full(self, table: str, row: Row) -> None:
        """A raw list reached RAW_CAP: the flusher fell behind, so compact on this thread (1 row in 16,384)."""
        # Blocking is bounded: the lock is only ever held for one compaction, never during I/O.
        with self.lock:
            self._compact_locked(table)
        self.raw[table].extend(row)

    def activity(self) -> int:
        """A number that grows whenever a row is recorded (read without the lock: a hint for the clock thread)."""
        return self.compacted_values + sum(len(raw) for raw in self.raw.values())

    # -- compaction --------------------------------------------------------------------------------------
    def buffered_rows(self) -> int:
        """Rows waiting for a flush: compacted, plus raw (read without the lock: a hint, not an account)."""
        return self.pending_rows + sum(len(raw) // SPECS[t].raw_width for t, raw in self.raw.items())

    def compact(self, min_rows: int = 0) -> list[tuple[str, str]]:
        """Move raw tuples into columns, for each table holding at least ``min_rows`` of them.

        Returns (reason, example) for rows refused at conversion. A conversion has a fixed cost of ~100 us, so
        the periodic tick waits for a worthwhile chunk; a flush compacts everything.
        """
        with self.lock:
            problems: list[tuple[str, str]] = []
            for table in SPECS:
                if len(self.raw[table]) >= max(min_rows, 1) * SPECS[table].raw_width:
                    problems.extend(self._compact_locked(table))
            return problems

    def _compact_locked(self, table: str) -> list[tuple[str, str]]:
        raw = self.raw[table]
        spec = SPECS[table]
        width = spec.raw_width
        problems: list[tuple[str, str]] = []
        while len(raw) >= width:
            # Whole rows only: every extend adds exactly one row, atomically, so lengths are multiples of width.
            n = min(len(raw) // width, MAX_CHUNK_ROWS) * width
            chunk = raw[:n]
            del raw[:n]  # atomic: rows racing with us land after the n values we took
            self.compacted_values += n
            problems.extend(self._add_chunk(spec, chunk))
        return problems

    def _add_chunk(self, spec: TableSpec, chunk: list[Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        try:
            batch = flat_to_columns(spec, chunk)
        except (TypeError, ValueError, OverflowError, pa.ArrowException):
            # Rare: some row has a wrong type or an empty name. Find the culprits one by one.
            width = spec.raw_width
            good: list[Row] = []
            for row in (tuple(chunk[i:i + width]) for i in range(0, len(chunk), width)):
                try:
                    to_columns(spec, [row])
                    good.append(row)
                except (TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
                    reason = "empty_name" if isinstance(exc, EmptyValueError) else f"invalid_{spec.name}_row"
                    self.rejected[reason] += 1
                    problems.append((reason, f"{spec.name} row {row!r:.200}: {exc}"))
            if not good:
                return problems
            batch = to_columns(spec, good)
        n = batch.num_rows
        self.recorded += n
        room = self.max_buffered - self.pending_rows
        if n > room:
            # The newest rows are the ones the buffer cannot take: flushing is failing or too slow.
            self.dropped["buffer_full"] += n - max(room, 0)
            if room <= 0:
                return problems
            batch = batch.slice(0, room)
            n = room
        self._batches[spec.name].append(batch)
        self.pending_rows += n
        return problems

    # -- series registry ---------------------------------------------------------------------------------
    def add_series(self, series_id: int, name: str, kind: str, labels: dict[str, str]) -> None:
        """Queue a new series' row for the next flush (series rows are small and never dropped)."""
        with self.lock:
            self._series.append((series_id, name, kind, json.dumps(labels, sort_keys=True)))

    # -- flush hand-off ----------------------------------------------------------------------------------
    def take(self) -> dict[str, pa.Table]:
        """Everything compacted so far, as one Arrow table per table name (series first); the buffer empties.

        The caller must give it back with ``restore`` if writing fails, or confirm with ``committed``.
        """
        with self.lock:
            for table in SPECS:
                self._compact_locked(table)
            out: dict[str, pa.Table] = {}
            if self._series:
                columns = list(zip(*self._series, strict=True))
                out["series"] = pa.Table.from_arrays([pa.array(c) for c in columns], schema=SERIES_SCHEMA)
                self._series = []
            for name, batches in self._batches.items():
                if batches:
                    spec = SPECS[name]
                    buffered = pa.Table.from_batches(batches, schema=spec.buffer_schema)
                    out[name] = with_origin(spec, buffered, self.pid, self.host)
                    self._batches[name] = []
            self.pending_rows -= sum(t.num_rows for n, t in out.items() if n != "series")
            return {name: out[name] for name in TABLE_ORDER if name in out}

    def restore(self, tables: dict[str, pa.Table]) -> None:
        """Put back what ``take`` returned, ahead of anything compacted since (keeping time order)."""
        with self.lock:
            for name, table in tables.items():
                if name == "series":
                    rows = list(zip(*(table.column(i).to_pylist() for i in range(4)), strict=True))
                    self._series[:0] = rows
                    continue
                self._batches[name][:0] = table.drop_columns([f.name for f in ORIGIN_FIELDS]).to_batches()
                self.pending_rows += table.num_rows

    def committed(self, tables: dict[str, pa.Table]) -> int:
        """Count what ``take`` returned as flushed; returns the number of metric rows."""
        rows = int(sum(t.num_rows for n, t in tables.items() if n != "series"))
        with self.lock:
            self.flushed += rows
        return rows

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected[reason] += 1

    def counts(self) -> dict[str, Any]:
        with self.lock:
            return {
                "recorded": self.recorded,
                "flushed": self.flushed,
                "pending": self.pending_rows,
                "dropped": dict(self.dropped),
                "rejected": dict(self.rejected),
            }

    def nbytes(self) -> int:
        """Bytes held in compacted columns (the raw lists are bounded by RAW_CAP)."""
        with self.lock:
            return int(sum(b.nbytes for batches in self._batches.values() for b in batches))
