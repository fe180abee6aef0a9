"""WSGI middleware: one request row per served request, timed until the response iterable is closed.

``app.wsgi_app = MetricsMiddleware(app.wsgi_app, monitor)`` (or any WSGI callable). Per request it records
the route template, the method (``OTHER`` outside the standard set), the status given to ``start_response``
(500 when the application raises), the duration from the call until the server closes the response
iterable, so a streamed body is timed to its end, the request id and the number of queries the request ran.
While the request is served, a ``RequestContext`` is open in ``pipeline.context.current_request`` so that
``Monitor.track_query`` ties queries to it.

The route comes from a hook of the framework (the Flask integration sets it from the matched rule), else
from ``route_resolver(environ)``, else it is ``<unmatched>``: never the raw path, which a scanner could
make unbounded.

A request is recorded when the server closes the response iterable (PEP 3333 obliges it to): a test client
must close responses too (Flask's: ``buffered=True``, or ``response.close()``). Known limit: a body built
with ``wsgi.file_wrapper`` is wrapped like any other, so the server's sendfile shortcut is not taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..context import RequestContext, current_request
from ..monitor import Monitor
from ._common import (
    DEFAULT_EXCLUDED_PATHS,
    OTHER_METHOD,
    STANDARD_METHODS,
    UNMATCHED,
    ExcludedPaths,
    default_or_none,
    log,
    safe_resolver,
)

if TYPE_CHECKING:
    from contextvars import Token

    from ..context import RouteResolver

__all__ = ["DEFAULT_EXCLUDED_PATHS", "UNMATCHED", "MetricsMiddleware"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class MetricsMiddleware:
    """Records every request served by the wrapped WSGI application.

    ``monitor=None`` records into ``pipeline.default_monitor()``, looked up at the first request (so the
    middleware can be built before the Monitor). ``excluded_paths``: an entry ending in ``/`` excludes
    everything under it, any other entry that exact path. ``route_resolver(environ)`` returns the route
    template or None. ``response_time_header`` adds ``X-Response-Time`` (time until the headers were sent);
    a callable is asked once, at the first request. ``timer`` returns seconds (injectable for tests).
    """

    def __init__(self, app: WSGIApp, monitor: Monitor | None = None, *,
                 excluded_paths: Iterable[str] = DEFAULT_EXCLUDED_PATHS,
                 route_resolver: RouteResolver | None = None,
                 response_time_header: bool | Callable[[], bool] = False,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.monitor = monitor
        self._follow_default = monitor is None
        self.excluded = ExcludedPaths(excluded_paths)
        self._exact, self._prefixes = self.excluded.exact, self.excluded.prefixes
        self.resolve = safe_resolver(route_resolver, "WSGI")
        self._decide_header = None if isinstance(response_time_header, bool) else response_time_header
        self.header = response_time_header is True
        self.timer = timer

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in self._exact or path.startswith(self._prefixes):
            return self.app(environ, start_response)
        monitor = self.monitor
        if self._follow_default and (monitor is None or monitor.closed):
            monitor = self.monitor = default_or_none("WSGI")
        if monitor is None:
            return self.app(environ, start_response)
        if self._decide_header is not None:
            self.header, self._decide_header = _decide(self._decide_header), None
        exchange = _Exchange(self, monitor, environ, start_response)
        try:
            body = self.app(environ, exchange.start_response)
        except BaseException:
            exchange.body = ()
            exchange._failed = True
            exchange.close()
            raise
        exchange.body = body
        return exchange


def _decide(header: Callable[[], bool]) -> bool:
    try:
        return bool(header())
    except Exception as exc:
        log.warning("response-time-header", f"duckpulse: cannot decide on the X-Response-Time header ({exc!r}); "
                    "leaving it off", exc_info=exc)
        return False


# Status line -> code; parsing "200 OK" costs ~90 ns, a dict hit ~20. Bounded: reason phrases are free text.
_STATUS_CODES: dict[str, int] = {}
_MAX_STATUS_CODES = 512


def _status_code(status: str) -> int:
    try:
        code = int(status[:3])
    except ValueError:  # a status line that is not "NNN reason": the server will refuse it
        return 500
    if len(_STATUS_CODES) < _MAX_STATUS_CODES:
        _STATUS_CODES[status] = code
    return code


class _Exchange(RequestContext):
    """One request in flight: its context, the ``start_response`` the app calls, the iterable the server reads.

    Being the ``RequestContext`` itself saves an object per request. The context variable stays set from
    the call until ``close()``, so queries run while a streamed body is produced are tied to the request
    (PEP 3333 obliges the server to call ``close()``). Every attribute store and call here is paid by every
    request: what is needed only at the end is read at the end.
    """

    __slots__ = ("_done", "_failed", "_monitor", "_mw", "_start", "_start_response", "_status", "_token", "body")

    def __init__(self, middleware: MetricsMiddleware, monitor: Monitor, environ: Environ,
                 start_response: StartResponse) -> None:
        # RequestContext.__init__ is not called: its four fields are set here, one call fewer per request.
        self.request_id = monitor.next_request_id()
        self.query_count = 0
        self._route = None
        self._resolve = middleware.resolve
        self._source = environ
        self._mw = middleware
        self._monitor = monitor
        self._start_response = start_response
        self._status = "500"  # until start_response says otherwise: a server fails a request that never calls it
        self._failed = self._done = False
        self._token: Token[RequestContext | None] = current_request.set(self)
        self.body: Iterable[bytes]
        self._start = middleware.timer()  # last, so the set-up above is not counted as the application's time

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], object]:
        self._status = status
        if self._route is None and self._resolve is not None:
            # Routing is done and the framework's request state is still alive (Flask clears it right after).
            self._route = self._resolve(self._source)
        if self._mw.header:
            elapsed_ms = (self._mw.timer() - self._start) * 1000.0
            headers = [*headers, ("X-Response-Time", f"{elapsed_ms:.3f}ms")]
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        # A generator rather than __next__: a Python-level __next__ costs ~1 us per request in StopIteration.
        # Not `yield from`: collecting this generator would then close the body a second time.
        try:
            for chunk in self.body:  # noqa: UP028  # see above
                yield chunk
        except Exception:
            self._failed = True  # a body that fails half-way is a failed request, whatever status was sent
            raise

    def close(self) -> None:
        """Close the application's iterable, then record the request (once) and close its context."""
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._failed = True
            raise
        finally:
            # Inline rather than a method of its own: one Python call fewer per request.
            if not self._done:
                self._done = True
                duration_ms = (self._mw.timer() - self._start) * 1000.0
                try:  # noqa: SIM105  # contextlib.suppress costs an object per request
                    current_request.reset(self._token)
                except ValueError:  # closed from another context than the one that opened it: nothing to undo
                    pass
                route = self._route
                if route is None and self._resolve is not None:
                    route = self._resolve(self._source)
                method = self._source.get("REQUEST_METHOD")
                status = 500 if self._failed else _STATUS_CODES.get(self._status) or _status_code(self._status)
                self._monitor.track_request(route or UNMATCHED, method if method in STANDARD_METHODS else OTHER_METHOD,
                                            status, duration_ms, request_id=self.request_id,
                                            query_count=self.query_count)
