"""Webhooks that hang, fail or are not there: the monitored app never waits for them, every failure is counted,
the alert itself is recorded, and closing the monitor is bounded by the webhook's timeout."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import Monitor
from pipeline.alerts.notify import WebhookNotifier

ROLES = str(Path(__file__).with_name("test_faults_roles.py"))


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A webhook receiver in its own process, in the mode the test is parametrized with."""
    proc = subprocess.Popen([sys.executable, ROLES, "webhook_sink", request.param], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield f"http://127.0.0.1:{port}/hook", proc
    proc.kill()
    proc.wait(timeout=30)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _slow_request_alerts(tmp_path: Path, url: str) -> tuple[Monitor, WebhookNotifier]:
    mon = Monitor(db_path=tmp_path / "m.duckdb", jobs=False, memory_interval_seconds=None)
    hook = WebhookNotifier(url, timeout_seconds=0.5, retries=1, backoff_seconds=0.05)
    mon.on_alert(hook)
    mon.track_request("/slow", "GET", 200, 5_000.0)  # over the default 3 s critical threshold
    assert mon.flush() is True  # the alert is queued for the webhook's thread, not delivered here
    return mon, hook


@pytest.mark.parametrize("sink", ["hang"], indirect=True)
def test_a_hanging_webhook_never_blocks_recording_or_flushing(tmp_path: Path,
                                                              sink: tuple[str, subprocess.Popen[str]]) -> None:
    """While the webhook holds the connection without answering, requests are recorded and flushed as usual;
    each attempt times out and is counted, the notification is given up and counted, the alert event is stored."""
    url, proc = sink
    mon, hook = _slow_request_alerts(tmp_path, url)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "request"  # it is hanging now
    for i in range(1_000):
        mon.track_request("/fast", "GET", 200, 1.0, request_id=i)
    assert mon.flush() is True
    assert hook.drain(timeout=30)
    assert (hook.stats.sent, hook.stats.failed, hook.stats.attempt_failures, hook.stats.timeouts) == (0, 1, 2, 2)
    assert mon.store is not None
    assert mon.store.fetchall("SELECT count(*) FROM requests") == [(1_001,)]
    assert mon.store.fetchall("SELECT count(*) > 0 FROM alert_events") == [(True,)]
    mon.close()
    assert mon.stats()["flushed"] == 1_001


@pytest.mark.parametrize("sink", ["fail"], indirect=True)
def test_a_failing_webhook_is_retried_then_counted(tmp_path: Path, sink: tuple[str, subprocess.Popen[str]]) -> None:
    """A webhook answering 500 is tried 1 + retries times, then given up on and counted; nothing raises."""
    mon, hook = _slow_request_alerts(tmp_path, sink[0])
    assert hook.drain(timeout=30)
    assert (hook.stats.sent, hook.stats.failed, hook.stats.attempt_failures, hook.stats.timeouts) == (0, 1, 2, 0)
    assert "500" in str(hook.stats.last_error)
    mon.close()


def test_a_webhook_that_is_not_there_is_counted(tmp_path: Path) -> None:
    """Connection refused: given up on after the retries, counted, and the monitor closes normally."""
    mon, hook = _slow_request_alerts(tmp_path, f"http://127.0.0.1:{_closed_port()}/hook")
    assert hook.drain(timeout=30)
    assert (hook.stats.sent, hook.stats.failed, hook.stats.attempt_failures) == (0, 1, 2)
    mon.close()
    assert mon.stats()["flushed"] == 1


@pytest.mark.parametrize("sink", ["ok"], indirect=True)
def test_a_working_webhook_gets_the_alert(tmp_path: Path, sink: tuple[str, subprocess.Popen[str]]) -> None:
    """The control case: the same alert reaches a webhook that answers 204."""
    mon, hook = _slow_request_alerts(tmp_path, sink[0])
    assert hook.drain(timeout=30)
    assert (hook.stats.sent, hook.stats.failed) == (1, 0)
    mon.close()
