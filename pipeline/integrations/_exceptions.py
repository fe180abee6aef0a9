"""The integrations' side of unhandled exceptions: record one, once, for the request it escaped from.

An exception can pass several hooks on its way out (Flask's ``got_request_exception``, then the WSGI middleware
when Flask propagates it, or nested middlewares): the first records it and marks it, the others see the mark.
Only ``Exception`` subclasses are recorded: ``KeyboardInterrupt``, ``SystemExit`` and ``GeneratorExit`` are not
errors of the application's code.
"""

from __future__ import annotations

from ..context import RequestContext
from ..monitor import Monitor
from ._common import UNMATCHED, log

MARK = "_duckpulse_recorded"


def record(monitor: Monitor | None, ctx: RequestContext | None, exc: BaseException | None) -> None:
    """Record ``exc`` for the request ``ctx`` (its route and request id, given one now if it has none, so the
    exception and the request row share it). Never raises: monitoring must not change how the app fails."""
    if monitor is None or not isinstance(exc, Exception) or getattr(exc, MARK, False):
        return
    try:
        setattr(exc, MARK, True)
        route = request_id = None
        if ctx is not None:
            route = ctx.route or UNMATCHED  # the route its request row will carry
            if ctx.request_id is None:
                ctx.request_id = monitor.next_request_id()
            request_id = ctx.request_id
        monitor.track_exception(exc, route, request_id)
    except Exception as failure:
        log.warning("exception-record", f"duckpulse: cannot record an unhandled exception: {failure!r}",
                    exc_info=failure)


def recording_monitor(ctx: RequestContext | None) -> Monitor | None:
    """The monitor recording the WSGI request ``ctx`` (a hook that sees only the request, such as Flask's)."""
    return getattr(getattr(ctx, "_mw", None), "monitor", None)
