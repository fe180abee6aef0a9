"""Flush on SIGTERM: what ``docker stop``, systemd and Kubernetes send, and what atexit never sees.

A process that leaves SIGTERM at its default action (``python app.py``, the Flask dev server) dies without
running atexit handlers, and uvicorn re-raises SIGTERM after its graceful shutdown (exit status 143): everything
recorded since the last flush was lost. The first monitor created in the main thread installs ``_on_sigterm``,
which chains the handler found there, never replacing it:

* a Python handler (gunicorn's worker, the app's own): flush every open monitor, then call it;
* the default action: close every open monitor (as at exit: the last flush, the owner's last ingest), then
  restore the default and deliver SIGTERM again, so the process still ends by the signal (status 143);
* ignored (SIG_IGN), or a handler installed outside Python: nothing is installed.

When the last open monitor closes, the handler found is put back (``uninstall``). werkzeug's reloader
(``flask run --debug``) replaces this handler in both of its processes after the app is loaded; what keeps a
SIGTERM from losing its child's rows there is pipeline/reloader.py.

A server that installs its own handler later and restores the previous one when it stops (uvicorn) re-raises the
signal into this one. Signal handlers run in the main thread between two bytecodes, perhaps while it holds a lock a
flush needs (a flush of its own, a compaction): the work runs on a thread of its own, waited for at most
``SIGTERM_FLUSH_TIMEOUT_SECONDS``, so a SIGTERM never hangs the process.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from .logs import logger

SIGTERM_FLUSH_TIMEOUT_SECONDS = 20.0

_Handler = Callable[[int, FrameType | None], Any] | int | None
_previous: _Handler = None


def install(live: Callable[[], list[Any]]) -> bool:
    """Chain ``_on_sigterm`` before the current SIGTERM handler, once per process; True if installed now.

    Only the main thread may set signal handlers: a monitor created elsewhere leaves SIGTERM alone (the next one
    created in the main thread installs it).
    """
    global _previous, _live
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm or current is None or current == signal.SIG_IGN:
        return False
    _live = live
    _previous = current
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def uninstall() -> None:
    """Put the chained handler back when no monitor is open any more (from the main thread, and only if
    ``_on_sigterm`` is still the one installed: a handler set since stays)."""
    if threading.current_thread() is not threading.main_thread():
        return  # it stays: with no monitor open it only calls the handler it chained
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, _previous if _previous is not None else signal.SIG_DFL)


def _none() -> list[Any]:
    return []


_live: Callable[[], list[Any]] = _none


def _finish(close: bool) -> None:
    for monitor in reversed(_live()):
        try:
            if close:
                monitor._handles = 1  # the process ends: every handle goes
                monitor.close()
            else:
                monitor.flush()
        except Exception as exc:  # one monitor's failure must not keep the others' rows from being written
            logger.warning("duckpulse: flush on SIGTERM failed: %s", exc)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    previous = _previous
    dies = previous in (signal.SIG_DFL, None)
    worker = threading.Thread(target=_finish, args=(dies,), name="duckpulse-sigterm", daemon=True)
    worker.start()
    worker.join(SIGTERM_FLUSH_TIMEOUT_SECONDS)
    if worker.is_alive():
        logger.warning("duckpulse: the flush on SIGTERM took over %g s; the process goes on ending without it",
                       SIGTERM_FLUSH_TIMEOUT_SECONDS)
    if callable(previous):
        previous(signum, frame)
    elif dies:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action: the process ends by the signal (status 143)
