"""Serving the dashboard: the threaded server in the owner, and `serve` from the command line."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline import Monitor
from pipeline.errors import ConfigError
from webapp.server import DashboardServer, serve, start


def get(url_host: str, port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(url_host, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_the_server_answers_on_loopback_and_stops(monitor: Monitor) -> None:
    """A server on 127.0.0.1 port 0 answers concurrent keep-alive clients, then stops and frees its port."""
    monitor.track_request("/a", "GET", 200, 3.0)
    monitor.flush()
    server = start(monitor, "127.0.0.1", 0)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}"
        results: list[int] = []

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for _ in range(5):  # one connection, several requests: keep-alive
                conn.request("GET", "/api/metrics/performance?window=5m")
                response = conn.getresponse()
                assert json.loads(response.read())["requests"]["total"] == 1
                results.append(response.status)
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == [200] * 20
    finally:
        server.stop()
    with socket.socket() as probe:
        # SO_REUSEADDR tolerates the closed connections' TIME_WAIT but still fails if anything listens.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))


def test_serve_blocks_until_the_stop_event(monitor: Monitor) -> None:
    """serve() runs the dashboard until its stop event is set, then returns the port it served on."""
    stop = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(target=lambda: ports.append(serve(monitor, "127.0.0.1", 0, "tok-12345678", stop)))
    thread.start()
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and ports and ports[0] > 0


def test_a_busy_port_is_a_config_error_naming_the_fix(monitor: Monitor) -> None:
    """A port already in use raises ConfigError saying to choose another port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="choose another port"):
            DashboardServer(monitor, "127.0.0.1", taken.getsockname()[1])


def test_a_public_address_without_a_token_is_refused(monitor: Monitor) -> None:
    """The server refuses 0.0.0.0 without a token before opening any socket."""
    with pytest.raises(ConfigError, match="not a loopback address"):
        DashboardServer(monitor, "0.0.0.0", 0)


def test_ipv6_loopback_urls_are_bracketed(monitor: Monitor) -> None:
    """On ::1 the URL puts the address in brackets."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = DashboardServer(monitor, "::1", 0)
    except ConfigError:
        pytest.skip("::1 is not configured here")
    try:
        assert server.url.startswith("http://[::1]:")
    finally:
        server.stop()


def test_serve_on_the_command_line_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`python -m webapp serve` owns the file, serves the dashboard beside the ingest, and on SIGTERM stops the
    server, ingests a last time and exits 0."""
    db, spool = tmp_path / "m.duckdb", tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, "-m", "webapp", "serve", "--db", str(db), "--spool", str(spool),
                             "--port", "0", "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert "owning" in proc.stdout.readline()
        line = proc.stdout.readline()
        assert line.startswith("duckpulse: dashboard at http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        with Monitor(spool_dir=spool, jobs=False, memory_interval_seconds=None) as producer:
            producer.track_request("/from-a-producer", "GET", 200, 1.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = get("127.0.0.1", port, "/api/metrics/performance?window=1h")
            assert status == 200
            if body["requests"]["total"]:  # type: ignore[index]
                break
            time.sleep(0.1)  # another process ingests on its own schedule: no hook to call
        assert body["requests"]["byRoute"] == {"/from-a-producer": 1}  # type: ignore[index]
        status, health = get("127.0.0.1", port, "/api/health")
        assert status == 200 and health["role"] == "owner"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    """`serve --host 0.0.0.0` without DUCKPULSE_TOKEN exits 2 with a message and leaves the file free."""
    db = tmp_path / "m.duckdb"
    env = {k: v for k, v in os.environ.items() if k != "DUCKPULSE_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "webapp", "serve", "--db", str(db), "--spool",
                          str(tmp_path / "spool"), "--host", "0.0.0.0", "--port", "0"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert "not a loopback address" in out.stderr and "DUCKPULSE_TOKEN" in out.stderr
    Monitor(db_path=db, jobs=False, memory_interval_seconds=None).close()  # the owner lock was released


@pytest.mark.parametrize("installed", [True, False])
def test_the_console_scripts_serve_finds_the_dashboard_at_run_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], installed: bool) -> None:
    """`duckpulse serve` (pipeline.cli, which never imports webapp) looks the dashboard up at run time and serves
    it; without the webapp package it says so and still owns the file."""
    import importlib

    from pipeline import cli

    if not installed:
        real = importlib.import_module

        def missing(name: str, *args: Any) -> Any:
            if name.startswith("webapp"):
                raise ImportError(name)
            return real(name, *args)
        monkeypatch.setattr(importlib, "import_module", missing)
    handlers: dict[int, Any] = {}
    monkeypatch.setattr(signal, "signal", lambda signum, handler: handlers.setdefault(signum, handler))
    # The command stops on SIGTERM: call the handler it installed, as the signal would.
    timer = threading.Timer(0.5, lambda: handlers[signal.SIGTERM](signal.SIGTERM, None))
    timer.start()
    assert cli.main(["serve", "--db", str(tmp_path / "m.duckdb"), "--spool", str(tmp_path / "s"),
                     "--interval", "0.05", "--port", "0"]) == 0
    timer.join()
    out = capsys.readouterr().out
    if installed:  # webapp's own entry point (python -m webapp) hands the dashboard in explicitly
        import webapp.cli

        timer = threading.Timer(0.5, lambda: handlers[signal.SIGTERM](signal.SIGTERM, None))
        handlers.clear()
        timer.start()
        assert webapp.cli.main(["serve", "--db", str(tmp_path / "m.duckdb"), "--spool", str(tmp_path / "s"),
                                "--interval", "0.05", "--port", "0"]) == 0
        timer.join()
        assert "duckpulse: dashboard at http://127.0.0.1:" in capsys.readouterr().out
    if installed:
        assert "duckpulse: dashboard at http://127.0.0.1:" in out
    else:
        assert "no dashboard (the webapp package is not installed)" in out
