"""Bad input, fuzzed: the public recording API never raises into the caller, and every call is accounted for.

Hypothesis drives track_request, track_query, time_query, track_memory and counters / gauges / histograms (with
any names and labels) with arbitrary values: any floats, huge and odd integers, huge and unicode strings (lone
surrogates, NULs), None, bytes, containers. With ``strict=False`` nothing raises, and after a flush:

* every call is either a recorded row, a rejection counted by reason, or (sampling) counted as sampled out:
  ``recorded + sum(rejected) + sampled_out == calls``;
* ``recorded == flushed + sum(dropped) + pending``, and DuckDB holds exactly ``flushed`` metric rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Monitor
from pipeline.testing import FakeClock

METRIC_TABLES = ("requests", "queries", "points", "process_samples")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])

# -- values ---------------------------------------------------------------------------------------------------
odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40),  # lone surrogates
    st.sampled_from(["", " ", "\x00", "\ud800", "日本語/ルート", "'; DROP TABLE requests; --", "%s%s%n", "\n\r\t"]),
    st.integers(1_000, 200_000).map(lambda n: "é" * n),  # huge
)
junk = st.one_of(
    st.none(), st.booleans(), st.binary(max_size=8), st.just([1, 2]), st.just({"a": 1}), st.just(object()),
    st.just(math.nan), st.complex_numbers(),
)
numbers = st.one_of(
    st.floats(),  # every float: NaN, +-inf, subnormals, -0.0, 1e308
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -0.0, 1e-320, 1.7976931348623157e308, -1.0, 2**63, -(2**63) - 1]),
)
anything = st.one_of(numbers, odd_text, junk)
durations = st.one_of(numbers, junk, odd_text)
names = st.one_of(odd_text, junk)
label_sets = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(odd_text, st.integers(), st.none()), st.one_of(odd_text, numbers, st.none()),
                    max_size=5),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), min_size=33, max_size=40),  # too many labels
    junk,
)


# -- operations: each returns how many calls it made that must be accounted for -------------------------------
def _request(mon: Monitor, args: tuple[Any, ...]) -> int:
    route, method, status, duration, request_id, query_count = args
    mon.track_request(route, method, status, duration, request_id, query_count)
    return 1


def _query(mon: Monitor, args: tuple[Any, ...]) -> int:
    sql, duration, success, name = args
    mon.track_query(sql, duration, success, name=name)
    return 1


def _time_query(mon: Monitor, args: tuple[Any, ...]) -> int:
    name, sql, fails, as_decorator = args

    def body() -> None:
        if fails:
            raise KeyError("the app's own exception")

    try:
        if as_decorator:
            mon.time_query(name, sql)(body)()
        else:
            with mon.time_query(name, sql):
                body()
    except KeyError:
        assert fails  # the app's exception propagates; duckpulse adds none of its own
    return 1


def _memory(mon: Monitor, args: tuple[Any, ...]) -> int:
    mon.track_memory(full=bool(args[0]))
    return 1


def _instrument(mon: Monitor, args: tuple[Any, ...]) -> int:
    kind, name, labels, method, values = args
    before = sum(mon.stats()["rejected"].values())
    inst: Any = getattr(mon, kind)(name, labels)
    calls = sum(mon.stats()["rejected"].values()) - before  # a refused name or label set counts once itself
    for value in values:
        if method == "time" and hasattr(inst, "time"):
            with inst.time():
                pass
        elif hasattr(inst, method):
            getattr(inst, method)(value)
        else:
            continue
        calls += 1
    return calls


OPS: dict[str, tuple[Callable[[Monitor, tuple[Any, ...]], int], st.SearchStrategy[tuple[Any, ...]]]] = {
    "request": (_request, st.tuples(names, names, st.one_of(st.integers(-(2**40), 2**40), junk), durations,
                                    st.one_of(st.none(), st.integers(-(2**70), 2**70), odd_text),
                                    st.one_of(st.integers(-(2**40), 2**40), junk))),
    "query": (_query, st.tuples(st.one_of(odd_text, junk), durations, anything, st.one_of(st.none(), names))),
    "time_query": (_time_query, st.tuples(names, st.one_of(st.none(), odd_text, junk), st.booleans(),
                                          st.booleans())),
    "memory": (_memory, st.tuples(st.booleans())),
    "instrument": (_instrument, st.tuples(
        st.sampled_from(["counter", "gauge", "histogram"]), names, label_sets,
        st.sampled_from(["inc", "dec", "set", "observe", "time"]), st.lists(anything, max_size=4))),
}
operations = st.lists(st.one_of([st.tuples(st.just(k), strategy) for k, (_, strategy) in OPS.items()]),
                      max_size=25)


def _db_rows(mon: Monitor) -> int:
    assert mon.store is not None
    return sum(int(mon.store.scalar(f"SELECT count(*) FROM {t}")) for t in METRIC_TABLES)


def _check_accounting(mon: Monitor, calls: int) -> None:
    assert mon.flush() in (True, False)
    st_ = mon.stats()
    rejected = sum(st_["rejected"].values())
    assert st_["recorded"] + rejected + st_["sampled_out"] == calls, st_
    assert st_["recorded"] == st_["flushed"] + sum(st_["dropped"].values()) + st_["pending"], st_
    assert _db_rows(mon) == st_["flushed"]
    assert st_["flush_failures"] == 0, st_["last_flush_error"]


@pytest.fixture
def fuzz_monitor(tmp_path: Path) -> Iterator[Monitor]:
    """One owner for all of a test's examples: the counts are cumulative, and so is the check."""
    mon = Monitor(db_path=tmp_path / "fuzz.duckdb", jobs=False, clock=FakeClock(), memory_interval_seconds=None,
                  flush_interval_seconds=3600, max_series_per_metric=20, strict=False)
    yield mon
    mon.close()


def figure(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print a figure for RELIABILITY.md even when pytest captures output."""
    with capsys.disabled():
        print(f"\nFIGURE {text}")


def test_arbitrary_calls_never_raise_and_every_one_is_accounted_for(fuzz_monitor: Monitor,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Any sequence of recording calls with arbitrary arguments: no exception reaches the caller (except the
    app's own one inside time_query), each call is a row or a counted rejection, and DuckDB holds every
    flushed row."""
    calls = 0

    @settings(FUZZ, max_examples=300)
    @given(ops=operations)
    def run(ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        nonlocal calls
        for kind, args in ops:
            calls += OPS[kind][0](fuzz_monitor, args)
        _check_accounting(fuzz_monitor, calls)

    run()
    stats = fuzz_monitor.stats()
    assert stats["recorded"] > 0 and sum(stats["rejected"].values()) > 0  # both paths were exercised
    figure(capsys, f"fuzz: {calls} recording calls with arbitrary arguments, none raised; recorded "
                   f"{stats['recorded']}, rejected by reason {dict(sorted(stats['rejected'].items()))}, folded "
                   f"{stats['folded']}, lost 0")


def test_sampling_and_a_small_buffer_still_account_for_every_call(tmp_path: Path) -> None:
    """With sample_rate=0.5 and a buffer of 50 rows, requests are recorded, sampled out or dropped, each
    counted: recorded + rejected + sampled_out == calls and recorded == flushed + dropped + pending."""
    mon = Monitor(db_path=tmp_path / "s.duckdb", jobs=False, clock=FakeClock(), memory_interval_seconds=None,
                  flush_interval_seconds=3600, sample_rate=0.5, max_buffered=50)
    calls = 0

    good = st.tuples(st.sampled_from(["/a", "/b"]), st.just("GET"), st.integers(100, 599), st.floats(0, 1e4))
    bad = st.tuples(names, names, st.integers(100, 599), durations)

    @FUZZ
    @given(requests=st.lists(st.one_of(good, bad), max_size=120))
    def run(requests: list[tuple[Any, Any, int, Any]]) -> None:
        nonlocal calls
        for route, method, status, duration in requests:
            mon.track_request(route, method, status, duration)
            calls += 1
        _check_accounting(mon, calls)

    try:
        run()
        stats = mon.stats()
        assert stats["sampled_out"] > 0 and stats["recorded"] > 0
    finally:
        mon.close()


def test_a_million_label_sets_fold_into_one_overflow_series(tmp_path: Path) -> None:
    """1,000,000 distinct label sets on one counter with max_series_per_metric=100: 100 series plus one overflow
    series, each fold counted, memory bounded (the registry keeps 101 instruments), every increment stored."""
    n, cap = 1_000_000, 100
    with Monitor(db_path=tmp_path / "l.duckdb", jobs=False, clock=FakeClock(), memory_interval_seconds=None,
                 flush_interval_seconds=3600, max_series_per_metric=cap) as mon:
        counter = mon.counter
        for i in range(n):
            counter("logins", {"user": str(i)}).inc()
            if i % 200_000 == 199_999:
                assert mon.flush() is True
        assert mon.flush() is True
        stats = mon.stats()
        assert stats["folded"] == {"too_many_series": n - cap}
        assert len(mon._registry._instruments) == cap + 1  # white-box: the proof that memory stays bounded
        assert mon.store is not None
        got = mon.store.fetchall("SELECT count(DISTINCT s.series_id), count(*), sum(value), "
                                 "count(*) FILTER (WHERE s.labels LIKE '%__overflow__%') "
                                 "FROM points p JOIN series s USING (series_id)")
        assert got == [(cap + 1, n, float(n), n - cap)]
        assert (stats["recorded"], stats["flushed"], stats["rejected"]) == (n, n, {})


# -- what the fuzzing found, pinned down ----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["x", None, [1], 10**400, b"1"])
@pytest.mark.parametrize("method", ["inc", "dec"])
def test_gauge_inc_and_dec_with_a_bad_amount_are_counted_not_raised(fuzz_monitor: Monitor, method: str,
                                                                    value: object) -> None:
    """gauge.inc(x) / dec(x) with x not a number (or too large for a float) is rejected and counted, as
    gauge.set(x) is, instead of raising TypeError or OverflowError into the app."""
    gauge = fuzz_monitor.gauge("queue_depth")
    getattr(gauge, method)(value)
    gauge.inc()
    _check_accounting(fuzz_monitor, 2)
    assert fuzz_monitor.stats()["rejected"] == {"invalid_value": 1}


def test_a_metric_name_that_is_not_valid_unicode_is_refused_and_flushing_goes_on(fuzz_monitor: Monitor) -> None:
    """A name holding a lone surrogate (e.g. decoded with surrogateescape) cannot be stored as UTF-8: it is
    refused and counted. Before, it broke every later flush (and close) of the monitor."""
    fuzz_monitor.counter("bad\udcff name").inc()  # two calls to account for: the refused name, and inc()
    fuzz_monitor.counter("good").inc()
    fuzz_monitor.track_request("/a", "GET", 200, 1.0)
    _check_accounting(fuzz_monitor, 4)
    assert fuzz_monitor.stats()["rejected"] == {"invalid_name": 2}
    assert fuzz_monitor.flush() is True


@pytest.mark.parametrize(("call", "reason"), [
    (lambda m: m.track_request("/a", "GET", None, 1.0), "invalid_requests_row"),
    (lambda m: m.track_request("/a", "GET", 200, 1.0, None, None), "invalid_requests_row"),
    (lambda m: m.track_query("SELECT 1", 1.0, None), "invalid_queries_row"),
])
def test_a_missing_required_field_costs_its_row_not_every_later_flush(
        fuzz_monitor: Monitor, call: Callable[[Monitor], None], reason: str) -> None:
    """None where the table has NOT NULL (status, query_count, success) is refused with its row at compaction.
    Before, the row reached DuckDB, the NOT NULL constraint failed the whole batch, and every later flush
    failed with it until the buffer filled up and dropped everything."""
    call(fuzz_monitor)
    fuzz_monitor.track_request("/ok", "GET", 200, 1.0)
    _check_accounting(fuzz_monitor, 2)
    assert fuzz_monitor.stats()["rejected"] == {reason: 1}
    assert fuzz_monitor.stats()["flushed"] == 1


def test_no_literal_from_track_query_reaches_duckdb(fuzz_monitor: Monitor) -> None:
    """Through the whole pipeline (buffer, compaction, DuckDB), a literal in a tracked query never appears in
    any stored column of the queries table."""
    assert fuzz_monitor.store is not None
    store = fuzz_monitor.store

    @settings(FUZZ, max_examples=100)
    @given(literal=st.one_of(
        st.integers(10_000_000, 10**12).map(str),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._-", min_size=8,
                max_size=30).map(lambda s: "'Zq9" + s + "'"),
    ))
    def run(literal: str) -> None:
        for sql in (f"SELECT * FROM users WHERE email = {literal}",
                    f"UPDATE accounts SET token = {literal} WHERE id = {literal}",
                    f"SELECT * FROM t WHERE a IN ({literal}, {literal}) LIMIT {literal}"):
            fuzz_monitor.track_query(sql, 1.0)
        assert fuzz_monitor.flush() is True
        stored = store.fetchall("SELECT * FROM queries")
        store.fetchall("DELETE FROM queries")
        assert len(stored) == 3
        needle = literal.strip("'")
        assert not any(needle in str(value) for row in stored for value in row)

    run()
