"""DB-API 2.0 (PEP 249) query tracking: ``conn = instrument(sqlite3.connect(path))``.

The returned connection behaves like the one it wraps (every other attribute passes through), but every
``execute``, ``executemany``, ``executescript`` (sqlite3) and ``callproc`` of its cursors, and the
``execute`` shortcuts some drivers put on the connection itself (sqlite3, duckdb, psycopg 3), is timed and
recorded with ``Monitor.track_query``: only the statement's fingerprint is stored, never its values. A
failing statement is recorded with ``success=False`` and its exception propagates unchanged. Inside a request
opened by a web integration the query is tied to that request.

Works with synchronous drivers: sqlite3, duckdb, psycopg (2 and 3), and any other that follows PEP 249.
Code that checks ``isinstance(conn, sqlite3.Connection)`` sees the wrapper, not the driver's class.
DuckDB's relational API (``conn.sql(...)``, lazily executed) is not timed.

The SQL dialect, which decides how the fingerprint reads strings, comments and quotes, is named from the
module the connection's class comes from (sqlite3, duckdb, psycopg/psycopg2, pymysql/MySQLdb/mysql.connector,
oracledb/cx_Oracle, pymssql), from the DBMS pyodbc reports, or by ``instrument(conn, dialect=...)``; a driver
not listed is read the safe way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ..fingerprint import DIALECTS, resolve_dialect
from ..monitor import Monitor, default_monitor

__all__ = ["InstrumentedConnection", "InstrumentedCursor", "detect_dialect", "instrument"]

_perf_counter = time.perf_counter


# The top-level module of a driver's connection class -> the SQL dialect its statements are written in.
_DRIVER_DIALECTS = {
    "sqlite3": "sqlite", "_sqlite3": "sqlite", "duckdb": "duckdb", "_duckdb": "duckdb",
    "psycopg": "postgres", "psycopg2": "postgres", "pg8000": "postgres",
    "pymysql": "mysql", "MySQLdb": "mysql", "mysql": "mysql", "mariadb": "mysql",
    "oracledb": "oracle", "cx_Oracle": "oracle", "pymssql": "mssql", "_mssql": "mssql",
}
# What pyodbc's SQL_DBMS_NAME starts with -> the dialect (pyodbc itself talks to any ODBC database).
_ODBC_DIALECTS = (("microsoft sql server", "mssql"), ("postgresql", "postgres"), ("mysql", "mysql"),
                  ("mariadb", "mysql"), ("oracle", "oracle"), ("sqlite", "sqlite"), ("duckdb", "duckdb"))
_SQL_DBMS_NAME = 17  # the ODBC info type, as pyodbc.SQL_DBMS_NAME


def detect_dialect(connection: Any) -> str | None:
    """The SQL dialect of a DB-API connection, from its driver's module (and, for pyodbc, the DBMS it reports).

    None when the driver is not known: its statements are then fingerprinted the safe way.
    """
    root = (type(connection).__module__ or "").partition(".")[0]
    if root == "pyodbc":
        try:
            dbms = str(connection.getinfo(_SQL_DBMS_NAME)).lower()
        except Exception:  # a closed connection, or a driver manager that cannot tell: the safe reading
            return None
        return next((dialect for prefix, dialect in _ODBC_DIALECTS if dbms.startswith(prefix)), None)
    return _DRIVER_DIALECTS.get(root)


def instrument(connection: Any, monitor: Monitor | None = None, *,
               dialect: str | None = None) -> InstrumentedConnection:
    """Wrap a DB-API connection so that every statement it runs is timed into ``monitor``.

    ``monitor=None`` means ``pipeline.default_monitor()``, looked up now: without an open Monitor this raises
    ``NoMonitorError``. Wrapping an instrumented connection again only changes its monitor. ``dialect`` names
    the SQL dialect when the driver does not tell it (see ``detect_dialect``); a name not known raises.
    """
    if monitor is None:
        monitor = default_monitor()
    if isinstance(connection, InstrumentedConnection):
        connection = connection.__wrapped__
    if dialect is None:
        dialect = detect_dialect(connection)
    elif resolve_dialect(dialect) is None:
        raise ValueError(f"instrument: unknown SQL dialect {dialect!r}; use one of {sorted(DIALECTS)}, or leave "
                         "it out to detect it from the driver")
    return InstrumentedConnection(connection, monitor, resolve_dialect(dialect))


def _sql_text(operation: Any, connection: Any) -> str:
    if isinstance(operation, str):
        return operation
    if isinstance(operation, bytes | bytearray):
        return bytes(operation).decode("utf-8", "replace")
    as_string = getattr(operation, "as_string", None)  # psycopg's sql.SQL / sql.Composed
    if as_string is not None:
        try:
            return str(as_string(connection))
        except Exception:  # a composable that cannot render without more context: keep its repr's shape
            pass
    return str(operation)


def _timed(monitor: Monitor, connection: Any, dialect: str | None, method: Callable[..., Any], operation: Any,
           args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    start = _perf_counter()
    try:
        result = method(operation, *args, **kwargs)
    except BaseException:
        monitor.track_query(_sql_text(operation, connection), (_perf_counter() - start) * 1000.0, False,
                            dialect=dialect)
        raise
    monitor.track_query(_sql_text(operation, connection), (_perf_counter() - start) * 1000.0, True,
                        dialect=dialect)
    return result


class _Proxy:
    """Attribute passthrough to the wrapped driver object (reads and writes, e.g. ``row_factory``)."""

    __slots__ = ("__wrapped__", "_dialect", "_monitor")
    __wrapped__: Any
    _monitor: Monitor
    _dialect: str | None

    def __init__(self, wrapped: Any, monitor: Monitor, dialect: str | None = None) -> None:
        object.__setattr__(self, "__wrapped__", wrapped)
        object.__setattr__(self, "_monitor", monitor)
        object.__setattr__(self, "_dialect", dialect)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__wrapped__, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__wrapped__, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.__wrapped__, name)

    def __repr__(self) -> str:
        return f"<duckpulse {type(self).__name__} of {self.__wrapped__!r}>"

    def __enter__(self) -> Any:
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is None:
            raise TypeError(f"{type(self.__wrapped__).__name__!r} object does not support the context manager "
                            "protocol")
        result = enter()
        return self if result is self.__wrapped__ else result

    def __exit__(self, *exc: Any) -> Any:
        return self.__wrapped__.__exit__(*exc)


class InstrumentedCursor(_Proxy):
    """A DB-API cursor whose statements are timed."""

    __slots__ = ("_connection",)
    _connection: InstrumentedConnection

    def __init__(self, cursor: Any, monitor: Monitor, connection: InstrumentedConnection) -> None:
        super().__init__(cursor, monitor, connection._dialect)
        object.__setattr__(self, "_connection", connection)

    @property
    def connection(self) -> InstrumentedConnection:
        """The instrumented connection this cursor came from (PEP 249's optional extension)."""
        return self._connection

    def _run(self, name: str, operation: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        cursor = self.__wrapped__
        result = _timed(self._monitor, self._connection.__wrapped__, self._dialect, getattr(cursor, name), operation,
                        args, kwargs)
        return self if result is cursor else result  # sqlite3 and duckdb return the cursor itself

    def execute(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        return self._run("execute", operation, args, kwargs)

    def executemany(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        return self._run("executemany", operation, args, kwargs)

    def executescript(self, script: Any, *args: Any, **kwargs: Any) -> Any:
        return self._run("executescript", script, args, kwargs)

    def callproc(self, procname: str, *args: Any, **kwargs: Any) -> Any:
        cursor = self.__wrapped__
        start = _perf_counter()
        success = False
        try:
            result = cursor.callproc(procname, *args, **kwargs)
            success = True
        finally:
            self._monitor.track_query(f"CALL {procname}", (_perf_counter() - start) * 1000.0, success,
                                      dialect=self._dialect)
        return self if result is cursor else result

    def __iter__(self) -> Iterator[Any]:
        return iter(self.__wrapped__)


class InstrumentedConnection(_Proxy):
    """A DB-API connection whose cursors, and ``execute`` shortcuts, time every statement."""

    __slots__ = ()

    def cursor(self, *args: Any, **kwargs: Any) -> InstrumentedCursor:
        return InstrumentedCursor(self.__wrapped__.cursor(*args, **kwargs), self._monitor, self)

    @property
    def dialect(self) -> str | None:
        """The SQL dialect its statements are fingerprinted with (None: the safe reading)."""
        return self._dialect

    def _run(self, name: str, operation: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        connection = self.__wrapped__
        method = getattr(connection, name)  # AttributeError, untimed, for a driver without the shortcut
        result = _timed(self._monitor, connection, self._dialect, method, operation, args, kwargs)
        if result is connection:  # duckdb's execute returns the connection, to chain .fetchall()
            return self
        if hasattr(result, "fetchone"):  # sqlite3 and psycopg return a new cursor: keep timing its statements
            return InstrumentedCursor(result, self._monitor, self)
        return result

    def execute(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        return self._run("execute", operation, args, kwargs)

    def executemany(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        return self._run("executemany", operation, args, kwargs)

    def executescript(self, script: Any, *args: Any, **kwargs: Any) -> Any:
        return self._run("executescript", script, args, kwargs)
