"""Known, deterministic traffic for testing a dashboard (ours, or a user's mounted blueprint).

``record_sample_traffic`` drives a Monitor with a fake clock through the public recording API: a minute at a
time, a fixed mix of routes with seeded durations and statuses, queries tied to their requests (one route runs
an N+1 pattern), a process sample per minute, and for failed requests the exception they raised (with values in
its message that must never be stored). Tests then check what the API answers against SQL.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pipeline import Monitor
from pipeline.testing import FakeClock

# route, method, requests per minute, median ms, error fraction, queries per request
ROUTES: tuple[tuple[str, str, int, float, float, int], ...] = (
    ("/", "GET", 8, 3.0, 0.0, 0),
    ("/books/<int:book_id>", "GET", 6, 12.0, 0.02, 1),
    ("/authors/<int:author_id>", "GET", 3, 30.0, 0.0, 7),  # one query per book: the N+1 pattern
    ("/checkout", "POST", 2, 80.0, 0.2, 2),
    ("/report", "GET", 1, 200.0, 0.0, 1),
)
SQL = {
    "/books/<int:book_id>": ["SELECT * FROM books WHERE id = {n}"],
    "/authors/<int:author_id>": ["SELECT * FROM books WHERE author_id = {n} AND position = {i}"],
    "/checkout": ["INSERT INTO orders (book_id, qty) VALUES ({n}, {i})",
                  "UPDATE stock SET qty = qty - 1 WHERE id = {n}"],
    "/report": ["SELECT author_id, count(*) FROM books WHERE year > {n} GROUP BY author_id"],
}


class PaymentDeclined(Exception):
    """What the sample checkout raises when a payment fails."""


def _decline(rng: random.Random) -> None:
    raise PaymentDeclined(f"card ending {rng.randint(1000, 9999)} declined for "
                          f"'buyer{rng.randint(1, 99)}@example.com', order {rng.randint(1, 10**6)}")


def _missing_book(rng: random.Random) -> None:
    raise KeyError(f"book-{rng.randint(1, 500)}")


FAILURES = {"/checkout": _decline, "/books/<int:book_id>": _missing_book}


@dataclass(frozen=True)
class Traffic:
    """What was recorded: the time range it covers (epoch seconds) and how many rows of each kind."""

    start: float
    end: float
    requests: int
    queries: int
    samples: int
    exceptions: int


def record_sample_traffic(monitor: Monitor, clock: FakeClock, minutes: int = 90, seed: int = 5,
                          slow_request_ms: float | None = 1_500.0,
                          outage: tuple[int, int] | None = None) -> Traffic:
    """Record ``minutes`` of traffic one minute at a time (flushing every ten); the clock ends after the last row.

    ``slow_request_ms`` adds one request that slow to /report in the last minute (it fires the default
    request-duration alert rules); None leaves it out. ``outage`` (first minute, end minute) records no request
    in those minutes (the process still reports its memory).
    """
    rng = random.Random(seed)
    start = clock.now()
    requests = queries = samples = exceptions = 0
    for minute in range(minutes):
        if outage is not None and outage[0] <= minute < outage[1]:
            clock.advance(60)
            monitor.track_memory()
            samples += 1
            continue
        for route, method, per_minute, median_ms, error_fraction, query_count in ROUTES:
            for _ in range(per_minute):
                request_id = monitor.next_request_id()
                for i in range(query_count):
                    template = SQL[route][i % len(SQL[route])]
                    monitor.track_query(template.format(n=rng.randint(1, 500), i=i),
                                        round(rng.lognormvariate(0, 0.6) * median_ms / 20, 3),
                                        success=rng.random() > 0.01, request_id=request_id, route=route)
                    queries += 1
                status = 500 if rng.random() < error_fraction else 200
                if status == 500 and route in FAILURES:
                    try:
                        FAILURES[route](rng)
                    except Exception as exc:
                        monitor.track_exception(exc, route, request_id)
                        exceptions += 1
                monitor.track_request(route, method, status, round(rng.lognormvariate(0, 0.5) * median_ms, 3),
                                      request_id=request_id, query_count=query_count)
                requests += 1
                clock.advance(60 / 20)
        if slow_request_ms is not None and minute == minutes - 1:
            monitor.track_request("/report", "GET", 200, slow_request_ms, request_id=monitor.next_request_id())
            requests += 1
        monitor.track_memory()
        samples += 1
        if minute % 10 == 9:
            monitor.flush()
    monitor.flush()
    return Traffic(start, clock.now(), requests, queries, samples, exceptions)


def sql(monitor: Monitor, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of a query over the monitor's store, with ``?`` parameters (what tests compare the API with)."""
    if monitor.store is None:
        raise ValueError("sql() reads an owner's store: pass a Monitor(db_path=...)")
    return monitor.store.fetchall(query, list(params))  # type: ignore[arg-type]  # positional parameters
