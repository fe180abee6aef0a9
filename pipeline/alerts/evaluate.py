"""The alert state machine, as a pure function of the aggregates, the rules, the previous states and ``now``.

Per rule and label set::

    inactive ──breach──▶ pending ──held for_seconds──▶ firing ──clear for keep_firing_seconds──▶ resolved
        ▲                  │ clear                                                                │ breach
        └──────────────────┘                                                  pending / firing ◀──┘

With ``for_seconds=0`` a breach fires at once (inactive → firing). ``count`` and ``rate`` always have a value:
an empty window counts zero. Otherwise an empty window means no data:

* a rule without ``by`` has one series, and its going silent is news: any state → nodata (and back to the
  state machine, from inactive, when data returns);
* a label set of a ``by`` rule that no longer has rows (a route no longer called) ends: firing → resolved
  (after ``keep_firing_seconds``), pending → inactive, and an inactive or resolved one is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .rules import OPS, Rule
from .state import FIRING, INACTIVE, NODATA, PENDING, RESOLVED, AlertEvent, AlertState, Labels, StateKey


@dataclass
class Evaluation:
    """What one evaluation decided."""

    # The state of every evaluated rule's label sets afterwards (forgotten ones left out).
    states: dict[StateKey, AlertState] = field(default_factory=dict)
    # The states that differ from the stored ones and must be written.
    changed: list[AlertState] = field(default_factory=list)
    # The label sets to delete from alert_state.
    forgotten: list[StateKey] = field(default_factory=list)
    # Every transition, in the order decided.
    events: list[AlertEvent] = field(default_factory=list)


def _event(rule: Rule, labels: Labels, from_state: str, to_state: str, value: float | None,
           now: float) -> AlertEvent:
    return AlertEvent(now, rule.name, labels, rule.metric, rule.level, from_state, to_state, value, rule.value,
                      rule.message)


def _target(rule: Rule, previous: str, breached: bool, pending_since: float | None, last_true_at: float | None,
            now: float) -> str:
    """The state a label set moves to, given whether its aggregate breaches the threshold now."""
    if breached:
        assert pending_since is not None
        if previous == FIRING or now - pending_since >= rule.for_seconds:
            return FIRING
        return PENDING
    if previous == FIRING:
        held = last_true_at is not None and now - last_true_at < rule.keep_firing_seconds
        return FIRING if held else RESOLVED
    if previous in (PENDING, NODATA):
        return INACTIVE
    return previous


def step(rule: Rule, labels: Labels, old: AlertState | None, value: float | None,
         now: float) -> tuple[AlertState | None, AlertEvent | None]:
    """One label set's next state (None: forget it) and the transition it made (None: no transition)."""
    previous = old.state if old is not None else INACTIVE
    if value is None:
        if old is None or previous == NODATA:
            return old, None
        if not rule.by:
            new = replace(old, state=NODATA, value=None, since=now, pending_since=None, evaluated_at=now,
                          level=rule.level, threshold=rule.value)
            return new, _event(rule, labels, previous, NODATA, None, now)
        if previous == FIRING:
            if old.last_true_at is not None and now - old.last_true_at < rule.keep_firing_seconds:
                return old, None
            new = replace(old, state=RESOLVED, value=None, since=now, pending_since=None, evaluated_at=now)
            return new, _event(rule, labels, FIRING, RESOLVED, None, now)
        # a pending label set without rows ends as inactive; inactive and resolved ones are simply forgotten
        return None, (_event(rule, labels, PENDING, INACTIVE, None, now) if previous == PENDING else None)

    breached = rule.breached(value)
    pending_since: float | None = None
    if breached:
        kept = old.pending_since if old is not None and previous in (PENDING, FIRING) else None
        pending_since = kept if kept is not None else now
    last_true_at = now if breached else (old.last_true_at if old is not None else None)
    target = _target(rule, previous, breached, pending_since, last_true_at, now)

    if old is None:
        new = AlertState(rule.name, labels, rule.metric, rule.level, target, value, rule.value, now,
                         pending_since, last_true_at, now)
        return new, (_event(rule, labels, INACTIVE, target, value, now) if target != INACTIVE else None)
    if target == previous:
        if target == FIRING and rule.keep_firing_seconds and last_true_at != old.last_true_at:
            # keep_firing_seconds counts from the last breach, which must survive a restart; without it the
            # breach time is not needed, and a long firing alert is not rewritten at every sweep
            return replace(old, value=value, last_true_at=last_true_at, evaluated_at=now), None
        return old, None
    new = replace(old, state=target, value=value, since=now, pending_since=pending_since,
                  last_true_at=last_true_at, evaluated_at=now, level=rule.level, threshold=rule.value,
                  notified=False if target == FIRING else old.notified)
    return new, _event(rule, labels, previous, target, value, now)


def evaluate(samples: Mapping[StateKey, float], rules: Iterable[Rule],
             states: Mapping[StateKey, AlertState], now: float) -> Evaluation:
    """Decide every evaluated rule's label sets' next states from this sweep's aggregates.

    ``samples`` maps (rule name, labels) to the rule's aggregate over its window; a label set missing from it
    had no rows. Only ``rules`` are evaluated: the states of other rules are left alone.
    """
    by_name = {rule.name: rule for rule in rules}
    result = Evaluation()
    kept = result.states

    def decide(key: StateKey, rule: Rule, value: float | None, old: AlertState | None) -> None:
        new, event = step(rule, key[1], old, value, now)
        if event is not None:
            result.events.append(event)
        if new is None:
            if old is not None:
                result.forgotten.append(key)
            return
        kept[key] = new
        if new is not old:
            result.changed.append(new)

    get_state = states.get
    for key, value in samples.items():
        rule = by_name.get(key[0])
        if rule is None:
            continue
        old = get_state(key)
        if old is not None:
            # the common case, decided without building anything: a state that stays as it is
            breached = OPS[rule.op](value, rule.value)
            if (not breached and old.state in (INACTIVE, RESOLVED)) or (
                    breached and old.state == FIRING and not rule.keep_firing_seconds):
                kept[key] = old
                continue
        decide(key, rule, value, old)
    for key, old in states.items():
        rule = by_name.get(key[0])
        if rule is not None and key not in samples:
            decide(key, rule, 0.0 if rule.counts_events else None, old)
    for rule in by_name.values():
        # a rule without `by` has exactly one label set, whose count is zero when nothing happened
        key = (rule.name, ())
        if not rule.by and rule.counts_events and key not in samples and key not in states:
            decide(key, rule, 0.0, None)
    return result


def end_removed_rules(states: Mapping[StateKey, AlertState], rule_names: Iterable[str], now: float) -> Evaluation:
    """End the alerts of rules that are no longer loaded (removed, or renamed: a new name is a new rule).

    An alert in progress (pending, firing, nodata) makes one last transition, to resolved, whose message says
    why; every state of such a rule is then forgotten, so it neither stays "firing" forever nor inhibits others.
    """
    loaded = set(rule_names)
    result = Evaluation()
    for key, old in states.items():
        if old.rule in loaded:
            continue
        if old.state in (PENDING, FIRING, NODATA):
            result.events.append(AlertEvent(now, old.rule, old.labels, old.metric, old.level, old.state, RESOLVED,
                                            None, old.threshold, removed_rule_message(old.rule)))
        result.forgotten.append(key)
    return result


def removed_rule_message(rule: str) -> str:
    """The reason an alert of a rule no longer loaded ended."""
    return f"ended: no rule named {rule!r} is loaded any more (it was removed or renamed)"
