"""`duckpulse sql` reads the history and the live file and can change nothing, nor write anywhere (issue 13 item 14):
every way found to write is refused with a message that says why, and the file, the history and the directory
around them are byte for byte what they were."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from pipeline import Monitor
from pipeline.cli import main
from pipeline.publish import RECENT_DIR
from pipeline.testing import FakeClock


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A closed database with 3 requests, one archived hour of them in its history."""
    path = tmp_path / "m.duckdb"
    clock = FakeClock()
    with Monitor(db_path=path, clock=clock, jobs=False, memory_interval_seconds=None) as mon:
        for i in range(3):
            mon.track_request("/a", "GET", 200, 1.0 + i)
        mon.flush()
        clock.advance(2 * 3600)
        mon.run_jobs_now()
    assert any(path.with_name("m.duckdb.history").rglob("*.parquet"))
    return path


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _sql(capsys: pytest.CaptureFixture[str], db: Path, query: str) -> tuple[int, str, str]:
    code = main(["sql", "--db", str(db), "--format", "csv", query])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("query", "kind"), [
    ("DETACH live; ATTACH '{db}' AS w; DROP TABLE w.requests", "DETACH"),
    ("SELECT 1; DROP TABLE requests", "DROP"),
    ("COPY (SELECT * FROM requests) TO '{tmp}/out.csv'", "COPY"),
    ("COPY (SELECT * FROM requests) TO '{history}/requests/out.parquet'", "COPY"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{history}/x.csv'", "EXPLAIN"),
    ("EXPORT DATABASE '{tmp}/exported'", "EXPORT"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD parquet", "LOAD"),
    ("ATTACH '{tmp}/new.duckdb' AS n", "ATTACH"),
    ("SET enable_external_access = true", "SET"),
    ("CREATE TABLE live.x AS SELECT 1", "CREATE"),
    ("PRAGMA enable_profiling = 'json'", "SET"),
    ("CALL pragma_database_size()", "CALL"),
])
def test_statements_that_write_are_refused_before_anything_runs(db: Path, capsys: pytest.CaptureFixture[str],
                                                                query: str, kind: str) -> None:
    """A query holding anything but SELECT exits 2 naming the statement, and nothing changed anywhere."""
    tmp = db.parent
    before = _snapshot(tmp)
    code, out, err = _sql(capsys, db, query.format(db=db, tmp=tmp, history=f"{db}.history"))
    assert code == 2 and out == ""
    assert f"only reads: the query holds a {kind} statement" in err and "Nothing was run" in err
    assert _snapshot(tmp) == before
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM requests").fetchall() == [(3,)]
    finally:
        con.close()


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('{tmp}/../')",
    "SELECT * FROM read_csv('{history}/../elsewhere.csv', store_rejects = true, rejects_table = 'r')",
    "SELECT * FROM query('COPY (SELECT 1) TO ''{history}/q.csv''')",
])
def test_selects_reach_nothing_but_the_history_and_the_file(db: Path, capsys: pytest.CaptureFixture[str],
                                                           query: str) -> None:
    """A SELECT that reads other files, or smuggles a COPY through query(), is refused by DuckDB with the reason;
    the directory is unchanged."""
    tmp = db.parent
    (tmp / "elsewhere.csv").write_text("a,b\n1,x\n")
    before = _snapshot(tmp)
    code, out, err = _sql(capsys, db, query.format(tmp=tmp, history=f"{db}.history"))
    assert code == 2 and out == ""
    assert "duckpulse: error: " in err
    assert "disabled by configuration" in err or "Expected a single SELECT statement" in err
    assert _snapshot(tmp) == before


def test_reads_still_work_once_locked(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The locked connection still reads the history (what the owner archived and published), the live file
    (of a file nothing was published for, e.g. written by an older duckpulse) and DuckDB's own catalog (DESCRIBE,
    SHOW)."""
    code, out, err = _sql(capsys, db, "SELECT count(*) AS n FROM requests")
    assert code == 0, err
    assert out.splitlines() == ["n", "3"]
    code, out, err = _sql(capsys, db, "SELECT count(*) AS n FROM read_parquet('requests/*/*/*.parquet')")
    assert code == 0, err
    assert out.splitlines() == ["n", "3"]
    shutil.rmtree(db.with_name(f"{db.name}.history") / RECENT_DIR)  # nothing published: the live file is read
    code, out, err = _sql(capsys, db, "SELECT count(*) AS n FROM history_requests")
    assert code == 0, err
    assert out.splitlines() == ["n", "3"]
    code, out, err = _sql(capsys, db, "DESCRIBE requests")
    assert code == 0 and "duration_ms" in out, err
