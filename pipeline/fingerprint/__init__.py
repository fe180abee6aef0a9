"""SQL fingerprints: one stable text per statement shape, with every literal value removed, in every dialect.

Two executions of the same query that differ only in their values (``WHERE id = 7`` and ``WHERE id = 8``, an
``IN`` list of 3 or 300 ids, a ``VALUES`` batch of 1 or 100 rows) group under one fingerprint, and the
fingerprint never carries a value: it is stored and shown on the dashboard, where a password or an e-mail
address has no business being.

``fingerprint(sql, dialect)`` reads ``sql`` with the lexer of its dialect (``dialects.py``: strings, escapes,
comments, quoted identifiers and special literals as each database's documentation defines them) and
normalises the tokens (``normalise.py``), once per shape (``shapes.py``: the statement but for its values); a
shape of plain tokens only is read by a fast path of C-level string passes (``fast.py``) that gives the
normaliser's result byte for byte. With no dialect, or one not known here, it reads ``sql`` the safe
way: whatever could be a value in any dialect is one. The integrations name the dialect from the driver or
the SQLAlchemy engine; ``Monitor.track_query(..., dialect=...)`` takes it from the caller.

What remains, knowingly:
* a server mode that changes the lexer is not seen: MySQL's NO_BACKSLASH_ESCAPES (a string ending in ``\\``
  may then run on, as it would under the default mode) and ANSI_QUOTES (``"x"`` is then a name, read as a
  value here, which hides it but never leaks), PostgreSQL with standard_conforming_strings off (pass no
  dialect to get the safe reading);
* where a double-quoted token may be a string (SQLite, SQL Server, no dialect), a name outside the positions
  listed in ``normalise.py`` is shown as ``?``: safe, less readable;
* block comments nested deeper than 5 levels, and q-quotes with a delimiter outside printable ASCII, swallow
  the rest of the statement.
"""

from __future__ import annotations

from .cache import FingerprintCache, fingerprint_id
from .dialects import DIALECTS, SAFE, dialect_rules, resolve_dialect
from .shapes import fingerprint_by_shape

__all__ = ["DIALECTS", "FingerprintCache", "fingerprint", "fingerprint_id", "resolve_dialect"]


def fingerprint(sql: str, dialect: str | None = None) -> str:
    """Return the shape of ``sql`` with every literal replaced by ``?``.

    ``dialect`` is a family or driver name (``"postgresql"``, ``"mysql"``, ``"sqlite"``, ``"duckdb"``,
    ``"oracle"``, ``"mssql"``, ...); None or a name not known here reads ``sql`` the safe way. Never raises on a
    ``str``: malformed SQL still yields a deterministic fingerprint.
    """
    return fingerprint_by_shape(sql, SAFE if dialect is None else dialect_rules(dialect))
