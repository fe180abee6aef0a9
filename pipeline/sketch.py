"""The log-bucket mapping behind every mergeable percentile (DDSketch's, with gamma = 1.02).

A positive value ``v`` falls in bin ``ceil(ln v / ln gamma)``, the interval ``(gamma^(b-1), gamma^b]``; a bin is
read back as ``2 * gamma^b / (gamma + 1)``, the point of that interval with the same relative distance to both
ends, so an estimate is never further than ``(gamma - 1) / (gamma + 1)`` (0.99 %) from any value of its bin.
Counts per bin add up, so per-minute sketches merge into hours and hours into months with ``SUM(count) GROUP BY
bin``. Values <= 0 share one zero bin (read back as 0): durations are never negative, and a histogram that
records negative values gets exact percentiles from raw rows only.

The same mapping runs inside DuckDB as two macros created by ``migration-2`` (sql/rollup.sql) and, for the
in-memory history connection, by sql/history.sql: ``duckpulse_sketch_bin(v)`` and ``duckpulse_sketch_value(b)``.
The tests hold them to the functions below.

Ranks follow DuckDB's ``quantile_disc``: the nearest rank ``ceil(q * n)`` computed on the quantile's shortest
decimal form (0.07 of 100 values is the 7th, although ``0.07 * 100`` is 7.000000000000001 in binary), so the
sketch's answer is always the estimate of the very value the exact query returns.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from fractions import Fraction

GAMMA = 1.02
LN_GAMMA = math.log(GAMMA)
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)  # 0.0099...: the bound every sketch percentile carries
ZERO_BIN = -40_000  # below the bin of the smallest positive double (-37,593), so it sorts first
INF_BIN = 40_000  # above the bin of the largest finite double (35,843): +inf and NaN land here

Bins = Mapping[int, int]


def bin_of(value: float) -> int:
    """The bin of one value: ``ceil(ln v / ln gamma)``, ZERO_BIN for v <= 0, INF_BIN for +inf or NaN."""
    if value > 0:
        if math.isfinite(value):
            return math.ceil(math.log(value) / LN_GAMMA)
        return INF_BIN
    if value != value:  # NaN compares false to everything; DuckDB sorts it above +inf, and so do we
        return INF_BIN
    return ZERO_BIN


def value_of(bin_: int) -> float:
    """The estimate a bin stands for: ``2 * gamma^b / (gamma + 1)``; 0 for the zero bin, inf for INF_BIN."""
    if bin_ <= ZERO_BIN:
        return 0.0
    if bin_ >= INF_BIN:
        return math.inf
    return 2.0 * GAMMA**bin_ / (GAMMA + 1.0)


def sketch(values: Iterable[float]) -> Counter[int]:
    """Count values per bin."""
    return Counter(bin_of(v) for v in values)


def merge(*sketches: Bins) -> Counter[int]:
    """Add sketches bin by bin (what ``SUM(count) GROUP BY bin`` does in SQL)."""
    total: Counter[int] = Counter()
    for s in sketches:
        total.update(s)
    return total


def _fraction(q: float) -> Fraction:
    if not 0.0 <= q <= 1.0:  # also refuses NaN
        raise ValueError(f"quantile {q!r} is outside [0, 1]")
    return Fraction(repr(float(q)))


def nearest_rank(n: int, q: float) -> int:
    """The 1-based rank ``quantile_disc`` picks among n sorted values: ``max(1, ceil(q * n))``, exactly."""
    if n < 1:
        raise ValueError(f"nearest_rank needs at least one value, got n={n}")
    return max(1, math.ceil(n * _fraction(q)))


def quantile_fraction(q: float) -> tuple[int, int]:
    """``q`` as (numerator, denominator) of its shortest decimal form, for exact ranks in SQL."""
    f = _fraction(q)
    return f.numerator, f.denominator


def _value_at_rank(ordered: list[tuple[int, int]], rank: int) -> float:
    cumulative = 0
    for bin_, count in ordered:
        cumulative += count
        if cumulative >= rank:
            return value_of(bin_)
    raise ValueError(f"rank {rank} is beyond the sketch's {cumulative} values")


def quantile(bins: Bins, q: float, *, linear: bool = False) -> float | None:
    """The q-quantile of a sketch, None when it is empty.

    Nearest rank by default (``quantile_disc``); ``linear=True`` interpolates between the two ranks around
    ``(n - 1) * q`` as ``quantile_cont`` does, each read from its bin.
    """
    ordered = sorted((b, c) for b, c in bins.items() if c > 0)
    n = sum(c for _, c in ordered)
    if n == 0:
        _fraction(q)
        return None
    if not linear:
        return _value_at_rank(ordered, nearest_rank(n, q))
    _fraction(q)
    position = (n - 1) * q
    low = math.floor(position)
    lo = _value_at_rank(ordered, low + 1)
    hi = _value_at_rank(ordered, math.ceil(position) + 1)
    return lo + (hi - lo) * (position - low)
