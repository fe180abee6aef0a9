"""Fork safety: a child forked after the monitor started records on its own and never touches the parent's file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pipeline import Monitor


def test_forked_child_of_an_owner_becomes_a_producer(tmp_path: Path) -> None:
    """The child gets a fresh buffer and flusher and spools to the owner; the parent's data is intact."""
    db = tmp_path / "m.duckdb"
    mon = Monitor(db_path=db, jobs=False, memory_interval_seconds=None)
    try:
        for i in range(10):
            mon.track_request("/parent", "GET", 200, 1.0, request_id=i)  # buffered, not flushed, at fork
        pid = os.fork()
        if pid == 0:  # the child: anything that goes wrong shows in its exit code
            code = 1
            try:
                alive = any(t.name == "duckpulse-flusher" and t.is_alive() for t in threading.enumerate())
                assert alive and mon.store is None and mon.pid == os.getpid()
                assert mon.stats()["pending"] == 0  # the parent's buffered rows stayed the parent's
                for i in range(100):
                    mon.track_request("/child", "GET", 200, 2.0, request_id=i)
                code = 0 if mon.flush() else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        mon.track_request("/parent", "GET", 200, 1.0, request_id=10)
        mon.flush()
        assert mon.ingest_now() == 100
        assert mon.store is not None
        got = mon.store.fetchall("SELECT route, pid, count(*), sum(duration_ms) FROM requests GROUP BY ALL ORDER BY 1")
        assert got == [("/child", pid, 100, 200.0), ("/parent", os.getpid(), 11, 11.0)]
    finally:
        mon.close()


def test_forked_child_of_a_producer_writes_its_own_segments(tmp_path: Path) -> None:
    """A producer's child writes segments under its own pid; the parent's pending rows are not duplicated."""
    spool = tmp_path / "spool"
    mon = Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None)
    mon.track_request("/parent", "GET", 200, 1.0)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            mon.track_request("/child", "GET", 200, 1.0)
            code = 0 if mon.flush() and mon.stats()["flushed"] == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    mon.close()
    with Monitor(db_path=tmp_path / "m.duckdb", ingest_dir=spool, jobs=False, memory_interval_seconds=None) as owner:
        owner.ingest_now()
        assert owner.store is not None
        got = owner.store.fetchall("SELECT route, pid FROM requests ORDER BY route")
    assert got == [("/child", pid), ("/parent", os.getpid())]
