"""ASGI middleware: one request row per HTTP request, timed until the final body message is sent.

``app = MetricsMiddleware(app, monitor)``, or ``app.add_middleware(MetricsMiddleware, monitor=mon)`` in
Starlette and FastAPI. Same semantics as the WSGI middleware: the route template, the method (``OTHER``
outside the standard set), the status of ``http.response.start`` (500 when the application raises, and the
exception propagates unchanged), the request id and the number of queries the request ran. Lifespan and
websocket scopes pass through untouched, except that the lifespan's shutdown flushes the monitor.

The route comes from ``route_resolver(scope)`` when given, else from the route the framework matched and left
in the scope (Starlette and FastAPI put it in ``scope["route"]``; its ``path`` is the template
``/books/{book_id}``), else it is ``<unmatched>``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
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
    safe_resolver,
)
from ._exceptions import record as record_exception

if TYPE_CHECKING:
    from ..context import RouteResolver

__all__ = ["MetricsMiddleware", "scope_route"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def scope_route(scope: Scope) -> str | None:
    """The template of the route the framework matched (``scope["route"]``, Starlette's convention), or None.

    Under a ``Mount`` the inner router leaves its own route, relative to the mount, and the mount's prefix
    in ``root_path`` (beyond ``app_root_path``); parameters of the mount's path are put back by name, so the
    template never holds a value from the URL.
    """
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    app_root = scope.get("app_root_path")
    if app_root is None:  # no mount on the way
        return path or "/"
    prefix = str(scope.get("root_path", ""))[len(app_root):]
    if hasattr(route, "routes"):  # the mount itself is the matched route
        if route.routes:  # its inner router matched nothing
            return None
        path = ""  # a mount of a non-router app (static files, a WSGI app): its prefix is the template
    params: dict[str, Any] = scope.get("path_params") or {}
    own = getattr(route, "param_convertors", None) or {}
    if len(params) > len(own):
        segments = prefix.split("/")
        for name, value in params.items():
            if name not in own:
                text = str(value)
                segments = ["{" + name + "}" if s == text else s for s in segments]
        prefix = "/".join(segments)
    return (prefix + path) or "/"


class MetricsMiddleware:
    """Records every HTTP request served by the wrapped ASGI application.

    ``monitor=None`` records into ``pipeline.default_monitor()``, looked up at the first request.
    ``excluded_paths``: an entry ending in ``/`` excludes everything under it, any other entry that exact
    path. ``route_resolver(scope)`` returns the route template, or None to fall back to ``scope_route``.
    ``response_time_header`` adds ``x-response-time`` to the response start. ``timer`` returns seconds.
    """

    def __init__(self, app: ASGIApp, monitor: Monitor | None = None, *,
                 excluded_paths: Iterable[str] = DEFAULT_EXCLUDED_PATHS,
                 route_resolver: RouteResolver | None = None,
                 response_time_header: bool = False,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.monitor = monitor
        self._follow_default = monitor is None
        self.excluded = ExcludedPaths(excluded_paths)
        self.resolve: RouteResolver = scope_route
        resolve = safe_resolver(route_resolver, "ASGI")
        if resolve is not None:
            self.resolve = lambda scope: resolve(scope) or scope_route(scope)
        self.response_time_header = bool(response_time_header)
        self.timer = timer

    def _flush_on_shutdown(self, receive: Receive) -> Receive:
        """The lifespan's receive, flushing the monitor when the server says it shuts down: the server has served
        its last request then, and a SIGTERM that follows (uvicorn re-raises it) may end the process at once."""

        async def receive_and_watch() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                monitor = self.monitor if not self._follow_default else default_or_none("ASGI")
                if monitor is not None and not monitor.closed:
                    monitor.flush()  # blocks the loop for one flush: nothing else is served any more
            return message
        return receive_and_watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._flush_on_shutdown(receive), send)
            return
        if scope["type"] != "http" or (scope.get("path") or "/") in self.excluded:
            await self.app(scope, receive, send)
            return
        monitor = self.monitor
        if self._follow_default and (monitor is None or monitor.closed):
            monitor = self.monitor = default_or_none("ASGI")
        if monitor is None:
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(monitor.next_request_id(), None, self.resolve, scope)
        timer = self.timer
        status = 500  # until http.response.start says otherwise
        end: float | None = None
        header = self.response_time_header

        async def send_and_watch(message: Message) -> None:
            nonlocal status, end
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                _ = ctx.route  # routing is done: resolve the route while the scope still says it
                if header:
                    elapsed_ms = (timer() - start) * 1000.0
                    message = {**message, "headers": [*message.get("headers", ()),
                                                      (b"x-response-time", f"{elapsed_ms:.3f}ms".encode())]}
            elif kind == "http.response.body" and not message.get("more_body", False):
                await send(message)
                end = timer()  # the final body message is sent: the response is complete
                return
            await send(message)

        token = current_request.set(ctx)
        start = timer()
        failed = False
        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException as exc:
            failed = True
            record_exception(monitor, ctx, exc)
            raise
        finally:
            duration_ms = ((end if end is not None else timer()) - start) * 1000.0
            try:  # noqa: SIM105  # contextlib.suppress costs an object per request
                current_request.reset(token)
            except ValueError:  # finished in another context than the one that started it: nothing to undo
                pass
            method = scope.get("method")
            monitor.track_request(ctx.route or UNMATCHED, method if method in STANDARD_METHODS else OTHER_METHOD,
                                  500 if failed else status, duration_ms, request_id=ctx.request_id,
                                  query_count=ctx.query_count)
