"""The development server with its reloader: `flask --app ... run --debug` in a subprocess, the app edited while it
runs. The reloader's watcher and each child it starts all create the monitor: exactly one owns the file, every
request before and after the reload is one row, and none fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from test_deploy_gunicorn import Lines

from pipeline import Monitor
from pipeline.owner_lock import holder

APP = Path(__file__).resolve().parent / "apps" / "reload_app.py"
DEADLINE_SECONDS = 30


def get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=DEADLINE_SECONDS) as answer:
        assert answer.status == 200
        body: dict[str, object] = json.load(answer)
        return body


def test_requests_before_and_after_a_reload_are_all_recorded_by_one_owner(tmp_path: Path) -> None:
    shutil.copy(APP, tmp_path / "reload_app.py")
    db = tmp_path / "metrics.duckdb"
    env = {**os.environ, "RELOAD_APP_DB": str(db), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "reload_app", "run", "--debug", "--port", "0"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    answers: list[dict[str, object]] = []
    try:
        assert proc.stdout is not None
        out = Lines(proc.stdout)
        (running,) = out.wait_for(r"Running on (http://127\.0\.0\.1:\d+)")
        url = f"{running[1]}/version"
        answers += [get(url) for _ in range(20)]
        first_child = answers[0]["pid"]
        assert holder(db) == str(proc.pid), "the reloader's watcher process owns the file"
        source = (tmp_path / "reload_app.py").read_text()
        (tmp_path / "reload_app.py").write_text(re.sub(r"^VERSION = 1$", "VERSION = 2", source, flags=re.M))
        mtime = time.time() + 2
        os.utime(tmp_path / "reload_app.py", (mtime, mtime))  # a change the stat reloader cannot miss
        out.wait_for(r"Detected change in .*reload_app\.py")
        deadline = time.monotonic() + DEADLINE_SECONDS
        while answers[-1]["version"] != 2:
            assert time.monotonic() < deadline, "the new code was never served"
            answers.append(get(url))  # served by the old child until the new one answers: all recorded
        answers += [get(url) for _ in range(20)]
        assert holder(db) == str(proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the watcher and its child both end, closing their monitor
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    children = {a["pid"] for a in answers}
    assert len(children) == 2 and first_child in children and proc.pid not in children
    assert {a["role"] for a in answers} == {"producer"}, "a child owned the file while the watcher ran"
    with Monitor(db_path=db, role="owner", jobs=False, memory_interval_seconds=None) as mon:
        mon.ingest_now()  # anything a child spooled after the watcher's last ingest, as the next start would
        assert mon.store is not None
        rows = mon.store.fetchall("SELECT pid, status, count(*) FROM requests WHERE route = '/version' "
                                  "GROUP BY ALL ORDER BY ALL")
    per_child = {pid: sum(1 for a in answers if a["pid"] == pid) for pid in children}
    assert rows == sorted((pid, 200, n) for pid, n in per_child.items())
