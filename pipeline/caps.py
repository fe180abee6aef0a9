"""Caps on what a careless or hostile caller can make a process hold: distinct routes, methods, query names, and
their lengths (custom metrics' names and label sets are capped in pipeline/instruments.py).

1M distinct routes through ``track_request`` used to reach the database as they were: the owner grew to 2.7 GB and
``/api/routes`` answered 165 MB. A ``Vocabulary`` keeps the distinct values of one kind this process has recorded,
up to its cap; a new value beyond it is stored as the overflow value (``<other>``), and a value longer than its
length cap is cut. Both are counted per row in ``stats()["folded"]``. It is consulted at compaction, once per
distinct value and flush (``tables.Interner.add``): the hot path never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Lengths are fixed: a route template, a method or a query name longer than these is a mistake (an URL with its
# values, a whole SQL text), and its first characters still say which one it was.
MAX_ROUTE_CHARS = 500
MAX_METHOD_CHARS = 20
MAX_QUERY_NAME_CHARS = 200
# Distinct routes (and query names) per process: the default of the max_routes setting.
DEFAULT_MAX_ROUTES = 2_000
# Distinct HTTP methods per process (the integrations already fold non-standard ones into OTHER).
MAX_METHODS = 20
OVERFLOW_ROUTE = "<other>"
OVERFLOW_METHOD = "OTHER"


@dataclass(frozen=True)
class Cap:
    """At most ``max_distinct`` values of ``what``, each at most ``max_chars`` long; beyond: ``overflow``."""

    what: str
    max_distinct: int
    max_chars: int
    overflow: str


class Vocabulary:
    """The distinct values of one kind recorded by this process, up to its cap (one per kind, for the process's
    life: what was admitted once stays admitted)."""

    def __init__(self, cap: Cap) -> None:
        self.cap = cap
        self._known: set[str] = set()

    def admit(self, value: str) -> tuple[str, str | None]:
        """The value to store for ``value``, and the reason it was changed (None: stored as it is)."""
        cap = self.cap
        reason = None
        if len(value) > cap.max_chars:
            value, reason = value[:cap.max_chars], f"{cap.what}_too_long"
        if value not in self._known:
            if len(self._known) >= cap.max_distinct:
                return cap.overflow, f"too_many_{cap.what}s"
            self._known.add(value)
        return value, reason


def vocabularies(max_routes: int) -> dict[tuple[str, str], Vocabulary]:
    """The capped columns, by (table, column); routes are one vocabulary for requests and queries alike."""
    routes = Vocabulary(Cap("route", max_routes, MAX_ROUTE_CHARS, OVERFLOW_ROUTE))
    return {
        ("requests", "route"): routes,
        ("queries", "route"): routes,
        ("requests", "method"): Vocabulary(Cap("method", MAX_METHODS, MAX_METHOD_CHARS, OVERFLOW_METHOD)),
        ("queries", "name"): Vocabulary(Cap("query_name", max_routes, MAX_QUERY_NAME_CHARS, OVERFLOW_ROUTE)),
    }
