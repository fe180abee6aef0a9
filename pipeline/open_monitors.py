"""The open monitors of this process: one per database file, the default one, and fork, exit and SIGTERM handling.

``Monitor(db_path=X)`` in a process where a monitor of X is open returns that monitor (no new threads, no new
store): an app factory run once per test, or ``DuckPulse().init_app(app)`` for every app created, costs one
monitor per file and process. Settings that differ from the first creation's are reported once in the log; the
first ones stand. Each creation is a handle: ``close()`` releases one, and the monitor closes when the last is
released (or at exit). ``Monitor(spool_dir=S)`` producers are shared the same way, per spool directory.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from . import reloader, sigterm
from .errors import NoMonitorError
from .logs import logger

_open: list[weakref.ref[Any]] = []  # oldest first; default_monitor() is the last open one
_by_key: dict[str, weakref.ref[Any]] = {}
_reported: set[tuple[str, str]] = set()  # (key, difference) already logged
_lock = threading.RLock()  # held while a monitor is created, so two threads never make two of one file
_exiting = False


def key(db_path: str | os.PathLike[str] | None, spool_dir: str | os.PathLike[str] | None,
        spool_url: str | None = None) -> str | None:
    """What makes two monitors the same: the database file, a producer's spool directory, or a fleet producer's
    object storage URL (None: in memory)."""
    if db_path is not None:
        return None if os.fspath(db_path) == ":memory:" else "db:" + os.path.realpath(db_path)
    if spool_dir is not None:
        return "spool:" + os.path.realpath(spool_dir)
    if spool_url is not None:
        return "url:" + spool_url.rstrip("/")
    return None


def _alive(ref: weakref.ref[Any] | None) -> Any:
    monitor = ref() if ref is not None else None
    return monitor if monitor is not None and not monitor.closed else None


def get_or_create(monitor_key: str | None, options: Mapping[str, Any], create: Callable[[], Any]) -> Any:
    """The open monitor of ``monitor_key`` (one more handle on it), or a new one made by ``create()``."""
    with _lock:
        existing = _alive(_by_key.get(monitor_key)) if monitor_key is not None else None
        if existing is None:
            return create()
        differences = existing._differences(options)  # raises if the call cannot be satisfied by it
        existing._handles += 1
        _report_differences(monitor_key or "", differences)
        ref = _by_key[monitor_key]  # type: ignore[index]
        _open[:] = [r for r in _open if r is not ref] + [ref]  # created again: the default monitor again
        return existing


def _report_differences(monitor_key: str, differences: list[str]) -> None:
    text = ", ".join(differences)
    if differences and (monitor_key, text) not in _reported:
        _reported.add((monitor_key, text))
        logger.warning("duckpulse: a monitor of %s is already open in this process; it is returned as it is, and "
                       "these settings of the new call are ignored: %s. Give every Monitor(...) of one file the "
                       "same settings, or put them in duckpulse.toml", monitor_key.split(":", 1)[1], text)


def register(monitor: Any, monitor_key: str | None) -> None:
    with _lock:
        ref = weakref.ref(monitor)
        _open.append(ref)
        if monitor_key is not None:
            _by_key[monitor_key] = ref
    sigterm.install(live)  # a SIGTERM flushes too (pipeline/sigterm.py)


def unregister(monitor: Any) -> None:
    with _lock:
        _open[:] = [r for r in _open if r() is not None and r() is not monitor]
        for name in [k for k, r in _by_key.items() if r() is None or r() is monitor]:
            del _by_key[name]
        last = not live()
    if last and not _exiting:
        sigterm.uninstall()


def live() -> list[Any]:
    """The open monitors, oldest first."""
    return [m for m in map(_alive, list(_open)) if m is not None]


def default_monitor() -> Any:
    """The most recently created Monitor that is still open."""
    monitors = live()
    if not monitors:
        raise NoMonitorError("no duckpulse Monitor is open in this process. Create one first, e.g. "
                             "Monitor(db_path='metrics.duckdb'), or pass monitor=... explicitly")
    return monitors[-1]


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # a thread of the parent may have held it at the fork
    for monitor in live():
        try:
            monitor._after_fork_in_child()
        except Exception as exc:  # never break the child process over monitoring
            logger.warning("duckpulse: cannot restart the monitor after fork: %s", exc)


def _close_all_at_exit() -> None:
    global _exiting
    _exiting = True
    with reloader.exit_guard():  # werkzeug's reloader child: a second SIGTERM must not cut the last flush
        for monitor in reversed(live()):
            try:
                monitor._handles = 1  # at exit every handle goes
                monitor.close()
            except Exception as exc:
                logger.warning("duckpulse: final flush at exit failed: %s", exc)


def close_before_modules_exit() -> None:
    """Make the exit handler run before those of modules imported since (atexit runs the newest first): DuckDB
    registers one that refuses queries from then on, and an owner's last flush is a query. Called once DuckDB is
    imported (when a process becomes an owner)."""
    if not _exiting:  # at exit it already runs
        atexit.unregister(_close_all_at_exit)
        atexit.register(_close_all_at_exit)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
