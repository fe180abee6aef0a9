"""What every web integration shares: method folding, excluded paths, safe route resolvers, the monitor.

Kept free of any web framework import so the WSGI and ASGI middlewares load without one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from ..clock import SYSTEM_CLOCK
from ..context import UNMATCHED as UNMATCHED
from ..errors import IntegrationMissingError
from ..logs import ThrottledLog
from ..monitor import Monitor, default_monitor

OTHER_METHOD = "OTHER"
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
# Health checks, scrapes and static files are many, cheap and uninteresting; an entry ending in "/" is a prefix.
DEFAULT_EXCLUDED_PATHS: tuple[str, ...] = (
    "/health", "/healthz", "/livez", "/readyz", "/metrics", "/favicon.ico", "/static/",
)

# Failures inside an integration are logged here, throttled, when no monitor's own log is at hand.
log = ThrottledLog(SYSTEM_CLOCK)


def require(module: str, integration: str, extra: str) -> ModuleType:
    """Import a foreign library for an integration, or fail saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise IntegrationMissingError(
            f"the duckpulse {integration} integration needs {module!r}, which is not installed "
            f"({exc}). Install it, e.g. `pip install {extra}`") from exc


class ExcludedPaths:
    """Which request paths are not recorded: an entry ending in "/" excludes everything under it, any other
    entry exactly that path."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, paths: Iterable[str]) -> None:
        if isinstance(paths, str):  # a bare string would exclude every one-character path
            paths = (paths,)
        paths = tuple(paths)
        for p in paths:
            if not isinstance(p, str) or not p.startswith("/"):
                raise ValueError(f"excluded path {p!r}: expected a path starting with '/', e.g. '/healthz' "
                                 "(exact) or '/static/' (everything under it)")
        self.exact = frozenset(p for p in paths if not p.endswith("/"))
        self.prefixes = tuple(p for p in paths if p.endswith("/"))

    def __contains__(self, path: str) -> bool:
        return path in self.exact or path.startswith(self.prefixes)


def safe_resolver(resolver: Callable[[Any], str | None] | None, what: str) -> Callable[[Any], str | None] | None:
    """Wrap a user's route resolver so that its failure costs the route (``<unmatched>``), never the request."""
    if resolver is None:
        return None

    def resolve(source: Any) -> str | None:
        try:
            route = resolver(source)
        except Exception as exc:
            log.warning(f"resolver:{what}", f"duckpulse: the {what} route resolver failed ({exc!r}); the request "
                        f"is recorded as {UNMATCHED}", exc_info=exc)
            return UNMATCHED
        if route is not None and not isinstance(route, str):
            log.warning(f"resolver-type:{what}", f"duckpulse: the {what} route resolver returned {route!r}, not "
                        f"a str; the request is recorded as {UNMATCHED}")
            return UNMATCHED
        return route or None

    return resolve


def default_or_none(what: str) -> Monitor | None:
    """The default monitor, or None (logged, throttled) when none is open: a request is never failed for it.

    Middleware is often built at import time, before the application creates its Monitor, so with
    ``monitor=None`` it looks the default up at the first request, and again once that one is closed.
    """
    try:
        return default_monitor()
    except Exception as exc:
        log.warning(f"no-monitor:{what}", f"duckpulse: the {what} integration records nothing: {exc}")
        return None
