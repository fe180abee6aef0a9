"""The dashboard's endpoints: parameters in, named queries run on this thread's read cursor, JSON out."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

import duckdb
from flask import Blueprint, Response, make_response, render_template, request, url_for
from flask.typing import ResponseReturnValue

from pipeline import Monitor
from pipeline.alerts import delivery as alert_delivery
from pipeline.clock import utc_datetime
from pipeline.errors import ConfigError, LimitError

from . import exposition, hosts, openapi, params, reads
from .cache import ResponseCache, cache_key
from .config import Settings
from .params import ApiError, iso, iso_epoch

RANGE = ("window", "start", "end")
QUERIES_LIMIT = 50
# Reads shared by every client for cache_seconds; health, /metrics, silences and the page are always fresh.
CACHED = ("performance", "routes", "series", "queries", "memory", "hosts", "alerts", "alert_history")
HISTORY_LIMIT = 200
SILENCE_FIELDS = ("matchers", "duration", "endsAt", "comment")
MAX_MATCHERS = 16


class Api:
    """The views of one mounted dashboard, bound to its monitor and settings."""

    def __init__(self, monitor: Monitor, settings: Settings, name: str) -> None:
        self.monitor = monitor
        self.settings = settings
        self.name = name
        # Counters and histograms of /metrics count rows stamped from this moment on.
        self.exposition_since = utc_datetime(monitor.clock.now())
        self.authorized: Callable[[], bool] = lambda: True
        self.cache = ResponseCache(settings.cache_seconds)

    def register(self, bp: Blueprint) -> None:
        rules: list[tuple[str, str, Callable[..., ResponseReturnValue], tuple[str, ...]]] = [
            ("/", "page", self.page, ("GET",)),
            ("/api/metrics/performance", "performance", self.performance, ("GET",)),
            ("/api/routes", "routes", self.routes, ("GET",)),
            ("/api/series", "series", self.series, ("GET",)),
            ("/api/queries", "queries", self.queries, ("GET",)),
            ("/api/memory", "memory", self.memory, ("GET",)),
            ("/api/hosts", "hosts", self.hosts, ("GET",)),
            ("/api/alerts", "alerts", self.alerts, ("GET",)),
            ("/api/alerts/history", "alert_history", self.alert_history, ("GET",)),
            ("/api/silences", "silences", self.silences, ("GET",)),
            ("/api/silences", "silence_create", self.create_silence, ("POST",)),
            ("/api/silences/<silence_id>", "silence_expire", self.expire_silence, ("DELETE",)),
            ("/api/health", "health", self.health, ("GET",)),
            ("/api/openapi.json", "openapi", self.openapi, ("GET",)),
            ("/metrics", "metrics", self.metrics, ("GET",)),
        ]
        for rule, endpoint, view, methods in rules:
            view = self._reading(view)
            if endpoint in CACHED:
                view = self._cached(view)
            bp.add_url_rule(rule, endpoint, view, methods=list(methods))

    def _reading(self, view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        """The view's reads hold the store's read gate (Store.reading): the owner never evicts DuckDB's cache
        under a running read."""
        def reading(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            store = self.monitor.store
            if store is None:
                return view(*args, **kwargs)
            with store.read_gate.shared():
                return view(*args, **kwargs)
        reading.__doc__ = view.__doc__
        return reading

    def _cached(self, view: Callable[[], ResponseReturnValue]) -> Callable[[], Response]:
        def cached() -> Response:
            return self.cache.get(cache_key(request.environ), lambda: make_response(view()))
        cached.__doc__ = view.__doc__
        return cached

    # -- helpers -----------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.monitor.clock.now()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        store = self.monitor.store
        if self.monitor.closed:
            raise ApiError(503, "the monitor this dashboard reads has been closed; restart the server")
        if store is None:
            raise ApiError(503, f"this process (pid {os.getpid()}) records as a producer: another process owns "
                           f"{self.monitor.db_path} and serves its dashboard; this one takes over when that one ends")
        return store.reader()

    @staticmethod
    def _args(known: tuple[str, ...]) -> Mapping[str, str]:
        args = request.args.to_dict(flat=True)
        params.check_known(args, known)
        return args

    def _json(self, body: Mapping[str, Any]) -> Response:
        """A JSON object with a timestamp; values that are ``RawJson`` are JSON text already.

        Serialized here rather than by the host app's JSON provider, which may sort keys (Flask's default) and
        would then reorder byRoute, busiest first by design, when the blueprint is mounted in a user's app.
        """
        fields = {**body, "timestamp": iso_epoch(self._now())}
        text = ",".join(f"{json.dumps(k)}:{v if isinstance(v, reads.RawJson) else json.dumps(v)}"
                        for k, v in fields.items())
        return Response("{" + text + "}", mimetype="application/json")

    # -- the page ----------------------------------------------------------------------------------------
    def page(self) -> str:
        """The HTML dashboard (a shell: its script fetches everything from the API)."""
        return render_template(
            "duckpulse_dashboard.html",
            api_base=url_for(f"{self.name}.page").rstrip("/"),
            refresh_ms=int(self.settings.refresh_seconds * 1000),
            token_required=self.settings.token is not None,
            static=lambda filename: url_for(f"{self.name}.static", filename=filename),
        )

    # -- JSON endpoints ----------------------------------------------------------------------------------
    def performance(self) -> Response:
        """The plan's summary: requests, queries and memory over a window back from now."""
        args = self._args(("window",))
        span = params.time_range(args, self._now())
        return self._json(reads.performance(self._cursor(), span, self.settings.slow_queries_limit))

    def routes(self) -> Response:
        """Per route: count, error rate and p50/p95/p99 over a range."""
        span = params.time_range(self._args(RANGE), self._now())
        return self._json({"start": iso(span.start), "end": iso(span.end),
                           "routes": reads.route_stats(self._cursor(), span)})

    def series(self) -> Response:
        """Per route and time bucket: p50/p95/p99, count and error rate."""
        args = self._args((*RANGE, "step", "route"))
        span = params.time_range(args, self._now())
        step = params.step(args, span)
        route = params.text(args, "route")
        return self._json({"start": iso(span.start), "end": iso(span.end), "stepSeconds": step.total_seconds(),
                           "series": reads.route_series(self._cursor(), span, step, route)})

    def queries(self) -> Response:
        """Per query fingerprint: count, total and p95 time, N+1 flags."""
        args = self._args((*RANGE, "limit"))
        span = params.time_range(args, self._now())
        limit = params.integer(args, "limit", QUERIES_LIMIT, 1, 1000)
        threshold = self.settings.n_plus_one_threshold
        return self._json({"start": iso(span.start), "end": iso(span.end), "nPlusOneThreshold": threshold,
                           "queries": reads.query_fingerprints(self._cursor(), span, limit, threshold)})

    def memory(self) -> Response:
        """Per process: latest, mean and peak resident memory, and its RSS over time."""
        args = self._args((*RANGE, "step"))
        span = params.time_range(args, self._now())
        step = params.step(args, span)
        return self._json({"start": iso(span.start), "end": iso(span.end), "stepSeconds": step.total_seconds(),
                           "processes": reads.memory(self._cursor(), span, step)})

    def hosts(self) -> Response:
        """Per host of a fleet: requests, errors, p50/p95/p99, queries, processes, last seen; filtered by route or
        host (one host: its routes too)."""
        args = self._args((*RANGE, "route", "host"))
        span = params.time_range(args, self._now())
        return self._json(hosts.hosts(self._cursor(), span, params.text(args, "route"), params.text(args, "host")))

    def alerts(self) -> Response:
        """Alerts pending or firing now."""
        self._args(())
        return self._json({"alerts": reads.active_alerts(self._cursor())})

    def alert_history(self) -> Response:
        """Alert transitions over a range, newest first."""
        args = self._args((*RANGE, "rule", "limit"))
        span = params.time_range(args, self._now())
        limit = params.integer(args, "limit", HISTORY_LIMIT, 1, 10_000)
        return self._json({"start": iso(span.start), "end": iso(span.end),
                           "events": reads.alert_history(self._cursor(), span, params.text(args, "rule"), limit)})

    def silences(self) -> Response:
        """Silences in force now."""
        self._args(())
        return self._json({"silences": reads.silences(self._cursor(), self._now())})

    def _alerts_engine(self) -> Any:
        engine = getattr(self.monitor, "alerts", None)
        if engine is None:
            raise ApiError(503, "this monitor evaluates no alerts, so it keeps no silences")
        return engine

    def create_silence(self) -> tuple[Response, int]:
        """Mute alert notifications matching every matcher, for a duration or until a time (a write)."""
        self._args(())
        fields = silence_request(request.mimetype, request.get_json(silent=True))
        try:
            silence_id = self._alerts_engine().silence(**fields)
        except LimitError as exc:  # well formed, but over a cap: the message names it
            raise ApiError(422, str(exc)) from None
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        self.cache.clear()  # alert views must not hide the new silence's effect
        found = reads.silences(self._cursor(), self._now(), silence_id)  # that one only, never all of them
        if not found:  # it ended before it could be read back (a clock at the very edge of `until`)
            raise ApiError(409, f"silence {silence_id} ended as soon as it was created; give a later end")
        return self._json({"silence": found[0]}), 201

    def expire_silence(self, silence_id: str) -> Response:
        """End a silence now (a write); 404 when no silence with that id is in force."""
        self._args(())
        self.cache.clear()
        if len(silence_id) > 200 or not self._alerts_engine().unsilence(silence_id):
            raise ApiError(404, f"no silence {silence_id[:200]!r} is in force; GET /api/silences lists those that are")
        return self._json({"expired": silence_id})

    def health(self) -> Response:
        """Whether nothing is being lost: drops, failed flushes, the spool backlog, the last ingest, the jobs."""
        self._args(())
        stats = self.monitor.stats()
        detailed = self.authorized()  # error texts can name files and SQL: only for those holding the token
        return self._json(health_body(stats, detailed))

    def openapi(self) -> Response:
        """The OpenAPI 3 document of this API."""
        self._args(())
        return Response(json.dumps(openapi.document(url_for(f"{self.name}.page").rstrip("/"))),
                        mimetype="application/json")

    def metrics(self) -> Response:
        """The Prometheus text exposition."""
        self._args(())
        process_since = utc_datetime(self._now() - exposition.PROCESS_STALE_SECONDS)
        text = exposition.render(self._cursor(), self.exposition_since, process_since, self.monitor.stats())
        return Response(text, content_type=exposition.CONTENT_TYPE)


def _total(counts: Any) -> int:
    return int(sum(counts.values())) if isinstance(counts, Mapping) else int(counts or 0)


def health_body(stats: Mapping[str, Any], detailed: bool) -> dict[str, Any]:
    """``/api/health`` from ``Monitor.stats()``; ``detailed`` adds the error messages.

    The status says whether something went wrong lately (``stats()["recent_faults"]``: within the last
    ``fault_window_seconds``) or the last run of a job failed; the counts since the start are in the body, so a
    fault that recovered stops making the status "degraded" once the window has passed.
    """
    problems: list[str] = []
    recent: Mapping[str, float] = stats.get("recent_faults") or {}
    window = f"in the last {float(stats.get('fault_window_seconds') or 0):g} s"
    dropped = dict(stats.get("dropped") or {})
    if "dropped" in recent:
        problems.append(f"metrics were dropped {window} ({_total(dropped)} since the start, see dropped): the buffer "
                        "filled faster than flushes emptied it")
    if "flush_failures" in recent:
        problems.append(f"flushes failed {window} ({stats['flush_failures']} since the start)")
    store = stats.get("store")
    if isinstance(store, Mapping) and "database_file_lost" in recent:
        problems.append(f"the database file was deleted or replaced under its owner {window} and made anew "
                        f"({store.get('file_lost')} time(s) since the start; {store.get('rows_lost')} rows that only "
                        "the lost file held are lost)")
    ingest = stats.get("ingest")
    spool: dict[str, Any] | None = None
    if isinstance(ingest, Mapping):
        spool = {"backlog": int(ingest.get("backlog", 0)), "segments": int(ingest.get("segments", 0)),
                 "rows": int(ingest.get("rows", 0)), "quarantined": int(ingest.get("quarantined", 0)),
                 "failures": int(ingest.get("failures", 0)), "lastIngestAt": iso_epoch(ingest.get("last_ingest_at"))}
        if detailed:
            spool["lastError"] = ingest.get("last_error")
        if "ingest_failures" in recent:
            problems.append(f"ingest runs failed {window} ({spool['failures']} since the start)")
        if "quarantined" in recent:
            problems.append(f"spool segments were unreadable and set aside {window} ({spool['quarantined']} since "
                            "the start)")
    delivery = dict((stats.get("alerts") or {}).get("delivery") or {})
    # an on_alert callback running for long, now (pipeline/alerts/delivery.py)
    if float(delivery.get("busy_seconds") or 0.0) > alert_delivery.SLOW_NOTIFIER_SECONDS:
        problems.append(f"the alert notifier {delivery.get('busy_notifier')} has been running for "
                        f"{float(delivery['busy_seconds']):.0f} s; {delivery.get('queued', 0)} notifications wait")
    jobs: dict[str, dict[str, Any]] = {}
    for job_name, job in dict(stats.get("jobs") or {}).items():
        jobs[job_name] = {"runs": int(job.get("runs", 0)), "failures": int(job.get("failures", 0)),
                          "lastRunAt": iso_epoch(job.get("last_run_at")),
                          "lastDurationSeconds": job.get("last_duration_seconds")}
        if detailed:
            jobs[job_name]["lastError"] = job.get("last_error")
        if job.get("last_error"):
            problems.append(f"the last run of job {job_name!r} failed")
    body: dict[str, Any] = {
        "status": "degraded" if problems else "ok",
        "problems": problems,
        "role": stats.get("role"),
        "pid": stats.get("pid"),
        "recorded": int(stats.get("recorded", 0)),
        "flushed": int(stats.get("flushed", 0)),
        "pending": int(stats.get("pending", 0)),
        "dropped": {k: int(v) for k, v in dropped.items()},
        "rejected": {k: int(v) for k, v in dict(stats.get("rejected") or {}).items()},
        "flushFailures": int(stats.get("flush_failures", 0)),
        "lastFlushAt": iso_epoch(stats.get("last_flush_at")),
        "spool": spool,
        "jobs": jobs,
        "recentFaults": {name: round(float(ago), 3) for name, ago in recent.items()},
        "faultWindowSeconds": float(stats.get("fault_window_seconds") or 0),
    }
    if isinstance(store, Mapping):
        body["database"] = {"fileLost": int(store.get("file_lost") or 0), "rowsLost": int(store.get("rows_lost") or 0),
                            "lastFileLostAt": iso_epoch(store.get("last_file_lost_at"))}
    if detailed:
        body["lastFlushError"] = stats.get("last_flush_error")
    return body


def silence_request(mimetype: str, body: Any) -> dict[str, Any]:
    """The arguments of ``Alerts.silence`` from a POST /api/silences body, or ApiError saying what is wrong."""
    example = '{"matchers": {"rule": "request_duration_critical"}, "duration": "1h", "comment": "deploying"}'
    # JSON only: a cross-site form or no-cors fetch cannot send application/json without a CORS preflight,
    # which this API never grants, so a web page cannot create silences on a loopback dashboard.
    if mimetype != "application/json":
        raise ApiError(415, f"send the silence as JSON with 'Content-Type: application/json', e.g. {example}")
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object such as {example}")
    unknown = sorted(set(body) - set(SILENCE_FIELDS))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; a silence has {', '.join(SILENCE_FIELDS)}")
    matchers = body.get("matchers")
    if (not isinstance(matchers, dict) or not 1 <= len(matchers) <= MAX_MATCHERS
            or not all(isinstance(k, str) and 0 < len(k) <= 200 and isinstance(v, str) and len(v) <= 1000
                       for k, v in matchers.items())):
        raise ApiError(400, f"matchers must be an object of 1 to {MAX_MATCHERS} string values keyed by rule, "
                            f"metric, level or a label name, e.g. {example}")
    has_duration, has_end = body.get("duration") is not None, body.get("endsAt") is not None
    if has_duration == has_end:
        raise ApiError(400, "give exactly one of duration (such as \"2h\") and endsAt (ISO 8601, UTC)")
    fields: dict[str, Any] = {"matchers": dict(matchers)}
    if has_duration:
        if not isinstance(body["duration"], str):
            raise ApiError(400, f"duration must be a string: {params.DURATION_FORM}")
        fields["duration_seconds"] = params.duration("duration", body["duration"]).total_seconds()
    else:
        if not isinstance(body["endsAt"], str):
            raise ApiError(400, "endsAt must be a string: ISO 8601 such as 2026-01-01T12:00:00Z")
        fields["until"] = params.timestamp("endsAt", body["endsAt"]).replace(tzinfo=UTC).timestamp()
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 1000:
        raise ApiError(400, "comment must be a string of at most 1000 characters")
    fields["comment"] = comment
    return fields
