"""Processes that the fault tests start: ``python tests/test_faults_roles.py ROLE ARGS``. Holds no tests.

``drive`` runs a Monitor (owner or producer) that obeys one command per line on stdin and answers each with
one JSON line on stdout, so a test can fill a disk, kill an owner or take space away between two steps of a
real process. The other roles record on their own and are ended by a signal.
"""

from __future__ import annotations

import json
import mmap
import os
import resource
import signal
import struct
import sys
import time
from typing import Any

from pipeline import Monitor, sigterm

STAT_KEYS = ("recorded", "flushed", "pending", "dropped", "rejected", "flush_failures", "last_flush_error",
             "ingest")


def _stats(mon: Monitor) -> dict[str, Any]:
    st = mon.stats()
    return {k: st[k] for k in STAT_KEYS if k in st}


def drive(role: str, path: str, ingest_dir: str = "") -> None:
    """A monitor under remote control. Commands, one per line:

    ``record N FIRST`` N requests with ids FIRST.. ; ``flush``; ``ingest``; ``fsize BYTES|max`` (RLIMIT_FSIZE,
    the soft limit on the size of any file this process writes); ``wal_autocheckpoint SIZE``; ``count``
    (rows and distinct ids in requests, owner only); ``close``.
    """
    # Past RLIMIT_FSIZE the kernel sends SIGXFSZ, which kills by default; ignored, the write fails with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Nothing flushes on its own (neither the interval nor flush_rows): the test decides when.
    common: dict[str, Any] = {"jobs": False, "memory_interval_seconds": None, "flush_interval_seconds": 3600,
                              "flush_rows": 10**9}
    if role == "owner":
        mon = Monitor(db_path=path, ingest_dir=ingest_dir or None, **common)
    else:
        mon = Monitor(spool_dir=path, **common)
    print(json.dumps({"pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        reply: dict[str, Any] = {}
        if cmd == "record":
            n, first = int(args[0]), int(args[1])
            for i in range(first, first + n):
                mon.track_request("/r", "GET", 200, 1.0, request_id=i)
        elif cmd == "flush":
            reply["ok"] = mon.flush()
        elif cmd == "ingest":
            reply["rows"] = mon.ingest_now()
        elif cmd == "fsize":
            limit = resource.RLIM_INFINITY if args[0] == "max" else int(args[0])
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        elif cmd == "wal_autocheckpoint":
            # Test scale: make DuckDB checkpoint after a few flushes instead of after 16 MB of WAL.
            assert mon.store is not None
            mon.store.con.execute(f"PRAGMA wal_autocheckpoint='{args[0]}'")
        elif cmd == "count":
            assert mon.store is not None
            reply["rows"], reply["ids"] = mon.store.fetchall(
                "SELECT count(*), count(DISTINCT request_id) FROM requests")[0]
        elif cmd == "close":
            mon.close()
        reply["stats"] = _stats(mon)
        print(json.dumps(reply), flush=True)
        if cmd == "close":
            return


def term_exits(role: str, handler: str, path: str, count: int) -> None:
    """Record ``count`` requests as an owner or a producer, print, then wait for a signal.

    With ``handler`` == "exit" the app's SIGTERM handler, installed after Monitor(), calls sys.exit(0); with "none"
    SIGTERM is left to Monitor(). Prints whether Monitor() chained its SIGTERM handler (pipeline/sigterm.py).
    """
    common: dict[str, Any] = {"jobs": False, "memory_interval_seconds": None, "flush_interval_seconds": 3600}
    mon = Monitor(db_path=path, **common) if role == "owner" else Monitor(spool_dir=path, **common)
    chained = signal.getsignal(signal.SIGTERM) is sigterm._on_sigterm
    if handler == "exit":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for i in range(count):
        mon.track_request("/t", "GET", 200, 1.0, request_id=i)
    print(json.dumps({"chained": chained, "recorded": mon.stats()["recorded"]}), flush=True)
    time.sleep(600)


def paced(spool: str, counter_file: str, rate: int, flush_interval: float) -> None:
    """Record ``rate`` requests per second (ids 0, 1, ...) until killed; the flusher thread flushes every
    ``flush_interval`` seconds. After each record the count so far is stored in ``counter_file`` (mmap), so
    whoever kills this process knows exactly how many were recorded."""
    with open(counter_file, "r+b") as f:
        shared = mmap.mmap(f.fileno(), 8)
    mon = Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None, flush_interval_seconds=flush_interval)
    period = 1.0 / rate
    next_at = time.perf_counter()
    i = 0
    print("started", flush=True)
    while True:
        mon.track_request("/k", "GET", 200, 1.0, request_id=i)
        i += 1
        struct.pack_into("<q", shared, 0, i)
        next_at += period
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.perf_counter()  # behind: never burst above the rate to catch up


def big_flushes(spool: str, rows: int) -> None:
    """Flush segments of ``rows`` requests back to back until killed (to be killed mid-write)."""
    mon = Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None, flush_interval_seconds=3600)
    i = 0
    print("started", flush=True)
    while True:
        for _ in range(rows):
            mon.track_request("/w", "GET", 200, 1.0, request_id=i)
            i += 1
        mon.flush()


def webhook_sink(mode: str) -> None:
    """An HTTP server for webhooks on 127.0.0.1: ``hang`` reads each request and never answers, ``fail``
    answers 500, ``ok`` answers 204. Prints its port, then one line per request received."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            print("request", flush=True)
            if mode == "hang":
                time.sleep(600)
            self.send_response(500 if mode == "fail" else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    name, *argv = sys.argv[1:]
    fns = {"drive": drive, "term_exits": term_exits, "paced": paced, "big_flushes": big_flushes,
           "webhook_sink": webhook_sink}
    fn = fns[name]
    fn(*[int(a) if a.isdigit() else float(a) if a.replace(".", "", 1).isdigit() else a  # type: ignore[operator]
         for a in argv])
