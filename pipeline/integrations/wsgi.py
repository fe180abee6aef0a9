"""WSGI middleware: one request row per served request, timed until the response iterable is closed.

``app.wsgi_app = MetricsMiddleware(app.wsgi_app, monitor)`` (or any WSGI callable). Per request it records
the route template, the method (``OTHER`` outside the standard set), the status given to ``start_response``
(500 when the application raises, or when its body fails half-way while the server iterates it), the
duration from the call until the server closes the response iterable, so a streamed body is timed to its
end, the request id and the number of queries the request ran.
While the request is served, a ``RequestContext`` is open in this context's WSGI slot
(``pipeline.context.wsgi_slot``) so that ``Monitor.track_query`` ties queries to it.

The route comes from a hook of the framework (the Flask integration sets it from the matched rule), else
from ``route_resolver(environ)``, else it is ``<unmatched>``: never the raw path, which a scanner could
make unbounded.

A request is recorded when the server closes the response iterable (PEP 3333 obliges it to): a test client
must close responses too (Flask's: ``buffered=True``, or ``response.close()``). Known limit: a body built
with ``wsgi.file_wrapper`` is wrapped like any other, so the server's sendfile shortcut is not taken. A body
failing half-way is seen by the exception in flight when the server closes it, as pure-Python servers
(werkzeug, gunicorn, waitress, wsgiref) do; a server that handles the error in C first (uWSGI, mod_wsgi)
leaves the status that was sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from sys import exc_info as _exc_info
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..buffer import RAW_CAP
from ..context import RequestContext, wsgi_slot
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
    from ..context import RouteResolver

__all__ = ["DEFAULT_EXCLUDED_PATHS", "UNMATCHED", "MetricsMiddleware"]

INF = math.inf

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
        # The exchange is filled in here rather than by an __init__: a Python frame fewer per request.
        exchange = _new_exchange(_Exchange)
        exchange.request_id = monitor.next_request_id()
        exchange.query_count = 0
        exchange._route = None
        exchange._resolve = self.resolve
        exchange._source = environ
        exchange._mw = self
        exchange._monitor = monitor
        exchange._start_response = start_response
        exchange._status = "500"  # until start_response says otherwise: a server fails a request that never calls it
        exchange._failed = False
        slot = exchange._slot = wsgi_slot()
        exchange._outer = slot[0]  # a request this one runs inside of (a WSGI app calling another), or None
        slot[0] = exchange
        exchange._start = self.timer()  # last, so the set-up above is not counted as the application's time
        try:
            exchange.body = self.app(environ, exchange.start_response)
        except BaseException:
            exchange.body = ()
            exchange._failed = True
            exchange.close()
            raise
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


_new_exchange = object.__new__


def _failing() -> bool:
    """Whether ``close()`` runs while an exception propagates: the body failed half-way.

    Servers close the iterable in a ``finally`` or ``except`` block around their loop over it (PEP 3333), so
    an exception raised by the body is still being handled there. A client that went away is not the
    application's failure: the server's write raised ConnectionError or TimeoutError, and the status sent
    stands.
    """
    exc = _exc_info()[1]
    return exc is not None and not isinstance(exc, ConnectionError | TimeoutError)


class _Exchange(RequestContext):
    """One request in flight: its context, the ``start_response`` the app calls, the iterable the server reads.

    Being the ``RequestContext`` itself saves an object per request. It stays in the WSGI slot from the call
    until ``close()``, so queries run while a streamed body is produced are tied to the request
    (PEP 3333 obliges the server to call ``close()``). Every attribute store and call here is paid by every
    request: what is needed only at the end is read at the end.
    """

    __slots__ = ("_failed", "_monitor", "_mw", "_outer", "_slot", "_start", "_start_response", "_status", "body")

    _slot: list[RequestContext | None] | None  # None once the request is recorded
    _outer: RequestContext | None
    _mw: MetricsMiddleware
    _monitor: Monitor
    _start_response: StartResponse
    _status: str
    _failed: bool
    _start: float
    body: Iterable[bytes]

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
        # The server iterates the application's own iterable: wrapping it in a generator costs ~0.3 us per
        # request. A body that fails half-way is seen in close() instead (see _failing).
        return iter(self.body)

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
            slot = self._slot
            if slot is not None:  # the first close records; a second one does nothing
                self._slot = None
                duration_ms = (self._mw.timer() - self._start) * 1000.0
                if slot[0] is self:
                    slot[0] = self._outer
                route = self._route
                if route is None and self._resolve is not None:
                    route = self._resolve(self._source)
                method = self._source.get("REQUEST_METHOD")
                failed = self._failed or _failing()
                status = 500 if failed else _STATUS_CODES.get(self._status) or _status_code(self._status)
                monitor = self._monitor
                if (monitor.sample_rate == 1.0 and 0.0 <= duration_ms < INF
                        and len(raw := monitor._raw_requests) < RAW_CAP):
                    # Monitor.track_request's append, inline: calling it costs ~0.6 us more per request here (after
                    # the application ran, its code and data are cold), a fifth of the middleware's budget. Any
                    # other case (sampling, a full raw list, a timer gone wrong) takes the call.
                    stamps = monitor._stamps
                    raw += (stamps.seconds or stamps.now(), route or UNMATCHED,
                            method if method in STANDARD_METHODS else OTHER_METHOD, status, duration_ms,
                            self.request_id, self.query_count)
                else:
                    monitor.track_request(route or UNMATCHED, method if method in STANDARD_METHODS else OTHER_METHOD,
                                          status, duration_ms, self.request_id, self.query_count)
