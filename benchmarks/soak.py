"""Soak: an instrumented Flask app under sustained load, with the exact accounting of every request.

The app runs in its own process (a real threaded werkzeug server on 127.0.0.1) as the embedded owner of a
DuckDB file, with the default flush interval, buffer bound, DuckDB memory limit and scheduled jobs. Werkzeug
answers every request with ``Connection: close``, so each request is a new connection served by a new thread
(~400 threads started per second). Client threads in this process send requests for ``--minutes``; every
``--sample-seconds`` this process samples the app's RSS (psutil, from outside) and every 2 s the app writes its
``Monitor.stats()`` and where its memory is (DuckDB's buffer pool by tag and its allocator, glibc's malloc,
pyarrow's pool, Python's blocks) to a JSON-lines file. At the end the app gets
SIGTERM, whose handler calls ``sys.exit(0)`` (duckpulse's atexit hook makes the final flush), and this process
opens the DuckDB file and checks that every request a client got a response for is a row, or is counted as
dropped or rejected::

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--clients 8] [--rps 400] [--max-buffered N]
                                        [--duckdb-memory-limit 32MB|none] [--bare | --producer]

``--producer`` runs the other process model (DESIGN.md): the app records with ``Monitor(spool_dir=...)``, a
producer that opens no DuckDB database, and this process starts a separate owner, ``duckpulse serve --db DB
--spool DIR --port N``, before the load. After the app has exited (its final segments written) the owner gets
time to ingest the backlog (until ready/ is empty, bounded), then SIGTERM (its own last ingest), and only then is
the DuckDB file opened for the accounting. Both RSS series are sampled and reported; the flat verdict applies
to the host app's, the owner's is reported with its own slope.

RSS is flat when its least-squares slope over the second half of the run is at most ``FLAT_MB_PER_MINUTE``
(the first half covers the warm-up: imports, caches, DuckDB's first checkpoints). ``--bare`` runs the same
app and load without duckpulse, the control for that criterion. Exit status 0 when the accounting is exact,
nothing was dropped, no scheduled job failed and RSS stayed flat; 1 otherwise. Not a test: it runs for minutes.
The figures go to RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Paths the clients request, with their weights; each app route also records one or two queries and a counter.
PATHS = [("/users/{n}", 6), ("/items", 2), ("/search?q={n}", 2), ("/fail", 1), ("/missing/{n}", 1)]
# RSS is flat when its least-squares slope over the second half of the run is at most this (RELIABILITY.md).
FLAT_MB_PER_MINUTE = 0.25
# RSS duckpulse may add to the app, over its RSS after `import flask` (DESIGN.md, issue 14).
ADDED_BUDGET_MB = {"producer": 20, "owner": 80}
# Queries each route records (known here, so the queries table can be checked too): path prefix -> count.
QUERIES_PER_PATH = {"/users/": 2, "/items": 1, "/search": 1, "/fail": 1, "/missing/": 0}


# -- the app process ------------------------------------------------------------------------------------------
def serve(db: str, port_file: str, stats_file: str, max_buffered: int, flush_interval_seconds: float,
          duckdb_memory_limit: str) -> None:
    """Run the instrumented app until SIGTERM; write stats() every 2 s to ``stats_file``.

    ``duckdb_memory_limit`` is also the mode: "bare" (no duckpulse) or "producer" (``db`` is then the spool
    directory the app's ``Monitor(spool_dir=...)`` writes to); anything else makes the app the embedded owner.
    """
    import atexit
    import gc

    from flask import Flask, Response, g, request
    from werkzeug.serving import WSGIRequestHandler, make_server

    rss_after_flask = _own_rss_bytes()  # what duckpulse adds is measured from here (issue 14's budgets)
    holder: list[Any] = []

    def write_final() -> None:
        # Registered before pipeline is imported, so it runs after duckpulse's own atexit hook (LIFO): the
        # figures are those after the final flush that hook made.
        st = holder[0].stats()
        final = {k: st[k] for k in ("recorded", "flushed", "pending", "dropped", "rejected", "sampled_out",
                                    "flush_failures")}
        final["job_failures"] = {name: job["failures"] for name, job in st["jobs"].items()}
        final["job_runs"] = {name: job["runs"] for name, job in st["jobs"].items()}
        Path(stats_file + ".final").write_text(json.dumps(final))

    bare = duckdb_memory_limit == "bare"  # the control: the same app and load without duckpulse
    producer = duckdb_memory_limit == "producer"  # no DuckDB database in this process: segments to a spool
    mon: Any
    if bare:
        mon = _NullMonitor()
    elif producer:
        atexit.register(write_final)
        from pipeline import Monitor

        mon = Monitor(spool_dir=db, max_buffered=max_buffered, flush_interval_seconds=flush_interval_seconds)
    else:
        atexit.register(write_final)
        from pipeline import Monitor

        limit: dict[str, Any] = {}  # "default": Monitor's own default; "none": DuckDB's (80% of RAM)
        if duckdb_memory_limit != "default":
            limit["duckdb_memory_limit"] = None if duckdb_memory_limit == "none" else duckdb_memory_limit
        mon = Monitor(db_path=db, max_buffered=max_buffered, flush_interval_seconds=flush_interval_seconds, **limit)
    holder.append(mon)
    app = Flask("soak")
    app.logger.disabled = True  # /fail raises on purpose: tens of thousands of tracebacks would drown the figures
    integration = "nothing (the control run)" if bare else _instrument(app, mon, g, request)
    hits = mon.counter("soak_hits", {"app": "soak"})

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> dict[str, Any]:
        mon.track_query(f"SELECT * FROM users WHERE id = {user_id}", random.uniform(0.1, 3.0))
        with mon.time_query("load_orders", f"SELECT * FROM orders WHERE user_id = {user_id} AND total > 10.5"):
            total = sum(range(user_id % 100))
        hits.inc()
        return {"id": user_id, "total": total}

    @app.get("/items")
    def items() -> dict[str, Any]:
        mon.track_query("SELECT id, name FROM items ORDER BY id LIMIT 50", random.uniform(0.5, 8.0))
        hits.inc()
        return {"items": list(range(50))}

    @app.get("/search")
    def search() -> dict[str, Any]:
        q = request.args.get("q", "")
        mon.track_query(f"SELECT * FROM items WHERE name LIKE '%{q}%'", random.uniform(1.0, 20.0))
        mon.histogram("search_terms_len").observe(len(q))
        return {"q": q, "hits": []}

    @app.get("/fail")
    def fail() -> Response:
        mon.track_query("UPDATE accounts SET balance = balance - 100 WHERE id = 7", 2.0, success=False)
        raise RuntimeError("a failing endpoint, on purpose")

    class KeepAlive(WSGIRequestHandler):
        # HTTP/1.1, but werkzeug still closes every connection after its response (see its serving.py).
        protocol_version = "HTTP/1.1"

        def log_request(self, *args: Any, **kwargs: Any) -> None:  # 100k access-log lines help nobody here
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=KeepAlive)

    # The documented way to get a final flush on SIGTERM: the app's own handler exits normally, and
    # duckpulse's atexit hook flushes; duckpulse installs no signal handler of its own.
    def on_term(*_: object) -> None:
        sys.exit(0)  # raised in the main thread, inside serve_forever

    signal.signal(signal.SIGTERM, on_term)
    stop = threading.Event()

    mallinfo2 = _mallinfo2()
    duckdb_allocator = None if bare or producer else _duckdb_allocator()

    def write_stats() -> None:
        with open(stats_file, "a") as f:
            while not stop.wait(2.0):
                st = mon.stats()
                # DuckDB's own memory (its buffer pool caches the growing file) lives in this process too.
                tags = {}
                if mon.store is not None:
                    with mon.store.reading() as reader:
                        tags = dict(reader.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory() "
                                                   "WHERE memory_usage_bytes > 0").fetchall())
                # Where the rest of the process's memory is: glibc's heap (in use / free but kept), pyarrow's
                # pool, Python's small-object allocator, and the threads that allocate from them.
                mi = mallinfo2() if mallinfo2 else None
                je = duckdb_allocator() if duckdb_allocator else (None, None)
                f.write(json.dumps({"t": time.time(), "pending": st["pending"], "recorded": st["recorded"],
                                    "flushed": st["flushed"], "dropped": st["dropped"],
                                    "flush_failures": st["flush_failures"],
                                    "buffered_bytes": st["buffered_bytes"],
                                    "duckdb_bytes": sum(tags.values()), "duckdb_tags": tags,
                                    # pyarrow only if something loaded it (duckpulse does not any more)
                                    "arrow_bytes": (sys.modules["pyarrow"].total_allocated_bytes()
                                                    if "pyarrow" in sys.modules else 0),
                                    "je_allocated": je[0], "je_resident": je[1],
                                    "malloc_used": mi.uordblks + mi.hblkhd if mi else None,
                                    "malloc_free": mi.fordblks if mi else None,
                                    "py_blocks": sys.getallocatedblocks(),
                                    "threads": threading.active_count(),
                                    "objects": len(gc.get_objects())}) + "\n")
                f.flush()

    threading.Thread(target=write_stats, daemon=True).start()
    Path(port_file + ".tmp").write_text(json.dumps({"port": server.port, "integration": integration,
                                                   "rss_after_flask": rss_after_flask,
                                                   "max_buffered": mon.max_buffered,
                                                   "memory_limit": mon.store.memory_limit if mon.store else None}))
    os.rename(port_file + ".tmp", port_file)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        server.server_close()


class _NullMonitor:
    """The control run's stand-in for Monitor: the app calls the same methods, nothing is recorded."""

    store = None
    max_buffered = 0

    def stats(self) -> dict[str, Any]:
        return {"pending": 0, "recorded": 0, "flushed": 0, "dropped": {}, "flush_failures": 0, "buffered_bytes": 0}

    def track_query(self, *args: Any, **kwargs: Any) -> None:
        pass

    def time_query(self, *args: Any, **kwargs: Any) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def counter(self, *args: Any, **kwargs: Any) -> _NullMonitor:
        return self

    def histogram(self, *args: Any, **kwargs: Any) -> _NullMonitor:
        return self

    def inc(self, *args: Any) -> None:
        pass

    def observe(self, *args: Any) -> None:
        pass


def _own_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _mallinfo2() -> Any:
    """glibc's ``mallinfo2()`` (bytes in use and free in malloc's arenas), or None off glibc."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost")]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = MallInfo2
    return fn


def _duckdb_allocator() -> Any:
    """A function returning (allocated, resident) bytes of the jemalloc that DuckDB's wheel bundles, or None."""
    import ctypes
    import glob

    import duckdb

    found = glob.glob(str(Path(duckdb.__file__).parent.parent / "_duckdb*.so"))
    try:
        mallctl = ctypes.CDLL(found[0]).duckdb_je_mallctl
    except (IndexError, OSError, AttributeError):
        return None
    mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p,
                        ctypes.c_size_t]

    def read(name: bytes) -> int:
        value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
        mallctl(name, ctypes.byref(value), ctypes.byref(size), None, 0)
        return value.value

    def stats() -> tuple[int, int]:
        epoch, size = ctypes.c_uint64(1), ctypes.c_size_t(8)
        mallctl(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), 8)  # refresh the stats
        return read(b"stats.allocated"), read(b"stats.resident")
    return stats


def _instrument(app: Any, mon: Any, g: Any, request: Any) -> str:
    """The Flask integration when it exists; else the same thing by hand with request hooks."""
    try:
        from pipeline.integrations.flask import DuckPulse
    except ImportError:
        pass
    else:
        try:
            DuckPulse(app, monitor=mon)
            return "pipeline.integrations.flask.DuckPulse"
        except TypeError:
            pass

    @app.before_request
    def _start() -> None:
        g.duckpulse_start = time.perf_counter()

    @app.after_request
    def _record(response: Any) -> Any:
        rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        mon.track_request(rule, request.method, response.status_code,
                          (time.perf_counter() - g.duckpulse_start) * 1000.0)
        return response

    return "before_request/after_request hooks calling Monitor.track_request"


# -- the load and the measurement ------------------------------------------------------------------------------
class Client(threading.Thread):
    """Sends requests until told to stop (http.client reconnects after each response the server closes);
    counts what it got back."""

    def __init__(self, port: int, stop: threading.Event, interval_seconds: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.interval = port, stop, interval_seconds
        self.rng = random.Random(seed)
        self.answered: Counter[str] = Counter()  # path kind -> responses received
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.latencies_ms: list[float] = []

    def run(self) -> None:
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        paths, weights = zip(*PATHS, strict=True)
        next_at = time.perf_counter()
        while not self.stop.is_set():
            template = self.rng.choices(paths, weights)[0]
            path = template.format(n=self.rng.randrange(1, 10_000))
            started = time.perf_counter()
            try:
                con.request("GET", path)
                resp = con.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                con.close()
                con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            if len(self.latencies_ms) < 200_000:
                self.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            self.statuses[resp.status] += 1
            self.answered[template.split("{")[0].split("?")[0]] += 1
            if self.interval:
                next_at += self.interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.perf_counter()  # behind schedule: do not burst to catch up
        con.close()


def _smaps(pid: int) -> dict[str, tuple[str, int]]:
    """The process's mappings: start address -> (kind, resident bytes); kind is heap, stack, file or anon."""
    out: dict[str, tuple[str, int]] = {}
    key, kind = "", ""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                    key = head.split("-")[0]
                    kind = ("heap" if name == "[heap]" else "anon" if not name else
                            "stack" if name.startswith("[stack") else "file" if name.startswith("/") else name)
                elif head == "Rss:":
                    out[key] = (kind, int(line.split()[1]) * 1024)
    except OSError:
        pass
    return out


def _smaps_growth(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> dict[str, int]:
    """Resident bytes gained between two snapshots, by kind of mapping."""
    growth: Counter[str] = Counter()
    for key, (kind, size) in after.items():
        growth[kind] += size - before.get(key, (kind, 0))[1]
    for key, (kind, size) in before.items():
        if key not in after:
            growth[kind] -= size
    return dict(growth)


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load lasts (default 10)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--rps", type=float, default=400.0,
                        help="target requests per second over all clients; 0 = as fast as they can (default 400)")
    parser.add_argument("--max-buffered", type=int, default=1_000_000, help="Monitor(max_buffered=...)")
    parser.add_argument("--flush-interval", type=float, default=1.0, help="Monitor(flush_interval_seconds=...)")
    parser.add_argument("--sample-seconds", type=float, default=2.0, help="RSS sampling period (default 2)")
    parser.add_argument("--duckdb-memory-limit", default="default",
                        help="Monitor(duckdb_memory_limit=...), e.g. 32MB; 'none' for DuckDB's own default "
                             "(80%% of RAM); default: Monitor's default")
    parser.add_argument("--bare", action="store_true",
                        help="the control: the same app and load without duckpulse (only RSS is measured)")
    parser.add_argument("--producer", action="store_true",
                        help="the app is a producer (Monitor(spool_dir=...)) and a separate `duckpulse serve` "
                             "process owns the DuckDB file; both RSS series are reported")
    parser.add_argument("--owner-drain-seconds", type=float, default=300.0,
                        help="--producer: how long the owner may take to ingest the backlog after the app exited")
    parser.add_argument("--dir", default=None, help="work directory (default: a fresh temporary one)")
    parser.add_argument("--serve", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        db, port_file, stats_file, max_buffered, flush, limit = args.serve
        serve(db, port_file, stats_file, int(max_buffered), float(flush), limit)
        return 0

    if args.producer and (args.bare or args.duckdb_memory_limit != "default"):
        parser.error("--producer takes neither --bare nor --duckdb-memory-limit (the owner, `duckpulse serve`, "
                     "runs with Monitor's defaults)")
    import psutil

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="duckpulse-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    db, port_file, stats_file = work / "soak.duckdb", work / "port.json", work / "stats.jsonl"
    spool, owner_log = work / "spool", work / "owner.log"
    for p in (db, Path(str(db) + ".wal"), port_file, stats_file, Path(str(stats_file) + ".final"), owner_log):
        p.unlink(missing_ok=True)
    shutil.rmtree(spool, ignore_errors=True)
    owner = _start_owner(db, spool, owner_log) if args.producer else None
    if args.producer and owner is None:
        return 1
    mode = "producer" if args.producer else "bare" if args.bare else args.duckdb_memory_limit
    app_proc = subprocess.Popen([sys.executable, __file__, "--serve", str(spool if args.producer else db),
                                 str(port_file), str(stats_file), str(args.max_buffered), str(args.flush_interval),
                                 mode])
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if app_proc.poll() is not None or time.monotonic() > deadline:
            print("the app process did not start", file=sys.stderr)
            return 1
        time.sleep(0.05)
    info = json.loads(port_file.read_text())
    limit = ("no duckpulse" if args.bare else f"DuckDB memory_limit {info['memory_limit']}" if owner is None else
             f"the app a producer into {spool}, owner pid {owner.pid}: {' '.join(owner.args)}")
    print(f"== soak: {args.minutes:g} min, {args.clients} client threads, target "
          f"{'unlimited' if not args.rps else f'{args.rps:g} req/s'}, {limit}, "
          f"app pid {app_proc.pid} on port "
          f"{info['port']}, instrumented with {info['integration']}; work dir {work}", flush=True)

    proc = psutil.Process(app_proc.pid)
    owner_ps = psutil.Process(owner.pid) if owner is not None else None
    stop = threading.Event()
    interval = args.clients / args.rps if args.rps else 0.0
    clients = [Client(info["port"], stop, interval, seed) for seed in range(args.clients)]
    started = time.monotonic()
    for c in clients:
        c.start()
    rss: list[tuple[float, int]] = []
    owner_rss: list[tuple[float, int]] = []
    end = started + args.minutes * 60
    warm_up_seconds = min(60.0, args.minutes * 6)
    maps_warm: dict[str, tuple[str, int]] = {}
    while time.monotonic() < end:
        rss.append((time.monotonic() - started, proc.memory_info().rss))
        if not maps_warm and rss[-1][0] >= warm_up_seconds:
            maps_warm = _smaps(app_proc.pid)
        if owner_ps is not None:
            owner_rss.append((rss[-1][0], owner_ps.memory_info().rss))
        done = sum(sum(c.answered.values()) for c in clients)
        print(f"  t={rss[-1][0]:6.0f}s  rss={_mb(rss[-1][1])}  "
              + (f"owner rss={_mb(owner_rss[-1][1])}  " if owner_rss else "") + f"responses={done:,}", flush=True)
        time.sleep(min(args.sample_seconds, max(0.0, end - time.monotonic())))
    stop.set()
    for c in clients:
        c.join(timeout=60)
    elapsed = time.monotonic() - started
    rss.append((elapsed, proc.memory_info().rss))
    if owner_ps is not None:
        owner_rss.append((elapsed, owner_ps.memory_info().rss))
    maps_growth = _smaps_growth(maps_warm, _smaps(app_proc.pid)) if maps_warm else {}

    app_proc.send_signal(signal.SIGTERM)
    rc = app_proc.wait(timeout=120)
    owner_ok = True
    if owner is not None:  # the app's final segments are written: the owner ingests them, then stops
        owner_ok = _stop_owner(owner, spool, owner_log, args.owner_drain_seconds)

    answered: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    for c in clients:
        answered.update(c.answered)
        statuses.update(c.statuses)
    sent = sum(answered.values())
    errors = sum(c.errors for c in clients)
    latencies = sorted(x for c in clients for x in c.latencies_ms)
    samples = [json.loads(line) for line in stats_file.read_text().splitlines() if line.strip()]

    print("\n== results")
    print(f"  duration                      {elapsed:.0f} s, exit status of the app {rc}")
    print(f"  requests answered (clients)   {sent:,}  ({sent / elapsed:,.0f}/s), connection errors {errors}")
    print(f"  statuses seen by clients      {dict(sorted(statuses.items()))}")
    ok = rc == 0 and errors == 0 and owner_ok
    if not args.bare:
        ok = _accounting(db, stats_file, samples, answered, sent, errors, info, args.producer) and ok
    objects = [s["objects"] for s in samples] or [0]
    print(f"  Python objects in the app     first {objects[0]:,} / after 1 min {objects[min(30, len(objects) - 1)]:,} "
          f"/ last {objects[-1]:,}")
    flat = _rss_verdict(rss, elapsed, warm_up_seconds)
    if info.get("rss_after_flask") and not args.bare:
        added = rss[-1][1] - info["rss_after_flask"]
        budget = ADDED_BUDGET_MB["producer" if args.producer else "owner"]
        print(f"  {'RSS added over import flask':<30}{_mb(added)} at the end (budget <= {budget} MB as "
              f"{'a producer' if args.producer else 'the embedded owner'}): "
              f"{'PASS' if added <= budget * 2**20 else 'OVER'}")
    if owner_rss:
        _rss_verdict(owner_rss, elapsed, warm_up_seconds, "owner")
    if samples:
        t0 = samples[0]["t"]
        w = next((x for x in samples if x["t"] - t0 >= warm_up_seconds), samples[0])
        z = samples[-1]

        def delta(key: str) -> str:
            a, b = w.get(key), z.get(key)
            return "n/a" if a is None or b is None else f"{_mb(a)} -> {_mb(b)}"
        print(f"  after warm-up -> last         DuckDB {delta('duckdb_bytes')} (its allocator: in use "
              f"{delta('je_allocated')}, resident {delta('je_resident')}), pyarrow {delta('arrow_bytes')}, "
              f"malloc in use {delta('malloc_used')}, malloc free {delta('malloc_free')}, Python blocks "
              f"{w['py_blocks']:,} -> {z['py_blocks']:,}, threads {w['threads']} -> {z['threads']}")
    if maps_growth:
        print("  RSS gained after warm-up by   "
              + ", ".join(f"{k} {v / 2**20:+.1f} MB" for k, v in sorted(maps_growth.items(), key=lambda kv: -kv[1])
                          if abs(v) >= 2**20 / 10))
    if latencies:
        q = statistics.quantiles(latencies, n=100)
        print(f"  client latency p50/p99        {q[49]:.2f} / {q[98]:.2f} ms")
    ok = ok and flat
    what = "RSS flat" if args.bare else "every answered request is a row or a counted drop, RSS flat, " \
        "buffer within its bound"
    if args.producer:
        what += " (RSS: the host app's; the owner's is reported, not judged), the owner ingested everything"
    print(f"\n{'PASS' if ok else 'FAIL'}: {what}")
    return 0 if ok else 1


def _start_owner(db: Path, spool: Path, log: Path) -> subprocess.Popen[bytes] | None:
    """Start ``duckpulse serve`` on a free port and wait until its dashboard is up; None if it does not start."""
    exe = Path(sys.executable).with_name("duckpulse")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(exe), "serve", "--db", str(db), "--spool", str(spool), "--port", str(port)]
    with open(log, "wb") as out:
        owner = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "dashboard" not in log.read_text():
        if owner.poll() is not None or time.monotonic() > deadline:
            print(f"the owner process did not start: {' '.join(cmd)}\n{log.read_text()}", file=sys.stderr)
            owner.kill()
            return None
        time.sleep(0.05)
    return owner


def _stop_owner(owner: subprocess.Popen[bytes], spool: Path, log: Path, drain_seconds: float) -> bool:
    """Let the owner ingest the spool's backlog (bounded), stop it with SIGTERM; True when it left nothing."""
    from pipeline.spool import backlog

    t0 = time.monotonic()
    waiting = backlog(spool)
    while backlog(spool) and time.monotonic() - t0 < drain_seconds and owner.poll() is None:
        time.sleep(0.2)
    drained = time.monotonic() - t0
    left_before_stop = backlog(spool)
    owner.send_signal(signal.SIGTERM)
    try:
        rc = owner.wait(timeout=120)
    except subprocess.TimeoutExpired:
        owner.kill()
        rc = owner.wait()
    left, quarantined = backlog(spool), len(list((spool / "quarantine").glob("*")))
    print(f"  owner                         {waiting} ready segments when the app exited, {left_before_stop} after "
          f"{drained:.1f} s; after SIGTERM: exit status {rc}, {left} left in ready/, {quarantined} quarantined; "
          f"its log: {' / '.join(line for line in log.read_text().splitlines()[-2:])}")
    return rc == 0 and left == 0 and quarantined == 0


def _accounting(db: Path, stats_file: Path, samples: list[dict[str, Any]], answered: Counter[str], sent: int,
                errors: int, info: dict[str, Any], producer: bool = False) -> bool:
    """Print and check the exact accounting of an instrumented run: every answered request is a row or counted."""
    import duckdb

    expected_queries = sum(n * QUERIES_PER_PATH[k] for k, n in answered.items())
    final = json.loads(Path(str(stats_file) + ".final").read_text())
    with contextlib.closing(duckdb.connect(str(db), read_only=True)) as con:
        def one(sql: str) -> Any:
            row = con.execute(sql).fetchone()
            return None if row is None else row[0]
        request_rows = int(one("SELECT count(*) FROM requests"))
        query_rows = int(one("SELECT count(*) FROM queries"))
        by_status = dict(con.execute("SELECT status, count(*) FROM requests GROUP BY 1 ORDER BY 1").fetchall())
        sample_rows = int(one("SELECT count(*) FROM process_samples"))
        point_rows = int(one("SELECT count(*) FROM points"))
        leaked = int(one("SELECT count(*) FROM queries WHERE regexp_matches(fingerprint, '[0-9]')"))

    dropped = sum(final["dropped"].values())
    rejected = sum(final["rejected"].values())
    max_pending = max((s["pending"] for s in samples), default=0)
    max_buffered_bytes = max((s["buffered_bytes"] for s in samples), default=0)
    duckdb_mem = [s["duckdb_bytes"] for s in samples] or [0]
    exact = sent == request_rows + dropped + rejected and dropped == 0 and errors == 0
    queries_exact = expected_queries == query_rows
    print(f"  request rows in DuckDB        {request_rows:,}  by status {by_status}")
    print(f"  dropped / rejected (counted)  {dropped} {final['dropped']} / {rejected} {final['rejected']}")
    print(f"  accounting                    {sent:,} == {request_rows:,} + {dropped} + {rejected}: "
          f"{'EXACT' if sent == request_rows + dropped + rejected else 'MISMATCH'}")
    print(f"  query rows (expected)         {query_rows:,} ({expected_queries:,}): "
          f"{'EXACT' if queries_exact else 'MISMATCH'}; fingerprints holding a digit: {leaked}")
    print(f"  points / process samples      {point_rows:,} / {sample_rows:,}")
    print(f"  monitor at exit               recorded {final['recorded']:,} flushed {final['flushed']:,} "
          f"pending {final['pending']} flush_failures {final['flush_failures']}")
    job_failures = sum(final["job_failures"].values())
    print(f"  scheduled jobs                runs {final['job_runs']}, failures {job_failures}")
    print(f"  buffer pending, max sampled   {max_pending:,} of max_buffered {info['max_buffered']:,} "
          f"({len(samples)} samples every 2 s); buffered bytes max {max_buffered_bytes:,}")
    if producer:
        print(f"  DuckDB memory                 none in the app (a producer); database file {_mb(db.stat().st_size)}")
    else:
        print(f"  DuckDB memory first/last/max  {_mb(duckdb_mem[0])} / {_mb(duckdb_mem[-1])} / "
              f"{_mb(max(duckdb_mem))}; database file {_mb(db.stat().st_size)}; last by tag "
              + ", ".join(f"{k} {_mb(v)}" for k, v in (samples[-1]["duckdb_tags"] if samples else {}).items()))
    within_bound = max_pending <= info["max_buffered"]
    return exact and queries_exact and final["pending"] == 0 and leaked == 0 and within_bound and job_failures == 0


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes) points, in MB per minute."""
    if len(points) < 3:
        return 0.0
    mt, mr = statistics.fmean(t for t, _ in points), statistics.fmean(r for _, r in points)
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (r - mr) for t, r in points) / var * 60 / 2**20 if var else 0.0


def _rss_verdict(rss: list[tuple[float, int]], elapsed: float, warm_up_seconds: float, who: str = "app") -> bool:
    """Print the RSS figures of ``who``; True when RSS is flat (see FLAT_* above and RELIABILITY.md)."""
    first_rss, last_rss, max_rss = rss[0][1], rss[-1][1], max(r for _, r in rss)
    after_warm_up = [(t, r) for t, r in rss if t >= warm_up_seconds]
    second_half = [(t, r) for t, r in rss if t >= elapsed / 2]
    slope_all, slope_half = _slope(after_warm_up), _slope(second_half)
    flat = slope_half <= FLAT_MB_PER_MINUTE
    note = "" if who == "app" else " (reported, not part of the verdict)"
    print(f"  {who + ' RSS first/last/max':<30}{_mb(first_rss)} / {_mb(last_rss)} / {_mb(max_rss)}; after warm-up "
          f"{_mb(after_warm_up[0][1])}, at half time {_mb(second_half[0][1])}")
    print(f"  {'RSS trend' if who == 'app' else who + ' RSS trend':<30}{slope_all:+.2f} MB/min after warm-up, "
          f"{slope_half:+.2f} MB/min over the second half (flat: <= {FLAT_MB_PER_MINUTE} MB/min): "
          f"{'FLAT' if flat else 'GROWING'}{note}")
    if elapsed >= 1200:  # long runs: does it level off at the end?
        last_10 = [(t, r) for t, r in rss if t >= elapsed - 600]
        print(f"  {who + ' RSS, last 10 minutes':<30}{_slope(last_10):+.2f} MB/min (from {_mb(last_10[0][1])})")
    return flat


if __name__ == "__main__":
    sys.exit(main())
