"""What lands in spool/ready that no producer wrote (issue 13 item 8): a FIFO, a socket, a directory or a symlink
named like a segment never blocks the ingest; it is quarantined, counted and shown by health; and `duckpulse
serve` answers SIGTERM within one page of its ingest, whatever the backlog."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import Monitor, parquet
from pipeline.ingest import MAX_SEGMENTS_PER_RUN
from pipeline.spool import ready_segments


def _one_segment(spool: Path, requests: int = 1) -> Path:
    """A real producer's requests segment in ``spool``/ready; returns its path."""
    with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None) as producer:
        for i in range(requests):
            producer.track_request("/ok", "GET", 200, 1.0, request_id=i)
        producer.flush()
    (segment,) = [s for s in ready_segments(spool, 10)[0] if s.table == "requests"]
    return segment.path


def _name_like(segment: Path, seq: int) -> str:
    """A segment name that sorts before ``segment`` (so the ingest meets it first)."""
    parts = segment.name.split("-")
    parts[0] = f"{int(parts[0]) - 1 - seq:020d}"
    return "-".join(parts)


def test_a_fifo_socket_directory_and_symlinks_named_like_segments_are_quarantined_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each non-regular entry is moved to quarantine with what it is, counted; the real segment is loaded; the
    ingest returns (a FIFO with no writer blocks an ordinary open forever); health names the set-aside files."""
    from webapp import create_app

    spool = tmp_path / "spool"
    good = _one_segment(spool)
    ready = spool / "ready"
    outside = tmp_path / "outside.parquet"
    shutil.copy(good, outside)
    strange = {name: _name_like(good, i) for i, name in enumerate(["fifo", "socket", "dir", "link", "dangling"])}
    os.mkfifo(ready / strange["fifo"])
    listener = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(ready)  # a socket's path is limited to 107 bytes: bound by its bare name
    listener.bind(strange["socket"])
    (ready / strange["dir"]).mkdir()
    (ready / strange["link"]).symlink_to(outside)  # a valid segment, but elsewhere: never followed
    (ready / strange["dangling"]).symlink_to(tmp_path / "nothing")
    try:
        with Monitor(db_path=tmp_path / "m.duckdb", ingest_dir=spool, jobs=False,
                     memory_interval_seconds=None) as owner:
            done = threading.Event()
            rows: list[int] = []
            worker = threading.Thread(target=lambda: (rows.append(owner.ingest_now()), done.set()), daemon=True)
            worker.start()
            if not done.wait(timeout=60):  # the bug: blocked in open() on the FIFO; unblock it to end the test
                with open(ready / strange["fifo"], "wb"):
                    pass
                pytest.fail("the ingest blocked on a FIFO in spool/ready")
            assert rows == [1]
            assert owner.store is not None
            assert owner.store.fetchall("SELECT route FROM requests") == [("/ok",)]
            ingest = owner.stats()["ingest"]
            assert ingest["quarantined"] == 5 and ingest["backlog"] == 0
            health = create_app({"TESTING": True}, monitor=owner).test_client().get("/api/health").get_json()
            assert "spool segments were unreadable and set aside in the last 300 s (5 since the start)" in " ".join(
                health["problems"])
    finally:
        listener.close()
    assert sorted(os.listdir(spool / "quarantine")) == sorted(strange.values())
    assert (spool / "quarantine" / strange["link"]).is_symlink() and outside.exists()
    assert os.listdir(ready) == []


def test_reading_a_footer_never_blocks_nor_follows_a_link(tmp_path: Path) -> None:
    """The check at open time, for an entry swapped in after the listing: a FIFO is refused at once (O_NONBLOCK
    and fstat), a symlink is not followed (O_NOFOLLOW), a directory is refused."""
    good = _one_segment(tmp_path / "spool")
    fifo = tmp_path / "f.parquet"
    os.mkfifo(fifo)
    link = tmp_path / "l.parquet"
    link.symlink_to(good)
    assert parquet.read_footer(good).num_rows == 1
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            parquet.read_footer(fifo)
        except BaseException as exc:  # the assertion below says which
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    if reader.is_alive():
        with open(fifo, "wb"):  # unblock it
            pass
        pytest.fail("read_footer blocked on a FIFO")
    assert isinstance(outcome[0], parquet.FooterError) and "not a regular file" in str(outcome[0])
    with pytest.raises(OSError):
        parquet.read_footer(link)
    with pytest.raises(parquet.FooterError, match="not a regular file"):
        parquet.read_footer(tmp_path)


def test_serve_answers_sigterm_within_a_page_of_a_large_backlog(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`duckpulse serve` with a FIFO and a backlog of 16 pages of segments in ready/: SIGTERM once ingesting has
    begun makes it finish the page it is loading and exit 0; what it did not load waits in ready/, and every row
    is either in the database or in a segment there (none lost, none twice)."""
    spool = tmp_path / "spool"
    template = _one_segment(spool, requests=3)
    ready = spool / "ready"
    total_segments = 16 * MAX_SEGMENTS_PER_RUN
    for i in range(1, total_segments):
        parts = template.name.split("-")
        parts[-2] = str(i)  # the seq field: a distinct name for the same bytes
        shutil.copy(template, ready / "-".join(parts))
    os.mkfifo(ready / _name_like(template, 0))
    db = tmp_path / "m.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--db", str(db), "--spool", str(spool),
                             "--port", "0", "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(os.listdir(ready)) >= total_segments:  # bounded poll of another process: ingest has begun
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        out, err = proc.communicate(timeout=60)
        answered_seconds = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped;" in out
    left = [s for s in ready_segments(spool, total_segments)[0] if s.table == "requests"]
    assert left, "the whole backlog was drained before exiting: SIGTERM waited for it"
    left_rows = sum(pq.read_metadata(s.path).num_rows for s in left)
    with Monitor(db_path=db, jobs=False, memory_interval_seconds=None, ingest_dir=tmp_path / "none") as reader:
        assert reader.store is not None
        stored = reader.store.fetchall("SELECT count(*) FROM requests")[0][0]
        ledger = reader.store.fetchall("SELECT count(*), sum(rows) FROM ingested_segments")[0]
    assert stored + left_rows == 3 * total_segments
    assert ledger == (total_segments - len(left), stored)
    assert len(os.listdir(spool / "quarantine")) == 1
    with capsys.disabled():
        print(f"\nFIGURE serve SIGTERM during a {total_segments}-segment backlog: exited 0 after "
              f"{answered_seconds:.1f} s, {len(left)} segments left in ready/, {stored} rows stored")


# -- issue 13 item 15: the ingest trusts the file, not its name ----------------------------------------------------
def test_row_counts_come_from_the_footer_not_the_name(tmp_path: Path) -> None:
    """A segment of 12,000 rows renamed to say 9,011: the ledger and the ingest's stats count 12,000."""
    spool = tmp_path / "spool"
    segment = _one_segment(spool, requests=12_000)
    lying = segment.with_name(segment.name.rsplit("-", 1)[0] + "-9011.parquet")
    segment.rename(lying)
    with Monitor(db_path=tmp_path / "m.duckdb", ingest_dir=spool, jobs=False, memory_interval_seconds=None) as owner:
        assert owner.ingest_now() == 12_000
        assert owner.store is not None
        assert owner.store.fetchall("SELECT rows FROM ingested_segments WHERE segment = $s",
                                    {"s": lying.name}) == [(12_000,)]
        assert owner.store.fetchall("SELECT count(*) FROM requests") == [(12_000,)]
        assert owner.stats()["ingest"]["rows"] == 12_000


@pytest.mark.parametrize(("column", "arrow_type"), [("status", "int64"), ("duration_ms", "string"),
                                                     ("ts", "int64")])
def test_a_column_of_the_wrong_type_is_quarantined_never_coerced(tmp_path: Path, column: str,
                                                                 arrow_type: str) -> None:
    """A segment whose column has another type than duckpulse writes (even one DuckDB would cast without a word:
    status as INT64, ts as INT64) is quarantined and counted; the good segment beside it is loaded."""
    import pyarrow as pa

    spool = tmp_path / "spool"
    good = _one_segment(spool, requests=3)
    table = pq.read_table(good)
    bad = table.set_column(table.schema.get_field_index(column), column,
                           table.column(column).cast(pa.string() if arrow_type == "string" else pa.int64(),
                                                     safe=False))
    bad_path = good.with_name(_name_like(good, 0))
    pq.write_table(bad.replace_schema_metadata(table.schema.metadata), bad_path)
    assert parquet.read_footer(bad_path).metadata["duckpulse.table"] == "requests"
    with Monitor(db_path=tmp_path / "m.duckdb", ingest_dir=spool, jobs=False, memory_interval_seconds=None) as owner:
        assert owner.ingest_now() == 3
        assert owner.store is not None
        assert owner.store.fetchall("SELECT count(*) FROM requests") == [(3,)]
        assert owner.stats()["ingest"]["quarantined"] == 1
    assert os.listdir(spool / "quarantine") == [bad_path.name]


# -- issue 13 item 16: what killed producers leave in tmp/ ---------------------------------------------------------
def test_debris_of_killed_producers_is_removed_once_old_and_counted(tmp_path: Path) -> None:
    """Files a producer killed mid-write left in tmp/ are removed by the owner's spool-debris job once untouched
    for TMP_DEBRIS_AGE_SECONDS, counted in stats; younger ones (a write in progress) and ready/ stay."""
    from pipeline.spool import TMP_DEBRIS_AGE_SECONDS
    from pipeline.testing import FakeClock

    spool = tmp_path / "spool"
    _one_segment(spool)
    clock = FakeClock()
    old = [spool / "tmp" / f"dead-{i}.parquet" for i in range(3)]
    young = spool / "tmp" / "writing.parquet"
    for path in [*old, young]:
        path.write_bytes(b"PAR1 half written")
    for path in old:
        os.utime(path, (clock.now() - TMP_DEBRIS_AGE_SECONDS - 1,) * 2)
    os.utime(young, (clock.now() - 1,) * 2)
    with Monitor(db_path=tmp_path / "m.duckdb", ingest_dir=spool, jobs=False, clock=clock,
                 memory_interval_seconds=None) as owner:
        results = owner.run_jobs_now()
        assert results["spool-debris"] == 3
        assert owner.stats()["ingest"]["debris_removed"] == 3
        assert owner.stats()["jobs"]["spool-debris"]["failures"] == 0
        assert os.listdir(spool / "tmp") == ["writing.parquet"]
        clock.advance(TMP_DEBRIS_AGE_SECONDS)
        assert owner.run_jobs_now()["spool-debris"] == 1
    assert os.listdir(spool / "tmp") == []
