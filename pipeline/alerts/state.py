"""Alert states and their history: the values, and how they are kept in DuckDB.

Per rule and label set the state is one of inactive → pending → firing → resolved, plus nodata. The current
state is a row of ``alert_state`` (so a restarted owner carries on where it stopped: a pending alert keeps its
pending-since time), and every transition is appended to ``alert_events``. ``silences`` holds the silences.
The tables are created by ``migration-3`` in ``sql/alerts.sql``; this module writes them through the store's
connection, inside the store's transactions (``store.py`` stays the only module that opens the database).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import sqlfiles
from ..clock import epoch_us
from ..relations import Columns, temp_table

if TYPE_CHECKING:
    from ..store import Store

SQL = "alerts.sql"
INACTIVE, PENDING, FIRING, RESOLVED, NODATA = "inactive", "pending", "firing", "resolved", "nodata"
STATES = (INACTIVE, PENDING, FIRING, RESOLVED, NODATA)

# A label set: (key, value) pairs sorted by key; a value is None when a series lacks that label.
Labels = tuple[tuple[str, str | None], ...]
# What a state is stored under: the rule's name and its label set.
StateKey = tuple[str, Labels]


def labels_json(labels: Labels) -> str:
    """The canonical JSON text of a label set, as stored in alert_state.labels and alert_events.labels."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def labels_from_json(text: str) -> Labels:
    return tuple(sorted(json.loads(text).items()))


def _us(epoch_seconds: float | None) -> int | None:
    return None if epoch_seconds is None else epoch_us(epoch_seconds)


@dataclass(frozen=True)
class AlertState:
    """Where one rule's label set stands."""

    rule: str
    labels: Labels
    metric: str
    level: str
    # One of STATES.
    state: str
    # The aggregate when this state was last changed (None: no data).
    value: float | None
    threshold: float
    # When the current state was entered (epoch seconds, like every time here).
    since: float
    # When the condition started holding; survives restarts so for_seconds is counted from the real start.
    pending_since: float | None
    # The last evaluation at which the condition held (keep_firing_seconds counts from it).
    last_true_at: float | None
    evaluated_at: float
    # The last firing notification delivered; repeat_interval_seconds counts from it.
    last_notified_at: float | None = None
    # Whether this firing episode was delivered (then its resolution is delivered too).
    notified: bool = False

    @property
    def key(self) -> StateKey:
        return (self.rule, self.labels)


@dataclass(frozen=True)
class AlertEvent:
    """One transition of one rule's label set."""

    ts: float
    rule: str
    labels: Labels
    metric: str
    level: str
    from_state: str
    to_state: str
    value: float | None
    threshold: float
    message: str


class AlertStore:
    """Reads and writes alert_state, alert_events and silences."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load_states(self) -> dict[StateKey, AlertState]:
        """Every stored state, by (rule, labels)."""
        rows = self.store.fetchall(sqlfiles.query(SQL, "alert-state-load"))
        states = {}
        for (rule, labels, metric, level, state, value, threshold, since, pending_since, last_true_at,
             evaluated_at, last_notified_at, notified) in rows:
            st = AlertState(rule, labels_from_json(labels), metric, level, state, value, threshold, since,
                            pending_since, last_true_at, evaluated_at, last_notified_at, bool(notified))
            states[st.key] = st
        return states

    def save(self, changed: Sequence[AlertState], forgotten: Sequence[StateKey],
             events: Sequence[AlertEvent]) -> None:
        """Write one sweep's changes in one transaction: all of them are committed, or none."""
        if not (changed or forgotten or events):
            return
        with self.store.transaction():
            if forgotten:
                self._with_table("__alert_forget", {
                    "rule": ("VARCHAR", [k[0] for k in forgotten]),
                    "labels": ("VARCHAR", [labels_json(k[1]) for k in forgotten]),
                }, "alert-state-delete")
            if changed:
                self._with_table("__alert_changed", {
                    "rule": ("VARCHAR", [s.rule for s in changed]),
                    "labels": ("VARCHAR", [labels_json(s.labels) for s in changed]),
                    "metric": ("VARCHAR", [s.metric for s in changed]),
                    "level": ("VARCHAR", [s.level for s in changed]),
                    "state": ("VARCHAR", [s.state for s in changed]),
                    "value": ("DOUBLE", [s.value for s in changed]),
                    "threshold": ("DOUBLE", [s.threshold for s in changed]),
                    "since_us": ("BIGINT", [_us(s.since) for s in changed]),
                    "pending_since_us": ("BIGINT", [_us(s.pending_since) for s in changed]),
                    "last_true_at_us": ("BIGINT", [_us(s.last_true_at) for s in changed]),
                    "evaluated_at_us": ("BIGINT", [_us(s.evaluated_at) for s in changed]),
                    "last_notified_at_us": ("BIGINT", [_us(s.last_notified_at) for s in changed]),
                    "notified": ("BOOLEAN", [s.notified for s in changed]),
                }, "alert-state-upsert")
            if events:
                self._with_table("__alert_new_events", {
                    "ts_us": ("BIGINT", [_us(e.ts) for e in events]),
                    "rule": ("VARCHAR", [e.rule for e in events]),
                    "labels": ("VARCHAR", [labels_json(e.labels) for e in events]),
                    "metric": ("VARCHAR", [e.metric for e in events]),
                    "level": ("VARCHAR", [e.level for e in events]),
                    "from_state": ("VARCHAR", [e.from_state for e in events]),
                    "to_state": ("VARCHAR", [e.to_state for e in events]),
                    "value": ("DOUBLE", [e.value for e in events]),
                    "threshold": ("DOUBLE", [e.threshold for e in events]),
                    "message": ("VARCHAR", [e.message for e in events]),
                }, "alert-events-insert")

    def _with_table(self, name: str, columns: Columns, query: str) -> None:
        con = self.store.con
        with temp_table(con, name, columns):
            con.execute(sqlfiles.query(SQL, query))

    def events(self, since: float = 0.0, rule: str | None = None) -> list[AlertEvent]:
        """Transitions at or after ``since`` (epoch seconds), oldest first."""
        rows = self.store.fetchall(sqlfiles.query(SQL, "alert-events-since"),
                                   {"since_us": _us(since), "rule": rule})
        return [AlertEvent(ts, rule_, labels_from_json(labels), metric, level, from_state, to_state, value,
                           threshold, message)
                for ts, rule_, labels, metric, level, from_state, to_state, value, threshold, message in rows]

    # -- silences ----------------------------------------------------------------------------------------
    def add_silence(self, silence_id: str, matchers: dict[str, str], starts_at: float, ends_at: float,
                    comment: str, created_at: float, max_in_force: int, max_ended_kept: int) -> bool:
        """Record a silence unless ``max_in_force`` are in force at ``created_at`` (False then); ended ones beyond
        the newest ``max_ended_kept`` go. Counts, never reads the silences back."""
        now_us = _us(created_at)
        with self.store.transaction():
            con = self.store.con
            ((in_force,),) = con.execute(sqlfiles.query(SQL, "silences-in-force-count"), {"now_us": now_us}).fetchall()
            if in_force >= max_in_force:
                return False
            con.execute(sqlfiles.query(SQL, "silence-insert"), {
                "silence_id": silence_id, "matchers": json.dumps(matchers, sort_keys=True),
                "starts_us": _us(starts_at), "ends_us": _us(ends_at), "comment": comment, "created_us": now_us})
            con.execute(sqlfiles.query(SQL, "silences-prune-ended"), {"now_us": now_us, "kept": max_ended_kept})
        return True

    def expire_silence(self, silence_id: str, now: float) -> bool:
        """End a silence now; False if no silence with that id was in force."""
        with self.store.transaction():
            rows = self.store.con.execute(sqlfiles.query(SQL, "silence-expire"),
                                          {"silence_id": silence_id, "now_us": _us(now)}).fetchall()
        return bool(rows)

    def active_silences(self, now: float) -> list[tuple[Any, ...]]:
        """Rows (id, matchers JSON, starts_at, ends_at, comment, created_at) of the silences in force at now."""
        return self.store.fetchall(sqlfiles.query(SQL, "silences-active"), {"now_us": _us(now), "silence_id": None})
