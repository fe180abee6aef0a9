"""SQL fingerprints: the decisions the normaliser pins, grouping, ids stable across runs, the cache.

The rows of TABLE were written for the fingerprinter before dialects (issue 15) and still give the same
fingerprints, read as PostgreSQL (one row as MySQL): the shapes users stored keep matching.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fingerprint_corpus import corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.fingerprint import FingerprintCache, fingerprint, fingerprint_id
from pipeline.fingerprint.dialects import dialect_rules

# The modules, not the functions pipeline.fingerprint re-exports under the same names.
normalise_module = importlib.import_module("pipeline.fingerprint.normalise")
shapes_module = importlib.import_module("pipeline.fingerprint.shapes")
REPO_ROOT = Path(__file__).resolve().parent.parent

# (id, statement, exact fingerprint). Each row pins one decision of the normalizer.
TABLE: list[tuple[str, str, str]] = [
    # String literals in every quoting style.
    ("quote-doubled", "SELECT * FROM t WHERE name = 'it''s'", "SELECT * FROM t WHERE name = ?"),
    (
        "quote-backslash",
        "SELECT * FROM t WHERE name = 'a\\'b' AND x = 1",
        "SELECT * FROM t WHERE name = ? AND x = ?",
    ),
    ("empty-strings", "SELECT '' , ''''", "SELECT ?, ?"),
    ("e-string", "SELECT E'tab\\there\\'s' FROM t", "SELECT ? FROM t"),
    ("dollar-quoted", "SELECT $$it's a 'trap'$$ AS s", "SELECT ? AS s"),
    ("dollar-tagged", "SELECT $fn$ body $$ nested $$ $fn$, $1", "SELECT ?, $1"),
    ("national-string", "SELECT N'näme' FROM t", "SELECT ? FROM t"),
    (
        "unicode-string",
        "SELECT * FROM users WHERE name = 'Zoë 北京 🦆'",
        "SELECT * FROM users WHERE name = ?",
    ),
    # Casts keep their type, upper-cased; the literal being cast does not survive.
    ("cast-literal", "SELECT '5'::int, x::int, y :: varchar(20)", "SELECT ?::INT, x::INT, y::VARCHAR(?)"),
    (
        "cast-function",
        "select cast(price as numeric(10, 2)) from items",
        "SELECT CAST(price AS NUMERIC(?, ?)) FROM items",
    ),
    # A sign is folded into its number; a subtraction is kept.
    (
        "sign-vs-minus",
        "SELECT a - 1, a-1, b = -1, c=-2, d - -3 FROM t",
        "SELECT a - ?, a - ?, b = ?, c = ?, d - ? FROM t",
    ),
    ("sign-after-keyword", "SELECT -5, +6 FROM t LIMIT -1", "SELECT ?, ? FROM t LIMIT ?"),
    ("sign-in-parens", "SELECT (-1), a * -2, f(-3, +4)", "SELECT (?), a * ?, f(?, ?)"),
    (
        "minus-after-case-end",
        "SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END - 1 FROM t",
        "SELECT CASE WHEN a > ? THEN ? ELSE ? END - ? FROM t",
    ),
    # Numbers in every notation.
    ("scientific", "SELECT 1e-3, 1.5E+10, 2e5, -3.25e-7", "SELECT ?, ?, ?, ?"),
    ("decimals", "SELECT .5, 5., 10.25 FROM t WHERE x > 0.001", "SELECT ?, ?, ? FROM t WHERE x > ?"),
    ("hex", "SELECT 0xFF, X'AB', x'0f', B'0101'", "SELECT ?, ?, ?, ?"),
    # Booleans are values; NULL, and TRUE/FALSE after IS, are structure.
    ("booleans", "SELECT * FROM t WHERE a = TRUE AND b = false", "SELECT * FROM t WHERE a = ? AND b = ?"),
    (
        "is-null-is-true",
        "SELECT * FROM t WHERE a IS NULL AND b IS NOT NULL AND c IS TRUE AND d IS NOT false",
        "SELECT * FROM t WHERE a IS NULL AND b IS NOT NULL AND c IS TRUE AND d IS NOT FALSE",
    ),
    ("null-value", "UPDATE t SET a = NULL WHERE b = 1", "UPDATE t SET a = NULL WHERE b = ?"),
    # IN lists.
    ("in-list", "SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?+)"),
    ("in-strings", "SELECT * FROM t WHERE s NOT IN ('a', 'b''c', -4)", "SELECT * FROM t WHERE s NOT IN (?+)"),
    ("in-placeholders", "SELECT * FROM t WHERE id IN (%s, %s, %s)", "SELECT * FROM t WHERE id IN (?+)"),
    (
        "in-nested-tuples",
        "SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4), (5, 6))",
        "SELECT * FROM t WHERE (a, b) IN ((?+))",
    ),
    (
        "in-subquery",
        "SELECT * FROM t WHERE id IN (SELECT uid FROM u WHERE k IN (7, 8))",
        "SELECT * FROM t WHERE id IN (SELECT uid FROM u WHERE k IN (?+))",
    ),
    (
        "in-expressions-kept",
        "SELECT * FROM t WHERE id IN (a + 1, b)",
        "SELECT * FROM t WHERE id IN (a + ?, b)",
    ),
    ("in-casts", "SELECT * FROM t WHERE id IN ('1'::int, '2'::int)", "SELECT * FROM t WHERE id IN (?::INT)"),
    ("in-empty", "SELECT * FROM t WHERE id IN ()", "SELECT * FROM t WHERE id IN ()"),
    (
        "any-array",
        "SELECT * FROM t WHERE id = ANY(ARRAY[1, 2, 3])",
        "SELECT * FROM t WHERE id = ANY(ARRAY[?+])",
    ),
    # CTEs.
    (
        "cte",
        "WITH recent AS (SELECT id FROM orders WHERE created > '2024-01-01') SELECT count(*) FROM recent",
        "WITH recent AS (SELECT id FROM orders WHERE created > ?) SELECT count(*) FROM recent",
    ),
    (
        "cte-recursive",
        "with recursive r(n) as (select 1 union all select n + 1 from r where n < 10) select n from r",
        "WITH RECURSIVE r(n) AS (SELECT ? UNION ALL SELECT n + ? FROM r WHERE n < ?) SELECT n FROM r",
    ),
    # VALUES.
    (
        "values-rows",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, NULL)",
        "INSERT INTO t(a, b) VALUES (?+)",
    ),
    ("values-one-row", "INSERT INTO t (a, b) VALUES (1, 'x')", "INSERT INTO t(a, b) VALUES (?+)"),
    ("values-with-call", "INSERT INTO t VALUES (1, now()), (2, now())", "INSERT INTO t VALUES (?, now())"),
    (
        "values-upsert",
        "INSERT INTO t (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET n = t.n + excluded.n",
        "INSERT INTO t(id, n) VALUES (?+) ON CONFLICT (id) DO UPDATE SET n = t.n + excluded.n",
    ),
    # Comments anywhere.
    ("comment-line", "SELECT a -- the a column\nFROM t -- trailing", "SELECT a FROM t"),
    (
        "comment-block",
        "/* leading */ SELECT /* inline 'x' */ a FROM t /* multi\nline */ WHERE b = 2",
        "SELECT a FROM t WHERE b = ?",
    ),
    ("comment-unterminated", "SELECT a FROM t /* never closed 'secret'", "SELECT a FROM t"),
    # Existing placeholders are kept as written.
    ("qmark", "SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = ? AND b = ?"),
    (
        "format",
        "SELECT * FROM t WHERE a = %s AND b = %(name)s",
        "SELECT * FROM t WHERE a = %s AND b = %(name)s",
    ),
    (
        "numeric",
        "SELECT * FROM t WHERE a = $1 AND b = $2::text",
        "SELECT * FROM t WHERE a = $1 AND b = $2::TEXT",
    ),
    ("named", "SELECT * FROM t WHERE a = :a AND b = :b_2", "SELECT * FROM t WHERE a = :a AND b = :b_2"),
    # Identifiers are not damaged.
    (
        "quoted-identifiers",
        'SELECT "col 2", "Mixed""Quote", `back tick` FROM "my schema"."Table 1"',
        'SELECT "col 2", "Mixed""Quote", `back tick` FROM "my schema"."Table 1"',
    ),
    (
        "identifiers-with-digits",
        "SELECT t1.col_2, col3 FROM schema1.t1 WHERE t1.x2 = 5",
        "SELECT t1.col_2, col3 FROM schema1.t1 WHERE t1.x2 = ?",
    ),
    (
        "unicode-identifier",
        "SELECT straße FROM café WHERE straße = 'x'",
        "SELECT straße FROM café WHERE straße = ?",
    ),
    (
        "function-case-kept",
        "SELECT COUNT(*), sum(x), Lower(name) FROM t",
        "SELECT COUNT(*), sum(x), Lower(name) FROM t",
    ),
    # Malformed input.
    ("unterminated-string", "SELECT * FROM t WHERE a = 'oops AND b = 2", "SELECT * FROM t WHERE a = ?"),
    ("unterminated-backslash", "SELECT 'abc\\", "SELECT ?"),
    ("unterminated-identifier", 'SELECT "abc FROM t', "SELECT ?"),
    ("empty", "", ""),
    ("only-semicolons", "  ;\n ; ", ""),
    # Keywords, whitespace, semicolons.
    (
        "lowercase-keywords",
        "select distinct a from t where b like 'x%' order by a desc limit 10 offset 5",
        "SELECT DISTINCT a FROM t WHERE b LIKE ? ORDER BY a DESC LIMIT ? OFFSET ?",
    ),
    ("trailing-semicolons", "SELECT 1;;", "SELECT ?"),
    ("two-statements", "select 1; select 2;", "SELECT ?; SELECT ?"),
    ("whitespace", "SELECT\n\ta ,\r\n  b\tFROM   t  WHERE a=1", "SELECT a, b FROM t WHERE a = ?"),
    (
        "interval",
        "SELECT * FROM t WHERE ts > now() - interval '1 day'",
        "SELECT * FROM t WHERE ts > now() - INTERVAL ?",
    ),
    (
        "json-operators",
        "SELECT doc->>'name', doc #> '{a,b}' FROM t WHERE doc @> '{\"k\": 1}'",
        "SELECT doc ->> ?, doc #> ? FROM t WHERE doc @> ?",
    ),
    ("between", "SELECT * FROM t WHERE a BETWEEN 1 AND 10", "SELECT * FROM t WHERE a BETWEEN ? AND ?"),
    ("union-all-subquery", "SELECT 1 UNION ALL (SELECT 2)", "SELECT ? UNION ALL (SELECT ?)"),
]


# The dialect each row is read in: PostgreSQL, but for the one row that is MySQL's (a backslash escape).
DIALECT_OF = {"quote-backslash": "mysql"}


@pytest.mark.parametrize(("sql", "expected", "dialect"),
                         [pytest.param(s, e, DIALECT_OF.get(i, "postgres"), id=i) for i, s, e in TABLE])
def test_fingerprint_table(sql: str, expected: str, dialect: str) -> None:
    """Each tricky statement normalizes to exactly its expected fingerprint, as before dialects existed."""
    assert fingerprint(sql, dialect) == expected


@pytest.mark.parametrize("expected", sorted({e for _, _, e in TABLE}))
@pytest.mark.parametrize("dialect", ["postgres", None])
def test_fingerprints_are_fixed_points(expected: str, dialect: str | None) -> None:
    """A fingerprint fingerprints to itself, in its dialect and in the safe reading."""
    once = fingerprint(expected, dialect)
    assert fingerprint(once, dialect) == once
    if dialect is not None:
        assert once == expected


def test_table_is_large_enough() -> None:
    """The table keeps covering at least 45 statements."""
    assert len(TABLE) >= 45
    assert len({name for name, _, _ in TABLE}) == len(TABLE)


# --- Grouping: the count of values never shows ------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 10, 500])
def test_in_lists_of_any_length_share_one_fingerprint(count: int) -> None:
    """IN lists of 1 to 500 values, literal or placeholder, all give the same fingerprint."""
    numbers = ", ".join(str(i) for i in range(count))
    strings = ", ".join(f"'v{i}'" for i in range(count))
    params = ", ".join(["%s"] * count)
    expected = "SELECT * FROM t WHERE id IN (?+) AND name NOT IN (?+)"
    assert fingerprint(f"SELECT * FROM t WHERE id IN ({numbers}) AND name NOT IN ({strings})") == expected
    assert fingerprint(f"SELECT * FROM t WHERE id IN ({params}) AND name NOT IN ({params})") == expected


@pytest.mark.parametrize("count", [1, 2, 7, 100])
def test_nested_in_lists_of_any_length_share_one_fingerprint(count: int) -> None:
    """IN lists of tuples collapse to one tuple whatever the number of tuples."""
    tuples = ", ".join(f"({i}, '{i}')" for i in range(count))
    expected = "SELECT * FROM t WHERE (a, b) IN ((?+))"
    assert fingerprint(f"SELECT * FROM t WHERE (a, b) IN ({tuples})") == expected


@pytest.mark.parametrize("rows", [1, 2, 3, 100])
def test_values_batches_of_any_size_share_one_fingerprint(rows: int) -> None:
    """A multi-row INSERT gives the same fingerprint for 1 row or 100, with literals or placeholders."""
    literal_rows = ", ".join(f"({i}, 'name {i}', NULL)" for i in range(rows))
    param_rows = ", ".join(["(?, ?, ?)"] * rows)
    expected = "INSERT INTO t(a, b, c) VALUES (?+)"
    assert fingerprint(f"INSERT INTO t (a, b, c) VALUES {literal_rows}") == expected
    assert fingerprint(f"INSERT INTO t (a, b, c) VALUES {param_rows};") == expected


def test_values_rows_with_expressions_collapse_when_alike() -> None:
    """Rows that repeat the same non-literal shape collapse; the row count still does not show."""
    one = fingerprint("INSERT INTO t VALUES (1, lower('A'))")
    many = fingerprint("INSERT INTO t VALUES (1, lower('A')), (2, lower('B')), (3, lower('C'))")
    assert one == many == "INSERT INTO t VALUES (?, lower(?))"


def test_where_the_nulls_fall_does_not_split_a_batch() -> None:
    """NULL and DEFAULT count as values inside a VALUES row or an IN list."""
    with_nulls = fingerprint("INSERT INTO t VALUES (1, NULL), (NULL, 2)")
    assert with_nulls == fingerprint("INSERT INTO t VALUES (1, 2)") == "INSERT INTO t VALUES (?+)"
    assert fingerprint("SELECT * FROM t WHERE a IN (NULL, 1)") == "SELECT * FROM t WHERE a IN (?+)"
    assert fingerprint("INSERT INTO t VALUES (DEFAULT, 'x')") == "INSERT INTO t VALUES (?+)"


def test_spacing_and_case_do_not_split_a_statement() -> None:
    """Statements that differ only in spacing, keyword case and comments share a fingerprint."""
    variants = [
        "SELECT a,b FROM t WHERE a=1 AND b IN (1,2)",
        "select a , b\nfrom t\nwhere a = 2 and b in ( 3 )",
        "SELECT /* hint */ a, b FROM t WHERE a = -7 AND b IN (4, 5, 6); -- done",
    ]
    assert len({fingerprint(v) for v in variants}) == 1


def test_subtraction_and_negative_literal_differ() -> None:
    """``a - 1`` keeps its operator while ``a = -1`` is a comparison with one value."""
    assert fingerprint("SELECT a - 1 FROM t") == "SELECT a - ? FROM t"
    assert fingerprint("SELECT a FROM t WHERE a = -1") == "SELECT a FROM t WHERE a = ?"
    assert fingerprint("SELECT a FROM t WHERE a = -1") == fingerprint("SELECT a FROM t WHERE a = 1")


# --- runs and shapes: what the normaliser and the shapes remember -------------------------------------------


def read(sql: str, dialect: str | None = None) -> str:
    """The normaliser's own reading of ``sql``, without the shapes in front of it."""
    result: str = normalise_module.normalise(sql, dialect_rules(dialect))
    return result


def _emptied(memory: dict[Any, Any]) -> Iterator[dict[Any, Any]]:
    saved = dict(memory)
    memory.clear()
    yield memory
    memory.clear()
    memory.update(saved)


@pytest.fixture
def no_runs_remembered() -> Iterator[dict[str, object]]:
    """The normaliser's remembered runs, emptied for the test and given back after it."""
    yield from _emptied(normalise_module._RUNS)


@pytest.fixture
def no_shapes_remembered() -> Iterator[dict[str | None, Any]]:
    """The safe reading's remembered shapes, emptied for the test and given back after it."""
    yield from _emptied(shapes_module._SHAPES[dialect_rules(None).name])


def test_corpus_gives_the_same_fingerprint_read_afresh_and_remembered(
        no_runs_remembered: dict[str, object]) -> None:
    """Every corpus statement reads the same when its runs are new, being remembered, and remembered."""
    remembered_before = 0
    for dialect, _, sql, expected in corpus():
        no_runs_remembered.clear()
        first, second = read(sql, dialect), read(sql, dialect)  # the second remembers the runs
        remembered_before += bool(no_runs_remembered)
        assert (first, second, read(sql, dialect)) == (expected, expected, expected), sql
    assert remembered_before > 500  # most statements hold a run worth remembering


def test_a_run_holding_a_decision_is_decided_every_time(no_runs_remembered: dict[str, object]) -> None:
    """TRUE is a value after ``=`` and a keyword after ``IS``: a run holding it is never remembered whole."""
    sql = "UPDATE t SET flag = TRUE WHERE a IS TRUE"
    assert {read(sql) for _ in range(3)} == {"UPDATE t SET flag = ? WHERE a IS TRUE"}
    assert sql not in no_runs_remembered
    assert read("SELECT a, b FROM t WHERE c = 1") == read("SELECT a, b FROM t WHERE c = 1") == \
        "SELECT a, b FROM t WHERE c = ?"
    assert "SELECT a, b FROM t WHERE c =" in no_runs_remembered


def test_a_remembered_run_marks_where_its_list_items_end(no_runs_remembered: dict[str, object]) -> None:
    """A run with commas inside brackets still lets equal tuples collapse and unequal ones stay."""
    for _ in range(3):  # new, being remembered, remembered
        assert read("SELECT * FROM t WHERE (a, b) IN ((a, b), (a, b))") == "SELECT * FROM t WHERE (a, b) IN ((a, b))"
        assert read("INSERT INTO t (a, b) VALUES (x, y), (x, y), (y, x)") == \
            "INSERT INTO t(a, b) VALUES (x, y), (y, x)"
        assert read("SELECT * FROM t WHERE x IN (a, b, a, b)") == "SELECT * FROM t WHERE x IN (a, b, a, b)"


def test_remembered_runs_stay_bounded(no_runs_remembered: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound new runs are read afresh every time, and still give their fingerprint."""
    monkeypatch.setattr(normalise_module, "_RUNS_MAX", 40)
    for _ in range(2):
        for i in range(100):
            assert read(f"SELECT c{i}, d FROM t{i} WHERE e = {i}") == f"SELECT c{i}, d FROM t{i} WHERE e = ?"
    assert len(no_runs_remembered) == 40
    long_run = "SELECT " + ", ".join(f"c{i}" for i in range(100)) + " FROM t"
    assert read(long_run) == read(long_run) == long_run
    assert long_run not in no_runs_remembered  # longer than _RUN_CHARS_MAX: never remembered


# Other values for the strings and numbers of a statement, each valid in every dialect.
OTHER_STRINGS = ["'x'", "''", "'it''s'", "'a -- b /* c'", "'$$ $a$'", "'\"'", "'Zq9'"]
OTHER_NUMBERS = ["7", "1.5e3", ".5", "123456", "2."]


def test_a_shape_met_before_gives_each_statement_its_own_reading() -> None:
    """Every corpus statement, then the same statement with other values, fingerprints as its own reading."""
    shapes = shapes_module._SHAPES
    saved = {name: dict(memory) for name, memory in shapes.items()}
    found = 0
    try:
        for i, (dialect, _, sql, expected) in enumerate(corpus()):
            for memory in shapes.values():
                memory.clear()
            assert fingerprint(sql, dialect) == expected
            values = list(dialect_rules(dialect).literals.finditer(sql.rstrip()))
            found += len(values)
            for k in range(3):
                parts, last = [], 0
                for j, value in enumerate(values):
                    other = OTHER_STRINGS if value.group()[0] == "'" else OTHER_NUMBERS
                    parts += [sql[last:value.start()], other[(i + j + k) % len(other)]]
                    last = value.end()
                variant = "".join([*parts, sql[last:]])
                assert fingerprint(variant, dialect) == read(variant, dialect), (sql, variant)
    finally:
        for name, memory in shapes.items():
            memory.clear()
            memory.update(saved[name])
    assert found > 1_000


def test_a_shape_whose_values_are_not_tokens_is_read_every_time(no_shapes_remembered: dict[Any, Any]) -> None:
    """A quote inside a comment misleads the split: that shape is never trusted for the next statement."""
    assert fingerprint("SELECT 1 /* it's */, 'x'") == "SELECT ?, ?"
    # The same shape (the split cuts "'s */, '" and "'" here too), but here the comment runs to the end.
    assert fingerprint("SELECT 2 /* it'abc'x'") == "SELECT ?"
    assert list(no_shapes_remembered.values()) == [None]
    assert fingerprint("SELECT a FROM t WHERE b = 'x' AND c = 5") == "SELECT a FROM t WHERE b = ? AND c = ?"
    assert fingerprint("SELECT a FROM t WHERE b = 'it''s' AND c = 1.5") == "SELECT a FROM t WHERE b = ? AND c = ?"
    assert ("SELECT a FROM t WHERE b = ", "", " AND c = ", None, "") in no_shapes_remembered


def test_remembered_shapes_stay_bounded(no_shapes_remembered: dict[Any, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound a new shape is read every time; a statement past the length bound is never remembered."""
    monkeypatch.setattr(shapes_module, "_SHAPES_MAX", 30)
    for i in range(60):
        assert fingerprint(f"SELECT c{i} FROM t WHERE a = {i}") == f"SELECT c{i} FROM t WHERE a = ?"
    assert len(no_shapes_remembered) == 30
    long_statement = "SELECT * FROM t WHERE " + " AND ".join(f"c{i} = {i}" for i in range(60))
    no_shapes_remembered.clear()
    assert fingerprint(long_statement) == "SELECT * FROM t WHERE " + " AND ".join(f"c{i} = ?" for i in range(60))
    assert not no_shapes_remembered


# --- fingerprint_id ---------------------------------------------------------------------------------------

# No deadline: the machine is shared, and tests assert behaviour, never wall-clock time.
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_fingerprint_id_known_values() -> None:
    """The id is pinned: stored ids must keep matching across releases."""
    assert fingerprint_id("SELECT ?") == -4519228712408840358
    assert fingerprint_id("") == -1970711489451281740
    assert fingerprint_id("SELECT * FROM t WHERE id IN (?+)") == -4454736921296590559


@PROPERTY
@given(st.text())
def test_fingerprint_id_is_deterministic_int64(fp: str) -> None:
    """The id is blake2b-64 of the UTF-8 text as a signed big-endian int64, the same on every call."""
    expected = int.from_bytes(
        hashlib.blake2b(fp.encode("utf-8"), digest_size=8).digest(), "big", signed=True
    )
    assert fingerprint_id(fp) == fingerprint_id(fp) == expected
    assert -(2**63) <= expected < 2**63


def test_fingerprint_id_accepts_lone_surrogates() -> None:
    """Text a driver decoded badly (a lone surrogate) still gets an id instead of an exception."""
    assert isinstance(fingerprint_id("SELECT \udcff"), int)


def test_fingerprint_id_is_stable_across_processes() -> None:
    """Two interpreters with different hash seeds compute the same ids (hash() would not)."""
    statements = ["SELECT ?", "INSERT INTO t(a) VALUES (?+)", "SELECT straße FROM café"]
    code = (
        "import sys; from pipeline.fingerprint import fingerprint_id;"
        "print([fingerprint_id(s) for s in sys.argv[1:]])"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", code, *statements], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout.strip())
    assert outputs == {str([fingerprint_id(s) for s in statements])}


# --- FingerprintCache -------------------------------------------------------------------------------------


def test_cache_keys_statements_by_dialect() -> None:
    """One statement read in two dialects is two entries, each with its own fingerprint."""
    cache = FingerprintCache()
    sql = "SELECT * FROM t WHERE a = 1 # note"
    assert cache.get(sql, "mysql") == "SELECT * FROM t WHERE a = ?"
    assert cache.get(sql, "postgres") == "SELECT * FROM t WHERE a = ? # note"
    assert cache.get(sql) == "SELECT * FROM t WHERE a = ?"
    assert len(cache) == 3 and sql in cache and (sql, "mysql") in cache


def test_cache_hit_returns_the_stored_fingerprint() -> None:
    """A repeated statement returns the very object computed the first time."""
    cache = FingerprintCache()
    sql = "SELECT * FROM t WHERE id = 42"
    first = cache.get(sql)
    assert first == fingerprint(sql) == "SELECT * FROM t WHERE id = ?"
    assert cache.get(sql) is first
    assert sql in cache and len(cache) == 1


def test_cache_evicts_oldest_and_stays_bounded() -> None:
    """Past maxsize the oldest statement goes first; the size stays bounded and evictions are counted."""
    cache = FingerprintCache(maxsize=3)
    statements = [f"SELECT {i} FROM t{i}" for i in range(10)]
    for sql in statements:
        assert cache.get(sql) == fingerprint(sql)
        assert len(cache) <= 3
    assert [sql in cache for sql in statements] == [False] * 7 + [True] * 3
    assert cache.evictions == 7
    assert cache.maxsize == 3


def test_cache_clear_forgets_everything() -> None:
    """clear() empties the cache; later lookups recompute."""
    cache = FingerprintCache(maxsize=4)
    cache.get("SELECT 1")
    cache.clear()
    assert len(cache) == 0
    assert cache.get("SELECT 1") == "SELECT ?"


@pytest.mark.parametrize("maxsize", [0, -1])
def test_cache_rejects_a_useless_maxsize(maxsize: int) -> None:
    """A maxsize below 1 is refused with a message saying what to pass instead."""
    with pytest.raises(ValueError, match="at least 1"):
        FingerprintCache(maxsize=maxsize)


def test_cache_under_concurrent_use() -> None:
    """Threads sharing a small cache never crash, never see a wrong fingerprint, never overfill it."""
    statements = [f"SELECT c{i % 37} FROM t WHERE id = {i} AND name = 'n{i}'" for i in range(400)]
    expected = {sql: fingerprint(sql) for sql in statements}
    cache = FingerprintCache(maxsize=16)
    start = threading.Barrier(8)
    old_interval = sys.getswitchinterval()

    def hammer(offset: int) -> list[str]:
        start.wait()
        wrong = []
        for i in range(3000):
            sql = statements[(i * 7 + offset) % len(statements)]
            if cache.get(sql) != expected[sql]:
                wrong.append(sql)
        return wrong

    # A tiny switch interval makes threads interleave inside get(), where a race would show.
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(hammer, range(8)))
    finally:
        sys.setswitchinterval(old_interval)
    assert results == [[]] * 8
    assert len(cache) <= 16
