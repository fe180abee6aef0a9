"""Responses nobody closes (Flask's default test client): every request is still one row, its duration says
what was measured, nothing of it stays alive, and queries outside it are never tied to it. Also the queries
of excluded paths and of unmatched routes (consistent with their requests' rows)."""

from __future__ import annotations

import gc
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort

from pipeline import Monitor
from pipeline.integrations import wsgi
from pipeline.integrations.dbapi import instrument
from pipeline.integrations.flask import DuckPulse
from pipeline.testing import FakeClock


def make_app(db_path: Path, monitor: Monitor, clock: FakeClock | None = None) -> Flask:
    app = Flask(__name__)
    app.config["TESTING"] = True
    conn = instrument(sqlite3.connect(db_path, check_same_thread=False), monitor)

    def app_seconds(seconds: float) -> None:
        if clock is not None:
            clock.advance(seconds)

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> Any:
        app_seconds(1)
        if book_id > 100:
            conn.execute("SELECT 1").fetchone()
            abort(404)
        conn.execute("SELECT ?", (book_id,)).fetchone()
        conn.execute("SELECT ? + 1", (book_id,)).fetchone()
        return {"id": book_id}

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for i in range(3):
                app_seconds(1)
                conn.execute("SELECT ?", (i,)).fetchone()
                yield f"{i}\n"

        app_seconds(1)
        return Response(chunks())

    @app.get("/healthz")
    def healthz() -> str:
        conn.execute("SELECT 'health'").fetchone()
        return "ok"

    @app.errorhandler(404)
    def not_found(exc: Exception) -> Any:
        conn.execute("SELECT 'not found'").fetchone()  # a query of an <unmatched> request, too
        return {"error": "not found"}, 404

    DuckPulse(app, monitor=monitor, **({"timer": clock.monotonic} if clock else {}))
    return app


def rows(monitor: Monitor, sql: str) -> list[tuple[Any, ...]]:
    monitor.flush()
    assert monitor.store is not None
    return monitor.store.fetchall(sql)


def test_every_request_of_the_default_test_client_is_a_row(tmp_path: Path, monitor: Monitor) -> None:
    """Responses dropped unread, kept while the next request runs, read to their end, or still held when the
    test flushes: each one row with its route, status and query count; stats() says how each ended."""
    client = make_app(tmp_path / "app.sqlite", monitor).test_client()
    client.get("/books/1")  # dropped at once, unread
    kept = client.get("/books/2")
    assert client.get("/books/3").json == {"id": 3}  # the next request ends the kept one; this one is read
    assert client.get("/nowhere").status_code == 404
    assert client.get("/books/101").status_code == 404
    held = client.get("/books/4")  # still held when the test flushes
    got = rows(monitor, "SELECT route, status, query_count FROM requests ORDER BY request_id")
    assert sorted(got) == sorted([("/books/<int:book_id>", 200, 2)] * 4 + [("<unmatched>", 404, 1),
                                                                          ("/books/<int:book_id>", 404, 2)])
    # The five never read: the held one at the flush; the others when their response was freed, or, when a
    # reference cycle kept it until the garbage collector ran, when the next request started.
    unclosed = monitor.stats()["recorded_unclosed"]
    assert sum(unclosed.values()) == 5 and unclosed["flush"] == 1
    assert set(unclosed) <= {"body_dropped", "next_request", "flush"}
    assert kept.json == {"id": 2} and held.json == {"id": 4}  # the bodies are whole all the same
    assert len(rows(monitor, "SELECT * FROM requests")) == 6  # and nothing is recorded twice


def test_the_duration_says_what_was_measured(tmp_path: Path, monitor: Monitor, clock: FakeClock) -> None:
    """Read to its end: timed until then (a stream's chunks included). Never read nor closed: timed until the
    application returned, however long the response is held afterwards."""
    client = make_app(tmp_path / "app.sqlite", monitor, clock).test_client()
    held = client.get("/books/1")  # the view takes 1 s
    clock.advance(30)
    read = client.get("/stream")  # 1 s before returning, then 1 s per chunk, the first pulled by the client
    clock.advance(30)
    assert read.get_data(as_text=True) == "0\n1\n2\n"
    got = rows(monitor, "SELECT route, duration_ms, query_count FROM requests ORDER BY ts")
    assert got == [("/books/<int:book_id>", 1000.0, 2), ("/stream", 34_000.0, 3)]
    assert monitor.stats()["recorded_unclosed"] == {"next_request": 1}
    del held


def test_queries_outside_a_request_are_tied_to_none(tmp_path: Path, monitor: Monitor) -> None:
    """While a response is held unclosed, queries of the test itself, recorded by this monitor or by another,
    belong to no request, and the request's query count is only its own."""
    client = make_app(tmp_path / "app.sqlite", monitor).test_client()
    held = client.get("/books/1")
    monitor.track_query("SELECT 'outside'", 1.0)
    with Monitor(db_path=tmp_path / "other.duckdb", jobs=False, memory_interval_seconds=None) as other:
        other.track_query("SELECT 'other monitor'", 1.0)
        other.flush()
        assert other.store is not None
        assert other.store.fetchall("SELECT request_id, route FROM queries") == [(None, None)]
    assert rows(monitor, "SELECT query_count FROM requests") == [(2,)]
    assert rows(monitor, "SELECT fingerprint, request_id IS NULL FROM queries WHERE route IS NULL") == [
        ("SELECT ?", True)]
    assert held.status_code == 200


def test_excluded_paths_record_their_queries_tied_to_no_request(tmp_path: Path, monitor: Monitor) -> None:
    """A health check is not a row, and its query is recorded without a request id or route (never an id
    that no request row has)."""
    client = make_app(tmp_path / "app.sqlite", monitor).test_client()
    assert client.get("/healthz").data == b"ok"
    assert client.get("/books/1").status_code == 200
    assert rows(monitor, "SELECT route FROM requests") == [("/books/<int:book_id>",)]
    queries = rows(monitor, "SELECT request_id, route FROM queries ORDER BY ts, rowid")
    assert queries[0] == (None, None) and len(queries) == 3
    assert rows(monitor, "SELECT count(*) FROM queries WHERE request_id IS NOT NULL AND request_id NOT IN "
                         "(SELECT request_id FROM requests)") == [(0,)]


def test_queries_of_an_unmatched_request_carry_its_route(tmp_path: Path, monitor: Monitor) -> None:
    """The request row says <unmatched>, and so do its queries (never NULL)."""
    client = make_app(tmp_path / "app.sqlite", monitor).test_client()
    assert client.get("/nowhere").status_code == 404
    assert rows(monitor, "SELECT r.route, q.route FROM requests r JOIN queries q USING (request_id)") == [
        ("<unmatched>", "<unmatched>")]


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def test_20000_unclosed_requests_keep_nothing_alive(tmp_path: Path, monitor: Monitor) -> None:
    """Over 20,000 requests whose responses are never closed (some held across the next request, most read and
    dropped), duckpulse holds at most one request, no Flask request stays alive, and the blocks Python's
    allocator holds stay flat."""
    client = make_app(tmp_path / "app.sqlite", monitor).test_client()
    import flask

    def serve(n: int) -> None:
        held = None
        for i in range(n):
            response = client.get(f"/books/{i % 50}")
            if i % 3 == 0:
                held = response  # kept until a later request: ended as stale
            elif i % 3 == 1:
                assert response.status_code == 200  # never read
            else:
                assert response.json == {"id": i % 50}  # read to its end
            if i % 1000 == 999:
                monitor.flush()
        del held

    serve(1_000)  # warm: caches, interned strings, the buffer's lists at their working size
    gc.collect()
    blocks = sys.getallocatedblocks()  # every object and buffer Python's allocator holds
    serve(20_000)
    gc.collect()
    grown = sys.getallocatedblocks() - blocks
    assert _alive(wsgi._Exchange) <= 1 and _alive(flask.Request) == 0
    assert grown < 2_000, f"{grown:,} more memory blocks held after 20,000 requests"
    assert rows(monitor, "SELECT count(*), sum(query_count) FROM requests") == [(21_000, 42_000)]
