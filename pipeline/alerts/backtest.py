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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from .. import sqlfiles
from ..clock import epoch_us
from ..errors import ConfigError
from ..relations import temp_table
from . import windows
from .rules import Rule, load_rules_file
from .state import SQL

# The tables a replay reads (sql/alerts.sql, backtest-runs).
_SOURCES = ("requests", "queries", "process_samples", "points", "series")
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
        params: dict[str, Any] = {**folded.params(start), "now_us": epoch_us(now), "start": start,
                                  "start_us": epoch_us(start)}
        with temp_table(con, "__alert_combos", combos), temp_table(con, "__alert_rules", folded.encoded[1]):
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
                  until: str | None = None, history_dir: str | Path | None = None) -> str:
    """``duckpulse alerts backtest``: replay a TOML rules file over a database, never locking its owner out.

    With no owner running, the file is read (read-only) while this process holds the owner lock, so an owner that
    starts meanwhile waits as a producer or says who holds the file, instead of finding DuckDB's lock taken. While
    an owner runs, its file is never opened (a read-only open could slip into the owner's periodic reopen and take
    the file from it, issue 13 item 10): the back-test reads what the owner publishes for readers, the Parquet
    history (``history_dir``, default ``<db>.history``).
    """
    rules = load_rules_file(rules_path)
    now = time.time() if until is None else parse_time(until)
    if not Path(db_path).exists():
        raise ConfigError(f"{db_path}: no such DuckDB file; pass the owner's database with --db PATH")
    with _read_without_locking_out(Path(db_path), history_dir) as (con, source):
        results = backtest(con, rules, since_seconds=parse_duration(since), now=now,
                           step_seconds=parse_duration(step))
    header = (f"back-test of {len(rules)} rule{'s' if len(rules) != 1 else ''} from {rules_path} over {since} "
              f"of {source}, until {datetime.fromtimestamp(now, UTC).isoformat(timespec='seconds')}")
    return header + "\n" + report(results)


@contextmanager
def _read_without_locking_out(db_path: Path,
                              history_dir: str | Path | None) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """A connection to back-test over, and what it reads: the file while this process holds its owner lock, or,
    while an owner runs, the history it publishes."""
    from .. import history
    from ..archive import default_history_dir
    from ..owner_lock import OwnerLock, holder

    lock = OwnerLock.try_acquire(db_path)
    if lock is None:
        owner = f"{db_path} is already owned by process {holder(db_path)}"
        published = Path(history_dir) if history_dir is not None else default_history_dir(db_path)
        con = history.connect(published, attach_live=False)
        if not _with_every_source(con):
            con.close()
            raise ConfigError(f"{owner}, and nothing of it is published in {published} yet: the back-test reads "
                              "what a running owner publishes, never its file (opening it could lock the owner out). "
                              "Wait for its archive job (hours are archived 10 minutes after they end), pass "
                              "--history DIR if its history is elsewhere, or back-test a copy of the file")
        try:
            yield con, f"{published} (the history the owner of {db_path} publishes; it runs)"
        finally:
            con.close()
        return
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as exc:
        lock.release()
        raise ConfigError(f"cannot open {db_path} to read it: {exc}. Another program (a notebook, the duckdb CLI) "
                          "has it open: close it, or back-test a copy of the file") from exc
    try:
        yield con, str(db_path)
    finally:
        con.close()
        lock.release()


def _with_every_source(con: duckdb.DuckDBPyConnection) -> bool:
    """Give a history connection an empty table for each source table nothing of which is archived (the replay
    reads them all), built by the schema's own migrations in a scratch database; False if none had anything."""
    from ..store import migrations, quote_identifier

    present = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    if not present:
        return False
    con.execute("ATTACH ':memory:' AS duckpulse_schema")
    con.execute("USE duckpulse_schema")
    try:
        for _, sql in migrations():
            con.execute(sql)
    finally:
        con.execute("USE memory")
    for table in sorted(set(_SOURCES) - present):
        name = quote_identifier(table)  # from the fixed _SOURCES, quoted
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM duckpulse_schema.main.{name}")
    return True
