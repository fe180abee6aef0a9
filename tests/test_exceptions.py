"""Unhandled exceptions: what is stored of one (type, where raised, message without literals), and the hooks of
the Flask, WSGI and ASGI integrations that record each once, tied to its request."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, abort
from werkzeug.test import Client

from pipeline import Monitor
from pipeline.exceptions import capture as capture_exception
from pipeline.exceptions import raised_at, scrub, type_name
from pipeline.integrations.flask import DuckPulse
from pipeline.integrations.wsgi import MetricsMiddleware

COLUMNS = "route, request_id, type, module, function, line, message, signature_id"


def stored(monitor: Monitor) -> list[dict[str, Any]]:
    monitor.flush()
    assert monitor.store is not None
    rows = monitor.store.fetchall(f"SELECT {COLUMNS} FROM exceptions ORDER BY ts, rowid")
    return [dict(zip(COLUMNS.split(", "), r, strict=True)) for r in rows]


@pytest.mark.parametrize("message,expected", [
    ("division by zero", "division by zero"),
    ("list index out of range", "list index out of range"),
    ("'NoneType' object has no attribute 'email'", "? object has no attribute ?"),
    ("can't multiply sequence by non-int of type 'float'", "can't multiply sequence by non-int of type ?"),
    ("invalid literal for int() with base 10: 'abc'", "invalid literal for int() with base ?"),
    ("user 42 not found", "user ? not found"),
    ('user "bob@example.com" is not allowed', "user ? is not allowed"),
    ("mail to bob@example.com bounced", "mail to ? bounced"),
    ("GET https://api.example.com/v1/orders?token=abc failed", "GET ? failed"),
    ("cannot open /var/data/secret.db", "cannot open ?"),
    ("connection to 10.0.0.5:5432 refused", "connection to ? refused"),
    ("order_7f3a9 failed, retry 550e8400-e29b-41d4-a716-446655440000", "? failed, retry ?"),
    ("UNIQUE constraint failed: users.email", "UNIQUE constraint failed: users.email"),
    ("near \"FROM\": syntax error in SELECT * FROM t WHERE pw = 'hunter2'",
     "near ?: syntax error in SELECT * FROM t WHERE pw = ?"),
    ("", ""),
])
def test_a_message_keeps_its_shape_and_loses_its_values(message: str, expected: str) -> None:
    """scrub(): literals go as in SQL fingerprints (strings, numbers), and so do quoted names, ids with digits,
    e-mail addresses, URLs and paths; words and their case stay, so the message still reads."""
    assert scrub(message) == expected


def _parse(text: str) -> Any:
    return json.loads(text)  # raises inside the standard library


def test_where_it_was_raised_is_the_innermost_application_frame() -> None:
    """A ValueError raised inside json (the standard library) is placed at the line of this module that called it;
    an exception raised here is placed where it was raised; the type is module.QualName, a builtin's bare name."""
    try:
        _parse("{not json")
    except ValueError as exc:
        cls, frames, message = capture_exception(exc)
    module, function, line = raised_at(frames)
    assert (module, function) == (__name__, "_parse")
    assert line == _parse.__code__.co_firstlineno + 1
    assert frames[-1][0].co_filename.endswith("decoder.py"), "the innermost frame is the library's"
    assert type_name(cls) == "json.decoder.JSONDecodeError"
    assert "Expecting property name" in message
    assert type_name(KeyError) == "KeyError"
    assert raised_at(()) == ("?", "?", 0)


def test_capturing_keeps_no_frame_and_so_no_local_variable() -> None:
    """What the request path keeps of an exception lets its frames, and the locals in them, be freed."""
    class Secret:
        pass

    def fail() -> None:
        secret = Secret()
        refs.append(weakref.ref(secret))
        raise RuntimeError("no")

    refs: list[weakref.ref[Secret]] = []
    try:
        fail()
    except RuntimeError as exc:
        kept = capture_exception(exc)
    gc.collect()
    assert refs[0]() is None, "the local variable died with its frame"
    assert kept[1][-1][0].co_name == "fail"


def test_track_exception_stores_the_signature_never_the_message(monitor: Monitor, db_path: Path) -> None:
    """Monitor.track_exception: one row per call, grouped by a signature over type, place and scrubbed message;
    the raw message is in neither the table nor the database file."""
    def charge(card: str) -> None:
        raise PermissionError(f"card {card!r} declined for order 981273")

    for card in ("4111-1111-1111-1111", "5500-0000-0000-0004"):
        try:
            charge(card)
        except PermissionError as exc:
            monitor.track_exception(exc, "/pay", 7)
    monitor.track_exception("not an exception", "/pay", 8)  # type: ignore[arg-type]
    first, second = stored(monitor)
    assert first == {**second, "request_id": 7} == {
        "route": "/pay", "request_id": 7, "type": "PermissionError", "module": __name__,
        "function": "test_track_exception_stores_the_signature_never_the_message.<locals>.charge",
        "line": charge.__code__.co_firstlineno + 1, "message": "card ? declined for order ?",
        "signature_id": first["signature_id"]}
    assert monitor.stats()["rejected"] == {"exception_not_exception": 1}
    monitor.close()
    raw = db_path.read_bytes() + (db_path.with_name(db_path.name + ".wal").read_bytes()
                                  if db_path.with_name(db_path.name + ".wal").exists() else b"")
    assert b"4111" not in raw and b"981273" not in raw and b"card ? declined" in raw


def flask_app(monitor: Monitor) -> Flask:
    app = Flask(__name__)
    DuckPulse(app, monitor=monitor)

    @app.route("/orders/<int:order_id>")
    def order(order_id: int) -> Any:
        return {"total": 100 / (order_id - order_id)}

    @app.route("/missing")
    def missing() -> Any:
        abort(404)

    return app


@pytest.mark.parametrize("propagate", [False, True])
def test_flask_records_each_unhandled_exception_once_with_its_request(monitor: Monitor, propagate: bool) -> None:
    """A view that raises: Flask answers 500 (or, propagating, the exception reaches the test client); either way
    one exceptions row, with the route template and the request id of the request's row. An HTTP error (abort)
    is not an exception of the app's code."""
    app = flask_app(monitor)
    app.config["PROPAGATE_EXCEPTIONS"] = propagate
    client = app.test_client()
    if propagate:
        with pytest.raises(ZeroDivisionError):
            client.get("/orders/12")
    else:
        response = client.get("/orders/12")
        assert response.status_code == 500
        response.close()
    client.get("/missing").close()
    (row,) = stored(monitor)
    assert (row["route"], row["type"], row["function"], row["message"]) == (
        "/orders/<int:order_id>", "ZeroDivisionError", "flask_app.<locals>.order", "division by zero")
    assert monitor.store is not None
    requests = monitor.store.fetchall("SELECT route, status, request_id FROM requests ORDER BY ts, rowid")
    assert requests[0] == ("/orders/<int:order_id>", 500, row["request_id"])
    assert requests[1][:2] == ("/missing", 404)


def test_wsgi_records_an_app_that_raises_and_a_body_that_fails(monitor: Monitor) -> None:
    """Under the bare WSGI middleware: an application raising before it answers, and a body failing half-way
    while the server reads it, are each recorded once; a client going away (ConnectionError) is not."""
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/raise":
            raise LookupError("no such thing as 'x1'")
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterable[bytes]:
            yield b"half"
            raise (ConnectionResetError("client left") if path == "/gone" else ValueError("broke at 50%"))
        return body()

    client = Client(MetricsMiddleware(app, monitor, route_resolver=lambda environ: environ["PATH_INFO"]))
    with pytest.raises(LookupError):
        client.get("/raise", buffered=True)
    with pytest.raises(ValueError, match="broke"):
        client.get("/stream", buffered=True)
    with pytest.raises(ConnectionResetError):
        client.get("/gone", buffered=True)
    rows = stored(monitor)
    assert [(r["route"], r["type"], r["message"]) for r in rows] == [
        ("/raise", "LookupError", "no such thing as ?"), ("/stream", "ValueError", "broke at ?%")]
    assert monitor.store is not None
    ids = dict(monitor.store.fetchall("SELECT route, request_id FROM requests"))
    assert [r["request_id"] for r in rows] == [ids["/raise"], ids["/stream"]]


def test_asgi_records_an_app_that_raises(monitor: Monitor) -> None:
    """Under the ASGI middleware (Starlette): the exception is recorded with the route template and request id,
    and propagates unchanged."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from pipeline.integrations.asgi import MetricsMiddleware as AsgiMiddleware

    async def fail(request: Request) -> Any:
        raise KeyError(f"session-{request.path_params['sid']}")

    app = AsgiMiddleware(Starlette(routes=[Route("/sessions/{sid}", fail)]), monitor)
    with TestClient(app, raise_server_exceptions=True) as client, pytest.raises(KeyError):
        client.get("/sessions/abc123")
    (row,) = stored(monitor)
    assert (row["route"], row["type"], row["message"], row["function"]) == (
        "/sessions/{sid}", "KeyError", "?", "test_asgi_records_an_app_that_raises.<locals>.fail")
    assert monitor.store is not None
    assert monitor.store.fetchall("SELECT request_id, status FROM requests") == [(row["request_id"], 500)]


def test_a_producer_spools_exceptions_for_the_owner(tmp_path: Path) -> None:
    """A producer's exceptions reach the owner through the spool, as its other rows do."""
    producer = Monitor(spool_dir=tmp_path / "spool", jobs=False, memory_interval_seconds=None)
    try:
        raise TimeoutError("upstream 10.1.2.3 took 30 s")
    except TimeoutError as exc:
        producer.track_exception(exc, "/sync", 3)
    producer.close()
    owner = Monitor(db_path=tmp_path / "o.duckdb", ingest_dir=tmp_path / "spool", jobs=False,
                    memory_interval_seconds=None)
    try:
        owner.ingest_now()
        (row,) = stored(owner)
        assert (row["route"], row["request_id"], row["type"], row["message"]) == (
            "/sync", 3, "TimeoutError", "upstream ? took ? s")
    finally:
        owner.close()
