"""The fast path (pipeline/fingerprint/fast.py) gives the normaliser's fingerprint byte for byte, or refuses.

Every test runs twice: with the C fast path (pipeline/_fastfp.c, which this build must have) and with the
Python passes that stand in for it where the extension is not built.

Whenever ``fast_fingerprint`` accepts a statement, its result must equal ``normalise``'s (the reference) in the
statement's dialect: over the whole corpus read in every dialect, over random statements of the property tests'
grammar, and over a few thousand random mutations of corpus statements. Each test also counts what the fast
path accepted, so that a guard refusing everything cannot pass. The guard must refuse each construct that needs
the full lexer's judgement.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Iterator
from typing import Any

import pytest
from fingerprint_corpus import corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fingerprint_properties import _statement

from pipeline import _fastfp
from pipeline.fingerprint import fingerprint
from pipeline.fingerprint.dialects import dialect_rules
from pipeline.fingerprint.fast import fast_fingerprint
from pipeline.fingerprint.normalise import KEYWORDS, normalise

shapes_module = importlib.import_module("pipeline.fingerprint.shapes")
fast_module = importlib.import_module("pipeline.fingerprint.fast")
DIALECTS = [None, "postgres", "duckdb", "mysql", "sqlite", "oracle", "mssql"]


@pytest.fixture(autouse=True, params=["c", "python"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test with the C fast path, then with the Python passes (the fallback) in its place."""
    if request.param == "python":
        monkeypatch.setattr(fast_module, "_c_fingerprint", None)
    return str(request.param)


def test_the_c_fast_path_is_built_and_used(implementation: str) -> None:
    """This build has the C extension, fast_fingerprint calls it, and it refuses a shape that is not a tuple."""
    assert fast_module._c_fingerprint is (_fastfp.fingerprint if implementation == "c" else None)
    with pytest.raises(TypeError, match="shape tuple"):
        _fastfp.fingerprint(["SELECT 1"])  # type: ignore[arg-type]
    assert _fastfp.fingerprint(("SELECT é",)) is None  # only ASCII is for the fast path


def test_the_c_keyword_table_comes_from_the_normaliser(implementation: str) -> None:
    """The C table is fast.py's _TOKENS (normalise.KEYWORDS): every keyword comes out upper-cased, and classed.

    Checked word by word through the C function against the Python passes; a bad table is refused with a reason.
    """
    accepted = 0
    for keyword in sorted(KEYWORDS):
        for sql in (f"SELECT a {keyword.lower()} b", f"x {keyword.title()}(1)", f"x {keyword} -1"):
            shape = tuple(dialect_rules(None).literals.split(sql))
            c_result = _fastfp.fingerprint(shape)
            accepted += c_result is not None
            assert (c_result and fast_module._lists(c_result)) == fast_module.python_fingerprint(shape), sql
    assert accepted >= 3 * len(KEYWORDS) - 3  # all but CAST, which the fast path leaves to the normaliser
    with pytest.raises(ValueError, match="no keyword"):
        _fastfp.configure({"X" * 40: "X\x02"})
    with pytest.raises(TypeError):
        _fastfp.configure([])  # type: ignore[arg-type]
    assert _fastfp.fingerprint(("SELECT a FROM t",)) == "SELECT a FROM t"  # the table was left as it was


def fast(sql: str, dialect: str | None) -> str | None:
    """The fast path's reading of ``sql`` split as ``fingerprint`` splits it (None: refused)."""
    sql = sql.rstrip()
    return fast_fingerprint(tuple(dialect_rules(dialect).literals.split(sql)))


def agrees(sql: str, dialect: str | None) -> bool:
    """True if the fast path accepts ``sql``; fails the test if its result is not the reference's."""
    result = fast(sql, dialect)
    if result is None:
        return False
    assert result == normalise(sql, dialect_rules(dialect)), (dialect, sql)
    return True


def test_the_corpus_in_every_dialect() -> None:
    """Every corpus statement, read in each dialect: the fast path's result is the reference's when it accepts."""
    statements = sorted({sql for _, _, sql, _ in corpus()})
    accepted = sum(agrees(sql, dialect) for sql in statements for dialect in DIALECTS)
    assert accepted > 400  # of 7 x 349 (the corpus is mostly special literals and comments)


@pytest.mark.parametrize("dialect", DIALECTS)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          max_examples=40)
@given(data=st.data())
def test_the_property_grammar(dialect: str | None, data: st.DataObject) -> None:
    """Random statements of the property tests' grammar, literals planted everywhere: accepted means equal."""
    for sql in data.draw(_statement(dialect)):
        agrees(sql, dialect)


# Fragments that mutate a statement towards what the guard must judge: quotes, comments, casings, signs, lists.
FRAGMENTS = [
    "'", "''", "'x'", '"', "`", "[", "]", "$", "#", "@", ":", "::", "\\", "--", "/*", "*/", "{", "}", "|", "&",
    "-", "+", "- 5", "-'a'", "+ 1", "=", "==", "=>", "->", "<", ">", "<>", "!=", "!", "<=", ">=", "< >", "*", "/", "%",
    "%s", "%(a)s", "?", "?+", "?1", "(", ")", ",", ", ,", "( ,", ";", ".", ".5", "1", "1.5", "1e5", "0x1F", "1abc",
    "t1", "E'", "N'x'", "q'[x]'", "date '2024-01-01'", "x 5", " ", "  ", "\t", "\n", "\r\n", "\x0b", "é",
    "IN (1, 2)", "in (?, ?)", "IN ((1, 2))", "IN (SELECT 1)", "IN (f(1), f(1))", ", (", "VALUES (1, 2), (1, 2)",
    "values (a, a)", "VALUES (now())", "select", "SeLeCt", "Select", "null", "NULL", "End", "true", "False",
    "cast", "CAST(a AS int)", "count(*)", "COALESCE (a, 1)", "IS NOT", "ARRAY", "DEFAULT", "a", "users",
]


def _mutations(seed: int, count: int) -> Iterator[tuple[str, str | None]]:
    rng = random.Random(seed)
    statements = sorted({sql for _, _, sql, _ in corpus()})
    for _ in range(count):
        sql = rng.choice(statements)
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(sql))
            action = rng.random()
            if action < 0.6:
                sql = sql[:at] + rng.choice(FRAGMENTS) + sql[at:]
            elif action < 0.8:
                sql = sql[:at] + sql[at + rng.randint(1, 4):]
            else:
                sql = sql[:at] + sql[at:].swapcase()
        yield sql, rng.choice(DIALECTS)


def test_random_mutations_of_the_corpus() -> None:
    """3,000 statements mutated at random towards every construct: accepted means equal to the reference."""
    accepted = sum(agrees(sql, dialect) for sql, dialect in _mutations(15, 3_000))
    assert accepted > 200  # ~10%: most mutations put in something the guard refuses


@pytest.mark.parametrize("sql", [
    "SELECT a FROM t WHERE b = \"x\"", "SELECT `a` FROM t", "SELECT [a] FROM t", "SELECT $1", "SELECT $$x$$",
    "SELECT a FROM t # x", "SELECT a FROM t -- x", "SELECT a /* x */ FROM t", "SELECT a::int", "SELECT :a",
    "SELECT @a", "SELECT a FROM t WHERE b = E'x'", "SELECT N'x'", "SELECT q'[x]'", "SELECT _utf8'x'",
    "SELECT 0x1F", "SELECT 1abc", "SELECT 1_000", "SELECT t.5",
    "SELECT a FROM t WHERE b = TRUE", "SELECT a FROM t WHERE b IS false", "SELECT CAST(a AS int)",
    "SELECT a FROM t WHERE b = date '2024-01-01'", "SELECT a FROM t WHERE b IN ((1, 2), (3, 4))",
    "SELECT a FROM t WHERE b IN (f(1), f(1))", "SELECT a FROM t WHERE b IN (SELECT c FROM u WHERE d IN ((1)))",
    "SELECT a FROM t WHERE b IN (SELECT c, (d) FROM u)",
    "INSERT INTO t VALUES (now(), 1), (now(), 1)", "INSERT INTO t VALUES (1, 2) VALUES (1, 2)",
    "SELECT a FROM t WHERE b IN (1,, 2)", "SELECT a ?+ b",
    "SELECT ?1", "SELECT %(a)s", "SELECT a%s", "SELECT a % b", "SELECT !a", "SELECT a == b", "SELECT a => b",
    "SELECT a -> b", "SELECT a << b", "SELECT a < > b", "SELECT a <>= b", "SELECT a {b}", "SELECT a | b",
    "SELECT a ~ b",
    "SELECT 'a' FROM t WHERE b = é", "SELECT a\x0bFROM t",
])
def test_the_guard_refuses_what_needs_the_lexer(sql: str) -> None:
    """Each construct the fast path leaves to the normaliser is refused (its fingerprint is still right)."""
    assert fast(sql, None) is None
    assert fingerprint(sql) == normalise(sql.rstrip(), dialect_rules(None))


def test_what_the_fast_path_takes() -> None:
    """The statements an application sends most: read by the fast path, each as the normaliser reads it."""
    for sql in [
        "SELECT id, name, email FROM users WHERE id = 42 AND status = 'active'",
        "select u.id, count(*) from users u join orders o on o.user_id = u.id where u.id in (1, 2, 3) group by 1",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, NULL)",
        "UPDATE t SET n = n + 1, m = -5 WHERE id = %s;", "- + 1 - 'a'", "SELECT a - - 1, (+ 2), -3",
        "SELECT a FROM t WHERE b <> 'x' AND c != 1.5 AND d >= 2 AND e <= 3 LIMIT 10 OFFSET 20",
        "SELECT a FROM t WHERE b IN (SELECT c FROM u WHERE d IN (1, 2)) ORDER BY a DESC",
        "SeLeCt\ta\nFROM   t WHERE x=1", "-5 + a", "SELECT x FROM t WHERE y IN (a + 1, a + 2) AND z IN (b, c)",
    ]:
        assert agrees(sql, None), sql


def test_a_nul_character_is_left_to_the_normaliser() -> None:
    """NUL stands for the values in the fast path: a statement holding one is read by the normaliser."""
    assert fingerprint("SELECT \x00 FROM t WHERE a = 1") == "SELECT \x00 FROM t WHERE a = ?"


@pytest.fixture
def no_shapes_remembered() -> Iterator[dict[Any, Any]]:
    """The safe reading's remembered shapes, emptied for the test and given back after it."""
    memory = shapes_module._SHAPES[dialect_rules(None).name]
    saved = dict(memory)
    memory.clear()
    yield memory
    memory.clear()
    memory.update(saved)


def test_a_shape_the_fast_path_read_is_remembered_and_sound(no_shapes_remembered: dict[Any, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A shape read by the fast path is remembered without the token check, which would have held anyway."""
    checked: list[str] = []
    check = shapes_module._values_are_tokens
    monkeypatch.setattr(shapes_module, "_values_are_tokens", lambda sql, *a: checked.append(sql) or check(sql, *a))
    sql = "SELECT a FROM t WHERE b = 'x' AND c = 5"
    assert fingerprint(sql) == "SELECT a FROM t WHERE b = ? AND c = ?"
    assert list(no_shapes_remembered.values()) == ["SELECT a FROM t WHERE b = ? AND c = ?"]
    assert not checked  # the fast path read it
    assert fingerprint("SELECT a FROM t WHERE b = 'it''s' AND c = 1.5e3") == "SELECT a FROM t WHERE b = ? AND c = ?"
    assert len(no_shapes_remembered) == 1
    # Why no check is needed: every corpus statement the fast path accepts has values that are whole tokens.
    for dialect, _, text, _ in corpus():
        text = text.rstrip()
        shape = tuple(dialect_rules(dialect).literals.split(text))
        if fast_fingerprint(shape) is not None:
            rules = dialect_rules(dialect)
            assert check(text, shapes_module.tokens_of(text, rules), shape), text
