"""What an owner's DuckDB keeps in the host app's memory: capped, and not growing with the file or the threads.

Real DuckDB files, no mocks. The figures under load are in RELIABILITY.md (benchmarks/soak.py).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipeline import malloc
from pipeline.clock import SYSTEM_CLOCK
from pipeline.store import (
    CACHE_KEPT_BYTES,
    CHECKPOINT_THRESHOLD,
    DEFAULT_MEMORY_LIMIT,
    RECYCLE_INTERVAL_SECONDS,
    ReadGate,
    Store,
)
from pipeline.testing import FakeClock

MB = 2**20


def _size(text: str) -> int:
    number, unit = text.split()
    return int(float(number) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit])


def _setting(store: Store, name: str) -> int:
    value = store.con.execute("SELECT value FROM duckdb_settings() WHERE name = ?", [name]).fetchone()
    assert value is not None
    return _size(value[0])


def _duckdb_memory(store: Store) -> int:
    row = store.con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
    return int(row[0] or 0) if row else 0


def _requests(n: int, start: int) -> pa.Table:
    """n request rows with distinct values (so they do not compress to nothing)."""
    ids = range(start, start + n)
    columns = [[1.7e9 + i / 1000 for i in ids], [f"/route/{i % 500}" for i in ids], ["GET"] * n,
               [200 + i % 300 for i in ids], [(i * 7919) % 10007 / 7.0 for i in ids], list(ids), [i % 5 for i in ids]]
    names = ("ts", "route", "method", "status", "duration_ms", "request_id", "query_count")
    table = pa.table(dict(zip(names, columns, strict=True)))
    micros = pa.array([round(t * 1e6) for t in columns[0]], pa.int64()).cast(pa.timestamp("us"))
    return table.set_column(0, "ts", micros).append_column("pid", pa.array([1] * n, pa.int32())).append_column(
        "host", pa.array(["host"] * n))


def test_the_owner_caps_duckdb_memory_and_checkpoints_early(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb", SYSTEM_CLOCK)
    try:
        assert store.memory_limit == DEFAULT_MEMORY_LIMIT
        assert _setting(store, "memory_limit") <= 256 * MB
        assert CHECKPOINT_THRESHOLD == "4MB" and _setting(store, "checkpoint_threshold") <= 4 * MB
    finally:
        store.close()
    unlimited = Store(tmp_path / "u.duckdb", SYSTEM_CLOCK, memory_limit=None)
    try:
        assert _setting(unlimited, "memory_limit") > 256 * MB  # None leaves DuckDB's own default (80% of RAM)
    finally:
        unlimited.close()


def test_duckdb_memory_stays_under_the_cap_while_the_file_grows_past_it(tmp_path: Path) -> None:
    """Appending and reading back more than the cap (in Arrow bytes): DuckDB's accounted memory never exceeds
    it, and the rows waiting for a checkpoint never hold more than a few MB (DuckDB's default threshold: ~18 MB)."""
    path = tmp_path / "grow.duckdb"
    store = Store(path, SYSTEM_CLOCK, memory_limit="64MB")  # a small cap, so that the test outgrows it quickly
    try:
        cap = _setting(store, "memory_limit")
        peak = 0
        written = arrow_bytes = 0
        for i in range(120):
            batch = _requests(20_000, written)
            store.append({"requests": batch})
            written += batch.num_rows
            arrow_bytes += batch.nbytes
            if i % 10 == 9:  # what the dashboard and the jobs do: read the whole table back
                store.reader().execute("SELECT route, count(*), avg(duration_ms) FROM requests GROUP BY 1").fetchall()
            peak = max(peak, _duckdb_memory(store))
        assert arrow_bytes > 1.5 * cap  # what was written outgrew the cap
        assert peak <= cap, f"DuckDB held {peak / MB:.1f} MB against its cap of {cap / MB:.1f} MB"
        in_memory = store.con.execute(
            "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'").fetchone()
        assert in_memory is not None and in_memory[0] <= 8 * MB
        assert store.scalar("SELECT count(*) FROM requests") == written
    finally:
        store.close()


def test_read_cursors_of_finished_threads_are_released(tmp_path: Path) -> None:
    """Store.reader() keeps one cursor per thread; a server that starts a thread per connection (werkzeug's)
    must not accumulate them: each goes away with its thread."""
    store = Store(tmp_path / "r.duckdb", SYSTEM_CLOCK)
    try:
        store.append({"requests": _requests(100, 0)})
        cursors: list[weakref.ref[duckdb.DuckDBPyConnection]] = []
        counts: list[int] = []
        lock = threading.Lock()

        def read() -> None:
            cursor = store.reader()
            assert store.reader() is cursor  # the same cursor for the thread's whole life
            row = cursor.execute("SELECT count(*) FROM requests").fetchone()
            with lock:
                cursors.append(weakref.ref(cursor))
                counts.append(row[0] if row else -1)

        for _ in range(200):
            thread = threading.Thread(target=read)
            thread.start()
            thread.join()
        gc.collect()
        assert counts == [100] * 200
        alive = sum(ref() is not None for ref in cursors)
        assert alive == 0, f"{alive} read cursors of finished threads are still alive"
    finally:
        store.close()


def _table_blocks(store: Store) -> int:
    row = store.con.execute(
        "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'").fetchone()
    return int(row[0]) if row else 0


def _fill_the_cache(store: Store, batches: int = 100) -> int:
    """Append and checkpoint 20,000 rows per batch, read every column back: DuckDB then caches their blocks."""
    written = 0
    for _ in range(batches):
        batch = _requests(20_000, written)
        store.append({"requests": batch})
        written += batch.num_rows
    store.con.execute("CHECKPOINT")
    with store.reading() as cursor:
        cursor.execute("SELECT max(COLUMNS(*)) FROM requests").fetchall()  # every column: every block
    return written


def test_release_cache_evicts_cached_table_blocks_and_restores_the_limit(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.duckdb", SYSTEM_CLOCK)
    try:
        limit_before = _setting(store, "memory_limit")
        written = _fill_the_cache(store)
        cached = _table_blocks(store)
        assert cached > 2 * CACHE_KEPT_BYTES, f"the test did not fill the cache: {cached / MB:.1f} MB"
        released = store.release_cache()
        assert released is not None and released >= cached - CACHE_KEPT_BYTES - MB
        assert _table_blocks(store) <= CACHE_KEPT_BYTES + MB  # whole blocks; its other memory moves meanwhile
        assert _setting(store, "memory_limit") == limit_before
        assert store.scalar("SELECT count(*) FROM requests") == written  # evicted, not lost: read back from the file
        assert 0 <= (store.release_cache() or 0) <= MB  # only the blocks that count read back
    finally:
        store.close()
    unlimited = Store(tmp_path / "u.duckdb", SYSTEM_CLOCK, memory_limit=None)  # DuckDB's default cap is restored
    try:
        limit_before = _setting(unlimited, "memory_limit")
        _fill_the_cache(unlimited, batches=40)
        assert unlimited.release_cache()
        restored = _setting(unlimited, "memory_limit")
        assert abs(restored - limit_before) <= 0.11 * 2**30  # DuckDB prints it to 0.1 GiB: that much is restored
        _fill_the_cache(unlimited, batches=20)
        assert unlimited.release_cache()
        assert _setting(unlimited, "memory_limit") == restored  # and it does not drift release after release
    finally:
        unlimited.close()
    small = Store(tmp_path / "s.duckdb", SYSTEM_CLOCK)
    try:
        small.append({"requests": _requests(100, 0)})
        assert small.release_cache() == 0  # under the floor: the limit is not even touched
    finally:
        small.close()
    in_memory = Store(None, SYSTEM_CLOCK)  # its tables live in the buffer pool: nothing is a cache there
    try:
        assert in_memory.release_cache() is None
    finally:
        in_memory.close()


def test_reads_never_fail_while_the_cache_is_released_under_them(tmp_path: Path) -> None:
    """Lowering memory_limit under a running query makes it fail to allocate, and so can the statement restoring
    the limit (measured with this very test and the gate turned off: 22 failed reads and 2 failed restores in 134
    releases). Reads hold the read gate, so two threads reading all the time while a third releases the cache
    over and over see no error, and the releases that found no read running did evict."""
    store = Store(tmp_path / "r.duckdb", SYSTEM_CLOCK)
    errors: list[str] = []
    reads = [0, 0]
    stop = threading.Event()

    def read(slot: int) -> None:
        while not stop.is_set():
            try:
                with store.reading() as cursor:
                    cursor.execute("SELECT r, quantile_cont(v, [0.5, 0.95, 0.99]), count(*) FROM big "
                                   "WHERE id % 7 = 0 GROUP BY r").fetchall()
                reads[slot] += 1
            except duckdb.Error as exc:
                errors.append(str(exc)[:200])

    try:
        limit_before = _setting(store, "memory_limit")
        # A table whose aggregates need a few MB of hash tables each (the schema's tables compress too well).
        store.con.execute("CREATE TABLE big AS SELECT range AS id, random() AS v, (range % 1000)::VARCHAR AS r "
                          "FROM range(2000000)")
        store.con.execute("CHECKPOINT")
        readers = [threading.Thread(target=read, args=(i,)) for i in range(2)]
        for thread in readers:
            thread.start()
        outcomes = []
        for _ in range(150):
            outcomes.append(store.release_cache())
            stop.wait(0.002)  # let the readers start queries between releases
        stop.set()
        for thread in readers:
            thread.join()
        assert errors == []
        assert min(reads) > 0
        assert any(o is not None for o in outcomes), "no release ever found the reads drained"
        assert _setting(store, "memory_limit") == limit_before
    finally:
        stop.set()
        store.close()


def test_the_read_gate_waits_for_reads_times_out_and_lets_a_read_nest() -> None:
    gate = ReadGate()
    reading, release_read = threading.Event(), threading.Event()
    nested_done = threading.Event()

    def long_read() -> None:
        with gate.shared():
            reading.set()
            release_read.wait(5)
            with gate.shared():  # a read inside a read does not wait for the exclusive holder waiting for us
                nested_done.set()

    thread = threading.Thread(target=long_read)
    thread.start()
    assert reading.wait(5)
    with gate.exclusive(0.05) as drained:
        assert drained is False  # the read still runs: the release skips this round
    release_read.set()
    thread.join(5)
    assert nested_done.is_set()
    with gate.exclusive(0.05) as drained:
        assert drained is True
        blocked = threading.Event()
        started = threading.Event()

        def late_read() -> None:
            started.set()
            with gate.shared():
                blocked.set()

        late = threading.Thread(target=late_read)
        late.start()
        assert started.wait(5)
        assert not blocked.wait(0.1)  # new reads wait while the cache is released
    late.join(5)
    assert blocked.is_set()


def test_close_forces_the_checkpoint_when_another_transaction_is_open(tmp_path: Path) -> None:
    path = tmp_path / "f.duckdb"
    store = Store(path, SYSTEM_CLOCK)
    store.append({"requests": _requests(100, 0)})
    real = store.con
    statements: list[str] = []

    class RefusingCheckpoint:
        """DuckDB's answer when a cursor's write transaction is still open at shutdown."""

        def execute(self, sql: str, *args: object) -> object:
            statements.append(sql)
            if sql == "CHECKPOINT":
                raise duckdb.TransactionException("Cannot CHECKPOINT: there are other write transactions active")
            return real.execute(sql, *args)

        def close(self) -> None:
            real.close()

    store.con = RefusingCheckpoint()  # type: ignore[assignment]
    store.close()
    assert statements == ["CHECKPOINT", "FORCE CHECKPOINT"]
    assert not Path(str(path) + ".wal").exists()
    reopened = duckdb.connect(str(path), read_only=True)
    try:
        assert reopened.execute("SELECT count(*) FROM requests").fetchone() == (100,)
    finally:
        reopened.close()


def test_an_owner_releases_memory_as_a_job_and_a_producer_has_none(tmp_path: Path) -> None:
    from pipeline import Monitor

    with Monitor(db_path=tmp_path / "o.duckdb", jobs=False, memory_interval_seconds=None) as owner:
        owner.track_request("/a", "GET", 200, 1.0)
        results = owner.run_jobs_now()
        assert list(results)[-1] == "release-cache"  # after the jobs that read, so it evicts what they cached
        # A new file: nothing cached above the floor, and not yet time to reopen it.
        assert results["release-cache"] == {"evicted_bytes": 0, "recycled": False,
                                              "purged": malloc.can_purge_duckdb(), "trimmed": malloc.CAN_TRIM}
        assert owner.stats()["jobs"]["release-cache"]["failures"] == 0
    with Monitor(spool_dir=tmp_path / "spool", memory_interval_seconds=None) as producer:
        assert "release-cache" not in producer.stats()["jobs"]


def test_release_memory_reopens_the_database_every_interval_and_survives_a_clock_jump(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store(tmp_path / "m.duckdb", clock)
    try:
        store.append({"requests": _requests(1000, 0)})
        first = store.con
        assert store.release_memory(clock.now())["recycled"] is False
        clock.advance(RECYCLE_INTERVAL_SECONDS - 1)
        assert store.release_memory(clock.now())["recycled"] is False
        assert store.con is first
        clock.advance(1)
        done = store.release_memory(clock.now())
        assert done == {"evicted_bytes": None, "recycled": True, "purged": malloc.can_purge_duckdb(),
                        "trimmed": malloc.CAN_TRIM}
        assert store.con is not first
        assert store.scalar("SELECT count(*) FROM requests") == 1000
        clock.set_wall(clock.now() - 3600)  # an hour back: the next reopen is an interval from there, not in an hour
        assert store.release_memory(clock.now())["recycled"] is False
        clock.advance(RECYCLE_INTERVAL_SECONDS)
        assert store.release_memory(clock.now())["recycled"] is True
    finally:
        store.close()
    in_memory = Store(None, clock)  # closing it would lose its tables: never reopened
    try:
        clock.advance(10 * RECYCLE_INTERVAL_SECONDS)
        assert in_memory.release_memory(clock.now()) == {"evicted_bytes": None, "recycled": False,
                                                         "purged": malloc.can_purge_duckdb(),
                                                         "trimmed": malloc.CAN_TRIM}
    finally:
        in_memory.close()


def test_recycle_closes_every_read_cursor_and_threads_read_on_from_the_new_instance(tmp_path: Path) -> None:
    store = Store(tmp_path / "y.duckdb", SYSTEM_CLOCK)
    try:
        store.append({"requests": _requests(500, 0)})
        old = store.reader()
        assert store.recycle() is True
        with pytest.raises(duckdb.ConnectionException):
            old.execute("SELECT 1")  # closed: it held the old instance's memory
        with store.reading() as cursor:
            assert cursor is not old
            assert cursor.execute("SELECT count(*) FROM requests").fetchone() == (500,)
        store.append({"requests": _requests(500, 500)})  # the writer goes on too
        assert store.scalar("SELECT count(DISTINCT request_id) FROM requests") == 1000
        holding, release = threading.Event(), threading.Event()

        def long_read() -> None:
            with store.reading():
                holding.set()
                release.wait(5)

        reader = threading.Thread(target=long_read)
        reader.start()
        assert holding.wait(5)
        assert store.recycle() is False  # a read is running: skipped, the read is not cut off
        release.set()
        reader.join(5)
    finally:
        store.close()
    in_memory = Store(None, SYSTEM_CLOCK)
    try:
        assert in_memory.recycle() is False
    finally:
        in_memory.close()


def test_a_reopen_that_fails_is_retried_by_the_next_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "f.duckdb", SYSTEM_CLOCK)
    try:
        store.append({"requests": _requests(100, 0)})
        real_connect = duckdb.connect

        def refuse(*args: object, **kwargs: object) -> None:
            raise duckdb.IOException("IO Error: No space left on device")

        monkeypatch.setattr(duckdb, "connect", refuse)
        with pytest.raises(duckdb.IOException):
            store.recycle()  # the job counts it as a failure
        monkeypatch.setattr(duckdb, "connect", real_connect)
        store.append({"requests": _requests(100, 100)})
        assert store.scalar("SELECT count(*) FROM requests") == 200
        with store.reading() as cursor:
            assert cursor.execute("SELECT count(*) FROM requests").fetchone() == (200,)
    finally:
        store.close()


def test_reads_never_fail_while_the_database_is_reopened_under_them(tmp_path: Path) -> None:
    """Threads reading all the time through Store.reading() while another reopens the database over and over:
    a cursor closed by recycle() is never used, every read sees every row written before it began."""
    store = Store(tmp_path / "z.duckdb", SYSTEM_CLOCK)
    store.append({"requests": _requests(2000, 0)})
    errors: list[str] = []
    reads = [0, 0, 0]
    stop = threading.Event()

    def read(slot: int) -> None:
        while not stop.is_set():
            try:
                with store.reading() as cursor:
                    count = cursor.execute("SELECT count(*) FROM requests").fetchone()
                assert count is not None and count[0] >= 2000
                reads[slot] += 1
            except (duckdb.Error, AssertionError) as exc:
                errors.append(repr(exc)[:200])

    readers = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    try:
        for thread in readers:
            thread.start()
        recycled = 0
        for i in range(40):
            recycled += store.recycle()
            store.append({"requests": _requests(10, 2000 + 10 * i)})
        stop.set()
        for thread in readers:
            thread.join()
        assert errors == []
        assert min(reads) > 0 and recycled > 0
        assert store.scalar("SELECT count(*) FROM requests") == 2400
    finally:
        stop.set()
        store.close()


# Counts the malloc arenas a process ends up with after 12 threads allocate at once (glibc's malloc_info lists one
# <heap> element per arena); the Store is opened first when asked, as an owner's app would.
_ARENA_PROBE = r"""
import ctypes, os, sys, tempfile, threading
from pipeline.clock import SYSTEM_CLOCK
from pipeline.store import Store

work = tempfile.mkdtemp()
store = Store(os.path.join(work, "a.duckdb"), SYSTEM_CLOCK) if sys.argv[1] == "owner" else None
started, done = threading.Barrier(13), threading.Event()

def allocate():
    started.wait()
    blobs = [bytearray(200_000) for _ in range(5)]  # above pymalloc's limit: from malloc, in this thread's arena
    done.wait()

threads = [threading.Thread(target=allocate) for _ in range(12)]
for t in threads:
    t.start()
started.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
info = os.path.join(work, "malloc.xml")
fp = libc.fopen(info.encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
done.set()
for t in threads:
    t.join()
print(open(info).read().count("<heap nr="), store.malloc_arenas_limited if store else None)
"""


@pytest.mark.skipif(not malloc.CAN_TRIM, reason="glibc's malloc only")
@pytest.mark.parametrize(("role", "environment", "most", "least", "limited"), [
    ("owner", {}, malloc.ARENA_MAX, 1, "True"),
    ("producer", {}, 64, malloc.ARENA_MAX + 1, "None"),  # no DuckDB in the process: the app's malloc untouched
    ("owner", {"MALLOC_ARENA_MAX": "4"}, 4, malloc.ARENA_MAX + 1, "False"),  # the deployment's choice wins
])
def test_an_owner_caps_malloc_arenas_unless_the_environment_chose(role: str, environment: dict[str, str], most: int,
                                                                   least: int, limited: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    result = subprocess.run([sys.executable, "-c", _ARENA_PROBE, role], env={**env, **environment},
                            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    arenas, flag = result.stdout.split()
    assert least <= int(arenas) <= most
    assert flag == limited


def _anonymous_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


@pytest.mark.skipif(not malloc.can_purge_duckdb(), reason="DuckDB built with its jemalloc only")
def test_purging_gives_back_the_pages_duckdb_freed() -> None:
    store = Store(None, SYSTEM_CLOCK)
    try:
        # ~32 MB of DuckDB buffers, freed: jemalloc keeps their pages resident (dirty) until it purges them.
        store.con.execute("CREATE TABLE big AS SELECT range AS n, range * 2 AS m FROM range(2000000)")
        store.con.execute("DROP TABLE big")
        before = _anonymous_rss_bytes()
        assert malloc.purge_duckdb() is True
        assert before - _anonymous_rss_bytes() > 8 * MB
    finally:
        store.close()
