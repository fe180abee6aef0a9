"""gunicorn with 4 workers and no `duckpulse serve`: the workers settle ownership among themselves.

The owner worker is SIGKILLed twice under load. Every request answered by a process that lived to the end is a
row, exactly once; a killed process loses only the tail it answered since its last flush (at most one flush
interval, one flusher tick and the flush's own time before its kill); and the rules and webhook of duckpulse.toml
fire after each handover.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_deploy_gunicorn import Lines, _stop

from pipeline import Monitor
from pipeline.owner_lock import holder

pytest.importorskip("gunicorn", reason="gunicorn is in the `test` extra")

APPS = Path(__file__).resolve().parent / "apps"
WORKERS = 4
FLUSH_SECONDS = 0.2
TICK_SECONDS = FLUSH_SECONDS / 4  # the flusher checks every min(0.1, interval / 4) s
FLUSH_ALLOWANCE_SECONDS = 0.15
DEADLINE_SECONDS = 30


class Hooks(ThreadingHTTPServer):
    """The webhook receiver: every notification duckpulse POSTs, with the time it arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.received.append((time.monotonic(), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def firing(self, route: str) -> list[float]:
        return [t for t, n in self.received if n["state"] == "firing" and n["labels"].get("route") == route]


class Load:
    """Clients requesting /items/<n> without pause; each answer is kept with its worker's pid and its time."""

    def __init__(self, base: str, clients: int = 4) -> None:
        self.base = base
        self.answered: list[tuple[int, float]] = []  # (pid, when the answer arrived)
        self.failed = 0  # requests the killed workers never answered (connection reset): not counted as answered
        self._next = iter(range(10**9))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                n = next(self._next)
            try:
                # A long timeout: a surviving worker's answer must arrive even on a loaded machine, or its row would
                # count as a request it never answered.
                with urllib.request.urlopen(f"{self.base}/items/{n}", timeout=120) as answer:
                    pid = json.load(answer)["pid"]
            except (OSError, urllib.error.URLError, ValueError, http.client.HTTPException):
                # A worker killed half-way through its answer cuts the body short (IncompleteRead): not answered.
                with self._lock:
                    self.failed += 1
                continue
            with self._lock:
                self.answered.append((pid, time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def get(url: str) -> tuple[int, int]:
    """(status, pid) of one request."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.load(answer)["pid"]
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)["pid"]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[dict[str, Any]]:
    hooks = Hooks()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    db = tmp_path / "metrics.duckdb"
    (tmp_path / "duckpulse.toml").write_text(f"""\
[recording]
flush_interval_seconds = {FLUSH_SECONDS}
memory_interval_seconds = false

[alerts]
interval_seconds = 0.5
default_rules = false

[[rule]]
name = "broken_route"
metric = "error_rate"
aggregation = "count"
op = "gte"
value = 3
by = ["route"]
window_seconds = 120
level = "critical"
message = "a route answers 500"

[[notifier]]
type = "webhook"
url = "http://127.0.0.1:{hooks.server_port}/hook"
retries = 2
backoff_seconds = 0.2
""")
    env = {**os.environ, "FLASK_DUCKPULSE_DB_PATH": str(db)}
    app = subprocess.Popen([sys.executable, "-m", "gunicorn", "--chdir", str(APPS), "--bind", "127.0.0.1:0",
                            "--workers", str(WORKERS), "--graceful-timeout", "30", "workers_app:app"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert app.stdout is not None
        out = Lines(app.stdout)
        (listening,) = out.wait_for(r"Listening at: (http://127\.0\.0\.1:\d+)")
        out.wait_for(r"Booting worker with pid: (\d+)", count=WORKERS)
        yield {"db": db, "app": listening[1], "gunicorn": app, "hooks": hooks, "out": out}
    finally:
        _stop(app)
        hooks.shutdown()
        hooks.server_close()


def wait_for_owner(db: Path, not_pids: set[int]) -> int:
    """The pid holding the owner lock, once it is a live process not in ``not_pids``."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        text = holder(db)
        if text.isdigit() and int(text) not in not_pids:
            try:
                os.kill(int(text), 0)
                return int(text)
            except ProcessLookupError:
                pass
        time.sleep(0.05)  # the workers claim on their own schedule (every second): nothing to call here
    raise AssertionError(f"no new owner of {db} within {DEADLINE_SECONDS} s")


def test_workers_hand_ownership_over_when_the_owner_is_killed(deployment: dict[str, Any]) -> None:
    db, base, hooks = deployment["db"], deployment["app"], deployment["hooks"]
    load = Load(base)
    killed: dict[int, float] = {}  # pid -> when it was killed
    takeover_seconds: list[float] = []
    try:
        owner = wait_for_owner(db, set())
        for phase in (1, 2, 3):
            # Make the file's rule fire: answers 500 on a route of this phase, recorded by whichever worker.
            assert [get(f"{base}/broken{phase}")[0] for _ in range(4)] == [500] * 4
            deadline = time.monotonic() + DEADLINE_SECONDS
            while not hooks.firing(f"/broken{phase}"):
                assert time.monotonic() < deadline, f"no webhook for /broken{phase} (owner {owner})"
                time.sleep(0.05)  # the owner sweeps every 0.5 s and posts from its webhook thread
            if phase == 3:
                break
            time.sleep(1.0)  # let the load run against this owner for a while before the kill
            victim = owner
            killed[victim] = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            owner = wait_for_owner(db, set(killed))
            takeover_seconds.append(time.monotonic() - killed[victim])
        time.sleep(1.0)
    finally:
        load.stop()
    _stop(deployment["gunicorn"])  # graceful: every worker flushes, the owner ingests a last time
    assert deployment["gunicorn"].returncode == 0

    with Monitor(db_path=db, role="owner", jobs=False, memory_interval_seconds=None) as mon:
        mon.ingest_now()  # what workers spooled after the last owner's final ingest, as the next start would
        assert mon.store is not None
        rows = dict(mon.store.fetchall("SELECT pid, count(*) FROM requests WHERE route = '/items/<int:item_id>' "
                                       "GROUP BY pid"))
        [(total, distinct)] = mon.store.fetchall("SELECT count(*), count(DISTINCT (pid, request_id)) FROM requests")
        broken = dict(mon.store.fetchall("SELECT route, count(*) FROM requests WHERE status = 500 GROUP BY route"))
        ids = {pid: [i for (i,) in mon.store.fetchall("SELECT request_id FROM requests WHERE pid = $pid ORDER BY 1",
                                                     {"pid": pid})] for pid in killed}
    assert total == distinct, "a request recorded twice"
    assert broken == {"/broken1": 4, "/broken2": 4, "/broken3": 4}
    answered = Counter(pid for pid, _ in load.answered)
    assert set(rows) <= set(answered)
    per_pid: dict[int, list[float]] = defaultdict(list)
    for pid, at in load.answered:
        per_pid[pid].append(at)
    # One flush interval, one flusher tick, and what the last flush itself takes on a loaded 2-core machine.
    window = FLUSH_SECONDS + TICK_SECONDS + FLUSH_ALLOWANCE_SECONDS
    lost_report = []
    for pid, count in answered.items():
        got = rows.get(pid, 0)
        if pid not in killed:
            assert got == count, f"worker {pid} answered {count} requests, {got} rows"
            continue
        lost = count - got
        in_window = sum(1 for at in per_pid[pid] if killed[pid] - window <= at <= killed[pid])
        lost_report.append(f"pid {pid}: answered {count}, rows {got}, lost {lost}, answered in the last "
                           f"{window * 1000:.0f} ms before the kill {in_window}")
        # A sync worker serves one request at a time and numbers them in order: what survived is a prefix, the loss
        # is the tail answered after the last flush, nothing older.
        assert ids[pid] == list(range(1, len(ids[pid]) + 1)), f"worker {pid} lost rows before its last flush"
        assert 0 <= lost <= in_window, lost_report[-1]
    assert len(killed) == 2 and len(lost_report) == 2
    print(f"\nFIGURE gunicorn handover: {len(load.answered)} answered, {load.failed} failed in flight; takeovers "
          f"in {', '.join(f'{s:.2f} s' for s in takeover_seconds)}; " + "; ".join(lost_report))
