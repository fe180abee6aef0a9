"""Python columns as a DuckDB relation without pyarrow: a temporary table made from a Parquet file.

The owner passes tables of its own (alert rules folded for a sweep, the states a sweep changed: 31,250 rows in
bench_sweep) to SQL by name. Registering them needed pyarrow (~37 MB in the host app); list parameters cost
~1 us per value to convert. Instead the columns are written as one Parquet file (``pipeline.parquet``, the
segments' writer) and read with ``read_parquet`` into a temporary table. Only identifiers known to the code are
put into the statement's text; the file's path is a parameter.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from array import array
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from . import parquet
from .sqlfiles import quote_identifier

SQL_TYPES = ("INTEGER", "BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN")
# A table of columns: name -> (SQL type, the column's values in row order).
Columns = Mapping[str, tuple[str, Sequence[Any]]]


class Connection(Protocol):
    def execute(self, query: str, parameters: object = ...) -> Any: ...


# SQL type -> (Parquet physical type, array typecode of its values)
_PHYSICAL = {"INTEGER": (parquet.INT32, "i"), "BIGINT": (parquet.INT64, "q"), "DOUBLE": (parquet.DOUBLE, "d"),
             "BOOLEAN": (parquet.BOOLEAN, "B"), "VARCHAR": (parquet.BYTE_ARRAY, "I")}


def _column(name: str, sql_type: str, values: Sequence[Any]) -> parquet.Column:
    physical, code = _PHYSICAL[sql_type]
    # The common case (no None) in C: the list as it is, the dictionary's ids by map().
    present = values if None not in values else [v for v in values if v is not None]
    defined = None if len(present) == len(values) else bytes(v is not None for v in values)
    if sql_type == "VARCHAR":
        dictionary = list(dict.fromkeys(present))
        index = {v: i for i, v in enumerate(dictionary)}
        return parquet.Column(name, physical, array("I", map(index.__getitem__, present)), parquet.UTF8,
                              dictionary=[str(v) for v in dictionary], defined=defined, nullable=True)
    data = array(code, map(bool, present) if sql_type == "BOOLEAN" else present)
    return parquet.Column(name, physical, data, defined=defined, nullable=True)


def encode(columns: Columns) -> bytes:
    """``columns`` as the bytes of a Parquet file, for ``temp_table`` (a caller that passes the same table again
    and again, such as a sweep's folded rules, encodes it once)."""
    for column, (sql_type, _) in columns.items():
        if sql_type not in SQL_TYPES:
            raise ValueError(f"column {column!r}: type {sql_type!r} is not one of {SQL_TYPES}")
    rows = len(next(iter(columns.values()))[1]) if columns else 0
    out = io.BytesIO()
    parquet.write(out, [_column(c, t, v) for c, (t, v) in columns.items()], rows, {})
    return out.getvalue()


@contextmanager
def temp_table(con: Connection, name: str, columns: Columns | bytes) -> Iterator[None]:
    """Hold ``columns`` (or their ``encode``-d bytes) as the temporary table ``name`` of ``con`` while the block
    runs."""
    data = columns if isinstance(columns, bytes) else encode(columns)
    fd, path = tempfile.mkstemp(prefix="duckpulse-relation-", suffix=".parquet")
    table = quote_identifier(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_parquet($path)", {"path": path})
    finally:
        os.unlink(path)
    try:
        yield
    except BaseException:
        # In a transaction the failure aborted, DROP fails too (the rollback drops the table): keep the first error.
        with contextlib.suppress(Exception):
            con.execute(f"DROP TABLE IF EXISTS temp.{table}")
        raise
    con.execute(f"DROP TABLE IF EXISTS temp.{table}")
