"""``/metrics``: what the store holds, in the Prometheus text exposition format (version 0.0.4).

Histograms and counters count the rows stamped since the exposition started (``since``): a restart resets
them, which Prometheus' ``rate()`` understands. Buckets are counted in SQL (``histogram(duration_ms, bounds)``),
never by loading rows into Python. The pipeline's own counters come from ``Monitor.stats()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import duckdb

from .reads import rows

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Prometheus' default buckets (client_python's Histogram.DEFAULT_BUCKETS), in seconds.
BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BOUNDS_MS = [b * 1000.0 for b in BUCKETS_SECONDS]
PROCESS_STALE_SECONDS = 300  # a process that has not reported for this long is gone: no gauge for it


def escape(value: str) -> str:
    """A label value escaped as the text format requires (backslash, double quote, line feed)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, Any]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items()) + "}"


def _value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Writer:
    """Collects families: HELP and TYPE once per metric name, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, Any], value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_value(value)}")

    def histogram(self, name: str, labels: Mapping[str, Any], buckets: Mapping[float, int], count: int,
                  sum_ms: float) -> None:
        """One labelled histogram from per-bucket counts keyed by upper bound in ms (+inf: overflow)."""
        cumulative = 0
        for bound_ms, le in zip(BOUNDS_MS, BUCKETS_SECONDS, strict=True):
            cumulative += int(buckets.get(bound_ms, 0))
            self.sample(f"{name}_bucket", {**labels, "le": repr(le)}, cumulative)
        self.sample(f"{name}_bucket", {**labels, "le": "+Inf"}, count)
        self.sample(f"{name}_count", labels, count)
        self.sample(f"{name}_sum", labels, (sum_ms or 0.0) / 1000.0)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _counters(out: Writer, name: str, help_text: str, label: str, counts: Mapping[str, int]) -> None:
    out.family(name, "counter", help_text)
    for key, value in sorted(counts.items()):
        out.sample(name, {label: key}, value)


def _stats_families(out: Writer, stats: Mapping[str, Any]) -> None:
    out.family("duckpulse_metrics_recorded_total", "counter",
               "Metrics this process recorded since it started.")
    out.sample("duckpulse_metrics_recorded_total", {}, int(stats.get("recorded", 0)))
    out.family("duckpulse_metrics_flushed_total", "counter", "Metrics this process made durable.")
    out.sample("duckpulse_metrics_flushed_total", {}, int(stats.get("flushed", 0)))
    _counters(out, "duckpulse_metrics_dropped_total", "Metrics dropped, by reason (e.g. a full buffer).",
              "reason", stats.get("dropped") or {})
    _counters(out, "duckpulse_metrics_rejected_total", "Metrics rejected as invalid, by reason.",
              "reason", stats.get("rejected") or {})
    out.family("duckpulse_flush_failures_total", "counter", "Flushes that failed (the rows stayed buffered).")
    out.sample("duckpulse_flush_failures_total", {}, int(stats.get("flush_failures", 0)))
    out.family("duckpulse_buffered_metrics", "gauge", "Metrics recorded but not yet flushed.")
    out.sample("duckpulse_buffered_metrics", {}, int(stats.get("pending", 0)))
    ingest = stats.get("ingest")
    if isinstance(ingest, Mapping):
        out.family("duckpulse_spool_backlog_segments", "gauge", "Spool segments waiting to be ingested.")
        out.sample("duckpulse_spool_backlog_segments", {}, int(ingest.get("backlog", 0)))
        out.family("duckpulse_ingested_rows_total", "counter", "Rows ingested from spool segments.")
        out.sample("duckpulse_ingested_rows_total", {}, int(ingest.get("rows", 0)))
        out.family("duckpulse_ingest_failures_total", "counter", "Ingest runs that failed.")
        out.sample("duckpulse_ingest_failures_total", {}, int(ingest.get("failures", 0)))
        out.family("duckpulse_quarantined_segments_total", "counter", "Unreadable spool segments set aside.")
        out.sample("duckpulse_quarantined_segments_total", {}, int(ingest.get("quarantined", 0)))


_PROCESS_GAUGES = (
    ("rss_bytes", "duckpulse_process_resident_memory_bytes", "Resident memory of the process, in bytes."),
    ("vms_bytes", "duckpulse_process_virtual_memory_bytes", "Virtual memory of the process, in bytes."),
    ("cpu_percent", "duckpulse_process_cpu_percent", "CPU use of the process at its latest sample, in percent."),
    ("num_threads", "duckpulse_process_threads", "Threads of the process."),
    ("num_fds", "duckpulse_process_open_fds", "Open file descriptors of the process."),
    ("gc_collections", "duckpulse_process_gc_collections", "Garbage collections the process has run."),
)


def _process_families(out: Writer, processes: Iterable[Mapping[str, Any]]) -> None:
    processes = list(processes)
    for column, name, help_text in _PROCESS_GAUGES:
        out.family(name, "gauge", help_text)
        for p in processes:
            if p[column] is not None:
                out.sample(name, {"host": p["host"], "pid": p["pid"]}, p[column])


def render(cursor: duckdb.DuckDBPyConnection, since: datetime, process_since: datetime,
           stats: Mapping[str, Any]) -> str:
    """The whole exposition text."""
    out = Writer()
    params = {"since": since, "bounds_ms": BOUNDS_MS}
    out.family("duckpulse_request_duration_seconds", "histogram",
               "Duration of served requests, by route template and method.")
    for r in rows(cursor, "metrics-request-histogram", params):
        out.histogram("duckpulse_request_duration_seconds", {"route": r["route"], "method": r["method"]},
                      r["buckets"], int(r["count"]), r["sum_ms"])
    out.family("duckpulse_requests_total", "counter", "Served requests, by route template, method and status.")
    for r in rows(cursor, "metrics-request-status", {"since": since}):
        out.sample("duckpulse_requests_total", {"route": r["route"], "method": r["method"],
                                                "status": r["status"]}, int(r["count"]))
    queries = rows(cursor, "metrics-query-histogram", params)
    out.family("duckpulse_query_duration_seconds", "histogram",
               "Duration of database queries, by the route of the request that ran them ('' outside requests).")
    for r in queries:
        out.histogram("duckpulse_query_duration_seconds", {"route": r["route"]}, r["buckets"], int(r["count"]),
                      r["sum_ms"])
    out.family("duckpulse_query_failures_total", "counter", "Database queries that failed, by route.")
    for r in queries:
        out.sample("duckpulse_query_failures_total", {"route": r["route"]}, int(r["failures"]))
    _process_families(out, rows(cursor, "metrics-process-gauges", {"since": process_since}))
    _stats_families(out, stats)
    return out.text()
