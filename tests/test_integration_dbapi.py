"""Query tracking: instrumented sqlite3 and duckdb connections in real use, SQLAlchemy events, time_query."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pytest

import pipeline.open_monitors
from pipeline import Monitor, NoMonitorError
from pipeline.context import RequestContext, current_request
from pipeline.fingerprint import fingerprint
from pipeline.integrations.dbapi import InstrumentedConnection, InstrumentedCursor, instrument


def queries(monitor: Monitor) -> list[tuple[Any, ...]]:
    monitor.flush()
    assert monitor.store is not None
    return monitor.store.fetchall(
        "SELECT fingerprint, success, name, request_id, route, duration_ms FROM queries ORDER BY rowid")


def fingerprints(monitor: Monitor) -> list[tuple[str, bool]]:
    return [(q[0], q[1]) for q in queries(monitor)]


def test_sqlite3_connection_in_real_use(tmp_path: Path, monitor: Monitor) -> None:
    """Every sqlite3 statement (script, executemany, execute on connection and cursor) is timed, once each."""
    conn = instrument(sqlite3.connect(tmp_path / "app.sqlite"), monitor)
    conn.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, score REAL);")
    with conn:  # commits, and hands back the wrapper
        conn.executemany("INSERT INTO users VALUES (?, ?, ?)", [(1, "a@x.io", 1.5), (2, "b@x.io", 2.5)])
        conn.execute("INSERT INTO users VALUES (3, 'secret@example.com', -4.25)")
    cur = conn.cursor()
    assert isinstance(cur, InstrumentedCursor) and cur.connection is conn
    cur.execute("SELECT email FROM users WHERE id = ?", (3,))
    assert cur.fetchone() == ("secret@example.com",)
    assert [row for row in conn.execute("SELECT id FROM users ORDER BY id")] == [(1,), (2,), (3,)]
    conn.row_factory = sqlite3.Row  # attribute writes reach the driver's connection
    assert conn.execute("SELECT email FROM users WHERE id = 1").fetchone()["email"] == "a@x.io"
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        conn.execute("SELECT * FROM missing WHERE id = 7")
    conn.close()

    assert fingerprints(monitor) == [
        (fingerprint("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, score REAL);"), True),
        (fingerprint("INSERT INTO users VALUES (?, ?, ?)"), True),
        (fingerprint("INSERT INTO users VALUES (3, 'x', 1.0)"), True),
        (fingerprint("SELECT email FROM users WHERE id = ?"), True),
        (fingerprint("SELECT id FROM users ORDER BY id"), True),
        (fingerprint("SELECT email FROM users WHERE id = 1"), True),
        (fingerprint("SELECT * FROM missing WHERE id = 7"), False),
    ]
    stored = " ".join(q[0] for q in queries(monitor))
    for value in ("secret@example.com", "-4.25", "4.25", "7"):
        assert value not in stored
    assert all(q[2] is None and q[3] is None and q[4] is None and q[5] >= 0 for q in queries(monitor))


def test_duckdb_connection_in_real_use(tmp_path: Path, monitor: Monitor) -> None:
    """duckdb's chained execute().fetchall() and its cursors are timed; a failure propagates as duckdb raised it."""
    conn = instrument(duckdb.connect(str(tmp_path / "app.duckdb")), monitor)
    assert conn.execute("CREATE TABLE t (id INTEGER, label VARCHAR)") is conn  # chaining keeps the wrapper
    conn.executemany("INSERT INTO t VALUES (?, ?)", [[1, "one"], [2, "two"]])
    assert conn.execute("SELECT label FROM t WHERE id = $1", [2]).fetchall() == [("two",)]
    cur = conn.cursor()
    assert cur.execute("SELECT count(*) FROM t WHERE label <> 'zzz'").fetchone() == (2,)
    with pytest.raises(duckdb.CatalogException):
        cur.execute("SELECT * FROM nope")
    cur.close()
    conn.close()
    assert fingerprints(monitor) == [
        (fingerprint("CREATE TABLE t (id INTEGER, label VARCHAR)", "duckdb"), True),
        (fingerprint("INSERT INTO t VALUES (?, ?)", "duckdb"), True),
        (fingerprint("SELECT label FROM t WHERE id = $1", "duckdb"), True),
        (fingerprint("SELECT count(*) FROM t WHERE label <> 'x'", "duckdb"), True),
        (fingerprint("SELECT * FROM nope", "duckdb"), False),
    ]
    assert "zzz" not in " ".join(q[0] for q in queries(monitor))


def test_queries_inside_a_request_carry_it_and_are_counted(tmp_path: Path, monitor: Monitor) -> None:
    """With a request context open, each query gets its id and route, and the context counts them."""
    conn = instrument(sqlite3.connect(":memory:"), monitor)
    ctx = RequestContext(41, "/users/<id>")
    token = current_request.set(ctx)
    try:
        conn.execute("SELECT 1")
        conn.cursor().execute("SELECT 2")
    finally:
        current_request.reset(token)
    conn.execute("SELECT 3")
    assert ctx.query_count == 2
    assert [(q[3], q[4]) for q in queries(monitor)] == [(41, "/users/<id>"), (41, "/users/<id>"), (None, None)]


def test_default_monitor_and_a_clear_error_without_one(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """instrument(conn) records into the default monitor; with no monitor open it raises NoMonitorError."""
    conn = instrument(sqlite3.connect(":memory:"))
    conn.execute("SELECT 1")
    assert len(queries(monitor)) == 1
    assert isinstance(instrument(conn, monitor), InstrumentedConnection)  # re-wrapping does not nest
    assert instrument(conn, monitor).__wrapped__ is conn.__wrapped__
    monkeypatch.setattr(pipeline.open_monitors, "_open", [])
    with pytest.raises(NoMonitorError, match="Monitor"):
        instrument(sqlite3.connect(":memory:"))


class _FakePsycopgCursor:
    """The parts of a psycopg cursor that a wrapper must not break: a context manager, composed SQL."""

    def __init__(self) -> None:
        self.closed = False
        self.executed: list[str] = []

    def __enter__(self) -> _FakePsycopgCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def execute(self, query: Any, params: Any = None) -> None:  # psycopg returns None (psycopg 2)
        self.executed.append(query.as_string(None) if hasattr(query, "as_string") else query)

    def callproc(self, name: str, params: Any = ()) -> Any:
        return params


class _Composed:
    """Like psycopg.sql.Composed: SQL text rendered by as_string(context)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def as_string(self, context: Any) -> str:
        return self.text


class _FakePsycopgConnection:
    def __init__(self) -> None:
        self.cursors: list[_FakePsycopgCursor] = []
        self.autocommit = False

    def cursor(self) -> _FakePsycopgCursor:
        self.cursors.append(_FakePsycopgCursor())
        return self.cursors[-1]


def test_psycopg_shapes_pass_through(monitor: Monitor) -> None:
    """Cursor context managers, composed SQL, callproc and attribute writes work as psycopg code expects."""
    raw = _FakePsycopgConnection()
    conn = instrument(raw, monitor)
    with conn.cursor() as cur:
        assert isinstance(cur, InstrumentedCursor)
        assert cur.execute(_Composed("SELECT * FROM t WHERE a = %s"), (1,)) is None
        cur.execute("UPDATE t SET a = %(a)s", {"a": 2})
        assert cur.callproc("refresh", (1,)) == (1,)
    assert raw.cursors[0].closed
    conn.autocommit = True
    assert raw.autocommit is True
    with pytest.raises(AttributeError):
        conn.execute("SELECT 1")  # psycopg 2 has no connection.execute: nothing is timed
    assert fingerprints(monitor) == [
        (fingerprint("SELECT * FROM t WHERE a = %s"), True),
        (fingerprint("UPDATE t SET a = %(a)s"), True),
        (fingerprint("CALL refresh"), True),
    ]


def test_sqlalchemy_engine_events(tmp_path: Path, monitor: Monitor) -> None:
    """Statements run through a SQLAlchemy engine are recorded; failures with success=False; stop() detaches."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from pipeline.integrations.sqlalchemy import instrument as instrument_engine

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'sa.sqlite'}")
    stop = instrument_engine(engine, monitor)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)"))
        conn.execute(sqlalchemy.text("INSERT INTO items (id, name) VALUES (:id, :name)"),
                     [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        assert conn.execute(sqlalchemy.text("SELECT name FROM items WHERE id = 2")).scalar() == "b"
    with engine.connect() as conn, pytest.raises(sqlalchemy.exc.OperationalError):
        conn.execute(sqlalchemy.text("SELECT * FROM nothing_here"))
    stop()
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
    engine.dispose()
    recorded = fingerprints(monitor)
    assert (fingerprint("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)"), True) in recorded
    assert (fingerprint("INSERT INTO items (id, name) VALUES (?, ?)"), True) in recorded
    assert (fingerprint("SELECT name FROM items WHERE id = 2"), True) in recorded
    assert (fingerprint("SELECT * FROM nothing_here"), False) in recorded
    assert fingerprint("SELECT 1") not in {fp for fp, _ in recorded}


def test_time_query_as_context_manager_and_decorator(monitor: Monitor) -> None:
    """time_query records a block or a sync function under its name; an exception records success=False."""
    with monitor.time_query("load_user"):
        pass
    with pytest.raises(ValueError, match="bad"), monitor.time_query("save_user", "UPDATE users SET a = 1"):
        raise ValueError("bad")

    @monitor.time_query("report")
    def report(n: int) -> int:
        return n * 2

    assert report(21) == 42
    assert report.__name__ == "report"
    rows = queries(monitor)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (fingerprint("load_user"), True, "load_user"),
        (fingerprint("UPDATE users SET a = 1"), False, "save_user"),
        (fingerprint("report"), True, "report"),
    ]
    assert "1" not in rows[1][0]


def test_time_query_decorates_async_functions(monitor: Monitor) -> None:
    """An async function decorated with time_query is timed across its awaits; failures too."""

    @monitor.time_query("fetch_async")
    async def fetch(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise LookupError("missing")
        return "ok"

    assert asyncio.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(False)) == "ok"
    with pytest.raises(LookupError):
        asyncio.run(fetch(True))
    assert [(r[1], r[2]) for r in queries(monitor)] == [(True, "fetch_async"), (False, "fetch_async")]


def test_time_query_in_a_request_is_tied_to_it(monitor: Monitor) -> None:
    """A timed block inside a request carries the request's id and route."""
    token = current_request.set(RequestContext(7, "/reports"))
    try:
        with monitor.time_query("build_report"):
            pass
    finally:
        current_request.reset(token)
    [row] = queries(monitor)
    assert (row[2], row[3], row[4]) == ("build_report", 7, "/reports")
