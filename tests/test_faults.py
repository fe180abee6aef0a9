"""Faults of the disk and of the spool, with real processes: a full disk under the DuckDB file or the spool,
unwritable spool directories, the owner down for a while, torn and garbage segments.

"Full" is made two ways. ``tmpfs``: a small tmpfs is mounted for the test and filled with a file, then the file
is removed (needs root and mount rights; skipped with the reason otherwise). ``rlimit``: the process under test
lowers its own RLIMIT_FSIZE so that no file it writes may grow, then raises it back; this runs anywhere. Both
make the kernel refuse the writes DuckDB and the spool writer really make (ENOSPC, EFBIG).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import Monitor
from pipeline.spool import ready_segments

ROLES = str(Path(__file__).with_name("test_faults_roles.py"))
PROCESS_ROLES = str(Path(__file__).with_name("process_roles.py"))


class Driven:
    """A Monitor in another process, driven one command at a time (see test_faults_roles.drive)."""

    def __init__(self, role: str, path: Path, log: Path, ingest_dir: Path | None = None) -> None:
        self.log = log
        # A file, not a pipe: a pipe nobody reads would block the process. Closed in close() or kill().
        self._err = open(log, "a")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, ROLES, "drive", role, str(path), str(ingest_dir or "")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True)
        self.pid = int(self._read()["pid"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise AssertionError(f"the driven process died (exit {self.proc.returncode}):\n"
                                 f"{self.log.read_text()[-3000:]}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def __call__(self, *command: object) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(map(str, command)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict[str, Any]:
        reply = self("close")
        assert self.proc.wait(timeout=60) == 0
        self._err.close()
        return reply

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._err.close()


class Space:
    """Takes the free space of a directory away from a driven process, and gives it back."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.dir = directory
        self._filler = directory / f"filler-{uuid.uuid4().hex}"

    def take(self, driven: Driven, headroom_bytes: int = 0) -> None:
        """From now on files in ``dir`` may grow by at most about ``headroom_bytes`` in total."""
        if self.kind == "rlimit":
            largest = max((p.stat().st_size for p in self.dir.rglob("*") if p.is_file()), default=0)
            driven("fsize", largest + headroom_bytes)
            return
        chunk = 1 << 20
        with open(self._filler, "wb", buffering=0) as f:
            while chunk >= 512:
                try:
                    f.write(b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        if headroom_bytes:
            os.truncate(self._filler, max(0, self._filler.stat().st_size - headroom_bytes))

    def give(self, driven: Driven) -> None:
        if self.kind == "rlimit":
            if driven.proc.poll() is None:  # else the limit ended with the process
                driven("fsize", "max")
        else:
            self._filler.unlink()


def _mount_tmpfs(where: Path, size: str) -> str | None:
    """Mount a tmpfs at ``where``; returns why it cannot be done, or None once mounted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "mounting a tmpfs needs root and mount(8)"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "duckpulse-fault", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"this sandbox forbids mounting a tmpfs ({done.stderr.strip()})"
    return None


@pytest.fixture(params=["tmpfs", "rlimit"])
def space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Space]:
    """A directory whose space a test can take away: a small tmpfs, or an RLIMIT_FSIZE in the process."""
    where = tmp_path / "fs"
    where.mkdir()
    if request.param == "rlimit":
        yield Space("rlimit", where)
        return
    why = _mount_tmpfs(where, "32m")
    if why:
        pytest.skip(f"{why}; the rlimit variant of this test covers the same fault")
    try:
        yield Space("tmpfs", where)
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _out_of_space(error: str | None) -> bool:
    return error is not None and ("No space left on device" in error or "File too large" in error)


def _nothing_dropped(stats: dict[str, Any]) -> None:
    assert stats["dropped"] == {} and stats["rejected"] == {}


def test_owner_flush_on_a_full_disk_keeps_the_rows_and_recovers(space: Space, tmp_path: Path) -> None:
    """The embedded owner's flush fails on a full disk: False, the rows stay buffered, each failure is counted,
    the error says the disk is full; once space is back the next flush writes every row exactly once."""
    owner = Driven("owner", space.dir / "m.duckdb", tmp_path / "owner.log")
    owner("record", 1_000, 0)
    assert owner("flush")["ok"] is True
    space.take(owner)
    # Past DuckDB's row group size (122,880 rows) the insert itself writes to the file, not only the COMMIT.
    owner("record", 200_000, 1_000)
    assert owner("flush")["ok"] is False
    failed = owner("flush")
    assert failed["ok"] is False
    st = failed["stats"]
    assert (st["flush_failures"], st["pending"], st["flushed"]) == (2, 200_000, 1_000)
    assert _out_of_space(st["last_flush_error"]), st["last_flush_error"]
    space.give(owner)
    assert owner("flush")["ok"] is True
    assert owner("count") | {"stats": None} == {"rows": 201_000, "ids": 201_000, "stats": None}
    st = owner.close()["stats"]
    assert (st["recorded"], st["flushed"], st["pending"]) == (201_000, 201_000, 0)
    _nothing_dropped(st)
    again = Driven("owner", space.dir / "m.duckdb", tmp_path / "again.log")
    assert again("count")["rows"] == 201_000
    again.close()


def test_owner_recovers_after_a_checkpoint_failed_on_a_full_disk(space: Space, tmp_path: Path) -> None:
    """A disk filling up makes DuckDB's automatic checkpoint fail, which invalidates the database instance.
    The owner reopens the file and goes on once space is back: no row is lost, none is written twice."""
    owner = Driven("owner", space.dir / "m.duckdb", tmp_path / "owner.log")
    owner("wal_autocheckpoint", "64KB")
    owner("record", 100, 0)
    assert owner("flush")["ok"] is True
    space.take(owner, headroom_bytes=256 * 1024)
    recorded, results = 100, []
    for _ in range(60):
        owner("record", 500, recorded)
        recorded += 500
        results.append(owner("flush")["ok"])
    assert False in results, "the disk never filled up: the test needs less headroom"
    space.give(owner)
    ok = owner("flush")
    assert ok["ok"] is True, ok["stats"]["last_flush_error"]
    assert owner("count") | {"stats": None} == {"rows": recorded, "ids": recorded, "stats": None}
    st = owner.close()["stats"]
    assert (st["recorded"], st["flushed"], st["pending"]) == (recorded, recorded, 0)
    again = Driven("owner", space.dir / "m.duckdb", tmp_path / "again.log")
    assert again("count")["rows"] == recorded
    again.close()


def _produce(spool: Path, count: int, first_id: int, flush_every: int) -> None:
    done = subprocess.run([sys.executable, PROCESS_ROLES, "producer", str(spool), str(count), str(first_id),
                           str(flush_every)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"flushed {count}" in done.stdout


def test_a_full_disk_under_the_owner_never_quarantines_good_segments(space: Space, tmp_path: Path) -> None:
    """When the owner's disk is full, ingest fails and is counted, but the segments stay in ready/ (they are
    not the problem) and are all ingested once space is back."""
    spool = tmp_path / "spool"
    owner = Driven("owner", space.dir / "m.duckdb", tmp_path / "owner.log", ingest_dir=spool)
    _produce(spool, 50_000, 0, 10_000)
    space.take(owner)
    failed = owner("ingest")
    ingest = failed["stats"]["ingest"]
    assert failed["rows"] == 0
    assert (ingest["quarantined"], ingest["backlog"]) == (0, 5)
    assert ingest["failures"] >= 1 and _out_of_space(ingest["last_error"]), ingest
    assert os.listdir(spool / "quarantine") == []
    space.give(owner)
    assert owner("ingest")["rows"] == 50_000
    assert owner("count") | {"stats": None} == {"rows": 50_000, "ids": 50_000, "stats": None}
    ingest = owner.close()["stats"]["ingest"]
    assert (ingest["quarantined"], ingest["backlog"], ingest["rows"]) == (0, 0, 50_000)


def _ingest_all(db: Path, spool: Path) -> tuple[int, int, dict[str, Any]]:
    with Monitor(db_path=db, ingest_dir=spool, jobs=False, memory_interval_seconds=None) as mon:
        mon.ingest_now()
        assert mon.store is not None
        rows, ids = mon.store.fetchall("SELECT count(*), count(DISTINCT request_id) FROM requests")[0]
        return int(rows), int(ids), mon.stats()["ingest"]


def test_a_producer_on_a_full_spool_keeps_the_rows_and_recovers(space: Space, tmp_path: Path) -> None:
    """A producer whose spool disk is full: flush() is False, the rows stay buffered, no partial segment is
    left in tmp/ or ready/; once space is back everything is spooled and the owner ingests it exactly once."""
    spool = space.dir / "spool"
    producer = Driven("producer", spool, tmp_path / "producer.log")
    producer("record", 1_000, 0)
    assert producer("flush")["ok"] is True
    space.take(producer)
    producer("record", 100_000, 1_000)
    assert producer("flush")["ok"] is False
    failed = producer("flush")
    st = failed["stats"]
    assert (failed["ok"], st["flush_failures"], st["pending"], st["flushed"]) == (False, 2, 100_000, 1_000)
    assert _out_of_space(st["last_flush_error"]), st["last_flush_error"]
    assert os.listdir(spool / "tmp") == []
    assert len(ready_segments(spool, 100)[0]) == 1
    space.give(producer)
    assert producer("flush")["ok"] is True
    st = producer.close()["stats"]
    assert (st["recorded"], st["flushed"], st["pending"]) == (101_000, 101_000, 0)
    rows, ids, ingest = _ingest_all(tmp_path / "m.duckdb", spool)
    assert (rows, ids, ingest["quarantined"]) == (101_000, 101_000, 0)


def test_a_producer_survives_its_spool_directories_being_replaced_or_removed(tmp_path: Path) -> None:
    """ready/ replaced by a file makes flushes fail (counted, rows kept, tmp/ left clean); the spool removed
    and re-created empty by an operator is re-populated; every row reaches the owner once."""
    spool = tmp_path / "spool"
    producer = Driven("producer", spool, tmp_path / "producer.log")
    producer("record", 10, 0)
    (spool / "ready").rename(tmp_path / "ready-aside")
    (spool / "ready").write_text("not a directory")
    failed = producer("flush")
    assert (failed["ok"], failed["stats"]["flush_failures"], failed["stats"]["pending"]) == (False, 1, 10)
    assert os.listdir(spool / "tmp") == []
    (spool / "ready").unlink()
    (tmp_path / "ready-aside").rename(spool / "ready")
    assert producer("flush")["ok"] is True
    assert _ingest_all(tmp_path / "m.duckdb", spool)[:2] == (10, 10)
    shutil.rmtree(spool)
    spool.mkdir()  # e.g. a cleaner emptied it, or an operator re-created it
    producer("record", 10, 10)
    flushed = producer("flush")
    assert flushed["ok"] is True, flushed["stats"]["last_flush_error"]
    st = producer.close()["stats"]
    assert (st["recorded"], st["flushed"], st["pending"], st["flush_failures"]) == (20, 20, 0, 1)
    assert _ingest_all(tmp_path / "m.duckdb", spool)[:2] == (20, 20)


def test_producers_keep_spooling_while_the_owner_is_down_and_the_backlog_is_ingested_in_order(
        tmp_path: Path) -> None:
    """The owner is killed; two producers go on spooling; a new owner ingests the backlog oldest first and in
    the end every row is in DuckDB exactly once."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    owner = Driven("owner", db, tmp_path / "owner.log", ingest_dir=spool)
    _produce(spool, 5_000, 0, 1_000)
    assert owner("ingest")["rows"] == 5_000
    owner.kill()  # down, without a goodbye
    producers = [subprocess.Popen([sys.executable, PROCESS_ROLES, "producer", str(spool), "20000",
                                   str(100_000 * (p + 1)), "500"], stdout=subprocess.PIPE, text=True)
                 for p in range(2)]
    for p in producers:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "flushed 20000" in out
    backlog = sorted(s.name for s in ready_segments(spool, 10_000)[0])
    assert len(backlog) == 80
    owner = Driven("owner", db, tmp_path / "owner2.log", ingest_dir=spool)
    assert owner("ingest")["rows"] == 40_000
    assert owner("count") | {"stats": None} == {"rows": 45_000, "ids": 45_000, "stats": None}
    owner.close()
    with Monitor(db_path=db, jobs=False, memory_interval_seconds=None) as mon:
        assert mon.store is not None
        ledger = [r[0] for r in mon.store.fetchall("SELECT segment FROM ingested_segments ORDER BY rowid")]
        # Rows of each producer are stored in the order it recorded them.
        unordered = mon.store.fetchall(
            "SELECT count(*) FROM (SELECT request_id < lag(request_id) OVER (PARTITION BY pid ORDER BY rowid) AS "
            "back FROM requests) WHERE back")
    assert ledger[-80:] == backlog
    assert unordered == [(0,)]


def _segment_bytes(spool: Path) -> bytes:
    return ready_segments(spool, 1)[0][0].path.read_bytes()


@pytest.mark.parametrize("damage", ["empty", "header only", "half", "all but the footer", "garbage",
                                    "garbage with parquet magic", "wrong columns"])
def test_a_torn_or_garbage_segment_is_quarantined_and_the_rest_ingested(tmp_path: Path, damage: str) -> None:
    """A segment cut short at any point, or filled with garbage, goes to quarantine/ and is counted; the good
    segments before and after it are ingested, every row once."""
    spool = tmp_path / "spool"
    _produce(spool, 3_000, 0, 1_000)
    good = _segment_bytes(spool)
    bad = {
        "empty": b"",
        "header only": good[:4],
        "half": good[: len(good) // 2],
        "all but the footer": good[:-8],
        "garbage": os.urandom(len(good)),
        "garbage with parquet magic": b"PAR1" + os.urandom(len(good)) + b"PAR1",
        "wrong columns": None,
    }[damage]
    # Named to sort between the good segments, as a torn file from a producer would.
    first = sorted(s.name for s in ready_segments(spool, 10)[0])[0].split("-")
    first[0], first[-1] = f"{int(first[0]) + 1:020d}", "1000.parquet"
    torn = spool / "ready" / "-".join(first)
    if bad is None:
        pq.write_table(pa.table({"x": list(range(1000))}), torn)
    else:
        torn.write_bytes(bad)
    rows, ids, ingest = _ingest_all(tmp_path / "m.duckdb", spool)
    assert (rows, ids) == (3_000, 3_000)
    assert (ingest["quarantined"], ingest["backlog"], ingest["segments"]) == (1, 0, 3)
    assert os.listdir(spool / "quarantine") == [torn.name]


def test_a_producer_killed_mid_write_never_leaves_a_partial_segment_in_ready(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL at random moments of writing large segments: ready/ only ever holds whole segments (tmp +
    fsync + rename), so the owner ingests everything there with nothing quarantined."""
    spool = tmp_path / "spool"
    rng = random.Random(7)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, ROLES, "big_flushes", str(spool), "60000"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        with contextlib.suppress(subprocess.TimeoutExpired):  # a random moment, likely in the middle of a write
            proc.wait(timeout=rng.uniform(0.3, 1.2))
        assert proc.poll() is None, "the producer died on its own"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    segments = ready_segments(spool, 10_000)[0]
    expected = sum(s.rows for s in segments)
    rows, _, ingest = _ingest_all(tmp_path / "m.duckdb", spool)
    assert ingest["quarantined"] == 0
    assert rows == expected and rows > 0
    with capsys.disabled():
        print(f"\nFIGURE SIGKILL mid-write x4: {len(segments)} whole segments ({rows} rows) ingested, 0 quarantined; "
              f"{len(os.listdir(spool / 'tmp'))} half-written file(s) left in tmp/ (never ingested)")


def test_closing_an_owner_on_a_full_disk_does_not_raise_and_keeps_what_was_committed(
        space: Space, tmp_path: Path) -> None:
    """close() on a full disk raises nothing into the app (the checkpoint fails, the WAL keeps the committed
    rows); what its last flush could not write is counted as pending; a new owner finds every committed row."""
    owner = Driven("owner", space.dir / "m.duckdb", tmp_path / "owner.log")
    owner("record", 5_000, 0)
    assert owner("flush")["ok"] is True
    space.take(owner)
    owner("record", 200_000, 5_000)
    st = owner.close()["stats"]
    assert (st["flushed"], st["pending"]) == (5_000, 200_000)
    assert st["flush_failures"] >= 1
    space.give(owner)
    again = Driven("owner", space.dir / "m.duckdb", tmp_path / "again.log")
    assert again("count") | {"stats": None} == {"rows": 5_000, "ids": 5_000, "stats": None}
    again.close()
