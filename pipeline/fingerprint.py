"""SQL fingerprints: one stable text per statement shape, with every literal value removed.

Two executions of the same query that differ only in their values (``WHERE id = 7`` and
``WHERE id = 8``, an ``IN`` list of 3 or 300 ids, a ``VALUES`` batch of 1 or 100 rows) must group
under one fingerprint, and the fingerprint must never carry a value, because it is stored and shown
on the dashboard where a password or an e-mail address has no business being.

The approach is a single left-to-right pass of one compiled regular expression whose named
alternatives are the SQL token classes (strings in every quoting style, quoted identifiers,
placeholders, numbers, words, operators; whitespace and comments are skipped by a prefix of every
match). A tokenizer, unlike a chain of substitutions, cannot mistake ``--`` inside a string for a
comment or ``1`` inside ``t1`` for a number. Each token is normalized as it is emitted:

* literals (strings, numbers, hex, booleans) become ``?``; a ``-``/``+`` that is a sign rather
  than a binary operator is folded into the number it precedes (``a = -5`` -> ``a = ?`` but
  ``a - 1`` -> ``a - ?``), judged by whether the token before it can end an operand;
* ``NULL`` stays a keyword, since ``IS NULL`` is structure; so do ``TRUE``/``FALSE`` right after
  ``IS`` / ``IS NOT``, for the same reason;
* comments disappear; keywords are upper-cased, identifiers keep their case; the type after
  ``::`` is upper-cased because type names are case-insensitive;
* existing placeholders (``?``, ``%s``, ``%(name)s``, ``$1``, ``:name``) are kept verbatim;
* an unterminated string or quoted identifier swallows the rest of the text into one ``?``.

Lists are collapsed with a stack of open brackets instead of a second regex pass: a group opened
right after ``IN``, ``VALUES`` (or a comma following a ``VALUES`` row), ``ARRAY[`` or directly inside
another such group is a *list*. When a list closes, if every item is a lone value (``NULL`` and
``DEFAULT`` included, so where the NULLs fall in a batch does not matter) it becomes ``(?+)``
(pt-fingerprint's notation for "one or more values"); if all items are the same token sequence,
e.g. the tuples of ``IN ((1, 2), (3, 4))``, they are reduced to one item, giving ``IN ((?+))``.
Consecutive identical ``VALUES`` rows are reduced to one row. Every step is linear in the length of
the statement, whatever its nesting.

The output is re-joined with canonical spacing (no space inside brackets, before commas, around
``.`` and ``::``, or between a name and its ``(``, so ``count(*)`` but also ``INSERT INTO t(a)``),
so ``a=1`` and ``a = 1`` agree, and ``fingerprint(fingerprint(sql)) == fingerprint(sql)``: ``?+``
is read back as a list marker.

Known, accepted limits: backslash escapes are honoured inside ``'...'`` (MySQL style), so a
PostgreSQL standard string ending in a backslash (``'C:\\'``) is read as unterminated; nested
``/* /* */ */`` comments end at the first ``*/``; MySQL's ``"..."`` strings are read as
identifiers.
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Final

__all__ = ["FingerprintCache", "fingerprint", "fingerprint_id"]

# Token kinds; plain strings keep the emitted tuples cheap and readable in a debugger.
_KW: Final = "kw"
_IDENT: Final = "ident"
_QIDENT: Final = "qident"
_TYPE: Final = "type"
_VALUE: Final = "value"
_PARAM: Final = "param"
_LIST: Final = "list"
_OP: Final = "op"
_PUNCT: Final = "punct"
_OTHER: Final = "other"

_Token = tuple[str, str]

# Whitespace and comments are skipped by a possessive prefix of every match rather than being tokens
# of their own, which halves the iterations of the Python loop. The empty `end` alternative lets
# trailing whitespace or an unterminated comment be consumed without a rescan at every position.
_TOKEN_RE: Final = re.compile(
    r"""
    (?:\s++|--[^\n]*+|/\*(?s:.*?)(?:\*/|\Z))*+
    (?:
      # Strings come before words so that the E of E'...' is not read as an identifier.
      # E'', N'', X'', B'' and U&'' share the quoting rules of a plain string; the trailing
      # backslash alternative lets an unterminated 'abc\ still swallow the rest.
      (?P<string>(?:[eEnNxXbB]|[uU]&)?'(?:[^'\\]++|\\(?s:.)|'')*+(?:'|\\?\Z))
    | (?P<word>[^\W0-9][\w$]*+)
      # MySQL's digit-leading identifiers (1abc) are not supported: they read as a number and a word.
    | (?P<hex>0[xX][0-9a-fA-F]++)
    | (?P<number>(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?[0-9]++)?+)
      # After numbers, so that .5 is a number rather than a dot.
    | (?P<punct>[(),;.\[\]{}]|::|:(?![^\W0-9]))
    | (?P<qident>"(?:[^"]++|"")*+"|`(?:[^`]++|``)*+`)
    | (?P<unterminated>["`](?s:.*))
    | (?P<dollar>\$(?P<tag>(?:[^\W0-9]\w*+)?)\$(?s:.*?)(?:\$(?P=tag)\$|\Z))
      # `?+` is this module's own list marker; recognising it keeps fingerprints idempotent.
    | (?P<list>\?\+(?=\s*[)\]]))
    | (?P<param>\?[0-9]*+|%s|%\([^)]{0,100}\)s|\$[0-9]++|:[^\W0-9]\w*+)
    | (?P<op><>|!=|<=|>=|\|\|/?|->>?|\#>>?|@>|<@|&&|<<|>>|!~\*?|~\*|:=|=>|[-+*/%<>=!~^&|\#@])
    | (?P<other>(?s:.))
    | (?P<end>\Z)
    )
    """,
    re.VERBOSE,
)

_KEYWORDS: Final = frozenset(
    {
        "ADD", "ALL", "ALTER", "ANALYZE", "AND", "ANY", "ARRAY", "AS", "ASC", "BEGIN", "BETWEEN", "BY",
        "CASCADE", "CASE", "CAST", "CHECK", "COALESCE", "COLLATE", "COLUMN", "COMMIT", "CONFLICT",
        "CONSTRAINT", "COPY", "CREATE", "CROSS", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP",
        "CURRENT_USER", "DATABASE", "DEFAULT", "DELETE", "DESC", "DISTINCT", "DO", "DROP", "DUPLICATE",
        "ELSE", "END", "ESCAPE", "EXCEPT", "EXISTS", "EXPLAIN", "EXTRACT", "FALSE", "FETCH", "FILTER",
        "FIRST", "FOLLOWING", "FOR", "FOREIGN", "FROM", "FULL", "GRANT", "GREATEST", "GROUP", "HAVING", "IF",
        "IGNORE", "ILIKE", "IN", "INDEX", "INNER", "INSERT", "INTERSECT", "INTERVAL", "INTO", "IS", "JOIN",
        "KEY", "LAST", "LATERAL", "LEAST", "LEFT", "LIKE", "LIMIT", "LOCK", "LOCKED", "MATERIALIZED",
        "NATURAL", "NEXT", "NOT", "NOTHING", "NOWAIT", "NULL", "NULLIF", "NULLS", "OFFSET", "ON", "ONLY",
        "OR", "ORDER", "OUTER", "OVER", "PARTITION", "PRECEDING", "PRIMARY", "RANGE", "RECURSIVE",
        "REFERENCES", "RELEASE", "REPLACE", "RETURNING", "REVOKE", "RIGHT", "ROLLBACK", "ROW", "ROWS",
        "SAVEPOINT", "SCHEMA", "SELECT", "SET", "SHARE", "SIMILAR", "SKIP", "SOME", "TABLE", "TEMP",
        "TEMPORARY", "THEN", "TO", "TRANSACTION", "TRUE", "TRUNCATE", "UNBOUNDED", "UNION", "UNIQUE",
        "UPDATE", "USING", "VALUES", "VIEW", "WHEN", "WHERE", "WINDOW", "WITH", "WITHIN"
    }
)

# Keywords that are really functions: their "(" is glued on like a function call's. ALL and SOME
# are left out because "UNION ALL (SELECT" is far more common than "= ALL(array)".
_FUNCTION_KEYWORDS: Final = frozenset(
    {
        "ANY", "ARRAY", "CAST", "COALESCE", "EXTRACT", "GREATEST", "LEAST", "LEFT", "NULLIF",
        "REPLACE", "RIGHT", "ROW"
    }
)

# Inside a list, these count as one value each, so that where the NULLs fall in a batch
# does not split one statement into many fingerprints.
_LIST_SCALAR_KEYWORDS: Final = frozenset({"NULL", "DEFAULT"})
_SCALAR_KINDS: Final = frozenset({_VALUE, _PARAM, _LIST})

# The keywords that can end an operand: a "-" after them subtracts ("CASE ... END - 1"), while
# after any other keyword ("SELECT -1", "LIMIT -1") it is a sign.
_OPERAND_KEYWORDS: Final = frozenset({"NULL", "END", "TRUE", "FALSE"})
_OPERAND_KINDS: Final = frozenset({_IDENT, _QIDENT, _TYPE, _VALUE, _PARAM, _LIST})

_SUBQUERY_KEYWORDS: Final = frozenset({"SELECT", "WITH", "VALUES"})

_NO_SPACE_BEFORE: Final = frozenset({")", "]", ",", ";", ".", "::"})
_NO_SPACE_AFTER: Final = frozenset({"(", "[", ".", "::"})
_CALLABLE_KINDS: Final = frozenset({_IDENT, _QIDENT, _TYPE})

_VALUE_TOKEN: Final[_Token] = (_VALUE, "?")
_LIST_TOKENS: Final[tuple[_Token, ...]] = ((_LIST, "?+"),)
_COMMA: Final[_Token] = (_PUNCT, ",")
_AS: Final[_Token] = (_KW, "AS")
_IS: Final[_Token] = (_KW, "IS")
_NOT: Final[_Token] = (_KW, "NOT")
_BOOLEANS: Final = frozenset({"TRUE", "FALSE"})
_VALUE_GROUPS: Final = frozenset({"string", "number", "hex", "dollar", "unterminated"})


class _Frame:
    """An open bracket: where it starts in the output and whether it holds a value list."""

    __slots__ = ("closer", "first_comma", "is_cast", "is_list", "is_values_row", "last_row", "start")

    def __init__(self, start: int, closer: str, is_list: bool, is_values_row: bool, is_cast: bool) -> None:
        self.start = start
        self.closer = closer
        self.is_list = is_list
        self.is_values_row = is_values_row
        # CAST(x AS int) names a type after AS; upper-cased like the type after "::".
        self.is_cast = is_cast
        # (start, end) of the last VALUES row closed directly inside this frame.
        self.last_row: tuple[int, int] | None = None
        # Where the first comma directly inside this frame is in the output: the end of its first item.
        self.first_comma: int | None = None


def _is_operand(token: _Token) -> bool:
    kind, text = token
    if kind in _OPERAND_KINDS:
        return True
    if kind == _KW:
        return text in _OPERAND_KEYWORDS
    return text in (")", "]")


def _emit_value(out: list[_Token]) -> None:
    """Append a literal's ``?``, absorbing a preceding unary sign."""
    if out and out[-1][0] == _OP and out[-1][1] in ("-", "+") and (len(out) == 1 or not _is_operand(out[-2])):
        out.pop()
    out.append(_VALUE_TOKEN)


def _is_scalar(token: _Token) -> bool:
    kind = token[0]
    return kind in _SCALAR_KINDS or (kind == _KW and token[1] in _LIST_SCALAR_KEYWORDS)


def _collapse_list(out: list[_Token], frame: _Frame) -> list[_Token] | None:
    """The replacement for the contents of the list ``frame`` (up to the end of ``out``), or None.

    Every check stops at its first mismatch and the first item's end is known from the first comma,
    so nested brackets, each closing in turn, never rescan what their children already scanned:
    ``((((...))))`` costs linear time, not quadratic.
    """
    begin = frame.start + 1
    end = len(out)
    if begin == end or (out[begin][0] == _KW and out[begin][1] in _SUBQUERY_KEYWORDS):
        return None
    # Only single values, separated by commas: "?, ?, ?" -> "?+".
    if (end - begin) % 2 == 1:
        for i in range(begin, end, 2):
            if not _is_scalar(out[i]) or (i + 1 < end and out[i + 1] != _COMMA):
                break
        else:
            return list(_LIST_TOKENS)
    # The same item repeated: "(?+), (?+)" -> "(?+)". Equal tokens open and close the same brackets,
    # so a period that starts at the first top-level comma only ever splits at top-level commas.
    comma = frame.first_comma
    if comma is None:
        return None
    period = comma - begin + 1
    if period < 2 or (end - begin + 1) % period:
        return None
    for i in range(begin + period, end):
        if out[i] != out[i - period]:
            return None
    return out[begin:comma]


def _close_bracket(out: list[_Token], stack: list[_Frame], closer: str) -> None:
    frame = stack[-1]
    if len(stack) == 1 or frame.closer != closer:
        # Unbalanced input: keep the bracket as text rather than guess which group it closes.
        out.append((_PUNCT, closer))
        return
    stack.pop()
    if frame.is_list:
        replacement = _collapse_list(out, frame)
        if replacement is not None:
            del out[frame.start + 1 :]
            out.extend(replacement)
    out.append((_PUNCT, closer))
    if not frame.is_values_row:
        return
    parent = stack[-1]
    previous = parent.last_row
    if previous is not None:
        prev_start, prev_end = previous
        if (
            prev_end + 1 == frame.start
            and prev_end - prev_start == len(out) - frame.start
            and out[prev_start:prev_end] == out[frame.start :]
        ):
            # A repeat of the row before it: drop the comma and the row so batch size never shows.
            del out[prev_end:]
            if parent.first_comma is not None and parent.first_comma >= prev_end:
                parent.first_comma = None
            return
    parent.last_row = (frame.start, len(out))


def _open_bracket(out: list[_Token], stack: list[_Frame], opener: str) -> None:
    parent = stack[-1]
    previous = out[-1] if out else None
    # A row of VALUES follows the keyword itself, or the comma right after the previous row.
    is_values_row = opener == "(" and (
        previous == (_KW, "VALUES")
        or (previous == _COMMA and parent.last_row is not None and parent.last_row[1] == len(out) - 1)
    )
    is_list = is_values_row or (
        previous is not None
        and (
            (opener == "(" and previous == (_KW, "IN"))
            or (opener == "[" and previous == (_KW, "ARRAY"))
            or (parent.is_list and (previous == _COMMA or len(out) - 1 == parent.start))
        )
    )
    is_cast = opener == "(" and previous == (_KW, "CAST")
    stack.append(_Frame(len(out), ")" if opener == "(" else "]", is_list, is_values_row, is_cast))
    out.append((_PUNCT, opener))


def _tokens(sql: str) -> list[_Token]:
    out: list[_Token] = []
    # The root frame never closes; it only tracks VALUES rows at the top level.
    stack = [_Frame(-1, "", False, False, False)]
    for match in _TOKEN_RE.finditer(sql):
        group = match.lastgroup
        # Branches are ordered by how often each token class occurs in real statements.
        if group == "word":
            text = match.group(group)
            upper = text.upper()
            if out and (out[-1][1] == "::" or (out[-1] == _AS and stack[-1].is_cast)):
                out.append((_TYPE, upper))
            elif upper in _BOOLEANS:
                if out and (out[-1] == _IS or (out[-1] == _NOT and len(out) > 1 and out[-2] == _IS)):
                    out.append((_KW, upper))
                else:
                    _emit_value(out)
            elif upper in _KEYWORDS and text.isascii():
                out.append((_KW, upper))
            else:
                out.append((_IDENT, text))
        elif group == "punct":
            text = match.group(group)
            if text == "(" or text == "[":
                _open_bracket(out, stack, text)
            elif text == ")" or text == "]":
                _close_bracket(out, stack, text)
            else:
                if text == "," and stack[-1].first_comma is None:
                    stack[-1].first_comma = len(out)
                out.append((_PUNCT, text))
        elif group in _VALUE_GROUPS:
            _emit_value(out)
        elif group == "op":
            out.append((_OP, match.group(group)))
        elif group == "param":
            out.append((_PARAM, match.group(group)))
        elif group == "qident":
            out.append((_QIDENT, match.group(group)))
        elif group == "list":
            out.append(_LIST_TOKENS[0])
        elif group == "other":
            out.append((_OTHER, match.group(group)))
    while out and out[-1] == (_PUNCT, ";"):
        out.pop()
    return out


def _join(tokens: list[_Token]) -> str:
    parts: list[str] = []
    previous: _Token | None = None
    for token in tokens:
        text = token[1]
        if previous is not None:
            prev_kind, prev_text = previous
            glued = (
                text in _NO_SPACE_BEFORE
                or prev_text in _NO_SPACE_AFTER
                or (text == "(" and (prev_kind in _CALLABLE_KINDS or prev_text in _FUNCTION_KEYWORDS))
                or (text == "[" and (prev_kind in _OPERAND_KINDS or prev_text in (")", "]", "ARRAY")))
            )
            # ":" then "::" glued would re-read as "::" then ":", breaking idempotence.
            if not glued or (prev_text.endswith(":") and text.startswith(":")):
                parts.append(" ")
        parts.append(text)
        previous = token
    return "".join(parts)


def fingerprint(sql: str) -> str:
    """Return the shape of ``sql`` with every literal replaced by ``?``.

    Never raises on any ``str``: malformed SQL still yields a deterministic fingerprint.
    """
    return _join(_tokens(sql))


def fingerprint_id(fp: str) -> int:
    """Return a signed 64-bit id for a fingerprint, identical in every process and Python run.

    blake2b rather than ``hash()``, which is salted per process; signed so it fits a BIGINT column.
    """
    # surrogatepass: a lone surrogate from a badly decoded driver string must not raise here.
    digest = hashlib.blake2b(fp.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class FingerprintCache:
    """A bounded ``sql -> fingerprint`` map, so a repeated statement costs one dict lookup.

    Applications issue a few hundred distinct statements over and over; a cache of the most recent
    ``maxsize`` statements turns fingerprinting into a dict hit. When full, the oldest inserted entry
    is evicted (FIFO, not LRU: tracking recency would put a write on the hit path). Entries keep the
    statement text alive, so memory is bounded by ``maxsize`` statements, not bytes.

    Hits take no lock: a dict read is atomic. Misses take a lock only to insert and evict, because
    iterating a dict to find its oldest key while another thread inserts would raise.
    """

    __slots__ = ("_data", "_lock", "_maxsize", "evictions")

    def __init__(self, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError(
                f"FingerprintCache maxsize must be at least 1, got {maxsize}; "
                "pass the number of distinct statements to remember, e.g. 4096."
            )
        self._maxsize = maxsize
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()
        # Counted so a cache too small for the application's statement mix is visible.
        self.evictions = 0

    @property
    def maxsize(self) -> int:
        """The most statements kept at once."""
        return self._maxsize

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, sql: object) -> bool:
        return sql in self._data

    def get(self, sql: str) -> str:
        """Return ``fingerprint(sql)``, computing it only on the first sighting of ``sql``."""
        fp = self._data.get(sql)
        if fp is not None:
            return fp
        fp = fingerprint(sql)
        with self._lock:
            data = self._data
            if sql not in data:
                while len(data) >= self._maxsize:
                    del data[next(iter(data))]
                    self.evictions += 1
                data[sql] = fp
        return fp

    def clear(self) -> None:
        """Forget every cached statement."""
        with self._lock:
            self._data.clear()
