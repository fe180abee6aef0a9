"""Multi-worker deployment end to end: gunicorn with 4 producer workers, `duckpulse serve` as their owner.

N requests on loopback end as exactly N request rows, and the owner's dashboard API reports them. The owner
is ``python -m pipeline.cli serve``, what the ``duckpulse`` console script runs.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import duckdb
import pytest

pytest.importorskip("gunicorn", reason="gunicorn is in the `test` extra")

HERE = Path(__file__).resolve().parent
REQUESTS = 400
WORKERS = 4
DEADLINE_SECONDS = 30


class Lines:
    """A child's output, read line by line on a thread, so that waiting for a line has a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = DEADLINE_SECONDS) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern``, waiting at most ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        matches = [m for m in map(re.compile(pattern).search, self.seen) if m]
        while len(matches) < count:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {count} lines matching {pattern!r} within {timeout} s; "
                                     f"got: {''.join(self.seen)[-2000:]}") from None
            self.seen.append(line)
            if m := re.search(pattern, line):
                matches.append(m)
        return matches[:count]


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An owner serving the dashboard and gunicorn with 4 producer workers, both stopped afterwards."""
    db, spool = tmp_path / "metrics.duckdb", tmp_path / "spool"
    env = {**os.environ, "DUCKPULSE_SPOOL_DIR": str(spool)}
    owner = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--db", str(db), "--spool", str(spool),
                              "--port", "0", "--interval", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    procs = [owner]
    try:
        assert owner.stdout is not None
        owner_out = Lines(owner.stdout)
        (dashboard,) = owner_out.wait_for(r"dashboard at (http://127\.0\.0\.1:\d+)")
        app = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(HERE / "deploy_app.py"),
                                "--chdir", str(HERE), "--bind", "127.0.0.1:0", "--workers", str(WORKERS),
                                "deploy_app:app"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        procs.append(app)
        assert app.stdout is not None
        app_out = Lines(app.stdout)
        (listening,) = app_out.wait_for(r"Listening at: (http://127\.0\.0\.1:\d+)")
        booted = app_out.wait_for(r"Booting worker with pid: (\d+)", count=WORKERS)
        yield {"db": db, "spool": spool, "dashboard": dashboard[1], "app": listening[1], "gunicorn": app,
               "owner": owner, "worker_pids": {int(m[1]) for m in booted}}
    finally:
        for proc in reversed(procs):  # the producers first, so that the owner ingests their last segments
            _stop(proc)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def test_n_requests_through_gunicorn_workers_end_as_n_rows(deployment: dict[str, Any]) -> None:
    """400 requests spread over 4 producer workers: the owner's API reports exactly 400, and after both stop
    the file holds exactly one row per request, attributed to the worker that served it."""
    app = deployment["app"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: _get(f"{app}/items/{i}"), range(REQUESTS)))
    assert sorted(a["item"] for a in answers) == list(range(REQUESTS))
    served = Counter(a["pid"] for a in answers)
    assert set(served) <= deployment["worker_pids"]
    assert len(served) >= 2, "8 concurrent clients against 4 sync workers: more than one worker serves"

    deadline = time.monotonic() + DEADLINE_SECONDS
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = _get(f"{deployment['dashboard']}/api/metrics/performance?window=1h")
        if body["requests"]["total"] >= REQUESTS:
            break
        time.sleep(0.2)  # producers flush and the owner ingests on their own schedules: no hook to call
    assert body["requests"]["total"] == REQUESTS
    assert body["requests"]["byRoute"] == {"/items/<int:item_id>": REQUESTS}

    _stop(deployment["gunicorn"])  # graceful: each worker closes its monitor, flushing into the spool
    _stop(deployment["owner"])  # a last ingest, then the file is free
    assert deployment["owner"].returncode == 0
    con = duckdb.connect(str(deployment["db"]), read_only=True)
    try:
        per_pid = dict(con.execute("SELECT pid, count(*) FROM requests GROUP BY pid").fetchall())
        [(rows, distinct, statuses)] = con.execute(
            "SELECT count(*), count(DISTINCT (pid, request_id)), list_distinct(list(status)) FROM requests").fetchall()
    finally:
        con.close()
    assert rows == distinct == REQUESTS
    assert statuses == [200]
    assert per_pid == dict(served)
    assert not list((deployment["spool"] / "ready").glob("*"))
