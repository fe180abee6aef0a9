"""Named SQL blocks loaded from the package's ``sql/*.sql`` files.

A file holds blocks that start with ``-- name: some-name`` followed by a one-line ``--`` comment saying what
the block does (aiosql's convention). Python composes nothing but parameters: callers look blocks up by name.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from .errors import SqlFileError

_NAME = re.compile(r"^--\s*name:\s*(?P<name>[a-z0-9][a-z0-9_-]*)\s*$")


def parse(text: str, filename: str) -> dict[str, str]:
    """Split a file's text into its named blocks; a malformed file raises SqlFileError naming file:line."""
    blocks: dict[str, str] = {}
    name: str | None = None
    start_line = 0
    body: list[str] = []

    def close() -> None:
        if name is None:
            return
        sql = "\n".join(line for line in body if not line.lstrip().startswith("--")).strip()
        if not sql:
            raise SqlFileError(f"{filename}:{start_line}: block {name!r} has no SQL under its name line")
        blocks[name] = sql

    for number, line in enumerate(text.splitlines(), start=1):
        match = _NAME.match(line)
        if match:
            close()
            name, start_line, body = match["name"], number, []
            if name in blocks:
                raise SqlFileError(f"{filename}:{number}: block {name!r} is defined twice")
        elif line.lstrip().startswith("-- name"):
            raise SqlFileError(f"{filename}:{number}: malformed name line {line!r}; "
                               "write '-- name: lower-case-name'")
        elif name is not None:
            body.append(line)
    close()
    return blocks


def names() -> list[str]:
    """The .sql files shipped in the package, sorted."""
    folder = resources.files("pipeline.sql")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))


@functools.cache
def load(filename: str) -> dict[str, str]:
    """The named blocks of ``sql/<filename>``, a resource of the package ``pipeline.sql`` (never read from the CWD)."""
    text = resources.files("pipeline.sql").joinpath(filename).read_text(encoding="utf-8")
    return parse(text, f"sql/{filename}")


def query(filename: str, name: str) -> str:
    """One named block; an unknown name raises SqlFileError listing the known ones."""
    blocks = load(filename)
    try:
        return blocks[name]
    except KeyError:
        raise SqlFileError(f"sql/{filename} has no block named {name!r}; it has: {', '.join(blocks)}") from None


def quote_identifier(name: str) -> str:
    """Quote an SQL identifier; the one place identifiers are put into SQL text."""
    return '"' + name.replace('"', '""') + '"'
