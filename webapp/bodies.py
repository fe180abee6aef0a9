"""Bodies that are not reads of the store: ``/api/health`` from ``Monitor.stats()``, and a silence from the body
of ``POST /api/silences``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from pipeline.alerts import delivery as alert_delivery

from . import params
from .params import ApiError, iso_epoch

SILENCE_FIELDS = ("matchers", "duration", "endsAt", "comment")
MAX_MATCHERS = 16


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
