"""Statements that differ only in their values share a shape: read once, then found by one split in C.

An ORM that inlines its values sends ``... WHERE id = 41``, then ``... WHERE id = 42``: new text each time, so
the statement cache misses, but the shape is the same. ``fingerprint_by_shape`` splits the statement at its
strings and plain numbers with one regex (``Dialect.literals``); the list of the texts between them, with a
marker for the kind of each value (``""`` a string, ``None`` a number), is the shape, and never holds a value.
A shape met before gives its fingerprint from a dict; a new one is read by the fast path (``fast.py``) when it
holds only plain tokens, else by ``normalise``, and remembered.

Why the fingerprint of one statement serves every statement of its shape: the normaliser turns a string or a
number token into ``?`` whatever its text (a string after a name upper-cases the name: ``date '2024-01-01'``;
the marker keeps strings and numbers apart). So if each value the split found is one whole token of the
lexer, another statement with the same shape, which is the same text with other values in the same kinds of
tokens, is read into the same tokens but for those values, and gives the same fingerprint. That is checked
once per shape, on the statement that first brings it (``_values_are_tokens``): a split that cut elsewhere
(a quote inside a comment or a quoted name, ``E'..'``, ``N'..'``) marks its shape as one to read every time. A
shape the fast path accepts needs no check: its guard leaves nothing that could make the lexer cut elsewhere.
tests/test_fingerprint.py checks it on the corpus with other values in every literal.

Bounded like the normaliser's own memories: at most _SHAPES_MAX shapes per dialect, each of a statement of at
most _SHAPE_CHARS_MAX characters (~2.3 MB per dialect at worst, measured; an application's few hundred shapes in
practice); past the bound a new shape is read every time. A longer statement is split too, for the fast path,
but never remembered.
"""

from __future__ import annotations

from typing import Final

from .dialects import DIALECTS, SAFE, Dialect
from .fast import fast_fingerprint
from .normalise import normalise, tokens_of

__all__ = ["fingerprint_by_shape"]

_SHAPES_MAX: Final = 1_024
_SHAPE_CHARS_MAX: Final = 500
# Per dialect: shape -> its fingerprint, or None for a shape whose values are not whole tokens.
_SHAPES: Final[dict[str, dict[tuple[str | None, ...], str | None]]] = {
    d.name: {} for d in (*DIALECTS.values(), SAFE)}


def fingerprint_by_shape(sql: str, dialect: Dialect) -> str:
    """``normalise(sql, dialect)``, read once per shape; TypeError if ``sql`` is not a str."""
    try:
        sql = sql.rstrip()
    except AttributeError:
        return normalise(sql, dialect)  # raises the TypeError that names the type
    shape = tuple(dialect.literals.split(sql))
    shapes = _SHAPES[dialect.name]
    fp = shapes.get(shape)
    if fp is not None:
        return fp
    if shape in shapes:  # a shape whose values are not tokens: the fast path would refuse it too
        return _settled(normalise(sql, dialect), dialect)
    remember = len(shapes) < _SHAPES_MAX and len(sql) <= _SHAPE_CHARS_MAX
    if "\x00" not in sql:  # NUL stands for the values in the fast path
        fp = fast_fingerprint(shape)
        if fp is not None:
            # Its result is a function of the shape alone (fast.py), so no _values_are_tokens check is needed.
            if remember:
                shapes[shape] = fp
            return fp
    if len(sql) > _SHAPE_CHARS_MAX:
        return _settled(normalise(sql, dialect), dialect)
    tokens = tokens_of(sql, dialect)
    fp = _settled(normalise(sql, dialect, tokens), dialect)
    if remember:
        shapes[shape] = fp if _values_are_tokens(sql, tokens, shape) else None
    return fp


# Passes of the normaliser over its own output at most: each one only removes or respaces (no value survives any).
_SETTLE_PASSES = 4


def _settled(fp: str, dialect: Dialect) -> str:
    """``fp`` read again until reading it changes nothing: on malformed text one pass can leave something a second
    reads otherwise (a ``#`` a MySQL reading then takes as a comment, ``:::`` respaced), and a fingerprint must be
    its own fingerprint. Only the lexer's path pays it: well-formed statements take the fast path."""
    for _ in range(_SETTLE_PASSES):
        again = normalise(fp, dialect)
        if again == fp:
            break
        fp = again
    return fp


def _values_are_tokens(sql: str, tokens: list[str], shape: tuple[str | None, ...]) -> bool:
    """True if every value of ``shape`` starts where one of ``tokens`` (the lexer's reading of ``sql``) does.

    A value then is that token: a string ends by the lexer's own rule, and a number of the split is followed by
    none of the characters that would extend the lexer's number token.
    """
    token_ends: dict[int, int] = {}
    end = 0
    for token in tokens:
        # Only blanks lie between two tokens, and a token never starts with one: the next occurrence is it.
        start = sql.find(token, end)
        end = start + len(token)
        token_ends[start] = end
    position = 0
    for i in range(1, len(shape), 2):  # shape: text, value, text, value, ..., text
        value_end = token_ends.get(position + len(shape[i - 1] or ""))
        if value_end is None:
            return False
        position = value_end
    return position + len(shape[-1] or "") == len(sql)
