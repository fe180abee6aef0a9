"""on_alert callbacks run on the notifiers' thread, never where a flush or a sweep waits (issue 13 item 3).

Before: callbacks ran on the flusher thread (the check after each flush) and the jobs thread (sweeps): a 20 s
callback meant 20 s without a flush, and one that hung stopped flushing for good.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline import Monitor, Notification
from pipeline.alerts import delivery
from pipeline.alerts.delivery import DELIVERY_QUEUE_CAP
from pipeline.testing import FakeClock
from webapp.api import health_body


def test_a_hung_callback_never_stops_flushing_and_is_seen_in_stats(
        db_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A callback blocked on an Event: flushes go on (every row stored), the notifications that find the queue
    full are dropped and counted, the hang shows in stats() (which notifier, for how long) and, released, it is
    counted as slow and every queued notification is delivered."""
    monkeypatch.setattr(delivery, "SLOW_NOTIFIER_SECONDS", 0.0)  # any call counts as slow: no test waits 5 s
    release, entered = threading.Event(), threading.Event()
    received: list[Notification] = []

    def hang(n: Notification) -> None:
        entered.set()
        release.wait()
        received.append(n)

    with Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None,
                 default_rules=False) as mon:
        mon.on_alert(hang)
        mon.add_threshold("request_duration", "gt", 500, "critical", by="route", name="slow")
        mon.track_request("/first", "GET", 200, 900.0)
        assert mon.flush() is True  # the single-event check decides the alert and queues it
        assert entered.wait(30), "the callback was never called"
        routes = DELIVERY_QUEUE_CAP + 50
        for i in range(routes):  # a new alert per route, each queued behind the hung callback
            mon.track_request(f"/r{i}", "GET", 200, 900.0)
        for _ in range(3_000):
            mon.track_request("/fast", "GET", 200, 1.0)
        assert mon.flush() is True
        assert mon.store is not None
        assert mon.store.scalar("SELECT count(*) FROM requests") == 1 + routes + 3_000
        alerts = mon.stats()["alerts"]
        assert alerts["counts"]["notifications_dropped"] == routes - DELIVERY_QUEUE_CAP
        busy = alerts["delivery"]
        assert busy["busy_notifier"].endswith("hang") and busy["busy_seconds"] >= 0.0
        assert busy["queued"] == DELIVERY_QUEUE_CAP
        health = health_body(mon.stats(), detailed=False)
        assert health["status"] == "degraded"
        assert any(p.startswith("the alert notifier") and p.endswith(f"{DELIVERY_QUEUE_CAP} notifications wait")
                   for p in health["problems"]), health["problems"]
        release.set()
        assert mon.alerts is not None and mon.alerts.settle(60)
        assert len(received) == 1 + DELIVERY_QUEUE_CAP
        counts = mon.stats()["alerts"]["counts"]
        assert counts["notifier_slow"] == 2 * (1 + DELIVERY_QUEUE_CAP)  # each call of hang and of the log's
        assert mon.stats()["alerts"]["delivery"]["busy_notifier"] is None


def test_callbacks_run_on_the_notifiers_thread(mon: Monitor) -> None:
    """Neither the flush's thread nor the jobs' thread runs a callback: the notifiers' thread does."""
    threads: list[str] = []
    mon.on_alert(lambda n: threads.append(threading.current_thread().name))
    mon.add_threshold("request_duration", "gt", 500, "critical", name="slow")
    mon.track_request("/a", "GET", 200, 900.0)
    mon.flush()
    assert mon.alerts is not None and mon.alerts.settle()
    assert threads == ["duckpulse-notify"]
