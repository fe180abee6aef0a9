"""The pure-Python Parquet writer: what it writes is read back exactly by DuckDB and by pyarrow, and the owner
takes a segment's table, columns and row count from the file itself."""

from __future__ import annotations

import io
from array import array
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline import Monitor, parquet
from pipeline.spool import ready_segments


def _file(tmp_path: Path, rows: int, distinct: int) -> tuple[Path, list[tuple[object, ...]]]:
    """A file with every kind of column the segments use; returns it and the rows it should hold."""
    strings = [f"/route/{i}" for i in range(distinct)]
    ids = array("I", [i % distinct for i in range(rows)])
    maybe = [None if i % 3 == 0 else i * 7 for i in range(rows)]
    names = [None if i % 4 else "load_user" for i in range(rows)]
    columns = [
        parquet.Column("ts", parquet.DOUBLE, array("d", [1.7e9 + i / 8 for i in range(rows)])),
        parquet.Column("route", parquet.BYTE_ARRAY, ids, parquet.UTF8, strings),
        parquet.Column("status", parquet.INT32, array("i", [200 + i % 3 for i in range(rows)]), parquet.INT_16),
        parquet.Column("request_id", parquet.INT64, array("q", [v for v in maybe if v is not None]),
                       defined=bytes(v is not None for v in maybe), nullable=True),
        parquet.Column("success", parquet.BOOLEAN, array("B", [i % 5 != 0 for i in range(rows)])),
        parquet.Column("name", parquet.BYTE_ARRAY, array("I", [1 for v in names if v]), parquet.UTF8,
                       ["", "load_user"], defined=bytes(v is not None for v in names), nullable=True),
        parquet.Column("host", parquet.BYTE_ARRAY, array("I"), parquet.UTF8, ["höst"], constant=True),
    ]
    path = tmp_path / f"f{rows}-{distinct}.parquet"
    with open(path, "wb") as f:
        parquet.write(f, columns, rows, {"duckpulse.table": "requests"})
    expected = [(1.7e9 + i / 8, strings[i % distinct], 200 + i % 3, maybe[i], i % 5 != 0, names[i], "höst")
                for i in range(rows)]
    return path, expected


@pytest.mark.parametrize(("rows", "distinct"), [(1, 1), (13, 3), (1000, 300), (70_000, 66_000)])
def test_duckdb_and_pyarrow_read_back_every_value(tmp_path: Path, rows: int, distinct: int) -> None:
    """Nulls, booleans, dictionaries of 8-, 16- and 32-bit ids, a constant column and odd row counts (not a
    multiple of 8) come back exactly, in DuckDB and in pyarrow, with the types the file declares."""
    path, expected = _file(tmp_path, rows, distinct)
    con = duckdb.connect()
    assert con.execute("SELECT * FROM read_parquet($f)", {"f": str(path)}).fetchall() == expected
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet($f))",
                             {"f": str(path)}).fetchall())
    assert types == {"ts": "DOUBLE", "route": "VARCHAR", "status": "SMALLINT", "request_id": "BIGINT",
                     "success": "BOOLEAN", "name": "VARCHAR", "host": "VARCHAR"}
    table = pq.read_table(path)
    assert [tuple(r.values()) for r in table.to_pylist()] == expected
    assert table.schema.metadata == {b"duckpulse.table": b"requests"}


def test_gzip_pages_read_back_the_same(tmp_path: Path) -> None:
    """GZIP pages (zlib) hold the same values in fewer bytes than the plain ones."""
    columns = [parquet.Column("v", parquet.INT64, array("q", range(5000)))]
    out = io.BytesIO()
    size = parquet.write(out, columns, 5000, {}, parquet.GZIP)
    assert size == len(out.getvalue()) < 5000 * 8
    gz = tmp_path / "gz.parquet"
    gz.write_bytes(out.getvalue())
    assert duckdb.sql(f"SELECT sum(v), count(*) FROM '{gz}'").fetchall() == [(sum(range(5000)), 5000)]


def test_a_segment_whose_footer_names_another_table_is_quarantined_not_loaded(tmp_path: Path) -> None:
    """The owner believes the file, not its name: a segment named as requests whose footer says points (or
    whose columns differ) is moved to quarantine, counted, and the queue goes on."""
    spool = tmp_path / "spool"
    with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None) as producer:
        producer.track_request("/a", "GET", 200, 1.0)
        producer.counter("c").inc()
        producer.flush()
    segments, _ = ready_segments(spool, 10)
    points = next(s for s in segments if s.table == "points")
    renamed = points.path.with_name(points.name.replace("-points-", "-requests-"))
    points.path.rename(renamed)
    with Monitor(db_path=tmp_path / "m.duckdb", ingest_dir=spool, jobs=False, memory_interval_seconds=None) as owner:
        assert owner.ingest_now() == 2  # the series row and the request
        assert owner.store is not None
        assert owner.store.fetchall("SELECT route FROM requests") == [("/a",)]
        assert owner.store.fetchall("SELECT count(*) FROM points") == [(0,)]
        assert owner.stats()["ingest"]["quarantined"] == 1
    assert [p.name for p in (spool / "quarantine").iterdir()] == [renamed.name]
