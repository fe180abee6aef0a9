"""The OpenAPI 3 document of the dashboard API: every endpoint, its parameters and its response schemas.

Schemas are strict (``additionalProperties: false`` on every object) so that the schemathesis run in the test
suite notices any field the code adds without documenting it.
"""

from __future__ import annotations

from typing import Any

from .params import DURATION_FORM, MAX_RANGE

Schema = dict[str, Any]
VERSION = "1.0.0"


def _obj(properties: dict[str, Schema], required: list[str] | None = None, *, extra: bool = False,
         description: str | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties,
                      "required": list(properties) if required is None else required,
                      "additionalProperties": extra}
    if description:
        schema["description"] = description
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _num(description: str, nullable: bool = False) -> Schema:
    return {"type": "number", "nullable": nullable, "description": description}


def _int(description: str, nullable: bool = False) -> Schema:
    return {"type": "integer", "nullable": nullable, "description": description}


def _time(description: str, nullable: bool = False) -> Schema:
    return {"type": "string", "format": "date-time", "nullable": nullable, "description": description}


def _str(description: str, nullable: bool = False) -> Schema:
    return {"type": "string", "nullable": nullable, "description": description}


def _arr(items: Schema, description: str | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if description:
        schema["description"] = description
    return schema


_PCTS = {
    "p50": _num("Nearest-rank median duration in ms (exact, from raw rows); null without requests.", True),
    "p95": _num("Nearest-rank 95th percentile duration in ms; null without requests.", True),
    "p99": _num("Nearest-rank 99th percentile duration in ms; null without requests.", True),
}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": _obj({
        "status": _int("The HTTP status, repeated."),
        "message": _str("What was wrong and how to fix it."),
    })}, description="The one error envelope of every endpoint."),
    "Performance": _obj({
        "requests": _obj({
            "total": _int("Requests in the window."),
            "byRoute": {"type": "object", "additionalProperties": {"type": "integer"},
                        "description": "Requests per route template, busiest first."},
            "avgDuration": _num("Mean request duration in ms; null without requests.", True),
            "p95Duration": _num("Nearest-rank p95 request duration in ms; null without requests.", True),
        }),
        "queries": _obj({
            "total": _int("Database queries in the window."),
            "avgDuration": _num("Mean query duration in ms; null without queries.", True),
            "slowQueries": _arr(_ref("SlowQuery"), "The slowest fingerprints, by their slowest execution."),
        }),
        "memory": _obj({
            "current": _int("Resident memory in bytes: the sum of each process's latest sample in the window.",
                            True),
            "avg": _num("Mean resident memory of a process in bytes, over every sample in the window.", True),
        }),
        "timestamp": _time("When this answer was computed (UTC)."),
    }),
    "SlowQuery": _obj({
        "fingerprint": _str("The statement with every literal replaced by ?."),
        "count": _int("Executions in the window."),
        "avgDuration": _num("Mean duration in ms."),
        "p95Duration": _num("Nearest-rank p95 duration in ms."),
        "maxDuration": _num("Slowest execution in ms."),
    }),
    "RouteStats": _obj({
        "route": _str("The route template."),
        "count": _int("Requests."),
        "errors": _int("Requests answered with a status of 500 or more."),
        "errorRate": _num("errors / count."),
        "avg": _num("Mean duration in ms.", True),
        "max": _num("Slowest request in ms.", True),
        **_PCTS,
        "method": {"type": "string", "enum": ["exact", "sketch"],
                   "description": "How the percentiles were computed: exact (raw rows; ranges up to an hour) or "
                                  "sketch (merged log-bucket rollups)."},
        "errorBound": _num("The percentiles' relative error bound (0 when exact, about 0.0099 for sketches)."),
    }),
    "Routes": _obj({
        "start": _time("Start of the range (UTC, inclusive)."),
        "end": _time("End of the range (UTC, inclusive)."),
        "routes": _arr(_ref("RouteStats"), "Busiest route first."),
        "timestamp": _time("When this answer was computed."),
    }),
    "SeriesPoint": _obj({
        "t": _time("Start of the bucket (buckets are aligned on the Unix epoch)."),
        "count": _int("Requests in the bucket."),
        "errors": _int("Requests with a status of 500 or more."),
        "errorRate": _num("errors / count."),
        **_PCTS,
    }),
    "Series": _obj({
        "start": _time("Start of the range."),
        "end": _time("End of the range."),
        "stepSeconds": _num("Width of a bucket in seconds."),
        "series": _arr(_obj({"route": _str("The route template."),
                             "points": _arr(_ref("SeriesPoint"), "Non-empty buckets, oldest first.")})),
        "timestamp": _time("When this answer was computed."),
    }),
    "Fingerprint": _obj({
        "fingerprint": _str("The statement with every literal replaced by ?."),
        "fingerprintId": _str("Stable 64-bit hash of the fingerprint, as a decimal string."),
        "name": _str("The name given to time_query(), if any.", True),
        "count": _int("Executions."),
        "failures": _int("Executions that raised."),
        "totalDuration": _num("Total time in ms."),
        "avgDuration": _num("Mean duration in ms."),
        "p95Duration": _num("Nearest-rank p95 duration in ms."),
        "maxDuration": _num("Slowest execution in ms."),
        "routes": _arr({"type": "string"}, "Route templates of the requests that ran it."),
        "nPlusOne": {"type": "boolean", "description": "Some request ran it nPlusOneThreshold times or more."},
        "nPlusOneRequests": _int("Requests that ran it nPlusOneThreshold times or more."),
        "maxPerRequest": _int("The most executions in a single request."),
    }),
    "Queries": _obj({
        "start": _time("Start of the range."),
        "end": _time("End of the range."),
        "nPlusOneThreshold": _int("Executions of one fingerprint in one request that make an N+1 pattern."),
        "queries": _arr(_ref("Fingerprint"), "Most total time first."),
        "timestamp": _time("When this answer was computed."),
    }),
    "Process": _obj({
        "host": _str("Host name."),
        "pid": _int("Process id."),
        "samples": _int("Samples in the range."),
        "current": _int("Resident memory at the latest sample, bytes."),
        "avg": _num("Mean resident memory, bytes."),
        "max": _int("Peak resident memory, bytes."),
        "vms": _int("Virtual memory at the latest sample, bytes."),
        "cpuPercent": _num("CPU use at the latest sample, percent (null for a first sample).", True),
        "numThreads": _int("Threads at the latest sample."),
        "numFds": _int("Open file descriptors at the latest sample (null where there are none).", True),
        "firstSeen": _time("First sample in the range."),
        "lastSeen": _time("Latest sample in the range."),
        "points": _arr(_obj({"t": _time("Start of the bucket."), "avg": _num("Mean RSS, bytes."),
                             "max": _int("Peak RSS, bytes.")}), "RSS per bucket, oldest first."),
    }),
    "HostStats": _obj({
        "host": _str("The host name the rows were recorded on (Monitor(host=...), default the machine's name)."),
        "requests": _int("Requests."),
        "errors": _int("Requests answered with a status of 500 or more."),
        "errorRate": _num("errors / requests (0 without requests)."),
        **_PCTS,
        "queries": _int("Database queries."),
        "queryTime": _num("Total time of those queries in ms."),
        "processes": _int("Processes (pids) of the host seen in the range, by their requests or memory samples."),
        "lastSeen": _time("The host's latest row in the range.", True),
    }),
    "HostRouteStats": _obj({
        "route": _str("The route template."),
        "requests": _int("Requests of the host on this route."),
        "errors": _int("Of those, with a status of 500 or more."),
        "errorRate": _num("errors / requests."),
        **_PCTS,
    }),
    "Hosts": _obj({
        "start": _time("Start of the range (UTC, inclusive)."),
        "end": _time("End of the range (UTC, inclusive)."),
        "route": _str("The route filter, if any.", True),
        "host": _str("The host filter, if any.", True),
        "method": {"type": "string", "enum": ["exact"],
                   "description": "Percentiles are exact, from raw rows (the rollups keep no host)."},
        "errorBound": _num("The percentiles' relative error bound: 0 (exact)."),
        "hosts": _arr(_ref("HostStats"), "Busiest host first."),
        "routes": _arr(_ref("HostRouteStats"), "With host=: that host's routes, busiest first."),
        "timestamp": _time("When this answer was computed."),
    }, required=["start", "end", "route", "host", "method", "errorBound", "hosts", "timestamp"]),
    "Memory": _obj({
        "start": _time("Start of the range."),
        "end": _time("End of the range."),
        "stepSeconds": _num("Width of a bucket in seconds."),
        "processes": _arr(_ref("Process")),
        "timestamp": _time("When this answer was computed."),
    }),
    "Alert": _obj({
        "rule": _str("The rule's name."),
        "labels": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "The label set (the rule's `by` labels)."},
        "metric": _str("The metric the rule watches."),
        "level": {"type": "string", "enum": ["info", "warning", "critical"]},
        "state": {"type": "string", "enum": ["pending", "firing"]},
        "value": _num("The aggregate at the latest change (null: no data).", True),
        "threshold": _num("The rule's threshold."),
        "since": _time("When the current state was entered."),
        "evaluatedAt": _time("The latest evaluation."),
        "message": _str("The message of the latest transition."),
    }),
    "Alerts": _obj({"alerts": _arr(_ref("Alert"), "Most severe first."),
                    "timestamp": _time("When this answer was computed.")}),
    "AlertEvent": _obj({
        "ts": _time("When the transition happened."),
        "rule": _str("The rule's name."),
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "metric": _str("The metric the rule watches."),
        "level": {"type": "string", "enum": ["info", "warning", "critical"]},
        "from": _str("The state left (inactive, pending, firing, resolved or nodata)."),
        "to": _str("The state entered."),
        "value": _num("The aggregate (null on a transition to nodata).", True),
        "threshold": _num("The rule's threshold."),
        "message": _str("The rule's message."),
    }),
    "AlertHistory": _obj({
        "start": _time("Start of the range."),
        "end": _time("End of the range."),
        "events": _arr(_ref("AlertEvent"), "Newest first."),
        "timestamp": _time("When this answer was computed."),
    }),
    "Silence": _obj({
        "id": _str("The silence's id."),
        "matchers": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "rule, metric, level or label name -> the value an alert must have."},
        "startsAt": _time("When it started."),
        "endsAt": _time("When it ends."),
        "comment": _str("Why."),
        "createdAt": _time("When it was created."),
    }),
    "Silences": _obj({"silences": _arr(_ref("Silence"), "In force now, oldest first."),
                      "timestamp": _time("When this answer was computed.")}),
    "SilenceCreated": _obj({"silence": _ref("Silence"), "timestamp": _time("When it was created.")}),
    "SilenceExpired": _obj({"expired": _str("The id of the silence ended."),
                            "timestamp": _time("When it was ended.")}),
    "NewSilence": _obj({
        "matchers": {"type": "object", "minProperties": 1, "maxProperties": 16,
                     "additionalProperties": {"type": "string", "maxLength": 1000},
                     "description": "rule, metric, level or label name -> required value; all must match."},
        "duration": {"type": "string", "pattern": "^[1-9][0-9]{0,6}[smhdw]$",
                     "description": f"How long from now: {DURATION_FORM}. Not with endsAt."},
        "endsAt": _time("When it ends (UTC). Not with duration."),
        "comment": {"type": "string", "maxLength": 1000, "description": "Why (optional)."},
    }, required=["matchers"]),
    "JobHealth": _obj({
        "runs": _int("Runs since the owner started."),
        "failures": _int("Runs that raised."),
        "lastRunAt": _time("The latest run.", True),
        "lastDurationSeconds": _num("How long the latest run took.", True),
        "lastError": _str("The latest run's error (shown with the token only).", True),
    }, required=["runs", "failures", "lastRunAt", "lastDurationSeconds"]),
    "Health": _obj({
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "problems": _arr({"type": "string"}, "Why the status is degraded."),
        "role": _str("owner or producer.", True),
        "pid": _int("The owner's process id.", True),
        "recorded": _int("Metrics recorded by this process."),
        "flushed": _int("Metrics made durable."),
        "pending": _int("Metrics buffered, not yet flushed."),
        "dropped": {"type": "object", "additionalProperties": {"type": "integer"},
                    "description": "Dropped metrics by reason."},
        "rejected": {"type": "object", "additionalProperties": {"type": "integer"},
                     "description": "Rejected metrics by reason."},
        "flushFailures": _int("Failed flushes."),
        "lastFlushAt": _time("The latest successful flush.", True),
        "lastFlushError": _str("The latest flush error (shown with the token only).", True),
        "spool": {**_obj({
            "backlog": _int("Ready segments waiting to be ingested."),
            "segments": _int("Segments ingested."),
            "rows": _int("Rows ingested."),
            "quarantined": _int("Unreadable segments set aside."),
            "failures": _int("Failed ingest runs."),
            "lastIngestAt": _time("The latest ingest that loaded rows.", True),
            "lastError": _str("The latest ingest error (shown with the token only).", True),
        }, required=["backlog", "segments", "rows", "quarantined", "failures", "lastIngestAt"]), "nullable": True},
        "jobs": {"type": "object", "additionalProperties": _ref("JobHealth")},
        "recentFaults": {"type": "object", "additionalProperties": {"type": "number"},
                         "description": "Faults seen within faultWindowSeconds, by name (dropped, flush_failures, "
                                        "ingest_failures, quarantined, database_file_lost): seconds since last seen. "
                                        "The status is degraded while any is here; the counts are since the start."},
        "faultWindowSeconds": _num("How long a fault keeps the status degraded after it was last seen."),
        "database": _obj({
            "fileLost": _int("Times the database file was deleted or replaced under its owner and made anew."),
            "rowsLost": _int("Rows that only the lost files held."),
            "lastFileLostAt": _time("When it last happened.", True),
        }, description="The owner's database file (owner only)."),
        "timestamp": _time("When this answer was computed."),
    }, required=["status", "problems", "role", "pid", "recorded", "flushed", "pending", "dropped", "rejected",
                 "flushFailures", "lastFlushAt", "spool", "jobs", "recentFaults", "faultWindowSeconds",
                 "timestamp"]),
}

_WINDOW = {"name": "window", "in": "query", "required": False,
           "description": f"How far back from now (or from end): {DURATION_FORM}; at most {MAX_RANGE.days}d. "
                          "Default 1h.",
           "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,6}[smhdw]$", "default": "1h"}}
_START = {"name": "start", "in": "query", "required": False,
          "description": "Start of the range: ISO 8601 (UTC when no offset) or epoch seconds. Not with window.",
          "schema": {"type": "string", "format": "date-time"}}
_END = {"name": "end", "in": "query", "required": False,
        "description": "End of the range: ISO 8601 or epoch seconds. Default now.",
        "schema": {"type": "string", "format": "date-time"}}
_STEP = {"name": "step", "in": "query", "required": False,
         "description": f"Bucket width: {DURATION_FORM}. Default: a round width giving about 120 buckets.",
         "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,6}[smhdw]$"}}
_RANGE = [_WINDOW, _START, _END]


def _error(description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


_ERRORS = {
    "400": _error("A parameter is malformed; the message says which and the accepted form."),
    "401": _error("The dashboard has a token and the request did not send it as 'Authorization: Bearer'."),
    "403": _error("The dashboard has no token and the request was addressed to a host other than localhost."),
    "500": _error("The server failed; its log has the details."),
    "503": _error("The monitor the dashboard reads has been closed."),
}


def _get(summary: str, schema: Schema, parameters: list[Schema] | None = None, *, public: bool = False,
         media: str = "application/json") -> Schema:
    operation: Schema = {
        "summary": summary,
        "parameters": parameters or [],
        "responses": {"200": {"description": "OK", "content": {media: {"schema": schema}}}, **_ERRORS},
    }
    if public:
        operation["security"] = []
    return {"get": operation}


def document(base: str) -> dict[str, Any]:
    """The document, with the server URL at ``base`` (the dashboard's prefix, '' at the root)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "duckpulse dashboard API", "version": VERSION,
                 "description": "Read-only views of what duckpulse stored (only silences are written). "
                                "Times are UTC; durations are in milliseconds; percentiles are exact "
                                "nearest-rank over raw rows."},
        "servers": [{"url": base or "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/metrics/performance": _get(
                "Requests, queries and memory over a window back from now (the plan's shape).",
                _ref("Performance"), [_WINDOW]),
            "/api/routes": _get("Per route: count, error rate and p50/p95/p99.", _ref("Routes"), _RANGE),
            "/api/series": _get(
                "Per route and time bucket: p50/p95/p99, count and error rate.", _ref("Series"),
                [*_RANGE, _STEP, {"name": "route", "in": "query", "required": False,
                                  "description": "Only this route template (default: every route).",
                                  "schema": {"type": "string", "minLength": 1, "maxLength": 1000}}]),
            "/api/queries": _get(
                "Per query fingerprint: count, total and p95 time, N+1 flags.", _ref("Queries"),
                [*_RANGE, {"name": "limit", "in": "query", "required": False,
                           "description": "How many fingerprints (most total time first).",
                           "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}}]),
            "/api/hosts": _get(
                "Per host of a fleet: requests, errors, p50/p95/p99, queries, processes and last seen.", _ref("Hosts"),
                [*_RANGE, {"name": "route", "in": "query", "required": False,
                           "description": "Only requests and queries of this route template.",
                           "schema": {"type": "string", "minLength": 1, "maxLength": 1000}},
                 {"name": "host", "in": "query", "required": False,
                  "description": "Only this host, with its routes.",
                  "schema": {"type": "string", "minLength": 1, "maxLength": 1000}}]),
            "/api/memory": _get("Memory per process, and RSS over time.", _ref("Memory"), [*_RANGE, _STEP]),
            "/api/alerts": _get("Alerts pending or firing now.", _ref("Alerts")),
            "/api/alerts/history": _get(
                "Alert transitions over a range, newest first.", _ref("AlertHistory"),
                [*_RANGE, {"name": "rule", "in": "query", "required": False, "description": "Only this rule.",
                           "schema": {"type": "string", "minLength": 1, "maxLength": 1000}},
                 {"name": "limit", "in": "query", "required": False, "description": "At most this many events.",
                  "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 200}}]),
            "/api/silences": {
                **_get("Silences in force now.", _ref("Silences")),
                "post": {
                    "summary": "Create a silence: mute the notifications of matching alerts for a while.",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": _ref("NewSilence")}}},
                    "responses": {"201": {"description": "Created", "content": {"application/json": {
                        "schema": _ref("SilenceCreated")}}},
                        "409": _error("The silence ended as soon as it was created."),
                        "415": _error("The body was not sent as application/json."), **_ERRORS},
                },
            },
            "/api/silences/{silence_id}": {"delete": {
                "summary": "End a silence now.",
                "parameters": [{"name": "silence_id", "in": "path", "required": True,
                                "description": "The id POST /api/silences returned.",
                                "schema": {"type": "string", "pattern": "^[0-9A-Za-z_-]{1,200}$"}}],
                "responses": {"200": {"description": "Ended", "content": {"application/json": {
                    "schema": _ref("SilenceExpired")}}},
                    "404": _error("No silence with that id is in force."), **_ERRORS},
            }},
            "/api/health": _get("Drops, flush failures, the spool backlog, the last ingest and the jobs.",
                                _ref("Health"), public=True),
            "/api/openapi.json": _get("This document.", {"type": "object"}),
            "/metrics": _get("The Prometheus text exposition (format 0.0.4).", {"type": "string"},
                             media="text/plain"),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "The DUCKPULSE_TOKEN the server was started with."}},
        },
    }
