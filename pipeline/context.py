"""The request being served, in a context variable, so queries made while serving it are tied to it.

Integrations (WSGI, Flask, ASGI) open a ``RequestContext`` at the start of a request and close it at the end;
``Monitor.track_query`` reads it to stamp each query with the request id and route, and counts the request's
queries. Context variables follow threads and asyncio tasks, so concurrent requests never mix.
"""

from __future__ import annotations

from contextvars import ContextVar


class RequestContext:
    """What is known about the request in flight."""

    __slots__ = ("query_count", "request_id", "route")

    def __init__(self, request_id: int, route: str | None = None) -> None:
        self.request_id = request_id
        self.route = route  # the route template, once routing has matched it
        self.query_count = 0


current_request: ContextVar[RequestContext | None] = ContextVar("duckpulse_request", default=None)
