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


def test_instruments_made_before_the_fork_record_in_the_child(tmp_path: Path) -> None:
    """A module-level counter or histogram (gunicorn --preload) keeps working in the child, with its series."""
    db = tmp_path / "m.duckdb"
    mon = Monitor(db_path=db, jobs=False, memory_interval_seconds=None)
    try:
        hits = mon.counter("hits", {"app": "shop"})
        latency = mon.histogram("latency_ms")
        hits.inc()
        mon.flush()
        hits.inc(5)  # buffered in the parent at the fork: the parent's to flush, not the child's
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                hits.inc(2)
                latency.observe(7.5)
                mon.track_request("/child", "GET", 200, 1.0)
                st = mon.stats()
                code = 0 if mon.flush() and st["recorded"] == 3 and st["pending"] == 3 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        mon.flush()
        assert mon.ingest_now() == 3 + 2  # the child's rows, and its two series announced again
        assert mon.store is not None
        got = mon.store.fetchall("SELECT s.name, p.pid, sum(p.value) FROM points p JOIN series s USING (series_id) "
                                 "GROUP BY ALL ORDER BY 1, 2")
        assert got == sorted([("hits", os.getpid(), 6.0), ("hits", pid, 2.0), ("latency_ms", pid, 7.5)])
    finally:
        mon.close()
