"""SIGTERM to `flask run --debug` (the reloader on) loses no row the serving child recorded.

What `docker stop`, systemd and `kill <pid>` send goes to the reloader's watcher (the parent, which owns the file);
`pkill -f` signals the watcher and its child both. Before: werkzeug's watcher answers SIGTERM with `sys.exit(0)`
inside `subprocess.call`, which SIGKILLs the serving child with everything it had recorded but not flushed: 20
requests, then SIGTERM to the watcher, or to both: 0 of 20 rows stored (to the child alone: 20). The app here
flushes hourly, so a row reaches the file only through what the processes do on their way out; the rows are
counted in the file after both processes are gone, with no ingest of our own (the watcher's last ingest must have
taken every segment the child wrote).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from test_deploy_gunicorn import Lines
from test_dev_server import APP, get

from pipeline import reloader

REQUESTS = 20
DEADLINE_SECONDS = 30


def gone(pid: int, timeout: float = DEADLINE_SECONDS) -> bool:
    """Whether process ``pid`` (not our child: the watcher's) ended within ``timeout`` seconds (a zombie counts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@pytest.mark.parametrize("signalled", ["watcher", "watcher and child", "child"])
def test_sigterm_to_the_reloader_stores_every_request_served(tmp_path: Path, signalled: str) -> None:
    """20 requests, then SIGTERM to the watcher, to the watcher and the child, or to the child: 20 rows in the
    file, and both processes end (the watcher with status 0, as werkzeug makes it)."""
    source = APP.read_text()
    hourly = re.sub(r"flush_interval_seconds=[0-9.]+", "flush_interval_seconds=3600.0", source)
    assert hourly != source, "reload_app.py no longer sets flush_interval_seconds: update this test"
    (tmp_path / "reload_app.py").write_text(hourly)
    db = tmp_path / "metrics.duckdb"
    env = {**os.environ, "RELOAD_APP_DB": str(db), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "reload_app", "run", "--debug", "--port", "0"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    child = None
    try:
        assert proc.stdout is not None
        out = Lines(proc.stdout)
        (running,) = out.wait_for(r"Running on (http://127\.0\.0\.1:\d+)")
        answers = [get(f"{running[1]}/version") for _ in range(REQUESTS)]
        (child,) = {a["pid"] for a in answers}
        assert isinstance(child, int) and child != proc.pid
        if "watcher" in signalled:
            os.kill(proc.pid, signal.SIGTERM)  # kill <pid>, docker stop, systemd
        if "child" in signalled:
            os.kill(child, signal.SIGTERM)  # with the watcher: pkill -f
        status = proc.wait(timeout=DEADLINE_SECONDS)
        assert gone(child), "the serving child outlived its watcher"
    finally:
        if proc.poll() is None or (child is not None and not gone(child, 0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert status == 0, f"werkzeug's watcher exits 0 on SIGTERM, with or without duckpulse: {''.join(out.seen)}"
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT pid, count(*) FROM requests WHERE route = '/version' GROUP BY pid").fetchall()
    assert stored == [(child, REQUESTS)], f"{''.join(out.seen)[-3000:]}"
    spool = db.with_name(db.name + ".spool")
    assert not any((spool / "ready").iterdir()), "a segment the watcher's last ingest left behind"


def test_the_reloader_child_ignores_sigterm_only_while_its_monitors_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """In werkzeug's reloader child, a SIGTERM cannot interrupt the last flush at exit; the handler is put back
    after it, and outside the child nothing changes."""
    def handler(signum: int, frame: object) -> None:
        raise AssertionError("not while the monitors close")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with reloader.exit_guard():
            assert signal.getsignal(signal.SIGTERM) is handler, "not in a reloader child: left alone"
        monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
        with reloader.exit_guard():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)  # the watcher's, after pkill -f signalled both: ignored
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)
