"""SIGTERM (docker stop, systemd, Kubernetes) loses no row, under every server (issue 13 item 0).

Before: FastAPI under uvicorn, 50 requests then `kill -TERM`: 17 of 50 rows stored; the Flask dev server and a
plain script that leave SIGTERM at its default died without running atexit. Each test here runs a real server (or
script) in its own process with a monitor that flushes hourly, sends N requests, sends SIGTERM, and counts every
row in DuckDB (a producer's rows in the spool, ingested by an owner afterwards). The process still ends the way
it would without duckpulse (status -SIGTERM where the server re-raises it or leaves the default action).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from test_deploy_gunicorn import Lines

from pipeline import Monitor

APPS = Path(__file__).resolve().parent / "apps"
REQUESTS = 50
DEADLINE_SECONDS = 60

SERVERS = {
    # (command, the line that says where it listens, the exit status after SIGTERM)
    "uvicorn": ([sys.executable, "-m", "uvicorn", "--factory", "sigterm_app:asgi_app", "--port", "0",
                 "--lifespan", "on"], r"running on (http://127\.0\.0\.1:\d+)", -signal.SIGTERM),
    "werkzeug": ([sys.executable, "-m", "flask", "--app", "sigterm_app:flask_app", "run", "--port", "0"],
                 r"Running on (http://127\.0\.0\.1:\d+)", -signal.SIGTERM),
    "gunicorn": ([sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "-w", "1", "sigterm_app:flask_app()"],
                 r"Listening at: (http://127\.0\.0\.1:\d+)", 0),
}


def start(command: list[str], db: Path, role: str) -> tuple[subprocess.Popen[str], Lines]:
    env = {**os.environ, "SIGTERM_APP_DB": str(db), "SIGTERM_APP_ROLE": role,
           "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path])}
    proc = subprocess.Popen(command, cwd=APPS, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    return proc, Lines(proc.stdout)


def terminate(proc: subprocess.Popen[str], out: Lines) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {DEADLINE_SECONDS} s after SIGTERM: {''.join(out.seen)[-2000:]}") \
            from None


def stored(db: Path) -> list[tuple[object, ...]]:
    """(route, rows) in the file, after an owner ingested whatever producers left in its spool."""
    with Monitor(db_path=db, role="owner", jobs=False, memory_interval_seconds=None) as mon:
        mon.ingest_now()
        assert mon.store is not None
        return mon.store.fetchall("SELECT route, count(*) FROM requests GROUP BY route")


@pytest.mark.parametrize("server", SERVERS)
def test_every_request_served_before_sigterm_is_stored(tmp_path: Path, server: str) -> None:
    if server == "uvicorn":
        pytest.importorskip("uvicorn", reason="uvicorn is in the `test` extra")
    command, listening, status = SERVERS[server]
    db = tmp_path / "metrics.duckdb"
    proc, out = start(command, db, "auto")
    try:
        (match,) = out.wait_for(listening, timeout=DEADLINE_SECONDS)
        for _ in range(REQUESTS):
            with urllib.request.urlopen(f"{match[1]}/r", timeout=DEADLINE_SECONDS) as answer:
                assert answer.status == 200
    finally:
        code = terminate(proc, out)
    assert code == status, "".join(out.seen)[-2000:]
    assert stored(db) == [("/r", REQUESTS)]


@pytest.mark.parametrize("role", ["auto", "producer"])
def test_a_script_left_at_the_default_action_stores_every_row_and_still_dies_by_the_signal(
        tmp_path: Path, role: str) -> None:
    """`python app.py`: SIGTERM's default action ends the process without atexit; the rows reach the database
    (an owner) or its spool (a producer) first, and the exit status is still the signal's (143 in a shell)."""
    db = tmp_path / "metrics.duckdb"
    proc, out = start([sys.executable, str(APPS / "sigterm_app.py"), str(REQUESTS)], db, role)
    try:
        out.wait_for("recorded", timeout=DEADLINE_SECONDS)
    finally:
        code = terminate(proc, out)
    assert code == -signal.SIGTERM, "".join(out.seen)[-2000:]
    if role == "producer":
        assert not db.exists(), "a producer never creates the file"
        assert list(tmp_path.rglob("*.parquet")), "the producer's rows reached no spool segment"
    assert stored(db) == [("/r", REQUESTS)]
