"""The fingerprint of a plain statement from its shape with C-level string passes; None for anything else.

``fingerprint_by_shape`` has split the statement at its strings and plain numbers (``Dialect.literals``; the
shape is the texts between them). Most statements an application sends hold nothing but ASCII words, ``'...'``
strings, plain numbers, ``?``/``%s`` placeholders, brackets, commas and the common operators: for those the
fingerprint comes from the shape's texts joined by NUL (standing for each value), through one ``fullmatch``,
``str.replace``/``split``/``join``, one dict lookup per token and a few regex passes that fire on rare text, with
no memory of words met before: a statement whose every identifier is new costs the same as any other.

Those passes run in C (``pipeline/_fastfp.c``, one pass over the characters: the guard, the tokens, the keywords
from ``_TOKENS`` handed over by ``configure`` at import, the mends, sign drops, glue and ``tighten``), with the
IN-list and VALUES-row collapsing (``_lists``) left here and run only when the result holds one. Where the optional
extension is not built, ``python_fingerprint`` below does the same in Python passes; the tests run both, and the C
code follows them pass for pass.

``_ACCEPTED`` refuses every statement holding what needs the full lexer's judgement (``normalise.py``): any
quote or character outside ASCII letters, digits, blanks and ``( ) , . ; = < > ! * + - / ? %`` (so no ``"``,
backtick, ``[``, ``$``, ``#``, ``@``, ``:``, ``\\``, ``{``; a ``'`` outside the values cannot be there, the split
takes every string, unterminated ones included), a word glued to a value (``E'..'``, ``N'..'``, ``q'..'``,
``_utf8'..'``), a digit that starts a token but was no plain value (``0x1F``, ``1abc``, ``1.2.3``, ``t.5``),
``--``, ``/*``, ``==``, ``=>``, ``->``, ``<<``, ``>>``, ``!`` but in ``!=``, ``?+``, ``?1``, ``%`` but the ``%s``
placeholder. After the tokens are read it refuses TRUE, FALSE and CAST (in any casing), empty list items, a name
right before a value (a typed literal, ``date '2024-01-01'``), an IN list holding brackets that is no subquery,
and VALUES rows that hold brackets. A refused statement goes to ``normalise`` unchanged.

On what it accepts, the result is ``normalise``'s, byte for byte: tests/test_fingerprint_fast.py runs both over
the corpus in every dialect, the property tests' grammar and a few thousand random mutations, and checks that
each construct above is refused. Why this holds, pass by pass:

* values: the split's values are then exactly the lexer's string and number tokens (a value of the split is one
  token of the lexer, and the guard leaves no other quote, comment, prefix or digit that could make the lexer
  cut elsewhere), so they become ``?`` as the normaliser makes them; a ``-``/``+`` before one is dropped after
  what the normaliser treats as a non-operand (an operator, ``(``, ``,``, ``;``, a keyword but NULL/END, the
  start), as ``_value`` drops it;
* tokens: each character that is a token of its own spaced, then ``str.split()``; the two-character operators
  ``<> != <= >=`` mended (the guard has refused them with blanks inside, and every other pair the lexer reads
  as one token). Each keyword, found by its upper-case form in any casing, is emitted in upper case with a mark of
  its class for the passes below (removed at the end); every other token as written;
* then the normaliser's rules on the marked text: ``(`` glued to a name or a function keyword, its own
  ``str.replace`` spacing chain, trailing ``;`` trimmed, IN lists and VALUES rows collapsed by its rules on their
  (flat) items.

The result depends on the shape alone (a NUL in the statement itself is left to the normaliser), and the values
of an accepted shape are whole tokens, so ``shapes.py`` remembers it without the check ``_values_are_tokens``
makes for the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from .normalise import FUNCTION_KEYWORDS, KEYWORDS, tighten

__all__ = ["fast_fingerprint", "python_fingerprint"]

# Classes spelled out: in a str pattern \w, \d and \s test Unicode categories, several times slower than a range.
_WORD_CHAR: Final = "A-Za-z0-9_"
_BLANK: Final = r" \t\n\r"
# The statement with its values out, as one fullmatch (the engine runs the bulk class in C): each character that
# may start a refused construct is taken only in the context where it is what the fast path reads.
_ACCEPTED: Final = re.compile(
    r"(?:[" + _BLANK + r"A-Za-z_(),.;*+]++"  # blanks, letters, the punctuation that is always a token of its own
    r"|[0-9](?<=[" + _WORD_CHAR + r"][0-9])"  # a digit inside a name (one starting a token is no plain value)
    r"|\x00(?<![" + _WORD_CHAR + r"]\x00)"  # a value, not glued to a word: E'..', N'..', q'..', _utf8'..'
    r"|\?(?![+0-9])"  # the ? placeholder, not ?+ nor ?1
    r"|(?<![" + _WORD_CHAR + r"])%s(?![" + _WORD_CHAR + r"])"  # the %s placeholder
    r"|!=|=(?![=>])|-(?![->])|/(?!\*)"  # not == => -> (nor a comment: -- /*)
    # not << >> <>= (two mends would apply), nor "< >", "< =", "> =" (which the mends would join)
    r"|<(?!<|>=|[" + _BLANK + r"]++[>=])|>(?!>|[" + _BLANK + r"]++=)"
    r")*+")
# Every character that is a token of its own, spaced so that str.split() finds the tokens (the guard has left no
# operator of two characters but <> != <= >=, each mended after the split).
_MENDED: Final = (("< >", "<>"), ("! =", "!="), ("< =", "<="), ("> =", ">="))
# Each keyword's token as output, with a mark of its class for the passes below (removed at the end):
# \x02 a keyword (an operator before a sign, no call after it), \x04 a keyword that is a function (its "(" glued on),
# \x03 a word that is neither name nor operator (NULL, END, %s), \x05 what this path does not take (TRUE, FALSE, CAST).
_REFUSED: Final = "\x05"
_TOKENS: Final[dict[str, str]] = {
    **{kw: kw + ("\x04" if kw in FUNCTION_KEYWORDS else "\x03" if kw in ("NULL", "END") else "\x02")
       for kw in KEYWORDS},
    "TRUE": _REFUSED, "FALSE": _REFUSED, "CAST": _REFUSED, "%S": "%s\x03"}
# A sign right after an operator, "(", ",", ";" or a keyword but NULL and END, before a value: dropped.
_SIGN: Final = re.compile(r"[-+](?<=[\x02\x04(,;=<>*/+-] [-+]) (?=\x00)")
# "(" after a name or a function keyword is glued on (a call, or a table's column list).
_GLUE: Final = re.compile(r" \((?<=[" + _WORD_CHAR + r"\x04] \()")
# An IN list: flat (collapsed by the rule), or a subquery (left as it is); any other is not for this path.
_IN_LIST: Final = re.compile(r"(?<![" + _WORD_CHAR + r"])IN \((?:([^()]*+)\)|(?=(?:SELECT|WITH|VALUES)(?![" +
                             _WORD_CHAR + r"])))")
_IN_OPEN: Final = re.compile(r"(?<![" + _WORD_CHAR + r"])IN \(")
_IN_SUBQUERY: Final = re.compile(r"(?<![" + _WORD_CHAR + r"])IN \((?:SELECT|WITH|VALUES)(?![" + _WORD_CHAR + "])")
_ROWS: Final = re.compile(r"(?<![" + _WORD_CHAR + r"])VALUES (\([^()]*+\)(?:, \([^()]*+\))*+)")
_SCALARS: Final = frozenset({"?", "NULL", "DEFAULT", "%s"})
_SUBQUERY: Final = re.compile(r"(?:SELECT|WITH|VALUES)(?![" + _WORD_CHAR + "])")

_c_fingerprint: Callable[[tuple[str | None, ...]], str | None] | None
try:
    # The module itself, not "from pipeline import": that would import the recording API (import contracts).
    from pipeline._fastfp import configure, fingerprint
except ImportError:  # not built (no C compiler at install): the Python passes below
    _c_fingerprint = None
else:
    configure(_TOKENS)  # the keyword table: normalise.KEYWORDS stays its one source
    _c_fingerprint = fingerprint


def fast_fingerprint(shape: tuple[str | None, ...]) -> str | None:
    """The fingerprint of the statement split into ``shape``, or None when the guard refuses it.

    The statement must hold no NUL character (it stands for the values here). In C (``pipeline/_fastfp.c``)
    where the extension is built, else ``python_fingerprint``.
    """
    if _c_fingerprint is None:
        return python_fingerprint(shape)
    result = _c_fingerprint(shape)
    if result is None or ("IN (" not in result and "VALUES (" not in result):
        return result
    return _lists(result)


def python_fingerprint(shape: tuple[str | None, ...]) -> str | None:
    """``fast_fingerprint`` in Python passes: the fallback where the C extension is not built."""
    text = "\x00".join(shape[::2])  # type: ignore[arg-type]  # the even items are the texts, never None
    if not _ACCEPTED.fullmatch(text):
        return None
    # Unrolled (a loop costs more here than the tests): the frequent characters first.
    if "," in text:
        text = text.replace(",", " , ")
    if "=" in text:
        text = text.replace("=", " = ")
    if "\x00" in text:
        text = text.replace("\x00", " \x00 ")
    if "(" in text:
        text = text.replace("(", " ( ").replace(")", " ) ")
    elif ")" in text:
        text = text.replace(")", " ) ")
    if "." in text:
        text = text.replace(".", " . ")
    if "?" in text:
        text = text.replace("?", " ? ")
    if "*" in text:
        text = text.replace("*", " * ")
    if "<" in text or ">" in text or "!" in text or ";" in text:
        text = text.replace("<", " < ").replace(">", " > ").replace("!", " ! ").replace(";", " ; ")
    if "-" in text or "+" in text or "/" in text:
        text = text.replace("-", " - ").replace("+", " + ").replace("/", " / ")
    # Keywords by their upper-case form, so any casing is one (as the normaliser has it); other tokens as written.
    result = " ".join(map(_TOKENS.get, text.upper().split(), text.split()))
    if _REFUSED in result or ", ," in result or ", )" in result or "( ," in result:
        return None  # TRUE, FALSE, CAST, or an empty list item
    if "<" in result or ">" in result or "!" in result:
        for spaced, mended in _MENDED:
            result = result.replace(spaced, mended)
    if "-" in result or "+" in result:
        # One pass, as the normaliser drops only the sign right before a value (in "- + 1" the "-" stays).
        if result[:1] in ("-", "+") and result[1:3] == " \x00":
            result = result[2:]
        result = _SIGN.sub("", result)
    if "\x00" in result and _AFTER_NAME.search(result):
        return None  # a name before a value: a typed literal (date '2024-01-01') when the value is a string
    if "(" in result:
        result = _GLUE.sub("(", result)
    # The normaliser's own spacing pass, a trailing ";" dropped (it drops the token), then the marks out.
    result = tighten(result)
    if result[-1:] == ";":
        result = result.rstrip(";")
    return _lists(result.replace("\x02", "").replace("\x03", "").replace("\x04", "").replace("\x00", "?"))


def _lists(result: str) -> str | None:
    """IN lists and VALUES rows collapsed; None for a list this path does not take."""
    if "IN (" in result:
        result, lists = _IN_LIST.subn(_in_list, result)
        if lists != len(_IN_OPEN.findall(result)):
            return None  # an IN list holding brackets that is no subquery: f(?), (?, ?) tuples
        # A bracket right inside a list holding a subquery would be a list too: not for this path.
        if ("((" in result or ", (" in result) and _IN_SUBQUERY.search(result):
            return None
    if "VALUES (" in result:
        return _values(result)
    return result


_AFTER_NAME: Final = re.compile(r"\x00(?<=[" + _WORD_CHAR + r"] \x00)")


def _collapse(items_text: str) -> str:
    """The normaliser's list rule on flat items: all lone values -> ``?+``; all the same -> the first."""
    items = items_text.split(", ")
    if not items_text or _SUBQUERY.match(items_text):
        return items_text
    if all(item in _SCALARS for item in items):
        return "?+"
    if len(items) > 1 and items.count(items[0]) == len(items):
        return items[0]
    return items_text


def _in_list(match: re.Match[str]) -> str:
    items = match.group(1)
    return match.group() if items is None else "IN (" + _collapse(items) + ")"


def _values(result: str) -> str | None:
    """Collapse each VALUES row, then drop a row equal to the one before it; None if a row is not flat."""
    position = 0
    parts: list[str] = []
    for match in _ROWS.finditer(result):
        rows: list[str] = []
        for row in match.group(1)[1:-1].split("), ("):
            row = "(" + _collapse(row) + ")"
            if not rows or rows[-1] != row:
                rows.append(row)
        parts.append(result[position:match.start()])
        parts.append("VALUES " + ", ".join(rows))
        position = match.end()
        if result.startswith((", (", " VALUES ("), position):
            # A row that is not flat; or rows right after these, which the normaliser compares with the last of
            # these across the keyword: not for this path.
            return None
    if result.count("VALUES (") != len(parts) // 2:  # a first row that is not flat
        return None
    parts.append(result[position:])
    return "".join(parts)
