"""The dialect travels from the driver, the engine or the caller to the stored fingerprint."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import Monitor
from pipeline.fingerprint import fingerprint, resolve_dialect
from pipeline.integrations.dbapi import detect_dialect, instrument

# A statement each dialect reads its own way: PostgreSQL, DuckDB and SQLite end the string at the second quote
# (a backslash is an ordinary character there), MySQL reads \' as an escaped quote, and with no dialect the
# string's end is uncertain, so the rest of the statement is one value.
BACKSLASH = "SELECT 'C:\\' AS path, 1 AS n"


def stored(monitor: Monitor) -> list[str]:
    monitor.flush()
    assert monitor.store is not None
    return [r[0] for r in monitor.store.fetchall("SELECT fingerprint FROM queries ORDER BY rowid")]


def test_track_query_reads_the_sql_in_the_dialect_given(monitor: Monitor) -> None:
    """track_query(dialect=...) decides the fingerprint; without one the safe reading applies."""
    monitor.track_query(BACKSLASH, 1.0, dialect="sqlite")
    monitor.track_query(BACKSLASH, 1.0, dialect="postgresql")
    monitor.track_query(BACKSLASH, 1.0)
    monitor.track_query(BACKSLASH, 1.0, dialect="no such dialect")
    monitor.track_query(BACKSLASH, 1.0, dialect=7)  # type: ignore[arg-type]  # a wrong type is read safely
    assert stored(monitor) == ["SELECT ? AS path, ? AS n", "SELECT ? AS path, ? AS n"] + ["SELECT ?"] * 3


def test_time_query_takes_a_dialect_and_refuses_an_unknown_one(monitor: Monitor) -> None:
    """time_query passes its dialect on; a misspelt dialect is a clear error at once, not a silent fallback."""
    with monitor.time_query("load", sql="SELECT * FROM t WHERE a = 1 # note", dialect="mysql"):
        pass

    @monitor.time_query("dollar", sql="SELECT $1, $$body$$", dialect="duckdb")
    def run() -> int:
        return 1

    assert run() == 1
    with pytest.raises(ValueError, match=r"unknown SQL dialect 'postgress'.*'postgres'"):
        monitor.time_query("x", dialect="postgress")
    assert stored(monitor) == ["SELECT * FROM t WHERE a = ?", "SELECT $1, ?"]


def test_sqlite3_and_duckdb_connections_name_their_dialect(tmp_path: Path, monitor: Monitor) -> None:
    """Real sqlite3 and duckdb connections are detected, and their statements fingerprinted accordingly."""
    lite = instrument(sqlite3.connect(tmp_path / "a.sqlite"), monitor)
    duck = instrument(duckdb.connect(str(tmp_path / "a.duckdb")), monitor)
    assert (lite.dialect, duck.dialect) == ("sqlite", "duckdb")
    assert lite.execute(BACKSLASH).fetchall() == [("C:\\", 1)]
    assert duck.execute(BACKSLASH).fetchall() == [("C:\\", 1)]
    assert duck.execute("SELECT $1::INT + 1", [41]).fetchall() == [(42,)]
    lite.close()
    duck.close()
    assert stored(monitor) == ["SELECT ? AS path, ? AS n", "SELECT ? AS path, ? AS n", "SELECT $1::INT + ?"]


def _connection_of(module: str, **attributes: Any) -> Any:
    cls = type("Connection", (), attributes)
    cls.__module__ = module
    return cls()


@pytest.mark.parametrize(("module", "dialect"), [
    ("psycopg", "postgres"), ("psycopg2.extensions", "postgres"), ("pymysql.connections", "mysql"),
    ("MySQLdb.connections", "mysql"), ("mysql.connector.connection_cext", "mysql"), ("oracledb.connection", "oracle"),
    ("pymssql._pymssql", "mssql"), ("some_other_driver", None),
])
def test_driver_modules_name_the_dialect(module: str, dialect: str | None) -> None:
    """The module a connection class comes from names its dialect; an unknown driver gets the safe reading."""
    assert detect_dialect(_connection_of(module)) == dialect


@pytest.mark.parametrize(("dbms", "dialect"), [
    ("Microsoft SQL Server", "mssql"), ("PostgreSQL", "postgres"), ("MySQL", "mysql"), ("Oracle", "oracle"),
    ("ACCESS", None),
])
def test_pyodbc_connections_ask_the_dbms(dbms: str, dialect: str | None) -> None:
    """pyodbc talks to any database: the DBMS name it reports decides, and a failing getinfo reads safely."""
    assert detect_dialect(_connection_of("pyodbc", getinfo=lambda self, info: dbms)) == dialect

    def broken(self: object, info: int) -> str:
        raise RuntimeError("connection closed")

    assert detect_dialect(_connection_of("pyodbc", getinfo=broken)) is None


def test_instrument_takes_an_explicit_dialect(tmp_path: Path, monitor: Monitor) -> None:
    """instrument(conn, dialect=...) overrides detection, by any alias; a name not known raises."""
    conn = instrument(sqlite3.connect(tmp_path / "b.sqlite"), monitor, dialect="PostgreSQL")
    assert conn.dialect == "postgres"
    with pytest.raises(ValueError, match="unknown SQL dialect 'sqlite4'"):
        instrument(sqlite3.connect(tmp_path / "b.sqlite"), monitor, dialect="sqlite4")
    conn.close()


def test_sqlalchemy_engine_names_its_dialect(tmp_path: Path, monitor: Monitor) -> None:
    """A SQLAlchemy engine's dialect name decides how its statements are read."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from pipeline.integrations.sqlalchemy import instrument as instrument_engine

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'sa.sqlite'}")
    stop = instrument_engine(engine, monitor)
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text(BACKSLASH)).all() == [("C:\\", 1)]
    stop()
    engine.dispose()
    assert stored(monitor) == ["SELECT ? AS path, ? AS n"]


@pytest.mark.parametrize(("name", "family"), [
    ("postgresql", "postgres"), ("PostgreSQL", "postgres"), ("mariadb", "mysql"), ("sqlite3", "sqlite"),
    ("SQL Server", "mssql"), ("cx-oracle", "oracle"), ("duckdb", "duckdb"), ("db2", None), (None, None),
])
def test_dialect_names_resolve_to_their_family(name: str | None, family: str | None) -> None:
    """Driver, SQLAlchemy and everyday names all reach one family; anything else is None (the safe reading)."""
    assert resolve_dialect(name) == family
    assert fingerprint(BACKSLASH, name) == ("SELECT ?" if family in (None, "mysql") else "SELECT ? AS path, ? AS n")
