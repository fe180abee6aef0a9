"""Many processes: producers spool segments, one owner ingests them exactly once, whatever is killed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import Monitor, OwnershipError
from pipeline.spool import ready_segments

ROLES = str(Path(__file__).with_name("process_roles.py"))


def start(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, ROLES, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def owner(db: Path, spool: Path) -> Monitor:
    return Monitor(db_path=db, ingest_dir=spool, jobs=False, memory_interval_seconds=None)


def count_rows(db: Path, spool: Path) -> tuple[int, int, float]:
    with owner(db, spool) as mon:
        mon.ingest_now()
        assert mon.store is not None
        got = mon.store.fetchall("SELECT count(*), count(DISTINCT request_id), sum(duration_ms) FROM requests")[0]
        print("ingest after ingest_now():", mon.stats()["ingest"])  # shown by pytest when the count is wrong
    return int(got[0]), int(got[1]), float(got[2] or 0)


def spool_requests(spool: Path, segments: int) -> None:
    """``segments`` one-row request segments (request ids 0..), written by a producer in this process."""
    with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None, flush_interval_seconds=3600) as mon:
        for i in range(segments):
            mon.track_request("/p", "GET", 200, 1.0, request_id=i)
            mon.flush()


def test_four_producers_and_an_owner_give_every_row_exactly_once(tmp_path: Path) -> None:
    """4 producer processes x 25,000 records while an owner ingests: exactly 100,000 rows, sums equal."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    producers = [start("producer", spool, 25_000, p * 25_000, 2_500) for p in range(4)]
    with owner(db, spool) as mon:
        while any(p.poll() is None for p in producers):
            mon.ingest_now()
        for p in producers:
            assert "flushed 25000" in finish(p)
        mon.ingest_now()
        assert mon.store is not None
        got = mon.store.fetchall("SELECT count(*), count(DISTINCT request_id), sum(duration_ms), "
                                 "count(DISTINCT pid) FROM requests")
        assert got == [(100_000, 100_000, sum(range(100_000)) / 4, 4)]
        assert mon.stats()["ingest"]["backlog"] == 0
        assert mon.store.fetchall("SELECT sum(rows) FROM ingested_segments") == [(100_000,)]
    assert os.listdir(spool / "ready") == []


def test_owner_killed_repeatedly_mid_ingest_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """The owner is SIGKILLed at random moments of ingesting, 20+ times; in the end every row is there once."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    total = 100_000
    finish(start("producer", spool, total, 0, 100))  # 1,000 segments
    rng = random.Random(1)
    kills = 0
    while kills < 25:
        proc = start("ingest_loop", db, spool, 2)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("owner")  # it holds the file and is ingesting
        time.sleep(rng.uniform(0.0, 0.08))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 20, "the backlog ran out before 20 kills; make it larger"
    assert count_rows(db, spool) == (total, total, sum(range(total)) / 4)


def test_a_backlog_of_many_runs_is_drained_when_a_killed_run_left_committed_segments(tmp_path: Path) -> None:
    """Segments a killed run committed but did not unlink are only unlinked by the next run; ingest still goes
    on until the backlog is empty (it once stopped after the first page: 58,000 of 100,000 rows under load)."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    spool_requests(spool, 12)
    first = ready_segments(spool, 1)[0][0].path
    data = first.read_bytes()
    with owner(db, spool) as mon:
        assert mon.ingestor is not None and mon.store is not None
        assert mon.ingestor.run_once(max_segments=1) == 1
        first.write_bytes(data)  # as if the run had died between its commit and the unlink
        assert mon.ingestor.drain(max_segments=4) == 11
        assert mon.store.fetchall("SELECT count(*), count(DISTINCT request_id) FROM requests") == [(12, 12)]
        assert (mon.stats()["ingest"]["backlog"], mon.stats()["ingest"]["quarantined"]) == (0, 0)


def test_a_store_that_refuses_healthy_segments_leaves_them_in_the_spool(tmp_path: Path) -> None:
    """When the database refuses segments for a reason of its own (here a table that lost a column the segments
    carry; the file's error would be the same Binder Error), nothing is quarantined: the segments stay, the
    failure is counted with what happened, and they are all loaded once the store is right again."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    spool_requests(spool, 5)
    with owner(db, spool) as mon:
        assert mon.store is not None
        mon.store.con.execute("ALTER TABLE requests DROP COLUMN host")
        assert mon.ingest_now() == 0
        ingest = mon.stats()["ingest"]
        assert (ingest["quarantined"], ingest["backlog"], ingest["failures"]) == (0, 5, 1)
        assert "StoreError" in ingest["last_error"] and "the store failed, not the segment" in ingest["last_error"]
        mon.store.con.execute("ALTER TABLE requests ADD COLUMN host VARCHAR")
        assert mon.ingest_now() == 5
        assert (mon.stats()["ingest"]["backlog"], mon.stats()["ingest"]["quarantined"]) == (0, 0)
    assert os.listdir(spool / "quarantine") == []


def test_running_out_of_memory_while_loading_quarantines_nothing(tmp_path: Path) -> None:
    """DuckDB out of memory in the middle of loading a group: the run fails and is counted, every segment stays
    in ready/, and the next run (memory back) loads them all once."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    spool_requests(spool, 5)
    with owner(db, spool) as mon:
        assert mon.store is not None
        mon.store.con.execute("SET memory_limit = '1MB'")
        assert mon.ingest_now() == 0
        ingest = mon.stats()["ingest"]
        assert (ingest["quarantined"], ingest["backlog"], ingest["failures"]) == (0, 5, 1)
        assert "Out of Memory" in ingest["last_error"]
        mon.store.con.execute("SET memory_limit = '256MB'")
        assert mon.ingest_now() == 5
        assert mon.store.fetchall("SELECT count(DISTINCT request_id) FROM requests") == [(5,)]
    assert os.listdir(spool / "quarantine") == []


def test_a_killed_producer_keeps_what_it_flushed(tmp_path: Path) -> None:
    """SIGKILL on a producer loses only its unflushed tail; other producers are unaffected."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    victim = start("producer_then_hang", spool, 1_000, 500)
    bystander = start("producer", spool, 3_000, 10_000, 1_000)
    assert victim.stdout is not None and victim.stdout.readline().strip() == "ready"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish(bystander)
    assert os.listdir(spool / "tmp") == []
    with owner(db, spool) as mon:
        mon.ingest_now()
        assert mon.store is not None
        got = mon.store.fetchall("SELECT request_id >= 10000, count(*) FROM requests GROUP BY ALL ORDER BY 1")
    assert got == [(False, 1_000), (True, 3_000)]


def test_a_second_owner_fails_at_once_with_what_to_do(tmp_path: Path) -> None:
    """While one process owns the file, role="owner" fails fast, naming the holder and the default role that
    records as a producer instead (which is what Monitor(db_path=...) then does)."""
    db = tmp_path / "m.duckdb"
    proc = start("own_and_wait", db)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline().split()[1])
        with pytest.raises(OwnershipError, match=rf"owned by process {pid}.*role=\"auto\" records as a producer"):
            Monitor(db_path=db, role="owner", jobs=False)
        with Monitor(db_path=db, jobs=False, memory_interval_seconds=None) as producer:
            assert not producer.is_owner and producer.stats()["role"] == "producer"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    with Monitor(db_path=db, jobs=False, memory_interval_seconds=None):
        pass  # the lock is released when the owner exits


def test_corrupt_and_foreign_segments_are_quarantined_and_counted(tmp_path: Path) -> None:
    """Garbage, a truncated file and a stray file go to quarantine/; good segments around them are ingested."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None) as producer:
        producer.track_request("/a", "GET", 200, 1.0)
        producer.flush()
        (spool / "ready" / "00000000000000000001-requests-h-1-0-5.parquet").write_bytes(b"garbage" * 100)
        good = next((spool / "ready").iterdir())
        data = good.read_bytes()
        (spool / "ready" / "00000000000000000002-requests-h-1-0-1.parquet").write_bytes(data[: len(data) // 2])
        (spool / "ready" / "notes.txt").write_text("not a segment")
        pq.write_table(pa.table({"x": [1]}), spool / "ready" / "00000000000000000003-requests-h-1-0-1.parquet")
        producer.track_request("/b", "GET", 200, 2.0)
        producer.flush()
    with owner(db, spool) as mon:
        mon.ingest_now()
        assert mon.store is not None
        assert mon.store.fetchall("SELECT route FROM requests ORDER BY route") == [("/a",), ("/b",)]
        stats = mon.stats()["ingest"]
        assert stats["quarantined"] == 4 and stats["backlog"] == 0
    assert sorted(os.listdir(spool / "quarantine")) == sorted([
        "00000000000000000001-requests-h-1-0-5.parquet", "00000000000000000002-requests-h-1-0-1.parquet",
        "00000000000000000003-requests-h-1-0-1.parquet", "notes.txt"])


def test_segments_committed_before_a_crash_are_not_loaded_twice(tmp_path: Path) -> None:
    """A segment whose name is in the ledger (crash after commit, before unlink) is removed, not reloaded."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None) as producer:
        producer.track_request("/a", "GET", 200, 1.0)
        producer.flush()
    (segment,) = ready_segments(spool, 10)[0]
    copy = segment.path.read_bytes()
    with owner(db, spool) as mon:
        mon.ingest_now()
        segment.path.write_bytes(copy)  # as if the unlink had not happened
        mon.ingest_now()
        assert mon.store is not None
        assert mon.store.fetchall("SELECT count(*) FROM requests") == [(1,)]
    assert not segment.path.exists()


def test_a_failing_spool_keeps_the_data_buffered_until_it_recovers(tmp_path: Path) -> None:
    """When a segment cannot be written, flush() returns False, counts the failure and loses nothing."""
    spool = tmp_path / "spool"
    with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None) as mon:
        mon.track_request("/a", "GET", 200, 1.0)
        (spool / "tmp").rmdir()
        (spool / "tmp").write_text("not a directory")  # every write now fails, even as root
        assert mon.flush() is False
        stats = mon.stats()
        assert (stats["flush_failures"], stats["pending"], stats["flushed"]) == (1, 1, 0)
        assert "cannot write a spool segment" in stats["last_flush_error"]
        (spool / "tmp").unlink()
        (spool / "tmp").mkdir()
        assert mon.flush() is True
        assert mon.stats()["flushed"] == 1
    assert len(ready_segments(spool, 10)[0]) == 1


def test_a_monitor_left_open_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    """A script that never closes its Monitor still gets its last rows written by the exit handler."""
    db = tmp_path / "m.duckdb"
    code = ("from pipeline import Monitor\n"
            f"m = Monitor(db_path={str(db)!r}, jobs=False, memory_interval_seconds=None)\n"
            "m.track_request('/a', 'GET', 200, 1.0)\n"
            "m.track_query('SELECT 1', 1.0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "failed" not in out.stderr, out.stderr
    with Monitor(db_path=db, jobs=False, memory_interval_seconds=None) as mon:
        assert mon.store is not None
        assert mon.store.fetchall("SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM queries)") == [(1, 1)]


def test_ingest_now_drains_a_backlog_larger_than_one_run(tmp_path: Path) -> None:
    """A backlog of more segments than one run takes is ingested completely by one ingest_now()."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None) as producer:
        for i in range(30):
            producer.track_request("/a", "GET", 200, 1.0, request_id=i)
            producer.flush()
    with owner(db, spool) as mon:
        assert mon.ingestor is not None
        assert mon.ingestor.drain(max_segments=4) == 30
        assert mon.ingestor.backlog() == 0
