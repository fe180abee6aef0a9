"""The webhook notifier against a real HTTP server on loopback: delivery, retries, timeouts, never blocking."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline import Monitor
from pipeline.alerts.notify import Notification, WebhookNotifier
from pipeline.testing import FakeClock

T0 = 1_767_225_600.0


class Endpoint:
    """A loopback HTTP server whose answer the test chooses: a status, or hanging until released."""

    def __init__(self) -> None:
        self.status = 200
        self.hang = False
        self.release = threading.Event()
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.bodies.append(json.loads(body))
                endpoint.headers.append(dict(self.headers))
                endpoint.arrived.set()
                if endpoint.hang:
                    endpoint.release.wait(30)
                    return
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


def notification(rule: str = "slow") -> Notification:
    return Notification(rule, "request_duration", "critical", "firing", (("route", "/a"),), 3500.0, 3000.0, "gt",
                        "max", 60.0, "too slow", T0, T0)


def test_posts_json(endpoint: Endpoint) -> None:
    """Each notification is POSTed as a JSON object, with the configured headers."""
    hook = WebhookNotifier(endpoint.url, headers={"Authorization": "Bearer t"})
    try:
        hook(notification())
        assert hook.drain(10)
        assert endpoint.bodies == [notification().to_dict()]
        assert endpoint.headers[0]["Content-Type"] == "application/json"
        assert endpoint.headers[0]["Authorization"] == "Bearer t"
        assert (hook.stats.queued, hook.stats.sent, hook.stats.failed) == (1, 1, 0)
    finally:
        hook.close()


def test_server_error_is_retried_then_counted(endpoint: Endpoint) -> None:
    """A 500 is retried with backoff; when every try fails, the failure is counted."""
    endpoint.status = 500
    hook = WebhookNotifier(endpoint.url, retries=2, backoff_seconds=0.01)
    try:
        hook(notification())
        assert hook.drain(10)
        assert len(endpoint.bodies) == 3
        assert (hook.stats.sent, hook.stats.failed, hook.stats.attempt_failures) == (0, 1, 3)
        assert hook.stats.last_error is not None and "500" in hook.stats.last_error
    finally:
        hook.close()


def test_recovers_after_a_failed_try(endpoint: Endpoint) -> None:
    """A retry that succeeds counts as sent, with the failed try counted."""
    endpoint.status = 503
    hook = WebhookNotifier(endpoint.url, retries=3, backoff_seconds=0.01)
    try:
        hook(notification())
        assert endpoint.arrived.wait(10)
        endpoint.status = 204
        assert hook.drain(10)
        assert hook.stats.sent == 1 and hook.stats.failed == 0 and hook.stats.attempt_failures >= 1
    finally:
        hook.close()


def test_hanging_endpoint_times_out(endpoint: Endpoint) -> None:
    """An endpoint that never answers costs the worker its timeout, counted, not the caller."""
    endpoint.hang = True
    hook = WebhookNotifier(endpoint.url, timeout_seconds=0.2, retries=0)
    try:
        hook(notification())
        assert hook.drain(10)
        assert (hook.stats.timeouts, hook.stats.failed, hook.stats.sent) == (1, 1, 0)
    finally:
        hook.close()


def test_sweep_finishes_while_the_webhook_hangs(endpoint: Endpoint, db_path: Path, clock: FakeClock) -> None:
    """A sweep only queues webhook deliveries: it finishes while the endpoint is still hanging."""
    endpoint.hang = True
    hook = WebhookNotifier(endpoint.url, timeout_seconds=5, retries=0)
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
    try:
        mon.on_alert(hook)
        # avg: not a single-event threshold, so the sweep (not the flush check) delivers
        mon.add_threshold("request_duration", "gt", 500, "warning", aggregation="avg", by="route", name="r")
        mon.track_request("/a", "GET", 200, 900.0)
        mon.track_request("/b", "GET", 200, 900.0)
        result = mon.run_jobs_now()["alerts"]
        assert result["notifications"] == 2
        assert endpoint.arrived.wait(10)
        # the sweep has returned while the endpoint still holds the first delivery
        assert not endpoint.release.is_set() and hook.drain(0.05) is False
        endpoint.release.set()
        assert hook.drain(10)
        assert hook.stats.failed + hook.stats.sent == 2
    finally:
        mon.close()
        hook.close()


def test_full_queue_drops_and_counts(endpoint: Endpoint) -> None:
    """A notification that finds the queue full is dropped and counted, never blocking the caller."""
    endpoint.hang = True
    hook = WebhookNotifier(endpoint.url, timeout_seconds=5, retries=0, max_queue=1)
    try:
        hook(notification("a"))
        assert endpoint.arrived.wait(10)  # the worker holds "a"; the queue is empty again
        hook(notification("b"))
        hook(notification("c"))
        assert hook.stats.dropped == 1 and hook.stats.queued == 2
    finally:
        endpoint.release.set()
        hook.close()


def test_close_gives_up_on_what_it_cannot_deliver(endpoint: Endpoint) -> None:
    """close() waits up to its timeout, then drops (and counts) what is still queued, and stops retrying."""
    endpoint.hang = True
    hook = WebhookNotifier(endpoint.url, timeout_seconds=0.5, retries=5, backoff_seconds=5)
    hook(notification("a"))
    hook(notification("b"))
    assert endpoint.arrived.wait(10)
    hook.close(timeout=0.05)
    assert hook.stats.dropped == 1
    hook.close()  # closing twice is harmless


def test_connection_refused_is_a_counted_failure() -> None:
    """An endpoint that refuses connections is a counted failure, with the error kept."""
    hook = WebhookNotifier("http://127.0.0.1:9/nothing", retries=0, timeout_seconds=1)
    try:
        hook(notification())
        assert hook.drain(10)
        assert hook.stats.failed == 1 and hook.stats.last_error
    finally:
        hook.close()


def test_url_must_be_http() -> None:
    """Only http(s) URLs are accepted."""
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("ftp://example.com")


def test_monitor_close_closes_the_webhook(endpoint: Endpoint, db_path: Path, clock: FakeClock) -> None:
    """Closing the monitor delivers what the webhook holds and stops its worker."""
    hook = WebhookNotifier(endpoint.url)
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
    mon.on_alert(hook)
    mon.add_threshold("request_duration", "gt", 500, "warning", name="r")
    mon.track_request("/a", "GET", 200, 900.0)
    mon.run_jobs_now()
    mon.close()
    assert hook.stats.sent == 1
    assert not hook._thread.is_alive()
