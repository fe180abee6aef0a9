"""The duckpulse command: serve as an owner for a spool, and the demo."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import Monitor
from pipeline.cli import main


def test_serve_ingests_continuously_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`duckpulse serve` ingests what producers spool while it runs, and on SIGTERM ingests once more and exits 0."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--db", str(db), "--spool", str(spool),
                             "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "owning" in proc.stdout.readline()
        with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None) as producer:
            producer.track_request("/a", "GET", 200, 1.0)
            producer.flush()
            deadline = time.monotonic() + 30
            while any((spool / "ready").iterdir()) and time.monotonic() < deadline:
                time.sleep(0.05)  # waiting on another process, which has no hook to call
            assert not any((spool / "ready").iterdir()), "serve did not ingest while running"
            producer.track_request("/b", "GET", 200, 1.0)
            producer.flush()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out
    with Monitor(db_path=db, jobs=False, memory_interval_seconds=None) as mon:
        assert mon.store is not None
        assert mon.store.fetchall("SELECT route FROM requests ORDER BY route") == [("/a",), ("/b",)]


def test_demo_prints_percentiles_per_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`duckpulse demo` serves the dashboard, drives the bookshop and prints p50/p95/p99 per route computed in SQL."""
    assert main(["demo", "--duration", "1", "--port", "0", "--db", str(tmp_path / "demo.duckdb")]) == 0
    out = capsys.readouterr().out
    assert "dashboard at http://127.0.0.1:" in out
    assert "p95_ms" in out and "/books/<int:book_id>" in out


def test_errors_exit_non_zero_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A duckpulse error becomes a message on stderr and exit status 2: the demo must own its file, and another
    process does."""
    db = tmp_path / "m.duckdb"
    holder = subprocess.Popen([sys.executable, str(Path(__file__).with_name("process_roles.py")), "own_and_wait",
                               str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("owner")
        assert main(["demo", "--duration", "0", "--db", str(db)]) == 2
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)
    assert f"already owned by process {holder.pid}" in capsys.readouterr().err
