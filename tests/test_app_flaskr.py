"""A Flask-tutorial-style app (tests/apps/flaskr: factory, blueprints, SQLite through ``dbapi.instrument``) run by
its own test suite, which makes the app anew for every test and never closes a response (Flask's default test
client): its tests pass unchanged, and every request they make is one row with the right route, method,
status and query count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb

APPS = Path(__file__).with_name("apps")
FLASKR = APPS / "flaskr"


def test_the_tutorial_apps_own_suite_passes_and_every_request_is_a_row(tmp_path: Path) -> None:
    metrics, audit = tmp_path / "metrics.duckdb", tmp_path / "audit.json"
    env = {**os.environ, "FLASK_DUCKPULSE_DB_PATH": str(metrics), "AUDIT_REQUESTS_OUT": str(audit),
           "PYTHONPATH": os.pathsep.join([str(FLASKR), str(APPS), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "audit_requests"],
                         cwd=FLASKR, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout and "failed" not in run.stdout

    made = json.loads(audit.read_text())
    sent = Counter(tuple(r) for r in made["requests"])  # (route, method, status, statements), from Flask and SQLite
    assert sum(sent.values()) >= 35
    with duckdb.connect(str(metrics), read_only=True) as con:
        rows = con.execute("SELECT route, method, status, query_count FROM requests").fetchall()
        tied = con.execute("SELECT count(*) FROM queries q JOIN requests r USING (request_id, pid)").fetchone()
        orphans = con.execute("SELECT count(*) FROM queries WHERE request_id IS NOT NULL AND request_id NOT IN "
                              "(SELECT request_id FROM requests)").fetchone()
    assert Counter(rows) == sent
    assert tied == (sum(r[3] for r in rows),) and orphans == (0,)  # no query tied to a request it was not part of
    stats = made["stats"]
    assert stats["dropped"] == {} and stats["flush_failures"] == 0
    # Most responses were never closed nor read to their end: recorded when dropped or at the next request.
    assert sum(stats["recorded_unclosed"].values()) > sum(sent.values()) // 2
