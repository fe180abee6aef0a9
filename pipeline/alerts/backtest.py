"""Back-testing: how often, and for how long, rules would have fired over the stored history.

A rule is replayed at evaluation times ``since, since + step, ..., now``, where its step is the requested one
but at least a tenth of its window (``max_steps_per_window``): successive windows then overlap by at most 90%,
which bounds the work at ten window series per row, and a one-hour rule is still judged every six minutes.
The SQL (``backtest-runs``) cuts the raw rows into step-long buckets, steps each bucket into the series of
windows that hold it, aggregates per rule, time and label set like a sweep (percentiles exactly, nearest rank:
their values are stepped into every window that holds them, the costly part), and returns the runs of
consecutive breaching times. This module only turns runs into
episodes with the state machine's timing: a run fires once it has lasted ``for_seconds``, and a firing alert
ends at the first evaluation ``keep_firing_seconds`` after its last breach (a breach before that continues it).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from .. import sqlfiles
from ..errors import ConfigError
from ..relations import temp_table
from . import windows
from .rules import Rule, load_rules_file
from .state import SQL

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"`` or ``"2w"``."""
    match = _DURATION.match(text)
    if not match or float(match[1]) <= 0:
        raise ConfigError(f"duration {text!r}: expected a positive number with an optional unit s, m, h, d or w "
                          "(e.g. 90s, 15m, 12h, 7d)")
    return float(match[1]) * _UNIT_SECONDS[match[2] or "s"]


@dataclass(frozen=True)
class BacktestResult:
    """What one rule would have done over the replayed history."""

    rule: Rule
    # Evaluation times replayed, and the step between them.
    evaluations: int
    step_seconds: float
    # Firing episodes (each would have notified once, plus repeats), their total and longest duration.
    fired: int
    firing_seconds: float
    longest_seconds: float
    # Label sets that fired at least once.
    label_sets: int
    # Breaching runs too short for for_seconds (pending, never firing).
    pending_only: int


def _episodes(runs: Sequence[tuple[int, int]], rule: Rule, step: float,
              last_k: int) -> tuple[list[float], int]:
    """Firing durations of one label set's runs of breaching evaluations (k, inclusive), and the runs that
    never got past pending."""
    for_steps = math.ceil(rule.for_seconds / step - 1e-9)
    keep_steps = max(1, math.ceil(rule.keep_firing_seconds / step - 1e-9))
    durations: list[float] = []
    pending_only = 0
    fire_k: int | None = None  # when the current episode started firing
    end_k = -1  # the first evaluation at which the current episode is resolved
    for first, last in runs:
        if fire_k is not None and first <= end_k:
            end_k = last + keep_steps  # a breach while still firing continues the episode
            continue
        if fire_k is not None:
            durations.append((min(end_k, last_k + 1) - fire_k) * step)
            fire_k = None
        if first + for_steps <= last:
            fire_k, end_k = first + for_steps, last + keep_steps
        else:
            pending_only += 1
    if fire_k is not None:
        durations.append((min(end_k, last_k + 1) - fire_k) * step)
    return durations, pending_only


def rule_step(rule: Rule, step_seconds: float, max_steps_per_window: int = 10) -> float:
    """The step a rule is replayed at: the requested one, but no finer than its window / max_steps_per_window."""
    return max(float(step_seconds), rule.window_seconds / max_steps_per_window)


def backtest(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule], *, since_seconds: float, now: float,
             step_seconds: float = 60.0, max_steps_per_window: int = 10) -> list[BacktestResult]:
    """Replay ``rules`` over the ``since_seconds`` before ``now`` (see the module docstring for the steps)."""
    if not step_seconds > 0 or not since_seconds > 0 or max_steps_per_window < 1:
        raise ConfigError(f"backtest needs since_seconds > 0, step_seconds > 0 and max_steps_per_window >= 1 "
                          f"(got {since_seconds!r}, {step_seconds!r}, {max_steps_per_window!r})")
    start = now - since_seconds
    results = []
    if rules:
        folded = windows.fold(tuple(rules))
        steps = [max(float(step_seconds), w / max_steps_per_window) for w in folded.combos["window_seconds"][1]]
        combos = {**folded.combos, "step": ("DOUBLE", steps),
                  "steps": ("BIGINT", [int(since_seconds // s) for s in steps])}
        # rows are read from the start of the earliest window (start - longest) to now
        params: dict[str, Any] = {**folded.params(start), "now_us": round(now * 1_000_000), "start": start,
                                  "start_us": round(start * 1_000_000)}
        with temp_table(con, "__alert_combos", combos), temp_table(con, "__alert_rules", folded.rules):
            rows = con.execute(sqlfiles.query(SQL, "backtest-runs"), params).fetchall()
    else:
        rows = []
    by_rule: dict[int, dict[tuple[Any, ...], list[tuple[int, int]]]] = {}
    for row in rows:  # ordered by rule, label set and first time
        by_rule.setdefault(row[0], {}).setdefault(tuple(row[1:9]), []).append((row[9], row[10]))
    for index, rule in enumerate(rules):
        durations: list[float] = []
        pending_only = label_sets = 0
        step = rule_step(rule, step_seconds, max_steps_per_window)
        last_k = int(since_seconds // step)
        for runs in by_rule.get(index, {}).values():
            fired, pending = _episodes(runs, rule, step, last_k)
            durations.extend(fired)
            pending_only += pending
            label_sets += bool(fired)
        results.append(BacktestResult(rule, last_k + 1, step, len(durations), sum(durations),
                                      max(durations, default=0.0), label_sets, pending_only))
    return results


def _human(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


def report(results: Sequence[BacktestResult]) -> str:
    """One line per rule: how many times it would have fired and for how long."""
    lines = []
    for r in results:
        if r.fired:
            line = (f"{r.rule.name}: fired {r.fired} time{'s' if r.fired != 1 else ''}, firing "
                    f"{_human(r.firing_seconds)} in total (longest {_human(r.longest_seconds)}), "
                    f"{r.label_sets} label set{'s' if r.label_sets != 1 else ''}")
        else:
            line = f"{r.rule.name}: never fired"
        if r.pending_only:
            line += f"; {r.pending_only} breach{'es' if r.pending_only != 1 else ''} shorter than for_seconds"
        lines.append(f"{line}  [{r.rule.describe()}; {r.evaluations} evaluations every {r.step_seconds:g}s]")
    return "\n".join(lines)


def parse_time(text: str) -> float:
    """Epoch seconds from an ISO 8601 time (UTC unless it says otherwise) or a number of epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"time {text!r}: expected ISO 8601 (2026-01-07T12:00:00Z) or epoch seconds") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def backtest_file(db_path: str | Path, rules_path: str | Path, *, since: str, step: str = "60s",
                  until: str | None = None) -> str:
    """``duckpulse alerts backtest``: replay a TOML rules file over a DuckDB file (opened read-only)."""
    rules = load_rules_file(rules_path)
    now = time.time() if until is None else parse_time(until)
    if not Path(db_path).exists():
        raise ConfigError(f"{db_path}: no such DuckDB file; pass the owner's database with --db PATH")
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as exc:
        raise ConfigError(f"cannot open {db_path} to read it: {exc}. A running owner (`duckpulse serve`, or the "
                          "app with Monitor(db_path=...)) holds the file: back-test a copy of it, or stop the "
                          "owner first") from exc
    try:
        results = backtest(con, rules, since_seconds=parse_duration(since), now=now,
                           step_seconds=parse_duration(step))
    finally:
        con.close()
    header = (f"back-test of {len(rules)} rule{'s' if len(rules) != 1 else ''} from {rules_path} over {since} "
              f"of {db_path}, until {datetime.fromtimestamp(now, UTC).isoformat(timespec='seconds')}")
    return header + "\n" + report(results)
