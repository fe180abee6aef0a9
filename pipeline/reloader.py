"""werkzeug's reloader (``flask run --debug``, ``app.run(debug=True)``): a SIGTERM loses none of its child's rows.

The reloader runs two processes: the watcher (which owns the file, README "The development server and its
reloader") and the child serving requests, a producer whose rows wait in its buffer until the next flush. werkzeug
answers a SIGTERM to the watcher (``kill <pid>``, ``docker stop``, systemd) with ``sys.exit(0)`` inside
``subprocess.call``, whose clean-up SIGKILLs the child: 20 requests, then ``kill -TERM <watcher>``, stored 0 of 20.
A child flushing every row at once would not be enough: a row is made after its response is sent, so the last
rows are still being written when the SIGKILL comes (measured: 11 to 19 of 20 stored).

So the watcher lets its child end the way a SIGTERM to the child alone ends it (werkzeug's ``sys.exit(0)`` there,
then the monitor's last flush at exit) before that SIGKILL: once the flusher thread sees werkzeug's SIGTERM handler
installed (``arm_if_watcher``), an audit hook (``sys.addaudithook``, the documented ``os.kill`` event) catches the
watcher's main thread about to SIGKILL its reloader child, sends the child SIGTERM instead and waits for it to end,
at most ``CHILD_EXIT_TIMEOUT_SECONDS``; the SIGKILL then finds it gone, and the watcher's own last ingest at exit
loads everything the child spooled. Nothing here runs per request, nor in a process werkzeug's reloader never
started (it needs ``werkzeug._reloader`` imported); the hook exists only in the watcher, which serves no requests.

When both processes are signalled (``pkill -f``) the child gets a second SIGTERM from the watcher, perhaps while its
monitor closes at exit; werkzeug's handler would raise SystemExit in the middle of that last flush, so in the child
SIGTERM is ignored while the monitors close (``exit_guard``): the process is ending already.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil

from .logs import logger

# How long the watcher waits for its child's last flush and exit before letting werkzeug's SIGKILL go on.
CHILD_EXIT_TIMEOUT_SECONDS = 20.0
_POLL_SECONDS = 0.01
_RUN_MAIN = "WERKZEUG_RUN_MAIN"  # werkzeug sets it to "true" in the reloader's child (is_running_from_reloader)
_RELOADER_MODULE = "werkzeug._reloader"  # imported only when a reloader starts; its SIGTERM handler lives there

_armed = False


def is_child() -> bool:
    """Whether this process is the child werkzeug's reloader started (the one serving requests)."""
    return os.environ.get(_RUN_MAIN) == "true"


def arm_if_watcher() -> bool:
    """From the flusher thread, each tick: if werkzeug's reloader now runs this process as its watcher, add the
    audit hook that lets the child flush before it is killed (once per process). True once added."""
    global _armed
    if _armed:
        return True
    if _RELOADER_MODULE not in sys.modules or is_child():  # one dict lookup in every process without a reloader
        return False
    handler = signal.getsignal(signal.SIGTERM)  # allowed off the main thread (setting it is not)
    if getattr(handler, "__module__", None) != _RELOADER_MODULE:
        return False
    _armed = True
    sys.addaudithook(_on_audit)
    logger.debug("duckpulse: werkzeug's reloader watcher; its child will flush before it is killed")
    return True


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audited event of the watcher (few: it only waits for its child). An exception raised here
    # would cancel the operation audited: none leaves.
    if event != "os.kill" or args[1] != signal.SIGKILL or threading.current_thread() is not threading.main_thread():
        return
    try:
        if _is_reloader_child(args[0]):
            _let_child_end(args[0])
    except Exception as exc:
        logger.warning("duckpulse: could not let the reloader's child flush before it is killed: %s", exc)


def _is_reloader_child(pid: int) -> bool:
    try:
        child = psutil.Process(pid)
        return child.ppid() == os.getpid() and child.environ().get(_RUN_MAIN) == "true"
    except psutil.Error:
        return False


def _let_child_end(pid: int) -> None:
    """SIGTERM to the child, then wait for it to end (a zombie: left for subprocess to reap)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + CHILD_EXIT_TIMEOUT_SECONDS
    child = psutil.Process(pid)
    while time.monotonic() < deadline:
        try:
            if child.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(_POLL_SECONDS)
    logger.warning("duckpulse: the reloader's child (pid %d) did not end within %g s of SIGTERM; werkzeug kills it "
                   "now, and the rows it had not flushed are lost", pid, CHILD_EXIT_TIMEOUT_SECONDS)


@contextlib.contextmanager
def exit_guard() -> Iterator[None]:
    """In the reloader's child, at exit: SIGTERM is ignored while the monitors close, so that a second one (the
    watcher's, after ``pkill -f`` signalled both) cannot raise SystemExit in the middle of their last flush. The
    watcher still SIGKILLs a child that hangs there, after ``CHILD_EXIT_TIMEOUT_SECONDS``."""
    if not is_child() or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # a handler installed outside Python: left alone
        yield
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
