"""The dashboard's endpoints: parameters in, named queries run on this thread's read cursor, JSON out."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import duckdb
from flask import Blueprint, Response, make_response, render_template, request, url_for
from flask.typing import ResponseReturnValue

from pipeline import Monitor
from pipeline.clock import utc_datetime
from pipeline.errors import ConfigError, LimitError

from . import drilldown, error_groups, exposition, hosts, openapi, params, reads, traffic
from .bodies import health_body, silence_request
from .cache import ResponseCache, cache_key
from .config import Settings
from .params import ApiError, TimeRange, iso, iso_epoch
from .published import PublishedReads

RANGE = ("window", "start", "end")
QUERIES_LIMIT = 50
# Reads shared by every client for cache_seconds; health, /metrics, silences and the page are always fresh.
CACHED = ("performance", "routes", "series", "timeline", "histogram", "statuses", "slowest", "request_queries",
          "queries", "errors", "memory", "hosts", "alerts", "alert_history")
HISTORY_LIMIT = 200
SLOWEST_LIMIT = 20
ERRORS_LIMIT = 50
LIVE_WITHIN_SECONDS = 60.0  # at least: a process that has not reported for this long is gone


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
        # A process is live while it keeps reporting: samples come every memory_interval_seconds (10 s by default).
        self.live_within_seconds = max(LIVE_WITHIN_SECONDS, 3 * (monitor.memory_interval_seconds or 0))
        # While this process does not own the file (another one does), reads go to what that owner publishes.
        self.published = PublishedReads(monitor.db_path, monitor.settings.owner.archive.history_dir) \
            if monitor.db_path is not None else None

    def register(self, bp: Blueprint) -> None:
        rules: list[tuple[str, str, Callable[..., ResponseReturnValue], tuple[str, ...]]] = [
            ("/", "page", self.page, ("GET",)),
            ("/api/metrics/performance", "performance", self.performance, ("GET",)),
            ("/api/routes", "routes", self.routes, ("GET",)),
            ("/api/series", "series", self.series, ("GET",)),
            ("/api/timeline", "timeline", self.timeline, ("GET",)),
            ("/api/histogram", "histogram", self.histogram, ("GET",)),
            ("/api/statuses", "statuses", self.statuses, ("GET",)),
            ("/api/requests/slowest", "slowest", self.slowest, ("GET",)),
            ("/api/requests/queries", "request_queries", self.request_queries, ("GET",)),
            ("/api/queries", "queries", self.queries, ("GET",)),
            ("/api/errors", "errors", self.errors, ("GET",)),
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
            if self.published is None:
                raise ApiError(503, f"this process (pid {os.getpid()}) records as a producer into a spool and has "
                               "no database to read; serve the dashboard from the process that owns the file")
            return self.published.reader()  # another process owns the file: what it publishes
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
    def _range_body(self, span: TimeRange) -> dict[str, Any]:
        return {"start": iso(span.start), "end": iso(span.end)}

    def _raw_since(self) -> datetime:
        """From when raw rows are kept: a range from then on may be read from them (webapp/ranges.py)."""
        return utc_datetime(self._now() - self.monitor.settings.owner.retention.raw_days * 86_400)

    def _live_since(self, span: TimeRange) -> Any:
        return span.end - timedelta(seconds=self.live_within_seconds)

    def performance(self) -> Response:
        """The plan's summary: requests, queries and memory over a window back from now (or a range)."""
        args = self._args(RANGE)
        span = params.time_range(args, self._now())
        cursor = self._cursor()
        body = reads.performance(cursor, span, self.settings.slow_queries_limit, self._live_since(span),
                                 *traffic.totals(cursor, span, self._raw_since()))
        return self._json(body)

    def routes(self) -> Response:
        """Per route (or one): count, errors, error rate, mean, max and p50/p95/p99 over a range."""
        args = self._args((*RANGE, "route"))
        span = params.time_range(args, self._now())
        found, _ = traffic.routes(self._cursor(), span, params.text(args, "route"), self._raw_since())
        return self._json({**self._range_body(span), "routes": found})

    def series(self) -> Response:
        """Per route, every time bucket of the range: count, error rate and p50/p95/p99."""
        args = self._args((*RANGE, "step", "route"))
        span = params.time_range(args, self._now())
        step = params.step(args, span)
        points, how = traffic.series(self._cursor(), span, step, params.text(args, "route"), self._raw_since())
        return self._json({**self._range_body(span), "stepSeconds": step.total_seconds(), **how, "series": points})

    def timeline(self) -> Response:
        """Every time bucket of the range, all routes together or one: throughput, errors and p50/p95/p99."""
        args = self._args((*RANGE, "step", "route"))
        span = params.time_range(args, self._now())
        step = params.step(args, span)
        route = params.text(args, "route")
        points, how = traffic.timeline(self._cursor(), span, step, route, self._raw_since())
        return self._json({**self._range_body(span), "stepSeconds": step.total_seconds(), "route": route, **how,
                           "points": points})

    def histogram(self) -> Response:
        """Request durations of the range (all routes or one) in bars of equal width on a log scale."""
        args = self._args((*RANGE, "route"))
        span = params.time_range(args, self._now())
        route = params.text(args, "route")
        bars = traffic.histogram(self._cursor(), span, route, self._raw_since())
        return self._json({**self._range_body(span), "route": route, "total": sum(b["count"] for b in bars),
                           "bars": bars})

    def statuses(self) -> Response:
        """Requests per HTTP status code over a range (all routes or one)."""
        args = self._args((*RANGE, "route"))
        span = params.time_range(args, self._now())
        route = params.text(args, "route")
        return self._json({**self._range_body(span), "route": route,
                           "statuses": drilldown.statuses(self._cursor(), span, route)})

    def slowest(self) -> Response:
        """The slowest requests of a range (all routes or one), each with what ties it to its queries."""
        args = self._args((*RANGE, "route", "limit"))
        span = params.time_range(args, self._now())
        route = params.text(args, "route")
        limit = params.integer(args, "limit", SLOWEST_LIMIT, 1, 200)
        return self._json({**self._range_body(span), "route": route,
                           "requests": drilldown.slowest(self._cursor(), span, route, limit)})

    def request_queries(self) -> Response:
        """One request and the queries it ran, in order, with their durations."""
        args = self._args(("host", "pid", "requestId", "at"))
        key = params.request_key(args)
        found = drilldown.request_queries(self._cursor(), *key)
        if found is None:
            raise ApiError(404, f"no request {key[2]} of process {key[1]} on {key[0]!r} ended at {args['at']}; "
                                "raw rows are kept for raw_days (7 by default), and /api/requests/slowest lists "
                                "requests with the host, pid, requestId and ts to ask for")
        return self._json(found)

    def queries(self) -> Response:
        """Per query fingerprint (of all requests or one route's): count, total and p95 time, N+1 flags."""
        args = self._args((*RANGE, "limit", "route"))
        span = params.time_range(args, self._now())
        limit = params.integer(args, "limit", QUERIES_LIMIT, 1, 1000)
        threshold = self.settings.n_plus_one_threshold
        found = reads.query_fingerprints(self._cursor(), span, limit, threshold, params.text(args, "route"))
        return self._json({**self._range_body(span), "nPlusOneThreshold": threshold, "queries": found})

    def errors(self) -> Response:
        """Unhandled exceptions grouped by signature (type, where raised, message without literals)."""
        args = self._args((*RANGE, "route", "limit"))
        span = params.time_range(args, self._now())
        limit = params.integer(args, "limit", ERRORS_LIMIT, 1, 1000)
        found = error_groups.groups(self._cursor(), span, params.text(args, "route"), limit)
        return self._json({**self._range_body(span), "route": params.text(args, "route"), **found})

    def memory(self) -> Response:
        """Per process: live or gone (last seen), latest, mean and peak resident memory, and RSS over time;
        totals over live processes only."""
        args = self._args((*RANGE, "step"))
        span = params.time_range(args, self._now())
        step = params.step(args, span)
        processes = reads.memory(self._cursor(), span, step, self._live_since(span))
        live = [p for p in processes if p["live"]]
        return self._json({**self._range_body(span), "stepSeconds": step.total_seconds(),
                           "liveWithinSeconds": self.live_within_seconds,
                           "totals": {"liveProcesses": len(live), "goneProcesses": len(processes) - len(live),
                                      "currentBytes": sum(p["current"] for p in live) if live else None},
                           "processes": processes})

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
            raise ApiError(503, f"this process (pid {os.getpid()}) does not own {self.monitor.db_path}, so it keeps no "
                           "silences; set them on the dashboard of the process that owns the file")
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
