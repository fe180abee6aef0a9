"""duckpulse's pipeline: record -> buffer -> flush -> store (-> rollup / sweep / retention -> alerts)."""

from .alerts import LoggingNotifier as LoggingNotifier
from .alerts import Notification as Notification
from .alerts import Rule as Rule
from .alerts import WebhookNotifier as WebhookNotifier
from .clock import Clock as Clock
from .clock import SystemClock as SystemClock
from .errors import ConfigError as ConfigError
from .errors import DuckPulseError as DuckPulseError
from .errors import InvalidMetricError as InvalidMetricError
from .errors import MonitorClosedError as MonitorClosedError
from .errors import NoMonitorError as NoMonitorError
from .errors import OwnershipError as OwnershipError
from .monitor import Monitor as Monitor
from .monitor import default_monitor as default_monitor
from .percentiles import Percentile as Percentile
from .percentiles import percentiles as percentiles

__all__ = ["Clock", "ConfigError", "DuckPulseError", "InvalidMetricError", "LoggingNotifier", "Monitor",
           "MonitorClosedError",
           "NoMonitorError", "Notification", "OwnershipError", "Percentile", "Rule", "SystemClock",
           "WebhookNotifier", "default_monitor", "percentiles"]

