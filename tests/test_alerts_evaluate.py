"""The alert state machine and the delivery policy, as pure functions of their inputs and ``now``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.alerts.evaluate import Evaluation, evaluate
from pipeline.alerts.notify import INHIBITED, REPEAT_INTERVAL, SILENCED, Notification, Silence, plan
from pipeline.alerts.rules import Rule, make_rule
from pipeline.alerts.state import FIRING, INACTIVE, NODATA, PENDING, RESOLVED, AlertEvent, AlertState, StateKey

T0 = 1_767_225_600.0
ROUTE = (("route", "/a"),)


def slow(**options: object) -> Rule:
    base: dict[str, object] = {"by": ("route",), "name": "slow"}
    base.update(options)
    return make_rule("request_duration", "gt", 100, "warning", "slow", **base)  # type: ignore[arg-type]


class Machine:
    """Feeds evaluate() one step at a time and keeps its states, as the engine does."""

    def __init__(self, *rules: Rule) -> None:
        self.rules = list(rules)
        self.states: dict[StateKey, AlertState] = {}
        self.events: list[tuple[str, str]] = []

    def step(self, now: float, samples: dict[StateKey, float]) -> Evaluation:
        result = evaluate(samples, self.rules, self.states, now)
        for key in result.forgotten:
            self.states.pop(key)
        self.states.update(result.states)
        self.events += [(e.from_state, e.to_state) for e in result.events]
        return result

    def state(self, key: StateKey = ("slow", ROUTE)) -> str | None:
        st = self.states.get(key)
        return st.state if st else None


def test_breach_without_for_seconds_fires_at_once() -> None:
    """inactive -> firing in one evaluation when for_seconds is 0."""
    m = Machine(slow())
    m.step(T0, {("slow", ROUTE): 150.0})
    assert m.state() == FIRING
    assert m.events == [(INACTIVE, FIRING)]
    st = m.states[("slow", ROUTE)]
    assert (st.since, st.pending_since, st.value, st.threshold) == (T0, T0, 150.0, 100)


def test_pending_until_for_seconds_then_firing() -> None:
    """inactive -> pending, stays pending while the condition holds for less than for_seconds, then fires."""
    m = Machine(slow(for_seconds=60))
    m.step(T0, {("slow", ROUTE): 150.0})
    assert m.state() == PENDING
    result = m.step(T0 + 30, {("slow", ROUTE): 150.0})
    assert m.state() == PENDING and result.events == [] and result.changed == []
    m.step(T0 + 60, {("slow", ROUTE): 150.0})
    assert m.state() == FIRING
    assert m.events == [(INACTIVE, PENDING), (PENDING, FIRING)]
    assert m.states[("slow", ROUTE)].pending_since == T0


def test_pending_clears_to_inactive() -> None:
    """pending -> inactive when the condition stops holding before for_seconds."""
    m = Machine(slow(for_seconds=60))
    m.step(T0, {("slow", ROUTE): 150.0})
    m.step(T0 + 10, {("slow", ROUTE): 50.0})
    assert m.state() == INACTIVE
    assert m.states[("slow", ROUTE)].pending_since is None
    assert m.events == [(INACTIVE, PENDING), (PENDING, INACTIVE)]


def test_firing_resolves_and_fires_again() -> None:
    """firing -> resolved when the condition clears; resolved stays put, then a breach fires again."""
    m = Machine(slow())
    m.step(T0, {("slow", ROUTE): 150.0})
    m.step(T0 + 10, {("slow", ROUTE): 50.0})
    assert m.state() == RESOLVED
    m.step(T0 + 20, {("slow", ROUTE): 60.0})
    assert m.state() == RESOLVED
    m.step(T0 + 30, {("slow", ROUTE): 160.0})
    assert m.events == [(INACTIVE, FIRING), (FIRING, RESOLVED), (RESOLVED, FIRING)]


def test_keep_firing_seconds_holds_a_firing_alert() -> None:
    """A firing alert stays firing for keep_firing_seconds after its last breach (hysteresis)."""
    m = Machine(slow(keep_firing_seconds=30))
    m.step(T0, {("slow", ROUTE): 150.0})
    m.step(T0 + 10, {("slow", ROUTE): 50.0})
    m.step(T0 + 29, {("slow", ROUTE): 50.0})
    assert m.state() == FIRING
    m.step(T0 + 30, {("slow", ROUTE): 50.0})
    assert m.state() == RESOLVED


def test_keep_firing_records_the_last_breach() -> None:
    """With keep_firing_seconds, each breach while firing moves last_true_at (so it survives a restart)."""
    m = Machine(slow(keep_firing_seconds=30))
    m.step(T0, {("slow", ROUTE): 150.0})
    result = m.step(T0 + 10, {("slow", ROUTE): 170.0})
    assert [s.last_true_at for s in result.changed] == [T0 + 10]
    assert m.states[("slow", ROUTE)].value == 170.0


def test_still_firing_without_keep_firing_writes_nothing() -> None:
    """A firing alert that keeps breaching, without keep_firing_seconds, is not rewritten every sweep."""
    m = Machine(slow())
    m.step(T0, {("slow", ROUTE): 150.0})
    result = m.step(T0 + 10, {("slow", ROUTE): 170.0})
    assert result.changed == [] and result.events == []


def test_rule_without_by_goes_nodata_and_back() -> None:
    """The single series of a rule without `by` losing its data is a transition to nodata, from any state."""
    rule = make_rule("request_duration", "gt", 100, "warning", name="all")
    m = Machine(rule)
    key: StateKey = ("all", ())
    m.step(T0, {key: 50.0})
    assert m.state(key) == INACTIVE and m.events == []
    m.step(T0 + 10, {})
    assert m.state(key) == NODATA
    assert m.states[key].value is None
    m.step(T0 + 20, {})
    assert m.events == [(INACTIVE, NODATA)]
    m.step(T0 + 30, {key: 50.0})
    assert m.state(key) == INACTIVE
    m.step(T0 + 40, {key: 150.0})
    m.step(T0 + 50, {})
    assert m.events == [(INACTIVE, NODATA), (NODATA, INACTIVE), (INACTIVE, FIRING), (FIRING, NODATA)]


def test_nodata_breach_fires() -> None:
    """nodata -> firing when data comes back breaching."""
    rule = make_rule("request_duration", "gt", 100, "warning", name="all")
    m = Machine(rule)
    m.step(T0, {("all", ()): 50.0})
    m.step(T0 + 10, {})
    m.step(T0 + 20, {("all", ()): 500.0})
    assert m.events == [(INACTIVE, NODATA), (NODATA, FIRING)]


def test_by_label_set_without_rows_resolves_then_is_forgotten() -> None:
    """A firing label set of a `by` rule whose rows stop is resolved, and forgotten at the next sweep."""
    m = Machine(slow())
    m.step(T0, {("slow", ROUTE): 150.0})
    m.step(T0 + 60, {})
    assert m.state() == RESOLVED and m.states[("slow", ROUTE)].value is None
    result = m.step(T0 + 70, {})
    assert result.forgotten == [("slow", ROUTE)] and m.state() is None
    assert m.events == [(INACTIVE, FIRING), (FIRING, RESOLVED)]


def test_by_label_set_without_rows_keeps_firing_while_held() -> None:
    """keep_firing_seconds also holds a firing label set whose rows stopped."""
    m = Machine(slow(keep_firing_seconds=60))
    m.step(T0, {("slow", ROUTE): 150.0})
    m.step(T0 + 30, {})
    assert m.state() == FIRING
    m.step(T0 + 60, {})
    assert m.state() == RESOLVED


def test_pending_label_set_without_rows_ends_inactive() -> None:
    """A pending label set whose rows stop records pending -> inactive and is forgotten."""
    m = Machine(slow(for_seconds=60))
    m.step(T0, {("slow", ROUTE): 150.0})
    result = m.step(T0 + 10, {})
    assert result.forgotten == [("slow", ROUTE)]
    assert m.events == [(INACTIVE, PENDING), (PENDING, INACTIVE)]


def test_inactive_label_set_without_rows_is_forgotten_silently() -> None:
    """An inactive label set of a `by` rule without rows is dropped with no event."""
    m = Machine(slow())
    m.step(T0, {("slow", ROUTE): 50.0})
    result = m.step(T0 + 10, {})
    assert result.forgotten == [("slow", ROUTE)] and result.events == []


def test_count_is_zero_without_rows() -> None:
    """count and rate have a value of zero when no row falls in the window, even for a new rule."""
    rule = make_rule("request_rate", "lt", 1, "warning", aggregation="count", name="quiet")
    m = Machine(rule)
    m.step(T0, {})
    assert m.state(("quiet", ())) == FIRING
    assert m.states[("quiet", ())].value == 0.0


def test_count_by_label_set_known_is_zero_without_rows() -> None:
    """A known label set of a count rule with no rows is evaluated at zero, not forgotten."""
    rule = make_rule("request_rate", "lt", 1, "warning", aggregation="count", by=("route",), name="quiet")
    m = Machine(rule)
    m.step(T0, {("quiet", ROUTE): 5.0})
    m.step(T0 + 10, {})
    assert m.state(("quiet", ROUTE)) == FIRING


def test_other_rules_states_are_left_alone() -> None:
    """Only the given rules are evaluated; the states of other rules are neither changed nor forgotten."""
    m = Machine(slow())
    other = AlertState("other", (), "request_duration", "warning", FIRING, 1.0, 0.0, T0, T0, T0, T0)
    m.states[("other", ())] = other
    result = m.step(T0, {})
    assert result.forgotten == [] and m.states[("other", ())] is other


def test_rule_changed_level_is_recorded_on_transition() -> None:
    """A transition stores the rule's current level and threshold."""
    m = Machine(slow())
    m.step(T0, {("slow", ROUTE): 50.0})
    m.rules = [replace(slow(), level="critical", value=40)]
    m.step(T0 + 10, {("slow", ROUTE): 50.0})
    st = m.states[("slow", ROUTE)]
    assert (st.state, st.level, st.threshold) == (FIRING, "critical", 40)


# -- delivery policy ---------------------------------------------------------------------------------------
def firing_state(rule: Rule, labels: tuple[tuple[str, str | None], ...] = ROUTE, **changes: object) -> AlertState:
    st = AlertState(rule.name, labels, rule.metric, rule.level, FIRING, 150.0, rule.value, T0, T0, T0, T0)
    return replace(st, **changes)  # type: ignore[arg-type]


def evaluation_of(*states: AlertState) -> Evaluation:
    return Evaluation(states={s.key: s for s in states})


def test_plan_notifies_a_new_firing_alert_once_per_repeat_interval() -> None:
    """A firing alert is delivered at once, then again only after repeat_interval_seconds, marked repeat."""
    rule = slow(repeat_interval_seconds=300)
    st = firing_state(rule)
    first = plan(evaluation_of(st), {st.key: st}, {rule.name: rule}, [], T0)
    assert [n.state for n in first.deliver] == [FIRING] and not first.deliver[0].repeat
    sent = first.updated[0]
    assert (sent.last_notified_at, sent.notified) == (T0, True)
    assert plan(evaluation_of(sent), {st.key: sent}, {rule.name: rule}, [], T0 + 299).deliver == []
    again = plan(evaluation_of(sent), {st.key: sent}, {rule.name: rule}, [], T0 + 300)
    assert [n.repeat for n in again.deliver] == [True]


def test_plan_rate_limits_a_new_episode_inside_the_repeat_interval() -> None:
    """A flapping alert that fires again soon after a delivery waits for the repeat interval (counted)."""
    rule = slow(repeat_interval_seconds=300)
    st = firing_state(rule, since=T0 + 60, last_notified_at=T0, notified=False)
    result = plan(evaluation_of(st), {st.key: st}, {rule.name: rule}, [], T0 + 60)
    assert result.deliver == [] and result.muted[REPEAT_INTERVAL] == 1


def test_plan_delivers_the_end_of_a_delivered_episode_only() -> None:
    """firing -> resolved is delivered when the firing was; an undelivered episode ends silently."""
    rule = slow()
    resolved = replace(firing_state(rule), state=RESOLVED, notified=True)
    evaluation = evaluation_of(resolved)
    evaluation.events = [replace_event(rule, FIRING, RESOLVED)]
    result = plan(evaluation, {resolved.key: resolved}, {rule.name: rule}, [], T0)
    assert [n.state for n in result.deliver] == [RESOLVED]
    assert result.updated[0].notified is False
    quiet = replace(resolved, notified=False)
    evaluation.states = {quiet.key: quiet}
    assert plan(evaluation, {quiet.key: quiet}, {rule.name: rule}, [], T0).deliver == []


def replace_event(rule: Rule, from_state: str, to_state: str) -> AlertEvent:
    return AlertEvent(T0, rule.name, ROUTE, rule.metric, rule.level, from_state, to_state, 1.0, rule.value, "")


def test_plan_inhibits_lower_levels_of_the_same_metric_and_labels() -> None:
    """A firing critical mutes the warning of the same metric and labels, not of other labels or metrics."""
    warning, critical = slow(name="warn"), replace(slow(name="crit"), level="critical")
    other_route = firing_state(warning, labels=(("route", "/b"),))
    w, c = firing_state(warning), firing_state(critical)
    states = {s.key: s for s in (w, c, other_route)}
    result = plan(evaluation_of(w, c, other_route), states, {"warn": warning, "crit": critical}, [], T0)
    assert sorted((n.rule, dict(n.labels)["route"]) for n in result.deliver) == [("crit", "/a"), ("warn", "/b")]
    assert result.muted[INHIBITED] == 1


def test_plan_silences_by_matchers_until_the_end() -> None:
    """A silence mutes matching alerts while in force; a non-matching or ended silence does not."""
    rule = slow()
    st = firing_state(rule)
    silence = Silence("s1", (("route", "/a"), ("rule", "slow")), T0 - 10, T0 + 100)
    result = plan(evaluation_of(st), {st.key: st}, {rule.name: rule}, [silence], T0)
    assert result.deliver == [] and result.muted[SILENCED] == 1 and result.updated == []
    other = Silence("s2", (("route", "/b"),), T0 - 10, T0 + 100)
    assert len(plan(evaluation_of(st), {st.key: st}, {rule.name: rule}, [other], T0).deliver) == 1
    assert len(plan(evaluation_of(st), {st.key: st}, {rule.name: rule}, [silence], T0 + 100).deliver) == 1


@pytest.mark.parametrize(("matchers", "matched"), [
    ((("metric", "request_duration"),), True), ((("level", "warning"),), True), ((("level", "critical"),), False),
    ((("missing", "x"),), False),
])
def test_silence_matchers(matchers: tuple[tuple[str, str], ...], matched: bool) -> None:
    """Silence matchers compare rule, metric, level and labels for equality."""
    n = Notification("slow", "request_duration", "warning", FIRING, ROUTE, 1.0, 100.0, "gt", "max", 60.0, "", T0,
                     T0)
    assert Silence("s", matchers, T0, T0 + 1).matches(n, T0) is matched


def test_notification_to_dict_and_summary() -> None:
    """A notification serialises to JSON-ready values and a readable one-line summary."""
    n = Notification("slow", "request_duration", "warning", NODATA, ROUTE, None, 100.0, "gt", "max", 60.0, "msg",
                     T0, T0)
    d = n.to_dict()
    assert d["labels"] == {"route": "/a"} and d["at"] == "2026-01-01T00:00:00Z" and d["value"] is None
    assert n.summary() == "[warning] slow{route=/a} nodata: max(request_duration): no data in the last 60 s - msg"


def test_plan_ignores_firing_states_of_removed_rules() -> None:
    """A stored firing state of a rule no longer in force inhibits nothing."""
    warning, removed = slow(name="warn"), replace(slow(name="gone"), level="critical")
    w, stale = firing_state(warning), firing_state(removed)
    result = plan(evaluation_of(w), {w.key: w, stale.key: stale}, {"warn": warning}, [], T0)
    assert [n.rule for n in result.deliver] == ["warn"]
