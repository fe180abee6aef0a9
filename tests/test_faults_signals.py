"""Signals and time: SIGTERM (a final flush), SIGKILL (only the unflushed tail is lost), the wall clock jumping
backwards. The figures these tests print (``FIGURE ...``) are quoted in RELIABILITY.md.

duckpulse installs no signal handler: a SIGTERM handler belongs to the application (gunicorn, a worker
framework or the app itself). An app whose handler exits normally (``sys.exit``) gets the final flush from
duckpulse's ``atexit`` hook; with SIGTERM's default action, or SIGKILL, the process dies at once and what was
recorded since the last flush (at most one flush interval of data) is lost.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import Monitor, sigterm
from pipeline.spool import ready_segments
from pipeline.testing import FakeClock

ROLES = str(Path(__file__).with_name("test_faults_roles.py"))


def figure(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print a measured figure even when pytest captures output."""
    with capsys.disabled():
        print(f"\nFIGURE {text}")


def spooled_ids(spool: Path) -> list[int]:
    ids: list[int] = []
    for seg in ready_segments(spool, 100_000)[0]:
        if seg.table == "requests":
            ids.extend(pq.read_table(seg.path, columns=["request_id"]).column(0).to_pylist())
    return sorted(ids)


def start_term_exits(role: str, handler: str, path: Path, count: int) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen([sys.executable, ROLES, "term_exits", role, handler, str(path), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.communicate(timeout=30)[1]
    return proc, json.loads(line)


def test_a_monitor_chains_the_sigterm_handler_it_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Monitor() chains the SIGTERM handler installed before it, never replacing it: on SIGTERM every open monitor
    is flushed first, then that handler runs (issue 13 item 0)."""
    monkeypatch.setattr(sigterm, "_previous", sigterm._previous)  # this process's chain, as it was, afterwards
    calls: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with Monitor(spool_dir=tmp_path / "s", jobs=False, memory_interval_seconds=None,
                     flush_interval_seconds=3600) as mon:
            assert signal.getsignal(signal.SIGTERM) is sigterm._on_sigterm
            mon.track_request("/a", "GET", 200, 1.0)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs in this (main) thread before the next line
            assert calls == [signal.SIGTERM]
            assert mon.stats()["flushed"] == 1
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("role", ["producer", "owner"])
def test_sigterm_handled_by_sys_exit_flushes_everything(tmp_path: Path, role: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A process whose SIGTERM handler calls sys.exit(0) gets a final flush from duckpulse's atexit hook:
    every request it recorded (none flushed before) is in the spool or in DuckDB."""
    path = tmp_path / ("spool" if role == "producer" else "m.duckdb")
    proc, said = start_term_exits(role, "exit", path, 20_000)
    assert said == {"chained": True, "recorded": 20_000}  # then replaced by the app's own handler
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    if role == "producer":
        got = spooled_ids(path)
    else:
        with Monitor(db_path=path, jobs=False, memory_interval_seconds=None) as mon:
            assert mon.store is not None
            got = [r[0] for r in mon.store.fetchall("SELECT request_id FROM requests ORDER BY 1")]
    assert got == list(range(20_000))
    figure(capsys, f"SIGTERM ({role}, handler calls sys.exit): recorded 20000, durable {len(got)}, lost "
                   f"{20_000 - len(got)}")


def test_sigterm_at_its_default_action_flushes_then_dies_by_the_signal(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """With SIGTERM at its default action the process dies without running atexit hooks; duckpulse's chained
    handler closes the monitor first (everything recorded reaches the spool), then lets the default action end
    the process, so its exit status is still the signal's (issue 13 item 0; before: all 1,000 lost)."""
    proc, said = start_term_exits("producer", "none", tmp_path / "spool", 1_000)
    assert said["chained"] is True
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    got = spooled_ids(tmp_path / "spool")
    assert got == list(range(1_000))
    figure(capsys, f"SIGTERM (default action, no handler): recorded 1000 since the last flush, lost {1_000 - len(got)}")


def test_sigkill_loses_only_the_tail_recorded_since_the_last_flush(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A producer recording 2,000 requests/s with a 0.25 s flush interval is SIGKILLed at random moments: the
    spool holds exactly the first N requests (no gap, no duplicate), and the lost tail is at most what was
    recorded in one flush interval plus scheduling slack (1 s here, on a loaded 2-core machine)."""
    rate, interval, slack = 2_000, 0.25, 1.0
    rng = random.Random(3)
    for run in range(3):
        spool, counter = tmp_path / f"spool{run}", tmp_path / f"counter{run}"
        counter.write_bytes(b"\0" * 8)
        proc = subprocess.Popen([sys.executable, ROLES, "paced", str(spool), str(counter), str(rate), str(interval)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while not ready_segments(spool, 1)[0]:  # bounded poll of another process: its first flush is out
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        recorded = struct.unpack("<q", counter.read_bytes())[0]
        ids = spooled_ids(spool)
        # The counter is written just after each record, so the process may have recorded one more than it says.
        assert ids == list(range(len(ids))) and len(ids) <= recorded + 1
        lost = max(recorded - len(ids), 0)
        assert lost <= rate * (interval + slack), (recorded, len(ids))
        figure(capsys, f"SIGKILL run {run + 1}: recorded {recorded}, durable {len(ids)}, lost {lost} (= "
                       f"{lost / rate * 1000:.0f} ms of traffic at {rate}/s; flush interval {interval * 1000:.0f} ms)")


def test_the_wall_clock_jumping_backwards_loses_nothing_and_flushes_go_on(tmp_path: Path) -> None:
    """The wall clock jumps 10 minutes back (NTP, a resumed VM): flushing, driven by monotonic time, goes on;
    every row is stored with the time the clock said; the jobs run without failing, and once the clock has
    moved past the old time again the rollups count every request."""
    clock = FakeClock()
    start = clock.now()
    with Monitor(db_path=tmp_path / "m.duckdb", jobs=False, clock=clock, memory_interval_seconds=None,
                 flush_interval_seconds=1.0) as mon:
        assert mon.store is not None
        def one_second_each(first: int, count: int) -> None:
            for i in range(first, first + count):
                mon.track_request("/a", "GET", 200, 5.0, request_id=i)
                clock.advance(1.0)
                if i % 5 == 4:
                    mon.tick()  # flushes when flush_interval_seconds of monotonic time have passed
                if i % 60 == 59:
                    mon.run_jobs_now()

        one_second_each(0, 300)  # five minutes before the jump
        clock.set_wall(clock.now() - 600)
        one_second_each(300, 900)  # fifteen minutes after it
        clock.advance(120)
        mon.run_jobs_now()
        stats = mon.stats()
        assert (stats["recorded"], stats["flushed"], stats["pending"], stats["flush_failures"]) == (1_200, 1_200, 0, 0)
        assert {name: job["failures"] for name, job in stats["jobs"].items()} == dict.fromkeys(stats["jobs"], 0)
        raw = mon.store.fetchall("SELECT count(*), count(DISTINCT request_id), "
                                 "min(epoch(ts)), max(epoch(ts)) FROM requests")[0]
        assert raw[:2] == (1_200, 1_200)
        assert (raw[2], raw[3]) == (start - 300, start + 599)  # the jump lands before the first row
        rolled = mon.store.fetchall("SELECT sum(count) FROM rollups_1m WHERE source = 'requests'")[0][0]
        assert rolled == 1_200
