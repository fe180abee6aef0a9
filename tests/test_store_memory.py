"""What an owner's DuckDB keeps in the host app's memory: capped, and not growing with the file or the threads.

Real DuckDB files, no mocks. The figures under load are in RELIABILITY.md (benchmarks/soak.py).
"""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.clock import SYSTEM_CLOCK
from pipeline.store import CHECKPOINT_THRESHOLD, DEFAULT_MEMORY_LIMIT, Store
from pipeline.tables import REQUESTS, flat_to_columns, with_origin

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
    flat = [v for row in zip(*columns, strict=True) for v in row]
    batch = flat_to_columns(REQUESTS, flat)
    return with_origin(REQUESTS, pa.Table.from_batches([batch]), 1, "host")


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
