"""One JSON error envelope on every endpoint, the bearer token, configuration errors, and the blueprint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import webapp.reads
from pipeline import Monitor
from pipeline.errors import ConfigError
from webapp import blueprint, create_app
from webapp.config import Settings, check_exposure, is_loopback, load
from webapp.openapi import document

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def operations() -> list[tuple[str, str]]:
    """Every (method, concrete path) the OpenAPI document lists."""
    ops = []
    for path, methods in document("")["paths"].items():
        for method in methods:
            concrete = path.replace("{silence_id}", "0123abcd")
            if concrete == "/api/requests/queries":  # its required parameters, naming no stored request
                concrete += "?host=h&pid=1&requestId=1&at=2026-01-01T00:00:00Z"
            ops.append((method.upper(), concrete))
    return ops


OPERATIONS = operations()
PUBLIC = {("GET", "/api/health")}


def assert_envelope(response: Any, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "message"}
    assert body["error"]["status"] == status
    message: str = body["error"]["message"]
    assert len(message) > 20, "the message says what was wrong"
    return message


@pytest.fixture
def secured(monitor: Monitor) -> FlaskClient:
    return create_app({"DUCKPULSE_TOKEN": TOKEN}, monitor=monitor).test_client()


@pytest.fixture
def open_client(monitor: Monitor) -> FlaskClient:
    return create_app({}, monitor=monitor).test_client()


def send(client: FlaskClient, method: str, path: str, **kwargs: Any) -> Any:
    return client.open(path, method=method, **kwargs)


@pytest.mark.parametrize("method,path", [op for op in OPERATIONS if op not in PUBLIC])
def test_every_endpoint_but_health_needs_the_token(secured: FlaskClient, method: str, path: str) -> None:
    """Without the header, or with a wrong token, an endpoint answers 401 in the envelope."""
    message = assert_envelope(send(secured, method, path), 401)
    assert "Authorization: Bearer" in message
    assert_envelope(send(secured, method, path, headers={"Authorization": "Bearer wrong-token-xx"}), 401)
    assert_envelope(send(secured, method, path, headers={"Authorization": TOKEN}), 401)  # no scheme
    response = send(secured, method, path, headers={"Authorization": f"bearer {TOKEN}"},
                    json={"matchers": {"rule": "x"}, "duration": "1m"} if method == "POST" else None)
    assert response.status_code in (200, 201, 404), "the right token opens it (404: no such silence, request)"


def test_health_page_and_assets_need_no_token(secured: FlaskClient) -> None:
    """Health, the HTML shell and its script are public; health hides error texts from anonymous clients."""
    anonymous = secured.get("/api/health")
    assert anonymous.status_code == 200
    assert "lastFlushError" not in anonymous.get_json()
    assert "lastFlushError" in secured.get("/api/health", headers=AUTH).get_json()
    page = secured.get("/")
    assert page.status_code == 200 and b'data-token-required="true"' in page.data
    assert secured.get("/static/dashboard.js").status_code == 200


def test_unmatched_paths_need_the_token_before_saying_404(secured: FlaskClient) -> None:
    """An anonymous client cannot even learn which URLs exist; with the token, 404 in the envelope."""
    assert_envelope(secured.get("/api/nothing-here"), 401)
    message = assert_envelope(secured.get("/api/nothing-here", headers=AUTH), 404)
    assert "/api/openapi.json" in message


@pytest.mark.parametrize("method,path", [op for op in OPERATIONS if op[0] == "GET"])
def test_unknown_parameters_are_a_400(open_client: FlaskClient, method: str, path: str) -> None:
    """A parameter the endpoint does not take is refused (a typo is never silently ignored)."""
    message = assert_envelope(send(open_client, method, path + "?windw=1h"), 400)
    assert "windw" in message


@pytest.mark.parametrize("method,path", OPERATIONS)
def test_a_wrong_method_is_a_405_naming_the_right_one(open_client: FlaskClient, method: str, path: str) -> None:
    """PUT is allowed nowhere; the 405 says which methods are."""
    message = assert_envelope(send(open_client, "PUT", path), 405)
    assert "PUT is not allowed" in message and method in message


@pytest.mark.parametrize("method,path", [op for op in OPERATIONS if op[1] != "/api/health"])
def test_a_failure_inside_is_a_500_in_the_envelope(open_client: FlaskClient, monkeypatch: pytest.MonkeyPatch,
                                                   method: str, path: str) -> None:
    """An unexpected exception becomes a 500 envelope that names its type, never a traceback page."""
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(webapp.reads, "rows", broken)
    monkeypatch.setattr("webapp.ranges.run", broken)
    monkeypatch.setattr("webapp.drilldown.rows", broken)
    monkeypatch.setattr("webapp.error_groups.rows", broken)
    monkeypatch.setattr(webapp.reads, "silences", broken)
    monkeypatch.setattr("webapp.api.openapi.document", broken)
    monkeypatch.setattr("webapp.api.exposition.render", broken)
    monkeypatch.setattr("webapp.api.render_template", broken)
    monkeypatch.setattr("webapp.api.Api._alerts_engine", broken)
    json = {"matchers": {"rule": "x"}, "duration": "1m"} if method == "POST" else None
    message = assert_envelope(send(open_client, method, path, json=json), 500)
    assert "RuntimeError" in message and "disk on fire" not in message, "details stay in the server log"


def test_health_failure_is_a_500_too(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even health answers the envelope when the monitor's stats fail."""
    client = create_app({}, monitor=monitor).test_client()
    monkeypatch.setattr(monitor, "stats", lambda: 1 / 0)
    assert "ZeroDivisionError" in assert_envelope(client.get("/api/health"), 500)


@pytest.mark.parametrize("query,fragment", [
    ("window=1y", "is not a duration: write a whole number followed by s, m, h, d or w"),
    ("window=0m", "is not a duration"),
    ("window=401d", "longer than the 400d"),
    ("window=-5m", "is not a duration"),
    ("start=yesterday", "is not a time: write ISO 8601"),
    ("start=2026-01-02T00:00:00&end=2026-01-01T00:00:00", "is after end"),
    ("start=2024-01-01T00:00:00Z", "more than 400 days"),
    ("start=2026-01-01T00:00:00&window=1h", "either start"),
    ("end=1e400", "epoch seconds must be from 0"),
    ("end=0001-01-01T00:00:00", "expected a time from 1970 to 8999"),
    ("end=9999-12-31T23:59:59", "expected a time from 1970 to 8999"),
    ("start=1969-12-31T00:00:00Z", "expected a time from 1970"),
    ("start=9999-12-31T23:59:59-23:59", "out of range once converted to UTC"),
    ("step=10q", "step='10q' is not a duration"),
    ("step=1s&window=7d", "more than 10000"),
    ("route=", "expected from 1 to 1000 characters"),
])
def test_malformed_parameters_say_the_accepted_form(open_client: FlaskClient, query: str, fragment: str) -> None:
    """A malformed range, step or route is a 400 whose message says the accepted form."""
    message = assert_envelope(open_client.get(f"/api/series?{query}"), 400)
    assert fragment in message


def test_performance_takes_a_window_or_a_range(open_client: FlaskClient) -> None:
    """The plan's endpoint takes window (default 1h) or start/end, and refuses a bad one saying the form."""
    message = assert_envelope(open_client.get("/api/metrics/performance?window=an-hour"), 400)
    assert "5m, 1h, 24h or 7d" in message
    assert open_client.get("/api/metrics/performance?start=2025-12-31T23:00:00").status_code == 200
    assert "step" in assert_envelope(open_client.get("/api/metrics/performance?step=1m"), 400)
    assert_envelope(open_client.get("/api/queries?limit=0"), 400)
    assert_envelope(open_client.get("/api/alerts/history?limit=abc"), 400)


def test_without_a_token_only_localhost_is_answered(open_client: FlaskClient) -> None:
    """A request for another host name (DNS rebinding, a proxy) is refused with 403 when there is no token."""
    message = assert_envelope(open_client.get("/api/routes", headers={"Host": "evil.example:8050"}), 403)
    assert "DUCKPULSE_TOKEN" in message
    for host in ("localhost:8050", "127.0.0.1", "[::1]:8050"):
        assert open_client.get("/api/health", headers={"Host": host}).status_code == 200, host


def test_a_public_bind_without_a_token_is_refused(monitor: Monitor) -> None:
    """create_app refuses a non-loopback host without a token, and accepts it with one."""
    with pytest.raises(ConfigError, match=r"DUCKPULSE_HOST='0\.0\.0\.0' is not a loopback address.*DUCKPULSE_TOKEN"):
        create_app({"DUCKPULSE_HOST": "0.0.0.0"}, monitor=monitor)
    create_app({"DUCKPULSE_HOST": "0.0.0.0", "DUCKPULSE_TOKEN": TOKEN}, monitor=monitor)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("example.org") and not is_loopback("10.0.0.1")
    check_exposure("127.0.0.1", None)


@pytest.mark.parametrize("config,fragment", [
    ({"DUCKPULSE_PORT": "eighty"}, "DUCKPULSE_PORT='eighty': expected an integer from 0 to 65535"),
    ({"DUCKPULSE_PORT": 70000}, "from 0 to 65535"),
    ({"DUCKPULSE_PORT": True}, "from 0 to 65535"),
    ({"DUCKPULSE_REFRESH_SECONDS": "0"}, "DUCKPULSE_REFRESH_SECONDS='0': expected a number of seconds from 1"),
    ({"DUCKPULSE_REFRESH_SECONDS": "soon"}, "from 1 to 3600"),
    ({"DUCKPULSE_N_PLUS_ONE_THRESHOLD": 1}, "from 2 to 10000"),
    ({"DUCKPULSE_TOKEN": "has space"}, "DUCKPULSE_TOKEN: expected printable characters without spaces"),
    ({"DUCKPULSE_DB_PATH": 5}, "DUCKPULSE_DB_PATH=5: expected a string"),
    ({"DUCKPULSE_HOST": ""}, "DUCKPULSE_HOST: expected an address"),
    ({"DUCKPULSE_PROT": "1"}, "unknown setting(s) DUCKPULSE_PROT"),
])
def test_bad_settings_name_the_key_and_the_range(config: dict[str, Any], fragment: str) -> None:
    """A bad value raises ConfigError naming the key and what is accepted."""
    with pytest.raises(ConfigError) as info:
        load(config, environ={})
    assert fragment in str(info.value)


def test_the_environment_fills_what_the_mapping_does_not_give() -> None:
    """Environment variables complete the mapping; the mapping wins where both give a key."""
    settings = load({"DUCKPULSE_PORT": 9000, "TESTING": True},
                    environ={"DUCKPULSE_PORT": "1", "DUCKPULSE_TOKEN": TOKEN, "DUCKPULSE_DB_PATH": "/x.db"})
    assert settings == Settings(db_path="/x.db", token=TOKEN, port=9000)
    assert load(None, environ={}) == Settings()


def test_create_app_needs_a_database_or_a_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a monitor and without DUCKPULSE_DB_PATH, create_app says what to give."""
    monkeypatch.delenv("DUCKPULSE_DB_PATH", raising=False)
    with pytest.raises(ConfigError, match="DUCKPULSE_DB_PATH is not set"):
        create_app({})


def test_a_producer_cannot_serve_the_dashboard(tmp_path: Path) -> None:
    """The dashboard reads the file, so it refuses a monitor that never owns one, with a message."""
    with Monitor(spool_dir=tmp_path / "spool", jobs=False, memory_interval_seconds=None) as producer, \
            pytest.raises(ConfigError, match="needs a Monitor of that file"):
        blueprint(producer)


def test_a_dashboard_in_a_process_that_does_not_own_the_file_answers_503(tmp_path: Path) -> None:
    """Mounted in a process that records as a producer for now (gunicorn workers all mounting it), the dashboard
    reads what the owner publishes; an owner that published nothing (jobs=False) makes it say so, in the error
    envelope; health still answers."""
    db = tmp_path / "m.duckdb"
    holder = subprocess.Popen([sys.executable, str(Path(__file__).with_name("process_roles.py")), "own_and_wait",
                               str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("owner")
        with Monitor(db_path=db, memory_interval_seconds=None) as mon:
            assert not mon.is_owner and mon.can_own
            app = Flask("workers_app")
            app.register_blueprint(blueprint(mon))
            answer = app.test_client().get("/duckpulse/api/metrics/performance")
            assert answer.status_code == 503
            message = answer.get_json()["error"]["message"]
            assert f"pid {os.getpid()}) does not own {db}" in message and "nothing is published there yet" in message
            assert app.test_client().get("/duckpulse/api/health").status_code == 200
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)


@pytest.fixture
def user_app(monitor: Monitor) -> Iterator[Flask]:
    app = Flask("users_app")

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    @app.errorhandler(Exception)
    def users_own(exc: Exception) -> tuple[str, int]:
        return "the user's own error page", 418

    app.register_blueprint(blueprint(monitor, url_prefix="/perf/", token=TOKEN))
    yield app


def test_the_blueprint_mounts_the_dashboard_under_a_prefix(user_app: Flask, monitor: Monitor) -> None:
    """Mounted at /perf, the API, page and assets live under it, with the token and the envelope there only."""
    monitor.track_request("/hello", "GET", 200, 2.0)
    monitor.flush()
    client = user_app.test_client()
    assert client.get("/hello").data == b"hello"
    body = client.get("/perf/api/metrics/performance", headers=AUTH).get_json()
    assert body["requests"]["byRoute"] == {"/hello": 1}
    assert_envelope(client.get("/perf/api/routes"), 401)
    assert_envelope(client.get("/perf/api/nope", headers=AUTH), 404)
    assert_envelope(client.post("/perf/api/routes", headers=AUTH), 405)
    page = client.get("/perf/").get_data(as_text=True)
    assert 'data-api-base="/perf"' in page and 'src="/perf/static/dashboard.js"' in page
    doc = client.get("/perf/api/openapi.json", headers=AUTH).get_json()
    assert doc["servers"] == [{"url": "/perf"}]
    outside = client.get("/elsewhere")
    assert outside.status_code == 418, "errors outside the prefix keep the user's own handler"


def test_the_blueprint_leaves_other_errors_to_flask_by_default(monitor: Monitor) -> None:
    """In an app with no error handler of its own, a 404 outside the prefix is Flask's usual page."""
    app = Flask("plain")
    app.register_blueprint(blueprint(monitor, url_prefix="/perf"))
    client = app.test_client()
    outside = client.get("/nothing")
    assert outside.status_code == 404 and outside.mimetype == "text/html"
    assert_envelope(client.get("/perf/nothing"), 404)
    assert client.get("/perfume").mimetype == "text/html", "a prefix is a path segment, not a string prefix"


def test_the_blueprint_hands_outside_http_errors_to_the_apps_previous_handler(monitor: Monitor) -> None:
    """An HTTPException handler the app had before mounting still answers outside the prefix."""
    from werkzeug.exceptions import HTTPException

    app = Flask("with_handler")

    @app.errorhandler(HTTPException)
    def theirs(exc: HTTPException) -> tuple[str, int]:
        return "theirs", 299

    app.register_blueprint(blueprint(monitor, url_prefix="/perf"))
    client = app.test_client()
    assert client.get("/nothing").status_code == 299
    assert_envelope(client.get("/perf/api/nothing"), 404)


def test_duckpulse_dashboard_true_mounts_the_default_monitors_dashboard(monitor: Monitor) -> None:
    """DuckPulse(app, dashboard={...}) calls webapp.blueprint() without a monitor: the default monitor serves."""
    from pipeline.integrations.flask import DuckPulse

    app = Flask("shop")

    @app.get("/")
    def home() -> str:
        return "home"

    DuckPulse(app, monitor=monitor, dashboard={"url_prefix": "/perf"})
    client = app.test_client()
    with client.get("/") as response:  # the middleware records when the response is closed
        assert response.data == b"home"
    monitor.flush()
    with client.get("/users/1") as response, client.get("/users/2") as again:
        assert response.status_code == again.status_code == 404
    monitor.flush()
    # Closed too: the middleware keeps the request in a context variable until then.
    with client.get("/perf/api/metrics/performance") as response:
        body = response.get_json()
    assert list(body["requests"]["byRoute"].items()) == [("<unmatched>", 2), ("/", 1)], (
        "busiest first, even though the host app's JSON provider sorts keys")
