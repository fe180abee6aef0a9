"""The host process's C allocator (glibc malloc), which an owner's DuckDB shares with the app it runs in.

An owner keeps a DuckDB database open inside the app: DuckDB's long-lived C++ allocations then live in the same
malloc arenas as the app's threads. Two things keep that from growing the app's memory (RELIABILITY.md, the soak):
fewer arenas, and giving freed pages back. Both are glibc functions; elsewhere (musl, macOS) they are skipped.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

# DuckDB's memory cap inside an owner (pipeline/settings.py says how it was chosen).
DEFAULT_MEMORY_LIMIT = "256MB"

# glibc gives a new thread its own malloc arena, up to 8 per core, and an arena keeps every page one of its
# long-lived allocations pins. Under a server that starts a thread per request, DuckDB's allocations spread over all
# of them: in the soak the app's malloc held ~156 MB free but resident and grew ~1 MB/min; with 2 arenas, 30-40 MB
# free. Python allocates under the GIL, so 2 arenas cost a Python app little contention.
ARENA_MAX = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def _libc_function(name: str) -> Any | None:
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):  # not glibc: no such function
        return None


_MALLOPT = _libc_function("mallopt")
_MALLOC_TRIM = _libc_function("malloc_trim")
if _MALLOC_TRIM is not None:
    _MALLOC_TRIM.argtypes, _MALLOC_TRIM.restype = [ctypes.c_size_t], ctypes.c_int
CAN_TRIM = _MALLOC_TRIM is not None


def limit_arenas() -> bool:
    """Cap glibc's malloc arenas at ARENA_MAX for threads that start from now on; True when set.

    Left alone when the environment chose already (MALLOC_ARENA_MAX, or glibc.malloc.arena_max in GLIBC_TUNABLES):
    that is how a deployment picks another value, 0 included (glibc's default).
    """
    if _MALLOPT is None or "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return bool(_MALLOPT(_M_ARENA_MAX, ARENA_MAX))


def trim() -> bool:
    """glibc's malloc_trim(0): give every arena's whole free pages back to the OS; False without glibc.

    glibc otherwise returns an arena's free memory only from its top: what DuckDB freed (an evicted cache, a closed
    instance) would stay resident under the allocations made after it.
    """
    return _MALLOC_TRIM is not None and _MALLOC_TRIM(0) >= 0
