"""Flask integration: ``DuckPulse(app, monitor=mon)`` or ``DuckPulse(monitor=mon).init_app(app)``.

It wraps ``app.wsgi_app`` with the WSGI ``MetricsMiddleware`` (so a streamed response is timed until the
server closes it), whose route is the matched rule's template (``/books/<int:book_id>``), read from the
request when the response starts (or when a query or an exception needs it); requests no rule matched
(404, 405) are recorded as ``<unmatched>``. No ``before_request`` hook: see ``wsgi.werkzeug_rule``.

The monitor: the one given (``monitor=``), else the monitor of ``app.config["DUCKPULSE_DB_PATH"]`` (or of
``$DUCKPULSE_DB_PATH``), created at ``init_app`` with the app's other ``DUCKPULSE_*`` monitor settings
(``DUCKPULSE_FLUSH_INTERVAL_SECONDS``, ``DUCKPULSE_ROLE``, ``DUCKPULSE_CONFIG``, ... see pipeline/config.py), else
``pipeline.default_monitor()`` at the first request. ``DUCKPULSE_SPOOL_DIR`` is the database's spool, or without a
database a producer's. The Flask extension convention works: ``DuckPulse()`` at module level and
``init_app(app)`` in the app factory; every app of one file shares one monitor per process
(pipeline/open_monitors.py), however many apps a test suite creates.

Configuration of the middleware, from the constructor's keyword arguments, else ``app.config``, else the defaults:

``DUCKPULSE_EXCLUDED_PATHS``
    Paths not recorded (a list, or a comma-separated string); an entry ending in ``/`` excludes everything
    under it. Default: health checks, ``/metrics``, ``/favicon.ico``, the static folder and the mounted
    dashboard (``dashboard="/perf"``: ``/perf`` and everything under it).
``DUCKPULSE_RESPONSE_TIME_HEADER``
    Add ``X-Response-Time: 12.345ms`` to every response. Default: on when the app runs in debug mode (as
    known at its first request), off otherwise.
"""

from __future__ import annotations

import importlib
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..config import options_from_config
from ..context import active_request
from ..errors import ConfigError
from ..monitor import Monitor
from ._common import DEFAULT_EXCLUDED_PATHS, require
from ._exceptions import record as record_exception
from ._exceptions import recording_monitor
from .wsgi import MetricsMiddleware, werkzeug_rule

require("flask", "Flask", "flask")

from flask import got_request_exception  # noqa: E402  # after require(), which explains a missing Flask

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["DuckPulse"]

EXTENSION_KEY = "duckpulse"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# The matched rule's template of the request in ``environ`` (werkzeug's convention, which Flask follows).
flask_route = werkzeug_rule


def _on_exception(sender: Any, **extra: Any) -> None:
    """``got_request_exception``: learn the route before Flask pops the request whose exception propagates, and
    record the exception (Flask answers it with a 500 itself: the WSGI middleware never sees it raised).

    Otherwise the route is read at ``start_response``, which a propagating exception never reaches.
    """
    ctx = active_request()
    if ctx is not None:
        ctx.route = ctx.route  # reading resolves it, while the request is alive; the write keeps it
    record_exception(recording_monitor(ctx), ctx, extra.get("exception"))


def _configured_monitor(config: Mapping[str, Any]) -> Monitor | None:
    """The monitor ``app.config`` (else the environment) names, or None: the default monitor at the first request."""
    options = options_from_config(config)
    db_path = config.get("DUCKPULSE_DB_PATH") or os.environ.get("DUCKPULSE_DB_PATH")
    spool_dir = config.get("DUCKPULSE_SPOOL_DIR")
    if db_path:
        if spool_dir:
            options["ingest_dir"] = spool_dir
        return Monitor(db_path=db_path, **options)
    if spool_dir:
        return Monitor(spool_dir=spool_dir, **options)
    return None


class DuckPulse:
    """Records every request a Flask app serves (route template, method, status, duration, queries).

    ``monitor=None`` records into the monitor of ``app.config["DUCKPULSE_DB_PATH"]`` (created at ``init_app``,
    shared by every app of that file in this process), else into ``pipeline.default_monitor()``, looked up at the
    first request.
    ``dashboard`` mounts the dashboard in the same app: a URL prefix (``dashboard="/perf"``), ``True`` (at
    ``/duckpulse``), a mapping of ``webapp.blueprint`` options, or a ready Flask blueprint. The monitor must be
    a monitor of the DuckDB file; while another process owns the file, the dashboard answers 503 (that process
    serves it).
    """

    def __init__(self, app: Flask | None = None, monitor: Monitor | None = None, *,
                 excluded_paths: Iterable[str] | None = None, response_time_header: bool | None = None,
                 dashboard: Any = None, timer: Callable[[], float] = time.perf_counter) -> None:
        self.monitor = monitor
        self.excluded_paths = excluded_paths
        self.response_time_header = response_time_header
        self.dashboard = dashboard
        self.timer = timer
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Instrument ``app`` (once: a second call on the same app is refused)."""
        if EXTENSION_KEY in app.extensions:
            raise ConfigError(f"DuckPulse is already set up on the Flask app {app.name!r}; instrumenting it "
                              "twice would record every request twice")
        monitor = self.monitor if self.monitor is not None else _configured_monitor(app.config)
        middleware = MetricsMiddleware(
            app.wsgi_app, monitor,
            excluded_paths=self._excluded_paths(app),
            response_time_header=self._response_time_header(app),
            timer=self.timer,
        )
        middleware.resolve = flask_route  # ours and total, so it skips the guard put around user resolvers
        app.wsgi_app = middleware  # type: ignore[method-assign]  # the documented way to add WSGI middleware
        got_request_exception.connect(_on_exception, app)
        app.extensions[EXTENSION_KEY] = self
        if self.dashboard is not None:
            self._mount_dashboard(app, monitor)

    def _excluded_paths(self, app: Flask) -> tuple[str, ...]:
        if self.excluded_paths is not None:
            return tuple(self.excluded_paths)
        value = app.config.get("DUCKPULSE_EXCLUDED_PATHS")
        if value is None:
            static = f"{app.static_url_path}/" if app.has_static_folder and app.static_url_path else None
            return tuple(p for p in (*DEFAULT_EXCLUDED_PATHS, static, *self._dashboard_paths()) if p)
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        if isinstance(value, Iterable):
            return tuple(value)
        raise ConfigError(f"DUCKPULSE_EXCLUDED_PATHS={value!r}: expected a list of paths or a comma-separated "
                          "string, e.g. '/healthz,/static/'")

    def _dashboard_paths(self) -> tuple[str, ...]:
        # The mounted dashboard polls its API every few seconds: recorded, those requests would fill the routes
        # table of the app they are watching.
        if not isinstance(self.dashboard, str) or not self.dashboard.strip("/"):
            return ()
        prefix = "/" + self.dashboard.strip("/")
        return (prefix, f"{prefix}/")

    def _response_time_header(self, app: Flask) -> bool | Callable[[], bool]:
        if self.response_time_header is not None:
            return bool(self.response_time_header)
        value = app.config.get("DUCKPULSE_RESPONSE_TIME_HEADER")
        if value is None:
            # Decided at the first request: app.run(debug=True) turns debug on after the extension is set up.
            return lambda: bool(app.debug)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"DUCKPULSE_RESPONSE_TIME_HEADER={value!r}: expected a boolean "
                          "(true/false, 1/0, on/off, yes/no)")

    def _mount_dashboard(self, app: Flask, monitor: Monitor | None) -> None:
        from flask import Blueprint

        dashboard = self.dashboard
        if isinstance(dashboard, Blueprint):
            app.register_blueprint(dashboard)
            return
        factory = None
        if dashboard is True or isinstance(dashboard, Mapping | str):
            try:
                # Looked up at run time, only when asked for: the pipeline package must not depend on webapp.
                factory = getattr(importlib.import_module("webapp"), "blueprint", None)
            except ImportError:
                factory = None
        if not callable(factory):
            warnings.warn(f"DuckPulse(dashboard={dashboard!r}) is ignored: pass a Flask blueprint, or True once "
                          "the installed webapp package provides webapp.blueprint()", stacklevel=3)
            return
        options: dict[str, Any] = dict(dashboard) if isinstance(dashboard, Mapping) else {}
        if isinstance(dashboard, str):  # dashboard="/perf": the URL prefix to mount it under
            options["url_prefix"] = dashboard
        options.setdefault("monitor", monitor)
        app.register_blueprint(factory(**options))
