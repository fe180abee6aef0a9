"""Cost of fingerprinting SQL: uncached over the corpus beside sqlglot's tokenizer, a length sweep, the cache.

Budgets (DESIGN.md, "Budgets"; issue 15 line 4): an uncached fingerprint of a typical ~70-character statement
<= 5 us median, linear in the length of the statement; a statement already seen <= 1000 ns through
FingerprintCache.get.

1. Uncached (``fingerprint()``, no FingerprintCache), over every statement of the test corpus
   (tests/fingerprint_corpus.py: ~750 statements in seven dialects), each read in its own dialect: per statement
   the median of ``--rounds`` timed batches, then the median and p90 over the corpus. Two rows: the statement
   whose shape (its text but for its values, pipeline/fingerprint/shapes.py) was met before, which is what an
   application sends all day, values changing or not; and the first reading of a shape (split, then the fast path
   of pipeline/fingerprint/fast.py, or the lexer, the normaliser and the check that lets the shape be remembered;
   the normaliser's memories of words and runs are warm there, the fast path has none). The same statements go
   through sqlglot's tokenizer (the same dialect's), interleaved round by round, as a reference: it only splits
   the text into tokens, the first half of what a fingerprint needs, and it is what a user would reach for first.
2. The budget's verdict: the typical statement (69 characters) with identifiers never met before at every call,
   once every memory is full (FingerprintCache not used, the shapes full, the normaliser's learned words and runs
   full), so no cache and no memory warmed by that statement helps: what an ORM inlining its values costs on a
   statement never seen. Beside it: new values at every call (a shape met before), the first reading of its
   shape, and a length sweep of first readings (70 to ~6,500 characters) whose ns per character shows that the
   cost grows linearly.
3. A repeated statement through FingerprintCache.get, beside a bare dict.get (the floor any cache pays).

The clock is this thread's CPU time, so time spent descheduled on a shared machine is not counted; peers run
in the same process, interleaved, so ratios carry over between machines.

    .venv/bin/python benchmarks/bench_fingerprint.py [--rounds 15] [--check]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Budget, batch_ns, finish, header, interleaved, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fingerprint_corpus import corpus  # the corpus lives beside the tests that pin it

from pipeline.fingerprint import FingerprintCache, fingerprint
from pipeline.fingerprint.dialects import Dialect, dialect_rules
from pipeline.fingerprint.fast import fast_fingerprint
from pipeline.fingerprint.normalise import KEYWORDS, normalise, tokens_of
from pipeline.fingerprint.shapes import _values_are_tokens

UNCACHED_BUDGET = Budget(5_000, True, "<= 5,000 ns")
CACHED_BUDGET = Budget(1_000, True, "<= 1,000 ns")
TYPICAL = "SELECT id, name, email FROM users WHERE id = 42 AND status = 'active'"
# sqlglot's names for the dialects (None: its default tokenizer).
SQLGLOT_DIALECTS = {None: None, "postgres": "postgres", "duckdb": "duckdb", "mysql": "mysql", "sqlite": "sqlite",
                    "oracle": "oracle", "mssql": "tsql"}


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=15, help="timed batches per statement (median is kept)")
    parser.add_argument("--number", type=int, default=20, help="calls per timed batch")


def _sqlglot_tokenizers() -> dict[str | None, Callable[[str], Any]] | None:
    try:
        from sqlglot.dialects.dialect import Dialect
    except ImportError:
        return None
    return {ours: Dialect.get_or_raise(theirs).tokenizer_class().tokenize for ours, theirs in
            SQLGLOT_DIALECTS.items()}


def _cold_cases(rounds: int, number: int, clock: Callable[[], float]) -> dict[str, Callable[[], float]]:
    """Time the typical statement with identifiers never met at every call, once the shapes and the normaliser's
    learned words and runs are full (the fast path keeps none): each identifier replaced by random letters of the
    same length (never a keyword), so the statement stays 69 characters of the same kinds; and, as measured before
    the fast path, each identifier given a numeric suffix (~95 characters, a digit in every name)."""
    words = ("id", "name", "email", "users", "status")
    rng = random.Random(15)
    taken: set[str] = set()

    def same_length() -> str:
        while True:
            sql = TYPICAL
            for word in words:
                new = "".join(rng.choice(string.ascii_lowercase) for _ in word)
                while new.upper() in KEYWORDS | {"TRUE", "FALSE", "CAST"}:
                    new = "".join(rng.choice(string.ascii_lowercase) for _ in word)
                sql = re.sub(rf"\b{word}\b", new, sql)
            if sql not in taken:
                taken.add(sql)
                return sql

    def suffixed(i: int) -> str:
        sql = TYPICAL
        for word in words:
            sql = sql.replace(word, f"{word}_{i}")
        return sql

    rules = dialect_rules(None)
    for i in range(3_000):  # 15,000 new words and 3,000 shapes: past the bounds, new ones are no longer remembered
        for sql in (same_length(), suffixed(-i - 1)):
            fingerprint(sql)
            normalise(sql, rules)
    count = rounds * number + number
    return {"69 chars, every word new": _each_once([same_length() for _ in range(count)], number, clock),
            "~95 chars, every word new": _each_once([suffixed(i) for i in range(count)], number, clock)}


def _each_once(statements: list[str], number: int, clock: Callable[[], float]) -> Callable[[], float]:
    """A timed batch of ``number`` calls of fingerprint(), each on the next statement of ``statements``."""
    remaining = iter(statements)

    def run() -> float:
        batch = [next(remaining) for _ in range(number)]
        start = clock()
        for sql in batch:
            fingerprint(sql)
        return (clock() - start) / number * 1e9

    return run


def _first_reading(sql: str, rules: Dialect) -> str:
    """What fingerprint() does for a shape it has not met: split, then the fast path, or read and check the shape
    may be remembered."""
    sql = sql.rstrip()
    shape = tuple(rules.literals.split(sql))
    if "\x00" not in sql:
        fast = fast_fingerprint(shape)
        if fast is not None:
            return fast
    tokens = tokens_of(sql, rules)
    fp = normalise(sql, rules, tokens)
    _values_are_tokens(sql, tokens, shape)
    return fp


def _new_values(rounds: int, number: int, clock: Callable[[], float]) -> Callable[[], float]:
    """Time the typical statement with other values at every call: new text, a shape met before."""
    return _each_once([TYPICAL.replace("42", str(i)).replace("'active'", f"'state {i}'")
                       for i in range(rounds * number + number)], number, clock)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _corpus_figures(rounds: int, number: int, clock: Callable[[], float]
                    ) -> tuple[list[float], list[float], list[float], int]:
    """Per statement: our median ns (shape met before, first reading of the shape) and sqlglot's (statements its
    tokenizer refuses are left out of its list)."""
    tokenizers = _sqlglot_tokenizers()
    ours: list[float] = []
    first: list[float] = []
    theirs: list[float] = []
    refused = 0
    for dialect, _, sql, _ in corpus():
        cases = {"ours": batch_ns("fp(sql, dialect)", {"fp": fingerprint, "sql": sql, "dialect": dialect},
                                  number, clock),
                 "first": batch_ns("fp(sql, rules)", {"fp": _first_reading, "sql": sql,
                                                      "rules": dialect_rules(dialect)}, number, clock)}
        if tokenizers is not None:
            tokenize = tokenizers[dialect]
            try:
                tokenize(sql)
            except Exception:  # sqlglot raises on what it cannot tokenize (an unterminated string, ...)
                refused += 1
            else:
                cases["sqlglot"] = batch_ns("tokenize(sql)", {"tokenize": tokenize, "sql": sql}, number, clock)
        samples = interleaved(cases, rounds)
        ours.append(statistics.median(samples["ours"]))
        first.append(statistics.median(samples["first"]))
        if "sqlglot" in samples:
            theirs.append(statistics.median(samples["sqlglot"]))
    return ours, first, theirs, refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a budget is missed")
    _options(parser)
    args = parser.parse_args()
    clock = time.thread_time
    header("bench_fingerprint: SQL fingerprints (gc ON, thread CPU time)")
    verdicts: list[str] = []

    ours, first, theirs, refused = _corpus_figures(args.rounds, args.number, clock)
    rows = [["duckpulse fingerprint(), shape met before", len(ours), f"{statistics.median(ours):,.0f}",
             f"{_percentile(ours, 0.9):,.0f}", f"{max(ours):,.0f}"],
            ["duckpulse, first reading of a shape", len(first), f"{statistics.median(first):,.0f}",
             f"{_percentile(first, 0.9):,.0f}", f"{max(first):,.0f}"]]
    if theirs:
        rows.append(["sqlglot tokenize() (tokens only)", len(theirs), f"{statistics.median(theirs):,.0f}",
                     f"{_percentile(theirs, 0.9):,.0f}", f"{max(theirs):,.0f}"])
    print(f"\n1. uncached, every corpus statement in its dialect ({args.rounds} batches of {args.number} calls "
          "each, interleaved)")
    print(table(["case", "statements", "median ns", "p90 ns", "max ns"], rows))
    if theirs:
        print(f"   sqlglot refused {refused} statement(s) (unterminated strings and comments); "
              f"its median is {statistics.median(theirs) / statistics.median(ours):.1f}x ours")
    else:
        print("   sqlglot is not installed (pip install '.[bench]'): no reference row")

    sizes = [1, 2, 4, 8, 16, 32, 64]
    sweep = {n: TYPICAL + "".join(f" AND c{i} = {i}" for i in range(1, (n - 1) * 7 + 1)) if n > 1 else TYPICAL
             for n in sizes}
    rules = dialect_rules(None)
    fingerprint(TYPICAL)  # its shape remembered, as an application's is, before the cold case fills the shapes
    cases = {f"{len(sql)} chars": batch_ns("fp(sql, rules)", {"fp": _first_reading, "sql": sql, "rules": rules},
                                           args.number, clock) for sql in sweep.values()}
    cases["69 chars, new values"] = _new_values(args.rounds * 10, args.number, clock)
    tokenizers = _sqlglot_tokenizers()
    if tokenizers is not None:
        cases["sqlglot 69 chars"] = batch_ns("tok(sql)", {"tok": tokenizers[None], "sql": TYPICAL}, args.number,
                                             clock)
    cases.update(_cold_cases(args.rounds * 10, args.number, clock))
    samples = interleaved(cases, args.rounds * 10)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    cold_ns = medians["69 chars, every word new"]
    cold_p90 = _percentile(samples["69 chars, every word new"], 0.9)
    new_values_ns = medians["69 chars, new values"]
    first_ns = medians[f"{len(TYPICAL)} chars"]
    verdicts.append(UNCACHED_BUDGET.verdict(cold_ns))
    rows = [[f"{len(TYPICAL)}, identifiers never met, no cache or memory", f"{cold_ns:,.0f}",
             f"{cold_p90:,.0f}", f"{cold_ns / len(TYPICAL):.1f}", UNCACHED_BUDGET.label,
             UNCACHED_BUDGET.verdict(cold_ns)],
            ["~95 (a numeric suffix on every name), never met", f"{medians['~95 chars, every word new']:,.0f}",
             f"{_percentile(samples['~95 chars, every word new'], 0.9):,.0f}",
             f"{medians['~95 chars, every word new'] / 95:.1f}", "", ""],
            [f"{len(TYPICAL)}, new values at every call (shape met)", f"{new_values_ns:,.0f}", "",
             f"{new_values_ns / len(TYPICAL):.1f}", "", ""]]
    for sql in sweep.values():
        ns = medians[f"{len(sql)} chars"]
        rows.append([f"{len(sql):,}, first reading of its shape", f"{ns:,.0f}", "", f"{ns / len(sql):.1f}", "", ""])
    print(f"\n2. the typical statement ({len(TYPICAL)} chars): the budget on a statement never seen; a length "
          f"sweep of first readings; no dialect ({args.rounds * 10} batches)")
    print(table(["chars, case", "median ns", "p90 ns", "ns/char", "budget", "verdict"], rows))
    if "sqlglot 69 chars" in medians:
        print(f"   sqlglot tokenize() of the typical statement: {medians['sqlglot 69 chars']:,.0f} ns "
              f"({medians['sqlglot 69 chars'] / cold_ns:.1f}x ours never seen, "
              f"{medians['sqlglot 69 chars'] / first_ns:.1f}x our first reading)")

    cache = FingerprintCache()
    floor = {TYPICAL: fingerprint(TYPICAL)}
    cache.get(TYPICAL)
    cache.get(TYPICAL, "postgres")
    cached = {
        "dict.get (floor)": batch_ns("get(sql)", {"get": floor.get, "sql": TYPICAL}, 20_000, clock),
        "FingerprintCache.get(sql)": batch_ns("get(sql)", {"get": cache.get, "sql": TYPICAL}, 20_000, clock),
        "FingerprintCache.get(sql, dialect)": batch_ns("get(sql, 'postgres')", {"get": cache.get, "sql": TYPICAL},
                                                       20_000, clock),
    }
    samples = interleaved(cached, args.rounds * 2)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor_ns = medians["dict.get (floor)"]
    rows = []
    for name, ns in medians.items():
        ours_row = name.startswith("Fingerprint")
        if ours_row:
            verdicts.append(CACHED_BUDGET.verdict(ns))
        rows.append([name, f"{ns:,.1f}", f"{ns / floor_ns:.2f}x", CACHED_BUDGET.label if ours_row else "",
                     CACHED_BUDGET.verdict(ns) if ours_row else ""])
    print(f"\n3. a repeated statement ({args.rounds * 2} batches of 20,000 calls)")
    print(table(["case", "median ns", "vs dict.get", "budget", "verdict"], rows))
    return finish(verdicts, args.check)


if __name__ == "__main__":
    sys.exit(main())
