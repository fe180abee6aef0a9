"""Alert rules: what to watch, how to aggregate it over a window, and when the result is a problem.

A ``Rule`` is a frozen value, checked when it is built: a bad field raises ``RuleError`` (a ``ConfigError``)
naming the field, the value and the accepted values. Rules come from Python (``make_rule``, which is what
``Monitor.add_threshold`` calls) or from a TOML file (``load_rules_file``), whose errors also name the file and
the line of the offending field.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import tomldoc
from ..errors import ConfigError

AGGREGATIONS = ("p50", "p95", "p99", "avg", "max", "min", "count", "rate")
OPS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le, "eq": operator.eq,
}
LEVELS = ("info", "warning", "critical")
LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}
# The sweep query has eight label positions (l1..l8); a rule's `by` and `where` keys together use one each.
MAX_LABEL_KEYS = 8
DEFAULT_REPEAT_INTERVAL_SECONDS = 3600.0
# The longest window, for_seconds, keep_firing_seconds and repeat_interval_seconds a rule may have: a year. Longer
# windows reach past every tier duckpulse keeps (raw rows 7 days, hour rollups 400 days), and from ~3e12 s on a
# window start is no timestamp at all, which failed every sweep of every rule (issue 13, item 12).
MAX_RULE_SECONDS = 366 * 86_400.0
MB = 1024 * 1024


@dataclass(frozen=True)
class MetricSpec:
    """A built-in metric: the table its rows come from and the labels a rule may group or filter by."""

    name: str
    # The table read by sweep-aggregates (requests, queries, process_samples; points for custom series).
    source: str
    # Label keys in the order of that table's positions l1..l8 in sql/alerts.sql.
    labels: tuple[str, ...]
    # The aggregations that mean something for this metric.
    aggregations: tuple[str, ...]
    # What a value is measured in (shown in messages and back-test output).
    unit: str


_REQUEST_LABELS = ("route", "method", "status", "pid", "host")
METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("request_duration", "requests", _REQUEST_LABELS, AGGREGATIONS, "ms"),
    # Each request counts 1 if its status is >= 500, else 0: avg is the error fraction, count the errors.
    MetricSpec("error_rate", "requests", _REQUEST_LABELS, ("avg", "count", "rate"), "fraction"),
    MetricSpec("request_rate", "requests", _REQUEST_LABELS, ("count", "rate"), "requests"),
    MetricSpec("query_duration", "queries", ("fingerprint", "name", "route", "success", "pid", "host"),
               AGGREGATIONS, "ms"),
    MetricSpec("memory_rss", "process_samples", ("pid", "host"), AGGREGATIONS, "bytes"),
)}
CUSTOM_SOURCE = "points"

# The fields of a rule, as a TOML [[rule]] table spells them; the first four are required.
REQUIRED_FIELDS = ("metric", "op", "value", "level")
FIELDS = (*REQUIRED_FIELDS, "name", "message", "aggregation", "window_seconds", "by", "where", "for_seconds",
          "keep_firing_seconds", "repeat_interval_seconds", "min_count")


class RuleError(ConfigError):
    """A rule is malformed; ``field`` names the offending field (None when it is the rule as a whole), and
    ``detail`` says what is wrong with it without naming the rule (a rules file names it its own way)."""

    def __init__(self, message: str, field: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.detail = detail or message


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One alert rule, evaluated per label set of ``by`` at every sweep."""

    # Unique among a monitor's rules; alert_state rows are keyed by it, so keep it stable across restarts.
    name: str
    # request_duration, query_duration, error_rate, request_rate, memory_rss, or a custom series name.
    metric: str
    # p50, p95, p99, avg, max, min, count or rate (count per second of window).
    aggregation: str = "max"
    # The aggregate covers (now - window_seconds, now].
    window_seconds: float = 60.0
    # Label keys giving one alert per label set (route, method, status, fingerprint, pid, host, ...).
    by: tuple[str, ...] = ()
    # Label equality filters, as sorted (key, value) pairs; values compare as text (status "500").
    where: tuple[tuple[str, str], ...] = ()
    # gt, gte, lt, lte or eq: the aggregate `op` value is a problem.
    op: str
    # The threshold, in the metric's unit (ms, bytes, fraction, count, per second).
    value: float
    # info, warning or critical; a firing critical inhibits the lower levels of the same metric and labels.
    level: str
    # Free text delivered with every notification.
    message: str = ""
    # The condition must hold this long (pending) before the alert fires.
    for_seconds: float = 0.0
    # A firing alert stays firing this long after the condition last held (hysteresis against flapping).
    keep_firing_seconds: float = 0.0
    # At most one firing notification per rule and label set in this many seconds.
    repeat_interval_seconds: float = DEFAULT_REPEAT_INTERVAL_SECONDS
    # A label set with fewer rows (events) than this in the window is treated as having none: too few to judge
    # (one failed request on a quiet route is not a route failing all the time).
    min_count: int = 1

    def __post_init__(self) -> None:
        where = self.where.items() if isinstance(self.where, Mapping) else self.where
        object.__setattr__(self, "where", tuple(sorted((str(k), v) for k, v in where)))
        object.__setattr__(self, "by", (self.by,) if isinstance(self.by, str) else tuple(self.by))
        self._validate()

    def _fail(self, field: str, message: str) -> RuleError:
        return RuleError(f"rule {self.name!r}: {field}: {message}", field, message)

    def _validate(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise RuleError(f"rule name {self.name!r}: expected a non-empty string", "name")
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise self._fail("metric", f"{self.metric!r} is not a metric; use one of {', '.join(METRICS)} "
                                       "or the name of a custom counter, gauge or histogram")
        spec = METRICS.get(self.metric)
        accepted = spec.aggregations if spec else AGGREGATIONS
        if self.aggregation not in accepted:
            hint = " (error_rate counts a request as 1 when its status is >= 500: avg is the error fraction)" \
                if self.metric == "error_rate" else ""
            raise self._fail("aggregation", f"{self.aggregation!r} is not accepted for {self.metric}; use one "
                                            f"of {', '.join(accepted)}{hint}")
        for field, minimum in (("window_seconds", None), ("for_seconds", 0.0), ("keep_firing_seconds", 0.0),
                               ("repeat_interval_seconds", None)):
            value = getattr(self, field)
            if not _is_number(value) or (value < 0 if minimum == 0.0 else value <= 0):
                bound = ">= 0" if minimum == 0.0 else "> 0"
                raise self._fail(field, f"{value!r} is not accepted; expected a finite number of seconds {bound} "
                                        f"and at most {MAX_RULE_SECONDS:.0f} (366 days)")
            if value > MAX_RULE_SECONDS:
                raise self._fail(field, f"{value!r} seconds is longer than the {MAX_RULE_SECONDS:.0f} (366 days) a "
                                        "rule may use; give a shorter duration (e.g. 86400 for a day)")
        self._validate_labels(spec)
        if self.op not in OPS:
            raise self._fail("op", f"{self.op!r} is not an operator; use one of {', '.join(OPS)}")
        if not _is_number(self.value):
            raise self._fail("value", f"{self.value!r} is not a finite number (the threshold, in "
                                      f"{spec.unit if spec else 'the series unit'})")
        if self.level not in LEVELS:
            raise self._fail("level", f"{self.level!r} is not a level; use one of {', '.join(LEVELS)}")
        if not isinstance(self.message, str):
            raise self._fail("message", f"{self.message!r} is not a string")
        if not isinstance(self.min_count, int) or isinstance(self.min_count, bool) or self.min_count < 1:
            raise self._fail("min_count", f"{self.min_count!r} is not accepted; expected an integer >= 1 (the "
                                          "fewest rows in the window for the rule to judge a label set)")

    def _validate_labels(self, spec: MetricSpec | None) -> None:
        accepted = f"use one of {', '.join(spec.labels)}" if spec else "use a label key of the custom series"
        for field, keys in (("by", self.by), ("where", [k for k, _ in self.where])):
            for key in keys:
                if not isinstance(key, str) or not key or (spec is not None and key not in spec.labels):
                    raise self._fail(field, f"{key!r} is not a label of {self.metric}; {accepted}")
        if len(set(self.by)) != len(self.by):
            raise self._fail("by", f"{list(self.by)} names a label twice")
        for key, value in self.where:
            if not isinstance(value, str):
                raise self._fail("where", f"{key}={value!r}: label values are matched as text; give a string")
        if len(self.key_names) > MAX_LABEL_KEYS:
            raise self._fail("by", f"`by` and `where` use {len(self.key_names)} label keys together; at most "
                                   f"{MAX_LABEL_KEYS} are supported")

    # -- derived -----------------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """The table the rule's rows come from."""
        spec = METRICS.get(self.metric)
        return spec.source if spec else CUSTOM_SOURCE

    @property
    def key_names(self) -> tuple[str, ...]:
        """Every label key the rule groups on: ``by`` plus the ``where`` keys (grouped so they can be matched)."""
        keys = set(self.by) | {k for k, _ in self.where}
        spec = METRICS.get(self.metric)
        return tuple(k for k in spec.labels if k in keys) if spec else tuple(sorted(keys))

    @property
    def counts_events(self) -> bool:
        """count and rate have a value (zero) even when no row falls in the window."""
        return self.aggregation in ("count", "rate")

    def breached(self, value: float) -> bool:
        """Whether ``value`` is a problem: ``value op threshold``."""
        return OPS[self.op](value, self.value)

    def describe(self) -> str:
        """A one-line human description, e.g. ``p95(request_duration)[300s] by route gt 800 ms``."""
        from .wording import threshold  # wording reads this module's METRICS: imported here, not at the top

        by = f" by {','.join(self.by)}" if self.by else ""
        where = "{" + ",".join(f"{k}={v}" for k, v in self.where) + "}" if self.where else ""
        condition = threshold(self.metric, self.aggregation, self.op, self.value)
        least = f" (at least {self.min_count} rows)" if self.min_count > 1 else ""
        return f"{self.aggregation}({self.metric}{where})[{self.window_seconds:g}s]{by} {condition}{least}"


def _text(value: object) -> object:
    """Label values compare as text in SQL: True -> 'true' (DuckDB's BOOLEAN::VARCHAR), 500 -> '500'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


def default_name(metric: str, op: str, value: float, *, aggregation: str, by: Iterable[str],
                 where: Iterable[tuple[str, str]]) -> str:
    """The name a rule gets when none is given: stable, so its stored state is found again after a restart."""
    name = f"{metric}_{aggregation}_{op}_{value:g}" if _is_number(value) else f"{metric}_{aggregation}_{op}"
    by = list(by)
    if by:
        name += "_by_" + "_".join(by)
    for key, val in where:
        name += f"_{key}={val}"
    return name


def make_rule(metric: str, op: str, value: float, level: str, message: str = "", *, aggregation: str = "max",
              window_seconds: float = 60.0, for_seconds: float = 0.0, keep_firing_seconds: float = 0.0,
              by: Iterable[str] | str = (), where: Mapping[str, object] | None = None, name: str | None = None,
              repeat_interval_seconds: float = DEFAULT_REPEAT_INTERVAL_SECONDS, min_count: int = 1) -> Rule:
    """Build a rule from friendly arguments (a mapping for ``where``, ints and bools as label values)."""
    if where is not None and not isinstance(where, Mapping):
        raise RuleError(f"where={where!r}: expected a mapping of label -> value", "where")
    by_keys = (by,) if isinstance(by, str) else tuple(by)
    pairs = tuple(sorted((str(k), _text(v)) for k, v in (where or {}).items()))
    return Rule(name=name if name is not None else default_name(metric, op, value, aggregation=aggregation,
                                                                by=by_keys, where=pairs),  # type: ignore[arg-type]
                metric=metric, aggregation=aggregation, window_seconds=window_seconds, by=by_keys,
                where=pairs, op=op, value=value, level=level, message=message,  # type: ignore[arg-type]
                for_seconds=for_seconds, keep_firing_seconds=keep_firing_seconds,
                repeat_interval_seconds=repeat_interval_seconds, min_count=min_count)


def default_rules() -> list[Rule]:
    """The plan's thresholds: any single request over 1 s (warning) or 3 s (critical), any query over 100 ms
    or 1 s, a process's resident memory over 512 MB or 1 GB; and a route that fails every time."""
    return [
        make_rule("request_duration", "gt", 1000, "warning", "a request took longer than 1 s",
                  by=("route",), name="request_over_1s"),
        make_rule("request_duration", "gt", 3000, "critical", "a request took longer than 3 s",
                  by=("route",), name="request_over_3s"),
        make_rule("query_duration", "gt", 100, "warning", "a query took longer than 100 ms",
                  by=("fingerprint",), name="query_over_100ms"),
        make_rule("query_duration", "gt", 1000, "critical", "a query took longer than 1 s",
                  by=("fingerprint",), name="query_over_1s"),
        make_rule("memory_rss", "gt", 512 * MB, "warning", "a process uses more than 512 MB of memory",
                  by=("host", "pid"), name="memory_over_512mb"),
        make_rule("memory_rss", "gt", 1024 * MB, "critical", "a process uses more than 1 GB of memory",
                  by=("host", "pid"), name="memory_over_1gb"),
        # Every request to a route answered 5xx over 5 minutes, and at least 5 of them: one failed request on a
        # quiet route (or two on a route called twice an hour) pages nobody, while a route broken under real
        # traffic fires at the first sweep after its fifth straight failure, and resolves with the first
        # success. The window is long enough that a route called once a minute still reaches 5.
        make_rule("error_rate", "gte", 1.0, "critical", "every request to this route failed (HTTP 5xx) in the "
                  "last 5 minutes", aggregation="avg", window_seconds=300, by=("route",), min_count=5,
                  name="route_always_failing"),
    ]


# -- TOML rules files ----------------------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*\[")


def field_line(lines: list[str], index: int | None, field: str | None, array: str = "rule") -> int:
    """The 1-based line of ``field`` in the ``index``-th ``[[array]]`` table (its header line if the field is
    missing; tomllib reports no positions for values it parsed fine, so the text is scanned)."""
    array_header = re.compile(rf"^\s*\[\[\s*{re.escape(array)}\s*\]\]")
    headers = [n for n, line in enumerate(lines) if array_header.match(line)]
    if index is None or index >= len(headers):
        start, end = 0, len(lines)
        fallback = headers[0] if headers else 0
    else:
        start = fallback = headers[index]
        end = next((n for n in range(start + 1, len(lines)) if _HEADER.match(lines[n])
                    and not re.match(rf"^\s*\[\s*{re.escape(array)}\.", lines[n])), len(lines))
    if field is not None:
        key = re.compile(rf"""^\s*(?:{re.escape(field)}|"{re.escape(field)}"|'{re.escape(field)}')\s*[=.]"""
                         rf"""|^\s*\[\s*{re.escape(array)}\.{re.escape(field)}\s*\]""")
        for n in range(start, end):
            if key.match(lines[n]):
                return n + 1
    return fallback + 1


def _rule_from_table(table: Mapping[str, Any]) -> Rule:
    unknown = [key for key in table if key not in FIELDS]
    if unknown:
        raise RuleError(f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}", unknown[0])
    missing = [key for key in REQUIRED_FIELDS if key not in table]
    if missing:
        raise RuleError(f"missing field {missing[0]!r}; every rule needs {', '.join(REQUIRED_FIELDS)}", missing[0])
    by = table.get("by", [])
    if not isinstance(by, str | list) or not all(isinstance(k, str) for k in by):
        raise RuleError(f"{by!r} is not a list of label names, e.g. by = [\"route\"]", "by")
    where = table.get("where")
    if where is not None and not isinstance(where, dict):
        raise RuleError(f"{where!r} is not a table, e.g. where = {{ method = \"POST\" }}", "where")
    options = {k: v for k, v in table.items() if k not in ("metric", "op", "value", "level", "by", "where")}
    return make_rule(table["metric"], table["op"], table["value"], table["level"], by=by, where=where, **options)


def parse_rules(text: str, filename: str) -> list[Rule]:
    """The rules of a TOML document (``[[rule]]`` tables); any error names ``filename:line`` and the field."""
    lines = text.splitlines()
    try:
        data = tomldoc.loads(text)
    except tomldoc.TomlError as exc:
        raise RuleError(f"{filename}:{exc.line}: not valid TOML: {exc}") from None
    for key in data:
        if key != "rule":
            raise RuleError(f"{filename}:{field_line(lines, None, key)}: unknown top-level key {key!r}; write "
                            "each rule as a [[rule]] table", key)
    return rules_from_document(data.get("rule", []), lines, filename)


def rules_from_document(tables: Any, lines: list[str], filename: str) -> list[Rule]:
    """The rules of a parsed document's ``rule`` array (a rules file's, or duckpulse.toml's); ``lines`` are the
    document's text, to name the line of a bad field."""
    if not isinstance(tables, list):
        raise RuleError(f"{filename}:{field_line(lines, None, 'rule')}: 'rule' must be an array of tables: "
                        "write each rule under its own [[rule]] header", "rule")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        label = f"rule #{index + 1}" + (f" ({table['name']!r})" if isinstance(table.get("name"), str) else "")
        try:
            rule = _rule_from_table(table)
        except RuleError as exc:
            line = field_line(lines, index, exc.field)
            field = f", field {exc.field!r}" if exc.field else ""
            raise RuleError(f"{filename}:{line}: {label}{field}: {exc.detail}", exc.field) from None
        if rule.name in seen:
            line = field_line(lines, index, "name")
            raise RuleError(f"{filename}:{line}: {label}, field 'name': the name {rule.name!r} is already used by "
                            f"rule #{seen[rule.name] + 1}; give each rule its own name", "name")
        seen[rule.name] = index
        rules.append(rule)
    return rules


def load_rules_file(path: str | Path) -> list[Rule]:
    """The rules of a TOML file; an unreadable or invalid file raises RuleError naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: cannot read the rules file: {exc}") from exc
    return parse_rules(text, str(path))
