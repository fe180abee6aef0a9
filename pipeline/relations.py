"""Python columns as a DuckDB relation without pyarrow: a temporary table made from list parameters.

The owner passes small tables of its own (alert rules folded for a sweep, the states a sweep changed) to SQL
by name. Registering them needed pyarrow (~37 MB in the host app); instead each column travels as one list
parameter, and ``unnest`` of equal-length lists in one SELECT zips them back into rows. Only identifiers and
types known to the code are put into the statement's text; every value is a parameter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from .sqlfiles import quote_identifier

SQL_TYPES = ("INTEGER", "BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN")
# A table of columns: name -> (SQL type, the column's values in row order).
Columns = Mapping[str, tuple[str, Sequence[Any]]]


class Connection(Protocol):
    def execute(self, query: str, parameters: object = ...) -> Any: ...


@contextmanager
def temp_table(con: Connection, name: str, columns: Columns) -> Iterator[None]:
    """Hold ``columns`` as the temporary table ``name`` of ``con`` while the block runs."""
    select = []
    params: dict[str, list[Any]] = {}
    for i, (column, (sql_type, values)) in enumerate(columns.items()):
        if sql_type not in SQL_TYPES:
            raise ValueError(f"column {column!r}: type {sql_type!r} is not one of {SQL_TYPES}")
        select.append(f"unnest($c{i}::{sql_type}[]) AS {quote_identifier(column)}")
        params[f"c{i}"] = list(values)
    table = quote_identifier(name)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {', '.join(select)}", params)
    try:
        yield
    except BaseException:
        # In a transaction the failure aborted, DROP fails too (the rollback drops the table): keep the first error.
        with contextlib.suppress(Exception):
            con.execute(f"DROP TABLE IF EXISTS temp.{table}")
        raise
    con.execute(f"DROP TABLE IF EXISTS temp.{table}")
