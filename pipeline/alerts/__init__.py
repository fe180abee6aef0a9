"""Alerts: rules over windows of the stored metrics, their states and history, and their delivery.

``rules`` (what to watch) → ``windows`` (every rule's aggregate in one SQL statement) → ``evaluate`` (the state
machine, a pure function of ``now``) → ``state`` (alert_state, alert_events, silences) → ``notify`` (policy and
notifiers); ``engine.Alerts`` wires them for an owner, ``backtest`` replays rules over stored history.
"""

from .engine import Alerts as Alerts
from .evaluate import evaluate as evaluate
from .notify import LoggingNotifier as LoggingNotifier
from .notify import Notification as Notification
from .notify import Silence as Silence
from .notify import WebhookNotifier as WebhookNotifier
from .rules import Rule as Rule
from .rules import RuleError as RuleError
from .rules import default_rules as default_rules
from .rules import load_rules_file as load_rules_file
from .rules import make_rule as make_rule
from .state import AlertEvent as AlertEvent
from .state import AlertState as AlertState

__all__ = ["AlertEvent", "AlertState", "Alerts", "LoggingNotifier", "Notification", "Rule", "RuleError",
           "Silence", "WebhookNotifier", "default_rules", "evaluate", "load_rules_file", "make_rule"]
