"""Reading a TOML document with a bound on its nesting (duckpulse.toml, rules files).

Python's ``tomllib`` recurses once per nested array or inline table: a few hundred levels raise
``RecursionError``, which said nothing about the file. No duckpulse setting nests deeper than a few levels, so
anything deeper than MAX_DEPTH is refused, with the line where it starts.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

MAX_DEPTH = 32
_OPENERS = re.compile(r"[\[{]")


class TomlError(ValueError):
    """Not valid TOML, or nested too deeply; ``line`` is where (1-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def loads(text: str) -> dict[str, Any]:
    """The document ``text`` holds; TomlError (with its line) if it is not TOML or nests deeper than MAX_DEPTH."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        raise TomlError(str(exc), int(found[1]) if found else 1) from None
    except RecursionError:
        raise TomlError(f"values nested deeper than {MAX_DEPTH} levels (arrays or inline tables within each "
                        "other); no duckpulse setting nests more than a few", _deep_line(text)) from None
    if _depth(data) > MAX_DEPTH:
        raise TomlError(f"values nested deeper than {MAX_DEPTH} levels (arrays or tables within each other); no "
                        "duckpulse setting nests more than a few", _deep_line(text))
    return data


def _depth(value: Any) -> int:
    """How deeply ``value`` nests, walked without recursion (so a deep document cannot overflow here either)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _deep_line(text: str) -> int:
    """The first line holding many openers: where the deep nesting most likely is."""
    for number, line in enumerate(text.splitlines(), 1):
        if len(_OPENERS.findall(line)) > MAX_DEPTH // 2:
            return number
    return 1
