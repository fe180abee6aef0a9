"""WSGI middleware: one request row per served request, whether or not its response is ever closed.

``app.wsgi_app = MetricsMiddleware(app.wsgi_app, monitor)`` (or any WSGI callable). Per request it records
the route template, the method (``OTHER`` outside the standard set), the status given to ``start_response``
(500 when the application raises, or when its body fails half-way), the duration, the request id and the
number of queries the request ran.

When a request ends, and what its duration measures:

- its body is read to the end, or the server closes the response (PEP 3333 obliges it to), whichever comes
  first: the duration runs until then, so a streamed body is timed to its end (a server closes right after
  the last chunk; a test client reads the body when the test asks for ``response.data``);
- otherwise, at the first of: the response is dropped unread (its body iterator is garbage collected), the
  next request starts in the same thread, or ``Monitor.flush()`` / ``stats()`` / ``close()`` is called from
  that thread (Flask's test client never closes responses). The duration then runs until the application
  returned, the last thing measured, and ``Monitor.stats()["recorded_unclosed"]`` counts these by why.

Queries are tied to a request only while its own code runs: its application call and each step of its body
(``pipeline.context.wsgi_slot``). A query made between two of them, after it ended, or in another thread is
tied to no request. Queries of an excluded path are recorded tied to no request, as its row is not made.

The route comes from a hook of the framework (the Flask integration sets it from the matched rule), else
from ``route_resolver(environ)``, else it is ``<unmatched>``: never the raw path, which a scanner could
make unbounded. Known limit: a body built with ``wsgi.file_wrapper`` is wrapped like any other, so the
server's sendfile shortcut is not taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from sys import exc_info as _exc_info
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..context import (
    ENDED_BY_DROPPED_BODY,
    ENDED_BY_NEXT_REQUEST,
    RequestContext,
    get_wsgi_slot,
    wsgi_slot,
)
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
from ._exceptions import record as record_exception

if TYPE_CHECKING:
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
        self.resolve = safe_resolver(route_resolver, "WSGI")
        self._decide_header = None if isinstance(response_time_header, bool) else response_time_header
        self.header = response_time_header is True
        self.timer = timer
        # Something to do before a request is served: find the default monitor (again, once it is closed), or
        # ask whether to send the header. One flag, so that a set-up middleware checks one attribute.
        self._pending = self._follow_default or self._decide_header is not None

    def _set_up(self) -> Monitor | None:
        """Find the default monitor if following it, decide on the header; returns the monitor to record into."""
        monitor = self.monitor
        if self._follow_default and (monitor is None or monitor.closed):
            monitor = self.monitor = default_or_none("WSGI")
        if self._decide_header is not None:
            self.header, self._decide_header = _decide(self._decide_header), None
        self._pending = self._follow_default
        return monitor

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._pending and self._set_up() is None:
            return self.app(environ, start_response)
        # The exchange is filled in here rather than by an __init__: a Python frame fewer per request.
        exchange = _new_exchange(_Exchange)
        exchange.request_id = None  # given when a query or the row needs it
        exchange.query_count = 0
        exchange._route = None
        exchange._source = environ
        exchange._mw = self
        exchange._start_response = start_response
        exchange._status = "500"  # until start_response says otherwise: a server fails a request that never calls it
        exchange._method = environ.get("REQUEST_METHOD")
        # Excluded paths are served like the others and dropped when the row would be made (record()): checking
        # here costs ~0.2 us on every request.
        exchange._path = environ.get("PATH_INFO")
        slot = exchange._slot = get_wsgi_slot(None) or wsgi_slot()
        if slot[1] is not None:  # the previous request of this thread returned, and its response never ended
            slot[1].end_unclosed(ENDED_BY_NEXT_REQUEST)
        outer = exchange._outer = slot[0]  # a request this one runs inside of (a WSGI app calling another), or None
        slot[0] = exchange
        timer = self.timer
        exchange._start = timer()  # last, so the set-up above is not counted as the application's time
        try:
            exchange.body = self.app(environ, exchange.start_response)
        except BaseException:
            exchange.body = ()
            exchange._status = "500"  # whatever start_response was given before
            exchange.close()
            raise
        exchange._end = timer()  # when the application returned: the end, unless its response's is seen
        slot[0] = outer  # queries tie to it again only while its body runs (__iter__)
        slot[1] = exchange
        return exchange


def werkzeug_rule(environ: Environ) -> str | None:
    """The route resolver of werkzeug-based frameworks (Flask): the matched rule's template, else None.

    Werkzeug's Request publishes itself as ``environ["werkzeug.request"]`` (its documented
    ``populate_request``) until the framework drops it at the end of the request; Flask's routing has set
    ``url_rule`` by then. Reading it costs ~100 ns, where a Flask ``before_request`` hook costs ~2 us.
    """
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    return None if rule is None else rule.rule


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


class _Exchange(RequestContext):
    """One request in flight: its context, the ``start_response`` the app calls, the iterable the server reads.

    Being the ``RequestContext`` itself saves an object per request. Every attribute store and call here is
    paid by every request: what is needed only at the end is read at the end.
    """

    __slots__ = ("_end", "_method", "_mw", "_outer", "_path", "_slot", "_start", "_start_response", "_status",
                 "body")

    _slot: list[RequestContext | None] | None  # the serving thread's slot; None once the request has ended
    _outer: RequestContext | None
    _mw: MetricsMiddleware
    _start_response: StartResponse
    _status: str  # "500" as well when the application or its body failed
    _start: float
    _end: float  # when the application returned, then when the response ended (if that is seen)
    _method: str | None
    _path: str | None
    body: Iterable[bytes]

    @property
    def route(self) -> str | None:
        """The route template, once routing has matched it (the middleware's resolver, on first need)."""
        route = self._route
        if route is None and self._mw.resolve is not None:
            route = self._route = self._mw.resolve(self._source)
        return route

    @route.setter
    def route(self, value: str | None) -> None:
        self._route = value

    def claim_request_id(self, next_request_id: Callable[[], int]) -> int | None:
        if (self._path or "/") in self._mw.excluded:
            return None  # no row will be made: its queries are recorded tied to no request
        request_id = self.request_id = next_request_id()
        return request_id

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], object]:
        self._status = status
        if self._route is None:
            # Routing is done and the framework's request state is still alive (Flask clears it right after).
            resolve = self._mw.resolve
            if resolve is werkzeug_rule:  # Flask's, inline: a Python call costs ~0.2 us per request here
                rule = getattr(self._source.get("werkzeug.request"), "url_rule", None)
                if rule is not None:
                    self._route = rule.rule
            elif resolve is not None:
                self._route = resolve(self._source)
        if self._mw.header:
            elapsed_ms = (self._mw.timer() - self._start) * 1000.0
            headers = [*headers, ("X-Response-Time", f"{elapsed_ms:.3f}ms")]
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        """The application's body, chunk by chunk, with the request current while each chunk is made; its end
        ends the request (a server closes right after; a test client may never close)."""
        # A generator: ~0.2 us per request, and a response dropped unread (its iterator collected) runs the
        # GeneratorExit branch, so that it is recorded too. The body runs in the thread that called the
        # application (servers iterate where they called), whose slot the request keeps.
        slot = self._slot
        if slot is None:  # ended before its body was read (a test client's response, after the next request)
            yield from self.body
            return
        outer = self._outer
        slot[0] = self
        try:
            for chunk in self.body:
                slot[0] = outer
                yield chunk
                if self._slot is not None:  # not ended meanwhile (by the next request, a flush...)
                    slot[0] = self
        except GeneratorExit:  # dropped before its end, and never closed: the application's time is what is known
            self.end_unclosed(ENDED_BY_DROPPED_BODY)
            raise
        except BaseException:  # the body failed half-way: the application's failure
            if slot[0] is self:
                slot[0] = outer
            self._status = "500"
            raise
        if self._slot is slot:  # read to its end while in flight: what every request a server serves does
            self._end = self._mw.timer()
            self._slot = None
            slot[0] = outer
            if slot[1] is self:
                slot[1] = None
            self.record()

    def close(self) -> None:
        """Close the application's iterable; the server closing the response ends the request (once)."""
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._status = "500"
            raise
        finally:
            if self._slot is not None:
                self._end = self._mw.timer()
                # A body that failed half-way: the server closes it with that exception in flight (PEP 3333
                # servers close in a finally or except block). A client that went away is not the application's
                # failure: the server's write raised ConnectionError or TimeoutError, and the status sent stands.
                exc = _exc_info()[1]
                if exc is not None and not isinstance(exc, ConnectionError | TimeoutError):
                    self._status = "500"
                    record_exception(self._mw.monitor, self, exc)
                self._ended()
            self.body = ()  # closed: nothing of it is needed any more

    def end_unclosed(self, why: str) -> None:
        """End the request without its response's end (see the module docstring); the duration is the
        application's time, measured when it returned."""
        if self._slot is not None:
            self._ended(why)

    def _ended(self, why: str | None = None) -> None:
        """Take the request out of the places that hold it while in flight, and make its row."""
        slot = self._slot
        assert slot is not None
        self._slot = None
        if slot[0] is self:
            slot[0] = self._outer
        if slot[1] is self:
            slot[1] = None
        self.record(why)

    def record(self, why: str | None = None) -> None:
        """Record the ended request as one row (``Monitor.track_request``, on the thread that served it), unless
        its path is excluded. ``why`` it ended without its response's end (``stats()["recorded_unclosed"]``),
        if it did.

        Made here rather than on the flusher thread: both run under the same GIL, and the row costs the process
        less made now (~0.5 us) than an exchange queued and read back later (~2 us of the flusher's CPU)."""
        mw = self._mw
        path = self._path or "/"
        excluded = mw.excluded
        if path in excluded.exact or path.startswith(excluded.prefixes):  # ExcludedPaths.__contains__, inline
            return
        monitor = mw.monitor
        assert monitor is not None  # set before the request started, and only ever replaced by another
        try:
            route = self._route
            if route is None and mw.resolve is not None:
                route = self._route = mw.resolve(self._source)  # while the request's state is still alive
            method = self._method
            status = _STATUS_CODES.get(self._status) or _status_code(self._status)
            request_id = self.request_id
            if request_id is None:  # it ran no query
                request_id = self.request_id = monitor.next_request_id()
            ts = None  # it ends now
            if why is not None:
                monitor.count_unclosed(why)
                # It ended when the application returned: now, less the time since then on the middleware's timer.
                ts = monitor.clock.now() - (mw.timer() - self._end)
            monitor.track_request(route or UNMATCHED, method if method in STANDARD_METHODS else OTHER_METHOD,
                                  status, (self._end - self._start) * 1000.0, request_id, self.query_count, ts)
        except Exception as exc:  # monitoring never fails the request it watches
            monitor._note_failure("record", f"cannot record a finished request: {exc!r}", exc)
            if monitor.strict:
                raise
