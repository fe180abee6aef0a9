"""A segment's footer says when its rows happened, so the owner's ingest notes the minutes the publish job
re-exports without reading each file a second time; a footer that says nothing usable is read the old way.

Real producer and owner monitors on real files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import Monitor, parquet, sqlfiles
from pipeline.spool import FIRST_TS_KEY, LAST_TS_KEY, footer_span

MINUTE = 60.0
T0 = 29_933_334 * 60.0  # a whole minute (epoch seconds), in 2026


def _produce(spool: Path, times: list[float]) -> list[Path]:
    """Record one request at each time with a producer, flush; the request segments written."""
    with Monitor(spool_dir=spool, memory_interval_seconds=None) as producer:
        for i, ts in enumerate(times):
            producer.track_request("/r", "GET", 200, 1.0 + i, ts=ts)
        producer.flush()
    return sorted((spool / "ready").glob("*-requests-*"))


def _ingested_minutes(tmp_path: Path, spool: Path) -> set[float]:
    with Monitor(db_path=tmp_path / "o.duckdb", ingest_dir=spool, jobs=False, memory_interval_seconds=None) as owner:
        assert owner.store is not None
        owner.store.watch_written_minutes()
        owner.ingest_now()
        return owner.store.take_written_minutes().get("requests", set())


def test_a_producer_segment_says_the_first_and_last_time_of_its_rows(tmp_path: Path) -> None:
    (segment,) = _produce(tmp_path / "spool", [T0 + 30.5, T0 + 2.25, T0 + 61.0])
    metadata = parquet.read_footer(segment).metadata
    assert footer_span(metadata) == (T0 + 2.25, T0 + 61.0)
    assert metadata[FIRST_TS_KEY] == repr(T0 + 2.25)


@pytest.mark.parametrize("metadata", [
    {}, {FIRST_TS_KEY: "1.0"}, {FIRST_TS_KEY: "x", LAST_TS_KEY: "2.0"}, {FIRST_TS_KEY: "nan", LAST_TS_KEY: "2.0"},
    {FIRST_TS_KEY: "1.0", LAST_TS_KEY: "inf"}, {FIRST_TS_KEY: "3.0", LAST_TS_KEY: "2.0"},
])
def test_a_footer_span_that_cannot_be_right_is_none(metadata: dict[str, str]) -> None:
    assert footer_span(metadata) is None


def test_the_ingest_notes_a_narrow_segments_minutes_from_its_footer(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "spool"
    _produce(spool, [T0 + 59.9999996, T0 + 75.0])  # the first rounds to the next minute, as the insert stores it
    real_query = sqlfiles.query

    def no_second_read(file: str, name: str) -> str:
        assert name != "segment-minutes", "a segment with a narrow footer span was read again for its minutes"
        return real_query(file, name)

    monkeypatch.setattr(sqlfiles, "query", no_second_read)
    assert _ingested_minutes(tmp_path, spool) == {T0 + MINUTE}


def test_a_wide_segment_has_its_minutes_read_so_the_minutes_between_are_not_noted(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    _produce(spool, [T0 + 1.0, T0 + 10 * MINUTE + 1.0])  # one flush, ten minutes apart: nothing between
    assert _ingested_minutes(tmp_path, spool) == {T0, T0 + 10 * MINUTE}
