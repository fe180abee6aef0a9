"""/metrics: the Prometheus text exposition, parsed back with prometheus_client's own parser."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pipeline import Monitor
from pipeline.clock import utc_datetime
from pipeline.testing import FakeClock
from webapp import create_app
from webapp.exposition import BUCKETS_SECONDS, escape
from webapp.testing import record_sample_traffic

ODD_ROUTE = '/odd/"quoted"\\back\nline'


def families(text: str) -> dict[str, list[Sample]]:
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def sql(mon: Monitor, query: str, *params: Any) -> list[tuple[Any, ...]]:
    assert mon.store is not None
    return mon.store.fetchall(query, list(params))  # type: ignore[arg-type]


@pytest.fixture
def scraped(monitor: Monitor, clock: FakeClock) -> tuple[dict[str, list[Sample]], Monitor]:
    monitor.track_request("/before", "GET", 200, 1.0)  # stamped before the exposition started: not counted
    monitor.flush()
    clock.advance(1)
    app = create_app({}, monitor=monitor)
    record_sample_traffic(monitor, clock, minutes=20)
    monitor.track_request(ODD_ROUTE, "GET", 503, 12_000.0)
    monitor.track_query("SELECT 1", 2.0, success=False)  # outside any request: route ''
    monitor.flush()
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return families(response.get_data(as_text=True)), monitor


def test_request_histograms_per_route_match_sql(scraped: tuple[dict[str, list[Sample]], Monitor]) -> None:
    """Each route's cumulative buckets, count and sum equal SQL over the requests since the start."""
    fams, mon = scraped
    samples = fams["duckpulse_request_duration_seconds"]
    since = utc_datetime(mon.clock.now() - 10_000)
    routes = sql(mon, "SELECT route, method, count(*), sum(duration_ms) FROM requests WHERE route <> '/before' "
                      "GROUP BY ALL")
    assert {(s.labels["route"], s.labels["method"]) for s in samples} == {(r[0], r[1]) for r in routes}
    for route, method, count, sum_ms in routes:
        mine = [s for s in samples if s.labels["route"] == route and s.labels["method"] == method]
        buckets = [s for s in mine if s.name.endswith("_bucket")]
        assert [b.labels["le"] for b in buckets] == [*(str(b) for b in BUCKETS_SECONDS), "+Inf"]
        for b in buckets[:-1]:
            expected = sql(mon, "SELECT count(*) FROM requests WHERE route = ? AND method = ? AND duration_ms <= ?"
                                " AND ts >= ?", route, method, float(b.labels["le"]) * 1000, since)[0][0]
            assert b.value == expected, (route, b.labels["le"])
        assert buckets[-1].value == count
        assert next(s.value for s in mine if s.name.endswith("_count")) == count
        assert next(s.value for s in mine if s.name.endswith("_sum")) == pytest.approx(sum_ms / 1000)
    assert not any(s.labels["route"] == "/before" for s in samples), "rows before the start are not counted"


def test_counters_and_query_histograms_match_sql(scraped: tuple[dict[str, list[Sample]], Monitor]) -> None:
    """Requests per route/method/status, queries per route and query failures equal SQL."""
    fams, mon = scraped
    got = {(s.labels["route"], s.labels["method"], s.labels["status"]): s.value
           for s in fams["duckpulse_requests"]}
    expected = sql(mon, "SELECT route, method, status::VARCHAR, count(*) FROM requests WHERE route <> '/before' "
                        "GROUP BY ALL")
    assert got == {(r[0], r[1], r[2]): r[3] for r in expected}
    queries = fams["duckpulse_query_duration_seconds"]
    per_route = sql(mon, "SELECT coalesce(route, ''), count(*), count(*) FILTER (WHERE duration_ms <= 5), "
                         "count(*) FILTER (WHERE NOT success) FROM queries GROUP BY ALL")
    for route, count, under_5ms, failures in per_route:
        mine = {s.name + s.labels.get("le", ""): s.value for s in queries if s.labels["route"] == route}
        assert mine["duckpulse_query_duration_seconds_count"] == count
        assert mine["duckpulse_query_duration_seconds_bucket0.005"] == under_5ms
        failed = next(s.value for s in fams["duckpulse_query_failures"] if s.labels["route"] == route)
        assert failed == failures
    assert "" in {r[0] for r in per_route}


def test_process_gauges_and_pipeline_counters(scraped: tuple[dict[str, list[Sample]], Monitor]) -> None:
    """Process gauges are the latest sample; pipeline counters are the monitor's stats."""
    fams, mon = scraped
    pid, rss, threads = sql(mon, "SELECT pid, arg_max(rss_bytes, ts), arg_max(num_threads, ts) "
                                 "FROM process_samples GROUP BY pid")[0]
    (sample,) = fams["duckpulse_process_resident_memory_bytes"]
    assert sample.labels["pid"] == str(pid) and sample.value == rss
    assert fams["duckpulse_process_threads"][0].value == threads
    stats = mon.stats()
    assert fams["duckpulse_metrics_recorded"][0].value <= stats["recorded"]
    assert fams["duckpulse_metrics_recorded"][0].value > 0
    assert fams["duckpulse_flush_failures"][0].value == stats["flush_failures"]
    assert fams["duckpulse_spool_backlog_segments"][0].value == stats["ingest"]["backlog"]
    assert fams["duckpulse_metrics_dropped"] == []


def test_label_values_are_escaped_and_round_trip(scraped: tuple[dict[str, list[Sample]], Monitor]) -> None:
    """A route with quotes, a backslash and a line feed survives the exposition unchanged."""
    fams, _ = scraped
    assert any(s.labels["route"] == ODD_ROUTE for s in fams["duckpulse_request_duration_seconds"])
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_dropped_and_rejected_reasons_become_labelled_counters(monitor: Monitor) -> None:
    """Each drop or rejection reason is one labelled sample."""
    from webapp.exposition import Writer, _stats_families

    out = Writer()
    _stats_families(out, {"recorded": 3, "flushed": 1, "dropped": {"buffer_full": 2}, "rejected": {"nan": 1},
                          "flush_failures": 0, "pending": 0})
    fams = families(out.text())
    assert [(s.labels, s.value) for s in fams["duckpulse_metrics_dropped"]] == [({"reason": "buffer_full"}, 2)]
    assert [(s.labels, s.value) for s in fams["duckpulse_metrics_rejected"]] == [({"reason": "nan"}, 1)]
    assert "duckpulse_spool_backlog_segments" not in fams, "a producer's stats have no spool to report"
