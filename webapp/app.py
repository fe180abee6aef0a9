"""The application factory and the blueprint that carries the whole dashboard.

``create_app`` is a Flask app holding nothing but the blueprint at the root; ``blueprint`` mounts the same
dashboard inside a user's app under a prefix. Authentication and the JSON error envelope apply to every path
under the prefix, including paths no route matches (so an unauthenticated client learns nothing, not even
which URLs exist).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from flask import Blueprint, Flask, Response, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from pipeline import Monitor, default_monitor
from pipeline.errors import ConfigError

from . import config as config_module
from .api import Api
from .cache import cache_key
from .config import Settings
from .params import ApiError

logger = logging.getLogger("duckpulse.webapp")
EXTENSION = "duckpulse"
PUBLIC_ENDPOINTS = ("health", "page", "static")  # health by design; the page and its scripts hold no data
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
# The page may load only what the app serves: a browser-side guarantee that nothing leaves the host.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def envelope(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """The one error shape of the API: ``{"error": {"status": ..., "message": ...}}``."""
    response = Response(json.dumps({"error": {"status": status, "message": message}}), status=status,
                        mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _http_message(exc: HTTPException, prefix: str) -> str:
    if isinstance(exc, NotFound):
        return (f"nothing at {request.path}; the endpoints of this API are described at "
                f"{prefix}/api/openapi.json")
    if isinstance(exc, MethodNotAllowed):
        allowed = sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"})
        return f"{request.method} is not allowed on {request.path}; use {' or '.join(allowed) or 'another method'}"
    return f"{exc.name}: {exc.description}"


def bearer_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries ``token`` as a bearer token (compared in constant time)."""
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def host_is_local(host: str) -> bool:
    """Whether a Host header (name or address, with or without a port) names this machine."""
    hostname = host.rpartition("]")[0][1:] if host.startswith("[") else host.partition(":")[0]
    return config_module.is_loopback(hostname)


def blueprint(monitor: Monitor | None = None, url_prefix: str = "/duckpulse", *, token: str | None = None,
              settings: Settings | None = None, name: str = "duckpulse") -> Blueprint:
    """The dashboard of ``monitor`` (an owner in this process) as a blueprint mounted at ``url_prefix``.

    ``monitor=None`` takes ``pipeline.default_monitor()`` (the most recently created open Monitor), which is
    what ``DuckPulse(app, dashboard=True)`` relies on. ``token``, when given, is the bearer token every endpoint
    but ``/api/health`` requires; it overrides the token of ``settings`` (default: ``DUCKPULSE_*`` environment
    variables).
    """
    return _build(monitor, url_prefix, token, settings, name)[0]


def _build(monitor: Monitor | None, url_prefix: str, token: str | None, settings: Settings | None,
           name: str) -> tuple[Blueprint, Api]:
    if monitor is None:
        monitor = default_monitor()
    if not isinstance(monitor, Monitor) or (monitor.db_path is None and not monitor.can_own):
        # A monitor of a file this process does not own (role "auto" while another process owns it, or
        # "producer") is accepted: the dashboard reads what the owner publishes (webapp/published.py).
        raise ConfigError("the dashboard reads a DuckDB file, so it needs a Monitor of that file (one created "
                          "with db_path=...); a producer of a spool (spool_dir=...) names no database to read. "
                          "Give the monitor db_path=..., or serve the dashboard with `duckpulse serve`")
    settings = settings or config_module.load()
    if token is not None:  # validated like the setting it overrides
        settings = replace(settings, token=config_module.load({"DUCKPULSE_TOKEN": token}, environ={}).token)
    prefix = url_prefix.rstrip("/")
    bp = Blueprint(name, __name__, url_prefix=prefix or None, static_folder="static", static_url_path="/static",
                   template_folder="templates")
    api = Api(monitor, settings, name)
    api.register(bp)

    def in_scope() -> bool:
        path = request.path
        return not prefix or path == prefix or path.startswith(prefix + "/")

    def authorized() -> bool:
        return settings.token is None or bearer_matches(request.headers.get("Authorization", ""), settings.token)

    api.authorized = authorized

    public = {f"{name}.{e}" for e in PUBLIC_ENDPOINTS}

    def authenticate() -> Response | None:
        if not in_scope():
            return None
        if settings.token is None:
            # Without a token the dashboard is for this machine only. A request naming another host reached it
            # through a proxy or a DNS-rebinding web page: refuse it, or that page could read the data.
            if not host_is_local(request.host):
                return envelope(403, f"this dashboard has no token, so it answers only requests addressed to "
                                     f"localhost, not {request.host!r}; set DUCKPULSE_TOKEN to serve it under "
                                     "another name")
            return None
        if request.endpoint in public:
            return None
        if not authorized():
            return envelope(401, "this endpoint needs the dashboard's token: send the header 'Authorization: "
                                 "Bearer <token>' (the token is the DUCKPULSE_TOKEN the server was started with)",
                            {"WWW-Authenticate": 'Bearer realm="duckpulse"'})
        return None

    def api_error(exc: ApiError) -> Response:
        return envelope(exc.status, exc.message)

    def internal_error(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):  # raised inside a view (abort): same envelope as routing errors
            return envelope(exc.code or 500, _http_message(exc, prefix))
        logger.exception("duckpulse dashboard: %s %s failed", request.method, request.path)
        return envelope(500, f"the server failed while answering {request.path} ({type(exc).__name__}); "
                             "the server log has the details")

    def secure(response: Response) -> Response:
        if in_scope():
            for key, value in SECURITY_HEADERS:
                response.headers.setdefault(key, value)
            if response.mimetype == "text/html":
                response.headers["Content-Security-Policy"] = CSP
            elif request.endpoint != f"{name}.static":
                response.headers.setdefault("Cache-Control", "no-store")
        return response

    bp.register_error_handler(ApiError, api_error)
    bp.register_error_handler(Exception, internal_error)

    def on_register(state: BlueprintSetupState) -> None:
        app = state.app
        # Routing errors (404, 405) happen before any blueprint is chosen, so they reach only app-level handlers:
        # answer those under our prefix, and hand the rest to whatever handled them before.
        previous: Callable[[Any], Any] | None = app.error_handler_spec[None][None].get(HTTPException)

        def routing_error(exc: HTTPException) -> Any:
            if in_scope():
                return envelope(exc.code or 500, _http_message(exc, prefix))
            # Outside the prefix: whatever the app would have used without us (the handler we replaced, or one
            # for a base class such as Exception), else Flask's default page.
            handlers = app.error_handler_spec[None][None]
            for cls in type(exc).__mro__:
                handler = previous if cls is HTTPException else handlers.get(cls)
                if handler is not None:
                    return handler(exc)
            return exc

        app.register_error_handler(HTTPException, routing_error)
        app.before_request(authenticate)
        app.after_request(secure)

    bp.record_once(on_register)
    return bp, api


class CachedReads:
    """WSGI in front of the dashboard app: a GET whose answer is fresh in the cache is answered without Flask.

    Flask's request context, routing and hooks cost more than the server itself (about 250 of 590 us of CPU per
    request here); under 16 busy clients that is the p99. Only a request Flask would have answered with that
    very entry is served: the entry exists only once Flask validated this exact URL, and the request must pass
    the same token or localhost check. Anything else, errors included, goes through Flask.
    """

    def __init__(self, app: Any, api: Api, settings: Settings) -> None:
        self.app = app
        self.cache = api.cache
        self.token = settings.token

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") == "GET":
            entry = self.cache.fresh(cache_key(environ))
            if entry is not None and self._allowed(environ):
                start_response("200 OK", [("Content-Type", entry.mimetype),
                                          ("Content-Length", str(len(entry.body))), ("Cache-Control", "no-store"),
                                          *SECURITY_HEADERS])
                return [entry.body]
        return self.app(environ, start_response)

    def _allowed(self, environ: dict[str, Any]) -> bool:
        if self.token is None:
            return host_is_local(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""))
        return bearer_matches(environ.get("HTTP_AUTHORIZATION", ""), self.token)


def create_app(config: Mapping[str, Any] | None = None, *, monitor: Monitor | None = None) -> Flask:
    """The dashboard as a Flask app.

    ``config`` holds ``DUCKPULSE_*`` keys (environment variables fill the rest; other keys go to Flask's
    ``app.config``). With ``monitor`` (the owner's Monitor in this process) the app reads through its store;
    without, the app becomes the owner of ``DUCKPULSE_DB_PATH``, ingesting segments from
    ``DUCKPULSE_SPOOL_DIR``. Serving on a non-loopback ``DUCKPULSE_HOST`` without ``DUCKPULSE_TOKEN`` is refused.
    """
    settings = config_module.load(config)
    config_module.check_exposure(settings.host, settings.token)
    if monitor is None:
        if settings.db_path is None:
            raise ConfigError("DUCKPULSE_DB_PATH is not set: give the DuckDB file to serve, e.g. "
                              "create_app({'DUCKPULSE_DB_PATH': 'metrics.duckdb'}), or pass monitor=...")
        monitor = Monitor(db_path=settings.db_path, ingest_dir=settings.spool_dir)
    app = Flask(__name__, static_folder=None)
    app.config.update({k: v for k, v in (config or {}).items() if not k.startswith(config_module.PREFIX)})
    bp, api = _build(monitor, "", None, settings, "duckpulse")
    app.register_blueprint(bp)
    app.wsgi_app = CachedReads(app.wsgi_app, api, settings)  # type: ignore[method-assign]  # WSGI middleware
    app.extensions[EXTENSION] = {"monitor": monitor, "settings": settings}
    return app
