"""Query-string parameters of the API: durations, times, ranges, steps and limits.

Every parser raises ``ApiError(400, ...)`` with a message saying what was wrong and the accepted form, so a
client never gets a 500 for a malformed parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.clock import utc_datetime

_DURATION = re.compile(r"^([1-9][0-9]{0,6})(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_RANGE = timedelta(days=400)  # as long as the hourly rollups are kept
MAX_BUCKETS = 10_000  # a series longer than this is more than any chart can draw
DEFAULT_WINDOW = "1h"
# Times the API takes: the Unix epoch on, and far enough from datetime's end that a range's arithmetic never
# overflows.
EARLIEST, LATEST = datetime(1970, 1, 1), datetime(9000, 1, 1)
# The steps a series picks from when none is asked for: the first that gives at most TARGET_BUCKETS.
_NICE_STEPS_SECONDS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200,
                       86_400, 604_800)
TARGET_BUCKETS = 120
DURATION_FORM = "a whole number followed by s, m, h, d or w, such as 5m, 1h, 24h or 7d"


class ApiError(Exception):
    """An error the API reports to the client in the JSON envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class TimeRange:
    """A closed range of time, as naive UTC datetimes (what DuckDB's TIMESTAMP columns hold)."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def duration(name: str, text: str) -> timedelta:
    """Parse ``5m``-style durations, from 1 second up to ``MAX_RANGE``."""
    match = _DURATION.match(text)
    if match is None:
        raise ApiError(400, f"{name}={text!r} is not a duration: write {DURATION_FORM}")
    value = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    if value > MAX_RANGE:
        raise ApiError(400, f"{name}={text!r} is longer than the {MAX_RANGE.days}d the store keeps; "
                            f"write {DURATION_FORM}, at most {MAX_RANGE.days}d")
    return value


def timestamp(name: str, text: str) -> datetime:
    """Parse an ISO 8601 time (naive means UTC) or a number of seconds since the Unix epoch."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        latest = (LATEST - EARLIEST).total_seconds()
        if not math.isfinite(seconds) or not 0 <= seconds < latest:
            raise ApiError(400, f"{name}={text!r}: epoch seconds must be from 0 to {latest:.0f} (year "
                                f"{LATEST.year})")
        return utc_datetime(seconds)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name}={text!r} is not a time: write ISO 8601 such as 2026-01-01T12:00:00Z "
                            "(UTC when no offset is given) or seconds since the Unix epoch") from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ApiError(400, f"{name}={text!r} is out of range once converted to UTC") from None
    if not EARLIEST <= value < LATEST:
        raise ApiError(400, f"{name}={text!r}: expected a time from {EARLIEST.year} to {LATEST.year - 1}")
    return value


def time_range(args: Mapping[str, str], now: float) -> TimeRange:
    """The range asked for: ``start``/``end`` (either may be left out) or ``window`` back from ``end``/now."""
    has_start, has_window = "start" in args, "window" in args
    if has_start and has_window:
        raise ApiError(400, "give either start (with an optional end) or window, not both")
    end = timestamp("end", args["end"]) if "end" in args else utc_datetime(now)
    if has_start:
        start = timestamp("start", args["start"])
    else:
        start = end - duration("window", args.get("window", DEFAULT_WINDOW))
        if start < EARLIEST:
            raise ApiError(400, f"end minus window falls before {EARLIEST.year}; give a later end")
    if start > end:
        raise ApiError(400, f"start ({start.isoformat()}Z) is after end ({end.isoformat()}Z); swap them")
    if end - start > MAX_RANGE:
        raise ApiError(400, f"the range from start to end spans more than {MAX_RANGE.days} days; narrow it")
    return TimeRange(start, end)


def step(args: Mapping[str, str], span: TimeRange) -> timedelta:
    """The bucket width of a series: ``step`` if given, else a round width giving about 120 buckets."""
    if "step" in args:
        value = duration("step", args["step"])
        buckets = span.seconds / value.total_seconds()
        if buckets > MAX_BUCKETS:
            raise ApiError(400, f"step={args['step']} cuts the range into {math.ceil(buckets)} buckets, more "
                                f"than {MAX_BUCKETS}; choose a longer step or a shorter range")
        return value
    for seconds in _NICE_STEPS_SECONDS:
        if span.seconds / seconds <= TARGET_BUCKETS:
            return timedelta(seconds=seconds)
    return timedelta(seconds=_NICE_STEPS_SECONDS[-1])


def integer(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer parameter from ``low`` to ``high``."""
    if name not in args:
        return default
    text = args[name]
    if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
        raise ApiError(400, f"{name}={text!r}: expected an integer from {low} to {high}")
    return int(text)


def text(args: Mapping[str, str], name: str, max_length: int = 1000) -> str | None:
    """An optional free-text parameter (bound as a value, never put into SQL text)."""
    value = args.get(name)
    if value is not None and (value == "" or len(value) > max_length):
        raise ApiError(400, f"{name}: expected from 1 to {max_length} characters, got {len(value)}")
    return value


def request_key(args: Mapping[str, str]) -> tuple[str, int, int, datetime]:
    """(host, pid, request id, the time it ended) of one request: what /api/requests/slowest lists for it."""
    missing = [name for name in ("host", "pid", "requestId", "at") if name not in args]
    if missing:
        raise ApiError(400, f"missing {', '.join(missing)}: a request is named by host, pid, requestId and at "
                            "(when it ended), as /api/requests/slowest lists them")
    host = text(args, "host", 255)
    assert host is not None
    pid = integer(args, "pid", 0, 0, 2**31 - 1)
    request_id = args["requestId"]
    if not re.fullmatch(r"-?[0-9]{1,18}", request_id):
        raise ApiError(400, f"requestId={request_id[:40]!r}: expected an integer of at most 18 digits")
    return host, pid, int(request_id), timestamp("at", args["at"])


def check_known(args: Mapping[str, str], known: tuple[str, ...]) -> None:
    """Refuse parameters the endpoint does not take: a typo would otherwise be silently ignored."""
    unknown = sorted(set(args) - set(known))
    if unknown:
        accepted = ", ".join(known) if known else "none"
        raise ApiError(400, f"unknown parameter(s) {', '.join(unknown)}; this endpoint accepts: {accepted}")


def iso(value: datetime | None) -> str | None:
    """A naive UTC datetime as ISO 8601 with a Z."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds") + "Z"


def iso_epoch(seconds: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with a Z."""
    return None if seconds is None else iso(utc_datetime(seconds))
