"""How each SQL dialect spells its tokens: one compiled lexer per dialect family, and the names that reach it.

Every rule below comes from the database's own documentation of its lexical structure:
PostgreSQL "SQL Syntax: Lexical Structure" (4.1), MySQL "Literal Values", "Comments" and "Schema Object Names",
SQLite "SQL Language Expressions", "SQLite Keywords" and "Quirks" (section 8), DuckDB "Literal Types" and
"Comments", Oracle "Literals" (text literals and the q-quote), SQL Server "Constants" and "Delimited Identifiers".

* postgres: '' doubles a quote and a backslash is an ordinary character (standard_conforming_strings, on
  since 9.1); E'' escapes with backslashes; U&'', B'', X'', N''; $tag$...$tag$; "..." is a name; -- and
  nested /* */ comments; # is an operator (XOR, #>, #>>); $1 placeholders.
* duckdb: as postgres (E'', $$, X'' blobs, B'' bits, nested comments); $1, $name and ? placeholders.
* mysql: '' and "" strings, both with backslash escapes and doubled quotes; X'', B'', N'', 0x, 0b,
  _charset'' introducers; `x` is a name, and so is 1abc (a name may start with a digit); comments are #,
  "-- " (a dash dash followed by a space) and /* */ (not nested).
* sqlite: '' doubles a quote, no backslash escapes; X'' blobs; "..." is a name, or a string when no column
  has that name (SQLite's quirk 8); [x] and `x` are names; -- and /* */; ?NNN, :n, @n, $n placeholders.
* oracle: '' doubles a quote, no backslash escapes; N''; q'[...]', q'{...}', q'(...)', q'<...>' and q'X...X'
  with any other delimiter; 1.5f, 2d; "..." is a name; -- and /* */ (hints too); :1 and :name.
* mssql: '' doubles a quote, no backslash escapes; N''; 0x binaries; $5.00 money; "..." is a name unless
  QUOTED_IDENTIFIER is off (then a string); [x] is a name; #tmp tables; -- and nested /* */.

With no dialect known (``None``) every token that is a value in *any* dialect is a value: ``#`` starts a comment
(MySQL) and ``--`` always does; block comments nest (PostgreSQL, SQL Server); a string ends where it ends
whether or not backslashes escape, and a string whose end depends on that swallows the rest of the statement;
``$1`` and ``$5`` are values (SQL Server's money), q-quotes and dollar quotes are strings. ``"..."`` is then
read as SQLite does (see ``normalise``): a name where only a name can stand, a value anywhere else.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Final

__all__ = ["DIALECTS", "RUN_ELEMENTS", "Dialect", "dialect_rules", "resolve_dialect"]

# What "..." means: a quoted identifier, a string, or a name only where a name must stand (SQLite's fallback).
DQ_IDENT: Final = "ident"
DQ_STRING: Final = "string"
DQ_AMBIGUOUS: Final = "ambiguous"


@dataclass(frozen=True)
class Dialect:
    """The lexer of one dialect family and the few rules the normaliser needs beyond it."""

    name: str
    # findall gives the token texts.
    lexer: re.Pattern[str]
    # For a statement holding $tag$: the lexer that also reads dollar quotes; findall gives (token, tag).
    dollar_lexer: re.Pattern[str] | None
    # How a double-quoted token reads (DQ_IDENT, DQ_STRING or DQ_AMBIGUOUS).
    double_quote: str
    # MySQL: 1abc is an identifier (it may start with a digit unless it is all digits or a number).
    digit_identifiers: bool
    # $1 is a placeholder (PostgreSQL, DuckDB, SQLite); elsewhere (SQL Server money) it is a value.
    dollar_params: bool
    # The values a statement's shape stands for (shapes.py): split() gives the text between them, and for each
    # value "" (a string) or None (a number), never the value itself.
    literals: re.Pattern[str]
    # "#" starts a comment (MySQL, and the safe reading); in PostgreSQL it is an operator (XOR, #>, #>>).
    hash_comments: bool = False

    def lexer_for(self, sql: str) -> re.Pattern[str]:
        """The lexer for ``sql``: the one that also reads $tag$ quotes only when ``sql`` may hold one."""
        if self.dollar_lexer is not None and "$" in sql and DOLLAR_OPENER.search(sql):
            return self.dollar_lexer
        return self.lexer


# -- building blocks, each a regex alternative --------------------------------------------------------------
# A string's rule after its opening quote (the shapes' pattern reads the quote first), then the string.
_STD_BODY = r"(?:[^']++|'')*+(?:'|\Z)"  # '' doubles a quote; a backslash is an ordinary character
_BACKSLASH_BODY = r"(?:[^'\\]++|''|\\(?s:.))*+(?:'|\\?\Z)"  # backslash escapes the next character, too
# Both readings agree on where the string ends (no backslash before a quote), or the rest is one value.
_SAFE_BODY = r"(?:(?:[^'\\]++|''|\\[^'])*+'|(?s:.*))"
_STD = "'" + _STD_BODY
_BACKSLASH = "'" + _BACKSLASH_BODY
_SAFE = "'" + _SAFE_BODY
_DQ_STRING = r'"(?:[^"\\]++|""|\\(?s:.))*+(?:"|\\?\Z)'  # MySQL's "..." string
_DQ_IDENT = r'"(?:[^"]++|"")*+"|"(?s:.*)'
# A double-quoted token whose meaning depends on where it stands: the "." or "=" after it travels with it.
_DQ_AMBIGUOUS = r'"(?:[^"]++|"")*+"(?:\s*+(?:\.|=(?![=>~])))?|"(?s:.*)'
_BACKTICK = r"`(?:[^`]++|``)*+`|`(?s:.*)"
_BRACKET = r"\[(?:[^\]]++|\]\])*+\]|\[(?s:.*)"  # SQLite and SQL Server: [name]
_DOLLAR = r"\$((?:[^\W\d]\w*+)?)\$(?s:.*?)(?:\$\2\$|\Z)"  # group 2: the tag; unterminated swallows the rest
DOLLAR_OPENER: Final = re.compile(r"\$(?:[^\W\d]\w*+)?\$")  # a statement without one needs no dollar lexer
_LINE = r"--[^\n]*+"
_MYSQL_LINE = r"--(?=[\s\x00-\x1f]|\Z)[^\n]*+"  # MySQL: "--" starts a comment only before a space
_HASH = r"\#[^\n]*+"
_BLOCK = r"/\*(?s:.*?)(?:\*/|\Z)"  # ends at the first */


def _nested_block(depth: int) -> str:
    """Block comments that nest, exact up to ``depth`` levels; deeper or unterminated ones swallow the rest."""
    level = r"/\*(?:[^*/]++|\*(?!/)|/(?!\*))*+\*/"
    for _ in range(depth):
        level = r"/\*(?:[^*/]++|\*(?!/)|/(?!\*)|" + level + r")*+\*/"
    return level + r"|/\*(?s:.*)"


def _q_quote() -> str:
    """Oracle's q'X...X' (brackets pair up); a delimiter not listed swallows the rest."""
    pairs = [r"\[(?s:.*?)\]'", r"\{(?s:.*?)\}'", r"\((?s:.*?)\)'", r"<(?s:.*?)>'"]
    singles = [re.escape(c) + r"(?s:.*?)" + re.escape(c) + "'" for c in string.punctuation + string.ascii_letters
               + string.digits if c not in "[{(<'"]
    return r"[nN]?[qQ]'(?:" + "|".join([*pairs, *singles]) + r"|(?s:.*))"


_NUMBER = r"(?:\d[\w$]*+(?:\.\w*+)?|\.\d\w*+)(?:(?<=[eE])[+-]\d\w*+)?"  # 1, 1.5e-3, .5, 0x1F, 0b1, 1_000
_PLACEHOLDER = r"\?\+(?=\s*+[)\]])|\?\d*+|%s|%\([^)]{0,100}\)s|:[^\W\d]\w*+|@@?[^\W\d][\w$]*+"
_OPERATOR = (r"<=>|<>|!=|<=|>=|==|\|\|/?|\|/|->>?|@>|<@|&&|<<|>>|!~~?\*?|~~?\*?|:=|=>|::|!<|!>|"
             r"[(),;.\[\]{}]|\S")


_COMMON = r"[(),]|=(?![=>~])|\.(?!\d)"
# A word not followed by a quote (E'..', N'..', q'[..]', U&'..' are literals), nor by $ # @ (which some dialects
# allow inside names): the dialect's own alternatives read those. A lookahead before the word would cost a third
# of the lexer's time.
_ASCII_WORD = r"[A-Za-z_]\w*+(?![$#@'\"&])"
# A run: ASCII words and the plain punctuation , = . that every dialect reads alike, one token for the whole run
# (``SELECT id, name FROM users WHERE id =``). Each element is read exactly as the alternatives below would read
# it at that point; the normaliser splits a run it has not met before and remembers the ones that need no
# decision, so the skeleton an ORM repeats between its literals costs one match and one dict lookup.
_RUN_ELEMENT = _ASCII_WORD + r"|,|=(?![=>~])|\.(?!\d)"
RUN_ELEMENTS: Final = re.compile(r"[A-Za-z_]\w*+|[,=.]")  # the elements of a run, whitespace left out
_RUN = _ASCII_WORD + r"(?:\s*+(?:" + _RUN_ELEMENT + r"))*+"  # it starts with a word, as the normaliser expects


def _lexer(*alternatives: str) -> tuple[re.Pattern[str], re.Pattern[str] | None]:
    """The lexer of a dialect, and for one with dollar quotes a second one that also reads them.

    ``findall`` of the first returns the token texts; of the second, (token, tag) pairs, group 2 being the
    tag the closing quote must repeat. Most statements hold no ``$tag$``, and the first is a third faster.
    """
    # The regex engine tries alternatives in order, so the most frequent tokens go first: runs of ASCII words, then the
    # dialect's prefixed strings and its own words (non-ASCII, or with $ # @), then the common punctuation.
    alts = [_RUN, *alternatives[:2], _COMMON, *alternatives[2:]]

    def compiled(parts: list[str]) -> re.Pattern[str]:
        # Whitespace is skipped by a possessive prefix: without it the engine tries (and fails) every
        # alternative at each blank. The caller strips trailing blanks, which would otherwise be rescanned
        # from each of their positions.
        return re.compile(r"\s*+(" + "|".join(parts) + ")")

    if _DOLLAR not in alts:
        return compiled(alts), None
    return compiled([a for a in alts if a != _DOLLAR]), compiled(alts)


_WORD = r"[^\W\d][\w$]*+"


def _literals(string_body: str) -> re.Pattern[str]:
    """The strings and plain numbers of a dialect, each exactly as its lexer reads it (see shapes.py).

    A number counts only where it is a whole token that is a value in every dialect: digits, a fraction and an
    exponent, not glued to a name, a placeholder (``$1``, ``:1``, ``?1``) or another dot (``1.2.3``); ``0x1F``,
    ``1_000`` or MySQL's ``1abc`` stay in the shape as they are. The pattern opens with one character class so
    that the regex engine skips the text between values in C.
    """
    # ASCII digits only, and any non-ASCII character next to a number keeps it in the shape: a class of ranges is
    # tested several times faster than \d or \w (Unicode categories), and a number not split is only text.
    glued = r"[\w$#@.:?\x80-\U0010ffff]"
    exponent = r"(?:[eE][+-]?[0-9]++)?(?![\w$.\x80-\U0010ffff])".replace(r"\w", "A-Za-z0-9_")
    glued = glued.replace(r"\w", "A-Za-z0-9_")
    return re.compile(r"['0-9.](?:(?<=')" + string_body + r"()"
                      + r"|(?<=[0-9])(?<!" + glued + r"[0-9])[0-9]*+(?:\.[0-9]*+)?" + exponent
                      + r"|(?<=\.)(?<!" + glued + r"\.)[0-9]++" + exponent + ")")


_STD_LITERALS: Final = _literals(_STD_BODY)

DIALECTS: Final[dict[str, Dialect]] = {
    "postgres": Dialect("postgres", *_lexer(
        r"(?:[eE]" + _BACKSLASH + r"|(?:[nNbBxX]|[uU]&)" + _STD + ")",
        r'[uU]&"(?:[^"]++|"")*+"', _WORD, _STD, _NUMBER, _DQ_IDENT, _BACKTICK, _LINE, _nested_block(4), _DOLLAR,
        r"\$\d++|\?\||\?&|" + _PLACEHOLDER, r"\#>>?|\#-|" + _OPERATOR),
        DQ_IDENT, digit_identifiers=False, dollar_params=True, literals=_STD_LITERALS),
    "duckdb": Dialect("duckdb", *_lexer(
        r"(?:[eE]" + _BACKSLASH + r"|(?:[nNbBxX])" + _STD + ")", _WORD, _STD, _NUMBER, _DQ_IDENT, _BACKTICK,
        _LINE, _nested_block(4), _DOLLAR, r"\$\d++|\$[^\W\d]\w*+|" + _PLACEHOLDER, _OPERATOR),
        DQ_IDENT, digit_identifiers=False, dollar_params=True, literals=_STD_LITERALS),
    "mysql": Dialect("mysql", *_lexer(
        r"[nNbBxX]" + _BACKSLASH, _WORD, _BACKSLASH, _NUMBER, _DQ_STRING, _BACKTICK, _MYSQL_LINE, _HASH, _BLOCK,
        _PLACEHOLDER, _OPERATOR), DQ_STRING, digit_identifiers=True, dollar_params=False, hash_comments=True,
        literals=_literals(_BACKSLASH_BODY)),
    "sqlite": Dialect("sqlite", *_lexer(
        r"[xX]" + _STD, _WORD, _STD, _NUMBER, _DQ_AMBIGUOUS, _BACKTICK, _BRACKET, _LINE, _BLOCK,
        r"\$\d++|\$[^\W\d][\w$]*+|" + _PLACEHOLDER, _OPERATOR),
        DQ_AMBIGUOUS, digit_identifiers=False, dollar_params=True, literals=_STD_LITERALS),
    "oracle": Dialect("oracle", *_lexer(
        _q_quote(), r"[nN]" + _STD, r"[^\W\d][\w$#]*+", _STD, _NUMBER, _DQ_IDENT, _BACKTICK, _LINE, _BLOCK,
        r":\d++|" + _PLACEHOLDER, _OPERATOR), DQ_IDENT, digit_identifiers=False, dollar_params=False,
        literals=_STD_LITERALS),
    "mssql": Dialect("mssql", *_lexer(
        r"[nN]" + _STD, r"(?:[^\W\d]|\#\#?)[\w@$#]*+", _STD, r"\$[\d.]++|" + _NUMBER, _DQ_AMBIGUOUS,
        _BACKTICK, _BRACKET, _LINE, _nested_block(4), _PLACEHOLDER, _OPERATOR),
        DQ_AMBIGUOUS, digit_identifiers=False, dollar_params=False, literals=_STD_LITERALS),
}
SAFE: Final = Dialect("unknown", *_lexer(
    _q_quote(), r"(?:[eEnNbBxX]|[uU]&)(?:" + _SAFE + ")", _WORD, _SAFE, r"\$[\d.]++|" + _NUMBER,
    _DQ_AMBIGUOUS, _BACKTICK, _LINE, _HASH, _nested_block(4), _DOLLAR, r"\$[^\W\d]\w*+|" + _PLACEHOLDER, _OPERATOR),
    DQ_AMBIGUOUS, digit_identifiers=False, dollar_params=False, hash_comments=True, literals=_literals(_SAFE_BODY))

# The names a driver, SQLAlchemy or a user may give, each to its family.
_ALIASES: Final = {
    "postgres": "postgres", "postgresql": "postgres", "pg": "postgres", "psycopg": "postgres",
    "psycopg2": "postgres", "redshift": "postgres", "cockroachdb": "postgres",
    "duckdb": "duckdb",
    "mysql": "mysql", "mariadb": "mysql", "pymysql": "mysql", "mysqldb": "mysql",
    "sqlite": "sqlite", "sqlite3": "sqlite",
    "oracle": "oracle", "oracledb": "oracle", "cx_oracle": "oracle",
    "mssql": "mssql", "sqlserver": "mssql", "sql_server": "mssql", "tsql": "mssql", "pymssql": "mssql",
}


def resolve_dialect(name: str | None) -> str | None:
    """The family of a dialect name (``"postgresql"`` -> ``"postgres"``), or None for one not known here."""
    if not isinstance(name, str):  # None, or a wrong type handed to track_query: the safe reading
        return None
    return _ALIASES.get(name.strip().lower().replace("-", "_").replace(" ", "_"))


# Every alias as given and every family name straight to its rules: the lookup each fingerprint pays.
_RULES: Final[dict[str | None, Dialect]] = {None: SAFE, **{a: DIALECTS[f] for a, f in _ALIASES.items()}}


def dialect_rules(name: str | None) -> Dialect:
    """The rules for ``name``; an unknown or missing name gets the safe reading."""
    rules = _RULES.get(name) if name is None or isinstance(name, str) else SAFE
    if rules is None:
        family = resolve_dialect(name)
        rules = SAFE if family is None else DIALECTS[family]
    return rules
