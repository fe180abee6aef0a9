"""The WSGI middleware on plain WSGI apps, and under a real threaded server taking 1,000 concurrent requests."""

from __future__ import annotations

import http.client
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client

import pipeline.open_monitors
from pipeline import Monitor
from pipeline.integrations.dbapi import instrument
from pipeline.integrations.wsgi import MetricsMiddleware
from pipeline.testing import FakeClock

Environ = dict[str, Any]


def hello(environ: Environ, start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def routes(environ: Environ) -> str | None:
    """A resolver as an app with its own router would write it: templates, None when nothing matches."""
    path = environ["PATH_INFO"]
    if path.startswith("/users/") and path[len("/users/"):].isdigit():
        return "/users/{id}"
    return {"/": "/", "/hello": "/hello"}.get(path)


def requests(monitor: Monitor) -> list[tuple[Any, ...]]:
    monitor.flush()
    assert monitor.store is not None
    return monitor.store.fetchall(
        "SELECT route, method, status, duration_ms, query_count FROM requests ORDER BY request_id")


def call(app: Any, path: str = "/hello", method: str = "GET") -> Any:
    return Client(app).open(path, method=method, buffered=True)


def test_routes_methods_statuses_and_exclusions(monitor: Monitor) -> None:
    """The resolver names routes (raw paths never), odd methods are OTHER, excluded paths are skipped."""
    app = MetricsMiddleware(hello, monitor, route_resolver=routes, excluded_paths=["/healthz", "/assets/"])
    for path, method in [("/users/1", "GET"), ("/users/2", "HEAD"), ("/users/x' OR 1=1", "GET"),
                         ("/hello", "BREW"), ("/healthz", "GET"), ("/healthz/deep", "GET"),
                         ("/assets/a.css", "GET"), ("/", "OPTIONS")]:
        call(app, path, method)
    assert [r[:3] for r in requests(monitor)] == [
        ("/users/{id}", "GET", 200), ("/users/{id}", "HEAD", 200), ("<unmatched>", "GET", 200),
        ("/hello", "OTHER", 200), ("<unmatched>", "GET", 200), ("/", "OPTIONS", 200)]


def test_exceptions_are_500_and_propagate_unchanged(monitor: Monitor) -> None:
    """An app that raises, or whose body fails half-way, is recorded as 500; the exception is the app's own."""
    error = RuntimeError("db down")

    def raises(environ: Environ, start_response: Any) -> Iterable[bytes]:
        raise error

    def fails_while_streaming(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"first"
        raise error

    for app in (raises, fails_while_streaming):
        with pytest.raises(RuntimeError) as caught:
            call(MetricsMiddleware(app, monitor, route_resolver=lambda e: "/x"))
        assert caught.value is error
    assert [r[:3] for r in requests(monitor)] == [("/x", "GET", 500), ("/x", "GET", 500)]


def test_a_failing_resolver_costs_the_route_not_the_request(monitor: Monitor) -> None:
    """A resolver that raises or returns a non-string: the request is served and recorded as <unmatched>."""
    def broken(environ: Environ) -> str:
        raise KeyError("oops")

    for resolver in (broken, lambda e: 42):
        assert call(MetricsMiddleware(hello, monitor, route_resolver=resolver)).status_code == 200
    assert [r[0] for r in requests(monitor)] == ["<unmatched>", "<unmatched>"]


def test_duration_ends_when_the_iterable_is_closed(monitor: Monitor, clock: FakeClock) -> None:
    """Time spent producing the body, after start_response, is part of the duration."""
    def slow_body(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("206 Partial Content", [])
        for chunk in (b"a", b"b"):
            clock.advance(0.5)
            yield chunk

    call(MetricsMiddleware(slow_body, monitor, timer=clock.monotonic))
    [(route, _, status, duration_ms, _)] = requests(monitor)
    assert (route, status, duration_ms) == ("<unmatched>", 206, 1000.0)


def test_default_monitor_is_found_at_the_first_request(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """monitor=None: built before any monitor, the middleware records into the default one; without one it
    serves the request and records nothing."""
    app = MetricsMiddleware(hello)
    assert app.monitor is None
    call(app)
    assert app.monitor is monitor
    assert len(requests(monitor)) == 1
    monkeypatch.setattr(pipeline.open_monitors, "_open", [])
    monitor_less = MetricsMiddleware(hello)
    assert call(monitor_less).status_code == 200
    assert monitor_less.monitor is None


def test_threaded_server_records_every_concurrent_request(tmp_path: Path, monitor: Monitor) -> None:
    """1,000 requests from 32 client threads through a real threaded server end as 1,000 rows, each with
    its own request id and its one query."""
    db_path = tmp_path / "app.sqlite"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE hits (n INTEGER)")

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        conn = instrument(sqlite3.connect(db_path, timeout=30), monitor)
        try:
            conn.execute("SELECT count(*) FROM hits WHERE n = ?", (len(environ["PATH_INFO"]),)).fetchone()
        finally:
            conn.close()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    total, clients = 1000, 32
    server = make_server("127.0.0.1", 0, MetricsMiddleware(app, monitor, route_resolver=lambda e: "/item/{n}"),
                         threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()

    def fetch(i: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
        try:
            conn.request("GET", f"/item/{i}")
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            statuses = list(pool.map(fetch, range(total), timeout=300))
    finally:
        server.shutdown()
        server.server_close()  # joins the handler threads: every response iterable has been closed
        serving.join(timeout=30)
    assert statuses == [200] * total
    monitor.flush()
    assert monitor.store is not None
    assert monitor.store.fetchall(
        "SELECT count(*), count(DISTINCT request_id), min(request_id), max(request_id), sum(query_count), "
        "count(*) FILTER (WHERE route = '/item/{n}' AND status = 200 AND query_count = 1) FROM requests"
    ) == [(total, total, 1, total, total, total)]
    assert monitor.store.fetchall(
        "SELECT count(*) FROM queries q JOIN requests r USING (host, pid, request_id) WHERE q.route = r.route"
    ) == [(total,)]


def test_a_missing_library_is_named_with_what_to_install() -> None:
    """An integration whose library is absent fails with IntegrationMissingError naming the package to install."""
    from pipeline.errors import DuckPulseError, IntegrationMissingError
    from pipeline.integrations._common import require

    with pytest.raises(IntegrationMissingError, match=r"pip install nosuchlib") as caught:
        require("nosuchlib_for_duckpulse", "NoSuch", "nosuchlib")
    assert isinstance(caught.value, DuckPulseError) and isinstance(caught.value, ImportError)


def test_a_client_that_goes_away_is_not_a_failed_request(monitor: Monitor) -> None:
    """The server's write fails (ConnectionError) and it closes the body: the status sent stands. A body that
    raises while the server iterates it is a 500, as the server closes it with that exception in flight."""
    def streams(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"first"
        yield b"second"

    def serve(app: Any, write_fails: bool) -> None:
        """What gunicorn's and werkzeug's workers do: iterate, write, and close in a finally block."""
        body = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/stream"}, lambda status, headers, exc=None: None)
        try:
            for _chunk in body:
                if write_fails:
                    raise BrokenPipeError("client went away")
        finally:
            body.close()

    app = MetricsMiddleware(streams, monitor, route_resolver=lambda e: "/stream")
    with pytest.raises(BrokenPipeError):
        serve(app, write_fails=True)
    serve(app, write_fails=False)
    assert [r[:3] for r in requests(monitor)] == [("/stream", "GET", 200), ("/stream", "GET", 200)]


def test_an_instrumented_app_inside_another_ties_queries_to_the_innermost_request(monitor: Monitor,
                                                                                 clock: FakeClock) -> None:
    """A WSGI app calling another instrumented one (a dispatcher): queries go to the request being served, and
    the outer request is the current one again once the inner one is closed."""
    def query(sql: str) -> None:
        clock.advance(1)  # one second apart, so the rows sort in the order they were made
        monitor.track_query(sql, 1.0)

    def inner(environ: Environ, start_response: Any) -> Iterable[bytes]:
        query("SELECT 'inner'")
        start_response("200 OK", [])
        return [b"inner"]

    inner_app = MetricsMiddleware(inner, monitor, route_resolver=lambda e: "/inner")

    def outer(environ: Environ, start_response: Any) -> Iterable[bytes]:
        query("SELECT 'before'")
        assert Client(inner_app).open("/inner", buffered=True).status_code == 200
        query("SELECT 'after'")
        start_response("200 OK", [])
        return [b"outer"]

    call(MetricsMiddleware(outer, monitor, route_resolver=lambda e: "/outer"), "/outer")
    query("SELECT 'outside'")  # no request is being served any more
    assert [(r[0], r[2], r[4]) for r in requests(monitor)] == [("/outer", 200, 2), ("/inner", 200, 1)]
    assert monitor.store is not None
    assert monitor.store.fetchall("SELECT route, request_id FROM queries ORDER BY ts") == [
        ("/outer", 1), ("/inner", 2), ("/outer", 1), (None, None)]


def test_the_row_is_made_when_the_response_ends_on_the_serving_thread(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request's row is made by the thread that served it, as its response ends (not queued for the flusher
    thread, which runs under the same GIL: the row costs the process less made there and then); a failure to
    make it is logged and costs the request nothing."""
    made: list[tuple[str, str]] = []
    track_request = monitor.track_request

    def tracking(*args: Any) -> None:
        made.append((threading.current_thread().name, args[0]))
        track_request(*args)

    monkeypatch.setattr(monitor, "track_request", tracking)
    app = MetricsMiddleware(hello, monitor, route_resolver=routes)
    served: list[int] = []
    server = threading.Thread(target=lambda: served.append(call(app).status_code), name="serving")
    server.start()
    server.join()
    assert served == [200]
    assert made == [("serving", "/hello")]  # before any flush

    def broken(*args: Any) -> None:
        raise RuntimeError("buffer gone")

    monkeypatch.setattr(monitor, "track_request", broken)
    assert call(app).status_code == 200
    assert [r[:3] for r in requests(monitor)] == [("/hello", "GET", 200)]
