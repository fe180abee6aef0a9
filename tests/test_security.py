"""Security: injection strings in every parameter of every API endpoint never reach SQL except as bound
parameters; a token refuses everything else; a public bind without a token is refused; fingerprints stored from
a real instrumented app never hold the literals its queries carried.

The endpoints and their parameters come from the OpenAPI document, so a new endpoint or parameter is tried
without editing this file. Every SQL statement the dashboard runs is recorded through a proxy around the
store's cursors: no injection string may appear in any statement's text.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from pipeline import Monitor
from pipeline.integrations.dbapi import instrument
from pipeline.integrations.flask import DuckPulse
from pipeline.testing import FakeClock
from webapp import create_app
from webapp.openapi import document
from webapp.testing import record_sample_traffic

INJECTIONS = [
    "'; DROP TABLE requests; --",
    "1 OR 1=1",
    "1' OR '1'='1",
    '"; DELETE FROM queries; --',
    "$(rm -rf /)",
    "`rm -rf /`",
    "1; CHECKPOINT; DROP TABLE series",
    "' UNION SELECT * FROM duckdb_settings() --",
    "requests\x00; DROP TABLE points",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "%27%20OR%201%3D1--",
    "9" * 400,
    "-1",
    "1e309",
    "NaN",
    "\U0001d56f\U0001d597\U0001d594\U0001d595 \u2620 \u202e",  # Fraktur "Drop", a skull, right-to-left override
]
# The ones distinctive enough that finding them in a statement's text can only mean they were spliced in.
MARKED = [s for s in INJECTIONS if any(m in s for m in ("DROP", "OR 1=1", "OR '1'", "DELETE", "rm -rf", "UNION",
                                                         "CHECKPOINT", "<script>"))]
TOKEN = "t0ken-for-the-security-tests"


class RecordingCursor:
    """Passes everything to a DuckDB cursor, keeping the text of every statement it is asked to run."""

    def __init__(self, cursor: Any, seen: list[str]) -> None:
        self._cursor, self._seen = cursor, seen

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._seen.append(sql)
        return self._cursor.execute(sql, *args, **kwargs)

    def sql(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._seen.append(sql)
        return self._cursor.sql(sql, *args, **kwargs)

    query = sql

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def table_counts(mon: Monitor) -> dict[str, int]:
    assert mon.store is not None
    names = [r[0] for r in mon.store.fetchall(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1")]
    return {n: int(mon.store.scalar(f'SELECT count(*) FROM "{n}"')) for n in names}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Monitor, FlaskClient, list[str]]]:
    """An owner with 30 minutes of known traffic, its dashboard app, and the list of statements it runs."""
    clock = FakeClock()
    mon = Monitor(db_path=tmp_path_factory.mktemp("sec") / "m.duckdb", jobs=False, clock=clock,
                  memory_interval_seconds=None)
    record_sample_traffic(mon, clock, minutes=30)
    mon.run_jobs_now()
    assert mon.store is not None
    store = mon.store
    seen: list[str] = []
    real_reader, real_con = store.reader, store.con
    store.reader = lambda: RecordingCursor(real_reader(), seen)  # type: ignore[method-assign]
    store.con = RecordingCursor(real_con, seen)  # type: ignore[assignment]
    app = create_app({"DUCKPULSE_CACHE_SECONDS": 0}, monitor=mon)
    try:
        yield mon, app.test_client(), seen
    finally:
        store.con, store.reader = real_con, real_reader  # type: ignore[method-assign]
        mon.close()


def operations() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(method, path template, [(parameter, where)]) of every operation in the OpenAPI document."""
    ops = []
    for path, methods in document("")["paths"].items():
        for method, op in methods.items():
            where = [(p["name"], p["in"]) for p in op.get("parameters", [])]
            if "requestBody" in op:
                where.append(("body", "body"))
            ops.append((method.upper(), path, where))
    return ops


OPERATIONS = operations()


def envelope_or_ok(response: Any) -> None:
    """No 5xx; a refusal is the JSON error envelope."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400:
        body = response.get_json()
        assert set(body) == {"error"} and body["error"]["status"] == response.status_code, body


def _bodies(injection: str) -> list[Any]:
    return [
        {"matchers": {"rule": injection}, "duration": "5m"},
        {"matchers": {injection: "x"}, "duration": "5m"},
        {"matchers": {"rule": "x"}, "duration": injection},
        {"matchers": {"rule": "x"}, "endsAt": injection},
        {"matchers": {"rule": "x"}, "duration": "5m", "comment": injection},
        {"matchers": {"rule": "x"}, "duration": "5m", injection: 1},
        injection,
    ]


def test_every_parameter_of_every_endpoint_with_injection_strings(
        dashboard: tuple[Monitor, FlaskClient, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    """Each parameter of each endpoint (query, path and JSON body fields) with each injection string: never a
    5xx, a refusal is the error envelope, no statement's text ever contains the string, no table is dropped,
    and no table but silences (which stores accepted text as data) changes."""
    mon, client, seen = dashboard
    before = table_counts(mon)
    tried = 0
    for method, path, params in OPERATIONS:
        for injection in INJECTIONS:
            for name, where in params or [("unknown-" + injection, "query")]:
                if where == "path":
                    url = path.replace("{" + name + "}", urllib.request.quote(injection, safe=""))
                    envelope_or_ok(client.open(url, method=method))
                    tried += 1
                elif where == "body":
                    for body in _bodies(injection):
                        envelope_or_ok(client.open(path, method=method, data=json.dumps(body),
                                                   content_type="application/json"))
                        tried += 1
                else:
                    envelope_or_ok(client.open(path, method=method, query_string={name: injection}))
                    tried += 1
    assert tried > 500
    assert seen, "the recording proxy saw no statement: it is not in the path the API takes"
    for marked in MARKED:
        spliced = [sql for sql in seen if marked in sql]
        assert not spliced, f"{marked!r} reached the text of {spliced[0][:300]!r}"
    after = table_counts(mon)
    assert set(after) == set(before)  # nothing dropped, nothing created
    assert {t: n for t, n in after.items() if t != "silences"} == {t: n for t, n in before.items() if t != "silences"}
    assert mon.store is not None
    stored = {r[0] for r in mon.store.fetchall("SELECT comment FROM silences WHERE comment <> ''")}
    assert stored <= set(INJECTIONS)  # accepted text is kept verbatim, as data
    with capsys.disabled():
        print(f"\nFIGURE security: {tried} requests with {len(INJECTIONS)} injection strings over {len(OPERATIONS)} "
              f"operations; {len(seen)} statements run, none containing an injection string; no 5xx; tables intact")


def test_injection_strings_as_the_token_are_refused_before_any_query(
        dashboard: tuple[Monitor, FlaskClient, list[str]]) -> None:
    """With a token configured, a wrong bearer token (injection strings included) gets the 401 envelope on every
    endpoint but health, and no statement runs for it."""
    mon, _, seen = dashboard
    client = create_app({"DUCKPULSE_TOKEN": TOKEN, "DUCKPULSE_CACHE_SECONDS": 0}, monitor=mon).test_client()
    for method, path, _ in OPERATIONS:
        if path == "/api/health":
            continue
        url = path.replace("{silence_id}", "abc")
        for injection in [*INJECTIONS[:8], ""]:
            del seen[:]
            response = client.open(url, method=method, headers={"Authorization": f"Bearer {injection}"})
            assert response.status_code == 401, (method, path, response.status_code)
            envelope_or_ok(response)
            assert seen == []
        assert client.open(url, method=method, headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 401


@pytest.mark.parametrize("command", [
    ["-m", "pipeline.cli", "serve", "--spool", "spool"],
    ["-m", "webapp", "serve", "--spool", "spool"],
    ["-m", "pipeline.cli", "demo", "--duration", "0"],
    ["-m", "pipeline.cli", "demo", "--duration", "0", "--backfill-hours", "1"],
], ids=["duckpulse-serve", "webapp-serve", "demo", "demo-backfill"])
def test_serving_on_a_public_address_without_a_token_is_refused(tmp_path: Path, command: list[str]) -> None:
    """`duckpulse serve --host 0.0.0.0` (and `python -m webapp serve`, and the demo) without DUCKPULSE_TOKEN exits
    with an error naming the fix, as a real process, before any monitor exists: nothing is served, and nothing is
    recorded (no database file, no spool, no memory sample of a process that never ran)."""
    done = subprocess.run([sys.executable, *command, "--db", "m.duckdb", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode != 0
    assert "not a loopback address" in done.stderr and "DUCKPULSE_TOKEN" in done.stderr, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


SECRETS = ["alice@example.com", "hunter2-Pa55w0rd", "4111111111111111", "Zürich-Straße 7", "🔑sk_live_51Hx",
           "O'Brien", "1987-06-05", "3.14159265", "0xDEADBEEF"]


def test_fingerprints_from_a_real_instrumented_app_hold_none_of_its_literals(tmp_path: Path) -> None:
    """A Flask app (DuckPulse middleware) on a real werkzeug server, running sqlite3 queries through
    dbapi.instrument with its values inlined as literals (the worst case): the stored fingerprints, names and
    routes contain none of those values."""
    mon = Monitor(db_path=tmp_path / "m.duckdb", jobs=False, memory_interval_seconds=None)
    db = instrument(sqlite3.connect(":memory:", check_same_thread=False), mon)
    db.execute("CREATE TABLE users (id INTEGER, email TEXT, password TEXT, card TEXT, city TEXT, born TEXT, "
               "score REAL, flags INTEGER)")
    lock = threading.Lock()
    app = Flask("shop")
    DuckPulse(app, monitor=mon)

    @app.get("/users/<int:n>")
    def user(n: int) -> dict[str, int]:
        s = SECRETS[n % len(SECRETS)].replace("'", "''")
        with lock:
            db.execute(f"INSERT INTO users VALUES ({n}, '{s}', '{s}', '{s}', '{s}', '{s}', {n}.5, 0x{n:x})")
            db.execute(f"SELECT * FROM users WHERE email = '{s}' AND id IN ({n}, {n + 1}, {n + 2}) LIMIT {n}")
            db.execute(f"UPDATE users SET password = '{s}', score = -{n}.25 WHERE card LIKE '%{s}%'")
            db.execute("SELECT * FROM users WHERE email = ? AND id = ?", (SECRETS[n % len(SECRETS)], n))
        return {"n": n}

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for n in range(len(SECRETS) * 2):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/users/{n}") as response:
                assert response.status == 200
    finally:
        server.shutdown()
        thread.join(timeout=30)
        server.server_close()
    assert mon.flush() is True
    assert mon.store is not None
    rows = mon.store.fetchall("SELECT fingerprint, name, route FROM queries WHERE route IS NOT NULL")
    mon.close()
    assert len(rows) >= 4 * len(SECRETS) * 2
    text = "\n".join(str(v) for row in rows for v in row)
    leaked = [s for s in SECRETS if s in text or s.replace("'", "''") in text]
    assert leaked == []
    assert {r[2] for r in rows} == {"/users/<int:n>"}
