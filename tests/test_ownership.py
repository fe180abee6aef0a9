"""Automatic ownership: one process owns a file, the others record into its spool, and when the owner ends or dies
another takes over, losing and duplicating nothing. And one monitor per file per process."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import Monitor, OwnershipError, default_monitor
from pipeline.alerts import Notification
from pipeline.testing import FakeClock

ROLES = str(Path(__file__).with_name("ownership_roles.py"))
TAKEOVER_SECONDS = 15  # the claim is retried every second; the rest is slack for a loaded machine


class Driven:
    """A monitor in another process (tests/ownership_roles.py), one command and one JSON answer at a time."""

    def __init__(self, db: Path, role: str = "auto", config: Path | None = None) -> None:
        args = [sys.executable, ROLES, str(db), role] + ([str(config)] if config else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"process {self.proc.pid} ended (exit {self.proc.wait()})"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def __call__(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def wait_until_owner(self) -> float:
        """Seconds until this process reports being the owner (it claims on its own, from its flusher thread)."""
        started = time.monotonic()
        while self("stats")["role"] != "owner":
            assert time.monotonic() - started < TAKEOVER_SECONDS, "no takeover"
            time.sleep(0.05)  # the other process's flusher claims on its own schedule: nothing to call here
        return time.monotonic() - started

    def close(self) -> dict[str, Any]:
        answer = self("close")
        assert self.proc.wait(timeout=60) == 0
        return answer

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def driven() -> Iterator[list[Driven]]:
    started: list[Driven] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.kill()


def rows_of(db: Path) -> list[tuple[Any, ...]]:
    """(request_id, count) of every request row, read once no process owns the file."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT request_id, count(*) FROM requests GROUP BY ALL ORDER BY 1").fetchall()
    finally:
        con.close()


def test_the_second_process_records_as_a_producer_and_takes_over_when_the_owner_exits(
        tmp_path: Path, driven: list[Driven]) -> None:
    """Two processes create Monitor(db_path=X): the first owns X, the second spools; when the owner closes, the
    second owns X within a few seconds; every row is in the file exactly once."""
    db = tmp_path / "m.duckdb"
    first = Driven(db)
    driven.append(first)
    second = Driven(db)
    driven.append(second)
    assert (first.hello["role"], second.hello["role"]) == ("owner", "producer")
    second("record 1000 0")
    assert second("flush")["ok"] and list((tmp_path / "m.duckdb.spool" / "ready").glob("*requests*"))
    first("record 500 1000")
    first("flush")
    assert first.close()["takeovers"] == 0  # a last ingest of the spool, then the lock is released
    took = second.wait_until_owner()
    assert took < TAKEOVER_SECONDS
    second("record 200 1500")
    second("flush")
    assert second("count") == {**second("stats"), "rows": 1700, "ids": 1700}
    assert second.close()["takeovers"] == 1
    assert rows_of(db) == [(i, 1) for i in range(1700)]


def test_a_killed_owner_is_replaced_and_what_it_committed_survives(tmp_path: Path, driven: list[Driven]) -> None:
    """SIGKILL on the owner: its flushed rows are in the file (DuckDB replays the WAL at the next open), a producer
    takes over within a few seconds and ingests what it spooled meanwhile; nothing is duplicated. (What a killed
    process had not flushed yet is lost: tests/test_deploy_auto.py measures it under load.)"""
    db = tmp_path / "m.duckdb"
    owner, producer = Driven(db), Driven(db)
    driven += [owner, producer]
    owner("record 300 0")
    owner("flush")
    producer("record 400 1000")
    producer("flush")
    owner.kill()
    assert producer.wait_until_owner() < TAKEOVER_SECONDS
    producer("record 100 1400")
    producer.close()
    assert rows_of(db) == [(i, 1) for i in [*range(300), *range(1000, 1500)]]


def test_role_owner_insists_and_role_producer_never_owns(tmp_path: Path, driven: list[Driven]) -> None:
    """role="owner" fails at once naming the owner's pid; role="producer" spools even once the file is free, and
    the next owner ingests its rows."""
    db = tmp_path / "m.duckdb"
    holder = Driven(db)
    driven.append(holder)
    with pytest.raises(OwnershipError, match=rf"owned by process {holder.proc.pid}.*role=\"owner\""):
        Monitor(db_path=db, role="owner", memory_interval_seconds=None)
    producer = Driven(db, role="producer")
    driven.append(producer)
    holder.close()
    producer("record 10 0")
    producer("flush")
    assert producer("stats")["role"] == "producer"
    with Monitor(db_path=db, role="owner", jobs=False, memory_interval_seconds=None) as owner:
        assert owner.is_owner and owner.ingest_now() == 10
    producer.close()


# -- one monitor per file per process -----------------------------------------------------------------------------
def test_a_file_has_one_monitor_per_process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Monitor(db_path=X) again returns the open monitor (no new threads, no new store); different settings are
    logged once and the first stand; it closes at the last close()."""
    db = tmp_path / "m.duckdb"
    first = Monitor(db_path=db, memory_interval_seconds=None)
    threads, store = threading.active_count(), first.store
    again = [Monitor(db_path=str(db), memory_interval_seconds=None) for _ in range(50)]
    assert all(m is first for m in again) and first.store is store
    assert threading.active_count() == threads
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="duckpulse"):
        for _ in range(3):
            assert Monitor(db_path=db, flush_interval_seconds=5, memory_interval_seconds=None) is first
    warnings = [r.getMessage() for r in caplog.records if "already open" in r.getMessage()]
    assert len(warnings) == 1 and "flush_interval_seconds=5 (open: 1.0)" in warnings[0]
    assert first.flush_interval_seconds == 1.0
    other = Monitor(db_path=tmp_path / "other.duckdb", jobs=False, memory_interval_seconds=None)
    assert default_monitor() is other
    assert Monitor(db_path=db, memory_interval_seconds=None) is first and default_monitor() is first
    other.close()
    for _ in range(1 + 50 + 3 + 1 - 1):
        first.close()
        assert not first.closed
    first.close()
    assert first.closed
    with Monitor(db_path=db, jobs=False, memory_interval_seconds=None) as fresh:
        assert fresh is not first


def test_rules_given_to_a_producer_apply_once_it_owns(tmp_path: Path, driven: list[Driven]) -> None:
    """A monitor that is a producer for now keeps the rules and callbacks it is given, and evaluates them as soon
    as it owns the file."""
    db = tmp_path / "m.duckdb"
    holder = Driven(db)
    driven.append(holder)
    clock = FakeClock()
    mon = Monitor(db_path=db, clock=clock, jobs=False, memory_interval_seconds=None, flush_interval_seconds=3600)
    try:
        assert not mon.is_owner and mon.can_own and mon.alerts is None
        rule = mon.add_threshold("request_duration", "gt", 500, "critical", "slow", name="slow")
        got: list[Notification] = []
        mon.on_alert(got.append)
        with pytest.raises(Exception, match="exists already"):
            mon.add_threshold("request_duration", "gt", 1, "info", name="slow")
        mon.track_request("/a", "GET", 200, 900.0)
        mon.flush()  # into the spool: no alert while another process owns the file
        assert got == []
        holder.close()
        clock.advance(1.0)
        mon.tick()  # the flusher's step: the claim is due, the lock is free
        assert mon.is_owner and mon.alerts is not None and rule in mon.alerts.rules
        mon.ingest_now()
        mon.alerts.sweep(clock.now())
        assert mon.alerts.settle()  # callbacks run on the notifiers' thread
        assert [(n.rule, n.state) for n in got] == [("slow", "firing")]
    finally:
        mon.close()


def test_a_forked_child_of_an_owner_stays_a_producer(tmp_path: Path) -> None:
    """gunicorn --preload: the child of an owner spools into the parent's spool and never claims the file, even
    once the parent let it go (DuckDB is not usable in a process forked from one that had it open); the next owner
    ingests what it spooled, every row once."""
    db, clock = tmp_path / "m.duckdb", FakeClock()
    mon = Monitor(db_path=db, clock=clock, jobs=False, memory_interval_seconds=None, flush_interval_seconds=3600)
    released_r, released_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: anything that goes wrong shows in its exit code
        code = 1
        try:
            os.close(released_w)
            assert not mon.is_owner and not mon.can_own
            mon.track_request("/child", "GET", 200, 1.0, request_id=1)
            assert mon.flush()
            os.read(released_r, 1)  # the parent closed its monitor: the lock is free
            clock.advance(1.0)
            mon.tick()
            mon.track_request("/child", "GET", 200, 1.0, request_id=2)
            mon.close()
            code = 0 if not mon.is_owner else 2
        finally:
            os._exit(code)
    os.close(released_r)
    mon.track_request("/parent", "GET", 200, 1.0, request_id=1)
    mon.close()
    os.write(released_w, b"x")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with Monitor(db_path=db, jobs=False, memory_interval_seconds=None) as owner:
        owner.ingest_now()
        assert owner.store is not None
        got = owner.store.fetchall("SELECT route, request_id, pid FROM requests ORDER BY ALL")
    assert got == [("/child", 1, pid), ("/child", 2, pid), ("/parent", 1, os.getpid())]
