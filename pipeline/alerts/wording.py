"""How an alert reads to a person: values in the metric's unit, and the rule's condition as what held.

Rules and stored aggregates keep the metric's own unit (ms, bytes, a fraction, a count, a rate per second):
that is what SQL computes and what a TOML file states. Whatever a person reads (the log line, a webhook's
``text``, the demo's terminal, the back-test report) goes through this module, so all of them say
``p95(request_duration) = 863 ms, above 500 ms`` and never ``8.63e+02 (gt 500)``:

* durations in ms, memory in MB, an error fraction as a percentage, counts as the rows counted (requests,
  errors, queries, samples), rates per second (``req/s``), custom series as plain numbers;
* never scientific notation; a value is shown with as many decimals as it takes to differ from the threshold;
* the condition as what held (``above 500 ms``) or, once the alert ended, what holds now (``back under 500 ms``).
"""

from __future__ import annotations

import math

from .rules import METRICS, OPS

MB = 1024 * 1024
# What one counted row is, for the count and rate aggregations of the built-in metrics.
_COUNTED = {"request_duration": "requests", "request_rate": "requests", "error_rate": "errors",
            "query_duration": "queries", "memory_rss": "samples"}
_RATE_SUFFIX = {"requests": "req/s"}
# The condition a rule states, by its operator: what held while it fired.
_HELD = {"gt": "above", "gte": "at or above", "lt": "under", "lte": "at or under", "eq": "equal to"}
_MAX_DECIMALS = 6


def _scale_and_suffix(metric: str, aggregation: str) -> tuple[float, str]:
    """The factor from the stored unit to the shown one, and the suffix written after the number."""
    counted = _COUNTED.get(metric)
    if aggregation == "count":
        return 1.0, f" {counted}" if counted else ""
    if aggregation == "rate":
        return 1.0, f" {_RATE_SUFFIX.get(counted, f'{counted}/s')}" if counted else "/s"
    unit = METRICS[metric].unit if metric in METRICS else ""
    if unit == "ms":
        return 1.0, " ms"
    if unit == "bytes":
        return 1 / MB, " MB"
    if unit == "fraction":
        return 100.0, "%"
    return 1.0, ""  # a custom series: its own unit, which duckpulse does not know


def _decimals(x: float) -> int:
    """Decimals that show about three significant digits (none from 100 up)."""
    magnitude = abs(x)
    if magnitude >= 100 or magnitude == 0:
        return 0
    if magnitude >= 10:
        return 1
    return min(_MAX_DECIMALS, 2 - math.floor(math.log10(magnitude)))


def _number(x: float, decimals: int) -> str:
    text = f"{x:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_value(metric: str, aggregation: str, value: float, *, against: float | None = None) -> str:
    """``value`` (in the metric's stored unit) as a person reads it: ``863 ms``, ``265 MB``, ``4.1%``, ``12 req/s``.

    With ``against`` (the threshold), decimals are added until the two no longer print the same, so a value
    just over its threshold never reads ``258 MB, above 258 MB``.
    """
    scale, suffix = _scale_and_suffix(metric, aggregation)
    shown = value * scale
    decimals = _decimals(shown)
    if against is not None and against != value:
        other = against * scale
        while decimals < _MAX_DECIMALS and _number(shown, decimals) == _number(other, decimals):
            decimals += 1
    return _number(shown, decimals) + suffix


def condition(metric: str, aggregation: str, op: str, value: float, threshold: float, *, ended: bool) -> str:
    """The aggregate and how it stands against the threshold: ``p95(request_duration) = 863 ms, above 500 ms``.

    While an alert fires, the rule's condition is stated as what held; once it ended (``ended``), or when a
    firing alert is only held by ``keep_firing_seconds``, what holds now: ``back under 500 ms``.
    """
    limit = format_value(metric, aggregation, threshold)
    shown = format_value(metric, aggregation, value, against=threshold)
    held = OPS[op](value, threshold)
    if held and not ended:
        relation = f"{_HELD[op]} {limit}"
    else:
        side = "above" if value > threshold else "under" if value < threshold else "at"
        relation = f"back {side} {limit}" if not held else f"{side} {limit}"
        if not ended:
            relation += ", still firing (keep_firing_seconds)"
    return f"{aggregation}({metric}) = {shown}, {relation}"


def no_data(metric: str, aggregation: str, window_seconds: float) -> str:
    """What a notification without a value says: the window had no rows."""
    return f"{aggregation}({metric}): no data in the last {_number(window_seconds, 1)} s"


def threshold(metric: str, aggregation: str, op: str, value: float) -> str:
    """A rule's condition in a one-line description: ``gt 500 ms``, ``gt 2%``."""
    return f"{op} {format_value(metric, aggregation, value)}"
