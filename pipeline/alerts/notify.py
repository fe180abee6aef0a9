"""Delivery: which transitions become notifications, and the notifiers that carry them.

``plan`` is the policy, a pure function of the evaluation, the silences and ``now``: a firing alert is
notified when it starts and again every ``repeat_interval_seconds`` while it fires (and a new episode inside
that interval waits for it); a firing alert of a higher level inhibits the lower levels of the same metric and
label set; a silence mutes every alert its matchers match until it ends. Muted notifications are not
delivered, but the transitions stay in ``alert_events``, and a firing alert still firing when its silence
ends is delivered then. The end of an episode (resolved, nodata) is delivered when its start was.

A notifier is any callable taking a ``Notification``. ``LoggingNotifier`` logs; ``WebhookNotifier`` POSTs
JSON from its own thread, so a slow or dead endpoint never holds up a sweep.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from . import wording
from .evaluate import Evaluation
from .rules import LEVEL_RANK, Rule
from .state import FIRING, NODATA, RESOLVED, AlertState, Labels, StateKey

Notifier = Callable[["Notification"], Any]
# Reasons a notification was not delivered, as counted in the sweep's result.
SILENCED, INHIBITED, REPEAT_INTERVAL = "silenced", "inhibited", "repeat_interval"


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Notification:
    """What a notifier receives: one alert of one rule and label set, firing or ended."""

    rule: str
    metric: str
    level: str
    # firing, resolved or nodata.
    state: str
    labels: Labels
    # The aggregate (None for nodata) and the rule's threshold, in the metric's unit.
    value: float | None
    threshold: float
    op: str
    aggregation: str
    window_seconds: float
    message: str
    # When this notification was decided, and when the alert entered its state (epoch seconds).
    at: float
    since: float
    # True when this repeats an already delivered firing alert (repeat_interval_seconds elapsed).
    repeat: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: labels as an object, times as ISO 8601 UTC, the summary line as ``text``."""
        return {"rule": self.rule, "metric": self.metric, "level": self.level, "state": self.state,
                "labels": dict(self.labels), "value": self.value, "threshold": self.threshold, "op": self.op,
                "aggregation": self.aggregation, "window_seconds": self.window_seconds, "message": self.message,
                "at": _iso(self.at), "since": _iso(self.since), "repeat": self.repeat,
                # The summary line, for endpoints that show text (Slack-style incoming webhooks read `text`).
                "text": self.summary()}

    def summary(self) -> str:
        """One line for a person, values in the metric's unit: ``[warning] slow{route=/a} firing:
        p95(request_duration) = 863 ms, above 500 ms - <message>`` (see ``wording``)."""
        labels = "{" + ",".join(f"{k}={v}" for k, v in self.labels) + "}" if self.labels else ""
        if not self.aggregation:  # the end of an alert whose rule is no longer loaded: no condition to state
            what = self.metric
        elif self.value is None:
            what = wording.no_data(self.metric, self.aggregation, self.window_seconds)
        else:
            what = wording.condition(self.metric, self.aggregation, self.op, self.value, self.threshold,
                                     ended=self.state != FIRING)
        message = f" - {self.message}" if self.message else ""
        return f"[{self.level}] {self.rule}{labels} {self.state}: {what}{message}"


@dataclass(frozen=True)
class Silence:
    """Mutes the notifications of every alert matching all ``matchers`` from ``starts_at`` to ``ends_at``."""

    silence_id: str
    # (key, value) pairs: key is rule, metric, level or a label key; all must be equal.
    matchers: tuple[tuple[str, str], ...]
    starts_at: float
    ends_at: float
    comment: str = ""

    def matches(self, n: Notification, now: float) -> bool:
        if not self.starts_at <= now < self.ends_at:
            return False
        labels = dict(n.labels)
        fields = {"rule": n.rule, "metric": n.metric, "level": n.level}
        return all((fields[k] if k in fields else labels.get(k)) == v for k, v in self.matchers)


@dataclass
class DeliveryPlan:
    """What ``plan`` decided."""

    deliver: list[Notification] = field(default_factory=list)
    muted: Counter[str] = field(default_factory=Counter)
    # States whose notification bookkeeping changed (last_notified_at, notified), to be written.
    updated: list[AlertState] = field(default_factory=list)


def _notification(rule: Rule, st: AlertState, state: str, now: float, repeat: bool = False) -> Notification:
    return Notification(rule.name, rule.metric, rule.level, state, st.labels, st.value, rule.value, rule.op,
                        rule.aggregation, float(rule.window_seconds), rule.message, now, st.since, repeat)


def plan(evaluation: Evaluation, all_states: Mapping[StateKey, AlertState], rules: Mapping[str, Rule],
         silences: Sequence[Silence], now: float) -> DeliveryPlan:
    """Decide which notifications an evaluation sends (see the module docstring for the policy)."""
    # only the rules in force count: a stored firing state of a removed rule must not inhibit anything
    firing = [st for st in all_states.values() if st.state == FIRING and st.rule in rules]
    firing_rank: dict[tuple[str, Labels], int] = {}
    for st in firing:
        key = (st.metric, st.labels)
        firing_rank[key] = max(firing_rank.get(key, -1), LEVEL_RANK.get(st.level, 0))

    result = DeliveryPlan()
    candidates: list[tuple[Notification, AlertState]] = []
    for event in evaluation.events:
        ended = evaluation.states.get((event.rule, event.labels))
        if (ended is not None and event.from_state == FIRING and event.to_state in (RESOLVED, NODATA)
                and ended.notified):
            candidates.append((_notification(rules[ended.rule], ended, event.to_state, now), ended))
    for st in firing:
        if st.key not in evaluation.states:
            continue  # a rule this evaluation did not cover
        rule = rules[st.rule]
        if st.last_notified_at is None or now - st.last_notified_at >= rule.repeat_interval_seconds:
            if firing_rank[(st.metric, st.labels)] > LEVEL_RANK.get(st.level, 0):
                result.muted[INHIBITED] += 1  # a firing alert of a higher level speaks for this one
                continue
            candidates.append((_notification(rule, st, FIRING, now, repeat=st.notified), st))
        elif not st.notified and st.since == now:
            result.muted[REPEAT_INTERVAL] += 1  # a new episode too soon after the last notification

    for n, st in candidates:
        if any(s.matches(n, now) for s in silences):
            result.muted[SILENCED] += 1
            continue
        result.deliver.append(n)
        if n.state == FIRING:
            result.updated.append(replace(st, last_notified_at=now, notified=True))
        else:
            result.updated.append(replace(st, notified=False))
    return result


def removed_rule_notifications(ended: Evaluation, states: Mapping[StateKey, AlertState],
                               silences: Sequence[Silence], now: float) -> list[Notification]:
    """The end of every notified firing alert whose rule is no longer loaded (``evaluate.end_removed_rules``):
    delivered like a resolution, so a receiver never keeps an alert open that nothing will ever resolve. The
    rule's definition is gone, so its condition is left blank and the message says why it ended."""
    result = []
    for event in ended.events:
        st = states.get((event.rule, event.labels))
        if st is None or event.from_state != FIRING or not st.notified:
            continue
        n = Notification(st.rule, st.metric, st.level, RESOLVED, st.labels, None, st.threshold, "", "", 0.0,
                         event.message, now, now)
        if not any(s.matches(n, now) for s in silences):
            result.append(n)
    return result


class LoggingNotifier:
    """Logs each notification on the ``duckpulse.alerts`` logger, at a logging level matching its level."""

    LEVELS: ClassVar[dict[str, int]] = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("duckpulse.alerts")

    def __call__(self, n: Notification) -> None:
        level = self.LEVELS.get(n.level, logging.WARNING) if n.state == FIRING else logging.INFO
        self.logger.log(level, "duckpulse alert %s", n.summary())


@dataclass
class WebhookStats:
    """What a webhook notifier has done; every failure is counted."""

    queued: int = 0
    sent: int = 0
    # Notifications given up on after every retry failed.
    failed: int = 0
    # Failed attempts (each later retried or given up on), and how many of them timed out.
    attempt_failures: int = 0
    timeouts: int = 0
    # Notifications refused because the queue was full, or left in it at close.
    dropped: int = 0
    last_error: str | None = None


class WebhookNotifier:
    """POSTs each notification as JSON to ``url``, from a worker thread fed by a bounded queue.

    Each notification is tried ``1 + retries`` times, waiting ``backoff_seconds * 2**attempt`` between tries;
    a 2xx answer is a success. ``drain(timeout)`` waits until everything queued has been handled.
    """

    def __init__(self, url: str, *, timeout_seconds: float = 5.0, retries: int = 3, backoff_seconds: float = 1.0,
                 max_queue: int = 1000, headers: Mapping[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r}: expected an http:// or https:// URL")
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.headers = {"Content-Type": "application/json", "User-Agent": "duckpulse", **(headers or {})}
        self.stats = WebhookStats()
        self._queue: queue.Queue[Notification | None] = queue.Queue(max_queue)
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="duckpulse-webhook", daemon=True)
        self._thread.start()

    never_blocks = True  # alerts/delivery.py calls it where the notification is decided: it only queues

    def __call__(self, n: Notification) -> None:
        """Queue a notification; never blocks (a full queue drops it, counted)."""
        try:
            self._queue.put_nowait(n)
        except queue.Full:
            with self._stats_lock:
                self.stats.dropped += 1
            return
        with self._stats_lock:
            self.stats.queued += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(item)
            finally:
                self._queue.task_done()

    def _deliver(self, n: Notification) -> None:
        body = json.dumps(n.to_dict()).encode()
        for attempt in range(self.retries + 1):
            if attempt and self._stop.wait(self.backoff_seconds * 2 ** (attempt - 1)):
                break  # closing: stop retrying
            try:
                request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    response.read()
                with self._stats_lock:
                    self.stats.sent += 1
                return
            except Exception as exc:  # any failure of a delivery is counted, never raised into the app
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()  # the error response holds the connection open
                timed_out = isinstance(exc, TimeoutError) or isinstance(
                    getattr(exc, "reason", None), TimeoutError)
                with self._stats_lock:
                    self.stats.attempt_failures += 1
                    self.stats.timeouts += timed_out
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
        with self._stats_lock:
            self.stats.failed += 1

    def drain(self, timeout: float) -> bool:
        """Wait (up to ``timeout`` seconds) until every queued notification has been sent or given up on."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then stop the worker; leftovers are dropped."""
        if not self._thread.is_alive():
            return
        self.drain(timeout)
        self._stop.set()
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            left += 1
        with self._stats_lock:
            self.stats.dropped += left
        self._queue.put(None)
        self._thread.join(timeout)
