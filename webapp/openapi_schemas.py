"""The response schemas of the dashboard API's OpenAPI document (webapp/openapi.py puts them together).

Schemas are strict (``additionalProperties: false`` on every object) so that the schemathesis run in the test
suite notices any field the code adds without documenting it.
"""

from __future__ import annotations

from typing import Any

from .params import DURATION_FORM

Schema = dict[str, Any]


def obj(properties: dict[str, Schema], required: list[str] | None = None, *, extra: bool = False,
         description: str | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties,
                      "required": list(properties) if required is None else required,
                      "additionalProperties": extra}
    if description:
        schema["description"] = description
    return schema


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def num(description: str, nullable: bool = False) -> Schema:
    return {"type": "number", "nullable": nullable, "description": description}


def integer(description: str, nullable: bool = False) -> Schema:
    return {"type": "integer", "nullable": nullable, "description": description}


def time(description: str, nullable: bool = False) -> Schema:
    return {"type": "string", "format": "date-time", "nullable": nullable, "description": description}


def string(description: str, nullable: bool = False) -> Schema:
    return {"type": "string", "nullable": nullable, "description": description}


def arr(items: Schema, description: str | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if description:
        schema["description"] = description
    return schema


_PCTS = {
    "p50": num("Nearest-rank median duration in ms (see method); null without requests.", True),
    "p95": num("Nearest-rank 95th percentile duration in ms; null without requests.", True),
    "p99": num("Nearest-rank 99th percentile duration in ms; null without requests.", True),
}
_METHOD = {
    "method": {"type": "string", "enum": ["exact", "sketch"],
               "description": "How the percentiles were computed: exact (raw rows: ranges up to an hour) or sketch "
                              "(merged log-bucket rollups beyond; counts stay exact)."},
    "errorBound": num("The percentiles' relative error bound (0 when exact, about 0.0099 for sketches)."),
}
_START_END = {
    "start": time("Start of the range (UTC, inclusive)."),
    "end": time("End of the range (UTC, inclusive)."),
}
_ROUTE = {"route": string("The route asked for (null: every route).", True)}
_TIMESTAMP = {"timestamp": time("When this answer was computed (UTC).")}


def _request(description: str) -> Schema:
    return obj({
        "ts": time("When the request ended."),
        "route": string("The route template."),
        "method": string("The HTTP method."),
        "status": integer("The HTTP status."),
        "durationMs": num("How long it took, ms."),
        "queryCount": integer("Queries it ran."),
        "requestId": string("Its id within its process (a decimal string: 64 bits).", True),
        "pid": integer("The process that served it."),
        "host": string("The host of that process."),
    }, description=description)


SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": obj({
        "status": integer("The HTTP status, repeated."),
        "message": string("What was wrong and how to fix it."),
    })}, description="The one error envelope of every endpoint."),
    "Performance": obj({
        "requests": obj({
            "total": integer("Requests in the window."),
            "byRoute": {"type": "object", "additionalProperties": {"type": "integer"},
                        "description": "Requests per route template, busiest first."},
            "avgDuration": num("Mean request duration in ms; null without requests.", True),
            "p95Duration": num("Nearest-rank p95 request duration in ms (see method); null without requests.",
                               True),
            **_METHOD,
        }),
        "queries": obj({
            "total": integer("Database queries in the window."),
            "avgDuration": num("Mean query duration in ms; null without queries.", True),
            "slowQueries": arr(ref("SlowQuery"), "The slowest fingerprints, by their slowest execution."),
        }),
        "memory": obj({
            "current": integer("Resident memory in bytes: the sum of the latest sample of each live process.",
                               True),
            "avg": num("Mean resident memory of a process in bytes, over every sample in the window.", True),
            "liveProcesses": integer("Processes still reporting at the end of the window."),
        }),
        **_TIMESTAMP,
    }),
    "SlowQuery": obj({
        "fingerprint": string("The statement with every literal replaced by ?."),
        "count": integer("Executions in the window."),
        "avgDuration": num("Mean duration in ms."),
        "p95Duration": num("Exact nearest-rank p95 duration in ms (raw rows)."),
        "maxDuration": num("Slowest execution in ms."),
    }),
    "RouteStats": obj({
        "route": string("The route template."),
        "count": integer("Requests."),
        "errors": integer("Requests answered with a status of 500 or more."),
        "clientErrors": integer("Requests answered with a status from 400 to 499."),
        "errorRate": num("errors / count."),
        "avg": num("Mean duration in ms.", True),
        "max": num("Slowest request in ms.", True),
        **_PCTS,
        **_METHOD,
    }),
    "Routes": obj({
        **_START_END,
        "routes": arr(ref("RouteStats"), "Busiest route first."),
        **_TIMESTAMP,
    }),
    "SeriesPoint": obj({
        "t": time("Start of the bucket (buckets are aligned on the Unix epoch)."),
        "count": integer("Requests in the bucket (0 for an empty one)."),
        "errors": integer("Requests with a status of 500 or more."),
        "errorRate": num("errors / count; null for an empty bucket.", True),
        **_PCTS,
    }),
    "Series": obj({
        **_START_END,
        "stepSeconds": num("Width of a bucket in seconds."),
        **_METHOD,
        "series": arr(obj({"route": string("The route template."),
                           "points": arr(ref("SeriesPoint"), "Every bucket of the range, oldest first.")}),
                      "Routes with requests in the range, by name."),
        **_TIMESTAMP,
    }),
    "TimelinePoint": obj({
        "t": time("Start of the bucket (buckets are aligned on the Unix epoch)."),
        "count": integer("Requests in the bucket (0 for an empty one: throughput stays a number)."),
        "errors": integer("Requests with a status of 500 or more."),
        "clientErrors": integer("Requests with a status from 400 to 499."),
        "errorRate": num("errors / count; null for an empty bucket (a gap, not a zero).", True),
        "avg": num("Mean duration in ms; null for an empty bucket.", True),
        **_PCTS,
    }),
    "Timeline": obj({
        **_START_END,
        "stepSeconds": num("Width of a bucket in seconds."),
        **_ROUTE,
        **_METHOD,
        "points": arr(ref("TimelinePoint"), "Every bucket of the range, oldest first (gaps stay in place)."),
        **_TIMESTAMP,
    }),
    "Histogram": obj({
        **_START_END,
        **_ROUTE,
        "total": integer("Requests in the range."),
        "bars": arr(obj({
            "low": num("Durations above this many ms (0 and high 0: the bar of 0 ms durations)."),
            "high": num("... up to and including this many ms."),
            "count": integer("Requests in the bar (exact: bars are whole sketch bins)."),
        }), "Bars of equal width on a log scale, shortest durations first, empty ones included."),
        **_TIMESTAMP,
    }),
    "Statuses": obj({
        **_START_END,
        **_ROUTE,
        "statuses": arr(obj({"status": integer("An HTTP status code."), "count": integer("Requests.")}),
                        "Per status code, by code (raw rows: kept raw_days)."),
        **_TIMESTAMP,
    }),
    "SlowRequests": obj({
        **_START_END,
        **_ROUTE,
        "requests": arr(_request("One request."), "Slowest first."),
        **_TIMESTAMP,
    }),
    "RequestQueries": obj({
        "request": _request("The request."),
        "queries": arr(obj({
            "endedAt": time("When the query ended (stamped by a clock read every 10 ms)."),
            "fingerprint": string("The statement with every literal replaced by ?."),
            "name": string("The name given to time_query(), if any.", True),
            "durationMs": num("How long it took, ms."),
            "success": {"type": "boolean", "description": "False when it raised."},
            "offsetMs": num("When it started, in ms after the request started (within the stamps' 10 ms)."),
        }), "In the order they ended."),
        **_TIMESTAMP,
    }),
    "ErrorGroup": obj({
        "signatureId": string("The 64-bit hash of type, module, function, line and message (decimal string)."),
        "type": string("The exception's class (module.QualName; a builtin's bare name)."),
        "module": string("Where it was raised: the innermost application frame's module,"),
        "function": string("its function"),
        "line": integer("and its line."),
        "message": string("The message with every literal removed (never the raw message)."),
        "count": integer("Occurrences in the range."),
        "routes": arr({"type": "string"}, "The routes it hit in the range."),
        "firstSeen": time("Its first occurrence among the stored rows."),
        "lastSeen": time("Its latest occurrence among the stored rows."),
        "firstInRange": time("Its first occurrence in the range."),
        "lastInRange": time("Its latest occurrence in the range."),
        "latest": obj({
            "ts": time("When."),
            "route": string("The route.", True),
            "requestId": string("The request's id (a decimal string), with pid and host.", True),
            "pid": integer("The process."),
            "host": string("Its host."),
        }, description="The latest occurrence in the range, and what ties it to its request."),
    }),
    "Errors": obj({
        **_START_END,
        **_ROUTE,
        "total": integer("Unhandled exceptions in the range."),
        "signatures": integer("Distinct signatures among them."),
        "groups": arr(ref("ErrorGroup"), "Most frequent first."),
        **_TIMESTAMP,
    }),
    "Fingerprint": obj({
        "fingerprint": string("The statement with every literal replaced by ?."),
        "fingerprintId": string("Stable 64-bit hash of the fingerprint, as a decimal string."),
        "name": string("The name given to time_query(), if any.", True),
        "count": integer("Executions."),
        "failures": integer("Executions that raised."),
        "totalDuration": num("Total time in ms."),
        "avgDuration": num("Mean duration in ms."),
        "p95Duration": num("Exact nearest-rank p95 duration in ms (raw rows)."),
        "maxDuration": num("Slowest execution in ms."),
        "routes": arr({"type": "string"}, "Route templates of the requests that ran it."),
        "nPlusOne": {"type": "boolean", "description": "Some request ran it nPlusOneThreshold times or more."},
        "nPlusOneRequests": integer("Requests that ran it nPlusOneThreshold times or more."),
        "maxPerRequest": integer("The most executions in a single request."),
    }),
    "Queries": obj({
        **_START_END,
        "nPlusOneThreshold": integer("Executions of one fingerprint in one request that make an N+1 pattern."),
        "queries": arr(ref("Fingerprint"), "Most total time first."),
        **_TIMESTAMP,
    }),
    "Process": obj({
        "host": string("Host name."),
        "pid": integer("Process id."),
        "live": {"type": "boolean",
                 "description": "Whether it reported within liveWithinSeconds of the end of the range."},
        "samples": integer("Samples in the range."),
        "current": integer("Resident memory at the latest sample, bytes."),
        "avg": num("Mean resident memory, bytes."),
        "max": integer("Peak resident memory, bytes."),
        "vms": integer("Virtual memory at the latest sample, bytes."),
        "cpuPercent": num("CPU use at the latest sample, percent of one core (null: not measurable, such as a "
                          "process's first sample).", True),
        "numThreads": integer("Threads at the latest sample."),
        "numFds": integer("Open file descriptors at the latest sample (null where there are none).", True),
        "firstSeen": time("First sample in the range."),
        "lastSeen": time("Latest sample in the range: when a gone process last reported."),
        "points": arr(obj({"t": time("Start of the bucket."), "avg": num("Mean RSS, bytes (null: no sample).", True),
                           "max": integer("Peak RSS, bytes (null: no sample).", True)}),
                      "RSS in every bucket of the range, oldest first."),
    }),
    "HostStats": obj({
        "host": string("The host name the rows were recorded on (Monitor(host=...), default the machine's name)."),
        "requests": integer("Requests."),
        "errors": integer("Requests answered with a status of 500 or more."),
        "errorRate": num("errors / requests (0 without requests)."),
        **_PCTS,
        "queries": integer("Database queries."),
        "queryTime": num("Total time of those queries in ms."),
        "processes": integer("Processes (pids) of the host seen in the range, by their requests or memory samples."),
        "lastSeen": time("The host's latest row in the range.", True),
    }),
    "HostRouteStats": obj({
        "route": string("The route template."),
        "requests": integer("Requests of the host on this route."),
        "errors": integer("Of those, with a status of 500 or more."),
        "errorRate": num("errors / requests."),
        **_PCTS,
    }),
    "Hosts": obj({
        **_START_END,
        "route": string("The route filter, if any.", True),
        "host": string("The host filter, if any.", True),
        "method": {"type": "string", "enum": ["exact"],
                   "description": "Percentiles are exact, from raw rows (the rollups keep no host)."},
        "errorBound": num("The percentiles' relative error bound: 0 (exact)."),
        "hosts": arr(ref("HostStats"), "Busiest host first."),
        "routes": arr(ref("HostRouteStats"), "With host=: that host's routes, busiest first."),
        **_TIMESTAMP,
    }, required=["start", "end", "route", "host", "method", "errorBound", "hosts", "timestamp"]),
    "Memory": obj({
        **_START_END,
        "stepSeconds": num("Width of a bucket in seconds."),
        "liveWithinSeconds": num("A process is live when it reported this recently before the end of the range."),
        "totals": obj({
            "liveProcesses": integer("Processes live at the end of the range."),
            "goneProcesses": integer("Processes that reported in the range and stopped."),
            "currentBytes": integer("Resident memory of the live processes, bytes (null: none live).", True),
        }),
        "processes": arr(ref("Process"), "Live processes first (most memory first), then gone ones."),
        **_TIMESTAMP,
    }),
    "Alert": obj({
        "rule": string("The rule's name."),
        "labels": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "The label set (the rule's `by` labels)."},
        "metric": string("The metric the rule watches."),
        "level": {"type": "string", "enum": ["info", "warning", "critical"]},
        "state": {"type": "string", "enum": ["pending", "firing"]},
        "value": num("The aggregate at the latest change (null: no data).", True),
        "threshold": num("The rule's threshold."),
        "since": time("When the current state was entered."),
        "evaluatedAt": time("The latest evaluation."),
        "message": string("The message of the latest transition."),
    }),
    "Alerts": obj({"alerts": arr(ref("Alert"), "Most severe first."),
                    "timestamp": time("When this answer was computed.")}),
    "AlertEvent": obj({
        "ts": time("When the transition happened."),
        "rule": string("The rule's name."),
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "metric": string("The metric the rule watches."),
        "level": {"type": "string", "enum": ["info", "warning", "critical"]},
        "from": string("The state left (inactive, pending, firing, resolved or nodata)."),
        "to": string("The state entered."),
        "value": num("The aggregate (null on a transition to nodata).", True),
        "threshold": num("The rule's threshold."),
        "message": string("The rule's message."),
    }),
    "AlertHistory": obj({
        "start": time("Start of the range."),
        "end": time("End of the range."),
        "events": arr(ref("AlertEvent"), "Newest first."),
        "timestamp": time("When this answer was computed."),
    }),
    "Silence": obj({
        "id": string("The silence's id."),
        "matchers": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "rule, metric, level or label name -> the value an alert must have."},
        "startsAt": time("When it started."),
        "endsAt": time("When it ends."),
        "comment": string("Why."),
        "createdAt": time("When it was created."),
    }),
    "Silences": obj({"silences": arr(ref("Silence"), "In force now, oldest first."),
                      "timestamp": time("When this answer was computed.")}),
    "SilenceCreated": obj({"silence": ref("Silence"), "timestamp": time("When it was created.")}),
    "SilenceExpired": obj({"expired": string("The id of the silence ended."),
                            "timestamp": time("When it was ended.")}),
    "NewSilence": obj({
        "matchers": {"type": "object", "minProperties": 1, "maxProperties": 16,
                     "additionalProperties": {"type": "string", "maxLength": 1000},
                     "description": "rule, metric, level or label name -> required value; all must match."},
        "duration": {"type": "string", "pattern": "^[1-9][0-9]{0,6}[smhdw]$",
                     "description": f"How long from now: {DURATION_FORM}. Not with endsAt."},
        "endsAt": time("When it ends (UTC). Not with duration."),
        "comment": {"type": "string", "maxLength": 1000, "description": "Why (optional)."},
    }, required=["matchers"]),
    "JobHealth": obj({
        "runs": integer("Runs since the owner started."),
        "failures": integer("Runs that raised."),
        "lastRunAt": time("The latest run.", True),
        "lastDurationSeconds": num("How long the latest run took.", True),
        "lastError": string("The latest run's error (shown with the token only).", True),
    }, required=["runs", "failures", "lastRunAt", "lastDurationSeconds"]),
    "Health": obj({
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "problems": arr({"type": "string"}, "Why the status is degraded."),
        "role": string("owner or producer.", True),
        "pid": integer("The owner's process id.", True),
        "recorded": integer("Metrics recorded by this process."),
        "flushed": integer("Metrics made durable."),
        "pending": integer("Metrics buffered, not yet flushed."),
        "dropped": {"type": "object", "additionalProperties": {"type": "integer"},
                    "description": "Dropped metrics by reason."},
        "rejected": {"type": "object", "additionalProperties": {"type": "integer"},
                     "description": "Rejected metrics by reason."},
        "flushFailures": integer("Failed flushes."),
        "lastFlushAt": time("The latest successful flush.", True),
        "lastFlushError": string("The latest flush error (shown with the token only).", True),
        "spool": {**obj({
            "backlog": integer("Ready segments waiting to be ingested."),
            "segments": integer("Segments ingested."),
            "rows": integer("Rows ingested."),
            "quarantined": integer("Unreadable segments set aside."),
            "failures": integer("Failed ingest runs."),
            "lastIngestAt": time("The latest ingest that loaded rows.", True),
            "lastError": string("The latest ingest error (shown with the token only).", True),
        }, required=["backlog", "segments", "rows", "quarantined", "failures", "lastIngestAt"]), "nullable": True},
        "jobs": {"type": "object", "additionalProperties": ref("JobHealth")},
        "recentFaults": {"type": "object", "additionalProperties": {"type": "number"},
                         "description": "Faults seen within faultWindowSeconds, by name (dropped, flush_failures, "
                                        "ingest_failures, quarantined, database_file_lost): seconds since last seen. "
                                        "The status is degraded while any is here; the counts are since the start."},
        "faultWindowSeconds": num("How long a fault keeps the status degraded after it was last seen."),
        "database": obj({
            "fileLost": integer("Times the database file was deleted or replaced under its owner and made anew."),
            "rowsLost": integer("Rows that only the lost files held."),
            "lastFileLostAt": time("When it last happened.", True),
        }, description="The owner's database file (owner only)."),
        "timestamp": time("When this answer was computed."),
    }, required=["status", "problems", "role", "pid", "recorded", "flushed", "pending", "dropped", "rejected",
                 "flushFailures", "lastFlushAt", "spool", "jobs", "recentFaults", "faultWindowSeconds",
                 "timestamp"]),
}

