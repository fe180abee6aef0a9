"""The corpus (tests/fingerprint_corpus.py): every statement gives exactly its fingerprint, in its dialect."""

from __future__ import annotations

from collections import Counter

import pytest
from fingerprint_corpus import LITERALS, MARKER, TEMPLATES, corpus

from pipeline.fingerprint import fingerprint

ROWS = corpus()


@pytest.mark.parametrize(("dialect", "sql", "expected"),
                         [pytest.param(d, s, e, id=f"{d}-{c}-{i}") for i, (d, c, s, e) in enumerate(ROWS)])
def test_corpus_statement(dialect: str | None, sql: str, expected: str) -> None:
    """The statement gives its fingerprint, which holds no marked text and is its own fingerprint."""
    fp = fingerprint(sql, dialect)
    assert fp == expected
    assert MARKER not in fp
    assert fingerprint(fp, dialect) == fp


def test_corpus_covers_every_dialect_and_category() -> None:
    """At least 400 statements; every dialect (and the safe reading) has literals, comments and cases."""
    assert len(ROWS) >= 400
    per_dialect = Counter(d for d, _, _, _ in ROWS)
    assert set(per_dialect) == {"postgres", "duckdb", "mysql", "sqlite", "oracle", "mssql", None}
    assert min(per_dialect.values()) >= 40
    categories = {(d, c) for d, c, _, _ in ROWS}
    for dialect in per_dialect:
        assert {(dialect, "literal"), (dialect, "comment"), (dialect, "malformed")} <= categories


@pytest.mark.parametrize("dialect", list(LITERALS))
def test_literal_only_variants_collide(dialect: str | None) -> None:
    """Within one template, every literal spelling of a dialect gives one fingerprint."""
    for template, _ in TEMPLATES:
        fps = {fingerprint(template.format(*[lit] * template.count("{}")), dialect) for lit in LITERALS[dialect]}
        assert len(fps) == 1, fps
