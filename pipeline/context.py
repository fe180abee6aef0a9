"""The request being served, in a context variable, so queries made while serving it are tied to it.

Integrations (WSGI, Flask, ASGI) open a ``RequestContext`` at the start of a request and close it at the end;
``Monitor.track_query`` reads it (``active_request()``) to stamp each query with the request id and route,
and counts the request's queries. Context variables follow threads and asyncio tasks, so concurrent requests
never mix.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# Turns a request (a WSGI environ, an ASGI scope) into its route template, or None while routing has not
# matched yet. It must not raise: integrations wrap user resolvers before handing them over.
RouteResolver = Callable[[Any], "str | None"]


# The route of a request no routing rule matched (and of its queries): one route for all of them, so that
# scanners cannot make the route list unbounded.
UNMATCHED = "<unmatched>"


class RequestContext:
    """What is known about the request in flight.

    The route is either set by a framework hook (Flask's matched rule) or resolved on first need by
    ``resolve(source)``: routing happens inside the application, after the context is opened, so the
    answer is cached only once it is known.
    """

    __slots__ = ("_resolve", "_route", "_source", "query_count", "request_id")

    request_id: int | None  # None until a query or the request's row needs it (integrations may delay it)

    def __init__(self, request_id: int | None, route: str | None = None, resolve: RouteResolver | None = None,
                 source: Any = None) -> None:
        self.request_id = request_id
        self._route = route
        self._resolve = resolve
        self._source = source  # what resolve() reads: the environ or the scope of this request
        self.query_count = 0

    @property
    def route(self) -> str | None:
        """The route template, once routing has matched it."""
        route = self._route
        if route is None and self._resolve is not None:
            route = self._route = self._resolve(self._source)
        return route

    @route.setter
    def route(self, value: str | None) -> None:
        self._route = value

    def claim_request_id(self, next_request_id: Callable[[], int]) -> int | None:
        """The request id its first query gives a request that has none yet; None when the request is not
        recorded (an excluded path), so that its queries are recorded alone, tied to no request."""
        request_id = self.request_id = next_request_id()
        return request_id

    def end_unclosed(self, why: str) -> None:
        """End a request whose application returned but whose response was neither closed nor read to its end
        (see ``end_returned_request``); only WSGI requests outlive their application call."""


current_request: ContextVar[RequestContext | None] = ContextVar("duckpulse_request", default=None)

# The WSGI middleware's request. A thread serves one WSGI request at a time, and setting a context variable
# per request costs ~0.4 us (a new context mapping each time, and again to reset it); so each context holds
# one mutable slot, made at its first request, that the middleware fills and empties. New threads start
# with an empty context, so threads never share a slot; code run in a copy of the context (a task handed to
# an executor with ``contextvars.copy_context()``) sees the slot of the thread that copied it.
# slot[0]: the request whose code runs now (its application call, or a step of its body), which queries are
# tied to; slot[1]: the last request whose application returned and whose response is not over yet.
_wsgi_slot: ContextVar[list[RequestContext | None]] = ContextVar("duckpulse_wsgi_request")
get_wsgi_slot = _wsgi_slot.get  # this context's slot, or the default given (C-level)
# Why a request ended without its response being closed or read to its end (stats()["recorded_unclosed"]).
ENDED_BY_NEXT_REQUEST = "next_request"
ENDED_BY_FLUSH = "flush"
ENDED_BY_DROPPED_BODY = "body_dropped"


def wsgi_slot() -> list[RequestContext | None]:
    """This context's slot for the WSGI request being served (made on first use)."""
    slot = get_wsgi_slot(None)
    if slot is None:
        slot = [None, None]
        _wsgi_slot.set(slot)
    return slot


def end_returned_request() -> None:
    """End the WSGI request this context still holds after its application returned, whose response nobody
    closed or read to its end (a test client's): ``Monitor.flush()``, ``stats()`` and ``close()`` call it, so
    a test that flushes sees the requests it made."""
    slot = get_wsgi_slot(None)
    if slot is not None:
        pending = slot[1]
        if pending is not None and pending is not slot[0]:  # not from inside its own body
            pending.end_unclosed(ENDED_BY_FLUSH)


def active_request() -> RequestContext | None:
    """The request being served where this runs: an ASGI one (``current_request``), else a WSGI one."""
    ctx = current_request.get()
    if ctx is None:
        slot = get_wsgi_slot(None)
        if slot is not None:
            ctx = slot[0]
    return ctx
