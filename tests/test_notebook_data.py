"""pipeline.notebook, what the notebooks share: which data they read, its range, buckets that fit it, and the
sentence said when the data is too little (the notebooks themselves run in tests/test_notebooks.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline import Monitor, notebook
from pipeline.testing import FakeClock


def test_no_file_and_no_history_reads_empty_tables_and_says_where_it_looked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without any data, every table the notebooks read exists and is empty, and the first line names the paths
    it looked at and how to point it elsewhere."""
    data = notebook.open_data(tmp_path / "none.duckdb")
    out = capsys.readouterr().out
    assert f"there is no {tmp_path / 'none.duckdb'} and no history in {tmp_path / 'none.duckdb.history'}" in out
    assert "set DUCKPULSE_DB_PATH" in out and "Nothing recorded yet" in out
    assert data.since is None and data.until is None and data.counts == {
        "requests": 0, "queries": 0, "process_samples": 0}
    assert data.named("route-stats", since=None, until=None).empty
    assert data.con.execute("SELECT count(*) FROM alert_events").fetchall() == [(0,)]
    assert data.enough(0, 1, "routes with requests", "latency per route") is False
    assert capsys.readouterr().out == "Nothing to show for latency per route: nothing recorded yet.\n"


def test_history_without_a_table_gives_an_empty_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    clock: FakeClock) -> None:
    """An app that runs no instrumented query and samples no memory archives and publishes requests only: the
    history is read (the archived hour and the minutes published since), and queries and process_samples are
    empty tables instead of missing ones."""
    db = tmp_path / "app.duckdb"
    with Monitor(db_path=db, clock=clock, jobs=False, memory_interval_seconds=None, default_rules=False) as mon:
        for _ in range(90):
            mon.track_request("/", "GET", 200, 3.0)
            clock.advance(60)
        mon.flush()
        mon.run_jobs_now()  # archives the first closed hour and publishes the 30 minutes since
        assert mon.store is not None
        data = notebook.open_data(db)  # the owner holds the file: what it archived and published
    assert (f"Reading the history in {db}.history (archived hours, and the minutes the owner published since)."
            in capsys.readouterr().out)
    assert not data.live and data.counts == {"requests": 90, "queries": 0, "process_samples": 0}
    assert data.named("query-fingerprints", since=data.since, until=data.until, threshold=5, limit=5,
                      route=None).empty
    assert data.since == datetime(2026, 1, 1) and data.until == datetime(2026, 1, 1, 1, 29)


def test_the_live_file_is_read_before_any_hour_is_archived(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           clock: FakeClock) -> None:
    """A new app's file, no owner holding it and no history yet: the live file is read, and its range is the
    rows' own, in words."""
    db = tmp_path / "app.duckdb"
    with Monitor(db_path=db, clock=clock, jobs=False, memory_interval_seconds=None) as mon:
        mon.track_request("/", "GET", 200, 3.0)
        clock.advance(296)
        mon.track_query("SELECT 1", duration_ms=1.0)
    data = notebook.open_data(db)
    out = capsys.readouterr().out
    assert "reading the live file" in out and "1 requests, 1 queries, 0 process samples, from 2026-01-01 00:00:00 " \
        "to 00:04:56 UTC (4 min 56 s)." in out and "--backfill-hours" in out
    assert data.live and data.span_seconds == 296
    assert data.enough(1, 2, "buckets of 10 seconds with requests", "latency over time") is False
    assert capsys.readouterr().out == ("Too little data for latency over time: buckets of 10 seconds with requests: "
                                       "1, 2 needed, in 2026-01-01 00:00:00 to 00:04:56 UTC (4 min 56 s).\n")
    assert data.enough(2, 2, "buckets", "anything") is True and capsys.readouterr().out == ""


@pytest.mark.parametrize(("span_seconds", "buckets", "step", "words"), [
    (0, 40, 1, "1 second"),
    (296, 40, 10, "10 seconds"),
    (296, 12, 30, "30 seconds"),
    (2 * 3600, 40, 300, "5 minutes"),
    (6 * 3600, 40, 600, "10 minutes"),
    (30 * 86_400, 40, 86_400, "1 day"),
    (10 * 365 * 86_400, 40, 7 * 86_400, "7 days"),
])
def test_step_cuts_the_range_into_round_buckets(span_seconds: float, buckets: int, step: int, words: str) -> None:
    """The smallest round width giving at most the buckets asked for (the largest one beyond)."""
    since = datetime(2026, 1, 1, 0, 0, 7)
    data = notebook.Data(None, "", since, since + timedelta(seconds=span_seconds), False, {})  # type: ignore[arg-type]
    assert data.step(buckets) == timedelta(seconds=step)
    assert notebook.step_words(timedelta(seconds=step)) == words


def test_xlim_spans_the_data_from_its_first_bucket() -> None:
    """A chart's x-axis starts where its first bucket starts (aligned on the epoch, as time_bucket) and ends at
    the last row: the data's own range, whatever the bucket width."""
    since, until = datetime(2026, 1, 1, 0, 0, 7), datetime(2026, 1, 1, 0, 4, 2)
    data = notebook.Data(None, "", since, until, False, {})  # type: ignore[arg-type]
    assert data.xlim(timedelta(seconds=10)) == (datetime(2026, 1, 1, 0, 0, 0), until)
    assert data.xlim(timedelta(hours=1)) == (datetime(2026, 1, 1), datetime(2026, 1, 1, 1))
    with pytest.raises(ValueError, match="enough"):
        notebook.Data(None, "", None, None, False, {}).xlim(timedelta(seconds=1))  # type: ignore[arg-type]


def test_durations_in_words() -> None:
    """The two largest units, rounded to the second."""
    assert [notebook.duration_words(s) for s in (0, 59.6, 296, 7200, 93_784)] == [
        "0 s", "1 min", "4 min 56 s", "2 h", "1 d 2 h"]
