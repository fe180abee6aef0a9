"""Fingerprints remembered per statement, and the stable 64-bit id of a fingerprint."""

from __future__ import annotations

import hashlib
import threading

from .dialects import dialect_rules
from .shapes import fingerprint_by_shape

__all__ = ["FingerprintCache", "fingerprint_id"]


def fingerprint_id(fp: str) -> int:
    """Return a signed 64-bit id for a fingerprint, identical in every process and Python run.

    blake2b rather than ``hash()``, which is salted per process; signed so it fits a BIGINT column.
    """
    # surrogatepass: a lone surrogate from a badly decoded driver string must not raise here.
    digest = hashlib.blake2b(fp.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class FingerprintCache:
    """A bounded ``(sql, dialect) -> fingerprint`` map, so a repeated statement costs one dict lookup.

    Applications issue a few hundred distinct statements over and over; a cache of the most recent ``maxsize``
    statements turns fingerprinting into a dict hit. When full, the oldest inserted entry is evicted (FIFO, not
    LRU: tracking recency would put a write on the hit path). Entries keep the statement text alive, so memory
    is bounded by ``maxsize`` statements, not bytes. A statement without a dialect is keyed by its text alone,
    so the common case builds no key tuple.

    Hits take no lock: a dict read is atomic. Misses take a lock only to insert and evict, because iterating a
    dict to find its oldest key while another thread inserts would raise.
    """

    __slots__ = ("_data", "_lock", "_maxsize", "evictions")

    def __init__(self, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError(
                f"FingerprintCache maxsize must be at least 1, got {maxsize}; "
                "pass the number of distinct statements to remember, e.g. 4096."
            )
        self._maxsize = maxsize
        self._data: dict[object, str] = {}
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

    def get(self, sql: str, dialect: str | None = None) -> str:
        """Return ``fingerprint(sql, dialect)``, computing it only on the first sighting of the pair."""
        key: object = sql if dialect is None else (sql, dialect)
        fp = self._data.get(key)
        if fp is not None:
            return fp
        fp = fingerprint_by_shape(sql, dialect_rules(dialect))
        with self._lock:
            data = self._data
            if key not in data:
                while len(data) >= self._maxsize:
                    del data[next(iter(data))]
                    self.evictions += 1
                data[key] = fp
        return fp

    def clear(self) -> None:
        """Forget every cached statement."""
        with self._lock:
            self._data.clear()
