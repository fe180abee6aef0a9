"""The per-process buffer: raw values from the hot path, compacted into columns until a flush takes them.

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

import itertools
import threading
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .caps import DEFAULT_MAX_ROUTES, vocabularies
from .tables import (
    MAX_CHUNK_ROWS,
    NULL_VALUE,
    REQUESTS,
    SPECS,
    TABLE_ORDER,
    Chunk,
    EmptyValueError,
    Interner,
    Row,
    TableData,
    TableSpec,
    altered_rows,
    columns_to_chunk,
    concat,
    new_interners,
    raw_columns,
    series_row,
    to_chunk,
)
from .validate import TS_MAX_AGE_SECONDS, TS_MAX_AHEAD_SECONDS, safe_repr

try:  # the optional C recorder of track_request (pipeline/_record.c); absent where it could not be compiled
    from ._record import Recorder, remap
except ImportError:  # pragma: no cover - the pure-Python path records everything then
    Recorder = None  # type: ignore[assignment,misc]

# Raw rows cost ~150 B each; columns cost ~38 B. Keeping at most this many raw values per table bounds the
# memory a buffered metric costs at 1M buffered to the columnar size plus a few bytes.
RAW_CAP = 131_072  # values, i.e. 16,384 rows of 8 values
# The flusher's periodic compaction waits for this many raw rows (a flush compacts whatever there is).
TICK_COMPACT_ROWS = 2_048
# Requests the C recorder holds at most (~50 B each) before the hot path compacts them itself, like RAW_CAP.
RECORDER_MAX_ROWS = RAW_CAP // REQUESTS.raw_width


@dataclass
class Flush:
    """What ``Buffer.take`` hands to a sink: new series rows, and each table's rows with their dictionaries."""

    pid: int
    host: str
    series: list[tuple[int, str, str, str]] = field(default_factory=list)
    tables: dict[str, TableData] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Metric rows (series rows are bookkeeping, not metrics)."""
        return sum(t.rows for t in self.tables.values())

    def __bool__(self) -> bool:
        return bool(self.series or self.tables)


class Buffer:
    """Bounded buffer of every table, with the counts that prove nothing is lost silently."""

    def __init__(self, max_buffered: int, pid: int, host: str, max_routes: int = DEFAULT_MAX_ROUTES) -> None:
        self.max_buffered = max_buffered
        self.host = host
        # The capped columns' values this process recorded: kept across flushes and forks (pipeline/caps.py).
        self.vocabularies = vocabularies(max_routes)
        # The lists the hot path appends to, one per table; never replaced, only trimmed from the front.
        self.raw: dict[str, list[Any]] = {name: [] for name in SPECS}
        self.compacted_values = 0  # raw values moved out of the raw lists so far (see activity())
        self.recorder: Recorder | None = None  # the C recorder of requests, once attach_recorder() made it
        self._start_empty(pid)

    def _start_empty(self, pid: int) -> None:
        self.pid = pid
        self._chunks: dict[str, list[Chunk]] = {name: [] for name in SPECS}
        # Strings -> ids for the rows compacted since the last take(); each flush starts new dictionaries, so a
        # segment's dictionary holds only what it uses and an interner never outgrows one flush.
        self._interners: dict[str, dict[str, Interner]] = {name: new_interners(s, self.vocabularies)
                                                             for name, s in SPECS.items()}
        self._series: list[tuple[int, str, str, str]] = []
        self.pending_rows = 0
        self.recorded = 0
        self.flushed = 0
        self.dropped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.folded: Counter[str] = Counter()  # rows whose route, method or query name was cut or folded
        self.lock = threading.Lock()

    def reset_after_fork(self, pid: int) -> None:
        """In a forked child: start empty (with a fresh lock: the parent's threads may have held it at the fork).
        What the parent buffered is the parent's to flush."""
        for raw in self.raw.values():
            del raw[:]  # in place: the hot path and the instruments hold these lists
        if self.recorder is not None:
            self.recorder.clear()  # kept, emptied: the monitor's track_request is bound to it
        self._start_empty(pid)

    def attach_recorder(self, fallback: Callable[..., None], resolution_seconds: float) -> Recorder | None:
        """The C recorder of requests (pipeline/_record.c), made once; None where it was not compiled.

        ``fallback`` is called with the arguments of every call the recorder does not take (a value that is not
        certainly storable): the pure-Python ``track_request``, so what is refused is refused as before.
        """
        if Recorder is not None and self.recorder is None:
            self.recorder = Recorder(fallback, self._recorder_full, RECORDER_MAX_ROWS, resolution_seconds,
                                     TS_MAX_AGE_SECONDS, TS_MAX_AHEAD_SECONDS)
        return self.recorder

    def _recorder_full(self) -> None:
        """The C recorder holds RECORDER_MAX_ROWS: the flusher fell behind, so compact on this thread."""
        with self.lock:
            self._drain_recorder()

    # -- hot-path slow branch ---------------------------------------------------------------------------
    def append(self, table: str, row: Row) -> None:
        """What the hot path does inline, for its slow branches: append one row to its raw list."""
        raw = self.raw[table]
        if len(raw) < RAW_CAP:
            raw += row
        else:
            self.raw_full(table, row)

    def raw_full(self, table: str, row: Row) -> None:
        """A raw list reached RAW_CAP: the flusher fell behind, so compact on this thread (1 row in 16,384)."""
        # Blocking is bounded: the lock is only ever held for one compaction, never during I/O.
        with self.lock:
            self._compact_locked(table)
        self.raw[table].extend(row)

    def activity(self) -> int:
        """A number that grows whenever a row is recorded (read without the lock: a hint for the clock thread).

        The C recorder's rows are left out: it reads the clock itself, so the clock thread may sleep meanwhile."""
        return self.compacted_values + sum(len(raw) for raw in self.raw.values())

    # -- compaction --------------------------------------------------------------------------------------
    def buffered_rows(self) -> int:
        """Rows waiting for a flush: compacted, plus raw (read without the lock: a hint, not an account)."""
        held = len(self.recorder) if self.recorder is not None else 0
        return self.pending_rows + held + sum(len(raw) // SPECS[t].raw_width for t, raw in self.raw.items())

    def compact(self, min_rows: int = 0) -> list[tuple[str, str]]:
        """Move raw rows into columns, for each table holding at least ``min_rows`` of them.

        Returns (reason, example) for rows refused at conversion. The periodic tick waits for a worthwhile
        chunk (each conversion has a fixed cost); a flush compacts everything.
        """
        with self.lock:
            problems: list[tuple[str, str]] = []
            for table in SPECS:
                if len(self.raw[table]) >= max(min_rows, 1) * SPECS[table].raw_width:
                    problems.extend(self._compact_locked(table))
            if self.recorder is not None and len(self.recorder) >= max(min_rows, 1):
                problems.extend(self._drain_recorder())
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
            problems.extend(self._add_flat(spec, chunk))
        return problems

    def _add_flat(self, spec: TableSpec, flat: list[Any]) -> list[tuple[str, str]]:
        """Convert and keep whole rows laid end to end, as the hot path appends them."""
        interners = self._interners[spec.name]
        columns = raw_columns(spec, flat)

        def convert() -> tuple[Chunk, Counter[str]]:
            return (columns_to_chunk(spec, len(flat) // spec.raw_width, columns, interners),
                    altered_rows(spec, columns, interners))

        return self._add_chunk(spec, convert, lambda: flat)

    def _drain_recorder(self) -> list[tuple[str, str]]:
        """Move the C recorder's rows into columns: its numbers are C arrays already, and its strings ids into a
        list of distinct ones, each encoded once here (no Python step per row)."""
        assert self.recorder is not None
        drained = self.recorder.drain()
        if drained is None:
            return []
        n, ts, route_ids, routes, method_ids, methods, status, duration_ms, request_id, query_count = drained
        interners = self._interners["requests"]

        def convert() -> tuple[Chunk, Counter[str]]:
            altered: Counter[str] = Counter()
            strings = []
            for name, ids, values in (("route", route_ids, routes), ("method", method_ids, methods)):
                interner = interners[name]
                strings.append(_array("I", remap(ids, interner.encode(values))))
                if interner.altered:  # rare: a value cut or folded by its cap, counted per row
                    changed = interner.altered
                    altered.update(changed[v] for v in map(values.__getitem__, _array("I", ids)) if v in changed)
            columns = [_array("d", ts), *strings, _array("h", status), _array("d", duration_ms),
                       _array("q", request_id), _array("i", query_count)]
            return columns_to_chunk(REQUESTS, n, columns, interners), altered

        def flat_rows() -> list[Any]:  # the rows as the hot path lays them, a missing request id None again
            missing = NULL_VALUE["q"]
            return list(itertools.chain.from_iterable(zip(
                _array("d", ts), map(routes.__getitem__, _array("I", route_ids)),
                map(methods.__getitem__, _array("I", method_ids)), _array("h", status), _array("d", duration_ms),
                [None if v == missing else v for v in _array("q", request_id)], _array("i", query_count),
                strict=True)))

        return self._add_chunk(REQUESTS, convert, flat_rows)

    def _add_chunk(self, spec: TableSpec, convert: Callable[[], tuple[Chunk, Counter[str]]],
                   flat_rows: Callable[[], list[Any]]) -> list[tuple[str, str]]:
        """Keep the rows ``convert()`` makes into columns (with the count of those a cap altered); if any row
        cannot be stored, find which, one by one, in ``flat_rows()`` (the rows laid end to end)."""
        problems: list[tuple[str, str]] = []
        interners = self._interners[spec.name]
        try:
            chunk, altered = convert()
            self.folded += altered
        except Exception:  # a hostile value may raise anything (a __hash__ or __eq__ of its own)
            flat = flat_rows()
            # Rare: some row has a wrong type or an empty name. Find the culprits one by one.
            width = spec.raw_width
            good: list[Any] = []
            for i in range(0, len(flat), width):
                row = flat[i:i + width]
                try:
                    to_chunk(spec, row, interners)
                    good.extend(row)
                except Exception as exc:
                    problems.append(self._refuse_row(spec, row, exc))
            try:
                chunk = to_chunk(spec, good, interners)
                self.folded += altered_rows(spec, raw_columns(spec, good), interners)
            except Exception as exc:  # a value that converted alone and not now: refuse those rows, only them
                for i in range(0, len(good), width):
                    problems.append(self._refuse_row(spec, good[i:i + width], exc))
                return problems
            if not chunk.rows:
                return problems
        n = chunk.rows
        self.recorded += n
        room = self.max_buffered - self.pending_rows
        if n > room:
            # The newest rows are the ones the buffer cannot take: flushing is failing or too slow.
            self.dropped["buffer_full"] += n - max(room, 0)
            if room <= 0:
                return problems
            chunk = Chunk(room, [a[:room] for a in chunk.arrays])
            n = room
        self._chunks[spec.name].append(chunk)
        self.pending_rows += n
        return problems

    def _refuse_row(self, spec: TableSpec, row: list[Any], exc: Exception) -> tuple[str, str]:
        """Count one row that cannot be stored; returns (reason, what was wrong)."""
        reason = "empty_name" if isinstance(exc, EmptyValueError) else f"invalid_{spec.name}_row"
        self.rejected[reason] += 1
        values = ", ".join(safe_repr(v, 60) for v in row)
        return reason, f"{spec.name} row ({values}): {safe_repr(exc, 200)}"

    # -- series registry ---------------------------------------------------------------------------------
    def add_series(self, series_id: int, name: str, kind: str, labels: dict[str, str]) -> None:
        """Queue a new series' row for the next flush (series rows are small and never dropped)."""
        with self.lock:
            self._series.append(series_row(series_id, name, kind, labels))

    # -- flush hand-off ----------------------------------------------------------------------------------
    def take(self) -> Flush:
        """Everything compacted so far (series first, then each table in TABLE_ORDER); the buffer empties.

        The caller must give it back with ``restore`` if writing fails, or confirm with ``committed``.
        """
        with self.lock:
            for table in SPECS:
                self._compact_locked(table)
            if self.recorder is not None:
                self._drain_recorder()
            out = Flush(self.pid, self.host, self._series)
            self._series = []
            for name in TABLE_ORDER:
                chunks = self._chunks.get(name)
                if not chunks:
                    continue
                spec = SPECS[name]
                dictionaries = {col: i.values for col, i in self._interners[name].items()}
                out.tables[name] = TableData(spec, sum(c.rows for c in chunks), concat(chunks, spec), dictionaries)
                self._chunks[name] = []
                self._interners[name] = new_interners(spec, self.vocabularies)
            self.pending_rows -= out.rows
            return out

    def restore(self, flush: Flush) -> None:
        """Put back what ``take`` returned, ahead of anything compacted since (keeping time order).

        Rows compacted since then use new dictionaries, so the restored string ids are encoded again into them
        (a failure path: a flush that could not be written).
        """
        with self.lock:
            self._series[:0] = flush.series
            for name, data in flush.tables.items():
                interners = self._interners[name]
                arrays = list(data.arrays)
                for i, column in enumerate(data.spec.columns):
                    if column.kind == "str":
                        values = data.dictionaries[column.name]
                        strings = [None if sid == 0 else values[sid] for sid in arrays[i]]
                        arrays[i] = interners[column.name].encode_stored(strings)
                    elif column.name == "fingerprint_id":
                        arrays[i] = arrays[i - 1]
                self._chunks[name][:0] = [Chunk(data.rows, arrays)]
                self.pending_rows += data.rows

    def committed(self, flush: Flush) -> int:
        """Count what ``take`` returned as flushed; returns the number of metric rows."""
        rows = flush.rows
        with self.lock:
            self.flushed += rows
        return rows

    def discard(self, flush: Flush, reason: str) -> int:
        """Count what ``take`` returned as dropped for ``reason`` (a sink that cannot keep it, e.g. a full
        outbox); returns the number of metric rows."""
        rows = flush.rows
        with self.lock:
            self.dropped[reason] += rows
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
                "folded": dict(self.folded),
            }

    def nbytes(self) -> int:
        """Bytes held in compacted columns (the raw lists are bounded by RAW_CAP)."""
        with self.lock:
            return int(sum(c.nbytes for chunks in self._chunks.values() for c in chunks))


def _array(typecode: str, data: bytes) -> array[Any]:
    """An array of C values from their bytes (the C recorder's columns)."""
    out = array(typecode)
    out.frombytes(data)
    return out
