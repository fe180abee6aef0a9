"""The C recorder of track_request (pipeline/_record.c) against the pure-Python path it stands in for.

Both paths run here on the same calls: the C one (bound where the clock is the system's and every request is
recorded) and the Python one, forced by hiding the extension as if it had not been compiled. They must store the
same rows and refuse, fold and count the same ones, with the same messages.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline import InvalidMetricError, Monitor
from pipeline import buffer as buffer_module
from pipeline.buffer import RECORDER_MAX_ROWS, Buffer
from pipeline.testing import FakeClock

_record = pytest.importorskip("pipeline._record", reason="the C recorder is built by `pip install -e .`")
NOW = time.time()
ROUTE = "/users/<id>"

# (args, kwargs) of track_request: accepted, refused at the call, refused or altered at compaction.
CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((ROUTE, "GET", 200, 12.5), {}),
    ((ROUTE, "GET", 200, 12), {}),  # an int duration
    ((), {"route": "/kw", "method": "POST", "status": 201, "duration_ms": 3.5, "request_id": 7, "query_count": 2}),
    ((ROUTE, "GET", 200, 1.0, 2**40, 3), {}),
    ((ROUTE, "GET", 200, 1.0), {"query_count": 4}),
    ((ROUTE, "GET", True, 1.0), {}),  # a bool status: the Python path's (stored as 1)
    ((ROUTE, "GET", 200, Decimal("2.5")), {}),
    ((str.__new__(type("Route", (str,), {}), "/subclass"), "GET", 200, 1.0), {}),
    (("/ts", "GET", 200, 1.0, None, 0, NOW - 60.0), {}),
    (("/ts-int", "GET", 200, 1.0, None, 0, int(NOW) - 60), {}),
    (("r" * 600, "GET", 200, 1.0), {}),  # cut to 500 characters, counted in folded
    ((ROUTE, "G" * 30, 200, 1.0), {}),  # cut to 20
    # refused when called
    ((ROUTE, "GET", 200, -1.0), {}),
    ((ROUTE, "GET", 200, float("nan")), {}),
    ((ROUTE, "GET", 200, float("inf")), {}),
    ((ROUTE, "GET", 200, "12"), {}),
    (("/ts", "GET", 200, 1.0, None, 0, 5.0), {}),
    (("/ts", "GET", 200, 1.0, None, 0, NOW + 10**6), {}),
    # refused at compaction, one row each
    (("", "GET", 200, 1.0), {}),
    ((None, "GET", 200, 1.0), {}),
    (("/\ud800", "GET", 200, 1.0), {}),
    ((ROUTE, "GET", 70_000, 1.0), {}),
    ((ROUTE, "GET", "200", 1.0), {}),
    ((ROUTE, "GET", 200, 1.0, 2**63), {}),
    ((ROUTE, "GET", 200, 1.0, None, 2**31), {}),
]


def record_all(tmp_path: Path, **options: Any) -> tuple[list[tuple[Any, ...]], dict[str, Any], bool]:
    """Every call of CALLS (6 distinct routes stored), then 300 routes beyond a cap of 100; (rows stored, stats,
    whether the C recorder recorded)."""
    tmp_path.mkdir()
    with Monitor(db_path=tmp_path / "m.duckdb", flush_interval_seconds=3600, max_routes=100, jobs=False,
                 memory_interval_seconds=None, **options) as mon:
        used_c = mon._buffer.recorder is not None
        for args, kwargs in CALLS:
            mon.track_request(*args, **kwargs)
        # Flushed before the cap is reached: which of a flush's new routes are admitted follows the string hash
        # seed, so only routes recorded once each cross it (then the count folded is the same whichever they are).
        assert mon.flush()
        for i in range(300):
            mon.track_request(f"/many/{i}", "GET", 200, 1.0)  # a new str object each time
        assert mon.flush()
        stats = mon.stats()
        assert mon.store is not None
        rows = mon.store.fetchall(
            "SELECT route, method, status, duration_ms, request_id, query_count, "
            "CASE WHEN route LIKE '/ts%' THEN round(epoch(ts)) END FROM requests ORDER BY ALL")
    return rows, stats, used_c


@pytest.fixture(params=["c", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which recorder records: the C one, or the pure-Python path (the extension hidden, as if not built)."""
    if request.param == "python":
        monkeypatch.setattr(buffer_module, "Recorder", None)
    return str(request.param)


def test_the_c_recorder_is_bound_only_where_its_rows_are_the_python_paths(tmp_path: Path) -> None:
    """The system clock and sample_rate 1 get the C recorder; a fake clock or sampling keep the Python method."""
    with Monitor(spool_dir=tmp_path / "a") as mon:
        recorder = mon._buffer.recorder
        assert isinstance(recorder, _record.Recorder)
        assert mon.track_request.__self__ is recorder  # type: ignore[attr-defined]
        assert 0 < recorder.resolution_seconds <= 0.01 / 2
    with Monitor(spool_dir=tmp_path / "b", clock=FakeClock()) as mon:
        assert mon._buffer.recorder is None
        assert mon.track_request.__func__ is Monitor.track_request  # type: ignore[attr-defined]
    with Monitor(spool_dir=tmp_path / "c", sample_rate=0.5) as mon:
        assert mon._buffer.recorder is None
    with Monitor(spool_dir=tmp_path / "d", timestamp_resolution_seconds=0) as mon:  # exact: the precise clock
        assert mon._buffer.recorder is not None and mon._buffer.recorder.resolution_seconds < 1e-6


def test_without_the_extension_track_request_is_the_python_method(tmp_path: Path, path: str) -> None:
    with Monitor(spool_dir=tmp_path / "s") as mon:
        assert (mon._buffer.recorder is None) == (path == "python")
        mon.track_request(ROUTE, "GET", 200, 1.0)
        assert mon.stats()["recorded"] == 1


def test_both_paths_store_refuse_and_fold_the_same_rows(tmp_path: Path) -> None:
    """Same rows stored, same rejections and folds by reason, on the C path and the forced Python path."""
    c_rows, c_stats, c_used = record_all(tmp_path / "c")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(buffer_module, "Recorder", None)
        py_rows, py_stats, py_used = record_all(tmp_path / "py")
    assert c_used and not py_used
    assert c_rows == py_rows
    for key in ("recorded", "flushed", "pending", "dropped", "rejected", "folded"):
        assert c_stats[key] == py_stats[key], key
    # And what they agree on is right: 12 good calls and 300 routes stored, 6 refused when called, 7 at compaction
    assert c_stats["recorded"] == c_stats["flushed"] == len(c_rows) == 12 + 300
    assert c_stats["rejected"] == {"negative_duration": 1, "nan_duration": 1, "infinite_duration": 1,
                                   "duration_not_number": 1, "ts_too_old": 1, "ts_in_future": 1, "empty_name": 2,
                                   "invalid_requests_row": 5}
    assert c_stats["folded"] == {"route_too_long": 1, "method_too_long": 1, "too_many_routes": 300 - (100 - 6)}
    assert ("/ts", "GET", 200, 1.0, None, 0, round(NOW - 60.0)) in c_rows
    assert ("/kw", "POST", 201, 3.5, 7, 2, None) in c_rows


def test_a_refusal_raises_the_same_error_on_both_paths(tmp_path: Path) -> None:
    messages = []
    for name, hidden in (("c", False), ("py", True)):
        with pytest.MonkeyPatch.context() as mp:
            if hidden:
                mp.setattr(buffer_module, "Recorder", None)
            with Monitor(spool_dir=tmp_path / name, strict=True) as mon:
                with pytest.raises(InvalidMetricError) as raised:
                    mon.track_request(ROUTE, "GET", 200, -3.0)
                messages.append(str(raised.value))
                assert mon.stats()["rejected"] == {"negative_duration": 1}
    assert messages[0] == messages[1] and "-3.0" in messages[0]


def test_rows_carry_the_time_they_were_recorded(tmp_path: Path) -> None:
    """Within timestamp_resolution_seconds before the call (10 ms by default: the coarse clock's ~4 ms ticks)."""
    with Monitor(db_path=tmp_path / "t.duckdb", jobs=False) as mon:
        assert mon._buffer.recorder is not None
        resolution = mon.timestamp_resolution_seconds
        before = time.time()
        mon.track_request(ROUTE, "GET", 200, 1.0)
        after = time.time()
        mon.flush()
        assert mon.store is not None
        (ts,) = mon.store.fetchall("SELECT epoch_us(ts) / 1e6 FROM requests")[0]
    assert before - resolution - 1e-6 <= ts <= after + 1e-6


def test_threads_recording_while_flushing_lose_nothing(tmp_path: Path, path: str) -> None:
    """4 threads record through the recorder (and its inline compaction when full) while another flushes."""
    per_thread = 20_000
    with Monitor(db_path=tmp_path / "x.duckdb", jobs=False, flush_interval_seconds=3600,
                 memory_interval_seconds=None) as mon:
        stop = threading.Event()

        def record(k: int) -> None:
            track = mon.track_request
            for i in range(per_thread):
                track(f"/t{k}", "GET", 200, float(i % 100), i)

        def flush() -> None:
            while not stop.is_set():
                mon.flush()

        flusher = threading.Thread(target=flush)
        flusher.start()
        threads = [threading.Thread(target=record, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        flusher.join()
        mon.flush()
        stats = mon.stats()
        assert mon.store is not None
        by_route = dict(mon.store.fetchall("SELECT route, count(DISTINCT request_id) FROM requests GROUP BY 1"))
    assert stats["recorded"] == stats["flushed"] == 4 * per_thread and stats["pending"] == 0
    assert by_route == {f"/t{k}": per_thread for k in range(4)}


def test_a_full_recorder_is_compacted_on_the_recording_thread() -> None:
    buffer = Buffer(10**6, 1, "host")

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a valid request went to the fallback: {args}")

    recorder = buffer.attach_recorder(refused, 0.01)
    assert recorder is not None
    for i in range(RECORDER_MAX_ROWS + 5):
        recorder.track_request(ROUTE, "GET", 200, float(i))
    assert buffer.pending_rows == RECORDER_MAX_ROWS and len(recorder) == 5
    assert buffer.take().rows == RECORDER_MAX_ROWS + 5


def test_a_recorder_that_cannot_compact_hands_rows_to_the_fallback() -> None:
    """on_full failing (it never raises in duckpulse, but may run out of memory) costs no row."""
    fallback_rows: list[tuple[Any, ...]] = []

    def full() -> None:
        raise MemoryError

    recorder = _record.Recorder(lambda *args: fallback_rows.append(args), full, 2, 0.01, 60.0, 60.0)
    for i in range(4):
        recorder.track_request(ROUTE, "GET", 200, float(i))
    assert len(recorder) == 2 and fallback_rows == [(ROUTE, "GET", 200, 2.0), (ROUTE, "GET", 200, 3.0)]
    recorder.clear()
    assert len(recorder) == 0 and recorder.drain() is None


def test_remap_refuses_an_id_beyond_its_table() -> None:
    from array import array

    assert _record.remap(array("I", [1, 0, 1]).tobytes(), array("I", [5, 9])) == array("I", [9, 5, 9]).tobytes()
    with pytest.raises(ValueError, match="beyond"):
        _record.remap(array("I", [2]).tobytes(), array("I", [5, 9]))
