"""The data side of a sweep: every rule's aggregate per label set, computed in one set-based SQL statement.

Rules are not queried one by one. They are folded into *combos*, one per distinct (table or custom series,
window, label keys); each source table is read once over its longest window and joined to its combos, every
combo is grouped once (all aggregations at the same time, percentiles only where a rule asks for one), and the
result is joined to the rules, which pick their aggregation and filter on their ``where`` values. The rules and
combos travel as temporary tables (pipeline/relations.py), encoded once per rule set: the SQL text in
``sql/alerts.sql`` never changes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import sqlfiles
from ..clock import epoch_us
from ..relations import Columns, encode, temp_table
from .rules import MAX_LABEL_KEYS, METRICS, Rule
from .state import SQL, Labels, StateKey

if TYPE_CHECKING:
    from ..store import Store

SOURCES = ("requests", "queries", "process_samples", "points")
_SINCE_PARAM = {"requests": "requests_since_us", "queries": "queries_since_us",
                "process_samples": "samples_since_us", "points": "points_since_us"}
_PERCENTILES = ("p50", "p95", "p99")


def positions(rule: Rule) -> dict[str, int]:
    """Each label key of the rule -> its position (0-based l1..l8) in sweep-aggregates."""
    spec = METRICS.get(rule.metric)
    if spec is not None:
        return {key: spec.labels.index(key) for key in rule.key_names}
    return {key: i for i, key in enumerate(rule.key_names)}


@dataclass(frozen=True)
class Folded:
    """Rules folded into the registered tables of sweep-aggregates, and how to read its rows back.

    Nothing here depends on the time, so a sweep reuses it for as long as the rules stay the same.
    """

    combos: Columns
    rules: Columns
    # For each rule (by its index in the rules table): its name, its `by` keys (sorted) and their columns.
    outputs: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...]
    # The longest window read from each source table (absent: no rule reads it).
    longest: dict[str, float]

    @functools.cached_property
    def encoded(self) -> tuple[bytes, bytes]:
        """The combos and rules tables as Parquet bytes, made once: encoding them in Python cost a sweep of
        bench_sweep's 1,000 rules more than the SQL that reads them (cached_property writes the instance's
        __dict__, which a frozen dataclass allows)."""
        return encode(self.combos), encode(self.rules)

    def params(self, now: float) -> dict[str, Any]:
        """The query's parameters at ``now``: each source is read over its longest window only."""
        params: dict[str, Any] = {"now_us": epoch_us(now)}
        params.update({_SINCE_PARAM[source]: epoch_us(now - self.longest.get(source, 0.0)) for source in SOURCES})
        return params


@functools.lru_cache(maxsize=8)
def fold(rules: tuple[Rule, ...]) -> Folded:
    """Fold ``rules`` into combos (one per table or custom series, window and label keys) and a rules table."""
    combo_ids: dict[tuple[str, float, tuple[str, ...]], int] = {}
    combo_rows: list[dict[str, Any]] = []
    rule_rows: list[dict[str, Any]] = []
    outputs: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = []
    longest: dict[str, float] = {}
    for index, rule in enumerate(rules):
        pos = positions(rule)
        window = float(rule.window_seconds)
        # built-in metrics of one table share a combo (one pass computes durations and errors alike)
        key = (rule.source if rule.metric in METRICS else rule.metric, window, rule.key_names)
        combo = combo_ids.get(key)
        if combo is None:
            combo = combo_ids[key] = len(combo_rows)
            builtin = rule.metric in METRICS
            row: dict[str, Any] = {"combo": combo, "source": rule.source, "metric": rule.metric,
                                   "window_seconds": window, "need_q": False}
            for i in range(MAX_LABEL_KEYS):
                row[f"k{i + 1}"] = builtin and i in pos.values()
                row[f"n{i + 1}"] = None if builtin or i >= len(rule.key_names) else rule.key_names[i]
            combo_rows.append(row)
            longest[rule.source] = max(longest.get(rule.source, 0.0), window)
        if rule.aggregation in _PERCENTILES:
            combo_rows[combo]["need_q"] = True
        where = dict(rule.where)
        rule_row: dict[str, Any] = {"rule_index": index, "combo": combo, "metric": rule.metric,
                                    "aggregation": rule.aggregation, "window_seconds": window, "op": rule.op,
                                    "threshold": float(rule.value), "min_count": float(rule.min_count)}
        key_at = {p: k for k, p in pos.items()}
        for i in range(MAX_LABEL_KEYS):
            rule_row[f"w{i + 1}"] = where.get(key_at[i]) if i in key_at else None
            rule_row[f"b{i + 1}"] = i in key_at and key_at[i] in rule.by
        rule_rows.append(rule_row)
        by = sorted(rule.by)
        outputs.append((rule.name, tuple(by), tuple(1 + pos[k] for k in by)))
    labels = range(1, MAX_LABEL_KEYS + 1)
    combo_types = {"combo": "INTEGER", "source": "VARCHAR", "metric": "VARCHAR", "window_seconds": "DOUBLE",
                   "need_q": "BOOLEAN", **{f"k{i}": "BOOLEAN" for i in labels}, **{f"n{i}": "VARCHAR" for i in labels}}
    rule_types = {"rule_index": "INTEGER", "combo": "INTEGER", "metric": "VARCHAR", "aggregation": "VARCHAR",
                  "window_seconds": "DOUBLE", "op": "VARCHAR", "threshold": "DOUBLE", "min_count": "DOUBLE",
                  **{f"w{i}": "VARCHAR" for i in labels}, **{f"b{i}": "BOOLEAN" for i in labels}}
    return Folded(_columns(combo_rows, combo_types), _columns(rule_rows, rule_types), tuple(outputs), longest)


def _columns(rows: list[dict[str, Any]], types: dict[str, str]) -> Columns:
    return {name: (sql_type, tuple(row[name] for row in rows)) for name, sql_type in types.items()}


def aggregate(store: Store, rules: Sequence[Rule], now: float) -> dict[StateKey, float]:
    """Every rule's aggregate over its window ending at ``now``, by (rule name, label set).

    Reads through the calling thread's read cursor, so a sweep never holds up the flusher's writes.
    """
    if not rules:
        return {}
    folded = fold(tuple(rules))
    combos, rules_table = folded.encoded
    with (store.reading() as cursor, temp_table(cursor, "__alert_combos", combos),
          temp_table(cursor, "__alert_rules", rules_table)):
        rows = cursor.execute(sqlfiles.query(SQL, "sweep-aggregates"), folded.params(now)).fetchall()
    samples: dict[StateKey, float] = {}
    outputs = folded.outputs
    for row in rows:
        value = row[9]
        if value is None:
            continue
        name, keys, columns = outputs[row[0]]
        if not keys:
            labels: Labels = ()
        elif len(keys) == 1:
            labels = ((keys[0], row[columns[0]]),)
        else:
            labels = tuple(zip(keys, [row[c] for c in columns], strict=True))
        samples[(name, labels)] = float(value)
    return samples
