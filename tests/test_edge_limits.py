"""The smaller bounds of issue 13 item 16: the dashboard server's pre-auth HTTP layer (idle timeout, connection
cap, body size limit, its own errors in the JSON envelope), a minimum token length on a public bind, deeply
nested TOML, and the floor of `--interval`."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import Monitor
from pipeline.alerts.rules import RuleError, parse_rules
from pipeline.cli import main
from pipeline.config import read_config_file
from pipeline.errors import ConfigError
from webapp.server import MAX_BODY_BYTES, DashboardServer

TOKEN = "a-long-enough-token-for-tests"


@pytest.fixture
def server(monitor: Monitor) -> Iterator[DashboardServer]:
    with DashboardServer(monitor, "127.0.0.1", 0, idle_timeout_seconds=1.0, max_connections=4) as running:
        yield running


def _raw(server: DashboardServer, data: bytes) -> tuple[int, dict[str, object], str]:
    """Send raw bytes, read the whole answer (the server closes the connection): status, JSON body, headers."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), head.decode("latin-1")


def test_a_too_long_request_line_is_answered_414_in_the_envelope(server: DashboardServer) -> None:
    """A request line over 65,536 bytes: 414 as JSON (http.server answered it in HTML). Exactly what the server
    reads is sent, so that it closes with nothing unread (which would reset the connection under the answer)."""
    line = b"GET /api/routes?x="
    status, body, head = _raw(server, line + b"a" * (65537 - len(line)))
    assert status == 414 and "application/json" in head
    assert body["error"] == {"status": 414, "message": body["error"]["message"]}  # type: ignore[index]
    assert "longer than 65,536 bytes" in str(body["error"])


@pytest.mark.parametrize("headers", [b"X-Big: " + b"a" * (65537 - 7),
                                     b"".join(b"X-H%d: 1\r\n" % i for i in range(100))])
def test_too_large_headers_are_answered_431_in_the_envelope(server: DashboardServer, headers: bytes) -> None:
    """A header line over 65,536 bytes, or more than 100 headers: 431 as JSON."""
    status, body, head = _raw(server, b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n" + headers)
    assert status == 431 and "application/json" in head
    assert body["error"]["status"] == 431  # type: ignore[index]


def test_a_large_body_is_refused_from_its_length_before_it_is_read(server: DashboardServer) -> None:
    """A POST declaring 64 MB is answered 413 at once, its body never sent (the server does not wait for it)."""
    status, body, head = _raw(server, b"POST /api/silences HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                                      b"application/json\r\nContent-Length: %d\r\n\r\n{" % (64 << 20))
    assert status == 413 and "Connection: close" in head
    assert f"larger than {MAX_BODY_BYTES} bytes" in str(body["error"])


def test_a_chunked_body_is_refused_unread(server: DashboardServer) -> None:
    """A chunked body has no length to check before reading it: 411 in the envelope, asking for a length."""
    status, body, _ = _raw(server, b"POST /api/silences HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                                   b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert status == 411 and "Content-Length" in str(body["error"])


def test_idle_connections_are_closed_and_the_cap_answers_503(server: DashboardServer) -> None:
    """Four idle connections fill the cap: a fifth is answered 503 in the envelope at once; each idle one is
    closed by the server after its idle timeout, and then the server answers again."""
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(4)]
    try:
        status, body, _ = _raw(server, b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert status == 503 and "4 connections at once" in str(body["error"])
        for sock in idle:
            assert sock.recv(1) == b""  # closed by the server (the 30 s socket timeout would raise instead)
    finally:
        for sock in idle:
            sock.close()
    status, body, _ = _raw(server, b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status == 200


def test_a_short_token_is_refused_on_a_public_bind(monitor: Monitor) -> None:
    """A one-character token on 0.0.0.0 is refused before any socket opens, saying the minimum and why; the same
    token on loopback, and a long one on 0.0.0.0, are accepted."""
    with pytest.raises(ConfigError, match=r"DUCKPULSE_TOKEN has 1 characters.*at least 16.*guesses it"):
        DashboardServer(monitor, "0.0.0.0", 0, token="x")
    DashboardServer(monitor, "127.0.0.1", 0, token="x").stop()
    DashboardServer(monitor, "0.0.0.0", 0, token=TOKEN).stop()


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "[" * 40 + "]" * 40, "{a=" * 3000 + "1" + "}" * 3000])
def test_deeply_nested_toml_is_a_clear_config_error(tmp_path: Path, value: str) -> None:
    """Arrays or inline tables nested thousands deep (RecursionError in tomllib) or 40 deep: ConfigError naming
    the file, the line and the limit, in a configuration file and in a rules file alike."""
    path = tmp_path / "duckpulse.toml"
    path.write_text(f"# a comment\n[retention]\nraw_days = {value}\n")
    with pytest.raises(ConfigError, match=rf"{path}:3: not valid TOML: values nested deeper than 32 levels"):
        read_config_file(path)
    with pytest.raises(RuleError, match=r"rules.toml:3: not valid TOML: values nested deeper than 32"):
        parse_rules(f"# a comment\n[[rule]]\nvalue = {value}\n", "rules.toml")


@pytest.mark.parametrize("interval", ["0.0001", "0", "-1", "nan", "inf", "soon"])
def test_serve_interval_has_a_floor(tmp_path: Path, interval: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`serve --interval` below 0.05 s (or not a number) exits 2 naming the floor; no file is created."""
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--db", str(tmp_path / "m.duckdb"), "--interval", interval])
    assert exited.value.code == 2
    assert "is not a number of seconds >= 0.05" in capsys.readouterr().err
    assert not (tmp_path / "m.duckdb").exists()
    with pytest.raises(ConfigError, match=r"flush_interval_seconds=0.001: expected at least 0.05 s"):
        Monitor(spool_dir=tmp_path / "s", flush_interval_seconds=0.001)


def test_a_thread_that_served_series_then_sweeps(monitor: Monitor) -> None:
    """A thread serves /api/series (its read cursor then holds that query's result, unfinished: fetchone), leaves
    another result unfinished on the same cursor, then runs an alert sweep (temporary tables on that cursor) and
    serves again: no ResourceInUseException and every answer is right. (The adversarial run's sweep registered
    Arrow tables on that cursor, which DuckDB 2.0 refuses while a result is unfinished; they are Parquet-backed
    temporary tables since a0058a4.)"""
    import threading

    from webapp import create_app

    assert monitor.store is not None and monitor.alerts is not None
    for i in range(2_000):
        monitor.track_request(f"/r{i % 7}", "GET", 200 if i % 10 else 500, 5.0 + i % 50)
    monitor.flush()
    monitor.add_threshold(metric="request_duration", op="gt", value=10, level="warning", by=("route",))
    client = create_app({"TESTING": True}, monitor=monitor).test_client()
    outcome: dict[str, object] = {}

    def serve_then_sweep() -> None:
        try:
            assert client.get("/api/series?window=1h").status_code == 200
            assert monitor.store is not None and monitor.alerts is not None
            with monitor.store.reading() as cursor:  # a streaming result left unfinished on this thread's cursor
                cursor.execute("SELECT * FROM requests")
                cursor.fetchone()
            outcome["sweep"] = monitor.alerts.sweep(monitor.clock.now())
            outcome["routes"] = client.get("/api/routes?window=1h").get_json()["routes"]
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    worker = threading.Thread(target=serve_then_sweep)
    worker.start()
    worker.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["sweep"]["label_sets"] >= 7  # type: ignore[index]
    assert sum(r["count"] for r in outcome["routes"]) == 2_000  # type: ignore[attr-defined]

