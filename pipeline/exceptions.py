"""Unhandled exceptions of requests: what is kept of one (its signature, never a value), and how it is made.

On the request path ``capture`` keeps only what is cheap and holds no data: the exception's class, the code
object, line number and module name of each traceback frame (code objects live as long as their functions; no
frame is kept, so no local variable is), and the text of ``str(exc)``. On the flusher thread ``prepare`` turns
that into the stored columns (the ``exceptions`` table, sql/exceptions.sql):

* ``type``: the class, ``module.QualName`` (a builtin's bare name: ``KeyError``);
* ``module``, ``function``, ``line``: where it was raised, the innermost frame of the traceback that is
  application code. Frames of the standard library, of installed packages (site-packages, dist-packages) and of
  duckpulse itself are skipped, so a database error raised deep inside a driver is placed at the line of the app
  that called it, and errors group by the code that can be fixed; when every frame is library code, the innermost
  one is used;
* ``message``: ``scrub(str(exc))``, the message with every literal removed as ``pipeline.fingerprint`` removes them
  from SQL (quoted strings, numbers), plus what a message carries that SQL does not: double-quoted and
  back-quoted text, words holding a digit (ids, hashes), e-mail addresses, URLs and file paths. Words without a
  digit are the message's shape and stay;
* ``signature_id``: a 64-bit hash of the five above, what groups occurrences.

The raw message is held in memory only until the next flush (about a second) and is never written anywhere.
"""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Callable
from types import CodeType, TracebackType
from typing import Any

from .fingerprint import fingerprint, fingerprint_id

# (code, line, module name) of each traceback frame, outermost first.
Frames = tuple[tuple[CodeType, int, str], ...]
MAX_MESSAGE_CHARS = 1000  # longer messages are cut before scrubbing (an open quote then swallows the rest)
MAX_FRAMES = 200  # a deep recursion keeps its innermost frames
UNKNOWN = "?"

_CONTRACTION = re.compile(r"(?<=[A-Za-z])'(?=(?:s|t|d|m|ll|re|ve)\b)")
_APOSTROPHE = "\u02bc"  # a letter to Python's regular expressions, so "can't" stays one word through fingerprint()
_DATA = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|\b[a-zA-Z][\w+.-]*://\S+"  # URLs
    r"|(?<![\w/])(?:~|\.{1,2})?/[^\s'\"`]+"  # file paths
)
_QUOTED = re.compile(r'"(?:[^"]|"")*"|`(?:[^`]|``)*`')  # what fingerprint() keeps as quoted identifiers
# fingerprint() spaces SQL operators; a message reads better with its hyphens, colons and "!" where they were,
# and with one ? for what was one value (10.0.0.5:5432, a UUID).
_TIDY = ((re.compile(r"\?(?:[\s.:/-]*\?)+"), "?"), (re.compile(r"(?<=[A-Za-z]) - (?=[A-Za-z])"), "-"),
         (re.compile(r" (?=[:!%])"), ""))
_WORD = re.compile(r"[^\W\d][\w$]*|\w+")
_DIGIT = re.compile(r"\d")


def scrub(message: str) -> str:
    """A message with its literals removed, as SQL is fingerprinted (see the module docstring)."""
    text = _DATA.sub("?", message[:MAX_MESSAGE_CHARS])
    text = _CONTRACTION.sub(_APOSTROPHE, text)
    shape = _QUOTED.sub("?", fingerprint(text))
    shape = _WORD.sub(lambda m: UNKNOWN if _DIGIT.search(m[0]) else m[0], shape)
    for pattern, replacement in _TIDY:
        shape = pattern.sub(replacement, shape)
    return _restore_case(shape, text).replace(_APOSTROPHE, "'")


def _restore_case(shape: str, original: str) -> str:
    """Undo fingerprint()'s upper-casing of SQL keywords ("division BY zero"): each word takes the spelling it had
    in the original, found in order (the same letters, so nothing the original did not show comes back)."""
    words = [(m[0].lower(), m[0]) for m in _WORD.finditer(original)]
    position = 0

    def spelled(match: re.Match[str]) -> str:
        nonlocal position
        word = match[0].lower()
        for i in range(position, len(words)):
            if words[i][0] == word:
                position = i + 1
                return words[i][1]
        return match[0]

    return _WORD.sub(spelled, shape)


def capture(exc: BaseException) -> tuple[type[BaseException], Frames, str]:
    """What the request path keeps of an exception: its class, its traceback's frames, its message text."""
    frames = []
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        frames.append((frame.f_code, tb.tb_lineno, str(frame.f_globals.get("__name__", UNKNOWN))))
        tb = tb.tb_next
    try:
        message = str(exc)[:MAX_MESSAGE_CHARS]
    except Exception:  # a __str__ that raises: the type and the place still say a lot
        message = ""
    return type(exc), tuple(frames[-MAX_FRAMES:]), message


def _library_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    found.add(os.path.dirname(os.path.abspath(__file__)))  # duckpulse's own frames (middleware, wrappers)
    return tuple(sorted(os.path.join(os.path.abspath(p), "") for p in found))


_LIBRARY = _library_prefixes()
_is_library: dict[str, bool] = {}


def is_library(filename: str) -> bool:
    """Whether a code file is the standard library, an installed package or duckpulse (cached per file)."""
    known = _is_library.get(filename)
    if known is None:
        path = os.path.abspath(filename)
        known = (filename.startswith("<") or path.startswith(_LIBRARY) or "site-packages" in filename
                 or "dist-packages" in filename)
        if len(_is_library) < 10_000:
            _is_library[filename] = known
    return known


def raised_at(frames: Frames) -> tuple[str, str, int]:
    """(module, function, line) where an exception was raised: the innermost application frame (else the
    innermost frame; without a traceback, unknown)."""
    if not frames:
        return UNKNOWN, UNKNOWN, 0
    chosen = next((f for f in reversed(frames) if not is_library(f[0].co_filename)), frames[-1])
    code, line, module = chosen
    return module, code.co_qualname, line


def type_name(cls: type[BaseException]) -> str:
    """``module.QualName`` of an exception class; a builtin's bare name."""
    module = getattr(cls, "__module__", None)
    return cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"


def signature(kind: str, module: str, function: str, line: int, message: str) -> int:
    """The 64-bit id that groups occurrences of the same error."""
    return fingerprint_id("\n".join((kind, module, function, str(line), message)))


def prepare(columns: list[list[Any]]) -> list[list[Any]]:
    """The raw columns (ts, class, frames, message, route, request id) as the stored ones (ts, route, request id,
    type, module, function, line, message, signature id): the flusher thread's side of ``capture``."""
    ts, classes, frames, messages, routes, request_ids = columns
    kinds, modules, functions, lines, scrubbed, signatures = [], [], [], [], [], []
    for cls, stack, message in zip(classes, frames, messages, strict=True):
        kind = type_name(cls)
        module, function, line = raised_at(stack)
        text = scrub(message)
        kinds.append(kind)
        modules.append(module)
        functions.append(function)
        lines.append(line)
        scrubbed.append(text)
        signatures.append(signature(kind, module, function, line, text))
    return [ts, routes, request_ids, kinds, modules, functions, lines, scrubbed, signatures]


def record(buffer: Any, ts: float, exc: BaseException, route: str | None, request_id: int | None,
           reject: Callable[[str, str], None]) -> None:
    """``Monitor.track_exception``: append one exception's raw row (``capture``'s) to the buffer's raw list."""
    from .buffer import RAW_CAP  # here: buffer imports tables, which imports this module

    if not isinstance(exc, BaseException):
        reject("exception_not_exception", f"track_exception({exc!r:.100}): expected an exception instance, such "
                                          "as the one an `except Exception as exc:` block caught")
        return
    row = (ts, *capture(exc), route, request_id)
    raw = buffer.raw["exceptions"]
    if len(raw) < RAW_CAP:
        raw += row
    else:
        buffer.raw_full("exceptions", row)
