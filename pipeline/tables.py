"""The buffered tables: how a recorded tuple becomes an Arrow column, for each table of sql/schema.sql.

The hot path appends plain tuples; ``to_batch`` turns a chunk of them into one Arrow record batch off the hot
path. Strings (routes, methods, fingerprints) become dictionary-encoded columns with 16-bit indices (a chunk
never holds more than ``MAX_CHUNK_ROWS`` rows, so the indices always fit), which is what keeps a buffered
request under 40 bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .fingerprint import FingerprintCache, fingerprint_id

MAX_CHUNK_ROWS = 32_767  # int16 dictionary indices must address every distinct value of a chunk
TIMESTAMP = pa.timestamp("us")
DICT_STRING = pa.dictionary(pa.int16(), pa.string())

Row = tuple[Any, ...]


ORIGIN_FIELDS = (pa.field("pid", pa.int32()), pa.field("host", DICT_STRING))


class EmptyValueError(ValueError):
    """A name that must not be empty (a route, a method, a fingerprint) is."""


@dataclass(frozen=True)
class Column:
    """One column of a buffered tuple: its name, its Arrow type and whether an empty string is refused."""

    name: str
    arrow_type: pa.DataType
    non_empty: bool = False
    # NOT NULL in the table: a missing value refuses its row here, before it could fail a whole batch in DuckDB.
    required: bool = False


@dataclass(frozen=True)
class TableSpec:
    """The tuple layout the hot path appends for one table, and the table it lands in."""

    name: str
    columns: tuple[Column, ...]
    # Turns the raw column sequences into the stored ones (queries: SQL text -> fingerprint); None: as is.
    prepare: Callable[[list[Sequence[Any]]], list[Sequence[Any]]] | None = None
    # Values per raw row when it differs from the stored columns (queries: the SQL text and its dialect become
    # the fingerprint and its id).
    raw_columns: int | None = None

    @property
    def raw_width(self) -> int:
        """How many values one recorded row appends to the raw list."""
        return self.raw_columns if self.raw_columns is not None else len(self.columns)

    @property
    def buffer_schema(self) -> pa.Schema:
        """The columns held while buffered: without pid and host, which are the same for every row."""
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])

    @property
    def schema(self) -> pa.Schema:
        """The columns written: the buffered ones plus the process they came from."""
        return pa.schema([*self.buffer_schema, *ORIGIN_FIELDS])


def _to_array(values: Sequence[Any], column: Column) -> pa.Array:
    if column.arrow_type == TIMESTAMP:
        seconds = pa.array(values, pa.float64())
        if seconds.null_count:
            raise TypeError(f"{column.name}: a timestamp is missing")
        micros = pc.multiply(seconds, 1_000_000.0).cast(pa.int64(), safe=False)
        return micros.cast(TIMESTAMP)
    if column.arrow_type == DICT_STRING:
        encoded = pa.array(values, pa.string()).dictionary_encode()
        if column.non_empty and (encoded.null_count or "" in encoded.dictionary.to_pylist()):
            raise EmptyValueError(f"{column.name} is empty or missing")
        return pa.DictionaryArray.from_arrays(encoded.indices.cast(pa.int16()), encoded.dictionary)
    array = pa.array(values, column.arrow_type)
    if column.required and array.null_count:
        raise ValueError(f"{column.name} is missing")
    return array


def to_batch(spec: TableSpec, rows: Sequence[Row], pid: int, host: str) -> pa.RecordBatch:
    """Convert tuples to one record batch with pid and host; raises like ``to_columns``."""
    batch = to_columns(spec, rows)
    n = batch.num_rows
    return pa.RecordBatch.from_arrays([*batch.columns, *_origin_arrays(n, pid, host)], schema=spec.schema)


def _origin_arrays(n: int, pid: int, host: str) -> list[pa.Array]:
    return [pa.array(np.full(n, pid, dtype=np.int32)),
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int16)), pa.array([host]))]


def with_origin(spec: TableSpec, table: pa.Table, pid: int, host: str) -> pa.Table:
    """Add the pid and host columns to buffered columns, at flush time (they cost nothing while buffered)."""
    origin = _origin_arrays(table.num_rows, pid, host)
    return pa.Table.from_arrays([*table.columns, *origin], schema=spec.schema)


def to_columns(spec: TableSpec, rows: Sequence[Row]) -> pa.RecordBatch:
    """Convert tuples to one buffered record batch; raises (TypeError, ValueError, pa.ArrowException) on a bad row."""
    width = spec.raw_width
    if any(len(row) != width for row in rows):
        raise ValueError(f"{spec.name}: a row does not have {width} values")
    # Column by column, never zip(*rows): zip keeps one iterator per row alive at once, thousands of GC-tracked
    # objects that survive into the oldest generation and set off full collections (~1 us per metric).
    return flat_to_columns(spec, [value for row in rows for value in row])


def flat_to_columns(spec: TableSpec, flat: list[Any]) -> pa.RecordBatch:
    """Convert a flat list of values (rows laid end to end, as the hot path appends them) to a record batch."""
    width = spec.raw_width
    n = len(flat) // width
    if n > MAX_CHUNK_ROWS or n * width != len(flat):
        raise ValueError(f"a chunk holds at most {MAX_CHUNK_ROWS} whole rows of {width} values, got {len(flat)}")
    columns: list[Sequence[Any]] = [flat[i::width] for i in range(width)]
    if spec.prepare is not None:
        columns = spec.prepare(columns)
    arrays = [_to_array(values, column) for values, column in zip(columns, spec.columns, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=spec.buffer_schema)


def warm_up() -> None:
    """Convert one row of every table now, so that pyarrow's lazy imports happen at start-up.

    pyarrow imports pandas (which registers an atexit hook) the first time it converts a list. If that first
    time were the final flush at interpreter exit, the import would fail ("can't register atexit after
    shutdown") and the last batch would be lost.
    """
    to_columns(REQUESTS, [(0.0, "/", "GET", 200, 0.0, None, 0)])


_fingerprints = FingerprintCache(maxsize=8192)


def _prepare_queries(columns: list[Sequence[Any]]) -> list[Sequence[Any]]:
    # The raw SQL text is replaced here, before anything is written: only fingerprints are ever stored.
    ts, sql, name, duration, success, request_id, route, dialects = columns
    get = _fingerprints.get
    # The dialect a caller or an integration named travels with each row (None: read the safe way).
    fps = [get(s, d) for s, d in zip(sql, dialects, strict=True)]
    ids = [fingerprint_id(f) for f in fps]
    return [ts, fps, ids, name, duration, success, request_id, route]


# Tuple layouts, in the order the hot path builds them.
REQUESTS = TableSpec("requests", (
    Column("ts", TIMESTAMP),
    Column("route", DICT_STRING, non_empty=True),
    Column("method", DICT_STRING, non_empty=True),
    Column("status", pa.int16(), required=True),
    Column("duration_ms", pa.float64(), required=True),
    Column("request_id", pa.int64()),
    Column("query_count", pa.int32(), required=True),
))
QUERIES = TableSpec("queries", (
    Column("ts", TIMESTAMP),
    Column("fingerprint", DICT_STRING, non_empty=True),
    Column("fingerprint_id", pa.int64()),
    Column("name", DICT_STRING),
    Column("duration_ms", pa.float64(), required=True),
    Column("success", pa.bool_(), required=True),
    Column("request_id", pa.int64()),
    Column("route", DICT_STRING),
), prepare=_prepare_queries, raw_columns=8)
POINTS = TableSpec("points", (
    Column("ts", TIMESTAMP),
    Column("series_id", pa.int64(), required=True),
    Column("value", pa.float64(), required=True),
))
PROCESS_SAMPLES = TableSpec("process_samples", (
    Column("ts", TIMESTAMP),
    Column("rss_bytes", pa.int64()),
    Column("vms_bytes", pa.int64()),
    Column("cpu_percent", pa.float64()),
    Column("num_threads", pa.int32()),
    Column("num_fds", pa.int32()),
    Column("gc_collections", pa.int64()),
    Column("uss_bytes", pa.int64()),
))
SERIES_SCHEMA = pa.schema([
    pa.field("series_id", pa.int64()), pa.field("name", pa.string()),
    pa.field("kind", pa.string()), pa.field("labels", pa.string()),
])

SPECS: dict[str, TableSpec] = {s.name: s for s in (REQUESTS, QUERIES, POINTS, PROCESS_SAMPLES)}
# Every table a flush or a segment may carry; series first so points never refer to an unknown series.
TABLE_ORDER = ("series", "requests", "queries", "points", "process_samples")
