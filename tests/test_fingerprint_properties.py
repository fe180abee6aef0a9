"""Properties, in every dialect: no planted literal survives, literal-only variants collide, one pass is enough.

Statements are built from a small SQL grammar (select, insert, update, delete, with IN lists, VALUES rows,
function calls, comparisons and comments); every literal position gets a random literal spelled the way the
dialect's documentation allows (strings with the dialect's escapes, numbers, hex/bit/blob, dollar and q-quotes,
booleans). The marker in each planted literal must not reach the fingerprint, two statements that differ only in
their literals must give the same fingerprint, and fingerprinting a fingerprint must change nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.fingerprint import fingerprint

# No deadline: the machine is shared, and tests assert behaviour, never wall-clock time.
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60)
MARKER = "Zq9"
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20).map(lambda t: MARKER + t)
# A comment's text cannot hold its own end: no line break in a line comment, no "*/" in a block comment.
_COMMENT_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"),
                                      exclude_characters="*/\x85"), max_size=20)


def _standard(t: str) -> str:
    return "'" + t.replace("'", "''") + "'"


def _backslash(t: str) -> str:  # MySQL and E'': backslashes and quotes escaped
    return "'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _mysql_double(t: str) -> str:
    return '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dollar(t: str) -> str:
    return "$x$" + t.replace("$x$", "") + "$x$"


def _q_quote(t: str) -> str:
    return "q'[" + t.replace("]'", "") + "]'"


def _safe(t: str) -> str:  # a string whose end is the same whether or not backslashes escape
    return "'" + t.replace("\\", "").replace("'", "''") + "'"


_NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr).filter(lambda r: "inf" not in r),
    st.integers(0, 2**40).map(hex),
)
_STRINGS: dict[str | None, list[Callable[[str], str]]] = {
    "postgres": [_standard, lambda t: "E" + _backslash(t), lambda t: "N" + _standard(t), _dollar],
    "duckdb": [_standard, lambda t: "E" + _backslash(t), _dollar],
    "mysql": [_backslash, _mysql_double, lambda t: "N" + _backslash(t)],
    "sqlite": [_standard, lambda t: '"' + t.replace('"', '""') + '"'],
    "oracle": [_standard, _q_quote, lambda t: "N" + _standard(t)],
    "mssql": [_standard, lambda t: "N" + _standard(t)],
    None: [_safe, _dollar, _q_quote, lambda t: '"' + t.replace('"', '""') + '"'],
}
# Booleans, and the blob/bit literals of the dialects that have them (X'..' elsewhere is a name and a string).
_OTHER_LITERALS = ["TRUE", "false", "0b101", ".5", "-7"]
_BLOBS = {"postgres": ["X'AB'", "B'0101'"], "duckdb": ["X'AB'", "B'0101'"], "mysql": ["X'AB'", "b'01'"],
          "sqlite": ["X'AB'"], None: ["X'AB'", "B'01'"]}


def _literal(dialect: str | None) -> st.SearchStrategy[str]:
    quoting = st.sampled_from(_STRINGS[dialect])
    others = st.sampled_from(_OTHER_LITERALS + _BLOBS.get(dialect, []))
    return st.one_of(st.tuples(quoting, _TEXT).map(lambda p: p[0](p[1])), _NUMBERS, others)


_COMMENTS: dict[str | None, list[str]] = {
    "postgres": ["-- {}\n", "/* {} */", "/* /* {} */ */"], "duckdb": ["-- {}\n", "/* {} */"],
    "mysql": ["# {}\n", "-- {}\n", "/* {} */"], "sqlite": ["-- {}\n", "/* {} */"], "oracle": ["-- {}\n", "/* {} */"],
    "mssql": ["-- {}\n", "/* /* {} */ */"], None: ["# {}\n", "-- {}\n", "/* /* {} */ */"],
}

# The grammar: {v} is a literal position, {c} a comment position.
_CONDITIONS = ["a = {v}", "b <> {v}", "c IN ({v}, {v}, {v})", "d BETWEEN {v} AND {v}", "e LIKE {v}",
               "f(g, {v}) > {v}", "h IS NULL", "(i = {v} OR j = {v})", "k - {v} < {v}"]
_STATEMENTS = [
    "SELECT x, {v} AS y, lower(z) FROM t {c} WHERE {w} ORDER BY x LIMIT {v}",
    "SELECT count(*) FROM t JOIN u ON u.id = t.u_id WHERE {w} AND t.n IN (SELECT n FROM s WHERE {w})",
    "INSERT INTO t (a, b, c) VALUES ({v}, {v}, {v}), ({v}, {v}, {v}) {c}",
    "UPDATE t SET a = {v}, b = b + {v} WHERE {w}",
    "DELETE FROM t WHERE {w} {c}",
    "WITH r AS (SELECT {v} AS n FROM t WHERE {w}) SELECT n FROM r WHERE n > {v}",
]


@st.composite
def _statement(draw: st.DrawFn, dialect: str | None) -> tuple[str, str]:
    """A statement and a second one with the same shape and other literals."""
    shape = draw(st.sampled_from(_STATEMENTS))
    conditions = draw(st.lists(st.sampled_from(_CONDITIONS), min_size=1, max_size=3))
    shape = shape.replace("{w}", " AND ".join(conditions))
    comment = draw(st.sampled_from(_COMMENTS[dialect]))
    literal = _literal(dialect)
    pair = []
    for _ in range(2):
        parts = shape.split("{v}")
        text = parts[0] + "".join(draw(literal) + p for p in parts[1:])
        pair.append(text.replace("{c}", comment.format(MARKER + draw(_COMMENT_TEXT))))
    return pair[0], pair[1]


@pytest.mark.parametrize("dialect", list(_STRINGS))
@PROPERTY
@given(data=st.data())
def test_planted_literals_never_survive_and_variants_collide(dialect: str | None, data: st.DataObject) -> None:
    """No planted literal or comment text survives; literal-only variants collide; one pass is a fixed point."""
    statements = data.draw(_statement(dialect))
    first, second = (fingerprint(s, dialect) for s in statements)
    assert MARKER not in first and MARKER not in second
    assert first == second
    assert fingerprint(first, dialect) == first


_DIALECTS = st.sampled_from([None, "postgres", "duckdb", "mysql", "sqlite", "oracle", "mssql"])
# Fragments chosen to collide: quotes, comment openers, casts, signs, lists and placeholders.
_FRAGMENTS = st.sampled_from([
    "'", '"', "`", "[", "]", "$", "$$", "$a$", "-", "+", "--", "#", "/*", "*/", "::", ":", ":n", "?", "?+", "%s",
    "%(", ")s", "$1", "(", ")", ",", ";", ".", ".5", "1", "1e-3", "0x1", "E'", "X'", "q'[", "q'!", "\\", "\\'",
    "''", " ", "\n", "=", "<", ">", "IN", "in", "VALUES", "ARRAY", "CAST", " AS ", "int", "NULL", "IS", "NOT",
    "TRUE", "false", "END", "DEFAULT", "SELECT", "SET", "INTO", "a", "t1", "@v", "{", "}",
])


@settings(PROPERTY, max_examples=300)
@given(_DIALECTS, st.lists(_FRAGMENTS, max_size=30).map("".join))
def test_one_pass_reaches_a_fixed_point_even_on_junk(dialect: str | None, text: str) -> None:
    """Even malformed SQL-like text reaches a fixed point after one pass, in every dialect."""
    once = fingerprint(text, dialect)
    assert fingerprint(once, dialect) == once


@PROPERTY
@given(_DIALECTS, st.text())
def test_never_raises(dialect: str | None, text: str) -> None:
    """Any text at all yields a string fingerprint."""
    assert isinstance(fingerprint(text, dialect), str)


@pytest.mark.parametrize(("dialect", "text"), [
    ("duckdb", ":\n::*/'' \\'.\"\"+"),  # one pass left ":::*", which a second respaced
    ("mysql", "#>\nE'>/*/*"),  # one pass left "#> E ?", which a MySQL reading takes as a comment
])
def test_junk_found_by_the_property_test_is_its_own_fingerprint(dialect: str, text: str) -> None:
    once = fingerprint(text, dialect)
    assert fingerprint(once, dialect) == once
