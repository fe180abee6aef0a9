"""What a person reads of an alert (log line, webhook text, the demo's terminal): values in the metric's unit,
never scientific notation, and the condition stated as what held or, on resolve, what holds now."""

from __future__ import annotations

import logging

import pytest

from pipeline import Monitor
from pipeline.alerts import make_rule
from pipeline.alerts.wording import format_value
from pipeline.testing import FakeClock, RecordingNotifier

MB = 1024 * 1024


def test_memory_alert_reads_in_mb(mon: Monitor, rec: RecordingNotifier, clock: FakeClock,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """A memory rule's notification shows MB (not bytes in scientific notation), in the summary, the log line
    and the webhook's text field alike."""
    mon.add_threshold("memory_rss", "gt", 258 * MB, "warning", "resident memory over 258 MB: a leak?",
                      by=("pid",), name="memory_growth")
    assert mon.store is not None
    mon.store.con.execute("INSERT INTO process_samples VALUES (make_timestamp($ts), 5724, 'h', $rss, 0, 0, 1, 1, "
                          "0, NULL)", {"ts": int(clock.now() * 1e6), "rss": 277_475_000})
    with caplog.at_level(logging.WARNING, logger="duckpulse.alerts"):
        mon.run_jobs_now()
    [n] = rec.notifications
    expected = ("[warning] memory_growth{pid=5724} firing: max(memory_rss) = 265 MB, above 258 MB - resident "
                "memory over 258 MB: a leak?")
    assert n.summary() == expected
    assert n.to_dict()["text"] == expected
    assert [r.getMessage() for r in caplog.records if r.name == "duckpulse.alerts"] == [f"duckpulse alert {expected}"]


def test_error_rate_alert_reads_in_percent(mon: Monitor, rec: RecordingNotifier) -> None:
    """An error-rate rule (the mean of status >= 500) shows a percentage."""
    mon.add_threshold("error_rate", "gt", 0.02, "warning", "more than 2% of requests failed", aggregation="avg",
                      window_seconds=30, by=("route",), name="route_error_rate_over_2pct")
    for i in range(49):
        mon.track_request("/cart/checkout", "POST", 500 if i < 2 else 200, 30.0)
    mon.run_jobs_now()
    assert [n.summary() for n in rec.notifications] == [
        "[warning] route_error_rate_over_2pct{route=/cart/checkout} firing: avg(error_rate) = 4.08%, above 2% - "
        "more than 2% of requests failed"]


def test_resolve_says_the_value_is_back_under_the_threshold(mon: Monitor, rec: RecordingNotifier,
                                                            clock: FakeClock) -> None:
    """Firing says what held (above 500 ms); resolving says what holds now (back under 500 ms), in ms."""
    mon.add_threshold("request_duration", "gt", 500, "warning", "p95 latency over 500 ms", aggregation="p95",
                      window_seconds=20, by=("route",), name="route_p95_over_500ms")
    mon.track_request("/reports/sales", "GET", 200, 862.946)
    mon.run_jobs_now()
    clock.advance(30)
    for _ in range(20):
        mon.track_request("/reports/sales", "GET", 200, 493.914)
    mon.run_jobs_now()
    assert [n.summary() for n in rec.notifications] == [
        "[warning] route_p95_over_500ms{route=/reports/sales} firing: p95(request_duration) = 863 ms, above 500 ms"
        " - p95 latency over 500 ms",
        "[warning] route_p95_over_500ms{route=/reports/sales} resolved: p95(request_duration) = 494 ms, back under "
        "500 ms - p95 latency over 500 ms"]


@pytest.mark.parametrize(("metric", "aggregation", "value", "against", "shown"), [
    ("request_duration", "max", 0.3912, None, "0.391 ms"),
    ("query_duration", "p99", 12_345.6, None, "12,346 ms"),
    ("memory_rss", "max", 2 * 1024 * MB, None, "2,048 MB"),
    ("memory_rss", "max", 258 * MB + 20_000, 258 * MB, "258.02 MB"),  # never "258 MB, above 258 MB"
    ("error_rate", "avg", 0.08, None, "8%"),
    ("error_rate", "count", 3, None, "3 errors"),
    ("request_rate", "rate", 12.5, None, "12.5 req/s"),
    ("query_duration", "rate", 0.25, None, "0.25 queries/s"),
    ("jobs_done", "max", 1.5e12, None, "1,500,000,000,000"),
    ("jobs_done", "rate", 4.0, None, "4/s"),
    ("jobs_done", "min", -0.000125, None, "-0.000125"),
])
def test_values_are_shown_in_the_metric_unit_without_scientific_notation(
        metric: str, aggregation: str, value: float, against: float | None, shown: str) -> None:
    """Durations in ms, memory in MB, error fractions in %, counts and rates with what they count; custom
    series as plain numbers."""
    assert format_value(metric, aggregation, value, against=against) == shown
    assert "e+" not in shown and "e-" not in shown


def test_describe_states_the_threshold_in_the_metric_unit() -> None:
    """A rule's one-line description (the back-test report) carries the unit too."""
    assert make_rule("memory_rss", "gt", 512 * MB, "warning", by=("pid",)).describe() == \
        "max(memory_rss)[60s] by pid gt 512 MB"
    assert make_rule("error_rate", "gte", 0.05, "critical", aggregation="avg").describe() == \
        "avg(error_rate)[60s] gte 5%"
