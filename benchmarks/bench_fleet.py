"""A fleet's central owner: its ingest rate from object storage against the same segments in a local spool.

The same segments (producer flushes of ``--rows`` requests each, written once by ``Monitor(spool_dir=...)``) are
ingested by the owner's ingest (``pipeline.ingest.Ingestor`` over a fresh DuckDB file), from a local spool
directory (``LocalSpool``) and from an S3 prefix (``ObjectSpool``: list, parallel downloads, the ledger
transaction, then a batch delete). The S3 side is moto's server in a process of its own on 127.0.0.1
(tests/s3_server.py): a Python server, slower per request than MinIO or S3, so the object-store figure is a floor;
it has no network latency either. Uploading the segments is not timed. The two sources alternate, ``--rounds``
times, each on fresh copies; the median is shown, and the ratio between them.

    .venv/bin/python benchmarks/bench_fleet.py [--segments 200] [--rows 1000 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from _common import header, median, stopwatch, table, temp_dir

from pipeline import Monitor
from pipeline.clock import SYSTEM_CLOCK
from pipeline.ingest import Ingestor
from pipeline.logs import ThrottledLog
from pipeline.objectspool import ObjectSpool
from pipeline.objectstore import ObjectStore, ObjectStoreSettings
from pipeline.spool import LocalSpool
from pipeline.store import Store

SERVER = Path(__file__).resolve().parent.parent / "tests" / "s3_server.py"
ROUTES = ("/users/<id>", "/orders/<id>", "/health", "/search")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segments", type=int, default=200, help="segments per size (default 200)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 5_000], help="rows per segment")
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs per source (default 3)")


def make_segments(tmp: Path, segments: int, rows: int) -> list[Path]:
    """``segments`` request segments of ``rows`` rows, as a producer writes them."""
    spool = tmp / f"made-{rows}"
    with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None, flush_interval_seconds=1e6,
                 flush_rows=10**12, max_buffered=4 * rows) as mon:
        for s in range(segments):
            for i in range(rows):
                mon.track_request(ROUTES[i & 3], "GET", 200, float(i % 997) * 0.5, request_id=s * rows + i)
            mon.flush()
    return sorted((spool / "ready").iterdir())


def ingest(source: LocalSpool | ObjectSpool, db: Path) -> tuple[float, int]:
    """(seconds, rows) of draining ``source`` into a fresh DuckDB file."""
    store = Store(db, SYSTEM_CLOCK)
    try:
        ingestor = Ingestor(store, source, SYSTEM_CLOCK, ThrottledLog(SYSTEM_CLOCK))
        loaded = 0

        def drain() -> None:
            nonlocal loaded
            while True:
                got = ingestor.drain()
                loaded += got
                if not got:
                    return

        seconds = stopwatch(drain)
        stored = store.scalar("SELECT count(*) FROM requests")
        if stored != loaded:
            raise SystemExit(f"ingest: loaded {loaded:,} rows but the table holds {stored:,}")
        return seconds, loaded
    finally:
        store.close()


def local_run(tmp: Path, files: list[Path]) -> tuple[float, int]:
    run = tmp / f"local-{uuid.uuid4().hex[:8]}"
    (run / "spool" / "ready").mkdir(parents=True)
    for f in files:
        shutil.copy(f, run / "spool" / "ready" / f.name)
    try:
        return ingest(LocalSpool(run / "spool"), run / "owner.duckdb")
    finally:
        shutil.rmtree(run, ignore_errors=True)


def object_run(tmp: Path, files: list[Path], settings: ObjectStoreSettings, bucket: str) -> tuple[float, int]:
    run = tmp / f"object-{uuid.uuid4().hex[:8]}"
    run.mkdir()
    store = ObjectStore(f"s3://{bucket}/{run.name}", settings)
    for f in files:  # what the hosts' uploaders did: not timed
        store.put_file(store.url.key("ready", f.name), f)
    spool = ObjectSpool(store, str(run))
    try:
        return ingest(spool, run / "owner.duckdb")
    finally:
        spool.close()
        shutil.rmtree(run, ignore_errors=True)


def start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, **CREDENTIALS})
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="accepted for `make bench`; this has no budget")
    _options(parser)
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    header("bench_fleet: the central owner's ingest, object storage against a local spool")
    proc, port = start_server()
    settings = ObjectStoreSettings(endpoint_url=f"http://127.0.0.1:{port}")
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    ObjectStore(f"s3://{bucket}", settings).client.make_bucket(bucket)
    out = []
    try:
        with temp_dir("duckpulse-bench-fleet-") as tmp:
            for rows in args.rows:
                files = make_segments(tmp, args.segments, rows)
                times: dict[str, list[float]] = {"local spool": [], "object store": []}
                for r in range(args.rounds):
                    order = ["local spool", "object store"] if r % 2 == 0 else ["object store", "local spool"]
                    for source in order:
                        seconds, loaded = (local_run(tmp, files) if source == "local spool"
                                           else object_run(tmp, files, settings, bucket))
                        if loaded != args.segments * rows:
                            raise SystemExit(f"{source}: loaded {loaded:,} rows of {args.segments * rows:,}")
                        times[source].append(seconds)
                local = median(times["local spool"])
                for source, seconds_list in times.items():
                    seconds = median(seconds_list)
                    total = args.segments * rows
                    out.append([f"{args.segments} segments x {rows:,} rows", source, f"{seconds:.2f}",
                                f"{total / seconds:,.0f}", f"{args.segments / seconds:,.0f}",
                                f"{local / seconds:.2f}x"])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print()
    print(table(["backlog", "source", "median s", "rows/s", "segments/s", "vs local"], out))
    print(f"\nmedian of {args.rounds} alternated runs per source, each a fresh DuckDB file and a fresh copy of the "
          "same segments; S3 is moto's server on 127.0.0.1 (no network latency; slower per request than S3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
