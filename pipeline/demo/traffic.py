"""Generated traffic for the bookshop: weighted endpoints, Poisson arrivals, a few threads per process.

Requests go through Flask's test client, which calls the WSGI stack (the DuckPulse middleware included)
without a socket. Each thread waits an exponentially distributed think time between requests, so arrivals
are Poisson at ``rate_per_second`` per process, less whatever time the requests themselves take.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from flask.testing import FlaskClient

from .bookshop import AUTHORS, BOOKS, WORDS

# (weight, method, path maker): roughly what a bookshop's access log looks like.
Request = tuple[str, str]
ENDPOINTS: list[tuple[float, Callable[[random.Random], Request]]] = [
    (20.0, lambda r: ("GET", "/")),
    (34.0, lambda r: ("GET", f"/books/{r.randint(1, BOOKS + 20)}")),  # a few ids past the end: 404s
    (12.0, lambda r: ("GET", f"/search?q={r.choice(WORDS).lower()}")),
    (8.0, lambda r: ("GET", f"/authors/{r.randint(1, AUTHORS)}")),
    (7.0, lambda r: ("POST", "/cart/checkout")),
    (2.5, lambda r: ("GET", "/reports/sales")),
    (10.0, lambda r: ("GET", f"/recommendations/{r.randint(1, 5_000)}")),
    (1.0, lambda r: ("GET", "/wp-login.php")),  # a scanner: no rule matches
]


@dataclass
class TrafficCounts:
    """What the generator has sent so far (updated by its threads under a lock)."""

    sent: int = 0
    errors: int = 0  # responses with a status >= 500
    by_status: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, status: int) -> None:
        with self.lock:
            self.sent += 1
            self.errors += status >= 500
            self.by_status[status] = self.by_status.get(status, 0) + 1

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.sent, self.errors


class Traffic:
    """``threads`` threads sending requests to ``app`` until ``stop`` is set."""

    def __init__(self, app: Flask, stop: threading.Event, *, threads: int = 4, rate_per_second: float = 60.0,
                 seed: int = 7) -> None:
        self.app = app
        self.stop = stop
        self.rate_per_thread = rate_per_second / threads
        self.counts = TrafficCounts()
        self._weights = [w for w, _ in ENDPOINTS]
        self._makers = [m for _, m in ENDPOINTS]
        self._threads = [threading.Thread(target=self._run, args=(random.Random(f"{seed}-{i}"),),
                                          name=f"bookshop-traffic-{i}", daemon=True) for i in range(threads)]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float = 30.0) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, rng: random.Random) -> None:
        client: FlaskClient = self.app.test_client()
        while not self.stop.wait(rng.expovariate(self.rate_per_thread)):
            method, path = rng.choices(self._makers, self._weights)[0](rng)
            response = client.open(path, method=method)
            response.close()
            self.counts.add(response.status_code)
