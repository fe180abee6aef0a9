"""The OpenAPI 3 document of the dashboard API: every endpoint, its parameters and its response schemas
(webapp/openapi_schemas.py).

Schemas are strict (``additionalProperties: false`` on every object) so that the schemathesis run in the test
suite notices any field the code adds without documenting it.
"""

from __future__ import annotations

from typing import Any

from .openapi_schemas import SCHEMAS, Schema, ref
from .params import DURATION_FORM, MAX_RANGE

VERSION = "1.1.0"

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
_ROUTE = {"name": "route", "in": "query", "required": False,
          "description": "Only this route template (default: every route).",
          "schema": {"type": "string", "minLength": 1, "maxLength": 1000}}


def _limit(what: str, default: int, maximum: int) -> Schema:
    return {"name": "limit", "in": "query", "required": False, "description": f"At most this many {what}.",
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}}


_REQUEST_KEY = [
    {"name": "host", "in": "query", "required": True, "description": "The host of the process that served it.",
     "schema": {"type": "string", "minLength": 1, "maxLength": 255}},
    {"name": "pid", "in": "query", "required": True, "description": "The process that served it.",
     "schema": {"type": "integer", "minimum": 0, "maximum": 2147483647}},
    {"name": "requestId", "in": "query", "required": True, "description": "Its id within that process.",
     "schema": {"type": "string", "pattern": "^-?[0-9]{1,18}$"}},
    {"name": "at", "in": "query", "required": True,
     "description": "When it ended (ISO 8601 or epoch seconds), as /api/requests/slowest lists it (ts).",
     "schema": {"type": "string", "format": "date-time"}},
]


def _error(description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


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
                                "Times are UTC; durations are in milliseconds; percentiles are nearest-rank, "
                                "exact over raw rows for ranges up to an hour, merged from the rollups' sketches "
                                "beyond (each answer says which, and its relative error bound)."},
        "servers": [{"url": base or "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/metrics/performance": _get(
                "Requests, queries and memory over a window back from now, or a range (the plan's shape).",
                ref("Performance"), _RANGE),
            "/api/routes": _get("Per route (or one): count, error rate and p50/p95/p99.", ref("Routes"),
                                [*_RANGE, _ROUTE]),
            "/api/series": _get(
                "Per route and time bucket (every bucket of the range): p50/p95/p99, count and error rate.",
                ref("Series"), [*_RANGE, _STEP, _ROUTE]),
            "/api/timeline": _get(
                "Every time bucket of the range, all routes together or one: throughput, errors, p50/p95/p99.",
                ref("Timeline"), [*_RANGE, _STEP, _ROUTE]),
            "/api/histogram": _get("Request durations in bars of equal width on a log scale (exact counts).",
                                   ref("Histogram"), [*_RANGE, _ROUTE]),
            "/api/statuses": _get("Requests per HTTP status code.", ref("Statuses"), [*_RANGE, _ROUTE]),
            "/api/requests/slowest": _get(
                "The slowest requests, each with what ties it to its queries (host, pid, requestId).",
                ref("SlowRequests"), [*_RANGE, _ROUTE, _limit("requests", 20, 200)]),
            "/api/requests/queries": {"get": {
                **_get("One request and the queries it ran, in order, with their durations.",
                       ref("RequestQueries"), _REQUEST_KEY)["get"],
                "responses": {**_get("", ref("RequestQueries"))["get"]["responses"],
                              "404": _error("No such request is stored (raw rows expire after raw_days).")},
            }},
            "/api/queries": _get(
                "Per query fingerprint (of every request or one route's): count, total and p95 time, N+1 flags.",
                ref("Queries"), [*_RANGE, _limit("fingerprints (most total time first)", 50, 1000), _ROUTE]),
            "/api/errors": _get(
                "Unhandled exceptions grouped by signature (type, where raised, message without literals).",
                ref("Errors"), [*_RANGE, _ROUTE, _limit("groups (most frequent first)", 50, 1000)]),
            "/api/hosts": _get(
                "Per host of a fleet: requests, errors, p50/p95/p99, queries, processes and last seen.", ref("Hosts"),
                [*_RANGE, {"name": "route", "in": "query", "required": False,
                           "description": "Only requests and queries of this route template.",
                           "schema": {"type": "string", "minLength": 1, "maxLength": 1000}},
                 {"name": "host", "in": "query", "required": False,
                  "description": "Only this host, with its routes.",
                  "schema": {"type": "string", "minLength": 1, "maxLength": 1000}}]),
            "/api/memory": _get("Memory per process (live or gone, last seen), and RSS over time.", ref("Memory"),
                                [*_RANGE, _STEP]),
            "/api/alerts": _get("Alerts pending or firing now.", ref("Alerts")),
            "/api/alerts/history": _get(
                "Alert transitions over a range, newest first.", ref("AlertHistory"),
                [*_RANGE, {"name": "rule", "in": "query", "required": False, "description": "Only this rule.",
                           "schema": {"type": "string", "minLength": 1, "maxLength": 1000}},
                 {"name": "limit", "in": "query", "required": False, "description": "At most this many events.",
                  "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 200}}]),
            "/api/silences": {
                **_get("Silences in force now.", ref("Silences")),
                "post": {
                    "summary": "Create a silence: mute the notifications of matching alerts for a while.",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": ref("NewSilence")}}},
                    "responses": {"201": {"description": "Created", "content": {"application/json": {
                        "schema": ref("SilenceCreated")}}},
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
                    "schema": ref("SilenceExpired")}}},
                    "404": _error("No silence with that id is in force."), **_ERRORS},
            }},
            "/api/health": _get("Drops, flush failures, the spool backlog, the last ingest and the jobs.",
                                ref("Health"), public=True),
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
