"""SQLAlchemy query tracking through engine events: ``stop = instrument(engine, monitor)``.

``before_cursor_execute`` notes the start on the execution context, ``after_cursor_execute`` records the
statement as succeeded, ``handle_error`` as failed (SQLAlchemy then raises as it would have). Only the
statement's fingerprint is stored, read with the SQL dialect SQLAlchemy names (``engine.dialect.name``:
postgresql, mysql, mariadb, sqlite, oracle, mssql, duckdb; any other is read the safe way). For an
``AsyncEngine``, instrument its ``sync_engine``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..fingerprint import resolve_dialect
from ..monitor import Monitor, default_monitor
from ._common import require

require("sqlalchemy", "SQLAlchemy", "sqlalchemy")

from sqlalchemy import event  # noqa: E402  # after require(), which explains a missing SQLAlchemy

__all__ = ["instrument"]

_START = "_duckpulse_start"  # attribute set on SQLAlchemy's per-execution context object


def instrument(engine: Any, monitor: Monitor | None = None) -> Callable[[], None]:
    """Time every statement ``engine`` (an Engine, or a Connection) runs; returns a function that stops it.

    ``monitor=None`` means ``pipeline.default_monitor()``, looked up now (``NoMonitorError`` without one).
    """
    mon = default_monitor() if monitor is None else monitor
    perf_counter = time.perf_counter
    dialect = resolve_dialect(getattr(getattr(engine, "dialect", None), "name", None))

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if context is not None:
            setattr(context, _START, perf_counter())

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        start = getattr(context, _START, None)
        if start is not None:
            setattr(context, _START, None)
            mon.track_query(statement, (perf_counter() - start) * 1000.0, True, dialect=dialect)

    def on_error(exception_context: Any) -> None:
        context = exception_context.execution_context
        start = getattr(context, _START, None)
        if start is not None and exception_context.statement is not None:
            setattr(context, _START, None)
            mon.track_query(exception_context.statement, (perf_counter() - start) * 1000.0, False,
                            dialect=dialect)

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", before), ("after_cursor_execute", after), ("handle_error", on_error)]
    for name, listener in listeners:
        event.listen(engine, name, listener)

    def stop() -> None:
        for name, listener in listeners:
            if event.contains(engine, name, listener):
                event.remove(engine, name, listener)

    return stop
