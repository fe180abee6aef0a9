"""``Alerts``: the owner's alerting, wired together: rules, the sweep job, the check after each flush,
notifiers and silences.

A sweep is: every rule's aggregates in one SQL statement (``windows``), the state machine (``evaluate``), the
delivery policy (``notify.plan``), one transaction for the new states and events (``state``), then delivery.
The states live in memory between sweeps (loaded from ``alert_state`` at the first sweep after a start); memory
is only updated once the transaction has committed, so a failed write is simply redone by the next sweep.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..errors import ConfigError, LimitError
from ..logs import ThrottledLog
from . import notify, windows
from .delivery import Delivery
from .evaluate import end_removed_rules, evaluate
from .notify import LoggingNotifier, Notification, Notifier, Silence
from .rules import DEFAULT_REPEAT_INTERVAL_SECONDS, Rule, load_rules_file, make_rule
from .rules import default_rules as builtin_default_rules
from .state import AlertEvent, AlertState, AlertStore, StateKey

if TYPE_CHECKING:
    from ..buffer import Flush
    from ..store import Store

# Silences are written by whoever reaches the API: caps keep them from growing the owner's memory and every sweep's
# work without bound (3,000 large ones once made every creation answer 500, out of memory). Alertmanager has the
# same two limits (--silences.max-silences, --silences.max-silence-size-bytes).
MAX_SILENCES_IN_FORCE = 1_000
MAX_SILENCE_BYTES = 8_192  # its matchers (as JSON) and comment, UTF-8
MAX_MATCHERS = 16
# Ended silences are kept for the record, the newest this many (older ones go when a silence is created).
MAX_ENDED_SILENCES_KEPT = 10_000

# Single-event thresholds (max of a duration over gt/gte) are checked after each flush: metric -> its table.
FAST_TABLES = {"request_duration": "requests", "query_duration": "queries"}


class Alerts:
    """Alert rules of one owner and everything that evaluates and delivers them."""

    def __init__(self, store: Store, clock: Clock, log: ThrottledLog, *, default_rules: bool = True,
                 interval_seconds: float = 10.0, log_alerts: bool = True) -> None:
        if not isinstance(interval_seconds, int | float) or not 0 < interval_seconds < float("inf"):
            raise ConfigError(f"alert_interval_seconds={interval_seconds!r}: expected a number of seconds > 0")
        self.store = store
        self.clock = clock
        self.log = log
        self.interval_seconds = float(interval_seconds)
        self._db = AlertStore(store)
        self._rules: dict[str, Rule] = {}
        self._fast: dict[str, list[Rule]] = {}
        self._notifiers: list[Notifier] = [LoggingNotifier()] if log_alerts else []
        self._config_lock = threading.Lock()  # rules and notifiers: replaced whole (copy on write)
        self._eval_lock = threading.Lock()  # one evaluation at a time: the sweep job and the flush check
        self._states: dict[StateKey, AlertState] | None = None
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()  # the sweep job and the flusher both count
        self.last_sweep: dict[str, Any] | None = None
        self._delivery = Delivery(lambda: self._notifiers, self._count, log)
        if default_rules:
            for rule in builtin_default_rules():
                self.add_rule(rule)

    # -- rules -------------------------------------------------------------------------------------------
    @property
    def rules(self) -> list[Rule]:
        return list(self._rules.values())

    def add_rules(self, rules: Iterable[Rule]) -> list[Rule]:
        """Add several rules, all or none: a name already in use raises ConfigError and adds nothing."""
        new = list(rules)
        with self._config_lock:
            names = set(self._rules)
            for rule in new:
                if rule.name in names:
                    raise ConfigError(f"an alert rule named {rule.name!r} exists already; give the new rule "
                                      "another name (name=...) or remove the old one with remove_rule()")
                names.add(rule.name)
            self._set_rules({**self._rules, **{r.name: r for r in new}})
        return new

    def add_rule(self, rule: Rule) -> Rule:
        return self.add_rules([rule])[0]

    def remove_rule(self, name: str) -> bool:
        """Stop evaluating a rule (its stored state and history are kept); False if there was none."""
        with self._config_lock:
            if name not in self._rules:
                return False
            self._set_rules({k: r for k, r in self._rules.items() if k != name})
            return True

    def _set_rules(self, rules: dict[str, Rule]) -> None:
        fast: dict[str, list[Rule]] = {}
        for rule in rules.values():
            if rule.metric in FAST_TABLES and rule.aggregation == "max" and rule.op in ("gt", "gte"):
                fast.setdefault(rule.metric, []).append(rule)
        self._rules, self._fast = rules, fast

    def add_threshold(self, metric: str, op: str, value: float, level: str, message: str = "", *,
                      aggregation: str = "max", window_seconds: float = 60.0, for_seconds: float = 0.0,
                      keep_firing_seconds: float = 0.0, by: Iterable[str] | str = (),
                      where: Mapping[str, object] | None = None, name: str | None = None,
                      repeat_interval_seconds: float = DEFAULT_REPEAT_INTERVAL_SECONDS) -> Rule:
        """Add a threshold rule (see ``rules.Rule`` for the fields); returns it."""
        return self.add_rule(make_rule(metric, op, value, level, message, aggregation=aggregation,
                                       window_seconds=window_seconds, for_seconds=for_seconds,
                                       keep_firing_seconds=keep_firing_seconds, by=by, where=where, name=name,
                                       repeat_interval_seconds=repeat_interval_seconds))

    def load_rules(self, path: str | Path) -> list[Rule]:
        """Add the rules of a TOML file (all or none); returns them."""
        return self.add_rules(load_rules_file(path))

    # -- notifiers and silences ----------------------------------------------------------------------------
    def on_alert(self, notifier: Notifier) -> Callable[[], None]:
        """Call ``notifier(notification)`` for every notification; returns a function that unsubscribes it.

        Notifiers run on the sweeping thread: keep them quick, or queue the work (as ``WebhookNotifier`` does).
        """
        with self._config_lock:
            self._notifiers = [*self._notifiers, notifier]

        def unsubscribe() -> None:
            with self._config_lock:
                self._notifiers = [n for n in self._notifiers if n is not notifier]
        return unsubscribe

    def silence(self, matchers: Mapping[str, object], *, duration_seconds: float | None = None,
                until: float | None = None, comment: str = "") -> str:
        """Mute the notifications of alerts matching every matcher (rule, metric, level or a label) until
        ``until`` (epoch seconds) or for ``duration_seconds``; returns the silence's id.

        Raises LimitError beyond MAX_MATCHERS matchers, MAX_SILENCE_BYTES of matchers and comment, or
        MAX_SILENCES_IN_FORCE silences in force."""
        if not matchers or not isinstance(matchers, Mapping):
            raise ConfigError(f"silence matchers {matchers!r}: give a mapping such as {{'rule': 'request_over_1s'}}"
                              " or {'route': '/checkout'}; an empty one would silence everything")
        now = self.clock.now()
        if (until is None) == (duration_seconds is None):
            raise ConfigError("silence needs exactly one of until (epoch seconds) and duration_seconds")
        ends = until if until is not None else now + float(duration_seconds or 0)
        if not ends > now:
            raise ConfigError(f"silence ends at {ends!r}, which is not after now ({now!r})")
        if len(matchers) > MAX_MATCHERS:
            raise LimitError(f"a silence has at most {MAX_MATCHERS} matchers; this one has {len(matchers)}",
                             MAX_MATCHERS)
        clean = {str(k): ("true" if v is True else "false" if v is False else str(v)) for k, v in matchers.items()}
        size_bytes = len(json.dumps(clean, sort_keys=True).encode()) + len(str(comment).encode())
        if size_bytes > MAX_SILENCE_BYTES:
            raise LimitError(f"a silence's matchers and comment take at most {MAX_SILENCE_BYTES} bytes; these take "
                             f"{size_bytes}: match on fewer or shorter labels", MAX_SILENCE_BYTES)
        silence_id = uuid.uuid4().hex
        if not self._db.add_silence(silence_id, clean, now, ends, str(comment), now, MAX_SILENCES_IN_FORCE,
                                    MAX_ENDED_SILENCES_KEPT):
            raise LimitError(f"{MAX_SILENCES_IN_FORCE} silences are in force already (the cap); expire some first "
                             "(DELETE /api/silences/<id>, or Alerts.unsilence) or wait for them to end",
                             MAX_SILENCES_IN_FORCE)
        return silence_id

    def unsilence(self, silence_id: str) -> bool:
        """End a silence now; False if it was not in force."""
        return self._db.expire_silence(silence_id, self.clock.now())

    def silences(self, now: float | None = None) -> list[Silence]:
        """The silences in force at ``now`` (default: the clock's now)."""
        at = self.clock.now() if now is None else now
        return [Silence(sid, tuple(sorted(json.loads(matchers).items())), starts, ends, comment)
                for sid, matchers, starts, ends, comment, _ in self._db.active_silences(at)]

    # -- reading -----------------------------------------------------------------------------------------
    def states(self) -> list[AlertState]:
        """The current state of every stored rule and label set."""
        with self._eval_lock:
            return list(self._load().values())

    def events(self, since: float = 0.0, rule: str | None = None) -> list[AlertEvent]:
        """The transitions recorded at or after ``since``, oldest first."""
        return self._db.events(since, rule)

    def _load(self) -> dict[StateKey, AlertState]:
        if self._states is None:
            self._states = self._db.load_states()
        return self._states

    # -- evaluating --------------------------------------------------------------------------------------
    def sweep(self, now: float, rules: Sequence[Rule] | None = None) -> dict[str, Any]:
        """Evaluate ``rules`` (default: all) at ``now``, record the transitions and deliver notifications."""
        started = time.perf_counter()
        with self._eval_lock:
            by_name = dict(self._rules)
            chosen = list(by_name.values()) if rules is None else list(rules)
            by_name.update((r.name, r) for r in chosen)
            states = self._load()
            samples = windows.aggregate(self.store, chosen, now)
            evaluation = evaluate(samples, chosen, states, now)
            # A full sweep also ends the alerts of rules no longer loaded (a flush check covers only some rules).
            ended = end_removed_rules(states, by_name, now) if rules is None else None
            if ended is not None:
                evaluation.events += ended.events
                evaluation.forgotten += ended.forgotten
            merged = {**states, **evaluation.states}
            for key in evaluation.forgotten:
                merged.pop(key, None)
            silences = self.silences(now)  # one query per sweep: the full sweep's two plans share it
            delivery = notify.plan(evaluation, merged, by_name, silences, now)
            if ended is not None:
                delivery.deliver += notify.removed_rule_notifications(ended, states, silences, now)
            changed = {s.key: s for s in evaluation.changed}
            for st in delivery.updated:
                changed[st.key] = merged[st.key] = st
            self._db.save(list(changed.values()), evaluation.forgotten, evaluation.events)
            self._states = merged
        self._deliver(delivery.deliver)
        result = {"rules": len(chosen), "label_sets": len(evaluation.states), "transitions": len(evaluation.events),
                  "notifications": len(delivery.deliver), "muted": dict(delivery.muted),
                  "seconds": time.perf_counter() - started}
        self._count("sweeps" if rules is None else "flush_checks")
        self._count("notifications", len(delivery.deliver))
        for reason, n in delivery.muted.items():
            self._count(f"muted_{reason}", n)
        if rules is None:
            self.last_sweep = result
        return result

    def _deliver(self, notifications: Sequence[Notification]) -> None:
        self._delivery.put(notifications)  # the notifiers run on their own thread (alerts/delivery.py)

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds until the notifications decided so far went through the notifiers."""
        return self._delivery.settle(timeout)

    def after_flush(self, flush: Flush) -> None:
        """The flusher's hook: check single-event thresholds against a batch just written, so one slow
        request alerts within a flush interval. Costs one max() over a column (a C loop) per table unless a
        threshold is hit."""
        try:
            fast = self._fast
            hit: list[Rule] = []
            for metric, table in FAST_TABLES.items():
                rules = fast.get(metric)
                data = flush.tables.get(table)
                if not rules or data is None or data.rows == 0:
                    continue
                top = max(data.column("duration_ms"))
                hit.extend(r for r in rules if r.breached(top))
            if hit:
                self.sweep(self.clock.now(), hit)
        except Exception as exc:  # monitoring never raises into the flush that called it
            self._count("flush_check_failures")
            self.log.warning("alerts:flush-check", f"duckpulse: the alert check after a flush failed: {exc!r}",
                             exc_info=exc)

    def close(self, timeout: float = 5.0) -> None:
        """Let notifiers with a queue deliver what they hold (up to ``timeout`` seconds each), then stop them."""
        self._delivery.close(timeout)
        for notifier in self._notifiers:
            close = getattr(notifier, "close", None)
            if callable(close):
                try:
                    close(timeout)
                except Exception as exc:  # closing must finish for every notifier
                    self.log.warning("alerts:close", f"duckpulse: closing a notifier failed: {exc!r}")

    def stats(self) -> dict[str, Any]:
        """Counts of sweeps, flush checks, notifications (delivered, muted by reason) and failures."""
        with self._counts_lock:
            counts = dict(self.counts)
        return {"rules": len(self._rules), "counts": counts, "last_sweep": self.last_sweep,
                "delivery": self._delivery.stats()}

    def _count(self, what: str, n: int = 1) -> None:
        with self._counts_lock:
            self.counts[what] += n
