"""The log-bucket sketch: its mapping, its ranks, its error bound, and the SQL macros that mirror it."""

from __future__ import annotations

import math
from collections.abc import Iterator

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import sketch, sqlfiles
from pipeline.store import Store
from pipeline.testing import memory_store

# Durations and sizes as they come: from a microsecond to days in ms, from a byte to terabytes.
samples_st = st.lists(st.floats(min_value=1e-3, max_value=1e12, allow_nan=False, allow_infinity=False),
                      min_size=1, max_size=300)
quantile_st = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def exact_nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[sketch.nearest_rank(len(ordered), q) - 1]


@pytest.fixture(scope="module")
def sql_store() -> Iterator[Store]:
    s = memory_store()
    yield s
    s.close()


def test_relative_error_bound_is_just_under_one_percent() -> None:
    """gamma = 1.02 bounds the relative error at (gamma-1)/(gamma+1), about 0.99 %."""
    assert pytest.approx(0.02 / 2.02) == sketch.RELATIVE_ERROR
    assert sketch.RELATIVE_ERROR < 0.01


@pytest.mark.parametrize("value", [1e-300, 1e-9, 0.001, 0.5, 1.0, 1.02, 3.0, 100.0, 12_345.678, 1e300])
def test_a_bin_reads_back_within_the_bound(value: float) -> None:
    """Every positive value's bin estimate is within the relative error bound of the value."""
    estimate = sketch.value_of(sketch.bin_of(value))
    assert abs(estimate - value) / value <= sketch.RELATIVE_ERROR * (1 + 1e-9)


def test_zero_and_negative_values_share_the_zero_bin() -> None:
    """Values <= 0 fall in one bin, below every other, that reads back as 0."""
    assert sketch.bin_of(0.0) == sketch.bin_of(-5.0) == sketch.bin_of(-math.inf) == sketch.ZERO_BIN
    assert sketch.bin_of(5e-324) > sketch.ZERO_BIN
    assert sketch.value_of(sketch.ZERO_BIN) == 0.0


def test_infinity_and_nan_share_the_top_bin() -> None:
    """+inf and NaN land above every finite value's bin and read back as +inf."""
    assert sketch.bin_of(math.inf) == sketch.bin_of(math.nan) == sketch.INF_BIN
    assert sketch.bin_of(1.7e308) < sketch.INF_BIN
    assert sketch.value_of(sketch.INF_BIN) == math.inf


def test_sketches_merge_bin_by_bin() -> None:
    """Merging the sketches of two halves gives the sketch of the whole."""
    a, b = [1.0, 2.0, 2.5, 100.0], [2.0, 7.0, 0.0]
    assert sketch.merge(sketch.sketch(a), sketch.sketch(b)) == sketch.sketch(a + b)


def test_nearest_rank_uses_the_quantiles_decimal_value() -> None:
    """0.07 of 100 values is the 7th although 0.07 * 100 is 7.000000000000001 in binary."""
    assert sketch.nearest_rank(100, 0.07) == 7
    assert sketch.nearest_rank(25, 0.56) == 14
    assert sketch.nearest_rank(10, 0.0) == 1
    assert sketch.nearest_rank(10, 1.0) == 10
    assert sketch.nearest_rank(20, 0.95) == 19


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_quantiles_outside_zero_one_are_refused(q: float) -> None:
    """A quantile outside [0, 1] raises ValueError."""
    with pytest.raises(ValueError, match="outside"):
        sketch.nearest_rank(10, q)
    with pytest.raises(ValueError, match="outside"):
        sketch.quantile({1: 1}, q)


def test_nearest_rank_needs_values() -> None:
    """Ranking among zero values is an error."""
    with pytest.raises(ValueError, match="at least one"):
        sketch.nearest_rank(0, 0.5)


def test_an_empty_sketch_has_no_quantile() -> None:
    """The quantile of an empty sketch is None."""
    assert sketch.quantile({}, 0.5) is None
    assert sketch.quantile({3: 0}, 0.5, linear=True) is None


def test_quantile_fraction_is_exact() -> None:
    """Quantiles become exact fractions of their shortest decimal form."""
    assert sketch.quantile_fraction(0.95) == (19, 20)
    assert sketch.quantile_fraction(0.999) == (999, 1000)


@given(n=st.integers(min_value=1, max_value=2000), q=quantile_st)
@settings(max_examples=60, deadline=None)
def test_nearest_rank_matches_duckdbs_quantile_disc(sql_store: Store, n: int, q: float) -> None:
    """For any count and quantile, nearest_rank picks the row DuckDB's quantile_disc picks."""
    picked = sql_store.scalar("SELECT quantile_disc(x, $q) FROM range(1, $n + 1) t(x)", {"q": q, "n": n})
    assert picked == sketch.nearest_rank(n, q)


@given(samples=samples_st, q=quantile_st)
@settings(max_examples=300, deadline=None)
def test_sketch_percentile_is_within_one_percent_of_exact_nearest_rank(samples: list[float], q: float) -> None:
    """For any samples and quantile, the sketch's answer is within 1 % of the exact nearest-rank percentile."""
    exact = exact_nearest_rank(samples, q)
    estimate = sketch.quantile(sketch.sketch(samples), q)
    assert estimate is not None
    assert abs(estimate - exact) <= 0.01 * exact


@given(samples=st.lists(st.floats(min_value=-1e6, max_value=1e12, allow_nan=False), min_size=1, max_size=200))
@settings(max_examples=200, deadline=None)
def test_sketch_percentiles_are_ordered(samples: list[float]) -> None:
    """For any samples (zero and negative ones included), p50 <= p95 <= p99 <= max estimate."""
    bins = sketch.sketch(samples)
    p50, p95, p99, p100 = (sketch.quantile(bins, q) for q in (0.5, 0.95, 0.99, 1.0))
    assert p50 is not None and p95 is not None and p99 is not None and p100 is not None
    assert p50 <= p95 <= p99 <= p100


@given(samples=samples_st, q=quantile_st)
@settings(max_examples=150, deadline=None)
def test_linear_sketch_percentile_is_within_one_percent_of_quantile_cont(
        sql_store: Store, samples: list[float], q: float) -> None:
    """Interpolated between two ranks, the sketch stays within 1 % of DuckDB's quantile_cont."""
    exact = sql_store.scalar("SELECT quantile_cont(x, $q) FROM (SELECT unnest($v) AS x)", {"q": q, "v": samples})
    estimate = sketch.quantile(sketch.sketch(samples), q, linear=True)
    assert estimate is not None
    assert abs(estimate - exact) <= 0.01 * exact


@pytest.mark.parametrize("macros", ["store", "history"])
def test_sql_macros_map_like_the_python_functions(sql_store: Store, macros: str) -> None:
    """duckpulse_sketch_bin / _value in the database and in the history connection agree with sketch.py."""
    values = [0.0, -3.0, 1e-300, 5e-324, 1e-9, 0.001, 0.5, 1.0, 1.02, 1.0404, 2.0, 3.14159, 99.9, 100.0,
              1234.5, 1e6, 1e300, 1.7e308, math.inf, -math.inf, math.nan]
    values += [1.02**k for k in range(-50, 50)] + [1.02**k * (1 + 1e-12) for k in range(-50, 50)]
    if macros == "store":
        con = sql_store.reader()
    else:
        con = duckdb.connect()
        con.execute(sqlfiles.query("history.sql", "history-sketch-macros"))
    rows = con.execute("SELECT v, duckpulse_sketch_bin(v) AS b, duckpulse_sketch_value(duckpulse_sketch_bin(v)) "
                       "FROM (SELECT unnest($v) AS v)", {"v": values}).fetchall()
    assert len(rows) == len(values)
    for v, b, estimate in rows:
        assert b == sketch.bin_of(v), v
        expected = sketch.value_of(b)
        assert estimate == pytest.approx(expected, rel=1e-12) or estimate == expected
