"""Roles that the multi-process tests start as real processes: ``python tests/process_roles.py ROLE ARGS``."""

from __future__ import annotations

import os
import signal
import sys
import time

from pipeline import Monitor


def producer(spool: str, count: int, first_id: int, flush_every: int) -> None:
    """Record ``count`` requests with ids first_id.. and durations id/4, flushing every ``flush_every``."""
    mon = Monitor(spool_dir=spool, flush_interval_seconds=3600, memory_interval_seconds=None)
    for i in range(first_id, first_id + count):
        mon.track_request("/p", "GET", 200, i / 4, request_id=i)
        if (i - first_id + 1) % flush_every == 0:
            mon.flush()
    mon.close()
    print("flushed", mon.stats()["flushed"], flush=True)


def producer_then_hang(spool: str, flushed: int, unflushed: int) -> None:
    """Flush ``flushed`` requests, record ``unflushed`` more, then wait to be killed."""
    mon = Monitor(spool_dir=spool, flush_interval_seconds=3600, memory_interval_seconds=None)
    for i in range(flushed):
        mon.track_request("/p", "GET", 200, 1.0, request_id=i)
    mon.flush()
    for i in range(flushed, flushed + unflushed):
        mon.track_request("/p", "GET", 200, 1.0, request_id=i)
    print("ready", flush=True)
    time.sleep(600)


def ingest_loop(db: str, spool: str, per_run: int) -> None:
    """Own ``db`` and ingest ``spool`` in small transactions until nothing is left."""
    mon = Monitor(db_path=db, ingest_dir=spool, jobs=False, memory_interval_seconds=None)
    assert mon.ingestor is not None
    print("owner", os.getpid(), flush=True)
    while mon.ingestor.run_once(max_segments=per_run) or mon.ingestor.backlog():
        pass
    mon.close()
    print("done", flush=True)


def own_and_wait(db: str) -> None:
    """Own ``db`` until SIGTERM."""
    mon = Monitor(db_path=db, jobs=False, memory_interval_seconds=None)
    signal.signal(signal.SIGTERM, lambda *_: (mon.close(), sys.exit(0)))
    print("owner", os.getpid(), flush=True)
    time.sleep(600)


def publishing_owner(db: str, publish_seconds: int) -> None:
    """Own ``db``, record ~400 requests/s and publish every ``publish_seconds``; print "<wall time> <recorded>"
    four times a second until a line on stdin."""
    import threading

    from pipeline.publish import PublishSettings

    mon = Monitor(db_path=db, memory_interval_seconds=None, flush_interval_seconds=0.25,
                  publish=PublishSettings(interval_seconds=publish_seconds))
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    recorded = 0
    next_report = time.time()
    while not stop.is_set():
        for _ in range(10):
            mon.track_request("/load", "GET", 200, 1.0)
        recorded += 10
        if time.time() >= next_report:
            print(f"{time.time():.3f} {recorded}", flush=True)
            next_report += 0.25
        time.sleep(0.025)
    mon.close()


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    roles = {"producer": producer, "producer_then_hang": producer_then_hang, "ingest_loop": ingest_loop,
             "own_and_wait": own_and_wait, "publishing_owner": publishing_owner}
    fn = roles[role]
    fn(*[int(a) if a.isdigit() else a for a in args])  # type: ignore[operator]
