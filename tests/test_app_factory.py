"""App factories: the Flask tutorial's blog with duckpulse in its factory (tests/apps/flaskr), the extension made at
module level and set up by init_app, the metrics file a setting of the app (its own suite runs in
tests/test_app_flaskr.py). Creating the app a thousand times costs one monitor: one set of threads, one store,
memory flat."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FLASKR = Path(__file__).resolve().parent / "apps" / "flaskr"
MB = 2**20


def run_in_copy(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in a copy of the tutorial app (its instance folder is made there)."""
    app_dir = tmp_path / "flaskr"
    if not app_dir.exists():
        shutil.copytree(FLASKR, app_dir)
    env = {**os.environ, "FLASK_DUCKPULSE_DB_PATH": str(tmp_path / "metrics.duckdb"),
           "PYTHONPATH": os.pathsep.join([str(app_dir), *sys.path])}
    return subprocess.run([sys.executable, *args], cwd=app_dir, env=env, capture_output=True, text=True, timeout=600)


def test_a_thousand_apps_cost_one_monitor(tmp_path: Path) -> None:
    """1,000 create_app() calls in one process: one flusher, one clock thread, one scheduler (its job pool aside),
    every request recorded by the one monitor, and RSS within 16 MB between the 200th and the 1,000th app (20 KB
    per app at most; a monitor per app cost ~9 MB each; the owner's DuckDB cache moves a few MB between the
    evictions of its release-cache job)."""
    done = run_in_copy(tmp_path, "create_many.py", "1000", "200")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    early, late = report["marks"]["200"], report["marks"]["1000"]
    for mark in (early, late):
        ours = {name: n for name, n in mark["threads"].items() if not name.startswith("ThreadPoolExecutor")}
        assert ours == {"MainThread": 1, "duckpulse-flusher": 1, "duckpulse-clock": 1, "APScheduler": 1}, mark
    assert report["role"] == "owner" and report["recorded"] >= 1000
    growth = late["rss_bytes"] - early["rss_bytes"]
    print(f"\nFIGURE app factory: 1,000 apps, threads {early['threads']} -> {late['threads']}, RSS "
          f"{early['rss_bytes'] / MB:.1f} -> {late['rss_bytes'] / MB:.1f} MB ({growth / MB:+.1f} MB)")
    assert growth < 16 * MB


def test_init_app_reads_the_apps_duckpulse_settings(tmp_path: Path) -> None:
    """DuckPulse() at module level, init_app(app) per app: the monitor of app.config["DUCKPULSE_DB_PATH"], with the
    app's DUCKPULSE_* settings (text read like variables), shared by every app of that file."""
    from flask import Flask

    from pipeline.integrations.flask import DuckPulse

    extension = DuckPulse()
    apps = []
    for _ in range(3):
        app = Flask("factory")
        app.config.update(DUCKPULSE_DB_PATH=str(tmp_path / "m.duckdb"), DUCKPULSE_FLUSH_INTERVAL_SECONDS="0.5",
                          DUCKPULSE_JOBS=False, DUCKPULSE_MEMORY_INTERVAL_SECONDS=None)
        app.add_url_rule("/a", "a", lambda: "a")
        extension.init_app(app)
        apps.append(app)
    monitors = {app.wsgi_app.monitor for app in apps}  # type: ignore[attr-defined]
    assert len(monitors) == 1
    (mon,) = monitors
    try:
        assert mon.is_owner and mon.flush_interval_seconds == 0.5 and not mon.jobs
        for app in apps:
            with app.test_client().get("/a") as response:
                assert response.status_code == 200
        mon.flush()
        assert mon.store is not None and mon.store.fetchall("SELECT count(*) FROM requests") == [(3,)]
    finally:
        for _ in apps:
            mon.close()
    assert mon.closed
