"""The host process's C allocators: glibc malloc, which an owner's DuckDB shares with the app it runs in, and the
jemalloc DuckDB's wheel bundles for its own buffers.

An owner keeps a DuckDB database open inside the app: DuckDB's long-lived C++ allocations then live in the same
malloc arenas as the app's threads. Two things keep that from growing the app's memory (RELIABILITY.md, the soak):
fewer arenas, and giving freed pages back. Both are glibc functions; elsewhere (musl, macOS) they are skipped.
DuckDB's table blocks and query buffers come from its jemalloc instead, which keeps freed pages resident ("dirty")
for about a second before it purges them: ``purge_duckdb`` gives them back at once, after each flush.
"""

from __future__ import annotations

import ctypes
import importlib
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


# jemalloc's "all arenas" index (MALLCTL_ARENAS_ALL in jemalloc.h), for "arena.<i>.purge".
_JE_ALL_ARENAS_PURGE = b"arena.4096.purge"
_je_mallctl: Any = None  # looked up at the first purge: DuckDB is loaded by then (never in a producer)


def _duckdb_mallctl() -> Any | None:
    """The ``mallctl`` of the jemalloc linked into DuckDB's extension module, or None (no such symbol: DuckDB built
    without jemalloc, e.g. on macOS or musl)."""
    global _je_mallctl
    if _je_mallctl is None:
        function: Any
        try:
            compiled = importlib.import_module("_duckdb")  # DuckDB's extension module, loaded by the store that asks
            function = ctypes.CDLL(compiled.__file__).duckdb_je_mallctl
        except (ImportError, OSError, AttributeError, TypeError):
            function = False
        else:
            function.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            function.restype = ctypes.c_int
        _je_mallctl = function
    return _je_mallctl or None


def can_purge_duckdb() -> bool:
    """Whether DuckDB's allocator is a jemalloc that ``purge_duckdb`` reaches (it imports DuckDB: owners only)."""
    return _duckdb_mallctl() is not None


def purge_duckdb() -> bool:
    """Give the pages DuckDB's jemalloc freed but keeps resident back to the OS now (every arena); False when DuckDB
    has no jemalloc. Measured after a flush of 100,000 requests: 4-9 MB of RSS, in a few microseconds when there
    is little to purge (benchmarks/bench_footprint.py)."""
    mallctl = _duckdb_mallctl()
    return mallctl is not None and mallctl(_JE_ALL_ARENAS_PURGE, None, None, None, 0) == 0


def trim() -> bool:
    """glibc's malloc_trim(0): give every arena's whole free pages back to the OS; False without glibc.

    glibc otherwise returns an arena's free memory only from its top: what DuckDB freed (an evicted cache, a closed
    instance) would stay resident under the allocations made after it.
    """
    return _MALLOC_TRIM is not None and _MALLOC_TRIM(0) >= 0
