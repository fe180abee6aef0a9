"""Serving the dashboard from the owner process with werkzeug's threaded WSGI server.

One thread per connection (keep-alive connections reuse theirs, and with it their DuckDB read cursor), so
sixteen clients read in parallel. The server runs on its own thread beside the monitor's jobs until
``stop()`` (or the ``stop_event`` given to ``serve``) says otherwise.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server, select_address_family

from pipeline.errors import ConfigError

from . import config

if TYPE_CHECKING:
    from pipeline import Monitor


class QuietHandler(WSGIRequestHandler):
    """Request handler that does not print one line per request (a dashboard polls every few seconds)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class DashboardServer:
    """The dashboard of ``monitor`` served on ``host:port`` (port 0 picks a free port) in a thread."""

    def __init__(self, monitor: Monitor, host: str = "127.0.0.1", port: int = 8050, token: str | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        from .app import create_app

        settings: dict[str, Any] = {**(config or {}), "DUCKPULSE_HOST": host, "DUCKPULSE_PORT": port}
        if token is not None:
            settings["DUCKPULSE_TOKEN"] = token
        self.app = create_app(settings, monitor=monitor)  # refuses a public host without a token
        # The socket is bound here, not by werkzeug, which would print and sys.exit(1) on a busy port.
        try:
            listener = socket.create_server((host, port), family=select_address_family(host, port))
        except OSError as exc:
            raise ConfigError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}; choose "
                              "another port (--port, DUCKPULSE_PORT; 0 picks a free one) or address") from exc
        with listener:  # werkzeug serves a duplicate of its descriptor
            self._server: BaseWSGIServer = make_server(host, port, self.app, threaded=True,
                                                       request_handler=QuietHandler, fd=listener.fileno())
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="duckpulse-dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> DashboardServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and wait for the serving thread (requests in flight finish on theirs)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=30)
        self._server.server_close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check(host: str, port: int) -> None:
    """Refuse what ``start`` would refuse (a public host without DUCKPULSE_TOKEN, a bad DUCKPULSE_* value) before
    the caller creates its monitor, so a refused command records nothing."""
    settings = config.load({"DUCKPULSE_HOST": host, "DUCKPULSE_PORT": port})
    config.check_exposure(settings.host, settings.token)


def start(monitor: Monitor, host: str = "127.0.0.1", port: int = 8050, token: str | None = None) -> DashboardServer:
    """Start serving the dashboard in a thread; ``stop()`` the result to end it."""
    return DashboardServer(monitor, host, port, token).start()


def serve(monitor: Monitor, host: str, port: int, token: str | None, stop_event: threading.Event) -> int:
    """Serve the dashboard until ``stop_event`` is set; returns the port served on."""
    with DashboardServer(monitor, host, port, token) as server:
        stop_event.wait()
    return server.port
