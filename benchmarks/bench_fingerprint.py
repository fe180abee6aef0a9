"""Cost of fingerprinting SQL: uncached, and through FingerprintCache on a repeated statement.

Budget: <= 1000 ns per FingerprintCache.get of a statement already seen, median, garbage collector ON.
Every query recorded by the application pays this once at flush time, so it must stay a dict hit. The
uncached figures have no budget: they are paid once per distinct statement, and are printed to watch for
regressions.

Peers run in the same process, round-robin, so load from elsewhere hits them alike: a bare ``dict.get``
(the floor any cache pays) and ``functools.lru_cache`` around ``fingerprint``. Ratios are what carry over
between machines; the absolute figures depend on this one.

    .venv/bin/python benchmarks/bench_fingerprint.py [--rounds 30] [--check]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHED_BUDGET_NS = 1000.0

STATEMENTS = {
    "point select": "SELECT id, name, email FROM users WHERE id = 42",
    "join + IN list": (
        "SELECT u.id, u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id "
        "WHERE u.email = 'alice@example.com' AND o.total > 10.5 AND o.status IN ('new', 'paid', 'sent') "
        "ORDER BY o.created_at DESC LIMIT 20"
    ),
    "ORM select": (
        "SELECT books.id AS books_id, books.title AS books_title, books.author_id AS books_author_id, "
        "books.published AS books_published, authors_1.id AS authors_1_id, authors_1.name AS authors_1_name "
        "FROM books LEFT OUTER JOIN authors AS authors_1 ON authors_1.id = books.author_id "
        "WHERE books.published >= %(published_1)s AND lower(books.title) LIKE %(title_1)s "
        "ORDER BY books.published DESC LIMIT %(param_1)s OFFSET %(param_2)s"
    ),
    "INSERT 50 rows": "INSERT INTO events (ts, kind, payload) VALUES "
    + ", ".join(f"('2026-01-01 00:00:{i:02d}', 'click', '{{\"x\": {i}}}')" for i in range(50)),
    "CTE with comments": (
        "/* report */ WITH recent AS (\n  SELECT user_id, count(*) AS n -- per user\n  FROM orders\n"
        "  WHERE created_at > now() - interval '7 days'\n  GROUP BY user_id\n)\n"
        "SELECT u.name, r.n FROM recent r JOIN users u ON u.id = r.user_id WHERE r.n >= 3;"
    ),
}


def _load() -> Any:
    # Run as `python benchmarks/bench_fingerprint.py` from a checkout: `pipeline` must import uninstalled.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from pipeline import fingerprint as module

    return module


def _batch_ns(stmt: str, namespace: dict[str, Any], number: int) -> Callable[[], float]:
    # timeit turns the garbage collector off by default; the real call site runs with it on.
    timer = timeit.Timer(stmt, setup="gc.enable()", globals={**namespace, "gc": gc})
    return lambda: timer.timeit(number) / number * 1e9


def _interleaved(cases: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median ns per call of each case, its batches run round-robin with the others."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            samples[name].append(run())
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed batches per case (median is reported)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the cached budget is missed")
    args = parser.parse_args()

    module = _load()
    fingerprint = module.fingerprint
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print("== SQL fingerprinting")
    print(f"   python {platform.python_version()}, {os.cpu_count()} cpu(s), load average {load}")

    uncached = {
        name: _batch_ns("fingerprint(sql)", {"fingerprint": fingerprint, "sql": sql}, 200)
        for name, sql in STATEMENTS.items()
    }
    uncached_ns = _interleaved(uncached, args.rounds)
    print(f"\nuncached fingerprint(), median of {args.rounds} batches of 200 calls")
    width = max(len(name) for name in STATEMENTS)
    for name, sql in STATEMENTS.items():
        per_char = uncached_ns[name] / len(sql)
        figure = uncached_ns[name]
        print(f"   {name:<{width}}  {figure:>10,.0f} ns   ({len(sql):>5} chars, {per_char:5.1f} ns/char)")

    sql = STATEMENTS["join + IN list"]
    cache = module.FingerprintCache()
    lru = functools.lru_cache(maxsize=4096)(fingerprint)
    floor: dict[str, str] = {sql: fingerprint(sql)}
    cache.get(sql)
    lru(sql)
    cached = {
        "dict.get (floor)": _batch_ns("get(sql)", {"get": floor.get, "sql": sql}, 20_000),
        "functools.lru_cache": _batch_ns("lru(sql)", {"lru": lru, "sql": sql}, 20_000),
        "FingerprintCache.get": _batch_ns("cache.get(sql)", {"cache": cache, "sql": sql}, 20_000),
    }
    cached_ns = _interleaved(cached, args.rounds)
    floor_ns = cached_ns["dict.get (floor)"]
    print(f"\nrepeated statement, median of {args.rounds} batches of 20,000 calls")
    for name, ns in cached_ns.items():
        print(f"   {name:<22} {ns:>8.1f} ns   {ns / floor_ns:5.2f}x dict.get")
    measured = cached_ns["FingerprintCache.get"]
    speedup = uncached_ns["join + IN list"] / measured
    verdict = "PASS" if measured <= CACHED_BUDGET_NS else "OVER"
    print(f"\nFingerprintCache.get: {measured:.1f} ns (budget <= {CACHED_BUDGET_NS:.0f} ns): {verdict}; "
          f"{speedup:,.0f}x faster than fingerprinting again")
    return 1 if (args.check and verdict == "OVER") else 0


if __name__ == "__main__":
    sys.exit(main())
