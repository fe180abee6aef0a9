"""The Flask integration on a sample shop with a real SQLite database, driven by Flask's test client.

Every request the tests send is checked against its row in DuckDB: route template, method, status, query
count, and the queries tied to it by request id, stored as fingerprints without literal values.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, abort, g, request, stream_with_context

from pipeline import ConfigError, Monitor
from pipeline.fingerprint import fingerprint
from pipeline.integrations.dbapi import instrument
from pipeline.integrations.flask import DuckPulse
from pipeline.testing import FakeClock

BOOKS = [(1, "Dune", 1), (2, "Emma", 2), (3, "Ubik", 3), (4, "Persuasion", 2), (5, "Valis", 3), (6, "Solaris", 4)]
STREAM_CHUNKS = 4
STREAM_CHUNK_SECONDS = 0.25


def make_db(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
            CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author_id INTEGER NOT NULL);
        """)
        db.executemany("INSERT INTO authors VALUES (?, ?)",
                       [(1, "Herbert"), (2, "Austen"), (3, "Dick"), (4, "Lem")])
        db.executemany("INSERT INTO books VALUES (?, ?, ?)", BOOKS)


def make_app(db_path: Path, monitor: Monitor | None, clock: FakeClock | None, **config: Any) -> Flask:
    """The sample shop: templates with converters, an error, a stream, an N+1 page, a health check."""
    app = Flask(__name__)
    app.config.update({"TESTING": True, **config})

    def db() -> Any:
        if "db" not in g:
            g.db = instrument(sqlite3.connect(db_path), monitor)
        return g.db

    @app.teardown_appcontext
    def close_db(exc: BaseException | None) -> None:
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> Any:
        row = db().execute("SELECT title FROM books WHERE id = ?", (book_id,)).fetchone()
        if row is None:
            abort(404)
        return {"title": row[0]}

    @app.post("/books")
    def add_book() -> Any:
        title = request.get_json()["title"].replace("'", "''")
        conn = db()
        with conn:  # the wrapper is a context manager like the driver's connection: commit on success
            # A literal inlined (escaped), for the fingerprint to strip.
            conn.execute(f"INSERT INTO books (title, author_id) VALUES ('{title}', 1)")
        return {"ok": True}, 201

    @app.get("/authors/<name>")
    def author(name: str) -> Any:
        cur = db().cursor()
        cur.execute("SELECT id FROM authors WHERE name = ?", (name,))
        return {"found": cur.fetchone() is not None}

    @app.get("/n-plus-one")
    def n_plus_one() -> Any:
        conn = db()
        ids = [r[0] for r in conn.execute("SELECT id FROM books ORDER BY id")]
        # The N+1 anti-pattern, literals interpolated as careless code does: one fingerprint, N statements.
        titles = [conn.execute(f"SELECT title FROM books WHERE id = {i}").fetchone()[0] for i in ids]
        return {"titles": titles}

    @app.get("/boom")
    def boom() -> Any:
        db().execute("SELECT count(*) FROM books").fetchone()
        return 1 / 0

    @app.get("/stream")
    def stream() -> Response:
        def generate() -> Iterator[str]:
            for i in range(STREAM_CHUNKS):
                db().execute("SELECT title FROM books WHERE id = ?", (i + 1,)).fetchone()
                if clock is not None:
                    clock.advance(STREAM_CHUNK_SECONDS)  # the time each chunk takes to produce
                yield f"chunk {i}\n"

        return Response(stream_with_context(generate()), mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    make_db(path)
    return path


@pytest.fixture
def app(db_file: Path, monitor: Monitor, clock: FakeClock) -> Flask:
    app = make_app(db_file, monitor, clock)
    DuckPulse(app, monitor=monitor, timer=clock.monotonic)
    return app


def request_rows(monitor: Monitor) -> list[dict[str, Any]]:
    monitor.flush()
    assert monitor.store is not None
    cols = ["route", "method", "status", "duration_ms", "request_id", "query_count", "pid"]
    rows = monitor.store.fetchall(f"SELECT {', '.join(cols)} FROM requests ORDER BY request_id")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def query_rows(monitor: Monitor) -> list[dict[str, Any]]:
    monitor.flush()
    assert monitor.store is not None
    cols = ["fingerprint", "success", "request_id", "route", "name"]
    rows = monitor.store.fetchall(f"SELECT {', '.join(cols)} FROM queries ORDER BY rowid")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def get(client: Any, path: str, **kwargs: Any) -> Any:
    # buffered: the test client then closes the response iterable, as a WSGI server does after sending it.
    return client.get(path, buffered=True, **kwargs)


def test_each_request_row_matches_what_was_sent(app: Flask, monitor: Monitor) -> None:
    """Route templates, methods, statuses and query counts are recorded exactly as the requests were served."""
    client = app.test_client()
    sent = [
        ("GET", "/books/1", 200, "/books/<int:book_id>", 1),
        ("GET", "/books/6", 200, "/books/<int:book_id>", 1),
        ("GET", "/books/99", 404, "/books/<int:book_id>", 1),  # the rule matched; the view said 404
        ("POST", "/books", 201, "/books", 1),
        ("GET", "/authors/Lem", 200, "/authors/<name>", 1),
        ("GET", "/no/such/page", 404, "<unmatched>", 0),
        ("GET", "/wp-admin/setup.php", 404, "<unmatched>", 0),
        ("DELETE", "/books/1", 405, "<unmatched>", 0),  # no rule for this method: not a matched route
        ("PURGE", "/books/1", 405, "<unmatched>", 0),
    ]
    for method, path, status, _, _ in sent:
        kwargs: dict[str, Any] = {"json": {"title": "It's"}} if method == "POST" else {}
        resp = client.open(path, method=method, buffered=True, **kwargs)
        assert resp.status_code == status, path
    rows = request_rows(monitor)
    assert len(rows) == len(sent)
    for row, (method, path, status, route, queries) in zip(rows, sent, strict=True):
        expected_method = method if method != "PURGE" else "OTHER"
        assert (row["route"], row["method"], row["status"], row["query_count"]) == \
            (route, expected_method, status, queries), path
    assert [r["request_id"] for r in rows] == list(range(1, len(sent) + 1))


def test_queries_are_tied_to_their_request_and_stored_without_values(app: Flask, monitor: Monitor) -> None:
    """Each query row carries its request's id and route; its fingerprint holds no literal from the SQL."""
    client = app.test_client()
    get(client, "/books/3")
    client.post("/books", json={"title": "Secret Title"}, buffered=True)
    get(client, "/authors/Austen")
    requests_by_id = {r["request_id"]: r for r in request_rows(monitor)}
    queries = query_rows(monitor)
    assert [q["fingerprint"] for q in queries] == [
        fingerprint("SELECT title FROM books WHERE id = ?"),
        fingerprint("INSERT INTO books (title, author_id) VALUES ('x', 1)"),
        fingerprint("SELECT id FROM authors WHERE name = ?"),
    ]
    assert "Secret" not in queries[1]["fingerprint"] and "1)" not in queries[1]["fingerprint"]
    for q in queries:
        assert q["success"] is True
        assert q["name"] is None
        assert q["route"] == requests_by_id[q["request_id"]]["route"]
    per_request: dict[int, int] = {}
    for q in queries:
        per_request[q["request_id"]] = per_request.get(q["request_id"], 0) + 1
    assert per_request == {rid: r["query_count"] for rid, r in requests_by_id.items()}


def test_an_exception_is_recorded_as_500_and_propagates_unchanged(app: Flask, monitor: Monitor) -> None:
    """A view that raises: the same exception reaches the caller, and the row says 500 on the view's route."""
    client = app.test_client()
    with pytest.raises(ZeroDivisionError):
        get(client, "/boom")
    (row,) = request_rows(monitor)
    assert (row["route"], row["status"], row["query_count"]) == ("/boom", 500, 1)
    (query,) = query_rows(monitor)
    assert (query["request_id"], query["route"]) == (row["request_id"], "/boom")


def test_an_exception_handled_by_flask_is_recorded_with_its_500(db_file: Path, monitor: Monitor) -> None:
    """Outside testing mode Flask answers 500 itself; the row has that status and the view's route."""
    app = make_app(db_file, monitor, None, TESTING=False, PROPAGATE_EXCEPTIONS=False)
    DuckPulse(app, monitor=monitor)
    assert get(app.test_client(), "/boom").status_code == 500
    (row,) = request_rows(monitor)
    assert (row["route"], row["status"]) == ("/boom", 500)


def test_streaming_duration_covers_the_whole_stream(app: Flask, monitor: Monitor) -> None:
    """A streamed body is timed until the iterable is closed, and its queries belong to the request."""
    resp = get(app.test_client(), "/stream")
    assert resp.get_data(as_text=True) == "".join(f"chunk {i}\n" for i in range(STREAM_CHUNKS))
    (row,) = request_rows(monitor)
    assert row["route"] == "/stream"
    assert row["duration_ms"] == pytest.approx(STREAM_CHUNKS * STREAM_CHUNK_SECONDS * 1000)
    assert row["query_count"] == STREAM_CHUNKS
    assert {(q["request_id"], q["route"]) for q in query_rows(monitor)} == {(row["request_id"], "/stream")}


def test_a_stream_read_part_way_is_recorded_when_the_server_closes_it(app: Flask, monitor: Monitor) -> None:
    """A client that went away after two chunks: the server closes the response, which ends the request, timed
    until then, with the queries of the two chunks."""
    resp = app.test_client().get("/stream")  # not buffered: the body is read lazily
    chunks = iter(resp.response)
    next(chunks), next(chunks)
    resp.close()
    (row,) = request_rows(monitor)
    assert row["status"] == 200
    assert row["query_count"] == 2
    assert row["duration_ms"] == pytest.approx(2 * STREAM_CHUNK_SECONDS * 1000)
    assert monitor.stats()["recorded_unclosed"] == {}


def test_n_plus_one_is_listed_per_route_with_sql(app: Flask, monitor: Monitor, clock: FakeClock) -> None:
    """A fingerprint repeated >= min_repeats times in one request is reported for its route by the named query."""
    from pipeline import sqlfiles
    from pipeline.clock import utc_datetime

    client = app.test_client()
    get(client, "/n-plus-one")
    get(client, "/n-plus-one")
    get(client, "/books/1")
    rows = request_rows(monitor)
    assert [r["query_count"] for r in rows] == [1 + len(BOOKS), 1 + len(BOOKS), 1]
    assert monitor.store is not None
    sql = sqlfiles.query("integrations.sql", "n-plus-one")
    found = monitor.store.fetchall(sql, {"since": utc_datetime(clock.now() - 3600), "min_repeats": 5})
    assert [(r[0], r[1], r[3], r[4]) for r in found] == [
        ("/n-plus-one", fingerprint("SELECT title FROM books WHERE id = 1"), 2, len(BOOKS))]
    assert not any(str(book_id) in found[0][1] for book_id, _, _ in BOOKS)
    assert monitor.store.fetchall(sql, {"since": utc_datetime(clock.now() - 3600), "min_repeats": 7}) == []


def test_excluded_paths_are_not_recorded(db_file: Path, monitor: Monitor) -> None:
    """Health checks and static files are not recorded by default; DUCKPULSE_EXCLUDED_PATHS replaces the list."""
    app = make_app(db_file, monitor, None)
    DuckPulse(app, monitor=monitor)
    client = app.test_client()
    get(client, "/healthz")
    get(client, "/static/app.js")
    get(client, "/books/1")
    assert [r["route"] for r in request_rows(monitor)] == ["/books/<int:book_id>"]

    app = make_app(db_file, monitor, None, DUCKPULSE_EXCLUDED_PATHS="/books/, /authors/Lem")
    DuckPulse(app, monitor=monitor)
    client = app.test_client()
    for path in ("/books/1", "/books/2", "/authors/Lem", "/authors/Dick", "/healthz"):
        get(client, path)
    assert [r["route"] for r in request_rows(monitor)] == [
        "/books/<int:book_id>", "/authors/<name>", "/healthz"]


@pytest.mark.parametrize(("config", "debug", "expected"), [
    ({}, False, False),
    ({}, True, True),
    ({"DUCKPULSE_RESPONSE_TIME_HEADER": True}, False, True),
    ({"DUCKPULSE_RESPONSE_TIME_HEADER": "off"}, True, False),
])
def test_response_time_header_follows_debug_unless_configured(
        db_file: Path, monitor: Monitor, config: dict[str, Any], debug: bool, expected: bool) -> None:
    """X-Response-Time is on in debug mode and off otherwise, unless DUCKPULSE_RESPONSE_TIME_HEADER says."""
    app = make_app(db_file, monitor, None, **config)
    DuckPulse(app, monitor=monitor)
    app.debug = debug  # after set-up, as app.run(debug=True) does: the first request decides
    header = get(app.test_client(), "/books/1").headers.get("X-Response-Time")
    if expected:
        assert header is not None and header.endswith("ms") and float(header[:-2]) >= 0
    else:
        assert header is None


def test_bad_configuration_is_refused_naming_the_key(db_file: Path, monitor: Monitor) -> None:
    """A value that is not a boolean is a ConfigError naming DUCKPULSE_RESPONSE_TIME_HEADER."""
    app = make_app(db_file, monitor, None, DUCKPULSE_RESPONSE_TIME_HEADER="sometimes")
    with pytest.raises(ConfigError, match="DUCKPULSE_RESPONSE_TIME_HEADER"):
        DuckPulse(app, monitor=monitor)


def test_init_app_and_the_default_monitor(db_file: Path, monitor: Monitor) -> None:
    """DuckPulse() then init_app() works; monitor=None records into the default monitor; twice is refused."""
    app = make_app(db_file, None, None)
    ext = DuckPulse()
    ext.init_app(app)
    assert app.extensions["duckpulse"] is ext
    get(app.test_client(), "/books/2")
    (row,) = request_rows(monitor)
    assert (row["route"], row["query_count"]) == ("/books/<int:book_id>", 1)
    with pytest.raises(ConfigError, match="already"):
        DuckPulse(app, monitor=monitor)


def test_dashboard_blueprint_is_mounted_and_anything_else_warns(db_file: Path, monitor: Monitor) -> None:
    """dashboard=<blueprint> registers it on the app; a value that is not a blueprint is ignored with a warning."""
    board = Blueprint("board", __name__, url_prefix="/board")
    board.add_url_rule("/", "index", lambda: "board")
    app = make_app(db_file, monitor, None)
    DuckPulse(app, monitor=monitor, dashboard=board)
    assert get(app.test_client(), "/board/").get_data(as_text=True) == "board"

    app = make_app(db_file, monitor, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DuckPulse(app, monitor=monitor, dashboard=42)
    assert any("ignored" in str(w.message) for w in caught)


def test_dashboard_prefix_mounts_the_real_dashboard_in_the_app(db_file: Path, monitor: Monitor) -> None:
    """DuckPulse(app, monitor=mon, dashboard="/perf") serves the dashboard API under /perf, reading mon's data."""
    app = make_app(db_file, monitor, None)
    DuckPulse(app, monitor=monitor, dashboard="/perf")
    client = app.test_client()
    get(client, "/books/1")
    get(client, "/books/2")
    monitor.flush()
    # Responses are closed (buffered=True) as a server would: the request context ends at close().
    body = client.get("/perf/api/metrics/performance?window=1h", buffered=True).get_json()
    assert body["requests"]["byRoute"]["/books/<int:book_id>"] == 2
    assert client.get("/perf/", buffered=True).status_code == 200
    assert client.get("/perf", buffered=True).status_code in (200, 301, 308)
    monitor.flush()
    # The dashboard's own page and API calls are not the app's traffic: only the two /books requests are rows.
    assert [r["route"] for r in request_rows(monitor)] == ["/books/<int:book_id>"] * 2


def test_real_durations_are_positive_with_the_default_timer(db_file: Path, monitor: Monitor) -> None:
    """With the production timer (perf_counter) a request that ran a query took a positive time."""
    app = make_app(db_file, monitor, None)
    DuckPulse(app, monitor=monitor)
    get(app.test_client(), "/books/1")
    (row,) = request_rows(monitor)
    assert row["duration_ms"] > 0
