"""The ASGI middleware under Starlette and its TestClient, with a real SQLite database.

Every request sent is checked against its row in DuckDB, and the queries against the request they ran in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from starlette.applications import Starlette  # after the skips above
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from pipeline import Monitor
from pipeline.fingerprint import fingerprint
from pipeline.integrations.asgi import MetricsMiddleware
from pipeline.integrations.dbapi import instrument
from pipeline.testing import FakeClock

STREAM_CHUNKS = 3
STREAM_CHUNK_SECONDS = 0.5


def make_app(db_path: Path, monitor: Monitor, clock: FakeClock, **options: Any) -> Starlette:
    def db() -> Any:
        return instrument(sqlite3.connect(db_path, check_same_thread=False), monitor)

    async def book(request: Request) -> JSONResponse:
        conn = db()
        row = conn.execute("SELECT title FROM books WHERE id = ?", (request.path_params["book_id"],)).fetchone()
        conn.close()
        return JSONResponse({"title": row[0] if row else None}, status_code=200 if row else 404)

    def sync_book(request: Request) -> JSONResponse:  # Starlette runs it in a worker thread
        conn = db()
        n = conn.execute(f"SELECT count(*) FROM books WHERE id > {request.path_params['book_id']}").fetchone()[0]
        conn.close()
        return JSONResponse({"after": n})

    async def n_plus_one(request: Request) -> JSONResponse:
        conn = db()
        titles = [conn.execute(f"SELECT title FROM books WHERE id = {i}").fetchone()[0] for i in range(1, 6)]
        conn.close()
        return JSONResponse({"titles": titles})

    async def boom(request: Request) -> JSONResponse:
        raise KeyError("boom")

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(STREAM_CHUNKS):
                clock.advance(STREAM_CHUNK_SECONDS)  # the time each chunk takes to produce
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def member(request: Request) -> PlainTextResponse:
        return PlainTextResponse("member")

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    routes = [
        Route("/books/{book_id:int}", book),
        Route("/sync/{book_id:int}", sync_book),
        Route("/n-plus-one", n_plus_one),
        Route("/boom", boom),
        Route("/stream", stream),
        Route("/healthz", healthz),
        Mount("/orgs/{org}", routes=[Route("/members/{member_id:int}", member)]),
        WebSocketRoute("/ws", echo),
    ]
    return Starlette(routes=routes, middleware=[
        Middleware(MetricsMiddleware, monitor=monitor, timer=clock.monotonic, **options)])


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
        db.executemany("INSERT INTO books VALUES (?, ?)", [(i, f"Book {i}") for i in range(1, 7)])
    return path


def rows(monitor: Monitor, sql: str) -> list[tuple[Any, ...]]:
    monitor.flush()
    assert monitor.store is not None
    return monitor.store.fetchall(sql)


def test_each_request_row_matches_what_was_sent(db_file: Path, monitor: Monitor, clock: FakeClock) -> None:
    """Route templates (mounts included, values never), methods, statuses and query counts, request by request."""
    sent = [
        ("GET", "/books/1", 200, "/books/{book_id:int}", 1),
        ("GET", "/books/99", 404, "/books/{book_id:int}", 1),
        ("GET", "/sync/2", 200, "/sync/{book_id:int}", 1),
        ("GET", "/orgs/acme/members/7", 200, "/orgs/{org}/members/{member_id:int}", 0),
        ("GET", "/orgs/initech/members/8", 200, "/orgs/{org}/members/{member_id:int}", 0),
        ("GET", "/no/such/page", 404, "<unmatched>", 0),
        ("GET", "/orgs/acme/nothing", 404, "<unmatched>", 0),
        ("POST", "/books/1", 405, "/books/{book_id:int}", 0),
        ("PURGE", "/books/1", 405, "/books/{book_id:int}", 0),
    ]
    with TestClient(make_app(db_file, monitor, clock)) as client:  # `with`: lifespan runs, and passes through
        for method, path, status, _, _ in sent:
            assert client.request(method, path).status_code == status, path
        with client.websocket_connect("/ws") as ws:  # websockets pass through unrecorded
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
        assert client.get("/healthz").status_code == 200  # excluded by default
    found = rows(monitor, "SELECT route, method, status, query_count, request_id FROM requests ORDER BY request_id")
    assert len(found) == len(sent)
    for row, (method, path, status, route, queries) in zip(found, sent, strict=True):
        assert row[:4] == (route, method if method != "PURGE" else "OTHER", status, queries), path
    assert [r[4] for r in found] == list(range(1, len(sent) + 1))


def test_queries_carry_their_request_in_async_and_threaded_endpoints(
        db_file: Path, monitor: Monitor, clock: FakeClock) -> None:
    """Queries from an async endpoint and from a sync one (run in a worker thread) are tied to their request."""
    with TestClient(make_app(db_file, monitor, clock)) as client:
        client.get("/books/2")
        client.get("/sync/4")
        client.get("/n-plus-one")
    requests = {r[0]: r[1:] for r in rows(monitor, "SELECT request_id, route, query_count FROM requests")}
    queries = rows(monitor, "SELECT request_id, route, fingerprint, success FROM queries ORDER BY rowid")
    assert len(queries) == 1 + 1 + 5
    for request_id, route, fp, success in queries:
        assert success is True
        assert route == requests[request_id][0]
        assert not any(ch.isdigit() for ch in fp)  # ids and the literal 4 are gone
    counted: dict[int, int] = {}
    for q in queries:
        counted[q[0]] = counted.get(q[0], 0) + 1
    assert counted == {rid: r[1] for rid, r in requests.items()}
    assert {q[2] for q in queries if requests[q[0]][0] == "/n-plus-one"} == {
        fingerprint("SELECT title FROM books WHERE id = 1")}


def test_an_exception_is_recorded_as_500_and_propagates(db_file: Path, monitor: Monitor, clock: FakeClock) -> None:
    """An endpoint that raises: the same exception reaches the client, the row says 500 on its route."""
    with TestClient(make_app(db_file, monitor, clock)) as client, pytest.raises(KeyError, match="boom"):
        client.get("/boom")
    assert rows(monitor, "SELECT route, method, status FROM requests") == [("/boom", "GET", 500)]


def test_duration_runs_until_the_final_body_message(db_file: Path, monitor: Monitor, clock: FakeClock) -> None:
    """A streamed response is timed until its last body message: every chunk's time is in the duration."""
    with TestClient(make_app(db_file, monitor, clock)) as client:
        assert client.get("/stream").text == "".join(f"chunk {i}\n" for i in range(STREAM_CHUNKS))
    [(route, duration_ms)] = rows(monitor, "SELECT route, duration_ms FROM requests")
    assert route == "/stream"
    assert duration_ms == pytest.approx(STREAM_CHUNKS * STREAM_CHUNK_SECONDS * 1000)


def test_resolver_exclusions_and_response_time_header(db_file: Path, monitor: Monitor, clock: FakeClock) -> None:
    """A route resolver wins over the scope's route (None falls back to it); exclusions; the header on demand."""
    app = make_app(db_file, monitor, clock, excluded_paths=["/books/"], response_time_header=True,
                   route_resolver=lambda scope: "/custom" if scope["path"].startswith("/sync") else None)
    with TestClient(app) as client:
        client.get("/books/1")
        resp = client.get("/sync/1")
        client.get("/n-plus-one")
    assert resp.headers["x-response-time"].endswith("ms")
    assert rows(monitor, "SELECT route FROM requests ORDER BY request_id") == [("/custom",), ("/n-plus-one",)]


def test_queries_of_unmatched_and_excluded_requests(db_file: Path, monitor: Monitor, clock: FakeClock) -> None:
    """The query of a request no route matched carries <unmatched>, as its row does; the query of an excluded
    path is recorded tied to no request."""
    conn = instrument(sqlite3.connect(db_file, check_same_thread=False), monitor)

    async def not_found(request: Request, exc: Exception) -> PlainTextResponse:
        conn.execute("SELECT count(*) FROM books").fetchone()
        return PlainTextResponse("no such page", status_code=404)

    async def healthz(request: Request) -> PlainTextResponse:
        conn.execute("SELECT 1").fetchone()
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/healthz", healthz)], exception_handlers={404: not_found},
                    middleware=[Middleware(MetricsMiddleware, monitor=monitor, timer=clock.monotonic)])
    with TestClient(app) as client:
        assert client.get("/nowhere").status_code == 404
        assert client.get("/healthz").status_code == 200
    assert rows(monitor, "SELECT route, status, query_count FROM requests") == [("<unmatched>", 404, 1)]
    assert rows(monitor, "SELECT q.route, q.request_id IS NULL FROM queries q ORDER BY ts, rowid") == [
        ("<unmatched>", False), (None, True)]
