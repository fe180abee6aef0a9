"""The buffered tables: how recorded rows become compact columns, and columns a Parquet segment.

The hot path appends plain values; compaction turns a chunk of them into one ``array.array`` per column off
the hot path (stdlib only: a producer must not pay pyarrow's ~37 MB, see benchmarks/bench_footprint.py).
Strings (routes, methods, fingerprints) become small integer ids into a per-flush dictionary, which is what
keeps a buffered request under 40 bytes. A missing value of a nullable column is held as a sentinel (id 0 for
strings, the smallest integer of the column's type) and written as a real NULL (definition levels), so the segment is
plain Parquet that any reader understands.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import exceptions, parquet
from .fingerprint import FingerprintCache, fingerprint_id

if TYPE_CHECKING:
    from .caps import Vocabulary

MAX_CHUNK_ROWS = 32_767  # rows converted at once (bounds the temporary lists of one compaction)
# A nullable number's missing value while buffered, by typecode (never a real request id, size or count)
NULL_VALUE: dict[str, float] = {"q": -(2**63), "i": -(2**31), "d": float("nan")}
Row = tuple[Any, ...]
# Column kinds: typecode held while buffered, Parquet physical type, converted type
KINDS: dict[str, tuple[str, int, int | None]] = {
    "ts": ("d", parquet.DOUBLE, None),  # epoch seconds; the ingest SQL makes it a TIMESTAMP
    "str": ("I", parquet.BYTE_ARRAY, parquet.UTF8),  # ids into the flush's dictionary
    "i16": ("h", parquet.INT32, parquet.INT_16),
    "i32": ("i", parquet.INT32, None),
    "i64": ("q", parquet.INT64, None),
    "f64": ("d", parquet.DOUBLE, None),
    "bool": ("B", parquet.BOOLEAN, None),
}


class EmptyValueError(ValueError):
    """A name that must not be empty (a route, a method, a fingerprint) is."""


@dataclass(frozen=True)
class Column:
    """One stored column: its name, its kind (see KINDS) and whether a missing or empty value is refused."""

    name: str
    kind: str
    non_empty: bool = False
    # NOT NULL in the table: a missing value refuses its row here, before it could fail a whole batch in DuckDB.
    required: bool = False

    @property
    def nullable(self) -> bool:
        return not (self.required or self.non_empty or self.kind == "ts")


class Interner:
    """Strings of one column -> ids, for one flush's worth of rows; id 0 is the missing value (None).

    ``key`` turns a recorded value into the stored string (the queries' SQL text, with its dialect when one was
    named, into its fingerprint); recorded values are the dict's keys, so a value seen before costs one dict
    lookup at compaction.
    """

    def __init__(self, column: Column, key: Callable[[str, str | None], str] | None = None,
                 vocabulary: Vocabulary | None = None) -> None:
        self.column = column
        self.key = key
        self.vocabulary = vocabulary  # the process's cap on this column's values (pipeline/caps.py)
        self.altered: dict[Any, str] = {}  # recorded value -> why it is stored changed (cut, or folded)
        # None is a value only where the column may be missing: elsewhere it must reach add(), which refuses it.
        self.ids: dict[Any, int] = {None: 0} if column.nullable else {}
        self.values: list[str] = [""]  # what the dictionary page holds; entry 0 is never referenced
        self._by_value: dict[str, int] = {}

    def add(self, value: Any) -> int:
        """The id of a value not seen yet; raises TypeError / EmptyValueError for a value that cannot be stored."""
        if value is None:
            if self.column.non_empty:
                raise EmptyValueError(f"{self.column.name} is missing")
            return 0
        # (text, dialect) where a row named its SQL dialect (queries), else the text alone
        text, dialect = value if isinstance(value, tuple) and len(value) == 2 else (value, None)
        if not isinstance(text, str):
            raise TypeError(f"{self.column.name} must be a string, got {type(text).__name__}")
        stored = self.key(text, dialect) if self.key is not None else text
        if type(stored) is not str:  # a str subclass: store its characters, not its methods
            stored = str.__str__(stored)
        if self.column.non_empty and not stored:
            raise EmptyValueError(f"{self.column.name} is empty")
        stored.encode()  # a lone surrogate cannot be stored as UTF-8: refuse its row now, not the whole flush
        if self.vocabulary is not None:
            stored, reason = self.vocabulary.admit(stored)
            if reason is not None:
                self.altered[value] = reason
        sid = self._by_value.get(stored)
        if sid is None:
            sid = self._by_value[stored] = len(self.values)
            self.values.append(stored)
        self.ids[value] = sid
        return sid

    def encode(self, values: Sequence[Any]) -> array[int]:
        ids = self.ids
        try:
            return array("I", map(ids.__getitem__, values))
        except KeyError:
            pass
        # New values (every first chunk after a flush): add each distinct one once, then map again in C.
        for value in dict.fromkeys(values).keys() - ids.keys():
            self.add(value)
        return array("I", map(ids.__getitem__, values))

    def encode_stored(self, stored: Sequence[str | None]) -> array[int]:
        """Ids of values already in their stored form (a restored flush's strings), added where missing."""
        out = array("I")
        for value in stored:
            if value is None:
                out.append(0)
                continue
            sid = self._by_value.get(value)
            if sid is None:
                sid = self._by_value[value] = len(self.values)
                self.values.append(value)
            out.append(sid)
        return out


@dataclass(frozen=True)
class TableSpec:
    """The row layout the hot path appends for one table, and the table it lands in."""

    name: str
    columns: tuple[Column, ...]
    # Maps the raw column sequences to the stored ones, given the flush's interners (queries: the SQL text is
    # interned as its fingerprint, and fingerprint_id derives from it); None: as is.
    raw_columns: int | None = None
    # For each stored column, the raw column it comes from (None: derived from the column before it).
    sources: tuple[int | None, ...] | None = None
    # The raw column holding each row's SQL dialect (queries), interned with the text into the fingerprint.
    dialect_source: int | None = None
    # Turns the raw columns into the stored ones before they are encoded (exceptions: a traceback and a message
    # into a signature); None: as they are.
    prepare: Callable[[list[list[Any]]], list[list[Any]]] | None = None

    @property
    def raw_width(self) -> int:
        """How many values one recorded row appends to the raw list."""
        return self.raw_columns if self.raw_columns is not None else len(self.columns)


@dataclass
class Chunk:
    """Compacted rows of one table: one array per stored column (strings as ids of the flush's interners)."""

    rows: int
    arrays: list[array[Any]]

    @property
    def nbytes(self) -> int:
        # distinct arrays: a derived column (fingerprint_id) shares its source's ids
        return sum(a.itemsize * len(a) for a in {id(a): a for a in self.arrays}.values())


@dataclass
class TableData:
    """One table's rows of a flush, ready to be written: columns, and the dictionaries their ids index."""

    spec: TableSpec
    rows: int
    arrays: list[array[Any]]
    dictionaries: dict[str, list[str]] = field(default_factory=dict)

    def column(self, name: str) -> array[Any]:
        return self.arrays[[c.name for c in self.spec.columns].index(name)]


def new_interners(spec: TableSpec,
                  vocabularies: Mapping[tuple[str, str], Vocabulary] | None = None) -> dict[str, Interner]:
    vocabularies = vocabularies or {}
    return {c.name: Interner(c, _fingerprints.get if c.name == "fingerprint" else None,
                             vocabularies.get((spec.name, c.name)))
            for c in spec.columns if c.kind == "str"}


def altered_rows(spec: TableSpec, raw: Sequence[Sequence[Any]], interners: Mapping[str, Interner]) -> Counter[str]:
    """How many rows of the raw columns ``raw`` (converted with ``interners``) have a value stored changed, by
    reason."""
    found: Counter[str] = Counter()
    sources = spec.sources or tuple(range(len(spec.columns)))
    for column, source in zip(spec.columns, sources, strict=True):
        interner = interners.get(column.name)
        if interner is not None and interner.altered and source is not None:
            altered = interner.altered
            found.update(altered[v] for v in raw[source] if v in altered)
    return found


def raw_columns(spec: TableSpec, flat: list[Any]) -> list[list[Any]]:
    """A flat list of values (rows laid end to end, as the hot path appends them) as one list per raw column."""
    width = spec.raw_width
    return [flat[i::width] for i in range(width)]


def _numbers(values: Sequence[Any], column: Column) -> array[Any]:
    code = KINDS[column.kind][0]
    if isinstance(values, array) and values.typecode == code:  # the C recorder's columns (pipeline/_record.c)
        return values
    if column.nullable and None in values:
        sentinel = NULL_VALUE[code]
        if values.count(None) == len(values):  # the common case (no request id): no Python loop
            return array(code, [sentinel]) * len(values)
        values = [sentinel if v is None else v for v in values]
    # A wrong type (None in a required column, a string) raises TypeError, a value out of range OverflowError.
    out = array(code, values)
    if code == "B" and (len(out) and max(out) > 1):
        out = array("B", map(bool, out))
    return out


def to_chunk(spec: TableSpec, flat: list[Any], interners: dict[str, Interner]) -> Chunk:
    """Convert a flat list of values (rows laid end to end, as the hot path appends them) to columns.

    Raises (TypeError, ValueError, OverflowError) if any row cannot be stored; the caller then converts the
    rows one by one to find the culprits.
    """
    width = spec.raw_width
    n = len(flat) // width
    if n > MAX_CHUNK_ROWS or n * width != len(flat):
        raise ValueError(f"a chunk holds at most {MAX_CHUNK_ROWS} whole rows of {width} values, got {len(flat)}")
    return columns_to_chunk(spec, n, raw_columns(spec, flat), interners)


def columns_to_chunk(spec: TableSpec, n: int, raw: list[Any], interners: dict[str, Interner]) -> Chunk:
    """``to_chunk`` of rows already split into raw columns (lists, or arrays of the stored type)."""
    if spec.prepare is not None:
        raw = spec.prepare(raw)
    arrays: list[array[Any]] = []
    sources = spec.sources or tuple(range(len(spec.columns)))
    for column, source in zip(spec.columns, sources, strict=True):
        if source is None:
            arrays.append(arrays[-1])  # derived from the previous column's ids (fingerprint_id)
        elif column.kind == "str" and isinstance(raw[source], array):
            arrays.append(raw[source])  # ids into this flush's dictionary already (the C recorder's rows)
        elif column.kind == "str":
            values = raw[source]
            if column.name == "fingerprint" and spec.dialect_source is not None:
                dialects = raw[spec.dialect_source]
                if dialects.count(None) != n:  # some rows named a dialect: the pair is what is interned
                    values = list(zip(values, dialects, strict=True))
            arrays.append(interners[column.name].encode(values))
        else:
            arrays.append(_numbers(raw[source], column))
    return Chunk(n, arrays)


def concat(chunks: Sequence[Chunk], spec: TableSpec) -> list[array[Any]]:
    """The chunks' columns end to end (a memcpy per chunk and column)."""
    arrays = [array(a.typecode) for a in chunks[0].arrays]  # a derived column keeps its source's ids
    for chunk in chunks:
        for out, part in zip(arrays, chunk.arrays, strict=True):
            out += part
    return arrays


def parquet_columns(data: TableData, pid: int, host: str) -> list[parquet.Column]:
    """A flush's table as Parquet columns, with the pid and host of the process that recorded it."""
    columns: list[parquet.Column] = []
    for column, values in zip(data.spec.columns, data.arrays, strict=True):
        code, physical, converted = KINDS[column.kind]
        defined = None
        if column.name == "fingerprint_id":
            ids: list[int] = [fingerprint_id(f) if f else 0 for f in data.dictionaries["fingerprint"]]
            columns.append(parquet.Column(column.name, parquet.INT64, values, dictionary=ids))
            continue
        if column.kind == "str":
            if column.nullable and 0 in values:
                defined = bytes(map(bool, values))
                values = array("I", filter(None, values))
            columns.append(parquet.Column(column.name, physical, values, converted,
                                          dictionary=data.dictionaries[column.name], defined=defined,
                                          nullable=column.nullable))
            continue
        if column.nullable:
            if code == "d":
                if any(v != v for v in values):  # NaN: missing
                    defined = bytes(v == v for v in values)
                    values = array("d", [v for v in values if v == v])
            elif NULL_VALUE[code] in values:
                missing = NULL_VALUE[code]
                defined = bytes(v != missing for v in values)
                values = array(code, [v for v in values if v != missing])
        if code == "h":  # INT32 on disk: widen each 2-byte value to 4 bytes
            values = _widen_to_int32(values)
        columns.append(parquet.Column(column.name, physical, values, converted, defined=defined,
                                      nullable=column.nullable))
    columns.append(parquet.Column("pid", parquet.INT32, array("i"), None, [pid], constant=True))
    columns.append(parquet.Column("host", parquet.BYTE_ARRAY, array("i"), parquet.UTF8, [host], constant=True))
    return columns


def _widen_to_int32(values: array[int]) -> array[int]:
    """int16 values as int32: for non-negative ones (HTTP statuses) by strided byte copies, in C."""
    if not values or min(values) < 0:
        return array("i", values)
    data = values.tobytes()
    out = bytearray(2 * len(data))  # the two high bytes of each value stay 0 (little-endian)
    out[0::4] = data[0::2]
    out[1::4] = data[1::2]
    return array("i", bytes(out))


def series_columns(rows: Sequence[tuple[int, str, str, str]]) -> list[parquet.Column]:
    """New series rows (series_id, name, kind, labels as JSON) as Parquet columns, plain strings as dictionaries."""
    columns = [parquet.Column("series_id", parquet.INT64, array("q", [r[0] for r in rows]))]
    for i, name in enumerate(("name", "kind", "labels"), start=1):
        values = [str(r[i]) for r in rows]
        columns.append(parquet.Column(name, parquet.BYTE_ARRAY, array("I", range(len(values))), parquet.UTF8,
                                      dictionary=values))
    return columns


def series_row(series_id: int, name: str, kind: str, labels: dict[str, str]) -> tuple[int, str, str, str]:
    return (series_id, name, kind, json.dumps(labels, sort_keys=True))


_fingerprints = FingerprintCache(maxsize=8192)


# Row layouts, in the order the hot path builds them.
REQUESTS = TableSpec("requests", (
    Column("ts", "ts"),
    Column("route", "str", non_empty=True),
    Column("method", "str", non_empty=True),
    Column("status", "i16", required=True),
    Column("duration_ms", "f64", required=True),
    Column("request_id", "i64"),
    Column("query_count", "i32", required=True),
))
# Recorded as (ts, sql, name, duration_ms, success, request_id, route, dialect): the SQL text (with its dialect)
# is interned as its fingerprint at compaction, before anything is written, so only fingerprints are ever stored.
QUERIES = TableSpec("queries", (
    Column("ts", "ts"),
    Column("fingerprint", "str", non_empty=True),
    Column("fingerprint_id", "i64", required=True),
    Column("name", "str"),
    Column("duration_ms", "f64", required=True),
    Column("success", "bool", required=True),
    Column("request_id", "i64"),
    Column("route", "str"),
), raw_columns=8, sources=(0, 1, None, 2, 3, 4, 5, 6), dialect_source=7)
POINTS = TableSpec("points", (
    Column("ts", "ts"),
    Column("series_id", "i64", required=True),
    Column("value", "f64", required=True),
))
PROCESS_SAMPLES = TableSpec("process_samples", (
    Column("ts", "ts"),
    Column("rss_bytes", "i64"),
    Column("vms_bytes", "i64"),
    Column("cpu_percent", "f64"),
    Column("num_threads", "i32"),
    Column("num_fds", "i32"),
    Column("gc_collections", "i64"),
    Column("uss_bytes", "i64"),
))

# An unhandled exception of a request, recorded as (ts, class, frames, message, route, request_id): stored as its
# signature, never its raw message nor a local variable (pipeline/exceptions.py).
EXCEPTIONS = TableSpec("exceptions", (
    Column("ts", "ts"),
    Column("route", "str"),
    Column("request_id", "i64"),
    Column("type", "str", non_empty=True),
    Column("module", "str", required=True),
    Column("function", "str", required=True),
    Column("line", "i32", required=True),
    Column("message", "str", required=True),
    Column("signature_id", "i64", required=True),
), raw_columns=6, prepare=exceptions.prepare)

SPECS: dict[str, TableSpec] = {s.name: s for s in (REQUESTS, QUERIES, POINTS, PROCESS_SAMPLES, EXCEPTIONS)}
# Every table a flush or a segment may carry; series first so points never refer to an unknown series.
TABLE_ORDER = ("series", "requests", "queries", "points", "process_samples", "exceptions")
