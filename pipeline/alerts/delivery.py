"""Notifiers run on a thread of their own: a user's callback never holds up a flush, a sweep or the writer's lock.

``on_alert`` callbacks used to run where the notification was decided: on the flusher thread (the check after
each flush) or the jobs thread (the sweep). A 20 s callback meant 20 s without a flush, and one that hung stopped
flushing for good. Now the decision queues the notification (a bounded queue: never blocks, a full one drops the
newest, counted) and the ``duckpulse-notify`` thread calls every notifier in turn (a notifier whose
``never_blocks`` is true, the webhook's, which only queues for a thread of its own, is called at once). A
callback slower than ``SLOW_NOTIFIER_SECONDS`` is counted; one that hangs blocks only this thread, and
``stats()`` shows for how long (the queue then fills, and what it cannot take is counted as dropped).
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..logs import ThrottledLog
from .notify import Notification, Notifier

# Notifications waiting for the notifiers; beyond, new ones are dropped and counted (a hung callback).
DELIVERY_QUEUE_CAP = 1_000
# A notifier call longer than this is counted as slow (notifier_slow) and logged.
SLOW_NOTIFIER_SECONDS = 5.0

_STOP = object()
_deliveries: weakref.WeakSet[Delivery] = weakref.WeakSet()


class Delivery:
    """Calls ``notifiers()`` for each queued notification, on one thread started at the first notification."""

    def __init__(self, notifiers: Callable[[], Sequence[Notifier]], count: Callable[[str, int], None],
                 log: ThrottledLog, *, timer: Callable[[], float] = time.monotonic) -> None:
        self._notifiers = notifiers
        self._count = count
        self.log = log
        self._timer = timer  # real elapsed time: a FakeClock would never see a callback hang
        self._queue: queue.Queue[Any] = queue.Queue(DELIVERY_QUEUE_CAP)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy: tuple[float, str] | None = None  # (since, notifier) while a call runs
        _deliveries.add(self)

    def put(self, notifications: Sequence[Notification]) -> None:
        """Queue notifications for the notifiers; never blocks (a full queue drops them, counted)."""
        if not notifications:
            return
        queued: list[Notifier] = []  # the notifiers subscribed now, even if one unsubscribes before its call
        for notifier in self._notifiers():
            if getattr(notifier, "never_blocks", False):  # a webhook only queues the notification: call it here
                for n in notifications:
                    self._call(notifier, n)
            else:
                queued.append(notifier)
        if not queued:
            return
        self._start()
        for n in notifications:
            try:
                self._queue.put_nowait((n, queued))
            except queue.Full:
                self._count("notifications_dropped", 1)
                self.log.warning("notify:full", f"duckpulse: {DELIVERY_QUEUE_CAP} alert notifications wait for "
                                 f"the notifiers ({self._busy_text()}); new ones are dropped and counted "
                                 "(stats()['alerts']['counts']['notifications_dropped'])")

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="duckpulse-notify", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            n, notifiers = item
            for notifier in notifiers:
                self._call(notifier, n)
            self._queue.task_done()
        self._queue.task_done()

    def _call(self, notifier: Notifier, n: Notification) -> None:
        name = _name(notifier)
        started = self._timer()
        self._busy = (started, name)
        try:
            notifier(n)
        except Exception as exc:  # a user's callback must not stop the others
            self._count("notifier_failures", 1)
            self.log.warning(f"notifier:{name}", f"duckpulse: an alert notifier failed: {exc!r}", exc_info=exc)
        finally:
            self._busy = None
        elapsed = self._timer() - started
        if elapsed > SLOW_NOTIFIER_SECONDS:
            self._count("notifier_slow", 1)
            self.log.warning(f"notifier-slow:{name}", f"duckpulse: the alert notifier {name} took {elapsed:.1f} s "
                             f"(over {SLOW_NOTIFIER_SECONDS:g} s); notifications wait behind it. Hand slow work "
                             "to a thread or queue of your own")

    def _busy_text(self) -> str:
        busy = self._busy
        if busy is None:
            return "none is running now"
        return f"{busy[1]} has been running for {self._timer() - busy[0]:.1f} s"

    def stats(self) -> dict[str, Any]:
        """What waits, and the notifier running now and for how long (a hung callback shows here)."""
        busy = self._busy
        return {"queued": self._queue.qsize(), "queue_cap": DELIVERY_QUEUE_CAP,
                "busy_notifier": busy[1] if busy else None,
                "busy_seconds": round(self._timer() - busy[0], 3) if busy else 0.0}

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every queued notification went through the notifiers."""
        deadline = self._timer() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                remaining = deadline - self._timer()
                if remaining <= 0:
                    return False
                done.wait(remaining)
        return True

    def close(self, timeout: float) -> bool:
        """Deliver what waits (up to ``timeout`` seconds), then end the thread; False if a notifier held it up."""
        thread = self._thread
        if thread is None:
            return True
        if not self.settle(timeout):
            self.log.warning("notify:close", f"duckpulse: alert notifications still waited for the notifiers "
                             f"after {timeout:g} s at close ({self._busy_text()}); they are given up")
            return False  # a hung notifier: its daemon thread is left behind
        self._queue.put_nowait(_STOP)
        thread.join(timeout)
        return True


def settle_all(timeout: float = 10.0) -> bool:
    """Wait until every delivery of this process went through its notifiers (for tests: a notifier's effects are
    seen after a sweep or a flush once this returns)."""
    return all([d.settle(timeout) for d in list(_deliveries)])


def _name(notifier: Notifier) -> str:
    try:
        return getattr(notifier, "__qualname__", None) or type(notifier).__name__
    except Exception:  # a callable whose attributes raise: still named
        return type(notifier).__name__
