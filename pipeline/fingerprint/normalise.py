"""From tokens to a fingerprint: literals to ``?``, lists collapsed, keywords upper-cased, spacing canonical.

One pass over the tokens a dialect's lexer found (``dialects.py``), each handled by the class of its first
character, with a stack of open brackets for the lists:

* literals (strings, numbers, hex/bit/blob, dollar and q-quoted strings, booleans) become ``?``; a ``-``/``+``
  that is a sign rather than a binary operator is folded into the value it precedes (``a = -5`` -> ``a = ?``,
  ``a - 1`` -> ``a - ?``), judged by whether the token before it can end an operand;
* ``NULL`` stays a keyword (``IS NULL`` is structure), and so do ``TRUE``/``FALSE`` right after ``IS [NOT]``;
* comments disappear; keywords are upper-cased, identifiers keep their case; a type after ``::`` or in
  ``CAST(x AS t)``, and the type name of a typed literal (``date '2024-01-01'``), is upper-cased;
* placeholders (``?``, ``%s``, ``%(name)s``, ``$1``, ``:name``, ``:1``, ``@name``) are kept as written;
* a double-quoted token in a dialect where it may be a string (SQLite's fallback, SQL Server with
  QUOTED_IDENTIFIER off, no dialect known) is a name only where a name must stand: qualified (``"t".``, after
  ``.``), after FROM/JOIN/INTO/UPDATE/TABLE/AS/WITH/..., as the target of ``SET "col" =``, or inside the
  column list of ``INSERT INTO t (...)``/``CREATE TABLE t (...)``; anywhere else it is a value.

Lists: a group opened right after ``IN``, ``VALUES`` (or the comma after a ``VALUES`` row), ``ARRAY[``, a ``[``
that is not a subscript, or directly inside another list is a *list*. When it closes, if every item is a lone
value (``NULL`` and ``DEFAULT`` included) it becomes ``(?+)`` (pt-fingerprint's "one or more values"); if all
items are the same tokens, e.g. the tuples of ``IN ((1, 2), (3, 4))``, they reduce to one (``IN ((?+))``).
Consecutive identical ``VALUES`` rows reduce to one row. Every step is linear in the length of the statement.

Tokens are joined with one space, then a few ``str.replace`` remove the spaces that canonical form has not
(inside brackets, before commas, around ``.`` and ``::``, between a name and its ``(``), so ``a=1`` and
``a = 1`` agree and ``fingerprint(fingerprint(sql)) == fingerprint(sql)``.

This module is the reference: ``fast.py`` reads a statement of plain tokens without it, and is tested to give
the same text.

Speed (benchmarks/bench_fingerprint.py): the lexer is one ``findall`` in C, and it reads a run of ASCII words
and ``, = .`` (``SELECT id, name FROM users WHERE id =``) as one token; a run met before whose elements needed
no decision is remembered (``_RUNS``, bounded) with its output tokens, so the skeleton an ORM repeats between
its literals costs one dict lookup and an extend. In the Python loop the other tokens (keywords, operators,
and identifiers met before, remembered in one map up to a bound) cost one dict lookup and an append; only
commas, brackets, literals and new words take a branch.
"""

from __future__ import annotations

import re
from typing import Final

from .dialects import DQ_AMBIGUOUS, DQ_IDENT, RUN_ELEMENTS, Dialect

__all__ = ["FUNCTION_KEYWORDS", "KEYWORDS", "normalise", "tighten", "tokens_of"]

_KEYWORDS: Final = frozenset(
    {
        "ADD", "ALL", "ALTER", "ANALYZE", "AND", "ANY", "ARRAY", "AS", "ASC", "BEGIN", "BETWEEN", "BY",
        "CASCADE", "CASE", "CAST", "CHECK", "COALESCE", "COLLATE", "COLUMN", "COMMIT", "CONFLICT",
        "CONSTRAINT", "COPY", "CREATE", "CROSS", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP",
        "CURRENT_USER", "DATABASE", "DEFAULT", "DELETE", "DESC", "DISTINCT", "DO", "DROP", "DUPLICATE",
        "ELSE", "END", "ESCAPE", "EXCEPT", "EXISTS", "EXPLAIN", "EXTRACT", "FETCH", "FILTER",
        "FIRST", "FOLLOWING", "FOR", "FOREIGN", "FROM", "FULL", "GRANT", "GREATEST", "GROUP", "HAVING", "IF",
        "IGNORE", "ILIKE", "IN", "INDEX", "INNER", "INSERT", "INTERSECT", "INTERVAL", "INTO", "IS", "JOIN",
        "KEY", "LAST", "LATERAL", "LEAST", "LEFT", "LIKE", "LIMIT", "LOCK", "LOCKED", "MATERIALIZED",
        "NATURAL", "NEXT", "NOT", "NOTHING", "NOWAIT", "NULL", "NULLIF", "NULLS", "OFFSET", "ON", "ONLY",
        "OR", "ORDER", "OUTER", "OVER", "PARTITION", "PRECEDING", "PRIMARY", "RANGE", "RECURSIVE",
        "REFERENCES", "RELEASE", "REPLACE", "RETURNING", "REVOKE", "RIGHT", "ROLLBACK", "ROW", "ROWS",
        "SAVEPOINT", "SCHEMA", "SELECT", "SET", "SHARE", "SIMILAR", "SKIP", "SOME", "TABLE", "TEMP",
        "TEMPORARY", "THEN", "TO", "TRANSACTION", "TRUNCATE", "UNBOUNDED", "UNION", "UNIQUE",
        "UPDATE", "USING", "VALUES", "VIEW", "WHEN", "WHERE", "WINDOW", "WITH", "WITHIN"
    }
)
# Keywords that are really functions: their "(" is glued on like a function call's. ALL and SOME are left out
# because "UNION ALL (SELECT" is far more common than "= ALL(array)".
_FUNCTION_KEYWORDS: Final = frozenset(
    {"ANY", "ARRAY", "CAST", "COALESCE", "EXTRACT", "GREATEST", "LEAST", "LEFT", "NULLIF", "REPLACE", "RIGHT",
     "ROW"}
)
KEYWORDS: Final = _KEYWORDS  # for fast.py, which must agree with this module on every word
FUNCTION_KEYWORDS: Final = _FUNCTION_KEYWORDS
_BOOLEANS: Final = frozenset({"TRUE", "FALSE"})
# Operators and punctuation that need no decision: emitted as they are.
_OPERATORS: Final = [
    "<=>", "<>", "!=", "<=", ">=", "==", "||", "||/", "|/", "->", "->>", "@>", "<@", "&&", "<<", ">>", "!~", "!~*",
    "!~~", "!~~*", "~", "~*", "~~", "~~*", ":=", "=>", "!<", "!>", ".", ";", "{", "}", "-", "+", "*", "/",
    "%", "<", ">", "=", "!", "^", "&", "|", "@", "?", ":", "?|", "?&", "#>", "#>>", "#-",
]
_OPERATOR_SET: Final = frozenset(_OPERATORS) | {"#"}
_GLUE: Final = "\x01"  # marks a "(" or "[" glued to the token before it; removed by the final spacing pass
_QUOTED_SPACE: Final = "\x02"  # stands for a space inside a quoted identifier while the spacing pass runs

# The token -> output map for every token emitted as it is: keywords in the three usual casings (any other
# casing takes the path through str.upper), operators, plain punctuation, and the words already met as plain
# identifiers (added by ``normalise``, see ``_learn``).
_CANON: Final[dict[str, str]] = {op: op for op in _OPERATORS}
for _kw in _KEYWORDS:
    _CANON[_kw] = _CANON[_kw.lower()] = _CANON[_kw.title()] = _kw
del _kw
# Identifiers learned into _CANON stop at this many (~1 MB), so a flood of generated names cannot grow it.
# Words are keywords or not whatever the dialect, and only words that start with a letter or "_" (never a
# comment, a quote or a literal in any dialect) are learned; a type after "::" or "AS" is upper-cased after the
# loop, so a word's entry never depends on where it stands.
_LEARNED_MAX: Final = 10_000 + len(_CANON)
# Runs (``SELECT id, name FROM users WHERE id =``: ASCII words and , = . read as one token, see dialects.py) whose
# every element is a _CANON entry or a comma, so their output never depends on where they stand: run -> (output
# tokens, index of the first comma in them or -1). Bounded like the learned words: at most this many runs of at
# most this many characters (~2 MB at worst, measured; the statements' skeletons in practice).
_RUNS: Final[dict[str, tuple[tuple[str, ...], int]]] = {}
_RUNS_MAX: Final = 4_096
_RUN_CHARS_MAX: Final = 160
_RUN_SEPARATOR: Final = re.compile(r"[\s,=.]")

# Token classes, by first character (a letter or anything else not listed: a word).
_WORD, _PREFIXABLE, _STRING, _NUMBER, _DQ, _BACKTICK, _BRACKET, _DOLLAR, _PARAM, _COMMENT, _OPEN, _CLOSE, \
    _COMMA, _SQ_CLOSE = range(14)
_FIRST: Final[dict[str, int]] = {
    **dict.fromkeys("eEnNbBxXuUqQ", _PREFIXABLE), "'": _STRING, **dict.fromkeys("0123456789.", _NUMBER),
    '"': _DQ, "`": _BACKTICK, "[": _BRACKET, "$": _DOLLAR, **dict.fromkeys("?%:@", _PARAM),
    **dict.fromkeys("-/#", _COMMENT), "(": _OPEN, ")": _CLOSE, ",": _COMMA, "]": _SQ_CLOSE,
}

# Tokens after which a "-" or "+" is a sign: every keyword but those that end an operand, every operator.
_NON_OPERANDS: Final = (_KEYWORDS - {"NULL", "END"}) | _OPERATOR_SET - {"?", ".", "}"} | {
    "::", "(", "[", ",", _GLUE + "(", _GLUE + "["}
# What is not a name (an identifier, a quoted identifier, a type), besides values and placeholders: a "(" after
# a name is glued on (a call, or a table's column list), and a string after one is a typed literal.
_NOT_NAMES: Final = _KEYWORDS | _OPERATOR_SET | {"::", "(", ")", "[", "]", ",", _GLUE + "(", _GLUE + "["}
_SIGNS: Final = frozenset({"-", "+"})
# Inside a list these count as one value each, so where the NULLs fall in a batch does not split it.
_SCALARS: Final = frozenset({"?", "?+", "NULL", "DEFAULT"})
_SUBQUERY_KEYWORDS: Final = frozenset({"SELECT", "WITH", "VALUES"})
# After these, a double-quoted token can only be a name.
_NAME_KEYWORDS: Final = frozenset({
    "FROM", "JOIN", "INTO", "UPDATE", "TABLE", "AS", "WITH", "RECURSIVE", "INDEX", "VIEW", "EXISTS",
    "REFERENCES", "COLUMN", "CONSTRAINT", "SCHEMA", "DATABASE", "TRUNCATE", "ONLY"})
_MYSQL_NUMBER: Final = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+|0[bB][01]+")


class _Frame:
    """An open bracket: where it starts in the output and whether it holds a value list."""

    __slots__ = ("closer", "first_comma", "is_cast", "is_list", "is_values_row", "last_row", "names", "start")

    def __init__(self, start: int, closer: str, is_list: bool, is_values_row: bool, is_cast: bool,
                 names: bool) -> None:
        self.start = start
        self.closer = closer
        self.is_list = is_list
        self.is_values_row = is_values_row
        # CAST(x AS int) names a type after AS; upper-cased like the type after "::".
        self.is_cast = is_cast
        # The column list of INSERT INTO t (...) or CREATE TABLE t (...): a double-quoted item is a name.
        self.names = names
        # (start, end) of the last VALUES row closed directly inside this frame.
        self.last_row: tuple[int, int] | None = None
        # Where the first comma directly inside this frame is in the output: the end of its first item.
        self.first_comma: int | None = None


def _is_name(text: str) -> bool:
    return text not in _NOT_NAMES and text[0] not in "?%$:@"


def _is_scalar(text: str) -> bool:
    # A placeholder starts with one of ?%$:@ and is not an operator.
    return text in _SCALARS or (text[:1] in "?%$:@" and text not in _OPERATOR_SET)


def _value(out: list[str]) -> None:
    """Append a literal's ``?``, absorbing a preceding unary sign."""
    if out and out[-1] in _SIGNS and (len(out) == 1 or out[-2] in _NON_OPERANDS):
        out.pop()
    out.append("?")


def _collapse_list(out: list[str], frame: _Frame) -> list[str] | None:
    """The replacement for the contents of the list ``frame`` (up to the end of ``out``), or None.

    Every check stops at its first mismatch and the first item's end is known from the first comma, so nested
    brackets, each closing in turn, never rescan what their children scanned: ``((((...))))`` stays linear.
    """
    begin = frame.start + 1
    end = len(out)
    if begin == end or out[begin] in _SUBQUERY_KEYWORDS:
        return None
    if (end - begin) % 2 == 1:  # only single values, separated by commas: "?, ?, ?" -> "?+"
        for i in range(begin, end, 2):
            if not _is_scalar(out[i]) or (i + 1 < end and out[i + 1] != ","):
                break
        else:
            return ["?+"]
    # The same item repeated: "(?+), (?+)" -> "(?+)". Equal tokens open and close the same brackets, so a
    # period that starts at the first top-level comma only ever splits at top-level commas.
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


def _close(out: list[str], stack: list[_Frame], closer: str) -> None:
    frame = stack[-1]
    if len(stack) == 1 or frame.closer != closer:
        out.append(closer)  # unbalanced: kept as text rather than guessing which group it closes
        return
    stack.pop()
    if frame.is_cast:  # CAST(x AS type): the type is upper-cased, like the one after "::"
        for i in range(len(out) - 2, frame.start, -1):
            if out[i] == "AS":
                if _is_name(out[i + 1]):
                    out[i + 1] = out[i + 1].upper()
                break
    if frame.is_list:
        replacement = _collapse_list(out, frame)
        if replacement is not None:
            del out[frame.start + 1:]
            out.extend(replacement)
    out.append(closer)
    if not frame.is_values_row:
        return
    parent = stack[-1]
    previous = parent.last_row
    if previous is not None:
        prev_start, prev_end = previous
        if (prev_end + 1 == frame.start and prev_end - prev_start == len(out) - frame.start
                and out[prev_start:prev_end] == out[frame.start:]):
            # A repeat of the row before it: drop the comma and the row, so batch size never shows.
            del out[prev_end:]
            if parent.first_comma is not None and parent.first_comma >= prev_end:
                parent.first_comma = None
            return
    parent.last_row = (frame.start, len(out))


def _open(out: list[str], stack: list[_Frame], opener: str) -> None:
    parent = stack[-1]
    previous = out[-1] if out else ","
    n = len(out)
    named = _is_name(previous)
    # A row of VALUES follows the keyword itself, or the comma right after the previous row.
    is_values_row = opener == "(" and (
        previous == "VALUES"
        or (previous == "," and parent.last_row is not None and parent.last_row[1] == n - 1))
    subscript = named or previous in (")", "]", "?") or _is_scalar(previous)
    is_list = is_values_row or (
        (opener == "(" and previous == "IN")
        or (opener == "[" and (previous == "ARRAY" or not subscript))
        or (parent.is_list and (previous == "," or n - 1 == parent.start)))
    names = opener == "(" and named and n > 1 and out[-2] in ("INTO", "TABLE")
    glued = (named or previous in _FUNCTION_KEYWORDS) if opener == "(" else (subscript or previous == "ARRAY")
    stack.append(_Frame(n, ")" if opener == "(" else "]", is_list, is_values_row,
                        opener == "(" and previous == "CAST", names))
    out.append(_GLUE + opener if glued else opener)


def _double_quoted(out: list[str], stack: list[_Frame], tok: str) -> bool:
    """Append a double-quoted token of a dialect where it may be a string; True if a protected space is in it."""
    follower = ""
    if tok[-1] != '"' and len(tok) > 1 and tok.rstrip()[-1] in ".=":
        follower = tok.rstrip()[-1]
        tok = tok[: tok.rindex('"') + 1]
    previous = out[-1] if out else ""
    unterminated = len(tok) < 2 or tok[-1] != '"'
    is_name = not unterminated and (
        follower == "." or previous == "." or previous in _NAME_KEYWORDS
        or (follower == "=" and previous in ("SET", ",") and len(stack) == 1)
        or (stack[-1].names and (previous == "," or len(out) - 1 == stack[-1].start)))
    spaced = False
    if is_name:
        if " " in tok:
            tok = tok.replace(" ", _QUOTED_SPACE)
            spaced = True
        out.append(tok)
    else:
        _value(out)
    if follower:
        out.append(follower)
    return spaced


def _run(out: list[str], stack: list[_Frame], run: str) -> None:
    """Append the elements of a run not met before, and remember it if none of them needed a decision."""
    start = len(out)
    comma = -1
    decided = False
    for element in RUN_ELEMENTS.findall(run):
        text = _CANON.get(element)
        if text is not None:
            out.append(text)
        elif element == ",":
            frame = stack[-1]
            if frame.first_comma is None:
                frame.first_comma = len(out)
            if comma < 0:
                comma = len(out) - start
            out.append(",")
        else:  # a boolean, a keyword in an unusual casing, or a word met for the first time
            _word(out, element)
            decided = True
    if not decided and len(_RUNS) < _RUNS_MAX and len(run) <= _RUN_CHARS_MAX:
        _RUNS[run] = (tuple(out[start:]), comma)


def _word(out: list[str], tok: str) -> None:
    """Append a word that is not in _CANON: a keyword in an unusual casing, a boolean, or a new identifier."""
    upper = tok.upper()
    if upper in _BOOLEANS:
        previous = out[-1] if out else ""
        if previous == "IS" or (previous == "NOT" and len(out) > 1 and out[-2] == "IS"):
            out.append(upper)
        else:
            _value(out)
    elif upper in _KEYWORDS and tok.isascii():
        out.append(upper)
    else:
        out.append(tok)
        if len(_CANON) < _LEARNED_MAX and (tok[0].isalpha() or tok[0] == "_"):
            _CANON[tok] = tok


def _protect(tok: str) -> str:
    """A quoted identifier with its spaces stood in for, so the spacing pass cannot touch them."""
    return tok.replace(" ", _QUOTED_SPACE)


def tighten(result: str) -> str:
    """Tokens joined by one space, without the spaces canonical form has not: before , ) . ; and after ( ."""
    if "," in result:
        result = result.replace(" ,", ",")
    if ")" in result:
        result = result.replace(" )", ")")
    if "(" in result:
        result = result.replace("( ", "(")
    if "." in result:
        result = result.replace(" .", ".").replace(". ", ".")
    if ";" in result:
        result = result.replace(" ;", ";")
    return result


def tokens_of(sql: str, dialect: Dialect) -> list[str]:
    """The tokens of ``sql``, without its trailing blanks, as ``dialect``'s lexer reads them."""
    lexer = dialect.lexer_for(sql)
    # The dollar lexer's findall gives (token, tag) pairs.
    return lexer.findall(sql) if lexer is dialect.lexer else [tok for tok, _tag in lexer.findall(sql)]


def normalise(sql: str, dialect: Dialect, tokens: list[str] | None = None) -> str:
    """The fingerprint of ``sql`` read with ``dialect``'s lexer; TypeError if ``sql`` is not a str.

    ``tokens``: ``tokens_of(sql, dialect)`` when the caller has them already.
    """
    try:
        sql = sql.rstrip()  # trailing blanks would be rescanned by the lexer's whitespace prefix
    except AttributeError:  # the flusher counts a TypeError as a rejected row
        raise TypeError(f"the SQL text must be a str, not {type(sql).__name__}") from None
    if tokens is None:
        tokens = tokens_of(sql, dialect)
    out: list[str] = []
    append = out.append
    extend = out.extend
    canon = _CANON.get
    runs = _RUNS.get
    first = _FIRST.get
    stack = [_Frame(-1, "", False, False, False, False)]  # the root never closes; it tracks top-level rows
    casts = False  # a "::" was emitted: the type after it is upper-cased after the loop
    spaced = False  # a quoted identifier with a space was emitted (its spaces are protected, then restored)
    for tok in tokens:
        text = canon(tok)
        if text is not None:  # keywords, operators, identifiers met before: most tokens
            append(text)
            continue
        run = runs(tok)
        if run is not None:  # a run met before: most of the rest
            texts, comma = run
            if comma >= 0:
                frame = stack[-1]
                if frame.first_comma is None:
                    frame.first_comma = len(out) + comma
            extend(texts)
            continue
        cls = first(tok[0], _WORD)
        # Ordered by how often each class misses _CANON: commas and brackets, then literals, then new words.
        if cls == _COMMA:
            frame = stack[-1]
            if frame.first_comma is None:
                frame.first_comma = len(out)
            append(",")
        elif cls == _OPEN:
            _open(out, stack, "(")
        elif cls == _CLOSE:
            _close(out, stack, ")")
        elif cls in (_STRING, _NUMBER):
            if cls == _NUMBER and dialect.digit_identifiers and tok[0] != "." and not _MYSQL_NUMBER.fullmatch(tok):
                append(tok)  # MySQL: 1abc is a name
                continue
            if out:
                previous = out[-1]
                if previous in _SIGNS:
                    _value(out)
                    continue
                if cls == _STRING and previous not in _NOT_NAMES and previous[0] not in "?%$:@":
                    out[-1] = previous.upper()  # a typed literal: date '2024-01-01', INTERVAL '1 day', int4 '5'
            append("?")
        elif cls == _WORD:
            if tok.isidentifier() or not _RUN_SEPARATOR.search(tok):
                _word(out, tok)
            else:
                _run(out, stack, tok)
        elif cls == _PREFIXABLE:
            quote = tok.find("'", 1, 3)
            if quote > 0:  # E'..', N'..', X'..', B'..', U&'..', q'[..]', nq'..'
                if out and _is_name(out[-1]):
                    out[-1] = out[-1].upper()  # _utf8mb4'x' keeps its introducer, upper-cased like a type
                _value(out)
            elif tok[1:3] == '&"':  # PostgreSQL's U&"..." identifier
                append(tok)
            elif tok.isidentifier() or not _RUN_SEPARATOR.search(tok):
                _word(out, tok)
            else:
                _run(out, stack, tok)
        elif cls == _PARAM:
            if tok == "::":
                casts = True
            append(tok)  # ?, ?+ (a list already collapsed), %s, %(name)s, :name, @name, and "::"
        elif cls == _DQ:
            if dialect.double_quote == DQ_IDENT and tok[-1] == '"' and len(tok) > 1:
                if " " in tok:
                    tok = _protect(tok)
                    spaced = True
                append(tok)
            elif dialect.double_quote == DQ_AMBIGUOUS:
                spaced = _double_quoted(out, stack, tok) or spaced
            else:  # a string (MySQL), or an unterminated identifier that swallowed the rest
                _value(out)
        elif cls in (_BRACKET, _BACKTICK):
            if tok == "[":
                _open(out, stack, "[")
            elif len(tok) > 1 and tok[-1] == ("]" if cls == _BRACKET else "`"):  # [name], `name`
                if " " in tok:
                    tok = _protect(tok)
                    spaced = True
                append(tok)
            else:  # an unterminated [name or `name swallowed the rest
                _value(out)
        elif cls == _SQ_CLOSE:
            _close(out, stack, "]")
        elif cls == _DOLLAR:
            if tok[1:].isdigit() and dialect.dollar_params:
                append(tok)  # $1
            elif tok.count("$") == 1 and not tok[1:2].isdigit():
                append(tok)  # $name (DuckDB, SQLite)
            else:
                _value(out)  # a dollar-quoted string, or SQL Server money ($5.00)
        elif cls == _COMMENT:
            if tok[0] == "#" and not dialect.hash_comments:
                append(tok)  # PostgreSQL's # operators
            # otherwise a comment: nothing is emitted
        else:
            append(tok)
    while out and out[-1] == ";":
        out.pop()
    if casts:  # the type after "::" is a name upper-cased, like a keyword
        for i in range(len(out) - 1):
            if out[i] == "::" and _is_name(out[i + 1]):
                out[i + 1] = out[i + 1].upper()
    # A chain of str.replace costs a third of one regex pass doing the same; no token but a protected quoted
    # identifier (or a placeholder's own name) has spaces inside, so each pair below is a token boundary. Each
    # replace scans the whole text, so one whose character is absent (a one-character test is a memchr) is
    # skipped: they only delete, so a character absent at first stays absent, and the order is kept.
    # The glue goes first: the space it deletes is never part of another pair but "( " (which deletes it too).
    result = " ".join(out)
    if _GLUE in result:
        result = result.replace(" " + _GLUE, "")
    result = tighten(result)
    if casts:
        result = result.replace(" ::", "::").replace(":: ", "::")
    if "[" in result:
        result = result.replace("[ ", "[").replace(" ]", "]")
    return result.replace(_QUOTED_SPACE, " ") if spaced else result
