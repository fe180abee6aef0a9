"""Serving the dashboard from the owner process with werkzeug's threaded WSGI server.

One thread per connection (keep-alive connections reuse theirs, and with it their DuckDB read cursor), so
sixteen clients read in parallel. Before the app (and its token check) sees a request, this layer bounds what a
client can hold: an idle timeout per connection, a cap on connections, a body size limit checked before reading,
and its own errors (414, 431, 413, 411, 503) in the API's JSON envelope. The server runs on its own thread beside
the monitor's jobs until ``stop()`` (or the ``stop_event`` given to ``serve``) says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, select_address_family

from pipeline.errors import ConfigError

from . import config

if TYPE_CHECKING:
    from pipeline import Monitor


# The pre-auth HTTP layer's bounds: what a client can hold or send before the app (and its token check) sees it.
# A connection silent this long (no request, or a request that stops arriving) is closed: 2,000 idle
# connections were once held forever, a thread each.
IDLE_TIMEOUT_SECONDS = 30.0
# Connections served at once (a thread each); beyond, a new one is answered 503 at once and closed.
MAX_CONNECTIONS = 64
# A request body larger than this is refused (413) from its Content-Length, before anything reads or parses it
# (a 64 MB POST was once parsed before it was refused); a silence, the largest body the API takes, is < 30 KB.
MAX_BODY_BYTES = 1 << 20


def _error_bytes(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 response in the API's one error envelope, closing the connection."""
    body = json.dumps({"error": {"status": status, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


# What http.server answers by itself, before any app runs, said in the envelope's words.
_MESSAGES = {
    414: "the request line is longer than 65,536 bytes: send fewer or shorter query parameters",
    431: "a header line is longer than 65,536 bytes, or the request has more than 100 headers",
    413: f"the request body is larger than {MAX_BODY_BYTES} bytes, the most this dashboard accepts",
    411: "send the body with a Content-Length header (this dashboard takes no chunked request bodies)",
}


class QuietHandler(WSGIRequestHandler):
    """Request handler that does not print one line per request (a dashboard polls every few seconds), closes
    idle connections, refuses large bodies unread and answers its own errors in the JSON envelope."""

    # StreamRequestHandler sets it on the socket: every read and write waits at most this long.
    timeout = IDLE_TIMEOUT_SECONDS

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own answers (414, 431, 400 for a malformed request, 413 here) as JSON, never HTML."""
        reason = self.responses.get(code, ("Error", ""))[0]
        text = _MESSAGES.get(code) or f"{reason}: {message or explain or 'the request could not be read'}"
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client is gone: nothing to tell it
            self.wfile.write(_error_bytes(code, reason, text))

    def run_wsgi(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            # A chunked body has no length to check before reading it; every client of this API knows its length.
            self.send_error(411)
            return
        declared = self.headers.get("Content-Length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > MAX_BODY_BYTES):
            self.send_error(413)  # before the body is read: the connection closes with it unread
            return
        super().run_wsgi()


class GuardedServer(ThreadedWSGIServer):
    """werkzeug's threaded server with a cap on the connections it serves at once."""

    def __init__(self, *args: Any, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused_connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_connections += 1
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_error_bytes(503, "Service Unavailable", "this dashboard serves "
                                             f"{self.max_connections} connections at once, all busy; retry shortly"))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class DashboardServer:
    """The dashboard of ``monitor`` served on ``host:port`` (port 0 picks a free port) in a thread."""

    def __init__(self, monitor: Monitor, host: str = "127.0.0.1", port: int = 8050, token: str | None = None,
                 config: Mapping[str, Any] | None = None, *, idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
                 max_connections: int = MAX_CONNECTIONS) -> None:
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
            handler = type("Handler", (QuietHandler,), {"timeout": idle_timeout_seconds})
            self._server = GuardedServer(host, port, self.app, handler=handler, fd=listener.fileno(),
                                         max_connections=max_connections)
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
