"""A short-lived cache of read responses, shared by every client, computed once per key at a time.

Sixteen clients polling the same dashboard ask the same questions every few seconds. The data only changes
when the owner flushes or ingests (every ``flush_interval_seconds``, 1 s by default), so an answer a second old
is as fresh as the pipeline itself, and computing it once per second per URL instead of once per request is
what keeps the p99 low under concurrency. While one request computes a key, the others asking for it wait for
that answer instead of running the same queries in parallel (single flight); if an older answer exists, they
get it at once instead of waiting (stale while revalidating: at most one computation's time older than the
TTL), so only one client in a second ever waits for the store. A write (a silence) clears the cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response

MAX_ENTRIES = 256  # keys carry arbitrary ranges (start/end): bound the memory


def cache_key(environ: dict[str, Any]) -> str:
    """The key of a request: its path and raw query string, as the WSGI server gave them."""
    return f"{environ.get('PATH_INFO', '')}?{environ.get('QUERY_STRING', '')}"


@dataclass(frozen=True)
class _Entry:
    body: bytes
    mimetype: str
    expires: float


class _Flight:
    """A computation in progress; others wait on ``done``."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: _Entry | None = None


class ResponseCache:
    """Successful responses by key for ``ttl_seconds`` (0 disables caching)."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def fresh(self, key: str) -> _Entry | None:
        """The entry for ``key`` if it has not expired (no computation, no waiting)."""
        if self.ttl_seconds <= 0:
            return None
        entry = self._entries.get(key)  # a dict read is atomic: no lock on the fast path
        if entry is None or entry.expires <= self._clock():
            return None
        self.hits += 1
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, key: str, compute: Callable[[], Response]) -> Response:
        """The cached response for ``key``, or ``compute()``'s (cached when it is a 200)."""
        if self.ttl_seconds <= 0:
            return compute()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires > self._clock():
                self.hits += 1
                return Response(entry.body, mimetype=entry.mimetype)
            flight = self._flights.get(key)
            if flight is not None and entry is not None:  # being recomputed: the previous answer will do
                self.hits += 1
                return Response(entry.body, mimetype=entry.mimetype)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            self.misses += 1
        if not leader:
            flight.done.wait(timeout=30)
            if flight.entry is not None:
                return Response(flight.entry.body, mimetype=flight.entry.mimetype)
            return compute()  # the leader failed (its error went to its own client): try for ourselves
        try:
            response = compute()
            if response.status_code == 200 and not response.is_streamed:
                entry = _Entry(response.get_data(), response.mimetype or "application/json",
                               self._clock() + self.ttl_seconds)
                flight.entry = entry
                with self._lock:
                    self._entries[key] = entry
                    self._entries.move_to_end(key)
                    while len(self._entries) > MAX_ENTRIES:
                        self._entries.popitem(last=False)
            return response
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()
